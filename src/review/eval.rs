//! COCO bbox evaluation: a faithful port of pycocotools' `COCOeval` (`iouType='bbox'`).
//!
//! The port keeps every detail that changes numbers, so results agree with pycocotools to
//! floating-point noise:
//! - images and categories are the GT file's, sorted by id; detections of unknown categories are
//!   dropped;
//! - per image and category, detections are sorted by score with a stable sort and cut to the
//!   largest `maxDets` (100) before IoUs are computed;
//! - IoU is pycocotools' `bbIou`: for a crowd GT the union is the detection's area;
//! - crowd GTs are ignored (never false negatives) and may match many detections; GTs outside an
//!   area range are ignored, and so are unmatched detections outside it; area ranges use the GT's
//!   `area` field and the detection's `w * h`;
//! - greedy matching walks GTs with ignored ones last, keeps the best IoU so far (a later GT with
//!   an equal IoU wins), and stops at the first ignored GT once a regular one matched;
//! - a match to a GT whose id is 0 counts as no match, as in pycocotools;
//! - precision is made monotone (the envelope) and read at 101 recall points with a left
//!   `searchsorted`; points beyond the last recall are 0;
//! - settings with no GT (absent categories, empty area ranges) are `-1` and left out of means.
//!
//! [`evaluate`] is the pure algorithm on in-memory boxes; [`evaluate_files`] reads a COCO GT file
//! and a results file like `COCO(gt).loadRes(results)` does.

use std::collections::HashMap;
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Result, ReviewError};
use crate::model::BBox;

/// Number of IoU thresholds (.50:.05:.95).
pub const T: usize = 10;
/// Number of recall points (0:.01:1).
pub const R: usize = 101;
/// Area ranges: all, small, medium, large.
pub const A: usize = 4;
/// The `maxDets` settings.
pub const MAX_DETS: [usize; 3] = [1, 10, 100];
const M: usize = MAX_DETS.len();
const AREA_RANGES: [(f64, f64); A] = [
    (0.0, 1e10),
    (0.0, 32.0 * 32.0),
    (32.0 * 32.0, 96.0 * 96.0),
    (96.0 * 96.0, 1e10),
];

/// The IoU thresholds exactly as numpy's `linspace(.5, .95, 10)` computes them.
pub fn iou_thresholds() -> [f64; T] {
    let step = (0.95 - 0.5) / 9.0;
    let mut out = [0.0; T];
    for (i, t) in out.iter_mut().enumerate() {
        *t = i as f64 * step + 0.5;
    }
    out[T - 1] = 0.95;
    out
}

/// The recall points exactly as numpy's `linspace(0, 1, 101)` computes them.
pub fn recall_points() -> [f64; R] {
    let step = 1.0 / 100.0;
    let mut out = [0.0; R];
    for (i, r) in out.iter_mut().enumerate() {
        *r = i as f64 * step;
    }
    out[R - 1] = 1.0;
    out
}

/// A ground-truth box.
#[derive(Clone, Debug, PartialEq)]
pub struct GtBox {
    /// The annotation id; 0 behaves as in pycocotools (a match to it does not count).
    pub id: i64,
    pub image: i64,
    pub category: i64,
    pub bbox: BBox,
    /// The area used for area ranges (COCO's `area`; Loupe uses `w * h`).
    pub area: f64,
    pub iscrowd: bool,
}

/// A detection.
#[derive(Clone, Debug, PartialEq)]
pub struct DtBox {
    pub image: i64,
    pub category: i64,
    pub bbox: BBox,
    pub score: f64,
}

/// A category: its id and its name.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Category {
    pub id: i64,
    pub name: String,
}

/// What [`evaluate`] compares: the evaluated images, the categories, GT boxes and detections.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EvalInput {
    pub images: Vec<i64>,
    pub categories: Vec<Category>,
    pub gts: Vec<GtBox>,
    pub dts: Vec<DtBox>,
}

/// The twelve COCO summary numbers, under the names pycocotools prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[allow(non_snake_case)]
pub struct Summary {
    pub AP: f64,
    pub AP50: f64,
    pub AP75: f64,
    pub APs: f64,
    pub APm: f64,
    pub APl: f64,
    pub AR1: f64,
    pub AR10: f64,
    pub AR100: f64,
    pub ARs: f64,
    pub ARm: f64,
    pub ARl: f64,
}

