//! Import and export of COCO, YOLO, Pascal VOC, COCO results, CVAT XML, Label Studio JSON,
//! labelme, CreateML and Open Images files.
//!
//! Every importer produces a format-neutral [`Dataset`] plus structured [`Warning`]s, or refuses
//! the input as a whole with a [`FormatError`] that names the file and, where known, the line or
//! record. Nothing is ever half-imported: a malformed file gives an error, never a partial dataset.
//!
//! Rules shared by all formats:
//! - Geometry is in image pixels. A box partly outside its image is clipped to the image
//!   (`clipped_box` warning); overshoots smaller than rounding noise (see [`clip_tolerance`]) are
//!   clipped silently. A box with no area, or lying wholly outside its image, is dropped
//!   (`zero_area_box` warning).
//! - `Parsed::skipped` counts source annotations that did not become boxes: COCO annotations
//!   without a bbox (captions, label-only, keypoints-only, panoptic records), dropped zero-area
//!   boxes, and YOLO labels whose image is missing. Each has a warning too.
//! - Warnings are listed one per occurrence up to [`MAX_WARNINGS_PER_KIND`] per kind; past that,
//!   one closing warning of the same kind says how many more there were.
//! - Classes map through names and are never reordered: COCO keeps the order of `categories`,
//!   YOLO the index order of its names list, VOC the order of a class list file beside the XML
//!   files, or else the order of first appearance.

mod coco;
mod createml;
mod cvat;
mod labelme;
mod labelstudio;
mod layout;
mod openimages;
mod output;
mod voc;
mod yolo;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cvatls;
#[cfg(test)]
mod tests_json_csv;

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use crate::limits;
use crate::model::{BBox, Dataset, Unresolved, Warning};

pub use coco::{
    CocoBox, CocoDetection, CocoGt, CocoGtImage, CocoIds, CocoResults, import_coco_results_with_gt,
    import_coco_with_ids, read_coco_gt, read_coco_results,
};

/// The interchange formats Loupe reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// COCO instances JSON (`images`, `annotations`, `categories`).
    Coco,
    /// YOLO: the ultralytics layout (`data.yaml`, `images/`, `labels/`) or the Darknet layout
    /// (`obj.data`, `obj.names`, `train.txt`).
    Yolo,
    /// Pascal VOC XML, one file per image.
    Voc,
    /// COCO detection results: a JSON array of `{image_id, category_id, bbox, score}`.
    CocoResults,
    /// labelme JSON, one file per image (rectangle shapes).
    Labelme,
    /// CreateML JSON (box centre, width and height in pixels).
    Createml,
    /// Open Images V6 bounding-box CSV with its class descriptions.
    Openimages,
    /// CVAT for images 1.1 XML (`annotations.xml`; video exports' tracks become per-frame boxes).
    Cvat,
    /// Label Studio JSON export (full or JSON-MIN); `predictions` become model runs.
    LabelStudio,
}

impl Format {
    /// Every format, in the order the CLI lists them.
    pub const ALL: [Format; 9] = [
        Format::Coco,
        Format::Yolo,
        Format::Voc,
        Format::CocoResults,
        Format::Labelme,
        Format::Createml,
        Format::Openimages,
        Format::Cvat,
        Format::LabelStudio,
    ];

