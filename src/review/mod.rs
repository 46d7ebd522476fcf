//! The data loop: review states and transitions, batches, audits, triage, evaluation, agreement.
//!
//! Everything here is headless and callable from the CLI and the GUI alike; each function takes
//! a `Project` and acts as its current user (`Project::switch_user`):
//!
//! - [`transitions`]: [`set_state`] / [`set_states`], which check a change against the review
//!   policy ([`crate::policy`]: which changes each role may make, also enforced by
//!   `Project::apply`) and apply it;
//! - [`eval`]: a faithful port of pycocotools' bbox `COCOeval`; [`run_eval`]: a model run's
//!   original predictions against a version's approved labels, per slice, and run comparisons;
//! - [`triage`]: images ranked for review from a run's predictions and the labels, with reasons,
//!   and the one-key fix each reason suggests;
//! - [`batches`]: batches of images for annotators and the lead's stratified, seeded audits;
//! - [`meta`]: metadata import (CSV/JSON), the slices it defines, and image tags;
//! - [`agreement`]: how well two people agree when they labeled the same image;
//! - [`stats`]: per-annotator throughput and quality figures for a dashboard;
//! - [`profile`]: the local user profile chosen on first start;
//! - [`similar`]: "more like this": nearest images or boxes by their embeddings.
//!
//! Nothing here touches SQLite: the tables of batches and audits (migration 2 in
//! `store::schema`) and every query the data loop needs are typed functions of `store`.

pub mod agreement;
pub mod batches;
pub mod crops;
pub mod eval;
pub mod meta;
pub mod profile;
pub mod run_eval;
pub mod similar;
pub mod stats;
pub mod transitions;
pub mod triage;

mod error;

pub use agreement::{AgreementReport, ClassAgreement, PairAgreement, agreement};
pub use batches::{
    AuditDecision, AuditInfo, AuditItem, AuditOptions, BatchDetail, BatchImage, BatchInfo,
    BatchState, DecideReport, NEAR_THRESHOLD, NewBatch, QueueOrder, SCORE_THRESHOLD, Stratum,
    SubmitReport, Uncertainty, Verdict, assign_batch, audit_decide, audit_mark, audit_of,
    audit_start, batch_detail, batches, create_batch, set_queue_order, sort_by_uncertainty,
    stratified_sample, submit_batch,
};
pub use error::ReviewError;
pub use meta::{
    MetaImportReport, SliceKey, SliceValue, import_meta, meta_slices, set_meta, tag_image,
};
pub use profile::{choose_profile, chosen_profile};
pub use run_eval::{
    ClassDelta, EvalOptions, GroundTruth, RunComparison, RunEval, Slice, SliceEval, compare_runs,
    evaluate_run,
};
pub use stats::{AnnotatorStats, MeasuredTime, annotator_stats};
pub use transitions::{
    TransitionRule, allowed_targets, check_edits, check_transition, set_state, set_states,
    state_after_edit, transition_table,
};
pub use triage::fix::{Fix, FixError, FixKind, fixed_issue, plan_fix};
pub use triage::issues::{ClassCalibration, IssueKind, IssueScores, LabelIssue, LabelScores};
pub use triage::{
    Signal, SignalCounts, SignalKind, Triage, TriageImage, TriageOptions, triage, triage_ranked,
};

/// Result type of the review module.
pub type Result<T, E = ReviewError> = std::result::Result<T, E>;
