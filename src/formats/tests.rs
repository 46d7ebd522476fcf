//! Tests of the importers and exporters: data-driven over third-party files, round trips of
//! random datasets, and malformed input.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::model::{Attributes, BBox, BoxFlags, Dataset, DatasetBox, DatasetImage};

// ---------------------------------------------------------------------------------------------
// Data-driven tests over tests/data/third_party

/// The third-party test material in the repository (`tests/data/third_party`; binaries in it are
/// fetched by `scripts/fetch-testdata.sh`).
fn testdata() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/third_party");
    assert!(
        dir.is_dir(),
        "test data not found at {}: run scripts/fetch-testdata.sh (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// What an import of a test file must give.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Imported, with exactly these counts.
    Counts {
        images: usize,
        boxes: usize,
        classes: usize,
        skipped: usize,
    },
    /// Refused, with this text in the error message.
    Refused(&'static str),
}

const fn counts(images: usize, boxes: usize, classes: usize, skipped: usize) -> Expect {
    Expect::Counts {
        images,
        boxes,
        classes,
        skipped,
    }
}

/// One third-party file or folder, how it is imported, and what that must give. `why` says what
/// reading the file told us.
struct Case {
    path: &'static str,
    format: Format,
    images_dir: Option<&'static str>,
    expect: Expect,
    why: &'static str,
}

const fn case(path: &'static str, format: Format, expect: Expect, why: &'static str) -> Case {
    Case {
        path,
        format,
        images_dir: None,
        expect,
        why,
    }
}

/// Imports `path` (relative to the test data) and checks the outcome; returns what was parsed.
fn check(path: &str, format: Format, expect: Expect) -> Option<Parsed> {
    check_with_images(path, format, None, expect)
}

fn check_with_images(
    path: &str,
    format: Format,
    images_dir: Option<&str>,
    expect: Expect,
) -> Option<Parsed> {
    let root = testdata();
    let full = root.join(path);
    let images = images_dir.map(|d| root.join(d));
    let result = import(format, &full, images.as_deref());
    match (result, expect) {
        (
            Ok(parsed),
            Expect::Counts {
                images,
                boxes,
                classes,
                skipped,
            },
        ) => {
            let got_boxes: usize = parsed.dataset.images.iter().map(|i| i.boxes.len()).sum();
            assert_eq!(
                (
                    parsed.dataset.images.len(),
                    got_boxes,
                    parsed.dataset.classes.len(),
                    parsed.skipped
                ),
                (images, boxes, classes, skipped),
                "{path} as {format}: (images, boxes, classes, skipped) differ; warnings: {:#?}",
                parsed.warnings
            );
            for img in &parsed.dataset.images {
                for b in &img.boxes {
                    assert!(
                        b.class < parsed.dataset.classes.len(),
                        "{path}: class index out of range"
                    );
                    assert!(b.bbox.w > 0.0 && b.bbox.h > 0.0, "{path}: empty box kept");
                    if img.width > 0 {
                        assert!(
                            b.bbox
                                .is_inside(f64::from(img.width), f64::from(img.height)),
                            "{path}: box outside"
                        );
                    }
                }
            }
            Some(parsed)
        }
        (Err(e), Expect::Refused(needle)) => {
            let msg = e.to_string();
            assert!(
                msg.contains(needle),
                "{path} as {format}: error `{msg}` does not mention `{needle}`"
            );
            assert!(
                msg.contains(
                    full.file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default()
                ),
                "{path}: error `{msg}` does not name the file"
            );
            None
        }
        (Ok(parsed), Expect::Refused(needle)) => {
            panic!(
                "{path} as {format}: expected a refusal mentioning `{needle}`, got {:?} images",
                parsed.dataset.images.len()
            )
        }
        (Err(e), Expect::Counts { .. }) => panic!("{path} as {format}: unexpected error: {e}"),
    }
}

/// Every annotation file of the test data, with what reading it by hand said it holds.
const CASES: &[Case] = &[
    // --- COCO instances (datumaro's coco_dataset: one image per file, categories 1, 2, 4) ---
    case(
        "datumaro/tests/assets/coco_dataset/coco/annotations/captions_train.json",
        Format::Coco,
        counts(1, 0, 0, 1),
        "1 caption, no bbox",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco/annotations/captions_val.json",
        Format::Coco,
        counts(1, 0, 0, 2),
        "2 captions",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco/annotations/image_info_train.json",
        Format::Coco,
        counts(1, 0, 0, 0),
        "image table only",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco/annotations/image_info_val.json",
        Format::Coco,
        counts(1, 0, 0, 0),
        "image table only",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco/annotations/instances_train.json",
        Format::Coco,
        counts(1, 1, 3, 0),
        "1 box, categories 1,2,4",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco/annotations/instances_val.json",
        Format::Coco,
        counts(1, 2, 3, 0),
        "polygon box + crowd RLE box",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco/annotations/labels_train.json",
        Format::Coco,
        counts(1, 0, 2, 1),
        "label-only",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco/annotations/labels_val.json",
        Format::Coco,
        counts(1, 0, 2, 2),
        "2 label-only",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco/annotations/panoptic_train.json",
        Format::Coco,
        counts(1, 0, 2, 1),
        "1 panoptic record",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco/annotations/panoptic_val.json",
        Format::Coco,
        counts(1, 0, 2, 1),
        "1 panoptic record (2 segments)",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco/annotations/person_keypoints_train.json",
        Format::Coco,
        counts(1, 1, 2, 0),
        "keypoints with a bbox",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco/annotations/person_keypoints_val.json",
        Format::Coco,
        counts(1, 2, 2, 0),
        "keypoints with bboxes",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco/annotations/stuff_train.json",
        Format::Coco,
        counts(1, 1, 2, 0),
        "stuff RLE with a bbox",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco/annotations/stuff_val.json",
        Format::Coco,
        counts(1, 1, 2, 0),
        "stuff RLE with a bbox",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco_captions/annotations/captions_train.json",
        Format::Coco,
        counts(1, 0, 0, 1),
        "1 caption",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco_captions/annotations/captions_val.json",
        Format::Coco,
        counts(1, 0, 0, 2),
        "2 captions",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco_image_info/annotations/image_info_train.json",
        Format::Coco,
        counts(1, 0, 0, 0),
        "image table only",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco_image_info/annotations/image_info_val.json",
        Format::Coco,
        counts(1, 0, 0, 0),
        "image table only",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco_instances/annotations/instances_train.json",
        Format::Coco,
        counts(1, 1, 3, 0),
        "1 box",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco_instances/annotations/instances_val.json",
        Format::Coco,
        counts(1, 2, 3, 0),
        "crowd RLE + attributes",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco_labels/annotations/labels_train.json",
        Format::Coco,
        counts(1, 0, 2, 1),
        "label-only",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco_labels/annotations/labels_val.json",
        Format::Coco,
        counts(1, 0, 2, 2),
        "2 label-only",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco_panoptic/annotations/panoptic_train.json",
        Format::Coco,
        counts(1, 0, 2, 1),
        "1 panoptic record",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco_panoptic/annotations/panoptic_val.json",
        Format::Coco,
        counts(1, 0, 2, 1),
        "1 panoptic record",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco_person_keypoints/annotations/person_keypoints_train.json",
        Format::Coco,
        counts(1, 1, 2, 0),
        "keypoints with a bbox",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco_person_keypoints/annotations/person_keypoints_val.json",
        Format::Coco,
        counts(1, 2, 2, 0),
        "keypoints with bboxes",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco_stuff/annotations/stuff_train.json",
        Format::Coco,
        counts(1, 1, 2, 0),
        "stuff",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco_stuff/annotations/stuff_val.json",
        Format::Coco,
        counts(1, 1, 2, 0),
        "stuff",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/mmdet_coco/annotations/instances_train.json",
        Format::Coco,
        counts(1, 1, 3, 0),
        "1 box",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/mmdet_coco/annotations/instances_val.json",
        Format::Coco,
        counts(1, 2, 3, 0),
        "2 boxes",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco_roboflow/train/_annotations.coco.json",
        Format::Coco,
        counts(1, 1, 3, 0),
        "1 box",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco_roboflow/val/_annotations.coco.json",
        Format::Coco,
        counts(1, 2, 3, 0),
        "2 boxes",
    ),
    case(
        "datumaro/tests/assets/kaggle_dataset/relaxed_coco/annotations.json",
        Format::Coco,
        counts(2, 2, 2, 0),
        "annotation id 0",
    ),
    case(
        "datumaro/tests/assets/roboflow_dataset/coco/train/_annotations.coco.json",
        Format::Coco,
        counts(2, 2, 2, 0),
        "2 images, 1 box each",
    ),
    case(
        "datumaro/tests/assets/roboflow_dataset/coco/val/_annotations.coco.json",
        Format::Coco,
        counts(1, 2, 2, 0),
        "2 boxes, one crowd",
    ),
    case(
        "labelme/examples/instance_segmentation/data_dataset_coco/annotations.json",
        Format::Coco,
        counts(3, 12, 21, 0),
        "labelme2coco: category 0 = _background_, image id 0",
    ),
    // --- COCO results (cocoapi) ---
    case(
        "cocoapi/results/instances_val2014_fakebbox100_results.json",
        Format::CocoResults,
        counts(99, 734, 75, 0),
        "734 dets on 99 images, 75 category ids",
    ),
    case(
        "cocoapi/results/instances_val2014_fakesegm100_results.json",
        Format::CocoResults,
        counts(0, 0, 0, 734),
        "segmentation-only results",
    ),
    case(
        "cocoapi/results/person_keypoints_val2014_fakekeypoints100_results.json",
        Format::CocoResults,
        counts(0, 0, 0, 125),
        "keypoint results",
    ),
    case(
        "cocoapi/results/captions_val2014_fakecap_results.json",
        Format::CocoResults,
        counts(0, 0, 0, 1000),
        "caption results",
    ),
    // --- YOLO ---
    case(
        "datumaro/tests/assets/yolo_dataset/strict",
        Format::Yolo,
        counts(1, 2, 10, 0),
        "Darknet: obj.data says data/train.txt",
    ),
    case(
        "datumaro/tests/assets/yolo_dataset/strict/obj.data",
        Format::Yolo,
        counts(1, 2, 10, 0),
        "the same, by its obj.data",
    ),
    case(
        "datumaro/tests/assets/yolo_dataset/labels",
        Format::Yolo,
        counts(2, 4, 10, 0),
        "images/{train,val} + labels/{train,val}; README.txt is no label",
    ),
    case(
        "datumaro/tests/assets/yolo_dataset/annotations",
        Format::Yolo,
        counts(1, 2, 10, 0),
        "Annotations/1.txt pairs with Images/1.jpg",
    ),
    case(
        "datumaro/tests/assets/kaggle_dataset/relaxed_yolo",
        Format::Yolo,
        Expect::Refused("no class names"),
        "labels but no names file at all",
    ),
    case(
        "datumaro/tests/assets/roboflow_dataset/yolo",
        Format::Yolo,
        counts(3, 4, 2, 0),
        "val: ../valid/images dangles; val/images exists",
    ),
    case(
        "datumaro/tests/assets/roboflow_dataset/yolo_obb",
        Format::Yolo,
        counts(3, 0, 2, 0),
        "DOTA labelTxt/ is not a YOLO labels/ folder",
    ),
    case(
        "images/ultralytics/ultralytics/cfg/datasets/coco8.yaml",
        Format::Yolo,
        counts(0, 0, 80, 0),
        "names map 0..79, no images shipped",
    ),
    case(
        "images/ultralytics/ultralytics/cfg/datasets/VOC.yaml",
        Format::Yolo,
        counts(0, 0, 20, 0),
        "split lists, names map 0..19",
    ),
    Case {
        path: "labelimg/generated_by_labelimg_writers",
        format: Format::Yolo,
        images_dir: Some("labelimg/tests"),
        expect: counts(1, 2, 2, 0),
        why: "labelImg YOLO writer: classes.txt + test.512.512.txt, image in tests/",
    },
    case(
        "labelimg/generated_by_labelimg_writers",
        Format::Yolo,
        counts(0, 0, 2, 2),
        "without the image the 2 boxes cannot be converted",
    ),
    // --- Pascal VOC ---
    case(
        "datumaro/tests/assets/voc_dataset/voc_dataset1",
        Format::Voc,
        counts(1, 2, 2, 0),
        "cat + person (its <part> head is not a box)",
    ),
    case(
        "datumaro/tests/assets/voc_dataset/voc_dataset2",
        Format::Voc,
        counts(5, 4, 22, 0),
        "labelmap.txt has 22 labels; @.xml has no object",
    ),
    case(
        "datumaro/tests/assets/voc_dataset/voc_dataset3",
        Format::Voc,
        counts(1, 1, 1, 0),
        "one cat",
    ),
    case(
        "datumaro/tests/assets/kaggle_dataset/relaxed_voc1",
        Format::Voc,
        counts(1, 2, 2, 0),
        "annotations/ + images/",
    ),
    case(
        "datumaro/tests/assets/kaggle_dataset/relaxed_voc2",
        Format::Voc,
        counts(1, 2, 2, 0),
        "XML beside the image",
    ),
    case(
        "datumaro/tests/assets/roboflow_dataset/voc",
        Format::Voc,
        counts(3, 4, 2, 0),
        "train/ and val/; xmin xmax ymin ymax order",
    ),
    case(
        "labelme/examples/bbox_detection/data_dataset_voc",
        Format::Voc,
        counts(3, 9, 21, 0),
        "labelme2voc: class_names.txt with _background_",
    ),
    Case {
        path: "labelimg/generated_by_labelimg_writers/test.512.512.xml",
        format: Format::Voc,
        images_dir: Some("labelimg/tests"),
        expect: counts(1, 2, 2, 0),
        why: "labelImg VOC writer: <filename>test</filename> without extension, difficult=1",
    },
    // --- Not the format they are imported as: refused as a whole ---
    case(
        "datumaro/tests/assets/labelme_dataset",
        Format::Voc,
        Expect::Refused("bndbox"),
        "MIT LabelMe XML: <annotation> with polygons, no <bndbox>",
    ),
    case(
        "datumaro/tests/assets/cvat_dataset/for_images/export_project/annotations.xml",
        Format::Voc,
        Expect::Refused("<annotations>"),
        "CVAT XML",
    ),
    case(
        "datumaro/tests/assets/cvat_dataset/for_images/export_task/train.xml",
        Format::Voc,
        Expect::Refused("<annotations>"),
        "CVAT XML",
    ),
    case(
        "datumaro/tests/assets/roboflow_dataset/createml/train/_annotations.createml.json",
        Format::Coco,
        Expect::Refused("JSON array"),
        "CreateML",
    ),
    case(
        "datumaro/tests/assets/roboflow_dataset/createml/val/_annotations.createml.json",
        Format::Coco,
        Expect::Refused("JSON array"),
        "CreateML",
    ),
    case(
        "labelimg/generated_by_labelimg_writers/test.512.512.createml.json",
        Format::Coco,
        Expect::Refused("JSON array"),
        "CreateML",
    ),
    case(
        "datumaro/tests/assets/roboflow_dataset/multiclass/train/_classes.csv",
        Format::Coco,
        Expect::Refused("invalid JSON"),
        "CSV",
    ),
    case(
        "datumaro/tests/assets/roboflow_dataset/multiclass/val/_classes.csv",
        Format::Coco,
        Expect::Refused("invalid JSON"),
        "CSV",
    ),
    case(
        "datumaro/tests/assets/roboflow_dataset/tfrecord/train/train.tfrecord",
        Format::Coco,
        Expect::Refused("invalid JSON"),
        "binary TFRecord",
    ),
    case(
        "datumaro/tests/assets/roboflow_dataset/tfrecord/train/label_map.pbtxt",
        Format::Coco,
        Expect::Refused("invalid JSON"),
        "protobuf text",
    ),
    case(
        "datumaro/tests/assets/roboflow_dataset/tfrecord/val/val.tfrecord",
        Format::Coco,
        Expect::Refused("invalid JSON"),
        "binary TFRecord",
    ),
    case(
        "datumaro/tests/assets/roboflow_dataset/tfrecord/val/label_map.pbtxt",
        Format::Coco,
        Expect::Refused("invalid JSON"),
        "protobuf text",
    ),
    case(
        "labelme/examples/bbox_detection/data_annotated/2011_000003.json",
        Format::Coco,
        Expect::Refused("missing required field `images`"),
        "labelme JSON",
    ),
    case(
        "cocoapi/results/instances_val2014_fakebbox100_results.json",
        Format::Coco,
        Expect::Refused("coco-results"),
        "a results array is not an instances file",
    ),
    case(
        "datumaro/tests/assets/coco_dataset/coco/annotations/instances_val.json",
        Format::CocoResults,
        Expect::Refused("import it as coco"),
        "an instances object is not a results array",
    ),
];

/// Files in the test folders that hold no annotations (or use labelme's own JSON, which Loupe
/// does not read): class lists of other tools, a printed evaluation summary.
/// Open Images files beside the bbox CSVs that the openimages importer reads for names, sizes
/// and rotation, or that hold no boxes (image-level labels, segmentation); the bbox CSVs
/// themselves are cases in `tests_json_csv`.
const OPEN_IMAGES_SIDE_FILES: &[&str] = &["datumaro/tests/assets/open_images_dataset"];

const NOT_ANNOTATIONS: &[&str] = &[
    "labelme/examples/bbox_detection/labels.txt",
    "labelme/examples/instance_segmentation/labels.txt",
    "labelme/examples/video_annotation/labels.txt",
    "labelme/examples/bbox_detection/data_annotated",
    "labelme/examples/instance_segmentation/data_annotated",
    "labelme/examples/video_annotation/data_annotated",
    "labelme/examples/primitives",
    "labelimg/data/predefined_classes.txt",
    "cocoapi/results/val2014_fake_eval_res.txt",
];

fn run_cases(format: Format) {
    for c in CASES.iter().filter(|c| c.format == format) {
        // Shown with the failure message: what reading the file by hand said.
        println!("{} as {}: {}", c.path, c.format, c.why);
        check_with_images(c.path, c.format, c.images_dir, c.expect);
    }
}

#[test]
fn coco_testdata() {
    run_cases(Format::Coco);
}

#[test]
fn coco_results_testdata() {
    run_cases(Format::CocoResults);
}

#[test]
fn yolo_testdata() {
    run_cases(Format::Yolo);
}

#[test]
fn voc_testdata() {
    run_cases(Format::Voc);
}

#[test]
fn every_testdata_annotation_file_has_a_case() {
    let root = testdata();
    let covered: Vec<PathBuf> = CASES
        .iter()
        .map(|c| c.path)
        .chain(NOT_ANNOTATIONS.iter().copied())
        .chain(super::tests_json_csv::REAL.iter().map(|c| c.path))
        .chain(OPEN_IMAGES_SIDE_FILES.iter().copied())
        .map(|p| root.join(p))
        .collect();
    let exts = [
        "json", "xml", "txt", "yaml", "yml", "data", "names", "csv", "pbtxt", "tfrecord",
    ];
    let mut missing = Vec::new();
    for dir in ["datumaro", "labelme", "labelimg", "cocoapi/results"] {
        for entry in walkdir::WalkDir::new(root.join(dir)) {
            let entry = entry.expect("walk test data");
            let p = entry.path();
            let annotation = entry.file_type().is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| exts.contains(&e));
            if annotation && !covered.iter().any(|c| p.starts_with(c)) {
                missing.push(p.display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "annotation files with no case: {missing:#?}"
    );
}

fn boxes_of(parsed: &Parsed) -> Vec<(String, usize, BBox, BoxFlags)> {
    parsed
        .dataset
        .images
        .iter()
        .flat_map(|i| {
            i.boxes
                .iter()
                .map(|b| (i.file_name.clone(), b.class, b.bbox, b.flags))
        })
        .collect()
}

fn close(a: BBox, b: BBox, tol: f64) -> bool {
    (a.x - b.x).abs() <= tol
        && (a.y - b.y).abs() <= tol
        && (a.w - b.w).abs() <= tol
        && (a.h - b.h).abs() <= tol
}

#[test]
fn coco_sparse_categories_and_crowd_flag() {
    let p = check(
        "datumaro/tests/assets/coco_dataset/coco_instances/annotations/instances_val.json",
        Format::Coco,
        counts(1, 2, 3, 0),
    )
    .expect("imported");
    assert_eq!(p.dataset.classes, ["a", "b", "c"]);
    let img = &p.dataset.images[0];
    assert_eq!(
        (
            img.file_name.as_str(),
            img.width,
            img.height,
            img.external_id
        ),
        ("b.jpg", 5, 10, Some(40))
    );
    // category_id 1 -> "a" (index 0), 2 -> "b" (index 1); the second is crowd.
    assert_eq!(img.boxes[0].class, 0);
    assert_eq!(img.boxes[0].bbox, BBox::new(0.0, 0.0, 1.0, 2.0));
    assert!(!img.boxes[0].flags.iscrowd);
    assert_eq!(img.boxes[1].class, 1);
    assert!(img.boxes[1].flags.iscrowd);
    // datumaro's layout: annotations/instances_val.json beside images/val/.
    assert!(
        p.images_dir.ends_with("images/val"),
        "{}",
        p.images_dir.display()
    );
}

#[test]
fn coco_skips_are_warned() {
    let p = check(
        "datumaro/tests/assets/coco_dataset/coco_captions/annotations/captions_val.json",
        Format::Coco,
        counts(1, 0, 0, 2),
    )
    .expect("imported");
    assert_eq!(
        p.warnings
            .iter()
            .filter(|w| w.kind == "skipped_annotation")
            .count(),
        2
    );
    assert!(p.warnings[0].location.contains("annotations[0]"));
}

#[test]
fn labelme_coco_keeps_category_zero_and_subfolders() {
    let p = check(
        "labelme/examples/instance_segmentation/data_dataset_coco/annotations.json",
        Format::Coco,
        counts(3, 12, 21, 0),
    )
    .expect("imported");
    assert_eq!(p.dataset.classes[0], "_background_");
    assert_eq!(p.dataset.classes[15], "person");
    assert_eq!(p.dataset.images[0].file_name, "JPEGImages/2011_000003.jpg");
    assert_eq!(p.dataset.images[0].external_id, Some(0));
    assert!(p.images_dir.join(&p.dataset.images[0].file_name).is_file());
    let (_, class, bbox, _) = &boxes_of(&p)[0];
    assert_eq!((*class, *bbox), (15, BBox::new(191.0, 107.0, 123.0, 221.0)));
}

#[test]
fn coco_results_alone_name_classes_by_id() {
    let p = check(
        "cocoapi/results/instances_val2014_fakebbox100_results.json",
        Format::CocoResults,
        counts(99, 734, 75, 0),
    )
    .expect("imported");
    let first = &p.dataset.images[0];
    assert_eq!(
        (first.external_id, first.file_name.as_str(), first.width),
        (Some(42), "", 0)
    );
    let b = &first.boxes[0];
    assert_eq!(p.dataset.classes[b.class], "18");
    assert_eq!(b.bbox, BBox::new(258.15, 41.29, 348.26, 243.78));
    assert_eq!(b.score, Some(0.236));
    // Classes in ascending id order.
    let ids: Vec<i64> = p
        .dataset
        .classes
        .iter()
        .map(|c| c.parse().expect("numeric"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn darknet_strict_layout_resolves_data_prefix() {
    let p = check(
        "datumaro/tests/assets/yolo_dataset/strict",
        Format::Yolo,
        counts(1, 2, 10, 0),
    )
    .expect("imported");
    let img = &p.dataset.images[0];
    assert_eq!(
        (img.file_name.as_str(), img.width, img.height),
        ("obj_train_data/1.jpg", 15, 10)
    );
    // "2 0.133333 0.300000 0.266667 0.200000" on 15x10 -> [0, 2, 4, 2].
    assert_eq!(img.boxes[0].class, 2);
    assert!(
        close(img.boxes[0].bbox, BBox::new(0.0, 2.0, 4.0, 2.0), 1e-4),
        "{:?}",
        img.boxes[0].bbox
    );
    assert!(
        close(img.boxes[1].bbox, BBox::new(3.0, 3.0, 2.0, 3.0), 1e-4),
        "{:?}",
        img.boxes[1].bbox
    );
    assert!(
        p.warnings.is_empty(),
        "rounding noise is not worth a warning: {:?}",
        p.warnings
    );
}

#[test]
fn loose_yolo_pairs_labels_with_parallel_images() {
    let p = check(
        "datumaro/tests/assets/yolo_dataset/labels",
        Format::Yolo,
        counts(2, 4, 10, 0),
    )
    .expect("imported");
    let names: Vec<&str> = p
        .dataset
        .images
        .iter()
        .map(|i| i.file_name.as_str())
        .collect();
    assert_eq!(names, ["images/train/1.jpg", "images/val/1.jpg"]);
    let p = check(
        "datumaro/tests/assets/yolo_dataset/annotations",
        Format::Yolo,
        counts(1, 2, 10, 0),
    )
    .expect("imported");
    assert_eq!(p.dataset.images[0].file_name, "Images/1.jpg");
}

#[test]
fn roboflow_yaml_with_dangling_val_path() {
    let p = check(
        "datumaro/tests/assets/roboflow_dataset/yolo/data.yaml",
        Format::Yolo,
        counts(3, 4, 2, 0),
    )
    .expect("imported");
    assert_eq!(p.dataset.classes, ["label_0", "label_1"]);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.kind == "dangling_path" && w.message.contains("../valid/images"))
    );
    // train_001: "0 0.35 0.3 0.3 0.2" on 10x5 -> [2, 1, 3, 1], as in the Roboflow COCO export.
    let b = boxes_of(&p);
    assert_eq!(b[0].0, "train/images/train_001.jpg");
    assert!(close(b[0].2, BBox::new(2.0, 1.0, 3.0, 1.0), 1e-9));
    let p = check(
        "datumaro/tests/assets/roboflow_dataset/yolo_obb/data.yaml",
        Format::Yolo,
        counts(3, 0, 2, 0),
    )
    .expect("imported");
    assert!(p.warnings.iter().any(|w| w.kind == "no_labels"));
}

#[test]
fn labelimg_yolo_needs_its_image() {
    let p = check_with_images(
        "labelimg/generated_by_labelimg_writers",
        Format::Yolo,
        Some("labelimg/tests"),
        counts(1, 2, 2, 0),
    )
    .expect("imported");
    assert_eq!(p.dataset.classes, ["person", "face"]);
    let img = &p.dataset.images[0];
    assert_eq!(
        (img.file_name.as_str(), img.width, img.height),
        ("test.512.512.bmp", 512, 512)
    );
    // The same box labelImg's VOC writer wrote as 60 40 430 504.
    assert!(
        close(img.boxes[0].bbox, BBox::new(60.0, 40.0, 370.0, 464.0), 1e-3),
        "{:?}",
        img.boxes[0].bbox
    );
    let p = check(
        "labelimg/generated_by_labelimg_writers",
        Format::Yolo,
        counts(0, 0, 2, 2),
    )
    .expect("imported");
    // Not a warning: an unresolved entry, which the import reports first (and refuses when,
    // as here, nothing resolves).
    let [u] = p.unresolved.as_slice() else {
        panic!("one unresolved label file: {:?}", p.unresolved);
    };
    assert!(u.entry.ends_with("test.512.512.txt"), "{u:?}");
    assert_eq!(u.boxes, 2);
    assert!(p.warnings.iter().all(|w| w.kind != "missing_image"));
}

#[test]
fn labelimg_voc_filename_without_extension() {
    let p = check_with_images(
        "labelimg/generated_by_labelimg_writers/test.512.512.xml",
        Format::Voc,
        Some("labelimg/tests"),
        counts(1, 2, 2, 0),
    )
    .expect("imported");
    assert_eq!(p.dataset.classes, ["person", "face"]);
    let img = &p.dataset.images[0];
    assert_eq!(
        (img.file_name.as_str(), img.width, img.height),
        ("test.512.512.bmp", 512, 512)
    );
    assert_eq!(img.boxes[0].bbox, BBox::new(60.0, 40.0, 370.0, 464.0));
    assert!(
        img.boxes
            .iter()
            .all(|b| b.flags.difficult && !b.flags.truncated)
    );
}

#[test]
fn voc_dataset_details() {
    let p = check(
        "datumaro/tests/assets/voc_dataset/voc_dataset1",
        Format::Voc,
        counts(1, 2, 2, 0),
    )
    .expect("imported");
    assert_eq!(p.dataset.classes, ["cat", "person"]);
    assert!(p.images_dir.ends_with("JPEGImages"));
    let img = &p.dataset.images[0];
    assert_eq!(
        (img.file_name.as_str(), img.width, img.height),
        ("2007_000001.jpg", 20, 10)
    );
    assert_eq!(img.boxes[0].bbox, BBox::new(1.0, 2.0, 2.0, 2.0));
    assert!(img.boxes[0].flags.truncated);
    assert_eq!(img.boxes[1].bbox, BBox::new(4.0, 5.0, 2.0, 2.0));

    let p = check(
        "datumaro/tests/assets/voc_dataset/voc_dataset2",
        Format::Voc,
        counts(5, 4, 22, 0),
    )
    .expect("imported");
    assert_eq!(p.dataset.classes[0], "background");
    assert_eq!(p.dataset.classes[21], "ignored");
    assert_eq!(
        p.warnings
            .iter()
            .filter(|w| w.kind == "missing_size")
            .count(),
        5
    );

    let p = check(
        "datumaro/tests/assets/roboflow_dataset/voc",
        Format::Voc,
        counts(3, 4, 2, 0),
    )
    .expect("imported");
    assert_eq!(p.dataset.images[0].file_name, "train/train_001.jpg");
    assert_eq!(
        p.dataset.images[0].boxes[0].bbox,
        BBox::new(2.0, 1.0, 3.0, 1.0)
    );

    let p = check(
        "labelme/examples/bbox_detection/data_dataset_voc",
        Format::Voc,
        counts(3, 9, 21, 0),
    )
    .expect("imported");
    assert_eq!(p.dataset.classes[0], "_background_");
    let b = boxes_of(&p);
    assert_eq!(
        b[0].2,
        BBox::new(
            191.0,
            107.36900369003689,
            122.0,
            329.36900369003695 - 107.36900369003689
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Round trips of random datasets

/// Distinct class names in random order, with characters that need escaping in JSON, XML and
/// YAML.
fn class_names() -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set("[a-zA-Zé][a-zA-Z0-9 _/&<>'\"é:#-]{0,8}[a-zA-Z0-9é]", 1..6)
        .prop_map(|s| s.into_iter().collect::<Vec<_>>())
        .prop_shuffle()
}

/// Which optional fields a format carries.
#[derive(Clone, Copy)]
struct Carries {
    iscrowd: bool,
    truncated_difficult: bool,
    score: bool,
    id: bool,
    external_id: bool,
    max_size: u32,
}

fn a_box(
    classes: usize,
    width: u32,
    height: u32,
    carries: Carries,
) -> impl Strategy<Value = DatasetBox> {
    (
        0..classes,
        0.0..0.9f64,
        0.0..0.9f64,
        0.0..=1.0f64,
        0.0..=1.0f64,
        any::<[bool; 3]>(),
        prop::option::of(0.0..1.0f32),
        prop::option::of(any::<u128>()),
    )
        .prop_map(move |(class, ux, uy, uw, uh, flags, score, id)| {
            let (w, h) = (f64::from(width), f64::from(height));
            let x = ux * w;
            let y = uy * h;
            let bw = (uw * (w - x)).max(0.01);
            let bh = (uh * (h - y)).max(0.01);
            DatasetBox {
                class,
                bbox: BBox::new(x, y, bw, bh),
                flags: BoxFlags {
                    iscrowd: carries.iscrowd && flags[0],
                    truncated: carries.truncated_difficult && flags[1],
                    difficult: carries.truncated_difficult && flags[2],
                },
                score: score.filter(|_| carries.score),
                id: id.filter(|_| carries.id).map(Uuid::from_u128),
                attributes: Attributes::new(),
            }
        })
}

/// A random dataset; `file_name` makes the i-th image's unique name.
fn dataset(
    carries: Carries,
    file_name: fn(usize, bool) -> String,
) -> impl Strategy<Value = Dataset> {
    class_names().prop_flat_map(move |classes| {
        let n = classes.len();
        let image = (
            1..=carries.max_size,
            1..=carries.max_size,
            any::<bool>(),
            any::<i32>(),
        )
            .prop_flat_map(move |(width, height, subdir, ext_id)| {
                prop::collection::vec(a_box(n, width, height, carries), 0..5)
                    .prop_map(move |boxes| (width, height, subdir, ext_id, boxes))
            });
        (Just(classes), prop::collection::vec(image, 0..6)).prop_map(move |(classes, images)| {
            let mut used_ids = BTreeSet::new();
            let images = images
                .into_iter()
                .enumerate()
                .map(|(i, (width, height, subdir, ext_id, boxes))| DatasetImage {
                    file_name: file_name(i, subdir),
                    width,
                    height,
                    external_id: (carries.external_id && used_ids.insert(ext_id))
                        .then_some(i64::from(ext_id)),
                    boxes,
                })
                .collect();
            Dataset { classes, images }
        })
    })
}

/// Coordinates rounded down to thousandths of a pixel (so boxes stay inside their image).
fn quantized(mut ds: Dataset) -> Dataset {
    let q = |v: f64| (v * 1000.0).floor() / 1000.0;
    for b in ds.images.iter_mut().flat_map(|i| i.boxes.iter_mut()) {
        b.bbox = BBox::new(q(b.bbox.x), q(b.bbox.y), q(b.bbox.w), q(b.bbox.h));
    }
    ds
}

/// Gives every image a COCO id (the export assigns missing ones, so they could not round-trip).
fn with_coco_ids(mut ds: Dataset) -> Dataset {
    for (i, img) in ds.images.iter_mut().enumerate() {
        img.external_id = Some(
            img.external_id
                .unwrap_or(10_000_000_000 + i64::try_from(i).expect("small")),
        );
    }
    ds
}

/// The dataset with the names a folder export gives its images (no folders; these generators
/// never make two images clash).
fn flattened(mut d: Dataset) -> Dataset {
    for img in &mut d.images {
        if let Some((_, name)) = img.file_name.rsplit_once('/') {
            img.file_name = name.to_owned();
        }
    }
    d
}

fn sorted_by_name(mut d: Dataset) -> Dataset {
    d.images.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    d
}

/// Writes a `width` x `height` PNG for every image of `dataset` under `root`.
fn write_images(root: &Path, dataset: &Dataset) {
    for img in &dataset.images {
        let path = root.join(&img.file_name);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("create image folder");
        image::RgbImage::new(img.width, img.height)
            .save(&path)
            .expect("write png");
    }
}

const COCO_CARRIES: Carries = Carries {
    iscrowd: true,
    truncated_difficult: false,
    score: true,
    id: true,
    external_id: true,
    max_size: 5000,
};

proptest! {
    // Failures are not persisted: the regressions file would land outside the formats folders.
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// COCO keeps everything it carries. Coordinates with up to 15 significant digits (any
    /// real annotation: here, thousandths of a pixel) come back bit for bit.
    #[test]
    fn coco_round_trip_is_lossless(
        ds in dataset(COCO_CARRIES, |i, sub| if sub { format!("dir/na\"me\\{i}.jpg") } else { format!("臉書 {i}.jpg") })
    ) {
        let ds = with_coco_ids(quantized(ds));
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("annotations.json");
        let report = export(Format::Coco, &ds, &out, None).expect("export");
        prop_assert_eq!(report.images, ds.images.len());
        let parsed = import(Format::Coco, &out, None).expect("import");
        prop_assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        prop_assert_eq!(parsed.dataset, ds);
    }

    /// Arbitrary `f64` coordinates need 17 digits; serde_json without its `float_roundtrip`
    /// feature reads those within one unit in the last place, not always exactly.
    #[test]
    fn coco_round_trip_of_arbitrary_floats_is_within_one_ulp(ds in dataset(COCO_CARRIES, |i, _| format!("{i}.jpg"))) {
        let ds = with_coco_ids(ds);
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("annotations.json");
        export(Format::Coco, &ds, &out, None).expect("export");
        let mut got = import(Format::Coco, &out, None).expect("import").dataset;
        for (g, w) in got.images.iter_mut().zip(&ds.images) {
            for (gb, wb) in g.boxes.iter_mut().zip(&w.boxes) {
                let near = |a: f64, b: f64| (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs());
                prop_assert!(near(gb.bbox.x, wb.bbox.x) && near(gb.bbox.y, wb.bbox.y) && near(gb.bbox.w, wb.bbox.w) && near(gb.bbox.h, wb.bbox.h));
                gb.bbox = wb.bbox;
            }
        }
        prop_assert_eq!(got, ds);
    }

    /// COCO results carry image ids, category ids, boxes and scores; images without boxes and
    /// unused classes cannot survive.
    #[test]
    fn coco_results_round_trip(
        ids in prop::collection::btree_set(0..500i64, 1..6),
        ds in dataset(Carries { score: true, external_id: true, max_size: 1000, ..COCO_CARRIES.no_extras() }, |_, _| String::new()),
    ) {
        let classes: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let mut ds = ds;
        let n = classes.len();
        for (i, img) in ds.images.iter_mut().enumerate() {
            img.width = 0;
            img.height = 0;
            img.external_id = Some(i64::try_from(i).expect("small") * 7);
            for b in &mut img.boxes {
                b.class %= n;
                b.score = Some(b.score.unwrap_or(0.5));
            }
        }
        ds.classes = classes;
        let ds = quantized(ds);
        let dir = tempfile::tempdir().expect("tempdir");
        export(Format::CocoResults, &ds, dir.path(), None).expect("export");
        let parsed = import(Format::CocoResults, &dir.path().join("results.json"), None).expect("import");
        prop_assert_eq!(parsed.dataset, used_classes_only(ds));
    }

    /// VOC keeps names, sizes, truncated/difficult and Loupe ids; corners are written with the
    /// shortest round-trip floats, so w and h come back within one rounding of x + w.
    #[test]
    fn voc_round_trip(
        ds in dataset(
            Carries { truncated_difficult: true, id: true, max_size: 5000, ..COCO_CARRIES.no_extras() },
            |i, sub| if sub { format!("sub dir/img&{i}.jpg") } else { format!("img<{i}>.png") },
        )
    ) {
        // labelmap.txt separates fields with `:` and comments with `#`: names holding them are
        // refused (a test of its own); here they become `+`, which the generator never makes.
        let mut ds = ds;
        for c in &mut ds.classes {
            *c = c.replace([':', '#'], "+");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        export(Format::Voc, &ds, dir.path(), None).expect("export");
        let parsed = import(Format::Voc, dir.path(), None).expect("import");
        prop_assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        let (got, want) = (sorted_by_name(parsed.dataset), sorted_by_name(flattened(ds)));
        prop_assert_eq!(&got.classes, &want.classes);
        prop_assert_eq!(got.images.len(), want.images.len());
        for (g, w) in got.images.iter().zip(&want.images) {
            prop_assert_eq!((&g.file_name, g.width, g.height, g.boxes.len()), (&w.file_name, w.width, w.height, w.boxes.len()));
            for (gb, wb) in g.boxes.iter().zip(&w.boxes) {
                prop_assert_eq!((gb.class, gb.flags, gb.id, gb.score), (wb.class, wb.flags, wb.id, wb.score));
                prop_assert_eq!((gb.bbox.x, gb.bbox.y), (wb.bbox.x, wb.bbox.y));
                prop_assert!(close(gb.bbox, wb.bbox, 1e-9), "{:?} vs {:?}", gb.bbox, wb.bbox);
            }
        }
    }
}

proptest! {
    // Each case writes real PNGs for the importer to probe: fewer cases.
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    /// YOLO keeps classes (through data.yaml names), images and boxes to 1e-4 px on images up
    /// to 64 px (6 decimals of a fraction of the size).
    #[test]
    fn yolo_round_trip(
        ds in dataset(
            Carries { max_size: 64, ..COCO_CARRIES.no_extras() },
            |i, sub| if sub { format!("sub/img_{i}.png") } else { format!("img {i}.png") },
        )
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let images = dir.path().join("src");
        write_images(&images, &ds);
        let out = dir.path().join("yolo");
        export(Format::Yolo, &ds, &out, Some(&images)).expect("export");
        let parsed = import(Format::Yolo, &out, Some(&out.join("images"))).expect("import");
        let (got, want) = (sorted_by_name(parsed.dataset), sorted_by_name(flattened(ds)));
        prop_assert_eq!(&got.classes, &want.classes);
        prop_assert_eq!(got.images.len(), want.images.len());
        for (g, w) in got.images.iter().zip(&want.images) {
            prop_assert_eq!((&g.file_name, g.width, g.height, g.boxes.len()), (&w.file_name, w.width, w.height, w.boxes.len()));
            for (gb, wb) in g.boxes.iter().zip(&w.boxes) {
                prop_assert_eq!(gb.class, wb.class);
                prop_assert!(close(gb.bbox, wb.bbox, 1e-4), "{:?} vs {:?}", gb.bbox, wb.bbox);
            }
        }
    }
}

impl Carries {
    /// Nothing optional; `max_size` kept.
    const fn no_extras(self) -> Carries {
        Carries {
            iscrowd: false,
            truncated_difficult: false,
            score: false,
            id: false,
            external_id: false,
            max_size: self.max_size,
        }
    }
}

/// What a results file can hold of `ds`: images with boxes, and the classes they use (in order).
fn used_classes_only(ds: Dataset) -> Dataset {
    let used: BTreeSet<usize> = ds
        .images
        .iter()
        .flat_map(|i| i.boxes.iter().map(|b| b.class))
        .collect();
    let remap: Vec<Option<usize>> = (0..ds.classes.len())
        .map(|c| used.contains(&c).then(|| used.range(..c).count()))
        .collect();
    Dataset {
        classes: used.iter().map(|&c| ds.classes[c].clone()).collect(),
        images: ds
            .images
            .into_iter()
            .filter(|i| !i.boxes.is_empty())
            .map(|mut i| {
                for b in &mut i.boxes {
                    b.class = remap[b.class].expect("used");
                }
                i
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Exports as other tools read them

fn sample_dataset() -> Dataset {
    Dataset {
        classes: vec!["person".into(), "yes".into()],
        images: vec![
            DatasetImage {
                file_name: "a.png".into(),
                width: 40,
                height: 20,
                external_id: Some(7),
                boxes: vec![
                    DatasetBox {
                        class: 1,
                        bbox: BBox::new(4.0, 2.0, 10.0, 8.0),
                        flags: BoxFlags {
                            iscrowd: true,
                            ..BoxFlags::default()
                        },
                        score: None,
                        id: Some(Uuid::from_u128(1)),
                        attributes: Attributes::new(),
                    },
                    DatasetBox {
                        class: 0,
                        bbox: BBox::new(0.0, 0.0, 40.0, 20.0),
                        flags: BoxFlags::default(),
                        score: None,
                        id: None,
                        attributes: Attributes::new(),
                    },
                ],
            },
            DatasetImage {
                file_name: "b.png".into(),
                width: 10,
                height: 10,
                external_id: None,
                boxes: Vec::new(),
            },
        ],
    }
}

#[test]
fn coco_export_has_what_pycocotools_needs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = export(Format::Coco, &sample_dataset(), dir.path(), None).expect("export");
    assert_eq!(
        report,
        ExportReport {
            files_written: 1,
            images: 2,
            boxes: 2
        }
    );
    let text = std::fs::read_to_string(dir.path().join("annotations.json")).expect("written");
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    for key in ["info", "licenses", "images", "annotations", "categories"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    let images = v["images"].as_array().expect("array");
    assert_eq!(images[0]["id"], 7);
    assert_eq!(
        images[1]["id"], 8,
        "fresh ids start above the largest kept one"
    );
    let anns = v["annotations"].as_array().expect("array");
    assert_eq!(anns[0]["id"], 1);
    assert_eq!(anns[1]["id"], 2);
    assert_eq!(anns[0]["category_id"], 2);
    assert_eq!(anns[0]["area"], 80.0);
    assert_eq!(anns[0]["iscrowd"], 1);
    assert_eq!(anns[0]["bbox"], serde_json::json!([4.0, 2.0, 10.0, 8.0]));
    assert_eq!(
        anns[0]["segmentation"],
        serde_json::json!([]),
        "no polygon unless asked: converters would make one of it"
    );
    assert_eq!(anns[0]["loupe_id"], Uuid::from_u128(1).to_string());
    assert!(anns[1].get("loupe_id").is_none());
    assert_eq!(
        v["categories"],
        serde_json::json!([
            {"id": 1, "name": "person", "supercategory": ""},
            {"id": 2, "name": "yes", "supercategory": ""},
        ])
    );
}

#[test]
fn coco_export_writes_box_polygons_when_asked_and_the_datumaro_layout_with_images() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("project");
    let mut ds = sample_dataset();
    ds.images[0].file_name = "images/a.png".into();
    ds.images[1].file_name = "../outside/b.png".into();
    write_images(&src.join("sub"), &ds);
    let settings = ExportSettings {
        images: ImagesMode::Copy,
        images_root: Some(src.join("sub")),
        coco_segmentation: true,
        ..ExportSettings::default()
    };
    let out = dir.path().join("coco");
    let outcome = export_with(Format::Coco, &ds, &out, &settings).expect("export");
    assert_eq!(outcome.images_copied, 2);
    assert_eq!(outcome.splits, [("train".to_owned(), 2)]);
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("annotations/instances_train.json")).expect("written"),
    )
    .expect("json");
    assert_eq!(v["images"][0]["file_name"], "a.png");
    assert_eq!(v["images"][0]["loupe_path"], "images/a.png");
    assert_eq!(v["images"][1]["file_name"], "b.png");
    assert!(out.join("images/train/a.png").is_file());
    assert!(
        out.join("images/train/b.png").is_file(),
        "an image outside the project folder is found through its `..`"
    );
    assert_eq!(
        v["annotations"][0]["segmentation"],
        serde_json::json!([[4.0, 2.0, 14.0, 2.0, 14.0, 10.0, 4.0, 10.0]])
    );
    // A .json target cannot hold images.
    let err = export_with(Format::Coco, &ds, &dir.path().join("x.json"), &settings)
        .expect_err("a file cannot hold images");
    assert!(err.to_string().contains("need a folder"), "{err}");
}

#[test]
fn a_missing_image_refuses_the_export_unless_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    let ds = sample_dataset();
    write_images(&src, &ds);
    std::fs::remove_file(src.join("b.png")).expect("remove");
    for format in [Format::Coco, Format::Yolo, Format::Voc] {
        let out = dir.path().join(format.as_str());
        let mut settings = ExportSettings {
            images: ImagesMode::Link,
            images_root: Some(src.clone()),
            ..ExportSettings::default()
        };
        let err = export_with(format, &ds, &out, &settings).expect_err("missing image");
        let msg = err.to_string();
        assert!(
            msg.contains("1 of 2 images not found") && msg.contains("b.png"),
            "{msg}"
        );
        assert!(!out.exists(), "{format}: nothing is written when refused");
        settings.allow_missing = true;
        let outcome = export_with(format, &ds, &out, &settings).expect("allowed");
        assert_eq!(outcome.missing, ["b.png"]);
        assert_eq!(outcome.images_linked + outcome.images_copied, 1);
        assert_eq!(
            outcome.report.images, 2,
            "{format}: labels of b.png are kept"
        );
    }
}

#[test]
fn splits_are_deterministic_and_every_layout_follows_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ds = Dataset {
        classes: vec!["c".into()],
        images: Vec::new(),
    };
    for i in 0..40 {
        ds.images.push(DatasetImage {
            file_name: format!("d{}/img{i}.png", i % 3),
            width: 10,
            height: 10,
            external_id: None,
            boxes: vec![DatasetBox {
                class: 0,
                bbox: BBox::new(1.0, 1.0, 2.0, 2.0),
                flags: BoxFlags::default(),
                score: None,
                id: None,
                attributes: Attributes::new(),
            }],
        });
    }
    let settings = ExportSettings {
        split: Some("train=0.5,val=0.3,test=0.2".parse().expect("split")),
        seed: 3,
        ..ExportSettings::default()
    };
    let a = export_with(Format::Yolo, &ds, &dir.path().join("a"), &settings).expect("export");
    let b = export_with(Format::Yolo, &ds, &dir.path().join("b"), &settings).expect("export");
    assert_eq!(a.splits, b.splits);
    assert_eq!(a.splits.iter().map(|(_, n)| n).sum::<usize>(), 40);
    assert!(a.splits.iter().all(|(_, n)| *n > 0), "{:?}", a.splits);
    let listing = |root: &Path| -> Vec<String> {
        walkdir::WalkDir::new(root)
            .sort_by_file_name()
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                e.path()
                    .strip_prefix(root)
                    .expect("under")
                    .display()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(
        listing(&dir.path().join("a")),
        listing(&dir.path().join("b"))
    );
    let yaml = std::fs::read_to_string(dir.path().join("a/data.yaml")).expect("yaml");
    for line in [
        "path: ''",
        "train: images/train",
        "val: images/val",
        "test: images/test",
    ] {
        assert!(yaml.contains(line), "{line} missing:\n{yaml}");
    }
    let n_val = a.splits[1].1;
    let vals = std::fs::read_dir(dir.path().join("a/labels/val"))
        .expect("labels/val")
        .count();
    assert_eq!(vals, n_val);
    // VOC and COCO put the same images in the same splits.
    let voc = export_with(Format::Voc, &ds, &dir.path().join("voc"), &settings).expect("voc");
    assert_eq!(voc.splits, a.splits);
    let val_list =
        std::fs::read_to_string(dir.path().join("voc/ImageSets/Main/val.txt")).expect("val.txt");
    let mut from_voc: Vec<&str> = val_list.lines().collect();
    from_voc.sort_unstable();
    let mut from_yolo: Vec<String> = std::fs::read_dir(dir.path().join("a/labels/val"))
        .expect("dir")
        .map(|e| {
            e.expect("entry")
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".txt")
                .to_owned()
        })
        .collect();
    from_yolo.sort_unstable();
    assert_eq!(from_voc, from_yolo);
    let coco = export_with(Format::Coco, &ds, &dir.path().join("coco"), &settings).expect("coco");
    assert_eq!(coco.splits, a.splits);
    for (name, n) in &coco.splits {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                dir.path()
                    .join(format!("coco/annotations/instances_{name}.json")),
            )
            .expect("split file"),
        )
        .expect("json");
        assert_eq!(v["images"].as_array().map(Vec::len), Some(*n));
        assert_eq!(
            v["images"][0]["file_name"]
                .as_str()
                .map(|f| f.starts_with('d')),
            Some(true),
            "without images, file_name is the project's path"
        );
    }
    // A split spec is checked.
    for bad in [
        "train=0.5,val=0.4",
        "val=1",
        "train=0.5,train=0.5",
        "train=x",
        "holdout=1",
    ] {
        assert!(bad.parse::<SplitSpec>().is_err(), "{bad}");
    }
}

#[test]
fn ground_truth_and_results_exports_share_category_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (classes, ids) in [(vec!["cat", "dog"], [1, 2]), (vec!["7", "0"], [7, 0])] {
        let mut ds = sample_dataset();
        ds.classes = classes.iter().map(ToString::to_string).collect();
        export(Format::Coco, &ds, dir.path(), None).expect("export");
        export(Format::CocoResults, &ds, dir.path(), None).expect("export");
        let read = |name: &str| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(name)).expect("written"))
                .expect("json")
        };
        let gt = read("annotations.json");
        let res = read("results.json");
        assert_eq!(gt["categories"][0]["id"], ids[0]);
        assert_eq!(gt["categories"][1]["id"], ids[1]);
        assert_eq!(gt["annotations"][0]["category_id"], ids[1]);
        assert_eq!(res[0]["category_id"], ids[1]);
        assert_eq!(res[0]["image_id"], gt["annotations"][0]["image_id"]);
        assert_eq!(res[0]["score"], 1.0);
    }
}

