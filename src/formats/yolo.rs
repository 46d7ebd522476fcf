//! YOLO: the ultralytics layout (`data.yaml`, `images/[<split>/]`, `labels/[<split>/]`) and the
//! Darknet layout (`obj.data`, `obj.names`, `train.txt`, labels beside the images).
//!
//! Three ways in, chosen from the path given:
//! - a `data.yaml` (or a folder holding one): image-driven, as ultralytics reads it. Every image of
//!   every split is an image of the dataset; its label file is found by replacing the last
//!   `images` folder of its path with `labels` (or beside it); no label file means no boxes.
//! - an `obj.data` (or a folder holding one): image-driven through the `train`/`valid` lists, as
//!   Darknet and CVAT's "YOLO 1.1" read it; `data/` prefixes that point nowhere are resolved
//!   against the `obj.data` folder.
//! - any other folder with a class list (`obj.names`, `classes.txt`): label-driven. Every `.txt`
//!   whose first line reads as a label is a label file; its image is looked for in `images_dir`,
//!   beside it, or in the folder parallel to its `labels`/`Annotations` folder.
//!
//! File names are relative to `images_dir` when it is given, else to the dataset root (the
//! `path` of data.yaml, the folder of obj.data, or the folder imported). With a data.yaml or an
//! obj.data the images are where the configuration says; `images_dir` only changes what their
//! names are relative to.
//!
//! Label lines follow ultralytics: `class cx cy w h` (normalised), or a segment polygon
//! `class x1 y1 x2 y2 ...` whose bounding box is used. A sixth column is read as a score (the
//! `save_conf` output of `yolo predict`). The class list is authoritative: an index with no name
//! refuses the import with the file and line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;
use serde_norway::Value;

use super::{
    ExportReport, FormatError, Parsed, Report, accept_box, find_image_with_stem, normalize_path,
    read_class_list, read_text, relative_slash_path, write_file,
};
use crate::imaging::{has_image_extension, probe};
use crate::model::{BBox, BoxFlags, Dataset, DatasetBox, DatasetImage};

/// One image to import and the label file that goes with it, if any.
#[derive(Debug)]
struct Entry {
    image: PathBuf,
    label: Option<PathBuf>,
}

/// What a layout resolved to, before labels are read and images probed.
#[derive(Debug, Default)]
struct Plan {
    classes: Vec<String>,
    /// The dataset root: the default folder that file names are relative to.
    root: PathBuf,
    entries: Vec<Entry>,
    /// Label files whose image was not found.
    orphans: Vec<PathBuf>,
    report: Report,
}

/// Imports a YOLO dataset from a `data.yaml`, an `obj.data`, or a dataset folder.
pub(super) fn import(path: &Path, images_dir: Option<&Path>) -> Result<Parsed, FormatError> {
    let meta = std::fs::metadata(path).map_err(|e| FormatError::io(path, e))?;
    let plan = if meta.is_dir() {
        let yaml = ["data.yaml", "data.yml", "dataset.yaml", "dataset.yml"]
            .iter()
            .map(|n| path.join(n))
            .find(|p| p.is_file());
        let data = path.join("obj.data");
        if let Some(yaml) = yaml {
            plan_yaml(&yaml)?
        } else if data.is_file() {
            plan_darknet(&data)?
        } else {
            plan_folder(path, images_dir)?
        }
    } else {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        match ext.as_str() {
            "yaml" | "yml" => plan_yaml(path)?,
            "data" => plan_darknet(path)?,
            _ => {
                return Err(FormatError::Unsupported {
                    path: path.to_path_buf(),
                    reason: "a YOLO import takes a data.yaml, an obj.data or a dataset folder"
                        .to_owned(),
                });
            }
        }
    };
    run(plan, path, images_dir)
}

/// One label line, normalised to the image.
#[derive(Debug, Clone, Copy)]
struct LabelBox {
    line: usize,
    class: usize,
    /// Left, top, width, height, all in 0..1 units of the image.
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    score: Option<f32>,
}

