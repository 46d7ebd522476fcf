//! Decoders from raw output tensors to candidate boxes in model-input pixels, one per
//! [`DecoderKind`](super::DecoderKind).
//!
//! They are pure functions on `ndarray` views so that they can be tested on hand-built tensors.
//! Every shape is checked before it is indexed: a model that does not fit its descriptor gives a
//! [`DecodeError`] naming the tensor and the expected and actual shapes, never a panic.

use ndarray::{ArrayView2, ArrayViewD, Axis, Ix2};

use super::descriptor::BoxFormat;
use super::nms::Candidate;

/// A named output tensor of the model.
#[derive(Clone, Debug)]
pub struct Output<'a, T = f32> {
    pub name: &'a str,
    pub view: ArrayViewD<'a, T>,
}

/// Why the outputs do not fit the decoder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// An output has the wrong shape.
    Shape {
        tensor: String,
        expected: String,
        actual: String,
    },
    /// The outputs as a whole do not fit (wrong count, missing name).
    Layout(String),
}

/// Formats a shape the way ONNX tools print it: `[1, 84, 8400]`.
pub fn format_shape<D: std::fmt::Display>(dims: &[D]) -> String {
    let inner: Vec<String> = dims.iter().map(ToString::to_string).collect();
    format!("[{}]", inner.join(", "))
}

fn shape_error<T>(output: &Output<'_, T>, expected: String) -> DecodeError {
    DecodeError::Shape {
        tensor: format!("output `{}`", output.name),
        expected,
        actual: format_shape(output.view.shape()),
    }
}

/// The output as a 2-D view after dropping a leading batch dimension of 1, or `None` when it has
/// another rank or batch size.
fn without_batch<'a, T>(output: &Output<'a, T>, rank: usize) -> Option<ArrayViewD<'a, T>> {
    let view = output.view.clone();
    if view.ndim() == rank {
        Some(view)
    } else if view.ndim() == rank + 1 && view.shape()[0] == 1 {
        Some(view.index_axis_move(Axis(0), 0))
    } else {
        None
    }
}

fn as_2d<'a, T>(output: &Output<'a, T>) -> Option<ArrayView2<'a, T>> {
    without_batch(output, 2)?.into_dimensionality::<Ix2>().ok()
}

fn classes_text(num_classes: Option<usize>) -> String {
    num_classes.map_or_else(
        || "a score per class".to_owned(),
        |nc| format!("{nc} class scores"),
    )
}

/// The shape [`decode_yolov8`] wants, for error messages.
pub fn yolov8_expected(num_classes: Option<usize>) -> String {
    let rows = num_classes.map_or_else(|| "4 + classes".to_owned(), |nc| (4 + nc).to_string());
    format!(
        "[1, {rows}, anchors] (4 box values and {} per anchor)",
        classes_text(num_classes)
    )
}

/// The shape [`decode_yolov5`] wants, for error messages.
pub fn yolov5_expected(num_classes: Option<usize>) -> String {
    let cols = num_classes.map_or_else(|| "5 + classes".to_owned(), |nc| (5 + nc).to_string());
    format!(
        "[1, anchors, {cols}] (4 box values, objectness and {} per anchor)",
        classes_text(num_classes)
    )
}

