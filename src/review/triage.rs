//! Triage: which images to review first, ranked from a model run's predictions and the current
//! labels, with the signals behind each image's score.
//!
//! Signals (each adds its weight to the image's score):
//! - `missing_label`: a confident prediction (score ≥ 0.5) that no label of any class overlaps
//!   at IoU 0.5: a label is probably missing. Weight: the prediction's score.
//! - `wrong_class`: a label that no prediction of its class matches, while a confident
//!   prediction of another class does: the label's class is probably wrong. Weight: that score.
//! - `unmatched_label`: a label that no prediction matches at all: probably wrong or badly placed,
//!   or missed by the model (every label of an image the run covered and found nothing on).
//!   Weight 0.5 (a silent model is weaker evidence than a confident one).
//! - `uncertain`: a prediction in the ambiguous score band (0.3 to 0.6). Weight 0.25.
//! - `class_confusion`: overlapping predictions (IoU ≥ 0.5) that disagree on the class; weight
//!   half the entropy (in bits) of their score-weighted class distribution.
//!
//! Predictions are read at their original model value (like `eval`); labels are the live state.
//!
//! The ranking itself is by label-error scores ([`issues`]): per box, how likely the labels are
//! wrong in each of four ways (overlooked, spurious, badly located, swapped class), calibrated
//! on the run's own predictions and labels; per image, the chance that at least one box is
//! wrong. The signals above stay beside them as the reasons people read. Each issue suggests a
//! fix ([`fix`]: add the predicted box, snap a label to it, take its class, delete the label),
//! which the app offers on one key.

pub mod fix;
pub mod issues;

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use uuid::Uuid;

use self::issues::{Calibration, ClassCalibration, IssueScores, LabelIssue};
use super::run_eval::{Prediction, Slice, run_images, run_predictions};
use super::{Result, ReviewError};
use crate::model::BBox;
use crate::store::Project;

/// What to triage and the thresholds of the signals.
#[derive(Clone, Debug, PartialEq)]
pub struct TriageOptions {
    /// The model run (name or id).
    pub run: String,
    /// Keep the best N images.
    pub limit: Option<usize>,
    /// Only images in every one of these slices.
    pub slices: Vec<Slice>,
    /// The ambiguous score band, `[low, high)`.
    pub uncertain_band: (f64, f64),
    /// Predictions at or above this score are confident.
    pub confident_score: f64,
    /// Boxes overlapping at least this much match.
    pub match_iou: f64,
    /// Also rank images that have neither labels nor any review decision. Off by default:
    /// there the run's proposals are not yet reviewed, not missing labels, and would crowd
    /// the top of the ranking.
    pub include_unreviewed: bool,
    /// The prior chance that a label is wrong, which weighs a label no prediction supports
    /// against the model's recall for labels like it (see [`issues`]).
    pub error_prior: f64,
}

impl TriageOptions {
    /// The defaults for `run`: band 0.3–0.6, confident at 0.5, matching at IoU 0.5, one label in
    /// fifty wrong a priori.
    pub fn new(run: &str) -> Self {
        Self {
            run: run.to_owned(),
            limit: None,
            slices: Vec::new(),
            uncertain_band: (0.3, 0.6),
            confident_score: 0.5,
            match_iou: 0.5,
            include_unreviewed: false,
            error_prior: 0.02,
        }
    }
}

/// The kinds of evidence triage looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    MissingLabel,
    WrongClass,
    UnmatchedLabel,
    ClassConfusion,
    Uncertain,
}

impl SignalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::MissingLabel => "missing_label",
            SignalKind::WrongClass => "wrong_class",
            SignalKind::UnmatchedLabel => "unmatched_label",
            SignalKind::ClassConfusion => "class_confusion",
            SignalKind::Uncertain => "uncertain",
        }
    }
}

/// One piece of evidence on an image.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Signal {
    pub kind: SignalKind,
    /// What it adds to the image's score.
    pub weight: f64,
    /// The box it is about (a label for label signals, a prediction otherwise).
    pub annotation: Uuid,
    pub class: String,
    pub bbox: BBox,
    /// The model's score of the prediction involved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The other class involved (the model's class for `wrong_class`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_class: Option<String>,
    /// The overlap involved (best IoU found).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iou: Option<f64>,
    /// A sentence for people.
    pub reason: String,
}

