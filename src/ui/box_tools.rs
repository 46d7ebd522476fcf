//! Fewer actions per box: four-click boxes (extreme clicking: the leftmost, topmost, rightmost
//! and bottommost points of the object, in any order) and snapping a rough box to the proposal
//! of its class that it overlaps well. Pure functions; the canvas collects the clicks and the
//! session applies the results as ordinary edits.

use eframe::egui::{Pos2, pos2};
use uuid::Uuid;

use super::viewport::Viewport;
use crate::model::{Annotation, BBox, ReviewState};

/// Clicks a four-click box takes.
pub const CLICKS_PER_BOX: usize = 4;

/// A drawn box snaps to a proposal that overlaps it at least this much.
pub const SNAP_MIN_IOU: f64 = 0.5;

/// The box of extreme points (image pixels): their bounding box, in whole pixels inside the
/// image, as a drag between its corners would draw it.
pub fn box_of_points(points: &[Pos2], viewport: &Viewport) -> Option<BBox> {
    let first = points.first()?;
    let (mut min, mut max) = (*first, *first);
    for p in points {
        min = pos2(min.x.min(p.x), min.y.min(p.y));
        max = pos2(max.x.max(p.x), max.y.max(p.y));
    }
    Some(viewport.bbox_from_image_points(min, max))
}

/// The proposal a drawn box of `class` snaps to: the proposal of that class (not deleted)
/// overlapping `drawn` the most, when the overlap is at least `min_iou`. Returns it with its
/// IoU.
pub fn snap_target<'a>(
    boxes: &'a [Annotation],
    drawn: &BBox,
    class: Uuid,
    min_iou: f64,
) -> Option<(&'a Annotation, f64)> {
    boxes
        .iter()
        .filter(|a| {
            a.value.state == ReviewState::Proposed && !a.value.deleted && a.value.class == class
        })
        .map(|a| (a, a.value.bbox.iou(drawn)))
        .filter(|(_, iou)| *iou >= min_iou)
        .max_by(|x, y| x.1.total_cmp(&y.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AnnotationValue, BoxFlags, Source};
    use eframe::egui::{Rect, vec2};

    #[test]
    fn four_points_in_any_order_make_their_bounding_box() {
        let v = Viewport::new(
            Rect::from_min_size(Pos2::ZERO, vec2(800.0, 600.0)),
            vec2(320.0, 240.0),
        );
        // Bottom, left, top, right: in no particular order, off by fractions of a pixel.
        let points = [
            pos2(120.2, 180.0),
            pos2(60.0, 100.4),
            pos2(110.0, 40.0),
            pos2(200.6, 90.0),
        ];
        assert_eq!(
            box_of_points(&points, &v),
            Some(BBox::new(60.0, 40.0, 141.0, 140.0))
        );
        // Clicks outside the image are held to its edges.
        let outside = [
            pos2(-10.0, 50.0),
            pos2(50.0, -5.0),
            pos2(400.0, 60.0),
            pos2(70.0, 300.0),
        ];
        assert_eq!(
            box_of_points(&outside, &v),
            Some(BBox::new(0.0, 0.0, 320.0, 240.0))
        );
        assert_eq!(box_of_points(&[], &v), None);
    }

    fn boxed(class: Uuid, bbox: BBox, state: ReviewState) -> Annotation {
        Annotation {
            id: Uuid::now_v7(),
            value: AnnotationValue {
                image: Uuid::nil(),
                class,
                bbox,
                source: Source::Model {
                    run: Uuid::nil(),
                    score: 0.7,
                },
                state,
                flags: BoxFlags::default(),
                deleted: false,
                attributes: Default::default(),
            },
        }
    }

    #[test]
    fn a_rough_box_snaps_to_the_best_overlapping_proposal_of_its_class() {
        let (cat, dog) = (Uuid::now_v7(), Uuid::now_v7());
        let boxes = vec![
            boxed(
                cat,
                BBox::new(0.0, 0.0, 100.0, 100.0),
                ReviewState::Proposed,
            ),
            boxed(
                cat,
                BBox::new(10.0, 10.0, 100.0, 100.0),
                ReviewState::Proposed,
            ),
            // Better overlap, but another class or already decided: never a target.
            boxed(
                dog,
                BBox::new(12.0, 12.0, 100.0, 100.0),
                ReviewState::Proposed,
            ),
            boxed(
                cat,
                BBox::new(12.0, 12.0, 100.0, 100.0),
                ReviewState::Accepted,
            ),
        ];
        let drawn = BBox::new(12.0, 12.0, 100.0, 100.0);
        let (a, iou) = snap_target(&boxes, &drawn, cat, SNAP_MIN_IOU).expect("a target");
        assert_eq!(a.id, boxes[1].id);
        assert!(iou > 0.9, "iou {iou}");
        // Too little overlap: no snap.
        let far = BBox::new(80.0, 80.0, 100.0, 100.0);
        assert!(snap_target(&boxes, &far, cat, SNAP_MIN_IOU).is_none());
        assert!(snap_target(&boxes, &drawn, Uuid::now_v7(), SNAP_MIN_IOU).is_none());
    }
}
