//! `loupe prelabel` and `loupe doctor`: run a local ONNX model over the project's images.
//!
//! Decoding and preprocessing run in parallel ahead of the model (`inference::run_pipeline`);
//! results go to a writer thread that stores each image's proposals in one transaction, so the
//! model never waits on the disk. Ctrl-C keeps everything finished; a rerun with the same model
//! file and settings skips the images already done.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};

use super::TermProgress;
use crate::inference::{self, DescriptorOverrides, Detector, ModelDescriptor, PipelineOptions};
use crate::ingest::Progress;
use crate::store::{ImageFilter, NewRun, Project, RunImageTiming};

/// Options of `loupe prelabel`.
pub struct PrelabelArgs<'a> {
    pub model: &'a Path,
    pub run: Option<&'a str>,
    pub preset: Option<&'a str>,
    pub threads: usize,
    pub intra_threads: usize,
    pub filter: ImageFilter,
    pub overrides: DescriptorOverrides,
    pub limit: Option<usize>,
}

/// Runs the model; returns (images done now, images skipped as already done, failures).
pub fn prelabel(
    project_path: &Path,
    user: Option<&str>,
    args: &PrelabelArgs<'_>,
) -> Result<(usize, usize, usize)> {
    let mut project = Project::open(project_path)?;
    if let Some(u) = user {
        project.act_as(u)?;
    }
    let descriptor = match args.preset {
        Some(name) => ModelDescriptor::preset(name)?.with_overrides(&args.overrides),
        None => ModelDescriptor::load(args.model, &args.overrides)?,
    };
    let runtime = inference::runtime_info()?;
    let detector = Detector::load(args.model, descriptor, args.intra_threads)
        .with_context(|| format!("{}: cannot load the model", args.model.display()))?;
    let settings = detector.descriptor().to_toml();
    let settings_hash = blake3::hash(settings.as_bytes()).to_hex().to_string();
    let model_hash = detector.model_hash().to_owned();
    let run_name = args.run.map_or_else(
        || {
            args.model
                .file_stem()
                .map_or_else(|| "model".to_owned(), |s| s.to_string_lossy().into_owned())
        },
        str::to_owned,
    );
    // Reuse a run of the same name when it is the same model and settings (a resume).
    let run = match project.runs()?.into_iter().find(|r| r.name == run_name) {
        Some(r)
            if r.model_hash.as_deref() == Some(&model_hash)
                && r.settings_hash.as_deref() == Some(&settings_hash) =>
        {
            r.id
        }
        Some(_) => bail!(
            "a run named {run_name:?} exists with another model or other settings; choose another --run name"
        ),
        None => project.create_run(&NewRun {
            name: run_name.clone(),
            kind: "onnx".into(),
            model_path: Some(args.model.display().to_string()),
            model_hash: Some(model_hash.clone()),
            settings: serde_json::json!({
                "descriptor": settings,
                "runtime_path": runtime.path.display().to_string(),
            })
            .to_string(),
            settings_hash: Some(settings_hash.clone()),
            runtime_version: Some(runtime.version.clone()),
        })?,
    };
    let done = project.images_done_by(&model_hash, &settings_hash)?;
    let images = project.list_images(&args.filter)?;
    let mut items: Vec<(uuid::Uuid, PathBuf)> = Vec::new();
    let mut skipped = 0;
    for img in &images {
        if done.contains(&img.id) {
            skipped += 1;
            continue;
        }
        if img.missing {
            continue;
        }
        items.push((img.id, project.root().join(&img.path)));
    }
    if let Some(limit) = args.limit {
        items.truncate(limit);
    }
    let class_names: Vec<String> = detector.class_names().to_vec();
    // The model's classes, in the model's order, so the class list matches its indices.
    for name in &class_names {
        project.ensure_class(name)?;
    }
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        // A second Ctrl-C while stopping falls back to the default (exit at once): everything
        // stored so far is committed, so nothing is lost either way.
        let _ = ctrlc::set_handler(move || {
            if cancel.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("stopping: finishing the image in flight (Ctrl-C again to quit now)");
        });
    }
    let bar = TermProgress::new("pre-labelling");
    bar.set_total(items.len() as u64);
    let (tx, rx) = crossbeam_channel::unbounded::<(
        uuid::Uuid,
        Vec<(String, crate::model::BBox, f32)>,
        RunImageTiming,
    )>();
    let mut failures = 0usize;
    let writer = std::thread::Builder::new()
        .name("loupe-prelabel-writer".into())
        .spawn(move || -> Result<(Project, usize)> {
            let mut written = 0;
            for (image, boxes, timing) in rx {
                project.add_proposals(run, image, &boxes, timing)?;
                written += 1;
            }
            project.finish_run(run)?;
            Ok((project, written))
        })
        .context("cannot start the writer thread")?;
    let report = inference::run_pipeline(
        items,
        &detector,
        PipelineOptions {
            threads: args.threads,
            cancel: cancel.clone(),
        },
        |image, result| {
            match result {
                Ok(dets) => {
                    let boxes = dets
                        .detections
                        .iter()
                        .map(|d| {
                            let name = class_names
                                .get(d.class)
                                .cloned()
                                .unwrap_or_else(|| format!("class_{}", d.class));
                            (name, d.bbox, d.score)
                        })
                        .collect();
                    let timing = RunImageTiming {
                        decode_ms: dets.timings.preprocess_ms,
                        infer_ms: dets.timings.inference_ms,
                    };
                    // The writer only stops on a store error, which `join` reports below.
                    let _ = tx.send((image, boxes, timing));
                }
                Err(e) => {
                    failures += 1;
                    bar.message(&format!("skipped: {e}"));
                }
            }
            bar.inc(1);
        },
    );
    drop(tx);
    bar.finish();
    let (_project, written) = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))??;
    let secs = report.wall.as_secs_f64().max(1e-9);
    eprintln!(
        "run {run_name}: {written} images pre-labelled, {skipped} already done, {failures} failed; {:.2} images/s, {:.1}% of wall time outside the model{}",
        report.reported as f64 / secs,
        report.overhead_fraction() * 100.0,
        if report.cancelled {
            " (stopped by Ctrl-C; run again to resume)"
        } else {
            ""
        }
    );
    Ok((written, skipped, failures))
}

/// `loupe doctor`: what this installation can do.
pub fn doctor() -> Result<()> {
    println!("loupe {}", env!("CARGO_PKG_VERSION"));
    println!("sqlite {}", rusqlite::version());
    match inference::runtime_info() {
        Ok(info) => println!("onnxruntime {} ({})", info.version, info.path.display()),
        Err(e) => println!("onnxruntime: not available: {e}"),
    }
    println!(
        "gui: {}",
        if cfg!(feature = "gui") {
            "yes"
        } else {
            "no (built without the `gui` feature)"
        }
    );
    Ok(())
}
