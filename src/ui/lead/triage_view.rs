//! The triage view: a model run's images ranked for review (where the model and the labels
//! disagree, or the model is unsure), each with its score and reasons. A click opens the image
//! on the canvas with the ranking as the "next" queue.
//!
//! Under the ranking, the selected image's flagged issues, one row per box, each with the fix
//! its reason suggests and the key that makes it (`Action::FixIssue`). The key fixes the
//! selected issue, then selects the next one (across images, in ranking order); a fixed issue
//! is hidden until the ranking is read again after the write.

use std::collections::HashSet;

use eframe::egui::{self, RichText, Sense, Ui};
use uuid::Uuid;

use super::super::commands::Command;
use super::super::shortcuts::{Action, Keymap};
use super::super::theme;
use super::cache::Cached;
use super::{Asker, Choices, IssueToFix, LeadCommand, Query, Queue};
use crate::review::{
    FixKind, IssueKind, LabelIssue, Signal, SignalKind, Slice, Triage, TriageImage, TriageOptions,
};

/// Images ranked at most (the rest are rarely worth a look).
const LIMIT: usize = 1000;

/// Which issue a row is: its image, kind and the boxes it is about. Stable across re-reads of
/// the ranking (scores move, boxes do not).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IssueKey {
    pub image: Uuid,
    pub kind: IssueKind,
    pub label: Option<Uuid>,
    pub prediction: Option<Uuid>,
}

impl IssueKey {
    fn of(image: Uuid, issue: &LabelIssue) -> IssueKey {
        IssueKey {
            image,
            kind: issue.kind,
            label: issue.label,
            prediction: issue.prediction,
        }
    }
}

/// The triage view's state.
#[derive(Default)]
pub struct TriageView {
    pub ranked: Cached<TriageOptions, Vec<TriageImage>>,
    run: Option<String>,
    /// `key=value`, `tag:NAME` or empty for every image.
    slice: String,
    selected: Option<usize>,
    /// Images of the run with nothing to flag (left out of the ranking).
    quiet: usize,
    /// Images of the run nobody has labelled or reviewed (not compared, so not ranked).
    unreviewed: usize,
    /// The issue the fix key acts on; `None`: the selected image's first.
    cursor: Option<IssueKey>,
    /// Where the cursor was among the open issues, for when its issue leaves the ranking.
    cursor_pos: usize,
    /// Issues fixed here that the ranking on screen still shows (it is read again after the
    /// write): hidden, and skipped by the cursor.
    fixed: HashSet<IssueKey>,
}

fn kind_color(k: SignalKind) -> egui::Color32 {
    match k {
        SignalKind::MissingLabel => theme::ERROR,
        SignalKind::WrongClass | SignalKind::ClassConfusion => theme::BUSY,
        SignalKind::UnmatchedLabel => theme::PROPOSAL,
        SignalKind::Uncertain => theme::ACCENT,
    }
}

fn issue_color(k: IssueKind) -> egui::Color32 {
    match k {
        IssueKind::Overlooked => theme::ERROR,
        IssueKind::SwappedClass => theme::BUSY,
        IssueKind::Spurious => theme::PROPOSAL,
        IssueKind::BadlyLocated => theme::ACCENT,
    }
}

/// An issue kind for people.
fn issue_label(k: IssueKind) -> &'static str {
    match k {
        IssueKind::Overlooked => "overlooked",
        IssueKind::Spurious => "spurious",
        IssueKind::BadlyLocated => "badly located",
        IssueKind::SwappedClass => "swapped class",
    }
}

/// A signal kind for people.
fn kind_label(k: SignalKind) -> &'static str {
    match k {
        SignalKind::MissingLabel => "missing label",
        SignalKind::WrongClass => "wrong class",
        SignalKind::UnmatchedLabel => "unmatched label",
        SignalKind::ClassConfusion => "class confusion",
        SignalKind::Uncertain => "uncertain",
    }
}

impl TriageView {
    /// The ranking for the options on screen, if read.
    pub fn rows(&self) -> Option<&[TriageImage]> {
        self.ranked
            .value()
            .and_then(|r| r.as_ref().ok())
            .map(Vec::as_slice)
    }

