//! Stacks (issue 15, part 1): DICOM series grouped and ordered, multi-frame DICOM files and
//! multi-page TIFFs split into frames, conflicting slices reported, and frames exported as PNG.
//! The series are real DICOM files written by pydicom (tests/data/dicom_series/make_series.py).

use std::path::{Path, PathBuf};

use loupe::store::{ImageFilter, ImageRow, Project};

use crate::support::{new_project, ok, ok_json, run, s};

fn series_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dicom_series")
}

/// Copies a fixture folder or file into `dir`.
fn copy_in(dir: &Path, name: &str) -> PathBuf {
    let from = series_dir().join(name);
    let to = dir.join(name);
    if from.is_dir() {
        std::fs::create_dir_all(&to).expect("mkdir");
        for e in std::fs::read_dir(&from).expect("read dir") {
            let e = e.expect("entry");
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    } else {
        std::fs::copy(&from, &to).expect("copy");
    }
    to
}

fn rows(p: &Path) -> Vec<ImageRow> {
    Project::open(p)
        .expect("open")
        .list_images(&ImageFilter::default())
        .expect("list")
}

#[test]
fn a_series_is_one_stack_ordered_by_slice_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    let ct = copy_in(dir.path(), "ct_axial");
    let out = ok(&p, &["add", s(&ct)]);
    assert!(
        out.contains("6 slices, ordered by slice position") && out.contains("(CT)"),
        "{out}"
    );
    let mut stack: Vec<ImageRow> = rows(&p);
    assert_eq!(stack.len(), 6);
    assert!(
        stack
            .iter()
            .all(|r| r.stack.as_deref() == Some("series:1.2.826.0.1.3680043.10.1234.1"))
    );
    stack.sort_by_key(|r| r.frame);
    let z: Vec<f64> = stack
        .iter()
        .map(|r| r.slice_mm.expect("slice position"))
        .collect();
    assert_eq!(
        z,
        [40.0, 42.5, 45.0, 47.5, 50.0, 52.5],
        "ordered along the normal"
    );
    // InstanceNumber runs the other way in these files; position wins.
    // Adding again changes nothing and keeps the order.
    ok(&p, &["add", s(&ct)]);
    let mut again = rows(&p);
    again.sort_by_key(|r| r.frame);
    assert_eq!(
        again.iter().map(|r| r.path.clone()).collect::<Vec<_>>(),
        stack.iter().map(|r| r.path.clone()).collect::<Vec<_>>()
    );

    // A sagittal series orders along x (its normal), not z, and ignores file names.
    let mr = copy_in(dir.path(), "mr_sagittal");
    let report = ok_json(&p, &["add", s(&mr), "--json"]);
    assert_eq!(report["stacks"][0]["frames"], 4, "{report}");
    let mut sag: Vec<ImageRow> = rows(&p)
        .into_iter()
        .filter(|r| r.path.starts_with("mr_sagittal"))
        .collect();
    sag.sort_by_key(|r| r.frame);
    // Files a..d hold x = 6, 3, 0, -3 (see make_series.py); the normal is -x.
    assert_eq!(
        sag.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        [
            "mr_sagittal/a.dcm",
            "mr_sagittal/b.dcm",
            "mr_sagittal/c.dcm",
            "mr_sagittal/d.dcm"
        ]
    );
}

#[test]
fn two_series_in_one_folder_and_a_misfit_are_told_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    let mixed = copy_in(dir.path(), "mixed");
    let out = run(&p, &["add", s(&mixed)]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stderr.contains("mixed/odd.dcm left out of series") && stderr.contains("10x8 pixels"),
        "{stderr}"
    );
    assert!(
        stdout.contains("3 slices") && stdout.contains("2 slices"),
        "{stdout}"
    );
    let all = rows(&p);
    let odd = all.iter().find(|r| r.path == "mixed/odd.dcm").expect("odd");
    assert_eq!(odd.stack, None, "the misfit is not mixed in");
    assert_eq!(all.iter().filter(|r| r.stack.is_some()).count(), 5);
}

