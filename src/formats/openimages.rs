//! Open Images (V4 to V6) bounding-box CSV, with its class descriptions for names.
//!
//! Layout read: `annotations/*-annotations-bbox.csv` (`ImageID,Source,LabelName,Confidence,XMin,
//! XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside`, coordinates normalised
//! to the image size), `annotations/oidv6-class-descriptions.csv` or
//! `class-descriptions-boxable.csv` (`LabelName,DisplayName`, with or without a header), and
//! `images/<subset>/<ImageID>.<any image extension>`. PATH is the dataset folder, its
//! `annotations/` folder, or one bbox CSV.
//!
//! - The subset of a CSV comes from its name (`oidv6-train-…` → `train`); an image is looked for
//!   in `images/<subset>/`, then in the subset `image_ids_and_rotation.csv` (or
//!   `*-images-with-rotation.csv`) gives it, then `images/` and every subset folder.
//! - Sizes come from Datumaro's `images.meta` (`ImageID height width` per line) when present,
//!   else from the image header. (`image_ids_and_rotation.csv` carries no pixel size: its
//!   `OriginalSize` is a byte count.) An image with no known size cannot place normalised boxes:
//!   its boxes are skipped with a `missing_image` warning.
//! - `IsTruncated` → truncated flag, `IsGroupOf` → crowd flag (each also kept as a box attribute
//!   of its name when `-1`, "unknown", so it is written back as `-1`, not `0`); `IsOccluded`,
//!   `IsDepiction`, `IsInside` (when not `-1`: an absent one is written as `-1`) as numbers,
//!   `Source` and a `Confidence` other than 1 become box attributes of the same names, stored
//!   with the box.
//! - Numbers with a decimal comma (`0,25`) are read when the file says so unambiguously: the file
//!   is `;`- or tab-separated, or the field is quoted (`"0,25"`).
//! - Refused with file and line: a missing column, a non-numeric or non-finite coordinate,
//!   `XMin > XMax` or `YMin > YMax`, a row with too few fields.
//!
//! Export writes `annotations/train-annotations-bbox.csv`, `annotations/oidv6-class-descriptions.csv`
//! (the class name serves as `LabelName`), `annotations/images.meta` with the sizes, and, when
//! the images are found, `images/train/<ImageID>.<ext>` with the file stem as `ImageID`.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::labelme::{checked_paths, parent_dir, source_image};
use super::{
    ExportReport, FormatError, ImportSettings, Parsed, Report, accept_box, find_image_with_stem,
    link_or_copy, read_text, relative_slash_path, write_file,
};
use crate::imaging::probe;
use crate::model::{AttributeValue, Attributes, BBox, BoxFlags, Dataset, DatasetBox, DatasetImage};

/// Class description files, in order of preference.
const CLASS_FILES: &[&str] = &[
    "oidv6-class-descriptions.csv",
    "class-descriptions-boxable.csv",
    "class-descriptions.csv",
];

/// Files that map an ImageID to its subset.
const IMAGE_LIST_SUFFIXES: &[&str] = &["image_ids_and_rotation.csv", "-images-with-rotation.csv"];

/// The subset folders Open Images uses.
const SUBSETS: &[&str] = &["train", "validation", "test"];

/// One CSV field and whether it was quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    text: String,
    quoted: bool,
}

/// A CSV row with the 1-based line it starts on.
#[derive(Debug)]
struct Row {
    line: usize,
    fields: Vec<Field>,
}

