//! Typed reads for evaluating a model run (`review::run_eval`): the images of a slice, the
//! ground-truth labels live or as of a version (with COCO's own `area` and id 0 while a box is as
//! its file gave it), and a run's predictions at their original value.

use uuid::Uuid;

use super::*;

/// Which images make a slice: by tag, by a metadata key and value, or one slice per value of a
/// metadata key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SliceRows<'a> {
    Tag(&'a str),
    MetaValue(&'a str, &'a str),
    MetaKey(&'a str),
}

/// Which labels are ground truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GtStates {
    /// Boxes in state `approved`.
    Approved,
    /// Every label (not a proposal, not rejected).
    AllLabels,
}

/// A ground-truth label as evaluation reads it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GtRow {
    /// The box's row id, or 0 for a box a COCO file numbered 0 (as pycocotools treats it).
    pub id: i64,
    pub image: i64,
    pub class: i64,
    pub bbox: BBox,
    pub flags: BoxFlags,
    /// COCO's `area` while the box is as its file gave it, else `w * h`.
    pub area: f64,
}

/// A run's prediction at its original (model) value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FirstPrediction {
    pub id: Uuid,
    pub image: i64,
    pub class: i64,
    pub bbox: BBox,
    pub score: f64,
}

impl Project {
    /// (slice label, image row) pairs of a slice, in the slice's order.
    pub(crate) fn slice_rows(&self, slice: SliceRows<'_>) -> Result<Vec<(String, i64)>> {
        let (sql, args): (&str, Vec<&str>) = match slice {
            SliceRows::Tag(tag) => (
                "SELECT 'tag:' || tag, image FROM image_tags WHERE tag=?1",
                vec![tag],
            ),
            SliceRows::MetaValue(key, value) => (
                "SELECT key || '=' || value, image FROM image_meta WHERE key=?1 AND value=?2",
                vec![key, value],
            ),
            SliceRows::MetaKey(key) => (
                "SELECT key || '=' || value, image FROM image_meta WHERE key=?1 ORDER BY value",
                vec![key],
            ),
        };
        let mut stmt = self.conn.prepare(sql).map_err(self.sq())?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// The ground-truth labels, live (`at` = `None`) or as of a log position (a version's
    /// `revisions`), in row order.
    pub(crate) fn ground_truth_rows(
        &self,
        at: Option<i64>,
        states: GtStates,
    ) -> Result<Vec<GtRow>> {
        let states = match states {
            GtStates::Approved => "state = 'approved'",
            GtStates::AllLabels => "state NOT IN ('proposed','rejected')",
        };
        // While a box is as a COCO file gave it, pycocotools' view of it holds: its area range
        // goes by the file's `area` (a segmentation's area is not w*h), and a box the file
        // numbered 0 never matches (pycocotools takes a match to annotation id 0 for no match).
        // Edited boxes, and boxes from elsewhere, use w*h and their own row id.
        let same = "cb.ann IS NOT NULL AND cb.x=l.x AND cb.y=l.y AND cb.w=l.w AND cb.h=l.h";
        let area =
            format!("CASE WHEN {same} AND cb.area IS NOT NULL THEN cb.area ELSE l.w*l.h END");
        let id = format!("CASE WHEN {same} AND cb.coco_id=0 THEN 0 ELSE {{row}} END");
        let sql = match at {
            None => format!(
                "SELECT {}, l.image, l.class, l.x, l.y, l.w, l.h, l.flags, {area}
                 FROM annotations l LEFT JOIN coco_boxes cb ON cb.ann=l.id
                 WHERE l.deleted=0 AND {states} ORDER BY l.id",
                id.replace("{row}", "l.id")
            ),
            Some(_) => format!(
                "WITH latest AS (
                    SELECT v.ann, v.image, v.class, v.x, v.y, v.w, v.h, v.flags, v.state, v.deleted,
                           ROW_NUMBER() OVER (PARTITION BY v.ann ORDER BY v.hlc DESC, v.client DESC, v.seq DESC) AS rn
                    FROM revisions v WHERE v.seq <= ?1)
                 SELECT {}, l.image, l.class, l.x, l.y, l.w, l.h, l.flags, {area}
                 FROM latest l LEFT JOIN coco_boxes cb ON cb.ann=l.ann
                 WHERE l.rn=1 AND l.deleted=0 AND {states} ORDER BY l.ann",
                id.replace("{row}", "l.ann")
            ),
        };
        let mut stmt = self.conn.prepare(&sql).map_err(self.sq())?;
        let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<GtRow> {
            Ok(GtRow {
                id: r.get(0)?,
                image: r.get(1)?,
                class: r.get(2)?,
                bbox: BBox::new(r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?),
                flags: BoxFlags::from_bits(r.get::<_, i64>(7)?.try_into().unwrap_or(0)),
                area: r.get(8)?,
            })
        };
        let rows = match at {
            None => stmt.query_map([], map),
            Some(at) => stmt.query_map([at], map),
        }
        .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// The run's predictions at their original value: the first revision of every box the run
    /// made, whatever annotators did to the box since.
    pub(crate) fn run_first_predictions(&self, run: Uuid) -> Result<Vec<FirstPrediction>> {
        let mut stmt = self
            .conn
            .prepare(
                "WITH firsts AS (
                    SELECT v.ann, v.image, v.class, v.x, v.y, v.w, v.h, v.run, v.score,
                           ROW_NUMBER() OVER (PARTITION BY v.ann ORDER BY v.hlc, v.client, v.seq) AS rn
                    FROM revisions v
                    WHERE v.ann IN (SELECT ann FROM revisions WHERE run=(SELECT id FROM runs WHERE uuid=?1)))
                 SELECT a.uuid, f.image, f.class, f.x, f.y, f.w, f.h, f.score FROM firsts f JOIN annotations a ON a.id=f.ann
                 WHERE f.rn=1 AND f.run=(SELECT id FROM runs WHERE uuid=?1) ORDER BY f.ann",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([run.to_string()], |r| {
                let id: Vec<u8> = r.get(0)?;
                Ok(FirstPrediction {
                    id: Uuid::from_slice(&id).unwrap_or_default(),
                    image: r.get(1)?,
                    class: r.get(2)?,
                    bbox: BBox::new(r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?),
                    // The store keeps scores as f32 values; widening is exact.
                    score: r.get::<_, Option<f64>>(7)?.unwrap_or(0.0),
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// Row ids and names of every class, in row order (evaluation's categories).
    pub(crate) fn classes_by_row(&self) -> Result<Vec<(i64, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name FROM classes ORDER BY id")
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }
}