#[test]
fn yolo_export_layout_is_what_ultralytics_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    write_images(&src, &sample_dataset());
    let out = dir.path().join("out");
    let report = export(Format::Yolo, &sample_dataset(), &out, Some(&src)).expect("export");
    assert_eq!(
        report,
        ExportReport {
            files_written: 6,
            images: 2,
            boxes: 2
        }
    );
    let yaml: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(out.join("data.yaml")).expect("data.yaml"))
            .expect("yaml");
    assert_eq!(
        yaml["path"].as_str(),
        Some(""),
        "relative: ultralytics resolves an empty path from the yaml's folder"
    );
    assert_eq!(yaml["train"].as_str(), Some("images"));
    assert_eq!(yaml["val"].as_str(), Some("images"));
    assert_eq!(
        std::fs::read_to_string(out.join("classes.txt")).expect("classes.txt"),
        "person\nyes\n"
    );
    assert_eq!(yaml["nc"].as_u64(), Some(2));
    assert_eq!(yaml["names"][0].as_str(), Some("person"));
    assert_eq!(
        yaml["names"][1].as_str(),
        Some("yes"),
        "`yes` stays a string"
    );
    let label = std::fs::read_to_string(out.join("labels/a.txt")).expect("label");
    assert_eq!(
        label,
        "1 0.225000 0.300000 0.250000 0.400000\n0 0.500000 0.500000 1.000000 1.000000\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("labels/b.txt")).expect("empty label"),
        ""
    );
    assert!(out.join("images/a.png").is_file());
    // A missing source image is not copied; its labels are still written.
    std::fs::remove_file(src.join("b.png")).expect("remove");
    let partial = dir.path().join("partial");
    let report = export(Format::Yolo, &sample_dataset(), &partial, Some(&src)).expect("export");
    assert_eq!(report.files_written, 5);
    assert!(partial.join("labels/b.txt").is_file() && !partial.join("images/b.png").exists());
    // Without images_root the labels are still written, the images are not.
    let bare = dir.path().join("bare");
    let report = export(Format::Yolo, &sample_dataset(), &bare, None).expect("export");
    assert_eq!(report.files_written, 4);
    assert!(!bare.join("images/a.png").exists());
}

