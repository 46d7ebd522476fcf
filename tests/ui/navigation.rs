//! Next/previous by keys and arrows, filters, copying boxes from the previous image.

use eframe::egui::Key;
use egui_kittest::kittest::Queryable as _;
use loupe::model::{ReviewState, Source};

use super::{app, current_path, fixture, press, session, settle};

#[test]
fn d_and_a_and_the_arrows_move_through_the_list() {
    let fx = fixture();
    let mut h = app(&fx);
    assert_eq!(current_path(&h), "a.png");
    press(&mut h, Key::D);
    assert_eq!(current_path(&h), "b.png");
    press(&mut h, Key::ArrowRight);
    assert_eq!(current_path(&h), "c.png");
    press(&mut h, Key::A);
    assert_eq!(current_path(&h), "b.png");
    press(&mut h, Key::ArrowLeft);
    assert_eq!(current_path(&h), "a.png");
    press(&mut h, Key::A);
    assert_eq!(current_path(&h), "a.png", "stays on the first image");
    assert_eq!(session(&h).message(), Some("First image of the list"));
    // A message is about the image it was said on: moving on clears it.
    press(&mut h, Key::D);
    assert_eq!(current_path(&h), "b.png");
    assert_eq!(session(&h).message(), None);
}

#[test]
fn clicking_a_row_shows_that_image() {
    let fx = fixture();
    let mut h = app(&fx);
    h.get_by_label("c.png").click();
    settle(&mut h);
    assert_eq!(current_path(&h), "c.png");
}

#[test]
fn the_filter_defines_next() {
    let fx = fixture();
    let mut h = app(&fx);
    h.state_mut()
        .session_mut()
        .expect("session")
        .apply(loupe::ui::Command::SetFilter(loupe::store::ImageFilter {
            status: loupe::store::ImageStatus::HasProposals,
            ..Default::default()
        }));
    settle(&mut h);
    assert_eq!(session(&h).rows().len(), 1);
    // a.png is outside the filter; next goes to the first listed image after it.
    press(&mut h, Key::D);
    assert_eq!(current_path(&h), "b.png");
    press(&mut h, Key::D);
    assert_eq!(current_path(&h), "b.png");
    assert_eq!(session(&h).message(), Some("Last image of the list"));
}

#[test]
fn p_copies_the_boxes_of_the_previous_image() {
    let fx = fixture();
    let mut h = app(&fx);
    press(&mut h, Key::D);
    press(&mut h, Key::P);
    let stored = fx.stored("b.png");
    let copies: Vec<_> = stored
        .iter()
        .filter(|a| a.value.source == Source::Human)
        .collect();
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].value.bbox, fx.stored_box(fx.a_box).value.bbox);
    assert_eq!(copies[0].value.state, ReviewState::Submitted);
}

#[test]
fn the_help_overlay_opens_and_closes() {
    let fx = fixture();
    let mut h = app(&fx);
    press(&mut h, Key::F1);
    assert!(h.state().help_open());
    assert!(h.query_by_label("Keyboard shortcuts").is_some());
    press(&mut h, Key::Escape);
    assert!(!h.state().help_open());
}

/// What the store holds that a key could change: revisions (every edit of a box) and tags
/// (`done`, `flagged`).
fn edits_stored(fx: &super::Fixture) -> (i64, i64) {
    // Read the file as any SQLite reader would: the store's API has no counts of these.
    let db = rusqlite::Connection::open(&fx.project).expect("open");
    let count = |sql: &str| db.query_row(sql, [], |r| r.get(0)).expect("count");
    (
        count("SELECT COUNT(*) FROM revisions"),
        count("SELECT COUNT(*) FROM image_tags"),
    )
}

/// One key, one action, and only editing keys edit: every default key of every action that
/// does not edit is pressed on an image with proposals, with a proposal selected and with
/// nothing selected, and the store must not change (the arrows used to nudge a selected
/// proposal, silently turning it "corrected").
#[test]
fn only_editing_keys_edit_with_or_without_a_selection() {
    use loupe::ui::{Action, Keymap};
    let fx = fixture();
    let keymap = Keymap::default();
    let mut pressed = 0;
    for action in Action::all() {
        // The native file dialogs would wait for a person; they do not edit either.
        if action.edits() || matches!(action, Action::OpenProject | Action::AddImages) {
            continue;
        }
        for &binding in keymap.keys(action) {
            for select in [false, true] {
                let mut h = app(&fx);
                press(&mut h, Key::D);
                assert_eq!(current_path(&h), "b.png");
                if select {
                    press(&mut h, Key::Tab);
                    assert!(session(&h).selected().is_some(), "Tab selects a proposal");
                }
                let before = edits_stored(&fx);
                h.key_press_modifiers(binding.modifiers(), binding.key);
                settle(&mut h);
                assert_eq!(
                    edits_stored(&fx),
                    before,
                    "{} ({}) edited the project (selection: {select})",
                    action.name(),
                    binding.label()
                );
                pressed += 1;
            }
        }
    }
    assert!(pressed > 40, "{pressed} presses");
    // And the nudge keys do edit: Alt+Right moves the selected proposal by one pixel.
    let mut h = app(&fx);
    press(&mut h, Key::D);
    press(&mut h, Key::Tab);
    let selected = session(&h).selected().expect("selected");
    let x = fx.stored_box(selected).value.bbox.x;
    super::press_alt(&mut h, false, Key::ArrowRight);
    assert_eq!(fx.stored_box(selected).value.bbox.x, x + 1.0);
    assert_eq!(current_path(&h), "b.png");
    // The plain arrow goes to the next image and leaves the box alone.
    press(&mut h, Key::ArrowRight);
    assert_eq!(current_path(&h), "c.png");
    assert_eq!(fx.stored_box(selected).value.bbox.x, x + 1.0);
}

#[test]
fn n_goes_to_the_next_image_with_proposals_left() {
    let fx = fixture();
    let mut h = app(&fx);
    assert_eq!(current_path(&h), "a.png");
    // b.png holds the proposals; c.png and d16.png have none.
    press(&mut h, Key::N);
    assert_eq!(current_path(&h), "b.png");
    press(&mut h, Key::N);
    assert_eq!(current_path(&h), "b.png");
    assert_eq!(
        session(&h).message(),
        Some("No image after this one has proposals left")
    );
}
