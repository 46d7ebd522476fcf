//! The data loop end to end: review states through the store, batches and audits through the
//! CLI, triage on planted cases, evaluation checked against pycocotools, agreement and stats.

use std::path::{Path, PathBuf};

use loupe::model::{AnnotationValue, BBox, BoxFlags, ReviewState, Role, Source};
use loupe::review;
use loupe::store::{Edit, ImageInput, NewRun, Project, RunImageTiming};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{fails, new_project, ok, ok_json, run, testdata};

// ------------------------------------------------------------------------------ helpers

/// Adds images without files (placeholders with a known size), returning their ids in order.
fn add_images(p: &mut Project, paths: &[&str], w: u32, h: u32) -> Vec<Uuid> {
    let mut bulk = p.bulk().expect("bulk");
    for path in paths {
        bulk.upsert_image(&ImageInput {
            path: (*path).to_owned(),
            width: w,
            height: h,
            ..ImageInput::default()
        })
        .expect("image");
    }
    bulk.commit().expect("commit");
    paths
        .iter()
        .map(|path| p.image_by_path(path).expect("query").expect("image").id)
        .collect()
}

fn human_box(p: &mut Project, image: Uuid, class: &str, b: [f64; 4], state: ReviewState) -> Uuid {
    let class = p.ensure_class(class).expect("class").id;
    let id = Uuid::now_v7();
    p.apply(&[Edit::Create {
        id,
        value: AnnotationValue {
            image,
            class,
            bbox: BBox::new(b[0], b[1], b[2], b[3]),
            source: Source::Human,
            state,
            flags: BoxFlags::default(),
            deleted: false,
            attributes: Default::default(),
        },
    }])
    .expect("create box");
    id
}

fn new_run(p: &mut Project, name: &str) -> Uuid {
    p.create_run(&NewRun {
        name: name.into(),
        kind: "test".into(),
        settings: "{}".into(),
        ..NewRun::default()
    })
    .expect("run")
}

fn propose(p: &mut Project, run: Uuid, image: Uuid, boxes: &[(&str, [f64; 4], f32)]) {
    let boxes: Vec<(String, BBox, f32)> = boxes
        .iter()
        .map(|(c, b, s)| ((*c).to_owned(), BBox::new(b[0], b[1], b[2], b[3]), *s))
        .collect();
    p.add_proposals(run, image, &boxes, RunImageTiming::default())
        .expect("proposals");
}

fn has_pycocotools() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import pycocotools"])
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the pycocotools reference can run; in CI its absence is a failure.
fn reference_available() -> bool {
    if has_pycocotools() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must have python3 with pycocotools (scripts/setup.sh installs it)"
    );
    eprintln!(
        "python3 with pycocotools not found: skipping the pycocotools parity check (run scripts/setup.sh)"
    );
    false
}

// ------------------------------------------------------------------------------ review states

#[test]
fn set_state_follows_roles_and_keeps_the_reason_in_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = new_project(dir.path());
    let mut p = Project::open(&path).expect("open");
    let img = add_images(&mut p, &["a.png"], 100, 100)[0];
    let run = new_run(&mut p, "m");
    propose(&mut p, run, img, &[("cat", [10.0, 10.0, 20.0, 20.0], 0.9)]);
    let proposal = p.annotations_for_image(img).expect("boxes")[0].id;

    p.switch_user("ann", Some(Role::Annotator)).expect("user");
    review::set_state(&mut p, proposal, ReviewState::Accepted, None).expect("annotator accepts");
    let err = review::set_state(&mut p, proposal, ReviewState::Approved, None)
        .expect_err("annotator cannot approve");
    assert!(
        err.to_string()
            .contains("an annotator cannot move a box from accepted to approved"),
        "{err}"
    );
    let drawn = human_box(
        &mut p,
        img,
        "dog",
        [50.0, 50.0, 10.0, 10.0],
        ReviewState::Submitted,
    );

    p.switch_user("rev", Some(Role::Reviewer)).expect("user");
    let err = review::set_state(&mut p, drawn, ReviewState::Returned, Some("  "))
        .expect_err("reason needed");
    assert!(err.to_string().contains("needs a reason"), "{err}");
    review::set_state(&mut p, drawn, ReviewState::Returned, Some("too loose")).expect("return");
    review::set_state(&mut p, proposal, ReviewState::Approved, None).expect("approve");
    let err = review::set_state(&mut p, proposal, ReviewState::Rejected, None)
        .expect_err("approved is final");
    assert!(err.to_string().contains("ground truth"), "{err}");

    let h = p.history(drawn).expect("history");
    let last = h.last().expect("revisions");
    assert_eq!(
        (last.author.as_str(), last.value.state, last.note.as_deref()),
        ("rev", ReviewState::Returned, Some("too loose"))
    );
    let h = p.history(proposal).expect("history");
    let trail: Vec<(&str, ReviewState)> = h
        .iter()
        .map(|r| (r.author.as_str(), r.value.state))
        .collect();
    assert_eq!(
        trail[1..],
        [
            ("ann", ReviewState::Accepted),
            ("rev", ReviewState::Approved)
        ]
    );

    // The edit hook refuses what set_state refuses, for raw edits too.
    p.switch_user("ann", None).expect("user");
    let mut value = p.annotation(proposal).expect("box").value;
    value.bbox.x += 3.0;
    let err = review::check_edits(
        &p,
        &[Edit::Update {
            id: proposal,
            value,
            note: None,
        }],
    )
    .expect_err("approved");
    assert!(err.to_string().contains(&proposal.to_string()), "{err}");
}

#[test]
fn review_set_works_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = new_project(dir.path());
    let drawn = {
        let mut p = Project::open(&path).expect("open");
        let img = add_images(&mut p, &["a.png"], 100, 100)[0];
        human_box(
            &mut p,
            img,
            "dog",
            [5.0, 5.0, 10.0, 10.0],
            ReviewState::Submitted,
        )
    };
    let id = drawn.to_string();
    let err = fails(
        &path,
        &["--user", "newbie", "review", "set", &id, "approved"],
    );
    assert!(
        err.contains("an annotator cannot move a box from submitted to approved"),
        "{err}"
    );
    // `--user` makes the named user current; a lead takes over again.
    ok(&path, &["user", "boss", "--role", "lead"]);
    let err = fails(&path, &["review", "set", &id, "returned"]);
    assert!(err.contains("needs a reason"), "{err}");
    ok(
        &path,
        &["review", "set", &id, "returned", "--reason", "wrong class"],
    );
    let h = ok_json(&path, &["history", &id, "--json"]);
    assert_eq!(h[1]["note"], "wrong class");
    // The text history names the class, the source and the state of every step.
    let text = ok(&path, &["history", &id]);
    assert!(text.starts_with(&format!("box {id}")), "{text}");
    let last = text.lines().last().expect("a line");
    for part in ["by boss", "returned", "dog", "human", "note: wrong class"] {
        assert!(last.contains(part), "{part:?} in {last}");
    }
    let err = fails(&path, &["history", &Uuid::now_v7().to_string()]);
    assert!(err.contains("no box"), "{err}");
    let table = ok_json(&path, &["review", "transitions", "--json"]);
    assert_eq!(table.as_array().expect("rules").len(), 26);
}

