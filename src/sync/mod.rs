//! Sync of accepted labels with a shared store (a folder or an S3-compatible bucket).
//!
//! Offline first: every project file keeps working alone; `sync` pushes this client's new
//! revisions and pulls everyone else's. The protocol is an append-only log in the store:
//!
//! - `log/<client>/<sequence>`: immutable, signed packs of one client's revisions ([`pack`]),
//!   created with create-if-absent and chained by hash;
//! - `team/roster.json`: who may write and decide, signed by the owner ([`roster`]);
//! - `images/<blake3>`: image files, when pushed with `--images`;
//! - `exports/<version>/`: published versions with a manifest ([`publish`]).
//!
//! Merging is deterministic and never last-writer-wins for concurrent edits ([`merge`]): the
//! current value is the greatest (hlc, client) revision, and a box edited concurrently by two
//! clients is kept in conflict, with both revisions, until a reviewer or lead resolves it.
//! A pack that is truncated, tampered, wrongly signed, signed by an unknown key, replayed, names
//! an author other than its signer's member, or is stamped too far ahead of this clock is refused
//! whole; a revision whose decision needs a role its signer lacks is refused alone. Refusals are
//! recorded and shown by `loupe sync status`; readers read on past a refused object, and report
//! a missing one as a gap. Writers write past what is not theirs at their next place, and upload
//! again the packs of theirs the store lost. A store roster that does not verify is replaced by
//! the last one verified here until the owner republishes it.
//!
//! [`sync_once`] opens its own connection to the project, so the app can run it on a thread.

mod engine;
pub mod keys;
mod local;
pub mod merge;
pub mod pack;
pub mod publish;
pub mod roster;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

pub use engine::{
    MAX_CLOCK_LEAD_MS, RosterChange, Take, debug_generate_revisions, remote_add, resolve_conflict,
    resolve_conflict_with, sync_once, sync_with, team_add, team_init, team_republish, team_show,
};
pub use keys::{Identity, PublicKey};
pub use local::{Conflict, ConflictHead, Refusal, RemoteInfo};
pub use publish::{PublishOptions, PublishReport, publish, verify_published};
pub use roster::{Member, Roster};
pub use store::{Faults, RemoteSpec, RemoteStore};

/// Errors of sync. Refused packs are not errors: they are reported and the sync goes on.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Project(#[from] crate::store::StoreError),
    #[error("{url}: {key}: {source}")]
    Store {
        url: String,
        key: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("signing key: {0}")]
    Keys(String),
    #[error("roster: {0}")]
    Roster(String),
    #[error("not permitted: {0}")]
    NotPermitted(String),
    /// The store holds a pack at this client's next place that this project did not write.
    #[error("{0}")]
    ClientCollision(String),
    #[error(transparent)]
    Format(#[from] crate::formats::FormatError),
    /// A failure injected by a test (a simulated crash).
    #[error("injected failure at {0}")]
    Injected(&'static str),
}

/// How to run one sync. `SyncOptions::default()` pushes and pulls with the default remote.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// The remote's name (default: the only remote, or `origin`).
    pub remote: Option<String>,
    /// Use this store instead of the saved one (it is saved under `remote`'s name).
    pub spec: Option<RemoteSpec>,
    /// Where the signing key lives (default: `$LOUPE_CONFIG_DIR` or the user's config folder).
    pub config_dir: Option<PathBuf>,
    pub push: bool,
    pub pull: bool,
    /// Push image files (`images/<hash>`) and fetch the missing ones.
    pub images: bool,
    /// Put this project's images in the store's image list (what `loupe worker` processes).
    pub list_images: bool,
    /// Revisions per pack (at most [`pack::MAX_PACK_REVISIONS`]).
    pub pack_revisions: usize,
    /// Tests: stop pulling after this many packs (partial delivery).
    pub max_packs: Option<usize>,
    /// Tests: pull clients in an order shuffled by this seed.
    pub shuffle_seed: Option<u64>,
    /// Tests: simulated crashes.
    pub faults: Option<Arc<Faults>>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            remote: None,
            spec: None,
            config_dir: None,
            push: true,
            pull: true,
            images: false,
            list_images: false,
            pack_revisions: pack::MAX_PACK_REVISIONS,
            max_packs: None,
            shuffle_seed: None,
            faults: None,
        }
    }
}

/// What one sync did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SyncReport {
    pub remote: String,
    pub url: String,
    pub pushed_packs: usize,
    pub pushed_revisions: usize,
    /// This client's revisions attributed here to someone other than the key's member (the
    /// project's user is not the roster's entry for this key, or `--user`): pushed as the
    /// signer's, since a key vouches only for its own member.
    pub reattributed: usize,
    /// This client's revisions the roster refuses (pushed, and refused everywhere).
    pub refused_own: usize,
    pub pulled_packs: usize,
    pub pulled_revisions: usize,
    /// Images this sync put in the store's image list, and (run, image) coverage it sent.
    pub listed_images: usize,
    pub covered_images: usize,
    /// Image-list and coverage entries read from others' packs.
    pub pulled_listed: usize,
    pub pulled_covered: usize,
    /// Packs and revisions refused during this sync, with the reasons.
    pub refused: Vec<Refusal>,
    /// Clients whose later packs wait behind a refused or missing one.
    pub held_back: Vec<String>,
    /// Why the store's roster was not used (the last one verified here was), if it was not.
    pub roster_problem: Option<String>,
    /// Objects found at this client's next places that were not its own packs (another client's
    /// pack, a broken or foreign file): each was written past, and is named here.
    pub written_past: Vec<String>,
    /// This client's packs the store had lost, uploaded again from the copies kept at push.
    pub restored: Vec<String>,
    /// This client's packs the store lost that could not be uploaded again (no copy kept).
    pub lost: Vec<String>,
    pub images_pushed: usize,
    pub images_pulled: usize,
    /// Boxes in conflict after the sync, and how many became so during it.
    pub conflicts: usize,
    pub new_conflicts: usize,
    /// The shared-state hash after the sync (equal on clients that saw the same packs).
    pub state_hash: String,
    pub elapsed_ms: u64,
}

impl SyncReport {
    /// Nothing was refused (neither others' packs or revisions nor this client's) and no
    /// client's packs wait behind a missing or refused one.
    pub fn is_clean(&self) -> bool {
        self.refused.is_empty()
            && self.held_back.is_empty()
            && self.written_past.is_empty()
            && self.roster_problem.is_none()
            && self.lost.is_empty()
            && self.refused_own == 0
    }
}
