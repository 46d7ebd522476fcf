//! One sync: push this client's new revisions as packs, then pull, verify and merge everyone
//! else's; plus the team roster operations and conflict resolution.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use uuid::Uuid;

use super::keys::{self, Identity, PublicKey};
use super::local::{ApplyError, Judge, OutRevision, Refusal, RemoteInfo};
use super::pack::{
    self, ImageRef, MAX_PACK_REVISIONS, NamedRef, Pack, PackProblem, PackWriter, RunCoverage,
    pack_key, parse_pack_key,
};
use super::roster::{Member, ROSTER_KEY, Roster};
use super::store::RemoteStore;
use super::{SyncError, SyncOptions, SyncReport};
use crate::ingest::Progress;
use crate::model::{Annotation, BBox, BoxFlags, ReviewState, Role};
use crate::store::{ImageInput, Project, now_ms};

/// Pushes then pulls with the remote `remote` (default: the only one, or `origin`), using the
/// signing key of the default config folder. Opens its own connection to the project, so it can
/// run on a background thread while the app keeps its own.
///
/// A `Project` that stays open during a sync does not see the clocks of pulled revisions: reopen
/// it afterwards so its next edits are stamped after them.
pub fn sync_once(
    project_path: &Path,
    remote: Option<&str>,
    progress: &dyn Progress,
) -> Result<SyncReport, SyncError> {
    let options = SyncOptions {
        remote: remote.map(str::to_owned),
        ..SyncOptions::default()
    };
    sync_with(project_path, &options, progress)
}

/// [`sync_once`] with every knob.
pub fn sync_with(
    project_path: &Path,
    options: &SyncOptions,
    progress: &dyn Progress,
) -> Result<SyncReport, SyncError> {
    let started = Instant::now();
    let mut project = Project::open(project_path)?;
    let remote = resolve_remote(&mut project, options)?;
    let identity = identity(options.config_dir.as_deref())?;
    let store = RemoteStore::open(&remote.spec, options.faults.clone())?;
    let fetched = fetch_roster(&mut project, &store, &remote.name)?.ok_or_else(|| {
        SyncError::Roster(format!(
            "{} has no team roster yet: the team's owner runs `loupe team init` first",
            remote.spec.url
        ))
    })?;
    let roster = fetched.roster;
    let me = identity.public();
    let judge = |state: ReviewState, resolves: bool| roster.refusal(&me, state, resolves);
    let mut report = SyncReport {
        remote: remote.name.clone(),
        url: remote.spec.url.clone(),
        roster_problem: fetched.problem,
        ..SyncReport::default()
    };
    if options.push {
        push(
            &mut project,
            &store,
            &remote,
            &roster,
            &identity,
            options,
            &judge,
            &mut report,
            progress,
        )?;
        if options.images {
            push_images(&project, &store, &remote.name, &mut report)?;
        }
    }
    if options.pull {
        pull(
            &mut project,
            &store,
            &remote,
            &roster,
            options,
            &judge,
            &mut report,
            progress,
        )?;
        if options.images {
            pull_images(&mut project, &store, &mut report)?;
        }
    }
    project.sync_mark_synced(&remote.name)?;
    report.conflicts = project.log_conflict_count()?;
    report.state_hash = project.sync_state_hash()?;
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(report)
}

fn identity(config_dir: Option<&Path>) -> Result<Identity, SyncError> {
    match config_dir {
        Some(dir) => Identity::load_or_create(dir),
        None => Identity::load_or_create(&keys::config_dir()?),
    }
}

/// The remote to use; a spec given in the options is saved under its name first.
pub(super) fn resolve_remote(
    project: &mut Project,
    options: &SyncOptions,
) -> Result<RemoteInfo, SyncError> {
    let Some(spec) = &options.spec else {
        return project.sync_remote(options.remote.as_deref());
    };
    let name = options.remote.as_deref().unwrap_or("origin");
    let saved = project.sync_remotes()?.into_iter().find(|r| r.name == name);
    if saved.as_ref().is_none_or(|r| r.spec != *spec) {
        project.sync_add_remote(name, spec)?;
    }
    let mut info = project.sync_remote(Some(name))?;
    // The saved spec has no credentials; keep the caller's.
    info.spec = spec.clone();
    Ok(info)
}

/// The roster to work with, and why it is not the store's copy when it is not.
struct Fetched {
    roster: Roster,
    /// The store's roster is missing, unreadable, forged, signed by another owner or rolled
    /// back: `roster` is then the last one this project verified.
    problem: Option<String>,
}

/// Reads and verifies the roster, pinning its owner key and version on first sight. When the
/// store's copy does not verify, the last roster this project verified is used instead (one bad
/// file must not stop a team), with the problem named; only without one is it an error.
fn fetch_roster(
    project: &mut Project,
    store: &RemoteStore,
    remote: &str,
) -> Result<Option<Fetched>, SyncError> {
    let bytes = store.get(ROSTER_KEY)?;
    let present = bytes.is_some();
    let verified = match bytes {
        None => Err(SyncError::Roster(format!(
            "{}: {ROSTER_KEY} is missing from the store",
            store.url()
        ))),
        Some(bytes) => verify_roster(project, remote, &bytes),
    };
    let last = cached_roster(project, remote)?;
    match (verified, last) {
        (Ok(roster), _) => {
            pin_roster(project, remote, &roster)?;
            Ok(Some(Fetched {
                roster,
                problem: None,
            }))
        }
        // Never verified one: a store without a roster is not an error here, a bad one is.
        (Err(_), None) if !present => Ok(None),
        (Err(e), None) => Err(e),
        (Err(e), Some(roster)) => {
            let problem = format!(
                "{e}; working with the last roster verified here (version {}); the owner can \
                 restore it with `loupe team republish`",
                roster.version
            );
            tracing::warn!("{problem}");
            Ok(Some(Fetched {
                roster,
                problem: Some(problem),
            }))
        }
    }
}

