//! Object detection with ONNX models through ONNX Runtime: finding the runtime, describing a
//! model, preprocessing, decoding raw outputs, NMS, and a pipeline that keeps the model busy.
//!
//! - [`runtime`]: where `libonnxruntime` comes from ([`runtime_info`] for `loupe doctor`).
//! - [`descriptor`]: [`ModelDescriptor`], the TOML beside a model or a built-in preset.
//! - [`preprocess`]: image to NCHW tensor, and the transform back to image pixels;
//!   [`cv_resize`]: OpenCV's bilinear resize, bit for bit, for the `opencv-linear` filter.
//! - [`decode`] and [`nms`]: raw tensors to candidates to final boxes.
//! - [`pipeline`]: [`run_pipeline`], decoding on rayon ahead of inference on the calling thread.
//! - [`provider`]: which execution provider (CUDA, DirectML, CoreML, CPU) runs a model, and
//!   why the better ones were not used.
//! - [`slice`]: sliced inference for small objects in big images: windows, and merging their
//!   boxes (NMS or NMM) across windows.
//! - [`embed`]: embeddings of images and box crops with an image encoder (`loupe embed`).
//! - [`run`]: a pre-label run over a project ([`plan_run`], [`execute_run`]): the run record,
//!   resuming, storing proposals, cancel; what `loupe prelabel` and the app both use.
//!
//! A model that does not fit its descriptor is refused with an error naming the tensor and the
//! expected and actual shapes; nothing here panics on bad input, and the `ort` calls that can
//! panic are guarded.

pub mod cv_resize;
pub mod decode;
pub mod descriptor;
pub mod embed;
mod error;
pub mod nms;
pub mod pipeline;
pub mod preprocess;
pub mod provider;
pub mod run;
pub mod runtime;
pub mod slice;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use image::DynamicImage;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{TensorElementType, TensorRef, ValueType};

pub use self::decode::DecodeError;
pub use self::descriptor::{DecoderKind, DescriptorOverrides, ModelDescriptor, PRESETS};
pub use self::error::InferenceError;
pub use self::pipeline::{ImageDetections, PipelineOptions, PipelineReport, Timings, run_pipeline};
pub use self::preprocess::{InputTransform, PreparedInput};
pub use self::provider::{Provider, ProviderChoice, ProviderReport};
pub use self::run::{
    RunError, RunEvent, RunName, RunPlan, RunSummary, Selection, execute_run, plan_run, run_hashes,
    team_run_id,
};
pub use self::runtime::{RuntimeInfo, runtime_info};
pub use self::slice::{MergeMode, SliceSettings};

use self::decode::{NmsDecodeParams, Output, PicodetParams};
use self::nms::{Candidate, NmsParams};
use crate::model::BBox;

/// One detected object, in original image pixels (after EXIF orientation).
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    /// Index into [`Detector::class_names`].
    pub class: usize,
    pub score: f32,
    pub bbox: BBox,
}

/// Timings of one [`Detector::detect_prepared`] call.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunTimings {
    /// Time inside `session.run`.
    pub inference_ms: f64,
    /// Decoding outputs, NMS and mapping boxes back.
    pub postprocess_ms: f64,
}

/// A loaded model, ready to detect. `Sync`: preprocessing may run on many threads while one
/// thread at a time runs the session.
pub struct Detector {
    /// One or more sessions of the same model; [`Detector::detect_prepared`] runs on whichever
    /// is idle, so several images can be inferred at once.
    sessions: Vec<Mutex<Session>>,
    /// Indices of the idle sessions.
    idle: (Sender<usize>, Receiver<usize>),
    descriptor: ModelDescriptor,
    model_path: PathBuf,
    /// For error messages: the model's file name.
    model_name: String,
    model_hash: String,
    input_name: String,
    output_names: Vec<String>,
    class_names: Vec<String>,
    /// The execution provider every session runs on, and why better ones were not used.
    provider: ProviderReport,
    /// How images are sliced, if they are: the descriptor's `slice` at load, changeable
    /// between runs (the app's Model menu) without reloading the model.
    slice: parking_lot::RwLock<Option<SliceSettings>>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("model_path", &self.model_path)
            .field("decoder", &self.descriptor.decoder)
            .field("input_name", &self.input_name)
            .field("output_names", &self.output_names)
            .finish_non_exhaustive()
    }
}

impl Detector {
    /// Loads the model at `model_path` with `descriptor`, running inference on `threads`
    /// intra-op threads (0: ONNX Runtime's default, one per physical core).
    ///
    /// Checks the model's input (one float tensor of rank 4 whose fixed dimensions match the
    /// descriptor) and outputs (what the decoder needs) before returning.
    pub fn load(
        model_path: &Path,
        descriptor: ModelDescriptor,
        threads: usize,
    ) -> Result<Detector, InferenceError> {
        Self::load_with(
            model_path,
            descriptor,
            SessionOptions {
                sessions: 1,
                intra_threads: threads,
                provider: ProviderChoice::Auto,
            },
        )
    }

