//! The data-loop views driven through the real app: the lead dashboard (a batch created,
//! assigned, submitted, audited and accepted), the triage view (ranking and the "next" queue),
//! the evaluation view, the box history panel, metadata editing and the first-start profile.

use eframe::egui::{Key, Modifiers};
use egui_kittest::Harness;
use egui_kittest::kittest::{By, Queryable};
use loupe::model::{AnnotationValue, BBox, BoxFlags, ReviewState, Role, Source};
use loupe::review::{self, BatchState};
use loupe::store::{Edit, Project};
use loupe::ui::{App, EvalResult, Mode};
use uuid::Uuid;

use super::{Fixture, app, fixture, press, session, settle_all};

/// Presses Ctrl+digit: the mode shortcuts.
fn mode_key(h: &mut Harness<'_, App>, key: Key) {
    let m = Modifiers {
        ctrl: true,
        command: true,
        ..Modifiers::default()
    };
    h.key_press_modifiers(m, key);
    settle_all(h);
}

/// Types into the text field with this placeholder.
fn type_into(h: &mut Harness<'_, App>, placeholder: &'static str, text: &str) {
    let field = || By::new().predicate(move |n| n.placeholder() == Some(placeholder));
    h.get(field()).click();
    h.run();
    h.get(field()).type_text(text);
    h.run();
}

fn click_label(h: &mut Harness<'_, App>, label: &str) {
    h.get_by_label(label).click();
    settle_all(h);
}

fn value(
    image: Uuid,
    class: Uuid,
    bbox: BBox,
    source: Source,
    state: ReviewState,
) -> AnnotationValue {
    AnnotationValue {
        image,
        class,
        bbox,
        source,
        state,
        flags: BoxFlags::default(),
        deleted: false,
        attributes: Default::default(),
    }
}

/// Plants on `c.png` a dog label the run calls a cat (0.95) and a bird (0.92) nobody labeled.
fn plant_triage_case(fx: &Fixture) {
    let mut p = Project::open(&fx.project).expect("open");
    let c = fx.image("c.png");
    let run = fx.run;
    let edits = vec![
        Edit::Create {
            id: Uuid::now_v7(),
            value: value(
                c,
                fx.class("dog"),
                BBox::new(100.0, 100.0, 60.0, 60.0),
                Source::Human,
                ReviewState::Submitted,
            ),
        },
        Edit::Create {
            id: Uuid::now_v7(),
            value: value(
                c,
                fx.class("cat"),
                BBox::new(100.0, 100.0, 60.0, 60.0),
                Source::Model { run, score: 0.95 },
                ReviewState::Proposed,
            ),
        },
        Edit::Create {
            id: Uuid::now_v7(),
            value: value(
                c,
                fx.class("bird"),
                BBox::new(10.0, 10.0, 50.0, 50.0),
                Source::Model { run, score: 0.92 },
                ReviewState::Proposed,
            ),
        },
    ];
    p.apply(&edits).expect("plant");
    // b.png was looked at and marked done with its proposals left: triage compares it (an
    // image nobody has reviewed is left out of the ranking).
    p.set_tag(fx.image("b.png"), "done", true).expect("done");
}

