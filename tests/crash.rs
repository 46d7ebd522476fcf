//! Killing Loupe at any moment leaves the project file consistent with every completed edit
//! present. Each test kills a real child process many times at pseudo-random moments.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use loupe::store::Project;
use uuid::Uuid;

use crate::support::{loupe, write_png};

/// A small deterministic generator, so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn init_project(dir: &std::path::Path) -> std::path::PathBuf {
    let project = dir.join("crash.loupe");
    let ok = loupe()
        .arg("init")
        .arg(&project)
        .status()
        .expect("run loupe init");
    assert!(ok.success());
    project
}

#[test]
fn killing_the_edit_loop_loses_no_completed_edit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = init_project(dir.path());
    write_png(&dir.path().join("img/a.png"), 64, 48, 1);
    assert!(
        loupe()
            .arg("-p")
            .arg(&project)
            .arg("add")
            .arg(dir.path().join("img"))
            .stdout(Stdio::null())
            .status()
            .expect("add")
            .success()
    );
    let mut rng = Lcg(7);
    // id -> last x reported durable
    let mut durable: HashMap<Uuid, f64> = HashMap::new();
    for round in 0..25 {
        let mut child = loupe()
            .arg("-p")
            .arg(&project)
            .args(["debug-edit-loop", "100000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn edit loop");
        let stdout = child.stdout.take().expect("stdout");
        let wait_ms = 20 + rng.next() % 120;
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => lines.push(l),
                    Err(_) => break,
                }
            }
            lines
        });
        std::thread::sleep(Duration::from_millis(wait_ms));
        child.kill().expect("kill");
        child.wait().expect("wait");
        let lines = reader.join().expect("reader");
        for line in &lines {
            let mut parts = line.split(' ');
            let (Some(id), Some(x)) = (parts.next(), parts.next()) else {
                continue;
            };
            let (Ok(id), Ok(x)) = (Uuid::parse_str(id), x.parse::<f64>()) else {
                continue;
            };
            durable.insert(id, x);
        }
        let p = Project::open(&project)
            .unwrap_or_else(|e| panic!("round {round}: cannot open after kill: {e}"));
        p.integrity_check()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        // Every edit reported done is there. (An edit may have committed after its line was
        // cut short by the kill, so the store may hold a newer x than the last one printed.)
        let all: HashMap<Uuid, f64> = p
            .all_annotations()
            .expect("annotations")
            .into_iter()
            .map(|a| (a.id, a.value.bbox.x))
            .collect();
        for (id, x) in &durable {
            let stored = all
                .get(id)
                .unwrap_or_else(|| panic!("round {round}: box {id} lost"));
            assert!(
                stored >= x,
                "round {round}: box {id} went back from x={x} to {stored}"
            );
        }
    }
    assert!(
        durable.len() > 25,
        "the edit loop should have made progress, made {}",
        durable.len()
    );
    let mut p = Project::open(&project).expect("open");
    assert_eq!(
        p.rebuild_current().expect("rebuild"),
        0,
        "cache and log disagree after kills"
    );
}

#[test]
fn killing_add_keeps_finished_chunks_and_a_rerun_completes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = init_project(dir.path());
    let images = dir.path().join("many");
    for i in 0..700 {
        write_png(
            &images.join(format!("sub{}/img{i:04}.png", i % 7)),
            32,
            24,
            i,
        );
    }
    let mut rng = Lcg(11);
    for round in 0..8 {
        let mut child = loupe()
            .arg("-p")
            .arg(&project)
            .arg("add")
            .arg(&images)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn add");
        std::thread::sleep(Duration::from_millis(10 + rng.next() % 150));
        let _ = child.kill();
        child.wait().expect("wait");
        let p = Project::open(&project).unwrap_or_else(|e| panic!("round {round}: {e}"));
        p.integrity_check()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let n = p.stats().expect("stats").images;
        assert!(n <= 700, "round {round}: {n} images");
    }
    let out = loupe()
        .arg("-p")
        .arg(&project)
        .args(["add", "--json"])
        .arg(&images)
        .output()
        .expect("add");
    assert!(out.status.success());
    let p = Project::open(&project).expect("open");
    assert_eq!(p.stats().expect("stats").images, 700);
    // A second run changes nothing.
    let out = loupe()
        .arg("-p")
        .arg(&project)
        .args(["add", "--json"])
        .arg(&images)
        .output()
        .expect("add");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["unchanged"], 700);
    assert_eq!(report["added"], 0);
}
