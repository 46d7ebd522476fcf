//! Reading 16-bit images the way a radiologist does: the window/level remembered per series
//! (per image where there is no series) and per modality, never carried from one modality to
//! another; the windows a key can pick (the file's own first, then the clinical presets for
//! CT, then the generic ones); a typed window in modality units; the value under the cursor;
//! and distances in millimetres.

use std::collections::HashMap;

use eframe::egui::{self, Pos2, RichText};
use uuid::Uuid;

use super::canvas::{Display, WindowPreset};
use super::gpu::PixelKind;
use super::loader::LoadedImage;
use super::theme;

/// A window a key can pick.
#[derive(Clone, Debug, PartialEq)]
pub enum WindowChoice {
    /// A window by name ("brain", or one the file names), in stored units (low, high).
    Named { name: String, low: f32, high: f32 },
    /// A window computed from the image (auto, min–max…).
    Preset(WindowPreset),
}

impl WindowChoice {
    pub fn name(&self) -> &str {
        match self {
            WindowChoice::Named { name, .. } => name,
            WindowChoice::Preset(p) => p.label(),
        }
    }

    /// The display this choice gives (brightness and contrast kept).
    pub fn apply(&self, display: &mut Display) {
        match self {
            WindowChoice::Named { name, low, high } => {
                display.window = Some((*low, *high));
                display.name = Some(name.clone());
            }
            WindowChoice::Preset(p) => {
                display.window = None;
                display.name = None;
                display.preset = *p;
            }
        }
    }

    /// True when `display` shows this choice.
    pub fn is_shown(&self, display: &Display) -> bool {
        match self {
            WindowChoice::Named { name, .. } => display.name.as_deref() == Some(name.as_str()),
            WindowChoice::Preset(p) => display.window.is_none() && display.preset == *p,
        }
    }
}

/// The windows offered for an image, in the order the number keys pick them: the file's own
/// windows, the clinical presets of its modality (CT), then the image's automatic windows.
/// Empty for 8-bit images.
pub fn window_choices(img: &LoadedImage) -> Vec<WindowChoice> {
    if img.kind != PixelKind::Gray16 {
        return Vec::new();
    }
    let mut choices: Vec<WindowChoice> = img
        .reading
        .iter()
        .flat_map(|r| r.windows.iter())
        .map(|(name, low, high)| WindowChoice::Named {
            name: name.clone(),
            low: *low,
            high: *high,
        })
        .collect();
    let dicom = img.reading.as_ref().is_some_and(|r| !r.modality.is_empty());
    // For DICOM, "auto" is the file's own window when it has one: say percentile here.
    choices.push(WindowChoice::Preset(WindowPreset::Robust));
    choices.push(WindowChoice::Preset(WindowPreset::MinMax));
    if !dicom {
        choices.push(WindowChoice::Preset(WindowPreset::Full));
        choices.push(WindowChoice::Preset(WindowPreset::TwelveBit));
    }
    choices
}

/// Where an image's window is remembered: its series (or itself) and its kind of image.
fn keys(id: Uuid, img: &LoadedImage) -> (Option<String>, String) {
    match (img.kind, img.reading.as_deref()) {
        (PixelKind::Gray16, Some(r)) => (
            Some(match &r.series {
                Some(uid) => format!("series {uid}"),
                None => format!("image {id}"),
            }),
            format!("16-bit {}", r.modality),
        ),
        (PixelKind::Gray16, None) => (Some(format!("image {id}")), "16-bit ".to_owned()),
        // Photos share one brightness/contrast.
        (PixelKind::Rgba8, _) => (None, "8-bit".to_owned()),
    }
}

/// What one modality last used, with a manual window kept in measured units (HU) so that it
/// means the same on a series stored with another offset.
#[derive(Clone, Debug, PartialEq)]
struct ModalityWindow {
    display: Display,
    measured: Option<(f64, f64)>,
}

/// Windows remembered this session.
#[derive(Default)]
pub struct WindowMemory {
    by_series: HashMap<String, Display>,
    by_modality: HashMap<String, ModalityWindow>,
}

