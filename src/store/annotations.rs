//! Annotations: reading boxes, `apply` (every change a revision, checked against the review
//! policy inside its transaction), history, `rebuild_current`, and the revision writer.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction, params};
use uuid::Uuid;

use super::*;
use crate::policy;

/// One change to one annotation.
#[derive(Clone, Debug, PartialEq)]
pub enum Edit {
    /// A new annotation. `id` should be a fresh UUIDv7 (`Uuid::now_v7()`).
    Create { id: Uuid, value: AnnotationValue },
    /// A new annotation with the reason it was made (a triage fix adding a box the labels
    /// missed), stored as the note of its first revision. Apart from `Create` so that the many
    /// callers with no reason to give stay as they are.
    CreateBecause {
        id: Uuid,
        value: AnnotationValue,
        note: String,
    },
    /// A new full value for an existing annotation; `note` is a reason (e.g. for a return).
    Update {
        id: Uuid,
        value: AnnotationValue,
        note: Option<String>,
    },
    /// Tombstones an annotation; its history stays.
    Delete { id: Uuid },
}

impl Edit {
    pub fn id(&self) -> Uuid {
        match self {
            Edit::Create { id, .. }
            | Edit::CreateBecause { id, .. }
            | Edit::Update { id, .. }
            | Edit::Delete { id } => *id,
        }
    }
}

/// Checks `edits` by someone with `role` against the review policy, in order: `current` gives a
/// box's value before the list (`None` for an unknown box), and later edits of a box see the
/// values earlier ones write. Unknown boxes are left for the writer to report.
fn check_policy(
    edits: &[Edit],
    role: Role,
    mut current: impl FnMut(Uuid) -> Result<Option<AnnotationValue>>,
) -> Result<()> {
    let mut pending: HashMap<Uuid, AnnotationValue> = HashMap::new();
    for edit in edits {
        let id = edit.id();
        let before = match pending.get(&id) {
            Some(v) => Some(v.clone()),
            None => current(id)?,
        };
        let refused = |refusal| StoreError::Refused { id, refusal };
        let after = match edit {
            Edit::Create { value, .. } => {
                policy::check_edit(None, value, None, role).map_err(refused)?;
                value.clone()
            }
            Edit::CreateBecause { value, note, .. } => {
                policy::check_edit(None, value, Some(note), role).map_err(refused)?;
                value.clone()
            }
            Edit::Update { value, note, .. } => {
                let Some(before) = before else { continue };
                policy::check_edit(Some(&before), value, note.as_deref(), role).map_err(refused)?;
                value.clone()
            }
            Edit::Delete { .. } => {
                let Some(before) = before else { continue };
                let after = AnnotationValue {
                    deleted: true,
                    ..before.clone()
                };
                policy::check_edit(Some(&before), &after, None, role).map_err(refused)?;
                after
            }
        };
        pending.insert(id, after);
    }
    Ok(())
}

/// One row of an annotation's history.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Revision {
    pub annotation: Uuid,
    pub author: String,
    pub client: Uuid,
    pub hlc: i64,
    pub op: String,
    pub value: AnnotationValue,
    pub note: Option<String>,
}

impl Project {
    // ---------------------------------------------------------------- annotations

    pub(super) const ANN_COLS: &'static str = "a.uuid, i.uuid, c.uuid, a.x, a.y, a.w, a.h, r.uuid, a.score, a.state, a.flags, a.deleted, a.attributes";
    pub(super) const ANN_JOINS: &'static str = "annotations a JOIN images i ON i.id=a.image JOIN classes c ON c.id=a.class LEFT JOIN runs r ON r.id=a.run";

    pub(super) fn annotation_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Annotation> {
        let uuid_blob = |i: usize| -> rusqlite::Result<Uuid> {
            let b: Vec<u8> = r.get(i)?;
            Ok(Uuid::from_slice(&b).unwrap_or_default())
        };
        let uuid_text = |i: usize| -> rusqlite::Result<Uuid> {
            Ok(Uuid::parse_str(&r.get::<_, String>(i)?).unwrap_or_default())
        };
        let run: Option<String> = r.get(7)?;
        let source = match run {
            Some(run) => Source::Model {
                run: Uuid::parse_str(&run).unwrap_or_default(),
                score: r.get::<_, Option<f64>>(8)?.unwrap_or(0.0) as f32,
            },
            None => Source::Human,
        };
        Ok(Annotation {
            id: uuid_blob(0)?,
            value: AnnotationValue {
                image: uuid_text(1)?,
                class: uuid_text(2)?,
                bbox: BBox::new(r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?),
                source,
                state: ReviewState::parse(&r.get::<_, String>(9)?)
                    .unwrap_or(ReviewState::Submitted),
                flags: BoxFlags::from_bits(r.get::<_, i64>(10)?.try_into().unwrap_or(0)),
                deleted: r.get::<_, i64>(11)? != 0,
                attributes: attributes_from_column(r, 12)?,
            },
        })
    }

