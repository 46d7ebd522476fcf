//! CreateML JSON: a list of `{image, annotations: [{label, coordinates: {x, y, width, height}}]}`.
//!
//! `x`, `y` are the box centre in pixels (Apple's convention, which labelImg's writer and
//! Roboflow's `_annotations.createml.json` follow), so a box is `x - width/2, y - height/2`.
//! The file gives no image size: it is read from the image's header when the image is found
//! (beside the JSON, else under `--images`), else boxes are not clipped (`missing_size` warning).
//!
//! Import reads one JSON file or every `.json` under a folder (Roboflow writes one per split
//! folder); every one must be a CreateML list. Export writes one JSON (`out` itself when it ends
//! in `.json`, else `out/_annotations.createml.json` as Roboflow names it) with `image` relative
//! to the JSON's folder, and links or copies the images there.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

use super::coco::parse_json;
use super::labelme::{checked_paths, files_with_extension, locate_image, parent_dir, source_image};
use super::{
    ExportReport, FormatError, ImportSettings, Parsed, Report, accept_box, link_or_copy,
    normalize_path, read_file, relative_slash_path, write_file,
};
use crate::imaging::probe;
use crate::model::{BBox, Dataset, DatasetBox, DatasetImage};

/// The file name Roboflow gives a CreateML export, used when `out` is a folder.
const DEFAULT_FILE: &str = "_annotations.createml.json";

#[derive(Deserialize)]
struct ImageIn {
    image: Option<String>,
    annotations: Option<Vec<AnnotationIn>>,
}

#[derive(Deserialize)]
struct AnnotationIn {
    label: Option<String>,
    coordinates: Option<CoordinatesIn>,
}

#[derive(Deserialize)]
struct CoordinatesIn {
    x: Option<f64>,
    y: Option<f64>,
    width: Option<f64>,
    height: Option<f64>,
}

/// Imports one CreateML JSON file, or every `.json` under a folder (recursively).
pub(super) fn import(path: &Path, settings: &ImportSettings) -> Result<Parsed, FormatError> {
    let meta = std::fs::metadata(path).map_err(|e| FormatError::io(path, e))?;
    let (root, files) = if meta.is_dir() {
        (path.to_path_buf(), files_with_extension(path, "json")?)
    } else {
        (parent_dir(path), vec![path.to_path_buf()])
    };
    if files.is_empty() {
        return Err(FormatError::Unsupported {
            path: path.to_path_buf(),
            reason: "no .json files found".to_owned(),
        });
    }
    let images_dir = settings.images_dir.as_deref();
    let base = images_dir.map_or_else(|| root.clone(), Path::to_path_buf);

    let mut report = Report::default();
    let mut classes: Vec<String> = Vec::new();
    let mut class_of: HashMap<String, usize> = HashMap::new();
    let mut images = Vec::new();
    for file in &files {
        let bytes = read_file(file)?;
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let value: Value = parse_json(file, bytes)?;
        if !value.is_array() {
            return Err(FormatError::Unsupported {
                path: file.clone(),
                reason: "not a CreateML file: the top level is not a list of images".to_owned(),
            });
        }
        let list: Vec<ImageIn> = serde_json::from_value(value).map_err(|e| {
            FormatError::invalid(file, "top level", format!("not a CreateML file: {e}"))
        })?;
        let file_dir = parent_dir(file);
        for (i, entry) in list.into_iter().enumerate() {
            let image_rel = entry
                .image
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| FormatError::MissingField {
                    path: file.clone(),
                    record: format!("[{i}]"),
                    field: "image",
                })?;
            let annotations = entry.annotations.ok_or_else(|| FormatError::MissingField {
                path: file.clone(),
                record: format!("[{i}] (image `{image_rel}`)"),
                field: "annotations",
            })?;
            let (image, found) = locate_image(&file_dir, image_rel, images_dir);
            let file_name = relative_slash_path(&base, &normalize_path(&image));
            let probed = if found {
                probe(&image)
                    .map(|i| (i.width, i.height))
                    .map_err(|e| e.to_string())
            } else {
                Err(format!("the image `{image_rel}` was not found"))
            };
            let (width, height) = probed.unwrap_or_else(|reason| {
                report.warn(
                    "missing_size",
                    || format!("{}: [{i}]", file.display()),
                    || format!("the image size is unknown ({reason}); boxes are not clipped"),
                );
                (0, 0)
            });
            let mut boxes = Vec::with_capacity(annotations.len());
            for (j, ann) in annotations.into_iter().enumerate() {
                let record = format!("[{i}].annotations[{j}] (image `{image_rel}`)");
                let missing = |field| FormatError::MissingField {
                    path: file.clone(),
                    record: record.clone(),
                    field,
                };
                let label = ann
                    .label
                    .as_deref()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .ok_or_else(|| missing("label"))?;
                let c = ann.coordinates.ok_or_else(|| missing("coordinates"))?;
                let x = c.x.ok_or_else(|| missing("coordinates.x"))?;
                let y = c.y.ok_or_else(|| missing("coordinates.y"))?;
                let w = c.width.ok_or_else(|| missing("coordinates.width"))?;
                let h = c.height.ok_or_else(|| missing("coordinates.height"))?;
                if w < 0.0 || h < 0.0 {
                    return Err(FormatError::invalid(
                        file,
                        record,
                        format!("negative box size {w}x{h}"),
                    ));
                }
                let bbox = BBox::new(x - w / 2.0, y - h / 2.0, w, h);
                let Some(bbox) = accept_box(&mut report, bbox, width, height, || {
                    format!("{}: {record}", file.display())
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

/// Writes one CreateML JSON and, when `images_root` is given, the images beside it.
pub(super) fn export(
    dataset: &Dataset,
    out: &Path,
    images_root: Option<&Path>,
    force: bool,
) -> Result<ExportReport, FormatError> {
    let rels = checked_paths(dataset, out)?;
    let is_file = out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let (json_path, dir): (PathBuf, PathBuf) = if is_file {
        (out.to_path_buf(), parent_dir(out))
    } else {
        (out.join(DEFAULT_FILE), out.to_path_buf())
    };
    let mut seen = HashSet::with_capacity(rels.len());
    for rel in &rels {
        if !seen.insert(rel) {
            return Err(FormatError::export(
                out,
                format!("two images share the path `{}`", rel.display()),
            ));
        }
    }
    let mut list = Vec::with_capacity(dataset.images.len());
    let mut boxes = 0;
    for (img, rel) in dataset.images.iter().zip(&rels) {
        let annotations: Vec<Value> = img
            .boxes
            .iter()
            .map(|b| {
                let (cx, cy) = b.bbox.center();
                json!({
                    "label": dataset.classes[b.class],
                    "coordinates": {"x": cx, "y": cy, "width": b.bbox.w, "height": b.bbox.h},
                })
            })
            .collect();
        boxes += annotations.len();
        let image = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        list.push(json!({"image": image, "annotations": annotations}));
    }
    let text = serde_json::to_vec_pretty(&Value::Array(list))
        .map_err(|e| FormatError::export(out, format!("cannot encode JSON: {e}")))?;
    write_file(&json_path, &text, force)?;
    let mut files_written = 1;
    for (img, rel) in dataset.images.iter().zip(&rels) {
        if let Some(source) = source_image(images_root, &img.file_name) {
            link_or_copy(&source, &dir.join(rel), force)?;
            files_written += 1;
        }
    }
    Ok(ExportReport {
        files_written,
        images: dataset.images.len(),
        boxes,
    })
}
