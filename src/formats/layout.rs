//! What the folder exports (COCO with images, YOLO, VOC) share: which image files go and from
//! where, their names without the project's folders, their split, and placing the files.
//!
//! Training tools find a label by the image's name (ultralytics replaces the last `/images/` of
//! an image path by `/labels/`; VOC and datumaro key items by file stem), so an export never
//! nests the project's own folders under its split folders: every image is `NAME` inside its
//! split. Names that clash once the folders are dropped (`a/x.jpg`, `b/x.jpg`, or `x.jpg` beside
//! `x.png`, which share a label file) are resolved the same way every time: images in path
//! order, the first keeps its name, the next ones are named by their whole path with `_` for `/`
//! (`b_x.jpg`), then `-2`, `-3`… if that is taken too.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{ExportOutcome, ExportSettings, FormatError, ImagesMode};
use crate::model::{Dataset, DatasetImage};

/// The split used when none is asked for.
pub(super) const DEFAULT_SPLIT: &str = "train";

/// How many unfound images an error lists by name.
const MISSING_LISTED: usize = 5;

/// One image of a folder export.
pub(super) struct Planned<'a> {
    pub img: &'a DatasetImage,
    /// The image's index in `Dataset::images`.
    pub index: usize,
    /// Index into [`Plan::splits`].
    pub split: usize,
    /// The image's file name in the export (no folders).
    pub name: String,
    /// The image file to place in the export (none in [`ImagesMode::None`] or when missing).
    pub source: Option<PathBuf>,
}

impl Planned<'_> {
    /// The name without its extension: the stem of the label or annotation file.
    pub fn stem(&self) -> &str {
        stem_of(&self.name)
    }
}

/// Every image of an export with its name, split and source, decided before anything is written.
pub(super) struct Plan<'a> {
    /// Split names, in order.
    pub splits: Vec<String>,
    /// Whether the user asked for a split (else everything is in [`DEFAULT_SPLIT`]).
    pub split_given: bool,
    pub images: Vec<Planned<'a>>,
    pub renamed: Vec<(String, String)>,
    pub missing: Vec<String>,
}

impl<'a> Plan<'a> {
    /// The images of split `split`, in dataset order.
    pub fn in_split(&self, split: usize) -> impl Iterator<Item = &Planned<'a>> {
        self.images.iter().filter(move |p| p.split == split)
    }

    /// The outcome fields that come from the plan (counts per split, renames, missing images).
    pub fn outcome(&self) -> ExportOutcome {
        let mut notes = Vec::new();
        for (i, split) in self.splits.iter().enumerate() {
            if self.split_given && self.in_split(i).next().is_none() {
                notes.push(format!(
                    "split `{split}` has no images (of {} in all)",
                    self.images.len()
                ));
            }
        }
        ExportOutcome {
            splits: self
                .splits
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), self.in_split(i).count()))
                .collect(),
            renamed: self.renamed.clone(),
            missing: self.missing.clone(),
            notes,
            ..ExportOutcome::default()
        }
    }
}

fn stem_of(name: &str) -> &str {
    match name.rfind('.') {
        Some(dot) if dot > 0 => &name[..dot],
        _ => name,
    }
}

/// The parts of a stored path that name folders and the file: no root, drive, `.` or `..`.
fn path_parts(file_name: &str) -> Vec<&str> {
    file_name
        .split(['/', '\\'])
        .filter(|p| !matches!(*p, "" | "." | "..") && !p.ends_with(':'))
        .collect()
}