    /// Like [`load`](Self::load), with `options.sessions` sessions of `options.intra_threads`
    /// threads each: a small model on few cores runs more images per second as two sessions
    /// of one thread than as one session of two, because one image's operators do not keep
    /// two threads busy. Each session holds its own copy of the weights.
    ///
    /// The first session picks the execution provider (`options.provider`, see
    /// [`provider::choose`]); the others open on the same one.
    pub fn load_with(
        model_path: &Path,
        descriptor: ModelDescriptor,
        options: SessionOptions,
    ) -> Result<Detector, InferenceError> {
        descriptor.validate("descriptor")?;
        let model_name = display_name(model_path);
        let threads = options.intra_threads;
        check_model_file(model_path)?;
        let (session, provider) = provider::choose(options.provider, |p| {
            open_session(model_path, SessionKind::Inference { threads }, p)
        })?;
        if let Some(why) = provider.fallback_reason() {
            tracing::warn!(provider = provider.used.name(), "{why}");
        }
        let (model_hash, _) =
            crate::imaging::hash_file(model_path).map_err(|e| InferenceError::InvalidModel {
                path: model_path.to_path_buf(),
                message: e.to_string(),
            })?;
        let input_name = check_input(&session, &model_name, &descriptor)?;
        let output_names: Vec<String> = session
            .outputs()
            .iter()
            .map(|o| o.name().to_owned())
            .collect();
        let mut descriptor = descriptor;
        let slice = descriptor.slice.take();
        check_outputs(&session, &model_name, &mut descriptor)?;
        let class_names = class_names_for(&descriptor, &session);
        tracing::debug!(
            model = %model_path.display(),
            decoder = descriptor.decoder.as_str(),
            classes = class_names.len(),
            "model loaded"
        );
        let mut sessions = vec![Mutex::new(session)];
        for _ in 1..options.sessions.max(1) {
            let more = open_session(
                model_path,
                SessionKind::Inference { threads },
                provider.used,
            )?;
            sessions.push(Mutex::new(more));
        }
        let idle = crossbeam_channel::bounded(sessions.len());
        for i in 0..sessions.len() {
            let _ = idle.0.send(i);
        }
        Ok(Detector {
            sessions,
            idle,
            descriptor,
            model_path: model_path.to_path_buf(),
            model_name,
            model_hash,
            input_name,
            output_names,
            class_names,
            provider,
            slice: parking_lot::RwLock::new(slice),
        })
    }

    /// How images are sliced (none: each image whole).
    pub fn slice(&self) -> Option<SliceSettings> {
        *self.slice.read()
    }

    /// Changes the slicing for the next runs. A sliced run is another run: the settings a run
    /// is identified by include the slicing ([`run::settings_of`]).
    pub fn set_slice(&self, slice: Option<SliceSettings>) {
        *self.slice.write() = slice;
    }

    /// The descriptor as runs record it: [`descriptor`](Self::descriptor) plus the slicing.
    pub fn effective_descriptor(&self) -> ModelDescriptor {
        ModelDescriptor {
            slice: self.slice(),
            ..self.descriptor.clone()
        }
    }

    /// The execution provider the model runs on, and why better ones were not used.
    pub fn provider(&self) -> &ProviderReport {
        &self.provider
    }

    /// How many images this detector can infer at once.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// blake3 of the `.onnx` file, hex: identifies the model a pre-label came from.
    pub fn model_hash(&self) -> &str {
        &self.model_hash
    }

    /// Class names by class index (`class_{i}` where neither the descriptor nor the model names
    /// them).
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// The descriptor the model was loaded with, without its slicing (see
    /// [`slice`](Self::slice)).
    pub fn descriptor(&self) -> &ModelDescriptor {
        &self.descriptor
    }

    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    /// Detects objects in `image`; boxes are in its pixels.
    pub fn detect(&self, image: &DynamicImage) -> Result<Vec<Detection>, InferenceError> {
        let prepared = self.prepare(image)?;
        self.detect_prepared(&prepared)
            .map(|(detections, _)| detections)
    }

    /// The CPU-only first half of [`detect`](Self::detect): resize and normalise. Safe to call
    /// from many threads at once.
    pub fn prepare(&self, image: &DynamicImage) -> Result<PreparedInput, InferenceError> {
        preprocess::prepare(image, &self.descriptor)
    }

