//! Running a detection model from the app: choosing a model (file dialog, recent models), what
//! it is and whether ONNX Runtime is installed, running it on the current image or on the
//! filtered queue in the background, progress with cancel, and the new proposals as each image's
//! are stored.
//!
//! The work is `inference::run` (the same as `loupe prelabel`) on threads of its own: one loads
//! the model, one runs it with its own store connection (SQLite's WAL lets it write beside the
//! UI's writer; both wait out each other's short transactions), and reports over a channel
//! polled once per frame. Nothing here blocks the UI thread.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use eframe::egui::{self, RichText, Ui};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::Command;
use super::shortcuts::{Action, Keymap};
use super::theme;
use super::workers;
use crate::inference::{
    self, Detector, InferenceError, ModelDescriptor, PRESETS, PipelineOptions, ProviderChoice,
    RunEvent, RunName, RunSummary, RuntimeInfo, Selection,
};
use crate::model::Annotation;
use crate::store::{ImageRow, Project};

/// A model the user chose, remembered in the settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentModel {
    /// The `.onnx` file.
    pub path: PathBuf,
    /// A built-in descriptor, for models with neither a `.toml` beside them nor metadata.
    #[serde(default)]
    pub preset: Option<String>,
}

impl RecentModel {
    /// The file name and preset, for menus.
    pub fn label(&self) -> String {
        let name = file_name(&self.path);
        match &self.preset {
            Some(p) => format!("{name} ({p})"),
            None => name,
        }
    }
}

/// What the model menu, its shortcuts and the status bar ask for.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelCommand {
    /// Pick an `.onnx` file with a dialog, then load it.
    ChooseDialog,
    /// Load this model.
    Use(RecentModel),
    /// Load the chosen model again with a built-in descriptor (it had none).
    UsePreset(String),
    /// Look for ONNX Runtime again (after installing it).
    CheckRuntime,
    /// Run models on this execution provider (`auto`: the best that loads); reloads the model.
    SetProvider(ProviderChoice),
    /// Slice images into windows for the next runs (`None`: each image whole). A sliced run
    /// is another run.
    SetSlice(Option<inference::SliceSettings>),
    RunOnImage,
    RunOnQueue,
    Cancel,
}

/// What the session must do after a background message.
#[derive(Debug)]
pub enum ModelUpdate {
    /// A run started: its name, and the model's classes are now in the project.
    Started { run_name: String },
    /// An image's proposals are stored: its boxes as the store now has them.
    Stored { image: Uuid, boxes: Vec<Annotation> },
    /// Something to say in the status bar.
    Message(String),
    /// The run ended (finished, cancelled or failed); lists may have changed.
    Finished,
    /// A model loaded: remember it in the settings.
    Remember(RecentModel),
    /// The execution provider was chosen in the menu: remember it in the settings.
    RememberProvider(ProviderChoice),
}

/// What a run covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunScope {
    Image,
    Queue,
}

/// Whether ONNX Runtime was found.
#[derive(Clone, Debug, PartialEq)]
pub enum RuntimeState {
    Checking,
    Found(RuntimeInfo),
    /// Why not, with how to install it.
    Missing(String),
}

/// The chosen model.
#[derive(Clone)]
pub enum ModelState {
    None,
    Loading(RecentModel),
    Ready {
        choice: RecentModel,
        detector: Arc<Detector>,
    },
    Failed {
        choice: RecentModel,
        error: String,
        /// The model has no descriptor: offer the presets.
        needs_descriptor: bool,
    },
}

/// A run in progress, for the status bar.
#[derive(Clone, Debug, PartialEq)]
pub struct RunProgress {
    pub scope: RunScope,
    pub run_name: Option<String>,
    /// Images finished (stored or failed) of `total`; `total` is `None` until planned.
    pub done: usize,
    pub total: Option<usize>,
    pub failed: usize,
    pub proposals: usize,
    pub images_per_second: Option<f64>,
    pub eta: Option<Duration>,
    pub cancelling: bool,
    /// The cancel shortcut, for the button's tooltip.
    pub cancel_keys: String,
}

