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
        attributes: Default::default(),
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
fn attributes_are_part_of_every_revision() {
    let (_d, mut p) = project();
    let img = add_image(&mut p, "a.png");
    let cat = p.ensure_class("cat").expect("class");
    let id = Uuid::now_v7();
    let plain = Uuid::now_v7();
    let mut v = value(img, cat.id, 1.0);
    v.attributes.insert("color", "red");
    v.attributes.insert("IsOccluded", -1);
    p.apply(&[
        Edit::Create {
            id,
            value: v.clone(),
        },
        Edit::Create {
            id: plain,
            value: value(img, cat.id, 30.0),
        },
    ])
    .expect("create");
    p.create_version("v1", "").expect("v1");
    assert_eq!(p.annotation(id).expect("box").value, v);
    // Only the attributes change: a new revision, a changed box between versions.
    v.attributes.insert("color", "blue");
    p.apply(&[Edit::Update {
        id,
        value: v.clone(),
        note: None,
    }])
    .expect("update");
    let history = p.history(id).expect("history");
    assert_eq!(history.len(), 2);
    assert_eq!(
        history[0].value.attributes.get("color"),
        Some(&crate::model::AttributeValue::from("red"))
    );
    assert_eq!(history[1].value, v);
    let diff = p.diff_versions("v1", "current").expect("diff");
    assert_eq!(diff.changed.len(), 1);
    assert_eq!(diff.changed[0].id, id);
    let boxes = |version| {
        let d = p.dataset_at(version).expect("dataset");
        d.images[0]
            .boxes
            .iter()
            .map(|b| (b.id, b.attributes.get("color").map(|c| c.to_text())))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        boxes(Some("v1")),
        [(Some(id), Some("red".to_owned())), (Some(plain), None)]
    );
    assert_eq!(
        boxes(None),
        [(Some(id), Some("blue".to_owned())), (Some(plain), None)]
    );
    // A box without attributes stores NULL, as every box did before attributes existed.
    let nulls: i64 = p
        .conn()
        .query_row(
            "SELECT COUNT(*) FROM revisions WHERE attributes IS NULL",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(nulls, 1);
    // The cache is rebuilt with them.
    p.conn()
        .execute("UPDATE annotations SET attributes=NULL", [])
        .expect("scribble");
    assert_eq!(p.rebuild_current().expect("rebuild"), 1);
    assert_eq!(p.annotation(id).expect("box").value, v);
    // Bulk writes (imports) store them too.
    let bulk_id = Uuid::now_v7();
    let mut bulk = p.bulk().expect("bulk");
    let image_row = bulk.image_by_path("a.png").expect("q").expect("row");
    let class_row = bulk.class("cat").expect("class");
    bulk.add_annotation(
        bulk_id,
        image_row,
        class_row,
        BBox::new(5.0, 5.0, 2.0, 2.0),
        None,
        ReviewState::Approved,
        BoxFlags::default(),
        &v.attributes,
    )
    .expect("add");
    bulk.commit().expect("commit");
    assert_eq!(
        p.annotation(bulk_id).expect("bulk box").value.attributes,
        v.attributes
    );
    assert_eq!(
        p.history(bulk_id).expect("history")[0].value.attributes,
        v.attributes
    );
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

/// The current value as `rebuild_current` sees it: the cache is already right when it changes
/// nothing.
fn rebuilt_changes(p: &mut Project) -> usize {
    p.rebuild_current().expect("rebuild")
}

#[test]
fn a_long_open_connection_stamps_edits_after_revisions_another_wrote() {
    let (dir, mut a) = project();
    let img = add_image(&mut a, "a.png");
    let cat = a.ensure_class("cat").expect("class");
    let id = Uuid::now_v7();
    a.apply(&[Edit::Create {
        id,
        value: value(img, cat.id, 1.0),
    }])
    .expect("create");
    // Another connection (as the app's sync thread is) writes a revision stamped an hour
    // ahead, as a merged revision from a client with a fast clock would be.
    let mut b = Project::open(&dir.path().join("t.loupe")).expect("open");
    b.hlc.observe((now_ms() + 3_600_000) << 16);
    b.apply(&[Edit::Update {
        id,
        value: value(img, cat.id, 2.0),
        note: None,
    }])
    .expect("b edits");
    let b_hlc = b.history(id).expect("history").last().expect("rev").hlc;
    // The first connection, open all along, edits next: its revision must come after.
    a.apply(&[Edit::Update {
        id,
        value: value(img, cat.id, 3.0),
        note: None,
    }])
    .expect("a edits");
    let history = a.history(id).expect("history");
    let last = history.last().expect("rev");
    assert_eq!(last.value.bbox.x, 3.0);
    assert!(last.hlc > b_hlc, "{} is not after {b_hlc}", last.hlc);
    assert_eq!(a.observe_hlc().expect("observe"), last.hlc);
    assert_eq!(rebuilt_changes(&mut a), 0, "the cache holds a's edit");
    assert_eq!(a.annotation(id).expect("box").value.bbox.x, 3.0);
}

/// Inserts a revision of box `ann` by another client directly, as a sync merge does.
fn insert_revision(p: &Project, ann: Uuid, client: &str, hlc: i64, x: f64) -> i64 {
    let conn = p.conn();
    conn.execute("INSERT OR IGNORE INTO clients(uuid) VALUES (?1)", [client])
        .expect("client");
    conn.execute(
        "INSERT INTO revisions(ann, author, client, hlc, op, image, class, x, y, w, h, run, score, state, flags, deleted, note)
         SELECT v.ann, v.author, (SELECT id FROM clients WHERE uuid=?2), ?3, 'update', v.image, v.class, ?4, v.y, v.w, v.h,
                v.run, v.score, v.state, v.flags, v.deleted, NULL
         FROM revisions v JOIN annotations a ON a.id=v.ann WHERE a.uuid=?1 ORDER BY v.seq LIMIT 1",
        params![ann.as_bytes().as_slice(), client, hlc, x],
    )
    .expect("revision");
    conn.last_insert_rowid()
}

#[test]
fn equal_clocks_are_ordered_by_client_uuid_not_row_id() {
    let (_d, mut p) = project();
    let img = add_image(&mut p, "a.png");
    let cat = p.ensure_class("cat").expect("class");
    let id = Uuid::now_v7();
    p.apply(&[Edit::Create {
        id,
        value: value(img, cat.id, 1.0),
    }])
    .expect("create");
    p.create_version("before", "").expect("version");
    let hlc = (now_ms() + 60_000) << 16;
    // The greater uuid gets the smaller row id: ordering by row id would pick the other one.
    let high = "ffffffff-0000-7000-8000-000000000000";
    let low = "00000000-0000-7000-8000-000000000000";
    insert_revision(&p, id, high, hlc, 7.0);
    insert_revision(&p, id, low, hlc, 9.0);
    rebuilt_changes(&mut p);
    assert_eq!(p.annotation(id).expect("box").value.bbox.x, 7.0);
    assert_eq!(rebuilt_changes(&mut p), 0);
    let history = p.history(id).expect("history");
    assert_eq!(history.last().expect("rev").client.to_string(), high);
    p.create_version("after", "").expect("version");
    let at = |v: &str| {
        p.labels_at(Some(v))
            .expect("labels")
            .into_iter()
            .find(|l| l.id == id)
            .map(|l| l.bbox.x)
    };
    assert_eq!(at("after"), Some(7.0));
    assert_eq!(at("before"), Some(1.0));
}

#[test]
fn refused_revisions_are_left_out_of_the_rebuilt_cache_and_versions() {
    let (_d, mut p) = project();
    let img = add_image(&mut p, "a.png");
    let cat = p.ensure_class("cat").expect("class");
    let id = Uuid::now_v7();
    p.apply(&[Edit::Create {
        id,
        value: value(img, cat.id, 1.0),
    }])
    .expect("create");
    let refused = insert_revision(
        &p,
        id,
        "11111111-0000-7000-8000-000000000000",
        i64::MAX / 2,
        5.0,
    );
    p.conn()
        .execute(
            "INSERT INTO sync_revs(rev, pulled, refused) VALUES (?1, 0, 'an annotator may not approve')",
            [refused],
        )
        .expect("mark refused");
    p.create_version("v", "").expect("version");
    assert_eq!(rebuilt_changes(&mut p), 0, "the cache already skips it");
    assert_eq!(p.annotation(id).expect("box").value.bbox.x, 1.0);
    let at_v = p.labels_at(Some("v")).expect("labels");
    assert_eq!(
        at_v.iter().find(|l| l.id == id).map(|l| l.bbox.x),
        Some(1.0)
    );
}

#[test]
fn a_full_disk_is_named_as_such() {
    let (_dir, mut p) = project();
    let image = add_image(&mut p, "a.png");
    let class = p.ensure_class("cat").expect("class").id;
    // SQLite answers SQLITE_FULL when the file may not grow, as on a full disk.
    let pages: i64 = p
        .conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .expect("pages");
    p.conn
        .pragma_update(None, "max_page_count", pages)
        .expect("cap");
    let edits: Vec<Edit> = (0..2000)
        .map(|i| Edit::Create {
            id: Uuid::now_v7(),
            value: value(image, class, f64::from(i)),
        })
        .collect();
    let err = p.apply(&edits).expect_err("no room");
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(!err.to_string().contains("not a Loupe project"), "{err}");
}

#[test]
fn a_cut_or_damaged_file_is_named_damaged_not_foreign() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.loupe");
    {
        let mut p = Project::create(&path).expect("create");
        let image = add_image(&mut p, "a.png");
        let class = p.ensure_class("cat").expect("class").id;
        let edits: Vec<Edit> = (0..3000)
            .map(|i| Edit::Create {
                id: Uuid::now_v7(),
                value: value(image, class, f64::from(i)),
            })
            .collect();
        p.apply(&edits).expect("apply");
    }
    let bytes = std::fs::read(&path).expect("read");
    assert!(bytes.len() > 20 * 16384, "{}", bytes.len());
    let page = 16384;

    // Cut short: half a page missing.
    let cut = dir.path().join("cut.loupe");
    std::fs::write(&cut, &bytes[..bytes.len() - page / 2]).expect("write");
    let err = Project::open(&cut).err().expect("refused");
    assert!(err.is_damaged(), "{err}");
    assert!(err.to_string().contains("run `loupe check`"), "{err}");
    // Cut at a page boundary: the header's page count says so.
    std::fs::write(&cut, &bytes[..bytes.len() - 2 * page]).expect("write");
    let err = Project::open(&cut).err().expect("refused");
    assert!(err.to_string().contains("cut short"), "{err}");
    // Only the header left.
    std::fs::write(&cut, &bytes[..60]).expect("write");
    let err = Project::open(&cut).err().expect("refused");
    assert!(err.is_damaged(), "{err}");

    // A page in the middle overwritten: opens (the header is fine), the quick check names it.
    let mut bad = bytes.clone();
    let at = bytes.len() / 2 / page * page;
    bad[at..at + page].fill(0x5A);
    let damaged = dir.path().join("damaged.loupe");
    std::fs::write(&damaged, &bad).expect("write");
    let result = Project::open(&damaged).and_then(|p| p.quick_check());
    let err = result.expect_err("damage found");
    assert!(err.is_damaged(), "{err}");
    assert!(err.to_string().contains("damaged"), "{err}");

    // The intact file passes.
    Project::open(&path)
        .and_then(|p| p.quick_check())
        .expect("intact");
}

#[test]
fn a_read_only_project_is_read_and_writes_say_read_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.loupe");
    {
        let mut p = Project::create(&path).expect("create");
        add_image(&mut p, "a.png");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).expect("chmod");
    let mut p = Project::open(&path).expect("opens read-only");
    assert!(p.is_read_only());
    assert_eq!(p.stats().expect("stats").images, 1);
    let err = p.ensure_class("cat").expect_err("read-only");
    assert!(err.to_string().contains("read-only"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let p = Project::open(&path).expect("writable again");
    assert!(!p.is_read_only());
}

/// The store enforces the review policy itself: `apply` refuses a change the policy refuses with
/// a typed `StoreError::Refused` (not a message), and writes nothing of the call, even the
/// edits before the refused one. The role is the one the file holds when the edit is written,
/// so a change of role by another connection counts at once.
#[test]
fn apply_refuses_what_the_policy_refuses_typed_and_writes_nothing() {
    use crate::policy::Refusal;
    let (dir, mut p) = project();
    let img = add_image(&mut p, "a.png");
    let cat = p.ensure_class("cat").expect("class");
    p.switch_user("ann", Some(Role::Annotator)).expect("user");
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    p.apply(&[Edit::Create {
        id: a,
        value: value(img, cat.id, 1.0),
    }])
    .expect("an annotator draws a box");
    let revisions = |p: &Project| p.history(a).expect("history").len();
    let approved = AnnotationValue {
        state: ReviewState::Approved,
        ..value(img, cat.id, 1.0)
    };
    let err = p
        .apply(&[
            Edit::Create {
                id: b,
                value: value(img, cat.id, 2.0),
            },
            Edit::Update {
                id: a,
                value: approved.clone(),
                note: None,
            },
        ])
        .expect_err("an annotator cannot approve");
    match &err {
        StoreError::Refused {
            id,
            refusal:
                Refusal::RoleForbidden {
                    from: ReviewState::Submitted,
                    to: ReviewState::Approved,
                    role: Role::Annotator,
                    needs: Role::Reviewer,
                },
        } => assert_eq!(*id, a),
        other => panic!("expected a typed refusal, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with(&format!("box {a}: an annotator cannot move")),
        "{err}"
    );
    assert_eq!(revisions(&p), 1, "nothing of the refused call is written");
    assert!(matches!(p.annotation(b), Err(StoreError::NotFound { .. })));
    // Another connection makes ann a reviewer: this connection's next apply sees the new role.
    let mut lead = Project::open(&dir.path().join("t.loupe")).expect("open");
    lead.switch_user("ann", Some(Role::Reviewer))
        .expect("promote");
    p.apply(&[Edit::Update {
        id: a,
        value: approved.clone(),
        note: None,
    }])
    .expect("a reviewer approves");
    // Returning needs a reason, also for raw edits.
    let returned = AnnotationValue {
        state: ReviewState::Returned,
        ..approved
    };
    let err = p
        .apply(&[Edit::Update {
            id: a,
            value: returned,
            note: Some("  ".into()),
        }])
        .expect_err("no reason");
    assert!(
        matches!(
            err,
            StoreError::Refused {
                refusal: Refusal::ReasonRequired,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(revisions(&p), 2);
}

#[test]
fn a_reason_is_stored_with_a_new_box_and_with_a_deletion() {
    let (_d, mut p) = project();
    let img = add_image(&mut p, "a.png");
    let cat = p.ensure_class("cat").expect("class");
    let id = Uuid::now_v7();
    let v = value(img, cat.id, 1.0);
    p.apply(&[Edit::CreateBecause {
        id,
        value: v.clone(),
        note: "triage overlooked: added".into(),
    }])
    .expect("create with a reason");
    // A deletion with a reason is an update to a tombstone: op `delete`, the note kept.
    p.apply(&[Edit::Update {
        id,
        value: AnnotationValue { deleted: true, ..v },
        note: Some("triage spurious: deleted".into()),
    }])
    .expect("delete with a reason");
    let h = p.history(id).expect("history");
    assert_eq!(
        h.iter()
            .map(|r| (r.op.as_str(), r.note.as_deref()))
            .collect::<Vec<_>>(),
        [
            ("create", Some("triage overlooked: added")),
            ("delete", Some("triage spurious: deleted"))
        ]
    );
    assert!(p.annotations_for_image(img).expect("list").is_empty());
}

/// The grouped progress of every run tells what `run_progress` tells of each, leaves out runs
/// that covered nothing, and the coverage reads the same by row and by id; a shared run
/// registered twice stays one run, while a second local run of a taken name is refused.
#[test]
fn runs_progress_matches_each_run_and_coverage_reads_alike() {
    let (_d, mut p) = project();
    let images: Vec<Uuid> = (0..3)
        .map(|i| add_image(&mut p, &format!("{i}.png")))
        .collect();
    let new_run = |name: &str| NewRun {
        name: name.into(),
        kind: "onnx".into(),
        model_hash: Some("m".into()),
        settings: "{}".into(),
        settings_hash: Some("s".into()),
        ..NewRun::default()
    };
    let local = p.create_run(&new_run("local")).expect("local run");
    let shared_id = Uuid::now_v7();
    let shared = p
        .create_shared_run(shared_id, &new_run("team"))
        .expect("shared run");
    assert_eq!(
        p.create_shared_run(shared_id, &new_run("team"))
            .expect("again"),
        shared
    );
    assert!(matches!(
        p.create_run(&new_run("local")),
        Err(StoreError::Invalid(_))
    ));
    let empty = p.create_run(&new_run("empty")).expect("empty run");
    assert!(p.run_is_shared(shared).expect("shared"));
    assert!(!p.run_is_shared(local).expect("local"));
    let boxes = [("cat".to_owned(), BBox::new(1.0, 1.0, 5.0, 5.0), 0.9)];
    for (run, covered) in [(local, &images[..2]), (shared, &images[1..])] {
        for image in covered {
            p.add_proposals(run, *image, &boxes, RunImageTiming::default())
                .expect("proposals");
        }
    }

    let all = p.runs_progress().expect("grouped");
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(!all.contains_key(&empty));
    for run in [local, shared] {
        assert_eq!(all.get(&run), Some(&p.run_progress(run).expect("one run")));
    }
    assert_eq!(all[&local].done, 2);
    assert_eq!(all[&local].total, 3);
    assert_eq!(all[&shared].workers[0].boxes, 2);
    let none = p.run_progress(empty).expect("empty");
    assert_eq!((none.total, none.done, none.workers.len()), (3, 0, 0));

    let by_id = p.images_done_by_run(local).expect("by id");
    assert_eq!(by_id, images[..2].iter().copied().collect());
    let rows = p.image_rows(&images[..2]).expect("rows");
    assert_eq!(
        p.run_coverage(local).expect("by row"),
        rows.into_iter().collect()
    );
    // Both runs have this model and settings: together they covered every image.
    assert_eq!(p.images_done_by("m", "s").expect("by hash").len(), 3);
}