impl Summary {
    /// The names and values in pycocotools' order.
    pub fn entries(&self) -> [(&'static str, f64); 12] {
        [
            ("AP", self.AP),
            ("AP50", self.AP50),
            ("AP75", self.AP75),
            ("APs", self.APs),
            ("APm", self.APm),
            ("APl", self.APl),
            ("AR1", self.AR1),
            ("AR10", self.AR10),
            ("AR100", self.AR100),
            ("ARs", self.ARs),
            ("ARm", self.ARm),
            ("ARl", self.ARl),
        ]
    }
}

/// One category's results (area `all`, 100 detections per image).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassEval {
    pub id: i64,
    pub name: String,
    /// GT boxes that count (not crowd).
    pub gt: usize,
    /// Detections of this category on the evaluated images.
    pub dt: usize,
    /// AP@[.5:.95]; -1 when the category has no GT.
    pub ap: f64,
    pub ap50: f64,
    pub ap75: f64,
    /// AR with 100 detections per image.
    pub ar100: f64,
    /// Precision at recall 0, 0.01, …, 1 (IoU .5): the precision/recall curve.
    pub precision50: Vec<f64>,
    /// The same at IoU .75.
    pub precision75: Vec<f64>,
    /// The score threshold reaching each recall point at IoU .5 (0 where it is not reached).
    pub scores50: Vec<f64>,
}

/// The evaluation: summary, per category, and the accumulated arrays of pycocotools.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CocoEval {
    #[serde(flatten)]
    pub summary: Summary,
    pub per_class: Vec<ClassEval>,
    pub images: usize,
    pub gt_boxes: usize,
    pub dt_boxes: usize,
    /// `[T][R][K][A][M]`, flattened; see [`CocoEval::precision`].
    #[serde(skip)]
    precision: Vec<f64>,
    /// `[T][K][A][M]`, flattened; see [`CocoEval::recall`].
    #[serde(skip)]
    recall: Vec<f64>,
    #[serde(skip)]
    scores: Vec<f64>,
    #[serde(skip)]
    k: usize,
}

