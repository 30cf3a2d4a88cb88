#![no_main]
//! See `obd::fuzzing::zfile_open`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| obd::fuzzing::zfile_open(data));
