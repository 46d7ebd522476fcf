//! Decoding images for the canvas on background threads: the current image first, then its
//! neighbours (prefetch), each decoded, given a mip chain and uploaded to the GPU off the UI
//! thread, so showing the next image is only a swap of handles.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::workers::{self, WorkerDeath};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use eframe::egui;
use image::DynamicImage;
use parking_lot::{Condvar, Mutex};
use uuid::Uuid;

use super::gpu::{GpuContext, GpuImage, Level, PixelKind, Pixels, too_large_message};
use super::tiles::TileCache;
use crate::imaging;
use crate::imaging::tiles::{TileSettings, TiledImage};

/// Images kept decoded beyond the ones wanted right now (recently shown).
const KEEP_RECENT: usize = 4;
/// Mip levels stop once the longest side is at most this.
const SMALLEST_MIP: u32 = 16;

/// What to decode.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub id: Uuid,
    pub path: PathBuf,
    /// Size known from the store, to refuse images the GPU cannot hold before decoding them.
    pub width: u32,
    pub height: u32,
}

/// The spread of values of a 16-bit image, for automatic window/level.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GrayStats {
    pub min: u16,
    pub max: u16,
    /// 0.5th and 99.5th percentiles.
    pub low: u16,
    pub high: u16,
    /// For DICOM: stored values to modality values, and the file's own window.
    pub values: Option<ValueMapping>,
}

/// How a 16-bit image's stored values relate to what they measure (DICOM modality values, such
/// as Hounsfield units), so windows are shown in those units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ValueMapping {
    pub offset: f64,
    pub scale: f64,
    pub inverted: bool,
    /// "HU" for CT, empty when unknown.
    pub unit: &'static str,
    /// The file's first window, in stored units (low, high).
    pub file_window: Option<(f32, f32)>,
    /// What that window is: "from the file", or a standard CT window's name.
    pub window_label: &'static str,
}

impl ValueMapping {
    fn from_mapping(m: &imaging::GrayMapping) -> Self {
        #[allow(clippy::cast_possible_truncation)]
        // The file's own first window, else (CT) the standard soft-tissue window.
        let first = m.windows.iter().find(|w| w.from_file).or_else(|| {
            m.windows
                .iter()
                .find(|w| w.name == imaging::dicom::CT_DEFAULT_WINDOW)
        });
        let file_window = first.map(|w| {
            let (lo, hi) = m.stored_window(w);
            (lo as f32, hi as f32)
        });
        let window_label = m
            .windows
            .first()
            .filter(|w| !w.from_file)
            .and_then(|_| {
                imaging::dicom::CT_WINDOWS
                    .iter()
                    .find(|(name, ..)| *name == imaging::dicom::CT_DEFAULT_WINDOW)
                    .map(|(name, ..)| *name)
            })
            .unwrap_or("from the file");
        Self {
            window_label,
            offset: m.offset,
            scale: m.scale,
            inverted: m.inverted,
            unit: m.unit,
            file_window,
        }
    }

    /// The stored value of a measured value (not clamped).
    pub fn stored(&self, value: f64) -> f32 {
        let v = (value - self.offset) / self.scale;
        let v = if self.inverted {
            f64::from(u16::MAX) - v
        } else {
            v
        };
        #[allow(clippy::cast_possible_truncation)]
        let v = v as f32;
        v
    }

    /// The measured value of a stored value.
    pub fn value(&self, stored: f32) -> f64 {
        let v = if self.inverted {
            f64::from(u16::MAX) - f64::from(stored)
        } else {
            f64::from(stored)
        };
        self.offset + v * self.scale
    }
}

/// A decoded image, on the GPU when there is one.
pub struct LoadedImage {
    pub width: u32,
    pub height: u32,
    pub kind: PixelKind,
    pub gpu: Option<Arc<GpuImage>>,
    pub gray_stats: Option<GrayStats>,
    /// What a reader needs beyond the pixels on the GPU (16-bit images only): the values
    /// under the cursor, the windows to offer, the series and the pixel spacing.
    pub reading: Option<Arc<Reading>>,
    /// Decode plus upload time.
    pub load_ms: f32,
    /// Images too big for one texture are read as tiles of a pyramid (see
    /// [`super::tiles::TileCache`]); `gpu` is then `None`.
    pub tiled: Option<Arc<TiledImage>>,
}

