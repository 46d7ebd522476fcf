//! Model results onto a real project: a COCO results file's `image_id`s and `category_id`s mapped
//! onto the project's own images and classes, and the run's coverage, in one transaction.
//!
//! Mapping never creates an image or a class. Ids map, in this order:
//! - through the ids recorded when a COCO ground truth was imported (`external_ids`): with
//!   `--gt FILE`, those of that very file (known by its content hash); without, those of every
//!   imported COCO file that agrees (two files giving one id to different images is ambiguous);
//! - else, with `--gt FILE`, by the GT image's `file_name`: as a path (relative to `--images`, or
//!   else to the GT file's folder, or to the project), then by a base name unique among the
//!   project's images, then by the content hash of the file found under `--images`; categories
//!   by name (exact, then case-insensitively when that is unique).
//!
//! An id that cannot be mapped refuses the whole import, naming the first few and the count;
//! `allow_unmapped` skips their detections instead, with a count.
//!
//! Coverage (the images the run processed, detections or not: a missed object on an image with
//! no detection is a false negative): with `--gt`, the GT file's images that are in the project,
//! as pycocotools evaluates every image of the GT file; without, the images the results name
//! plus those the caller adds (`--images-from`, image filters). The sentence saying which is
//! stored with the run and printed by `loupe eval`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use uuid::Uuid;

use crate::formats::{self, CocoGt, FormatError};
use crate::ingest::relative_path;
use crate::model::{BoxFlags, ReviewState, Warning};
use crate::store::{ExternalKind, IndexedImage, NewRun, Project, StoreError};

/// Unmapped ids listed one by one in messages before the rest are only counted.
const LISTED: usize = 5;

/// Why a results import was refused.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}: {message}", path.display())]
    Unmapped {
        path: PathBuf,
        message: String,
        unmapped: Box<Unmapped>,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// What to import and how.
#[derive(Clone, Debug, Default)]
pub struct ResultsImport {
    /// The COCO results file (a JSON array of `{image_id, category_id, bbox, score}`).
    pub results: PathBuf,
    /// The COCO ground truth the results were computed on (`--gt`).
    pub gt: Option<PathBuf>,
    /// Where the GT's image files are (`--images`), for matching by path and content.
    pub images_dir: Option<PathBuf>,
    /// The run's name.
    pub run: String,
    /// Skip detections whose ids cannot be mapped instead of refusing the import.
    pub allow_unmapped: bool,
    /// Without `gt`: more images the model was run on (its silence there counts).
    pub also_covered: Vec<Uuid>,
    /// Where `also_covered` came from, for the coverage sentence (`--images-from list.txt`).
    pub also_covered_from: Option<String>,
}

/// One id that could not be mapped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnmappedId {
    pub id: i64,
    /// Detections naming it.
    pub detections: usize,
    pub reason: String,
}

/// The ids of a results file that name nothing in the project.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Unmapped {
    pub image_ids: Vec<UnmappedId>,
    pub category_ids: Vec<UnmappedId>,
    /// Detections naming an unmapped image or category.
    pub detections: usize,
}

impl Unmapped {
    pub fn is_empty(&self) -> bool {
        self.detections == 0
    }

    /// One sentence: the first few ids of each kind with their reason, and the counts.
    pub fn summary(&self, total: usize) -> String {
        let list = |ids: &[UnmappedId], what: &str| -> Option<String> {
            if ids.is_empty() {
                return None;
            }
            let shown: Vec<String> = ids
                .iter()
                .take(LISTED)
                .map(|u| format!("{what} {} ({})", u.id, u.reason))
                .collect();
            let more = ids.len().saturating_sub(LISTED);
            Some(if more > 0 {
                format!(
                    "{}; … {more} more ({} {what}s in all)",
                    shown.join("; "),
                    ids.len()
                )
            } else {
                shown.join("; ")
            })
        };
        let parts: Vec<String> = [
            list(&self.image_ids, "image_id"),
            list(&self.category_ids, "category_id"),
        ]
        .into_iter()
        .flatten()
        .collect();
        format!(
            "{} of {total} detections name ids this project cannot map: {}",
            self.detections,
            parts.join("; ")
        )
    }
}

/// How many ids each way of mapping found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MappedBy {
    pub recorded_ids: usize,
    pub path: usize,
    pub file_name: usize,
    pub content_hash: usize,
    pub category_name: usize,
}

