//! Class-aware non-maximum suppression on boxes in model-input pixels.
//!
//! Suppression happens before boxes are mapped back to the image because that is where the
//! model's reference implementations do it: with a `stretch` resize the two spaces are scaled
//! differently along x and y, which changes IoU.

/// A box proposed by a decoder, in model-input pixels, before NMS.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub class: usize,
    pub score: f32,
    /// Corners `[x0, y0, x1, y1]` in input pixels.
    pub xyxy: [f32; 4],
}

/// Limits for [`class_aware_nms`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NmsParams {
    /// A box overlapping a better box of its class by more than this IoU is dropped.
    pub iou_threshold: f32,
    /// At most this many boxes in all, best first.
    pub max_detections: usize,
    /// At most this many boxes per class.
    pub max_per_class: Option<usize>,
    /// Per class, only the best this-many candidates are considered.
    pub candidates_per_class: Option<usize>,
}

/// Intersection over union of two corner boxes; 0 when the union is empty.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Greedy NMS within each class: boxes of different classes never suppress each other. The
/// result is sorted by score, best first (ties keep class order).
pub fn class_aware_nms(mut candidates: Vec<Candidate>, params: &NmsParams) -> Vec<Candidate> {
    // Class, then score descending; `total_cmp` gives NaN a fixed place instead of panicking.
    candidates.sort_by(|a, b| a.class.cmp(&b.class).then(b.score.total_cmp(&a.score)));
    let mut kept: Vec<Candidate> = Vec::new();
    for group in candidates.chunk_by(|a, b| a.class == b.class) {
        let group = match params.candidates_per_class {
            Some(limit) => &group[..group.len().min(limit)],
            None => group,
        };
        let first_of_class = kept.len();
        for candidate in group {
            if params
                .max_per_class
                .is_some_and(|max| kept.len() - first_of_class >= max)
            {
                break;
            }
            let suppressed = kept[first_of_class..]
                .iter()
                .any(|k| iou(&k.xyxy, &candidate.xyxy) > params.iou_threshold);
            if !suppressed {
                kept.push(*candidate);
            }
        }
    }
    kept.sort_by(|a, b| b.score.total_cmp(&a.score));
    kept.truncate(params.max_detections);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(class: usize, score: f32, xyxy: [f32; 4]) -> Candidate {
        Candidate { class, score, xyxy }
    }

    fn params(iou_threshold: f32) -> NmsParams {
        NmsParams {
            iou_threshold,
            max_detections: 100,
            max_per_class: None,
            candidates_per_class: None,
        }
    }

    #[test]
    fn iou_basics() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert!((iou(&a, &a) - 1.0).abs() < 1e-6);
        assert!((iou(&a, &[5.0, 0.0, 15.0, 10.0]) - 50.0 / 150.0).abs() < 1e-6);
        assert!(iou(&a, &[20.0, 20.0, 30.0, 30.0]).abs() < 1e-6);
        assert!(iou(&[0.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0]).abs() < 1e-6);
    }

    #[test]
    fn overlapping_boxes_of_one_class_keep_the_best() {
        let out = class_aware_nms(
            vec![
                cand(0, 0.6, [1.0, 1.0, 11.0, 11.0]),
                cand(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
                cand(0, 0.5, [50.0, 50.0, 60.0, 60.0]),
            ],
            &params(0.5),
        );
        assert_eq!(out.len(), 2);
        assert!((out[0].score - 0.9).abs() < 1e-6);
        assert!((out[1].score - 0.5).abs() < 1e-6);
    }

    #[test]
    fn overlapping_boxes_of_different_classes_both_survive() {
        let out = class_aware_nms(
            vec![
                cand(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
                cand(1, 0.8, [0.0, 0.0, 10.0, 10.0]),
            ],
            &params(0.5),
        );
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].class, out[1].class), (0, 1));
    }

    #[test]
    fn iou_exactly_at_threshold_is_kept() {
        // IoU 1/3: suppressed only when strictly above the threshold (torchvision, PaddleDetection).
        let boxes = vec![
            cand(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
            cand(0, 0.8, [5.0, 0.0, 15.0, 10.0]),
        ];
        assert_eq!(
            class_aware_nms(boxes.clone(), &params(1.0 / 3.0 + 1e-6)).len(),
            2
        );
        assert_eq!(class_aware_nms(boxes, &params(0.3)).len(), 1);
    }

    #[test]
    fn limits_apply_per_class_and_in_total() {
        let spread = |class: usize, n: usize| {
            (0..n).map(move |i| {
                let x = i as f32 * 20.0;
                cand(class, 0.9 - i as f32 * 0.01, [x, 0.0, x + 10.0, 10.0])
            })
        };
        let all: Vec<_> = spread(0, 5).chain(spread(1, 5)).collect();
        let out = class_aware_nms(
            all.clone(),
            &NmsParams {
                max_per_class: Some(2),
                ..params(0.5)
            },
        );
        assert_eq!(out.len(), 4);
        let out = class_aware_nms(
            all.clone(),
            &NmsParams {
                candidates_per_class: Some(3),
                ..params(0.5)
            },
        );
        assert_eq!(out.len(), 6);
        let out = class_aware_nms(
            all,
            &NmsParams {
                max_detections: 3,
                ..params(0.5)
            },
        );
        assert_eq!(out.len(), 3);
        assert!(out.windows(2).all(|w| w[0].score >= w[1].score));
    }

    #[test]
    fn nan_scores_do_not_panic() {
        let out = class_aware_nms(
            vec![
                cand(0, f32::NAN, [0.0, 0.0, 10.0, 10.0]),
                cand(0, 0.5, [0.0, 0.0, 10.0, 10.0]),
            ],
            &params(0.5),
        );
        assert!(!out.is_empty());
    }
}
