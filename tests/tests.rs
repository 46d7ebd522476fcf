//! Loupe's integration tests: one binary, one module per area.

mod architecture;
mod attributes;
mod clients;
mod crash;
mod crops;
mod embed;
mod imports;
mod interop;
mod label_errors;
mod limits;
mod old_client;
mod prelabel;
mod resolve;
mod results;
mod review;
mod safety;
mod stacks;
mod support;
mod sync;
#[cfg(feature = "gui")]
mod ui;
mod version;
mod workers;
