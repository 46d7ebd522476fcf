//! Running a detector over many image files so that the model never waits for the CPU work.
//!
//! Decoding and preprocessing run on a small dedicated rayon pool and feed a bounded channel;
//! the calling thread takes prepared tensors off the channel and runs the session. The channel's
//! bound keeps memory flat (a prepared 800x608 input is about 6 MB) however many images there
//! are, and gives the preprocessing a head start so that the next input is ready when the
//! session finishes the current one.
//!
//! The pool is private rather than rayon's global one because its workers block on the channel:
//! were they global-pool workers, a caller whose `on_result` uses rayon (hashing, say) could
//! wait for a pool whose threads all wait for the caller.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::slice::{self, WindowDetections};
use super::{Detection, Detector, InferenceError, PreparedInput, ms, panic_message};
use crate::imaging::tiles::{RegionSource, TileSettings};

/// How [`run_pipeline`] runs.
#[derive(Clone, Debug, Default)]
pub struct PipelineOptions {
    /// Threads decoding and preprocessing images ahead of the model; 0 picks half the cores
    /// (at least one), leaving the rest to the model's intra-op threads. One thread keeps up
    /// with the model unless images are much larger than the model input.
    pub threads: usize,
    /// Set to stop: no new image starts; the images already in a session when it is seen
    /// (at most two per session) are still reported, so finished work is kept.
    pub cancel: Arc<AtomicBool>,
    /// Which images are read as tiles (regions of them, never decoded whole).
    pub tiles: TileSettings,
}

/// Where the time went for one image.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// Reading, decoding, resizing and normalising (on a worker thread).
    pub preprocess_ms: f64,
    /// Inside `session.run`.
    pub inference_ms: f64,
    /// Decoding the outputs, NMS and mapping boxes back.
    pub postprocess_ms: f64,
}

/// The detections for one image, in its pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageDetections {
    pub detections: Vec<Detection>,
    /// The image's size after EXIF orientation.
    pub width: u32,
    pub height: u32,
    pub timings: Timings,
}

/// What a [`run_pipeline`] call did, for progress summaries and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PipelineReport {
    /// Images reported through `on_result`, successes and failures.
    pub reported: usize,
    pub failed: usize,
    /// True when the run stopped because `cancel` was set.
    pub cancelled: bool,
    /// From the call to its return.
    pub wall: Duration,
    /// Total time inside `session.run`, summed over the sessions.
    pub session_run: Duration,
    /// Sessions that ran images at once.
    pub sessions: usize,
}

impl PipelineReport {
    /// The share of wall time the sessions spent outside `session.run` (waiting for input,
    /// decoding outputs, `on_result`): the pipeline's overhead. With several sessions, the
    /// share of their combined time (sessions × wall).
    pub fn overhead_fraction(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let wall = self.wall.as_secs_f64() * self.sessions.max(1) as f64;
        if wall <= 0.0 {
            return 0.0;
        }
        ((wall - self.session_run.as_secs_f64()) / wall).clamp(0.0, 1.0)
    }
}

/// A decoded and prepared input on its way to the model: a whole image, or one window of a
/// sliced image.
struct Prepared {
    input: PreparedInput,
    preprocess_ms: f64,
    /// Where the input's pixels sit in the image: offset and image pixels per input pixel.
    offset: (f64, f64),
    scale: (f64, f64),
    /// Inputs the image is cut into (1 unless sliced).
    parts: usize,
    /// The image's size.
    width: u32,
    height: u32,
}

/// One input's boxes, in that input's pixels.
struct PartDone {
    part: WindowDetections,
    parts: usize,
    width: u32,
    height: u32,
    timings: Timings,
}

/// The parts of one image collected so far.
#[derive(Default)]
struct Collected {
    parts: Vec<WindowDetections>,
    timings: Timings,
}

