//! Sync's side of the project file, in sync's terms: remotes with their `RemoteSpec`, packs and
//! rosters. Every table access is the store's (`store::sync_log`); this module turns sync's
//! values into the store's and back. Methods are prefixed `sync_` so they never collide with
//! other modules' `impl Project` blocks.

use serde::Serialize;
use uuid::Uuid;

use super::SyncError;
use super::pack::{NamedRef, Pack, PackProblem, PackRevision, RevId};
use super::roster::Roster;
use super::store::{Faults, RemoteSpec};
use crate::model::Role;
use crate::store::{IncomingError, IncomingPack, IncomingRules, Project, UnsharedLists};

pub use crate::store::merge::Judge;
pub use crate::store::{Applied, Conflict, ConflictHead, OutRevision, SyncRefusal as Refusal};

/// A configured remote.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RemoteInfo {
    pub name: String,
    pub spec: RemoteSpec,
    pub last_sync_ms: Option<i64>,
    /// The highest local revision seq the last push to it considered.
    pub pushed_seq: i64,
}

/// Why applying a pack failed: the pack is refused, or something else went wrong.
#[derive(Debug)]
pub enum ApplyError {
    Refused(PackProblem),
    Failed(SyncError),
}

impl From<SyncError> for ApplyError {
    fn from(e: SyncError) -> Self {
        ApplyError::Failed(e)
    }
}

impl Project {
    // ------------------------------------------------------------ remotes and small state

    /// Adds (or replaces the URL and options of) a remote.
    pub fn sync_add_remote(&mut self, name: &str, spec: &RemoteSpec) -> Result<(), SyncError> {
        if name.is_empty() || name.contains('/') {
            return Err(SyncError::Config(format!("{name:?} is not a remote name")));
        }
        let options = serde_json::to_string(spec).expect("a remote spec always serializes");
        Ok(self.log_add_remote(name, &spec.url, &options)?)
    }

    pub fn sync_remove_remote(&mut self, name: &str) -> Result<bool, SyncError> {
        Ok(self.log_remove_remote(name)?)
    }

    pub fn sync_remotes(&self) -> Result<Vec<RemoteInfo>, SyncError> {
        Ok(self
            .log_remotes()?
            .into_iter()
            .map(|r| {
                let mut spec: RemoteSpec = serde_json::from_str(&r.options).unwrap_or_default();
                spec.url = r.url;
                RemoteInfo {
                    name: r.name,
                    spec,
                    last_sync_ms: r.last_sync_ms,
                    pushed_seq: r.pushed_seq,
                }
            })
            .collect())
    }

    /// The remote called `name`; without a name, the only remote or the one called `origin`.
    pub fn sync_remote(&self, name: Option<&str>) -> Result<RemoteInfo, SyncError> {
        let remotes = self.sync_remotes()?;
        let found = match name {
            Some(n) => remotes.iter().find(|r| r.name == n),
            None if remotes.len() == 1 => remotes.first(),
            None => remotes.iter().find(|r| r.name == "origin"),
        };
        found.cloned().ok_or_else(|| {
            let known: Vec<&str> = remotes.iter().map(|r| r.name.as_str()).collect();
            SyncError::Config(match (name, known.is_empty()) {
                (_, true) => {
                    "no remote configured: add one with `loupe remote add NAME URL`".into()
                }
                (Some(n), false) => format!("no remote named {n:?} (known: {})", known.join(", ")),
                (None, false) => format!(
                    "several remotes and none is `origin`: name one ({})",
                    known.join(", ")
                ),
            })
        })
    }

    pub fn sync_state_get(&self, remote: &str, key: &str) -> Result<Option<String>, SyncError> {
        Ok(self.log_state_get(remote, key)?)
    }

    pub fn sync_state_set(&self, remote: &str, key: &str, value: &str) -> Result<(), SyncError> {
        Ok(self.log_state_set(remote, key, value)?)
    }

    /// Sets several keys in one transaction.
    pub fn sync_state_set_many(
        &mut self,
        remote: &str,
        pairs: &[(&str, String)],
    ) -> Result<(), SyncError> {
        Ok(self.log_state_set_many(remote, pairs)?)
    }

    pub(crate) fn sync_mark_synced(&self, remote: &str) -> Result<(), SyncError> {
        Ok(self.log_mark_synced(remote)?)
    }

    /// The last pack of `client` this project wrote to or applied from `remote`: (seq, hash).
    pub fn sync_chain_head(
        &self,
        remote: &str,
        client: Uuid,
    ) -> Result<(u64, Option<String>), SyncError> {
        Ok(self.log_chain_head(remote, client)?)
    }

    /// The sequence numbers of the packs this client pushed to `remote`.
    pub fn sync_pushed_seqs(&self, remote: &str) -> Result<Vec<u64>, SyncError> {
        Ok(self.log_pushed_seqs(remote)?)
    }

    // ------------------------------------------------------------ push

    /// This client's revisions not pushed to `remote` yet, in order, with their parents and the
    /// roster's verdict; plus the highest seq looked at (the next watermark).
    pub fn sync_unpushed(
        &self,
        remote: &RemoteInfo,
        judge: Judge<'_>,
    ) -> Result<(Vec<OutRevision>, i64), SyncError> {
        Ok(self.log_unpushed(remote.pushed_seq, judge)?)
    }

    /// Whether a pack of this client holding revision `hlc` of box `annotation` is one an
    /// interrupted push wrote (the revision is here and not recorded as pushed): the next push
    /// adopts it, a pull leaves it alone.
    pub fn sync_is_unrecorded_own(&self, annotation: Uuid, hlc: i64) -> Result<bool, SyncError> {
        Ok(self.log_is_unrecorded_own(annotation, hlc)?)
    }