impl CocoEval {
    fn p_index(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> usize {
        (((t * R + r) * self.k + k) * A + a) * M + m
    }

    fn r_index(&self, t: usize, k: usize, a: usize, m: usize) -> usize {
        ((t * self.k + k) * A + a) * M + m
    }

    /// pycocotools' `eval['precision'][t, r, k, a, m]` (-1 where there is no GT).
    pub fn precision(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> f64 {
        self.precision[self.p_index(t, r, k, a, m)]
    }

    /// pycocotools' `eval['recall'][t, k, a, m]`.
    pub fn recall(&self, t: usize, k: usize, a: usize, m: usize) -> f64 {
        self.recall[self.r_index(t, k, a, m)]
    }

    /// The twelve summary numbers of one category (position `k` in `per_class`), computed as
    /// pycocotools' `summarize` does but over that category alone: what the per-class table of
    /// the app shows (AP by area, AR by detection limit). -1 where the category has no GT in
    /// the range; a `k` out of range gives all -1.
    pub fn class_summary(&self, k: usize) -> Summary {
        if k >= self.k {
            return Summary {
                AP: -1.0,
                AP50: -1.0,
                AP75: -1.0,
                APs: -1.0,
                APm: -1.0,
                APl: -1.0,
                AR1: -1.0,
                AR10: -1.0,
                AR100: -1.0,
                ARs: -1.0,
                ARm: -1.0,
                ARl: -1.0,
            };
        }
        let thresholds = iou_thresholds();
        let ap = |t: Option<usize>, a: usize| -> f64 {
            let ts: Vec<usize> = t.map_or_else(|| (0..T).collect(), |t| vec![t]);
            mean_valid(
                ts.into_iter()
                    .flat_map(|t| (0..R).map(move |r| self.precision(t, r, k, a, M - 1))),
            )
        };
        let ar = |a: usize, m: usize| mean_valid((0..T).map(|t| self.recall(t, k, a, m)));
        let at = |v: f64| thresholds.iter().position(|&t| t == v);
        let at_or_none = |v: f64| at(v).map_or(-1.0, |t| ap(Some(t), 0));
        Summary {
            AP: ap(None, 0),
            AP50: at_or_none(0.5),
            AP75: at_or_none(0.75),
            APs: ap(None, 1),
            APm: ap(None, 2),
            APl: ap(None, 3),
            AR1: ar(0, 0),
            AR10: ar(0, 1),
            AR100: ar(0, 2),
            ARs: ar(1, 2),
            ARm: ar(2, 2),
            ARl: ar(3, 2),
        }
    }
}

/// pycocotools' `bbIou`: IoU of a detection and a GT box; a crowd GT's union is the detection.
fn bb_iou(d: &BBox, g: &BBox, crowd: bool) -> f64 {
    let w = (d.w + d.x).min(g.w + g.x) - d.x.max(g.x);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d.h + d.y).min(g.h + g.y) - d.y.max(g.y);
    if h <= 0.0 {
        return 0.0;
    }
    let i = w * h;
    let da = d.w * d.h;
    let u = if crowd { da } else { da + g.w * g.h - i };
    i / u
}

/// Sorts indices by descending score, keeping input order among equal scores (numpy's stable
/// mergesort on `-score`).
fn sort_by_score_desc(idx: &mut [usize], score: impl Fn(usize) -> f64) {
    idx.sort_by(|&a, &b| {
        score(b)
            .partial_cmp(&score(a))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}

/// One image, one category, one area range: pycocotools' `evaluateImg` result.
#[derive(Clone, Debug, Default)]
struct ImgEval {
    /// Scores of the kept detections, best first (at most 100).
    scores: Vec<f64>,
    /// Per detection, bit t set when it matched a GT (with a non-zero id) at threshold t.
    matched: Vec<u16>,
    /// Per detection, bit t set when it is ignored at threshold t.
    ignored: Vec<u16>,
    /// GT boxes that are not ignored.
    npig: usize,
}

/// Evaluates one (image, category) pair for every area range.
fn evaluate_pair(gts: &[&GtBox], dts: &[&DtBox], thresholds: &[f64; T]) -> [ImgEval; A] {
    let max_det = MAX_DETS[M - 1];
    let mut order: Vec<usize> = (0..dts.len()).collect();
    sort_by_score_desc(&mut order, |i| dts[i].score);
    order.truncate(max_det);
    let dts: Vec<&DtBox> = order.iter().map(|&i| dts[i]).collect();
    let ious: Vec<Vec<f64>> = dts
        .iter()
        .map(|d| {
            gts.iter()
                .map(|g| bb_iou(&d.bbox, &g.bbox, g.iscrowd))
                .collect()
        })
        .collect();
    let mut out: [ImgEval; A] = Default::default();
    for (a, (lo, hi)) in AREA_RANGES.iter().enumerate() {
        let gt_ignore: Vec<bool> = gts
            .iter()
            .map(|g| g.iscrowd || g.area < *lo || g.area > *hi)
            .collect();
        // GTs with the ignored ones last, stable.
        let mut gtind: Vec<usize> = (0..gts.len()).collect();
        gtind.sort_by_key(|&g| gt_ignore[g]);
        let ig_sorted: Vec<bool> = gtind.iter().map(|&g| gt_ignore[g]).collect();
        let crowd_sorted: Vec<bool> = gtind.iter().map(|&g| gts[g].iscrowd).collect();
        let mut matched = vec![0u16; dts.len()];
        let mut ignored = vec![0u16; dts.len()];
        if !dts.is_empty() && !gts.is_empty() {
            for (t, thr) in thresholds.iter().enumerate() {
                let mut gt_taken = vec![false; gtind.len()];
                for (di, row) in ious.iter().enumerate() {
                    let mut best = thr.min(1.0 - 1e-10);
                    let mut m: Option<usize> = None;
                    for (gi, &g) in gtind.iter().enumerate() {
                        if gt_taken[gi] && !crowd_sorted[gi] {
                            continue;
                        }
                        // Once matched to a regular GT, stop at the first ignored one.
                        if let Some(mi) = m
                            && !ig_sorted[mi]
                            && ig_sorted[gi]
                        {
                            break;
                        }
                        if row[g] < best {
                            continue;
                        }
                        best = row[g];
                        m = Some(gi);
                    }
                    if let Some(mi) = m {
                        if ig_sorted[mi] {
                            ignored[di] |= 1 << t;
                        }
                        if gts[gtind[mi]].id != 0 {
                            matched[di] |= 1 << t;
                        }
                        gt_taken[mi] = true;
                    }
                }
            }
        }
        // Unmatched detections outside the area range are ignored.
        for (di, d) in dts.iter().enumerate() {
            let area = d.bbox.w * d.bbox.h;
            if area < *lo || area > *hi {
                ignored[di] |= !matched[di] & ((1 << T) - 1);
            }
        }
        out[a] = ImgEval {
            scores: dts.iter().map(|d| d.score).collect(),
            matched,
            ignored,
            npig: ig_sorted.iter().filter(|&&i| !i).count(),
        };
    }
    out
}

/// Accumulated results of one category and area range at one `maxDets`: precision at each
/// recall point and the score reaching it, per threshold, and the final recall per threshold.
struct Accumulated {
    precision: [[f64; R]; T],
    scores: [[f64; R]; T],
    recall: [f64; T],
}

fn accumulate(evals: &[&ImgEval], max_det: usize, rec_points: &[f64; R]) -> Option<Accumulated> {
    if evals.is_empty() {
        return None;
    }
    let npig: usize = evals.iter().map(|e| e.npig).sum();
    if npig == 0 {
        return None;
    }
    let mut dets: Vec<(f64, u16, u16)> = Vec::new();
    for e in evals {
        let n = e.scores.len().min(max_det);
        for i in 0..n {
            dets.push((e.scores[i], e.matched[i], e.ignored[i]));
        }
    }
    // Stable, like numpy's mergesort on -score.
    dets.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
    let nd = dets.len();
    let mut acc = Accumulated {
        precision: [[0.0; R]; T],
        scores: [[0.0; R]; T],
        recall: [0.0; T],
    };
    let npig_f = npig as f64;
    let mut rc = vec![0.0; nd];
    let mut pr = vec![0.0; nd];
    for t in 0..T {
        let bit = 1u16 << t;
        let (mut tp, mut fp) = (0.0f64, 0.0f64);
        for (i, &(_, m, ig)) in dets.iter().enumerate() {
            if ig & bit == 0 {
                if m & bit != 0 {
                    tp += 1.0;
                } else {
                    fp += 1.0;
                }
            }
            rc[i] = tp / npig_f;
            pr[i] = tp / (fp + tp + f64::EPSILON);
        }
        acc.recall[t] = if nd > 0 { rc[nd - 1] } else { 0.0 };
        for i in (1..nd).rev() {
            if pr[i] > pr[i - 1] {
                pr[i - 1] = pr[i];
            }
        }
        for (ri, &x) in rec_points.iter().enumerate() {
            let pi = rc.partition_point(|&v| v < x);
            if pi >= nd {
                break;
            }
            acc.precision[t][ri] = pr[pi];
            acc.scores[t][ri] = dets[pi].0;
        }
    }
    Some(acc)
}

/// The mean of the values that are not -1, or -1 when there are none (pycocotools' summarize).
fn mean_valid(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for v in values {
        if v > -1.0 {
            sum += v;
            n += 1;
        }
    }
    if n == 0 { -1.0 } else { sum / n as f64 }
}

/// Evaluates detections against GT exactly like pycocotools' bbox `COCOeval`
/// (`evaluate(); accumulate(); summarize()`), plus per-category results.
pub fn evaluate(input: &EvalInput) -> CocoEval {
    let thresholds = iou_thresholds();
    let rec_points = recall_points();
    let mut images = input.images.clone();
    images.sort_unstable();
    images.dedup();
    let mut categories = input.categories.clone();
    categories.sort_by_key(|c| c.id);
    categories.dedup_by_key(|c| c.id);
    let n_img = images.len();
    let k_count = categories.len();
    let img_index: HashMap<i64, usize> =
        images.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let cat_index: HashMap<i64, usize> = categories
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id, i))
        .collect();

    // Group boxes by (category, image), keeping input order inside a group.
    let key = |image: i64, category: i64| -> Option<usize> {
        Some(cat_index.get(&category)? * n_img + img_index.get(&image)?)
    };
    let mut gt_groups: HashMap<usize, Vec<&GtBox>> = HashMap::new();
    for g in &input.gts {
        if let Some(k) = key(g.image, g.category) {
            gt_groups.entry(k).or_default().push(g);
        }
    }
    let mut dt_groups: HashMap<usize, Vec<&DtBox>> = HashMap::new();
    for d in &input.dts {
        if let Some(k) = key(d.image, d.category) {
            dt_groups.entry(k).or_default().push(d);
        }
    }
    let mut keys: Vec<usize> = gt_groups.keys().chain(dt_groups.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    let empty_gt: Vec<&GtBox> = Vec::new();
    let empty_dt: Vec<&DtBox> = Vec::new();
    let pair_evals: Vec<(usize, [ImgEval; A])> = keys
        .par_iter()
        .map(|&k| {
            let g = gt_groups.get(&k).unwrap_or(&empty_gt);
            let d = dt_groups.get(&k).unwrap_or(&empty_dt);
            (k, evaluate_pair(g, d, &thresholds))
        })
        .collect();
    // Per category, the evaluated pairs in image order (keys are sorted).
    let mut by_cat: Vec<Vec<&[ImgEval; A]>> = vec![Vec::new(); k_count];
    for (k, e) in &pair_evals {
        by_cat[k / n_img.max(1)].push(e);
    }

    let mut eval = CocoEval {
        summary: Summary::default(),
        per_class: Vec::new(),
        images: n_img,
        gt_boxes: gt_groups.values().map(Vec::len).sum(),
        dt_boxes: dt_groups.values().map(Vec::len).sum(),
        precision: vec![-1.0; T * R * k_count * A * M],
        recall: vec![-1.0; T * k_count * A * M],
        scores: vec![-1.0; T * R * k_count * A * M],
        k: k_count,
    };
    let per_cat: Vec<Vec<(usize, usize, Accumulated)>> = by_cat
        .par_iter()
        .map(|pairs| {
            let mut out = Vec::new();
            for a in 0..A {
                let evals: Vec<&ImgEval> = pairs.iter().map(|p| &p[a]).collect();
                for (m, &max_det) in MAX_DETS.iter().enumerate() {
                    if let Some(acc) = accumulate(&evals, max_det, &rec_points) {
                        out.push((a, m, acc));
                    }
                }
            }
            out
        })
        .collect();
    for (k, results) in per_cat.into_iter().enumerate() {
        for (a, m, acc) in results {
            for t in 0..T {
                let ri = eval.r_index(t, k, a, m);
                eval.recall[ri] = acc.recall[t];
                for r in 0..R {
                    let pi = eval.p_index(t, r, k, a, m);
                    eval.precision[pi] = acc.precision[t][r];
                    eval.scores[pi] = acc.scores[t][r];
                }
            }
        }
    }

    let ap = |t: Option<usize>, a: usize, m: usize| -> f64 {
        let ts: Vec<usize> = t.map_or_else(|| (0..T).collect(), |t| vec![t]);
        mean_valid(ts.into_iter().flat_map(|t| {
            let e = &eval;
            (0..R).flat_map(move |r| (0..k_count).map(move |k| e.precision(t, r, k, a, m)))
        }))
    };
    let ar = |a: usize, m: usize| -> f64 {
        mean_valid(
            (0..T)
                .flat_map(|t| (0..k_count).map(move |k| (t, k)))
                .map(|(t, k)| eval.recall(t, k, a, m)),
        )
    };
    // The thresholds .5 and .75 found by equality, as `np.where(iouThr == p.iouThrs)` does.
    let t50 = thresholds.iter().position(|&t| t == 0.5);
    let t75 = thresholds.iter().position(|&t| t == 0.75);
    let at = |t: Option<usize>, a: usize, m: usize| t.map_or(-1.0, |t| ap(Some(t), a, m));
    let summary = Summary {
        AP: ap(None, 0, 2),
        AP50: at(t50, 0, 2),
        AP75: at(t75, 0, 2),
        APs: ap(None, 1, 2),
        APm: ap(None, 2, 2),
        APl: ap(None, 3, 2),
        AR1: ar(0, 0),
        AR10: ar(0, 1),
        AR100: ar(0, 2),
        ARs: ar(1, 2),
        ARm: ar(2, 2),
        ARl: ar(3, 2),
    };
    let per_class = categories
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let curve = |t: usize, arr: &Vec<f64>| -> Vec<f64> {
                (0..R).map(|r| arr[eval.p_index(t, r, k, 0, 2)]).collect()
            };
            let gt = by_cat[k].iter().map(|p| p[0].npig).sum();
            let dt = (0..n_img)
                .map(|i| dt_groups.get(&(k * n_img + i)).map_or(0, Vec::len))
                .sum();
            ClassEval {
                id: c.id,
                name: c.name.clone(),
                gt,
                dt,
                ap: mean_valid(
                    (0..T)
                        .flat_map(|t| (0..R).map(move |r| (t, r)))
                        .map(|(t, r)| eval.precision(t, r, k, 0, 2)),
                ),
                ap50: t50.map_or(-1.0, |t| {
                    mean_valid((0..R).map(|r| eval.precision(t, r, k, 0, 2)))
                }),
                ap75: t75.map_or(-1.0, |t| {
                    mean_valid((0..R).map(|r| eval.precision(t, r, k, 0, 2)))
                }),
                ar100: mean_valid((0..T).map(|t| eval.recall(t, k, 0, 2))),
                precision50: t50.map_or_else(Vec::new, |t| curve(t, &eval.precision)),
                precision75: t75.map_or_else(Vec::new, |t| curve(t, &eval.precision)),
                scores50: t50.map_or_else(Vec::new, |t| curve(t, &eval.scores)),
            }
        })
        .collect();
    eval.summary = summary;
    eval.per_class = per_class;
    eval
}

