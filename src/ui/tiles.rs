//! Tiles of images too big for one texture: read from the image's pyramid on background
//! threads, uploaded to the GPU there, and kept in a bounded least-recently-used cache. The
//! canvas asks each frame for the tiles it shows (most important first) and draws what is
//! resident; nothing here ever blocks the UI thread.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use eframe::egui;
use image::{DynamicImage, RgbaImage};
use parking_lot::{Condvar, Mutex};
use uuid::Uuid;

use super::gpu::{GpuContext, GpuImage};
use super::workers::{self, WorkerDeath};
use crate::imaging::tiles::TiledImage;

/// Tiles kept resident (GPU memory: about 350 KiB each for 256-pixel tiles with mips, so
/// about 180 MiB at most).
const CAPACITY: usize = 512;

/// One tile of one level of one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileKey {
    pub image: Uuid,
    pub level: u8,
    pub tx: u32,
    pub ty: u32,
}

/// A tile ready to draw (`None` without a GPU, in headless tests).
pub type ResidentTile = Option<Arc<GpuImage>>;

type Job = (TileKey, Arc<TiledImage>);

struct Queue {
    jobs: VecDeque<Job>,
    stop: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// The cache and its worker threads.
pub struct TileCache {
    shared: Arc<Shared>,
    results: Receiver<(TileKey, Result<ResidentTile, String>)>,
    resident: HashMap<TileKey, (ResidentTile, u64)>,
    in_flight: HashSet<TileKey>,
    failed: HashSet<TileKey>,
    frame: u64,
    capacity: usize,
    threads: Vec<JoinHandle<Result<(), WorkerDeath>>>,
}

impl TileCache {
    /// Starts `threads` tile threads (`loupe-tiles-N`).
    pub fn new(gpu: Option<GpuContext>, ctx: &egui::Context, threads: usize) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let (tx, results) = crossbeam_channel::unbounded();
        let threads = (0..threads.max(1))
            .filter_map(|i| {
                let shared = Arc::clone(&shared);
                let tx = tx.clone();
                let gpu = gpu.clone();
                let thread_ctx = ctx.clone();
                workers::spawn(ctx, format!("loupe-tiles-{i}"), move || {
                    worker(&shared, &tx, gpu.as_ref(), &thread_ctx);
                })
                .map_err(|e| tracing::error!("cannot start a tile thread: {e}"))
                .ok()
            })
            .collect();
        Self {
            shared,
            results,
            resident: HashMap::new(),
            in_flight: HashSet::new(),
            failed: HashSet::new(),
            frame: 0,
            capacity: CAPACITY,
            threads,
        }
    }

    /// Takes finished tiles; true when something arrived.
    pub fn poll(&mut self) -> bool {
        let mut any = false;
        while let Ok((key, result)) = self.results.try_recv() {
            self.in_flight.remove(&key);
            match result {
                Ok(tile) => {
                    self.resident.insert(key, (tile, self.frame));
                }
                Err(e) => {
                    tracing::warn!("tile {key:?}: {e}");
                    self.failed.insert(key);
                }
            }
            any = true;
        }
        any
    }

    /// The tile, if it is resident.
    pub fn tile(&self, key: &TileKey) -> Option<&ResidentTile> {
        self.resident.get(key).map(|(t, _)| t)
    }

    /// How many tiles are resident.
    pub fn resident_count(&self) -> usize {
        self.resident.len()
    }

    /// True while tiles asked for are still being read.
    pub fn is_busy(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// The tiles the canvas needs now, most important first: resident ones are kept fresh,
    /// missing ones queued (work queued for tiles no longer wanted is dropped), and the least
    /// recently used beyond the capacity evicted.
    pub fn want(&mut self, image: &Arc<TiledImage>, keys: &[TileKey]) {
        self.frame += 1;
        let mut queue = self.shared.queue.lock();
        for (dropped, _) in queue.jobs.drain(..) {
            self.in_flight.remove(&dropped);
        }
        for key in keys {
            if let Some((_, used)) = self.resident.get_mut(key) {
                *used = self.frame;
            } else if !self.in_flight.contains(key) && !self.failed.contains(key) {
                self.in_flight.insert(*key);
                queue.jobs.push_back((*key, Arc::clone(image)));
            }
        }
        drop(queue);
        self.shared.wake.notify_all();
        if self.resident.len() > self.capacity {
            let frame = self.frame;
            let mut ages: Vec<(u64, TileKey)> = self
                .resident
                .iter()
                .filter(|(_, (_, used))| *used != frame)
                .map(|(k, (_, used))| (*used, *k))
                .collect();
            ages.sort_unstable();
            let excess = self.resident.len() - self.capacity;
            for (_, key) in ages.into_iter().take(excess) {
                self.resident.remove(&key);
            }
        }
    }

    /// Forgets every tile of other images than `keep` (the image on the canvas changed).
    pub fn retain_image(&mut self, keep: Option<Uuid>) {
        self.resident.retain(|k, _| Some(k.image) == keep);
        self.failed.retain(|k| Some(k.image) == keep);
    }
}

impl Drop for TileCache {
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
    results: &Sender<(TileKey, Result<ResidentTile, String>)>,
    gpu: Option<&GpuContext>,
    ctx: &egui::Context,
) {
    loop {
        let (key, image) = {
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
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load_tile(&image, key, gpu)))
                .unwrap_or_else(|_| Err("the tile could not be read or uploaded".to_owned()));
        if results.send((key, result)).is_err() {
            return;
        }
        ctx.request_repaint();
    }
}

