//! Imports that must resolve what they list, or say loudly what they could not: YOLO as CVAT,
//! Roboflow, ultralytics and labelImg lay it out, images already in the project, and the
//! "nothing silent" rule; plus quiet exits when a reader closes the output pipe.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use loupe::store::Project;

use crate::support::{loupe, testdata, write_png};

fn run(project: &Path, args: &[&str]) -> Output {
    loupe()
        .arg("-p")
        .arg(project)
        .args(args)
        .output()
        .expect("run loupe")
}

fn ok(project: &Path, args: &[&str]) -> Output {
    let out = run(project, args);
    assert!(
        out.status.success(),
        "loupe {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn fails(project: &Path, args: &[&str]) -> String {
    let out = run(project, args);
    assert!(
        !out.status.success(),
        "loupe {args:?} should have failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stats(project: &Path) -> serde_json::Value {
    serde_json::from_slice(&ok(project, &["stats", "--json"]).stdout).expect("stats json")
}

fn new_project(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    drop(Project::create(&p).expect("create"));
    p
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

fn strict() -> PathBuf {
    testdata().join("datumaro/tests/assets/yolo_dataset/strict")
}

/// A "YOLO 1.1" export as CVAT writes it without images: `obj.data` and `obj.names` beside
/// `train.txt`, which lists `data/obj_train_data/NAME.jpg` (relative to a Darknet folder that
/// does not exist here), and the label files in `obj_train_data/`. Built from datumaro's strict
/// Darknet dataset (CVAT's own test asset); `extra` adds list lines with their label text.
fn cvat_export(dir: &Path, extra: &[(&str, &str)]) -> PathBuf {
    let out = dir.join("cvat_export");
    std::fs::create_dir_all(out.join("obj_train_data")).expect("mkdir");
    for f in ["obj.data", "obj.names"] {
        std::fs::copy(strict().join(f), out.join(f)).expect("copy");
    }
    std::fs::copy(
        strict().join("obj_train_data/1.txt"),
        out.join("obj_train_data/1.txt"),
    )
    .expect("copy label");
    let mut list = std::fs::read_to_string(strict().join("train.txt")).expect("train.txt");
    for (name, labels) in extra {
        list.push_str(&format!("data/obj_train_data/{name}.jpg\n"));
        std::fs::write(out.join(format!("obj_train_data/{name}.txt")), labels).expect("label");
    }
    std::fs::write(out.join("train.txt"), list).expect("write list");
    out
}

/// The strict dataset's only image, copied to `to`.
fn copy_image(to: &Path) {
    std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
    std::fs::copy(strict().join("obj_train_data/1.jpg"), to).expect("copy image");
}

#[test]
fn cvat_darknet_export_without_images_is_refused_naming_the_listed_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path(), "p.loupe");
    let export = cvat_export(dir.path(), &[]);
    let err = fails(
        &p,
        &["import", "--format", "yolo", s(&export.join("obj.data"))],
    );
    assert!(
        err.contains("data/obj_train_data/1.jpg")
            && err.contains("train.txt:1")
            && err.contains("not found")
            && err.contains("nothing was imported"),
        "{err}"
    );
    assert_eq!(stats(&p)["images"], 0, "a refused import stored something");
}

#[test]
fn cvat_darknet_listed_paths_resolve_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let export = cvat_export(dir.path(), &[]);
    let data = export.join("obj.data");

    // 1. As written relative to the data file (CVAT's export with images): `data/` dropped.
    let p1 = new_project(dir.path(), "p1.loupe");
    copy_image(&export.join("obj_train_data/1.jpg"));
    let decoy = dir.path().join("frames_decoy");
    write_png(&decoy.join("1.jpg"), 15, 10, 7);
    ok(
        &p1,
        &[
            "import",
            "--format",
            "yolo",
            s(&data),
            "--images",
            s(&decoy),
        ],
    );
    let img = Project::open(&p1)
        .expect("open")
        .all_images()
        .expect("images");
    assert_eq!(img.len(), 1);
    assert!(
        img[0].path.ends_with("cvat_export/obj_train_data/1.jpg"),
        "as written beats --images: {}",
        img[0].path
    );
    std::fs::remove_file(export.join("obj_train_data/1.jpg")).expect("rm");

    // 2. Relative to --images (the listed folders kept under it).
    let p2 = new_project(dir.path(), "p2.loupe");
    let images2 = dir.path().join("images2");
    copy_image(&images2.join("obj_train_data/1.jpg"));
    copy_image(&images2.join("other/1.jpg"));
    ok(
        &p2,
        &[
            "import",
            "--format",
            "yolo",
            s(&data),
            "--images",
            s(&images2),
        ],
    );
    let img = Project::open(&p2)
        .expect("open")
        .all_images()
        .expect("images");
    assert_eq!(img.len(), 1);
    assert!(
        img[0].path.ends_with("images2/obj_train_data/1.jpg"),
        "{}",
        img[0].path
    );

    // 3. By file name anywhere under --images, when unique.
    let p3 = new_project(dir.path(), "p3.loupe");
    let images3 = dir.path().join("images3");
    copy_image(&images3.join("deep/er/1.jpg"));
    let out = ok(
        &p3,
        &[
            "import",
            "--format",
            "yolo",
            s(&data),
            "--images",
            s(&images3),
        ],
    );
    let st = stats(&p3);
    assert_eq!(
        (st["images"].as_u64(), st["boxes"].as_u64()),
        (Some(1), Some(2)),
        "{st}"
    );
    assert_eq!(st["missing_images"], 0);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("unresolved"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // ... an ambiguous name is an error naming both candidates, and stores nothing.
    let p4 = new_project(dir.path(), "p4.loupe");
    let images4 = dir.path().join("images4");
    copy_image(&images4.join("a/1.jpg"));
    write_png(&images4.join("b/1.jpg"), 15, 10, 3);
    let err = fails(
        &p4,
        &[
            "import",
            "--format",
            "yolo",
            s(&data),
            "--images",
            s(&images4),
        ],
    );
    assert!(
        err.contains("a/1.jpg") && err.contains("b/1.jpg") && err.contains("ambiguous"),
        "{err}"
    );
    assert_eq!(stats(&p4)["images"], 0);

    // 4. By file name among the project's images: added first, then the export imported
    //    without --images attaches to them: no duplicate, no missing placeholder.
    let p5 = new_project(dir.path(), "p5.loupe");
    let shots = dir.path().join("shots");
    copy_image(&shots.join("1.jpg"));
    write_png(&shots.join("2.png"), 20, 20, 9);
    ok(&p5, &["add", s(&shots)]);
    let out = ok(&p5, &["import", "--format", "yolo", s(&data), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["images_matched"], 1, "{report}");
    assert_eq!(report["unresolved_count"], 0, "{report}");
    let st = stats(&p5);
    assert_eq!(st["images"], 2, "no duplicate image: {st}");
    assert_eq!(st["missing_images"], 0, "no placeholder: {st}");
    assert_eq!(st["boxes"], 2, "{st}");
    let q = Project::open(&p5).expect("open");
    let one = q
        .image_by_path("shots/1.jpg")
        .expect("query")
        .expect("added image");
    assert_eq!(q.annotations_for_image(one.id).expect("boxes").len(), 2);
}

#[test]
fn a_partial_import_says_what_did_not_resolve_first_and_in_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path(), "p.loupe");
    // Two more listed images: `2` exists under --images, `3` nowhere.
    let export = cvat_export(
        dir.path(),
        &[
            ("2", "1 0.5 0.5 0.2 0.2\n"),
            ("3", "0 0.5 0.5 0.2 0.2\n3 0.2 0.2 0.1 0.1\n"),
        ],
    );
    let frames = dir.path().join("frames");
    copy_image(&frames.join("1.jpg"));
    write_png(&frames.join("2.jpg"), 40, 30, 2);
    let data = export.join("obj.data");
    // Human output: the unresolved count comes before the summary line.
    let shell = format!(
        "'{}' -p '{}' import --format yolo '{}' --images '{}' 2>&1",
        env!("CARGO_BIN_EXE_loupe"),
        s(&p),
        s(&data),
        s(&frames)
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &shell])
        .output()
        .expect("sh");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let warn_at = text.find("1 unresolved").expect("unresolved count printed");
    let summary_at = text.find("imported ").expect("summary printed");
    assert!(
        warn_at < summary_at,
        "the unresolved count must come first:\n{text}"
    );
    assert!(
        text.contains("data/obj_train_data/3.jpg") && text.contains("2 of their boxes"),
        "{text}"
    );
    let st = stats(&p);
    assert_eq!(
        (st["images"].as_u64(), st["boxes"].as_u64()),
        (Some(2), Some(3)),
        "{st}"
    );

    // --json carries them: a count and the list.
    let q = new_project(dir.path(), "q.loupe");
    let out = ok(
        &q,
        &[
            "import",
            "--format",
            "yolo",
            s(&data),
            "--images",
            s(&frames),
            "--json",
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["unresolved_count"], 1, "{report}");
    let u = &report["unresolved"][0];
    assert_eq!(u["entry"], "data/obj_train_data/3.jpg", "{report}");
    assert_eq!(u["boxes"], 2);
    assert!(
        u["location"]
            .as_str()
            .expect("location")
            .ends_with("train.txt:3"),
        "{u}"
    );
}

