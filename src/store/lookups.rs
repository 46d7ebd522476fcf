//! Typed reads for the data loop (`review`): row-id maps for joining in memory, the revision
//! log as annotator statistics read it, labels with their owners, the remembered profile.
//! Row ids stay inside the crate (`pub(crate)`); nothing here leaves the file.

use std::collections::HashMap;

use rusqlite::OptionalExtension;
use uuid::Uuid;

use super::*;

/// One revision as per-annotator statistics read it (the log in box order, then clock order).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LogRevision {
    pub ann: i64,
    pub author: i64,
    pub hlc: i64,
    pub state: String,
    pub image: i64,
    pub op: String,
    pub run: Option<i64>,
}

/// A live label with the person it belongs to (its last human decision's author, else its
/// first author).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OwnedLabel {
    pub image: i64,
    pub class: i64,
    pub bbox: BBox,
    pub owner: i64,
}

/// A live label (not a proposal, not rejected, not deleted) as triage matches predictions.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LiveLabel {
    pub id: Uuid,
    pub image: i64,
    pub class: i64,
    pub bbox: BBox,
    pub flags: BoxFlags,
}

impl Project {
    /// Every live label, in row order.
    pub(crate) fn live_labels(&self) -> Result<Vec<LiveLabel>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT uuid, image, class, x, y, w, h, flags FROM annotations
                 WHERE deleted=0 AND state NOT IN ('proposed','rejected') ORDER BY id",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                let id: Vec<u8> = r.get(0)?;
                Ok(LiveLabel {
                    id: Uuid::from_slice(&id).unwrap_or_default(),
                    image: r.get(1)?,
                    class: r.get(2)?,
                    bbox: BBox::new(r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?),
                    flags: BoxFlags::from_bits(r.get::<_, i64>(7)?.try_into().unwrap_or(0)),
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// The images someone decided something on: a box in any state but proposed, or the
    /// `done` tag.
    pub(crate) fn reviewed_images(&self) -> Result<std::collections::HashSet<i64>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT DISTINCT image FROM annotations WHERE state != 'proposed'
                 UNION SELECT image FROM image_tags WHERE tag = 'done'",
            )
            .map_err(self.sq())?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(self.sq())?;
        rows.collect::<Result<std::collections::HashSet<i64>, _>>()
            .map_err(self.sq())
    }

