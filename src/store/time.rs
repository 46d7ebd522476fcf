//! The human time each image costs (migration 6): per image and per annotator, the active
//! milliseconds the app measured on it, the edits (actions) and key presses made there, and the
//! labels it had at the last visit by where they came from (drawn by a person, or a model's
//! box accepted or corrected). The app adds a visit at a time through its background writer;
//! `review::annotator_stats` and the dashboard read the totals.

use std::collections::HashMap;

use super::*;

/// One visit of an image by the current user, as the app measured it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeVisit {
    pub image: Uuid,
    /// Active milliseconds: focused on the image, idle gaps over a minute left out.
    pub active_ms: u64,
    /// Edits made (each undoable step; an undo or redo is one too).
    pub actions: u64,
    /// Keys pressed (repeats not counted).
    pub key_presses: u64,
    /// The image's labels after the visit that a person drew.
    pub boxes_human: u64,
    /// The image's labels after the visit that came from a model (accepted or corrected).
    pub boxes_model: u64,
}

/// The measured time of one image by one annotator (all visits added).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ImageTime {
    pub image: Uuid,
    pub path: String,
    pub user: String,
    pub visits: u64,
    pub active_ms: u64,
    pub actions: u64,
    pub key_presses: u64,
    pub boxes_human: u64,
    pub boxes_model: u64,
}

/// The measured time of one annotator, over every image they visited.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct UserTime {
    pub user: String,
    pub images: u64,
    pub active_ms: u64,
    pub actions: u64,
    pub key_presses: u64,
    pub boxes_human: u64,
    pub boxes_model: u64,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Project {
    // ---------------------------------------------------------------- measured time

    /// Adds a visit to the current user's totals for its image, in one statement: times,
    /// actions and keys add up; the box counts are the image's as this visit left it.
    pub fn record_time(&mut self, visit: &TimeVisit) -> Result<()> {
        let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let changed = self
            .conn
            .execute(
                "INSERT INTO image_time(image, user, visits, active_ms, actions, key_presses, boxes_human, boxes_model, last_ms)
                 SELECT id, ?2, 1, ?3, ?4, ?5, ?6, ?7, ?8 FROM images WHERE uuid=?1
                 ON CONFLICT(image, user) DO UPDATE SET
                    visits = visits + 1,
                    active_ms = active_ms + excluded.active_ms,
                    actions = actions + excluded.actions,
                    key_presses = key_presses + excluded.key_presses,
                    boxes_human = excluded.boxes_human,
                    boxes_model = excluded.boxes_model,
                    last_ms = excluded.last_ms",
                params![
                    visit.image.to_string(),
                    self.user,
                    to_i64(visit.active_ms),
                    to_i64(visit.actions),
                    to_i64(visit.key_presses),
                    to_i64(visit.boxes_human),
                    to_i64(visit.boxes_model),
                    now_ms(),
                ],
            )
            .map_err(self.sq())?;
        if changed == 0 {
            return Err(StoreError::NotFound {
                what: "image",
                key: visit.image.to_string(),
            });
        }
        Ok(())
    }

    /// Every image's measured time, per annotator, in path order.
    pub fn image_times(&self) -> Result<Vec<ImageTime>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT i.uuid, i.path, u.name, t.visits, t.active_ms, t.actions, t.key_presses, t.boxes_human, t.boxes_model
                 FROM image_time t JOIN images i ON i.id=t.image JOIN users u ON u.id=t.user
                 ORDER BY i.path, u.name",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                let uuid: String = r.get(0)?;
                Ok(ImageTime {
                    image: Uuid::parse_str(&uuid).unwrap_or_default(),
                    path: r.get(1)?,
                    user: r.get(2)?,
                    visits: count(r.get(3)?),
                    active_ms: count(r.get(4)?),
                    actions: count(r.get(5)?),
                    key_presses: count(r.get(6)?),
                    boxes_human: count(r.get(7)?),
                    boxes_model: count(r.get(8)?),
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// Each annotator's measured time over every image they visited, by name.
    pub fn user_times(&self) -> Result<Vec<UserTime>> {
        let mut rows: Vec<UserTime> = self.user_times_by_row()?.into_values().collect();
        rows.sort_by(|a, b| a.user.cmp(&b.user));
        Ok(rows)
    }

    /// [`Project::user_times`] by user row id, for joins in memory.
    pub(crate) fn user_times_by_row(&self) -> Result<HashMap<i64, UserTime>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT t.user, u.name, COUNT(*), SUM(t.active_ms), SUM(t.actions), SUM(t.key_presses), SUM(t.boxes_human), SUM(t.boxes_model)
                 FROM image_time t JOIN users u ON u.id=t.user
                 GROUP BY t.user",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    UserTime {
                        user: r.get(1)?,
                        images: count(r.get(2)?),
                        active_ms: count(r.get(3)?),
                        actions: count(r.get(4)?),
                        key_presses: count(r.get(5)?),
                        boxes_human: count(r.get(6)?),
                        boxes_model: count(r.get(7)?),
                    },
                ))
            })
            .map_err(self.sq())?;
        rows.collect::<Result<HashMap<_, _>, _>>()
            .map_err(self.sq())
    }
}
