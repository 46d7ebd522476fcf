//! Drawing, moving, resizing, nudging, deleting, changing class, undo and redo.

use eframe::egui::{Key, vec2};
use loupe::model::{BBox, ReviewState, Source};

use super::{app, click, drag, fixture, press, press_alt, press_with, screen, session};

#[test]
fn drawing_a_box_stores_it_in_image_pixels_at_two_zoom_levels() {
    let fx = fixture();
    let mut h = app(&fx);
    assert_eq!(super::current_path(&h), "a.png");

    // Fitted (about 2.3 screen points per pixel).
    let zoom = session(&h).canvas().viewport.zoom();
    assert!(zoom > 1.5, "fitted zoom {zoom}");
    let (from, to) = (screen(&h, 150.0, 120.0), screen(&h, 230.0, 190.0));
    drag(&mut h, from, to);
    let stored = fx.stored("a.png");
    assert_eq!(stored.len(), 2);
    let new = stored
        .iter()
        .find(|a| a.id != fx.a_box)
        .expect("the new box");
    assert_eq!(new.value.bbox, BBox::new(150.0, 120.0, 80.0, 70.0));
    assert_eq!(new.value.source, Source::Human);
    assert_eq!(new.value.state, ReviewState::Submitted);
    assert_eq!(new.value.class, fx.class("cat"));
    assert_eq!(session(&h).selected(), Some(new.id));

    // 1:1 (one pixel per point here), dragged right to left, bottom to top.
    press(&mut h, Key::Escape);
    press(&mut h, Key::Num0);
    assert!((session(&h).canvas().viewport.zoom() - 1.0).abs() < 1e-4);
    let (from, to) = (screen(&h, 300.0, 230.0), screen(&h, 260.0, 200.0));
    drag(&mut h, from, to);
    let stored = fx.stored("a.png");
    assert_eq!(stored.len(), 3);
    assert!(
        stored
            .iter()
            .any(|a| a.value.bbox == BBox::new(260.0, 200.0, 40.0, 30.0))
    );
}

#[test]
fn a_tiny_flick_is_not_a_box() {
    let fx = fixture();
    let mut h = app(&fx);
    let from = screen(&h, 200.0, 200.0);
    drag(&mut h, from, from + vec2(1.5, 1.5));
    assert_eq!(fx.stored("a.png").len(), 1);
}

#[test]
fn move_resize_nudge_and_delete_a_box() {
    let fx = fixture();
    let mut h = app(&fx);
    // Click selects the box at (40, 40, 80, 60).
    let centre = screen(&h, 80.0, 70.0);
    click(&mut h, centre);
    assert_eq!(session(&h).selected(), Some(fx.a_box));

    // Move by (+20, +10) pixels.
    let to = screen(&h, 100.0, 80.0);
    drag(&mut h, centre, to);
    assert_eq!(
        fx.stored_box(fx.a_box).value.bbox,
        BBox::new(60.0, 50.0, 80.0, 60.0)
    );

    // Resize by the bottom-right handle, to (170, 130).
    let (corner, to) = (screen(&h, 140.0, 110.0), screen(&h, 170.0, 130.0));
    drag(&mut h, corner, to);
    assert_eq!(
        fx.stored_box(fx.a_box).value.bbox,
        BBox::new(60.0, 50.0, 110.0, 80.0)
    );

    // Nudge: Alt+Right 1 px right, Alt+Shift+Down 10 px down.
    press_alt(&mut h, false, Key::ArrowRight);
    press_alt(&mut h, true, Key::ArrowDown);
    assert_eq!(
        fx.stored_box(fx.a_box).value.bbox,
        BBox::new(61.0, 60.0, 110.0, 80.0)
    );
    assert_eq!(
        super::current_path(&h),
        "a.png",
        "Alt+arrows nudge and stay on the image"
    );

    // Delete.
    press(&mut h, Key::Delete);
    assert!(fx.stored("a.png").is_empty());
    assert!(fx.stored_box(fx.a_box).value.deleted);
    assert_eq!(session(&h).selected(), None);

    // The revision log has every step.
    let history = loupe::store::Project::open(&fx.project)
        .expect("open")
        .history(fx.a_box)
        .expect("history");
    assert_eq!(history.len(), 6, "create, move, resize, 2 nudges, delete");
}

