//! Loupe: labeling, review and versioning for object-detection datasets.
//!
//! The headless core (`model`, `policy`, `store`, `formats`, `imaging`, `ingest`, `inference`, `review`,
//! `sync`, `jobs`) never depends on the GUI; `ui` sits on top behind the `gui` feature.

pub mod cli;
pub mod formats;
pub mod imaging;
pub mod inference;
pub mod ingest;
pub mod limits;
pub mod model;
pub mod policy;
pub mod results;
pub mod review;
pub mod stacks;
pub mod store;
pub mod sync;
#[cfg(feature = "gui")]
pub mod ui;

/// The text of a caught panic (a `&str` or `String` payload), for errors that replace crashes.
pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}
