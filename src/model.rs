//! Domain types shared by every part of Loupe: boxes, classes, images, annotations, people.
//!
//! Geometry is always in image pixels (after EXIF orientation), origin top-left, `f64`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An axis-aligned box in image pixels: top-left corner plus width and height.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct BBox {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl BBox {
    pub const fn new(x: f64, y: f64, w: f64, h: f64) -> Self {
        Self { x, y, w, h }
    }

    /// Builds a box from two opposite corners given in any order.
    pub fn from_corners(x0: f64, y0: f64, x1: f64, y1: f64) -> Self {
        Self {
            x: x0.min(x1),
            y: y0.min(y1),
            w: (x1 - x0).abs(),
            h: (y1 - y0).abs(),
        }
    }

    pub fn x2(&self) -> f64 {
        self.x + self.w
    }

    pub fn y2(&self) -> f64 {
        self.y + self.h
    }

    pub fn area(&self) -> f64 {
        self.w.max(0.0) * self.h.max(0.0)
    }

    pub fn center(&self) -> (f64, f64) {
        (self.x + self.w / 2.0, self.y + self.h / 2.0)
    }

    /// Intersection over union; 0 when either box is empty.
    pub fn iou(&self, other: &BBox) -> f64 {
        let ix = (self.x2().min(other.x2()) - self.x.max(other.x)).max(0.0);
        let iy = (self.y2().min(other.y2()) - self.y.max(other.y)).max(0.0);
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }

    /// The part of the box inside a `width` x `height` image.
    pub fn clipped(&self, width: f64, height: f64) -> BBox {
        let x0 = self.x.clamp(0.0, width);
        let y0 = self.y.clamp(0.0, height);
        let x1 = self.x2().clamp(0.0, width);
        let y1 = self.y2().clamp(0.0, height);
        BBox::from_corners(x0, y0, x1, y1)
    }

    /// True when the box lies entirely inside the image (with a small tolerance for rounding).
    pub fn is_inside(&self, width: f64, height: f64) -> bool {
        const EPS: f64 = 1e-6;
        self.x >= -EPS && self.y >= -EPS && self.x2() <= width + EPS && self.y2() <= height + EPS
    }

    pub fn is_finite(&self) -> bool {
        self.x.is_finite() && self.y.is_finite() && self.w.is_finite() && self.h.is_finite()
    }
}

/// Where a box came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// Drawn or imported by a person.
    Human,
    /// Proposed by a model run, with its confidence.
    Model { run: Uuid, score: f32 },
}

impl Source {
    pub fn run(&self) -> Option<Uuid> {
        match self {
            Source::Human => None,
            Source::Model { run, .. } => Some(*run),
        }
    }

    pub fn score(&self) -> Option<f32> {
        match self {
            Source::Human => None,
            Source::Model { score, .. } => Some(*score),
        }
    }
}

/// The review state of one box. See `review` for the legal transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    /// A model proposal nobody has looked at yet.
    Proposed,
    /// A proposal an annotator accepted as it was.
    Accepted,
    /// A proposal an annotator edited (its lineage stays in the revision log).
    Corrected,
    /// A proposal an annotator rejected.
    Rejected,
    /// A box drawn by a person, waiting for review.
    Submitted,
    /// Approved by a reviewer or lead: ground truth.
    Approved,
    /// Sent back by a reviewer or lead with a reason.
    Returned,
}

impl ReviewState {
    pub const ALL: [ReviewState; 7] = [
        ReviewState::Proposed,
        ReviewState::Accepted,
        ReviewState::Corrected,
        ReviewState::Rejected,
        ReviewState::Submitted,
        ReviewState::Approved,
        ReviewState::Returned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewState::Proposed => "proposed",
            ReviewState::Accepted => "accepted",
            ReviewState::Corrected => "corrected",
            ReviewState::Rejected => "rejected",
            ReviewState::Submitted => "submitted",
            ReviewState::Approved => "approved",
            ReviewState::Returned => "returned",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Boxes in these states count as labels (exported, evaluated against).
    pub fn is_label(self) -> bool {
        !matches!(self, ReviewState::Proposed | ReviewState::Rejected)
    }
}

/// Per-box flags carried by the interchange formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BoxFlags {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub iscrowd: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub difficult: bool,
}

