//! Tests of the labelme, CreateML and Open Images formats (data-driven over third-party files,
//! round trips, malformed input) and the cross-format test every format takes part in.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::model::{AttributeValue, Attributes, BBox, BoxFlags, Dataset, DatasetBox, DatasetImage};

/// The third-party test material in the repository.
fn testdata() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/third_party");
    assert!(
        dir.is_dir(),
        "test data not found at {}: run scripts/fetch-testdata.sh",
        dir.display()
    );
    dir
}

fn settings(shapes_as_boxes: bool) -> ImportSettings {
    ImportSettings {
        images_dir: None,
        shapes_as_boxes,
        ..ImportSettings::default()
    }
}

fn box_count(p: &Parsed) -> usize {
    p.dataset.images.iter().map(|i| i.boxes.len()).sum()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn assert_box(b: &DatasetBox, x: f64, y: f64, w: f64, h: f64) {
    let r = b.bbox;
    assert!(
        close(r.x, x) && close(r.y, y) && close(r.w, w) && close(r.h, h),
        "box {r:?}, expected [{x}, {y}, {w}, {h}]"
    );
}

/// An attribute as the text a text format writes.
fn attr(b: &DatasetBox, k: &str) -> Option<String> {
    b.attributes.get(k).map(AttributeValue::to_text)
}

// ---------------------------------------------------------------------------------------------
// Every real file of each format

/// A real file, how it is read, and the counts it must give (images, boxes, classes, skipped),
/// or the text of its refusal. `why` is what reading the file by hand told us.
pub(super) struct RealCase {
    pub(super) path: &'static str,
    format: Format,
    shapes_as_boxes: bool,
    expect: Result<(usize, usize, usize, usize), &'static str>,
    why: &'static str,
}

pub(super) const REAL: &[RealCase] = &[
    RealCase {
        path: "labelme/examples/bbox_detection/data_annotated",
        format: Format::Labelme,
        shapes_as_boxes: false,
        expect: Ok((3, 9, 3, 0)),
        why: "2 + 4 + 3 rectangles; person, bus, car",
    },
    RealCase {
        path: "labelme/examples/instance_segmentation/data_annotated",
        format: Format::Labelme,
        shapes_as_boxes: false,
        expect: Ok((3, 0, 0, 18)),
        why: "5 + 10 + 3 polygons, skipped without --shapes-as-boxes",
    },
    RealCase {
        path: "labelme/examples/instance_segmentation/data_annotated",
        format: Format::Labelme,
        shapes_as_boxes: true,
        expect: Ok((3, 18, 7, 0)),
        why: "the 18 polygons as boxes: person, bottle, __ignore__, chair, sofa, bus, car",
    },
    RealCase {
        path: "labelme/examples/primitives/primitives.json",
        format: Format::Labelme,
        shapes_as_boxes: false,
        expect: Ok((1, 2, 1, 6)),
        why: "2 rectangles; circle, polygon, line, point, linestrip, mask skipped",
    },
    RealCase {
        path: "labelme/examples/primitives/primitives.json",
        format: Format::Labelme,
        shapes_as_boxes: true,
        expect: Ok((1, 7, 6, 1)),
        why: "every shape a box but the point (no area)",
    },
    RealCase {
        path: "labelme/examples/video_annotation/data_annotated",
        format: Format::Labelme,
        shapes_as_boxes: false,
        expect: Ok((5, 0, 0, 15)),
        why: "5 frames of 3 polygons",
    },
    RealCase {
        path: "labelme/examples",
        format: Format::Labelme,
        shapes_as_boxes: false,
        expect: Ok((12, 11, 4, 39)),
        why: "every example folder at once; data_dataset_coco/annotations.json is COCO, skipped",
    },
    RealCase {
        path: "datumaro/tests/assets/labelme_dataset",
        format: Format::Labelme,
        shapes_as_boxes: false,
        expect: Err("no labelme JSON files found"),
        why: "Datumaro's `label_me` is MIT LabelMe XML, not labelme JSON",
    },
    RealCase {
        path: "labelimg/generated_by_labelimg_writers/test.512.512.createml.json",
        format: Format::Createml,
        shapes_as_boxes: false,
        expect: Ok((1, 2, 2, 0)),
        why: "labelImg's CreateML writer: person and face",
    },
    RealCase {
        path: "datumaro/tests/assets/roboflow_dataset/createml",
        format: Format::Createml,
        shapes_as_boxes: false,
        expect: Ok((3, 4, 2, 0)),
        why: "train (2 images, 1 box each) and val (1 image, 2 boxes)",
    },
    RealCase {
        path: "datumaro/tests/assets/roboflow_dataset/createml/val/_annotations.createml.json",
        format: Format::Createml,
        shapes_as_boxes: false,
        expect: Ok((1, 2, 2, 0)),
        why: "one split file",
    },
    RealCase {
        path: "datumaro/tests/assets/open_images_dataset/v6",
        format: Format::Openimages,
        shapes_as_boxes: false,
        expect: Ok((2, 2, 2, 0)),
        why: "train box on b, test box on c; classes /m/0 and /m/3",
    },
    RealCase {
        path: "datumaro/tests/assets/open_images_dataset/v6/annotations/test-annotations-bbox.csv",
        format: Format::Openimages,
        shapes_as_boxes: false,
        expect: Ok((1, 1, 1, 0)),
        why: "one bbox CSV given directly",
    },
    RealCase {
        path: "datumaro/tests/assets/open_images_dataset/v5",
        format: Format::Openimages,
        shapes_as_boxes: false,
        expect: Err("no bounding-box CSV"),
        why: "v5 sample has image lists and class names but no boxes",
    },
];

#[test]
fn every_real_file_gives_the_counts_read_by_hand() {
    let root = testdata();
    for case in REAL {
        let path = root.join(case.path);
        let result = import_with(case.format, &path, &settings(case.shapes_as_boxes));
        match (case.expect, result) {
            (Ok((images, boxes, classes, skipped)), Ok(p)) => {
                let got = (
                    p.dataset.images.len(),
                    box_count(&p),
                    p.dataset.classes.len(),
                    p.skipped,
                );
                assert_eq!(
                    got,
                    (images, boxes, classes, skipped),
                    "{} ({}, shapes_as_boxes {}): {}\nwarnings: {:#?}",
                    case.path,
                    case.format,
                    case.shapes_as_boxes,
                    case.why,
                    p.warnings
                );
            }
            (Err(text), Err(e)) => {
                let msg = e.to_string();
                assert!(msg.contains(text), "{}: `{msg}` lacks `{text}`", case.path);
            }
            (expect, got) => panic!(
                "{} ({}): expected {expect:?}, got {:?} ({})",
                case.path,
                case.format,
                got.map(|p| (p.dataset.images.len(), box_count(&p))),
                case.why
            ),
        }
    }
}

#[test]
fn labelme_rectangles_sizes_and_paths_are_as_written() {
    let path = testdata().join("labelme/examples/bbox_detection/data_annotated");
    let p = import_with(Format::Labelme, &path, &settings(false)).expect("import");
    let img = &p.dataset.images[0];
    assert_eq!(img.file_name, "2011_000003.jpg");
    assert_eq!((img.width, img.height), (500, 338));
    // [[191.0, 107.36900369003689], [313.0, 329.36900369003695]]
    assert_box(
        &img.boxes[0],
        191.0,
        107.369_003_690_036_89,
        122.0,
        329.369_003_690_036_95 - 107.369_003_690_036_89,
    );
    assert_box(&img.boxes[1], 365.0, 83.0, 135.0, 250.0);
    assert_eq!(p.dataset.classes, ["person", "bus", "car"]);
}

#[test]
fn labelme_primitives_become_their_bounding_boxes() {
    let path = testdata().join("labelme/examples/primitives/primitives.json");
    let p = import_with(Format::Labelme, &path, &settings(true)).expect("import");
    let img = &p.dataset.images[0];
    assert_eq!((img.width, img.height), (560, 450));
    let by_class = |name: &str| {
        let c = p
            .dataset
            .classes
            .iter()
            .position(|n| n == name)
            .expect("class");
        img.boxes.iter().find(|b| b.class == c).expect("box")
    };
    // circle: centre (195, 84), through (225, 125): r = sqrt(30² + 41²).
    let r = 2581f64.sqrt();
    assert_box(by_class("circle"), 195.0 - r, 84.0 - r, 2.0 * r, 2.0 * r);
    assert_box(by_class("polygon"), 45.0, 318.0, 153.0, 88.0);
    assert_box(by_class("line"), 160.0, 178.0, 28.0, 46.0);
    assert_box(
        by_class("octagon"),
        417.397_590_361_445_74,
        305.0,
        99.0,
        99.0,
    );
    let kinds: Vec<&str> = p.warnings.iter().map(|w| w.kind.as_str()).collect();
    assert_eq!(kinds, ["zero_area_box"], "the point has no area");

    let p = import_with(Format::Labelme, &path, &settings(false)).expect("import");
    let mut kinds: Vec<&str> = p.warnings.iter().map(|w| w.kind.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "skipped_circle",
            "skipped_line",
            "skipped_linestrip",
            "skipped_mask",
            "skipped_point",
            "skipped_polygon"
        ]
    );
}

