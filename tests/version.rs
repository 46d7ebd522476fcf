//! `loupe --version`: the version, the git commit the binary was built from and the ONNX Runtime
//! it finds (path and version), or where it looked when there is none.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::loupe;

/// The ONNX Runtime library the project's script fetches (a no-op when it is already there).
fn runtime_library() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-onnxruntime.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run scripts/fetch-onnxruntime.sh");
    assert!(out.status.success(), "{} failed", script.display());
    PathBuf::from(String::from_utf8(out.stdout).expect("utf8").trim())
}

fn version_output(flag: &str, ort: &Path) -> Vec<String> {
    let out = loupe()
        .arg(flag)
        .env("ORT_DYLIB_PATH", ort)
        .output()
        .expect("run loupe");
    assert!(
        out.status.success(),
        "loupe {flag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The commit of this source tree by git, or "unknown" outside a git checkout (a tarball).
fn expected_commit() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !dir.join(".git").exists() {
        return "unknown".to_owned();
    }
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .output()
        .expect("run git");
    assert!(out.status.success(), "git rev-parse HEAD failed");
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

#[test]
fn version_names_the_commit_and_the_runtime_it_finds() {
    let lib = runtime_library();
    // The wheel's file name carries the version: libonnxruntime.so.1.24.4.
    let name = lib
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let lib_version = name
        .rsplit_once(".so.")
        .map(|(_, v)| v)
        .expect("versioned name");
    // The build script captured the commit checked out when this test was built; a commit since
    // reruns it (it watches .git/HEAD and the branch's ref), so the two must agree.
    let commit = expected_commit();
    if commit != "unknown" {
        assert_eq!(commit.len(), 40, "{commit}");
    }
    for flag in ["--version", "-V"] {
        let lines = version_output(flag, &lib);
        assert_eq!(
            lines,
            [
                format!("loupe {}", env!("CARGO_PKG_VERSION")),
                format!("commit {commit}"),
                format!("onnxruntime {lib_version} ({})", lib.display()),
            ],
            "loupe {flag}"
        );
    }
}

#[test]
fn version_says_where_it_looked_when_there_is_no_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("libonnxruntime.so");
    let lines = version_output("--version", &missing);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], format!("loupe {}", env!("CARGO_PKG_VERSION")));
    let runtime = &lines[2];
    assert!(
        runtime.starts_with("onnxruntime: not found: ")
            && runtime.contains(&missing.display().to_string()),
        "{runtime}"
    );
}
