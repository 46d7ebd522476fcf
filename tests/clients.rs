//! Loupe's exports read, as they are, by the tools teams train and convert with: pycocotools,
//! datumaro (`coco_instances`, `yolo`, which reads the ultralytics layout, `voc_detection`),
//! label-studio-converter and ultralytics' own dataset rules (`check_det_dataset`'s path
//! resolution and `img2label_paths`). The clients are the real ones from the project's `.venv`
//! (scripts/requirements-test.txt); a missing client fails these tests, it never skips them.
//!
//! Two real projects: one whose images sit in an `images/` folder inside the project folder
//! (the layout that used to export as `images/train/images/x.jpg`), one whose images sit beside
//! it (paths starting with `..`). Images and labels are datumaro's and labelme's own fixtures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use loupe::store::Project;

use crate::support::{loupe, ok, s, testdata};

/// Runs a client through tests/read_export.py; what it saw.
fn read(args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/read_export.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .expect("python3 on PATH (scripts/test.sh puts .venv/bin first)");
    assert!(
        out.status.success(),
        "{args:?} failed (clients come from scripts/requirements-test.txt, installed by scripts/setup.sh):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json from the reader");
    eprintln!(
        "{} {}: {} images, {} boxes{}",
        v["client"].as_str().unwrap_or("?"),
        v["version"].as_str().unwrap_or("?"),
        items(&v).len(),
        box_count(&v),
        v.get("splits")
            .map_or(String::new(), |s| format!(", splits {s}"))
    );
    v
}

/// Runs `label-studio-converter import KIND -i INPUT -o OUT`; returns what the converter made.
fn label_studio(kind: &str, input: &Path, out: &Path) -> serde_json::Value {
    let run = Command::new("label-studio-converter")
        .args(["import", kind, "-i", s(input), "-o", s(out)])
        .output()
        .expect("label-studio-converter on PATH (scripts/requirements-test.txt)");
    assert!(
        run.status.success() && out.is_file(),
        "label-studio-converter import {kind} made nothing:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    read(&["label-studio", s(out)])
}

fn items(v: &serde_json::Value) -> &Vec<serde_json::Value> {
    v["items"].as_array().expect("items")
}

fn box_count(v: &serde_json::Value) -> usize {
    items(v)
        .iter()
        .map(|i| i["boxes"].as_array().map_or(0, Vec::len))
        .sum()
}

/// A box as the clients report it: class name and x, y, w, h in pixels.
type Boxes = Vec<(String, [f64; 4])>;

/// Per exported image stem, its boxes, from a client's output.
fn by_name(v: &serde_json::Value) -> BTreeMap<String, Boxes> {
    let mut map: BTreeMap<String, Boxes> = BTreeMap::new();
    for item in items(v) {
        let name = item["name"].as_str().expect("name").to_owned();
        let boxes = map.entry(name).or_default();
        for b in item["boxes"].as_array().expect("boxes") {
            let b = b.as_array().expect("box");
            let coords: Vec<f64> = b[1..].iter().map(|x| x.as_f64().expect("number")).collect();
            boxes.push((
                b[0].as_str().expect("class").to_owned(),
                [coords[0], coords[1], coords[2], coords[3]],
            ));
        }
    }
    for boxes in map.values_mut() {
        boxes.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    }
    map
}

/// The project's labels keyed as the export names the images (`renames`: project path to
/// exported name, for names that clashed).
fn expected(project: &Path, renames: &[(&str, &str)]) -> BTreeMap<String, Boxes> {
    let ds = Project::open(project)
        .expect("open")
        .dataset_at(None)
        .expect("dataset");
    let mut map = BTreeMap::new();
    for img in &ds.images {
        let name = renames
            .iter()
            .find(|(from, _)| *from == img.file_name)
            .map_or_else(
                || img.file_name.rsplit('/').next().unwrap_or_default(),
                |(_, to)| *to,
            );
        let stem = name.rsplit_once('.').map_or(name, |(s, _)| s).to_owned();
        let mut boxes: Boxes = img
            .boxes
            .iter()
            .map(|b| {
                (
                    ds.classes[b.class].clone(),
                    [b.bbox.x, b.bbox.y, b.bbox.w, b.bbox.h],
                )
            })
            .collect();
        boxes.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
        map.insert(stem, boxes);
    }
    map
}

/// Every image and every box the client saw equals the project's, within `tolerance` pixels.
/// JSON numbers read back by Python differ from Loupe's by the last bit at most.
const FLOAT_TOLERANCE: f64 = 1e-9;
/// datumaro rounds every coordinate it reads to two decimals (as float32), whatever the format.
const DATUMARO_TOLERANCE: f64 = 0.01;

fn assert_same(client: &serde_json::Value, want: &BTreeMap<String, Boxes>, tolerance: f64) {
    let got = by_name(client);
    let name = client["client"].as_str().unwrap_or("client");
    let tolerance = if name.starts_with("datumaro") {
        tolerance.max(DATUMARO_TOLERANCE)
    } else {
        tolerance
    };
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{name}: images"
    );
    for (image, want_boxes) in want {
        let got_boxes = &got[image];
        assert_eq!(
            got_boxes.len(),
            want_boxes.len(),
            "{name}: boxes of {image}: {got_boxes:?} vs {want_boxes:?}"
        );
        for (g, w) in got_boxes.iter().zip(want_boxes) {
            assert_eq!(g.0, w.0, "{name}: class of a box of {image}");
            for k in 0..4 {
                assert!(
                    (g.1[k] - w.1[k]).abs() <= tolerance,
                    "{name}: {image}: {g:?} vs {w:?}"
                );
            }
        }
    }
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
}

