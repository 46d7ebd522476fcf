//! Triage's one-key fixes driven through the real app: a run whose proposals disagree with the
//! labels in each of the four ways (an overlooked object, a spurious label, a badly placed box,
//! a swapped class), each fixed with the fix key in the triage view, the revisions checked in
//! the store with their reasons, and undo bringing an issue back.

use std::collections::HashMap;

use eframe::egui::{Key, Modifiers};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use loupe::model::{AnnotationValue, BBox, BoxFlags, Class, ReviewState, Source};
use loupe::review::{IssueKind, fixed_issue};
use loupe::store::{Edit, NewRun, Project};
use loupe::ui::{App, Mode};
use uuid::Uuid;

use super::{Fixture, add_images, app, session, settle_all, write_rgb};

fn press_settled(h: &mut Harness<'_, App>, modifiers: Modifiers, key: Key) {
    h.key_press_modifiers(modifiers, key);
    settle_all(h);
}

/// The planted boxes: which box each issue is about.
struct Planted {
    fx: Fixture,
    /// The proposal no label covers (cat, on p1).
    overlooked: Uuid,
    /// The dog label where the run sees a cat (p1).
    swapped: Uuid,
    /// The cat label the run sees 15 px right and 10 px down (p2), and where it sees it.
    badly: Uuid,
    badly_predicted: BBox,
    /// The dog label no prediction supports (p2).
    spurious: Uuid,
}

fn square(x: f64, y: f64) -> BBox {
    BBox::new(x, y, 30.0, 30.0)
}

/// Two images, each with seven boxes the run agrees with (four cats and three dogs, label and
/// proposal at the same place, so the run calibrates as mostly right) and two planted errors.
fn planted() -> Planted {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write_rgb(&root.join("p1.png"), 320, 240, 60);
    write_rgb(&root.join("p2.png"), 320, 240, 160);
    let path = root.join("triage.loupe");
    let mut p = Project::create(&path).expect("create project");
    add_images(&mut p, root, &["p1.png", "p2.png"]);
    let classes: Vec<Class> = ["cat", "dog"]
        .iter()
        .map(|n| p.ensure_class(n).expect("class"))
        .collect();
    let class: HashMap<&str, Uuid> = [("cat", classes[0].id), ("dog", classes[1].id)].into();
    let images: Vec<(Uuid, String)> = ["p1.png", "p2.png"]
        .iter()
        .map(|name| {
            let rec = p.image_by_path(name).expect("query").expect("image");
            (rec.id, rec.path)
        })
        .collect();
    let run = p
        .create_run(&NewRun {
            name: "detector-v1".into(),
            kind: "onnx".into(),
            settings: "{}".into(),
            ..NewRun::default()
        })
        .expect("run");
    let mut edits = Vec::new();
    let mut add = |image: Uuid, name: &str, bbox: BBox, model: bool| {
        let id = Uuid::now_v7();
        let (source, state) = if model {
            (Source::Model { run, score: 0.9 }, ReviewState::Proposed)
        } else {
            (Source::Human, ReviewState::Submitted)
        };
        edits.push(Edit::Create {
            id,
            value: AnnotationValue {
                image,
                class: class[name],
                bbox,
                source,
                state,
                flags: BoxFlags::default(),
                deleted: false,
                attributes: Default::default(),
            },
        });
        id
    };
    for (image, _) in &images {
        for (i, name) in ["cat", "cat", "cat", "cat", "dog", "dog", "dog"]
            .into_iter()
            .enumerate()
        {
            let at = square(10.0 + 40.0 * i as f64, 10.0);
            add(*image, name, at, false);
            add(*image, name, at, true);
        }
    }
    let (p1, p2) = (images[0].0, images[1].0);
    let overlooked = add(p1, "cat", square(250.0, 180.0), true);
    let swapped = add(p1, "dog", square(170.0, 100.0), false);
    add(p1, "cat", square(171.0, 100.0), true);
    let badly = add(p2, "cat", square(10.0, 150.0), false);
    let badly_predicted = square(25.0, 160.0);
    add(p2, "cat", badly_predicted, true);
    let spurious = add(p2, "dog", square(200.0, 150.0), false);
    p.apply(&edits).expect("plant");
    let me = p.current_user().expect("user");
    loupe::review::choose_profile(&mut p, &me.name, me.role).expect("profile");
    Planted {
        fx: Fixture {
            _dir: dir,
            project: path,
            images,
            classes,
            run,
            a_box: Uuid::nil(),
            proposals: Vec::new(),
        },
        overlooked,
        swapped,
        badly,
        badly_predicted,
        spurious,
    }
}

