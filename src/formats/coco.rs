//! COCO instances JSON and COCO detection results: import and export.
//!
//! Parsing reads the whole file into memory and deserialises borrowed structs with
//! `serde_json::from_slice`; fields Loupe does not use (`segmentation`, `keypoints`, `caption`,
//! `info`, ...) are skipped without being built. Writing is hand-rolled on a `BufWriter`, with
//! `serde_json` doing the string escaping and the shortest round-trip float formatting, so a
//! written file reads back to the same `f64`s (bit for bit up to 15 significant digits; see the
//! round-trip tests for why 17-digit values may differ in the last place).
//!
//! Exports give images their `external_id` as COCO id (fresh ids above the largest for the
//! others) and categories the ids of [`category_ids`], for ground truth and results alike, so
//! files exported from one project evaluate together with pycocotools.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasherDefault;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Unexpected, Visitor};
use uuid::Uuid;

use super::{ExportReport, FormatError, IdMap, IdSet, Parsed, Report, accept_box, read_file};
use crate::model::{Attributes, BBox, BoxFlags, Dataset, DatasetBox, DatasetImage};

/// An integer that some writers emit as a float (`500.0`).
#[derive(Clone, Copy, Debug)]
struct Int(i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Int;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                i64::try_from(v)
                    .map(Int)
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Int, E> {
                // Integral floats within the exactly representable range only.
                if v.fract() == 0.0 && v.abs() < 9.0e15 {
                    #[allow(clippy::cast_possible_truncation)]
                    Ok(Int(v as i64))
                } else {
                    Err(E::invalid_value(Unexpected::Float(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A 0/1 flag that some writers emit as a boolean.
#[derive(Clone, Copy, Debug)]
struct Flag(bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Flag;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("0, 1 or a boolean")
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Flag, E> {
                Ok(Flag(v != 0))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Flag, E> {
                Ok(Flag(v != 0))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Flag, E> {
                Ok(Flag(v != 0.0))
            }
        }
        d.deserialize_any(V)
    }
}

/// A `bbox` value: `[x, y, w, h]`, or `[]` which some writers use for "no box".
#[derive(Clone, Copy, Debug)]
struct BboxIn(Option<[f64; 4]>);

impl<'de> Deserialize<'de> for BboxIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BboxIn;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a bbox [x, y, width, height]")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BboxIn, A::Error> {
                let mut values = [0.0; 4];
                let mut n = 0usize;
                while let Some(v) = seq.next_element::<f64>()? {
                    if let Some(slot) = values.get_mut(n) {
                        *slot = v;
                    }
                    n += 1;
                }
                match n {
                    0 => Ok(BboxIn(None)),
                    4 => Ok(BboxIn(Some(values))),
                    _ => Err(de::Error::custom(format_args!(
                        "bbox must have 4 numbers [x, y, width, height], found {n}"
                    ))),
                }
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Deserialize)]
struct InstancesIn<'a> {
    #[serde(borrow)]
    images: Option<Vec<ImageIn<'a>>>,
    #[serde(borrow)]
    annotations: Option<Vec<AnnotationIn<'a>>>,
    #[serde(borrow)]
    categories: Option<Vec<CategoryIn<'a>>>,
}

#[derive(Deserialize)]
struct ImageIn<'a> {
    id: Option<Int>,
    #[serde(borrow)]
    file_name: Option<Cow<'a, str>>,
    width: Option<f64>,
    height: Option<f64>,
    /// Loupe writes stack membership and DICOM references here ([`crate::model::FrameRef`]);
    /// other tools' `extra` is left alone.
    #[serde(default)]
    extra: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct CategoryIn<'a> {
    id: Option<Int>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct AnnotationIn<'a> {
    id: Option<Int>,
    image_id: Option<Int>,
    category_id: Option<Int>,
    bbox: Option<BboxIn>,
    iscrowd: Option<Flag>,
    area: Option<f64>,
    score: Option<f32>,
    #[serde(borrow)]
    loupe_id: Option<Cow<'a, str>>,
    /// CVAT's and datumaro's per-box attributes (`{"occluded": false, …}`).
    attributes: Option<AttributesIn>,
}

/// An annotation's `attributes`: an object (kept, in order) or anything else (ignored with a
/// warning rather than refusing the file).
#[derive(Deserialize)]
#[serde(untagged)]
enum AttributesIn {
    Object(Attributes),
    Other(serde::de::IgnoredAny),
}

/// The attributes of one annotation, warning when they are not an object.
fn coco_attributes(
    report: &mut Report,
    attributes: Option<AttributesIn>,
    location: impl FnOnce() -> String,
) -> Attributes {
    match attributes {
        None => Attributes::new(),
        Some(AttributesIn::Object(a)) => a,
        Some(AttributesIn::Other(_)) => {
            report.warn("ignored_attributes", location, || {
                "`attributes` is not an object; the box is imported without them".to_owned()
            });
            Attributes::new()
        }
    }
}

#[derive(Deserialize)]
struct ResultIn {
    image_id: Option<Int>,
    category_id: Option<Int>,
    bbox: Option<BboxIn>,
    score: Option<f32>,
}

/// Parses JSON after checking its nesting depth (see [`crate::limits`]): a file nested deeper
/// than [`crate::limits::MAX_NESTING_DEPTH`] is refused before serde_json sees it.
pub(super) fn parse_json<'a, T: serde::Deserialize<'a>>(
    path: &Path,
    bytes: &'a [u8],
) -> Result<T, FormatError> {
    crate::limits::check_json(bytes, crate::limits::MAX_NESTING_DEPTH).map_err(|e| {
        FormatError::Json {
            path: path.to_path_buf(),
            line: e.line,
            column: 1,
            reason: e.to_string(),
        }
    })?;
    serde_json::from_slice(bytes).map_err(|e| json_error(path, &e))
}

pub(super) fn json_error(path: &Path, e: &serde_json::Error) -> FormatError {
    let msg = e.to_string();
    // serde_json appends " at line L column C"; the location has its own fields.
    let reason = msg
        .rfind(" at line ")
        .map_or(msg.as_str(), |i| &msg[..i])
        .to_owned();
    // serde_json stops at 128 levels of nesting, quickly, but does not say what the limit is.
    let reason = crate::limits::json_depth_reason(&reason).unwrap_or(reason);
    FormatError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        reason,
    }
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// The first non-whitespace byte, to tell a results array from an instances object.
fn first_token(bytes: &[u8]) -> Option<u8> {
    bytes.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// The folder a file lives in (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Where the images of an instances file are when the user did not say (`--images`): the first
/// of these folders that holds the first image the file lists, else the file's own folder.
/// - the file's folder (`file_name` relative to the JSON, as Loupe's single-file export writes);
/// - for `annotations/instances_<split>.json`: `images/<split>/` beside `annotations/` (Loupe's
///   and datumaro's layout), `<split>/` beside it (the COCO 2017 download: `val2017/`), and
///   `images/`.
fn images_dir_of(path: &Path, dataset: &Dataset) -> PathBuf {
    let here = parent_dir(path);
    let Some(first) = dataset.images.iter().find(|i| !i.file_name.is_empty()) else {
        return here;
    };
    let mut candidates = vec![here.clone()];
    if let Some(up) = here.parent() {
        let up = if up.as_os_str().is_empty() {
            Path::new("..")
        } else {
            up
        };
        let split = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.split_once('_').map(|(_, split)| split.to_owned()));
        if let Some(split) = split {
            candidates.push(up.join("images").join(&split));
            candidates.push(up.join(&split));
        }
        candidates.push(up.join("images"));
    }
    candidates
        .into_iter()
        .find(|dir| dir.join(&first.file_name).is_file())
        .unwrap_or(here)
}

/// An instances file read into a dataset, with the id maps results need.
struct Instances {
    dataset: Dataset,
    report: Report,
    /// COCO category id -> class index.
    class_of: IdMap<usize>,
    /// COCO image id -> image index.
    image_of: IdMap<usize>,
    /// COCO category id of each class, in class order.
    category_ids: Vec<i64>,
    /// The id and `area` of each kept box, parallel to `dataset.images[i].boxes`.
    boxes: Vec<Vec<CocoBox>>,
    /// Stack membership per `file_name`, from `images[].extra`.
    frames: HashMap<String, crate::model::FrameRef>,
}

/// The stack membership a Loupe export wrote in `extra` (an object with a `stack` or `dicom`
/// member); `Ok(None)` for anything else another tool may keep there.
fn frame_of(extra: serde_json::Value) -> Result<Option<crate::model::FrameRef>, String> {
    let serde_json::Value::Object(map) = &extra else {
        return Ok(None);
    };
    if !map.contains_key("stack") && !map.contains_key("dicom") {
        return Ok(None);
    }
    serde_json::from_value(extra)
        .map(Some)
        .map_err(|e| e.to_string())
}

fn image_size(
    path: &Path,
    record: &str,
    width: Option<f64>,
    height: Option<f64>,
) -> Result<(u32, u32), FormatError> {
    let (Some(w), Some(h)) = (width, height) else {
        return Err(FormatError::MissingField {
            path: path.to_path_buf(),
            record: record.to_owned(),
            field: if width.is_none() { "width" } else { "height" },
        });
    };
    if w < 0.0 || h < 0.0 {
        return Err(FormatError::NegativeSize {
            path: path.to_path_buf(),
            record: record.to_owned(),
            width: w,
            height: h,
        });
    }
    let to_u32 = |v: f64| {
        let r = v.round();
        if r <= f64::from(u32::MAX) {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(r as u32)
        } else {
            Err(FormatError::invalid(
                path,
                record,
                format!("image size {w}x{h} is too large"),
            ))
        }
    };
    Ok((to_u32(w)?, to_u32(h)?))
}

fn load_instances(path: &Path) -> Result<Instances, FormatError> {
    let bytes = read_file(path)?;
    let bytes = strip_bom(&bytes);
    if first_token(bytes) == Some(b'[') {
        return Err(FormatError::Unsupported {
            path: path.to_path_buf(),
            reason: "the file is a JSON array, not a COCO instances object; if it is a COCO \
                     results file, import it as coco-results"
                .to_owned(),
        });
    }
    let file: InstancesIn<'_> = parse_json(path, bytes)?;
    let Some(images_in) = file.images else {
        return Err(FormatError::MissingField {
            path: path.to_path_buf(),
            record: "top level".to_owned(),
            field: "images",
        });
    };

    let mut dataset = Dataset::default();
    let mut report = Report::default();

    let categories = file.categories.unwrap_or_default();
    let mut class_of = IdMap::default();
    class_of.reserve(categories.len());
    let mut category_ids = Vec::with_capacity(categories.len());
    for (i, cat) in categories.into_iter().enumerate() {
        let record = || format!("categories[{i}]");
        let Some(Int(id)) = cat.id else {
            return Err(FormatError::MissingField {
                path: path.to_path_buf(),
                record: record(),
                field: "id",
            });
        };
        let Some(name) = cat.name else {
            return Err(FormatError::MissingField {
                path: path.to_path_buf(),
                record: record(),
                field: "name",
            });
        };
        if class_of.insert(id, dataset.classes.len()).is_some() {
            return Err(FormatError::invalid(
                path,
                record(),
                format!("duplicate category id {id}"),
            ));
        }
        dataset.classes.push(name.into_owned());
        category_ids.push(id);
    }

    let mut image_of = IdMap::default();
    image_of.reserve(images_in.len());
    let mut frames = HashMap::new();
    let mut boxes: Vec<Vec<CocoBox>> = Vec::with_capacity(images_in.len());
    dataset.images.reserve(images_in.len());
    for (i, img) in images_in.into_iter().enumerate() {
        let record = || format!("images[{i}]");
        let Some(Int(id)) = img.id else {
            return Err(FormatError::MissingField {
                path: path.to_path_buf(),
                record: record(),
                field: "id",
            });
        };
        let Some(file_name) = img.file_name else {
            return Err(FormatError::MissingField {
                path: path.to_path_buf(),
                record: format!("images[{i}] (id {id})"),
                field: "file_name",
            });
        };
        let (width, height) = image_size(
            path,
            &format!("images[{i}] (id {id})"),
            img.width,
            img.height,
        )?;
        if image_of.insert(id, dataset.images.len()).is_some() {
            return Err(FormatError::DuplicateImageId {
                path: path.to_path_buf(),
                record: record(),
                id,
            });
        }
        if let Some(extra) = img.extra {
            match frame_of(extra) {
                Ok(Some(frame)) => {
                    frames.insert(file_name.to_string(), frame);
                }
                Ok(None) => {}
                Err(e) => report.warn(
                    "bad_frame_reference",
                    || format!("images[{i}] (id {id})"),
                    || format!("`extra` names a stack but cannot be read ({e}); the image is imported without it"),
                ),
            }
        }
        dataset.images.push(DatasetImage {
            file_name: file_name.into_owned(),
            width,
            height,
            external_id: Some(id),
            boxes: Vec::new(),
        });
        boxes.push(Vec::new());
    }

    let annotations = file.annotations.unwrap_or_default();
    let mut seen_ids =
        IdSet::with_capacity_and_hasher(annotations.len(), BuildHasherDefault::default());
    for (i, ann) in annotations.into_iter().enumerate() {
        let record = |id: Option<Int>| match id {
            Some(Int(id)) => format!("annotations[{i}] (id {id})"),
            None => format!("annotations[{i}]"),
        };
        if let Some(Int(id)) = ann.id
            && !seen_ids.insert(id)
        {
            return Err(FormatError::DuplicateAnnotationId {
                path: path.to_path_buf(),
                record: record(ann.id),
                id,
            });
        }
        let Some(BboxIn(Some([x, y, w, h]))) = ann.bbox else {
            report.skipped += 1;
            report.warn(
                "skipped_annotation",
                || format!("{}: {}", path.display(), record(ann.id)),
                || "annotation has no bbox (caption, label-only, keypoints-only or panoptic record); skipped".to_owned(),
            );
            continue;
        };
        if ann.id.is_none() {
            return Err(FormatError::MissingField {
                path: path.to_path_buf(),
                record: record(None),
                field: "id",
            });
        }
        let Some(Int(image_id)) = ann.image_id else {
            return Err(FormatError::MissingField {
                path: path.to_path_buf(),
                record: record(ann.id),
                field: "image_id",
            });
        };
        let Some(Int(category_id)) = ann.category_id else {
            return Err(FormatError::MissingField {
                path: path.to_path_buf(),
                record: record(ann.id),
                field: "category_id",
            });
        };
        let Some(&image_index) = image_of.get(&image_id) else {
            return Err(FormatError::UnknownImage {
                path: path.to_path_buf(),
                record: record(ann.id),
                image_id,
            });
        };
        let Some(&class) = class_of.get(&category_id) else {
            return Err(FormatError::UnknownCategory {
                path: path.to_path_buf(),
                record: record(ann.id),
                category_id,
            });
        };
        let id = match ann.loupe_id {
            Some(s) => Some(Uuid::parse_str(&s).map_err(|e| {
                FormatError::invalid(
                    path,
                    record(ann.id),
                    format!("loupe_id `{s}` is not a UUID: {e}"),
                )
            })?),
            None => None,
        };
        let Some(image) = dataset.images.get_mut(image_index) else {
            continue;
        };
        let Some(bbox) = accept_box(
            &mut report,
            BBox::new(x, y, w, h),
            image.width,
            image.height,
            || format!("{}: {}", path.display(), record(ann.id)),
        ) else {
            continue;
        };
        image.boxes.push(DatasetBox {
            class,
            bbox,
            flags: BoxFlags {
                iscrowd: ann.iscrowd.is_some_and(|f| f.0),
                ..BoxFlags::default()
            },
            score: ann.score,
            id,
            attributes: coco_attributes(&mut report, ann.attributes, || {
                format!("{}: {}", path.display(), record(ann.id))
            }),
        });
        if let (Some(b), Some(Int(ann_id))) = (boxes.get_mut(image_index), ann.id) {
            b.push(CocoBox {
                id: ann_id,
                area: ann.area.filter(|v| v.is_finite()),
            });
        }
    }

    Ok(Instances {
        dataset,
        report,
        class_of,
        image_of,
        category_ids,
        boxes,
        frames,
    })
}

/// What a COCO instances file says beyond the format-neutral dataset: the ids and areas that
/// results files and pycocotools' evaluation rely on. Image ids are `DatasetImage::external_id`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CocoIds {
    /// The COCO category id of each class, in `Dataset::classes` order.
    pub category_ids: Vec<i64>,
    /// Each box's annotation id and area, parallel to `dataset.images[i].boxes`.
    pub boxes: Vec<Vec<CocoBox>>,
}

/// A COCO annotation's own id and `area`, which pycocotools' evaluation uses: area ranges go by
/// `area` (a segmentation's area, not w*h), and a detection matched to annotation id 0 counts
/// as unmatched.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CocoBox {
    pub id: i64,
    /// Absent when the file has none.
    pub area: Option<f64>,
}

