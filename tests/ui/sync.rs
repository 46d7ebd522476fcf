//! Sync in the app: the real app on one project of a team sharing a folder remote, the other
//! projects driven through the core. The app's background thread pulls and pushes; the
//! indicator, the canvas and the conflict panel follow; resolutions reach the store.

use std::time::Duration;

use eframe::egui::Key;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable as _;
use loupe::model::Role;
use loupe::store::Project;
use loupe::ui::{App, AppOptions, ConfigDir, Phase, SyncConfig, SyncView};

use super::{SIZE, click, current_path, drag, press, press_with, screen, session, settle};
use crate::support::write_png;
use crate::sync::{Backend, Team};

/// The app on client `i`'s project, signing with client `i`'s key.
fn app_on(team: &Team, i: usize, sync: SyncConfig) -> Harness<'static, App> {
    let options = AppOptions {
        project: Some(team.clients[i].path.clone()),
        open_last: false,
        config: ConfigDir::none(),
        sync: SyncConfig {
            key_dir: Some(team.clients[i].config.clone()),
            ..sync
        },
    };
    let mut h = Harness::builder()
        .with_size(SIZE)
        .with_max_steps(64)
        .build_eframe(move |cc| App::new(cc, options));
    settle(&mut h);
    h
}

/// Waits (up to 30 s) for the sync thread to report a state, then lets the app take it.
fn wait_sync(h: &mut Harness<'_, App>, what: &str, done: impl Fn(&SyncView) -> bool) {
    let ok = h
        .state_mut()
        .session_mut()
        .expect("a project is open")
        .sync_mut()
        .wait_until(Duration::from_secs(30), done);
    let view = h
        .state_mut()
        .session_mut()
        .expect("a project is open")
        .sync_mut()
        .view()
        .clone();
    assert!(ok, "sync never reached: {what}; last: {view:?}");
    settle(h);
}

fn view(h: &mut Harness<'_, App>) -> SyncView {
    h.state_mut()
        .session_mut()
        .expect("a project is open")
        .sync_mut()
        .view()
        .clone()
}

fn manual() -> SyncConfig {
    SyncConfig {
        enabled: false,
        interval: Duration::from_secs(3600),
        key_dir: None,
    }
}

#[test]
fn background_sync_pulls_boxes_onto_the_canvas_and_pushes_edits() {
    let team = Team::new(Backend::Folder, &[Role::Lead, Role::Annotator]);
    team.sync(0);
    let theirs = team.create(1, 0, 5.0);
    team.sync(1);
    let mut h = app_on(
        &team,
        0,
        SyncConfig {
            enabled: true,
            interval: Duration::from_millis(500),
            key_dir: None,
        },
    );
    assert_eq!(current_path(&h), "img/0.png");
    assert!(session(&h).boxes().is_empty());
    // Nobody asks: the timer syncs, and the pulled box appears on the canvas.
    wait_sync(&mut h, "a pull", |v| {
        v.attempts >= 1 && v.phase == Phase::Idle
    });
    assert!(
        session(&h).boxes().iter().any(|a| a.id == theirs),
        "{:?}",
        session(&h).boxes()
    );
    assert!(h.query_by_label_contains("synced").is_some());
    // An edit here: pending, then pushed by the timer.
    let (from, to) = (screen(&h, 30.0, 20.0), screen(&h, 50.0, 40.0));
    drag(&mut h, from, to);
    let mine = session(&h)
        .boxes()
        .iter()
        .find(|a| a.id != theirs)
        .map(|a| a.id)
        .expect("the drawn box");
    wait_sync(&mut h, "1 pending", |v| v.summary().contains("1 pending"));
    let attempts = view(&mut h).attempts;
    wait_sync(&mut h, "pushed", move |v| {
        v.pending == 0 && v.attempts > attempts && v.phase == Phase::Idle
    });
    team.sync(1);
    let other = team.open(1);
    let box_there = other
        .annotation(mine)
        .expect("the app's box reached client 1");
    assert!(!box_there.value.deleted);
    drop(other);
    // Client 1 adds a box to the image the app has edited (its boxes live in memory with an
    // undo history): the next pull shows it there without reopening the image, and the
    // app's own box stays.
    let later = team.create(1, 0, 90.0);
    team.sync(1);
    let attempts = view(&mut h).attempts;
    wait_sync(&mut h, "a second pull", move |v| {
        v.attempts > attempts && v.phase == Phase::Idle && v.last_pulled > 0
    });
    let ids: Vec<_> = session(&h).boxes().iter().map(|a| a.id).collect();
    assert!(
        ids.contains(&later) && ids.contains(&mine) && ids.contains(&theirs),
        "{ids:?}"
    );
    assert_eq!(current_path(&h), "img/0.png");
}