// ------------------------------------------------------------------------------ evaluation

/// How a generated evaluation case looks.
#[derive(Clone, Copy)]
struct Gen {
    seed: u64,
    images: usize,
    categories: i64,
    max_gt: usize,
    crowd_rate: f64,
    /// Extra random low-score detections on every third image (to pass 100 per image).
    flood: usize,
    /// Round scores to this many steps (creates ties), or 0 for distinct scores.
    score_steps: u32,
    /// Every image gets at least one detection (so a project's run covers every image).
    det_everywhere: bool,
    /// Detections of a category the GT file does not have, and a GT with id 0.
    quirks: bool,
}

fn rand_box(rng: &mut ChaCha8Rng, w: f64, h: f64) -> [f64; 4] {
    let (bw, bh) = match rng.random_range(0..3) {
        0 => (rng.random_range(3.0..30.0), rng.random_range(3.0..30.0)),
        1 => (rng.random_range(33.0..90.0), rng.random_range(33.0..90.0)),
        _ => (
            rng.random_range(100.0..300.0),
            rng.random_range(100.0..250.0),
        ),
    };
    let x = rng.random_range(0.0..(w - bw));
    let y = rng.random_range(0.0..(h - bh));
    round_box([x, y, bw, bh])
}

fn round_box(b: [f64; 4]) -> [f64; 4] {
    b.map(|v| (v * 100.0).round() / 100.0)
}

fn jitter(rng: &mut ChaCha8Rng, b: [f64; 4], w: f64, h: f64) -> [f64; 4] {
    let bw = (b[2] * rng.random_range(0.8..1.2)).max(1.0).min(w);
    let bh = (b[3] * rng.random_range(0.8..1.2)).max(1.0).min(h);
    let x = (b[0] + b[2] * rng.random_range(-0.15..0.15)).clamp(0.0, w - bw);
    let y = (b[1] + b[3] * rng.random_range(-0.15..0.15)).clamp(0.0, h - bh);
    round_box([x, y, bw, bh])
}

/// A COCO GT file and a results list with jittered, missed, confused and false detections,
/// crowd regions, all three size ranges and a category nobody detects.
fn generate(g: Gen) -> (Value, Value) {
    let mut rng = ChaCha8Rng::seed_from_u64(g.seed);
    let (w, h) = (640.0, 480.0);
    let mut images = Vec::new();
    let mut anns = Vec::new();
    let mut dets = Vec::new();
    let score = |rng: &mut ChaCha8Rng, lo: f64, hi: f64| -> f64 {
        let s: f64 = rng.random_range(lo..hi);
        if g.score_steps > 0 {
            (s * f64::from(g.score_steps)).round() / f64::from(g.score_steps)
        } else {
            (s * 1e6).round() / 1e6
        }
    };
    let mut next_id = if g.quirks { 0 } else { 1 };
    for i in 0..g.images {
        let image_id = 100 + i64::try_from(i).expect("small") * 3;
        images.push(json!({"id": image_id, "file_name": format!("img_{i:04}.png"), "width": 640, "height": 480}));
        let n = rng.random_range(0..=g.max_gt);
        for _ in 0..n {
            // The last category never has GT: a category with detections only.
            let cat = rng.random_range(1..g.categories);
            let b = rand_box(&mut rng, w, h);
            let crowd = rng.random_bool(g.crowd_rate);
            anns.push(
                json!({"id": next_id, "image_id": image_id, "category_id": cat, "bbox": b,
                             "area": b[2] * b[3], "iscrowd": i32::from(crowd)}),
            );
            next_id += 1;
            if crowd {
                for _ in 0..rng.random_range(0..4) {
                    let inner = [
                        b[0] + rng.random_range(0.0..b[2] / 2.0),
                        b[1] + rng.random_range(0.0..b[3] / 2.0),
                        b[2] / 3.0,
                        b[3] / 3.0,
                    ];
                    let s = score(&mut rng, 0.05, 0.9);
                    dets.push(json!({"image_id": image_id, "category_id": cat, "bbox": round_box(inner), "score": s}));
                }
                continue;
            }
            if rng.random_bool(0.8) {
                let c = if rng.random_bool(0.9) {
                    cat
                } else {
                    rng.random_range(1..=g.categories)
                };
                let s = score(&mut rng, 0.3, 1.0);
                dets.push(json!({"image_id": image_id, "category_id": c, "bbox": jitter(&mut rng, b, w, h), "score": s}));
                if rng.random_bool(0.2) {
                    // A duplicate detection: a false positive once the first one matched.
                    let s = score(&mut rng, 0.05, 0.8);
                    dets.push(json!({"image_id": image_id, "category_id": c, "bbox": jitter(&mut rng, b, w, h), "score": s}));
                }
            }
        }
        let fps = rng.random_range(0..3) + usize::from(g.det_everywhere);
        for _ in 0..fps {
            let c = rng.random_range(1..=g.categories);
            let s = score(&mut rng, 0.01, 0.7);
            dets.push(json!({"image_id": image_id, "category_id": c, "bbox": rand_box(&mut rng, w, h), "score": s}));
        }
        if g.flood > 0 && i % 3 == 0 {
            let c = rng.random_range(1..g.categories);
            for _ in 0..g.flood {
                let s = score(&mut rng, 0.01, 0.5);
                dets.push(json!({"image_id": image_id, "category_id": c, "bbox": rand_box(&mut rng, w, h), "score": s}));
            }
        }
        if g.quirks && i % 5 == 0 {
            dets.push(json!({"image_id": image_id, "category_id": 99, "bbox": [1, 1, 5, 5], "score": 0.99}));
        }
    }
    let categories: Vec<Value> = (1..=g.categories)
        .map(|c| json!({"id": c, "name": format!("class{c}")}))
        .collect();
    (
        json!({"images": images, "annotations": anns, "categories": categories}),
        Value::Array(dets),
    )
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec(v).expect("json")).expect("write");
}