/// A 16-bit image as a reader works with it.
#[derive(Debug, Default)]
pub struct Reading {
    /// DICOM Modality ("CT", "MR"…); empty for other files.
    pub modality: String,
    /// DICOM SeriesInstanceUID.
    pub series: Option<String>,
    /// Millimetres per pixel (rows, columns), when the file gives it.
    pub pixel_spacing: Option<(f64, f64)>,
    /// Windows the file names, then the standard ones for its modality: (name, low, high) in
    /// stored units.
    pub windows: Vec<(String, f32, f32)>,
    /// Level 0, row by row (kept for the value under the cursor; the GPU has its own copy).
    pub pixels: Vec<u16>,
    pub width: u32,
}

impl Reading {
    fn new(mapping: Option<&imaging::GrayMapping>, pixels: Vec<u16>, width: u32) -> Self {
        let Some(m) = mapping else {
            return Self {
                pixels,
                width,
                ..Self::default()
            };
        };
        #[allow(clippy::cast_possible_truncation)]
        let windows = m
            .windows
            .iter()
            .map(|w| {
                let (lo, hi) = m.stored_window(w);
                (w.name.clone(), lo as f32, hi as f32)
            })
            .collect();
        Self {
            modality: m.modality.clone(),
            series: m.series.clone(),
            pixel_spacing: m.pixel_spacing,
            windows,
            pixels,
            width,
        }
    }

    /// The stored value at an image pixel, if it is inside the image.
    pub fn stored_at(&self, x: f32, y: f32) -> Option<u16> {
        if x < 0.0 || y < 0.0 {
            return None;
        }
        // Floor of a non-negative coordinate.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let (x, y) = (x as usize, y as usize);
        let w = self.width as usize;
        if x >= w {
            return None;
        }
        self.pixels.get(y * w + x).copied()
    }
}

/// The state of one image in the cache.
pub enum Slot {
    Loading,
    Ready(Arc<LoadedImage>),
    Failed(String),
}

struct Queue {
    jobs: VecDeque<Job>,
    stop: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Which images are read as tiles.
    tiles: Mutex<TileSettings>,
}

/// The UI's handle: asks for images, polls results, keeps a small cache.
pub struct Loader {
    shared: Arc<Shared>,
    results: Receiver<(Uuid, Result<LoadedImage, String>)>,
    slots: HashMap<Uuid, Slot>,
    recent: VecDeque<Uuid>,
    keep_recent: usize,
    threads: Vec<JoinHandle<Result<(), WorkerDeath>>>,
    /// Tiles of the images read as tiles.
    pub tiles: TileCache,
}

