//! Small helpers shared by the review submodules.
//!
//! `sq` maps SQLite errors for the review modules whose queries have not moved into the store
//! yet (batches, metadata, triage, run evaluation); see `SQL_NOT_YET_IN_STORE` in
//! `tests/architecture.rs`.

use super::ReviewError;
use crate::store::Project;

/// Maps a SQLite error to a [`ReviewError`] naming the project file.
pub(crate) fn sq(p: &Project) -> impl Fn(rusqlite::Error) -> ReviewError + '_ {
    move |error| ReviewError::Sqlite {
        path: p.path().to_path_buf(),
        error,
    }
}

/// Unix milliseconds of a revision's hybrid logical clock (its top 48 bits).
pub(crate) fn hlc_ms(hlc: i64) -> i64 {
    hlc >> 16
}
