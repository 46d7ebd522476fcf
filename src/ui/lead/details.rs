//! The panel under the box list: the audit verdict of a sampled image, the image's tags and
//! key=value metadata (editable), the selected box's attributes (read-only) and its history
//! (who, when, what changed, state, from which model run and score).

use std::collections::HashMap;

use eframe::egui::{self, RichText, Ui};
use uuid::Uuid;

use super::super::commands::Command;
use super::super::theme;
use super::cache::Cached;
use super::dashboard::verdict_text;
use super::{Asker, DetailsInput, HistoryRow, ImageMeta, LeadCommand, LeadWrite, jobs};
use crate::review::{AuditItem, Verdict};

/// The panel's state.
#[derive(Default)]
pub struct Details {
    pub history: Cached<Uuid, Vec<HistoryRow>>,
    pub meta: Cached<Uuid, ImageMeta>,
    new_tag: String,
    new_key: String,
    new_value: String,
    /// Audit comments being typed, per image.
    comments: HashMap<Uuid, String>,
}

fn write(out: &mut Vec<Command>, w: LeadWrite) {
    out.push(Command::Lead(LeadCommand::Write(w)));
}

/// A time of day (UTC) or a date for older revisions.
fn when(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (h, m) = (tod / 3600, (tod % 3600) / 60);
    if now.div_euclid(86_400) == days {
        format!("{h:02}:{m:02}")
    } else {
        // Days since the epoch to a civil date (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let mo = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(mo <= 2);
        format!("{y}-{mo:02}-{d:02} {h:02}:{m:02}")
    }
}

