//! Label Studio JSON exports: the full export (a list of tasks) and JSON-MIN (flat records).
//!
//! The layout follows Label Studio's documented export ("Label Studio JSON format of annotated
//! tasks", labelstud.io/guide/export and /guide/task_format, and the `RectangleLabels` tag page)
//! and label-studio-converter 0.0.59 (`Converter.convert_to_json_min`, which writes one record
//! per annotation: the task's `data` keys, `id`, one key per control tag `from_name` holding the
//! regions' `value`s plus `original_width`/`original_height`, `annotator`, `annotation_id`,
//! `created_at`, `updated_at`, `lead_time`).
//!
//! - A full task: `data.image` names the image; `annotations[].result[]` holds regions. The
//!   annotation used is the one marked `ground_truth`, else the newest (`updated_at`, then
//!   `created_at`), skipping cancelled ones; the others are counted as skipped with a warning,
//!   since several annotators' boxes on one image are not one ground truth.
//! - `predictions[]` with `model_version` and `score` (per prediction, or per region) become the
//!   proposals of one model per `model_version` ([`Parsed::predictions`]); every task carrying a
//!   prediction of that model counts as seen by it, boxes or not.
//! - `rectanglelabels` regions give `x`, `y`, `width`, `height` in percent of
//!   `original_width` x `original_height`; a region without those sizes is refused. A non-zero
//!   `rotation` (degrees, clockwise about the top-left corner) becomes the enclosing box, with a
//!   warning. Polygons and ellipses become their bounding box with `shapes_as_boxes`, else they
//!   are skipped with a count per kind like every other region kind (brushes, key points,
//!   choices, text).
//! - Image references are resolved by file name under the images folder: `/data/upload/1/
//!   8c3a1f2e-NAME.jpg` (Label Studio prefixes uploads with 8 hex digits and a dash, stripped when
//!   the prefixed name is not found), `/data/local-files/?d=dir/NAME.jpg` (tried as `dir/NAME.jpg`
//!   first), `s3://`, `gs://`, `azure-blob://` and `http(s)://` URLs. A name found twice is an
//!   error naming both files; a name not found is a warning (the image becomes a placeholder).
//! - Classes are in order of first appearance (the export does not carry the labelling
//!   config); labels and predictions share one list.
//!
//! The export writes the full format, which Label Studio imports as pre-annotated tasks:
//! `data.image` as `/data/local-files/?d=FILE`, one annotation per task whose `result` holds
//! `rectanglelabels` regions with `from_name` `label`, `to_name` `image`, the original size and
//! an id (Loupe's annotation id when it has one, read back on import).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::coco::parse_json;
use super::{
    ExportReport, FormatError, ImportSettings, Parsed, Predictions, Report, accept_box, read_file,
    relative_slash_path, write_file,
};
use crate::imaging::has_image_extension;
use crate::model::{BBox, Dataset, DatasetBox, DatasetImage};

/// Region kinds whose value has `x`, `y`, `width`, `height` and a label list of that name.
const BOX_KINDS: [&str; 2] = ["rectanglelabels", "labels"];

/// Keys of a JSON-MIN record that are not the task's data.
const MIN_RECORD_KEYS: [&str; 7] = [
    "id",
    "annotator",
    "annotation_id",
    "created_at",
    "updated_at",
    "lead_time",
    "agreement",
];

/// Where a record is, for messages: `task 3 (id 17)`.
fn task_location(index: usize, task: &Map<String, Value>) -> String {
    match task.get("id") {
        Some(id) => format!("task {} (id {id})", index + 1),
        None => format!("task {}", index + 1),
    }
}

