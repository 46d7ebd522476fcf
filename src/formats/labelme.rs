//! labelme JSON: one file per image, `shapes` in image pixels.
//!
//! Import reads a JSON file or every `.json` under a folder. A `rectangle` (two opposite corners
//! in any order) becomes a box. Every other shape (`polygon`, `circle`, `line`, `linestrip`,
//! `point`, `points`, `mask`) is skipped with one `skipped_<kind>` warning per shape, or with
//! [`ImportSettings::shapes_as_boxes`] becomes its bounding box (a circle's is centre ± radius,
//! the radius being the distance from the centre to its second point; a point has no area and is
//! then dropped as a zero-area box). Shape types labelme does not define are always skipped.
//!
//! `imagePath` is relative to the JSON's folder (`..` and Windows `\` separators allowed). The
//! size comes from `imageWidth`/`imageHeight`, else the image file's header, else the header of
//! the embedded base64 `imageData` (decoded only then). A shape's `group_id`, `description` and
//! `flags` become box attributes `group_id`, `description` and `flags.<name>`.
//!
//! In a folder, `.json` files that are not labelme files (no `shapes` list, e.g. a COCO file
//! labelme's own converters write beside them) are skipped with a `not_labelme` warning; a single
//! file that is not labelme is refused.
//!
//! Export writes `<out>/<image path>.json` beside a link or copy of each image, with rectangle
//! shapes, `imagePath` the image's file name, `imageData: null` and the size, as labelme 5 saves
//! with "Save image data" off. Loupe's annotation id rides along as the shape key `loupe_id`,
//! which labelme keeps as extra data.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::coco::parse_json;
use super::{
    ExportReport, FormatError, ImportSettings, Parsed, Report, accept_box, link_or_copy,
    normalize_path, read_file, relative_slash_path, safe_relative, write_file,
};
use crate::imaging::probe;
use crate::model::{AttributeValue, Attributes, BBox, Dataset, DatasetBox, DatasetImage};

/// The labelme version written into exported files (labelme 4 and 5 open it).
const EXPORT_VERSION: &str = "5.0.1";

#[derive(Deserialize)]
struct FileIn {
    shapes: Option<Vec<ShapeIn>>,
    #[serde(rename = "imagePath")]
    image_path: Option<String>,
    #[serde(rename = "imageData")]
    image_data: Option<String>,
    #[serde(rename = "imageWidth")]
    image_width: Option<f64>,
    #[serde(rename = "imageHeight")]
    image_height: Option<f64>,
}

#[derive(Deserialize)]
struct ShapeIn {
    label: Option<String>,
    points: Option<Vec<Vec<f64>>>,
    group_id: Option<Value>,
    shape_type: Option<String>,
    flags: Option<Map<String, Value>>,
    description: Option<String>,
    loupe_id: Option<String>,
}

/// Every file with extension `ext` under `dir`, sorted by path.
pub(super) fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, FormatError> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            FormatError::io(&path, e.into())
        })?;
        let matches = entry
            .path()
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case(ext));
        if matches && entry.file_type().is_file() {
            files.push(entry.into_path());
        }
    }
    Ok(files)
}

