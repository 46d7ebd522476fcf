//! Fuzz target: DICOM files: the header probe and the first-frame decode (`imaging::dicom`), on a scratch file.
#![no_main]

use std::sync::Once;

use libfuzzer_sys::fuzz_target;

use loupe::imaging::dicom;
use loupe_fuzz::put;

static HOOK: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    // libfuzzer-sys's panic hook aborts on every panic, even one Loupe catches: `decode`
    // catches a panic of dicom-rs's pixel decoders and refuses the file (its RLE decoder
    // indexes past a damaged segment), which is the behaviour under test, not a crash. A
    // silent hook lets those be caught; a panic that escapes `decode` still reaches
    // libfuzzer-sys's own `catch_unwind` and aborts as a finding.
    HOOK.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let path = put("a.dcm", data);
    if dicom::is_dicom(&path) {
        let _ = dicom::probe(&path);
        let _ = dicom::decode(&path);
    }
});