#[test]
fn exports_refuse_what_they_cannot_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ds = sample_dataset();
    ds.images[1].width = 0;
    let err = export(Format::Yolo, &ds, &dir.path().join("y"), None).expect_err("no size");
    assert!(err.to_string().contains("b.png"), "{err}");
    assert!(
        !dir.path().join("y").exists(),
        "nothing is written when the export is refused"
    );
    let mut ds = sample_dataset();
    ds.classes[0] = "a:b".into();
    let err = export(Format::Voc, &ds, &dir.path().join("v"), None).expect_err("colon");
    assert!(err.to_string().contains("labelmap.txt"), "{err}");
    // Two images sharing a stem get distinct names, listed.
    let mut ds = sample_dataset();
    ds.images[1].file_name = "a.jpg".into();
    let outcome = export_with(
        Format::Voc,
        &ds,
        &dir.path().join("v"),
        &ExportSettings::default(),
    )
    .expect("renamed");
    assert_eq!(
        outcome.renamed,
        [("a.png".to_owned(), "a-2.png".to_owned())]
    );
    assert!(dir.path().join("v/Annotations/a-2.xml").is_file());
    let mut ds = sample_dataset();
    ds.images[0].boxes[0].class = 9;
    assert!(export(Format::Coco, &ds, &dir.path().join("c.json"), None).is_err());
}

