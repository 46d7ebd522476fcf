//! Small SQL helpers shared by the review submodules: error mapping and common look-ups.

use std::collections::HashMap;

use rusqlite::OptionalExtension;
use uuid::Uuid;

use super::{Result, ReviewError};
use crate::store::Project;

/// Maps a SQLite error to a [`ReviewError`] naming the project file.
pub(crate) fn sq(p: &Project) -> impl Fn(rusqlite::Error) -> ReviewError + '_ {
    move |error| ReviewError::Sqlite {
        path: p.path().to_path_buf(),
        error,
    }
}

/// The row id of the current user (the author of the next edits).
pub(crate) fn current_user_row(p: &Project) -> Result<i64> {
    let me = p.current_user()?;
    user_row(p, &me.id.to_string())?.ok_or_else(|| ReviewError::NotFound {
        what: "user",
        key: me.name,
    })
}

/// The row id of a user by name or uuid.
pub(crate) fn user_row(p: &Project, name_or_id: &str) -> Result<Option<i64>> {
    p.conn()
        .query_row(
            "SELECT id FROM users WHERE uuid=?1 OR name=?1 ORDER BY id LIMIT 1",
            [name_or_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(sq(p))
}

/// User row id → name.
pub(crate) fn user_names(p: &Project) -> Result<HashMap<i64, String>> {
    pairs(p, "SELECT id, name FROM users")
}

/// Class row id → name.
pub(crate) fn class_names(p: &Project) -> Result<HashMap<i64, String>> {
    pairs(p, "SELECT id, name FROM classes")
}

/// Image row id → path.
pub(crate) fn image_paths(p: &Project) -> Result<HashMap<i64, String>> {
    pairs(p, "SELECT id, path FROM images")
}

fn pairs(p: &Project, sql: &str) -> Result<HashMap<i64, String>> {
    let mut stmt = p.conn().prepare(sql).map_err(sq(p))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sq(p))?;
    rows.collect::<Result<HashMap<_, _>, _>>().map_err(sq(p))
}

/// The row id of an image by its path relative to the project, or by its uuid.
pub(crate) fn image_row_by_path_or_id(p: &Project, key: &str) -> Result<i64> {
    p.conn()
        .query_row(
            "SELECT id FROM images WHERE path=?1 OR uuid=?1 ORDER BY id LIMIT 1",
            [key],
            |r| r.get(0),
        )
        .optional()
        .map_err(sq(p))?
        .ok_or_else(|| ReviewError::NotFound {
            what: "image",
            key: key.to_owned(),
        })
}

/// Image row id → uuid.
pub(crate) fn image_uuids(p: &Project) -> Result<HashMap<i64, Uuid>> {
    let mut stmt = p
        .conn()
        .prepare("SELECT id, uuid FROM images")
        .map_err(sq(p))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .map_err(sq(p))?;
    let mut out = HashMap::new();
    for row in rows {
        let (id, uuid) = row.map_err(sq(p))?;
        out.insert(id, Uuid::parse_str(&uuid).unwrap_or_default());
    }
    Ok(out)
}

/// Unix milliseconds of a revision's hybrid logical clock (its top 48 bits).
pub(crate) fn hlc_ms(hlc: i64) -> i64 {
    hlc >> 16
}
