//! The one error type of the inference module.

use std::fmt::Write as _;
use std::path::PathBuf;

/// Everything that can go wrong while finding ONNX Runtime, loading a model or running it.
///
/// Every variant is `Send + Sync`: errors from `ort` (some of which are not `Send`) are turned
/// into strings where they happen.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// The ONNX Runtime shared library is not in any of the places Loupe looks.
    #[error(
        "ONNX Runtime is not installed: no {lib} in {searched}. In a Loupe checkout run \
         scripts/fetch-onnxruntime.sh; otherwise install ONNX Runtime 1.17 or newer (for \
         example from the `onnxruntime` wheel on PyPI, file onnxruntime/capi/libonnxruntime.so.*) \
         and either put the library next to the loupe executable or set ORT_DYLIB_PATH to it",
        lib = super::runtime::library_file_name(),
        searched = list_paths(searched)
    )]
    RuntimeMissing { searched: Vec<PathBuf> },

    /// The library was found but could not be loaded or initialised.
    #[error("cannot load ONNX Runtime from {path}: {message}")]
    RuntimeLoad { path: PathBuf, message: String },

    /// An execution provider that was asked for cannot run here (not in the ONNX Runtime
    /// library found, its own libraries missing, no device).
    #[error("the {provider} execution provider cannot be used: {reason}")]
    ProviderUnavailable { provider: String, reason: String },

    /// The model file could not be read.
    #[error("cannot read model {path}: {source}")]
    ModelIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// ONNX Runtime refused the file (not ONNX, truncated, unsupported operators, ...).
    #[error("{path} is not a model ONNX Runtime can load: {message}")]
    InvalidModel { path: PathBuf, message: String },

    /// The model loaded but its inputs or outputs do not fit what Loupe or the descriptor expects.
    #[error("model {model}: {tensor} has shape {actual}, expected {expected}")]
    ShapeMismatch {
        model: String,
        /// Which tensor, e.g. "input `images`" or "output `output0`".
        tensor: String,
        expected: String,
        actual: String,
    },

    /// The model's inputs or outputs are wrong in a way a shape alone does not say.
    #[error("model {model}: {message}")]
    UnsupportedModel { model: String, message: String },

    /// No descriptor beside the model and nothing in the model's metadata to build one from.
    #[error(
        "{model} needs a descriptor: write {toml} (decoder, input size, preprocessing, class \
         names; see `loupe::inference::ModelDescriptor`) or pass a preset{known_presets}"
    )]
    DescriptorMissing {
        model: PathBuf,
        toml: PathBuf,
        known_presets: String,
    },

    /// A descriptor file that cannot be read or parsed, or whose values make no sense.
    #[error("descriptor {source_name}: {message}")]
    InvalidDescriptor {
        source_name: String,
        message: String,
    },

    /// `ModelDescriptor::preset` was given a name it does not know.
    #[error("unknown model preset `{name}`; known presets: {known}")]
    UnknownPreset { name: String, known: String },

    /// The image could not be read or decoded.
    #[error(transparent)]
    Image(#[from] crate::imaging::ImageError),

    /// Resizing or normalising the image failed.
    #[error("cannot preprocess image: {0}")]
    Preprocess(String),

    /// `session.run` failed.
    #[error("model {model}: inference failed: {message}")]
    Run { model: String, message: String },

    /// Something panicked while handling one image; the run went on without it.
    #[error("internal error while processing {what}: {message}")]
    Panicked { what: String, message: String },
}

fn list_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(nowhere)".to_owned();
    }
    let mut out = String::new();
    for (i, path) in paths.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}", path.display());
    }
    out
}