// ------------------------------------------------------------------------- COCO files

#[derive(Deserialize)]
struct GtFile {
    images: Vec<FileImage>,
    #[serde(default)]
    annotations: Vec<FileAnn>,
    categories: Vec<FileCategory>,
}

#[derive(Deserialize)]
struct FileImage {
    id: i64,
    #[serde(default)]
    file_name: String,
}

#[derive(Deserialize)]
struct FileCategory {
    id: i64,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct FileAnn {
    #[serde(default)]
    id: i64,
    image_id: i64,
    category_id: i64,
    #[serde(default)]
    bbox: Vec<f64>,
    #[serde(default)]
    area: Option<f64>,
    #[serde(default)]
    iscrowd: Option<serde_json::Value>,
    #[serde(default)]
    score: Option<f64>,
}

/// A detections file: a COCO results list, or a whole COCO file whose annotations have scores.
#[derive(Deserialize)]
#[serde(untagged)]
enum ResultsFile {
    List(Vec<FileAnn>),
    Coco(GtFile),
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|error| ReviewError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ReviewError::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        message: e.to_string(),
    })
}

fn bbox_of(a: &FileAnn, path: &Path) -> Result<BBox> {
    match a.bbox.as_slice() {
        [x, y, w, h] => Ok(BBox::new(*x, *y, *w, *h)),
        _ => Err(ReviewError::Invalid(format!(
            "{}: annotation {} (image {}) has no [x, y, w, h] bbox",
            path.display(),
            a.id,
            a.image_id
        ))),
    }
}