struct Job {
    scope: RunScope,
    cancel: Arc<AtomicBool>,
    run_name: Option<String>,
    total: Option<usize>,
    done: usize,
    failed: usize,
    proposals: usize,
    skipped: usize,
    /// When the first image started (after planning), for the rate.
    started: Instant,
    /// The last image to fail and why, for the summary.
    last_error: Option<String>,
}

enum Msg {
    Runtime(Result<RuntimeInfo, String>),
    Loaded {
        choice: RecentModel,
        result: Result<Arc<Detector>, (String, bool)>,
    },
    Planned {
        run_name: String,
        total: usize,
        skipped: usize,
    },
    Stored {
        image: Uuid,
        boxes: Vec<Annotation>,
        proposals: usize,
    },
    ImageFailed {
        error: String,
    },
    Finished(Result<RunSummary, String>),
}

/// The model, its runs and their progress, for one open project.
pub struct ModelRunner {
    project: PathBuf,
    ctx: egui::Context,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    /// Messages taken by [`wait_idle`](Self::wait_idle) and not yet handled.
    pending: VecDeque<Msg>,
    runtime: RuntimeState,
    model: ModelState,
    job: Option<Job>,
    recent: Vec<RecentModel>,
    /// Which execution provider models load on.
    provider: ProviderChoice,
    /// A provider chosen in the menu, to report to the settings at the next poll.
    provider_chosen: Option<ProviderChoice>,
    /// How the next runs slice images (applied to every model loaded).
    slice: Option<inference::SliceSettings>,
}

/// Where the run starts: the image on the canvas, the filtered list and who is labelling.
pub struct RunContext<'a> {
    pub current: Option<Uuid>,
    pub rows: &'a [ImageRow],
    /// The user the proposals are attributed to (the session's), by id.
    pub user: Option<String>,
}

