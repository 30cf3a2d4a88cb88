#![no_main]
//! Block decompression (lz4 and zstd) of arbitrary data into fixed sizes.
use libfuzzer_sys::fuzz_target;
use obd::format::zfile::{decompress_block, Algorithm};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let algo = if data[0] & 1 == 0 { Algorithm::Lz4 } else { Algorithm::Zstd };
    let size = (u16::from_le_bytes([data[1], data[2]]) as usize).min(65536);
    let mut out = vec![0u8; size];
    let _ = decompress_block(algo, &data[3..], &mut out, 0, 0);
});