#[test]
fn a_multi_frame_file_is_a_stack_of_frames_that_decode_one_by_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    let file = copy_in(dir.path(), "multiframe.dcm");
    let report = ok_json(&p, &["add", s(&file), "--json"]);
    assert_eq!(report["stacks"][0]["kind"], "frames", "{report}");
    assert_eq!(report["stacks"][0]["frames"], 5);
    let frames = rows(&p);
    assert_eq!(frames.len(), 5);
    assert_eq!(frames[2].path, "multiframe.dcm#frame=0003");
    assert_eq!((frames[2].width, frames[2].height), (16, 12));
    // Frame 3 (index 2): background 400, a block of 4000 from row 4.
    let project = Project::open(&p).expect("open");
    let rec = project.image(frames[2].id).expect("record");
    let (img, mapping) =
        loupe::imaging::decode_with_mapping(&project.image_file(&rec)).expect("decode frame");
    let mapping = mapping.expect("gray mapping");
    let luma = img.to_luma16();
    assert_eq!(mapping.value(f64::from(luma.get_pixel(0, 0)[0])), 400.0);
    assert_eq!(mapping.value(f64::from(luma.get_pixel(3, 4)[0])), 4000.0);
    // A frame past the end is an error naming the file.
    let err = loupe::imaging::decode(&dir.path().join("multiframe.dcm#frame=0009"))
        .expect_err("no frame 9")
        .to_string();
    assert!(
        err.contains("multiframe.dcm") && err.contains("frame 9"),
        "{err}"
    );

    // Exported for training, each frame is a PNG with a stable name.
    let out = dir.path().join("yolo");
    ok(
        &p,
        &["export", "--format", "yolo", s(&out), "--images", "copy"],
    );
    for n in 1..=5 {
        let png = out.join(format!("images/multiframe_frame{n:04}.png"));
        let img = image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert_eq!((img.width(), img.height()), (16, 12));
    }
}

#[test]
fn real_multi_frame_files_and_multi_page_tiffs_split_into_frames() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    // pydicom's 2-frame RGB RLE file.
    let rle = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/third_party/dicom/SC_rgb_rle_2frame.dcm");
    std::fs::copy(&rle, dir.path().join("rle.dcm")).expect("copy (scripts/fetch-testdata.sh)");
    // A 3-page TIFF written with the tiff crate, each page its own grey level.
    let tiff = dir.path().join("pages.tif");
    {
        let file = std::fs::File::create(&tiff).expect("create");
        let mut enc = tiff::encoder::TiffEncoder::new(file).expect("encoder");
        for page in 0u8..3 {
            let data = vec![page * 50 + 10; 20 * 10];
            enc.write_image::<tiff::encoder::colortype::Gray8>(20, 10, &data)
                .expect("page");
        }
    }
    let report = ok_json(&p, &["add", s(dir.path()), "--json"]);
    let frames: Vec<u64> = report["stacks"]
        .as_array()
        .expect("stacks")
        .iter()
        .map(|s| s["frames"].as_u64().expect("frames"))
        .collect();
    assert_eq!(frames.len(), 2, "{report}");
    assert!(frames.contains(&2) && frames.contains(&3), "{report}");
    let second = loupe::imaging::decode(&dir.path().join("pages.tif#frame=0002")).expect("page 2");
    assert_eq!(second.to_luma8().get_pixel(5, 5)[0], 60);
    let rgb = loupe::imaging::decode(&dir.path().join("rle.dcm#frame=0002")).expect("frame 2");
    assert_eq!((rgb.width(), rgb.height()), (100, 100));
}