impl ModelRunner {
    /// Starts looking for ONNX Runtime in the background.
    pub fn new(project: &Path, ctx: &egui::Context) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut runner = Self {
            project: project.to_path_buf(),
            ctx: ctx.clone(),
            tx,
            rx,
            pending: VecDeque::new(),
            runtime: RuntimeState::Checking,
            model: ModelState::None,
            job: None,
            recent: Vec::new(),
            provider: ProviderChoice::Auto,
            provider_chosen: None,
            slice: None,
        };
        runner.check_runtime();
        runner
    }

    /// The recent models (from the settings), most recent first.
    pub fn set_recent(&mut self, recent: Vec<RecentModel>) {
        self.recent = recent;
    }

    /// The execution provider models load on (from the settings); takes effect at the next
    /// load.
    pub fn set_provider(&mut self, provider: ProviderChoice) {
        self.provider = provider;
    }

    /// The execution provider chosen (not necessarily the one running: see
    /// [`provider_status`](Self::provider_status)).
    pub fn provider_choice(&self) -> ProviderChoice {
        self.provider
    }

    /// For the status bar: the provider the loaded model runs on, and why a better one was not
    /// used (if one was skipped).
    pub fn provider_status(&self) -> Option<(String, Option<String>)> {
        match &self.model {
            ModelState::Ready { detector, .. } => {
                let report = detector.provider();
                Some((report.used.label().to_owned(), report.fallback_reason()))
            }
            _ => None,
        }
    }

    /// Whether ONNX Runtime was found.
    pub fn runtime(&self) -> &RuntimeState {
        &self.runtime
    }

    /// The chosen model.
    pub fn model(&self) -> &ModelState {
        &self.model
    }

    /// True while a run is going.
    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    /// True while the model loads or a run is going.
    pub fn is_busy(&self) -> bool {
        self.job.is_some() || matches!(self.model, ModelState::Loading(_))
    }

    /// Starts `work` on a thread named `name` (through [`workers::spawn`], which reports a
    /// panic to the status bar). A panic also ends what the thread was doing here, with the
    /// message `on_panic` makes of it, so the menu never waits for a thread that is gone.
    fn spawn(
        &self,
        name: &str,
        work: impl FnOnce(&Sender<Msg>) + Send + 'static,
        on_panic: impl FnOnce(String) -> Msg + Send + 'static,
    ) -> bool {
        let tx = self.tx.clone();
        let ctx = self.ctx.clone();
        let thread_ctx = ctx.clone();
        workers::spawn(&ctx, name, move || {
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&tx)));
            if let Err(payload) = done {
                let _ = tx.send(on_panic(crate::panic_message(&payload)));
                std::panic::resume_unwind(payload);
            }
            thread_ctx.request_repaint();
        })
        .map_err(|e| tracing::error!("cannot start thread {name}: {e}"))
        .is_ok()
    }

    fn check_runtime(&mut self) {
        self.runtime = RuntimeState::Checking;
        self.spawn(
            "loupe-onnxruntime",
            move |tx| {
                let _ = tx.send(Msg::Runtime(
                    inference::runtime_info().map_err(|e| e.to_string()),
                ));
            },
            |panic| Msg::Runtime(Err(format!("checking ONNX Runtime failed: {panic}"))),
        );
    }

    fn load(&mut self, choice: RecentModel) {
        self.model = ModelState::Loading(choice.clone());
        let provider = self.provider;
        let chosen = choice.clone();
        self.spawn(
            "loupe-model-load",
            move |tx| {
                let result = load_detector(&choice, provider).map(Arc::new).map_err(|e| {
                    let needs = matches!(e, InferenceError::DescriptorMissing { .. });
                    (e.to_string(), needs)
                });
                let _ = tx.send(Msg::Loaded { choice, result });
            },
            move |panic| Msg::Loaded {
                choice: chosen,
                result: Err((format!("loading the model failed: {panic}"), false)),
            },
        );
    }

    /// Applies a command; returns a message for the status bar.
    pub fn apply(&mut self, command: ModelCommand, at: &RunContext<'_>) -> Option<String> {
        match command {
            ModelCommand::ChooseDialog => {
                let mut dialog = rfd::FileDialog::new()
                    .set_title("Choose a detection model")
                    .add_filter("ONNX model", &["onnx"]);
                if let Some(dir) = self.recent.first().and_then(|m| m.path.parent()) {
                    dialog = dialog.set_directory(dir);
                }
                let path = dialog.pick_file()?;
                return self.apply(ModelCommand::Use(RecentModel { path, preset: None }), at);
            }
            ModelCommand::SetSlice(slice) => {
                if self.is_running() {
                    return Some("Cancel the run before changing the slicing".into());
                }
                self.slice = slice;
                if let ModelState::Ready { detector, .. } = &self.model {
                    detector.set_slice(slice);
                }
                return Some(match slice {
                    Some(s) => format!(
                        "Runs slice images into {}x{} windows (overlap {})",
                        s.width, s.height, s.overlap
                    ),
                    None => "Runs see each image whole".into(),
                });
            }
            ModelCommand::Use(choice) => {
                if self.is_running() {
                    return Some("Cancel the run before changing the model".into());
                }
                let message = format!("Loading model {}…", choice.label());
                self.load(choice);
                return Some(message);
            }
            ModelCommand::UsePreset(preset) => {
                let (ModelState::Failed { choice, .. } | ModelState::Ready { choice, .. }) =
                    &self.model
                else {
                    return None;
                };
                let choice = RecentModel {
                    path: choice.path.clone(),
                    preset: Some(preset),
                };
                return self.apply(ModelCommand::Use(choice), at);
            }
            ModelCommand::CheckRuntime => self.check_runtime(),
            ModelCommand::SetProvider(provider) => {
                if self.is_running() {
                    return Some("Cancel the run before changing the execution provider".into());
                }
                self.provider = provider;
                self.provider_chosen = Some(provider);
                // The model's sessions are bound to a provider: load it again on the new one.
                let (ModelState::Ready { choice, .. }
                | ModelState::Failed { choice, .. }
                | ModelState::Loading(choice)) = &self.model
                else {
                    return Some(format!("Execution provider: {provider}"));
                };
                let choice = choice.clone();
                self.load(choice);
                return Some(format!("Loading the model again on {provider}…"));
            }
            ModelCommand::RunOnImage => {
                let Some(image) = at.current else {
                    return Some("No image to run the model on".into());
                };
                return self.start(RunScope::Image, vec![image], at.user.clone());
            }
            ModelCommand::RunOnQueue => {
                let ids = at.rows.iter().map(|r| r.id).collect();
                return self.start(RunScope::Queue, ids, at.user.clone());
            }
            ModelCommand::Cancel => {
                let Some(job) = &self.job else {
                    return Some("No model run to cancel".into());
                };
                job.cancel.store(true, Ordering::SeqCst);
                return Some("Cancelling: finishing the image in flight…".into());
            }
        }
        None
    }

    /// Starts a run on `images` unless one is going or no model is ready.
    fn start(
        &mut self,
        scope: RunScope,
        images: Vec<Uuid>,
        user: Option<String>,
    ) -> Option<String> {
        if self.job.is_some() {
            return Some("A model run is already going (cancel it first)".into());
        }
        let detector = match &self.model {
            ModelState::Ready { detector, .. } => Arc::clone(detector),
            ModelState::Loading(_) => return Some("The model is still loading".into()),
            ModelState::Failed { error, .. } => return Some(format!("No model: {error}")),
            ModelState::None => return Some("Choose a model first (Model menu)".into()),
        };
        if let RuntimeState::Missing(e) = &self.runtime {
            return Some(e.clone());
        }
        if images.is_empty() {
            return Some("The filtered list is empty".into());
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let project = self.project.clone();
        let ctx = self.ctx.clone();
        let flag = Arc::clone(&cancel);
        let started = self.spawn(
            "loupe-model-run",
            move |tx| {
                let result = run(&project, user.as_deref(), &detector, images, flag, tx, &ctx);
                let _ = tx.send(Msg::Finished(result.map_err(|e| format!("{e:#}"))));
            },
            |panic| Msg::Finished(Err(format!("the run stopped: {panic}"))),
        );
        if !started {
            return Some("Cannot start the model run (no thread)".into());
        }
        self.job = Some(Job {
            scope,
            cancel,
            run_name: None,
            total: None,
            done: 0,
            failed: 0,
            proposals: 0,
            skipped: 0,
            started: Instant::now(),
            last_error: None,
        });
        None
    }

    /// Handles what the background threads reported, without blocking.
    pub fn poll(&mut self) -> Vec<ModelUpdate> {
        let mut updates = Vec::new();
        if let Some(provider) = self.provider_chosen.take() {
            updates.push(ModelUpdate::RememberProvider(provider));
        }
        while let Some(msg) = self.pending.pop_front().or_else(|| self.rx.try_recv().ok()) {
            self.handle(msg, &mut updates);
        }
        updates
    }

    /// Blocks until no model is loading and no run is going, or `timeout` passes; the messages
    /// are handled by the next [`poll`](Self::poll). For tests; the UI never waits.
    pub fn wait_idle(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        // Replay the state changes the pending messages make, without applying them.
        let mut loading = matches!(self.model, ModelState::Loading(_));
        let mut running = self.job.is_some();
        let mut checking = self.runtime == RuntimeState::Checking;
        for msg in &self.pending {
            match msg {
                Msg::Loaded { .. } => loading = false,
                Msg::Finished(_) => running = false,
                Msg::Runtime(_) => checking = false,
                _ => {}
            }
        }
        while loading || running || checking {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(msg) = self.rx.recv_timeout(left) else {
                return false;
            };
            match &msg {
                Msg::Loaded { .. } => loading = false,
                Msg::Finished(_) => running = false,
                Msg::Runtime(_) => checking = false,
                _ => {}
            }
            self.pending.push_back(msg);
        }
        true
    }

    fn handle(&mut self, msg: Msg, updates: &mut Vec<ModelUpdate>) {
        match msg {
            Msg::Runtime(result) => {
                self.runtime = match result {
                    Ok(info) => RuntimeState::Found(info),
                    Err(e) => RuntimeState::Missing(e),
                };
            }
            Msg::Loaded { choice, result } => {
                if !matches!(&self.model, ModelState::Loading(c) if *c == choice) {
                    return; // Another model was chosen meanwhile.
                }
                match result {
                    Ok(detector) => {
                        // Short: the status bar also shows a run's progress; the menu has
                        // details. A fallback to the CPU is said here, with its reason.
                        let report = detector.provider();
                        let mut message =
                            format!("Model {} ready on {}", choice.label(), report.used.label());
                        if let Some(why) = report.fallback_reason() {
                            message.push_str(&format!(" ({why})"));
                        }
                        updates.push(ModelUpdate::Message(message));
                        updates.push(ModelUpdate::Remember(choice.clone()));
                        self.recent.retain(|m| m.path != choice.path);
                        self.recent.insert(0, choice.clone());
                        detector.set_slice(self.slice);
                        self.model = ModelState::Ready { choice, detector };
                        // A model loaded, so the runtime is there (it may have been installed
                        // since the first check).
                        if let Ok(info) = inference::runtime_info() {
                            self.runtime = RuntimeState::Found(info);
                        }
                    }
                    Err((error, needs_descriptor)) => {
                        updates.push(ModelUpdate::Message(format!(
                            "Cannot use the model: {error}"
                        )));
                        self.model = ModelState::Failed {
                            choice,
                            error,
                            needs_descriptor,
                        };
                    }
                }
            }
            Msg::Planned {
                run_name,
                total,
                skipped,
            } => {
                if let Some(job) = &mut self.job {
                    job.run_name = Some(run_name.clone());
                    job.total = Some(total);
                    job.skipped = skipped;
                    job.started = Instant::now();
                }
                updates.push(ModelUpdate::Started { run_name });
            }
            Msg::Stored {
                image,
                boxes,
                proposals,
            } => {
                if let Some(job) = &mut self.job {
                    job.done += 1;
                    job.proposals += proposals;
                }
                updates.push(ModelUpdate::Stored { image, boxes });
            }
            Msg::ImageFailed { error } => {
                if let Some(job) = &mut self.job {
                    job.done += 1;
                    job.failed += 1;
                    job.last_error = Some(error);
                }
            }
            Msg::Finished(result) => {
                let Some(job) = self.job.take() else {
                    return;
                };
                updates.push(ModelUpdate::Message(finished_message(&job, &result)));
                updates.push(ModelUpdate::Finished);
            }
        }
    }

    /// The status bar's view of the run (or of a model loading).
    pub fn progress(&self, keymap: &Keymap) -> Option<RunProgress> {
        let job = self.job.as_ref()?;
        let elapsed = job.started.elapsed().as_secs_f64();
        let rate = (job.done > 0 && elapsed > 0.0).then(|| job.done as f64 / elapsed);
        let eta = match (rate, job.total) {
            (Some(r), Some(total)) if r > 0.0 => Some(Duration::from_secs_f64(
                total.saturating_sub(job.done) as f64 / r,
            )),
            _ => None,
        };
        Some(RunProgress {
            scope: job.scope,
            run_name: job.run_name.clone(),
            done: job.done,
            total: job.total,
            failed: job.failed,
            proposals: job.proposals,
            images_per_second: rate,
            eta,
            cancelling: job.cancel.load(Ordering::Relaxed),
            cancel_keys: keymap.label(Action::CancelModelRun),
        })
    }
}