    /// The second half of [`detect`](Self::detect): run the model and decode its outputs. Calls
    /// from several threads take turns on the session.
    pub fn detect_prepared(
        &self,
        prepared: &PreparedInput,
    ) -> Result<(Vec<Detection>, RunTimings), InferenceError> {
        // `ort`'s wrappers have `expect`s of their own; one image must not take the run down.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run_and_decode(prepared)
        }))
        .map_err(|panic| InferenceError::Panicked {
            what: format!("an image with model {}", self.model_name),
            message: panic_message(&panic),
        })?
    }

    /// True for an image encoder (`decoder = "embedding"`): [`embed_prepared`](Self::embed_prepared)
    /// runs it, [`detect_prepared`](Self::detect_prepared) refuses it.
    pub fn is_encoder(&self) -> bool {
        self.descriptor.decoder == DecoderKind::Embedding
    }

    /// Runs an image encoder on a prepared input: its vector, L2-normalised (a feature map is
    /// averaged over its height and width first), and the time inside `session.run` in ms.
    /// Calls from several threads take turns on the sessions.
    pub fn embed_prepared(
        &self,
        prepared: &PreparedInput,
    ) -> Result<(Vec<f32>, f64), InferenceError> {
        if !self.is_encoder() {
            return Err(self.unsupported(format!(
                "it is a detector (decoder = \"{}\"), not an image encoder",
                self.descriptor.decoder.as_str()
            )));
        }
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_encoder(prepared)))
            .map_err(|panic| InferenceError::Panicked {
                what: format!("an image with model {}", self.model_name),
                message: panic_message(&panic),
            })?
    }

    fn run_encoder(&self, prepared: &PreparedInput) -> Result<(Vec<f32>, f64), InferenceError> {
        let name = self
            .descriptor
            .embedding_output
            .as_deref()
            .or_else(|| self.output_names.first().map(String::as_str))
            .ok_or_else(|| self.unsupported("the model has no outputs".to_owned()))?;
        let (vector, inference_ms, _) = self.run_session(prepared, |outputs| {
            let output = float_output(outputs, name).map_err(|m| self.unsupported(m))?;
            embedding_from_output(output.view.view())
                .map_err(|m| self.unsupported(format!("output `{name}`: {m}")))
        })?;
        Ok((vector, inference_ms))
    }

    fn run_and_decode(
        &self,
        prepared: &PreparedInput,
    ) -> Result<(Vec<Detection>, RunTimings), InferenceError> {
        let (candidates, inference_ms, inference_done) =
            self.run_session(prepared, |outputs| self.decode_outputs(outputs))?;
        let detections = self.finish(candidates, &prepared.transform);
        let timings = RunTimings {
            inference_ms,
            postprocess_ms: ms(inference_done.elapsed()),
        };
        Ok((detections, timings))
    }

    /// Runs the model on `prepared` on an idle session and reads its outputs with `read` while
    /// the session is held. Returns what `read` gave, the ms inside `session.run`, and when
    /// `session.run` returned.
    fn run_session<T>(
        &self,
        prepared: &PreparedInput,
        read: impl FnOnce(&ort::session::SessionOutputs<'_>) -> Result<T, InferenceError>,
    ) -> Result<(T, f64, Instant), InferenceError> {
        let run_err = |message: String| InferenceError::Run {
            model: self.model_name.clone(),
            message,
        };
        let tensor = TensorRef::from_array_view(prepared.tensor.view())
            .map_err(|e| run_err(e.to_string()))?;
        // Waits for an idle session; the guard gives it back however this call ends.
        let slot = IdleSlot::take(&self.idle);
        // A poisoned lock means an earlier run panicked inside `ort`'s Rust wrapper (caught
        // by the callers); the session holds no Rust state that could be left half-updated.
        let mut session = self.sessions[slot.index]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let started = Instant::now();
        let outputs = session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(|e| run_err(e.to_string()))?;
        let inference_done = Instant::now();
        let value = read(&outputs)?;
        Ok((value, ms(inference_done - started), inference_done))
    }

    fn decode_outputs<'a>(
        &'a self,
        outputs: &'a ort::session::SessionOutputs<'_>,
    ) -> Result<Vec<Candidate>, InferenceError> {
        let d = &self.descriptor;
        let num_classes = (!d.classes.is_empty()).then_some(d.classes.len());
        let float_output =
            |name: &'a str| float_output(outputs, name).map_err(|m| self.unsupported(m));
        let decoded = match d.decoder {
            DecoderKind::Embedding => {
                return Err(self.unsupported(
                    "it is an image encoder (decoder = \"embedding\"), not a detector: use \
                     `loupe embed`"
                        .to_owned(),
                ));
            }
            DecoderKind::Yolov8 | DecoderKind::Yolov5 => {
                let name = self
                    .output_names
                    .first()
                    .ok_or_else(|| self.unsupported("the model has no outputs".to_owned()))?;
                let output = float_output(name)?;
                if d.decoder == DecoderKind::Yolov8 {
                    decode::decode_yolov8(&output, num_classes, d.score_threshold)
                } else {
                    decode::decode_yolov5(&output, num_classes, d.score_threshold)
                }
            }
            DecoderKind::Picodet => {
                let views = self
                    .output_names
                    .iter()
                    .map(|name| float_output(name))
                    .collect::<Result<Vec<_>, _>>()?;
                decode::decode_picodet(
                    &views,
                    &PicodetParams {
                        strides: &d.strides,
                        input_width: d.input_width,
                        input_height: d.input_height,
                        num_classes,
                        score_threshold: d.score_threshold,
                        pre_nms_top_k: d.pre_nms_top_k,
                    },
                )
            }
            DecoderKind::Nms => {
                let names = &d.nms_outputs;
                let boxes = float_output(&names.boxes)?;
                let scores = float_output(&names.scores)?;
                let labels_value = outputs
                    .get(&names.labels)
                    .ok_or_else(|| self.unsupported(format!("no output `{}`", names.labels)))?;
                let labels = labels_as_i64(labels_value)
                    .map_err(|e| self.unsupported(format!("output `{}`: {e}", names.labels)))?;
                decode::decode_nms(
                    &boxes,
                    &scores,
                    &Output {
                        name: &names.labels,
                        view: labels.view(),
                    },
                    &NmsDecodeParams {
                        box_format: names.box_format,
                        normalized: names.normalized,
                        input_width: d.input_width,
                        input_height: d.input_height,
                        num_classes,
                        score_threshold: d.score_threshold,
                    },
                )
            }
        };
        decoded.map_err(|e| decode_error(&self.model_name, e))
    }

    /// NMS (unless the graph did it), then back to image pixels, clipped; empty boxes dropped.
    fn finish(&self, candidates: Vec<Candidate>, transform: &InputTransform) -> Vec<Detection> {
        let d = &self.descriptor;
        let params = NmsParams {
            iou_threshold: d.nms_iou,
            max_detections: d.max_detections,
            max_per_class: d.max_detections_per_class,
            candidates_per_class: d.nms_candidates_per_class,
        };
        let kept = if d.decoder == DecoderKind::Nms {
            let mut sorted = candidates;
            sorted.sort_by(|a, b| b.score.total_cmp(&a.score));
            sorted.truncate(d.max_detections);
            sorted
        } else {
            nms::class_aware_nms(candidates, &params)
        };
        kept.into_iter()
            .filter_map(|c| {
                let bbox = transform.image_from_input(c.xyxy);
                (bbox.is_finite() && bbox.w > 0.0 && bbox.h > 0.0).then_some(Detection {
                    class: c.class,
                    score: c.score,
                    bbox,
                })
            })
            .collect()
    }

    fn unsupported(&self, message: String) -> InferenceError {
        InferenceError::UnsupportedModel {
            model: self.model_name.clone(),
            message,
        }
    }
}

