//! The data-loop views of the app: the lead dashboard (annotators, batches, audits), the triage
//! view, the evaluation view, and beside the canvas the box history, the image's tags and
//! metadata, and the audit verdict of a sampled image. Plus the user profile (first-start
//! dialog, shown in the top bar).
//!
//! `LeadViews` is owned by the session. Everything it shows is read on its own query thread
//! (`jobs`) and cached per data generation: the session calls `data_changed` whenever a write
//! lands, and a view asks again only when it is on screen. Writes go through the store writer
//! (`writes::LeadWrite`) and the core functions of `crate::review`.

mod cache;
mod crops_view;
mod dashboard;
mod details;
mod eval_view;
mod jobs;
mod profile;
mod triage_view;
mod writes;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use eframe::egui::{self, Ui};
use uuid::Uuid;

use super::commands::Command;
use super::shortcuts::{Action, Keymap};
use crate::model::User;
use crate::review::similar::{Neighbour, Target};
use crate::review::{BatchDetail, LabelIssue, TriageImage};
use crate::store::{ImageFilter, Project};

pub use crops_view::CropsFix;
pub use jobs::{Answer, Choices, DashboardData, EvalResult, HistoryRow, ImageMeta, Query};
pub use triage_view::IssueKey;
pub use writes::{LeadDone, LeadOutcome, LeadWrite, perform};

use cache::Cached;
use jobs::Jobs;

/// What the central area shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// The canvas.
    #[default]
    Label,
    Triage,
    Evaluate,
    Dashboard,
    /// Every box of a class as a grid of crops.
    Crops,
}

impl Mode {
    /// Every mode, in the order of the switch.
    pub const ALL: [Mode; 5] = [
        Mode::Label,
        Mode::Triage,
        Mode::Evaluate,
        Mode::Dashboard,
        Mode::Crops,
    ];

    /// The mode's name on the switch and in the View menu.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Label => "Label",
            Mode::Triage => "Triage",
            Mode::Evaluate => "Evaluate",
            Mode::Dashboard => "Dashboard",
            Mode::Crops => "Crops",
        }
    }

    /// The shortcut that shows it.
    pub fn action(self) -> Action {
        match self {
            Mode::Label => Action::ShowLabel,
            Mode::Triage => Action::ShowTriage,
            Mode::Evaluate => Action::ShowEvaluate,
            Mode::Dashboard => Action::ShowDashboard,
            Mode::Crops => Action::ShowCrops,
        }
    }
}

/// A list of images that "next" and "previous" follow instead of the image list (triage order,
/// an audit sample, images of boxes alike).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Queue {
    /// What it is, for people ("triage of detector-v1").
    pub name: String,
    pub images: Vec<Uuid>,
    /// The box to select when an image opens, by image (a queue of boxes alike).
    pub boxes: HashMap<Uuid, Uuid>,
}

/// What the data-loop views ask of the session.
#[derive(Clone, Debug, PartialEq)]
pub enum LeadCommand {
    SetMode(Mode),
    /// Store something (batches, audits, tags, metadata, profile).
    Write(LeadWrite),
    /// Show an image on the canvas (switching to Label); with a queue, "next" follows it.
    Open {
        image: Uuid,
        queue: Option<Queue>,
    },
    /// Show an image on the canvas (switching to Label) with one of its boxes selected.
    OpenBox {
        image: Uuid,
        ann: Uuid,
    },
    /// "Next" follows the image list again.
    LeaveQueue,
    /// Show the crop grid of this class.
    ShowCrops(Uuid),
    /// The crop grid: fix these boxes (image, box) in one undoable change.
    CropsFix {
        boxes: Vec<(Uuid, Uuid)>,
        fix: CropsFix,
    },
    /// The crop grid's keys: open the first selected box (Enter), delete or reject the
    /// selected boxes (Delete), forget the selection (Escape).
    CropsOpenSelected,
    CropsRemoveSelected,
    CropsDeselect,
    /// Triage: fix this issue (or, with `None`, the selected one) as its reason suggests.
    FixIssue(Option<IssueKey>),
    /// Triage: select this issue (the one the fix key acts on).
    SelectIssue(IssueKey),
    /// Open the profile dialog.
    EditProfile,
}

/// Draws the mode switch (in the top bar): Label, Triage, Evaluate, Dashboard.
pub fn mode_switch_ui(ui: &mut Ui, current: Mode, keymap: &Keymap, out: &mut Vec<Command>) {
    for m in Mode::ALL {
        let r = ui
            .selectable_label(current == m, m.label())
            .on_hover_text(keymap.tooltip(m.action()));
        if r.clicked() && current != m {
            out.push(Command::Lead(LeadCommand::SetMode(m)));
        }
    }
}

