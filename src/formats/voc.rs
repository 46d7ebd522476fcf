//! Pascal VOC XML: one `<annotation>` file per image.
//!
//! Coordinates: `xmin ymin xmax ymax` are read as pixel coordinates of the box corners, so
//! `x = xmin` and `w = xmax - xmin` (what labelImg, CVAT, Roboflow and labelme write; the original
//! VOC's 1-based convention is not shifted). The export writes the same corners with Rust's
//! shortest round-trip float formatting (`60`, `107.36900369003689`), so `x`, `y` and integer
//! coordinates come back exactly and `w`, `h` within one rounding of `x + w` (about 1e-13 px for
//! images of a few thousand pixels).
//!
//! Loupe writes one extension element, `<loupe_id>` inside `<object>`, so its annotation ids
//! survive a round trip; other readers ignore it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use quick_xml::Reader;
use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::Event;
use rayon::prelude::*;
use uuid::Uuid;

use super::{
    CLASS_LIST_FILES, ExportReport, FormatError, Parsed, Report, accept_box, find_image_with_stem,
    line_column, read_class_list, read_text, relative_slash_path, write_file,
};
use crate::imaging::{has_image_extension, probe};
use crate::limits::MAX_NESTING_DEPTH;
use crate::model::{BBox, BoxFlags, Dataset, DatasetBox, DatasetImage};

/// One `<object>` as written, before validation.
#[derive(Debug, Default)]
struct ObjectIn {
    /// Where `<object>` starts, for error locations: `line L, column C`.
    location: String,
    name: Option<String>,
    truncated: bool,
    difficult: bool,
    has_bndbox: bool,
    xmin: Option<f64>,
    ymin: Option<f64>,
    xmax: Option<f64>,
    ymax: Option<f64>,
    loupe_id: Option<String>,
}

/// One VOC file as written, before validation.
#[derive(Debug, Default)]
struct DocIn {
    filename: Option<String>,
    path: Option<String>,
    width: Option<f64>,
    height: Option<f64>,
    objects: Vec<ObjectIn>,
}

pub(super) fn xml_error(
    path: &Path,
    text: &str,
    offset: usize,
    reason: impl Into<String>,
) -> FormatError {
    let (line, column) = line_column(text.as_bytes(), offset);
    FormatError::Xml {
        path: path.to_path_buf(),
        line,
        column,
        reason: reason.into(),
    }
}

fn parse_flag(value: &str) -> bool {
    let v = value.trim();
    v.eq_ignore_ascii_case("true")
        || v.eq_ignore_ascii_case("yes")
        || v.parse::<f64>().is_ok_and(|n| n != 0.0)
}

/// Turns increasing byte offsets into 1-based line and column without rescanning the text.
#[derive(Default)]
pub(super) struct LineTracker {
    offset: usize,
    line: usize,
    line_start: usize,
}

impl LineTracker {
    pub(super) fn locate(&mut self, text: &[u8], offset: usize) -> (usize, usize) {
        if offset < self.offset {
            *self = LineTracker::default();
        }
        let end = offset.min(text.len());
        for (i, &b) in text.iter().enumerate().take(end).skip(self.offset) {
            if b == b'\n' {
                self.line += 1;
                self.line_start = i + 1;
            }
        }
        self.offset = end;
        (self.line + 1, end - self.line_start + 1)
    }
}

