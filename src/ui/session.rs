//! An open project in the app: the panels, the in-memory document, the background threads
//! (store writer, decoders, thumbnails), and `apply`, the one place where commands change
//! anything.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use eframe::egui::{self, Color32, Key, Ui};
use uuid::Uuid;

use super::bars::{StatusBar, StatusInput, TopBar, TopBarInput};
use super::box_list::{BoxPanel, BoxPanelInput};
use super::box_tools;
use super::canvas::{Canvas, CanvasImage, CanvasInput, Display, canvas_id};
use super::classes::{ClassPicker, ClassTable, PickerTarget, Thresholds};
use super::commands::Command;
use super::document::{Change, Document, TagChange, edited_state};
use super::gpu::GpuContext;
use super::image_list::ImageList;
use super::lead::{DetailsInput, LeadCommand, LeadEffect, LeadInput, LeadViews, Mode};
use super::loader::{Job, Loader, Slot};
use super::model_run::{ModelCommand, ModelMenuInput, ModelRunner, ModelUpdate, RunContext};
use super::reading::{WindowChoice, WindowMemory, WindowPanel, WindowPanelOutcome, window_choices};
use super::shortcuts::{Action, KeyPress, Keymap, take_bound_keys};
use super::sync_status::{self, SyncCommand, SyncConfig, SyncStatus};
use super::theme;
use super::thumbs::Thumbnails;
use super::time_log::{Clock, TimeLog, Visit};
use super::writer::{Reply, Request, StoreWriter};
use crate::formats::Format;
use crate::model::{Annotation, AnnotationValue, Attributes, BBox, BoxFlags, ReviewState, Source};
use crate::review::similar::Target;
use crate::stacks::{INTERPOLATION_RUN, TRACK};
use crate::store::{ImageFilter, ImageRow, Project};

/// Images decoded ahead of the current one (after it, in list order).
const PREFETCH_AHEAD: usize = 2;
/// Images kept decoded behind the current one.
const PREFETCH_BEHIND: usize = 1;

/// The image on the canvas.
#[derive(Clone, Debug, PartialEq)]
pub struct Current {
    pub id: Uuid,
    /// Path relative to the project root.
    pub path: String,
    pub width: u32,
    pub height: u32,
    /// Its row in the filtered list; `None` when the filter excludes it (e.g. after an undo
    /// jumped back to it).
    pub row: Option<usize>,
}

/// Commands the session leaves to the app (they replace or close the session).
#[derive(Clone, Debug, PartialEq)]
pub enum AppRequest {
    OpenProjectDialog,
    NewProjectDialog,
    OpenProject(PathBuf),
    CloseProject,
    ToggleHelp,
    /// Open the settings window.
    OpenSettings,
    /// A model loaded: put it first in the recent models.
    RememberModel(super::model_run::RecentModel),
    /// The execution provider was chosen in the Model menu.
    RememberProvider(crate::inference::ProviderChoice),
}

/// One open project.
pub struct Session {
    path: PathBuf,
    name: String,
    reader: Project,
    writer: StoreWriter,
    loader: Loader,
    thumbs: Thumbnails,
    classes: ClassTable,
    version: Option<String>,
    run: Option<String>,
    list: ImageList,
    current: Option<Current>,
    doc: Document,
    /// A pull brought revisions that images edited here have not re-read yet.
    refresh_after_pull: bool,
    canvas: Canvas,
    box_panel: BoxPanel,
    top_bar: TopBar,
    picker: ClassPicker,
    thresholds: Thresholds,
    selected: Option<Uuid>,
    current_class: Option<Uuid>,
    /// Classes asked of the writer, and what to do with each once it exists.
    pending_classes: Vec<(String, PickerTarget)>,
    /// A box drawn before any class existed; created once a class is picked.
    pending_box: Option<BBox>,
    /// Drawn boxes snap to the proposal of their class they overlap well (`S`).
    snap: bool,
    /// Space was pressed; it acts on release unless it was used to pan.
    space_pending: bool,
    /// Flags set or cleared this session (the store may not have them yet).
    flags: std::collections::HashMap<Uuid, bool>,
    /// The comment dialog of a return.
    return_dialog: super::return_dialog::ReturnDialog,
    /// Whether an image has the `done` tag, as this session last set it.
    done: std::collections::HashMap<Uuid, bool>,
    /// Physical pixels per point, for 1:1 zoom.
    ppp: f32,
    /// Images decoded ahead of and behind the current one.
    prefetch: (usize, usize),
    /// The image to show once the first list arrives.
    start_image: Option<String>,
    message: Option<String>,
    /// Background threads that panicked (shown in the status bar until the project closes).
    worker_deaths: Vec<super::workers::WorkerDeath>,
    /// The data-loop views (triage, evaluation, dashboard, box history, metadata, profile).
    lead: LeadViews,
    /// The detection model and its runs.
    model: ModelRunner,
    /// Background sync with the shared store and its panels.
    sync: SyncStatus,
    /// Windows remembered per series and per modality.
    windows: WindowMemory,
    /// The image whose remembered display the canvas shows.
    display_for: Option<Uuid>,
    /// Window mode's panel.
    window_panel: WindowPanel,
    /// Cine playback of the stack: when the last frame was shown.
    cine: Option<Instant>,
    /// A box whose track waits for the interpolation run to exist.
    pending_interpolation: Option<Uuid>,
    /// The visit of the current image: active time, actions, key presses.
    time: TimeLog,
}

/// Frames per second of cine playback.
const CINE_FPS: f64 = 8.0;

impl Session {
    /// Opens a project: a read connection here, a writer thread with its own connection,
    /// decoding and thumbnail threads, and the first image list request.
    /// `start_image` (a path in the project) is shown first when the list has it.
    pub fn open(
        path: &Path,
        ctx: &egui::Context,
        gpu: Option<GpuContext>,
        start_image: Option<String>,
    ) -> anyhow::Result<Session> {
        Self::open_with(path, ctx, gpu, start_image, SyncConfig::default())
    }

    /// [`Session::open`] with how to sync (tests give their own signing-key folder).
    pub fn open_with(
        path: &Path,
        ctx: &egui::Context,
        gpu: Option<GpuContext>,
        start_image: Option<String>,
        sync: SyncConfig,
    ) -> anyhow::Result<Session> {
        let reader = Project::open(path)?;
        let writer = StoreWriter::start(path.to_path_buf(), ctx.clone())
            .with_context(|| format!("cannot start writing to {}", path.display()))?;
        let classes = ClassTable::new(reader.classes()?);
        let version = reader.versions()?.last().map(|v| v.name.clone());
        let run = reader.runs()?.last().map(|r| r.name.clone());
        let lead = LeadViews::new(&reader, path, ctx);
        let name = path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        let mut session = Session {
            path: path.to_path_buf(),
            name,
            reader,
            writer,
            loader: Loader::new(gpu, ctx, 2),
            thumbs: Thumbnails::new(ctx),
            current_class: classes.at(0).map(|c| c.id),
            classes,
            version,
            run,
            list: ImageList::default(),
            current: None,
            doc: Document::default(),
            refresh_after_pull: false,
            canvas: Canvas::default(),
            box_panel: BoxPanel::default(),
            top_bar: TopBar,
            picker: ClassPicker::default(),
            thresholds: Thresholds::default(),
            selected: None,
            pending_classes: Vec::new(),
            pending_box: None,
            snap: false,
            space_pending: false,
            flags: std::collections::HashMap::new(),
            done: std::collections::HashMap::new(),
            return_dialog: super::return_dialog::ReturnDialog::default(),
            ppp: ctx.pixels_per_point(),
            prefetch: (PREFETCH_AHEAD, PREFETCH_BEHIND),
            start_image,
            message: None,
            worker_deaths: Vec::new(),
            lead,
            model: ModelRunner::new(path, ctx),
            sync: SyncStatus::start(path, sync, ctx),
            windows: WindowMemory::default(),
            display_for: None,
            window_panel: WindowPanel::default(),
            cine: None,
            pending_interpolation: None,
            time: TimeLog::default(),
        };
        session.request_list(ImageFilter::default());
        Ok(session)
    }

    /// Reads the time of visits from `clock` (tests script the time a person takes).
    pub fn set_clock(&mut self, clock: std::sync::Arc<dyn Clock>) {
        self.time.set_clock(clock);
    }

    /// Stores the visit of the current image so far and starts a new one on it (the project
    /// closes; tests read what was measured).
    pub fn end_visit(&mut self) {
        if let Some(v) = self.time.finish() {
            self.record_visit(v);
        }
        let image = self.current.as_ref().map(|c| c.id);
        self.time.show(image);
    }

    /// Sends a finished visit to the writer with the image's labels as it leaves them.
    fn record_visit(&mut self, v: Visit) {
        let labels = || {
            self.doc
                .boxes(v.image)
                .iter()
                .filter(|a| a.value.state.is_label() && !a.value.deleted)
        };
        let from_model = labels()
            .filter(|a| matches!(a.value.source, Source::Model { .. }))
            .count();
        let all = labels().count();
        let to_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        self.writer
            .send(Request::RecordTime(crate::store::TimeVisit {
                image: v.image,
                active_ms: u64::try_from(v.active.as_millis()).unwrap_or(u64::MAX),
                actions: v.actions,
                key_presses: v.key_presses,
                boxes_human: to_u64(all - from_model),
                boxes_model: to_u64(from_model),
            }));
    }

    /// Counts this frame's input towards the visit of the image on the canvas: any key,
    /// pointer or wheel input while the window has focus (key presses counted, repeats not).
    fn measure_input(&mut self, ctx: &egui::Context) {
        if self.lead.mode() != Mode::Label {
            return;
        }
        let (focused, input, keys) = ctx.input(|i| {
            let keys = i
                .events
                .iter()
                .filter(|e| {
                    matches!(
                        e,
                        egui::Event::Key {
                            pressed: true,
                            repeat: false,
                            ..
                        }
                    )
                })
                .count();
            let input = i.events.iter().any(|e| {
                matches!(
                    e,
                    egui::Event::Key { .. }
                        | egui::Event::PointerMoved(_)
                        | egui::Event::PointerButton { .. }
                        | egui::Event::MouseWheel { .. }
                        | egui::Event::Text(_)
                )
            });
            (i.focused, input, keys)
        });
        if !focused {
            self.time.pause();
        } else if input {
            self.time.input();
            self.time
                .key_presses(u64::try_from(keys).unwrap_or(u64::MAX));
        }
    }

    /// Background sync (state, waiting in tests).
    pub fn sync_mut(&mut self) -> &mut SyncStatus {
        &mut self.sync
    }

    /// The project file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    // ------------------------------------------------------------------ read access (tests)

    /// The image on the canvas.
    pub fn current(&self) -> Option<&Current> {
        self.current.as_ref()
    }

    /// The boxes of the current image, as the UI has them (ahead of the store).
    pub fn boxes(&self) -> &[Annotation] {
        self.current.as_ref().map_or(&[], |c| self.doc.boxes(c.id))
    }

    /// True while the comment dialog of a return is open.
    pub fn return_dialog_open(&self) -> bool {
        self.return_dialog.is_open()
    }

    /// True while the class picker is open.
    pub fn picker_open(&self) -> bool {
        self.picker.is_open()
    }

    /// The selected box.
    pub fn selected(&self) -> Option<Uuid> {
        self.selected
    }

    /// The class new boxes get.
    pub fn current_class(&self) -> Option<Uuid> {
        self.current_class
    }

    /// The project's classes.
    pub fn classes(&self) -> &ClassTable {
        &self.classes
    }

    /// The rows of the image list.
    pub fn rows(&self) -> &[ImageRow] {
        &self.list.rows
    }

    /// The canvas (viewport, display settings).
    pub fn canvas(&self) -> &Canvas {
        &self.canvas
    }

    /// Mutable view state, e.g. to set a zoom in a test.
    pub fn canvas_mut(&mut self) -> &mut Canvas {
        &mut self.canvas
    }

    /// Score thresholds (view state).
    pub fn thresholds_mut(&mut self) -> &mut Thresholds {
        &mut self.thresholds
    }