/// What the session must do after a `LeadCommand`.
#[derive(Debug, PartialEq)]
pub enum LeadEffect {
    None,
    Show(Uuid),
    /// Show an image with this box selected.
    ShowBox {
        image: Uuid,
        ann: Uuid,
    },
    /// Fix these boxes (image, box) as one undoable change.
    Bulk {
        boxes: Vec<(Uuid, Uuid)>,
        fix: CropsFix,
    },
    Write(LeadWrite),
    /// Fix a triage issue: the session plans it on its boxes and commits it as an undoable
    /// change, then calls [`LeadViews::issue_fixed`].
    Fix(IssueToFix),
    /// Something to say in the status bar.
    Say(String),
}

/// A triage issue the session is asked to fix.
#[derive(Clone, Debug, PartialEq)]
pub struct IssueToFix {
    pub key: IssueKey,
    pub issue: LabelIssue,
    /// The model run the issue comes from (for the note stored with the fix).
    pub run: String,
}

/// What the session must do after a `LeadDone`.
#[derive(Debug, Default, PartialEq)]
pub struct LeadReport {
    pub message: Option<String>,
    /// The user the session's read connection must act as now.
    pub profile: Option<User>,
}

/// What the central views need from the session.
pub struct LeadInput<'a> {
    /// The image list's filter (a batch can be made from it).
    pub filter: &'a ImageFilter,
    pub keymap: &'a Keymap,
    /// The project's folder (image paths are relative to it).
    pub root: &'a Path,
}

/// What the panel beside the canvas needs.
pub struct DetailsInput<'a> {
    pub image: Option<Uuid>,
    pub selected: Option<Uuid>,
    /// The session's read connection, for point reads (one box, one image).
    pub reader: &'a Project,
}

/// Asks the query thread at the current generation.
pub(crate) struct Asker<'a> {
    jobs: Option<&'a mut Jobs>,
    generation: u64,
}

impl Asker<'_> {
    fn ask(&mut self, query: Query) {
        if let Some(j) = self.jobs.as_deref_mut() {
            j.ask(self.generation, query);
        }
    }
}

/// The data-loop views and their query thread.
pub struct LeadViews {
    mode: Mode,
    generation: u64,
    jobs: Option<Jobs>,
    jobs_error: Option<String>,
    choices: Cached<(), Choices>,
    profile: profile::Profile,
    dashboard: dashboard::Dashboard,
    triage: triage_view::TriageView,
    eval: eval_view::EvalView,
    details: details::Details,
    crops: crops_view::CropsView,
    queue: Option<(Queue, usize)>,
    /// "More like this" asked and not answered yet: the target and the queue's name.
    similar_asked: Option<(Target, String)>,
    /// Its answer, for the session to open: the first neighbour and the queue.
    similar_found: Option<Result<(Uuid, Queue), String>>,
}

impl LeadViews {
    /// Starts the query thread on `path` and reads who the user is (a quick read, at open).
    pub fn new(reader: &Project, path: &Path, ctx: &egui::Context) -> LeadViews {
        let (jobs, jobs_error) = match Jobs::start(path.to_path_buf(), ctx.clone()) {
            Ok(j) => (Some(j), None),
            Err(e) => {
                tracing::warn!("cannot start the lead query thread: {e:#}");
                (None, Some(format!("Cannot read for these views: {e:#}")))
            }
        };
        LeadViews {
            mode: Mode::Label,
            generation: 0,
            jobs,
            jobs_error,
            choices: Cached::default(),
            profile: profile::Profile::read(reader),
            dashboard: dashboard::Dashboard::default(),
            triage: triage_view::TriageView::default(),
            eval: eval_view::EvalView::default(),
            details: details::Details::default(),
            crops: crops_view::CropsView::new(ctx),
            queue: None,
            similar_asked: None,
            similar_found: None,
        }
    }

    /// Asks for the images or boxes most like `target`; the answer comes through
    /// [`take_similar`](Self::take_similar). A newer question replaces an unanswered one.
    pub fn ask_similar(&mut self, target: Target, name: String) {
        match self.jobs.as_mut() {
            Some(j) => {
                j.ask(self.generation, Query::Similar(target));
                self.similar_asked = Some((target, name));
            }
            None => {
                self.similar_found = Some(Err(self
                    .jobs_error
                    .clone()
                    .unwrap_or_else(|| "Cannot read the project".into())));
            }
        }
    }

