#![no_main]
//! See `obd::fuzzing::segment_index`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| obd::fuzzing::segment_index(data));
