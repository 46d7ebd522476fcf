//! CVAT for images 1.1 XML (`annotations.xml`), and the tracks of CVAT for video 1.1.
//!
//! The layout follows CVAT's own export (`<annotations><version>1.1</version><meta>…`), as in the
//! datumaro test assets (a real CVAT project export and a task export):
//! - classes come from `<meta><task|project|job><labels><label><name>`, in that order; labels
//!   that boxes use but `<meta>` does not declare are added after them, with a warning. Sub-labels
//!   of skeletons (`<parent>` set) are not classes.
//! - `<image id name width height [subset]>` holds shapes. `<box label xtl ytl xbr ybr occluded
//!   z_order [rotation]>` becomes a box; its `<attribute name>` children, and `occluded` (a
//!   boolean) and `z_order` when not 0, become box attributes, stored with the box. Values are
//!   typed as `AttributeValue::from_text` reads them (`true`, `2.4`; `0003` stays text), which
//!   writes each back as the same text. A rotated box becomes the box enclosing it, with a
//!   warning.
//! - Other shapes (polygon, polyline, points, ellipse, mask, cuboid, skeleton, tag) are skipped
//!   with a count per kind, or become their bounding box with `shapes_as_boxes` (a tag has no
//!   geometry and is always skipped).
//! - `<track id label>` (video exports) holds one shape per frame: each `<box frame outside
//!   keyframe>` with `outside="0"` becomes a box of that frame's image, with a `track` attribute.
//!   A frame without an `<image>` element is named as CVAT names extracted frames,
//!   `frame_000000` plus the extension of the file found under the images folder (`.png` when
//!   none is), sized from `<meta><task><original_size>`.
//! - Images are looked for under `images/` beside the XML (CVAT's "save images" layout) or the
//!   XML's folder: at `<subset>/<name>` for project exports, then at `<name>`.
//!
//! Coordinates are corners in pixels (`x = xtl`, `w = xbr - xtl`). The export writes them with
//! Rust's shortest round-trip formatting, so they come back exactly.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use quick_xml::Reader;
use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::{BytesStart, Event};

use super::voc::{LineTracker, xml_error};
use super::{
    ExportReport, FormatError, ImportSettings, Parsed, Report, accept_box, find_image_with_stem,
    read_text, write_file,
};
use crate::limits::MAX_NESTING_DEPTH;
use crate::model::{AttributeValue, Attributes, BBox, Dataset, DatasetBox, DatasetImage, PALETTE};

/// Attributes of a box that live on the `<box>` element itself rather than in `<attribute>`
/// children; kept as box attributes only when they say something (not `0`).
const ELEMENT_ATTRIBUTES: [&str; 2] = ["occluded", "z_order"];

/// Shapes CVAT writes besides `<box>`.
const OTHER_SHAPES: [&str; 8] = [
    "polygon", "polyline", "points", "ellipse", "mask", "cuboid", "skeleton", "tag",
];

/// One shape element as written, before validation.
#[derive(Debug, Default)]
struct ShapeIn {
    kind: String,
    /// `line L, column C (<kind>)`.
    location: String,
    /// The element's own XML attributes (`label`, `xtl`, `frame`, …).
    attrs: Vec<(String, String)>,
    /// `<attribute name>` children.
    attributes: Vec<(String, String)>,
    /// Points of a skeleton's `<points>` children.
    child_points: Vec<String>,
    /// The track this shape belongs to (video exports).
    track: Option<(String, String)>,
}

