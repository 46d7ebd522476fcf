//! The store writer: a background thread that owns its own connection to the project file and
//! does every write (edits, new classes, tags, adding images) plus the image-list query, in the
//! order asked. It reports each result over a channel the UI polls once per frame.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use eframe::egui;
use uuid::Uuid;

use crate::formats::{self, Format};
use crate::ingest::{self, AddReport, Progress};
use crate::model::Class;
use crate::store::{Edit, ImageFilter, ImageRow, Project};

/// Work for the writer thread.
#[derive(Debug)]
pub enum Request {
    /// Store edits in one transaction.
    Apply(Vec<Edit>),
    /// Create (or find) a class by name.
    EnsureClass(String),
    /// Create (or find) a run by name for proposals made in the app (interpolation).
    EnsureRun(String),
    /// List images for the image panel; `generation` tells stale answers apart.
    ListImages {
        filter: ImageFilter,
        generation: u64,
    },
    /// Set or clear a tag on an image.
    SetTag { image: Uuid, tag: String, on: bool },
    /// Add image files or folders to the project.
    AddImages(Vec<PathBuf>),
    /// Import a labels file or folder in one transaction (labels become approved boxes, as
    /// with `loupe import`).
    Import { format: Format, path: PathBuf },
    /// Export the current labels (after every edit queued before it).
    Export { format: Format, out: PathBuf },
    /// A data-loop write (batches, audits, tags, metadata, profile) through `crate::review`.
    Lead(super::lead::LeadWrite),
    /// Resolve a sync conflict (after every edit queued before it), signed with the key in
    /// `key_dir` (default: the user's config folder).
    Resolve {
        annotation: Uuid,
        take: crate::sync::Take,
        key_dir: Option<PathBuf>,
    },
    /// Answer `Flushed` once everything before it is done.
    Flush,
}

/// What the writer did.
#[derive(Debug)]
pub enum Reply {
    /// A batch of edits is durable.
    Applied,
    /// A batch of edits could not be stored; they are handed back so nothing is lost.
    Failed {
        edits: Vec<Edit>,
        error: String,
    },
    ClassReady(Result<Class, String>),
    RunReady(Result<uuid::Uuid, String>),
    Images {
        generation: u64,
        rows: Result<Vec<ImageRow>, String>,
    },
    TagSet(Result<(), String>),
    ImagesAdded(Result<AddReport, String>),
    /// A one-line summary of an import, or why it was refused.
    Imported(Result<String, String>),
    /// A one-line summary of an export, or why it failed.
    Exported(Result<String, String>),
    /// What a `Request::Lead` did.
    Lead(super::lead::LeadDone),
    /// A sync conflict resolved (the box as stored now), or why not.
    Resolved {
        annotation: Uuid,
        result: Result<crate::model::Annotation, String>,
    },
    Flushed,
}

/// Counts of an `AddImages` in progress, shared with the status bar.
#[derive(Debug, Default)]
pub struct AddProgress {
    pub total: AtomicU64,
    pub done: AtomicU64,
}

impl Progress for AddProgress {
    fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }
    fn inc(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
    fn message(&self, _: &str) {}
}

/// Whether the user's work is on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaveState {
    Saved,
    /// Batches sent and not yet confirmed.
    Saving(usize),
    /// Some edits could not be stored (they are kept for a retry).
    Failed(String),
}

/// The UI's handle on the writer thread.
pub struct StoreWriter {
    tx: Option<Sender<Request>>,
    rx: Receiver<Reply>,
    thread: Option<JoinHandle<()>>,
    in_flight: usize,
    failed: Vec<Vec<Edit>>,
    last_error: Option<String>,
    /// Progress of the running `AddImages`, if any.
    pub add_progress: Arc<AddProgress>,
}

impl StoreWriter {
    /// Opens a second connection to `path` on a new thread named `loupe-store-writer`.
    pub fn start(path: PathBuf, ctx: egui::Context) -> anyhow::Result<StoreWriter> {
        let project = Project::open(&path)?;
        let (tx, requests) = crossbeam_channel::unbounded::<Request>();
        let (replies, rx) = crossbeam_channel::unbounded::<Reply>();
        let add_progress = Arc::new(AddProgress::default());
        let progress = Arc::clone(&add_progress);
        let thread = std::thread::Builder::new()
            .name("loupe-store-writer".into())
            .spawn(move || writer_loop(project, &requests, &replies, &ctx, &progress))?;
        Ok(StoreWriter {
            tx: Some(tx),
            rx,
            thread: Some(thread),
            in_flight: 0,
            failed: Vec::new(),
            last_error: None,
            add_progress,
        })
    }