#[test]
fn digit_keys_change_the_class_of_the_selection_or_of_new_boxes() {
    let fx = fixture();
    let mut h = app(&fx);
    let at = screen(&h, 80.0, 70.0);
    click(&mut h, at);
    press(&mut h, Key::Num2);
    assert_eq!(fx.stored_box(fx.a_box).value.class, fx.class("dog"));

    // With nothing selected a digit picks the class for the next box.
    press(&mut h, Key::Escape);
    press(&mut h, Key::Num3);
    let (from, to) = (screen(&h, 200.0, 150.0), screen(&h, 240.0, 200.0));
    drag(&mut h, from, to);
    let new = fx
        .stored("a.png")
        .into_iter()
        .find(|a| a.id != fx.a_box)
        .expect("new box");
    assert_eq!(new.value.class, fx.class("bird"));
}

#[test]
fn the_class_picker_finds_and_creates_classes() {
    let fx = fixture();
    let mut h = app(&fx);
    let at = screen(&h, 80.0, 70.0);
    click(&mut h, at);
    press(&mut h, Key::C);
    h.event(eframe::egui::Event::Text("bir".into()));
    h.run();
    press(&mut h, Key::Enter);
    assert_eq!(fx.stored_box(fx.a_box).value.class, fx.class("bird"));

    press(&mut h, Key::C);
    h.event(eframe::egui::Event::Text("zebra".into()));
    h.run();
    press(&mut h, Key::Enter);
    // The class is created on the writer thread, then applied.
    super::settle(&mut h);
    let project = loupe::store::Project::open(&fx.project).expect("open");
    let zebra = project
        .classes()
        .expect("classes")
        .into_iter()
        .find(|c| c.name == "zebra")
        .expect("zebra was created");
    assert_eq!(fx.stored_box(fx.a_box).value.class, zebra.id);
}

#[test]
fn undo_and_redo_every_edit_across_images() {
    let fx = fixture();
    let mut h = app(&fx);
    let original = fx.stored_box(fx.a_box).value.bbox;
    let centre = screen(&h, 80.0, 70.0);
    click(&mut h, centre);
    let to = screen(&h, 90.0, 70.0);
    drag(&mut h, centre, to);
    let moved = fx.stored_box(fx.a_box).value.bbox;
    assert_ne!(moved, original);

    // Go to the next image, then undo: the app goes back to a.png and restores the box.
    press(&mut h, Key::Escape);
    press(&mut h, Key::D);
    assert_eq!(super::current_path(&h), "b.png");
    press_with(&mut h, true, false, Key::Z);
    assert_eq!(super::current_path(&h), "a.png");
    assert_eq!(fx.stored_box(fx.a_box).value.bbox, original);

    // Redo with Ctrl+Shift+Z, undo again, redo with Ctrl+Y.
    press_with(&mut h, true, true, Key::Z);
    assert_eq!(fx.stored_box(fx.a_box).value.bbox, moved);
    press_with(&mut h, true, false, Key::Z);
    press_with(&mut h, true, false, Key::Y);
    assert_eq!(fx.stored_box(fx.a_box).value.bbox, moved);

    // Undo a delete brings the box back; undo a draw removes it.
    let at = screen(&h, 90.0, 70.0);
    click(&mut h, at);
    press(&mut h, Key::Delete);
    assert!(fx.stored("a.png").is_empty());
    press_with(&mut h, true, false, Key::Z);
    assert_eq!(fx.stored("a.png").len(), 1);
    assert!(!fx.stored_box(fx.a_box).value.deleted);
}
