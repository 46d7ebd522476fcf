//! The top bar (menus, project, version, model run, undo/redo) and the status bar (image i of
//! N, counts, zoom, pointer position, display settings, saved state).

use eframe::egui::{self, RichText, Ui};

use super::commands::Command;
use super::lead::{LeadCommand, Mode, mode_switch_ui};
use super::shortcuts::{Action, Keymap};
use super::theme;
use super::writer::SaveState;
use crate::formats::Format;

/// What the top bar shows.
pub struct TopBarInput<'a> {
    pub project: &'a str,
    pub version: Option<&'a str>,
    pub run: Option<&'a str>,
    pub undo: Option<&'a str>,
    pub redo: Option<&'a str>,
    pub keymap: &'a Keymap,
    pub show_boxes: bool,
    /// The central area's mode.
    pub mode: Mode,
    /// "name · role" of the user profile.
    pub user: Option<String>,
    /// The model menu.
    pub model: super::model_run::ModelMenuInput<'a>,
}

/// The top bar.
#[derive(Default)]
pub struct TopBar;

fn menu_item(
    ui: &mut Ui,
    label: &str,
    keymap: &Keymap,
    action: Action,
    command: Command,
    out: &mut Vec<Command>,
) {
    let keys = keymap.label(action);
    let button = egui::Button::new(label).shortcut_text(keys);
    if ui.add(button).clicked() {
        out.push(command);
        ui.close();
    }
}

impl TopBar {
    pub fn ui(&mut self, ui: &mut Ui, input: &TopBarInput<'_>, out: &mut Vec<Command>) {
        ui.horizontal_centered(|ui| {
            ui.menu_button("Project", |ui| {
                menu_item(
                    ui,
                    "Open…",
                    input.keymap,
                    Action::OpenProject,
                    Command::OpenProjectDialog,
                    out,
                );
                if ui.button("New…").clicked() {
                    out.push(Command::NewProjectDialog);
                    ui.close();
                }
                menu_item(
                    ui,
                    "Add images…",
                    input.keymap,
                    Action::AddImages,
                    Command::AddImagesDialog,
                    out,
                );
                if ui.button("Add folder…").clicked() {
                    out.push(Command::AddFolderDialog);
                    ui.close();
                }
                ui.separator();
                for (menu, import) in [("Import labels", true), ("Export labels", false)] {
                    ui.menu_button(menu, |ui| {
                        for (label, format) in [
                            ("COCO JSON…", Format::Coco),
                            ("YOLO folder…", Format::Yolo),
                            ("Pascal VOC folder…", Format::Voc),
                        ] {
                            if ui.button(label).clicked() {
                                out.push(if import {
                                    Command::ImportDialog(format)
                                } else {
                                    Command::ExportDialog(format)
                                });
                                ui.close();
                            }
                        }
                    });
                }
                ui.separator();
                menu_item(
                    ui,
                    "Settings…",
                    input.keymap,
                    Action::Settings,
                    Command::OpenSettings,
                    out,
                );
                if ui.button("Close project").clicked() {
                    out.push(Command::CloseProject);
                    ui.close();
                }
            });
            ui.menu_button("View", |ui| {
                menu_item(ui, "Fit", input.keymap, Action::Fit, Command::Fit, out);
                menu_item(
                    ui,
                    "1:1",
                    input.keymap,
                    Action::OneToOne,
                    Command::OneToOne,
                    out,
                );
                let boxes = if input.show_boxes {
                    "Hide boxes"
                } else {
                    "Show boxes"
                };
                menu_item(
                    ui,
                    boxes,
                    input.keymap,
                    Action::ToggleBoxes,
                    Command::ToggleBoxes,
                    out,
                );
                menu_item(
                    ui,
                    "Reset display",
                    input.keymap,
                    Action::ResetDisplay,
                    Command::ResetDisplay,
                    out,
                );
                ui.separator();
                for m in Mode::ALL {
                    menu_item(
                        ui,
                        m.label(),
                        input.keymap,
                        m.action(),
                        Command::Lead(LeadCommand::SetMode(m)),
                        out,
                    );
                }
                ui.separator();
                menu_item(
                    ui,
                    "Keyboard shortcuts",
                    input.keymap,
                    Action::Help,
                    Command::ToggleHelp,
                    out,
                );
            });
            super::model_run::menu_ui(ui, &input.model, input.keymap, out);
            ui.separator();
            mode_switch_ui(ui, input.mode, input.keymap, out);
            ui.separator();
            ui.label(RichText::new(input.project).strong());
            ui.label(RichText::new("·").color(theme::TEXT_WEAK));
            ui.label(
                RichText::new(
                    input
                        .version
                        .map_or_else(|| "no version yet".to_owned(), |v| format!("version {v}")),
                )
                .color(theme::TEXT_WEAK),
            );
            ui.label(RichText::new("·").color(theme::TEXT_WEAK));
            ui.label(
                RichText::new(
                    input
                        .run
                        .map_or_else(|| "no model run".to_owned(), |r| format!("run {r}")),
                )
                .color(theme::TEXT_WEAK),
            );
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui
                    .button("?")
                    .on_hover_text(input.keymap.tooltip(Action::Help))
                    .clicked()
                {
                    out.push(Command::ToggleHelp);
                }
                if let Some(user) = &input.user
                    && ui
                        .button(RichText::new(user).color(theme::ACCENT))
                        .on_hover_text("Who edits: click to change the profile")
                        .clicked()
                {
                    out.push(Command::Lead(LeadCommand::EditProfile));
                }
                let redo = ui.add_enabled(input.redo.is_some(), egui::Button::new("Redo"));
                if redo
                    .on_hover_text(format!(
                        "Redo {} ({})",
                        input.redo.unwrap_or(""),
                        input.keymap.label(Action::Redo)
                    ))
                    .clicked()
                {
                    out.push(Command::Redo);
                }
                let undo = ui.add_enabled(input.undo.is_some(), egui::Button::new("Undo"));
                if undo
                    .on_hover_text(format!(
                        "Undo {} ({})",
                        input.undo.unwrap_or(""),
                        input.keymap.label(Action::Undo)
                    ))
                    .clicked()
                {
                    out.push(Command::Undo);
                }
            });
        });
    }
}

