#![no_main]
//! See `obd::fuzzing::verify`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| obd::fuzzing::verify(data));
