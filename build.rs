//! Build script: records the git commit the binary is built from, for `loupe --version`.
//!
//! The commit comes from `LOUPE_GIT_COMMIT` when set (packagers building from a tarball can pass
//! it), else from `git rev-parse HEAD` in this source tree, else it is "unknown" (a tarball with
//! no `.git`, or no git installed). A `.git` of some enclosing folder is never taken for ours.
//!
//! Cargo reruns this script only when `.git/HEAD` or the ref it points to changes (a commit, a
//! checkout), not on every build: it watches those files instead of the default "any file in
//! the package".

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LOUPE_GIT_COMMIT");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = std::env::var("LOUPE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .map(|c| c.trim().to_owned())
        .or_else(|| git_commit(&manifest_dir))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=LOUPE_GIT_COMMIT={commit}");
}

/// `git` run in `dir`, its trimmed standard output if it succeeded.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

/// The commit checked out in `dir` if `dir` is the top of a git work tree, and the files to watch.
fn git_commit(dir: &Path) -> Option<String> {
    // A source tarball unpacked inside some other repository must not report that one's commit.
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    let same = match (Path::new(&top).canonicalize(), dir.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        return None;
    }
    let commit = git(dir, &["rev-parse", "HEAD"])?;
    // HEAD names the branch ("ref: refs/heads/main"); a commit rewrites the branch's ref file, a
    // checkout rewrites HEAD. In a linked worktree HEAD is per worktree and refs are shared:
    // `--git-path` resolves both. Only existing files are watched, as cargo reruns the script
    // every time for a missing one; a branch whose ref lives only in packed-refs watches that.
    let mut watch = vec![git(dir, &["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watch.push(git(dir, &["rev-parse", "--git-path", &branch]));
        watch.push(git(dir, &["rev-parse", "--git-path", "packed-refs"]));
    }
    for path in watch.into_iter().flatten() {
        let path = dir.join(path);
        if path.is_file() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(commit)
}