    /// Takes the query thread's ranking, keeping the images that have something to flag.
    pub fn take(&mut self, generation: u64, opts: TriageOptions, ranked: Result<Triage, String>) {
        let ranked = ranked.map(|triage| {
            self.unreviewed = triage.skipped_unreviewed;
            let all = triage.images;
            let total = all.len();
            let flagged: Vec<TriageImage> = all
                .into_iter()
                .filter(|i| !i.signals.is_empty() || i.issues.iter().any(|x| x.flagged))
                .collect();
            self.quiet = total - flagged.len();
            // A fix the new ranking no longer shows has landed; one it still shows is on its
            // way (this answer was read before the write).
            let listed: HashSet<IssueKey> = flagged
                .iter()
                .flat_map(|r| r.issues.iter().map(|i| IssueKey::of(r.image, i)))
                .collect();
            self.fixed.retain(|k| listed.contains(k));
            flagged
        });
        self.ranked.fill(generation, opts, ranked);
    }

    /// The flagged issues not fixed yet, image by image in ranking order: (row, key).
    fn open_issues(&self) -> Vec<(usize, IssueKey)> {
        let Some(rows) = self.rows() else {
            return Vec::new();
        };
        rows.iter()
            .enumerate()
            .flat_map(|(row, r)| {
                r.issues
                    .iter()
                    .filter(|i| i.flagged)
                    .map(move |i| (row, IssueKey::of(r.image, i)))
            })
            .filter(|(_, k)| !self.fixed.contains(k))
            .collect()
    }

    /// The position of the selected issue among `open`: the cursor's issue, else (no cursor)
    /// the selected image's first, else where the cursor was.
    fn cursor_index(&self, open: &[(usize, IssueKey)]) -> Option<usize> {
        if open.is_empty() {
            return None;
        }
        if let Some(key) = &self.cursor {
            if let Some(i) = open.iter().position(|(_, k)| k == key) {
                return Some(i);
            }
            return Some(self.cursor_pos.min(open.len() - 1));
        }
        match self.selected {
            Some(row) => open.iter().position(|(r, _)| *r == row),
            None => Some(0),
        }
    }

    fn issue(&self, key: &IssueKey) -> Option<&LabelIssue> {
        self.rows()?
            .iter()
            .filter(|r| r.image == key.image)
            .flat_map(|r| &r.issues)
            .find(|i| IssueKey::of(key.image, i) == *key)
    }

    /// The issue the fix key acts on.
    pub fn selected_issue(&self) -> Option<(IssueKey, &LabelIssue)> {
        let open = self.open_issues();
        let (_, key) = open.get(self.cursor_index(&open)?)?;
        self.issue(key).map(|i| (key.clone(), i))
    }

    /// The issue to fix: `key` if it is open, or the selected one.
    pub fn issue_to_fix(&self, key: Option<&IssueKey>) -> Option<IssueToFix> {
        let run = self.run.clone()?;
        let (key, issue) = match key {
            Some(k) if !self.fixed.contains(k) => (k.clone(), self.issue(k)?),
            Some(_) => return None,
            None => self.selected_issue()?,
        };
        Some(IssueToFix {
            key,
            issue: issue.clone(),
            run,
        })
    }

    /// Selects an issue (a click on its row).
    pub fn select_issue(&mut self, key: &IssueKey) {
        let open = self.open_issues();
        if let Some(i) = open.iter().position(|(_, k)| k == key) {
            self.selected = Some(open[i].0);
            self.cursor = Some(key.clone());
            self.cursor_pos = i;
        }
    }

    /// An issue was fixed: hide it and select the one after it.
    pub fn fixed(&mut self, key: &IssueKey) {
        let open = self.open_issues();
        let Some(i) = open.iter().position(|(_, k)| k == key) else {
            self.fixed.insert(key.clone());
            return;
        };
        self.fixed.insert(key.clone());
        self.cursor_pos = i;
        match open.get(i + 1) {
            Some((row, next)) => {
                self.selected = Some(*row);
                self.cursor = Some(next.clone());
            }
            // The last one: back to the first still open, like the end of a queue.
            None => {
                let first = open.iter().find(|(_, k)| k != key);
                self.selected = first.map(|(row, _)| *row);
                self.cursor = first.map(|(_, k)| k.clone());
                self.cursor_pos = 0;
            }
        }
    }

    /// Shows every issue the ranking has again (after an undo, or a write that failed).
    pub fn forget_fixed(&mut self) {
        self.fixed.clear();
    }

