//! Fuzz target: a CVAT XML file (`annotations.xml`) through `formats::import`.
#![no_main]

use libfuzzer_sys::fuzz_target;

use loupe::formats::{Format, import};
use loupe_fuzz::put;

fuzz_target!(|data: &[u8]| {
    let path = put("cvat/annotations.xml", data);
    let _ = import(Format::Cvat, &path, None);
});
