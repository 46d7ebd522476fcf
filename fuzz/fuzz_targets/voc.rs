//! Fuzz target: one Pascal VOC XML file through `formats::import`.
#![no_main]

use libfuzzer_sys::fuzz_target;

use loupe::formats::{Format, import};
use loupe_fuzz::put;

fuzz_target!(|data: &[u8]| {
    let path = put("voc/a.xml", data);
    let _ = import(Format::Voc, &path, None);
});