    fn options(&self) -> Result<Option<TriageOptions>, String> {
        let Some(run) = &self.run else {
            return Ok(None);
        };
        let mut opts = TriageOptions::new(run);
        opts.limit = Some(LIMIT);
        let s = self.slice.trim();
        if !s.is_empty() {
            opts.slices = vec![Slice::parse(s).map_err(|e| e.to_string())?];
        }
        Ok(Some(opts))
    }

    pub fn ui(
        &mut self,
        ui: &mut Ui,
        asker: &mut Asker<'_>,
        choices: Option<&Choices>,
        keymap: &Keymap,
        out: &mut Vec<Command>,
    ) {
        if self.run.is_none() {
            self.run = choices.and_then(|c| c.runs.last().cloned());
        }
        let opts = self.options();
        if let Ok(Some(o)) = &opts {
            self.ranked.ensure(asker, o, || Query::Triage(o.clone()));
        }
        ui.horizontal(|ui| {
            ui.heading("Triage");
            let run_label = ui.label("run");
            egui::ComboBox::from_id_salt("triage-run")
                .selected_text(self.run.as_deref().unwrap_or("pick a model run"))
                .show_ui(ui, |ui| {
                    for r in choices.map(|c| c.runs.as_slice()).unwrap_or_default() {
                        if ui
                            .selectable_label(self.run.as_deref() == Some(r.as_str()), r)
                            .clicked()
                        {
                            self.run = Some(r.clone());
                            self.selected = None;
                            self.cursor = None;
                        }
                    }
                })
                .response
                .labelled_by(run_label.id);
            slice_picker(ui, "triage-slice", &mut self.slice, choices);
            if self.ranked.loading() {
                ui.spinner();
            }
        });
        if let Err(e) = &opts {
            ui.colored_label(theme::ERROR, e);
            return;
        }
        if self.run.is_none() {
            ui.label(
                RichText::new("No model run yet: pre-label images with a model first.")
                    .color(theme::TEXT_WEAK),
            );
            return;
        }
        let rows = match self.ranked.value() {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                ui.colored_label(theme::ERROR, e);
                return;
            }
            None => return,
        };
        let run = self.run.clone().unwrap_or_default();
        let queue = || Queue {
            name: format!("triage of {run}"),
            images: rows.iter().map(|r| r.image).collect(),
            ..Queue::default()
        };
        ui.horizontal(|ui| {
            ui.label(
                RichText::new(format!(
                    "{} images with flagged issues or signals, most likely wrong first ({} with nothing to flag{})",
                    rows.len(),
                    self.quiet,
                    if self.unreviewed == 0 {
                        String::new()
                    } else {
                        format!(
                            "; {} nobody has labelled or reviewed yet are not ranked",
                            self.unreviewed
                        )
                    }
                ))
                .color(theme::TEXT_WEAK),
            );
            if let Some(first) = rows.first()
                && ui
                    .button("Review in triage order")
                    .on_hover_text("Opens the first image; next and previous follow this ranking")
                    .clicked()
            {
                out.push(Command::Lead(LeadCommand::Open {
                    image: first.image,
                    queue: Some(queue()),
                }));
            }
        });
        ui.separator();
        // The selected issue's image is the selected image.
        let open = self.open_issues();
        let cursor = self.cursor_index(&open).and_then(|i| open.get(i));
        if let Some((row, _)) = cursor {
            self.selected = Some(*row);
        }
        let cursor = cursor.map(|(_, k)| k.clone());
        let detail_height = if self.selected.is_some() { 180.0 } else { 0.0 };
        let row_height = 22.0;
        egui::ScrollArea::vertical()
            .id_salt("triage-rows")
            .max_height((ui.available_height() - detail_height).max(120.0))
            .auto_shrink([false, false])
            .show_rows(ui, row_height, rows.len(), |ui, range| {
                for i in range {
                    let Some(r) = rows.get(i) else { break };
                    let selected = self.selected == Some(i);
                    let clicked = row_ui(ui, i, r, selected, row_height);
                    if (clicked.double || clicked.single) && self.selected != Some(i) {
                        self.selected = Some(i);
                        self.cursor = None;
                    }
                    if clicked.double || clicked.open {
                        out.push(Command::Lead(LeadCommand::Open {
                            image: r.image,
                            queue: Some(queue()),
                        }));
                    }
                }
            });
        if let Some(r) = self.selected.and_then(|i| rows.get(i)) {
            ui.separator();
            ui.label(RichText::new(&r.path).strong());
            egui::ScrollArea::vertical()
                .id_salt("triage-signals")
                .show(ui, |ui| {
                    let key = keymap.label(Action::FixIssue);
                    for issue in r.issues.iter().filter(|i| i.flagged) {
                        let id = IssueKey::of(r.image, issue);
                        if self.fixed.contains(&id) {
                            continue;
                        }
                        let selected = cursor.as_ref() == Some(&id);
                        match issue_ui(ui, issue, selected, &key) {
                            IssueClick::Fix => {
                                out.push(Command::Lead(LeadCommand::FixIssue(Some(id))));
                            }
                            IssueClick::Select => {
                                out.push(Command::Lead(LeadCommand::SelectIssue(id)));
                            }
                            IssueClick::None => {}
                        }
                    }
                    for s in &r.signals {
                        signal_ui(ui, s);
                    }
                });
        }
    }
}

