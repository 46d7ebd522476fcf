//! Unit tests of the project store.

use super::*;
use crate::model::{AnnotationValue, BBox, ReviewState, Source};

fn project() -> (tempfile::TempDir, Project) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Project::create(&dir.path().join("t.loupe")).expect("create");
    (dir, p)
}

fn add_image(p: &mut Project, path: &str) -> Uuid {
    let mut bulk = p.bulk().expect("bulk");
    bulk.upsert_image(&ImageInput {
        path: path.into(),
        hash: Some(blake3::hash(path.as_bytes()).to_hex().to_string()),
        width: 100,
        height: 80,
        bytes: 10,
        external_id: None,
    })
    .expect("upsert");
    bulk.commit().expect("commit");
    p.image_by_path(path).expect("query").expect("image").id
}

fn value(image: Uuid, class: Uuid, x: f64) -> AnnotationValue {
    AnnotationValue {
        image,
        class,
        bbox: BBox::new(x, 1.0, 10.0, 10.0),
        source: Source::Human,
        state: ReviewState::Submitted,
        flags: BoxFlags::default(),
        deleted: false,
    }
}

#[test]
fn every_edit_appends_a_revision_and_updates_the_cache() {
    let (_d, mut p) = project();
    let img = add_image(&mut p, "a.png");
    let cat = p.ensure_class("cat").expect("class");
    let dog = p.ensure_class("dog").expect("class");
    let id = Uuid::now_v7();
    p.apply(&[Edit::Create {
        id,
        value: value(img, cat.id, 1.0),
    }])
    .expect("create");
    let mut v = value(img, dog.id, 5.0);
    p.apply(&[Edit::Update {
        id,
        value: v.clone(),
        note: None,
    }])
    .expect("update");
    v.state = ReviewState::Approved;
    p.apply(&[Edit::Update {
        id,
        value: v.clone(),
        note: None,
    }])
    .expect("state");
    assert_eq!(p.annotation(id).expect("ann").value, v);
    p.apply(&[Edit::Delete { id }]).expect("delete");
    assert!(p.annotations_for_image(img).expect("list").is_empty());
    let h = p.history(id).expect("history");
    assert_eq!(h.len(), 4);
    assert_eq!(
        h.iter().map(|r| r.op.as_str()).collect::<Vec<_>>(),
        ["create", "update", "update", "delete"]
    );
    assert!(h.windows(2).all(|w| w[0].hlc < w[1].hlc));
}

#[test]
fn rebuilding_the_cache_from_the_log_gives_the_same_state() {
    let (_d, mut p) = project();
    let img = add_image(&mut p, "a.png");
    let cat = p.ensure_class("cat").expect("class");
    let mut ids = Vec::new();
    for i in 0..20 {
        let id = Uuid::now_v7();
        ids.push(id);
        p.apply(&[Edit::Create {
            id,
            value: value(img, cat.id, f64::from(i)),
        }])
        .expect("create");
    }
    for (i, id) in ids.iter().enumerate().step_by(3) {
        p.apply(&[Edit::Update {
            id: *id,
            value: value(img, cat.id, 50.0 + i as f64),
            note: None,
        }])
        .expect("update");
    }
    p.apply(&[Edit::Delete { id: ids[1] }]).expect("delete");
    let before = p.all_annotations().expect("all");
    // Scribble over the cache, then rebuild it from the log.
    p.conn()
        .execute(
            "UPDATE annotations SET x=-1, deleted=0, state='proposed'",
            [],
        )
        .expect("scribble");
    let changed = p.rebuild_current().expect("rebuild");
    assert_eq!(changed, 20);
    assert_eq!(p.all_annotations().expect("all"), before);
    assert_eq!(p.rebuild_current().expect("rebuild"), 0);
}

#[test]
fn versions_freeze_labels_and_diff_them() {
    let (_d, mut p) = project();
    let img = add_image(&mut p, "a.png");
    let cat = p.ensure_class("cat").expect("class");
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    p.apply(&[
        Edit::Create {
            id: a,
            value: value(img, cat.id, 1.0),
        },
        Edit::Create {
            id: b,
            value: value(img, cat.id, 2.0),
        },
    ])
    .expect("create");
    p.create_version("v1", "first").expect("v1");
    p.apply(&[
        Edit::Update {
            id: a,
            value: value(img, cat.id, 9.0),
            note: None,
        },
        Edit::Delete { id: b },
        Edit::Create {
            id: c,
            value: value(img, cat.id, 3.0),
        },
    ])
    .expect("edit");
    p.create_version("v2", "").expect("v2");
    assert!(
        p.create_version("v1", "again").is_err(),
        "versions are immutable"
    );
    assert_eq!(
        p.dataset_at(Some("v1")).expect("v1").images[0].boxes.len(),
        2
    );
    let d = p.diff_versions("v1", "v2").expect("diff");
    assert_eq!((d.added.len(), d.removed.len(), d.changed.len()), (1, 1, 1));
    assert_eq!(d.added[0].id, c);
    assert_eq!(d.removed[0].id, b);
    assert_eq!(d.changed[0].id, a);
    let t = &d.per_class["cat"];
    assert_eq!(
        (t.count_a, t.count_b, t.added, t.removed, t.changed),
        (2, 2, 1, 1, 1)
    );
    let none = p.diff_versions("v2", "current").expect("diff");
    assert!(none.added.is_empty() && none.removed.is_empty() && none.changed.is_empty());
}

#[test]
fn a_newer_schema_is_refused_and_garbage_is_not_a_project() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new.loupe");
    drop(Project::create(&path).expect("create"));
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.pragma_update(None, "user_version", 999).expect("bump");
    drop(conn);
    let err = Project::open(&path).err().expect("refused").to_string();
    assert!(err.contains("newer Loupe"), "{err}");
    let junk = dir.path().join("junk.loupe");
    std::fs::write(
        &junk,
        b"this is not sqlite at all, not even close..........",
    )
    .expect("write");
    let err = Project::open(&junk).err().expect("refused").to_string();
    assert!(err.contains("junk.loupe"), "{err}");
}

#[test]
fn an_older_schema_is_upgraded_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.loupe");
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.execute_batch(schema::MIGRATIONS[0]).expect("v1");
    conn.pragma_update(None, "user_version", 1).expect("v1");
    drop(conn);
    let p = Project::open(&path).expect("upgrade");
    let v: i64 = p
        .conn()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(v, schema::latest());
}

#[test]
fn a_moved_file_is_recognised_by_its_hash() {
    let (d, mut p) = project();
    let img = add_image(&mut p, "old/a.png");
    let mut bulk = p.bulk().expect("bulk");
    let (_, what) = bulk
        .upsert_image(&ImageInput {
            path: "new/a.png".into(),
            hash: Some(blake3::hash(b"old/a.png").to_hex().to_string()),
            width: 100,
            height: 80,
            bytes: 10,
            external_id: None,
        })
        .expect("upsert");
    bulk.commit().expect("commit");
    assert_eq!(what, Upsert::Moved);
    assert_eq!(p.image(img).expect("image").path, "new/a.png");
    drop(d);
}
