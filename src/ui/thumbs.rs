//! Thumbnails for the image list, and box crops for the crop grid: made on a background thread
//! for what is on screen only, kept as textures in a small least-recently-used cache.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::workers::{self, WorkerDeath};

use crossbeam_channel::{Receiver, Sender};
use eframe::egui::{self, ColorImage, TextureHandle, TextureOptions};
use image::DynamicImage;
use parking_lot::{Condvar, Mutex};
use uuid::Uuid;

use super::theme;
use crate::imaging;
use crate::imaging::tiles::RegionSource;
use crate::model::BBox;

/// Thumbnails kept as textures.
const CAPACITY: usize = 600;

struct Queue {
    jobs: VecDeque<Job>,
    in_flight: HashSet<Uuid>,
    stop: bool,
}

/// A thumbnail to make: its key, the image file and, for a crop, the box to cut out.
type Job = (Uuid, PathBuf, Option<BBox>);

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

enum Thumb {
    Ready(TextureHandle),
    Failed,
}

/// The cache and its worker.
pub struct Thumbnails {
    shared: Arc<Shared>,
    results: Receiver<(Uuid, Option<ColorImage>)>,
    cache: HashMap<Uuid, (Thumb, u64)>,
    wanted: Vec<Job>,
    frame: u64,
    thread: Option<JoinHandle<Result<(), WorkerDeath>>>,
}

impl Thumbnails {
    /// Starts the `loupe-thumbnails` thread.
    pub fn new(ctx: &egui::Context) -> Self {
        Self::named(ctx, "loupe-thumbnails")
    }

    /// Starts a cache whose thread has another name (the crop grid's `loupe-crops`).
    pub fn named(ctx: &egui::Context, thread_name: &'static str) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                in_flight: HashSet::new(),
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let (tx, results) = crossbeam_channel::unbounded();
        let thread = {
            let shared = Arc::clone(&shared);
            let ctx = ctx.clone();
            let thread_ctx = ctx.clone();
            workers::spawn(&ctx, thread_name, move || {
                worker(&shared, &tx, &thread_ctx);
            })
            .map_err(|e| tracing::error!("cannot start the thumbnail thread: {e}"))
            .ok()
        };
        Self {
            shared,
            results,
            cache: HashMap::new(),
            wanted: Vec::new(),
            frame: 0,
            thread,
        }
    }

    /// The thumbnail of an image if ready; otherwise asks for it (this frame).
    pub fn get(&mut self, id: Uuid, path: &Path) -> Option<&TextureHandle> {
        self.want(id, path, None)
    }

    /// The crop of `bbox` (image pixels) from an image if ready; otherwise asks for it. `key`
    /// names this crop ([`crop_key`]: a box that moves is another crop).
    pub fn crop(&mut self, key: Uuid, path: &Path, bbox: BBox) -> Option<&TextureHandle> {
        self.want(key, path, Some(bbox))
    }

    fn want(&mut self, id: Uuid, path: &Path, bbox: Option<BBox>) -> Option<&TextureHandle> {
        match self.cache.get_mut(&id) {
            Some((thumb, used)) => {
                *used = self.frame;
                match thumb {
                    Thumb::Ready(t) => Some(t),
                    Thumb::Failed => None,
                }
            }
            None => {
                self.wanted.push((id, path.to_path_buf(), bbox));
                None
            }
        }
    }

    /// True when no thumbnail is queued, being made, or waiting to be taken. For tests.
    pub fn is_idle(&self) -> bool {
        let queue = self.shared.queue.lock();
        queue.jobs.is_empty()
            && queue.in_flight.is_empty()
            && self.results.is_empty()
            && self.wanted.is_empty()
    }

    /// Takes the finished thumbnails (in `App::logic`, before the frame draws them).
    pub fn poll(&mut self, ctx: &egui::Context) {
        while let Ok((id, image)) = self.results.try_recv() {
            let thumb = match image {
                Some(img) => Thumb::Ready(ctx.load_texture(
                    format!("thumb-{id}"),
                    img,
                    TextureOptions::LINEAR,
                )),
                None => Thumb::Failed,
            };
            self.cache.insert(id, (thumb, self.frame));
        }
    }

