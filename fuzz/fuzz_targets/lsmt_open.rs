#![no_main]
//! See `obd::fuzzing::lsmt_open`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| obd::fuzzing::lsmt_open(data));
