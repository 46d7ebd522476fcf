//! `loupe import` and `loupe export`: the formats module plus the store, one transaction each.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use uuid::Uuid;

use super::TermProgress;
use crate::formats::{self, ExportSettings, Format, ImagesMode, SplitSpec};
use crate::ingest::{self, FileImport, ImportReport, IngestError};
use crate::model::ReviewState;
use crate::results;
use crate::store::{ImageFilter, Project};

/// Options of `loupe import`.
pub struct ImportArgs<'a> {
    pub format: Format,
    pub path: &'a Path,
    pub images: Option<&'a Path>,
    pub state: ReviewState,
    pub run: Option<&'a str>,
    pub gt: Option<&'a Path>,
    pub allow_unmapped: bool,
    pub coverage: &'a CoverageArgs,
    pub shapes_as_boxes: bool,
    /// Accept an import none of whose images is found (kept as missing placeholders).
    pub allow_missing: bool,
    /// What to do with boxes the project already holds.
    pub existing: ingest::Existing,
    /// A dataset file may name files outside its folder.
    pub allow_outside: bool,
    pub json: bool,
}

/// For coco-results without `--gt`: more images the model was run on, beyond those the results
/// name (an image it found nothing on is covered only when named here).
#[derive(Args, Debug, Default, Clone)]
pub struct CoverageArgs {
    /// coco-results without --gt: a file listing more images the model ran on, one path a line
    /// (relative to the project or to the list).
    #[arg(long)]
    pub images_from: Option<PathBuf>,
    /// coco-results without --gt: the model also ran on the project's images with this tag.
    #[arg(long)]
    pub cover_tag: Option<String>,
    /// coco-results without --gt: … on images whose metadata has KEY=VALUE.
    #[arg(long)]
    pub cover_meta: Option<String>,
    /// coco-results without --gt: … on images whose path contains this text.
    #[arg(long)]
    pub cover_path: Option<String>,
    /// coco-results without --gt: … on every image of the project.
    #[arg(long)]
    pub cover_all: bool,
}

impl CoverageArgs {
    fn is_empty(&self) -> bool {
        self.images_from.is_none()
            && self.cover_tag.is_none()
            && self.cover_meta.is_none()
            && self.cover_path.is_none()
            && !self.cover_all
    }

    /// The images named, and a phrase saying where they came from.
    fn resolve(&self, p: &Project) -> Result<(Vec<Uuid>, Option<String>)> {
        if self.is_empty() {
            return Ok((Vec::new(), None));
        }
        let mut ids = Vec::new();
        let mut from = Vec::new();
        if let Some(list) = &self.images_from {
            ids.extend(results::images_from_list(p, list)?);
            from.push(format!("--images-from {}", list.display()));
        }
        let filtered = self.cover_tag.is_some()
            || self.cover_meta.is_some()
            || self.cover_path.is_some()
            || self.cover_all;
        if filtered {
            let meta = match &self.cover_meta {
                Some(kv) => {
                    let (k, v) = kv
                        .split_once('=')
                        .with_context(|| format!("--cover-meta {kv:?}: expected KEY=VALUE"))?;
                    Some((k.to_owned(), v.to_owned()))
                }
                None => None,
            };
            let filter = ImageFilter {
                tag: self.cover_tag.clone(),
                meta,
                path_contains: self.cover_path.clone(),
                ..ImageFilter::default()
            };
            let rows = p.list_images(&filter)?;
            let mut said = Vec::new();
            if self.cover_all {
                said.push("every project image".to_owned());
            }
            if let Some(t) = &self.cover_tag {
                said.push(format!("tag {t}"));
            }
            if let Some(m) = &self.cover_meta {
                said.push(m.clone());
            }
            if let Some(t) = &self.cover_path {
                said.push(format!("path containing {t:?}"));
            }
            from.push(format!("the filter {}", said.join(", ")));
            ids.extend(rows.into_iter().map(|r| r.id));
        }
        Ok((ids, Some(from.join(" and "))))
    }
}

