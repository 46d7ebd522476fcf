//! Fuzz target: DICOM files: the header probe and the first-frame decode (`imaging::dicom`), on a scratch file.
#![no_main]

use libfuzzer_sys::fuzz_target;

use loupe::imaging::dicom;
use loupe_fuzz::put;

fuzz_target!(|data: &[u8]| {
    let path = put("a.dcm", data);
    if dicom::is_dicom(&path) {
        let _ = dicom::probe(&path);
        let _ = dicom::decode(&path);
    }
});
