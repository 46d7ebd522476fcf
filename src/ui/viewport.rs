//! The one transform between image pixels and screen points: zoom about a point, pan, fit,
//! 1:1 and clamping. Nothing else in the app does transform math.

use eframe::egui::{Pos2, Rect, Vec2, pos2, vec2};

use crate::model::BBox;

/// How much of the image (in points) must stay on screen when panning.
const KEEP_VISIBLE: f32 = 48.0;
/// The largest zoom, in screen points per image pixel.
const MAX_ZOOM: f32 = 64.0;
/// Margin left around the image when fitting, in points.
const FIT_MARGIN: f32 = 8.0;

/// Where the image sits in the canvas.
///
/// `screen = canvas.min + offset + image * zoom`, with `zoom` in screen points per image pixel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Viewport {
    canvas: Rect,
    image_size: Vec2,
    zoom: f32,
    offset: Vec2,
    /// While true, the image follows the canvas size (re-fits when the window is resized).
    fitted: bool,
}

impl Default for Viewport {
    fn default() -> Self {
        Self::new(
            Rect::from_min_size(Pos2::ZERO, vec2(800.0, 600.0)),
            vec2(1.0, 1.0),
        )
    }
}

impl Viewport {
    /// A viewport showing the whole image, centred in the canvas.
    pub fn new(canvas: Rect, image_size: Vec2) -> Self {
        let mut v = Self {
            canvas,
            image_size: image_size.max(vec2(1.0, 1.0)),
            zoom: 1.0,
            offset: Vec2::ZERO,
            fitted: true,
        };
        v.fit();
        v
    }

    /// The canvas area on screen.
    pub fn canvas(&self) -> Rect {
        self.canvas
    }

    /// Image width and height in pixels.
    pub fn image_size(&self) -> Vec2 {
        self.image_size
    }

    /// Screen points per image pixel.
    pub fn zoom(&self) -> f32 {
        self.zoom
    }

    /// True while the view shows the whole image and follows the canvas size.
    pub fn is_fitted(&self) -> bool {
        self.fitted
    }

    /// Moves or resizes the canvas. A fitted view re-fits; otherwise the image keeps its place
    /// relative to the canvas centre.
    pub fn set_canvas(&mut self, canvas: Rect) {
        if canvas == self.canvas {
            return;
        }
        let centre_shift = canvas.size() / 2.0 - self.canvas.size() / 2.0;
        self.canvas = canvas;
        if self.fitted {
            self.fit();
        } else {
            self.offset += centre_shift;
            self.clamp();
        }
    }

    /// Shows another image. Keeps zoom and position when it has the same size (frames of a
    /// video, tiles of a scan), else fits the new one.
    pub fn set_image_size(&mut self, image_size: Vec2) {
        let image_size = image_size.max(vec2(1.0, 1.0));
        if image_size != self.image_size {
            self.image_size = image_size;
            self.fit();
        }
    }

    /// The zoom at which the whole image fits the canvas.
    pub fn fit_zoom(&self) -> f32 {
        let avail = (self.canvas.size() - Vec2::splat(2.0 * FIT_MARGIN)).max(vec2(1.0, 1.0));
        (avail.x / self.image_size.x).min(avail.y / self.image_size.y)
    }

    /// Shows the whole image, centred.
    pub fn fit(&mut self) {
        self.zoom = self.fit_zoom();
        self.offset = (self.canvas.size() - self.image_size * self.zoom) / 2.0;
        self.fitted = true;
    }

    fn min_zoom(&self) -> f32 {
        (self.fit_zoom() / 4.0).min(1.0)
    }

    /// Sets the zoom, keeping the image point under `pos_on_screen` where it is.
    pub fn set_zoom_about(&mut self, zoom: f32, pos_on_screen: Pos2) {
        let zoom = zoom.clamp(self.min_zoom(), MAX_ZOOM);
        if !zoom.is_finite() || zoom == self.zoom {
            return;
        }
        let pos_in_image = self.image_from_screen(pos_on_screen);
        self.zoom = zoom;
        let moved = self.screen_from_image(pos_in_image);
        self.offset += pos_on_screen - moved;
        self.fitted = false;
        self.clamp();
    }

    /// Multiplies the zoom by `factor` about a point on screen.
    pub fn zoom_about(&mut self, factor: f32, pos_on_screen: Pos2) {
        self.set_zoom_about(self.zoom * factor, pos_on_screen);
    }