    /// The live (not deleted) annotations of an image, in creation order.
    pub fn annotations_for_image(&self, image: Uuid) -> Result<Vec<Annotation>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {} FROM {} WHERE i.uuid=?1 AND a.deleted=0 ORDER BY a.id",
                Self::ANN_COLS,
                Self::ANN_JOINS
            ))
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([image.to_string()], Self::annotation_from_row)
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// One annotation's current value (deleted ones too).
    pub fn annotation(&self, id: Uuid) -> Result<Annotation> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {} FROM {} WHERE a.uuid=?1",
                    Self::ANN_COLS,
                    Self::ANN_JOINS
                ),
                [id.as_bytes().as_slice()],
                Self::annotation_from_row,
            )
            .optional()
            .map_err(self.sq())?
            .ok_or_else(|| StoreError::NotFound {
                what: "annotation",
                key: id.to_string(),
            })
    }

    /// The live (not deleted) annotations of one class, every state, in creation order.
    pub fn annotations_of_class(&self, class: Uuid) -> Result<Vec<Annotation>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {} FROM {} WHERE c.uuid=?1 AND a.deleted=0 ORDER BY a.id",
                Self::ANN_COLS,
                Self::ANN_JOINS
            ))
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([class.to_string()], Self::annotation_from_row)
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// Every current annotation, deleted ones excluded.
    pub fn all_annotations(&self) -> Result<Vec<Annotation>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {} FROM {} WHERE a.deleted=0 ORDER BY a.id",
                Self::ANN_COLS,
                Self::ANN_JOINS
            ))
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], Self::annotation_from_row)
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// Applies edits in one transaction, attributed to the current user. Durable on return.
    ///
    /// The review policy holds for every edit, wherever it comes from: the edits are checked
    /// against [`policy::check_edit`] with the current user's role, inside the transaction that
    /// writes them (so the values checked are the values replaced). A refused edit refuses the
    /// whole call with [`StoreError::Refused`] and nothing is written.
    pub fn apply(&mut self, edits: &[Edit]) -> Result<Vec<Annotation>> {
        let author = self.user;
        self.apply_as(edits, author)
    }

    /// Checks edits against the review policy as [`Project::apply`] would, for the current
    /// user, without writing them (edits of the same box later in the list see the values
    /// written earlier in it). Unknown boxes are left for `apply` to report.
    pub fn check_edits(&self, edits: &[Edit]) -> Result<()> {
        let role = self.current_user()?.role;
        check_policy(edits, role, |id| match self.annotation(id) {
            Ok(a) => Ok(Some(a.value)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        })
    }

    fn apply_as(&mut self, edits: &[Edit], author: i64) -> Result<Vec<Annotation>> {
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let client = self.client;
        // Immediate: take the write lock first, so a read here never has to be upgraded to a
        // write while another connection (the sync thread) commits, which SQLite refuses with
        // SQLITE_BUSY instead of waiting.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sq)?;
        let (seen_hlc, seen_seq) = observed_since(&tx, self.hlc_seen_seq).map_err(sq)?;
        self.hlc.observe(seen_hlc);
        self.hlc_seen_seq = self.hlc_seen_seq.max(seen_seq);
        let mut touched = Vec::with_capacity(edits.len());
        {
            let mut w = RevisionWriter::new(&tx, author, client).map_err(sq)?;
            let role = w.author_role()?;
            check_policy(edits, role, |id| match w.current_value(id) {
                Ok(v) => Ok(Some(v)),
                Err(StoreError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            })?;
            for edit in edits {
                let hlc = self.hlc.tick();
                match edit {
                    Edit::Create { id, value } => {
                        w.create(*id, value, hlc, None)?;
                    }
                    Edit::CreateBecause { id, value, note } => {
                        w.create(*id, value, hlc, Some(note))?;
                    }
                    Edit::Update { id, value, note } => {
                        w.update(*id, value, hlc, note.as_deref())?;
                    }
                    Edit::Delete { id } => {
                        let mut value = w.current_value(*id)?;
                        value.deleted = true;
                        w.update(*id, &value, hlc, None)?;
                    }
                }
                touched.push(edit.id());
            }
        }
        tx.commit().map_err(sq)?;
        touched.into_iter().map(|id| self.annotation(id)).collect()
    }

    /// The full history of an annotation, oldest first.
    pub fn history(&self, id: Uuid) -> Result<Vec<Revision>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT a.uuid, u.name, cl.uuid, v.hlc, v.op, i.uuid, c.uuid, v.x, v.y, v.w, v.h, r.uuid, v.score, v.state, v.flags, v.deleted, v.note, v.attributes
                 FROM revisions v JOIN annotations a ON a.id=v.ann JOIN users u ON u.id=v.author
                 JOIN clients cl ON cl.id=v.client JOIN images i ON i.id=v.image JOIN classes c ON c.id=v.class
                 LEFT JOIN runs r ON r.id=v.run
                 WHERE a.uuid=?1 ORDER BY v.hlc, cl.uuid, v.seq",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([id.as_bytes().as_slice()], revision_from_row)
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// Recomputes the `annotations` cache from the revision log: each box's revision with the
    /// greatest (hlc, client uuid), leaving out revisions the team roster refused (sync's rule,
    /// `merge::winner`). Returns how many rows changed.
    pub fn rebuild_current(&mut self) -> Result<usize> {
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sq)?;
        let n = tx
            .execute(
                "WITH latest AS (
                    SELECT v.* FROM revisions v
                    WHERE v.seq = (SELECT v2.seq FROM revisions v2 JOIN clients c2 ON c2.id=v2.client
                                   WHERE v2.ann=v.ann AND NOT EXISTS (
                                       SELECT 1 FROM sync_revs s WHERE s.rev=v2.seq AND s.refused IS NOT NULL)
                                   ORDER BY v2.hlc DESC, c2.uuid DESC, v2.seq DESC LIMIT 1))
                 UPDATE annotations SET image=l.image, class=l.class, x=l.x, y=l.y, w=l.w, h=l.h,
                    run=l.run, score=l.score, state=l.state, flags=l.flags, deleted=l.deleted,
                    attributes=l.attributes, rev=l.seq
                 FROM latest l WHERE l.ann=annotations.id AND (
                    annotations.rev IS NOT l.seq OR annotations.image IS NOT l.image OR annotations.class IS NOT l.class
                    OR annotations.x IS NOT l.x OR annotations.y IS NOT l.y OR annotations.w IS NOT l.w OR annotations.h IS NOT l.h
                    OR annotations.run IS NOT l.run OR annotations.score IS NOT l.score OR annotations.state IS NOT l.state
                    OR annotations.flags IS NOT l.flags OR annotations.deleted IS NOT l.deleted
                    OR annotations.attributes IS NOT l.attributes)",
                [],
            )
            .map_err(sq)?;
        tx.commit().map_err(sq)?;
        Ok(n)
    }
}

