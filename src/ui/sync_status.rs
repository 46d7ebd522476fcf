//! Sync in the app: a background thread with its own connection to the project that pushes then
//! pulls (`sync::sync_with`) on a timer, soon after edits (debounced) and when asked ("Sync
//! now"), backs off while the shared store cannot be reached, and reports what it sees (pending
//! revisions, conflicts, refusals, the last error in plain words) over a channel polled each
//! frame. Also the status-bar indicator, the details window, the conflict panel and the overlay
//! that draws every head of a box in conflict on the canvas.
//!
//! The thread never touches the app's in-memory document: after a pull that brought revisions,
//! the session reloads images without edits (`Session::after_pull`). Conflict resolutions go
//! through the store writer, so they are ordered with the edits made before them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use eframe::egui::{self, Color32, Painter, RichText, Stroke, StrokeKind, Ui};
use uuid::Uuid;

use super::commands::Command;
use super::theme;
use super::viewport::Viewport;
use super::workers;
use crate::ingest::NoProgress;
use crate::model::Role;
use crate::store::{Project, now_ms};
use crate::sync::{self, Conflict, ConflictHead, Refusal, SyncError, SyncOptions, Take};

/// The colour of a box in conflict and of its other values. Distinct from every class colour
/// of the palette and from the proposal violet.
pub const CONFLICT: Color32 = Color32::from_rgb(0xff, 0x8c, 0x1a);

/// How long after opening a project the first automatic sync starts (the window is up first).
const FIRST_SYNC_DELAY: Duration = Duration::from_secs(2);
/// After an edit: sync once edits have stopped for this long…
const EDIT_QUIET: Duration = Duration::from_secs(15);
/// …but no later than this after the first unsynced edit.
const EDIT_MAX_WAIT: Duration = Duration::from_secs(60);
/// After the user leaves an image they edited.
const IMAGE_DONE_DELAY: Duration = Duration::from_secs(2);
/// The longest wait between attempts while the store cannot be reached.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// What the sync panels ask for (applied by `Session::apply`).
#[derive(Clone, Debug, PartialEq)]
pub enum SyncCommand {
    /// Push then pull now.
    Now,
    /// Open or close the details window.
    TogglePanel,
    /// Resolve a box's conflict keeping one value (a new revision, through the store writer).
    Resolve { annotation: Uuid, take: Take },
    /// Show the image of a box in conflict and select the box.
    Show { image: String, annotation: Uuid },
}

/// How the app syncs.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Sync in the background at all (the indicator still shows the state when off).
    pub enabled: bool,
    /// Between automatic syncs when nothing happens.
    pub interval: Duration,
    /// Where the signing key lives (default: `$LOUPE_CONFIG_DIR` or the user's config folder).
    pub key_dir: Option<PathBuf>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(45),
            key_dir: None,
        }
    }
}

/// What the sync thread is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Not looked yet.
    #[default]
    Starting,
    /// Waiting for the next sync (the last one worked, or there is no remote).
    Idle,
    Syncing,
    /// The shared store could not be reached; retrying with backoff.
    Offline,
    /// The last sync failed for another reason (key, roster, project); retrying with backoff.
    Failed,
}

/// What the app knows of sync, as the thread last reported it.
#[derive(Clone, Debug, Default)]
pub struct SyncView {
    /// The remote's name and URL; `None` when the project has no remote.
    pub remote: Option<(String, String)>,
    pub phase: Phase,
    pub last_sync_ms: Option<i64>,
    /// Why the last attempt failed, in plain words.
    pub last_error: Option<String>,
    /// This client's revisions waiting to be pushed.
    pub pending: u64,
    pub conflicts: Vec<Conflict>,
    pub refusals: Vec<Refusal>,
    /// When the next automatic attempt is due (ms since the epoch).
    pub next_attempt_ms: Option<i64>,
    /// The current user is a lead (refusals are listed for leads).
    pub lead: bool,
    /// Sync attempts finished since the app opened the project (tests wait on it).
    pub attempts: u64,
    /// Revisions pulled by the last sync.
    pub last_pulled: usize,
    /// What the last sync could not do cleanly besides refusals, in words a user can act on:
    /// whose revisions are missing, a roster the store holds that does not verify, objects
    /// written past, packs the store lost (see [`problems_of`]).
    pub problems: Vec<String>,
}

