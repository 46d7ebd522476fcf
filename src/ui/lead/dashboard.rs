//! The lead dashboard: per-annotator figures (plots and a table), the batches with their state
//! and audit result, and the batch workflow: create (from the list's filter or a seeded random
//! sample), assign, submit, audit a stratified sample, mark images, accept or return.

use std::collections::HashMap;

use eframe::egui::{self, RichText, Ui};
use egui_plot::{Bar, BarChart, Plot};
use uuid::Uuid;

use super::super::commands::Command;
use super::super::theme;
use super::cache::Cached;
use super::{Asker, Choices, DashboardData, LeadCommand, LeadInput, LeadWrite, Query, Queue};
use crate::model::{Role, User};
use crate::review::{
    AgreementReport, AuditDecision, AuditInfo, AuditItem, AuditOptions, BatchDetail, BatchInfo,
    BatchState, ClassAgreement, NewBatch, QueueOrder, Verdict,
};
use crate::store::{ImageFilter, ImageStatus};

/// The dashboard's state.
pub struct Dashboard {
    pub data: Cached<(), DashboardData>,
    pub detail: Cached<String, BatchDetail>,
    selected: Option<String>,
    new_name: String,
    sample: bool,
    sample_n: usize,
    sample_seed: String,
    assignee: Option<String>,
    audit_percent: f64,
    audit_min: usize,
    audit_seed: String,
    comments: HashMap<Uuid, String>,
}

impl Default for Dashboard {
    fn default() -> Self {
        Self {
            data: Cached::default(),
            detail: Cached::default(),
            selected: None,
            new_name: String::new(),
            sample: false,
            sample_n: 50,
            sample_seed: String::new(),
            assignee: None,
            audit_percent: 10.0,
            audit_min: 10,
            audit_seed: String::new(),
            comments: HashMap::new(),
        }
    }
}

/// Describes a filter for people ("all images", "class cat, tag night").
fn describe_filter(f: &ImageFilter) -> String {
    let mut parts = Vec::new();
    match f.status {
        ImageStatus::All => {}
        ImageStatus::Unreviewed => parts.push("unreviewed".to_owned()),
        ImageStatus::HasProposals => parts.push("with proposals".to_owned()),
        ImageStatus::Flagged => parts.push("flagged".to_owned()),
        ImageStatus::Missing => parts.push("missing files".to_owned()),
    }
    if let Some(c) = &f.class {
        parts.push(format!("class {c}"));
    }
    if let Some(t) = &f.tag {
        parts.push(format!("tag {t}"));
    }
    if let Some((k, v)) = &f.meta {
        parts.push(format!("{k}={v}"));
    }
    if let Some(p) = &f.path_contains {
        parts.push(format!("path contains {p:?}"));
    }
    if parts.is_empty() {
        "all images".to_owned()
    } else {
        parts.join(", ")
    }
}

fn audit_result(audit: Option<&AuditInfo>) -> (String, egui::Color32) {
    match audit {
        None => ("—".to_owned(), theme::TEXT_WEAK),
        Some(a) => match a.decision {
            None => (
                format!(
                    "auditing: {} pass, {} fail, {} to mark",
                    a.passed, a.failed, a.pending
                ),
                theme::BUSY,
            ),
            Some(AuditDecision::Accept) => (
                format!("accepted ({} of {} failed)", a.failed, a.items.len()),
                theme::OK,
            ),
            Some(AuditDecision::Return) => (
                format!("returned ({} of {} failed)", a.failed, a.items.len()),
                theme::ERROR,
            ),
        },
    }
}

fn state_color(s: BatchState) -> egui::Color32 {
    match s {
        BatchState::Open => theme::TEXT,
        BatchState::Submitted | BatchState::Auditing => theme::BUSY,
        BatchState::Accepted => theme::OK,
        BatchState::Returned => theme::ERROR,
    }
}

fn write(out: &mut Vec<Command>, w: LeadWrite) {
    out.push(Command::Lead(LeadCommand::Write(w)));
}

impl Dashboard {
    /// A write went through: clear the one-shot fields.
    pub fn on_success(&mut self) {
        self.new_name.clear();
    }

