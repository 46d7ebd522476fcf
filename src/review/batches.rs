//! Batches and audits: images handed to an annotator, submitted, audited by a lead on a seeded
//! sample stratified by annotator, then accepted (boxes approved) or returned (failed images
//! first, their boxes returned with the auditor's comment).
//!
//! A batch moves `open → submitted → auditing → accepted | returned`; a returned batch is
//! reworked and submitted again (its round goes up, and the next audit is a new sample).
//! Leads create, assign and audit batches; only the assignee submits one.

use std::collections::{BTreeMap, HashMap, HashSet};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use uuid::Uuid;

use super::transitions::check_transition;
use super::{Result, ReviewError};
use crate::model::{AnnotationValue, ReviewState, Role};
use crate::store::{AuditRecord, BatchRecord, Edit, ImageFilter, NewAudit, Project};

pub use crate::store::{AuditDecision, BatchImage, BatchInfo, BatchState, QueueOrder, Verdict};

/// The score a model's box is judged against when ordering by uncertainty.
pub const SCORE_THRESHOLD: f64 = 0.5;
/// A box within this distance of [`SCORE_THRESHOLD`] is "near the threshold".
pub const NEAR_THRESHOLD: f64 = 0.15;

/// How unsure the model is about one image, from the scores of its boxes there.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Uncertainty {
    /// The highest score; `None` when the model put no box on the image.
    pub top_score: Option<f64>,
    /// Boxes scored within [`NEAR_THRESHOLD`] of [`SCORE_THRESHOLD`].
    pub near_threshold: u32,
}

impl Uncertainty {
    pub fn of(scores: &[f64]) -> Self {
        let near = scores
            .iter()
            .filter(|s| (**s - SCORE_THRESHOLD).abs() <= NEAR_THRESHOLD)
            .count();
        Uncertainty {
            top_score: scores.iter().copied().reduce(f64::max),
            near_threshold: u32::try_from(near).unwrap_or(u32::MAX),
        }
    }

    /// Sorting key, most uncertain first: the lowest top score, then the most boxes near the
    /// threshold. Images the model put no box on come last: there is no score to doubt.
    fn key(&self) -> (bool, f64, std::cmp::Reverse<u32>) {
        (
            self.top_score.is_none(),
            self.top_score.unwrap_or(f64::INFINITY),
            std::cmp::Reverse(self.near_threshold),
        )
    }
}

/// Sorts a batch's images most uncertain first (stable: ties keep the batch order).
pub fn sort_by_uncertainty(images: &mut [BatchImage]) {
    images.sort_by(|a, b| {
        let ka = Uncertainty {
            top_score: a.top_score,
            near_threshold: a.near_threshold,
        }
        .key();
        let kb = Uncertainty {
            top_score: b.top_score,
            near_threshold: b.near_threshold,
        }
        .key();
        ka.0.cmp(&kb.0)
            .then(ka.1.total_cmp(&kb.1))
            .then(ka.2.cmp(&kb.2))
    });
}

/// Sets the order of a batch's review queue. Leads and the batch's assignee may.
pub fn set_queue_order(p: &mut Project, batch: &str, order: QueueOrder) -> Result<BatchInfo> {
    let b = batch_row(p, batch)?;
    let me = p.current_user()?;
    if me.role < Role::Lead && b.assignee_row != Some(p.current_user_row()) {
        return Err(ReviewError::Refused(format!(
            "{} ({}) cannot change the order of batch {}: only a lead or its assignee can",
            me.name,
            me.role.as_str(),
            b.info.name
        )));
    }
    p.set_batch_queue_order(b.id, order)?;
    Ok(batch_row(p, batch)?.info)
}

/// How to make a batch: the images matching a filter, optionally a seeded random sample of them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewBatch {
    pub name: String,
    pub filter: ImageFilter,
    /// Keep N images drawn at random (seeded) from those matching.
    pub sample: Option<usize>,
    /// The seed of the sample (a random one is drawn and recorded when `None`).
    pub seed: Option<u64>,
    /// Also take images that are already in another batch.
    pub allow_overlap: bool,
}

/// One image of an audit sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditItem {
    pub image: Uuid,
    pub path: String,
    /// The stratum: who annotated the image.
    pub annotator: Option<String>,
    pub verdict: Option<Verdict>,
    pub comment: Option<String>,
    pub marked_by: Option<String>,
}

