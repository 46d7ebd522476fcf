//! Bringing files into a project: `add` (scan folders, hash in parallel, read headers) and the
//! glue that writes a parsed annotation file (`formats`) into the store in one transaction.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use crate::formats::{self, AmbiguousName, KnownFile, KnownImages, Parsed};
use crate::imaging;
use crate::model::{BBox, Dataset, ImageRecord, ReviewState, Unresolved, Warning};
use crate::store::{
    ExternalKind, FRAME_KEY, ImageInput, NewRun, Project, SLICE_KEY, STACK_KEY, StoreError, Upsert,
};

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
    /// Nothing the file lists could be found: refused, nothing stored.
    #[error(
        "none of the {listed} entries it lists resolved to an image on disk or in the project; nothing was imported:{details}\nhint: pass --images DIR (the folder holding the images), `loupe add` the images first, or --allow-missing to keep them as missing placeholders"
    )]
    NothingResolved { listed: usize, details: String },
    /// The file lists boxes but none could be imported: refused, nothing stored.
    #[error("it lists {listed} boxes but none could be imported{details}")]
    NoBoxes { listed: usize, details: String },
    /// Boxes of the file are already in the project and the user did not say what to do.
    #[error(
        "{duplicates} of its {listed} boxes are already in the project (same image, class and box{ids}): it, or part of it, was imported before; nothing was imported\nhint: pass --skip-existing to import only the boxes the project does not hold, or --replace to make each listed image's labels those of the file"
    )]
    AlreadyImported {
        duplicates: usize,
        listed: usize,
        ids: &'static str,
    },
    /// Every box of the file is already in the project (`--skip-existing`).
    #[error(
        "all {listed} of its boxes are already in the project (same image, class and box, or same id): nothing new to import"
    )]
    NothingNew { listed: usize },
    /// The annotation file itself was refused (unreadable, malformed).
    #[error(transparent)]
    Format(#[from] formats::FormatError),
    /// A listed file name matches several images of the project equally well.
    #[error("`{entry}`: {ambiguity} in the project; name the folder in the file or pass --images")]
    Ambiguous {
        entry: String,
        ambiguity: AmbiguousName,
    },
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
    /// Stacks found or grown: DICOM series (slices grouped by SeriesInstanceUID) and
    /// multi-frame files (one image per frame).
    pub stacks: Vec<crate::stacks::StackReport>,
    /// Slices left out of their series (conflicting geometry), with the reason.
    pub stack_conflicts: Vec<crate::stacks::StackConflict>,
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

/// What [`scan`] found: the image files, and the entries it skipped with the reason (dangling
/// symbolic links), each once.
#[derive(Debug, Default)]
pub struct Scanned {
    pub files: Vec<PathBuf>,
    pub skipped: Vec<(PathBuf, String)>,
}

/// A symbolic link at `path` whose target does not exist: its target, for the message.
fn dangling_target(path: &Path) -> Option<PathBuf> {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    (is_link && std::fs::metadata(path).is_err())
        .then(|| std::fs::read_link(path).unwrap_or_default())
}

/// Lists image files under the given files or folders (recursively), sorted, deduplicated. A
/// dangling symbolic link in a folder is skipped and listed in [`Scanned::skipped`] instead of
/// stopping the scan; any other error stops it.
pub fn scan(paths: &[PathBuf]) -> Result<Scanned, IngestError> {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
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
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    let path = e.path().map_or_else(|| p.clone(), Path::to_path_buf);
                    if let Some(target) = dangling_target(&path) {
                        let reason = format!(
                            "{}: a dangling symbolic link (to {}): skipped",
                            path.display(),
                            target.display()
                        );
                        skipped.push((path, reason));
                        continue;
                    }
                    return Err(IngestError::Path {
                        path,
                        reason: e.to_string(),
                    });
                }
            };
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
    skipped.sort();
    skipped.dedup();
    Ok(Scanned {
        files: out,
        skipped,
    })
}

struct Probed {
    rel: String,
    result: Result<(String, u64, imaging::ImageInfo), imaging::ImageError>,
    /// Frames of a multi-frame file (1 for most files), with each frame's size.
    frames: Vec<imaging::ImageInfo>,
    /// Where a DICOM slice sits in its series.
    slice: Option<imaging::dicom::SliceInfo>,
}

fn probe_all(root: &Path, files: &[PathBuf]) -> Vec<Probed> {
    files
        .par_iter()
        .map(|f| {
            // Decoded, not only probed: a file whose pixels are corrupt is refused now.
            let mut result = imaging::hash_file(f)
                .and_then(|(hash, bytes)| imaging::verify(f).map(|info| (hash, bytes, info)));
            let mut frames = Vec::new();
            let mut slice = None;
            if let Ok((_, _, info)) = &result {
                let is_dicom = imaging::dicom::is_dicom(f);
                if is_dicom {
                    slice = imaging::dicom::slice_info(f).ok();
                }
                match imaging::frame_count(f) {
                    Ok(n) if n > 1 => {
                        let text = f.to_string_lossy();
                        for i in 0..n {
                            let frame = PathBuf::from(imaging::frame_path(&text, i));
                            match imaging::probe(&frame) {
                                Ok(info) => frames.push(info),
                                Err(e) => {
                                    result = Err(e);
                                    break;
                                }
                            }
                        }
                    }
                    Ok(_) => frames.push(*info),
                    Err(e) => result = Err(e),
                }
            }
            Probed {
                rel: relative_path(root, f),
                result,
                frames,
                slice,
            }
        })
        .collect()
}

/// Files per transaction in `add`: each chunk is committed whole, so an interrupted `add` keeps
/// every finished chunk and a rerun picks up the rest.
const ADD_CHUNK: usize = 256;