/// A class index column: an integer, or an integral float (`2.0`) as numpy writes them.
fn parse_class(token: &str) -> Option<i64> {
    token.parse::<i64>().ok().or_else(|| {
        let v = token.parse::<f64>().ok()?;
        #[allow(clippy::cast_possible_truncation)]
        (v.fract() == 0.0 && v.abs() < 9.0e15).then_some(v as i64)
    })
}

/// True when the first non-blank line of `text` reads as a YOLO label line (or there is none).
fn looks_like_labels(text: &str) -> bool {
    let Some(line) = text.lines().find(|l| !l.trim().is_empty()) else {
        return true;
    };
    let tokens: Vec<&str> = line.split_whitespace().collect();
    tokens.len() >= 5
        && tokens.first().is_some_and(|t| parse_class(t).is_some())
        && tokens.iter().skip(1).all(|t| t.parse::<f64>().is_ok())
}

/// Parses a label file. Any malformed line refuses the whole import.
fn parse_label_file(path: &Path, classes: usize) -> Result<Vec<LabelBox>, FormatError> {
    let text = read_text(path)?;
    let mut boxes = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let mut tokens = line.split_whitespace();
        let Some(first) = tokens.next() else {
            continue;
        };
        let at = || format!("line {line_no}");
        let Some(index) = parse_class(first) else {
            return Err(FormatError::invalid(
                path,
                at(),
                format!("class index `{first}` is not an integer"),
            ));
        };
        let class = usize::try_from(index)
            .ok()
            .filter(|&c| c < classes)
            .ok_or_else(|| FormatError::UnknownClassIndex {
                path: path.to_path_buf(),
                line: line_no,
                index,
                classes,
            })?;
        let values = tokens
            .map(|t| {
                t.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        FormatError::invalid(path, at(), format!("`{t}` is not a number"))
                    })
            })
            .collect::<Result<Vec<f64>, _>>()?;
        let (coords, score) = match values.len() {
            4 => (&values[..], None),
            #[allow(clippy::cast_possible_truncation)]
            5 => (&values[..4], values.get(4).map(|&s| s as f32)),
            n if n >= 6 && n % 2 == 0 => (&values[..], None),
            n => {
                return Err(FormatError::invalid(
                    path,
                    at(),
                    format!(
                        "{} columns: expected `class cx cy w h` (5), with a score (6), or a polygon `class x1 y1 x2 y2 x3 y3 ...`",
                        n + 1
                    ),
                ));
            }
        };
        if coords.iter().any(|v| !(-1.0..=2.0).contains(v)) {
            return Err(FormatError::invalid(
                path,
                at(),
                "coordinates are not normalised to 0..1 (YOLO labels are fractions of the image size)",
            ));
        }
        let (x, y, w, h) = if let [cx, cy, w, h] = *coords {
            (cx - w / 2.0, cy - h / 2.0, w, h)
        } else {
            // A segment polygon: its bounding box, as ultralytics' segments2boxes.
            let xs = coords.iter().step_by(2);
            let ys = coords.iter().skip(1).step_by(2);
            let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
            let (y0, y1) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
            (x0, y0, x1 - x0, y1 - y0)
        };
        boxes.push(LabelBox {
            line: line_no,
            class,
            x,
            y,
            w,
            h,
            score,
        });
    }
    Ok(boxes)
}

