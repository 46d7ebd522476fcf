//! Label-error scores: for every label and every prediction of a run, how likely it is that the
//! labels are wrong in one of four ways, after the idea of ObjectLab (Tkachenko et al., 2023):
//!
//! - `overlooked`: the model sees an object that no label covers (a label is missing);
//! - `spurious`: a label that no prediction of its class supports (the label should not be
//!   there, or the model misses it);
//! - `badly_located`: a label whose class the model sees nearby, but at a low overlap (the box
//!   is in the wrong place);
//! - `swapped_class`: a prediction of another class where the label is (the class is wrong).
//!
//! Nothing here is a fixed score threshold. A run is first calibrated against the labels
//! themselves (which are mostly right): per class, the share of its predictions at each score
//! that a label of the class confirms (a monotone fit, pooled with every class by a few
//! pseudo-observations so that rare classes borrow from the rest), and per class and box size,
//! how often its labels are supported by a prediction (a label matched by a prediction at or
//! above its class's confident score is supported; the rate leaves the label itself out). A prediction's evidence is then the
//! calibrated chance that it is a real object, and a label without support weighs as much as the
//! model's recall for that class and size makes it surprising. Each class's confident score (where
//! its calibrated precision reaches one half) flags the issues worth a look.
//!
//! A label that a prediction confirms is not called misplaced for another box of its class
//! nearby, and an unlabelled prediction that overlaps a label loses evidence with the overlap
//! (with a label of another class, times the support the label has): most often it is that
//! object at another extent, or a second box of it, not a missed one. A swap the model makes on many labels of the class (more often than it sees another
//! class on labels in general) is the model's habit more than a label error, and its evidence
//! shrinks by that ratio.
//!
//! An image's score is the chance that at least one of its boxes is wrong, taking each box's
//! strongest issue as independent evidence (a noisy-or), so that an image with zero detections
//! is ranked by how surprising its unsupported labels are.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use uuid::Uuid;

use super::Label;
use crate::model::BBox;
use crate::review::run_eval::Prediction;

/// Pseudo-observations that pull a class's estimate towards the estimate over every class: a
/// class with few boxes says little on its own.
const POOL_WEIGHT: f64 = 5.0;

/// The four ways a label can be wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    /// An object the model sees that no label covers.
    Overlooked,
    /// A label that no prediction supports.
    Spurious,
    /// A label the model sees in another place (same class, low overlap).
    BadlyLocated,
    /// A label where the model sees another class.
    SwappedClass,
}

impl IssueKind {
    /// Every kind, in the order the tables show them.
    pub const ALL: [IssueKind; 4] = [
        IssueKind::Overlooked,
        IssueKind::Spurious,
        IssueKind::BadlyLocated,
        IssueKind::SwappedClass,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IssueKind::Overlooked => "overlooked",
            IssueKind::Spurious => "spurious",
            IssueKind::BadlyLocated => "badly_located",
            IssueKind::SwappedClass => "swapped_class",
        }
    }
}

/// A label's scores for the three ways a label it holds can be wrong, each in `[0, 1]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LabelScores {
    pub spurious: f64,
    pub badly_located: f64,
    pub swapped_class: f64,
}

/// One box's strongest issue (one per label; one per prediction that no label covers).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LabelIssue {
    pub kind: IssueKind,
    /// How likely the labels are wrong this way here, in `[0, 1]`; higher means look sooner.
    pub score: f64,
    /// At or above the per-class threshold of its kind (derived from the run, see the module).
    pub flagged: bool,
    /// The label it is about (none for `overlooked`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<Uuid>,
    /// The prediction behind it (none for a `spurious` label nothing overlaps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction: Option<Uuid>,
    /// The label's class (the prediction's for `overlooked`).
    pub class: String,
    /// The label's box (the prediction's for `overlooked`).
    pub bbox: BBox,
    /// The prediction's class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted_class: Option<String>,
    /// The prediction's box: where a fix would move or add the label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted_bbox: Option<BBox>,
    /// The prediction's model score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction_score: Option<f64>,
    /// Overlap of the label and the prediction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iou: Option<f64>,
    /// A label's score for each kind that concerns labels (absent for `overlooked`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scores: Option<LabelScores>,
    /// A sentence for people.
    pub reason: String,
}

/// An image's strongest score of each kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct IssueScores {
    pub overlooked: f64,
    pub spurious: f64,
    pub badly_located: f64,
    pub swapped_class: f64,
}

impl IssueScores {
    fn raise(&mut self, kind: IssueKind, score: f64) {
        let slot = match kind {
            IssueKind::Overlooked => &mut self.overlooked,
            IssueKind::Spurious => &mut self.spurious,
            IssueKind::BadlyLocated => &mut self.badly_located,
            IssueKind::SwappedClass => &mut self.swapped_class,
        };
        *slot = slot.max(score);
    }

    /// The score of one kind.
    pub fn get(&self, kind: IssueKind) -> f64 {
        match kind {
            IssueKind::Overlooked => self.overlooked,
            IssueKind::Spurious => self.spurious,
            IssueKind::BadlyLocated => self.badly_located,
            IssueKind::SwappedClass => self.swapped_class,
        }
    }
}