impl ShapeIn {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One `<image>` as written.
#[derive(Debug, Default)]
struct ImageIn {
    location: String,
    attrs: Vec<(String, String)>,
    shapes: Vec<ShapeIn>,
}

impl ImageIn {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One `<label>` of `<meta>`.
#[derive(Debug, Default)]
struct LabelIn {
    name: String,
    parent: String,
}

/// A whole CVAT file as written.
#[derive(Debug, Default)]
struct DocIn {
    labels: Vec<LabelIn>,
    original_size: (Option<String>, Option<String>),
    images: Vec<ImageIn>,
    /// Shapes of `<track>`s, each with its track id and label.
    track_shapes: Vec<ShapeIn>,
}

/// The XML attributes of an element, unescaped.
fn element_attrs(
    path: &Path,
    text: &str,
    offset: usize,
    e: &BytesStart<'_>,
) -> Result<Vec<(String, String)>, FormatError> {
    let mut out = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| xml_error(path, text, offset, err.to_string()))?;
        let value = a
            .unescape_value()
            .map_err(|err| xml_error(path, text, offset, err.to_string()))?;
        out.push((
            String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(),
            value.into_owned(),
        ));
    }
    Ok(out)
}

/// Parses a CVAT XML file with an event reader, so every error has a line and column.
#[allow(clippy::too_many_lines)] // One flat state machine reads better than split pieces.
fn parse_doc(path: &Path, text: &str) -> Result<DocIn, FormatError> {
    let mut reader = Reader::from_str(text);
    let mut doc = DocIn::default();
    let mut stack: Vec<String> = Vec::new();
    let mut value = String::new();
    let mut seen_root = false;
    let mut lines = LineTracker::default();
    // The `name` of the `<attribute>` being read, and the current track.
    let mut attribute_name: Option<String> = None;
    let mut track: Option<(String, String)> = None;
    loop {
        let offset = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = reader.read_event().map_err(|e| {
            let at = usize::try_from(reader.error_position()).unwrap_or(offset);
            xml_error(path, text, at, e.to_string())
        })?;
        let (start, empty) = match &event {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            Event::End(_) => (None, true),
            Event::Text(t) => {
                let s = t
                    .xml_content()
                    .map_err(|e| xml_error(path, text, offset, e.to_string()))?;
                value.push_str(&s);
                continue;
            }
            Event::CData(c) => {
                let s = c
                    .decode()
                    .map_err(|e| xml_error(path, text, offset, e.to_string()))?;
                value.push_str(&s);
                continue;
            }
            Event::GeneralRef(r) => {
                let ch = r
                    .resolve_char_ref()
                    .map_err(|e| xml_error(path, text, offset, e.to_string()))?;
                if let Some(ch) = ch {
                    value.push(ch);
                } else {
                    let name = r
                        .decode()
                        .map_err(|e| xml_error(path, text, offset, e.to_string()))?;
                    let Some(s) = resolve_predefined_entity(&name) else {
                        return Err(xml_error(
                            path,
                            text,
                            offset,
                            format!("unknown entity `&{name};`"),
                        ));
                    };
                    value.push_str(s);
                }
                continue;
            }
            Event::Eof => {
                if let Some(open) = stack.last() {
                    return Err(xml_error(
                        path,
                        text,
                        text.len(),
                        format!("unexpected end of file: <{open}> is not closed"),
                    ));
                }
                if !seen_root {
                    return Err(xml_error(path, text, text.len(), "no root element"));
                }
                break;
            }
            _ => continue,
        };
        if let Some(e) = start {
            let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
            if stack.is_empty() {
                if seen_root {
                    return Err(xml_error(path, text, offset, "more than one root element"));
                }
                if name != "annotations" {
                    return Err(FormatError::Unsupported {
                        path: path.to_path_buf(),
                        reason: format!(
                            "the root element is <{name}>, not <annotations>: not a CVAT XML file"
                        ),
                    });
                }
                seen_root = true;
            }
            // Each open element costs a little per element read; refusing at the limit keeps a
            // file of 400k nested elements from taking half a minute.
            if stack.len() >= MAX_NESTING_DEPTH {
                return Err(xml_error(
                    path,
                    text,
                    offset,
                    format!(
                        "elements nested deeper than the limit of {MAX_NESTING_DEPTH} levels; refused"
                    ),
                ));
            }
            stack.push(name);
            value.clear();
            let names: Vec<&str> = stack.iter().map(String::as_str).collect();
            let locate = |lines: &mut LineTracker, kind: &str| {
                let (line, column) = lines.locate(text.as_bytes(), offset);
                format!("line {line}, column {column} (<{kind}>)")
            };
            match names.as_slice() {
                ["annotations", "image"] => doc.images.push(ImageIn {
                    location: locate(&mut lines, "image"),
                    attrs: element_attrs(path, text, offset, e)?,
                    shapes: Vec::new(),
                }),
                ["annotations", "image", kind] => {
                    let shape = ShapeIn {
                        kind: (*kind).to_owned(),
                        location: locate(&mut lines, kind),
                        attrs: element_attrs(path, text, offset, e)?,
                        ..ShapeIn::default()
                    };
                    if let Some(image) = doc.images.last_mut() {
                        image.shapes.push(shape);
                    }
                }
                ["annotations", "track"] => {
                    let attrs = element_attrs(path, text, offset, e)?;
                    let get = |k: &str| {
                        attrs
                            .iter()
                            .find(|(n, _)| n == k)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default()
                    };
                    track = Some((get("id"), get("label")));
                }
                ["annotations", "track", kind] => doc.track_shapes.push(ShapeIn {
                    kind: (*kind).to_owned(),
                    location: locate(&mut lines, kind),
                    attrs: element_attrs(path, text, offset, e)?,
                    track: track.clone(),
                    ..ShapeIn::default()
                }),
                ["annotations", "image" | "track", _, "attribute"] => {
                    attribute_name = element_attrs(path, text, offset, e)?
                        .into_iter()
                        .find(|(k, _)| k == "name")
                        .map(|(_, v)| v);
                }
                ["annotations", "image" | "track", "skeleton", "points"] => {
                    let points = element_attrs(path, text, offset, e)?
                        .into_iter()
                        .find(|(k, _)| k == "points")
                        .map(|(_, v)| v);
                    let shape = match names[1] {
                        "image" => doc.images.last_mut().and_then(|i| i.shapes.last_mut()),
                        _ => doc.track_shapes.last_mut(),
                    };
                    if let (Some(shape), Some(points)) = (shape, points) {
                        shape.child_points.push(points);
                    }
                }
                ["annotations", "meta", _, "labels", "label"] => {
                    doc.labels.push(LabelIn::default());
                }
                _ => {}
            }
        }
        if empty {
            let names: Vec<&str> = stack.iter().map(String::as_str).collect();
            let v = value.trim();
            match names.as_slice() {
                ["annotations", "meta", _, "labels", "label", "name"] => {
                    if let Some(l) = doc.labels.last_mut() {
                        v.clone_into(&mut l.name);
                    }
                }
                ["annotations", "meta", _, "labels", "label", "parent"] => {
                    if let Some(l) = doc.labels.last_mut() {
                        v.clone_into(&mut l.parent);
                    }
                }
                [
                    "annotations",
                    "meta",
                    "task" | "job",
                    "original_size",
                    "width",
                ] => {
                    doc.original_size.0 = Some(v.to_owned());
                }
                [
                    "annotations",
                    "meta",
                    "task" | "job",
                    "original_size",
                    "height",
                ] => {
                    doc.original_size.1 = Some(v.to_owned());
                }
                ["annotations", "image" | "track", _, "attribute"] => {
                    let shape = match names[1] {
                        "image" => doc.images.last_mut().and_then(|i| i.shapes.last_mut()),
                        _ => doc.track_shapes.last_mut(),
                    };
                    if let (Some(shape), Some(name)) = (shape, attribute_name.take()) {
                        // Attribute values are free text: kept as written, only trimmed.
                        shape.attributes.push((name, v.to_owned()));
                    }
                }
                ["annotations", "track"] => track = None,
                _ => {}
            }
            stack.pop();
            value.clear();
        }
    }
    Ok(doc)
}