/// pycocotools' twelve numbers through the shared reference script.
fn reference(gt: &Path, dt: &Path) -> Value {
    let script = testdata().join("eval/coco_map.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(gt)
        .arg(dt)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "coco_map.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("output");
    serde_json::from_str(last).expect("reference json")
}

const KEYS: [&str; 12] = [
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
];

fn assert_parity(case: &str, ours: &Value, theirs: &Value) {
    for k in KEYS {
        let a = ours[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{case}: no {k} in {ours}"));
        let b = theirs[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{case}: no {k} in {theirs}"));
        assert!(
            (a - b).abs() < 1e-4,
            "{case}: {k} is {a} in Loupe and {b} in pycocotools"
        );
    }
}

fn cases() -> Vec<(&'static str, Gen)> {
    let base = Gen {
        seed: 1,
        images: 40,
        categories: 4,
        max_gt: 12,
        crowd_rate: 0.08,
        flood: 0,
        score_steps: 0,
        det_everywhere: false,
        quirks: false,
    };
    vec![
        ("jitter", base),
        (
            "crowds",
            Gen {
                seed: 2,
                crowd_rate: 0.3,
                ..base
            },
        ),
        (
            "over-100-per-image",
            Gen {
                seed: 3,
                images: 12,
                flood: 130,
                ..base
            },
        ),
        (
            "tied-scores",
            Gen {
                seed: 4,
                score_steps: 10,
                ..base
            },
        ),
        (
            "missing-classes-and-quirks",
            Gen {
                seed: 5,
                categories: 6,
                max_gt: 3,
                quirks: true,
                ..base
            },
        ),
        (
            "dense",
            Gen {
                seed: 6,
                images: 15,
                max_gt: 60,
                categories: 3,
                ..base
            },
        ),
    ]
}

#[test]
fn eval_files_matches_pycocotools_on_generated_cases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let check = reference_available();
    let unused = dir.path().join("unused.loupe");
    for (name, g) in cases() {
        let (gt, dt) = generate(g);
        let gt_path = dir.path().join(format!("{name}-gt.json"));
        let dt_path = dir.path().join(format!("{name}-dt.json"));
        write_json(&gt_path, &gt);
        write_json(&dt_path, &dt);
        let ours = ok_json(
            &unused,
            &[
                "eval-files",
                gt_path.to_str().expect("utf8"),
                dt_path.to_str().expect("utf8"),
                "--json",
            ],
        );
        assert!(
            ours["AP"].as_f64().expect("AP") > 0.05,
            "{name}: a degenerate case: {}",
            ours["AP"]
        );
        if check {
            assert_parity(name, &ours, &reference(&gt_path, &dt_path));
        }
    }
}

#[test]
fn eval_files_per_class_ap_matches_pycocotools() {
    if !reference_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (gt, dt) = generate(cases()[0].1);
    let gt_path = dir.path().join("gt.json");
    let dt_path = dir.path().join("dt.json");
    write_json(&gt_path, &gt);
    write_json(&dt_path, &dt);
    let script = r#"
import sys, io, json, contextlib, numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[1]); dt = gt.loadRes(sys.argv[2])
    E = COCOeval(gt, dt, 'bbox'); E.evaluate(); E.accumulate()
p = E.eval['precision']
out = {}
for k, cid in enumerate(E.params.catIds):
    s = p[:, :, k, 0, 2]; s = s[s > -1]
    out[str(cid)] = {"ap": float(np.mean(s)) if s.size else -1.0, "curve": p[0, :, k, 0, 2].tolist()}
print(json.dumps(out))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&gt_path)
        .arg(&dt_path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Value = serde_json::from_slice(&out.stdout).expect("json");
    let unused = dir.path().join("unused.loupe");
    let ours = ok_json(
        &unused,
        &[
            "eval-files",
            gt_path.to_str().expect("utf8"),
            dt_path.to_str().expect("utf8"),
            "--json",
        ],
    );
    for c in ours["per_class"].as_array().expect("per class") {
        let id = c["id"].to_string();
        let a = c["ap"].as_f64().expect("ap");
        let b = theirs[&id]["ap"].as_f64().expect("ap");
        assert!((a - b).abs() < 1e-9, "class {id}: AP {a} vs {b}");
        let curve_a: Vec<f64> = c["precision50"]
            .as_array()
            .expect("curve")
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        let curve_b: Vec<f64> = theirs[&id]["curve"]
            .as_array()
            .expect("curve")
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        assert_eq!(curve_a.len(), 101);
        for (x, y) in curve_a.iter().zip(&curve_b) {
            assert!(
                (x - y).abs() < 1e-12,
                "class {id}: precision curve differs: {curve_a:?} vs {curve_b:?}"
            );
        }
    }
}

#[test]
fn eval_of_an_imported_run_matches_pycocotools_on_the_same_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let check = reference_available();
    let (gt, dt) = generate(Gen {
        seed: 11,
        images: 30,
        categories: 4,
        max_gt: 10,
        crowd_rate: 0.1,
        flood: 0,
        score_steps: 0,
        det_everywhere: true,
        quirks: false,
    });
    let gt_path = dir.path().join("gt.json");
    let dt_path = dir.path().join("dt.json");
    write_json(&gt_path, &gt);
    write_json(&dt_path, &dt);
    let p = new_project(dir.path());
    ok(
        &p,
        &[
            "import",
            "--format",
            "coco",
            gt_path.to_str().expect("utf8"),
            "--allow-missing",
        ],
    );
    ok(
        &p,
        &[
            "import",
            "--format",
            "coco-results",
            dt_path.to_str().expect("utf8"),
            "--gt",
            gt_path.to_str().expect("utf8"),
            "--run",
            "m1",
        ],
    );
    let ours = ok_json(&p, &["eval", "--run", "m1", "--json"]);
    let overall = &ours["overall"];
    assert_eq!(overall["images"], 30, "{}", overall["images"]);
    if check {
        assert_parity("project", overall, &reference(&gt_path, &dt_path));
    }
    // The same numbers when annotators have since edited the proposals: eval reads the
    // predictions' original values.
    {
        let mut project = Project::open(&p).expect("open");
        let run = project.run_by_name("m1").expect("run");
        let mut edits = Vec::new();
        for a in project.all_annotations().expect("boxes") {
            if a.value.source.run() == Some(run.id) {
                let mut value = a.value.clone();
                value.bbox.x += 7.0;
                value.state = ReviewState::Corrected;
                edits.push(Edit::Update {
                    id: a.id,
                    value,
                    note: None,
                });
            }
        }
        assert!(!edits.is_empty());
        project.apply(&edits).expect("edit proposals");
    }
    let again = ok_json(&p, &["eval", "--run", "m1", "--json"]);
    assert_eq!(again["overall"]["AP"], overall["AP"]);
}