/// Ultralytics YOLOv8/YOLO11: `[1, 4 + classes, anchors]`, rows cx, cy, w, h then one score per
/// class. Each anchor gives at most one candidate, its best class (ultralytics'
/// `multi_label=False`), when that score is above `score_threshold`.
pub fn decode_yolov8(
    output: &Output<'_>,
    num_classes: Option<usize>,
    score_threshold: f32,
) -> Result<Vec<Candidate>, DecodeError> {
    let expected = || yolov8_expected(num_classes);
    let view = as_2d(output).ok_or_else(|| shape_error(output, expected()))?;
    let (rows, anchors) = view.dim();
    let nc = rows.saturating_sub(4);
    if rows <= 4 || num_classes.is_some_and(|n| n != nc) {
        return Err(shape_error(output, expected()));
    }
    // Row by row keeps memory access contiguous: the tensor is class-major.
    let mut best_score = vec![f32::NEG_INFINITY; anchors];
    let mut best_class = vec![0usize; anchors];
    for class in 0..nc {
        for ((best, best_c), &score) in best_score
            .iter_mut()
            .zip(best_class.iter_mut())
            .zip(view.row(4 + class))
        {
            if score > *best {
                *best = score;
                *best_c = class;
            }
        }
    }
    let mut candidates = Vec::new();
    for (anchor, (&score, &class)) in best_score.iter().zip(&best_class).enumerate() {
        if score > score_threshold {
            let (cx, cy, w, h) = (
                view[[0, anchor]],
                view[[1, anchor]],
                view[[2, anchor]],
                view[[3, anchor]],
            );
            candidates.push(Candidate {
                class,
                score,
                xyxy: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
            });
        }
    }
    Ok(candidates)
}

/// YOLOv5: `[1, anchors, 5 + classes]`, columns cx, cy, w, h, objectness, then class scores.
/// The score is objectness times the best class score, as in YOLOv5's `non_max_suppression`.
pub fn decode_yolov5(
    output: &Output<'_>,
    num_classes: Option<usize>,
    score_threshold: f32,
) -> Result<Vec<Candidate>, DecodeError> {
    let expected = || yolov5_expected(num_classes);
    let view = as_2d(output).ok_or_else(|| shape_error(output, expected()))?;
    let cols = view.ncols();
    if cols <= 5 || num_classes.is_some_and(|n| n + 5 != cols) {
        return Err(shape_error(output, expected()));
    }
    let mut candidates = Vec::new();
    for row in view.rows() {
        let objectness = row[4];
        if objectness <= score_threshold {
            continue;
        }
        let mut class = 0;
        let mut class_score = f32::NEG_INFINITY;
        for (c, &s) in row.iter().skip(5).enumerate() {
            if s > class_score {
                class_score = s;
                class = c;
            }
        }
        let score = objectness * class_score;
        if score > score_threshold {
            let (cx, cy, w, h) = (row[0], row[1], row[2], row[3]);
            candidates.push(Candidate {
                class,
                score,
                xyxy: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
            });
        }
    }
    Ok(candidates)
}

/// Settings for [`decode_picodet`].
#[derive(Clone, Debug, PartialEq)]
pub struct PicodetParams<'a> {
    /// One per output level, finest first.
    pub strides: &'a [u32],
    pub input_width: u32,
    pub input_height: u32,
    pub num_classes: Option<usize>,
    pub score_threshold: f32,
    /// Per level, only the best this-many cells (by their best class score) are decoded.
    pub pre_nms_top_k: Option<usize>,
}

