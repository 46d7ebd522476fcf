//! Model results onto real projects: COCO results files mapped onto the project's own images and
//! classes (or refused), run coverage with images the model found nothing on, and `loupe eval`
//! equal to pycocotools' COCOeval on the same ground-truth and results files, for ground truth
//! imported from every format (one table row each).

use std::path::{Path, PathBuf};

use loupe::store::Project;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::support::{fails, new_project, ok, ok_json, run, s, testdata, write_png};

fn stats(p: &Path) -> Value {
    ok_json(p, &["stats", "--json"])
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(v).expect("json")).expect("write");
}

const KEYS: [&str; 12] = [
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
];

/// pycocotools' twelve numbers (COCOeval, iouType bbox) on a GT file and a results file. A
/// missing pycocotools fails the test: parity that is not checked is not parity.
fn pycocotools(gt: &Path, results: &Path) -> Value {
    let script = testdata().join("eval/coco_map.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(gt)
        .arg(results)
        .output()
        .expect(
            "python3 must be on PATH (scripts/setup.sh makes .venv; scripts/test.sh puts it first)",
        );
    assert!(
        out.status.success(),
        "pycocotools reference failed (is pycocotools installed? scripts/setup.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().expect("output")).expect("reference json")
}

fn assert_parity(case: &str, ours: &Value, theirs: &Value) {
    for k in KEYS {
        let a = ours[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{case}: no {k} in {ours}"));
        let b = theirs[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{case}: no {k} in {theirs}"));
        assert!(
            (a - b).abs() < 1e-4,
            "{case}: {k} is {a} in Loupe and {b} in pycocotools\nLoupe: {ours}\npycocotools: {theirs}"
        );
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Deterministic detections for a COCO ground truth, as a model would make them: most objects
/// found with jittered boxes, some missed, some found twice, false positives, a wrong class now
/// and then, and every third image with no detection at all (its objects are all missed).
fn detections_for(gt: &Value, seed: u64) -> Value {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let images = gt["images"].as_array().expect("images");
    let categories: Vec<i64> = gt["categories"]
        .as_array()
        .expect("categories")
        .iter()
        .map(|c| c["id"].as_i64().expect("id"))
        .collect();
    let anns = gt["annotations"].as_array().expect("annotations");
    let mut dets = Vec::new();
    for (i, img) in images.iter().enumerate() {
        let id = img["id"].as_i64().expect("image id");
        let (w, h) = (
            img["width"].as_f64().expect("width"),
            img["height"].as_f64().expect("height"),
        );
        // Every third image gets no detections (its labels must still count), in GTs with
        // enough images that some are left to match.
        if images.len() > 3 && i % 3 == 1 {
            continue;
        }
        for a in anns.iter().filter(|a| a["image_id"] == id) {
            let b: Vec<f64> = a["bbox"]
                .as_array()
                .expect("bbox")
                .iter()
                .map(|v| v.as_f64().expect("number"))
                .collect();
            if a["iscrowd"].as_i64() == Some(1) || rng.random_bool(0.2) {
                continue;
            }
            let copies = if rng.random_bool(0.15) { 2 } else { 1 };
            for _ in 0..copies {
                let bw = (b[2] * rng.random_range(0.85..1.15)).clamp(1.0, w);
                let bh = (b[3] * rng.random_range(0.85..1.15)).clamp(1.0, h);
                let x = (b[0] + b[2] * rng.random_range(-0.1..0.1)).clamp(0.0, w - bw);
                let y = (b[1] + b[3] * rng.random_range(-0.1..0.1)).clamp(0.0, h - bh);
                let category = if rng.random_bool(0.1) {
                    categories[rng.random_range(0..categories.len())]
                } else {
                    a["category_id"].as_i64().expect("category")
                };
                let score = round2(rng.random_range(0.3..1.0)) + rng.random_range(0.0..0.001);
                dets.push(json!({"image_id": id, "category_id": category,
                    "bbox": [round2(x), round2(y), round2(bw), round2(bh)], "score": score}));
            }
        }
        // False positives, on images big enough to hold one (fixtures have 1x1 images).
        let false_positives = if w >= 4.0 && h >= 4.0 {
            rng.random_range(0..3)
        } else {
            0
        };
        for _ in 0..false_positives {
            let bw = rng.random_range(1.0..w / 2.0);
            let bh = rng.random_range(1.0..h / 2.0);
            let x = rng.random_range(0.0..w - bw);
            let y = rng.random_range(0.0..h - bh);
            let category = categories[rng.random_range(0..categories.len())];
            let score = rng.random_range(0.01..0.6);
            dets.push(json!({"image_id": id, "category_id": category,
                "bbox": [round2(x), round2(y), round2(bw), round2(bh)], "score": score}));
        }
    }
    if dets.is_empty() {
        // A model that saw nothing at all is a case of its own; here there is one false positive.
        let id = images[0]["id"].as_i64().expect("image id");
        dets.push(json!({"image_id": id, "category_id": categories[0], "bbox": [0.0, 0.0, 1.0, 1.0], "score": 0.5}));
    }
    Value::Array(dets)
}

/// How a results file names its images when it is imported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// `--gt FILE`: the covered images are the GT file's.
    Gt,
    /// No `--gt`: the COCO ids recorded when the GT was imported, and `--cover-all` for the
    /// images the results do not name.
    RecordedIds,
}

/// One way ground truth reaches a project, with the COCO file pycocotools reads for it.
struct GtCase {
    name: &'static str,
    /// `loupe add` this folder (under the test data) first: the images come from disk.
    add_first: Option<&'static str>,
    /// `loupe import --format FORMAT PATH` (the path under the test data).
    format: &'static str,
    path: &'static str,
    /// `--images DIR` for the GT import (under the test data).
    images: Option<&'static str>,
    /// The COCO ground truth pycocotools reads: the imported file itself (a COCO row), or else
    /// the project's labels exported as COCO.
    reference_is_source: bool,
    via: Via,
    seed: u64,
}

/// Ground truth from each format Loupe imports; a new format is one more row.
fn gt_cases() -> Vec<GtCase> {
    vec![
        GtCase {
            name: "coco: labelme2coco (segmentation areas, ids from 0)",
            add_first: None,
            format: "coco",
            path: "labelme/examples/instance_segmentation/data_dataset_coco/annotations.json",
            images: None,
            reference_is_source: true,
            via: Via::Gt,
            seed: 1,
        },
        GtCase {
            name: "coco: labelme2coco, results mapped through the recorded ids",
            add_first: None,
            format: "coco",
            path: "labelme/examples/instance_segmentation/data_dataset_coco/annotations.json",
            images: None,
            reference_is_source: true,
            via: Via::RecordedIds,
            seed: 2,
        },
        GtCase {
            name: "coco: datumaro coco_instances (a crowd region)",
            add_first: None,
            format: "coco",
            path: "datumaro/tests/assets/coco_dataset/coco_instances/annotations/instances_val.json",
            images: None,
            reference_is_source: true,
            via: Via::Gt,
            seed: 3,
        },
        GtCase {
            name: "voc: labelme2voc onto images added from disk",
            add_first: Some("labelme/examples/bbox_detection/data_dataset_voc/JPEGImages"),
            format: "voc",
            path: "labelme/examples/bbox_detection/data_dataset_voc",
            images: None,
            reference_is_source: false,
            via: Via::Gt,
            seed: 4,
        },
        GtCase {
            name: "voc: Roboflow VOC export (train and val)",
            add_first: None,
            format: "voc",
            path: "datumaro/tests/assets/roboflow_dataset/voc",
            images: None,
            reference_is_source: false,
            via: Via::Gt,
            seed: 5,
        },
        GtCase {
            name: "yolo: datumaro Darknet layout (obj.data)",
            add_first: None,
            format: "yolo",
            path: "datumaro/tests/assets/yolo_dataset/strict",
            images: None,
            reference_is_source: false,
            via: Via::Gt,
            seed: 6,
        },
        GtCase {
            name: "yolo: Roboflow ultralytics export (data.yaml)",
            add_first: None,
            format: "yolo",
            path: "datumaro/tests/assets/roboflow_dataset/yolo/data.yaml",
            images: None,
            reference_is_source: false,
            via: Via::Gt,
            seed: 7,
        },
        GtCase {
            name: "cvat: CVAT for images 1.1 task export (datumaro's)",
            add_first: None,
            format: "cvat",
            path: "datumaro/tests/assets/cvat_dataset/for_images/export_project/annotations.xml",
            images: None,
            reference_is_source: false,
            via: Via::Gt,
            seed: 8,
        },
        GtCase {
            name: "labelstudio: full JSON export (images absent: placeholders)",
            add_first: None,
            format: "labelstudio",
            path: "../labelstudio/project-1-at-2024-05-13-14-26-9aaf565b.json",
            images: None,
            reference_is_source: false,
            via: Via::Gt,
            seed: 9,
        },
        GtCase {
            name: "labelme: labelme's bbox_detection examples",
            add_first: None,
            format: "labelme",
            path: "labelme/examples/bbox_detection/data_annotated",
            images: None,
            reference_is_source: false,
            via: Via::Gt,
            seed: 10,
        },
        GtCase {
            name: "createml: Roboflow CreateML export",
            add_first: None,
            format: "createml",
            path: "datumaro/tests/assets/roboflow_dataset/createml/train",
            images: None,
            reference_is_source: false,
            via: Via::Gt,
            seed: 11,
        },
        GtCase {
            name: "openimages: Open Images V6 CSV (datumaro's)",
            add_first: None,
            format: "openimages",
            path: "datumaro/tests/assets/open_images_dataset/v6",
            images: None,
            reference_is_source: false,
            via: Via::Gt,
            seed: 12,
        },
    ]
}

/// What one parity case printed, for the report of the first one.
fn check_case(case: &GtCase) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    let data = testdata();
    if let Some(folder) = case.add_first {
        ok(&p, &["add", s(&data.join(folder))]);
    }
    let source = data.join(case.path);
    // Evaluation needs only the images' sizes: cases without their images keep placeholders.
    let mut import = vec![
        "import",
        "--format",
        case.format,
        s(&source),
        "--allow-missing",
    ];
    let images;
    if let Some(i) = case.images {
        images = data.join(i);
        import.extend(["--images", s(&images)]);
    }
    ok(&p, &import);
    let before = stats(&p);

    let gt_path = if case.reference_is_source {
        source.clone()
    } else {
        let out = dir.path().join("gt.json");
        ok(&p, &["export", "--format", "coco", s(&out)]);
        out
    };
    let gt: Value = serde_json::from_slice(&std::fs::read(&gt_path).expect("gt")).expect("gt json");
    let gt_images = gt["images"].as_array().expect("images").len();
    let dets = detections_for(&gt, case.seed);
    assert!(
        !dets.as_array().expect("array").is_empty(),
        "{}: no detections generated",
        case.name
    );
    let res_path = dir.path().join("results.json");
    write_json(&res_path, &dets);

    let mut args = vec![
        "import",
        "--format",
        "coco-results",
        s(&res_path),
        "--run",
        "m",
    ];
    match case.via {
        Via::Gt => args.extend(["--gt", s(&gt_path)]),
        Via::RecordedIds => args.push("--cover-all"),
    }
    ok(&p, &args);
    let after = stats(&p);
    assert_eq!(
        after["images"], before["images"],
        "{}: importing results added images",
        case.name
    );
    assert_eq!(
        after["classes"], before["classes"],
        "{}: importing results added classes",
        case.name
    );

    let ours = ok_json(&p, &["eval", "--run", "m", "--json"]);
    let overall = &ours["overall"];
    assert_eq!(
        overall["images"].as_u64(),
        Some(gt_images as u64),
        "{}: the run must cover every image of the GT, detections or not: {}",
        case.name,
        ours["coverage"]
    );
    let theirs = pycocotools(&gt_path, &res_path);
    assert_parity(case.name, overall, &theirs);
    let twelve: serde_json::Map<String, Value> = KEYS
        .iter()
        .map(|k| ((*k).to_owned(), overall[*k].clone()))
        .collect();
    println!(
        "{}:\n  loupe       {}\n  pycocotools {theirs}",
        case.name,
        Value::Object(twelve)
    );

    // Every labelled image the model saw nothing on is a missed-detection candidate in triage.
    let silent: Vec<i64> = gt["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|i| i["id"].as_i64().expect("id"))
        .filter(|id| {
            dets.as_array()
                .expect("array")
                .iter()
                .all(|d| d["image_id"].as_i64() != Some(*id))
        })
        .filter(|id| {
            gt["annotations"]
                .as_array()
                .expect("annotations")
                .iter()
                .any(|a| a["image_id"].as_i64() == Some(*id) && a["iscrowd"].as_i64() != Some(1))
        })
        .collect();
    let triage = ok_json(&p, &["triage", "--run", "m", "--json"]);
    let ranked = triage.as_array().expect("triage list");
    let silent_ranked = ranked
        .iter()
        .filter(|t| t["predictions"] == 0 && t["labels"].as_u64() > Some(0))
        .filter(|t| t["counts"]["unmatched_label"] == t["labels"])
        .count();
    assert_eq!(
        silent_ranked,
        silent.len(),
        "{}: every labelled image without detections is ranked with its labels as missed: {triage}",
        case.name
    );
}

#[test]
fn eval_of_imported_results_equals_pycocotools_for_ground_truth_from_every_format() {
    for case in gt_cases() {
        check_case(&case);
    }
}

/// The official COCO API's fake bbox results for 100 val2014 images, against those images' ground
/// truth (imported as COCO): results mapped through the recorded ids, and through `--gt`.
#[test]
fn eval_of_the_cocoapi_fake_results_equals_pycocotools() {
    let data = testdata();
    let gt = data.join(
        "review_object_detection_metrics/tests/test_coco_eval/gts/sampled_gts_bbox_area.json",
    );
    let results = data.join("cocoapi/results/instances_val2014_fakebbox100_results.json");
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    // The GT's images are not carried (evaluation needs only their sizes): kept as placeholders.
    ok(
        &p,
        &["import", "--format", "coco", s(&gt), "--allow-missing"],
    );
    let theirs = pycocotools(&gt, &results);
    for (run_name, with_gt) in [("fake-gt", true), ("fake-ids", false)] {
        let mut args = vec![
            "import",
            "--format",
            "coco-results",
            s(&results),
            "--run",
            run_name,
        ];
        if with_gt {
            args.extend(["--gt", s(&gt)]);
        } else {
            // The results name all 100 images; the silent ones are covered by the filter.
            args.push("--cover-all");
        }
        ok(&p, &args);
        let ours = ok_json(&p, &["eval", "--run", run_name, "--json"]);
        assert_eq!(ours["overall"]["images"], 100, "{}", ours["coverage"]);
        assert_eq!(ours["overall"]["dt_boxes"], 734);
        assert_parity("cocoapi fakebbox100", &ours["overall"], &theirs);
        println!(
            "cocoapi fakebbox100 ({run_name}):\n  loupe       {}\n  pycocotools {theirs}",
            ours["overall"]
        );
    }
}

/// A small ground truth of `n` PNG images `img_i.png` in `dir/images`, one box each.
fn small_gt(dir: &Path, n: usize) -> (PathBuf, Value) {
    let images_dir = dir.join("images");
    let mut images = Vec::new();
    let mut anns = Vec::new();
    for i in 0..n {
        let name = format!("img_{i}.png");
        write_png(&images_dir.join(&name), 64, 48, 100 + i as u32);
        let id = 10 + i as i64;
        images.push(json!({"id": id, "file_name": name, "width": 64, "height": 48}));
        anns.push(json!({"id": i + 1, "image_id": id, "category_id": 3,
            "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0}));
    }
    let gt = json!({"images": images, "annotations": anns,
        "categories": [{"id": 3, "name": "car"}, {"id": 7, "name": "bus"}]});
    let path = dir.join("gt.json");
    write_json(&path, &gt);
    (images_dir, gt)
}

#[test]
fn results_with_gt_map_onto_images_added_from_disk_by_file_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (images_dir, _) = small_gt(dir.path(), 3);
    let p = new_project(dir.path());
    ok(&p, &["add", s(&images_dir)]);
    // The labels come from another file than the results' GT: the GT's ids are not recorded,
    // so images map by file name and categories by name.
    let labels = dir.path().join("labels.json");
    write_json(
        &labels,
        &json!({"images": ([0, 1, 2].map(|i| json!({"id": 500 + i, "file_name": format!("img_{i}.png"), "width": 64, "height": 48}))),
            "annotations": ([0, 1, 2].map(|i| json!({"id": i + 1, "image_id": 500 + i, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0}))),
            "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "bus"}]}),
    );
    ok(
        &p,
        &[
            "import",
            "--format",
            "coco",
            s(&labels),
            "--images",
            s(&images_dir),
        ],
    );
    let before = stats(&p);
    let gt = dir.path().join("gt.json");
    let res = dir.path().join("res.json");
    // One perfect detection on the first image; the model saw nothing on the other two.
    write_json(
        &res,
        &json!([{"image_id": 10, "category_id": 3, "bbox": [10, 10, 20, 20], "score": 0.9}]),
    );
    ok(
        &p,
        &[
            "import",
            "--format",
            "coco-results",
            s(&res),
            "--gt",
            s(&gt),
            "--run",
            "m",
        ],
    );
    let after = stats(&p);
    assert_eq!(after["images"], before["images"], "{after}");
    assert_eq!(after["missing_images"], 0, "{after}");
    assert_eq!(after["classes"], before["classes"], "{after}");
    let e = ok_json(&p, &["eval", "--run", "m", "--json"]);
    assert_eq!(e["overall"]["images"], 3, "{e}");
    assert_eq!(e["overall"]["gt_boxes"], 3, "{e}");
    // Two of three objects missed: recall 1/3, whatever the one detection's precision.
    let ar = e["overall"]["AR100"].as_f64().expect("AR100");
    assert!((ar - 1.0 / 3.0).abs() < 1e-9, "{e}");
    assert_parity("by file name", &e["overall"], &pycocotools(&gt, &res));
    let text = ok(&p, &["eval", "--run", "m"]);
    assert!(text.contains("the 3 images of the ground truth"), "{text}");
}

#[test]
fn results_without_gt_cover_the_images_named_and_those_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (images_dir, _) = small_gt(dir.path(), 3);
    let gt = dir.path().join("gt.json");
    let p = new_project(dir.path());
    ok(
        &p,
        &[
            "import",
            "--format",
            "coco",
            s(&gt),
            "--images",
            s(&images_dir),
        ],
    );
    let res = dir.path().join("res.json");
    write_json(
        &res,
        &json!([{"image_id": 10, "category_id": 3, "bbox": [10, 10, 20, 20], "score": 0.9}]),
    );
    // Only the image named: the two silent images are not covered, and eval says so.
    ok(
        &p,
        &[
            "import",
            "--format",
            "coco-results",
            s(&res),
            "--run",
            "named",
        ],
    );
    let e = ok_json(&p, &["eval", "--run", "named", "--json"]);
    assert_eq!(e["overall"]["images"], 1, "{e}");
    let coverage = e["coverage"].as_str().expect("coverage");
    assert!(coverage.contains("the 1 images named in"), "{coverage}");
    assert!(coverage.contains("--images-from"), "{coverage}");
    // The model ran on all three: listed, their misses count, as pycocotools counts them.
    let list = dir.path().join("ran_on.txt");
    std::fs::write(
        &list,
        "# the images the model ran on\nimages/img_1.png\nimages/img_2.png\n",
    )
    .expect("write");
    let out = ok(
        &p,
        &[
            "import",
            "--format",
            "coco-results",
            s(&res),
            "--run",
            "listed",
            "--images-from",
            s(&list),
        ],
    );
    assert!(out.contains("plus 2 more from --images-from"), "{out}");
    let e = ok_json(&p, &["eval", "--run", "listed", "--json"]);
    assert_eq!(e["overall"]["images"], 3, "{e}");
    assert_parity("--images-from", &e["overall"], &pycocotools(&gt, &res));
    // An unknown listed image refuses the import.
    std::fs::write(&list, "images/nope.png\n").expect("write");
    let err = fails(
        &p,
        &[
            "import",
            "--format",
            "coco-results",
            s(&res),
            "--run",
            "bad-list",
            "--images-from",
            s(&list),
        ],
    );
    assert!(err.contains("line 1: images/nope.png"), "{err}");
}

#[test]
fn unmapped_ids_refuse_the_import_and_store_nothing_unless_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (images_dir, _) = small_gt(dir.path(), 2);
    let p = new_project(dir.path());
    // Labels from YOLO-like sources carry no COCO ids: add the images and one VOC-free label
    // set by name only.
    ok(&p, &["add", s(&images_dir)]);
    let res = dir.path().join("res.json");
    write_json(
        &res,
        &json!([
            {"image_id": 10, "category_id": 3, "bbox": [10, 10, 20, 20], "score": 0.9},
            {"image_id": 11, "category_id": 3, "bbox": [10, 10, 20, 20], "score": 0.8},
            {"image_id": 99, "category_id": 3, "bbox": [1, 1, 2, 2], "score": 0.5},
            {"image_id": 10, "category_id": 42, "bbox": [1, 1, 2, 2], "score": 0.4}
        ]),
    );
    // Without --gt and no recorded ids: a refusal, never classes named by number.
    let err = fails(
        &p,
        &["import", "--format", "coco-results", s(&res), "--run", "m"],
    );
    assert!(err.contains("cannot map"), "{err}");
    assert!(
        err.contains("image_id 10") && err.contains("category_id 3"),
        "{err}"
    );
    let st = stats(&p);
    assert_eq!(st["runs"], 0, "{st}");
    assert_eq!(st["classes"], 0, "{st}");
    assert_eq!(st["proposals"], 0, "{st}");

    // With --gt, image 99 and category 42 are not in the GT; "car" is not a project class yet.
    let gt = dir.path().join("gt.json");
    let err = fails(
        &p,
        &[
            "import",
            "--format",
            "coco-results",
            s(&res),
            "--gt",
            s(&gt),
            "--run",
            "m",
        ],
    );
    assert!(
        err.contains("category_id 3 (`car`: the project has no class"),
        "{err}"
    );
    assert!(err.contains("image_id 99"), "{err}");
    assert!(err.contains("Nothing was imported"), "{err}");
    assert_eq!(stats(&p)["runs"], 0);

    // Once the project has the class, only the unknown ids remain; --allow-unmapped skips them
    // and says so first.
    Project::open(&p)
        .expect("open")
        .ensure_class("car")
        .expect("class");
    let out = run(
        &p,
        &[
            "import",
            "--format",
            "coco-results",
            s(&res),
            "--gt",
            s(&gt),
            "--run",
            "m",
            "--allow-unmapped",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("skipped (--allow-unmapped): 2 of 4 detections"),
        "{err}"
    );
    let st = stats(&p);
    assert_eq!(st["proposals"], 2, "{st}");
    assert_eq!(st["images"], 2, "{st}");
}

#[test]
fn an_ambiguous_file_name_is_told_apart_by_content_under_images() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_png(&dir.path().join("a/x.png"), 32, 32, 1);
    write_png(&dir.path().join("b/x.png"), 32, 32, 2);
    let p = new_project(dir.path());
    ok(
        &p,
        &["add", s(&dir.path().join("a")), s(&dir.path().join("b"))],
    );
    Project::open(&p)
        .expect("open")
        .ensure_class("car")
        .expect("class");
    let gt = dir.path().join("gt.json");
    write_json(
        &gt,
        &json!({"images": [{"id": 1, "file_name": "x.png", "width": 32, "height": 32}],
            "annotations": [], "categories": [{"id": 1, "name": "car"}]}),
    );
    let res = dir.path().join("res.json");
    write_json(
        &res,
        &json!([{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.5}]),
    );
    let import = |run_name: &str, images: Option<&Path>| {
        let mut args = vec![
            "import",
            "--format",
            "coco-results",
            s(&res),
            "--gt",
            s(&gt),
            "--run",
            run_name,
        ];
        if let Some(i) = images {
            args.extend(["--images", s(i)]);
        }
        run(&p, &args)
    };
    let out = import("m", None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a/x.png") && err.contains("b/x.png"), "{err}");
    // The model's copy of the image, elsewhere, has b's content.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("dir");
    std::fs::copy(dir.path().join("b/x.png"), elsewhere.join("x.png")).expect("copy");
    let out = import("m", Some(&elsewhere));
    assert!(out.status.success(), "{out:?}");
    let project = Project::open(&p).expect("open");
    let b = project
        .image_by_path("b/x.png")
        .expect("query")
        .expect("image");
    assert_eq!(project.annotations_for_image(b.id).expect("boxes").len(), 1);
}
