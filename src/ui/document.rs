//! The boxes the app is editing, held in memory per image, and the only home of undo/redo.
//!
//! Every change is a [`Change`]: a list of (before, after) values of boxes on one image. Applying
//! one (or undoing or redoing it) updates memory at once and returns the store [`Edit`]s that
//! make it durable; the caller sends those to the writer thread.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::model::{Annotation, AnnotationValue, ReviewState, Source};
use crate::store::Edit;

/// How many changes undo remembers.
const UNDO_DEPTH: usize = 10_000;

/// One box before and after a change; `None` means "does not exist" (or deleted).
#[derive(Clone, Debug, PartialEq)]
struct Item {
    id: Uuid,
    before: Option<AnnotationValue>,
    after: Option<AnnotationValue>,
    /// Where the box sat in its image's list, so undoing a delete puts it back in place.
    index: usize,
    /// Why the change was made, stored with the revision (a proposal rejected "below
    /// threshold", a triage fix).
    note: Option<String>,
    /// The note of the change this item undoes: undo stores no reason, and redo, the reverse
    /// of the undo, gets the original one back from here.
    undone_note: Option<String>,
}

impl Item {
    /// The image of the box: its value's, else the change's.
    fn image(&self, default: Uuid) -> Uuid {
        self.after
            .as_ref()
            .or(self.before.as_ref())
            .map_or(default, |v| v.image)
    }
}

/// An image tag a change sets or clears (Space tags the image `done`), undone with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagChange {
    pub tag: &'static str,
    /// Whether the image had the tag before the change.
    pub before: bool,
    /// Whether it has it after.
    pub after: bool,
}

/// One undoable step: any number of boxes of one image (or, for a bulk fix from the crop grid,
/// of several: each box's value names its image).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The image the boxes belong to (the first of them for a bulk fix): the one undo shows.
    pub image: Uuid,
    /// What the step did, for the status bar ("move box").
    pub what: &'static str,
    items: Vec<Item>,
    tag: Option<TagChange>,
}

impl Change {
    pub fn new(image: Uuid, what: &'static str) -> Self {
        Self {
            image,
            what,
            items: Vec::new(),
            tag: None,
        }
    }

    /// Sets (or clears) an image tag as part of the change.
    pub fn tag(mut self, tag: TagChange) -> Self {
        self.tag = (tag.before != tag.after).then_some(tag);
        self
    }

    /// Replaces the value of an existing box, giving the reason stored with the revision.
    pub fn update_because(
        mut self,
        id: Uuid,
        before: AnnotationValue,
        after: AnnotationValue,
        note: impl Into<String>,
    ) -> Self {
        if before != after {
            self.items.push(Item {
                id,
                before: Some(before),
                after: Some(after),
                index: usize::MAX,
                note: Some(note.into()),
                undone_note: None,
            });
        }
        self
    }

    /// Adds a new box.
    pub fn create(mut self, id: Uuid, value: AnnotationValue) -> Self {
        self.items.push(Item {
            id,
            before: None,
            after: Some(value),
            index: usize::MAX,
            note: None,
            undone_note: None,
        });
        self
    }

    /// Replaces the value of an existing box.
    pub fn update(mut self, id: Uuid, before: AnnotationValue, after: AnnotationValue) -> Self {
        if before != after {
            self.items.push(Item {
                id,
                before: Some(before),
                after: Some(after),
                index: usize::MAX,
                note: None,
                undone_note: None,
            });
        }
        self
    }

    /// Adds a new box, giving the reason stored with its first revision.
    pub fn create_because(
        mut self,
        id: Uuid,
        value: AnnotationValue,
        note: impl Into<String>,
    ) -> Self {
        self.items.push(Item {
            id,
            before: None,
            after: Some(value),
            index: usize::MAX,
            note: Some(note.into()),
            undone_note: None,
        });
        self
    }