/// One vector from an encoder's output `[1, D]` or `[1, D, H, W]` (averaged over H and W),
/// L2-normalised so that a dot product is the cosine similarity. A vector of zeros or with a
/// non-finite value is refused: it would match everything or nothing.
pub(crate) fn embedding_from_output(
    view: ndarray::ArrayViewD<'_, f32>,
) -> Result<Vec<f32>, String> {
    let shape = view.shape().to_vec();
    let mut vector: Vec<f32> = match shape.as_slice() {
        [1, d] if *d > 0 => view.iter().copied().collect(),
        [1, d, h, w] if *d > 0 && h * w > 0 => {
            #[allow(clippy::cast_precision_loss)]
            let area = (h * w) as f64;
            view.index_axis(ndarray::Axis(0), 0)
                .outer_iter()
                .map(|plane| {
                    #[allow(clippy::cast_possible_truncation)]
                    let mean = (plane.iter().map(|&x| f64::from(x)).sum::<f64>() / area) as f32;
                    mean
                })
                .collect()
        }
        _ => {
            return Err(format!(
                "shape {} is not [1, D] or [1, D, H, W]",
                decode::format_shape(&shape)
            ));
        }
    };
    if vector.iter().any(|x| !x.is_finite()) {
        return Err("the vector holds a value that is not a finite number".to_owned());
    }
    let norm = vector
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 {
        return Err("the vector is all zeros".to_owned());
    }
    #[allow(clippy::cast_possible_truncation)]
    let inv = (1.0 / norm) as f32;
    for x in &mut vector {
        *x *= inv;
    }
    Ok(vector)
}