/// The image reference of a task's data (or a JSON-MIN record): `image`, else the only string
/// that looks like an image file or URL.
fn image_reference(data: &Map<String, Value>, skip: &[&str]) -> Option<String> {
    if let Some(Value::String(s)) = data.get("image") {
        return Some(s.clone());
    }
    let mut found = data.iter().filter_map(|(k, v)| match v {
        Value::String(s)
            if !skip.contains(&k.as_str()) && has_image_extension(Path::new(strip_query(s))) =>
        {
            Some(s.clone())
        }
        _ => None,
    });
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

fn strip_query(s: &str) -> &str {
    s.split(['?', '#']).next().unwrap_or(s)
}

/// Decodes `%XX` escapes (invalid ones are kept as written).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes what a URL query value cannot hold as it is (`/` is kept, as Label Studio does).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What an image reference names: a relative path to try first (local files, plain paths) and
/// the file name.
fn reference_parts(reference: &str) -> (Option<String>, String) {
    let r = reference.trim();
    if let Some(i) = r.find("?d=") {
        let d = percent_decode(r[i + 3..].split('&').next().unwrap_or_default());
        let name = d.rsplit('/').next().unwrap_or(&d).to_owned();
        return (Some(d), name);
    }
    let is_url = r.contains("://") || r.starts_with("/data/");
    let path = percent_decode(strip_query(r));
    let name = path.rsplit(['/', '\\']).next().unwrap_or(&path).to_owned();
    if is_url {
        (None, name)
    } else {
        (Some(path.replace('\\', "/")), name)
    }
}

/// The name without Label Studio's upload prefix (8 hex digits and a dash), if it has one.
fn strip_upload_prefix(name: &str) -> Option<&str> {
    let (prefix, rest) = name.split_at_checked(9)?;
    // Checked too: byte 8 of a name that is not ASCII may be inside a character (fuzzing).
    let (hex, dash) = prefix.split_at_checked(8)?;
    (dash == "-" && hex.bytes().all(|b| b.is_ascii_hexdigit()) && !rest.is_empty()).then_some(rest)
}

/// Finds images by file name under the images folder (read once, when first needed).
struct Resolver {
    base: PathBuf,
    by_name: Option<HashMap<String, Vec<String>>>,
}

impl Resolver {
    fn index(&mut self) -> &HashMap<String, Vec<String>> {
        let base = &self.base;
        self.by_name.get_or_insert_with(|| {
            let mut m: HashMap<String, Vec<String>> = HashMap::new();
            for entry in walkdir::WalkDir::new(base)
                .sort_by_file_name()
                .into_iter()
                .flatten()
            {
                if entry.file_type().is_file() && has_image_extension(entry.path()) {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    m.entry(name)
                        .or_default()
                        .push(relative_slash_path(base, entry.path()));
                }
            }
            m
        })
    }

    fn unique(
        &mut self,
        path: &Path,
        location: &str,
        name: &str,
    ) -> Result<Option<String>, FormatError> {
        match self.index().get(name).map(Vec::as_slice) {
            Some([one]) => Ok(Some(one.clone())),
            Some([a, b, ..]) => Err(FormatError::invalid(
                path,
                location,
                format!(
                    "image `{name}` is ambiguous: both `{a}` and `{b}` are under the images folder"
                ),
            )),
            _ => Ok(None),
        }
    }

    /// The file name (relative to the images folder) of a reference, and whether it was found.
    fn resolve(
        &mut self,
        path: &Path,
        location: &str,
        reference: &str,
    ) -> Result<(String, bool), FormatError> {
        let (hint, name) = reference_parts(reference);
        if let Some(h) = &hint
            && !h.is_empty()
            && self.base.join(h).is_file()
        {
            return Ok((h.trim_start_matches('/').to_owned(), true));
        }
        if let Some(found) = self.unique(path, location, &name)? {
            return Ok((found, true));
        }
        let stripped = strip_upload_prefix(&name);
        if let Some(s) = stripped
            && let Some(found) = self.unique(path, location, s)?
        {
            return Ok((found, true));
        }
        let fallback = match (&hint, stripped) {
            (Some(h), _) if !h.is_empty() => h.trim_start_matches('/').to_owned(),
            (_, Some(s)) => s.to_owned(),
            _ => name,
        };
        Ok((fallback, false))
    }
}

/// A number field of a region, refused when missing or not a number.
fn num(
    path: &Path,
    location: &str,
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<f64, FormatError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(FormatError::MissingField {
            path: path.to_path_buf(),
            record: location.to_owned(),
            field,
        }),
        Some(Value::Number(n)) => n.as_f64().filter(|v| v.is_finite()).ok_or_else(|| {
            FormatError::invalid(path, location, format!("`{field}` is not a finite number"))
        }),
        Some(other) => Err(FormatError::invalid(
            path,
            location,
            format!("`{field}` is not a number: {other}"),
        )),
    }
}