/// Reads one tile, gives it a mip chain and uploads it.
fn load_tile(
    image: &TiledImage,
    key: TileKey,
    gpu: Option<&GpuContext>,
) -> Result<ResidentTile, String> {
    let tile = image
        .read_tile(usize::from(key.level), key.tx, key.ty)
        .map_err(|e| e.to_string())?;
    let rgba = RgbaImage::from_raw(tile.width, tile.height, tile.rgba)
        .ok_or_else(|| "tile pixels do not fill the tile".to_owned())?;
    let (pixels, _) = super::loader::prepare_pixels(DynamicImage::ImageRgba8(rgba));
    match gpu {
        Some(g) => g.upload(&pixels).map(|img| Some(Arc::new(img))),
        None => Ok(None),
    }
}

/// Which tiles to show, and in which order to draw them, for a view of the image.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TilePlan {
    /// Tiles to ask for, most important first.
    pub wanted: Vec<TileKey>,
    /// Tiles to draw, coarse first (finer ones cover them).
    pub draw: Vec<TileKey>,
}

/// Plans the tiles for the part of the image in view (`visible`: left, top, right, bottom in
/// level-0 pixels) at `zoom` screen pixels per image pixel. The level the zoom needs is asked
/// for, centre first, after the coarsest level (which is small and always shown while the rest
/// arrive); where a tile of that level is missing, the finest resident level under it is
/// drawn instead.
pub fn plan_tiles(
    image_id: Uuid,
    image: &TiledImage,
    visible: [f64; 4],
    zoom: f64,
    is_resident: impl Fn(&TileKey) -> bool,
) -> TilePlan {
    let levels = image.levels();
    let Some(coarsest) = levels.len().checked_sub(1) else {
        return TilePlan::default();
    };
    let target = image.level_for_zoom(zoom);
    let tiles_at = |level: usize| -> Vec<TileKey> {
        let l = levels[level];
        let [x0, y0, x1, y1] = visible;
        let to_tile = |v: f64, scale: f64, size: u32, count: u32| -> u32 {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let t = (v / scale / f64::from(size)).floor().max(0.0) as u32;
            t.min(count.saturating_sub(1))
        };
        let (tx0, tx1) = (
            to_tile(x0, l.scale_x, l.tile_width, l.tiles_across()),
            to_tile(x1, l.scale_x, l.tile_width, l.tiles_across()),
        );
        let (ty0, ty1) = (
            to_tile(y0, l.scale_y, l.tile_height, l.tiles_down()),
            to_tile(y1, l.scale_y, l.tile_height, l.tiles_down()),
        );
        let level = u8::try_from(level).unwrap_or(u8::MAX);
        (ty0..=ty1)
            .flat_map(|ty| (tx0..=tx1).map(move |tx| (tx, ty)))
            .map(|(tx, ty)| TileKey {
                image: image_id,
                level,
                tx,
                ty,
            })
            .collect()
    };
    let mut wanted = tiles_at(coarsest);
    let mut fine = tiles_at(target);
    // Centre first: that is where the eye is.
    let centre = (
        (visible[0] + visible[2]) / 2.0,
        (visible[1] + visible[3]) / 2.0,
    );
    let l = levels[target];
    fine.sort_by(|a, b| {
        let d = |k: &TileKey| {
            let cx = (f64::from(k.tx) + 0.5) * f64::from(l.tile_width) * l.scale_x;
            let cy = (f64::from(k.ty) + 0.5) * f64::from(l.tile_height) * l.scale_y;
            (cx - centre.0).powi(2) + (cy - centre.1).powi(2)
        };
        d(a).total_cmp(&d(b))
    });
    if target != coarsest {
        wanted.extend(fine.iter().copied());
    }
    // Draw: the coarsest level, then any resident level between it and the target where the
    // target is not complete, then the target.
    let complete = fine.iter().all(&is_resident);
    let mut draw: Vec<TileKey> = Vec::new();
    if !complete {
        for level in (target + 1..=coarsest).rev() {
            if level == coarsest || level <= target + 3 {
                draw.extend(tiles_at(level).into_iter().filter(|k| is_resident(k)));
            }
        }
    }
    draw.extend(fine.into_iter().filter(|k| is_resident(k)));
    TilePlan { wanted, draw }
}