/// Reads labels and probes images (in parallel), and assembles the dataset.
fn run(plan: Plan, source: &Path, images_dir: Option<&Path>) -> Result<Parsed, FormatError> {
    let base = images_dir.map_or_else(|| plan.root.clone(), Path::to_path_buf);
    let classes = plan.classes.len();
    // Collected in order before looking for errors, so the error reported is always the first
    // file's, whatever the thread timing.
    let results: Vec<Result<(Option<DatasetImage>, Report), FormatError>> = plan
        .entries
        .par_iter()
        .map(|entry| load_entry(entry, classes, &base))
        .collect();
    let results: Vec<(Option<DatasetImage>, Report)> =
        results.into_iter().collect::<Result<_, _>>()?;

    let mut report = plan.report;
    let mut images = Vec::with_capacity(results.len());
    for (image, sub) in results {
        report.absorb(sub);
        images.extend(image);
    }
    for orphan in &plan.orphans {
        let lines = read_text(orphan)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count();
        report.skipped += lines;
        report.warn("missing_image", || orphan.display().to_string(), || {
            format!("no image found for this label file; its {lines} boxes cannot be converted to pixels and are skipped")
        });
    }
    let (warnings, skipped) = report.finish(source);
    Ok(Parsed {
        dataset: Dataset {
            classes: plan.classes,
            images,
        },
        warnings,
        images_dir: base,
        skipped,
        predictions: Vec::new(),
    })
}

fn load_entry(
    entry: &Entry,
    classes: usize,
    base: &Path,
) -> Result<(Option<DatasetImage>, Report), FormatError> {
    let mut report = Report::default();
    let labels = match &entry.label {
        Some(label) => parse_label_file(label, classes)?,
        None => Vec::new(),
    };
    let info = match probe(&entry.image) {
        Ok(info) => info,
        Err(e) => {
            report.skipped += labels.len();
            report.warn(
                "unreadable_image",
                || entry.image.display().to_string(),
                || {
                    format!(
                        "cannot read the image ({e}); it and its {} boxes are skipped",
                        labels.len()
                    )
                },
            );
            return Ok((None, report));
        }
    };
    let (width, height) = (f64::from(info.width), f64::from(info.height));
    let mut boxes = Vec::with_capacity(labels.len());
    for l in labels {
        let bbox = BBox::new(l.x * width, l.y * height, l.w * width, l.h * height);
        let location = || {
            let label = entry.label.as_deref().unwrap_or(&entry.image);
            format!("{}:{}", label.display(), l.line)
        };
        if let Some(bbox) = accept_box(&mut report, bbox, info.width, info.height, location) {
            boxes.push(DatasetBox {
                class: l.class,
                bbox,
                flags: BoxFlags::default(),
                score: l.score,
                id: None,
                attributes: Vec::new(),
            });
        }
    }
    let image = DatasetImage {
        file_name: relative_slash_path(base, &entry.image),
        width: info.width,
        height: info.height,
        external_id: None,
        boxes,
    };
    Ok((Some(image), report))
}

// ---------------------------------------------------------------------------------------------
// ultralytics data.yaml

