//! The labeling canvas: the image (our wgpu pipeline), the boxes on top (egui's painter), and
//! the mouse: draw, select, move, resize, pan, zoom, and right-drag for brightness/contrast or
//! window/level. It emits commands; it changes no boxes itself.

use std::sync::Arc;

use eframe::egui::{
    self, Color32, CursorIcon, Id, Key, Painter, PointerButton, Pos2, Rect, Response, Sense, Shape,
    Stroke, StrokeKind, Ui, Vec2, pos2, vec2,
};
use eframe::egui_wgpu;
use uuid::Uuid;

use super::box_tools;
use super::classes::{ClassTable, Thresholds};
use super::commands::Command;
use super::gpu::{ImageCallback, PixelKind, Uniforms, mip_level_for};
use super::loader::{GrayStats, LoadedImage, Slot};
use super::theme;
use super::tiles::{TileCache, TileKey, plan_tiles, tile_rect};
use super::viewport::Viewport;
use crate::imaging::tiles::TiledImage;
use crate::model::{Annotation, BBox, ReviewState};
use crate::review::triage::{Signal, SignalKind};

/// The canvas's widget id; it holds keyboard focus while no text field does.
pub fn canvas_id() -> Id {
    Id::unique("loupe-canvas")
}

/// The eight resize handles of the selected box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handle {
    TopLeft,
    Top,
    TopRight,
    Right,
    BottomRight,
    Bottom,
    BottomLeft,
    Left,
}

impl Handle {
    pub const ALL: [Handle; 8] = [
        Handle::TopLeft,
        Handle::Top,
        Handle::TopRight,
        Handle::Right,
        Handle::BottomRight,
        Handle::Bottom,
        Handle::BottomLeft,
        Handle::Left,
    ];

    /// Where the handle sits on a screen rectangle.
    pub fn position(self, r: Rect) -> Pos2 {
        match self {
            Handle::TopLeft => r.left_top(),
            Handle::Top => r.center_top(),
            Handle::TopRight => r.right_top(),
            Handle::Right => r.right_center(),
            Handle::BottomRight => r.right_bottom(),
            Handle::Bottom => r.center_bottom(),
            Handle::BottomLeft => r.left_bottom(),
            Handle::Left => r.left_center(),
        }
    }

    fn cursor(self) -> CursorIcon {
        match self {
            Handle::TopLeft | Handle::BottomRight => CursorIcon::ResizeNwSe,
            Handle::TopRight | Handle::BottomLeft => CursorIcon::ResizeNeSw,
            Handle::Top | Handle::Bottom => CursorIcon::ResizeVertical,
            Handle::Left | Handle::Right => CursorIcon::ResizeHorizontal,
        }
    }

    /// The box after dragging this handle to `pos_in_image` (whole pixels, inside the image,
    /// at least one pixel wide; dragging past the opposite edge flips the box).
    pub fn resize(self, start: &BBox, pos_in_image: Pos2, viewport: &Viewport) -> BBox {
        let size = viewport.image_size();
        let px = f64::from(pos_in_image.x.clamp(0.0, size.x).round());
        let py = f64::from(pos_in_image.y.clamp(0.0, size.y).round());
        let (mut x0, mut y0, mut x1, mut y1) = (start.x, start.y, start.x2(), start.y2());
        match self {
            Handle::TopLeft => (x0, y0) = (px, py),
            Handle::Top => y0 = py,
            Handle::TopRight => (x1, y0) = (px, py),
            Handle::Right => x1 = px,
            Handle::BottomRight => (x1, y1) = (px, py),
            Handle::Bottom => y1 = py,
            Handle::BottomLeft => (x0, y1) = (px, py),
            Handle::Left => x0 = px,
        }
        let mut b = BBox::from_corners(x0, y0, x1, y1);
        b.w = b.w.max(1.0);
        b.h = b.h.max(1.0);
        b
    }
}

/// What a primary-button drag is doing.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Drag {
    None,
    Drawing {
        start: Pos2,
    },
    Moving {
        id: Uuid,
        start: BBox,
        grab: Pos2,
    },
    Resizing {
        id: Uuid,
        start: BBox,
        handle: Handle,
    },
    Panning,
    Adjusting,
    /// The ruler: a line from `start` (image pixels) to the pointer.
    Measuring {
        start: Pos2,
    },
}

/// Window/level presets for 16-bit images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WindowPreset {
    /// 0.5th to 99.5th percentile of the image.
    #[default]
    Robust,
    /// Darkest to brightest value of the image.
    MinMax,
    /// The whole 16-bit range.
    Full,
    /// 0–4095, for 12-bit sensors stored in 16 bits.
    TwelveBit,
}

impl WindowPreset {
    pub fn next(self) -> Self {
        match self {
            WindowPreset::Robust => WindowPreset::MinMax,
            WindowPreset::MinMax => WindowPreset::Full,
            WindowPreset::Full => WindowPreset::TwelveBit,
            WindowPreset::TwelveBit => WindowPreset::Robust,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            WindowPreset::Robust => "auto (0.5–99.5%)",
            WindowPreset::MinMax => "min–max",
            WindowPreset::Full => "full 16-bit",
            WindowPreset::TwelveBit => "12-bit",
        }
    }

    /// The (low, high) window of this preset for an image.
    pub fn window(self, stats: Option<GrayStats>) -> (f32, f32) {
        match (self, stats) {
            // A DICOM file's own window comes first.
            (WindowPreset::Robust, Some(s)) => s
                .values
                .and_then(|v| v.file_window)
                .unwrap_or((f32::from(s.low), f32::from(s.high))),
            (WindowPreset::MinMax, Some(s)) => (f32::from(s.min), f32::from(s.max.max(s.min + 1))),
            (WindowPreset::TwelveBit, _) => (0.0, 4095.0),
            _ => (0.0, 65535.0),
        }
    }
}

/// How the image is shown: brightness/contrast (8-bit) or window/level (16-bit).
#[derive(Clone, Debug, PartialEq)]
pub struct Display {
    /// Added to every channel, -1..1.
    pub brightness: f32,
    /// Multiplier about mid-grey.
    pub contrast: f32,
    /// A manual window (low, high); `None` follows `preset`.
    pub window: Option<(f32, f32)>,
    /// The named window `window` is ("lung", or one the file names); `None` when dragged or
    /// typed.
    pub name: Option<String>,
    pub preset: WindowPreset,
}

