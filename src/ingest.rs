//! Bringing files into a project: `add` (scan folders, hash in parallel, read headers) and the
//! glue that writes a parsed annotation file (`formats`) into the store in one transaction.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use crate::imaging;
use crate::model::{Dataset, ReviewState, Warning};
use crate::store::{ExternalKind, ImageInput, Project, StoreError, Upsert};

/// Reports progress of long work: `(done, total)`. Implemented by the CLI's progress bar and by
/// the app's job panel.
pub trait Progress: Sync {
    fn set_total(&self, total: u64);
    fn inc(&self, n: u64);
    fn message(&self, msg: &str);
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl Progress for NoProgress {
    fn set_total(&self, _: u64) {}
    fn inc(&self, _: u64) {}
    fn message(&self, _: &str) {}
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {reason}")]
    Path { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
}

/// What `add` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AddReport {
    pub scanned: usize,
    pub added: usize,
    pub unchanged: usize,
    pub moved: usize,
    pub attached: usize,
    pub updated: usize,
    /// Files whose content is already in the project under another path.
    pub duplicates: usize,
    /// Files that could not be read, with the reason.
    pub failed: Vec<(String, String)>,
}

/// A path relative to `root` with `/` separators (`..` where the file is outside the root).
pub fn relative_path(root: &Path, path: &Path) -> String {
    let abs = dunce::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let root = dunce::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let a: Vec<Component<'_>> = abs.components().collect();
    let r: Vec<Component<'_>> = root.components().collect();
    let common = a.iter().zip(&r).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = Vec::new();
    for _ in common..r.len() {
        parts.push("..".into());
    }
    for c in &a[common..] {
        parts.push(c.as_os_str().to_string_lossy().into_owned());
    }
    parts.join("/")
}

/// Lists image files under the given files or folders (recursively), sorted, deduplicated.
pub fn scan(paths: &[PathBuf]) -> Result<Vec<PathBuf>, IngestError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_file() {
            out.push(p.clone());
            continue;
        }
        if !p.is_dir() {
            return Err(IngestError::Path {
                path: p.clone(),
                reason: "no such file or folder".into(),
            });
        }
        for entry in walkdir::WalkDir::new(p)
            .follow_links(true)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| IngestError::Path {
                path: e.path().map_or_else(|| p.clone(), Path::to_path_buf),
                reason: e.to_string(),
            })?;
            // DICOM series are often stored without an extension (IM0001, …): those are
            // recognised by their "DICM" marker.
            if entry.file_type().is_file()
                && (imaging::has_image_extension(entry.path())
                    || (entry.path().extension().is_none()
                        && imaging::dicom::is_dicom(entry.path())))
            {
                out.push(entry.into_path());
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

struct Probed {
    rel: String,
    result: Result<(String, u64, imaging::ImageInfo), imaging::ImageError>,
}

fn probe_all(root: &Path, files: &[PathBuf]) -> Vec<Probed> {
    files
        .par_iter()
        .map(|f| Probed {
            rel: relative_path(root, f),
            result: imaging::hash_file(f)
                .and_then(|(hash, bytes)| imaging::probe(f).map(|info| (hash, bytes, info))),
        })
        .collect()
}

/// Files per transaction in `add`: each chunk is committed whole, so an interrupted `add` keeps
/// every finished chunk and a rerun picks up the rest.
const ADD_CHUNK: usize = 256;

/// Adds image files and folders to the project. Idempotent; recognises moved files by hash;
/// unreadable or corrupt files are reported and skipped.
pub fn add(
    project: &mut Project,
    paths: &[PathBuf],
    progress: &dyn Progress,
) -> Result<AddReport, IngestError> {
    let files = scan(paths)?;
    let mut report = AddReport {
        scanned: files.len(),
        ..AddReport::default()
    };
    progress.set_total(files.len() as u64);
    let root = project.root().to_path_buf();
    for chunk in files.chunks(ADD_CHUNK) {
        let probed = probe_all(&root, chunk);
        let mut bulk = project.bulk()?;
        for p in &probed {
            match &p.result {
                Ok((hash, bytes, info)) => {
                    let (_, what) = bulk.upsert_image(&ImageInput {
                        path: p.rel.clone(),
                        hash: Some(hash.clone()),
                        width: info.width,
                        height: info.height,
                        bytes: *bytes,
                        external_id: None,
                    })?;
                    match what {
                        Upsert::Added => report.added += 1,
                        Upsert::Unchanged => report.unchanged += 1,
                        Upsert::Moved => report.moved += 1,
                        Upsert::Attached => report.attached += 1,
                        Upsert::Updated => report.updated += 1,
                        Upsert::Duplicate => report.duplicates += 1,
                    }
                }
                Err(e) => report.failed.push((p.rel.clone(), e.to_string())),
            }
        }
        bulk.commit()?;
        progress.inc(chunk.len() as u64);
    }
    Ok(report)
}

/// How imported boxes enter the project.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Review state of imported labels: approved ground truth unless the user says otherwise.
    pub state: ReviewState,
    /// For model results: the run the boxes are proposals of.
    pub run: Option<Uuid>,
    /// Model predictions carried in the same file as the labels (Label Studio `predictions`):
    /// each dataset becomes proposals of its run (made by the caller), written in the same
    /// transaction as the labels, so the file is imported whole or not at all.
    pub predictions: Vec<(Uuid, Dataset)>,
    /// For a COCO file: its image and category ids and box areas, recorded so results files
    /// map onto the project and evaluation uses the file's areas.
    pub coco_ids: Option<CocoSource>,
}

