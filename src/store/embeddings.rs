//! Image and box embeddings (migration 7): one *set* per encoder model and settings (found
//! again by their hashes, so `loupe embed` resumes), one L2-normalised vector per image and per
//! box crop. Derived data: local to this file, never synced, computed again anywhere.
//!
//! `inference::embed` fills the sets; `review::similar` reads them whole into a flat index.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::*;
use crate::model::BBox;

/// One set of embeddings: the encoder and settings that made it, and what it holds.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EmbeddingSet {
    pub name: String,
    pub model_path: String,
    pub model_hash: String,
    pub settings_hash: String,
    /// The vectors' length (`None` until the first is stored).
    pub dim: Option<usize>,
    pub created_ms: i64,
    /// Images embedded whole.
    pub images: usize,
    /// Box crops embedded.
    pub boxes: usize,
}

/// What a vector stands for: an image, or one box of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmbeddingKey {
    pub image: Uuid,
    /// The box whose crop was embedded; `None` for the whole image.
    pub ann: Option<Uuid>,
}

/// A vector to store.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEmbedding {
    pub key: EmbeddingKey,
    /// The box the crop was cut from (for a box).
    pub bbox: Option<BBox>,
    pub vector: Vec<f32>,
}

fn to_blob(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Appends the blob's floats to `out`; false if its length is not `dim` floats.
fn extend_from_blob(blob: &[u8], dim: usize, out: &mut Vec<f32>) -> bool {
    if blob.len() != dim * 4 {
        return false;
    }
    out.extend(
        blob.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    );
    true
}

impl Project {
    // ---------------------------------------------------------------- embeddings

    /// The set made by this model and settings, created (named `name`) if there is none.
    /// `name` taken by a set of another model or settings is refused.
    pub fn embedding_set(
        &mut self,
        name: &str,
        model_path: &str,
        model_hash: &str,
        settings: &str,
        settings_hash: &str,
    ) -> Result<(EmbeddingSet, bool)> {
        let found: Option<String> = self
            .conn
            .query_row(
                "SELECT name FROM embedding_sets WHERE model_hash=?1 AND settings_hash=?2",
                params![model_hash, settings_hash],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sq())?;
        if let Some(existing) = found {
            return Ok((self.embedding_set_named(&existing)?, false));
        }
        let taken: bool = self
            .conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM embedding_sets WHERE name=?1)",
                [name],
                |r| r.get(0),
            )
            .map_err(self.sq())?;
        if taken {
            return Err(StoreError::Invalid(format!(
                "an embedding set named {name:?} exists, made with another model or other \
                 settings; choose another name"
            )));
        }
        self.conn
            .execute(
                "INSERT INTO embedding_sets(name, model_path, model_hash, settings, settings_hash, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![name, model_path, model_hash, settings, settings_hash, now_ms()],
            )
            .map_err(self.sq())?;
        Ok((self.embedding_set_named(name)?, true))
    }

    /// Every embedding set, oldest first.
    pub fn embedding_sets(&self) -> Result<Vec<EmbeddingSet>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT s.name, s.model_path, s.model_hash, s.settings_hash, s.dim, s.created_ms,
                        (SELECT COUNT(*) FROM embeddings e WHERE e.set_id=s.id AND e.ann=0),
                        (SELECT COUNT(*) FROM embeddings e WHERE e.set_id=s.id AND e.ann<>0)
                 FROM embedding_sets s ORDER BY s.id",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(EmbeddingSet {
                    name: r.get(0)?,
                    model_path: r.get(1)?,
                    model_hash: r.get(2)?,
                    settings_hash: r.get(3)?,
                    dim: r
                        .get::<_, Option<i64>>(4)?
                        .and_then(|d| usize::try_from(d).ok()),
                    created_ms: r.get(5)?,
                    images: usize::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
                    boxes: usize::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// The set named `name`.
    pub fn embedding_set_named(&self, name: &str) -> Result<EmbeddingSet> {
        self.embedding_sets()?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| StoreError::NotFound {
                what: "embedding set",
                key: name.to_owned(),
            })
    }

    fn embedding_set_row(&self, name: &str) -> Result<(i64, Option<usize>)> {
        self.conn
            .query_row(
                "SELECT id, dim FROM embedding_sets WHERE name=?1",
                [name],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Option<i64>>(1)?
                            .and_then(|d| usize::try_from(d).ok()),
                    ))
                },
            )
            .optional()
            .map_err(self.sq())?
            .ok_or_else(|| StoreError::NotFound {
                what: "embedding set",
                key: name.to_owned(),
            })
    }

    /// What the set holds already: every key, with the box its crop was cut from (for boxes).
    /// A caller resuming embeds what is missing and the boxes that moved.
    pub fn embedded(&self, set: &str) -> Result<HashMap<EmbeddingKey, Option<BBox>>> {
        let (id, _) = self.embedding_set_row(set)?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT i.uuid, a.uuid, e.x, e.y, e.w, e.h FROM embeddings e
                 JOIN images i ON i.id=e.image LEFT JOIN annotations a ON a.id=e.ann
                 WHERE e.set_id=?1",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([id], |r| {
                let image: String = r.get(0)?;
                let ann: Option<Vec<u8>> = r.get(1)?;
                let bbox = match (
                    r.get::<_, Option<f64>>(2)?,
                    r.get::<_, Option<f64>>(3)?,
                    r.get::<_, Option<f64>>(4)?,
                    r.get::<_, Option<f64>>(5)?,
                ) {
                    (Some(x), Some(y), Some(w), Some(h)) => Some(BBox { x, y, w, h }),
                    _ => None,
                };
                Ok((
                    EmbeddingKey {
                        image: Uuid::parse_str(&image).unwrap_or_default(),
                        ann: ann.and_then(|b| Uuid::from_slice(&b).ok()),
                    },
                    bbox,
                ))
            })
            .map_err(self.sq())?;
        rows.collect::<Result<HashMap<_, _>, _>>()
            .map_err(self.sq())
    }

    /// Stores vectors in one transaction, replacing those of the same keys. Every vector must
    /// have the set's length (the first stored fixes it); a key whose image or box is not in
    /// the project is refused, and nothing is written.
    pub fn store_embeddings(&mut self, set: &str, rows: &[NewEmbedding]) -> Result<()> {
        let (id, dim) = self.embedding_set_row(set)?;
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let dim = dim.unwrap_or(first.vector.len());
        if let Some(bad) = rows.iter().find(|r| r.vector.len() != dim || dim == 0) {
            return Err(StoreError::Invalid(format!(
                "embedding set {set:?} holds vectors of {dim} values, not {}",
                bad.vector.len()
            )));
        }
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sq)?;
        tx.execute(
            "UPDATE embedding_sets SET dim=?2 WHERE id=?1 AND dim IS NULL",
            params![id, i64::try_from(dim).unwrap_or(i64::MAX)],
        )
        .map_err(sq)?;
        {
            let mut image_row = tx
                .prepare_cached("SELECT id FROM images WHERE uuid=?1")
                .map_err(sq)?;
            let mut ann_row = tx
                .prepare_cached("SELECT id FROM annotations WHERE uuid=?1")
                .map_err(sq)?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO embeddings(set_id, image, ann, x, y, w, h, vector)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(sq)?;
            for row in rows {
                let image: i64 = image_row
                    .query_row([row.key.image.to_string()], |r| r.get(0))
                    .optional()
                    .map_err(sq)?
                    .ok_or_else(|| StoreError::NotFound {
                        what: "image",
                        key: row.key.image.to_string(),
                    })?;
                let ann: i64 = match row.key.ann {
                    None => 0,
                    Some(a) => ann_row
                        .query_row([a.as_bytes().as_slice()], |r| r.get(0))
                        .optional()
                        .map_err(sq)?
                        .ok_or_else(|| StoreError::NotFound {
                            what: "annotation",
                            key: a.to_string(),
                        })?,
                };
                let b = row.bbox;
                insert
                    .execute(params![
                        id,
                        image,
                        ann,
                        b.map(|b| b.x),
                        b.map(|b| b.y),
                        b.map(|b| b.w),
                        b.map(|b| b.h),
                        to_blob(&row.vector),
                    ])
                    .map_err(sq)?;
            }
        }
        tx.commit().map_err(sq)
    }

    /// Every vector of the set, images (`boxes` false) or live boxes (`boxes` true), as keys
    /// and one flat array of `dim` floats per key, in key order. Vectors of deleted boxes are
    /// left out; a box's vector is kept while its box is where the crop was cut.
    pub fn load_embeddings(
        &self,
        set: &str,
        boxes: bool,
    ) -> Result<(usize, Vec<EmbeddingKey>, Vec<f32>)> {
        let (id, dim) = self.embedding_set_row(set)?;
        let Some(dim) = dim else {
            return Ok((0, Vec::new(), Vec::new()));
        };
        let sql = if boxes {
            "SELECT i.uuid, a.uuid, e.vector FROM embeddings e
             JOIN images i ON i.id=e.image JOIN annotations a ON a.id=e.ann
             WHERE e.set_id=?1 AND e.ann<>0 AND a.deleted=0
               AND a.x=e.x AND a.y=e.y AND a.w=e.w AND a.h=e.h
             ORDER BY e.image, e.ann"
        } else {
            "SELECT i.uuid, NULL, e.vector FROM embeddings e JOIN images i ON i.id=e.image
             WHERE e.set_id=?1 AND e.ann=0 ORDER BY e.image"
        };
        let mut stmt = self.conn.prepare(sql).map_err(self.sq())?;
        let mut rows = stmt.query([id]).map_err(self.sq())?;
        let mut keys = Vec::new();
        let mut data = Vec::new();
        while let Some(r) = rows.next().map_err(self.sq())? {
            let image: String = r.get(0).map_err(self.sq())?;
            let ann: Option<Vec<u8>> = r.get(1).map_err(self.sq())?;
            let blob = r.get_ref(2).map_err(self.sq())?;
            let blob = blob.as_blob().map_err(|e| {
                StoreError::Invalid(format!(
                    "embedding set {set:?}: a vector is not a blob: {e}"
                ))
            })?;
            if !extend_from_blob(blob, dim, &mut data) {
                return Err(StoreError::Invalid(format!(
                    "embedding set {set:?}: a vector of {} bytes, not {} ({dim} floats)",
                    blob.len(),
                    dim * 4
                )));
            }
            keys.push(EmbeddingKey {
                image: Uuid::parse_str(&image).unwrap_or_default(),
                ann: ann.and_then(|b| Uuid::from_slice(&b).ok()),
            });
        }
        Ok((dim, keys, data))
    }
}
