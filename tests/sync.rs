//! Sync against real storage: every scenario runs against a local folder and against moto's S3
//! server on 127.0.0.1, which these tests start themselves (moto is installed by
//! `scripts/setup.sh`; `scripts/moto.sh` runs one by hand).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use loupe::ingest::NoProgress;
use loupe::model::{AnnotationValue, BBox, BoxFlags, ReviewState, Role, Source};
use loupe::store::{Edit, Project};
use loupe::sync::pack::{self, PackWriter};
use loupe::sync::{
    self, Faults, Identity, PublishOptions, RemoteSpec, RemoteStore, RosterChange, SyncError,
    SyncOptions, SyncReport,
};
use proptest::prelude::*;
use tempfile::TempDir;
use uuid::Uuid;

use crate::support::write_png;

// ---------------------------------------------------------------- the S3 server

pub(crate) const BUCKET: &str = "loupe-test";

struct Moto {
    port: u16,
    _child: Mutex<Child>,
}

/// One moto server per test process. It exits when this process does: it waits on its stdin,
/// which closes with us.
pub(crate) fn moto_port() -> u16 {
    moto().port
}

fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let script = format!(
            r#"
import sys, urllib.request
from moto.server import ThreadedMotoServer
s = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
s.start()
port = s.get_host_and_port()[1]
urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{{port}}/{BUCKET}", method="PUT")).read()
print(port, flush=True)
sys.stdin.read()
s.stop()
"#
        );
        let mut child = Command::new("python3")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs (moto is installed by scripts/setup.sh)");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("moto prints its port");
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!("moto did not start (is it installed? `pip install 'moto[server]'`): {line:?}")
        });
        Moto {
            port,
            _child: Mutex::new(child),
        }
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Backend {
    Folder,
    S3,
}

fn remote_spec(backend: Backend, dir: &Path) -> RemoteSpec {
    match backend {
        Backend::Folder => RemoteSpec::new(format!("file://{}", dir.join("remote").display())),
        Backend::S3 => {
            let m = moto();
            RemoteSpec {
                url: format!("s3://{BUCKET}/{}", Uuid::now_v7()),
                endpoint: Some(format!("http://127.0.0.1:{}", m.port)),
                region: Some("us-east-1".into()),
                allow_http: true,
                credentials: Some(("testing".into(), "testing".into())),
                ..RemoteSpec::default()
            }
        }
    }
}

/// A scratch folder, in /dev/shm where there is one: project files commit with
/// `synchronous = FULL`, and an fsync per commit on a real disk would make the suite slow, while
/// durability is not what these tests check (crashes are injected at known points).
fn scratch() -> TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("loupe-sync-")
            .tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("tempdir")
}

// ---------------------------------------------------------------- a team of clients

/// One team member's project file and signing-key folder.
pub(crate) struct Client {
    pub(crate) path: PathBuf,
    pub(crate) config: PathBuf,
}

/// Projects sharing one remote, each with its own key (the UI tests use it too).
pub(crate) struct Team {
    pub(crate) dir: TempDir,
    pub(crate) spec: RemoteSpec,
    pub(crate) clients: Vec<Client>,
}

const IMAGES: u32 = 3;

impl Team {
    /// `roles[0]` is the owner (always a lead); every client is in the roster.
    pub(crate) fn new(backend: Backend, roles: &[Role]) -> Team {
        let team = Self::without_roster(backend, roles.len());
        sync::team_init(
            &team.clients[0].path,
            None,
            Some(&team.spec),
            Some(&team.clients[0].config),
        )
        .expect("team init");
        for (i, role) in roles.iter().enumerate().skip(1) {
            team.add_member(i, *role);
        }
        team
    }

    fn without_roster(backend: Backend, n: usize) -> Team {
        let dir = scratch();
        for i in 0..IMAGES {
            write_png(&dir.path().join(format!("img/{i}.png")), 64, 48, i + 1);
        }
        let spec = remote_spec(backend, dir.path());
        let clients = (0..n)
            .map(|i| {
                let path = dir.path().join(format!("c{i}.loupe"));
                let mut p = Project::create(&path).expect("create project");
                p.switch_user(&format!("user{i}"), Some(Role::Lead))
                    .expect("user");
                loupe::ingest::add(&mut p, &[dir.path().join("img")], &NoProgress)
                    .expect("add images");
                p.ensure_class("cat").expect("class");
                Client {
                    path,
                    config: dir.path().join(format!("config{i}")),
                }
            })
            .collect();
        Team { dir, spec, clients }
    }

    fn key(&self, i: usize) -> Identity {
        Identity::load_or_create(&self.clients[i].config).expect("key")
    }

    fn add_member(&self, i: usize, role: Role) {
        let change = RosterChange {
            user: format!("user{i}"),
            role,
            key: self.key(i).public(),
        };
        sync::team_add(
            &self.clients[0].path,
            None,
            Some(&self.spec),
            Some(&self.clients[0].config),
            &change,
        )
        .expect("team add");
    }

    fn options(&self, i: usize) -> SyncOptions {
        SyncOptions {
            spec: Some(self.spec.clone()),
            config_dir: Some(self.clients[i].config.clone()),
            ..SyncOptions::default()
        }
    }

    pub(crate) fn sync(&self, i: usize) -> SyncReport {
        self.sync_with(i, &self.options(i)).expect("sync")
    }

    fn sync_with(&self, i: usize, options: &SyncOptions) -> Result<SyncReport, SyncError> {
        sync::sync_with(&self.clients[i].path, options, &NoProgress)
    }

    pub(crate) fn open(&self, i: usize) -> Project {
        Project::open(&self.clients[i].path).expect("open project")
    }

    pub(crate) fn store(&self) -> RemoteStore {
        RemoteStore::open(&self.spec, None).expect("store")
    }

    /// A new box on image `image` of client `i`; returns its id.
    pub(crate) fn create(&self, i: usize, image: u32, x: f64) -> Uuid {
        let mut p = self.open(i);
        let value = value(&p, image, x, ReviewState::Submitted);
        let id = Uuid::now_v7();
        p.apply(&[Edit::Create { id, value }]).expect("create box");
        id
    }

    pub(crate) fn update(&self, i: usize, id: Uuid, f: impl FnOnce(&mut AnnotationValue)) {
        self.try_update(i, id, f).expect("update box");
    }

    /// An edit as the app makes it; the review rules (legal transitions) may refuse it.
    fn try_update(
        &self,
        i: usize,
        id: Uuid,
        f: impl FnOnce(&mut AnnotationValue),
    ) -> Result<(), loupe::store::StoreError> {
        let mut p = self.open(i);
        let mut value = p.annotation(id).expect("box").value;
        f(&mut value);
        // Returning a box needs a reason.
        let note = (value.state == ReviewState::Returned).then(|| "sent back".to_owned());
        p.apply(&[Edit::Update { id, value, note }]).map(drop)
    }

    fn hash(&self, i: usize) -> String {
        self.open(i).sync_state_hash().expect("state hash")
    }

    fn revisions(&self, i: usize) -> u64 {
        self.open(i).stats().expect("stats").revisions
    }
}

fn value(p: &Project, image: u32, x: f64, state: ReviewState) -> AnnotationValue {
    let img = p
        .image_by_path(&format!("img/{image}.png"))
        .expect("lookup")
        .expect("image");
    let class = p.ensure_class_id("cat");
    AnnotationValue {
        image: img.id,
        class,
        bbox: BBox::new(x, 2.0, 10.0, 8.0),
        source: Source::Human,
        state,
        flags: BoxFlags::default(),
        deleted: false,
        attributes: Default::default(),
    }
}

trait ClassId {
    fn ensure_class_id(&self, name: &str) -> Uuid;
}

impl ClassId for Project {
    fn ensure_class_id(&self, name: &str) -> Uuid {
        self.classes()
            .expect("classes")
            .into_iter()
            .find(|c| c.name == name)
            .map(|c| c.id)
            .expect("class exists")
    }
}