/// Counts of signals per kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SignalCounts {
    pub missing_label: usize,
    pub wrong_class: usize,
    pub unmatched_label: usize,
    pub class_confusion: usize,
    pub uncertain: usize,
}

/// One ranked image.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TriageImage {
    pub image: Uuid,
    pub path: String,
    /// The chance that at least one box of the image is wrong (from its issues' scores); the
    /// ranking's key, higher means review sooner.
    pub score: f64,
    /// The strongest issue score of each kind.
    pub issue_scores: IssueScores,
    /// Issues at or above their per-class thresholds.
    pub flagged: usize,
    /// Per box: its strongest issue, strongest first.
    pub issues: Vec<LabelIssue>,
    /// The sum of the signals' weights (the ranking before label-error scores).
    pub signal_score: f64,
    pub counts: SignalCounts,
    pub predictions: usize,
    pub labels: usize,
    /// Strongest first.
    pub signals: Vec<Signal>,
}

/// A label as triage sees it.
struct Label {
    id: Uuid,
    image: i64,
    class: i64,
    bbox: BBox,
    /// A crowd (group-of) region: as in evaluation, it is never a missed label, and a
    /// prediction inside it is covered (overlap is the share of the prediction inside it).
    crowd: bool,
}

impl Label {
    /// Overlap with a prediction: IoU, or for a crowd region pycocotools' crowd overlap
    /// (intersection over the prediction's area).
    fn overlap(&self, prediction: &BBox) -> f64 {
        if !self.crowd {
            return self.bbox.iou(prediction);
        }
        let ix = (self.bbox.x2().min(prediction.x2()) - self.bbox.x.max(prediction.x)).max(0.0);
        let iy = (self.bbox.y2().min(prediction.y2()) - self.bbox.y.max(prediction.y)).max(0.0);
        let area = prediction.area();
        if area <= 0.0 { 0.0 } else { ix * iy / area }
    }
}

fn live_labels(p: &Project) -> Result<Vec<Label>> {
    Ok(p.live_labels()?
        .into_iter()
        .map(|l| Label {
            id: l.id,
            image: l.image,
            class: l.class,
            bbox: l.bbox,
            crowd: l.flags.iscrowd,
        })
        .collect())
}

/// Entropy in bits of a distribution given by non-negative weights.
fn entropy_bits(weights: &[f64]) -> f64 {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    -weights
        .iter()
        .filter(|&&w| w > 0.0)
        .map(|&w| {
            let q = w / total;
            q * q.log2()
        })
        .sum::<f64>()
}