/// Checks a roster's signature against the pinned owner key and its version against the last
/// one seen.
fn verify_roster(project: &Project, remote: &str, bytes: &[u8]) -> Result<Roster, SyncError> {
    let pinned = project
        .sync_state_get(remote, "roster_owner")?
        .map(|k| PublicKey::parse(&k))
        .transpose()?;
    let roster = Roster::open(bytes, pinned.as_ref())?;
    let seen: u64 = project
        .sync_state_get(remote, "roster_version")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if roster.version < seen {
        return Err(SyncError::Roster(format!(
            "{ROSTER_KEY}: version {} is older than version {seen} seen before; refusing a rolled-back roster",
            roster.version
        )));
    }
    Ok(roster)
}

/// Adds (or changes) a remote. With `owner` (the key `loupe team key` prints on the owner's
/// machine), the store's roster must be signed by that key, now and on every later sync; without
/// it, the owner of the first roster seen is pinned.
pub fn remote_add(
    project: &mut Project,
    name: &str,
    spec: &super::RemoteSpec,
    owner: Option<&PublicKey>,
) -> Result<(), SyncError> {
    let store = RemoteStore::open(spec, None)?;
    if let Some(owner) = owner
        && let Some(bytes) = store.get(ROSTER_KEY)?
    {
        Roster::open(&bytes, Some(owner))
            .map_err(|e| SyncError::Roster(format!("{}: {e}", spec.url)))?;
    }
    project.sync_add_remote(name, spec)?;
    if let Some(owner) = owner {
        project.sync_state_set(name, "roster_owner", &owner.to_string())?;
    }
    Ok(())
}

/// Writes the last roster this project verified back to the store, signed again with the
/// owner's key: the way back when the store's copy was edited, deleted or replaced. Only the
/// owner may.
pub fn team_republish(
    project_path: &Path,
    remote: Option<&str>,
    spec: Option<&super::RemoteSpec>,
    config_dir: Option<&Path>,
) -> Result<Roster, SyncError> {
    let mut project = Project::open(project_path)?;
    let (info, store) = open_remote(&mut project, remote, spec)?;
    let identity = identity(config_dir)?;
    let roster = cached_roster(&project, &info.name)?.ok_or_else(|| {
        SyncError::Roster(format!(
            "this project has never verified a roster of {}: nothing to republish",
            info.spec.url
        ))
    })?;
    let bytes = roster.seal(&identity)?;
    store.put_replace(ROSTER_KEY, Bytes::from(bytes))?;
    Ok(roster)
}

fn pin_roster(project: &mut Project, remote: &str, roster: &Roster) -> Result<(), SyncError> {
    let json = serde_json::to_string(roster).expect("a roster always serializes");
    // Unchanged most of the time: skip the (durable, so not free) writes.
    if project.sync_state_get(remote, "roster")?.as_deref() == Some(json.as_str()) {
        return Ok(());
    }
    let mut pins = vec![
        ("roster_version", roster.version.to_string()),
        ("roster", json),
    ];
    if let Some(owner) = roster.owner_member() {
        pins.push(("roster_owner", owner.key.to_string()));
    }
    project.sync_state_set_many(remote, &pins)
}

/// The roster last read from `remote`, as cached in the project (for offline decisions).
fn cached_roster(project: &Project, remote: &str) -> Result<Option<Roster>, SyncError> {
    Ok(project
        .sync_state_get(remote, "roster")?
        .and_then(|j| serde_json::from_str(&j).ok()))
}