/// A YAML scalar as a class name.
fn scalar_name(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The class names of a data.yaml: a list, or a map `index: name` whose indices run `0..n`.
fn yaml_names(yaml: &Path, doc: &serde_norway::Mapping) -> Result<Vec<String>, FormatError> {
    let nc = doc.get("nc").and_then(Value::as_u64);
    let names = match doc.get("names") {
        Some(Value::Sequence(seq)) => seq
            .iter()
            .enumerate()
            .map(|(i, v)| {
                scalar_name(v).ok_or_else(|| {
                    FormatError::invalid(
                        yaml,
                        format!("names[{i}]"),
                        "a class name must be a string",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::Mapping(map)) => {
            let mut pairs = BTreeMap::new();
            for (k, v) in map {
                let index = match k {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.trim().parse::<u64>().ok(),
                    _ => None,
                };
                let Some(index) = index.and_then(|i| usize::try_from(i).ok()) else {
                    return Err(FormatError::invalid(
                        yaml,
                        "names",
                        format!("key {k:?} is not a class index"),
                    ));
                };
                let Some(name) = scalar_name(v) else {
                    return Err(FormatError::invalid(
                        yaml,
                        format!("names[{index}]"),
                        "a class name must be a string",
                    ));
                };
                if pairs.insert(index, name).is_some() {
                    return Err(FormatError::invalid(
                        yaml,
                        "names",
                        format!("class index {index} appears twice"),
                    ));
                }
            }
            if let Some(missing) = (0..pairs.len()).find(|i| !pairs.contains_key(i)) {
                return Err(FormatError::invalid(
                    yaml,
                    "names",
                    format!(
                        "class indices must run 0..{}, but {missing} is missing",
                        pairs.len()
                    ),
                ));
            }
            pairs.into_values().collect()
        }
        None | Some(Value::Null) => match nc.and_then(|n| usize::try_from(n).ok()) {
            Some(n) => (0..n).map(|i| format!("class_{i}")).collect(),
            None => {
                return Err(FormatError::NoClassNames {
                    path: yaml.to_path_buf(),
                });
            }
        },
        Some(_) => {
            return Err(FormatError::invalid(
                yaml,
                "names",
                "expected a list or a map of class names",
            ));
        }
    };
    if let Some(nc) = nc
        && usize::try_from(nc).ok() != Some(names.len())
    {
        return Err(FormatError::invalid(
            yaml,
            "nc",
            format!("`nc: {nc}` but `names` has {} entries", names.len()),
        ));
    }
    Ok(names)
}

/// `path` with its last component named exactly `from` replaced by `to`.
fn swap_last_dir(path: &Path, from: &[&str], to: &str) -> Option<PathBuf> {
    let comps: Vec<Component<'_>> = path.components().collect();
    let parent_len = comps.len().saturating_sub(1);
    let at = comps[..parent_len].iter().rposition(
        |c| matches!(c, Component::Normal(n) if from.iter().any(|f| n.to_str() == Some(f))),
    )?;
    let mut out = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        if i == at {
            out.push(to);
        } else {
            out.push(c.as_os_str());
        }
    }
    Some(out)
}

/// The label file ultralytics pairs with an image: last `images` folder -> `labels`, `.txt`.
fn ultralytics_label(image: &Path) -> Option<PathBuf> {
    let swapped = swap_last_dir(image, &["images"], "labels").map(|p| p.with_extension("txt"));
    swapped
        .filter(|p| p.is_file())
        .or_else(|| Some(image.with_extension("txt")).filter(|p| p.is_file()))
}

/// Every image file under `dir`, sorted by path.
fn images_under(dir: &Path) -> Result<Vec<PathBuf>, FormatError> {
    files_under(dir, has_image_extension)
}

fn files_under(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>, FormatError> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            FormatError::io(&path, e.into())
        })?;
        if entry.file_type().is_file() && keep(entry.path()) {
            out.push(entry.into_path());
        }
    }
    Ok(out)
}

/// Resolves a split entry of a data.yaml, with ultralytics' and Roboflow's fallbacks.
fn resolve_split(
    root: &Path,
    key: &str,
    entry: &str,
    yaml: &Path,
    report: &mut Report,
) -> Option<PathBuf> {
    let p = Path::new(entry);
    let direct = if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    };
    if direct.exists() {
        return Some(direct);
    }
    // ultralytics: a missing `../x` is retried as `x` (Roboflow writes `../train/images`).
    if let Some(rest) = entry
        .strip_prefix("../")
        .or_else(|| entry.strip_prefix("..\\"))
    {
        let retry = root.join(rest);
        if retry.exists() {
            return Some(retry);
        }
    }
    let names: &[&str] = if key == "val" {
        &["val", "valid", "validation"]
    } else {
        &[key]
    };
    let fallback = names
        .iter()
        .flat_map(|n| [root.join(n).join("images"), root.join("images").join(n)])
        .find(|d| d.is_dir());
    match fallback {
        Some(found) => {
            report.warn(
                "dangling_path",
                || yaml.display().to_string(),
                || {
                    format!(
                        "`{key}: {entry}` does not exist; using {} instead",
                        found.display()
                    )
                },
            );
            Some(found)
        }
        None => {
            report.warn(
                "missing_split",
                || yaml.display().to_string(),
                || format!("`{key}: {entry}` does not exist; the split is skipped"),
            );
            None
        }
    }
}

