//! Reading as a radiologist does, in the real app: the window stays with its series and never
//! crosses to another modality, window mode's number keys pick clinical windows without
//! touching classes, the value under the cursor is in Hounsfield units, the ruler measures in
//! millimetres and edits nothing; and the reviewer's navigation keys (next unreviewed, next
//! flagged) and the proposals toggle, which never lets Space accept what is hidden.

use std::path::Path;

use eframe::egui::Key;
use egui_kittest::Harness;
use loupe::model::ReviewState;
use loupe::store::Project;
use loupe::ui::{App, AppOptions};

use super::{
    current_path, drag, fixture, press, press_with, screen, session, settle, wait_for_image,
};

fn dicom(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/third_party/dicom")
        .join(name)
}

/// Two slices of CT_small's series (`ct1.dcm`, `ct2.dcm`) and MR_small (`mr.dcm`).
pub fn dicom_project() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::copy(dicom("CT_small.dcm"), root.join("ct1.dcm")).expect("copy CT");
    // The second slice differs in its last pixel (the same content would be the same image).
    let mut slice = std::fs::read(dicom("CT_small.dcm")).expect("read CT");
    let last = slice.len() - 2;
    slice[last] ^= 0x01;
    std::fs::write(root.join("ct2.dcm"), slice).expect("write CT");
    std::fs::copy(dicom("MR_small.dcm"), root.join("mr.dcm")).expect("copy MR");
    let path = root.join("read.loupe");
    let mut project = Project::create(&path).expect("create");
    super::add_images(&mut project, root, &["ct1.dcm", "ct2.dcm", "mr.dcm"]);
    project.ensure_class("lesion").expect("class");
    let me = project.current_user().expect("user");
    loupe::review::choose_profile(&mut project, &me.name, me.role).expect("profile");
    (dir, path)
}

fn open(path: &Path) -> Harness<'static, App> {
    let path = path.to_path_buf();
    let mut h = Harness::builder()
        .with_size(super::SIZE)
        .with_max_steps(64)
        .build_eframe(move |cc| App::new(cc, AppOptions::project_only(&path)));
    settle(&mut h);
    wait_for_image(&mut h);
    h
}

fn window_name(h: &Harness<'_, App>) -> Option<String> {
    session(h).canvas().display.name.clone()
}

#[test]
fn the_window_stays_with_its_series_and_never_crosses_modalities() {
    let (_dir, path) = dicom_project();
    let mut h = open(&path);
    assert_eq!(current_path(&h), "ct1.dcm");
    // CT_small names no window: soft tissue, in HU.
    let text = session(&h).display_text().expect("a window");
    assert!(
        text.contains("HU") && text.contains("soft tissue"),
        "{text}"
    );

    // Window mode: 5 is the lung window (brain, subdural, stroke, soft tissue, lung…), and
    // the number key does not pick a class.
    let class = session(&h).current_class();
    press(&mut h, Key::W);
    assert!(session(&h).window_mode_open());
    press(&mut h, Key::Num5);
    assert_eq!(window_name(&h).as_deref(), Some("lung"));
    let text = session(&h).display_text().expect("a window");
    assert!(text.contains("level -600 width 1500"), "{text}");
    assert_eq!(
        session(&h).current_class(),
        class,
        "5 picked a window, not a class"
    );
    press(&mut h, Key::Escape);
    assert!(!session(&h).window_mode_open());

    // The next slice of the series opens in the same window.
    press(&mut h, Key::D);
    wait_for_image(&mut h);
    assert_eq!(current_path(&h), "ct2.dcm");
    assert_eq!(window_name(&h).as_deref(), Some("lung"));

    // The MR opens with its own window, not the CT's.
    press(&mut h, Key::D);
    wait_for_image(&mut h);
    assert_eq!(current_path(&h), "mr.dcm");
    assert_eq!(window_name(&h), None);
    assert_eq!(session(&h).canvas().display.window, None);
    let text = session(&h).display_text().expect("a window");
    assert!(
        text.contains("from the file") && !text.contains("HU"),
        "{text}"
    );
    // A typed window on the MR: Enter in window mode goes to the level field.
    press(&mut h, Key::W);
    press(&mut h, Key::Enter);
    for _ in 0..4 {
        h.key_press(Key::Backspace);
    }
    h.event(eframe::egui::Event::Text("300".into()));
    h.key_press(Key::Enter);
    settle(&mut h);
    let text = session(&h).display_text().expect("a window");
    assert!(text.contains("level 300 width 1600"), "{text}");
    press(&mut h, Key::Escape);

    // Back on the CT: still the lung window; back on the MR: its typed window.
    press(&mut h, Key::A);
    wait_for_image(&mut h);
    assert_eq!(window_name(&h).as_deref(), Some("lung"));
    press(&mut h, Key::D);
    wait_for_image(&mut h);
    let text = session(&h).display_text().expect("a window");
    assert!(text.contains("level 300 width 1600"), "{text}");
}