impl Loader {
    /// Starts `threads` decoding threads. Without a GPU (headless tests) images are decoded
    /// and checked but not uploaded.
    pub fn new(gpu: Option<GpuContext>, ctx: &egui::Context, threads: usize) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                stop: false,
            }),
            wake: Condvar::new(),
            tiles: Mutex::new(TileSettings {
                max_side: gpu.as_ref().map_or(16_384, |g| g.max_side),
                ..TileSettings::default()
            }),
        });
        let tiles = TileCache::new(gpu.clone(), ctx, 2);
        let (tx, results) = crossbeam_channel::unbounded();
        let threads = (0..threads.max(1))
            .filter_map(|i| {
                let shared = Arc::clone(&shared);
                let tx = tx.clone();
                let gpu = gpu.clone();
                let ctx = ctx.clone();
                let thread_ctx = ctx.clone();
                workers::spawn(&ctx, format!("loupe-decode-{i}"), move || {
                    worker(&shared, &tx, gpu.as_ref(), &thread_ctx);
                })
                .map_err(|e| tracing::error!("cannot start a decoding thread: {e}"))
                .ok()
            })
            .collect();
        Self {
            shared,
            results,
            slots: HashMap::new(),
            recent: VecDeque::new(),
            keep_recent: KEEP_RECENT,
            threads,
            tiles,
        }
    }

    /// Changes when images are read as tiles: images already decoded are forgotten, so the
    /// next ask reads them as the new settings say.
    pub fn set_tile_settings(&mut self, settings: TileSettings) {
        *self.shared.tiles.lock() = settings;
        self.slots.retain(|_, slot| matches!(slot, Slot::Loading));
        self.recent.clear();
    }

    /// How many recently shown images stay decoded besides the wanted ones.
    pub fn set_keep_recent(&mut self, n: usize) {
        self.keep_recent = n;
    }

    /// Asks for these images, most important first (the current image, then neighbours).
    /// Work queued for images no longer wanted is dropped.
    pub fn want(&mut self, jobs: &[Job]) {
        for job in jobs.iter().take(1) {
            self.recent.retain(|id| *id != job.id);
            self.recent.push_front(job.id);
        }
        let keep: Vec<Uuid> = jobs
            .iter()
            .map(|j| j.id)
            .chain(self.recent.iter().take(self.keep_recent).copied())
            .collect();
        self.recent.truncate(self.keep_recent.max(1));
        let mut queue = self.shared.queue.lock();
        // Jobs still queued never started: forget them, so they can be asked for again.
        for dropped in queue.jobs.drain(..) {
            self.slots.remove(&dropped.id);
        }
        // Loading slots left are in flight on a thread; their result will arrive.
        self.slots
            .retain(|id, slot| keep.contains(id) || matches!(slot, Slot::Loading));
        for job in jobs {
            if self.slots.contains_key(&job.id) {
                continue;
            }
            self.slots.insert(job.id, Slot::Loading);
            queue.jobs.push_back(job.clone());
        }
        drop(queue);
        self.shared.wake.notify_all();
    }

    /// Takes finished images; true when something arrived.
    pub fn poll(&mut self) -> bool {
        let mut any = false;
        while let Ok((id, result)) = self.results.try_recv() {
            self.store(id, result);
            any = true;
        }
        any |= self.tiles.poll();
        any
    }

    fn store(&mut self, id: Uuid, result: Result<LoadedImage, String>) {
        let slot = match result {
            Ok(img) => Slot::Ready(Arc::new(img)),
            Err(e) => Slot::Failed(e),
        };
        self.slots.insert(id, slot);
    }

    /// The state of an image, if it was asked for.
    pub fn slot(&self, id: Uuid) -> Option<&Slot> {
        self.slots.get(&id)
    }

    /// Blocks until the image is decoded or failed, or the timeout passes. For tests and
    /// benchmarks; the UI never waits.
    pub fn wait_for(&mut self, id: Uuid, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !matches!(self.slots.get(&id), Some(Slot::Loading)) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.results.recv_timeout(left) {
                Ok((got, result)) => self.store(got, result),
                Err(_) => return false,
            }
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.shared.queue.lock().stop = true;
        self.shared.wake.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn worker(
    shared: &Shared,
    results: &Sender<(Uuid, Result<LoadedImage, String>)>,
    gpu: Option<&GpuContext>,
    ctx: &egui::Context,
) {
    loop {
        let job = {
            let mut queue = shared.queue.lock();
            loop {
                if queue.stop {
                    return;
                }
                if let Some(job) = queue.jobs.pop_front() {
                    break job;
                }
                shared.wake.wait(&mut queue);
            }
        };
        // A panic here (a decoder bug, a driver error) must not leave the image "loading"
        // forever: it becomes an error message for that image.
        let settings = shared.tiles.lock().clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            load_with(&job, gpu, &settings)
        }))
        .unwrap_or_else(|_| {
            Err(format!(
                "{}: could not be decoded or uploaded",
                job.path.display()
            ))
        });
        if results.send((job.id, result)).is_err() {
            return;
        }
        ctx.request_repaint();
    }
}

