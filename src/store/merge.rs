//! The merge rule of the shared log, as pure functions over one box's revisions. It lives in the
//! store because the store applies it: the current value it keeps for a box, and the conflicts
//! it records, follow from these functions inside the transaction that writes the revisions.
//!
//! - The current value of a box is its revision with the greatest (hlc, client uuid), refused
//!   revisions left out: the store's rule, so every client that has the same revisions shows the
//!   same value whatever order they arrived in.
//! - Each revision names its parent, the revision it replaced in its writer's view. A shared
//!   revision that no other shared revision names (as parent or as resolved) is a head. A box
//!   with more than one head was edited concurrently by different clients: it is in conflict,
//!   and stays so until a reviewer or lead writes a revision that resolves every head.
//! - A revision written here and not pushed yet has no recorded parent; it gets the one it will
//!   be pushed with: the greatest earlier shared revision, refused ones skipped.
//! - A model proposal nobody has decided on is private: a revision in state `proposed` with no
//!   earlier revision in another state is never pushed, unless its run is shared (a batch
//!   worker's run, made to be delivered through the store). Everything else is shared.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::ReviewState;

/// A revision named across project files: its client and hybrid-logical-clock time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RevId {
    pub hlc: i64,
    pub client: Uuid,
}

/// Decides whether a revision written here and not pushed yet is refused: `(state, resolves
/// something)` → the reason (the team roster's verdict on this client's signer).
pub type Judge<'a> = &'a dyn Fn(ReviewState, bool) -> Option<String>;

/// What sync recorded about a revision (from a pack, or when it was pushed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RevMeta {
    pub parent: Option<RevId>,
    pub resolves: Vec<RevId>,
    pub refused: bool,
}

/// One revision of a box, in local order (`seq`).
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryRow {
    pub seq: i64,
    pub id: RevId,
    pub state: ReviewState,
    /// `None` for a local revision not pushed yet.
    pub meta: Option<RevMeta>,
    /// For a local revision not pushed yet: the heads it resolves (a pending resolution).
    pub pending_resolves: Vec<RevId>,
    /// The revision is a proposal of a shared run (`loupe worker`): shared even undecided.
    pub shared_run: bool,
}

/// A revision with everything the merge rule needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub seq: i64,
    pub id: RevId,
    pub state: ReviewState,
    pub shared: bool,
    pub parent: Option<RevId>,
    pub resolves: Vec<RevId>,
    /// Why it is refused (role rule), if it is.
    pub refused: Option<String>,
    /// True when the node had no recorded meta (a local revision not pushed yet).
    pub pending: bool,
}

/// Fills in parents, sharing and refusals for one box's history (sorted by `seq`).
/// `judge` decides refusals of pending revisions: `(state, resolves something)` → reason.
pub fn walk(history: &[HistoryRow], judge: Judge<'_>) -> Vec<Node> {
    let mut out = Vec::with_capacity(history.len());
    let mut best: Option<RevId> = None;
    let mut decided = false;
    for row in history {
        let node = match &row.meta {
            Some(meta) => Node {
                seq: row.seq,
                id: row.id,
                state: row.state,
                shared: true,
                parent: meta.parent,
                resolves: meta.resolves.clone(),
                refused: meta.refused.then(|| "refused".to_owned()),
                pending: false,
            },
            None => {
                let shared = decided || row.state != ReviewState::Proposed || row.shared_run;
                let refused = if shared {
                    judge(row.state, !row.pending_resolves.is_empty())
                } else {
                    None
                };
                Node {
                    seq: row.seq,
                    id: row.id,
                    state: row.state,
                    shared,
                    parent: best,
                    resolves: row.pending_resolves.clone(),
                    refused,
                    pending: true,
                }
            }
        };
        decided |= row.state != ReviewState::Proposed;
        if node.shared && node.refused.is_none() {
            best = best.max(Some(node.id));
        }
        out.push(node);
    }
    out
}

/// The revision that is the box's current value: the greatest (hlc, client) not refused.
pub fn winner(nodes: &[Node]) -> Option<&Node> {
    nodes
        .iter()
        .filter(|n| n.refused.is_none())
        .max_by_key(|n| n.id)
}

