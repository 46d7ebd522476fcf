//! Architecture invariants, checked mechanically on every test run: the layers of the crate (a
//! table of which top-level modules each module may use, read from the source), the headless
//! core's ignorance of the GUI, and SQLite staying inside the store.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers: which top-level modules of `src/` each top-level module may use (`crate::X` or
/// `super::…::X` paths in its code, tests excluded). A module not listed may use nothing; an
/// item of the crate root that is not a module (`crate::panic_message`) is open to all.
///
/// Bottom to top: the domain types and pure rules, the store that enforces those rules, the
/// format and imaging layers, the workflows over the store, then the two front ends.
const LAYERS: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("limits", &[]),
    ("policy", &["model"]),
    ("store", &["model", "policy"]),
    ("imaging", &["model", "limits"]),
    ("formats", &["model", "limits", "imaging"]),
    ("inference", &["model", "limits", "imaging", "store"]),
    ("stacks", &["model", "imaging", "store"]),
    (
        "ingest",
        &["model", "limits", "imaging", "formats", "store", "stacks"],
    ),
    (
        "results",
        &["model", "limits", "imaging", "formats", "ingest", "store"],
    ),
    ("review", &["model", "policy", "store"]),
    (
        "sync",
        &["model", "policy", "store", "imaging", "formats", "ingest"],
    ),
    (
        "ui",
        &[
            "model",
            "limits",
            "policy",
            "store",
            "imaging",
            "formats",
            "inference",
            "ingest",
            "stacks",
            "results",
            "review",
            "sync",
        ],
    ),
    (
        "cli",
        &[
            "model",
            "limits",
            "policy",
            "store",
            "imaging",
            "formats",
            "inference",
            "ingest",
            "stacks",
            "results",
            "review",
            "sync",
            "ui",
        ],
    ),
];

/// Modules allowed to reach SQLite: the store owns every table, query and transaction.
const SQL_MODULES: &[&str] = &["store"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules of the crate: `src/X.rs` and `src/X/` (not the crate roots).
fn top_level_modules() -> BTreeSet<String> {
    std::fs::read_dir(src())
        .expect("read src")
        .filter_map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() {
                Some(name)
            } else {
                name.strip_suffix(".rs")
                    .filter(|n| !matches!(*n, "lib" | "main"))
                    .map(str::to_owned)
            }
        })
        .collect()
}

/// One source file of a top-level module.
struct SourceFile {
    /// Relative to `src/`, for messages.
    rel: PathBuf,
    /// The module path of the file (`["store", "annotations"]` for `src/store/annotations.rs`,
    /// `["store"]` for `src/store/mod.rs`).
    module: Vec<String>,
    /// The code with comments, strings and test modules blanked (newlines kept, so byte
    /// offsets and line numbers stay true).
    code: String,
}