/// The float output `name` as an array view.
fn float_output<'a>(
    outputs: &'a ort::session::SessionOutputs<'_>,
    name: &'a str,
) -> Result<Output<'a>, String> {
    let value = outputs
        .get(name)
        .ok_or_else(|| format!("no output `{name}`"))?;
    let view = value
        .try_extract_array::<f32>()
        .map_err(|e| format!("output `{name}` is not a float tensor: {e}"))?;
    Ok(Output { name, view })
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn display_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn decode_error(model: &str, e: DecodeError) -> InferenceError {
    match e {
        DecodeError::Shape {
            tensor,
            expected,
            actual,
        } => InferenceError::ShapeMismatch {
            model: model.to_owned(),
            tensor,
            expected,
            actual,
        },
        DecodeError::Layout(message) => InferenceError::UnsupportedModel {
            model: model.to_owned(),
            message,
        },
    }
}

/// Integer class labels of any common type, as `i64`.
fn labels_as_i64(value: &ort::value::DynValue) -> Result<ndarray::ArrayD<i64>, String> {
    if let Ok(v) = value.try_extract_array::<i64>() {
        return Ok(v.to_owned());
    }
    if let Ok(v) = value.try_extract_array::<i32>() {
        return Ok(v.mapv(i64::from));
    }
    if let Ok(v) = value.try_extract_array::<f32>() {
        // Float labels hold small whole numbers; anything else is caught as out of range.
        #[allow(clippy::cast_possible_truncation)]
        return Ok(v.mapv(|x| if x.is_finite() { x.round() as i64 } else { -1 }));
    }
    Err("labels must be an int64, int32 or float tensor".to_owned())
}

/// What a session is opened for.
enum SessionKind {
    /// Only to read metadata and input shapes: no optimisation, one thread.
    Inspect,
    Inference {
        threads: usize,
    },
}

/// How many sessions a [`Detector`] opens and how many intra-op threads each uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    /// Sessions run at once (at least 1).
    pub sessions: usize,
    /// Intra-op threads per session (0: ONNX Runtime's default, one per physical core).
    pub intra_threads: usize,
    /// Where the sessions run (`auto`: the best provider that loads, else the CPU).
    pub provider: ProviderChoice,
}

impl SessionOptions {
    /// [`automatic`](Self::automatic) for the model file at `path` on this machine's cores.
    pub fn for_model(path: &Path, sessions: usize, intra_threads: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let model_bytes = std::fs::metadata(path).map_or(0, |m| m.len());
        Self::automatic(cores, model_bytes, sessions, intra_threads)
    }

    /// A split of `cores` for a model file of `model_bytes` when the user did not choose:
    /// one single-threaded session per core (up to 4), fewer when the copies of the weights
    /// would pass 1 GiB; `intra_threads` and `sessions` override (0: choose).
    pub fn automatic(
        cores: usize,
        model_bytes: u64,
        sessions: usize,
        intra_threads: usize,
    ) -> Self {
        let cores = cores.max(1);
        let by_memory = usize::try_from((1u64 << 30) / model_bytes.max(1)).unwrap_or(usize::MAX);
        let sessions = match (sessions, intra_threads) {
            (0, 0) => cores.min(4).min(by_memory).max(1),
            (0, t) => (cores / t).min(4).min(by_memory).max(1),
            (s, _) => s,
        };
        let intra_threads = match intra_threads {
            0 => (cores / sessions).max(1),
            t => t,
        };
        SessionOptions {
            sessions,
            intra_threads,
            provider: ProviderChoice::Auto,
        }
    }
}

impl SessionOptions {
    /// The same split on another execution provider.
    #[must_use]
    pub fn with_provider(self, provider: ProviderChoice) -> Self {
        Self { provider, ..self }
    }
}

/// An idle session taken from the pool, given back when dropped.
struct IdleSlot<'a> {
    index: usize,
    back: &'a Sender<usize>,
}

impl<'a> IdleSlot<'a> {
    fn take(idle: &'a (Sender<usize>, Receiver<usize>)) -> Self {
        // The detector holds both ends, so the channel never disconnects.
        let index = idle.1.recv().unwrap_or(0);
        IdleSlot {
            index,
            back: &idle.0,
        }
    }
}

impl Drop for IdleSlot<'_> {
    fn drop(&mut self) {
        let _ = self.back.send(self.index);
    }
}