struct RowClick {
    single: bool,
    double: bool,
    open: bool,
}

/// `s`, or its end after an ellipsis, whichever fits in `max` points.
fn elide_start(painter: &egui::Painter, s: &str, font: &egui::FontId, max: f32) -> String {
    let width = |t: &str| {
        painter
            .layout_no_wrap(t.to_owned(), font.clone(), egui::Color32::WHITE)
            .size()
            .x
    };
    if width(s) <= max {
        return s.to_owned();
    }
    let chars: Vec<char> = s.chars().collect();
    // The longest tail that fits: binary search over how many characters to drop.
    let (mut lo, mut hi) = (1, chars.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        let tail: String = std::iter::once('…')
            .chain(chars[mid..].iter().copied())
            .collect();
        if width(&tail) <= max {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    std::iter::once('…')
        .chain(chars[lo..].iter().copied())
        .collect()
}

/// One ranked image: rank, path, score, counts, the strongest reason, and an open button.
fn row_ui(ui: &mut Ui, i: usize, r: &TriageImage, selected: bool, height: f32) -> RowClick {
    let mut click = RowClick {
        single: false,
        double: false,
        open: false,
    };
    ui.horizontal(|ui| {
        ui.set_height(height);
        let open = ui.small_button("Open");
        let label = format!("triage #{} {}", i + 1, r.path);
        open.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
        click.open = open.clicked();
        let (rect, response) =
            ui.allocate_exact_size(egui::vec2(ui.available_width(), height), Sense::click());
        let painter = ui.painter_at(rect);
        if selected {
            painter.rect_filled(rect, 3.0, theme::selected_row(ui));
        } else if response.hovered() {
            painter.rect_filled(rect, 3.0, theme::hover_row(ui));
        }
        let y = rect.center().y;
        let font = egui::FontId::proportional(13.0);
        let small = egui::FontId::proportional(11.5);
        let mut x = rect.left() + 4.0;
        // A cell of `width` (0: the rest of the row); what does not fit loses its start (a path
        // keeps its file name), so no cell runs into the next.
        let mut text = |s: &str, color: egui::Color32, font: &egui::FontId, width: f32| {
            let shown = if width > 0.0 {
                elide_start(&painter, s, font, width - 8.0)
            } else {
                s.to_owned()
            };
            painter.text(
                egui::pos2(x, y),
                egui::Align2::LEFT_CENTER,
                shown,
                font.clone(),
                color,
            );
            x += width;
        };
        text(&format!("{}", i + 1), theme::TEXT_WEAK, &small, 34.0);
        text(&format!("{:.2}", r.score), theme::ACCENT, &font, 50.0);
        text(&r.path, theme::text(ui), &font, 220.0);
        let flagged: Vec<&LabelIssue> = r.issues.iter().filter(|i| i.flagged).collect();
        for kind in IssueKind::ALL {
            let n = flagged.iter().filter(|i| i.kind == kind).count();
            if n > 0 {
                text(
                    &format!("{n} {}", issue_label(kind)),
                    issue_color(kind),
                    &small,
                    110.0,
                );
            }
        }
        let c = &r.counts;
        for (n, kind) in [
            (c.missing_label, SignalKind::MissingLabel),
            (c.wrong_class, SignalKind::WrongClass),
            (c.unmatched_label, SignalKind::UnmatchedLabel),
            (c.class_confusion, SignalKind::ClassConfusion),
            (c.uncertain, SignalKind::Uncertain),
        ] {
            if n > 0 {
                text(
                    &format!("{n} {}", kind_label(kind)),
                    kind_color(kind),
                    &small,
                    110.0,
                );
            }
        }
        if let Some(issue) = flagged.first() {
            text(&issue.reason, theme::TEXT_WEAK, &small, 0.0);
        } else if let Some(s) = r.signals.first() {
            text(&s.reason, theme::TEXT_WEAK, &small, 0.0);
        }
        // Screen readers (and tests) get the reasons the row paints.
        let mut reasons: Vec<String> = Vec::new();
        for kind in IssueKind::ALL {
            let n = flagged.iter().filter(|i| i.kind == kind).count();
            if n > 0 {
                reasons.push(format!("{n} {}", issue_label(kind)));
            }
        }
        for (n, kind) in [
            (c.missing_label, SignalKind::MissingLabel),
            (c.wrong_class, SignalKind::WrongClass),
            (c.unmatched_label, SignalKind::UnmatchedLabel),
            (c.class_confusion, SignalKind::ClassConfusion),
            (c.uncertain, SignalKind::Uncertain),
        ] {
            if n > 0 {
                reasons.push(format!("{n} {}", kind_label(kind)));
            }
        }
        let label = format!(
            "rank {} {} score {:.2}: {}",
            i + 1,
            r.path,
            r.score,
            reasons.join(", ")
        );
        response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
        click.single = response.clicked();
        click.double = response.double_clicked();
    });
    click
}

enum IssueClick {
    None,
    Select,
    Fix,
}

/// One flagged issue: a selectable kind, the fix button with its key, the score and the reason.
fn issue_ui(ui: &mut Ui, issue: &LabelIssue, selected: bool, key: &str) -> IssueClick {
    let fix = FixKind::for_issue(issue.kind);
    let mut click = IssueClick::None;
    ui.horizontal_wrapped(|ui| {
        let kind = ui.selectable_label(
            selected,
            RichText::new(issue_label(issue.kind)).color(issue_color(issue.kind)),
        );
        let name = format!("issue {} {}", issue_label(issue.kind), issue.class);
        kind.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &name));
        if kind.clicked() {
            click = IssueClick::Select;
        }
        // The key acts on the selected row; every row shows what it would do.
        let hint = if key.is_empty() {
            fix.label().to_owned()
        } else {
            format!("[{key}] {}", fix.label())
        };
        let button = ui
            .small_button(hint)
            .on_hover_text("Fix as the reason suggests: a normal edit, stored with the reason, undone like any other");
        if button.clicked() {
            click = IssueClick::Fix;
        }
        ui.label(RichText::new(format!("{:.2}", issue.score)).color(theme::TEXT_WEAK));
        ui.label(&issue.reason);
    });
    click
}