/// Adds image files and folders to the project. Idempotent; recognises moved files by hash;
/// unreadable or corrupt files (headers, and pixels: see [`imaging::verify`]) are reported and
/// skipped.
pub fn add(
    project: &mut Project,
    paths: &[PathBuf],
    progress: &dyn Progress,
) -> Result<AddReport, IngestError> {
    let Scanned { files, skipped } = scan(paths)?;
    let root = project.root().to_path_buf();
    let mut report = AddReport {
        scanned: files.len() + skipped.len(),
        failed: skipped
            .into_iter()
            .map(|(path, reason)| (relative_path(&root, &path), reason))
            .collect(),
        ..AddReport::default()
    };
    progress.set_total(files.len() as u64);
    // DICOM slices by series, ordered into stacks once every file is in.
    let mut series: HashMap<String, Vec<crate::stacks::Slice>> = HashMap::new();
    for chunk in files.chunks(ADD_CHUNK) {
        let probed = probe_all(&root, chunk);
        let mut bulk = project.bulk()?;
        for p in &probed {
            match &p.result {
                Ok((hash, bytes, _)) if p.frames.len() > 1 => {
                    add_frames(&mut bulk, p, hash, *bytes, &mut report)?;
                }
                Ok((hash, bytes, info)) => {
                    let (row, what) = bulk.upsert_image(&ImageInput {
                        path: p.rel.clone(),
                        hash: Some(hash.clone()),
                        width: info.width,
                        height: info.height,
                        bytes: *bytes,
                        external_id: None,
                    })?;
                    if let Some(slice) = &p.slice
                        && let Some(uid) = &slice.series
                    {
                        series
                            .entry(uid.clone())
                            .or_default()
                            .push(crate::stacks::Slice {
                                row,
                                path: p.rel.clone(),
                                info: slice.clone(),
                            });
                    }
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
    if !series.is_empty() {
        let mut bulk = project.bulk()?;
        let mut uids: Vec<String> = series.keys().cloned().collect();
        uids.sort();
        for uid in uids {
            let mut slices = series.remove(&uid).unwrap_or_default();
            // Slices added before belong to the series too: the order is over all of them.
            for (row, path) in bulk.images_with_meta(STACK_KEY, &format!("series:{uid}"))? {
                if slices.iter().any(|s| s.row == row) {
                    continue;
                }
                if let Ok(info) = imaging::dicom::slice_info(&root.join(&path)) {
                    slices.push(crate::stacks::Slice { row, path, info });
                }
            }
            if let Some(stack) =
                crate::stacks::write_series(&mut bulk, &uid, slices, &mut report.stack_conflicts)?
            {
                report.stacks.push(stack);
            }
        }
        bulk.commit()?;
    }
    Ok(report)
}

/// Adds each frame of a multi-frame file as an image (`FILE#frame=N`, its hash the file's with
/// the same suffix) and makes them one stack.
fn add_frames(
    bulk: &mut crate::store::Bulk<'_>,
    p: &Probed,
    hash: &str,
    bytes: u64,
    report: &mut AddReport,
) -> Result<(), IngestError> {
    let key = format!("file:{}", p.rel);
    let mut added = false;
    for (i, info) in p.frames.iter().enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        let path = imaging::frame_path(&p.rel, index);
        let suffix = path[p.rel.len()..].to_owned();
        let (row, what) = bulk.upsert_image(&ImageInput {
            path,
            hash: Some(format!("{hash}{suffix}")),
            width: info.width,
            height: info.height,
            bytes,
            external_id: None,
        })?;
        added |= what == Upsert::Added;
        bulk.set_meta(row, STACK_KEY, &key)?;
        bulk.set_meta(row, FRAME_KEY, &i.to_string())?;
    }
    if added {
        report.added += 1;
    } else {
        report.unchanged += 1;
    }
    report.stacks.push(crate::stacks::StackReport {
        key,
        kind: "frames",
        modality: p
            .slice
            .as_ref()
            .map(|s| s.modality.clone())
            .unwrap_or_default(),
        frames: p.frames.len(),
        ordered_by: "frame number",
    });
    Ok(())
}

/// The images a project already holds, indexed to match imported entries against, so that an
/// import attaches its boxes to them instead of adding the same image again or a "missing"
/// placeholder beside it.
///
/// An entry matches, in this order: by its path relative to the project root; by the content
/// hash of its file (when the file is on disk); by file name when exactly one image of the
/// project has it (folders in the listed path break ties, see [`formats::pick_by_name`]). A file
/// name shared by several images that nothing tells apart is an error, not a guess.
#[derive(Debug, Default)]
pub struct ProjectImages {
    root: PathBuf,
    images: Vec<ImageRecord>,
    by_path: HashMap<String, usize>,
    by_hash: HashMap<String, usize>,
    by_name: HashMap<String, Vec<usize>>,
    by_stem: HashMap<String, Vec<usize>>,
}

/// How an imported entry matched an image of the project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    /// The same path relative to the project root.
    Path,
    /// The same file content (blake3).
    Hash,
    /// The only image with that file name.
    Name,
}

impl ProjectImages {
    /// Reads the project's images (one query).
    ///
    /// # Errors
    ///
    /// When the store cannot be read.
    pub fn load(project: &Project) -> Result<Self, IngestError> {
        Ok(Self::new(project.root(), project.all_images()?))
    }

    /// Indexes `images`, whose paths are relative to `root`.
    #[must_use]
    pub fn new(root: &Path, images: Vec<ImageRecord>) -> Self {
        let mut index = Self {
            root: root.to_path_buf(),
            ..Self::default()
        };
        for (i, img) in images.iter().enumerate() {
            index.by_path.insert(img.path.clone(), i);
            if let Some(h) = &img.hash {
                index.by_hash.insert(h.clone(), i);
            }
            let name = file_name_of(&img.path);
            index.by_name.entry(name.to_owned()).or_default().push(i);
            if let Some((stem, _)) = name.rsplit_once('.') {
                index.by_stem.entry(stem.to_owned()).or_default().push(i);
            }
        }
        index.images = images;
        index
    }

    /// Number of images indexed.
    #[must_use]
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// True when the project holds no image.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Matches an imported entry: `rel_path` is where the import would put it (relative to the
    /// project root), `hash` its content hash when its file was read, `listed` the path as the
    /// imported file wrote it (for the file-name step).
    ///
    /// # Errors
    ///
    /// [`AmbiguousName`] when only the file name could match and several images share it.
    pub fn find(
        &self,
        rel_path: &str,
        hash: Option<&str>,
        listed: &str,
    ) -> Result<Option<(&ImageRecord, MatchedBy)>, AmbiguousName> {
        if let Some(&i) = self.by_path.get(rel_path) {
            return Ok(Some((&self.images[i], MatchedBy::Path)));
        }
        if let Some(&i) = hash.and_then(|h| self.by_hash.get(h)) {
            return Ok(Some((&self.images[i], MatchedBy::Hash)));
        }
        Ok(self
            .by_name(listed, false)?
            .map(|img| (img, MatchedBy::Name)))
    }

    /// The one image whose file name is `listed`'s (or, with `any_extension`, whose stem is
    /// `listed`'s stem: a label file `a.txt` names the image `a.jpg`).
    ///
    /// # Errors
    ///
    /// [`AmbiguousName`] when several images share the name and the listed folders do not
    /// single one out.
    pub fn by_name(
        &self,
        listed: &str,
        any_extension: bool,
    ) -> Result<Option<&ImageRecord>, AmbiguousName> {
        let name = file_name_of(listed);
        let rows = if any_extension {
            let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
            self.by_stem.get(stem)
        } else {
            self.by_name.get(name)
        };
        let Some(rows) = rows else {
            return Ok(None);
        };
        let candidates = rows
            .iter()
            .map(|&i| (self.images[i].path.clone(), &self.images[i]))
            .collect();
        formats::pick_by_name(listed, candidates)
    }
}

impl KnownImages for ProjectImages {
    fn find_by_name(
        &self,
        listed: &str,
        any_extension: bool,
    ) -> Result<Option<KnownFile>, AmbiguousName> {
        Ok(self.by_name(listed, any_extension)?.map(|img| KnownFile {
            file: self.root.join(&img.path),
            width: img.width,
            height: img.height,
        }))
    }
}

/// The last component of a `/` or `\` separated path.
fn file_name_of(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// How imported boxes enter the project.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Review state of imported labels: approved ground truth unless the user says otherwise.
    pub state: ReviewState,
    /// For model results: the run the boxes are proposals of.
    pub run: Option<Uuid>,
    /// Accept an import none of whose images is found (`--allow-missing`): they are kept as
    /// missing placeholders that a later `add` attaches. Without it such an import is refused.
    pub allow_missing: bool,
    /// The project's images, when the caller already loaded them (for the format's own
    /// resolution); loaded by [`import_dataset`] otherwise.
    pub known_images: Option<Arc<ProjectImages>>,
    /// Model predictions carried in the same file as the labels (Label Studio `predictions`,
    /// taken out of [`Parsed::predictions`] by the caller, who makes a run for each): each
    /// dataset becomes proposals of its run, written in the same transaction as the labels, so
    /// the file is imported whole or not at all.
    pub predictions: Vec<(Uuid, Dataset)>,
    /// For a COCO file: its image and category ids and box areas, recorded so results files
    /// map onto the project and evaluation uses the file's areas.
    pub coco_ids: Option<CocoSource>,
    /// What to do with boxes the project already holds (see [`Existing`]).
    pub existing: Existing,
}

/// What an import does with a box the project already holds: a label of the same image with the
/// same class and the same box (within [`SAME_BOX_PX`]), or an annotation with the same id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Existing {
    /// Refuse the import, saying how many boxes are already there (the file, or part of it, was
    /// imported before) and what the choices are. Nothing is written.
    #[default]
    Refuse,
    /// Import only the boxes the project does not hold (`--skip-existing`).
    SkipExisting,
    /// The file's labels replace the labels of each image it lists (`--replace`): boxes it
    /// holds too are kept as they are, labels it does not hold are deleted (as revisions, so
    /// history can bring them back), its new boxes are added. Model proposals are untouched.
    Replace,
}

/// Two boxes whose edges all lie within this many pixels of each other are the same box
/// (formats round coordinates: YOLO to 6 decimals of the size, many tools to 2 decimals).
pub const SAME_BOX_PX: f64 = 0.05;

fn same_box(a: BBox, b: BBox) -> bool {
    (a.x - b.x).abs() <= SAME_BOX_PX
        && (a.y - b.y).abs() <= SAME_BOX_PX
        && (a.x2() - b.x2()).abs() <= SAME_BOX_PX
        && (a.y2() - b.y2()).abs() <= SAME_BOX_PX
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
            allow_missing: false,
            known_images: None,
            predictions: Vec::new(),
            coco_ids: None,
            existing: Existing::Refuse,
        }
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImportReport {
    pub images: usize,
    /// Images that matched one the project already held (by path, content or file name).
    pub images_matched: usize,
    pub images_missing: usize,
    pub boxes: usize,
    pub classes: usize,
    pub skipped: usize,
    /// Model proposals written from predictions carried with the labels.
    pub proposals: usize,
    /// How many listed entries did not resolve (the length of `unresolved`).
    pub unresolved_count: usize,
    /// Listed entries that resolved neither to a file nor to an image of the project.
    pub unresolved: Vec<Unresolved>,
    /// Boxes of the file the project already held (same image, class and box, or same id):
    /// not added again.
    pub already_in_project: usize,
    /// Labels removed because the file, imported with `--replace`, does not hold them.
    pub removed: usize,
    /// Images whose file's real size differs from the size the annotation file declares.
    pub size_mismatches: usize,
    /// Images placed in a stack (series or multi-frame file) as the file records (COCO
    /// `images[].extra` written by Loupe), having been in none.
    pub stacked: usize,
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

    /// Boxes of unresolved entries that were not imported.
    #[must_use]
    pub fn unresolved_boxes(&self) -> usize {
        self.unresolved.iter().map(|u| u.boxes).sum()
    }
}

/// Where one dataset image's file is, before the transaction.
enum Located {
    /// On disk: its path relative to the root and, when readable, its hash, size and header.
    File {
        rel: String,
        read: Option<(String, u64, imaging::ImageInfo)>,
    },
    /// Not on disk where the import says: the path it would have.
    Absent { rel: String },
    /// Named only by the COCO id it was imported with (results files without `--gt`).
    ById(i64),
    /// Neither a file name nor an id.
    Nameless,
}

/// What a dataset image becomes in the project.
#[derive(Clone)]
enum Target {
    /// A file on disk: upserted (which matches the project's images by path, then content).
    File {
        rel: String,
        hash: String,
        bytes: u64,
        info: imaging::ImageInfo,
    },
    /// An image the project already holds, matched without its file.
    Known {
        path: String,
    },
    /// Not found anywhere: a missing placeholder at this path.
    Placeholder {
        rel: String,
    },
    ById(i64),
}

/// How many unresolved entries an error names before "… and N more".
const UNRESOLVED_SHOWN: usize = 5;

/// The first few unresolved entries, one per line, for messages.
#[must_use]
pub fn describe_unresolved(unresolved: &[Unresolved]) -> String {
    let mut out = String::new();
    for u in unresolved.iter().take(UNRESOLVED_SHOWN) {
        let at = if u.location.is_empty() {
            String::new()
        } else {
            format!(" ({})", u.location)
        };
        out.push_str(&format!("\n  {}{at}: {}", u.entry, u.reason));
    }
    if unresolved.len() > UNRESOLVED_SHOWN {
        out.push_str(&format!(
            "\n  … and {} more",
            unresolved.len() - UNRESOLVED_SHOWN
        ));
    }
    out
}

/// Writes a parsed dataset into the project in ONE transaction: all of it or nothing.
///
/// Each image the dataset lists is matched to the project's images through [`ProjectImages`]:
/// a file found on disk (under `parsed.images_dir`) by path then content hash; an image not on
/// disk by its would-be path, then by unique file name; results without file names by the COCO
/// id they were imported with.
///
/// What is unresolved, and what happens to it:
/// - an image whose file is found neither on disk nor among the project's images: kept as a
///   missing placeholder (with its boxes, which need no file when the format gives pixels) that
///   a later `add` attaches, and reported;
/// - a results image id no image of the project was imported with: its boxes are skipped;
/// - the entries the format could not resolve itself ([`Parsed::unresolved`]).
///
/// `opts.predictions` are written in the same transaction, as proposals of their runs.
///
/// # Errors
///
/// Besides store errors, the import is refused and nothing is written when:
/// - it lists entries but none resolves (unless `allow_missing` and placeholders were made);
/// - the file lists boxes but none could be imported (all dropped or unresolved);
/// - a file name matches several images of the project equally well.
pub fn import_dataset(
    project: &mut Project,
    parsed: Parsed,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<ImportReport, IngestError> {
    let Parsed {
        dataset,
        mut warnings,
        images_dir,
        skipped,
        predictions: _, // Taken by the caller into `opts.predictions`, with their runs.
        unresolved: mut format_unresolved,
        frames,
    } = parsed;
    let root = project.root().to_path_buf();
    let started = std::time::Instant::now();
    let predicted: usize = opts.predictions.iter().map(|(_, d)| d.images.len()).sum();
    progress.set_total((dataset.images.len() + predicted) as u64);
    let known = match &opts.known_images {
        Some(k) => Arc::clone(k),
        None => Arc::new(ProjectImages::load(project)?),
    };
    // Where the images folder is, relative to the root, once (canonicalising per image is slow).
    let images_rel = relative_path(&root, &images_dir);
    // Read the files that exist (hash, header) in parallel, before the transaction.
    let located: Vec<Located> = dataset
        .images
        .par_iter()
        .map(|img| locate(img, &root, &images_dir, &images_rel))
        .collect();
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis(),
        "import: files checked"
    );
    let mut report = ImportReport {
        skipped,
        ..ImportReport::default()
    };
    let mut unresolved = Vec::new();
    let mut targets = Vec::with_capacity(located.len());
    for (img, loc) in dataset.images.iter().zip(located) {
        targets.push(resolve(img, loc, &known, &images_dir, &mut unresolved)?);
    }
    // Predictions name the labels' images again: those resolve as the labels' did; others
    // (a task with predictions only) resolve the same way, without being reported twice.
    let by_name: HashMap<&str, &Target> = dataset
        .images
        .iter()
        .map(|i| i.file_name.as_str())
        .zip(&targets)
        .collect();
    let mut prediction_targets = Vec::with_capacity(opts.predictions.len());
    for (_, predictions) in &opts.predictions {
        let mut these = Vec::with_capacity(predictions.images.len());
        for img in &predictions.images {
            let target = match by_name.get(img.file_name.as_str()) {
                Some(t) => (*t).clone(),
                None => resolve(
                    img,
                    locate(img, &root, &images_dir, &images_rel),
                    &known,
                    &images_dir,
                    &mut Vec::new(),
                )?,
            };
            these.push(target);
        }
        prediction_targets.push(these);
    }

    let mut bulk = project.bulk()?;
    let run_row = match opts.run {
        Some(run) => Some(bulk.run_row(run)?),
        None => None,
    };
    let mut writing = Writing {
        report: &mut report,
        warnings: &mut warnings,
        unresolved: &mut unresolved,
        already_present: 0,
        progress,
        existing: opts.existing,
        checks: formats::Report::default(),
        created: std::collections::HashSet::new(),
        frames: &frames,
        stacked: 0,
    };
    writing.report.classes = writing.write(
        &mut bulk,
        &dataset,
        targets,
        run_row,
        opts.state,
        opts.coco_ids.as_ref(),
    )?;
    let labels_boxes = writing.report.boxes;
    let labels_images = (writing.report.images, writing.report.images_matched);
    for ((run, predictions), targets) in opts.predictions.iter().zip(prediction_targets) {
        let row = bulk.run_row(*run)?;
        let missing = writing.report.images_missing;
        let before = writing.warnings.len();
        writing.write(
            &mut bulk,
            predictions,
            targets,
            Some(row),
            ReviewState::Proposed,
            None,
        )?;
        // The labels' images are counted (and reported missing) once.
        writing.report.images_missing = missing;
        let mut index = 0;
        writing.warnings.retain(|w| {
            index += 1;
            index <= before || w.kind != "missing_image"
        });
    }
    let already_present = writing.already_present;
    let stacked = writing.stacked;
    let (checked, checks_skipped) = std::mem::take(&mut writing.checks).finish(&images_dir);
    warnings.extend(checked);
    report.skipped += checks_skipped;
    (report.images, report.images_matched) = labels_images;
    report.proposals = report.boxes - labels_boxes;
    report.stacked = stacked;
    report.boxes = labels_boxes;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis(),
        "import: rows written"
    );
    // The format's own unresolved entries come first: they are in listing order.
    let format_unresolved_count = format_unresolved.len();
    format_unresolved.append(&mut unresolved);
    let unresolved = format_unresolved;
    let listed = dataset.images.len() + format_unresolved_count;
    check_existing(&dataset, &report, already_present, opts.existing)?;
    check_resolved(
        &dataset,
        listed,
        &report,
        &unresolved,
        &warnings,
        report.already_in_project + report.removed,
        opts,
    )?;
    bulk.commit()?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis(),
        "import: committed"
    );
    report.warnings = warnings;
    report.unresolved_count = unresolved.len();
    report.unresolved = unresolved;
    Ok(report)
}

