//! YOLO: the ultralytics layout (`data.yaml`, `images/[<split>/]`, `labels/[<split>/]`) and the
//! Darknet layout (`obj.data`, `obj.names`, `train.txt`, labels beside the images).
//!
//! Three ways in, chosen from the path given:
//! - a `data.yaml` (or a folder holding one): image-driven, as ultralytics reads it. Every image of
//!   every split is an image of the dataset; its label file is found by replacing the last
//!   `images` folder of its path with `labels` (or beside it); no label file means no boxes.
//!   Roboflow's and other machines' files are read as ultralytics reads them: a `path` that does
//!   not exist falls back to `--images` and then to the folder of data.yaml; a missing
//!   `../train/images` is retried as `train/images`; a missing `val`/`valid` folder is looked for
//!   under its other spellings (`val`, `valid`, `validation`). Split lists in `.txt` files are
//!   read line by line like Darknet lists.
//! - an `obj.data` (or a folder holding one): image-driven through the `train`/`valid` lists, as
//!   Darknet and CVAT's "YOLO 1.1" export write them. CVAT lists `data/obj_train_data/NAME.jpg`,
//!   relative to a Darknet folder that does not exist on the user's machine; the label file is
//!   `obj_train_data/NAME.txt` beside obj.data, and the images are often elsewhere (`--images`).
//! - any other folder with a class list (`obj.names`, `classes.txt`): label-driven. Every `.txt`
//!   whose first line reads as a label is a label file; its image is looked for in `images_dir`,
//!   beside it, in the folder parallel to its `labels`/`Annotations` folder, and among the
//!   project's images by file stem.
//!
//! A listed image path (a line of a Darknet or ultralytics list) resolves in this order, the
//! first hit winning:
//! 1. as written, relative to the file that lists it (obj.data's folder, the list's folder, the
//!    dataset root), with leading folders that do not exist dropped one by one (`data/`);
//! 2. the same, relative to `--images`;
//! 3. by file name anywhere under `--images`;
//! 4. by file name among the images the project already holds ([`KnownImages`]).
//!
//! Steps 3 and 4 take a unique match only (folders in the listed path break ties, see
//! [`pick_by_name`]); an ambiguous name refuses the import naming both candidates, because
//! guessing would put boxes on the wrong image.
//!
//! What counts as unresolved (reported in [`Parsed::unresolved`], never silently dropped): a
//! list line whose image none of the steps finds; a label file whose image cannot be found; a
//! split (`train: …`, `train = …`) whose folder or list does not exist. Their boxes are counted in
//! `Parsed::skipped` as well.
//!
//! File names are relative to `images_dir` when it is given, else to the dataset root (the
//! `path` of data.yaml, the folder of obj.data, or the folder imported).
//!
//! Label lines follow ultralytics: `class cx cy w h` (normalised), or a segment polygon
//! `class x1 y1 x2 y2 ...` whose bounding box is used. A sixth column is read as a score (the
//! `save_conf` output of `yolo predict`). The class list is authoritative: an index with no name
//! refuses the import with the file and line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use rayon::prelude::*;
use serde_norway::Value;

use super::{
    ExportReport, FormatError, ImportSettings, KnownImages, Parsed, Report, accept_box,
    find_image_with_stem, normalize_path, pick_by_name, read_class_list, read_config_text,
    read_text, relative_slash_path, write_file,
};
use crate::imaging::{has_image_extension, probe};
use crate::model::{BBox, BoxFlags, Dataset, DatasetBox, DatasetImage, Unresolved};

/// One image to import and the label file that goes with it, if any.
#[derive(Debug)]
struct Entry {
    image: PathBuf,
    label: Option<PathBuf>,
    /// The size, when the image is known to the project but not on disk (nothing to probe).
    size: Option<(u32, u32)>,
}

/// What a layout resolved to, before labels are read and images probed.
#[derive(Debug, Default)]
struct Plan {
    classes: Vec<String>,
    /// The dataset root: the default folder that file names are relative to.
    root: PathBuf,
    entries: Vec<Entry>,
    /// Label files whose image was not found, with where it was looked for.
    orphans: Vec<(PathBuf, String)>,
    /// Listed entries that resolved to nothing (their boxes are counted when labels are read).
    unresolved: Vec<PendingUnresolved>,
    report: Report,
}

/// An unresolved entry whose label file, if any, is read later for its box count.
#[derive(Debug)]
struct PendingUnresolved {
    entry: String,
    location: String,
    reason: String,
    label: Option<PathBuf>,
}