    /// The audit item of `image` when the batch open here is being audited and sampled it.
    pub fn audit_for(&self, image: Option<Uuid>) -> Option<(String, AuditItem)> {
        let image = image?;
        let detail = self.detail.value()?.as_ref().ok()?;
        let audit = detail.audit.as_ref()?;
        if detail.batch.state != BatchState::Auditing || audit.decision.is_some() {
            return None;
        }
        let item = audit.items.iter().find(|i| i.image == image)?;
        Some((detail.batch.name.clone(), item.clone()))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        asker: &mut Asker<'_>,
        choices: Option<&Choices>,
        me: Option<&User>,
        input: &LeadInput<'_>,
        queue: Option<&Queue>,
        out: &mut Vec<Command>,
    ) {
        self.data.ensure(asker, &(), || Query::Dashboard);
        if let Some(name) = self.selected.clone() {
            self.detail
                .ensure(asker, &name, || Query::Batch(name.clone()));
        }
        ui.horizontal(|ui| {
            ui.heading("Dashboard");
            if self.data.loading() || self.detail.loading() {
                ui.spinner();
            }
            if let Some(me) = me
                && me.role != Role::Lead
            {
                ui.label(
                    RichText::new(format!(
                        "You are {} ({}): only a lead can create, assign and audit batches.",
                        me.name,
                        me.role.as_str()
                    ))
                    .color(theme::BUSY),
                );
            }
        });
        let data = match self.data.value() {
            Some(Ok(d)) => d.clone(),
            Some(Err(e)) => {
                ui.colored_label(theme::ERROR, e);
                return;
            }
            None => return,
        };
        egui::ScrollArea::vertical()
            .id_salt("dashboard")
            .auto_shrink([false, false])
            .show(ui, |ui| {
                annotators_ui(ui, &data);
                ui.add_space(10.0);
                ui.separator();
                if let Some(report) = &data.agreement {
                    agreement_ui(ui, report);
                    ui.add_space(10.0);
                    ui.separator();
                }
                ui.columns(2, |cols| {
                    self.batches_ui(&mut cols[0], &data, input, out);
                    self.batch_ui(&mut cols[1], choices, queue, out);
                });
            });
    }

    fn batches_ui(
        &mut self,
        ui: &mut Ui,
        data: &DashboardData,
        input: &LeadInput<'_>,
        out: &mut Vec<Command>,
    ) {
        ui.heading("Batches");
        if data.batches.is_empty() {
            ui.label(RichText::new("No batch yet.").color(theme::TEXT_WEAK));
        }
        egui::Grid::new("batches")
            .striped(true)
            .num_columns(5)
            .show(ui, |ui| {
                super::header_row(ui, &["batch", "state", "assignee", "images", "audit"]);
                for (b, audit) in &data.batches {
                    let selected = self.selected.as_deref() == Some(b.name.as_str());
                    if ui
                        .selectable_label(selected, &b.name)
                        .on_hover_text(format!("round {} · created by {}", b.round, b.created_by))
                        .clicked()
                    {
                        self.select(Some(b.name.clone()));
                    }
                    ui.label(RichText::new(b.state.as_str()).color(state_color(b.state)));
                    ui.label(b.assignee.as_deref().unwrap_or("—"));
                    ui.label(b.images.to_string());
                    let (text, color) = audit_result(audit.as_ref());
                    ui.label(RichText::new(text).color(color));
                    ui.end_row();
                }
            });
        ui.add_space(8.0);
        ui.group(|ui| {
            ui.label(RichText::new("New batch").strong());
            ui.horizontal(|ui| {
                let label = ui.label("Batch name");
                ui.add(
                    egui::TextEdit::singleline(&mut self.new_name)
                        .hint_text("e.g. week-12")
                        .desired_width(160.0),
                )
                .labelled_by(label.id);
            });
            ui.label(
                RichText::new(format!(
                    "From the image list: {}",
                    describe_filter(input.filter)
                ))
                .color(theme::TEXT_WEAK),
            );
            ui.horizontal(|ui| {
                let check = ui.checkbox(&mut self.sample, "Random sample of");
                ui.add_enabled(
                    self.sample,
                    egui::DragValue::new(&mut self.sample_n).range(1..=1_000_000),
                )
                .labelled_by(check.id);
                ui.label("images, seed");
                ui.add_enabled(
                    self.sample,
                    egui::TextEdit::singleline(&mut self.sample_seed)
                        .hint_text("random")
                        .desired_width(70.0),
                );
            });
            let seed = parse_seed(&self.sample_seed);
            if let Err(e) = &seed {
                ui.colored_label(theme::ERROR, e);
            }
            let name = self.new_name.trim().to_owned();
            let ok = !name.is_empty() && seed.is_ok();
            if ui
                .add_enabled(ok, egui::Button::new("Create batch"))
                .clicked()
            {
                write(
                    out,
                    LeadWrite::CreateBatch(NewBatch {
                        name: name.clone(),
                        filter: input.filter.clone(),
                        sample: self.sample.then_some(self.sample_n),
                        seed: if self.sample {
                            seed.ok().flatten()
                        } else {
                            None
                        },
                        allow_overlap: false,
                    }),
                );
                self.select(Some(name));
            }
        });
    }