/// The user-visible state of a client by content: box id → (image hash, class, box, state,
/// deleted), from the store's current-state cache.
fn visible(p: &Project) -> BTreeMap<Uuid, String> {
    let classes: HashMap<Uuid, String> = p
        .classes()
        .expect("classes")
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect();
    let mut out = BTreeMap::new();
    for a in p.all_annotations().expect("annotations") {
        let image = p.image(a.value.image).expect("image");
        out.insert(
            a.id,
            format!(
                "{} {} {:?} {}",
                image.hash.unwrap_or(image.path),
                classes[&a.value.class],
                a.value.bbox,
                a.value.state.as_str()
            ),
        );
    }
    out
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod folder {
            $( #[test] fn $name() { super::$name(super::Backend::Folder) } )*
        }
        mod s3 {
            $( #[test] fn $name() { super::$name(super::Backend::S3) } )*
        }
    };
}

on_both_backends!(
    labels_travel_between_clients,
    reasons_of_new_and_deleted_boxes_travel_between_clients,
    attributes_travel_between_clients,
    concurrent_edits_are_kept_as_a_conflict_until_a_lead_resolves,
    decisions_without_the_role_are_refused_everywhere,
    bad_packs_are_refused_whole_and_the_rest_goes_on,
    a_push_killed_at_any_point_uploads_each_revision_once,
    a_pull_killed_at_any_point_applies_each_pack_once,
    a_push_killed_then_a_pull_first_uploads_each_revision_once,
    a_lists_pack_killed_unrecorded_is_adopted_by_the_next_push,
    images_travel_by_content_hash,
    a_published_version_is_fixed_and_verifiable,
    sync_needs_a_roster_and_a_key_in_it,
    a_placeholder_image_stays_missing_until_its_file_comes,
    every_revision_is_its_signers,
    a_foreign_object_in_the_next_place_is_written_past,
    a_lost_pack_is_restored_by_its_author_and_missed_loudly_until_then,
    a_bad_roster_does_not_stop_the_team,
    a_roster_from_another_owner_is_refused,
    a_clock_far_ahead_is_refused_until_ours_catches_up,
);

// ---------------------------------------------------------------- scenarios

fn labels_travel_between_clients(backend: Backend) {
    let team = Team::new(backend, &[Role::Lead, Role::Annotator]);
    let a = team.create(0, 0, 1.0);
    let b = team.create(0, 1, 2.0);
    let r = team.sync(0);
    assert_eq!((r.pushed_revisions, r.pushed_packs), (2, 1));
    let r = team.sync(1);
    assert_eq!(r.pulled_revisions, 2);
    let p1 = team.open(1);
    assert_eq!(p1.annotation(a).expect("box a").value.bbox.x, 1.0);
    assert_eq!(p1.annotation(b).expect("box b").value.bbox.x, 2.0);
    drop(p1);
    team.update(1, a, |v| v.bbox.x = 5.0);
    team.sync(1);
    let r = team.sync(0);
    assert_eq!(r.pulled_revisions, 1);
    assert_eq!(team.open(0).annotation(a).expect("a").value.bbox.x, 5.0);
    assert_eq!(team.hash(0), team.hash(1));
    assert_eq!(visible(&team.open(0)), visible(&team.open(1)));
    // Nothing new: a sync moves nothing.
    let r = team.sync(0);
    assert_eq!((r.pushed_revisions, r.pulled_revisions), (0, 0));
    assert_eq!(team.open(0).stats().expect("stats").revisions, 3);
}

/// Triage fixes store their reason on a new box's first revision (`CreateBecause`) and on a
/// deletion (an update to the tombstone); both reach the other client with the revision.
fn reasons_of_new_and_deleted_boxes_travel_between_clients(backend: Backend) {
    let team = Team::new(backend, &[Role::Lead, Role::Annotator]);
    let doomed = team.create(0, 0, 1.0);
    let added = Uuid::now_v7();
    {
        let mut p = team.open(0);
        let value = value(&p, 1, 3.0, ReviewState::Submitted);
        let gone = AnnotationValue {
            deleted: true,
            ..p.annotation(doomed).expect("box").value
        };
        p.apply(&[
            Edit::CreateBecause {
                id: added,
                value,
                note: "triage overlooked: added".into(),
            },
            Edit::Update {
                id: doomed,
                value: gone,
                note: Some("triage spurious: deleted".into()),
            },
        ])
        .expect("fixes");
    }
    team.sync(0);
    assert_eq!(team.sync(1).pulled_revisions, 3);
    let p1 = team.open(1);
    let notes = |id: Uuid| -> Vec<(String, Option<String>)> {
        p1.history(id)
            .expect("history")
            .into_iter()
            .map(|r| (r.op, r.note))
            .collect()
    };
    assert_eq!(
        notes(added),
        [("create".into(), Some("triage overlooked: added".into()))]
    );
    assert_eq!(
        notes(doomed),
        [
            ("create".into(), None),
            ("delete".into(), Some("triage spurious: deleted".into()))
        ]
    );
    drop(p1);
    assert_eq!(team.hash(0), team.hash(1));
}

fn attributes_travel_between_clients(backend: Backend) {
    use loupe::model::AttributeValue;
    let team = Team::new(backend, &[Role::Lead, Role::Annotator]);
    let a = team.create(0, 0, 1.0);
    let plain = team.create(0, 1, 2.0);
    team.update(0, a, |v| {
        v.attributes.insert("color", "red");
        v.attributes.insert("occluded", true);
        v.attributes.insert("IsOccluded", -1);
        v.attributes.insert("a4", AttributeValue::from_text("2.4"));
    });
    team.sync(0);
    assert_eq!(team.sync(1).pulled_revisions, 3);
    let p1 = team.open(1);
    let got = p1.annotation(a).expect("a").value.attributes;
    let names: Vec<_> = got.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(
        names,
        ["color=red", "occluded=true", "IsOccluded=-1", "a4=2.4"]
    );
    assert!(
        p1.annotation(plain)
            .expect("plain")
            .value
            .attributes
            .is_empty()
    );
    // The history on the other client sees the change of attributes as a revision.
    let history = p1.history(a).expect("history");
    assert!(history[0].value.attributes.is_empty());
    assert_eq!(history[1].value.attributes, got);
    drop(p1);
    team.update(1, a, |v| v.attributes.insert("color", "blue"));
    team.sync(1);
    assert_eq!(team.sync(0).pulled_revisions, 1);
    let p0 = team.open(0);
    assert_eq!(
        p0.annotation(a).expect("a").value.attributes.get("color"),
        Some(&AttributeValue::from("blue"))
    );
    drop(p0);
    assert_eq!(team.hash(0), team.hash(1));
    // The shared state hash sees attributes: a change of one alone changes it.
    let before = team.hash(0);
    team.update(0, a, |v| v.attributes.insert("color", "green"));
    team.sync(0);
    team.sync(1);
    assert_ne!(team.hash(0), before);
    assert_eq!(team.hash(0), team.hash(1));
}

fn concurrent_edits_are_kept_as_a_conflict_until_a_lead_resolves(backend: Backend) {
    let team = Team::new(backend, &[Role::Lead, Role::Annotator, Role::Annotator]);
    let id = team.create(0, 0, 1.0);
    for i in 0..3 {
        team.sync(i);
    }
    // Clients 1 and 2 edit the same box offline.
    team.update(1, id, |v| v.bbox.x = 11.0);
    team.update(2, id, |v| v.bbox.x = 22.0);
    team.sync(1);
    let r = team.sync(2);
    assert_eq!(r.new_conflicts, 1, "{r:?}");
    team.sync(1);
    team.sync(0);
    for i in 0..3 {
        let p = team.open(i);
        let c = p.sync_conflicts().expect("conflicts");
        assert_eq!(c.len(), 1, "client {i}");
        let xs: Vec<f64> = c[0].heads.iter().map(|h| h.bbox.x).collect();
        assert!(
            xs.contains(&11.0) && xs.contains(&22.0),
            "both edits are kept: {xs:?}"
        );
    }
    assert_eq!(team.hash(0), team.hash(1));
    assert_eq!(team.hash(1), team.hash(2));
    // An ordinary edit does not end it.
    team.update(1, id, |v| v.bbox.x = 12.0);
    team.sync(1);
    assert_eq!(team.open(1).sync_conflicts().expect("c").len(), 1);
    // An annotator may not resolve.
    let err = sync::resolve_conflict(
        &team.clients[2].path,
        None,
        Some(&team.clients[2].config),
        id,
        "A",
    )
    .expect_err("annotators cannot resolve");
    assert!(err.to_string().contains("reviewer or lead"), "{err}");
    // That edit replaced the value client 1 saw (22, the newer head): the heads are 11 and 12.
    team.sync(0);
    let conflict = &team.open(0).sync_conflicts().expect("c")[0];
    let mut xs: Vec<f64> = conflict.heads.iter().map(|h| h.bbox.x).collect();
    xs.sort_by(f64::total_cmp);
    assert_eq!(xs, vec![11.0, 12.0]);
    // The lead takes the head holding 11.
    let take = conflict
        .heads
        .iter()
        .find(|h| h.bbox.x == 11.0)
        .map(|h| h.label.clone())
        .expect("head with 11");
    let a = sync::resolve_conflict(
        &team.clients[0].path,
        None,
        Some(&team.clients[0].config),
        id,
        &take,
    )
    .expect("resolve");
    assert_eq!(a.value.bbox.x, 11.0);
    assert!(team.open(0).sync_conflicts().expect("c").is_empty());
    for i in [0, 1, 2, 0] {
        team.sync(i);
    }
    for i in 0..3 {
        let p = team.open(i);
        assert!(p.sync_conflicts().expect("c").is_empty(), "client {i}");
        assert_eq!(
            p.annotation(id).expect("box").value.bbox.x,
            11.0,
            "client {i}"
        );
    }
    assert_eq!(team.hash(0), team.hash(1));
    assert_eq!(team.hash(1), team.hash(2));
}

fn decisions_without_the_role_are_refused_everywhere(backend: Backend) {
    let team = Team::new(backend, &[Role::Lead, Role::Annotator, Role::Reviewer]);
    let a = team.create(0, 0, 1.0);
    let b = team.create(0, 1, 1.0);
    for i in 0..3 {
        team.sync(i);
    }
    // Client 1's project thinks its user is a lead; the roster says annotator.
    team.update(1, a, |v| v.state = ReviewState::Approved);
    team.update(2, b, |v| v.state = ReviewState::Approved);
    let r = team.sync(1);
    assert_eq!(r.refused_own, 1);
    team.sync(2);
    let r = team.sync(0);
    assert_eq!(r.refused.len(), 1, "{r:?}");
    assert!(
        r.refused[0]
            .reason
            .contains("approving a box needs a reviewer or lead"),
        "{:?}",
        r.refused[0]
    );
    team.sync(1);
    team.sync(2);
    for i in 0..3 {
        let p = team.open(i);
        assert_eq!(
            p.annotation(a).expect("a").value.state,
            ReviewState::Submitted,
            "client {i}"
        );
        assert_eq!(
            p.annotation(b).expect("b").value.state,
            ReviewState::Approved,
            "client {i}"
        );
        let refusals = p.sync_refusals(None).expect("refusals");
        assert!(
            refusals.iter().any(|r| r.annotation == Some(a)),
            "client {i} records the refusal: {refusals:?}"
        );
    }
    assert_eq!(team.hash(0), team.hash(1));
    assert_eq!(team.hash(1), team.hash(2));
    // `loupe check` rebuilds the cache from the log: the refused approval stays out of it.
    for i in 0..3 {
        let out = crate::support::loupe()
            .args([
                "--project",
                team.clients[i].path.to_str().expect("utf8"),
                "check",
            ])
            .output()
            .expect("run loupe check");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.starts_with("ok:"),
            "client {i}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            team.open(i).annotation(a).expect("a").value.state,
            ReviewState::Submitted,
            "client {i} after check"
        );
    }
}