    /// The data-loop views.
    pub fn lead(&self) -> &LeadViews {
        &self.lead
    }

    /// The data-loop views, mutable (tests wait on their queries).
    pub fn lead_mut(&mut self) -> &mut LeadViews {
        &mut self.lead
    }

    /// The detection model and its runs.
    pub fn model(&self) -> &ModelRunner {
        &self.model
    }

    /// The detection model and its runs, mutable (the app sets the recent models; tests wait).
    pub fn model_mut(&mut self) -> &mut ModelRunner {
        &mut self.model
    }

    /// True while window mode's panel is open.
    pub fn window_mode_open(&self) -> bool {
        self.window_panel.is_open()
    }

    /// The value under the pointer as the status bar shows it ("value 40 HU").
    pub fn pointer_value(&self) -> Option<String> {
        self.status_input().value
    }

    /// The window/level as the status bar describes it.
    pub fn display_text(&self) -> Option<String> {
        self.status_input().display
    }

    /// Shows `text` in the status bar.
    pub fn say(&mut self, text: String) {
        self.message = Some(text);
    }

    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The background threads that panicked while this project was open, oldest first.
    pub fn worker_deaths(&self) -> &[super::workers::WorkerDeath] {
        &self.worker_deaths
    }

    /// The store writer (tests make it fail).
    #[cfg(test)]
    pub(crate) fn writer_mut(&mut self) -> &mut StoreWriter {
        &mut self.writer
    }

    /// Whether everything is saved.
    pub fn save_state(&self) -> super::writer::SaveState {
        self.writer.state()
    }

    /// Blocks until every edit made so far is in the project file, and handles the replies.
    /// For tests, benchmarks and closing; the UI itself never waits.
    pub fn flush_writes(&mut self) {
        for reply in self.writer.flush() {
            self.handle_reply(reply);
        }
    }

    /// Blocks until the current image is decoded (or failed), up to `timeout`. For tests and
    /// benchmarks.
    pub fn wait_for_image(&mut self, timeout: Duration) -> bool {
        match &self.current {
            Some(c) => {
                let id = c.id;
                self.loader.wait_for(id, timeout)
            }
            None => false,
        }
    }

    /// True when every thumbnail the list asked for is made (or failed). For tests that
    /// take snapshots.
    pub fn thumbnails_idle(&self) -> bool {
        self.thumbs.is_idle()
    }

    /// Turns decoding ahead (and keeping recent images) on or off; the benchmark compares both.
    pub fn set_prefetch(&mut self, on: bool) {
        self.prefetch = if on {
            (PREFETCH_AHEAD, PREFETCH_BEHIND)
        } else {
            (0, 0)
        };
        self.loader.set_keep_recent(if on { 4 } else { 0 });
    }

    /// True when an image is decoded (prefetched or shown).
    pub fn is_decoded(&self, id: Uuid) -> bool {
        matches!(self.loader.slot(id), Some(Slot::Ready(_)))
    }

