#![no_main]
//! A whole stack from fuzzed blobs (tar → zfile → lsmt each), read in ranges.
use std::path::PathBuf;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use obd::blob::{Blob, BlobOptions};
use obd::stack::{Stack, StackLayer};

#[path = "common.rs"]
mod common;

/// Layers are separated by this marker.
const SEP: &[u8] = b"--obd-layer--";

fuzz_target!(|data: &[u8]| {
    let mut layers = Vec::new();
    let mut rest = data;
    while layers.len() < 4 {
        let (blob, next) = match rest.windows(SEP.len()).position(|w| w == SEP) {
            Some(p) => (&rest[..p], Some(&rest[p + SEP.len()..])),
            None => (rest, None),
        };
        let view: Arc<dyn obd::io::ReadAt> = Arc::new(blob.to_vec());
        let Ok(b) = Blob::from_reader(PathBuf::from("fuzz"), view, BlobOptions::default()) else {
            return;
        };
        let Ok(layer) = b.layer() else { return };
        layers.push(StackLayer { name: "fuzz".into(), layer, blob: Some(b) });
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    if let Ok(stack) = Stack::new(layers) {
        common::read_some(&stack, 1 << 20);
    }
});
