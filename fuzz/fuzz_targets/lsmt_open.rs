#![no_main]
//! LSMT read-only layer: header, trailer, index load and validation, reads.
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use obd::format::lsmt::Layer;
use obd::stack::{Stack, StackLayer};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let v: Arc<dyn obd::io::ReadAt> = Arc::new(data.to_vec());
    if let Ok(layer) = Layer::open_ro(v) {
        for w in layer.segments.windows(2) {
            assert!(w[0].end() <= w[1].offset, "validated index is sorted");
        }
        let sl = StackLayer { name: "fuzz".into(), layer, blob: None };
        if let Ok(stack) = Stack::new(vec![sl]) {
            common::read_some(&stack, 1 << 20);
        }
    }
});