#[test]
fn coco_and_voc_attach_to_images_added_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coco_dir = testdata().join("datumaro/tests/assets/coco_dataset/coco_instances");
    let p = new_project(dir.path(), "p.loupe");
    // The image, added from a folder of the user's own, under another name too.
    let shots = dir.path().join("shots");
    std::fs::create_dir_all(&shots).expect("mkdir");
    std::fs::copy(coco_dir.join("images/train/a.jpg"), shots.join("a.jpg")).expect("copy");
    ok(&p, &["add", s(&shots)]);
    // No --images: `a.jpg` is not beside the JSON; it is the project's `shots/a.jpg` by name.
    let json = coco_dir.join("annotations/instances_train.json");
    let out = ok(&p, &["import", "--format", "coco", s(&json), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["images_matched"], 1, "{report}");
    let st = stats(&p);
    assert_eq!(st["images"], 1, "{st}");
    assert_eq!(st["missing_images"], 0, "{st}");
    assert!(st["boxes"].as_u64().expect("boxes") > 0, "{st}");

    // By content: the same image under another name, found on disk through --images.
    let q = new_project(dir.path(), "q.loupe");
    let renamed = dir.path().join("renamed");
    std::fs::create_dir_all(&renamed).expect("mkdir");
    std::fs::copy(coco_dir.join("images/train/a.jpg"), renamed.join("zz.jpg")).expect("copy");
    ok(&q, &["add", s(&renamed)]);
    ok(
        &q,
        &[
            "import",
            "--format",
            "coco",
            s(&json),
            "--images",
            s(&coco_dir.join("images/train")),
        ],
    );
    let st = stats(&q);
    assert_eq!(st["images"], 1, "same content is the same image: {st}");
}