    fn select(&mut self, name: Option<String>) {
        if self.selected != name {
            self.selected = name;
            self.assignee = None;
            self.detail.clear();
        }
    }

    fn batch_ui(
        &mut self,
        ui: &mut Ui,
        choices: Option<&Choices>,
        queue: Option<&Queue>,
        out: &mut Vec<Command>,
    ) {
        let Some(name) = self.selected.clone() else {
            ui.label(RichText::new("Pick a batch to assign or audit it.").color(theme::TEXT_WEAK));
            return;
        };
        let detail = match self.detail.value() {
            Some(Ok(d)) => d.clone(),
            Some(Err(e)) => {
                ui.colored_label(theme::ERROR, e);
                return;
            }
            None => {
                ui.spinner();
                return;
            }
        };
        let b: &BatchInfo = &detail.batch;
        ui.horizontal(|ui| {
            ui.heading(format!("Batch {name}"));
            ui.label(RichText::new(b.state.as_str()).color(state_color(b.state)));
            ui.label(
                RichText::new(format!("round {} · {} images", b.round, b.images))
                    .color(theme::TEXT_WEAK),
            );
        });
        // Assign.
        ui.horizontal_wrapped(|ui| {
            ui.label("Assignee");
            let users: Vec<&User> = choices
                .map(|c| c.users.iter().collect())
                .unwrap_or_default();
            let current = self.assignee.clone().or_else(|| b.assignee.clone());
            for u in users {
                let on = current.as_deref() == Some(u.name.as_str());
                let chip = ui.selectable_label(on, &u.name).on_hover_text(format!(
                    "{} ({})",
                    u.name,
                    u.role.as_str()
                ));
                chip.widget_info(|| {
                    egui::WidgetInfo::labeled(
                        egui::Role::Button,
                        true,
                        format!("assign to {}", u.name),
                    )
                });
                if chip.clicked() {
                    self.assignee = Some(u.name.clone());
                }
            }
            let changed = self.assignee.is_some() && self.assignee != b.assignee;
            if ui
                .add_enabled(changed, egui::Button::new("Assign"))
                .clicked()
                && let Some(user) = self.assignee.clone()
            {
                write(
                    out,
                    LeadWrite::AssignBatch {
                        batch: name.clone(),
                        user,
                    },
                );
            }
            let can_submit = matches!(b.state, BatchState::Open | BatchState::Returned);
            if ui
                .add_enabled(can_submit, egui::Button::new("Submit"))
                .on_hover_text("Hand the batch in for an audit (its assignee does this)")
                .clicked()
            {
                write(out, LeadWrite::SubmitBatch(name.clone()));
            }
        });
        // Audit.
        ui.add_space(6.0);
        match (&detail.audit, b.state) {
            (Some(a), BatchState::Auditing) if a.decision.is_none() => {
                self.audit_ui(ui, &name, a, queue, out);
            }
            (_, BatchState::Submitted) => self.start_audit_ui(ui, &name, out),
            (Some(a), _) => {
                let (text, color) = audit_result(Some(a));
                ui.label(RichText::new(format!("Last audit: {text}")).color(color));
            }
            _ => {
                ui.label(
                    RichText::new("An audit starts once the batch is submitted.")
                        .color(theme::TEXT_WEAK),
                );
            }
        }
        if b.state == BatchState::Returned {
            ui.label(
                RichText::new("Returned: the failed images come first in its list.")
                    .color(theme::TEXT_WEAK),
            );
        }
        ui.add_space(6.0);
        // The queue's order, per batch: as made, or the model's least certain images first.
        ui.horizontal(|ui| {
            ui.label("Review order");
            for (order, label, hint) in [
                (
                    QueueOrder::Batch,
                    "batch order",
                    "The order the batch was made in",
                ),
                (
                    QueueOrder::Uncertainty,
                    "model uncertainty",
                    "The model's least certain images first: lowest top score, then most boxes scored near 0.5",
                ),
            ] {
                let chip = ui
                    .selectable_label(b.queue_order == order, label)
                    .on_hover_text(hint);
                if chip.clicked() && b.queue_order != order {
                    write(
                        out,
                        LeadWrite::SetQueueOrder {
                            batch: name.clone(),
                            order,
                        },
                    );
                }
            }
        });
        ui.collapsing(format!("Images ({})", detail.images.len()), |ui| {
            for img in detail.images.iter().take(500) {
                ui.horizontal(|ui| {
                    let link = ui.link(&img.path);
                    let label = format!("batch image {}", img.path);
                    link.widget_info(|| {
                        egui::WidgetInfo::labeled(egui::Role::Link, true, label.clone())
                    });
                    if link.clicked() {
                        let queue = Queue {
                            name: format!("batch {name}"),
                            images: detail.images.iter().map(|i| i.id).collect(),
                            ..Queue::default()
                        };
                        out.push(Command::Lead(LeadCommand::Open {
                            image: img.id,
                            queue: Some(queue),
                        }));
                    }
                    let model = match img.top_score {
                        Some(top) => format!(
                            " · top score {top:.2}, {} near threshold",
                            img.near_threshold
                        ),
                        None => String::new(),
                    };
                    ui.label(
                        RichText::new(format!(
                            "{} boxes · {} proposals{model}",
                            img.boxes, img.proposals
                        ))
                        .color(theme::TEXT_WEAK),
                    );
                    if let Some(v) = img.verdict {
                        ui.label(verdict_text(Some(v)));
                    }
                });
            }
        });
    }