    /// The name used on the command line and in settings.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Coco => "coco",
            Format::Yolo => "yolo",
            Format::Voc => "voc",
            Format::CocoResults => "coco-results",
            Format::Labelme => "labelme",
            Format::Createml => "createml",
            Format::Openimages => "openimages",
            Format::Cvat => "cvat",
            Format::LabelStudio => "labelstudio",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name that [`Format::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown format `{0}` (expected coco, yolo, voc, coco-results, cvat, labelstudio, labelme, createml or openimages)"
)]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "coco" => Ok(Format::Coco),
            "yolo" => Ok(Format::Yolo),
            "voc" | "pascal-voc" | "pascal_voc" => Ok(Format::Voc),
            "coco-results" | "coco_results" => Ok(Format::CocoResults),
            "labelme" => Ok(Format::Labelme),
            "createml" | "create-ml" => Ok(Format::Createml),
            "openimages" | "open-images" | "oid" => Ok(Format::Openimages),
            "cvat" => Ok(Format::Cvat),
            "labelstudio" | "label-studio" | "label_studio" => Ok(Format::LabelStudio),
            _ => Err(UnknownFormat(s.to_owned())),
        }
    }
}

/// What an import produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    pub dataset: Dataset,
    /// Recovered oddities, in the order they were met.
    pub warnings: Vec<Warning>,
    /// The folder that every `DatasetImage::file_name` is relative to.
    pub images_dir: PathBuf,
    /// Source annotations that did not become boxes (no bbox, zero area, image missing).
    pub skipped: usize,
    /// Model predictions carried in the same file as the labels (Label Studio `predictions`),
    /// one set per model. Kept out of `dataset` so the labels stay ground truth; each set becomes
    /// a run whose proposals are written in the same transaction as the labels.
    pub predictions: Vec<Predictions>,
    /// Listed entries the importer could not resolve itself (a YOLO label file or list line
    /// whose image is nowhere to be found, a split folder that does not exist). Images that the
    /// dataset names but that are not on disk are judged later, against the project, by
    /// `ingest::import_dataset`.
    pub unresolved: Vec<Unresolved>,
    /// Stack membership the file records per `DatasetImage::file_name` (COCO `images[].extra`
    /// as Loupe writes it): the import gives it to images that have none.
    pub frames: HashMap<String, crate::model::FrameRef>,
}

/// The predictions of one model in an imported file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Predictions {
    /// The model's name in the file (Label Studio `model_version`); the run is named after it.
    pub model: String,
    /// Every image the model was run on (including those where it found nothing), with its
    /// boxes and their scores. Classes index this dataset's own `classes`.
    pub dataset: Dataset,
}

/// What an export wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Files created or replaced, images copied included.
    pub files_written: usize,
    pub images: usize,
    pub boxes: usize,
}

/// Why an import or export was refused. Always names the file, and the line or record where
/// known.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: invalid JSON: {reason}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{}:{line}:{column}: invalid XML: {reason}", path.display())]
    Xml {
        path: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{}:{line}:{column}: invalid YAML: {reason}", path.display())]
    Yaml {
        path: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{}: {record}: missing required field `{field}`", path.display())]
    MissingField {
        path: PathBuf,
        record: String,
        field: &'static str,
    },
    #[error("{}: {record}: unknown category id {category_id} (not in `categories`)", path.display())]
    UnknownCategory {
        path: PathBuf,
        record: String,
        category_id: i64,
    },
    #[error("{}: {record}: unknown image id {image_id} (not in `images`)", path.display())]
    UnknownImage {
        path: PathBuf,
        record: String,
        image_id: i64,
    },
    #[error("{}: {record}: duplicate annotation id {id}", path.display())]
    DuplicateAnnotationId {
        path: PathBuf,
        record: String,
        id: i64,
    },
    #[error("{}: {record}: duplicate image id {id}", path.display())]
    DuplicateImageId {
        path: PathBuf,
        record: String,
        id: i64,
    },
    #[error("{}: {record}: negative image size {width}x{height}", path.display())]
    NegativeSize {
        path: PathBuf,
        record: String,
        width: f64,
        height: f64,
    },
    #[error(
        "{}:{line}: class index {index} has no name (the class list has {classes} names)",
        path.display()
    )]
    UnknownClassIndex {
        path: PathBuf,
        line: usize,
        index: i64,
        classes: usize,
    },
    #[error(
        "{}: no class names found (expected data.yaml `names`, obj.data `names`, obj.names or classes.txt)",
        path.display()
    )]
    NoClassNames { path: PathBuf },
    #[error("{}: {location}: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        location: String,
        reason: String,
    },
    #[error("{}: {location}: {ambiguity}; name the folder in the file or pass --images", path.display())]
    Ambiguous {
        path: PathBuf,
        location: String,
        ambiguity: AmbiguousName,
    },
    #[error("{}: {reason}", path.display())]
    Unsupported { path: PathBuf, reason: String },
    #[error("{}: cannot export: {reason}", path.display())]
    Export { path: PathBuf, reason: String },
}

impl FormatError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        FormatError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn invalid(
        path: &Path,
        location: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        FormatError::Invalid {
            path: path.to_path_buf(),
            location: location.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn export(path: &Path, reason: impl Into<String>) -> Self {
        FormatError::Export {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// Reads a dataset in `format` from `path`.
///
/// `path` is the COCO JSON file, the YOLO `data.yaml`/`obj.data` or dataset folder, the VOC XML
/// file or folder of XML files, or the COCO results file. `images_dir`, when given, is the folder
/// the images live in and becomes [`Parsed::images_dir`]; each format has a sensible default
/// (the JSON's folder for COCO, the dataset root for YOLO, `JPEGImages/` or the XML folder for VOC).
///
/// # Errors
///
/// Refuses the whole input, naming the file and the line or record, when it cannot be read, is
/// not valid JSON/XML/YAML, or breaks the format's rules (unknown category or image id, duplicate
/// ids, negative size, a class index with no name, a missing required field).
pub fn import(
    format: Format,
    path: &Path,
    images_dir: Option<&Path>,
) -> Result<Parsed, FormatError> {
    let settings = ImportSettings {
        images_dir: images_dir.map(Path::to_path_buf),
        ..ImportSettings::default()
    };
    import_with(format, path, &settings)
}

/// How an import reads its input, beyond the format and the path.
#[derive(Clone, Debug, Default)]
pub struct ImportSettings {
    /// The folder the images live in (`--images`); see [`import`].
    pub images_dir: Option<PathBuf>,
    /// Shapes other than boxes (polygons, circles, rotated boxes, …) become their bounding box
    /// (`--shapes-as-boxes`) instead of being skipped with a count.
    pub shapes_as_boxes: bool,
    /// The images the destination project already holds: the last place a listed image that is
    /// not on disk where the file says is looked for (by file name). Formats that need the image
    /// itself to place boxes (YOLO's normalised coordinates) use it; the others leave matching to
    /// `ingest`.
    pub known_images: Option<Arc<dyn KnownImages>>,
    /// A Darknet `obj.data` may name its `names` and list files outside the dataset folder
    /// (`--allow-outside`); without it they are refused.
    pub allow_outside: bool,
}

/// Images the destination already holds, looked up by file name. Implemented by
/// `ingest::ProjectImages`; kept as a trait so that formats never reach into the store.
pub trait KnownImages: Send + Sync + fmt::Debug {
    /// The one known image that `listed` (a path as a file lists it) names by file name; with
    /// `any_extension`, by file stem among image files (a label file `a.txt` names `a.jpg`).
    /// See [`pick_by_name`] for how several images sharing the name are told apart.
    ///
    /// # Errors
    ///
    /// [`AmbiguousName`] when the name does not single out one image.
    fn find_by_name(
        &self,
        listed: &str,
        any_extension: bool,
    ) -> Result<Option<KnownFile>, AmbiguousName>;
}

/// A known image found by [`KnownImages::find_by_name`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownFile {
    /// Its file (absolute; it may be missing on disk when the project knows it from an import).
    pub file: PathBuf,
    /// Its size as the project knows it (0 when unknown).
    pub width: u32,
    pub height: u32,
}

/// A file name that matches several images, none better than the others.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{name}` is ambiguous: it matches {}",
    describe_candidates(candidates)
)]
pub struct AmbiguousName {
    /// The name (or path) as listed.
    pub name: String,
    /// The equally good candidates, in path order (at least two).
    pub candidates: Vec<String>,
}

