//! Per-annotator figures for a dashboard, computed from the revision log: throughput (images per
//! active hour), how much each person drew, accepted, corrected and rejected, how their boxes
//! fared in review (approval rate) and in audits (failures).
//!
//! Definitions:
//! - *work* is a revision that records an annotator decision (a box submitted, accepted,
//!   corrected or rejected); its time is the revision's hybrid logical clock (`hlc >> 16` is Unix
//!   milliseconds);
//! - *active time* adds the gaps between a person's consecutive work revisions, each gap capped
//!   at five minutes, so breaks do not count; *images per hour* is the number of distinct images
//!   worked on divided by the active hours (none under one active minute);
//! - counts are *net*: a decision that was undone (the box back to proposed, or a drawn box
//!   deleted again by the person who drew it) is not counted, and a person who changes their
//!   mind on a box (accepts, then rejects) is counted for their last decision only;
//! - a review (a change to approved or returned) is credited to the person who made the box's
//!   latest annotator decision before it;
//! - audit failures are audited images of which the person was the annotator (the stratum);
//! - *measured* figures are what the app timed (`store::time`): active seconds focused on an
//!   image (idle gaps over a minute left out), the edits and key presses made there, and the
//!   labels the images had when the person left them, by origin (a model's box accepted or
//!   corrected, or drawn by a person). They exist only for people who worked in the app.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::Result;
use super::batches::audit_counts;
use crate::model::{ReviewState, Role};
use crate::store::LogRevision;
use crate::store::Project;

/// Longest gap between two work revisions that still counts as working.
pub const IDLE_CAP_MS: i64 = 5 * 60 * 1000;

/// One person's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AnnotatorStats {
    pub user: String,
    pub role: Option<Role>,
    /// Distinct images with work by this person.
    pub images: usize,
    pub active_hours: f64,
    /// `None` with less than a minute of activity.
    pub images_per_hour: Option<f64>,
    /// Boxes this person drew (created as submitted).
    pub boxes_drawn: usize,
    pub proposals_accepted: usize,
    /// Distinct boxes this person moved to corrected.
    pub boxes_corrected: usize,
    pub proposals_rejected: usize,
    /// Review decisions on this person's boxes.
    pub approved: usize,
    pub returned: usize,
    /// `approved / (approved + returned)`; `None` before any review.
    pub approval_rate: Option<f64>,
    /// Approvals and returns this person made as a reviewer.
    pub reviews_done: usize,
    pub audited_images: usize,
    pub audit_failures: usize,
    /// What the app measured of this person's work; `None` when it measured nothing.
    pub measured: Option<MeasuredTime>,
}

/// What the app measured of one person's work (see the module's definitions).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MeasuredTime {
    /// Images the person spent time on in the app.
    pub images: u64,
    pub active_seconds: f64,
    pub seconds_per_image: Option<f64>,
    /// Active seconds per label on those images; `None` without labels.
    pub seconds_per_box: Option<f64>,
    /// Labels on those images as the person left them.
    pub boxes: u64,
    /// Of which a model's boxes (accepted or corrected proposals).
    pub model_boxes: u64,
    /// `model_boxes / boxes`; `None` without labels.
    pub model_assisted_share: Option<f64>,
    /// Edits made (undo and redo included).
    pub actions: u64,
    pub key_presses: u64,
}

impl MeasuredTime {
    /// The figures of a person's measured totals.
    pub fn from_totals(t: &crate::store::UserTime) -> Self {
        let seconds = t.active_ms as f64 / 1000.0;
        let boxes = t.boxes_human + t.boxes_model;
        MeasuredTime {
            images: t.images,
            active_seconds: seconds,
            seconds_per_image: (t.images > 0).then(|| seconds / t.images as f64),
            seconds_per_box: (boxes > 0).then(|| seconds / boxes as f64),
            boxes,
            model_boxes: t.boxes_model,
            model_assisted_share: (boxes > 0).then(|| t.boxes_model as f64 / boxes as f64),
            actions: t.actions,
            key_presses: t.key_presses,
        }
    }
}

fn is_work(state: ReviewState) -> bool {
    matches!(
        state,
        ReviewState::Submitted
            | ReviewState::Accepted
            | ReviewState::Corrected
            | ReviewState::Rejected
    )
}

#[derive(Default)]
struct Acc {
    times: Vec<i64>,
    images: HashSet<i64>,
    drawn: usize,
    accepted: usize,
    corrected: HashSet<i64>,
    rejected: usize,
    approved: usize,
    returned: usize,
    reviews_done: usize,
}

/// An annotator's decision on one box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Drawn,
    Accepted,
    Corrected,
    Rejected,
}

/// Counts the decisions that still stand on one box.
fn credit(acc: &mut HashMap<i64, Acc>, ann: Option<i64>, standing: Vec<(i64, Decision)>) {
    let Some(ann) = ann else {
        return;
    };
    for (author, decision) in standing {
        let a = acc.entry(author).or_default();
        match decision {
            Decision::Drawn => a.drawn += 1,
            Decision::Accepted => a.accepted += 1,
            Decision::Corrected => {
                a.corrected.insert(ann);
            }
            Decision::Rejected => a.rejected += 1,
        }
    }
}