/// Decides what one located dataset image becomes: its file, an image the project holds, or a
/// missing placeholder (reported in `unresolved`).
fn resolve(
    img: &crate::model::DatasetImage,
    loc: Located,
    known: &ProjectImages,
    images_dir: &Path,
    unresolved: &mut Vec<Unresolved>,
) -> Result<Target, IngestError> {
    let looked_at = images_dir.join(&img.file_name);
    Ok(match loc {
        Located::File {
            rel,
            read: Some((hash, bytes, info)),
        } => Target::File {
            rel,
            hash,
            bytes,
            info,
        },
        Located::File { rel, read: None } | Located::Absent { rel } => {
            match known.find(&rel, None, &img.file_name) {
                Ok(Some((rec, _))) => Target::Known {
                    path: rec.path.clone(),
                },
                Ok(None) => {
                    unresolved.push(Unresolved {
                        entry: img.file_name.clone(),
                        location: String::new(),
                        reason: format!(
                            "image not found at {} nor among the project's {} images (by path or file name)",
                            looked_at.display(),
                            known.len()
                        ),
                        boxes: 0,
                    });
                    Target::Placeholder { rel }
                }
                Err(ambiguity) => {
                    return Err(IngestError::Ambiguous {
                        entry: img.file_name.clone(),
                        ambiguity,
                    });
                }
            }
        }
        Located::ById(ext) => Target::ById(ext),
        Located::Nameless => {
            return Err(IngestError::Invalid(
                "an image has neither a file name nor an id".into(),
            ));
        }
    })
}

