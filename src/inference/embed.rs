//! Embeddings of a project's images and boxes with an image encoder (a model whose descriptor
//! says `decoder = "embedding"`), shared by `loupe embed` and the app: the set (found again by
//! model and settings hash, so a second call resumes), what is left to do, and the work.
//!
//! Each image is read once (tiled images through their pyramid, like pre-label runs); its
//! whole-image vector and, with `boxes`, one vector per box crop (labels and proposals) are
//! computed on a pool of threads that take turns on the model's sessions, and stored a chunk of
//! images at a time in one transaction each, so a cancelled or killed run keeps what it did. A
//! box moved since its crop was embedded is embedded again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use uuid::Uuid;

use super::run::{RunError, Selection};
use super::{Detector, InferenceError, panic_message};
use crate::imaging::tiles::{RegionSource, TileSettings};
use crate::model::BBox;
use crate::store::{EmbeddingKey, ImageFilter, NewEmbedding, Project};

/// Images stored per transaction.
const CHUNK: usize = 16;

/// What `loupe embed` (or the app) asks for.
#[derive(Clone, Debug)]
pub struct EmbedOptions {
    /// The set's name; `None`: the set this model and settings made before, else one named
    /// after the model file.
    pub name: Option<String>,
    /// Also embed every box's crop (labels and proposals).
    pub boxes: bool,
    pub selection: Selection,
    /// At most this many images (of those left to do).
    pub limit: Option<usize>,
    /// Threads reading and preparing images (0: rayon's default, one per core).
    pub threads: usize,
    pub cancel: Arc<AtomicBool>,
    pub tiles: TileSettings,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions {
            name: None,
            boxes: false,
            selection: Selection::Filter(ImageFilter::default()),
            limit: None,
            threads: 0,
            cancel: Arc::new(AtomicBool::new(false)),
            tiles: TileSettings::default(),
        }
    }
}

/// One image's work.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbedItem {
    pub image: Uuid,
    pub path: PathBuf,
    /// The whole image is not embedded yet.
    pub whole: bool,
    /// Boxes whose crop is not embedded yet (or moved since).
    pub boxes: Vec<(Uuid, BBox)>,
}

/// What [`plan_embed`] decided.
#[derive(Clone, Debug)]
pub struct EmbedPlan {
    pub set: String,
    /// True when the set existed: only what it lacks is done.
    pub resumed: bool,
    pub items: Vec<EmbedItem>,
    /// Selected images with nothing left to do.
    pub skipped: usize,
    /// Selected images whose file is missing.
    pub missing: usize,
}

impl EmbedPlan {
    /// Vectors to compute: images plus box crops.
    pub fn vectors(&self) -> usize {
        self.items
            .iter()
            .map(|i| usize::from(i.whole) + i.boxes.len())
            .sum()
    }
}

/// What [`execute_embed`] did.
#[derive(Clone, Debug, Default)]
pub struct EmbedSummary {
    pub images: usize,
    pub boxes: usize,
    /// Images that could not be read or embedded, with the reason.
    pub failed: Vec<(PathBuf, String)>,
    pub cancelled: bool,
    pub wall: Duration,
    /// Time inside the model, summed.
    pub inference: Duration,
}

/// The settings a set is identified by: the descriptor (input size, preprocessing, output)
/// and how crops are cut.
pub fn settings_of(detector: &Detector) -> (String, String) {
    let mut settings = detector.effective_descriptor().to_toml();
    settings.push_str("\n# loupe embed\ncrop = \"box\"\n");
    let hash = blake3::hash(settings.as_bytes()).to_hex().to_string();
    (settings, hash)
}

