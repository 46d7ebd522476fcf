//! `loupe worker`: pre-label one shard of a team's images on a machine with no copy of the
//! project, and deliver the proposals through the shared store.
//!
//! A worker keeps a working project of its own (in `--work`, by default a folder of the cache
//! named after the store's URL) that is nothing but a cache of the store: it pulls the team's
//! packs (the project's image list, earlier coverage of the run by every worker), fetches the
//! files of its shard by content hash (from the store's `images/`, or from `--images-from`: a
//! mounted folder or a bucket prefix holding the images under their project paths), runs the
//! model on them in chunks, and pushes each chunk's proposals and coverage as signed packs. The
//! run is shared (`inference::RunName::Team`): every worker of one name, model and settings
//! writes into the same run id, so the desktop sees one run. A rerun, on the same work folder or
//! a new one, skips every image the run already covered, whoever covered it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use uuid::Uuid;

use crate::inference::{
    self, DescriptorOverrides, PipelineOptions, ProviderChoice, RunEvent, RunName, Selection,
};
use crate::store::{ImageFilter, Project, Shard};
use crate::sync::{self, PublicKey, RemoteSpec, RemoteStore, SyncOptions};

/// What `loupe worker` was asked to do.
pub struct WorkerArgs<'a> {
    pub remote: &'a str,
    pub endpoint: Option<&'a str>,
    pub region: Option<&'a str>,
    pub allow_http: bool,
    pub owner: Option<&'a str>,
    pub model: &'a Path,
    pub preset: Option<&'a str>,
    pub run: &'a str,
    pub shard: Option<&'a str>,
    pub images_from: Option<&'a str>,
    pub work: Option<&'a Path>,
    pub chunk: usize,
    pub keep_images: bool,
    pub threads: usize,
    pub intra_threads: usize,
    pub sessions: usize,
    pub provider: ProviderChoice,
    pub overrides: DescriptorOverrides,
    /// Stop after this many images (tests: a worker stopped midway).
    pub limit: Option<usize>,
}

/// What a worker did.
#[derive(Debug, Default, serde::Serialize)]
pub struct WorkerReport {
    pub shard: String,
    /// Images the project's list holds, and those in this shard.
    pub listed: usize,
    pub in_shard: usize,
    /// Images of the shard the run had covered before (any worker).
    pub already_done: usize,
    pub processed: usize,
    pub proposals: usize,
    pub failed: usize,
    pub fetched: usize,
    pub pushed_packs: usize,
    pub elapsed_s: f64,
}

const REMOTE: &str = "origin";

