//! Tests of the CVAT XML and Label Studio JSON formats: data-driven over the real CVAT exports
//! in `tests/data/third_party` and the Label Studio fixtures in `tests/data/labelstudio`, round
//! trips of random datasets, and malformed input.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::model::{AttributeValue, Attributes, BBox, Dataset, DatasetBox, DatasetImage};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

const CVAT_TASK: &str =
    "third_party/datumaro/tests/assets/cvat_dataset/for_images/export_task/train.xml";
const CVAT_PROJECT: &str =
    "third_party/datumaro/tests/assets/cvat_dataset/for_images/export_project/annotations.xml";
const LS_FULL: &str = "labelstudio/project-1-at-2024-05-13-14-26-9aaf565b.json";
const LS_MIN: &str = "labelstudio/project-1-at-2024-05-13-14-27-json-min.json";

fn import_as(format: Format, path: &Path, shapes_as_boxes: bool) -> Result<Parsed, FormatError> {
    import_with(
        format,
        path,
        &ImportSettings {
            images_dir: None,
            shapes_as_boxes,
            ..ImportSettings::default()
        },
    )
}

/// (images, boxes, classes, skipped) of an import.
fn counts(p: &Parsed) -> (usize, usize, usize, usize) {
    let boxes = p.dataset.images.iter().map(|i| i.boxes.len()).sum();
    (
        p.dataset.images.len(),
        boxes,
        p.dataset.classes.len(),
        p.skipped,
    )
}

fn close(a: BBox, b: BBox, tol: f64) -> bool {
    (a.x - b.x).abs() <= tol
        && (a.y - b.y).abs() <= tol
        && (a.w - b.w).abs() <= tol
        && (a.h - b.h).abs() <= tol
}

/// Attributes as the CVAT importer types them: `occluded="1"` a boolean, other values as
/// `AttributeValue::from_text` reads them.
fn attrs(pairs: &[(&str, &str)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| {
            let value = if *k == "occluded" && *v == "1" {
                AttributeValue::Bool(true)
            } else {
                AttributeValue::from_text(v)
            };
            (*k, value)
        })
        .collect()
}

fn has_warning(p: &Parsed, kind: &str) -> bool {
    p.warnings.iter().any(|w| w.kind == kind)
}

// ---------------------------------------------------------------------------------------------
// Data-driven: every real file, with what reading it by hand says

/// One file, how it is imported, and (images, boxes, classes, skipped).
struct Case {
    path: &'static str,
    format: Format,
    shapes_as_boxes: bool,
    expect: (usize, usize, usize, usize),
    why: &'static str,
}

const CASES: &[Case] = &[
    Case {
        path: CVAT_TASK,
        format: Format::Cvat,
        shapes_as_boxes: false,
        expect: (2, 1, 2, 3),
        why: "task export: one box on img0; a polyline, a polygon and points skipped",
    },
    Case {
        path: CVAT_TASK,
        format: Format::Cvat,
        shapes_as_boxes: true,
        expect: (2, 2, 2, 2),
        why: "polyline and polygon have label=\"\" (skipped); the points of label2 become a box",
    },
    Case {
        path: CVAT_PROJECT,
        format: Format::Cvat,
        shapes_as_boxes: false,
        expect: (6, 3, 2, 9),
        why: "project export: 3 subsets x (img0 with a box, img1); 3 other shapes per subset",
    },
    Case {
        path: CVAT_PROJECT,
        format: Format::Cvat,
        shapes_as_boxes: true,
        expect: (6, 12, 2, 0),
        why: "every other shape is labelled here, so all 9 become boxes",
    },
    Case {
        path: LS_FULL,
        format: Format::LabelStudio,
        shapes_as_boxes: false,
        expect: (3, 3, 3, 3),
        why: "2 boxes on task 1, 1 on task 2 (newest live annotation); polygon, choices and the older annotation's box skipped; bird only in predictions",
    },
    Case {
        path: LS_FULL,
        format: Format::LabelStudio,
        shapes_as_boxes: true,
        expect: (3, 4, 3, 2),
        why: "the polygon becomes its bounding box",
    },
    Case {
        path: LS_MIN,
        format: Format::LabelStudio,
        shapes_as_boxes: false,
        expect: (3, 3, 2, 2),
        why: "JSON-MIN: two records of task 2, the older one skipped; the polygon skipped; `scene` is a flattened choice",
    },
];

