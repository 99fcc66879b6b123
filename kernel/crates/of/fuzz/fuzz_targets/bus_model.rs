//! libFuzzer target: the bus model fed by a device-tree blob (plus control bytes after it).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = of_fuzz::bus::run(data);
});
