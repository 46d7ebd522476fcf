//! The human time each image costs, measured in the app: a fixed labelling script on a
//! simulated clock (no sleeping), then the stored times, actions and key presses per image, the
//! per-annotator figures the CLI prints (`loupe review stats --json`) and the dashboard's table.

use std::sync::Arc;
use std::time::Duration;

use eframe::egui::{Key, Modifiers};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use loupe::store::Project;
use loupe::ui::{App, ManualClock};

use super::{app, click, current_path, drag, fixture, press, screen, session, settle};

fn wait(clock: &ManualClock, seconds: u64) {
    clock.advance(Duration::from_secs(seconds));
}

/// The pointer moves (an input, nothing else).
fn hover(h: &mut Harness<'_, App>, x: f32, y: f32) {
    let at = screen(h, x, y);
    h.hover_at(at);
    settle(h);
}

#[test]
fn a_labelling_script_is_timed_per_image_and_annotator() {
    let fx = fixture();
    let mut h = app(&fx);
    let clock = Arc::new(ManualClock::default());
    h.state_mut()
        .session_mut()
        .expect("session")
        .set_clock(clock.clone());
    let user = Project::open(&fx.project)
        .expect("open")
        .current_user()
        .expect("user")
        .name;

    // a.png: a box drawn after 3 s, its class changed 2 s later (one key), then a 90 s break
    // (not counted), then D (a key, counted for a.png) to the next image.
    assert_eq!(current_path(&h), "a.png");
    wait(&clock, 3);
    let (from, to) = (screen(&h, 150.0, 120.0), screen(&h, 230.0, 190.0));
    drag(&mut h, from, to);
    wait(&clock, 2);
    press(&mut h, Key::Num2);
    wait(&clock, 90);
    press(&mut h, Key::D);

    // b.png: 4 s to accept the three proposals with Space (one key, one action), which shows
    // c.png.
    assert_eq!(current_path(&h), "b.png");
    wait(&clock, 4);
    press(&mut h, Key::Space);

    // c.png: 10 s looking (the pointer moves), 30 s more, E, then a four-click box with a
    // second between clicks; the visit ends when the project closes.
    assert_eq!(current_path(&h), "c.png");
    wait(&clock, 10);
    hover(&mut h, 100.0, 100.0);
    wait(&clock, 30);
    press(&mut h, Key::E);
    for (x, y) in [(60.0, 100.0), (110.0, 40.0), (200.0, 90.0), (120.0, 180.0)] {
        wait(&clock, 1);
        let at = screen(&h, x, y);
        click(&mut h, at);
    }
    h.state_mut().session_mut().expect("session").end_visit();
    h.state_mut().flush_writes();

    let times = Project::open(&fx.project)
        .expect("open")
        .image_times()
        .expect("times");
    let got: Vec<(&str, u64, u64, u64, u64, u64, u64)> = times
        .iter()
        .map(|t| {
            assert_eq!(t.user, user);
            (
                t.path.as_str(),
                t.visits,
                t.active_ms,
                t.actions,
                t.key_presses,
                t.boxes_human,
                t.boxes_model,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            // path, visits, active ms, actions, keys, labels drawn, labels from the model
            ("a.png", 1, 5_000, 2, 2, 2, 0),
            ("b.png", 1, 4_000, 1, 1, 0, 3),
            ("c.png", 1, 44_000, 1, 1, 1, 0),
        ]
    );

    // The CLI: per annotator, 53 s over 3 images and 6 labels, half of them the model's.
    let stats = crate::support::ok_json(&fx.project, &["review", "stats", "--json"]);
    let me = stats
        .as_array()
        .expect("users")
        .iter()
        .find(|s| s["user"] == user.as_str())
        .expect("my figures");
    let m = &me["measured"];
    assert_eq!(m["images"], 3);
    assert_eq!(m["active_seconds"], 53.0);
    assert!((m["seconds_per_image"].as_f64().expect("s/image") - 53.0 / 3.0).abs() < 1e-9);
    assert!((m["seconds_per_box"].as_f64().expect("s/box") - 53.0 / 6.0).abs() < 1e-9);
    assert_eq!(m["boxes"], 6);
    assert_eq!(m["model_boxes"], 3);
    assert_eq!(m["model_assisted_share"], 0.5);
    assert_eq!(m["actions"], 4);
    assert_eq!(m["key_presses"], 4);
    let text = crate::support::ok(&fx.project, &["review", "stats"]);
    assert!(text.contains("measured in the app"), "{text}");
    let per_image =
        crate::support::ok_json(&fx.project, &["review", "stats", "--images", "--json"]);
    assert_eq!(per_image[0]["path"], "a.png");
    assert_eq!(per_image[0]["active_ms"], 5_000);
    assert_eq!(per_image[2]["key_presses"], 1);
    assert_eq!(per_image[1]["boxes_model"], 3);

    // The dashboard shows the same figures.
    let ctrl = Modifiers {
        ctrl: true,
        command: true,
        ..Modifiers::default()
    };
    h.key_press_modifiers(ctrl, Key::Num4);
    for _ in 0..4 {
        settle(&mut h);
        h.state_mut()
            .session_mut()
            .expect("session")
            .lead_mut()
            .wait_for_jobs(Duration::from_secs(60));
        h.run();
    }
    let data = session(&h).lead().dashboard_data().expect("dashboard data");
    let mine = data
        .stats
        .iter()
        .find(|s| s.user == user)
        .and_then(|s| s.measured.clone())
        .expect("measured figures");
    assert_eq!(mine.key_presses, 4);
    h.get_by_label("s per box");
    h.get_by_label("8.8 s");
}

#[test]
fn time_out_of_focus_does_not_count() {
    let fx = fixture();
    let mut h = app(&fx);
    let clock = Arc::new(ManualClock::default());
    h.state_mut()
        .session_mut()
        .expect("session")
        .set_clock(clock.clone());
    wait(&clock, 2);
    hover(&mut h, 10.0, 10.0);
    // Another window has the focus: the pointer passing over this one counts for nothing, and
    // the first input back in focus starts afresh.
    h.input_mut().focused = false;
    wait(&clock, 5);
    hover(&mut h, 20.0, 20.0);
    h.input_mut().focused = true;
    wait(&clock, 7);
    hover(&mut h, 30.0, 30.0);
    wait(&clock, 1);
    press(&mut h, Key::D);
    h.state_mut().flush_writes();
    let times = Project::open(&fx.project)
        .expect("open")
        .image_times()
        .expect("times");
    assert_eq!(times.len(), 1);
    assert_eq!(
        (
            times[0].path.as_str(),
            times[0].active_ms,
            times[0].key_presses
        ),
        ("a.png", 3_000, 1)
    );
}
