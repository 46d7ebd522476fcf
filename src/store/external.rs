//! Ids that other tools' files give the project's images and classes (COCO `image_id` and
//! `category_id`, recorded per source file), the COCO `area` of imported boxes, and run coverage:
//! what maps a results file onto the project and what evaluation needs to equal pycocotools.

use std::collections::{HashMap, HashSet};

use rusqlite::{OptionalExtension, params};
use uuid::Uuid;

use super::runs::{RunRow, insert_run_row};
use super::{Bulk, NewRun, Project, Result, StoreError, now_ms};
use crate::model::BBox;

/// What an external id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExternalKind {
    /// An image (`images.id`).
    Image,
    /// A class (`classes.id`).
    Class,
}

impl ExternalKind {
    fn as_str(self) -> &'static str {
        match self {
            ExternalKind::Image => "image",
            ExternalKind::Class => "class",
        }
    }
}

/// A file whose ids were recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdSource {
    /// Row id, used to scope look-ups to one file.
    pub id: i64,
    /// blake3 of the file's bytes.
    pub hash: String,
    /// The path it was imported from, for messages.
    pub path: String,
}

/// One recorded id: which source gave it, and the row it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExternalTarget {
    pub source: i64,
    pub target: i64,
}

/// An image as [`Project::image_index`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IndexedImage {
    pub row: i64,
    pub path: String,
    pub hash: Option<String>,
    pub width: u32,
    pub height: u32,
}

impl Project {
    /// The sources whose ids are recorded, oldest first.
    pub(crate) fn id_sources(&self) -> Result<Vec<IdSource>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, hash, path FROM id_sources ORDER BY id")
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(IdSource {
                    id: r.get(0)?,
                    hash: r.get(1)?,
                    path: r.get(2)?,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.sq())
    }

    /// Every recorded id of `kind`: external id -> the rows it names, one per source that has
    /// it (two files may give the same id to different images).
    pub(crate) fn external_ids(
        &self,
        kind: ExternalKind,
    ) -> Result<HashMap<i64, Vec<ExternalTarget>>> {
        let mut stmt = self
            .conn
            .prepare("SELECT ext, source, target FROM external_ids WHERE kind=?1 ORDER BY source")
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([kind.as_str()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    ExternalTarget {
                        source: r.get(1)?,
                        target: r.get(2)?,
                    },
                ))
            })
            .map_err(self.sq())?;
        let mut out: HashMap<i64, Vec<ExternalTarget>> = HashMap::new();
        for row in rows {
            let (ext, t) = row.map_err(self.sq())?;
            out.entry(ext).or_default().push(t);
        }
        Ok(out)
    }

    /// Every image's row id, path, hash and size (for matching files by name and content).
    pub(crate) fn image_index(&self) -> Result<Vec<IndexedImage>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, path, hash, width, height FROM images ORDER BY id")
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(IndexedImage {
                    row: r.get(0)?,
                    path: r.get(1)?,
                    hash: r.get(2)?,
                    width: r.get(3)?,
                    height: r.get(4)?,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.sq())
    }

    /// Row ids and names of every class.
    pub(crate) fn class_index(&self) -> Result<Vec<(i64, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name FROM classes ORDER BY ord, id")
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.sq())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.sq())
    }

    /// Image row ids by image id.
    pub(crate) fn image_rows(&self, ids: &[Uuid]) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM images WHERE uuid=?1")
            .map_err(self.sq())?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let row: Option<i64> = stmt
                .query_row([id.to_string()], |r| r.get(0))
                .optional()
                .map_err(self.sq())?;
            out.push(row.ok_or_else(|| StoreError::NotFound {
                what: "image",
                key: id.to_string(),
            })?);
        }
        Ok(out)
    }

    /// The images `run` covered (processed, with or without detections): its `run_images`.
    pub(crate) fn run_coverage(&self, run: Uuid) -> Result<HashSet<i64>> {
        Ok(self
            .covered_images("r.uuid=?1", [run.to_string()])?
            .into_iter()
            .map(|(row, _)| row)
            .collect())
    }

    /// How the run's covered images were chosen, when the run said so.
    pub(crate) fn run_coverage_note(&self, run: Uuid) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT coverage FROM runs WHERE uuid=?1",
                [run.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(self.sq())
    }
}

impl Bulk<'_> {
    /// The source row of a file with this content hash, made if new.
    pub fn id_source(&mut self, hash: &str, path: &str, format: &str) -> Result<i64> {
        self.tx()
            .prepare_cached(
                "INSERT INTO id_sources(hash, path, format, imported_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(hash) DO UPDATE SET path=excluded.path",
            )
            .and_then(|mut s| s.execute(params![hash, path, format, now_ms()]))
            .map_err(self.sq())?;
        self.tx()
            .query_row("SELECT id FROM id_sources WHERE hash=?1", [hash], |r| {
                r.get(0)
            })
            .map_err(self.sq())
    }

    /// Records that `source` calls row `target` by `ext`.
    pub fn record_external_id(
        &mut self,
        source: i64,
        kind: ExternalKind,
        ext: i64,
        target: i64,
    ) -> Result<()> {
        self.tx()
            .prepare_cached(
                "INSERT OR REPLACE INTO external_ids(source, kind, ext, target) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![source, kind.as_str(), ext, target]))
            .map_err(self.sq())?;
        Ok(())
    }

    /// Records the COCO annotation id and `area` of box `id` (added in this bulk or before), as
    /// given for `bbox`.
    pub fn record_coco_box(
        &mut self,
        id: Uuid,
        coco_id: i64,
        area: Option<f64>,
        bbox: BBox,
    ) -> Result<()> {
        let ann = match self.pending.iter().find(|b| b.id == id) {
            Some(b) => b.ann,
            None => self
                .tx()
                .prepare_cached("SELECT id FROM annotations WHERE uuid=?1")
                .and_then(|mut s| s.query_row([id.as_bytes().as_slice()], |r| r.get(0)))
                .map_err(self.sq())?,
        };
        self.tx()
            .prepare_cached(
                "INSERT OR REPLACE INTO coco_boxes(ann, coco_id, area, x, y, w, h) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![ann, coco_id, area, bbox.x, bbox.y, bbox.w, bbox.h])
            })
            .map_err(self.sq())?;
        Ok(())
    }

    /// Registers a run inside this transaction (so an import that fails leaves no run behind),
    /// with a sentence saying how its covered images were chosen. Returns its id and row.
    pub fn insert_run(&mut self, run: &NewRun, coverage: &str) -> Result<(Uuid, i64)> {
        let id = Uuid::now_v7();
        insert_run_row(
            self.tx(),
            &self.path,
            &RunRow {
                id,
                run,
                finished: true,
                coverage: Some(coverage),
                shared: false,
            },
        )?;
        Ok((id, self.tx().last_insert_rowid()))
    }
}