impl SyncView {
    /// The indicator's words: "synced 2 min ago · 3 pending · 1 conflict".
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.remote.is_none() {
            parts.push(if self.phase == Phase::Starting {
                "sync…".to_owned()
            } else {
                "not shared".to_owned()
            });
        } else {
            parts.push(match self.phase {
                Phase::Starting => "sync…".to_owned(),
                Phase::Syncing => "syncing…".to_owned(),
                Phase::Offline => "offline".to_owned(),
                Phase::Failed => "sync failed".to_owned(),
                Phase::Idle => match self.last_sync_ms {
                    Some(ms) => format!("synced {}", ago(ms)),
                    None => "never synced".to_owned(),
                },
            });
        }
        if self.pending > 0 {
            parts.push(format!("{} pending", self.pending));
        }
        match self.conflicts.len() {
            0 => {}
            1 => parts.push("1 conflict".into()),
            n => parts.push(format!("{n} conflicts")),
        }
        if !self.refusals.is_empty() {
            parts.push(format!("{} refused", self.refusals.len()));
        }
        match self.problems.len() {
            0 => {}
            1 => parts.push("1 problem".into()),
            n => parts.push(format!("{n} problems")),
        }
        parts.join(" · ")
    }

    fn color(&self) -> Color32 {
        match self.phase {
            _ if !self.conflicts.is_empty() => CONFLICT,
            Phase::Offline | Phase::Failed => theme::ERROR,
            _ if !self.problems.is_empty() => theme::ERROR,
            Phase::Syncing | Phase::Starting => theme::BUSY,
            Phase::Idle if self.remote.is_none() => theme::TEXT_WEAK,
            Phase::Idle if self.pending > 0 => theme::BUSY,
            Phase::Idle => theme::OK,
        }
    }

    /// Conflicts of boxes on the image at `path`.
    pub fn conflicts_on<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a Conflict> + 'a {
        self.conflicts.iter().filter(move |c| c.image == path)
    }

    /// The conflict of one box, if it is in conflict.
    pub fn conflict(&self, annotation: Uuid) -> Option<&Conflict> {
        self.conflicts.iter().find(|c| c.annotation == annotation)
    }
}

/// "12 s ago", "3 min ago".
fn ago(ms: i64) -> String {
    let s = (now_ms() - ms).max(0) / 1000;
    match s {
        0..5 => "just now".into(),
        5..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86400 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86400),
    }
}

/// "in 40 s".
fn from_now(ms: i64) -> String {
    let s = (ms - now_ms()).max(0) / 1000;
    if s < 60 {
        format!("in {s} s")
    } else {
        format!("in {} min", s / 60)
    }
}

/// Work for the sync thread.
#[derive(Debug)]
enum Request {
    /// Sync as soon as possible.
    Now,
    /// An edit is stored: count pending again and sync after a quiet spell.
    Edited,
    /// The user left an image they edited: sync soon.
    ImageDone,
    /// Read the status again (after a resolution).
    Refresh,
}

/// What the sync thread reports.
#[derive(Debug)]
struct Update {
    view: SyncView,
    /// Revisions a sync just pulled (0 for status-only updates).
    pulled: usize,
}

/// The UI's handle on the sync thread, and the sync panels.
pub struct SyncStatus {
    tx: Option<Sender<Request>>,
    rx: Receiver<Update>,
    view: SyncView,
    config: SyncConfig,
    /// Revisions pulled since the session last looked.
    pulled: usize,
    /// The details window is open.
    pub open: bool,
}