#[allow(clippy::too_many_arguments)]
fn push(
    project: &mut Project,
    store: &RemoteStore,
    remote: &RemoteInfo,
    roster: &Roster,
    identity: &Identity,
    options: &SyncOptions,
    judge: Judge<'_>,
    report: &mut SyncReport,
    progress: &dyn Progress,
) -> Result<(), SyncError> {
    let me = identity.public();
    let Some(member) = roster.member_by_key(&me) else {
        return Err(SyncError::NotPermitted(format!(
            "your key {me} is not in the team roster of {}: ask the owner to run \
             `loupe team add <your name> --role annotator --key {me}`",
            remote.spec.url
        )));
    };
    let signer = format!("{} ({me})", member.name);
    restore_lost_packs(project, store, &remote.name, report)?;
    let (mut revisions, watermark) = project.sync_unpushed(remote, judge)?;
    // On the wire every revision is the signer's: whoever it is attributed to here (`--user`,
    // `act_as`) stays in this project file and never crosses into the store.
    let wire_author = NamedRef {
        id: member.user,
        name: member.name.clone(),
    };
    for o in &mut revisions {
        if o.revision.author.name != wire_author.name {
            report.reattributed += 1;
        }
        o.revision.author = wire_author.clone();
    }
    if revisions.is_empty() {
        project.sync_set_watermark(&remote.name, watermark)?;
        return push_lists(
            project, store, remote, roster, identity, options, &signer, judge, report,
        );
    }
    progress.message(&format!(
        "pushing {} revisions to {}",
        revisions.len(),
        remote.name
    ));
    progress.set_total(revisions.len() as u64);
    let client = project.client_id();
    let mut place = Place {
        client,
        ..Place::default()
    };
    (place.seq, place.prev) = project.sync_chain_head(&remote.name, client)?;
    let per_pack = options.pack_revisions.clamp(1, MAX_PACK_REVISIONS);
    let mut i = 0;
    while i < revisions.len() {
        let chunk = &revisions[i..(i + per_pack).min(revisions.len())];
        let placed = place.write(store, roster, &revisions[i..], report, |seq, prev| {
            let mut writer = PackWriter::new(client);
            for o in chunk {
                writer.push(&o.revision);
            }
            writer.finish(client, seq, prev, identity, now_ms())
        })?;
        // What we wrote holds the chunk; an adopted pack holds what it holds (none of the
        // revisions when it is a pack of lists: they go into the next one).
        let n = placed.adopted.unwrap_or(chunk.len());
        let written = &revisions[i..i + n];
        project.sync_record_push(
            &remote.name,
            place.seq,
            &placed.hash,
            written,
            &signer,
            judge,
        )?;
        keep_copy(project, store, &remote.name, place.seq, placed.copy)?;
        report.pushed_packs += 1;
        report.pushed_revisions += n;
        report.refused_own += written.iter().filter(|o| o.refused.is_some()).count();
        progress.inc(n as u64);
        place.prev = Some(placed.hash);
        i += n;
    }
    project.sync_set_watermark(&remote.name, watermark)?;
    push_lists(
        project, store, remote, roster, identity, options, &signer, judge, report,
    )
}

/// Entries (listed images plus covered images) per pack of lists.
const LIST_ENTRIES_PER_PACK: usize = 20_000;

