//! Import and export through the real CLI, on real files, checked with the reference readers.

use std::path::Path;

use loupe::store::Project;

use crate::support::{loupe, new_project, ok, run, testdata, write_png};

fn has_pycocotools() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import pycocotools"])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn coco_import_export_is_read_by_pycocotools_with_ap_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    let src = testdata()
        .join("datumaro/tests/assets/coco_dataset/coco_instances/annotations/instances_val.json");
    ok(
        &p,
        &[
            "import",
            "--format",
            "coco",
            src.to_str().expect("utf8"),
            "--allow-missing",
        ],
    );
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&p, &["stats", "--json"])).expect("json");
    assert!(stats["boxes"].as_u64().expect("boxes") > 0, "{stats}");
    let out = dir.path().join("export.json");
    ok(
        &p,
        &["export", "--format", "coco", out.to_str().expect("utf8")],
    );
    if !has_pycocotools() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have pycocotools (scripts/setup.sh installs it)"
        );
        eprintln!("pycocotools missing: skipping the reference check (run scripts/setup.sh)");
        return;
    }
    let script = r#"
import sys, io, contextlib, json
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[1])
    dets = [dict(image_id=a['image_id'], category_id=a['category_id'], bbox=a['bbox'], score=1.0)
            for a in gt.dataset['annotations'] if not a.get('iscrowd')]
    dt = gt.loadRes(dets)
    E = COCOeval(gt, dt, 'bbox'); E.evaluate(); E.accumulate(); E.summarize()
print(json.dumps({"AP": E.stats[0], "n": len(gt.dataset['annotations'])}))
"#;
    let res = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&out)
        .output()
        .expect("python3");
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&res.stdout).expect("json");
    assert!((v["AP"].as_f64().expect("AP") - 1.0).abs() < 1e-9, "{v}");
}