/// The per-image summary of its issues.
pub(super) fn summarize(issues: &[LabelIssue]) -> (f64, IssueScores) {
    let mut scores = IssueScores::default();
    let mut clean = 1.0;
    for i in issues {
        scores.raise(i.kind, i.score);
        clean *= 1.0 - i.score.clamp(0.0, 1.0);
    }
    (1.0 - clean, scores)
}

/// What the run says about one class, fitted on the run itself.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassCalibration {
    pub class: String,
    /// Predictions of the class in the triaged images.
    pub predictions: usize,
    /// Labels of the class there.
    pub labels: usize,
    /// The lowest score at which a prediction of the class is more often confirmed by a label
    /// than not (calibrated precision ≥ 0.5); none when it never is.
    pub confident_score: Option<f64>,
    /// The mean support of its labels: how often the model finds what is labelled.
    pub support_rate: f64,
}

/// A monotone (non-decreasing) step function fitted by pool-adjacent-violators.
#[derive(Clone, Debug, Default)]
struct Curve {
    /// The lowest score of each step, ascending.
    starts: Vec<f64>,
    values: Vec<f64>,
}

impl Curve {
    /// Fits P(confirmed | score) to `(score, confirmed)` observations.
    fn fit(mut points: Vec<(f64, bool)>) -> Curve {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Blocks of (sum, count, lowest score); merged while they would decrease.
        let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
        for (score, hit) in points {
            blocks.push((if hit { 1.0 } else { 0.0 }, 1.0, score));
            while blocks.len() > 1 {
                let n = blocks.len();
                let (s1, c1, _) = blocks[n - 2];
                let (s2, c2, _) = blocks[n - 1];
                if s1 / c1 <= s2 / c2 {
                    break;
                }
                blocks.pop();
                let last = blocks.last_mut().expect("two blocks were there");
                last.0 += s2;
                last.1 += c2;
            }
        }
        Curve {
            starts: blocks.iter().map(|b| b.2).collect(),
            values: blocks.iter().map(|b| b.0 / b.1).collect(),
        }
    }

    fn at(&self, score: f64) -> f64 {
        let i = self.starts.partition_point(|&s| s <= score);
        self.values
            .get(i.saturating_sub(1))
            .copied()
            .unwrap_or_default()
    }
}

/// A run calibrated against the labels of the images it covered.
pub(super) struct Calibration {
    all: Curve,
    /// Predictions the fit over every class saw.
    total: f64,
    per_class: HashMap<i64, (Curve, f64)>,
    /// Label area terciles (the edges between small, medium and large for this run).
    area_edges: [f64; 2],
    /// Per size bucket: (sum of support, labels).
    support_by_size: [(f64, f64); 3],
    /// (class, size bucket) → (sum of support, labels).
    support: HashMap<(i64, usize), (f64, f64)>,
    /// The prior chance that a label is wrong.
    error_prior: f64,
    match_iou: f64,
    pub(super) classes: Vec<ClassCalibration>,
    confident: HashMap<i64, f64>,
    /// (label class, predicted class) → the run's swap evidence of that pair, summed over its
    /// labels: how often the model sees the one class where the other is labelled.
    conflicts: HashMap<(i64, i64), f64>,
    /// Non-crowd labels per class.
    label_counts: HashMap<i64, usize>,
    /// (label class, predicted class) → labels of the one where the other is the most credible
    /// prediction of another class.
    conflict_counts: HashMap<(i64, i64), usize>,
    /// The swap evidence summed over every label, and the number of labels.
    conflict_total: (f64, f64),
}

fn overlap(label: &Label, b: &BBox) -> f64 {
    label.overlap(b)
}