    /// The answer to [`ask_similar`](Self::ask_similar), once: the first neighbour's image and
    /// a queue of the target's image then the neighbours' images (each once, best first).
    pub fn take_similar(&mut self) -> Option<Result<(Uuid, Queue), String>> {
        self.similar_found.take()
    }

    fn similar_answer(&mut self, target: Target, r: Result<Vec<Neighbour>, String>) {
        let Some((asked, name)) = self.similar_asked.take() else {
            return;
        };
        if asked != target {
            // An older question: keep waiting for the newer one.
            self.similar_asked = Some((asked, name));
            return;
        }
        let origin = match target {
            Target::Image(image) | Target::Box { image, .. } => image,
        };
        self.similar_found = Some(r.and_then(|found| {
            let mut images = vec![origin];
            let mut boxes = HashMap::new();
            for n in &found {
                if !images.contains(&n.image) {
                    images.push(n.image);
                    // The most alike box of each image is the one selected there.
                    if let Some(ann) = n.ann {
                        boxes.insert(n.image, ann);
                    }
                }
            }
            if let Target::Box { image, ann } = target {
                boxes.insert(image, ann);
            }
            match images.get(1) {
                Some(&first) => Ok((
                    first,
                    Queue {
                        name,
                        images,
                        boxes,
                    },
                )),
                None if found.is_empty() => Err(format!(
                    "Nothing {name}: no other embedded {}",
                    if matches!(target, Target::Box { .. }) {
                        "box"
                    } else {
                        "image"
                    }
                )),
                None => Err(format!("Only boxes of this image are {name}")),
            }
        }));
    }

    /// The mode of the central area.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Something in the project changed: cached answers are stale, views on screen ask again.
    pub fn data_changed(&mut self) {
        self.generation += 1;
    }

    /// The role of the person working, once chosen.
    pub fn role(&self) -> Option<crate::model::Role> {
        self.profile.user().map(|u| u.role)
    }

    /// "name · role" for the top bar.
    pub fn user_label(&self) -> Option<String> {
        self.profile.label()
    }

    /// True while the profile dialog is up (keys go to it, not to shortcuts).
    pub fn modal_open(&self) -> bool {
        self.profile.is_open()
    }

    /// True while "next" follows a queue.
    pub fn queue_active(&self) -> bool {
        self.queue.is_some()
    }

    /// The queue's name and (position, length).
    pub fn queue_position(&self) -> Option<(&str, usize, usize)> {
        self.queue
            .as_ref()
            .map(|(q, i)| (q.name.as_str(), *i, q.images.len()))
    }

    /// The box to select when `image` opens from the followed queue, if the queue names one.
    pub fn queue_box(&self, image: Uuid) -> Option<Uuid> {
        self.queue
            .as_ref()
            .and_then(|(q, _)| q.boxes.get(&image).copied())
    }

    /// The next (or previous) image of the queue after `current`; `None` at its end.
    pub fn queue_step(&mut self, current: Option<Uuid>, forward: bool) -> Option<Uuid> {
        let (q, pos) = self.queue.as_mut()?;
        if let Some(i) = current.and_then(|c| q.images.iter().position(|x| *x == c)) {
            *pos = i;
        }
        let next = if forward {
            (*pos + 1 < q.images.len()).then_some(*pos + 1)
        } else {
            pos.checked_sub(1)
        }?;
        *pos = next;
        q.images.get(next).copied()
    }

    /// Takes the query thread's answers.
    pub fn poll(&mut self) {
        let answers = match &mut self.jobs {
            Some(j) => j.poll(),
            None => return,
        };
        for (generation, a) in answers {
            self.take(generation, a);
        }
    }

    /// Blocks until every question asked so far is answered. For tests; the UI never waits.
    pub fn wait_for_jobs(&mut self, timeout: Duration) {
        let answers = match &mut self.jobs {
            Some(j) => j.wait(timeout),
            None => return,
        };
        for (generation, a) in answers {
            self.take(generation, a);
        }
    }

    /// Questions not answered yet.
    pub fn jobs_pending(&self) -> usize {
        self.jobs.as_ref().map_or(0, Jobs::pending)
    }

    fn take(&mut self, generation: u64, answer: Answer) {
        match answer {
            Answer::Choices(r) => self.choices.fill(generation, (), r),
            Answer::Dashboard(r) => self.dashboard.data.fill(generation, (), r),
            Answer::Batch(name, r) => self.dashboard.detail.fill(generation, name, r),
            Answer::Triage(opts, r) => self.triage.take(generation, opts, r),
            Answer::Eval(key, r) => self.eval.result.fill(generation, key, r),
            Answer::Similar(target, r) => self.similar_answer(target, r),
            Answer::Crops(key, r) => {
                self.crops
                    .crops
                    .fill(generation, key, r.map(std::sync::Arc::new));
            }
        }
    }