#[test]
fn a_lead_creates_assigns_audits_and_accepts_a_batch_from_the_dashboard() {
    let fx = fixture();
    let mut h = app(&fx);
    let me = Project::open(&fx.project)
        .expect("open")
        .current_user()
        .expect("user");
    mode_key(&mut h, Key::Num4);
    assert_eq!(session(&h).lead().mode(), Mode::Dashboard);
    // The per-annotator figures are read off the UI thread and shown.
    let data = session(&h).lead().dashboard_data().expect("dashboard read");
    assert!(
        data.stats.iter().any(|s| s.user == me.name),
        "{:?}",
        data.stats
    );

    // A batch from the image list's filter (all four images).
    h.get_by_label("Batch name").click();
    h.run();
    h.get_by_label("Batch name").type_text("week-1");
    h.run();
    click_label(&mut h, "Create batch");
    click_label(&mut h, &format!("assign to {}", me.name));
    click_label(&mut h, "Assign");
    click_label(&mut h, "Submit");
    let detail = session(&h).lead().batch_detail().expect("batch shown");
    assert_eq!(detail.batch.name, "week-1");
    assert_eq!(
        detail.batch.state,
        BatchState::Submitted,
        "{:?}",
        session(&h).message()
    );
    assert_eq!(detail.images.len(), 4);

    // A seeded audit: 10% with at least 10 images takes the whole (small) batch.
    click_label(&mut h, "Start audit");
    let audit = session(&h)
        .lead()
        .batch_detail()
        .and_then(|d| d.audit.clone())
        .expect("audit started");
    assert_eq!(audit.items.len(), 4);
    // Opening a sampled image puts it on the canvas, with the sample as the queue.
    click_label(&mut h, "audit b.png");
    assert_eq!(session(&h).lead().mode(), Mode::Label);
    assert_eq!(super::current_path(&h), "b.png");
    // Its verdict is given beside the canvas.
    click_label(&mut h, "Pass image");
    mode_key(&mut h, Key::Num4);
    for path in ["a.png", "c.png", "d16.png"] {
        click_label(&mut h, &format!("Pass {path}"));
    }
    click_label(&mut h, "Accept batch");

    // A fresh connection sees the accepted batch and its approved boxes.
    let p = Project::open(&fx.project).expect("open");
    let batch = review::batches(&p)
        .expect("batches")
        .into_iter()
        .find(|b| b.name == "week-1")
        .expect("stored batch");
    assert_eq!(
        batch.state,
        BatchState::Accepted,
        "{:?}",
        session(&h).message()
    );
    assert_eq!(batch.assignee.as_deref(), Some(me.name.as_str()));
    assert_eq!(
        p.annotation(fx.a_box).expect("box").value.state,
        ReviewState::Approved
    );
    let stored_audit = review::audit_of(&p, "week-1")
        .expect("read")
        .expect("audit");
    assert_eq!(stored_audit.passed, 4);
    // The dashboard shows it too, after the write.
    let shown = session(&h).lead().dashboard_data().expect("dashboard");
    assert!(
        shown
            .batches
            .iter()
            .any(|(b, _)| b.name == "week-1" && b.state == BatchState::Accepted)
    );
}

#[test]
fn the_dashboard_shows_how_well_two_people_agree() {
    let fx = fixture();
    {
        // Alice and Bob both label c.png: two cars that match, and a box Alice calls a dog
        // where Bob sees a cat.
        let mut p = Project::open(&fx.project).expect("open");
        let c = fx.image("c.png");
        for (who, boxes) in [
            ("alice", [("dog", 10.0), ("cat", 100.0)]),
            ("bob", [("dog", 12.0), ("dog", 101.0)]),
        ] {
            p.switch_user(who, Some(Role::Annotator)).expect("user");
            let edits: Vec<Edit> = boxes
                .iter()
                .map(|(class, x)| Edit::Create {
                    id: Uuid::now_v7(),
                    value: value(
                        c,
                        fx.class(class),
                        BBox::new(*x, 20.0, 60.0, 60.0),
                        Source::Human,
                        ReviewState::Submitted,
                    ),
                })
                .collect();
            p.apply(&edits).expect("label");
        }
    }
    let mut h = app(&fx);
    mode_key(&mut h, Key::Num4);
    settle_all(&mut h);
    let data = session(&h).lead().dashboard_data().expect("dashboard read");
    let report = data.agreement.as_ref().expect("agreement computed");
    let pair = report
        .pairs
        .iter()
        .find(|p| p.a == "alice" && p.b == "bob")
        .unwrap_or_else(|| panic!("alice and bob: {:?}", report.pairs));
    assert_eq!((pair.images, pair.matched, pair.class_conflicts), (1, 1, 1));
    assert!(h.query_by_label("Agreement").is_some());
    assert!(h.query_by_label("alice & bob").is_some());
    // F1 = 2 × 1 / (2 + 2) = 50 %, shown for the pair and for dog across all pairs.
    assert!(h.query_all_by_label("50%").count() >= 1);
    assert!(
        h.query_by_label("cat vs dog ×1").is_some() || h.query_by_label("dog vs cat ×1").is_some()
    );
}

