//! The team roster: who may write to the shared log and who may decide.
//!
//! `team/roster.json` lists members (user id, name, public key, role) and is signed by the
//! owner's key. Clients pin the owner's key the first time they read a roster from a remote and
//! refuse later rosters signed by another key or older than the one they have seen.
//!
//! Decisions that need a role: a revision that leaves a box `approved` or `returned`, and a
//! conflict resolution, need a reviewer or a lead. The rule is the review policy's
//! ([`crate::policy::check_signed_decision`], the same table `Project::apply` enforces); the role
//! is the roster's, of the key that signed the pack, so every client reaches the same verdict
//! from the same roster.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::SyncError;
use super::keys::{Identity, PublicKey};
use crate::model::{ReviewState, Role};
use crate::policy;

/// Where the roster lives in the store.
pub const ROSTER_KEY: &str = "team/roster.json";

/// One person of the team.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub user: Uuid,
    pub name: String,
    pub key: PublicKey,
    pub role: Role,
}

/// The roster's content (what the owner signs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Roster {
    pub format: u32,
    /// Increases with every change; clients refuse a roster older than one they have seen.
    pub version: u64,
    pub owner: Uuid,
    pub members: Vec<Member>,
    pub updated_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct SignedRoster {
    /// The roster as JSON text: the exact bytes that were signed.
    body: String,
    signature: String,
}

impl Roster {
    /// A roster whose only member is its owner, a lead.
    pub fn new(owner: Uuid, name: &str, key: PublicKey) -> Self {
        Self {
            format: 1,
            version: 1,
            owner,
            members: vec![Member {
                user: owner,
                name: name.to_owned(),
                key,
                role: Role::Lead,
            }],
            updated_ms: crate::store::now_ms(),
        }
    }

    pub fn owner_member(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.user == self.owner)
    }

    pub fn member_by_key(&self, key: &PublicKey) -> Option<&Member> {
        self.members.iter().find(|m| m.key == *key)
    }

    /// Adds a member or changes one (found by user id). The owner's role and key are fixed.
    pub fn upsert(&mut self, member: Member) -> Result<(), SyncError> {
        if let Some(other) = self
            .members
            .iter()
            .find(|m| m.key == member.key && m.user != member.user)
        {
            return Err(SyncError::Roster(format!(
                "key {} already belongs to {} ({})",
                member.key, other.name, other.user
            )));
        }
        if member.user == self.owner {
            return Err(SyncError::Roster(
                "the owner's entry cannot be changed: the owner is a lead with the key that signs the roster".into(),
            ));
        }
        match self.members.iter_mut().find(|m| m.user == member.user) {
            Some(m) => *m = member,
            None => self.members.push(member),
        }
        self.version += 1;
        self.updated_ms = crate::store::now_ms();
        Ok(())
    }

    /// Signs the roster with the owner's key.
    pub fn seal(&self, owner: &Identity) -> Result<Vec<u8>, SyncError> {
        let owner_key = self
            .owner_member()
            .map(|m| m.key)
            .ok_or_else(|| SyncError::Roster("the roster has no owner entry".into()))?;
        if owner_key != owner.public() {
            return Err(SyncError::NotPermitted(format!(
                "only the roster's owner may change it; your key is {}",
                owner.public()
            )));
        }
        let body = serde_json::to_string(self).expect("a roster always serializes");
        let signature = B64.encode(owner.sign(&signed_message(&body)));
        let signed = SignedRoster { body, signature };
        Ok(serde_json::to_vec_pretty(&signed).expect("a signed roster always serializes"))
    }

    /// Reads and verifies a roster. With `pinned`, the owner key must be that key.
    pub fn open(bytes: &[u8], pinned: Option<&PublicKey>) -> Result<Roster, SyncError> {
        let bad = |why: String| SyncError::Roster(format!("{ROSTER_KEY}: {why}"));
        let signed: SignedRoster =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not a roster: {e}")))?;
        let roster: Roster =
            serde_json::from_str(&signed.body).map_err(|e| bad(format!("not a roster: {e}")))?;
        let owner = roster
            .owner_member()
            .ok_or_else(|| bad("the owner is not a member".into()))?;
        if owner.role != Role::Lead {
            return Err(bad("the owner is not a lead".into()));
        }
        if let Some(pinned) = pinned
            && *pinned != owner.key
        {
            return Err(bad(format!(
                "signed by {} but this project trusts the roster owner key {pinned}; \
                 refusing a roster from someone else",
                owner.key
            )));
        }
        let signature = B64
            .decode(&signed.signature)
            .map_err(|e| bad(format!("bad signature encoding: {e}")))?;
        if !owner
            .key
            .verifies(&signed_message(&signed.body), &signature)
        {
            return Err(bad(
                "the owner's signature does not verify (tampered?)".into()
            ));
        }
        Ok(roster)
    }

    /// Why a revision signed by `signer` may not be applied, or `None` if it may: the review
    /// policy's rule for decisions ([`policy::check_signed_decision`]) applied to the signer's
    /// role in this roster.
    pub fn refusal(
        &self,
        signer: &PublicKey,
        state: ReviewState,
        resolves: bool,
    ) -> Option<String> {
        if let Some(m) = self.member_by_key(signer)
            && m.role == Role::Model
        {
            // Judged without the box's history (this client's own revisions before a push):
            // anything but a proposal is refused; merges judge the whole revision.
            return policy::check_model_revision(true, state, true, false, resolves)
                .err()
                .map(|refusal| format!("{refusal}; signed by {} (model)", m.name));
        }
        let decision = policy::decision_of(state, resolves)?;
        match self.member_by_key(signer) {
            Some(m) => policy::check_signed_decision(state, resolves, m.role)
                .err()
                .map(|refusal| format!("{refusal}; signed by {} ({})", m.name, m.role.as_str())),
            None => Some(format!(
                "{} signed by {signer}, who is not in the roster",
                decision.as_str()
            )),
        }
    }
}