/// An image known only from packs (its file is not on this computer) is a placeholder: it
/// stays flagged missing through later pulls and `loupe check`, its boxes are readable, and it
/// stops being missing once the file is added.
fn a_placeholder_image_stays_missing_until_its_file_comes(backend: Backend) {
    let team = Team::new(backend, &[Role::Lead, Role::Annotator]);
    let file = team.dir.path().join("only1/far.png");
    write_png(&file, 30, 20, 77);
    let (first, second) = {
        let mut p = team.open(1);
        loupe::ingest::add(&mut p, &[team.dir.path().join("only1")], &NoProgress).expect("add");
        let img = p.image_by_path("only1/far.png").expect("q").expect("img");
        let mut v = value(&p, 0, 1.0, ReviewState::Submitted);
        v.image = img.id;
        let first = Uuid::now_v7();
        p.apply(&[Edit::Create {
            id: first,
            value: v.clone(),
        }])
        .expect("create");
        (first, v)
    };
    team.sync(1);
    // The file is not where client 0 looks (it lives on client 1's computer).
    let moved = team.dir.path().join("far.png.away");
    std::fs::rename(&file, &moved).expect("move the file away");
    team.sync(0);
    let missing = |id: Uuid| {
        let p = team.open(0);
        let a = p.annotation(id).expect("box");
        let img = p.image(a.value.image).expect("image");
        (
            img.missing,
            img.path,
            p.stats().expect("stats").missing_images,
        )
    };
    assert_eq!(missing(first), (true, "only1/far.png".into(), 1));
    {
        let p = team.open(0);
        let rows = p
            .list_images(&loupe::store::ImageFilter::default())
            .expect("list");
        let row = rows
            .iter()
            .find(|r| r.path == "only1/far.png")
            .expect("row");
        assert!(row.missing && row.boxes == 1, "{row:?}");
    }
    // A later pack naming the same image finds the placeholder again.
    {
        let mut p = team.open(1);
        p.apply(&[Edit::Create {
            id: Uuid::now_v7(),
            value: second,
        }])
        .expect("create");
    }
    team.sync(1);
    team.sync(0);
    assert_eq!(missing(first), (true, "only1/far.png".into(), 1));
    assert_eq!(team.open(0).rebuild_current().expect("check"), 0);
    // The file arrives (copied by hand): adding it fills in the placeholder, no duplicate.
    std::fs::rename(&moved, &file).expect("move back");
    {
        let mut p = team.open(0);
        loupe::ingest::add(&mut p, &[team.dir.path().join("only1")], &NoProgress).expect("add");
    }
    assert_eq!(missing(first), (false, "only1/far.png".into(), 0));
    assert_eq!(
        team.open(0)
            .annotations_for_image(team.open(0).annotation(first).expect("box").value.image)
            .expect("boxes")
            .len(),
        2
    );
}

/// Builds a pack for `client` at `seq` signed by `key`.
fn forge(
    client: Uuid,
    seq: u64,
    prev: Option<String>,
    key: &Identity,
    revs: &[pack::PackRevision],
) -> Vec<u8> {
    let mut w = PackWriter::new(client);
    for r in revs {
        w.push(r);
    }
    w.finish(client, seq, prev, key, 1).0
}

fn bad_packs_are_refused_whole_and_the_rest_goes_on(backend: Backend) {
    let team = Team::new(backend, &[Role::Lead, Role::Annotator, Role::Annotator]);
    let store = team.store();
    let id = team.create(1, 0, 1.0);
    team.create(1, 1, 2.0);
    team.sync(1);
    let c1 = team.open(1).client_id();
    let real_key = pack::pack_key(c1, 1);
    let real = store.get(&real_key).expect("get").expect("client 1's pack");
    let real_pack = pack::open(&real).expect("valid");
    let member = team.key(1);
    let stranger = Identity::generate();
    let fresh = |revs: &[pack::PackRevision]| -> Vec<pack::PackRevision> {
        revs.iter()
            .map(|r| pack::PackRevision {
                annotation: Uuid::now_v7(),
                ..r.clone()
            })
            .collect()
    };
    let mut bad: Vec<(Uuid, Vec<u8>, &str)> = Vec::new();
    // Tampered: a byte of the body changed.
    let mut tampered = forge(
        Uuid::now_v7(),
        1,
        None,
        &member,
        &fresh(&real_pack.revisions),
    );
    let n = tampered.len();
    tampered[n - 80] ^= 0x40;
    bad.push((Uuid::nil(), tampered, "tampered"));
    // Truncated.
    let full = forge(
        Uuid::now_v7(),
        1,
        None,
        &member,
        &fresh(&real_pack.revisions),
    );
    bad.push((Uuid::nil(), full[..full.len() / 2].to_vec(), "truncated"));
    // Wrongly signed: signed by a stranger, claiming a member's key.
    let forged = forge(
        Uuid::now_v7(),
        1,
        None,
        &stranger,
        &fresh(&real_pack.revisions),
    );
    let text = unsafe_replace(
        &forged,
        stranger.public().to_string().as_bytes(),
        member.public().to_string().as_bytes(),
    );
    bad.push((Uuid::nil(), text, "wrong signature"));
    // Signed by a key nobody added to the roster.
    bad.push((
        Uuid::nil(),
        forge(
            Uuid::now_v7(),
            1,
            None,
            &stranger,
            &fresh(&real_pack.revisions),
        ),
        "unknown key",
    ));
    // Replays: client 1's pack copied under another client, and re-signed at its next place.
    bad.push((Uuid::now_v7(), real.to_vec(), "replayed"));
    let resigned = forge(
        c1,
        2,
        Some(real_pack.hash.clone()),
        &member,
        &real_pack.revisions,
    );
    bad.push((c1, resigned, "replayed"));
    for (folder, bytes, _) in &mut bad {
        let (client, seq) = if *folder == c1 {
            (c1, 2)
        } else if folder.is_nil() {
            // The forged pack names its client in its header; store it there.
            match pack::open(bytes) {
                Ok(p) => (p.header.client, 1),
                Err(_) => (Uuid::now_v7(), 1),
            }
        } else {
            (*folder, 1)
        };
        *folder = client;
        assert!(
            store
                .put_new(&pack::pack_key(client, seq), Bytes::from(bytes.clone()))
                .expect("put")
        );
    }
    // A legitimate pack from client 2 arrives too.
    let good = team.create(2, 2, 3.0);
    team.sync(2);

    let before = team.revisions(0);
    let r = team.sync(0);
    assert_eq!(
        r.pulled_revisions, 3,
        "client 1's two and client 2's one: {r:?}"
    );
    assert_eq!(team.revisions(0), before + 3);
    let reasons: Vec<&str> = r.refused.iter().map(|x| x.reason.as_str()).collect();
    assert_eq!(reasons.len(), bad.len(), "{reasons:#?}");
    for (_, _, expected) in &bad {
        assert!(
            reasons.iter().any(|x| x.contains(expected)),
            "no refusal says {expected:?}: {reasons:#?}"
        );
    }
    let p0 = team.open(0);
    assert!(p0.annotation(id).is_ok() && p0.annotation(good).is_ok());
    assert_eq!(
        p0.all_annotations().expect("all").len(),
        3,
        "nothing of the refused packs"
    );
    drop(p0);
    // Refused again on the next sync, still nothing applied, and statuses list them.
    let r = team.sync(0);
    assert_eq!((r.pulled_revisions, r.refused.len()), (0, bad.len()));
    assert_eq!(
        team.open(0).sync_refusals(None).expect("refusals").len(),
        bad.len()
    );
    team.sync(1);
    assert_eq!(team.hash(0), team.hash(2));
}