impl Details {
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        asker: &mut Asker<'_>,
        input: &DetailsInput<'_>,
        audit: Option<(String, AuditItem)>,
        out: &mut Vec<Command>,
    ) {
        let Some(image) = input.image else {
            return;
        };
        if let Some((batch, item)) = audit {
            self.audit_ui(ui, &batch, &item, out);
            ui.separator();
        }
        // Point reads on the session's read connection (see `Cached::ensure_now`).
        let generation = asker.generation;
        self.meta
            .ensure_now(generation, &image, || jobs::image_meta(input.reader, image));
        self.meta_ui(ui, image, out);
        ui.separator();
        match input.selected {
            Some(id) => {
                // The box id, for `loupe history ID` and for telling a colleague which box.
                let full = id.to_string();
                if ui
                    .small_button("Copy box id")
                    .on_hover_text(format!("{full}\n(for `loupe history ID`)"))
                    .clicked()
                {
                    ui.ctx().copy_text(full);
                }
                self.history
                    .ensure_now(generation, &id, || jobs::history(input.reader, id));
                self.attributes_ui(ui);
                self.history_ui(ui);
            }
            None => {
                ui.label(
                    RichText::new("Select a box to see its history.")
                        .small()
                        .color(theme::TEXT_WEAK),
                );
            }
        }
    }

    fn audit_ui(&mut self, ui: &mut Ui, batch: &str, item: &AuditItem, out: &mut Vec<Command>) {
        ui.horizontal(|ui| {
            ui.label(RichText::new(format!("Audit of {batch}")).strong());
            ui.label(verdict_text(item.verdict));
        });
        if let Some(a) = &item.annotator {
            ui.label(
                RichText::new(format!("labeled by {a}"))
                    .small()
                    .color(theme::TEXT_WEAK),
            );
        }
        let comment = self
            .comments
            .entry(item.image)
            .or_insert_with(|| item.comment.clone().unwrap_or_default());
        ui.add(
            egui::TextEdit::singleline(comment)
                .hint_text("comment (the annotator sees it)")
                .desired_width(f32::INFINITY),
        );
        ui.horizontal(|ui| {
            for (label, verdict) in [("Pass", Verdict::Pass), ("Fail", Verdict::Fail)] {
                let b = ui.button(format!("{label} image"));
                if b.clicked() {
                    let c = comment.trim();
                    write(
                        out,
                        LeadWrite::MarkAudit {
                            batch: batch.to_owned(),
                            image: item.image,
                            verdict,
                            comment: (!c.is_empty()).then(|| c.to_owned()),
                        },
                    );
                }
            }
        });
    }

    fn meta_ui(&mut self, ui: &mut Ui, image: Uuid, out: &mut Vec<Command>) {
        ui.label(RichText::new("Tags and metadata").strong());
        let meta = match self.meta.value() {
            Some(Ok(m)) => m.clone(),
            Some(Err(e)) => {
                ui.colored_label(theme::ERROR, e);
                return;
            }
            None => ImageMeta::default(),
        };
        ui.horizontal_wrapped(|ui| {
            for t in &meta.tags {
                let chip = ui
                    .button(format!("{t} ×"))
                    .on_hover_text(format!("Remove the tag {t}"));
                chip.widget_info(|| {
                    egui::WidgetInfo::labeled(egui::Role::Button, true, format!("remove tag {t}"))
                });
                if chip.clicked() {
                    write(
                        out,
                        LeadWrite::SetTag {
                            image,
                            tag: t.clone(),
                            on: false,
                        },
                    );
                }
            }
            let edit = ui.add(
                egui::TextEdit::singleline(&mut self.new_tag)
                    .hint_text("add tag")
                    .desired_width(80.0),
            );
            let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if enter && !self.new_tag.trim().is_empty() {
                write(
                    out,
                    LeadWrite::SetTag {
                        image,
                        tag: self.new_tag.trim().to_owned(),
                        on: true,
                    },
                );
                self.new_tag.clear();
            }
        });
        egui::Grid::new("image-meta").num_columns(3).show(ui, |ui| {
            for (k, v) in &meta.meta {
                ui.label(RichText::new(k).color(theme::TEXT_WEAK));
                ui.label(v);
                let b = ui.small_button("×").on_hover_text(format!("Remove {k}"));
                b.widget_info(|| {
                    egui::WidgetInfo::labeled(egui::Role::Button, true, format!("remove {k}"))
                });
                if b.clicked() {
                    write(
                        out,
                        LeadWrite::SetMeta {
                            image,
                            key: k.clone(),
                            value: String::new(),
                        },
                    );
                }
                ui.end_row();
            }
        });
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut self.new_key)
                    .hint_text("key")
                    .desired_width(70.0),
            );
            ui.label("=");
            let value = ui.add(
                egui::TextEdit::singleline(&mut self.new_value)
                    .hint_text("value")
                    .desired_width(80.0),
            );
            let enter = value.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            let ok = !self.new_key.trim().is_empty() && !self.new_value.trim().is_empty();
            if ui.add_enabled(ok, egui::Button::new("Set")).clicked() || (enter && ok) {
                write(
                    out,
                    LeadWrite::SetMeta {
                        image,
                        key: self.new_key.trim().to_owned(),
                        value: self.new_value.trim().to_owned(),
                    },
                );
                self.new_key.clear();
                self.new_value.clear();
            }
        });
    }

    /// The selected box's attributes (from the tool it was imported from), read-only.
    fn attributes_ui(&self, ui: &mut Ui) {
        let Some(Ok(rows)) = self.history.value() else {
            return;
        };
        let Some(current) = rows.last().filter(|r| !r.attributes.is_empty()) else {
            return;
        };
        ui.label(RichText::new("Attributes").strong());
        egui::Grid::new("box_attributes")
            .num_columns(2)
            .spacing([8.0, 0.0])
            .show(ui, |ui| {
                for (name, value) in &current.attributes {
                    ui.label(RichText::new(name).small().color(theme::TEXT_WEAK));
                    ui.label(RichText::new(value).small());
                    ui.end_row();
                }
            });
        ui.separator();
    }

    fn history_ui(&self, ui: &mut Ui) {
        ui.label(RichText::new("History").strong());
        let rows = match self.history.value() {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                ui.colored_label(theme::ERROR, e);
                return;
            }
            None => return,
        };
        // Newest first: what happened last is what people look for. (The whole panel scrolls.)
        for r in rows.iter().rev() {
            // The time is in the tooltip: the row stays short, and stable on screen.
            ui.horizontal_wrapped(|ui| {
                ui.label(RichText::new(&r.author).strong());
                ui.label(&r.what);
            })
            .response
            .on_hover_text(when(r.when_ms));
            let mut line = format!("{} · {}", r.state.as_str(), r.source);
            if let Some(n) = &r.note {
                line.push_str(&format!(" · “{n}”"));
            }
            ui.label(RichText::new(line).small().color(theme::TEXT_WEAK));
            ui.add_space(2.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::when;

    #[test]
    fn old_times_read_as_dates() {
        // 2021-03-04 05:06 UTC.
        assert_eq!(when(1_614_834_360_000), "2021-03-04 05:06");
    }
}