impl Default for Display {
    fn default() -> Self {
        Self {
            brightness: 0.0,
            contrast: 1.0,
            window: None,
            name: None,
            preset: WindowPreset::Robust,
        }
    }
}

impl Display {
    /// The window used for an image with these stats.
    pub fn window_for(&self, stats: Option<GrayStats>) -> (f32, f32) {
        self.window.unwrap_or_else(|| self.preset.window(stats))
    }

    /// Right-drag: horizontal changes contrast (window width), vertical brightness (level).
    fn adjust(&mut self, delta: Vec2, kind: PixelKind, stats: Option<GrayStats>) {
        match kind {
            PixelKind::Rgba8 => {
                self.contrast = (self.contrast * (delta.x * 0.006).exp()).clamp(0.05, 20.0);
                self.brightness = (self.brightness - delta.y * 0.003).clamp(-1.0, 1.0);
            }
            PixelKind::Gray16 => {
                let (low, high) = self.window_for(stats);
                let width = ((high - low) * (delta.x * 0.006).exp()).clamp(2.0, 65535.0);
                let level = (low + high) / 2.0 - delta.y * width * 0.003;
                self.window = Some((level - width / 2.0, level + width / 2.0));
                self.name = None;
            }
        }
    }

    /// A short description for the status bar ("window 120–3400 (manual)"); empty for an
    /// 8-bit image shown as it is.
    pub fn describe(&self, kind: PixelKind, stats: Option<GrayStats>) -> String {
        match kind {
            PixelKind::Rgba8 if self.brightness == 0.0 && self.contrast == 1.0 => String::new(),
            PixelKind::Rgba8 => format!(
                "brightness {:+.2} · contrast {:.2}",
                self.brightness, self.contrast
            ),
            PixelKind::Gray16 => {
                let (low, high) = self.window_for(stats);
                let how = match (self.window, stats.and_then(|s| s.values)) {
                    (Some(_), _) if self.name.is_some() => self.name.as_deref().unwrap_or_default(),
                    (Some(_), _) => "manual",
                    (None, Some(v))
                        if v.file_window.is_some() && self.preset == WindowPreset::Robust =>
                    {
                        v.window_label
                    }
                    _ => self.preset.label(),
                };
                match stats.and_then(|s| s.values) {
                    // Shown in what the values measure (Hounsfield units for CT).
                    Some(v) => {
                        let (a, b) = (v.value(low), v.value(high));
                        let unit = if v.unit.is_empty() {
                            String::new()
                        } else {
                            format!(" {}", v.unit)
                        };
                        format!(
                            "window {:.0}–{:.0}{unit} · level {:.0} width {:.0} ({how})",
                            a.min(b),
                            a.max(b),
                            (a + b) / 2.0,
                            (b - a).abs()
                        )
                    }
                    None => format!("window {low:.0}–{high:.0} ({how})"),
                }
            }
        }
    }
}

/// The image the canvas shows.
pub struct CanvasImage<'a> {
    /// Its id (tiles are cached by it).
    pub id: Uuid,
    /// Its path, for the loading hint.
    pub name: &'a str,
    pub width: u32,
    pub height: u32,
    /// The decode state, when asked for.
    pub slot: Option<&'a Slot>,
}

/// Everything the canvas reads in one frame.
pub struct CanvasInput<'a> {
    pub image: Option<CanvasImage<'a>>,
    pub boxes: &'a [Annotation],
    pub classes: &'a ClassTable,
    pub thresholds: &'a Thresholds,
    pub selected: Option<Uuid>,
    /// The colour of the class new boxes get.
    pub draw_color: Color32,
    /// Millimetres per pixel (rows, columns), for the ruler.
    pub spacing: Option<(f64, f64)>,
    /// Triage's findings on this image, drawn next to the boxes they are about.
    pub signals: &'a [Signal],
    /// The tiles of images read as tiles.
    pub tiles: Option<&'a TileCache>,
}

/// The canvas panel: view state and the gesture in progress.
pub struct Canvas {
    pub viewport: Viewport,
    /// A box to bring on screen once the image's size is known (a box opened from a queue).
    reveal: Option<BBox>,
    pub display: Display,
    pub show_boxes: bool,
    /// Proposals hidden while reading the image (labels stay).
    pub hide_proposals: bool,
    /// Thin outlines, no fill, labels only on hover and selection: for small and
    /// overlapping boxes.
    pub outlines_only: bool,
    /// Left-drag measures instead of drawing.
    pub ruler_mode: bool,
    /// The last measurement, in image pixels.
    pub ruler: Option<(Pos2, Pos2)>,
    /// Four-click boxes: clicks place the object's extreme points instead of selecting.
    pub four_click: bool,
    /// The extreme points clicked so far (image pixels), fewer than four.
    clicks: Vec<Pos2>,
    drag: Drag,
    /// The geometry of the box being moved or resized, shown until the edit lands.
    preview: Option<(Uuid, BBox)>,
    pointer_in_image: Option<Pos2>,
    hovered: Option<Uuid>,
    space_panned: bool,
    shapes: Vec<Shape>,
    /// The image shown is a frame of a stack: Ctrl+wheel steps frames instead of zooming.
    pub in_stack: bool,
    /// Frames Ctrl+wheel asked to step this frame (+ forward), taken by the session.
    pub frame_steps: i32,
    /// The tiles the last frame showed or waited for, most important first (tiled images).
    wanted_tiles: Vec<TileKey>,
}

impl Default for Canvas {
    fn default() -> Self {
        Self {
            viewport: Viewport::default(),
            reveal: None,
            display: Display::default(),
            show_boxes: true,
            hide_proposals: false,
            outlines_only: false,
            ruler_mode: false,
            ruler: None,
            four_click: false,
            clicks: Vec::new(),
            drag: Drag::None,
            preview: None,
            pointer_in_image: None,
            hovered: None,
            space_panned: false,
            shapes: Vec::new(),
            in_stack: false,
            frame_steps: 0,
            wanted_tiles: Vec::new(),
        }
    }
}

impl Canvas {
    /// The image pixel under the mouse, if it is over the canvas.
    pub fn pointer_in_image(&self) -> Option<Pos2> {
        self.pointer_in_image
    }

    /// True once if Space was held for panning since the last call; then Space's release
    /// must not also accept-and-advance.
    pub fn take_space_panned(&mut self) -> bool {
        std::mem::take(&mut self.space_panned)
    }