/// Pushes what this file has not put in the remote's image list and runs' coverage yet, in
/// packs of lists after the revisions (so a run's coverage never arrives before its proposals).
/// Images are listed only when asked (`loupe sync --list-images`); a model worker lists none
/// (readers refuse them): its images came from the store.
#[allow(clippy::too_many_arguments)]
fn push_lists(
    project: &mut Project,
    store: &RemoteStore,
    remote: &RemoteInfo,
    roster: &Roster,
    identity: &Identity,
    options: &SyncOptions,
    signer: &str,
    judge: Judge<'_>,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    let lists = project.sync_unshared_lists(&remote.name)?;
    let may_list = options.list_images && roster.may_list_images(&identity.public());
    let images: Vec<(i64, ImageRef)> = if may_list { lists.images } else { Vec::new() };
    // Flatten into (entry) units: an image to list, or one covered image of a run.
    enum Entry<'a> {
        Listed(i64, &'a ImageRef),
        Covered(usize, i64, &'a ImageRef),
    }
    let mut entries: Vec<Entry<'_>> = images
        .iter()
        .map(|(id, img)| Entry::Listed(*id, img))
        .collect();
    for (k, (_, coverage, rows)) in lists.coverage.iter().enumerate() {
        for (img, row) in coverage.images.iter().zip(rows) {
            entries.push(Entry::Covered(k, *row, img));
        }
    }
    if entries.is_empty() {
        return Ok(());
    }
    let client = project.client_id();
    let mut place = Place {
        client,
        ..Place::default()
    };
    (place.seq, place.prev) = project.sync_chain_head(&remote.name, client)?;
    let mut start = 0;
    while start < entries.len() {
        let chunk = &entries[start..(start + LIST_ENTRIES_PER_PACK).min(entries.len())];
        let mut listed_rows = Vec::new();
        let mut covered_rows = Vec::new();
        let mut listed = Vec::new();
        let mut by_run: Vec<(usize, RunCoverage)> = Vec::new();
        for e in chunk {
            match *e {
                Entry::Listed(id, img) => {
                    listed.push(img);
                    listed_rows.push(id);
                }
                Entry::Covered(k, row, img) => {
                    let (run_row, coverage, _) = &lists.coverage[k];
                    if by_run.last().is_none_or(|(last, _)| *last != k) {
                        by_run.push((
                            k,
                            RunCoverage {
                                images: Vec::new(),
                                ..coverage.clone()
                            },
                        ));
                    }
                    by_run
                        .last_mut()
                        .expect("pushed above")
                        .1
                        .images
                        .push(img.clone());
                    covered_rows.push((*run_row, row));
                }
            }
        }
        let placed = place.write(store, roster, &[], report, |seq, prev| {
            let mut writer = PackWriter::new(client);
            for img in &listed {
                writer.list_image(img);
            }
            for (_, coverage) in &by_run {
                writer.cover(coverage);
            }
            writer.finish(client, seq, prev, identity, now_ms())
        })?;
        project.sync_record_push(&remote.name, place.seq, &placed.hash, &[], signer, judge)?;
        keep_copy(project, store, &remote.name, place.seq, placed.copy)?;
        report.pushed_packs += 1;
        place.prev = Some(placed.hash);
        if placed.adopted.is_some() {
            // A pack of lists an interrupted push wrote: it may hold less than this chunk (or
            // other entries), so the chunk goes into the next place whole. Listing or covering
            // an image again changes nothing for readers.
            continue;
        }
        project.sync_mark_shared(&remote.name, &listed_rows, &covered_rows)?;
        report.listed_images += listed_rows.len();
        report.covered_images += covered_rows.len();
        start += chunk.len();
    }
    Ok(())
}

/// The next place of this client's chain in the log, and how packs get there.
#[derive(Default)]
struct Place {
    client: Uuid,
    /// The last place taken (by a pack of ours or by something written past).
    seq: u64,
    /// The hash of our last pack: the next one's `prev`.
    prev: Option<String>,
}

/// A pack now at `Place::seq`.
struct Placed {
    hash: String,
    /// What we uploaded, to keep a copy of; `None` for an adopted pack.
    copy: Option<Bytes>,
    /// `Some(n)` when the place held a pack an interrupted push of ours wrote (its first `n`
    /// revisions are the next ones to push; 0 for a pack of lists).
    adopted: Option<usize>,
}

impl Place {
    /// Puts the pack `build(seq, prev)` at the next free place: adopts what an interrupted push
    /// of ours left there, and writes past what every reader refuses. `remaining` are the
    /// revisions still to push, in order (to recognise an interrupted push of them).
    fn write(
        &mut self,
        store: &RemoteStore,
        roster: &Roster,
        remaining: &[OutRevision],
        report: &mut SyncReport,
        build: impl Fn(u64, Option<String>) -> (Vec<u8>, String),
    ) -> Result<Placed, SyncError> {
        let mut retried = false;
        loop {
            self.seq += 1;
            let (bytes, hash) = build(self.seq, self.prev.clone());
            let key = pack_key(self.client, self.seq);
            let bytes = Bytes::from(bytes);
            if store.put_new(&key, bytes.clone())? {
                return Ok(Placed {
                    hash,
                    copy: Some(bytes),
                    adopted: None,
                });
            }
            let occupant = occupant(
                store,
                &key,
                self.client,
                self.seq,
                self.prev.as_deref(),
                roster,
                remaining,
            )?;
            match occupant {
                Occupant::Ours(hash, n) => {
                    return Ok(Placed {
                        hash,
                        copy: None,
                        adopted: Some(n),
                    });
                }
                Occupant::Vanished if !retried => {
                    // Deleted between our write and our read: try the same place once more.
                    retried = true;
                    self.seq -= 1;
                }
                Occupant::Vanished => {
                    return Err(SyncError::ClientCollision(format!(
                        "{}: {key} refuses new packs but holds none",
                        store.url()
                    )));
                }
                Occupant::Foreign(why) => {
                    // Every reader refuses what sits there for the same reason and looks at the
                    // next place for a pack that follows our last one: write it there.
                    let note = format!("{key}: {why}; your pack was written after it");
                    tracing::warn!("{note}");
                    report.written_past.push(note);
                    retried = false;
                }
            }
        }
    }
}

/// The `sync_state` key of the local copy of a pushed pack.
fn copy_key(seq: u64) -> String {
    format!("pushed_pack:{seq}")
}

/// Keeps a copy of a pack this client wrote, so it can upload it again if the store loses it
/// (the chain runs through its hash: only the very same bytes can fill its place).
fn keep_copy(
    project: &Project,
    store: &RemoteStore,
    remote: &str,
    seq: u64,
    written: Option<Bytes>,
) -> Result<(), SyncError> {
    use base64::Engine as _;
    // What we wrote, or (an adopted pack) what the store holds at our place.
    let bytes = match written {
        Some(b) => Some(b),
        None => store.get(&pack_key(project.client_id(), seq))?,
    };
    if let Some(bytes) = bytes {
        let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
        project.sync_state_set(remote, &copy_key(seq), &text)?;
    }
    Ok(())
}

/// Uploads again the packs this client pushed that the store no longer has, from the copies
/// kept at push; one without a copy (pushed by an older Loupe) is reported as lost.
fn restore_lost_packs(
    project: &Project,
    store: &RemoteStore,
    remote: &str,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    use base64::Engine as _;
    let pushed = project.sync_pushed_seqs(remote)?;
    if pushed.is_empty() {
        return Ok(());
    }
    let client = project.client_id();
    let present: std::collections::HashSet<u64> = store
        .list(&format!("log/{client}"), None)?
        .iter()
        .filter_map(|k| parse_pack_key(k))
        .filter(|(c, _)| *c == client)
        .map(|(_, s)| s)
        .collect();
    for seq in pushed.into_iter().filter(|s| !present.contains(s)) {
        let key = pack_key(client, seq);
        let copy = project
            .sync_state_get(remote, &copy_key(seq))?
            .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok());
        match copy {
            Some(bytes) => {
                store.put_new(&key, Bytes::from(bytes))?;
                tracing::warn!("{key}: the store had lost this pack; uploaded it again");
                report.restored.push(key);
            }
            None => report.lost.push(format!(
                "{key}: the store lost this pack of yours and this project keeps no copy of it \
                 (pushed by an older Loupe); its revisions are missing for everyone else"
            )),
        }
    }
    Ok(())
}

