//! One-key fixes for label issues: what each reason suggests doing to the labels, and the change
//! of one box that does it, with the reason to store beside its revision.
//!
//! | issue | fix |
//! |---|---|
//! | `overlooked` | add the predicted box as a label (the proposal itself is accepted when it is still there, else a new box takes its class and box) |
//! | `badly_located` | move the label's box to the prediction's box |
//! | `swapped_class` | give the label the predicted class |
//! | `spurious` | delete the label |
//!
//! A fix is planned on the boxes as the caller holds them (the app's memory, which may be ahead
//! of the store), checked against the review policy for the person's role, and returned as a
//! before/after pair: the app turns it into an undoable change, other callers into one
//! [`Edit`] ([`Fix::edit`]). Every fix carries a note starting `triage <issue>:` that the store
//! keeps with the revision (and sync packs carry), so the revision log says why a box changed.

use uuid::Uuid;

use super::issues::{IssueKind, LabelIssue};
use crate::model::{Annotation, AnnotationValue, Attributes, BoxFlags, ReviewState, Role, Source};
use crate::policy::{self, Refusal};
use crate::store::Edit;

/// How every fix's note starts, followed by the issue kind (`triage swapped_class: …`).
pub const NOTE_PREFIX: &str = "triage ";

/// What a fix does to the labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FixKind {
    /// Add the box the model sees and no label covers.
    AddBox,
    /// Move a badly placed label to the prediction's box.
    SnapBox,
    /// Give a label the class the model sees.
    TakeClass,
    /// Delete a label no prediction supports.
    DeleteLabel,
}

impl FixKind {
    /// The fix an issue suggests.
    pub fn for_issue(kind: IssueKind) -> FixKind {
        match kind {
            IssueKind::Overlooked => FixKind::AddBox,
            IssueKind::BadlyLocated => FixKind::SnapBox,
            IssueKind::SwappedClass => FixKind::TakeClass,
            IssueKind::Spurious => FixKind::DeleteLabel,
        }
    }

    /// What the fix does, for people ("take the predicted class").
    pub fn label(self) -> &'static str {
        match self {
            FixKind::AddBox => "add the predicted box",
            FixKind::SnapBox => "snap to the predicted box",
            FixKind::TakeClass => "take the predicted class",
            FixKind::DeleteLabel => "delete the label",
        }
    }

    /// The fix as an undo step names it.
    pub fn what(self) -> &'static str {
        match self {
            FixKind::AddBox => "triage fix: add the predicted box",
            FixKind::SnapBox => "triage fix: snap the box",
            FixKind::TakeClass => "triage fix: take the predicted class",
            FixKind::DeleteLabel => "triage fix: delete the label",
        }
    }
}

/// A planned fix: one box before and after, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Fix {
    pub kind: FixKind,
    /// The issue it fixes.
    pub issue: IssueKind,
    /// The box it changes (a fresh UUIDv7 when it adds one).
    pub id: Uuid,
    /// The box's value now; `None` when the fix adds a box.
    pub before: Option<AnnotationValue>,
    /// The box's value after the fix (`deleted` set when it deletes the label).
    pub after: AnnotationValue,
    /// The reason stored with the revision, starting with [`NOTE_PREFIX`] and the issue kind.
    pub note: String,
}

impl Fix {
    /// The fix as one store edit, carrying its note (for callers without an undo history).
    pub fn edit(&self) -> Edit {
        match self.before {
            None => Edit::CreateBecause {
                id: self.id,
                value: self.after.clone(),
                note: self.note.clone(),
            },
            Some(_) => Edit::Update {
                id: self.id,
                value: self.after.clone(),
                note: Some(self.note.clone()),
            },
        }
    }
}

