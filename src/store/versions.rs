//! Versions: immutable, named positions in the revision log, their diffs, and the labels as of a
//! version (what exports read).

use std::collections::{BTreeMap, HashMap};

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use uuid::Uuid;

use super::{Project, Result, StoreError, now_ms};
use crate::model::{Attributes, BBox, BoxFlags, Dataset, DatasetBox, DatasetImage};

/// A frozen snapshot of the labels: a position in the revision log, not a copy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Version {
    pub id: Uuid,
    pub name: String,
    pub message: String,
    pub author: String,
    pub created_ms: i64,
    /// Number of revisions included.
    pub revisions: i64,
}

/// How one box differs between two versions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BoxChange {
    pub id: Uuid,
    pub image: String,
    pub class: String,
    pub bbox: BBox,
    /// For changed boxes: the old class and box.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<(String, BBox)>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClassTotals {
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    /// Boxes of this class in A and in B.
    pub count_a: u64,
    pub count_b: u64,
}

/// The difference between two versions, per image and per class.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VersionDiff {
    pub from: String,
    pub to: String,
    pub added: Vec<BoxChange>,
    pub removed: Vec<BoxChange>,
    pub changed: Vec<BoxChange>,
    pub per_class: BTreeMap<String, ClassTotals>,
    /// Image path → (added, removed, changed).
    pub per_image: BTreeMap<String, (u64, u64, u64)>,
}

/// A label as of some position: what a version holds for one box.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelAt {
    pub id: Uuid,
    pub image: i64,
    pub class: i64,
    pub bbox: BBox,
    pub flags: BoxFlags,
    pub attributes: Attributes,
}

/// The special name for "the current state" wherever a version is expected.
pub const CURRENT: &str = "current";