impl BoxFlags {
    pub fn bits(self) -> u8 {
        u8::from(self.iscrowd) | (u8::from(self.truncated) << 1) | (u8::from(self.difficult) << 2)
    }

    pub fn from_bits(b: u8) -> Self {
        Self {
            iscrowd: b & 1 != 0,
            truncated: b & 2 != 0,
            difficult: b & 4 != 0,
        }
    }
}

/// The value of one box attribute: what CVAT, COCO, labelme and Open Images write.
///
/// Serialised untagged (`true`, `2.4`, `"red"`), as CVAT's COCO export writes
/// `"attributes": {"occluded": false, …}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    Bool(bool),
    Number(serde_json::Number),
    Text(String),
}

impl AttributeValue {
    /// The value a text-only format (CVAT XML, a CSV) wrote: `true`/`false` become booleans, a
    /// number written in its shortest form (`3`, `-1`, `2.4`) a number, and anything else
    /// (`0003`, `1.50`, `red`) stays text. `to_text` gives back exactly the text read, so a
    /// text format round-trips unchanged.
    pub fn from_text(text: &str) -> Self {
        match text {
            "true" => return Self::Bool(true),
            "false" => return Self::Bool(false),
            _ => {}
        }
        if let Ok(n) = text.parse::<serde_json::Number>()
            && n.to_string() == text
        {
            return Self::Number(n);
        }
        Self::Text(text.to_owned())
    }

    /// A value as a JSON format (COCO, labelme) wrote it: `null` is no value; an array or an
    /// object, which no attribute of the formats Loupe reads holds, is kept as its JSON text.
    pub fn from_json(v: &serde_json::Value) -> Option<Self> {
        use serde_json::Value;
        Some(match v {
            Value::Null => return None,
            Value::Bool(b) => Self::Bool(*b),
            Value::Number(n) => Self::Number(n.clone()),
            Value::String(s) => Self::Text(s.clone()),
            v => Self::Text(v.to_string()),
        })
    }

    /// The value as a text format writes it (the inverse of `from_text`).
    pub fn to_text(&self) -> String {
        match self {
            Self::Bool(b) => b.to_string(),
            Self::Number(n) => n.to_string(),
            Self::Text(t) => t.clone(),
        }
    }

    /// An integer value (a number without a fraction, or text holding one).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Number(n) => n.as_i64(),
            Self::Text(t) => t.trim().parse().ok(),
            Self::Bool(_) => None,
        }
    }
}

impl From<bool> for AttributeValue {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

impl From<i64> for AttributeValue {
    fn from(n: i64) -> Self {
        Self::Number(n.into())
    }
}

impl From<&str> for AttributeValue {
    fn from(t: &str) -> Self {
        Self::Text(t.to_owned())
    }
}

impl std::fmt::Display for AttributeValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Number(n) => write!(f, "{n}"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

/// A box's named attributes (CVAT's `<attribute>`s, a video track's `track` id, Open Images'
/// `IsOccluded`, labelme's `flags`, COCO's `attributes`), in the order the source wrote them.
///
/// Names are unique: `insert` replaces a value in place. Serialised as a JSON object in that
/// order; read from any JSON object (see `AttributeValue::from_json`). The fields of `BoxFlags` (crowd, truncated, difficult) stay flags, not attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Attributes(Vec<(String, AttributeValue)>);

impl Attributes {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Names and values in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &AttributeValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn get(&self, name: &str) -> Option<&AttributeValue> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Sets `name`, keeping its place when it is already there.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<AttributeValue>) {
        let name = name.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// The attributes as the store keeps them: a JSON object, `None` when there are none (so
    /// boxes without attributes are stored exactly as before attributes existed).
    pub fn to_json(&self) -> Option<String> {
        (!self.is_empty())
            .then(|| serde_json::to_string(self).expect("attributes always serialize"))
    }

    /// Reads what `to_json` wrote (`None` or an empty text: no attributes).
    pub fn from_json(json: Option<&str>) -> Result<Self, serde_json::Error> {
        match json {
            None => Ok(Self::default()),
            Some(s) if s.trim().is_empty() => Ok(Self::default()),
            Some(s) => serde_json::from_str(s),
        }
    }
}

impl<K: Into<String>, V: Into<AttributeValue>> FromIterator<(K, V)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut a = Self::default();
        for (k, v) in iter {
            a.insert(k, v);
        }
        a
    }
}

