//! Evaluating a model run inside a project: the run's predictions (each at its original model
//! value, before anyone edited it) against a version's approved labels, overall and per slice,
//! and the comparison of two runs.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::eval::{self, Category, CocoEval, DtBox, EvalInput, GtBox};
use super::{Result, ReviewError};
use crate::store::{GtStates, Project, RunInfo, SliceRows};

/// A subset of images to evaluate on (or to triage).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Slice {
    /// Images whose metadata `key` is `value`; with no value, one slice per value of `key`.
    Meta { key: String, value: Option<String> },
    /// Images with a tag.
    Tag { tag: String },
}

impl Slice {
    /// Parses `key=value`, `key` (every value of the key) or `tag:NAME`.
    pub fn parse(s: &str) -> Result<Slice> {
        let s = s.trim();
        if let Some(tag) = s.strip_prefix("tag:") {
            if tag.is_empty() {
                return Err(ReviewError::Invalid(
                    "tag: needs a tag name, e.g. tag:night".into(),
                ));
            }
            return Ok(Slice::Tag {
                tag: tag.to_owned(),
            });
        }
        match s.split_once('=') {
            Some((k, _)) if k.trim().is_empty() => Err(ReviewError::Invalid(format!(
                "{s:?}: a slice is KEY=VALUE, KEY or tag:NAME"
            ))),
            Some((k, v)) => Ok(Slice::Meta {
                key: k.trim().to_owned(),
                value: Some(v.trim().to_owned()),
            }),
            None if s.is_empty() => Err(ReviewError::Invalid(
                "empty slice: use KEY=VALUE, KEY or tag:NAME".into(),
            )),
            None => Ok(Slice::Meta {
                key: s.to_owned(),
                value: None,
            }),
        }
    }

    /// The concrete slices this one stands for, each with its label and image row ids.
    pub(crate) fn expand(&self, p: &Project) -> Result<Vec<(String, HashSet<i64>)>> {
        let rows = p.slice_rows(match self {
            Slice::Tag { tag } => SliceRows::Tag(tag),
            Slice::Meta {
                key,
                value: Some(value),
            } => SliceRows::MetaValue(key, value),
            Slice::Meta { key, value: None } => SliceRows::MetaKey(key),
        })?;
        let mut out: BTreeMap<String, HashSet<i64>> = BTreeMap::new();
        for (label, image) in rows {
            out.entry(label).or_default().insert(image);
        }
        if out.is_empty() {
            // A named slice with no image is still reported (as empty), so typos are visible.
            let label = match self {
                Slice::Tag { tag } => format!("tag:{tag}"),
                Slice::Meta {
                    key,
                    value: Some(v),
                } => format!("{key}={v}"),
                Slice::Meta { key, value: None } => format!("{key}=*"),
            };
            out.insert(label, HashSet::new());
        }
        Ok(out.into_iter().collect())
    }
}

/// Which labels count as ground truth.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroundTruth {
    /// Boxes in state `approved` (the default).
    #[default]
    Approved,
    /// Every label (accepted, corrected, submitted, approved, returned), on the images someone
    /// has reviewed only: an image nobody looked at has proposals, not "no objects", and would
    /// turn every prediction on it into a false positive.
    AllLabels,
}

/// What to evaluate.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EvalOptions {
    /// The run's name (or id).
    pub run: String,
    /// The version whose labels are the GT; `None` (or `current`) for the live state.
    pub version: Option<String>,
    pub slices: Vec<Slice>,
    pub ground_truth: GroundTruth,
}

/// The evaluation of one slice.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SliceEval {
    pub slice: String,
    pub eval: CocoEval,
}

/// The evaluation of a run: overall and per slice.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunEval {
    pub run: String,
    /// Which images were evaluated and why (the run's coverage).
    pub coverage: String,
    pub version: String,
    pub ground_truth: GroundTruth,
    pub overall: CocoEval,
    pub slices: Vec<SliceEval>,
}