/// What sits at this client's next place in the log when a push finds it taken.
enum Occupant {
    /// The next revisions in order: a push that died after writing it. It counts as pushed.
    Ours(String, usize),
    /// Something every reader refuses (another client's pack, a broken or foreign object).
    Foreign(String),
    /// Nothing any more.
    Vanished,
}

/// Looks at an object that sits at this client's next place, judging it as readers will
/// ([`check`]): what readers accept there is this client's pack (ours, or a copied project file's,
/// which is an error); what they refuse is foreign and is written past.
fn occupant(
    store: &RemoteStore,
    key: &str,
    client: Uuid,
    seq: u64,
    prev: Option<&str>,
    roster: &Roster,
    remaining: &[OutRevision],
) -> Result<Occupant, SyncError> {
    let Some(bytes) = store.get(key)? else {
        return Ok(Occupant::Vanished);
    };
    let pack = match check(&bytes, client, seq, prev, roster, now_ms()) {
        Ok(pack) => pack,
        Err(problem) => {
            return Ok(Occupant::Foreign(format!(
                "not a pack of yours ({problem})"
            )));
        }
    };
    let n = pack.revisions.len();
    // A pack of image lists and coverage (no revisions) that an interrupted push wrote: readers
    // applied what it lists already, and listing again changes nothing.
    if n == 0 {
        tracing::warn!("{key}: adopting a pack of lists an interrupted push wrote");
        return Ok(Occupant::Ours(pack.hash, 0));
    }
    let ours = n > 0
        && n <= remaining.len()
        && pack
            .revisions
            .iter()
            .zip(remaining)
            .all(|(a, b)| a.annotation == b.revision.annotation && a.hlc == b.revision.hlc);
    if !ours {
        return Err(SyncError::ClientCollision(format!(
            "{}: {key} already holds a valid pack of this client that this project did not \
             write (other revisions, signed by {}). Was this project file copied? Every copy \
             needs its own client id.",
            store.url(),
            pack.header.signer
        )));
    }
    tracing::warn!("{key}: adopting a pack an interrupted push wrote");
    Ok(Occupant::Ours(pack.hash, n))
}

/// How far a pack's clock may run ahead of this machine's: a revision stamped later than that
/// is refused (not clamped: its id is signed and names it everywhere), so one machine with a
/// clock in the future cannot pin every later edit of the team behind its own. The pack is
/// looked at again on every sync and accepted once this clock has caught up.
pub const MAX_CLOCK_LEAD_MS: i64 = 10 * 60 * 1000;

/// Checks what the pack itself cannot: its place in the log, its chain, its signer's standing.
fn check(
    bytes: &[u8],
    client: Uuid,
    seq: u64,
    prev: Option<&str>,
    roster: &Roster,
    now_ms: i64,
) -> Result<Pack, PackProblem> {
    let pack = pack::open(bytes)?;
    let h = &pack.header;
    if h.client != client || h.seq != seq {
        return Err(PackProblem::Replayed {
            claims: pack_key(h.client, h.seq),
        });
    }
    let Some(member) = roster.member_by_key(&h.signer) else {
        return Err(PackProblem::UnknownKey {
            signer: h.signer.to_string(),
        });
    };
    // A signature vouches for its signer only: every revision is the signer's own.
    if let Some(r) = pack.revisions.iter().find(|r| r.author.id != member.user) {
        return Err(PackProblem::ForgedAuthor {
            annotation: r.annotation,
            hlc: r.hlc,
            author: format!("{} ({})", r.author.name, r.author.id),
            signer: format!("{} ({}, key {})", member.name, member.user, h.signer),
        });
    }
    if h.prev.as_deref() != prev {
        return Err(PackProblem::BrokenChain {
            expected: prev.map(str::to_owned),
            found: h.prev.clone(),
        });
    }
    let bound = now_ms.saturating_add(MAX_CLOCK_LEAD_MS);
    if let Some(r) = pack.revisions.iter().max_by_key(|r| r.hlc)
        && (r.hlc >> 16) > bound
    {
        return Err(PackProblem::FutureClock {
            annotation: r.annotation,
            lead_ms: (r.hlc >> 16) - now_ms,
            bound_ms: MAX_CLOCK_LEAD_MS,
        });
    }
    Ok(pack)
}

/// Who writes as `client`, for messages: the roster member whose key signed the pack at `key`.
fn writer_of(store: &RemoteStore, key: &str, roster: &Roster) -> String {
    let Ok(Some(bytes)) = store.get(key) else {
        return "unknown".into();
    };
    match pack::open(&bytes) {
        Ok(p) => roster.member_by_key(&p.header.signer).map_or_else(
            || format!("key {}", p.header.signer),
            |m| format!("{} ({})", m.name, p.header.signer),
        ),
        Err(_) => "unknown".into(),
    }
}