/// Replaces the first occurrence of `from` (same length as `to`) in `bytes`.
fn unsafe_replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    let mut out = bytes.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

fn a_push_killed_at_any_point_uploads_each_revision_once(backend: Backend) {
    let team = Team::new(backend, &[Role::Lead, Role::Annotator]);
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(team.create(1, i % IMAGES, f64::from(i)));
    }
    for (k, id) in ids.iter().enumerate().take(10) {
        team.update(1, *id, |v| v.bbox.y = k as f64);
    }
    let per_pack = 7;
    let mut options = team.options(1);
    options.pack_revisions = per_pack;
    // Kill the push at several points, alternating a write that never lands with one that lands
    // unacknowledged; each attempt gets a little further.
    for (attempt, k) in [1usize, 0, 2, 1, 3].into_iter().enumerate() {
        options.faults = Some(if attempt % 2 == 0 {
            Faults::writes_landing(k)
        } else {
            Faults::writes(k)
        });
        let err = team
            .sync_with(1, &options)
            .expect_err("the injected failure stops the push");
        assert!(matches!(err, SyncError::Injected(_)), "{err}");
    }
    options.faults = None;
    team.sync_with(1, &options).expect("the retry completes");
    // Every revision is in exactly one pack, and the chain is whole.
    let store = team.store();
    let c1 = team.open(1).client_id();
    let keys = store.list(&format!("log/{c1}"), None).expect("list");
    let mut seen = HashMap::new();
    let mut prev = None;
    for (i, key) in keys.iter().enumerate() {
        let p = pack::open(&store.get(key).expect("get").expect("pack")).expect("valid pack");
        assert_eq!(p.header.seq, i as u64 + 1);
        assert_eq!(p.header.prev, prev);
        prev = Some(p.hash.clone());
        for r in p.revisions {
            *seen.entry((r.annotation, r.hlc)).or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len(), 50);
    assert!(seen.values().all(|n| *n == 1), "a revision uploaded twice");
    let r = team.sync(0);
    assert_eq!(r.pulled_revisions, 50);
    assert!(r.refused.is_empty(), "{:?}", r.refused);
    assert_eq!(team.hash(0), team.hash(1));
    assert_eq!(team.sync(1).pushed_revisions, 0);
}

/// The packs of client `i` in the store: every one valid and in one chain; returns how many
/// times each revision was uploaded.
fn uploads_of(team: &Team, i: usize) -> HashMap<(Uuid, i64), usize> {
    let store = team.store();
    let client = team.open(i).client_id();
    let keys = store.list(&format!("log/{client}"), None).expect("list");
    let mut seen = HashMap::new();
    let mut prev = None;
    for (k, key) in keys.iter().enumerate() {
        let p = pack::open(&store.get(key).expect("get").expect("pack")).expect("valid pack");
        assert_eq!(p.header.seq, k as u64 + 1, "{key}");
        assert_eq!(p.header.prev, prev, "{key}: broken chain");
        prev = Some(p.hash.clone());
        for r in p.revisions {
            *seen.entry((r.annotation, r.hlc)).or_insert(0) += 1;
        }
    }
    seen
}

/// A worker killed after its pack landed and before it recorded it pulls before it pushes
/// again (`loupe worker` does): its own unrecorded pack must be adopted, not pulled and then
/// uploaded a second time in a pack every reader refuses as replayed.
fn a_push_killed_then_a_pull_first_uploads_each_revision_once(backend: Backend) {
    let team = Team::new(backend, &[Role::Lead, Role::Annotator]);
    for i in 0..5 {
        team.create(1, i % IMAGES, f64::from(i));
    }
    let mut options = team.options(1);
    options.faults = Some(Faults::writes_landing(0));
    let err = team
        .sync_with(1, &options)
        .expect_err("killed after the upload");
    assert!(matches!(err, SyncError::Injected(_)), "{err}");
    let pull_only = SyncOptions {
        push: false,
        ..team.options(1)
    };
    let r = team.sync_with(1, &pull_only).expect("pull");
    assert!(r.refused.is_empty(), "{:?}", r.refused);
    for i in 5..8 {
        team.create(1, i % IMAGES, f64::from(i));
    }
    let r = team.sync(1);
    assert_eq!(r.pushed_revisions, 8, "{r:?}");
    let seen = uploads_of(&team, 1);
    assert_eq!(seen.len(), 8);
    assert!(seen.values().all(|n| *n == 1), "a revision uploaded twice");
    let r = team.sync(0);
    assert_eq!(r.pulled_revisions, 8);
    assert!(r.refused.is_empty(), "{:?}", r.refused);
    assert!(r.held_back.is_empty(), "{:?}", r.held_back);
    assert_eq!(team.hash(0), team.hash(1));
    assert_eq!(team.sync(1).pushed_revisions, 0);
}

/// A shared run's coverage travels in a pack of lists after its proposals; killed after that
/// pack landed unrecorded, the next push (with new proposals first) adopts it instead of calling the
/// project a copy, and readers see the whole coverage once.
fn a_lists_pack_killed_unrecorded_is_adopted_by_the_next_push(backend: Backend) {
    use loupe::store::{NewRun, RunImageTiming};
    let team = Team::new(backend, &[Role::Lead, Role::Annotator]);
    let run = loupe::inference::team_run_id("team", "m", "s");
    let propose = |image: u32| {
        let mut p = team.open(1);
        p.create_shared_run(
            run,
            &NewRun {
                name: "team".into(),
                kind: "onnx".into(),
                model_hash: Some("m".into()),
                settings: "{}".into(),
                settings_hash: Some("s".into()),
                ..NewRun::default()
            },
        )
        .expect("run");
        let img = p
            .image_by_path(&format!("img/{image}.png"))
            .expect("lookup")
            .expect("image");
        p.add_proposals(
            run,
            img.id,
            &[("cat".into(), BBox::new(1.0, 2.0, 10.0, 8.0), 0.9)],
            RunImageTiming::default(),
        )
        .expect("proposals");
    };
    propose(0);
    let mut options = team.options(1);
    // Write 0 is the pack of proposals, write 1 the pack of coverage: it lands, unrecorded.
    options.faults = Some(Faults::writes_landing(1));
    let err = team
        .sync_with(1, &options)
        .expect_err("killed after the upload");
    assert!(matches!(err, SyncError::Injected(_)), "{err}");
    propose(1);
    let r = team.sync(1);
    assert_eq!(r.pushed_revisions, 1, "{r:?}");
    let seen = uploads_of(&team, 1);
    assert_eq!(seen.len(), 2);
    assert!(seen.values().all(|n| *n == 1), "a revision uploaded twice");
    let r = team.sync(0);
    assert!(r.refused.is_empty(), "{:?}", r.refused);
    assert!(r.held_back.is_empty(), "{:?}", r.held_back);
    let p0 = team.open(0);
    assert_eq!(p0.images_done_by_run(run).expect("done").len(), 2);
    assert_eq!(team.sync(1).pushed_packs, 0);
}

fn a_pull_killed_at_any_point_applies_each_pack_once(backend: Backend) {
    let team = Team::new(backend, &[Role::Lead, Role::Annotator]);
    for i in 0..30 {
        team.create(1, i % IMAGES, f64::from(i));
    }
    let mut options = team.options(1);
    options.pack_revisions = 4;
    team.sync_with(1, &options).expect("push");
    let mut options = team.options(0);
    let before = team.revisions(0);
    // Reads: the first is the roster, then one per pack; applies count revisions. 8 packs:
    // 1-2 land, 3 lands and 4 dies inside its transaction, 4 dies unread, 4-6 land and 7 dies
    // inside, 7 lands and 8 dies unread.
    let kills = [
        Faults::reads(3),
        Faults::applies(6),
        Faults::reads(1),
        Faults::applies(13),
        Faults::reads(2),
    ];
    for faults in kills {
        options.faults = Some(faults);
        let err = team
            .sync_with(0, &options)
            .expect_err("the injected failure stops the pull");
        assert!(matches!(err, SyncError::Injected(_)), "{err}");
    }
    options.faults = None;
    team.sync_with(0, &options).expect("the retry completes");
    assert_eq!(team.revisions(0), before + 30);
    assert_eq!(team.open(0).all_annotations().expect("all").len(), 30);
    assert_eq!(team.hash(0), team.hash(1));
    assert!(team.open(0).sync_refusals(None).expect("r").is_empty());
}