#[test]
fn triage_ranks_the_planted_image_first_and_opens_it_as_a_queue() {
    let fx = fixture();
    plant_triage_case(&fx);
    let mut h = app(&fx);
    mode_key(&mut h, Key::Num2);
    assert_eq!(session(&h).lead().mode(), Mode::Triage);
    let rows = session(&h)
        .lead()
        .triage_rows()
        .expect("triage read")
        .to_vec();
    assert_eq!(rows[0].path, "c.png", "{rows:#?}");
    assert!(rows[0].counts.missing_label >= 1 && rows[0].counts.wrong_class >= 1);
    assert_eq!(rows[1].path, "b.png");
    // The reason is on screen.
    assert!(
        h.query_all_by_label_contains("missing label")
            .next()
            .is_some(),
        "the reasons are shown"
    );
    click_label(&mut h, "triage #1 c.png");
    assert_eq!(session(&h).lead().mode(), Mode::Label);
    assert_eq!(super::current_path(&h), "c.png");
    // Next follows the ranking (b.png), not the list (d16.png).
    press(&mut h, Key::D);
    settle_all(&mut h);
    assert_eq!(super::current_path(&h), "b.png");
    press(&mut h, Key::D);
    assert_eq!(super::current_path(&h), "b.png", "the queue has two images");
    click_label(&mut h, "Leave");
    press(&mut h, Key::D);
    assert_eq!(super::current_path(&h), "c.png", "the list again");
}

#[test]
fn evaluation_view_shows_a_run_per_class_and_compares_two_runs() {
    let fx = fixture();
    plant_triage_case(&fx);
    {
        // The run's coverage as a model run records it (its predictions are on these two).
        let mut p = Project::open(&fx.project).expect("open");
        let run = p.run_by_name("detector-v1").expect("run").id;
        for image in ["b.png", "c.png"] {
            p.add_proposals(run, fx.image(image), &[], Default::default())
                .expect("coverage");
        }
    }
    let mut h = app(&fx);
    mode_key(&mut h, Key::Num3);
    assert_eq!(session(&h).lead().mode(), Mode::Evaluate);
    // Only submitted labels so far: count every label as ground truth.
    click_label(&mut h, "every label");
    let Some(EvalResult::One(e)) = session(&h).lead().eval_result().cloned() else {
        panic!("no evaluation: {:?}", session(&h).message());
    };
    assert_eq!(e.run, "detector-v1");
    // The run covered b.png and c.png: the dog on c.png is the only label there.
    assert_eq!(e.overall.gt_boxes, 1);
    assert_eq!(e.overall.images, 2);
    let cat = e
        .overall
        .per_class
        .iter()
        .find(|c| c.name == "cat")
        .expect("cat row");
    assert!(
        h.query_all_by_label("AP50").next().is_some(),
        "the summary header"
    );
    assert!(h.query_by_label_contains("Precision / recall").is_some());
    // The run's progress beside it: the images it covered of the project's.
    let images = Project::open(&fx.project)
        .expect("open")
        .all_images()
        .expect("images")
        .len();
    let progress = format!("2 of {images} images");
    assert!(
        h.query_by_label_contains(&progress).is_some(),
        "no {progress:?} beside the run: {:?}",
        {
            let p = Project::open(&fx.project).expect("open");
            p.runs()
                .expect("runs")
                .iter()
                .map(|r| (r.name.clone(), p.run_progress(r.id).expect("progress")))
                .collect::<Vec<_>>()
        }
    );
    assert!(cat.dt >= 3, "{cat:?}");
    assert_eq!(
        e.overall
            .per_class
            .iter()
            .find(|c| c.name == "dog")
            .map(|c| c.ap),
        Some(0.0)
    );

    // A second run that finds the dog: compared, it is better on dog.
    add_better_run(&fx);
    mode_key(&mut h, Key::Num1);
    mode_key(&mut h, Key::Num3);
    click_label(&mut h, "compare with");
    click_label(&mut h, "detector-v2");
    let Some(EvalResult::Two(c)) = session(&h).lead().eval_result().cloned() else {
        panic!("no comparison: {:?}", session(&h).message());
    };
    assert_eq!(
        (c.a.run.as_str(), c.b.run.as_str()),
        ("detector-v1", "detector-v2")
    );
    let dog = c
        .per_class
        .iter()
        .find(|d| d.class == "dog")
        .expect("dog row");
    assert_eq!(dog.verdict, "worse", "{dog:?}");
    assert!(
        h.query_all_by_label("worse").next().is_some(),
        "highlighted on screen"
    );
}