/// A coordinate or size attribute as a finite number, or a refusal naming it.
fn number(path: &Path, shape_location: &str, name: &str, v: &str) -> Result<f64, FormatError> {
    match v.trim().parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(n),
        _ => Err(FormatError::invalid(
            path,
            shape_location,
            format!("`{name}` is not a number: `{v}`"),
        )),
    }
}

fn required<'a>(
    path: &Path,
    shape: &'a ShapeIn,
    name: &'static str,
) -> Result<&'a str, FormatError> {
    shape.attr(name).ok_or_else(|| FormatError::MissingField {
        path: path.to_path_buf(),
        record: shape.location.clone(),
        field: name,
    })
}

/// Parses CVAT's `x1,y1;x2,y2;…` point lists.
fn parse_points(path: &Path, location: &str, points: &str) -> Result<Vec<(f64, f64)>, FormatError> {
    let mut out = Vec::new();
    for pair in points.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((x, y)) = pair.split_once(',') else {
            return Err(FormatError::invalid(
                path,
                location,
                format!("point `{pair}` is not `x,y`"),
            ));
        };
        out.push((
            number(path, location, "points", x)?,
            number(path, location, "points", y)?,
        ));
    }
    Ok(out)
}

fn bounds(points: &[(f64, f64)]) -> Option<BBox> {
    let (first, rest) = points.split_first()?;
    let (mut x0, mut y0, mut x1, mut y1) = (first.0, first.1, first.0, first.1);
    for &(x, y) in rest {
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    Some(BBox::from_corners(x0, y0, x1, y1))
}

/// The box enclosing a `w` x `h` box centred at (`cx`, `cy`) rotated by `degrees` about its centre.
fn rotated_bounds(cx: f64, cy: f64, w: f64, h: f64, degrees: f64) -> BBox {
    let (sin, cos) = degrees.to_radians().sin_cos();
    let half_w = (w * cos.abs() + h * sin.abs()) / 2.0;
    let half_h = (w * sin.abs() + h * cos.abs()) / 2.0;
    BBox::from_corners(cx - half_w, cy - half_h, cx + half_w, cy + half_h)
}

/// The bounding box of a non-box shape, for `shapes_as_boxes`. `None` for shapes without
/// geometry (tags).
fn shape_bounds(path: &Path, shape: &ShapeIn) -> Result<Option<BBox>, FormatError> {
    let loc = shape.location.as_str();
    let num = |name: &'static str| -> Result<f64, FormatError> {
        number(path, loc, name, required(path, shape, name)?)
    };
    let b = match shape.kind.as_str() {
        "polygon" | "polyline" | "points" => {
            bounds(&parse_points(path, loc, required(path, shape, "points")?)?)
        }
        "skeleton" => {
            let mut all = Vec::new();
            for p in &shape.child_points {
                all.extend(parse_points(path, loc, p)?);
            }
            bounds(&all)
        }
        "ellipse" => {
            let (cx, cy, rx, ry) = (num("cx")?, num("cy")?, num("rx")?, num("ry")?);
            let rotation = match shape.attr("rotation") {
                Some(r) => number(path, loc, "rotation", r)?,
                None => 0.0,
            };
            // An ellipse's bounding box: half-extents sqrt((rx cos)^2 + (ry sin)^2) etc.
            let (sin, cos) = rotation.to_radians().sin_cos();
            let half_w = (rx * cos).hypot(ry * sin);
            let half_h = (rx * sin).hypot(ry * cos);
            Some(BBox::from_corners(
                cx - half_w,
                cy - half_h,
                cx + half_w,
                cy + half_h,
            ))
        }
        "mask" => {
            // CVAT writes a mask's bounding box as `left top width height` (inclusive pixels).
            Some(BBox::new(
                num("left")?,
                num("top")?,
                num("width")?,
                num("height")?,
            ))
        }
        "cuboid" => {
            let mut pts = Vec::new();
            for corner in ["tl1", "bl1", "tr1", "br1", "tl2", "bl2", "tr2", "br2"] {
                let (Some(x), Some(y)) = (
                    shape.attr(&format!("x{corner}")),
                    shape.attr(&format!("y{corner}")),
                ) else {
                    continue;
                };
                pts.push((
                    number(path, loc, "cuboid corner", x)?,
                    number(path, loc, "cuboid corner", y)?,
                ));
            }
            bounds(&pts)
        }
        _ => None,
    };
    Ok(b)
}

