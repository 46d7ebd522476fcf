//! "More like this" search: exact top-20 cosine neighbours over 100,000 and 1,000,000 stored
//! 512-float vectors (the size of the layout backbone's embeddings), and loading 100,000
//! vectors from a project file into the index.
//!
//! `cargo bench --bench similar`. The target: a million vectors in well under a second.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use loupe::review::similar::Index;
use loupe::store::EmbeddingKey;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

const DIM: usize = 512;

fn random_index(n: usize, seed: u64) -> Index {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut data = Vec::with_capacity(n * DIM);
    for _ in 0..n {
        let row: Vec<f32> = (0..DIM).map(|_| rng.random::<f32>() - 0.5).collect();
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        data.extend(row.iter().map(|x| x / norm));
    }
    let keys = (0..n as u128)
        .map(|i| EmbeddingKey {
            image: Uuid::from_u128(i + 1),
            ann: None,
        })
        .collect();
    Index::new(DIM, keys, data).expect("index")
}

fn search(c: &mut Criterion) {
    let mut group = c.benchmark_group("similar");
    group.sample_size(10);
    for n in [100_000, 1_000_000] {
        let index = random_index(n, 7);
        let key = EmbeddingKey {
            image: Uuid::from_u128(n as u128 / 2),
            ann: None,
        };
        group.bench_function(format!("top20_of_{n}x{DIM}"), |b| {
            b.iter(|| black_box(index.like(&key, 20)));
        });
    }
    group.finish();
}

criterion_group!(benches, search);
criterion_main!(benches);