#[allow(clippy::too_many_arguments)]
fn pull(
    project: &mut Project,
    store: &RemoteStore,
    remote: &RemoteInfo,
    roster: &Roster,
    options: &SyncOptions,
    judge: Judge<'_>,
    report: &mut SyncReport,
    progress: &dyn Progress,
) -> Result<(), SyncError> {
    let mut clients: Vec<Uuid> = store
        .list_dirs("log")?
        .iter()
        .filter_map(|c| Uuid::parse_str(c).ok())
        .collect();
    if let Some(seed) = options.shuffle_seed {
        use rand::SeedableRng as _;
        use rand::seq::SliceRandom as _;
        clients.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    }
    // First list everything new, so progress has a total.
    let mut work = Vec::new();
    for client in clients {
        let (last, prev) = project.sync_chain_head(&remote.name, client)?;
        let after = (last > 0).then(|| pack_key(client, last));
        let keys = store.list(&format!("log/{client}"), after.as_deref())?;
        let mut seqs: Vec<u64> = keys
            .iter()
            .filter_map(|k| parse_pack_key(k))
            .filter(|(c, s)| *c == client && *s > last)
            .map(|(_, s)| s)
            .collect();
        seqs.sort_unstable();
        if !seqs.is_empty() {
            work.push((client, last, prev, seqs));
        }
    }
    let total: usize = work.iter().map(|w| w.3.len()).sum();
    if total > 0 {
        progress.message(&format!("pulling {total} packs from {}", remote.name));
    }
    progress.set_total(total as u64);
    let mut budget = options.max_packs;
    let own = project.client_id();
    'clients: for (client, last, mut prev, seqs) in work {
        // The next place to look at: after an applied pack, and after a refused object too (its
        // writer writes past what it does not recognise as its own; see `push`).
        let mut next = last + 1;
        for (k, &seq) in seqs.iter().enumerate() {
            if seq != next {
                let who = writer_of(store, &pack_key(client, seq), roster);
                report.held_back.push(format!(
                    "client {client} of {who}: pack {} is missing from the store, so revisions \
                     of {who} are missing here; {} later pack(s) wait until {who} syncs again \
                     (it re-uploads what the store lost)",
                    pack_key(client, next),
                    seqs.len() - k
                ));
                break;
            }
            if budget == Some(0) {
                break 'clients;
            }
            if let Some(b) = budget.as_mut() {
                *b -= 1;
            }
            let key = pack_key(client, seq);
            let Some(bytes) = store.get(&key)? else {
                break;
            };
            progress.inc(1);
            next = seq + 1;
            let verdict = check(&bytes, client, seq, prev.as_deref(), roster, now_ms());
            if let Ok(pack) = &verdict
                && client == own
                && let Some(r) = pack.revisions.first()
                && project.sync_is_unrecorded_own(r.annotation, r.hlc)?
            {
                // A pack an interrupted push of ours wrote: the next push adopts it (and records
                // its revisions as pushed); applying it here would leave them to be sent again.
                continue 'clients;
            }
            let problem = match verdict {
                Ok(pack) => {
                    match project.sync_apply_pack(
                        &remote.name,
                        &pack,
                        roster,
                        judge,
                        store.faults(),
                    ) {
                        Ok(applied) => {
                            report.pulled_packs += 1;
                            report.pulled_revisions += applied.revisions;
                            report.pulled_listed += applied.listed;
                            report.pulled_covered += applied.covered;
                            report.new_conflicts += applied.new_conflicts;
                            report.refused.extend(applied.refused);
                            prev = Some(pack.hash);
                            continue;
                        }
                        Err(ApplyError::Refused(problem)) => problem,
                        Err(ApplyError::Failed(e)) => return Err(e),
                    }
                }
                Err(problem) => problem,
            };
            let refusal = Refusal {
                remote: remote.name.clone(),
                client,
                seq,
                annotation: None,
                hlc: None,
                signer: pack::open(&bytes)
                    .map(|p| p.header.signer.to_string())
                    .unwrap_or_default(),
                reason: format!("pack {key}: {problem}"),
                at_ms: now_ms(),
            };
            tracing::warn!("refused {}", refusal.reason);
            project.sync_record_refusal(&refusal)?;
            report.refused.push(refusal);
        }
    }
    Ok(())
}

fn push_images(
    project: &Project,
    store: &RemoteStore,
    remote: &str,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    for (hash, path) in project.log_images_present()? {
        // A frame of a multi-frame file (`FILE#frame=N`, hash `HASH#frame=N`) is its file's
        // bytes: the file goes once, under its own hash.
        let (hash, path) = file_of(&hash, &path);
        let state_key = format!("image:{hash}");
        if project.sync_state_get(remote, &state_key)?.is_some() {
            continue;
        }
        let file = project.root().join(path);
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("{}: not pushed: {e}", file.display());
                continue;
            }
        };
        if store.put_new(&format!("images/{hash}"), Bytes::from(bytes))? {
            report.images_pushed += 1;
        }
        project.sync_state_set(remote, &state_key, "1")?;
    }
    Ok(())
}

/// The file (content hash, path) an image's bytes are: a frame's is its multi-frame file's.
fn file_of<'a>(hash: &'a str, path: &'a str) -> (&'a str, &'a str) {
    match (hash.split_once("#frame="), path.rsplit_once("#frame=")) {
        (Some((file_hash, _)), Some((file, _))) => (file_hash, file),
        _ => (hash, path),
    }
}