/// Runs the worker; the report says what it did. Images that could not be fetched or read are
/// counted in `failed` (and named on standard error).
pub fn worker(args: &WorkerArgs<'_>) -> Result<WorkerReport> {
    let started = std::time::Instant::now();
    let spec = RemoteSpec {
        url: store_url(args.remote)?,
        endpoint: args.endpoint.map(str::to_owned),
        region: args.region.map(str::to_owned),
        profile: None,
        allow_http: args.allow_http,
        credentials: None,
    };
    let config_dir = sync::keys::config_dir()?;
    let key_file = sync::keys::key_path(&config_dir);
    if !key_file.is_file() {
        bail!(
            "no signing key at {}: a worker signs as a team member. Create one there with \
             `LOUPE_CONFIG_DIR={} loupe team key` and have the owner add it with \
             `loupe team add <name> --role model --key <KEY>`",
            key_file.display(),
            config_dir.display()
        );
    }
    let shard = match args.shard {
        Some(text) => Some(Shard::parse(text).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let work = match args.work {
        Some(dir) => dir.to_path_buf(),
        None => crate::imaging::tiles::default_cache_dir()
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
            .join("workers")
            .join(&blake3::hash(spec.url.as_bytes()).to_hex()[..16]),
    };
    std::fs::create_dir_all(&work)
        .with_context(|| format!("{}: cannot create the work folder", work.display()))?;
    let project_path = work.join("worker.loupe");
    if !project_path.exists() {
        Project::create(&project_path)?;
    }
    {
        let mut project = Project::open(&project_path)?;
        let known = project.sync_remotes()?;
        if !known
            .iter()
            .any(|r| r.name == REMOTE && r.spec.url == spec.url)
        {
            let owner = args.owner.map(PublicKey::parse).transpose()?;
            sync::remote_add(&mut project, REMOTE, &spec, owner.as_ref())?;
        }
    }
    let quiet = crate::ingest::NoProgress;
    let pull = SyncOptions {
        remote: Some(REMOTE.into()),
        push: false,
        pull: true,
        ..SyncOptions::default()
    };
    let pulled = sync::sync_with(&project_path, &pull, &quiet)?;
    for r in &pulled.refused {
        eprintln!("refused: {}", r.reason);
    }

    let (detector, _) = super::prelabel::load_detector(
        args.model,
        args.preset,
        &args.overrides,
        args.sessions,
        args.intra_threads,
        args.provider,
    )?;

    let mut project = Project::open(&project_path)?;
    let all = project.list_images(&ImageFilter::default())?;
    let mut report = WorkerReport {
        shard: shard.map_or_else(|| "all".to_owned(), |s| format!("{}/{}", s.index, s.count)),
        listed: all.len(),
        ..WorkerReport::default()
    };
    if all.is_empty() {
        bail!(
            "{}: the store lists no images of the project: a desktop puts its images in the list \
             with `loupe sync` (and their files with `loupe sync --images`)",
            spec.url
        );
    }
    let filter = ImageFilter {
        shard,
        ..ImageFilter::default()
    };
    let rows = project.list_images(&filter)?;
    report.in_shard = rows.len();
    let (model_hash, settings_hash) = inference::run_hashes(&detector);
    let run_id = inference::team_run_id(args.run, &model_hash, &settings_hash);
    let done = project.images_done_by_run(run_id)?;
    let todo: Vec<_> = rows.into_iter().filter(|r| !done.contains(&r.id)).collect();
    report.already_done = report.in_shard - todo.len();
    let todo: Vec<_> = match args.limit {
        Some(n) => todo.into_iter().take(n).collect(),
        None => todo,
    };
    eprintln!(
        "worker: shard {} holds {} of the {} listed images; {} already done by the run {:?}, {} to do",
        report.shard,
        report.in_shard,
        report.listed,
        report.already_done,
        args.run,
        todo.len()
    );

    let hashes: HashMap<Uuid, String> = project
        .log_images_missing()?
        .into_iter()
        .map(|(id, hash, _)| (id, hash))
        .collect();
    let store = RemoteStore::open(&spec, None)?;
    let source = match args.images_from {
        Some(from) if from.contains("://") && !from.starts_with("file://") => {
            let mut s = spec.clone();
            s.url = from.to_owned();
            Source::Store(RemoteStore::open(&s, None)?)
        }
        Some(from) => Source::Folder(PathBuf::from(from.strip_prefix("file://").unwrap_or(from))),
        None => Source::Blobs,
    };
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        let _ = ctrlc::set_handler(move || {
            if cancel.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("stopping: finishing the images in flight, then pushing them");
        });
    }
    let push = SyncOptions {
        remote: Some(REMOTE.into()),
        push: true,
        pull: false,
        ..SyncOptions::default()
    };
    for chunk in todo.chunks(args.chunk.max(1)) {
        if cancel.load(Ordering::SeqCst) {
            break;
        }
        // Fetch what is not here, checked against its content hash.
        let mut fetched = Vec::new();
        let mut ready = Vec::new();
        for row in chunk {
            if !row.missing {
                ready.push(row.id);
                continue;
            }
            let Some(hash) = hashes.get(&row.id) else {
                eprintln!("{}: no content hash known; skipped", row.path);
                report.failed += 1;
                continue;
            };
            match fetch(&source, &store, &work, &row.path, hash) {
                Ok(bytes) => {
                    project.log_image_found(row.id, bytes)?;
                    fetched.push((row.id, work.join(&row.path)));
                    ready.push(row.id);
                }
                Err(e) => {
                    eprintln!("{}: {e:#}", row.path);
                    report.failed += 1;
                }
            }
        }
        report.fetched += fetched.len();
        if !ready.is_empty() {
            let plan = inference::plan_run(
                &mut project,
                &detector,
                &RunName::Team(args.run.to_owned()),
                &Selection::Images(ready),
                None,
            )?;
            let summary = inference::execute_run(
                &mut project,
                &detector,
                plan,
                PipelineOptions {
                    threads: args.threads,
                    cancel: cancel.clone(),
                    ..PipelineOptions::default()
                },
                |event| {
                    if let RunEvent::Failed { error, .. } = &event {
                        eprintln!("skipped: {error}");
                    }
                },
            )?;
            report.processed += summary.stored;
            report.proposals += summary.proposals;
            report.failed += summary.failed;
        }
        let pushed = sync::sync_with(&project_path, &push, &quiet)?;
        report.pushed_packs += pushed.pushed_packs;
        if !args.keep_images {
            for (id, path) in fetched {
                let _ = std::fs::remove_file(&path);
                project.log_image_gone(id)?;
            }
        }
        eprintln!(
            "worker: {} of {} done, {} proposals, {} failed, {} packs pushed ({:.1} images/s)",
            report.processed,
            todo.len(),
            report.proposals,
            report.failed,
            report.pushed_packs,
            report.processed as f64 / started.elapsed().as_secs_f64().max(1e-9)
        );
    }
    report.elapsed_s = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Where a worker's image files come from.
enum Source {
    /// The shared store's `images/<blake3>` (pushed by `loupe sync --images`).
    Blobs,
    /// A mounted folder holding the images under their project paths.
    Folder(PathBuf),
    /// A bucket prefix holding the images under their project paths.
    Store(RemoteStore),
}

/// Fetches one image into the work folder under its project path; returns its size. The bytes
/// must have the content hash the project lists.
fn fetch(source: &Source, store: &RemoteStore, work: &Path, path: &str, hash: &str) -> Result<u64> {
    if Path::new(path).is_absolute() || path.split(['/', '\\']).any(|c| c == "..") {
        bail!("the listed path leaves the project folder; refused");
    }
    // A frame of a multi-frame file is its file.
    let (hash, path) = match (hash.split_once("#frame="), path.split_once("#frame=")) {
        (Some((h, _)), Some((p, _))) => (h, p),
        _ => (hash, path),
    };
    let bytes = match source {
        Source::Blobs => store
            .get(&format!("images/{hash}"))?
            .with_context(|| {
                format!(
                    "{}: images/{hash} is not in the store (a desktop pushes files with `loupe sync --images`, or give --images-from)",
                    store.url()
                )
            })?
            .to_vec(),
        Source::Folder(dir) => {
            let file = dir.join(path);
            std::fs::read(&file).with_context(|| format!("{}", file.display()))?
        }
        Source::Store(images) => images
            .get(path)?
            .with_context(|| format!("{}: {path} is not there", images.url()))?
            .to_vec(),
    };
    let got = blake3::hash(&bytes).to_hex();
    if got.as_str() != hash {
        bail!("the fetched file's content hash is {got}, the project lists {hash}; refused");
    }
    let dest = work.join(path);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("{}", parent.display()))?;
    }
    let tmp = dest.with_extension("part");
    std::fs::write(&tmp, &bytes).with_context(|| format!("{}", tmp.display()))?;
    std::fs::rename(&tmp, &dest).with_context(|| format!("{}", dest.display()))?;
    Ok(bytes.len() as u64)
}

/// A folder path becomes a `file://` URL; URLs pass through.
fn store_url(given: &str) -> Result<String> {
    if given.contains("://") {
        return Ok(given.to_owned());
    }
    let abs = std::path::absolute(given).with_context(|| format!("{given}: not a folder path"))?;
    Ok(format!("file://{}", abs.display()))
}
