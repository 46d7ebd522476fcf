//! Fuzz target: an Open Images bounding-box CSV and its class descriptions (the two files separated by a `--8<--` line), through `formats::import` on the dataset folder.
#![no_main]

use libfuzzer_sys::fuzz_target;

use loupe::formats::{Format, import};
use loupe_fuzz::{put, scratch, split};

fuzz_target!(|data: &[u8]| {
    let parts = split(data, 2);
    let _ = put(
        "openimages/annotations/oidv6-class-descriptions.csv",
        parts[1],
    );
    let _ = put(
        "openimages/annotations/train-annotations-bbox.csv",
        parts[0],
    );
    let _ = import(Format::Openimages, &scratch().join("openimages"), None);
});
