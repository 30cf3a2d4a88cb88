#![no_main]
//! Segment codec, writable-index replay and stack merge on arbitrary entries.
use libfuzzer_sys::fuzz_target;
use obd::format::lsmt::index::{self, RwIndex};
use obd::format::lsmt::Segment;

fuzz_target!(|data: &[u8]| {
    let segs = index::decode(data);
    for s in &segs {
        let raw = s.encode().expect("decoded entries re-encode");
        assert_eq!(Segment::decode(&raw), *s);
    }
    // Replay as writable-layer records in three layers, then merge.
    let mut layers = Vec::new();
    for chunk in segs.chunks(segs.len().div_ceil(3).max(1)) {
        let mut rw = RwIndex::new();
        for s in chunk {
            // Keep LBAs small so layers overlap.
            rw.insert(Segment { offset: s.offset % 100_000, ..*s });
        }
        layers.push(rw.segments());
    }
    let refs: Vec<&[Segment]> = layers.iter().map(|v| v.as_slice()).collect();
    let merged = index::merge(&refs).expect("few layers merge");
    for w in merged.windows(2) {
        assert!(w[0].end() <= w[1].offset);
    }
    let _ = index::validate_ro(&segs, 1 << 40, "fuzz", 0);
});