/// Imports a COCO instances file like [`super::import`], also returning its ids and areas.
///
/// # Errors
///
/// As [`super::import`] for COCO.
pub fn import_coco_with_ids(
    path: &Path,
    images_dir: Option<&Path>,
) -> Result<(Parsed, CocoIds), FormatError> {
    let instances = load_instances(path)?;
    let (warnings, skipped) = instances.report.finish(path);
    let ids = CocoIds {
        category_ids: instances.category_ids,
        boxes: instances.boxes,
    };
    Ok((
        Parsed {
            images_dir: images_dir.map_or_else(
                || images_dir_of(path, &instances.dataset),
                Path::to_path_buf,
            ),
            dataset: instances.dataset,
            warnings,
            skipped,
            predictions: Vec::new(),
            unresolved: Vec::new(),
            frames: instances.frames,
        },
        ids,
    ))
    .map(|(mut parsed, ids)| {
        super::note_shared_class_names(&mut parsed, path);
        (parsed, ids)
    })
}

/// An image of a COCO ground-truth file, as results files name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CocoGtImage {
    pub id: i64,
    pub file_name: String,
    pub width: u32,
    pub height: u32,
}

/// The images and categories of a COCO ground-truth file, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CocoGt {
    pub images: Vec<CocoGtImage>,
    /// `(id, name)`.
    pub categories: Vec<(i64, String)>,
}