/// The real photos and their VOC annotations written by labelme's own converter.
fn labelme_voc() -> PathBuf {
    testdata().join("labelme/examples/bbox_detection/data_dataset_voc")
}

fn datumaro_assets() -> PathBuf {
    testdata().join("datumaro/tests/assets")
}

/// A project whose images sit in `images/` inside the project folder: datumaro's COCO and VOC
/// fixtures with their labels, labelme's photos with theirs, and two Open Images fixtures that
/// clash by name with the COCO ones (`images/oi/a.jpg` vs `images/a.jpg`).
fn project_with_images_folder(root: &Path) -> PathBuf {
    let d = datumaro_assets();
    let images = root.join("images");
    let coco = d.join("coco_dataset/coco_instances");
    copy(&coco.join("images/train/a.jpg"), &images.join("a.jpg"));
    copy(&coco.join("images/val/b.jpg"), &images.join("b.jpg"));
    let voc = d.join("voc_dataset/voc_dataset1");
    copy(
        &voc.join("JPEGImages/2007_000001.jpg"),
        &images.join("voc/2007_000001.jpg"),
    );
    let oi = d.join("open_images_dataset/v6/images/train");
    copy(&oi.join("a.jpg"), &images.join("oi/a.jpg"));
    copy(&oi.join("b.jpg"), &images.join("oi/b.jpg"));
    for n in ["2011_000003", "2011_000006", "2011_000025"] {
        copy(
            &labelme_voc().join(format!("JPEGImages/{n}.jpg")),
            &images.join(format!("photos/{n}.jpg")),
        );
    }
    let p = root.join("p.loupe");
    drop(Project::create(&p).expect("create"));
    ok(&p, &["add", s(&images)]);
    for split in ["train", "val"] {
        let json = coco.join(format!("annotations/instances_{split}.json"));
        ok(
            &p,
            &[
                "import",
                "--format",
                "coco",
                s(&json),
                "--images",
                s(&images),
            ],
        );
    }
    ok(
        &p,
        &[
            "import",
            "--format",
            "voc",
            s(&voc.join("Annotations")),
            "--images",
            s(&images.join("voc")),
        ],
    );
    ok(
        &p,
        &[
            "import",
            "--format",
            "voc",
            s(&labelme_voc().join("Annotations")),
            "--images",
            s(&images.join("photos")),
        ],
    );
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&p, &["stats", "--json"])).expect("json");
    assert_eq!(
        (stats["images"].as_u64(), stats["boxes"].as_u64()),
        (Some(8), Some(14)),
        "the fixture project: {stats}"
    );
    p
}

