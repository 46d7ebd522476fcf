//! The evaluation view: a model run against a version's labels (COCO metrics, per class, and
//! precision/recall curves), optionally on a slice, and the comparison of two runs (per-class
//! deltas, better in green, worse in red, the overall metrics side by side).

use eframe::egui::{self, RichText, Ui};
use egui_plot::{Legend, Line, Plot, PlotPoints};

use super::super::theme;
use super::cache::Cached;
use super::jobs::EvalKey;
use super::triage_view::slice_picker;
use super::{Asker, Choices, EvalResult, Query};
use crate::review::eval::{CocoEval, Summary, recall_points};
use crate::review::{EvalOptions, GroundTruth, RunComparison, RunEval, Slice};

/// The evaluation view's state.
#[derive(Default)]
pub struct EvalView {
    pub result: Cached<EvalKey, EvalResult>,
    run: Option<String>,
    compare: Option<String>,
    version: Option<String>,
    slice: String,
    all_labels: bool,
}

/// A metric for people: -1 (no GT) reads "—".
fn metric(v: f64) -> String {
    if v < 0.0 {
        "—".to_owned()
    } else {
        format!("{v:.3}")
    }
}

fn delta_text(d: f64) -> RichText {
    let color = if d > 0.001 {
        theme::OK
    } else if d < -0.001 {
        theme::ERROR
    } else {
        theme::TEXT_WEAK
    };
    RichText::new(format!("{d:+.3}")).color(color)
}

impl EvalView {
    fn key(&self) -> Result<Option<EvalKey>, String> {
        let Some(run) = &self.run else {
            return Ok(None);
        };
        let s = self.slice.trim();
        let slices = if s.is_empty() {
            Vec::new()
        } else {
            vec![Slice::parse(s).map_err(|e| e.to_string())?]
        };
        let opts = EvalOptions {
            run: run.clone(),
            version: self.version.clone(),
            slices,
            ground_truth: if self.all_labels {
                GroundTruth::AllLabels
            } else {
                GroundTruth::Approved
            },
        };
        Ok(Some((opts, self.compare.clone())))
    }

    pub fn ui(&mut self, ui: &mut Ui, asker: &mut Asker<'_>, choices: Option<&Choices>) {
        if self.run.is_none() {
            self.run = choices.and_then(|c| c.runs.last().cloned());
        }
        let key = self.key();
        if let Ok(Some(k)) = &key {
            self.result.ensure(asker, k, || Query::Eval {
                opts: k.0.clone(),
                compare: k.1.clone(),
            });
        }
        let runs = choices.map(|c| c.runs.as_slice()).unwrap_or_default();
        ui.horizontal_wrapped(|ui| {
            ui.heading("Evaluate");
            run_combo(ui, "eval-run", "run", &mut self.run, runs, false);
            if let Some(progress) = self
                .run
                .as_ref()
                .and_then(|r| choices.and_then(|c| c.run_progress.get(r)))
            {
                ui.weak(progress);
            }
            run_combo(
                ui,
                "eval-compare",
                "compare with",
                &mut self.compare,
                runs,
                true,
            );
            let labels_of = ui.label("Labels of");
            egui::ComboBox::from_id_salt("eval-version")
                .selected_text(self.version.as_deref().unwrap_or("current"))
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.version, None, "current");
                    for v in choices.map(|c| c.versions.as_slice()).unwrap_or_default() {
                        ui.selectable_value(&mut self.version, Some(v.clone()), v);
                    }
                })
                .response
                .labelled_by(labels_of.id);
            ui.checkbox(&mut self.all_labels, "every label")
                .on_hover_text(
                    "Count every label as ground truth, not only approved boxes, on the images \
                     someone has labelled or reviewed (never on images nobody looked at)",
                );
            slice_picker(ui, "eval-slice", &mut self.slice, choices);
            if self.result.loading() {
                ui.spinner();
            }
        });
        if let Err(e) = &key {
            ui.colored_label(theme::ERROR, e);
            return;
        }
        if self.run.is_none() {
            ui.label(RichText::new("No model run to evaluate yet.").color(theme::TEXT_WEAK));
            return;
        }
        ui.separator();
        match self.result.value() {
            Some(Ok(EvalResult::One(e)))
                if e.ground_truth == GroundTruth::Approved && e.overall.gt_boxes == 0 =>
            {
                ui.label(
                    "Nothing is approved yet: evaluation against approved labels has no ground \
                     truth. Approve labels (V on the canvas) or evaluate against the labels of \
                     the images someone has labelled or reviewed.",
                );
                if ui
                    .button("Evaluate against labels of reviewed images")
                    .clicked()
                {
                    self.all_labels = true;
                }
            }
            Some(Ok(EvalResult::One(e))) => one_ui(ui, e),
            Some(Ok(EvalResult::Two(c))) => compare_ui(ui, c),
            Some(Err(e)) => {
                ui.colored_label(theme::ERROR, e);
            }
            None => {}
        }
    }
}

