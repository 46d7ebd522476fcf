//! The help overlay (`?` / F1): every action with its keys, plus where to change them.

use std::path::PathBuf;

use eframe::egui::{self, RichText};

use super::shortcuts::{Action, Keymap};
use super::theme;

/// The overlay's state.
#[derive(Default)]
pub struct Help {
    pub open: bool,
}

impl Help {
    /// Draws the overlay when open.
    pub fn ui(&mut self, ctx: &egui::Context, keymap: &Keymap, keymap_path: Option<&PathBuf>) {
        if !self.open {
            return;
        }
        let mut open = self.open;
        egui::Window::new("Keyboard shortcuts")
            .open(&mut open)
            .collapsible(false)
            .resizable(true)
            .default_size(egui::vec2(560.0, 520.0))
            .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
            .show(ctx, |ui| {
                ui.label(
                    RichText::new(
                        "Mouse: drag to draw · click to select · drag the selection to move, its handles to resize · \
                         wheel zooms · middle-drag or Space+drag pans · right-drag: brightness/contrast or window/level",
                    )
                    .color(theme::TEXT_WEAK),
                );
                ui.separator();
                egui::ScrollArea::vertical().show(ui, |ui| {
                    egui::Grid::new("shortcuts").striped(true).num_columns(2).show(ui, |ui| {
                        for action in Action::all() {
                            ui.label(RichText::new(keymap.label(action)).monospace().color(theme::ACCENT));
                            ui.label(action.description());
                            ui.end_row();
                        }
                    });
                });
                if let Some(p) = keymap_path {
                    ui.separator();
                    ui.label(
                        RichText::new(format!("Change the keys in {} (read at start-up).", p.display()))
                            .small()
                            .color(theme::TEXT_WEAK),
                    );
                }
            });
        self.open = open;
    }
}