pub fn import(p: &mut Project, args: &ImportArgs<'_>) -> Result<()> {
    if args.format == Format::CocoResults {
        if args.allow_missing {
            bail!("--allow-missing applies to label imports; results use --allow-unmapped");
        }
        return import_results(p, args);
    }
    if args.gt.is_some() {
        bail!("--gt only applies to --format coco-results");
    }
    if args.run.is_some() {
        bail!("--run only applies to --format coco-results (model detections)");
    }
    if args.allow_unmapped || !args.coverage.is_empty() {
        bail!("--allow-unmapped, --images-from and --cover-* only apply to --format coco-results");
    }
    let started = std::time::Instant::now();
    let request = FileImport {
        format: args.format,
        path: args.path.to_path_buf(),
        images: args.images.map(Path::to_path_buf),
        state: args.state,
        shapes_as_boxes: args.shapes_as_boxes,
        allow_missing: args.allow_missing,
        existing: args.existing,
        allow_outside: args.allow_outside,
    };
    let bar = TermProgress::new("importing");
    let result = ingest::import_file(p, &request, &bar);
    bar.finish();
    let done = match result {
        Ok(done) => done,
        // The file itself was refused: its error names it.
        Err(e @ IngestError::Format(_)) => return Err(e.into()),
        Err(e) => {
            return Err(e).with_context(|| format!("{}: import refused", args.path.display()));
        }
    };
    let report = &done.report;
    // What did not resolve comes first, before the summary, in both output modes.
    print_unresolved(args.path, report);
    if report.size_mismatches > 0 {
        eprintln!(
            "warning: {} images are not the size {} declares; their boxes were checked against the real size (see the warnings)",
            report.size_mismatches,
            args.path.display()
        );
    }
    if args.json {
        return super::print_json(&done);
    }
    println!(
        "imported {}: {} images ({} already in the project, {} files missing), {} boxes, {} classes, {} skipped in {:.2}s (parse {:.2}s)",
        args.path.display(),
        report.images,
        report.images_matched,
        report.images_missing,
        report.boxes,
        report.classes,
        report.skipped,
        started.elapsed().as_secs_f64(),
        done.parse_seconds
    );
    if report.already_in_project > 0 || report.removed > 0 {
        println!(
            "  {} boxes already in the project not added again{}",
            report.already_in_project,
            if args.existing == ingest::Existing::Replace {
                format!(
                    "; {} labels the file lacks deleted (--replace)",
                    report.removed
                )
            } else {
                String::new()
            }
        );
    }
    if report.stacked > 0 {
        println!(
            "  {} images placed in their stacks (series or multi-frame files) as the file records",
            report.stacked
        );
    }
    if report.proposals > 0 || !done.runs.is_empty() {
        println!(
            "  {} model proposals in {} run(s): {}",
            report.proposals,
            done.runs.len(),
            done.runs
                .iter()
                .map(|r| format!("{} ({} images)", r.name, r.images))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    print_warnings(&report.warnings);
    Ok(())
}

fn print_warnings(warnings: &[crate::model::Warning]) {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for w in warnings {
        *counts.entry(w.kind.as_str()).or_default() += 1;
    }
    for (kind, n) in counts {
        eprintln!("warning: {n} x {kind}");
    }
    for w in warnings.iter().take(20) {
        eprintln!("  {}: {}", w.location, w.message);
    }
    if warnings.len() > 20 {
        eprintln!("  … {} more (use --json for all)", warnings.len() - 20);
    }
}

/// Says on stderr, first, how many listed entries did not resolve and which.
fn print_unresolved(source: &Path, report: &ImportReport) {
    if report.unresolved.is_empty() {
        return;
    }
    let boxes = report.unresolved_boxes();
    let placeholders = if report.images_missing > 0 {
        format!(
            "; {} kept as missing placeholders (`loupe add` attaches them)",
            report.images_missing
        )
    } else {
        String::new()
    };
    let lost = if boxes > 0 {
        format!("; {boxes} of their boxes not imported")
    } else {
        String::new()
    };
    eprintln!(
        "warning: {} unresolved entries in {}{placeholders}{lost}:{}",
        report.unresolved.len(),
        source.display(),
        ingest::describe_unresolved(&report.unresolved)
    );
}

/// `loupe import --format coco-results`: detections mapped onto the project's own images and
/// classes, never creating either (see `crate::results`).
fn import_results(p: &mut Project, args: &ImportArgs<'_>) -> Result<()> {
    let started = std::time::Instant::now();
    let (also_covered, also_covered_from) = args.coverage.resolve(p)?;
    let run = args.run.map_or_else(
        || {
            args.path.file_stem().map_or_else(
                || "results".to_owned(),
                |s| s.to_string_lossy().into_owned(),
            )
        },
        str::to_owned,
    );
    let opts = results::ResultsImport {
        results: args.path.to_path_buf(),
        gt: args.gt.map(Path::to_path_buf),
        images_dir: args.images.map(Path::to_path_buf),
        run,
        allow_unmapped: args.allow_unmapped,
        also_covered,
        also_covered_from,
    };
    let report = results::import_results(p, &opts)
        .with_context(|| format!("{}: import refused", args.path.display()))?;
    if args.json {
        return super::print_json(&report);
    }
    // What was not done comes first.
    if !report.unmapped.is_empty() {
        eprintln!(
            "skipped (--allow-unmapped): {}",
            report.unmapped.summary(report.detections)
        );
    }
    println!(
        "imported {} as run {}: {} of {} detections on {} images; the run covers {} in {:.2}s",
        args.path.display(),
        report.run,
        report.boxes,
        report.detections,
        report.images_with_detections,
        report.coverage,
        started.elapsed().as_secs_f64()
    );
    if report.skipped > 0 {
        println!("{} entries without a bbox skipped", report.skipped);
    }
    print_warnings(&report.warnings);
    Ok(())
}

/// Options of `loupe export`.
pub struct ExportArgs<'a> {
    pub format: Format,
    pub out: &'a Path,
    pub version: Option<&'a str>,
    /// `None`: link, or none for a COCO `.json` file.
    pub images: Option<ImagesMode>,
    pub allow_missing: bool,
    pub split: Option<SplitSpec>,
    pub seed: Option<u64>,
    pub coco_segmentation: bool,
    /// Follow a symbolic link and write into a special file where an export file goes.
    pub force: bool,
}

/// How many renamed or missing images `loupe export` lists by name.
const LISTED: usize = 10;

pub fn export(p: &Project, args: &ExportArgs<'_>) -> Result<()> {
    let format = args.format;
    if format == Format::CocoResults {
        bail!("export to coco-results is not supported: export labels as coco");
    }
    if args.seed.is_some() && args.split.is_none() {
        bail!("--seed only applies with --split");
    }
    if args.coco_segmentation && format != Format::Coco {
        bail!("--coco-segmentation only applies to --format coco");
    }
    let to_stdout = args.out == Path::new("-");
    if to_stdout {
        return export_to_stdout(p, args);
    }
    let is_json_file = args
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let images = args
        .images
        .unwrap_or(if format == Format::Coco && is_json_file {
            ImagesMode::None
        } else {
            ImagesMode::Link
        });
    export_to(p, args, args.out, images, false)
}

/// `loupe export -f FORMAT -`: a single-file format written to standard output (through a
/// temporary folder, as every exporter writes files), the summary to standard error.
fn export_to_stdout(p: &Project, args: &ExportArgs<'_>) -> Result<()> {
    let name = match args.format {
        Format::Coco | Format::LabelStudio | Format::Createml => "export.json",
        Format::Cvat => "export.xml",
        other => bail!(
            "{other} writes a folder of files: `-` (standard output) takes the single-file formats coco, cvat, labelstudio and createml"
        ),
    };
    if args.images.is_some_and(|m| m != ImagesMode::None) {
        bail!("images cannot go to standard output: use --images none or an output path");
    }
    if args.split.is_some() {
        bail!("--split writes a file per split: give an output folder instead of `-`");
    }
    let dir = std::env::temp_dir().join(format!(
        "loupe-export-{}-{}",
        std::process::id(),
        crate::store::now_ms()
    ));
    std::fs::create_dir(&dir)
        .with_context(|| format!("{}: cannot create a temporary folder", dir.display()))?;
    let file = dir.join(name);
    let result = export_to(p, args, &file, ImagesMode::None, true).and_then(|()| {
        let mut from = std::fs::File::open(&file)
            .with_context(|| format!("{}: cannot read the export back", file.display()))?;
        let mut stdout = std::io::stdout().lock();
        std::io::copy(&mut from, &mut stdout).context("cannot write to standard output")?;
        std::io::Write::flush(&mut stdout).context("cannot write to standard output")?;
        Ok(())
    });
    // Best effort: the folder is ours and temporary.
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Writes the export to `out`; the summary goes to standard error when the export itself goes
/// to standard output.
fn export_to(
    p: &Project,
    args: &ExportArgs<'_>,
    out: &Path,
    images: ImagesMode,
    to_stdout: bool,
) -> Result<()> {
    let format = args.format;
    let say = |line: String| {
        if to_stdout {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let started = std::time::Instant::now();
    let dataset = p.dataset_at(args.version)?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis(),
        "export: labels read"
    );
    let settings = ExportSettings {
        images,
        // Images never go to standard output (CreateML would place them beside its file).
        images_root: (!to_stdout).then(|| p.root().to_path_buf()),
        allow_missing: args.allow_missing,
        split: args.split.clone(),
        seed: args.seed.unwrap_or(0),
        coco_segmentation: args.coco_segmentation,
        content_hashes: if args.split.is_some() {
            p.image_hashes()?
        } else {
            std::collections::HashMap::new()
        },
        // Only COCO has a place for them (`images[].extra`); DICOM headers are read for it.
        frames: if format == Format::Coco {
            crate::stacks::frame_refs(p)?
        } else {
            std::collections::HashMap::new()
        },
        force: args.force,
    };
    let shown = if to_stdout { Path::new("-") } else { out };
    let outcome = formats::export_with(format, &dataset, out, &settings)
        .with_context(|| format!("{}: export refused", shown.display()))?;
    // What did not go as asked comes first.
    if !outcome.missing.is_empty() {
        eprintln!(
            "warning: {} of {} images not found; their labels are exported without them (--allow-missing):",
            outcome.missing.len(),
            outcome.report.images
        );
        for m in outcome.missing.iter().take(LISTED) {
            eprintln!("  {}", p.root().join(m).display());
        }
        if outcome.missing.len() > LISTED {
            eprintln!("  … {} more", outcome.missing.len() - LISTED);
        }
    }
    let report = outcome.report;
    say(format!(
        "exported {} ({}): {} images, {} boxes, {} files in {:.2}s to {}",
        args.version.unwrap_or("current"),
        format,
        report.images,
        report.boxes,
        report.files_written,
        started.elapsed().as_secs_f64(),
        shown.display()
    ));
    if images != ImagesMode::None {
        match (&outcome.link_fallback, images) {
            (Some(why), ImagesMode::Link) => say(format!(
                "images: {} hard-linked, {} copied because a hard link failed ({why})",
                outcome.images_linked, outcome.images_copied
            )),
            (_, ImagesMode::Link) => say(format!("images: {} hard-linked", outcome.images_linked)),
            _ => say(format!("images: {} copied", outcome.images_copied)),
        }
    }
    if outcome.splits.len() > 1 || args.split.is_some() {
        let parts: Vec<String> = outcome
            .splits
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        say(format!(
            "splits (seed {}): {}",
            args.seed.unwrap_or(0),
            parts.join(", ")
        ));
    }
    if !outcome.renamed.is_empty() {
        say(format!(
            "{} images renamed (their names clash once folders are dropped):",
            outcome.renamed.len()
        ));
        for (from, to) in outcome.renamed.iter().take(LISTED) {
            say(format!("  {from} -> {to}"));
        }
        if outcome.renamed.len() > LISTED {
            say(format!("  … {} more", outcome.renamed.len() - LISTED));
        }
    }
    for note in &outcome.notes {
        say(format!("note: {note}"));
    }
    Ok(())
}
