//! Files written safely and damaged files named (issue 14, part 2): exports never replace a
//! link or special file they were not told to follow, damaged and read-only projects are named
//! as such, and dataset files that are not regular files are refused.

use std::path::{Path, PathBuf};

use crate::support::{fails, loupe, new_project, ok, run, s, write_png};

/// A project with one image `a.png` (64x48) holding one `cat` box.
fn project_with_a_box(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let p = new_project(dir);
    write_png(&dir.join("a.png"), 64, 48, 1);
    ok(&p, &["add", s(&dir.join("a.png"))]);
    let coco = dir.join("labels.json");
    std::fs::write(
        &coco,
        r#"{"images":[{"id":1,"file_name":"a.png","width":64,"height":48}],
            "categories":[{"id":1,"name":"cat"}],
            "annotations":[{"id":1,"image_id":1,"category_id":1,"bbox":[4,4,20,10],"area":200,"iscrowd":0}]}"#,
    )
    .expect("write coco");
    ok(&p, &["import", "--format", "coco", s(&coco)]);
    p
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

#[test]
fn export_refuses_to_replace_a_symlink_and_follows_it_only_with_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project_with_a_box(dir.path());
    let real = dir.path().join("real.json");
    std::fs::write(&real, "precious").expect("write");
    let link = dir.path().join("out.json");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");

    let err = fails(&p, &["export", "--format", "coco", s(&link)]);
    assert!(err.contains("symbolic link"), "{err}");
    assert!(std::fs::symlink_metadata(&link).expect("link").is_symlink());
    assert_eq!(std::fs::read_to_string(&real).expect("read"), "precious");

    ok(&p, &["export", "--format", "coco", s(&link), "--force"]);
    assert!(std::fs::symlink_metadata(&link).expect("link").is_symlink());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&real).expect("read")).expect("json");
    assert_eq!(json["annotations"].as_array().map(Vec::len), Some(1));

    // Every single-file format, and a file inside every folder format.
    for (format, out, inside) in [
        ("cvat", "o.xml", None),
        ("labelstudio", "o.json", None),
        ("createml", "o.json", None),
        ("yolo", "yolo", Some("data.yaml")),
        ("voc", "voc", Some("labelmap.txt")),
        ("labelme", "labelme", Some("a.json")),
        ("openimages", "oi", Some("annotations/images.meta")),
        ("coco", "coco", Some("annotations/instances_train.json")),
    ] {
        let out = dir.path().join(format!("{format}-{out}"));
        let at = match inside {
            Some(file) => {
                let at = out.join(file);
                std::fs::create_dir_all(at.parent().expect("parent")).expect("mkdir");
                at
            }
            None => out.clone(),
        };
        std::os::unix::fs::symlink(&real, &at).expect("symlink");
        let err = fails(&p, &["export", "--format", format, s(&out)]);
        assert!(err.contains("symbolic link"), "{format}: {err}");
        assert!(std::fs::symlink_metadata(&at).expect("link").is_symlink());
        assert!(
            std::fs::read_to_string(&real)
                .expect("read")
                .contains("annotations"),
            "{format} wrote through the link"
        );
    }
}

#[test]
fn export_refuses_a_fifo_or_device_and_dash_means_standard_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project_with_a_box(dir.path());
    let fifo = dir.path().join("out.json");
    mkfifo(&fifo);
    let err = fails(&p, &["export", "--format", "coco", s(&fifo)]);
    assert!(err.contains("FIFO"), "{err}");
    assert!(is_fifo(&fifo), "the FIFO was replaced");
    let err = fails(
        &p,
        &[
            "export",
            "--format",
            "coco",
            "/dev/null",
            "--images",
            "none",
        ],
    );
    assert!(err.contains("a device"), "{err}");

    // A placed image is checked too: a FIFO where an image goes is not replaced.
    let voc = dir.path().join("voc");
    std::fs::create_dir_all(voc.join("JPEGImages")).expect("mkdir");
    mkfifo(&voc.join("JPEGImages/a.png"));
    let err = fails(&p, &["export", "--format", "voc", s(&voc)]);
    assert!(err.contains("FIFO"), "{err}");
    assert!(is_fifo(&voc.join("JPEGImages/a.png")));

    // `-`: the file on standard output, the summary on standard error.
    for (format, start) in [
        ("coco", "{"),
        ("labelstudio", "["),
        ("createml", "["),
        ("cvat", "<?xml"),
    ] {
        let out = run(&p, &["export", "--format", format, "-"]);
        assert!(out.status.success(), "{format}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.trim_start().starts_with(start), "{format}: {stdout}");
        assert!(stdout.contains("cat"), "{format}: {stdout}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("exported current"), "{format}: {stderr}");
    }
    assert!(!dir.path().join("-").exists());
    let err = fails(&p, &["export", "--format", "yolo", "-"]);
    assert!(err.contains("folder"), "{err}");
    let err = fails(&p, &["export", "--format", "coco", "-", "--images", "copy"]);
    assert!(err.contains("standard output"), "{err}");

    // The stdout export is what a file export writes.
    let file = dir.path().join("e.json");
    ok(&p, &["export", "--format", "coco", s(&file)]);
    let out = loupe()
        .args(["-p", s(&p), "export", "--format", "coco", "-"])
        .output()
        .expect("run");
    let a: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let b: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
    assert_eq!(a["annotations"], b["annotations"]);
}

/// Makes a folder and the project in it unwritable for the test's duration: `chattr +i` when
/// running as root (root ignores permission bits; the immutable flag binds it too), else the
/// permission bits. Undone on drop.
struct Unwritable {
    paths: Vec<PathBuf>,
    immutable: bool,
}

impl Unwritable {
    fn new(file: &Path) -> Option<Unwritable> {
        let folder = file.parent().expect("parent").to_path_buf();
        let paths = vec![file.to_path_buf(), folder];
        let is_root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if is_root {
            let ok = std::process::Command::new("chattr")
                .arg("+i")
                .args(&paths)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!(
                    "chattr +i is not available here: cannot make a folder unwritable for root"
                );
                return None;
            }
            return Some(Unwritable {
                paths,
                immutable: true,
            });
        }
        use std::os::unix::fs::PermissionsExt;
        for (p, mode) in paths.iter().zip([0o444, 0o555]) {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        Some(Unwritable {
            paths,
            immutable: false,
        })
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        if self.immutable {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .args(&self.paths)
                .status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            for (p, mode) in self.paths.iter().zip([0o644, 0o755]) {
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
            }
        }
    }
}

#[test]
fn a_project_in_an_unwritable_folder_is_read_and_writes_say_read_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("ro");
    let p = project_with_a_box(&folder);
    let out = dir.path().join("out.json");
    let Some(_guard) = Unwritable::new(&p) else {
        // Only where neither root's immutable flag nor permissions can be used.
        return;
    };
    let stats = crate::support::ok_json(&p, &["stats", "--json"]);
    assert_eq!(stats["images"], 1, "{stats}");
    assert_eq!(stats["boxes"], 1, "{stats}");
    ok(&p, &["export", "--format", "coco", s(&out)]);
    assert!(std::fs::read_to_string(&out).expect("read").contains("cat"));
    let err = fails(&p, &["tag", "a.png", "done"]);
    assert!(err.contains("read-only"), "{err}");
    assert!(!err.contains("not a Loupe project"), "{err}");
}