/// The flagged issues of the ranking on screen: (image path, kind, label, prediction).
fn flagged(h: &Harness<'_, App>) -> Vec<(String, IssueKind)> {
    let rows = session(h).lead().triage_rows().expect("triage read");
    rows.iter()
        .flat_map(|r| {
            r.issues
                .iter()
                .filter(|i| i.flagged)
                .map(|i| (r.path.clone(), i.kind))
        })
        .collect()
}

/// The newest revision's note of a box.
fn last_note(p: &Project, id: Uuid) -> (String, Option<String>) {
    let history = p.history(id).expect("history");
    let last = history.last().expect("a revision");
    (last.op.clone(), last.note.clone())
}

#[test]
fn the_fix_key_fixes_each_kind_of_issue_as_a_revision_with_its_reason() {
    let planted = planted();
    let fx = &planted.fx;
    let mut h = app(fx);
    press_settled(&mut h, Modifiers::COMMAND, Key::Num2);
    assert_eq!(session(&h).lead().mode(), Mode::Triage);
    let mut before = flagged(&h);
    before.sort_by_key(|(_, k)| *k);
    assert_eq!(
        before,
        [
            ("p1.png".to_owned(), IssueKind::Overlooked),
            ("p2.png".to_owned(), IssueKind::Spurious),
            ("p2.png".to_owned(), IssueKind::BadlyLocated),
            ("p1.png".to_owned(), IssueKind::SwappedClass),
        ],
        "{:#?}",
        session(&h).lead().triage_rows()
    );
    // The selected image's issues show the fix each suggests, with its key.
    assert!(
        h.query_by_label("[T] add the predicted box").is_some()
            || h.query_by_label("[T] snap to the predicted box").is_some(),
        "the key hints are shown"
    );

    // The key fixes the selected issue and moves to the next, across images.
    let mut fixed = Vec::new();
    for _ in 0..4 {
        let (key, issue) = session(&h)
            .lead()
            .selected_issue()
            .map(|(k, i)| (k, i.clone()))
            .expect("an issue is selected");
        press_settled(&mut h, Modifiers::NONE, Key::T);
        assert!(
            session(&h)
                .message()
                .is_some_and(|m| m.starts_with("Fixed")),
            "{:?}",
            session(&h).message()
        );
        let next = session(&h).lead().selected_issue().map(|(k, _)| k);
        assert_ne!(next, Some(key.clone()), "the next issue is selected");
        fixed.push(issue.kind);
    }
    let last = *fixed.last().expect("four fixes");
    fixed.sort();
    assert_eq!(fixed, IssueKind::ALL);
    // The ranking was read again: nothing left to flag.
    assert_eq!(flagged(&h), []);
    assert!(session(&h).lead().selected_issue().is_none());

    // In the store: each fix is a revision whose note says which issue it fixed.
    let p = Project::open(&fx.project).expect("open");
    let cat = fx.class("cat");
    let overlooked = p.annotation(planted.overlooked).expect("proposal");
    assert_eq!(overlooked.value.state, ReviewState::Accepted);
    let swapped = p.annotation(planted.swapped).expect("label");
    assert_eq!((swapped.value.class, swapped.value.deleted), (cat, false));
    let badly = p.annotation(planted.badly).expect("label");
    assert_eq!(badly.value.bbox, planted.badly_predicted);
    let spurious = p.annotation(planted.spurious).expect("label");
    assert!(spurious.value.deleted);
    for (id, kind, op) in [
        (planted.overlooked, IssueKind::Overlooked, "update"),
        (planted.swapped, IssueKind::SwappedClass, "update"),
        (planted.badly, IssueKind::BadlyLocated, "update"),
        (planted.spurious, IssueKind::Spurious, "delete"),
    ] {
        let (stored_op, note) = last_note(&p, id);
        assert_eq!(stored_op, op, "{kind:?}");
        let note = note.unwrap_or_default();
        assert_eq!(fixed_issue(&note), Some(kind), "{note}");
        assert!(note.contains("detector-v1"), "{note}");
    }

    // A fix is undone like any edit: the last one comes back, in the store and in the ranking.
    press_settled(&mut h, Modifiers::COMMAND, Key::Z);
    assert_eq!(flagged(&h).len(), 1, "{:?}", flagged(&h));
    assert_eq!(flagged(&h)[0].1, last);
    let (_, undo_note) = last_note(
        &Project::open(&fx.project).expect("open"),
        match last {
            IssueKind::Overlooked => planted.overlooked,
            IssueKind::SwappedClass => planted.swapped,
            IssueKind::BadlyLocated => planted.badly,
            IssueKind::Spurious => planted.spurious,
        },
    );
    assert_eq!(undo_note, None, "undo stores no reason");
}