/// Imports a YOLO dataset from a `data.yaml`, an `obj.data`, or a dataset folder.
pub(super) fn import(path: &Path, settings: &ImportSettings) -> Result<Parsed, FormatError> {
    let images_dir = settings.images_dir.as_deref();
    let resolver = Resolver {
        source: path,
        images_dir,
        known: settings.known_images.as_deref(),
        under_images: OnceLock::new(),
        allow_outside: settings.allow_outside,
    };
    let meta = std::fs::metadata(path).map_err(|e| FormatError::io(path, e))?;
    let plan = if meta.is_dir() {
        let yaml = ["data.yaml", "data.yml", "dataset.yaml", "dataset.yml"]
            .iter()
            .map(|n| path.join(n))
            .find(|p| p.is_file());
        let data = path.join("obj.data");
        if let Some(yaml) = yaml {
            plan_yaml(&yaml, &resolver)?
        } else if data.is_file() {
            plan_darknet(&data, &resolver)?
        } else {
            plan_folder(path, &resolver)?
        }
    } else {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        match ext.as_str() {
            "yaml" | "yml" => plan_yaml(path, &resolver)?,
            "data" => plan_darknet(path, &resolver)?,
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

// ---------------------------------------------------------------------------------------------
// Finding listed images

/// What a listed image path resolved to.
#[derive(Debug)]
enum Found {
    /// A file on disk.
    File(PathBuf),
    /// An image the project holds whose file is not on disk; its size is known.
    Known {
        file: PathBuf,
        width: u32,
        height: u32,
    },
}

/// Image files under `--images`, by file name and by stem, for steps 3 of the resolution order.
#[derive(Debug, Default)]
struct NameIndex {
    by_name: HashMap<String, Vec<PathBuf>>,
    by_stem: HashMap<String, Vec<PathBuf>>,
}

/// Resolves listed image paths in the order the module documentation gives.
struct Resolver<'a> {
    /// The file imported, for errors.
    source: &'a Path,
    images_dir: Option<&'a Path>,
    known: Option<&'a dyn KnownImages>,
    /// Walked on first need: most imports find every image in steps 1 and 2.
    under_images: OnceLock<NameIndex>,
    /// Darknet `names =` and list paths may lead out of the dataset folder (`--allow-outside`).
    allow_outside: bool,
}

/// The last component of a listed path, whatever its separators.
fn listed_file_name(listed: &str) -> &str {
    listed.rsplit(['/', '\\']).next().unwrap_or(listed)
}

impl Resolver<'_> {
    fn index(&self) -> &NameIndex {
        self.under_images.get_or_init(|| {
            let mut index = NameIndex::default();
            let Some(dir) = self.images_dir else {
                return index;
            };
            // An unreadable folder under --images only means fewer candidates.
            for entry in walkdir::WalkDir::new(dir)
                .follow_links(true)
                .sort_by_file_name()
                .into_iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file() && has_image_extension(e.path()))
            {
                let path = entry.into_path();
                if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                    index
                        .by_name
                        .entry(name.to_owned())
                        .or_default()
                        .push(path.clone());
                }
                if let Some(stem) = path.file_stem().and_then(|n| n.to_str()) {
                    index.by_stem.entry(stem.to_owned()).or_default().push(path);
                }
            }
            index
        })
    }

    fn ambiguous(&self, location: &str, ambiguity: super::AmbiguousName) -> FormatError {
        FormatError::Ambiguous {
            path: self.source.to_path_buf(),
            location: location.to_owned(),
            ambiguity,
        }
    }

    /// Picks among files under `--images` that share the listed name (or stem).
    fn pick_under_images(
        &self,
        listed: &str,
        candidates: Option<&Vec<PathBuf>>,
        location: &str,
    ) -> Result<Option<PathBuf>, FormatError> {
        let (Some(dir), Some(candidates)) = (self.images_dir, candidates) else {
            return Ok(None);
        };
        let named = candidates
            .iter()
            .map(|p| (relative_slash_path(dir, p), p.clone()))
            .collect();
        pick_by_name(listed, named).map_err(|a| self.ambiguous(location, a))
    }

    fn known(
        &self,
        listed: &str,
        any_extension: bool,
        location: &str,
    ) -> Result<Option<Found>, FormatError> {
        let Some(known) = self.known else {
            return Ok(None);
        };
        let Some(k) = known
            .find_by_name(listed, any_extension)
            .map_err(|a| self.ambiguous(location, a))?
        else {
            return Ok(None);
        };
        if k.file.is_file() {
            return Ok(Some(Found::File(k.file)));
        }
        // Known from an earlier import only: usable when its size is known.
        Ok((k.width > 0 && k.height > 0).then_some(Found::Known {
            file: k.file,
            width: k.width,
            height: k.height,
        }))
    }

    /// Resolves a listed image path from `bases` (the folders it may be relative to). `Ok(Err)`
    /// carries the reason it was not found.
    fn image(
        &self,
        listed: &str,
        bases: &[&Path],
        location: &str,
    ) -> Result<Result<Found, String>, FormatError> {
        let listed = listed.trim();
        for base in bases.iter().copied().chain(self.images_dir) {
            if let Some(found) = resolve_dangling(base, listed).filter(|p| p.is_file()) {
                return Ok(Ok(Found::File(found)));
            }
        }
        let name = listed_file_name(listed);
        if let Some(found) =
            self.pick_under_images(listed, self.index().by_name.get(name), location)?
        {
            return Ok(Ok(Found::File(found)));
        }
        if let Some(found) = self.known(listed, false, location)? {
            return Ok(Ok(found));
        }
        Ok(Err(self.not_found_reason(bases)))
    }

    /// The image of a label file by its stem: under `--images`, then among the project's images.
    fn image_for_label(&self, label: &Path, location: &str) -> Result<Option<Found>, FormatError> {
        let Some(stem) = label.file_stem().and_then(|s| s.to_str()) else {
            return Ok(None);
        };
        let listed = label.to_string_lossy();
        if let Some(found) =
            self.pick_under_images(&listed, self.index().by_stem.get(stem), location)?
        {
            return Ok(Some(Found::File(found)));
        }
        self.known(&listed, true, location)
    }

    fn not_found_reason(&self, bases: &[&Path]) -> String {
        let mut places: Vec<String> = bases
            .iter()
            .map(|b| format!("as written from {}", b.display()))
            .collect();
        places.dedup();
        match self.images_dir {
            Some(dir) => places.push(format!(
                "under --images {} (as written and by file name)",
                dir.display()
            )),
            None => places.push("no --images given".to_owned()),
        }
        if self.known.is_some() {
            places.push("not among the project's images (by file name)".to_owned());
        }
        format!("image not found: {}", places.join("; "))
    }
}

