//! Project-wide counts (`loupe stats`).

use super::*;

/// Project-wide counts for `loupe stats`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    pub images: u64,
    pub missing_images: u64,
    pub image_bytes: u64,
    pub classes: u64,
    pub boxes: u64,
    pub proposals: u64,
    pub revisions: u64,
    pub versions: u64,
    pub runs: u64,
    pub boxes_per_class: Vec<(String, u64)>,
    pub proposals_per_class: Vec<(String, u64)>,
    pub boxes_per_state: Vec<(String, u64)>,
}

impl Project {
    // ---------------------------------------------------------------- stats

    pub fn stats(&self) -> Result<Stats> {
        let one = |sql: &str| -> Result<u64> {
            self.conn
                .query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(self.sq())
        };
        let pairs = |sql: &str| -> Result<Vec<(String, u64)>> {
            let mut stmt = self.conn.prepare(sql).map_err(self.sq())?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    ))
                })
                .map_err(self.sq())?;
            rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
        };
        Ok(Stats {
            images: one("SELECT COUNT(*) FROM images")?,
            missing_images: one("SELECT COUNT(*) FROM images WHERE missing=1")?,
            image_bytes: one("SELECT COALESCE(SUM(bytes), 0) FROM images")?,
            classes: one("SELECT COUNT(*) FROM classes")?,
            boxes: one("SELECT COUNT(*) FROM annotations WHERE deleted=0 AND state NOT IN ('proposed','rejected')")?,
            proposals: one("SELECT COUNT(*) FROM annotations WHERE deleted=0 AND state='proposed'")?,
            revisions: one("SELECT COUNT(*) FROM revisions")?,
            versions: one("SELECT COUNT(*) FROM versions")?,
            runs: one("SELECT COUNT(*) FROM runs")?,
            boxes_per_class: pairs(
                "SELECT c.name, COUNT(a.id) FROM classes c LEFT JOIN annotations a ON a.class=c.id AND a.deleted=0 AND a.state NOT IN ('proposed','rejected')
                 GROUP BY c.id ORDER BY c.ord, c.id",
            )?,
            proposals_per_class: pairs(
                "SELECT c.name, COUNT(a.id) FROM classes c LEFT JOIN annotations a ON a.class=c.id AND a.deleted=0 AND a.state='proposed'
                 GROUP BY c.id ORDER BY c.ord, c.id",
            )?,
            boxes_per_state: pairs(
                "SELECT state, COUNT(*) FROM annotations WHERE deleted=0 GROUP BY state ORDER BY state",
            )?,
        })
    }
}