/// Parses one VOC file with an event reader, so every error has a line and column.
fn parse_doc(path: &Path, text: &str) -> Result<DocIn, FormatError> {
    let mut reader = Reader::from_str(text);
    let mut doc = DocIn::default();
    let mut stack: Vec<String> = Vec::new();
    let mut value = String::new();
    let mut seen_root = false;
    let mut leaf_offset = 0usize;
    let mut lines = LineTracker::default();
    loop {
        let offset = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = reader.read_event().map_err(|e| {
            let at = usize::try_from(reader.error_position()).unwrap_or(offset);
            xml_error(path, text, at, e.to_string())
        })?;
        let (start, end) = match &event {
            Event::Start(e) => (
                Some(String::from_utf8_lossy(e.local_name().as_ref()).into_owned()),
                false,
            ),
            Event::Empty(e) => (
                Some(String::from_utf8_lossy(e.local_name().as_ref()).into_owned()),
                true,
            ),
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
        if let Some(name) = start {
            if stack.is_empty() {
                if seen_root {
                    return Err(xml_error(path, text, offset, "more than one root element"));
                }
                if name != "annotation" {
                    return Err(FormatError::Unsupported {
                        path: path.to_path_buf(),
                        reason: format!(
                            "the root element is <{name}>, not <annotation>: not a Pascal VOC file"
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
            leaf_offset = offset;
            match stack.as_slice() {
                [_, o] if o == "object" => {
                    let (line, column) = lines.locate(text.as_bytes(), offset);
                    doc.objects.push(ObjectIn {
                        location: format!("line {line}, column {column} (<object>)"),
                        ..ObjectIn::default()
                    });
                }
                [_, o, b] if o == "object" && b == "bndbox" => {
                    if let Some(obj) = doc.objects.last_mut() {
                        obj.has_bndbox = true;
                    }
                }
                _ => {}
            }
        }
        if end {
            store_leaf(path, text, leaf_offset, &stack, value.trim(), &mut doc)?;
            stack.pop();
            value.clear();
        }
    }
    Ok(doc)
}

/// Stores the text of a closing element at `stack` into `doc`.
fn store_leaf(
    path: &Path,
    text: &str,
    offset: usize,
    stack: &[String],
    value: &str,
    doc: &mut DocIn,
) -> Result<(), FormatError> {
    let number = |what: &str| -> Result<Option<f64>, FormatError> {
        if value.is_empty() {
            return Ok(None);
        }
        match value.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(xml_error(
                path,
                text,
                offset,
                format!("<{what}> is not a number: `{value}`"),
            )),
        }
    };
    let names: Vec<&str> = stack.iter().map(String::as_str).collect();
    match names.as_slice() {
        ["annotation", "filename"] => doc.filename = Some(value.to_owned()),
        ["annotation", "path"] => doc.path = Some(value.to_owned()),
        ["annotation", "size", "width"] => doc.width = number("width")?,
        ["annotation", "size", "height"] => doc.height = number("height")?,
        ["annotation", "object", field] => {
            let Some(obj) = doc.objects.last_mut() else {
                return Ok(());
            };
            match *field {
                "name" => obj.name = Some(value.to_owned()),
                "truncated" => obj.truncated = parse_flag(value),
                "difficult" => obj.difficult = parse_flag(value),
                "loupe_id" => obj.loupe_id = Some(value.to_owned()),
                _ => {}
            }
        }
        ["annotation", "object", "bndbox", corner] => {
            let v = number(corner)?;
            let Some(obj) = doc.objects.last_mut() else {
                return Ok(());
            };
            match *corner {
                "xmin" => obj.xmin = v,
                "ymin" => obj.ymin = v,
                "xmax" => obj.xmax = v,
                "ymax" => obj.ymax = v,
                _ => {}
            }
        }
        _ => {}
    }
    Ok(())
}

/// The image an XML file describes: its name relative to `base`, and its path when it exists.
///
/// Tries `<filename>` then the last part of `<path>` in `base` and beside the XML, then any image
/// whose stem matches `<filename>` (labelImg writes it without an extension) or the XML's stem.
fn resolve_image(base: &Path, xml: &Path, doc: &DocIn) -> (String, Option<PathBuf>) {
    let xml_dir = xml.parent().unwrap_or(Path::new("."));
    let filename = doc
        .filename
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let path_name = doc
        .path
        .as_deref()
        .and_then(|p| p.rsplit(['/', '\\']).next())
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let dirs = [base, xml_dir];
    for name in [filename, path_name].into_iter().flatten() {
        for dir in dirs {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return (relative_slash_path(base, &candidate), Some(candidate));
            }
        }
    }
    let filename_stem = filename.map(|f| {
        if has_image_extension(Path::new(f)) {
            f.rsplit_once('.').map_or(f, |(stem, _)| stem)
        } else {
            f
        }
    });
    let xml_stem = xml.file_stem().and_then(|s| s.to_str());
    for stem in [filename_stem, xml_stem].into_iter().flatten() {
        for dir in dirs {
            if let Some(found) = find_image_with_stem(dir, stem) {
                return (relative_slash_path(base, &found), Some(found));
            }
        }
    }
    let name = match (filename, path_name) {
        (Some(f), Some(p))
            if !has_image_extension(Path::new(f)) && has_image_extension(Path::new(p)) =>
        {
            p.to_owned()
        }
        (Some(f), _) => f.to_owned(),
        (None, Some(p)) => p.to_owned(),
        (None, None) => format!("{}.jpg", xml_stem.unwrap_or_default()),
    };
    (name.replace('\\', "/"), None)
}

fn is_annotations_dir(dir: &Path) -> bool {
    dir.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.eq_ignore_ascii_case("annotations"))
}

/// Where images are looked for by default: `JPEGImages/` (or `images/`) of the dataset root, else
/// the folder of the XML files.
fn default_images_dir(ann_root: &Path) -> PathBuf {
    let dataset_root = if is_annotations_dir(ann_root) {
        ann_root.parent().unwrap_or(ann_root)
    } else {
        ann_root
    };
    ["JPEGImages", "images", "Images"]
        .iter()
        .map(|d| dataset_root.join(d))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| ann_root.to_path_buf())
}

/// A class list beside the XML files (or beside their `Annotations/` folder).
fn find_class_file(ann_root: &Path) -> Option<PathBuf> {
    let mut dirs = vec![ann_root];
    if is_annotations_dir(ann_root)
        && let Some(parent) = ann_root.parent()
    {
        dirs.push(parent);
    }
    dirs.into_iter()
        .flat_map(|d| CLASS_LIST_FILES.iter().map(move |f| d.join(f)))
        .find(|p| p.is_file())
}

/// Every `.xml` under `dir`, sorted by path.
fn xml_files(dir: &Path) -> Result<Vec<PathBuf>, FormatError> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            FormatError::io(&path, e.into())
        })?;
        let is_xml = entry
            .path()
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("xml"));
        if is_xml && entry.file_type().is_file() {
            files.push(entry.into_path());
        }
    }
    Ok(files)
}