/// What the status bar shows.
pub struct StatusInput<'a> {
    /// (row, rows) of the current image in the filtered list.
    pub position: Option<(usize, usize)>,
    /// "frame 3 of 40 · 45.0 mm" when the image is a frame of a stack.
    pub frame: Option<String>,
    /// The frame slider: (frame index, frames, row of the first frame).
    pub frame_slider: Option<(usize, usize, usize)>,
    pub path: Option<&'a str>,
    pub size: Option<(u32, u32)>,
    pub labels: usize,
    pub proposals: usize,
    pub zoom: f32,
    pub pointer: Option<(f32, f32)>,
    /// The value under the pointer ("value 40 HU"), 16-bit images.
    pub value: Option<String>,
    /// What the view hides or changes ("proposals hidden (Shift+H)").
    pub modes: Vec<&'static str>,
    pub display: Option<String>,
    pub save: SaveState,
    pub failed_edits: usize,
    pub adding: Option<(u64, u64)>,
    pub message: Option<&'a str>,
    /// The last background thread that panicked, if any.
    pub worker_death: Option<&'a super::workers::WorkerDeath>,
    /// A model run in progress.
    pub model_run: Option<super::model_run::RunProgress>,
    /// Sync with the shared store, as last reported.
    pub sync: Option<&'a super::sync_status::SyncView>,
    /// The execution provider the loaded model runs on, and why a better one was not used.
    pub provider: Option<(String, Option<String>)>,
}