fn run_combo(
    ui: &mut Ui,
    id: &str,
    label: &str,
    value: &mut Option<String>,
    runs: &[String],
    optional: bool,
) {
    let label = ui.label(label);
    egui::ComboBox::from_id_salt(id)
        .selected_text(
            value
                .as_deref()
                .unwrap_or(if optional { "—" } else { "pick a run" }),
        )
        .show_ui(ui, |ui| {
            if optional {
                ui.selectable_value(value, None, "—");
            }
            for r in runs {
                ui.selectable_value(value, Some(r.clone()), r);
            }
        })
        .response
        .labelled_by(label.id);
}

fn one_ui(ui: &mut Ui, e: &RunEval) {
    ui.label(
        RichText::new(format!(
            "{} against the {} labels of version {} · {} images, {} labels, {} predictions · {}",
            e.run,
            match e.ground_truth {
                GroundTruth::Approved => "approved",
                GroundTruth::AllLabels => "current",
            },
            e.version,
            e.overall.images,
            e.overall.gt_boxes,
            e.overall.dt_boxes,
            e.coverage
        ))
        .color(theme::TEXT_WEAK),
    );
    summary_grid(ui, "eval-summary", &[("overall", &e.overall.summary)]);
    if !e.slices.is_empty() {
        let rows: Vec<(&str, &Summary)> = e
            .slices
            .iter()
            .map(|s| (s.slice.as_str(), &s.eval.summary))
            .collect();
        ui.add_space(4.0);
        summary_grid(ui, "eval-slices", &rows);
    }
    ui.add_space(8.0);
    // Side by side where both fit; else the table over the curves, so neither is cut off.
    if ui.available_width() >= WIDE {
        ui.columns(2, |cols| {
            per_class_ui(&mut cols[0], &e.overall);
            pr_curves_ui(&mut cols[1], &e.overall);
        });
    } else {
        per_class_ui(ui, &e.overall);
        ui.add_space(8.0);
        pr_curves_ui(ui, &e.overall);
    }
}

/// The width from which two tables sit side by side.
const WIDE: f32 = 1200.0;

/// The twelve COCO numbers, one row per evaluation.
fn summary_grid(ui: &mut Ui, id: &str, rows: &[(&str, &Summary)]) {
    // Thirteen columns: scrolled sideways when the panel is narrower than they are.
    egui::ScrollArea::horizontal()
        .id_salt(id)
        .show(ui, |ui| summary_rows(ui, id, rows));
}

fn summary_rows(ui: &mut Ui, id: &str, rows: &[(&str, &Summary)]) {
    egui::Grid::new(id).striped(true).show(ui, |ui| {
        ui.label("");
        for (name, _) in Summary::default().entries() {
            ui.label(RichText::new(name).color(theme::TEXT_WEAK));
        }
        ui.end_row();
        for (label, s) in rows {
            ui.label(*label);
            for (_, v) in s.entries() {
                ui.label(RichText::new(metric(v)).monospace());
            }
            ui.end_row();
        }
    });
}

fn per_class_ui(ui: &mut Ui, e: &CocoEval) {
    ui.heading("Per class");
    egui::ScrollArea::both()
        .id_salt("eval-classes")
        .max_height(ui.available_height().clamp(200.0, 480.0))
        .show(ui, |ui| {
            egui::Grid::new("eval-per-class")
                .striped(true)
                .show(ui, |ui| {
                    super::header_row(
                        ui,
                        &[
                            "class", "labels", "preds", "AP", "AP50", "AP75", "APs", "APm", "APl",
                            "AR1", "AR10", "AR100",
                        ],
                    );
                    for (k, c) in e.per_class.iter().enumerate() {
                        let s = e.class_summary(k);
                        ui.label(&c.name);
                        ui.label(c.gt.to_string());
                        ui.label(c.dt.to_string());
                        for v in [
                            s.AP, s.AP50, s.AP75, s.APs, s.APm, s.APl, s.AR1, s.AR10, s.AR100,
                        ] {
                            ui.label(RichText::new(metric(v)).monospace());
                        }
                        ui.end_row();
                    }
                });
        });
}