fn images_travel_by_content_hash(backend: Backend) {
    let team = Team::new(backend, &[Role::Lead, Role::Annotator]);
    // A third image only client 0 has.
    write_png(&team.dir.path().join("only0/x.png"), 30, 20, 99);
    {
        let mut p = team.open(0);
        loupe::ingest::add(&mut p, &[team.dir.path().join("only0")], &NoProgress).expect("add");
    }
    let id = {
        let mut p = team.open(0);
        let img = p.image_by_path("only0/x.png").expect("q").expect("img");
        let mut v = value(&p, 0, 1.0, ReviewState::Submitted);
        v.image = img.id;
        let id = Uuid::now_v7();
        p.apply(&[Edit::Create { id, value: v }]).expect("create");
        id
    };
    let mut options = team.options(0);
    options.images = true;
    let r = team.sync_with(0, &options).expect("push images");
    assert_eq!(r.images_pushed, IMAGES as usize + 1);
    assert!(
        team.store()
            .get(&format!(
                "images/{}",
                blake3::hash(&std::fs::read(team.dir.path().join("only0/x.png")).expect("read"))
                    .to_hex()
            ))
            .expect("get")
            .is_some()
    );
    // Client 1 lives elsewhere: move its project away from the shared image folder.
    let elsewhere = scratch();
    let moved = elsewhere.path().join("c1.loupe");
    std::fs::copy(&team.clients[1].path, &moved).expect("copy project");
    let mut options = team.options(1);
    options.images = true;
    let r = sync::sync_with(&moved, &options, &NoProgress).expect("pull with images");
    assert_eq!(r.images_pulled, 1, "{r:?}");
    let p = Project::open(&moved).expect("open");
    let a = p.annotation(id).expect("box");
    let img = p.image(a.value.image).expect("image");
    assert!(!img.missing);
    assert!(elsewhere.path().join("only0/x.png").is_file());
}

fn a_published_version_is_fixed_and_verifiable(backend: Backend) {
    let team = Team::new(backend, &[Role::Lead]);
    let id = team.create(0, 0, 1.0);
    team.update(0, id, |v| v.state = ReviewState::Approved);
    team.create(0, 1, 3.0);
    team.open(0).create_version("v1", "first").expect("version");
    team.create(0, 2, 5.0);
    let options = PublishOptions {
        spec: Some(team.spec.clone()),
        config_dir: Some(team.clients[0].config.clone()),
        ..PublishOptions::default()
    };
    let r = sync::publish(&team.clients[0].path, "v1", &options).expect("publish");
    assert_eq!((r.images, r.boxes), (u64::from(IMAGES), 2));
    let store = team.store();
    let roster = sync::team_show(
        &team.clients[0].path,
        None,
        Some(&team.spec),
        Some(&team.clients[0].config),
    )
    .expect("roster")
    .0;
    let m = sync::verify_published(&store, "v1", roster.as_ref()).expect("verifies");
    assert_eq!(m.box_count, 2);
    assert!(m.files.iter().any(|f| f.path == "coco/annotations.json"));
    assert!(m.files.iter().any(|f| f.path == "yolo/data.yaml"));
    assert!(m.images.iter().all(|i| i.blake3.is_some()));
    let coco = store
        .get("exports/v1/coco/annotations.json")
        .expect("get")
        .expect("coco");
    let coco: serde_json::Value = serde_json::from_slice(&coco).expect("json");
    assert_eq!(coco["annotations"].as_array().map(Vec::len), Some(2));
    // Immutable: a second publish is refused; a changed file is caught.
    assert!(sync::publish(&team.clients[0].path, "v1", &options).is_err());
    let yaml_key = "exports/v1/yolo/data.yaml";
    match backend {
        Backend::Folder => {
            let file = PathBuf::from(team.spec.url.trim_start_matches("file://")).join(yaml_key);
            std::fs::write(file, "names: {0: dog}\n").expect("tamper");
        }
        Backend::S3 => store
            .put_replace(yaml_key, Bytes::from_static(b"names: {0: dog}\n"))
            .expect("tamper"),
    }
    let err = sync::verify_published(&store, "v1", roster.as_ref()).expect_err("tampered export");
    assert!(err.to_string().contains("does not match"), "{err}");
}

fn sync_needs_a_roster_and_a_key_in_it(backend: Backend) {
    let team = Team::without_roster(backend, 2);
    let err = team.sync_with(0, &team.options(0)).expect_err("no roster");
    assert!(err.to_string().contains("team init"), "{err}");
    sync::team_init(
        &team.clients[0].path,
        None,
        Some(&team.spec),
        Some(&team.clients[0].config),
    )
    .expect("init");
    team.create(1, 0, 1.0);
    let err = team
        .sync_with(1, &team.options(1))
        .expect_err("key not in the roster");
    assert!(err.to_string().contains("not in the team roster"), "{err}");
    // Only the owner may change the roster.
    let change = RosterChange {
        user: "user1".into(),
        role: Role::Lead,
        key: team.key(1).public(),
    };
    assert!(
        sync::team_add(
            &team.clients[1].path,
            None,
            Some(&team.spec),
            Some(&team.clients[1].config),
            &change
        )
        .is_err()
    );
    team.add_member(1, Role::Annotator);
    assert_eq!(team.sync(1).pushed_revisions, 1);
}

// ---------------------------------------------------------------- trust

/// The roster member (user id, name) of client `i`'s key.
fn member_of(team: &Team, i: usize) -> (Uuid, String) {
    let roster = sync::team_show(
        &team.clients[0].path,
        None,
        Some(&team.spec),
        Some(&team.clients[0].config),
    )
    .expect("team show")
    .0
    .expect("a roster");
    let key = team.key(i).public();
    let m = roster.member_by_key(&key).expect("a member");
    (m.user, m.name.clone())
}

fn every_revision_is_its_signers(backend: Backend) {
    let team = Team::new(backend, &[Role::Lead, Role::Annotator]);
    team.create(0, 0, 1.0);
    team.sync(0);
    team.sync(1);
    let (owner_id, owner_name) = member_of(&team, 0);
    // Client 1 (an annotator) attributes a new box to the owner, whom its project knows from the
    // pull: what `loupe --user <owner id> import …` does.
    let forged = {
        let mut p = team.open(1);
        p.act_as(&owner_id.to_string()).expect("act as the owner");
        assert_eq!(p.current_user().expect("user").name, owner_name);
        let value = value(&p, 1, 5.0, ReviewState::Submitted);
        let id = Uuid::now_v7();
        p.apply(&[Edit::Create { id, value }]).expect("create");
        id
    };
    let r = team.sync(1);
    assert_eq!((r.pushed_revisions, r.reattributed), (1, 1), "{r:?}");
    assert!(r.is_clean(), "{r:?}");
    let r = team.sync(0);
    assert_eq!(r.pulled_revisions, 1);
    let history = team.open(0).history(forged).expect("history");
    let (_, signer_name) = member_of(&team, 1);
    assert_eq!(
        history
            .iter()
            .map(|h| h.author.as_str())
            .collect::<Vec<_>>(),
        [signer_name.as_str()],
        "history names the signer, not the owner"
    );
    // Here the act stays as it was made: it never crossed the wire.
    let here = team.open(1).history(forged).expect("history");
    assert_eq!(here[0].author, owner_name);

    // A pack signed with client 1's key whose revision names the owner is refused whole, the
    // message naming both; the valid rest still applies and the sync says it refused something.
    let store = team.store();
    let c1 = team.open(1).client_id();
    let real = pack::open(
        &store
            .get(&pack::pack_key(c1, 1))
            .expect("get")
            .expect("client 1's pack"),
    )
    .expect("valid");
    let mut rev = real.revisions[0].clone();
    rev.annotation = Uuid::now_v7();
    rev.author = pack::NamedRef {
        id: owner_id,
        name: owner_name.clone(),
    };
    let client = Uuid::now_v7();
    store
        .put_new(
            &pack::pack_key(client, 1),
            Bytes::from(forge(client, 1, None, &team.key(1), &[rev])),
        )
        .expect("put");
    team.create(1, 2, 7.0);
    team.sync(1);
    let r = team.sync(0);
    assert_eq!(r.pulled_revisions, 1, "{r:?}");
    assert_eq!(r.refused.len(), 1, "{r:?}");
    let reason = &r.refused[0].reason;
    assert!(reason.contains("forged author"), "{reason}");
    assert!(
        reason.contains(&owner_name) && reason.contains(&signer_name),
        "{reason}"
    );
    assert!(!r.is_clean());
}