#[test]
fn labelme_group_ids_become_attributes() {
    let path = testdata().join("labelme/examples/instance_segmentation/data_annotated");
    let p = import_with(Format::Labelme, &path, &settings(true)).expect("import");
    // 2011_000003.json: the second and third person polygons share group_id 0.
    let boxes = &p.dataset.images[0].boxes;
    let groups: Vec<Option<&AttributeValue>> =
        boxes.iter().map(|b| b.attributes.get("group_id")).collect();
    let zero = AttributeValue::from(0);
    assert_eq!(groups, [None, Some(&zero), Some(&zero), None, None]);
}

#[test]
fn createml_centres_become_corners() {
    let path = testdata().join("labelimg/generated_by_labelimg_writers/test.512.512.createml.json");
    let p = import_with(Format::Createml, &path, &settings(false)).expect("import");
    let img = &p.dataset.images[0];
    assert_eq!(img.file_name, "test.512.512.bmp");
    // person: centre (242.5, 278.5), 355 x 467.
    assert_box(&img.boxes[0], 65.0, 45.0, 355.0, 467.0);
    // face: centre (297.5, 307.5), 105 x 115.
    assert_box(&img.boxes[1], 245.0, 250.0, 105.0, 115.0);
    assert_eq!(p.dataset.classes, ["person", "face"]);
    // The .bmp is not there: no size, boxes kept as written.
    assert_eq!(p.warnings[0].kind, "missing_size");

    let path = testdata().join("datumaro/tests/assets/roboflow_dataset/createml");
    let p = import_with(Format::Createml, &path, &settings(false)).expect("import");
    let names: Vec<&str> = p
        .dataset
        .images
        .iter()
        .map(|i| i.file_name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "train/train_001.jpg",
            "train/train_002.jpg",
            "val/val_001.jpg"
        ]
    );
    // train_001 is 10x5; label_0 centre (2, 1), 3 x 1.
    assert_eq!(
        (p.dataset.images[0].width, p.dataset.images[0].height),
        (10, 5)
    );
    assert_box(&p.dataset.images[0].boxes[0], 0.5, 0.5, 3.0, 1.0);
    // train_002: centre (0, 0), 2 x 4 reaches outside the image: clipped to its quarter inside.
    assert_box(&p.dataset.images[1].boxes[0], 0.0, 0.0, 1.0, 2.0);
    assert!(p.warnings.iter().any(|w| w.kind == "clipped_box"));
}

