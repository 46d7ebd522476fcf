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
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use uuid::Uuid;

use super::sql::sq;
use super::transitions::check_transition;
use super::{Result, ReviewError};
use crate::model::{AnnotationValue, ReviewState, Role};
use crate::store::{Edit, ImageFilter, Project, now_ms};

/// Where a batch is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchState {
    /// Being worked on (assigned or not).
    Open,
    /// Handed in by the assignee, waiting for an audit.
    Submitted,
    /// A lead is auditing a sample.
    Auditing,
    /// Passed the audit: its boxes are approved.
    Accepted,
    /// Failed the audit: back with its annotator, failed images first.
    Returned,
}

impl BatchState {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Open => "open",
            BatchState::Submitted => "submitted",
            BatchState::Auditing => "auditing",
            BatchState::Accepted => "accepted",
            BatchState::Returned => "returned",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            BatchState::Open,
            BatchState::Submitted,
            BatchState::Auditing,
            BatchState::Accepted,
            BatchState::Returned,
        ]
        .into_iter()
        .find(|b| b.as_str() == s)
    }
}

/// A lead's verdict on one audited image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pass" => Some(Verdict::Pass),
            "fail" => Some(Verdict::Fail),
            _ => None,
        }
    }
}

/// The outcome of an audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditDecision {
    Accept,
    Return,
}

impl AuditDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditDecision::Accept => "accept",
            AuditDecision::Return => "return",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "accept" => Some(AuditDecision::Accept),
            "return" => Some(AuditDecision::Return),
            _ => None,
        }
    }
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

/// A batch as listed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BatchInfo {
    pub id: Uuid,
    pub name: String,
    pub state: BatchState,
    pub assignee: Option<String>,
    pub created_by: String,
    pub created_ms: i64,
    pub round: i64,
    pub images: usize,
    pub submitted_ms: Option<i64>,
    pub decided_ms: Option<i64>,
    /// How it was made (filter, sample, seed).
    pub recipe: serde_json::Value,
}

/// One image of a batch, with its counts and its latest audit verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BatchImage {
    pub id: Uuid,
    pub path: String,
    /// Labels (not proposals, not rejected).
    pub boxes: u32,
    /// Proposals nobody decided on yet.
    pub proposals: u32,
    /// Boxes returned by a reviewer or an audit, waiting for a fix.
    pub returned: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
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
                Role::Annotator => "project member",
            }
        )))
    }
}

struct BatchRow {
    id: i64,
    info: BatchInfo,
    assignee_row: Option<i64>,
}

fn batch_row(p: &Project, name: &str) -> Result<BatchRow> {
    p.conn()
        .query_row(
            "SELECT b.id, b.uuid, b.name, b.state, b.assignee, ua.name, uc.name, b.created_ms, b.round,
                    (SELECT COUNT(*) FROM batch_images bi WHERE bi.batch=b.id), b.submitted_ms, b.decided_ms, b.recipe
             FROM batches b LEFT JOIN users ua ON ua.id=b.assignee JOIN users uc ON uc.id=b.created_by
             WHERE b.name=?1 OR b.uuid=?1",
            [name],
            batch_from_row,
        )
        .optional()
        .map_err(sq(p))?
        .ok_or_else(|| ReviewError::NotFound {
            what: "batch",
            key: name.to_owned(),
        })
}

fn batch_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BatchRow> {
    let state: String = r.get(3)?;
    let recipe: String = r.get(12)?;
    Ok(BatchRow {
        id: r.get(0)?,
        assignee_row: r.get(4)?,
        info: BatchInfo {
            id: Uuid::parse_str(&r.get::<_, String>(1)?).unwrap_or_default(),
            name: r.get(2)?,
            state: BatchState::parse(&state).unwrap_or(BatchState::Open),
            assignee: r.get(5)?,
            created_by: r.get(6)?,
            created_ms: r.get(7)?,
            round: r.get(8)?,
            images: r.get::<_, i64>(9)?.try_into().unwrap_or(0),
            submitted_ms: r.get(10)?,
            decided_ms: r.get(11)?,
            recipe: serde_json::from_str(&recipe).unwrap_or(serde_json::Value::Null),
        },
    })
}