/// The signals of one image.
fn image_signals(
    preds: &[&Prediction],
    labels: &[&Label],
    names: &HashMap<i64, String>,
    o: &TriageOptions,
) -> Vec<Signal> {
    let name = |c: i64| names.get(&c).cloned().unwrap_or_default();
    let mut out = Vec::new();
    // Predictions best first, so duplicates defer to the stronger box.
    let mut preds: Vec<&Prediction> = preds.to_vec();
    preds.sort_by(|a, b| {
        b.dt.score
            .partial_cmp(&a.dt.score)
            .unwrap_or(std::cmp::Ordering::Equal)
    });

    // Confident predictions that no label overlaps.
    let mut flagged: Vec<BBox> = Vec::new();
    for pr in preds.iter().filter(|p| p.dt.score >= o.confident_score) {
        let best = labels
            .iter()
            .map(|l| l.overlap(&pr.dt.bbox))
            .fold(0.0, f64::max);
        if best >= o.match_iou || flagged.iter().any(|f| f.iou(&pr.dt.bbox) >= o.match_iou) {
            continue;
        }
        flagged.push(pr.dt.bbox);
        out.push(Signal {
            kind: SignalKind::MissingLabel,
            weight: pr.dt.score,
            annotation: pr.id,
            class: name(pr.dt.category),
            bbox: pr.dt.bbox,
            score: Some(pr.dt.score),
            other_class: None,
            iou: Some(best),
            reason: format!(
                "the model sees a {} (score {:.2}) where there is no label (best overlap {:.2}): a label is probably missing",
                name(pr.dt.category),
                pr.dt.score,
                best
            ),
        });
    }

    // Labels that no prediction of their class matches (crowd regions are never missed).
    for l in labels.iter().filter(|l| !l.crowd) {
        let same = preds
            .iter()
            .filter(|p| p.dt.category == l.class)
            .map(|p| l.bbox.iou(&p.dt.bbox))
            .fold(0.0, f64::max);
        if same >= o.match_iou {
            continue;
        }
        let other = preds
            .iter()
            .filter(|p| p.dt.category != l.class && p.dt.score >= o.confident_score)
            .map(|p| (l.bbox.iou(&p.dt.bbox), *p))
            .filter(|(iou, _)| *iou >= o.match_iou)
            .max_by(|a, b| {
                (a.1.dt.score, a.0)
                    .partial_cmp(&(b.1.dt.score, b.0))
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        match other {
            Some((iou, p)) => out.push(Signal {
                kind: SignalKind::WrongClass,
                weight: p.dt.score,
                annotation: l.id,
                class: name(l.class),
                bbox: l.bbox,
                score: Some(p.dt.score),
                other_class: Some(name(p.dt.category)),
                iou: Some(iou),
                reason: format!(
                    "labeled {} but the model sees a {} there (score {:.2}, IoU {:.2}): the class may be wrong",
                    name(l.class),
                    name(p.dt.category),
                    p.dt.score,
                    iou
                ),
            }),
            None => out.push(Signal {
                kind: SignalKind::UnmatchedLabel,
                weight: 0.5,
                annotation: l.id,
                class: name(l.class),
                bbox: l.bbox,
                score: None,
                other_class: None,
                iou: Some(same),
                reason: if preds.is_empty() {
                    format!(
                        "the model found nothing on this image: this {} label is a missed detection (or a wrong label)",
                        name(l.class)
                    )
                } else if same > 0.0 {
                    format!(
                        "no {} prediction matches this label (best overlap {same:.2}): probably badly placed or wrong",
                        name(l.class)
                    )
                } else {
                    format!("the model sees nothing at this {} label: probably wrong or badly placed", name(l.class))
                },
            }),
        }
    }

    // Predictions in the ambiguous band.
    let (lo, hi) = o.uncertain_band;
    for pr in preds.iter().filter(|p| p.dt.score >= lo && p.dt.score < hi) {
        out.push(Signal {
            kind: SignalKind::Uncertain,
            weight: 0.25,
            annotation: pr.id,
            class: name(pr.dt.category),
            bbox: pr.dt.bbox,
            score: Some(pr.dt.score),
            other_class: None,
            iou: None,
            reason: format!(
                "an uncertain {} (score {:.2})",
                name(pr.dt.category),
                pr.dt.score
            ),
        });
    }

    // Overlapping predictions that disagree on the class: greedy clusters around the best box.
    let mut used = vec![false; preds.len()];
    for i in 0..preds.len() {
        if used[i] || preds[i].dt.score < lo {
            continue;
        }
        used[i] = true;
        let mut per_class: HashMap<i64, f64> = HashMap::new();
        *per_class.entry(preds[i].dt.category).or_default() += preds[i].dt.score;
        for j in i + 1..preds.len() {
            if !used[j]
                && preds[j].dt.score >= lo
                && preds[i].dt.bbox.iou(&preds[j].dt.bbox) >= o.match_iou
            {
                used[j] = true;
                *per_class.entry(preds[j].dt.category).or_default() += preds[j].dt.score;
            }
        }
        if per_class.len() < 2 {
            continue;
        }
        let mut classes: Vec<(i64, f64)> = per_class.into_iter().collect();
        classes.sort_by(|a, b| {
            b.1.partial_cmp(&a.1)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.0.cmp(&b.0))
        });
        let h = entropy_bits(&classes.iter().map(|c| c.1).collect::<Vec<_>>());
        let listed: Vec<String> = classes
            .iter()
            .map(|(c, s)| format!("{} {s:.2}", name(*c)))
            .collect();
        out.push(Signal {
            kind: SignalKind::ClassConfusion,
            weight: 0.5 * h,
            annotation: preds[i].id,
            class: name(classes[0].0),
            bbox: preds[i].dt.bbox,
            score: Some(preds[i].dt.score),
            other_class: classes.get(1).map(|c| name(c.0)),
            iou: None,
            reason: format!(
                "overlapping predictions disagree on the class ({}; entropy {h:.2} bits)",
                listed.join(", ")
            ),
        });
    }
    out.sort_by(|a, b| {
        b.weight
            .partial_cmp(&a.weight)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.kind.cmp(&b.kind))
    });
    out
}