#[test]
fn openimages_v6_boxes_names_flags_and_sizes() {
    let path = testdata().join("datumaro/tests/assets/open_images_dataset/v6");
    let p = import_with(Format::Openimages, &path, &settings(false)).expect("import");
    assert_eq!(p.dataset.classes, ["Generic label #0", "Generic label #3"]);
    let b = &p.dataset.images[0];
    assert_eq!(b.file_name, "train/b.jpg");
    // images.meta: `b 2 8` is height 2, width 8 (the file is 8x2 too).
    assert_eq!((b.width, b.height), (8, 2));
    // b,xclick,/m/0,1,0.2,1,0.3,0.5,-1,-1,-1,-1,-1
    assert_box(
        &b.boxes[0],
        0.2 * 8.0,
        0.3 * 2.0,
        8.0 - 0.2 * 8.0,
        0.5 * 2.0 - 0.3 * 2.0,
    );
    assert_eq!(b.boxes[0].class, 0);
    assert_eq!(b.boxes[0].flags, BoxFlags::default());
    // Unknown (-1) occlusion, depiction and inside are left out (written back as -1); unknown
    // truncation and group-of are kept beside their flags so they are not written back as 0.
    let expected: Attributes = [
        ("Source", AttributeValue::from("xclick")),
        ("IsTruncated", AttributeValue::from(-1)),
        ("IsGroupOf", AttributeValue::from(-1)),
    ]
    .into_iter()
    .collect();
    assert_eq!(b.boxes[0].attributes, expected);
    let c = &p.dataset.images[1];
    assert_eq!(c.file_name, "test/c.jpg");
    // c.jpg is 5 wide, 10 high (its header; images.meta does not list it).
    assert_eq!((c.width, c.height), (5, 10));
    // c,xclick,/m/3,0.7,0.7,0.8,0,0.5,1,0,1,0,0
    assert_box(&c.boxes[0], 0.7 * 5.0, 0.0, 0.8 * 5.0 - 0.7 * 5.0, 5.0);
    assert_eq!(c.boxes[0].class, 1);
    assert!(c.boxes[0].flags.iscrowd && !c.boxes[0].flags.truncated);
    assert_eq!(attr(&c.boxes[0], "Confidence").as_deref(), Some("0.7"));
    assert_eq!(attr(&c.boxes[0], "IsOccluded").as_deref(), Some("1"));
    assert_eq!(attr(&c.boxes[0], "IsDepiction").as_deref(), Some("0"));
}

