//! Shared helpers for the fuzz targets.
#![allow(dead_code)]

use obd::io::ReadAt;
use obd::stack::{Source, Stack};

/// Reads up to `budget` bytes of data extents of `stack` (and a few holes),
/// checking that every read either succeeds or fails cleanly.
pub fn read_some(stack: &Stack, budget: u64) {
    let mut left = budget;
    for e in stack.extents(0, stack.virtual_size()) {
        if left == 0 {
            break;
        }
        let len = e.length.min(left).min(1 << 20);
        if let Source::Data { .. } = e.source {
            let mut b = vec![0u8; len as usize];
            let _ = stack.read_exact_at(&mut b, e.start);
            left -= len;
        } else if len <= 4096 {
            let mut b = vec![1u8; len as usize];
            if stack.read_exact_at(&mut b, e.start).is_ok() {
                assert!(b.iter().all(|&x| x == 0), "holes and zeroed extents read as zeros");
            }
        }
    }
}

/// Reads `view` in a few windows chosen by `seed`.
pub fn read_windows(view: &dyn ReadAt, seed: &[u8]) {
    let len = view.len();
    if len == 0 {
        return;
    }
    for w in seed.chunks(8).take(8) {
        let mut v = [0u8; 8];
        v[..w.len()].copy_from_slice(w);
        let x = u64::from_le_bytes(v);
        let at = x % len;
        let n = ((x >> 40) % 70_000).min(len - at);
        let mut b = vec![0u8; n as usize];
        let _ = view.read_exact_at(&mut b, at);
    }
}