#[test]
fn a_conflict_shows_both_values_and_is_resolved_in_the_app() {
    let team = Team::new(Backend::Folder, &[Role::Lead, Role::Annotator]);
    let x = team.create(0, 0, 5.0);
    team.sync(0);
    team.sync(1);
    let mut h = app_on(&team, 0, manual());
    // The thread's first report: the remote and when the project last synced.
    wait_sync(&mut h, "the first report", |v| {
        v.phase == Phase::Idle && v.remote.is_some()
    });
    assert!(h.query_by_label_contains("synced").is_some());
    assert_eq!(view(&mut h).attempts, 0, "manual: no sync until asked");

    // Client 1 moves the box; "Sync now" (Ctrl+S) pulls it onto the canvas.
    team.update(1, x, |v| v.bbox.x = 20.0);
    team.sync(1);
    press_with(&mut h, true, false, Key::S);
    wait_sync(&mut h, "a pull", |v| {
        v.attempts >= 1 && v.phase == Phase::Idle
    });
    let shown = |h: &Harness<'_, App>| {
        session(h)
            .boxes()
            .iter()
            .find(|a| a.id == x)
            .map(|a| a.value.bbox)
            .expect("box x is shown")
    };
    assert_eq!(shown(&h).x, 20.0);
    assert!(h.query_by_label_contains("synced").is_some());

    // The app nudges the box: one revision pending, on the indicator.
    let at = screen(&h, 25.0, 6.0);
    click(&mut h, at);
    assert_eq!(session(&h).selected(), Some(x));
    super::press_alt(&mut h, false, Key::ArrowRight);
    assert_eq!(shown(&h).x, 21.0);
    wait_sync(&mut h, "1 pending", |v| v.pending == 1);
    assert!(
        h.query_by_label_contains("1 pending").is_some(),
        "the indicator shows the pending revision"
    );

    // Meanwhile client 1 edits the same box: the next sync finds them concurrent.
    team.update(1, x, |v| v.bbox.y = 10.0);
    team.sync(1);
    press_with(&mut h, true, false, Key::S);
    wait_sync(&mut h, "a conflict", |v| {
        v.attempts >= 2 && v.phase == Phase::Idle && v.conflicts.len() == 1
    });
    assert!(h.query_by_label_contains("1 conflict").is_some());
    let conflict = view(&mut h).conflicts[0].clone();
    assert_eq!(conflict.annotation, x);
    assert_eq!(conflict.heads.len(), 2, "{conflict:?}");
    let theirs = conflict
        .heads
        .iter()
        .find(|h| h.author == "user1")
        .expect("client 1's value")
        .clone();
    assert_eq!((theirs.bbox.x, theirs.bbox.y), (20.0, 10.0));
    assert!(conflict.heads.iter().any(|h| h.bbox.x == 21.0));

    // The reviewer keeps client 1's value.
    h.get_by_label(&format!("Keep {}", theirs.label)).click();
    settle(&mut h);
    assert_eq!(session(&h).message(), Some("Conflict resolved"));
    assert_eq!((shown(&h).x, shown(&h).y), (20.0, 10.0));
    assert!(view(&mut h).conflicts.is_empty());

    // A fresh connection reads the resolution: no conflict, the kept value, a revision.
    let fresh = Project::open(&team.clients[0].path).expect("open");
    assert!(fresh.sync_conflicts().expect("conflicts").is_empty());
    let stored = fresh.annotation(x).expect("box");
    assert_eq!((stored.value.bbox.x, stored.value.bbox.y), (20.0, 10.0));
    let last = fresh.history(x).expect("history").pop().expect("revision");
    assert!(
        last.note
            .as_deref()
            .is_some_and(|n| n.starts_with("resolved a sync conflict")),
        "{last:?}"
    );
    // Pushed, it settles the conflict for client 1 too.
    press_with(&mut h, true, false, Key::S);
    wait_sync(&mut h, "the push", |v| v.attempts >= 3 && v.pending == 0);
    team.sync(1);
    assert!(team.open(1).sync_conflicts().expect("conflicts").is_empty());
    assert_eq!(
        team.open(0).sync_state_hash().expect("hash"),
        team.open(1).sync_state_hash().expect("hash")
    );
}

#[test]
fn an_image_known_only_from_the_store_is_shown_as_missing() {
    let team = Team::new(Backend::Folder, &[Role::Lead, Role::Annotator]);
    team.sync(0);
    let file = team.dir.path().join("zz/far.png");
    write_png(&file, 30, 20, 5);
    {
        let mut p = team.open(1);
        loupe::ingest::add(
            &mut p,
            &[team.dir.path().join("zz")],
            &loupe::ingest::NoProgress,
        )
        .expect("add");
    }
    let far = team
        .open(1)
        .image_by_path("zz/far.png")
        .expect("q")
        .expect("image")
        .id;
    let id = uuid::Uuid::now_v7();
    {
        let mut p = team.open(1);
        let mut value = p.annotation(team.create(1, 0, 1.0)).expect("a box").value;
        value.image = far;
        p.apply(&[loupe::store::Edit::Create { id, value }])
            .expect("box on the far image");
    }
    team.sync(1);
    std::fs::remove_file(&file).expect("the file lives elsewhere");
    let mut h = app_on(&team, 0, manual());
    press_with(&mut h, true, false, Key::S);
    wait_sync(&mut h, "a pull", |v| {
        v.attempts >= 1 && v.phase == Phase::Idle
    });
    let row = session(&h)
        .rows()
        .iter()
        .position(|r| r.path == "zz/far.png")
        .expect("the placeholder is listed");
    assert!(session(&h).rows()[row].missing);
    // Go there: the boxes are readable, the canvas says the file is elsewhere, nothing breaks.
    for _ in 0..row {
        press(&mut h, Key::D);
    }
    assert_eq!(current_path(&h), "zz/far.png");
    assert_eq!(session(&h).boxes().len(), 1);
    assert!(!session(&h).image_ready());
    press(&mut h, Key::A);
    assert_ne!(current_path(&h), "zz/far.png");
}