/// What one import transaction has counted so far, shared by the labels and the predictions
/// written in it.
struct Writing<'a> {
    report: &'a mut ImportReport,
    warnings: &'a mut Vec<Warning>,
    unresolved: &'a mut Vec<Unresolved>,
    /// Boxes skipped because their id is already in the project.
    already_present: usize,
    progress: &'a dyn Progress,
    /// What to do with boxes the project already holds.
    existing: Existing,
    /// Warnings of the checks made here (capped per kind like the formats' own).
    checks: formats::Report,
    /// Labels this import made, told apart from those the project held before.
    created: std::collections::HashSet<Uuid>,
    /// Stack membership the file records, by file name.
    frames: &'a HashMap<String, crate::model::FrameRef>,
    /// Images given their stack membership from the file.
    stacked: usize,
}

impl Writing<'_> {
    /// Gives an image that is in no stack the stack membership the file records for it (frames
    /// exported as PNG files and added to another project come back as one stack).
    fn restore_stack(
        &mut self,
        bulk: &mut crate::store::Bulk<'_>,
        image_row: i64,
        file_name: &str,
    ) -> Result<(), IngestError> {
        let Some(frame) = self.frames.get(file_name) else {
            return Ok(());
        };
        if frame.stack.is_empty() || bulk.meta(image_row, STACK_KEY)?.is_some() {
            return Ok(());
        }
        bulk.set_meta(image_row, STACK_KEY, &frame.stack)?;
        bulk.set_meta(image_row, FRAME_KEY, &frame.frame.to_string())?;
        if let Some(z) = frame.slice_mm {
            bulk.set_meta(image_row, SLICE_KEY, &z.to_string())?;
        }
        self.stacked += 1;
        Ok(())
    }

    /// Writes one dataset's images and boxes inside the import transaction; returns its class
    /// count.
    fn write(
        &mut self,
        bulk: &mut crate::store::Bulk<'_>,
        dataset: &Dataset,
        targets: Vec<Target>,
        run_row: Option<i64>,
        state: ReviewState,
        coco: Option<&CocoSource>,
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
        let labels = run_row.is_none();
        for (index, (img, target)) in dataset.images.iter().zip(targets).enumerate() {
            // Boxes were checked against the size the file declares; a file whose real size
            // differs is reported, and its boxes are checked again against the real size.
            let real_size = match &target {
                Target::File { rel, info, .. } => self.check_size(img, rel, info),
                _ => None,
            };
            let Some((image_row, matched)) = self.image_row(bulk, img, target)? else {
                continue;
            };
            self.report.images += 1;
            if labels {
                self.restore_stack(bulk, image_row, &img.file_name)?;
            }
            if let (Some((source, _)), Some(ext)) = (coco_source, img.external_id) {
                bulk.record_external_id(source, ExternalKind::Image, ext, image_row)?;
            }
            // The labels the image already has: a box the file holds too is not added again.
            let mut existing = if labels && matched {
                bulk.live_labels(image_row)?
            } else {
                Vec::new()
            };
            let mut held = vec![false; existing.len()];
            let coco_boxes = coco_source.and_then(|(_, boxes)| boxes.get(index));
            for (k, b) in img.boxes.iter().enumerate() {
                let Some(&class_row) = class_rows.get(b.class) else {
                    return Err(IngestError::Invalid(format!(
                        "box refers to class index {} but the file has {} classes",
                        b.class,
                        class_rows.len()
                    )));
                };
                let mut bbox = b.bbox;
                if let Some((w, h)) = real_size {
                    let location = || format!("{} box {k}", img.file_name);
                    match formats::accept_box(&mut self.checks, bbox, w, h, location) {
                        Some(kept) => bbox = kept,
                        None => continue,
                    }
                }
                let id = b.id.unwrap_or_else(Uuid::now_v7);
                if b.id.is_some() && bulk.annotation_exists(id)? {
                    self.already_present += 1;
                    self.report.already_in_project += 1;
                    if let Some(i) = existing.iter().position(|e| e.id == id) {
                        held[i] = true;
                    }
                    self.warn_existing(
                        id.to_string(),
                        "annotation already in the project (same id); kept the project's",
                    );
                    continue;
                }
                if let Some(i) = (0..existing.len()).find(|&i| {
                    !held[i] && existing[i].class == class_row && same_box(existing[i].bbox, bbox)
                }) {
                    held[i] = true;
                    if self.created.contains(&existing[i].id) {
                        // The file lists this image twice (a CVAT export with the image in
                        // several subsets) with the same box: one box, not two.
                        self.checks.warn(
                            "duplicate_in_file",
                            || format!("{} box {k}", img.file_name),
                            || "the file lists this box of this image more than once; imported once".to_owned(),
                        );
                        continue;
                    }
                    self.report.already_in_project += 1;
                    self.warn_existing(
                        format!("{} box {k}", img.file_name),
                        "the image already has this label (same class and box); not added again",
                    );
                    continue;
                }
                let (run, state) = match (run_row, b.score) {
                    (Some(r), score) => (Some((r, score.unwrap_or(1.0))), ReviewState::Proposed),
                    (None, _) => (None, state),
                };
                if labels {
                    self.created.insert(id);
                }
                bulk.add_annotation(
                    id,
                    image_row,
                    class_row,
                    bbox,
                    run,
                    state,
                    b.flags,
                    &b.attributes,
                )?;
                if let Some(c) = coco_boxes.and_then(|a| a.get(k)) {
                    bulk.record_coco_box(id, c.id, c.area, bbox)?;
                }
                self.report.boxes += 1;
            }
            if self.existing == Existing::Replace {
                for (label, held) in existing.drain(..).zip(held) {
                    if !held {
                        bulk.delete_label(label.row)?;
                        self.report.removed += 1;
                    }
                }
            }
            if let Some(r) = run_row {
                bulk.mark_run_image(r, image_row, img.boxes.len())?;
            }
            self.progress.inc(1);
        }
        Ok(class_rows.len())
    }

    /// Reports an image whose file's real size differs from the size the annotation file
    /// declares; returns the real size to check its boxes against, when it differs.
    fn check_size(
        &mut self,
        img: &crate::model::DatasetImage,
        rel: &str,
        info: &imaging::ImageInfo,
    ) -> Option<(u32, u32)> {
        let declared = (img.width, img.height);
        let real = (info.width, info.height);
        if declared.0 == 0 || declared.1 == 0 || declared == real {
            return None;
        }
        self.report.size_mismatches += 1;
        let rotated = if declared == (info.raw_width, info.raw_height) && info.orientation != 1 {
            format!(
                " (the file's size before its EXIF orientation {} is applied; Loupe shows images upright, as viewers and most training pipelines do)",
                info.orientation
            )
        } else {
            String::new()
        };
        self.checks.warn(
            "image_size_mismatch",
            || rel.to_owned(),
            || {
                format!(
                    "the annotation file says {}x{}, the image is {}x{}{rotated}; its boxes are checked against the real size",
                    declared.0, declared.1, real.0, real.1
                )
            },
        );
        Some(real)
    }

    /// Reports a box the project already holds, or refuses nothing yet: the refusal comes
    /// after the whole file was compared, with the count.
    fn warn_existing(&mut self, location: String, message: &'static str) {
        if self.existing != Existing::Refuse {
            self.checks
                .warn("already_in_project", || location, || message.to_owned());
        }
    }

    /// The project row of one dataset image (added, matched or a placeholder) and whether the
    /// project held it before, or `None` when a results image id matches no image (its boxes
    /// are skipped and reported).
    fn image_row(
        &mut self,
        bulk: &mut crate::store::Bulk<'_>,
        img: &crate::model::DatasetImage,
        target: Target,
    ) -> Result<Option<(i64, bool)>, IngestError> {
        Ok(Some(match target {
            Target::File {
                rel,
                hash,
                bytes,
                info,
            } => {
                let (row, what) = bulk.upsert_image(&ImageInput {
                    path: rel,
                    hash: Some(hash),
                    width: info.width,
                    height: info.height,
                    bytes,
                    external_id: img.external_id,
                })?;
                if what != Upsert::Added {
                    self.report.images_matched += 1;
                }
                (row, what != Upsert::Added)
            }
            Target::Known { path } => {
                self.report.images_matched += 1;
                let Some(row) = bulk.image_by_path(&path)? else {
                    return Err(IngestError::Invalid(format!(
                        "image `{path}` left the project during the import"
                    )));
                };
                if let Some(ext) = img.external_id {
                    bulk.note_external_id(row, ext)?;
                }
                (row, true)
            }
            Target::Placeholder { rel } => {
                self.report.images_missing += 1;
                if img.width == 0 || img.height == 0 {
                    self.warnings.push(Warning {
                        kind: "missing_image".into(),
                        location: rel.clone(),
                        message: "image file not found and its size is unknown".into(),
                    });
                }
                let (row, what) = bulk.upsert_image(&ImageInput {
                    path: rel,
                    hash: None,
                    width: img.width,
                    height: img.height,
                    bytes: 0,
                    external_id: img.external_id,
                })?;
                (row, what != Upsert::Added)
            }
            Target::ById(ext) => match bulk.image_by_external_id(ext)? {
                Some(row) => {
                    self.report.images_matched += 1;
                    (row, true)
                }
                None => {
                    self.unresolved.push(Unresolved {
                        entry: format!("image_id {ext}"),
                        location: String::new(),
                        reason: "no image of the project was imported with this id (use --gt to map ids to file names); its results are skipped".into(),
                        boxes: img.boxes.len(),
                    });
                    self.report.skipped += img.boxes.len();
                    return Ok(None);
                }
            },
        }))
    }
}