/// Plans an export of `dataset` to `out`: names, splits and image sources.
///
/// # Errors
///
/// An image with an empty file name; images to place without an images folder; images that
/// cannot be found unless `settings.allow_missing`.
pub(super) fn plan<'a>(
    dataset: &'a Dataset,
    out: &Path,
    settings: &ExportSettings,
) -> Result<Plan<'a>, FormatError> {
    let (splits, split_given) = match &settings.split {
        Some(spec) => (spec.parts.iter().map(|(n, _)| n.clone()).collect(), true),
        None => (vec![DEFAULT_SPLIT.to_owned()], false),
    };

    // Names: decided in path order so they do not depend on the order images were read in.
    let mut order: Vec<usize> = (0..dataset.images.len()).collect();
    order.sort_by(|&a, &b| {
        dataset.images[a]
            .file_name
            .cmp(&dataset.images[b].file_name)
    });
    let mut names: Vec<String> = vec![String::new(); dataset.images.len()];
    let mut taken: HashSet<String> = HashSet::with_capacity(dataset.images.len());
    let mut renamed = Vec::new();
    // First pass: every name that is free keeps it; second pass: the clashing ones are renamed.
    // Two passes, so a renamed image never takes the plain name of an image further down.
    let mut deferred = Vec::new();
    for i in order {
        let img = &dataset.images[i];
        let parts = path_parts(&img.file_name);
        let rendered;
        let base = match parts.last() {
            Some(&base) if renders_as_png(base) => {
                rendered = png_name(base);
                Some(rendered.as_str())
            }
            other => other.copied(),
        };
        let Some(base) = base else {
            return Err(FormatError::export(
                out,
                format!("image file name `{}` is empty", img.file_name),
            ));
        };
        if taken.insert(stem_of(base).to_lowercase()) {
            names[i] = base.to_owned();
        } else {
            deferred.push((i, parts.join("_")));
        }
    }
    for (i, joined) in deferred {
        let (stem, ext) = split_ext(&joined);
        let mut name = joined.clone();
        let mut n = 2;
        while !taken.insert(stem_of(&name).to_lowercase()) {
            name = format!("{stem}-{n}{ext}");
            n += 1;
        }
        renamed.push((dataset.images[i].file_name.clone(), name.clone()));
        names[i] = name;
    }
    renamed.sort();

    let root = match (settings.images, &settings.images_root) {
        (ImagesMode::None, _) => None,
        (_, Some(root)) => Some(root.as_path()),
        (mode, None) => {
            return Err(FormatError::export(
                out,
                format!(
                    "images `{}` needs the folder the images are in",
                    mode.as_str()
                ),
            ));
        }
    };
    let mut missing = Vec::new();
    let mut images = Vec::with_capacity(dataset.images.len());
    for (index, (img, name)) in dataset.images.iter().zip(names).enumerate() {
        let source = match root {
            Some(root) => {
                // `join` keeps `..` (images beside the project folder) and absolute paths.
                let path = root.join(Path::new(&img.file_name));
                if path.is_file() || crate::imaging::split_frame(&path).0.is_file() {
                    Some(path)
                } else {
                    missing.push(img.file_name.clone());
                    None
                }
            }
            None => None,
        };
        let split = match &settings.split {
            Some(spec) => split_of(
                settings
                    .content_hashes
                    .get(&img.file_name)
                    .map_or(img.file_name.as_str(), String::as_str),
                settings.seed,
                &spec.parts,
            ),
            None => 0,
        };
        images.push(Planned {
            img,
            index,
            split,
            name,
            source,
        });
    }
    if !missing.is_empty() && !settings.allow_missing {
        let root = root.unwrap_or(Path::new("."));
        let listed: Vec<String> = missing
            .iter()
            .take(MISSING_LISTED)
            .map(|m| root.join(m).display().to_string())
            .collect();
        let more = missing.len().saturating_sub(MISSING_LISTED);
        return Err(FormatError::export(
            out,
            format!(
                "{} of {} images not found: {}{}; nothing was written (--allow-missing exports their labels without them, --images none exports labels only)",
                missing.len(),
                dataset.images.len(),
                listed.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
        ));
    }
    Ok(Plan {
        splits,
        split_given,
        images,
        renamed,
        missing,
    })
}

fn split_ext(name: &str) -> (&str, &str) {
    let stem = stem_of(name);
    (stem, &name[stem.len()..])
}

/// The split of an image: a point in [0, 1) drawn from blake3(seed, key), placed among the
/// cumulative fractions. An image's split depends on nothing but its key and the seed, so adding
/// images to a dataset never moves an earlier image from one split to another.
pub(super) fn split_of(key: &str, seed: u64, parts: &[(String, f64)]) -> usize {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&seed.to_le_bytes());
    hasher.update(key.as_bytes());
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    // The top 53 bits: exactly representable, uniform in [0, 1).
    #[allow(clippy::cast_precision_loss)]
    let u = (u64::from_le_bytes(first) >> 11) as f64 / (1u64 << 53) as f64;
    let mut cumulative = 0.0;
    for (i, (_, fraction)) in parts.iter().enumerate() {
        cumulative += fraction;
        if u < cumulative {
            return i;
        }
    }
    parts.len().saturating_sub(1)
}

/// Places image files into an export, counting links and copies.
#[derive(Default)]
pub(super) struct Placer {
    pub linked: usize,
    pub copied: usize,
    pub link_fallback: Option<String>,
    /// Follow links and write into special files at a destination (see `output.rs`).
    pub force: bool,
}

impl Placer {
    /// A placer; `force` as [`super::ExportSettings::force`].
    pub fn new(force: bool) -> Self {
        Placer {
            force,
            ..Placer::default()
        }
    }