/// YOLO writes fractions of the image size with 6 decimals: up to 5e-7 of the size per value,
/// so 1e-3 px covers images up to 2000 px.
const YOLO_TOLERANCE: f64 = 1e-3;

/// The renames project_with_images_folder's exports make.
const RENAMES: [(&str, &str); 2] = [
    ("images/oi/a.jpg", "images_oi_a.jpg"),
    ("images/oi/b.jpg", "images_oi_b.jpg"),
];

#[test]
fn yolo_export_is_read_by_ultralytics_rules_datumaro_and_label_studio_converter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project_with_images_folder(&dir.path().join("project"));
    let want = expected(&p, &RENAMES);
    let out = dir.path().join("yolo");
    let printed = ok(&p, &["export", "--format", "yolo", s(&out)]);
    eprintln!("{printed}");
    assert!(printed.contains("8 images, 14 boxes"), "{printed}");
    assert!(printed.contains("images: 8 hard-linked"), "{printed}");
    for (from, to) in RENAMES {
        assert!(printed.contains(&format!("{from} -> {to}")), "{printed}");
    }
    // Flat: no project folders under the export's.
    assert!(out.join("images/a.jpg").is_file() && out.join("labels/a.txt").is_file());
    assert!(out.join("images/images_oi_a.jpg").is_file());
    assert!(out.join("classes.txt").is_file());

    let ul = read(&["ultralytics", s(&out.join("data.yaml"))]);
    assert_eq!(
        ul["root"].as_str().map(PathBuf::from),
        Some(out.canonicalize().expect("canonical")),
        "data.yaml resolves to its own folder from any working directory"
    );
    assert_eq!(ul["splits"]["train"]["images"], 8);
    assert_eq!(
        ul["splits"]["train"]["labels_found"], 8,
        "img2label_paths finds every label file"
    );
    // `val` is the training set here: compare the train split only.
    let train_only = serde_json::json!({
        "client": "ultralytics",
        "items": items(&ul).iter().filter(|i| i["subset"] == "train").cloned().collect::<Vec<_>>()
    });
    assert_same(&train_only, &want, YOLO_TOLERANCE);

    // datumaro 1.13 registers one `yolo` importer, which detects the ultralytics layout itself
    // (`yolo_ultralytics` is only an extractor name there).
    let dm = read(&["datumaro", "yolo", s(&out)]);
    assert_same(&dm, &want, YOLO_TOLERANCE);
    assert!(items(&dm).iter().all(|i| i["image_exists"] == true));

    let ls = label_studio("yolo", &out, &dir.path().join("ls-yolo.json"));
    // label-studio-converter lists a task per image; images without a label file have none.
    assert_same(&ls, &want, YOLO_TOLERANCE);
}