    /// Records a pack written to `remote`: its place in the chain and each revision's parent.
    pub fn sync_record_push(
        &mut self,
        remote: &str,
        seq: u64,
        hash: &str,
        revisions: &[OutRevision],
        signer: &str,
        judge: Judge<'_>,
    ) -> Result<(), SyncError> {
        Ok(self.log_record_push(remote, seq, hash, revisions, signer, judge)?)
    }

    /// Moves the push watermark of `remote` (everything up to `seq` was looked at).
    pub fn sync_set_watermark(&self, remote: &str, seq: i64) -> Result<(), SyncError> {
        Ok(self.log_set_watermark(remote, seq)?)
    }

    /// What this file has not put in `remote`'s image list and runs' coverage yet.
    pub(crate) fn sync_unshared_lists(&self, remote: &str) -> Result<UnsharedLists, SyncError> {
        Ok(self.log_unshared_lists(remote)?)
    }

    /// Marks images (rows) and coverage ((run, image) rows) as put in `remote`'s lists.
    pub(crate) fn sync_mark_shared(
        &mut self,
        remote: &str,
        images: &[i64],
        coverage: &[(i64, i64)],
    ) -> Result<(), SyncError> {
        Ok(self.log_mark_shared(remote, images, coverage)?)
    }

    // ------------------------------------------------------------ pull

    /// Records a refused pack (or revision) so `loupe sync status` can show it.
    pub fn sync_record_refusal(&self, refusal: &Refusal) -> Result<(), SyncError> {
        Ok(self.log_record_refusal(refusal)?)
    }

    /// Applies a verified pack in one transaction: every revision or none (a refused pack or a
    /// failure leaves nothing). Revisions the roster refuses are recorded, not applied.
    pub fn sync_apply_pack(
        &mut self,
        remote: &str,
        pack: &Pack,
        roster: &Roster,
        judge: Judge<'_>,
        faults: Option<&Faults>,
    ) -> Result<Applied, ApplyError> {
        let h = &pack.header;
        let signer = roster.member_by_key(&h.signer).map_or_else(
            || h.signer.to_string(),
            |m| format!("{} ({})", m.name, h.signer),
        );
        let incoming = IncomingPack {
            client: h.client,
            seq: h.seq,
            hash: &pack.hash,
            signer: &signer,
            revisions: &pack.revisions,
            listed: &pack.listed,
            covered: &pack.covered,
            signer_member: roster.member_by_key(&h.signer).map(|m| NamedRef {
                id: m.user,
                name: m.name.clone(),
            }),
        };
        let refusal = |r: &PackRevision| roster.refusal_of_revision(&h.signer, r);
        let role_of = |user: Uuid| {
            roster
                .members
                .iter()
                .find(|m| m.user == user)
                .map_or(Role::Annotator, |m| m.role)
        };
        let before_each = || faults.map_or(Ok(()), Faults::apply);
        let listing_refusal = (!roster.may_list_images(&h.signer)).then(|| {
            format!(
                "{} images listed by {signer}: a model worker may only create proposals for model runs, not add images",
                pack.listed.len()
            )
        });
        let rules = IncomingRules {
            refusal: &refusal,
            role_of: &role_of,
            listing_refusal,
            judge,
            before_each: &before_each,
        };
        self.log_apply_pack(remote, &incoming, &rules)
            .map_err(|e| match e {
                IncomingError::Replayed { annotation, hlc } => {
                    ApplyError::Refused(PackProblem::ReplayedRevisions { annotation, hlc })
                }
                IncomingError::NonFinite { annotation } => ApplyError::Refused(
                    PackProblem::Malformed(format!("box {annotation} has a non-finite geometry")),
                ),
                IncomingError::Stopped(e) => ApplyError::Failed(e),
                IncomingError::Store(e) => ApplyError::Failed(e.into()),
            })
    }

    // ------------------------------------------------------------ conflicts and status

    /// Boxes in conflict, with their heads labelled A, B, … in (hlc, client) order.
    pub fn sync_conflicts(&self) -> Result<Vec<Conflict>, SyncError> {
        Ok(self.log_conflicts()?)
    }

    /// Writes a conflict resolution: a new revision of `annotation` by the current user with
    /// the value of head `take` verbatim, marked as resolving every head in `heads` (see
    /// `store::sync_log`: not through `Project::apply`, on purpose). Who may resolve is the
    /// roster's business, checked by the caller and by every client at merge.
    pub fn sync_write_resolution(
        &mut self,
        annotation: Uuid,
        take: RevId,
        heads: &[RevId],
        note: &str,
        judge: Judge<'_>,
    ) -> Result<(), SyncError> {
        Ok(self.log_write_resolution(annotation, take, heads, note, judge)?)
    }

    /// Refusals recorded from `remote` (all remotes with `None`), newest first.
    pub fn sync_refusals(&self, remote: Option<&str>) -> Result<Vec<Refusal>, SyncError> {
        Ok(self.log_refusals(remote)?)
    }

    /// How many of this client's shared revisions are waiting to be pushed to `remote`.
    pub fn sync_pending_count(&self, remote: &RemoteInfo) -> Result<u64, SyncError> {
        Ok(self.log_pending_count(remote.pushed_seq)?)
    }

    /// (packs pushed, packs pulled, revisions pulled) for `remote`.
    pub fn sync_pack_counts(&self, remote: &str) -> Result<(u64, u64, u64), SyncError> {
        Ok(self.log_pack_counts(remote)?)
    }

    /// A hash of the shared state: every shared box's current value (by content: image hash,
    /// class name) and the conflict set. Clients that have seen the same packs agree on it.
    pub fn sync_state_hash(&self) -> Result<String, SyncError> {
        Ok(self.log_state_hash()?)
    }
}