    /// Applies a command of these views.
    pub fn apply(&mut self, command: LeadCommand) -> LeadEffect {
        match command {
            LeadCommand::SetMode(m) => {
                // Showing a view reads it again: other programs (the CLI, a sync) may have
                // changed the project since.
                self.mode = m;
                self.data_changed();
            }
            LeadCommand::Write(w) => return LeadEffect::Write(w),
            LeadCommand::Open { image, queue } => {
                if let Some(q) = queue {
                    let pos = q.images.iter().position(|i| *i == image).unwrap_or(0);
                    self.queue = Some((q, pos));
                }
                self.mode = Mode::Label;
                return LeadEffect::Show(image);
            }
            LeadCommand::OpenBox { image, ann } => {
                self.mode = Mode::Label;
                return LeadEffect::ShowBox { image, ann };
            }
            LeadCommand::LeaveQueue => self.queue = None,
            LeadCommand::ShowCrops(class) => {
                self.crops.show_class(class);
                self.mode = Mode::Crops;
                self.data_changed();
            }
            LeadCommand::CropsFix { boxes, fix } => {
                if boxes.is_empty() {
                    return LeadEffect::Say("No crops selected".into());
                }
                return LeadEffect::Bulk { boxes, fix };
            }
            LeadCommand::CropsOpenSelected => {
                return match self.crops.selected_boxes().first() {
                    Some(&(image, ann)) => {
                        self.mode = Mode::Label;
                        LeadEffect::ShowBox { image, ann }
                    }
                    None => LeadEffect::Say("No crop selected".into()),
                };
            }
            LeadCommand::CropsRemoveSelected => {
                let boxes = self.crops.selected_boxes();
                if boxes.is_empty() {
                    return LeadEffect::Say("No crops selected".into());
                }
                return LeadEffect::Bulk {
                    boxes,
                    fix: CropsFix::Remove,
                };
            }
            LeadCommand::CropsDeselect => self.crops.deselect(),
            LeadCommand::FixIssue(key) => {
                if self.mode != Mode::Triage {
                    return LeadEffect::Say(
                        "The fix key works in the triage view, on the selected issue".into(),
                    );
                }
                return match self.triage.issue_to_fix(key.as_ref()) {
                    Some(fix) => LeadEffect::Fix(fix),
                    None => LeadEffect::Say("No flagged issue to fix".into()),
                };
            }
            LeadCommand::SelectIssue(key) => self.triage.select_issue(&key),
            LeadCommand::EditProfile => self.profile.open_dialog(),
        }
        LeadEffect::None
    }

    /// The session fixed a triage issue: the view hides it until the ranking is read again and
    /// selects the next issue.
    pub fn issue_fixed(&mut self, key: &IssueKey) {
        self.triage.fixed(key);
    }

    /// Edits were undone, redone or could not be stored: issues marked fixed may be back, so
    /// they show again as the next ranking has them.
    pub fn fixes_uncertain(&mut self) {
        self.triage.forget_fixed();
    }

    /// The triage issue the fix key acts on: its image and what it is.
    pub fn selected_issue(&self) -> Option<(IssueKey, &LabelIssue)> {
        self.triage.selected_issue()
    }

    /// Takes the writer's answer to a `LeadWrite`.
    pub fn on_write(&mut self, done: LeadDone) -> LeadReport {
        self.data_changed();
        match done.result {
            Ok(LeadOutcome::Done(m)) => {
                self.dashboard.on_success();
                LeadReport {
                    message: Some(m),
                    profile: None,
                }
            }
            Ok(LeadOutcome::Profile(user)) => {
                let message = format!("You are {} ({})", user.name, user.role.as_str());
                self.profile.chosen(user.clone());
                LeadReport {
                    message: Some(message),
                    profile: Some(user),
                }
            }
            Err(e) => {
                self.profile.failed(&e);
                LeadReport {
                    message: Some(e),
                    profile: None,
                }
            }
        }
    }