impl Calibration {
    /// Fits the calibration to the images' predictions and labels.
    pub(super) fn fit(
        images: &[(&[&Prediction], &[&Label])],
        names: &HashMap<i64, String>,
        match_iou: f64,
        error_prior: f64,
    ) -> Calibration {
        // Which predictions a label confirms: per image and class, best score first, each label
        // taken once (like evaluation). Predictions inside crowd regions are left out.
        let mut points: HashMap<i64, Vec<(f64, bool)>> = HashMap::new();
        for (preds, labels) in images {
            let mut taken: HashSet<Uuid> = HashSet::new();
            let mut order: Vec<&Prediction> = preds.to_vec();
            order.sort_by(|a, b| b.dt.score.total_cmp(&a.dt.score));
            for p in order {
                let best = labels
                    .iter()
                    .filter(|l| !l.crowd && l.class == p.dt.category && !taken.contains(&l.id))
                    .map(|l| (l.bbox.iou(&p.dt.bbox), l.id))
                    .filter(|(iou, _)| *iou >= match_iou)
                    .max_by(|a, b| a.0.total_cmp(&b.0));
                let hit = match best {
                    Some((_, id)) => {
                        taken.insert(id);
                        true
                    }
                    None => false,
                };
                let in_crowd = labels.iter().any(|l| {
                    l.crowd && l.class == p.dt.category && overlap(l, &p.dt.bbox) >= match_iou
                });
                if hit || !in_crowd {
                    points
                        .entry(p.dt.category)
                        .or_default()
                        .push((p.dt.score, hit));
                }
            }
        }
        let all = Curve::fit(points.values().flatten().copied().collect());
        let total = points.values().map(Vec::len).sum::<usize>() as f64;
        let counts: HashMap<i64, usize> = points.iter().map(|(c, v)| (*c, v.len())).collect();
        let per_class: HashMap<i64, (Curve, f64)> = points
            .into_iter()
            .map(|(c, v)| {
                let n = v.len() as f64;
                (c, (Curve::fit(v), n))
            })
            .collect();
        let mut cal = Calibration {
            all,
            total,
            per_class,
            area_edges: [0.0, 0.0],
            support_by_size: [(0.0, 0.0); 3],
            support: HashMap::new(),
            error_prior: error_prior.clamp(1e-6, 1.0 - 1e-6),
            match_iou,
            classes: Vec::new(),
            confident: HashMap::new(),
            conflicts: HashMap::new(),
            conflict_counts: HashMap::new(),
            label_counts: HashMap::new(),
            conflict_total: (0.0, 0.0),
        };
        // Sizes: terciles of the label areas.
        let mut areas: Vec<f64> = images
            .iter()
            .flat_map(|(_, ls)| ls.iter().filter(|l| !l.crowd).map(|l| l.bbox.area()))
            .collect();
        areas.sort_by(f64::total_cmp);
        if !areas.is_empty() {
            cal.area_edges = [areas[areas.len() / 3], areas[2 * areas.len() / 3]];
        }
        let mut by_size = [(0.0, 0.0); 3];
        let mut label_counts: HashMap<i64, usize> = HashMap::new();
        for (preds, labels) in images {
            for l in labels.iter().filter(|l| !l.crowd) {
                let s = cal.support_of(l, preds);
                let b = cal.size_bucket(&l.bbox);
                by_size[b].0 += s;
                by_size[b].1 += 1.0;
                let e = cal.support.entry((l.class, b)).or_default();
                e.0 += s;
                e.1 += 1.0;
                *label_counts.entry(l.class).or_default() += 1;
                let conflict = cal
                    .swap_candidate(l, preds)
                    .map(|(o, _, p)| (p.dt.category, o * (1.0 - s)));
                if let Some((other, evidence)) = conflict {
                    *cal.conflicts.entry((l.class, other)).or_default() += evidence;
                    *cal.conflict_counts.entry((l.class, other)).or_default() += 1;
                    cal.conflict_total.0 += evidence;
                }
                cal.conflict_total.1 += 1.0;
            }
        }
        cal.support_by_size = by_size;
        // Per-class thresholds and the table people see.
        let mut classes: Vec<i64> = counts.keys().chain(label_counts.keys()).copied().collect();
        classes.sort_unstable();
        classes.dedup();
        for c in classes {
            let confident = cal.confident_score(c);
            if let Some(s) = confident {
                cal.confident.insert(c, s);
            }
            let (sum, n) = (0..3)
                .filter_map(|b| cal.support.get(&(c, b)))
                .fold((0.0, 0.0), |a, x| (a.0 + x.0, a.1 + x.1));
            cal.classes.push(ClassCalibration {
                class: names.get(&c).cloned().unwrap_or_default(),
                predictions: counts.get(&c).copied().unwrap_or_default(),
                labels: label_counts.get(&c).copied().unwrap_or_default(),
                confident_score: confident,
                support_rate: if n > 0.0 { sum / n } else { 0.0 },
            });
        }
        cal.label_counts = label_counts;
        cal
    }

    /// The calibrated chance that a prediction of `class` at `score` is a real object of it:
    /// the class's fit, pooled with the fit over every class, itself pooled with the model's
    /// own score (so that a small run, where one unconfirmed box is the whole evidence, does
    /// not conclude that the model is always wrong).
    fn precision(&self, class: i64, score: f64) -> f64 {
        let pooled = (self.total * self.all.at(score) + POOL_WEIGHT * score.clamp(0.0, 1.0))
            / (self.total + POOL_WEIGHT);
        match self.per_class.get(&class) {
            Some((curve, n)) => (n * curve.at(score) + POOL_WEIGHT * pooled) / (n + POOL_WEIGHT),
            None => pooled,
        }
    }

    /// The lowest score of the class's predictions (or of any class's, for a class the run
    /// never predicted) at which the calibrated precision reaches one half.
    fn confident_score(&self, class: i64) -> Option<f64> {
        let mut starts: Vec<f64> = self.all.starts.clone();
        if let Some((curve, _)) = self.per_class.get(&class) {
            starts.extend(&curve.starts);
        }
        starts.sort_by(f64::total_cmp);
        starts
            .into_iter()
            .find(|&s| self.precision(class, s) >= 0.5)
    }

    fn is_confident(&self, class: i64, score: f64) -> bool {
        self.confident.get(&class).is_some_and(|&t| score >= t)
    }

    fn size_bucket(&self, b: &BBox) -> usize {
        let a = b.area();
        if a < self.area_edges[0] {
            0
        } else if a < self.area_edges[1] {
            1
        } else {
            2
        }
    }

    /// How strongly the predictions support a label: 1 when a prediction of its class at or
    /// above the class's confident score matches it, else the best calibrated precision of a
    /// prediction of its class that matches it (below one half).
    fn support_of(&self, l: &Label, preds: &[&Prediction]) -> f64 {
        preds
            .iter()
            .filter(|p| p.dt.category == l.class && l.bbox.iou(&p.dt.bbox) >= self.match_iou)
            .map(|p| {
                let q = self.precision(p.dt.category, p.dt.score);
                if q >= 0.5 { 1.0 } else { q }
            })
            .fold(0.0, f64::max)
    }