#[test]
fn a_seeded_yolo_split_keeps_every_label_findable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project_with_images_folder(&dir.path().join("project"));
    let want = expected(&p, &RENAMES);
    let out = dir.path().join("yolo");
    let args = [
        "export",
        "--format",
        "yolo",
        s(&out),
        "--split",
        "train=0.6,val=0.4",
        "--seed",
        "5",
    ];
    let printed = ok(&p, &args);
    eprintln!("{printed}");
    let again = dir.path().join("again");
    let mut args2 = args;
    args2[3] = s(&again);
    let printed2 = ok(&p, &args2);
    let splits = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("splits"))
            .map(str::to_owned)
    };
    assert_eq!(splits(&printed), splits(&printed2), "same seed, same split");
    let ul = read(&["ultralytics", s(&out.join("data.yaml"))]);
    let (train, val) = (&ul["splits"]["train"], &ul["splits"]["val"]);
    assert_eq!(train["labels_found"], train["images"]);
    assert_eq!(val["labels_found"], val["images"]);
    assert_eq!(
        train["images"].as_u64().expect("n") + val["images"].as_u64().expect("n"),
        8
    );
    assert_same(&ul, &want, YOLO_TOLERANCE);
    let dm = read(&["datumaro", "yolo", s(&out)]);
    assert_same(&dm, &want, YOLO_TOLERANCE);
    let subsets =
        |v: &serde_json::Value, name: &str| items(v).iter().filter(|i| i["subset"] == name).count();
    assert_eq!(
        subsets(&dm, "val") as u64,
        val["images"].as_u64().expect("n")
    );
}

#[test]
fn coco_export_is_read_by_pycocotools_datumaro_and_label_studio_converter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project_with_images_folder(&dir.path().join("project"));
    let want = expected(&p, &RENAMES);
    let out = dir.path().join("coco");
    let printed = ok(&p, &["export", "--format", "coco", s(&out)]);
    eprintln!("{printed}");
    let instances = out.join("annotations/instances_train.json");
    let coco = read(&["pycocotools", s(&instances), s(&out.join("images/train"))]);
    assert_same(&coco, &want, FLOAT_TOLERANCE);
    assert!(
        items(&coco).iter().all(|i| i["image_exists"] == true),
        "every file_name is a file under images/train"
    );
    let dm = read(&["datumaro", "coco_instances", s(&out)]);
    assert_same(&dm, &want, FLOAT_TOLERANCE);
    assert!(items(&dm).iter().all(|i| i["image_exists"] == true));
    let ls = label_studio("coco", &instances, &dir.path().join("ls-coco.json"));
    assert_same(&ls, &want, 1e-9);
    let tasks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("ls-coco.json")).expect("tasks"))
            .expect("json");
    let polygons = tasks
        .as_array()
        .expect("tasks")
        .iter()
        .flat_map(|t| {
            t["annotations"][0]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|r| r["type"] == "polygonlabels")
        .count();
    assert_eq!(
        polygons, 0,
        "no box-shaped polygons unless --coco-segmentation"
    );

    // With --coco-segmentation the converter makes a polygon of every box; with a split,
    // datumaro sees the subsets.
    let seg = dir.path().join("coco-seg");
    ok(
        &p,
        &[
            "export",
            "--format",
            "coco",
            s(&seg),
            "--coco-segmentation",
            "--split",
            "train=0.5,val=0.5",
            "--images",
            "copy",
        ],
    );
    let dm = read(&["datumaro", "coco_instances", s(&seg)]);
    assert_same(&dm, &want, FLOAT_TOLERANCE);
    let mut subsets: Vec<&str> = items(&dm)
        .iter()
        .filter_map(|i| i["subset"].as_str())
        .collect();
    subsets.sort_unstable();
    subsets.dedup();
    assert_eq!(subsets, ["train", "val"]);
    let ls = label_studio(
        "coco",
        &seg.join("annotations/instances_train.json"),
        &dir.path().join("ls-seg.json"),
    );
    let tasks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("ls-seg.json")).expect("tasks"))
            .expect("json");
    let polygons = tasks
        .as_array()
        .expect("tasks")
        .iter()
        .flat_map(|t| {
            t["annotations"][0]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|r| r["type"] == "polygonlabels")
        .count();
    assert_eq!(polygons, box_count(&ls));
}

