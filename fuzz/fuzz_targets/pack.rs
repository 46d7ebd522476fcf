//! Fuzz target: the sync pack decoder (`sync::pack::open`), in memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = loupe::sync::pack::open(data);
});