/// Where images are looked for by default: `images/` beside the XML, else the XML's folder.
fn default_images_dir(xml_dir: &Path) -> PathBuf {
    let images = xml_dir.join("images");
    if images.is_dir() {
        images
    } else {
        xml_dir.to_path_buf()
    }
}

/// The file name of an `<image>` relative to `base`: `<subset>/<name>` or `<name>`, whichever
/// exists (CVAT project exports put each subset's images in their own folder, and the same
/// name can occur in several subsets); `<subset>/<name>` when neither does.
fn image_file_name(base: &Path, name: &str, subset: Option<&str>) -> String {
    let name = name.replace('\\', "/");
    let with_subset = subset
        .filter(|s| !s.is_empty())
        .map(|s| format!("{s}/{name}"));
    if let Some(ws) = &with_subset
        && base.join(ws).is_file()
    {
        return ws.clone();
    }
    if base.join(&name).is_file() {
        return name;
    }
    with_subset.unwrap_or(name)
}

/// A size attribute in pixels.
fn size(path: &Path, location: &str, name: &str, v: Option<&str>) -> Result<u32, FormatError> {
    let Some(v) = v else {
        return Ok(0);
    };
    let n = number(path, location, name, v)?;
    if n < 0.0 || n > f64::from(u32::MAX) {
        return Err(FormatError::invalid(
            path,
            location,
            format!("`{name}` is out of range: `{v}`"),
        ));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(n.round() as u32)
}

/// Builds the dataset while shapes are read.
struct Builder<'a> {
    path: &'a Path,
    settings: &'a ImportSettings,
    report: Report,
    classes: Vec<String>,
    class_of: HashMap<String, usize>,
    declared: bool,
    /// Skipped shapes per kind, for one summary warning per kind.
    skipped_kinds: Vec<(String, usize)>,
}

