//! The data loop: review states and transitions, batches, audits, triage, evaluation, agreement.
//!
//! Everything here is headless and callable from the CLI and the GUI alike:
//!
//! - [`transitions`]: which review-state changes each role may make ([`check_transition`],
//!   [`check_edit`], [`check_edits`]) and [`set_state`], which checks and applies one.
//!
//! The tables this module owns (batches, audits) come from migration 2 in `store::schema`.

pub mod eval;
pub mod transitions;

mod error;
mod sql;

pub use error::ReviewError;
pub use transitions::{
    TransitionRule, allowed_targets, check_edit, check_edits, check_transition, set_state,
    set_states, state_after_edit, transition_table,
};

/// Result type of the review module.
pub type Result<T, E = ReviewError> = std::result::Result<T, E>;
