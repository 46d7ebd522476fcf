//! Users: adding, listing, the current user, acting as and switching users.

use rusqlite::params;
use uuid::Uuid;

use super::*;

impl Project {
    // ---------------------------------------------------------------- users

    pub fn add_user(&mut self, name: &str, role: Role) -> Result<User> {
        let id = Uuid::now_v7();
        self.conn
            .execute(
                "INSERT INTO users(uuid, name, role, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![id.to_string(), name, stored_role(role), now_ms()],
            )
            .map_err(self.sq())?;
        Ok(User {
            id,
            name: name.to_owned(),
            role,
        })
    }

    pub fn users(&self) -> Result<Vec<User>> {
        let mut stmt = self
            .conn
            .prepare("SELECT uuid, name, role FROM users ORDER BY id")
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(self.sq())?;
        let mut out = Vec::new();
        for row in rows {
            let (id, name, role) = row.map_err(self.sq())?;
            out.push(User {
                id: Uuid::parse_str(&id).unwrap_or_default(),
                name,
                role: Role::parse(&role).unwrap_or(Role::Annotator),
            });
        }
        Ok(out)
    }

    /// The person edits are attributed to.
    pub fn current_user(&self) -> Result<User> {
        self.conn
            .query_row(
                "SELECT uuid, name, role FROM users WHERE id=?1",
                [self.user],
                |r| {
                    Ok(User {
                        id: Uuid::parse_str(&r.get::<_, String>(0)?).unwrap_or_default(),
                        name: r.get(1)?,
                        role: Role::parse(&r.get::<_, String>(2)?).unwrap_or(Role::Annotator),
                    })
                },
            )
            .map_err(self.sq())
    }

    /// Attributes this connection's edits to `name_or_id` (created as an annotator if new)
    /// without changing the project's remembered user.
    pub fn act_as(&mut self, name_or_id: &str) -> Result<User> {
        let id = match self.user_row(name_or_id)? {
            Some(id) => id,
            None => {
                let u = self.add_user(name_or_id, Role::Annotator)?;
                self.user_row(&u.id.to_string())?.unwrap_or_default()
            }
        };
        self.user = id;
        self.current_user()
    }

    /// Makes `name_or_id` the current user, creating it with `role` if it does not exist.
    pub fn switch_user(&mut self, name_or_id: &str, role: Option<Role>) -> Result<User> {
        let id = match self.user_row(name_or_id)? {
            Some(id) => {
                if let Some(role) = role {
                    self.conn
                        .execute(
                            "UPDATE users SET role=?1 WHERE id=?2",
                            params![stored_role(role), id],
                        )
                        .map_err(self.sq())?;
                }
                id
            }
            None => {
                let u = self.add_user(name_or_id, role.unwrap_or(Role::Annotator))?;
                self.user_row(&u.id.to_string())?.unwrap_or_default()
            }
        };
        self.user = id;
        let uuid: String = self
            .conn
            .query_row("SELECT uuid FROM users WHERE id=?1", [id], |r| r.get(0))
            .map_err(self.sq())?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('user', ?1)",
                [uuid],
            )
            .map_err(self.sq())?;
        self.current_user()
    }
}

/// How a role is kept in `users.role`. The column's CHECK (migration 1) predates the `model`
/// role of batch workers' keys, so a model member is kept as an annotator there: that column
/// only attributes local edits, and sync judges every signed revision by the team roster's
/// role (`sync::roster`), where `model` is what it is.
pub(crate) fn stored_role(role: Role) -> &'static str {
    match role {
        Role::Model => Role::Annotator.as_str(),
        r => r.as_str(),
    }
}