pub(super) fn revision_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Revision> {
    let text = |i: usize| -> rusqlite::Result<Uuid> {
        Ok(Uuid::parse_str(&r.get::<_, String>(i)?).unwrap_or_default())
    };
    let ann: Vec<u8> = r.get(0)?;
    let run: Option<String> = r.get(11)?;
    Ok(Revision {
        annotation: Uuid::from_slice(&ann).unwrap_or_default(),
        author: r.get(1)?,
        client: text(2)?,
        hlc: r.get(3)?,
        op: r.get(4)?,
        value: AnnotationValue {
            image: text(5)?,
            class: text(6)?,
            bbox: BBox::new(r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?),
            source: match run {
                Some(run) => Source::Model {
                    run: Uuid::parse_str(&run).unwrap_or_default(),
                    score: r.get::<_, Option<f64>>(12)?.unwrap_or(0.0) as f32,
                },
                None => Source::Human,
            },
            state: ReviewState::parse(&r.get::<_, String>(13)?).unwrap_or(ReviewState::Submitted),
            flags: BoxFlags::from_bits(r.get::<_, i64>(14)?.try_into().unwrap_or(0)),
            deleted: r.get::<_, i64>(15)? != 0,
            attributes: attributes_from_column(r, 17)?,
        },
        note: r.get(16)?,
    })
}