// ---------------------------------------------------------------------------------------------
// Malformed input

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(&p, text).expect("write");
    p
}

fn refused(format: Format, path: &Path) -> String {
    match import_with(format, path, &settings(false)) {
        Ok(p) => panic!("{} was accepted: {:?}", path.display(), p.dataset),
        Err(e) => e.to_string(),
    }
}

const LABELME_OK: &str = r#"{"version": "5.0.1", "shapes": [
  {"label": "cat", "points": [[10, 20], [30, 40]], "shape_type": "rectangle", "flags": {}}
], "imagePath": "a.jpg", "imageData": null, "imageHeight": 100, "imageWidth": 200}"#;

#[test]
fn malformed_labelme_is_refused_with_file_and_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ok = write(d, "ok.json", LABELME_OK);
    assert_eq!(
        box_count(&import_with(Format::Labelme, &ok, &settings(false)).expect("import")),
        1
    );

    let truncated = write(d, "t/truncated.json", &LABELME_OK[..80]);
    let msg = refused(Format::Labelme, &truncated);
    assert!(
        msg.contains("truncated.json:2:") && msg.contains("invalid JSON"),
        "{msg}"
    );

    let one_point = write(
        d,
        "one_point.json",
        &LABELME_OK.replace("[[10, 20], [30, 40]]", "[[10, 20]]"),
    );
    let msg = refused(Format::Labelme, &one_point);
    assert!(
        msg.contains("one_point.json")
            && msg.contains("shapes[0]")
            && msg.contains("needs 2 or 4 points, found 1"),
        "{msg}"
    );

    // Python's json.dump writes NaN for a float('nan') coordinate.
    let nan = write(d, "nan.json", &LABELME_OK.replace("[30, 40]", "[NaN, 40]"));
    let msg = refused(Format::Labelme, &nan);
    assert!(
        msg.contains("nan.json:2:") && msg.contains("invalid JSON"),
        "{msg}"
    );

    let three = write(
        d,
        "three.json",
        &LABELME_OK.replace("[30, 40]", "[30, 40, 5]"),
    );
    let msg = refused(Format::Labelme, &three);
    assert!(msg.contains("shapes[0] (label `cat`): points[1]"), "{msg}");

    let no_label = write(d, "nolabel.json", &LABELME_OK.replace("\"cat\"", "\"\""));
    let msg = refused(Format::Labelme, &no_label);
    assert!(msg.contains("missing required field `label`"), "{msg}");

    let coco = write(d, "coco.json", r#"{"images": [], "annotations": []}"#);
    let msg = refused(Format::Labelme, &coco);
    assert!(msg.contains("not a labelme file"), "{msg}");
}

