//! Per-box review states: which changes are legal, for which role, and applying them.
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

use std::collections::HashMap;

use serde::Serialize;
use uuid::Uuid;

use super::error::role_phrase;
use super::{Result, ReviewError};
use crate::model::{Annotation, AnnotationValue, ReviewState, Role, Source};
use crate::store::{Edit, Project, StoreError};

use ReviewState::{Accepted, Approved, Corrected, Proposed, Rejected, Returned, Submitted};

/// One legal change of state and the least role that may make it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TransitionRule {
    pub from: ReviewState,
    pub to: ReviewState,
    pub min_role: Role,
}

/// The rule for `from → to`: the least role that may make it, or why nobody may.
fn rule(from: ReviewState, to: ReviewState) -> std::result::Result<Role, &'static str> {
    const A: Role = Role::Annotator;
    const R: Role = Role::Reviewer;
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

/// True when `role` has at least the rights of `needed` (annotator < reviewer < lead).
fn at_least(role: Role, needed: Role) -> bool {
    role >= needed
}

fn needs_text(role: Role) -> &'static str {
    match role {
        Role::Annotator => "annotator, reviewer or lead",
        Role::Reviewer => "reviewer or lead",
        Role::Lead => "lead",
    }
}

/// Checks that a person with `role` may move a box from `from` to `to`.
///
/// Refuses a change to the same state, a change no role may make ([`ReviewError::IllegalTransition`])
/// and a change reserved for a higher role ([`ReviewError::RoleForbidden`]).
pub fn check_transition(from: ReviewState, to: ReviewState, role: Role) -> Result<()> {
    match rule(from, to) {
        Err(why) => Err(ReviewError::IllegalTransition { from, to, why }),
        Ok(needed) if at_least(role, needed) => Ok(()),
        Ok(needed) => Err(ReviewError::RoleForbidden {
            from,
            to,
            role,
            needs: needs_text(needed),
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
/// (`None` for a new box), `after` the value the edit writes.
///
/// - a new box starts as `submitted`, as `proposed` (model boxes only) or as `approved`
///   (reviewers and leads only);
/// - a change of state follows [`check_transition`];
/// - an annotator cannot change or delete an approved box in place.
pub fn check_edit(
    before: Option<&AnnotationValue>,
    after: &AnnotationValue,
    role: Role,
) -> Result<()> {
    let Some(before) = before else {
        return match after.state {
            Submitted => Ok(()),
            Proposed if matches!(after.source, Source::Model { .. }) => Ok(()),
            Proposed => Err(ReviewError::EditRefused(
                "a proposal must come from a model run; a box drawn by a person starts as submitted".into(),
            )),
            Approved if at_least(role, Role::Reviewer) => Ok(()),
            Approved => Err(ReviewError::EditRefused(format!(
                "{} cannot create an approved box: draw it as submitted for review",
                role_phrase(role)
            ))),
            s => Err(ReviewError::EditRefused(format!(
                "a new box starts as submitted, proposed (model boxes) or approved, not {}",
                s.as_str()
            ))),
        };
    };
    if before.state != after.state {
        return check_transition(before.state, after.state, role);
    }
    if before.state == Approved && !at_least(role, Role::Reviewer) && before != after {
        return Err(ReviewError::EditRefused(format!(
            "the box is approved ground truth: {} cannot {} it; a reviewer or lead can return it first",
            role_phrase(role),
            if after.deleted { "delete" } else { "change" }
        )));
    }
    Ok(())
}

/// Checks a list of edits as `Project::apply` would make them, for the current user.
///
/// This is the hook `Project::apply` calls before writing; edits of the same box later in the
/// list see the values written earlier in it. Unknown boxes are left for `apply` to report.
pub fn check_edits(project: &Project, edits: &[Edit]) -> Result<()> {
    let role = project.current_user()?.role;
    let mut pending: HashMap<Uuid, AnnotationValue> = HashMap::new();
    for edit in edits {
        let id = edit.id();
        let before = match pending.get(&id) {
            Some(v) => Some(v.clone()),
            None => match project.annotation(id) {
                Ok(a) => Some(a.value),
                Err(StoreError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            },
        };
        let after = match edit {
            Edit::Create { value, .. } => {
                check_edit(None, value, role).map_err(|e| e.on_box(id))?;
                value.clone()
            }
            Edit::Update { value, note, .. } => {
                let Some(before) = before else { continue };
                check_edit(Some(&before), value, role).map_err(|e| e.on_box(id))?;
                let reason = note.as_deref().map(str::trim).unwrap_or_default();
                if value.state == Returned && before.state != Returned && reason.is_empty() {
                    return Err(ReviewError::ReasonRequired(id));
                }
                value.clone()
            }
            Edit::Delete { .. } => {
                let Some(before) = before else { continue };
                let after = AnnotationValue {
                    deleted: true,
                    ..before.clone()
                };
                check_edit(Some(&before), &after, role).map_err(|e| e.on_box(id))?;
                after
            }
        };
        pending.insert(id, after);
    }
    Ok(())
}

/// Moves one box to `to` as the current user, after checking the transition and the role.
/// Returning a box needs a `reason`, which is stored as the revision's note.
pub fn set_state(
    project: &mut Project,
    id: Uuid,
    to: ReviewState,
    reason: Option<&str>,
) -> Result<Annotation> {
    let mut out = set_states(project, &[id], to, reason)?;
    out.pop().ok_or_else(|| ReviewError::NotFound {
        what: "annotation",
        key: id.to_string(),
    })
}

/// Moves several boxes to `to` in one transaction: all of them or none (e.g. "accept every
/// proposal on this image"). Each is checked as in [`set_state`].
pub fn set_states(
    project: &mut Project,
    ids: &[Uuid],
    to: ReviewState,
    reason: Option<&str>,
) -> Result<Vec<Annotation>> {
    let role = project.current_user()?.role;
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    let mut edits = Vec::with_capacity(ids.len());
    for &id in ids {
        let current = project.annotation(id)?;
        if current.value.deleted {
            return Err(ReviewError::Refused(format!(
                "box {id} was deleted; restore it before reviewing it"
            )));
        }
        check_transition(current.value.state, to, role).map_err(|e| e.on_box(id))?;
        if to == Returned && reason.is_none() {
            return Err(ReviewError::ReasonRequired(id));
        }
        edits.push(Edit::Update {
            id,
            value: AnnotationValue {
                state: to,
                ..current.value
            },
            note: reason.map(str::to_owned),
        });
    }
    Ok(project.apply(&edits)?)
}

#[cfg(test)]
mod tests {
    use super::*;

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
                                matches!(err, ReviewError::RoleForbidden { .. }),
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
                                matches!(err, ReviewError::IllegalTransition { .. }),
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
        assert!(check_edit(None, &value(Submitted, Source::Human), A).is_ok());
        assert!(check_edit(None, &value(Proposed, model.clone()), A).is_ok());
        assert!(check_edit(None, &value(Proposed, Source::Human), L).is_err());
        assert!(check_edit(None, &value(Approved, Source::Human), A).is_err());
        assert!(check_edit(None, &value(Approved, Source::Human), R).is_ok());
        assert!(check_edit(None, &value(Accepted, model.clone()), L).is_err());
        let approved = value(Approved, Source::Human);
        let mut moved = approved.clone();
        moved.bbox.x += 5.0;
        assert!(check_edit(Some(&approved), &moved, A).is_err());
        assert!(check_edit(Some(&approved), &moved, R).is_ok());
        let deleted = AnnotationValue {
            deleted: true,
            ..approved.clone()
        };
        let msg = check_edit(Some(&approved), &deleted, A)
            .expect_err("refused")
            .to_string();
        assert!(msg.contains("delete"), "{msg}");
        // Geometry edits without a state change are fine below approved.
        let sub = value(Submitted, Source::Human);
        let mut sub2 = sub.clone();
        sub2.bbox.w = 10.0;
        assert!(check_edit(Some(&sub), &sub2, A).is_ok());
        assert!(
            check_edit(
                Some(&value(Proposed, model.clone())),
                &value(Approved, model),
                L
            )
            .is_err()
        );
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
}