impl Drop for ModelRunner {
    /// Closing the project stops its run after the image in flight (what is stored stays).
    fn drop(&mut self) {
        if let Some(job) = &self.job {
            job.cancel.store(true, Ordering::SeqCst);
        }
    }
}

/// The descriptor (a preset, the `.toml` beside the model, or its metadata) and the model.
fn load_detector(
    choice: &RecentModel,
    provider: ProviderChoice,
) -> Result<Detector, InferenceError> {
    // Without the runtime every model fails; say that rather than something about the file.
    inference::runtime_info()?;
    let descriptor = match &choice.preset {
        Some(p) => ModelDescriptor::preset(p)?,
        None => ModelDescriptor::load(&choice.path, &inference::DescriptorOverrides::default())?,
    };
    // The same split of the cores as `loupe prelabel` (sessions side by side, their threads
    // block rather than spin between operators, so the UI keeps its share).
    let split = inference::SessionOptions::for_model(&choice.path, 0, 0).with_provider(provider);
    Detector::load_with(&choice.path, descriptor, split)
}

/// The run thread: plans, runs and reports each stored image with its boxes.
fn run(
    project_path: &Path,
    user: Option<&str>,
    detector: &Detector,
    images: Vec<Uuid>,
    cancel: Arc<AtomicBool>,
    tx: &Sender<Msg>,
    ctx: &egui::Context,
) -> anyhow::Result<RunSummary> {
    let mut project = Project::open(project_path)?;
    // A second connection reads back each image's boxes for the canvas while the first writes.
    let mut reader = Project::open(project_path)?;
    if let Some(user) = user {
        project.act_as(user)?;
        reader.act_as(user)?;
    }
    let plan = inference::plan_run(
        &mut project,
        detector,
        &RunName::Auto,
        &Selection::Images(images),
        None,
    )?;
    let _ = tx.send(Msg::Planned {
        run_name: plan.run_name.clone(),
        total: plan.items.len(),
        skipped: plan.skipped,
    });
    ctx.request_repaint();
    let tx = tx.clone();
    let ctx = ctx.clone();
    let summary = inference::execute_run(
        &mut project,
        detector,
        plan,
        PipelineOptions {
            threads: 1,
            cancel,
            ..PipelineOptions::default()
        },
        move |event| {
            let msg = match event {
                RunEvent::Stored {
                    image, proposals, ..
                } => match reader.annotations_for_image(image) {
                    Ok(boxes) => Msg::Stored {
                        image,
                        boxes,
                        proposals,
                    },
                    Err(e) => Msg::ImageFailed {
                        error: format!("stored, but cannot read back: {e}"),
                    },
                },
                RunEvent::Failed { error, .. } => Msg::ImageFailed {
                    error: error.to_string(),
                },
            };
            let _ = tx.send(msg);
            ctx.request_repaint();
        },
    )?;
    Ok(summary)
}