    /// Queues a request. Never blocks.
    pub fn send(&mut self, request: Request) {
        if let Request::Apply(edits) = &request {
            if edits.is_empty() {
                return;
            }
            self.in_flight += 1;
        }
        let Some(tx) = &self.tx else {
            return;
        };
        if let Err(e) = tx.send(request) {
            // The thread is gone (it panicked): keep the edits for a retry and say so.
            if let Request::Apply(edits) = e.0 {
                self.in_flight = self.in_flight.saturating_sub(1);
                self.failed.push(edits);
            }
            self.last_error = Some("the store writer stopped".into());
            tracing::error!("store writer thread is gone; edits kept in memory");
        }
    }

    /// Takes the replies that have arrived, without blocking.
    pub fn poll(&mut self) -> Vec<Reply> {
        let mut out = Vec::new();
        while let Ok(reply) = self.rx.try_recv() {
            out.push(self.track(reply));
        }
        out.retain(|r| !matches!(r, Reply::Flushed));
        out
    }

    fn track(&mut self, reply: Reply) -> Reply {
        match &reply {
            Reply::Applied => {
                self.in_flight = self.in_flight.saturating_sub(1);
            }
            Reply::Failed { edits, error } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                self.failed.push(edits.clone());
                self.last_error = Some(error.clone());
            }
            _ => {}
        }
        reply
    }

    /// Blocks until every request sent so far is done and returns the replies. For tests,
    /// benchmarks and shutdown; the UI itself never waits.
    pub fn flush(&mut self) -> Vec<Reply> {
        let mut out = Vec::new();
        let Some(tx) = &self.tx else {
            return out;
        };
        if tx.send(Request::Flush).is_err() {
            return out;
        }
        while let Ok(reply) = self.rx.recv() {
            if matches!(reply, Reply::Flushed) {
                break;
            }
            out.push(self.track(reply));
        }
        out
    }

    /// Sends every failed batch again.
    pub fn retry_failed(&mut self) {
        self.last_error = None;
        for edits in std::mem::take(&mut self.failed) {
            self.send(Request::Apply(edits));
        }
    }

    /// Saved, saving or failed.
    pub fn state(&self) -> SaveState {
        if let Some(e) = &self.last_error
            && !self.failed.is_empty()
        {
            return SaveState::Failed(e.clone());
        }
        if self.in_flight > 0 {
            SaveState::Saving(self.in_flight)
        } else {
            SaveState::Saved
        }
    }

    /// Edits kept after a failure.
    pub fn failed_edits(&self) -> usize {
        self.failed.iter().map(Vec::len).sum()
    }
}

impl Drop for StoreWriter {
    /// Closing the channel lets the thread finish the queue; joining waits for it, so quitting
    /// the app never drops an edit that was made.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the store writer thread panicked while finishing its queue");
        }
    }
}

fn writer_loop(
    mut project: Project,
    requests: &Receiver<Request>,
    replies: &Sender<Reply>,
    ctx: &egui::Context,
    progress: &AddProgress,
) {
    let mut next = None;
    loop {
        let request = match next.take() {
            Some(r) => r,
            None => match requests.recv() {
                Ok(r) => r,
                Err(_) => return,
            },
        };
        let reply = match request {
            Request::Apply(mut edits) => {
                // Merge queued edit batches into one transaction: one fsync instead of many.
                let mut batches = vec![edits.len()];
                while let Ok(more) = requests.try_recv() {
                    if let Request::Apply(more) = more {
                        batches.push(more.len());
                        edits.extend(more);
                    } else {
                        next = Some(more);
                        break;
                    }
                }
                apply_batches(&mut project, edits, &batches, replies);
                ctx.request_repaint();
                continue;
            }
            Request::EnsureClass(name) => {
                Reply::ClassReady(project.ensure_class(&name).map_err(|e| e.to_string()))
            }
            Request::EnsureRun(name) => Reply::RunReady(
                match project.run_by_name(&name) {
                    Ok(run) => Ok(run.id),
                    Err(_) => project
                        .create_run(&crate::store::NewRun {
                            name: name.clone(),
                            kind: name,
                            settings: "{}".into(),
                            ..crate::store::NewRun::default()
                        })
                        .and_then(|id| project.finish_run(id).map(|()| id)),
                }
                .map_err(|e| e.to_string()),
            ),
            Request::ListImages { filter, generation } => Reply::Images {
                generation,
                rows: project.list_images(&filter).map_err(|e| e.to_string()),
            },
            Request::SetTag { image, tag, on } => {
                Reply::TagSet(project.set_tag(image, &tag, on).map_err(|e| e.to_string()))
            }
            Request::AddImages(paths) => {
                progress.total.store(0, Ordering::Relaxed);
                progress.done.store(0, Ordering::Relaxed);
                Reply::ImagesAdded(
                    ingest::add(&mut project, &paths, progress).map_err(|e| e.to_string()),
                )
            }
            Request::Import { format, path } => {
                Reply::Imported(import(&mut project, format, &path, progress))
            }
            Request::Export { format, out } => Reply::Exported(export(&project, format, &out)),
            Request::Lead(w) => Reply::Lead(super::lead::perform(&mut project, w)),
            Request::Resolve {
                annotation,
                take,
                key_dir,
            } => Reply::Resolved {
                annotation,
                result: crate::sync::resolve_conflict_with(
                    project.path(),
                    None,
                    key_dir.as_deref(),
                    annotation,
                    &take,
                )
                .map_err(|e| e.to_string()),
            },
            Request::Flush => Reply::Flushed,
        };
        if replies.send(reply).is_err() {
            return;
        }
        ctx.request_repaint();
    }
}

