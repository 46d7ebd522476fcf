//! The lead views' query thread: evaluation, triage and dashboard figures are read on a thread
//! named `loupe-lead-jobs` with its own read connection, in the order asked, and answered over
//! a channel the UI polls once per frame. Each question carries the data generation it was
//! asked at, so views can tell a fresh answer from a stale one. Box histories and image
//! metadata (point reads) are also told here, for the panel beside the canvas.

use std::collections::HashMap;
use std::path::PathBuf;
use std::thread::JoinHandle;

use crate::ui::workers::{self, WorkerDeath};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use eframe::egui;
use uuid::Uuid;

use crate::model::{AnnotationValue, Class, ReviewState, Source, User};
use crate::review::crops::ClassCrops;
use crate::review::similar::{Neighbour, Target};
use crate::review::{
    self, AgreementReport, AnnotatorStats, AuditInfo, BatchDetail, BatchInfo, EvalOptions,
    RunComparison, RunEval, Triage, TriageOptions,
};
use crate::store::{Project, Revision};

/// A question for the query thread.
#[derive(Clone, Debug, PartialEq)]
pub enum Query {
    /// Runs, versions, slices and users: what the views offer to choose from.
    Choices,
    /// Per-annotator figures and the batches.
    Dashboard,
    /// One batch with its images and audit.
    Batch(String),
    Triage(TriageOptions),
    /// One run, or two compared (`compare` is run b).
    Eval {
        opts: EvalOptions,
        compare: Option<String>,
    },
    /// The images or boxes most like one (the newest embedding set, 20 neighbours).
    Similar(Target),
    /// The boxes of a class, least like the others first (the newest embedding set).
    Crops(CropsKey),
}

/// Which boxes the crop grid shows: a class, with or without its proposals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropsKey {
    pub class: Uuid,
    pub proposals: bool,
}

/// What the views can choose from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Choices {
    /// Model runs, oldest first.
    pub runs: Vec<String>,
    /// Each run's progress, told for people ("7 of 7 images; w0 2, w1 3, w2 2"): runs that
    /// batch workers deliver through the store arrive shard by shard.
    pub run_progress: HashMap<String, String>,
    /// Versions, oldest first.
    pub versions: Vec<String>,
    /// Every `key=value` of the image metadata, with its image count.
    pub slices: Vec<(String, usize)>,
    pub users: Vec<User>,
    /// The classes, in the project's order.
    pub classes: Vec<Class>,
}

/// The dashboard's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DashboardData {
    pub stats: Vec<AnnotatorStats>,
    /// Every batch with its latest audit.
    pub batches: Vec<(BatchInfo, Option<AuditInfo>)>,
    /// Agreement of people who labeled the same images (IoU 0.5).
    pub agreement: Option<AgreementReport>,
}

/// An evaluation, alone or compared with a second run.
#[derive(Clone, Debug, PartialEq)]
pub enum EvalResult {
    One(Box<RunEval>),
    Two(Box<RunComparison>),
}

/// One revision of a box, told for people.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryRow {
    /// Milliseconds since the epoch (from the revision's clock).
    pub when_ms: i64,
    pub author: String,
    /// What changed against the previous revision ("created", "moved", "class cat → dog"…).
    pub what: String,
    pub state: ReviewState,
    /// "human" or "run NAME · score 0.87".
    pub source: String,
    /// A reviewer's or auditor's reason, if any.
    pub note: Option<String>,
    /// The box's attributes as of this revision (name, value as text), in order.
    pub attributes: Vec<(String, String)>,
}

/// Tags and metadata of one image.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageMeta {
    pub tags: Vec<String>,
    pub meta: Vec<(String, String)>,
}

/// An answer; errors are messages for people.
// A few answers per view change cross the channel, each moved once: boxing the big ones would
// buy nothing measurable.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Answer {
    Choices(Result<Choices, String>),
    Dashboard(Result<DashboardData, String>),
    Batch(String, Result<BatchDetail, String>),
    Triage(TriageOptions, Result<Triage, String>),
    Eval(EvalKey, Result<EvalResult, String>),
    Similar(Target, Result<Vec<Neighbour>, String>),
    Crops(CropsKey, Result<ClassCrops, String>),
}

/// What identifies an evaluation in the cache.
pub type EvalKey = (EvalOptions, Option<String>);

/// The UI's handle on the query thread.
pub struct Jobs {
    tx: Option<Sender<(u64, Query)>>,
    rx: Receiver<(u64, Answer)>,
    thread: Option<JoinHandle<Result<(), WorkerDeath>>>,
    pending: usize,
}

