//! Finding and starting ONNX Runtime, which Loupe loads at run time rather than linking.
//!
//! `ort` is built with `load-dynamic`, so nothing is downloaded at build time and the app starts
//! without the library; only pre-labelling needs it. `ort` panics when asked to load a library
//! that is not there, so every path is checked here first and a missing library becomes
//! [`InferenceError::RuntimeMissing`], whose message says how to install it.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, RwLock};

use super::InferenceError;

/// Where ONNX Runtime was found and which version it is, for `loupe doctor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeInfo {
    /// The shared library that was loaded.
    pub path: PathBuf,
    /// ONNX Runtime's own version, e.g. "1.24.4"; "unknown" if the build does not say.
    pub version: String,
}

/// The process-wide ONNX Runtime environment. `ort` allows one per process, so it lives for the
/// rest of the process once made.
pub(crate) struct Runtime {
    pub(crate) env: ort::environment::Environment,
    pub(crate) info: RuntimeInfo,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// Serialises initialisation; `RUNTIME` is only set on success so that a user who installs the
/// library after a failed attempt can try again without restarting the app.
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// Finds ONNX Runtime, loads it (once per process) and reports where it came from.
pub fn runtime_info() -> Result<RuntimeInfo, InferenceError> {
    runtime().map(|rt| rt.info.clone())
}

/// The loaded runtime, loading it on first use.
pub(crate) fn runtime() -> Result<&'static Runtime, InferenceError> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    // A poisoned lock only means another thread panicked while initialising; the state it
    // guards (`RUNTIME`) is still consistent, so carry on.
    let _guard = INIT_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let path = locate_library()?;
    let rt = init(&path)?;
    Ok(RUNTIME.get_or_init(|| rt))
}

fn init(path: &Path) -> Result<Runtime, InferenceError> {
    let load_err = |message: String| InferenceError::RuntimeLoad {
        path: path.to_path_buf(),
        message,
    };
    // `init_from` only opens the library; a panic inside it (it has `expect`s for a missing
    // executable path) must not take the app down.
    let builder = std::panic::catch_unwind(|| ort::init_from(path))
        .map_err(|panic| load_err(super::panic_message(&panic)))?
        .map_err(|e| load_err(e.to_string()))?;
    let env = builder
        .with_name("loupe")
        .with_telemetry(false)
        .build()
        .map_err(|e| load_err(e.to_string()))?;
    // The library's own answer first: the wheels' build info names no release branch
    // (`git-branch=HEAD`), and on Windows the file name (`onnxruntime.dll`) has no version.
    let version = version_from_library(path)
        .or_else(|| {
            std::panic::catch_unwind(ort::info)
                .ok()
                .and_then(version_from_build_info)
        })
        .or_else(|| version_from_file_name(path))
        .unwrap_or_else(|| "unknown".to_owned());
    tracing::debug!(path = %path.display(), %version, "loaded ONNX Runtime");
    Ok(Runtime {
        env,
        info: RuntimeInfo {
            path: path.to_path_buf(),
            version,
        },
    })
}

/// The data folder the user chose (the app's settings), in place of the OS's.
static DATA_DIR: RwLock<Option<PathBuf>> = RwLock::new(None);

/// Sets the folder Loupe keeps its data in (the ONNX Runtime library, models); `None` goes back
/// to the OS's data folder for Loupe. Only where the library is looked for depends on it here,
/// and only until it is loaded (it stays loaded for the rest of the process).
pub fn set_data_dir(dir: Option<PathBuf>) {
    *DATA_DIR
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = dir;
}

/// The OS's data folder for Loupe (`~/.local/share/loupe` on Linux, `%APPDATA%\loupe\loupe\data`
/// on Windows, `~/Library/Application Support/org.loupe.loupe` on macOS).
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("org", "loupe", "loupe").map(|d| d.data_dir().to_path_buf())
}

/// The data folder in use: the one set with [`set_data_dir`], else [`default_data_dir`].
pub fn data_dir() -> Option<PathBuf> {
    DATA_DIR
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
        .or_else(default_data_dir)
}

