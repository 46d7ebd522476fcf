//! Images: records, the filtered image list, tags and key=value metadata.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};
use uuid::Uuid;

use super::*;

/// Which images to list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageFilter {
    pub status: ImageStatus,
    pub class: Option<String>,
    pub tag: Option<String>,
    /// `key=value` metadata match.
    pub meta: Option<(String, String)>,
    /// Substring of the path, case-insensitive.
    pub path_contains: Option<String>,
    /// Only the images of this shard (`--shard I/N`).
    pub shard: Option<Shard>,
}

/// One of N deterministic, balanced parts of a project's images, for N workers that together
/// cover every image exactly once (`loupe prelabel --shard I/N`, `loupe embed --shard I/N`).
/// An image belongs to the shard its content hash (its id while it has none) falls in: the
/// first eight bytes of blake3 of that key, modulo N. The same on every machine and every run,
/// so a shard rerun resumes what it did; frames of one file share their file's shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// From 0.
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// `I/N` (0 <= I < N), or `auto`: the index and count a batch system gives its tasks (see
    /// [`Shard::from_env`]).
    pub fn parse(text: &str) -> std::result::Result<Shard, String> {
        if text.trim() == "auto" {
            return Shard::from_env(|k| std::env::var(k).ok());
        }
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| format!("--shard {text:?}: expected I/N (e.g. 0/4) or auto"))?;
        let number = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|e| format!("--shard {text:?}: {s:?} is not a count: {e}"))
        };
        Shard::new(number(i)?, number(n)?)
    }

    pub fn new(index: u32, count: u32) -> std::result::Result<Shard, String> {
        if count == 0 || index >= count {
            return Err(format!(
                "--shard {index}/{count}: the index counts from 0 and must be below the count"
            ));
        }
        Ok(Shard { index, count })
    }

    /// The shard of a task of a Slurm job array (`SLURM_ARRAY_TASK_ID` from
    /// `SLURM_ARRAY_TASK_MIN`, of `SLURM_ARRAY_TASK_COUNT`) or of a Kubernetes indexed Job
    /// (`JOB_COMPLETION_INDEX`, of `LOUPE_SHARD_COUNT`: Kubernetes does not tell a pod the
    /// completion count, so the Job's manifest sets it). `var` reads the environment.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> std::result::Result<Shard, String> {
        let number = |name: &str| -> std::result::Result<Option<u32>, String> {
            var(name)
                .map(|v| {
                    v.trim()
                        .parse::<u32>()
                        .map_err(|e| format!("{name}={v:?} is not a count: {e}"))
                })
                .transpose()
        };
        if let Some(task) = number("SLURM_ARRAY_TASK_ID")? {
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let count = number("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                "--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not"
                    .to_owned()
            })?;
            let index = task.checked_sub(min).ok_or_else(|| {
                format!(
                    "--shard auto: SLURM_ARRAY_TASK_ID {task} is below SLURM_ARRAY_TASK_MIN {min}"
                )
            })?;
            return Shard::new(index, count);
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = number("LOUPE_SHARD_COUNT")?.ok_or_else(|| {
                "--shard auto: JOB_COMPLETION_INDEX is set; set LOUPE_SHARD_COUNT to the Job's \
                 completions too"
                    .to_owned()
            })?;
            return Shard::new(index, count);
        }
        Err(
            "--shard auto: neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set \
             (not a task of a Slurm array or a Kubernetes indexed Job); give --shard I/N"
                .to_owned(),
        )
    }

    /// True when the image with this content hash (or id) is in the shard.
    pub fn contains(&self, key: &str) -> bool {
        let digest = blake3::hash(key.as_bytes());
        let b = digest.as_bytes();
        let value = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        value % u64::from(self.count) == u64::from(self.index)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImageStatus {
    #[default]
    All,
    /// Has proposals nobody has reviewed yet, or no boxes at all and never marked done.
    Unreviewed,
    HasProposals,
    Flagged,
    Missing,
}

/// A row of the image list: the record plus counts, cheap enough for 100k images.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ImageRow {
    pub id: Uuid,
    pub path: String,
    pub width: u32,
    pub height: u32,
    pub missing: bool,
    pub boxes: u32,
    pub proposals: u32,
    /// Tagged `done` (someone finished it).
    pub done: bool,
    /// Tagged `flagged`.
    pub flagged: bool,
    /// The stack (a series, or a multi-frame file) the image is a frame of: image meta
    /// [`STACK_KEY`], written by `add`.
    pub stack: Option<String>,
    /// Its place in the stack, from 0 (meta [`FRAME_KEY`]).
    pub frame: u32,
    /// The slice position along the series' normal, in mm (meta [`SLICE_KEY`]).
    pub slice_mm: Option<f64>,
}