/// The heads of a box (shared, not refused, superseded by nothing), sorted.
pub fn heads(nodes: &[Node]) -> Vec<RevId> {
    let live = || nodes.iter().filter(|n| n.shared && n.refused.is_none());
    let superseded: HashSet<RevId> = live()
        .flat_map(|n| n.parent.iter().chain(n.resolves.iter()).copied())
        .collect();
    let mut out: Vec<RevId> = live()
        .map(|n| n.id)
        .filter(|id| !superseded.contains(id))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The heads of a conflict as stored in the `conflicts` table.
pub fn heads_json(heads: &[RevId]) -> String {
    serde_json::to_string(heads).expect("revision ids always serialize")
}

pub fn parse_heads(text: &str) -> Vec<RevId> {
    serde_json::from_str(text).unwrap_or_default()
}

/// Short form of a client id for messages.
pub fn short(client: Uuid) -> String {
    client.simple().to_string()[..8].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(client: u8, hlc: i64) -> RevId {
        RevId {
            hlc,
            client: Uuid::from_bytes([client; 16]),
        }
    }

    fn pulled(seq: i64, rid: RevId, parent: Option<RevId>) -> HistoryRow {
        HistoryRow {
            seq,
            id: rid,
            state: ReviewState::Submitted,
            meta: Some(RevMeta {
                parent,
                resolves: Vec::new(),
                refused: false,
            }),
            pending_resolves: Vec::new(),
            shared_run: false,
        }
    }

    fn pending(seq: i64, rid: RevId, state: ReviewState) -> HistoryRow {
        HistoryRow {
            seq,
            id: rid,
            state,
            meta: None,
            pending_resolves: Vec::new(),
            shared_run: false,
        }
    }

    const NO_JUDGE: &dyn Fn(ReviewState, bool) -> Option<String> = &|_, _| None;

    #[test]
    fn a_linear_history_has_one_head() {
        let h = vec![
            pulled(1, id(1, 10), None),
            pulled(2, id(2, 20), Some(id(1, 10))),
            pending(3, id(3, 30), ReviewState::Accepted),
        ];
        let nodes = walk(&h, NO_JUDGE);
        assert_eq!(nodes[2].parent, Some(id(2, 20)));
        assert_eq!(heads(&nodes), vec![id(3, 30)]);
        assert_eq!(winner(&nodes).map(|n| n.seq), Some(3));
    }

    #[test]
    fn concurrent_edits_are_a_conflict_until_resolved() {
        let mut h = vec![
            pulled(1, id(1, 10), None),
            pulled(2, id(2, 20), Some(id(1, 10))),
            pulled(3, id(3, 25), Some(id(1, 10))),
        ];
        let nodes = walk(&h, NO_JUDGE);
        assert_eq!(heads(&nodes), vec![id(2, 20), id(3, 25)]);
        assert_eq!(winner(&nodes).map(|n| n.id), Some(id(3, 25)));
        // An ordinary edit continues one branch: still in conflict.
        h.push(pending(4, id(2, 40), ReviewState::Submitted));
        // (The new revision replaced the winner, id(3, 25); id(2, 20) is still a head.)
        assert_eq!(heads(&walk(&h, NO_JUDGE)), vec![id(2, 20), id(2, 40)]);
        // A resolution naming the heads ends it.
        let heads_now = heads(&walk(&h, NO_JUDGE));
        h.push(HistoryRow {
            pending_resolves: heads_now,
            shared_run: false,
            ..pending(5, id(1, 50), ReviewState::Approved)
        });
        assert_eq!(heads(&walk(&h, NO_JUDGE)), vec![id(1, 50)]);
    }

    #[test]
    fn undecided_proposals_are_private_and_refusals_are_skipped() {
        let h = vec![
            pending(1, id(1, 10), ReviewState::Proposed),
            pending(2, id(1, 11), ReviewState::Approved),
            pending(3, id(1, 12), ReviewState::Submitted),
            pending(4, id(1, 13), ReviewState::Proposed),
        ];
        let judge = |s: ReviewState, _| (s == ReviewState::Approved).then(|| "no".to_owned());
        let nodes = walk(&h, &judge);
        assert!(!nodes[0].shared);
        assert!(nodes[1].shared && nodes[1].refused.is_some());
        assert_eq!(nodes[1].parent, None);
        assert_eq!(
            nodes[2].parent, None,
            "the refused revision is not a parent"
        );
        assert!(nodes[3].shared, "a proposal after a decision is shared");
        assert_eq!(nodes[3].parent, Some(id(1, 12)));
        assert_eq!(heads(&nodes), vec![id(1, 13)]);
        assert_eq!(winner(&nodes).map(|n| n.seq), Some(4));
    }
}