impl WindowMemory {
    /// The display to open an image with: its series' window, else the last window of its
    /// modality, else the file's own window (or the automatic one).
    pub fn restore(&self, id: Uuid, img: &LoadedImage) -> Display {
        let (series, modality) = keys(id, img);
        if let Some(d) = series.as_ref().and_then(|k| self.by_series.get(k)) {
            return d.clone();
        }
        let Some(m) = self.by_modality.get(&modality) else {
            return Display::default();
        };
        if img.kind == PixelKind::Rgba8 {
            return m.display.clone();
        }
        let mut d = Display::default();
        if let Some(name) = &m.display.name
            && let Some(c) = window_choices(img).into_iter().find(|c| c.name() == name)
        {
            c.apply(&mut d);
            return d;
        }
        let values = img.gray_stats.and_then(|s| s.values);
        match (m.display.window, m.measured, values) {
            (Some(_), Some((lo, hi)), Some(v)) => {
                let (a, b) = (v.stored(lo), v.stored(hi));
                d.window = Some((a.min(b), a.max(b)));
            }
            (Some(w), None, None) => d.window = Some(w),
            (None, ..) => d.preset = m.display.preset,
            // Measured on one kind of file, stored on another: start afresh.
            _ => {}
        }
        d
    }

    /// Keeps the display of an image for its series and its modality.
    pub fn remember(&mut self, id: Uuid, img: &LoadedImage, display: &Display) {
        let (series, modality) = keys(id, img);
        if let Some(k) = series
            && self.by_series.get(&k) != Some(display)
        {
            self.by_series.insert(k, display.clone());
        }
        let values = img.gray_stats.and_then(|s| s.values);
        let measured = display
            .window
            .zip(values)
            .map(|((lo, hi), v)| (v.value(lo), v.value(hi)));
        let m = ModalityWindow {
            display: display.clone(),
            measured,
        };
        if self.by_modality.get(&modality) != Some(&m) {
            self.by_modality.insert(modality, m);
        }
    }
}

/// The value under the cursor, in what it measures ("−712 HU"); `None` off the image or for
/// 8-bit images.
pub fn value_at(img: &LoadedImage, p: Pos2) -> Option<String> {
    let stored = img.reading.as_ref()?.stored_at(p.x, p.y)?;
    let values = img.gray_stats.and_then(|s| s.values);
    Some(match values {
        Some(v) => {
            let value = v.value(f32::from(stored));
            let unit = if v.unit.is_empty() {
                String::new()
            } else {
                format!(" {}", v.unit)
            };
            if (value - value.round()).abs() < 1e-6 {
                format!("value {value:.0}{unit}")
            } else {
                format!("value {value:.2}{unit}")
            }
        }
        None => format!("value {stored}"),
    })
}

/// A measured distance between two image points: millimetres where the pixel spacing is known
/// (rows and columns may differ), else pixels.
pub fn distance_text(a: Pos2, b: Pos2, spacing: Option<(f64, f64)>) -> String {
    let (dx, dy) = (f64::from(b.x - a.x), f64::from(b.y - a.y));
    match spacing {
        Some((row, col)) => {
            let mm = ((dx * col).powi(2) + (dy * row).powi(2)).sqrt();
            if mm >= 100.0 {
                format!("{:.1} cm", mm / 10.0)
            } else {
                format!("{mm:.1} mm")
            }
        }
        None => format!("{:.1} px", (dx * dx + dy * dy).sqrt()),
    }
}

/// What the window panel decided this frame.
#[derive(Clone, Debug, PartialEq)]
pub enum WindowPanelOutcome {
    Choose(usize),
    /// A typed window: level and width in measured units.
    Typed {
        level: f64,
        width: f64,
    },
    Close,
}

/// The window mode's panel: the choices with their number keys and typed level/width fields.
#[derive(Default)]
pub struct WindowPanel {
    open: bool,
    level: String,
    width: String,
    focus_typed: bool,
    error: Option<String>,
}