/// Reads the images and categories of a COCO instances file (the `--gt` of a results import).
///
/// # Errors
///
/// As [`super::import`] for COCO.
pub fn read_coco_gt(path: &Path) -> Result<CocoGt, FormatError> {
    let instances = load_instances(path)?;
    Ok(CocoGt {
        images: instances
            .dataset
            .images
            .into_iter()
            .map(|img| CocoGtImage {
                id: img.external_id.unwrap_or_default(),
                file_name: img.file_name,
                width: img.width,
                height: img.height,
            })
            .collect(),
        categories: instances
            .category_ids
            .into_iter()
            .zip(instances.dataset.classes)
            .collect(),
    })
}

/// The usable detections of a COCO results file, in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CocoResults {
    pub detections: Vec<CocoDetection>,
    pub warnings: Vec<crate::model::Warning>,
    /// Entries without a bbox (segmentation, keypoint or caption results).
    pub skipped: usize,
}

/// Reads a COCO results array as it is: no clipping and no dropping of boxes, so that what is
/// evaluated is what pycocotools' `loadRes` evaluates.
///
/// # Errors
///
/// Refuses, naming the file and record, what is not a results array or lacks `image_id`,
/// `category_id` or `score`, and boxes with a negative or non-finite size.
pub fn read_coco_results(path: &Path) -> Result<CocoResults, FormatError> {
    let mut report = Report::default();
    let detections = load_results(path, &mut report)?;
    for d in &detections {
        let b = d.bbox;
        if !b.is_finite() || b.w < 0.0 || b.h < 0.0 {
            return Err(FormatError::invalid(
                path,
                format!("[{}]", d.record),
                format!(
                    "bbox [{}, {}, {}, {}] has a negative or non-finite size",
                    b.x, b.y, b.w, b.h
                ),
            ));
        }
    }
    let (warnings, skipped) = report.finish(path);
    Ok(CocoResults {
        detections,
        warnings,
        skipped,
    })
}

