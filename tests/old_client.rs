//! What a Loupe that predates box attributes wrote (`tests/data/old_client`, see its README):
//! the project opens and upgrades, reads and exports byte for byte as that Loupe exported it, and
//! its signed packs (format 1) verify and merge into a project of this Loupe.

use std::path::{Path, PathBuf};

use loupe::store::Project;
use tempfile::TempDir;

use crate::support::{loupe, ok, s};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/old_client")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A writable copy of the fixture (opening a project upgrades it in place).
fn fixture() -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(&fixture_dir(), dir.path());
    dir
}

fn schema_version(project: &Path) -> i64 {
    let conn = rusqlite::Connection::open(project).expect("sqlite");
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version")
}

#[test]
fn an_old_project_opens_upgrades_and_reads_as_before() {
    let dir = fixture();
    let p = dir.path().join("olga.loupe");
    assert_eq!(schema_version(&p), 4, "the fixture predates attributes");

    let mut project = Project::open(&p).expect("an old project opens");
    assert!(schema_version(&p) > 4, "and is upgraded");
    let anns = project.all_annotations().expect("annotations");
    assert_eq!(anns.len(), 7);
    assert!(anns.iter().all(|a| a.value.attributes.is_empty()));
    for a in &anns {
        let history = project.history(a.id).expect("history");
        assert!(!history.is_empty());
        assert_eq!(history.last().expect("newest").value, a.value);
    }
    // The cache still agrees with the log, column for column.
    assert_eq!(project.rebuild_current().expect("rebuild"), 0);
    assert_eq!(project.labels_at(Some("v1")).expect("v1").len(), 1);
    let diff = project.diff_versions("v1", "current").expect("diff");
    assert_eq!(
        (diff.added.len(), diff.changed.len(), diff.removed.len()),
        (6, 0, 0)
    );
    drop(project);
    assert!(ok(&p, &["check"]).starts_with("ok:"));

    // Exports are byte for byte what the old Loupe wrote.
    let expected = fixture_dir().join("expected");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    ok(
        &p,
        &[
            "export",
            "--format",
            "coco",
            "--allow-missing",
            s(&out.join("current.json")),
        ],
    );
    ok(
        &p,
        &[
            "export",
            "--format",
            "coco",
            "--version",
            "v1",
            "--allow-missing",
            s(&out.join("v1.json")),
        ],
    );
    ok(
        &p,
        &[
            "export",
            "--format",
            "cvat",
            "--images",
            "none",
            "--allow-missing",
            s(&out.join("current.cvat.xml")),
        ],
    );
    for name in ["current.json", "v1.json", "current.cvat.xml"] {
        let ours = std::fs::read_to_string(out.join(name)).expect("ours");
        let theirs = std::fs::read_to_string(expected.join(name)).expect("theirs");
        assert_eq!(ours, theirs, "{name} differs from the old Loupe's export");
    }
}

#[test]
fn an_old_clients_packs_verify_and_merge() {
    let dir = fixture();
    let run = |args: &[&str]| -> String {
        let out = loupe()
            .current_dir(dir.path())
            .env("LOUPE_CONFIG_DIR", dir.path().join("cfg-ann"))
            .args(["--project", "ann.loupe"])
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
    run(&["init", "ann.loupe"]);
    run(&["remote", "add", "origin", s(&dir.path().join("shared"))]);
    let out = run(&["sync"]);
    assert!(out.contains("pulled 7 revisions in 1 packs"), "{out}");
    // The state hash the old client printed after pushing: the same boxes, hashed the same way.
    assert!(out.contains("state ac1032a7af25e5d7"), "{out}");
    let status = run(&["sync", "status"]);
    assert!(status.contains("refused    0"), "{status}");
    let ann = Project::open(&dir.path().join("ann.loupe")).expect("open");
    let olga = Project::open(&dir.path().join("olga.loupe")).expect("open");
    let boxes = |p: &Project| {
        let mut v: Vec<_> = p
            .all_annotations()
            .expect("annotations")
            .into_iter()
            .map(|a| (a.id, a.value.bbox.x, a.value.bbox.y, a.value.state))
            .collect();
        v.sort_by_key(|b| b.0);
        v
    };
    assert_eq!(boxes(&ann), boxes(&olga));
    assert_eq!(boxes(&ann).len(), 7);
}