    /// The expected support of a real label of this class and size (the model's recall, soft),
    /// leaving out the label itself (whose support is `own`): a label is not evidence about
    /// itself.
    fn support_rate(&self, l: &Label, own: f64) -> f64 {
        let b = self.size_bucket(&l.bbox);
        let (bsum, bn) = self.support_by_size[b];
        let bucket = if bn > 1.0 {
            (bsum - own) / (bn - 1.0)
        } else {
            0.0
        };
        let (sum, n) = self.support.get(&(l.class, b)).copied().unwrap_or_default();
        let (sum, n) = if n >= 1.0 {
            (sum - own, n - 1.0)
        } else {
            (0.0, 0.0)
        };
        ((sum + POOL_WEIGHT * bucket) / (n + POOL_WEIGHT)).clamp(0.0, 1.0)
    }

    /// The chance that a label with support `support` is wrong, when real labels of its kind
    /// have `rate` on average: P(wrong | unsupported), with the unsupported share `1 - support`
    /// as the evidence, by Bayes' rule with the error prior.
    fn spurious(&self, support: f64, rate: f64) -> f64 {
        let u = (1.0 - support).clamp(0.0, 1.0);
        let pi = self.error_prior;
        let wrong = pi * u;
        let real = (1.0 - pi) * (1.0 - rate).max(1e-6);
        if wrong <= 0.0 {
            0.0
        } else {
            wrong / (wrong + real)
        }
    }

    /// The most credible prediction of another class where the label is: (its calibrated
    /// precision, its IoU with the label, the prediction).
    fn swap_candidate<'p>(
        &self,
        l: &Label,
        preds: &[&'p Prediction],
    ) -> Option<(f64, f64, &'p Prediction)> {
        preds
            .iter()
            .filter(|p| p.dt.category != l.class)
            .map(|p| (l.bbox.iou(&p.dt.bbox), *p))
            .filter(|(iou, _)| *iou >= self.match_iou)
            .map(|(iou, p)| (self.precision(p.dt.category, p.dt.score), iou, p))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    }