/// Imports a COCO instances file.
pub(super) fn import_instances(
    path: &Path,
    images_dir: Option<&Path>,
) -> Result<Parsed, FormatError> {
    let instances = load_instances(path)?;
    let (warnings, skipped) = instances.report.finish(path);
    Ok(Parsed {
        images_dir: images_dir.map_or_else(
            || images_dir_of(path, &instances.dataset),
            Path::to_path_buf,
        ),
        dataset: instances.dataset,
        warnings,
        skipped,
        predictions: Vec::new(),
        unresolved: Vec::new(),
        frames: instances.frames,
    })
}

/// One usable detection of a results file.
#[derive(Clone, Debug, PartialEq)]
pub struct CocoDetection {
    /// Its index in the file's array.
    pub record: usize,
    pub image_id: i64,
    pub category_id: i64,
    pub bbox: BBox,
    pub score: f32,
}

/// Reads a results array; entries without a bbox are counted in `report` and left out.
fn load_results(path: &Path, report: &mut Report) -> Result<Vec<CocoDetection>, FormatError> {
    let bytes = read_file(path)?;
    let bytes = strip_bom(&bytes);
    if first_token(bytes) == Some(b'{') {
        return Err(FormatError::Unsupported {
            path: path.to_path_buf(),
            reason: "the file is a JSON object, not a COCO results array; if it is a COCO \
                     instances file, import it as coco"
                .to_owned(),
        });
    }
    let entries: Vec<ResultIn> = parse_json(path, bytes)?;
    let mut detections = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let record = || format!("[{i}]");
        let Some(BboxIn(Some([x, y, w, h]))) = entry.bbox else {
            report.skipped += 1;
            report.warn(
                "skipped_annotation",
                || format!("{}: {}", path.display(), record()),
                || {
                    "result has no bbox (segmentation, keypoints or caption result); skipped"
                        .to_owned()
                },
            );
            continue;
        };
        let missing = |field| FormatError::MissingField {
            path: path.to_path_buf(),
            record: record(),
            field,
        };
        let Some(Int(image_id)) = entry.image_id else {
            return Err(missing("image_id"));
        };
        let Some(Int(category_id)) = entry.category_id else {
            return Err(missing("category_id"));
        };
        let Some(score) = entry.score else {
            return Err(missing("score"));
        };
        detections.push(CocoDetection {
            record: i,
            image_id,
            category_id,
            bbox: BBox::new(x, y, w, h),
            score,
        });
    }
    Ok(detections)
}

