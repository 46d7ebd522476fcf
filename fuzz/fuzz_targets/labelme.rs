//! Fuzz target: one labelme JSON file through `formats::import`.
#![no_main]

use libfuzzer_sys::fuzz_target;

use loupe::formats::{Format, import};
use loupe_fuzz::put;

fuzz_target!(|data: &[u8]| {
    let path = put("labelme/a.json", data);
    let _ = import(Format::Labelme, &path, None);
});
