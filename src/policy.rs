//! The review policy: who may do what to a box in which state. Pure rules over the model's
//! types, with no storage and no I/O, so every layer that enforces them reaches the same verdict:
//!
//! - `store` checks every [`Project::apply`](crate::store::Project::apply) against
//!   [`check_edits`] inside the edit's own transaction (whatever the caller: CLI, app, tests);
//! - `review` offers the same checks to its workflows before it builds edits;
//! - `sync::roster` judges each merged revision by its signer's role with
//!   [`check_signed_decision`], so a decision reserved to reviewers on this machine is reserved to
//!   them in every pack.
//!
//! The life of a box:
//!
//! ```text
//!  model run ──> proposed ──annotator──> accepted | corrected | rejected
//!  person   ──> submitted                    │          │
//!                   │                        └────┬─────┘
//!                   └──reviewer/lead──> approved | returned (with a reason)
//!                                                   │
//!               returned ──annotator──> submitted | accepted | corrected | rejected
//! ```
//!
//! Reviewers and leads may do everything an annotator may. Annotators may also reopen their own
//! decisions before review (accepted/corrected/rejected back to proposed, a rejection changed to
//! an acceptance), which is what undo needs. Approved boxes are ground truth: only a reviewer or
//! lead can return one, and an annotator cannot edit or delete one in place.

use serde::Serialize;

use crate::model::{AnnotationValue, ReviewState, Role, Source};

use ReviewState::{Accepted, Approved, Corrected, Proposed, Rejected, Returned, Submitted};

/// The least role that may make a review decision (approve, return, resolve a conflict).
pub const DECIDER: Role = Role::Reviewer;

/// Why the policy refuses a change. Messages name the rule; callers add which box it is about.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No role may make this change.
    #[error("a box cannot go from {} to {}: {why}", .from.as_str(), .to.as_str())]
    IllegalTransition {
        from: ReviewState,
        to: ReviewState,
        why: &'static str,
    },
    /// The change exists, but not for this role.
    #[error("{} cannot move a box from {} to {}: only a {} can", role_phrase(*.role), .from.as_str(), .to.as_str(), roles_from(*.needs))]
    RoleForbidden {
        from: ReviewState,
        to: ReviewState,
        role: Role,
        needs: Role,
    },
    /// A new box in `proposed` that no model run made.
    #[error("a proposal must come from a model run; a box drawn by a person starts as submitted")]
    ProposalWithoutRun,
    /// A new box in a state boxes never start in.
    #[error("a new box starts as submitted, proposed (model boxes) or approved, not {}", .state.as_str())]
    BadStartState { state: ReviewState },
    /// A new approved box from someone below a reviewer.
    #[error("{} cannot create an approved box: draw it as submitted for review", role_phrase(*.role))]
    CreateApproved { role: Role },
    /// A change or deletion of an approved box in place by someone below a reviewer.
    #[error(
        "the box is approved ground truth: {} cannot {} it; a reviewer or lead can return it first",
        role_phrase(*.role),
        if *.delete { "delete" } else { "change" }
    )]
    ApprovedIsGroundTruth { role: Role, delete: bool },
    /// Returning a box without saying why.
    #[error("returning a box needs a reason (the annotator sees it)")]
    ReasonRequired,
    /// Anything but a new model proposal from a model worker's key.
    #[error("a model worker may only create proposals for model runs, not {what}")]
    ModelOnlyProposes { what: &'static str },
    /// A decision by someone whose role does not allow it (sync: the role of the pack's signer).
    #[error("{} needs a {}", .decision.as_str(), roles_from(DECIDER))]
    DecisionForbidden { decision: Decision, role: Role },
}

/// A change only a reviewer or lead may make, as sync judges signed revisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Decision {
    Approve,
    Return,
    ResolveConflict,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approving a box",
            Decision::Return => "returning a box",
            Decision::ResolveConflict => "resolving a conflict",
        }
    }
}

/// One legal change of state and the least role that may make it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TransitionRule {
    pub from: ReviewState,
    pub to: ReviewState,
    pub min_role: Role,
}

/// "an annotator", "a reviewer", "a lead": for messages.
pub fn role_phrase(role: Role) -> &'static str {
    match role {
        Role::Model => "a model worker",
        Role::Annotator => "an annotator",
        Role::Reviewer => "a reviewer",
        Role::Lead => "a lead",
    }
}