fn describe_candidates(candidates: &[String]) -> String {
    match candidates {
        [a, b] => format!("`{a}` and `{b}`"),
        [a, b, rest @ ..] => format!("`{a}`, `{b}` and {} more", rest.len()),
        _ => candidates.join(", "),
    }
}

/// Picks the one candidate that a listed path names by file name.
///
/// `candidates` are `(path, value)` pairs whose file name (or stem) already equals the listed
/// one's, paths with `/` or `\` separators. One candidate: it. Several: the one whose folders
/// also end like the listed path's (`train/a.jpg` picks `x/train/a.jpg` over `x/val/a.jpg`),
/// when exactly one has the longest such agreement; otherwise the name is ambiguous, and the
/// error names the best candidates.
///
/// # Errors
///
/// [`AmbiguousName`] as above.
pub fn pick_by_name<T>(
    listed: &str,
    candidates: Vec<(String, T)>,
) -> Result<Option<T>, AmbiguousName> {
    if candidates.len() <= 1 {
        return Ok(candidates.into_iter().next().map(|(_, v)| v));
    }
    let folders = |p: &str| -> Vec<String> {
        let mut parts: Vec<String> = p
            .split(['/', '\\'])
            .filter(|s| !s.is_empty() && *s != ".")
            .map(str::to_owned)
            .collect();
        parts.pop();
        parts
    };
    let wanted = folders(listed);
    let agreement = |path: &str| {
        folders(path)
            .iter()
            .rev()
            .zip(wanted.iter().rev())
            .take_while(|(a, b)| a == b)
            .count()
    };
    let scored: Vec<(usize, String, T)> = candidates
        .into_iter()
        .map(|(p, v)| (agreement(&p), p, v))
        .collect();
    let best = scored.iter().map(|(s, _, _)| *s).max().unwrap_or(0);
    let mut top: Vec<(String, T)> = scored
        .into_iter()
        .filter(|(s, _, _)| *s == best)
        .map(|(_, p, v)| (p, v))
        .collect();
    if top.len() == 1 {
        return Ok(top.pop().map(|(_, v)| v));
    }
    let mut names: Vec<String> = top.into_iter().map(|(p, _)| p).collect();
    names.sort();
    Err(AmbiguousName {
        name: listed.to_owned(),
        candidates: names,
    })
}

