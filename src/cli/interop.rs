//! `loupe import` and `loupe export`: the formats module plus the store, one transaction each.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::TermProgress;
use crate::formats::{self, ExportSettings, Format, ImagesMode, SplitSpec};
use crate::ingest::{self, ImportOptions};
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
    pub json: bool,
}

pub fn import(p: &mut Project, args: &ImportArgs<'_>) -> Result<()> {
    let started = std::time::Instant::now();
    let parsed = match (args.format, args.gt) {
        (Format::CocoResults, Some(gt)) => formats::import_coco_results_with_gt(args.path, gt)?,
        (_, Some(_)) => bail!("--gt only applies to --format coco-results"),
        (format, None) => formats::import_with(
            format,
            args.path,
            &formats::ImportSettings {
                images_dir: args.images.map(Path::to_path_buf),
                shapes_as_boxes: args.shapes_as_boxes,
            },
        )?,
    };
    let parse_s = started.elapsed().as_secs_f64();
    let images_dir = args
        .images
        .map_or_else(|| parsed.images_dir.clone(), Path::to_path_buf);
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
    };
    let bar = TermProgress::new("importing");
    let result = ingest::import_dataset(
        p,
        &parsed.dataset,
        &images_dir,
        parsed.warnings,
        parsed.skipped,
        &opts,
        &bar,
    );
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
    if args.json {
        super::print_json(&report)?;
    } else {
        println!(
            "imported {}: {} images ({} files missing), {} boxes, {} classes, {} skipped in {:.2}s (parse {:.2}s)",
            args.path.display(),
            report.images,
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
    let started = std::time::Instant::now();
    let dataset = p.dataset_at(args.version)?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis(),
        "export: labels read"
    );
    let settings = ExportSettings {
        images,
        images_root: Some(p.root().to_path_buf()),
        allow_missing: args.allow_missing,
        split: args.split.clone(),
        seed: args.seed.unwrap_or(0),
        coco_segmentation: args.coco_segmentation,
        content_hashes: if args.split.is_some() {
            p.image_hashes()?
        } else {
            std::collections::HashMap::new()
        },
    };
    let outcome = formats::export_with(format, &dataset, args.out, &settings)
        .with_context(|| format!("{}: export refused", args.out.display()))?;
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
    println!(
        "exported {} ({}): {} images, {} boxes, {} files in {:.2}s to {}",
        args.version.unwrap_or("current"),
        format,
        report.images,
        report.boxes,
        report.files_written,
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    if images != ImagesMode::None {
        match (&outcome.link_fallback, images) {
            (Some(why), ImagesMode::Link) => println!(
                "images: {} hard-linked, {} copied because a hard link failed ({why})",
                outcome.images_linked, outcome.images_copied
            ),
            (_, ImagesMode::Link) => println!("images: {} hard-linked", outcome.images_linked),
            _ => println!("images: {} copied", outcome.images_copied),
        }
    }
    if outcome.splits.len() > 1 || args.split.is_some() {
        let parts: Vec<String> = outcome
            .splits
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        println!(
            "splits (seed {}): {}",
            args.seed.unwrap_or(0),
            parts.join(", ")
        );
    }
    if !outcome.renamed.is_empty() {
        println!(
            "{} images renamed (their names clash once folders are dropped):",
            outcome.renamed.len()
        );
        for (from, to) in outcome.renamed.iter().take(LISTED) {
            println!("  {from} -> {to}");
        }
        if outcome.renamed.len() > LISTED {
            println!("  … {} more", outcome.renamed.len() - LISTED);
        }
    }
    for note in &outcome.notes {
        println!("note: {note}");
    }
    Ok(())
}