#[test]
fn an_unreachable_store_shows_offline_and_recovers() {
    let team = Team::new(Backend::Folder, &[Role::Lead, Role::Annotator]);
    team.sync(0);
    // The shared folder is gone (an unmounted share): its path now runs through a plain file.
    let blocker = team.dir.path().join("not-a-folder");
    std::fs::write(&blocker, b"x").expect("write");
    let good = team.spec.clone();
    {
        let mut p = team.open(0);
        let bad = loupe::sync::RemoteSpec::new(format!("file://{}/share", blocker.display()));
        p.sync_add_remote("origin", &bad).expect("remote");
    }
    let mut h = app_on(&team, 0, manual());
    press_with(&mut h, true, false, Key::S);
    wait_sync(&mut h, "offline", |v| v.phase == Phase::Offline);
    let v = view(&mut h);
    let error = v.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("Working offline") && error.contains("not-a-folder"),
        "{error}"
    );
    assert!(h.query_by_label_contains("offline").is_some());
    // Edits go on while offline; they wait as pending.
    let (from, to) = (screen(&h, 30.0, 20.0), screen(&h, 50.0, 40.0));
    drag(&mut h, from, to);
    wait_sync(&mut h, "1 pending", |v| v.pending == 1);
    // The share is back: the next sync pushes and the error is gone.
    {
        let mut p = team.open(0);
        p.sync_add_remote("origin", &good).expect("remote");
    }
    press_with(&mut h, true, false, Key::S);
    wait_sync(&mut h, "back online", |v| {
        v.phase == Phase::Idle && v.pending == 0 && v.last_error.is_none()
    });
    assert!(h.query_by_label_contains("synced").is_some());
}

/// The sync details window opens from the status bar and closes on Escape or Enter, which do
/// not reach the canvas (Escape would deselect, Enter accept) while it is open.
#[test]
fn the_sync_window_closes_on_escape_and_enter() {
    let team = Team::new(Backend::Folder, &[Role::Lead, Role::Annotator]);
    let _x = team.create(0, 0, 5.0);
    team.sync(0);
    let mut h = app_on(&team, 0, manual());
    wait_sync(&mut h, "the first report", |v| {
        v.phase == Phase::Idle && v.remote.is_some()
    });
    press(&mut h, Key::Tab);
    let selected = session(&h).selected().expect("a box is selected");
    let is_open = |h: &mut Harness<'_, App>| {
        h.state_mut()
            .session_mut()
            .expect("a project is open")
            .sync_mut()
            .open
    };
    for key in [Key::Escape, Key::Enter] {
        h.get_by_label_contains("synced").click();
        settle(&mut h);
        assert!(is_open(&mut h), "the indicator opens the window");
        press(&mut h, key);
        assert!(!is_open(&mut h), "{key:?} closed the window");
        assert_eq!(
            session(&h).selected(),
            Some(selected),
            "{key:?} left the selection"
        );
    }
}

#[test]
fn a_pack_missing_from_the_store_is_shown_as_a_problem() {
    let team = Team::new(Backend::Folder, &[Role::Lead, Role::Annotator]);
    team.sync(0);
    team.create(1, 0, 1.0);
    team.sync(1);
    team.create(1, 1, 2.0);
    team.sync(1);
    // The annotator's first pack disappears from the shared folder.
    let c1 = team.open(1).client_id();
    team.store()
        .delete(&loupe::sync::pack::pack_key(c1, 1))
        .expect("delete");
    let mut h = app_on(&team, 0, manual());
    press_with(&mut h, true, false, Key::S);
    wait_sync(&mut h, "a sync", |v| {
        v.attempts >= 1 && v.phase == Phase::Idle
    });
    let v = view(&mut h);
    assert_eq!(v.problems.len(), 1, "{v:?}");
    assert!(
        v.problems[0].contains("Missing revisions") && v.problems[0].contains("missing"),
        "{:?}",
        v.problems
    );
    assert!(v.summary().contains("1 problem"), "{}", v.summary());
    assert!(
        h.query_by_label_contains("1 problem").is_some(),
        "the status bar shows it"
    );
}
