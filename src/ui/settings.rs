//! Preferences that survive restarts: recent projects, the theme, the data folder and the
//! execution provider (`settings.toml`) and keyboard shortcuts (`shortcuts.toml`), both in the
//! user's config folder as the OS has it (through `directories`: `~/.config/loupe` on Linux,
//! `%APPDATA%\loupe\loupe\config` on Windows, `~/Library/Application Support/org.loupe.loupe`
//! on macOS).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::shortcuts::Keymap;

/// How many recent projects the start screen lists.
const MAX_RECENT: usize = 12;

/// What Loupe remembers between runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Most recent first.
    pub recent_projects: Vec<PathBuf>,
    /// Show the image list panel.
    pub show_image_list: bool,
    /// The image last shown in each project (project file → image path), to reopen there.
    pub last_images: BTreeMap<String, String>,
    /// Detection models used, most recent first.
    pub recent_models: Vec<super::model_run::RecentModel>,
    /// The execution provider models run on: `auto`, `cpu`, `cuda`, `directml` or `coreml`.
    pub execution_provider: String,
    /// Dark, light, or as the system says.
    pub theme: super::theme::ThemeChoice,
    /// Where Loupe keeps its data (the ONNX Runtime library, models); `None`: the OS's data
    /// folder for Loupe.
    pub data_folder: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            recent_projects: Vec::new(),
            show_image_list: true,
            last_images: BTreeMap::new(),
            recent_models: Vec::new(),
            execution_provider: "auto".to_owned(),
            theme: super::theme::ThemeChoice::default(),
            data_folder: None,
        }
    }
}

impl Settings {
    /// Puts a project first in the recent list.
    pub fn remember_project(&mut self, path: &Path) {
        let path = dunce::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.recent_projects.retain(|p| p != &path);
        self.recent_projects.insert(0, path);
        self.recent_projects.truncate(MAX_RECENT);
    }

    fn key(project: &Path) -> String {
        dunce::canonicalize(project)
            .unwrap_or_else(|_| project.to_path_buf())
            .display()
            .to_string()
    }

    /// Remembers the image shown in a project.
    pub fn remember_image(&mut self, project: &Path, image: &str) {
        self.last_images
            .insert(Self::key(project), image.to_owned());
    }

    /// The image last shown in a project.
    pub fn last_image(&self, project: &Path) -> Option<&str> {
        self.last_images
            .get(&Self::key(project))
            .map(String::as_str)
    }

    /// Puts a model first in the recent models.
    pub fn remember_model(&mut self, model: super::model_run::RecentModel) {
        self.recent_models.retain(|m| m.path != model.path);
        self.recent_models.insert(0, model);
        self.recent_models.truncate(MAX_RECENT);
    }

    /// The most recent project that still exists.
    pub fn last_project(&self) -> Option<&Path> {
        self.recent_projects
            .iter()
            .find(|p| p.is_file())
            .map(PathBuf::as_path)
    }
}

/// The config folder and the files in it. `None` folder: nothing is read or written (tests).
#[derive(Clone, Debug, Default)]
pub struct ConfigDir {
    dir: Option<PathBuf>,
}

impl ConfigDir {
    /// The platform's config folder for Loupe (`~/.config/loupe` on Linux).
    pub fn user() -> Self {
        Self {
            dir: directories::ProjectDirs::from("org", "loupe", "loupe")
                .map(|d| d.config_dir().to_path_buf()),
        }
    }

    /// A given folder.
    pub fn at(dir: PathBuf) -> Self {
        Self { dir: Some(dir) }
    }

    /// No folder: defaults, nothing saved.
    pub fn none() -> Self {
        Self { dir: None }
    }

    fn file(&self, name: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(name))
    }

    /// Reads `settings.toml`; defaults when missing or unreadable (with a warning).
    pub fn load_settings(&self) -> Settings {
        let Some(path) = self.file("settings.toml") else {
            return Settings::default();
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!("{}: ignoring unreadable settings: {e}", path.display());
                Settings::default()
            }),
            Err(_) => Settings::default(),
        }
    }

    /// Writes `settings.toml`.
    pub fn save_settings(&self, settings: &Settings) -> anyhow::Result<()> {
        let Some(path) = self.file("settings.toml") else {
            return Ok(());
        };
        write_file(&path, &toml::to_string_pretty(settings)?)
    }

    /// Reads `shortcuts.toml`, writing the defaults there first if it does not exist. The
    /// second value is what was wrong in the file (conflicts name both actions), for the
    /// status bar.
    pub fn load_keymap(&self) -> (Keymap, Vec<String>) {
        let Some(path) = self.file("shortcuts.toml") else {
            return (Keymap::default(), Vec::new());
        };
        let keymap = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let (map, warnings) = Keymap::from_toml(&text);
                let said: Vec<String> = warnings
                    .into_iter()
                    .map(|w| format!("{}: {}", path.display(), w.0))
                    .collect();
                for w in &said {
                    tracing::warn!("{w}");
                }
                return (map, said);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let map = Keymap::default();
                if let Err(e) = write_file(&path, &map.to_toml()) {
                    tracing::warn!("cannot write default shortcuts: {e:#}");
                }
                map
            }
            Err(e) => {
                tracing::warn!(
                    "{}: cannot read shortcuts, using defaults: {e}",
                    path.display()
                );
                Keymap::default()
            }
        };
        (keymap, Vec::new())
    }

    /// Writes `shortcuts.toml` (the settings window's keys).
    pub fn save_keymap(&self, keymap: &Keymap) -> anyhow::Result<()> {
        let Some(path) = self.file("shortcuts.toml") else {
            return Ok(());
        };
        write_file(&path, &keymap.to_toml())
    }

    /// The folder itself, for the settings window; `None` when nothing is kept (tests).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Where the shortcuts file is, for the help overlay.
    pub fn keymap_path(&self) -> Option<PathBuf> {
        self.file("shortcuts.toml")
    }
}

/// Writes a file through a temporary sibling and a rename, so a crash never leaves half a file.
fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_shortcuts_round_trip_through_the_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ConfigDir::at(dir.path().join("loupe"));
        let mut s = config.load_settings();
        assert!(s.recent_projects.is_empty());
        let project = dir.path().join("a.loupe");
        std::fs::write(&project, b"x").expect("write");
        s.remember_project(&project);
        s.remember_project(&project);
        s.remember_image(&project, "sub/b.png");
        config.save_settings(&s).expect("save");
        let again = config.load_settings();
        assert_eq!(again.recent_projects.len(), 1);
        assert_eq!(again.last_image(&project), Some("sub/b.png"));
        assert!(again.last_project().is_some());
        // The first read writes the defaults; the second reads them back.
        let _ = config.load_keymap();
        let path = config.keymap_path().expect("path");
        assert!(path.is_file());
        let (again, warnings) = config.load_keymap();
        assert_eq!(again.to_toml(), Keymap::default().to_toml());
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
