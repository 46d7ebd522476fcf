//! The sync log: the store's side of syncing with a shared store (the tables of migration 3).
//! Remotes and small per-remote state, this client's revisions on their way into packs, pulled
//! revisions written into the log and the current-state cache (the merge rule of
//! [`super::merge`] applied in the same transaction), conflicts, refusals, the state hash.
//!
//! Revisions cross project files in their portable form ([`SharedRevision`]: by names, UUIDs
//! and content hashes, never row ids); `sync::pack` gives that form its wire encoding. What a
//! roster allows is the caller's (sync's) judgement, passed in as functions.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::merge::{self, HistoryRow, Judge, Node, RevId, RevMeta};
use super::*;

/// An image by content hash and path, with its displayed size.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    pub path: String,
    pub width: u32,
    pub height: u32,
}

/// A user, class or run by its UUID and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NamedRef {
    pub id: Uuid,
    pub name: String,
}

/// A model run's coverage as it crosses files: the images its model processed (with or without
/// boxes), and the model and settings it ran with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunCoverage {
    pub run: NamedRef,
    pub model_hash: Option<String>,
    pub settings_hash: Option<String>,
    pub images: Vec<ImageRef>,
}

/// One revision in its portable form: everything by names and UUIDs, nothing by row id (what a
/// pack carries).
#[derive(Clone, Debug, PartialEq)]
pub struct SharedRevision {
    pub annotation: Uuid,
    pub author: NamedRef,
    pub hlc: i64,
    pub op: String,
    pub image: ImageRef,
    pub class: NamedRef,
    pub bbox: BBox,
    /// The model run and score of a proposal's lineage; `None` for a human box.
    pub run: Option<(NamedRef, f32)>,
    pub state: ReviewState,
    pub flags: BoxFlags,
    pub deleted: bool,
    /// The box's attributes (format 2; empty in a format 1 pack).
    pub attributes: Attributes,
    pub note: Option<String>,
    /// The revision this one replaced, as its writer saw the box; `None` for the first.
    pub parent: Option<RevId>,
    /// Conflicting heads this revision resolves (a reviewer's or lead's decision).
    pub resolves: Vec<RevId>,
}

/// A configured remote as the file keeps it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RemoteRow {
    pub name: String,
    pub url: String,
    /// The remote's options (sync's `RemoteSpec`) as JSON.
    pub options: String,
    pub last_sync_ms: Option<i64>,
    /// The highest local revision seq the last push to it considered.
    pub pushed_seq: i64,
}

/// A pack or a revision that was refused, with the reason.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SyncRefusal {
    pub remote: String,
    pub client: Uuid,
    pub seq: u64,
    /// Set for a single refused revision (a role violation); `None` for a whole pack.
    pub annotation: Option<Uuid>,
    pub hlc: Option<i64>,
    pub signer: String,
    pub reason: String,
    pub at_ms: i64,
}

/// One local revision on its way into a pack.
#[derive(Clone, Debug)]
pub struct OutRevision {
    pub seq: i64,
    pub ann: i64,
    pub revision: SharedRevision,
    /// Set when the roster refuses it (it is still pushed, so leads see it everywhere).
    pub refused: Option<String>,
}

/// One box in conflict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conflict {
    pub annotation: Uuid,
    pub image: String,
    pub heads: Vec<ConflictHead>,
    pub since_ms: i64,
}

/// One of the concurrent revisions of a box in conflict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConflictHead {
    /// `A`, `B`, …: what `loupe sync resolve --take` names.
    pub label: String,
    pub client: Uuid,
    pub hlc: i64,
    pub author: String,
    pub class: String,
    pub bbox: BBox,
    pub state: ReviewState,
    pub deleted: bool,
}

/// What this file has not put in a remote's lists yet (see `log_unshared_lists`).
#[derive(Debug, Default)]
pub(crate) struct UnsharedLists {
    /// (image row, the image).
    pub images: Vec<(i64, ImageRef)>,
    /// Per shared run: (run row, its coverage, the image rows in the same order).
    pub coverage: Vec<(i64, RunCoverage, Vec<i64>)>,
}

/// What applying a pack did.
#[derive(Debug, Default)]
pub struct Applied {
    pub revisions: usize,
    pub refused: Vec<SyncRefusal>,
    pub new_conflicts: usize,
    pub max_hlc: i64,
    /// Images of the pack's list applied (new here or not).
    pub listed: usize,
    /// (run, image) coverage entries applied.
    pub covered: usize,
}

/// A verified pack to apply: whose, which place in its chain, and its revisions.
pub(crate) struct IncomingPack<'a> {
    pub client: Uuid,
    pub seq: u64,
    /// blake3 (hex) of the pack's bytes.
    pub hash: &'a str,
    /// Who signed it, as refusals name them.
    pub signer: &'a str,
    pub revisions: &'a [SharedRevision],
    /// Images the pack adds to the project's image list.
    pub listed: &'a [ImageRef],
    /// Runs' coverage the pack carries.
    pub covered: &'a [RunCoverage],
    /// The signer's team member (credited with the coverage), if the roster knows the key.
    pub signer_member: Option<NamedRef>,
}

/// What the caller decides about an incoming pack (sync: its team roster).
pub(crate) struct IncomingRules<'a, E> {
    /// Why a revision of the pack's signer leaving a box in this state (and resolving a
    /// conflict, or not) is refused, if it is.
    pub refusal: &'a dyn Fn(&SharedRevision) -> Option<String>,
    /// The role a user new to this file gets.
    pub role_of: &'a dyn Fn(Uuid) -> Role,
    /// Why the signer may not add images to the project's list, if it may not.
    pub listing_refusal: Option<String>,
    /// Refusals of this client's own revisions not pushed yet (see [`Judge`]).
    pub judge: Judge<'a>,
    /// Called before each revision is written; an error stops the apply (tests simulate a
    /// process killed mid-pack with it).
    pub before_each: &'a dyn Fn() -> std::result::Result<(), E>,
}

/// Why an incoming pack was not applied (nothing of it was).
#[derive(Debug)]
pub(crate) enum IncomingError<E> {
    /// It holds a revision this file already has from another client: a replay.
    Replayed {
        annotation: Uuid,
        hlc: i64,
    },
    /// A box with a non-finite geometry.
    NonFinite {
        annotation: Uuid,
    },
    /// The caller's `before_each` refused.
    Stopped(E),
    Store(StoreError),
}

/// A failure inside the apply transaction.
enum ApplyFail<E> {
    Sql(rusqlite::Error),
    Incoming(IncomingError<E>),
}

impl<E> From<rusqlite::Error> for ApplyFail<E> {
    fn from(e: rusqlite::Error) -> Self {
        ApplyFail::Sql(e)
    }
}

fn uuid_text(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap_or_default()
}

fn rev_ids_json(ids: &[RevId]) -> Option<String> {
    (!ids.is_empty()).then(|| merge::heads_json(ids))
}