/// The folder a file lives in (`.` for a bare file name).
pub(super) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Finds the image a file names: `rel` (with `\` read as `/`) beside the file, else under the
/// images folder as written, else by file name under the images folder. Returns the path, found
/// or not (the first candidate when none exists).
pub(super) fn locate_image(
    file_dir: &Path,
    rel: &str,
    images_dir: Option<&Path>,
) -> (PathBuf, bool) {
    let rel = rel.trim().replace('\\', "/");
    let beside = file_dir.join(&rel);
    let mut candidates = vec![beside.clone()];
    if let Some(dir) = images_dir {
        candidates.push(dir.join(&rel));
        if let Some(name) = rel.rsplit('/').next().filter(|n| !n.is_empty()) {
            candidates.push(dir.join(name));
        }
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .map_or((beside, false), |p| (p, true))
}

/// The size of an image given as base64 bytes (`imageData`), from its header.
fn embedded_size(data: &str) -> Result<(u32, u32), String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("imageData is not base64: {e}"))?;
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    reader
        .into_dimensions()
        .map_err(|e| format!("imageData is not a readable image: {e}"))
}

/// A size field pair as whole pixels, when both are given and positive.
pub(super) fn size_fields(
    path: &Path,
    record: &str,
    w: Option<f64>,
    h: Option<f64>,
) -> Result<Option<(u32, u32)>, FormatError> {
    match (w, h) {
        (Some(w), Some(h)) if !(w.is_finite() && h.is_finite()) || w < 0.0 || h < 0.0 => {
            Err(FormatError::NegativeSize {
                path: path.to_path_buf(),
                record: record.to_owned(),
                width: w,
                height: h,
            })
        }
        (Some(w), Some(h))
            if w > 0.0 && h > 0.0 && w <= f64::from(u32::MAX) && h <= f64::from(u32::MAX) =>
        {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(Some((w.round() as u32, h.round() as u32)))
        }
        _ => Ok(None),
    }
}

/// The warning kind of a skipped shape type.
fn skipped_kind(shape_type: &str) -> &'static str {
    match shape_type {
        "polygon" => "skipped_polygon",
        "circle" => "skipped_circle",
        "line" => "skipped_line",
        "linestrip" => "skipped_linestrip",
        "point" => "skipped_point",
        "points" => "skipped_points",
        "mask" => "skipped_mask",
        _ => "skipped_shape",
    }
}

/// The bounding box of a list of points.
fn points_box(points: &[(f64, f64)]) -> BBox {
    let (mut x0, mut y0) = (f64::INFINITY, f64::INFINITY);
    let (mut x1, mut y1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for &(x, y) in points {
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    BBox::from_corners(x0, y0, x1, y1)
}

/// Imports one labelme JSON file, or every `.json` under a folder (recursively).
pub(super) fn import(path: &Path, settings: &ImportSettings) -> Result<Parsed, FormatError> {
    let meta = std::fs::metadata(path).map_err(|e| FormatError::io(path, e))?;
    let (root, files, single) = if meta.is_dir() {
        (
            path.to_path_buf(),
            files_with_extension(path, "json")?,
            false,
        )
    } else {
        (parent_dir(path), vec![path.to_path_buf()], true)
    };
    let images_dir = settings.images_dir.as_deref();
    let base = images_dir.map_or_else(|| root.clone(), Path::to_path_buf);

    let mut report = Report::default();
    let mut classes: Vec<String> = Vec::new();
    let mut class_of: HashMap<String, usize> = HashMap::new();
    let mut images = Vec::with_capacity(files.len());
    for file in &files {
        let bytes = read_file(file)?;
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let value: Value = parse_json(file, bytes)?;
        let is_labelme = value
            .as_object()
            .is_some_and(|o| o.get("shapes").is_some_and(Value::is_array));
        if !is_labelme {
            if single {
                return Err(FormatError::Unsupported {
                    path: file.clone(),
                    reason: "not a labelme file: no `shapes` list at the top level".to_owned(),
                });
            }
            report.warn(
                "not_labelme",
                || file.display().to_string(),
                || "no `shapes` list at the top level: not a labelme file; skipped".to_owned(),
            );
            continue;
        }
        let doc: FileIn = serde_json::from_value(value).map_err(|e| {
            FormatError::invalid(file, "top level", format!("not a labelme file: {e}"))
        })?;
        let file_dir = parent_dir(file);
        let image_path = doc
            .image_path
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| FormatError::MissingField {
                path: file.clone(),
                record: "top level".to_owned(),
                field: "imagePath",
            })?;
        let (image, found) = locate_image(&file_dir, image_path, images_dir);
        let file_name = relative_slash_path(&base, &normalize_path(&image));
        let (width, height) = match size_fields(
            file,
            "imageWidth/imageHeight",
            doc.image_width,
            doc.image_height,
        )? {
            Some(size) => size,
            None => {
                let probed = if found {
                    probe(&image)
                        .map(|i| (i.width, i.height))
                        .map_err(|e| e.to_string())
                } else if let Some(data) = doc.image_data.as_deref().filter(|d| !d.is_empty()) {
                    embedded_size(data)
                } else {
                    Err(format!("the image `{image_path}` was not found"))
                };
                match probed {
                    Ok(size) => size,
                    Err(reason) => {
                        report.warn(
                            "missing_size",
                            || file.display().to_string(),
                            || {
                                format!(
                                    "no imageWidth/imageHeight and no size from the image ({reason}); boxes are not clipped"
                                )
                            },
                        );
                        (0, 0)
                    }
                }
            }
        };
        let mut boxes = Vec::new();
        for (i, shape) in doc.shapes.unwrap_or_default().into_iter().enumerate() {
            let label = shape.label.as_deref().map(str::trim).unwrap_or_default();
            let record = || format!("shapes[{i}] (label `{label}`)");
            if label.is_empty() {
                return Err(FormatError::MissingField {
                    path: file.clone(),
                    record: format!("shapes[{i}]"),
                    field: "label",
                });
            }
            let shape_type = shape.shape_type.as_deref().unwrap_or("polygon");
            let raw = shape.points.ok_or_else(|| FormatError::MissingField {
                path: file.clone(),
                record: record(),
                field: "points",
            })?;
            let mut points = Vec::with_capacity(raw.len());
            for (j, p) in raw.iter().enumerate() {
                match p.as_slice() {
                    [x, y] if x.is_finite() && y.is_finite() => points.push((*x, *y)),
                    _ => {
                        return Err(FormatError::invalid(
                            file,
                            format!("{}: points[{j}]", record()),
                            format!("expected two finite numbers [x, y], found {p:?}"),
                        ));
                    }
                }
            }
            let needs = |n: &[usize]| -> Result<(), FormatError> {
                if n.contains(&points.len()) {
                    Ok(())
                } else {
                    Err(FormatError::invalid(
                        file,
                        record(),
                        format!(
                            "a {shape_type} needs {} points, found {}",
                            n.iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(" or "),
                            points.len()
                        ),
                    ))
                }
            };
            let known = matches!(
                shape_type,
                "polygon" | "circle" | "line" | "linestrip" | "point" | "points" | "mask"
            );
            let bbox = match shape_type {
                // Two opposite corners; some converters write all four.
                "rectangle" => {
                    needs(&[2, 4])?;
                    points_box(&points)
                }
                _ if !settings.shapes_as_boxes || !known => {
                    report.skipped += 1;
                    report.warn(
                        skipped_kind(shape_type),
                        || format!("{}: {}", file.display(), record()),
                        || {
                            if known {
                                format!("a {shape_type} is not a box; skipped (--shapes-as-boxes converts it to its bounding box)")
                            } else {
                                format!("unknown shape_type `{shape_type}`; skipped")
                            }
                        },
                    );
                    continue;
                }
                "circle" => {
                    needs(&[2])?;
                    let ((cx, cy), (px, py)) = (points[0], points[1]);
                    let r = (px - cx).hypot(py - cy);
                    BBox::new(cx - r, cy - r, 2.0 * r, 2.0 * r)
                }
                _ => {
                    if points.is_empty() {
                        return Err(FormatError::invalid(
                            file,
                            record(),
                            format!("a {shape_type} with no points"),
                        ));
                    }
                    points_box(&points)
                }
            };
            let id = match &shape.loupe_id {
                Some(s) => Some(Uuid::parse_str(s).map_err(|e| {
                    FormatError::invalid(file, record(), format!("loupe_id `{s}`: {e}"))
                })?),
                None => None,
            };
            let mut attributes = Attributes::new();
            if let Some(v) = shape.group_id.as_ref().and_then(AttributeValue::from_json) {
                attributes.insert("group_id", v);
            }
            if let Some(d) = shape.description.as_deref().filter(|d| !d.is_empty()) {
                attributes.insert("description", d);
            }
            for (k, v) in shape.flags.iter().flatten() {
                if let Some(v) = AttributeValue::from_json(v) {
                    attributes.insert(format!("flags.{k}"), v);
                }
            }
            let Some(bbox) = accept_box(&mut report, bbox, width, height, || {
                format!("{}: {}", file.display(), record())
            }) else {
                continue;
            };
            let class = *class_of.entry(label.to_owned()).or_insert_with(|| {
                classes.push(label.to_owned());
                classes.len() - 1
            });
            boxes.push(DatasetBox {
                class,
                bbox,
                id,
                attributes,
                ..DatasetBox::default()
            });
        }
        images.push(DatasetImage {
            file_name,
            width,
            height,
            external_id: None,
            boxes,
        });
    }
    if images.is_empty() {
        return Err(FormatError::Unsupported {
            path: path.to_path_buf(),
            reason: "no labelme JSON files found (a .json file with a top-level `shapes` list)"
                .to_owned(),
        });
    }
    let (warnings, skipped) = report.finish(path);
    Ok(Parsed {
        frames: std::collections::HashMap::new(),
        dataset: Dataset { classes, images },
        warnings,
        images_dir: base,
        skipped,
        predictions: Vec::new(),
        unresolved: Vec::new(),
    })
}

/// Checks what every exporter needs: class indices in range, finite boxes, safe file names.
/// Returns each image's safe relative path.
pub(super) fn checked_paths(dataset: &Dataset, out: &Path) -> Result<Vec<PathBuf>, FormatError> {
    let mut rels = Vec::with_capacity(dataset.images.len());
    for img in &dataset.images {
        let Some(rel) = safe_relative(&img.file_name) else {
            return Err(FormatError::export(
                out,
                format!(
                    "image file name `{}` is empty or not relative",
                    img.file_name
                ),
            ));
        };
        for b in &img.boxes {
            if b.class >= dataset.classes.len() {
                return Err(FormatError::export(
                    out,
                    format!(
                        "a box of `{}` has class index {} but there are {} classes",
                        img.file_name,
                        b.class,
                        dataset.classes.len()
                    ),
                ));
            }
            if !b.bbox.is_finite() {
                return Err(FormatError::export(
                    out,
                    format!("a box of `{}` is not finite", img.file_name),
                ));
            }
        }
        rels.push(rel);
    }
    Ok(rels)
}

/// The image under `images_root`, when it is there (a missing one is not copied; its
/// annotations are still written).
pub(super) fn source_image(images_root: Option<&Path>, file_name: &str) -> Option<PathBuf> {
    let root = images_root?;
    let source = normalize_path(&root.join(file_name));
    if source.is_file() {
        Some(source)
    } else {
        tracing::warn!(
            "{}: image not found; not copied into the export",
            source.display()
        );
        None
    }
}

/// Writes `<out>/<image path>.json` per image and, when `images_root` is given, the image
/// beside it (hard-linked or copied).
pub(super) fn export(
    dataset: &Dataset,
    out: &Path,
    images_root: Option<&Path>,
    force: bool,
) -> Result<ExportReport, FormatError> {
    let rels = checked_paths(dataset, out)?;
    let mut json_paths = HashSet::with_capacity(rels.len());
    for rel in &rels {
        let json_rel = rel.with_extension("json");
        if !json_paths.insert(json_rel.clone()) {
            return Err(FormatError::export(
                out,
                format!(
                    "two images would share the labelme file `{}`",
                    json_rel.display()
                ),
            ));
        }
    }
    let mut files_written = 0;
    let mut boxes = 0;
    for (img, rel) in dataset.images.iter().zip(&rels) {
        let image_name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let shapes: Vec<Value> = img
            .boxes
            .iter()
            .map(|b| shape_json(b, &dataset.classes[b.class]))
            .collect();
        boxes += shapes.len();
        let size = |v: u32| if v == 0 { Value::Null } else { json!(v) };
        let doc = json!({
            "version": EXPORT_VERSION,
            "flags": {},
            "shapes": shapes,
            "imagePath": image_name,
            "imageData": null,
            "imageHeight": size(img.height),
            "imageWidth": size(img.width),
        });
        let text = serde_json::to_vec_pretty(&doc)
            .map_err(|e| FormatError::export(out, format!("cannot encode JSON: {e}")))?;
        write_file(&out.join(rel.with_extension("json")), &text, force)?;
        files_written += 1;
        if let Some(source) = source_image(images_root, &img.file_name) {
            link_or_copy(&source, &out.join(rel), force)?;
            files_written += 1;
        }
    }
    Ok(ExportReport {
        files_written,
        images: dataset.images.len(),
        boxes,
    })
}

/// One box as a labelme rectangle shape, its attributes put back where labelme keeps them.
fn shape_json(b: &DatasetBox, label: &str) -> Value {
    let r = &b.bbox;
    let mut group_id = Value::Null;
    let mut description = String::new();
    let mut flags = Map::new();
    for (k, v) in b.attributes.iter() {
        if k == "group_id" {
            group_id = v.as_i64().map_or_else(|| json!(v), |n| json!(n));
        } else if k == "description" {
            description = v.to_text();
        } else if let Some(name) = k.strip_prefix("flags.") {
            let on = matches!(v, AttributeValue::Bool(true)) || v.to_text() == "true";
            flags.insert(name.to_owned(), json!(on));
        }
    }
    let mut shape = json!({
        "label": label,
        "points": [[r.x, r.y], [r.x2(), r.y2()]],
        "group_id": group_id,
        "description": description,
        "shape_type": "rectangle",
        "flags": flags,
    });
    if let (Some(id), Some(obj)) = (b.id, shape.as_object_mut()) {
        obj.insert("loupe_id".to_owned(), json!(id.hyphenated().to_string()));
    }
    shape
}
