//! Model runs and their proposals.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};
use uuid::Uuid;

use super::*;

impl Project {
    // ---------------------------------------------------------------- runs

    /// Deletes a run that holds nothing yet (an import refused after it named its runs); a run
    /// with proposals or coverage is left alone. Returns whether a row went.
    pub fn delete_empty_run(&self, run: Uuid) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "DELETE FROM runs WHERE uuid=?1
                 AND NOT EXISTS (SELECT 1 FROM annotations a JOIN runs r ON r.id=a.run WHERE r.uuid=?1)
                 AND NOT EXISTS (SELECT 1 FROM revisions v JOIN runs r ON r.id=v.run WHERE r.uuid=?1)
                 AND NOT EXISTS (SELECT 1 FROM run_images ri JOIN runs r ON r.id=ri.run WHERE r.uuid=?1)",
                [run.to_string()],
            )
            .map_err(self.sq())?;
        Ok(n > 0)
    }

    /// Registers a model run (or an imported results file) and returns its id.
    pub fn create_run(&mut self, run: &NewRun) -> Result<Uuid> {
        self.register_run(Uuid::now_v7(), run, false)
    }

    /// Registers a run shared through the store under a given id (`loupe worker`: every
    /// worker of one run derives the same id, so their shards assemble into one run). Its
    /// proposals are pushed undecided and its coverage travels in packs. An existing run of
    /// that id is kept.
    pub fn create_shared_run(&mut self, id: Uuid, run: &NewRun) -> Result<Uuid> {
        self.register_run(id, run, true)
    }

    /// `create_run` and `create_shared_run`: a run registered unfinished, with no coverage note.
    fn register_run(&self, id: Uuid, run: &NewRun, shared: bool) -> Result<Uuid> {
        insert_run_row(
            &self.conn,
            &self.path,
            &RunRow {
                id,
                run,
                finished: false,
                coverage: None,
                shared,
            },
        )?;
        Ok(id)
    }

    /// The images `run` covered, by image id (what a shared run resumes from: its coverage
    /// from every worker, pulled from the store).
    pub fn images_done_by_run(&self, run: Uuid) -> Result<std::collections::HashSet<Uuid>> {
        Ok(self
            .covered_images("r.uuid=?1", [run.to_string()])?
            .into_iter()
            .filter_map(|(_, id)| id)
            .collect())
    }

    /// The images covered by the runs that `runs_where` (a condition on `r`, the `runs` row)
    /// picks, as (image row, image id): the one coverage query behind `images_done_by_run`,
    /// `images_done_by` and `run_coverage`. The id is `None` for a row whose image is gone or
    /// whose id does not parse.
    pub(super) fn covered_images(
        &self,
        runs_where: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<(i64, Option<Uuid>)>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT DISTINCT ri.image, i.uuid FROM run_images ri JOIN runs r ON r.id=ri.run
                 LEFT JOIN images i ON i.id=ri.image WHERE {runs_where}"
            ))
            .map_err(self.sq())?;
        let rows = stmt
            .query_map(params, |r| {
                let id: Option<String> = r.get(1)?;
                Ok((
                    r.get::<_, i64>(0)?,
                    id.and_then(|u| Uuid::parse_str(&u).ok()),
                ))
            })
            .map_err(self.sq())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.sq())
    }

    /// A run's progress: the project's images (its total), and the images each
    /// worker covered (`None`: processed in this file), most first.
    pub fn run_progress(&self, run: Uuid) -> Result<RunProgress> {
        let (total, mut progress) = self.progress_where("r.uuid=?1", [run.to_string()])?;
        Ok(match progress.pop() {
            Some((_, p)) => p,
            // A run that covered nothing (yet) has no rows to group.
            None => RunProgress {
                total,
                done: 0,
                workers: Vec::new(),
            },
        })
    }

    /// The progress of every run that covered an image, as `run_progress` tells it, in one
    /// grouped query (what the lead's evaluation view shows beside each run). Runs that covered
    /// nothing are not in the map.
    pub fn runs_progress(&self) -> Result<HashMap<Uuid, RunProgress>> {
        // `1`: every run.
        let (_, progress) = self.progress_where("1", [])?;
        Ok(progress.into_iter().collect())
    }

    /// The progress of the runs `runs_where` (a condition on `r`, the `runs` row) picks that
    /// covered an image, in run order: the coverage grouped by run and worker, the workers of a
    /// run most images first. Also returns the project's image count, every run's total.
    fn progress_where(
        &self,
        runs_where: &str,
        params: impl rusqlite::Params,
    ) -> Result<(u64, Vec<(Uuid, RunProgress)>)> {
        let total: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM images", [], |r| r.get(0))
            .map_err(self.sq())?;
        let total = total.try_into().unwrap_or(0);
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT r.uuid, u.name, COUNT(*), COALESCE(SUM(ri.boxes), 0), MAX(ri.done_ms)
                 FROM run_images ri JOIN runs r ON r.id=ri.run LEFT JOIN users u ON u.id=ri.worker
                 WHERE {runs_where} GROUP BY ri.run, ri.worker ORDER BY ri.run, COUNT(*) DESC, u.name"
            ))
            .map_err(self.sq())?;
        let rows = stmt
            .query_map(params, |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    WorkerProgress {
                        worker: r.get(1)?,
                        images: r.get::<_, i64>(2)?.try_into().unwrap_or(0),
                        boxes: r.get::<_, i64>(3)?.try_into().unwrap_or(0),
                        last_ms: r.get(4)?,
                    },
                ))
            })
            .map_err(self.sq())?;
        let mut out: Vec<(Uuid, RunProgress)> = Vec::new();
        for row in rows {
            let (run, worker) = row.map_err(self.sq())?;
            let Ok(run) = Uuid::parse_str(&run) else {
                continue;
            };
            // Rows come grouped by run: a new run starts a new entry.
            match out.last_mut() {
                Some((last, progress)) if *last == run => {
                    progress.done += worker.images;
                    progress.workers.push(worker);
                }
                _ => out.push((
                    run,
                    RunProgress {
                        total,
                        done: worker.images,
                        workers: vec![worker],
                    },
                )),
            }
        }
        Ok((total, out))
    }

    /// Whether a run is shared through the store.
    pub fn run_is_shared(&self, run: Uuid) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT shared FROM runs WHERE uuid=?1",
                [run.to_string()],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|s| s.unwrap_or(0) != 0)
            .map_err(self.sq())
    }

    pub fn finish_run(&mut self, run: Uuid) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET finished_ms=?1 WHERE uuid=?2",
                params![now_ms(), run.to_string()],
            )
            .map_err(self.sq())?;
        Ok(())
    }

    pub fn runs(&self) -> Result<Vec<RunInfo>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.uuid, r.name, r.kind, r.model_hash, r.settings_hash, r.runtime_version, r.started_ms, r.finished_ms,
                    (SELECT COUNT(*) FROM run_images ri WHERE ri.run=r.id),
                    (SELECT COUNT(*) FROM annotations a WHERE a.run=r.id AND a.deleted=0)
                 FROM runs r ORDER BY r.id",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(RunInfo {
                    id: Uuid::parse_str(&r.get::<_, String>(0)?).unwrap_or_default(),
                    name: r.get(1)?,
                    kind: r.get(2)?,
                    model_hash: r.get(3)?,
                    settings_hash: r.get(4)?,
                    runtime_version: r.get(5)?,
                    started_ms: r.get(6)?,
                    finished_ms: r.get(7)?,
                    images: r.get::<_, i64>(8)?.try_into().unwrap_or(0),
                    boxes: r.get::<_, i64>(9)?.try_into().unwrap_or(0),
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    pub fn run_by_name(&self, name: &str) -> Result<RunInfo> {
        self.runs()?
            .into_iter()
            .find(|r| r.name == name || r.id.to_string() == name)
            .ok_or_else(|| StoreError::NotFound {
                what: "model run",
                key: name.to_owned(),
            })
    }

    /// Image ids already done by any run with this model and settings hash (for resuming).
    pub fn images_done_by(
        &self,
        model_hash: &str,
        settings_hash: &str,
    ) -> Result<std::collections::HashSet<Uuid>> {
        Ok(self
            .covered_images(
                "r.model_hash=?1 AND r.settings_hash=?2",
                [model_hash, settings_hash],
            )?
            .into_iter()
            .filter_map(|(_, id)| id)
            .collect())
    }

    /// Stores one image's predictions as proposals of `run`, in one transaction, and records the
    /// image as done by the run. Never touches existing boxes.
    pub fn add_proposals(
        &mut self,
        run: Uuid,
        image: Uuid,
        proposals: &[(String, BBox, f32)],
        timing: RunImageTiming,
    ) -> Result<usize> {
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let author = self.user;
        let client = self.client;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sq)?;
        let (seen_hlc, seen_seq) = observed_since(&tx, self.hlc_seen_seq).map_err(sq)?;
        self.hlc.observe(seen_hlc);
        self.hlc_seen_seq = self.hlc_seen_seq.max(seen_seq);
        let run_row: i64 = tx
            .query_row(
                "SELECT id FROM runs WHERE uuid=?1",
                [run.to_string()],
                |r| r.get(0),
            )
            .map_err(sq)?;
        let image_row: i64 = tx
            .query_row(
                "SELECT id FROM images WHERE uuid=?1",
                [image.to_string()],
                |r| r.get(0),
            )
            .map_err(sq)?;
        {
            let mut classes = HashMap::new();
            let mut w = RevisionWriter::new(&tx, author, client).map_err(sq)?;
            for (class, bbox, score) in proposals {
                let class_row = match classes.get(class) {
                    Some(c) => *c,
                    None => {
                        let c = class_row_tx(&tx, class).map_err(sq)?;
                        classes.insert(class.clone(), c);
                        c
                    }
                };
                let hlc = self.hlc.tick();
                w.insert_rows(
                    Uuid::now_v7(),
                    &RowValue {
                        image: image_row,
                        class: class_row,
                        bbox: *bbox,
                        run: Some(run_row),
                        score: Some(f64::from(*score)),
                        state: ReviewState::Proposed,
                        flags: 0,
                        deleted: false,
                        attributes: None,
                    },
                    hlc,
                    "create",
                    None,
                )
                .map_err(sq)?;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO run_images(run, image, decode_ms, infer_ms, boxes, done_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![run_row, image_row, timing.decode_ms, timing.infer_ms, proposals.len() as i64, now_ms()],
        )
        .map_err(sq)?;
        tx.commit().map_err(sq)?;
        Ok(proposals.len())
    }
}

