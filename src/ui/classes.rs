//! The project's classes as the UI needs them (colour, position for digit keys), the per-class
//! score thresholds that hide or reveal proposals, and the type-to-search class picker.

use std::collections::HashMap;

use eframe::egui::{self, Color32, Key, RichText};
use uuid::Uuid;

use super::commands::Command;
use super::theme;
use crate::model::{Annotation, Class, ReviewState};

/// Classes in project order, with parsed colours and an index by id.
#[derive(Clone, Debug, Default)]
pub struct ClassTable {
    classes: Vec<Class>,
    colors: Vec<Color32>,
    index: HashMap<Uuid, usize>,
}

impl ClassTable {
    pub fn new(classes: Vec<Class>) -> Self {
        let mut t = Self::default();
        for c in classes {
            t.push(c);
        }
        t
    }

    /// Adds a class (or replaces the one with the same id).
    pub fn push(&mut self, class: Class) {
        if let Some(&i) = self.index.get(&class.id) {
            self.colors[i] = theme::class_color(&class.color);
            self.classes[i] = class;
            return;
        }
        self.index.insert(class.id, self.classes.len());
        self.colors.push(theme::class_color(&class.color));
        self.classes.push(class);
    }

    pub fn get(&self, id: Uuid) -> Option<&Class> {
        self.index.get(&id).map(|&i| &self.classes[i])
    }

    /// The colour of a class; grey for unknown ids.
    pub fn color(&self, id: Uuid) -> Color32 {
        self.index
            .get(&id)
            .map_or(Color32::from_gray(0xa0), |&i| self.colors[i])
    }

    /// The name of a class; "?" for unknown ids.
    pub fn name(&self, id: Uuid) -> &str {
        self.get(id).map_or("?", |c| c.name.as_str())
    }

    /// The class at a position in the list (0-based), for the digit keys.
    pub fn at(&self, position: usize) -> Option<&Class> {
        self.classes.get(position)
    }

    /// Position (0-based) of a class in the list.
    pub fn position(&self, id: Uuid) -> Option<usize> {
        self.index.get(&id).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Class> {
        self.classes.iter()
    }

    pub fn len(&self) -> usize {
        self.classes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// Classes whose name contains `query` (case-insensitive), prefix matches first.
    pub fn search(&self, query: &str) -> Vec<&Class> {
        let q = query.trim().to_lowercase();
        let mut hits: Vec<(bool, &Class)> = self
            .classes
            .iter()
            .filter_map(|c| {
                let name = c.name.to_lowercase();
                name.contains(&q).then(|| (!name.starts_with(&q), c))
            })
            .collect();
        hits.sort_by_key(|(not_prefix, _)| *not_prefix);
        hits.into_iter().map(|(_, c)| c).collect()
    }
}

/// Minimum scores below which proposals are hidden, per class.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Thresholds {
    per_class: HashMap<Uuid, f32>,
}

impl Thresholds {
    /// The threshold of a class (0 unless set).
    pub fn get(&self, class: Uuid) -> f32 {
        self.per_class.get(&class).copied().unwrap_or(0.0)
    }

    pub fn set(&mut self, class: Uuid, threshold: f32) {
        self.per_class.insert(class, threshold.clamp(0.0, 1.0));
    }

    /// True when a box is drawn: not rejected, and a proposal only at or above its threshold.
    pub fn is_shown(&self, a: &Annotation) -> bool {
        match a.value.state {
            ReviewState::Rejected => false,
            ReviewState::Proposed => {
                a.value.source.score().unwrap_or(1.0) >= self.get(a.value.class)
            }
            _ => !a.value.deleted,
        }
    }

    /// True for a proposal that is shown (what Space and Shift+A accept).
    pub fn is_visible_proposal(&self, a: &Annotation) -> bool {
        a.value.state == ReviewState::Proposed && self.is_shown(a)
    }
}

/// What the class picker will set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PickerTarget {
    /// The class of the selected box.
    Selected(Uuid),
    /// The class new boxes get.
    NewBoxes,
}

/// A small window: type to filter classes, Enter picks the first, or creates a new class.
#[derive(Default)]
pub struct ClassPicker {
    open: Option<PickerTarget>,
    query: String,
    focus_requested: bool,
}

