//! Classes: listing, creating on first use (in a transaction), renaming.

use rusqlite::{OptionalExtension, Transaction, params};
use uuid::Uuid;

use super::*;

impl Project {
    // ---------------------------------------------------------------- classes

    pub fn classes(&self) -> Result<Vec<Class>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT uuid, name, color, ord FROM classes ORDER BY ord, id")
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Class {
                    id: Uuid::parse_str(&r.get::<_, String>(0)?).unwrap_or_default(),
                    name: r.get(1)?,
                    color: r.get(2)?,
                    order: r.get(3)?,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// Returns the class with this name, creating it (last in order) if needed.
    pub fn ensure_class(&mut self, name: &str) -> Result<Class> {
        let tx = self
            .conn
            .transaction()
            .map_err(|source| StoreError::Sqlite {
                path: self.path.clone(),
                source,
            })?;
        let class = ensure_class_tx(&tx, name).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })?;
        tx.commit().map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })?;
        Ok(class)
    }

    pub fn rename_class(&mut self, id: Uuid, name: &str) -> Result<()> {
        let n = self
            .conn
            .execute(
                "UPDATE classes SET name=?1 WHERE uuid=?2",
                params![name, id.to_string()],
            )
            .map_err(self.sq())?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "class",
                key: id.to_string(),
            });
        }
        Ok(())
    }
}

pub(super) fn class_row_tx(tx: &Transaction<'_>, name: &str) -> rusqlite::Result<i64> {
    if let Some(id) = tx
        .query_row("SELECT id FROM classes WHERE name=?1", [name], |r| r.get(0))
        .optional()?
    {
        return Ok(id);
    }
    let n: i64 = tx.query_row("SELECT COUNT(*) FROM classes", [], |r| r.get(0))?;
    let color = PALETTE[usize::try_from(n).unwrap_or(0) % PALETTE.len()];
    tx.execute(
        "INSERT INTO classes(uuid, name, color, ord) VALUES (?1, ?2, ?3, ?4)",
        params![Uuid::now_v7().to_string(), name, color, n],
    )?;
    Ok(tx.last_insert_rowid())
}

pub(super) fn ensure_class_tx(tx: &Transaction<'_>, name: &str) -> rusqlite::Result<Class> {
    let id = class_row_tx(tx, name)?;
    tx.query_row(
        "SELECT uuid, name, color, ord FROM classes WHERE id=?1",
        [id],
        |r| {
            Ok(Class {
                id: Uuid::parse_str(&r.get::<_, String>(0)?).unwrap_or_default(),
                name: r.get(1)?,
                color: r.get(2)?,
                order: r.get(3)?,
            })
        },
    )
}