/// One annotation file to import as labels (`loupe import`, File ▸ Import in the app).
#[derive(Clone, Debug)]
pub struct FileImport {
    pub format: formats::Format,
    pub path: PathBuf,
    /// Where the images are (`--images`), when not where the file says.
    pub images: Option<PathBuf>,
    /// Review state of the imported labels.
    pub state: ReviewState,
    /// Shapes other than boxes become their bounding box instead of being skipped.
    pub shapes_as_boxes: bool,
    /// Keep images found nowhere as missing placeholders instead of refusing the import.
    pub allow_missing: bool,
    /// What to do with boxes the project already holds.
    pub existing: Existing,
    /// A dataset file may name files outside its folder (`--allow-outside`).
    pub allow_outside: bool,
}

/// What importing an annotation file did.
#[derive(Clone, Debug, Serialize)]
pub struct FileImportReport {
    #[serde(flatten)]
    pub report: ImportReport,
    /// The runs made for model predictions carried with the labels (Label Studio).
    pub runs: Vec<PredictionRun>,
    /// Seconds spent reading and parsing the file.
    pub parse_seconds: f64,
}

/// A run made for the predictions of one model carried in an imported file.
#[derive(Clone, Debug, Serialize)]
pub struct PredictionRun {
    pub id: Uuid,
    /// The model's name in the file; the run is named after it.
    pub name: String,
    /// Images the model was run on.
    pub images: usize,
}