/// Checks that `path` is a readable file: ONNX Runtime's message for a missing file is less
/// clear, and a missing file must not read as a provider failing.
fn check_model_file(path: &Path) -> Result<(), InferenceError> {
    let meta = std::fs::metadata(path).map_err(|source| InferenceError::ModelIo {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(InferenceError::ModelIo {
            path: path.to_path_buf(),
            source: std::io::Error::other("not a file"),
        });
    }
    Ok(())
}

/// Where a session's model comes from.
#[derive(Clone, Copy)]
enum ModelSource<'a> {
    File(&'a Path),
    /// In memory, with a name for messages.
    Memory(&'a [u8], &'a str),
}

/// Opens `path` with ONNX Runtime on `provider`, turning every failure into an
/// [`InferenceError`] that names the file.
fn open_session(
    path: &Path,
    kind: SessionKind,
    provider: Provider,
) -> Result<Session, InferenceError> {
    check_model_file(path)?;
    build_session(ModelSource::File(path), kind, provider)
}

/// Builds a session on `provider`. A provider that cannot be registered is
/// [`InferenceError::ProviderUnavailable`]; so is a failure to create the session on a provider
/// other than the CPU (no device, a missing CUDA library), since the CPU is what tells a bad
/// model apart. `ort`'s builder errors are not `Send`, so they become strings here.
fn build_session(
    source: ModelSource<'_>,
    kind: SessionKind,
    provider: Provider,
) -> Result<Session, InferenceError> {
    let rt = runtime::runtime()?;
    let invalid = |message: String| match source {
        _ if provider != Provider::Cpu => InferenceError::ProviderUnavailable {
            provider: provider.label().to_owned(),
            reason: format!("ONNX Runtime could not create the session: {message}"),
        },
        ModelSource::File(path) => InferenceError::InvalidModel {
            path: path.to_path_buf(),
            message,
        },
        ModelSource::Memory(_, name) => InferenceError::InvalidModel {
            path: PathBuf::from(name),
            message,
        },
    };
    let build = || -> Result<Session, Result<String, InferenceError>> {
        fn text<E: std::fmt::Display>(e: E) -> Result<String, InferenceError> {
            Ok(e.to_string())
        }
        let builder = Session::builder(&rt.env).map_err(text)?;
        let builder = provider::register(builder, provider).map_err(Err)?;
        let builder = match kind {
            SessionKind::Inspect => builder
                .with_optimization_level(GraphOptimizationLevel::Disable)
                .map_err(text)?
                .with_intra_threads(1)
                .map_err(text)?,
            SessionKind::Inference { threads } => builder
                .with_optimization_level(GraphOptimizationLevel::All)
                .map_err(text)?
                .with_intra_threads(threads)
                .map_err(text)?
                // Spinning intra-op threads busy-wait between operators. Here they would take
                // the cores from the threads preparing the next images (and from everything
                // else on a desktop); measured on 2 cores with a build running alongside,
                // blocking instead doubled throughput.
                .with_intra_op_spinning(false)
                .map_err(text)?,
        };
        let mut builder = builder;
        match source {
            ModelSource::File(path) => builder.commit_from_file(path).map_err(text),
            ModelSource::Memory(bytes, _) => builder.commit_from_memory(bytes).map_err(text),
        }
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(build)) {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(Ok(message))) => Err(invalid(message)),
        Ok(Err(Err(error))) => Err(error),
        Err(panic) => Err(invalid(panic_message(&panic))),
    }
}

/// Opens the built-in one-operator model on `choice`'s providers and runs it once, to find
/// which provider would run: what `loupe doctor` reports.
fn probe_session(choice: ProviderChoice) -> Result<ProviderReport, InferenceError> {
    let model = provider::probe_model();
    let ((), report) = provider::choose(choice, |p| {
        let mut session = build_session(
            ModelSource::Memory(&model, "the built-in probe model"),
            SessionKind::Inference { threads: 1 },
            p,
        )?;
        // Running once catches providers that only fail on the first run (no device memory).
        let input = ndarray::Array1::<f32>::from_elem(1, -1.0);
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let tensor = TensorRef::from_array_view(input.view()).map_err(|e| e.to_string())?;
            session
                .run(ort::inputs!["x" => tensor])
                .map(drop)
                .map_err(|e| e.to_string())
        }))
        .map_err(|panic| panic_message(&panic))
        .and_then(|r| r);
        run.map_err(|message| InferenceError::ProviderUnavailable {
            provider: p.label().to_owned(),
            reason: format!("the probe model did not run: {message}"),
        })
    })?;
    Ok(report)
}

pub(crate) use crate::panic_message;

/// What [`ModelDescriptor::load`] learns from a model without a descriptor.
pub(crate) struct ModelMetadata {
    /// The custom metadata map (ultralytics writes `names`, `imgsz`, `stride`, `task`).
    pub metadata: HashMap<String, String>,
    /// The input's fixed height and width, if both are fixed.
    pub input_hw: Option<(u32, u32)>,
}

