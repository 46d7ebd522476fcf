//! `Bulk`: one transaction for imports and `add`.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction, params};
use uuid::Uuid;

use super::*;

impl Project {
    /// Starts a bulk transaction for importers (see `ingest` and `formats` glue).
    ///
    /// Foreign-key checks are off for the bulk transaction (they cost more than the inserts at a
    /// million boxes): `Bulk` resolves every reference itself, and turns them back on when it
    /// commits or is dropped.
    pub fn bulk(&mut self) -> Result<Bulk<'_>> {
        let path = self.path.clone();
        let author = self.user;
        let client = self.client;
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        self.conn
            .pragma_update(None, "foreign_keys", "OFF")
            .map_err(sq)?;
        // Room for a large import's pages in memory, so the transaction does not spill to the
        // WAL before it commits (reset when the bulk ends).
        self.conn
            .pragma_update(None, "cache_size", -1_048_576)
            .map_err(sq)?;
        let conn = &self.conn;
        let tx = Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
            .map_err(|source| {
                let _ = conn.pragma_update(None, "foreign_keys", "ON");
                StoreError::Sqlite {
                    path: path.clone(),
                    source,
                }
            })?;
        let next_seq: i64 = tx
            .query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM revisions", [], |r| {
                r.get(0)
            })
            .map_err(sq)?;
        let (seen_hlc, _) = observed_since(&tx, self.hlc_seen_seq).map_err(sq)?;
        self.hlc.observe(seen_hlc);
        self.hlc_seen_seq = self.hlc_seen_seq.max(next_seq - 1);
        let next_ann: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(id), 0) + 1 FROM annotations",
                [],
                |r| r.get(0),
            )
            .map_err(sq)?;
        Ok(Bulk {
            tx: Some(tx),
            conn,
            path,
            author,
            client,
            hlc: &mut self.hlc,
            classes: HashMap::new(),
            next_seq,
            next_ann,
            pending: Vec::with_capacity(BULK_ROWS),
        })
    }
}

/// A bulk write (an import or an `add`): one transaction, committed by `commit`, rolled back
/// if dropped. Images and classes are addressed by path and name.
pub struct Bulk<'p> {
    /// `Some` until committed.
    pub(super) tx: Option<Transaction<'p>>,
    pub(super) conn: &'p Connection,
    pub(super) path: PathBuf,
    /// The `seq` the next revision gets: known up front, so a new box's `rev` is written with
    /// the row instead of by a second statement.
    pub(super) next_seq: i64,
    /// The row id the next new annotation gets (explicit, so rows can be inserted in batches).
    pub(super) next_ann: i64,
    /// New boxes not yet written: inserted `BULK_ROWS` at a time with multi-row statements.
    pub(super) pending: Vec<PendingBox>,
    pub(super) author: i64,
    pub(super) client: i64,
    pub(super) hlc: &'p mut Hlc,
    pub(super) classes: HashMap<String, i64>,
}

/// Boxes per multi-row INSERT in bulk writes (17 parameters each, under SQLite's limit).
pub(super) const BULK_ROWS: usize = 128;

/// A new box waiting in a `Bulk` for its batch.
pub(super) struct PendingBox {
    pub(super) id: Uuid,
    pub(super) ann: i64,
    pub(super) seq: i64,
    pub(super) hlc: i64,
    pub(super) row: RowValue,
}

/// What `Bulk::upsert_image` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upsert {
    Added,
    /// Same content at the same path: nothing to do.
    Unchanged,
    /// Known content found at a new path (the file was moved or renamed).
    Moved,
    /// A placeholder made by an import got its file.
    Attached,
    /// The file at a known path changed content.
    Updated,
    /// The same content is already in the project under another path that still exists; the
    /// project keeps one image per content hash.
    Duplicate,
}

/// An image as `add` or an import sees it.
#[derive(Clone, Debug, Default)]
pub struct ImageInput {
    pub path: String,
    pub hash: Option<String>,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub external_id: Option<i64>,
}