/// Imports a COCO results file on its own: images are known only by id (`external_id`, empty
/// file name, size 0) and classes are named by their category id (`"18"`), in ascending id order.
/// Images are listed in order of first appearance.
pub(super) fn import_results(
    path: &Path,
    images_dir: Option<&Path>,
) -> Result<Parsed, FormatError> {
    let mut report = Report::default();
    let detections = load_results(path, &mut report)?;

    let mut category_ids: Vec<i64> = detections.iter().map(|d| d.category_id).collect();
    category_ids.sort_unstable();
    category_ids.dedup();
    let class_of: IdMap<usize> = category_ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i))
        .collect();

    let mut dataset = Dataset {
        classes: category_ids.iter().map(ToString::to_string).collect(),
        images: Vec::new(),
    };
    let mut image_of: IdMap<usize> = IdMap::default();
    for d in detections {
        let index = *image_of.entry(d.image_id).or_insert_with(|| {
            dataset.images.push(DatasetImage {
                external_id: Some(d.image_id),
                ..DatasetImage::default()
            });
            dataset.images.len() - 1
        });
        push_detection(
            path,
            &mut report,
            &mut dataset,
            index,
            class_of.get(&d.category_id).copied(),
            &d,
        );
    }
    let (warnings, skipped) = report.finish(path);
    Ok(Parsed {
        frames: std::collections::HashMap::new(),
        dataset,
        warnings,
        images_dir: images_dir.map_or_else(|| parent_dir(path), Path::to_path_buf),
        skipped,
        predictions: Vec::new(),
        unresolved: Vec::new(),
    })
}

fn push_detection(
    path: &Path,
    report: &mut Report,
    dataset: &mut Dataset,
    image_index: usize,
    class: Option<usize>,
    d: &CocoDetection,
) {
    let (Some(image), Some(class)) = (dataset.images.get_mut(image_index), class) else {
        return;
    };
    let location = || format!("{}: [{}]", path.display(), d.record);
    if let Some(bbox) = accept_box(report, d.bbox, image.width, image.height, location) {
        image.boxes.push(DatasetBox {
            class,
            bbox,
            flags: BoxFlags::default(),
            score: Some(d.score),
            id: None,
            attributes: Attributes::new(),
        });
    }
}

