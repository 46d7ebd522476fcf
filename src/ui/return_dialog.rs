//! The comment a reviewer gives when returning labels (required: the annotator must know what
//! to fix). Opened by the return key on the canvas; Enter returns, Escape cancels.

use eframe::egui::{self, RichText};
use uuid::Uuid;

use super::theme;

/// What the dialog decided this frame.
#[derive(Clone, Debug, PartialEq)]
pub enum ReturnOutcome {
    /// Return these boxes with this comment.
    Return {
        boxes: Vec<Uuid>,
        comment: String,
    },
    Cancelled,
}

/// The return dialog: which boxes, and the comment being typed.
#[derive(Default)]
pub struct ReturnDialog {
    boxes: Option<Vec<Uuid>>,
    comment: String,
    /// What the boxes are, for the heading ("2 labels on b.png").
    what: String,
    error: Option<String>,
    focus: bool,
}

impl ReturnDialog {
    /// Opens the dialog for `boxes`, described as `what`.
    pub fn open(&mut self, boxes: Vec<Uuid>, what: String) {
        self.boxes = Some(boxes);
        self.what = what;
        self.comment.clear();
        self.error = None;
        self.focus = true;
    }

    pub fn is_open(&self) -> bool {
        self.boxes.is_some()
    }

    /// Draws the dialog when open; returns what was decided.
    pub fn ui(&mut self, ctx: &egui::Context) -> Option<ReturnOutcome> {
        self.boxes.as_ref()?;
        let mut outcome = None;
        let response = egui::Modal::new(egui::Id::unique("return-dialog")).show(ctx, |ui| {
            ui.set_width(420.0);
            ui.heading(format!("Return {}", self.what));
            ui.label(
                RichText::new(
                    "The annotator sees this comment with every returned box. Enter returns, \
                     Escape cancels.",
                )
                .color(theme::TEXT_WEAK),
            );
            ui.horizontal(|ui| {
                let label = ui.label("Comment");
                let edit = ui
                    .add(
                        egui::TextEdit::singleline(&mut self.comment)
                            .hint_text("what to fix")
                            .desired_width(300.0),
                    )
                    .labelled_by(label.id);
                if std::mem::take(&mut self.focus) || !ui.ctx().text_edit_focused() {
                    edit.request_focus();
                }
            });
            if let Some(e) = &self.error {
                ui.colored_label(theme::ERROR, e);
            }
            ui.horizontal(|ui| {
                let enter = ui.input(|i| i.key_pressed(egui::Key::Enter));
                if ui.button("Return").clicked() || enter {
                    let comment = self.comment.trim();
                    if comment.is_empty() {
                        self.error = Some("Say what to fix: a return needs a comment.".into());
                    } else {
                        outcome = Some(ReturnOutcome::Return {
                            boxes: self.boxes.clone().unwrap_or_default(),
                            comment: comment.to_owned(),
                        });
                    }
                }
                if ui.button("Cancel").clicked() {
                    outcome = Some(ReturnOutcome::Cancelled);
                }
            });
        });
        if outcome.is_none() && response.should_close() {
            outcome = Some(ReturnOutcome::Cancelled);
        }
        if outcome.is_some() {
            self.boxes = None;
        }
        outcome
    }
}
