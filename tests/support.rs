//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

/// The third-party test material in the repository (`tests/data/third_party`; binaries in it are
/// fetched by `scripts/fetch-testdata.sh`).
pub fn testdata() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/third_party");
    assert!(
        dir.is_dir(),
        "test data not found at {}: run scripts/fetch-testdata.sh (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// The `loupe` binary built for these tests.
pub fn loupe() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_loupe"));
    c.env_remove("LOUPE_PROJECT");
    c
}

/// Writes a small RGB PNG with a pattern that makes each seed's bytes different.
pub fn write_png(path: &Path, w: u32, h: u32, seed: u32) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        if x == 0 && y == 0 {
            // Unique bytes per seed, so every generated file has its own content hash.
            let [a, b, c, _] = seed.to_le_bytes();
            return image::Rgb([a, b, c]);
        }
        image::Rgb([(x + seed) as u8, (y * 3 + seed) as u8, (x ^ y ^ seed) as u8])
    });
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create dir");
    }
    img.save(path).expect("write png");
}

/// Runs `loupe -p PROJECT ARGS`.
pub fn run(project: &Path, args: &[&str]) -> std::process::Output {
    loupe()
        .arg("-p")
        .arg(project)
        .args(args)
        .output()
        .expect("run loupe")
}

/// Runs `loupe -p PROJECT ARGS`, asserting success; returns stdout.
pub fn ok(project: &Path, args: &[&str]) -> String {
    let out = run(project, args);
    assert!(
        out.status.success(),
        "loupe {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`ok`], its stdout read as JSON.
pub fn ok_json(project: &Path, args: &[&str]) -> serde_json::Value {
    let out = ok(project, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("loupe {args:?}: not JSON ({e}): {out}"))
}

/// Runs a command that must fail; returns its stderr.
pub fn fails(project: &Path, args: &[&str]) -> String {
    let out = run(project, args);
    assert!(
        !out.status.success(),
        "loupe {args:?} should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A new empty project `p.loupe` in `dir`.
pub fn new_project(dir: &Path) -> PathBuf {
    let p = dir.join("p.loupe");
    drop(loupe::store::Project::create(&p).expect("create"));
    p
}

/// A path as the `&str` an argument list takes.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}