    /// Cancels a gesture in progress (Escape, or the image changed), four-click points too.
    /// Brings this box on screen when the image is next drawn (its size known then).
    pub fn reveal(&mut self, bbox: BBox) {
        self.reveal = Some(bbox);
    }

    pub fn cancel_gesture(&mut self) {
        self.drag = Drag::None;
        self.preview = None;
        self.clicks.clear();
    }

    /// The extreme points of the four-click box in progress (image pixels).
    pub fn four_click_points(&self) -> &[Pos2] {
        &self.clicks
    }

    /// Drops the four-click points placed so far; true if there were any.
    pub fn drop_clicks(&mut self) -> bool {
        let had = !self.clicks.is_empty();
        self.clicks.clear();
        had
    }

    /// True while the mouse is drawing, moving or resizing.
    pub fn is_editing(&self) -> bool {
        matches!(
            self.drag,
            Drag::Drawing { .. } | Drag::Moving { .. } | Drag::Resizing { .. }
        )
    }

    /// Draws the canvas and turns the mouse into commands.
    pub fn ui(&mut self, ui: &mut Ui, input: &CanvasInput<'_>, out: &mut Vec<Command>) -> Response {
        let rect = ui.available_rect_before_wrap();
        ui.advance_cursor_after_rect(rect);
        let response = ui.interact(rect, canvas_id(), Sense::click_and_drag());
        response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Canvas, true, "Canvas"));
        self.viewport.set_canvas(rect);
        let Some(image) = &input.image else {
            let painter = ui.painter_at(rect);
            painter.rect_filled(rect, 0.0, theme::CANVAS_BG);
            painter.text(
                rect.center(),
                egui::Align2::CENTER_CENTER,
                "No image to show. Add images (Ctrl+I) or change the filter.",
                egui::FontId::proportional(14.0),
                theme::TEXT_WEAK,
            );
            return response;
        };
        self.viewport
            .set_image_size(vec2(image.width as f32, image.height as f32));
        if let Some(bbox) = self.reveal.take() {
            self.viewport.reveal(&bbox);
        }
        let (kind, stats) = match image.slot {
            Some(Slot::Ready(img)) => (img.kind, img.gray_stats),
            _ => (PixelKind::Rgba8, None),
        };
        self.handle_zoom_and_pan(ui, &response);
        self.handle_pointer(ui, &response, input, kind, stats, out);
        let painter = ui.painter_at(rect);
        self.paint_image(ui, &painter, image, input.tiles);
        if self.show_boxes {
            let layer = BoxLayer {
                boxes: input.boxes,
                classes: input.classes,
                thresholds: input.thresholds,
                selected: input.selected,
                hovered: self.hovered,
                preview: self.preview,
                hide_proposals: self.hide_proposals,
                outlines_only: self.outlines_only,
            };
            paint_boxes(&painter, &self.viewport, &layer, &mut self.shapes);
            paint_signals(&painter, &self.viewport, input.signals);
        }
        self.paint_gesture(&painter, &response, input);
        response
    }

    fn handle_zoom_and_pan(&mut self, ui: &Ui, response: &Response) {
        if let Some(pos) = response.hover_pos() {
            let (wheel, pinch, ctrl) = ui.input(|i| {
                let mut wheel = 0.0;
                for e in &i.events {
                    if let egui::Event::MouseWheel { unit, delta, .. } = e {
                        wheel += match unit {
                            egui::MouseWheelUnit::Point => delta.y,
                            egui::MouseWheelUnit::Line => delta.y * 40.0,
                            egui::MouseWheelUnit::Page => delta.y * 400.0,
                        };
                    }
                }
                (wheel, i.zoom_delta(), i.modifiers.command)
            });
            // In a stack, Ctrl+wheel steps frames (as radiology viewers do); wheel alone zooms.
            if ctrl && self.in_stack {
                if wheel != 0.0 {
                    self.frame_steps += if wheel < 0.0 { 1 } else { -1 };
                }
                return;
            }
            // Ctrl+wheel arrives as both a wheel event and a zoom delta: count it once.
            let factor = if ctrl || pinch != 1.0 {
                pinch
            } else {
                (wheel * 0.0025).exp()
            };
            if factor != 1.0 {
                self.viewport.zoom_about(factor, pos);
            }
        }
        if response.dragged_by(PointerButton::Middle) {
            self.viewport.pan(response.drag_delta());
        }
    }

    #[allow(clippy::too_many_lines)]
    fn handle_pointer(
        &mut self,
        ui: &Ui,
        response: &Response,
        input: &CanvasInput<'_>,
        kind: PixelKind,
        stats: Option<GrayStats>,
        out: &mut Vec<Command>,
    ) {
        let hover = response.hover_pos();
        self.pointer_in_image = hover.map(|p| self.viewport.image_from_screen(p));
        let selected = input
            .selected
            .and_then(|id| input.boxes.iter().find(|a| a.id == id))
            .filter(|a| input.thresholds.is_shown(a));
        let selected_rect = selected.map(|a| self.viewport.screen_from_bbox(&a.value.bbox));
        let space_down = ui.input(|i| i.key_down(Key::Space));

        // Hover feedback: what a press here would do.
        self.hovered = None;
        if self.drag == Drag::None
            && let Some(pos) = hover
        {
            let handle = selected_rect.and_then(|r| hit_handle(r, pos));
            if space_down {
                ui.ctx().set_cursor_icon(CursorIcon::Grab);
            } else if let Some(h) = handle {
                ui.ctx().set_cursor_icon(h.cursor());
            } else if selected_rect.is_some_and(|r| r.expand(2.0).contains(pos)) {
                ui.ctx().set_cursor_icon(CursorIcon::Move);
            } else {
                ui.ctx().set_cursor_icon(CursorIcon::Crosshair);
                if self.show_boxes {
                    self.hovered = hit_box(&self.viewport, input, self.hide_proposals, pos);
                }
            }
        }

        if response.drag_started_by(PointerButton::Primary) {
            let origin = ui
                .input(|i| i.pointer.press_origin())
                .or(response.interact_pointer_pos())
                .unwrap_or_default();
            let origin_in_image = self.viewport.image_from_screen(origin);
            self.drag = if space_down {
                self.space_panned = true;
                Drag::Panning
            } else if self.four_click && !self.ruler_mode {
                // Four-click boxes are made of clicks; a drag places nothing.
                Drag::None
            } else if self.ruler_mode {
                self.ruler = None;
                Drag::Measuring {
                    start: origin_in_image,
                }
            } else if let (Some(a), Some(h)) =
                (selected, selected_rect.and_then(|r| hit_handle(r, origin)))
            {
                Drag::Resizing {
                    id: a.id,
                    start: a.value.bbox,
                    handle: h,
                }
            } else if let (Some(a), Some(r)) = (selected, selected_rect)
                && r.expand(2.0).contains(origin)
            {
                Drag::Moving {
                    id: a.id,
                    start: a.value.bbox,
                    grab: origin_in_image,
                }
            } else {
                Drag::Drawing {
                    start: origin_in_image,
                }
            };
        }
        if response.drag_started_by(PointerButton::Secondary) {
            self.drag = Drag::Adjusting;
        }

        let pointer = response.interact_pointer_pos();
        match self.drag {
            Drag::Panning => {
                self.viewport.pan(response.drag_delta());
                self.space_panned = true;
            }
            Drag::Adjusting => self.display.adjust(response.drag_delta(), kind, stats),
            Drag::Measuring { start } => {
                if let Some(p) = pointer {
                    let size = self.viewport.image_size();
                    let (w, h) = (size.x, size.y);
                    let end = self.viewport.image_from_screen(p);
                    let end = pos2(end.x.clamp(0.0, w), end.y.clamp(0.0, h));
                    self.ruler = Some((start, end));
                }
            }
            Drag::Moving { id, start, grab } => {
                if let Some(p) = pointer {
                    let delta = self.viewport.image_from_screen(p) - grab;
                    self.preview = Some((id, self.viewport.moved_bbox(&start, delta)));
                }
            }
            Drag::Resizing { id, start, handle } => {
                if let Some(p) = pointer {
                    let b =
                        handle.resize(&start, self.viewport.image_from_screen(p), &self.viewport);
                    self.preview = Some((id, b));
                }
            }
            Drag::Drawing { .. } | Drag::None => {}
        }

        let stopped = response.drag_stopped()
            || (self.drag != Drag::None
                && !response.dragged()
                && !ui.input(|i| i.pointer.any_down()));
        if stopped {
            match self.drag {
                Drag::Drawing { start } => {
                    if let Some(p) = pointer {
                        let bbox = self
                            .viewport
                            .bbox_from_image_points(start, self.viewport.image_from_screen(p));
                        // A flick is not a box: at least 2 px in the image and 4 points on screen.
                        let on_screen = self.viewport.screen_from_bbox(&bbox);
                        if bbox.w >= 2.0
                            && bbox.h >= 2.0
                            && on_screen.width() >= 4.0
                            && on_screen.height() >= 4.0
                        {
                            out.push(Command::CreateBox(bbox));
                        }
                    }
                }
                Drag::Moving { id, .. } | Drag::Resizing { id, .. } => {
                    if let Some((_, bbox)) = self.preview {
                        let what = if matches!(self.drag, Drag::Moving { .. }) {
                            "move box"
                        } else {
                            "resize box"
                        };
                        out.push(Command::SetBBox { id, bbox, what });
                    }
                }
                Drag::Panning | Drag::Adjusting | Drag::Measuring { .. } | Drag::None => {}
            }
            self.drag = Drag::None;
            // The preview stays until the session has applied the edit (next frame it is
            // cleared by `clear_preview`), so the box never jumps back for a frame.
        }

        if response.clicked_by(PointerButton::Primary)
            && !space_down
            && !self.ruler_mode
            && self.four_click
        {
            let pos = response.interact_pointer_pos().unwrap_or_default();
            let size = self.viewport.image_size();
            let p = self.viewport.image_from_screen(pos);
            self.clicks
                .push(pos2(p.x.clamp(0.0, size.x), p.y.clamp(0.0, size.y)));
            if self.clicks.len() >= box_tools::CLICKS_PER_BOX {
                let points = std::mem::take(&mut self.clicks);
                if let Some(bbox) = box_tools::box_of_points(&points, &self.viewport) {
                    out.push(Command::CreateFourClickBox(bbox));
                }
            }
        } else if response.clicked_by(PointerButton::Primary) && !space_down && !self.ruler_mode {
            let pos = response.interact_pointer_pos().unwrap_or_default();
            out.push(Command::Select(hit_box(
                &self.viewport,
                input,
                self.hide_proposals,
                pos,
            )));
        }
    }

    /// Drops the move/resize preview once the edit it showed is applied.
    pub fn clear_preview(&mut self) {
        if !self.is_editing() {
            self.preview = None;
        }
    }

    /// The tiles the last frame asked for (most important first), for the tile cache.
    pub fn take_wanted_tiles(&mut self) -> Vec<TileKey> {
        std::mem::take(&mut self.wanted_tiles)
    }

    fn paint_image(
        &mut self,
        ui: &Ui,
        painter: &Painter,
        image: &CanvasImage<'_>,
        tiles: Option<&TileCache>,
    ) {
        let canvas = self.viewport.canvas();
        painter.rect_filled(canvas, 0.0, theme::CANVAS_BG);
        let on_screen = self.viewport.image_rect_on_screen();
        let message = |text: &str, color: Color32| {
            painter.rect_filled(on_screen, 0.0, Color32::from_gray(0x24));
            let galley = painter.layout(
                text.to_owned(),
                egui::FontId::proportional(14.0),
                color,
                (canvas.width() - 80.0).clamp(200.0, 560.0),
            );
            let pos = canvas.center() - galley.size() / 2.0;
            painter.galley(pos, galley, color);
        };
        if let Some(Slot::Ready(img)) = image.slot
            && let Some(tiled) = &img.tiled
        {
            self.paint_tiles(ui, painter, image.id, img, tiled, tiles);
            return;
        }
        match image.slot {
            Some(Slot::Ready(img)) => match &img.gpu {
                Some(gpu) => {
                    let mut uniforms = Uniforms::placed(canvas, on_screen);
                    match img.kind {
                        PixelKind::Rgba8 => {
                            uniforms.adjust =
                                [self.display.brightness, self.display.contrast, 0.0, 0.0];
                        }
                        PixelKind::Gray16 => {
                            let (low, high) = self.display.window_for(img.gray_stats);
                            uniforms.adjust = [low, high, 0.0, 0.0];
                            let zoom_px = self.viewport.zoom() * ui.ctx().pixels_per_point();
                            #[allow(clippy::cast_precision_loss)]
                            let level = mip_level_for(zoom_px, gpu.mip_levels) as f32;
                            uniforms.extra = [level, 0.0, 0.0, 0.0];
                        }
                    }
                    painter.add(egui_wgpu::Callback::new_paint_callback(
                        canvas,
                        ImageCallback {
                            image: Arc::clone(gpu),
                            uniforms,
                        },
                    ));
                }
                // Headless (tests): the geometry is all there is to show.
                None => {
                    painter.rect_filled(on_screen, 0.0, Color32::from_gray(0x30));
                }
            },
            Some(Slot::Failed(e)) => message(e, theme::ERROR),
            // Never a blank canvas: say what is coming.
            Some(Slot::Loading) | None => {
                message(&format!("Loading {}…", image.name), theme::TEXT_WEAK);
            }
        }
    }

    /// Draws an image read as tiles: the resident tiles of the level the zoom needs, over the
    /// coarser levels where some have not arrived yet, and remembers which tiles to ask for.
    fn paint_tiles(
        &mut self,
        ui: &Ui,
        painter: &Painter,
        image_id: Uuid,
        img: &LoadedImage,
        tiled: &Arc<TiledImage>,
        tiles: Option<&TileCache>,
    ) {
        let canvas = self.viewport.canvas();
        let visible = self.viewport.visible_image_rect();
        let zoom_px = self.viewport.zoom() * ui.ctx().pixels_per_point();
        let resident = |k: &TileKey| tiles.is_some_and(|t| t.tile(k).is_some());
        let plan = plan_tiles(
            image_id,
            tiled,
            [
                f64::from(visible.min.x),
                f64::from(visible.min.y),
                f64::from(visible.max.x),
                f64::from(visible.max.y),
            ],
            f64::from(zoom_px),
            resident,
        );
        if plan.draw.is_empty() {
            // Nothing has arrived yet: the image's outline, so boxes have their frame.
            painter.rect_filled(
                self.viewport.image_rect_on_screen(),
                0.0,
                Color32::from_gray(0x30),
            );
        }
        for key in &plan.draw {
            let (Some(Some(gpu)), Some(rect)) =
                (tiles.and_then(|t| t.tile(key)), tile_rect(tiled, key))
            else {
                // Headless: resident tiles have no texture; the geometry is all there is.
                if let Some(rect) = tile_rect(tiled, key) {
                    painter.rect_filled(self.screen_rect_of(rect), 0.0, Color32::from_gray(0x30));
                }
                continue;
            };
            let mut uniforms = Uniforms::placed(canvas, self.screen_rect_of(rect));
            uniforms.adjust = [self.display.brightness, self.display.contrast, 0.0, 0.0];
            painter.add(egui_wgpu::Callback::new_paint_callback(
                canvas,
                ImageCallback {
                    image: Arc::clone(gpu),
                    uniforms,
                },
            ));
        }
        let _ = img;
        self.wanted_tiles = plan.wanted;
    }

    /// A rectangle in image pixels (left, top, right, bottom) on screen.
    fn screen_rect_of(&self, rect: [f64; 4]) -> Rect {
        #[allow(clippy::cast_possible_truncation)]
        let [x0, y0, x1, y1] = rect.map(|v| v as f32);
        Rect::from_min_max(
            self.viewport.screen_from_image(pos2(x0, y0)),
            self.viewport.screen_from_image(pos2(x1, y1)),
        )
    }

    fn paint_gesture(&self, painter: &Painter, response: &Response, input: &CanvasInput<'_>) {
        let image_rect = self.viewport.image_rect_on_screen();
        if let Some((a, b)) = self.ruler {
            let (sa, sb) = (
                self.viewport.screen_from_image(a),
                self.viewport.screen_from_image(b),
            );
            let halo = Stroke::new(3.5, Color32::from_black_alpha(150));
            let line = Stroke::new(1.5, theme::RULER);
            painter.line_segment([sa, sb], halo);
            painter.line_segment([sa, sb], line);
            // End ticks across the line.
            let dir = (sb - sa).normalized();
            let across = vec2(-dir.y, dir.x) * 5.0;
            for p in [sa, sb] {
                painter.line_segment([p - across, p + across], line);
            }
            let text = super::reading::distance_text(a, b, input.spacing);
            let galley = painter.layout_no_wrap(text, theme::label_font(), Color32::WHITE);
            let at = sb + vec2(8.0, -galley.size().y / 2.0);
            let bg = Rect::from_min_size(at - vec2(3.0, 1.0), galley.size() + vec2(6.0, 2.0));
            painter.rect_filled(bg, 2.0, Color32::from_black_alpha(180));
            painter.galley(at, galley, Color32::WHITE);
        }
        if let Drag::Drawing { start } = self.drag
            && let Some(p) = response.interact_pointer_pos()
        {
            let b = self
                .viewport
                .bbox_from_image_points(start, self.viewport.image_from_screen(p));
            let r = self.viewport.screen_from_bbox(&b);
            painter.rect_filled(r, 0.0, input.draw_color.gamma_multiply(0.15));
            painter.rect_stroke(
                r,
                0.0,
                Stroke::new(theme::SELECTED_STROKE, input.draw_color),
                StrokeKind::Middle,
            );
            let label = format!("{:.0} × {:.0}", b.w, b.h);
            painter.text(
                r.right_bottom() + vec2(6.0, 4.0),
                egui::Align2::LEFT_TOP,
                label,
                theme::label_font(),
                theme::TEXT,
            );
        }
        if !self.clicks.is_empty() {
            self.paint_clicks(painter, response, input.draw_color);
        }
        // Crosshair guides while the mouse is free, drawing or measuring.
        let guides = matches!(
            self.drag,
            Drag::None | Drag::Drawing { .. } | Drag::Measuring { .. }
        );
        if guides
            && let Some(p) = response.hover_pos().or(response.interact_pointer_pos())
            && image_rect.contains(p)
        {
            let stroke = Stroke::new(1.0, theme::GUIDE);
            painter.line_segment(
                [pos2(image_rect.left(), p.y), pos2(image_rect.right(), p.y)],
                stroke,
            );
            painter.line_segment(
                [pos2(p.x, image_rect.top()), pos2(p.x, image_rect.bottom())],
                stroke,
            );
        }
    }
}