/// Opens the model just to read its metadata and input size.
pub(crate) fn read_model_metadata(path: &Path) -> Result<ModelMetadata, InferenceError> {
    // Reading metadata is the same on every provider; the CPU always exists.
    let session = open_session(path, SessionKind::Inspect, Provider::Cpu)?;
    let invalid = |message: String| InferenceError::InvalidModel {
        path: path.to_path_buf(),
        message,
    };
    let meta = session.metadata().map_err(|e| invalid(e.to_string()))?;
    let keys = meta.custom_keys().map_err(|e| invalid(e.to_string()))?;
    let metadata = keys
        .into_iter()
        .filter_map(|k| meta.custom(&k).map(|v| (k, v)))
        .collect();
    let input_hw = session
        .inputs()
        .first()
        .and_then(|i| i.dtype().tensor_shape())
        .filter(|s| s.len() == 4)
        .and_then(|s| Some((u32::try_from(s[2]).ok()?, u32::try_from(s[3]).ok()?)));
    Ok(ModelMetadata { metadata, input_hw })
}

/// Class names: the descriptor's, else a `character` metadata list (PaddleDetection exports),
/// else `class_{i}` for as many classes as the output shape says (none if it is dynamic).
fn class_names_for(descriptor: &ModelDescriptor, session: &Session) -> Vec<String> {
    if !descriptor.classes.is_empty() {
        return descriptor.classes.clone();
    }
    if let Some(names) = session.metadata().ok().and_then(|m| m.custom("character")) {
        return names.lines().map(str::to_owned).collect();
    }
    let outputs = session.outputs();
    let dim = |index: usize, axis: usize| {
        outputs
            .get(index)
            .and_then(|o| shape_of(o.dtype()))
            .and_then(|s| s.get(axis).copied())
            .and_then(|d| usize::try_from(d).ok())
    };
    let count = match descriptor.decoder {
        DecoderKind::Yolov8 => dim(0, 1).and_then(|d| d.checked_sub(4)),
        DecoderKind::Yolov5 => dim(0, 2).and_then(|d| d.checked_sub(5)),
        DecoderKind::Picodet => dim(0, 2),
        DecoderKind::Nms | DecoderKind::Embedding => None,
    };
    (0..count.unwrap_or(0))
        .map(|i| format!("class_{i}"))
        .collect()
}

fn shape_of(value_type: &ValueType) -> Option<Vec<i64>> {
    value_type.tensor_shape().map(|s| s.to_vec())
}

/// Formats a declared shape, with `?` for dynamic dimensions.
fn format_declared(shape: &[i64]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|&d| if d < 0 { "?".to_owned() } else { d.to_string() })
        .collect();
    format!("[{}]", dims.join(", "))
}

/// One float input `[1, 3, H, W]` whose fixed dimensions match the descriptor. Returns its name.
fn check_input(
    session: &Session,
    model: &str,
    descriptor: &ModelDescriptor,
) -> Result<String, InferenceError> {
    let inputs = session.inputs();
    let [input] = inputs else {
        let names: Vec<&str> = inputs.iter().map(|i| i.name()).collect();
        return Err(InferenceError::UnsupportedModel {
            model: model.to_owned(),
            message: format!(
                "the model has {} inputs ({}); Loupe feeds exactly one image tensor",
                inputs.len(),
                names.join(", ")
            ),
        });
    };
    let expected = format!(
        "[1, 3, {}, {}] (float, NCHW, size from the descriptor)",
        descriptor.input_height, descriptor.input_width
    );
    let mismatch = |actual: String| InferenceError::ShapeMismatch {
        model: model.to_owned(),
        tensor: format!("input `{}`", input.name()),
        expected: expected.clone(),
        actual,
    };
    let Some(shape) = shape_of(input.dtype()) else {
        return Err(mismatch("not a tensor".to_owned()));
    };
    if input.dtype().tensor_type() != Some(TensorElementType::Float32) {
        return Err(mismatch(format!(
            "{} of {:?}",
            format_declared(&shape),
            input.dtype().tensor_type()
        )));
    }
    let want = [
        1,
        3,
        i64::from(descriptor.input_height),
        i64::from(descriptor.input_width),
    ];
    let fits = shape.len() == 4
        && shape
            .iter()
            .zip(want)
            .all(|(&have, want)| have < 0 || have == want);
    if !fits {
        return Err(mismatch(format_declared(&shape)));
    }
    Ok(input.name().to_owned())
}

