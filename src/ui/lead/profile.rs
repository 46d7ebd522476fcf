//! The user profile: who edits, reviews and audits in this project. On first start (nobody
//! chose a profile in this project file yet) a dialog asks for a name and a role; the top bar
//! shows the result and opens the dialog again when clicked.

use eframe::egui::{self, RichText};

use super::super::commands::Command;
use super::super::theme;
use super::{LeadCommand, LeadWrite};
use crate::model::{Role, User};
use crate::review;
use crate::store::Project;

/// The profile and its dialog.
pub struct Profile {
    user: Option<User>,
    open: bool,
    /// A profile was chosen (the dialog can be closed without choosing again).
    chosen: bool,
    name: String,
    role: Role,
    error: Option<String>,
    waiting: bool,
    focus_name: bool,
}

impl Profile {
    /// Reads the chosen profile; without one, the dialog opens on the store's default user.
    pub fn read(reader: &Project) -> Profile {
        let (user, chosen) = match review::chosen_profile(reader) {
            Ok(Some(u)) => (Some(u), true),
            Ok(None) => (reader.current_user().ok(), false),
            Err(e) => {
                tracing::warn!("cannot read the user profile: {e:#}");
                (reader.current_user().ok(), true)
            }
        };
        Profile {
            name: user.as_ref().map(|u| u.name.clone()).unwrap_or_default(),
            role: user.as_ref().map_or(Role::Annotator, |u| u.role),
            user,
            open: !chosen,
            chosen,
            error: None,
            waiting: false,
            focus_name: true,
        }
    }

    /// The current user.
    pub fn user(&self) -> Option<&User> {
        self.user.as_ref()
    }

    /// "name · role".
    pub fn label(&self) -> Option<String> {
        self.user
            .as_ref()
            .map(|u| format!("{} · {}", u.name, u.role.as_str()))
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    pub fn open_dialog(&mut self) {
        if let Some(u) = &self.user {
            self.name.clone_from(&u.name);
            self.role = u.role;
        }
        self.open = true;
        self.focus_name = true;
        self.error = None;
    }

    /// The writer stored the choice.
    pub fn chosen(&mut self, user: User) {
        self.user = Some(user);
        self.chosen = true;
        self.open = false;
        self.waiting = false;
        self.error = None;
    }

    /// A write failed; if it was ours, say why in the dialog.
    pub fn failed(&mut self, error: &str) {
        if self.waiting {
            self.waiting = false;
            self.error = Some(error.to_owned());
        }
    }

    /// Draws the dialog when open.
    pub fn ui(&mut self, ctx: &egui::Context, users: &[User], out: &mut Vec<Command>) {
        if !self.open {
            return;
        }
        let response = egui::Modal::new(egui::Id::unique("profile-dialog")).show(ctx, |ui| {
            ui.set_width(380.0);
            ui.heading("Who is working on this project?");
            ui.label(
                RichText::new(
                    "Your name goes on every box you edit, review or audit. Annotators label; \
                     reviewers approve or return boxes; leads also make batches and audit them.",
                )
                .color(theme::TEXT_WEAK),
            );
            ui.add_space(6.0);
            if !users.is_empty() {
                ui.label("Existing people:");
                ui.horizontal_wrapped(|ui| {
                    for u in users {
                        if ui
                            .button(format!("{} ({})", u.name, u.role.as_str()))
                            .clicked()
                        {
                            self.name.clone_from(&u.name);
                            self.role = u.role;
                        }
                    }
                });
                ui.add_space(4.0);
            }
            ui.horizontal(|ui| {
                let label = ui.label("Name");
                let edit = ui
                    .add(
                        egui::TextEdit::singleline(&mut self.name)
                            .hint_text("your name")
                            .desired_width(220.0),
                    )
                    .labelled_by(label.id);
                // The name keeps the keyboard while the dialog is open (the canvas behind must
                // not take it back between frames); the role buttons answer the mouse.
                if std::mem::take(&mut self.focus_name) || !ui.ctx().text_edit_focused() {
                    edit.request_focus();
                }
            });
            ui.horizontal(|ui| {
                ui.label("Role");
                for r in [Role::Annotator, Role::Reviewer, Role::Lead] {
                    ui.selectable_value(&mut self.role, r, r.as_str());
                }
            });
            if let Some(e) = &self.error {
                ui.colored_label(theme::ERROR, e);
            }
            ui.add_space(6.0);
            ui.horizontal(|ui| {
                let ok = !self.name.trim().is_empty() && !self.waiting;
                let enter = ui.input(|i| i.key_pressed(egui::Key::Enter));
                if ui.add_enabled(ok, egui::Button::new("Continue")).clicked() || (ok && enter) {
                    self.waiting = true;
                    self.error = None;
                    out.push(Command::Lead(LeadCommand::Write(
                        LeadWrite::ChooseProfile {
                            name: self.name.trim().to_owned(),
                            role: self.role,
                        },
                    )));
                }
                if self.chosen && ui.button("Cancel").clicked() {
                    self.open = false;
                }
            });
        });
        // Escape (or a click outside) cancels a change of profile. On first start there is
        // nothing to go back to: the dialog stays and says why.
        if response.should_close() {
            if self.chosen {
                self.open = false;
            } else if !self.waiting {
                self.error = Some(
                    "Choose a name and a role first: every box you edit carries them.".to_owned(),
                );
            }
        }
    }
}