/// How many images of each annotator the batch holds and the audit sampled.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stratum {
    pub annotator: Option<String>,
    pub images: usize,
    pub sampled: usize,
    pub failed: usize,
}

/// An audit: its parameters, sample and verdicts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditInfo {
    pub batch: String,
    pub round: i64,
    pub auditor: String,
    pub percent: f64,
    pub min_images: usize,
    pub seed: u64,
    pub started_ms: i64,
    pub decision: Option<AuditDecision>,
    pub decided_ms: Option<i64>,
    pub passed: usize,
    pub failed: usize,
    pub pending: usize,
    pub strata: Vec<Stratum>,
    /// In audit order: by annotator, shuffled within each.
    pub items: Vec<AuditItem>,
}

/// A batch with its images (failed images first when it was returned) and its latest audit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BatchDetail {
    pub batch: BatchInfo,
    pub images: Vec<BatchImage>,
    pub audit: Option<AuditInfo>,
}

/// Audit parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AuditOptions {
    /// Share of each annotator's images to sample, in percent (rounded up per annotator).
    pub percent: f64,
    /// At least this many images in all (or the whole batch when smaller).
    pub min_images: usize,
    /// `None` draws a seed and records it, so the sample can be reproduced.
    pub seed: Option<u64>,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            percent: 10.0,
            min_images: 10,
            seed: None,
        }
    }
}

/// What submitting a batch found still undone (submitting is allowed anyway).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SubmitReport {
    pub batch: BatchInfo,
    pub unreviewed_proposals: usize,
    pub returned_boxes: usize,
}

/// What deciding an audit changed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecideReport {
    pub batch: BatchInfo,
    pub decision: AuditDecision,
    /// Boxes approved (accept) or returned (return).
    pub boxes_changed: usize,
    /// Images that failed the audit.
    pub failed_images: usize,
}

// ------------------------------------------------------------------------------ sampling

/// Chooses a stratified sample: `ceil(percent% × size)` of each stratum, topped up to
/// `min_total` (or everything, when there is less) by adding to the strata sampled least so
/// far. Returns the chosen positions in each stratum, in a seeded random order.
///
/// The same sizes, parameters and seed always give the same sample.
pub fn stratified_sample(
    sizes: &[usize],
    percent: f64,
    min_total: usize,
    seed: u64,
) -> Vec<Vec<usize>> {
    let fraction = (percent / 100.0).clamp(0.0, 1.0);
    let mut counts: Vec<usize> = sizes
        .iter()
        .map(|&n| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let k = (fraction * n as f64 - 1e-9).ceil().max(0.0) as usize;
            k.min(n)
        })
        .collect();
    let total: usize = sizes.iter().sum();
    let target = counts.iter().sum::<usize>().max(min_total.min(total));
    while counts.iter().sum::<usize>() < target {
        // The stratum with the smallest sampled share; larger strata first on ties.
        let Some(next) = (0..sizes.len())
            .filter(|&i| counts[i] < sizes[i])
            .min_by(|&a, &b| {
                let sa = counts[a] as f64 / sizes[a] as f64;
                let sb = counts[b] as f64 / sizes[b] as f64;
                sa.partial_cmp(&sb)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(sizes[b].cmp(&sizes[a]))
                    .then(a.cmp(&b))
            })
        else {
            break;
        };
        counts[next] += 1;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    sizes
        .iter()
        .zip(&counts)
        .map(|(&n, &k)| rand::seq::index::sample(&mut rng, n, k).into_vec())
        .collect()
}

// ------------------------------------------------------------------------------ helpers

fn require_role(p: &Project, needed: Role, action: &str) -> Result<()> {
    let me = p.current_user()?;
    if me.role >= needed {
        Ok(())
    } else {
        Err(ReviewError::Refused(format!(
            "{} ({}) cannot {action}: only a {} can",
            me.name,
            me.role.as_str(),
            match needed {
                Role::Lead => "lead",
                Role::Reviewer => "reviewer or lead",
                Role::Annotator | Role::Model => "project member",
            }
        )))
    }
}

fn batch_row(p: &Project, name: &str) -> Result<BatchRecord> {
    p.batch_record(name)?.ok_or_else(|| ReviewError::NotFound {
        what: "batch",
        key: name.to_owned(),
    })
}

