//! Image metadata for slicing: importing `key=value` pairs from CSV or JSON, listing the keys and
//! values (the slices), and tagging images by path.
//!
//! Accepted files:
//! - CSV (or TSV) with a header whose first column is `path`, `file`, `file_name` or `image`,
//!   then one column per key; empty cells are skipped;
//! - JSON `{ "path": { "key": "value", … }, … }`, where `null` removes a key;
//! - JSON `[ { "path" | "file_name" | "file": "…", "key": "value", … }, … ]`.
//!
//! Images are found by their path in the project, else by a unique path suffix (a bare file
//! name works when only one image has it). Rows naming unknown images are reported as warnings
//! and skipped; a malformed file is refused whole, and everything else is written in one
//! transaction.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use super::{Result, ReviewError};
use crate::model::Warning;
use crate::store::{MetaWrite, Project};

/// What a metadata import did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MetaImportReport {
    /// Records in the file.
    pub records: usize,
    /// Images that got at least one value.
    pub images: usize,
    pub values_set: usize,
    pub values_removed: usize,
    pub keys: Vec<String>,
    pub warnings: Vec<Warning>,
}

/// One value of a metadata key and how many images have it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SliceValue {
    pub value: String,
    pub images: usize,
}

/// A metadata key and its values: the slices `eval` and `triage` can use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SliceKey {
    pub key: String,
    pub values: Vec<SliceValue>,
}

/// One record of a metadata file: where it is, which image, and the values (`None` removes).
struct Record {
    location: String,
    image: String,
    values: Vec<(String, Option<String>)>,
}

const PATH_COLUMNS: [&str; 4] = ["path", "file", "file_name", "image"];

/// Splits CSV text into records of fields (RFC 4180: quotes, doubled quotes, newlines inside
/// quotes, CRLF). Returns each record with the line it starts on.
fn parse_csv(text: &str, delimiter: char, path: &Path) -> Result<Vec<(usize, Vec<String>)>> {
    let mut out = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut line = 1;
    let mut start_line = 1;
    let mut chars = text.chars().peekable();
    let mut field_started = false;
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
            '"' if field.is_empty() && !field_started => {
                in_quotes = true;
                field_started = true;
            }
            c if c == delimiter => {
                record.push(std::mem::take(&mut field));
                field_started = false;
            }
            '\r' => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                field_started = false;
                if !(record.len() == 1 && record[0].is_empty()) {
                    out.push((start_line, std::mem::take(&mut record)));
                }
                record.clear();
                line += 1;
                start_line = line;
            }
            _ => {
                field.push(c);
                field_started = true;
            }
        }
    }
    if in_quotes {
        return Err(ReviewError::Parse {
            path: path.to_path_buf(),
            line: start_line,
            message: "a quoted field is never closed".into(),
        });
    }
    if field_started || !field.is_empty() || !record.is_empty() {
        record.push(field);
        out.push((start_line, record));
    }
    Ok(out)
}

fn csv_records(text: &str, delimiter: char, path: &Path) -> Result<Vec<Record>> {
    let rows = parse_csv(text.trim_start_matches('\u{feff}'), delimiter, path)?;
    let Some((_, header)) = rows.first() else {
        return Ok(Vec::new());
    };
    let first = header
        .first()
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_default();
    if !PATH_COLUMNS.contains(&first.as_str()) {
        return Err(ReviewError::Parse {
            path: path.to_path_buf(),
            line: 1,
            message: format!(
                "the first column is {first:?}; it must be the image path: one of {}",
                PATH_COLUMNS.join(", ")
            ),
        });
    }
    let keys: Vec<String> = header[1..].iter().map(|k| k.trim().to_owned()).collect();
    if let Some(i) = keys.iter().position(String::is_empty) {
        return Err(ReviewError::Parse {
            path: path.to_path_buf(),
            line: 1,
            message: format!("column {} has no name", i + 2),
        });
    }
    let mut out = Vec::with_capacity(rows.len());
    for (line, row) in &rows[1..] {
        if row.len() != header.len() {
            return Err(ReviewError::Parse {
                path: path.to_path_buf(),
                line: *line,
                message: format!("{} fields, but the header has {}", row.len(), header.len()),
            });
        }
        out.push(Record {
            location: format!("{}:{line}", path.display()),
            image: row[0].trim().to_owned(),
            values: keys
                .iter()
                .zip(&row[1..])
                .filter(|(_, v)| !v.trim().is_empty())
                .map(|(k, v)| (k.clone(), Some(v.trim().to_owned())))
                .collect(),
        });
    }
    Ok(out)
}