#[test]
fn a_malformed_file_is_refused_whole_and_the_store_is_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    let good = testdata()
        .join("datumaro/tests/assets/coco_dataset/coco_instances/annotations/instances_val.json");
    ok(
        &p,
        &[
            "import",
            "--format",
            "coco",
            good.to_str().expect("utf8"),
            "--allow-missing",
        ],
    );
    let before = ok(&p, &["stats", "--json"]);
    // A valid start, then an annotation pointing at an unknown category.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"images":[{"id":1,"file_name":"x.jpg","width":10,"height":10}],
            "categories":[{"id":1,"name":"a"}],
            "annotations":[{"id":1,"image_id":1,"category_id":1,"bbox":[0,0,2,2]},
                           {"id":2,"image_id":1,"category_id":7,"bbox":[0,0,2,2]}]}"#,
    )
    .expect("write");
    let out = run(
        &p,
        &["import", "--format", "coco", bad.to_str().expect("utf8")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.json") && err.contains('7'), "{err}");
    let truncated = dir.path().join("truncated.json");
    std::fs::write(&truncated, "{\"images\": [\n{\"id\": 1,").expect("write");
    let out = run(
        &p,
        &[
            "import",
            "--format",
            "coco",
            truncated.to_str().expect("utf8"),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("truncated.json:2:"),
        "the error names file and line: {err}"
    );
    assert_eq!(
        ok(&p, &["stats", "--json"]),
        before,
        "a refused import changed the store"
    );
}

#[test]
fn yolo_export_has_the_ultralytics_layout_and_reimports_the_same_boxes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    for i in 0..3 {
        write_png(&dir.path().join(format!("imgs/{i}.png")), 64, 48, i);
    }
    ok(
        &p,
        &["add", dir.path().join("imgs").to_str().expect("utf8")],
    );
    // Boxes through a VOC file for image 0, none for the others.
    let voc = dir.path().join("voc");
    std::fs::create_dir_all(&voc).expect("mkdir");
    std::fs::write(
        voc.join("0.xml"),
        "<annotation><filename>0.png</filename><size><width>64</width><height>48</height><depth>3</depth></size>\
         <object><name>dog</name><truncated>1</truncated><difficult>0</difficult><bndbox><xmin>4</xmin><ymin>5</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>\
         <object><name>cat</name><truncated>0</truncated><difficult>1</difficult><bndbox><xmin>10</xmin><ymin>2</ymin><xmax>20</xmax><ymax>12</ymax></bndbox></object>\
         </annotation>",
    )
    .expect("write voc");
    ok(
        &p,
        &[
            "import",
            "--format",
            "voc",
            voc.to_str().expect("utf8"),
            "--images",
            dir.path().join("imgs").to_str().expect("utf8"),
        ],
    );
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&p, &["stats", "--json"])).expect("json");
    assert_eq!(stats["boxes"], 2, "{stats}");
    assert_eq!(
        stats["images"], 3,
        "VOC import must attach to the added images: {stats}"
    );
    let out = dir.path().join("yolo");
    ok(
        &p,
        &["export", "--format", "yolo", out.to_str().expect("utf8")],
    );
    let yaml = std::fs::read_to_string(out.join("data.yaml")).expect("data.yaml");
    for key in ["path:", "train:", "val:", "names:"] {
        assert!(yaml.contains(key), "data.yaml lacks {key}:\n{yaml}");
    }
    let labels: Vec<_> = walkdir::WalkDir::new(out.join("labels"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .collect();
    assert_eq!(
        labels.len(),
        3,
        "one label file per image, empty ones included"
    );
    let empty = labels
        .iter()
        .filter(|e| std::fs::metadata(e.path()).expect("meta").len() == 0)
        .count();
    assert_eq!(empty, 2);
    // Re-import into a fresh project: same boxes.
    let q = dir.path().join("q.loupe");
    drop(Project::create(&q).expect("create"));
    ok(
        &q,
        &[
            "import",
            "--format",
            "yolo",
            out.join("data.yaml").to_str().expect("utf8"),
        ],
    );
    let a = Project::open(&p)
        .expect("open")
        .dataset_at(None)
        .expect("dataset");
    let b = Project::open(&q)
        .expect("open")
        .dataset_at(None)
        .expect("dataset");
    let boxes = |d: &loupe::model::Dataset| {
        let mut v: Vec<(String, i64, i64, i64, i64)> = d
            .images
            .iter()
            .flat_map(|i| {
                i.boxes.iter().map(|b| {
                    (
                        d.classes[b.class].clone(),
                        (b.bbox.x * 100.0).round() as i64,
                        (b.bbox.y * 100.0).round() as i64,
                        (b.bbox.w * 100.0).round() as i64,
                        (b.bbox.h * 100.0).round() as i64,
                    )
                })
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(boxes(&a), boxes(&b));
}

#[test]
fn versions_diff_through_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    let src = testdata()
        .join("datumaro/tests/assets/coco_dataset/coco_instances/annotations/instances_val.json");
    ok(&p, &["version", "create", "empty"]);
    ok(
        &p,
        &[
            "import",
            "--format",
            "coco",
            src.to_str().expect("utf8"),
            "--allow-missing",
        ],
    );
    ok(
        &p,
        &["version", "create", "v1", "--message", "first labels"],
    );
    let diff: serde_json::Value =
        serde_json::from_str(&ok(&p, &["version", "diff", "empty", "v1", "--json"])).expect("json");
    let n = diff["added"].as_array().expect("added").len();
    assert!(n > 0);
    assert!(diff["removed"].as_array().expect("removed").is_empty());
    let list = ok(&p, &["version", "list"]);
    assert!(
        list.contains("v1") && list.contains("first labels"),
        "{list}"
    );
    // Exporting a version ignores later edits.
    let out = dir.path().join("empty.json");
    ok(
        &p,
        &[
            "export",
            "--format",
            "coco",
            out.to_str().expect("utf8"),
            "--version",
            "empty",
        ],
    );
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("read")).expect("json");
    assert!(j["annotations"].as_array().expect("annotations").is_empty());
    let err = run(&p, &["version", "create", "v1"]);
    assert!(!err.status.success(), "versions are immutable");
}

#[test]
fn coco_results_become_proposals_of_a_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    let gt = dir.path().join("gt.json");
    std::fs::write(
        &gt,
        r#"{"images":[{"id":42,"file_name":"a.jpg","width":100,"height":100}],
            "categories":[{"id":3,"name":"car"}],
            "annotations":[{"id":1,"image_id":42,"category_id":3,"bbox":[10,10,20,20]}]}"#,
    )
    .expect("write");
    ok(
        &p,
        &[
            "import",
            "--format",
            "coco",
            gt.to_str().expect("utf8"),
            "--allow-missing",
        ],
    );
    let res = dir.path().join("res.json");
    std::fs::write(
        &res,
        r#"[{"image_id":42,"category_id":3,"bbox":[11,10,20,20],"score":0.9},
            {"image_id":42,"category_id":3,"bbox":[50,50,10,10],"score":0.3}]"#,
    )
    .expect("write");
    ok(
        &p,
        &[
            "import",
            "--format",
            "coco-results",
            res.to_str().expect("utf8"),
            "--gt",
            gt.to_str().expect("utf8"),
            "--run",
            "m1",
        ],
    );
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&p, &["stats", "--json"])).expect("json");
    assert_eq!(stats["proposals"], 2, "{stats}");
    assert_eq!(
        stats["boxes"], 1,
        "proposals never overwrite labels: {stats}"
    );
    assert_eq!(stats["runs"], 1);
}