fn set_batch_state(
    p: &Project,
    batch: i64,
    state: BatchState,
    column_ms: Option<&str>,
) -> Result<()> {
    let sql = match column_ms {
        Some(col) => format!("UPDATE batches SET state=?1, {col}=?3 WHERE id=?2"),
        None => "UPDATE batches SET state=?1 WHERE id=?2".to_owned(),
    };
    let n = match column_ms {
        Some(_) => p
            .conn()
            .execute(&sql, params![state.as_str(), batch, now_ms()]),
        None => p.conn().execute(&sql, params![state.as_str(), batch]),
    }
    .map_err(sq(p))?;
    debug_assert_eq!(n, 1);
    Ok(())
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
        let mut stmt = p
            .conn()
            .prepare("SELECT DISTINCT i.uuid FROM batch_images bi JOIN images i ON i.id=bi.image")
            .map_err(sq(p))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(sq(p))?;
        let mut set = HashSet::new();
        for r in rows {
            set.insert(Uuid::parse_str(&r.map_err(sq(p))?).unwrap_or_default());
        }
        set
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
    let me = p.current_user_row();
    let path = p.path().to_path_buf();
    let sqe = |error| ReviewError::Sqlite {
        path: path.clone(),
        error,
    };
    let tx = p
        .conn_mut()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sqe)?;
    tx.execute(
        "INSERT INTO batches(uuid, name, state, created_by, created_ms, recipe) VALUES (?1, ?2, 'open', ?3, ?4, ?5)",
        params![Uuid::now_v7().to_string(), name, me, now_ms(), recipe.to_string()],
    )
    .map_err(sqe)?;
    let batch = tx.last_insert_rowid();
    {
        let mut ins = tx
            .prepare("INSERT INTO batch_images(batch, image, ord) SELECT ?1, id, ?3 FROM images WHERE uuid=?2")
            .map_err(sqe)?;
        for (i, r) in rows.iter().enumerate() {
            ins.execute(params![
                batch,
                r.id.to_string(),
                i64::try_from(i).unwrap_or(i64::MAX)
            ])
            .map_err(sqe)?;
        }
    }
    tx.commit().map_err(sqe)?;
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
    p.conn()
        .execute(
            "UPDATE batches SET assignee=?1 WHERE id=?2",
            params![u, b.id],
        )
        .map_err(sq(p))?;
    Ok(batch_row(p, batch)?.info)
}

fn count_states(p: &Project, batch: i64, states: &str) -> Result<usize> {
    let n: i64 = p
        .conn()
        .query_row(
            &format!(
                "SELECT COUNT(*) FROM annotations a JOIN batch_images bi ON bi.image=a.image
                 WHERE bi.batch=?1 AND a.deleted=0 AND a.state IN ({states})"
            ),
            [batch],
            |r| r.get(0),
        )
        .map_err(sq(p))?;
    Ok(usize::try_from(n).unwrap_or(0))
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
    let unreviewed_proposals = count_states(p, b.id, "'proposed'")?;
    let returned_boxes = count_states(p, b.id, "'returned'")?;
    set_batch_state(p, b.id, BatchState::Submitted, Some("submitted_ms"))?;
    Ok(SubmitReport {
        batch: batch_row(p, batch)?.info,
        unreviewed_proposals,
        returned_boxes,
    })
}

/// Every batch, oldest first.
pub fn batches(p: &Project) -> Result<Vec<BatchInfo>> {
    let mut stmt = p
        .conn()
        .prepare(
            "SELECT b.id, b.uuid, b.name, b.state, b.assignee, ua.name, uc.name, b.created_ms, b.round,
                    (SELECT COUNT(*) FROM batch_images bi WHERE bi.batch=b.id), b.submitted_ms, b.decided_ms, b.recipe
             FROM batches b LEFT JOIN users ua ON ua.id=b.assignee JOIN users uc ON uc.id=b.created_by
             ORDER BY b.id",
        )
        .map_err(sq(p))?;
    let rows = stmt.query_map([], batch_from_row).map_err(sq(p))?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r.map_err(sq(p))?.info);
    }
    Ok(out)
}