/// Label files that go with a listed image path, whether or not the image was found: the
/// listed path with `.txt`, or with its last `images`/`JPEGImages` folder read as `labels`,
/// resolved from each base like the image (`data/obj_train_data/a.jpg` ->
/// `obj_train_data/a.txt` beside obj.data).
fn listed_label(listed: &str, bases: &[&Path]) -> Option<PathBuf> {
    let listed = Path::new(listed.trim());
    let plain = listed.with_extension("txt");
    let swapped =
        swap_last_dir(listed, &["images", "JPEGImages"], "labels").map(|p| p.with_extension("txt"));
    let candidates: Vec<PathBuf> = swapped.into_iter().chain([plain]).collect();
    bases.iter().find_map(|base| {
        candidates
            .iter()
            .find_map(|c| resolve_dangling(base, &c.to_string_lossy()).filter(|p| p.is_file()))
    })
}

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

/// Counts the label lines of a file (its boxes), for unresolved entries.
fn count_label_lines(label: &Path) -> Result<usize, FormatError> {
    Ok(read_text(label)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count())
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
    let mut unresolved = Vec::with_capacity(plan.unresolved.len() + plan.orphans.len());
    for pending in plan.unresolved {
        let boxes = match &pending.label {
            Some(label) => count_label_lines(label)?,
            None => 0,
        };
        report.skipped += boxes;
        unresolved.push(Unresolved {
            entry: pending.entry,
            location: pending.location,
            reason: pending.reason,
            boxes,
        });
    }
    for (orphan, looked) in &plan.orphans {
        let boxes = count_label_lines(orphan)?;
        report.skipped += boxes;
        unresolved.push(Unresolved {
            entry: orphan.display().to_string(),
            location: source.display().to_string(),
            reason: format!(
                "label file whose image was not found ({looked}); its boxes cannot be placed without the image's size"
            ),
            boxes,
        });
    }
    let (warnings, skipped) = report.finish(source);
    Ok(Parsed {
        frames: std::collections::HashMap::new(),
        dataset: Dataset {
            classes: plan.classes,
            images,
        },
        warnings,
        images_dir: base,
        skipped,
        predictions: Vec::new(),
        unresolved,
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
    let (img_width, img_height) = match entry.size {
        Some(size) => size,
        None => match probe(&entry.image) {
            Ok(info) => (info.width, info.height),
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
        },
    };
    let (width, height) = (f64::from(img_width), f64::from(img_height));
    let mut boxes = Vec::with_capacity(labels.len());
    for l in labels {
        let bbox = BBox::new(l.x * width, l.y * height, l.w * width, l.h * height);
        let location = || {
            let label = entry.label.as_deref().unwrap_or(&entry.image);
            format!("{}:{}", label.display(), l.line)
        };
        if let Some(bbox) = accept_box(&mut report, bbox, img_width, img_height, location) {
            boxes.push(DatasetBox {
                class: l.class,
                bbox,
                flags: BoxFlags::default(),
                score: l.score,
                id: None,
                attributes: crate::model::Attributes::new(),
            });
        }
    }
    let image = DatasetImage {
        file_name: relative_slash_path(base, &entry.image),
        width: img_width,
        height: img_height,
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

/// Resolves a split entry of a data.yaml from each root in turn, with ultralytics' and
/// Roboflow's fallbacks. `Err` says where it was looked for.
fn resolve_split(
    roots: &[PathBuf],
    key: &str,
    entry: &str,
    yaml: &Path,
    report: &mut Report,
) -> Result<PathBuf, String> {
    let p = Path::new(entry);
    if p.is_absolute() && p.exists() {
        return Ok(p.to_path_buf());
    }
    for root in roots {
        let direct = if p.is_absolute() {
            // Another machine's absolute path: its tail may exist under this root.
            resolve_dangling(root, entry)
        } else {
            Some(root.join(p)).filter(|d| d.exists())
        };
        if let Some(found) = direct {
            return Ok(found);
        }
        // ultralytics: a missing `../x` is retried as `x` (Roboflow writes `../train/images`).
        if let Some(rest) = entry
            .strip_prefix("../")
            .or_else(|| entry.strip_prefix("..\\"))
        {
            let retry = root.join(rest);
            if retry.exists() {
                return Ok(retry);
            }
        }
    }
    let names: &[&str] = if matches!(key, "val" | "valid" | "validation") {
        &["val", "valid", "validation"]
    } else {
        &[key]
    };
    let fallback = roots
        .iter()
        .flat_map(|root| {
            names
                .iter()
                .flat_map(move |n| [root.join(n).join("images"), root.join("images").join(n)])
        })
        .find(|d| d.is_dir());
    if let Some(found) = fallback {
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
        return Ok(found);
    }
    let tried: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    Err(format!(
        "split not found: looked from {} (also as {}/images and images/{})",
        tried.join(" and "),
        names.join("|"),
        names.join("|")
    ))
}

/// Reads a split list (`.txt`, one image path per line) into entries: each line resolves like a
/// Darknet list line (relative to the list's folder or the dataset roots, then `--images`, then
/// by name), its label through the listed path or beside the image.
fn entries_from_list(
    list: &Path,
    roots: &[PathBuf],
    resolver: &Resolver<'_>,
    plan: &mut Plan,
) -> Result<Vec<Entry>, FormatError> {
    let text = read_text(list)?;
    let list_dir = list.parent().unwrap_or(Path::new("."));
    let bases: Vec<&Path> = std::iter::once(list_dir)
        .chain(roots.iter().map(PathBuf::as_path))
        .collect();
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let location = format!("{}:{}", list.display(), i + 1);
        let label = listed_label(line, &bases);
        match resolver.image(line, &bases, &location)? {
            Ok(Found::File(image)) => {
                let label = label.or_else(|| ultralytics_label(&image));
                entries.push(Entry {
                    image,
                    label,
                    size: None,
                });
            }
            Ok(Found::Known {
                file,
                width,
                height,
            }) => entries.push(Entry {
                image: file,
                label,
                size: Some((width, height)),
            }),
            Err(reason) => plan.unresolved.push(PendingUnresolved {
                entry: line.to_owned(),
                location,
                reason,
                label,
            }),
        }
    }
    Ok(entries)
}

fn plan_yaml(yaml: &Path, resolver: &Resolver<'_>) -> Result<Plan, FormatError> {
    let text = read_config_text(yaml)?;
    // libyaml's time grows with the square of the nesting depth (100k levels took 17 s), so
    // the depth is measured first.
    crate::limits::check_yaml(&text, crate::limits::MAX_NESTING_DEPTH).map_err(|e| {
        FormatError::Yaml {
            path: yaml.to_path_buf(),
            line: e.line,
            column: 1,
            reason: e.to_string(),
        }
    })?;
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
    // Where splits are resolved from: the declared `path` when it exists; otherwise (absent, or
    // written on another machine) `--images` and then the folder of data.yaml.
    let fallback_roots = || -> Vec<PathBuf> {
        resolver
            .images_dir
            .map(Path::to_path_buf)
            .into_iter()
            .chain([yaml_dir.clone()])
            .collect()
    };
    let roots: Vec<PathBuf> = match doc
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
                vec![candidate]
            } else {
                let roots = fallback_roots();
                let shown: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
                plan.report.warn(
                    "dangling_path",
                    || yaml.display().to_string(),
                    || {
                        format!(
                            "`path: {p}` does not exist; splits are resolved from {}",
                            shown.join(" and then ")
                        )
                    },
                );
                roots
            }
        }
        None => fallback_roots(),
    };
    plan.root = roots.last().cloned().unwrap_or_else(|| yaml_dir.clone());

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
            let resolved = match resolve_split(&roots, key, &entry, yaml, &mut plan.report) {
                Ok(resolved) => resolved,
                Err(reason) => {
                    plan.unresolved.push(PendingUnresolved {
                        entry: format!("{key}: {entry}"),
                        location: yaml.display().to_string(),
                        reason,
                        label: None,
                    });
                    continue;
                }
            };
            let split_entries: Vec<Entry> = if resolved.is_dir() {
                // Labels beside the images (`labels` for the last `images`) or, when the images
                // were found under another root, under data.yaml's own folder.
                let mut labels_for_split: Vec<PathBuf> =
                    swap_last_dir(&resolved.join("x"), &["images"], "labels")
                        .and_then(|p| p.parent().map(Path::to_path_buf))
                        .into_iter()
                        .collect();
                if !Path::new(&entry).is_absolute() {
                    let entry_rel = entry.strip_prefix("../").unwrap_or(entry.as_str());
                    labels_for_split.extend(
                        swap_last_dir(&yaml_dir.join(entry_rel).join("x"), &["images"], "labels")
                            .and_then(|p| p.parent().map(Path::to_path_buf)),
                    );
                }
                label_dirs.extend(labels_for_split.iter().cloned());
                images_under(&resolved)?
                    .into_iter()
                    .map(|image| {
                        let rel = image.strip_prefix(&resolved).unwrap_or(&image);
                        let label = ultralytics_label(&image).or_else(|| {
                            labels_for_split
                                .iter()
                                .map(|d| d.join(rel).with_extension("txt"))
                                .find(|p| p.is_file())
                        });
                        Entry {
                            image,
                            label,
                            size: None,
                        }
                    })
                    .collect()
            } else if has_image_extension(&resolved) {
                let label = ultralytics_label(&resolved);
                vec![Entry {
                    image: resolved.clone(),
                    label,
                    size: None,
                }]
            } else {
                entries_from_list(&resolved, &roots, resolver, &mut plan)?
            };
            let mut labelled = 0;
            let mut count = 0;
            for e in split_entries {
                if !seen_images.insert(normalize_path(&e.image)) {
                    // Listed by an earlier split too (ultralytics' `val: images/train`).
                    continue;
                }
                count += 1;
                if let Some(l) = &e.label {
                    labelled += 1;
                    used_labels.insert(normalize_path(l));
                }
                plan.entries.push(e);
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
            if !used_labels.insert(normalize_path(&label)) {
                continue;
            }
            let location = label.display().to_string();
            match resolver.image_for_label(&label, &location)? {
                Some(Found::File(image)) if seen_images.insert(normalize_path(&image)) => {
                    plan.entries.push(Entry {
                        image,
                        label: Some(label),
                        size: None,
                    });
                }
                Some(Found::Known {
                    file,
                    width,
                    height,
                }) if seen_images.insert(normalize_path(&file)) => {
                    plan.entries.push(Entry {
                        image: file,
                        label: Some(label),
                        size: Some((width, height)),
                    });
                }
                _ => plan.orphans.push((
                    label,
                    "no image of the same name in the split's `images` folder".to_owned(),
                )),
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

/// Refuses a file that obj.data names (`names =`, `train =`, …) outside the dataset folder
/// (obj.data's folder, symbolic links followed): a dataset file must not pull arbitrary local
/// files in, e.g. `names = /etc/passwd` turning a system file into class names. `--allow-outside`
/// lets it.
fn inside_dataset(
    data: &Path,
    base: &Path,
    key: &str,
    file: &Path,
    allow_outside: bool,
) -> Result<(), FormatError> {
    if allow_outside {
        return Ok(());
    }
    let folder = dunce::canonicalize(base).map_err(|e| FormatError::io(base, e))?;
    let target = dunce::canonicalize(file).map_err(|e| FormatError::io(file, e))?;
    if target.starts_with(&folder) {
        return Ok(());
    }
    Err(FormatError::invalid(
        data,
        format!("`{key} =`"),
        format!(
            "names {}, outside the dataset folder {}: refused (a dataset file may not read files elsewhere); pass --allow-outside if you trust it",
            target.display(),
            folder.display()
        ),
    ))
}

/// The label file Darknet pairs with an image: `images`/`JPEGImages` -> `labels`, else beside.
fn darknet_label(image: &Path) -> Option<PathBuf> {
    swap_last_dir(image, &["images", "JPEGImages"], "labels")
        .map(|p| p.with_extension("txt"))
        .filter(|p| p.is_file())
        .or_else(|| Some(image.with_extension("txt")).filter(|p| p.is_file()))
}

fn plan_darknet(data: &Path, resolver: &Resolver<'_>) -> Result<Plan, FormatError> {
    let text = read_config_text(data)?;
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
    inside_dataset(data, &base, "names", &names_path, resolver.allow_outside)?;
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
        let Some(list) = resolve_dangling(&base, value).filter(|p| p.is_file()) else {
            plan.unresolved.push(PendingUnresolved {
                entry: format!("{key} = {value}"),
                location: data.display().to_string(),
                reason: format!("list file not found from {}", base.display()),
                label: None,
            });
            continue;
        };
        inside_dataset(data, &base, key, &list, resolver.allow_outside)?;
        let list_dir = list.parent().unwrap_or(&base).to_path_buf();
        let bases: Vec<&Path> = if list_dir == base {
            vec![base.as_path()]
        } else {
            vec![base.as_path(), list_dir.as_path()]
        };
        let list_text = read_text(&list)?;
        for (i, line) in list_text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let location = format!("{}:{}", list.display(), i + 1);
            // CVAT writes the label beside obj.data (`obj_train_data/a.txt`) whatever folder
            // the images end up in, so the listed path finds it even when the image is found
            // elsewhere.
            let label = listed_label(line, &bases);
            match resolver.image(line, &bases, &location)? {
                Ok(Found::File(image)) => {
                    if seen.insert(normalize_path(&image)) {
                        let label = label.or_else(|| darknet_label(&image));
                        plan.entries.push(Entry {
                            image,
                            label,
                            size: None,
                        });
                    }
                }
                Ok(Found::Known {
                    file,
                    width,
                    height,
                }) => {
                    if seen.insert(normalize_path(&file)) {
                        plan.entries.push(Entry {
                            image: file,
                            label,
                            size: Some((width, height)),
                        });
                    }
                }
                Err(reason) => plan.unresolved.push(PendingUnresolved {
                    entry: line.to_owned(),
                    location,
                    reason,
                    label,
                }),
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
        // `exists`, not `is_file`: a FIFO or folder by that name is refused by name when read,
        // not skipped in silence.
        .find(|p| p.exists());
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

fn plan_folder(root: &Path, resolver: &Resolver<'_>) -> Result<Plan, FormatError> {
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
        let location = label.display().to_string();
        let found = match folder_image(root, &label, resolver.images_dir) {
            Some(image) => Some(Found::File(image)),
            None => resolver.image_for_label(&label, &location)?,
        };
        match found {
            Some(Found::File(image)) => plan.entries.push(Entry {
                image,
                label: Some(label),
                size: None,
            }),
            Some(Found::Known {
                file,
                width,
                height,
            }) => plan.entries.push(Entry {
                image: file,
                label: Some(label),
                size: Some((width, height)),
            }),
            // An empty file with no image loses nothing; it is not worth a report.
            None if text.trim().is_empty() => {}
            None => {
                let mut looked = vec!["beside it".to_owned()];
                if let Some(dir) = resolver.images_dir {
                    looked.push(format!("under --images {}", dir.display()));
                } else {
                    looked.push("no --images given".to_owned());
                }
                if resolver.known.is_some() {
                    looked.push("among the project's images".to_owned());
                }
                plan.orphans.push((label, looked.join(", ")));
            }
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
    write_file(&out.join("data.yaml"), yaml_text.as_bytes(), settings.force)?;
    let mut classes = dataset.classes.join("\n");
    classes.push('\n');
    write_file(&out.join("classes.txt"), classes.as_bytes(), settings.force)?;
    let mut files_written = 2;
    // Every split's folders exist, even empty, so data.yaml never names a missing folder.
    for split in 0..plan.splits.len() {
        for kind in ["images", "labels"] {
            let dir = folder(kind, split);
            std::fs::create_dir_all(&dir).map_err(|e| FormatError::io(&dir, e))?;
        }
    }

    let mut boxes = 0;
    let mut placer = super::layout::Placer::new(settings.force);
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
        write_file(&label, text.as_bytes(), settings.force)?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::formats::{AmbiguousName, Format, KnownFile, import_with};

    fn strict() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/third_party/datumaro/tests/assets/yolo_dataset/strict")
    }

    /// datumaro's strict Darknet dataset laid out as CVAT exports it without images.
    fn cvat_export(dir: &Path, extra: &[(&str, &str)]) -> PathBuf {
        let out = dir.join("export");
        std::fs::create_dir_all(out.join("obj_train_data")).expect("mkdir");
        for f in ["obj.data", "obj.names", "train.txt", "obj_train_data/1.txt"] {
            std::fs::copy(strict().join(f), out.join(f)).expect("copy");
        }
        let mut list = std::fs::read_to_string(out.join("train.txt")).expect("list");
        for (name, labels) in extra {
            list.push_str(&format!("data/obj_train_data/{name}.jpg\n"));
            std::fs::write(out.join(format!("obj_train_data/{name}.txt")), labels).expect("label");
        }
        std::fs::write(out.join("train.txt"), list).expect("list");
        out
    }

    fn image_to(path: &Path) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::copy(strict().join("obj_train_data/1.jpg"), path).expect("copy");
    }

    /// A project that knows some image files.
    #[derive(Debug)]
    struct Known(Vec<(PathBuf, u32, u32)>);

    impl KnownImages for Known {
        fn find_by_name(
            &self,
            listed: &str,
            any_extension: bool,
        ) -> Result<Option<KnownFile>, AmbiguousName> {
            let name = Path::new(listed_file_name(listed));
            let candidates = self
                .0
                .iter()
                .filter(|(p, _, _)| {
                    if any_extension {
                        p.file_stem() == name.file_stem()
                    } else {
                        p.file_name() == name.file_name()
                    }
                })
                .map(|(p, w, h)| {
                    (
                        p.to_string_lossy().into_owned(),
                        KnownFile {
                            file: p.clone(),
                            width: *w,
                            height: *h,
                        },
                    )
                })
                .collect();
            pick_by_name(listed, candidates)
        }
    }

    fn settings(images: Option<&Path>, known: Option<Known>) -> ImportSettings {
        ImportSettings {
            images_dir: images.map(Path::to_path_buf),
            known_images: known.map(|k| Arc::new(k) as Arc<dyn KnownImages>),
            ..ImportSettings::default()
        }
    }

    #[test]
    fn cvat_export_without_images_lists_every_entry_as_unresolved_with_its_boxes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let export = cvat_export(dir.path(), &[("2", "1 0.5 0.5 0.1 0.1\n")]);
        let parsed = import_with(
            Format::Yolo,
            &export.join("obj.data"),
            &settings(None, None),
        )
        .expect("parsed");
        assert!(parsed.dataset.images.is_empty());
        let entries: Vec<(&str, usize)> = parsed
            .unresolved
            .iter()
            .map(|u| (u.entry.as_str(), u.boxes))
            .collect();
        assert_eq!(
            entries,
            [
                ("data/obj_train_data/1.jpg", 2),
                ("data/obj_train_data/2.jpg", 1)
            ]
        );
        assert!(parsed.unresolved[0].location.ends_with("train.txt:1"));
        assert!(parsed.unresolved[0].reason.contains("no --images given"));
        assert_eq!(parsed.skipped, 3);
    }

    #[test]
    fn cvat_labels_beside_obj_data_pair_with_images_found_by_name_under_images() {
        let dir = tempfile::tempdir().expect("tempdir");
        let export = cvat_export(dir.path(), &[]);
        let frames = dir.path().join("frames");
        image_to(&frames.join("nested/1.jpg"));
        let parsed = import_with(
            Format::Yolo,
            &export.join("obj.data"),
            &settings(Some(&frames), None),
        )
        .expect("parsed");
        assert!(parsed.unresolved.is_empty(), "{:?}", parsed.unresolved);
        let [img] = parsed.dataset.images.as_slice() else {
            panic!("one image: {:?}", parsed.dataset.images);
        };
        assert_eq!(img.file_name, "nested/1.jpg");
        assert_eq!((img.width, img.height), (15, 10));
        // datumaro's own expectation for this file: label_2 at (0, 2, 4, 2), label_4 at (3, 3, 2, 3).
        let boxes: Vec<(usize, [i64; 4])> = img
            .boxes
            .iter()
            .map(|b| {
                #[allow(clippy::cast_possible_truncation)]
                let r = |v: f64| v.round() as i64;
                (
                    b.class,
                    [r(b.bbox.x), r(b.bbox.y), r(b.bbox.w), r(b.bbox.h)],
                )
            })
            .collect();
        assert_eq!(boxes, [(2, [0, 2, 4, 2]), (4, [3, 3, 2, 3])]);
    }

    #[test]
    fn an_ambiguous_name_under_images_names_both_candidates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let export = cvat_export(dir.path(), &[]);
        let frames = dir.path().join("frames");
        image_to(&frames.join("a/1.jpg"));
        image_to(&frames.join("b/1.jpg"));
        let err = import_with(
            Format::Yolo,
            &export.join("obj.data"),
            &settings(Some(&frames), None),
        )
        .expect_err("ambiguous");
        let msg = err.to_string();
        assert!(
            msg.contains("`a/1.jpg` and `b/1.jpg`") && msg.contains("train.txt:1"),
            "{msg}"
        );
    }

    #[test]
    fn the_listed_folders_break_a_tie_between_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let export = cvat_export(dir.path(), &[]);
        let frames = dir.path().join("frames");
        image_to(&frames.join("obj_train_data/sub/1.jpg"));
        image_to(&frames.join("other/1.jpg"));
        // `data/obj_train_data/1.jpg`: nothing ends in `obj_train_data/1.jpg`, so still a tie.
        assert!(
            import_with(
                Format::Yolo,
                &export.join("obj.data"),
                &settings(Some(&frames), None)
            )
            .is_err()
        );
        std::fs::remove_dir_all(frames.join("obj_train_data")).expect("rm");
        image_to(&frames.join("x/obj_train_data/1.jpg"));
        let parsed = import_with(
            Format::Yolo,
            &export.join("obj.data"),
            &settings(Some(&frames), None),
        )
        .expect("parsed");
        assert_eq!(parsed.dataset.images[0].file_name, "x/obj_train_data/1.jpg");
    }

    #[test]
    fn project_images_are_the_last_resort_and_placeholders_lend_their_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let export = cvat_export(dir.path(), &[("2", "0 0.5 0.5 0.5 0.5\n")]);
        let project_dir = dir.path().join("project");
        image_to(&project_dir.join("shots/1.jpg"));
        // `2.jpg` is known to the project (an earlier import) but not on disk: 40x20.
        let known = Known(vec![
            (project_dir.join("shots/1.jpg"), 15, 10),
            (project_dir.join("shots/2.jpg"), 40, 20),
        ]);
        let parsed = import_with(
            Format::Yolo,
            &export.join("obj.data"),
            &settings(None, Some(known)),
        )
        .expect("parsed");
        assert!(parsed.unresolved.is_empty(), "{:?}", parsed.unresolved);
        let names: Vec<(&str, u32, usize)> = parsed
            .dataset
            .images
            .iter()
            .map(|i| (i.file_name.as_str(), i.width, i.boxes.len()))
            .collect();
        assert_eq!(
            names,
            [
                ("../project/shots/1.jpg", 15, 2),
                ("../project/shots/2.jpg", 40, 1)
            ]
        );
        let b = &parsed.dataset.images[1].boxes[0].bbox;
        assert_eq!((b.x, b.y, b.w, b.h), (10.0, 5.0, 20.0, 10.0));
    }

    #[test]
    fn a_missing_yaml_split_is_unresolved_and_val_is_found_under_its_other_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        image_to(&root.join("valid/images/v.jpg"));
        std::fs::create_dir_all(root.join("valid/labels")).expect("mkdir");
        std::fs::write(root.join("valid/labels/v.txt"), "0 0.5 0.5 0.2 0.2\n").expect("label");
        std::fs::write(
            root.join("data.yaml"),
            "path: /elsewhere/gone\ntrain: ../train/images\nval: ../val/images\nnames: [a]\n",
        )
        .expect("yaml");
        let parsed = import_with(Format::Yolo, &root.join("data.yaml"), &settings(None, None))
            .expect("parsed");
        assert_eq!(parsed.dataset.images.len(), 1);
        assert_eq!(parsed.dataset.images[0].boxes.len(), 1);
        let [u] = parsed.unresolved.as_slice() else {
            panic!("{:?}", parsed.unresolved);
        };
        assert_eq!(u.entry, "train: ../train/images");
        let kinds: Vec<&str> = parsed.warnings.iter().map(|w| w.kind.as_str()).collect();
        assert_eq!(kinds, ["dangling_path", "dangling_path"]);
    }

    #[test]
    fn a_dangling_yaml_path_falls_back_to_images_for_the_split_folders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("cfg");
        std::fs::create_dir_all(cfg.join("labels/train")).expect("mkdir");
        std::fs::write(cfg.join("labels/train/a.txt"), "0 0.5 0.5 0.2 0.2\n").expect("label");
        std::fs::write(
            cfg.join("data.yaml"),
            "path: /home/other/ds\ntrain: images/train\nnames: {0: a}\n",
        )
        .expect("yaml");
        let images = dir.path().join("mine");
        image_to(&images.join("images/train/a.jpg"));
        let parsed = import_with(
            Format::Yolo,
            &cfg.join("data.yaml"),
            &settings(Some(&images), None),
        )
        .expect("parsed");
        assert!(parsed.unresolved.is_empty(), "{:?}", parsed.unresolved);
        let [img] = parsed.dataset.images.as_slice() else {
            panic!("{:?}", parsed.dataset.images);
        };
        assert_eq!(img.file_name, "images/train/a.jpg");
        assert_eq!(
            img.boxes.len(),
            1,
            "labels beside data.yaml pair with images elsewhere"
        );
    }

    #[test]
    fn pick_by_name_prefers_a_unique_folder_match_and_reports_ties() {
        fn pick<'a>(listed: &str, paths: &[&'a str]) -> Result<Option<&'a str>, AmbiguousName> {
            pick_by_name(
                listed,
                paths.iter().map(|p| ((*p).to_owned(), *p)).collect(),
            )
        }
        assert_eq!(pick("a.jpg", &[]), Ok(None));
        assert_eq!(pick("x/a.jpg", &["y/a.jpg"]), Ok(Some("y/a.jpg")));
        assert_eq!(
            pick("train/a.jpg", &["d/train/a.jpg", "d/val/a.jpg"]),
            Ok(Some("d/train/a.jpg"))
        );
        let err = pick("a.jpg", &["d/val/a.jpg", "d/train/a.jpg"]).expect_err("tie");
        assert_eq!(err.candidates, ["d/train/a.jpg", "d/val/a.jpg"]);
        assert!(
            err.to_string()
                .contains("`d/train/a.jpg` and `d/val/a.jpg`")
        );
    }
}
