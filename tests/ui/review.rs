//! Reviewing model proposals: accept, reject, thresholds, Shift+A, Space, corrections.

use eframe::egui::Key;
use egui_kittest::kittest::Queryable as _;
use loupe::model::{ReviewState, Source};

use super::{app, fixture, press, press_alt, press_with, session, settle};

fn states(fx: &super::Fixture) -> Vec<ReviewState> {
    fx.proposals
        .iter()
        .map(|id| fx.stored_box(*id).value.state)
        .collect()
}

#[test]
fn enter_accepts_and_delete_rejects_the_selected_proposal() {
    let fx = fixture();
    let mut h = app(&fx);
    press(&mut h, Key::D);
    assert_eq!(super::current_path(&h), "b.png");
    press(&mut h, Key::Tab);
    assert_eq!(session(&h).selected(), Some(fx.proposals[0]));
    press(&mut h, Key::Enter);
    press(&mut h, Key::Tab);
    assert_eq!(session(&h).selected(), Some(fx.proposals[1]));
    press(&mut h, Key::Delete);
    assert_eq!(
        states(&fx),
        vec![
            ReviewState::Accepted,
            ReviewState::Rejected,
            ReviewState::Proposed
        ]
    );
    // A rejected box is hidden, not deleted: its history stays.
    assert!(!fx.stored_box(fx.proposals[1]).value.deleted);
    assert!(session(&h).boxes().iter().any(|a| a.id == fx.proposals[1]));
    assert_eq!(session(&h).selected(), None);
}

#[test]
fn shift_a_accepts_every_visible_proposal_and_thresholds_hide_some() {
    let fx = fixture();
    let mut h = app(&fx);
    press(&mut h, Key::D);
    // Hide cat proposals under 0.5: the cat at 0.2 stays a proposal.
    let cat = fx.class("cat");
    h.state_mut()
        .session_mut()
        .expect("session")
        .thresholds_mut()
        .set(cat, 0.5);
    h.run();
    press_with(&mut h, false, true, Key::A);
    assert_eq!(
        states(&fx),
        vec![
            ReviewState::Accepted,
            ReviewState::Accepted,
            ReviewState::Proposed
        ]
    );
    assert_eq!(
        super::current_path(&h),
        "b.png",
        "Shift+A is not A (previous image)"
    );
}

#[test]
fn space_accepts_what_is_visible_marks_the_image_done_and_moves_on() {
    let fx = fixture();
    let mut h = app(&fx);
    press(&mut h, Key::D);
    let dog = fx.class("dog");
    h.state_mut()
        .session_mut()
        .expect("session")
        .thresholds_mut()
        .set(dog, 0.5);
    h.run();
    press(&mut h, Key::Space);
    settle(&mut h);
    // Space resolves the whole image: the dog hidden below its threshold is rejected, with
    // the reason in its history; none stays proposed on an image marked done.
    assert_eq!(
        states(&fx),
        vec![
            ReviewState::Accepted,
            ReviewState::Rejected,
            ReviewState::Accepted
        ]
    );
    assert_eq!(super::current_path(&h), "c.png");
    assert_eq!(
        session(&h).message(),
        Some("Accepted 2, rejected 1 below threshold, marked done")
    );
    let done = |fx: &super::Fixture| {
        loupe::store::Project::open(&fx.project)
            .expect("open")
            .tags(fx.image("b.png"))
            .expect("tags")
            .contains(&"done".to_owned())
    };
    assert!(done(&fx));
    let history = loupe::store::Project::open(&fx.project)
        .expect("open")
        .history(fx.proposals[1])
        .expect("history");
    assert_eq!(
        history.last().and_then(|r| r.note.as_deref()),
        Some("below threshold")
    );
    // One undo restores everything Space did, the done tag included.
    press_with(&mut h, true, false, Key::Z);
    settle(&mut h);
    assert_eq!(super::current_path(&h), "b.png");
    assert_eq!(
        states(&fx),
        vec![
            ReviewState::Proposed,
            ReviewState::Proposed,
            ReviewState::Proposed
        ]
    );
    assert!(!done(&fx), "undo clears the done tag");
    // Redo does it all again.
    press_with(&mut h, true, true, Key::Z);
    settle(&mut h);
    assert_eq!(states(&fx)[1], ReviewState::Rejected);
    assert!(done(&fx));
}

