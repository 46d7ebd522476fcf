//! Fuzz target: a CreateML JSON file through `formats::import`.
#![no_main]

use libfuzzer_sys::fuzz_target;

use loupe::formats::{Format, import};
use loupe_fuzz::put;

fuzz_target!(|data: &[u8]| {
    let path = put("createml/_annotations.createml.json", data);
    let _ = import(Format::Createml, &path, None);
});