/// Unix milliseconds of a revision's hybrid logical clock (its top 48 bits).
fn hlc_ms(hlc: i64) -> i64 {
    hlc >> 16
}

/// Active milliseconds from sorted timestamps: gaps capped at [`IDLE_CAP_MS`].
pub fn active_ms(sorted_ms: &[i64]) -> i64 {
    sorted_ms
        .windows(2)
        .map(|w| (w[1] - w[0]).clamp(0, IDLE_CAP_MS))
        .sum()
}

/// Figures for every user of the project (most images first, then by name).
pub fn annotator_stats(p: &Project) -> Result<Vec<AnnotatorStats>> {
    let rows = p.revision_log()?;
    let mut acc: HashMap<i64, Acc> = HashMap::new();
    let mut current_ann = None;
    let mut prev_state: Option<ReviewState> = None;
    let mut decider: Option<i64> = None;
    // The decisions on the current box that still stand, oldest first: (author, decision).
    let mut standing: Vec<(i64, Decision)> = Vec::new();
    // Decisions before this index were reviewed: they stand whatever follows.
    let mut sealed = 0;
    for row in rows {
        let LogRevision {
            ann,
            author,
            hlc,
            state,
            image,
            op,
            run,
        } = row;
        if current_ann != Some(ann) {
            credit(&mut acc, current_ann, std::mem::take(&mut standing));
            sealed = 0;
            current_ann = Some(ann);
            prev_state = None;
            decider = None;
        }
        if op == "delete" {
            // A drawn box deleted again by the one who drew it: nothing was drawn.
            if let Some(&(who, Decision::Drawn)) = standing.last()
                && who == author
                && standing.len() > sealed
            {
                standing.pop();
            }
        }
        let Some(state) = ReviewState::parse(&state) else {
            continue;
        };
        let changed = prev_state != Some(state);
        let a = acc.entry(author).or_default();
        if state == ReviewState::Proposed
            && changed
            && prev_state.is_some()
            && standing.len() > sealed
        {
            // Back to proposed: the last decision was undone.
            standing.pop();
        }
        if is_work(state) {
            a.times.push(hlc_ms(hlc));
            a.images.insert(image);
            if changed {
                let decision = match state {
                    ReviewState::Submitted if op == "create" && run.is_none() => {
                        Some(Decision::Drawn)
                    }
                    ReviewState::Accepted => Some(Decision::Accepted),
                    ReviewState::Corrected => Some(Decision::Corrected),
                    ReviewState::Rejected => Some(Decision::Rejected),
                    _ => None,
                };
                if let Some(d) = decision {
                    // A person's later decision on the box replaces their earlier one.
                    if d != Decision::Drawn {
                        let mut index = 0;
                        standing.retain(|(who, old)| {
                            index += 1;
                            index <= sealed || *who != author || *old == Decision::Drawn
                        });
                    }
                    standing.push((author, d));
                }
            }
            decider = Some(author);
        } else if changed
            && prev_state.is_some()
            && matches!(state, ReviewState::Approved | ReviewState::Returned)
        {
            a.reviews_done += 1;
            sealed = standing.len();
            if let Some(d) = decider {
                let da = acc.entry(d).or_default();
                if state == ReviewState::Approved {
                    da.approved += 1;
                } else {
                    da.returned += 1;
                }
            }
        }
        prev_state = Some(state);
    }
    credit(&mut acc, current_ann, standing);
    let audits = audit_counts(p)?;
    let mut measured = p.user_times_by_row()?;
    let users = p.user_roles()?;
    let mut out: Vec<AnnotatorStats> = users
        .into_iter()
        .map(|(id, name, role)| {
            let mut a = acc.remove(&id).unwrap_or_default();
            a.times.sort_unstable();
            let active = active_ms(&a.times);
            let hours = active as f64 / 3_600_000.0;
            let (audited, failed) = audits.get(&id).copied().unwrap_or_default();
            let reviewed = a.approved + a.returned;
            AnnotatorStats {
                user: name,
                role,
                images: a.images.len(),
                active_hours: hours,
                images_per_hour: (active >= 60_000).then(|| a.images.len() as f64 / hours),
                boxes_drawn: a.drawn,
                proposals_accepted: a.accepted,
                boxes_corrected: a.corrected.len(),
                proposals_rejected: a.rejected,
                approved: a.approved,
                returned: a.returned,
                approval_rate: (reviewed > 0).then(|| a.approved as f64 / reviewed as f64),
                reviews_done: a.reviews_done,
                audited_images: audited,
                audit_failures: failed,
                measured: measured.remove(&id).map(|t| MeasuredTime::from_totals(&t)),
            }
        })
        .collect();
    out.sort_by(|x, y| y.images.cmp(&x.images).then_with(|| x.user.cmp(&y.user)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaks_do_not_count_as_work() {
        assert_eq!(active_ms(&[]), 0);
        assert_eq!(active_ms(&[5]), 0);
        assert_eq!(active_ms(&[0, 1000, 2000]), 2000);
        assert_eq!(active_ms(&[0, 1000, 3_600_000]), 1000 + IDLE_CAP_MS);
    }
}
