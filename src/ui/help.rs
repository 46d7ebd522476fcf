//! The help overlay (`?` / F1): every action with its keys, plus where to change them. The
//! same rows, as Markdown, are the README's key reference ([`markdown_table`]; a test keeps the
//! README equal to it).

use std::path::PathBuf;

use eframe::egui::{self, RichText};

use super::shortcuts::{Action, Keymap};
use super::theme;

/// The overlay's rows: (keys, what the action does) for every action, in the overlay's order.
/// `macos` says `Cmd` where other systems say `Ctrl`.
pub fn rows(keymap: &Keymap, macos: bool) -> Vec<(String, String)> {
    Action::all()
        .into_iter()
        .map(|action| {
            let keys = keymap
                .keys(action)
                .iter()
                .map(|k| k.label_for(macos))
                .collect::<Vec<_>>()
                .join(" / ");
            (keys, action.description())
        })
        .collect()
}

/// The overlay's rows as a Markdown table, with the default keys as the README shows them
/// (`Ctrl`, which is `Cmd` on macOS).
pub fn markdown_table(keymap: &Keymap) -> String {
    let cell = |text: &str| text.replace('|', "\\|");
    let mut out = String::from("| Keys | Action |\n|---|---|\n");
    for (action, (_, description)) in Action::all().into_iter().zip(rows(keymap, false)) {
        let keys = keymap
            .keys(action)
            .iter()
            .map(|k| format!("`{}`", cell(&k.label_for(false))))
            .collect::<Vec<_>>()
            .join(" / ");
        out.push_str(&format!("| {keys} | {} |\n", cell(&description)));
    }
    out
}

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
                        "Mouse: drag to draw (or E, then click the four extreme points) · click to select · drag the selection to move, its handles to resize · \
                         wheel zooms · middle-drag or Space+drag pans · right-drag: brightness/contrast or window/level",
                    )
                    .color(theme::TEXT_WEAK),
                );
                ui.separator();
                egui::ScrollArea::vertical().show(ui, |ui| {
                    egui::Grid::new("shortcuts").striped(true).num_columns(2).show(ui, |ui| {
                        for (keys, description) in rows(keymap, cfg!(target_os = "macos")) {
                            ui.label(RichText::new(keys).monospace().color(theme::ACCENT));
                            ui.label(description);
                            ui.end_row();
                        }
                    });
                });
                ui.separator();
                let mut hint = format!(
                    "Change the keys in Project > Settings… ({}). Enter or Escape closes this.",
                    keymap.label(Action::Settings)
                );
                if let Some(p) = keymap_path {
                    hint.push_str(&format!(" They are kept in {}.", p.display()));
                }
                ui.label(RichText::new(hint).small().color(theme::TEXT_WEAK));
            });
        self.open = open;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str = "<!-- keys:begin -->";
    const END: &str = "<!-- keys:end -->";

    /// The README's key reference is the overlay's table with the default keys. On a
    /// difference, `UPDATE_README=1 cargo test --lib ui::help` rewrites the README's table.
    #[test]
    fn readme_key_table_is_the_overlays() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&path).expect("README.md");
        let (Some(begin), Some(end)) = (readme.find(BEGIN), readme.find(END)) else {
            panic!("README.md has no {BEGIN} … {END} section");
        };
        let start = begin + BEGIN.len();
        assert!(start <= end, "{END} comes before {BEGIN} in README.md");
        let expected = format!("\n{}", markdown_table(&Keymap::default()));
        if readme[start..end] == expected {
            return;
        }
        if std::env::var_os("UPDATE_README").is_some_and(|v| v == "1") {
            let updated = format!("{}{expected}{}", &readme[..start], &readme[end..]);
            std::fs::write(&path, updated).expect("rewrite README.md");
            return;
        }
        panic!(
            "README.md's key table differs from the shortcut table (run with UPDATE_README=1 to \
             rewrite it). Expected:\n{expected}"
        );
    }

    #[test]
    fn the_markdown_table_has_every_action_and_escapes_pipes() {
        let table = markdown_table(&Keymap::default());
        assert_eq!(table.lines().count(), Action::all().len() + 2);
        assert!(table.contains("| `Ctrl+Z` | Undo |"), "{table}");
        assert!(table.contains("`D` / `Right`"), "{table}");
        // A key whose symbol is `|` does not split the row.
        let (map, warnings) = Keymap::from_toml("undo = [\"Pipe\"]\n");
        assert!(warnings.is_empty(), "{warnings:?}");
        let table = markdown_table(&map);
        assert!(table.contains("| `\\|` | Undo |"), "{table}");
    }
}