/// A COCO file's ids and areas, and the file they come from (see [`ImportOptions::coco_ids`]).
#[derive(Clone, Debug, Default)]
pub struct CocoSource {
    /// blake3 of the file's bytes: the same file imported again is the same source.
    pub hash: String,
    /// The file as the user named it, for messages.
    pub path: String,
    pub ids: crate::formats::CocoIds,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            state: ReviewState::Approved,
            run: None,
            predictions: Vec::new(),
            coco_ids: None,
        }
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImportReport {
    pub images: usize,
    pub images_missing: usize,
    pub boxes: usize,
    pub classes: usize,
    pub skipped: usize,
    /// Model proposals written from predictions carried with the labels.
    pub proposals: usize,
    pub warnings: Vec<Warning>,
}

impl ImportReport {
    /// Warnings grouped by kind with counts, for a short summary.
    pub fn warning_counts(&self) -> Vec<(String, usize)> {
        let mut m: HashMap<&str, usize> = HashMap::new();
        for w in &self.warnings {
            *m.entry(w.kind.as_str()).or_default() += 1;
        }
        let mut v: Vec<(String, usize)> = m.into_iter().map(|(k, n)| (k.to_owned(), n)).collect();
        v.sort();
        v
    }
}

/// Finds each image of `dataset` on disk and reads its hash and header, in parallel.
fn locate_files(
    root: &Path,
    images_dir: &Path,
    images_rel: &str,
    dataset: &Dataset,
) -> Vec<Option<LocatedFile>> {
    dataset
        .images
        .par_iter()
        .map(|img| {
            if img.file_name.is_empty() {
                return None;
            }
            let abs = images_dir.join(&img.file_name);
            if abs.is_file() {
                let rel = relative_path(root, &abs);
                let probed = imaging::hash_file(&abs)
                    .and_then(|(h, b)| imaging::probe(&abs).map(|i| (h, b, i)))
                    .ok();
                Some((rel, probed))
            } else {
                let rel = if images_rel.is_empty() {
                    img.file_name.clone()
                } else {
                    format!("{images_rel}/{}", img.file_name)
                };
                Some((normalise(&rel), None))
            }
        })
        .collect()
}