#[test]
fn coco_exports_carry_frames_and_dicom_references_and_imports_restore_the_stacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    for sub in ["a", "b"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    let a = new_project(&dir.path().join("a"));
    let ct = copy_in(&dir.path().join("a"), "ct_axial");
    let multi = copy_in(&dir.path().join("a"), "multiframe.dcm");
    ok(&a, &["add", s(&ct), s(&multi)]);
    // Labels on two slices and on one frame of the multi-frame file.
    let labels = dir.path().join("labels.json");
    std::fs::write(
        &labels,
        r#"{"images": [
            {"id": 1, "file_name": "ct_axial/IM0001.dcm", "width": 32, "height": 24},
            {"id": 2, "file_name": "ct_axial/IM0004.dcm", "width": 32, "height": 24},
            {"id": 3, "file_name": "multiframe.dcm#frame=0003", "width": 16, "height": 12}],
          "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 5, 5]},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [3, 3, 5, 5]},
            {"id": 3, "image_id": 3, "category_id": 1, "bbox": [1, 4, 4, 4]}],
          "categories": [{"id": 1, "name": "lesion"}]}"#,
    )
    .expect("write labels");
    ok(&a, &["import", "--format", "coco", s(&labels)]);
    let before: Vec<ImageRow> = rows(&a);

    let out = dir.path().join("coco");
    ok(
        &a,
        &["export", "--format", "coco", s(&out), "--images", "copy"],
    );
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("annotations/instances_train.json")).expect("instances"),
    )
    .expect("json");
    let images = json["images"].as_array().expect("images");
    assert_eq!(images.len(), 11);
    let by_source = |source: &str| {
        images
            .iter()
            .find(|i| i["loupe_path"] == source)
            .unwrap_or_else(|| panic!("{source} not exported: {json}"))
    };
    let slice = &by_source("ct_axial/IM0004.dcm")["extra"];
    let row = before
        .iter()
        .find(|r| r.path == "ct_axial/IM0004.dcm")
        .expect("row");
    assert_eq!(slice["stack"], "series:1.2.826.0.1.3680043.10.1234.1");
    assert_eq!(slice["frame"], row.frame);
    assert_eq!(slice["slice_mm"], row.slice_mm.expect("slice position"));
    assert_eq!(slice["source"], "ct_axial/IM0004.dcm");
    assert_eq!(
        slice["dicom"]["SeriesInstanceUID"],
        "1.2.826.0.1.3680043.10.1234.1"
    );
    let sop = slice["dicom"]["SOPInstanceUID"].as_str().expect("SOP UID");
    assert!(sop.starts_with("1.2.826.0.1.3680043.10.1234."), "{sop}");
    assert_ne!(
        by_source("ct_axial/IM0001.dcm")["extra"]["dicom"]["SOPInstanceUID"],
        sop,
        "each slice names its own instance"
    );
    assert!(slice["dicom"].get("frame_number").is_none());
    let frame = &by_source("multiframe.dcm#frame=0003")["extra"];
    assert_eq!(frame["stack"], "file:multiframe.dcm");
    assert_eq!(frame["frame"], 2);
    assert_eq!(frame["source"], "multiframe.dcm");
    assert_eq!(
        frame["dicom"]["frame_number"], 3,
        "DICOM counts frames from 1"
    );

    // Another project that only has the exported PNG files gets the stacks back from the file.
    let b = new_project(&dir.path().join("b"));
    ok(&b, &["add", s(&out.join("images/train"))]);
    assert!(rows(&b).iter().all(|r| r.stack.is_none()));
    let said = ok(
        &b,
        &[
            "import",
            "--format",
            "coco",
            s(&out.join("annotations/instances_train.json")),
        ],
    );
    // Two slices of the synthetic volume render to the same PNG bytes, which `add` keeps once.
    let after = rows(&b);
    assert!(after.len() >= 10, "{after:#?}");
    assert!(
        said.contains(&format!("{} images placed in their stacks", after.len())),
        "{said}"
    );
    for restored in &after {
        let name = restored.path.rsplit('/').next().expect("file name");
        let exported = images
            .iter()
            .find(|i| i["file_name"] == name)
            .unwrap_or_else(|| panic!("{name} not exported"));
        let source = exported["loupe_path"].as_str().expect("loupe path");
        let original = before.iter().find(|r| r.path == source).expect("original");
        assert_eq!(
            (&restored.stack, restored.frame, restored.slice_mm),
            (&original.stack, original.frame, original.slice_mm),
            "{name}"
        );
        assert_eq!(restored.boxes, original.boxes, "{name}");
    }
    // Importing it again changes no membership and says nothing about stacks.
    let again = run(
        &b,
        &[
            "import",
            "--format",
            "coco",
            s(&out.join("annotations/instances_train.json")),
            "--skip-existing",
        ],
    );
    assert!(
        !String::from_utf8_lossy(&again.stdout).contains("placed in their stacks"),
        "{again:?}"
    );
}
