//! A stack in the app, as a radiologist uses it: a CT series (real DICOM slices written by
//! pydicom) is one entry of the image list; PageDown/PageUp/Home/End step frames and the status
//! bar says which; a box is copied to the next frame with Shift+PageDown, moved on a later frame, and I
//! proposes it on the frames between, as proposals reviewed like a model's.

use std::path::Path;

use eframe::egui::Key;
use egui_kittest::Harness;
use loupe::model::{ReviewState, Source};
use loupe::store::Project;
use loupe::ui::{App, AppOptions};

use super::{SIZE, press, press_with, session, settle};

fn ct_project(dir: &Path) -> std::path::PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dicom_series/ct_axial");
    let to = dir.join("ct");
    std::fs::create_dir_all(&to).expect("mkdir");
    for e in std::fs::read_dir(&from).expect("fixtures") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
    // A plain image after the series, so the list has two entries.
    image::RgbImage::from_pixel(40, 30, image::Rgb([9, 9, 9]))
        .save(dir.join("zz.png"))
        .expect("png");
    let path = dir.join("p.loupe");
    let mut project = Project::create(&path).expect("create");
    loupe::ingest::add(
        &mut project,
        &[to, dir.join("zz.png")],
        &loupe::ingest::NoProgress,
    )
    .expect("add");
    project.ensure_class("lesion").expect("class");
    let me = project.current_user().expect("user");
    loupe::review::choose_profile(&mut project, &me.name, me.role).expect("profile");
    path
}

fn frame(h: &Harness<'_, App>) -> String {
    session(h).frame_text().unwrap_or_default()
}

#[test]
fn a_series_is_scrolled_labelled_and_interpolated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = ct_project(dir.path());
    let mut h = Harness::builder()
        .with_size(SIZE)
        .with_max_steps(64)
        .build_eframe(move |cc| App::new(cc, AppOptions::project_only(&path)));
    settle(&mut h);
    assert_eq!(session(&h).rows().len(), 7, "6 slices and one image");
    assert!(
        frame(&h).starts_with("frame 1 of 6 · 40.0 mm"),
        "{}",
        frame(&h)
    );
    press(&mut h, Key::PageDown);
    press(&mut h, Key::PageDown);
    assert!(
        frame(&h).starts_with("frame 3 of 6 · 45.0 mm"),
        "{}",
        frame(&h)
    );
    press(&mut h, Key::End);
    assert!(frame(&h).starts_with("frame 6 of 6"), "{}", frame(&h));
    press(&mut h, Key::PageDown);
    assert!(
        frame(&h).starts_with("frame 6 of 6"),
        "stays on the last frame"
    );
    press(&mut h, Key::Home);
    assert!(frame(&h).starts_with("frame 1 of 6"), "{}", frame(&h));
    // D leaves the stack for the next entry, A comes back to its first frame.
    press(&mut h, Key::D);
    assert_eq!(frame(&h), "", "zz.png is no stack");
    assert!(
        session(&h)
            .current()
            .expect("image")
            .path
            .ends_with("zz.png")
    );
    press(&mut h, Key::A);
    assert!(frame(&h).starts_with("frame 1 of 6"), "{}", frame(&h));

    // Draw a box on frame 1: the class first (1), then a drag.
    press(&mut h, Key::Num1);
    let a = super::screen(&h, 8.0, 6.0);
    let b = super::screen(&h, 16.0, 12.0);
    super::drag(&mut h, a, b);
    settle(&mut h);
    let drawn = session(&h).boxes().to_vec();
    assert_eq!(drawn.len(), 1, "one box drawn");
    // Shift+PageDown: the box goes to frame 2, selected there, on the same track.
    press_with(&mut h, false, true, Key::PageDown);
    settle(&mut h);
    assert!(frame(&h).starts_with("frame 2 of 6"), "{}", frame(&h));
    assert_eq!(session(&h).boxes().len(), 1);
    // Frame 5 gets the track moved: copy on, then nudge the copy 10 px right on frame 5.
    for _ in 0..3 {
        press_with(&mut h, false, true, Key::PageDown);
    }
    settle(&mut h);
    assert!(frame(&h).starts_with("frame 5 of 6"), "{}", frame(&h));
    // Delete the copies on frames 3 and 4, so they are left to interpolate.
    press(&mut h, Key::PageUp);
    press(&mut h, Key::Tab);
    press(&mut h, Key::Delete);
    press(&mut h, Key::PageUp);
    press(&mut h, Key::Tab);
    press(&mut h, Key::Delete);
    press(&mut h, Key::End);
    press(&mut h, Key::PageUp);
    press(&mut h, Key::Tab);
    super::press_alt(&mut h, true, Key::ArrowRight);
    settle(&mut h);
    // I: frames 3 and 4 get proposals between frame 2 and frame 5.
    press(&mut h, Key::I);
    settle(&mut h);
    let p = Project::open(&dir.path().join("p.loupe")).expect("open");
    let run = p
        .run_by_name("interpolation")
        .expect("interpolation run")
        .id;
    let rows = p
        .list_images(&loupe::store::ImageFilter::default())
        .expect("list");
    let mut slices: Vec<_> = rows.iter().filter(|r| r.stack.is_some()).collect();
    slices.sort_by_key(|r| r.frame);
    let at = |f: usize| {
        p.annotations_for_image(slices[f].id)
            .expect("boxes")
            .into_iter()
            .filter(|a| !a.value.deleted && a.value.state != ReviewState::Rejected)
            .collect::<Vec<_>>()
    };
    let start = at(1)[0].value.bbox;
    let end = at(4)[0].value.bbox;
    assert!((end.x - start.x - 10.0).abs() < 1e-6, "{start:?} {end:?}");
    for (f, t) in [(2, 1.0 / 3.0), (3, 2.0 / 3.0)] {
        let boxes = at(f);
        assert_eq!(boxes.len(), 1, "frame {}: {boxes:?}", f + 1);
        let b = &boxes[0];
        assert_eq!(b.value.state, ReviewState::Proposed);
        assert!(matches!(b.value.source, Source::Model { run: r, .. } if r == run));
        assert!(
            (b.value.bbox.x - (start.x + 10.0 * t)).abs() < 1e-6,
            "frame {}: {:?}",
            f + 1,
            b.value.bbox
        );
    }
}
