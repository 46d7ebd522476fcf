//! Imports that meet what the project already holds, files that disagree with their images,
//! and files that may not be trusted (issue 14, part 2): the same file imported twice, a
//! declared image size that is not the real one, two classes with one name, a Darknet file
//! naming files outside its folder, and images whose pixels do not decode.

use std::path::{Path, PathBuf};

use loupe::store::Project;

use crate::support::{fails, new_project, ok, ok_json, s, write_png};

/// A COCO file for `a.png` (64x48) with `boxes` ([x, y, w, h], class `cat`) and the declared
/// size `size`.
fn coco(dir: &Path, name: &str, size: (u32, u32), boxes: &[[f64; 4]]) -> PathBuf {
    let anns: Vec<serde_json::Value> = boxes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            serde_json::json!({"id": i + 1, "image_id": 1, "category_id": 1, "bbox": b,
                "area": b[2] * b[3], "iscrowd": 0})
        })
        .collect();
    let file = dir.join(name);
    let json = serde_json::json!({
        "images": [{"id": 1, "file_name": "a.png", "width": size.0, "height": size.1}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": anns,
    });
    std::fs::write(&file, json.to_string()).expect("write coco");
    file
}

fn boxes(p: &Path) -> u64 {
    ok_json(p, &["stats", "--json"])["boxes"]
        .as_u64()
        .expect("boxes")
}

#[test]
fn the_same_file_imported_twice_is_refused_until_the_user_chooses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    write_png(&dir.path().join("a.png"), 64, 48, 1);
    let file = coco(
        dir.path(),
        "labels.json",
        (64, 48),
        &[[4.0, 4.0, 20.0, 10.0], [30.0, 20.0, 10.0, 10.0]],
    );
    ok(&p, &["import", "--format", "coco", s(&file)]);
    assert_eq!(boxes(&p), 2);

    // Again: refused, with the count and the choices, and nothing written.
    let err = fails(&p, &["import", "--format", "coco", s(&file)]);
    assert!(
        err.contains("2 of its 2 boxes are already in the project"),
        "{err}"
    );
    assert!(
        err.contains("--skip-existing") && err.contains("--replace"),
        "{err}"
    );
    assert_eq!(boxes(&p), 2);

    // Skipping what exists: nothing new, which is said and is a failure too.
    let err = fails(
        &p,
        &["import", "--format", "coco", s(&file), "--skip-existing"],
    );
    assert!(err.contains("nothing new to import"), "{err}");
    assert_eq!(boxes(&p), 2);

    // A file with one box already there (within rounding) and one new: only the new one.
    let more = coco(
        dir.path(),
        "more.json",
        (64, 48),
        &[[4.01, 4.0, 20.0, 10.0], [40.0, 5.0, 8.0, 8.0]],
    );
    fails(&p, &["import", "--format", "coco", s(&more)]);
    let out = ok(
        &p,
        &["import", "--format", "coco", s(&more), "--skip-existing"],
    );
    assert!(
        out.contains("1 boxes already in the project not added again"),
        "{out}"
    );
    assert_eq!(boxes(&p), 3);

    // Replace: the image's labels become the file's; the ones it lacks are deleted as
    // revisions (history keeps them), the one it shares is untouched.
    let project = Project::open(&p).expect("open");
    let before = project.all_annotations().expect("annotations");
    drop(project);
    let only = coco(dir.path(), "only.json", (64, 48), &[[4.0, 4.0, 20.0, 10.0]]);
    let out = ok(&p, &["import", "--format", "coco", s(&only), "--replace"]);
    assert!(out.contains("2 labels the file lacks deleted"), "{out}");
    assert_eq!(boxes(&p), 1);
    let project = Project::open(&p).expect("open");
    let after = project.all_annotations().expect("annotations");
    assert_eq!(after.len(), 1);
    let kept = &after[0];
    assert!(
        before.iter().any(|a| a.id == kept.id),
        "the shared box kept its id"
    );
    for gone in before.iter().filter(|a| a.id != kept.id) {
        let history = project.history(gone.id).expect("history");
        assert_eq!(
            history.iter().map(|r| r.op.as_str()).collect::<Vec<_>>(),
            ["create", "delete"],
            "{history:?}"
        );
    }
    // `--replace` and `--skip-existing` together make no sense.
    fails(
        &p,
        &[
            "import",
            "--format",
            "coco",
            s(&only),
            "--replace",
            "--skip-existing",
        ],
    );
}

