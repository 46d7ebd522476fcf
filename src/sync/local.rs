//! Sync's side of the project file: its tables (migration 3 of `store::schema`), reading local
//! revisions by names and UUIDs for packs, and writing pulled revisions into the log and the
//! current-state cache. Methods are prefixed `sync_` so they never collide with other modules'
//! `impl Project` blocks.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;
use uuid::Uuid;

use super::SyncError;
use super::merge::{self, HistoryRow, Node, RevMeta};
use super::pack::{ImageRef, NamedRef, Pack, PackProblem, PackRevision, RevId};
use super::roster::Roster;
use super::store::{Faults, RemoteSpec};
use crate::model::{BBox, BoxFlags, PALETTE, ReviewState, Role};
use crate::store::{Project, now_ms};

/// A configured remote.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RemoteInfo {
    pub name: String,
    pub spec: RemoteSpec,
    pub last_sync_ms: Option<i64>,
    /// The highest local revision seq the last push to it considered.
    pub pushed_seq: i64,
}

/// A pack or a revision that was refused, with the reason.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Refusal {
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
    pub revision: PackRevision,
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

/// What applying a pack did.
#[derive(Debug, Default)]
pub struct Applied {
    pub revisions: usize,
    pub refused: Vec<Refusal>,
    pub new_conflicts: usize,
    pub max_hlc: i64,
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

impl From<rusqlite::Error> for ApplyError {
    fn from(e: rusqlite::Error) -> Self {
        ApplyError::Failed(SyncError::Db(e))
    }
}

/// Decides refusals of local revisions not pushed yet: `(state, resolves)` → reason.
pub type Judge<'a> = &'a dyn Fn(ReviewState, bool) -> Option<String>;

fn uuid_text(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap_or_default()
}

fn rev_ids_json(ids: &[RevId]) -> Option<String> {
    (!ids.is_empty()).then(|| merge::heads_json(ids))
}

impl Project {
    // ------------------------------------------------------------ remotes and small state

    /// Adds (or replaces the URL and options of) a remote.
    pub fn sync_add_remote(&mut self, name: &str, spec: &RemoteSpec) -> Result<(), SyncError> {
        if name.is_empty() || name.contains('/') {
            return Err(SyncError::Config(format!("{name:?} is not a remote name")));
        }
        let options = serde_json::to_string(spec).expect("a remote spec always serializes");
        self.conn().execute(
            "INSERT INTO sync_remotes(name, url, options, created_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET url=excluded.url, options=excluded.options",
            params![name, spec.url, options, now_ms()],
        )?;
        Ok(())
    }

    pub fn sync_remove_remote(&mut self, name: &str) -> Result<bool, SyncError> {
        Ok(self
            .conn()
            .execute("DELETE FROM sync_remotes WHERE name=?1", [name])?
            > 0)
    }