fn json_value(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn json_records(text: &str, path: &Path) -> Result<Vec<Record>> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| ReviewError::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        message: e.to_string(),
    })?;
    let bad = |message: String| ReviewError::Parse {
        path: path.to_path_buf(),
        line: 1,
        message,
    };
    match v {
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(image, values)| {
                let serde_json::Value::Object(values) = values else {
                    return Err(bad(format!(
                        "the value of {image:?} is not an object of key: value"
                    )));
                };
                Ok(Record {
                    location: format!("{}: {image}", path.display()),
                    image,
                    values: values
                        .iter()
                        .map(|(k, v)| (k.clone(), json_value(v)))
                        .collect(),
                })
            })
            .collect(),
        serde_json::Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let serde_json::Value::Object(mut obj) = item else {
                    return Err(bad(format!("item {i} is not an object")));
                };
                let key = PATH_COLUMNS
                    .iter()
                    .find(|k| obj.get(**k).is_some_and(serde_json::Value::is_string))
                    .ok_or_else(|| bad(format!("item {i} has no \"path\" or \"file_name\"")))?;
                let image = obj
                    .remove(*key)
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                Ok(Record {
                    location: format!("{}: [{i}]", path.display()),
                    image,
                    values: obj
                        .iter()
                        .map(|(k, v)| (k.clone(), json_value(v)))
                        .collect(),
                })
            })
            .collect(),
        _ => Err(bad(
            "expected an object keyed by image path, or a list of objects".into(),
        )),
    }
}

/// Finds images by path, or by a unique suffix of their path.
struct ImageIndex {
    by_path: HashMap<String, i64>,
    by_name: HashMap<String, Vec<(String, i64)>>,
}

impl ImageIndex {
    fn new(p: &Project) -> Result<Self> {
        let mut by_path = HashMap::new();
        let mut by_name: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        for (id, path) in p.image_paths()? {
            let name = path.rsplit('/').next().unwrap_or(&path).to_owned();
            by_name.entry(name).or_default().push((path.clone(), id));
            by_path.insert(path, id);
        }
        // In row order (the map's is arbitrary), so an ambiguity names the same first candidate
        // every time.
        for v in by_name.values_mut() {
            v.sort_by_key(|(_, id)| *id);
        }
        Ok(Self { by_path, by_name })
    }

    fn find(&self, given: &str) -> std::result::Result<i64, String> {
        let given = given.replace('\\', "/");
        let given = given.trim_start_matches("./");
        if let Some(&id) = self.by_path.get(given) {
            return Ok(id);
        }
        let name = given.rsplit('/').next().unwrap_or(given);
        let candidates: Vec<&(String, i64)> = self
            .by_name
            .get(name)
            .map(|v| {
                v.iter()
                    .filter(|(p, _)| p.ends_with(&format!("/{given}")) || p == given)
                    .collect()
            })
            .unwrap_or_default();
        match candidates.as_slice() {
            [(_, id)] => Ok(*id),
            [] => Err(format!("no image of the project has the path {given:?}")),
            many => Err(format!(
                "{given:?} matches {} images ({}, …); give a longer path",
                many.len(),
                many[0].0
            )),
        }
    }
}

/// Imports image metadata from a CSV/TSV or JSON file (see the module docs) in one transaction.
pub fn import_meta(p: &mut Project, file: &Path) -> Result<MetaImportReport> {
    let text = std::fs::read_to_string(file).map_err(|error| ReviewError::Io {
        path: file.to_path_buf(),
        error,
    })?;
    let ext = file
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let first = text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .chars()
        .next();
    let records = match (ext.as_str(), first) {
        ("json", _) | (_, Some('{' | '[')) => json_records(&text, file)?,
        ("tsv", _) => csv_records(&text, '\t', file)?,
        _ => csv_records(&text, ',', file)?,
    };
    let index = ImageIndex::new(p)?;
    let mut report = MetaImportReport {
        records: records.len(),
        ..MetaImportReport::default()
    };
    let mut writes: Vec<MetaWrite> = Vec::new();
    let mut images = std::collections::HashSet::new();
    let mut keys = std::collections::BTreeSet::new();
    for r in &records {
        match index.find(&r.image) {
            Ok(id) => {
                for (k, v) in &r.values {
                    if k.trim().is_empty() {
                        continue;
                    }
                    keys.insert(k.clone());
                    if v.is_some() {
                        images.insert(id);
                    }
                    writes.push(MetaWrite {
                        image: id,
                        key: k.clone(),
                        value: v.clone(),
                    });
                }
            }
            Err(message) => report.warnings.push(Warning {
                kind: "unknown_image".into(),
                location: r.location.clone(),
                message: format!("{message}; record skipped"),
            }),
        }
    }
    (report.values_set, report.values_removed) = p.write_meta(&writes)?;
    report.images = images.len();
    report.keys = keys.into_iter().collect();
    Ok(report)
}