impl Jobs {
    /// Opens a read connection to `path` on a new thread.
    pub fn start(path: PathBuf, ctx: egui::Context) -> anyhow::Result<Jobs> {
        let project = Project::open(&path)?;
        let (tx, queries) = crossbeam_channel::unbounded::<(u64, Query)>();
        let (answers, rx) = crossbeam_channel::unbounded();
        let thread_ctx = ctx.clone();
        let thread = workers::spawn(&ctx, "loupe-lead-jobs", move || {
            while let Ok((generation, query)) = queries.recv() {
                let answer = answer(&project, query);
                if answers.send((generation, answer)).is_err() {
                    return;
                }
                thread_ctx.request_repaint();
            }
        })?;
        Ok(Jobs {
            tx: Some(tx),
            rx,
            thread: Some(thread),
            pending: 0,
        })
    }

    /// Queues a question. Never blocks.
    pub fn ask(&mut self, generation: u64, query: Query) {
        if let Some(tx) = &self.tx {
            if tx.send((generation, query)).is_ok() {
                self.pending += 1;
            } else {
                tracing::error!("the lead query thread is gone");
            }
        }
    }

    /// The answers that have arrived, without blocking.
    pub fn poll(&mut self) -> Vec<(u64, Answer)> {
        let mut out = Vec::new();
        while let Ok(a) = self.rx.try_recv() {
            self.pending = self.pending.saturating_sub(1);
            out.push(a);
        }
        out
    }