    fn start_audit_ui(&mut self, ui: &mut Ui, name: &str, out: &mut Vec<Command>) {
        ui.group(|ui| {
            ui.label(RichText::new("Audit").strong());
            ui.horizontal(|ui| {
                let sample = ui.label("Sample");
                ui.add(
                    egui::DragValue::new(&mut self.audit_percent)
                        .range(0.1..=100.0)
                        .suffix(" %"),
                )
                .labelled_by(sample.id);
                let least = ui.label("per annotator, at least");
                ui.add(egui::DragValue::new(&mut self.audit_min).range(1..=100_000))
                    .labelled_by(least.id);
                ui.label("images, seed");
                ui.add(
                    egui::TextEdit::singleline(&mut self.audit_seed)
                        .hint_text("random")
                        .desired_width(70.0),
                );
            });
            let seed = parse_seed(&self.audit_seed);
            if let Err(e) = &seed {
                ui.colored_label(theme::ERROR, e);
            }
            if ui
                .add_enabled(seed.is_ok(), egui::Button::new("Start audit"))
                .clicked()
            {
                write(
                    out,
                    LeadWrite::StartAudit {
                        batch: name.to_owned(),
                        opts: AuditOptions {
                            percent: self.audit_percent,
                            min_images: self.audit_min,
                            seed: seed.ok().flatten(),
                        },
                    },
                );
            }
        });
    }