/// Precision against recall at IoU .5, one line per class with labels.
fn pr_curves_ui(ui: &mut Ui, e: &CocoEval) {
    ui.heading("Precision / recall (IoU 0.5)");
    let recall = recall_points();
    Plot::new("pr-curves")
        .height(ui.available_height().clamp(220.0, 420.0))
        .legend(Legend::default())
        .x_axis_label("recall")
        .y_axis_label("precision")
        .include_x(0.0)
        .include_x(1.0)
        .include_y(0.0)
        .include_y(1.05)
        .allow_scroll(false)
        .show(ui, |plot| {
            for c in &e.per_class {
                if c.gt == 0 || c.precision50.is_empty() {
                    continue;
                }
                // pycocotools writes 0 past the highest recall reached: the curve stops there.
                let points: PlotPoints<'_> = recall
                    .iter()
                    .zip(&c.precision50)
                    .filter(|(_, p)| **p > 0.0)
                    .map(|(r, p)| [*r, *p])
                    .collect();
                plot.line(Line::new(c.name.clone(), points).width(2.0));
            }
        });
}

fn compare_ui(ui: &mut Ui, c: &RunComparison) {
    ui.label(
        RichText::new(format!(
            "{} (a) against {} (b) on the {} images both covered",
            c.a.run, c.b.run, c.a.overall.images
        ))
        .color(theme::TEXT_WEAK),
    );
    let better = c.per_class.iter().filter(|d| d.verdict == "better").count();
    let worse = c.per_class.iter().filter(|d| d.verdict == "worse").count();
    let headline = match c.summary.iter().find(|(n, ..)| n == "AP") {
        Some((_, a, b, d)) => format!(
            "AP {} vs {}: {} is {} overall · better on {better} classes, worse on {worse}",
            metric(*a),
            metric(*b),
            c.a.run,
            if *d > 0.001 {
                "better"
            } else if *d < -0.001 {
                "worse"
            } else {
                "about the same"
            }
        ),
        None => String::new(),
    };
    ui.label(RichText::new(headline).strong());
    ui.add_space(4.0);
    if ui.available_width() >= WIDE {
        ui.columns(2, |cols| {
            compare_overall_ui(&mut cols[0], c);
            compare_classes_ui(&mut cols[1], c);
        });
    } else {
        compare_overall_ui(ui, c);
        ui.add_space(8.0);
        compare_classes_ui(ui, c);
    }
}

fn compare_overall_ui(ui: &mut Ui, c: &RunComparison) {
    ui.heading("Overall");
    egui::ScrollArea::horizontal()
        .id_salt("compare-summary-scroll")
        .show(ui, |ui| {
            egui::Grid::new("compare-summary")
                .striped(true)
                .show(ui, |ui| {
                    super::header_row(ui, &["metric", c.a.run.as_str(), c.b.run.as_str(), "a - b"]);
                    for (name, a, b, d) in &c.summary {
                        ui.label(name);
                        ui.label(RichText::new(metric(*a)).monospace());
                        ui.label(RichText::new(metric(*b)).monospace());
                        ui.label(delta_text(*d));
                        ui.end_row();
                    }
                });
        });
}

fn compare_classes_ui(ui: &mut Ui, c: &RunComparison) {
    ui.heading("Per class");
    egui::ScrollArea::both()
        .id_salt("compare-classes-scroll")
        .max_height(ui.available_height().clamp(200.0, 480.0))
        .show(ui, |ui| {
            egui::Grid::new("compare-classes")
                .striped(true)
                .show(ui, |ui| {
                    super::header_row(
                        ui,
                        &[
                            "class",
                            "AP a",
                            "AP b",
                            "diff AP",
                            "AP50 a",
                            "AP50 b",
                            "diff AP50",
                            "",
                        ],
                    );
                    for d in &c.per_class {
                        ui.label(&d.class);
                        ui.label(RichText::new(metric(d.ap_a)).monospace());
                        ui.label(RichText::new(metric(d.ap_b)).monospace());
                        match d.ap_delta {
                            Some(x) => ui.label(delta_text(x)),
                            None => ui.label("—"),
                        };
                        ui.label(RichText::new(metric(d.ap50_a)).monospace());
                        ui.label(RichText::new(metric(d.ap50_b)).monospace());
                        match d.ap50_delta {
                            Some(x) => ui.label(delta_text(x)),
                            None => ui.label("—"),
                        };
                        let color = match d.verdict {
                            "better" => theme::OK,
                            "worse" => theme::ERROR,
                            _ => theme::TEXT_WEAK,
                        };
                        ui.label(RichText::new(d.verdict).color(color));
                        ui.end_row();
                    }
                });
        });
}
