//! The local user profile: who works on this copy of the project, chosen once (in the app's
//! first-start dialog or with `loupe user NAME --role ROLE`) and remembered in the project file.
//!
//! Opening a project always has a current user (the store makes a default lead on first open);
//! what this module adds is whether someone actually *chose* it, so the app knows when to ask.

use super::{Result, ReviewError};
use crate::model::{Role, User};
use crate::store::Project;

/// The profile chosen for this project file, or `None` when nobody chose one yet (the
/// current user is then only the store's default).
pub fn chosen_profile(p: &Project) -> Result<Option<User>> {
    let Some(chosen) = p.remembered_user()? else {
        return Ok(None);
    };
    let me = p.current_user()?;
    // The remembered id can name a user that no longer exists (a roster change by sync):
    // then the choice is void and the app asks again.
    Ok((me.id.to_string() == chosen || me.name == chosen).then_some(me))
}

/// Makes `name` (created if new) with `role` this project's remembered user and the author of
/// the connection's next edits.
pub fn choose_profile(p: &mut Project, name: &str, role: Role) -> Result<User> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ReviewError::Invalid(
            "a profile needs a name (it is shown on every box you edit)".into(),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ReviewError::Invalid(format!(
            "{name:?}: a profile name cannot hold control characters"
        )));
    }
    Ok(p.switch_user(name, Some(role))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_project_has_no_chosen_profile_until_one_is_chosen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.loupe");
        let mut p = Project::create(&path).expect("create");
        assert_eq!(chosen_profile(&p).expect("read"), None);
        let u = choose_profile(&mut p, "  ada ", Role::Reviewer).expect("choose");
        assert_eq!((u.name.as_str(), u.role), ("ada", Role::Reviewer));
        drop(p);
        // Remembered in the file: a new connection sees the same profile and acts as it.
        let p = Project::open(&path).expect("open");
        let chosen = chosen_profile(&p).expect("read").expect("chosen");
        assert_eq!((chosen.name.as_str(), chosen.role), ("ada", Role::Reviewer));
        assert_eq!(p.current_user().expect("user").name, "ada");
    }

    #[test]
    fn an_empty_name_is_refused_with_a_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = Project::create(&dir.path().join("p.loupe")).expect("create");
        let err = choose_profile(&mut p, "   ", Role::Lead).expect_err("refused");
        assert!(err.to_string().contains("needs a name"), "{err}");
        assert_eq!(chosen_profile(&p).expect("read"), None);
    }
}
