//! Inter-annotator agreement: when two people labeled the same image, how many of their boxes
//! match (same class, IoU ≥ 0.5), per class and per pair of annotators.
//!
//! A box belongs to the person who made its latest annotator decision (submitted, accepted or
//! corrected it), or else to whoever created it (e.g. an import of ground truth). Only live labels
//! count (not proposals, rejected or deleted boxes). On each image shared by two people, their
//! boxes are matched greedily by IoU within each class; boxes left over that overlap a box of the
//! other person with another class count as class conflicts.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Result, ReviewError};
use crate::store::OwnedLabel;
use crate::store::Project;

/// Agreement on one class.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClassAgreement {
    pub class: String,
    /// Boxes of the first and of the second person on the shared images.
    pub a_boxes: usize,
    pub b_boxes: usize,
    pub matched: usize,
    /// `2 × matched / (a_boxes + b_boxes)`: 1 is full agreement.
    pub f1: f64,
    /// Mean IoU of the matched pairs (0 when none).
    pub mean_iou: f64,
}

/// Agreement of one pair of annotators.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PairAgreement {
    pub a: String,
    pub b: String,
    /// Images both labeled.
    pub images: usize,
    pub a_boxes: usize,
    pub b_boxes: usize,
    pub matched: usize,
    /// Overlapping boxes (IoU ≥ threshold) the two gave different classes.
    pub class_conflicts: usize,
    pub f1: f64,
    pub mean_iou: f64,
    pub per_class: Vec<ClassAgreement>,
    /// (class of a, class of b, count) for the class conflicts.
    pub confusions: Vec<(String, String, usize)>,
}

/// Agreement over the whole project.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgreementReport {
    pub iou_threshold: f64,
    /// Images labeled by at least two people.
    pub shared_images: usize,
    pub pairs: Vec<PairAgreement>,
    /// All pairs together, per class.
    pub per_class: Vec<ClassAgreement>,
}

/// Greedy one-to-one matching by IoU (best pairs first) at or above `threshold`.
/// Returns the matched (index in `a`, index in `b`, IoU).
fn greedy_match(a: &[&OwnedLabel], b: &[&OwnedLabel], threshold: f64) -> Vec<(usize, usize, f64)> {
    let mut pairs: Vec<(usize, usize, f64)> = Vec::new();
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            let iou = x.bbox.iou(&y.bbox);
            if iou >= threshold {
                pairs.push((i, j, iou));
            }
        }
    }
    pairs.sort_by(|p, q| {
        q.2.partial_cmp(&p.2)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then((p.0, p.1).cmp(&(q.0, q.1)))
    });
    let (mut used_a, mut used_b) = (vec![false; a.len()], vec![false; b.len()]);
    let mut out = Vec::new();
    for (i, j, iou) in pairs {
        if !used_a[i] && !used_b[j] {
            used_a[i] = true;
            used_b[j] = true;
            out.push((i, j, iou));
        }
    }
    out
}

#[derive(Default)]
struct Tally {
    a: usize,
    b: usize,
    matched: usize,
    iou_sum: f64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.a += other.a;
        self.b += other.b;
        self.matched += other.matched;
        self.iou_sum += other.iou_sum;
    }

    fn f1(&self) -> f64 {
        if self.a + self.b == 0 {
            0.0
        } else {
            2.0 * self.matched as f64 / (self.a + self.b) as f64
        }
    }

    fn mean_iou(&self) -> f64 {
        if self.matched == 0 {
            0.0
        } else {
            self.iou_sum / self.matched as f64
        }
    }
}

fn class_rows(tallies: &BTreeMap<String, Tally>) -> Vec<ClassAgreement> {
    tallies
        .iter()
        .map(|(class, t)| ClassAgreement {
            class: class.clone(),
            a_boxes: t.a,
            b_boxes: t.b,
            matched: t.matched,
            f1: t.f1(),
            mean_iou: t.mean_iou(),
        })
        .collect()
}