/// PicoDet / GFL heads as PaddleDetection exports them without NMS: `outputs` are the score
/// tensors `[1, cells, classes]` of each stride, then the distribution tensors
/// `[1, cells, 4 * (reg_max + 1)]` of each stride. A level of stride `s` has
/// `ceil(H / s) * ceil(W / s)` cells in row-major order; each side's distance is the expectation
/// of a softmax over `reg_max + 1` bins, times the stride. Every class scoring above the threshold
/// gives a candidate (PaddleDetection's `PicoDetPostProcess`).
pub fn decode_picodet(
    outputs: &[Output<'_>],
    params: &PicodetParams<'_>,
) -> Result<Vec<Candidate>, DecodeError> {
    let levels = params.strides.len();
    if outputs.len() != 2 * levels {
        return Err(DecodeError::Layout(format!(
            "picodet with strides {:?} expects {} outputs (a score tensor for each stride, then a \
             box-distribution tensor for each stride), the model has {}",
            params.strides,
            2 * levels,
            outputs.len()
        )));
    }
    let (score_outputs, dist_outputs) = outputs.split_at(levels);
    let mut num_classes = params.num_classes;
    let mut bins: Option<usize> = None;
    let mut candidates = Vec::new();
    for ((&stride, score_output), dist_output) in
        params.strides.iter().zip(score_outputs).zip(dist_outputs)
    {
        let grid_w = params.input_width.div_ceil(stride) as usize;
        let grid_h = params.input_height.div_ceil(stride) as usize;
        let cells = grid_w * grid_h;

        let scores = as_2d(score_output)
            .filter(|v| {
                v.nrows() == cells && v.ncols() > 0 && num_classes.is_none_or(|n| n == v.ncols())
            })
            .ok_or_else(|| {
                shape_error(
                    score_output,
                    format!(
                        "[1, {cells}, {}] (scores of a {grid_h}x{grid_w} grid at stride {stride})",
                        num_classes.map_or_else(|| "classes".to_owned(), |n| n.to_string())
                    ),
                )
            })?;
        num_classes = Some(scores.ncols());

        let dists = as_2d(dist_output)
            .filter(|v| {
                v.nrows() == cells
                    && v.ncols() >= 4
                    && v.ncols() % 4 == 0
                    && bins.is_none_or(|b| b * 4 == v.ncols())
            })
            .ok_or_else(|| {
                shape_error(
                    dist_output,
                    format!(
                        "[1, {cells}, {}] (box distributions of a {grid_h}x{grid_w} grid at \
                         stride {stride})",
                        bins.map_or_else(
                            || "4 * (reg_max + 1)".to_owned(),
                            |b| (4 * b).to_string()
                        )
                    ),
                )
            })?;
        let level_bins = dists.ncols() / 4;
        bins = Some(level_bins);

        // Cells whose best class clears the threshold; taking the top k of these is the same
        // as PaddleDetection's top k of all cells followed by the threshold.
        let mut picked: Vec<(usize, f32)> = scores
            .rows()
            .into_iter()
            .enumerate()
            .filter_map(|(cell, row)| {
                let best = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                (best > params.score_threshold).then_some((cell, best))
            })
            .collect();
        if let Some(k) = params.pre_nms_top_k
            && picked.len() > k
        {
            picked.select_nth_unstable_by(k, |a, b| b.1.total_cmp(&a.1));
            picked.truncate(k);
        }

        #[allow(clippy::cast_precision_loss)] // grid positions and strides are small
        let stride_f = stride as f32;
        let mut probs = vec![0.0f32; level_bins];
        for (cell, _) in picked {
            let dist_row = dists.row(cell);
            let mut distance = [0.0f32; 4];
            for (side, d) in distance.iter_mut().enumerate() {
                let logits =
                    dist_row.slice(ndarray::s![side * level_bins..(side + 1) * level_bins]);
                *d = softmax_expectation(logits.iter().copied(), &mut probs) * stride_f;
            }
            #[allow(clippy::cast_precision_loss)]
            let (col, row) = ((cell % grid_w) as f32, (cell / grid_w) as f32);
            let cx = (col + 0.5) * stride_f;
            let cy = (row + 0.5) * stride_f;
            let xyxy = [
                cx - distance[0],
                cy - distance[1],
                cx + distance[2],
                cy + distance[3],
            ];
            for (class, &score) in scores.row(cell).iter().enumerate() {
                if score > params.score_threshold {
                    candidates.push(Candidate { class, score, xyxy });
                }
            }
        }
    }
    Ok(candidates)
}

/// `sum(i * softmax(logits)[i])`; `probs` is scratch space of the same length.
fn softmax_expectation(logits: impl Iterator<Item = f32> + Clone, probs: &mut [f32]) -> f32 {
    let max = logits.clone().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for (p, l) in probs.iter_mut().zip(logits) {
        *p = (l - max).exp();
        sum += *p;
    }
    let weighted: f32 = probs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            #[allow(clippy::cast_precision_loss)] // a handful of bins
            let i = i as f32;
            i * p
        })
        .sum();
    weighted / sum
}

/// Settings for [`decode_nms`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NmsDecodeParams {
    pub box_format: BoxFormat,
    /// Boxes are fractions of the input size.
    pub normalized: bool,
    pub input_width: u32,
    pub input_height: u32,
    pub num_classes: Option<usize>,
    pub score_threshold: f32,
}

