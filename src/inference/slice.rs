//! Sliced inference for small objects in big images: the image is cut into overlapping windows
//! at full resolution (plus, optionally, one pass over the whole image), each window runs
//! through the model, and the boxes, mapped back to image pixels, are merged across windows.
//!
//! The windows follow SAHI's layout: a window of the asked size every `size * (1 - overlap)`
//! pixels from the top-left corner, the last row and column moved back so they end at the
//! image's edge (never past it, never narrower than asked unless the image is). An image smaller
//! than a window is one window, the whole image.
//!
//! Merging is class-aware: boxes of different classes never merge. `nms` keeps the best box of
//! each overlapping group (IoU above the threshold). `nmm` (greedy non-maximum merging, SAHI's
//! default) grows the best box into the union of the boxes it matches by intersection over the
//! smaller box, so an object cut by a window border, seen as two parts, comes back as one box.

use serde::{Deserialize, Serialize};

use super::Detection;
use crate::model::BBox;

/// How boxes from different windows are merged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeMode {
    /// Greedy non-maximum merging: matches (intersection over the smaller box above the
    /// threshold) are merged into their union, keeping the best score.
    #[default]
    Nmm,
    /// Class-aware NMS: matches (IoU above the threshold) are dropped.
    Nms,
}

impl MergeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMode::Nmm => "nmm",
            MergeMode::Nms => "nms",
        }
    }

    /// Parses `nmm` or `nms`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "nmm" => Some(MergeMode::Nmm),
            "nms" => Some(MergeMode::Nms),
            _ => None,
        }
    }
}

/// How an image is sliced; part of the descriptor, so a sliced run is another run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceSettings {
    /// Window size in image pixels.
    pub width: u32,
    pub height: u32,
    /// Fraction of a window shared with its neighbour, `0 <= overlap < 1`.
    #[serde(default = "default_overlap")]
    pub overlap: f32,
    /// Also run the model once on the whole image (downscaled to the model's input as usual),
    /// for the objects bigger than a window.
    #[serde(default)]
    pub full_pass: bool,
    #[serde(default)]
    pub merge: MergeMode,
    /// Boxes match above this IoU (`nms`) or intersection over the smaller box (`nmm`).
    #[serde(default = "default_merge_threshold")]
    pub merge_threshold: f32,
}

fn default_overlap() -> f32 {
    0.2
}

fn default_merge_threshold() -> f32 {
    0.5
}

impl SliceSettings {
    /// Windows of `width` x `height` with the default overlap (0.2) and merge (`nmm` at 0.5).
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            overlap: default_overlap(),
            full_pass: false,
            merge: MergeMode::default(),
            merge_threshold: default_merge_threshold(),
        }
    }

    /// Parses `WxH` (`640x640`, or `640` for a square).
    pub fn parse_size(text: &str) -> Option<(u32, u32)> {
        let text = text.trim();
        let (w, h) = match text.split_once(['x', 'X']) {
            Some((w, h)) => (w.trim().parse().ok()?, h.trim().parse().ok()?),
            None => {
                let side = text.parse().ok()?;
                (side, side)
            }
        };
        (w > 0 && h > 0).then_some((w, h))
    }

    /// Why these settings cannot work, if they cannot.
    pub fn problem(&self) -> Option<String> {
        if self.width == 0 || self.height == 0 {
            return Some(format!(
                "slice size {}x{} must not be zero",
                self.width, self.height
            ));
        }
        if !(0.0..0.95).contains(&self.overlap) {
            return Some(format!(
                "slice overlap {} must be at least 0 and below 0.95",
                self.overlap
            ));
        }
        if !(0.0..=1.0).contains(&self.merge_threshold) {
            return Some(format!(
                "slice merge threshold {} must be between 0 and 1",
                self.merge_threshold
            ));
        }
        None
    }

    /// The windows covering a `image_width` x `image_height` image.
    pub fn windows(&self, image_width: u32, image_height: u32) -> Vec<Window> {
        let xs = starts(image_width, self.width, self.overlap);
        let ys = starts(image_height, self.height, self.overlap);
        let w = self.width.min(image_width);
        let h = self.height.min(image_height);
        ys.iter()
            .flat_map(|&y| {
                xs.iter().map(move |&x| Window {
                    x,
                    y,
                    width: w,
                    height: h,
                })
            })
            .collect()
    }
}

