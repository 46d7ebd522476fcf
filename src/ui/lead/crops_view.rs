//! The crop grid: every box of one class as a grid of crops, the boxes least like the others
//! first (cosine distance of each crop's embedding to the class centre, `review::crops`), or as
//! listed when the project has no box embeddings. Selected crops take bulk fixes (another
//! class, delete or reject) that the session commits as one undoable change; a double click or
//! Enter opens the box on the canvas.
//!
//! The list is read on the lead query thread; crops are cut and decoded on this view's own
//! `loupe-crops` thread (`thumbs::Thumbnails`), only for the rows on screen.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use eframe::egui::{self, RichText, Sense, Ui};
use uuid::Uuid;

use super::super::commands::Command;
use super::super::theme;
use super::super::thumbs::{Thumbnails, crop_key};
use super::cache::Cached;
use super::jobs::CropsKey;
use super::{Asker, Choices, LeadCommand, Query};
use crate::review::crops::{ClassCrops, Crop};

/// A tile: the crop and a line of text under it, in points.
const TILE_SIDE: f32 = 120.0;
const TILE_TEXT: f32 = 18.0;
const TILE_GAP: f32 = 6.0;

/// What a bulk fix does to the selected boxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CropsFix {
    /// Give them this class.
    SetClass(Uuid),
    /// Delete labels, reject proposals.
    Remove,
}

/// The crop grid's state.
pub struct CropsView {
    class: Option<Uuid>,
    proposals: bool,
    /// Shared, so a frame draws the list without copying it.
    pub crops: Cached<CropsKey, Arc<ClassCrops>>,
    /// The selected boxes.
    selected: HashSet<Uuid>,
    /// The list the selection was last checked against (boxes gone from it are forgotten).
    checked: Option<Arc<ClassCrops>>,
    /// Where a Shift+click range starts (an index into the list).
    anchor: Option<usize>,
    /// The class the "Change class" button gives.
    target: Option<Uuid>,
    thumbs: Thumbnails,
}

impl CropsView {
    /// Starts the view's crop thread.
    pub fn new(ctx: &egui::Context) -> CropsView {
        CropsView {
            class: None,
            proposals: false,
            crops: Cached::default(),
            selected: HashSet::new(),
            checked: None,
            anchor: None,
            target: None,
            thumbs: Thumbnails::named(ctx, "loupe-crops"),
        }
    }

    /// Shows the boxes of `class`.
    pub fn show_class(&mut self, class: Uuid) {
        if self.class != Some(class) {
            self.class = Some(class);
            self.selected.clear();
            self.anchor = None;
        }
    }

    /// The list on screen, if read.
    pub fn shown(&self) -> Option<&ClassCrops> {
        self.crops
            .value()
            .and_then(|r| r.as_ref().ok())
            .map(AsRef::as_ref)
    }

    /// The selected boxes, in list order.
    pub fn selected(&self) -> Vec<Uuid> {
        self.selected_boxes()
            .into_iter()
            .map(|(_, ann)| ann)
            .collect()
    }

    /// Forgets the selection (Escape).
    pub fn deselect(&mut self) {
        self.selected.clear();
        self.anchor = None;
    }