/// Imports a COCO results file, naming its images and classes through the ground-truth
/// instances file `gt` it was computed on.
///
/// The dataset has the ground truth's classes (all of them, in its `categories` order) and the
/// images the results mention, in order of first appearance, with their ground-truth file names
/// and sizes; [`Parsed::images_dir`] is the ground truth's folder. A result whose `image_id` or
/// `category_id` is not in the ground truth refuses the import, as pycocotools' `loadRes` does.
///
/// # Errors
///
/// Everything [`super::import`] refuses in either file, and results that name an image or a
/// category the ground truth does not have.
pub fn import_coco_results_with_gt(results: &Path, gt: &Path) -> Result<Parsed, FormatError> {
    let truth = load_instances(gt)?;
    let mut report = Report::default();
    let detections = load_results(results, &mut report)?;

    let mut dataset = Dataset {
        classes: truth.dataset.classes.clone(),
        images: Vec::new(),
    };
    let mut image_of: IdMap<usize> = IdMap::default();
    for d in detections {
        let Some(&gt_index) = truth.image_of.get(&d.image_id) else {
            return Err(FormatError::UnknownImage {
                path: results.to_path_buf(),
                record: format!("[{}]", d.record),
                image_id: d.image_id,
            });
        };
        let Some(&class) = truth.class_of.get(&d.category_id) else {
            return Err(FormatError::UnknownCategory {
                path: results.to_path_buf(),
                record: format!("[{}]", d.record),
                category_id: d.category_id,
            });
        };
        let index = match image_of.get(&d.image_id) {
            Some(&index) => index,
            None => {
                let Some(gt_image) = truth.dataset.images.get(gt_index) else {
                    continue;
                };
                dataset.images.push(DatasetImage {
                    file_name: gt_image.file_name.clone(),
                    width: gt_image.width,
                    height: gt_image.height,
                    external_id: gt_image.external_id,
                    boxes: Vec::new(),
                });
                image_of.insert(d.image_id, dataset.images.len() - 1);
                dataset.images.len() - 1
            }
        };
        push_detection(results, &mut report, &mut dataset, index, Some(class), &d);
    }
    let (warnings, skipped) = report.finish(results);
    Ok(Parsed {
        frames: std::collections::HashMap::new(),
        dataset,
        warnings,
        images_dir: parent_dir(gt),
        skipped,
        predictions: Vec::new(),
        unresolved: Vec::new(),
    })
}

/// COCO image ids for export: each image's `external_id` where it has one not already taken,
/// then fresh ids above the largest one.
fn image_ids(dataset: &Dataset) -> Vec<i64> {
    let mut used: HashSet<i64> = HashSet::with_capacity(dataset.images.len());
    let mut ids: Vec<Option<i64>> = dataset
        .images
        .iter()
        .map(|img| img.external_id.filter(|id| used.insert(*id)))
        .collect();
    let mut next = used.iter().max().map_or(1, |m| m.saturating_add(1)).max(1);
    for id in &mut ids {
        if id.is_none() {
            *id = Some(next);
            next = next.saturating_add(1);
        }
    }
    ids.into_iter().map(|id| id.unwrap_or_default()).collect()
}

/// Category ids for export, the same for instances and results so that a ground truth and the
/// detections exported from one project evaluate together: `1..=n` in class order; or, when
/// every class name is a distinct non-negative integer (classes that came from a results file,
/// or a digits dataset named `0`..`9`), those integers, so the names and ids stay one.
fn category_ids(classes: &[String]) -> Vec<i64> {
    let parsed: Option<Vec<i64>> = classes.iter().map(|c| c.parse::<i64>().ok()).collect();
    if let Some(ids) = parsed {
        let distinct: HashSet<i64> = ids.iter().copied().collect();
        if distinct.len() == ids.len() && !ids.is_empty() && ids.iter().all(|&id| id >= 0) {
            return ids;
        }
    }
    (1..).take(classes.len()).collect()
}

/// Refuses datasets that cannot be written faithfully, before anything is written.
fn validate(dataset: &Dataset, out: &Path) -> Result<usize, FormatError> {
    let mut boxes = 0;
    for img in &dataset.images {
        for b in &img.boxes {
            if b.class >= dataset.classes.len() {
                return Err(FormatError::export(
                    out,
                    format!(
                        "a box of image `{}` has class index {} but there are {} classes",
                        img.file_name,
                        b.class,
                        dataset.classes.len()
                    ),
                ));
            }
            if !b.bbox.is_finite() {
                return Err(FormatError::export(
                    out,
                    format!("a box of image `{}` is not finite", img.file_name),
                ));
            }
            boxes += 1;
        }
    }
    Ok(boxes)
}

/// Small JSON writing helpers on top of any `Write`.
trait JsonWrite: Write {
    fn json<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> io::Result<()>
    where
        Self: Sized,
    {
        serde_json::to_writer(&mut *self, value).map_err(io::Error::from)
    }