/// The images of a batch in working order, with the latest audit. When the batch was returned,
/// the images that failed come first (in audit order, with the auditor's comments).
pub fn batch_detail(p: &Project, batch: &str) -> Result<BatchDetail> {
    let b = batch_row(p, batch)?;
    let audit = latest_audit(p, &b)?;
    let mut stmt = p
        .conn()
        .prepare(
            "SELECT i.uuid, i.path,
                (SELECT COUNT(*) FROM annotations a WHERE a.image=i.id AND a.deleted=0 AND a.state NOT IN ('proposed','rejected')),
                (SELECT COUNT(*) FROM annotations a WHERE a.image=i.id AND a.deleted=0 AND a.state='proposed'),
                (SELECT COUNT(*) FROM annotations a WHERE a.image=i.id AND a.deleted=0 AND a.state='returned')
             FROM batch_images bi JOIN images i ON i.id=bi.image WHERE bi.batch=?1 ORDER BY bi.ord",
        )
        .map_err(sq(p))?;
    let rows = stmt
        .query_map([b.id], |r| {
            Ok(BatchImage {
                id: Uuid::parse_str(&r.get::<_, String>(0)?).unwrap_or_default(),
                path: r.get(1)?,
                boxes: r.get(2)?,
                proposals: r.get(3)?,
                returned: r.get(4)?,
                verdict: None,
                comment: None,
            })
        })
        .map_err(sq(p))?;
    let mut images = rows.collect::<Result<Vec<_>, _>>().map_err(sq(p))?;
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

fn audit_row(p: &Project, b: &BatchRow, round: Option<i64>) -> Result<Option<AuditRow>> {
    let row = p
        .conn()
        .query_row(
            "SELECT a.id, a.round, u.name, a.percent, a.min_images, a.seed, a.started_ms, a.decision, a.decided_ms
             FROM audits a JOIN users u ON u.id=a.auditor
             WHERE a.batch=?1 AND (?2 IS NULL OR a.round=?2) ORDER BY a.round DESC LIMIT 1",
            params![b.id, round],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, f64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                ))
            },
        )
        .optional()
        .map_err(sq(p))?;
    let Some((id, round, auditor, percent, min_images, seed, started_ms, decision, decided_ms)) =
        row
    else {
        return Ok(None);
    };
    let names = p.user_names()?;
    let mut stmt = p
        .conn()
        .prepare(
            "SELECT i.uuid, i.path, it.annotator, it.verdict, it.comment, it.marked_by
             FROM audit_items it JOIN images i ON i.id=it.image WHERE it.audit=?1 ORDER BY it.ord",
        )
        .map_err(sq(p))?;
    let rows = stmt
        .query_map([id], |r| {
            Ok((
                AuditItem {
                    image: Uuid::parse_str(&r.get::<_, String>(0)?).unwrap_or_default(),
                    path: r.get(1)?,
                    annotator: r
                        .get::<_, Option<i64>>(2)?
                        .and_then(|u| names.get(&u).cloned()),
                    verdict: r
                        .get::<_, Option<String>>(3)?
                        .as_deref()
                        .and_then(Verdict::parse),
                    comment: r.get(4)?,
                    marked_by: r
                        .get::<_, Option<i64>>(5)?
                        .and_then(|u| names.get(&u).cloned()),
                },
                r.get::<_, Option<i64>>(2)?,
            ))
        })
        .map_err(sq(p))?;
    let items: Vec<(AuditItem, Option<i64>)> =
        rows.collect::<Result<Vec<_>, _>>().map_err(sq(p))?;
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
            min_images: usize::try_from(min_images).unwrap_or(0),
            seed: u64::from_ne_bytes(seed.to_ne_bytes()),
            started_ms,
            decision: decision.as_deref().and_then(AuditDecision::parse),
            decided_ms,
            passed: count(Some(Verdict::Pass)),
            failed: count(Some(Verdict::Fail)),
            pending: count(None),
            strata: strata.into_values().collect(),
            items: items.into_iter().map(|(it, _)| it).collect(),
        },
    }))
}

fn latest_audit(p: &Project, b: &BatchRow) -> Result<Option<AuditInfo>> {
    Ok(audit_row(p, b, None)?.map(|a| a.info))
}

/// The latest audit of a batch, if it has one.
pub fn audit_of(p: &Project, batch: &str) -> Result<Option<AuditInfo>> {
    latest_audit(p, &batch_row(p, batch)?)
}