    /// How much a swap of a `label` class box to `predicted` says, in `(0, 1]`, and the share
    /// of the other `label` boxes where the model sees `predicted`. A label error is rare; a model's habit
    /// is not: when the model sees this other class on more of this class's labels than it sees
    /// another class on labels in general, the excess is the model's confusion of the two, and
    /// the evidence shrinks by the ratio (Bayes' rule: the conflict is that much likelier when
    /// the label is right). The rates leave the label itself out (its evidence is `own`) and pool
    /// the pair with the overall rate by a few pseudo-observations.
    fn habit(&self, label: i64, predicted: i64, own: f64) -> (f64, f64) {
        let (total, n) = self.conflict_total;
        if n <= 1.0 {
            return (1.0, 0.0);
        }
        let overall = ((total - own) / (n - 1.0)).max(0.0);
        let pair = self
            .conflicts
            .get(&(label, predicted))
            .copied()
            .unwrap_or_default();
        let count = self.label_counts.get(&label).copied().unwrap_or_default();
        let others = count.saturating_sub(1) as f64;
        let seen = self
            .conflict_counts
            .get(&(label, predicted))
            .copied()
            .unwrap_or_default();
        let rate = if others > 0.0 {
            (seen.saturating_sub(1) as f64 / others).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let pooled = ((pair - own).max(0.0) + POOL_WEIGHT * overall) / (others + POOL_WEIGHT);
        let factor = if pooled > overall && pooled > 0.0 {
            overall / pooled
        } else {
            1.0
        };
        (factor, rate)
    }

    /// The issues of one image: one per label (its strongest kind) and one per prediction that
    /// no label covers (duplicates of a stronger one left out).
    pub(super) fn image_issues(
        &self,
        preds: &[&Prediction],
        labels: &[&Label],
        names: &HashMap<i64, String>,
    ) -> Vec<LabelIssue> {
        let name = |c: i64| names.get(&c).cloned().unwrap_or_default();
        let tau = self.match_iou;
        let covered = |b: &BBox| labels.iter().any(|l| overlap(l, b) >= tau);
        let mut consumed: HashSet<Uuid> = HashSet::new();
        let mut out = Vec::new();
        // Labels with their support and class: a prediction near one is likely that object.
        let mut confirmed: Vec<(BBox, f64, i64)> = Vec::new();
        for l in labels.iter().filter(|l| !l.crowd) {
            let support = self.support_of(l, preds);
            confirmed.push((l.bbox, support, l.class));
            let rate = self.support_rate(l, support);
            let spurious = self.spurious(support, rate);
            // The most credible prediction of another class where the label is, discounted by
            // how usual that other class is on labels of this class.
            let swap = self.swap_candidate(l, preds).map(|(o, iou, p)| {
                let (habit, rate) = self.habit(l.class, p.dt.category, o * (1.0 - support));
                (o * habit, iou, p, habit, rate)
            });
            // Both explain the label's missing support; the other class explains it better, so
            // a swap is at least as likely as a spurious label.
            let swapped = swap.map_or(0.0, |(o, ..)| {
                1.0 - (1.0 - spurious) * (1.0 - o * (1.0 - support))
            });
            // The most credible prediction of the label's class nearby that no label covers.
            let near = preds
                .iter()
                .filter(|p| p.dt.category == l.class && !covered(&p.dt.bbox))
                .map(|p| (l.bbox.iou(&p.dt.bbox), *p))
                .filter(|(iou, _)| *iou > 0.0 && *iou < tau)
                .map(|(iou, p)| {
                    (
                        self.precision(p.dt.category, p.dt.score) * (1.0 - iou / tau),
                        iou,
                        p,
                    )
                })
                .max_by(|a, b| a.0.total_cmp(&b.0));
            // Like a swap, a better place explains only the support the label lacks: a label a
            // prediction confirms is where the model sees it, whatever else the model sees near.
            let badly = near.map_or(0.0, |(o, _, _)| {
                1.0 - (1.0 - spurious) * (1.0 - o * (1.0 - support))
            });
            let scores = LabelScores {
                spurious,
                badly_located: badly,
                swapped_class: swapped,
            };
            let class = name(l.class);
            let issue = if swapped >= badly && swapped >= spurious && swapped > 0.0 {
                let (_, iou, p, habit, rate) = swap.expect("a swap score comes from a prediction");
                for q in preds
                    .iter()
                    .filter(|q| q.dt.category != l.class && l.bbox.iou(&q.dt.bbox) >= tau)
                {
                    consumed.insert(q.id);
                }
                let other = name(p.dt.category);
                LabelIssue {
                    kind: IssueKind::SwappedClass,
                    score: swapped,
                    flagged: self.is_confident(p.dt.category, p.dt.score)
                        && support < 0.5
                        && habit >= 0.5,
                    label: Some(l.id),
                    prediction: Some(p.id),
                    reason: if habit < 1.0 {
                        format!(
                            "labeled {class} but the model sees a {other} there (score {:.2}, IoU {iou:.2}) and no {class}, as it does on {:.0}% of {class} labels: the class may be wrong, or the model often takes a {class} for a {other}",
                            p.dt.score,
                            100.0 * rate
                        )
                    } else {
                        format!(
                            "labeled {class} but the model sees a {other} there (score {:.2}, IoU {iou:.2}) and no {class}: the class is probably wrong",
                            p.dt.score
                        )
                    },
                    class,
                    bbox: l.bbox,
                    predicted_class: Some(other),
                    predicted_bbox: Some(p.dt.bbox),
                    prediction_score: Some(p.dt.score),
                    iou: Some(iou),
                    scores: Some(scores),
                }
            } else if badly > spurious {
                let (_, iou, p) = near.expect("a badly-located score comes from a prediction");
                consumed.insert(p.id);
                LabelIssue {
                    kind: IssueKind::BadlyLocated,
                    score: badly,
                    flagged: self.is_confident(p.dt.category, p.dt.score),
                    label: Some(l.id),
                    prediction: Some(p.id),
                    reason: format!(
                        "the model sees this {class} elsewhere (score {:.2}, IoU {iou:.2} with the label): the box is probably badly placed",
                        p.dt.score
                    ),
                    class,
                    bbox: l.bbox,
                    predicted_class: Some(name(p.dt.category)),
                    predicted_bbox: Some(p.dt.bbox),
                    prediction_score: Some(p.dt.score),
                    iou: Some(iou),
                    scores: Some(scores),
                }
            } else {
                LabelIssue {
                    kind: IssueKind::Spurious,
                    score: spurious,
                    // Surprising: the model usually finds labels like it, and not this one.
                    flagged: support < 0.5 && rate >= 0.5,
                    label: Some(l.id),
                    prediction: None,
                    reason: if preds.is_empty() {
                        format!(
                            "the model found nothing on this image, though it finds {:.0}% of {class} labels of this size: this label is wrong or the model missed it",
                            100.0 * rate
                        )
                    } else {
                        format!(
                            "no prediction supports this {class} label (support {support:.2}; labels like it get {rate:.2}): probably wrong, or missed by the model"
                        )
                    },
                    class,
                    bbox: l.bbox,
                    predicted_class: None,
                    predicted_bbox: None,
                    prediction_score: None,
                    iou: None,
                    scores: Some(scores),
                }
            };
            out.push(issue);
        }
        // Predictions no label covers, best first; a duplicate of one already reported is not.
        let mut order: Vec<&Prediction> = preds.to_vec();
        order.sort_by(|a, b| b.dt.score.total_cmp(&a.dt.score));
        let mut reported: Vec<BBox> = Vec::new();
        for p in order {
            if consumed.contains(&p.id)
                || covered(&p.dt.bbox)
                || reported.iter().any(|b| b.iou(&p.dt.bbox) >= tau)
            {
                continue;
            }
            reported.push(p.dt.bbox);
            // A prediction that overlaps a label of its class (below the matching IoU) is most
            // likely that object at another extent, and one that overlaps a label of another
            // class the model sees (by another prediction) a second box of it, not a missed one:
            // the more it overlaps (and the better that label is supported), the less it says.
            let duplicate = confirmed
                .iter()
                .map(|(b, support, class)| {
                    let same = *class == p.dt.category;
                    b.iou(&p.dt.bbox) * if same { 1.0 } else { *support }
                })
                .fold(0.0, f64::max);
            let distinct = (1.0 - duplicate / tau).clamp(0.0, 1.0);
            let q = self.precision(p.dt.category, p.dt.score);
            let class = name(p.dt.category);
            let best = labels
                .iter()
                .map(|l| overlap(l, &p.dt.bbox))
                .fold(0.0, f64::max);
            // A discount under a tenth goes unsaid.
            let reason = if distinct < 0.9 {
                format!(
                    "the model sees a {class} (score {:.2}, {:.0}% of its {class} predictions at this score are labelled) where no label is (best overlap {best:.2}), though it overlaps a label it may stand for (overlap {duplicate:.2}): a label may be missing, or this is that labelled object drawn to another extent",
                    p.dt.score,
                    100.0 * q
                )
            } else {
                format!(
                    "the model sees a {class} (score {:.2}, {:.0}% of its {class} predictions at this score are labelled) where no label is (best overlap {best:.2}): a label is probably missing",
                    p.dt.score,
                    100.0 * q
                )
            };
            out.push(LabelIssue {
                kind: IssueKind::Overlooked,
                score: q * distinct,
                flagged: self.is_confident(p.dt.category, p.dt.score) && distinct >= 0.5,
                label: None,
                prediction: Some(p.id),
                reason,
                class: class.clone(),
                bbox: p.dt.bbox,
                predicted_class: Some(class),
                predicted_bbox: Some(p.dt.bbox),
                prediction_score: Some(p.dt.score),
                iou: Some(best),
                scores: None,
            });
        }
        out.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.kind.cmp(&b.kind))
                .then(a.label.cmp(&b.label))
                .then(a.prediction.cmp(&b.prediction))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::eval::DtBox;

    fn pred(n: u128, image: i64, class: i64, b: [f64; 4], score: f64) -> Prediction {
        Prediction {
            id: Uuid::from_u128(n),
            dt: DtBox {
                image,
                category: class,
                bbox: BBox::new(b[0], b[1], b[2], b[3]),
                score,
            },
        }
    }

    fn label(n: u128, image: i64, class: i64, b: [f64; 4]) -> Label {
        Label {
            id: Uuid::from_u128(n),
            image,
            class,
            bbox: BBox::new(b[0], b[1], b[2], b[3]),
            crowd: false,
        }
    }

    /// The predictions and labels of images `0..n`, image by image.
    fn per_image<'a>(
        preds: &'a [Prediction],
        labels: &'a [Label],
        n: i64,
    ) -> Vec<(Vec<&'a Prediction>, Vec<&'a Label>)> {
        (0..n)
            .map(|i| {
                (
                    preds.iter().filter(|p| p.dt.image == i).collect(),
                    labels.iter().filter(|l| l.image == i).collect(),
                )
            })
            .collect()
    }