#[test]
fn a_damaged_project_is_named_damaged_and_readers_exit_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project_with_a_box(dir.path());
    ok(&p, &["debug-gen-revisions", "3000"]);
    let bytes = std::fs::read(&p).expect("read");
    let page = 16384;
    assert!(bytes.len() > 10 * page, "{}", bytes.len());
    let mut bad = bytes.clone();
    let at = bytes.len() / 2 / page * page;
    bad[at..at + page].fill(0x5A);
    std::fs::write(&p, &bad).expect("write");
    for args in [
        &["stats"][..],
        &["export", "--format", "coco", s(&dir.path().join("o.json"))],
        &["check"],
    ] {
        let err = fails(&p, args);
        assert!(err.contains("damaged"), "{args:?}: {err}");
        assert!(!err.contains("not a Loupe project"), "{args:?}: {err}");
    }
    assert!(!dir.path().join("o.json").exists());

    // Cut short: every command says damaged.
    std::fs::write(&p, &bytes[..bytes.len() - 3 * page]).expect("write");
    for args in [&["stats"][..], &["version", "list"], &["history", "0"]] {
        let err = fails(&p, args);
        assert!(err.contains("damaged"), "{args:?}: {err}");
    }
    // A file that is not SQLite at all is still "not a Loupe project".
    std::fs::write(&p, "hello, this is a text file and nothing else").expect("write");
    let err = fails(&p, &["stats"]);
    assert!(err.contains("not a Loupe project"), "{err}");
}

#[test]
fn a_fifo_or_device_where_a_dataset_file_is_expected_is_refused_not_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project_with_a_box(dir.path());
    let fifo = dir.path().join("labels-fifo.json");
    mkfifo(&fifo);
    // Were the FIFO opened, the import would wait for a writer forever: a writer that gives
    // up after a while makes such a regression fail instead of hanging the suite.
    let writer_fifo = fifo.clone();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(20));
        let _ = std::fs::write(&writer_fifo, "{}");
    });
    let started = std::time::Instant::now();
    let err = fails(&p, &["import", "--format", "coco", s(&fifo)]);
    assert!(err.contains("FIFO"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "the FIFO was opened"
    );
    let err = fails(&p, &["import", "--format", "cvat", "/dev/zero"]);
    assert!(err.contains("a device"), "{err}");
    // A YOLO class list that is a FIFO, inside a dataset folder.
    let yolo = dir.path().join("yolo");
    std::fs::create_dir_all(yolo.join("labels")).expect("mkdir");
    std::fs::write(yolo.join("labels/a.txt"), "0 0.5 0.5 0.2 0.2\n").expect("label");
    mkfifo(&yolo.join("classes.txt"));
    let err = fails(&p, &["import", "--format", "yolo", s(&yolo)]);
    assert!(err.contains("FIFO"), "{err}");
}

#[test]
fn dangling_symlinks_in_an_image_folder_are_reported_once_and_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    let images = dir.path().join("images");
    write_png(&images.join("a.png"), 16, 16, 1);
    write_png(&images.join("sub/c.png"), 16, 16, 2);
    std::os::unix::fs::symlink("gone.png", images.join("b.png")).expect("symlink");
    let out = run(&p, &["add", s(&images)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The rest was added, and the exit code says not everything was.
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stdout.contains("2 added"), "{stdout}");
    assert_eq!(
        stderr.matches("dangling symbolic link").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("b.png"), "{stderr}");
    let stats = crate::support::ok_json(&p, &["stats", "--json"]);
    assert_eq!(stats["images"], 2, "{stats}");
}
