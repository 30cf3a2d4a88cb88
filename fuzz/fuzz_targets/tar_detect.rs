#![no_main]
//! See `obd::fuzzing::tar_detect`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| obd::fuzzing::tar_detect(data));
