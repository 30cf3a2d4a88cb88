#![no_main]
//! See `obd::fuzzing::rw_layer`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| obd::fuzzing::rw_layer(data));