/// Imports an annotation file as labels: parses it (looking listed names up among the project's
/// images), records a COCO file's ids, makes one run per model whose predictions the file
/// carries, and writes everything in one transaction through [`import_dataset`]. The run rows
/// are made first and removed again when the import is refused, so a refused import leaves the
/// project as it was.
///
/// # Errors
///
/// [`IngestError::Format`] when the file is refused, and every refusal of [`import_dataset`].
pub fn import_file(
    project: &mut Project,
    request: &FileImport,
    progress: &dyn Progress,
) -> Result<FileImportReport, IngestError> {
    if request.format == formats::Format::CocoResults {
        return Err(IngestError::Invalid(
            "model results are not labels: import them with `--format coco-results --run NAME`"
                .into(),
        ));
    }
    let started = std::time::Instant::now();
    // The project's images, once: the formats look listed names up in them, and the import
    // attaches boxes to them instead of adding the same images again.
    let known = Arc::new(ProjectImages::load(project)?);
    // A COCO file's image and category ids and box areas are recorded with it: results files
    // name images and categories by those ids, and pycocotools ranks boxes by those areas.
    let (mut parsed, coco_ids) = if request.format == formats::Format::Coco {
        let (parsed, ids) =
            formats::import_coco_with_ids(&request.path, request.images.as_deref())?;
        let (hash, _) = imaging::hash_file(&request.path).map_err(|e| IngestError::Path {
            path: request.path.clone(),
            reason: e.to_string(),
        })?;
        let source = CocoSource {
            hash,
            path: request.path.display().to_string(),
            ids,
        };
        (parsed, Some(source))
    } else {
        let settings = formats::ImportSettings {
            images_dir: request.images.clone(),
            shapes_as_boxes: request.shapes_as_boxes,
            known_images: Some(Arc::clone(&known) as Arc<dyn KnownImages>),
            allow_outside: request.allow_outside,
        };
        (
            formats::import_with(request.format, &request.path, &settings)?,
            None,
        )
    };
    let parse_seconds = started.elapsed().as_secs_f64();
    if let Some(images) = &request.images {
        parsed.images_dir.clone_from(images);
    }
    // Predictions carried with the labels: one run per model, made before the import
    // transaction and removed again if the import is refused.
    let mut runs: Vec<PredictionRun> = Vec::with_capacity(parsed.predictions.len());
    for predictions in &parsed.predictions {
        let settings = serde_json::json!({
            "source": request.path.display().to_string(),
            "model_version": predictions.model,
        })
        .to_string();
        let made = project.create_run(&NewRun {
            name: predictions.model.clone(),
            kind: "import".into(),
            model_path: None,
            model_hash: None,
            settings,
            settings_hash: None,
            runtime_version: None,
        });
        match made {
            Ok(id) => runs.push(PredictionRun {
                id,
                name: predictions.model.clone(),
                images: predictions.dataset.images.len(),
            }),
            Err(e) => {
                delete_runs(project, &runs);
                return Err(e.into());
            }
        }
    }
    let opts = ImportOptions {
        state: request.state,
        predictions: runs
            .iter()
            .zip(std::mem::take(&mut parsed.predictions))
            .map(|(run, predictions)| (run.id, predictions.dataset))
            .collect(),
        coco_ids,
        allow_missing: request.allow_missing,
        existing: request.existing,
        known_images: Some(known),
        ..ImportOptions::default()
    };
    let report = match import_dataset(project, parsed, &opts, progress) {
        Ok(r) => r,
        Err(e) => {
            delete_runs(project, &runs);
            return Err(e);
        }
    };
    for run in &runs {
        project.finish_run(run.id)?;
    }
    Ok(FileImportReport {
        report,
        runs,
        parse_seconds,
    })
}

