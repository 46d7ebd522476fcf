//! Fuzz target: COCO instances and COCO results files through `formats::import`.
#![no_main]

use libfuzzer_sys::fuzz_target;

use loupe::formats::{Format, import};
use loupe_fuzz::put;

fuzz_target!(|data: &[u8]| {
    let path = put("annotations.json", data);
    let _ = import(Format::Coco, &path, None);
    let _ = import(Format::CocoResults, &path, None);
});