impl Project {
    // ------------------------------------------------------------ remotes and small state

    /// Adds a remote or replaces its URL and options.
    pub(crate) fn log_add_remote(&self, name: &str, url: &str, options: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO sync_remotes(name, url, options, created_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET url=excluded.url, options=excluded.options",
                params![name, url, options, now_ms()],
            )
            .map_err(self.sq())?;
        Ok(())
    }

    /// Removes a remote; whether there was one.
    pub(crate) fn log_remove_remote(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM sync_remotes WHERE name=?1", [name])
            .map_err(self.sq())?
            > 0)
    }

    /// Every remote, by name.
    pub(crate) fn log_remotes(&self) -> Result<Vec<RemoteRow>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, url, options, last_sync_ms, pushed_seq FROM sync_remotes ORDER BY name",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(RemoteRow {
                    name: r.get(0)?,
                    url: r.get(1)?,
                    options: r.get(2)?,
                    last_sync_ms: r.get(3)?,
                    pushed_seq: r.get(4)?,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    pub(crate) fn log_state_get(&self, remote: &str, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT value FROM sync_state WHERE remote=?1 AND key=?2",
                [remote, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sq())
    }

    pub(crate) fn log_state_set(&self, remote: &str, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO sync_state(remote, key, value) VALUES (?1, ?2, ?3)",
                [remote, key, value],
            )
            .map_err(self.sq())?;
        Ok(())
    }

    /// Sets several keys in one transaction.
    pub(crate) fn log_state_set_many(
        &mut self,
        remote: &str,
        pairs: &[(&str, String)],
    ) -> Result<()> {
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sq)?;
        for (key, value) in pairs {
            tx.execute(
                "INSERT OR REPLACE INTO sync_state(remote, key, value) VALUES (?1, ?2, ?3)",
                params![remote, key, value],
            )
            .map_err(sq)?;
        }
        tx.commit().map_err(sq)
    }

    pub(crate) fn log_mark_synced(&self, remote: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE sync_remotes SET last_sync_ms=?2 WHERE name=?1",
                params![remote, now_ms()],
            )
            .map_err(self.sq())?;
        Ok(())
    }

    /// The last pack of `client` this project wrote to or applied from `remote`: (seq, hash).
    pub(crate) fn log_chain_head(
        &self,
        remote: &str,
        client: Uuid,
    ) -> Result<(u64, Option<String>)> {
        let row: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT seq, hash FROM sync_packs WHERE remote=?1 AND client=?2 ORDER BY seq DESC LIMIT 1",
                params![remote, client.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.sq())?;
        Ok(match row {
            Some((seq, hash)) => (u64::try_from(seq).unwrap_or(0), Some(hash)),
            None => (0, None),
        })
    }

    /// The sequence numbers of the packs this client pushed to `remote`.
    pub(crate) fn log_pushed_seqs(&self, remote: &str) -> Result<Vec<u64>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq FROM sync_packs WHERE remote=?1 AND client=?2 AND pushed=1 ORDER BY seq",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map(params![remote, self.client_uuid.to_string()], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(self.sq())?;
        Ok(rows
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sq())?
            .into_iter()
            .filter_map(|s| u64::try_from(s).ok())
            .collect())
    }

    /// Moves the push watermark of `remote` (everything up to `seq` was looked at).
    pub(crate) fn log_set_watermark(&self, remote: &str, seq: i64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE sync_remotes SET pushed_seq=MAX(pushed_seq, ?2) WHERE name=?1",
                params![remote, seq],
            )
            .map_err(self.sq())?;
        Ok(())
    }

    // ------------------------------------------------------------ push

    /// Whether revision `hlc` of box `annotation` was written by this client and not recorded
    /// as pushed yet: a pack of this client that holds it is one an interrupted push wrote.
    pub(crate) fn log_is_unrecorded_own(&self, annotation: Uuid, hlc: i64) -> Result<bool> {
        self.conn
            .prepare_cached(
                "SELECT 1 FROM revisions v JOIN annotations a ON a.id=v.ann
                 WHERE a.uuid=?1 AND v.client=?2 AND v.hlc=?3
                   AND NOT EXISTS (SELECT 1 FROM sync_revs s WHERE s.rev=v.seq)",
            )
            .and_then(|mut stmt| {
                stmt.exists(params![annotation.as_bytes().as_slice(), self.client, hlc])
            })
            .map_err(self.sq())
    }

    /// This client's revisions after `pushed_seq` not pushed yet, in order, with their parents
    /// and the roster's verdict; plus the highest seq looked at (the next watermark).
    pub(crate) fn log_unpushed(
        &self,
        pushed_seq: i64,
        judge: Judge<'_>,
    ) -> Result<(Vec<OutRevision>, i64)> {
        unpushed(&self.conn, self.client, pushed_seq, judge).map_err(self.sq())
    }

    /// What this file has not yet put in `remote`'s image list (its images with a known content
    /// hash) and coverage (of its shared runs, processed here), with the rows to mark once sent.
    pub(crate) fn log_unshared_lists(&self, remote: &str) -> Result<UnsharedLists> {
        let image_ref = |r: &rusqlite::Row<'_>, at: usize| -> rusqlite::Result<ImageRef> {
            Ok(ImageRef {
                hash: r.get(at)?,
                path: r.get(at + 1)?,
                width: r.get(at + 2)?,
                height: r.get(at + 3)?,
            })
        };
        let mut out = UnsharedLists::default();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, hash, path, width, height FROM images i WHERE hash IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM sync_shared s WHERE s.remote=?1 AND s.kind=0 AND s.a=i.id)
                 ORDER BY id",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([remote], |r| Ok((r.get::<_, i64>(0)?, image_ref(r, 1)?)))
            .map_err(self.sq())?;
        out.images = rows.collect::<rusqlite::Result<_>>().map_err(self.sq())?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT ri.run, ri.image, r.uuid, r.name, r.model_hash, r.settings_hash,
                        i.hash, i.path, i.width, i.height
                 FROM run_images ri JOIN runs r ON r.id=ri.run JOIN images i ON i.id=ri.image
                 WHERE r.shared=1 AND ri.worker IS NULL
                   AND NOT EXISTS (SELECT 1 FROM sync_shared s
                                   WHERE s.remote=?1 AND s.kind=1 AND s.a=ri.run AND s.b=ri.image)
                 ORDER BY ri.run, ri.done_ms, ri.image",
            )
            .map_err(self.sq())?;
        let mut rows = stmt.query([remote]).map_err(self.sq())?;
        while let Some(r) = rows.next().map_err(self.sq())? {
            let run_row: i64 = r.get(0).map_err(self.sq())?;
            let image_row: i64 = r.get(1).map_err(self.sq())?;
            let image = image_ref(r, 6).map_err(self.sq())?;
            if out
                .coverage
                .last()
                .is_none_or(|(row, _, _)| *row != run_row)
            {
                let run = NamedRef {
                    id: uuid_text(&r.get::<_, String>(2).map_err(self.sq())?),
                    name: r.get(3).map_err(self.sq())?,
                };
                out.coverage.push((
                    run_row,
                    RunCoverage {
                        run,
                        model_hash: r.get(4).map_err(self.sq())?,
                        settings_hash: r.get(5).map_err(self.sq())?,
                        images: Vec::new(),
                    },
                    Vec::new(),
                ));
            }
            let (_, coverage, rows) = out.coverage.last_mut().expect("pushed above");
            coverage.images.push(image);
            rows.push(image_row);
        }
        Ok(out)
    }

    /// Marks images and coverage as put in `remote`'s lists.
    pub(crate) fn log_mark_shared(
        &mut self,
        remote: &str,
        images: &[i64],
        coverage: &[(i64, i64)],
    ) -> Result<()> {
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sq)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO sync_shared(remote, kind, a, b) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sq)?;
            for id in images {
                ins.execute(params![remote, 0, id, 0]).map_err(sq)?;
            }
            for (run, image) in coverage {
                ins.execute(params![remote, 1, run, image]).map_err(sq)?;
            }
        }
        tx.commit().map_err(sq)
    }

    /// Records a pack written to `remote`: its place in the chain and each revision's parent.
    pub(crate) fn log_record_push(
        &mut self,
        remote: &str,
        seq: u64,
        hash: &str,
        revisions: &[OutRevision],
        signer: &str,
        judge: Judge<'_>,
    ) -> Result<()> {
        let client = self.client_uuid;
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Sqlite {
                path: path.clone(),
                source,
            })?;
        record_push(&tx, remote, client, seq, hash, revisions, signer, judge)
            .and_then(|()| tx.commit())
            .map_err(|source| StoreError::Sqlite { path, source })
    }

    // ------------------------------------------------------------ pull

    /// Records a refused pack (or revision) so `loupe sync status` can show it.
    pub(crate) fn log_record_refusal(&self, refusal: &SyncRefusal) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO sync_refusals(remote, client, seq, annotation, hlc, signer, reason, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(remote, client, seq, annotation, hlc) DO UPDATE SET reason=excluded.reason, signer=excluded.signer",
                params![
                    refusal.remote,
                    refusal.client.to_string(),
                    refusal.seq as i64,
                    refusal.annotation.map(|a| a.to_string()).unwrap_or_default(),
                    refusal.hlc.unwrap_or(0),
                    refusal.signer,
                    refusal.reason,
                    refusal.at_ms
                ],
            )
            .map_err(self.sq())?;
        Ok(())
    }

    /// Applies a verified pack in one transaction: every revision or none (a refused pack or a
    /// failure leaves nothing). Revisions `rules.refusal` refuses are recorded, not applied.
    pub(crate) fn log_apply_pack<E>(
        &mut self,
        remote: &str,
        pack: &IncomingPack<'_>,
        rules: &IncomingRules<'_, E>,
    ) -> std::result::Result<Applied, IncomingError<E>> {
        let local_client = self.client_uuid;
        let root = self.root.clone();
        let path = self.path.clone();
        let sq = |source| {
            IncomingError::Store(StoreError::Sqlite {
                path: path.clone(),
                source,
            })
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sq)?;
        let applied = match apply_in(&tx, &root, remote, pack, rules, local_client) {
            Ok(applied) => applied,
            Err(ApplyFail::Sql(e)) => return Err(sq(e)),
            Err(ApplyFail::Incoming(e)) => return Err(e),
        };
        tx.commit().map_err(sq)?;
        Ok(applied)
    }

    // ------------------------------------------------------------ conflicts and status

    /// Boxes in conflict, with their heads labelled A, B, … in (hlc, client) order.
    pub(crate) fn log_conflicts(&self) -> Result<Vec<Conflict>> {
        conflicts(&self.conn).map_err(self.sq())
    }

    /// How many boxes are in conflict.
    pub(crate) fn log_conflict_count(&self) -> Result<usize> {
        self.conn
            .query_row("SELECT COUNT(*) FROM conflicts", [], |r| r.get::<_, i64>(0))
            .map(|n| usize::try_from(n).unwrap_or(0))
            .map_err(self.sq())
    }

    /// The revision a box's current value comes from.
    pub(crate) fn log_current_revision(&self, annotation: Uuid) -> Result<(String, i64)> {
        self.conn
            .query_row(
                "SELECT cl.uuid, v.hlc FROM annotations a JOIN revisions v ON v.seq=a.rev
                 JOIN clients cl ON cl.id=v.client WHERE a.uuid=?1",
                [annotation.as_bytes().as_slice()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.sq())
    }

    /// Writes a conflict resolution: a new revision of `annotation` by the current user with
    /// the value of head `take` verbatim, marked as resolving every head in `heads`, and updates
    /// the box's current value and conflict state.
    ///
    /// It is written here rather than through `Project::apply` on purpose: choosing one of two
    /// revisions that were each legal where they were written is not a state transition, and the
    /// review rules would refuse some choices (an approved head against a moved one). Who may
    /// resolve is the roster's business (a reviewer or lead), checked by the caller and by every
    /// client at merge.
    pub(crate) fn log_write_resolution(
        &mut self,
        annotation: Uuid,
        take: RevId,
        heads: &[RevId],
        note: &str,
        judge: Judge<'_>,
    ) -> Result<()> {
        let (author, client) = (self.user, self.client);
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Sqlite {
                path: path.clone(),
                source,
            })?;
        write_resolution(&tx, author, client, annotation, take, heads, note, judge)
            .and_then(|()| tx.commit())
            .map_err(|source| StoreError::Sqlite { path, source })
    }

    /// Refusals recorded from `remote` (all remotes with `None`), newest first.
    pub(crate) fn log_refusals(&self, remote: Option<&str>) -> Result<Vec<SyncRefusal>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT remote, client, seq, annotation, hlc, signer, reason, at_ms FROM sync_refusals
                 WHERE ?1 IS NULL OR remote=?1 ORDER BY at_ms DESC, id DESC",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([remote], |r| {
                let annotation: String = r.get(3)?;
                let hlc: i64 = r.get(4)?;
                Ok(SyncRefusal {
                    remote: r.get(0)?,
                    client: uuid_text(&r.get::<_, String>(1)?),
                    seq: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                    annotation: Uuid::parse_str(&annotation).ok(),
                    hlc: (hlc != 0).then_some(hlc),
                    signer: r.get(5)?,
                    reason: r.get(6)?,
                    at_ms: r.get(7)?,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// How many of this client's shared revisions after `pushed_seq` are waiting to be pushed.
    pub(crate) fn log_pending_count(&self, pushed_seq: i64) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM revisions v WHERE v.client=?1 AND v.seq>?2
                   AND NOT EXISTS (SELECT 1 FROM sync_revs s WHERE s.rev=v.seq)
                   AND (v.state<>'proposed' OR EXISTS (SELECT 1 FROM revisions w WHERE w.ann=v.ann AND w.seq<v.seq AND w.state<>'proposed')
                        OR EXISTS (SELECT 1 FROM runs r WHERE r.id=v.run AND r.shared=1))",
                params![self.client, pushed_seq],
                |r| r.get(0),
            )
            .map_err(self.sq())?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// (packs pushed, packs pulled, revisions pulled) for `remote`.
    pub(crate) fn log_pack_counts(&self, remote: &str) -> Result<(u64, u64, u64)> {
        let (pushed, pulled, revs): (i64, i64, i64) = self
            .conn
            .query_row(
                "SELECT COALESCE(SUM(pushed), 0), COALESCE(SUM(1 - pushed), 0), COALESCE(SUM(CASE WHEN pushed=0 THEN revisions ELSE 0 END), 0)
                 FROM sync_packs WHERE remote=?1",
                [remote],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(self.sq())?;
        let u = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok((u(pushed), u(pulled), u(revs)))
    }

    /// A hash of the shared state: every shared box's current value (by content: image hash,
    /// class name) and the conflict set. Clients that have seen the same packs agree on it.
    pub(crate) fn log_state_hash(&self) -> Result<String> {
        state_hash(&self.conn).map_err(self.sq())
    }

    // ------------------------------------------------------------ image files

    /// (content hash, path) of every image whose file is here, by path: what a push uploads.
    pub(crate) fn log_images_present(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT hash, path FROM images WHERE hash IS NOT NULL AND missing=0 ORDER BY path",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.sq())?;
        rows.collect::<Result<_, _>>().map_err(self.sq())
    }

    /// (image id, content hash, path) of every image whose file is missing but whose content
    /// is known, by path: what a pull may fetch.
    pub(crate) fn log_images_missing(&self) -> Result<Vec<(Uuid, String, String)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT uuid, hash, path FROM images WHERE hash IS NOT NULL AND missing=1 ORDER BY path",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((uuid_text(&r.get::<_, String>(0)?), r.get(1)?, r.get(2)?))
            })
            .map_err(self.sq())?;
        rows.collect::<Result<_, _>>().map_err(self.sq())
    }

    /// Marks an image's file as missing again (a worker removed the copy it fetched).
    pub(crate) fn log_image_gone(&self, image: Uuid) -> Result<()> {
        self.conn
            .execute(
                "UPDATE images SET missing=1 WHERE uuid=?1",
                params![image.to_string()],
            )
            .map_err(self.sq())?;
        Ok(())
    }

    /// Marks an image's file as present with its size.
    pub(crate) fn log_image_found(&self, image: Uuid, bytes: u64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE images SET missing=0, bytes=?2 WHERE uuid=?1",
                params![image.to_string(), i64::try_from(bytes).unwrap_or(i64::MAX)],
            )
            .map_err(self.sq())?;
        Ok(())
    }
}