/// What a results import did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ResultsReport {
    pub run: String,
    /// Detections in the file (entries with a bbox).
    pub detections: usize,
    /// Detections stored as proposals.
    pub boxes: usize,
    /// Images with at least one stored detection.
    pub images_with_detections: usize,
    /// Images the run covers (with or without detections).
    pub images_covered: usize,
    /// How the covered images were chosen.
    pub coverage: String,
    pub mapped_by: MappedBy,
    /// Skipped under `allow_unmapped` (empty otherwise: unmapped ids refuse the import).
    pub unmapped: Unmapped,
    /// With `--gt`: images of the GT file that are not in the project (not covered).
    pub gt_images_not_in_project: Vec<String>,
    /// Entries without a bbox.
    pub skipped: usize,
    pub warnings: Vec<Warning>,
}

/// A result of mapping one id.
type Mapping = Result<i64, String>;

/// The project's images, indexed for matching.
struct ImageMatcher<'a> {
    root: &'a Path,
    by_path: HashMap<&'a str, &'a IndexedImage>,
    by_name: HashMap<&'a str, Vec<&'a IndexedImage>>,
    by_hash: HashMap<&'a str, &'a IndexedImage>,
    /// Files under `--images` by base name, listed on first use.
    files_by_name: Option<HashMap<String, Vec<PathBuf>>>,
    images_dir: Option<&'a Path>,
}

fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

