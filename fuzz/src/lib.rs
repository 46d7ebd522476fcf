//! Helpers shared by the fuzz targets: the parsers under test read files, so each input is
//! written to a scratch folder (on `/dev/shm` where there is one) before the real import runs.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A 1x1 PNG, for formats whose boxes need the image's size (YOLO's normalised coordinates).
pub const TINY_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x64, 0x60, 0xf8, 0x5f,
    0x0f, 0x00, 0x02, 0x87, 0x01, 0x80, 0xeb, 0x47, 0xba, 0x92, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// The line that separates the files of a multi-file input (Darknet, Open Images).
pub const SEPARATOR: &[u8] = b"\n--8<--\n";

/// This process's scratch folder, made once and removed by nobody: fuzzing processes are
/// short-lived, and `/dev/shm` is cleared at boot.
#[must_use]
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("loupe-fuzz-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("the scratch folder can be made");
        dir
    })
}

/// Writes `bytes` to `name` under the scratch folder (creating folders) and returns its path.
#[must_use]
pub fn put(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("the scratch subfolder can be made");
    }
    fs::write(&path, bytes).expect("the scratch file can be written");
    path
}

/// `data` split at [`SEPARATOR`] into exactly `n` parts (missing ones empty, extra ones joined
/// into the last).
#[must_use]
pub fn split(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts = Vec::with_capacity(n);
    let mut rest = data;
    while parts.len() + 1 < n {
        match rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(i) => {
                parts.push(&rest[..i]);
                rest = &rest[i + SEPARATOR.len()..];
            }
            None => break,
        }
    }
    parts.push(rest);
    while parts.len() < n {
        parts.push(&[]);
    }
    parts
}