/// The platform's plain file name of the library, e.g. `libonnxruntime.so`.
pub(crate) fn library_file_name() -> String {
    format!(
        "{}onnxruntime{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Looks for the library in order: `ORT_DYLIB_PATH`, next to the executable, `lib/loupe/` and
/// `Frameworks/` beside the executable's folder, the app's data folder, and (for development
/// checkouts) `.tools/onnxruntime/` in the source tree, where `scripts/fetch-onnxruntime.sh`
/// puts it.
pub fn locate_library() -> Result<PathBuf, InferenceError> {
    if let Some(explicit) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        // The user said where it is: looking elsewhere would hide their mistake.
        let explicit = PathBuf::from(explicit);
        return find_in(&explicit).ok_or(InferenceError::RuntimeMissing {
            searched: vec![explicit],
        });
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let searched = search_places(exe_dir.as_deref(), data_dir());
    for place in &searched {
        if let Some(found) = find_in(place) {
            return Ok(found);
        }
    }
    Err(InferenceError::RuntimeMissing { searched })
}

/// The folders [`locate_library`] looks in, in order, given the executable's folder.
fn search_places(exe_dir: Option<&Path>, data_dir: Option<PathBuf>) -> Vec<PathBuf> {
    let mut places = Vec::new();
    if let Some(dir) = exe_dir {
        // The installers put the library beside the executable (Windows, AppImage), in
        // /usr/lib/loupe/ for /usr/bin/loupe (the .deb) or in the bundle's Frameworks folder
        // (macOS `Loupe.app/Contents/MacOS/loupe`).
        places.push(dir.to_path_buf());
        if let Some(prefix) = dir.parent() {
            places.push(prefix.join("lib/loupe"));
            places.push(prefix.join("Frameworks"));
        }
    }
    places.extend(data_dir);
    places.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/onnxruntime"));
    places
}

/// `place` itself if it is a file, else the library inside the folder `place`: the plain name
/// first, then the highest versioned name (`libonnxruntime.so.1.24.4`, as the wheel ships it).
fn find_in(place: &Path) -> Option<PathBuf> {
    if place.is_file() {
        return Some(place.to_path_buf());
    }
    if !place.is_dir() {
        return None;
    }
    let plain = place.join(library_file_name());
    if plain.is_file() {
        return Some(plain);
    }
    let mut versioned: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir(place)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let version = versioned_library_version(name)?;
            Some((version, path))
        })
        .collect();
    versioned.sort();
    versioned.pop().map(|(_, path)| path)
}

/// The version numbers in a versioned library name: `libonnxruntime.so.1.24.4` (Linux) or
/// `libonnxruntime.1.24.4.dylib` (macOS) give `[1, 24, 4]`.
fn versioned_library_version(name: &str) -> Option<Vec<u64>> {
    let prefix = format!("{}onnxruntime", std::env::consts::DLL_PREFIX);
    let rest = name.strip_prefix(&prefix)?;
    let suffix = std::env::consts::DLL_SUFFIX;
    let numbers = if let Some(after) = rest.strip_prefix(suffix) {
        after.strip_prefix('.')?
    } else {
        rest.strip_prefix('.')?.strip_suffix(suffix)?
    };
    numbers.split('.').map(|n| n.parse().ok()).collect()
}