/// Writes a parsed dataset into the project in ONE transaction: all of it or nothing.
///
/// Images are matched by path (relative to the project root), by content hash when the file is on
/// disk, or for model results without file names by the COCO id they were imported with.
/// Images whose files are missing become placeholders that a later `add` attaches.
/// `opts.predictions` are written in the same transaction, as proposals of their runs.
pub fn import_dataset(
    project: &mut Project,
    dataset: &Dataset,
    images_dir: &Path,
    mut warnings: Vec<Warning>,
    skipped: usize,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<ImportReport, IngestError> {
    let root = project.root().to_path_buf();
    let started = std::time::Instant::now();
    let predicted: usize = opts.predictions.iter().map(|(_, d)| d.images.len()).sum();
    progress.set_total((dataset.images.len() + predicted) as u64);
    // Where the images folder is, relative to the root, once (canonicalising per image is slow).
    let images_rel = relative_path(&root, images_dir);
    // Read the files that exist (hash, header) in parallel, before the transaction.
    let files = locate_files(&root, images_dir, &images_rel, dataset);
    // Predictions name the labels' images again: those are not read twice.
    let known: HashMap<&str, &Option<LocatedFile>> = dataset
        .images
        .iter()
        .map(|i| i.file_name.as_str())
        .zip(&files)
        .collect();
    let prediction_files: Vec<Vec<Option<LocatedFile>>> = opts
        .predictions
        .iter()
        .map(|(_, d)| {
            let unknown = Dataset {
                classes: Vec::new(),
                images: d
                    .images
                    .iter()
                    .filter(|i| !known.contains_key(i.file_name.as_str()))
                    .cloned()
                    .collect(),
            };
            let mut fresh = locate_files(&root, images_dir, &images_rel, &unknown).into_iter();
            d.images
                .iter()
                .map(|i| match known.get(i.file_name.as_str()) {
                    Some(f) => (*f).clone(),
                    None => fresh.next().flatten(),
                })
                .collect()
        })
        .collect();
    let mut report = ImportReport {
        skipped,
        ..ImportReport::default()
    };
    let attributed = dataset
        .images
        .iter()
        .flat_map(|i| &i.boxes)
        .filter(|b| !b.attributes.is_empty())
        .count();
    if attributed > 0 {
        let mut names: Vec<&str> = dataset
            .images
            .iter()
            .flat_map(|i| &i.boxes)
            .flat_map(|b| b.attributes.iter().map(|(k, _)| k.as_str()))
            .collect();
        names.sort_unstable();
        names.dedup();
        warnings.push(Warning {
            kind: "attributes_not_stored".into(),
            location: images_dir.display().to_string(),
            message: format!(
                "{attributed} box(es) carry attributes ({}) that the project does not store; the boxes are imported without them",
                names.join(", ")
            ),
        });
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis(),
        "import: files checked"
    );
    let mut bulk = project.bulk()?;
    let run_row = match opts.run {
        Some(run) => Some(bulk.run_row(run)?),
        None => None,
    };
    report.classes = write_dataset(
        &mut bulk,
        dataset,
        &files,
        run_row,
        opts.state,
        opts.coco_ids.as_ref(),
        &mut report,
        &mut warnings,
        progress,
    )?;
    let labels_boxes = report.boxes;
    for ((run, predictions), files) in opts.predictions.iter().zip(&prediction_files) {
        let row = bulk.run_row(*run)?;
        let before = (report.images, report.images_missing, warnings.len());
        write_dataset(
            &mut bulk,
            predictions,
            files,
            Some(row),
            ReviewState::Proposed,
            None,
            &mut report,
            &mut warnings,
            progress,
        )?;
        // The labels' images are counted (and reported missing) once.
        (report.images, report.images_missing) = (before.0, before.1);
        let mut index = 0;
        warnings.retain(|w| {
            index += 1;
            index <= before.2 || w.kind != "missing_image"
        });
    }
    report.proposals = report.boxes - labels_boxes;
    report.boxes = labels_boxes;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis(),
        "import: rows written"
    );
    bulk.commit()?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis(),
        "import: committed"
    );
    report.warnings = warnings;
    Ok(report)
}