/// Parses CSV text (RFC 4180 quoting; `delimiter` between fields). Blank lines are skipped.
fn parse_csv(path: &Path, text: &str, delimiter: char) -> Result<Vec<Row>, FormatError> {
    let mut rows = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut line = 1;
    let mut row_line = 1;
    let mut chars = text.chars().peekable();
    let mut row_has_content = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !quoted => {
                in_quotes = true;
                quoted = true;
                row_has_content = true;
            }
            c if c == delimiter => {
                fields.push(Field {
                    text: std::mem::take(&mut field),
                    quoted,
                });
                quoted = false;
                row_has_content = true;
            }
            '\r' => {}
            '\n' => {
                if row_has_content || !field.is_empty() {
                    fields.push(Field {
                        text: std::mem::take(&mut field),
                        quoted,
                    });
                    rows.push(Row {
                        line: row_line,
                        fields: std::mem::take(&mut fields),
                    });
                }
                quoted = false;
                row_has_content = false;
                line += 1;
                row_line = line;
            }
            _ => {
                field.push(c);
                row_has_content = true;
            }
        }
    }
    if in_quotes {
        return Err(FormatError::invalid(
            path,
            format!("line {row_line}"),
            "a quoted field is not closed before the end of the file",
        ));
    }
    if row_has_content || !field.is_empty() {
        fields.push(Field {
            text: field,
            quoted,
        });
        rows.push(Row {
            line: row_line,
            fields,
        });
    }
    Ok(rows)
}

/// The delimiter of a CSV file, from its first line: `;` or tab when the line has those and no
/// comma outside quotes, else `,`.
fn detect_delimiter(text: &str) -> char {
    let first = text.lines().next().unwrap_or_default();
    let mut in_quotes = false;
    let (mut commas, mut semis, mut tabs) = (0, 0, 0);
    for c in first.chars() {
        match c {
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => commas += 1,
            ';' if !in_quotes => semis += 1,
            '\t' if !in_quotes => tabs += 1,
            _ => {}
        }
    }
    if commas == 0 && semis > 0 {
        ';'
    } else if commas == 0 && tabs > 0 {
        '\t'
    } else {
        ','
    }
}

/// Reads a number, accepting a decimal comma when the file (`comma_ok`: not comma-separated) or
/// the field (quoted) is unambiguous about it.
fn number(field: &Field, comma_ok: bool) -> Option<f64> {
    let t = field.text.trim();
    let v = if (comma_ok || field.quoted) && !t.contains('.') && t.matches(',').count() == 1 {
        t.replace(',', ".").parse::<f64>().ok()
    } else {
        t.parse::<f64>().ok()
    };
    v.filter(|v| v.is_finite())
}

/// A CSV file read whole: rows and delimiter.
struct Csv {
    rows: Vec<Row>,
    delimiter: char,
}

fn read_csv(path: &Path) -> Result<Csv, FormatError> {
    let text = read_text(path)?;
    let delimiter = detect_delimiter(&text);
    Ok(Csv {
        rows: parse_csv(path, &text, delimiter)?,
        delimiter,
    })
}

/// `LabelName` → display name.
fn read_class_descriptions(path: &Path) -> Result<Vec<(String, String)>, FormatError> {
    let csv = read_csv(path)?;
    let mut out = Vec::with_capacity(csv.rows.len());
    for (i, row) in csv.rows.iter().enumerate() {
        let [mid, name, ..] = row.fields.as_slice() else {
            return Err(FormatError::invalid(
                path,
                format!("line {}", row.line),
                "expected `LabelName,DisplayName`",
            ));
        };
        if i == 0 && mid.text.trim() == "LabelName" {
            continue;
        }
        out.push((mid.text.trim().to_owned(), name.text.trim().to_owned()));
    }
    Ok(out)
}

/// An image id and its (width, height).
type ImageSize = (String, (u32, u32));

/// Datumaro's `images.meta`: `ImageID height width` per line, `#` comments.
fn read_images_meta(path: &Path) -> Result<Vec<ImageSize>, FormatError> {
    let text = read_text(path)?;
    let mut sizes = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let parsed = match parts.as_slice() {
            [id, h, w] => h
                .parse::<u32>()
                .ok()
                .zip(w.parse::<u32>().ok())
                .map(|(h, w)| ((*id).to_owned(), (w, h))),
            _ => None,
        };
        let Some((id, size)) = parsed else {
            return Err(FormatError::invalid(
                path,
                format!("line {}", i + 1),
                "expected `ImageID height width`",
            ));
        };
        sizes.push((id, size));
    }
    Ok(sizes)
}

