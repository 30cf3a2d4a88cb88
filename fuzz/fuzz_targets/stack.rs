#![no_main]
//! See `obd::fuzzing::stack`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| obd::fuzzing::stack(data));