    /// Draws the central area for the Triage, Evaluate and Dashboard modes.
    pub fn central_ui(&mut self, ui: &mut Ui, input: &LeadInput<'_>, out: &mut Vec<Command>) {
        let frame = egui::Frame::new().inner_margin(egui::Margin::same(12));
        frame.show(ui, |ui| {
            if let Some(e) = &self.jobs_error {
                ui.colored_label(super::theme::ERROR, e);
                return;
            }
            let mode = self.mode;
            let generation = self.generation;
            let mut asker = Asker {
                jobs: self.jobs.as_mut(),
                generation,
            };
            self.choices.ensure(&mut asker, &(), || Query::Choices);
            let choices = self.choices.value().and_then(|r| r.as_ref().ok());
            let queue = self.queue.as_ref().map(|(q, _)| q);
            match mode {
                Mode::Label => {}
                Mode::Triage => self.triage.ui(ui, &mut asker, choices, input.keymap, out),
                Mode::Evaluate => self.eval.ui(ui, &mut asker, choices),
                Mode::Crops => self.crops.ui(ui, &mut asker, choices, input.root, out),
                Mode::Dashboard => {
                    let me = self.profile.user();
                    self.dashboard
                        .ui(ui, &mut asker, choices, me, input, queue, out);
                }
            }
        });
    }

    /// Draws the panel under the box list: queue, audit verdict, tags and metadata, history.
    pub fn details_ui(&mut self, ui: &mut Ui, input: &DetailsInput<'_>, out: &mut Vec<Command>) {
        if let Some((q, pos)) = &self.queue {
            ui.horizontal_wrapped(|ui| {
                ui.label(
                    egui::RichText::new(format!("{} · {} of {}", q.name, pos + 1, q.images.len()))
                        .color(super::theme::ACCENT),
                );
                if ui
                    .small_button("Leave")
                    .on_hover_text("Next and previous follow the image list again")
                    .clicked()
                {
                    out.push(Command::Lead(LeadCommand::LeaveQueue));
                }
            });
        }
        let audit = self.dashboard.audit_for(input.image);
        let mut asker = Asker {
            jobs: self.jobs.as_mut(),
            generation: self.generation,
        };
        let details = &mut self.details;
        egui::ScrollArea::vertical()
            .id_salt("box-details")
            .auto_shrink([false, false])
            .show(ui, |ui| details.ui(ui, &mut asker, input, audit, out));
    }

    /// Draws dialogs (the profile on first start).
    pub fn dialogs_ui(&mut self, ctx: &egui::Context, out: &mut Vec<Command>) {
        if self.profile.is_open() {
            // The dialog offers the project's existing users.
            let mut asker = Asker {
                jobs: self.jobs.as_mut(),
                generation: self.generation,
            };
            self.choices.ensure(&mut asker, &(), || Query::Choices);
        }
        let users = self
            .choices
            .value()
            .and_then(|r| r.as_ref().ok())
            .map(|c| c.users.as_slice());
        self.profile.ui(ctx, users.unwrap_or_default(), out);
    }

    // ------------------------------------------------------------------ read access (tests)

    /// The crop grid's list, if read.
    pub fn crops_shown(&self) -> Option<&crate::review::crops::ClassCrops> {
        self.crops.shown()
    }

    /// The crops selected in the grid, in its order.
    pub fn crops_selected(&self) -> Vec<Uuid> {
        self.crops.selected()
    }

    /// The crops selected in the grid as (image, box), in its order.
    pub fn crops_selected_boxes(&self) -> Vec<(Uuid, Uuid)> {
        self.crops.selected_boxes()
    }

    /// True when every crop the grid asked for is cut (or failed).
    pub fn crops_idle(&self) -> bool {
        self.crops.crops_idle()
    }

    /// The triage ranking on screen, if any.
    pub fn triage_rows(&self) -> Option<&[TriageImage]> {
        self.triage.rows()
    }

    /// The dashboard's figures, if read.
    pub fn dashboard_data(&self) -> Option<&DashboardData> {
        self.dashboard.data.value().and_then(|r| r.as_ref().ok())
    }

    /// The batch open in the dashboard, if read.
    pub fn batch_detail(&self) -> Option<&BatchDetail> {
        self.dashboard.detail.value().and_then(|r| r.as_ref().ok())
    }

    /// The evaluation on screen, if any.
    pub fn eval_result(&self) -> Option<&EvalResult> {
        self.eval.result.value().and_then(|r| r.as_ref().ok())
    }

    /// The history of the selected box, if read.
    pub fn history_rows(&self) -> Option<&[HistoryRow]> {
        self.details
            .history
            .value()
            .and_then(|r| r.as_ref().ok())
            .map(Vec::as_slice)
    }

    /// The current image's tags and metadata, if read.
    pub fn image_meta(&self) -> Option<&ImageMeta> {
        self.details.meta.value().and_then(|r| r.as_ref().ok())
    }
}

/// The header row of a table in the lead views: weak labels, then the end of the row.
fn header_row(ui: &mut Ui, headers: &[&str]) {
    for h in headers {
        ui.label(egui::RichText::new(*h).color(super::theme::TEXT_WEAK));
    }
    ui.end_row();
}