/// An optional number field (`rotation`, `score`).
fn opt_num(
    path: &Path,
    location: &str,
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<f64>, FormatError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => num(path, location, obj, field).map(Some),
    }
}

/// One region, from a full export's result or a JSON-MIN value.
struct Region<'a> {
    kind: String,
    value: &'a Map<String, Value>,
    /// Where `original_width`/`original_height`, `score` and `id` are: the result (full export)
    /// or the value itself (JSON-MIN).
    outer: &'a Map<String, Value>,
    location: String,
}

/// The kind of a JSON-MIN value: the name of the label list it carries.
fn min_kind(value: &Map<String, Value>) -> Option<&'static str> {
    [
        "rectanglelabels",
        "polygonlabels",
        "ellipselabels",
        "keypointlabels",
        "brushlabels",
        "labels",
    ]
    .into_iter()
    .find(|k| value.contains_key(*k))
}

/// Reads regions into boxes of one image, for one source (labels or one model's predictions).
struct Reader<'a> {
    path: &'a Path,
    settings: &'a ImportSettings,
    report: Report,
    classes: Vec<String>,
    class_of: HashMap<String, usize>,
    skipped_kinds: Vec<(String, usize)>,
}

impl Reader<'_> {
    fn skip_kind(&mut self, kind: &str) {
        self.report.skipped += 1;
        match self.skipped_kinds.iter_mut().find(|(k, _)| k == kind) {
            Some((_, n)) => *n += 1,
            None => self.skipped_kinds.push((kind.to_owned(), 1)),
        }
    }

    fn class(&mut self, name: &str) -> usize {
        if let Some(&c) = self.class_of.get(name) {
            return c;
        }
        self.classes.push(name.to_owned());
        self.class_of
            .insert(name.to_owned(), self.classes.len() - 1);
        self.classes.len() - 1
    }

    /// The region's label: the first of its label list, refused when there is none.
    fn label(&mut self, r: &Region<'_>, list: &str) -> Result<Option<String>, FormatError> {
        let path = self.path;
        let Some(labels) = r.value.get(list) else {
            return Ok(None);
        };
        let Some(labels) = labels.as_array() else {
            return Err(FormatError::invalid(
                path,
                &r.location,
                format!("`{list}` is not a list"),
            ));
        };
        let mut names = labels.iter().map(|l| {
            l.as_str().map(str::to_owned).ok_or_else(|| {
                FormatError::invalid(
                    path,
                    &r.location,
                    format!("`{list}` holds a non-string label: {l}"),
                )
            })
        });
        let Some(first) = names.next().transpose()? else {
            return Err(FormatError::invalid(
                path,
                &r.location,
                format!("`{list}` is empty: the region refers to no label"),
            ));
        };
        if first.trim().is_empty() {
            return Err(FormatError::invalid(
                path,
                &r.location,
                "the region refers to the empty label ``",
            ));
        }
        if labels.len() > 1 {
            self.report.warn(
                "multiple_labels",
                || format!("{}: {}", path.display(), r.location),
                || {
                    format!(
                        "the region has {} labels; imported as `{first}`",
                        labels.len()
                    )
                },
            );
        }
        Ok(Some(first))
    }

    /// The image size a region's percentages refer to.
    fn original_size(&self, r: &Region<'_>) -> Result<(f64, f64), FormatError> {
        let w = num(self.path, &r.location, r.outer, "original_width")?;
        let h = num(self.path, &r.location, r.outer, "original_height")?;
        if w <= 0.0 || h <= 0.0 {
            return Err(FormatError::invalid(
                self.path,
                &r.location,
                format!("original size {w}x{h} is not positive"),
            ));
        }
        Ok((w, h))
    }

    /// One region into a box of `image` (whose size it may set), or a skip.
    fn region(
        &mut self,
        r: &Region<'_>,
        image: &mut DatasetImage,
        default_score: Option<f64>,
        scored: bool,
    ) -> Result<(), FormatError> {
        let path = self.path;
        let loc = r.location.as_str();
        let kind = r.kind.as_str();
        let list = match kind {
            "rectanglelabels" | "labels" | "polygonlabels" | "ellipselabels" => kind,
            "rectangle" | "polygon" | "ellipse" => {
                self.report.skipped += 1;
                self.report.warn(
                    "unlabelled_shape",
                    || format!("{}: {loc}", path.display()),
                    || format!("`{kind}` region without a label; skipped"),
                );
                return Ok(());
            }
            _ => {
                self.skip_kind(kind);
                return Ok(());
            }
        };
        let is_box = BOX_KINDS.contains(&kind);
        if !is_box && !self.settings.shapes_as_boxes {
            self.skip_kind(kind);
            return Ok(());
        }
        if kind == "labels" && !r.value.contains_key("width") {
            // A `Labels` tag on text or audio: not a region of the image.
            self.skip_kind(kind);
            return Ok(());
        }
        let Some(label) = self.label(r, list)? else {
            return Err(FormatError::MissingField {
                path: path.to_path_buf(),
                record: r.location.clone(),
                field: "rectanglelabels",
            });
        };
        let (ow, oh) = self.original_size(r)?;
        let (sx, sy) = (ow / 100.0, oh / 100.0);
        let v = r.value;
        let bbox = match kind {
            "polygonlabels" => {
                let Some(points) = v.get("points").and_then(Value::as_array) else {
                    return Err(FormatError::MissingField {
                        path: path.to_path_buf(),
                        record: r.location.clone(),
                        field: "points",
                    });
                };
                let mut corners: Option<(f64, f64, f64, f64)> = None;
                for p in points {
                    let xy = p
                        .as_array()
                        .and_then(|a| Some((a.first()?.as_f64()?, a.get(1)?.as_f64()?)));
                    let Some((x, y)) = xy else {
                        return Err(FormatError::invalid(
                            path,
                            loc,
                            format!("point {p} is not [x, y]"),
                        ));
                    };
                    let (x, y) = (x * sx, y * sy);
                    corners = Some(match corners {
                        None => (x, y, x, y),
                        Some((a, b, c, d)) => (a.min(x), b.min(y), c.max(x), d.max(y)),
                    });
                }
                let Some((x0, y0, x1, y1)) = corners else {
                    self.skip_kind(kind);
                    return Ok(());
                };
                BBox::from_corners(x0, y0, x1, y1)
            }
            "ellipselabels" => {
                let (cx, cy) = (num(path, loc, v, "x")? * sx, num(path, loc, v, "y")? * sy);
                let (rx, ry) = (
                    num(path, loc, v, "radiusX")? * sx,
                    num(path, loc, v, "radiusY")? * sy,
                );
                let rotation = opt_num(path, loc, v, "rotation")?.unwrap_or(0.0);
                let (sin, cos) = rotation.to_radians().sin_cos();
                let half_w = (rx * cos).hypot(ry * sin);
                let half_h = (rx * sin).hypot(ry * cos);
                BBox::from_corners(cx - half_w, cy - half_h, cx + half_w, cy + half_h)
            }
            _ => {
                let (x, y) = (num(path, loc, v, "x")? * sx, num(path, loc, v, "y")? * sy);
                let (w, h) = (
                    num(path, loc, v, "width")? * sx,
                    num(path, loc, v, "height")? * sy,
                );
                if w < 0.0 || h < 0.0 {
                    return Err(FormatError::invalid(
                        path,
                        loc,
                        format!("the region has a negative size: width {w}, height {h} (pixels)"),
                    ));
                }
                let rotation = opt_num(path, loc, v, "rotation")?.unwrap_or(0.0);
                if rotation.rem_euclid(360.0) == 0.0 {
                    BBox::new(x, y, w, h)
                } else {
                    self.report.warn(
                        "rotated_box",
                        || format!("{}: {loc}", path.display()),
                        || format!("box rotated by {rotation}°; imported as the axis-aligned box enclosing it"),
                    );
                    rotated_about_corner(x, y, w, h, rotation)
                }
            }
        };
        if image.width == 0 || image.height == 0 {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let size = (ow.round() as u32, oh.round() as u32);
            (image.width, image.height) = size;
        }
        let class = self.class(&label);
        let Some(bbox) = accept_box(&mut self.report, bbox, image.width, image.height, || {
            format!("{}: {loc}", path.display())
        }) else {
            return Ok(());
        };
        #[allow(clippy::cast_possible_truncation)]
        let score = if scored {
            opt_num(path, loc, r.outer, "score")?
                .or(default_score)
                .map(|s| s as f32)
        } else {
            None
        };
        let id = r
            .outer
            .get("id")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok());
        image.boxes.push(DatasetBox {
            class,
            bbox,
            score,
            id,
            ..DatasetBox::default()
        });
        Ok(())
    }

    fn results(
        &mut self,
        results: &Value,
        location: &str,
        image: &mut DatasetImage,
        default_score: Option<f64>,
        scored: bool,
    ) -> Result<(), FormatError> {
        let Some(results) = results.as_array() else {
            return Err(FormatError::invalid(
                self.path,
                location,
                "`result` is not a list",
            ));
        };
        for (i, r) in results.iter().enumerate() {
            let location = format!("{location}, result {}", i + 1);
            let Some(outer) = r.as_object() else {
                return Err(FormatError::invalid(
                    self.path,
                    &location,
                    "the result is not an object",
                ));
            };
            let Some(kind) = outer.get("type").and_then(Value::as_str) else {
                return Err(FormatError::MissingField {
                    path: self.path.to_path_buf(),
                    record: location,
                    field: "type",
                });
            };
            let empty = Map::new();
            let value = outer
                .get("value")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            let region = Region {
                kind: kind.to_owned(),
                value,
                outer,
                location,
            };
            self.region(&region, image, default_score, scored)?;
        }
        Ok(())
    }

    fn finish_kinds(&mut self) {
        let path = self.path;
        let as_boxes = self.settings.shapes_as_boxes;
        for (kind, n) in std::mem::take(&mut self.skipped_kinds) {
            self.report.warn(
                "skipped_region",
                || path.display().to_string(),
                || {
                    if as_boxes || !matches!(kind.as_str(), "polygonlabels" | "ellipselabels") {
                        format!("{n} `{kind}` result(s) skipped: not boxes")
                    } else {
                        format!("{n} `{kind}` result(s) skipped: Loupe imports boxes (use --shapes-as-boxes for their bounding boxes)")
                    }
                },
            );
        }
    }
}