#[test]
fn cvat_and_labelstudio_testdata() {
    for c in CASES {
        println!(
            "{} as {} (shapes as boxes: {}): {}",
            c.path, c.format, c.shapes_as_boxes, c.why
        );
        let parsed = import_as(c.format, &data(c.path), c.shapes_as_boxes)
            .unwrap_or_else(|e| panic!("{}: {e}", c.path));
        assert_eq!(
            counts(&parsed),
            c.expect,
            "{}: {:#?}",
            c.path,
            parsed.warnings
        );
        for img in &parsed.dataset.images {
            for b in &img.boxes {
                assert!(b.class < parsed.dataset.classes.len());
                assert!(b.bbox.w > 0.0 && b.bbox.h > 0.0);
            }
        }
    }
}

#[test]
fn every_cvat_file_in_the_testdata_has_a_case() {
    let root = data("third_party");
    for entry in walkdir::WalkDir::new(&root) {
        let entry = entry.expect("walk");
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "xml") {
            let text = std::fs::read_to_string(p).expect("read");
            if text.contains("<annotations>") && text.contains("<version>1.1</version>") {
                let rel = p
                    .strip_prefix(data(""))
                    .expect("inside")
                    .to_string_lossy()
                    .into_owned();
                assert!(
                    CASES.iter().any(|c| c.path == rel),
                    "CVAT file without a case: {rel}"
                );
            }
        }
    }
}

#[test]
fn cvat_task_export_box_attributes_and_labels() {
    let p = import_as(Format::Cvat, &data(CVAT_TASK), false).expect("import");
    assert_eq!(p.dataset.classes, ["label1", "label2"], "meta order");
    let img0 = &p.dataset.images[0];
    assert_eq!(
        (img0.file_name.as_str(), img0.width, img0.height),
        ("img0.jpg", 8, 8)
    );
    assert!(
        p.images_dir.ends_with("export_task/images"),
        "{}",
        p.images_dir.display()
    );
    let b = &img0.boxes[0];
    // <box label="label1" occluded="1" xbr="4" xtl="0" ybr="4" ytl="2" z_order="1">
    assert_eq!((b.class, b.bbox), (0, BBox::new(0.0, 2.0, 4.0, 2.0)));
    assert_eq!(
        b.attributes,
        attrs(&[
            ("occluded", "1"),
            ("z_order", "1"),
            ("a1", "true"),
            ("a2", "v3"),
            ("a3", "0003"),
            ("a4", "2.4"),
        ])
    );
    assert!(has_warning(&p, "skipped_shape"));
    let as_boxes = import_as(Format::Cvat, &data(CVAT_TASK), true).expect("import");
    // <points label="label2" points="1,2;3,4;5,6"> on the 10x10 img1.
    let img1 = &as_boxes.dataset.images[1];
    assert_eq!(img1.boxes.len(), 1);
    assert_eq!(
        (img1.boxes[0].class, img1.boxes[0].bbox),
        (1, BBox::new(1.0, 2.0, 4.0, 4.0))
    );
    assert!(has_warning(&as_boxes, "unlabelled_shape"));
}