impl WindowPanel {
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Opens the panel with the current window in the fields.
    pub fn open(&mut self, level: f64, width: f64) {
        self.open = true;
        self.level = format!("{level:.0}");
        self.width = format!("{width:.0}");
        self.error = None;
    }

    pub fn close(&mut self) {
        self.open = false;
        self.focus_typed = false;
    }

    /// Puts the keyboard in the level field (Enter in window mode).
    pub fn type_window(&mut self) {
        self.focus_typed = true;
    }

    /// Draws the panel over the canvas's top-left corner.
    pub fn ui(
        &mut self,
        ctx: &egui::Context,
        at: Pos2,
        choices: &[WindowChoice],
        display: &Display,
        unit: &str,
    ) -> Option<WindowPanelOutcome> {
        if !self.open {
            return None;
        }
        let mut outcome = None;
        egui::Area::new(egui::Id::unique("window-panel"))
            .fixed_pos(at)
            .order(egui::Order::Foreground)
            .show(ctx, |ui| {
                egui::Frame::popup(ui.style()).show(ui, |ui| {
                    ui.set_max_width(300.0);
                    ui.label(RichText::new("Window / level").strong());
                    ui.label(
                        RichText::new(
                            "Number keys pick a window. Enter types one. W or Escape closes.",
                        )
                        .small()
                        .color(theme::TEXT_WEAK),
                    );
                    for (i, c) in choices.iter().enumerate() {
                        let key = if i < 9 {
                            format!("{}", i + 1)
                        } else {
                            " ".to_owned()
                        };
                        let text = match c {
                            WindowChoice::Named { name, .. } => name.clone(),
                            WindowChoice::Preset(p) => p.label().to_owned(),
                        };
                        let shown = c.is_shown(display);
                        let label = RichText::new(format!("{key}  {text}")).monospace();
                        if ui.selectable_label(shown, label).clicked() {
                            outcome = Some(WindowPanelOutcome::Choose(i));
                        }
                    }
                    ui.separator();
                    let unit = if unit.is_empty() {
                        String::new()
                    } else {
                        format!(" ({unit})")
                    };
                    let mut submit = false;
                    ui.horizontal(|ui| {
                        let l = ui.label(format!("Level{unit}"));
                        let level = ui
                            .add(egui::TextEdit::singleline(&mut self.level).desired_width(60.0))
                            .labelled_by(l.id);
                        if std::mem::take(&mut self.focus_typed) {
                            level.request_focus();
                        }
                        let w = ui.label("Width");
                        let width = ui
                            .add(egui::TextEdit::singleline(&mut self.width).desired_width(60.0))
                            .labelled_by(w.id);
                        let enter = ui.input(|i| i.key_pressed(egui::Key::Enter));
                        submit = enter && (level.lost_focus() || width.lost_focus());
                        if ui.button("Apply").clicked() {
                            submit = true;
                        }
                    });
                    if submit {
                        match (
                            self.level.trim().parse::<f64>(),
                            self.width.trim().parse::<f64>(),
                        ) {
                            (Ok(level), Ok(width)) if width > 0.0 && level.is_finite() => {
                                self.error = None;
                                outcome = Some(WindowPanelOutcome::Typed { level, width });
                            }
                            _ => {
                                self.error =
                                    Some("Level is a number, width a positive number".into());
                            }
                        }
                    }
                    if let Some(e) = &self.error {
                        ui.colored_label(theme::ERROR, e);
                    }
                });
            });
        if outcome == Some(WindowPanelOutcome::Close) {
            self.close();
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ui::loader::{GrayStats, Reading, ValueMapping};

    fn ct(series: &str, offset: f64) -> LoadedImage {
        let values = ValueMapping {
            offset,
            scale: 1.0,
            inverted: false,
            unit: "HU",
            file_window: None,
            window_label: "from the file",
        };
        let v = values;
        let stored = |hu: f64| v.stored(hu);
        LoadedImage {
            width: 2,
            height: 1,
            kind: PixelKind::Gray16,
            gpu: None,
            gray_stats: Some(GrayStats {
                min: 0,
                max: 3000,
                low: 10,
                high: 2900,
                values: Some(values),
            }),
            reading: Some(Arc::new(Reading {
                modality: "CT".into(),
                series: Some(series.into()),
                pixel_spacing: Some((0.5, 0.5)),
                windows: vec![("lung".into(), stored(-1350.0), stored(150.0))],
                pixels: vec![0, 1064],
                width: 2,
            })),
            load_ms: 0.0,
            tiled: None,
        }
    }

    fn mr(series: &str) -> LoadedImage {
        LoadedImage {
            reading: Some(Arc::new(Reading {
                modality: "MR".into(),
                series: Some(series.into()),
                pixel_spacing: None,
                windows: vec![],
                pixels: vec![5, 6],
                width: 2,
            })),
            gray_stats: Some(GrayStats {
                min: 0,
                max: 700,
                low: 3,
                high: 600,
                values: None,
            }),
            ..ct("x", 0.0)
        }
    }

    #[test]
    fn a_window_stays_with_its_series_and_never_crosses_modalities() {
        let mut memory = WindowMemory::default();
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let ct_a = ct("1.2.3", -1024.0);
        // The reader drags a window on a CT slice.
        let mut d = memory.restore(a, &ct_a);
        assert_eq!(d, Display::default());
        d.window = Some((900.0, 1100.0));
        memory.remember(a, &ct_a, &d);
        // Another slice of the same series opens with it.
        assert_eq!(memory.restore(b, &ct("1.2.3", -1024.0)), d);
        // An MR opens with its own default, not the CT window.
        assert_eq!(memory.restore(c, &mr("9.9")), Display::default());
        // A new CT series stored with another offset gets the same HU window.
        let other = memory.restore(c, &ct("4.5.6", -2048.0));
        let v = other.window.expect("window");
        assert_eq!(v, (900.0 + 1024.0, 1100.0 + 1024.0));
        // A named window follows by name.
        let mut named = Display::default();
        window_choices(&ct_a)[0].apply(&mut named);
        memory.remember(a, &ct_a, &named);
        let next = memory.restore(c, &ct("7.8", -1024.0));
        assert_eq!(next.name.as_deref(), Some("lung"));
        // The MR's own window is remembered apart.
        let m = Display {
            preset: WindowPreset::MinMax,
            ..Display::default()
        };
        memory.remember(c, &mr("9.9"), &m);
        assert_eq!(memory.restore(a, &ct_a).name.as_deref(), Some("lung"));
        assert_eq!(memory.restore(b, &mr("9.9")).preset, WindowPreset::MinMax);
    }

    #[test]
    fn choices_put_the_file_windows_first_and_values_read_in_hu() {
        let img = ct("1", -1024.0);
        let names: Vec<String> = window_choices(&img)
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        assert_eq!(names, ["lung", "auto (0.5–99.5%)", "min–max"]);
        assert_eq!(
            value_at(&img, Pos2::new(0.5, 0.2)).as_deref(),
            Some("value -1024 HU")
        );
        assert_eq!(
            value_at(&img, Pos2::new(1.9, 0.9)).as_deref(),
            Some("value 40 HU")
        );
        assert_eq!(value_at(&img, Pos2::new(2.0, 0.0)), None);
        assert_eq!(value_at(&img, Pos2::new(-0.1, 0.0)), None);
    }

    #[test]
    fn distances_use_the_pixel_spacing() {
        let (a, b) = (Pos2::new(0.0, 0.0), Pos2::new(30.0, 40.0));
        assert_eq!(distance_text(a, b, None), "50.0 px");
        assert_eq!(distance_text(a, b, Some((0.5, 0.5))), "25.0 mm");
        // Rows 1 mm apart, columns 0.5 mm: 15 mm across, 40 mm down.
        assert_eq!(distance_text(a, b, Some((1.0, 0.5))), "42.7 mm");
        assert_eq!(
            distance_text(a, Pos2::new(300.0, 400.0), Some((0.5, 0.5))),
            "25.0 cm"
        );
    }
}