impl Canvas {
    /// The four-click points so far: a dot on each, the box they span with the pointer as the
    /// next point, and how many clicks are left beside the pointer.
    fn paint_clicks(&self, painter: &Painter, response: &Response, color: Color32) {
        let pointer = response
            .hover_pos()
            .map(|p| self.viewport.image_from_screen(p));
        let mut points = self.clicks.clone();
        points.extend(pointer);
        if points.len() >= 2
            && let Some(b) = box_tools::box_of_points(&points, &self.viewport)
        {
            let r = self.viewport.screen_from_bbox(&b);
            let mut shapes = Vec::new();
            dashed_rect(&mut shapes, r, Stroke::new(1.0, color));
            painter.extend(shapes);
        }
        for p in &self.clicks {
            let at = self.viewport.screen_from_image(*p);
            painter.circle_filled(at, 5.0, Color32::from_black_alpha(160));
            painter.circle_filled(at, 3.5, color);
        }
        if let Some(p) = response.hover_pos() {
            let left = box_tools::CLICKS_PER_BOX - self.clicks.len();
            painter.text(
                p + vec2(12.0, 12.0),
                egui::Align2::LEFT_TOP,
                format!("{left} more"),
                theme::label_font(),
                theme::TEXT,
            );
        }
    }
}

