//! Loupe's integration tests: one binary, one module per area.

mod architecture;
mod clients;
mod crash;
mod interop;
mod results;
mod resolve;
mod review;
mod support;
mod sync;
#[cfg(feature = "gui")]
mod ui;
mod version;