    pub fn sync_remotes(&self) -> Result<Vec<RemoteInfo>, SyncError> {
        let mut stmt = self.conn().prepare(
            "SELECT name, url, options, last_sync_ms, pushed_seq FROM sync_remotes ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            let url: String = r.get(1)?;
            let options: String = r.get(2)?;
            let mut spec: RemoteSpec = serde_json::from_str(&options).unwrap_or_default();
            spec.url = url;
            Ok(RemoteInfo {
                name: r.get(0)?,
                spec,
                last_sync_ms: r.get(3)?,
                pushed_seq: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
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
        Ok(self
            .conn()
            .query_row(
                "SELECT value FROM sync_state WHERE remote=?1 AND key=?2",
                [remote, key],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn sync_state_set(&self, remote: &str, key: &str, value: &str) -> Result<(), SyncError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO sync_state(remote, key, value) VALUES (?1, ?2, ?3)",
            [remote, key, value],
        )?;
        Ok(())
    }

    /// Sets several keys in one transaction.
    pub fn sync_state_set_many(
        &mut self,
        remote: &str,
        pairs: &[(&str, String)],
    ) -> Result<(), SyncError> {
        let tx = self.conn_mut().transaction()?;
        for (key, value) in pairs {
            tx.execute(
                "INSERT OR REPLACE INTO sync_state(remote, key, value) VALUES (?1, ?2, ?3)",
                params![remote, key, value],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn sync_mark_synced(&self, remote: &str) -> Result<(), SyncError> {
        self.conn().execute(
            "UPDATE sync_remotes SET last_sync_ms=?2 WHERE name=?1",
            params![remote, now_ms()],
        )?;
        Ok(())
    }

    /// The last pack of `client` this project wrote to or applied from `remote`: (seq, hash).
    pub fn sync_chain_head(
        &self,
        remote: &str,
        client: Uuid,
    ) -> Result<(u64, Option<String>), SyncError> {
        let row: Option<(i64, String)> = self
            .conn()
            .query_row(
                "SELECT seq, hash FROM sync_packs WHERE remote=?1 AND client=?2 ORDER BY seq DESC LIMIT 1",
                params![remote, client.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(match row {
            Some((seq, hash)) => (u64::try_from(seq).unwrap_or(0), Some(hash)),
            None => (0, None),
        })
    }

    /// The sequence numbers of the packs this client pushed to `remote`.
    pub fn sync_pushed_seqs(&self, remote: &str) -> Result<Vec<u64>, SyncError> {
        let mut stmt = self.conn().prepare(
            "SELECT seq FROM sync_packs WHERE remote=?1 AND client=?2 AND pushed=1 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![remote, self.client_id().to_string()], |r| {
            r.get::<_, i64>(0)
        })?;
        Ok(rows
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter_map(|s| u64::try_from(s).ok())
            .collect())
    }

    fn sync_client_row(&self) -> Result<i64, SyncError> {
        Ok(self.conn().query_row(
            "SELECT id FROM clients WHERE uuid=?1",
            [self.client_id().to_string()],
            |r| r.get(0),
        )?)
    }

    // ------------------------------------------------------------ push

    /// This client's revisions not pushed to `remote` yet, in order, with their parents and the
    /// roster's verdict; plus the highest seq looked at (the next watermark).
    pub fn sync_unpushed(
        &self,
        remote: &RemoteInfo,
        judge: Judge<'_>,
    ) -> Result<(Vec<OutRevision>, i64), SyncError> {
        let client_row = self.sync_client_row()?;
        let conn = self.conn();
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
        let rows = stmt.query_map(params![client_row, remote.pushed_seq, watermark], |r| {
            let ann_blob: Vec<u8> = r.get(2)?;
            let run: Option<String> = r.get(13)?;
            let run_name: Option<String> = r.get(14)?;
            let score: Option<f64> = r.get(15)?;
            Ok(OutRevision {
                seq: r.get(0)?,
                ann: r.get(1)?,
                refused: None,
                revision: PackRevision {
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
                    attributes: crate::store::attributes_from_column(r, 24)?,
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
        let client = self.client_id();
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
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
        refresh_boxes(&tx, &refresh, judge)?;
        tx.commit()?;
        Ok(())
    }

    /// Moves the push watermark of `remote` (everything up to `seq` was looked at).
    pub fn sync_set_watermark(&self, remote: &str, seq: i64) -> Result<(), SyncError> {
        self.conn().execute(
            "UPDATE sync_remotes SET pushed_seq=MAX(pushed_seq, ?2) WHERE name=?1",
            params![remote, seq],
        )?;
        Ok(())
    }

    // ------------------------------------------------------------ pull

    /// Records a refused pack (or revision) so `loupe sync status` can show it.
    pub fn sync_record_refusal(&self, refusal: &Refusal) -> Result<(), SyncError> {
        self.conn().execute(
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
        )?;
        Ok(())
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
        let local_client = self.client_id();
        let root = self.root().to_path_buf();
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let applied = apply_in(
            &tx,
            &root,
            remote,
            pack,
            roster,
            judge,
            faults,
            local_client,
        )?;
        tx.commit()?;
        Ok(applied)
    }

    // ------------------------------------------------------------ conflicts and status

    /// Boxes in conflict, with their heads labelled A, B, … in (hlc, client) order.
    pub fn sync_conflicts(&self) -> Result<Vec<Conflict>, SyncError> {
        let conn = self.conn();
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

    /// Writes a conflict resolution: a new revision of `annotation` by the current user with
    /// the value of head `take` verbatim, marked as resolving every head in `heads`, and updates
    /// the box's current value and conflict state.
    ///
    /// It is written here rather than through `Project::apply` on purpose: choosing one of two
    /// revisions that were each legal where they were written is not a state transition, and the
    /// review rules would refuse some choices (an approved head against a moved one). Who may
    /// resolve is the roster's business (a reviewer or lead), checked by the caller and by every
    /// client at merge.
    pub fn sync_write_resolution(
        &mut self,
        annotation: Uuid,
        take: RevId,
        heads: &[RevId],
        note: &str,
        judge: Judge<'_>,
    ) -> Result<(), SyncError> {
        let client_row = self.sync_client_row()?;
        let me = self.current_user()?.id.to_string();
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let author: i64 =
            tx.query_row("SELECT id FROM users WHERE uuid=?1", [&me], |r| r.get(0))?;
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
        refresh_boxes(&tx, &[ann], judge)?;
        tx.commit()?;
        Ok(())
    }

    /// Refusals recorded from `remote` (all remotes with `None`), newest first.
    pub fn sync_refusals(&self, remote: Option<&str>) -> Result<Vec<Refusal>, SyncError> {
        let mut stmt = self.conn().prepare(
            "SELECT remote, client, seq, annotation, hlc, signer, reason, at_ms FROM sync_refusals
             WHERE ?1 IS NULL OR remote=?1 ORDER BY at_ms DESC, id DESC",
        )?;
        let rows = stmt.query_map([remote], |r| {
            let annotation: String = r.get(3)?;
            let hlc: i64 = r.get(4)?;
            Ok(Refusal {
                remote: r.get(0)?,
                client: uuid_text(&r.get::<_, String>(1)?),
                seq: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                annotation: Uuid::parse_str(&annotation).ok(),
                hlc: (hlc != 0).then_some(hlc),
                signer: r.get(5)?,
                reason: r.get(6)?,
                at_ms: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// How many of this client's shared revisions are waiting to be pushed to `remote`.
    pub fn sync_pending_count(&self, remote: &RemoteInfo) -> Result<u64, SyncError> {
        let client_row = self.sync_client_row()?;
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM revisions v WHERE v.client=?1 AND v.seq>?2
               AND NOT EXISTS (SELECT 1 FROM sync_revs s WHERE s.rev=v.seq)
               AND (v.state<>'proposed' OR EXISTS (SELECT 1 FROM revisions w WHERE w.ann=v.ann AND w.seq<v.seq AND w.state<>'proposed'))",
            params![client_row, remote.pushed_seq],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// (packs pushed, packs pulled, revisions pulled) for `remote`.
    pub fn sync_pack_counts(&self, remote: &str) -> Result<(u64, u64, u64), SyncError> {
        let (pushed, pulled, revs): (i64, i64, i64) = self.conn().query_row(
            "SELECT COALESCE(SUM(pushed), 0), COALESCE(SUM(1 - pushed), 0), COALESCE(SUM(CASE WHEN pushed=0 THEN revisions ELSE 0 END), 0)
             FROM sync_packs WHERE remote=?1",
            [remote],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let u = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok((u(pushed), u(pulled), u(revs)))
    }

    /// A hash of the shared state: every shared box's current value (by content: image hash,
    /// class name) and the conflict set. Clients that have seen the same packs agree on it.
    pub fn sync_state_hash(&self) -> Result<String, SyncError> {
        let conn = self.conn();
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
                None => {
                    line.extend_from_slice(format!("path:{}", r.get::<_, String>(4)?).as_bytes())
                }
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
}

fn label(i: usize) -> String {
    let letters = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    match letters.get(i) {
        Some(c) => char::from(*c).to_string(),
        None => format!("H{i}"),
    }
}

/// The histories of the given boxes, by annotation row id, each in local order.
fn histories(conn: &Connection, anns: &[i64]) -> Result<HashMap<i64, Vec<HistoryRow>>, SyncError> {
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
                s.resolves, s.refused IS NOT NULL, p.resolves
         FROM temp.sync_touched t JOIN revisions v ON v.ann=t.ann JOIN clients cl ON cl.id=v.client
         LEFT JOIN sync_revs s ON s.rev=v.seq LEFT JOIN sync_resolutions p ON p.rev=v.seq
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
        });
    }
    Ok(out)
}

/// Recomputes the current value and the conflict state of the given boxes. Returns how many
/// boxes newly entered conflict.
fn refresh_boxes(conn: &Connection, anns: &[i64], judge: Judge<'_>) -> Result<usize, SyncError> {
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
    resolve: impl FnOnce() -> Result<i64, SyncError>,
) -> Result<i64, SyncError> {
    if let Some(id) = cache.get(item) {
        return Ok(*id);
    }
    let id = resolve()?;
    cache.insert(item.clone(), id);
    Ok(id)
}

/// Finds the image a pack names (by content hash, then path) or adds it as a placeholder.
fn image_row(tx: &Transaction<'_>, root: &Path, img: &ImageRef) -> Result<i64, SyncError> {
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

fn class_row(tx: &Transaction<'_>, class: &NamedRef) -> Result<i64, SyncError> {
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

fn run_row(tx: &Transaction<'_>, run: &NamedRef) -> Result<i64, SyncError> {
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

fn user_row(tx: &Transaction<'_>, user: &NamedRef, roster: &Roster) -> Result<i64, SyncError> {
    if let Some(id) = tx
        .prepare_cached("SELECT id FROM users WHERE uuid=?1")?
        .query_row([user.id.to_string()], |r| r.get(0))
        .optional()?
    {
        return Ok(id);
    }
    let role = roster
        .members
        .iter()
        .find(|m| m.user == user.id)
        .map_or(Role::Annotator, |m| m.role);
    tx.execute(
        "INSERT INTO users(uuid, name, role, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![user.id.to_string(), user.name, role.as_str(), now_ms()],
    )?;
    Ok(tx.last_insert_rowid())
}

#[allow(clippy::too_many_arguments)]
fn apply_in(
    tx: &Transaction<'_>,
    root: &Path,
    remote: &str,
    pack: &Pack,
    roster: &Roster,
    judge: Judge<'_>,
    faults: Option<&Faults>,
    local_client: Uuid,
) -> Result<Applied, ApplyError> {
    let h = &pack.header;
    let client_text = h.client.to_string();
    tx.execute(
        "INSERT OR IGNORE INTO clients(uuid) VALUES (?1)",
        [&client_text],
    )?;
    let client_row: i64 = tx.query_row(
        "SELECT id FROM clients WHERE uuid=?1",
        [&client_text],
        |r| r.get(0),
    )?;
    let signer_name = roster.member_by_key(&h.signer).map_or_else(
        || h.signer.to_string(),
        |m| format!("{} ({})", m.name, h.signer),
    );
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
    for r in &pack.revisions {
        if let Some(f) = faults {
            f.apply()?;
        }
        let ann_key = r.annotation.as_bytes().as_slice();
        let existing: Option<i64> = find_ann.query_row([ann_key], |row| row.get(0)).optional()?;
        if let Some(ann) = existing
            && dup.exists(params![ann, client_row, r.hlc])?
        {
            if h.client == local_client {
                // Our own revision coming back (a restored project file): nothing to do.
                continue;
            }
            return Err(ApplyError::Refused(PackProblem::ReplayedRevisions {
                annotation: r.annotation,
                hlc: r.hlc,
            }));
        }
        applied.max_hlc = applied.max_hlc.max(r.hlc);
        if let Some(reason) = roster.refusal(&h.signer, r.state, !r.resolves.is_empty()) {
            let at_ms = now_ms();
            ins_refusal.execute(params![
                remote,
                client_text,
                h.seq as i64,
                r.annotation.to_string(),
                r.hlc,
                signer_name,
                reason,
                at_ms
            ])?;
            applied.refused.push(Refusal {
                remote: remote.to_owned(),
                client: h.client,
                seq: h.seq,
                annotation: Some(r.annotation),
                hlc: Some(r.hlc),
                signer: signer_name.clone(),
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
            user_row(tx, &r.author, roster)
        })?;
        let (run, score) = match &r.run {
            Some((run, score)) => (
                Some(cached(&mut resolved.runs, run, || run_row(tx, run))?),
                Some(f64::from(*score)),
            ),
            None => (None, None),
        };
        if !r.bbox.is_finite() {
            return Err(ApplyError::Refused(PackProblem::Malformed(format!(
                "box {} has a non-finite geometry",
                r.annotation
            ))));
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
    applied.new_conflicts = refresh_boxes(tx, &touched, judge)?;
    tx.execute(
        "INSERT INTO sync_packs(remote, client, seq, hash, revisions, pushed, done_ms) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
        params![remote, client_text, h.seq as i64, pack.hash, applied.revisions as i64, now_ms()],
    )?;
    Ok(applied)
}