/// Every metadata key with its values and image counts, keys and values sorted.
pub fn meta_slices(p: &Project) -> Result<Vec<SliceKey>> {
    let mut keys: BTreeMap<String, Vec<SliceValue>> = BTreeMap::new();
    for (k, value, n) in p.meta_value_counts()? {
        keys.entry(k).or_default().push(SliceValue {
            value,
            images: usize::try_from(n).unwrap_or(usize::MAX),
        });
    }
    Ok(keys
        .into_iter()
        .map(|(key, values)| SliceKey { key, values })
        .collect())
}

/// Tags an image given by path (or id), or removes the tag. Returns the image's tags after.
pub fn tag_image(p: &mut Project, image: &str, tag: &str, on: bool) -> Result<Vec<String>> {
    let tag = tag.trim();
    if tag.is_empty() {
        return Err(ReviewError::Invalid("a tag cannot be empty".into()));
    }
    let row = match p.image_row_by_path_or_id(image) {
        Ok(row) => row,
        Err(crate::store::StoreError::NotFound { .. }) => ImageIndex::new(p)?
            .find(image)
            .map_err(ReviewError::Invalid)?,
        Err(e) => return Err(e.into()),
    };
    let id = p.image_uuid_of_row(row)?;
    p.set_tag(id, tag, on)?;
    Ok(p.tags(id)?)
}

/// Sets `key=value` on an image (by id), or removes the key when `value` is empty. Keys are
/// what slices and filters name (`weather=rain`), so they must be non-empty and hold no `=`.
/// Returns the image's metadata after the change.
pub fn set_meta(
    p: &mut Project,
    image: uuid::Uuid,
    key: &str,
    value: &str,
) -> Result<Vec<(String, String)>> {
    let key = key.trim();
    if key.is_empty() {
        return Err(ReviewError::Invalid(
            "a metadata key cannot be empty".into(),
        ));
    }
    if key.contains('=') || key.starts_with("tag:") {
        return Err(ReviewError::Invalid(format!(
            "{key:?}: a metadata key cannot contain '=' or start with 'tag:' (filters read KEY=VALUE and tag:NAME)"
        )));
    }
    p.set_image_meta(image, key, value.trim())?;
    Ok(p.image_meta(image)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_handles_quotes_crlf_and_embedded_newlines() {
        let text = "path,weather,note\r\na.png,rain,\"said \"\"hi\"\", then left\"\r\n\"b,c.png\",sun,\"two\nlines\"\n";
        let rows = parse_csv(text, ',', Path::new("x.csv")).expect("parse");
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[1],
            (
                2,
                vec![
                    "a.png".into(),
                    "rain".into(),
                    "said \"hi\", then left".into()
                ]
            )
        );
        assert_eq!(
            rows[2],
            (3, vec!["b,c.png".into(), "sun".into(), "two\nlines".into()])
        );
        let err = parse_csv("path\n\"open", ',', Path::new("x.csv")).expect_err("unclosed");
        assert!(err.to_string().contains("x.csv:2"), "{err}");
    }

    #[test]
    fn csv_header_and_row_shapes_are_checked() {
        let err = csv_records("name,weather\na.png,rain\n", ',', Path::new("m.csv"))
            .err()
            .expect("bad header");
        assert!(err.to_string().contains("m.csv:1"), "{err}");
        let err = csv_records("path,weather\na.png,rain,extra\n", ',', Path::new("m.csv"))
            .err()
            .expect("bad row");
        assert!(
            err.to_string().contains("m.csv:2") && err.to_string().contains("3 fields"),
            "{err}"
        );
        let recs =
            csv_records("file,weather,time\na.png,,night\n", ',', Path::new("m.csv")).expect("ok");
        assert_eq!(
            recs[0].values,
            vec![("time".to_owned(), Some("night".to_owned()))]
        );
    }

    #[test]
    fn set_meta_sets_replaces_and_removes_and_refuses_bad_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = Project::create(&dir.path().join("p.loupe")).expect("create");
        {
            let mut bulk = p.bulk().expect("bulk");
            bulk.upsert_image(&crate::store::ImageInput {
                path: "a.png".into(),
                hash: None,
                width: 10,
                height: 10,
                bytes: 1,
                external_id: None,
            })
            .expect("image");
            bulk.commit().expect("commit");
        }
        let id = p.image_by_path("a.png").expect("query").expect("image").id;
        assert_eq!(
            set_meta(&mut p, id, " weather ", "rain").expect("set"),
            vec![("weather".to_owned(), "rain".to_owned())]
        );
        assert_eq!(
            set_meta(&mut p, id, "weather", "sun").expect("replace"),
            vec![("weather".to_owned(), "sun".to_owned())]
        );
        assert!(
            set_meta(&mut p, id, "weather", "")
                .expect("remove")
                .is_empty()
        );
        for bad in ["", "  ", "a=b", "tag:x"] {
            let err = set_meta(&mut p, id, bad, "v").expect_err("refused");
            assert!(err.to_string().contains("key"), "{bad:?}: {err}");
        }
    }
}