    fn audit_ui(
        &mut self,
        ui: &mut Ui,
        name: &str,
        a: &AuditInfo,
        queue: Option<&Queue>,
        out: &mut Vec<Command>,
    ) {
        ui.group(|ui| {
            ui.horizontal(|ui| {
                ui.label(RichText::new("Audit").strong());
                ui.label(
                    RichText::new(format!(
                        "{} pass, {} fail, {} to mark",
                        a.passed, a.failed, a.pending
                    ))
                    .color(theme::TEXT_WEAK),
                );
            });
            ui.label(
                RichText::new(format!(
                    "{:.0}% per annotator, at least {} images · seed {}",
                    a.percent, a.min_images, a.seed
                ))
                .small()
                .color(theme::TEXT_WEAK),
            );
            for s in &a.strata {
                ui.label(
                    RichText::new(format!(
                        "{}: {} sampled of {} ({} failed)",
                        s.annotator.as_deref().unwrap_or("nobody"),
                        s.sampled,
                        s.images,
                        s.failed
                    ))
                    .color(theme::TEXT_WEAK),
                );
            }
            let sample = Queue {
                name: format!("audit of {name}"),
                images: a.items.iter().map(|i| i.image).collect(),
                ..Queue::default()
            };
            let in_queue = queue == Some(&sample);
            if !a.items.is_empty()
                && ui
                    .add_enabled(
                        !in_queue,
                        egui::Button::new("Review the sample on the canvas"),
                    )
                    .on_hover_text("Opens the first sampled image; next/previous follow the sample")
                    .clicked()
            {
                let first = a
                    .items
                    .iter()
                    .find(|i| i.verdict.is_none())
                    .unwrap_or(&a.items[0]);
                out.push(Command::Lead(LeadCommand::Open {
                    image: first.image,
                    queue: Some(sample.clone()),
                }));
            }
            egui::Grid::new("audit-items")
                .striped(true)
                .num_columns(5)
                .show(ui, |ui| {
                    for item in &a.items {
                        let link = ui.link(&item.path);
                        link.widget_info(|| {
                            egui::WidgetInfo::labeled(
                                egui::Role::Link,
                                true,
                                format!("audit {}", item.path),
                            )
                        });
                        if link.clicked() {
                            out.push(Command::Lead(LeadCommand::Open {
                                image: item.image,
                                queue: Some(sample.clone()),
                            }));
                        }
                        ui.label(
                            RichText::new(item.annotator.as_deref().unwrap_or("nobody"))
                                .color(theme::TEXT_WEAK),
                        );
                        ui.label(verdict_text(item.verdict));
                        let comment = self
                            .comments
                            .entry(item.image)
                            .or_insert_with(|| item.comment.clone().unwrap_or_default());
                        ui.add_sized(
                            [150.0, 20.0],
                            egui::TextEdit::singleline(comment).hint_text("comment"),
                        );
                        ui.horizontal(|ui| {
                            for (label, verdict) in
                                [("Pass", Verdict::Pass), ("Fail", Verdict::Fail)]
                            {
                                let b = ui.button(label);
                                b.widget_info(|| {
                                    egui::WidgetInfo::labeled(
                                        egui::Role::Button,
                                        true,
                                        format!("{label} {}", item.path),
                                    )
                                });
                                if b.clicked() {
                                    let c = comment.trim();
                                    write(
                                        out,
                                        LeadWrite::MarkAudit {
                                            batch: name.to_owned(),
                                            image: item.image,
                                            verdict,
                                            comment: (!c.is_empty()).then(|| c.to_owned()),
                                        },
                                    );
                                }
                            }
                        });
                        ui.end_row();
                    }
                });
            ui.horizontal(|ui| {
                let done = a.pending == 0;
                if ui
                    .add_enabled(done, egui::Button::new("Accept batch"))
                    .on_hover_text("Approves the batch's boxes")
                    .clicked()
                {
                    write(
                        out,
                        LeadWrite::DecideAudit {
                            batch: name.to_owned(),
                            decision: AuditDecision::Accept,
                        },
                    );
                }
                if ui
                    .add_enabled(done && a.failed > 0, egui::Button::new("Return batch"))
                    .on_hover_text("Sends it back to its annotator, failed images first")
                    .clicked()
                {
                    write(
                        out,
                        LeadWrite::DecideAudit {
                            batch: name.to_owned(),
                            decision: AuditDecision::Return,
                        },
                    );
                }
                if !done {
                    ui.label(
                        RichText::new(format!("Mark the {} remaining images first", a.pending))
                            .color(theme::TEXT_WEAK),
                    );
                }
            });
        });
    }
}

/// A verdict for people, coloured.
pub fn verdict_text(v: Option<Verdict>) -> RichText {
    match v {
        None => RichText::new("to mark").color(theme::TEXT_WEAK),
        Some(Verdict::Pass) => RichText::new("pass").color(theme::OK),
        Some(Verdict::Fail) => RichText::new("fail").color(theme::ERROR),
    }
}

