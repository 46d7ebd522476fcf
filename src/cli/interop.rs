//! `loupe import` and `loupe export`: the formats module plus the store, one transaction each.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::TermProgress;
use crate::formats::{self, Format};
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
    // Predictions carried with the labels (Label Studio): one run per model, made before the
    // import transaction like the results run above and removed again if the import is refused.
    let models: Vec<String> = parsed.predictions.iter().map(|p| p.model.clone()).collect();
    let mut prediction_runs = Vec::with_capacity(parsed.predictions.len());
    for predictions in &parsed.predictions {
        let settings = serde_json::json!({
            "source": args.path.display().to_string(),
            "model_version": predictions.model,
        })
        .to_string();
        let made = p.create_run(&NewRun {
            name: predictions.model.clone(),
            kind: "import".into(),
            model_path: None,
            model_hash: None,
            settings,
            settings_hash: None,
            runtime_version: None,
        });
        match made {
            Ok(id) => prediction_runs.push(id),
            Err(e) => {
                delete_runs(p, run.iter().chain(&prediction_runs));
                return Err(e.into());
            }
        }
    }
    let opts = ImportOptions {
        state: args.state,
        run,
        predictions: prediction_runs
            .iter()
            .zip(parsed.predictions)
            .map(|(id, predictions)| (*id, predictions.dataset))
            .collect(),
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
            // The run rows were made before the import transaction; nothing else was written.
            delete_runs(p, run.iter().chain(&prediction_runs));
            return Err(e).with_context(|| format!("{}: import refused", args.path.display()));
        }
    };
    for id in run.iter().chain(&prediction_runs) {
        p.finish_run(*id)?;
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
        if report.proposals > 0 || !prediction_runs.is_empty() {
            println!(
                "  {} model proposals in {} run(s): {}",
                report.proposals,
                prediction_runs.len(),
                opts.predictions
                    .iter()
                    .zip(&models)
                    .map(|((_, d), m)| format!("{m} ({} images)", d.images.len()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
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

/// Removes run rows made for an import that was then refused.
fn delete_runs<'a>(p: &Project, runs: impl Iterator<Item = &'a uuid::Uuid>) {
    for run in runs {
        // Best effort: the row holds nothing but its name, and the refusal is what gets reported.
        let _ = p
            .conn()
            .execute("DELETE FROM runs WHERE uuid=?1", [run.to_string()]);
    }
}