fn filter_json(f: &ImageFilter) -> serde_json::Value {
    serde_json::json!({
        "status": format!("{:?}", f.status).to_lowercase(),
        "class": f.class,
        "tag": f.tag,
        "meta": f.meta.as_ref().map(|(k, v)| format!("{k}={v}")),
        "path": f.path_contains,
    })
}

// ------------------------------------------------------------------------------ batches

/// Creates a batch from the images matching `new.filter` (minus images already in a batch,
/// unless `allow_overlap`), optionally a seeded sample of them. Leads only.
pub fn create_batch(p: &mut Project, new: &NewBatch) -> Result<BatchInfo> {
    require_role(p, Role::Lead, "create batches")?;
    let name = new.name.trim();
    if name.is_empty() {
        return Err(ReviewError::Invalid("a batch needs a name".into()));
    }
    if batch_row(p, name).is_ok() {
        return Err(ReviewError::Refused(format!(
            "a batch named {name:?} already exists"
        )));
    }
    let mut rows = p.list_images(&new.filter)?;
    let taken: HashSet<Uuid> = if new.allow_overlap {
        HashSet::new()
    } else {
        p.batched_images()?
    };
    let matching = rows.len();
    rows.retain(|r| !taken.contains(&r.id));
    let already_batched = matching - rows.len();
    let seed = new.seed.unwrap_or_else(rand::random);
    if let Some(n) = new.sample {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut keep = rand::seq::index::sample(&mut rng, rows.len(), n.min(rows.len())).into_vec();
        // The batch keeps path order whatever the draw.
        keep.sort_unstable();
        rows = keep.into_iter().map(|i| rows[i].clone()).collect();
    }
    if rows.is_empty() {
        return Err(ReviewError::Refused(format!(
            "no image for batch {name:?}: {matching} match the filter, {already_batched} of them already in a batch (use --allow-overlap to take them anyway)"
        )));
    }
    let recipe = serde_json::json!({
        "filter": filter_json(&new.filter),
        "sample": new.sample,
        "seed": new.sample.map(|_| seed),
        "matching": matching,
        "already_batched": already_batched,
        "allow_overlap": new.allow_overlap,
    });
    let images: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    p.insert_batch(name, &recipe.to_string(), &images)?;
    Ok(batch_row(p, name)?.info)
}

/// Assigns a batch to a user (by name or id). Leads only; an accepted batch is closed.
pub fn assign_batch(p: &mut Project, batch: &str, user: &str) -> Result<BatchInfo> {
    require_role(p, Role::Lead, "assign batches")?;
    let b = batch_row(p, batch)?;
    if b.info.state == BatchState::Accepted {
        return Err(ReviewError::Refused(format!(
            "batch {} was accepted; it is closed",
            b.info.name
        )));
    }
    let Some(u) = p.user_row_of(user)? else {
        return Err(ReviewError::NotFound {
            what: "user",
            key: format!("{user} (create it with `loupe user {user} --role annotator`)"),
        });
    };
    p.set_batch_assignee(b.id, u)?;
    Ok(batch_row(p, batch)?.info)
}

/// Hands a batch in for audit. Only its assignee may, and only while it is open or returned.
pub fn submit_batch(p: &mut Project, batch: &str) -> Result<SubmitReport> {
    let b = batch_row(p, batch)?;
    let me = p.current_user()?;
    let me_row = p.current_user_row();
    match b.assignee_row {
        None => {
            return Err(ReviewError::Refused(format!(
                "batch {} is not assigned to anyone; a lead assigns it first",
                b.info.name
            )));
        }
        Some(a) if a != me_row => {
            return Err(ReviewError::Refused(format!(
                "batch {} is assigned to {}; only they can submit it (you are {})",
                b.info.name,
                b.info.assignee.as_deref().unwrap_or("someone else"),
                me.name
            )));
        }
        Some(_) => {}
    }
    if !matches!(b.info.state, BatchState::Open | BatchState::Returned) {
        return Err(ReviewError::Refused(format!(
            "batch {} is {}; only an open or returned batch can be submitted",
            b.info.name,
            b.info.state.as_str()
        )));
    }
    let unreviewed_proposals = p.count_batch_boxes(b.id, ReviewState::Proposed)?;
    let returned_boxes = p.count_batch_boxes(b.id, ReviewState::Returned)?;
    p.mark_batch_submitted(b.id)?;
    Ok(SubmitReport {
        batch: batch_row(p, batch)?.info,
        unreviewed_proposals,
        returned_boxes,
    })
}