/// One new row of `runs`, as `insert_run_row` writes it.
pub(super) struct RunRow<'a> {
    pub id: Uuid,
    pub run: &'a NewRun,
    /// Finished as it is registered (an imported results file): `finished_ms` is `started_ms`.
    pub finished: bool,
    /// How the run's covered images were chosen, said wherever it is evaluated.
    pub coverage: Option<&'a str>,
    /// Shared through the store: an existing run of the same id is kept and marked shared
    /// instead of refused, since every worker of a shared run registers it.
    pub shared: bool,
}

/// The one INSERT behind `create_run`, `create_shared_run` and `Bulk::insert_run` (which passes
/// its transaction). A run whose name is taken is refused as `StoreError::Invalid`.
pub(super) fn insert_run_row(
    conn: &rusqlite::Connection,
    path: &std::path::Path,
    row: &RunRow<'_>,
) -> Result<()> {
    // Only a shared run may meet its own id again; any other run's id is new (v7), so a
    // conflict there stays an error.
    let on_conflict = if row.shared {
        " ON CONFLICT(uuid) DO UPDATE SET shared=1"
    } else {
        ""
    };
    let run = row.run;
    let now = now_ms();
    conn.execute(
        &format!(
            "INSERT INTO runs(uuid, name, kind, model_path, model_hash, settings, settings_hash, runtime_version, started_ms, finished_ms, coverage, shared)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12){on_conflict}"
        ),
        params![
            row.id.to_string(),
            run.name,
            run.kind,
            run.model_path,
            run.model_hash,
            run.settings,
            run.settings_hash,
            run.runtime_version,
            now,
            row.finished.then_some(now),
            row.coverage,
            i64::from(row.shared)
        ],
    )
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Invalid(format!("a run named {:?} already exists", run.name))
        }
        source => StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        },
    })?;
    Ok(())
}

/// How far a run is: images done of the project's, per worker.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunProgress {
    pub total: u64,
    pub done: u64,
    pub workers: Vec<WorkerProgress>,
}

/// The images one worker (a team member's key) covered for a run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct WorkerProgress {
    /// The member; `None` for this file's own processing.
    pub worker: Option<String>,
    pub images: u64,
    pub boxes: u64,
    pub last_ms: Option<i64>,
}

/// What `create_run` records about a run.
#[derive(Clone, Debug, Default)]
pub struct NewRun {
    pub name: String,
    /// `onnx` for a local model run, `import` for a results file.
    pub kind: String,
    pub model_path: Option<String>,
    pub model_hash: Option<String>,
    /// JSON of the descriptor and thresholds.
    pub settings: String,
    pub settings_hash: Option<String>,
    pub runtime_version: Option<String>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct RunImageTiming {
    pub decode_ms: f64,
    pub infer_ms: f64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunInfo {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub model_hash: Option<String>,
    pub settings_hash: Option<String>,
    pub runtime_version: Option<String>,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub images: u64,
    pub boxes: u64,
}