    /// Blocks until every question asked so far is answered (or `timeout` passes) and returns
    /// the answers. For tests; the UI itself never waits.
    pub fn wait(&mut self, timeout: Duration) -> Vec<(u64, Answer)> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while self.pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(a) => {
                    self.pending -= 1;
                    out.push(a);
                }
                Err(_) => break,
            }
        }
        out
    }

    /// Questions not answered yet.
    pub fn pending(&self) -> usize {
        self.pending
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        self.tx = None;
        // A panic was reported when it happened (`workers::spawn`).
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How many neighbours "more like this" shows.
pub const SIMILAR_K: usize = 20;

/// The IoU at which the dashboard matches two people's boxes (as `loupe review agreement`).
pub const AGREEMENT_IOU: f64 = 0.5;

fn answer(p: &Project, query: Query) -> Answer {
    let text = |e: review::ReviewError| format!("{e:#}");
    match query {
        Query::Choices => Answer::Choices(choices(p).map_err(text)),
        Query::Dashboard => Answer::Dashboard(
            review::annotator_stats(p)
                .and_then(|stats| {
                    let mut batches = Vec::new();
                    for b in review::batches(p)? {
                        let audit = review::audit_of(p, &b.name)?;
                        batches.push((b, audit));
                    }
                    let agreement = Some(review::agreement(p, AGREEMENT_IOU)?);
                    Ok(DashboardData {
                        stats,
                        batches,
                        agreement,
                    })
                })
                .map_err(text),
        ),
        Query::Batch(name) => {
            let r = review::batch_detail(p, &name).map_err(text);
            Answer::Batch(name, r)
        }
        Query::Similar(target) => {
            let r = review::similar::choose_set(p, None)
                .and_then(|set| review::similar::similar(p, &set, target, SIMILAR_K))
                .map_err(text);
            Answer::Similar(target, r)
        }
        Query::Crops(key) => {
            let r = review::crops::class_crops(p, key.class, key.proposals, None).map_err(text);
            Answer::Crops(key, r)
        }
        Query::Triage(opts) => {
            let r = review::triage_ranked(p, &opts).map_err(text);
            Answer::Triage(opts, r)
        }
        Query::Eval { opts, compare } => {
            let r = match &compare {
                Some(b) => review::compare_runs(p, &opts, b)
                    .map(|c| EvalResult::Two(Box::new(c)))
                    .map_err(text),
                None => review::evaluate_run(p, &opts)
                    .map(|e| EvalResult::One(Box::new(e)))
                    .map_err(text),
            };
            Answer::Eval((opts, compare), r)
        }
    }
}

fn choices(p: &Project) -> review::Result<Choices> {
    let mut slices = Vec::new();
    for key in review::meta_slices(p)? {
        for v in key.values {
            slices.push((format!("{}={}", key.key, v.value), v.images));
        }
    }
    let runs = p.runs()?;
    // One grouped query for every run, not one per run: the choices are read again at each new
    // data generation.
    let mut progress_by_run = p.runs_progress()?;
    let mut run_progress = HashMap::new();
    for r in &runs {
        // No coverage recorded (an imported results file, say): nothing to tell.
        let Some(progress) = progress_by_run.remove(&r.id) else {
            continue;
        };
        let mut text = format!("{} of {} images", progress.done, progress.total);
        let workers: Vec<String> = progress
            .workers
            .iter()
            .filter_map(|w| w.worker.as_ref().map(|name| format!("{name} {}", w.images)))
            .collect();
        if !workers.is_empty() {
            text.push_str(&format!("; {}", workers.join(", ")));
        }
        run_progress.insert(r.name.clone(), text);
    }
    Ok(Choices {
        runs: runs.into_iter().map(|r| r.name).collect(),
        run_progress,
        versions: p.versions()?.into_iter().map(|v| v.name).collect(),
        slices,
        users: p.users()?,
        classes: p.classes()?,
    })
}

/// Tags and metadata of one image.
pub fn image_meta(p: &Project, id: Uuid) -> Result<ImageMeta, String> {
    let read = || -> Result<ImageMeta, crate::store::StoreError> {
        Ok(ImageMeta {
            tags: p.tags(id)?,
            meta: p.image_meta(id)?,
        })
    };
    read().map_err(|e| format!("{e:#}"))
}

/// The revisions of one box, told for people.
pub fn history(p: &Project, id: Uuid) -> Result<Vec<HistoryRow>, String> {
    history_rows(p, id).map_err(|e| format!("{e:#}"))
}

fn history_rows(p: &Project, id: Uuid) -> Result<Vec<HistoryRow>, crate::store::StoreError> {
    let revisions = p.history(id)?;
    let classes: HashMap<Uuid, String> = p.classes()?.into_iter().map(|c| (c.id, c.name)).collect();
    let runs: HashMap<Uuid, String> = p.runs()?.into_iter().map(|r| (r.id, r.name)).collect();
    let class = |c: Uuid| classes.get(&c).cloned().unwrap_or_else(|| "?".into());
    let mut out = Vec::with_capacity(revisions.len());
    let mut before: Option<&AnnotationValue> = None;
    for r in &revisions {
        out.push(describe(r, before, &class, &runs));
        before = Some(&r.value);
    }
    Ok(out)
}

/// One revision against the one before it.
fn describe(
    r: &Revision,
    before: Option<&AnnotationValue>,
    class: &dyn Fn(Uuid) -> String,
    runs: &HashMap<Uuid, String>,
) -> HistoryRow {
    let v = &r.value;
    let what = match before {
        None => format!("created as {}", class(v.class)),
        Some(b) => {
            let mut parts = Vec::new();
            if v.deleted && !b.deleted {
                parts.push("deleted".to_owned());
            } else if !v.deleted && b.deleted {
                parts.push("restored".to_owned());
            }
            if v.class != b.class {
                parts.push(format!("class {} to {}", class(b.class), class(v.class)));
            }
            if v.bbox != b.bbox {
                let moved =
                    (v.bbox.x - b.bbox.x).abs() > 1e-9 || (v.bbox.y - b.bbox.y).abs() > 1e-9;
                let resized =
                    (v.bbox.w - b.bbox.w).abs() > 1e-9 || (v.bbox.h - b.bbox.h).abs() > 1e-9;
                parts.push(
                    match (moved, resized) {
                        (true, true) => "moved and resized",
                        (false, true) => "resized",
                        _ => "moved",
                    }
                    .to_owned(),
                );
            }
            if v.state != b.state {
                parts.push(format!("{} to {}", b.state.as_str(), v.state.as_str()));
            }
            if v.flags != b.flags {
                parts.push("flags changed".to_owned());
            }
            if v.attributes != b.attributes {
                parts.push("attributes changed".to_owned());
            }
            if parts.is_empty() {
                r.op.clone()
            } else {
                parts.join(", ")
            }
        }
    };
    let source = match &v.source {
        Source::Human => "human".to_owned(),
        Source::Model { run, score } => format!(
            "run {} · score {score:.2}",
            runs.get(run).cloned().unwrap_or_else(|| run.to_string())
        ),
    };
    HistoryRow {
        when_ms: r.hlc >> 16,
        author: r.author.clone(),
        what,
        state: v.state,
        source,
        note: r.note.clone(),
        attributes: v
            .attributes
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_text()))
            .collect(),
    }
}