/// Where windows start along one axis of `length` pixels.
fn starts(length: u32, size: u32, overlap: f32) -> Vec<u32> {
    if length <= size {
        return vec![0];
    }
    // At least one pixel forward, whatever the overlap.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let step = ((f64::from(size) * (1.0 - f64::from(overlap))).floor() as u32).max(1);
    let last = length - size;
    let mut out: Vec<u32> = (0..).map(|i| i * step).take_while(|&s| s < last).collect();
    out.push(last);
    out
}

/// One window, in image pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// Detections from one window (or the whole-image pass), in that window's pixels.
#[derive(Clone, Debug)]
pub struct WindowDetections {
    /// Image pixels of the window's top-left corner.
    pub offset: (f64, f64),
    /// Image pixels per window pixel along x and y (1 for windows at full resolution; more for
    /// a pass over a downscaled image).
    pub scale: (f64, f64),
    pub detections: Vec<Detection>,
}

/// Maps every window's boxes back to image pixels and merges them across windows; the result is
/// sorted by score, best first, and holds at most `max_detections` boxes.
pub fn merge_windows(
    parts: Vec<WindowDetections>,
    settings: &SliceSettings,
    image_width: u32,
    image_height: u32,
    max_detections: usize,
) -> Vec<Detection> {
    let (w, h) = (f64::from(image_width), f64::from(image_height));
    let mapped: Vec<Detection> = parts
        .into_iter()
        .flat_map(|part| {
            let (ox, oy) = part.offset;
            let (sx, sy) = part.scale;
            part.detections.into_iter().map(move |d| Detection {
                bbox: BBox::new(
                    ox + d.bbox.x * sx,
                    oy + d.bbox.y * sy,
                    d.bbox.w * sx,
                    d.bbox.h * sy,
                )
                .clipped(w, h),
                ..d
            })
        })
        .filter(|d| d.bbox.w > 0.0 && d.bbox.h > 0.0)
        .collect();
    let mut merged = merge(mapped, settings.merge, settings.merge_threshold);
    merged.truncate(max_detections);
    merged
}

/// One part's boxes in image pixels, without merging (a whole-image pass, perhaps on a
/// downscaled image).
pub fn map_part(part: WindowDetections, image_width: u32, image_height: u32) -> Vec<Detection> {
    let (ox, oy) = part.offset;
    let (sx, sy) = part.scale;
    if part.offset == (0.0, 0.0) && part.scale == (1.0, 1.0) {
        return part.detections;
    }
    let (w, h) = (f64::from(image_width), f64::from(image_height));
    part.detections
        .into_iter()
        .map(|d| Detection {
            bbox: BBox::new(
                ox + d.bbox.x * sx,
                oy + d.bbox.y * sy,
                d.bbox.w * sx,
                d.bbox.h * sy,
            )
            .clipped(w, h),
            ..d
        })
        .filter(|d| d.bbox.w > 0.0 && d.bbox.h > 0.0)
        .collect()
}

