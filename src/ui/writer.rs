//! The store writer: a background thread that owns its own connection to the project file and
//! does every write (edits, new classes, tags, adding images) plus the image-list query, in the
//! order asked. It reports each result over a channel the UI polls once per frame.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use eframe::egui;
use uuid::Uuid;

use super::workers::{self, WorkerDeath};
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
    /// Add a visit's measured time to the current user's totals for its image.
    RecordTime(crate::store::TimeVisit),
    /// Answer `Flushed` once everything before it is done.
    Flush,
    /// Panics on the writer thread (tests of what a dying writer does to queued edits).
    #[cfg(test)]
    Panic(&'static str),
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
    /// A visit's time is stored, or why not.
    TimeRecorded(Result<(), String>),
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
///
/// Every batch of edits sent is kept here until the writer confirms it (`Applied`) or hands it
/// back (`Failed`): if the thread dies (a panic, caught by [`workers::spawn`]), the batches it
/// had not confirmed become failed batches, the state says so with the panic's message, a new
/// writer thread (a new connection) takes over, and Retry sends them again. Nothing queued is
/// lost silently and the status bar never says "saving" for a thread that is gone.
pub struct StoreWriter {
    path: PathBuf,
    ctx: egui::Context,
    tx: Option<Sender<Request>>,
    rx: Receiver<Reply>,
    thread: Option<JoinHandle<Result<(), WorkerDeath>>>,
    /// Batches sent and not yet confirmed, oldest first (replies come in the same order).
    unconfirmed: VecDeque<Vec<Edit>>,
    failed: Vec<Vec<Edit>>,
    last_error: Option<String>,
    /// Progress of the running `AddImages`, if any.
    pub add_progress: Arc<AddProgress>,
}

/// The thread's name.
const THREAD: &str = "loupe-store-writer";

impl StoreWriter {
    /// Opens a second connection to `path` on a new thread named `loupe-store-writer`.
    pub fn start(path: PathBuf, ctx: egui::Context) -> anyhow::Result<StoreWriter> {
        let add_progress = Arc::new(AddProgress::default());
        let (tx, rx, thread) = Self::spawn_thread(&path, &ctx, &add_progress)?;
        Ok(StoreWriter {
            path,
            ctx,
            tx: Some(tx),
            rx,
            thread: Some(thread),
            unconfirmed: VecDeque::new(),
            failed: Vec::new(),
            last_error: None,
            add_progress,
        })
    }

    #[allow(clippy::type_complexity)]
    fn spawn_thread(
        path: &std::path::Path,
        ctx: &egui::Context,
        add_progress: &Arc<AddProgress>,
    ) -> anyhow::Result<(
        Sender<Request>,
        Receiver<Reply>,
        JoinHandle<Result<(), WorkerDeath>>,
    )> {
        let project = Project::open(path)?;
        let (tx, requests) = crossbeam_channel::unbounded::<Request>();
        let (replies, rx) = crossbeam_channel::unbounded::<Reply>();
        let progress = Arc::clone(add_progress);
        let thread_ctx = ctx.clone();
        let thread = workers::spawn(ctx, THREAD, move || {
            writer_loop(project, &requests, &replies, &thread_ctx, &progress);
        })?;
        Ok((tx, rx, thread))
    }

    /// Queues a request. Never blocks.
    pub fn send(&mut self, request: Request) {
        if let Request::Apply(edits) = &request {
            if edits.is_empty() {
                return;
            }
            self.unconfirmed.push_back(edits.clone());
        }
        let Some(tx) = &self.tx else {
            return;
        };
        if tx.send(request).is_err() {
            // The thread is gone: what it had not confirmed (this batch too) is kept as failed.
            self.writer_died();
        }
    }

    /// Takes the replies that have arrived, without blocking. Notices a writer that died.
    pub fn poll(&mut self) -> Vec<Reply> {
        let mut out = Vec::new();
        loop {
            match self.rx.try_recv() {
                Ok(reply) => out.push(self.track(reply)),
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    self.writer_died();
                    break;
                }
            }
        }
        out.retain(|r| !matches!(r, Reply::Flushed));
        out
    }

    fn track(&mut self, reply: Reply) -> Reply {
        match &reply {
            Reply::Applied => {
                self.unconfirmed.pop_front();
            }
            Reply::Failed { edits, error } => {
                self.unconfirmed.pop_front();
                self.failed.push(edits.clone());
                self.last_error = Some(error.clone());
            }
            _ => {}
        }
        reply
    }

    /// The writer thread is gone while the app still uses it (it panicked): its unconfirmed
    /// batches become failed ones, the error names the thread and the panic, and a new thread
    /// on a new connection takes the next requests.
    fn writer_died(&mut self) {
        if self.tx.is_none() {
            return;
        }
        let why = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Err(death))) => death.to_string(),
            Some(Err(_)) => format!("{THREAD} stopped: it panicked"),
            Some(Ok(Ok(()))) | None => format!("{THREAD} stopped"),
        };
        let lost = self.unconfirmed.len();
        self.failed.extend(self.unconfirmed.drain(..));
        tracing::error!("{why}; {lost} batch(es) of edits kept in memory for a retry");
        self.last_error = Some(format!("{why}; the edits it had not saved are kept: Retry"));
        match Self::spawn_thread(&self.path, &self.ctx, &self.add_progress) {
            Ok((tx, rx, thread)) => {
                self.tx = Some(tx);
                self.rx = rx;
                self.thread = Some(thread);
            }
            Err(e) => {
                tracing::error!("cannot restart the store writer: {e:#}");
                self.tx = None;
                self.last_error = Some(format!(
                    "{why}; it cannot restart ({e:#}): the edits it had not saved are kept in memory"
                ));
            }
        }
    }

    /// Blocks until every request sent so far is done and returns the replies. For tests,
    /// benchmarks and shutdown; the UI itself never waits.
    pub fn flush(&mut self) -> Vec<Reply> {
        let mut out = Vec::new();
        let Some(tx) = &self.tx else {
            return out;
        };
        if tx.send(Request::Flush).is_err() {
            self.writer_died();
            return out;
        }
        loop {
            match self.rx.recv() {
                Ok(Reply::Flushed) => break,
                Ok(reply) => out.push(self.track(reply)),
                Err(_) => {
                    self.writer_died();
                    break;
                }
            }
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
        if self.unconfirmed.is_empty() {
            SaveState::Saved
        } else {
            SaveState::Saving(self.unconfirmed.len())
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
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Err(death))) => {
                tracing::error!("the store writer died while finishing its queue: {death}");
            }
            Some(Err(_)) => tracing::error!("the store writer thread panicked"),
            _ => {}
        }
        let lost = self.failed_edits() + self.unconfirmed.iter().map(Vec::len).sum::<usize>();
        if lost > 0 {
            tracing::error!("{lost} edit(s) were not saved when the project closed");
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
            Request::RecordTime(visit) => {
                Reply::TimeRecorded(project.record_time(&visit).map_err(|e| e.to_string()))
            }
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
            #[cfg(test)]
            Request::Panic(message) => panic!("{message}"),
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::model::{AnnotationValue, BBox, BoxFlags, ReviewState, Source};

    /// A panic on the writer thread used to lose the queued edits and leave the status bar
    /// saying "saving" forever. Now the death is reported with the thread's name and the panic's
    /// message, the edits it had not saved are kept as failed, and Retry stores them through a
    /// new writer thread.
    #[test]
    fn a_writer_panic_is_reported_and_keeps_the_edits_it_had_not_saved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.loupe");
        let mut p = Project::create(&path).expect("create");
        let mut bulk = p.bulk().expect("bulk");
        bulk.upsert_image(&crate::store::ImageInput {
            path: "a.png".into(),
            hash: Some("0".repeat(64)),
            width: 10,
            height: 10,
            bytes: 1,
            external_id: None,
        })
        .expect("image");
        bulk.commit().expect("commit");
        let image = p.image_by_path("a.png").expect("query").expect("image").id;
        let class = p.ensure_class("cat").expect("class").id;
        let edit = |x: f64| Edit::Create {
            id: Uuid::now_v7(),
            value: AnnotationValue {
                image,
                class,
                bbox: BBox::new(x, 1.0, 2.0, 2.0),
                source: Source::Human,
                state: ReviewState::Submitted,
                flags: BoxFlags::default(),
                deleted: false,
                attributes: Default::default(),
            },
        };

        let ctx = egui::Context::default();
        let mut writer = StoreWriter::start(path.clone(), ctx.clone()).expect("start");
        writer.send(Request::Panic("disk gremlin"));
        writer.send(Request::Apply(vec![edit(1.0)]));
        writer.send(Request::Apply(vec![edit(2.0), edit(3.0)]));
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(writer.state(), SaveState::Saving(_)) {
            assert!(
                Instant::now() < deadline,
                "still saving after the writer died: {:?}",
                writer.state()
            );
            writer.poll();
            std::thread::sleep(Duration::from_millis(10));
        }
        let SaveState::Failed(error) = writer.state() else {
            panic!("expected a failure, got {:?}", writer.state());
        };
        assert!(
            error.contains("loupe-store-writer stopped: disk gremlin"),
            "{error}"
        );
        assert_eq!(writer.failed_edits(), 3, "every queued edit is kept");
        assert_eq!(
            workers::take_deaths(&ctx),
            vec![WorkerDeath {
                thread: "loupe-store-writer".into(),
                message: "disk gremlin".into(),
            }]
        );
        assert!(p.all_annotations().expect("read").is_empty());

        // Retry: a new writer thread stores them.
        writer.retry_failed();
        writer.flush();
        assert_eq!(writer.state(), SaveState::Saved);
        assert_eq!(p.all_annotations().expect("read").len(), 3);
    }

    /// The same death seen in the app: the status bar names the thread and the panic and says
    /// how many edits are not saved (it used to say "saving" forever), the app keeps working,
    /// and Retry stores the edits. The app's `logic` pass alone takes the writer's news: no
    /// frame has to be drawn for the state to change.
    #[test]
    fn a_writer_panic_shows_in_the_status_bar_and_retry_saves_the_edits() {
        use egui_kittest::Harness;
        use egui_kittest::kittest::Queryable as _;

        use crate::ui::{App, AppOptions};

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.loupe");
        let mut p = Project::create(&path).expect("create");
        let mut bulk = p.bulk().expect("bulk");
        bulk.upsert_image(&crate::store::ImageInput {
            path: "a.png".into(),
            hash: Some("0".repeat(64)),
            width: 10,
            height: 10,
            bytes: 1,
            external_id: None,
        })
        .expect("image");
        bulk.commit().expect("commit");
        let image = p.image_by_path("a.png").expect("query").expect("image").id;
        let class = p.ensure_class("cat").expect("class").id;
        let me = p.current_user().expect("user");
        crate::review::choose_profile(&mut p, &me.name, me.role).expect("profile");
        let id = Uuid::now_v7();
        let edit = Edit::Create {
            id,
            value: AnnotationValue {
                image,
                class,
                bbox: BBox::new(1.0, 1.0, 2.0, 2.0),
                source: Source::Human,
                state: ReviewState::Submitted,
                flags: BoxFlags::default(),
                deleted: false,
                attributes: Default::default(),
            },
        };

        let app_path = path.clone();
        let mut h = Harness::builder()
            .with_size(egui::vec2(1280.0, 800.0))
            .with_max_steps(64)
            .build_eframe(move |cc| App::new(cc, AppOptions::project_only(&app_path)));
        h.run();
        let writer = h
            .state_mut()
            .session_mut()
            .expect("a project is open")
            .writer_mut();
        writer.send(Request::Panic("disk gremlin"));
        writer.send(Request::Apply(vec![edit]));

        // Only the logic pass, as eframe runs it while the window is hidden.
        let ctx = h.ctx.clone();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            h.state_mut().logic_pass(&ctx);
            let session = h.state().session().expect("open");
            if !session.worker_deaths().is_empty()
                && matches!(session.save_state(), SaveState::Failed(_))
            {
                break;
            }
            assert!(Instant::now() < deadline, "the death was not noticed");
            std::thread::sleep(Duration::from_millis(10));
        }
        h.run();
        h.get_by_label_contains("loupe-store-writer stopped: disk gremlin");
        h.get_by_label_contains("1 edits not saved");
        assert!(p.annotation(id).is_err(), "not stored yet");

        h.get_by_label("Retry").click();
        h.run();
        h.state_mut().flush_writes();
        h.run();
        assert_eq!(
            h.state().session().expect("open").save_state(),
            SaveState::Saved
        );
        assert!(h.query_by_label_contains("edits not saved").is_none());
        assert_eq!(p.annotation(id).expect("stored by the new writer").id, id);
    }
}
