//! Box attributes end to end through the CLI: imported from real files, stored with every
//! revision, shown by `loupe history`, and written back by the formats that hold them.

use std::collections::BTreeSet;
use std::path::Path;

use loupe::formats::{Format, import};
use loupe::model::{AttributeValue, Attributes, Dataset};
use loupe::store::Project;

use crate::support::{new_project, ok, run, s, testdata};

fn cvat_task() -> std::path::PathBuf {
    testdata().join("datumaro/tests/assets/cvat_dataset/for_images/export_task/train.xml")
}

/// Every box of a dataset as (class name, box, attributes), ignoring image order.
fn boxes(d: &Dataset) -> BTreeSet<String> {
    d.images
        .iter()
        .flat_map(|i| {
            i.boxes
                .iter()
                .map(|b| format!("{} {:?} {:?}", d.classes[b.class], b.bbox, b.attributes))
        })
        .collect()
}

/// The attributes of every current box of a project, by box position (ids differ between
/// projects).
fn stored(project: &Path) -> BTreeSet<String> {
    let p = Project::open(project).expect("open");
    p.all_annotations()
        .expect("annotations")
        .into_iter()
        .map(|a| format!("{:?} {:?}", a.value.bbox, a.value.attributes))
        .collect()
}

/// Imports a file (images that are not there become placeholders), asserting that nothing says
/// attributes were dropped.
fn import_ok(project: &Path, format: &str, file: &Path) {
    let out = run(
        project,
        &["import", "--format", format, s(file), "--allow-missing"],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "import failed: {text}");
    assert!(!text.contains("attributes_not_stored"), "{text}");
}

#[test]
fn cvat_attributes_are_stored_shown_and_exported_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    import_ok(&p, "cvat", &cvat_task());

    // <box label="label1" occluded="1" … z_order="1"> with a1..a4 (checkbox, radio, text, number).
    let project = Project::open(&p).expect("open");
    let anns = project.all_annotations().expect("annotations");
    assert_eq!(anns.len(), 1);
    let a = &anns[0].value.attributes;
    let expected: Attributes = [
        ("occluded", AttributeValue::Bool(true)),
        ("z_order", AttributeValue::from(1)),
        ("a1", AttributeValue::Bool(true)),
        ("a2", AttributeValue::from("v3")),
        ("a3", AttributeValue::from("0003")),
        ("a4", AttributeValue::from_text("2.4")),
    ]
    .into_iter()
    .collect();
    assert_eq!(a, &expected);
    let id = anns[0].id.to_string();
    drop(project);

    let history = ok(&p, &["history", &id]);
    assert!(
        history.contains("attributes: occluded=true, z_order=1, a1=true, a2=v3, a3=0003, a4=2.4"),
        "{history}"
    );
    let json = crate::support::ok_json(&p, &["history", &id, "--json"]);
    assert_eq!(json[0]["value"]["attributes"]["a3"], "0003", "{json}");

    // Store → CVAT XML → the same boxes and attributes as the original file.
    let out = dir.path().join("cvat");
    ok(
        &p,
        &[
            "export",
            "--format",
            "cvat",
            "--images",
            "none",
            "--allow-missing",
            s(&out),
        ],
    );
    let xml = out.join("annotations.xml");
    let text = std::fs::read_to_string(&xml).expect("read");
    assert!(
        text.contains(r#"<attribute name="a3">0003</attribute>"#)
            && text.contains("<name>a4</name>")
            && text.contains(r#"occluded="1""#),
        "{text}"
    );
    let original = import(Format::Cvat, &cvat_task(), None).expect("parse original");
    let back = import(Format::Cvat, &xml, None).expect("parse export");
    assert_eq!(boxes(&back.dataset), boxes(&original.dataset));
    // … and imported again into another project, the same stored attributes.
    let q = dir.path().join("q.loupe");
    drop(Project::create(&q).expect("create"));
    import_ok(&q, "cvat", &xml);
    assert_eq!(stored(&q), stored(&p));

    // COCO writes them as CVAT's COCO export does, typed and in order.
    let coco = dir.path().join("c.json");
    ok(
        &p,
        &["export", "--format", "coco", "--allow-missing", s(&coco)],
    );
    let text = std::fs::read_to_string(&coco).expect("read");
    assert!(
        text.contains(
            r#""attributes":{"occluded":true,"z_order":1,"a1":true,"a2":"v3","a3":"0003","a4":2.4}"#
        ),
        "{text}"
    );
    // YOLO has no place for them and is unchanged by them.
    let yolo = dir.path().join("yolo");
    ok(
        &p,
        &[
            "export",
            "--format",
            "yolo",
            "--images",
            "none",
            "--allow-missing",
            s(&yolo),
        ],
    );
}

#[test]
fn a_video_track_id_is_stored_and_written_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let xml = dir.path().join("video.xml");
    std::fs::write(
        &xml,
        r#"<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><mode>interpolation</mode>
    <labels><label><name>car</name></label></labels>
    <original_size><width>640</width><height>360</height></original_size>
  </task></meta>
  <track id="7" label="car" source="manual">
    <box frame="0" keyframe="1" outside="0" occluded="0" xtl="10" ytl="20" xbr="110" ybr="70" z_order="0">
      <attribute name="color">red</attribute>
    </box>
    <box frame="1" keyframe="0" outside="0" occluded="1" xtl="12" ytl="20" xbr="112" ybr="70" z_order="0">
      <attribute name="color">dark red</attribute>
    </box>
  </track>
</annotations>"#,
    )
    .expect("write");
    let p = new_project(dir.path());
    import_ok(&p, "cvat", &xml);
    let project = Project::open(&p).expect("open");
    let mut tracks: Vec<String> = project
        .all_annotations()
        .expect("annotations")
        .iter()
        .map(|a| {
            a.value
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    tracks.sort();
    assert_eq!(
        tracks,
        ["occluded=true track=7 color=dark red", "track=7 color=red"]
    );
    drop(project);
    let out = dir.path().join("out.xml");
    ok(
        &p,
        &[
            "export",
            "--format",
            "cvat",
            "--images",
            "none",
            "--allow-missing",
            s(&out),
        ],
    );
    let original = import(Format::Cvat, &xml, None).expect("parse original");
    let back = import(Format::Cvat, &out, None).expect("parse export");
    assert_eq!(boxes(&back.dataset), boxes(&original.dataset));
}

/// The flag columns (IsOccluded … IsInside) of each row of an Open Images bbox CSV, with its
/// Source and Confidence.
fn flag_rows(csv: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(csv)
        .expect("read csv")
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            format!("{} {} {}", f[1], f[3], f[8..13].join(","))
        })
        .collect()
}

