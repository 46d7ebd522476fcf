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
    /// Set to stop: no new image starts, and nothing is reported after the image being
    /// inferred when it is seen. Results already reported stay reported.
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
    /// Total time inside `session.run`.
    pub session_run: Duration,
}

impl PipelineReport {
    /// The share of wall time spent outside `session.run` (waiting for input, decoding outputs,
    /// `on_result`): the pipeline's overhead.
    pub fn overhead_fraction(&self) -> f64 {
        let wall = self.wall.as_secs_f64();
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
    let mut report = PipelineReport::default();
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

        for (key, prepared) in &receiver {
            if cancel.load(Ordering::Relaxed) {
                break;
            }
            let result = prepared.and_then(|prepared| {
                let (detections, run) = detector.detect_prepared(&prepared.input)?;
                report.session_run += Duration::from_secs_f64(run.inference_ms / 1000.0);
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
            });
            report.reported += 1;
            report.failed += usize::from(result.is_err());
            on_result(key, result);
        }
        report.cancelled = cancel.load(Ordering::Relaxed);
        // Dropping the receiver makes the workers' next send fail, so they stop after the
        // image in hand instead of working through the rest.
        drop(receiver);
    });
    report.wall = started.elapsed();
    report
}

/// Reads, decodes and prepares one file. A panic in a decoder becomes an error for this file.
fn prepare_file(detector: &Detector, path: &std::path::Path) -> Result<Prepared, InferenceError> {
    let started = Instant::now();
    let work = AssertUnwindSafe(|| {
        let image = crate::imaging::decode(path)?;
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