/// [`import`] with every setting spelled out.
///
/// # Errors
///
/// As [`import`].
pub fn import_with(
    format: Format,
    path: &Path,
    settings: &ImportSettings,
) -> Result<Parsed, FormatError> {
    let images_dir = settings.images_dir.as_deref();
    let mut parsed = match format {
        Format::Coco => coco::import_instances(path, images_dir),
        Format::Yolo => yolo::import(path, settings),
        Format::Voc => voc::import(path, images_dir),
        Format::CocoResults => coco::import_results(path, images_dir),
        Format::Labelme => labelme::import(path, settings),
        Format::Createml => createml::import(path, settings),
        Format::Openimages => openimages::import(path, settings),
        Format::Cvat => cvat::import(path, settings),
        Format::LabelStudio => labelstudio::import(path, settings),
    }?;
    note_shared_class_names(&mut parsed, path);
    Ok(parsed)
}

/// Two classes of one file with the same name become one class of the project (classes are
/// names): never silently. Each name listed more than once gets a `merged_classes` warning
/// naming the positions that share it.
pub(crate) fn note_shared_class_names(parsed: &mut Parsed, path: &Path) {
    let mut first: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, name) in parsed.dataset.classes.iter().enumerate() {
        first.entry(name.as_str()).or_default().push(i);
    }
    let mut shared: Vec<(&str, Vec<usize>)> =
        first.into_iter().filter(|(_, at)| at.len() > 1).collect();
    shared.sort_by_key(|(_, at)| at[0]);
    let warnings: Vec<Warning> = shared
        .into_iter()
        .map(|(name, at)| Warning {
            kind: "merged_classes".into(),
            location: path.display().to_string(),
            message: format!(
                "{} classes of the file (positions {}) are all named `{name}`: their boxes are merged into one class `{name}`",
                at.len(),
                at.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
        })
        .collect();
    parsed.warnings.extend(warnings);
}

/// Writes `dataset` in `format` to `out`: [`export_with`] for callers that only say where the
/// images are.
///
/// - COCO and COCO results: `out` is the JSON file, or a folder that gets `annotations.json`
///   (COCO) or `results.json` (results).
/// - YOLO: `out` is the dataset folder (`data.yaml`, `images/train/`, `labels/train/`).
/// - VOC: `out` is the dataset folder (`Annotations/`, `labels.txt`, `JPEGImages/`).
/// - labelme: `out` is a folder that gets `<image path>.json` beside each image.
/// - CreateML: `out` is the JSON file, or a folder that gets `_annotations.createml.json`.
/// - Open Images: `out` is the dataset folder (`annotations/`, `images/train/`).
/// - CVAT: `out` is the XML file, or a folder that gets `annotations.xml`.
/// - Label Studio: `out` is the JSON file, or a folder that gets `tasks.json`.
///
/// For COCO, YOLO and VOC:
/// With `images_root`, the images are hard-linked (or copied) into YOLO and VOC exports and an
/// image missing there is listed in the outcome but does not stop the export
/// ([`ExportSettings::allow_missing`]); without it, no image is placed. COCO is always one file
/// with the project's paths (`out`, or `out/annotations.json` for a folder), as with
/// [`ImagesMode::None`].
///
/// # Errors
///
/// As [`export_with`].
pub fn export(
    format: Format,
    dataset: &Dataset,
    out: &Path,
    images_root: Option<&Path>,
) -> Result<ExportReport, FormatError> {
    match format {
        Format::Coco | Format::Yolo | Format::Voc => {
            let settings = match (format, images_root) {
                // COCO never carried images through this call: one file with the project's paths.
                (Format::Coco, _) | (_, None) => ExportSettings::default(),
                (_, Some(root)) => ExportSettings {
                    images: ImagesMode::Link,
                    images_root: Some(root.to_path_buf()),
                    allow_missing: true,
                    ..ExportSettings::default()
                },
            };
            export_with(format, dataset, out, &settings).map(|o| o.report)
        }
        other => export_other(other, dataset, out, images_root, false),
    }
}