fn import(
    project: &mut Project,
    format: Format,
    path: &std::path::Path,
    progress: &AddProgress,
) -> Result<String, String> {
    progress.total.store(0, Ordering::Relaxed);
    progress.done.store(0, Ordering::Relaxed);
    // The same import as `loupe import`: listed names are also looked up among the project's
    // images, COCO ids are recorded, predictions carried with the labels become runs.
    let request = ingest::FileImport {
        format,
        path: path.to_path_buf(),
        images: None,
        state: crate::model::ReviewState::Approved,
        shapes_as_boxes: false,
        allow_missing: false,
        existing: ingest::Existing::Refuse,
        allow_outside: false,
    };
    let done = ingest::import_file(project, &request, progress).map_err(|e| e.to_string())?;
    let report = &done.report;
    // What did not resolve comes first, as on the command line.
    let unresolved = if report.unresolved.is_empty() {
        String::new()
    } else {
        let first = &report.unresolved[0];
        format!(
            "{} entries unresolved, first {}: {} (all in the log); ",
            report.unresolved.len(),
            first.entry,
            first.reason
        )
    };
    let runs = if done.runs.is_empty() {
        String::new()
    } else {
        format!(
            "; {} model proposals in run(s) {}",
            report.proposals,
            done.runs
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    for u in &report.unresolved {
        tracing::warn!("{}: {}: {}", path.display(), u.entry, u.reason);
    }
    Ok(format!(
        "{unresolved}Imported {} boxes on {} images ({} already in the project, {} classes, {} skipped, {} warnings){}",
        report.boxes,
        report.images,
        report.images_matched,
        report.classes,
        report.skipped,
        report.warnings.len(),
        runs
    ))
}

fn export(project: &Project, format: Format, out: &std::path::Path) -> Result<String, String> {
    let dataset = project.dataset_at(None).map_err(|e| e.to_string())?;
    let report =
        formats::export(format, &dataset, out, Some(project.root())).map_err(|e| e.to_string())?;
    Ok(format!(
        "Exported {} boxes on {} images to {}",
        report.boxes,
        report.images,
        out.display()
    ))
}

/// Stores merged batches in one transaction; if that fails, each batch alone, so one bad
/// batch does not hold back the others.
fn apply_batches(
    project: &mut Project,
    edits: Vec<Edit>,
    batches: &[usize],
    replies: &Sender<Reply>,
) {
    match project.apply(&edits) {
        Ok(_) => {
            for _ in batches {
                let _ = replies.send(Reply::Applied);
            }
        }
        Err(e) if batches.len() == 1 => {
            tracing::error!("could not store {} edit(s): {e}", edits.len());
            let _ = replies.send(Reply::Failed {
                edits,
                error: e.to_string(),
            });
        }
        Err(_) => {
            let mut rest = edits.into_iter();
            for n in batches {
                let batch: Vec<Edit> = rest.by_ref().take(*n).collect();
                let reply = match project.apply(&batch) {
                    Ok(_) => Reply::Applied,
                    Err(e) => {
                        tracing::error!("could not store {} edit(s): {e}", batch.len());
                        Reply::Failed {
                            edits: batch,
                            error: e.to_string(),
                        }
                    }
                };
                let _ = replies.send(reply);
            }
        }
    }
}