/// Image meta naming the stack an image belongs to: `series:UID` for the slices of a DICOM
/// series, `file:PATH` for the frames of a multi-frame file.
pub const STACK_KEY: &str = "stack";
/// Image meta: the image's index in its stack, from 0.
pub const FRAME_KEY: &str = "frame";
/// Image meta: the slice's position along the series' normal, in mm.
pub const SLICE_KEY: &str = "slice_mm";

impl ImageRow {
    /// Nobody has finished it: proposals wait, or it has no boxes and is not marked done
    /// (the "unreviewed" filter's rule).
    pub fn unreviewed(&self) -> bool {
        !self.done && (self.proposals > 0 || self.boxes == 0)
    }
}

impl Project {
    // ---------------------------------------------------------------- images

    pub(super) fn image_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRecord> {
        Ok(ImageRecord {
            id: Uuid::parse_str(&r.get::<_, String>(0)?).unwrap_or_default(),
            hash: r.get(1)?,
            path: r.get(2)?,
            width: r.get(3)?,
            height: r.get(4)?,
            bytes: r.get::<_, i64>(5)?.try_into().unwrap_or(0),
            missing: r.get::<_, i64>(6)? != 0,
            external_id: r.get(7)?,
        })
    }

    pub(super) const IMAGE_COLS: &'static str =
        "uuid, hash, path, width, height, bytes, missing, external_id";

    pub fn image(&self, id: Uuid) -> Result<ImageRecord> {
        self.conn
            .query_row(
                &format!("SELECT {} FROM images WHERE uuid=?1", Self::IMAGE_COLS),
                [id.to_string()],
                Self::image_from_row,
            )
            .optional()
            .map_err(self.sq())?
            .ok_or_else(|| StoreError::NotFound {
                what: "image",
                key: id.to_string(),
            })
    }

    pub fn image_by_path(&self, path: &str) -> Result<Option<ImageRecord>> {
        self.conn
            .query_row(
                &format!("SELECT {} FROM images WHERE path=?1", Self::IMAGE_COLS),
                [path],
                Self::image_from_row,
            )
            .optional()
            .map_err(self.sq())
    }