#[test]
fn a_declared_size_that_is_not_the_real_one_is_reported_and_boxes_meet_the_real_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    write_png(&dir.path().join("a.png"), 64, 48, 1);
    // The file says 128x96; the image is 64x48. One box fits both, one only the declared size
    // (clipped to the real image), one lies wholly outside the real image (dropped).
    let file = coco(
        dir.path(),
        "labels.json",
        (128, 96),
        &[
            [4.0, 4.0, 20.0, 10.0],
            [50.0, 40.0, 30.0, 30.0],
            [100.0, 70.0, 10.0, 10.0],
        ],
    );
    let out = crate::support::run(&p, &["import", "--format", "coco", s(&file), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 images are not the size"),
        "size mismatch said first: {stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["size_mismatches"], 1);
    assert_eq!(report["boxes"], 2);
    let kinds: Vec<&str> = report["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w["kind"].as_str())
        .collect();
    for kind in ["image_size_mismatch", "clipped_box", "zero_area_box"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let mismatch = report["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .find(|w| w["kind"] == "image_size_mismatch")
        .expect("mismatch warning");
    assert!(
        mismatch["message"]
            .as_str()
            .is_some_and(|m| m.contains("128x96") && m.contains("64x48")),
        "{mismatch}"
    );
    let project = Project::open(&p).expect("open");
    for a in project.all_annotations().expect("annotations") {
        let b = a.value.bbox;
        assert!(
            b.x2() <= 64.0 && b.y2() <= 48.0,
            "inside the real image: {b:?}"
        );
    }
}

#[test]
fn two_classes_with_one_name_are_a_reported_merge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    write_png(&dir.path().join("a.png"), 64, 48, 1);
    let file = dir.path().join("labels.json");
    std::fs::write(
        &file,
        r#"{"images":[{"id":1,"file_name":"a.png","width":64,"height":48}],
            "categories":[{"id":1,"name":"car"},{"id":2,"name":"person"},{"id":7,"name":"car"}],
            "annotations":[
              {"id":1,"image_id":1,"category_id":1,"bbox":[1,1,10,10],"area":100,"iscrowd":0},
              {"id":2,"image_id":1,"category_id":7,"bbox":[20,20,10,10],"area":100,"iscrowd":0}]}"#,
    )
    .expect("write");
    let report = ok_json(&p, &["import", "--format", "coco", s(&file), "--json"]);
    let merged = report["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .find(|w| w["kind"] == "merged_classes")
        .unwrap_or_else(|| panic!("a merged_classes warning: {report}"));
    assert!(
        merged["message"]
            .as_str()
            .is_some_and(|m| m.contains("positions 0, 2") && m.contains("`car`")),
        "{merged}"
    );
    let stats = ok_json(&p, &["stats", "--json"]);
    assert_eq!(stats["classes"], 2, "{stats}");
    assert_eq!(stats["boxes"], 2, "{stats}");
    // The YOLO names list too.
    let yolo = dir.path().join("yolo");
    write_png(&yolo.join("images/train/b.png"), 32, 32, 2);
    std::fs::create_dir_all(yolo.join("labels/train")).expect("mkdir");
    std::fs::write(
        yolo.join("labels/train/b.txt"),
        "0 0.5 0.5 0.2 0.2\n1 0.2 0.2 0.1 0.1\n",
    )
    .expect("labels");
    std::fs::write(
        yolo.join("data.yaml"),
        "path: .\ntrain: images/train\nnames:\n  0: dog\n  1: dog\n",
    )
    .expect("yaml");
    let report = ok_json(&p, &["import", "--format", "yolo", s(&yolo), "--json"]);
    assert!(
        report["warnings"]
            .as_array()
            .expect("warnings")
            .iter()
            .any(|w| w["kind"] == "merged_classes"),
        "{report}"
    );
}

#[test]
fn a_darknet_file_may_not_read_files_outside_its_folder_without_allow_outside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    let data = dir.path().join("darknet");
    write_png(&data.join("obj_train_data/a.png"), 32, 32, 1);
    std::fs::write(data.join("obj_train_data/a.txt"), "0 0.5 0.5 0.25 0.25\n").expect("label");
    std::fs::write(data.join("train.txt"), "obj_train_data/a.png\n").expect("list");
    // The names list lives outside the dataset folder (an absolute path, as a hostile or
    // careless file would write `/etc/passwd`).
    let outside = dir.path().join("secret.names");
    std::fs::write(&outside, "root:x:0:0\n").expect("names");
    std::fs::write(
        data.join("obj.data"),
        format!(
            "classes = 1\nnames = {}\ntrain = train.txt\n",
            outside.display()
        ),
    )
    .expect("obj.data");
    let err = fails(
        &p,
        &["import", "--format", "yolo", s(&data.join("obj.data"))],
    );
    assert!(
        err.contains("outside the dataset folder") && err.contains("--allow-outside"),
        "{err}"
    );
    assert_eq!(boxes(&p), 0);
    // A list outside too.
    std::fs::write(data.join("obj.names"), "cat\n").expect("names");
    let list = dir.path().join("elsewhere.txt");
    std::fs::write(
        &list,
        format!("{}\n", data.join("obj_train_data/a.png").display()),
    )
    .expect("list");
    std::fs::write(
        data.join("obj.data"),
        format!(
            "classes = 1\nnames = obj.names\ntrain = {}\n",
            list.display()
        ),
    )
    .expect("obj.data");
    let err = fails(
        &p,
        &["import", "--format", "yolo", s(&data.join("obj.data"))],
    );
    assert!(err.contains("`train =`"), "{err}");
    ok(
        &p,
        &[
            "import",
            "--format",
            "yolo",
            s(&data.join("obj.data")),
            "--allow-outside",
        ],
    );
    assert_eq!(boxes(&p), 1);
}

#[test]
fn add_refuses_images_whose_pixels_do_not_decode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = new_project(dir.path());
    let images = dir.path().join("images");
    write_png(&images.join("good.png"), 64, 48, 1);
    // A PNG whose header is whole but whose pixel data is cut short: the header probe passes.
    let whole = std::fs::read(images.join("good.png")).expect("read");
    let idat = whole
        .windows(4)
        .position(|w| w == b"IDAT")
        .expect("IDAT chunk");
    std::fs::write(images.join("cut.png"), &whole[..idat + 40]).expect("write");
    // A JPEG whose header is whole but whose scan data stops short (a half-downloaded photo):
    // the header probe passes, the decode does not.
    let mut jpeg = Vec::new();
    image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 3, y as u8 * 5, 7]))
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .expect("encode jpeg");
    let sos = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("SOS marker");
    std::fs::write(images.join("bad.jpg"), &jpeg[..sos + 40]).expect("write");
    assert!(
        loupe::imaging::probe(&images.join("bad.jpg")).is_ok(),
        "the header is fine"
    );
    std::fs::write(images.join("fine.jpg"), &jpeg).expect("write");

    let out = crate::support::run(&p, &["add", s(&images), "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("add --json: {e}: {stdout}"));
    let failed: Vec<String> = report["failed"]
        .as_array()
        .expect("failed")
        .iter()
        .map(|f| f.to_string())
        .collect();
    assert_eq!(report["added"], 2, "{report}");
    assert!(
        failed.iter().any(|f| f.contains("cut.png")),
        "cut.png refused: {failed:?}"
    );
    assert!(
        failed.iter().any(|f| f.contains("bad.jpg")),
        "bad.jpg refused: {failed:?}"
    );
}

#[test]
fn lossless_jpegs_are_added_and_decode_exactly() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lossless_jpeg");
    for name in ["gray8", "rgb8", "gray12", "gray16"] {
        let jpg = fixtures.join(format!("{name}.jpg"));
        let info = loupe::imaging::verify(&jpg)
            .unwrap_or_else(|e| panic!("{name}: lossless JPEG refused: {e}"));
        assert_eq!((info.width, info.height), (64, 48), "{name}");
        let decoded = loupe::imaging::decode(&jpg).expect("decode");
        let reference = image::open(fixtures.join(format!("{name}.png"))).expect("png");
        assert_eq!(decoded.color(), reference.color(), "{name}");
        assert!(
            decoded.as_bytes() == reference.as_bytes(),
            "{name}: lossless decode differs from the source pixels"
        );
    }
    // Cut short, it is refused with a reason about the data, naming the file.
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = std::fs::read(fixtures.join("gray8.jpg")).expect("read");
    let cut = dir.path().join("cut.jpg");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let err = loupe::imaging::verify(&cut)
        .expect_err("refused")
        .to_string();
    assert!(err.contains("cut.jpg"), "{err}");
    // Through `loupe add`, as a user adds them.
    let p = new_project(dir.path());
    let copy = dir.path().join("ll");
    std::fs::create_dir_all(&copy).expect("mkdir");
    for name in ["gray8", "rgb8", "gray16"] {
        std::fs::copy(
            fixtures.join(format!("{name}.jpg")),
            copy.join(format!("{name}.jpg")),
        )
        .expect("copy");
    }
    let report = ok_json(&p, &["add", s(&copy), "--json"]);
    assert_eq!(report["added"], 3, "{report}");
}