impl Serialize for Attributes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> serde::de::Visitor<'de> for InOrder {
            type Value = Attributes;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of attribute names and values")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Attributes, A::Error> {
                let mut out = Attributes::default();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    if let Some(v) = AttributeValue::from_json(&v) {
                        out.insert(k, v);
                    }
                }
                Ok(out)
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

/// A label class. `id` is stable for the life of the project; `name` is what formats use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Class {
    pub id: Uuid,
    pub name: String,
    /// `#rrggbb`.
    pub color: String,
    pub order: i64,
}

/// One image of the project.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: Uuid,
    /// blake3 of the file's bytes, hex. `None` while the file is missing and was never seen.
    pub hash: Option<String>,
    /// Path relative to the project root, with `/` separators.
    pub path: String,
    /// Width and height as displayed, after EXIF orientation.
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    /// True when the file is not on disk (known from an import only).
    pub missing: bool,
    /// The id the image had in the COCO file it was imported from, if any.
    pub external_id: Option<i64>,
}

/// The full value of an annotation at one point in its history. Revisions store exactly this.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnnotationValue {
    pub image: Uuid,
    pub class: Uuid,
    pub bbox: BBox,
    pub source: Source,
    pub state: ReviewState,
    #[serde(default)]
    pub flags: BoxFlags,
    /// Tombstone: the box was deleted. Deleted boxes keep their history.
    #[serde(default)]
    pub deleted: bool,
    /// Named attributes other tools gave the box (see `Attributes`); part of every revision.
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
}

/// An annotation as currently stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    /// UUIDv7.
    pub id: Uuid,
    #[serde(flatten)]
    pub value: AnnotationValue,
}

/// What a person may do in a project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A batch worker's key (`loupe worker`): it may only create proposals for model runs.
    /// Lowest of all, so every `role >= …` check refuses it what people may do.
    Model,
    Annotator,
    Reviewer,
    Lead,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Model => "model",
            Role::Annotator => "annotator",
            Role::Reviewer => "reviewer",
            Role::Lead => "lead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "model" => Some(Role::Model),
            "annotator" => Some(Role::Annotator),
            "reviewer" => Some(Role::Reviewer),
            "lead" => Some(Role::Lead),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
}

/// Where an image sits in a stack (a DICOM series or a multi-frame file), as an export carries
/// it beside the image (COCO `images[].extra`) and an import restores it, so frames exported as
/// PNG files come back as one stack in their order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FrameRef {
    /// The stack's key: `series:UID` for the slices of a DICOM series, `file:PATH` for the
    /// frames of a multi-frame file; empty for a DICOM image in no stack.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stack: String,
    /// The image's index in its stack, from 0.
    pub frame: u32,
    /// The slice position along the series' normal, in mm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice_mm: Option<f64>,
    /// The file the image came from, relative to its project (without `#frame=`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// The DICOM instance the image is (or is a frame of).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dicom: Option<DicomRef>,
}

/// A DICOM instance, named as DICOM names it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DicomRef {
    #[serde(
        rename = "SeriesInstanceUID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub series_instance_uid: Option<String>,
    #[serde(
        rename = "SOPInstanceUID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sop_instance_uid: Option<String>,
    /// The frame's number in a multi-frame instance, from 1 as DICOM counts frames.
    #[serde(
        rename = "frame_number",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub frame_number: Option<u32>,
}

/// A format-neutral dataset: what importers produce and exporters consume.
///
/// Classes are referred to by index into `classes`; names are the identity across formats.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    pub classes: Vec<String>,
    pub images: Vec<DatasetImage>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DatasetImage {
    /// Path relative to the images folder (for COCO, `file_name`), `/` separators.
    pub file_name: String,
    /// 0 when the format does not say (YOLO); the importer then reads the image header.
    pub width: u32,
    pub height: u32,
    /// The numeric image id of a COCO file.
    pub external_id: Option<i64>,
    pub boxes: Vec<DatasetBox>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DatasetBox {
    /// Index into `Dataset::classes`.
    pub class: usize,
    pub bbox: BBox,
    pub flags: BoxFlags,
    /// Set for model results (COCO results format).
    pub score: Option<f32>,
    /// Loupe's own annotation id, when the source carries one.
    pub id: Option<Uuid>,
    /// Named attributes of the box as the source wrote them, in source order (CVAT's
    /// `<attribute>`s, `occluded`, `z_order`, a video track's `track` id; labelme `group_id`;
    /// Open Images `IsOccluded`, …). Stored with the box; formats that can hold them write them
    /// back.
    pub attributes: Attributes,
}

/// A problem that an import or export recovered from, with where it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// Short machine-readable kind, e.g. `clipped_box`, `zero_area_box`, `skipped_annotation`.
    pub kind: String,
    /// The file, line or record it concerns.
    pub location: String,
    pub message: String,
}