/// A tile's rectangle in level-0 pixels: left, top, right, bottom.
pub fn tile_rect(image: &TiledImage, key: &TileKey) -> Option<[f64; 4]> {
    let l = image.levels().get(usize::from(key.level))?;
    let x0 = f64::from(key.tx * l.tile_width);
    let y0 = f64::from(key.ty * l.tile_height);
    let x1 = f64::from(((key.tx + 1) * l.tile_width).min(l.width));
    let y1 = f64::from(((key.ty + 1) * l.tile_height).min(l.height));
    // The last column and row of a level can stand for a little more than the image (levels
    // round up); clip to level 0.
    Some([
        x0 * l.scale_x,
        y0 * l.scale_y,
        (x1 * l.scale_x).min(f64::from(image.width)),
        (y1 * l.scale_y).min(f64::from(image.height)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pyramid() -> (tempfile::TempDir, TiledImage) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.tif");
        let img = image::RgbImage::from_fn(2000, 1500, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 0])
        });
        crate::imaging::tiles::write_pyramid(&img, &path, 256).expect("write");
        let tiled = TiledImage::open_tiff(&path).expect("open");
        (dir, tiled)
    }

    #[test]
    fn the_plan_asks_for_the_coarsest_level_then_the_zooms_level_centre_first() {
        let (_dir, tiled) = pyramid();
        let id = Uuid::nil();
        // Levels: 2000x1500, 1000x750, 500x375, 250x188.
        assert_eq!(tiled.levels().len(), 4);
        // Full resolution, a 600x400 view in the middle.
        let plan = plan_tiles(id, &tiled, [700.0, 500.0, 1300.0, 900.0], 1.0, |_| false);
        assert_eq!(plan.wanted[0].level, 3);
        assert!(plan.wanted[1..].iter().all(|k| k.level == 0));
        // Columns 2..=5, rows 1..=3.
        assert_eq!(plan.wanted.len(), 1 + 4 * 3);
        let first = plan.wanted[1];
        assert!((first.tx, first.ty) == (3, 2) || (first.tx, first.ty) == (4, 2));
        assert!(plan.draw.is_empty());
        // With only the coarsest resident, it is drawn under the missing tiles.
        let plan = plan_tiles(id, &tiled, [700.0, 500.0, 1300.0, 900.0], 1.0, |k| {
            k.level == 3
        });
        assert_eq!(plan.draw.len(), 1);
        // With the fine tiles resident, only they are drawn.
        let plan = plan_tiles(id, &tiled, [700.0, 500.0, 1300.0, 900.0], 1.0, |k| {
            k.level == 0
        });
        assert!(plan.draw.iter().all(|k| k.level == 0) && plan.draw.len() == 12);
        // Zoomed out to a quarter: level 2, whose whole image is 2x2 tiles.
        let plan = plan_tiles(id, &tiled, [0.0, 0.0, 2000.0, 1500.0], 0.25, |_| false);
        assert!(plan.wanted[1..].iter().all(|k| k.level == 2));
        assert_eq!(plan.wanted.len(), 1 + 4);
    }

    #[test]
    fn tile_rects_are_in_full_resolution_pixels() {
        let (_dir, tiled) = pyramid();
        let key = |level, tx, ty| TileKey {
            image: Uuid::nil(),
            level,
            tx,
            ty,
        };
        assert_eq!(
            tile_rect(&tiled, &key(0, 1, 0)),
            Some([256.0, 0.0, 512.0, 256.0])
        );
        assert_eq!(
            tile_rect(&tiled, &key(1, 3, 2)),
            Some([1536.0, 1024.0, 2000.0, 1500.0])
        );
        assert_eq!(
            tile_rect(&tiled, &key(3, 0, 0)),
            Some([0.0, 0.0, 2000.0, 1500.0])
        );
    }
}