#[test]
fn editing_a_proposal_corrects_it_and_keeps_its_source() {
    let fx = fixture();
    let mut h = app(&fx);
    press(&mut h, Key::D);
    press(&mut h, Key::Tab);
    press_alt(&mut h, false, Key::ArrowLeft);
    let a = fx.stored_box(fx.proposals[0]);
    assert_eq!(a.value.state, ReviewState::Corrected);
    assert_eq!(a.value.bbox.x, 19.0);
    assert_eq!(
        a.value.source,
        Source::Model {
            run: fx.run,
            score: 0.9
        }
    );
    // The revision log keeps the model's original box.
    let history = loupe::store::Project::open(&fx.project)
        .expect("open")
        .history(fx.proposals[0])
        .expect("history");
    assert_eq!(history[0].value.state, ReviewState::Proposed);
    assert_eq!(history[0].value.bbox.x, 20.0);
}

#[test]
fn undo_restores_a_rejected_proposal() {
    let fx = fixture();
    let mut h = app(&fx);
    press(&mut h, Key::D);
    press(&mut h, Key::Tab);
    press(&mut h, Key::Delete);
    assert_eq!(states(&fx)[0], ReviewState::Rejected);
    press_with(&mut h, true, false, Key::Z);
    assert_eq!(states(&fx)[0], ReviewState::Proposed);
}

/// A reviewer approves or returns where the work is: V approves the image's labels and goes
/// on, X asks for a comment and returns; both are one undo step, and an annotator is told the
/// keys are not theirs.
#[test]
fn a_reviewer_approves_and_returns_labels_from_the_canvas() {
    use loupe::model::Role;
    let fx = fixture();
    {
        let mut p = loupe::store::Project::open(&fx.project).expect("open");
        loupe::review::choose_profile(&mut p, "rita", Role::Reviewer).expect("reviewer");
    }
    let mut h = app(&fx);
    assert_eq!(super::current_path(&h), "a.png");
    press(&mut h, Key::V);
    assert_eq!(fx.stored_box(fx.a_box).value.state, ReviewState::Approved);
    assert_eq!(
        super::current_path(&h),
        "b.png",
        "approving the image goes on"
    );
    assert_eq!(session(&h).message(), Some("Approved 1 label(s)"));
    // b.png holds only proposals: nothing for a reviewer yet, and it says so.
    press(&mut h, Key::V);
    assert_eq!(super::current_path(&h), "b.png");
    assert!(
        session(&h)
            .message()
            .is_some_and(|m| m.contains("3 proposals still wait")),
        "{:?}",
        session(&h).message()
    );
    assert_eq!(states(&fx), vec![ReviewState::Proposed; 3]);
    // Undo takes the approval back.
    press_with(&mut h, true, false, Key::Z);
    assert_eq!(fx.stored_box(fx.a_box).value.state, ReviewState::Submitted);
    assert_eq!(super::current_path(&h), "a.png");
    // X on the selected box asks for a comment; Enter without one is refused.
    press(&mut h, Key::Tab);
    assert_eq!(session(&h).selected(), Some(fx.a_box));
    press(&mut h, Key::X);
    assert!(session(&h).return_dialog_open());
    press(&mut h, Key::Enter);
    assert!(session(&h).return_dialog_open(), "a return needs a comment");
    h.get_by_label("Comment").type_text("box too loose");
    h.run();
    press(&mut h, Key::Enter);
    assert!(!session(&h).return_dialog_open());
    let stored = fx.stored_box(fx.a_box);
    assert_eq!(stored.value.state, ReviewState::Returned);
    let history = loupe::store::Project::open(&fx.project)
        .expect("open")
        .history(fx.a_box)
        .expect("history");
    assert_eq!(
        history.last().and_then(|r| r.note.as_deref()),
        Some("box too loose")
    );
    // Undo takes the return back; Escape cancels a new one.
    press_with(&mut h, true, false, Key::Z);
    assert_eq!(fx.stored_box(fx.a_box).value.state, ReviewState::Submitted);
    press(&mut h, Key::Tab);
    press(&mut h, Key::X);
    assert!(session(&h).return_dialog_open());
    press(&mut h, Key::Escape);
    assert!(!session(&h).return_dialog_open());
    assert_eq!(session(&h).message(), Some("Return cancelled"));
    assert_eq!(fx.stored_box(fx.a_box).value.state, ReviewState::Submitted);
}

#[test]
fn an_annotator_is_told_that_review_keys_are_for_reviewers() {
    use loupe::model::Role;
    let fx = fixture();
    {
        let mut p = loupe::store::Project::open(&fx.project).expect("open");
        loupe::review::choose_profile(&mut p, "ann", Role::Annotator).expect("annotator");
    }
    let mut h = app(&fx);
    press(&mut h, Key::V);
    assert_eq!(fx.stored_box(fx.a_box).value.state, ReviewState::Submitted);
    assert_eq!(super::current_path(&h), "a.png");
    assert!(
        session(&h)
            .message()
            .is_some_and(|m| m.contains("for reviewers and leads")),
        "{:?}",
        session(&h).message()
    );
}