fn truthy(v: Option<&serde_json::Value>) -> bool {
    match v {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::Number(n)) => n.as_f64().is_some_and(|x| x != 0.0),
        _ => false,
    }
}

/// Reads a COCO GT file and a detections file into an [`EvalInput`], as
/// `COCO(gt).loadRes(results)` would: detections on images the GT does not have are refused.
/// A detections file that is a whole COCO file is matched to the GT by file name and category
/// name (like `coco_map.py`).
pub fn load_files(gt_path: &Path, dt_path: &Path) -> Result<EvalInput> {
    let gt: GtFile = read_json(gt_path)?;
    let mut input = EvalInput {
        images: gt.images.iter().map(|i| i.id).collect(),
        categories: gt
            .categories
            .iter()
            .map(|c| Category {
                id: c.id,
                name: c.name.clone(),
            })
            .collect(),
        ..EvalInput::default()
    };
    for a in &gt.annotations {
        let bbox = bbox_of(a, gt_path)?;
        input.gts.push(GtBox {
            id: a.id,
            image: a.image_id,
            category: a.category_id,
            bbox,
            area: a.area.unwrap_or(bbox.w * bbox.h),
            iscrowd: truthy(a.iscrowd.as_ref()),
        });
    }
    let (anns, remap) = match read_json::<ResultsFile>(dt_path)? {
        ResultsFile::List(anns) => (anns, None),
        ResultsFile::Coco(file) => {
            let by_name: HashMap<&str, i64> = gt
                .images
                .iter()
                .map(|i| (i.file_name.as_str(), i.id))
                .collect();
            let cat_by_name: HashMap<&str, i64> = gt
                .categories
                .iter()
                .map(|c| (c.name.as_str(), c.id))
                .collect();
            let images: HashMap<i64, Option<i64>> = file
                .images
                .iter()
                .map(|i| (i.id, by_name.get(i.file_name.as_str()).copied()))
                .collect();
            let cats: HashMap<i64, Option<i64>> = file
                .categories
                .iter()
                .map(|c| (c.id, cat_by_name.get(c.name.as_str()).copied()))
                .collect();
            (file.annotations, Some((images, cats)))
        }
    };
    let known: std::collections::HashSet<i64> = input.images.iter().copied().collect();
    for a in &anns {
        let (image, category) = match &remap {
            None => (a.image_id, a.category_id),
            Some((images, cats)) => {
                let Some(Some(image)) = images.get(&a.image_id) else {
                    continue;
                };
                let Some(Some(category)) = cats.get(&a.category_id) else {
                    return Err(ReviewError::Invalid(format!(
                        "{}: category {} has no category of the same name in {}",
                        dt_path.display(),
                        a.category_id,
                        gt_path.display()
                    )));
                };
                (*image, *category)
            }
        };
        if !known.contains(&image) {
            return Err(ReviewError::Invalid(format!(
                "{}: detections refer to image id {image}, which {} does not have",
                dt_path.display(),
                gt_path.display()
            )));
        }
        let Some(score) = a.score else {
            return Err(ReviewError::Invalid(format!(
                "{}: a detection on image {image} has no score",
                dt_path.display()
            )));
        };
        input.dts.push(DtBox {
            image,
            category,
            bbox: bbox_of(a, dt_path)?,
            score,
        });
    }
    Ok(input)
}