#[test]
fn cvat_project_export_keeps_subsets_apart() {
    let p = import_as(Format::Cvat, &data(CVAT_PROJECT), true).expect("import");
    let names: Vec<&str> = p
        .dataset
        .images
        .iter()
        .map(|i| i.file_name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "Test/img0.jpg",
            "Test/img1.jpg",
            "Train/img0.jpg",
            "Train/img1.jpg",
            "Validation/img0.jpg",
            "Validation/img1.jpg"
        ]
    );
    // Train/img0: the box, then <polyline label="label2" points="1.0,2;3,4;5,6;7,8">.
    let img = &p.dataset.images[2];
    assert_eq!(img.boxes[0].bbox, BBox::new(0.0, 2.0, 4.0, 2.0));
    assert_eq!(
        (img.boxes[1].class, img.boxes[1].bbox),
        (1, BBox::new(1.0, 2.0, 6.0, 6.0))
    );
    // Train/img1: <polygon label="label1" points="1,2;3,4;6,5">.
    let img = &p.dataset.images[3];
    assert_eq!(
        (img.boxes[0].class, img.boxes[0].bbox),
        (0, BBox::new(1.0, 2.0, 5.0, 3.0))
    );
}

#[test]
fn labelstudio_full_export_boxes_predictions_and_references() {
    let p = import_as(Format::LabelStudio, &data(LS_FULL), false).expect("import");
    assert_eq!(p.dataset.classes, ["cat", "dog", "bird"]);
    let names: Vec<&str> = p
        .dataset
        .images
        .iter()
        .map(|i| i.file_name.as_str())
        .collect();
    // Not found on disk: the upload prefix is stripped, local files keep their folder.
    assert_eq!(names, ["cat_01.jpg", "pets/dog_02.jpg", "bird_03.jpg"]);
    let cat = &p.dataset.images[0];
    assert_eq!((cat.width, cat.height), (640, 480));
    assert!(close(
        cat.boxes[0].bbox,
        BBox::new(80.0, 120.0, 160.0, 180.0),
        1e-9
    ));
    assert!(
        close(
            cat.boxes[1].bbox,
            BBox::new(296.0, 48.0, 134.851_251_6, 105.569_219_4),
            1e-6
        ),
        "{:?}",
        cat.boxes[1].bbox
    );
    assert!(
        cat.boxes
            .iter()
            .all(|b| b.score.is_none() && b.id.is_none())
    );
    let dog = &p.dataset.images[1];
    assert_eq!(dog.boxes.len(), 1);
    assert!(close(
        dog.boxes[0].bbox,
        BBox::new(80.0, 60.0, 400.0, 300.0),
        1e-9
    ));
    for kind in [
        "rotated_box",
        "extra_annotations",
        "skipped_region",
        "unresolved_image",
    ] {
        assert!(
            has_warning(&p, kind),
            "no {kind} warning: {:#?}",
            p.warnings
        );
    }

    assert_eq!(p.predictions.len(), 2);
    let n = &p.predictions[0];
    assert_eq!(n.model, "yolov8n-2024-05");
    let seen: Vec<(&str, usize)> = n
        .dataset
        .images
        .iter()
        .map(|i| (i.file_name.as_str(), i.boxes.len()))
        .collect();
    assert_eq!(
        seen,
        [("cat_01.jpg", 2), ("bird_03.jpg", 0)],
        "an empty prediction still counts"
    );
    let b = &n.dataset.images[0].boxes;
    assert_eq!(
        (b[0].score, b[1].score),
        (Some(0.91), Some(0.87)),
        "region score, else the prediction's"
    );
    assert!(close(b[0].bbox, BBox::new(76.8, 115.2, 166.4, 182.4), 1e-9));
    assert!(close(b[1].bbox, BBox::new(448.0, 288.0, 64.0, 48.0), 1e-9));
    let s = &p.predictions[1];
    assert_eq!(s.model, "yolov8s-2024-06");
    let bird = &s.dataset.images[0];
    assert_eq!((bird.width, bird.height), (1024, 768));
    assert_eq!(s.dataset.classes[bird.boxes[0].class], "bird");
    assert!(close(
        bird.boxes[0].bbox,
        BBox::new(256.0, 192.0, 512.0, 384.0),
        1e-9
    ));

    let as_boxes = import_as(Format::LabelStudio, &data(LS_FULL), true).expect("import");
    assert!(close(
        as_boxes.dataset.images[1].boxes[1].bbox,
        BBox::new(480.0, 360.0, 240.0, 180.0),
        1e-9
    ));
}