/// ImageID → subset, from the image list files in `dir`.
fn read_subsets(dir: &Path) -> Result<HashMap<String, String>, FormatError> {
    let mut subsets = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(subsets);
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| IMAGE_LIST_SUFFIXES.iter().any(|s| n.ends_with(s)))
        })
        .collect();
    files.sort();
    for file in files {
        let csv = read_csv(&file)?;
        let Some((header, rows)) = csv.rows.split_first() else {
            continue;
        };
        let col = |name: &str| header.fields.iter().position(|f| f.text.trim() == name);
        let (Some(id), Some(subset)) = (col("ImageID"), col("Subset")) else {
            continue;
        };
        for row in rows {
            if let (Some(i), Some(s)) = (row.fields.get(id), row.fields.get(subset)) {
                subsets.insert(i.text.trim().to_owned(), s.text.trim().to_owned());
            }
        }
    }
    Ok(subsets)
}

/// True for a bounding-box annotation CSV by its name.
fn is_bbox_csv(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.to_ascii_lowercase().ends_with("annotations-bbox.csv"))
}

/// The subset a bbox CSV is for, from its name (`oidv6-train-annotations-bbox.csv` → `train`).
fn subset_of(csv: &Path) -> Option<String> {
    let name = csv.file_name()?.to_str()?.to_ascii_lowercase();
    let stem = name.strip_suffix("annotations-bbox.csv")?;
    let stem = stem.trim_end_matches('-');
    let stem = stem.strip_prefix("oidv6-").unwrap_or(stem);
    let stem = stem.strip_prefix("oidv5-").unwrap_or(stem);
    (!stem.is_empty()).then(|| stem.to_owned())
}

/// The bbox CSVs, the annotations folder and the dataset root for PATH.
fn locate_inputs(path: &Path) -> Result<(Vec<PathBuf>, PathBuf, PathBuf), FormatError> {
    let meta = std::fs::metadata(path).map_err(|e| FormatError::io(path, e))?;
    let (csvs, ann_dir) = if meta.is_dir() {
        let ann_dir = if path.join("annotations").is_dir() {
            path.join("annotations")
        } else {
            path.to_path_buf()
        };
        let mut csvs: Vec<PathBuf> = std::fs::read_dir(&ann_dir)
            .map_err(|e| FormatError::io(&ann_dir, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && is_bbox_csv(p))
            .collect();
        csvs.sort();
        (csvs, ann_dir)
    } else {
        (vec![path.to_path_buf()], parent_dir(path))
    };
    if csvs.is_empty() {
        return Err(FormatError::Unsupported {
            path: path.to_path_buf(),
            reason: format!(
                "no bounding-box CSV (`*-annotations-bbox.csv`) in {}",
                ann_dir.display()
            ),
        });
    }
    let root = if ann_dir
        .file_name()
        .is_some_and(|n| n.eq_ignore_ascii_case("annotations"))
    {
        parent_dir(&ann_dir)
    } else {
        ann_dir.clone()
    };
    Ok((csvs, ann_dir, root))
}

/// Column positions of a bbox CSV.
struct Columns {
    image_id: usize,
    label: usize,
    xmin: usize,
    xmax: usize,
    ymin: usize,
    ymax: usize,
    source: Option<usize>,
    confidence: Option<usize>,
    occluded: Option<usize>,
    truncated: Option<usize>,
    group_of: Option<usize>,
    depiction: Option<usize>,
    inside: Option<usize>,
}

fn columns(path: &Path, header: &Row) -> Result<Columns, FormatError> {
    let col = |name: &str| header.fields.iter().position(|f| f.text.trim() == name);
    let need = |name: &'static str| {
        col(name).ok_or_else(|| {
            FormatError::invalid(
                path,
                format!("line {} (header)", header.line),
                format!("missing column `{name}`"),
            )
        })
    };
    Ok(Columns {
        image_id: need("ImageID")?,
        label: need("LabelName")?,
        xmin: need("XMin")?,
        xmax: need("XMax")?,
        ymin: need("YMin")?,
        ymax: need("YMax")?,
        source: col("Source"),
        confidence: col("Confidence"),
        occluded: col("IsOccluded"),
        truncated: col("IsTruncated"),
        group_of: col("IsGroupOf"),
        depiction: col("IsDepiction"),
        inside: col("IsInside"),
    })
}

/// One image being assembled: index into the image list, size.
struct ImageSlot {
    index: usize,
    width: u32,
    height: u32,
}