fn pull_images(
    project: &mut Project,
    store: &RemoteStore,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    // Files fetched in this pull, by content hash: the frames of one file share it.
    let mut fetched: HashMap<String, u64> = HashMap::new();
    let mut stacked: Vec<PathBuf> = Vec::new();
    for (id, image_hash, image_path) in project.log_images_missing()? {
        let (hash, path) = file_of(&image_hash, &image_path);
        let is_frame = hash.len() != image_hash.len();
        let file = project.root().join(path);
        let size = if let Some(&size) = fetched.get(hash) {
            size
        } else {
            let Some(bytes) = store.get(&format!("images/{hash}"))? else {
                continue;
            };
            if blake3::hash(&bytes).to_hex().as_str() != hash {
                tracing::warn!("images/{hash}: content does not match its name; not used");
                continue;
            }
            if !file.exists() {
                if let Some(dir) = file.parent() {
                    std::fs::create_dir_all(dir).map_err(|source| SyncError::Io {
                        path: dir.to_path_buf(),
                        source,
                    })?;
                }
                let tmp = file.with_extension("loupe-part");
                std::fs::write(&tmp, &bytes)
                    .and_then(|()| std::fs::rename(&tmp, &file))
                    .map_err(|source| SyncError::Io {
                        path: file.clone(),
                        source,
                    })?;
            }
            report.images_pulled += 1;
            if is_frame || crate::imaging::dicom::is_dicom(&file) {
                stacked.push(file.clone());
            }
            let size = bytes.len() as u64;
            fetched.insert(hash.to_owned(), size);
            size
        };
        project.log_image_found(id, size)?;
    }
    // Stack membership is not in the packs: it is read again from the files that arrived,
    // as `add` reads it (a series' order, a multi-frame file's frames).
    if !stacked.is_empty() {
        stacked.dedup();
        if let Err(e) = crate::ingest::add(project, &stacked, &crate::ingest::NoProgress) {
            tracing::warn!("pulled images: stacks not rebuilt: {e}");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- team

fn open_remote(
    project: &mut Project,
    remote: Option<&str>,
    spec: Option<&super::RemoteSpec>,
) -> Result<(RemoteInfo, RemoteStore), SyncError> {
    let options = SyncOptions {
        remote: remote.map(str::to_owned),
        spec: spec.cloned(),
        ..SyncOptions::default()
    };
    let info = resolve_remote(project, &options)?;
    let store = RemoteStore::open(&info.spec, None)?;
    Ok((info, store))
}

/// Creates the remote's roster with the caller (current user, this OS user's key) as owner.
pub fn team_init(
    project_path: &Path,
    remote: Option<&str>,
    spec: Option<&super::RemoteSpec>,
    config_dir: Option<&Path>,
) -> Result<Roster, SyncError> {
    let mut project = Project::open(project_path)?;
    let (info, store) = open_remote(&mut project, remote, spec)?;
    let identity = identity(config_dir)?;
    if let Some(bytes) = store.get(ROSTER_KEY)? {
        let owner = Roster::open(&bytes, None)
            .ok()
            .and_then(|r| r.owner_member().map(|m| format!("{} ({})", m.name, m.key)))
            .unwrap_or_else(|| "unreadable".into());
        return Err(SyncError::Roster(format!(
            "{} already has a team roster (owner {owner})",
            info.spec.url
        )));
    }
    let me = project.current_user()?;
    let roster = Roster::new(me.id, &me.name, identity.public());
    if !store.put_new(ROSTER_KEY, Bytes::from(roster.seal(&identity)?))? {
        return Err(SyncError::Roster(format!(
            "{}: someone else created the roster at the same moment",
            info.spec.url
        )));
    }
    pin_roster(&mut project, &info.name, &roster)?;
    Ok(roster)
}

/// A roster entry to add or change.
#[derive(Clone, Debug)]
pub struct RosterChange {
    /// A user id, or a name (an existing member's, a user of this project, or a new person).
    pub user: String,
    pub role: Role,
    pub key: PublicKey,
}

/// Adds or changes a member; only the owner may.
pub fn team_add(
    project_path: &Path,
    remote: Option<&str>,
    spec: Option<&super::RemoteSpec>,
    config_dir: Option<&Path>,
    change: &RosterChange,
) -> Result<Roster, SyncError> {
    let mut project = Project::open(project_path)?;
    let (info, store) = open_remote(&mut project, remote, spec)?;
    let identity = identity(config_dir)?;
    let mut roster = fetch_roster(&mut project, &store, &info.name)?
        .ok_or_else(|| {
            SyncError::Roster(format!(
                "{} has no roster: run `loupe team init` first",
                info.spec.url
            ))
        })?
        .roster;
    let (user, name) = match Uuid::parse_str(&change.user) {
        Ok(id) => {
            let name = roster
                .members
                .iter()
                .find(|m| m.user == id)
                .map(|m| m.name.clone())
                .or_else(|| {
                    project
                        .users()
                        .ok()?
                        .into_iter()
                        .find(|u| u.id == id)
                        .map(|u| u.name)
                })
                .unwrap_or_else(|| change.user.clone());
            (id, name)
        }
        Err(_) => {
            let id = roster
                .members
                .iter()
                .find(|m| m.name == change.user)
                .map(|m| m.user)
                .or_else(|| {
                    project
                        .users()
                        .ok()?
                        .into_iter()
                        .find(|u| u.name == change.user)
                        .map(|u| u.id)
                })
                .unwrap_or_else(Uuid::now_v7);
            (id, change.user.clone())
        }
    };
    roster.upsert(Member {
        user,
        name,
        key: change.key,
        role: change.role,
    })?;
    let bytes = roster.seal(&identity)?;
    store.put_replace(ROSTER_KEY, Bytes::from(bytes))?;
    pin_roster(&mut project, &info.name, &roster)?;
    Ok(roster)
}

/// The remote's roster (the last one verified here, with the problem, when the store's copy
/// does not verify) and this OS user's public key.
pub fn team_show(
    project_path: &Path,
    remote: Option<&str>,
    spec: Option<&super::RemoteSpec>,
    config_dir: Option<&Path>,
) -> Result<(Option<Roster>, PublicKey, Option<String>), SyncError> {
    let mut project = Project::open(project_path)?;
    let (info, store) = open_remote(&mut project, remote, spec)?;
    let identity = identity(config_dir)?;
    let (roster, problem) = match fetch_roster(&mut project, &store, &info.name)? {
        Some(f) => (Some(f.roster), f.problem),
        None => (None, None),
    };
    Ok((roster, identity.public(), problem))
}

/// Which value a conflict resolution keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Take {
    /// One of the heads, by its label (`A`, `B`, …).
    Head(String),
    /// The box's current value in this project: a head, or an edit made here since (a
    /// reviewer who corrects the box in the app, then keeps it as shown).
    Current,
}

/// Resolves a conflict by taking head `take` (`A`, `B`, …): a new revision with that value,
/// which supersedes every head. Needs a reviewer or lead key in the roster last synced.
pub fn resolve_conflict(
    project_path: &Path,
    remote: Option<&str>,
    config_dir: Option<&Path>,
    annotation: Uuid,
    take: &str,
) -> Result<Annotation, SyncError> {
    resolve_conflict_with(
        project_path,
        remote,
        config_dir,
        annotation,
        &Take::Head(take.to_owned()),
    )
}

/// [`resolve_conflict`] keeping a head or the box's current value.
pub fn resolve_conflict_with(
    project_path: &Path,
    remote: Option<&str>,
    config_dir: Option<&Path>,
    annotation: Uuid,
    take: &Take,
) -> Result<Annotation, SyncError> {
    let mut project = Project::open(project_path)?;
    let info = project.sync_remote(remote)?;
    let identity = identity(config_dir)?;
    let me = identity.public();
    let roster = cached_roster(&project, &info.name)?
        .ok_or_else(|| SyncError::Roster("no roster known yet: run `loupe sync` first".into()))?;
    if let Some(why) = roster.refusal(&me, ReviewState::Submitted, true) {
        return Err(SyncError::NotPermitted(why));
    }
    let conflicts = project.sync_conflicts()?;
    let Some(conflict) = conflicts.iter().find(|c| c.annotation == annotation) else {
        return Err(SyncError::Config(format!(
            "box {annotation} is not in conflict"
        )));
    };
    let heads: Vec<pack::RevId> = conflict
        .heads
        .iter()
        .map(|h| pack::RevId {
            hlc: h.hlc,
            client: h.client,
        })
        .collect();
    let (take, note) = match take {
        Take::Head(label) => {
            let Some(head) = conflict
                .heads
                .iter()
                .find(|h| h.label.eq_ignore_ascii_case(label))
            else {
                let labels: Vec<&str> = conflict.heads.iter().map(|h| h.label.as_str()).collect();
                return Err(SyncError::Config(format!(
                    "{label:?} is not one of the heads of box {annotation} ({})",
                    labels.join(", ")
                )));
            };
            (
                pack::RevId {
                    hlc: head.hlc,
                    client: head.client,
                },
                format!(
                    "resolved a sync conflict: took {} ({})",
                    head.label, head.author
                ),
            )
        }
        Take::Current => {
            let (client, hlc) = project.log_current_revision(annotation)?;
            let client = Uuid::parse_str(&client).map_err(|e| {
                SyncError::Config(format!("box {annotation}: bad client id {client:?}: {e}"))
            })?;
            (
                pack::RevId { hlc, client },
                "resolved a sync conflict: kept the value as shown".to_owned(),
            )
        }
    };
    let judge = |state: ReviewState, resolves: bool| roster.refusal(&me, state, resolves);
    project.sync_write_resolution(annotation, take, &heads, &note, &judge)?;
    Ok(project.annotation(annotation)?)
}

/// Benchmark helper: writes `count` new human boxes (one revision each) in one transaction, on
/// the project's first image (or a synthetic one).
pub fn debug_generate_revisions(project: &mut Project, count: usize) -> Result<usize, SyncError> {
    let first = project
        .list_images(&crate::store::ImageFilter::default())?
        .into_iter()
        .next()
        .map(|i| i.path);
    let mut bulk = project.bulk()?;
    let image = match first.and_then(|p| bulk.image_by_path(&p).transpose()) {
        Some(row) => row?,
        None => {
            let path = "synthetic/bench.png".to_owned();
            let input = ImageInput {
                hash: Some(blake3::hash(path.as_bytes()).to_hex().to_string()),
                path,
                width: 4000,
                height: 3000,
                bytes: 0,
                external_id: None,
            };
            bulk.upsert_image(&input)?.0
        }
    };
    let class = bulk.class("bench")?;
    for i in 0..count {
        let x = (i % 3900) as f64;
        bulk.add_annotation(
            Uuid::now_v7(),
            image,
            class,
            BBox::new(x, (i % 2900) as f64, 50.0, 40.0),
            None,
            ReviewState::Submitted,
            BoxFlags::default(),
            &crate::model::Attributes::new(),
        )?;
    }
    bulk.commit()?;
    Ok(count)
}
