//! The triage view: a model run's images ranked for review (where the model and the labels
//! disagree, or the model is unsure), each with its score and reasons. A click opens the image
//! on the canvas with the ranking as the "next" queue.

use eframe::egui::{self, RichText, Sense, Ui};

use super::super::commands::Command;
use super::super::theme;
use super::cache::Cached;
use super::{Asker, Choices, LeadCommand, Query, Queue};
use crate::review::{
    IssueKind, LabelIssue, Signal, SignalKind, Slice, Triage, TriageImage, TriageOptions,
};

/// Images ranked at most (the rest are rarely worth a look).
const LIMIT: usize = 1000;

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
            flagged
        });
        self.ranked.fill(generation, opts, ranked);
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
                    if clicked.double || clicked.single {
                        self.selected = Some(i);
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
                    for issue in r.issues.iter().filter(|i| i.flagged) {
                        issue_ui(ui, issue);
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
        let mut text = |s: &str, color: egui::Color32, font: &egui::FontId, width: f32| {
            painter.text(
                egui::pos2(x, y),
                egui::Align2::LEFT_CENTER,
                s,
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

fn issue_ui(ui: &mut Ui, issue: &LabelIssue) {
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new(issue_label(issue.kind)).color(issue_color(issue.kind)));
        ui.label(RichText::new(format!("{:.2}", issue.score)).color(theme::TEXT_WEAK));
        ui.label(&issue.reason);
    });
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