/// Imports an Open Images dataset folder or one bbox CSV.
#[allow(clippy::too_many_lines)]
pub(super) fn import(path: &Path, settings: &ImportSettings) -> Result<Parsed, FormatError> {
    let (csvs, ann_dir, root) = locate_inputs(path)?;
    let images_root = settings.images_dir.clone().unwrap_or_else(|| {
        let images = root.join("images");
        if images.is_dir() {
            images
        } else {
            root.clone()
        }
    });
    let mut report = Report::default();
    let class_file = CLASS_FILES
        .iter()
        .map(|f| ann_dir.join(f))
        .find(|p| p.is_file());
    let descriptions = match &class_file {
        Some(f) => read_class_descriptions(f)?,
        None => {
            report.warn(
                "no_class_descriptions",
                || ann_dir.display().to_string(),
                || {
                    format!(
                        "no class descriptions file ({}); classes are named by LabelName",
                        CLASS_FILES.join(", ")
                    )
                },
            );
            Vec::new()
        }
    };
    let description_rank: HashMap<&str, (usize, &str)> = descriptions
        .iter()
        .enumerate()
        .map(|(i, (mid, name))| (mid.as_str(), (i, name.as_str())))
        .collect();
    let meta_file = ann_dir.join("images.meta");
    let meta = if meta_file.is_file() {
        read_images_meta(&meta_file)?
    } else {
        Vec::new()
    };
    let mut lookup = Lookup {
        images_root: images_root.clone(),
        ann_dir: ann_dir.clone(),
        sizes: meta.iter().cloned().collect(),
        subsets: None,
    };

    // LabelNames in order of first use; classes are ordered by the descriptions file afterwards.
    let mut labels: Vec<String> = Vec::new();
    let mut label_of: HashMap<String, usize> = HashMap::new();
    let mut images: Vec<DatasetImage> = Vec::new();
    let mut slots: HashMap<String, Option<ImageSlot>> = HashMap::new();
    for csv_path in &csvs {
        let csv = read_csv(csv_path)?;
        let comma_file = csv.delimiter != ',';
        let Some((header, rows)) = csv.rows.split_first() else {
            continue;
        };
        let cols = columns(csv_path, header)?;
        let width_needed = [
            Some(cols.image_id),
            Some(cols.label),
            Some(cols.xmin),
            Some(cols.xmax),
            Some(cols.ymin),
            Some(cols.ymax),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0);
        let subset = subset_of(csv_path);
        for row in rows {
            let location = || format!("line {}", row.line);
            if row.fields.len() > header.fields.len() {
                return Err(FormatError::invalid(
                    csv_path,
                    location(),
                    format!(
                        "{} fields, but the header has {} (a decimal comma in a comma-separated file must be quoted: \"0,25\")",
                        row.fields.len(),
                        header.fields.len()
                    ),
                ));
            }
            if row.fields.len() <= width_needed {
                return Err(FormatError::invalid(
                    csv_path,
                    location(),
                    format!(
                        "{} fields, but the header has {}",
                        row.fields.len(),
                        header.fields.len()
                    ),
                ));
            }
            let text = |i: usize| row.fields[i].text.trim();
            let opt_text =
                |i: Option<usize>| i.and_then(|i| row.fields.get(i)).map(|f| f.text.trim());
            let coord = |i: usize, name: &str| -> Result<f64, FormatError> {
                number(&row.fields[i], comma_file).ok_or_else(|| {
                    FormatError::invalid(
                        csv_path,
                        location(),
                        format!("{name} is not a finite number: `{}`", text(i)),
                    )
                })
            };
            let (xmin, xmax) = (coord(cols.xmin, "XMin")?, coord(cols.xmax, "XMax")?);
            let (ymin, ymax) = (coord(cols.ymin, "YMin")?, coord(cols.ymax, "YMax")?);
            if xmin > xmax || ymin > ymax {
                return Err(FormatError::invalid(
                    csv_path,
                    location(),
                    format!("XMin > XMax or YMin > YMax ({xmin}, {xmax}, {ymin}, {ymax})"),
                ));
            }
            let image_id = text(cols.image_id);
            let label = text(cols.label);
            if image_id.is_empty() || label.is_empty() {
                return Err(FormatError::invalid(
                    csv_path,
                    location(),
                    "empty ImageID or LabelName",
                ));
            }
            let flag = |i: Option<usize>| -> Result<Option<i64>, FormatError> {
                match opt_text(i) {
                    None | Some("") => Ok(None),
                    Some(t) => t.parse::<i64>().map(Some).map_err(|_| {
                        FormatError::invalid(
                            csv_path,
                            location(),
                            format!("flag `{t}` is not -1, 0 or 1"),
                        )
                    }),
                }
            };
            let confidence = match i_field(&row.fields, cols.confidence) {
                None => None,
                Some(f) if f.text.trim().is_empty() => None,
                Some(f) => Some(number(f, comma_file).ok_or_else(|| {
                    FormatError::invalid(
                        csv_path,
                        location(),
                        format!("Confidence is not a number: `{}`", f.text.trim()),
                    )
                })?),
            };
            let group_of = flag(cols.group_of)?;
            let truncated = flag(cols.truncated)?;
            let flags = BoxFlags {
                iscrowd: group_of == Some(1),
                truncated: truncated == Some(1),
                difficult: false,
            };
            let mut attributes = Attributes::new();
            if let Some(s) = opt_text(cols.source).filter(|s| !s.is_empty()) {
                attributes.insert("Source", s);
            }
            if let Some(c) = confidence.filter(|c| (*c - 1.0).abs() > f64::EPSILON) {
                attributes.insert("Confidence", AttributeValue::from_text(&c.to_string()));
            }
            for (name, col) in [
                ("IsOccluded", cols.occluded),
                ("IsDepiction", cols.depiction),
                ("IsInside", cols.inside),
            ] {
                if let Some(v) = flag(col)?.filter(|v| *v != -1) {
                    attributes.insert(name, v);
                }
            }
            // The flags are booleans; "unknown" is kept beside them so it survives.
            for (name, v) in [("IsTruncated", truncated), ("IsGroupOf", group_of)] {
                if v == Some(-1) {
                    attributes.insert(name, -1);
                }
            }

            if !slots.contains_key(image_id) {
                let slot = locate(
                    image_id,
                    subset.as_deref(),
                    &mut lookup,
                    &mut report,
                    &mut images,
                    csv_path,
                )?;
                slots.insert(image_id.to_owned(), slot);
            }
            let slot = slots.get(image_id).and_then(Option::as_ref);
            let Some(slot) = slot else {
                report.skipped += 1;
                continue;
            };
            let (w, h) = (f64::from(slot.width), f64::from(slot.height));
            let bbox = BBox::from_corners(xmin * w, ymin * h, xmax * w, ymax * h);
            let Some(bbox) = accept_box(&mut report, bbox, slot.width, slot.height, || {
                format!("{}: {}", csv_path.display(), location())
            }) else {
                continue;
            };
            let label_index = *label_of.entry(label.to_owned()).or_insert_with(|| {
                labels.push(label.to_owned());
                labels.len() - 1
            });
            images[slot.index].boxes.push(DatasetBox {
                class: label_index,
                bbox,
                flags,
                attributes,
                ..DatasetBox::default()
            });
        }
    }

    // Images images.meta lists without boxes are images of the dataset too (Loupe's export
    // lists every image there), when the whole dataset folder is imported.
    let whole_dataset = std::fs::metadata(path).is_ok_and(|m| m.is_dir());
    for (image_id, _) in meta.iter().filter(|_| whole_dataset) {
        if !slots.contains_key(image_id.as_str()) {
            let slot = locate(
                image_id,
                None,
                &mut lookup,
                &mut report,
                &mut images,
                &meta_file,
            )?;
            slots.insert(image_id.clone(), slot);
        }
    }

    // Classes in the descriptions file's order (those it does not list after, in order of use).
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by_key(|&i| {
        description_rank
            .get(labels[i].as_str())
            .map_or((usize::MAX, i), |&(rank, _)| (rank, i))
    });
    let mut new_index = vec![0; labels.len()];
    let mut classes = Vec::with_capacity(labels.len());
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new;
        let mid = &labels[old];
        let name = if let Some(&(_, name)) = description_rank.get(mid.as_str()) {
            name.to_owned()
        } else {
            if let Some(file) = &class_file {
                report.warn(
                    "unknown_class",
                    || file.display().to_string(),
                    || format!("LabelName `{mid}` is not in the class descriptions; named by it"),
                );
            }
            mid.clone()
        };
        classes.push(name);
    }
    for img in &mut images {
        for b in &mut img.boxes {
            b.class = new_index[b.class];
        }
    }
    let (warnings, skipped) = report.finish(path);
    Ok(Parsed {
        frames: std::collections::HashMap::new(),
        dataset: Dataset { classes, images },
        warnings,
        images_dir: images_root,
        skipped,
        predictions: Vec::new(),
        unresolved: Vec::new(),
    })
}

