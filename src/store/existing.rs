//! What an import finds already in the project: the live labels of an image, and removing them
//! inside the import's transaction (`loupe import --replace`).

use rusqlite::params;
use uuid::Uuid;

use super::{Bulk, Result, StoreError};
use crate::model::BBox;

/// A live label (not a model proposal, not deleted) of one image, as an import compares it.
#[derive(Clone, Debug, PartialEq)]
pub struct ExistingLabel {
    /// Row id, for [`Bulk::delete_label`].
    pub row: i64,
    pub id: Uuid,
    /// Class row, as [`Bulk::class`] returns it.
    pub class: i64,
    pub bbox: BBox,
}

impl Bulk<'_> {
    /// The live labels of an image (proposals of runs and deleted boxes excluded), including
    /// those this bulk has not written yet.
    pub fn live_labels(&mut self, image: i64) -> Result<Vec<ExistingLabel>> {
        self.flush()?;
        let mut stmt = self
            .tx()
            .prepare_cached(
                "SELECT id, uuid, class, x, y, w, h FROM annotations
                 WHERE image=?1 AND deleted=0 AND run IS NULL ORDER BY id",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([image], |r| {
                let uuid: Vec<u8> = r.get(1)?;
                Ok(ExistingLabel {
                    row: r.get(0)?,
                    id: Uuid::from_slice(&uuid).unwrap_or_default(),
                    class: r.get(2)?,
                    bbox: BBox {
                        x: r.get(3)?,
                        y: r.get(4)?,
                        w: r.get(5)?,
                        h: r.get(6)?,
                    },
                })
            })
            .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
            .map_err(self.sq())?;
        Ok(rows)
    }

    /// Deletes a label as a revision by this bulk's author (op `delete`, the row's value with
    /// `deleted` set), like an edit in the app would.
    pub fn delete_label(&mut self, row: i64) -> Result<()> {
        let hlc = self.hlc.tick();
        let seq = self.next_seq;
        self.next_seq += 1;
        let (author, client) = (self.author, self.client);
        let tx = self.tx();
        let inserted = tx
            .prepare_cached(
                "INSERT INTO revisions(seq, ann, author, client, hlc, op, image, class, x, y, w, h, run, score, state, flags, deleted, attributes)
                 SELECT ?1, id, ?2, ?3, ?4, 'delete', image, class, x, y, w, h, run, score, state, flags, 1, attributes
                 FROM annotations WHERE id=?5 AND deleted=0",
            )
            .and_then(|mut s| s.execute(params![seq, author, client, hlc, row]))
            .map_err(self.sq())?;
        if inserted != 1 {
            return Err(StoreError::NotFound {
                what: "live annotation",
                key: row.to_string(),
            });
        }
        self.tx()
            .prepare_cached("UPDATE annotations SET deleted=1, rev=?2 WHERE id=?1")
            .and_then(|mut s| s.execute(params![row, seq]))
            .map_err(self.sq())?;
        Ok(())
    }
}

impl Bulk<'_> {
    /// Sets (or, with an empty value, removes) a key=value on an image, inside the bulk.
    pub fn set_meta(&mut self, image: i64, key: &str, value: &str) -> Result<()> {
        let sql = if value.is_empty() {
            "DELETE FROM image_meta WHERE image=?1 AND key=?2"
        } else {
            "INSERT OR REPLACE INTO image_meta(image, key, value) VALUES (?1, ?2, ?3)"
        };
        let tx = self.tx();
        let mut stmt = tx.prepare_cached(sql).map_err(self.sq())?;
        if value.is_empty() {
            stmt.execute(params![image, key])
        } else {
            stmt.execute(params![image, key, value])
        }
        .map_err(self.sq())?;
        Ok(())
    }

    /// The images whose meta `key` is `value`: (row, path).
    pub fn images_with_meta(&self, key: &str, value: &str) -> Result<Vec<(i64, String)>> {
        let mut stmt = self
            .tx()
            .prepare_cached(
                "SELECT i.id, i.path FROM images i JOIN image_meta m ON m.image=i.id
                 WHERE m.key=?1 AND m.value=?2 ORDER BY i.path",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map(params![key, value], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
            .map_err(self.sq())?;
        Ok(rows)
    }

    /// The image's meta `key`, if set.
    pub fn meta(&self, image: i64, key: &str) -> Result<Option<String>> {
        use rusqlite::OptionalExtension;
        self.tx()
            .prepare_cached("SELECT value FROM image_meta WHERE image=?1 AND key=?2")
            .and_then(|mut stmt| stmt.query_row(params![image, key], |r| r.get(0)).optional())
            .map_err(self.sq())
    }
}