#[test]
fn eval_reports_slices_and_compares_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = new_project(dir.path());
    {
        let mut p = Project::open(&path).expect("open");
        let imgs = add_images(
            &mut p,
            &["day1.png", "day2.png", "night1.png", "night2.png"],
            200,
            200,
        );
        for (i, &img) in imgs.iter().enumerate() {
            human_box(
                &mut p,
                img,
                "car",
                [10.0, 10.0, 50.0, 50.0],
                ReviewState::Approved,
            );
            human_box(
                &mut p,
                img,
                "person",
                [100.0, 100.0, 40.0, 80.0],
                ReviewState::Approved,
            );
            // Unreviewed labels are not ground truth.
            human_box(
                &mut p,
                img,
                "person",
                [150.0, 10.0, 30.0, 30.0],
                ReviewState::Submitted,
            );
            let key = if i < 2 { "day" } else { "night" };
            p.set_image_meta(img, "time", key).expect("meta");
        }
        let good = new_run(&mut p, "good");
        let bad = new_run(&mut p, "bad");
        for (i, &img) in imgs.iter().enumerate() {
            propose(
                &mut p,
                good,
                img,
                &[
                    ("car", [11.0, 10.0, 50.0, 50.0], 0.9),
                    ("person", [100.0, 100.0, 40.0, 80.0], 0.8),
                ],
            );
            // The bad run misses people at night and puts cars in the wrong place.
            let mut boxes = vec![("car", [60.0, 60.0, 50.0, 50.0], 0.9)];
            if i < 2 {
                boxes.push(("person", [100.0, 100.0, 40.0, 80.0], 0.8));
            }
            propose(&mut p, bad, img, &boxes);
        }
    }
    let e = ok_json(
        &path,
        &["eval", "--run", "good", "--slice", "time", "--json"],
    );
    assert!(
        (e["overall"]["AP"].as_f64().expect("AP") - 1.0).abs() < 1e-9,
        "{}",
        e["overall"]["AP"]
    );
    let slices = e["slices"].as_array().expect("slices");
    assert_eq!(slices.len(), 2);
    assert_eq!(slices[0]["slice"], "time=day");
    assert_eq!(slices[1]["eval"]["images"], 2);
    // A version frozen now keeps its GT when labels change later.
    ok(&path, &["version", "create", "v1"]);
    {
        let mut p = Project::open(&path).expect("open");
        let label = p
            .all_annotations()
            .expect("boxes")
            .into_iter()
            .find(|a| a.value.state == ReviewState::Approved)
            .expect("label");
        p.apply(&[Edit::Delete { id: label.id }]).expect("delete");
    }
    let now = ok_json(&path, &["eval", "--run", "good", "--json"]);
    let then = ok_json(
        &path,
        &["eval", "--run", "good", "--version", "v1", "--json"],
    );
    assert!(
        now["overall"]["AP"].as_f64() < Some(1.0),
        "{}",
        now["overall"]["AP"]
    );
    assert_eq!(then["overall"]["AP"].as_f64(), Some(1.0));
    assert_eq!(then["version"], "v1");
    let e = ok_json(
        &path,
        &["eval", "--run", "bad", "--slice", "time=night", "--json"],
    );
    let night = &e["slices"][0]["eval"];
    assert_eq!(night["AP"].as_f64(), Some(0.0));
    let c = ok_json(
        &path,
        &["eval", "--run", "good", "--compare", "bad", "--json"],
    );
    let per_class = c["per_class"].as_array().expect("classes");
    let car = per_class.iter().find(|d| d["class"] == "car").expect("car");
    assert_eq!(car["verdict"], "better");
    assert!(car["ap_delta"].as_f64().expect("delta") > 0.5, "{car}");
    let text = ok(&path, &["eval", "--run", "good", "--compare", "bad"]);
    assert!(text.contains("better"), "{text}");
}

// ------------------------------------------------------------------------------ triage

#[test]
fn triage_ranks_planted_problems_first_with_their_reasons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = new_project(dir.path());
    {
        let mut p = Project::open(&path).expect("open");
        let names = [
            "fine1.png",
            "fine2.png",
            "missing.png",
            "wrong.png",
            "unsure.png",
            "fine3.png",
        ];
        let imgs = add_images(&mut p, &names, 300, 300);
        let run = new_run(&mut p, "m");
        for &img in &imgs {
            // Every image: a labeled car the model finds.
            human_box(
                &mut p,
                img,
                "car",
                [10.0, 10.0, 60.0, 40.0],
                ReviewState::Approved,
            );
        }
        for (&img, name) in imgs.iter().zip(names) {
            let mut preds = vec![("car", [11.0, 10.0, 60.0, 40.0], 0.95)];
            match name {
                // A confident person nobody labeled.
                "missing.png" => preds.push(("person", [150.0, 100.0, 40.0, 100.0], 0.92)),
                // A dog labeled as a cat.
                "wrong.png" => {
                    human_box(
                        &mut p,
                        img,
                        "cat",
                        [200.0, 200.0, 50.0, 50.0],
                        ReviewState::Approved,
                    );
                    preds.push(("dog", [201.0, 200.0, 50.0, 50.0], 0.88));
                }
                // Several ambiguous, overlapping boxes that disagree on the class.
                "unsure.png" => {
                    preds.push(("cat", [100.0, 150.0, 50.0, 50.0], 0.45));
                    preds.push(("dog", [101.0, 151.0, 50.0, 50.0], 0.42));
                    preds.push(("person", [100.0, 149.0, 51.0, 50.0], 0.38));
                    preds.push(("cat", [220.0, 20.0, 30.0, 30.0], 0.35));
                }
                _ => {}
            }
            propose(&mut p, run, img, &preds);
        }
    }
    let ranked = ok_json(&path, &["triage", "--run", "m", "--json"]);
    let ranked = ranked.as_array().expect("list");
    assert_eq!(ranked.len(), 6);
    let top: Vec<&str> = ranked[..3]
        .iter()
        .map(|r| r["path"].as_str().expect("path"))
        .collect();
    let mut sorted = top.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        ["missing.png", "unsure.png", "wrong.png"],
        "ranking: {top:?}"
    );
    // The rest have nothing to flag: no signal, no flagged issue, a score far below the top.
    let weakest_top = ranked[..3]
        .iter()
        .map(|r| r["score"].as_f64().expect("score"))
        .fold(1.0, f64::min);
    for r in &ranked[3..] {
        assert_eq!(r["signal_score"].as_f64(), Some(0.0), "{r}");
        assert_eq!(r["flagged"], 0, "{r}");
        let score = r["score"].as_f64().expect("score");
        assert!(score < 0.05 && score * 4.0 < weakest_top, "{r}");
    }
    let by_path = |name: &str| ranked.iter().find(|r| r["path"] == name).expect("ranked");
    let kinds = |name: &str| -> Vec<String> {
        by_path(name)["signals"]
            .as_array()
            .expect("signals")
            .iter()
            .map(|s| s["kind"].as_str().expect("kind").to_owned())
            .collect()
    };
    assert_eq!(kinds("missing.png"), ["missing_label"]);
    let missing = &by_path("missing.png")["signals"][0];
    assert_eq!(missing["class"], "person");
    assert!(
        missing["reason"]
            .as_str()
            .expect("reason")
            .contains("label is probably missing")
    );
    assert_eq!(kinds("wrong.png"), ["wrong_class"]);
    let wrong = &by_path("wrong.png")["signals"][0];
    assert_eq!(
        (wrong["class"].as_str(), wrong["other_class"].as_str()),
        (Some("cat"), Some("dog"))
    );
    let unsure = kinds("unsure.png");
    assert_eq!(unsure[0], "class_confusion", "{unsure:?}");
    assert_eq!(
        unsure.iter().filter(|k| *k == "uncertain").count(),
        4,
        "{unsure:?}"
    );
    assert_eq!(by_path("unsure.png")["counts"]["uncertain"], 4);
    // --limit and the text form.
    let text = ok(&path, &["triage", "--run", "m", "--limit", "2"]);
    assert!(
        text.contains(" 1. ") && text.contains(" 2. ") && !text.contains(" 3. "),
        "{text}"
    );
}