fn source_files() -> Vec<SourceFile> {
    let src = src();
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(&src).sort_by_file_name() {
        let entry = entry.expect("walk src");
        let path = entry.path();
        if !entry.file_type().is_file() || path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(&src).expect("under src").to_path_buf();
        let mut module: Vec<String> = rel
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if module.last().is_some_and(|m| m == "mod") {
            module.pop();
        }
        if module.len() == 1 && matches!(module[0].as_str(), "lib" | "main") {
            continue;
        }
        // Whole files of tests (`mod tests;`, `mod tests_formats;`): test code may use anything.
        if module
            .last()
            .is_some_and(|m| m == "tests" || m.starts_with("tests_"))
        {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("read source");
        out.push(SourceFile {
            rel,
            module,
            code: without_tests(&code_only(&text)),
        });
    }
    out
}

/// `text` with comments, string and character literals replaced by spaces (newlines kept).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |n| i + n);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < b.len() && depth > 0 {
                    if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                        depth += 1;
                        j += 2;
                    } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                blank(&mut out, i, j);
                i = j;
            }
            b'r' if (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let start = i + 2 + hashes;
                let end = b[start..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(b.len(), |n| start + n + close.len());
                blank(&mut out, i, end);
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                let end = (j + 1).min(b.len());
                blank(&mut out, i, end);
                i = end;
            }
            b'\'' => {
                // A character literal ('x', '\n', '\u{1F600}') or a lifetime ('a): only the
                // first is skipped.
                if b.get(i + 1) == Some(&b'\\') {
                    let end = b[i + 2..]
                        .iter()
                        .position(|&c| c == b'\'')
                        .map_or(b.len(), |n| i + 2 + n + 1);
                    blank(&mut out, i, end);
                    i = end;
                } else if let Some(len) = text[i + 1..].chars().next().map(char::len_utf8)
                    && b.get(i + 1 + len) == Some(&b'\'')
                {
                    blank(&mut out, i, i + 2 + len);
                    i += 2 + len;
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8 (only whole literals are replaced)")
}

/// `code` with inline test modules (`#[cfg(test)] mod name { … }`) blanked.
fn without_tests(code: &str) -> String {
    let mut out = code.as_bytes().to_vec();
    let mut from = 0;
    while let Some(at) = code[from..].find("#[cfg(test)]").map(|n| from + n) {
        let rest = code[at + "#[cfg(test)]".len()..].trim_start();
        let next = code.len() - rest.len();
        from = next;
        if !rest.starts_with("mod ") {
            continue;
        }
        let Some(open) = rest.find(['{', ';']) else {
            break;
        };
        if rest.as_bytes()[open] == b';' {
            continue;
        }
        let mut depth = 0;
        let mut end = code.len();
        for (k, c) in code[next + open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = next + open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        for c in &mut out[at..end] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
        from = end;
    }
    String::from_utf8(out).expect("blanking keeps UTF-8")
}

fn line_of(code: &str, at: usize) -> usize {
    code[..at].bytes().filter(|&c| c == b'\n').count() + 1
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first path segments after `prefix` at `at`: one for `prefix::name`, several for
/// `prefix::{a, b::c}`.
fn first_segments(after: &str) -> Vec<String> {
    let after = after.trim_start();
    if let Some(group) = after.strip_prefix('{') {
        let mut depth = 1;
        let mut item_start = true;
        let mut out = Vec::new();
        let mut chars = group.char_indices().peekable();
        while let Some((k, c)) = chars.next() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => item_start = true,
                c if depth == 1 && item_start && is_ident(c) => {
                    let name: String = group[k..].chars().take_while(|&c| is_ident(c)).collect();
                    for _ in 1..name.len() {
                        chars.next();
                    }
                    out.push(name);
                    item_start = false;
                }
                _ => {}
            }
        }
        out
    } else {
        let name: String = after.chars().take_while(|&c| is_ident(c)).collect();
        vec![name]
    }
}

/// Every top-level module a file's code names, with the line: `crate::X` paths, and `super::`
/// paths that climb to the crate root.
fn dependencies(file: &SourceFile, modules: &BTreeSet<String>) -> Vec<(String, usize)> {
    let code = &file.code;
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == '$') {
            continue;
        }
        for name in first_segments(&code[at + "crate::".len()..]) {
            if modules.contains(&name) {
                out.push((name, line_of(code, at)));
            }
        }
    }
    // `super::` in a file's own code is its parent module; each further `super::` climbs one.
    for (at, _) in code.match_indices("super::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        let mut rest = &code[at..];
        let mut climbs = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            climbs += 1;
            rest = r;
        }
        if climbs < file.module.len() {
            // Still inside the file's own top-level module.
            continue;
        }
        for name in first_segments(rest) {
            if modules.contains(&name) {
                out.push((name, line_of(code, at)));
            }
        }
    }
    out
}

/// The layer table holds: every `crate::X` (and `super::` path reaching the crate root) in a
/// module's code names a module the table allows it.
#[test]
fn modules_use_only_the_layers_below_them() {
    let modules = top_level_modules();
    let listed: BTreeSet<String> = LAYERS.iter().map(|(m, _)| (*m).to_owned()).collect();
    let unlisted: Vec<&String> = modules.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "top-level modules missing from the layer table in tests/architecture.rs: {unlisted:?}"
    );
    let mut offenders = Vec::new();
    let mut checked = 0;
    for file in source_files() {
        let top = &file.module[0];
        let allowed = LAYERS
            .iter()
            .find(|(m, _)| m == top)
            .map_or(&[][..], |(_, a)| *a);
        checked += 1;
        for (dep, line) in dependencies(&file, &modules) {
            if &dep != top && !allowed.contains(&dep.as_str()) {
                offenders.push(format!(
                    "src/{}:{line}: `{top}` uses `{dep}`, which the layer table does not allow (allowed: {allowed:?})",
                    file.rel.display()
                ));
            }
        }
    }
    assert!(
        checked >= 50,
        "expected to check the whole crate, checked {checked} files"
    );
    assert!(
        offenders.is_empty(),
        "layer violations:\n{}",
        offenders.join("\n")
    );
}

/// The table is acyclic: a layer never allows a module that allows it back, directly or not.
#[test]
fn the_layer_table_has_no_cycles() {
    fn reaches(from: &str, to: &str, seen: &mut Vec<String>) -> bool {
        let deps = LAYERS
            .iter()
            .find(|(m, _)| *m == from)
            .map_or(&[][..], |(_, d)| *d);
        deps.iter().any(|d| {
            if *d == to {
                return true;
            }
            if seen.iter().any(|s| s == d) {
                return false;
            }
            seen.push((*d).to_owned());
            reaches(d, to, seen)
        })
    }
    for (module, _) in LAYERS {
        assert!(
            !reaches(module, module, &mut Vec::new()),
            "{module} depends on itself through the layer table"
        );
    }
}

