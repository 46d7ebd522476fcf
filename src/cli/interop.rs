//! `loupe import` and `loupe export`: the formats module plus the store, one transaction each.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use super::TermProgress;
use crate::formats::{self, Format};
use crate::ingest::{self, ImportOptions, ImportReport, ProjectImages};
use crate::model::ReviewState;
use crate::store::{NewRun, Project};

/// Options of `loupe import`.
pub struct ImportArgs<'a> {
    pub format: Format,
    pub path: &'a Path,
    pub images: Option<&'a Path>,
    pub state: ReviewState,
    pub run: Option<&'a str>,
    pub gt: Option<&'a Path>,
    pub shapes_as_boxes: bool,
    /// Accept an import none of whose images is found (kept as missing placeholders).
    pub allow_missing: bool,
    pub json: bool,
}

pub fn import(p: &mut Project, args: &ImportArgs<'_>) -> Result<()> {
    let started = std::time::Instant::now();
    // The project's images, once: the formats look listed names up in them, and the import
    // attaches boxes to them instead of adding the same images again.
    let known = Arc::new(ProjectImages::load(p)?);
    let mut parsed = match (args.format, args.gt) {
        (Format::CocoResults, Some(gt)) => formats::import_coco_results_with_gt(args.path, gt)?,
        (_, Some(_)) => bail!("--gt only applies to --format coco-results"),
        (format, None) => formats::import_with(
            format,
            args.path,
            &formats::ImportSettings {
                images_dir: args.images.map(Path::to_path_buf),
                shapes_as_boxes: args.shapes_as_boxes,
                known_images: Some(Arc::clone(&known) as Arc<dyn formats::KnownImages>),
            },
        )?,
    };
    let parse_s = started.elapsed().as_secs_f64();
    if let Some(images) = args.images {
        parsed.images_dir = images.to_path_buf();
    }
    let run = if args.format == Format::CocoResults {
        let name = args.run.map_or_else(
            || {
                args.path.file_stem().map_or_else(
                    || "results".to_owned(),
                    |s| s.to_string_lossy().into_owned(),
                )
            },
            str::to_owned,
        );
        let settings = serde_json::json!({ "source": args.path.display().to_string() }).to_string();
        Some(p.create_run(&NewRun {
            name,
            kind: "import".into(),
            model_path: None,
            model_hash: None,
            settings,
            settings_hash: None,
            runtime_version: None,
        })?)
    } else {
        if args.run.is_some() {
            bail!("--run only applies to --format coco-results (model detections)");
        }
        None
    };
    let opts = ImportOptions {
        state: args.state,
        run,
        allow_missing: args.allow_missing,
        known_images: Some(known),
    };
    let bar = TermProgress::new("importing");
    let result = ingest::import_dataset(p, parsed, &opts, &bar);
    bar.finish();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some(run) = run {
                // The run row was made before the import transaction; nothing else was written.
                let _ = p
                    .conn()
                    .execute("DELETE FROM runs WHERE uuid=?1", [run.to_string()]);
            }
            return Err(e).with_context(|| format!("{}: import refused", args.path.display()));
        }
    };
    if let Some(run) = run {
        p.finish_run(run)?;
    }
    // What did not resolve comes first, before the summary, in both output modes.
    print_unresolved(args.path, &report);
    if args.json {
        super::print_json(&report)?;
    } else {
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
            parse_s
        );
        for (kind, n) in report.warning_counts() {
            eprintln!("warning: {n} x {kind}");
        }
        for w in report.warnings.iter().take(20) {
            eprintln!("  {}: {}", w.location, w.message);
        }
        if report.warnings.len() > 20 {
            eprintln!(
                "  … {} more (use --json for all)",
                report.warnings.len() - 20
            );
        }
    }
    Ok(())
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

pub fn export(p: &Project, format: Format, out: &Path, version: Option<&str>) -> Result<()> {
    if format == Format::CocoResults {
        bail!("export to coco-results is not supported: export labels as coco");
    }
    let started = std::time::Instant::now();
    let dataset = p.dataset_at(version)?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis(),
        "export: labels read"
    );
    let report = formats::export(format, &dataset, out, Some(p.root()))?;
    println!(
        "exported {} ({}): {} images, {} boxes, {} files in {:.2}s",
        version.unwrap_or("current"),
        format,
        report.images,
        report.boxes,
        report.files_written,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