/// The box enclosing a box whose top-left corner is (`x`, `y`), rotated by `degrees` clockwise
/// about that corner (Label Studio's convention, in pixels, y down).
fn rotated_about_corner(x: f64, y: f64, w: f64, h: f64, degrees: f64) -> BBox {
    let (sin, cos) = degrees.to_radians().sin_cos();
    let corners = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)]
        .map(|(dx, dy)| (x + dx * cos - dy * sin, y + dx * sin + dy * cos));
    let (mut x0, mut y0, mut x1, mut y1) = (
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    );
    for (cx, cy) in corners {
        x0 = x0.min(cx);
        y0 = y0.min(cy);
        x1 = x1.max(cx);
        y1 = y1.max(cy);
    }
    BBox::from_corners(x0, y0, x1, y1)
}

/// A text field for ordering annotations (`updated_at`, ISO 8601 so text order is time order).
fn stamp(obj: &Map<String, Value>) -> (String, String) {
    let get = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (get("updated_at"), get("created_at"))
}

fn is_cancelled(obj: &Map<String, Value>) -> bool {
    ["was_cancelled", "skipped"]
        .iter()
        .any(|k| obj.get(*k).and_then(Value::as_bool).unwrap_or(false))
}

/// Counts the regions of an annotation that is not used, for the skipped count.
fn region_count(annotation: &Map<String, Value>) -> usize {
    annotation
        .get("result")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

/// Imports a Label Studio JSON export (full or JSON-MIN).
pub(super) fn import(path: &Path, settings: &ImportSettings) -> Result<Parsed, FormatError> {
    let bytes = read_file(path)?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let root: Value = parse_json(path, bytes)?;
    let records: Vec<&Map<String, Value>> = match &root {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_object().ok_or_else(|| {
                    FormatError::invalid(
                        path,
                        format!("task {}", i + 1),
                        "the task is not an object",
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        Value::Object(task) if task.contains_key("data") => vec![task],
        _ => {
            return Err(FormatError::Unsupported {
                path: path.to_path_buf(),
                reason: "not a Label Studio export: expected a JSON array of tasks".to_owned(),
            });
        }
    };
    let json_dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = settings.images_dir.clone().unwrap_or(json_dir);
    let mut resolver = Resolver {
        base: base.clone(),
        by_name: None,
    };
    let mut reader = Reader {
        path,
        settings,
        report: Report::default(),
        classes: Vec::new(),
        class_of: HashMap::new(),
        skipped_kinds: Vec::new(),
    };
    let mut images: Vec<DatasetImage> = Vec::new();
    // Image index per task key (task id, else the image reference), so JSON-MIN's one record per
    // annotation and a task listed twice land on one image.
    let mut image_of: HashMap<String, usize> = HashMap::new();
    // JSON-MIN: the stamp of the record an image's boxes came from.
    let mut min_stamp: HashMap<usize, (String, String)> = HashMap::new();
    // Predictions: model -> (image index -> boxes), in order of first appearance.
    let mut models: Vec<(String, Vec<(usize, DatasetImage)>)> = Vec::new();

    for (index, &task) in records.iter().enumerate() {
        let location = task_location(index, task);
        let is_full = task.get("data").is_some_and(Value::is_object);
        let data = if is_full {
            task.get("data").and_then(Value::as_object).unwrap_or(task)
        } else {
            task
        };
        let skip: &[&str] = if is_full { &[] } else { &MIN_RECORD_KEYS };
        let Some(reference) = image_reference(data, skip) else {
            return Err(FormatError::MissingField {
                path: path.to_path_buf(),
                record: location,
                field: "data.image",
            });
        };
        let key = task
            .get("id")
            .map_or_else(|| format!("image {reference}"), |id| format!("id {id}"));
        let image_index = if let Some(&i) = image_of.get(&key) {
            i
        } else {
            let (file_name, found) = resolver.resolve(path, &location, &reference)?;
            if !found {
                reader.report.warn(
                    "unresolved_image",
                    || format!("{}: {location}", path.display()),
                    || {
                        format!(
                            "image `{reference}` not found under {} (looked for `{file_name}`)",
                            base.display()
                        )
                    },
                );
            }
            images.push(DatasetImage {
                file_name,
                ..DatasetImage::default()
            });
            image_of.insert(key, images.len() - 1);
            images.len() - 1
        };

        if is_full {
            let annotations = task
                .get("annotations")
                .or_else(|| task.get("completions"))
                .map_or(&[][..], |a| a.as_array().map_or(&[][..], Vec::as_slice));
            // The live (not cancelled) annotations, with their index in the task.
            let mut live: Vec<(usize, &Map<String, Value>)> = Vec::new();
            for (i, a) in annotations.iter().enumerate() {
                let Some(a) = a.as_object() else {
                    return Err(FormatError::invalid(
                        path,
                        format!("{location}, annotation {}", i + 1),
                        "the annotation is not an object",
                    ));
                };
                if !is_cancelled(a) {
                    live.push((i, a));
                }
            }
            let chosen = live.iter().copied().max_by(|(ia, a), (ib, b)| {
                let gt = |x: &Map<String, Value>| {
                    x.get("ground_truth")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                };
                (gt(a), stamp(a), ia).cmp(&(gt(b), stamp(b), ib))
            });
            if let Some((chosen_index, annotation)) = chosen {
                if live.len() > 1 {
                    let others: usize = live
                        .iter()
                        .filter(|(i, _)| *i != chosen_index)
                        .map(|(_, a)| region_count(a))
                        .sum();
                    reader.report.skipped += others;
                    reader.report.warn(
                        "extra_annotations",
                        || format!("{}: {location}", path.display()),
                        || format!(
                            "{} annotations of one image; imported the {} one, {others} region(s) of the others skipped",
                            live.len(),
                            if annotation.get("ground_truth").and_then(Value::as_bool).unwrap_or(false) { "ground-truth" } else { "newest" }
                        ),
                    );
                }
                let loc = format!("{location}, annotation {}", chosen_index + 1);
                let results = annotation
                    .get("result")
                    .cloned()
                    .unwrap_or(Value::Array(Vec::new()));
                reader.results(&results, &loc, &mut images[image_index], None, false)?;
            }
            let predictions = task
                .get("predictions")
                .map_or(&[][..], |a| a.as_array().map_or(&[][..], Vec::as_slice));
            for (i, p) in predictions.iter().enumerate() {
                let loc = format!("{location}, prediction {}", i + 1);
                let Some(p) = p.as_object() else {
                    return Err(FormatError::invalid(
                        path,
                        loc,
                        "the prediction is not an object",
                    ));
                };
                let model = p
                    .get("model_version")
                    .and_then(|m| match m {
                        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .unwrap_or_else(|| "labelstudio-predictions".to_owned());
                let score = opt_num(path, &loc, p, "score")?;
                let m = match models.iter().position(|(name, _)| *name == model) {
                    Some(m) => m,
                    None => {
                        models.push((model, Vec::new()));
                        models.len() - 1
                    }
                };
                let seen = &mut models[m].1;
                let slot = match seen.iter().position(|(i, _)| *i == image_index) {
                    Some(s) => s,
                    None => {
                        let img = &images[image_index];
                        seen.push((
                            image_index,
                            DatasetImage {
                                file_name: img.file_name.clone(),
                                ..DatasetImage::default()
                            },
                        ));
                        seen.len() - 1
                    }
                };
                let results = p.get("result").cloned().unwrap_or(Value::Array(Vec::new()));
                let mut pred_image = std::mem::take(&mut models[m].1[slot].1);
                let outcome = reader.results(&results, &loc, &mut pred_image, score, true);
                models[m].1[slot].1 = pred_image;
                outcome?;
            }
        } else {
            // JSON-MIN: one record per annotation; the newest record of a task wins.
            let st = stamp(task);
            if let Some(prev) = min_stamp.get(&image_index) {
                let newer = st > *prev;
                let (dropped, kept) = if newer {
                    (images[image_index].boxes.len(), "newer")
                } else {
                    (min_regions(task), "older")
                };
                reader.report.skipped += dropped;
                reader.report.warn(
                    "extra_annotations",
                    || format!("{}: {location}", path.display()),
                    || format!("another record of the same task; the newest is imported ({kept} record here, {dropped} region(s) skipped)"),
                );
                if !newer {
                    continue;
                }
                images[image_index].boxes.clear();
            }
            min_stamp.insert(image_index, st);
            for (key, value) in task.iter() {
                if MIN_RECORD_KEYS.contains(&key.as_str()) {
                    continue;
                }
                let Some(items) = value.as_array() else {
                    continue;
                };
                for (i, item) in items.iter().enumerate() {
                    let Some(obj) = item.as_object() else {
                        continue;
                    };
                    let Some(kind) = min_kind(obj) else {
                        continue;
                    };
                    let region = Region {
                        kind: kind.to_owned(),
                        value: obj,
                        outer: obj,
                        location: format!("{location}, `{key}` {}", i + 1),
                    };
                    reader.region(&region, &mut images[image_index], None, false)?;
                }
            }
        }
    }

    reader.finish_kinds();
    let all_classes = reader.classes.clone();
    let predictions = models
        .into_iter()
        .map(|(model, seen)| {
            let mut imgs: Vec<DatasetImage> = Vec::with_capacity(seen.len());
            for (i, mut img) in seen {
                // The labels' image carries the size once any region gave it.
                img.width = images[i].width.max(img.width);
                img.height = images[i].height.max(img.height);
                imgs.push(img);
            }
            Predictions {
                model,
                dataset: Dataset {
                    classes: all_classes.clone(),
                    images: imgs,
                },
            }
        })
        .collect();
    let classes = reader.classes;
    let (warnings, skipped) = reader.report.finish(path);
    Ok(Parsed {
        frames: std::collections::HashMap::new(),
        dataset: Dataset { classes, images },
        warnings,
        images_dir: base,
        skipped,
        predictions,
        unresolved: Vec::new(),
    })
}

/// Regions of a JSON-MIN record.
fn min_regions(record: &Map<String, Value>) -> usize {
    record
        .iter()
        .filter(|(k, _)| !MIN_RECORD_KEYS.contains(&k.as_str()))
        .filter_map(|(_, v)| v.as_array())
        .map(|a| {
            a.iter()
                .filter(|i| i.as_object().is_some_and(|o| min_kind(o).is_some()))
                .count()
        })
        .sum()
}

/// Writes `dataset` as a Label Studio task list: `out` itself when it ends in `.json`, else
/// `out/tasks.json`.
pub(super) fn export(
    dataset: &Dataset,
    out: &Path,
    force: bool,
) -> Result<ExportReport, FormatError> {
    let target = if out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        out.to_path_buf()
    } else {
        out.join("tasks.json")
    };
    let mut tasks = Vec::with_capacity(dataset.images.len());
    let mut boxes = 0;
    for (i, img) in dataset.images.iter().enumerate() {
        if img.file_name.trim().is_empty() {
            return Err(FormatError::export(out, "an image has an empty file name"));
        }
        if !img.boxes.is_empty() && (img.width == 0 || img.height == 0) {
            return Err(FormatError::export(
                out,
                format!(
                    "image `{}` has boxes but no known size; Label Studio needs it for percentages",
                    img.file_name
                ),
            ));
        }
        let (w, h) = (f64::from(img.width), f64::from(img.height));
        let mut results = Vec::with_capacity(img.boxes.len());
        for (j, b) in img.boxes.iter().enumerate() {
            let Some(name) = dataset.classes.get(b.class) else {
                return Err(FormatError::export(
                    out,
                    format!(
                        "a box of `{}` has class index {} but there are {} classes",
                        img.file_name,
                        b.class,
                        dataset.classes.len()
                    ),
                ));
            };
            if !b.bbox.is_finite() {
                return Err(FormatError::export(
                    out,
                    format!("a box of `{}` is not finite", img.file_name),
                ));
            }
            let id = b.id.map_or_else(
                || format!("loupe-{}-{}", i + 1, j + 1),
                |u| u.hyphenated().to_string(),
            );
            results.push(json!({
                "id": id,
                "type": "rectanglelabels",
                "from_name": "label",
                "to_name": "image",
                "original_width": img.width,
                "original_height": img.height,
                "image_rotation": 0,
                "value": {
                    "x": b.bbox.x / w * 100.0,
                    "y": b.bbox.y / h * 100.0,
                    "width": b.bbox.w / w * 100.0,
                    "height": b.bbox.h / h * 100.0,
                    "rotation": 0,
                    "rectanglelabels": [name],
                },
            }));
        }
        boxes += img.boxes.len();
        tasks.push(json!({
            "id": i + 1,
            "data": { "image": format!("/data/local-files/?d={}", percent_encode(&img.file_name)) },
            "annotations": [{
                "id": i + 1,
                "result": results,
                "was_cancelled": false,
                "ground_truth": false,
            }],
            "predictions": [],
        }));
    }
    let text = serde_json::to_vec_pretty(&Value::Array(tasks))
        .map_err(|e| FormatError::export(out, e.to_string()))?;
    write_file(&target, &text, force)?;
    Ok(ExportReport {
        files_written: 1,
        images: dataset.images.len(),
        boxes,
    })
}
