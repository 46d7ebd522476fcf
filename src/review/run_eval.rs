//! Evaluating a model run inside a project: the run's predictions (each at its original model
//! value, before anyone edited it) against a version's approved labels, overall and per slice,
//! and the comparison of two runs.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::eval::{self, Category, CocoEval, DtBox, EvalInput, GtBox};
use super::sql::sq;
use super::{Result, ReviewError};
use crate::model::{BBox, BoxFlags};
use crate::store::{Project, RunInfo};

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
        let collect = |sql: &str, args: &[&str]| -> Result<Vec<(String, i64)>> {
            let mut stmt = p.conn().prepare(sql).map_err(sq(p))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(sq(p))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sq(p))
        };
        let rows = match self {
            Slice::Tag { tag } => collect(
                "SELECT 'tag:' || tag, image FROM image_tags WHERE tag=?1",
                &[tag],
            )?,
            Slice::Meta {
                key,
                value: Some(value),
            } => collect(
                "SELECT key || '=' || value, image FROM image_meta WHERE key=?1 AND value=?2",
                &[key, value],
            )?,
            Slice::Meta { key, value: None } => collect(
                "SELECT key || '=' || value, image FROM image_meta WHERE key=?1 ORDER BY value",
                &[key],
            )?,
        };
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
        GroundTruth::Approved => "state = 'approved'",
        GroundTruth::AllLabels => "state NOT IN ('proposed','rejected')",
    };
    let pos: Option<i64> = match version {
        None | Some(CURRENT) => None,
        Some(name) => Some(p.version(name).map(|v| v.revisions)?),
    };
    // While a box is as a COCO file gave it, pycocotools' view of it holds: its area range goes
    // by the file's `area` (a segmentation's area is not w*h), and a box the file numbered 0
    // never matches (pycocotools takes a match to annotation id 0 for no match). Edited boxes,
    // and boxes from elsewhere, use w*h and their own row id.
    let same = "cb.ann IS NOT NULL AND cb.x=l.x AND cb.y=l.y AND cb.w=l.w AND cb.h=l.h";
    let area = format!("CASE WHEN {same} AND cb.area IS NOT NULL THEN cb.area ELSE l.w*l.h END");
    let id = format!("CASE WHEN {same} AND cb.coco_id=0 THEN 0 ELSE {{row}} END");
    let sql = match pos {
        None => format!(
            "SELECT {}, l.image, l.class, l.x, l.y, l.w, l.h, l.flags, {area}
             FROM annotations l LEFT JOIN coco_boxes cb ON cb.ann=l.id
             WHERE l.deleted=0 AND {states} ORDER BY l.id",
            id.replace("{row}", "l.id")
        ),
        Some(_) => format!(
            "WITH latest AS (
                SELECT v.ann, v.image, v.class, v.x, v.y, v.w, v.h, v.flags, v.state, v.deleted,
                       ROW_NUMBER() OVER (PARTITION BY v.ann ORDER BY v.hlc DESC, v.client DESC, v.seq DESC) AS rn
                FROM revisions v WHERE v.seq <= ?1)
             SELECT {}, l.image, l.class, l.x, l.y, l.w, l.h, l.flags, {area}
             FROM latest l LEFT JOIN coco_boxes cb ON cb.ann=l.ann
             WHERE l.rn=1 AND l.deleted=0 AND {states} ORDER BY l.ann",
            id.replace("{row}", "l.ann")
        ),
    };
    let mut stmt = p.conn().prepare(&sql).map_err(sq(p))?;
    let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<GtBox> {
        let bbox = BBox::new(r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?);
        Ok(GtBox {
            id: r.get(0)?,
            image: r.get(1)?,
            category: r.get(2)?,
            bbox,
            area: r.get(8)?,
            iscrowd: BoxFlags::from_bits(r.get::<_, i64>(7)?.try_into().unwrap_or(0)).iscrowd,
        })
    };
    let rows = match pos {
        None => stmt.query_map([], map),
        Some(pos) => stmt.query_map([pos], map),
    }
    .map_err(sq(p))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sq(p))
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
    let mut stmt = p
        .conn()
        .prepare(
            "WITH firsts AS (
                SELECT v.ann, v.image, v.class, v.x, v.y, v.w, v.h, v.run, v.score,
                       ROW_NUMBER() OVER (PARTITION BY v.ann ORDER BY v.hlc, v.client, v.seq) AS rn
                FROM revisions v
                WHERE v.ann IN (SELECT ann FROM revisions WHERE run=(SELECT id FROM runs WHERE uuid=?1)))
             SELECT a.uuid, f.image, f.class, f.x, f.y, f.w, f.h, f.score FROM firsts f JOIN annotations a ON a.id=f.ann
             WHERE f.rn=1 AND f.run=(SELECT id FROM runs WHERE uuid=?1) ORDER BY f.ann",
        )
        .map_err(sq(p))?;
    let rows = stmt
        .query_map([run.id.to_string()], |r| {
            let id: Vec<u8> = r.get(0)?;
            Ok(Prediction {
                id: uuid::Uuid::from_slice(&id).unwrap_or_default(),
                dt: DtBox {
                    image: r.get(1)?,
                    category: r.get(2)?,
                    bbox: BBox::new(r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?),
                    // The store keeps scores as f32 values; widening is exact.
                    score: r.get::<_, Option<f64>>(7)?.unwrap_or(0.0),
                },
            })
        })
        .map_err(sq(p))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sq(p))
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
    let mut stmt = p
        .conn()
        .prepare("SELECT id, name FROM classes ORDER BY id")
        .map_err(sq(p))?;
    let rows = stmt
        .query_map([], |r| {
            Ok(Category {
                id: r.get(0)?,
                name: r.get(1)?,
            })
        })
        .map_err(sq(p))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sq(p))
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