    /// Deletes a box, giving the reason stored with the revision that deletes it.
    pub fn delete_because(
        mut self,
        id: Uuid,
        before: AnnotationValue,
        note: impl Into<String>,
    ) -> Self {
        self.items.push(Item {
            id,
            before: Some(before),
            after: None,
            index: usize::MAX,
            note: Some(note.into()),
            undone_note: None,
        });
        self
    }

    /// Deletes a box.
    pub fn delete(mut self, id: Uuid, before: AnnotationValue) -> Self {
        self.items.push(Item {
            id,
            before: Some(before),
            after: None,
            index: usize::MAX,
            note: None,
            undone_note: None,
        });
        self
    }

    /// Every image the change touches, `image` first.
    pub fn images(&self) -> Vec<Uuid> {
        let mut out = vec![self.image];
        for i in &self.items {
            let image = i.image(self.image);
            if !out.contains(&image) {
                out.push(image);
            }
        }
        out
    }

    /// True when the change would do nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.tag.is_none()
    }

    fn reversed(&self) -> Self {
        Self {
            image: self.image,
            what: self.what,
            items: self
                .items
                .iter()
                .rev()
                .map(|i| Item {
                    id: i.id,
                    before: i.after.clone(),
                    after: i.before.clone(),
                    index: i.index,
                    note: i.undone_note.clone(),
                    undone_note: i.note.clone(),
                })
                .collect(),
            tag: self.tag.map(|t| TagChange {
                tag: t.tag,
                before: t.after,
                after: t.before,
            }),
        }
    }
}

/// What a change, undo or redo did: the image to show, the edits to store and the tag to set
/// or clear.
#[derive(Clone, Debug, PartialEq)]
pub struct Replayed {
    pub image: Uuid,
    pub what: &'static str,
    pub edits: Vec<Edit>,
    /// `(tag, on)`.
    pub tag: Option<(&'static str, bool)>,
}

/// The in-memory boxes of every image opened in this session, plus undo and redo.
///
/// Once an image is loaded, memory is the truth for it: edits reach the store later (on the
/// writer thread), so the store may lag behind but never the reverse.
#[derive(Default)]
pub struct Document {
    images: HashMap<Uuid, Vec<Annotation>>,
    /// Ids the store knows (loaded from it, or created by an edit already sent).
    in_store: HashSet<Uuid>,
    undo: Vec<Change>,
    redo: Vec<Change>,
}

impl Document {
    /// True when the image's boxes are in memory.
    pub fn is_loaded(&self, image: Uuid) -> bool {
        self.images.contains_key(&image)
    }

    /// Takes the boxes of an image as read from the store. Ignored if already loaded, because
    /// memory may hold edits the store has not seen yet.
    pub fn load(&mut self, image: Uuid, boxes: Vec<Annotation>) {
        if self.images.contains_key(&image) {
            return;
        }
        self.in_store.extend(boxes.iter().map(|a| a.id));
        self.images.insert(image, boxes);
    }

    /// Adds the boxes the store has and memory does not (new proposals of a model run) to a
    /// loaded image, after its boxes. Boxes memory knows, edited or deleted there, stay as
    /// memory has them. Not loaded: nothing to do (the next visit reads the store).
    pub fn merge_from_store(&mut self, image: Uuid, boxes: Vec<Annotation>) {
        let Some(list) = self.images.get_mut(&image) else {
            return;
        };
        for a in boxes {
            if self.in_store.contains(&a.id) || list.iter().any(|b| b.id == a.id) {
                continue;
            }
            self.in_store.insert(a.id);
            list.push(a);
        }
    }

    /// Takes the store's boxes of a loaded image as they are now (after a pull merged other
    /// people's edits), keeping the undo history. Only call when every edit made here has been
    /// stored, or memory's newer values would be lost from view. Not loaded: nothing to do.
    pub fn replace_from_store(&mut self, image: Uuid, boxes: Vec<Annotation>) {
        let Some(list) = self.images.get_mut(&image) else {
            return;
        };
        self.in_store.extend(boxes.iter().map(|a| a.id));
        *list = boxes;
    }