fn finished_message(job: &Job, result: &Result<RunSummary, String>) -> String {
    let name = job.run_name.as_deref().unwrap_or("model run");
    match result {
        Err(e) => format!("Model run failed: {e}"),
        Ok(s) => {
            let mut m = format!("Run {name}: {} images, {} proposals", s.stored, s.proposals);
            if job.skipped > 0 {
                m.push_str(&format!(", {} already done by this model", job.skipped));
            }
            if s.failed > 0 {
                m.push_str(&format!(", {} failed", s.failed));
                if let Some(e) = &job.last_error {
                    m.push_str(&format!(" (last: {e})"));
                }
            }
            if s.cancelled {
                m.push_str("; cancelled (run again to resume)");
            }
            m
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// "picodet · 608×800 · 10 classes · score ≥ 0.50".
fn describe(detector: &Detector) -> String {
    let d = detector.descriptor();
    format!(
        "{} · {}×{} · {} classes · score ≥ {:.2}",
        d.decoder.as_str(),
        d.input_width,
        d.input_height,
        detector.class_names().len(),
        d.score_threshold
    )
}

/// What the model menu needs besides the runner.
pub struct ModelMenuInput<'a> {
    pub runner: &'a ModelRunner,
    pub has_image: bool,
    /// Images in the filtered list.
    pub queue: usize,
}

fn command_button(
    ui: &mut Ui,
    enabled: bool,
    label: &str,
    keymap: &Keymap,
    action: Action,
    command: ModelCommand,
    out: &mut Vec<Command>,
) {
    let button = egui::Button::new(label).shortcut_text(keymap.label(action));
    if ui
        .add_enabled(enabled, button)
        .on_hover_text(keymap.tooltip(action))
        .clicked()
    {
        out.push(Command::Model(command));
        ui.close();
    }
}

/// The "Model" menu of the top bar.
pub fn menu_ui(ui: &mut Ui, input: &ModelMenuInput<'_>, keymap: &Keymap, out: &mut Vec<Command>) {
    ui.menu_button("Model", |ui| {
        ui.set_min_width(300.0);
        let runner = input.runner;
        match &runner.runtime {
            RuntimeState::Checking => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Looking for ONNX Runtime…");
                });
            }
            RuntimeState::Found(info) => {
                ui.label(
                    RichText::new(format!("ONNX Runtime {}", info.version)).color(theme::TEXT_WEAK),
                )
                .on_hover_text(info.path.display().to_string());
            }
            RuntimeState::Missing(why) => {
                ui.label(
                    RichText::new("ONNX Runtime not found")
                        .color(theme::ERROR)
                        .strong(),
                );
                ui.add(egui::Label::new(RichText::new(why).small()).wrap());
                if ui.button("Look again").clicked() {
                    out.push(Command::Model(ModelCommand::CheckRuntime));
                }
            }
        }
        ui.separator();
        match &runner.model {
            ModelState::None => {
                ui.label(RichText::new("No model chosen").color(theme::TEXT_WEAK));
            }
            ModelState::Loading(choice) => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(format!("Loading {}…", choice.label()));
                });
            }
            ModelState::Ready { choice, detector } => {
                ui.label(RichText::new(choice.label()).strong())
                    .on_hover_text(choice.path.display().to_string());
                ui.label(RichText::new(describe(detector)).color(theme::TEXT_WEAK));
                let classes = detector.class_names().join(", ");
                ui.add(
                    egui::Label::new(RichText::new(format!("Classes: {classes}")).small()).wrap(),
                );
            }
            ModelState::Failed {
                choice,
                error,
                needs_descriptor,
            } => {
                ui.label(RichText::new(choice.label()).strong());
                ui.add(egui::Label::new(RichText::new(error).color(theme::ERROR).small()).wrap());
                if *needs_descriptor {
                    ui.label("Use a built-in descriptor:");
                    for preset in PRESETS {
                        if ui.button(*preset).clicked() {
                            out.push(Command::Model(ModelCommand::UsePreset(
                                (*preset).to_owned(),
                            )));
                            ui.close();
                        }
                    }
                }
            }
        }
        let free = !runner.is_running();
        if ui
            .add_enabled(free, egui::Button::new("Choose model…"))
            .clicked()
        {
            out.push(Command::Model(ModelCommand::ChooseDialog));
            ui.close();
        }
        if !runner.recent.is_empty() {
            ui.add_enabled_ui(free, |ui| {
                ui.menu_button("Recent models", |ui| {
                    for m in &runner.recent {
                        if ui
                            .button(m.label())
                            .on_hover_text(m.path.display().to_string())
                            .clicked()
                        {
                            out.push(Command::Model(ModelCommand::Use(m.clone())));
                            ui.close();
                        }
                    }
                });
            });
        }
        provider_menu_ui(ui, runner, free, out);
        slice_menu_ui(ui, runner, free, out);
        ui.separator();
        let ready = matches!(runner.model, ModelState::Ready { .. }) && free;
        command_button(
            ui,
            ready && input.has_image,
            "Run on this image",
            keymap,
            Action::RunModelOnImage,
            ModelCommand::RunOnImage,
            out,
        );
        command_button(
            ui,
            ready && input.queue > 0,
            &format!("Run on the filtered queue ({} images)", input.queue),
            keymap,
            Action::RunModelOnQueue,
            ModelCommand::RunOnQueue,
            out,
        );
        command_button(
            ui,
            runner.is_running(),
            "Cancel the run",
            keymap,
            Action::CancelModelRun,
            ModelCommand::Cancel,
            out,
        );
    });
}