#[test]
fn open_images_flags_come_back_as_they_were() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    let src = testdata().join("datumaro/tests/assets/open_images_dataset/v6");
    import_ok(&p, "openimages", &src);
    let out = dir.path().join("oi");
    ok(
        &p,
        &[
            "export",
            "--format",
            "openimages",
            "--images",
            "none",
            "--allow-missing",
            s(&out),
        ],
    );
    let mut original = BTreeSet::new();
    for name in [
        "oidv6-train-annotations-bbox.csv",
        "test-annotations-bbox.csv",
    ] {
        original.extend(flag_rows(&src.join("annotations").join(name)));
    }
    // b,xclick,/m/0,1,…,-1,-1,-1,-1,-1 and c,xclick,/m/3,0.7,…,1,0,1,0,0: unknown stays -1.
    assert_eq!(
        original,
        BTreeSet::from([
            "xclick 1 -1,-1,-1,-1,-1".to_owned(),
            "xclick 0.7 1,0,1,0,0".to_owned()
        ])
    );
    assert_eq!(
        flag_rows(&out.join("annotations/train-annotations-bbox.csv")),
        original
    );
}

#[test]
fn coco_attributes_are_read_and_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    let src = testdata()
        .join("datumaro/tests/assets/coco_dataset/coco_instances/annotations/instances_val.json");
    let out = run(
        &p,
        &["import", "--format", "coco", s(&src), "--allow-missing"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let coco = dir.path().join("c.json");
    ok(
        &p,
        &["export", "--format", "coco", "--allow-missing", s(&coco)],
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&coco).expect("read")).expect("json");
    // annotations[0] of the file: bbox [0, 0, 1, 2], "attributes": {"x": 1, "y": "hello"}.
    let with: Vec<&serde_json::Value> = v["annotations"]
        .as_array()
        .expect("annotations")
        .iter()
        .filter(|a| a.get("attributes").is_some())
        .collect();
    assert_eq!(with.len(), 1, "{v}");
    assert_eq!(with[0]["bbox"], serde_json::json!([0.0, 0.0, 1.0, 2.0]));
    assert_eq!(
        with[0]["attributes"],
        serde_json::json!({"x": 1, "y": "hello"})
    );
}