impl ClassPicker {
    /// Opens the picker for a target.
    pub fn open(&mut self, target: PickerTarget) {
        self.open = Some(target);
        self.query.clear();
        self.focus_requested = false;
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Draws the picker (when open) and emits `SetClass` / `CreateClass`.
    pub fn ui(&mut self, ctx: &egui::Context, classes: &ClassTable, out: &mut Vec<Command>) {
        let Some(target) = self.open else {
            return;
        };
        let mut close = false;
        egui::Window::new("Class")
            .collapsible(false)
            .resizable(false)
            .title_bar(false)
            .anchor(egui::Align2::CENTER_TOP, egui::vec2(0.0, 80.0))
            .fixed_size(egui::vec2(260.0, 0.0))
            .show(ctx, |ui| {
                ui.label(match target {
                    PickerTarget::Selected(_) => "Class of the selected box",
                    PickerTarget::NewBoxes => "Class for new boxes",
                });
                let edit = ui.add(
                    egui::TextEdit::singleline(&mut self.query)
                        .hint_text("type to search or create…")
                        .desired_width(f32::INFINITY),
                );
                if !self.focus_requested {
                    edit.request_focus();
                    self.focus_requested = true;
                }
                let hits = classes.search(&self.query);
                let exact = hits
                    .iter()
                    .any(|c| c.name.eq_ignore_ascii_case(self.query.trim()));
                let enter = ui.input(|i| i.key_pressed(Key::Enter));
                let escape = ui.input(|i| i.key_pressed(Key::Escape));
                for (i, class) in hits.iter().take(12).enumerate() {
                    let color = classes.color(class.id);
                    let digit = classes
                        .position(class.id)
                        .filter(|p| *p < 9)
                        .map(|p| format!("{}  ", p + 1))
                        .unwrap_or_default();
                    let text = RichText::new(format!("{digit}{}", class.name)).color(color);
                    let row = ui.selectable_label(i == 0 && !self.query.is_empty(), text);
                    if row.clicked() || (enter && i == 0 && !self.query.trim().is_empty()) {
                        out.push(Command::SetClass {
                            target,
                            class: class.id,
                        });
                        close = true;
                    }
                }
                let name = self.query.trim().to_owned();
                if !name.is_empty() && !exact {
                    let create = ui.button(format!("Create class “{name}”"));
                    if create.clicked() || (enter && hits.is_empty()) {
                        out.push(Command::CreateClass { name, target });
                        close = true;
                    }
                }
                if escape {
                    close = true;
                }
                ui.label(
                    RichText::new("Enter picks the first match · Esc closes")
                        .small()
                        .color(theme::TEXT_WEAK),
                );
            });
        if close {
            self.open = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AnnotationValue, BBox, BoxFlags, Source};

    fn class(name: &str, order: i64) -> Class {
        Class {
            id: Uuid::now_v7(),
            name: name.into(),
            color: "#1f77b4".into(),
            order,
        }
    }

    #[test]
    fn search_puts_prefix_matches_first() {
        let t = ClassTable::new(vec![
            class("bus stop", 0),
            class("bicycle", 1),
            class("minibus", 2),
        ]);
        let names: Vec<&str> = t.search("bus").iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["bus stop", "minibus"]);
        assert_eq!(t.search("").len(), 3);
        assert_eq!(t.at(1).map(|c| c.name.as_str()), Some("bicycle"));
    }

    #[test]
    fn thresholds_hide_low_scoring_proposals_only() {
        let c = Uuid::now_v7();
        let mut t = Thresholds::default();
        let mut a = Annotation {
            id: Uuid::now_v7(),
            value: AnnotationValue {
                image: Uuid::nil(),
                class: c,
                bbox: BBox::new(0.0, 0.0, 1.0, 1.0),
                source: Source::Model {
                    run: Uuid::nil(),
                    score: 0.4,
                },
                state: ReviewState::Proposed,
                flags: BoxFlags::default(),
                deleted: false,
                attributes: Default::default(),
            },
        };
        assert!(t.is_visible_proposal(&a));
        t.set(c, 0.5);
        assert!(!t.is_shown(&a));
        a.value.state = ReviewState::Accepted;
        assert!(t.is_shown(&a));
        a.value.state = ReviewState::Rejected;
        assert!(!t.is_shown(&a));
    }
}