fn i_field(fields: &[Field], i: Option<usize>) -> Option<&Field> {
    i.and_then(|i| fields.get(i))
}

/// What finding an image needs: where images are, the sizes `images.meta` gives, and the
/// ImageID → subset map of the image list files (read only when an image is not found in its
/// CSV's subset folder, as those lists can hold millions of rows).
struct Lookup {
    images_root: PathBuf,
    ann_dir: PathBuf,
    sizes: HashMap<String, (u32, u32)>,
    subsets: Option<HashMap<String, String>>,
}

/// Finds the image of `image_id` and its size, and adds it to `images`. `None` (with a warning)
/// when its size cannot be known: normalised boxes cannot be placed.
fn locate(
    image_id: &str,
    csv_subset: Option<&str>,
    lookup: &mut Lookup,
    report: &mut Report,
    images: &mut Vec<DatasetImage>,
    source: &Path,
) -> Result<Option<ImageSlot>, FormatError> {
    let root = lookup.images_root.clone();
    let mut found = csv_subset.and_then(|s| find_image_with_stem(&root.join(s), image_id));
    let mut listed_subset = None;
    if found.is_none() {
        if lookup.subsets.is_none() {
            lookup.subsets = Some(read_subsets(&lookup.ann_dir)?);
        }
        listed_subset = lookup
            .subsets
            .as_ref()
            .and_then(|m| m.get(image_id))
            .cloned();
        let mut dirs: Vec<PathBuf> = Vec::new();
        dirs.extend(listed_subset.iter().map(|s| root.join(s)));
        dirs.push(root.clone());
        dirs.extend(SUBSETS.iter().map(|s| root.join(s)));
        found = dirs.iter().find_map(|d| find_image_with_stem(d, image_id));
    }
    let file_name = found.as_ref().map_or_else(
        || {
            csv_subset.or(listed_subset.as_deref()).map_or_else(
                || format!("{image_id}.jpg"),
                |d| format!("{d}/{image_id}.jpg"),
            )
        },
        |f| relative_slash_path(&root, f),
    );
    let size = match (lookup.sizes.get(image_id), &found) {
        (Some(&size), _) => Ok(size),
        (None, Some(f)) => probe(f)
            .map(|i| (i.width, i.height))
            .map_err(|e| e.to_string()),
        (None, None) => Err(format!(
            "no image `{image_id}.*` under {} and no size in images.meta",
            root.display()
        )),
    };
    Ok(match size {
        Ok((width, height)) => {
            images.push(DatasetImage {
                file_name,
                width,
                height,
                external_id: None,
                boxes: Vec::new(),
            });
            Some(ImageSlot {
                index: images.len() - 1,
                width,
                height,
            })
        }
        Err(reason) => {
            report.warn(
                "missing_image",
                || format!("{}: ImageID {image_id}", source.display()),
                || format!("{reason}: its boxes cannot be placed and are skipped"),
            );
            None
        }
    })
}