fn a_foreign_object_in_the_next_place_is_written_past(backend: Backend) {
    let team = Team::new(backend, &[Role::Lead, Role::Annotator, Role::Annotator]);
    let store = team.store();
    team.create(1, 0, 1.0);
    team.sync(1);
    team.create(2, 1, 2.0);
    team.sync(2);
    let (c1, c2) = (team.open(1).client_id(), team.open(2).client_id());
    // Client 2's pack copied into client 1's next place, and a stray file after it.
    let copied = store
        .get(&pack::pack_key(c2, 1))
        .expect("get")
        .expect("client 2's pack");
    assert!(store.put_new(&pack::pack_key(c1, 2), copied).expect("put"));
    assert!(
        store
            .put_new(&pack::pack_key(c1, 3), Bytes::from_static(b"hello"))
            .expect("put")
    );
    let late = team.create(1, 2, 3.0);
    let r = team.sync(1);
    assert_eq!(r.pushed_revisions, 1, "{r:?}");
    assert_eq!(r.written_past.len(), 2, "{r:?}");
    assert!(
        r.written_past[0].contains(&pack::pack_key(c1, 2))
            && r.written_past[0].contains("replayed"),
        "{:?}",
        r.written_past
    );
    assert!(!r.is_clean());
    assert!(
        store.get(&pack::pack_key(c1, 4)).expect("get").is_some(),
        "written at the next free place"
    );
    // Readers refuse both objects, and still get the pack written past them.
    let r = team.sync(0);
    assert_eq!(r.pulled_revisions, 3, "{r:?}");
    assert_eq!(r.refused.len(), 2, "{:#?}", r.refused);
    assert!(team.open(0).annotation(late).is_ok());
    // Once past them, nobody meets them again, and pushes go on.
    let r = team.sync(0);
    assert!(r.is_clean(), "{r:?}");
    team.create(1, 0, 9.0);
    let r = team.sync(1);
    assert!(r.is_clean() && r.pushed_revisions == 1, "{r:?}");
    team.sync(0);
    team.sync(2);
    assert_eq!(team.hash(0), team.hash(1));
    assert_eq!(team.hash(0), team.hash(2));
}

fn a_lost_pack_is_restored_by_its_author_and_missed_loudly_until_then(backend: Backend) {
    let team = Team::new(backend, &[Role::Lead, Role::Annotator, Role::Annotator]);
    let store = team.store();
    let first = team.create(1, 0, 1.0);
    team.sync(1);
    let second = team.create(1, 1, 2.0);
    team.sync(1);
    let c1 = team.open(1).client_id();
    store.delete(&pack::pack_key(c1, 1)).expect("delete");
    // A reader finds the gap: it says whose revisions are missing and fails.
    let r = team.sync(2);
    assert_eq!(r.pulled_revisions, 0, "{r:?}");
    assert!(!r.is_clean());
    let (_, name) = member_of(&team, 1);
    assert_eq!(r.held_back.len(), 1, "{r:?}");
    assert!(
        r.held_back[0].contains(&name) && r.held_back[0].contains("missing"),
        "{:?}",
        r.held_back
    );
    // Its author uploads the very same pack again; then everyone has both boxes.
    let r = team.sync(1);
    assert_eq!(r.restored, [pack::pack_key(c1, 1)], "{r:?}");
    let r = team.sync(2);
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.pulled_revisions, 2);
    let p2 = team.open(2);
    assert!(p2.annotation(first).is_ok() && p2.annotation(second).is_ok());
}

fn a_bad_roster_does_not_stop_the_team(backend: Backend) {
    let team = Team::new(backend, &[Role::Lead, Role::Annotator]);
    let store = team.store();
    team.sync(0);
    team.sync(1);
    // Someone edits the roster: the annotator makes themself a lead.
    let bytes = store
        .get(sync::roster::ROSTER_KEY)
        .expect("get")
        .expect("roster");
    let edited = String::from_utf8(bytes.to_vec())
        .expect("utf8")
        .replace("annotator", "lead");
    store
        .put_replace(sync::roster::ROSTER_KEY, Bytes::from(edited))
        .expect("put");
    // Everyone keeps working with the roster they verified last, and is told.
    team.create(1, 0, 1.0);
    let r = team.sync(1);
    assert_eq!(r.pushed_revisions, 1, "{r:?}");
    let problem = r.roster_problem.clone().expect("the problem is reported");
    assert!(
        problem.contains("signature") && problem.contains("team republish"),
        "{problem}"
    );
    assert!(!r.is_clean());
    let r = team.sync(0);
    assert_eq!(r.pulled_revisions, 1);
    let (roster, _, problem) = sync::team_show(
        &team.clients[1].path,
        None,
        Some(&team.spec),
        Some(&team.clients[1].config),
    )
    .expect("team show works");
    assert!(problem.is_some());
    let roster = roster.expect("the last verified roster");
    assert_eq!(
        roster
            .member_by_key(&team.key(1).public())
            .expect("member")
            .role,
        Role::Annotator,
        "the edit is not believed"
    );
    // Only the owner can put the good roster back; one command does.
    assert!(
        sync::team_republish(
            &team.clients[1].path,
            None,
            Some(&team.spec),
            Some(&team.clients[1].config)
        )
        .is_err()
    );
    sync::team_republish(
        &team.clients[0].path,
        None,
        Some(&team.spec),
        Some(&team.clients[0].config),
    )
    .expect("republish");
    let r = team.sync(1);
    assert!(r.is_clean(), "{r:?}");
    // And a roster deleted from the store is the same story.
    store.delete(sync::roster::ROSTER_KEY).expect("delete");
    let r = team.sync(1);
    assert!(
        r.roster_problem
            .as_deref()
            .is_some_and(|p| p.contains("missing")),
        "{r:?}"
    );
}

fn a_roster_from_another_owner_is_refused(backend: Backend) {
    let team = Team::new(backend, &[Role::Lead, Role::Annotator]);
    let store = team.store();
    let owner = team.key(0).public();
    // First contact with the owner's key given: a store whose roster that key signed is taken.
    let mut fresh = Project::create(&team.dir.path().join("fresh.loupe")).expect("create");
    sync::remote_add(&mut fresh, "origin", &team.spec, Some(&owner)).expect("the right owner");
    // With another key it is refused.
    let mallory = Identity::generate();
    let err = sync::remote_add(&mut fresh, "other", &team.spec, Some(&mallory.public()))
        .expect_err("another owner");
    assert!(err.to_string().contains("refusing"), "{err}");
    drop(fresh);
    // Without it, the first owner seen is pinned: a roster signed by someone else later is
    // refused loudly, while the pinned one keeps the team working.
    team.sync(1);
    let theirs = sync::Roster::new(Uuid::now_v7(), "mallory", mallory.public());
    store
        .put_replace(
            sync::roster::ROSTER_KEY,
            Bytes::from(theirs.seal(&mallory).expect("seal")),
        )
        .expect("put");
    team.create(1, 0, 1.0);
    let r = team.sync(1);
    let problem = r.roster_problem.clone().expect("refused loudly");
    assert!(
        problem.contains(&mallory.public().to_string()) && problem.contains("someone else"),
        "{problem}"
    );
    assert_eq!(r.pushed_revisions, 1);
    // A project that pinned the real owner on `remote add` refuses it at its first sync.
    let path = team.dir.path().join("fresh.loupe");
    let options = SyncOptions {
        spec: Some(team.spec.clone()),
        config_dir: Some(team.clients[0].config.clone()),
        ..SyncOptions::default()
    };
    let err = sync::sync_with(&path, &options, &NoProgress).expect_err("refused");
    assert!(err.to_string().contains("someone else"), "{err}");
}

fn a_clock_far_ahead_is_refused_until_ours_catches_up(backend: Backend) {
    let team = Team::new(backend, &[Role::Lead, Role::Annotator]);
    let store = team.store();
    team.create(1, 0, 1.0);
    team.sync(1);
    let c1 = team.open(1).client_id();
    let real = pack::open(
        &store
            .get(&pack::pack_key(c1, 1))
            .expect("get")
            .expect("pack"),
    )
    .expect("valid");
    let now = loupe::store::now_ms();
    let stamped = |lead_ms: i64| {
        let mut r = real.revisions[0].clone();
        r.annotation = Uuid::now_v7();
        r.hlc = (now + lead_ms) << 16;
        r
    };
    let ahead = stamped(sync::MAX_CLOCK_LEAD_MS + 3_600_000);
    let near = stamped(60_000);
    for r in [&ahead, &near] {
        let client = Uuid::now_v7();
        store
            .put_new(
                &pack::pack_key(client, 1),
                Bytes::from(forge(
                    client,
                    1,
                    None,
                    &team.key(1),
                    std::slice::from_ref(r),
                )),
            )
            .expect("put");
    }
    let r = team.sync(0);
    assert_eq!(
        r.pulled_revisions, 2,
        "client 1's box and the one a minute ahead"
    );
    assert_eq!(r.refused.len(), 1, "{r:?}");
    assert!(r.refused[0].reason.contains("clock ahead"), "{r:?}");
    let p0 = team.open(0);
    assert!(p0.annotation(ahead.annotation).is_err());
    assert!(p0.annotation(near.annotation).is_ok());
    // The clock was not dragged along: the next local edit is stamped before the refused one.
    let id = team.create(0, 1, 4.0);
    let hlc = team.open(0).history(id).expect("history")[0].hlc;
    assert!(hlc < ahead.hlc);
}

// ---------------------------------------------------------------- convergence

