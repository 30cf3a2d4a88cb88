#![no_main]
//! The tar wrapper detector on arbitrary bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let v = data.to_vec();
    if let Ok(Some(p)) = obd::format::tar::detect(&v) {
        assert!(p.offset + p.size <= v.len() as u64);
    }
});