/// An empty seed means "draw one" (`None`).
fn parse_seed(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    t.parse::<u64>()
        .map(Some)
        .map_err(|_| format!("{t:?} is not a seed: use a whole number, or leave it empty"))
}

/// The per-annotator plots and table.
fn annotators_ui(ui: &mut Ui, data: &DashboardData) {
    ui.heading("Annotators");
    if data.stats.is_empty() {
        ui.label(RichText::new("Nobody has worked on this project yet.").color(theme::TEXT_WEAK));
        return;
    }
    let names: Vec<String> = data.stats.iter().map(|s| s.user.clone()).collect();
    #[allow(clippy::cast_precision_loss)]
    let series: [(&str, Vec<f64>, egui::Color32); 4] = [
        (
            "images per hour",
            data.stats
                .iter()
                .map(|s| s.images_per_hour.unwrap_or(0.0))
                .collect(),
            theme::ACCENT,
        ),
        (
            "boxes corrected",
            data.stats
                .iter()
                .map(|s| s.boxes_corrected as f64)
                .collect(),
            theme::PROPOSAL,
        ),
        (
            "approval rate %",
            data.stats
                .iter()
                .map(|s| s.approval_rate.unwrap_or(0.0) * 100.0)
                .collect(),
            theme::OK,
        ),
        (
            "audit failures",
            data.stats.iter().map(|s| s.audit_failures as f64).collect(),
            theme::ERROR,
        ),
    ];
    ui.columns(4, |cols| {
        for (col, (title, values, color)) in cols.iter_mut().zip(series) {
            col.label(RichText::new(title).color(theme::TEXT_WEAK));
            let bars: Vec<Bar> = values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    #[allow(clippy::cast_precision_loss)]
                    Bar::new(i as f64, *v)
                        .width(0.6)
                        .name(names.get(i).cloned().unwrap_or_default())
                        .fill(color)
                })
                .collect();
            let labels = names.clone();
            Plot::new(format!("plot-{title}"))
                .height(140.0)
                .allow_drag(false)
                .allow_zoom(false)
                .allow_scroll(false)
                .show_grid([false, true])
                .include_y(0.0)
                .include_y(1.0)
                .x_axis_formatter(move |mark, _| {
                    let i = mark.value.round();
                    if (mark.value - i).abs() > 1e-6 || i < 0.0 {
                        return String::new();
                    }
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    labels.get(i as usize).cloned().unwrap_or_default()
                })
                .show(col, |plot| {
                    plot.bar_chart(BarChart::new(title, bars).color(color));
                });
        }
    });
    egui::Grid::new("annotator-table")
        .striped(true)
        .num_columns(10)
        .show(ui, |ui| {
            super::header_row(
                ui,
                &[
                    "person",
                    "role",
                    "images",
                    "hours",
                    "images/h",
                    "drawn",
                    "accepted",
                    "corrected",
                    "approval",
                    "audit failures",
                ],
            );
            for s in &data.stats {
                ui.label(&s.user);
                ui.label(s.role.map_or("—", Role::as_str));
                ui.label(s.images.to_string());
                ui.label(format!("{:.1}", s.active_hours));
                ui.label(s.images_per_hour.map_or("—".into(), |v| format!("{v:.0}")));
                ui.label(s.boxes_drawn.to_string());
                ui.label(s.proposals_accepted.to_string());
                ui.label(s.boxes_corrected.to_string());
                ui.label(s.approval_rate.map_or("—".into(), percent));
                ui.label(format!("{} of {}", s.audit_failures, s.audited_images));
                ui.end_row();
            }
        });
    measured_ui(ui, data);
}