impl SyncStatus {
    /// Starts the thread `loupe-sync` on `path`.
    pub fn start(path: &Path, config: SyncConfig, ctx: &egui::Context) -> SyncStatus {
        let (tx, requests) = crossbeam_channel::unbounded();
        let (updates, rx) = crossbeam_channel::unbounded();
        let worker = Worker {
            path: path.to_path_buf(),
            config: config.clone(),
            ctx: ctx.clone(),
            updates,
            view: SyncView::default(),
            failures: 0,
        };
        let thread = workers::spawn(ctx, "loupe-sync", move || worker.run(&requests));
        // The thread is not joined: closing the project drops `tx`, and the thread ends after
        // the sync in progress, if any (each step is a transaction, so stopping anywhere is
        // safe), instead of holding up the window for a slow or unreachable store.
        let (tx, view) = match thread {
            Ok(_detached) => (Some(tx), SyncView::default()),
            Err(e) => (
                None,
                SyncView {
                    phase: Phase::Failed,
                    last_error: Some(format!("cannot start the sync thread: {e}")),
                    ..SyncView::default()
                },
            ),
        };
        SyncStatus {
            tx,
            rx,
            view,
            config,
            pulled: 0,
            open: false,
        }
    }

    /// What the thread last reported.
    pub fn view(&self) -> &SyncView {
        &self.view
    }

    /// Where the signing key lives (for resolutions written by the store writer).
    pub fn key_dir(&self) -> Option<&Path> {
        self.config.key_dir.as_deref()
    }

    fn send(&self, request: Request) {
        if let Some(tx) = &self.tx {
            // A closed channel means the thread is gone; its last report says why.
            let _ = tx.send(request);
        }
    }

    /// Syncs now ("Sync now", its shortcut).
    pub fn sync_now(&mut self) {
        if self.view.phase != Phase::Syncing {
            self.view.phase = Phase::Syncing;
        }
        self.send(Request::Now);
    }

    /// An edit reached the project file.
    pub fn edited(&self) {
        self.send(Request::Edited);
    }

    /// The user moved on from an image they edited.
    pub fn image_done(&self) {
        if self.view.pending > 0 {
            self.send(Request::ImageDone);
        }
    }

    /// A conflict was resolved here: drop it from the view now, read the status again and push
    /// the resolution soon.
    pub fn resolved(&mut self, annotation: Uuid) {
        self.view.conflicts.retain(|c| c.annotation != annotation);
        self.send(Request::Refresh);
        self.send(Request::ImageDone);
    }

    /// Takes the thread's reports without blocking. Returns how many revisions were pulled
    /// since the last call (the session then reloads what it shows).
    pub fn poll(&mut self) -> usize {
        while let Ok(update) = self.rx.try_recv() {
            self.take(update);
        }
        std::mem::take(&mut self.pulled)
    }

    fn take(&mut self, update: Update) {
        self.pulled += update.pulled;
        self.view = update.view;
    }

    /// Blocks until the view satisfies `done` or `timeout` passes; pulled revisions stay for the
    /// next `poll`. For tests; the UI never waits.
    pub fn wait_until(&mut self, timeout: Duration, done: impl Fn(&SyncView) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(&self.view) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(update) => self.take(update),
                Err(_) => return false,
            }
        }
        true
    }

    // ------------------------------------------------------------------ drawing

    /// The status-bar indicator: the summary, a tooltip with the details, a click opens the
    /// details window. Nothing for a project without a remote (most projects never share).
    pub fn indicator_ui(view: &SyncView, ui: &mut Ui, out: &mut Vec<Command>) {
        if view.remote.is_none() {
            return;
        }
        let text = format!("• {}", view.summary());
        let response = ui
            .add(egui::Button::new(RichText::new(text).color(view.color())).frame(false))
            .on_hover_ui(|ui| details_ui(ui, view));
        if response.clicked() {
            out.push(Command::Sync(SyncCommand::TogglePanel));
        }
    }

    /// The details window (remote, last sync, last error, pending, conflicts, refusals).
    pub fn window_ui(&mut self, ctx: &egui::Context, out: &mut Vec<Command>) {
        if !self.open {
            return;
        }
        let mut open = self.open;
        egui::Window::new("Sync")
            .open(&mut open)
            .default_width(460.0)
            .collapsible(false)
            .show(ctx, |ui| {
                details_ui(ui, &self.view);
                ui.add_space(6.0);
                let busy = self.view.phase == Phase::Syncing;
                if ui
                    .add_enabled(
                        self.view.remote.is_some() && !busy,
                        egui::Button::new("Sync now"),
                    )
                    .clicked()
                {
                    out.push(Command::Sync(SyncCommand::Now));
                }
                if !self.view.conflicts.is_empty() {
                    ui.separator();
                    ui.label(RichText::new("Boxes in conflict").strong());
                    egui::ScrollArea::vertical()
                        .id_salt("sync-conflicts")
                        .max_height(180.0)
                        .show(ui, |ui| {
                            for c in &self.view.conflicts {
                                ui.horizontal(|ui| {
                                    let heads: Vec<String> = c
                                        .heads
                                        .iter()
                                        .map(|h| format!("{} by {}", h.label, h.author))
                                        .collect();
                                    ui.label(format!("{}: {}", c.image, heads.join(", ")));
                                    if ui.small_button("Show").clicked() {
                                        out.push(Command::Sync(SyncCommand::Show {
                                            image: c.image.clone(),
                                            annotation: c.annotation,
                                        }));
                                    }
                                });
                            }
                        });
                }
                if !self.view.problems.is_empty() {
                    ui.separator();
                    ui.label(
                        RichText::new(format!("Problems ({})", self.view.problems.len())).strong(),
                    );
                    egui::ScrollArea::vertical()
                        .id_salt("sync-problems")
                        .max_height(160.0)
                        .show(ui, |ui| {
                            for p in &self.view.problems {
                                ui.label(RichText::new(p).color(theme::ERROR));
                            }
                        });
                }
                if !self.view.refusals.is_empty() {
                    ui.separator();
                    refusals_ui(ui, &self.view);
                }
            });
        self.open = open;
    }
}