/// An entry an import file lists (an image, a label file, a line of a split list, a split
/// folder) that resolved neither to a file on disk nor to an image the project already holds.
///
/// Imports report these first and refuse outright when nothing they list resolves (see
/// `ingest::import_dataset`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unresolved {
    /// The entry as the file lists it: a path, a file name, a split, or an image id.
    pub entry: String,
    /// Where it is listed: the file, and the line or record where known.
    pub location: String,
    /// Why it did not resolve: where it was looked for, and what became of it.
    pub reason: String,
    /// Boxes the entry carries that were not imported because of it.
    pub boxes: usize,
}

/// Default palette for new classes (Tableau 20, readable on dark and light images).
pub const PALETTE: [&str; 20] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_identical_and_disjoint_boxes() {
        let a = BBox::new(0.0, 0.0, 10.0, 10.0);
        assert!((a.iou(&a) - 1.0).abs() < 1e-12);
        assert_eq!(a.iou(&BBox::new(20.0, 20.0, 5.0, 5.0)), 0.0);
        let b = BBox::new(5.0, 0.0, 10.0, 10.0);
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-12);
    }

    #[test]
    fn clipping_keeps_the_inside_part() {
        let b = BBox::new(-5.0, 90.0, 20.0, 20.0).clipped(100.0, 100.0);
        assert_eq!(b, BBox::new(0.0, 90.0, 15.0, 10.0));
    }

    #[test]
    fn attribute_text_round_trips_exactly() {
        for text in [
            "true", "false", "0", "1", "-1", "2.4", "-5.6", "0003", "1.50", "1.0", "1e5", "red",
            "", " 1", "True",
        ] {
            assert_eq!(AttributeValue::from_text(text).to_text(), text, "{text:?}");
        }
        assert_eq!(
            AttributeValue::from_text("true"),
            AttributeValue::Bool(true)
        );
        assert_eq!(AttributeValue::from_text("-1"), AttributeValue::from(-1));
        assert_eq!(
            AttributeValue::from_text("0003"),
            AttributeValue::from("0003")
        );
    }

    #[test]
    fn attributes_keep_their_order_through_json() {
        let a: Attributes = [
            ("z", AttributeValue::from(true)),
            ("a", AttributeValue::from(-1)),
            ("m", AttributeValue::from("0003")),
        ]
        .into_iter()
        .collect();
        let json = a.to_json().expect("not empty");
        assert_eq!(json, r#"{"z":true,"a":-1,"m":"0003"}"#);
        assert_eq!(Attributes::from_json(Some(&json)).expect("reads"), a);
        assert_eq!(Attributes::new().to_json(), None);
        assert_eq!(
            Attributes::from_json(None).expect("none"),
            Attributes::new()
        );
    }

    #[test]
    fn a_value_without_attributes_serializes_as_before() {
        let v = AnnotationValue {
            image: Uuid::nil(),
            class: Uuid::nil(),
            bbox: BBox::new(1.0, 2.0, 3.0, 4.0),
            source: Source::Human,
            state: ReviewState::Submitted,
            flags: BoxFlags::default(),
            deleted: false,
            attributes: Attributes::new(),
        };
        let json = serde_json::to_string(&v).expect("serializes");
        assert!(!json.contains("attributes"), "{json}");
        let back: AnnotationValue = serde_json::from_str(&json).expect("reads");
        assert_eq!(back, v);
    }

    #[test]
    fn flags_round_trip_through_bits() {
        for b in 0..8u8 {
            assert_eq!(BoxFlags::from_bits(b).bits(), b);
        }
    }
}
