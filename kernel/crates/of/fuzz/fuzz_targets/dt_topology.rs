//! libFuzzer target: a device-tree blob through `of::dma_topology` and every boot-time accessor.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| of_fuzz::topology::check(data));