    /// The images whose boxes are in memory.
    pub fn loaded_images(&self) -> Vec<Uuid> {
        self.images.keys().copied().collect()
    }

    /// Forgets images with no undo history so the next visit reads them again from the store.
    pub fn forget_unedited(&mut self) {
        let keep: HashSet<Uuid> = self
            .undo
            .iter()
            .chain(&self.redo)
            .flat_map(Change::images)
            .collect();
        self.images.retain(|id, _| keep.contains(id));
    }

    /// The live boxes of an image (empty when not loaded), in creation order.
    pub fn boxes(&self, image: Uuid) -> &[Annotation] {
        self.images.get(&image).map_or(&[], Vec::as_slice)
    }

    /// One box of an image.
    pub fn get(&self, image: Uuid, id: Uuid) -> Option<&Annotation> {
        self.boxes(image).iter().find(|a| a.id == id)
    }

    /// Applies a change, records it for undo and returns what to store.
    pub fn commit(&mut self, change: Change) -> Replayed {
        if change.is_empty() {
            return Replayed {
                image: change.image,
                what: change.what,
                edits: Vec::new(),
                tag: None,
            };
        }
        let (applied, edits) = self.apply(change);
        let done = Replayed {
            image: applied.image,
            what: applied.what,
            edits,
            tag: applied.tag.map(|t| (t.tag, t.after)),
        };
        self.undo.push(applied);
        if self.undo.len() > UNDO_DEPTH {
            self.undo.remove(0);
        }
        self.redo.clear();
        done
    }

    /// Undoes the last change.
    pub fn undo(&mut self) -> Option<Replayed> {
        let change = self.undo.pop()?;
        let (applied, edits) = self.apply(change.reversed());
        let replayed = Replayed {
            image: applied.image,
            what: applied.what,
            edits,
            tag: applied.tag.map(|t| (t.tag, t.after)),
        };
        self.redo.push(applied.reversed());
        Some(replayed)
    }

    /// Redoes the last undone change.
    pub fn redo(&mut self) -> Option<Replayed> {
        let change = self.redo.pop()?;
        let (applied, edits) = self.apply(change);
        let replayed = Replayed {
            image: applied.image,
            what: applied.what,
            edits,
            tag: applied.tag.map(|t| (t.tag, t.after)),
        };
        self.undo.push(applied);
        Some(replayed)
    }

    /// What undo would undo.
    pub fn undo_label(&self) -> Option<&'static str> {
        self.undo.last().map(|c| c.what)
    }

    /// What redo would redo.
    pub fn redo_label(&self) -> Option<&'static str> {
        self.redo.last().map(|c| c.what)
    }

    /// Applies the items in memory; returns the change with the list positions it used.
    fn apply(&mut self, mut change: Change) -> (Change, Vec<Edit>) {
        let mut edits = Vec::with_capacity(change.items.len());
        for item in &mut change.items {
            let boxes = self.images.entry(item.image(change.image)).or_default();
            let pos = boxes.iter().position(|a| a.id == item.id);
            match (&item.after, pos) {
                (Some(value), Some(i)) => {
                    boxes[i].value = value.clone();
                    item.index = i;
                }
                (Some(value), None) => {
                    let at = item.index.min(boxes.len());
                    boxes.insert(
                        at,
                        Annotation {
                            id: item.id,
                            value: value.clone(),
                        },
                    );
                    item.index = at;
                }
                (None, Some(i)) => {
                    boxes.remove(i);
                    item.index = i;
                }
                (None, None) => {}
            }
            edits.push(match &item.after {
                Some(value) if self.in_store.contains(&item.id) => Edit::Update {
                    id: item.id,
                    value: value.clone(),
                    note: item.note.clone(),
                },
                Some(value) => {
                    self.in_store.insert(item.id);
                    match &item.note {
                        Some(note) => Edit::CreateBecause {
                            id: item.id,
                            value: value.clone(),
                            note: note.clone(),
                        },
                        None => Edit::Create {
                            id: item.id,
                            value: value.clone(),
                        },
                    }
                }
                // A deletion with a reason: the box's last value as a tombstone, which the
                // store writes as a `delete` revision carrying the note.
                None => match (&item.note, &item.before) {
                    (Some(note), Some(before)) => Edit::Update {
                        id: item.id,
                        value: AnnotationValue {
                            deleted: true,
                            ..before.clone()
                        },
                        note: Some(note.clone()),
                    },
                    _ => Edit::Delete { id: item.id },
                },
            });
        }
        (change, edits)
    }
}