/// A box's attributes from their column (`Attributes::to_json`, NULL for none). A value this
/// build cannot read is a conversion error naming the column, never a silent empty set.
pub(crate) fn attributes_from_column(
    r: &rusqlite::Row<'_>,
    i: usize,
) -> rusqlite::Result<Attributes> {
    let json: Option<String> = r.get(i)?;
    Attributes::from_json(json.as_deref()).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// An annotation value with foreign keys resolved to row ids.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RowValue {
    pub image: i64,
    pub class: i64,
    pub bbox: BBox,
    pub run: Option<i64>,
    pub score: Option<f64>,
    pub state: ReviewState,
    pub flags: i64,
    pub deleted: bool,
    /// `Attributes::to_json`: NULL when the box has none.
    pub attributes: Option<String>,
}

/// Writes revisions and keeps the current-state cache in step, inside one transaction.
pub(crate) struct RevisionWriter<'t> {
    tx: &'t Transaction<'t>,
    author: i64,
    client: i64,
}

impl<'t> RevisionWriter<'t> {
    pub(super) fn new(tx: &'t Transaction<'t>, author: i64, client: i64) -> rusqlite::Result<Self> {
        Ok(Self { tx, author, client })
    }

    pub(super) fn resolve(&self, value: &AnnotationValue) -> Result<RowValue> {
        let sq = |e: rusqlite::Error| StoreError::Invalid(describe_sqlite(&e));
        let image: i64 = self
            .tx
            .prepare_cached("SELECT id FROM images WHERE uuid=?1")
            .and_then(|mut s| {
                s.query_row([value.image.to_string()], |r| r.get(0))
                    .optional()
            })
            .map_err(sq)?
            .ok_or_else(|| StoreError::NotFound {
                what: "image",
                key: value.image.to_string(),
            })?;
        let class: i64 = self
            .tx
            .prepare_cached("SELECT id FROM classes WHERE uuid=?1")
            .and_then(|mut s| {
                s.query_row([value.class.to_string()], |r| r.get(0))
                    .optional()
            })
            .map_err(sq)?
            .ok_or_else(|| StoreError::NotFound {
                what: "class",
                key: value.class.to_string(),
            })?;
        let (run, score) = match &value.source {
            Source::Human => (None, None),
            Source::Model { run, score } => {
                let run: i64 = self
                    .tx
                    .prepare_cached("SELECT id FROM runs WHERE uuid=?1")
                    .and_then(|mut s| s.query_row([run.to_string()], |r| r.get(0)).optional())
                    .map_err(sq)?
                    .ok_or_else(|| StoreError::NotFound {
                        what: "model run",
                        key: run.to_string(),
                    })?;
                (Some(run), Some(f64::from(*score)))
            }
        };
        if !value.bbox.is_finite() || value.bbox.w < 0.0 || value.bbox.h < 0.0 {
            return Err(StoreError::Invalid(format!("invalid box {:?}", value.bbox)));
        }
        Ok(RowValue {
            image,
            class,
            bbox: value.bbox,
            run,
            score,
            state: value.state,
            flags: i64::from(value.flags.bits()),
            deleted: value.deleted,
            attributes: value.attributes.to_json(),
        })
    }

    /// The role of the author the edits are attributed to, as the file says now.
    fn author_role(&self) -> Result<Role> {
        let role: String = self
            .tx
            .prepare_cached("SELECT role FROM users WHERE id=?1")
            .and_then(|mut s| s.query_row([self.author], |r| r.get(0)))
            .map_err(|e| StoreError::Invalid(describe_sqlite(&e)))?;
        Ok(Role::parse(&role).unwrap_or(Role::Annotator))
    }