/// Image paths listed in a split `.txt`, one per line, relative to the list's folder (or root).
fn images_in_list(
    list: &Path,
    root: &Path,
    report: &mut Report,
) -> Result<Vec<PathBuf>, FormatError> {
    let text = read_text(list)?;
    let list_dir = list.parent().unwrap_or(Path::new("."));
    let mut images = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let rest = line.strip_prefix("./").unwrap_or(line);
        let p = Path::new(rest);
        let found = if p.is_absolute() {
            Some(p.to_path_buf()).filter(|p| p.is_file())
        } else {
            [list_dir.join(p), root.join(p)]
                .into_iter()
                .find(|c| c.is_file())
        };
        match found {
            Some(image) => images.push(image),
            None => report.warn(
                "missing_image",
                || format!("{}:{}", list.display(), i + 1),
                || format!("listed image `{line}` not found; skipped"),
            ),
        }
    }
    Ok(images)
}

fn plan_yaml(yaml: &Path) -> Result<Plan, FormatError> {
    let text = read_text(yaml)?;
    let doc: Value = serde_norway::from_str(&text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        FormatError::Yaml {
            path: yaml.to_path_buf(),
            line,
            column,
            reason: e.to_string(),
        }
    })?;
    let Some(doc) = doc.as_mapping() else {
        return Err(FormatError::invalid(
            yaml,
            "top level",
            "expected a mapping with `names` and splits",
        ));
    };
    let mut plan = Plan {
        classes: yaml_names(yaml, doc)?,
        ..Plan::default()
    };
    let yaml_dir = match yaml.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    plan.root = match doc
        .get("path")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(p) => {
            let candidate = if Path::new(p).is_absolute() {
                PathBuf::from(p)
            } else {
                yaml_dir.join(p)
            };
            if candidate.is_dir() {
                candidate
            } else {
                plan.report.warn("dangling_path", || yaml.display().to_string(), || {
                    format!("`path: {p}` does not exist; splits are resolved from the folder of data.yaml")
                });
                yaml_dir.clone()
            }
        }
        None => yaml_dir.clone(),
    };

    let mut seen_images = HashSet::new();
    let mut used_labels = HashSet::new();
    let mut label_dirs = Vec::new();
    for key in ["train", "val", "test"] {
        let entries: Vec<String> = match doc.get(key) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Sequence(seq)) => seq
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        for entry in entries {
            let Some(resolved) = resolve_split(&plan.root, key, &entry, yaml, &mut plan.report)
            else {
                continue;
            };
            let images = if resolved.is_dir() {
                if let Some(labels) = swap_last_dir(&resolved.join("x"), &["images"], "labels")
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                {
                    label_dirs.push(labels);
                }
                images_under(&resolved)?
            } else if has_image_extension(&resolved) {
                vec![resolved.clone()]
            } else {
                images_in_list(&resolved, &plan.root, &mut plan.report)?
            };
            let mut labelled = 0;
            let mut count = 0;
            for image in images {
                if !seen_images.insert(normalize_path(&image)) {
                    // Listed by an earlier split too (ultralytics' `val: images/train`).
                    continue;
                }
                count += 1;
                let label = ultralytics_label(&image);
                if let Some(l) = &label {
                    labelled += 1;
                    used_labels.insert(normalize_path(l));
                }
                plan.entries.push(Entry { image, label });
            }
            if count > 0 && labelled == 0 {
                plan.report.warn("no_labels", || yaml.display().to_string(), || {
                    format!("none of the {count} images of `{key}: {entry}` has a label file (expected under a `labels` folder beside `images`)")
                });
            }
        }
    }
    // Label files under the splits' `labels` folders that no image claimed.
    label_dirs.sort();
    label_dirs.dedup();
    for dir in label_dirs.iter().filter(|d| d.is_dir()) {
        for label in files_under(dir, |p| p.extension().is_some_and(|e| e == "txt"))? {
            if used_labels.insert(normalize_path(&label)) {
                plan.orphans.push(label);
            }
        }
    }
    Ok(plan)
}