// ------------------------------------------------------------------------------ batches and audits

/// 30 images with a run's proposals; alice accepts those on images 0–19, bob on 20–29.
fn annotated_project(dir: &Path) -> PathBuf {
    let path = new_project(dir);
    let mut p = Project::open(&path).expect("open");
    let names: Vec<String> = (0..30).map(|i| format!("img_{i:02}.png")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let imgs = add_images(&mut p, &refs, 200, 200);
    let run = new_run(&mut p, "m");
    for &img in &imgs {
        propose(
            &mut p,
            run,
            img,
            &[
                ("car", [10.0, 10.0, 40.0, 40.0], 0.9),
                ("car", [100.0, 100.0, 40.0, 40.0], 0.8),
            ],
        );
    }
    p.switch_user("boss", Some(Role::Lead)).expect("lead");
    for (i, &img) in imgs.iter().enumerate() {
        let who = if i < 20 { "alice" } else { "bob" };
        p.switch_user(who, Some(Role::Annotator))
            .expect("annotator");
        let ids: Vec<Uuid> = p
            .annotations_for_image(img)
            .expect("boxes")
            .iter()
            .map(|a| a.id)
            .collect();
        review::set_states(&mut p, &ids, ReviewState::Accepted, None).expect("accept");
    }
    p.switch_user("boss", None).expect("lead");
    path
}

fn paths_of(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("list")
        .iter()
        .map(|i| i["path"].as_str().expect("path").to_owned())
        .collect()
}

#[test]
fn batches_are_made_assigned_submitted_audited_and_returned_failed_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = annotated_project(dir.path());

    // Creating: by filter, then seeded samples that reproduce.
    let b = ok_json(
        &path,
        &["batch", "create", "b1", "--path", "img_", "--json"],
    );
    assert_eq!(b["images"], 30);
    let err = fails(&path, &["batch", "create", "b2"]);
    assert!(
        err.contains("already in a batch") && err.contains("--allow-overlap"),
        "{err}"
    );
    ok(
        &path,
        &[
            "batch",
            "create",
            "s1",
            "--sample",
            "5",
            "--seed",
            "3",
            "--allow-overlap",
        ],
    );
    ok(
        &path,
        &[
            "batch",
            "create",
            "s2",
            "--sample",
            "5",
            "--seed",
            "3",
            "--allow-overlap",
        ],
    );
    ok(
        &path,
        &[
            "batch",
            "create",
            "s3",
            "--sample",
            "5",
            "--seed",
            "4",
            "--allow-overlap",
        ],
    );
    let s1 = paths_of(&ok_json(&path, &["batch", "show", "s1", "--json"])["images"]);
    let s2 = paths_of(&ok_json(&path, &["batch", "show", "s2", "--json"])["images"]);
    let s3 = paths_of(&ok_json(&path, &["batch", "show", "s3", "--json"])["images"]);
    assert_eq!(s1.len(), 5);
    assert_eq!(s1, s2, "the same seed draws the same images");
    assert_ne!(s1, s3);
    let list = ok_json(&path, &["batch", "list", "--json"]);
    assert_eq!(list.as_array().expect("batches").len(), 4);

    // Assigning and submitting: only the assignee submits; only a lead audits.
    ok(&path, &["batch", "assign", "b1", "alice"]);
    let err = fails(&path, &["--user", "bob", "batch", "submit", "b1"]);
    assert!(err.contains("assigned to alice"), "{err}");
    ok(&path, &["--user", "alice", "batch", "submit", "b1"]);
    let err = fails(&path, &["audit", "start", "b1"]);
    assert!(err.contains("only a lead"), "{err}");

    // The audit: 20% per annotator (alice 20 images → 4, bob 10 → 2), topped up to 8.
    let args = [
        "--user",
        "boss",
        "audit",
        "start",
        "b1",
        "--percent",
        "20",
        "--min",
        "8",
        "--seed",
        "42",
        "--json",
    ];
    let audit = ok_json(&path, &args);
    let again = ok_json(&path, &args);
    assert_eq!(
        audit["items"], again["items"],
        "the same seed samples the same images"
    );
    let other = ok_json(
        &path,
        &[
            "audit",
            "start",
            "b1",
            "--percent",
            "20",
            "--min",
            "8",
            "--seed",
            "43",
            "--json",
        ],
    );
    assert_ne!(audit["items"], other["items"]);
    let audit = ok_json(&path, &args);
    let items = audit["items"].as_array().expect("items");
    assert_eq!(items.len(), 8);
    let strata: Vec<(String, u64, u64)> = audit["strata"]
        .as_array()
        .expect("strata")
        .iter()
        .map(|s| {
            (
                s["annotator"].as_str().expect("name").to_owned(),
                s["images"].as_u64().expect("n"),
                s["sampled"].as_u64().expect("n"),
            )
        })
        .collect();
    assert_eq!(
        strata,
        [("alice".to_owned(), 20, 5), ("bob".to_owned(), 10, 3)]
    );
    for it in items {
        let n: usize = it["path"].as_str().expect("path")[4..6]
            .parse()
            .expect("index");
        assert_eq!(
            it["annotator"],
            if n < 20 { "alice" } else { "bob" },
            "{it}"
        );
    }

    // Marking and deciding.
    let alice_items: Vec<&str> = items
        .iter()
        .filter(|i| i["annotator"] == "alice")
        .map(|i| i["path"].as_str().expect("path"))
        .collect();
    let failed = [alice_items[0], alice_items[1]];
    ok(
        &path,
        &[
            "audit",
            "mark",
            "b1",
            failed[1],
            "fail",
            "--comment",
            "box too loose",
        ],
    );
    ok(
        &path,
        &[
            "audit",
            "mark",
            "b1",
            failed[0],
            "fail",
            "--comment",
            "missed a car",
        ],
    );
    let err = fails(&path, &["audit", "decide", "b1", "accept"]);
    assert!(
        err.contains("6 of the 8 sampled images") && err.contains("not marked"),
        "{err}"
    );
    let outsider = (0..30)
        .map(|i| format!("img_{i:02}.png"))
        .find(|p| !items.iter().any(|it| it["path"] == p.as_str()))
        .expect("unsampled");
    let err = fails(&path, &["audit", "mark", "b1", &outsider, "pass"]);
    assert!(err.contains("not in the audit sample"), "{err}");
    for it in items {
        let p = it["path"].as_str().expect("path");
        if !failed.contains(&p) {
            ok(&path, &["audit", "mark", "b1", p, "pass"]);
        }
    }
    let r = ok_json(&path, &["audit", "decide", "b1", "return", "--json"]);
    assert_eq!(
        (r["failed_images"].as_u64(), r["boxes_changed"].as_u64()),
        (Some(2), Some(4))
    );
    assert_eq!(r["batch"]["state"], "returned");

    // Back with alice: failed images first, in audit order, with the comments.
    let show = ok_json(&path, &["batch", "show", "b1", "--json"]);
    let images = show["images"].as_array().expect("images");
    let first: Vec<&str> = images[..2]
        .iter()
        .map(|i| i["path"].as_str().expect("path"))
        .collect();
    assert_eq!(first, failed, "failed images come first, in audit order");
    assert_eq!(images[0]["comment"], "missed a car");
    assert_eq!(images[0]["returned"], 2);
    let rest = paths_of(&Value::Array(images[2..].to_vec()));
    let mut sorted = rest.clone();
    sorted.sort();
    assert_eq!(rest, sorted, "the other images keep the batch order");
    let text = ok(&path, &["batch", "show", "b1"]);
    assert!(
        text.contains("FAIL") && text.contains("missed a car"),
        "{text}"
    );

    // Alice fixes the returned boxes and resubmits; round 2 passes and approves everything.
    {
        let mut p = Project::open(&path).expect("open");
        p.switch_user("alice", None).expect("alice");
        let returned: Vec<Uuid> = p
            .all_annotations()
            .expect("boxes")
            .into_iter()
            .filter(|a| a.value.state == ReviewState::Returned)
            .map(|a| a.id)
            .collect();
        assert_eq!(returned.len(), 4);
        let h = p.history(returned[0]).expect("history");
        assert!(
            h.last()
                .and_then(|r| r.note.as_deref())
                .is_some_and(|n| n.contains("audit of batch b1")),
            "{h:?}"
        );
        review::set_states(&mut p, &returned, ReviewState::Corrected, None).expect("fix");
    }
    ok(&path, &["--user", "alice", "batch", "submit", "b1"]);
    let audit = ok_json(
        &path,
        &[
            "--user",
            "boss",
            "audit",
            "start",
            "b1",
            "--percent",
            "10",
            "--min",
            "3",
            "--seed",
            "1",
            "--json",
        ],
    );
    assert_eq!(audit["round"], 2);
    for it in audit["items"].as_array().expect("items") {
        ok(
            &path,
            &[
                "audit",
                "mark",
                "b1",
                it["path"].as_str().expect("path"),
                "pass",
            ],
        );
    }
    let err = fails(&path, &["audit", "decide", "b1", "return"]);
    assert!(err.contains("no sampled image"), "{err}");
    let r = ok_json(&path, &["audit", "decide", "b1", "accept", "--json"]);
    assert_eq!(r["boxes_changed"], 60);
    let stats = ok_json(&path, &["stats", "--json"]);
    let per_state = stats["boxes_per_state"].as_array().expect("states");
    assert_eq!(per_state, &vec![json!(["approved", 60])], "{stats}");

    // The dashboard: audit failures, approvals and returns per annotator.
    let stats = ok_json(&path, &["review", "stats", "--json"]);
    let alice = stats
        .as_array()
        .expect("users")
        .iter()
        .find(|s| s["user"] == "alice")
        .expect("alice");
    assert_eq!(alice["images"], 20);
    assert_eq!(alice["audit_failures"], 2);
    assert_eq!(alice["proposals_accepted"], 40);
    assert_eq!(alice["boxes_corrected"], 4);
    assert_eq!(alice["returned"], 4);
    assert_eq!(alice["approved"], 40);
    let bob = stats
        .as_array()
        .expect("users")
        .iter()
        .find(|s| s["user"] == "bob")
        .expect("bob");
    assert_eq!(bob["approval_rate"], 1.0);
    assert_eq!(bob["audit_failures"], 0);
}