    /// The content hash of every image that has one, by path (the key of seeded splits).
    pub fn image_hashes(&self) -> Result<HashMap<String, String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT path, hash FROM images WHERE hash IS NOT NULL")
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(self.sq())?;
        rows.collect::<rusqlite::Result<HashMap<_, _>>>()
            .map_err(self.sq())
    }

    /// Every image of the project, in path order (placeholders of missing files included).
    pub fn all_images(&self) -> Result<Vec<ImageRecord>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {} FROM images ORDER BY path",
                Self::IMAGE_COLS
            ))
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], Self::image_from_row)
            .map_err(self.sq())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.sq())
    }

    /// The absolute path of an image file.
    pub fn image_file(&self, image: &ImageRecord) -> PathBuf {
        self.root.join(&image.path)
    }

    /// Lists images in path order with their box counts.
    pub fn list_images(&self, filter: &ImageFilter) -> Result<Vec<ImageRow>> {
        let mut sql = String::from(
            "SELECT i.uuid, i.path, i.width, i.height, i.missing,
                (SELECT COUNT(*) FROM annotations a WHERE a.image=i.id AND a.deleted=0 AND a.state NOT IN ('proposed','rejected')),
                (SELECT COUNT(*) FROM annotations a WHERE a.image=i.id AND a.deleted=0 AND a.state='proposed'),
                EXISTS (SELECT 1 FROM image_tags t WHERE t.image=i.id AND t.tag='done'),
                EXISTS (SELECT 1 FROM image_tags t WHERE t.image=i.id AND t.tag='flagged'),
                (SELECT value FROM image_meta m WHERE m.image=i.id AND m.key='stack'),
                (SELECT value FROM image_meta m WHERE m.image=i.id AND m.key='frame'),
                (SELECT value FROM image_meta m WHERE m.image=i.id AND m.key='slice_mm'),
                COALESCE(i.hash, i.uuid)
             FROM images i WHERE 1=1",
        );
        let mut args: Vec<String> = Vec::new();
        match filter.status {
            ImageStatus::All => {}
            ImageStatus::Unreviewed => sql.push_str(
                " AND (EXISTS (SELECT 1 FROM annotations a WHERE a.image=i.id AND a.deleted=0 AND a.state='proposed')
                   OR NOT EXISTS (SELECT 1 FROM annotations a WHERE a.image=i.id))
                   AND NOT EXISTS (SELECT 1 FROM image_tags t WHERE t.image=i.id AND t.tag='done')",
            ),
            ImageStatus::HasProposals => sql.push_str(
                " AND EXISTS (SELECT 1 FROM annotations a WHERE a.image=i.id AND a.deleted=0 AND a.state='proposed')",
            ),
            ImageStatus::Flagged => sql.push_str(
                " AND EXISTS (SELECT 1 FROM image_tags t WHERE t.image=i.id AND t.tag='flagged')",
            ),
            ImageStatus::Missing => sql.push_str(" AND i.missing=1"),
        }
        if let Some(class) = &filter.class {
            args.push(class.clone());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM annotations a JOIN classes c ON c.id=a.class WHERE a.image=i.id AND a.deleted=0 AND c.name=?{})",
                args.len()
            ));
        }
        if let Some(tag) = &filter.tag {
            args.push(tag.clone());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM image_tags t WHERE t.image=i.id AND t.tag=?{})",
                args.len()
            ));
        }
        if let Some((k, v)) = &filter.meta {
            args.push(k.clone());
            args.push(v.clone());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM image_meta m WHERE m.image=i.id AND m.key=?{} AND m.value=?{})",
                args.len() - 1,
                args.len()
            ));
        }
        if let Some(p) = &filter.path_contains {
            args.push(format!("%{}%", p.to_lowercase()));
            sql.push_str(&format!(" AND lower(i.path) LIKE ?{}", args.len()));
        }
        sql.push_str(" ORDER BY i.path");
        let mut stmt = self.conn.prepare(&sql).map_err(self.sq())?;
        let shard = filter.shard;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                let in_shard = match shard {
                    Some(s) => s.contains(&r.get::<_, String>(12)?),
                    None => true,
                };
                Ok(in_shard.then_some(ImageRow {
                    id: Uuid::parse_str(&r.get::<_, String>(0)?).unwrap_or_default(),
                    path: r.get(1)?,
                    width: r.get(2)?,
                    height: r.get(3)?,
                    missing: r.get::<_, i64>(4)? != 0,
                    boxes: r.get(5)?,
                    proposals: r.get(6)?,
                    done: r.get::<_, i64>(7)? != 0,
                    flagged: r.get::<_, i64>(8)? != 0,
                    stack: r.get(9)?,
                    frame: r
                        .get::<_, Option<String>>(10)?
                        .and_then(|f| f.parse().ok())
                        .unwrap_or(0),
                    slice_mm: r.get::<_, Option<String>>(11)?.and_then(|f| f.parse().ok()),
                }))
            })
            .map_err(self.sq())?;
        let mut out = Vec::new();
        for row in rows {
            if let Some(row) = row.map_err(self.sq())? {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// Sets or removes (empty value) a key=value on an image.
    pub fn set_image_meta(&mut self, image: Uuid, key: &str, value: &str) -> Result<()> {
        let id = self.image_row(image)?;
        if value.is_empty() {
            self.conn
                .execute(
                    "DELETE FROM image_meta WHERE image=?1 AND key=?2",
                    params![id, key],
                )
                .map_err(self.sq())?;
        } else {
            self.conn
                .execute(
                    "INSERT OR REPLACE INTO image_meta(image, key, value) VALUES (?1, ?2, ?3)",
                    params![id, key, value],
                )
                .map_err(self.sq())?;
        }
        Ok(())
    }

    pub fn image_meta(&self, image: Uuid) -> Result<Vec<(String, String)>> {
        let id = self.image_row(image)?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, value FROM image_meta WHERE image=?1 ORDER BY key")
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    pub fn set_tag(&mut self, image: Uuid, tag: &str, on: bool) -> Result<()> {
        let id = self.image_row(image)?;
        let sql = if on {
            "INSERT OR IGNORE INTO image_tags(image, tag) VALUES (?1, ?2)"
        } else {
            "DELETE FROM image_tags WHERE image=?1 AND tag=?2"
        };
        self.conn
            .execute(sql, params![id, tag])
            .map_err(self.sq())?;
        Ok(())
    }

    pub fn tags(&self, image: Uuid) -> Result<Vec<String>> {
        let id = self.image_row(image)?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT tag FROM image_tags WHERE image=?1 ORDER BY tag")
            .map_err(self.sq())?;
        let rows = stmt.query_map([id], |r| r.get(0)).map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    pub(super) fn image_row(&self, image: Uuid) -> Result<i64> {
        self.conn
            .query_row(
                "SELECT id FROM images WHERE uuid=?1",
                [image.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sq())?
            .ok_or_else(|| StoreError::NotFound {
                what: "image",
                key: image.to_string(),
            })
    }
}

#[cfg(test)]
mod shard_tests {
    use super::Shard;

    #[test]
    fn shards_cover_every_key_exactly_once_and_are_balanced() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("{i:064x}")).collect();
        let shards: Vec<Shard> = (0..4).map(|i| Shard::new(i, 4).expect("shard")).collect();
        let mut sizes = [0usize; 4];
        for key in &keys {
            let owners: Vec<usize> = (0..4).filter(|&i| shards[i].contains(key)).collect();
            assert_eq!(owners.len(), 1, "{key} belongs to {owners:?}");
            sizes[owners[0]] += 1;
        }
        // Balanced: each within 5% of a quarter.
        for s in sizes {
            assert!((2375..=2625).contains(&s), "{sizes:?}");
        }
    }

    #[test]
    fn shard_arguments_and_batch_environments_are_read_or_refused_by_name() {
        assert_eq!(Shard::parse("1/4"), Ok(Shard { index: 1, count: 4 }));
        for bad in ["4/4", "0/0", "1", "a/4", "-1/4"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "12"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(Shard::from_env(slurm), Ok(Shard { index: 2, count: 4 }));
        let k8s = env(&[("JOB_COMPLETION_INDEX", "3"), ("LOUPE_SHARD_COUNT", "8")]);
        assert_eq!(Shard::from_env(k8s), Ok(Shard { index: 3, count: 8 }));
        let k8s_no_count = env(&[("JOB_COMPLETION_INDEX", "3")]);
        let err = Shard::from_env(k8s_no_count).expect_err("count missing");
        assert!(err.contains("LOUPE_SHARD_COUNT"), "{err}");
        let none = env(&[]);
        assert!(Shard::from_env(none).is_err());
    }
}