#[test]
fn labelme_image_paths_and_embedded_sizes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // A Windows path with `..`, relative to the JSON's folder.
    let json = write(
        d,
        "ann/sub/x.json",
        &LABELME_OK.replace("\"a.jpg\"", r#""..\\..\\img\\a.jpg""#),
    );
    let p = import_with(
        Format::Labelme,
        &d.join("ann"),
        &ImportSettings {
            images_dir: Some(d.to_path_buf()),
            shapes_as_boxes: false,
            ..ImportSettings::default()
        },
    )
    .expect("import");
    assert_eq!(p.dataset.images[0].file_name, "img/a.jpg");
    drop(json);

    // No size fields and no image file: the size comes from the embedded PNG's header.
    let mut png = Vec::new();
    image::RgbImage::new(7, 3)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("png");
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD.encode(&png);
    let text = LABELME_OK
        .replace("\"imageData\": null", &format!("\"imageData\": \"{data}\""))
        .replace(", \"imageHeight\": 100, \"imageWidth\": 200", "")
        .replace("[30, 40]", "[5, 2]")
        .replace("[10, 20]", "[1, 1]");
    let json = write(d, "embedded/e.json", &text);
    let p = import_with(Format::Labelme, &json, &settings(false)).expect("import");
    let img = &p.dataset.images[0];
    assert_eq!((img.width, img.height), (7, 3));
    assert_box(&img.boxes[0], 1.0, 1.0, 4.0, 1.0);
}

#[test]
fn malformed_createml_is_refused_with_file_and_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let good = r#"[{"image": "a.jpg", "annotations": [{"label": "cat", "coordinates": {"x": 5, "y": 5, "width": 4, "height": 2}}]}]"#;
    let msg = refused(Format::Createml, &write(d, "t.json", &good[..60]));
    assert!(
        msg.contains("t.json:1:") && msg.contains("invalid JSON"),
        "{msg}"
    );
    let msg = refused(
        Format::Createml,
        &write(d, "w.json", &good.replace("\"width\": 4, ", "")),
    );
    assert!(
        msg.contains("[0].annotations[0]") && msg.contains("`coordinates.width`"),
        "{msg}"
    );
    let msg = refused(
        Format::Createml,
        &write(d, "n.json", &good.replace("\"width\": 4", "\"width\": -4")),
    );
    assert!(msg.contains("negative box size"), "{msg}");
    let msg = refused(
        Format::Createml,
        &write(d, "s.json", &good.replace("\"x\": 5", "\"x\": \"5\"")),
    );
    assert!(
        msg.contains("s.json") && msg.contains("not a CreateML file"),
        "{msg}"
    );
    let msg = refused(Format::Createml, &write(d, "o.json", LABELME_OK));
    assert!(msg.contains("top level is not a list"), "{msg}");
}

const OI_HEADER: &str = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside\n";

/// An Open Images folder with one 10x20 image `img1` known from images.meta, and `rows` as the
/// bbox CSV body.
fn oi_dataset(dir: &Path, header: &str, rows: &str) -> PathBuf {
    let root = dir.join("oi");
    write(&root, "annotations/images.meta", "img1 20 10\n");
    write(
        &root,
        "annotations/oidv6-class-descriptions.csv",
        "LabelName,DisplayName\n/m/cat,Cat\n",
    );
    write(
        &root,
        "annotations/oidv6-train-annotations-bbox.csv",
        &format!("{header}{rows}"),
    );
    root
}