/// Window sizes the Model menu offers for sliced runs.
const SLICE_SIZES: [u32; 3] = [640, 800, 1024];

/// "Slicing" in the Model menu: each image whole, or cut into windows (with or without one
/// whole-image pass), for small objects in big images.
fn slice_menu_ui(ui: &mut Ui, runner: &ModelRunner, free: bool, out: &mut Vec<Command>) {
    let current = runner.slice;
    let label = match current {
        Some(s) => format!("Slicing: {}x{} windows", s.width, s.height),
        None => "Slicing: whole image".to_owned(),
    };
    ui.add_enabled_ui(free, |ui| {
        ui.menu_button(label, |ui| {
            if ui.radio(current.is_none(), "Whole image").clicked() {
                out.push(Command::Model(ModelCommand::SetSlice(None)));
                ui.close();
            }
            for side in SLICE_SIZES {
                let chosen = current.is_some_and(|s| s.width == side && s.height == side);
                let text = format!("Windows of {side}x{side}, overlap 0.2");
                if ui.radio(chosen, text).clicked() {
                    let full_pass = current.is_some_and(|s| s.full_pass);
                    out.push(Command::Model(ModelCommand::SetSlice(Some(
                        inference::SliceSettings {
                            full_pass,
                            ..inference::SliceSettings::new(side, side)
                        },
                    ))));
                    ui.close();
                }
            }
            if let Some(s) = current {
                let mut full = s.full_pass;
                if ui
                    .checkbox(&mut full, "Plus one whole-image pass")
                    .changed()
                {
                    out.push(Command::Model(ModelCommand::SetSlice(Some(
                        inference::SliceSettings {
                            full_pass: full,
                            ..s
                        },
                    ))));
                }
            }
        });
    });
}