impl Bulk<'_> {
    pub(super) fn sq(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Inserts or reconciles an image; returns its row id and what happened.
    pub fn upsert_image(&mut self, img: &ImageInput) -> Result<(i64, Upsert)> {
        let path = self.path.clone();
        let sq = move |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let by_hash: Option<(i64, String)> = match &img.hash {
            Some(h) => self
                .tx()
                .prepare_cached("SELECT id, path FROM images WHERE hash=?1")
                .and_then(|mut s| s.query_row([h], |r| Ok((r.get(0)?, r.get(1)?))).optional())
                .map_err(&sq)?,
            None => None,
        };
        let by_path: Option<(i64, Option<String>, i64)> = self
            .tx()
            .prepare_cached("SELECT id, hash, missing FROM images WHERE path=?1")
            .and_then(|mut s| {
                s.query_row([&img.path], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(&sq)?;
        if let Some((id, old_path)) = by_hash {
            if old_path == img.path {
                // A placeholder (known from sync packs, file not here until now) gets its file.
                if by_path
                    .as_ref()
                    .is_some_and(|(_, _, missing)| *missing == 1)
                {
                    self.tx()
                        .execute(
                            "UPDATE images SET missing=0, bytes=?2, external_id=COALESCE(external_id, ?3) WHERE id=?1",
                            params![id, img.bytes as i64, img.external_id],
                        )
                        .map_err(&sq)?;
                    return Ok((id, Upsert::Attached));
                }
                if img.external_id.is_some() {
                    self.tx()
                        .execute(
                            "UPDATE images SET external_id=COALESCE(external_id, ?2) WHERE id=?1",
                            params![id, img.external_id],
                        )
                        .map_err(&sq)?;
                }
                return Ok((id, Upsert::Unchanged));
            }
            // Same content under another path: a move if a placeholder or nothing holds the
            // new path; otherwise both paths are the same file content and we keep the first.
            match by_path {
                Some((pid, _, missing)) if missing == 1 && pid != id => {
                    // Boxes still waiting in the batch may belong to the placeholder.
                    self.flush()?;

                    // A placeholder at the new path: merge its boxes into the known image.
                    self.tx()
                        .execute(
                            "UPDATE annotations SET image=?1 WHERE image=?2",
                            params![id, pid],
                        )
                        .map_err(&sq)?;
                    self.tx()
                        .execute(
                            "UPDATE revisions SET image=?1 WHERE image=?2",
                            params![id, pid],
                        )
                        .map_err(&sq)?;
                    self.tx()
                        .execute("DELETE FROM images WHERE id=?1", [pid])
                        .map_err(&sq)?;
                }
                Some(_) => return Ok((id, Upsert::Unchanged)),
                None => {}
            }
            let old_exists = std::path::Path::new(&self.path)
                .parent()
                .is_some_and(|root| root.join(&old_path).exists());
            if old_exists {
                return Ok((id, Upsert::Duplicate));
            }
            self.tx()
                .execute(
                    "UPDATE images SET path=?2, missing=0 WHERE id=?1",
                    params![id, img.path],
                )
                .map_err(&sq)?;
            return Ok((id, Upsert::Moved));
        }
        if let Some((id, old_hash, missing)) = by_path {
            if img.hash.is_none() {
                return Ok((id, Upsert::Unchanged));
            }
            self.tx()
                .execute(
                    "UPDATE images SET hash=?2, width=?3, height=?4, bytes=?5, missing=0, external_id=COALESCE(external_id, ?6) WHERE id=?1",
                    params![id, img.hash, img.width, img.height, img.bytes as i64, img.external_id],
                )
                .map_err(&sq)?;
            let what = if missing == 1 && old_hash.is_none() {
                Upsert::Attached
            } else {
                Upsert::Updated
            };
            return Ok((id, what));
        }
        self.tx()
            .prepare_cached(
                "INSERT INTO images(uuid, hash, path, width, height, bytes, missing, external_id, added_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    Uuid::now_v7().to_string(),
                    img.hash,
                    img.path,
                    img.width,
                    img.height,
                    img.bytes as i64,
                    i64::from(img.hash.is_none()),
                    img.external_id,
                    now_ms()
                ])
            })
            .map_err(&sq)?;
        Ok((self.tx().last_insert_rowid(), Upsert::Added))
    }

    /// The row id of a class by name, created if needed.
    pub fn class(&mut self, name: &str) -> Result<i64> {
        if let Some(id) = self.classes.get(name) {
            return Ok(*id);
        }
        let id = class_row_tx(self.tx(), name).map_err(self.sq())?;
        self.classes.insert(name.to_owned(), id);
        Ok(id)
    }

    /// The row id of a run by uuid.
    pub fn run_row(&self, run: Uuid) -> Result<i64> {
        self.tx()
            .query_row(
                "SELECT id FROM runs WHERE uuid=?1",
                [run.to_string()],
                |r| r.get(0),
            )
            .map_err(self.sq())
    }

    /// True if an annotation with this id exists.
    pub fn annotation_exists(&mut self, id: Uuid) -> Result<bool> {
        if self.pending.iter().any(|b| b.id == id) {
            return Ok(true);
        }
        self.tx()
            .prepare_cached("SELECT 1 FROM annotations WHERE uuid=?1")
            .and_then(|mut s| s.exists([id.as_bytes().as_slice()]))
            .map_err(self.sq())
    }

    /// Adds an annotation (and its first revision). Written in batches; `commit` flushes.
    #[allow(clippy::too_many_arguments)]
    pub fn add_annotation(
        &mut self,
        id: Uuid,
        image: i64,
        class: i64,
        bbox: BBox,
        run: Option<(i64, f32)>,
        state: ReviewState,
        flags: BoxFlags,
        attributes: &Attributes,
    ) -> Result<()> {
        if !bbox.is_finite() || bbox.w < 0.0 || bbox.h < 0.0 {
            return Err(StoreError::Invalid(format!(
                "annotation {id}: invalid box {bbox:?}"
            )));
        }
        let hlc = self.hlc.tick();
        let seq = self.next_seq;
        self.next_seq += 1;
        let ann = self.next_ann;
        self.next_ann += 1;
        self.pending.push(PendingBox {
            id,
            ann,
            seq,
            hlc,
            row: RowValue {
                image,
                class,
                bbox,
                run: run.map(|r| r.0),
                score: run.map(|r| f64::from(r.1)),
                state,
                flags: i64::from(flags.bits()),
                deleted: false,
                attributes: attributes.to_json(),
            },
        });
        if self.pending.len() >= BULK_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the pending boxes: one multi-row INSERT into `annotations` and one into
    /// `revisions` per batch (far fewer statements than two per box).
    pub(super) fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let n = pending.len();
        let tuples = |k: usize| {
            let one = format!("({})", vec!["?"; k].join(","));
            vec![one; n].join(",")
        };
        let ann_sql = format!(
            "INSERT INTO annotations(id, uuid, image, class, x, y, w, h, run, score, state, flags, deleted, rev, attributes) VALUES {}",
            tuples(15)
        );
        let rev_sql = format!(
            "INSERT INTO revisions(seq, ann, author, client, hlc, op, image, class, x, y, w, h, run, score, state, flags, deleted, attributes) VALUES {}",
            tuples(18)
        );
        let map_err = |e: rusqlite::Error| match e {
            rusqlite::Error::SqliteFailure(f, msg)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                StoreError::Invalid(format!(
                    "an annotation id is already in the project ({})",
                    msg.unwrap_or_default()
                ))
            }
            source => StoreError::Sqlite {
                path: self.path.clone(),
                source,
            },
        };
        {
            let tx = self.tx();
            let mut stmt = tx.prepare_cached(&ann_sql).map_err(map_err)?;
            let mut i = 1;
            for b in &pending {
                let r = &b.row;
                stmt.raw_bind_parameter(i, b.ann).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 1, b.id.as_bytes().as_slice())
                    .map_err(map_err)?;
                stmt.raw_bind_parameter(i + 2, r.image).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 3, r.class).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 4, r.bbox.x).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 5, r.bbox.y).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 6, r.bbox.w).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 7, r.bbox.h).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 8, r.run).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 9, r.score).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 10, state_str(r.state))
                    .map_err(map_err)?;
                stmt.raw_bind_parameter(i + 11, r.flags).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 12, i64::from(r.deleted))
                    .map_err(map_err)?;
                stmt.raw_bind_parameter(i + 13, b.seq).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 14, r.attributes.as_deref())
                    .map_err(map_err)?;
                i += 15;
            }
            stmt.raw_execute().map_err(map_err)?;
            let mut stmt = tx.prepare_cached(&rev_sql).map_err(map_err)?;
            let mut i = 1;
            for b in &pending {
                let r = &b.row;
                stmt.raw_bind_parameter(i, b.seq).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 1, b.ann).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 2, self.author)
                    .map_err(map_err)?;
                stmt.raw_bind_parameter(i + 3, self.client)
                    .map_err(map_err)?;
                stmt.raw_bind_parameter(i + 4, b.hlc).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 5, "create").map_err(map_err)?;
                stmt.raw_bind_parameter(i + 6, r.image).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 7, r.class).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 8, r.bbox.x).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 9, r.bbox.y).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 10, r.bbox.w).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 11, r.bbox.h).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 12, r.run).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 13, r.score).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 14, state_str(r.state))
                    .map_err(map_err)?;
                stmt.raw_bind_parameter(i + 15, r.flags).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 16, i64::from(r.deleted))
                    .map_err(map_err)?;
                stmt.raw_bind_parameter(i + 17, r.attributes.as_deref())
                    .map_err(map_err)?;
                i += 18;
            }
            stmt.raw_execute().map_err(map_err)?;
        }
        Ok(())
    }

    /// Records that `run` processed `image`.
    pub fn mark_run_image(&mut self, run: i64, image: i64, boxes: usize) -> Result<()> {
        self.tx()
            .prepare_cached(
                "INSERT OR REPLACE INTO run_images(run, image, boxes, done_ms) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![run, image, boxes as i64, now_ms()]))
            .map_err(self.sq())?;
        Ok(())
    }

    /// Looks up an image row by the COCO id it was imported with.
    pub fn image_by_external_id(&self, ext: i64) -> Result<Option<i64>> {
        self.tx()
            .prepare_cached("SELECT id FROM images WHERE external_id=?1 ORDER BY id LIMIT 1")
            .and_then(|mut s| s.query_row([ext], |r| r.get(0)).optional())
            .map_err(self.sq())
    }

    /// Records the COCO id an image was imported with, unless it already has one (an image
    /// matched by name keeps the id of the file that first named it).
    pub fn note_external_id(&mut self, row: i64, ext: i64) -> Result<()> {
        self.tx()
            .prepare_cached("UPDATE images SET external_id=COALESCE(external_id, ?2) WHERE id=?1")
            .and_then(|mut s| s.execute(params![row, ext]))
            .map_err(self.sq())?;
        Ok(())
    }

    /// Looks up an image row by path relative to the root.
    pub fn image_by_path(&self, path: &str) -> Result<Option<i64>> {
        self.tx()
            .prepare_cached("SELECT id FROM images WHERE path=?1")
            .and_then(|mut s| s.query_row([path], |r| r.get(0)).optional())
            .map_err(self.sq())
    }

    pub(super) fn tx(&self) -> &Transaction<'_> {
        self.tx
            .as_ref()
            .expect("a Bulk's transaction is only taken by commit, which consumes the Bulk")
    }

    /// Makes everything durable.
    pub fn commit(mut self) -> Result<()> {
        self.flush()?;
        let path = self.path.clone();
        let Some(tx) = self.tx.take() else {
            return Ok(());
        };
        tx.commit()
            .map_err(|source| StoreError::Sqlite { path, source })
        // `Drop` turns foreign keys back on.
    }
}

impl Drop for Bulk<'_> {
    fn drop(&mut self) {
        // Rolls back when not committed.
        drop(self.tx.take());
        let _ = self.conn.pragma_update(None, "cache_size", -65536);
        if let Err(e) = self.conn.pragma_update(None, "foreign_keys", "ON") {
            tracing::error!(
                "{}: cannot turn foreign keys back on: {e}",
                self.path.display()
            );
        }
    }
}