/// How one class compares between two runs (`a` minus `b`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassDelta {
    pub class: String,
    pub ap_a: f64,
    pub ap_b: f64,
    /// `ap_a - ap_b`; `None` when either is absent (-1).
    pub ap_delta: Option<f64>,
    pub ap50_a: f64,
    pub ap50_b: f64,
    pub ap50_delta: Option<f64>,
    /// `better`, `worse` or `same` (for run a, within 0.001 AP), or `n/a`.
    pub verdict: &'static str,
}

/// Two runs evaluated on the same images against the same labels.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunComparison {
    pub a: RunEval,
    pub b: RunEval,
    /// Summary metric → (a, b, a − b).
    pub summary: Vec<(String, f64, f64, f64)>,
    pub per_class: Vec<ClassDelta>,
}

/// The name that stands for the live state wherever a version is expected.
const CURRENT: &str = "current";

/// Everything a run evaluation needs, read once from the project.
struct Material {
    categories: Vec<Category>,
    gts: Vec<GtBox>,
    dts: Vec<DtBox>,
    images: HashSet<i64>,
    coverage: String,
}

fn gt_labels(p: &Project, version: Option<&str>, gt: GroundTruth) -> Result<Vec<GtBox>> {
    let states = match gt {
        GroundTruth::Approved => GtStates::Approved,
        GroundTruth::AllLabels => GtStates::AllLabels,
    };
    let pos: Option<i64> = match version {
        None | Some(CURRENT) => None,
        Some(name) => Some(p.version(name).map(|v| v.revisions)?),
    };
    Ok(p.ground_truth_rows(pos, states)?
        .into_iter()
        .map(|r| GtBox {
            id: r.id,
            image: r.image,
            category: r.class,
            bbox: r.bbox,
            area: r.area,
            iscrowd: r.flags.iscrowd,
        })
        .collect())
}

/// One prediction of a run: the box id and its original (model) value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Prediction {
    pub id: uuid::Uuid,
    pub dt: DtBox,
}

/// The run's predictions at their original value: the first revision of every box the run made,
/// whatever annotators did to the box since.
pub(crate) fn run_predictions(p: &Project, run: &RunInfo) -> Result<Vec<Prediction>> {
    Ok(p.run_first_predictions(run.id)?
        .into_iter()
        .map(|f| Prediction {
            id: f.id,
            dt: DtBox {
                image: f.image,
                category: f.class,
                bbox: f.bbox,
                score: f.score,
            },
        })
        .collect())
}

/// The images a run covered, detections or not (a missed object on an image the model found
/// nothing on is a false negative), and a sentence saying how they were chosen.
///
/// That is the run's recorded coverage (`run_images`: every image a pre-label run processed,
/// the images an import was said to cover). A run that recorded none (written before coverage
/// was kept) falls back to the images it has predictions on, and says so.
pub(crate) fn run_images(
    p: &Project,
    run: &RunInfo,
    dts: &[DtBox],
) -> Result<(HashSet<i64>, String)> {
    let covered = p.run_coverage(run.id)?;
    if covered.is_empty() {
        let out: HashSet<i64> = dts.iter().map(|d| d.image).collect();
        let note = format!(
            "the {} images with predictions (this run recorded no coverage: images it found nothing on are not counted)",
            out.len()
        );
        return Ok((out, note));
    }
    // Predictions outside the coverage (an older import that marked only some images) still
    // count: their images were certainly processed.
    let mut out = covered;
    let before = out.len();
    out.extend(dts.iter().map(|d| d.image));
    let note = match p.run_coverage_note(run.id)? {
        Some(note) => note,
        None if run.kind == "import" => format!("the {before} images the import recorded"),
        None => format!("the {before} images the run processed"),
    };
    Ok((out, note))
}

fn categories(p: &Project) -> Result<Vec<Category>> {
    Ok(p.classes_by_row()?
        .into_iter()
        .map(|(id, name)| Category { id, name })
        .collect())
}

fn material(p: &Project, run: &RunInfo, opts: &EvalOptions) -> Result<Material> {
    let dts: Vec<DtBox> = run_predictions(p, run)?.into_iter().map(|x| x.dt).collect();
    let (mut images, mut coverage) = run_images(p, run, &dts)?;
    if opts.ground_truth == GroundTruth::AllLabels {
        let reviewed = super::triage::reviewed_images(p)?;
        let before = images.len();
        images.retain(|i| reviewed.contains(i));
        if images.len() < before {
            coverage = format!(
                "{coverage}; of those, the {} someone has labelled or reviewed ({} not yet looked at are left out)",
                images.len(),
                before - images.len()
            );
        }
    }
    Ok(Material {
        categories: categories(p)?,
        gts: gt_labels(p, opts.version.as_deref(), opts.ground_truth)?,
        images,
        coverage,
        dts,
    })
}

