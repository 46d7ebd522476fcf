//! Fewer actions per box: four-click boxes (extreme points, any order, Escape drops them, undo
//! takes the box back) and snapping a rough box to the proposal of its class.

use eframe::egui::Key;
use loupe::model::{BBox, ReviewState, Source};

use super::{app, click, drag, fixture, press, press_with, screen, session};

#[test]
fn four_clicks_make_a_box_of_the_current_class_and_escape_drops_them() {
    let fx = fixture();
    let mut h = app(&fx);
    assert_eq!(super::current_path(&h), "a.png");
    press(&mut h, Key::E);
    assert!(session(&h).canvas().four_click);

    // Two clicks, then Escape: nothing is made, the points are gone.
    let at = screen(&h, 200.0, 150.0);
    click(&mut h, at);
    let at = screen(&h, 260.0, 200.0);
    click(&mut h, at);
    assert_eq!(session(&h).canvas().four_click_points().len(), 2);
    press(&mut h, Key::Escape);
    assert!(session(&h).canvas().four_click_points().is_empty());
    assert_eq!(fx.stored("a.png").len(), 1);
    assert!(session(&h).canvas().four_click, "Escape keeps the mode");

    // Bottom, left, top, right: clicking inside the existing box selects nothing.
    for (x, y) in [(120.0, 180.0), (60.0, 100.0), (110.0, 40.0), (200.0, 90.0)] {
        let at = screen(&h, x, y);
        click(&mut h, at);
    }
    let stored = fx.stored("a.png");
    assert_eq!(stored.len(), 2);
    let new = stored
        .iter()
        .find(|a| a.id != fx.a_box)
        .expect("the four-click box");
    assert_eq!(new.value.bbox, BBox::new(60.0, 40.0, 140.0, 140.0));
    assert_eq!(new.value.class, fx.class("cat"));
    assert_eq!(new.value.source, Source::Human);
    assert_eq!(new.value.state, ReviewState::Submitted);
    assert_eq!(session(&h).selected(), Some(new.id));
    assert!(session(&h).canvas().four_click_points().is_empty());

    // A normal create: one undo step.
    press_with(&mut h, true, false, Key::Z);
    assert_eq!(fx.stored("a.png").len(), 1);
    assert!(fx.stored_box(new.id).value.deleted);

    // With the class changed, the next four clicks make a dog; E again turns the mode off and
    // a click selects again.
    press(&mut h, Key::Escape);
    press(&mut h, Key::Num2);
    for (x, y) in [
        (250.0, 200.0),
        (300.0, 210.0),
        (270.0, 180.0),
        (280.0, 230.0),
    ] {
        let at = screen(&h, x, y);
        click(&mut h, at);
    }
    let dog = fx
        .stored("a.png")
        .into_iter()
        .find(|a| a.value.class == fx.class("dog"))
        .expect("a dog");
    assert_eq!(dog.value.bbox, BBox::new(250.0, 180.0, 50.0, 50.0));
    press(&mut h, Key::E);
    assert!(!session(&h).canvas().four_click);
    let inside = screen(&h, 80.0, 70.0);
    click(&mut h, inside);
    assert_eq!(session(&h).selected(), Some(fx.a_box));
}

#[test]
fn a_rough_box_snaps_to_the_proposal_of_its_class_and_says_so() {
    let fx = fixture();
    let mut h = app(&fx);
    press(&mut h, Key::D);
    assert_eq!(super::current_path(&h), "b.png");
    press(&mut h, Key::S);

    // A rough drag over the cat 0.9 proposal (20, 20, 60, 40): the proposal is accepted with
    // the model's geometry, and no new box is made.
    let (from, to) = (screen(&h, 24.0, 16.0), screen(&h, 78.0, 62.0));
    drag(&mut h, from, to);
    let stored = fx.stored("b.png");
    assert_eq!(stored.len(), 3, "no new box");
    let cat = fx.stored_box(fx.proposals[0]);
    assert_eq!(cat.value.state, ReviewState::Accepted);
    assert_eq!(cat.value.bbox, BBox::new(20.0, 20.0, 60.0, 40.0));
    assert_eq!(session(&h).selected(), Some(fx.proposals[0]));
    let message = session(&h).message().unwrap_or_default().to_owned();
    assert!(
        message.starts_with("Snapped to the cat proposal 0.90"),
        "{message}"
    );
    let history = loupe::store::Project::open(&fx.project)
        .expect("open")
        .history(fx.proposals[0])
        .expect("history");
    assert!(
        history
            .last()
            .and_then(|r| r.note.as_deref())
            .is_some_and(|n| n.starts_with("snapped")),
        "the revision says why"
    );
    // Undo puts the proposal back.
    press_with(&mut h, true, false, Key::Z);
    assert_eq!(
        fx.stored_box(fx.proposals[0]).value.state,
        ReviewState::Proposed
    );
    press_with(&mut h, true, true, Key::Z);

    // Over the dog proposal with class cat: no snap, the box is kept as drawn.
    press(&mut h, Key::Escape);
    let (from, to) = (screen(&h, 152.0, 102.0), screen(&h, 198.0, 148.0));
    drag(&mut h, from, to);
    assert_eq!(fx.stored("b.png").len(), 4);
    assert_eq!(
        fx.stored_box(fx.proposals[1]).value.state,
        ReviewState::Proposed
    );
    let message = session(&h).message().unwrap_or_default().to_owned();
    assert!(message.starts_with("No cat proposal overlaps"), "{message}");

    // Four clicks snap too: round the cat 0.2 proposal (240, 150, 40, 40).
    press(&mut h, Key::Escape);
    press(&mut h, Key::E);
    for (x, y) in [
        (242.0, 170.0),
        (262.0, 152.0),
        (278.0, 168.0),
        (258.0, 188.0),
    ] {
        let at = screen(&h, x, y);
        click(&mut h, at);
    }
    assert_eq!(fx.stored("b.png").len(), 4);
    assert_eq!(
        fx.stored_box(fx.proposals[2]).value.state,
        ReviewState::Accepted
    );

    // Snap off: a drawn box is a new box even over a proposal.
    press(&mut h, Key::E);
    press(&mut h, Key::S);
    press(&mut h, Key::Escape);
    let (from, to) = (screen(&h, 152.0, 102.0), screen(&h, 198.0, 148.0));
    drag(&mut h, from, to);
    assert_eq!(fx.stored("b.png").len(), 5);
}