#[test]
fn roboflow_yaml_with_renamed_val_folder_and_dangling_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rf = testdata().join("datumaro/tests/assets/roboflow_dataset/yolo");
    // As exported: `train: ../train/images`, `val: ../valid/images` but the folder is `val/`.
    let p = new_project(dir.path(), "p.loupe");
    let out = ok(
        &p,
        &[
            "import",
            "--format",
            "yolo",
            s(&rf.join("data.yaml")),
            "--json",
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["unresolved_count"], 0, "{report}");
    assert_eq!(report["images"], 3, "{report}");
    assert_eq!(report["boxes"], 4, "{report}");
    let kinds: Vec<&str> = report["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"dangling_path"), "{report}");

    // The same export with `path` written on another machine and `val` as a list file.
    let copy = dir.path().join("rf");
    for e in walkdir::WalkDir::new(&rf)
        .into_iter()
        .filter_map(Result::ok)
    {
        let rel = e.path().strip_prefix(&rf).expect("under");
        let to = copy.join(rel);
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&to).expect("mkdir");
        } else {
            std::fs::copy(e.path(), &to).expect("copy");
        }
    }
    std::fs::write(
        copy.join("val.txt"),
        "./val/images/val_001.jpg\n./val/images/gone.jpg\n",
    )
    .expect("list");
    std::fs::write(
        copy.join("data.yaml"),
        "path: /home/someone/datasets/rf\ntrain: ../train/images\nval: val.txt\nnc: 2\nnames: ['label_0', 'label_1']\n",
    )
    .expect("yaml");
    let q = new_project(dir.path(), "q.loupe");
    let out = ok(
        &q,
        &[
            "import",
            "--format",
            "yolo",
            s(&copy.join("data.yaml")),
            "--json",
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["images"], 3, "{report}");
    assert_eq!(report["boxes"], 4, "{report}");
    assert_eq!(report["unresolved_count"], 1, "{report}");
    assert_eq!(report["unresolved"][0]["entry"], "./val/images/gone.jpg");
}