#[test]
fn the_value_under_the_cursor_is_in_hu_and_the_ruler_measures_in_mm() {
    let (_dir, path) = dicom_project();
    let mut h = open(&path);
    // The reference: the file's own modality values (HU) through the decoder.
    let (img, mapping) =
        loupe::imaging::decode_with_mapping(&dicom("CT_small.dcm")).expect("decode");
    let mapping = mapping.expect("grayscale");
    let gray = img.to_luma16();
    let (x, y) = (64u32, 40u32);
    let expected = mapping.value(f64::from(gray.get_pixel(x, y)[0]));
    #[allow(clippy::cast_precision_loss)]
    h.hover_at(screen(&h, x as f32 + 0.5, y as f32 + 0.5));
    h.run();
    assert_eq!(
        session(&h).pointer_value().as_deref(),
        Some(format!("value {expected:.0} HU").as_str())
    );

    // The ruler: a 30 × 40 pixel drag is 50 px, 33.1 mm at CT_small's 0.661468 mm spacing.
    press(&mut h, Key::L);
    let (from, to) = (screen(&h, 20.0, 20.0), screen(&h, 50.0, 60.0));
    drag(&mut h, from, to);
    let (a, b) = session(&h).canvas().ruler.expect("a measurement");
    let length = a.distance(b);
    assert!((length - 50.0).abs() < 0.5, "{length}");
    let mm = f64::from(length) * 0.661468;
    assert!((mm - 33.07).abs() < 0.4, "{mm}");
    // Measuring drew no box.
    assert!(session(&h).boxes().is_empty());
    let stored = Project::open(&path)
        .expect("open")
        .stats()
        .expect("stats")
        .boxes;
    assert_eq!(stored, 0);
    // L again: drawing boxes is back, the measurement goes.
    press(&mut h, Key::L);
    assert!(session(&h).canvas().ruler.is_none());
}

#[test]
fn next_unreviewed_and_next_flagged_skip_what_is_done() {
    let fx = fixture();
    let mut h = super::app(&fx);
    assert_eq!(current_path(&h), "a.png");
    // a.png has a label and no proposals; b.png has proposals: the next unreviewed.
    press(&mut h, Key::U);
    assert_eq!(current_path(&h), "b.png");
    // Space finishes b.png and moves on to c.png (no boxes: unreviewed).
    press(&mut h, Key::Space);
    assert_eq!(current_path(&h), "c.png");
    press(&mut h, Key::U);
    assert_eq!(current_path(&h), "d16.png");
    // Flag d16.png; from a.png the next flagged is d16.png.
    press_with(&mut h, false, true, Key::F);
    press(&mut h, Key::A);
    press(&mut h, Key::A);
    press(&mut h, Key::A);
    assert_eq!(current_path(&h), "a.png");
    press(&mut h, Key::G);
    assert_eq!(current_path(&h), "d16.png");
    // From d16.png, the next unreviewed wraps round past b.png (done) to c.png.
    press(&mut h, Key::U);
    assert_eq!(current_path(&h), "c.png");
}

#[test]
fn hidden_proposals_cannot_be_accepted_unseen() {
    let fx = fixture();
    let mut h = super::app(&fx);
    press(&mut h, Key::D);
    assert_eq!(current_path(&h), "b.png");
    press_with(&mut h, false, true, Key::H);
    assert!(session(&h).canvas().hide_proposals);
    // Tab finds nothing to select: proposals are all there is.
    press(&mut h, Key::Tab);
    assert_eq!(session(&h).selected(), None);
    // Space refuses and stays.
    press(&mut h, Key::Space);
    assert_eq!(current_path(&h), "b.png");
    assert!(
        session(&h)
            .message()
            .is_some_and(|m| m.contains("Proposals are hidden")),
        "{:?}",
        session(&h).message()
    );
    assert!(
        fx.stored("b.png")
            .iter()
            .all(|a| a.value.state == ReviewState::Proposed)
    );
    // Shown again, Space does its usual work.
    press_with(&mut h, false, true, Key::H);
    press(&mut h, Key::Space);
    assert_eq!(current_path(&h), "c.png");
    assert!(
        fx.stored("b.png")
            .iter()
            .all(|a| a.value.state != ReviewState::Proposed)
    );
}