/// Decodes one image, builds its mips and uploads it; images that `tiles` says are big are
/// read as tiles instead: only the pyramid is opened
/// here (or, for an image that is not a tiled TIFF, built once in the cache); tiles are read
/// as the canvas asks for them.
pub fn load_with(
    job: &Job,
    gpu: Option<&GpuContext>,
    tiles: &TileSettings,
) -> Result<LoadedImage, String> {
    let started = Instant::now();
    if tiles.is_tiled(job.width, job.height) && !imaging::dicom::is_dicom(&job.path) {
        let tiled = imaging::tiles::open(&job.path, tiles).map_err(|e| e.to_string())?;
        return Ok(LoadedImage {
            width: tiled.width,
            height: tiled.height,
            kind: PixelKind::Rgba8,
            gpu: None,
            gray_stats: None,
            reading: None,
            load_ms: started.elapsed().as_secs_f32() * 1000.0,
            tiled: Some(Arc::new(tiled)),
        });
    }
    if let Some(gpu) = gpu
        && (job.width > gpu.max_side || job.height > gpu.max_side)
    {
        return Err(too_large_message(job.width, job.height, gpu.max_side));
    }
    let (img, mapping) = imaging::decode_with_mapping(&job.path).map_err(|e| e.to_string())?;
    let (pixels, mut gray_stats) = prepare_pixels(img);
    if let (Some(stats), Some(m)) = (gray_stats.as_mut(), mapping.as_ref()) {
        stats.values = Some(ValueMapping::from_mapping(m));
    }
    let (width, height) = pixels.size();
    let kind = match pixels {
        Pixels::Rgba8(_) => PixelKind::Rgba8,
        Pixels::Gray16(_) => PixelKind::Gray16,
    };
    let gpu = match gpu {
        Some(g) => Some(Arc::new(g.upload(&pixels)?)),
        None => None,
    };
    // The CPU copy of level 0 is kept for reading values; the mips go.
    let reading = match pixels {
        Pixels::Gray16(mut levels) if !levels.is_empty() => {
            let level0 = levels.swap_remove(0);
            Some(Arc::new(Reading::new(
                mapping.as_ref(),
                level0.data,
                level0.width,
            )))
        }
        _ => None,
    };
    Ok(LoadedImage {
        width,
        height,
        kind,
        gpu,
        gray_stats,
        reading,
        load_ms: started.elapsed().as_secs_f32() * 1000.0,
        tiled: None,
    })
}

/// 16-bit grayscale stays 16-bit; everything else becomes 8-bit RGBA. Builds the mip chain.
pub fn prepare_pixels(img: DynamicImage) -> (Pixels, Option<GrayStats>) {
    match img {
        DynamicImage::ImageLuma16(buf) => {
            let (w, h) = buf.dimensions();
            gray16(w, h, buf.into_raw())
        }
        DynamicImage::ImageLumaA16(buf) => {
            let (w, h) = buf.dimensions();
            let luma = buf.into_raw().chunks_exact(2).map(|p| p[0]).collect();
            gray16(w, h, luma)
        }
        other => {
            let rgba = other.into_rgba8();
            let (w, h) = rgba.dimensions();
            let mut levels = vec![Level {
                width: w,
                height: h,
                data: rgba.into_raw(),
            }];
            while let Some(next) = levels.last().and_then(|l| half(l, 4)) {
                levels.push(next);
            }
            (Pixels::Rgba8(levels), None)
        }
    }
}

fn gray16(w: u32, h: u32, data: Vec<u16>) -> (Pixels, Option<GrayStats>) {
    let stats = gray_stats(&data);
    let mut levels = vec![Level {
        width: w,
        height: h,
        data,
    }];
    while let Some(next) = levels.last().and_then(|l| half(l, 1)) {
        levels.push(next);
    }
    (Pixels::Gray16(levels), Some(stats))
}

/// Sample types that can be averaged four at a time.
trait Sample: Copy {
    fn to_u32(self) -> u32;
    fn from_u32(v: u32) -> Self;
}

impl Sample for u8 {
    fn to_u32(self) -> u32 {
        u32::from(self)
    }
    fn from_u32(v: u32) -> Self {
        u8::try_from(v).unwrap_or(u8::MAX)
    }
}