#[test]
fn voc_export_is_read_by_datumaro_with_its_own_classes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project_with_images_folder(&dir.path().join("project"));
    let want = expected(&p, &RENAMES);
    let out = dir.path().join("voc");
    let printed = ok(&p, &["export", "--format", "voc", s(&out)]);
    eprintln!("{printed}");
    let dm = read(&["datumaro", "voc_detection", s(&out)]);
    // `a`, `b` and `c` are not VOC classes: they survive through labelmap.txt. VOC gives corners:
    // w = xmax - xmin may differ from the stored w in the last bit.
    assert_same(&dm, &want, DATUMARO_TOLERANCE);
    assert!(items(&dm).iter().all(|i| i["image_exists"] == true));
    let xml = std::fs::read_to_string(out.join("Annotations/2007_000001.xml")).expect("xml");
    assert!(
        xml.contains("<filename>2007_000001.jpg</filename>"),
        "no project folders in <filename>: {xml}"
    );
}

/// A project whose images sit beside the project folder: stored as `../data/...`.
fn project_with_images_outside(root: &Path) -> PathBuf {
    let data = root.join("data");
    for n in ["2011_000003", "2011_000006", "2011_000025"] {
        copy(
            &labelme_voc().join(format!("JPEGImages/{n}.jpg")),
            &data.join(format!("{n}.jpg")),
        );
    }
    let p = root.join("project/p.loupe");
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    drop(Project::create(&p).expect("create"));
    ok(&p, &["add", s(&data)]);
    ok(
        &p,
        &[
            "import",
            "--format",
            "voc",
            s(&labelme_voc().join("Annotations")),
            "--images",
            s(&data),
        ],
    );
    let ds = Project::open(&p)
        .expect("open")
        .dataset_at(None)
        .expect("dataset");
    assert!(
        ds.images
            .iter()
            .all(|i| i.file_name.starts_with("../data/")),
        "{:?}",
        ds.images.iter().map(|i| &i.file_name).collect::<Vec<_>>()
    );
    p
}

#[test]
fn images_outside_the_project_folder_are_exported_and_a_missing_one_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project_with_images_outside(dir.path());
    let want = expected(&p, &[]);
    for format in ["yolo", "coco", "voc"] {
        let out = dir.path().join(format);
        let printed = ok(
            &p,
            &["export", "--format", format, s(&out), "--images", "copy"],
        );
        assert!(printed.contains("images: 3 copied"), "{printed}");
    }
    let ul = read(&["ultralytics", s(&dir.path().join("yolo/data.yaml"))]);
    assert_eq!(ul["splits"]["train"]["labels_found"], 3);
    let train_only = serde_json::json!({
        "client": "ultralytics",
        "items": items(&ul).iter().filter(|i| i["subset"] == "train").cloned().collect::<Vec<_>>()
    });
    assert_same(&train_only, &want, YOLO_TOLERANCE);
    let coco = dir.path().join("coco");
    assert_same(
        &read(&[
            "pycocotools",
            s(&coco.join("annotations/instances_train.json")),
            s(&coco.join("images/train")),
        ]),
        &want,
        FLOAT_TOLERANCE,
    );
    assert_same(
        &read(&["datumaro", "voc_detection", s(&dir.path().join("voc"))]),
        &want,
        DATUMARO_TOLERANCE,
    );

    // One image gone: refused, nothing written, the file named.
    std::fs::remove_file(dir.path().join("data/2011_000006.jpg")).expect("remove");
    let out = dir.path().join("refused");
    let run = loupe()
        .arg("-p")
        .arg(&p)
        .args(["export", "--format", "yolo", s(&out)])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{err}");
    assert!(
        err.contains("1 of 3 images not found") && err.contains("2011_000006.jpg"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written");
    // --allow-missing: said first, on stderr; the labels still go.
    let run = loupe()
        .arg("-p")
        .arg(&p)
        .args(["export", "--format", "yolo", s(&out), "--allow-missing"])
        .output()
        .expect("run");
    assert!(run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.starts_with("warning: 1 of 3 images not found") && err.contains("2011_000006.jpg"),
        "{err}"
    );
    assert!(out.join("labels/2011_000006.txt").is_file());
    assert!(!out.join("images/2011_000006.jpg").exists());
}
