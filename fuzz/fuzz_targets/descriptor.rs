//! Fuzz target: model descriptors (`ModelDescriptor::from_toml`) and the Python-literal class names of ultralytics metadata (`parse_python_names`).
#![no_main]

use libfuzzer_sys::fuzz_target;

use loupe::inference::ModelDescriptor;
use loupe::inference::descriptor::parse_python_names;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ModelDescriptor::from_toml(text, "fuzz.toml");
        let _ = parse_python_names(text);
    }
});