    fn pairs(&self, sql: &str) -> Result<HashMap<i64, String>> {
        let mut stmt = self.conn.prepare(sql).map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.sq())?;
        rows.collect::<Result<HashMap<_, _>, _>>()
            .map_err(self.sq())
    }

    /// The row id of the current user (the author of the next edits).
    pub(crate) fn current_user_row(&self) -> i64 {
        self.user
    }

    /// The row id of a user by name or uuid.
    pub(crate) fn user_row_of(&self, name_or_id: &str) -> Result<Option<i64>> {
        self.user_row(name_or_id)
    }

    /// User row id → name.
    pub(crate) fn user_names(&self) -> Result<HashMap<i64, String>> {
        self.pairs("SELECT id, name FROM users")
    }

    /// Every user: row id, name and role (`None` for a role this build does not know).
    pub(crate) fn user_roles(&self) -> Result<Vec<(i64, String, Option<Role>)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name, role FROM users")
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    Role::parse(&r.get::<_, String>(2)?),
                ))
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// Class row id → name.
    pub(crate) fn class_names(&self) -> Result<HashMap<i64, String>> {
        self.pairs("SELECT id, name FROM classes")
    }

    /// Image row id → path.
    pub(crate) fn image_paths(&self) -> Result<HashMap<i64, String>> {
        self.pairs("SELECT id, path FROM images")
    }

    /// Image row id → uuid.
    pub(crate) fn image_uuids(&self) -> Result<HashMap<i64, Uuid>> {
        Ok(self
            .pairs("SELECT id, uuid FROM images")?
            .into_iter()
            .map(|(id, uuid)| (id, Uuid::parse_str(&uuid).unwrap_or_default()))
            .collect())
    }

    /// The row id of an image by its path relative to the project, or by its uuid.
    pub(crate) fn image_row_by_path_or_id(&self, key: &str) -> Result<i64> {
        self.conn
            .query_row(
                "SELECT id FROM images WHERE path=?1 OR uuid=?1 ORDER BY id LIMIT 1",
                [key],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sq())?
            .ok_or_else(|| StoreError::NotFound {
                what: "image",
                key: key.to_owned(),
            })
    }

    /// The user this file remembers as chosen (its uuid or name), if anyone chose one.
    pub(crate) fn remembered_user(&self) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key='user'", [], |r| r.get(0))
            .optional()
            .map_err(self.sq())
    }

    /// The whole revision log in box order, then clock order, for per-annotator statistics.
    pub(crate) fn revision_log(&self) -> Result<Vec<LogRevision>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT v.ann, v.author, v.hlc, v.state, v.image, v.op, v.run FROM revisions v
                 ORDER BY v.ann, v.hlc, v.client, v.seq",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(LogRevision {
                    ann: r.get(0)?,
                    author: r.get(1)?,
                    hlc: r.get(2)?,
                    state: r.get(3)?,
                    image: r.get(4)?,
                    op: r.get(5)?,
                    run: r.get(6)?,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// Every live label with the person it belongs to.
    pub(crate) fn owned_labels(&self) -> Result<Vec<OwnedLabel>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT l.image, l.class, l.x, l.y, l.w, l.h, COALESCE(
                    (SELECT v.author FROM revisions v WHERE v.ann=l.id AND v.state IN ('accepted','corrected','submitted')
                     ORDER BY v.hlc DESC, v.client DESC, v.seq DESC LIMIT 1),
                    (SELECT v.author FROM revisions v WHERE v.ann=l.id ORDER BY v.hlc, v.client, v.seq LIMIT 1))
                 FROM annotations l WHERE l.deleted=0 AND l.state NOT IN ('proposed','rejected') ORDER BY l.id",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(OwnedLabel {
                    image: r.get(0)?,
                    class: r.get(1)?,
                    bbox: BBox::new(r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
                    owner: r.get(6)?,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }
}

/// One metadata write of an import: set `key` to `value` on an image (by row), or remove the
/// key with `None`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MetaWrite {
    pub image: i64,
    pub key: String,
    pub value: Option<String>,
}

impl Project {
    /// Writes metadata in one transaction: all or nothing. Returns (values set, values removed).
    pub(crate) fn write_meta(&mut self, writes: &[MetaWrite]) -> Result<(usize, usize)> {
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sq)?;
        let (mut set_n, mut removed) = (0, 0);
        {
            let mut set = tx
                .prepare("INSERT OR REPLACE INTO image_meta(image, key, value) VALUES (?1, ?2, ?3)")
                .map_err(sq)?;
            let mut del = tx
                .prepare("DELETE FROM image_meta WHERE image=?1 AND key=?2")
                .map_err(sq)?;
            for w in writes {
                match &w.value {
                    Some(v) => {
                        set.execute(params![w.image, w.key, v]).map_err(sq)?;
                        set_n += 1;
                    }
                    None => removed += del.execute(params![w.image, w.key]).map_err(sq)?,
                }
            }
        }
        tx.commit().map_err(sq)?;
        Ok((set_n, removed))
    }

    /// Every (key, value, images) of the image metadata, sorted by key then value.
    pub(crate) fn meta_value_counts(&self) -> Result<Vec<(String, String, u64)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT key, value, COUNT(*) FROM image_meta GROUP BY key, value ORDER BY key, value",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                ))
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// The uuid of an image by its row id.
    pub(crate) fn image_uuid_of_row(&self, row: i64) -> Result<Uuid> {
        let uuid: String = self
            .conn
            .query_row("SELECT uuid FROM images WHERE id=?1", [row], |r| r.get(0))
            .map_err(self.sq())?;
        Ok(Uuid::parse_str(&uuid).unwrap_or_default())
    }
}