/// A model that already ran NMS: `boxes` `[N, 4]`, `scores` `[N]` and `labels` `[N]`, each with
/// or without a leading batch dimension of 1. Labels outside the class list are refused.
pub fn decode_nms(
    boxes: &Output<'_>,
    scores: &Output<'_>,
    labels: &Output<'_, i64>,
    params: &NmsDecodeParams,
) -> Result<Vec<Candidate>, DecodeError> {
    let box_view = as_2d(boxes)
        .filter(|v| v.ncols() == 4)
        .ok_or_else(|| shape_error(boxes, "[1, N, 4] or [N, 4]".to_owned()))?;
    let n = box_view.nrows();
    let score_view = without_batch(scores, 1)
        .filter(|v| v.len() == n)
        .ok_or_else(|| shape_error(scores, format!("[1, {n}] or [{n}]")))?;
    let label_view = without_batch(labels, 1)
        .filter(|v| v.len() == n)
        .ok_or_else(|| shape_error(labels, format!("[1, {n}] or [{n}]")))?;
    #[allow(clippy::cast_precision_loss)]
    let (sx, sy) = if params.normalized {
        (params.input_width as f32, params.input_height as f32)
    } else {
        (1.0, 1.0)
    };
    let mut candidates = Vec::new();
    for ((row, &score), &label) in box_view
        .rows()
        .into_iter()
        .zip(&score_view)
        .zip(&label_view)
    {
        if score <= params.score_threshold {
            continue;
        }
        let class = usize::try_from(label)
            .ok()
            .filter(|c| params.num_classes.is_none_or(|n| *c < n))
            .ok_or_else(|| {
                let known = params.num_classes.map_or_else(String::new, |n| {
                    format!(" (the descriptor has {n} classes)")
                });
                DecodeError::Layout(format!(
                    "output `{}` holds class {label}, which is not a class index{known}",
                    labels.name
                ))
            })?;
        let (a, b, c, d) = (row[0] * sx, row[1] * sy, row[2] * sx, row[3] * sy);
        let xyxy = match params.box_format {
            BoxFormat::Xyxy => [a, b, c, d],
            BoxFormat::Xywh => [a, b, a + c, b + d],
            BoxFormat::Cxcywh => [a - c / 2.0, b - d / 2.0, a + c / 2.0, b + d / 2.0],
        };
        candidates.push(Candidate { class, score, xyxy });
    }
    Ok(candidates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array, Array2, Array3, ArrayD, IxDyn};

    fn out<'a, T>(name: &'a str, array: &'a ArrayD<T>) -> Output<'a, T> {
        Output {
            name,
            view: array.view(),
        }
    }

    fn close(a: [f32; 4], b: [f32; 4]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4)
    }

    #[test]
    fn yolov8_picks_the_best_class_per_anchor() {
        // 2 classes, 3 anchors: [cx, cy, w, h, s0, s1] per column.
        let columns = [
            [50.0, 50.0, 20.0, 10.0, 0.1, 0.9],
            [10.0, 10.0, 4.0, 4.0, 0.2, 0.1], // below threshold
            [30.0, 40.0, 10.0, 10.0, 0.6, 0.3],
        ];
        let mut t = Array3::<f32>::zeros((1, 6, 3));
        for (a, col) in columns.iter().enumerate() {
            for (r, v) in col.iter().enumerate() {
                t[[0, r, a]] = *v;
            }
        }
        let t = t.into_dyn();
        let c = decode_yolov8(&out("output0", &t), Some(2), 0.25).expect("decodes");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].class, 1);
        assert!((c[0].score - 0.9).abs() < 1e-6);
        assert!(close(c[0].xyxy, [40.0, 45.0, 60.0, 55.0]));
        assert_eq!(c[1].class, 0);
        assert!(close(c[1].xyxy, [25.0, 35.0, 35.0, 45.0]));
    }

    #[test]
    fn yolov8_shape_errors_name_the_tensor() {
        let t = ArrayD::<f32>::zeros(IxDyn(&[1, 7600, 10]));
        let err = decode_yolov8(&out("transpose_0.tmp_0", &t), Some(10), 0.5).expect_err("wrong");
        let DecodeError::Shape {
            tensor,
            expected,
            actual,
        } = err
        else {
            panic!("expected a shape error, got {err:?}");
        };
        assert_eq!(tensor, "output `transpose_0.tmp_0`");
        assert_eq!(actual, "[1, 7600, 10]");
        assert!(expected.starts_with("[1, 14, anchors]"), "{expected}");
        let t = ArrayD::<f32>::zeros(IxDyn(&[2, 6, 3]));
        assert!(
            decode_yolov8(&out("o", &t), None, 0.5).is_err(),
            "batch of 2"
        );
        let t = ArrayD::<f32>::zeros(IxDyn(&[6]));
        assert!(decode_yolov8(&out("o", &t), None, 0.5).is_err(), "rank 1");
    }

    #[test]
    fn yolov5_multiplies_objectness() {
        let t = Array2::from(vec![
            [50.0f32, 50.0, 20.0, 10.0, 0.9, 0.2, 0.8], // 0.72, class 1
            [10.0, 10.0, 4.0, 4.0, 0.2, 1.0, 0.0],      // objectness too low
            [30.0, 40.0, 10.0, 10.0, 0.5, 0.4, 0.1],    // 0.2, below 0.25
        ])
        .insert_axis(Axis(0))
        .into_dyn();
        let c = decode_yolov5(&out("output", &t), Some(2), 0.25).expect("decodes");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].class, 1);
        assert!((c[0].score - 0.72).abs() < 1e-6);
        assert!(close(c[0].xyxy, [40.0, 45.0, 60.0, 55.0]));
        let err = decode_yolov5(&out("output", &t), Some(3), 0.25).expect_err("7 != 5 + 3");
        assert!(matches!(err, DecodeError::Shape { .. }));
    }

    #[test]
    fn picodet_decodes_distributions_on_the_grid() {
        // Input 32x16 (w x h), strides 8 and 16: grids 4x2 (8 cells) and 2x1 (2 cells).
        // reg_max = 1: two bins per side, so distance = p(bin 1) * stride.
        let strides = [8, 16];
        let mut s8 = Array3::<f32>::zeros((1, 8, 2));
        let mut s16 = Array3::<f32>::zeros((1, 2, 2));
        let mut d8 = Array3::<f32>::zeros((1, 8, 8));
        let d16 = Array3::<f32>::zeros((1, 2, 8));
        // Cell 5 of stride 8 is row 1, col 1: centre (12, 12). Both classes fire.
        s8[[0, 5, 0]] = 0.9;
        s8[[0, 5, 1]] = 0.7;
        // Left side: logits (0, 0) -> expectation 0.5 -> 4 px. Top: (0, ln 3) -> 0.75 -> 6 px.
        // Right: (ln 3, 0) -> 0.25 -> 2 px. Bottom: large logit on bin 1 -> ~1 -> 8 px.
        let ln3 = 3.0f32.ln();
        for (i, v) in [0.0, 0.0, 0.0, ln3, ln3, 0.0, -20.0, 20.0]
            .iter()
            .enumerate()
        {
            d8[[0, 5, i]] = *v;
        }
        // Cell 1 of stride 16 is row 0, col 1: centre (24, 8); all distances 0.5 * 16 = 8.
        s16[[0, 1, 1]] = 0.6;
        let arrays = [s8.into_dyn(), s16.into_dyn(), d8.into_dyn(), d16.into_dyn()];
        let names = ["s8", "s16", "d8", "d16"];
        let outputs: Vec<_> = names.iter().zip(&arrays).map(|(n, a)| out(n, a)).collect();
        let params = PicodetParams {
            strides: &strides,
            input_width: 32,
            input_height: 16,
            num_classes: Some(2),
            score_threshold: 0.5,
            pre_nms_top_k: None,
        };
        let c = decode_picodet(&outputs, &params).expect("decodes");
        assert_eq!(c.len(), 3);
        assert_eq!((c[0].class, c[1].class, c[2].class), (0, 1, 1));
        assert!(close(c[0].xyxy, [8.0, 6.0, 14.0, 20.0]), "{:?}", c[0].xyxy);
        assert_eq!(c[0].xyxy, c[1].xyxy);
        assert!(close(c[2].xyxy, [16.0, 0.0, 32.0, 16.0]), "{:?}", c[2].xyxy);

        // Top-1 per level keeps only the best cell of each level.
        let c = decode_picodet(
            &outputs,
            &PicodetParams {
                pre_nms_top_k: Some(1),
                ..params.clone()
            },
        )
        .expect("decodes");
        assert_eq!(c.len(), 3);

        // Wrong output count and wrong grid size are reported with the tensor.
        let err = decode_picodet(&outputs[..3], &params).expect_err("count");
        assert!(matches!(err, DecodeError::Layout(ref m) if m.contains("expects 4 outputs")));
        let err = decode_picodet(
            &outputs,
            &PicodetParams {
                input_width: 64,
                ..params
            },
        )
        .expect_err("grid");
        let DecodeError::Shape {
            tensor, expected, ..
        } = err
        else {
            panic!("expected a shape error, got {err:?}");
        };
        assert_eq!(tensor, "output `s8`");
        assert!(expected.starts_with("[1, 16, 2]"), "{expected}");
    }

    #[test]
    fn nms_outputs_in_each_box_format() {
        let boxes = Array::from_shape_vec(
            (1, 2, 4),
            vec![10.0f32, 20.0, 30.0, 60.0, 0.0, 0.0, 1.0, 1.0],
        )
        .expect("shape")
        .into_dyn();
        let scores = Array::from_shape_vec((1, 2), vec![0.9f32, 0.1])
            .expect("shape")
            .into_dyn();
        let labels = Array::from_shape_vec((1, 2), vec![3i64, 0])
            .expect("shape")
            .into_dyn();
        let params = NmsDecodeParams {
            box_format: BoxFormat::Xyxy,
            normalized: false,
            input_width: 100,
            input_height: 200,
            num_classes: Some(4),
            score_threshold: 0.5,
        };
        let decode = |params: &NmsDecodeParams| {
            decode_nms(
                &out("boxes", &boxes),
                &out("scores", &scores),
                &out("labels", &labels),
                params,
            )
        };
        let c = decode(&params).expect("decodes");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].class, 3);
        assert!(close(c[0].xyxy, [10.0, 20.0, 30.0, 60.0]));
        let c = decode(&NmsDecodeParams {
            box_format: BoxFormat::Xywh,
            ..params
        })
        .expect("decodes");
        assert!(close(c[0].xyxy, [10.0, 20.0, 40.0, 80.0]));
        let c = decode(&NmsDecodeParams {
            box_format: BoxFormat::Cxcywh,
            ..params
        })
        .expect("decodes");
        assert!(close(c[0].xyxy, [-5.0, -10.0, 25.0, 50.0]));
        let c = decode(&NmsDecodeParams {
            normalized: true,
            ..params
        })
        .expect("decodes");
        assert!(close(c[0].xyxy, [1000.0, 4000.0, 3000.0, 12000.0]));
        // A label outside the class list is an error, not an out-of-bounds index later.
        let err = decode(&NmsDecodeParams {
            num_classes: Some(2),
            ..params
        })
        .expect_err("label 3 of 2 classes");
        assert!(matches!(err, DecodeError::Layout(ref m) if m.contains("class 3")));
        // Mismatched lengths.
        let short = Array::from_shape_vec((1, 1), vec![0.9f32])
            .expect("shape")
            .into_dyn();
        let err = decode_nms(
            &out("boxes", &boxes),
            &out("scores", &short),
            &out("labels", &labels),
            &params,
        )
        .expect_err("length");
        assert!(
            matches!(err, DecodeError::Shape { ref tensor, .. } if tensor == "output `scores`")
        );
    }
}