fn normalise(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split(['/', '\\']) {
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

impl<'a> ImageMatcher<'a> {
    fn new(root: &'a Path, images: &'a [IndexedImage], images_dir: Option<&'a Path>) -> Self {
        let mut by_path = HashMap::with_capacity(images.len());
        let mut by_name: HashMap<&str, Vec<&IndexedImage>> = HashMap::new();
        let mut by_hash = HashMap::new();
        for img in images {
            by_path.insert(img.path.as_str(), img);
            by_name.entry(base_name(&img.path)).or_default().push(img);
            if let Some(h) = &img.hash {
                by_hash.insert(h.as_str(), img);
            }
        }
        Self {
            root,
            by_path,
            by_name,
            by_hash,
            files_by_name: None,
            images_dir,
        }
    }

    /// Maps a GT `file_name` onto a project image: path, unique base name, content hash.
    fn find(&mut self, file_name: &str, base: &Path, by: &mut MappedBy) -> Mapping {
        let joined = base.join(file_name);
        let joined = relative_path(self.root, &std::path::absolute(&joined).unwrap_or(joined));
        for candidate in [normalise(&joined), normalise(file_name)] {
            if let Some(img) = self.by_path.get(candidate.as_str()) {
                by.path += 1;
                return Ok(img.row);
            }
        }
        let name = base_name(file_name);
        let same_name: Vec<&IndexedImage> = self.by_name.get(name).cloned().unwrap_or_default();
        if let [img] = same_name.as_slice() {
            by.file_name += 1;
            return Ok(img.row);
        }
        if let Some(row) = self.by_content(file_name, base) {
            by.content_hash += 1;
            return Ok(row);
        }
        Err(if same_name.len() > 1 {
            let paths: Vec<&str> = same_name.iter().take(3).map(|i| i.path.as_str()).collect();
            format!(
                "`{file_name}`: {} project images are named {name} ({}{}) and no file under --images tells them apart by content",
                same_name.len(),
                paths.join(", "),
                if same_name.len() > 3 { ", …" } else { "" }
            )
        } else {
            format!("`{file_name}`: no project image has this path or name, nor its content")
        })
    }

    /// The project image with the content of the GT image's file: the file at `file_name`
    /// under `--images` (or the GT's folder), else the one file of that name under `--images`.
    fn by_content(&mut self, file_name: &str, base: &Path) -> Option<i64> {
        let mut candidates = Vec::new();
        let direct = self.images_dir.unwrap_or(base).join(file_name);
        if direct.is_file() {
            candidates.push(direct);
        } else if let Some(dir) = self.images_dir {
            let files = self.files_by_name.get_or_insert_with(|| list_files(dir));
            if let Some([only]) = files.get(base_name(file_name)).map(Vec::as_slice) {
                candidates.push(only.clone());
            }
        }
        candidates.into_iter().find_map(|path| {
            let (hash, _) = crate::imaging::hash_file(&path).ok()?;
            self.by_hash.get(hash.as_str()).map(|img| img.row)
        })
    }
}

/// Every file under `dir`, by base name.
fn list_files(dir: &Path) -> HashMap<String, Vec<PathBuf>> {
    let mut out: HashMap<String, Vec<PathBuf>> = HashMap::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        out.entry(name).or_default().push(entry.into_path());
    }
    out
}

/// Maps category ids by name onto the project's classes.
fn category_by_name(classes: &[(i64, String)], name: &str) -> Mapping {
    if let Some((row, _)) = classes.iter().find(|(_, n)| n == name) {
        return Ok(*row);
    }
    let folded: Vec<&(i64, String)> = classes
        .iter()
        .filter(|(_, n)| n.eq_ignore_ascii_case(name))
        .collect();
    match folded.as_slice() {
        [(row, _)] => Ok(*row),
        [] => Err(format!("`{name}`: the project has no class of this name")),
        more => Err(format!(
            "`{name}`: {} classes differ from it only by case",
            more.len()
        )),
    }
}

/// Maps ids through the ids recorded from imported COCO files: those of `source` only, or of
/// every source when `None` (agreeing ones only).
fn through_recorded(
    p: &Project,
    kind: ExternalKind,
    ids: &[i64],
    source: Option<i64>,
    source_names: &HashMap<i64, String>,
) -> Result<HashMap<i64, Mapping>, StoreError> {
    let recorded = p.external_ids(kind)?;
    let what = match kind {
        ExternalKind::Image => "image",
        ExternalKind::Class => "category",
    };
    let mut out = HashMap::with_capacity(ids.len());
    for &id in ids {
        let targets: Vec<_> = recorded
            .get(&id)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter(|t| source.is_none_or(|s| t.source == s))
            .collect();
        let distinct: HashSet<i64> = targets.iter().map(|t| t.target).collect();
        let mapping = match distinct.len() {
            1 => Ok(targets[0].target),
            0 => Err(format!(
                "no imported COCO file has {what} id {id} (import the ground truth with --format coco, or pass --gt FILE)"
            )),
            _ => {
                let files: Vec<&str> = targets
                    .iter()
                    .filter_map(|t| source_names.get(&t.source).map(String::as_str))
                    .collect();
                Err(format!(
                    "{what} id {id} names different {what}s in {}; pass --gt FILE to say which file the results use",
                    files.join(" and ")
                ))
            }
        };
        out.insert(id, mapping);
    }
    Ok(out)
}

/// Reads `path` as a list of images, one per line (project-relative paths, or paths relative to
/// the list file or absolute; `#` comments and blank lines ignored).
///
/// # Errors
///
/// The file cannot be read, or names images the project does not have (the first few listed).
pub fn images_from_list(p: &Project, path: &Path) -> Result<Vec<Uuid>, ResultsError> {
    let text = std::fs::read_to_string(path).map_err(|e| FormatError::io(path, e))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let root = p.root().to_path_buf();
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let listed = base.join(line);
        let listed = std::path::absolute(&listed).unwrap_or(listed);
        let candidates = [normalise(line), normalise(&relative_path(&root, &listed))];
        let mut found = None;
        for c in &candidates {
            if let Some(img) = p.image_by_path(c)? {
                found = Some(img.id);
                break;
            }
        }
        match found {
            Some(id) => out.push(id),
            None => unknown.push(format!("line {}: {line}", n + 1)),
        }
    }
    if !unknown.is_empty() {
        let shown: Vec<&str> = unknown.iter().take(LISTED).map(String::as_str).collect();
        return Err(ResultsError::Invalid {
            path: path.to_path_buf(),
            reason: format!(
                "{} listed image(s) are not in the project: {}{}",
                unknown.len(),
                shown.join("; "),
                if unknown.len() > LISTED { "; …" } else { "" }
            ),
        });
    }
    Ok(out)
}