impl Project {
    /// Freezes the current labels under `name`.
    pub fn create_version(&mut self, name: &str, message: &str) -> Result<Version> {
        if name.is_empty() || name == CURRENT {
            return Err(StoreError::Invalid(format!(
                "{name:?} cannot be used as a version name"
            )));
        }
        let seq: i64 = self
            .conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM revisions", [], |r| {
                r.get(0)
            })
            .map_err(self.sq())?;
        let id = Uuid::now_v7();
        self.conn
            .execute(
                "INSERT INTO versions(uuid, name, message, seq, author, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id.to_string(), name, message, seq, self.user, now_ms()],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    StoreError::Invalid(format!(
                        "version {name:?} already exists; versions are immutable, choose another name"
                    ))
                }
                source => StoreError::Sqlite {
                    path: self.path.clone(),
                    source,
                },
            })?;
        self.version(name)
    }

    pub fn versions(&self) -> Result<Vec<Version>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT v.uuid, v.name, v.message, u.name, v.created_ms, v.seq
                 FROM versions v JOIN users u ON u.id=v.author ORDER BY v.id",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Version {
                    id: Uuid::parse_str(&r.get::<_, String>(0)?).unwrap_or_default(),
                    name: r.get(1)?,
                    message: r.get(2)?,
                    author: r.get(3)?,
                    created_ms: r.get(4)?,
                    revisions: r.get(5)?,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    pub fn version(&self, name: &str) -> Result<Version> {
        self.versions()?
            .into_iter()
            .find(|v| v.name == name)
            .ok_or_else(|| StoreError::NotFound {
                what: "version",
                key: name.to_owned(),
            })
    }

    /// The revision position of a version; `None` for the current state.
    fn position(&self, version: Option<&str>) -> Result<Option<i64>> {
        match version {
            None | Some(CURRENT) => Ok(None),
            Some(name) => self
                .conn
                .query_row("SELECT seq FROM versions WHERE name=?1", [name], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(self.sq())?
                .map(Some)
                .ok_or_else(|| StoreError::NotFound {
                    what: "version",
                    key: name.to_owned(),
                }),
        }
    }

    /// Every label (not a proposal, not rejected, not deleted) as of a version: each box's
    /// revision at or before the version's position with the greatest (hlc, client uuid),
    /// revisions the team roster refused left out (the rule of `rebuild_current`).
    pub fn labels_at(&self, version: Option<&str>) -> Result<Vec<LabelAt>> {
        let pos = self.position(version)?;
        let sql = match pos {
            // Table order is creation order; callers group by image themselves.
            None => "SELECT a.uuid, a.image, a.class, a.x, a.y, a.w, a.h, a.flags, a.attributes FROM annotations a
                     WHERE a.deleted=0 AND a.state NOT IN ('proposed','rejected')"
                .to_owned(),
            Some(_) => "WITH latest AS (
                    SELECT v.ann, v.image, v.class, v.x, v.y, v.w, v.h, v.flags, v.state, v.deleted, v.attributes,
                           ROW_NUMBER() OVER (PARTITION BY v.ann ORDER BY v.hlc DESC, c.uuid DESC, v.seq DESC) AS rn
                    FROM revisions v JOIN clients c ON c.id=v.client
                    WHERE v.seq <= ?1 AND NOT EXISTS (
                        SELECT 1 FROM sync_revs s WHERE s.rev=v.seq AND s.refused IS NOT NULL))
                 SELECT a.uuid, l.image, l.class, l.x, l.y, l.w, l.h, l.flags, l.attributes FROM latest l JOIN annotations a ON a.id=l.ann
                 WHERE l.rn=1 AND l.deleted=0 AND l.state NOT IN ('proposed','rejected') ORDER BY l.image, l.ann"
                .to_owned(),
        };
        let mut stmt = self.conn.prepare(&sql).map_err(self.sq())?;
        let map = |r: &rusqlite::Row<'_>| {
            let b: Vec<u8> = r.get(0)?;
            Ok(LabelAt {
                id: Uuid::from_slice(&b).unwrap_or_default(),
                image: r.get(1)?,
                class: r.get(2)?,
                bbox: BBox::new(r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?),
                flags: BoxFlags::from_bits(r.get::<_, i64>(7)?.try_into().unwrap_or(0)),
                attributes: super::attributes_from_column(r, 8)?,
            })
        };
        let rows = match pos {
            None => stmt.query_map([], map),
            Some(p) => stmt.query_map([p], map),
        }
        .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// The labels of a version as a format-neutral dataset (every image, in path order).
    pub fn dataset_at(&self, version: Option<&str>) -> Result<Dataset> {
        let labels = self.labels_at(version)?;
        let mut classes = Vec::new();
        let mut class_index = HashMap::new();
        {
            let mut stmt = self
                .conn
                .prepare("SELECT id, name FROM classes ORDER BY ord, id")
                .map_err(self.sq())?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                .map_err(self.sq())?;
            for row in rows {
                let (id, name) = row.map_err(self.sq())?;
                class_index.insert(id, classes.len());
                classes.push(name);
            }
        }
        let mut images = Vec::new();
        let mut image_index = HashMap::new();
        {
            let mut stmt = self
                .conn
                .prepare("SELECT id, path, width, height, external_id FROM images ORDER BY path")
                .map_err(self.sq())?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        DatasetImage {
                            file_name: r.get(1)?,
                            width: r.get(2)?,
                            height: r.get(3)?,
                            external_id: r.get(4)?,
                            boxes: Vec::new(),
                        },
                    ))
                })
                .map_err(self.sq())?;
            for row in rows {
                let (id, img) = row.map_err(self.sq())?;
                image_index.insert(id, images.len());
                images.push(img);
            }
        }
        for l in labels {
            let (Some(&ii), Some(&ci)) = (image_index.get(&l.image), class_index.get(&l.class))
            else {
                continue;
            };
            images[ii].boxes.push(DatasetBox {
                class: ci,
                bbox: l.bbox,
                flags: l.flags,
                score: None,
                id: Some(l.id),
                attributes: l.attributes,
            });
        }
        Ok(Dataset { classes, images })
    }

    /// Added, removed and changed boxes from version `a` to version `b` (either may be `current`).
    pub fn diff_versions(&self, a: &str, b: &str) -> Result<VersionDiff> {
        let la = self.labels_at(Some(a))?;
        let lb = self.labels_at(Some(b))?;
        let names = self.class_names()?;
        let paths = self.image_paths()?;
        let name = |c: i64| names.get(&c).cloned().unwrap_or_default();
        let path = |i: i64| paths.get(&i).cloned().unwrap_or_default();
        let map_a: HashMap<Uuid, &LabelAt> = la.iter().map(|l| (l.id, l)).collect();
        let map_b: HashMap<Uuid, &LabelAt> = lb.iter().map(|l| (l.id, l)).collect();
        let mut diff = VersionDiff {
            from: a.to_owned(),
            to: b.to_owned(),
            ..VersionDiff::default()
        };
        for l in &la {
            diff.per_class.entry(name(l.class)).or_default().count_a += 1;
        }
        for l in &lb {
            diff.per_class.entry(name(l.class)).or_default().count_b += 1;
            match map_a.get(&l.id) {
                None => {
                    diff.per_class.entry(name(l.class)).or_default().added += 1;
                    diff.per_image.entry(path(l.image)).or_default().0 += 1;
                    diff.added.push(BoxChange {
                        id: l.id,
                        image: path(l.image),
                        class: name(l.class),
                        bbox: l.bbox,
                        before: None,
                    });
                }
                Some(old)
                    if old.class != l.class
                        || old.bbox != l.bbox
                        || old.image != l.image
                        || old.flags != l.flags
                        || old.attributes != l.attributes =>
                {
                    diff.per_class.entry(name(l.class)).or_default().changed += 1;
                    diff.per_image.entry(path(l.image)).or_default().2 += 1;
                    diff.changed.push(BoxChange {
                        id: l.id,
                        image: path(l.image),
                        class: name(l.class),
                        bbox: l.bbox,
                        before: Some((name(old.class), old.bbox)),
                    });
                }
                Some(_) => {}
            }
        }
        for l in &la {
            if !map_b.contains_key(&l.id) {
                diff.per_class.entry(name(l.class)).or_default().removed += 1;
                diff.per_image.entry(path(l.image)).or_default().1 += 1;
                diff.removed.push(BoxChange {
                    id: l.id,
                    image: path(l.image),
                    class: name(l.class),
                    bbox: l.bbox,
                    before: None,
                });
            }
        }
        diff.per_class
            .retain(|_, t| t.count_a + t.count_b + t.added + t.removed + t.changed > 0);
        Ok(diff)
    }
}
