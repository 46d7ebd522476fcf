//! Fuzz target: a Label Studio JSON export (full or JSON-MIN) through `formats::import`.
#![no_main]

use libfuzzer_sys::fuzz_target;

use loupe::formats::{Format, import};
use loupe_fuzz::put;

fuzz_target!(|data: &[u8]| {
    let path = put("labelstudio/tasks.json", data);
    let _ = import(Format::LabelStudio, &path, None);
});
