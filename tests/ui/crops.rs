//! The crop grid driven through the real app: the boxes of a class with one planted outlier
//! among its embeddings (vectors stored directly, so the order is known), the outlier first,
//! two crops selected with Shift+click and Ctrl+click and given another class as one undoable
//! change, and Enter opening a crop's box on the canvas; without embeddings, the boxes as
//! listed, Delete rejecting a proposal and a class key changing a label's class.

use eframe::egui::{Key, Modifiers};
use egui_kittest::kittest::Queryable;
use loupe::model::{AnnotationValue, BBox, BoxFlags, ReviewState, Source};
use loupe::store::{Edit, EmbeddingKey, NewEmbedding, Project};
use loupe::ui::{Command, LeadCommand, Mode};
use uuid::Uuid;

use super::{Fixture, app, fixture, press, press_with, session, settle_all};

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

/// Five more cat labels beside the fixture's one (six over three images), each crop embedded:
/// five alike, one (the fourth made) pointing elsewhere. Returns the boxes in creation order
/// (the fixture's first) and the outlier.
fn planted(fx: &Fixture) -> (Vec<Uuid>, Uuid) {
    let mut p = Project::open(&fx.project).expect("as set up");
    let cat = fx.classes[0].id;
    let mut boxes = vec![(fx.a_box, fx.images[0].0, BBox::new(40.0, 40.0, 80.0, 60.0))];
    let mut edits = Vec::new();
    for (i, (image, bbox)) in [
        (fx.images[0].0, BBox::new(180.0, 30.0, 60.0, 60.0)),
        (fx.images[1].0, BBox::new(100.0, 60.0, 50.0, 70.0)),
        (fx.images[2].0, BBox::new(10.0, 100.0, 90.0, 50.0)),
        (fx.images[2].0, BBox::new(200.0, 120.0, 70.0, 70.0)),
        (fx.images[1].0, BBox::new(30.0, 150.0, 40.0, 40.0)),
    ]
    .into_iter()
    .enumerate()
    {
        let id = Uuid::now_v7();
        boxes.push((id, image, bbox));
        edits.push(Edit::Create {
            id,
            value: AnnotationValue {
                image,
                class: cat,
                bbox,
                source: Source::Human,
                state: if i % 2 == 0 {
                    ReviewState::Submitted
                } else {
                    ReviewState::Approved
                },
                flags: BoxFlags::default(),
                deleted: false,
                attributes: Default::default(),
            },
        });
    }
    p.apply(&edits).expect("plant");
    let (set, _) = p
        .embedding_set("planted", "planted.onnx", "m0", "{}", "s0")
        .expect("set");
    let outlier = boxes[3].0;
    let rows: Vec<NewEmbedding> = boxes
        .iter()
        .enumerate()
        .map(|(i, (ann, image, bbox))| {
            #[allow(clippy::cast_precision_loss)]
            let wobble = i as f32 * 0.03;
            let vector = if *ann == outlier {
                unit(&[0.1, 0.2, 0.0, 1.0])
            } else {
                unit(&[1.0, wobble, 0.2 - wobble, 0.05])
            };
            NewEmbedding {
                key: EmbeddingKey {
                    image: *image,
                    ann: Some(*ann),
                },
                bbox: Some(*bbox),
                vector,
            }
        })
        .collect();
    p.store_embeddings(&set.name, &rows).expect("store");
    (boxes.iter().map(|b| b.0).collect(), outlier)
}

/// The accessibility label of the tile at `index` (from 0) of the grid.
fn tile(h: &egui_kittest::Harness<'_, loupe::ui::App>, index: usize) -> String {
    let list = session(h).lead().crops_shown().expect("the grid is read");
    let name = list.crops[index].path.rsplit('/').next().expect("a name");
    format!("crop {}: {name}", index + 1)
}

