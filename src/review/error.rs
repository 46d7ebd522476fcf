//! The review module's error type: every variant says which box, batch, file or rule it is about.

use std::path::PathBuf;

use uuid::Uuid;

use crate::model::{ReviewState, Role};
use crate::store::StoreError;

/// Errors of the data loop. Messages are meant for people: they name the thing and the rule.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Store(#[from] StoreError),
    // The underlying error is part of the message, not a separate source, so `{:#}` chains
    // do not print it twice.
    #[error("{path}: {error}")]
    Sqlite {
        path: PathBuf,
        error: rusqlite::Error,
    },
    /// No role may make this change.
    #[error("a box cannot go from {} to {}: {why}", .from.as_str(), .to.as_str())]
    IllegalTransition {
        from: ReviewState,
        to: ReviewState,
        why: &'static str,
    },
    /// The change exists, but not for this role.
    #[error("{} cannot move a box from {} to {}: only a {needs} can", role_phrase(*.role), .from.as_str(), .to.as_str())]
    RoleForbidden {
        from: ReviewState,
        to: ReviewState,
        role: Role,
        needs: &'static str,
    },
    /// A rule about creating or editing a box (not a state change) was broken.
    #[error("{0}")]
    EditRefused(String),
    /// Wraps another error with the box it concerns.
    #[error("box {id}: {error}")]
    OnBox { id: Uuid, error: Box<ReviewError> },
    #[error("returning box {0} needs a reason (the annotator sees it)")]
    ReasonRequired(Uuid),
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

/// "an annotator", "a reviewer", "a lead": for messages.
pub fn role_phrase(role: Role) -> &'static str {
    match role {
        Role::Annotator => "an annotator",
        Role::Reviewer => "a reviewer",
        Role::Lead => "a lead",
    }
}

impl ReviewError {
    /// Adds the box id to an error about a box.
    pub fn on_box(self, id: Uuid) -> ReviewError {
        match self {
            e @ (ReviewError::OnBox { .. } | ReviewError::ReasonRequired(_)) => e,
            e => ReviewError::OnBox {
                id,
                error: Box::new(e),
            },
        }
    }
}