    /// Call once per frame after the list is drawn: queues what the visible rows lack (and
    /// drops work for rows scrolled away), evicts old thumbnails.
    pub fn end_frame(&mut self, ctx: &egui::Context) {
        self.frame += 1;
        // Results that arrived while the frame was drawn.
        self.poll(ctx);
        {
            let mut queue = self.shared.queue.lock();
            let in_flight = std::mem::take(&mut queue.in_flight);
            queue.jobs = self
                .wanted
                .drain(..)
                .filter(|(id, _, _)| !self.cache.contains_key(id) && !in_flight.contains(id))
                .collect();
            queue.in_flight = in_flight;
        }
        self.shared.wake.notify_all();
        if self.cache.len() > CAPACITY {
            let mut ages: Vec<(u64, Uuid)> = self
                .cache
                .iter()
                .map(|(id, (_, used))| (*used, *id))
                .collect();
            ages.sort_unstable();
            for (_, id) in ages.into_iter().take(self.cache.len() - CAPACITY) {
                self.cache.remove(&id);
            }
        }
    }
}

impl Drop for Thumbnails {
    fn drop(&mut self) {
        self.shared.queue.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn worker(shared: &Shared, results: &Sender<(Uuid, Option<ColorImage>)>, ctx: &egui::Context) {
    // The image the last crop was cut from, kept: crops listed by image (the grid without
    // embeddings) then decode each image once.
    let mut last: Option<(PathBuf, RegionSource)> = None;
    loop {
        let (id, path, bbox) = {
            let mut queue = shared.queue.lock();
            loop {
                if queue.stop {
                    return;
                }
                if let Some(job) = queue.jobs.pop_front() {
                    queue.in_flight.insert(job.0);
                    break job;
                }
                shared.wake.wait(&mut queue);
            }
        };
        let thumb = match bbox {
            Some(bbox) => {
                if last.as_ref().is_none_or(|(p, _)| *p != path) {
                    last = open_for_crops(&path).map(|source| (path.clone(), source));
                }
                last.as_ref()
                    .and_then(|(_, source)| crop_from(source, bbox))
            }
            None => make_thumbnail(&path),
        };
        shared.queue.lock().in_flight.remove(&id);
        if results.send((id, thumb)).is_err() {
            return;
        }
        ctx.request_repaint();
    }
}

/// A small RGBA version of an image; 16-bit images are stretched over their robust range.
///
/// An image big enough to be read as tiles is never decoded whole: its thumbnail comes from a
/// coarse level of its pyramid.
pub fn make_thumbnail(path: &Path) -> Option<ColorImage> {
    let settings = imaging::tiles::TileSettings::default();
    let big = !imaging::dicom::is_dicom(path)
        && imaging::probe(path).is_ok_and(|info| settings.is_tiled(info.width, info.height));
    let img = if big {
        imaging::tiles::open(path, &settings)
            .and_then(|tiled| tiled.overview(4 * theme::THUMB_SIZE))
            .map(|(img, _, _)| DynamicImage::ImageRgb8(img))
    } else {
        imaging::decode(path)
    }
    .map_err(|e| tracing::debug!("no thumbnail: {e}"))
    .ok()?;
    let small = img.thumbnail(theme::THUMB_SIZE, theme::THUMB_SIZE);
    Some(to_color_image(small))
}

/// The key of a box's crop: the box and where it is, so a moved box is cropped again.
pub fn crop_key(ann: Uuid, bbox: &BBox) -> Uuid {
    let mut h = blake3::Hasher::new();
    h.update(ann.as_bytes());
    for v in [bbox.x, bbox.y, bbox.w, bbox.h] {
        h.update(&v.to_le_bytes());
    }
    let bytes: [u8; 16] = h.finalize().as_bytes()[..16]
        .try_into()
        .expect("a blake3 hash has 32 bytes");
    Uuid::from_bytes(bytes)
}

/// An image to cut crops from: decoded, or its tile pyramid when it is big.
fn open_for_crops(path: &Path) -> Option<RegionSource> {
    let settings = imaging::tiles::TileSettings::default();
    RegionSource::open(path, None, &settings)
        .map_err(|e| tracing::debug!("no crop: {e}"))
        .ok()
}

/// The box's pixels with a little context around it (an eighth of its size each side), at
/// most [`theme::CROP_SIZE`] on its longer side. A big (tiled) image is read as a region, never
/// decoded whole.
fn crop_from(source: &RegionSource, bbox: BBox) -> Option<ColorImage> {
    let (width, height) = source.size();
    let pad_x = bbox.w / 8.0;
    let pad_y = bbox.h / 8.0;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let clamp = |v: f64, max: u32| (v.max(0.0) as u32).min(max);
    let x0 = clamp((bbox.x - pad_x).floor(), width.saturating_sub(1));
    let y0 = clamp((bbox.y - pad_y).floor(), height.saturating_sub(1));
    let x1 = clamp((bbox.x + bbox.w + pad_x).ceil(), width).max(x0 + 1);
    let y1 = clamp((bbox.y + bbox.h + pad_y).ceil(), height).max(y0 + 1);
    let region = source
        .region(x0, y0, x1 - x0, y1 - y0)
        .map_err(|e| tracing::debug!("no crop: {e}"))
        .ok()?;
    let small = region.thumbnail(theme::CROP_SIZE, theme::CROP_SIZE);
    Some(to_color_image(small))
}

/// RGBA pixels for a texture; 16-bit gray is stretched over its robust range.
fn to_color_image(small: DynamicImage) -> ColorImage {
    let rgba = match small {
        DynamicImage::ImageLuma16(g) => {
            let (w, h) = g.dimensions();
            // The same robust range as the canvas's automatic window, so a few hot pixels do
            // not turn the thumbnail black.
            let stats = super::loader::gray_stats(g.as_raw());
            let (lo, hi) = (stats.low, stats.high);
            let span = f32::from(hi.saturating_sub(lo).max(1));
            let stretched = image::GrayImage::from_fn(w, h, |x, y| {
                let v = f32::from(g.get_pixel(x, y).0[0].saturating_sub(lo)) / span * 255.0;
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                image::Luma([v.round().clamp(0.0, 255.0) as u8])
            });
            DynamicImage::ImageLuma8(stretched).into_rgba8()
        }
        other => other.into_rgba8(),
    };
    let size = [rgba.width() as usize, rgba.height() as usize];
    ColorImage::from_rgba_unmultiplied(size, rgba.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crop_holds_the_box_with_context_clamped_to_the_image() {
        let img = DynamicImage::ImageRgb8(image::RgbImage::new(400, 300));
        let source = RegionSource::Decoded(img);
        // 80 x 40 with an eighth each side: 100 x 50, as wide as tall twice.
        let c = crop_from(&source, BBox::new(100.0, 100.0, 80.0, 40.0)).expect("a crop");
        assert_eq!(c.size[0], 2 * c.size[1], "{:?}", c.size);
        assert!(c.size[0] <= theme::CROP_SIZE as usize);
        // At the corner the context is cut off by the image's edge (16 + 2 a side, not 20).
        let c = crop_from(&source, BBox::new(0.0, 0.0, 16.0, 32.0)).expect("a crop");
        assert_eq!(c.size[1] * 18, c.size[0] * 36, "{:?}", c.size);
        // A box past the edge still gives a pixel rather than nothing.
        assert!(crop_from(&source, BBox::new(420.0, 320.0, 5.0, 5.0)).is_some());
    }

    #[test]
    fn a_moved_box_is_another_crop() {
        let id = Uuid::from_u128(7);
        let a = crop_key(id, &BBox::new(1.0, 2.0, 3.0, 4.0));
        assert_eq!(a, crop_key(id, &BBox::new(1.0, 2.0, 3.0, 4.0)));
        assert_ne!(a, crop_key(id, &BBox::new(1.5, 2.0, 3.0, 4.0)));
    }
}
