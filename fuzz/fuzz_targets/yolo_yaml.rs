//! Fuzz target: an ultralytics `data.yaml` through `formats::import`.
#![no_main]

use libfuzzer_sys::fuzz_target;

use loupe::formats::{Format, import};
use loupe_fuzz::put;

fuzz_target!(|data: &[u8]| {
    let path = put("yolo/data.yaml", data);
    let _ = import(Format::Yolo, &path, None);
});