#[test]
fn the_crop_grid_puts_the_outlier_first_and_changes_the_class_of_selected_crops() {
    let fx = fixture();
    let (boxes, outlier) = planted(&fx);
    let (cat, dog) = (fx.classes[0].id, fx.classes[1].id);
    let mut h = app(&fx);
    // Ctrl+5 shows the grid, on the first class (cat).
    press_with(&mut h, true, false, Key::Num5);
    settle_all(&mut h);
    assert_eq!(session(&h).lead().mode(), Mode::Crops);
    let list = session(&h)
        .lead()
        .crops_shown()
        .expect("the grid is read")
        .clone();
    assert_eq!(list.set.as_deref(), Some("planted"));
    assert_eq!(
        (list.crops.len(), list.ranked),
        (6, 6),
        "the six cat labels"
    );
    assert_eq!(list.crops[0].ann, outlier, "the planted outlier first");
    assert!(list.crops[0].distance > list.crops[1].distance);
    // The grid says how it is ordered.
    h.get_by_label_contains("the least like the class first");

    // A click selects one crop, Shift+click the range to another, Ctrl+click takes one out.
    h.get_by_label(&tile(&h, 1)).click();
    h.run();
    h.get_by_label(&tile(&h, 3))
        .click_modifiers(Modifiers::SHIFT);
    h.run();
    assert_eq!(session(&h).lead().crops_selected().len(), 3);
    h.get_by_label(&tile(&h, 2))
        .click_modifiers(Modifiers::COMMAND);
    h.run();
    let chosen = [list.crops[1].ann, list.crops[3].ann];
    let mut selected = session(&h).lead().crops_selected();
    selected.sort();
    let mut want = chosen.to_vec();
    want.sort();
    assert_eq!(selected, want);

    // "Change class" gives them the first other class (dog), as revisions of those boxes.
    h.get_by_label("Change class").click();
    settle_all(&mut h);
    let p = Project::open(&fx.project).expect("as set up");
    for id in chosen {
        assert_eq!(p.annotation(id).expect("box").value.class, dog);
        let history = p.history(id).expect("history");
        assert_eq!(history.len(), 2, "created, then the class changed");
        assert_eq!(history[1].value.class, dog);
        assert_eq!(history[0].value.class, cat);
    }
    for id in boxes.iter().filter(|b| !chosen.contains(b)) {
        assert_eq!(p.annotation(*id).expect("box").value.class, cat);
    }
    // The grid reads again: the two are no longer cats.
    let left = session(&h).lead().crops_shown().expect("read again");
    assert_eq!(left.crops.len(), 4);
    assert!(left.crops.iter().all(|c| !chosen.contains(&c.ann)));

    // One undo takes both back.
    press_with(&mut h, true, false, Key::Z);
    settle_all(&mut h);
    let p = Project::open(&fx.project).expect("as set up");
    for id in chosen {
        assert_eq!(p.annotation(id).expect("box").value.class, cat);
    }
    assert_eq!(
        session(&h)
            .lead()
            .crops_shown()
            .expect("read again")
            .crops
            .len(),
        6
    );

    // Enter opens the selected crop's box on the canvas, selected.
    h.get_by_label(&tile(&h, 0)).click();
    h.run();
    press(&mut h, Key::Enter);
    settle_all(&mut h);
    assert_eq!(session(&h).lead().mode(), Mode::Label);
    assert_eq!(session(&h).selected(), Some(outlier));
}

#[test]
fn without_embeddings_the_grid_lists_the_boxes_and_says_how_to_rank_them() {
    let fx = fixture();
    let mut h = app(&fx);
    h.state_mut()
        .session_mut()
        .expect("as set up")
        .apply(Command::Lead(LeadCommand::ShowCrops(fx.classes[0].id)));
    settle_all(&mut h);
    let list = session(&h).lead().crops_shown().expect("read");
    assert_eq!(list.set, None);
    assert_eq!(list.crops.len(), 1, "the cat label; proposals are off");
    h.get_by_label_contains("loupe embed --model M --boxes");
    // Proposals too: the two cat proposals join, and Delete rejects a proposal.
    h.get_by_label("proposals too").click();
    settle_all(&mut h);
    let list = session(&h).lead().crops_shown().expect("read").clone();
    assert_eq!(list.crops.len(), 3);
    let proposal = list
        .crops
        .iter()
        .position(|c| c.state == ReviewState::Proposed)
        .expect("a proposal");
    h.get_by_label(&tile(&h, proposal)).click();
    h.run();
    press(&mut h, Key::Delete);
    settle_all(&mut h);
    let p = Project::open(&fx.project).expect("as set up");
    assert_eq!(
        p.annotation(list.crops[proposal].ann)
            .expect("box")
            .value
            .state,
        ReviewState::Rejected
    );
    // A class key gives the selected crops that class (2: dog).
    let label = session(&h)
        .lead()
        .crops_shown()
        .expect("read again")
        .crops
        .iter()
        .position(|c| c.ann == fx.a_box)
        .expect("the cat label");
    h.get_by_label(&tile(&h, label)).click();
    h.run();
    press(&mut h, Key::Num2);
    settle_all(&mut h);
    let p = Project::open(&fx.project).expect("as set up");
    assert_eq!(
        p.annotation(fx.a_box).expect("box").value.class,
        fx.classes[1].id
    );
}
