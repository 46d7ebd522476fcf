//! Fuzz target: the Darknet layout (`obj.data`, `obj.names`, `train.txt` and one label file beside a 1x1 image), the four files separated by `--8<--` lines.
#![no_main]

use libfuzzer_sys::fuzz_target;

use loupe::formats::{Format, import};
use loupe_fuzz::{TINY_PNG, put, split};

fuzz_target!(|data: &[u8]| {
    let parts = split(data, 4);
    let _ = put("darknet/obj_train_data/a.png", TINY_PNG);
    let _ = put("darknet/obj.names", parts[1]);
    let _ = put("darknet/train.txt", parts[2]);
    let _ = put("darknet/obj_train_data/a.txt", parts[3]);
    let path = put("darknet/obj.data", parts[0]);
    let _ = import(Format::Yolo, &path, None);
});