fn unpushed(
    conn: &Connection,
    client_row: i64,
    pushed_seq: i64,
    judge: Judge<'_>,
) -> rusqlite::Result<(Vec<OutRevision>, i64)> {
    let watermark: i64 =
        conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM revisions", [], |r| {
            r.get(0)
        })?;
    let mut stmt = conn.prepare(
        "SELECT v.seq, v.ann, a.uuid, u.uuid, u.name, v.hlc, v.op, i.hash, i.path, i.width, i.height,
                c.uuid, c.name, r.uuid, r.name, v.score, v.state, v.flags, v.deleted, v.note,
                v.x, v.y, v.w, v.h, v.attributes
         FROM revisions v JOIN annotations a ON a.id=v.ann JOIN users u ON u.id=v.author
         JOIN images i ON i.id=v.image JOIN classes c ON c.id=v.class LEFT JOIN runs r ON r.id=v.run
         WHERE v.client=?1 AND v.seq>?2 AND v.seq<=?3
           AND NOT EXISTS (SELECT 1 FROM sync_revs s WHERE s.rev=v.seq AND s.pulled=1)
         ORDER BY v.seq",
    )?;
    let rows = stmt.query_map(params![client_row, pushed_seq, watermark], |r| {
        let ann_blob: Vec<u8> = r.get(2)?;
        let run: Option<String> = r.get(13)?;
        let run_name: Option<String> = r.get(14)?;
        let score: Option<f64> = r.get(15)?;
        Ok(OutRevision {
            seq: r.get(0)?,
            ann: r.get(1)?,
            refused: None,
            revision: SharedRevision {
                annotation: Uuid::from_slice(&ann_blob).unwrap_or_default(),
                author: NamedRef {
                    id: uuid_text(&r.get::<_, String>(3)?),
                    name: r.get(4)?,
                },
                hlc: r.get(5)?,
                op: r.get(6)?,
                image: ImageRef {
                    hash: r.get(7)?,
                    path: r.get(8)?,
                    width: r.get(9)?,
                    height: r.get(10)?,
                },
                class: NamedRef {
                    id: uuid_text(&r.get::<_, String>(11)?),
                    name: r.get(12)?,
                },
                bbox: BBox::new(r.get(20)?, r.get(21)?, r.get(22)?, r.get(23)?),
                run: run.map(|id| {
                    (
                        NamedRef {
                            id: uuid_text(&id),
                            name: run_name.unwrap_or_default(),
                        },
                        score.unwrap_or(0.0) as f32,
                    )
                }),
                state: ReviewState::parse(&r.get::<_, String>(16)?)
                    .unwrap_or(ReviewState::Submitted),
                flags: BoxFlags::from_bits(r.get::<_, i64>(17)?.try_into().unwrap_or(0)),
                deleted: r.get::<_, i64>(18)? != 0,
                attributes: attributes_from_column(r, 24)?,
                note: r.get(19)?,
                parent: None,
                resolves: Vec::new(),
            },
        })
    })?;
    let mut out = rows.collect::<Result<Vec<_>, _>>()?;
    drop(stmt);
    let anns: Vec<i64> = {
        let set: HashSet<i64> = out.iter().map(|o| o.ann).collect();
        set.into_iter().collect()
    };
    let histories = histories(conn, &anns)?;
    let mut nodes_by_seq: HashMap<i64, Node> = HashMap::with_capacity(out.len());
    for history in histories.values() {
        for node in merge::walk(history, judge) {
            if node.pending {
                nodes_by_seq.insert(node.seq, node);
            }
        }
    }
    out.retain_mut(|o| {
        let Some(node) = nodes_by_seq.remove(&o.seq) else {
            return false;
        };
        if !node.shared {
            return false;
        }
        o.revision.parent = node.parent;
        o.revision.resolves = node.resolves;
        o.refused = node.refused;
        true
    });
    Ok((out, watermark))
}