/// The formats [`export_with`] passes on whole: they take the images root and `force` only.
fn export_other(
    format: Format,
    dataset: &Dataset,
    out: &Path,
    images_root: Option<&Path>,
    force: bool,
) -> Result<ExportReport, FormatError> {
    match format {
        Format::Coco | Format::Yolo | Format::Voc => {
            let settings = ExportSettings {
                images_root: images_root.map(Path::to_path_buf),
                force,
                ..ExportSettings::default()
            };
            export_with(format, dataset, out, &settings).map(|o| o.report)
        }
        Format::CocoResults => coco::export_results(dataset, out, force),
        Format::Labelme => labelme::export(dataset, out, images_root, force),
        Format::Createml => createml::export(dataset, out, images_root, force),
        Format::Openimages => openimages::export(dataset, out, images_root, force),
        Format::Cvat => cvat::export(dataset, out, force),
        Format::LabelStudio => labelstudio::export(dataset, out, force),
    }
}

/// Whether the images go with an export (`--images`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImagesMode {
    /// Hard links to the project's files; a copy where linking fails (another device, a file
    /// system without hard links). [`ExportOutcome`] says which happened.
    Link,
    /// Copies.
    Copy,
    /// Labels only; COCO `file_name`s stay the project's paths.
    #[default]
    None,
}

impl ImagesMode {
    /// The name used on the command line.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ImagesMode::Link => "link",
            ImagesMode::Copy => "copy",
            ImagesMode::None => "none",
        }
    }
}

impl FromStr for ImagesMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "link" => Ok(ImagesMode::Link),
            "copy" => Ok(ImagesMode::Copy),
            "none" => Ok(ImagesMode::None),
            _ => Err(format!(
                "unknown images mode `{s}` (expected copy, link or none)"
            )),
        }
    }
}

/// A seeded split of the images (`--split train=0.8,val=0.2`): split names with their fractions,
/// in the order given. Names are `train`, `val` and `test`, `train` among them; the fractions are
/// positive and add up to 1.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitSpec {
    pub parts: Vec<(String, f64)>,
}

impl FromStr for SplitSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts: Vec<(String, f64)> = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let Some((name, fraction)) = item.split_once('=') else {
                return Err(format!("`{item}`: expected NAME=FRACTION, e.g. train=0.8"));
            };
            let name = name.trim().to_ascii_lowercase();
            if !["train", "val", "test"].contains(&name.as_str()) {
                return Err(format!("`{name}`: split names are train, val and test"));
            }
            if parts.iter().any(|(n, _)| *n == name) {
                return Err(format!("`{name}` is given twice"));
            }
            let fraction: f64 = fraction
                .trim()
                .parse()
                .map_err(|_| format!("`{item}`: the fraction is not a number"))?;
            if !(fraction > 0.0 && fraction <= 1.0) {
                return Err(format!("`{item}`: the fraction must be in (0, 1]"));
            }
            parts.push((name, fraction));
        }
        if !parts.iter().any(|(n, _)| n == "train") {
            return Err("the split needs a `train` part".to_owned());
        }
        let total: f64 = parts.iter().map(|(_, f)| f).sum();
        if (total - 1.0).abs() > 1e-6 {
            return Err(format!("the fractions add up to {total}, not 1"));
        }
        Ok(SplitSpec { parts })
    }
}

/// How an export writes its output, beyond the format and the folder.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExportSettings {
    /// Whether the images go with the export.
    pub images: ImagesMode,
    /// The folder `DatasetImage::file_name` is relative to (the project folder); needed to link
    /// or copy images. Paths starting with `..` (images outside the project folder) are kept.
    pub images_root: Option<PathBuf>,
    /// An image that cannot be found is listed in the outcome and its labels are still written,
    /// instead of refusing the export.
    pub allow_missing: bool,
    /// A seeded split; without one, every image is in `train` (YOLO: one flat folder).
    pub split: Option<SplitSpec>,
    /// Seed of the split: the same images and seed always give the same split.
    pub seed: u64,
    /// COCO: give each annotation its box as a polygon `segmentation` (converters then make a
    /// polygon of it too); without it, `segmentation` is empty.
    pub coco_segmentation: bool,
    /// Content hash (blake3 hex) per `DatasetImage::file_name`: the key of the split, so an image
    /// keeps its split when it is moved or renamed. Images without one use their file name.
    pub content_hashes: HashMap<String, String>,
    /// Stack membership and DICOM references per `DatasetImage::file_name`
    /// ([`crate::stacks::frame_refs`]): COCO writes them as `images[].extra`.
    pub frames: HashMap<String, crate::model::FrameRef>,
    /// What stands where a file is written: without `force`, a symbolic link or a special file
    /// (FIFO, device) is refused; with it, links are followed and special files written into
    /// (see `output.rs`). Regular files are always replaced through a renamed temporary file.
    pub force: bool,
}