impl Sample for u16 {
    fn to_u32(self) -> u32 {
        u32::from(self)
    }
    fn from_u32(v: u32) -> Self {
        u16::try_from(v).unwrap_or(u16::MAX)
    }
}

/// The next mip level (2×2 box filter, edges repeated for odd sizes); `None` when small enough.
fn half<T: Sample>(level: &Level<T>, channels: usize) -> Option<Level<T>> {
    if level.width.max(level.height) <= SMALLEST_MIP {
        return None;
    }
    let (w, h) = (level.width as usize, level.height as usize);
    // GPU mip sizes round down (`max(1, size >> level)`), so an odd last row or column is
    // left out of the next level; at that scale it cannot be seen.
    let (nw, nh) = ((w / 2).max(1), (h / 2).max(1));
    let mut data = Vec::with_capacity(nw * nh * channels);
    for y in 0..nh {
        let y0 = (2 * y).min(h - 1);
        let y1 = (2 * y + 1).min(h - 1);
        let (row0, row1) = (
            &level.data[y0 * w * channels..],
            &level.data[y1 * w * channels..],
        );
        for x in 0..nw {
            let x0 = (2 * x).min(w - 1) * channels;
            let x1 = (2 * x + 1).min(w - 1) * channels;
            for c in 0..channels {
                let sum = row0[x0 + c].to_u32()
                    + row0[x1 + c].to_u32()
                    + row1[x0 + c].to_u32()
                    + row1[x1 + c].to_u32();
                data.push(T::from_u32((sum + 2) / 4));
            }
        }
    }
    Some(Level {
        width: u32::try_from(nw).unwrap_or(1),
        height: u32::try_from(nh).unwrap_or(1),
        data,
    })
}

/// Minimum, maximum and robust range (0.5–99.5th percentile) from a full histogram.
pub fn gray_stats(data: &[u16]) -> GrayStats {
    let mut hist = vec![0u32; 65536];
    for v in data {
        hist[usize::from(*v)] += 1;
    }
    let n = data.len() as u64;
    let value_at = |fraction: f64| -> u16 {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let target = ((n as f64) * fraction) as u64;
        let mut seen = 0u64;
        for (v, count) in (0u16..=u16::MAX).zip(&hist) {
            seen += u64::from(*count);
            if seen > target {
                return v;
            }
        }
        u16::MAX
    };
    let min = (0u16..=u16::MAX)
        .zip(&hist)
        .find(|(_, c)| **c > 0)
        .map_or(0, |(v, _)| v);
    let max = (0u16..=u16::MAX)
        .zip(&hist)
        .rev()
        .find(|(_, c)| **c > 0)
        .map_or(0, |(v, _)| v);
    GrayStats {
        values: None,
        min,
        max,
        low: value_at(0.005),
        high: value_at(0.995).max(value_at(0.005).saturating_add(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mips_halve_down_to_a_small_level() {
        let level = Level {
            width: 100,
            height: 37,
            data: vec![200u8; 100 * 37 * 4],
        };
        let mut levels = vec![level];
        while let Some(next) = levels.last().and_then(|l| half(l, 4)) {
            levels.push(next);
        }
        let sizes: Vec<(u32, u32)> = levels.iter().map(|l| (l.width, l.height)).collect();
        assert_eq!(sizes, vec![(100, 37), (50, 18), (25, 9), (12, 4)]);
        assert!(levels.iter().all(|l| l.data.iter().all(|v| *v == 200)));
    }

    #[test]
    fn sixteen_bit_grayscale_keeps_its_values() {
        let img = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(64, 64, |x, y| {
            image::Luma([u16::try_from(x * 64 + y).unwrap_or(0) * 10])
        });
        let (pixels, stats) = prepare_pixels(DynamicImage::ImageLuma16(img));
        let Pixels::Gray16(levels) = pixels else {
            panic!("expected 16-bit pixels");
        };
        assert_eq!((levels[0].data[1], levels[0].data[64]), (640, 10));
        let stats = stats.expect("stats");
        assert_eq!((stats.min, stats.max), (0, 40950));
        assert!(stats.low < 500 && stats.high > 40000);
    }
}