/// Ranks the images a run covered for review, best candidates first, with their signals. Images
/// the run covered and found nothing on are ranked too: their labels are missed-detection
/// candidates.
pub fn triage(p: &Project, opts: &TriageOptions) -> Result<Vec<TriageImage>> {
    triage_ranked(p, opts).map(|t| t.images)
}

/// A triage ranking and what it left out.
#[derive(Clone, Debug, Serialize)]
pub struct Triage {
    pub images: Vec<TriageImage>,
    /// Images the run covered that have neither labels nor a review decision (nobody has
    /// looked at them yet), left out unless [`TriageOptions::include_unreviewed`].
    pub skipped_unreviewed: usize,
    /// What the run says about each class (its confident score, how often it finds labels).
    pub classes: Vec<ClassCalibration>,
}

/// The images nobody has decided anything on: no box accepted, corrected, rejected, approved,
/// returned or drawn, and no `done` tag.
pub(crate) fn reviewed_images(p: &Project) -> Result<HashSet<i64>> {
    Ok(p.reviewed_images()?)
}

/// [`triage`], also saying how many unreviewed images were left out.
pub fn triage_ranked(p: &Project, opts: &TriageOptions) -> Result<Triage> {
    let (lo, hi) = opts.uncertain_band;
    if lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) {
        return Err(ReviewError::Invalid(format!(
            "the uncertain band {:?} is empty",
            opts.uncertain_band
        )));
    }
    let run = p.run_by_name(&opts.run)?;
    let preds = run_predictions(p, &run)?;
    let dts: Vec<_> = preds.iter().map(|x| x.dt.clone()).collect();
    let (mut images, _) = run_images(p, &run, &dts)?;
    for s in &opts.slices {
        let inside: HashSet<i64> = s.expand(p)?.into_iter().flat_map(|(_, set)| set).collect();
        images.retain(|i| inside.contains(i));
    }
    let labels = live_labels(p)?;
    let names = p.class_names()?;
    let paths = p.image_paths()?;
    let uuids = p.image_uuids()?;
    let mut preds_by_image: HashMap<i64, Vec<&Prediction>> = HashMap::new();
    for x in &preds {
        preds_by_image.entry(x.dt.image).or_default().push(x);
    }
    let mut labels_by_image: HashMap<i64, Vec<&Label>> = HashMap::new();
    for l in &labels {
        labels_by_image.entry(l.image).or_default().push(l);
    }
    // Compare the run with labels only where labels exist or someone reviewed the image.
    let before = images.len();
    if !opts.include_unreviewed {
        let reviewed = reviewed_images(p)?;
        images.retain(|i| labels_by_image.contains_key(i) || reviewed.contains(i));
    }
    let skipped_unreviewed = before - images.len();
    let mut images: Vec<i64> = images.into_iter().collect();
    images.sort_unstable();
    let boxes = |image: &i64| {
        (
            preds_by_image.get(image).map_or(&[][..], Vec::as_slice),
            labels_by_image.get(image).map_or(&[][..], Vec::as_slice),
        )
    };
    let material: Vec<(&[&Prediction], &[&Label])> = images.iter().map(boxes).collect();
    let calibration = Calibration::fit(&material, &names, opts.match_iou, opts.error_prior);
    let mut out: Vec<TriageImage> = images
        .iter()
        .map(|&image| {
            let (ps, ls) = boxes(&image);
            let signals = image_signals(ps, ls, &names, opts);
            let issues = calibration.image_issues(ps, ls, &names);
            let (score, issue_scores) = issues::summarize(&issues);
            let mut counts = SignalCounts::default();
            for s in &signals {
                match s.kind {
                    SignalKind::MissingLabel => counts.missing_label += 1,
                    SignalKind::WrongClass => counts.wrong_class += 1,
                    SignalKind::UnmatchedLabel => counts.unmatched_label += 1,
                    SignalKind::ClassConfusion => counts.class_confusion += 1,
                    SignalKind::Uncertain => counts.uncertain += 1,
                }
            }
            TriageImage {
                image: uuids.get(&image).copied().unwrap_or_default(),
                path: paths.get(&image).cloned().unwrap_or_default(),
                score,
                issue_scores,
                flagged: issues.iter().filter(|i| i.flagged).count(),
                issues,
                signal_score: signals.iter().map(|s| s.weight).sum(),
                counts,
                predictions: ps.len(),
                labels: ls.len(),
                signals,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.path.cmp(&b.path))
    });
    if let Some(n) = opts.limit {
        out.truncate(n);
    }
    Ok(Triage {
        images: out,
        skipped_unreviewed,
        classes: calibration.classes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::eval::DtBox;

    fn pred(n: u128, class: i64, b: [f64; 4], score: f64) -> Prediction {
        Prediction {
            id: Uuid::from_u128(n),
            dt: DtBox {
                image: 1,
                category: class,
                bbox: BBox::new(b[0], b[1], b[2], b[3]),
                score,
            },
        }
    }

    fn label(n: u128, class: i64, b: [f64; 4]) -> Label {
        Label {
            id: Uuid::from_u128(n),
            image: 1,
            class,
            bbox: BBox::new(b[0], b[1], b[2], b[3]),
            crowd: false,
        }
    }

    fn kinds(preds: &[Prediction], labels: &[Label]) -> Vec<SignalKind> {
        let names: HashMap<i64, String> = [(1, "cat".to_owned()), (2, "dog".to_owned())].into();
        let p: Vec<&Prediction> = preds.iter().collect();
        let l: Vec<&Label> = labels.iter().collect();
        image_signals(&p, &l, &names, &TriageOptions::new("r"))
            .into_iter()
            .map(|s| s.kind)
            .collect()
    }

    #[test]
    fn crowd_regions_are_never_missed_and_cover_predictions_inside_them() {
        let crowd = Label {
            crowd: true,
            ..label(1, 1, [0.0, 0.0, 100.0, 100.0])
        };
        // No prediction at all: a crowd region alone gives no signal.
        assert!(kinds(&[], std::slice::from_ref(&crowd)).is_empty());
        // A confident prediction inside it (IoU 0.01, crowd overlap 1): not a missing label.
        assert!(kinds(&[pred(2, 1, [10.0, 10.0, 10.0, 10.0], 0.9)], &[crowd]).is_empty());
        // The same prediction beside an ordinary label of the same box is one.
        assert_eq!(
            kinds(
                &[pred(2, 1, [10.0, 10.0, 10.0, 10.0], 0.9)],
                &[label(1, 1, [0.0, 0.0, 100.0, 100.0])]
            ),
            [SignalKind::MissingLabel, SignalKind::UnmatchedLabel]
        );
    }

    #[test]
    fn agreement_gives_no_signal() {
        assert!(
            kinds(
                &[pred(1, 1, [0.0, 0.0, 10.0, 10.0], 0.9)],
                &[label(2, 1, [0.0, 0.0, 10.0, 10.0])]
            )
            .is_empty()
        );
    }

    #[test]
    fn each_planted_problem_gives_its_signal() {
        assert_eq!(
            kinds(&[pred(1, 1, [0.0, 0.0, 10.0, 10.0], 0.9)], &[]),
            vec![SignalKind::MissingLabel]
        );
        // A duplicate of a missing box is reported once.
        assert_eq!(
            kinds(
                &[
                    pred(1, 1, [0.0, 0.0, 10.0, 10.0], 0.9),
                    pred(3, 1, [0.5, 0.0, 10.0, 10.0], 0.8)
                ],
                &[]
            ),
            vec![SignalKind::MissingLabel]
        );
        assert_eq!(
            kinds(
                &[pred(1, 2, [0.0, 0.0, 10.0, 10.0], 0.9)],
                &[label(2, 1, [0.0, 0.0, 10.0, 10.0])]
            ),
            vec![SignalKind::WrongClass]
        );
        assert_eq!(
            kinds(&[], &[label(2, 1, [0.0, 0.0, 10.0, 10.0])]),
            vec![SignalKind::UnmatchedLabel]
        );
        let k = kinds(
            &[
                pred(1, 1, [0.0, 0.0, 10.0, 10.0], 0.45),
                pred(3, 2, [0.0, 0.0, 10.0, 11.0], 0.4),
            ],
            &[label(2, 1, [0.0, 0.0, 10.0, 10.0])],
        );
        assert_eq!(
            k,
            vec![
                SignalKind::ClassConfusion,
                SignalKind::Uncertain,
                SignalKind::Uncertain
            ]
        );
        assert!((entropy_bits(&[1.0, 1.0]) - 1.0).abs() < 1e-12);
    }
}