/// ONNX Runtime's version as the library states it (`OrtGetApiBase()->GetVersionString()`, the
/// call `ort` itself checks the version with, which it does not make public).
#[allow(unsafe_code)] // Opening a library that is already loaded, and one C call that returns a
// static string.
pub(super) fn version_from_library(path: &Path) -> Option<String> {
    type GetApiBase = unsafe extern "C" fn() -> *const ort::sys::OrtApiBase;
    // SAFETY: `ort::init_from` has just loaded this library, so opening it again runs no
    // initialisation code; it only takes another reference, released at the end.
    let library = unsafe { libloading::Library::new(path) }.ok()?;
    // SAFETY: `OrtGetApiBase` has this signature in every ONNX Runtime release (onnxruntime_c_api.h).
    let get_api_base = unsafe { library.get::<GetApiBase>(b"OrtGetApiBase") }.ok()?;
    // SAFETY: it takes no arguments and returns a pointer to a static table, or null.
    let base = unsafe { get_api_base() };
    if base.is_null() {
        return None;
    }
    // SAFETY: `base` points to the static `OrtApiBase`, whose `GetVersionString` returns a
    // static, NUL-terminated string such as "1.24.4".
    let version = unsafe { std::ffi::CStr::from_ptr(((*base).GetVersionString)()) };
    let version = version.to_str().ok()?;
    version
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.')
        .then(|| version.to_owned())
}

/// ONNX Runtime's build info reads like `ORT Build Info: git-branch=rel-1.24.4, ...`.
fn version_from_build_info(info: &str) -> Option<String> {
    let branch = info.split([',', ' ']).find_map(|part| {
        part.trim()
            .strip_prefix("git-branch=")
            .and_then(|b| b.strip_prefix("rel-"))
    })?;
    branch
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.')
        .then(|| branch.to_owned())
}

pub(super) fn version_from_file_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let numbers = versioned_library_version(name)?;
    Some(
        numbers
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_layouts_are_searched_before_the_data_folder() {
        let places = search_places(Some(Path::new("/usr/bin")), Some(PathBuf::from("/data")));
        assert_eq!(
            places[..4],
            [
                PathBuf::from("/usr/bin"),
                PathBuf::from("/usr/lib/loupe"),
                PathBuf::from("/usr/Frameworks"),
                PathBuf::from("/data"),
            ]
        );
        let places = search_places(
            Some(Path::new("/Applications/Loupe.app/Contents/MacOS")),
            None,
        );
        assert!(places.contains(&PathBuf::from(
            "/Applications/Loupe.app/Contents/Frameworks"
        )));
        assert!(
            places
                .last()
                .is_some_and(|p| p.ends_with(".tools/onnxruntime"))
        );
    }

    #[test]
    fn versioned_names_parse() {
        if cfg!(target_os = "linux") {
            assert_eq!(
                versioned_library_version("libonnxruntime.so.1.24.4"),
                Some(vec![1, 24, 4])
            );
            assert_eq!(versioned_library_version("libonnxruntime.so"), None);
            assert_eq!(versioned_library_version("libonnxruntime.so.x"), None);
            assert_eq!(
                versioned_library_version("libonnxruntime_providers_shared.so"),
                None
            );
        }
    }

    #[test]
    fn build_info_version() {
        assert_eq!(
            version_from_build_info(
                "ORT Build Info: git-branch=rel-1.24.4, git-commit-id=abc, build type=Release"
            )
            .as_deref(),
            Some("1.24.4")
        );
        assert_eq!(version_from_build_info("git-branch=main, x"), None);
    }

    #[test]
    fn highest_versioned_library_wins() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        for name in [
            "libonnxruntime.so.1.9.0",
            "libonnxruntime.so.1.24.4",
            "README",
        ] {
            std::fs::write(dir.path().join(name), b"").expect("write");
        }
        assert_eq!(
            find_in(dir.path()),
            Some(dir.path().join("libonnxruntime.so.1.24.4"))
        );
        assert_eq!(find_in(&dir.path().join("nope")), None);
    }

    #[test]
    fn missing_runtime_message_says_how_to_install() {
        let err = InferenceError::RuntimeMissing {
            searched: vec![PathBuf::from("/opt/a"), PathBuf::from("/opt/b")],
        };
        let msg = err.to_string();
        assert!(msg.contains("/opt/a, /opt/b"), "{msg}");
        assert!(msg.contains("scripts/fetch-onnxruntime.sh"), "{msg}");
        assert!(msg.contains("ORT_DYLIB_PATH"), "{msg}");
    }
}