/// What [`export_with`] wrote, and everything it did beyond the plain request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportOutcome {
    pub report: ExportReport,
    /// Images per split, in split order.
    pub splits: Vec<(String, usize)>,
    /// Images whose name clashed with another's once folders were dropped: (the image's path,
    /// its name in the export).
    pub renamed: Vec<(String, String)>,
    pub images_linked: usize,
    pub images_copied: usize,
    /// Why hard links fell back to copies (the first failure), in link mode.
    pub link_fallback: Option<String>,
    /// Images not found (exported without their file, with `allow_missing`): their paths.
    pub missing: Vec<String>,
    /// Facts the user should know about the layout (e.g. that `val` is the training set).
    pub notes: Vec<String>,
}

impl From<ExportReport> for ExportOutcome {
    fn from(report: ExportReport) -> Self {
        ExportOutcome {
            report,
            ..ExportOutcome::default()
        }
    }
}

/// Writes `dataset` in `format` to `out`, as the tools that train and convert read it.
///
/// - COCO: with images copied or linked, `out/annotations/instances_<split>.json` beside
///   `out/images/<split>/`, `file_name` relative to that folder. With [`ImagesMode::None`], one
///   file (`out` itself when it ends in `.json`, else `out/annotations.json`; per split
///   `out/annotations/instances_<split>.json` when a split is asked) whose `file_name`s are the
///   project's paths. Loupe's own keys are `loupe_*`.
/// - YOLO: `data.yaml` (`path: ''`, i.e. this folder), `classes.txt`, and `images/NAME` +
///   `labels/NAME.txt`; with a split, `images/<split>/` + `labels/<split>/`.
/// - VOC: `Annotations/NAME.xml`, `JPEGImages/NAME`, `ImageSets/Main/<split>.txt`, `labelmap.txt`.
///
/// YOLO, VOC and copied COCO images are named by their file name alone; names that clash once
/// the folders are dropped are resolved deterministically and listed in [`ExportOutcome::renamed`].
///
/// # Errors
///
/// Refuses, before writing anything, a dataset the format cannot hold faithfully (a class index
/// out of range, a non-finite box, an empty file name, for YOLO an image of unknown size, a class
/// name a class list cannot hold), images that cannot be found unless `allow_missing`, and
/// reports write failures.
pub fn export_with(
    format: Format,
    dataset: &Dataset,
    out: &Path,
    settings: &ExportSettings,
) -> Result<ExportOutcome, FormatError> {
    match format {
        Format::Coco => coco::export_instances(dataset, out, settings),
        Format::Yolo => yolo::export(dataset, out, settings),
        Format::Voc => voc::export(dataset, out, settings),
        other => export_other(
            other,
            dataset,
            out,
            settings.images_root.as_deref(),
            settings.force,
        )
        .map(Into::into),
    }
}

/// Per kind, warnings listed one by one before they are summarised.
pub const MAX_WARNINGS_PER_KIND: usize = 1000;

/// Collects warnings and the skipped count during one import.
#[derive(Debug, Default)]
pub(crate) struct Report {
    warnings: Vec<(&'static str, Warning)>,
    counts: HashMap<&'static str, usize>,
    pub(crate) skipped: usize,
}

impl Report {
    /// Records one warning; the closures only run while the kind is under its cap.
    pub(crate) fn warn(
        &mut self,
        kind: &'static str,
        location: impl FnOnce() -> String,
        message: impl FnOnce() -> String,
    ) {
        let count = self.counts.entry(kind).or_insert(0);
        *count += 1;
        if *count <= MAX_WARNINGS_PER_KIND {
            let warning = Warning {
                kind: kind.to_owned(),
                location: location(),
                message: message(),
            };
            self.warnings.push((kind, warning));
        }
    }

    /// Appends the warnings and skips of a sub-report (one file or one image).
    pub(crate) fn absorb(&mut self, other: Report) {
        self.skipped += other.skipped;
        for (kind, total) in &other.counts {
            // Occurrences the sub-report counted but did not list still count here.
            let unlisted = total.saturating_sub(MAX_WARNINGS_PER_KIND);
            *self.counts.entry(kind).or_insert(0) += unlisted;
        }
        for (kind, warning) in other.warnings {
            let count = self.counts.entry(kind).or_insert(0);
            *count += 1;
            if *count <= MAX_WARNINGS_PER_KIND {
                self.warnings.push((kind, warning));
            }
        }
    }

