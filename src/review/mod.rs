//! The data loop: review states and transitions, batches, audits, triage, evaluation, agreement.
//!
//! Everything here is headless and callable from the CLI and the GUI alike:
//!
//! - [`transitions`]: which review-state changes each role may make ([`check_transition`],
//!   [`check_edit`], [`check_edits`]) and [`set_state`], which checks and applies one.
//!
//! The tables this module owns (batches, audits) come from migration 2 in `store::schema`.

pub mod eval;
pub mod run_eval;
pub mod transitions;
pub mod triage;

mod error;
mod sql;

pub use error::ReviewError;
pub use run_eval::{
    ClassDelta, EvalOptions, GroundTruth, RunComparison, RunEval, Slice, SliceEval, compare_runs,
    evaluate_run,
};
pub use transitions::{
    TransitionRule, allowed_targets, check_edit, check_edits, check_transition, set_state,
    set_states, state_after_edit, transition_table,
};

pub use triage::{Signal, SignalCounts, SignalKind, TriageImage, TriageOptions, triage};

/// Result type of the review module.
pub type Result<T, E = ReviewError> = std::result::Result<T, E>;