#[test]
fn malformed_openimages_is_refused_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let good = "img1,xclick,/m/cat,1,0.1,0.5,0.25,0.75,0,0,0,0,0\n";
    let p = import_with(
        Format::Openimages,
        &oi_dataset(d, OI_HEADER, good),
        &settings(false),
    )
    .expect("import");
    assert_box(&p.dataset.images[0].boxes[0], 1.0, 5.0, 4.0, 10.0);
    assert_eq!(p.dataset.classes, ["Cat"]);

    let cases = [
        (
            OI_HEADER.replace("XMax,", ""),
            good.to_owned(),
            "line 1 (header): missing column `XMax`",
        ),
        (
            OI_HEADER.to_owned(),
            format!("{good}img1,xclick,/m/cat,1,abc,0.5,0.25,0.75,0,0,0,0,0\n"),
            "line 3: XMin is not a finite number: `abc`",
        ),
        (
            OI_HEADER.to_owned(),
            "img1,xclick,/m/cat,1,0.6,0.5,0.25,0.75,0,0,0,0,0\n".to_owned(),
            "line 2: XMin > XMax",
        ),
        (
            OI_HEADER.to_owned(),
            "img1,xclick,/m/cat,1,NaN,0.5,0.25,0.75,0,0,0,0,0\n".to_owned(),
            "line 2: XMin is not a finite number: `NaN`",
        ),
        (
            OI_HEADER.to_owned(),
            "img1,xclick,/m/cat,1,0.1\n".to_owned(),
            "line 2: 5 fields",
        ),
        (
            OI_HEADER.to_owned(),
            // An unquoted decimal comma in a comma-separated file shifts the columns: refused.
            "img1,xclick,/m/cat,1,0,1,0,5,0,25,0,75,0,0,0,0,0\n".to_owned(),
            "line 2: 17 fields, but the header has 13",
        ),
        (
            OI_HEADER.to_owned(),
            "img1,xclick,/m/cat,1,\"0.1,0.5,0.25,0.75,0,0,0,0,0\n".to_owned(),
            "not closed",
        ),
    ];
    for (header, rows, text) in cases {
        let root = oi_dataset(d, &header, &rows);
        let msg = refused(Format::Openimages, &root);
        assert!(
            msg.contains("oidv6-train-annotations-bbox.csv") && msg.contains(text),
            "`{msg}` lacks `{text}`"
        );
    }
}

#[test]
fn openimages_decimal_commas_are_read_when_unambiguous() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // Semicolon-separated, as spreadsheet programs in comma-decimal locales save CSV.
    let header = OI_HEADER.replace(',', ";");
    let root = oi_dataset(
        d,
        &header,
        "img1;xclick;/m/cat;1;0,1;0,5;0,25;0,75;0;1;0;0;0\n",
    );
    let p = import_with(Format::Openimages, &root, &settings(false)).expect("import");
    assert_box(&p.dataset.images[0].boxes[0], 1.0, 5.0, 4.0, 10.0);
    assert!(p.dataset.images[0].boxes[0].flags.truncated);
    // Comma-separated with the decimal-comma fields quoted.
    let root = oi_dataset(
        d,
        OI_HEADER,
        "img1,xclick,/m/cat,\"0,5\",\"0,1\",\"0,5\",\"0,25\",\"0,75\",0,0,0,0,0\n",
    );
    let p = import_with(Format::Openimages, &root, &settings(false)).expect("import");
    let b = &p.dataset.images[0].boxes[0];
    assert_box(b, 1.0, 5.0, 4.0, 10.0);
    assert_eq!(attr(b, "Confidence").as_deref(), Some("0.5"));
}

// ---------------------------------------------------------------------------------------------
// Round trips

/// Boxes of a dataset by image file stem: (class name, box, flags), sorted.
type Boxes = Vec<(String, Vec<(String, [f64; 4], u8)>)>;