/// A second run with one prediction: the dog on c.png, exactly.
fn add_better_run(fx: &Fixture) {
    let mut p = Project::open(&fx.project).expect("open");
    let run = p
        .create_run(&loupe::store::NewRun {
            name: "detector-v2".into(),
            kind: "onnx".into(),
            settings: "{}".into(),
            ..loupe::store::NewRun::default()
        })
        .expect("run");
    p.apply(&[Edit::Create {
        id: Uuid::now_v7(),
        value: value(
            fx.image("c.png"),
            fx.class("dog"),
            BBox::new(100.0, 100.0, 60.0, 60.0),
            Source::Model { run, score: 0.9 },
            ReviewState::Proposed,
        ),
    }])
    .expect("prediction");
}

#[test]
fn the_history_panel_tells_who_changed_the_selected_box() {
    let fx = fixture();
    let mut h = app(&fx);
    let me = Project::open(&fx.project)
        .expect("open")
        .current_user()
        .expect("user");
    press(&mut h, Key::Tab);
    settle_all(&mut h);
    assert_eq!(session(&h).selected(), Some(fx.a_box));
    let rows = session(&h).lead().history_rows().expect("history").to_vec();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].what, "created as cat");
    assert_eq!(rows[0].author, me.name);
    // A nudge becomes a revision, and the panel shows it.
    super::press_alt(&mut h, false, Key::ArrowRight);
    settle_all(&mut h);
    let rows = session(&h).lead().history_rows().expect("history").to_vec();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[1].what.contains("moved"), "{rows:?}");
    assert!(h.query_all_by_label_contains("moved").next().is_some());
}

#[test]
fn the_selected_boxs_attributes_are_listed_under_the_box_list() {
    let fx = fixture();
    {
        let mut p = Project::open(&fx.project).expect("open");
        let mut value = p.annotation(fx.a_box).expect("box").value;
        value.attributes.insert("weather", "foggy");
        value.attributes.insert("IsOccluded", -1);
        p.apply(&[Edit::Update {
            id: fx.a_box,
            value,
            note: None,
        }])
        .expect("attributes");
    }
    let mut h = app(&fx);
    press(&mut h, Key::Tab);
    settle_all(&mut h);
    assert_eq!(session(&h).selected(), Some(fx.a_box));
    let rows = session(&h).lead().history_rows().expect("history").to_vec();
    assert!(rows[1].what.contains("attributes changed"), "{rows:?}");
    for label in ["Attributes", "weather", "foggy", "IsOccluded", "-1"] {
        assert!(h.query_by_label(label).is_some(), "no {label:?} on screen");
    }
}

#[test]
fn tags_and_metadata_are_edited_beside_the_canvas_and_filter_the_list() {
    let fx = fixture();
    let mut h = app(&fx);
    settle_all(&mut h);
    let a = fx.image("a.png");
    type_into(&mut h, "key", "weather");
    type_into(&mut h, "value", "rain");
    click_label(&mut h, "Set");
    type_into(&mut h, "add tag", "night");
    h.key_press(Key::Enter);
    settle_all(&mut h);
    let p = Project::open(&fx.project).expect("open");
    assert_eq!(
        p.image_meta(a).expect("meta"),
        vec![("weather".to_owned(), "rain".to_owned())]
    );
    assert_eq!(p.tags(a).expect("tags"), vec!["night".to_owned()]);
    let shown = session(&h).lead().image_meta().expect("meta shown").clone();
    assert_eq!(shown.tags, vec!["night".to_owned()]);
    // key=value in the list's filter field keeps only that image.
    type_into(&mut h, "tag or k=v", "weather=rain");
    settle_all(&mut h);
    let paths: Vec<&str> = session(&h).rows().iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, vec!["a.png"]);
    // Removing the tag goes through the writer as well.
    click_label(&mut h, "remove tag night");
    assert!(
        Project::open(&fx.project)
            .expect("open")
            .tags(a)
            .expect("tags")
            .is_empty()
    );
}