#[test]
fn images_per_hour_count_active_time_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = new_project(dir.path());
    let mut p = Project::open(&path).expect("open");
    let imgs = add_images(&mut p, &["a.png", "b.png", "c.png", "d.png"], 100, 100);
    let run = new_run(&mut p, "m");
    for &img in &imgs {
        propose(&mut p, run, img, &[("car", [1.0, 1.0, 20.0, 20.0], 0.9)]);
    }
    p.switch_user("alice", Some(Role::Annotator))
        .expect("alice");
    for &img in &imgs {
        let id = p.annotations_for_image(img).expect("boxes")[0].id;
        review::set_state(&mut p, id, ReviewState::Accepted, None).expect("accept");
    }
    // Spread alice's four decisions over time: a minute apart, then a 20-minute break.
    let base_ms = loupe::store::now_ms() + 3_600_000;
    let offsets_ms = [0, 60_000, 120_000, 120_000 + 20 * 60_000];
    let db = rusqlite::Connection::open(p.path()).expect("open");
    for (i, off) in offsets_ms.iter().enumerate() {
        db.execute(
                "UPDATE revisions SET hlc=?1 WHERE seq=(SELECT seq FROM revisions WHERE state='accepted' ORDER BY seq LIMIT 1 OFFSET ?2)",
                rusqlite::params![(base_ms + off) << 16, i64::try_from(i).expect("small")],
            )
            .expect("retime");
    }
    let stats = review::annotator_stats(&p).expect("stats");
    let alice = stats.iter().find(|s| s.user == "alice").expect("alice");
    // Active: 60 s + 60 s + 5 min (the break is capped) = 7 minutes for 4 images.
    let expected = 4.0 / (7.0 / 60.0);
    assert!(
        (alice.images_per_hour.expect("rate") - expected).abs() < 1e-9,
        "{alice:?}"
    );
    assert_eq!(alice.proposals_accepted, 4);
    assert_eq!(alice.approval_rate, None);
}