    /// One image pixel per physical screen pixel, about a point on screen.
    pub fn one_to_one(&mut self, pixels_per_point: f32, pos_on_screen: Pos2) {
        self.set_zoom_about(1.0 / pixels_per_point.max(0.01), pos_on_screen);
    }

    /// Moves the image by a screen delta.
    pub fn pan(&mut self, delta_on_screen: Vec2) {
        if delta_on_screen == Vec2::ZERO {
            return;
        }
        self.offset += delta_on_screen;
        self.fitted = false;
        self.clamp();
    }

    /// Brings a box on screen: when it is not wholly on the canvas, pans (keeping the zoom) so
    /// its centre is the canvas's centre. A box already in view stays where it is.
    pub fn reveal(&mut self, bbox: &BBox) {
        let on_screen = self.screen_from_bbox(bbox);
        if self.canvas.contains_rect(on_screen) {
            return;
        }
        self.pan(self.canvas.center() - on_screen.center());
    }

    /// Keeps part of the image on screen, so it cannot be lost by panning or zooming.
    fn clamp(&mut self) {
        let size = self.image_size * self.zoom;
        let keep = vec2(KEEP_VISIBLE.min(size.x), KEEP_VISIBLE.min(size.y));
        let canvas = self.canvas.size();
        self.offset.x = self.offset.x.clamp(keep.x - size.x, canvas.x - keep.x);
        self.offset.y = self.offset.y.clamp(keep.y - size.y, canvas.y - keep.y);
    }

    /// Screen position of a point given in image pixels.
    pub fn screen_from_image(&self, pos_in_image: Pos2) -> Pos2 {
        self.canvas.min + self.offset + pos_in_image.to_vec2() * self.zoom
    }

    /// Image position (pixels, fractional) of a point on screen.
    pub fn image_from_screen(&self, pos_on_screen: Pos2) -> Pos2 {
        ((pos_on_screen - self.canvas.min - self.offset) / self.zoom).to_pos2()
    }

    /// A screen delta expressed in image pixels.
    pub fn image_delta_from_screen(&self, delta_on_screen: Vec2) -> Vec2 {
        delta_on_screen / self.zoom
    }

    /// The screen rectangle of a box.
    pub fn screen_from_bbox(&self, bbox: &BBox) -> Rect {
        #[allow(clippy::cast_possible_truncation)]
        let (x, y, w, h) = (bbox.x as f32, bbox.y as f32, bbox.w as f32, bbox.h as f32);
        let min = self.screen_from_image(pos2(x, y));
        Rect::from_min_size(min, vec2(w, h) * self.zoom)
    }

    /// The whole image on screen (may extend past the canvas).
    pub fn image_rect_on_screen(&self) -> Rect {
        Rect::from_min_size(self.canvas.min + self.offset, self.image_size * self.zoom)
    }

    /// The part of the image (in pixels) that the canvas shows; used to skip boxes off screen.
    pub fn visible_image_rect(&self) -> Rect {
        Rect::from_two_pos(
            self.image_from_screen(self.canvas.min),
            self.image_from_screen(self.canvas.max),
        )
    }

    /// A box from two image points, clamped to the image and rounded to whole pixels.
    pub fn bbox_from_image_points(&self, a: Pos2, b: Pos2) -> BBox {
        let clamp_x = |v: f32| f64::from(v.clamp(0.0, self.image_size.x).round());
        let clamp_y = |v: f32| f64::from(v.clamp(0.0, self.image_size.y).round());
        BBox::from_corners(clamp_x(a.x), clamp_y(a.y), clamp_x(b.x), clamp_y(b.y))
    }