    /// True when the current image is decoded and ready to draw.
    pub fn image_ready(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|c| matches!(self.loader.slot(c.id), Some(Slot::Ready(_))))
    }

    /// True when the current image is ready and, if it is read as tiles, every tile the last
    /// frame asked for has arrived (the view is sharp).
    pub fn view_complete(&self) -> bool {
        self.image_ready() && !self.loader.tiles.is_busy()
    }

    /// Tiles on the GPU (images read as tiles).
    pub fn resident_tiles(&self) -> usize {
        self.loader.tiles.resident_count()
    }

    /// Changes when images are read as tiles (tests use a low threshold).
    pub fn set_tile_settings(&mut self, settings: crate::imaging::tiles::TileSettings) {
        self.loader.set_tile_settings(settings);
        self.prefetch();
    }

    // ------------------------------------------------------------------ frame

    /// Takes the results of the background threads (the writer, decoders, sync, the lead's
    /// queries, model runs) and the deaths of any of them, and applies them: what eframe's
    /// `App::logic` calls before each frame, and also while the window is hidden. Draws nothing.
    pub fn logic(&mut self, ctx: &egui::Context) -> Vec<AppRequest> {
        let mut requests = Vec::new();
        for death in super::workers::take_deaths(ctx) {
            self.worker_deaths.push(death);
        }
        for reply in self.writer.poll() {
            self.handle_reply(reply);
        }
        self.loader.poll();
        self.thumbs.poll(ctx);
        self.sync_display();
        let pulled = self.sync.poll();
        if pulled > 0 {
            self.after_pull(pulled);
        } else {
            self.refresh_edited_images();
        }
        self.lead.poll();
        if let Some(found) = self.lead.take_similar() {
            match found {
                Ok((first, queue)) => {
                    self.message = Some(format!(
                        "{}: {} images; next and previous follow them",
                        queue.name,
                        queue.images.len() - 1
                    ));
                    if let LeadEffect::Show(id) = self.lead.apply(LeadCommand::Open {
                        image: first,
                        queue: Some(queue),
                    }) {
                        self.show_queued(id);
                    }
                }
                Err(m) => self.message = Some(m),
            }
        }
        for update in self.model.poll() {
            requests.extend(self.model_update(update));
        }
        self.tick_cine(ctx);
        requests
    }

    /// One frame: turn keys into commands and apply them, draw the panels, apply what they
    /// asked for. The background threads' results were taken in [`Session::logic`].
    pub fn ui(&mut self, ui: &mut Ui, keymap: &Keymap, help_open: bool) -> Vec<AppRequest> {
        let ctx = ui.ctx().clone();
        self.ppp = ctx.pixels_per_point();
        let mut requests = Vec::new();
        // Before the keys act, so the key that leaves an image counts for that image.
        self.measure_input(&ctx);

        // The sync details window answers Enter and Escape (both close it) before the canvas
        // would take them as "accept" and "deselect".
        if self.sync.open
            && ctx.input_mut(|i| {
                i.consume_key(egui::Modifiers::NONE, Key::Escape)
                    || i.consume_key(egui::Modifiers::NONE, Key::Enter)
            })
        {
            self.sync.open = false;
        }
        // Keys first, so this frame already shows what they did.
        let mut commands = Vec::new();
        if !self.picker.is_open()
            && !ctx.text_edit_focused()
            && !self.lead.modal_open()
            && !self.return_dialog.is_open()
        {
            for press in take_bound_keys(&ctx, keymap) {
                self.key_commands(press, keymap, help_open, &mut commands);
            }
        }
        for c in commands.drain(..) {
            requests.extend(self.apply(c));
        }

        self.panels_ui(ui, keymap, &mut commands);
        self.picker.ui(&ctx, &self.classes, &mut commands);
        self.lead.dialogs_ui(&ctx, &mut commands);
        match self.return_dialog.ui(&ctx) {
            Some(super::return_dialog::ReturnOutcome::Return { boxes, comment }) => {
                commands.push(Command::ReturnWith { boxes, comment });
            }
            Some(super::return_dialog::ReturnOutcome::Cancelled) => {
                self.message = Some("Return cancelled".into());
            }
            None => {}
        }
        self.sync.window_ui(&ctx, &mut commands);
        self.window_panel_ui(&ctx, &mut commands);
        if !commands.is_empty() {
            for c in commands.drain(..) {
                requests.extend(self.apply(c));
            }
            ctx.request_repaint();
        }
        self.canvas.clear_preview();
        self.keep_keyboard_focus(&ctx);
        requests
    }

    fn panels_ui(&mut self, ui: &mut Ui, keymap: &Keymap, out: &mut Vec<Command>) {
        let frame = |fill: Color32| {
            egui::Frame::new()
                .fill(fill)
                .inner_margin(egui::Margin::symmetric(8, 4))
        };
        egui::Panel::top("top-bar")
            .frame(frame(theme::bar_bg(ui)))
            .show(ui, |ui| {
                let input = TopBarInput {
                    project: &self.name,
                    version: self.version.as_deref(),
                    run: self.run.as_deref(),
                    undo: self.doc.undo_label(),
                    redo: self.doc.redo_label(),
                    keymap,
                    show_boxes: self.canvas.show_boxes,
                    mode: self.lead.mode(),
                    user: self.lead.user_label(),
                    model: ModelMenuInput {
                        runner: &self.model,
                        has_image: self.current.is_some(),
                        queue: self.list.rows.len(),
                    },
                };
                self.top_bar.ui(ui, &input, out);
            });
        egui::Panel::bottom("status-bar")
            .frame(frame(theme::bar_bg(ui)))
            .show(ui, |ui| {
                let mut input = self.status_input();
                input.model_run = self.model.progress(keymap);
                StatusBar.ui(ui, &input, out);
            });
        egui::Panel::left("image-list")
            .default_size(270.0)
            .frame(frame(theme::panel_bg(ui)).inner_margin(6))
            .show(ui, |ui| {
                let row = self.current.as_ref().and_then(|c| c.row);
                let root = self.reader.root().to_path_buf();
                self.list
                    .ui(ui, row, &self.classes, &mut self.thumbs, &root, out);
            });
        egui::Panel::right("boxes")
            .default_size(270.0)
            .frame(frame(theme::panel_bg(ui)).inner_margin(6))
            .show(ui, |ui| {
                let details_max = ui.available_height() * 0.35;
                egui::Panel::bottom("box-details")
                    .resizable(true)
                    .default_size(details_max.min(260.0))
                    .max_size(details_max)
                    .frame(egui::Frame::new().inner_margin(egui::Margin {
                        left: 0,
                        right: 0,
                        top: 12,
                        bottom: 4,
                    }))
                    .show(ui, |ui| {
                        let input = DetailsInput {
                            image: self.current.as_ref().map(|c| c.id),
                            selected: self.selected,
                            reader: &self.reader,
                        };
                        self.lead.details_ui(ui, &input, out);
                    });
                let boxes = self
                    .current
                    .as_ref()
                    .map_or(&[][..], |c| self.doc.boxes(c.id));
                let input = BoxPanelInput {
                    boxes,
                    classes: &self.classes,
                    selected: self.selected,
                    current_class: self.current_class,
                    keymap,
                };
                // Conflicts first: the box panel takes the rest of the height.
                if let Some(c) = &self.current {
                    let saved = self.writer.state() == super::writer::SaveState::Saved;
                    let conflicts = self.sync.view().conflicts_on(&c.path);
                    sync_status::conflicts_panel_ui(ui, conflicts, self.selected, saved, out);
                }
                self.box_panel.ui(ui, &input, &mut self.thresholds, out);
            });
        egui::CentralPanel::default()
            .frame(egui::Frame::new().fill(theme::CANVAS_BG))
            .show(ui, |ui| {
                if self.lead.mode() != Mode::Label {
                    let input = LeadInput {
                        filter: &self.list.filter,
                        keymap,
                        root: self.reader.root(),
                    };
                    self.lead.central_ui(ui, &input, out);
                    return;
                }
                // An image known from sync packs whose file is not here: say so on the canvas.
                let missing = self.current.as_ref().and_then(|c| {
                    let row = c.row.and_then(|r| self.list.rows.get(r))?;
                    row.missing.then(|| Slot::Failed(format!(
                        "{} is not on this computer: its boxes came from the shared store. Get the file with \
                         `loupe sync --images`, or put it in the project folder and add it again.",
                        c.path
                    )))
                });
                let image = self.current.as_ref().map(|c| CanvasImage {
                    id: c.id,
                    name: &c.path,
                    width: c.width,
                    height: c.height,
                    slot: missing.as_ref().or_else(|| self.loader.slot(c.id)),
                });
                let boxes = self
                    .current
                    .as_ref()
                    .map_or(&[][..], |c| self.doc.boxes(c.id));
                let input = CanvasInput {
                    image,
                    boxes,
                    classes: &self.classes,
                    thresholds: &self.thresholds,
                    selected: self.selected,
                    draw_color: self
                        .current_class
                        .map_or(theme::ACCENT, |c| self.classes.color(c)),
                    spacing: self
                        .current_image()
                        .and_then(|img| img.reading.as_ref())
                        .and_then(|r| r.pixel_spacing),
                    signals: self
                        .current
                        .as_ref()
                        .and_then(|c| {
                            self.lead
                                .triage_rows()?
                                .iter()
                                .find(|t| t.image == c.id)
                        })
                        .map_or(&[][..], |t| &t.signals[..]),
                    tiles: Some(&self.loader.tiles),
                };
                self.canvas.in_stack = self.current_stack().is_some();
                self.canvas.ui(ui, &input, out);
                let steps = std::mem::take(&mut self.canvas.frame_steps);
                for _ in 0..steps.unsigned_abs() {
                    out.push(if steps > 0 {
                        Command::NextFrame
                    } else {
                        Command::PreviousFrame
                    });
                }
                // The tiles this frame showed or lacks, for images read as tiles.
                let wanted = self.canvas.take_wanted_tiles();
                let tiled = self.current.as_ref().and_then(|c| match self.loader.slot(c.id) {
                    Some(Slot::Ready(img)) => img.tiled.clone(),
                    _ => None,
                });
                if let Some(tiled) = tiled {
                    self.loader.tiles.want(&tiled, &wanted);
                }
                if let Some(c) = &self.current {
                    let painter = ui.painter_at(self.canvas.viewport.canvas());
                    let conflicts = self.sync.view().conflicts_on(&c.path);
                    sync_status::paint_conflicts(&painter, &self.canvas.viewport, conflicts);
                }
            });
    }

    fn status_input(&self) -> StatusInput<'_> {
        let boxes = self.boxes();
        let labels = boxes.iter().filter(|a| a.value.state.is_label()).count();
        let proposals = boxes
            .iter()
            .filter(|a| a.value.state == ReviewState::Proposed)
            .count();
        let (display, adding) = (
            self.current
                .as_ref()
                .and_then(|c| match self.loader.slot(c.id) {
                    Some(Slot::Ready(img)) => {
                        Some(self.canvas.display.describe(img.kind, img.gray_stats))
                            .filter(|d| !d.is_empty())
                    }
                    _ => None,
                }),
            {
                use std::sync::atomic::Ordering;
                let p = &self.writer.add_progress;
                let total = p.total.load(Ordering::Relaxed);
                let done = p.done.load(Ordering::Relaxed);
                (total > 0 && done < total).then_some((done, total))
            },
        );
        StatusInput {
            position: self
                .current
                .as_ref()
                .and_then(|c| c.row)
                .and_then(|r| self.list.entry_of(r))
                .map(|e| (e, self.list.entries.len())),
            frame: self.frame_text(),
            frame_slider: self
                .current_stack()
                .map(|(row, rows)| (row - rows.start, rows.len(), rows.start)),
            path: self.current.as_ref().map(|c| c.path.as_str()),
            size: self.current.as_ref().map(|c| (c.width, c.height)),
            labels,
            proposals,
            zoom: self.canvas.viewport.zoom(),
            pointer: self.canvas.pointer_in_image().map(|p| (p.x, p.y)),
            value: self
                .canvas
                .pointer_in_image()
                .zip(self.current_image())
                .and_then(|(p, img)| super::reading::value_at(img, p)),
            modes: self.view_modes(),
            display,
            save: self.writer.state(),
            failed_edits: self.writer.failed_edits(),
            adding,
            message: self.message.as_deref(),
            worker_death: self.worker_deaths.last(),
            model_run: None,
            sync: Some(self.sync.view()),
            provider: self.model.provider_status(),
        }
    }

    /// The canvas keeps keyboard focus unless a text field has it, with Tab, arrows and
    /// Escape locked to it (egui would otherwise move focus between widgets with them).
    fn keep_keyboard_focus(&self, ctx: &egui::Context) {
        // A dialog keeps the focus it gave its first field.
        if self.picker.is_open()
            || ctx.text_edit_focused()
            || self.lead.modal_open()
            || self.return_dialog.is_open()
        {
            return;
        }
        ctx.memory_mut(|m| {
            if m.focused() != Some(canvas_id()) {
                m.request_focus(canvas_id());
            }
            m.set_focus_lock_filter(
                canvas_id(),
                egui::EventFilter {
                    tab: true,
                    horizontal_arrows: true,
                    vertical_arrows: true,
                    escape: true,
                },
            );
        });
    }

    /// Turns a key press into commands (one key, one action; the keymap refuses conflicts).
    /// Space acts on release unless it was held to pan.
    fn key_commands(
        &mut self,
        press: KeyPress,
        keymap: &Keymap,
        help_open: bool,
        out: &mut Vec<Command>,
    ) {
        if press.key == Key::Space {
            if press.pressed {
                if !press.repeat {
                    self.space_pending = true;
                    self.canvas.take_space_panned();
                }
                return;
            }
            let panned = self.canvas.take_space_panned();
            if !std::mem::take(&mut self.space_pending) || panned {
                return;
            }
        } else if !press.pressed {
            return;
        }
        for action in keymap.actions_for(press.key, press.modifiers) {
            if let Some(c) = self.action_command(action, help_open) {
                out.push(c);
                return;
            }
        }
    }

    fn action_command(&self, action: Action, help_open: bool) -> Option<Command> {
        // Window mode takes the number keys, Enter and Escape; everything else works as usual
        // (a reader steps through slices with the panel open).
        if self.window_panel.is_open() {
            match action {
                Action::Class(n) => return Some(Command::ChooseWindow(usize::from(n) - 1)),
                Action::AcceptSelected => return Some(Command::TypeWindow),
                Action::Deselect | Action::WindowLevel => return Some(Command::WindowMode),
                _ => {}
            }
        }
        // The crop grid takes Enter (open the box), Delete and Escape for its selection.
        if self.lead.mode() == Mode::Crops {
            let grid = match action {
                Action::AcceptSelected => Some(LeadCommand::CropsOpenSelected),
                Action::DeleteSelected => Some(LeadCommand::CropsRemoveSelected),
                Action::Deselect if !help_open => Some(LeadCommand::CropsDeselect),
                // The class keys give the selected crops that class.
                Action::Class(n) => {
                    let class = self.classes.at(usize::from(n.saturating_sub(1)))?;
                    Some(LeadCommand::CropsFix {
                        boxes: self.lead.crops_selected_boxes(),
                        fix: super::lead::CropsFix::SetClass(class.id),
                    })
                }
                _ => None,
            };
            if let Some(c) = grid {
                return Some(Command::Lead(c));
            }
        }
        let selected = self.selected.is_some();
        let nudge = |dx: f64, dy: f64| selected.then_some(Command::Nudge { dx, dy });
        Some(match action {
            Action::NextImage => Command::NextImage,
            Action::PreviousImage => Command::PreviousImage,
            Action::NextWithProposals => Command::NextWithProposals,
            Action::NextUnreviewed => Command::NextUnreviewed,
            Action::NextFlagged => Command::NextFlagged,
            Action::AcceptAndNext => Command::AcceptAndNext,
            Action::AcceptSelected => Command::AcceptSelected,
            Action::AcceptAllVisible => Command::AcceptAllVisible,
            Action::DeleteSelected => Command::DeleteSelected,
            Action::ApproveLabels => Command::ApproveLabels,
            Action::ReturnLabels => Command::ReturnLabels,
            Action::Undo => Command::Undo,
            Action::Redo => Command::Redo,
            Action::SelectNextBox => Command::SelectNextBox,
            Action::SelectPreviousBox => Command::SelectPreviousBox,
            Action::Deselect if help_open => Command::ToggleHelp,
            Action::Deselect if !self.canvas.four_click_points().is_empty() => {
                Command::CancelClicks
            }
            Action::Deselect => Command::Select(None),
            Action::NudgeLeft => return nudge(-1.0, 0.0),
            Action::NudgeRight => return nudge(1.0, 0.0),
            Action::NudgeUp => return nudge(0.0, -1.0),
            Action::NudgeDown => return nudge(0.0, 1.0),
            Action::NudgeLeftFar => return nudge(-10.0, 0.0),
            Action::NudgeRightFar => return nudge(10.0, 0.0),
            Action::NudgeUpFar => return nudge(0.0, -10.0),
            Action::NudgeDownFar => return nudge(0.0, 10.0),
            Action::Class(n) => Command::ClassAt(usize::from(n.saturating_sub(1))),
            Action::ClassPicker => Command::OpenClassPicker,
            Action::CopyPreviousBoxes => Command::CopyPreviousBoxes,
            Action::MoreLikeThis => Command::MoreLikeThis,
            Action::FixIssue => Command::Lead(super::lead::LeadCommand::FixIssue(None)),
            Action::NextFrame => Command::NextFrame,
            Action::PreviousFrame => Command::PreviousFrame,
            Action::FirstFrame => Command::FirstFrame,
            Action::LastFrame => Command::LastFrame,
            Action::Cine => Command::ToggleCine,
            Action::CopyBoxToNextFrame => Command::CopyBoxToNextFrame,
            Action::Interpolate => Command::Interpolate,
            Action::FourClickBoxes => Command::ToggleFourClick,
            Action::SnapToProposals => Command::ToggleSnap,
            Action::Fit => Command::Fit,
            Action::OneToOne => Command::OneToOne,
            Action::ZoomIn => Command::Zoom(1.25),
            Action::ZoomOut => Command::Zoom(0.8),
            Action::ResetDisplay => Command::ResetDisplay,
            Action::NextWindowPreset => Command::NextWindowPreset,
            Action::WindowLevel => Command::WindowMode,
            Action::Ruler => Command::ToggleRuler,
            Action::ToggleBoxes => Command::ToggleBoxes,
            Action::ToggleProposals => Command::ToggleProposals,
            Action::ToggleOutlines => Command::ToggleOutlines,
            Action::ToggleFlag => Command::ToggleFlag,
            Action::FocusSearch => Command::FocusSearch,
            Action::Help => Command::ToggleHelp,
            Action::Settings => Command::OpenSettings,
            Action::OpenProject => Command::OpenProjectDialog,
            Action::AddImages => Command::AddImagesDialog,
            Action::SyncNow => Command::Sync(SyncCommand::Now),
            Action::ShowLabel
            | Action::ShowTriage
            | Action::ShowEvaluate
            | Action::ShowDashboard
            | Action::ShowCrops => {
                let mode = Mode::ALL.into_iter().find(|m| m.action() == action)?;
                Command::Lead(super::lead::LeadCommand::SetMode(mode))
            }
            Action::RunModelOnImage => Command::Model(ModelCommand::RunOnImage),
            Action::RunModelOnQueue => Command::Model(ModelCommand::RunOnQueue),
            Action::CancelModelRun => Command::Model(ModelCommand::Cancel),
        })
    }

    // ------------------------------------------------------------------ replies

    fn handle_reply(&mut self, reply: Reply) {
        match reply {
            Reply::Applied => {
                self.lead.data_changed();
                self.sync.edited();
            }
            Reply::Resolved { annotation, result } => self.resolved(annotation, result),
            Reply::Flushed => {}
            Reply::Lead(done) => {
                let report = self.lead.on_write(done);
                if let Some(user) = report.profile
                    && let Err(e) = self.reader.act_as(&user.id.to_string())
                {
                    tracing::warn!("cannot follow the new profile on the read connection: {e}");
                }
                if let Some(m) = report.message {
                    self.message = Some(m);
                }
            }
            Reply::Failed { error, .. } => {
                self.lead.fixes_uncertain();
                self.message = Some(format!("Not saved: {error}"));
            }
            Reply::ClassReady(Ok(class)) => {
                self.classes.push(class.clone());
                let waiting: Vec<PickerTarget> = self
                    .pending_classes
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(&class.name))
                    .map(|(_, t)| *t)
                    .collect();
                self.pending_classes
                    .retain(|(n, _)| !n.eq_ignore_ascii_case(&class.name));
                for target in waiting {
                    self.apply(Command::SetClass {
                        target,
                        class: class.id,
                    });
                }
            }
            Reply::RunReady(Ok(_)) => {
                if let Some(id) = self.pending_interpolation.take()
                    && self.current.is_some()
                {
                    self.selected = Some(id);
                    self.interpolate();
                }
            }
            Reply::RunReady(Err(e)) => {
                self.pending_interpolation = None;
                self.message = Some(format!("Could not make the interpolation run: {e}"));
            }
            Reply::ClassReady(Err(e)) => {
                self.message = Some(format!("Could not create the class: {e}"))
            }
            Reply::Images { generation, rows } => {
                if generation != self.list.generation {
                    return;
                }
                self.list.loading = false;
                match rows {
                    Ok(rows) => {
                        self.list.set_rows(rows);
                        self.after_relist();
                    }
                    Err(e) => self.message = Some(format!("Could not list images: {e}")),
                }
            }
            Reply::TagSet(Err(e)) => self.message = Some(format!("Could not tag the image: {e}")),
            Reply::TagSet(Ok(())) => {}
            Reply::TimeRecorded(Ok(())) => {}
            Reply::TimeRecorded(Err(e)) => {
                tracing::warn!("the time of a visit was not stored: {e}");
            }
            Reply::ImagesAdded(Ok(report)) => {
                let mut m = format!(
                    "Added {} images ({} already there)",
                    report.added, report.unchanged
                );
                if !report.failed.is_empty() {
                    m.push_str(&format!(", {} unreadable", report.failed.len()));
                }
                self.message = Some(m);
                self.request_list(self.list.filter.clone());
            }
            Reply::ImagesAdded(Err(e)) => self.message = Some(format!("Could not add images: {e}")),
            Reply::Imported(Ok(summary)) => {
                self.lead.data_changed();
                self.message = Some(summary);
                // New classes and boxes: read them again (images with edits keep memory, which
                // is ahead of the store).
                match self.reader.classes() {
                    Ok(classes) => {
                        for c in classes {
                            self.classes.push(c);
                        }
                    }
                    Err(e) => self.message = Some(format!("Could not read the classes: {e}")),
                }
                self.doc.forget_unedited();
                if let Some(c) = &self.current
                    && !self.doc.is_loaded(c.id)
                    && let Ok(boxes) = self.reader.annotations_for_image(c.id)
                {
                    self.doc.load(c.id, boxes);
                }
                self.request_list(self.list.filter.clone());
            }
            Reply::Imported(Err(e)) => self.message = Some(format!("Import refused: {e}")),
            Reply::Exported(Ok(summary)) => self.message = Some(summary),
            Reply::Exported(Err(e)) => self.message = Some(format!("Export failed: {e}")),
        }
    }

    fn request_list(&mut self, filter: ImageFilter) {
        self.list.generation += 1;
        self.list.loading = true;
        self.list.filter = filter.clone();
        let generation = self.list.generation;
        self.writer.send(Request::ListImages { filter, generation });
    }

    /// After a new list arrives: find the current image in it, or show the first one.
    fn after_relist(&mut self) {
        match &mut self.current {
            Some(c) => {
                c.row = self.list.rows.iter().position(|r| r.id == c.id);
                if let Some(row) = c.row {
                    self.list.reveal(row);
                }
                self.prefetch();
            }
            None => {
                let start = self.start_image.take();
                let row = start
                    .and_then(|p| self.list.rows.iter().position(|r| r.path == p))
                    .unwrap_or(0);
                if row < self.list.rows.len() {
                    self.show_row(row);
                }
            }
        }
    }

    /// Asks for the images most like the current one, or the boxes most like the selected
    /// box; [`Session::logic`] opens them as a queue when the answer comes.
    fn more_like_this(&mut self) {
        let Some(current) = &self.current else {
            self.message = Some("No image open".into());
            return;
        };
        let name = current
            .path
            .rsplit('/')
            .next()
            .unwrap_or(&current.path)
            .to_owned();
        let (target, label) = match self.selected {
            Some(ann) => (
                Target::Box {
                    image: current.id,
                    ann,
                },
                format!("like a box of {name}"),
            ),
            None => (Target::Image(current.id), format!("like {name}")),
        };
        self.lead.ask_similar(target, label.clone());
        self.message = Some(format!("Looking for images {label}…"));
    }

    // ------------------------------------------------------------------ reading

    /// The current image, decoded.
    fn current_image(&self) -> Option<&super::loader::LoadedImage> {
        let c = self.current.as_ref()?;
        match self.loader.slot(c.id) {
            Some(Slot::Ready(img)) => Some(img),
            _ => None,
        }
    }

    /// The windows the number keys pick in window mode.
    fn window_choices(&self) -> Vec<WindowChoice> {
        self.current_image().map(window_choices).unwrap_or_default()
    }

    /// The window shown, as (level, width) in measured units; `None` for 8-bit images.
    fn measured_window(&self) -> Option<(f64, f64)> {
        let img = self.current_image()?;
        if img.kind != super::gpu::PixelKind::Gray16 {
            return None;
        }
        let (lo, hi) = self.canvas.display.window_for(img.gray_stats);
        let (a, b) = match img.gray_stats.and_then(|s| s.values) {
            Some(v) => (v.value(lo), v.value(hi)),
            None => (f64::from(lo), f64::from(hi)),
        };
        Some(((a + b) / 2.0, (b - a).abs()))
    }

    fn refresh_window_fields(&mut self) {
        if self.window_panel.is_open()
            && let Some((level, width)) = self.measured_window()
        {
            self.window_panel.open(level, width);
        }
    }

    /// Keeps the shown display for the image it belongs to.
    fn remember_display(&mut self) {
        let (Some(id), Some(c)) = (self.display_for, self.current.as_ref()) else {
            return;
        };
        if id != c.id {
            return;
        }
        if let Some(Slot::Ready(img)) = self.loader.slot(id) {
            let img = std::sync::Arc::clone(img);
            self.windows.remember(id, &img, &self.canvas.display);
        }
    }

    /// Once the current image is decoded, shows it with its remembered display; while it is
    /// shown, remembers what the reader changes.
    fn sync_display(&mut self) {
        let Some(id) = self.current.as_ref().map(|c| c.id) else {
            return;
        };
        let Some(Slot::Ready(img)) = self.loader.slot(id) else {
            return;
        };
        let img = std::sync::Arc::clone(img);
        if self.display_for == Some(id) {
            self.windows.remember(id, &img, &self.canvas.display);
        } else {
            self.canvas.display = self.windows.restore(id, &img);
            self.display_for = Some(id);
            self.refresh_window_fields();
        }
    }

    fn window_panel_ui(&mut self, ctx: &egui::Context, out: &mut Vec<Command>) {
        if !self.window_panel.is_open() {
            return;
        }
        if self.lead.mode() != Mode::Label || self.measured_window().is_none() {
            // Not a 16-bit image (any more): nothing to window.
            self.window_panel.close();
            return;
        }
        let choices = self.window_choices();
        let unit = self
            .current_image()
            .and_then(|img| img.gray_stats)
            .and_then(|s| s.values)
            .map_or("", |v| v.unit);
        let at = self.canvas.viewport.canvas().left_top() + egui::vec2(8.0, 8.0);
        match self
            .window_panel
            .ui(ctx, at, &choices, &self.canvas.display, unit)
        {
            Some(WindowPanelOutcome::Choose(i)) => out.push(Command::ChooseWindow(i)),
            Some(WindowPanelOutcome::Typed { level, width }) => {
                out.push(Command::SetWindow { level, width });
            }
            Some(WindowPanelOutcome::Close) => out.push(Command::WindowMode),
            None => {}
        }
    }

    /// What the view hides or changes, for the status bar.
    fn view_modes(&self) -> Vec<&'static str> {
        let mut modes = Vec::new();
        if self.window_panel.is_open() {
            modes.push("window mode (1–9, Enter, W)");
        }
        if self.canvas.ruler_mode {
            modes.push("ruler (L)");
        }
        if self.canvas.four_click {
            modes.push("four-click boxes (E)");
        }
        if self.snap {
            modes.push("snap to proposals (S)");
        }
        if self.canvas.hide_proposals {
            modes.push("proposals hidden (Shift+H)");
        }
        if self.canvas.outlines_only {
            modes.push("outlines (O)");
        }
        modes
    }

    // ------------------------------------------------------------------ navigation

    /// Shows the first row after the current one (wrapping round) that `wanted` accepts, or
    /// says there is none.
    fn next_where(&mut self, what: &str, wanted: impl Fn(&Self, &ImageRow) -> bool) {
        let n = self.list.rows.len();
        let start = self.next_row().unwrap_or(0);
        let current = self.current.as_ref().map(|c| c.id);
        let found = (0..n)
            .map(|k| (start + k) % n)
            .find(|&r| Some(self.list.rows[r].id) != current && wanted(self, &self.list.rows[r]));
        match found {
            Some(r) => self.show_row(r),
            None => self.message = Some(format!("No other {what} image in this list")),
        }
    }

    fn show_row(&mut self, row: usize) {
        let Some(r) = self.list.rows.get(row) else {
            return;
        };
        let current = Current {
            id: r.id,
            path: r.path.clone(),
            width: r.width,
            height: r.height,
            row: Some(row),
        };
        self.show(current);
        self.list.reveal(row);
    }

    /// Shows an image by id (undo on another image). Its row if the filter lists it.
    fn show_id(&mut self, id: Uuid) {
        if let Some(row) = self.list.rows.iter().position(|r| r.id == id) {
            self.show_row(row);
            return;
        }
        match self.reader.image(id) {
            Ok(rec) => self.show(Current {
                id,
                path: rec.path,
                width: rec.width,
                height: rec.height,
                row: None,
            }),
            Err(e) => self.message = Some(format!("Cannot show the image: {e}")),
        }
    }

    fn show(&mut self, current: Current) {
        if !self.doc.is_loaded(current.id) {
            match self.reader.annotations_for_image(current.id) {
                Ok(boxes) => self.doc.load(current.id, boxes),
                Err(e) => {
                    self.message = Some(format!("Cannot read the boxes of {}: {e}", current.path));
                    return;
                }
            }
        }
        if self.current.as_ref().map(|c| c.id) != Some(current.id) {
            self.remember_display();
            self.selected = None;
            self.canvas.cancel_gesture();
            self.canvas.ruler = None;
            // A message was about the image being left (not one said before the first image,
            // such as a problem in the shortcuts file).
            if self.current.is_some() {
                self.message = None;
            }
            // Leaving an image: its edits are worth pushing soon.
            self.sync.image_done();
            if let Some(v) = self.time.show(Some(current.id)) {
                self.record_visit(v);
            }
        }
        self.current = Some(current);
        self.prefetch();
    }

    fn job(&self, id: Uuid, path: &str, width: u32, height: u32) -> Job {
        Job {
            id,
            path: self.reader.root().join(path),
            width,
            height,
        }
    }

    /// Asks the decoders for the current image, then the next ones, then the previous.
    fn prefetch(&mut self) {
        let Some(c) = &self.current else {
            return;
        };
        let mut jobs = vec![self.job(c.id, &c.path, c.width, c.height)];
        let next_rows = c
            .row
            .map_or_else(|| self.row_after(&c.path), |r| Some(r + 1));
        if let Some(start) = next_rows {
            for r in self.list.rows.iter().skip(start).take(self.prefetch.0) {
                jobs.push(self.job(r.id, &r.path, r.width, r.height));
            }
        }
        if let Some(row) = c.row {
            for r in self
                .list
                .rows
                .get(..row)
                .unwrap_or_default()
                .iter()
                .rev()
                .take(self.prefetch.1)
            {
                jobs.push(self.job(r.id, &r.path, r.width, r.height));
            }
        }
        jobs.retain(|j| !self.list.rows.iter().any(|r| r.id == j.id && r.missing));
        self.loader.want(&jobs);
    }

    /// The first row after a path (the list is in path order), for images outside the filter.
    fn row_after(&self, path: &str) -> Option<usize> {
        let i = self.list.rows.partition_point(|r| r.path.as_str() <= path);
        (i < self.list.rows.len()).then_some(i)
    }

    fn row_before(&self, path: &str) -> Option<usize> {
        self.list
            .rows
            .partition_point(|r| r.path.as_str() < path)
            .checked_sub(1)
    }

    /// The next entry of the list (the next image, or the first frame of the next stack).
    fn next_row(&self) -> Option<usize> {
        match &self.current {
            Some(c) => match c.row {
                Some(r) => {
                    let next = self.list.stack_rows(r).end;
                    (next < self.list.rows.len()).then_some(next)
                }
                None => self.row_after(&c.path),
            },
            None => (!self.list.rows.is_empty()).then_some(0),
        }
    }

    /// The previous entry of the list (a stack is entered at its first frame).
    fn previous_row(&self) -> Option<usize> {
        match &self.current {
            Some(c) => match c.row {
                Some(r) => self
                    .list
                    .stack_rows(r)
                    .start
                    .checked_sub(1)
                    .map(|p| self.list.stack_rows(p).start),
                None => self.row_before(&c.path),
            },
            None => None,
        }
    }

    // ------------------------------------------------------------------ apply

    fn commit(&mut self, change: Change) {
        let image = change.image;
        let images = change.images();
        let what = change.what;
        let done = self.doc.commit(change);
        if !done.edits.is_empty() || done.tag.is_some() {
            self.time.action();
        }
        self.send_tag(image, done.tag);
        if done.edits.is_empty() {
            return;
        }
        self.writer.send(Request::Apply(done.edits));
        for image in images {
            self.refresh_row_counts(image);
        }
        self.message = None;
        tracing::trace!("{what}");
    }

    /// Keeps the list's counts of an edited image true without asking the store again.
    fn refresh_row_counts(&mut self, image: Uuid) {
        let boxes = self.doc.boxes(image);
        let labels = boxes.iter().filter(|a| a.value.state.is_label()).count();
        let proposals = boxes
            .iter()
            .filter(|a| a.value.state == ReviewState::Proposed)
            .count();
        if let Some(row) = self.list.rows.iter_mut().find(|r| r.id == image) {
            row.boxes = u32::try_from(labels).unwrap_or(u32::MAX);
            row.proposals = u32::try_from(proposals).unwrap_or(u32::MAX);
        }
    }

    fn current_box(&self, id: Uuid) -> Option<(Uuid, Annotation)> {
        let c = self.current.as_ref()?;
        self.doc.get(c.id, id).map(|a| (c.id, a.clone()))
    }

    fn selected_box(&self) -> Option<(Uuid, Annotation)> {
        self.selected.and_then(|id| self.current_box(id))
    }

    /// Shown boxes of the current image, in list order.
    fn shown_ids(&self) -> Vec<Uuid> {
        let hide_proposals = self.canvas.hide_proposals;
        self.boxes()
            .iter()
            .filter(|a| self.thresholds.is_shown(a))
            .filter(|a| !(hide_proposals && a.value.state == ReviewState::Proposed))
            .map(|a| a.id)
            .collect()
    }

    fn set_bbox(&mut self, id: Uuid, bbox: BBox, what: &'static str) {
        let Some((image, a)) = self.current_box(id) else {
            return;
        };
        if a.value.bbox == bbox {
            return;
        }
        let mut after = a.value.clone();
        after.bbox = bbox;
        after.state = edited_state(&a.value);
        self.commit(Change::new(image, what).update(id, a.value, after));
    }

    fn set_state(&mut self, ids: &[Uuid], state: ReviewState, what: &'static str) {
        let Some(c) = &self.current else {
            return;
        };
        let image = c.id;
        let mut change = Change::new(image, what);
        for id in ids {
            if let Some(a) = self.doc.get(image, *id) {
                let mut after = a.value.clone();
                after.state = state;
                change = change.update(*id, a.value.clone(), after);
            }
        }
        self.commit(change);
    }

    /// A box the user drew (`what` says how): snapped to a proposal when snapping is on and one
    /// overlaps it well, else created with the current class (or, with no class yet, kept
    /// until one is named).
    fn new_box(&mut self, bbox: BBox, what: &'static str) {
        let Some(class) = self
            .current_class
            .filter(|c| self.classes.get(*c).is_some())
        else {
            self.pending_box = Some(bbox);
            self.picker.open(PickerTarget::NewBoxes);
            self.message = Some("Name a class for the new box".into());
            return;
        };
        if !self.snap {
            self.create_box(bbox, class, what);
            return;
        }
        let Some(image) = self.current.as_ref().map(|c| c.id) else {
            return;
        };
        let name = self.classes.name(class).to_owned();
        let target =
            box_tools::snap_target(self.doc.boxes(image), &bbox, class, box_tools::SNAP_MIN_IOU)
                .map(|(a, iou)| (a.clone(), iou));
        match target {
            Some((a, iou)) => {
                let mut after = a.value.clone();
                after.state = ReviewState::Accepted;
                let note = format!("snapped: a drawn box overlapped it at IoU {iou:.2}");
                self.commit(Change::new(image, "snap to proposal").update_because(
                    a.id,
                    a.value.clone(),
                    after,
                    note,
                ));
                self.selected = Some(a.id);
                let score = a.value.source.score().unwrap_or(1.0);
                self.message = Some(format!(
                    "Snapped to the {name} proposal {score:.2} (IoU {iou:.2}): accepted"
                ));
            }
            None => {
                self.create_box(bbox, class, what);
                self.message = Some(format!(
                    "No {name} proposal overlaps the box at IoU {:.1} or more: drawn as it is",
                    box_tools::SNAP_MIN_IOU
                ));
            }
        }
    }

    fn create_box(&mut self, bbox: BBox, class: Uuid, what: &'static str) {
        let Some(c) = &self.current else {
            return;
        };
        let image = c.id;
        let id = Uuid::now_v7();
        let value = AnnotationValue {
            image,
            class,
            bbox,
            source: Source::Human,
            state: ReviewState::Submitted,
            flags: BoxFlags::default(),
            deleted: false,
            attributes: Attributes::new(),
        };
        self.commit(Change::new(image, what).create(id, value));
        self.selected = Some(id);
    }

    fn set_class(&mut self, target: PickerTarget, class: Uuid) {
        match target {
            PickerTarget::Selected(id) => {
                let Some((image, a)) = self.current_box(id) else {
                    return;
                };
                if a.value.class == class {
                    return;
                }
                let mut after = a.value.clone();
                after.class = class;
                after.state = edited_state(&a.value);
                self.commit(Change::new(image, "change class").update(id, a.value, after));
            }
            PickerTarget::NewBoxes => {
                self.current_class = Some(class);
                if let Some(bbox) = self.pending_box.take() {
                    self.create_box(bbox, class, "draw box");
                }
            }
        }
    }

    fn delete(&mut self, id: Uuid) {
        let Some((image, a)) = self.current_box(id) else {
            return;
        };
        if a.value.state == ReviewState::Proposed {
            self.set_state(&[id], ReviewState::Rejected, "reject proposal");
        } else {
            self.commit(Change::new(image, "delete box").delete(id, a.value));
        }
        if self.selected == Some(id) {
            self.selected = None;
        }
    }

    /// Fixes a triage issue as its reason suggests: planned on the image's boxes in memory
    /// (loaded from the store if the image was never opened), checked against the review policy
    /// for the profile's role, and committed as one undoable change whose revision stores the
    /// reason. The triage view then hides the issue and selects the next one.
    fn fix_issue(&mut self, target: super::lead::IssueToFix) {
        let image = target.key.image;
        if !self.doc.is_loaded(image) {
            match self.reader.annotations_for_image(image) {
                Ok(boxes) => self.doc.load(image, boxes),
                Err(e) => {
                    self.message = Some(format!("Cannot read the image's boxes: {e}"));
                    return;
                }
            }
        }
        let role = self.lead.role().unwrap_or(crate::model::Role::Annotator);
        let classes = &self.classes;
        let planned = crate::review::plan_fix(
            &target.issue,
            image,
            self.doc.boxes(image),
            |name| classes.iter().find(|c| c.name == name).map(|c| c.id),
            role,
            &target.run,
        );
        let fix = match planned {
            Ok(fix) => fix,
            Err(e) => {
                self.message = Some(format!("Not fixed: {e}"));
                return;
            }
        };
        let change = Change::new(image, fix.kind.what());
        let change = match &fix.before {
            None => change.create_because(fix.id, fix.after.clone(), fix.note.clone()),
            Some(before) if fix.after.deleted => {
                change.delete_because(fix.id, before.clone(), fix.note.clone())
            }
            Some(before) => {
                change.update_because(fix.id, before.clone(), fix.after.clone(), fix.note.clone())
            }
        };
        self.commit(change);
        if fix.after.deleted && self.selected == Some(fix.id) {
            self.selected = None;
        }
        self.lead.issue_fixed(&target.key);
        self.message = Some(format!(
            "Fixed ({}): {}; undo reverts it",
            target.issue.kind.as_str().replace('_', " "),
            fix.kind.label()
        ));
    }

    /// The labels a review key acts on: the selected box when it can take `to`, else every box
    /// of the image that can. `Err` says why there is nothing to do.
    fn review_targets(&self, to: ReviewState) -> Result<(Uuid, Vec<Annotation>), String> {
        let Some(c) = &self.current else {
            return Err("No image".into());
        };
        let role = self.lead.role().unwrap_or(crate::model::Role::Annotator);
        if role < crate::model::Role::Reviewer {
            return Err(format!(
                "Approving and returning labels is for reviewers and leads; you work as {} \
                 (change it from your name in the top bar)",
                role.as_str()
            ));
        }
        let can = |a: &Annotation| {
            !a.value.deleted && crate::review::check_transition(a.value.state, to, role).is_ok()
        };
        let boxes: Vec<Annotation> = match self.selected {
            Some(id) => {
                let a = self
                    .doc
                    .get(c.id, id)
                    .ok_or_else(|| "The selected box is gone".to_owned())?;
                if !can(a) {
                    return Err(format!(
                        "The selected box is {}: it cannot be {}",
                        a.value.state.as_str(),
                        to.as_str()
                    ));
                }
                vec![a.clone()]
            }
            None => self
                .doc
                .boxes(c.id)
                .iter()
                .filter(|a| can(a))
                .cloned()
                .collect(),
        };
        if boxes.is_empty() {
            let proposals = self
                .doc
                .boxes(c.id)
                .iter()
                .filter(|a| a.value.state == ReviewState::Proposed)
                .count();
            return Err(if proposals > 0 {
                format!("Nothing to review here: {proposals} proposals still wait for an annotator")
            } else {
                format!("No label on this image can be {}", to.as_str())
            });
        }
        Ok((c.id, boxes))
    }

    /// Approves the selected label, or every label of the image that can be approved, in one
    /// undoable step. Returns true when something was approved.
    fn approve_labels(&mut self) -> bool {
        let (image, boxes) = match self.review_targets(ReviewState::Approved) {
            Ok(t) => t,
            Err(why) => {
                self.message = Some(why);
                return false;
            }
        };
        let mut change = Change::new(image, "approve labels");
        for a in &boxes {
            let mut after = a.value.clone();
            after.state = ReviewState::Approved;
            change = change.update(a.id, a.value.clone(), after);
        }
        let waiting = self
            .doc
            .boxes(image)
            .iter()
            .filter(|a| a.value.state == ReviewState::Proposed)
            .count();
        self.commit(change);
        self.message = Some(if waiting == 0 {
            format!("Approved {} label(s)", boxes.len())
        } else {
            format!(
                "Approved {} label(s); {waiting} proposal(s) on the image still wait for an annotator",
                boxes.len()
            )
        });
        true
    }

    /// Opens the comment dialog of a return.
    fn open_return(&mut self) {
        match self.review_targets(ReviewState::Returned) {
            Ok((_, boxes)) => {
                let what = match (boxes.len(), &self.current) {
                    (1, _) if self.selected.is_some() => "the selected label".to_owned(),
                    (n, Some(c)) => format!("{n} label(s) of {}", c.path),
                    (n, None) => format!("{n} label(s)"),
                };
                self.return_dialog
                    .open(boxes.into_iter().map(|a| a.id).collect(), what);
            }
            Err(why) => self.message = Some(why),
        }
    }

    /// Returns labels with the reviewer's comment, stored with each revision.
    fn return_labels(&mut self, ids: &[Uuid], comment: &str) {
        let Some(c) = &self.current else {
            return;
        };
        let image = c.id;
        let mut change = Change::new(image, "return labels");
        let mut n = 0;
        for id in ids {
            if let Some(a) = self.doc.get(image, *id) {
                let mut after = a.value.clone();
                after.state = ReviewState::Returned;
                change = change.update_because(*id, a.value.clone(), after, comment);
                n += 1;
            }
        }
        self.commit(change);
        self.message = Some(format!("Returned {n} label(s): {comment}"));
    }

    /// Space: resolves the whole image in one undoable step. Visible proposals are accepted,
    /// proposals hidden by a class's score threshold are rejected with the reason "below
    /// threshold" (none stays proposed on an image marked done), and the image is tagged
    /// `done`. Undo restores all three.
    fn resolve_image(&mut self) -> Option<String> {
        let c = self.current.as_ref()?;
        let image = c.id;
        let was_done = match self.done.get(&image) {
            Some(d) => *d,
            None => match self.reader.tags(image) {
                Ok(tags) => tags.iter().any(|t| t == "done"),
                Err(e) => return Some(format!("Not marked done: cannot read tags: {e}")),
            },
        };
        let mut change = Change::new(image, "accept and mark done").tag(TagChange {
            tag: "done",
            before: was_done,
            after: true,
        });
        let (mut accepted, mut rejected) = (0, 0);
        for a in self.doc.boxes(image) {
            if a.value.state != ReviewState::Proposed {
                continue;
            }
            let mut after = a.value.clone();
            if self.thresholds.is_shown(a) {
                after.state = ReviewState::Accepted;
                change = change.update(a.id, a.value.clone(), after);
                accepted += 1;
            } else {
                after.state = ReviewState::Rejected;
                change = change.update_because(a.id, a.value.clone(), after, "below threshold");
                rejected += 1;
            }
        }
        self.commit(change);
        Some(match (accepted, rejected) {
            (0, 0) => "Marked done".to_owned(),
            (a, 0) => format!("Accepted {a} proposals, marked done"),
            (a, r) => format!("Accepted {a}, rejected {r} below threshold, marked done"),
        })
    }

    fn accept_visible(&mut self) -> usize {
        let ids: Vec<Uuid> = self
            .boxes()
            .iter()
            .filter(|a| self.thresholds.is_visible_proposal(a))
            .map(|a| a.id)
            .collect();
        self.set_state(&ids, ReviewState::Accepted, "accept proposals");
        ids.len()
    }

    fn copy_previous_boxes(&mut self) {
        let Some(c) = self.current.clone() else {
            return;
        };
        // In a stack, the previous frame; else the previous entry.
        let previous = match self.current_stack() {
            Some((row, rows)) if row > rows.start => Some(row - 1),
            _ => self.previous_row(),
        };
        let Some(prev) = previous.and_then(|r| self.list.rows.get(r)).cloned() else {
            self.message = Some("No previous image to copy from".into());
            return;
        };
        if !self.doc.is_loaded(prev.id) {
            match self.reader.annotations_for_image(prev.id) {
                Ok(b) => self.doc.load(prev.id, b),
                Err(e) => {
                    self.message = Some(format!("Cannot read {}: {e}", prev.path));
                    return;
                }
            }
        }
        let (w, h) = (f64::from(c.width), f64::from(c.height));
        let mut change = Change::new(c.id, "copy boxes");
        let mut n = 0;
        for a in self.doc.boxes(prev.id) {
            if !a.value.state.is_label() {
                continue;
            }
            let bbox = a.value.bbox.clipped(w, h);
            if bbox.area() <= 0.0 {
                continue;
            }
            let value = AnnotationValue {
                image: c.id,
                class: a.value.class,
                bbox,
                source: Source::Human,
                state: ReviewState::Submitted,
                flags: a.value.flags,
                deleted: false,
                attributes: a.value.attributes.clone(),
            };
            change = change.create(Uuid::now_v7(), value);
            n += 1;
        }
        self.commit(change);
        self.message = Some(format!("Copied {n} boxes from {}", prev.path));
    }

    // ------------------------------------------------------------------ stacks

    /// The current row and the rows of its stack, when the current image is a frame of one.
    fn current_stack(&self) -> Option<(usize, std::ops::Range<usize>)> {
        let row = self.current.as_ref()?.row?;
        let rows = self.list.stack_rows(row);
        (rows.len() > 1).then_some((row, rows))
    }

    /// "frame 3 of 40 · 45.0 mm" for the status bar.
    pub fn frame_text(&self) -> Option<String> {
        let (row, rows) = self.current_stack()?;
        let mut text = format!("frame {} of {}", row - rows.start + 1, rows.len());
        if let Some(mm) = self.list.rows.get(row).and_then(|r| r.slice_mm) {
            text.push_str(&format!(" · {mm:.1} mm"));
        }
        if self.cine.is_some() {
            text.push_str(" · playing (Shift+P)");
        }
        Some(text)
    }

    /// Shows another frame of the current stack: `to` picks it from (row, stack rows).
    fn step_frame(&mut self, to: impl Fn(usize, std::ops::Range<usize>) -> Option<usize>) {
        match self.current_stack() {
            Some((row, rows)) => {
                if let Some(next) = to(row, rows).filter(|&n| n != row) {
                    self.show_row(next);
                }
            }
            None => self.message = Some("This image is not part of a stack".into()),
        }
    }

    /// Advances cine playback when its time has come, and keeps frames coming.
    fn tick_cine(&mut self, ctx: &egui::Context) {
        let Some(last) = self.cine else {
            return;
        };
        let Some((row, rows)) = self.current_stack() else {
            self.cine = None;
            return;
        };
        let period = Duration::from_secs_f64(1.0 / CINE_FPS);
        if last.elapsed() >= period {
            let next = if row + 1 < rows.end {
                row + 1
            } else {
                rows.start
            };
            self.show_row(next);
            self.cine = Some(Instant::now());
        }
        ctx.request_repaint_after(period);
    }

    /// Copies the selected box to the next frame of the stack, tying both to one track, and
    /// shows that frame with the copy selected.
    fn copy_box_to_next_frame(&mut self) {
        let Some((row, rows)) = self.current_stack() else {
            self.message = Some("This image is not part of a stack".into());
            return;
        };
        let Some(c) = self.current.clone() else {
            return;
        };
        let Some(box_) = self.selected.and_then(|id| self.doc.get(c.id, id)).cloned() else {
            self.message = Some("Select a box to copy to the next frame".into());
            return;
        };
        if row + 1 >= rows.end {
            self.message = Some("This is the stack's last frame".into());
            return;
        }
        let track = match box_.value.attributes.get(TRACK) {
            Some(crate::model::AttributeValue::Text(t)) => t.clone(),
            _ => {
                // The source becomes the track's first keyframe.
                let t = Uuid::now_v7().to_string();
                let mut after = box_.value.clone();
                after.attributes.insert(TRACK, t.as_str());
                self.commit(Change::new(c.id, "start a track").update(
                    box_.id,
                    box_.value.clone(),
                    after,
                ));
                t
            }
        };
        let next = self.list.rows[row + 1].clone();
        self.show_row(row + 1);
        let (w, h) = (f64::from(next.width), f64::from(next.height));
        let bbox = box_.value.bbox.clipped(w, h);
        if bbox.area() <= 0.0 {
            self.message = Some("The box lies outside the next frame".into());
            return;
        }
        let mut attributes = box_.value.attributes.clone();
        attributes.insert(TRACK, track.as_str());
        let id = Uuid::now_v7();
        let value = AnnotationValue {
            image: next.id,
            class: box_.value.class,
            bbox,
            source: Source::Human,
            state: ReviewState::Submitted,
            flags: box_.value.flags,
            deleted: false,
            attributes,
        };
        self.commit(Change::new(next.id, "copy box to next frame").create(id, value));
        self.selected = Some(id);
        self.message = Some(format!(
            "Copied the box to frame {} of {}",
            row + 2 - rows.start,
            rows.len()
        ));
    }

    /// Proposes the selected box's track on the frames between its keyframes (labels of the
    /// track on other frames of the stack), as proposals of the `interpolation` run: reviewed
    /// like a model's.
    fn interpolate(&mut self) {
        let Some((_, rows)) = self.current_stack() else {
            self.message = Some("This image is not part of a stack".into());
            return;
        };
        let Some(c) = self.current.clone() else {
            return;
        };
        let Some(box_) = self.selected.and_then(|id| self.doc.get(c.id, id)).cloned() else {
            self.message = Some("Select a box of the track to interpolate".into());
            return;
        };
        let Some(crate::model::AttributeValue::Text(track)) =
            box_.value.attributes.get(TRACK).cloned()
        else {
            self.message = Some(
                "The selected box has no track: copy it to another frame with Shift+PageDown, move the copy, then interpolate"
                    .into(),
            );
            return;
        };
        let run = match self.reader.run_by_name(INTERPOLATION_RUN) {
            Ok(r) => r.id,
            Err(_) => {
                // Made by the writer; the interpolation runs when it answers.
                self.pending_interpolation = Some(box_.id);
                self.writer
                    .send(Request::EnsureRun(INTERPOLATION_RUN.to_owned()));
                return;
            }
        };
        let frames: Vec<ImageRow> = self.list.rows[rows.clone()].to_vec();
        let mut keys = Vec::new();
        let mut skip = Vec::new();
        for (f, r) in frames.iter().enumerate() {
            if !self.doc.is_loaded(r.id) {
                match self.reader.annotations_for_image(r.id) {
                    Ok(b) => self.doc.load(r.id, b),
                    Err(e) => {
                        self.message = Some(format!("Cannot read {}: {e}", r.path));
                        return;
                    }
                }
            }
            let f = u32::try_from(f).unwrap_or(u32::MAX);
            for a in self.doc.boxes(r.id) {
                let same = matches!(a.value.attributes.get(TRACK),
                    Some(crate::model::AttributeValue::Text(t)) if *t == track);
                if !same || a.value.state == ReviewState::Rejected {
                    continue;
                }
                skip.push(f);
                if a.value.state.is_label() {
                    keys.push((f, a.value.bbox));
                }
            }
        }
        let made = crate::stacks::interpolate(&keys, &skip);
        if made.is_empty() {
            self.message = Some(if keys.len() < 2 {
                "Interpolation needs the track labelled on two frames (Shift+PageDown copies a box to the next one)"
                    .into()
            } else {
                "Every frame between the keyframes already has a box of this track".into()
            });
            return;
        }
        for (f, bbox) in &made {
            let r = &frames[*f as usize];
            let mut attributes = Attributes::new();
            attributes.insert(TRACK, track.as_str());
            let value = AnnotationValue {
                image: r.id,
                class: box_.value.class,
                bbox: *bbox,
                source: Source::Model { run, score: 1.0 },
                state: ReviewState::Proposed,
                flags: box_.value.flags,
                deleted: false,
                attributes,
            };
            self.commit(Change::new(r.id, "interpolate").create(Uuid::now_v7(), value));
        }
        self.message = Some(format!(
            "Proposed {} boxes between {} keyframes: review them like model proposals",
            made.len(),
            keys.len()
        ));
    }

    fn select_step(&mut self, forward: bool) {
        let ids = self.shown_ids();
        if ids.is_empty() {
            return;
        }
        let pos = self.selected.and_then(|s| ids.iter().position(|i| *i == s));
        let next = match (pos, forward) {
            (None, true) => 0,
            (None, false) => ids.len() - 1,
            (Some(p), true) => (p + 1) % ids.len(),
            (Some(p), false) => (p + ids.len() - 1) % ids.len(),
        };
        self.selected = Some(ids[next]);
    }

    /// Applies one command. Returns what only the app can do (dialogs, switching projects).
    #[allow(clippy::too_many_lines)]
    pub fn apply(&mut self, command: Command) -> Option<AppRequest> {
        match command {
            // A triage ranking or an audit sample, when one is followed, comes before the list.
            Command::NextImage if self.lead.queue_active() => self.queue_step(true),
            Command::PreviousImage if self.lead.queue_active() => self.queue_step(false),
            Command::Model(c) => {
                let at = RunContext {
                    current: self.current.as_ref().map(|c| c.id),
                    rows: &self.list.rows,
                    user: self.reader.current_user().ok().map(|u| u.id.to_string()),
                };
                if let Some(m) = self.model.apply(c, &at) {
                    self.message = Some(m);
                }
            }
            Command::Lead(c) => match self.lead.apply(c) {
                LeadEffect::Show(id) => self.show_queued(id),
                LeadEffect::ShowBox { image, ann } => self.show_box(image, ann),
                LeadEffect::Bulk { boxes, fix } => self.bulk_fix(&boxes, fix),
                LeadEffect::Write(w) => self.writer.send(Request::Lead(w)),
                LeadEffect::Fix(fix) => self.fix_issue(fix),
                LeadEffect::Say(m) => self.message = Some(m),
                LeadEffect::None => {}
            },
            Command::NextImage => match self.next_row() {
                Some(r) => self.show_row(r),
                None => self.message = Some("Last image of the list".into()),
            },
            Command::PreviousImage => match self.previous_row() {
                Some(r) => self.show_row(r),
                None => self.message = Some("First image of the list".into()),
            },
            Command::NextUnreviewed => self.next_where("unreviewed", |s, row| {
                let done = s.done.get(&row.id).copied().unwrap_or(row.done);
                !done && (row.proposals > 0 || row.boxes == 0)
            }),
            Command::NextFlagged => self.next_where("flagged", |s, row| {
                s.flags.get(&row.id).copied().unwrap_or(row.flagged)
            }),
            Command::NextWithProposals => {
                let from = self.next_row().unwrap_or(self.list.rows.len());
                let current = self.current.as_ref().map(|c| c.id);
                match (from..self.list.rows.len()).find(|&r| {
                    let row = &self.list.rows[r];
                    row.proposals > 0 && Some(row.id) != current
                }) {
                    Some(r) => self.show_row(r),
                    None => {
                        self.message = Some("No image after this one has proposals left".into());
                    }
                }
            }
            Command::ShowRow(r) => self.show_row(r),
            Command::Select(id) => {
                self.selected = id;
                self.canvas.cancel_gesture();
            }
            Command::SelectNextBox => self.select_step(true),
            Command::SelectPreviousBox => self.select_step(false),
            Command::CreateBox(bbox) => self.new_box(bbox, "draw box"),
            // Four clicks on one pixel row or column span no object.
            Command::CreateFourClickBox(bbox) if bbox.w < 2.0 || bbox.h < 2.0 => {
                self.message =
                    Some("The four points span less than 2 pixels across or down: no box".into());
            }
            Command::CreateFourClickBox(bbox) => self.new_box(bbox, "four-click box"),
            Command::CancelClicks => {
                if self.canvas.drop_clicks() {
                    self.message = Some("Four-click box cancelled".into());
                }
            }
            Command::ToggleFourClick => {
                self.canvas.four_click = !self.canvas.four_click;
                self.canvas.drop_clicks();
                self.message = Some(if self.canvas.four_click {
                    self.canvas.ruler_mode = false;
                    self.canvas.ruler = None;
                    "Four-click boxes: click the leftmost, topmost, rightmost and bottommost points of the object (Escape drops the clicks)".into()
                } else {
                    "Four-click boxes off: drag to draw".into()
                });
            }
            Command::ToggleSnap => {
                self.snap = !self.snap;
                self.message = Some(if self.snap {
                    format!(
                        "Snap on: a drawn box that overlaps a proposal of its class at IoU {:.1} or more accepts that proposal",
                        box_tools::SNAP_MIN_IOU
                    )
                } else {
                    "Snap off: drawn boxes are kept as drawn".into()
                });
            }
            Command::SetBBox { id, bbox, what } => self.set_bbox(id, bbox, what),
            Command::Nudge { dx, dy } => {
                if let Some((_, a)) = self.selected_box() {
                    #[allow(clippy::cast_possible_truncation)]
                    let delta = egui::vec2(dx as f32, dy as f32);
                    let bbox = self.canvas.viewport.moved_bbox(&a.value.bbox, delta);
                    self.set_bbox(a.id, bbox, "nudge box");
                }
            }
            Command::SetClass { target, class } => self.set_class(target, class),
            Command::ClassAt(i) => {
                if let Some(class) = self.classes.at(i).map(|c| c.id) {
                    let target = self
                        .selected
                        .map_or(PickerTarget::NewBoxes, PickerTarget::Selected);
                    self.set_class(target, class);
                }
            }
            Command::CreateClass { name, target } => {
                self.pending_classes.push((name.clone(), target));
                self.writer.send(Request::EnsureClass(name));
            }
            Command::DeleteSelected => {
                if let Some(id) = self.selected {
                    self.delete(id);
                }
            }
            Command::Delete(id) => self.delete(id),
            Command::Accept(id) => self.accept(id),
            Command::AcceptSelected => {
                if let Some(id) = self.selected {
                    self.accept(id);
                }
            }
            Command::AcceptAllVisible => {
                let n = self.accept_visible();
                self.message = Some(format!("Accepted {n} proposals"));
            }
            Command::ApproveLabels => {
                let whole_image = self.selected.is_none();
                if self.approve_labels() && whole_image {
                    let said = self.message.take();
                    let next = self.apply(Command::NextImage);
                    if self.message.is_none() {
                        self.message = said;
                    }
                    return next;
                }
            }
            Command::ReturnLabels => self.open_return(),
            Command::ReturnWith { boxes, comment } => self.return_labels(&boxes, &comment),
            // Space accepts what it shows: with the proposals hidden it would accept unseen
            // boxes, so it refuses and says why.
            Command::AcceptAndNext
                if self.canvas.hide_proposals
                    && self
                        .boxes()
                        .iter()
                        .any(|a| a.value.state == ReviewState::Proposed) =>
            {
                self.message = Some(
                    "Proposals are hidden (Shift+H shows them): nothing accepted, image not marked done"
                        .into(),
                );
            }
            Command::AcceptAndNext => {
                let said = self.resolve_image();
                let next = self.apply(Command::NextImage);
                if self.message.is_none() {
                    self.message = said;
                }
                return next;
            }
            Command::CopyPreviousBoxes => self.copy_previous_boxes(),
            Command::MoreLikeThis => self.more_like_this(),
            Command::NextFrame => self.step_frame(|r, rows| (r + 1 < rows.end).then_some(r + 1)),
            Command::PreviousFrame => {
                self.step_frame(|r, rows| (r > rows.start).then(|| r - 1));
            }
            Command::FirstFrame => self.step_frame(|_, rows| Some(rows.start)),
            Command::LastFrame => self.step_frame(|_, rows| rows.end.checked_sub(1)),
            Command::ToggleCine => {
                if self.cine.take().is_none() {
                    if self.current_stack().is_some() {
                        self.cine = Some(Instant::now());
                    } else {
                        self.message = Some("This image is not part of a stack".into());
                    }
                }
            }
            Command::CopyBoxToNextFrame => self.copy_box_to_next_frame(),
            Command::Interpolate => self.interpolate(),
            Command::Undo => match self.doc.undo() {
                Some(r) => {
                    self.lead.fixes_uncertain();
                    self.replayed(r, "Undid");
                }
                None => self.message = Some("Nothing to undo".into()),
            },
            Command::Redo => match self.doc.redo() {
                Some(r) => {
                    self.lead.fixes_uncertain();
                    self.replayed(r, "Redid");
                }
                None => self.message = Some("Nothing to redo".into()),
            },
            Command::Fit => self.canvas.viewport.fit(),
            Command::OneToOne => {
                let centre = self.canvas.viewport.canvas().center();
                self.canvas
                    .viewport
                    .one_to_one(self.pixels_per_point(), centre);
            }
            Command::Zoom(f) => {
                let centre = self.canvas.viewport.canvas().center();
                self.canvas.viewport.zoom_about(f, centre);
            }
            Command::ResetDisplay => self.canvas.display = Display::default(),
            Command::NextWindowPreset => {
                let choices = self.window_choices();
                if choices.is_empty() {
                    self.message = Some("Window presets are for 16-bit images".into());
                } else {
                    let at = choices
                        .iter()
                        .position(|c| c.is_shown(&self.canvas.display))
                        .map_or(0, |i| (i + 1) % choices.len());
                    self.apply(Command::ChooseWindow(at));
                }
            }
            Command::WindowMode => {
                if self.window_panel.is_open() {
                    self.window_panel.close();
                } else if let Some((level, width)) = self.measured_window() {
                    self.window_panel.open(level, width);
                } else {
                    self.message = Some(
                        "Window/level is for 16-bit images (right-drag sets brightness and contrast)"
                            .into(),
                    );
                }
            }
            Command::ChooseWindow(i) => match self.window_choices().get(i) {
                Some(c) => {
                    c.apply(&mut self.canvas.display);
                    self.message = Some(format!("Window: {}", c.name()));
                    self.refresh_window_fields();
                }
                None => self.message = Some(format!("No window {} for this image", i + 1)),
            },
            Command::TypeWindow => self.window_panel.type_window(),
            Command::SetWindow { level, width } => {
                let values = self
                    .current_image()
                    .and_then(|img| img.gray_stats)
                    .and_then(|s| s.values);
                let (lo, hi) = (level - width / 2.0, level + width / 2.0);
                #[allow(clippy::cast_possible_truncation)]
                let (a, b) = match values {
                    Some(v) => (v.stored(lo), v.stored(hi)),
                    None => (lo as f32, hi as f32),
                };
                let d = &mut self.canvas.display;
                d.window = Some((a.min(b), a.max(b)));
                d.name = None;
                self.message = Some(format!("Window: level {level} width {width}"));
            }
            Command::ToggleRuler => {
                self.canvas.ruler_mode = !self.canvas.ruler_mode;
                if self.canvas.ruler_mode {
                    self.canvas.four_click = false;
                    self.canvas.drop_clicks();
                }
                if !self.canvas.ruler_mode {
                    self.canvas.ruler = None;
                }
                self.message = Some(if self.canvas.ruler_mode {
                    "Ruler: drag to measure".into()
                } else {
                    "Ruler off".into()
                });
            }
            Command::ToggleProposals => {
                self.canvas.hide_proposals = !self.canvas.hide_proposals;
                if self.canvas.hide_proposals
                    && let Some(id) = self.selected
                    && self
                        .boxes()
                        .iter()
                        .any(|a| a.id == id && a.value.state == ReviewState::Proposed)
                {
                    self.selected = None;
                }
            }
            Command::ToggleOutlines => self.canvas.outlines_only = !self.canvas.outlines_only,
            Command::ToggleBoxes => self.canvas.show_boxes = !self.canvas.show_boxes,
            Command::FocusSearch => self.list.focus_search(),
            Command::OpenClassPicker => {
                let target = self
                    .selected
                    .map_or(PickerTarget::NewBoxes, PickerTarget::Selected);
                self.picker.open(target);
            }
            Command::SetFilter(filter) => self.request_list(filter),
            Command::ToggleFlag => self.toggle_flag(),
            Command::AddImagesDialog => {
                if let Some(paths) = rfd::FileDialog::new()
                    .set_title("Add images")
                    .add_filter("Images", crate::imaging::IMAGE_EXTENSIONS)
                    .set_directory(self.reader.root())
                    .pick_files()
                {
                    self.add_images(paths);
                }
            }
            Command::AddFolderDialog => {
                if let Some(dir) = rfd::FileDialog::new()
                    .set_title("Add a folder of images (recursively)")
                    .set_directory(self.reader.root())
                    .pick_folder()
                {
                    self.add_images(vec![dir]);
                }
            }
            Command::ImportDialog(format) => {
                let dialog = rfd::FileDialog::new()
                    .set_title(format!("Import {format} labels"))
                    .set_directory(self.reader.root());
                let picked = if format == Format::Coco {
                    dialog.add_filter("COCO JSON", &["json"]).pick_file()
                } else {
                    dialog.pick_folder()
                };
                if let Some(path) = picked {
                    self.message = Some(format!("Importing {}…", path.display()));
                    self.writer.send(Request::Import { format, path });
                }
            }
            Command::ExportDialog(format) => {
                let dialog = rfd::FileDialog::new()
                    .set_title(format!("Export the current labels as {format}"))
                    .set_directory(self.reader.root());
                let picked = if format == Format::Coco {
                    dialog
                        .add_filter("COCO JSON", &["json"])
                        .set_file_name("labels.json")
                        .save_file()
                } else {
                    dialog.pick_folder()
                };
                if let Some(out) = picked {
                    self.message = Some(format!("Exporting to {}…", out.display()));
                    self.writer.send(Request::Export { format, out });
                }
            }
            Command::RetryWrites => self.writer.retry_failed(),
            Command::Sync(c) => self.sync_command(c),
            Command::ToggleHelp => return Some(AppRequest::ToggleHelp),
            Command::OpenSettings => return Some(AppRequest::OpenSettings),
            Command::OpenProjectDialog => return Some(AppRequest::OpenProjectDialog),
            Command::NewProjectDialog => return Some(AppRequest::NewProjectDialog),
            Command::OpenProject(p) => return Some(AppRequest::OpenProject(p)),
            Command::CloseProject => return Some(AppRequest::CloseProject),
        }
        None
    }

    /// Takes in what a model run reported: new classes, each image's new proposals (merged into
    /// memory without touching edits not yet stored), the list's counts.
    fn model_update(&mut self, update: ModelUpdate) -> Option<AppRequest> {
        match update {
            ModelUpdate::Started { run_name } => {
                self.run = Some(run_name);
                match self.reader.classes() {
                    Ok(classes) => classes.into_iter().for_each(|c| self.classes.push(c)),
                    Err(e) => self.message = Some(format!("Could not read the classes: {e}")),
                }
                if self.current_class.is_none() {
                    self.current_class = self.classes.at(0).map(|c| c.id);
                }
            }
            ModelUpdate::Stored { image, boxes } => {
                if self.doc.is_loaded(image) {
                    self.doc.merge_from_store(image, boxes);
                    self.refresh_row_counts(image);
                } else if let Some(row) = self.list.rows.iter_mut().find(|r| r.id == image) {
                    let count = |f: &dyn Fn(&Annotation) -> bool| {
                        u32::try_from(boxes.iter().filter(|a| f(a)).count()).unwrap_or(u32::MAX)
                    };
                    row.boxes = count(&|a| a.value.state.is_label());
                    row.proposals = count(&|a| a.value.state == ReviewState::Proposed);
                }
            }
            ModelUpdate::Message(m) => self.message = Some(m),
            ModelUpdate::Finished => {
                self.lead.data_changed();
                self.request_list(self.list.filter.clone());
            }
            ModelUpdate::Remember(m) => return Some(AppRequest::RememberModel(m)),
            ModelUpdate::RememberProvider(p) => return Some(AppRequest::RememberProvider(p)),
        }
        None
    }

    /// Shows the next (or previous) image of the followed queue.
    fn queue_step(&mut self, forward: bool) {
        let current = self.current.as_ref().map(|c| c.id);
        match self.lead.queue_step(current, forward) {
            Some(id) => self.show_queued(id),
            None => {
                self.message = Some(
                    if forward {
                        "Last image of the queue"
                    } else {
                        "First image of the queue"
                    }
                    .into(),
                );
            }
        }
    }

    /// Shows an image of the followed queue, with the box the queue names for it selected.
    fn show_queued(&mut self, image: Uuid) {
        match self.lead.queue_box(image) {
            Some(ann) => self.show_box(image, ann),
            None => self.show_id(image),
        }
    }

    /// Shows an image with one of its boxes selected and on screen.
    fn show_box(&mut self, image: Uuid, ann: Uuid) {
        self.show_id(image);
        if self.current.as_ref().map(|c| c.id) != Some(image) {
            return;
        }
        match self.doc.get(image, ann) {
            Some(a) => {
                self.canvas.reveal(a.value.bbox);
                self.selected = Some(ann);
            }
            None => self.message = Some("That box is no longer on this image".into()),
        }
    }

    /// The crop grid's bulk fix: every box (image, box) given the class, or deleted (a
    /// proposal rejected), as one undoable change over all their images. Boxes memory no
    /// longer has (deleted since the grid was read) are left out.
    fn bulk_fix(&mut self, boxes: &[(Uuid, Uuid)], fix: super::lead::CropsFix) {
        let Some(&(first, _)) = boxes.first() else {
            return;
        };
        for &(image, _) in boxes {
            if !self.doc.is_loaded(image) {
                match self.reader.annotations_for_image(image) {
                    Ok(list) => self.doc.load(image, list),
                    Err(e) => {
                        self.message = Some(format!("Cannot read the boxes of an image: {e}"));
                        return;
                    }
                }
            }
        }
        let what = match fix {
            super::lead::CropsFix::SetClass(_) => "change class of crops",
            super::lead::CropsFix::Remove => "delete crops",
        };
        let mut change = Change::new(first, what);
        let mut done = 0usize;
        for &(image, id) in boxes {
            let Some(a) = self.doc.get(image, id) else {
                continue;
            };
            let before = a.value.clone();
            match fix {
                super::lead::CropsFix::SetClass(class) => {
                    if before.class == class {
                        continue;
                    }
                    let mut after = before.clone();
                    after.class = class;
                    after.state = edited_state(&before);
                    change = change.update(id, before, after);
                }
                super::lead::CropsFix::Remove if before.state == ReviewState::Proposed => {
                    let mut after = before.clone();
                    after.state = ReviewState::Rejected;
                    change = change.update(id, before, after);
                }
                super::lead::CropsFix::Remove => change = change.delete(id, before),
            }
            done += 1;
            if self.selected == Some(id) && matches!(fix, super::lead::CropsFix::Remove) {
                self.selected = None;
            }
        }
        self.commit(change);
        self.message = Some(format!(
            "{} {done} box(es); undo reverts them together",
            match fix {
                super::lead::CropsFix::SetClass(class) =>
                    format!("Class {} for", self.classes.name(class)),
                super::lead::CropsFix::Remove => "Deleted or rejected".to_owned(),
            }
        ));
    }

    /// Adds image files or folders (on the writer thread).
    pub fn add_images(&mut self, paths: Vec<PathBuf>) {
        self.message = Some(format!("Adding {} item(s)…", paths.len()));
        self.writer.send(Request::AddImages(paths));
    }

    fn accept(&mut self, id: Uuid) {
        if let Some((_, a)) = self.current_box(id)
            && a.value.state == ReviewState::Proposed
        {
            self.set_state(&[id], ReviewState::Accepted, "accept proposal");
        }
    }

    /// Sets or clears an image tag a change carried (`done`), remembering it for the list.
    fn send_tag(&mut self, image: Uuid, tag: Option<(&'static str, bool)>) {
        let Some((tag, on)) = tag else {
            return;
        };
        if tag == "done" {
            self.done.insert(image, on);
        }
        self.writer.send(Request::SetTag {
            image,
            tag: tag.into(),
            on,
        });
    }

    fn replayed(&mut self, r: super::document::Replayed, verb: &str) {
        self.time.action();
        self.send_tag(r.image, r.tag);
        self.writer.send(Request::Apply(r.edits));
        if self.current.as_ref().map(|c| c.id) != Some(r.image) {
            self.show_id(r.image);
        }
        self.refresh_row_counts(r.image);
        self.drop_stale_selection();
        self.canvas.cancel_gesture();
        self.message = Some(format!("{verb} {}", r.what));
    }

    fn toggle_flag(&mut self) {
        let Some(c) = &self.current else {
            return;
        };
        let id = c.id;
        let flagged = match self.flags.get(&id) {
            Some(f) => *f,
            None => match self.reader.tags(id) {
                Ok(tags) => tags.iter().any(|t| t == "flagged"),
                Err(e) => {
                    self.message = Some(format!("Cannot read tags: {e}"));
                    return;
                }
            },
        };
        self.flags.insert(id, !flagged);
        self.writer.send(Request::SetTag {
            image: id,
            tag: "flagged".into(),
            on: !flagged,
        });
        self.message = Some(
            if flagged {
                "Flag removed"
            } else {
                "Image flagged"
            }
            .into(),
        );
    }

    // ------------------------------------------------------------------ sync

    fn sync_command(&mut self, command: SyncCommand) {
        match command {
            SyncCommand::Now => {
                self.sync.sync_now();
                self.message = Some("Syncing…".into());
            }
            SyncCommand::TogglePanel => self.sync.open = !self.sync.open,
            SyncCommand::Resolve { annotation, take } => {
                self.message = Some("Resolving the conflict…".into());
                self.writer.send(Request::Resolve {
                    annotation,
                    take,
                    key_dir: self.sync.key_dir().map(Path::to_path_buf),
                });
            }
            SyncCommand::Show { image, annotation } => {
                match self.list.rows.iter().position(|r| r.path == image) {
                    Some(row) => self.show_row(row),
                    None => match self.reader.image_by_path(&image) {
                        Ok(Some(rec)) => self.show_id(rec.id),
                        Ok(None) => self.message = Some(format!("{image} is not in the project")),
                        Err(e) => self.message = Some(format!("Cannot show {image}: {e}")),
                    },
                }
                self.selected = Some(annotation);
            }
        }
    }

    /// A sync pulled revisions: read again the classes, the images without edits in memory
    /// (memory is ahead of the store for the others) and the image list.
    /// After a pull, re-reads the images edited in this session once the writer has stored
    /// everything (so nothing shown is newer than the store), and drops a selection whose box
    /// is gone.
    /// Forgets the selection when its box is no longer on the current image.
    fn drop_stale_selection(&mut self) {
        if let Some(s) = self.selected
            && self.current_box(s).is_none()
        {
            self.selected = None;
        }
    }

    fn refresh_edited_images(&mut self) {
        if !self.refresh_after_pull || self.writer.state() != super::writer::SaveState::Saved {
            return;
        }
        self.refresh_after_pull = false;
        for image in self.doc.loaded_images() {
            match self.reader.annotations_for_image(image) {
                Ok(boxes) => self.doc.replace_from_store(image, boxes),
                Err(e) => self.message = Some(format!("Cannot read the boxes of an image: {e}")),
            }
            self.refresh_row_counts(image);
        }
        self.drop_stale_selection();
    }

    fn after_pull(&mut self, revisions: usize) {
        match self.reader.classes() {
            Ok(classes) => {
                for c in classes {
                    self.classes.push(c);
                }
            }
            Err(e) => self.message = Some(format!("Could not read the classes: {e}")),
        }
        self.doc.forget_unedited();
        if let Some(c) = &self.current
            && !self.doc.is_loaded(c.id)
        {
            match self.reader.annotations_for_image(c.id) {
                Ok(boxes) => self.doc.load(c.id, boxes),
                Err(e) => self.message = Some(format!("Cannot read the boxes of {}: {e}", c.path)),
            }
        }
        // Images edited here keep their boxes in memory; they take the merged state from the
        // store as soon as every edit of theirs is stored (this frame, or a later one).
        self.refresh_after_pull = true;
        self.refresh_edited_images();
        self.drop_stale_selection();
        self.request_list(self.list.filter.clone());
        self.message = Some(format!(
            "Pulled {revisions} revision(s) from the shared store"
        ));
    }

    /// A conflict resolution is stored: show the kept value (as an undoable step in memory;
    /// the store has it already) and let sync push it.
    fn resolved(&mut self, annotation: Uuid, result: Result<Annotation, String>) {
        match result {
            Ok(stored) => {
                let image = stored.value.image;
                if let Some(before) = self.doc.get(image, annotation).cloned() {
                    // The edits this returns are already in the store (the resolution).
                    let _ = self
                        .doc
                        .commit(Change::new(image, "resolve conflict").update(
                            annotation,
                            before.value,
                            stored.value,
                        ));
                    self.refresh_row_counts(image);
                }
                self.sync.resolved(annotation);
                self.message = Some("Conflict resolved".into());
            }
            Err(e) => self.message = Some(format!("Could not resolve the conflict: {e}")),
        }
    }

    fn pixels_per_point(&self) -> f32 {
        // The viewport works in points; 1:1 needs the display scale, read at draw time.
        self.ppp
    }
}