fn boxes_by_stem(d: &Dataset, flags: bool) -> Boxes {
    let mut out: Boxes = d
        .images
        .iter()
        .map(|img| {
            let stem = Path::new(&img.file_name)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut boxes: Vec<_> = img
                .boxes
                .iter()
                .map(|b| {
                    (
                        d.classes[b.class].clone(),
                        [b.bbox.x, b.bbox.y, b.bbox.w, b.bbox.h],
                        if flags { b.flags.bits() } else { 0 },
                    )
                })
                .collect();
            boxes.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
            (stem, boxes)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn assert_same_boxes(what: &str, a: &Boxes, b: &Boxes) {
    assert_eq!(a.len(), b.len(), "{what}: image count");
    for ((sa, ba), (sb, bb)) in a.iter().zip(b) {
        assert_eq!(sa, sb, "{what}: images");
        assert_eq!(ba.len(), bb.len(), "{what}: boxes of {sa}");
        for (x, y) in ba.iter().zip(bb) {
            // YOLO keeps 6 decimals of the image size: up to 5e-7 x 4000 px per edge.
            let near = x.1.iter().zip(&y.1).all(|(p, q)| (p - q).abs() < 1e-4);
            assert!(
                x.0 == y.0 && x.2 == y.2 && near,
                "{what}: {sa}: {x:?} != {y:?}"
            );
        }
    }
}

fn arb_dataset() -> impl Strategy<Value = Dataset> {
    let image = (1u32..4000, 1u32..4000).prop_flat_map(|(w, h)| {
        let fw = f64::from(w);
        let fh = f64::from(h);
        let bbox = (
            0.0..1.0f64,
            0.0..1.0f64,
            0.01..1.0f64,
            0.01..1.0f64,
            0usize..3,
            0u8..4,
        )
            .prop_map(move |(x, y, bw, bh, class, flags)| {
                let x = x * fw * 0.9;
                let y = y * fh * 0.9;
                DatasetBox {
                    class,
                    bbox: BBox::new(x, y, (fw - x) * bw, (fh - y) * bh),
                    flags: BoxFlags::from_bits(flags),
                    id: Some(Uuid::now_v7()),
                    ..DatasetBox::default()
                }
            });
        (Just((w, h)), proptest::collection::vec(bbox, 0..5))
    });
    proptest::collection::vec(image, 1..5).prop_map(|images| Dataset {
        classes: vec!["cat".into(), "dog, big".into(), "ünï".into()],
        images: images
            .into_iter()
            .enumerate()
            .map(|(i, ((width, height), boxes))| DatasetImage {
                file_name: format!("d{}/img_{i}.jpg", i % 2),
                width,
                height,
                external_id: None,
                boxes,
            })
            .collect(),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn labelme_createml_openimages_round_trip(d in arb_dataset()) {
        for (format, flags) in
            [(Format::Labelme, false), (Format::Createml, false), (Format::Openimages, true)]
        {
            let dir = tempfile::tempdir().expect("tempdir");
            let out = dir.path().join("out");
            export(format, &d, &out, None).expect("export");
            let back = import_with(format, &out, &settings(false)).expect("import");
            assert_same_boxes(
                format.as_str(),
                &boxes_by_stem(&d, flags),
                &boxes_by_stem(&back.dataset, flags),
            );
            if format == Format::Labelme {
                // Loupe's ids ride along in labelme's extra shape data.
                let ids = |d: &Dataset| {
                    let mut v: Vec<_> =
                        d.images.iter().flat_map(|i| i.boxes.iter().map(|b| b.id)).collect();
                    v.sort();
                    v
                };
                prop_assert_eq!(ids(&d), ids(&back.dataset));
            }
        }
    }
}

#[test]
fn attributes_survive_labelme_and_openimages_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let labelme = testdata().join("labelme/examples/instance_segmentation/data_annotated");
    let first = import_with(Format::Labelme, &labelme, &settings(true)).expect("import");
    let out = dir.path().join("labelme");
    export(Format::Labelme, &first.dataset, &out, None).expect("export");
    let back = import_with(Format::Labelme, &out, &settings(false)).expect("import");
    let attrs = |d: &Dataset| -> Vec<Attributes> {
        d.images
            .iter()
            .flat_map(|i| i.boxes.iter().map(|b| b.attributes.clone()))
            .collect()
    };
    assert_eq!(attrs(&first.dataset), attrs(&back.dataset));

    let oi = testdata().join("datumaro/tests/assets/open_images_dataset/v6");
    let first = import_with(Format::Openimages, &oi, &settings(false)).expect("import");
    let out = dir.path().join("oi");
    export(Format::Openimages, &first.dataset, &out, None).expect("export");
    let back = import_with(Format::Openimages, &out, &settings(false)).expect("import");
    assert_eq!(attrs(&first.dataset), attrs(&back.dataset));
    assert_same_boxes(
        "openimages",
        &boxes_by_stem(&first.dataset, true),
        &boxes_by_stem(&back.dataset, true),
    );
}

// ---------------------------------------------------------------------------------------------
// Cross-format: one dataset with its images on disk, exported to each format and read back

/// A format in the cross-format test: how to export it and what to import from the export.
struct CrossFormat {
    format: Format,
    /// The import path inside the export folder `out`.
    import_path: fn(&Path) -> PathBuf,
    /// Whether the format carries the truncated/crowd/difficult flags it is given.
    flags: bool,
}

/// One line per format; a new format adds one line.
const CROSS: &[CrossFormat] = &[
    CrossFormat {
        format: Format::Coco,
        import_path: |out| out.join("annotations.json"),
        flags: false,
    },
    CrossFormat {
        format: Format::Yolo,
        import_path: Path::to_path_buf,
        flags: false,
    },
    CrossFormat {
        format: Format::Voc,
        import_path: Path::to_path_buf,
        flags: false,
    },
    CrossFormat {
        format: Format::Labelme,
        import_path: Path::to_path_buf,
        flags: false,
    },
    CrossFormat {
        format: Format::Createml,
        import_path: Path::to_path_buf,
        flags: false,
    },
    CrossFormat {
        format: Format::Openimages,
        import_path: Path::to_path_buf,
        flags: false,
    },
    CrossFormat {
        format: Format::Cvat,
        import_path: |out| out.join("annotations.xml"),
        flags: false,
    },
    CrossFormat {
        format: Format::LabelStudio,
        import_path: |out| out.join("tasks.json"),
        flags: false,
    },
];

/// A realistic small dataset: three images of different sizes in two folders, non-integer
/// boxes, an image without boxes, a box touching the image edge.
fn cross_dataset(images_root: &Path) -> Dataset {
    let specs = [
        ("street/a.png", 64, 48),
        ("street/b.png", 33, 71),
        ("park/c.png", 50, 50),
    ];
    for (i, (name, w, h)) in specs.iter().enumerate() {
        let path = images_root.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        image::RgbImage::from_fn(*w, *h, |x, y| {
            let pixel = |v: u32| u8::try_from(v % 256).unwrap_or(0);
            image::Rgb([pixel(x), pixel(y), pixel(u32::try_from(i).unwrap_or(0))])
        })
        .save(&path)
        .expect("png");
    }
    let b = |class, x, y, w, h| DatasetBox {
        class,
        bbox: BBox::new(x, y, w, h),
        ..DatasetBox::default()
    };
    Dataset {
        classes: vec!["person".into(), "car".into(), "traffic light".into()],
        images: vec![
            DatasetImage {
                file_name: "street/a.png".into(),
                width: 64,
                height: 48,
                external_id: None,
                boxes: vec![
                    b(0, 1.5, 2.25, 10.0, 20.5),
                    b(1, 30.0, 10.0, 34.0, 38.0),
                    b(2, 0.0, 0.0, 5.125, 7.75),
                ],
            },
            DatasetImage {
                file_name: "street/b.png".into(),
                width: 33,
                height: 71,
                external_id: None,
                boxes: vec![b(1, 3.3, 4.4, 20.1, 50.7)],
            },
            DatasetImage {
                file_name: "park/c.png".into(),
                width: 50,
                height: 50,
                external_id: None,
                boxes: Vec::new(),
            },
        ],
    }
}

#[test]
fn one_dataset_exported_to_every_format_reads_back_the_same_boxes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let images = dir.path().join("images");
    let dataset = cross_dataset(&images);
    let expected = boxes_by_stem(&dataset, false);
    for case in CROSS {
        let out = dir.path().join(format!("out-{}", case.format));
        export(case.format, &dataset, &out, Some(&images))
            .unwrap_or_else(|e| panic!("{}: export: {e}", case.format));
        let mut read = settings(false);
        if case.format == Format::LabelStudio {
            // Label Studio tasks point at images it serves; the export writes tasks.json only,
            // so the import is told where the images are, as a user would with --images.
            read.images_dir = Some(images.clone());
        }
        let back = import_with(case.format, &(case.import_path)(&out), &read)
            .unwrap_or_else(|e| panic!("{}: import: {e}", case.format));
        assert_same_boxes(
            case.format.as_str(),
            &expected,
            &boxes_by_stem(&back.dataset, case.flags),
        );
        let sizes: Vec<(u32, u32)> = {
            let mut v: Vec<_> = back
                .dataset
                .images
                .iter()
                .map(|i| (i.width, i.height))
                .collect();
            v.sort_unstable();
            v
        };
        // Label Studio keeps an image's size only in its boxes' results (`original_width`):
        // an image without boxes comes back without a size.
        let want_sizes: &[(u32, u32)] = if case.format == Format::LabelStudio {
            &[(0, 0), (33, 71), (64, 48)]
        } else {
            &[(33, 71), (50, 50), (64, 48)]
        };
        assert_eq!(sizes, want_sizes, "{}: image sizes", case.format);
        assert!(
            back.warnings.is_empty(),
            "{}: {:?}",
            case.format,
            back.warnings
        );
    }
    // Every format of the enum but results files is in the table.
    for format in Format::ALL {
        assert!(
            format == Format::CocoResults || CROSS.iter().any(|c| c.format == format),
            "{format} is missing from the cross-format table"
        );
    }
}
