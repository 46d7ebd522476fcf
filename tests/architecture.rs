//! Architecture invariants that are cheap to check mechanically.

use std::path::Path;

/// The headless core never knows a GUI exists: no core module mentions egui, eframe, wgpu or
/// `crate::ui`. Only `src/ui/` (the app), `src/cli/` (which hands over to it) and the crate roots
/// may.
#[test]
fn core_modules_do_not_mention_the_gui() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
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