/// The box under a screen point: the smallest shown box whose outline (grown by a few points)
/// contains it, so nested boxes stay reachable.
fn hit_box(
    viewport: &Viewport,
    input: &CanvasInput<'_>,
    hide_proposals: bool,
    pos: Pos2,
) -> Option<Uuid> {
    input
        .boxes
        .iter()
        .filter(|a| input.thresholds.is_shown(a))
        .filter(|a| !(hide_proposals && a.value.state == ReviewState::Proposed))
        .filter_map(|a| {
            let r = viewport.screen_from_bbox(&a.value.bbox);
            r.expand(3.0).contains(pos).then(|| (r.area(), a.id))
        })
        .min_by(|x, y| x.0.total_cmp(&y.0))
        .map(|(_, id)| id)
}

/// The handle of a selected box under a screen point.
fn hit_handle(rect: Rect, pos: Pos2) -> Option<Handle> {
    Handle::ALL
        .into_iter()
        .map(|h| (h, h.position(rect).distance(pos)))
        .filter(|(_, d)| *d <= theme::HANDLE_GRAB)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(h, _)| h)
}

/// The boxes to draw and how.
pub struct BoxLayer<'a> {
    pub boxes: &'a [Annotation],
    pub classes: &'a ClassTable,
    pub thresholds: &'a Thresholds,
    pub selected: Option<Uuid>,
    pub hovered: Option<Uuid>,
    /// A box being moved or resized: drawn here instead of where the store has it.
    pub preview: Option<(Uuid, BBox)>,
    /// Proposals hidden while reading.
    pub hide_proposals: bool,
    /// Thin outlines, no fill, labels only on hover and selection.
    pub outlines_only: bool,
}

