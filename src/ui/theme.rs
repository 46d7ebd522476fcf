//! Colours, sizes and text styles of the app: the one place to change how Loupe looks.

use eframe::egui::{self, Color32, CornerRadius, FontFamily, FontId, Margin, Stroke, TextStyle};

/// Background of the canvas around the image.
pub const CANVAS_BG: Color32 = Color32::from_rgb(0x16, 0x17, 0x1a);
/// Background of side panels and bars.
pub const PANEL_BG: Color32 = Color32::from_rgb(0x1e, 0x20, 0x24);
/// Background of the top and status bars.
pub const BAR_BG: Color32 = Color32::from_rgb(0x19, 0x1b, 0x1f);
/// Body text.
pub const TEXT: Color32 = Color32::from_rgb(0xdd, 0xdf, 0xe3);
/// Secondary text (counts, hints).
pub const TEXT_WEAK: Color32 = Color32::from_rgb(0x8b, 0x90, 0x99);
/// Selection and focus.
pub const ACCENT: Color32 = Color32::from_rgb(0x4c, 0x9a, 0xff);
/// Fill behind the selected row of a list.
pub const SELECTED_ROW: Color32 = Color32::from_rgb(0x2a, 0x3b, 0x55);
/// Something was lost or refused.
pub const ERROR: Color32 = Color32::from_rgb(0xff, 0x6b, 0x6b);
/// Work in progress (saving, decoding).
pub const BUSY: Color32 = Color32::from_rgb(0xf2, 0xc1, 0x4e);
/// Everything is on disk.
pub const OK: Color32 = Color32::from_rgb(0x6b, 0xd3, 0x8a);
/// Proposals waiting for review.
pub const PROPOSAL: Color32 = Color32::from_rgb(0xc7, 0x9b, 0xff);
/// The ruler's line.
pub const RULER: Color32 = Color32::from_rgb(0xff, 0xd8, 0x4d);
/// Triage findings drawn on the canvas.
pub const SIGNAL: Color32 = Color32::from_rgb(0xff, 0x9f, 0x43);
/// Crosshair guides while drawing.
pub const GUIDE: Color32 = Color32::from_rgba_premultiplied(0xb0, 0xb0, 0xb0, 0x90);

/// Stroke width of a box outline, in points.
pub const BOX_STROKE: f32 = 1.5;
/// Stroke width of the selected box, in points.
pub const SELECTED_STROKE: f32 = 2.5;
/// Side of a resize handle, in points.
pub const HANDLE_SIZE: f32 = 8.0;
/// How far from a handle's centre a press still grabs it, in points.
pub const HANDLE_GRAB: f32 = 7.0;
/// Font size of box labels, in points.
pub const LABEL_SIZE: f32 = 11.5;
/// Boxes narrower or shorter than this on screen get no label.
pub const MIN_LABELLED_BOX: f32 = 18.0;
/// Above this many boxes on screen, labels are drawn only for the selection and hovered box.
pub const MAX_LABELS: usize = 400;
/// Length of a dash and of the gap after it on proposal outlines, in points.
pub const DASH: f32 = 6.0;
pub const DASH_GAP: f32 = 4.0;
/// Height of a row in the image list, in points.
pub const IMAGE_ROW_HEIGHT: f32 = 44.0;
/// Longest side of a thumbnail, in pixels.
pub const THUMB_SIZE: u32 = 80;
/// The longer side of a crop in the crop grid, in pixels (tiles are drawn at this size).
pub const CROP_SIZE: u32 = 112;

/// The theme chosen in the settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThemeChoice {
    #[default]
    Dark,
    Light,
    /// Follow the operating system's light or dark mode.
    System,
}

impl ThemeChoice {
    pub const ALL: [ThemeChoice; 3] = [ThemeChoice::Dark, ThemeChoice::Light, ThemeChoice::System];

    pub fn label(self) -> &'static str {
        match self {
            ThemeChoice::Dark => "Dark",
            ThemeChoice::Light => "Light",
            ThemeChoice::System => "System",
        }
    }
}

/// Sets the compact look in the chosen theme. The dark style is Loupe's own palette; the light
/// style is egui's light visuals with the same sizes. With `Dark` both styles get the dark look,
/// so a system theme switch (or a test harness that picks a theme) cannot turn the app light.
pub fn apply_choice(ctx: &egui::Context, choice: ThemeChoice) {
    ctx.set_theme(match choice {
        ThemeChoice::Dark => egui::ThemePreference::Dark,
        ThemeChoice::Light => egui::ThemePreference::Light,
        ThemeChoice::System => egui::ThemePreference::System,
    });
    ctx.style_mut_of(egui::Theme::Dark, dark_style);
    ctx.style_mut_of(egui::Theme::Light, |style| {
        if choice == ThemeChoice::Dark {
            dark_style(style);
        } else {
            light_style(style);
        }
    });
}

