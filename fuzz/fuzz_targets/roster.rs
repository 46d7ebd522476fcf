//! Fuzz target: the signed team roster (`sync::Roster::open`), in memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = loupe::sync::Roster::open(data, None);
});