#[test]
fn labelstudio_json_min_matches_the_full_export() {
    let full = import_as(Format::LabelStudio, &data(LS_FULL), false).expect("full");
    let min = import_as(Format::LabelStudio, &data(LS_MIN), false).expect("min");
    let boxes = |p: &Parsed| -> Vec<(String, String, BBox)> {
        p.dataset
            .images
            .iter()
            .flat_map(|i| {
                i.boxes.iter().map(|b| {
                    (
                        i.file_name.clone(),
                        p.dataset.classes[b.class].clone(),
                        b.bbox,
                    )
                })
            })
            .collect()
    };
    assert_eq!(boxes(&full), boxes(&min));
    assert!(min.predictions.is_empty());
}

#[test]
fn labelstudio_references_resolve_by_file_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["uploads/cat_01.jpg", "pets/dog_02.jpg", "x/bird_03.jpg"] {
        let p = dir.path().join(f);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, b"not read").expect("write");
    }
    let settings = ImportSettings {
        images_dir: Some(dir.path().to_path_buf()),
        shapes_as_boxes: false,
        ..ImportSettings::default()
    };
    let p = import_with(Format::LabelStudio, &data(LS_FULL), &settings).expect("import");
    let names: Vec<&str> = p
        .dataset
        .images
        .iter()
        .map(|i| i.file_name.as_str())
        .collect();
    assert_eq!(
        names,
        ["uploads/cat_01.jpg", "pets/dog_02.jpg", "x/bird_03.jpg"]
    );
    assert!(!has_warning(&p, "unresolved_image"));
    // A second bird_03.jpg makes the name ambiguous: refused, naming both.
    std::fs::create_dir_all(dir.path().join("y")).expect("mkdir");
    std::fs::write(dir.path().join("y/bird_03.jpg"), b"x").expect("write");
    let err = import_with(Format::LabelStudio, &data(LS_FULL), &settings)
        .expect_err("ambiguous")
        .to_string();
    assert!(
        err.contains("x/bird_03.jpg") && err.contains("y/bird_03.jpg") && err.contains("task 3"),
        "{err}"
    );
}

#[test]
fn cvat_video_tracks_become_per_frame_boxes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let xml = dir.path().join("annotations.xml");
    std::fs::write(
        &xml,
        r#"<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <mode>interpolation</mode>
      <labels><label><name>car</name></label><label><name>person</name></label></labels>
      <original_size><width>640</width><height>360</height></original_size>
    </task>
  </meta>
  <track id="0" label="car" source="manual">
    <box frame="0" keyframe="1" outside="0" occluded="0" xtl="10.5" ytl="20" xbr="110.5" ybr="70" z_order="0">
      <attribute name="color">red</attribute>
    </box>
    <box frame="1" keyframe="0" outside="0" occluded="1" xtl="12" ytl="20" xbr="112" ybr="70" z_order="0">
      <attribute name="color">red</attribute>
    </box>
    <box frame="2" keyframe="1" outside="1" occluded="0" xtl="14" ytl="20" xbr="114" ybr="70" z_order="0"/>
  </track>
  <track id="1" label="person" source="manual">
    <polygon frame="1" keyframe="1" outside="0" occluded="0" points="1,1;5,1;5,9" z_order="0"/>
  </track>
</annotations>
"#,
    )
    .expect("write");
    let p = import_as(Format::Cvat, &xml, false).expect("import");
    assert_eq!(counts(&p), (2, 2, 2, 1));
    let names: Vec<&str> = p
        .dataset
        .images
        .iter()
        .map(|i| i.file_name.as_str())
        .collect();
    assert_eq!(names, ["frame_000000.png", "frame_000001.png"]);
    assert_eq!(
        (p.dataset.images[0].width, p.dataset.images[0].height),
        (640, 360)
    );
    assert_eq!(
        p.dataset.images[0].boxes[0].bbox,
        BBox::new(10.5, 20.0, 100.0, 50.0)
    );
    assert_eq!(
        p.dataset.images[0].boxes[0].attributes,
        attrs(&[("track", "0"), ("color", "red")])
    );
    assert_eq!(
        p.dataset.images[1].boxes[0].attributes,
        attrs(&[("occluded", "1"), ("track", "0"), ("color", "red")])
    );
    // With frames on disk the extension is theirs.
    std::fs::create_dir_all(dir.path().join("images")).expect("mkdir");
    std::fs::write(dir.path().join("images/frame_000000.jpg"), b"x").expect("write");
    let p = import_as(Format::Cvat, &xml, true).expect("import");
    assert_eq!(p.dataset.images[0].file_name, "frame_000000.jpg");
    assert_eq!(
        p.dataset.images[1].boxes[1].bbox,
        BBox::new(1.0, 1.0, 4.0, 8.0)
    );
}

