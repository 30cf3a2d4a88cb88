#![no_main]
//! ZFile header/trailer/jump table parsing and block reads.
use libfuzzer_sys::fuzz_target;
use obd::format::zfile::ZFile;
use obd::io::ReadAt;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let v = data.to_vec();
    if let Ok(z) = ZFile::open(v) {
        assert!(z.blocks() == z.len().div_ceil(z.block_size()));
        common::read_windows(&z, data.get(..64).unwrap_or(data));
        // Every block once.
        for i in 0..z.blocks().min(64) {
            let mut b = vec![0u8; z.block_len(i)];
            let _ = z.read_exact_at(&mut b, i * z.block_size());
        }
    }
});