fn evaluate_on(m: &Material, images: &HashSet<i64>) -> CocoEval {
    let input = EvalInput {
        images: images.iter().copied().collect(),
        categories: m.categories.clone(),
        gts: m
            .gts
            .iter()
            .filter(|g| images.contains(&g.image))
            .cloned()
            .collect(),
        dts: m
            .dts
            .iter()
            .filter(|d| images.contains(&d.image))
            .cloned()
            .collect(),
    };
    eval::evaluate(&input)
}

fn run_eval_on(
    p: &Project,
    run: &RunInfo,
    m: &Material,
    images: &HashSet<i64>,
    coverage: String,
    opts: &EvalOptions,
) -> Result<RunEval> {
    let mut slices = Vec::new();
    for s in &opts.slices {
        for (label, set) in s.expand(p)? {
            let inside: HashSet<i64> = set.intersection(images).copied().collect();
            slices.push(SliceEval {
                slice: label,
                eval: evaluate_on(m, &inside),
            });
        }
    }
    Ok(RunEval {
        run: run.name.clone(),
        coverage,
        version: opts.version.clone().unwrap_or_else(|| CURRENT.to_owned()),
        ground_truth: opts.ground_truth,
        overall: evaluate_on(m, images),
        slices,
    })
}

/// Evaluates a run's predictions (at their original model values) against the labels of a
/// version, on the images the run covered, overall and for each slice.
pub fn evaluate_run(p: &Project, opts: &EvalOptions) -> Result<RunEval> {
    let run = p.run_by_name(&opts.run)?;
    let m = material(p, &run, opts)?;
    run_eval_on(p, &run, &m, &m.images, m.coverage.clone(), opts)
}

/// Evaluates run `opts.run` (a) and run `other` (b) on the images both covered, against the same
/// labels, and compares them per class.
pub fn compare_runs(p: &Project, opts: &EvalOptions, other: &str) -> Result<RunComparison> {
    let run_a = p.run_by_name(&opts.run)?;
    let run_b = p.run_by_name(other)?;
    let ma = material(p, &run_a, opts)?;
    let mb = material(p, &run_b, opts)?;
    let common: HashSet<i64> = ma.images.intersection(&mb.images).copied().collect();
    let both = format!(
        "the {} images both runs covered ({}: {}; {}: {})",
        common.len(),
        run_a.name,
        ma.coverage,
        run_b.name,
        mb.coverage
    );
    let a = run_eval_on(p, &run_a, &ma, &common, both.clone(), opts)?;
    let b = run_eval_on(p, &run_b, &mb, &common, both, opts)?;
    let summary = a
        .overall
        .summary
        .entries()
        .iter()
        .zip(b.overall.summary.entries())
        .map(|((k, x), (_, y))| ((*k).to_owned(), *x, y, x - y))
        .collect();
    let delta = |x: f64, y: f64| (x > -1.0 && y > -1.0).then_some(x - y);
    let per_class = a
        .overall
        .per_class
        .iter()
        .zip(&b.overall.per_class)
        .map(|(ca, cb)| {
            let ap_delta = delta(ca.ap, cb.ap);
            ClassDelta {
                class: ca.name.clone(),
                ap_a: ca.ap,
                ap_b: cb.ap,
                ap_delta,
                ap50_a: ca.ap50,
                ap50_b: cb.ap50,
                ap50_delta: delta(ca.ap50, cb.ap50),
                verdict: match ap_delta {
                    None => "n/a",
                    Some(d) if d > 1e-3 => "better",
                    Some(d) if d < -1e-3 => "worse",
                    Some(_) => "same",
                },
            }
        })
        .collect();
    Ok(RunComparison {
        a,
        b,
        summary,
        per_class,
    })
}
