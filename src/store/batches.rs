//! The tables of batches and audits (migration 2): batches of images handed to annotators,
//! their audits, and the audited samples with their verdicts. The workflow's rules (who may
//! create, submit, audit; how samples are drawn) are `review::batches`'; this is its storage.

use std::collections::{HashMap, HashSet};

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use uuid::Uuid;

use super::*;

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

/// The order a batch's review queue follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueOrder {
    /// The order the batch was made in (path order).
    #[default]
    Batch,
    /// The model's least certain images first (`review::batches::Uncertainty`).
    Uncertainty,
}

impl QueueOrder {
    pub const ALL: [QueueOrder; 2] = [QueueOrder::Batch, QueueOrder::Uncertainty];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueOrder::Batch => "batch",
            QueueOrder::Uncertainty => "uncertainty",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
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
    /// The order its review queue follows (migration 6).
    pub queue_order: QueueOrder,
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
    /// The highest score of the model's boxes on the image (any run); `None` without any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_score: Option<f64>,
    /// The model's boxes scored near the threshold (`review::batches::NEAR_THRESHOLD`).
    pub near_threshold: u32,
}

/// A batch with its row ids.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BatchRecord {
    pub id: i64,
    pub info: BatchInfo,
    pub assignee_row: Option<i64>,
}

/// An audit's row.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AuditRecord {
    pub id: i64,
    pub round: i64,
    pub auditor: String,
    pub percent: f64,
    pub min_images: usize,
    pub seed: u64,
    pub started_ms: i64,
    pub decision: Option<AuditDecision>,
    pub decided_ms: Option<i64>,
}

/// One sampled image of an audit, in audit order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AuditItemRecord {
    pub image: Uuid,
    pub path: String,
    /// The stratum: the user row of who annotated the image.
    pub annotator: Option<i64>,
    pub verdict: Option<Verdict>,
    pub comment: Option<String>,
    pub marked_by: Option<i64>,
}

/// A new audit: its batch, round, auditor and parameters, and the sample as (annotator, image
/// row) in audit order.
pub(crate) struct NewAudit<'a> {
    pub batch: i64,
    pub round: i64,
    pub auditor: i64,
    pub percent: f64,
    pub min_images: usize,
    pub seed: u64,
    pub items: &'a [(Option<i64>, i64)],
}

const BATCH_SELECT: &str = "SELECT b.id, b.uuid, b.name, b.state, b.assignee, ua.name, uc.name, b.created_ms, b.round,
        (SELECT COUNT(*) FROM batch_images bi WHERE bi.batch=b.id), b.submitted_ms, b.decided_ms, b.recipe, b.queue_order
     FROM batches b LEFT JOIN users ua ON ua.id=b.assignee JOIN users uc ON uc.id=b.created_by";

fn batch_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BatchRecord> {
    let state: String = r.get(3)?;
    let recipe: String = r.get(12)?;
    Ok(BatchRecord {
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
            queue_order: QueueOrder::parse(&r.get::<_, String>(13)?).unwrap_or_default(),
        },
    })
}

impl Project {
    /// A batch by name or id.
    pub(crate) fn batch_record(&self, name_or_id: &str) -> Result<Option<BatchRecord>> {
        self.conn
            .query_row(
                &format!("{BATCH_SELECT} WHERE b.name=?1 OR b.uuid=?1"),
                [name_or_id],
                batch_from_row,
            )
            .optional()
            .map_err(self.sq())
    }