#[allow(clippy::too_many_arguments)]
fn record_push(
    tx: &Transaction<'_>,
    remote: &str,
    client: Uuid,
    seq: u64,
    hash: &str,
    revisions: &[OutRevision],
    signer: &str,
    judge: Judge<'_>,
) -> rusqlite::Result<()> {
    let mut refresh = Vec::new();
    {
        let mut ins = tx.prepare_cached(
            "INSERT OR REPLACE INTO sync_revs(rev, parent_client, parent_hlc, resolves, pulled, refused)
             VALUES (?1, ?2, ?3, ?4, 0, ?5)",
        )?;
        let mut refusal = tx.prepare_cached(
            "INSERT OR IGNORE INTO sync_refusals(remote, client, seq, annotation, hlc, signer, reason, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for o in revisions {
            let r = &o.revision;
            ins.execute(params![
                o.seq,
                r.parent.map(|p| p.client.to_string()),
                r.parent.map(|p| p.hlc),
                rev_ids_json(&r.resolves),
                o.refused
            ])?;
            if let Some(reason) = &o.refused {
                refusal.execute(params![
                    remote,
                    client.to_string(),
                    seq as i64,
                    r.annotation.to_string(),
                    r.hlc,
                    signer,
                    reason,
                    now_ms()
                ])?;
            }
            if o.refused.is_some() || !r.resolves.is_empty() {
                refresh.push(o.ann);
            }
        }
        tx.execute(
            "DELETE FROM sync_resolutions WHERE rev IN (SELECT rev FROM sync_revs)",
            [],
        )?;
        // Boxes in conflict that this client edited: their heads changed.
        let mut in_conflict = tx.prepare_cached("SELECT 1 FROM conflicts WHERE ann=?1")?;
        for o in revisions {
            if in_conflict.exists([o.ann])? {
                refresh.push(o.ann);
            }
        }
    }
    tx.execute(
        "INSERT INTO sync_packs(remote, client, seq, hash, revisions, pushed, done_ms) VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)",
        params![remote, client.to_string(), seq as i64, hash, revisions.len() as i64, now_ms()],
    )?;
    refresh.sort_unstable();
    refresh.dedup();
    refresh_boxes(tx, &refresh, judge)?;
    Ok(())
}

