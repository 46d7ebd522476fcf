//! The start screen shown without a project: recent projects, open, new.

use eframe::egui::{self, RichText, Ui};

use super::commands::Command;
use super::settings::Settings;
use super::theme;

/// The start screen's state.
#[derive(Default)]
pub struct StartScreen {
    /// Why the last project could not be opened, if it failed.
    pub error: Option<String>,
}

impl StartScreen {
    pub fn ui(&mut self, ui: &mut Ui, settings: &Settings, out: &mut Vec<Command>) {
        egui::CentralPanel::default().show(ui, |ui| {
            ui.vertical_centered(|ui| {
                ui.add_space(ui.available_height() * 0.15);
                ui.label(RichText::new("Loupe").size(34.0).strong());
                ui.label(
                    RichText::new("Label and review object-detection datasets")
                        .color(theme::TEXT_WEAK),
                );
                ui.add_space(18.0);
                ui.horizontal(|ui| {
                    ui.add_space((ui.available_width() - 240.0).max(0.0) / 2.0);
                    if ui.button("Open project…").clicked() {
                        out.push(Command::OpenProjectDialog);
                    }
                    if ui.button("New project…").clicked() {
                        out.push(Command::NewProjectDialog);
                    }
                });
                if let Some(e) = &self.error {
                    ui.add_space(8.0);
                    ui.label(RichText::new(e).color(theme::ERROR));
                }
                ui.add_space(24.0);
                if !settings.recent_projects.is_empty() {
                    ui.label(RichText::new("Recent projects").strong());
                    ui.add_space(4.0);
                    for p in &settings.recent_projects {
                        let name = p.file_name().map_or_else(
                            || p.display().to_string(),
                            |n| n.to_string_lossy().into_owned(),
                        );
                        let exists = p.is_file();
                        let text = if exists {
                            RichText::new(name)
                        } else {
                            RichText::new(format!("{name} (missing)")).color(theme::TEXT_WEAK)
                        };
                        let button = ui.add_enabled(
                            exists,
                            egui::Button::new(text).min_size(egui::vec2(280.0, 0.0)),
                        );
                        if button.on_hover_text(p.display().to_string()).clicked() {
                            out.push(Command::OpenProject(p.clone()));
                        }
                    }
                }
            });
        });
    }
}