impl Roster {
    /// Why a revision signed by `signer` may not be applied, or `None` if it may: a model
    /// worker's key may only create proposals of model runs ([`policy::check_model_revision`]);
    /// anyone else is judged by [`Roster::refusal`].
    pub fn refusal_of_revision(
        &self,
        signer: &PublicKey,
        r: &crate::store::SharedRevision,
    ) -> Option<String> {
        match self.member_by_key(signer) {
            Some(m) if m.role == Role::Model => policy::check_model_revision(
                r.parent.is_none() && r.op == "create",
                r.state,
                r.run.is_some(),
                r.deleted,
                !r.resolves.is_empty(),
            )
            .err()
            .map(|refusal| format!("{refusal}; signed by {} (model)", m.name)),
            _ => self.refusal(signer, r.state, !r.resolves.is_empty()),
        }
    }

    /// Whether `signer` may add images to the project's list (a model worker may not).
    pub fn may_list_images(&self, signer: &PublicKey) -> bool {
        self.member_by_key(signer)
            .is_some_and(|m| m.role != Role::Model)
    }
}

fn signed_message(body: &str) -> Vec<u8> {
    let mut m = b"loupe roster v1\0".to_vec();
    m.extend_from_slice(body.as_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, role: Role) -> (Member, Identity) {
        let id = Identity::generate();
        (
            Member {
                user: Uuid::now_v7(),
                name: name.into(),
                key: id.public(),
                role,
            },
            id,
        )
    }

    #[test]
    fn rosters_are_signed_by_their_owner_and_pinned() {
        let owner = Identity::generate();
        let mut roster = Roster::new(Uuid::now_v7(), "olga", owner.public());
        let (ann, ann_key) = member("ann", Role::Annotator);
        roster.upsert(ann.clone()).expect("add");
        let bytes = roster.seal(&owner).expect("seal");
        let back = Roster::open(&bytes, Some(&owner.public())).expect("open");
        assert_eq!(back, roster);
        assert!(Roster::open(&bytes, Some(&ann_key.public())).is_err());
        assert!(roster.seal(&ann_key).is_err());
        let tampered = String::from_utf8(bytes)
            .expect("utf8")
            .replace("annotator", "lead");
        assert!(Roster::open(tampered.as_bytes(), None).is_err());
    }

    #[test]
    fn decisions_need_a_reviewer_or_lead() {
        let owner = Identity::generate();
        let mut roster = Roster::new(Uuid::now_v7(), "olga", owner.public());
        let (ann, ann_key) = member("ann", Role::Annotator);
        let (rev, rev_key) = member("rev", Role::Reviewer);
        roster.upsert(ann).expect("add");
        roster.upsert(rev).expect("add");
        let a = ann_key.public();
        assert_eq!(roster.refusal(&a, ReviewState::Submitted, false), None);
        assert!(roster.refusal(&a, ReviewState::Approved, false).is_some());
        assert!(roster.refusal(&a, ReviewState::Returned, false).is_some());
        assert!(roster.refusal(&a, ReviewState::Submitted, true).is_some());
        assert_eq!(
            roster.refusal(&rev_key.public(), ReviewState::Approved, true),
            None
        );
        assert_eq!(
            roster.refusal(&owner.public(), ReviewState::Approved, false),
            None
        );
        let stranger = Identity::generate().public();
        assert!(
            roster
                .refusal(&stranger, ReviewState::Approved, false)
                .is_some()
        );
    }
}