impl BoxLayer<'_> {
    fn is_shown(&self, a: &Annotation) -> bool {
        self.thresholds.is_shown(a)
            && !(self.hide_proposals && a.value.state == ReviewState::Proposed)
    }
}

/// Paints boxes with egui's painter. Boxes off screen are skipped; `shapes` is reused between
/// frames. Up to `theme::MAX_LABELS` boxes on screen get anti-aliased outlines, a halo and
/// labels; beyond that (thousands of boxes) outlines go into one plain mesh of thin quads,
/// which costs a few vertices per box instead of a tessellated path, proposals are drawn
/// lighter instead of dashed, and labels are left out except for the selected and hovered box.
pub fn paint_boxes(
    painter: &Painter,
    viewport: &Viewport,
    layer: &BoxLayer<'_>,
    shapes: &mut Vec<Shape>,
) {
    shapes.clear();
    let clip = viewport.canvas();
    let on_screen = layer
        .boxes
        .iter()
        .filter(|a| layer.is_shown(a))
        .filter(|a| clip.intersects(viewport.screen_from_bbox(&a.value.bbox)))
        .count();
    let detailed = on_screen <= theme::MAX_LABELS;
    let mut mesh = egui::Mesh::default();
    let mut selected: Option<(&Annotation, Rect)> = None;
    // Label tags placed so far: a label that would cover another is moved or left to hover.
    let mut tags: Vec<Rect> = Vec::new();
    for a in layer.boxes {
        if !layer.is_shown(a) {
            continue;
        }
        let bbox = match layer.preview {
            Some((id, b)) if id == a.id => b,
            _ => a.value.bbox,
        };
        let r = viewport.screen_from_bbox(&bbox);
        if !clip.intersects(r) {
            continue;
        }
        if Some(a.id) == layer.selected {
            selected = Some((a, r));
            continue;
        }
        let color = layer.classes.color(a.value.class);
        let proposal = a.value.state == ReviewState::Proposed;
        let hovered = Some(a.id) == layer.hovered;
        if hovered && !layer.outlines_only {
            shapes.push(Shape::rect_filled(r, 0.0, color.gamma_multiply(0.18)));
        }
        if layer.outlines_only {
            let width = if hovered { theme::BOX_STROKE } else { 1.0 };
            if proposal && detailed {
                dashed_rect(shapes, r, Stroke::new(width, color));
            } else {
                outline_quads(&mut mesh, r, width, color);
            }
            if hovered {
                label(painter, shapes, layer, a, r, color, None);
            }
            continue;
        }
        if !detailed {
            let width = if hovered {
                theme::SELECTED_STROKE
            } else {
                theme::BOX_STROKE
            };
            // Proposals are told apart by a lighter outline here: dashes on thousands of small
            // boxes cost more than they show.
            let color = if proposal {
                color.gamma_multiply(0.6)
            } else {
                color
            };
            outline_quads(&mut mesh, r, width, color);
            if hovered {
                label(painter, shapes, layer, a, r, color, None);
            }
            continue;
        }
        // A faint dark halo keeps thin outlines readable on bright and busy images (dashed
        // under a dashed proposal, so the gaps stay gaps).
        let halo = Stroke::new(theme::BOX_STROKE + 1.5, Color32::from_black_alpha(90));
        if proposal {
            dashed_rect(shapes, r, halo);
            dashed_rect(shapes, r, Stroke::new(theme::BOX_STROKE, color));
        } else {
            shapes.push(Shape::rect_stroke(r, 0.0, halo, StrokeKind::Middle));
            shapes.push(Shape::rect_stroke(
                r,
                0.0,
                Stroke::new(theme::BOX_STROKE, color),
                StrokeKind::Middle,
            ));
        }
        if hovered {
            label(painter, shapes, layer, a, r, color, None);
        } else if r.width() >= theme::MIN_LABELLED_BOX && r.height() >= theme::MIN_LABELLED_BOX {
            label(painter, shapes, layer, a, r, color, Some(&mut tags));
        }
    }
    if !mesh.is_empty() {
        painter.add(Shape::mesh(mesh));
    }
    if let Some((a, r)) = selected {
        let color = layer.classes.color(a.value.class);
        if !layer.outlines_only {
            shapes.push(Shape::rect_filled(r, 0.0, color.gamma_multiply(0.12)));
        }
        // A dark halo under the outline keeps the selection visible on any background.
        shapes.push(Shape::rect_stroke(
            r,
            0.0,
            Stroke::new(theme::SELECTED_STROKE + 2.0, Color32::from_black_alpha(140)),
            StrokeKind::Middle,
        ));
        if a.value.state == ReviewState::Proposed {
            dashed_rect(shapes, r, Stroke::new(theme::SELECTED_STROKE, color));
        } else {
            shapes.push(Shape::rect_stroke(
                r,
                0.0,
                Stroke::new(theme::SELECTED_STROKE, color),
                StrokeKind::Middle,
            ));
        }
        label(painter, shapes, layer, a, r, color, None);
        for h in Handle::ALL {
            let c = h.position(r);
            let hr = Rect::from_center_size(c, Vec2::splat(theme::HANDLE_SIZE));
            shapes.push(Shape::rect_filled(hr, 1.0, Color32::WHITE));
            shapes.push(Shape::rect_stroke(
                hr,
                1.0,
                Stroke::new(1.0, Color32::from_gray(0x20)),
                StrokeKind::Inside,
            ));
        }
    }
    painter.extend(shapes.drain(..));
}