/// Every batch, oldest first.
pub fn batches(p: &Project) -> Result<Vec<BatchInfo>> {
    Ok(p.batch_records()?.into_iter().map(|b| b.info).collect())
}

/// The images of a batch in working order (the batch's, or the model's least certain first when
/// its queue order says so), with the latest audit. When the batch was returned, the images
/// that failed come first (in audit order, with the auditor's comments).
pub fn batch_detail(p: &Project, batch: &str) -> Result<BatchDetail> {
    let b = batch_row(p, batch)?;
    let audit = latest_audit(p, &b)?;
    let mut images = p.batch_images(b.id)?;
    let scores = p.batch_model_scores(b.id)?;
    for img in &mut images {
        let u = Uncertainty::of(scores.get(&img.id).map_or(&[][..], Vec::as_slice));
        img.top_score = u.top_score;
        img.near_threshold = u.near_threshold;
    }
    if b.info.queue_order == QueueOrder::Uncertainty {
        sort_by_uncertainty(&mut images);
    }
    if let Some(a) = &audit {
        let marks: HashMap<Uuid, (usize, &AuditItem)> = a
            .items
            .iter()
            .enumerate()
            .map(|(i, it)| (it.image, (i, it)))
            .collect();
        for img in &mut images {
            if let Some((_, it)) = marks.get(&img.id) {
                img.verdict = it.verdict;
                img.comment.clone_from(&it.comment);
            }
        }
        if b.info.state == BatchState::Returned {
            // Failed images first, in audit order; the rest keep the batch order (stable sort).
            images.sort_by_key(|img| match marks.get(&img.id) {
                Some((i, it)) if it.verdict == Some(Verdict::Fail) => (0, *i),
                _ => (1, 0),
            });
        }
    }
    Ok(BatchDetail {
        batch: b.info,
        images,
        audit,
    })
}

// ------------------------------------------------------------------------------ audits

struct AuditRow {
    id: i64,
    info: AuditInfo,
}

fn audit_row(p: &Project, b: &BatchRecord, round: Option<i64>) -> Result<Option<AuditRow>> {
    let Some(AuditRecord {
        id,
        round,
        auditor,
        percent,
        min_images,
        seed,
        started_ms,
        decision,
        decided_ms,
    }) = p.audit_record(b.id, round)?
    else {
        return Ok(None);
    };
    let names = p.user_names()?;
    let items: Vec<(AuditItem, Option<i64>)> = p
        .audit_items(id)?
        .into_iter()
        .map(|it| {
            (
                AuditItem {
                    image: it.image,
                    path: it.path,
                    annotator: it.annotator.and_then(|u| names.get(&u).cloned()),
                    verdict: it.verdict,
                    comment: it.comment,
                    marked_by: it.marked_by.and_then(|u| names.get(&u).cloned()),
                },
                it.annotator,
            )
        })
        .collect();
    let strata_sizes = image_annotators(p, b)?;
    let mut strata: BTreeMap<Option<String>, Stratum> = BTreeMap::new();
    for ann in strata_sizes.values() {
        let name = ann.and_then(|u| names.get(&u).cloned());
        strata
            .entry(name.clone())
            .or_insert_with(|| Stratum {
                annotator: name,
                images: 0,
                sampled: 0,
                failed: 0,
            })
            .images += 1;
    }
    for (it, _) in &items {
        let s = strata
            .entry(it.annotator.clone())
            .or_insert_with(|| Stratum {
                annotator: it.annotator.clone(),
                images: 0,
                sampled: 0,
                failed: 0,
            });
        s.sampled += 1;
        if it.verdict == Some(Verdict::Fail) {
            s.failed += 1;
        }
    }
    let count = |v: Option<Verdict>| items.iter().filter(|(it, _)| it.verdict == v).count();
    Ok(Some(AuditRow {
        id,
        info: AuditInfo {
            batch: b.info.name.clone(),
            round,
            auditor,
            percent,
            min_images,
            seed,
            started_ms,
            decision,
            decided_ms,
            passed: count(Some(Verdict::Pass)),
            failed: count(Some(Verdict::Fail)),
            pending: count(None),
            strata: strata.into_values().collect(),
            items: items.into_iter().map(|(it, _)| it).collect(),
        },
    }))
}