    /// The run calibrated on images grouped by `per_image`.
    fn calibrate(
        by_image: &[(Vec<&Prediction>, Vec<&Label>)],
        names: &HashMap<i64, String>,
        error_prior: f64,
    ) -> Calibration {
        let refs: Vec<(&[&Prediction], &[&Label])> = by_image
            .iter()
            .map(|(p, l)| (p.as_slice(), l.as_slice()))
            .collect();
        Calibration::fit(&refs, names, 0.5, error_prior)
    }

    #[test]
    fn the_monotone_fit_pools_violators() {
        let c = Curve::fit(vec![(0.1, false), (0.2, true), (0.3, false), (0.9, true)]);
        assert_eq!(c.at(0.0), 0.0);
        assert_eq!(c.at(0.1), 0.0);
        assert_eq!(c.at(0.25), 0.5);
        assert_eq!(c.at(0.3), 0.5);
        assert_eq!(c.at(0.95), 1.0);
        assert_eq!(Curve::fit(Vec::new()).at(0.5), 0.0);
    }

    /// Two classes on 20 images: class 1's predictions are confirmed above 0.6, class 2's only
    /// above 0.85. Their confident scores come out where their own runs put them.
    #[test]
    fn confident_scores_are_derived_per_class_from_the_run() {
        let mut preds = Vec::new();
        let mut labels = Vec::new();
        let mut n = 0u128;
        for image in 0..20i64 {
            let s = f64::from(u8::try_from(image).expect("small")) / 20.0;
            for (class, edge) in [(1, 0.6), (2, 0.85)] {
                n += 1;
                let x = 100.0 * class as f64;
                preds.push(pred(n, image, class, [x, 0.0, 50.0, 50.0], s));
                if s >= edge {
                    n += 1;
                    labels.push(label(n, image, class, [x, 0.0, 50.0, 50.0]));
                }
            }
        }
        let by_image = per_image(&preds, &labels, 20);
        let names = HashMap::from([(1, "a".to_owned()), (2, "b".to_owned())]);
        let cal = calibrate(&by_image, &names, 0.05);
        let t1 = cal.confident_score(1).expect("class 1 has a threshold");
        let t2 = cal.confident_score(2).expect("class 2 has a threshold");
        assert!((0.5..=0.65).contains(&t1), "class 1 threshold {t1}");
        assert!((0.75..=0.9).contains(&t2), "class 2 threshold {t2}");
        assert!(t2 > t1);
        assert_eq!(cal.classes.len(), 2);
        assert_eq!(cal.classes[0].confident_score, Some(t1));
        // The same score is strong evidence for class 1 and weak for class 2.
        assert!(cal.precision(1, 0.7) > 0.5 && cal.precision(2, 0.7) < 0.5);
    }