/// The dashboard counts what stands, not every key press: an accept that was undone and
/// redone is one accept, a person who accepts then rejects a box rejected it, a box drawn and
/// deleted again was not drawn (the app's undo stores the box back as it was).
#[test]
fn annotator_counts_are_net_of_undone_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = new_project(dir.path());
    let mut p = Project::open(&path).expect("open");
    let imgs = add_images(&mut p, &["a.png", "b.png", "c.png"], 100, 100);
    let run = new_run(&mut p, "m");
    for &img in &imgs {
        propose(&mut p, run, img, &[("car", [1.0, 1.0, 20.0, 20.0], 0.9)]);
    }
    p.switch_user("alice", Some(Role::Annotator))
        .expect("alice");
    let set = |p: &mut Project, img: Uuid, state: ReviewState| {
        let a = p.annotations_for_image(img).expect("boxes")[0].clone();
        let mut value = a.value;
        value.state = state;
        p.apply(&[Edit::Update {
            id: a.id,
            value,
            note: None,
        }])
        .expect("update");
    };
    // a: accept, undo, accept again (redo).
    set(&mut p, imgs[0], ReviewState::Accepted);
    set(&mut p, imgs[0], ReviewState::Proposed);
    set(&mut p, imgs[0], ReviewState::Accepted);
    // b: accept, then change of mind.
    set(&mut p, imgs[1], ReviewState::Accepted);
    set(&mut p, imgs[1], ReviewState::Rejected);
    // c: accept, undo.
    set(&mut p, imgs[2], ReviewState::Accepted);
    set(&mut p, imgs[2], ReviewState::Proposed);
    // A box drawn on c and deleted again (undo of the drawing).
    let drawn = human_box(
        &mut p,
        imgs[2],
        "car",
        [50.0, 50.0, 10.0, 10.0],
        ReviewState::Submitted,
    );
    p.apply(&[Edit::Delete { id: drawn }]).expect("delete");
    // One more drawn box that stays.
    human_box(
        &mut p,
        imgs[1],
        "car",
        [60.0, 60.0, 10.0, 10.0],
        ReviewState::Submitted,
    );
    let stats = review::annotator_stats(&p).expect("stats");
    let alice = stats.iter().find(|s| s.user == "alice").expect("alice");
    assert_eq!(
        (
            alice.proposals_accepted,
            alice.proposals_rejected,
            alice.boxes_drawn
        ),
        (1, 1, 1),
        "{alice:?}"
    );
}

/// Evaluate says what it counts: with nothing approved it refuses (naming the way out), and
/// "every label" counts only images someone has labelled or reviewed, never an image whose
/// proposals nobody looked at (its predictions would all be false positives).
#[test]
fn eval_counts_reviewed_images_only_and_says_when_nothing_is_approved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = new_project(dir.path());
    {
        let mut p = Project::open(&path).expect("open");
        let imgs = add_images(&mut p, &["a.png", "b.png"], 100, 100);
        let run = new_run(&mut p, "m");
        for &img in &imgs {
            propose(&mut p, run, img, &[("car", [1.0, 1.0, 20.0, 20.0], 0.9)]);
        }
        let id = p.annotations_for_image(imgs[0]).expect("boxes")[0].id;
        review::set_state(&mut p, id, ReviewState::Accepted, None).expect("accept");
    }
    let err = fails(&path, &["eval", "--run", "m"]);
    assert!(
        err.contains("no approved label") && err.contains("--all-labels"),
        "{err}"
    );
    let e = ok_json(&path, &["eval", "--run", "m", "--all-labels", "--json"]);
    assert_eq!(e["overall"]["images"], 1, "{e}");
    assert_eq!(e["overall"]["AP"], 1.0, "{e}");
    assert!(
        e["coverage"]
            .as_str()
            .is_some_and(|c| c.contains("1 not yet looked at")),
        "{e}"
    );
}

// ------------------------------------------------------------------------------ metadata and tags

#[test]
fn metadata_from_csv_and_json_drives_filters_slices_and_triage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = new_project(dir.path());
    {
        let mut p = Project::open(&path).expect("open");
        let imgs = add_images(
            &mut p,
            &["cam1/a.png", "cam1/b.png", "cam2/c.png", "cam2/a.png"],
            100,
            100,
        );
        let run = new_run(&mut p, "m");
        for &img in &imgs {
            propose(&mut p, run, img, &[("car", [1.0, 1.0, 20.0, 20.0], 0.9)]);
        }
    }
    let csv = dir.path().join("meta.csv");
    std::fs::write(
        &csv,
        "path,weather,time\r\ncam1/a.png,rain,day\r\nb.png,\"sun, hazy\",night\r\nnope.png,rain,day\r\n./cam2/c.png,rain,\r\n",
    )
    .expect("write");
    let r = ok_json(
        &path,
        &["meta", "import", csv.to_str().expect("utf8"), "--json"],
    );
    assert_eq!(
        (
            r["records"].as_u64(),
            r["images"].as_u64(),
            r["values_set"].as_u64()
        ),
        (Some(4), Some(3), Some(5))
    );
    assert_eq!(r["warnings"][0]["kind"], "unknown_image");
    assert!(
        r["warnings"][0]["location"]
            .as_str()
            .expect("loc")
            .ends_with("meta.csv:4"),
        "{r}"
    );
    // A bare file name that two images share is ambiguous.
    let json_map = dir.path().join("meta.json");
    std::fs::write(&json_map, r#"{"cam2/a.png": {"weather": "snow", "lux": 3}, "a.png": {"time": "day"}, "cam1/a.png": {"time": null}}"#).expect("write");
    let r = ok_json(
        &path,
        &["meta", "import", json_map.to_str().expect("utf8"), "--json"],
    );
    assert_eq!(r["values_removed"], 1);
    assert!(
        r["warnings"][0]["message"]
            .as_str()
            .expect("msg")
            .contains("matches 2 images"),
        "{r}"
    );
    let json_list = dir.path().join("list.json");
    std::fs::write(
        &json_list,
        r#"[{"file_name": "cam2/a.png", "time": "night"}, {"path": "cam2/c.png", "time": "day"}]"#,
    )
    .expect("write");
    ok(
        &path,
        &["meta", "import", json_list.to_str().expect("utf8")],
    );
    let keys = ok_json(&path, &["meta", "keys", "--json"]);
    let weather = keys
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["key"] == "weather")
        .expect("weather");
    assert_eq!(
        weather["values"],
        json!([{"value": "rain", "images": 2}, {"value": "snow", "images": 1}, {"value": "sun, hazy", "images": 1}])
    );
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "name,weather\na.png,rain\n").expect("write");
    let err = fails(&path, &["meta", "import", bad.to_str().expect("utf8")]);
    assert!(err.contains("bad.csv:1"), "{err}");

    // Tags by path; filters and slices see metadata and tags.
    ok(&path, &["tag", "cam2/c.png", "blurry"]);
    ok(&path, &["tag", "b.png", "blurry"]);
    ok(&path, &["tag", "b.png", "blurry", "--remove"]);
    let b = ok_json(
        &path,
        &[
            "batch",
            "create",
            "rainy",
            "--meta",
            "weather=rain",
            "--json",
        ],
    );
    assert_eq!(b["images"], 2);
    let b = ok_json(
        &path,
        &[
            "batch",
            "create",
            "blurry",
            "--tag",
            "blurry",
            "--allow-overlap",
            "--json",
        ],
    );
    assert_eq!(b["images"], 1);
    let t = ok_json(
        &path,
        &[
            "triage",
            "--run",
            "m",
            "--slice",
            "tag:blurry",
            "--include-unreviewed",
            "--json",
        ],
    );
    assert_eq!(paths_of(&t), ["cam2/c.png"]);
    let t = ok_json(
        &path,
        &[
            "triage",
            "--run",
            "m",
            "--slice",
            "time=night",
            "--include-unreviewed",
            "--json",
        ],
    );
    assert_eq!(paths_of(&t), ["cam1/b.png", "cam2/a.png"]);
    // Without the flag, images nobody has labelled or reviewed are left out, and it says so.
    let out = run(&path, &["triage", "--run", "m", "--json"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("4 image(s) the run covered have neither labels nor a review yet"),
        "{said}"
    );
}

