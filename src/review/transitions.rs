//! Applying review-state changes: [`set_state`] and [`set_states`] check each change against
//! the review policy ([`crate::policy`], which owns the rules and the table of legal
//! transitions) and apply it through the store, which checks it again in its transaction.

use uuid::Uuid;

use super::{Result, ReviewError};
use crate::model::{Annotation, AnnotationValue, ReviewState};
use crate::policy::{self, Refusal};
use crate::store::{Edit, Project};

pub use crate::policy::{
    TransitionRule, allowed_targets, check_transition, state_after_edit, transition_table,
};

/// Checks a list of edits as `Project::apply` would make them, for the current user, without
/// writing them (see [`Project::check_edits`]).
pub fn check_edits(project: &Project, edits: &[Edit]) -> Result<()> {
    Ok(project.check_edits(edits)?)
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
        policy::check_transition(current.value.state, to, role)
            .map_err(|e| ReviewError::from(e).on_box(id))?;
        if to == ReviewState::Returned && reason.is_none() {
            return Err(ReviewError::from(Refusal::ReasonRequired).on_box(id));
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