// ---------------------------------------------------------------------------------------------
// Malformed and odd input

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, text).expect("write fixture");
    path
}

const COCO_HEAD: &str = r#"{"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50}],
"categories": [{"id": 3, "name": "cat"}],
"annotations": ["#;

fn coco_with(annotations: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "instances.json",
        &format!("{COCO_HEAD}{annotations}]}}"),
    );
    (dir, path)
}

fn refused(result: Result<Parsed, FormatError>) -> String {
    match result {
        Ok(p) => panic!("expected a refusal, got {} images", p.dataset.images.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn coco_invalid_json_names_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "broken.json",
        "{\n  \"images\": [\n    {\"id\": 1,, }\n  ]\n}",
    );
    let err = import(Format::Coco, &path, None).expect_err("invalid");
    assert!(matches!(err, FormatError::Json { line: 3, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("broken.json:3:"), "{msg}");
    assert!(msg.contains("invalid JSON"), "{msg}");
}

#[test]
fn coco_semantic_errors_are_refusals() {
    let (_d, path) =
        coco_with(r#"{"id": 1, "image_id": 1, "category_id": 4, "bbox": [0, 0, 1, 1]}"#);
    let msg = refused(import(Format::Coco, &path, None));
    assert!(
        msg.contains("instances.json")
            && msg.contains("unknown category id 4")
            && msg.contains("annotations[0]"),
        "{msg}"
    );

    let (_d, path) = coco_with(
        r#"{"id": 5, "image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1]},
           {"id": 5, "image_id": 1, "category_id": 3, "bbox": [0, 0, 2, 2]}"#,
    );
    let msg = refused(import(Format::Coco, &path, None));
    assert!(
        msg.contains("duplicate annotation id 5") && msg.contains("annotations[1]"),
        "{msg}"
    );

    let (_d, path) =
        coco_with(r#"{"id": 1, "image_id": 2, "category_id": 3, "bbox": [0, 0, 1, 1]}"#);
    assert!(refused(import(Format::Coco, &path, None)).contains("unknown image id 2"));

    let (_d, path) = coco_with(r#"{"id": 1, "category_id": 3, "bbox": [0, 0, 1, 1]}"#);
    assert!(
        refused(import(Format::Coco, &path, None)).contains("missing required field `image_id`")
    );

    let (_d, path) = coco_with(r#"{"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 1]}"#);
    let msg = refused(import(Format::Coco, &path, None));
    assert!(
        msg.contains("bbox must have 4 numbers") && msg.contains("instances.json:3:"),
        "{msg}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "dup.json",
        r#"{"images": [{"id": 1, "file_name": "a", "width": 1, "height": 1}, {"id": 1, "file_name": "b", "width": 1, "height": 1}]}"#,
    );
    assert!(refused(import(Format::Coco, &path, None)).contains("duplicate image id 1"));
    let path = write(
        dir.path(),
        "neg.json",
        r#"{"images": [{"id": 1, "file_name": "a", "width": -5, "height": 10}]}"#,
    );
    let msg = refused(import(Format::Coco, &path, None));
    assert!(
        msg.contains("neg.json") && msg.contains("negative image size -5x10"),
        "{msg}"
    );
}

#[test]
fn coco_clips_drops_and_reads_loupe_fields() {
    let id = Uuid::from_u128(42);
    let (_d, path) = coco_with(&format!(
        r#"{{"id": 1, "image_id": 1, "category_id": 3, "bbox": [90, 40, 20, 20], "iscrowd": true, "loupe_id": "{id}", "score": 0.5}},
           {{"id": 2, "image_id": 1, "category_id": 3, "bbox": [10, 10, 0, 5]}},
           {{"id": 3, "image_id": 1, "category_id": 3, "bbox": [200, 10, 5, 5]}},
           {{"id": 4, "image_id": 1, "category_id": 3, "bbox": [-0.0001, 0, 100.0001, 50]}},
           {{"id": 5, "image_id": 1, "category_id": 3, "bbox": null}}"#
    ));
    let p = import(Format::Coco, &path, None).expect("import");
    let img = &p.dataset.images[0];
    assert_eq!(img.boxes.len(), 2);
    assert_eq!(img.boxes[0].bbox, BBox::new(90.0, 40.0, 10.0, 10.0));
    assert_eq!(
        (
            img.boxes[0].id,
            img.boxes[0].score,
            img.boxes[0].flags.iscrowd
        ),
        (Some(id), Some(0.5), true)
    );
    assert_eq!(
        img.boxes[1].bbox,
        BBox::new(0.0, 0.0, 100.0, 50.0),
        "rounding noise is clipped silently"
    );
    let kinds: Vec<&str> = p.warnings.iter().map(|w| w.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "clipped_box",
            "zero_area_box",
            "zero_area_box",
            "skipped_annotation"
        ]
    );
    assert_eq!(p.skipped, 3);
    assert!(p.warnings[0].location.contains("annotations[0] (id 1)"));
}

#[test]
fn warnings_are_capped_per_kind() {
    let anns: Vec<String> = (0..1500)
        .map(|i| {
            format!(r#"{{"id": {i}, "image_id": 1, "category_id": 3, "bbox": [95, 0, 10, 10]}}"#)
        })
        .collect();
    let (_d, path) = coco_with(&anns.join(","));
    let p = import(Format::Coco, &path, None).expect("import");
    assert_eq!(p.warnings.len(), MAX_WARNINGS_PER_KIND + 1);
    let last = p.warnings.last().expect("summary");
    assert_eq!(last.kind, "clipped_box");
    assert!(
        last.message.contains("500 more") && last.message.contains("1500 in all"),
        "{}",
        last.message
    );
}

#[test]
fn coco_results_with_ground_truth_names() {
    let (dir, gt) =
        coco_with(r#"{"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1]}"#);
    let results = write(
        dir.path(),
        "results.json",
        r#"[{"image_id": 1, "category_id": 3, "bbox": [10, 10, 5, 5], "score": 0.9},
            {"image_id": 1, "category_id": 3, "bbox": [95, 10, 10, 5], "score": 0.8},
            {"image_id": 1, "category_id": 3, "segmentation": {"size": [1, 1], "counts": "0"}, "score": 0.1}]"#,
    );
    let p = import_coco_results_with_gt(&results, &gt).expect("import");
    assert_eq!(p.dataset.classes, ["cat"]);
    assert_eq!(p.skipped, 1);
    let img = &p.dataset.images[0];
    assert_eq!(
        (
            img.file_name.as_str(),
            img.width,
            img.height,
            img.external_id
        ),
        ("a.jpg", 100, 50, Some(1))
    );
    assert_eq!(img.boxes.len(), 2);
    assert_eq!(
        img.boxes[1].bbox,
        BBox::new(95.0, 10.0, 5.0, 5.0),
        "clipped to the ground truth's size"
    );
    assert_eq!(img.boxes[0].score, Some(0.9));

    let bad = write(
        dir.path(),
        "bad.json",
        r#"[{"image_id": 9, "category_id": 3, "bbox": [1, 1, 1, 1], "score": 1}]"#,
    );
    let msg = refused(import_coco_results_with_gt(&bad, &gt));
    assert!(
        msg.contains("bad.json") && msg.contains("unknown image id 9"),
        "{msg}"
    );
    let bad = write(
        dir.path(),
        "bad2.json",
        r#"[{"image_id": 1, "category_id": 1, "bbox": [1, 1, 1, 1], "score": 1}]"#,
    );
    assert!(refused(import_coco_results_with_gt(&bad, &gt)).contains("unknown category id 1"));
    let bad = write(
        dir.path(),
        "bad3.json",
        r#"[{"image_id": 1, "category_id": 1, "bbox": [1, 1, 1, 1]}]"#,
    );
    assert!(
        refused(import(Format::CocoResults, &bad, None)).contains("missing required field `score`")
    );
}

/// A tiny ultralytics dataset: `data.yaml` plus one 20x10 image per label text.
fn yolo_dataset(yaml: &str, labels: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "data.yaml", yaml);
    for (stem, text) in labels {
        let image = dir.path().join(format!("images/train/{stem}.png"));
        std::fs::create_dir_all(image.parent().expect("parent")).expect("mkdir");
        image::RgbImage::new(20, 10).save(&image).expect("png");
        write(dir.path(), &format!("labels/train/{stem}.txt"), text);
    }
    dir
}

#[test]
fn yolo_class_index_without_name_names_file_and_line() {
    let dir = yolo_dataset(
        "train: images/train\nval: images/train\nnames: [a, b]\n",
        &[("x", "0 0.5 0.5 0.1 0.1\n5 0.5 0.5 0.1 0.1\n")],
    );
    let err = import(Format::Yolo, dir.path(), None).expect_err("index 5");
    assert!(
        matches!(
            err,
            FormatError::UnknownClassIndex {
                line: 2,
                index: 5,
                classes: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("x.txt:2"), "{err}");
}

#[test]
fn yolo_malformed_lines_are_refused() {
    for (text, needle) in [
        ("0 0.5 0.5 0.1\n", "4 columns"),
        ("a 0.5 0.5 0.1 0.1\n", "not an integer"),
        ("0 0.5 0.5 x 0.1\n", "`x` is not a number"),
        ("0 120 40 30 20\n", "not normalised"),
        ("-1 0.5 0.5 0.1 0.1\n", "class index -1"),
        ("0 0.1 0.1 0.2 0.1 0.2 0.2 0.3\n", "8 columns"),
    ] {
        let dir = yolo_dataset("train: images/train\nnames: {0: a}\n", &[("x", text)]);
        let msg = refused(import(Format::Yolo, dir.path(), None));
        assert!(
            msg.contains("x.txt") && msg.contains(needle),
            "{text:?}: {msg}"
        );
    }
}

#[test]
fn yolo_segments_scores_and_duplicate_splits() {
    let dir = yolo_dataset(
        "path: /nowhere/at/all\ntrain: images/train\nval: [images/train]\nnames:\n  0: a\n  1: b\nnc: 2\n",
        &[
            // A triangle segment, a box with a score, a box partly outside.
            (
                "x",
                "1 0.1 0.2 0.5 0.2 0.3 0.8\n0 0.5 0.5 0.2 0.2 0.75\n0 0.95 0.5 0.2 0.2\n",
            ),
            ("y", ""),
        ],
    );
    write(
        dir.path(),
        "labels/train/orphan.txt",
        "0 0.5 0.5 0.1 0.1\n1 0.5 0.5 0.1 0.1\n",
    );
    let p = import(Format::Yolo, dir.path(), None).expect("import");
    assert_eq!(
        p.dataset.images.len(),
        2,
        "val repeats train: no duplicate images"
    );
    let x = &p.dataset.images[0];
    assert_eq!(
        (x.file_name.as_str(), x.width, x.height),
        ("images/train/x.png", 20, 10)
    );
    assert!(
        close(x.boxes[0].bbox, BBox::new(2.0, 2.0, 8.0, 6.0), 1e-9),
        "{:?}",
        x.boxes[0].bbox
    );
    assert_eq!(x.boxes[1].score, Some(0.75));
    assert!(
        close(x.boxes[2].bbox, BBox::new(17.0, 4.0, 3.0, 2.0), 1e-9),
        "{:?}",
        x.boxes[2].bbox
    );
    assert!(
        p.dataset.images[1].boxes.is_empty(),
        "an empty label file is an image without boxes"
    );
    assert_eq!(p.skipped, 2, "the orphan's two boxes");
    let kinds: BTreeSet<&str> = p.warnings.iter().map(|w| w.kind.as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["dangling_path", "clipped_box"]));
    let [u] = p.unresolved.as_slice() else {
        panic!("the orphan is unresolved: {:?}", p.unresolved);
    };
    assert!(u.entry.ends_with("orphan.txt") && u.boxes == 2, "{u:?}");
}

#[test]
fn yolo_names_must_be_consistent() {
    for (yaml, needle) in [
        ("train: images/train\nnames: {0: a, 2: c}\n", "1 is missing"),
        ("train: images/train\nnames: [a, b]\nnc: 3\n", "`nc: 3`"),
        ("train: images/train\n", "no class names"),
        ("train: [images/train\nnames: [a]\n", "invalid YAML"),
    ] {
        let dir = yolo_dataset(yaml, &[("x", "0 0.5 0.5 0.1 0.1\n")]);
        let msg = refused(import(Format::Yolo, dir.path(), None));
        assert!(
            msg.contains("data.yaml") && msg.contains(needle),
            "{yaml:?}: {msg}"
        );
    }
    // Only `nc`: names are made up as ultralytics does.
    let dir = yolo_dataset(
        "train: images/train\nnc: 2\n",
        &[("x", "1 0.5 0.5 0.1 0.1\n")],
    );
    let p = import(Format::Yolo, dir.path(), None).expect("import");
    assert_eq!(p.dataset.classes, ["class_0", "class_1"]);
}

#[test]
fn voc_invalid_xml_names_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "a.xml",
        "<annotation>\n  <filename>a.jpg</filename>\n  <size><width>10</height></size>\n</annotation>\n",
    );
    let err = import(Format::Voc, &path, None).expect_err("mismatched tags");
    assert!(matches!(err, FormatError::Xml { line: 3, .. }), "{err:?}");
    assert!(err.to_string().contains("a.xml:3:"), "{err}");

    let path = write(
        dir.path(),
        "b.xml",
        "<annotation>\n  <object><name>x</name>\n",
    );
    assert!(refused(import(Format::Voc, &path, None)).contains("not closed"));
}

#[test]
fn voc_malformed_objects_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let obj = |inner: &str| {
        format!(
            "<annotation><filename>a.jpg</filename><size><width>10</width><height>10</height></size>\n<object>{inner}</object></annotation>"
        )
    };
    for (inner, needle) in [
        (
            "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox>",
            "missing required field `name`",
        ),
        ("<name>a</name>", "missing required field `bndbox`"),
        (
            "<name>a</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax></bndbox>",
            "`bndbox/ymax`",
        ),
        (
            "<name>a</name><bndbox><xmin>one</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox>",
            "<xmin> is not a number",
        ),
    ] {
        let path = write(dir.path(), "x.xml", &obj(inner));
        let msg = refused(import(Format::Voc, &path, None));
        assert!(
            msg.contains("x.xml:2") || msg.contains("line 2"),
            "{inner}: {msg}"
        );
        assert!(msg.contains(needle), "{inner}: {msg}");
    }
    let path = write(
        dir.path(),
        "n.xml",
        "<annotation><size><width>-3</width><height>4</height></size></annotation>",
    );
    assert!(refused(import(Format::Voc, &path, None)).contains("negative image size"));
}

#[test]
fn voc_entities_classes_file_and_clipping() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "classes.txt", "dog\ncat & co\n");
    write(
        dir.path(),
        "Annotations/a.xml",
        "<annotation><filename>a&#46;jpg</filename><size><width>10</width><height>10</height></size>\
         <object><name>cat &amp; co</name><difficult/><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>15</xmax><ymax>8</ymax></bndbox></object>\
         <object><name><![CDATA[bird]]></name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>1</xmax><ymax>8</ymax></bndbox></object>\
         </annotation>",
    );
    let p = import(Format::Voc, &dir.path().join("Annotations"), None).expect("import");
    assert_eq!(p.dataset.classes, ["dog", "cat & co", "bird"]);
    let img = &p.dataset.images[0];
    assert_eq!(img.file_name, "a.jpg");
    assert_eq!(img.boxes.len(), 1);
    assert_eq!(
        (img.boxes[0].class, img.boxes[0].bbox),
        (1, BBox::new(5.0, 5.0, 5.0, 3.0))
    );
    let kinds: Vec<&str> = p.warnings.iter().map(|w| w.kind.as_str()).collect();
    // The first object is clipped; the second has an unlisted class and no area.
    assert_eq!(kinds, ["clipped_box", "unknown_class", "zero_area_box"]);
}

#[test]
fn format_names_round_trip() {
    for f in Format::ALL {
        assert_eq!(f.to_string().parse::<Format>(), Ok(f));
    }
    assert_eq!("COCO_results".parse::<Format>(), Ok(Format::CocoResults));
    assert!("labelimg".parse::<Format>().is_err());
}

#[test]
fn box_checks() {
    assert_eq!(
        check_box(BBox::new(1.0, 1.0, 2.0, 2.0), 10, 10),
        BoxCheck::Keep(BBox::new(1.0, 1.0, 2.0, 2.0))
    );
    assert_eq!(
        check_box(BBox::new(8.0, 1.0, 4.0, 2.0), 10, 10),
        BoxCheck::Clipped(BBox::new(8.0, 1.0, 2.0, 2.0))
    );
    assert_eq!(
        check_box(BBox::new(11.0, 1.0, 4.0, 2.0), 10, 10),
        BoxCheck::ZeroArea
    );
    assert_eq!(
        check_box(BBox::new(1.0, 1.0, 0.0, 2.0), 10, 10),
        BoxCheck::ZeroArea
    );
    assert_eq!(
        check_box(BBox::new(50.0, 1.0, 4.0, 2.0), 0, 0),
        BoxCheck::Keep(BBox::new(50.0, 1.0, 4.0, 2.0))
    );
    assert_eq!(
        relative_slash_path(Path::new("/a/b"), Path::new("/a/c/d.jpg")),
        "../c/d.jpg"
    );
    assert_eq!(
        safe_relative("../x/./y.jpg"),
        Some(PathBuf::from("x/y.jpg"))
    );
    assert_eq!(safe_relative("/"), None);
}

#[test]
fn darknet_lists_and_plain_folders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for name in ["images/a.png", "images/b.png", "flat/c.png"] {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        image::RgbImage::new(10, 20).save(&path).expect("png");
    }
    write(root, "labels/a.txt", "1 0.5 0.5 0.2 0.1\n");
    write(root, "flat/c.txt", "0 0.5 0.5 1 1\n");
    write(root, "obj.names", "zero\none\n");
    write(
        root,
        "train.txt",
        "data/images/a.png\n/nowhere/images/b.png\n",
    );
    write(root, "valid.txt", "images/missing.png\n");
    write(
        root,
        "obj.data",
        "classes = 3\ntrain = data/train.txt\nvalid = valid.txt\nnames = data/obj.names\n",
    );
    let p = import(Format::Yolo, root, None).expect("import");
    let names: Vec<&str> = p
        .dataset
        .images
        .iter()
        .map(|i| i.file_name.as_str())
        .collect();
    assert_eq!(
        names,
        ["images/a.png", "images/b.png"],
        "b is found by dropping leading folders"
    );
    assert!(close(
        p.dataset.images[0].boxes[0].bbox,
        BBox::new(4.0, 9.0, 2.0, 2.0),
        1e-9
    ));
    assert!(p.dataset.images[1].boxes.is_empty());
    let kinds: BTreeSet<&str> = p.warnings.iter().map(|w| w.kind.as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["class_count_mismatch"]));
    let unresolved: Vec<&str> = p.unresolved.iter().map(|u| u.entry.as_str()).collect();
    assert_eq!(unresolved, ["images/missing.png"]);
    assert!(p.unresolved[0].location.ends_with("valid.txt:1"));

    // The same folder without obj.data: label-driven, labels beside or parallel to images.
    std::fs::remove_file(root.join("obj.data")).expect("rm");
    let p = import(Format::Yolo, root, Some(&root.join("images"))).expect("import");
    let names: Vec<&str> = p
        .dataset
        .images
        .iter()
        .map(|i| i.file_name.as_str())
        .collect();
    assert_eq!(names, ["../flat/c.png", "a.png"]);
    assert_eq!(p.images_dir, root.join("images"));
}

#[test]
fn voc_export_copies_images_and_reads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    let ds = sample_dataset();
    write_images(&src, &ds);
    let out = dir.path().join("voc");
    let report = export(Format::Voc, &ds, &out, Some(&src)).expect("export");
    assert_eq!(
        report,
        ExportReport {
            files_written: 6,
            images: 2,
            boxes: 2
        }
    );
    assert_eq!(
        std::fs::read_to_string(out.join("labelmap.txt")).expect("labelmap"),
        "# label:color_rgb:parts:actions\nperson:::\nyes:::\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("ImageSets/Main/train.txt")).expect("split list"),
        "a\nb\n"
    );
    let p = import(Format::Voc, &out.join("Annotations"), None).expect("import");
    assert_eq!(p.images_dir, out.join("JPEGImages"));
    assert_eq!(p.dataset.classes, ds.classes);
    let img = &p.dataset.images[0];
    assert_eq!(
        (img.file_name.as_str(), img.width, img.height),
        ("a.png", 40, 20)
    );
    assert!(p.images_dir.join(&img.file_name).is_file());
    assert_eq!(img.boxes[0].bbox, ds.images[0].boxes[0].bbox);
    assert_eq!(img.boxes[0].id, ds.images[0].boxes[0].id);
}
