//! Store benchmarks: the latency of one durable edit, and reading a version's labels.

use criterion::{Criterion, criterion_group, criterion_main};
use loupe::model::{AnnotationValue, Attributes, BBox, BoxFlags, ReviewState, Source};
use loupe::store::{Edit, ImageInput, Project};
use uuid::Uuid;

fn setup(boxes: usize) -> (tempfile::TempDir, Project, Uuid, Uuid) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = Project::create(&dir.path().join("bench.loupe")).expect("create");
    let mut bulk = p.bulk().expect("bulk");
    let img = bulk
        .upsert_image(&ImageInput {
            path: "a.png".into(),
            hash: Some("00".into()),
            width: 4000,
            height: 3000,
            bytes: 1,
            external_id: None,
        })
        .expect("image")
        .0;
    let class = bulk.class("thing").expect("class");
    for i in 0..boxes {
        let x = (i % 1000) as f64 * 4.0;
        bulk.add_annotation(
            Uuid::now_v7(),
            img,
            class,
            BBox::new(x, x, 10.0, 10.0),
            None,
            ReviewState::Approved,
            BoxFlags::default(),
            &Attributes::new(),
        )
        .expect("box");
    }
    bulk.commit().expect("commit");
    let image = p.image_by_path("a.png").expect("q").expect("image").id;
    let class = p.ensure_class("thing").expect("class").id;
    (dir, p, image, class)
}

fn edits(c: &mut Criterion) {
    let (_dir, mut p, image, class) = setup(0);
    let id = Uuid::now_v7();
    let value = |x: f64| AnnotationValue {
        image,
        class,
        bbox: BBox::new(x, 1.0, 10.0, 10.0),
        source: Source::Human,
        state: ReviewState::Submitted,
        flags: BoxFlags::default(),
        deleted: false,
        attributes: Attributes::new(),
    };
    p.apply(&[Edit::Create {
        id,
        value: value(0.0),
    }])
    .expect("create");
    let mut x = 0.0;
    c.bench_function("apply one durable move (fsync)", |b| {
        b.iter(|| {
            x += 1.0;
            p.apply(&[Edit::Update {
                id,
                value: value(x),
                note: None,
            }])
            .expect("update");
        });
    });
}

fn reads(c: &mut Criterion) {
    let (_dir, p, image, _) = setup(10_000);
    c.bench_function("annotations_for_image, 10k boxes", |b| {
        b.iter(|| p.annotations_for_image(image).expect("read"));
    });
    c.bench_function("dataset_at current, 10k boxes", |b| {
        b.iter(|| p.dataset_at(None).expect("read"));
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = edits, reads
}
criterion_main!(benches);
