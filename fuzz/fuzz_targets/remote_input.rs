#![no_main]
//! See `obd::fuzzing::remote_input`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| obd::fuzzing::remote_input(data));