/// Checks what can be checked of the outputs before running: their count and fixed dimensions.
/// Dynamic dimensions are checked again by the decoders on every run. Also switches an
/// ultralytics-metadata descriptor to `yolov5` when the output is laid out that way.
fn check_outputs(
    session: &Session,
    model: &str,
    descriptor: &mut ModelDescriptor,
) -> Result<(), InferenceError> {
    let outputs = session.outputs();
    let unsupported = |message: String| InferenceError::UnsupportedModel {
        model: model.to_owned(),
        message,
    };
    let Some(first) = outputs.first() else {
        return Err(unsupported("the model has no outputs".to_owned()));
    };
    let nc = descriptor.classes.len();
    let known = |d: i64| d >= 0;
    match descriptor.decoder {
        DecoderKind::Yolov8 | DecoderKind::Yolov5 => {
            let shape = shape_of(first.dtype()).unwrap_or_default();
            let rank_ok = shape.len() == 3 && (!known(shape[0]) || shape[0] == 1);
            let rows_ok = |axis: usize, extra: usize| {
                rank_ok
                    && (!known(shape[axis])
                        || nc == 0
                        || shape[axis] == i64::try_from(nc + extra).unwrap_or(-1))
            };
            if descriptor.decoder == DecoderKind::Yolov8
                && !rows_ok(1, 4)
                && rows_ok(2, 5)
                && nc > 0
            {
                // YOLOv5 exports carry the same `names` metadata as ultralytics ones.
                tracing::debug!(model, "output laid out as YOLOv5; using the yolov5 decoder");
                descriptor.decoder = DecoderKind::Yolov5;
            }
            let num_classes = (nc > 0).then_some(nc);
            let (axis, extra, expected) = if descriptor.decoder == DecoderKind::Yolov8 {
                (1, 4, decode::yolov8_expected(num_classes))
            } else {
                (2, 5, decode::yolov5_expected(num_classes))
            };
            if !rows_ok(axis, extra) {
                return Err(InferenceError::ShapeMismatch {
                    model: model.to_owned(),
                    tensor: format!("output `{}`", first.name()),
                    expected,
                    actual: format_declared(&shape),
                });
            }
        }
        DecoderKind::Picodet => {
            let levels = descriptor.strides.len();
            if outputs.len() != 2 * levels {
                return Err(unsupported(format!(
                    "picodet with strides {:?} expects {} outputs (a score tensor for each \
                     stride, then a box-distribution tensor for each stride), the model has {}",
                    descriptor.strides,
                    2 * levels,
                    outputs.len()
                )));
            }
            for (i, output) in outputs.iter().enumerate() {
                let stride = descriptor.strides[i % levels];
                let cells = i64::from(descriptor.input_width.div_ceil(stride))
                    * i64::from(descriptor.input_height.div_ceil(stride));
                let shape = shape_of(output.dtype()).unwrap_or_default();
                let is_scores = i < levels;
                let last_ok = |d: i64| {
                    !known(d)
                        || if is_scores {
                            nc == 0 || d == i64::try_from(nc).unwrap_or(-1)
                        } else {
                            d >= 4 && d % 4 == 0
                        }
                };
                let fits = shape.len() == 3
                    && (!known(shape[0]) || shape[0] == 1)
                    && (!known(shape[1]) || shape[1] == cells)
                    && last_ok(shape[2]);
                if !fits {
                    let last = if is_scores {
                        if nc > 0 {
                            nc.to_string()
                        } else {
                            "classes".to_owned()
                        }
                    } else {
                        "4 * (reg_max + 1)".to_owned()
                    };
                    let what = if is_scores {
                        "scores"
                    } else {
                        "box distributions"
                    };
                    return Err(InferenceError::ShapeMismatch {
                        model: model.to_owned(),
                        tensor: format!("output `{}`", output.name()),
                        expected: format!("[1, {cells}, {last}] ({what} at stride {stride})"),
                        actual: format_declared(&shape),
                    });
                }
            }
        }
        DecoderKind::Embedding => {
            let output = match &descriptor.embedding_output {
                Some(name) => outputs
                    .iter()
                    .find(|o| o.name() == name.as_str())
                    .ok_or_else(|| {
                        let have: Vec<&str> = outputs.iter().map(|o| o.name()).collect();
                        unsupported(format!(
                            "the descriptor names output `{name}`, the model's outputs are {}",
                            have.join(", ")
                        ))
                    })?,
                None => first,
            };
            let shape = shape_of(output.dtype()).unwrap_or_default();
            let fits = (shape.len() == 2 || shape.len() == 4)
                && (!known(shape[0]) || shape[0] == 1)
                && (!known(shape[1]) || shape[1] > 0);
            if !fits {
                return Err(InferenceError::ShapeMismatch {
                    model: model.to_owned(),
                    tensor: format!("output `{}`", output.name()),
                    expected: "[1, D] or [1, D, H, W] (an image embedding)".to_owned(),
                    actual: format_declared(&shape),
                });
            }
            descriptor.embedding_output = Some(output.name().to_owned());
        }
        DecoderKind::Nms => {
            let names = &descriptor.nms_outputs;
            for wanted in [&names.boxes, &names.scores, &names.labels] {
                if !outputs.iter().any(|o| o.name() == wanted.as_str()) {
                    let have: Vec<&str> = outputs.iter().map(|o| o.name()).collect();
                    return Err(unsupported(format!(
                        "the descriptor names output `{wanted}`, the model's outputs are {}",
                        have.join(", ")
                    )));
                }
            }
        }
    }
    Ok(())
}