/// Class-aware NMS or NMM over boxes in one space; best score first.
pub fn merge(mut detections: Vec<Detection>, mode: MergeMode, threshold: f32) -> Vec<Detection> {
    detections.sort_by(|a, b| a.class.cmp(&b.class).then(b.score.total_cmp(&a.score)));
    let mut out: Vec<Detection> = Vec::with_capacity(detections.len());
    for group in detections.chunk_by(|a, b| a.class == b.class) {
        let mut used = vec![false; group.len()];
        for i in 0..group.len() {
            if used[i] {
                continue;
            }
            used[i] = true;
            let best = &group[i];
            let mut kept = best.clone();
            for j in (i + 1)..group.len() {
                if used[j] {
                    continue;
                }
                let other = &group[j].bbox;
                let matched = match mode {
                    MergeMode::Nms => best.bbox.iou(other) > f64::from(threshold),
                    // Against the box as it was picked, not as it grows: growing would let a
                    // chain of neighbours swallow a whole row of objects.
                    MergeMode::Nmm => ios(&best.bbox, other) > f64::from(threshold),
                };
                if matched {
                    used[j] = true;
                    if mode == MergeMode::Nmm {
                        kept.bbox = union(&kept.bbox, other);
                    }
                }
            }
            out.push(kept);
        }
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

/// Intersection over the smaller box's area; 0 when either is empty.
pub fn ios(a: &BBox, b: &BBox) -> f64 {
    let iw = (a.x2().min(b.x2()) - a.x.max(b.x)).max(0.0);
    let ih = (a.y2().min(b.y2()) - a.y.max(b.y)).max(0.0);
    let smaller = a.area().min(b.area());
    if smaller > 0.0 {
        iw * ih / smaller
    } else {
        0.0
    }
}

fn union(a: &BBox, b: &BBox) -> BBox {
    BBox::from_corners(
        a.x.min(b.x),
        a.y.min(b.y),
        a.x2().max(b.x2()),
        a.y2().max(b.y2()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class: usize, score: f32, x0: f64, y0: f64, x1: f64, y1: f64) -> Detection {
        Detection {
            class,
            score,
            bbox: BBox::from_corners(x0, y0, x1, y1),
        }
    }

    fn covered(windows: &[Window], w: u32, h: u32) -> bool {
        (0..h).step_by(7).all(|y| {
            (0..w).step_by(7).all(|x| {
                windows
                    .iter()
                    .any(|r| x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height)
            })
        })
    }

    #[test]
    fn windows_cover_the_image_and_end_at_its_edges() {
        let s = SliceSettings::new(512, 256);
        let windows = s.windows(1200, 700);
        // Step 409 along x: 0, 409, then the last one ends at 1200. Step 204 along y.
        let xs: Vec<u32> = windows.iter().filter(|w| w.y == 0).map(|w| w.x).collect();
        assert_eq!(xs, vec![0, 409, 688]);
        let ys: Vec<u32> = windows.iter().filter(|w| w.x == 0).map(|w| w.y).collect();
        assert_eq!(ys, vec![0, 204, 408, 444]);
        assert!(
            windows.iter().all(|w| w.width == 512
                && w.height == 256
                && w.x + 512 <= 1200
                && w.y + 256 <= 700)
        );
        assert!(covered(&windows, 1200, 700));
        // Neighbours share at least the asked overlap.
        assert!(409 + 512 - 688 >= 0 && 512 - 409 >= (512.0 * 0.2) as u32);
    }

    #[test]
    fn an_image_smaller_than_a_window_is_one_window() {
        let s = SliceSettings::new(640, 640);
        assert_eq!(
            s.windows(300, 200),
            vec![Window {
                x: 0,
                y: 0,
                width: 300,
                height: 200
            }]
        );
        // Smaller along one axis only: one row of full-width windows, clipped in height.
        let windows = s.windows(2000, 100);
        assert!(windows.iter().all(|w| w.y == 0 && w.height == 100));
        assert_eq!(windows.last().map(|w| w.x + w.width), Some(2000));
        assert!(covered(&windows, 2000, 100));
    }

    #[test]
    fn exact_fits_and_zero_overlap_do_not_add_windows() {
        let s = SliceSettings {
            overlap: 0.0,
            ..SliceSettings::new(100, 100)
        };
        assert_eq!(s.windows(300, 100).len(), 3);
        assert_eq!(s.windows(100, 100).len(), 1);
        assert_eq!(s.windows(301, 100).len(), 4);
        // A huge overlap still moves forward.
        let s = SliceSettings {
            overlap: 0.999,
            ..SliceSettings::new(10, 10)
        };
        assert!(s.windows(30, 10).len() <= 21);
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(SliceSettings::parse_size("640x480"), Some((640, 480)));
        assert_eq!(SliceSettings::parse_size("800"), Some((800, 800)));
        assert_eq!(SliceSettings::parse_size("0x5"), None);
        assert_eq!(SliceSettings::parse_size("axb"), None);
        assert!(SliceSettings::new(10, 10).problem().is_none());
        let bad = SliceSettings {
            overlap: 1.0,
            ..SliceSettings::new(10, 10)
        };
        assert!(bad.problem().is_some_and(|p| p.contains("overlap")));
    }

    #[test]
    fn a_box_split_by_a_window_border_comes_back_as_one() {
        // An object at x 380..520 in a 1000-wide image, windows of 500 with overlap 0.2: the
        // first window (0..500) sees it cut at 500, the second (400..900) cut at 400, each in
        // its own pixels.
        let s = SliceSettings::new(500, 500);
        let parts = vec![
            WindowDetections {
                offset: (0.0, 0.0),
                scale: (1.0, 1.0),
                detections: vec![det(1, 0.8, 380.0, 50.0, 500.0, 90.0)],
            },
            WindowDetections {
                offset: (400.0, 0.0),
                scale: (1.0, 1.0),
                detections: vec![
                    det(1, 0.7, 0.0, 52.0, 120.0, 91.0),
                    // Another class at the same place stays.
                    det(2, 0.6, 0.0, 52.0, 120.0, 91.0),
                ],
            },
        ];
        let merged = merge_windows(parts.clone(), &s, 1000, 500, 100);
        assert_eq!(merged.len(), 2, "{merged:?}");
        let one = merged.iter().find(|d| d.class == 1).expect("class 1");
        assert_eq!(one.bbox, BBox::from_corners(380.0, 50.0, 520.0, 91.0));
        assert!((one.score - 0.8).abs() < 1e-6);
        // NMS only keeps the better part.
        let nms = SliceSettings {
            merge: MergeMode::Nms,
            ..s
        };
        let kept = merge_windows(parts, &nms, 1000, 500, 100);
        assert_eq!(kept.iter().filter(|d| d.class == 1).count(), 1);
        let one = kept.iter().find(|d| d.class == 1).expect("class 1");
        assert_eq!(one.bbox, BBox::from_corners(380.0, 50.0, 500.0, 90.0));
    }

    #[test]
    fn separate_objects_stay_apart_and_scaled_passes_map_back() {
        let s = SliceSettings::new(500, 500);
        let parts = vec![
            WindowDetections {
                offset: (0.0, 0.0),
                scale: (1.0, 1.0),
                detections: vec![
                    det(0, 0.9, 10.0, 10.0, 50.0, 50.0),
                    det(0, 0.8, 60.0, 10.0, 100.0, 50.0),
                ],
            },
            // A whole-image pass on a quarter-size image.
            WindowDetections {
                offset: (0.0, 0.0),
                scale: (4.0, 4.0),
                detections: vec![det(0, 0.85, 100.0, 100.0, 200.0, 200.0)],
            },
        ];
        let merged = merge_windows(parts, &s, 2000, 2000, 100);
        assert_eq!(merged.len(), 3);
        assert_eq!(
            merged[1].bbox,
            BBox::from_corners(400.0, 400.0, 800.0, 800.0)
        );
        // Limits apply after merging, best first.
        let s2 = SliceSettings::new(500, 500);
        let few = merge_windows(
            vec![WindowDetections {
                offset: (0.0, 0.0),
                scale: (1.0, 1.0),
                detections: vec![
                    det(0, 0.5, 0.0, 0.0, 5.0, 5.0),
                    det(0, 0.9, 10.0, 10.0, 15.0, 15.0),
                ],
            }],
            &s2,
            100,
            100,
            1,
        );
        assert_eq!(few.len(), 1);
        assert!((few[0].score - 0.9).abs() < 1e-6);
    }
}