/// Agreement between every pair of people who labeled the same images, matching at `iou`.
pub fn agreement(p: &Project, iou: f64) -> Result<AgreementReport> {
    if !(iou > 0.0 && iou <= 1.0) {
        return Err(ReviewError::Invalid(format!(
            "the IoU threshold must be in (0, 1], not {iou}"
        )));
    }
    let labels = p.owned_labels()?;
    let users = p.user_names()?;
    let classes = p.class_names()?;
    let class = |c: i64| classes.get(&c).cloned().unwrap_or_default();
    // image → owner → labels
    let mut by_image: BTreeMap<i64, BTreeMap<i64, Vec<&OwnedLabel>>> = BTreeMap::new();
    for l in &labels {
        by_image
            .entry(l.image)
            .or_default()
            .entry(l.owner)
            .or_default()
            .push(l);
    }
    struct PairAcc {
        images: usize,
        conflicts: usize,
        per_class: BTreeMap<String, Tally>,
        confusions: BTreeMap<(String, String), usize>,
    }
    let mut pairs: BTreeMap<(i64, i64), PairAcc> = BTreeMap::new();
    let mut shared_images = 0;
    for owners in by_image.values() {
        if owners.len() < 2 {
            continue;
        }
        shared_images += 1;
        let people: Vec<(&i64, &Vec<&OwnedLabel>)> = owners.iter().collect();
        for (x, (ua, la)) in people.iter().enumerate() {
            for (ub, lb) in &people[x + 1..] {
                let acc = pairs.entry((**ua, **ub)).or_insert_with(|| PairAcc {
                    images: 0,
                    conflicts: 0,
                    per_class: BTreeMap::new(),
                    confusions: BTreeMap::new(),
                });
                acc.images += 1;
                let mut left_a: Vec<&OwnedLabel> = Vec::new();
                let mut left_b: Vec<&OwnedLabel> = Vec::new();
                let mut cls: Vec<i64> = la.iter().chain(lb.iter()).map(|l| l.class).collect();
                cls.sort_unstable();
                cls.dedup();
                for c in cls {
                    let ca: Vec<&OwnedLabel> =
                        la.iter().copied().filter(|l| l.class == c).collect();
                    let cb: Vec<&OwnedLabel> =
                        lb.iter().copied().filter(|l| l.class == c).collect();
                    let m = greedy_match(&ca, &cb, iou);
                    let t = acc.per_class.entry(class(c)).or_default();
                    t.a += ca.len();
                    t.b += cb.len();
                    t.matched += m.len();
                    t.iou_sum += m.iter().map(|x| x.2).sum::<f64>();
                    left_a.extend(
                        ca.iter()
                            .enumerate()
                            .filter(|(i, _)| !m.iter().any(|x| x.0 == *i))
                            .map(|(_, l)| *l),
                    );
                    left_b.extend(
                        cb.iter()
                            .enumerate()
                            .filter(|(j, _)| !m.iter().any(|x| x.1 == *j))
                            .map(|(_, l)| *l),
                    );
                }
                for (i, j, _) in greedy_match(&left_a, &left_b, iou) {
                    acc.conflicts += 1;
                    *acc.confusions
                        .entry((class(left_a[i].class), class(left_b[j].class)))
                        .or_default() += 1;
                }
            }
        }
    }
    let mut overall: BTreeMap<String, Tally> = BTreeMap::new();
    let name = |u: i64| {
        users
            .get(&u)
            .cloned()
            .unwrap_or_else(|| format!("user {u}"))
    };
    let mut out_pairs: Vec<PairAgreement> = pairs
        .into_iter()
        .map(|((ua, ub), acc)| {
            let mut total = Tally::default();
            for (c, t) in &acc.per_class {
                total.add(t);
                overall.entry(c.clone()).or_default().add(t);
            }
            PairAgreement {
                a: name(ua),
                b: name(ub),
                images: acc.images,
                a_boxes: total.a,
                b_boxes: total.b,
                matched: total.matched,
                class_conflicts: acc.conflicts,
                f1: total.f1(),
                mean_iou: total.mean_iou(),
                per_class: class_rows(&acc.per_class),
                confusions: acc
                    .confusions
                    .into_iter()
                    .map(|((x, y), n)| (x, y, n))
                    .collect(),
            }
        })
        .collect();
    out_pairs.sort_by(|x, y| (&x.a, &x.b).cmp(&(&y.a, &y.b)));
    Ok(AgreementReport {
        iou_threshold: iou,
        shared_images,
        pairs: out_pairs,
        per_class: class_rows(&overall),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BBox;

    fn l(class: i64, x: f64) -> OwnedLabel {
        OwnedLabel {
            image: 1,
            class,
            bbox: BBox::new(x, 0.0, 10.0, 10.0),
            owner: 1,
        }
    }

    #[test]
    fn greedy_matching_takes_the_best_pairs_first() {
        let a = [l(1, 0.0), l(1, 4.0)];
        let b = [l(1, 3.0)];
        let ar: Vec<&OwnedLabel> = a.iter().collect();
        let br: Vec<&OwnedLabel> = b.iter().collect();
        let m = greedy_match(&ar, &br, 0.5);
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].0, m[0].1), (1, 0));
        assert!(greedy_match(&ar, &br, 0.95).is_empty());
    }
}