/// "Execution provider" in the Model menu: auto or one provider, and what runs now.
fn provider_menu_ui(ui: &mut Ui, runner: &ModelRunner, free: bool, out: &mut Vec<Command>) {
    ui.add_enabled_ui(free, |ui| {
        ui.menu_button(format!("Execution provider: {}", runner.provider), |ui| {
            for choice in ProviderChoice::all() {
                let text = match choice {
                    ProviderChoice::Auto => "auto (GPU when available, else CPU)".to_owned(),
                    ProviderChoice::Only(p) => p.label().to_owned(),
                };
                if ui
                    .selectable_label(runner.provider == choice, text)
                    .clicked()
                {
                    out.push(Command::Model(ModelCommand::SetProvider(choice)));
                    ui.close();
                }
            }
        });
    });
    if let ModelState::Ready { detector, .. } = &runner.model {
        let report = detector.provider();
        let label = ui.label(
            RichText::new(format!("Runs on {}", report.used.label())).color(theme::TEXT_WEAK),
        );
        if let Some(why) = report.fallback_reason() {
            label.on_hover_text(why);
        }
    }
}

/// The execution provider in the status bar: "model on CPU", with the fallback reason (if a
/// better provider was skipped) in the hover text and in the warning colour.
pub fn provider_status_ui(ui: &mut Ui, used: &str, fallback: Option<&str>) {
    let text = RichText::new(format!("model on {used}"));
    match fallback {
        Some(why) => {
            ui.label(text.color(theme::BUSY))
                .on_hover_text(format!("Fell back to {used}: {why}"));
        }
        None => {
            ui.label(text.color(theme::TEXT_WEAK))
                .on_hover_text("The execution provider the model runs on");
        }
    }
}