/// Removes the run rows an import made before it was refused (they hold nothing but a name).
fn delete_runs(project: &Project, runs: &[PredictionRun]) {
    for run in runs {
        // Best effort: the refusal is what gets reported.
        let _ = project.delete_empty_run(run.id);
    }
}

/// Finds one dataset image's file and reads it (hash, header) when it is there.
fn locate(
    img: &crate::model::DatasetImage,
    root: &Path,
    images_dir: &Path,
    images_rel: &str,
) -> Located {
    if img.file_name.is_empty() {
        return img.external_id.map_or(Located::Nameless, Located::ById);
    }
    let abs = images_dir.join(&img.file_name);
    if abs.is_file() {
        let rel = relative_path(root, &abs);
        let read = imaging::hash_file(&abs)
            .and_then(|(h, b)| imaging::probe(&abs).map(|i| (h, b, i)))
            .ok();
        Located::File { rel, read }
    } else {
        let rel = if images_rel.is_empty() {
            img.file_name.clone()
        } else {
            format!("{images_rel}/{}", img.file_name)
        };
        Located::Absent {
            rel: normalise(&rel),
        }
    }
}

/// Refuses an import that would add boxes the project already holds when the user did not say
/// what to do with them, and one that, told to skip or replace them, changes nothing.
fn check_existing(
    dataset: &Dataset,
    report: &ImportReport,
    same_ids: usize,
    existing: Existing,
) -> Result<(), IngestError> {
    let duplicates = report.already_in_project;
    if duplicates == 0 {
        return Ok(());
    }
    let listed = dataset.images.iter().map(|i| i.boxes.len()).sum::<usize>();
    match existing {
        Existing::Refuse => Err(IngestError::AlreadyImported {
            duplicates,
            listed,
            ids: if same_ids > 0 { ", or same id" } else { "" },
        }),
        Existing::SkipExisting | Existing::Replace if report.boxes == 0 && report.removed == 0 => {
            Err(IngestError::NothingNew { listed })
        }
        Existing::SkipExisting | Existing::Replace => Ok(()),
    }
}

