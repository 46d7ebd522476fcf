//! `loupe prelabel` and `loupe doctor`: run a local ONNX model over the project's images.
//!
//! The run itself (run record, resume, storing proposals, cancel) is `inference::run`, which the
//! app uses too; this file adds the terminal: a progress bar, Ctrl-C mapped onto the cancel
//! flag (everything finished is kept), and a summary line.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};

use super::TermProgress;
use crate::inference::{
    self, DescriptorOverrides, Detector, ModelDescriptor, PipelineOptions, Provider,
    ProviderChoice, RunEvent, RunName, Selection, SessionOptions,
};
use crate::ingest::Progress;
use crate::store::{ImageFilter, Project};

/// Options of `loupe prelabel`.
pub struct PrelabelArgs<'a> {
    pub model: &'a Path,
    pub run: Option<&'a str>,
    pub preset: Option<&'a str>,
    pub threads: usize,
    pub intra_threads: usize,
    /// Model sessions running at once (0: automatic, see `SessionOptions::automatic`).
    pub sessions: usize,
    /// Where the model runs.
    pub provider: ProviderChoice,
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
    let (detector, split) = load_detector(
        args.model,
        args.preset,
        &args.overrides,
        args.sessions,
        args.intra_threads,
        args.provider,
    )?;
    if let Some(slice) = detector.slice() {
        eprintln!(
            "slicing: windows of {}x{} pixels, overlap {}, boxes merged by {} at {}{}",
            slice.width,
            slice.height,
            slice.overlap,
            slice.merge.as_str(),
            slice.merge_threshold,
            if slice.full_pass {
                ", plus one whole-image pass"
            } else {
                ""
            }
        );
    }
    tracing::info!(
        sessions = split.sessions,
        intra_threads = split.intra_threads,
        "model sessions"
    );
    // The CLI's default name is the model file's stem, resumed or refused like any other name.
    let run_name = args.run.map_or_else(
        || {
            args.model
                .file_stem()
                .map_or_else(|| "model".to_owned(), |s| s.to_string_lossy().into_owned())
        },
        str::to_owned,
    );
    let plan = inference::plan_run(
        &mut project,
        &detector,
        &RunName::Exact(run_name.clone()),
        &Selection::Filter(args.filter.clone()),
        args.limit,
    )?;
    let skipped = plan.skipped;
    if plan.items.is_empty() && skipped == 0 {
        // Said and failed, as `loupe embed` does; a run made just now holds nothing: drop it.
        project.delete_empty_run(plan.run)?;
        anyhow::bail!(
            "nothing to pre-label: the selection has no images{}",
            if plan.missing > 0 {
                format!(" on disk ({} missing)", plan.missing)
            } else {
                String::new()
            }
        );
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
    bar.set_total(plan.items.len() as u64);
    let summary = inference::execute_run(
        &mut project,
        &detector,
        plan,
        PipelineOptions {
            threads: args.threads,
            cancel,
            ..PipelineOptions::default()
        },
        |event| {
            if let RunEvent::Failed { error, .. } = &event {
                bar.message(&format!("skipped: {error}"));
            }
            bar.inc(1);
        },
    );
    bar.finish();
    let summary = summary?;
    let report = summary.pipeline;
    let secs = report.wall.as_secs_f64().max(1e-9);
    eprintln!(
        "run {run_name}: {} images pre-labelled, {skipped} already done, {} failed; {:.2} images/s, {:.1}% of wall time outside the model; {} session(s) x {} intra-op thread(s){}",
        summary.stored,
        summary.failed,
        report.reported as f64 / secs,
        report.overhead_fraction() * 100.0,
        split.sessions,
        split.intra_threads,
        if summary.cancelled {
            " (stopped by Ctrl-C; run again to resume)"
        } else {
            ""
        }
    );
    Ok((summary.stored, skipped, summary.failed))
}

/// Loads the model as `loupe prelabel` and `loupe worker` take it: the descriptor of `preset`
/// (with `overrides`) or the one beside `model`, checked against the installed ONNX Runtime,
/// with its sessions split over this machine's cores. Says on standard error which execution
/// provider runs it (and why a better one is not used), before any image is read, so a slow
/// CPU run is never a surprise. Returns the detector and the session split it was opened with.
pub(super) fn load_detector(
    model: &Path,
    preset: Option<&str>,
    overrides: &DescriptorOverrides,
    sessions: usize,
    intra_threads: usize,
    provider: ProviderChoice,
) -> Result<(Detector, SessionOptions)> {
    let descriptor = match preset {
        Some(name) => ModelDescriptor::preset(name)?.with_overrides(overrides),
        None => ModelDescriptor::load(model, overrides)?,
    };
    // Fails with the installation hint before anything is written.
    inference::runtime_info()?;
    let split = SessionOptions::for_model(model, sessions, intra_threads).with_provider(provider);
    let detector = Detector::load_with(model, descriptor, split)
        .with_context(|| format!("{}: cannot load the model", model.display()))?;
    let report = detector.provider();
    eprintln!("execution provider: {}", report.used.label());
    if let Some(why) = report.fallback_reason() {
        eprintln!("  {why}");
    }
    Ok((detector, split))
}

/// `loupe doctor`: what this installation can do.
pub fn doctor() -> Result<()> {
    println!("loupe {}", env!("CARGO_PKG_VERSION"));
    println!("sqlite {}", crate::store::sqlite_version());
    match inference::runtime_info() {
        Ok(info) => {
            println!("onnxruntime {} ({})", info.version, info.path.display());
            doctor_providers();
        }
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

/// The execution providers: built into the library found, and which one `auto` runs on here
/// (found by running a one-operator model), with the reason better ones are not used.
fn doctor_providers() {
    let names = |list: &[Provider]| {
        list.iter()
            .map(|p| p.label())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match inference::provider::built_in() {
        Ok(built) => println!("execution providers in this library: {}", names(&built)),
        Err(e) => println!("execution providers in this library: unknown: {e}"),
    }
    match inference::provider::probe(ProviderChoice::Auto) {
        Ok(report) => {
            println!("execution provider (auto): {}", report.used.label());
            for (p, why) in &report.skipped {
                println!("  {} not used: {why}", p.label());
            }
        }
        Err(e) => println!("execution provider (auto): none runs: {e}"),
    }
}