/// The run's progress in the status bar (laid out right to left): Cancel, a bar, the figures.
pub fn progress_ui(ui: &mut Ui, p: &RunProgress, out: &mut Vec<Command>) {
    let cancel = ui
        .add_enabled(!p.cancelling, egui::Button::new("Cancel"))
        .on_hover_text(format!("Cancel the model run ({})", p.cancel_keys));
    if cancel.clicked() {
        out.push(Command::Model(ModelCommand::Cancel));
    }
    let mut text = match p.total {
        None => "preparing…".to_owned(),
        Some(total) => format!("{} of {total}", p.done),
    };
    if let Some(rate) = p.images_per_second {
        text.push_str(&format!(" · {rate:.1} img/s"));
    }
    if let Some(eta) = p.eta {
        let s = eta.as_secs();
        text.push_str(&format!(" · ETA {}:{:02}", s / 60, s % 60));
    }
    if p.failed > 0 {
        text.push_str(&format!(" · {} failed", p.failed));
    }
    let fraction = match p.total {
        Some(t) if t > 0 => p.done as f32 / t as f32,
        _ => 0.0,
    };
    let what = match (p.cancelling, p.scope) {
        (true, _) => "cancelling",
        (false, RunScope::Image) => "model, this image",
        (false, RunScope::Queue) => "model, queue",
    };
    ui.add(
        egui::ProgressBar::new(fraction)
            .desired_width(300.0)
            .text(RichText::new(format!("{what}: {text}")).color(theme::BUSY)),
    )
    .on_hover_text(format!(
        "Run {}: {} proposals so far",
        p.run_name.as_deref().unwrap_or("…"),
        p.proposals
    ));
}
