//! The boxes of a class ranked by distance to the class centre (`review::crops`), on a real
//! project file with vectors stored directly: a planted outlier first, a class without vectors
//! listed as it is, a moved box's stale vector not used; and `loupe similar --class --outliers`.

use std::path::{Path, PathBuf};

use loupe::model::{AnnotationValue, BBox, BoxFlags, ReviewState, Source};
use loupe::review::crops::class_crops;
use loupe::store::{Edit, EmbeddingKey, ImageInput, NewEmbedding, Project};
use uuid::Uuid;

use super::support::{fails, ok, ok_json, write_png};

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

struct Planted {
    project: PathBuf,
    cat: Uuid,
    dog: Uuid,
    /// The cat boxes in creation order; the fourth is the outlier.
    cats: Vec<(Uuid, Uuid, BBox)>,
}

/// Two images, five cat labels (the fourth embedded pointing elsewhere) and one dog label with
/// no vector.
fn planted(dir: &Path) -> Planted {
    write_png(&dir.join("a.png"), 200, 150, 1);
    write_png(&dir.join("b.png"), 200, 150, 2);
    let project = dir.join("p.loupe");
    let mut p = Project::create(&project).expect("create");
    let mut bulk = p.bulk().expect("bulk");
    for name in ["a.png", "b.png"] {
        let file = dir.join(name);
        let (hash, bytes) = loupe::imaging::hash_file(&file).expect("hash");
        bulk.upsert_image(&ImageInput {
            path: name.into(),
            hash: Some(hash),
            width: 200,
            height: 150,
            bytes,
            external_id: None,
        })
        .expect("add");
    }
    bulk.commit().expect("commit");
    let cat = p.ensure_class("cat").expect("class").id;
    let dog = p.ensure_class("dog").expect("class").id;
    let a = p.image_by_path("a.png").expect("query").expect("a").id;
    let b = p.image_by_path("b.png").expect("query").expect("b").id;
    let value = |image, class, bbox| AnnotationValue {
        image,
        class,
        bbox,
        source: Source::Human,
        state: ReviewState::Submitted,
        flags: BoxFlags::default(),
        deleted: false,
        attributes: Default::default(),
    };
    let cats: Vec<(Uuid, Uuid, BBox)> = (0..5)
        .map(|i| {
            let image = if i % 2 == 0 { a } else { b };
            (
                Uuid::now_v7(),
                image,
                BBox::new(10.0 + 20.0 * f64::from(i), 10.0, 30.0, 30.0),
            )
        })
        .collect();
    let mut edits: Vec<Edit> = cats
        .iter()
        .map(|(id, image, bbox)| Edit::Create {
            id: *id,
            value: value(*image, cat, *bbox),
        })
        .collect();
    edits.push(Edit::Create {
        id: Uuid::now_v7(),
        value: value(a, dog, BBox::new(100.0, 80.0, 40.0, 40.0)),
    });
    p.apply(&edits).expect("apply");
    let (set, _) = p
        .embedding_set("planted", "planted.onnx", "m0", "{}", "s0")
        .expect("set");
    let rows: Vec<NewEmbedding> = cats
        .iter()
        .enumerate()
        .map(|(i, (ann, image, bbox))| NewEmbedding {
            key: EmbeddingKey {
                image: *image,
                ann: Some(*ann),
            },
            bbox: Some(*bbox),
            vector: if i == 3 {
                unit(&[0.0, 0.1, 1.0])
            } else {
                #[allow(clippy::cast_precision_loss)]
                unit(&[1.0, 0.05 * i as f32, 0.1])
            },
        })
        .collect();
    p.store_embeddings(&set.name, &rows).expect("store");
    Planted {
        project,
        cat,
        dog,
        cats,
    }
}

#[test]
fn the_planted_outlier_ranks_first_and_a_class_without_vectors_is_listed_as_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pl = planted(dir.path());
    let p = Project::open(&pl.project).expect("open");
    let cats = class_crops(&p, pl.cat, false, None).expect("crops");
    assert_eq!(cats.set.as_deref(), Some("planted"));
    assert_eq!((cats.crops.len(), cats.ranked), (5, 5));
    assert_eq!(cats.crops[0].ann, pl.cats[3].0);
    assert!(
        cats.crops
            .windows(2)
            .all(|w| w[0].distance >= w[1].distance)
    );
    let dogs = class_crops(&p, pl.dog, false, None).expect("crops");
    assert_eq!((dogs.crops.len(), dogs.ranked), (1, 0));
    assert_eq!(dogs.crops[0].distance, None);
}

#[test]
fn a_moved_box_loses_its_stale_vector() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pl = planted(dir.path());
    let mut p = Project::open(&pl.project).expect("open");
    // Move the outlier: its vector was cut from where it was, so it no longer counts.
    let (id, _, _) = pl.cats[3];
    let mut moved = p.annotation(id).expect("box").value;
    moved.bbox = BBox::new(150.0, 100.0, 30.0, 30.0);
    p.apply(&[Edit::Update {
        id,
        value: moved,
        note: None,
    }])
    .expect("move");
    let cats = class_crops(&p, pl.cat, false, None).expect("crops");
    assert_eq!((cats.crops.len(), cats.ranked), (5, 4));
    assert_eq!(cats.crops[4].ann, id, "listed after the ranked boxes");
    assert_eq!(cats.crops[4].distance, None);
    // Without the outlier in the mean, the four alike boxes are all close to it.
    assert!(cats.crops[..4].iter().all(|c| c.distance < Some(0.01)));
}

#[test]
fn loupe_similar_lists_the_outliers_of_a_class() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pl = planted(dir.path());
    let json = ok_json(
        &pl.project,
        &[
            "similar",
            "--class",
            "cat",
            "--outliers",
            "-k",
            "2",
            "--json",
        ],
    );
    let crops = json["crops"].as_array().expect("crops");
    assert_eq!(crops.len(), 2);
    assert_eq!(crops[0]["ann"], pl.cats[3].0.to_string());
    let text = ok(&pl.project, &["similar", "--class", "cat", "--outliers"]);
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(
        text.lines()
            .next()
            .expect("a line")
            .contains(&pl.cats[3].0.to_string())
    );
    let e = fails(&pl.project, &["similar", "--class", "dog", "--outliers"]);
    assert!(e.contains("loupe embed"), "{e}");
    let e = fails(
        &pl.project,
        &["similar", "--class", "dog", "--outliers", "--proposals"],
    );
    assert!(e.contains("loupe embed"), "{e}");
    let e = fails(&pl.project, &["similar", "--class", "cow", "--outliers"]);
    assert!(e.contains("no class named"), "{e}");
}