/// Evaluates a COCO results file against a COCO GT file (`loupe eval-files`).
pub fn evaluate_files(gt_path: &Path, dt_path: &Path) -> Result<CocoEval> {
    Ok(evaluate(&load_files(gt_path, dt_path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gt(id: i64, image: i64, category: i64, b: [f64; 4], crowd: bool) -> GtBox {
        GtBox {
            id,
            image,
            category,
            bbox: BBox::new(b[0], b[1], b[2], b[3]),
            area: b[2] * b[3],
            iscrowd: crowd,
        }
    }

    fn dt(image: i64, category: i64, b: [f64; 4], score: f64) -> DtBox {
        DtBox {
            image,
            category,
            bbox: BBox::new(b[0], b[1], b[2], b[3]),
            score,
        }
    }

    fn cats(n: i64) -> Vec<Category> {
        (1..=n)
            .map(|id| Category {
                id,
                name: format!("c{id}"),
            })
            .collect()
    }

    #[test]
    fn thresholds_match_numpy_linspace() {
        let t = iou_thresholds();
        assert_eq!(t[0], 0.5);
        assert_eq!(t[5], 0.75);
        assert_eq!(t[9], 0.95);
        assert_eq!(recall_points()[7], 0.07);
    }

    #[test]
    fn perfect_detections_score_one_and_absent_categories_are_minus_one() {
        let input = EvalInput {
            images: vec![1, 2],
            categories: cats(3),
            gts: vec![
                gt(1, 1, 1, [10.0, 10.0, 50.0, 50.0], false),
                gt(2, 2, 2, [0.0, 0.0, 200.0, 100.0], false),
            ],
            dts: vec![
                dt(1, 1, [10.0, 10.0, 50.0, 50.0], 0.9),
                dt(2, 2, [0.0, 0.0, 200.0, 100.0], 0.8),
            ],
        };
        let e = evaluate(&input);
        assert!((e.summary.AP - 1.0).abs() < 1e-12, "{:?}", e.summary);
        assert_eq!(e.summary.APs, -1.0);
        assert!((e.summary.APm - 1.0).abs() < 1e-12);
        assert_eq!(e.per_class[2].ap, -1.0);
        assert!((e.per_class[0].precision50[100] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn class_summary_agrees_with_the_per_class_table_and_splits_by_area() {
        let input = EvalInput {
            images: vec![1, 2],
            categories: cats(2),
            gts: vec![
                // A small and a large box of class 1, a medium one of class 2.
                gt(1, 1, 1, [0.0, 0.0, 20.0, 20.0], false),
                gt(2, 2, 1, [0.0, 0.0, 200.0, 200.0], false),
                gt(3, 1, 2, [50.0, 50.0, 60.0, 60.0], false),
            ],
            dts: vec![
                // The small one found, the large one missed, the medium one shifted (IoU ~0.6).
                dt(1, 1, [0.0, 0.0, 20.0, 20.0], 0.9),
                dt(1, 2, [60.0, 60.0, 60.0, 60.0], 0.8),
            ],
        };
        let e = evaluate(&input);
        for (k, c) in e.per_class.iter().enumerate() {
            let s = e.class_summary(k);
            assert!((s.AP - c.ap).abs() < 1e-12, "{k}: {s:?} vs {c:?}");
            assert!((s.AP50 - c.ap50).abs() < 1e-12);
            assert!((s.AP75 - c.ap75).abs() < 1e-12);
            assert!((s.AR100 - c.ar100).abs() < 1e-12);
        }
        let c1 = e.class_summary(0);
        assert!((c1.APs - 1.0).abs() < 1e-12, "{c1:?}");
        assert!(c1.APl.abs() < 1e-12, "the large box was missed: {c1:?}");
        assert_eq!(c1.APm, -1.0, "class 1 has no medium box");
        let c2 = e.class_summary(1);
        assert_eq!((c2.APs, c2.APl), (-1.0, -1.0));
        assert!(c2.AP50 > 0.99 && c2.AP75 < 0.01, "{c2:?}");
        assert_eq!(e.class_summary(7).AP, -1.0);
    }

    #[test]
    fn crowd_regions_absorb_detections_without_counting_as_misses() {
        let input = EvalInput {
            images: vec![1],
            categories: cats(1),
            gts: vec![
                gt(1, 1, 1, [0.0, 0.0, 40.0, 40.0], false),
                gt(2, 1, 1, [100.0, 100.0, 100.0, 100.0], true),
            ],
            dts: vec![
                dt(1, 1, [0.0, 0.0, 40.0, 40.0], 0.5),
                // Inside the crowd region: IoU = intersection / detection area = 1.
                dt(1, 1, [110.0, 110.0, 10.0, 10.0], 0.9),
                dt(1, 1, [150.0, 150.0, 10.0, 10.0], 0.8),
            ],
        };
        let e = evaluate(&input);
        assert!((e.summary.AP - 1.0).abs() < 1e-12, "{:?}", e.summary);
        assert_eq!(e.per_class[0].gt, 1);
    }

    #[test]
    fn a_false_positive_ranked_first_halves_precision_at_low_recall() {
        let input = EvalInput {
            images: vec![1],
            categories: cats(1),
            gts: vec![gt(1, 1, 1, [0.0, 0.0, 40.0, 40.0], false)],
            dts: vec![
                dt(1, 1, [200.0, 200.0, 40.0, 40.0], 0.9),
                dt(1, 1, [0.0, 0.0, 40.0, 40.0], 0.5),
            ],
        };
        let e = evaluate(&input);
        // Precision 0.5 at every recall point: AP 0.5 (up to the eps in the denominator).
        assert!((e.summary.AP - 0.5).abs() < 1e-9, "{:?}", e.summary);
        // AR1 sees only the false positive.
        assert_eq!(e.summary.AR1, 0.0);
        assert!((e.summary.AR10 - 1.0).abs() < 1e-12);
    }
}