/// Imports a COCO results file as run `opts.run`, mapped onto the project (see the module
/// documentation). All or nothing.
///
/// # Errors
///
/// Unreadable or malformed files, ids that cannot be mapped (unless `allow_unmapped`), a run of
/// that name already existing, a results file that maps onto no image at all.
#[allow(clippy::too_many_lines)]
pub fn import_results(
    p: &mut Project,
    opts: &ResultsImport,
) -> Result<ResultsReport, ResultsError> {
    let parsed = formats::read_coco_results(&opts.results)?;
    let gt = match &opts.gt {
        Some(path) => Some((path.as_path(), formats::read_coco_gt(path)?)),
        None => None,
    };
    if gt.is_some() && !opts.also_covered.is_empty() {
        return Err(ResultsError::Invalid {
            path: opts.results.clone(),
            reason: "with --gt the run covers the ground-truth file's images (pycocotools' convention); --images-from and image filters apply only without --gt".into(),
        });
    }
    let mut image_ids: Vec<i64> = parsed.detections.iter().map(|d| d.image_id).collect();
    image_ids.sort_unstable();
    image_ids.dedup();
    let mut category_ids: Vec<i64> = parsed.detections.iter().map(|d| d.category_id).collect();
    category_ids.sort_unstable();
    category_ids.dedup();

    let sources = p.id_sources()?;
    let source_names: HashMap<i64, String> = sources
        .iter()
        .map(|s| {
            let name = if s.path.is_empty() {
                "an earlier import".to_owned()
            } else {
                s.path.clone()
            };
            (s.id, name)
        })
        .collect();
    let images = p.image_index()?;
    let classes = p.class_index()?;
    let root = p.root().to_path_buf();
    let mut by = MappedBy::default();
    let mut warnings = parsed.warnings.clone();

    // image id -> row, category id -> row (or why not); and with --gt, the covered GT images.
    let (image_map, category_map, gt_rows, gt_missing, how) = match &gt {
        Some((gt_path, gt)) => {
            map_with_gt(p, &root, &images, &classes, gt_path, gt, opts, &mut by)?
        }
        None => {
            let image_map =
                through_recorded(p, ExternalKind::Image, &image_ids, None, &source_names)?;
            let category_map =
                through_recorded(p, ExternalKind::Class, &category_ids, None, &source_names)?;
            by.recorded_ids += image_map.values().filter(|m| m.is_ok()).count();
            by.recorded_ids += category_map.values().filter(|m| m.is_ok()).count();
            let files: Vec<&str> = sources
                .iter()
                .map(|s| source_names[&s.id].as_str())
                .collect();
            let how = if files.is_empty() {
                "no COCO ids are recorded in this project".to_owned()
            } else {
                format!("ids recorded when {} was imported", files.join(", "))
            };
            (image_map, category_map, None, Vec::new(), how)
        }
    };

    // Which detections map, and which ids do not.
    let mut unmapped = Unmapped::default();
    let mut bad_images: BTreeMap<i64, (usize, String)> = BTreeMap::new();
    let mut bad_categories: BTreeMap<i64, (usize, String)> = BTreeMap::new();
    let mut keep = Vec::with_capacity(parsed.detections.len());
    for d in &parsed.detections {
        let image = image_map
            .get(&d.image_id)
            .cloned()
            .unwrap_or_else(|| Err("not among the images of the ground truth".to_owned()));
        let category = category_map
            .get(&d.category_id)
            .cloned()
            .unwrap_or_else(|| Err("not among the categories of the ground truth".to_owned()));
        match (image, category) {
            (Ok(i), Ok(c)) => keep.push((d, i, c)),
            (image, category) => {
                unmapped.detections += 1;
                if let Err(reason) = image {
                    bad_images.entry(d.image_id).or_insert((0, reason)).0 += 1;
                }
                if let Err(reason) = category {
                    bad_categories.entry(d.category_id).or_insert((0, reason)).0 += 1;
                }
            }
        }
    }
    let to_ids = |m: BTreeMap<i64, (usize, String)>| -> Vec<UnmappedId> {
        m.into_iter()
            .map(|(id, (detections, reason))| UnmappedId {
                id,
                detections,
                reason,
            })
            .collect()
    };
    unmapped.image_ids = to_ids(bad_images);
    unmapped.category_ids = to_ids(bad_categories);
    if !unmapped.is_empty() && !opts.allow_unmapped {
        let message = format!(
            "{}. Mapped by {how}. Nothing was imported; --allow-unmapped imports the rest",
            unmapped.summary(parsed.detections.len())
        );
        return Err(ResultsError::Unmapped {
            path: opts.results.clone(),
            message,
            unmapped: Box::new(unmapped),
        });
    }

    // Coverage.
    let (covered, coverage): (Vec<i64>, String) = match gt_rows {
        Some(rows) => {
            let gt_name = opts
                .gt
                .as_deref()
                .map(|g| g.display().to_string())
                .unwrap_or_default();
            let n = rows.len();
            let mut s = format!(
                "the {n} images of the ground truth {gt_name} (as pycocotools evaluates: images without detections count)"
            );
            if !gt_missing.is_empty() {
                s.push_str(&format!(
                    "; {} of its images are not in the project and not covered",
                    gt_missing.len()
                ));
            }
            (rows, s)
        }
        None => {
            let mut rows: Vec<i64> = Vec::new();
            let mut seen = HashSet::new();
            for (_, image, _) in &keep {
                if seen.insert(*image) {
                    rows.push(*image);
                }
            }
            let named = rows.len();
            let extra = p.image_rows(&opts.also_covered)?;
            let mut added = 0;
            for r in extra {
                if seen.insert(r) {
                    rows.push(r);
                    added += 1;
                }
            }
            let results_name = opts.results.display();
            let mut s = format!("the {named} images named in {results_name}");
            match &opts.also_covered_from {
                Some(from) => s.push_str(&format!(
                    " plus {added} more from {from} ({} images in all)",
                    rows.len()
                )),
                None => s.push_str(
                    " (images the model found nothing on are not covered: name them with --images-from FILE or an image filter, or pass --gt)",
                ),
            }
            (rows, s)
        }
    };
    if covered.is_empty() {
        return Err(ResultsError::Invalid {
            path: opts.results.clone(),
            reason: "the results map onto no image of the project: nothing to import".into(),
        });
    }

    // Boxes past their image are kept as the model gave them: pycocotools evaluates them so.
    let sizes: HashMap<i64, (u32, u32)> = images
        .iter()
        .map(|i| (i.row, (i.width, i.height)))
        .collect();
    let outside = keep
        .iter()
        .filter(|(d, image, _)| {
            sizes.get(image).is_some_and(|&(w, h)| {
                w > 0 && h > 0 && !d.bbox.is_inside(f64::from(w), f64::from(h))
            })
        })
        .count();
    if outside > 0 {
        warnings.push(Warning {
            kind: "box_outside_image".into(),
            location: opts.results.display().to_string(),
            message: format!(
                "{outside} detection(s) extend past their image; kept unclipped, as pycocotools evaluates them"
            ),
        });
    }
    if !gt_missing.is_empty() {
        warnings.push(Warning {
            kind: "gt_image_not_in_project".into(),
            location: opts.gt.as_deref().map(|g| g.display().to_string()).unwrap_or_default(),
            message: format!(
                "{} image(s) of the ground truth are not in the project and are not covered, e.g. {}",
                gt_missing.len(),
                gt_missing.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            ),
        });
    }

    // Write: the run, its proposals and its coverage, in one transaction.
    let settings = serde_json::json!({
        "source": opts.results.display().to_string(),
        "gt": opts.gt.as_deref().map(|g| g.display().to_string()),
        "mapped_by": how,
    })
    .to_string();
    let mut per_image: HashMap<i64, usize> = HashMap::new();
    let mut bulk = p.bulk()?;
    let (_, run_row) = bulk.insert_run(
        &NewRun {
            name: opts.run.clone(),
            kind: "import".into(),
            settings,
            ..NewRun::default()
        },
        &coverage,
    )?;
    for (d, image, class) in &keep {
        bulk.add_annotation(
            Uuid::now_v7(),
            *image,
            *class,
            d.bbox,
            Some((run_row, d.score)),
            ReviewState::Proposed,
            BoxFlags::default(),
            &crate::model::Attributes::new(),
        )?;
        *per_image.entry(*image).or_default() += 1;
    }
    for image in &covered {
        bulk.mark_run_image(run_row, *image, per_image.get(image).copied().unwrap_or(0))?;
    }
    bulk.commit()?;

    Ok(ResultsReport {
        run: opts.run.clone(),
        detections: parsed.detections.len(),
        boxes: keep.len(),
        images_with_detections: per_image.len(),
        images_covered: covered.len(),
        coverage,
        mapped_by: by,
        unmapped,
        gt_images_not_in_project: gt_missing,
        skipped: parsed.skipped,
        warnings,
    })
}