/// Finds or creates the set for this model and settings and lists what is left to do.
pub fn plan_embed(
    project: &mut Project,
    detector: &Detector,
    opts: &EmbedOptions,
) -> Result<EmbedPlan, RunError> {
    if !detector.is_encoder() {
        return Err(RunError::Inference(InferenceError::UnsupportedModel {
            model: detector.model_path().display().to_string(),
            message: format!(
                "it is a detector (decoder = \"{}\"), not an image encoder: describe the \
                 encoder with decoder = \"embedding\"",
                detector.descriptor().decoder.as_str()
            ),
        }));
    }
    let (settings, settings_hash) = settings_of(detector);
    let model_path = detector.model_path().display().to_string();
    let stem = detector.model_path().file_stem().map_or_else(
        || "embeddings".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    let existing = project.embedding_sets()?;
    let mine = existing
        .iter()
        .find(|s| s.model_hash == detector.model_hash() && s.settings_hash == settings_hash);
    let name = match (&opts.name, mine) {
        (Some(n), _) => n.clone(),
        (None, Some(s)) => s.name.clone(),
        (None, None) => {
            let mut candidate = stem.clone();
            let mut n = 2;
            while existing.iter().any(|s| s.name == candidate) {
                candidate = format!("{stem}-{n}");
                n += 1;
            }
            candidate
        }
    };
    let (set, created) = project.embedding_set(
        &name,
        &model_path,
        detector.model_hash(),
        &settings,
        &settings_hash,
    )?;
    if set.name != name {
        return Err(RunError::NameTaken { name });
    }
    let done = project.embedded(&set.name)?;
    let rows = opts.selection.rows(project)?;
    let mut plan = EmbedPlan {
        set: set.name,
        resumed: !created,
        items: Vec::new(),
        skipped: 0,
        missing: 0,
    };
    for row in rows {
        if row.missing {
            plan.missing += 1;
            continue;
        }
        let whole = !done.contains_key(&EmbeddingKey {
            image: row.id,
            ann: None,
        });
        let mut boxes = Vec::new();
        if opts.boxes {
            for a in project.annotations_for_image(row.id)? {
                let key = EmbeddingKey {
                    image: row.id,
                    ann: Some(a.id),
                };
                if done.get(&key).copied().flatten() != Some(a.value.bbox) {
                    boxes.push((a.id, a.value.bbox));
                }
            }
        }
        if whole || !boxes.is_empty() {
            plan.items.push(EmbedItem {
                image: row.id,
                path: project.root().join(&row.path),
                whole,
                boxes,
            });
        } else {
            plan.skipped += 1;
        }
    }
    if let Some(limit) = opts.limit {
        plan.items.truncate(limit);
    }
    Ok(plan)
}

/// One image's vectors, or why it failed.
type ItemResult = Result<(Vec<NewEmbedding>, Duration), String>;

/// Computes and stores the plan's vectors; `on_progress(images done, images)` after each
/// stored chunk. An image that cannot be read fails alone; a store error stops the run (what
/// was stored before stays).
pub fn execute_embed(
    project: &mut Project,
    detector: &Detector,
    plan: &EmbedPlan,
    opts: &EmbedOptions,
    mut on_progress: impl FnMut(usize, usize),
) -> Result<EmbedSummary, RunError> {
    let started = Instant::now();
    let mut summary = EmbedSummary::default();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .thread_name(|i| format!("loupe-embed-{i}"))
        .build()
        .map_err(|e| RunError::Thread(e.to_string()))?;
    let total = plan.items.len();
    let mut done = 0;
    for chunk in plan.items.chunks(CHUNK) {
        if opts.cancel.load(Ordering::Relaxed) {
            summary.cancelled = true;
            break;
        }
        let results: Vec<ItemResult> = pool.install(|| {
            chunk
                .par_iter()
                .map(|item| embed_item(detector, item, &opts.tiles, &opts.cancel))
                .collect()
        });
        let mut rows = Vec::new();
        for (item, result) in chunk.iter().zip(results) {
            match result {
                Ok((vectors, inference)) => {
                    summary.inference += inference;
                    for v in &vectors {
                        if v.key.ann.is_some() {
                            summary.boxes += 1;
                        } else {
                            summary.images += 1;
                        }
                    }
                    rows.extend(vectors);
                }
                Err(reason) => {
                    tracing::warn!(path = %item.path.display(), "cannot embed: {reason}");
                    summary.failed.push((item.path.clone(), reason));
                }
            }
        }
        project.store_embeddings(&plan.set, &rows)?;
        done += chunk.len();
        on_progress(done, total);
    }
    summary.wall = started.elapsed();
    Ok(summary)
}

/// Reads one image and embeds it and its boxes.
fn embed_item(
    detector: &Detector,
    item: &EmbedItem,
    tiles: &TileSettings,
    cancel: &AtomicBool,
) -> ItemResult {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        embed_item_inner(detector, item, tiles, cancel)
    }))
    .map_err(|panic| format!("panicked: {}", panic_message(&panic)))?
}