/// The roles at or above `role`, for "only a … can".
fn roles_from(role: Role) -> &'static str {
    match role {
        Role::Model | Role::Annotator => "annotator, reviewer or lead",
        Role::Reviewer => "reviewer or lead",
        Role::Lead => "lead",
    }
}

/// The rule for `from → to`: the least role that may make it, or why nobody may.
fn rule(from: ReviewState, to: ReviewState) -> Result<Role, &'static str> {
    const A: Role = Role::Annotator;
    const R: Role = DECIDER;
    match (from, to) {
        _ if from == to => Err("the box is already in that state"),
        // An annotator decides on a model proposal.
        (Proposed, Accepted | Corrected | Rejected) => Ok(A),
        (Proposed, Approved) => {
            Err("a proposal is accepted or corrected by an annotator before it is reviewed")
        }
        (Proposed, Submitted) => {
            Err("submitted is for boxes drawn by people; accept or correct a proposal instead")
        }
        (Proposed, Returned) => Err("a proposal was never submitted for review; reject it instead"),
        // Decisions on proposals: changed or reopened by an annotator, reviewed by a reviewer.
        (Accepted, Corrected | Rejected | Proposed) => Ok(A),
        (Corrected, Rejected | Proposed) => Ok(A),
        (Accepted | Corrected, Approved | Returned) => Ok(R),
        (Corrected, Accepted) => {
            Err("a corrected proposal no longer has the model's value; it stays corrected")
        }
        (Accepted | Corrected, Submitted) => Err("the box is already waiting for review"),
        (Rejected, Proposed | Accepted | Corrected) => Ok(A),
        (Rejected, Submitted | Approved | Returned) => Err(
            "a rejected proposal is not a label; reopen it as proposed, or accept or correct it first",
        ),
        // Boxes drawn by people.
        (Submitted, Approved | Returned) => Ok(R),
        (Submitted, Accepted | Corrected | Rejected) => Err(
            "accepted, corrected and rejected are decisions on model proposals; delete a drawn box instead of rejecting it",
        ),
        (Submitted, Proposed) => Err("a box drawn by a person cannot become a model proposal"),
        // Ground truth.
        (Approved, Returned) => Ok(R),
        // A reviewer withdrawing their approval (undo in the app): back to waiting for review.
        (Approved, Accepted | Corrected | Submitted) => Ok(R),
        (Approved, _) => {
            Err("an approved box is ground truth; a reviewer or lead returns it to reopen it")
        }
        // Back from review: fixed by the annotator, or approved after all.
        (Returned, Submitted | Accepted | Corrected | Rejected) => Ok(A),
        (Returned, Approved) => Ok(R),
        (Returned, Proposed) => Err(
            "a returned box goes back to review once fixed: submit, accept, correct or reject it",
        ),
        _ => Err("the box is already in that state"),
    }
}

/// Checks that a person with `role` may move a box from `from` to `to`.
///
/// Refuses a change to the same state, a change no role may make
/// ([`Refusal::IllegalTransition`]) and a change reserved for a higher role
/// ([`Refusal::RoleForbidden`]).
pub fn check_transition(from: ReviewState, to: ReviewState, role: Role) -> Result<(), Refusal> {
    match rule(from, to) {
        Err(why) => Err(Refusal::IllegalTransition { from, to, why }),
        Ok(needs) if role >= needs => Ok(()),
        Ok(needs) => Err(Refusal::RoleForbidden {
            from,
            to,
            role,
            needs,
        }),
    }
}

/// Every legal transition with the least role that may make it (for help screens and menus).
pub fn transition_table() -> Vec<TransitionRule> {
    let mut out = Vec::new();
    for from in ReviewState::ALL {
        for to in ReviewState::ALL {
            if let Ok(min_role) = rule(from, to) {
                out.push(TransitionRule { from, to, min_role });
            }
        }
    }
    out
}

/// The states a person with `role` may move a box in state `from` to (for context menus).
pub fn allowed_targets(from: ReviewState, role: Role) -> Vec<ReviewState> {
    ReviewState::ALL
        .into_iter()
        .filter(|&to| check_transition(from, to, role).is_ok())
        .collect()
}