    /// `bbox` moved by whole pixels and kept inside the image.
    pub fn moved_bbox(&self, bbox: &BBox, delta_in_image: Vec2) -> BBox {
        let (iw, ih) = (f64::from(self.image_size.x), f64::from(self.image_size.y));
        let x = (bbox.x + f64::from(delta_in_image.x.round())).clamp(0.0, (iw - bbox.w).max(0.0));
        let y = (bbox.y + f64::from(delta_in_image.y.round())).clamp(0.0, (ih - bbox.h).max(0.0));
        BBox::new(x, y, bbox.w, bbox.h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Pos2, b: Pos2) -> bool {
        (a - b).length() < 1e-3
    }

    fn viewport() -> Viewport {
        Viewport::new(
            Rect::from_min_size(pos2(100.0, 50.0), vec2(816.0, 616.0)),
            vec2(400.0, 300.0),
        )
    }

    #[test]
    fn fit_centres_the_whole_image() {
        let v = viewport();
        assert!((v.zoom() - 2.0).abs() < 1e-6);
        let r = v.image_rect_on_screen();
        assert!(close(r.center(), v.canvas().center()));
        assert!(v.canvas().contains_rect(r));
    }

    #[test]
    fn reveal_centres_a_box_off_screen_and_leaves_one_in_view() {
        let mut v = viewport();
        v.zoom_about(8.0, v.canvas().center());
        let zoom = v.zoom();
        let far = BBox::new(380.0, 280.0, 10.0, 10.0);
        assert!(!v.canvas().contains_rect(v.screen_from_bbox(&far)));
        v.reveal(&far);
        assert!(close(
            v.screen_from_bbox(&far).center(),
            v.canvas().center()
        ));
        assert!((v.zoom() - zoom).abs() < 1e-6, "the zoom stays");
        let before = v.screen_from_image(pos2(0.0, 0.0));
        v.reveal(&BBox::new(382.0, 282.0, 4.0, 4.0));
        assert!(
            close(v.screen_from_image(pos2(0.0, 0.0)), before),
            "in view: no pan"
        );
    }

    #[test]
    fn screen_and_image_transforms_are_inverse() {
        let mut v = viewport();
        v.zoom_about(3.7, pos2(333.0, 222.0));
        v.pan(vec2(-40.0, 12.5));
        for p in [pos2(0.0, 0.0), pos2(399.0, 299.0), pos2(12.25, 200.5)] {
            assert!(close(v.image_from_screen(v.screen_from_image(p)), p));
        }
    }

    #[test]
    fn zoom_keeps_the_point_under_the_cursor() {
        let mut v = viewport();
        let cursor = pos2(412.0, 301.0);
        let before = v.image_from_screen(cursor);
        v.zoom_about(2.5, cursor);
        assert!(close(v.image_from_screen(cursor), before));
        assert!(!v.is_fitted());
        v.zoom_about(0.1, cursor);
        assert!(close(v.image_from_screen(cursor), before));
    }

    #[test]
    fn zoom_is_bounded() {
        let mut v = viewport();
        v.zoom_about(1e9, pos2(500.0, 300.0));
        assert!((v.zoom() - MAX_ZOOM).abs() < 1e-3);
        v.zoom_about(1e-9, pos2(500.0, 300.0));
        assert!(v.zoom() > 0.0 && v.zoom() <= v.fit_zoom());
    }

    #[test]
    fn one_to_one_maps_a_pixel_to_a_physical_pixel() {
        let mut v = viewport();
        v.one_to_one(2.0, pos2(500.0, 300.0));
        assert!((v.zoom() - 0.5).abs() < 1e-6);
    }

    #[test]
    fn panning_cannot_lose_the_image() {
        let mut v = viewport();
        v.pan(vec2(1e6, -1e6));
        let visible = v.image_rect_on_screen().intersect(v.canvas());
        assert!(visible.width() >= KEEP_VISIBLE - 1e-3 && visible.height() >= KEEP_VISIBLE - 1e-3);
    }

    #[test]
    fn resizing_a_fitted_canvas_refits() {
        let mut v = viewport();
        v.set_canvas(Rect::from_min_size(pos2(0.0, 0.0), vec2(416.0, 316.0)));
        assert!((v.zoom() - 1.0).abs() < 1e-6);
        v.set_image_size(vec2(400.0, 300.0));
        assert!((v.zoom() - 1.0).abs() < 1e-6);
        v.set_image_size(vec2(800.0, 600.0));
        assert!((v.zoom() - 0.5).abs() < 1e-6);
    }

    #[test]
    fn boxes_round_and_clamp_to_the_image() {
        let v = viewport();
        let b = v.bbox_from_image_points(pos2(410.0, 20.4), pos2(-3.0, 10.6));
        assert_eq!(b, BBox::new(0.0, 11.0, 400.0, 9.0));
        let m = v.moved_bbox(&BBox::new(10.0, 10.0, 50.0, 40.0), vec2(1000.0, -3.4));
        assert_eq!(m, BBox::new(350.0, 7.0, 50.0, 40.0));
        let r = v.screen_from_bbox(&BBox::new(0.0, 0.0, 400.0, 300.0));
        assert!(
            close(r.min, v.image_rect_on_screen().min)
                && close(r.max, v.image_rect_on_screen().max)
        );
    }

    #[test]
    fn visible_rect_is_the_canvas_in_image_pixels() {
        let v = viewport();
        let r = v.visible_image_rect();
        assert!(close(v.screen_from_image(r.min), v.canvas().min));
        assert!(close(v.screen_from_image(r.max), v.canvas().max));
    }
}
