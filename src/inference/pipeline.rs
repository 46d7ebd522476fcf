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

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::{Detection, Detector, InferenceError, PreparedInput, ms, panic_message};

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

/// A decoded and prepared image on its way to the model.
struct Prepared {
    input: PreparedInput,
    preprocess_ms: f64,
}

/// Runs `detector` over `items`, calling `on_result` on the calling thread once per image as
/// soon as it is done, in completion order (which is not input order). An image that cannot be
/// read or decoded gives an `Err` for its key and the run goes on.
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
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("loupe-prelabel-{i}"))
        .build()
    {
        Ok(pool) => pool,
        Err(e) => {
            // Without threads there is nothing to run on; every image gets the reason.
            let message = format!("cannot start preprocessing threads: {e}");
            for (key, _) in items {
                on_result(key, Err(InferenceError::Preprocess(message.clone())));
                report.reported += 1;
                report.failed += 1;
            }
            report.wall = started.elapsed();
            return report;
        }
    };
    // Enough to keep every worker one image ahead of the model, and no more.
    let (sender, receiver) =
        crossbeam_channel::bounded::<(K, Result<Prepared, InferenceError>)>(threads + 1);
    let cancel = &opts.cancel;

    std::thread::scope(|scope| {
        scope.spawn(|| {
            pool.install(|| {
                // `try_for_each_with` stops handing out items once a send fails, which happens
                // when the consumer below has gone (cancelled).
                let _ = items.into_par_iter().try_for_each_with(
                    sender,
                    |sender, (key, path)| -> Result<(), ()> {
                        if cancel.load(Ordering::Relaxed) {
                            return Err(());
                        }
                        let result = prepare_file(detector, &path);
                        sender.send((key, result)).map_err(|_| ())
                    },
                );
            });
        });

        // One inference worker per session, each taking the next prepared image.
        let (done_tx, done_rx) =
            crossbeam_channel::bounded::<(K, Result<ImageDetections, InferenceError>)>(sessions);
        for _ in 0..sessions {
            let receiver = receiver.clone();
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                for (key, prepared) in &receiver {
                    if cancel.load(Ordering::Relaxed) {
                        break;
                    }
                    let result = prepared.and_then(|prepared| infer(detector, &prepared));
                    if done_tx.send((key, result)).is_err() {
                        break;
                    }
                }
                // Dropping this worker's receiver (with the others') makes the preprocessing
                // threads' next send fail, so they stop after the image in hand.
            });
        }
        drop(done_tx);
        drop(receiver);

        for (key, result) in &done_rx {
            if let Ok(done) = &result {
                report.session_run += Duration::from_secs_f64(done.timings.inference_ms / 1000.0);
            }
            report.reported += 1;
            report.failed += usize::from(result.is_err());
            on_result(key, result);
        }
        report.cancelled = cancel.load(Ordering::Relaxed);
    });
    report.wall = started.elapsed();
    report
}

/// Runs the model on one prepared image.
fn infer(detector: &Detector, prepared: &Prepared) -> Result<ImageDetections, InferenceError> {
    let (detections, run) = detector.detect_prepared(&prepared.input)?;
    Ok(ImageDetections {
        detections,
        width: prepared.input.transform.image_width,
        height: prepared.input.transform.image_height,
        timings: Timings {
            preprocess_ms: prepared.preprocess_ms,
            inference_ms: run.inference_ms,
            postprocess_ms: run.postprocess_ms,
        },
    })
}

/// Reads, decodes and prepares one file. A panic in a decoder becomes an error for this file.
fn prepare_file(detector: &Detector, path: &std::path::Path) -> Result<Prepared, InferenceError> {
    let started = Instant::now();
    let work = AssertUnwindSafe(|| {
        let window = detector.descriptor().dicom_window.as_deref();
        let image = crate::imaging::decode_for_model(path, window)?;
        detector.prepare(&image)
    });
    let input = std::panic::catch_unwind(work).map_err(|panic| InferenceError::Panicked {
        what: path.display().to_string(),
        message: panic_message(&panic),
    })??;
    Ok(Prepared {
        input,
        preprocess_ms: ms(started.elapsed()),
    })
}