/// Remote, state, last sync, last error, pending.
fn details_ui(ui: &mut Ui, view: &SyncView) {
    egui::Grid::new("sync-details")
        .num_columns(2)
        .spacing([12.0, 4.0])
        .show(ui, |ui| {
            ui.label(RichText::new("Shared store").color(theme::TEXT_WEAK));
            match &view.remote {
                Some((name, url)) => ui.label(format!("{name}: {url}")),
                None => ui.label("none: add one with `loupe remote add origin URL`"),
            };
            ui.end_row();
            ui.label(RichText::new("State").color(theme::TEXT_WEAK));
            ui.label(match view.phase {
                Phase::Starting => "starting",
                Phase::Idle => "waiting",
                Phase::Syncing => "syncing",
                Phase::Offline => "offline (the shared store cannot be reached)",
                Phase::Failed => "the last sync failed",
            });
            ui.end_row();
            ui.label(RichText::new("Last sync").color(theme::TEXT_WEAK));
            ui.label(view.last_sync_ms.map_or_else(|| "never".into(), ago));
            ui.end_row();
            if let Some(next) = view.next_attempt_ms
                && view.remote.is_some()
            {
                ui.label(RichText::new("Next sync").color(theme::TEXT_WEAK));
                ui.label(from_now(next));
                ui.end_row();
            }
            ui.label(RichText::new("Pending").color(theme::TEXT_WEAK));
            ui.label(format!("{} revision(s) to push", view.pending));
            ui.end_row();
            ui.label(RichText::new("Conflicts").color(theme::TEXT_WEAK));
            ui.label(view.conflicts.len().to_string());
            ui.end_row();
            if let Some(e) = &view.last_error {
                ui.label(RichText::new("Last error").color(theme::TEXT_WEAK));
                ui.label(RichText::new(e).color(theme::ERROR));
                ui.end_row();
            }
        });
}

/// Refused packs and revisions, with the reasons: listed for leads, counted for others.
fn refusals_ui(ui: &mut Ui, view: &SyncView) {
    ui.label(RichText::new(format!("Refused ({})", view.refusals.len())).strong());
    if !view.lead {
        ui.label(
            RichText::new("A lead sees the reasons here; ask one to look.").color(theme::TEXT_WEAK),
        );
        return;
    }
    egui::ScrollArea::vertical()
        .id_salt("sync-refusals")
        .max_height(200.0)
        .show(ui, |ui| {
            for r in &view.refusals {
                let what = match r.annotation {
                    Some(a) => format!("box {a}"),
                    None => format!("pack {} of client {}", r.seq, r.client),
                };
                ui.label(RichText::new(format!("{what}, {}", ago(r.at_ms))).strong());
                ui.label(format!("signed by {}", r.signer));
                ui.label(RichText::new(&r.reason).color(theme::ERROR));
                ui.add_space(4.0);
            }
        });
}