impl Builder<'_> {
    fn class(&mut self, name: &str, location: &str) -> usize {
        if let Some(&c) = self.class_of.get(name) {
            return c;
        }
        if self.declared {
            let path = self.path;
            self.report.warn(
                "undeclared_label",
                || format!("{}: {location}", path.display()),
                || {
                    format!(
                        "label `{name}` is not declared in <meta>; added after the declared ones"
                    )
                },
            );
        }
        self.classes.push(name.to_owned());
        self.class_of
            .insert(name.to_owned(), self.classes.len() - 1);
        self.classes.len() - 1
    }

    fn skip_kind(&mut self, kind: &str) {
        self.report.skipped += 1;
        match self.skipped_kinds.iter_mut().find(|(k, _)| k == kind) {
            Some((_, n)) => *n += 1,
            None => self.skipped_kinds.push((kind.to_owned(), 1)),
        }
    }

    /// Turns one shape into a box of a `width` x `height` image, or skips it.
    fn shape(
        &mut self,
        shape: &ShapeIn,
        width: u32,
        height: u32,
    ) -> Result<Option<DatasetBox>, FormatError> {
        let path = self.path;
        let loc = shape.location.as_str();
        let is_box = shape.kind == "box";
        if !is_box && !OTHER_SHAPES.contains(&shape.kind.as_str()) {
            // Unknown elements (newer CVAT versions) are not shapes Loupe knows: counted.
            self.skip_kind(&shape.kind);
            return Ok(None);
        }
        if !is_box && (!self.settings.shapes_as_boxes || shape.kind == "tag") {
            self.skip_kind(&shape.kind);
            return Ok(None);
        }
        let label = match (&shape.track, shape.attr("label")) {
            (Some((_, l)), _) if !l.is_empty() => l.clone(),
            (_, Some(l)) => l.trim().to_owned(),
            (_, None) if is_box => {
                return Err(FormatError::MissingField {
                    path: path.to_path_buf(),
                    record: shape.location.clone(),
                    field: "label",
                });
            }
            (_, None) => String::new(),
        };
        if label.is_empty() {
            if is_box {
                return Err(FormatError::invalid(
                    path,
                    loc,
                    "the box refers to the empty label ``, which no <label> can be",
                ));
            }
            // CVAT writes `label=""` for shapes whose label was deleted; nothing to name them by.
            self.report.skipped += 1;
            self.report.warn(
                "unlabelled_shape",
                || format!("{}: {loc}", path.display()),
                || format!("<{}> has an empty label; skipped", shape.kind),
            );
            return Ok(None);
        }
        let bbox = if is_box {
            let xtl = number(path, loc, "xtl", required(path, shape, "xtl")?)?;
            let ytl = number(path, loc, "ytl", required(path, shape, "ytl")?)?;
            let xbr = number(path, loc, "xbr", required(path, shape, "xbr")?)?;
            let ybr = number(path, loc, "ybr", required(path, shape, "ybr")?)?;
            if xtl > xbr || ytl > ybr {
                return Err(FormatError::invalid(
                    path,
                    loc,
                    format!(
                        "the box's corners are swapped: xtl={xtl} ytl={ytl} xbr={xbr} ybr={ybr}"
                    ),
                ));
            }
            let rotation = match shape.attr("rotation") {
                Some(r) => number(path, loc, "rotation", r)?,
                None => 0.0,
            };
            let b = BBox::new(xtl, ytl, xbr - xtl, ybr - ytl);
            if rotation.rem_euclid(360.0) == 0.0 {
                b
            } else {
                let (cx, cy) = b.center();
                let enclosing = rotated_bounds(cx, cy, b.w, b.h, rotation);
                self.report.warn(
                    "rotated_box",
                    || format!("{}: {loc}", path.display()),
                    || format!("box rotated by {rotation}°; imported as the axis-aligned box enclosing it"),
                );
                enclosing
            }
        } else {
            let Some(b) = shape_bounds(path, shape)? else {
                self.skip_kind(&shape.kind);
                return Ok(None);
            };
            b
        };
        let class = self.class(&label, loc);
        let Some(bbox) = accept_box(&mut self.report, bbox, width, height, || {
            format!("{}: {loc}", path.display())
        }) else {
            return Ok(None);
        };
        let mut attributes = Attributes::new();
        for name in ELEMENT_ATTRIBUTES {
            if let Some(v) = shape.attr(name).map(str::trim)
                && !v.is_empty()
                && !v.parse::<f64>().is_ok_and(|n| n == 0.0)
            {
                let value = if name == "occluded" && v == "1" {
                    AttributeValue::Bool(true)
                } else {
                    AttributeValue::from_text(v)
                };
                attributes.insert(name, value);
            }
        }
        if let Some((id, _)) = &shape.track {
            attributes.insert("track", AttributeValue::from_text(id));
        }
        for (k, v) in &shape.attributes {
            attributes.insert(k.as_str(), AttributeValue::from_text(v));
        }
        Ok(Some(DatasetBox {
            class,
            bbox,
            attributes,
            ..DatasetBox::default()
        }))
    }
}