/// The status bar.
#[derive(Default)]
pub struct StatusBar;

impl StatusBar {
    pub fn ui(&mut self, ui: &mut Ui, input: &StatusInput<'_>, out: &mut Vec<Command>) {
        ui.horizontal_centered(|ui| {
            match input.position {
                Some((i, n)) => ui.label(format!("Image {} of {n}", i + 1)),
                None => ui.label("No image"),
            };
            if let Some((index, frames, start)) = input.frame_slider {
                let mut frame = index + 1;
                let slider = ui
                    .add(
                        egui::Slider::new(&mut frame, 1..=frames)
                            .show_value(false)
                            .clamping(egui::SliderClamping::Always),
                    )
                    .on_hover_text(
                        "Frames of the stack (PageUp/PageDown, Ctrl+wheel, Shift+P plays)",
                    );
                if slider.changed() && frame != index + 1 {
                    out.push(Command::ShowRow(start + frame - 1));
                }
            }
            if let Some(f) = &input.frame {
                ui.label(RichText::new(f).color(theme::ACCENT));
            }
            if let Some(p) = input.path {
                ui.label(RichText::new(p).color(theme::TEXT_WEAK));
            }
            if let Some((w, h)) = input.size {
                ui.label(RichText::new(format!("{w}×{h}")).color(theme::TEXT_WEAK));
            }
            ui.separator();
            ui.label(format!("{} labels", input.labels));
            if input.proposals > 0 {
                ui.label(
                    RichText::new(format!("{} proposals", input.proposals)).color(theme::PROPOSAL),
                );
            }
            ui.separator();
            ui.label(RichText::new(format!("{:.0}%", input.zoom * 100.0)).color(theme::TEXT_WEAK));
            if let Some((x, y)) = input.pointer {
                ui.label(
                    RichText::new(format!("x {x:.0}  y {y:.0}"))
                        .monospace()
                        .color(theme::TEXT_WEAK),
                );
            }
            if let Some(v) = &input.value {
                ui.label(RichText::new(v).monospace().color(theme::TEXT));
            }
            if let Some(d) = &input.display {
                ui.label(RichText::new(d).color(theme::TEXT_WEAK));
            }
            for m in &input.modes {
                ui.label(RichText::new(*m).color(theme::ACCENT));
            }
            if let Some(m) = input.message {
                ui.separator();
                ui.label(RichText::new(m).color(theme::BUSY));
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if let Some(death) = input.worker_death {
                    ui.label(RichText::new(format!("• {death}")).color(theme::ERROR))
                        .on_hover_text(
                            "A background thread of the app stopped with this error (see the log). \
                             Edits it had not saved are kept and listed as not saved.",
                        );
                }
                match &input.save {
                    SaveState::Saved => {
                        ui.label(RichText::new("• saved").color(theme::OK))
                            .on_hover_text("Every edit is in the project file");
                    }
                    SaveState::Saving(n) => {
                        ui.label(RichText::new(format!("• saving ({n})")).color(theme::BUSY));
                    }
                    SaveState::Failed(e) => {
                        if ui.button("Retry").clicked() {
                            out.push(Command::RetryWrites);
                        }
                        ui.label(
                            RichText::new(format!("• {} edits not saved", input.failed_edits))
                                .color(theme::ERROR),
                        )
                        .on_hover_text(e);
                    }
                }
                if let Some(view) = input.sync {
                    super::sync_status::SyncStatus::indicator_ui(view, ui, out);
                }
                if let Some(p) = &input.model_run {
                    super::model_run::progress_ui(ui, p, out);
                }
                if let Some((used, fallback)) = &input.provider {
                    super::model_run::provider_status_ui(ui, used, fallback.as_deref());
                }
                if let Some((done, total)) = input.adding {
                    ui.label(
                        RichText::new(format!("adding images {done}/{total}")).color(theme::BUSY),
                    );
                }
            });
        });
    }
}