/// A head's value in a few words.
fn head_text(h: &ConflictHead) -> String {
    if h.deleted {
        return format!("{}: deleted by {}", h.label, h.author);
    }
    format!(
        "{}: {} at {:.0},{:.0} {:.0}×{:.0}, {}, by {}",
        h.label,
        h.class,
        h.bbox.x,
        h.bbox.y,
        h.bbox.w,
        h.bbox.h,
        h.state.as_str(),
        h.author
    )
}

/// The conflicts of the current image with a button per value to keep; drawn under the box
/// list. `saved` is false while edits are on their way to the store ("Keep as shown" waits).
pub fn conflicts_panel_ui<'a>(
    ui: &mut Ui,
    conflicts: impl Iterator<Item = &'a Conflict>,
    selected: Option<Uuid>,
    saved: bool,
    out: &mut Vec<Command>,
) {
    let conflicts: Vec<&Conflict> = conflicts.collect();
    if conflicts.is_empty() {
        return;
    }
    ui.separator();
    ui.label(
        RichText::new(format!("{} box(es) in conflict", conflicts.len()))
            .color(CONFLICT)
            .strong(),
    );
    ui.label(
        RichText::new("Edited concurrently by different people. Keep one value, or correct the box and keep it as shown.")
            .color(theme::TEXT_WEAK)
            .small(),
    );
    for c in conflicts {
        ui.add_space(4.0);
        let mut frame = egui::Frame::group(ui.style());
        if selected == Some(c.annotation) {
            frame = frame.stroke(Stroke::new(1.5, CONFLICT));
        }
        frame.show(ui, |ui| {
            for h in &c.heads {
                ui.horizontal(|ui| {
                    if ui
                        .button(format!("Keep {}", h.label))
                        .on_hover_text(format!(
                            "Resolve the conflict with {}'s value (a new revision)",
                            h.author
                        ))
                        .clicked()
                    {
                        out.push(Command::Sync(SyncCommand::Resolve {
                            annotation: c.annotation,
                            take: Take::Head(h.label.clone()),
                        }));
                    }
                    ui.label(head_text(h));
                });
            }
            ui.horizontal(|ui| {
                if ui
                    .add_enabled(saved, egui::Button::new("Keep as shown"))
                    .on_hover_text("Resolve with the box as the canvas shows it (after your edits)")
                    .clicked()
                {
                    out.push(Command::Sync(SyncCommand::Resolve {
                        annotation: c.annotation,
                        take: Take::Current,
                    }));
                }
                if ui.button("Select").clicked() {
                    out.push(Command::Select(Some(c.annotation)));
                }
            });
        });
    }
}

/// Draws every value of the boxes in conflict on the canvas: a dashed outline per head in the
/// conflict colour, tagged with its label and author, so both values are visible at once.
pub fn paint_conflicts<'a>(
    painter: &Painter,
    viewport: &Viewport,
    conflicts: impl Iterator<Item = &'a Conflict>,
) {
    let font = theme::label_font();
    for c in conflicts {
        // Tags side by side under their outlines, so heads at the same place stay readable.
        let mut tag_x: Option<f32> = None;
        for h in c.heads.iter().filter(|h| !h.deleted) {
            let r = viewport.screen_from_bbox(&h.bbox);
            let stroke = Stroke::new(theme::SELECTED_STROKE, CONFLICT);
            painter.rect_stroke(
                r.expand(2.0),
                0.0,
                Stroke::new(1.0, Color32::from_black_alpha(140)),
                StrokeKind::Middle,
            );
            dashed(painter, r.expand(2.0), stroke);
            let text = format!("{} {}: {}", h.label, h.author, h.class);
            let galley = painter.layout_no_wrap(text, font.clone(), Color32::BLACK);
            let size = galley.size() + egui::vec2(6.0, 2.0);
            let left = tag_x.map_or(r.left(), |x| x.max(r.left()));
            let tag = egui::Rect::from_min_size(egui::pos2(left, r.bottom() + 3.0), size);
            tag_x = Some(tag.right() + 4.0);
            painter.rect_filled(tag, 2.0, CONFLICT);
            painter.galley(tag.min + egui::vec2(3.0, 1.0), galley, Color32::BLACK);
        }
    }
}