    /// The warnings, with one closing summary per kind that went over the cap, and the skipped
    /// count.
    pub(crate) fn finish(self, source: &Path) -> (Vec<Warning>, usize) {
        let mut warnings: Vec<Warning> = self.warnings.into_iter().map(|(_, w)| w).collect();
        let mut over: Vec<_> = self
            .counts
            .into_iter()
            .filter(|(_, n)| *n > MAX_WARNINGS_PER_KIND)
            .collect();
        over.sort_unstable();
        for (kind, total) in over {
            warnings.push(Warning {
                kind: kind.to_owned(),
                location: source.display().to_string(),
                message: format!(
                    "{} more `{kind}` warnings not listed ({total} in all)",
                    total - MAX_WARNINGS_PER_KIND
                ),
            });
        }
        (warnings, self.skipped)
    }
}

/// How an imported box fared against its image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum BoxCheck {
    /// Inside the image (or the image size is unknown); possibly nudged in by rounding noise.
    Keep(BBox),
    /// Partly outside: this is the part inside.
    Clipped(BBox),
    /// No area, or wholly outside the image.
    ZeroArea,
}

/// Overshoot (in pixels) below which a box edge outside the image is rounding noise, not an
/// annotation error. YOLO's 6 decimals alone give up to `1e-6 * size` of error per edge.
pub(crate) fn clip_tolerance(width: u32, height: u32) -> f64 {
    (2e-6 * f64::from(width.max(height))).max(1e-3)
}

/// Checks a box against a `width` x `height` image (0 = unknown size: no clipping).
pub(crate) fn check_box(bbox: BBox, width: u32, height: u32) -> BoxCheck {
    if !(bbox.w > 0.0 && bbox.h > 0.0) {
        return BoxCheck::ZeroArea;
    }
    if width == 0 || height == 0 {
        return BoxCheck::Keep(bbox);
    }
    let (w, h) = (f64::from(width), f64::from(height));
    if bbox.is_inside(w, h) {
        return BoxCheck::Keep(bbox);
    }
    let clipped = bbox.clipped(w, h);
    if !(clipped.w > 0.0 && clipped.h > 0.0) {
        return BoxCheck::ZeroArea;
    }
    let tol = clip_tolerance(width, height);
    let noise = bbox.x >= -tol && bbox.y >= -tol && bbox.x2() <= w + tol && bbox.y2() <= h + tol;
    if noise {
        BoxCheck::Keep(clipped)
    } else {
        BoxCheck::Clipped(clipped)
    }
}

/// Applies [`check_box`] and records the warning it calls for. Returns the box to keep, if any.
pub(crate) fn accept_box(
    report: &mut Report,
    bbox: BBox,
    width: u32,
    height: u32,
    location: impl FnOnce() -> String,
) -> Option<BBox> {
    match check_box(bbox, width, height) {
        BoxCheck::Keep(b) => Some(b),
        BoxCheck::Clipped(b) => {
            report.warn("clipped_box", location, || {
                format!(
                    "box [{}, {}, {}, {}] lies partly outside the {width}x{height} image; clipped to [{}, {}, {}, {}]",
                    bbox.x, bbox.y, bbox.w, bbox.h, b.x, b.y, b.w, b.h
                )
            });
            Some(b)
        }
        BoxCheck::ZeroArea => {
            report.skipped += 1;
            report.warn("zero_area_box", location, || {
                format!(
                    "box [{}, {}, {}, {}] has no area inside the {width}x{height} image; dropped",
                    bbox.x, bbox.y, bbox.w, bbox.h
                )
            });
            None
        }
    }
}

/// A fast hasher for integer ids (multiplicative, like rustc's FxHash). Ids in annotation files
/// are not adversarial, and a million inserts with SipHash would dominate a COCO import.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_i64(&mut self, n: i64) {
        self.0 =
            (self.0.rotate_left(5) ^ n.cast_unsigned()).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A hash map keyed by integer ids.
pub(crate) type IdMap<V> = HashMap<i64, V, BuildHasherDefault<IdHasher>>;

/// A hash set of integer ids.
pub(crate) type IdSet = std::collections::HashSet<i64, BuildHasherDefault<IdHasher>>;

/// Reads a whole file, naming it in the error. Only regular files (or links to them) are read:
/// a FIFO would block the import until something wrote to it and a device may never end, so
/// they are refused before being opened.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, FormatError> {
    let meta = std::fs::metadata(path).map_err(|e| FormatError::io(path, e))?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a folder"
        } else {
            output::special_kind(&meta)
        };
        return Err(FormatError::Unsupported {
            path: path.to_path_buf(),
            reason: format!("is {what}, not a regular file: refused, not read"),
        });
    }
    std::fs::read(path).map_err(|e| FormatError::io(path, e))
}

/// Reads a text file as UTF-8 (a leading byte-order mark is dropped).
pub(crate) fn read_text(path: &Path) -> Result<String, FormatError> {
    text_from_bytes(path, read_file(path)?)
}