/// The state a box should take when its annotator edits its geometry or class: a proposal (or
/// an accepted one) becomes corrected, a returned box drawn by a person is resubmitted, and
/// anything else keeps its state. The UI calls this before building an `Edit::Update`.
pub fn state_after_edit(value: &AnnotationValue) -> ReviewState {
    match (value.state, &value.source) {
        (Proposed | Accepted | Rejected, _) | (Returned, Source::Model { .. }) => Corrected,
        (Returned, Source::Human) => Submitted,
        (s, _) => s,
    }
}

/// Checks one edit of a box by a person with `role`: `before` is the box's current value
/// (`None` for a new box), `after` the value the edit writes, `note` the reason it carries.
///
/// - a new box starts as `submitted`, as `proposed` (model boxes only) or as `approved`
///   (reviewers and leads only);
/// - a change of state follows [`check_transition`]; returning a box needs a reason;
/// - an annotator cannot change or delete an approved box in place.
pub fn check_edit(
    before: Option<&AnnotationValue>,
    after: &AnnotationValue,
    note: Option<&str>,
    role: Role,
) -> Result<(), Refusal> {
    if role == Role::Model {
        return check_model_revision(
            before.is_none(),
            after.state,
            matches!(after.source, Source::Model { .. }),
            after.deleted,
            false,
        );
    }
    let Some(before) = before else {
        return match after.state {
            Submitted => Ok(()),
            Proposed if matches!(after.source, Source::Model { .. }) => Ok(()),
            Proposed => Err(Refusal::ProposalWithoutRun),
            Approved if role >= DECIDER => Ok(()),
            Approved => Err(Refusal::CreateApproved { role }),
            state => Err(Refusal::BadStartState { state }),
        };
    };
    if before.state != after.state {
        check_transition(before.state, after.state, role)?;
        let reason = note.map(str::trim).unwrap_or_default();
        if after.state == Returned && reason.is_empty() {
            return Err(Refusal::ReasonRequired);
        }
        return Ok(());
    }
    if before.state == Approved && role < DECIDER && before != after {
        return Err(Refusal::ApprovedIsGroundTruth {
            role,
            delete: after.deleted,
        });
    }
    Ok(())
}

/// The decision a revision makes, judged without knowing the box's earlier value (sync sees
/// revisions of other clients): leaving a box approved or returned, or resolving a conflict.
pub fn decision_of(state: ReviewState, resolves: bool) -> Option<Decision> {
    if resolves {
        return Some(Decision::ResolveConflict);
    }
    match state {
        Approved => Some(Decision::Approve),
        Returned => Some(Decision::Return),
        _ => None,
    }
}

/// Checks a revision signed by someone with `role` that leaves a box in `state` (and resolves
/// a conflict when `resolves`): decisions need a reviewer or a lead, as in [`check_transition`].
pub fn check_signed_decision(
    state: ReviewState,
    resolves: bool,
    role: Role,
) -> Result<(), Refusal> {
    match decision_of(state, resolves) {
        Some(decision) if role < DECIDER => Err(Refusal::DecisionForbidden { decision, role }),
        _ => Ok(()),
    }
}