/// The state a box takes when a person changes its place, size or class: a model's box becomes
/// `Corrected` (its source, run and score, stay), a person's box goes back to review.
pub fn edited_state(value: &AnnotationValue) -> ReviewState {
    match value.source {
        Source::Model { .. } => ReviewState::Corrected,
        Source::Human => ReviewState::Submitted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BBox, BoxFlags};

    fn value(image: Uuid, x: f64) -> AnnotationValue {
        AnnotationValue {
            image,
            class: Uuid::nil(),
            bbox: BBox::new(x, 0.0, 10.0, 10.0),
            source: Source::Human,
            state: ReviewState::Submitted,
            flags: BoxFlags::default(),
            deleted: false,
            attributes: Default::default(),
        }
    }

    #[test]
    fn a_tag_and_a_reason_go_with_the_change_and_undo_with_it() {
        let img = Uuid::now_v7();
        let mut doc = Document::default();
        let id = Uuid::now_v7();
        let before = value(img, 1.0);
        doc.load(
            img,
            vec![Annotation {
                id,
                value: before.clone(),
            }],
        );
        let mut after = before.clone();
        after.state = ReviewState::Rejected;
        let done = TagChange {
            tag: "done",
            before: false,
            after: true,
        };
        let applied = doc.commit(
            Change::new(img, "accept and next")
                .update_because(id, before.clone(), after, "below threshold")
                .tag(done),
        );
        assert_eq!(applied.tag, Some(("done", true)));
        assert!(matches!(
            applied.edits.as_slice(),
            [Edit::Update { note: Some(n), .. }] if n == "below threshold"
        ));
        let undone = doc.undo().expect("undo");
        assert_eq!(undone.tag, Some(("done", false)), "undo clears the tag");
        assert_eq!(doc.boxes(img)[0].value, before);
        assert_eq!(doc.redo().expect("redo").tag, Some(("done", true)));
        // A tag alone is a change (Space on an image without proposals).
        let tag_only = Change::new(img, "mark done").tag(TagChange {
            tag: "done",
            before: true,
            after: false,
        });
        assert!(!tag_only.is_empty());
    }

    #[test]
    fn reasons_go_with_new_and_deleted_boxes_and_come_back_on_redo() {
        let img = Uuid::now_v7();
        let mut doc = Document::default();
        doc.load(img, Vec::new());
        let id = Uuid::now_v7();
        let edits = doc
            .commit(Change::new(img, "triage fix").create_because(id, value(img, 1.0), "added"))
            .edits;
        assert!(matches!(edits.as_slice(), [Edit::CreateBecause { note, .. }] if note == "added"));
        // Undo stores no reason; redo stores the fix's reason again.
        assert_eq!(doc.undo().expect("undo").edits, vec![Edit::Delete { id }]);
        assert!(matches!(
            doc.redo().expect("redo").edits.as_slice(),
            [Edit::Update { note: Some(n), value, .. }] if n == "added" && !value.deleted
        ));
        let before = doc.boxes(img)[0].value.clone();
        let edits = doc
            .commit(Change::new(img, "triage fix").delete_because(id, before.clone(), "spurious"))
            .edits;
        assert_eq!(
            edits,
            vec![Edit::Update {
                id,
                value: AnnotationValue {
                    deleted: true,
                    ..before.clone()
                },
                note: Some("spurious".into()),
            }]
        );
        assert!(doc.boxes(img).is_empty());
        assert!(matches!(
            doc.undo().expect("undo").edits.as_slice(),
            [Edit::Update { note: None, value, .. }] if *value == before
        ));
        assert_eq!(doc.boxes(img).len(), 1);
    }

    #[test]
    fn create_then_undo_redo_maps_to_create_delete_update() {
        let img = Uuid::now_v7();
        let mut doc = Document::default();
        doc.load(img, Vec::new());
        let id = Uuid::now_v7();
        let edits = doc
            .commit(Change::new(img, "draw box").create(id, value(img, 1.0)))
            .edits;
        assert!(matches!(edits.as_slice(), [Edit::Create { .. }]));
        assert_eq!(doc.boxes(img).len(), 1);
        let undone = doc.undo().expect("undo");
        assert_eq!(undone.edits, vec![Edit::Delete { id }]);
        assert!(doc.boxes(img).is_empty());
        let redone = doc.redo().expect("redo");
        // The store already holds the (tombstoned) box, so redo revives it with an update.
        assert!(matches!(redone.edits.as_slice(), [Edit::Update { value, .. }] if !value.deleted));
        assert_eq!(doc.boxes(img).len(), 1);
        assert!(doc.redo().is_none());
    }

    #[test]
    fn undoing_a_delete_restores_the_box_in_place() {
        let img = Uuid::now_v7();
        let mut doc = Document::default();
        let boxes: Vec<Annotation> = (0..3)
            .map(|i| Annotation {
                id: Uuid::now_v7(),
                value: value(img, f64::from(i)),
            })
            .collect();
        doc.load(img, boxes.clone());
        let middle = boxes[1].clone();
        doc.commit(Change::new(img, "delete box").delete(middle.id, middle.value.clone()));
        assert_eq!(doc.boxes(img).len(), 2);
        doc.undo();
        assert_eq!(doc.boxes(img), boxes.as_slice());
    }

    #[test]
    fn a_new_change_clears_redo_and_noops_are_dropped() {
        let img = Uuid::now_v7();
        let mut doc = Document::default();
        let a = Annotation {
            id: Uuid::now_v7(),
            value: value(img, 0.0),
        };
        doc.load(img, vec![a.clone()]);
        let noop = Change::new(img, "move box").update(a.id, a.value.clone(), a.value.clone());
        assert!(doc.commit(noop).edits.is_empty());
        assert!(doc.undo_label().is_none());
        doc.commit(Change::new(img, "move box").update(a.id, a.value.clone(), value(img, 5.0)));
        doc.undo();
        assert_eq!(doc.redo_label(), Some("move box"));
        doc.commit(Change::new(img, "move box").update(a.id, a.value.clone(), value(img, 7.0)));
        assert!(doc.redo_label().is_none());
    }

    #[test]
    fn loading_never_overwrites_memory() {
        let img = Uuid::now_v7();
        let mut doc = Document::default();
        doc.load(img, Vec::new());
        doc.commit(Change::new(img, "draw box").create(Uuid::now_v7(), value(img, 0.0)));
        doc.load(img, Vec::new());
        assert_eq!(doc.boxes(img).len(), 1);
        doc.forget_unedited();
        assert!(doc.is_loaded(img));
    }

    #[test]
    fn editing_a_proposal_corrects_it() {
        let mut v = value(Uuid::nil(), 0.0);
        assert_eq!(edited_state(&v), ReviewState::Submitted);
        v.source = Source::Model {
            run: Uuid::nil(),
            score: 0.5,
        };
        v.state = ReviewState::Proposed;
        assert_eq!(edited_state(&v), ReviewState::Corrected);
    }
}