/// egui's light visuals with Loupe's sizes; text colours come from the visuals.
fn light_style(style: &mut egui::Style) {
    sizes(style);
    style.visuals = egui::Visuals::light();
    style.visuals.window_corner_radius = CornerRadius::same(6);
    style.visuals.hyperlink_color = ACCENT;
}

/// Background of side panels in the current theme.
pub fn panel_bg(ui: &egui::Ui) -> Color32 {
    if ui.visuals().dark_mode {
        PANEL_BG
    } else {
        ui.visuals().panel_fill
    }
}

/// Background of the top and status bars in the current theme.
pub fn bar_bg(ui: &egui::Ui) -> Color32 {
    if ui.visuals().dark_mode {
        BAR_BG
    } else {
        ui.visuals().faint_bg_color
    }
}

/// Body text in the current theme.
pub fn text(ui: &egui::Ui) -> Color32 {
    if ui.visuals().dark_mode {
        TEXT
    } else {
        ui.visuals().text_color()
    }
}

/// Fill behind the selected row of a list in the current theme.
pub fn selected_row(ui: &egui::Ui) -> Color32 {
    ui.visuals().selection.bg_fill
}

/// Fill behind a hovered row of a list in the current theme.
pub fn hover_row(ui: &egui::Ui) -> Color32 {
    if ui.visuals().dark_mode {
        Color32::from_gray(0x28)
    } else {
        ui.visuals().widgets.hovered.weak_bg_fill
    }
}

/// Sizes and text styles shared by both themes.
fn sizes(style: &mut egui::Style) {
    style.spacing.item_spacing = egui::vec2(6.0, 4.0);
    style.spacing.button_padding = egui::vec2(6.0, 2.0);
    style.spacing.interact_size.y = 20.0;
    style.spacing.window_margin = Margin::same(10);
    style.text_styles = text_styles();
}

fn text_styles() -> std::collections::BTreeMap<TextStyle, FontId> {
    [
        (
            TextStyle::Heading,
            FontId::new(16.0, FontFamily::Proportional),
        ),
        (TextStyle::Body, FontId::new(13.0, FontFamily::Proportional)),
        (
            TextStyle::Monospace,
            FontId::new(12.0, FontFamily::Monospace),
        ),
        (
            TextStyle::Button,
            FontId::new(13.0, FontFamily::Proportional),
        ),
        (
            TextStyle::Small,
            FontId::new(11.0, FontFamily::Proportional),
        ),
    ]
    .into()
}

/// Loupe's dark palette with its sizes.
fn dark_style(style: &mut egui::Style) {
    style.visuals = egui::Visuals::dark();
    sizes(style);
    let v = &mut style.visuals;
    v.panel_fill = PANEL_BG;
    v.window_fill = PANEL_BG;
    v.extreme_bg_color = CANVAS_BG;
    v.override_text_color = Some(TEXT);
    v.selection.bg_fill = SELECTED_ROW;
    v.selection.stroke = Stroke::new(1.0, ACCENT);
    v.hyperlink_color = ACCENT;
    v.window_corner_radius = CornerRadius::same(6);
    v.widgets.noninteractive.bg_stroke = Stroke::new(1.0, Color32::from_gray(0x33));
}

/// Parses a `#rrggbb` class colour; grey when it is malformed.
pub fn class_color(hex: &str) -> Color32 {
    let h = hex.trim_start_matches('#');
    let byte = |i: usize| h.get(i..i + 2).and_then(|s| u8::from_str_radix(s, 16).ok());
    match (h.len(), byte(0), byte(2), byte(4)) {
        (6, Some(r), Some(g), Some(b)) => Color32::from_rgb(r, g, b),
        _ => Color32::from_gray(0xa0),
    }
}

/// Black or white, whichever reads better on `bg`.
pub fn text_on(bg: Color32) -> Color32 {
    let luma = 0.299 * f32::from(bg.r()) + 0.587 * f32::from(bg.g()) + 0.114 * f32::from(bg.b());
    if luma > 150.0 {
        Color32::BLACK
    } else {
        Color32::WHITE
    }
}

/// The font of box labels.
pub fn label_font() -> FontId {
    FontId::new(LABEL_SIZE, FontFamily::Proportional)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_colours_parse_and_fall_back_to_grey() {
        assert_eq!(class_color("#ff7f0e"), Color32::from_rgb(0xff, 0x7f, 0x0e));
        assert_eq!(class_color("nonsense"), Color32::from_gray(0xa0));
        assert_eq!(text_on(Color32::from_rgb(0xff, 0xff, 0x80)), Color32::BLACK);
        assert_eq!(text_on(Color32::from_rgb(0x1f, 0x77, 0xb4)), Color32::WHITE);
    }
}