/// One XML file read and its image located.
struct Loaded {
    xml: PathBuf,
    doc: DocIn,
    file_name: String,
    /// The header's size when the XML gives none.
    probed: Option<Result<(u32, u32), String>>,
}

fn size_from(
    path: &Path,
    w: Option<f64>,
    h: Option<f64>,
) -> Result<Option<(u32, u32)>, FormatError> {
    match (w, h) {
        (Some(w), Some(h)) if w < 0.0 || h < 0.0 => Err(FormatError::NegativeSize {
            path: path.to_path_buf(),
            record: "<size>".to_owned(),
            width: w,
            height: h,
        }),
        (Some(w), Some(h))
            if w > 0.0 && h > 0.0 && w <= f64::from(u32::MAX) && h <= f64::from(u32::MAX) =>
        {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(Some((w.round() as u32, h.round() as u32)))
        }
        _ => Ok(None),
    }
}

fn load(base: &Path, xml: &Path) -> Result<Loaded, FormatError> {
    let text = read_text(xml)?;
    let doc = parse_doc(xml, &text)?;
    let (file_name, image_path) = resolve_image(base, xml, &doc);
    let probed = match (size_from(xml, doc.width, doc.height)?, &image_path) {
        (None, Some(image)) => Some(
            probe(image)
                .map(|i| (i.width, i.height))
                .map_err(|e| e.to_string()),
        ),
        _ => None,
    };
    Ok(Loaded {
        xml: xml.to_path_buf(),
        doc,
        file_name,
        probed,
    })
}