// ---------------------------------------------------------------------------------------------
// Darknet obj.data

/// Finds `value` (a path as written in obj.data or train.txt) from `base`: as written, else with
/// leading folders dropped one by one (`data/obj.names` -> `obj.names`), as Darknet datasets are
/// written relative to the Darknet folder rather than to obj.data.
fn resolve_dangling(base: &Path, value: &str) -> Option<PathBuf> {
    let p = Path::new(value.trim());
    if p.is_absolute() && p.exists() {
        return Some(p.to_path_buf());
    }
    let parts: Vec<&std::ffi::OsStr> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    if !p.is_absolute() && base.join(p).exists() {
        return Some(base.join(p));
    }
    (0..parts.len()).find_map(|skip| {
        let candidate: PathBuf = std::iter::once(base.as_os_str())
            .chain(parts[skip..].iter().copied())
            .collect();
        candidate.exists().then_some(candidate)
    })
}

/// The label file Darknet pairs with an image: `images`/`JPEGImages` -> `labels`, else beside.
fn darknet_label(image: &Path) -> Option<PathBuf> {
    swap_last_dir(image, &["images", "JPEGImages"], "labels")
        .map(|p| p.with_extension("txt"))
        .filter(|p| p.is_file())
        .or_else(|| Some(image.with_extension("txt")).filter(|p| p.is_file()))
}

fn plan_darknet(data: &Path) -> Result<Plan, FormatError> {
    let text = read_text(data)?;
    let base = match data.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut config: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            config.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    let Some(names) = config.get("names") else {
        return Err(FormatError::MissingField {
            path: data.to_path_buf(),
            record: "obj.data".to_owned(),
            field: "names",
        });
    };
    let Some(names_path) = resolve_dangling(&base, names) else {
        return Err(FormatError::io(
            &base.join(names),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    };
    let mut plan = Plan {
        classes: read_class_list(&names_path)?,
        root: base.clone(),
        ..Plan::default()
    };
    if let Some(count) = config.get("classes").and_then(|c| c.parse::<usize>().ok())
        && count != plan.classes.len()
    {
        let n = plan.classes.len();
        plan.report.warn(
            "class_count_mismatch",
            || data.display().to_string(),
            || {
                format!(
                    "`classes = {count}` but {} has {n} names; the names are used",
                    names_path.display()
                )
            },
        );
    }
    let mut seen = HashSet::new();
    for key in ["train", "valid", "val", "test"] {
        let Some(value) = config.get(key) else {
            continue;
        };
        let Some(list) = resolve_dangling(&base, value) else {
            plan.report.warn(
                "missing_split",
                || data.display().to_string(),
                || format!("`{key} = {value}` does not exist; the split is skipped"),
            );
            continue;
        };
        let list_text = read_text(&list)?;
        for (i, line) in list_text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let image = resolve_dangling(&base, line)
                .or_else(|| list.parent().and_then(|d| resolve_dangling(d, line)));
            let Some(image) = image.filter(|p| p.is_file()) else {
                plan.report.warn(
                    "missing_image",
                    || format!("{}:{}", list.display(), i + 1),
                    || format!("listed image `{line}` not found; skipped"),
                );
                continue;
            };
            if seen.insert(normalize_path(&image)) {
                let label = darknet_label(&image);
                plan.entries.push(Entry { image, label });
            }
        }
    }
    Ok(plan)
}

// ---------------------------------------------------------------------------------------------
// Plain folders

const LABEL_DIRS: &[&str] = &["labels", "annotations"];
const IMAGE_DIRS: &[&str] = &["images", "Images", "JPEGImages", "imgs"];

/// The class list of a plain folder: `obj.names`, `classes.txt`, `names.txt`, or one `*.names`.
fn folder_names(root: &Path) -> Result<Vec<String>, FormatError> {
    let named = ["obj.names", "classes.txt", "names.txt"]
        .iter()
        .map(|n| root.join(n))
        .find(|p| p.is_file());
    let any_names = || {
        std::fs::read_dir(root)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "names") && p.is_file())
            .min()
    };
    match named.or_else(any_names) {
        Some(file) => read_class_list(&file),
        None => Err(FormatError::NoClassNames {
            path: root.to_path_buf(),
        }),
    }
}

