//! The settings window (Project ▸ Settings…, Ctrl+,): the data folder, the theme and the keys.
//! A key is rebound by clicking its "Change" button and pressing the new key; a key another
//! action has is refused with a message naming both. Changes are staged: Enter (or Save)
//! applies and stores them, Escape (or Cancel) drops them.

use std::path::{Path, PathBuf};

use eframe::egui::{self, Key, Modifiers, RichText};

use super::settings::Settings;
use super::shortcuts::{Action, KeyBinding, Keymap};
use super::theme::{self, ThemeChoice};

/// What the user decided when the window closed.
#[derive(Debug)]
pub enum SettingsOutcome {
    /// Enter or Save: these settings replace the app's.
    Saved(SavedSettings),
    /// Escape or Cancel: nothing changes.
    Cancelled,
}

/// The settings the window edits.
#[derive(Clone, Debug)]
pub struct SavedSettings {
    pub keymap: Keymap,
    pub theme: ThemeChoice,
    /// `None`: the OS's data folder for Loupe.
    pub data_folder: Option<PathBuf>,
}

/// The window and its staged changes.
#[derive(Default)]
pub struct SettingsPage {
    open: bool,
    keymap: Keymap,
    theme: ThemeChoice,
    /// The data folder as typed; empty means the default.
    data_folder: String,
    /// The action whose next key press becomes its key.
    capture: Option<Action>,
    /// The last refusal or confirmation, shown under the keys.
    message: Option<String>,
    /// Focus goes to the first field when the window opens.
    focus_first: bool,
}