/// The "nothing silent" rule of imports: refuses an import that resolved none of what it lists,
/// or that lists boxes and imported none.
fn check_resolved(
    dataset: &Dataset,
    listed: usize,
    report: &ImportReport,
    unresolved: &[Unresolved],
    warnings: &[Warning],
    already_present: usize,
    opts: &ImportOptions,
) -> Result<(), IngestError> {
    let resolved = report.images - report.images_missing;
    let kept = opts.allow_missing && report.images_missing > 0;
    if listed > 0 && resolved == 0 && !kept {
        return Err(IngestError::NothingResolved {
            listed,
            details: describe_unresolved(unresolved),
        });
    }
    let dropped = warnings
        .iter()
        .filter(|w| w.kind == "zero_area_box")
        .count();
    let listed_boxes = dataset.images.iter().map(|i| i.boxes.len()).sum::<usize>()
        + unresolved.iter().map(|u| u.boxes).sum::<usize>()
        + dropped;
    if listed_boxes > 0 && report.boxes == 0 && already_present == 0 {
        let why = if dropped > 0 {
            format!(" ({dropped} have no area inside their image)")
        } else {
            String::new()
        };
        return Err(IngestError::NoBoxes {
            listed: listed_boxes,
            details: format!(
                "{why}; nothing was imported{}",
                describe_unresolved(unresolved)
            ),
        });
    }
    Ok(())
}

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

    fn record(path: &str, hash: Option<&str>) -> ImageRecord {
        ImageRecord {
            id: Uuid::now_v7(),
            hash: hash.map(str::to_owned),
            path: path.to_owned(),
            width: 10,
            height: 10,
            bytes: 1,
            missing: hash.is_none(),
            external_id: None,
        }
    }

    #[test]
    fn project_images_match_by_path_then_hash_then_unique_name() {
        let known = ProjectImages::new(
            Path::new("/p"),
            vec![
                record("shots/a.jpg", Some("h1")),
                record("shots/train/b.jpg", Some("h2")),
                record("shots/val/b.jpg", Some("h3")),
                record("old/c.png", None),
            ],
        );
        let found = |rel: &str, hash: Option<&str>, listed: &str| {
            known
                .find(rel, hash, listed)
                .map(|m| m.map(|(r, by)| (r.path.clone(), by)))
        };
        assert_eq!(
            found("shots/a.jpg", Some("zz"), "a.jpg"),
            Ok(Some(("shots/a.jpg".into(), MatchedBy::Path)))
        );
        assert_eq!(
            found("elsewhere/x.jpg", Some("h2"), "x.jpg"),
            Ok(Some(("shots/train/b.jpg".into(), MatchedBy::Hash)))
        );
        assert_eq!(
            found("gt/a.jpg", None, "a.jpg"),
            Ok(Some(("shots/a.jpg".into(), MatchedBy::Name)))
        );
        assert_eq!(
            found("gt/val/b.jpg", None, "val/b.jpg"),
            Ok(Some(("shots/val/b.jpg".into(), MatchedBy::Name)))
        );
        let tie = found("gt/b.jpg", None, "b.jpg").expect_err("two b.jpg");
        assert_eq!(tie.candidates, ["shots/train/b.jpg", "shots/val/b.jpg"]);
        assert_eq!(found("gt/d.jpg", None, "d.jpg"), Ok(None));
        // A label file names its image by stem.
        let by_stem = known.find_by_name("labels/c.txt", true).expect("unique");
        assert_eq!(
            by_stem.map(|k| (k.file, k.width)),
            Some((PathBuf::from("/p/old/c.png"), 10))
        );
    }
}