#[derive(Clone, Debug)]
enum Op {
    Create {
        client: usize,
        image: u32,
    },
    Move {
        client: usize,
        pick: usize,
        x: u8,
    },
    State {
        client: usize,
        pick: usize,
        state: usize,
    },
    Delete {
        client: usize,
        pick: usize,
    },
    Resolve {
        client: usize,
        take: bool,
    },
    Sync {
        client: usize,
        max_packs: Option<usize>,
        seed: u64,
    },
    Offline {
        client: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..3usize;
    prop_oneof![
        1 => (c.clone(), 0..IMAGES).prop_map(|(client, image)| Op::Create { client, image }),
        4 => (c.clone(), any::<usize>(), any::<u8>()).prop_map(|(client, pick, x)| Op::Move { client, pick, x }),
        3 => (c.clone(), any::<usize>(), 0..4usize).prop_map(|(client, pick, state)| Op::State { client, pick, state }),
        1 => (c.clone(), any::<usize>()).prop_map(|(client, pick)| Op::Delete { client, pick }),
        2 => (c.clone(), any::<bool>()).prop_map(|(client, take)| Op::Resolve { client, take }),
        4 => (c.clone(), proptest::option::of(1..3usize), any::<u64>())
            .prop_map(|(client, max_packs, seed)| Op::Sync { client, max_packs, seed }),
        1 => c.prop_map(|client| Op::Offline { client }),
    ]
}

/// Accepts an edit the review policy refused; fails on anything else.
fn reviewed(result: Result<(), loupe::store::StoreError>) {
    match result {
        Ok(()) | Err(loupe::store::StoreError::Refused { .. }) => {}
        Err(e) => panic!("edit failed: {e}"),
    }
}

fn pick(team: &Team, client: usize, pick: usize) -> Option<Uuid> {
    let all = team.open(client).all_annotations().expect("all");
    (!all.is_empty()).then(|| all[pick % all.len()].id)
}

fn converge(backend: Backend, ops: &[Op]) {
    // Owner lead, a reviewer, an annotator whose approvals and resolutions are refused.
    let team = Team::new(backend, &[Role::Lead, Role::Reviewer, Role::Annotator]);
    // A few boxes everyone has, so that edits can cross.
    for image in 0..IMAGES {
        team.create(0, image, 1.0);
    }
    for client in 0..3 {
        team.sync(client);
    }
    let mut online = [true; 3];
    for op in ops {
        match *op {
            Op::Create { client, image } => {
                team.create(client, image, 1.0);
            }
            // Edits the review rules refuse (changing approved ground truth) are skipped:
            // those rules are not under test here.
            Op::Move { client, pick: p, x } => {
                if let Some(id) = pick(&team, client, p) {
                    reviewed(team.try_update(client, id, |v| v.bbox.x = f64::from(x)));
                }
            }
            Op::State {
                client,
                pick: p,
                state,
            } => {
                if let Some(id) = pick(&team, client, p) {
                    let from = team.open(client).annotation(id).expect("box").value.state;
                    // Local users are leads: every legal change is open to them.
                    let targets = loupe::review::allowed_targets(from, Role::Lead);
                    if !targets.is_empty() {
                        let to = targets[state % targets.len()];
                        team.update(client, id, |v| v.state = to);
                    }
                }
            }
            Op::Delete { client, pick: p } => {
                if let Some(id) = pick(&team, client, p) {
                    reviewed(team.open(client).apply(&[Edit::Delete { id }]).map(drop));
                }
            }
            Op::Resolve { client, take } => {
                let conflicts = team.open(client).sync_conflicts().expect("conflicts");
                if let Some(c) = conflicts.first() {
                    let label = if take { "B" } else { "A" };
                    let r = sync::resolve_conflict(
                        &team.clients[client].path,
                        None,
                        Some(&team.clients[client].config),
                        c.annotation,
                        label,
                    );
                    if client == 2 {
                        assert!(matches!(r, Err(SyncError::NotPermitted(_))), "{r:?}");
                    } else {
                        r.expect("a lead or reviewer resolves");
                    }
                }
            }
            Op::Sync {
                client,
                max_packs,
                seed,
            } => {
                if online[client] {
                    let mut o = team.options(client);
                    o.max_packs = max_packs;
                    o.shuffle_seed = Some(seed);
                    o.pack_revisions = 3;
                    team.sync_with(client, &o).expect("sync");
                }
            }
            Op::Offline { client } => online[client] = !online[client],
        }
    }
    for _round in 0..2 {
        for client in 0..3 {
            team.sync(client);
        }
    }
    let hashes: Vec<String> = (0..3).map(|i| team.hash(i)).collect();
    assert_eq!(hashes[0], hashes[1], "{ops:#?}");
    assert_eq!(hashes[1], hashes[2], "{ops:#?}");
    let views: Vec<_> = (0..3).map(|i| visible(&team.open(i))).collect();
    assert_eq!(views[0], views[1]);
    assert_eq!(views[1], views[2]);
    let conflicts: Vec<usize> = (0..3)
        .map(|i| team.open(i).sync_conflicts().expect("c").len())
        .collect();
    assert!(
        conflicts.iter().all(|c| *c == conflicts[0]),
        "{conflicts:?}"
    );
    for i in 0..3 {
        let r = team.sync(i);
        assert_eq!(
            (r.pushed_revisions, r.pulled_revisions),
            (0, 0),
            "quiescent"
        );
        assert!(
            team.open(i)
                .sync_refusals(None)
                .expect("r")
                .iter()
                .all(|r| r.annotation.is_some()),
            "only role refusals, never a whole pack"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn three_clients_converge_on_a_folder(ops in proptest::collection::vec(op(), 5..30)) {
        converge(Backend::Folder, &ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn three_clients_converge_on_s3(ops in proptest::collection::vec(op(), 5..20)) {
        converge(Backend::S3, &ops);
    }
}

/// The S3 server here honours create-if-absent: of racing writers exactly one wins.
#[test]
fn s3_create_if_absent_has_one_winner() {
    let dir = scratch();
    let spec = remote_spec(Backend::S3, dir.path());
    for round in 0..3 {
        let key = format!("race/{round}");
        let wins: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..6)
                .map(|i| {
                    let spec = spec.clone();
                    let key = key.clone();
                    s.spawn(move || {
                        let store = RemoteStore::open(&spec, None).expect("store");
                        usize::from(store.put_new(&key, Bytes::from(vec![i; 10])).expect("put"))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).sum()
        });
        assert_eq!(wins, 1, "round {round}");
    }
}

// ---------------------------------------------------------------- the command line

#[test]
fn the_command_line_drives_a_team() {
    use crate::support::loupe;
    let dir = scratch();
    for i in 0..2 {
        write_png(&dir.path().join(format!("img/{i}.png")), 40, 30, i + 10);
    }
    let remote = dir.path().join("shared");
    let run = |who: &str, args: &[&str]| -> String {
        let out = loupe()
            .current_dir(dir.path())
            .env("LOUPE_CONFIG_DIR", dir.path().join(format!("cfg-{who}")))
            .args(["--project", &format!("{who}.loupe")])
            .args(args)
            .output()
            .expect("run loupe");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "loupe {args:?} failed: {text}");
        text
    };
    for who in ["olga", "ann"] {
        run(who, &["init", &format!("{who}.loupe")]);
        run(who, &["add", "img"]);
        run(
            who,
            &["remote", "add", "origin", remote.to_str().expect("utf8")],
        );
    }
    run("olga", &["team", "init"]);
    let ann_key = run("ann", &["team", "key"]).trim().to_owned();
    run(
        "olga",
        &[
            "team",
            "add",
            "ann",
            "--role",
            "annotator",
            "--key",
            &ann_key,
        ],
    );
    // Adding ann to the roster does not make ann the current user of olga's project.
    let me = Project::open(&dir.path().join("olga.loupe"))
        .expect("open")
        .current_user()
        .expect("user");
    assert_ne!(me.name, "ann");
    let shown = run("olga", &["team", "show"]);
    assert!(
        shown.contains("ann") && shown.contains("annotator"),
        "{shown}"
    );
    run("olga", &["debug-gen-revisions", "25"]);
    let out = run("olga", &["sync"]);
    assert!(out.contains("pushed 25 revisions"), "{out}");
    let out = run("ann", &["sync"]);
    assert!(out.contains("pulled 25 revisions"), "{out}");
    let status = run("ann", &["sync", "status"]);
    assert!(status.contains("pending    0"), "{status}");
    assert!(status.contains("annotator"), "{status}");
    run("olga", &["version", "create", "v1"]);
    let out = run("olga", &["publish", "v1"]);
    assert!(out.contains("published v1"), "{out}");
    let out = run("olga", &["publish", "v1", "--verify"]);
    assert!(out.contains("verified"), "{out}");
    let json = run("ann", &["sync", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["packs_pulled"], 1);
}

/// `loupe --user <someone else> …; loupe sync` cannot put words in another member's mouth, and a
/// sync that refused anything says so first and exits non-zero, having applied the rest.
#[test]
fn the_command_line_keeps_authors_and_fails_on_refusals() {
    use crate::support::loupe;
    let dir = scratch();
    write_png(&dir.path().join("img/0.png"), 40, 30, 21);
    let remote = dir.path().join("shared");
    let cmd = |who: &str, args: &[&str]| {
        // Both streams into one pipe, in the order they were written.
        let mut c = Command::new("sh");
        c.current_dir(dir.path())
            .env("LOUPE_CONFIG_DIR", dir.path().join(format!("cfg-{who}")))
            .arg("-c")
            .arg("exec \"$0\" \"$@\" 2>&1")
            .arg(loupe().get_program())
            .args(["--project", &format!("{who}.loupe")])
            .args(args);
        c.env_remove("LOUPE_PROJECT");
        let out = c.output().expect("run loupe");
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let run = |who: &str, args: &[&str]| -> String {
        let (status, text) = cmd(who, args);
        assert!(status.success(), "loupe {args:?} failed: {text}");
        text
    };
    for who in ["olga", "ann"] {
        run(who, &["init", &format!("{who}.loupe")]);
        run(who, &["add", "img"]);
        run(
            who,
            &["remote", "add", "origin", remote.to_str().expect("utf8")],
        );
    }
    run("olga", &["team", "init"]);
    let ann_key = run("ann", &["team", "key"]).trim().to_owned();
    run(
        "olga",
        &[
            "team",
            "add",
            "ann",
            "--role",
            "annotator",
            "--key",
            &ann_key,
        ],
    );
    run("olga", &["debug-gen-revisions", "2"]);
    run("olga", &["sync"]);
    run("ann", &["sync"]);
    let olga = Project::open(&dir.path().join("olga.loupe"))
        .expect("open")
        .current_user()
        .expect("user");
    // Ann writes boxes in olga's name, then syncs.
    run(
        "ann",
        &["--user", &olga.id.to_string(), "debug-gen-revisions", "3"],
    );
    let out = run("ann", &["sync"]);
    assert!(out.contains("pushed 3 revisions"), "{out}");
    assert!(out.contains("pushed as yours"), "{out}");
    let out = run("olga", &["sync"]);
    assert!(out.contains("pulled 3 revisions"), "{out}");
    let p = Project::open(&dir.path().join("olga.loupe")).expect("open");
    let mut authors: Vec<String> = p
        .all_annotations()
        .expect("boxes")
        .iter()
        .map(|a| p.history(a.id).expect("history")[0].author.clone())
        .collect();
    authors.sort();
    assert_eq!(
        authors,
        ["ann", "ann", "ann", olga.name.as_str(), olga.name.as_str()]
    );
    drop(p);

    // A tampered pack in the store: olga's sync applies ann's valid new pack, says what it
    // refused before its summary, and exits non-zero.
    let store = RemoteStore::open(
        &RemoteSpec::new(format!("file://{}", remote.display())),
        None,
    )
    .expect("store");
    let ann_client = Project::open(&dir.path().join("ann.loupe"))
        .expect("open")
        .client_id();
    let first = store
        .get(&pack::pack_key(ann_client, 1))
        .expect("get")
        .expect("ann's pack");
    run("ann", &["debug-gen-revisions", "1"]);
    run("ann", &["sync"]);
    let stranger = Uuid::now_v7();
    let mut bad = first.to_vec();
    let n = bad.len();
    bad[n - 80] ^= 1;
    store
        .put_new(&pack::pack_key(stranger, 1), Bytes::from(bad))
        .expect("put");
    let (status, out) = cmd("olga", &["sync"]);
    assert_eq!(status.code(), Some(1), "{out}");
    let refused = out.find("refused: pack").expect("the refusal is said");
    let summary = out
        .find("pulled 1 revisions")
        .expect("the valid pack applied");
    assert!(refused < summary, "refusals come first: {out}");
    // Still refused on the next sync, in JSON too.
    let out = loupe()
        .current_dir(dir.path())
        .env("LOUPE_CONFIG_DIR", dir.path().join("cfg-olga"))
        .args(["--project", "olga.loupe", "sync", "--json"])
        .output()
        .expect("run loupe");
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["refused"].as_array().map(Vec::len), Some(1));
}

/// The app's situation: a long-open connection (the store writer) keeps editing while another
/// thread syncs the same file. No edit fails with SQLITE_BUSY, the pull applies every
/// revision, and the last edit is the box's value (the cache agrees with the log).
#[test]
fn edits_on_one_connection_and_a_sync_on_another_do_not_collide() {
    let team = Team::new(Backend::Folder, &[Role::Lead, Role::Annotator]);
    {
        let mut p = team.open(1);
        sync::debug_generate_revisions(&mut p, 20_000).expect("generate");
    }
    team.sync(1);
    let id = team.create(0, 0, 1.0);
    let mut editor = team.open(0);
    let path = team.clients[0].path.clone();
    let options = team.options(0);
    let syncer = std::thread::spawn(move || sync::sync_with(&path, &options, &NoProgress));
    let mut n = 0u32;
    let mut last_x = 0.0;
    while !syncer.is_finished() || n < 20 {
        let mut v = editor.annotation(id).expect("box").value;
        last_x = f64::from(n % 40) + 2.0;
        v.bbox.x = last_x;
        editor
            .apply(&[Edit::Update {
                id,
                value: v,
                note: None,
            }])
            .expect("an edit while the sync writes");
        n += 1;
    }
    let report = syncer.join().expect("sync thread").expect("sync");
    assert_eq!(report.pulled_revisions, 20_000);
    drop(editor);
    let mut p = team.open(0);
    assert_eq!(p.annotation(id).expect("box").value.bbox.x, last_x);
    assert_eq!(p.rebuild_current().expect("rebuild"), 0);
}

/// Frames of a multi-frame DICOM file and slices of a series travel as their files, once each,
/// and a client that pulls them gets the stacks back (membership is read from the files, as
/// `add` reads it; it is not in the packs).
#[test]
fn frames_travel_as_their_files_and_come_back_as_stacks() {
    let team = Team::new(Backend::Folder, &[Role::Lead, Role::Annotator]);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dicom_series");
    let stack = team.dir.path().join("stack0");
    std::fs::create_dir_all(stack.join("ct")).expect("mkdir");
    std::fs::copy(
        fixtures.join("multiframe.dcm"),
        stack.join("multiframe.dcm"),
    )
    .expect("copy");
    for i in 0..6 {
        let name = format!("IM000{i}.dcm");
        std::fs::copy(
            fixtures.join("ct_axial").join(&name),
            stack.join("ct").join(&name),
        )
        .expect("copy slice");
    }
    {
        let mut p = team.open(0);
        loupe::ingest::add(&mut p, std::slice::from_ref(&stack), &NoProgress).expect("add");
    }
    // Boxes on frame 3 of the file and on two slices of the series.
    let labelled = [
        "stack0/multiframe.dcm#frame=0003",
        "stack0/ct/IM0002.dcm",
        "stack0/ct/IM0004.dcm",
    ];
    {
        let mut p = team.open(0);
        for path in labelled {
            let img = p.image_by_path(path).expect("q").expect(path);
            let mut v = value(&p, 0, 1.0, ReviewState::Submitted);
            v.image = img.id;
            v.bbox = BBox::new(1.0, 1.0, 4.0, 4.0);
            p.apply(&[Edit::Create {
                id: Uuid::now_v7(),
                value: v,
            }])
            .expect("create");
        }
    }
    let mut options = team.options(0);
    options.images = true;
    team.sync_with(0, &options).expect("push images");
    let file_hash = |path: &Path| {
        blake3::hash(&std::fs::read(path).expect("read"))
            .to_hex()
            .to_string()
    };
    let store = team.store();
    assert!(
        store
            .get(&format!(
                "images/{}",
                file_hash(&stack.join("multiframe.dcm"))
            ))
            .expect("get")
            .is_some(),
        "the multi-frame file is stored once under its own hash"
    );

    let elsewhere = scratch();
    let moved = elsewhere.path().join("c1.loupe");
    std::fs::copy(&team.clients[1].path, &moved).expect("copy project");
    let mut options = team.options(1);
    options.images = true;
    let r = sync::sync_with(&moved, &options, &NoProgress).expect("pull with images");
    assert_eq!(r.images_pulled, 3, "one file per labelled file: {r:?}");
    assert_eq!(
        file_hash(&elsewhere.path().join("stack0/multiframe.dcm")),
        file_hash(&stack.join("multiframe.dcm"))
    );
    let p = Project::open(&moved).expect("open");
    let rows = p
        .list_images(&loupe::store::ImageFilter::default())
        .expect("list");
    let frames: Vec<_> = rows
        .iter()
        .filter(|r| r.stack.as_deref() == Some("file:stack0/multiframe.dcm"))
        .collect();
    assert_eq!(frames.len(), 5, "every frame of the pulled file: {rows:#?}");
    let third = frames
        .iter()
        .find(|r| r.path == "stack0/multiframe.dcm#frame=0003")
        .expect("frame 3");
    assert_eq!((third.frame, third.missing, third.boxes), (2, false, 1));
    let mut slices: Vec<_> = rows
        .iter()
        .filter(|r| r.stack.as_deref() == Some("series:1.2.826.0.1.3680043.10.1234.1"))
        .collect();
    slices.sort_by_key(|r| r.frame);
    assert_eq!(
        slices
            .iter()
            .map(|r| (r.path.as_str(), r.frame, r.missing))
            .collect::<Vec<_>>(),
        [
            ("stack0/ct/IM0002.dcm", 0, false),
            ("stack0/ct/IM0004.dcm", 1, false)
        ],
        "the slices that arrived, ordered by position along the normal"
    );
}