/// An attribute as an Open Images cell: booleans (from other formats) as `1`/`0`.
fn open_images_text(v: &AttributeValue) -> String {
    match v {
        AttributeValue::Bool(b) => u8::from(*b).to_string(),
        v => v.to_text(),
    }
}

/// Quotes a CSV field when it needs it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.trim() != s {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Writes the bbox CSV, the class descriptions, `images.meta` and the images.
pub(super) fn export(
    dataset: &Dataset,
    out: &Path,
    images_root: Option<&Path>,
    force: bool,
) -> Result<ExportReport, FormatError> {
    let rels = checked_paths(dataset, out)?;
    let mut ids = HashSet::with_capacity(rels.len());
    let mut planned = Vec::with_capacity(rels.len());
    for (img, rel) in dataset.images.iter().zip(&rels) {
        let id = rel
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if id.is_empty() || id.contains([',', '"', '\n', '\r', ' ', '\t']) {
            return Err(FormatError::export(
                out,
                format!(
                    "image `{}` has no usable ImageID (its file stem)",
                    img.file_name
                ),
            ));
        }
        if !ids.insert(id.clone()) {
            return Err(FormatError::export(
                out,
                format!(
                    "two images would share the ImageID `{id}` (Open Images names images by file stem)"
                ),
            ));
        }
        if !img.boxes.is_empty() && (img.width == 0 || img.height == 0) {
            return Err(FormatError::export(
                out,
                format!(
                    "image `{}` has no known size: its boxes cannot be normalised",
                    img.file_name
                ),
            ));
        }
        planned.push((img, rel, id));
    }
    for name in &dataset.classes {
        if name.trim().is_empty() || name.contains(['\n', '\r']) {
            return Err(FormatError::export(
                out,
                format!("class name {name:?} cannot be written as a LabelName"),
            ));
        }
    }

    let mut bbox = String::from(
        "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside\n",
    );
    let mut meta = String::from("# ImageID height width (Datumaro's images.meta)\n");
    let mut boxes = 0;
    for (img, _, id) in &planned {
        let _ = writeln!(meta, "{id} {} {}", img.height, img.width);
        let (w, h) = (f64::from(img.width), f64::from(img.height));
        for b in &img.boxes {
            let attr = |k: &str| b.attributes.get(k).map(open_images_text);
            let flag = |k: &str| attr(k).unwrap_or_else(|| "-1".to_owned());
            // A set flag wins; an unset one is written as the attribute kept for it (`-1`).
            let bool_flag = |on: bool, k: &str| {
                if on {
                    "1".to_owned()
                } else {
                    attr(k).unwrap_or_else(|| "0".to_owned())
                }
            };
            let confidence = b.score.map_or_else(
                || attr("Confidence").unwrap_or_else(|| "1".to_owned()),
                |s| s.to_string(),
            );
            let r = &b.bbox;
            let _ = writeln!(
                bbox,
                "{id},{},{},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&attr("Source").unwrap_or_default()),
                csv_field(&dataset.classes[b.class]),
                csv_field(&confidence),
                r.x / w,
                r.x2() / w,
                r.y / h,
                r.y2() / h,
                csv_field(&flag("IsOccluded")),
                csv_field(&bool_flag(b.flags.truncated, "IsTruncated")),
                csv_field(&bool_flag(b.flags.iscrowd, "IsGroupOf")),
                csv_field(&flag("IsDepiction")),
                csv_field(&flag("IsInside")),
            );
            boxes += 1;
        }
    }
    let mut classes = String::from("LabelName,DisplayName\n");
    for name in &dataset.classes {
        let _ = writeln!(classes, "{},{}", csv_field(name), csv_field(name));
    }
    let ann = out.join("annotations");
    write_file(
        &ann.join("train-annotations-bbox.csv"),
        bbox.as_bytes(),
        force,
    )?;
    write_file(
        &ann.join("oidv6-class-descriptions.csv"),
        classes.as_bytes(),
        force,
    )?;
    write_file(&ann.join("images.meta"), meta.as_bytes(), force)?;
    let mut files_written = 3;
    for (img, rel, id) in &planned {
        if let Some(source) = source_image(images_root, &img.file_name) {
            let name = rel
                .extension()
                .map_or_else(|| id.clone(), |e| format!("{id}.{}", e.to_string_lossy()));
            link_or_copy(&source, &out.join("images").join("train").join(name), force)?;
            files_written += 1;
        }
    }
    Ok(ExportReport {
        files_written,
        images: dataset.images.len(),
        boxes,
    })
}