fn signal_ui(ui: &mut Ui, s: &Signal) {
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new(kind_label(s.kind)).color(kind_color(s.kind)));
        ui.label(RichText::new(format!("+{:.2}", s.weight)).color(theme::TEXT_WEAK));
        ui.label(&s.reason);
        let mut facts = vec![format!(
            "{} at ({:.0}, {:.0}) {:.0}×{:.0}",
            s.class, s.bbox.x, s.bbox.y, s.bbox.w, s.bbox.h
        )];
        if let Some(sc) = s.score {
            facts.push(format!("score {sc:.2}"));
        }
        if let Some(o) = &s.other_class {
            facts.push(format!("model says {o}"));
        }
        if let Some(iou) = s.iou {
            facts.push(format!("IoU {iou:.2}"));
        }
        ui.label(RichText::new(facts.join(" · ")).color(theme::TEXT_WEAK));
    });
}

/// A slice field with the project's `key=value` slices to pick from.
pub fn slice_picker(ui: &mut Ui, id: &str, slice: &mut String, choices: Option<&Choices>) {
    let label = ui.label("Slice");
    ui.add(
        egui::TextEdit::singleline(slice)
            .hint_text("all images (or key=value, tag:NAME)")
            .desired_width(170.0),
    )
    .labelled_by(label.id);
    let slices = choices.map(|c| c.slices.as_slice()).unwrap_or_default();
    if !slices.is_empty() {
        egui::ComboBox::from_id_salt(id)
            .selected_text("pick")
            .width(40.0)
            .show_ui(ui, |ui| {
                if ui
                    .selectable_label(slice.is_empty(), "all images")
                    .clicked()
                {
                    slice.clear();
                }
                for (s, n) in slices {
                    if ui
                        .selectable_label(slice == s, format!("{s} ({n})"))
                        .clicked()
                    {
                        slice.clone_from(s);
                    }
                }
            })
            .response
            .labelled_by(label.id);
    }
}
