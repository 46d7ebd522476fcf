//! Loupe: labeling, review and versioning for object-detection datasets.
//!
//! The headless core (`model`, `store`, `formats`, `imaging`, `ingest`, `inference`, `review`,
//! `sync`, `jobs`) never depends on the GUI; `ui` sits on top behind the `gui` feature.

pub mod cli;
pub mod formats;
pub mod imaging;
pub mod inference;
pub mod ingest;
pub mod model;
pub mod review;
pub mod store;
pub mod sync;
#[cfg(feature = "gui")]
pub mod ui;