/// [`read_text`] for a configuration file (`data.yaml`, `obj.data`), refused before it is read
/// when it is larger than [`limits::MAX_CONFIG_BYTES`].
pub(crate) fn read_config_text(path: &Path) -> Result<String, FormatError> {
    let len = std::fs::metadata(path)
        .map_err(|e| FormatError::io(path, e))?
        .len();
    if len > limits::MAX_CONFIG_BYTES {
        return Err(FormatError::invalid(
            path,
            "whole file",
            format!(
                "{len} bytes is more than the limit of {} bytes for a configuration file; \
                 refused before reading",
                limits::MAX_CONFIG_BYTES
            ),
        ));
    }
    read_text(path)
}

/// A file's bytes as UTF-8 text, without a leading byte-order mark.
fn text_from_bytes(path: &Path, bytes: Vec<u8>) -> Result<String, FormatError> {
    let bytes = bytes
        .strip_prefix(b"\xEF\xBB\xBF")
        .map(<[u8]>::to_vec)
        .unwrap_or(bytes);
    String::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_column(e.as_bytes(), e.utf8_error().valid_up_to());
        FormatError::invalid(
            path,
            format!("line {line}, column {column}"),
            "the file is not valid UTF-8",
        )
    })
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_column(text: &[u8], offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    (line, offset.saturating_sub(line_start) + 1)
}

/// Names of class list files recognised beside VOC and YOLO annotations, in order of preference.
pub(crate) const CLASS_LIST_FILES: &[&str] = &[
    "classes.txt",
    "labels.txt",
    "class_names.txt",
    "labelmap.txt",
];

/// Reads a class list: one name per line, blank lines ignored. `labelmap.txt` (the CVAT/Datumaro
/// VOC label map, `name:color:parts:actions` with `#` comments) gives the part before the colon.
pub(crate) fn read_class_list(path: &Path) -> Result<Vec<String>, FormatError> {
    let text = read_text(path)?;
    let is_labelmap = path
        .file_name()
        .is_some_and(|n| n.eq_ignore_ascii_case("labelmap.txt"));
    let mut names = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if is_labelmap {
            if line.starts_with('#') {
                continue;
            }
            let name = line.split(':').next().unwrap_or(line).trim();
            names.push(name.to_owned());
        } else {
            names.push(line.to_owned());
        }
    }
    Ok(names)
}

/// `path` made absolute and with `.` and `..` removed lexically (no file system access, so it
/// works for files that do not exist and does not resolve symlinks).
pub(crate) fn normalize_path(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `path` relative to `base`, with `/` separators (and `..` where `path` is outside `base`).
pub(crate) fn relative_slash_path(base: &Path, path: &Path) -> String {
    let base = normalize_path(base);
    let path = normalize_path(path);
    let b: Vec<Component<'_>> = base.components().collect();
    let p: Vec<Component<'_>> = path.components().collect();
    let common = b.iter().zip(&p).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".to_owned(); b.len() - common];
    parts.extend(
        p[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

/// A dataset-relative file name made safe to join under an output folder: `/` or `\` separated,
/// with root, drive and `..` components dropped. `None` when nothing is left.
#[allow(dead_code)] // For exporters that keep the project's folders (formats being added).
pub(crate) fn safe_relative(file_name: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in file_name.split(['/', '\\']) {
        match part {
            "" | "." | ".." => {}
            p if p.ends_with(':') => {}
            p => out.push(p),
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Finds an existing image `dir/stem.<ext>` for any known image extension (either case).
pub(crate) fn find_image_with_stem(dir: &Path, stem: &str) -> Option<PathBuf> {
    if stem.is_empty() {
        return None;
    }
    crate::imaging::IMAGE_EXTENSIONS.iter().find_map(|ext| {
        [ext.to_string(), ext.to_ascii_uppercase()]
            .into_iter()
            .map(|e| dir.join(format!("{stem}.{e}")))
            .find(|p| p.is_file())
    })
}

/// Hard-links `from` to `to` (or copies it when linking is not possible), replacing `to` as
/// every export file is (see `output.rs`).
pub(crate) fn link_or_copy(from: &Path, to: &Path, force: bool) -> Result<(), FormatError> {
    if normalize_path(from) == normalize_path(to) {
        return Ok(());
    }
    output::place_image(from, to, true, force).map(|_| ())
}

/// Writes a file through a temporary file renamed into place, naming it in the error; a
/// symbolic link or special file at `path` is refused unless `force` (see `output.rs`).
pub(crate) fn write_file(path: &Path, contents: &[u8], force: bool) -> Result<(), FormatError> {
    output::write_file(path, contents, force)
}