/// Finds the image of a label file in a plain folder.
fn folder_image(root: &Path, label: &Path, images_dir: Option<&Path>) -> Option<PathBuf> {
    let stem = label.file_stem()?.to_str()?;
    let rel = label.strip_prefix(root).ok()?;
    if let Some(dir) = images_dir {
        let rel_dir = rel.parent().unwrap_or(Path::new(""));
        let found = find_image_with_stem(&dir.join(rel_dir), stem)
            .or_else(|| find_image_with_stem(dir, stem));
        if found.is_some() {
            return found;
        }
    }
    let beside = label.parent().and_then(|d| find_image_with_stem(d, stem));
    if beside.is_some() {
        return beside;
    }
    // A parallel folder: .../labels/x/1.txt -> .../images/x/1.jpg.
    let comps: Vec<Component<'_>> = rel.components().collect();
    let at = comps.iter().rposition(|c| {
        matches!(c, Component::Normal(n) if n.to_str().is_some_and(|s| LABEL_DIRS.iter().any(|d| d.eq_ignore_ascii_case(s))))
    })?;
    IMAGE_DIRS.iter().find_map(|image_dir| {
        let mut dir = root.to_path_buf();
        for (i, c) in comps.iter().enumerate().take(comps.len().saturating_sub(1)) {
            if i == at {
                dir.push(image_dir);
            } else {
                dir.push(c.as_os_str());
            }
        }
        find_image_with_stem(&dir, stem)
    })
}

fn plan_folder(root: &Path, images_dir: Option<&Path>) -> Result<Plan, FormatError> {
    let mut plan = Plan {
        classes: folder_names(root)?,
        root: root.to_path_buf(),
        ..Plan::default()
    };
    let texts = files_under(root, |p| {
        p.extension().is_some_and(|e| e.eq_ignore_ascii_case("txt"))
    })?;
    for label in texts {
        let text = read_text(&label)?;
        if !looks_like_labels(&text) {
            continue;
        }
        match folder_image(root, &label, images_dir) {
            Some(image) => plan.entries.push(Entry {
                image,
                label: Some(label),
            }),
            // An empty file with no image loses nothing; it is not worth a warning.
            None if text.trim().is_empty() => {}
            None => plan.orphans.push(label),
        }
    }
    Ok(plan)
}

// ---------------------------------------------------------------------------------------------
// Export

#[derive(serde::Serialize)]
struct DataYaml<'a> {
    path: &'a str,
    train: String,
    val: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    test: Option<String>,
    nc: usize,
    names: BTreeMap<usize, &'a str>,
}

