//! The side panel: the classes (digit keys, colours, the class new boxes get), the boxes of the
//! current image (class, source, score, review state; click selects), and the proposal review
//! tools (per-class score thresholds, accept buttons).

use eframe::egui::{self, Align2, FontId, Rect, RichText, ScrollArea, Sense, Ui, pos2, vec2};
use uuid::Uuid;

use super::classes::{ClassTable, Thresholds};
use super::commands::Command;
use super::shortcuts::{Action, Keymap};
use super::theme;
use crate::model::{Annotation, ReviewState, Source};

/// Height of a box row.
const ROW_HEIGHT: f32 = 22.0;

/// What the panel reads.
pub struct BoxPanelInput<'a> {
    pub boxes: &'a [Annotation],
    pub classes: &'a ClassTable,
    pub selected: Option<Uuid>,
    pub current_class: Option<Uuid>,
    pub keymap: &'a Keymap,
}

/// The side panel's own state.
#[derive(Default)]
pub struct BoxPanel {
    /// Index of the selection in the shown rows last frame, to scroll it into view.
    last_selected: Option<Uuid>,
}

fn state_label(state: ReviewState) -> &'static str {
    match state {
        ReviewState::Proposed => "proposed",
        ReviewState::Accepted => "accepted",
        ReviewState::Corrected => "corrected",
        ReviewState::Rejected => "rejected",
        ReviewState::Submitted => "submitted",
        ReviewState::Approved => "approved",
        ReviewState::Returned => "returned",
    }
}

impl BoxPanel {
    /// Draws the panel. Thresholds are view state and change here directly.
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        input: &BoxPanelInput<'_>,
        thresholds: &mut Thresholds,
        out: &mut Vec<Command>,
    ) {
        self.classes_ui(ui, input, out);
        ui.add_space(4.0);
        self.review_ui(ui, input, thresholds, out);
        ui.add_space(4.0);
        self.boxes_ui(ui, input, thresholds, out);
    }

    fn classes_ui(&mut self, ui: &mut Ui, input: &BoxPanelInput<'_>, out: &mut Vec<Command>) {
        ui.horizontal(|ui| {
            ui.heading("Classes");
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui
                    .small_button("+ Class")
                    .on_hover_text(input.keymap.tooltip(Action::ClassPicker))
                    .clicked()
                {
                    out.push(Command::OpenClassPicker);
                }
            });
        });
        if input.classes.is_empty() {
            ui.label(
                RichText::new("No classes yet: press C and type a name.").color(theme::TEXT_WEAK),
            );
            return;
        }
        ScrollArea::vertical()
            .id_salt("class-list")
            .max_height(150.0)
            .auto_shrink([false, true])
            .show(ui, |ui| {
                for (i, class) in input.classes.iter().enumerate() {
                    let color = input.classes.color(class.id);
                    let current = input.current_class == Some(class.id);
                    let digit = if i < 9 {
                        format!("{}", i + 1)
                    } else {
                        " ".into()
                    };
                    let (rect, response) =
                        ui.allocate_exact_size(vec2(ui.available_width(), 18.0), Sense::click());
                    let painter = ui.painter_at(rect);
                    if current {
                        painter.rect_filled(rect, 3.0, theme::selected_row(ui));
                    } else if response.hovered() {
                        painter.rect_filled(rect, 3.0, theme::hover_row(ui));
                    }
                    painter.text(
                        pos2(rect.left() + 4.0, rect.center().y),
                        Align2::LEFT_CENTER,
                        digit,
                        FontId::monospace(11.0),
                        theme::TEXT_WEAK,
                    );
                    let swatch = Rect::from_center_size(
                        pos2(rect.left() + 22.0, rect.center().y),
                        vec2(10.0, 10.0),
                    );
                    painter.rect_filled(swatch, 2.0, color);
                    painter.text(
                        pos2(rect.left() + 34.0, rect.center().y),
                        Align2::LEFT_CENTER,
                        &class.name,
                        FontId::proportional(13.0),
                        theme::text(ui),
                    );
                    response.widget_info(|| {
                        egui::WidgetInfo::labeled(
                            egui::Role::Button,
                            true,
                            format!("class {}", class.name),
                        )
                    });
                    let response = if i < 9 {
                        response.on_hover_text(
                            input
                                .keymap
                                .tooltip(Action::Class(u8::try_from(i + 1).unwrap_or(9))),
                        )
                    } else {
                        response
                    };
                    if response.clicked() {
                        out.push(Command::ClassAt(i));
                    }
                }
            });
    }

    fn review_ui(
        &mut self,
        ui: &mut Ui,
        input: &BoxPanelInput<'_>,
        thresholds: &mut Thresholds,
        out: &mut Vec<Command>,
    ) {
        // Few classes, possibly thousands of proposals: collect the distinct classes first.
        let mut proposal_classes: Vec<Uuid> = Vec::new();
        for a in input.boxes {
            if a.value.state == ReviewState::Proposed && !proposal_classes.contains(&a.value.class)
            {
                proposal_classes.push(a.value.class);
            }
        }
        proposal_classes.sort_by_key(|c| input.classes.position(*c));
        if proposal_classes.is_empty() {
            return;
        }
        ui.separator();
        ui.heading("Proposals");
        let visible = input
            .boxes
            .iter()
            .filter(|a| thresholds.is_visible_proposal(a))
            .count();
        let hidden = input
            .boxes
            .iter()
            .filter(|a| a.value.state == ReviewState::Proposed && !thresholds.is_shown(a))
            .count();
        ui.label(
            RichText::new(if hidden == 0 {
                format!("{visible} to review")
            } else {
                format!("{visible} to review · {hidden} below threshold (Space rejects them)")
            })
            .small()
            .color(theme::TEXT_WEAK),
        );
        for class in proposal_classes {
            ui.horizontal(|ui| {
                let color = input.classes.color(class);
                ui.label(RichText::new(input.classes.name(class)).color(color));
                let mut t = thresholds.get(class);
                let slider = ui.add(
                    egui::Slider::new(&mut t, 0.0..=1.0)
                        .fixed_decimals(2)
                        .text("min score"),
                );
                if slider.changed() {
                    thresholds.set(class, t);
                }
            });
        }
        ui.horizontal(|ui| {
            if ui
                .button("Accept visible")
                .on_hover_text(input.keymap.tooltip(Action::AcceptAllVisible))
                .clicked()
            {
                out.push(Command::AcceptAllVisible);
            }
            if ui
                .button("Accept & next")
                .on_hover_text(input.keymap.tooltip(Action::AcceptAndNext))
                .clicked()
            {
                out.push(Command::AcceptAndNext);
            }
        });
    }

    fn boxes_ui(
        &mut self,
        ui: &mut Ui,
        input: &BoxPanelInput<'_>,
        thresholds: &Thresholds,
        out: &mut Vec<Command>,
    ) {
        ui.separator();
        let shown: Vec<&Annotation> = input
            .boxes
            .iter()
            .filter(|a| thresholds.is_shown(a))
            .collect();
        let rejected = input
            .boxes
            .iter()
            .filter(|a| a.value.state == ReviewState::Rejected)
            .count();
        ui.horizontal(|ui| {
            ui.heading("Boxes");
            let mut note = format!("{}", shown.len());
            if rejected > 0 {
                note.push_str(&format!(" · {rejected} rejected"));
            }
            ui.label(RichText::new(note).color(theme::TEXT_WEAK));
        });
        let selected_row = input
            .selected
            .and_then(|id| shown.iter().position(|a| a.id == id));
        let mut area = ScrollArea::vertical()
            .id_salt("box-rows")
            .auto_shrink([false, false]);
        if input.selected != self.last_selected {
            self.last_selected = input.selected;
            if let Some(row) = selected_row {
                #[allow(clippy::cast_precision_loss)]
                let top = (row as f32 - 3.0).max(0.0) * (ROW_HEIGHT + ui.spacing().item_spacing.y);
                area = area.vertical_scroll_offset(top);
            }
        }
        area.show_rows(ui, ROW_HEIGHT, shown.len(), |ui, range| {
            for i in range {
                let Some(a) = shown.get(i) else {
                    break;
                };
                box_row_ui(ui, a, input, out);
            }
        });
    }
}