    /// Every batch, oldest first.
    pub(crate) fn batch_records(&self) -> Result<Vec<BatchRecord>> {
        let mut stmt = self
            .conn
            .prepare(&format!("{BATCH_SELECT} ORDER BY b.id"))
            .map_err(self.sq())?;
        let rows = stmt.query_map([], batch_from_row).map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// The images that are in some batch.
    pub(crate) fn batched_images(&self) -> Result<HashSet<Uuid>> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT i.uuid FROM batch_images bi JOIN images i ON i.id=bi.image")
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.sq())?;
        let mut set = HashSet::new();
        for r in rows {
            set.insert(Uuid::parse_str(&r.map_err(self.sq())?).unwrap_or_default());
        }
        Ok(set)
    }

    /// Creates an open batch of `images` (in that order) made by the current user, in one
    /// transaction.
    pub(crate) fn insert_batch(&mut self, name: &str, recipe: &str, images: &[Uuid]) -> Result<()> {
        let me = self.user;
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sq)?;
        tx.execute(
            "INSERT INTO batches(uuid, name, state, created_by, created_ms, recipe) VALUES (?1, ?2, 'open', ?3, ?4, ?5)",
            params![Uuid::now_v7().to_string(), name, me, now_ms(), recipe],
        )
        .map_err(sq)?;
        let batch = tx.last_insert_rowid();
        {
            let mut ins = tx
                .prepare("INSERT INTO batch_images(batch, image, ord) SELECT ?1, id, ?3 FROM images WHERE uuid=?2")
                .map_err(sq)?;
            for (i, id) in images.iter().enumerate() {
                ins.execute(params![
                    batch,
                    id.to_string(),
                    i64::try_from(i).unwrap_or(i64::MAX)
                ])
                .map_err(sq)?;
            }
        }
        tx.commit().map_err(sq)
    }

    /// Assigns a batch to a user (by row).
    pub(crate) fn set_batch_assignee(&self, batch: i64, user: i64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE batches SET assignee=?1 WHERE id=?2",
                params![user, batch],
            )
            .map_err(self.sq())?;
        Ok(())
    }

    /// Sets the order a batch's review queue follows.
    pub(crate) fn set_batch_queue_order(&self, batch: i64, order: QueueOrder) -> Result<()> {
        self.conn
            .execute(
                "UPDATE batches SET queue_order=?1 WHERE id=?2",
                params![order.as_str(), batch],
            )
            .map_err(self.sq())?;
        Ok(())
    }

    /// The scores of the model's live boxes (any run, any review state) on each image of a
    /// batch.
    pub(crate) fn batch_model_scores(&self, batch: i64) -> Result<HashMap<Uuid, Vec<f64>>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT i.uuid, a.score FROM batch_images bi JOIN images i ON i.id=bi.image
                 JOIN annotations a ON a.image=bi.image
                 WHERE bi.batch=?1 AND a.deleted=0 AND a.run IS NOT NULL AND a.score IS NOT NULL",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([batch], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?))
            })
            .map_err(self.sq())?;
        let mut out: HashMap<Uuid, Vec<f64>> = HashMap::new();
        for row in rows {
            let (image, score) = row.map_err(self.sq())?;
            out.entry(Uuid::parse_str(&image).unwrap_or_default())
                .or_default()
                .push(score);
        }
        Ok(out)
    }

    /// Marks a batch submitted now.
    pub(crate) fn mark_batch_submitted(&self, batch: i64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE batches SET state=?1, submitted_ms=?3 WHERE id=?2",
                params![BatchState::Submitted.as_str(), batch, now_ms()],
            )
            .map_err(self.sq())?;
        Ok(())
    }

    /// How many live boxes on a batch's images are in `state`.
    pub(crate) fn count_batch_boxes(&self, batch: i64, state: ReviewState) -> Result<usize> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM annotations a JOIN batch_images bi ON bi.image=a.image
                 WHERE bi.batch=?1 AND a.deleted=0 AND a.state=?2",
                params![batch, state.as_str()],
                |r| r.get(0),
            )
            .map_err(self.sq())?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The images of a batch in batch order, with their counts (no verdicts).
    pub(crate) fn batch_images(&self, batch: i64) -> Result<Vec<BatchImage>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT i.uuid, i.path,
                    (SELECT COUNT(*) FROM annotations a WHERE a.image=i.id AND a.deleted=0 AND a.state NOT IN ('proposed','rejected')),
                    (SELECT COUNT(*) FROM annotations a WHERE a.image=i.id AND a.deleted=0 AND a.state='proposed'),
                    (SELECT COUNT(*) FROM annotations a WHERE a.image=i.id AND a.deleted=0 AND a.state='returned')
                 FROM batch_images bi JOIN images i ON i.id=bi.image WHERE bi.batch=?1 ORDER BY bi.ord",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([batch], |r| {
                Ok(BatchImage {
                    id: Uuid::parse_str(&r.get::<_, String>(0)?).unwrap_or_default(),
                    path: r.get(1)?,
                    boxes: r.get(2)?,
                    proposals: r.get(3)?,
                    returned: r.get(4)?,
                    verdict: None,
                    comment: None,
                    top_score: None,
                    near_threshold: 0,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// The audit of a batch's `round` (the latest one with `None`).
    pub(crate) fn audit_record(
        &self,
        batch: i64,
        round: Option<i64>,
    ) -> Result<Option<AuditRecord>> {
        self.conn
            .query_row(
                "SELECT a.id, a.round, u.name, a.percent, a.min_images, a.seed, a.started_ms, a.decision, a.decided_ms
                 FROM audits a JOIN users u ON u.id=a.auditor
                 WHERE a.batch=?1 AND (?2 IS NULL OR a.round=?2) ORDER BY a.round DESC LIMIT 1",
                params![batch, round],
                |r| {
                    Ok(AuditRecord {
                        id: r.get(0)?,
                        round: r.get(1)?,
                        auditor: r.get(2)?,
                        percent: r.get(3)?,
                        min_images: usize::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                        seed: u64::from_ne_bytes(r.get::<_, i64>(5)?.to_ne_bytes()),
                        started_ms: r.get(6)?,
                        decision: r
                            .get::<_, Option<String>>(7)?
                            .as_deref()
                            .and_then(AuditDecision::parse),
                        decided_ms: r.get(8)?,
                    })
                },
            )
            .optional()
            .map_err(self.sq())
    }

    /// The sample of an audit, in audit order.
    pub(crate) fn audit_items(&self, audit: i64) -> Result<Vec<AuditItemRecord>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT i.uuid, i.path, it.annotator, it.verdict, it.comment, it.marked_by
                 FROM audit_items it JOIN images i ON i.id=it.image WHERE it.audit=?1 ORDER BY it.ord",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([audit], |r| {
                Ok(AuditItemRecord {
                    image: Uuid::parse_str(&r.get::<_, String>(0)?).unwrap_or_default(),
                    path: r.get(1)?,
                    annotator: r.get(2)?,
                    verdict: r
                        .get::<_, Option<String>>(3)?
                        .as_deref()
                        .and_then(Verdict::parse),
                    comment: r.get(4)?,
                    marked_by: r.get(5)?,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// For each image of a batch, how many of its boxes each author made the latest annotator
    /// decision on (accepted, corrected, rejected, submitted): (image row, author row, boxes).
    pub(crate) fn batch_decision_counts(&self, batch: i64) -> Result<Vec<(i64, i64, i64)>> {
        let mut stmt = self
            .conn
            .prepare(
                "WITH decisions AS (
                    SELECT a.image AS image, v.author AS author,
                           ROW_NUMBER() OVER (PARTITION BY v.ann ORDER BY v.hlc DESC, v.client DESC, v.seq DESC) AS rn
                    FROM revisions v JOIN annotations a ON a.id=v.ann
                    WHERE v.state IN ('accepted','corrected','rejected','submitted')
                      AND a.image IN (SELECT image FROM batch_images WHERE batch=?1))
                 SELECT image, author, COUNT(*) FROM decisions WHERE rn=1 GROUP BY image, author",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([batch], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// The images of a batch: (image row, path).
    pub(crate) fn batch_image_rows(&self, batch: i64) -> Result<Vec<(i64, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT i.id, i.path FROM batch_images bi JOIN images i ON i.id=bi.image WHERE bi.batch=?1")
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([batch], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// Starts an audit in one transaction: replaces an undecided audit of the same round, writes
    /// the sample and puts the batch in `auditing`. Returns `false` (writing nothing) when this
    /// round was already audited and decided.
    pub(crate) fn insert_audit(&mut self, new: &NewAudit<'_>) -> Result<bool> {
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sq)?;
        tx.execute(
            "DELETE FROM audits WHERE batch=?1 AND round=?2 AND decision IS NULL",
            params![new.batch, new.round],
        )
        .map_err(sq)?;
        let inserted = tx.execute(
            "INSERT INTO audits(batch, round, auditor, percent, min_images, seed, started_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                new.batch,
                new.round,
                new.auditor,
                new.percent,
                i64::try_from(new.min_images).unwrap_or(i64::MAX),
                i64::from_ne_bytes(new.seed.to_ne_bytes()),
                now_ms()
            ],
        );
        match inserted {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Ok(false);
            }
            Err(e) => return Err(sq(e)),
        }
        let audit = tx.last_insert_rowid();
        {
            let mut ins = tx
                .prepare(
                    "INSERT INTO audit_items(audit, image, ord, annotator) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sq)?;
            for (ord, (annotator, image)) in new.items.iter().enumerate() {
                ins.execute(params![
                    audit,
                    image,
                    i64::try_from(ord).unwrap_or(i64::MAX),
                    annotator
                ])
                .map_err(sq)?;
            }
        }
        tx.execute(
            "UPDATE batches SET state='auditing' WHERE id=?1",
            [new.batch],
        )
        .map_err(sq)?;
        tx.commit().map_err(sq)?;
        Ok(true)
    }

    /// Records the current user's verdict on one sampled image. Returns whether the image is in
    /// the sample.
    pub(crate) fn mark_audit_item(
        &self,
        audit: i64,
        image: i64,
        verdict: Verdict,
        comment: Option<&str>,
    ) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE audit_items SET verdict=?3, comment=?4, marked_by=?5, marked_ms=?6 WHERE audit=?1 AND image=?2",
                params![audit, image, verdict.as_str(), comment, self.user, now_ms()],
            )
            .map_err(self.sq())?;
        Ok(n > 0)
    }

    /// Records an audit's decision and moves its batch on (accepted, or returned for another
    /// round), in one transaction.
    pub(crate) fn decide_audit(
        &mut self,
        audit: i64,
        batch: i64,
        decision: AuditDecision,
    ) -> Result<()> {
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sq)?;
        tx.execute(
            "UPDATE audits SET decision=?2, decided_ms=?3 WHERE id=?1",
            params![audit, decision.as_str(), now_ms()],
        )
        .map_err(sq)?;
        match decision {
            AuditDecision::Accept => tx.execute(
                "UPDATE batches SET state='accepted', decided_ms=?2 WHERE id=?1",
                params![batch, now_ms()],
            ),
            AuditDecision::Return => tx.execute(
                "UPDATE batches SET state='returned', decided_ms=?2, round=round+1 WHERE id=?1",
                params![batch, now_ms()],
            ),
        }
        .map_err(sq)?;
        tx.commit().map_err(sq)
    }

    /// Audit results per annotator: user row → (audited images, failed images).
    pub(crate) fn audit_counts(&self) -> Result<HashMap<i64, (usize, usize)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT annotator, COUNT(*), SUM(verdict='fail') FROM audit_items
                 WHERE annotator IS NOT NULL AND verdict IS NOT NULL GROUP BY annotator",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(self.sq())?;
        let mut out = HashMap::new();
        for row in rows {
            let (u, n, f) = row.map_err(self.sq())?;
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
}
