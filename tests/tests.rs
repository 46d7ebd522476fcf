//! Loupe's integration tests: one binary, one module per area.

mod architecture;
mod crash;
mod interop;
mod resolve;
mod review;
mod support;
mod sync;
#[cfg(feature = "gui")]
mod ui;