    fn bbox(&mut self, b: &BBox) -> io::Result<()>
    where
        Self: Sized,
    {
        self.write_all(b"[")?;
        self.json(&b.x)?;
        self.write_all(b",")?;
        self.json(&b.y)?;
        self.write_all(b",")?;
        self.json(&b.w)?;
        self.write_all(b",")?;
        self.json(&b.h)?;
        self.write_all(b"]")
    }
}

impl<W: Write> JsonWrite for W {}

/// Where a JSON export goes: `out` itself, or `out/<default_name>` when `out` is a folder (or
/// does not exist and has no extension).
fn json_target(out: &Path, default_name: &str) -> PathBuf {
    if out.is_dir() || (!out.exists() && out.extension().is_none()) {
        out.join(default_name)
    } else {
        out.to_path_buf()
    }
}

/// Writes through a temporary file renamed into place, so a failed export leaves no half file
/// (and a link or special file at `target` is refused unless `force`: see `output.rs`).
fn write_atomically(
    target: &Path,
    force: bool,
    write: impl FnOnce(&mut BufWriter<std::fs::File>) -> io::Result<()>,
) -> Result<(), FormatError> {
    super::output::write_with(target, force, write)
}

/// One image as a COCO instances file lists it.
struct ImageOut<'a> {
    img: &'a DatasetImage,
    id: i64,
    file_name: &'a str,
    /// The project's path when `file_name` is another (`loupe_path`).
    loupe_path: Option<&'a str>,
}

/// Writes COCO instances that pycocotools' `COCO()` loads and `COCOeval` evaluates, and
/// datumaro's `coco_instances` and label-studio-converter import: see [`super::export_with`].
pub(super) fn export_instances(
    dataset: &Dataset,
    out: &Path,
    settings: &super::ExportSettings,
) -> Result<super::ExportOutcome, FormatError> {
    let boxes = validate(dataset, out)?;
    let ids = image_ids(dataset);
    let categories = category_ids(&dataset.classes);
    let segmentation = settings.coco_segmentation;
    let is_json_file = out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));

    if settings.images == super::ImagesMode::None && settings.split.is_none() {
        // One file with the project's paths: the images stay where they are.
        let target = json_target(out, "annotations.json");
        let images: Vec<ImageOut<'_>> = dataset
            .images
            .iter()
            .zip(&ids)
            .map(|(img, &id)| ImageOut {
                img,
                id,
                file_name: &img.file_name,
                loupe_path: None,
            })
            .collect();
        let mut next_ann = 1;
        write_atomically(&target, settings.force, |w| {
            write_instances(
                w,
                &dataset.classes,
                &images,
                &categories,
                segmentation,
                &mut next_ann,
                &settings.frames,
            )
        })?;
        return Ok(ExportReport {
            files_written: 1,
            images: dataset.images.len(),
            boxes,
        }
        .into());
    }
    if is_json_file {
        return Err(FormatError::export(
            out,
            "images and splits need a folder: `annotations/instances_<split>.json` beside `images/<split>/`",
        ));
    }

    let plan = super::layout::plan(dataset, out, settings)?;
    let mut outcome = plan.outcome();
    let copied = settings.images != super::ImagesMode::None;
    let mut files_written = 0;
    let mut next_ann = 1;
    let mut placer = super::layout::Placer::new(settings.force);
    for (split, name) in plan.splits.iter().enumerate() {
        let images: Vec<ImageOut<'_>> = plan
            .in_split(split)
            .map(|p| {
                // Copied images are named within `images/<split>/`; otherwise the project's
                // path is the only way to the file.
                let file_name = if copied {
                    p.name.as_str()
                } else {
                    p.img.file_name.as_str()
                };
                ImageOut {
                    img: p.img,
                    id: ids.get(p.index).copied().unwrap_or_default(),
                    file_name,
                    loupe_path: (file_name != p.img.file_name).then_some(p.img.file_name.as_str()),
                }
            })
            .collect();
        let target = out
            .join("annotations")
            .join(format!("instances_{name}.json"));
        write_atomically(&target, settings.force, |w| {
            write_instances(
                w,
                &dataset.classes,
                &images,
                &categories,
                segmentation,
                &mut next_ann,
                &settings.frames,
            )
        })?;
        files_written += 1;
        if copied {
            let dir = out.join("images").join(name);
            std::fs::create_dir_all(&dir).map_err(|e| FormatError::io(&dir, e))?;
            for p in plan.in_split(split) {
                if let Some(source) = &p.source {
                    placer.place(settings.images, source, &dir.join(&p.name))?;
                    files_written += 1;
                }
            }
        }
    }
    placer.fill(&mut outcome);
    outcome.report = ExportReport {
        files_written,
        images: dataset.images.len(),
        boxes,
    };
    Ok(outcome)
}

