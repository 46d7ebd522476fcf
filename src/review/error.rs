//! The review module's error type: every variant says which box, batch, file or rule it is about.

use std::path::PathBuf;

use uuid::Uuid;

use crate::policy::Refusal;
use crate::store::StoreError;

/// Errors of the data loop. Messages are meant for people: they name the thing and the rule.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The review policy refuses the change ([`crate::policy`]).
    #[error(transparent)]
    Policy(#[from] Refusal),
    /// Wraps another error with the box it concerns.
    #[error("box {id}: {error}")]
    OnBox { id: Uuid, error: Box<ReviewError> },
    #[error("{what} not found: {key}")]
    NotFound { what: &'static str, key: String },
    /// A workflow rule (batches, audits) refused the action; the message says which and why.
    #[error("{0}")]
    Refused(String),
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl ReviewError {
    /// Adds the box id to an error about a box.
    pub fn on_box(self, id: Uuid) -> ReviewError {
        match self {
            e @ ReviewError::OnBox { .. } => e,
            e => ReviewError::OnBox {
                id,
                error: Box::new(e),
            },
        }
    }
}