/// A refused labelme, CreateML or Open Images import names the file and the record or line, exits
/// non-zero, and leaves `loupe stats` as it was; a good one then exports and re-imports.
#[test]
fn labelme_createml_openimages_refusals_leave_the_store_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    let good = testdata().join("labelme/examples/bbox_detection/data_annotated");
    let out = ok(
        &p,
        &[
            "import",
            "--format",
            "labelme",
            good.to_str().expect("utf8"),
        ],
    );
    assert!(out.contains("3 images") && out.contains("9 boxes"), "{out}");
    let before = ok(&p, &["stats", "--json"]);

    // One good file, then a rectangle with one point: nothing of the folder is stored.
    let bad = dir.path().join("bad-labelme");
    std::fs::create_dir_all(&bad).expect("mkdir");
    let shape = |points: &str| {
        format!(
            r#"{{"version": "5.0.1", "shapes": [{{"label": "cat", "points": {points}, "shape_type": "rectangle"}}],
  "imagePath": "x.jpg", "imageData": null, "imageHeight": 10, "imageWidth": 10}}"#
        )
    };
    std::fs::write(bad.join("a.json"), shape("[[1, 1], [5, 5]]")).expect("write");
    std::fs::write(bad.join("b.json"), shape("[[1, 1]]")).expect("write");
    // A truncated CreateML file, and an Open Images CSV with XMin > XMax on line 3.
    let createml = dir.path().join("t.createml.json");
    std::fs::write(&createml, "[{\"image\": \"x.jpg\",\n \"annotations\": [").expect("write");
    let oi = dir.path().join("oi/annotations");
    std::fs::create_dir_all(&oi).expect("mkdir");
    std::fs::write(
        oi.join("train-annotations-bbox.csv"),
        "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax\n\
         x,xclick,/m/0,1,0.1,0.2,0.1,0.2\n\
         x,xclick,/m/0,1,0.9,0.2,0.1,0.2\n",
    )
    .expect("write");
    std::fs::write(oi.join("images.meta"), "x 10 10\n").expect("write");
    for (format, path, wanted) in [
        ("labelme", bad.clone(), "b.json: shapes[0] (label `cat`)"),
        ("createml", createml, "t.createml.json:2:"),
        (
            "openimages",
            dir.path().join("oi"),
            "train-annotations-bbox.csv: line 3: XMin > XMax",
        ),
    ] {
        let out = run(
            &p,
            &["import", "--format", format, path.to_str().expect("utf8")],
        );
        assert!(!out.status.success(), "{format} import was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(wanted), "{format}: `{err}` lacks `{wanted}`");
        assert_eq!(
            ok(&p, &["stats", "--json"]),
            before,
            "a refused {format} import changed the store"
        );
    }

    // The project's boxes go out and come back in each format: same box count.
    for format in ["labelme", "createml", "openimages"] {
        let out_dir = dir.path().join(format!("export-{format}"));
        ok(
            &p,
            &[
                "export",
                "--format",
                format,
                out_dir.to_str().expect("utf8"),
            ],
        );
        let q = dir.path().join(format!("{format}.loupe"));
        drop(Project::create(&q).expect("create"));
        ok(
            &q,
            &[
                "import",
                "--format",
                format,
                out_dir.to_str().expect("utf8"),
            ],
        );
        let stats: serde_json::Value =
            serde_json::from_str(&ok(&q, &["stats", "--json"])).expect("json");
        assert_eq!(stats["boxes"], 9, "{format}: {stats}");
    }
}

/// The Label Studio fixtures Loupe wrote itself (see tests/data/labelstudio/README.md).
fn labelstudio_data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/labelstudio")
        .join(name)
}