fn write_instances<W: Write>(
    w: &mut W,
    classes: &[String],
    images: &[ImageOut<'_>],
    category_ids: &[i64],
    segmentation: bool,
    next_ann: &mut u64,
    frames: &HashMap<String, crate::model::FrameRef>,
) -> io::Result<()> {
    w.write_all(b"{\"info\":{\"description\":\"Exported by Loupe\",\"version\":\"1.0\"},\n\"licenses\":[],\n\"images\":[")?;
    for (i, image) in images.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        w.write_all(b"\n{\"id\":")?;
        w.json(&image.id)?;
        w.write_all(b",\"file_name\":")?;
        w.json(image.file_name)?;
        w.write_all(b",\"width\":")?;
        w.json(&image.img.width)?;
        w.write_all(b",\"height\":")?;
        w.json(&image.img.height)?;
        if let Some(path) = image.loupe_path {
            w.write_all(b",\"loupe_path\":")?;
            w.json(path)?;
        }
        if let Some(frame) = frames.get(&image.img.file_name) {
            w.write_all(b",\"extra\":")?;
            w.json(frame)?;
        }
        w.write_all(b"}")?;
    }
    w.write_all(b"],\n\"annotations\":[")?;
    let mut first = true;
    for image in images {
        for b in &image.img.boxes {
            if !first {
                w.write_all(b",")?;
            }
            first = false;
            let ann_id = *next_ann;
            *next_ann += 1;
            let category_id = category_ids.get(b.class).copied().unwrap_or_default();
            let r = &b.bbox;
            w.write_all(b"\n{\"id\":")?;
            w.json(&ann_id)?;
            w.write_all(b",\"image_id\":")?;
            w.json(&image.id)?;
            w.write_all(b",\"category_id\":")?;
            w.json(&category_id)?;
            w.write_all(b",\"bbox\":")?;
            w.bbox(r)?;
            w.write_all(b",\"area\":")?;
            w.json(&(r.w * r.h))?;
            w.write_all(if b.flags.iscrowd {
                b",\"iscrowd\":1"
            } else {
                b",\"iscrowd\":0"
            })?;
            if segmentation {
                // The box as a polygon, for tools that need a segmentation.
                let (x2, y2) = (r.x2(), r.y2());
                w.write_all(b",\"segmentation\":[[")?;
                for (k, v) in [r.x, r.y, x2, r.y, x2, y2, r.x, y2].iter().enumerate() {
                    if k > 0 {
                        w.write_all(b",")?;
                    }
                    w.json(v)?;
                }
                w.write_all(b"]]")?;
            } else {
                // Present but empty: datumaro warns about every annotation without the key, and
                // converters make a polygon of any non-empty one.
                w.write_all(b",\"segmentation\":[]")?;
            }
            if let Some(score) = b.score {
                w.write_all(b",\"score\":")?;
                w.json(&score)?;
            }
            if let Some(id) = b.id {
                write!(w, ",\"loupe_id\":\"{}\"", id.hyphenated())?;
            }
            if !b.attributes.is_empty() {
                // As CVAT's COCO export writes them: `"attributes": {"occluded": false, …}`.
                w.write_all(b",\"attributes\":")?;
                w.json(&b.attributes)?;
            }
            w.write_all(b"}")?;
        }
    }
    w.write_all(b"],\n\"categories\":[")?;
    for (i, (name, id)) in classes.iter().zip(category_ids).enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        w.write_all(b"\n{\"id\":")?;
        w.json(id)?;
        w.write_all(b",\"name\":")?;
        w.json(name)?;
        w.write_all(b",\"supercategory\":\"\"}")?;
    }
    w.write_all(b"]}\n")
}

/// Writes a COCO results array: one `{image_id, category_id, bbox, score}` per box. Image and
/// category ids follow the same rules as the instances export (see [`image_ids`] and
/// [`category_ids`]); a box without a score gets 1.
pub(super) fn export_results(
    dataset: &Dataset,
    out: &Path,
    force: bool,
) -> Result<ExportReport, FormatError> {
    let target = json_target(out, "results.json");
    let boxes = validate(dataset, &target)?;
    let ids = image_ids(dataset);
    let categories = category_ids(&dataset.classes);
    write_atomically(&target, force, |w| {
        w.write_all(b"[")?;
        let mut first = true;
        for (img, image_id) in dataset.images.iter().zip(&ids) {
            for b in &img.boxes {
                if !first {
                    w.write_all(b",")?;
                }
                first = false;
                w.write_all(b"\n{\"image_id\":")?;
                w.json(image_id)?;
                w.write_all(b",\"category_id\":")?;
                w.json(&categories.get(b.class).copied().unwrap_or_default())?;
                w.write_all(b",\"bbox\":")?;
                w.bbox(&b.bbox)?;
                w.write_all(b",\"score\":")?;
                w.json(&b.score.unwrap_or(1.0))?;
                w.write_all(b"}")?;
            }
        }
        w.write_all(b"]\n")
    })?;
    Ok(ExportReport {
        files_written: 1,
        images: dataset
            .images
            .iter()
            .filter(|i| !i.boxes.is_empty())
            .count(),
        boxes,
    })
}