    /// A model that often draws a second, taller box, as confident, beside an object it finds
    /// (IoU 0.4 with the label it confirms) points at no label error: the label is not badly placed and the
    /// second box is not a missed object. A label the model sees half a box away is.
    #[test]
    fn a_second_box_beside_a_confirmed_label_is_no_error() {
        let mut preds = Vec::new();
        let mut labels = Vec::new();
        for image in 0..40i64 {
            let n = 10 * u128::try_from(image).expect("small");
            let (real, second) = if image % 2 == 0 {
                (0.9, 0.95)
            } else {
                (0.95, 0.9)
            };
            labels.push(label(n, image, 1, [0.0, 0.0, 100.0, 50.0]));
            preds.push(pred(n + 1, image, 1, [0.0, 0.0, 100.0, 50.0], real));
            // Images 0-19: the second box, as confident as the real one (so the score cannot
            // tell them apart): the object and more below it (IoU 0.4).
            if image < 20 {
                preds.push(pred(n + 2, image, 1, [0.0, 0.0, 100.0, 125.0], second));
            }
        }
        // Image 40: the label is misplaced by half its size; the model sees it where it is.
        labels.push(label(400, 40, 1, [50.0, 25.0, 100.0, 50.0]));
        preds.push(pred(401, 40, 1, [0.0, 0.0, 100.0, 50.0], 0.9));
        let by_image = per_image(&preds, &labels, 41);
        let names = HashMap::from([(1, "a".to_owned())]);
        let cal = calibrate(&by_image, &names, 0.02);
        let clean = cal.image_issues(&by_image[0].0, &by_image[0].1, &names);
        // The label: nothing beyond the small chance that any label is wrong.
        let l = clean
            .iter()
            .find_map(|i| i.label.and(i.scores))
            .expect("the label's issue");
        assert!(l.badly_located - l.spurious < 1e-9, "{clean:?}");
        // The second box: a fifth of its calibrated precision (it overlaps the label at 0.4).
        let second = clean
            .iter()
            .find(|i| i.kind == IssueKind::Overlooked)
            .expect("the second box is reported");
        assert!(second.score <= 0.2 + 1e-9 && !second.flagged, "{clean:?}");
        let worst = clean.iter().map(|i| i.score).fold(0.0, f64::max);
        let misplaced = cal.image_issues(&by_image[40].0, &by_image[40].1, &names);
        let top = misplaced
            .iter()
            .max_by(|a, b| a.score.total_cmp(&b.score))
            .expect("an issue");
        assert_eq!(top.kind, IssueKind::BadlyLocated, "{misplaced:?}");
        assert!(top.score > 0.3 && top.score > 2.0 * worst, "{top:?}");
    }

    /// A model that calls every label of class 2 a class 3 has a habit; one class-1 label where
    /// it sees a class 3 is the swap worth a look.
    #[test]
    fn a_class_the_model_always_takes_for_another_is_a_habit_not_a_swap() {
        let mut preds = Vec::new();
        let mut labels = Vec::new();
        for image in 0..41i64 {
            let n = 10 * u128::try_from(image).expect("small");
            // Class 3, seen where it is labelled.
            labels.push(label(n, image, 3, [400.0, 0.0, 100.0, 50.0]));
            preds.push(pred(n + 1, image, 3, [400.0, 0.0, 100.0, 50.0], 0.9));
            if image < 40 {
                // Class 1, seen where it is labelled.
                labels.push(label(n + 2, image, 1, [0.0, 0.0, 100.0, 50.0]));
                preds.push(pred(n + 3, image, 1, [0.0, 0.0, 100.0, 50.0], 0.9));
            } else {
                // Image 40: a class-1 label where the model sees a class 3 (the planted swap).
                labels.push(label(n + 2, image, 1, [0.0, 0.0, 100.0, 50.0]));
                preds.push(pred(n + 3, image, 3, [0.0, 0.0, 100.0, 50.0], 0.9));
            }
            if image < 20 {
                // Class 2: the model always sees a class 3 there.
                labels.push(label(n + 4, image, 2, [200.0, 0.0, 100.0, 50.0]));
                preds.push(pred(n + 5, image, 3, [200.0, 0.0, 100.0, 50.0], 0.9));
            }
        }
        let by_image = per_image(&preds, &labels, 41);
        let names = HashMap::from([
            (1, "a".to_owned()),
            (2, "b".to_owned()),
            (3, "c".to_owned()),
        ]);
        let cal = calibrate(&by_image, &names, 0.02);
        let swap_of = |image: usize, class: &str| {
            cal.image_issues(&by_image[image].0, &by_image[image].1, &names)
                .into_iter()
                .find(|i| i.class == class && i.label.is_some())
                .expect("the label's issue")
        };
        let habit = swap_of(0, "b");
        let planted = swap_of(40, "a");
        assert_eq!(planted.kind, IssueKind::SwappedClass, "{planted:?}");
        assert!(planted.flagged, "{planted:?}");
        assert!(!habit.flagged, "{habit:?}");
        assert!(planted.score > 2.0 * habit.score, "{planted:?} {habit:?}");
        assert!(
            habit.reason.contains("as it does on 100% of b labels"),
            "{habit:?}"
        );
    }