fn dashed(painter: &Painter, r: egui::Rect, stroke: Stroke) {
    let corners = [
        r.left_top(),
        r.right_top(),
        r.right_bottom(),
        r.left_bottom(),
        r.left_top(),
    ];
    for pair in corners.windows(2) {
        painter.extend(egui::Shape::dashed_line(
            pair,
            stroke,
            theme::DASH,
            theme::DASH_GAP,
        ));
    }
}

// ---------------------------------------------------------------------- the thread

struct Worker {
    path: PathBuf,
    config: SyncConfig,
    ctx: egui::Context,
    updates: Sender<Update>,
    view: SyncView,
    /// Failed attempts in a row (for the backoff).
    failures: u32,
}

impl Worker {
    fn run(mut self, requests: &Receiver<Request>) {
        let project = match Project::open(&self.path) {
            Ok(p) => p,
            Err(e) => {
                self.view.phase = Phase::Failed;
                self.view.last_error = Some(format!("cannot open the project for sync: {e}"));
                self.report(0);
                return;
            }
        };
        let mut due = Instant::now() + FIRST_SYNC_DELAY;
        let mut backoff = self.config.interval;
        let mut first_edit: Option<Instant> = None;
        self.refresh(&project);
        self.view.phase = Phase::Idle;
        self.report(0);
        loop {
            let wait = due.saturating_duration_since(Instant::now());
            let request = match requests.recv_timeout(wait) {
                Ok(r) => Some(r),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let now = Instant::now();
            let backing_off = matches!(self.view.phase, Phase::Offline | Phase::Failed);
            match request {
                Some(Request::Now) => due = now,
                Some(Request::Edited) => {
                    self.refresh(&project);
                    self.report(0);
                    let first = *first_edit.get_or_insert(now);
                    if !backing_off {
                        due = due.min((now + EDIT_QUIET).min(first + EDIT_MAX_WAIT));
                    }
                }
                Some(Request::ImageDone) if !backing_off => {
                    due = due.min(now + IMAGE_DONE_DELAY);
                }
                Some(Request::ImageDone) => {}
                Some(Request::Refresh) => {
                    self.refresh(&project);
                    self.report(0);
                }
                None => {}
            }
            if Instant::now() < due {
                continue;
            }
            if !self.config.enabled && !matches!(request, Some(Request::Now)) {
                // Background sync is off: only "Sync now" syncs.
                due = Instant::now() + self.config.interval;
                continue;
            }
            let pulled = self.sync_once(&project, &mut backoff);
            first_edit = None;
            due = Instant::now() + backoff;
            self.view.next_attempt_ms =
                Some(now_ms() + i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX));
            self.refresh(&project);
            self.report(pulled);
        }
    }

    /// One push-then-pull; returns the revisions pulled and sets the next backoff.
    fn sync_once(&mut self, project: &Project, backoff: &mut Duration) -> usize {
        let remote = match project.sync_remote(None) {
            Ok(r) => r,
            Err(e) => {
                // No remote (or several and none is `origin`): nothing to do, look again later.
                self.view.remote = None;
                self.view.phase = Phase::Idle;
                self.view.last_error = match e {
                    SyncError::Config(m) if !m.starts_with("no remote configured") => Some(m),
                    _ => None,
                };
                *backoff = self.config.interval;
                return 0;
            }
        };
        self.view.remote = Some((remote.name.clone(), remote.spec.url.clone()));
        self.view.phase = Phase::Syncing;
        self.report(0);
        let options = SyncOptions {
            remote: Some(remote.name.clone()),
            config_dir: self.config.key_dir.clone(),
            ..SyncOptions::default()
        };
        let result = sync::sync_with(&self.path, &options, &NoProgress);
        self.view.attempts += 1;
        match result {
            Ok(report) => {
                self.view.phase = Phase::Idle;
                self.view.last_error = None;
                self.view.last_pulled = report.pulled_revisions;
                self.view.problems = problems_of(&report);
                for p in &self.view.problems {
                    tracing::warn!("sync: {p}");
                }
                self.failures = 0;
                *backoff = self.config.interval;
                if !report.refused.is_empty() {
                    tracing::warn!(
                        "sync refused {} pack(s) or revision(s)",
                        report.refused.len()
                    );
                }
                report.pulled_revisions
            }
            Err(e) => {
                let offline = matches!(e, SyncError::Store { .. } | SyncError::Io { .. });
                self.view.phase = if offline {
                    Phase::Offline
                } else {
                    Phase::Failed
                };
                self.view.last_error = Some(plain_words(&e, &remote.spec.url));
                tracing::warn!("sync with {}: {e}", remote.spec.url);
                // Back off: 1, 2, 4, … times the interval, at most MAX_BACKOFF.
                self.failures = self.failures.saturating_add(1);
                let factor = 1u32 << (self.failures - 1).min(6);
                *backoff = (self.config.interval * factor)
                    .min(MAX_BACKOFF)
                    .max(Duration::from_secs(1));
                0
            }
        }
    }