fn embed_item_inner(
    detector: &Detector,
    item: &EmbedItem,
    tiles: &TileSettings,
    cancel: &AtomicBool,
) -> ItemResult {
    let d = detector.descriptor();
    let source = RegionSource::open(&item.path, d.dicom_window.as_deref(), tiles)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut inference = Duration::ZERO;
    let mut run = |image: &image::DynamicImage| -> Result<Vec<f32>, String> {
        let prepared = detector.prepare(image).map_err(|e| e.to_string())?;
        let (vector, ms) = detector
            .embed_prepared(&prepared)
            .map_err(|e| e.to_string())?;
        inference += Duration::from_secs_f64(ms / 1000.0);
        Ok(vector)
    };
    if item.whole {
        let side = 2 * d.input_width.max(d.input_height);
        let (image, _, _) = source.whole(side).map_err(|e| e.to_string())?;
        out.push(NewEmbedding {
            key: EmbeddingKey {
                image: item.image,
                ann: None,
            },
            bbox: None,
            vector: run(&image)?,
        });
    }
    let (width, height) = source.size();
    for &(ann, bbox) in &item.boxes {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let Some((x, y, w, h)) = crop_rect(bbox, width, height) else {
            // A box outside the image has no pixels to embed; it is left out, not an error.
            continue;
        };
        let crop = source.region(x, y, w, h).map_err(|e| e.to_string())?;
        out.push(NewEmbedding {
            key: EmbeddingKey {
                image: item.image,
                ann: Some(ann),
            },
            bbox: Some(bbox),
            vector: run(&crop)?,
        });
    }
    Ok((out, inference))
}

/// The whole pixels a box covers, clipped to the image; `None` when nothing is left.
pub fn crop_rect(b: BBox, width: u32, height: u32) -> Option<(u32, u32, u32, u32)> {
    if !b.is_finite() {
        return None;
    }
    let clamp = |v: f64, max: u32| v.clamp(0.0, f64::from(max));
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let (x0, y0, x1, y1) = (
        clamp(b.x.floor(), width) as u32,
        clamp(b.y.floor(), height) as u32,
        clamp((b.x + b.w).ceil(), width) as u32,
        clamp((b.y + b.h).ceil(), height) as u32,
    );
    (x1 > x0 && y1 > y0).then_some((x0, y0, x1 - x0, y1 - y0))
}

/// The model file's display name, for messages.
pub fn model_label(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_cover_the_box_in_whole_pixels_and_stay_inside_the_image() {
        let b = |x, y, w, h| BBox { x, y, w, h };
        assert_eq!(
            crop_rect(b(1.5, 2.2, 3.0, 4.0), 100, 100),
            Some((1, 2, 4, 5))
        );
        assert_eq!(
            crop_rect(b(-5.0, -5.0, 10.0, 10.0), 100, 100),
            Some((0, 0, 5, 5))
        );
        assert_eq!(
            crop_rect(b(95.0, 95.0, 10.0, 10.0), 100, 100),
            Some((95, 95, 5, 5))
        );
        assert_eq!(crop_rect(b(200.0, 0.0, 10.0, 10.0), 100, 100), None);
        assert_eq!(crop_rect(b(f64::NAN, 0.0, 10.0, 10.0), 100, 100), None);
    }
}