#[test]
fn cvat_and_labelstudio_refusals_leave_the_store_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    let good =
        testdata().join("datumaro/tests/assets/cvat_dataset/for_images/export_task/train.xml");
    ok(
        &p,
        &["import", "--format", "cvat", good.to_str().expect("utf8")],
    );
    let before = ok(&p, &["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_str(&before).expect("json");
    assert_eq!(stats["boxes"], 1, "{stats}");
    let head = r#"<annotations><version>1.1</version>
<meta><task><labels><label><name>label1</name></label></labels></task></meta>
<image id="0" name="img0.jpg" width="8" height="8">
  <box label="label1" xtl="0" ytl="0" xbr="2" ybr="2"/>
"#;
    let bad_files = [
        ("cut.xml", "cvat", format!("{head}  <box label=\"label1\" xtl=")),
        (
            "swapped.xml",
            "cvat",
            format!("{head}  <box label=\"label1\" xtl=\"5\" ytl=\"0\" xbr=\"1\" ybr=\"2\"/>\n</image></annotations>"),
        ),
        (
            "text.xml",
            "cvat",
            format!("{head}  <box label=\"label1\" xtl=\"a\" ytl=\"0\" xbr=\"1\" ybr=\"2\"/>\n</image></annotations>"),
        ),
        (
            "nolabel.xml",
            "cvat",
            format!("{head}  <box label=\"\" xtl=\"0\" ytl=\"0\" xbr=\"1\" ybr=\"2\"/>\n</image></annotations>"),
        ),
        // Labels and a prediction, then a region without its original size: no run is left
        // behind for the prediction either.
        (
            "nosize.json",
            "labelstudio",
            r#"[{"id": 1, "data": {"image": "a.jpg"},
                "annotations": [{"result": [{"type": "rectanglelabels", "original_width": 8, "original_height": 8,
                    "value": {"x": 0, "y": 0, "width": 50, "height": 50, "rectanglelabels": ["label1"]}}]}],
                "predictions": [{"model_version": "m", "result": []}]},
               {"id": 2, "data": {"image": "b.jpg"},
                "annotations": [{"result": [{"type": "rectanglelabels",
                    "value": {"x": 0, "y": 0, "width": 50, "height": 50, "rectanglelabels": ["label1"]}}]}]}]"#
                .to_owned(),
        ),
    ];
    for (name, format, text) in &bad_files {
        let bad = dir.path().join(name);
        std::fs::write(&bad, text).expect("write");
        let out = run(
            &p,
            &["import", "--format", format, bad.to_str().expect("utf8")],
        );
        assert!(!out.status.success(), "{name} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(name), "the error names the file: {err}");
    }
    assert_eq!(
        ok(&p, &["stats", "--json"]),
        before,
        "a refused import changed the store"
    );
}

#[test]
fn labelstudio_labels_and_predictions_in_one_import() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    let src = labelstudio_data("project-1-at-2024-05-13-14-26-9aaf565b.json");
    let printed = ok(
        &p,
        &[
            "import",
            "--format",
            "labelstudio",
            src.to_str().expect("utf8"),
            "--allow-missing",
        ],
    );
    assert!(
        printed.contains("3 model proposals in 2 run(s)"),
        "{printed}"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&p, &["stats", "--json"])).expect("json");
    assert_eq!(
        (
            &stats["boxes"],
            &stats["proposals"],
            &stats["runs"],
            &stats["images"]
        ),
        (&3.into(), &3.into(), &2.into(), &3.into()),
        "{stats}"
    );
    // Exported and read back: the same labels.
    let out = dir.path().join("ls.json");
    ok(
        &p,
        &[
            "export",
            "--format",
            "labelstudio",
            out.to_str().expect("utf8"),
        ],
    );
    let q = dir.path().join("q.loupe");
    drop(Project::create(&q).expect("create"));
    ok(
        &q,
        &[
            "import",
            "--format",
            "labelstudio",
            out.to_str().expect("utf8"),
            "--allow-missing",
        ],
    );
    let again: serde_json::Value =
        serde_json::from_str(&ok(&q, &["stats", "--json"])).expect("json");
    assert_eq!(again["boxes"], 3, "{again}");
}

/// A reader that closes the pipe early ends a command quietly: status 0 or 141, no panic, no
/// backtrace (`loupe stats | head -1`).
#[test]
fn closed_stdout_ends_commands_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    for args in [
        vec!["stats"],
        vec!["stats", "--json"],
        vec!["version", "list"],
        vec!["--help"],
    ] {
        let mut child = loupe()
            .arg("-p")
            .arg(&p)
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn loupe");
        // Close the reading end before the command writes.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(0 | 141)),
            "{args:?}: {:?} {err}",
            out.status
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