    /// Puts `from` at `to` (replacing a regular file there) as `mode` says.
    pub fn place(&mut self, mode: ImagesMode, from: &Path, to: &Path) -> Result<(), FormatError> {
        if needs_rendering(from) {
            // A frame of a multi-frame file or a DICOM slice: written as the 8-bit PNG a
            // training pipeline reads (16-bit values through the file's default window).
            let img = crate::imaging::decode_for_model(from, None)
                .map_err(|e| FormatError::export(to, e.to_string()))?;
            let mut png = Vec::new();
            img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .map_err(|e| FormatError::export(to, format!("cannot write PNG: {e}")))?;
            super::output::write_file(to, &png, self.force)?;
            self.copied += 1;
            return Ok(());
        }
        match super::output::place_image(from, to, mode == ImagesMode::Link, self.force)? {
            super::output::Placed::Linked => self.linked += 1,
            super::output::Placed::Copied(link_error) => {
                // Another device or a file system without hard links: copied instead; say so
                // once.
                if let Some(e) = link_error
                    && self.link_fallback.is_none()
                {
                    self.link_fallback = Some(format!("{}: {e}", from.display()));
                }
                self.copied += 1;
            }
        }
        Ok(())
    }

    /// Copies the counts into an outcome.
    pub fn fill(self, outcome: &mut ExportOutcome) {
        outcome.images_linked = self.linked;
        outcome.images_copied = self.copied;
        outcome.link_fallback = self.link_fallback;
    }
}

/// True for an image a folder export writes as PNG instead of copying: a frame of a
/// multi-frame file (`a.dcm#frame=0003`) or a DICOM file, which training tools cannot read.
fn renders_as_png(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.contains(crate::imaging::FRAME_MARK)
        || lower.ends_with(".dcm")
        || lower.ends_with(".dicom")
}

fn needs_rendering(from: &Path) -> bool {
    from.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(renders_as_png)
        || (from.is_file() && crate::imaging::dicom::is_dicom(from))
}

/// The PNG name of a rendered image: `cine.dcm#frame=0003` -> `cine_frame0003.png`,
/// `IM0004.dcm` -> `IM0004.png`. Stable: the same image always gets the same name.
fn png_name(base: &str) -> String {
    let (file, frame) = match base.rsplit_once(crate::imaging::FRAME_MARK) {
        Some((file, n)) => (file, Some(n)),
        None => (base, None),
    };
    let stem = stem_of(file);
    match frame {
        Some(n) => format!("{stem}_frame{n}.png"),
        None => format!("{stem}.png"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DatasetImage;

    fn dataset(names: &[&str]) -> Dataset {
        Dataset {
            classes: vec![],
            images: names
                .iter()
                .map(|n| DatasetImage {
                    file_name: (*n).to_owned(),
                    width: 1,
                    height: 1,
                    external_id: None,
                    boxes: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn clashing_names_are_resolved_in_path_order() {
        let ds = dataset(&[
            "images/b/x.jpg",
            "images/a/x.jpg",
            "images/a/x.png",
            "../outside/y.jpg",
            "images_a_x.png",
            "Y.JPG",
        ]);
        let plan = plan(&ds, Path::new("out"), &ExportSettings::default()).expect("plan");
        let names: Vec<&str> = plan.images.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "images_b_x.jpg",
                "x.jpg",
                "images_a_x-2.png",
                "y.jpg",
                "images_a_x.png",
                "Y-2.JPG"
            ]
        );
        assert_eq!(
            plan.renamed,
            [
                ("Y.JPG".to_owned(), "Y-2.JPG".to_owned()),
                ("images/a/x.png".to_owned(), "images_a_x-2.png".to_owned()),
                ("images/b/x.jpg".to_owned(), "images_b_x.jpg".to_owned()),
            ]
        );
    }

    #[test]
    fn splits_are_seeded_stable_and_close_to_the_fractions() {
        let parts = vec![("train".to_owned(), 0.8), ("val".to_owned(), 0.2)];
        let keys: Vec<String> = (0..10_000).map(|i| format!("img{i}.jpg")).collect();
        let a: Vec<usize> = keys.iter().map(|k| split_of(k, 7, &parts)).collect();
        let b: Vec<usize> = keys.iter().map(|k| split_of(k, 7, &parts)).collect();
        assert_eq!(a, b, "same seed, same split");
        let val = a.iter().filter(|&&s| s == 1).count();
        assert!((1800..2200).contains(&val), "{val} of 10000 in val");
        let c: Vec<usize> = keys.iter().map(|k| split_of(k, 8, &parts)).collect();
        assert_ne!(a, c, "another seed, another split");
    }
}
