#![no_main]
//! Writable layer: data file header + index file records (replay, checks).
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use obd::format::lsmt::Layer;
use obd::stack::{Stack, StackLayer};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    // The first four bytes say where the data file ends and the index file begins.
    let split = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize % data.len().max(1);
    let body = &data[4..];
    let split = split.min(body.len());
    let d: Arc<dyn obd::io::ReadAt> = Arc::new(body[..split].to_vec());
    let i = body[split..].to_vec();
    if let Ok(layer) = Layer::open_rw_views(d, &i) {
        for w in layer.segments.windows(2) {
            assert!(w[0].end() <= w[1].offset, "replayed index is sorted");
        }
        let sl = StackLayer { name: "fuzz".into(), layer, blob: None };
        if let Ok(stack) = Stack::new(vec![sl]) {
            common::read_some(&stack, 1 << 20);
        }
    }
});
