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