/// Runs `detector` over `items`, calling `on_result` on the calling thread once per image as
/// soon as it is done, in completion order (which is not input order). An image that cannot be
/// read or decoded gives an `Err` for its key and the run goes on.
///
/// With slice settings in the descriptor, each image is cut into windows (read as regions of
/// the tile pyramid when the image is big) that flow through the model like images of their
/// own; an image is reported once its last window is done, its boxes merged across windows.
pub fn run_pipeline<K: Send>(
    items: Vec<(K, PathBuf)>,
    detector: &Detector,
    opts: PipelineOptions,
    mut on_result: impl FnMut(K, Result<ImageDetections, InferenceError>),
) -> PipelineReport {
    let started = Instant::now();
    let sessions = detector.sessions();
    let mut report = PipelineReport {
        sessions,
        ..PipelineReport::default()
    };
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    } else {
        opts.threads
    };
    let (mut keys, paths): (Vec<Option<K>>, Vec<(usize, PathBuf)>) = items
        .into_iter()
        .enumerate()
        .map(|(i, (key, path))| (Some(key), (i, path)))
        .unzip();
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("loupe-prelabel-{i}"))
        .build()
    {
        Ok(pool) => pool,
        Err(e) => {
            // Without threads there is nothing to run on; every image gets the reason.
            let message = format!("cannot start preprocessing threads: {e}");
            for key in keys.into_iter().flatten() {
                on_result(key, Err(InferenceError::Preprocess(message.clone())));
                report.reported += 1;
                report.failed += 1;
            }
            report.wall = started.elapsed();
            return report;
        }
    };
    // Enough to keep every worker one input ahead of the model, and no more.
    let (sender, receiver) =
        crossbeam_channel::bounded::<(usize, Result<Prepared, InferenceError>)>(threads + 1);
    let cancel = &opts.cancel;
    let tiles = &opts.tiles;
    // Read once: the whole run slices the same way.
    let slice_settings = detector.slice();

    std::thread::scope(|scope| {
        scope.spawn(|| {
            pool.install(|| {
                // `try_for_each_with` stops handing out items once a send fails, which happens
                // when the consumer below has gone (cancelled).
                let _ = paths.into_par_iter().try_for_each_with(
                    sender,
                    |sender, (index, path)| -> Result<(), ()> {
                        if cancel.load(Ordering::Relaxed) {
                            return Err(());
                        }
                        produce(
                            detector,
                            slice_settings,
                            &path,
                            tiles,
                            cancel,
                            &mut |result| sender.send((index, result)).map_err(|_| ()),
                        )
                    },
                );
            });
        });

        // One inference worker per session, each taking the next prepared input.
        let (done_tx, done_rx) =
            crossbeam_channel::bounded::<(usize, Result<PartDone, InferenceError>)>(sessions);
        for _ in 0..sessions {
            let receiver = receiver.clone();
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                for (index, prepared) in &receiver {
                    if cancel.load(Ordering::Relaxed) {
                        break;
                    }
                    let result = prepared.and_then(|prepared| infer(detector, prepared));
                    if done_tx.send((index, result)).is_err() {
                        break;
                    }
                }
                // Dropping this worker's receiver (with the others') makes the preprocessing
                // threads' next send fail, so they stop after the input in hand.
            });
        }
        drop(done_tx);
        drop(receiver);

        let mut collected: HashMap<usize, Collected> = HashMap::new();
        let max_detections = detector.descriptor().max_detections;
        let slicing = slice_settings;
        for (index, result) in &done_rx {
            let Some(key_slot) = keys.get_mut(index) else {
                continue;
            };
            // An image already reported (it failed earlier) ignores its other parts.
            if key_slot.is_none() {
                continue;
            }
            let done = match result {
                Ok(done) => done,
                Err(e) => {
                    collected.remove(&index);
                    if let Some(key) = key_slot.take() {
                        report.reported += 1;
                        report.failed += 1;
                        on_result(key, Err(e));
                    }
                    continue;
                }
            };
            report.session_run += Duration::from_secs_f64(done.timings.inference_ms / 1000.0);
            let entry = collected.entry(index).or_default();
            entry.timings.preprocess_ms += done.timings.preprocess_ms;
            entry.timings.inference_ms += done.timings.inference_ms;
            entry.timings.postprocess_ms += done.timings.postprocess_ms;
            entry.parts.push(done.part);
            if entry.parts.len() < done.parts {
                continue;
            }
            let Some(entry) = collected.remove(&index) else {
                continue;
            };
            let (width, height) = (done.width, done.height);
            let detections = match slicing {
                Some(settings) => {
                    slice::merge_windows(entry.parts, &settings, width, height, max_detections)
                }
                None => entry
                    .parts
                    .into_iter()
                    .flat_map(|p| slice::map_part(p, width, height))
                    .collect(),
            };
            if let Some(key) = key_slot.take() {
                report.reported += 1;
                on_result(
                    key,
                    Ok(ImageDetections {
                        detections,
                        width,
                        height,
                        timings: entry.timings,
                    }),
                );
            }
        }
        report.cancelled = cancel.load(Ordering::Relaxed);
    });
    report.wall = started.elapsed();
    report
}