/// Imports a CVAT for images (or video) 1.1 XML file.
pub(super) fn import(path: &Path, settings: &ImportSettings) -> Result<Parsed, FormatError> {
    let text = read_text(path)?;
    let doc = parse_doc(path, &text)?;
    let xml_dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = settings
        .images_dir
        .clone()
        .unwrap_or_else(|| default_images_dir(&xml_dir));

    let mut b = Builder {
        path,
        settings,
        report: Report::default(),
        classes: Vec::new(),
        class_of: HashMap::new(),
        declared: false,
        skipped_kinds: Vec::new(),
    };
    for label in &doc.labels {
        if label.name.is_empty() || !label.parent.is_empty() {
            continue;
        }
        if !b.class_of.contains_key(&label.name) {
            b.classes.push(label.name.clone());
            b.class_of.insert(label.name.clone(), b.classes.len() - 1);
        }
    }
    b.declared = !b.classes.is_empty();

    let mut images = Vec::with_capacity(doc.images.len());
    // Frame number -> image index, for tracks.
    let mut image_of_frame: HashMap<String, usize> = HashMap::new();
    for img in &doc.images {
        let loc = img.location.as_str();
        let Some(name) = img.attr("name").filter(|n| !n.trim().is_empty()) else {
            return Err(FormatError::MissingField {
                path: path.to_path_buf(),
                record: img.location.clone(),
                field: "name",
            });
        };
        let width = size(path, loc, "width", img.attr("width"))?;
        let height = size(path, loc, "height", img.attr("height"))?;
        let mut boxes = Vec::new();
        for shape in &img.shapes {
            if let Some(bx) = b.shape(shape, width, height)? {
                boxes.push(bx);
            }
        }
        if let Some(id) = img.attr("id")
            && img.attr("subset").is_none()
        {
            // Frame ids are unique within a task export; project exports (with subsets) repeat
            // them and have no tracks.
            image_of_frame.insert(id.trim().to_owned(), images.len());
        }
        images.push(DatasetImage {
            file_name: image_file_name(&base, name.trim(), img.attr("subset")),
            width,
            height,
            external_id: None,
            boxes,
        });
    }

    if !doc.track_shapes.is_empty() {
        let frame_w = size(
            path,
            "<meta><original_size>",
            "width",
            doc.original_size.0.as_deref(),
        )?;
        let frame_h = size(
            path,
            "<meta><original_size>",
            "height",
            doc.original_size.1.as_deref(),
        )?;
        for shape in &doc.track_shapes {
            let frame = required(path, shape, "frame")?.trim();
            let frame_no = number(path, &shape.location, "frame", frame)?;
            let outside = shape
                .attr("outside")
                .is_some_and(|v| v.trim().parse::<f64>().is_ok_and(|n| n != 0.0));
            if outside {
                // The object has left the frame: not an annotation (and not a skip).
                continue;
            }
            let index = if let Some(&i) = image_of_frame.get(frame) {
                i
            } else {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let stem = format!("frame_{:06}", frame_no.max(0.0) as u64);
                let file_name = find_image_with_stem(&base, &stem)
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_else(|| format!("{stem}.png"));
                images.push(DatasetImage {
                    file_name,
                    width: frame_w,
                    height: frame_h,
                    external_id: None,
                    boxes: Vec::new(),
                });
                image_of_frame.insert(frame.to_owned(), images.len() - 1);
                images.len() - 1
            };
            let (w, h) = (images[index].width, images[index].height);
            if let Some(bx) = b.shape(shape, w, h)? {
                images[index].boxes.push(bx);
            }
        }
    }

    for (kind, n) in std::mem::take(&mut b.skipped_kinds) {
        b.report.warn(
            "skipped_shape",
            || path.display().to_string(),
            || {
                if kind == "tag" || settings.shapes_as_boxes {
                    format!("{n} <{kind}> shape(s) skipped: they have no box")
                } else {
                    format!(
                        "{n} <{kind}> shape(s) skipped: Loupe imports boxes (use --shapes-as-boxes for their bounding boxes)"
                    )
                }
            },
        );
    }
    let (warnings, skipped) = b.report.finish(path);
    Ok(Parsed {
        frames: std::collections::HashMap::new(),
        dataset: Dataset {
            classes: b.classes,
            images,
        },
        warnings,
        images_dir: base,
        skipped,
        predictions: Vec::new(),
        unresolved: Vec::new(),
    })
}