    /// The selected boxes as (image, box), in list order.
    pub fn selected_boxes(&self) -> Vec<(Uuid, Uuid)> {
        self.shown()
            .map(|c| {
                c.crops
                    .iter()
                    .filter(|c| self.selected.contains(&c.ann))
                    .map(|c| (c.image, c.ann))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// True when every crop asked for is made (or failed). For tests.
    pub fn crops_idle(&self) -> bool {
        self.thumbs.is_idle()
    }

    fn click(&mut self, index: usize, ann: Uuid, modifiers: egui::Modifiers) {
        if modifiers.shift
            && let (Some(anchor), Some(list)) = (self.anchor, self.shown())
        {
            let (a, b) = (anchor.min(index), anchor.max(index));
            let range: Vec<Uuid> = list
                .crops
                .get(a..=b)
                .unwrap_or_default()
                .iter()
                .map(|c| c.ann)
                .collect();
            self.selected.extend(range);
            return;
        }
        if modifiers.command || modifiers.ctrl {
            if !self.selected.remove(&ann) {
                self.selected.insert(ann);
            }
        } else {
            self.selected = HashSet::from([ann]);
        }
        self.anchor = Some(index);
    }

    /// Draws the view.
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        asker: &mut Asker<'_>,
        choices: Option<&Choices>,
        root: &Path,
        out: &mut Vec<Command>,
    ) {
        let classes = choices.map(|c| c.classes.as_slice()).unwrap_or_default();
        if self
            .class
            .is_none_or(|c| !classes.iter().any(|k| k.id == c))
            && let Some(first) = classes.first()
        {
            self.show_class(first.id);
        }
        let class_name = |id: Option<Uuid>| {
            id.and_then(|id| classes.iter().find(|c| c.id == id))
                .map_or("pick a class", |c| c.name.as_str())
                .to_owned()
        };
        ui.horizontal(|ui| {
            ui.heading("Crops");
            let label = ui.label("class");
            egui::ComboBox::from_id_salt("crops-class")
                .selected_text(class_name(self.class))
                .show_ui(ui, |ui| {
                    for c in classes {
                        if ui
                            .selectable_label(self.class == Some(c.id), &c.name)
                            .clicked()
                        {
                            self.show_class(c.id);
                        }
                    }
                })
                .response
                .labelled_by(label.id);
            if ui
                .checkbox(&mut self.proposals, "proposals too")
                .on_hover_text("Show the class's model proposals beside its labels")
                .changed()
            {
                self.deselect();
            }
            if self.crops.loading() {
                ui.spinner();
            }
        });
        let Some(class) = self.class else {
            ui.label("The project has no classes yet.");
            return;
        };
        let key = CropsKey {
            class,
            proposals: self.proposals,
        };
        self.crops.ensure(asker, &key, || Query::Crops(key));
        let list = match self.crops.value() {
            None => return,
            Some(Err(e)) => {
                ui.colored_label(theme::ERROR, e);
                return;
            }
            Some(Ok(list)) => Arc::clone(list),
        };
        // Selected boxes that are gone (deleted, or moved to another class) are forgotten, once
        // per list read.
        if !self.checked.as_ref().is_some_and(|c| Arc::ptr_eq(c, &list)) {
            let listed: HashSet<Uuid> = list.crops.iter().map(|c| c.ann).collect();
            self.selected.retain(|s| listed.contains(s));
            self.checked = Some(Arc::clone(&list));
        }
        ui.label(RichText::new(order_note(&list)).color(theme::TEXT_WEAK));
        ui.label(
            RichText::new(
                "Click selects, Ctrl+click adds or removes, Shift+click selects a range · \
                 Enter or double click opens the box · Delete deletes (rejects proposals) · \
                 Esc clears",
            )
            .color(theme::TEXT_WEAK),
        );
        self.actions_ui(ui, &list, classes, class, out);
        ui.separator();
        self.grid_ui(ui, &list, root, out);
        self.thumbs.end_frame(ui.ctx());
    }

    /// The selection's count and the bulk fixes.
    fn actions_ui(
        &mut self,
        ui: &mut Ui,
        list: &ClassCrops,
        classes: &[crate::model::Class],
        class: Uuid,
        out: &mut Vec<Command>,
    ) {
        if self.target.is_none_or(|t| t == class) {
            self.target = classes.iter().find(|c| c.id != class).map(|c| c.id);
        }
        let boxes = self.selected_boxes();
        ui.horizontal_wrapped(|ui| {
            ui.label(format!("{} of {} selected", boxes.len(), list.crops.len()));
            ui.add_enabled_ui(!boxes.is_empty(), |ui| {
                let label = ui.label("to class");
                egui::ComboBox::from_id_salt("crops-target")
                    .selected_text(
                        self.target
                            .and_then(|t| classes.iter().find(|c| c.id == t))
                            .map_or("", |c| c.name.as_str()),
                    )
                    .show_ui(ui, |ui| {
                        for c in classes.iter().filter(|c| c.id != class) {
                            if ui
                                .selectable_label(self.target == Some(c.id), &c.name)
                                .clicked()
                            {
                                self.target = Some(c.id);
                            }
                        }
                    })
                    .response
                    .labelled_by(label.id);
                if let Some(target) = self.target
                    && ui
                        .button("Change class")
                        .on_hover_text("Give the selected boxes this class (one undoable change)")
                        .clicked()
                {
                    out.push(Command::Lead(LeadCommand::CropsFix {
                        boxes: boxes.clone(),
                        fix: CropsFix::SetClass(target),
                    }));
                }
                if ui
                    .button("Delete")
                    .on_hover_text(
                        "Delete the selected labels and reject the selected proposals \
                         (one undoable change; Delete key)",
                    )
                    .clicked()
                {
                    out.push(Command::Lead(LeadCommand::CropsFix {
                        boxes: boxes.clone(),
                        fix: CropsFix::Remove,
                    }));
                }
                if ui
                    .button("Open")
                    .on_hover_text(
                        "Open the first selected box on the canvas (Enter, double click)",
                    )
                    .clicked()
                    && let Some(&(image, ann)) = boxes.first()
                {
                    out.push(Command::Lead(LeadCommand::OpenBox { image, ann }));
                }
            });
        });
    }

    /// The tiles, only the rows on screen drawn (and cropped).
    fn grid_ui(&mut self, ui: &mut Ui, list: &ClassCrops, root: &Path, out: &mut Vec<Command>) {
        if list.crops.is_empty() {
            ui.label("No boxes of this class.");
            return;
        }
        let step = TILE_SIDE + TILE_GAP;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let columns = ((ui.available_width() + TILE_GAP) / step).floor().max(1.0) as usize;
        let rows = list.crops.len().div_ceil(columns);
        egui::ScrollArea::vertical()
            .id_salt("crops-grid")
            .auto_shrink([false, false])
            .show_rows(ui, TILE_SIDE + TILE_TEXT + TILE_GAP, rows, |ui, range| {
                for row in range {
                    ui.horizontal(|ui| {
                        ui.spacing_mut().item_spacing.x = TILE_GAP;
                        let start = row * columns;
                        let end = (start + columns).min(list.crops.len());
                        for (index, c) in list.crops[start..end].iter().enumerate() {
                            self.tile_ui(ui, start + index, c, root, out);
                        }
                    });
                }
            });
    }

    fn tile_ui(
        &mut self,
        ui: &mut Ui,
        index: usize,
        c: &Crop,
        root: &Path,
        out: &mut Vec<Command>,
    ) {
        let (rect, response) =
            ui.allocate_exact_size(egui::vec2(TILE_SIDE, TILE_SIDE + TILE_TEXT), Sense::click());
        let name = c.path.rsplit('/').next().unwrap_or(&c.path);
        let label = format!("crop {}: {name}", index + 1);
        response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, label.clone()));
        let selected = self.selected.contains(&c.ann);
        let painter = ui.painter_at(rect);
        let image_rect = egui::Rect::from_min_size(rect.min, egui::vec2(TILE_SIDE, TILE_SIDE));
        painter.rect_filled(image_rect, 2.0, theme::CANVAS_BG);
        match self
            .thumbs
            .crop(crop_key(c.ann, &c.bbox), &root.join(&c.path), c.bbox)
        {
            Some(texture) => {
                let size = texture.size_vec2();
                let scale = (TILE_SIDE / size.x.max(1.0)).min(TILE_SIDE / size.y.max(1.0));
                let shown = egui::Rect::from_center_size(image_rect.center(), size * scale);
                painter.image(
                    texture.id(),
                    shown,
                    egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
                    egui::Color32::WHITE,
                );
            }
            None => {
                painter.text(
                    image_rect.center(),
                    egui::Align2::CENTER_CENTER,
                    "…",
                    egui::FontId::proportional(14.0),
                    theme::TEXT_WEAK,
                );
            }
        }
        let text = match c.distance {
            Some(d) => format!("{d:.3}"),
            None => "–".to_owned(),
        };
        let proposal = c.state == crate::model::ReviewState::Proposed;
        painter.text(
            egui::pos2(rect.center().x, rect.max.y - TILE_TEXT / 2.0),
            egui::Align2::CENTER_CENTER,
            if proposal {
                format!("{text} · proposal")
            } else {
                text
            },
            egui::FontId::proportional(11.0),
            theme::TEXT_WEAK,
        );
        if selected {
            painter.rect_stroke(
                rect.shrink(1.0),
                2.0,
                egui::Stroke::new(3.0, theme::ACCENT),
                egui::StrokeKind::Inside,
            );
        } else if response.hovered() {
            painter.rect_stroke(
                rect.shrink(1.0),
                2.0,
                egui::Stroke::new(1.0, theme::TEXT_WEAK),
                egui::StrokeKind::Inside,
            );
        }
        let response = response.on_hover_text(format!(
            "{}\n{} · {}",
            c.path,
            c.state.as_str(),
            match c.distance {
                Some(d) => format!("distance to the class centre {d:.4}"),
                None => "no embedding".to_owned(),
            }
        ));
        if response.double_clicked() {
            out.push(Command::Lead(LeadCommand::OpenBox {
                image: c.image,
                ann: c.ann,
            }));
        } else if response.clicked() {
            let modifiers = ui.input(|i| i.modifiers);
            self.click(index, c.ann, modifiers);
        }
    }
}

/// How the list is ordered, for people.
fn order_note(list: &ClassCrops) -> String {
    let n = list.crops.len();
    if n == 0 {
        return "No boxes of this class (labels only unless \"proposals too\" is ticked).".into();
    }
    match &list.set {
        None => format!(
            "{n} boxes as listed (oldest first). `loupe embed --model M --boxes` embeds the box \
             crops; then this view puts the boxes least like the rest of their class first."
        ),
        Some(set) if list.ranked == n => format!(
            "{n} boxes, the least like the class first: cosine distance to the class centre in \
             embedding set {set}."
        ),
        Some(set) => format!(
            "{} of {n} boxes ranked by cosine distance to the class centre in embedding set \
             {set}, the least like the class first; the other {} have no embedding (new or \
             moved since: run `loupe embed --model M --boxes` again) and follow as listed.",
            list.ranked,
            n - list.ranked
        ),
    }
}