/// Writes one dataset's images and boxes inside the import transaction; returns its class count.
#[allow(clippy::too_many_arguments)] // The pieces of one transaction, passed down once.
fn write_dataset(
    bulk: &mut crate::store::Bulk<'_>,
    dataset: &Dataset,
    files: &[Option<LocatedFile>],
    run_row: Option<i64>,
    state: ReviewState,
    coco: Option<&CocoSource>,
    report: &mut ImportReport,
    warnings: &mut Vec<Warning>,
    progress: &dyn Progress,
) -> Result<usize, IngestError> {
    // Classes in the file's order, so a YOLO index or COCO order is kept.
    let mut class_rows = Vec::with_capacity(dataset.classes.len());
    for name in &dataset.classes {
        class_rows.push(bulk.class(name)?);
    }
    let coco_source = match coco {
        Some(c) => {
            let source = bulk.id_source(&c.hash, &c.path, "coco")?;
            for (&class_row, &ext) in class_rows.iter().zip(&c.ids.category_ids) {
                bulk.record_external_id(source, ExternalKind::Class, ext, class_row)?;
            }
            Some((source, &c.ids.boxes))
        }
        None => None,
    };
    for (index, (img, file)) in dataset.images.iter().zip(files).enumerate() {
        let image_row = match file {
            Some((rel, Some((hash, bytes, info)))) => {
                bulk.upsert_image(&ImageInput {
                    path: rel.clone(),
                    hash: Some(hash.clone()),
                    width: info.width,
                    height: info.height,
                    bytes: *bytes,
                    external_id: img.external_id,
                })?
                .0
            }
            Some((rel, None)) => {
                report.images_missing += 1;
                if img.width == 0 || img.height == 0 {
                    warnings.push(Warning {
                        kind: "missing_image".into(),
                        location: rel.clone(),
                        message: "image file not found and its size is unknown".into(),
                    });
                }
                bulk.upsert_image(&ImageInput {
                    path: rel.clone(),
                    hash: None,
                    width: img.width,
                    height: img.height,
                    bytes: 0,
                    external_id: img.external_id,
                })?
                .0
            }
            None => {
                // Results files name images only by their COCO id.
                let Some(ext) = img.external_id else {
                    return Err(IngestError::Invalid(
                        "an image has neither a file name nor an id".into(),
                    ));
                };
                match bulk.image_by_external_id(ext)? {
                    Some(row) => row,
                    None => {
                        warnings.push(Warning {
                            kind: "unknown_image_id".into(),
                            location: format!("image_id {ext}"),
                            message: format!(
                                "no image of the project was imported with id {ext}; {} result(s) skipped (use --gt to map ids to file names)",
                                img.boxes.len()
                            ),
                        });
                        report.skipped += img.boxes.len();
                        continue;
                    }
                }
            }
        };
        report.images += 1;
        if let (Some((source, _)), Some(ext)) = (coco_source, img.external_id) {
            bulk.record_external_id(source, ExternalKind::Image, ext, image_row)?;
        }
        let coco_boxes = coco_source.and_then(|(_, boxes)| boxes.get(index));
        for (k, b) in img.boxes.iter().enumerate() {
            let id = b.id.unwrap_or_else(Uuid::now_v7);
            if b.id.is_some() && bulk.annotation_exists(id)? {
                warnings.push(Warning {
                    kind: "already_present".into(),
                    location: id.to_string(),
                    message: "annotation already in the project; kept the project's".into(),
                });
                continue;
            }
            let Some(&class_row) = class_rows.get(b.class) else {
                return Err(IngestError::Invalid(format!(
                    "box refers to class index {} but the file has {} classes",
                    b.class,
                    class_rows.len()
                )));
            };
            let (run, state) = match (run_row, b.score) {
                (Some(r), score) => (Some((r, score.unwrap_or(1.0))), ReviewState::Proposed),
                (None, _) => (None, state),
            };
            bulk.add_annotation(id, image_row, class_row, b.bbox, run, state, b.flags)?;
            if let Some(c) = coco_boxes.and_then(|a| a.get(k)) {
                bulk.record_coco_box(id, c.id, c.area, b.bbox)?;
            }
            report.boxes += 1;
        }
        if let Some(r) = run_row {
            bulk.mark_run_image(r, image_row, img.boxes.len())?;
        }
        progress.inc(1);
    }
    Ok(class_rows.len())
}

/// An image file of an import: its path relative to the root and, when it is on disk and
/// readable, its hash, size and header.
type LocatedFile = (String, Option<(String, u64, imaging::ImageInfo)>);

fn normalise(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." if out.last().is_some_and(|l| *l != "..") => {
                out.pop();
            }
            _ => out.push(part),
        }
    }
    out.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_use_slashes_and_dotdot() {
        let root = Path::new("/a/b");
        assert_eq!(relative_path(root, Path::new("/a/b/c/d.png")), "c/d.png");
        assert_eq!(relative_path(root, Path::new("/a/x.png")), "../x.png");
        assert_eq!(normalise("./a/../b//c.png"), "b/c.png");
    }
}