impl SettingsPage {
    /// Opens the window on the app's current settings.
    pub fn open(&mut self, keymap: &Keymap, settings: &Settings) {
        *self = SettingsPage {
            open: true,
            keymap: keymap.clone(),
            theme: settings.theme,
            data_folder: settings
                .data_folder
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            capture: None,
            message: None,
            focus_first: true,
        };
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The action waiting for its new key, if any.
    pub fn capturing(&self) -> Option<Action> {
        self.capture
    }

    /// The last refusal or confirmation.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The staged keys.
    pub fn keymap(&self) -> &Keymap {
        &self.keymap
    }

    /// Draws the window when open and takes its keys from the frame's input (so nothing behind
    /// it reacts to them). Returns what the user decided, the frame the window closes.
    pub fn ui(
        &mut self,
        ctx: &egui::Context,
        config_dir: Option<&Path>,
    ) -> Option<SettingsOutcome> {
        if !self.open {
            return None;
        }
        if let Some(action) = self.capture {
            self.capture_key(ctx, action);
        } else if ctx.input_mut(|i| i.consume_key(Modifiers::NONE, Key::Escape)) {
            return Some(self.close(SettingsOutcome::Cancelled));
        } else if ctx.input_mut(|i| i.consume_key(Modifiers::NONE, Key::Enter)) {
            return Some(self.save());
        }
        let mut outcome = None;
        let mut open = true;
        egui::Window::new("Settings")
            .open(&mut open)
            .collapsible(false)
            .resizable(true)
            .default_size(egui::vec2(640.0, 560.0))
            .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
            .show(ctx, |ui| {
                self.data_folder_ui(ui, config_dir);
                ui.separator();
                ui.horizontal(|ui| {
                    ui.label(RichText::new("Theme").strong());
                    for choice in ThemeChoice::ALL {
                        ui.radio_value(&mut self.theme, choice, choice.label());
                    }
                });
                ui.separator();
                self.keys_ui(ui);
                ui.separator();
                ui.horizontal(|ui| {
                    if ui
                        .button("Save")
                        .on_hover_text("Apply and keep these settings (Enter)")
                        .clicked()
                    {
                        outcome = Some(self.save());
                    }
                    if ui
                        .button("Cancel")
                        .on_hover_text("Close without changing anything (Escape)")
                        .clicked()
                    {
                        outcome = Some(self.close(SettingsOutcome::Cancelled));
                    }
                });
            });
        if !open && outcome.is_none() {
            outcome = Some(self.close(SettingsOutcome::Cancelled));
        }
        if self.open {
            // Whatever the window did not use must not reach the canvas or the lists.
            ctx.input_mut(|i| {
                i.events
                    .retain(|e| !matches!(e, egui::Event::Key { .. } | egui::Event::Text(_)));
            });
        }
        outcome
    }

    fn data_folder_ui(&mut self, ui: &mut egui::Ui, config_dir: Option<&Path>) {
        let default = crate::inference::runtime::default_data_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(none on this system)".to_owned());
        ui.horizontal(|ui| {
            let label = ui.label(RichText::new("Data folder").strong());
            let edit = ui
                .add(
                    egui::TextEdit::singleline(&mut self.data_folder)
                        .hint_text(default.as_str())
                        .desired_width(400.0),
                )
                .labelled_by(label.id);
            if std::mem::take(&mut self.focus_first) {
                edit.request_focus();
            }
            if ui.button("Default").clicked() {
                self.data_folder.clear();
            }
        });
        ui.label(
            RichText::new(format!(
                "Where Loupe looks for the ONNX Runtime library ({}) and keeps models. Empty: {default}.",
                crate::inference::runtime::library_file_name()
            ))
            .small()
            .color(theme::TEXT_WEAK),
        );
        if let Some(dir) = config_dir {
            ui.label(
                RichText::new(format!("Settings and keys are kept in {}.", dir.display()))
                    .small()
                    .color(theme::TEXT_WEAK),
            );
        }
    }

    fn keys_ui(&mut self, ui: &mut egui::Ui) {
        ui.label(RichText::new("Keys").strong());
        ui.label(
            RichText::new(
                "Change: press the new key (with Ctrl, Shift or Alt if you like); Escape keeps the \
                 old one. A key another action has is refused.",
            )
            .small()
            .color(theme::TEXT_WEAK),
        );
        if let Some(m) = &self.message {
            ui.colored_label(theme::ERROR, m);
        }
        let mut start_capture = None;
        let mut reset = None;
        egui::ScrollArea::vertical()
            .id_salt("settings-keys")
            .max_height(340.0)
            .show(ui, |ui| {
                egui::Grid::new("settings-keys-grid")
                    .striped(true)
                    .num_columns(4)
                    .show(ui, |ui| {
                        for action in Action::all() {
                            ui.label(action.description());
                            if self.capture == Some(action) {
                                ui.label(RichText::new("press a key…").color(theme::BUSY));
                            } else {
                                ui.label(
                                    RichText::new(self.keymap.label(action))
                                        .monospace()
                                        .color(theme::ACCENT),
                                );
                            }
                            let name = action.description();
                            let change = ui.button("Change");
                            // Every row has a "Change" button; the accessible name says which
                            // action it is for (screen readers, and the UI tests).
                            change.widget_info(|| {
                                egui::WidgetInfo::labeled(
                                    egui::Role::Button,
                                    true,
                                    format!("Change keys: {name}"),
                                )
                            });
                            if change.clicked() {
                                start_capture = Some(action);
                            }
                            let default = ui.button("Default");
                            default.widget_info(|| {
                                egui::WidgetInfo::labeled(
                                    egui::Role::Button,
                                    true,
                                    format!("Default keys: {name}"),
                                )
                            });
                            if default.clicked() {
                                reset = Some(action);
                            }
                            ui.end_row();
                        }
                    });
            });
        if let Some(action) = start_capture {
            self.capture = Some(action);
            self.message = None;
        }
        if let Some(action) = reset {
            self.message = self.keymap.reset(action).err().map(|e| e.to_string());
        }
    }

    /// Takes the first key press of the frame as the new key of `action`.
    fn capture_key(&mut self, ctx: &egui::Context, action: Action) {
        let press = ctx.input_mut(|i| {
            let index = i.events.iter().position(|e| {
                matches!(
                    e,
                    egui::Event::Key {
                        pressed: true,
                        repeat: false,
                        ..
                    }
                )
            })?;
            match i.events.remove(index) {
                egui::Event::Key { key, modifiers, .. } => Some((key, modifiers)),
                _ => None,
            }
        });
        let Some((key, modifiers)) = press else {
            return;
        };
        self.capture = None;
        if key == Key::Escape && modifiers.is_none() {
            self.message = None;
            return;
        }
        let binding = KeyBinding::from_press(key, modifiers);
        self.message = self
            .keymap
            .set_keys(action, vec![binding])
            .err()
            .map(|e| e.to_string());
    }

    fn save(&mut self) -> SettingsOutcome {
        let folder = self.data_folder.trim();
        let saved = SavedSettings {
            keymap: self.keymap.clone(),
            theme: self.theme,
            data_folder: (!folder.is_empty()).then(|| PathBuf::from(folder)),
        };
        self.close(SettingsOutcome::Saved(saved))
    }

    fn close(&mut self, outcome: SettingsOutcome) -> SettingsOutcome {
        self.open = false;
        self.capture = None;
        outcome
    }
}