/// Who annotated each image of a batch: the author of most of the latest annotator decisions
/// (accepted, corrected, rejected, submitted) on the image's boxes; the assignee when nobody
/// decided anything there (an image judged empty).
fn image_annotators(p: &Project, b: &BatchRow) -> Result<BTreeMap<(i64, String), Option<i64>>> {
    let mut stmt = p
        .conn()
        .prepare(
            "WITH decisions AS (
                SELECT a.image AS image, v.author AS author,
                       ROW_NUMBER() OVER (PARTITION BY v.ann ORDER BY v.hlc DESC, v.client DESC, v.seq DESC) AS rn
                FROM revisions v JOIN annotations a ON a.id=v.ann
                WHERE v.state IN ('accepted','corrected','rejected','submitted')
                  AND a.image IN (SELECT image FROM batch_images WHERE batch=?1))
             SELECT image, author, COUNT(*) FROM decisions WHERE rn=1 GROUP BY image, author",
        )
        .map_err(sq(p))?;
    let rows = stmt
        .query_map([b.id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(sq(p))?;
    let mut best: HashMap<i64, (i64, i64)> = HashMap::new();
    for row in rows {
        let (image, author, n) = row.map_err(sq(p))?;
        let e = best.entry(image).or_insert((author, n));
        if n > e.1 || (n == e.1 && author < e.0) {
            *e = (author, n);
        }
    }
    let mut stmt = p
        .conn()
        .prepare("SELECT i.id, i.path FROM batch_images bi JOIN images i ON i.id=bi.image WHERE bi.batch=?1")
        .map_err(sq(p))?;
    let rows = stmt
        .query_map([b.id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(sq(p))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (id, path) = row.map_err(sq(p))?;
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
    let me = p.current_user_row();
    let round = b.info.round;
    let path = p.path().to_path_buf();
    let sqe = |error| ReviewError::Sqlite {
        path: path.clone(),
        error,
    };
    let tx = p
        .conn_mut()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sqe)?;
    // An audit of this round that was never decided is replaced (e.g. restarted with a seed).
    tx.execute(
        "DELETE FROM audits WHERE batch=?1 AND round=?2 AND decision IS NULL",
        params![b.id, round],
    )
    .map_err(sqe)?;
    tx.execute(
        "INSERT INTO audits(batch, round, auditor, percent, min_images, seed, started_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            b.id,
            round,
            me,
            opts.percent,
            i64::try_from(opts.min_images).unwrap_or(i64::MAX),
            i64::from_ne_bytes(seed.to_ne_bytes()),
            now_ms()
        ],
    )
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            ReviewError::Refused(format!("round {round} of batch {} was already audited and decided", b.info.name))
        }
        error => ReviewError::Sqlite {
            path: path.clone(),
            error,
        },
    })?;
    let audit = tx.last_insert_rowid();
    {
        let mut ins = tx
            .prepare(
                "INSERT INTO audit_items(audit, image, ord, annotator) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(sqe)?;
        let mut ord = 0i64;
        for ((annotator, images), chosen) in groups.iter().zip(&picks) {
            for &i in chosen {
                ins.execute(params![audit, images[i], ord, annotator])
                    .map_err(sqe)?;
                ord += 1;
            }
        }
    }
    tx.execute("UPDATE batches SET state='auditing' WHERE id=?1", [b.id])
        .map_err(sqe)?;
    tx.commit().map_err(sqe)?;
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
    let me = p.current_user_row();
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    let n = p
        .conn()
        .execute(
            "UPDATE audit_items SET verdict=?3, comment=?4, marked_by=?5, marked_ms=?6 WHERE audit=?1 AND image=?2",
            params![audit.id, image_row, verdict.as_str(), comment, me, now_ms()],
        )
        .map_err(sq(p))?;
    if n == 0 {
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
    let uuid = p
        .conn()
        .query_row("SELECT uuid FROM images WHERE id=?1", [image_row], |r| {
            r.get::<_, String>(0)
        })
        .map_err(sq(p))?;
    after
        .into_iter()
        .find(|it| it.image.to_string() == uuid)
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
    let path = p.path().to_path_buf();
    let sqe = |error| ReviewError::Sqlite {
        path: path.clone(),
        error,
    };
    let tx = p
        .conn_mut()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sqe)?;
    tx.execute(
        "UPDATE audits SET decision=?2, decided_ms=?3 WHERE id=?1",
        params![audit.id, decision.as_str(), now_ms()],
    )
    .map_err(sqe)?;
    match decision {
        AuditDecision::Accept => tx.execute(
            "UPDATE batches SET state='accepted', decided_ms=?2 WHERE id=?1",
            params![b.id, now_ms()],
        ),
        AuditDecision::Return => tx.execute(
            "UPDATE batches SET state='returned', decided_ms=?2, round=round+1 WHERE id=?1",
            params![b.id, now_ms()],
        ),
    }
    .map_err(sqe)?;
    tx.commit().map_err(sqe)?;
    Ok(DecideReport {
        batch: batch_row(p, batch)?.info,
        decision,
        boxes_changed: edits.len(),
        failed_images: failed.len(),
    })
}

/// Audit failures per annotator (user row id → (audited images, failed images)), for stats.
pub(crate) fn audit_counts(p: &Project) -> Result<HashMap<i64, (usize, usize)>> {
    let mut stmt = p
        .conn()
        .prepare(
            "SELECT annotator, COUNT(*), SUM(verdict='fail') FROM audit_items
             WHERE annotator IS NOT NULL AND verdict IS NOT NULL GROUP BY annotator",
        )
        .map_err(sq(p))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(sq(p))?;
    let mut out = HashMap::new();
    for row in rows {
        let (u, n, f) = row.map_err(sq(p))?;
        out.insert(
            u,
            (
                usize::try_from(n).unwrap_or(0),
                usize::try_from(f).unwrap_or(0),
            ),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