/// Writes the ultralytics layout: `data.yaml`, `classes.txt`, a label file per image (empty when
/// it has no boxes) and, unless the images mode is none, the images. Without a split, one flat
/// folder pair (`images/NAME`, `labels/NAME.txt`: what ultralytics, datumaro and
/// label-studio-converter all read); with one, `images/<split>/NAME` and `labels/<split>/NAME.txt`.
/// `data.yaml` has `path: ''`: ultralytics then resolves the splits from the yaml's own folder
/// (a relative `path` such as `.` would be resolved from the working directory).
/// Boxes are clipped to their image and written with 6 decimals; crowd boxes are written too.
pub(super) fn export(
    dataset: &Dataset,
    out: &Path,
    settings: &super::ExportSettings,
) -> Result<super::ExportOutcome, FormatError> {
    // Validate everything before writing anything.
    for name in &dataset.classes {
        if name.contains(['\n', '\r']) || name.trim().is_empty() {
            return Err(FormatError::export(
                out,
                format!("class name {name:?} cannot be written to classes.txt"),
            ));
        }
    }
    for img in &dataset.images {
        if img.width == 0 || img.height == 0 {
            return Err(FormatError::export(
                out,
                format!(
                    "image `{}` has no known size; YOLO coordinates are fractions of it",
                    img.file_name
                ),
            ));
        }
        if let Some(b) = img
            .boxes
            .iter()
            .find(|b| b.class >= dataset.classes.len() || !b.bbox.is_finite())
        {
            return Err(FormatError::export(
                out,
                format!(
                    "a box of `{}` has class index {} of {} classes or is not finite",
                    img.file_name,
                    b.class,
                    dataset.classes.len()
                ),
            ));
        }
    }
    let plan = super::layout::plan(dataset, out, settings)?;
    let folder = |kind: &str, split: usize| -> PathBuf {
        if plan.split_given {
            out.join(kind).join(&plan.splits[split])
        } else {
            out.join(kind)
        }
    };
    let rel = |split: &str| -> String {
        if plan.split_given {
            format!("images/{split}")
        } else {
            "images".to_owned()
        }
    };
    let has = |name: &str| plan.splits.iter().any(|s| s == name);
    let mut outcome = plan.outcome();
    let val = if has("val") {
        rel("val")
    } else {
        outcome.notes.push(
            "no `val` split: data.yaml's `val` is the training images (ask for one with --split train=0.8,val=0.2)"
                .to_owned(),
        );
        rel(super::layout::DEFAULT_SPLIT)
    };
    let yaml = DataYaml {
        path: "",
        train: rel("train"),
        val,
        test: has("test").then(|| rel("test")),
        nc: dataset.classes.len(),
        names: dataset
            .classes
            .iter()
            .map(String::as_str)
            .enumerate()
            .collect(),
    };
    let yaml_text = serde_norway::to_string(&yaml)
        .map_err(|e| FormatError::export(out, format!("cannot write data.yaml: {e}")))?;
    let yaml_text = format!(
        "# Written by Loupe. `path: ''` = the folder of this file (ultralytics resolves a relative\n# path from the working directory, an empty one from here).\n{yaml_text}"
    );
    std::fs::create_dir_all(out).map_err(|e| FormatError::io(out, e))?;
    write_file(&out.join("data.yaml"), yaml_text.as_bytes())?;
    let mut classes = dataset.classes.join("\n");
    classes.push('\n');
    write_file(&out.join("classes.txt"), classes.as_bytes())?;
    let mut files_written = 2;
    // Every split's folders exist, even empty, so data.yaml never names a missing folder.
    for split in 0..plan.splits.len() {
        for kind in ["images", "labels"] {
            let dir = folder(kind, split);
            std::fs::create_dir_all(&dir).map_err(|e| FormatError::io(&dir, e))?;
        }
    }

    let mut boxes = 0;
    let mut placer = super::layout::Placer::default();
    for planned in &plan.images {
        let img = planned.img;
        let (w, h) = (f64::from(img.width), f64::from(img.height));
        let mut text = String::with_capacity(48 * img.boxes.len());
        for b in &img.boxes {
            let r = b.bbox.clipped(w, h);
            if !(r.w > 0.0 && r.h > 0.0) {
                continue;
            }
            let (cx, cy) = r.center();
            // Writing to a String cannot fail.
            let _ = writeln!(
                text,
                "{} {:.6} {:.6} {:.6} {:.6}",
                b.class,
                cx / w,
                cy / h,
                r.w / w,
                r.h / h
            );
            boxes += 1;
        }
        let label = folder("labels", planned.split).join(format!("{}.txt", planned.stem()));
        write_file(&label, text.as_bytes())?;
        files_written += 1;
        if let Some(source) = &planned.source {
            let to = folder("images", planned.split).join(&planned.name);
            placer.place(settings.images, source, &to)?;
            files_written += 1;
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