/// A box outline as four thin quads appended to a mesh (a single quad when the box is only a
/// few points wide): no tessellation, no allocation per box.
fn outline_quads(mesh: &mut egui::Mesh, r: Rect, width: f32, color: Color32) {
    let half = width / 2.0;
    if r.width() <= 2.0 * width || r.height() <= 2.0 * width {
        mesh.add_colored_rect(r.expand(half), color);
        return;
    }
    let outer = r.expand(half);
    let inner = r.shrink(half);
    mesh.add_colored_rect(
        Rect::from_x_y_ranges(outer.x_range(), outer.top()..=inner.top()),
        color,
    );
    mesh.add_colored_rect(
        Rect::from_x_y_ranges(outer.x_range(), inner.bottom()..=outer.bottom()),
        color,
    );
    mesh.add_colored_rect(
        Rect::from_x_y_ranges(outer.left()..=inner.left(), inner.y_range()),
        color,
    );
    mesh.add_colored_rect(
        Rect::from_x_y_ranges(inner.right()..=outer.right(), inner.y_range()),
        color,
    );
}

/// Where a label tag of `size` goes on box `r`: above its top-left corner, else inside at the
/// top, else below, else inside at the bottom; the first place inside `clip` that covers none
/// of the tags already `placed`. `None` when every place is taken (the label then shows on
/// hover).
pub fn place_tag(r: Rect, size: Vec2, clip: Rect, placed: &[Rect]) -> Option<Rect> {
    let candidates = [
        pos2(r.left() - 0.75, r.top() - size.y),
        pos2(r.left(), r.top()),
        pos2(r.left() - 0.75, r.bottom()),
        pos2(r.left(), r.bottom() - size.y),
    ];
    candidates
        .into_iter()
        .map(|min| Rect::from_min_size(min, size))
        .find(|t| clip.contains_rect(*t) && !placed.iter().any(|p| p.intersects(t.shrink(0.5))))
}

/// A class name (and score, for model boxes) on a tag by the box's top-left corner. With
/// `placed`, the tag avoids the tags placed before it (and is left out when it cannot);
/// without, it goes above the box, or inside when there is no room above.
fn label(
    painter: &Painter,
    shapes: &mut Vec<Shape>,
    layer: &BoxLayer<'_>,
    a: &Annotation,
    r: Rect,
    color: Color32,
    placed: Option<&mut Vec<Rect>>,
) {
    let name = layer.classes.name(a.value.class);
    let text = match (a.value.state, a.value.source.score()) {
        (ReviewState::Proposed, Some(s)) => format!("{name} {s:.2}"),
        (ReviewState::Corrected, _) => format!("{name} (edited)"),
        _ => name.to_owned(),
    };
    let fg = theme::text_on(color);
    let galley = painter.layout_no_wrap(text, theme::label_font(), fg);
    let size = galley.size() + vec2(6.0, 2.0);
    let tag = match placed {
        Some(placed) => {
            let Some(tag) = place_tag(r, size, painter.clip_rect(), placed) else {
                return;
            };
            placed.push(tag);
            tag
        }
        None => {
            let above = r.top() - size.y >= painter.clip_rect().top();
            let min = if above {
                pos2(r.left() - 0.75, r.top() - size.y)
            } else {
                pos2(r.left(), r.top())
            };
            Rect::from_min_size(min, size)
        }
    };
    let fill = if a.value.state == ReviewState::Proposed {
        color.gamma_multiply(0.75)
    } else {
        color
    };
    shapes.push(Shape::rect_filled(tag, 2.0, fill));
    shapes.push(Shape::galley(tag.min + vec2(3.0, 1.0), galley, fg));
}