/// Reads one image and sends its prepared inputs: the whole image, or its windows (and the
/// whole-image pass) when the descriptor slices. A failure is sent as an error for the image.
/// Returns `Err` when the receiver has gone.
fn produce(
    detector: &Detector,
    slicing: Option<slice::SliceSettings>,
    path: &Path,
    tiles: &TileSettings,
    cancel: &AtomicBool,
    send: &mut (dyn FnMut(Result<Prepared, InferenceError>) -> Result<(), ()> + Send),
) -> Result<(), ()> {
    let started = Instant::now();
    let d = detector.descriptor();
    let opened = guard(path, || {
        RegionSource::open(path, d.dicom_window.as_deref(), tiles).map_err(InferenceError::from)
    });
    let source = match opened {
        Ok(source) => source,
        Err(e) => return send(Err(e)),
    };
    let (width, height) = source.size();
    // The whole-image pass reads a pyramid level near the model's input, never level 0 of a
    // big image.
    let overview_side = 2 * d.input_width.max(d.input_height);
    let Some(settings) = slicing else {
        let prepared = guard(path, || {
            let (image, sx, sy) = source.into_whole(overview_side)?;
            Ok((detector.prepare(&image)?, sx, sy))
        });
        return send(prepared.map(|(input, sx, sy)| Prepared {
            input,
            preprocess_ms: ms(started.elapsed()),
            offset: (0.0, 0.0),
            scale: (sx, sy),
            parts: 1,
            width,
            height,
        }));
    };
    let windows = settings.windows(width, height);
    let parts = windows.len() + usize::from(settings.full_pass);
    let opened_ms = ms(started.elapsed());
    if settings.full_pass {
        let t = Instant::now();
        let prepared = guard(path, || {
            let (image, sx, sy) = source.whole(overview_side)?;
            Ok((detector.prepare(&image)?, sx, sy))
        });
        send(prepared.map(|(input, sx, sy)| Prepared {
            input,
            preprocess_ms: opened_ms + ms(t.elapsed()),
            offset: (0.0, 0.0),
            scale: (sx, sy),
            parts,
            width,
            height,
        }))?;
    }
    // Windows in parallel on the pool's threads, so one big image keeps them all busy.
    let send = std::sync::Mutex::new(send);
    windows.into_par_iter().try_for_each(|w| {
        if cancel.load(Ordering::Relaxed) {
            return Err(());
        }
        let t = Instant::now();
        let prepared = guard(path, || {
            let region = source.region(w.x, w.y, w.width, w.height)?;
            detector.prepare(&region)
        });
        let result = prepared.map(|input| Prepared {
            input,
            preprocess_ms: ms(t.elapsed()),
            offset: (f64::from(w.x), f64::from(w.y)),
            scale: (1.0, 1.0),
            parts,
            width,
            height,
        });
        let mut send = send
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        send(result)
    })
}

/// Runs reading or preparing, turning a panic in a decoder into an error for this file.
fn guard<T>(
    path: &Path,
    work: impl FnOnce() -> Result<T, InferenceError>,
) -> Result<T, InferenceError> {
    std::panic::catch_unwind(AssertUnwindSafe(work)).map_err(|panic| InferenceError::Panicked {
        what: path.display().to_string(),
        message: panic_message(&panic),
    })?
}

/// Runs the model on one prepared input.
fn infer(detector: &Detector, prepared: Prepared) -> Result<PartDone, InferenceError> {
    let (detections, run) = detector.detect_prepared(&prepared.input)?;
    Ok(PartDone {
        part: WindowDetections {
            offset: prepared.offset,
            scale: prepared.scale,
            detections,
        },
        parts: prepared.parts,
        width: prepared.width,
        height: prepared.height,
        timings: Timings {
            preprocess_ms: prepared.preprocess_ms,
            inference_ms: run.inference_ms,
            postprocess_ms: run.postprocess_ms,
        },
    })
}