/// Imports one VOC XML file, or every `.xml` under a folder (recursively).
pub(super) fn import(path: &Path, images_dir: Option<&Path>) -> Result<Parsed, FormatError> {
    let meta = std::fs::metadata(path).map_err(|e| FormatError::io(path, e))?;
    let (ann_root, files) = if meta.is_dir() {
        (path.to_path_buf(), xml_files(path)?)
    } else {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        (dir, vec![path.to_path_buf()])
    };
    let class_file = find_class_file(&ann_root);
    if files.is_empty() && class_file.is_none() {
        // Not even a class list: most likely the wrong folder.
        return Err(FormatError::Unsupported {
            path: path.to_path_buf(),
            reason: "no .xml files (and no classes.txt or labels.txt) found".to_owned(),
        });
    }
    let base = images_dir.map_or_else(|| default_images_dir(&ann_root), Path::to_path_buf);

    let mut classes = Vec::new();
    let mut class_of: HashMap<String, usize> = HashMap::new();
    if let Some(file) = &class_file {
        for name in read_class_list(file)? {
            let index = classes.len();
            class_of.entry(name.clone()).or_insert(index);
            classes.push(name);
        }
    }

    // Collected in file order before looking for errors, so the error reported is always the
    // first file's, whatever the thread timing.
    let loaded: Vec<Result<Loaded, FormatError>> =
        files.par_iter().map(|xml| load(&base, xml)).collect();
    let loaded: Vec<Loaded> = loaded.into_iter().collect::<Result<_, _>>()?;

    let mut report = Report::default();
    let mut images = Vec::with_capacity(loaded.len());
    for item in loaded {
        let xml = &item.xml;
        let (width, height) = match (
            size_from(xml, item.doc.width, item.doc.height)?,
            item.probed,
        ) {
            (Some(size), _) => size,
            (None, Some(Ok(size))) => size,
            (None, Some(Err(reason))) => {
                report.warn(
                    "unreadable_image",
                    || xml.display().to_string(),
                    || format!("the file has no <size> and its image cannot be read: {reason}"),
                );
                (0, 0)
            }
            (None, None) => {
                report.warn("missing_size", || xml.display().to_string(), || {
                    format!(
                        "the file has no <size> and its image `{}` was not found; boxes are not clipped",
                        item.file_name
                    )
                });
                (0, 0)
            }
        };
        let mut boxes = Vec::with_capacity(item.doc.objects.len());
        for obj in item.doc.objects {
            let record = || obj.location.clone();
            let missing = |field| FormatError::MissingField {
                path: xml.clone(),
                record: record(),
                field,
            };
            let name = obj
                .name
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| missing("name"))?;
            if !obj.has_bndbox {
                return Err(missing("bndbox"));
            }
            let (Some(xmin), Some(ymin), Some(xmax), Some(ymax)) =
                (obj.xmin, obj.ymin, obj.xmax, obj.ymax)
            else {
                let field = match (obj.xmin, obj.ymin, obj.xmax) {
                    (None, _, _) => "bndbox/xmin",
                    (_, None, _) => "bndbox/ymin",
                    (_, _, None) => "bndbox/xmax",
                    _ => "bndbox/ymax",
                };
                return Err(missing(field));
            };
            let id = match &obj.loupe_id {
                Some(s) => Some(Uuid::parse_str(s).map_err(|e| {
                    FormatError::invalid(
                        xml,
                        record(),
                        format!("<loupe_id> `{s}` is not a UUID: {e}"),
                    )
                })?),
                None => None,
            };
            let class = if let Some(&c) = class_of.get(name) {
                c
            } else {
                if let Some(file) = &class_file {
                    report.warn(
                        "unknown_class",
                        || format!("{}: {}", xml.display(), record()),
                        || {
                            format!(
                                "class `{name}` is not in {}; added at the end",
                                file.display()
                            )
                        },
                    );
                }
                classes.push(name.to_owned());
                class_of.insert(name.to_owned(), classes.len() - 1);
                classes.len() - 1
            };
            let bbox = BBox::new(xmin, ymin, xmax - xmin, ymax - ymin);
            let Some(bbox) = accept_box(&mut report, bbox, width, height, || {
                format!("{}: {}", xml.display(), record())
            }) else {
                continue;
            };
            boxes.push(DatasetBox {
                class,
                bbox,
                flags: BoxFlags {
                    iscrowd: false,
                    truncated: obj.truncated,
                    difficult: obj.difficult,
                },
                score: None,
                id,
                attributes: crate::model::Attributes::new(),
            });
        }
        images.push(DatasetImage {
            file_name: item.file_name,
            width,
            height,
            external_id: None,
            boxes,
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

/// Writes the VOC layout datumaro's `voc_detection` reads: `Annotations/NAME.xml` per image,
/// `ImageSets/Main/<split>.txt` (the names, without extension), `labelmap.txt` (datumaro's
/// `name:color:parts:actions`, so classes outside VOC's twenty survive) and, unless the images
/// mode is none, `JPEGImages/NAME`. `<filename>` is the image's name in `JPEGImages/`.
pub(super) fn export(
    dataset: &Dataset,
    out: &Path,
    settings: &super::ExportSettings,
) -> Result<super::ExportOutcome, FormatError> {
    // Validate everything before writing anything.
    for name in &dataset.classes {
        if name.contains(['\n', '\r', ':'])
            || name.trim() != name
            || name.is_empty()
            || name.starts_with('#')
        {
            return Err(FormatError::export(
                out,
                format!(
                    "class name {name:?} cannot be written to labelmap.txt (one `name:color:parts:actions` line per class)"
                ),
            ));
        }
    }
    let mut boxes = 0;
    for img in &dataset.images {
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
        boxes += img.boxes.len();
    }
    let plan = super::layout::plan(dataset, out, settings)?;
    let mut outcome = plan.outcome();

    let mut labelmap = String::from("# label:color_rgb:parts:actions\n");
    for name in &dataset.classes {
        labelmap.push_str(name);
        labelmap.push_str(":::\n");
    }
    write_file(
        &out.join("labelmap.txt"),
        labelmap.as_bytes(),
        settings.force,
    )?;
    let mut files_written = 1;
    for (split, name) in plan.splits.iter().enumerate() {
        let mut list = String::new();
        for planned in plan.in_split(split) {
            list.push_str(planned.stem());
            list.push('\n');
        }
        write_file(
            &out.join("ImageSets")
                .join("Main")
                .join(format!("{name}.txt")),
            list.as_bytes(),
            settings.force,
        )?;
        files_written += 1;
    }
    std::fs::create_dir_all(out.join("Annotations"))
        .map_err(|e| FormatError::io(&out.join("Annotations"), e))?;
    let mut placer = super::layout::Placer::new(settings.force);
    for planned in &plan.images {
        let xml = voc_xml(planned.img, &planned.name, &dataset.classes);
        write_file(
            &out.join("Annotations")
                .join(format!("{}.xml", planned.stem())),
            xml.as_bytes(),
            settings.force,
        )?;
        files_written += 1;
        if let Some(source) = &planned.source {
            placer.place(
                settings.images,
                source,
                &out.join("JPEGImages").join(&planned.name),
            )?;
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

/// The VOC XML of one image.
fn voc_xml(img: &DatasetImage, file_name: &str, classes: &[String]) -> String {
    let mut s = String::with_capacity(512 + 256 * img.boxes.len());
    let folder = "JPEGImages";
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "<annotation>\n\t<folder>{folder}</folder>\n\t<filename>{}</filename>\n\t<source>\n\t\t<database>Loupe</database>\n\t</source>\n\t<size>\n\t\t<width>{}</width>\n\t\t<height>{}</height>\n\t\t<depth>3</depth>\n\t</size>\n\t<segmented>0</segmented>\n",
        escape(file_name),
        img.width,
        img.height
    );
    for b in &img.boxes {
        let name = classes.get(b.class).map_or("", String::as_str);
        let r = &b.bbox;
        let _ = write!(
            s,
            "\t<object>\n\t\t<name>{}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>{}</truncated>\n\t\t<difficult>{}</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{}</xmin>\n\t\t\t<ymin>{}</ymin>\n\t\t\t<xmax>{}</xmax>\n\t\t\t<ymax>{}</ymax>\n\t\t</bndbox>\n",
            escape(name),
            u8::from(b.flags.truncated),
            u8::from(b.flags.difficult),
            r.x,
            r.y,
            r.x2(),
            r.y2()
        );
        if let Some(id) = b.id {
            let _ = writeln!(s, "\t\t<loupe_id>{}</loupe_id>", id.hyphenated());
        }
        s.push_str("\t</object>\n");
    }
    s.push_str("</annotation>\n");
    s
}