/// What a model worker's key may write: a new box (`is_new`), in state `proposed`, of a model
/// run, not deleted, resolving nothing. Everything else (labels, decisions, edits or deletions of
/// existing boxes, conflict resolutions) is refused, here and at every client's merge.
pub fn check_model_revision(
    is_new: bool,
    state: ReviewState,
    has_run: bool,
    deleted: bool,
    resolves: bool,
) -> Result<(), Refusal> {
    let what = if resolves {
        "resolving a conflict"
    } else if !is_new {
        "changing an existing box"
    } else if deleted {
        "deleting a box"
    } else if state != Proposed {
        "a label (a box that is not a proposal)"
    } else if !has_run {
        "a proposal without a model run"
    } else {
        return Ok(());
    };
    Err(Refusal::ModelOnlyProposes { what })
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    const A: Role = Role::Annotator;
    const R: Role = Role::Reviewer;
    const L: Role = Role::Lead;

    /// The expected table, written out independently of `rule`: `from → to` and the least role.
    /// Every pair not listed must be refused for every role.
    const LEGAL: &[(ReviewState, ReviewState, Role)] = &[
        (Proposed, Accepted, A),
        (Proposed, Corrected, A),
        (Proposed, Rejected, A),
        (Accepted, Proposed, A),
        (Accepted, Corrected, A),
        (Accepted, Rejected, A),
        (Accepted, Approved, R),
        (Accepted, Returned, R),
        (Corrected, Proposed, A),
        (Corrected, Rejected, A),
        (Corrected, Approved, R),
        (Corrected, Returned, R),
        (Rejected, Proposed, A),
        (Rejected, Accepted, A),
        (Rejected, Corrected, A),
        (Submitted, Approved, R),
        (Submitted, Returned, R),
        (Approved, Returned, R),
        (Approved, Accepted, R),
        (Approved, Corrected, R),
        (Approved, Submitted, R),
        (Returned, Submitted, A),
        (Returned, Accepted, A),
        (Returned, Corrected, A),
        (Returned, Rejected, A),
        (Returned, Approved, R),
    ];

    #[test]
    fn every_pair_and_role_matches_the_table() {
        let mut checked = 0;
        for from in ReviewState::ALL {
            for to in ReviewState::ALL {
                let legal = LEGAL.iter().find(|(f, t, _)| *f == from && *t == to);
                for role in [A, R, L] {
                    let got = check_transition(from, to, role);
                    match legal {
                        Some((_, _, min)) if role >= *min => {
                            assert!(
                                got.is_ok(),
                                "{from:?} -> {to:?} as {role:?} should be allowed: {got:?}"
                            );
                        }
                        Some(_) => {
                            let err = got.expect_err("a lower role must be refused");
                            assert!(
                                matches!(err, Refusal::RoleForbidden { .. }),
                                "{from:?} -> {to:?} as {role:?}: {err}"
                            );
                            let msg = err.to_string();
                            assert!(
                                msg.contains(role.as_str()) && msg.contains("reviewer or lead"),
                                "{msg}"
                            );
                        }
                        None => {
                            let err = got.expect_err("an illegal transition must be refused");
                            assert!(
                                matches!(err, Refusal::IllegalTransition { .. }),
                                "{from:?} -> {to:?} as {role:?}: {err}"
                            );
                            let msg = err.to_string();
                            assert!(
                                msg.contains(from.as_str()) && msg.contains(to.as_str()),
                                "{msg}"
                            );
                        }
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 7 * 7 * 3);
        assert_eq!(transition_table().len(), LEGAL.len());
    }

    /// The rule sync applies to signed revisions (by the state they leave a box in) is the
    /// transition table's: every legal way into approved or returned needs exactly the role a
    /// signed decision needs, and no other transition needs more than an annotator.
    #[test]
    fn signed_decisions_follow_the_transition_table() {
        for rule in transition_table() {
            let decision = decision_of(rule.to, false);
            for role in [A, R, L] {
                assert_eq!(
                    check_signed_decision(rule.to, false, role).is_ok(),
                    decision.is_none() || role >= rule.min_role,
                    "{rule:?} as {role:?}"
                );
            }
            if decision.is_none() && rule.from != Approved {
                assert_eq!(rule.min_role, A, "{rule:?}");
            }
        }
        assert!(check_signed_decision(Submitted, true, A).is_err());
        assert!(check_signed_decision(Submitted, true, R).is_ok());
        assert_eq!(
            check_signed_decision(Approved, false, A)
                .expect_err("refused")
                .to_string(),
            "approving a box needs a reviewer or lead"
        );
    }

    #[test]
    fn annotators_cannot_approve_or_return() {
        for from in [Accepted, Corrected, Submitted, Returned] {
            assert!(check_transition(from, Approved, A).is_err());
            assert!(check_transition(from, Approved, R).is_ok());
            assert!(check_transition(from, Approved, L).is_ok());
        }
        let msg = check_transition(Submitted, Approved, A)
            .expect_err("refused")
            .to_string();
        assert_eq!(
            msg,
            "an annotator cannot move a box from submitted to approved: only a reviewer or lead can"
        );
        assert_eq!(
            allowed_targets(Proposed, A),
            vec![Accepted, Corrected, Rejected]
        );
        assert_eq!(allowed_targets(Approved, A), Vec::<ReviewState>::new());
        assert_eq!(
            allowed_targets(Approved, L),
            vec![Accepted, Corrected, Submitted, Returned]
        );
    }

    fn value(state: ReviewState, source: Source) -> AnnotationValue {
        AnnotationValue {
            image: Uuid::nil(),
            class: Uuid::nil(),
            bbox: crate::model::BBox::new(1.0, 2.0, 3.0, 4.0),
            source,
            state,
            flags: crate::model::BoxFlags::default(),
            deleted: false,
            attributes: Default::default(),
        }
    }

    #[test]
    fn edits_check_creation_states_and_approved_boxes() {
        let model = Source::Model {
            run: Uuid::nil(),
            score: 0.9,
        };
        assert!(check_edit(None, &value(Submitted, Source::Human), None, A).is_ok());
        assert!(check_edit(None, &value(Proposed, model.clone()), None, A).is_ok());
        assert_eq!(
            check_edit(None, &value(Proposed, Source::Human), None, L),
            Err(Refusal::ProposalWithoutRun)
        );
        assert_eq!(
            check_edit(None, &value(Approved, Source::Human), None, A),
            Err(Refusal::CreateApproved { role: A })
        );
        assert!(check_edit(None, &value(Approved, Source::Human), None, R).is_ok());
        assert!(check_edit(None, &value(Accepted, model.clone()), None, L).is_err());
        let approved = value(Approved, Source::Human);
        let mut moved = approved.clone();
        moved.bbox.x += 5.0;
        assert!(check_edit(Some(&approved), &moved, None, A).is_err());
        assert!(check_edit(Some(&approved), &moved, None, R).is_ok());
        let deleted = AnnotationValue {
            deleted: true,
            ..approved.clone()
        };
        let msg = check_edit(Some(&approved), &deleted, None, A)
            .expect_err("refused")
            .to_string();
        assert!(msg.contains("delete"), "{msg}");
        // Geometry edits without a state change are fine below approved.
        let sub = value(Submitted, Source::Human);
        let mut sub2 = sub.clone();
        sub2.bbox.w = 10.0;
        assert!(check_edit(Some(&sub), &sub2, None, A).is_ok());
        assert!(
            check_edit(
                Some(&value(Proposed, model.clone())),
                &value(Approved, model),
                None,
                L
            )
            .is_err()
        );
        // Returning needs a reason that is more than blanks.
        let returned = value(Returned, Source::Human);
        assert_eq!(
            check_edit(Some(&sub), &returned, Some("  "), R),
            Err(Refusal::ReasonRequired)
        );
        assert!(check_edit(Some(&sub), &returned, Some("too loose"), R).is_ok());
    }

    #[test]
    fn editing_picks_the_next_state() {
        let model = Source::Model {
            run: Uuid::nil(),
            score: 0.9,
        };
        assert_eq!(state_after_edit(&value(Proposed, model.clone())), Corrected);
        assert_eq!(state_after_edit(&value(Returned, model)), Corrected);
        assert_eq!(state_after_edit(&value(Returned, Source::Human)), Submitted);
        assert_eq!(
            state_after_edit(&value(Submitted, Source::Human)),
            Submitted
        );
        assert_eq!(state_after_edit(&value(Approved, Source::Human)), Approved);
    }

    #[test]
    fn a_model_worker_only_creates_proposals() {
        let model = Source::Model {
            run: Uuid::nil(),
            score: 0.9,
        };
        let m = Role::Model;
        assert!(check_edit(None, &value(Proposed, model.clone()), None, m).is_ok());
        for (before, after) in [
            (None, value(Submitted, Source::Human)),
            (None, value(Approved, Source::Human)),
            (None, value(Proposed, Source::Human)),
            (
                Some(value(Proposed, model.clone())),
                value(Accepted, model.clone()),
            ),
            (Some(value(Proposed, model.clone())), {
                let mut v = value(Proposed, model.clone());
                v.deleted = true;
                v
            }),
        ] {
            let err = check_edit(before.as_ref(), &after, None, m).expect_err("refused");
            assert!(
                matches!(err, Refusal::ModelOnlyProposes { .. }),
                "{before:?} -> {after:?}: {err}"
            );
        }
        assert!(check_model_revision(true, Proposed, true, false, false).is_ok());
        assert!(check_model_revision(true, Proposed, true, false, true).is_err());
        assert!(check_model_revision(false, Proposed, true, false, false).is_err());
        assert!(check_model_revision(true, Submitted, false, false, false).is_err());
        assert!(check_model_revision(true, Proposed, false, false, false).is_err());
        // Decisions are refused as for anyone below a reviewer.
        assert!(check_signed_decision(Approved, false, m).is_err());
    }
}