#[test]
fn first_start_asks_for_a_profile_and_the_top_bar_shows_it() {
    let fx = fixture();
    // Forget the fixture's choice: as a project made by someone else's tool.
    rusqlite::Connection::open(&fx.project)
        .expect("open")
        .execute("DELETE FROM meta WHERE key='user'", [])
        .expect("forget profile");
    let mut h = app(&fx);
    assert!(
        session(&h).lead().modal_open(),
        "the first-start dialog is up"
    );
    // Keys go to the dialog, not to the shortcuts.
    h.get_by_label("Name").click();
    h.run();
    // Clear the suggested name key by key (select-all then type raced the focus request on
    // a loaded machine).
    h.key_press(Key::End);
    h.run();
    for _ in 0..64 {
        h.key_press(Key::Backspace);
    }
    h.run();
    h.get_by_label("Name").type_text("ada");
    h.run();
    click_label(&mut h, "reviewer");
    click_label(&mut h, "Continue");
    assert!(!session(&h).lead().modal_open());
    let p = Project::open(&fx.project).expect("open");
    let chosen = review::chosen_profile(&p).expect("read").expect("chosen");
    assert_eq!((chosen.name.as_str(), chosen.role), ("ada", Role::Reviewer));
    assert!(
        h.query_by_label("ada · reviewer").is_some(),
        "shown in the top bar"
    );
    // The writer acts as ada now: a new box is hers.
    assert_eq!(
        session(&h).lead().user_label().as_deref(),
        Some("ada · reviewer")
    );
    assert_eq!(super::current_path(&h), "a.png");
    press(&mut h, Key::Tab);
    super::press_alt(&mut h, false, Key::ArrowDown);
    settle_all(&mut h);
    let history = Project::open(&fx.project)
        .expect("open")
        .history(fx.a_box)
        .expect("history");
    assert_eq!(history.last().map(|r| r.author.as_str()), Some("ada"));
}

#[test]
fn a_batch_is_reviewed_least_certain_first_when_its_lead_says_so() {
    let fx = fixture();
    {
        // c.png gets one proposal the model doubts (0.45); b.png's best is 0.9; a.png and
        // d16.png have no model box.
        let mut p = Project::open(&fx.project).expect("open");
        p.apply(&[Edit::Create {
            id: Uuid::now_v7(),
            value: value(
                fx.image("c.png"),
                fx.class("cat"),
                BBox::new(10.0, 10.0, 40.0, 40.0),
                Source::Model {
                    run: fx.run,
                    score: 0.45,
                },
                ReviewState::Proposed,
            ),
        }])
        .expect("proposal");
    }
    let mut h = app(&fx);
    mode_key(&mut h, Key::Num4);
    h.get_by_label("Batch name").click();
    h.run();
    h.get_by_label("Batch name").type_text("doubts");
    h.run();
    click_label(&mut h, "Create batch");
    let order = |h: &Harness<'_, App>| -> Vec<String> {
        session(h)
            .lead()
            .batch_detail()
            .expect("batch shown")
            .images
            .iter()
            .map(|i| i.path.clone())
            .collect()
    };
    assert_eq!(order(&h), ["a.png", "b.png", "c.png", "d16.png"]);
    click_label(&mut h, "model uncertainty");
    assert_eq!(
        review::batches(&Project::open(&fx.project).expect("open")).expect("batches")[0]
            .queue_order,
        review::QueueOrder::Uncertainty,
        "{:?}",
        session(&h).message()
    );
    assert_eq!(order(&h), ["c.png", "b.png", "a.png", "d16.png"]);
    // The queue opened from the batch follows that order.
    click_label(&mut h, "Images (4)");
    click_label(&mut h, "batch image c.png");
    assert_eq!(super::current_path(&h), "c.png");
    press(&mut h, Key::D);
    assert_eq!(super::current_path(&h), "b.png");
    press(&mut h, Key::D);
    assert_eq!(super::current_path(&h), "a.png");
}