    /// A confident box that overlaps a label the model half sees (by a low-scored box) is
    /// partly a second box of it: it loses evidence with the support the label has, less than
    /// beside a confirmed label, more than beside none.
    #[test]
    fn a_box_beside_a_half_seen_label_says_less_than_a_lone_one() {
        let mut preds = Vec::new();
        let mut labels = Vec::new();
        for image in 0..40i64 {
            let n = 10 * u128::try_from(image).expect("small");
            labels.push(label(n, image, 1, [0.0, 0.0, 100.0, 50.0]));
            preds.push(pred(n + 1, image, 1, [0.0, 0.0, 100.0, 50.0], 0.9));
            // Half seen: found at 0.3, a score at which the model is right a third of the time.
            labels.push(label(n + 2, image, 1, [300.0, 0.0, 100.0, 50.0]));
            preds.push(pred(n + 3, image, 1, [300.0, 0.0, 100.0, 50.0], 0.3));
            preds.push(pred(n + 4, image, 1, [600.0, 0.0, 100.0, 50.0], 0.3));
            preds.push(pred(n + 5, image, 1, [900.0, 0.0, 100.0, 50.0], 0.3));
            // Class 2, seen where it is labelled.
            labels.push(label(n + 6, image, 2, [1200.0, 0.0, 100.0, 50.0]));
            preds.push(pred(n + 7, image, 2, [1200.0, 0.0, 100.0, 50.0], 0.9));
        }
        // Image 0: a confident class-2 box, taller, over the half-seen label (IoU 0.4).
        preds.push(pred(1000, 0, 2, [300.0, 0.0, 100.0, 125.0], 0.9));
        let by_image = per_image(&preds, &labels, 40);
        let names = HashMap::from([(1, "a".to_owned()), (2, "b".to_owned())]);
        let cal = calibrate(&by_image, &names, 0.02);
        let q = cal.precision(2, 0.9);
        let half = cal.precision(1, 0.3);
        assert!((0.2..0.5).contains(&half), "{half}");
        let issues = cal.image_issues(&by_image[0].0, &by_image[0].1, &names);
        let taller = issues
            .iter()
            .find(|i| i.prediction == Some(Uuid::from_u128(1000)))
            .expect("the taller box is reported");
        assert_eq!(taller.kind, IssueKind::Overlooked);
        // 1 - support x IoU / 0.5, with the support the low-scored box gives.
        let expected = q * (1.0 - half * 0.4 / 0.5);
        assert!(
            (taller.score - expected).abs() < 1e-6,
            "{taller:?} vs {expected}"
        );
        assert!(
            taller.score > 0.2 * q + 0.1 && taller.score < q - 0.1,
            "{taller:?}"
        );
    }

    /// A box of a label's class that overlaps the label below the matching IoU is, most often,
    /// that object drawn to another extent, whether or not the model supports the label: the
    /// more it overlaps, the less it says that an object was overlooked.
    #[test]
    fn a_box_over_a_label_of_its_class_is_that_object_more_than_a_missed_one() {
        let mut preds = Vec::new();
        let mut labels = Vec::new();
        for image in 0..40i64 {
            let n = 10 * u128::try_from(image).expect("small");
            labels.push(label(n, image, 1, [0.0, 0.0, 100.0, 50.0]));
            preds.push(pred(n + 1, image, 1, [0.0, 0.0, 100.0, 50.0], 0.9));
        }
        // Image 0: a label the model sees only at other extents: lower (IoU 0.25), which the
        // label's badly-located issue takes, and taller (IoU 0.4).
        labels.push(label(1000, 0, 1, [300.0, 0.0, 100.0, 50.0]));
        preds.push(pred(1001, 0, 1, [300.0, 30.0, 100.0, 50.0], 0.9));
        preds.push(pred(1002, 0, 1, [300.0, 0.0, 100.0, 125.0], 0.9));
        let by_image = per_image(&preds, &labels, 40);
        let names = HashMap::from([(1, "a".to_owned())]);
        let cal = calibrate(&by_image, &names, 0.02);
        let issues = cal.image_issues(&by_image[0].0, &by_image[0].1, &names);
        let placed = issues
            .iter()
            .find(|i| i.label == Some(Uuid::from_u128(1000)))
            .expect("the label's issue");
        assert_eq!(placed.kind, IssueKind::BadlyLocated, "{issues:?}");
        assert_eq!(placed.prediction, Some(Uuid::from_u128(1001)));
        let taller = issues
            .iter()
            .find(|i| i.prediction == Some(Uuid::from_u128(1002)))
            .expect("the taller box is reported");
        assert_eq!(taller.kind, IssueKind::Overlooked);
        let q = cal.precision(1, 0.9);
        assert!(q > 0.5, "{q}");
        // A fifth of its evidence (IoU 0.4 of 0.5), as beside a confirmed label.
        assert!(
            taller.score <= 0.2 * q + 1e-9 && !taller.flagged,
            "{taller:?}"
        );
    }
}