    /// Reads pending, conflicts, refusals and the last sync from the project file.
    fn refresh(&mut self, project: &Project) {
        let result = (|| -> Result<(), SyncError> {
            self.view.lead = project.current_user()?.role == Role::Lead;
            self.view.conflicts = project.sync_conflicts()?;
            match project.sync_remote(None) {
                Ok(remote) => {
                    self.view.pending = project.sync_pending_count(&remote)?;
                    self.view.last_sync_ms = remote.last_sync_ms;
                    self.view.refusals = project.sync_refusals(Some(&remote.name))?;
                    self.view.remote = Some((remote.name, remote.spec.url));
                }
                Err(_) => {
                    self.view.remote = None;
                    self.view.pending = 0;
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            self.view.last_error = Some(format!("cannot read the sync state: {e}"));
        }
    }

    fn report(&self, pulled: usize) {
        let _ = self.updates.send(Update {
            view: self.view.clone(),
            pulled,
        });
        self.ctx.request_repaint();
    }
}

/// What a sync that worked could not do cleanly, one sentence each (refusals are listed apart,
/// from the project's log). `loupe sync` prints the same report and exits non-zero for these.
pub fn problems_of(report: &sync::SyncReport) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = &report.roster_problem {
        out.push(format!(
            "The shared store's roster was not used: {p}. Working with the last roster verified here."
        ));
    }
    for held in &report.held_back {
        out.push(format!("Missing revisions: {held}."));
    }
    for lost in &report.lost {
        out.push(format!(
            "The shared store lost this client's pack {lost} and no copy is kept here: others lack those revisions."
        ));
    }
    if report.refused_own > 0 {
        out.push(format!(
            "{} of your revisions were refused by the team's rules for your role (others will not see them).",
            report.refused_own
        ));
    }
    for past in &report.written_past {
        out.push(format!(
            "Another object sat where this client writes next; written past it: {past}."
        ));
    }
    out
}

/// A sync error as a sentence a user can act on.
fn plain_words(e: &SyncError, url: &str) -> String {
    match e {
        SyncError::Store { source, .. } => {
            let detail = source.to_string();
            let first = detail.lines().next().unwrap_or_default();
            format!(
                "Cannot reach the shared store {url}. Working offline; edits are kept and pushed later. ({first})"
            )
        }
        SyncError::Io { path, source } => format!(
            "Cannot use the shared folder {}: {source}. Working offline; edits are kept and pushed later.",
            path.display()
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_what_matters() {
        let mut v = SyncView {
            remote: Some(("origin".into(), "file:///x".into())),
            phase: Phase::Idle,
            last_sync_ms: Some(now_ms()),
            ..SyncView::default()
        };
        assert_eq!(v.summary(), "synced just now");
        v.pending = 3;
        assert_eq!(v.summary(), "synced just now · 3 pending");
        v.phase = Phase::Offline;
        assert_eq!(v.summary(), "offline · 3 pending");
        v.remote = None;
        v.phase = Phase::Idle;
        v.pending = 0;
        assert_eq!(v.summary(), "not shared");
    }
}
