//! The boxes of one class ranked by how unlike the class they look: each box crop's embedding
//! against the class centre (the mean of the class's box-crop vectors, normalised), cosine
//! distance, farthest first. The boxes least like the others are where wrong classes, bad crops
//! and odd objects gather; the app's crop grid and `loupe similar --class --outliers` show them.
//!
//! Vectors come from `store::embeddings`, which does not load the vector of a box that moved
//! since it was embedded: such a box, like one never embedded, has no distance and is listed
//! after the ranked ones, in creation order.

use std::collections::HashMap;

use uuid::Uuid;

use super::error::ReviewError;
use super::similar::dot;
use crate::model::{BBox, ReviewState};
use crate::store::{EmbeddingKey, Project};

/// One box of the class.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Crop {
    pub ann: Uuid,
    pub image: Uuid,
    /// The image's path, relative to the project's folder.
    pub path: String,
    pub bbox: BBox,
    pub state: ReviewState,
    /// Cosine distance to the class centre (0 alike, 2 opposite); `None` without a vector.
    pub distance: Option<f32>,
}

/// The boxes of a class, farthest from its centre first.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ClassCrops {
    /// The embedding set the distances come from; `None` when the project has none (the boxes
    /// are then as listed).
    pub set: Option<String>,
    /// Boxes with a distance (they come first).
    pub ranked: usize,
    pub crops: Vec<Crop>,
}

/// The cosine distance of each vector to the normalised mean of all of them, in the order
/// given; every distance `None` when the mean is zero (no vectors, or vectors that cancel).
pub fn centre_distances(dim: usize, vectors: &[&[f32]]) -> Vec<Option<f32>> {
    let mut centre = vec![0.0f32; dim];
    for v in vectors {
        for (c, x) in centre.iter_mut().zip(v.iter()) {
            *c += x;
        }
    }
    let norm = dot(&centre, &centre).sqrt();
    if vectors.is_empty() || !norm.is_normal() {
        return vec![None; vectors.len()];
    }
    for c in &mut centre {
        *c /= norm;
    }
    vectors
        .iter()
        .map(|v| Some(1.0 - dot(v, &centre)))
        .collect()
}

/// Orders crops by distance, farthest first; those without one keep their order after them.
/// Ties keep the order given, so the result does not depend on the sort.
pub fn rank(crops: &mut [Crop]) -> usize {
    crops.sort_by(|a, b| match (a.distance, b.distance) {
        (Some(x), Some(y)) => y.total_cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    crops.iter().filter(|c| c.distance.is_some()).count()
}

/// The live boxes of `class` (labels; proposals too with `proposals`), ranked by distance to
/// the class centre in embedding set `set` (`None`: the newest set; a project without sets
/// lists the boxes in creation order with `set: None`). Rejected proposals are left out.
pub fn class_crops(
    project: &Project,
    class: Uuid,
    proposals: bool,
    set: Option<&str>,
) -> Result<ClassCrops, ReviewError> {
    let paths: HashMap<Uuid, String> = project
        .all_images()?
        .into_iter()
        .map(|i| (i.id, i.path))
        .collect();
    let mut crops: Vec<Crop> = project
        .annotations_of_class(class)?
        .into_iter()
        .filter(|a| {
            a.value.state.is_label() || (proposals && a.value.state == ReviewState::Proposed)
        })
        .map(|a| Crop {
            ann: a.id,
            image: a.value.image,
            path: paths.get(&a.value.image).cloned().unwrap_or_default(),
            bbox: a.value.bbox,
            state: a.value.state,
            distance: None,
        })
        .collect();
    let set = match set {
        Some(name) => Some(super::similar::choose_set(project, Some(name))?),
        None => project.embedding_sets()?.last().map(|s| s.name.clone()),
    };
    let Some(set) = set else {
        return Ok(ClassCrops {
            set: None,
            ranked: 0,
            crops,
        });
    };
    // Only the vectors of this class's listed boxes, as the store gives them (not those of
    // boxes moved since they were embedded).
    let (dim, keys, data) = project.load_embeddings(&set, true)?;
    let row_of: HashMap<EmbeddingKey, usize> =
        keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    let mut with_vector = Vec::new();
    let mut vectors = Vec::new();
    for (i, c) in crops.iter().enumerate() {
        let key = EmbeddingKey {
            image: c.image,
            ann: Some(c.ann),
        };
        if let Some(&row) = row_of.get(&key) {
            with_vector.push(i);
            vectors.push(&data[row * dim..(row + 1) * dim]);
        }
    }
    for (i, d) in with_vector.into_iter().zip(centre_distances(dim, &vectors)) {
        crops[i].distance = d;
    }
    let ranked = rank(&mut crops);
    Ok(ClassCrops {
        set: Some(set),
        ranked,
        crops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crop(i: u128, distance: Option<f32>) -> Crop {
        Crop {
            ann: Uuid::from_u128(i),
            image: Uuid::from_u128(1000 + i),
            path: format!("{i}.png"),
            bbox: BBox::new(0.0, 0.0, 10.0, 10.0),
            state: ReviewState::Submitted,
            distance,
        }
    }

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn a_planted_outlier_is_farthest_from_the_centre() {
        let alike: Vec<Vec<f32>> = (0..6)
            .map(|i| {
                #[allow(clippy::cast_precision_loss)]
                let wobble = i as f32 * 0.02;
                unit(&[1.0, wobble, 0.1 - wobble, 0.0])
            })
            .collect();
        let outlier = unit(&[0.1, 0.0, 0.2, 1.0]);
        let mut vectors: Vec<&[f32]> = alike.iter().map(Vec::as_slice).collect();
        vectors.insert(3, &outlier);
        let d = centre_distances(4, &vectors);
        let mut crops: Vec<Crop> = d
            .iter()
            .enumerate()
            .map(|(i, d)| crop(i as u128, *d))
            .collect();
        assert_eq!(rank(&mut crops), 7);
        assert_eq!(crops[0].ann, Uuid::from_u128(3), "{crops:?}");
        let far = crops[0].distance.expect("ranked");
        let next = crops[1].distance.expect("ranked");
        assert!(far > 0.5 && next < 0.1, "{far} {next}");
        assert!(crops.windows(2).all(|w| w[0].distance >= w[1].distance));
    }

    #[test]
    fn no_vectors_or_a_zero_mean_gives_no_distances() {
        assert!(centre_distances(4, &[]).is_empty());
        let a = [1.0, 0.0];
        let b = [-1.0, 0.0];
        assert_eq!(centre_distances(2, &[&a, &b]), vec![None, None]);
    }

    #[test]
    fn boxes_without_a_vector_follow_the_ranked_ones_in_their_order() {
        let mut crops = vec![
            crop(1, None),
            crop(2, Some(0.1)),
            crop(3, None),
            crop(4, Some(0.3)),
        ];
        assert_eq!(rank(&mut crops), 2);
        let order: Vec<u128> = crops.iter().map(|c| c.ann.as_u128()).collect();
        assert_eq!(order, vec![4, 2, 1, 3]);
    }
}