// ------------------------------------------------------------------------------ agreement

#[test]
fn agreement_matches_boxes_of_two_people_per_class() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = new_project(dir.path());
    {
        let mut p = Project::open(&path).expect("open");
        let imgs = add_images(&mut p, &["shared.png", "alone.png"], 300, 300);
        p.switch_user("alice", Some(Role::Annotator))
            .expect("alice");
        for x in [0.0, 60.0, 120.0] {
            human_box(
                &mut p,
                imgs[0],
                "car",
                [x, 0.0, 50.0, 50.0],
                ReviewState::Submitted,
            );
        }
        human_box(
            &mut p,
            imgs[1],
            "car",
            [0.0, 0.0, 50.0, 50.0],
            ReviewState::Submitted,
        );
        p.switch_user("bob", Some(Role::Annotator)).expect("bob");
        human_box(
            &mut p,
            imgs[0],
            "car",
            [2.0, 0.0, 50.0, 50.0],
            ReviewState::Submitted,
        );
        human_box(
            &mut p,
            imgs[0],
            "car",
            [60.0, 3.0, 50.0, 50.0],
            ReviewState::Submitted,
        );
        // Bob calls alice's third car a truck.
        human_box(
            &mut p,
            imgs[0],
            "truck",
            [121.0, 0.0, 50.0, 50.0],
            ReviewState::Submitted,
        );
    }
    let r = ok_json(&path, &["review", "agreement", "--json"]);
    assert_eq!(r["shared_images"], 1);
    let pair = &r["pairs"][0];
    assert_eq!(
        (pair["a"].as_str(), pair["b"].as_str()),
        (Some("alice"), Some("bob"))
    );
    assert_eq!(
        (
            pair["a_boxes"].as_u64(),
            pair["b_boxes"].as_u64(),
            pair["matched"].as_u64()
        ),
        (Some(3), Some(3), Some(2))
    );
    assert_eq!(pair["class_conflicts"], 1);
    assert_eq!(pair["confusions"], json!([["car", "truck", 1]]));
    let car = pair["per_class"]
        .as_array()
        .expect("classes")
        .iter()
        .find(|c| c["class"] == "car")
        .expect("car");
    assert!(
        (car["f1"].as_f64().expect("f1") - 0.8).abs() < 1e-12,
        "{car}"
    );
    let text = ok(&path, &["review", "agreement"]);
    assert!(text.contains("alice & bob"), "{text}");
}

#[test]
fn a_batch_can_be_reviewed_least_certain_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = new_project(dir.path());
    {
        let mut p = Project::open(&path).expect("open");
        let names = ["u_a.png", "u_b.png", "u_c.png", "u_d.png", "u_e.png"];
        let imgs = add_images(&mut p, &names, 200, 200);
        let run = new_run(&mut p, "m");
        // a: sure (0.95); b: nothing found; c: 0.6 with another box near 0.5; d: 0.6 alone;
        // e: the least sure (0.3).
        let scores: [&[f32]; 5] = [&[0.95], &[], &[0.6, 0.55], &[0.6], &[0.3]];
        for (img, scores) in imgs.iter().zip(scores) {
            let boxes: Vec<(&str, [f64; 4], f32)> = scores
                .iter()
                .enumerate()
                .map(|(i, s)| ("car", [10.0 + 50.0 * i as f64, 10.0, 40.0, 40.0], *s))
                .collect();
            propose(&mut p, run, *img, &boxes);
        }
        p.switch_user("boss", Some(Role::Lead)).expect("lead");
        p.switch_user("ann", Some(Role::Annotator))
            .expect("annotator");
        p.switch_user("boss", None).expect("lead");
    }
    ok(&path, &["batch", "create", "u", "--path", "u_"]);
    let shown = ok_json(&path, &["batch", "show", "u", "--json"]);
    assert_eq!(shown["batch"]["queue_order"], "batch");
    assert_eq!(
        paths_of(&shown["images"]),
        ["u_a.png", "u_b.png", "u_c.png", "u_d.png", "u_e.png"]
    );
    // An annotator who is not the assignee cannot change it; the lead can.
    let err = fails(
        &path,
        &["--user", "ann", "batch", "order", "u", "uncertainty"],
    );
    assert!(err.contains("only a lead or its assignee"), "{err}");
    let said = ok(
        &path,
        &["--user", "boss", "batch", "order", "u", "uncertainty"],
    );
    assert!(said.contains("uncertainty order"), "{said}");
    let shown = ok_json(&path, &["batch", "show", "u", "--json"]);
    assert_eq!(shown["batch"]["queue_order"], "uncertainty");
    assert_eq!(
        paths_of(&shown["images"]),
        ["u_e.png", "u_c.png", "u_d.png", "u_a.png", "u_b.png"]
    );
    assert_eq!(shown["images"][1]["near_threshold"], 2);
    assert!(shown["images"][4].get("top_score").is_none());
    // The assignee may choose too.
    ok(&path, &["--user", "boss", "batch", "assign", "u", "ann"]);
    ok(&path, &["--user", "ann", "batch", "order", "u", "batch"]);
    let list = ok_json(&path, &["batch", "list", "--json"]);
    assert_eq!(list[0]["queue_order"], "batch");
}