fn box_row_ui(ui: &mut Ui, a: &Annotation, input: &BoxPanelInput<'_>, out: &mut Vec<Command>) {
    let selected = input.selected == Some(a.id);
    let (rect, response) =
        ui.allocate_exact_size(vec2(ui.available_width(), ROW_HEIGHT), Sense::click());
    let painter = ui.painter_at(rect);
    if selected {
        painter.rect_filled(rect, 3.0, theme::selected_row(ui));
    } else if response.hovered() {
        painter.rect_filled(rect, 3.0, theme::hover_row(ui));
    }
    let color = input.classes.color(a.value.class);
    let swatch = Rect::from_center_size(pos2(rect.left() + 9.0, rect.center().y), vec2(10.0, 10.0));
    if a.value.state == ReviewState::Proposed {
        painter.rect_stroke(
            swatch,
            2.0,
            egui::Stroke::new(1.5, color),
            egui::StrokeKind::Inside,
        );
    } else {
        painter.rect_filled(swatch, 2.0, color);
    }
    let name = input.classes.name(a.value.class);
    painter.text(
        pos2(rect.left() + 20.0, rect.center().y),
        Align2::LEFT_CENTER,
        name,
        FontId::proportional(13.0),
        theme::text(ui),
    );
    let source = match &a.value.source {
        Source::Human => "human".to_owned(),
        Source::Model { score, .. } => format!("model {score:.2}"),
    };
    let state = state_label(a.value.state);
    let state_color = match a.value.state {
        ReviewState::Proposed => theme::PROPOSAL,
        ReviewState::Accepted | ReviewState::Approved => theme::OK,
        ReviewState::Returned | ReviewState::Rejected => theme::ERROR,
        _ => theme::TEXT_WEAK,
    };
    painter.text(
        pos2(rect.right() - 4.0, rect.center().y),
        Align2::RIGHT_CENTER,
        state,
        FontId::proportional(11.0),
        state_color,
    );
    painter.text(
        pos2(rect.right() - 70.0, rect.center().y),
        Align2::RIGHT_CENTER,
        source,
        FontId::proportional(11.0),
        theme::TEXT_WEAK,
    );
    response.widget_info(|| {
        egui::WidgetInfo::labeled(egui::Role::Button, true, format!("box {name} {state}"))
    });
    if response.clicked() {
        out.push(Command::Select(Some(a.id)));
    }
}