/// The checker itself: it sees grouped and `super::` paths, and ignores comments, strings and
/// test modules (a check that cannot fail proves nothing).
#[test]
fn the_dependency_scan_sees_what_the_compiler_sees() {
    let modules: BTreeSet<String> = ["model", "store", "review", "ui"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let text = r##"//! Uses crate::ui in a comment only.
use crate::{model::BBox, store::{Project, Edit}};
use super::super::review::check;
let s = "crate::ui";
let r = r#"crate::ui"#;
let c = '"'; let lt: &'static str = "";
/* crate::ui */
pub(crate) fn f() {}
#[cfg(test)]
mod tests {
    use crate::ui::App;
}
fn g() { crate::store::now_ms(); }
"##;
    let file = SourceFile {
        rel: PathBuf::from("x/y.rs"),
        module: vec!["x".into(), "y".into()],
        code: without_tests(&code_only(text)),
    };
    let deps = dependencies(&file, &modules);
    assert_eq!(
        deps,
        vec![
            ("model".to_owned(), 2),
            ("store".to_owned(), 2),
            ("store".to_owned(), 13),
            ("review".to_owned(), 3),
        ]
    );
}

/// The headless core never knows a GUI exists: no core module mentions egui, eframe, wgpu or
/// `crate::ui`. Only `src/ui/` (the app), `src/cli/` (which hands over to it) and the crate roots
/// may.
#[test]
fn core_modules_do_not_mention_the_gui() {
    let src = src();
    let mut offenders = Vec::new();
    let mut checked = 0;
    for entry in walkdir::WalkDir::new(&src) {
        let entry = entry.expect("walk src");
        let path = entry.path();
        let rel = path.strip_prefix(&src).expect("under src");
        let top = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        if !entry.file_type().is_file()
            || path.extension().is_none_or(|e| e != "rs")
            || matches!(top.as_deref(), Some("ui" | "cli" | "lib.rs" | "main.rs"))
        {
            continue;
        }
        checked += 1;
        let text = std::fs::read_to_string(path).expect("read source");
        for word in ["egui", "eframe", "wgpu", "crate::ui"] {
            if text.contains(word) {
                offenders.push(format!("{} mentions {word}", rel.display()));
            }
        }
    }
    assert!(
        checked >= 5,
        "expected to check the core modules, checked {checked}"
    );
    assert!(
        offenders.is_empty(),
        "core modules depend on the GUI:\n{}",
        offenders.join("\n")
    );
}

/// Every thread of the app starts through `ui::workers::spawn`, which names it, catches a panic
/// and reports it to the status bar: no other file of `src/ui` starts one itself.
#[test]
fn app_threads_start_through_the_one_helper() {
    let mut offenders = Vec::new();
    let mut helper_seen = false;
    for file in source_files() {
        if file.module[0] != "ui" {
            continue;
        }
        if file.module.get(1).is_some_and(|m| m == "workers") {
            helper_seen = file.code.contains("std::thread::Builder::new()")
                && file.code.contains("catch_unwind");
            continue;
        }
        for word in [
            "thread::Builder",
            "thread::spawn",
            "rayon::spawn",
            "thread::scope",
        ] {
            for (at, _) in file.code.match_indices(word) {
                offenders.push(format!(
                    "src/{}:{}: starts a thread with {word}; use ui::workers::spawn",
                    file.rel.display(),
                    line_of(&file.code, at)
                ));
            }
        }
    }
    assert!(
        helper_seen,
        "src/ui/workers.rs starts threads and catches their panics"
    );
    assert!(
        offenders.is_empty(),
        "app threads started outside the helper:\n{}",
        offenders.join("\n")
    );
}

/// All SQL is in the store: no other module's code names `rusqlite` or reaches for a raw
/// connection; they use the store's typed API.
#[test]
fn only_the_store_touches_sqlite() {
    let mut offenders = Vec::new();
    for file in source_files() {
        if SQL_MODULES.contains(&file.module[0].as_str()) {
            continue;
        }
        for word in ["rusqlite", ".conn()", ".conn_mut()"] {
            for (at, _) in file.code.match_indices(word) {
                offenders.push(format!(
                    "src/{}:{}: uses {word}",
                    file.rel.display(),
                    line_of(&file.code, at)
                ));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "SQLite outside the store:\n{}",
        offenders.join("\n")
    );
}