fn conflicts(conn: &Connection) -> rusqlite::Result<Vec<Conflict>> {
    let mut stmt = conn.prepare(
        "SELECT k.ann, a.uuid, i.path, k.heads, k.since_ms FROM conflicts k
         JOIN annotations a ON a.id=k.ann JOIN images i ON i.id=a.image ORDER BY k.since_ms, a.uuid",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    let mut head_stmt = conn.prepare_cached(
        "SELECT u.name, c.name, v.x, v.y, v.w, v.h, v.state, v.deleted FROM revisions v
         JOIN clients cl ON cl.id=v.client JOIN users u ON u.id=v.author JOIN classes c ON c.id=v.class
         WHERE v.ann=?1 AND cl.uuid=?2 AND v.hlc=?3 LIMIT 1",
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (ann, uuid, image, heads, since_ms) = row?;
        let mut conflict = Conflict {
            annotation: Uuid::from_slice(&uuid).unwrap_or_default(),
            image,
            heads: Vec::new(),
            since_ms,
        };
        for (i, h) in merge::parse_heads(&heads).into_iter().enumerate() {
            let label = label(i);
            let head = head_stmt
                .query_row(params![ann, h.client.to_string(), h.hlc], |r| {
                    Ok(ConflictHead {
                        label: label.clone(),
                        client: h.client,
                        hlc: h.hlc,
                        author: r.get(0)?,
                        class: r.get(1)?,
                        bbox: BBox::new(r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
                        state: ReviewState::parse(&r.get::<_, String>(6)?)
                            .unwrap_or(ReviewState::Submitted),
                        deleted: r.get::<_, i64>(7)? != 0,
                    })
                })
                .optional()?;
            if let Some(head) = head {
                conflict.heads.push(head);
            }
        }
        out.push(conflict);
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn write_resolution(
    tx: &Transaction<'_>,
    author: i64,
    client_row: i64,
    annotation: Uuid,
    take: RevId,
    heads: &[RevId],
    note: &str,
    judge: Judge<'_>,
) -> rusqlite::Result<()> {
    let (ann, head_seq): (i64, i64) = tx.query_row(
        "SELECT v.ann, v.seq FROM revisions v JOIN annotations a ON a.id=v.ann
         JOIN clients cl ON cl.id=v.client WHERE a.uuid=?1 AND cl.uuid=?2 AND v.hlc=?3 LIMIT 1",
        params![
            annotation.as_bytes().as_slice(),
            take.client.to_string(),
            take.hlc
        ],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    // The clock rule of `store::Hlc`: after every revision this file holds.
    let last: i64 = tx.query_row("SELECT COALESCE(MAX(hlc), 0) FROM revisions", [], |r| {
        r.get(0)
    })?;
    let hlc = (now_ms() << 16).max(last + 1);
    tx.execute(
        "INSERT INTO revisions(ann, author, client, hlc, op, image, class, x, y, w, h, run, score, state, flags, deleted, note, attributes)
         SELECT ann, ?2, ?3, ?4, CASE WHEN deleted=1 THEN 'delete' ELSE 'update' END, image, class, x, y, w, h,
                run, score, state, flags, deleted, ?5, attributes
         FROM revisions WHERE seq=?1",
        params![head_seq, author, client_row, hlc, note],
    )?;
    let seq = tx.last_insert_rowid();
    tx.execute(
        "INSERT OR REPLACE INTO sync_resolutions(rev, resolves) VALUES (?1, ?2)",
        params![seq, merge::heads_json(heads)],
    )?;
    refresh_boxes(tx, &[ann], judge)?;
    Ok(())
}

fn state_hash(conn: &Connection) -> rusqlite::Result<String> {
    let mut stmt = conn.prepare(
        "SELECT a.uuid, v.hlc, cl.uuid, i.hash, i.path, c.name, v.x, v.y, v.w, v.h, r.uuid, v.score,
                v.state, v.flags, v.deleted, v.attributes
         FROM revisions v JOIN sync_revs s ON s.rev=v.seq AND s.refused IS NULL
         JOIN annotations a ON a.id=v.ann JOIN clients cl ON cl.id=v.client
         JOIN images i ON i.id=v.image JOIN classes c ON c.id=v.class LEFT JOIN runs r ON r.id=v.run
         ORDER BY a.uuid, v.hlc, cl.uuid",
    )?;
    let mut hasher = blake3::Hasher::new();
    let mut rows = stmt.query([])?;
    let mut pending: Option<(Vec<u8>, Vec<u8>)> = None;
    let mut boxes = 0u64;
    while let Some(r) = rows.next()? {
        let ann: Vec<u8> = r.get(0)?;
        let mut line = Vec::with_capacity(200);
        line.extend_from_slice(&ann);
        line.extend_from_slice(&r.get::<_, i64>(1)?.to_le_bytes());
        line.extend_from_slice(r.get::<_, String>(2)?.as_bytes());
        match r.get::<_, Option<String>>(3)? {
            Some(h) => line.extend_from_slice(h.as_bytes()),
            None => line.extend_from_slice(format!("path:{}", r.get::<_, String>(4)?).as_bytes()),
        }
        line.push(0);
        line.extend_from_slice(r.get::<_, String>(5)?.as_bytes());
        line.push(0);
        for i in 6..10 {
            line.extend_from_slice(&r.get::<_, f64>(i)?.to_bits().to_le_bytes());
        }
        line.extend_from_slice(
            r.get::<_, Option<String>>(10)?
                .unwrap_or_default()
                .as_bytes(),
        );
        line.extend_from_slice(
            &r.get::<_, Option<f64>>(11)?
                .unwrap_or(-1.0)
                .to_bits()
                .to_le_bytes(),
        );
        line.extend_from_slice(r.get::<_, String>(12)?.as_bytes());
        line.extend_from_slice(&r.get::<_, i64>(13)?.to_le_bytes());
        line.extend_from_slice(&r.get::<_, i64>(14)?.to_le_bytes());
        // Only a box with attributes hashes them, so the state of boxes without any hashes
        // as it did before attributes existed.
        if let Some(attributes) = r.get::<_, Option<String>>(15)? {
            line.push(0);
            line.extend_from_slice(attributes.as_bytes());
        }
        // Rows are sorted by (box, hlc, client): the last row of a box is its winner.
        if let Some((prev_ann, prev_line)) = pending.take()
            && prev_ann != ann
        {
            hasher.update(&prev_line);
            boxes += 1;
        }
        pending = Some((ann, line));
    }
    if let Some((_, line)) = pending {
        hasher.update(&line);
        boxes += 1;
    }
    drop(rows);
    hasher.update(b"conflicts");
    let mut stmt = conn.prepare(
        "SELECT a.uuid, k.heads FROM conflicts k JOIN annotations a ON a.id=k.ann ORDER BY a.uuid",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        hasher.update(&r.get::<_, Vec<u8>>(0)?);
        hasher.update(r.get::<_, String>(1)?.as_bytes());
    }
    hasher.update(&boxes.to_le_bytes());
    Ok(hasher.finalize().to_hex().to_string())
}

fn label(i: usize) -> String {
    let letters = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    match letters.get(i) {
        Some(c) => char::from(*c).to_string(),
        None => format!("H{i}"),
    }
}

/// The histories of the given boxes, by annotation row id, each in local order.
fn histories(conn: &Connection, anns: &[i64]) -> rusqlite::Result<HashMap<i64, Vec<HistoryRow>>> {
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS sync_touched(ann INTEGER PRIMARY KEY); DELETE FROM temp.sync_touched;",
    )?;
    {
        let mut ins =
            conn.prepare_cached("INSERT OR IGNORE INTO temp.sync_touched(ann) VALUES (?1)")?;
        for a in anns {
            ins.execute([a])?;
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT v.ann, v.seq, v.hlc, cl.uuid, v.state, s.rev IS NOT NULL, s.parent_client, s.parent_hlc,
                s.resolves, s.refused IS NOT NULL, p.resolves, COALESCE(ru.shared, 0)
         FROM temp.sync_touched t JOIN revisions v ON v.ann=t.ann JOIN clients cl ON cl.id=v.client
         LEFT JOIN sync_revs s ON s.rev=v.seq LEFT JOIN sync_resolutions p ON p.rev=v.seq
         LEFT JOIN runs ru ON ru.id=v.run
         ORDER BY v.ann, v.seq",
    )?;
    let mut out: HashMap<i64, Vec<HistoryRow>> = HashMap::with_capacity(anns.len());
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let ann: i64 = r.get(0)?;
        let has_meta: bool = r.get(5)?;
        let meta = if has_meta {
            let parent_client: Option<String> = r.get(6)?;
            let parent_hlc: Option<i64> = r.get(7)?;
            let resolves: Option<String> = r.get(8)?;
            Some(RevMeta {
                parent: parent_client.zip(parent_hlc).map(|(c, hlc)| RevId {
                    client: uuid_text(&c),
                    hlc,
                }),
                resolves: resolves
                    .as_deref()
                    .map(merge::parse_heads)
                    .unwrap_or_default(),
                refused: r.get(9)?,
            })
        } else {
            None
        };
        let pending_resolves: Option<String> = r.get(10)?;
        out.entry(ann).or_default().push(HistoryRow {
            seq: r.get(1)?,
            id: RevId {
                hlc: r.get(2)?,
                client: uuid_text(&r.get::<_, String>(3)?),
            },
            state: ReviewState::parse(&r.get::<_, String>(4)?).unwrap_or(ReviewState::Submitted),
            meta,
            pending_resolves: pending_resolves
                .as_deref()
                .map(merge::parse_heads)
                .unwrap_or_default(),
            shared_run: r.get::<_, i64>(11)? != 0,
        });
    }
    Ok(out)
}

/// Recomputes the current value and the conflict state of the given boxes. Returns how many
/// boxes newly entered conflict.
fn refresh_boxes(conn: &Connection, anns: &[i64], judge: Judge<'_>) -> rusqlite::Result<usize> {
    if anns.is_empty() {
        return Ok(0);
    }
    let histories = histories(conn, anns)?;
    let mut set_current = conn.prepare_cached(
        "UPDATE annotations SET image=v.image, class=v.class, x=v.x, y=v.y, w=v.w, h=v.h, run=v.run,
            score=v.score, state=v.state, flags=v.flags, deleted=v.deleted, attributes=v.attributes,
            rev=v.seq
         FROM revisions v WHERE v.seq=?2 AND annotations.id=?1 AND annotations.rev IS NOT ?2",
    )?;
    let mut upsert = conn.prepare_cached(
        "INSERT INTO conflicts(ann, heads, since_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT(ann) DO UPDATE SET heads=excluded.heads",
    )?;
    let mut exists = conn.prepare_cached("SELECT 1 FROM conflicts WHERE ann=?1")?;
    let mut delete = conn.prepare_cached("DELETE FROM conflicts WHERE ann=?1")?;
    let mut new_conflicts = 0;
    for (ann, history) in &histories {
        let nodes = merge::walk(history, judge);
        if let Some(w) = merge::winner(&nodes) {
            set_current.execute(params![ann, w.seq])?;
        }
        let heads = merge::heads(&nodes);
        if heads.len() > 1 {
            if !exists.exists([ann])? {
                new_conflicts += 1;
            }
            upsert.execute(params![ann, merge::heads_json(&heads), now_ms()])?;
        } else {
            delete.execute([ann])?;
        }
    }
    Ok(new_conflicts)
}

/// Row ids for the names and UUIDs of one pack, each resolved once.
#[derive(Default)]
struct Resolved {
    images: HashMap<ImageRef, i64>,
    classes: HashMap<NamedRef, i64>,
    runs: HashMap<NamedRef, i64>,
    users: HashMap<NamedRef, i64>,
}

fn cached<T: Clone + Eq + std::hash::Hash>(
    cache: &mut HashMap<T, i64>,
    item: &T,
    resolve: impl FnOnce() -> rusqlite::Result<i64>,
) -> rusqlite::Result<i64> {
    if let Some(id) = cache.get(item) {
        return Ok(*id);
    }
    let id = resolve()?;
    cache.insert(item.clone(), id);
    Ok(id)
}

/// Finds the image a pack names (by content hash, then path) or adds it as a placeholder.
fn image_row(tx: &Transaction<'_>, root: &Path, img: &ImageRef) -> rusqlite::Result<i64> {
    if let Some(hash) = &img.hash
        && let Some(id) = tx
            .prepare_cached("SELECT id FROM images WHERE hash=?1")?
            .query_row([hash], |r| r.get::<_, i64>(0))
            .optional()?
    {
        return Ok(id);
    }
    let by_path: Option<(i64, Option<String>)> = tx
        .prepare_cached("SELECT id, hash FROM images WHERE path=?1")?
        .query_row([&img.path], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let mut path = img.path.clone();
    if let Some((id, local_hash)) = by_path {
        match (&img.hash, local_hash) {
            (None, _) => return Ok(id),
            (Some(h), None) => {
                tx.execute("UPDATE images SET hash=?2 WHERE id=?1", params![id, h])?;
                return Ok(id);
            }
            // The path holds other content here: keep the remote image apart.
            (Some(h), Some(_)) => path = format!("sync-conflict/{h}/{}", img.path),
        }
    }
    // The file may be here already (same images, added later, or a shared folder).
    let file = root.join(&path);
    let on_disk = std::fs::read(&file).ok().filter(|bytes| {
        img.hash
            .as_deref()
            .is_none_or(|h| blake3::hash(bytes).to_hex().as_str() == h)
    });
    let bytes = on_disk.as_ref().map_or(0, |b| b.len() as i64);
    tx.execute(
        "INSERT INTO images(uuid, hash, path, width, height, bytes, missing, external_id, added_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8)",
        params![
            Uuid::now_v7().to_string(),
            img.hash,
            path,
            img.width,
            img.height,
            bytes,
            i64::from(on_disk.is_none()),
            now_ms()
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

fn class_row(tx: &Transaction<'_>, class: &NamedRef) -> rusqlite::Result<i64> {
    let found: Option<i64> = tx
        .prepare_cached("SELECT id FROM classes WHERE uuid=?1 UNION ALL SELECT id FROM classes WHERE name=?2 LIMIT 1")?
        .query_row(params![class.id.to_string(), class.name], |r| r.get(0))
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    let n: i64 = tx.query_row("SELECT COUNT(*) FROM classes", [], |r| r.get(0))?;
    let color = PALETTE[usize::try_from(n).unwrap_or(0) % PALETTE.len()];
    tx.execute(
        "INSERT INTO classes(uuid, name, color, ord) VALUES (?1, ?2, ?3, ?4)",
        params![class.id.to_string(), class.name, color, n],
    )?;
    Ok(tx.last_insert_rowid())
}

fn run_row(tx: &Transaction<'_>, run: &NamedRef) -> rusqlite::Result<i64> {
    if let Some(id) = tx
        .prepare_cached("SELECT id FROM runs WHERE uuid=?1")?
        .query_row([run.id.to_string()], |r| r.get(0))
        .optional()?
    {
        return Ok(id);
    }
    let taken: bool = tx
        .prepare_cached("SELECT 1 FROM runs WHERE name=?1")?
        .exists([&run.name])?;
    let name = if taken || run.name.is_empty() {
        format!("{} ({})", run.name, merge::short(run.id))
    } else {
        run.name.clone()
    };
    tx.execute(
        "INSERT INTO runs(uuid, name, kind, settings, started_ms) VALUES (?1, ?2, 'remote', '{}', ?3)",
        params![run.id.to_string(), name, now_ms()],
    )?;
    Ok(tx.last_insert_rowid())
}

fn user_row(
    tx: &Transaction<'_>,
    user: &NamedRef,
    role_of: &dyn Fn(Uuid) -> Role,
) -> rusqlite::Result<i64> {
    if let Some(id) = tx
        .prepare_cached("SELECT id FROM users WHERE uuid=?1")?
        .query_row([user.id.to_string()], |r| r.get(0))
        .optional()?
    {
        return Ok(id);
    }
    tx.execute(
        "INSERT INTO users(uuid, name, role, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![
            user.id.to_string(),
            user.name,
            super::users::stored_role(role_of(user.id)),
            now_ms()
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

/// The image list and the runs' coverage of an incoming pack, in its transaction.
fn apply_lists<E>(
    tx: &Transaction<'_>,
    root: &Path,
    remote: &str,
    pack: &IncomingPack<'_>,
    rules: &IncomingRules<'_, E>,
    resolved: &mut Resolved,
    applied: &mut Applied,
) -> rusqlite::Result<()> {
    let mut shared = tx.prepare_cached(
        "INSERT OR IGNORE INTO sync_shared(remote, kind, a, b) VALUES (?1, ?2, ?3, ?4)",
    )?;
    if !pack.listed.is_empty() {
        if let Some(reason) = &rules.listing_refusal {
            let at_ms = now_ms();
            tx.execute(
                "INSERT OR IGNORE INTO sync_refusals(remote, client, seq, annotation, hlc, signer, reason, at_ms)
                 VALUES (?1, ?2, ?3, 'listed images', 0, ?4, ?5, ?6)",
                params![remote, pack.client.to_string(), pack.seq as i64, pack.signer, reason, at_ms],
            )?;
            applied.refused.push(SyncRefusal {
                remote: remote.to_owned(),
                client: pack.client,
                seq: pack.seq,
                annotation: None,
                hlc: None,
                signer: pack.signer.to_owned(),
                reason: reason.clone(),
                at_ms,
            });
        } else {
            for img in pack.listed {
                let id = cached(&mut resolved.images, img, || image_row(tx, root, img))?;
                shared.execute(params![remote, 0, id, 0])?;
                applied.listed += 1;
            }
        }
    }
    if pack.covered.is_empty() {
        return Ok(());
    }
    let worker = match &pack.signer_member {
        Some(m) => Some(cached(&mut resolved.users, m, || {
            user_row(tx, m, rules.role_of)
        })?),
        None => None,
    };
    let mut set_hashes = tx.prepare_cached(
        "UPDATE runs SET model_hash=COALESCE(model_hash, ?2), settings_hash=COALESCE(settings_hash, ?3),
            shared=1 WHERE id=?1",
    )?;
    let mut cover = tx.prepare_cached(
        "INSERT OR IGNORE INTO run_images(run, image, decode_ms, infer_ms, boxes, done_ms, worker)
         VALUES (?1, ?2, NULL, NULL,
                 (SELECT COUNT(*) FROM annotations a WHERE a.run=?1 AND a.image=?2 AND a.deleted=0),
                 ?3, ?4)",
    )?;
    for c in pack.covered {
        let run = cached(&mut resolved.runs, &c.run, || run_row(tx, &c.run))?;
        set_hashes.execute(params![run, c.model_hash, c.settings_hash])?;
        let now = now_ms();
        for img in &c.images {
            let image = cached(&mut resolved.images, img, || image_row(tx, root, img))?;
            cover.execute(params![run, image, now, worker])?;
            shared.execute(params![remote, 1, run, image])?;
            applied.covered += 1;
        }
    }
    Ok(())
}

fn apply_in<E>(
    tx: &Transaction<'_>,
    root: &Path,
    remote: &str,
    pack: &IncomingPack<'_>,
    rules: &IncomingRules<'_, E>,
    local_client: Uuid,
) -> std::result::Result<Applied, ApplyFail<E>> {
    let client_text = pack.client.to_string();
    tx.execute(
        "INSERT OR IGNORE INTO clients(uuid) VALUES (?1)",
        [&client_text],
    )?;
    let client_row: i64 = tx.query_row(
        "SELECT id FROM clients WHERE uuid=?1",
        [&client_text],
        |r| r.get(0),
    )?;
    let mut resolved = Resolved::default();
    let mut applied = Applied::default();
    let mut touched = Vec::new();
    let mut find_ann = tx.prepare_cached("SELECT id FROM annotations WHERE uuid=?1")?;
    let mut dup =
        tx.prepare_cached("SELECT 1 FROM revisions WHERE ann=?1 AND client=?2 AND hlc=?3")?;
    let mut ins_ann = tx.prepare_cached(
        "INSERT INTO annotations(uuid, image, class, x, y, w, h, run, score, state, flags, deleted, rev, attributes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 0, ?13)",
    )?;
    let mut ins_rev = tx.prepare_cached(
        "INSERT INTO revisions(ann, author, client, hlc, op, image, class, x, y, w, h, run, score, state, flags, deleted, note, attributes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
    )?;
    let mut set_rev = tx.prepare_cached("UPDATE annotations SET rev=?2 WHERE id=?1")?;
    let mut ins_meta = tx.prepare_cached(
        "INSERT INTO sync_revs(rev, parent_client, parent_hlc, resolves, pulled, refused) VALUES (?1, ?2, ?3, ?4, 1, NULL)",
    )?;
    let mut ins_refusal = tx.prepare_cached(
        "INSERT OR IGNORE INTO sync_refusals(remote, client, seq, annotation, hlc, signer, reason, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for r in pack.revisions {
        (rules.before_each)().map_err(|e| ApplyFail::Incoming(IncomingError::Stopped(e)))?;
        let ann_key = r.annotation.as_bytes().as_slice();
        let existing: Option<i64> = find_ann.query_row([ann_key], |row| row.get(0)).optional()?;
        if let Some(ann) = existing
            && dup.exists(params![ann, client_row, r.hlc])?
        {
            if pack.client == local_client {
                // Our own revision coming back (a restored project file): nothing to do.
                continue;
            }
            return Err(ApplyFail::Incoming(IncomingError::Replayed {
                annotation: r.annotation,
                hlc: r.hlc,
            }));
        }
        applied.max_hlc = applied.max_hlc.max(r.hlc);
        if let Some(reason) = (rules.refusal)(r) {
            let at_ms = now_ms();
            ins_refusal.execute(params![
                remote,
                client_text,
                pack.seq as i64,
                r.annotation.to_string(),
                r.hlc,
                pack.signer,
                reason,
                at_ms
            ])?;
            applied.refused.push(SyncRefusal {
                remote: remote.to_owned(),
                client: pack.client,
                seq: pack.seq,
                annotation: Some(r.annotation),
                hlc: Some(r.hlc),
                signer: pack.signer.to_owned(),
                reason,
                at_ms,
            });
            continue;
        }
        let image = cached(&mut resolved.images, &r.image, || {
            image_row(tx, root, &r.image)
        })?;
        let class = cached(&mut resolved.classes, &r.class, || class_row(tx, &r.class))?;
        let author = cached(&mut resolved.users, &r.author, || {
            user_row(tx, &r.author, rules.role_of)
        })?;
        let (run, score) = match &r.run {
            Some((run, score)) => (
                Some(cached(&mut resolved.runs, run, || run_row(tx, run))?),
                Some(f64::from(*score)),
            ),
            None => (None, None),
        };
        if !r.bbox.is_finite() {
            return Err(ApplyFail::Incoming(IncomingError::NonFinite {
                annotation: r.annotation,
            }));
        }
        let state = r.state.as_str();
        let flags = i64::from(r.flags.bits());
        let deleted = i64::from(r.deleted);
        let attributes = r.attributes.to_json();
        let ann = match existing {
            Some(ann) => {
                touched.push(ann);
                ann
            }
            None => {
                ins_ann.execute(params![
                    ann_key, image, class, r.bbox.x, r.bbox.y, r.bbox.w, r.bbox.h, run, score,
                    state, flags, deleted, attributes
                ])?;
                tx.last_insert_rowid()
            }
        };
        ins_rev.execute(params![
            ann, author, client_row, r.hlc, r.op, image, class, r.bbox.x, r.bbox.y, r.bbox.w,
            r.bbox.h, run, score, state, flags, deleted, r.note, attributes
        ])?;
        let seq = tx.last_insert_rowid();
        if existing.is_none() {
            set_rev.execute(params![ann, seq])?;
        }
        ins_meta.execute(params![
            seq,
            r.parent.map(|p| p.client.to_string()),
            r.parent.map(|p| p.hlc),
            rev_ids_json(&r.resolves)
        ])?;
        applied.revisions += 1;
    }
    drop((
        find_ann,
        dup,
        ins_ann,
        ins_rev,
        set_rev,
        ins_meta,
        ins_refusal,
    ));
    touched.sort_unstable();
    touched.dedup();
    applied.new_conflicts = refresh_boxes(tx, &touched, rules.judge)?;
    apply_lists(tx, root, remote, pack, rules, &mut resolved, &mut applied)?;
    tx.execute(
        "INSERT INTO sync_packs(remote, client, seq, hash, revisions, pushed, done_ms) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
        params![remote, client_text, pack.seq as i64, pack.hash, applied.revisions as i64, now_ms()],
    )?;
    Ok(applied)
}