fn latest_audit(p: &Project, b: &BatchRecord) -> Result<Option<AuditInfo>> {
    Ok(audit_row(p, b, None)?.map(|a| a.info))
}

/// The latest audit of a batch, if it has one.
pub fn audit_of(p: &Project, batch: &str) -> Result<Option<AuditInfo>> {
    latest_audit(p, &batch_row(p, batch)?)
}

/// Who annotated each image of a batch: the author of most of the latest annotator decisions
/// (accepted, corrected, rejected, submitted) on the image's boxes; the assignee when nobody
/// decided anything there (an image judged empty).
fn image_annotators(p: &Project, b: &BatchRecord) -> Result<BTreeMap<(i64, String), Option<i64>>> {
    let mut best: HashMap<i64, (i64, i64)> = HashMap::new();
    for (image, author, n) in p.batch_decision_counts(b.id)? {
        let e = best.entry(image).or_insert((author, n));
        if n > e.1 || (n == e.1 && author < e.0) {
            *e = (author, n);
        }
    }
    let mut out = BTreeMap::new();
    for (id, path) in p.batch_image_rows(b.id)? {
        out.insert((id, path), best.get(&id).map(|x| x.0).or(b.assignee_row));
    }
    Ok(out)
}

/// Starts the audit of a submitted batch: samples `percent`% of each annotator's images (at
/// least `min_images` in all), seeded so the same batch and seed give the same sample. Leads only.
pub fn audit_start(p: &mut Project, batch: &str, opts: &AuditOptions) -> Result<AuditInfo> {
    require_role(p, Role::Lead, "audit batches")?;
    let b = batch_row(p, batch)?;
    match b.info.state {
        BatchState::Submitted => {}
        BatchState::Auditing => {
            // Restarting (say, with another seed) is fine until the first mark.
            let marked = audit_row(p, &b, Some(b.info.round))?
                .map_or(0, |a| a.info.items.len() - a.info.pending);
            if marked > 0 {
                return Err(ReviewError::Refused(format!(
                    "the audit of batch {} is under way ({marked} image(s) marked); decide it instead of restarting",
                    b.info.name
                )));
            }
        }
        state => {
            return Err(ReviewError::Refused(format!(
                "batch {} is {}; an audit starts on a submitted batch",
                b.info.name,
                state.as_str()
            )));
        }
    }
    if !(opts.percent > 0.0 && opts.percent <= 100.0) && opts.min_images == 0 {
        return Err(ReviewError::Invalid(
            "an audit needs --percent above 0 or --min above 0".into(),
        ));
    }
    let seed = opts.seed.unwrap_or_else(rand::random);
    let names = p.user_names()?;
    // Strata in a stable order: by annotator name (nobody last), images by path inside each.
    let mut strata: BTreeMap<(bool, String, Option<i64>), Vec<i64>> = BTreeMap::new();
    for ((image, _path), ann) in image_annotators(p, &b)? {
        let name = ann.and_then(|u| names.get(&u).cloned());
        strata
            .entry((name.is_none(), name.unwrap_or_default(), ann))
            .or_default()
            .push(image);
    }
    // Sorted by (row id, path) keys: order by path for stability across files.
    let paths = p.image_paths()?;
    for imgs in strata.values_mut() {
        imgs.sort_by(|a, b| paths.get(a).cmp(&paths.get(b)));
    }
    let groups: Vec<(Option<i64>, Vec<i64>)> =
        strata.into_iter().map(|((_, _, a), v)| (a, v)).collect();
    let sizes: Vec<usize> = groups.iter().map(|(_, v)| v.len()).collect();
    let picks = stratified_sample(&sizes, opts.percent, opts.min_images, seed);
    let round = b.info.round;
    let items: Vec<(Option<i64>, i64)> = groups
        .iter()
        .zip(&picks)
        .flat_map(|((annotator, images), chosen)| chosen.iter().map(|&i| (*annotator, images[i])))
        .collect();
    let started = p.insert_audit(&NewAudit {
        batch: b.id,
        round,
        auditor: p.current_user_row(),
        percent: opts.percent,
        min_images: opts.min_images,
        seed,
        items: &items,
    })?;
    if !started {
        return Err(ReviewError::Refused(format!(
            "round {round} of batch {} was already audited and decided",
            b.info.name
        )));
    }
    let b = batch_row(p, batch)?;
    latest_audit(p, &b)?.ok_or_else(|| ReviewError::NotFound {
        what: "audit",
        key: batch.to_owned(),
    })
}