/// What mapping through a GT file gives: image and category maps, the covered rows (the GT's
/// images in the project, in GT order), the GT images not in the project, and a sentence.
type GtMapping = (
    HashMap<i64, Mapping>,
    HashMap<i64, Mapping>,
    Option<Vec<i64>>,
    Vec<String>,
    String,
);

#[allow(clippy::too_many_arguments)]
fn map_with_gt(
    p: &Project,
    root: &Path,
    images: &[IndexedImage],
    classes: &[(i64, String)],
    gt_path: &Path,
    gt: &CocoGt,
    opts: &ResultsImport,
    by: &mut MappedBy,
) -> Result<GtMapping, ResultsError> {
    let (hash, _) = crate::imaging::hash_file(gt_path).map_err(|e| ResultsError::Invalid {
        path: gt_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let source = p.id_sources()?.into_iter().find(|s| s.hash == hash);
    let names = HashMap::new();
    let gt_image_ids: Vec<i64> = gt.images.iter().map(|i| i.id).collect();
    let gt_category_ids: Vec<i64> = gt.categories.iter().map(|c| c.0).collect();
    let (recorded_images, recorded_categories) = match &source {
        Some(s) => (
            through_recorded(p, ExternalKind::Image, &gt_image_ids, Some(s.id), &names)?,
            through_recorded(p, ExternalKind::Class, &gt_category_ids, Some(s.id), &names)?,
        ),
        None => (HashMap::new(), HashMap::new()),
    };
    let base = opts.images_dir.clone().unwrap_or_else(|| {
        gt_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    });
    let mut matcher = ImageMatcher::new(root, images, opts.images_dir.as_deref());
    let mut image_map = HashMap::with_capacity(gt.images.len());
    let mut covered = Vec::with_capacity(gt.images.len());
    let mut seen = HashSet::new();
    let mut missing = Vec::new();
    for img in &gt.images {
        let mapping = match recorded_images.get(&img.id) {
            Some(Ok(row)) => {
                by.recorded_ids += 1;
                Ok(*row)
            }
            _ => matcher.find(&img.file_name, &base, by),
        };
        match &mapping {
            Ok(row) => {
                if seen.insert(*row) {
                    covered.push(*row);
                }
            }
            Err(reason) => missing.push(format!("id {} {reason}", img.id)),
        }
        image_map.insert(img.id, mapping);
    }
    let mut category_map = HashMap::with_capacity(gt.categories.len());
    for (id, name) in &gt.categories {
        let mapping = match recorded_categories.get(id) {
            Some(Ok(row)) => {
                by.recorded_ids += 1;
                Ok(*row)
            }
            _ => {
                let m = category_by_name(classes, name);
                if m.is_ok() {
                    by.category_name += 1;
                }
                m
            }
        };
        category_map.insert(*id, mapping);
    }
    let how = match &source {
        Some(_) => format!(
            "the ids recorded when {} was imported, then file names",
            gt_path.display()
        ),
        None => format!(
            "{}: images by file name ({} by path, {} by unique name, {} by content), categories by name",
            gt_path.display(),
            by.path,
            by.file_name,
            by.content_hash
        ),
    };
    Ok((image_map, category_map, Some(covered), missing, how))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmapped_summary_lists_the_first_few_and_counts_the_rest() {
        let u = Unmapped {
            image_ids: (1..=8)
                .map(|id| UnmappedId {
                    id,
                    detections: 2,
                    reason: "unknown".into(),
                })
                .collect(),
            category_ids: vec![UnmappedId {
                id: 90,
                detections: 1,
                reason: "no class".into(),
            }],
            detections: 17,
        };
        let s = u.summary(40);
        assert!(s.starts_with("17 of 40 detections"), "{s}");
        assert!(
            s.contains("image_id 5 (unknown)") && !s.contains("image_id 6 "),
            "{s}"
        );
        assert!(s.contains("3 more (8 image_ids in all)"), "{s}");
        assert!(s.contains("category_id 90 (no class)"), "{s}");
    }

    #[test]
    fn names_and_paths_normalise() {
        assert_eq!(base_name("a/b\\c.jpg"), "c.jpg");
        assert_eq!(normalise("./a/../b//c.png"), "b/c.png");
        let classes = vec![(1, "Cat".to_owned()), (2, "dog".to_owned())];
        assert_eq!(category_by_name(&classes, "dog"), Ok(2));
        assert_eq!(category_by_name(&classes, "cat"), Ok(1));
        assert!(category_by_name(&classes, "bird").is_err());
    }
}