#[test]
fn cvat_rotated_boxes_undeclared_labels_and_other_shapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let xml = dir.path().join("a.xml");
    std::fs::write(
        &xml,
        r#"<annotations><version>1.1</version>
<meta><project><labels><label><name>a</name></label></labels></project></meta>
<image id="0" name="x.jpg" width="100" height="100">
  <box label="a" occluded="0" xtl="10" ytl="10" xbr="30" ybr="50" rotation="90" z_order="0"/>
  <box label="new" occluded="0" xtl="1" ytl="1" xbr="2" ybr="2" z_order="3"/>
  <ellipse label="a" cx="50" cy="50" rx="10" ry="5" occluded="0" z_order="0"/>
  <mask label="a" rle="1, 2" left="5" top="6" width="7" height="8" occluded="0" z_order="0"/>
  <tag label="a"/>
</image></annotations>"#,
    )
    .expect("write");
    let p = import_as(Format::Cvat, &xml, true).expect("import");
    assert_eq!(p.dataset.classes, ["a", "new"]);
    let b = &p.dataset.images[0].boxes;
    assert!(
        close(b[0].bbox, BBox::new(0.0, 20.0, 40.0, 20.0), 1e-9),
        "{:?}",
        b[0].bbox
    );
    assert_eq!(b[1].attributes, attrs(&[("z_order", "3")]));
    assert_eq!(b[2].bbox, BBox::new(40.0, 45.0, 20.0, 10.0));
    assert_eq!(b[3].bbox, BBox::new(5.0, 6.0, 7.0, 8.0));
    assert_eq!((b.len(), p.skipped), (4, 1), "the tag has no box");
    for kind in ["rotated_box", "undeclared_label", "skipped_shape"] {
        assert!(has_warning(&p, kind), "no {kind}: {:#?}", p.warnings);
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed input: refused whole, naming the file and the record

fn refused(format: Format, name: &str, text: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    let err = import_as(format, &path, false)
        .expect_err("must be refused")
        .to_string();
    assert!(err.contains(name), "the error names the file: {err}");
    err
}

const CVAT_HEAD: &str = r#"<annotations><version>1.1</version>
<meta><task><labels><label><name>a</name></label></labels></task></meta>
<image id="0" name="x.jpg" width="100" height="100">
"#;

#[test]
fn cvat_malformed_input_is_refused() {
    let err = refused(
        Format::Cvat,
        "cut.xml",
        &format!("{CVAT_HEAD}  <box label=\"a\" xtl=\"1\""),
    );
    assert!(err.contains("cut.xml:4:"), "{err}");
    let err = refused(
        Format::Cvat,
        "unclosed.xml",
        &format!("{CVAT_HEAD}  <box label=\"a\" xtl=\"1\" ytl=\"1\" xbr=\"2\" ybr=\"2\"/>\n"),
    );
    assert!(err.contains("not closed"), "{err}");
    let body = |b: &str| format!("{CVAT_HEAD}  {b}\n</image></annotations>");
    let err = refused(
        Format::Cvat,
        "swapped.xml",
        &body(r#"<box label="a" xtl="50" ytl="1" xbr="20" ybr="2"/>"#),
    );
    assert!(err.contains("line 4") && err.contains("swapped"), "{err}");
    let err = refused(
        Format::Cvat,
        "nan.xml",
        &body(r#"<box label="a" xtl="1" ytl="one" xbr="20" ybr="2"/>"#),
    );
    assert!(err.contains("`ytl` is not a number: `one`"), "{err}");
    let err = refused(
        Format::Cvat,
        "nolabel.xml",
        &body(r#"<box label="" xtl="1" ytl="1" xbr="20" ybr="2"/>"#),
    );
    assert!(err.contains("empty label"), "{err}");
    let err = refused(
        Format::Cvat,
        "nocorner.xml",
        &body(r#"<box label="a" xtl="1" ytl="1" xbr="20"/>"#),
    );
    assert!(err.contains("ybr"), "{err}");
    let err = refused(
        Format::Cvat,
        "voc.xml",
        "<annotation><filename>a.jpg</filename></annotation>",
    );
    assert!(err.contains("not a CVAT XML file"), "{err}");
}

const LS_TASK: &str = r#"[{"id": 7, "data": {"image": "/data/upload/1/0a1b2c3d-a.jpg"},
 "annotations": [{"id": 1, "result": [RESULT]}]}]"#;

fn ls_with(value: &str) -> String {
    LS_TASK.replace(
        "RESULT",
        &format!(
            r#"{{"id": "r1", "type": "rectanglelabels", "from_name": "label", "to_name": "image", {value}}}"#
        ),
    )
}

#[test]
fn labelstudio_malformed_input_is_refused() {
    let err = refused(
        Format::LabelStudio,
        "nosize.json",
        &ls_with(r#""value": {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["a"]}"#),
    );
    assert!(
        err.contains("original_width") && err.contains("task 1 (id 7)"),
        "{err}"
    );
    let err = refused(
        Format::LabelStudio,
        "text.json",
        &ls_with(
            r#""original_width": 10, "original_height": 10, "value": {"x": "1", "y": 1, "width": 5, "height": 5, "rectanglelabels": ["a"]}"#,
        ),
    );
    assert!(err.contains("`x` is not a number"), "{err}");
    let err = refused(
        Format::LabelStudio,
        "nolabel.json",
        &ls_with(
            r#""original_width": 10, "original_height": 10, "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": []}"#,
        ),
    );
    assert!(err.contains("refers to no label"), "{err}");
    let err = refused(
        Format::LabelStudio,
        "negative.json",
        &ls_with(
            r#""original_width": 10, "original_height": 10, "value": {"x": 1, "y": 1, "width": -5, "height": 5, "rectanglelabels": ["a"]}"#,
        ),
    );
    assert!(err.contains("negative"), "{err}");
    let err = refused(
        Format::LabelStudio,
        "cut.json",
        "[{\"id\": 1,\n \"data\": {",
    );
    assert!(err.contains("cut.json:2:"), "{err}");
    let err = refused(
        Format::LabelStudio,
        "noimage.json",
        r#"[{"id": 1, "data": {"text": "hi"}, "annotations": []}]"#,
    );
    assert!(err.contains("data.image"), "{err}");
    let err = refused(
        Format::LabelStudio,
        "coco.json",
        r#"{"images": [], "annotations": []}"#,
    );
    assert!(err.contains("not a Label Studio export"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Round trips

fn class_names() -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set("[a-z][a-z0-9 _&<>\"-]{0,8}[a-z]", 1..5)
        .prop_map(|s| s.into_iter().collect())
}

fn attribute_values() -> impl Strategy<Value = Attributes> {
    (
        prop::bool::ANY,
        0..3u8,
        prop::collection::vec(("[a-z][a-z_]{0,5}", "[A-Za-z0-9 .&<>'\"-]{0,6}"), 0..3),
    )
        .prop_map(|(occluded, z, extra)| {
            let mut v = Attributes::new();
            if occluded {
                v.insert("occluded", true);
            }
            if z > 0 {
                v.insert("z_order", i64::from(z));
            }
            for (k, val) in extra {
                // Attribute values are trimmed on import, as CVAT does.
                if k != "occluded" && k != "z_order" && v.get(&k).is_none() {
                    v.insert(k, AttributeValue::from_text(val.trim()));
                }
            }
            v
        })
}

fn dataset(with_attributes: bool) -> impl Strategy<Value = Dataset> {
    class_names().prop_flat_map(move |classes| {
        let n = classes.len();
        let image = (
            1u32..3000,
            1u32..3000,
            prop::collection::vec(
                (
                    0..n,
                    0.0f64..1.0,
                    0.0f64..1.0,
                    0.01f64..1.0,
                    0.01f64..1.0,
                    attribute_values(),
                    prop::option::of(any::<u128>()),
                ),
                0..5,
            ),
        );
        prop::collection::vec(image, 0..5).prop_map(move |imgs| Dataset {
            classes: classes.clone(),
            images: imgs
                .into_iter()
                .enumerate()
                .map(|(i, (w, h, boxes))| DatasetImage {
                    file_name: format!("dir {i}/img&{i}.jpg"),
                    width: w,
                    height: h,
                    external_id: None,
                    boxes: boxes
                        .into_iter()
                        .map(|(class, fx, fy, fw, fh, attributes, id)| {
                            let (w, h) = (f64::from(w), f64::from(h));
                            let x = fx * w * 0.9;
                            let y = fy * h * 0.9;
                            DatasetBox {
                                class,
                                bbox: BBox::new(
                                    x,
                                    y,
                                    (fw * (w - x)).max(0.01),
                                    (fh * (h - y)).max(0.01),
                                ),
                                attributes: if with_attributes {
                                    attributes
                                } else {
                                    Attributes::new()
                                },
                                id: if with_attributes {
                                    None
                                } else {
                                    id.map(Uuid::from_u128)
                                },
                                ..DatasetBox::default()
                            }
                        })
                        .collect(),
                })
                .collect(),
        })
    })
}

fn same_boxes(a: &Dataset, b: &Dataset, tol: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(&a.classes, &b.classes);
    prop_assert_eq!(a.images.len(), b.images.len());
    for (x, y) in a.images.iter().zip(&b.images) {
        prop_assert_eq!(&x.file_name, &y.file_name);
        prop_assert_eq!((x.width, x.height), (y.width, y.height));
        prop_assert_eq!(x.boxes.len(), y.boxes.len());
        for (p, q) in x.boxes.iter().zip(&y.boxes) {
            prop_assert_eq!(p.class, q.class);
            prop_assert!(close(p.bbox, q.bbox, tol), "{:?} != {:?}", p.bbox, q.bbox);
            prop_assert_eq!(&p.attributes, &q.attributes);
            prop_assert_eq!(p.id, q.id);
        }
    }
    Ok(())
}

/// Classes no box uses are still declared in CVAT's `<meta>`, but Label Studio has no place for
/// them: its round trip compares the classes the boxes use, in first-use order.
fn used_classes_in_order(ds: &Dataset) -> Dataset {
    let mut order: Vec<usize> = Vec::new();
    for b in ds.images.iter().flat_map(|i| &i.boxes) {
        if !order.contains(&b.class) {
            order.push(b.class);
        }
    }
    let mut out = ds.clone();
    out.classes = order.iter().map(|&c| ds.classes[c].clone()).collect();
    for b in out.images.iter_mut().flat_map(|i| &mut i.boxes) {
        b.class = order.iter().position(|&c| c == b.class).expect("used");
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn cvat_round_trip(ds in dataset(true)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let report = export(Format::Cvat, &ds, &out, None).expect("export");
        prop_assert_eq!(report.files_written, 1);
        let back = import_as(Format::Cvat, &out.join("annotations.xml"), false).expect("import");
        prop_assert!(back.warnings.is_empty(), "{:#?}", back.warnings);
        same_boxes(&ds, &back.dataset, 1e-9)?;
    }

    #[test]
    fn labelstudio_round_trip(ds in dataset(false)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("tasks.json");
        export(Format::LabelStudio, &ds, &out, None).expect("export");
        let back = import_as(Format::LabelStudio, &out, false).expect("import");
        let mut expected = used_classes_in_order(&ds);
        // Label Studio learns an image's size from its regions only.
        for img in &mut expected.images {
            if img.boxes.is_empty() {
                img.width = 0;
                img.height = 0;
            }
        }
        same_boxes(&expected, &back.dataset, 1e-6)?;
        prop_assert!(back.predictions.is_empty());
    }
}

#[test]
fn labelstudio_export_has_what_label_studio_imports() {
    let ds = Dataset {
        classes: vec!["cat".into()],
        images: vec![DatasetImage {
            file_name: "a b/c.jpg".into(),
            width: 200,
            height: 100,
            external_id: None,
            boxes: vec![DatasetBox {
                class: 0,
                bbox: BBox::new(20.0, 10.0, 50.0, 25.0),
                ..DatasetBox::default()
            }],
        }],
    };
    let dir = tempfile::tempdir().expect("tempdir");
    export(Format::LabelStudio, &ds, dir.path(), None).expect("export");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("tasks.json")).expect("read"))
            .expect("json");
    let task = &v[0];
    assert_eq!(task["data"]["image"], "/data/local-files/?d=a%20b/c.jpg");
    let r = &task["annotations"][0]["result"][0];
    assert_eq!(r["type"], "rectanglelabels");
    assert_eq!(
        (r["from_name"].as_str(), r["to_name"].as_str()),
        (Some("label"), Some("image"))
    );
    assert_eq!(
        (r["original_width"].as_u64(), r["original_height"].as_u64()),
        (Some(200), Some(100))
    );
    assert_eq!(r["value"]["rectanglelabels"][0], "cat");
    assert_eq!(
        (r["value"]["x"].as_f64(), r["value"]["width"].as_f64()),
        (Some(10.0), Some(25.0))
    );
    assert!(r["id"].as_str().is_some_and(|s| !s.is_empty()));
    // An image with boxes but no size cannot be written in percent.
    let mut unsized_ds = ds.clone();
    unsized_ds.images[0].width = 0;
    assert!(export(Format::LabelStudio, &unsized_ds, dir.path(), None).is_err());
}

#[test]
fn cvat_export_declares_labels_and_attributes() {
    let ds = Dataset {
        classes: vec!["car".into(), "unused".into()],
        images: vec![DatasetImage {
            file_name: "f.jpg".into(),
            width: 20,
            height: 10,
            external_id: None,
            boxes: vec![DatasetBox {
                class: 0,
                bbox: BBox::new(1.0, 2.0, 3.0, 4.0),
                attributes: attrs(&[("occluded", "1"), ("color", "red")]),
                ..DatasetBox::default()
            }],
        }],
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("x.xml");
    export(Format::Cvat, &ds, &out, None).expect("export");
    let xml = std::fs::read_to_string(&out).expect("read");
    assert!(xml.contains("<version>1.1</version>"));
    assert!(
        xml.contains("<name>unused</name>"),
        "every class is declared: {xml}"
    );
    assert!(xml.contains("<name>color</name>"));
    assert!(xml.contains(r#"<box label="car" source="manual" occluded="1" xtl="1" ytl="2" xbr="4" ybr="6" z_order="0">"#), "{xml}");
    assert!(xml.contains(r#"<attribute name="color">red</attribute>"#));
    let back = import_as(Format::Cvat, &out, false).expect("import");
    assert_eq!(back.dataset.classes, ds.classes);
}