/// The time the app measured per annotator: seconds per image and per box, the share of
/// labels that came from a model, the approval rate beside them, actions and key presses.
fn measured_ui(ui: &mut Ui, data: &DashboardData) {
    let rows: Vec<_> = data
        .stats
        .iter()
        .filter_map(|s| s.measured.as_ref().map(|m| (s, m)))
        .collect();
    ui.add_space(6.0);
    ui.label(
        RichText::new(
            "Measured in the app (active time on each image, idle gaps over a minute left out)",
        )
        .color(theme::TEXT_WEAK),
    );
    if rows.is_empty() {
        ui.label(RichText::new("No time measured yet.").color(theme::TEXT_WEAK));
        return;
    }
    let seconds = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.1} s"));
    egui::Grid::new("measured-table")
        .striped(true)
        .num_columns(9)
        .show(ui, |ui| {
            super::header_row(
                ui,
                &[
                    "person",
                    "images",
                    "s per image",
                    "s per box",
                    "boxes",
                    "model-assisted",
                    "approval",
                    "actions",
                    "key presses",
                ],
            );
            for (s, m) in rows {
                ui.label(&s.user);
                ui.label(m.images.to_string());
                ui.label(seconds(m.seconds_per_image));
                ui.label(seconds(m.seconds_per_box));
                ui.label(m.boxes.to_string());
                ui.label(m.model_assisted_share.map_or("—".into(), percent));
                ui.label(s.approval_rate.map_or("—".into(), percent));
                ui.label(m.actions.to_string());
                ui.label(m.key_presses.to_string());
                ui.end_row();
            }
        });
}

/// A fraction as a whole percentage.
fn percent(fraction: f64) -> String {
    format!("{:.0}%", fraction * 100.0)
}

/// Agreement per pair of people and per class, on the images two or more of them labeled.
fn agreement_ui(ui: &mut Ui, report: &AgreementReport) {
    ui.heading("Agreement");
    if report.pairs.is_empty() {
        ui.label(
            RichText::new("No image has been labeled by two people yet.").color(theme::TEXT_WEAK),
        );
        return;
    }
    ui.label(
        RichText::new(format!(
            "{} image{} labeled by two or more people; boxes match when they have the same class \
             and IoU ≥ {}. F1 = 2 × matched / (boxes of both).",
            report.shared_images,
            if report.shared_images == 1 { "" } else { "s" },
            report.iou_threshold
        ))
        .color(theme::TEXT_WEAK),
    );
    egui::Grid::new("agreement-pairs")
        .striped(true)
        .num_columns(8)
        .show(ui, |ui| {
            super::header_row(
                ui,
                &[
                    "pair",
                    "images",
                    "boxes",
                    "matched",
                    "F1",
                    "mean IoU",
                    "class conflicts",
                    "most confused",
                ],
            );
            for pair in &report.pairs {
                ui.label(format!("{} & {}", pair.a, pair.b));
                ui.label(pair.images.to_string());
                ui.label(format!("{} / {}", pair.a_boxes, pair.b_boxes));
                ui.label(pair.matched.to_string());
                ui.label(RichText::new(percent(pair.f1)).color(agreement_color(pair.f1)));
                ui.label(format!("{:.2}", pair.mean_iou));
                ui.label(pair.class_conflicts.to_string());
                let confused = pair
                    .confusions
                    .iter()
                    .take(2)
                    .map(|(a, b, n)| format!("{a} vs {b} ×{n}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                ui.label(if confused.is_empty() {
                    "—".to_owned()
                } else {
                    confused
                });
                ui.end_row();
            }
        });
    ui.add_space(6.0);
    ui.label(RichText::new("Per class, all pairs").color(theme::TEXT_WEAK));
    class_agreement_grid(ui, "agreement-classes", &report.per_class);
}

fn class_agreement_grid(ui: &mut Ui, id: &str, rows: &[ClassAgreement]) {
    egui::Grid::new(id)
        .striped(true)
        .num_columns(5)
        .show(ui, |ui| {
            super::header_row(ui, &["class", "boxes", "matched", "F1", "mean IoU"]);
            for c in rows {
                ui.label(&c.class);
                ui.label(format!("{} / {}", c.a_boxes, c.b_boxes));
                ui.label(c.matched.to_string());
                ui.label(RichText::new(percent(c.f1)).color(agreement_color(c.f1)));
                ui.label(format!("{:.2}", c.mean_iou));
                ui.end_row();
            }
        });
}

/// Green when two people mostly agree, amber when they often do not, red when they rarely do.
fn agreement_color(f1: f64) -> egui::Color32 {
    if f1 >= 0.9 {
        theme::OK
    } else if f1 >= 0.7 {
        theme::BUSY
    } else {
        theme::ERROR
    }
}