    pub(super) fn current_value(&self, id: Uuid) -> Result<AnnotationValue> {
        let sql = format!(
            "SELECT {} FROM {} WHERE a.uuid=?1",
            Project::ANN_COLS,
            Project::ANN_JOINS
        );
        self.tx
            .prepare_cached(&sql)
            .and_then(|mut s| {
                s.query_row([id.as_bytes().as_slice()], Project::annotation_from_row)
                    .optional()
            })
            .map_err(|e| StoreError::Invalid(describe_sqlite(&e)))?
            .map(|a| a.value)
            .ok_or_else(|| StoreError::NotFound {
                what: "annotation",
                key: id.to_string(),
            })
    }

    pub(super) fn create(
        &mut self,
        id: Uuid,
        value: &AnnotationValue,
        hlc: i64,
        note: Option<&str>,
    ) -> Result<()> {
        let row = self.resolve(value)?;
        self.insert_rows(id, &row, hlc, "create", note)
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    StoreError::Invalid(format!("annotation {id} already exists"))
                }
                e => StoreError::Invalid(describe_sqlite(&e)),
            })
    }

    pub(super) fn update(
        &mut self,
        id: Uuid,
        value: &AnnotationValue,
        hlc: i64,
        note: Option<&str>,
    ) -> Result<()> {
        let row = self.resolve(value)?;
        let ann: i64 = self
            .tx
            .prepare_cached("SELECT id FROM annotations WHERE uuid=?1")
            .and_then(|mut s| {
                s.query_row([id.as_bytes().as_slice()], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| StoreError::Invalid(describe_sqlite(&e)))?
            .ok_or_else(|| StoreError::NotFound {
                what: "annotation",
                key: id.to_string(),
            })?;
        let op = if row.deleted { "delete" } else { "update" };
        let seq = self
            .insert_revision(ann, &row, hlc, op, note)
            .map_err(|e| StoreError::Invalid(describe_sqlite(&e)))?;
        self.tx
            .prepare_cached(
                "UPDATE annotations SET image=?2, class=?3, x=?4, y=?5, w=?6, h=?7, run=?8, score=?9, state=?10, flags=?11, deleted=?12, rev=?13, attributes=?14 WHERE id=?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    ann,
                    row.image,
                    row.class,
                    row.bbox.x,
                    row.bbox.y,
                    row.bbox.w,
                    row.bbox.h,
                    row.run,
                    row.score,
                    state_str(row.state),
                    row.flags,
                    i64::from(row.deleted),
                    seq,
                    row.attributes
                ])
            })
            .map_err(|e| StoreError::Invalid(describe_sqlite(&e)))?;
        Ok(())
    }

    /// Inserts a new annotation row plus its first revision.
    pub(crate) fn insert_rows(
        &mut self,
        id: Uuid,
        row: &RowValue,
        hlc: i64,
        op: &str,
        note: Option<&str>,
    ) -> rusqlite::Result<()> {
        let mut ins = self.tx.prepare_cached(
            "INSERT INTO annotations(uuid, image, class, x, y, w, h, run, score, state, flags, deleted, rev, attributes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 0, ?13)",
        )?;
        ins.execute(params![
            id.as_bytes().as_slice(),
            row.image,
            row.class,
            row.bbox.x,
            row.bbox.y,
            row.bbox.w,
            row.bbox.h,
            row.run,
            row.score,
            state_str(row.state),
            row.flags,
            i64::from(row.deleted),
            row.attributes
        ])?;
        let ann = self.tx.last_insert_rowid();
        let seq = self.insert_revision(ann, row, hlc, op, note)?;
        self.tx
            .prepare_cached("UPDATE annotations SET rev=?2 WHERE id=?1")?
            .execute(params![ann, seq])?;
        Ok(())
    }

    pub(super) fn insert_revision(
        &mut self,
        ann: i64,
        row: &RowValue,
        hlc: i64,
        op: &str,
        note: Option<&str>,
    ) -> rusqlite::Result<i64> {
        let mut ins = self.tx.prepare_cached(
            "INSERT INTO revisions(ann, author, client, hlc, op, image, class, x, y, w, h, run, score, state, flags, deleted, note, attributes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        )?;
        ins.execute(params![
            ann,
            self.author,
            self.client,
            hlc,
            op,
            row.image,
            row.class,
            row.bbox.x,
            row.bbox.y,
            row.bbox.w,
            row.bbox.h,
            row.run,
            row.score,
            state_str(row.state),
            row.flags,
            i64::from(row.deleted),
            note,
            row.attributes
        ])?;
        Ok(self.tx.last_insert_rowid())
    }
}