/// Records a lead's verdict on one sampled image (by path or id); can be changed until the
/// audit is decided.
pub fn audit_mark(
    p: &mut Project,
    batch: &str,
    image: &str,
    verdict: Verdict,
    comment: Option<&str>,
) -> Result<AuditItem> {
    require_role(p, Role::Lead, "audit batches")?;
    let b = batch_row(p, batch)?;
    let audit = match audit_row(p, &b, Some(b.info.round))? {
        Some(a) if a.info.decision.is_none() && b.info.state == BatchState::Auditing => a,
        _ => {
            return Err(ReviewError::Refused(format!(
                "batch {} has no audit in progress (it is {}); start one with `loupe audit start {}`",
                b.info.name,
                b.info.state.as_str(),
                b.info.name
            )));
        }
    };
    let image_row = p.image_row_by_path_or_id(image)?;
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    if !p.mark_audit_item(audit.id, image_row, verdict, comment)? {
        return Err(ReviewError::Refused(format!(
            "{image} is not in the audit sample of batch {} ({} images sampled; see `loupe batch show {}`)",
            b.info.name,
            audit.info.items.len(),
            b.info.name
        )));
    }
    let after = audit_row(p, &b, Some(b.info.round))?
        .map(|a| a.info.items)
        .unwrap_or_default();
    let uuid = p.image_uuid_of_row(image_row)?;
    after
        .into_iter()
        .find(|it| it.image == uuid)
        .ok_or_else(|| ReviewError::NotFound {
            what: "audit item",
            key: image.to_owned(),
        })
}

/// Decides an audit once every sampled image is marked. `Accept` approves the batch's accepted,
/// corrected and submitted boxes; `Return` (needs a failed image) returns those boxes on the
/// failed images with the auditor's comment and sends the batch back to its annotator.
pub fn audit_decide(p: &mut Project, batch: &str, decision: AuditDecision) -> Result<DecideReport> {
    require_role(p, Role::Lead, "decide audits")?;
    let b = batch_row(p, batch)?;
    let audit = match audit_row(p, &b, Some(b.info.round))? {
        Some(a) if a.info.decision.is_none() && b.info.state == BatchState::Auditing => a,
        _ => {
            return Err(ReviewError::Refused(format!(
                "batch {} has no audit in progress (it is {})",
                b.info.name,
                b.info.state.as_str()
            )));
        }
    };
    if audit.info.pending > 0 {
        return Err(ReviewError::Refused(format!(
            "{} of the {} sampled images of batch {} are not marked yet; mark each pass or fail first",
            audit.info.pending,
            audit.info.items.len(),
            b.info.name
        )));
    }
    let failed: Vec<&AuditItem> = audit
        .info
        .items
        .iter()
        .filter(|it| it.verdict == Some(Verdict::Fail))
        .collect();
    if decision == AuditDecision::Return && failed.is_empty() {
        return Err(ReviewError::Refused(format!(
            "no sampled image of batch {} failed; accept it, or mark the images that fail",
            b.info.name
        )));
    }
    let role = p.current_user()?.role;
    // The boxes to change, with the note each gets.
    let mut targets: Vec<(Uuid, String)> = Vec::new();
    match decision {
        AuditDecision::Accept => {
            let detail = batch_detail(p, batch)?;
            let note = format!(
                "batch {} accepted after audit (round {})",
                b.info.name, b.info.round
            );
            for img in &detail.images {
                targets.extend(
                    p.annotations_for_image(img.id)?
                        .into_iter()
                        .filter_map(|a| {
                            matches!(
                                a.value.state,
                                ReviewState::Accepted
                                    | ReviewState::Corrected
                                    | ReviewState::Submitted
                            )
                            .then(|| (a.id, note.clone()))
                        }),
                );
            }
        }
        AuditDecision::Return => {
            for it in &failed {
                let note = format!(
                    "audit of batch {} (round {}): {}",
                    b.info.name,
                    b.info.round,
                    it.comment
                        .as_deref()
                        .unwrap_or("the image failed the audit")
                );
                targets.extend(
                    p.annotations_for_image(it.image)?
                        .into_iter()
                        .filter_map(|a| {
                            matches!(
                                a.value.state,
                                ReviewState::Accepted
                                    | ReviewState::Corrected
                                    | ReviewState::Submitted
                            )
                            .then(|| (a.id, note.clone()))
                        }),
                );
            }
        }
    }
    let to = match decision {
        AuditDecision::Accept => ReviewState::Approved,
        AuditDecision::Return => ReviewState::Returned,
    };
    let mut edits = Vec::with_capacity(targets.len());
    for (id, note) in &targets {
        let current = p.annotation(*id)?;
        check_transition(current.value.state, to, role)
            .map_err(|e| ReviewError::from(e).on_box(*id))?;
        edits.push(Edit::Update {
            id: *id,
            value: AnnotationValue {
                state: to,
                ..current.value
            },
            note: Some(note.clone()),
        });
    }
    // The box changes are one transaction and the batch's bookkeeping another; the box changes
    // go first so a failure leaves the audit open to be decided again.
    if !edits.is_empty() {
        p.apply(&edits)?;
    }
    p.decide_audit(audit.id, b.id, decision)?;
    Ok(DecideReport {
        batch: batch_row(p, batch)?.info,
        decision,
        boxes_changed: edits.len(),
        failed_images: failed.len(),
    })
}