#[test]
fn ultralytics_dataset_yamls_without_their_images_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = testdata().join("images/ultralytics/ultralytics/cfg/datasets");
    let mut checked = 0;
    for entry in std::fs::read_dir(&cfg).expect("cfg") {
        let yaml = entry.expect("entry").path();
        if yaml.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let p = new_project(dir.path(), &format!("p{checked}.loupe"));
        let err = fails(&p, &["import", "--format", "yolo", s(&yaml)]);
        assert!(
            err.contains("nothing was imported") && err.contains("train: "),
            "{}: {err}",
            yaml.display()
        );
        assert_eq!(stats(&p)["images"], 0);
        checked += 1;
    }
    assert!(checked >= 8, "checked {checked} yamls");
}

#[test]
fn labelimg_bare_folder_needs_its_images_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let li = testdata().join("labelimg");
    let folder = li.join("generated_by_labelimg_writers");
    let p = new_project(dir.path(), "p.loupe");
    let err = fails(&p, &["import", "--format", "yolo", s(&folder)]);
    assert!(
        err.contains("test.512.512.txt") && err.contains("nothing was imported"),
        "{err}"
    );
    let out = ok(
        &p,
        &[
            "import",
            "--format",
            "yolo",
            s(&folder),
            "--images",
            s(&li.join("tests")),
            "--json",
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (report["images"].as_u64(), report["boxes"].as_u64()),
        (Some(1), Some(2)),
        "{report}"
    );
    let classes: Vec<String> = Project::open(&p)
        .expect("open")
        .classes()
        .expect("classes")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(classes, ["person", "face"]);
}

#[test]
fn a_file_listing_boxes_that_imports_none_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path(), "p.loupe");
    write_png(&dir.path().join("imgs/a.png"), 10, 10, 1);
    // Every box lies outside its image: dropped, so nothing would be imported.
    let coco = dir.path().join("imgs/gt.json");
    std::fs::write(
        &coco,
        r#"{"images":[{"id":1,"file_name":"a.png","width":10,"height":10}],
            "categories":[{"id":1,"name":"a"}],
            "annotations":[{"id":1,"image_id":1,"category_id":1,"bbox":[50,50,5,5]}]}"#,
    )
    .expect("write");
    let err = fails(&p, &["import", "--format", "coco", s(&coco)]);
    assert!(
        err.contains("lists 1 boxes but none could be imported"),
        "{err}"
    );
    assert_eq!(stats(&p)["images"], 0);
}

/// Spawns loupe with its stdout read end closed before it writes: the write fails with EPIPE.
fn run_with_closed_stdout(project: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = loupe()
        .arg("-p")
        .arg(project)
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn loupe");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn commands_exit_quietly_when_the_reader_closes_the_pipe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path(), "p.loupe");
    let rf = testdata().join("datumaro/tests/assets/roboflow_dataset/yolo/data.yaml");
    ok(&p, &["import", "--format", "yolo", s(&rf)]);
    ok(&p, &["version", "create", "v1", "--message", "first"]);
    let commands: &[&[&str]] = &[
        &["stats"],
        &["stats", "--json"],
        &["version", "list"],
        &["version", "list", "--json"],
        &["version", "diff", "v1", "current", "--json"],
        &["user", "--json"],
    ];
    for args in commands {
        let (code, stderr) = run_with_closed_stdout(&p, args);
        assert!(
            matches!(code, Some(0 | 141)),
            "loupe {args:?} exited {code:?}: {stderr}"
        );
        assert!(
            !stderr.contains("panicked")
                && !stderr.contains("backtrace")
                && stderr.trim().is_empty(),
            "loupe {args:?} was not quiet: {stderr}"
        );
        // The same through a real shell pipeline with `head`.
        let shell = format!(
            "set -o pipefail; '{}' -p '{}' {} | head -1 >/dev/null",
            env!("CARGO_BIN_EXE_loupe"),
            s(&p),
            args.join(" ")
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &shell])
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("bash");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(0 | 141)) && stderr.trim().is_empty(),
            "loupe {args:?} | head -1: {:?} {stderr}",
            out.status.code()
        );
    }
}