/// Why an issue cannot be fixed as it stands.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FixError {
    /// The label was deleted (or changed image) since the ranking was read.
    #[error("the {class} label this issue is about is no longer on the image")]
    LabelGone { class: String },
    /// The issue carries no prediction to take a box or class from.
    #[error("this {} issue names no prediction to take from", .0.as_str())]
    NoPrediction(IssueKind),
    /// The predicted class is not a class of the project.
    #[error("the class {0} is not in the project")]
    UnknownClass(String),
    /// The label already has what the prediction says.
    #[error("the {class} label already has the predicted {what}")]
    NothingToDo { class: String, what: &'static str },
    /// The review policy refuses the change for this role.
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// The reason a fix stores with its revision.
fn note(issue: &LabelIssue, run: &str) -> String {
    let kind = issue.kind.as_str();
    let class = &issue.class;
    let other = issue.predicted_class.as_deref().unwrap_or(class);
    let score = issue
        .prediction_score
        .map_or_else(String::new, |s| format!("score {s:.2}"));
    let iou = issue
        .iou
        .map_or_else(String::new, |iou| format!(", IoU {iou:.2}"));
    let why = match issue.kind {
        IssueKind::Overlooked => {
            format!("added the {other} box {run} predicts where no label was ({score})")
        }
        IssueKind::BadlyLocated => {
            format!("moved the {class} box to where {run} predicts it ({score}{iou})")
        }
        IssueKind::SwappedClass => {
            format!("{class} changed to {other}, as {run} predicts ({score}{iou})")
        }
        IssueKind::Spurious => format!("deleted the {class} label no prediction of {run} supports"),
    };
    format!(
        "{NOTE_PREFIX}{kind}: {why} (label-error score {:.2})",
        issue.score
    )
}

/// The issue a revision's note says it fixed, if it is a triage fix's note.
pub fn fixed_issue(note: &str) -> Option<IssueKind> {
    let rest = note.strip_prefix(NOTE_PREFIX)?;
    let (kind, _) = rest.split_once(':')?;
    IssueKind::ALL.into_iter().find(|k| k.as_str() == kind)
}

/// Plans the fix of `issue` on `image`, whose live boxes are `boxes`, for someone with `role`.
///
/// `class_id` finds a class by name (the issue names classes as the ranking read them); `run` is
/// the model run's name, for the note. The fix is checked against the review policy: a label
/// the role may not change (approved ground truth, for an annotator) is refused here, before
/// anything is stored.
pub fn plan_fix(
    issue: &LabelIssue,
    image: Uuid,
    boxes: &[Annotation],
    class_id: impl Fn(&str) -> Option<Uuid>,
    role: Role,
    run: &str,
) -> Result<Fix, FixError> {
    let kind = FixKind::for_issue(issue.kind);
    let note = note(issue, run);
    let live = |id: Option<Uuid>| {
        id.and_then(|id| boxes.iter().find(|a| a.id == id && !a.value.deleted))
            .filter(|a| a.value.image == image)
    };
    let (id, before, after) = if issue.kind == IssueKind::Overlooked {
        let predicted_bbox = issue
            .predicted_bbox
            .ok_or(FixError::NoPrediction(issue.kind))?;
        let name = issue.predicted_class.as_deref().unwrap_or(&issue.class);
        let class = class_id(name).ok_or_else(|| FixError::UnknownClass(name.to_owned()))?;
        match live(issue.prediction)
            .filter(|p| matches!(p.value.state, ReviewState::Proposed | ReviewState::Rejected))
        {
            // The proposal is still there, undecided or rejected: accepting it makes it the
            // label, keeping where it came from (the model's run and score).
            Some(p) => {
                let mut after = p.value.clone();
                let unchanged = after.bbox == predicted_bbox && after.class == class;
                after.bbox = predicted_bbox;
                after.class = class;
                after.state = if unchanged {
                    ReviewState::Accepted
                } else {
                    ReviewState::Corrected
                };
                (p.id, Some(p.value.clone()), after)
            }
            // The proposal is gone (deleted, or edited into a label elsewhere): a new box, drawn
            // as a person would draw it, so it is submitted for review.
            None => (
                Uuid::now_v7(),
                None,
                AnnotationValue {
                    image,
                    class,
                    bbox: predicted_bbox,
                    source: Source::Human,
                    state: ReviewState::Submitted,
                    flags: BoxFlags::default(),
                    deleted: false,
                    attributes: Attributes::new(),
                },
            ),
        }
    } else {
        let label = live(issue.label).ok_or_else(|| FixError::LabelGone {
            class: issue.class.clone(),
        })?;
        let before = label.value.clone();
        let mut after = before.clone();
        match issue.kind {
            IssueKind::Spurious => after.deleted = true,
            IssueKind::BadlyLocated => {
                after.bbox = issue
                    .predicted_bbox
                    .ok_or(FixError::NoPrediction(issue.kind))?;
                if after.bbox == before.bbox {
                    return Err(FixError::NothingToDo {
                        class: issue.class.clone(),
                        what: "box",
                    });
                }
                after.state = policy::state_after_edit(&before);
            }
            IssueKind::SwappedClass => {
                let name = issue
                    .predicted_class
                    .as_deref()
                    .ok_or(FixError::NoPrediction(issue.kind))?;
                after.class =
                    class_id(name).ok_or_else(|| FixError::UnknownClass(name.to_owned()))?;
                if after.class == before.class {
                    return Err(FixError::NothingToDo {
                        class: issue.class.clone(),
                        what: "class",
                    });
                }
                after.state = policy::state_after_edit(&before);
            }
            IssueKind::Overlooked => unreachable!("handled above"),
        }
        (label.id, Some(before), after)
    };
    policy::check_edit(before.as_ref(), &after, Some(&note), role)?;
    Ok(Fix {
        kind,
        issue: issue.kind,
        id,
        before,
        after,
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BBox;

    const CAT: Uuid = Uuid::from_u128(1);
    const DOG: Uuid = Uuid::from_u128(2);
    const IMAGE: Uuid = Uuid::from_u128(10);
    const RUN: Uuid = Uuid::from_u128(20);

    fn class_id(name: &str) -> Option<Uuid> {
        match name {
            "cat" => Some(CAT),
            "dog" => Some(DOG),
            _ => None,
        }
    }

    fn human(id: u128, class: Uuid, b: BBox, state: ReviewState) -> Annotation {
        Annotation {
            id: Uuid::from_u128(id),
            value: AnnotationValue {
                image: IMAGE,
                class,
                bbox: b,
                source: Source::Human,
                state,
                flags: BoxFlags::default(),
                deleted: false,
                attributes: Attributes::new(),
            },
        }
    }

    fn proposal(id: u128, class: Uuid, b: BBox, state: ReviewState) -> Annotation {
        let mut a = human(id, class, b, state);
        a.value.source = Source::Model {
            run: RUN,
            score: 0.9,
        };
        a
    }

    fn issue(kind: IssueKind, label: Option<u128>, prediction: Option<u128>) -> LabelIssue {
        LabelIssue {
            kind,
            score: 0.8,
            flagged: true,
            label: label.map(Uuid::from_u128),
            prediction: prediction.map(Uuid::from_u128),
            class: "cat".into(),
            bbox: BBox::new(0.0, 0.0, 10.0, 10.0),
            predicted_class: prediction.map(|_| {
                if kind == IssueKind::SwappedClass {
                    "dog".into()
                } else {
                    "cat".into()
                }
            }),
            predicted_bbox: prediction.map(|_| BBox::new(40.0, 40.0, 10.0, 10.0)),
            prediction_score: prediction.map(|_| 0.9),
            iou: prediction.map(|_| 0.2),
            scores: None,
            reason: String::new(),
        }
    }

    fn plan(issue: &LabelIssue, boxes: &[Annotation], role: Role) -> Result<Fix, FixError> {
        plan_fix(issue, IMAGE, boxes, class_id, role, "detector")
    }

    #[test]
    fn each_reason_implies_its_fix() {
        assert_eq!(
            IssueKind::ALL.map(FixKind::for_issue),
            [
                FixKind::AddBox,
                FixKind::DeleteLabel,
                FixKind::SnapBox,
                FixKind::TakeClass
            ]
        );
    }

    #[test]
    fn an_overlooked_object_accepts_its_proposal_or_adds_a_box() {
        let predicted = BBox::new(40.0, 40.0, 10.0, 10.0);
        let p = proposal(5, CAT, predicted, ReviewState::Proposed);
        let fix = plan(
            &issue(IssueKind::Overlooked, None, Some(5)),
            std::slice::from_ref(&p),
            Role::Annotator,
        )
        .expect("fix");
        assert_eq!((fix.kind, fix.id), (FixKind::AddBox, p.id));
        assert_eq!(fix.after.state, ReviewState::Accepted);
        assert_eq!(
            fix.after.source, p.value.source,
            "the model's box stays the model's"
        );
        assert!(matches!(fix.edit(), Edit::Update { note: Some(_), .. }));
        // A rejected proposal is taken back too.
        let rejected = proposal(5, CAT, predicted, ReviewState::Rejected);
        let fix = plan(
            &issue(IssueKind::Overlooked, None, Some(5)),
            &[rejected],
            Role::Annotator,
        )
        .expect("fix");
        assert_eq!(fix.after.state, ReviewState::Accepted);
        // Gone: a new box of the predicted class and place, submitted like a drawn box.
        let fix = plan(
            &issue(IssueKind::Overlooked, None, Some(5)),
            &[],
            Role::Annotator,
        )
        .expect("fix");
        assert!(fix.before.is_none());
        assert_ne!(fix.id, p.id);
        assert_eq!(
            (
                fix.after.class,
                fix.after.bbox,
                fix.after.state,
                fix.after.source.clone()
            ),
            (CAT, predicted, ReviewState::Submitted, Source::Human)
        );
        assert!(matches!(fix.edit(), Edit::CreateBecause { .. }));
        assert_eq!(fixed_issue(&fix.note), Some(IssueKind::Overlooked));
    }

    #[test]
    fn labels_are_snapped_reclassed_or_deleted() {
        let label = human(
            3,
            CAT,
            BBox::new(0.0, 0.0, 10.0, 10.0),
            ReviewState::Submitted,
        );
        let boxes = std::slice::from_ref(&label);
        let snap = plan(
            &issue(IssueKind::BadlyLocated, Some(3), Some(5)),
            boxes,
            Role::Annotator,
        )
        .expect("snap");
        assert_eq!(snap.after.bbox, BBox::new(40.0, 40.0, 10.0, 10.0));
        assert_eq!((snap.after.class, snap.id), (CAT, label.id));
        let take = plan(
            &issue(IssueKind::SwappedClass, Some(3), Some(5)),
            boxes,
            Role::Annotator,
        )
        .expect("take class");
        assert_eq!((take.after.class, take.after.bbox), (DOG, label.value.bbox));
        assert!(
            take.note
                .starts_with("triage swapped_class: cat changed to dog")
        );
        let delete = plan(
            &issue(IssueKind::Spurious, Some(3), None),
            boxes,
            Role::Annotator,
        )
        .expect("delete");
        assert!(delete.after.deleted);
        assert!(
            matches!(delete.edit(), Edit::Update { value, note: Some(n), .. } if value.deleted && n.starts_with("triage spurious:"))
        );
        for f in [&snap, &take, &delete] {
            assert_eq!(fixed_issue(&f.note), Some(f.issue));
        }
        // An accepted model box that is moved becomes corrected, as any edit of it would.
        let accepted = proposal(
            3,
            CAT,
            BBox::new(0.0, 0.0, 10.0, 10.0),
            ReviewState::Accepted,
        );
        let snap = plan(
            &issue(IssueKind::BadlyLocated, Some(3), Some(5)),
            &[accepted],
            Role::Annotator,
        )
        .expect("snap");
        assert_eq!(snap.after.state, ReviewState::Corrected);
    }

    #[test]
    fn fixes_that_cannot_be_made_say_why() {
        let approved = human(
            3,
            CAT,
            BBox::new(0.0, 0.0, 10.0, 10.0),
            ReviewState::Approved,
        );
        let boxes = std::slice::from_ref(&approved);
        // Approved labels are ground truth: an annotator may not delete one, a lead may.
        assert!(matches!(
            plan(
                &issue(IssueKind::Spurious, Some(3), None),
                boxes,
                Role::Annotator
            ),
            Err(FixError::Refused(Refusal::ApprovedIsGroundTruth { .. }))
        ));
        let fix = plan(
            &issue(IssueKind::Spurious, Some(3), None),
            boxes,
            Role::Lead,
        )
        .expect("a lead may");
        assert_eq!(fix.after.state, ReviewState::Approved);
        assert!(matches!(
            plan(
                &issue(IssueKind::Spurious, Some(4), None),
                boxes,
                Role::Lead
            ),
            Err(FixError::LabelGone { .. })
        ));
        let mut unknown = issue(IssueKind::SwappedClass, Some(3), Some(5));
        unknown.predicted_class = Some("bird".into());
        assert_eq!(
            plan(&unknown, boxes, Role::Lead),
            Err(FixError::UnknownClass("bird".into()))
        );
        let mut same = issue(IssueKind::BadlyLocated, Some(3), Some(5));
        same.predicted_bbox = Some(approved.value.bbox);
        assert!(matches!(
            plan(&same, boxes, Role::Lead),
            Err(FixError::NothingToDo { .. })
        ));
        assert_eq!(fixed_issue("returned: wrong class"), None);
    }
}
