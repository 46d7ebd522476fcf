//! The lead views' writes: batches, audits, tags, metadata and the user profile. They run on the
//! store writer thread (`writer::Request::Lead`), in order with the box edits, through the
//! core functions of `crate::review` (which check roles and rules), and come back as one
//! `LeadDone` each.

use uuid::Uuid;

use crate::model::{Role, User};
use crate::review::{self, AuditDecision, AuditOptions, NewBatch, Verdict};
use crate::store::Project;

/// A write asked by a lead view.
#[derive(Clone, Debug, PartialEq)]
pub enum LeadWrite {
    CreateBatch(NewBatch),
    AssignBatch {
        batch: String,
        user: String,
    },
    SubmitBatch(String),
    /// The order the batch's review queue follows.
    SetQueueOrder {
        batch: String,
        order: review::QueueOrder,
    },
    StartAudit {
        batch: String,
        opts: AuditOptions,
    },
    MarkAudit {
        batch: String,
        image: Uuid,
        verdict: Verdict,
        comment: Option<String>,
    },
    DecideAudit {
        batch: String,
        decision: AuditDecision,
    },
    SetTag {
        image: Uuid,
        tag: String,
        on: bool,
    },
    /// An empty value removes the key.
    SetMeta {
        image: Uuid,
        key: String,
        value: String,
    },
    ChooseProfile {
        name: String,
        role: Role,
    },
}

/// What a write did.
#[derive(Clone, Debug, PartialEq)]
pub enum LeadOutcome {
    /// A sentence for the status bar.
    Done(String),
    /// The profile is now this user (the UI's read connection follows it).
    Profile(User),
}

/// The reply to one `LeadWrite`: what happened, or why it was refused.
#[derive(Clone, Debug, PartialEq)]
pub struct LeadDone {
    pub result: Result<LeadOutcome, String>,
}

/// Performs one write on the writer's connection (as its current user).
pub fn perform(p: &mut Project, write: LeadWrite) -> LeadDone {
    LeadDone {
        result: perform_inner(p, write).map_err(|e| format!("{e:#}")),
    }
}

fn perform_inner(p: &mut Project, write: LeadWrite) -> review::Result<LeadOutcome> {
    let done = |s: String| Ok(LeadOutcome::Done(s));
    match write {
        LeadWrite::CreateBatch(new) => {
            let b = review::create_batch(p, &new)?;
            done(format!("Batch {} created with {} images", b.name, b.images))
        }
        LeadWrite::AssignBatch { batch, user } => {
            let b = review::assign_batch(p, &batch, &user)?;
            done(format!("Batch {} assigned to {user}", b.name))
        }
        LeadWrite::SubmitBatch(batch) => {
            let r = review::submit_batch(p, &batch)?;
            done(format!(
                "Batch {} submitted ({} proposals unreviewed, {} boxes still returned)",
                r.batch.name, r.unreviewed_proposals, r.returned_boxes
            ))
        }
        LeadWrite::SetQueueOrder { batch, order } => {
            let b = review::set_queue_order(p, &batch, order)?;
            done(match order {
                review::QueueOrder::Batch => format!("Batch {} follows its own order", b.name),
                review::QueueOrder::Uncertainty => {
                    format!("Batch {}: the model's least certain images first", b.name)
                }
            })
        }
        LeadWrite::StartAudit { batch, opts } => {
            let a = review::audit_start(p, &batch, &opts)?;
            done(format!(
                "Audit of {batch} started: {} images sampled (seed {})",
                a.items.len(),
                a.seed
            ))
        }
        LeadWrite::MarkAudit {
            batch,
            image,
            verdict,
            comment,
        } => {
            let item =
                review::audit_mark(p, &batch, &image.to_string(), verdict, comment.as_deref())?;
            done(format!("{}: {}", item.path, verdict.as_str()))
        }
        LeadWrite::DecideAudit { batch, decision } => {
            let r = review::audit_decide(p, &batch, decision)?;
            done(match decision {
                AuditDecision::Accept => {
                    format!("Batch {batch} accepted: {} boxes approved", r.boxes_changed)
                }
                AuditDecision::Return => format!(
                    "Batch {batch} returned: {} failed images, {} boxes returned",
                    r.failed_images, r.boxes_changed
                ),
            })
        }
        LeadWrite::SetTag { image, tag, on } => {
            let tags = review::tag_image(p, &image.to_string(), &tag, on)?;
            done(format!("Tags: {}", tags.join(", ")))
        }
        LeadWrite::SetMeta { image, key, value } => {
            review::set_meta(p, image, &key, &value)?;
            done(if value.trim().is_empty() {
                format!("Removed {}", key.trim())
            } else {
                format!("Set {}={}", key.trim(), value.trim())
            })
        }
        LeadWrite::ChooseProfile { name, role } => Ok(LeadOutcome::Profile(
            review::choose_profile(p, &name, role)?,
        )),
    }
}