/// Writes `dataset` as CVAT for images 1.1 XML: `out` itself when it ends in `.xml`, else
/// `out/annotations.xml`. Every attribute name a class's boxes use is declared in `<meta>` as a
/// text attribute, so CVAT accepts the values written back.
pub(super) fn export(
    dataset: &Dataset,
    out: &Path,
    force: bool,
) -> Result<ExportReport, FormatError> {
    let target = if out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("xml"))
    {
        out.to_path_buf()
    } else {
        out.join("annotations.xml")
    };
    // Validate everything before writing anything.
    let mut attribute_names: Vec<Vec<String>> = vec![Vec::new(); dataset.classes.len()];
    let mut boxes = 0;
    for name in &dataset.classes {
        if name.trim().is_empty() {
            return Err(FormatError::export(out, "a class has an empty name"));
        }
    }
    for img in &dataset.images {
        if img.file_name.trim().is_empty() {
            return Err(FormatError::export(out, "an image has an empty file name"));
        }
        for b in &img.boxes {
            let Some(names) = attribute_names.get_mut(b.class) else {
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
            for (k, _) in b.attributes.iter() {
                if !ELEMENT_ATTRIBUTES.contains(&k) && !names.iter().any(|n| n == k) {
                    names.push(k.to_owned());
                }
            }
        }
        boxes += img.boxes.len();
    }

    let mut s = String::with_capacity(1024 + 200 * boxes);
    s.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<annotations>\n  <version>1.1</version>\n  <meta>\n    <task>\n");
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "      <name>loupe</name>\n      <size>{}</size>\n      <mode>annotation</mode>\n      <overlap>0</overlap>\n      <labels>\n",
        dataset.images.len()
    );
    for (i, name) in dataset.classes.iter().enumerate() {
        let _ = write!(
            s,
            "        <label>\n          <name>{}</name>\n          <color>{}</color>\n          <type>rectangle</type>\n          <attributes>\n",
            escape(name.as_str()),
            PALETTE[i % PALETTE.len()]
        );
        for attr in &attribute_names[i] {
            let _ = write!(
                s,
                "            <attribute>\n              <name>{}</name>\n              <mutable>False</mutable>\n              <input_type>text</input_type>\n              <default_value></default_value>\n              <values></values>\n            </attribute>\n",
                escape(attr.as_str())
            );
        }
        s.push_str("          </attributes>\n        </label>\n");
    }
    s.push_str("      </labels>\n    </task>\n  </meta>\n");
    for (id, img) in dataset.images.iter().enumerate() {
        let _ = writeln!(
            s,
            "  <image id=\"{id}\" name=\"{}\" width=\"{}\" height=\"{}\">",
            escape(img.file_name.as_str()),
            img.width,
            img.height
        );
        for b in &img.boxes {
            let name = dataset.classes.get(b.class).map_or("", String::as_str);
            // `occluded` is a 0/1 flag on the element; other values are written as they were read.
            let get = |k: &str| match b.attributes.get(k) {
                None | Some(AttributeValue::Bool(false)) => "0".to_owned(),
                Some(AttributeValue::Bool(true)) => "1".to_owned(),
                Some(v) => v.to_text(),
            };
            let r = &b.bbox;
            let _ = write!(
                s,
                "    <box label=\"{}\" source=\"manual\" occluded=\"{}\" xtl=\"{}\" ytl=\"{}\" xbr=\"{}\" ybr=\"{}\" z_order=\"{}\"",
                escape(name),
                escape(get("occluded")),
                r.x,
                r.y,
                r.x2(),
                r.y2(),
                escape(get("z_order"))
            );
            let children: Vec<_> = b
                .attributes
                .iter()
                .filter(|(k, _)| !ELEMENT_ATTRIBUTES.contains(k))
                .collect();
            if children.is_empty() {
                s.push_str("/>\n");
                continue;
            }
            s.push_str(">\n");
            for (k, v) in children {
                let _ = writeln!(
                    s,
                    "      <attribute name=\"{}\">{}</attribute>",
                    escape(k),
                    escape(v.to_text().as_str())
                );
            }
            s.push_str("    </box>\n");
        }
        s.push_str("  </image>\n");
    }
    s.push_str("</annotations>\n");
    write_file(&target, s.as_bytes(), force)?;
    Ok(ExportReport {
        files_written: 1,
        images: dataset.images.len(),
        boxes,
    })
}