/// Audit failures per annotator (user row id → (audited images, failed images)), for stats.
pub(crate) fn audit_counts(p: &Project) -> Result<HashMap<i64, (usize, usize)>> {
    Ok(p.audit_counts()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(path: &str, scores: &[f64]) -> BatchImage {
        let u = Uncertainty::of(scores);
        BatchImage {
            id: Uuid::now_v7(),
            path: path.into(),
            boxes: 0,
            proposals: 0,
            returned: 0,
            verdict: None,
            comment: None,
            top_score: u.top_score,
            near_threshold: u.near_threshold,
        }
    }

    #[test]
    fn the_least_certain_images_come_first() {
        let u = Uncertainty::of(&[0.9, 0.45, 0.62, 0.2]);
        assert_eq!(u.top_score, Some(0.9));
        assert_eq!(u.near_threshold, 2, "0.45 and 0.62 are within 0.15 of 0.5");
        let mut images = vec![
            image("a", &[0.95]),
            image("b", &[]),
            image("c", &[0.6, 0.55]),
            image("d", &[0.6]),
            image("e", &[0.3]),
            image("f", &[]),
        ];
        sort_by_uncertainty(&mut images);
        let order: Vec<&str> = images.iter().map(|i| i.path.as_str()).collect();
        // Lowest top score first; at equal top scores more boxes near the threshold first;
        // images without a model box last, in batch order.
        assert_eq!(order, ["e", "c", "d", "a", "b", "f"]);
    }

    #[test]
    fn samples_are_reproducible_and_stratified() {
        let sizes = [40, 10, 3];
        let a = stratified_sample(&sizes, 10.0, 0, 7);
        assert_eq!(a, stratified_sample(&sizes, 10.0, 0, 7));
        assert_ne!(a, stratified_sample(&sizes, 10.0, 0, 8));
        // ceil(10%) of each stratum: 4, 1, 1.
        assert_eq!(a.iter().map(Vec::len).collect::<Vec<_>>(), [4, 1, 1]);
        for (picked, &n) in a.iter().zip(&sizes) {
            let set: HashSet<usize> = picked.iter().copied().collect();
            assert_eq!(set.len(), picked.len(), "no image twice");
            assert!(picked.iter().all(|&i| i < n));
        }
        // Topping up to 20 keeps the shares close: 40 → 14, 10 → 4, 3 → 2 (shares .35/.4/.67).
        let b = stratified_sample(&sizes, 10.0, 20, 7);
        let counts: Vec<usize> = b.iter().map(Vec::len).collect();
        assert_eq!(counts.iter().sum::<usize>(), 20);
        assert!(
            counts[0] >= 13 && counts[1] >= 3 && counts[2] >= 1,
            "{counts:?}"
        );
        // Never more than there is.
        assert_eq!(
            stratified_sample(&[2, 1], 50.0, 99, 1)
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>(),
            [2, 1]
        );
        assert_eq!(
            stratified_sample(&[5], 0.0, 0, 1),
            vec![Vec::<usize>::new()]
        );
    }
}