/// Triage's findings: a dotted outline in the warning colour on the box each is about and a
/// short reason beside it ("missing label: car 0.91").
fn paint_signals(painter: &Painter, viewport: &Viewport, signals: &[Signal]) {
    let clip = viewport.canvas();
    for s in signals {
        let r = viewport.screen_from_bbox(&s.bbox);
        if !clip.intersects(r) {
            continue;
        }
        let mut shapes = Vec::new();
        dashed_rect(&mut shapes, r.expand(3.0), Stroke::new(1.5, theme::SIGNAL));
        painter.extend(shapes);
        let what = match s.kind {
            SignalKind::MissingLabel => "missing label",
            SignalKind::WrongClass => "wrong class",
            SignalKind::UnmatchedLabel => "no prediction",
            SignalKind::ClassConfusion => "class confusion",
            SignalKind::Uncertain => "uncertain",
        };
        let mut text = format!("{what}: {}", s.class);
        if let Some(other) = &s.other_class {
            text.push_str(&format!(", model says {other}"));
        }
        if let Some(score) = s.score {
            text.push_str(&format!(" {score:.2}"));
        }
        let galley = painter.layout_no_wrap(text, theme::label_font(), Color32::BLACK);
        let at = pos2(r.right() + 6.0, r.top());
        let bg = Rect::from_min_size(at, galley.size() + vec2(6.0, 2.0));
        painter.rect_filled(bg, 2.0, theme::SIGNAL);
        painter.galley(at + vec2(3.0, 1.0), galley, Color32::BLACK);
    }
}

/// A rectangle outline in dashes (proposals).
fn dashed_rect(shapes: &mut Vec<Shape>, r: Rect, stroke: Stroke) {
    let corners = [
        r.left_top(),
        r.right_top(),
        r.right_bottom(),
        r.left_bottom(),
        r.left_top(),
    ];
    let period = theme::DASH + theme::DASH_GAP;
    for pair in corners.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let length = a.distance(b);
        if length <= 0.0 {
            continue;
        }
        let dir = (b - a) / length;
        let mut t = 0.0;
        while t < length {
            let end = (t + theme::DASH).min(length);
            shapes.push(Shape::line_segment([a + dir * t, a + dir * end], stroke));
            t += period;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_resize_the_edges_they_own() {
        let v = Viewport::new(
            Rect::from_min_size(Pos2::ZERO, vec2(1016.0, 1016.0)),
            vec2(100.0, 100.0),
        );
        let b = BBox::new(10.0, 10.0, 20.0, 20.0);
        assert_eq!(
            Handle::Right.resize(&b, pos2(50.2, 99.0), &v),
            BBox::new(10.0, 10.0, 40.0, 20.0)
        );
        assert_eq!(
            Handle::TopLeft.resize(&b, pos2(5.0, 0.0), &v),
            BBox::new(5.0, 0.0, 25.0, 30.0)
        );
        // Past the opposite edge the box flips instead of going negative.
        assert_eq!(
            Handle::Left.resize(&b, pos2(40.0, 0.0), &v),
            BBox::new(30.0, 10.0, 10.0, 20.0)
        );
        // Never outside the image, never empty.
        assert_eq!(
            Handle::Bottom.resize(&b, pos2(0.0, 500.0), &v),
            BBox::new(10.0, 10.0, 20.0, 90.0)
        );
        assert_eq!(
            Handle::Bottom.resize(&b, pos2(0.0, 10.0), &v),
            BBox::new(10.0, 10.0, 20.0, 1.0)
        );
    }

    #[test]
    fn labels_avoid_each_other_or_wait_for_hover() {
        let clip = Rect::from_min_size(Pos2::ZERO, vec2(400.0, 300.0));
        let size = vec2(40.0, 14.0);
        let a = Rect::from_min_size(pos2(100.0, 100.0), vec2(60.0, 40.0));
        // Alone: above the top-left corner.
        let first = place_tag(a, size, clip, &[]).expect("room");
        assert_eq!(first.min, pos2(99.25, 86.0));
        // A box just below-right of it: its tag would cover the first, so it goes inside.
        let b = Rect::from_min_size(pos2(105.0, 104.0), vec2(60.0, 40.0));
        let second = place_tag(b, size, clip, &[first]).expect("room");
        assert!(!second.intersects(first.shrink(0.5)));
        assert_eq!(second.min, pos2(105.0, 104.0));
        // At the top edge there is no room above: inside.
        let top = Rect::from_min_size(pos2(10.0, 2.0), vec2(60.0, 40.0));
        assert_eq!(
            place_tag(top, size, clip, &[]).expect("room").min,
            pos2(10.0, 2.0)
        );
        // Every place taken: none (the label shows on hover).
        let taken = [Rect::from_min_size(pos2(0.0, 0.0), vec2(400.0, 300.0))];
        assert_eq!(place_tag(a, size, clip, &taken), None);
    }

    #[test]
    fn handle_hits_need_to_be_close() {
        let r = Rect::from_min_size(pos2(100.0, 100.0), vec2(50.0, 40.0));
        assert_eq!(hit_handle(r, pos2(102.0, 101.0)), Some(Handle::TopLeft));
        assert_eq!(hit_handle(r, pos2(150.0, 120.0)), Some(Handle::Right));
        assert_eq!(hit_handle(r, pos2(125.0, 120.0)), None);
    }

    #[test]
    fn window_presets_cycle_and_use_the_stats() {
        let stats = GrayStats {
            values: None,
            min: 10,
            max: 4000,
            low: 100,
            high: 3000,
        };
        let mut p = WindowPreset::default();
        assert_eq!(p.window(Some(stats)), (100.0, 3000.0));
        p = p.next();
        assert_eq!(p.window(Some(stats)), (10.0, 4000.0));
        p = p.next().next().next();
        assert_eq!(p, WindowPreset::Robust);
        let mut d = Display::default();
        d.adjust(vec2(0.0, -10.0), PixelKind::Gray16, Some(stats));
        let (lo, hi) = d.window_for(Some(stats));
        assert!((hi - lo - 2900.0).abs() < 1.0 && lo > 100.0);
    }

    #[test]
    fn a_dicom_window_comes_first_and_is_shown_in_its_units() {
        // CT: stored 0 is -1024 HU; soft tissue is level 40, width 400 (stored 864..1264).
        let values = super::super::loader::ValueMapping {
            offset: -1024.0,
            scale: 1.0,
            inverted: false,
            unit: "HU",
            file_window: Some((864.0, 1264.0)),
            window_label: "soft tissue",
        };
        let stats = GrayStats {
            values: Some(values),
            min: 0,
            max: 2500,
            low: 10,
            high: 2400,
        };
        let d = Display::default();
        assert_eq!(d.window_for(Some(stats)), (864.0, 1264.0));
        assert_eq!(
            d.describe(PixelKind::Gray16, Some(stats)),
            "window -160–240 HU · level 40 width 400 (soft tissue)"
        );
        // The other presets still work in stored units.
        assert_eq!(WindowPreset::MinMax.window(Some(stats)), (0.0, 2500.0));
    }
}
