//! The bodies of the fuzz targets in `fuzz/`, kept in the library so that
//! every input a fuzzer ever found is replayed by `cargo test`
//! (`tests/fuzz_regressions.rs`, inputs in `tests/fuzz-regressions/<target>/`).
//!
//! Each function must never panic on any input, except for the assertions it
//! makes about obd's own invariants.

use std::sync::Arc;

use crate::format::lsmt::index::{self, RwIndex};
use crate::format::lsmt::{Layer, Segment};
use crate::format::zfile::{decompress_block, Algorithm, ZFile};
use crate::io::ReadAt;
use crate::source::blob::{Blob, BlobOptions};
use crate::stack::{Source, Stack, StackLayer};
use crate::verify::{verify_blob, verify_pair_readers, Options, Status};

/// A fuzz target body.
pub type Target = fn(&[u8]);

/// Every target by name, for the regression replayer.
pub const TARGETS: &[(&str, Target)] = &[
    ("tar_detect", tar_detect),
    ("zfile_open", zfile_open),
    ("zfile_block", zfile_block),
    ("lsmt_open", lsmt_open),
    ("rw_layer", rw_layer),
    ("segment_index", segment_index),
    ("stack", stack),
    ("verify", verify),
    ("remote_input", remote_input),
];

/// Reads up to `budget` bytes of a stack's data extents and a few small
/// holes, which must read as zeros.
fn read_some(stack: &Stack, budget: u64) {
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
                assert!(
                    b.iter().all(|&x| x == 0),
                    "holes and zeroed extents read as zeros"
                );
            }
        }
    }
}

/// Reads `view` in a few windows chosen by `seed`.
fn read_windows(view: &dyn ReadAt, seed: &[u8]) {
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

fn one_layer_stack(layer: Layer) {
    let sl = StackLayer::new("fuzz", layer, None);
    if let Ok(stack) = Stack::new(vec![sl]) {
        read_some(&stack, 1 << 20);
    }
}

/// The tar wrapper detector.
pub fn tar_detect(data: &[u8]) {
    let v = data.to_vec();
    if let Ok(Some(p)) = crate::format::tar::detect(&v) {
        assert!(p.offset + p.size <= v.len() as u64);
    }
}

/// ZFile header, trailer, jump table, and block reads.
pub fn zfile_open(data: &[u8]) {
    if let Ok(z) = ZFile::open(data.to_vec()) {
        assert_eq!(z.blocks(), z.len().div_ceil(z.block_size()));
        read_windows(&z, data.get(..64).unwrap_or(data));
        for i in 0..z.blocks().min(64) {
            let mut b = vec![0u8; z.block_len(i)];
            let _ = z.read_exact_at(&mut b, i * z.block_size());
        }
    }
}

/// Block decompression (LZ4 and zstd) into a fixed size.
pub fn zfile_block(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let algo = if data[0] & 1 == 0 {
        Algorithm::Lz4
    } else {
        Algorithm::Zstd
    };
    let size = (u16::from_le_bytes([data[1], data[2]]) as usize).min(65536);
    let mut out = vec![0u8; size];
    let _ = decompress_block(algo, &data[3..], &mut out, 0, 0);
}

/// A read-only LSMT layer: header, trailer, index, reads.
pub fn lsmt_open(data: &[u8]) {
    let v: Arc<dyn ReadAt> = Arc::new(data.to_vec());
    if let Ok(layer) = Layer::open_ro(v) {
        for w in layer.segments().windows(2) {
            assert!(w[0].end() <= w[1].offset, "validated index is sorted");
        }
        one_layer_stack(layer);
    }
}

/// A writable layer: the first four bytes say where the data file ends and
/// the index file begins.
pub fn rw_layer(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let split = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let body = &data[4..];
    let split = split.min(body.len());
    let d: Arc<dyn ReadAt> = Arc::new(body[..split].to_vec());
    let i = body[split..].to_vec();
    if let Ok(layer) = Layer::open_rw_views(d, &i) {
        for w in layer.segments().windows(2) {
            assert!(w[0].end() <= w[1].offset, "replayed index is sorted");
        }
        one_layer_stack(layer);
    }
}

/// Segment codec, writable-index replay and stack merge on arbitrary entries.
pub fn segment_index(data: &[u8]) {
    let segs = index::decode(data);
    for s in &segs {
        let raw = s.encode().expect("decoded entries re-encode");
        assert_eq!(Segment::decode(&raw), *s);
    }
    let mut layers = Vec::new();
    for chunk in segs.chunks(segs.len().div_ceil(3).max(1)) {
        let mut rw = RwIndex::new();
        for s in chunk {
            // Small LBAs so that layers overlap.
            rw.insert(Segment {
                offset: s.offset % 100_000,
                ..*s
            });
        }
        layers.push(rw.segments());
    }
    let refs: Vec<&[Segment]> = layers.iter().map(|v| v.as_slice()).collect();
    let merged = index::merge(&refs).expect("few layers merge");
    for w in merged.windows(2) {
        assert!(w[0].end() <= w[1].offset);
    }
    let _ = index::validate_ro(&segs, 1 << 40, "fuzz", 0);
}

/// Layers of a stack are separated by this marker in [`stack`]'s input.
pub const LAYER_SEPARATOR: &[u8] = b"--obd-layer--";

/// A stack of up to four blobs (tar → zfile → lsmt each), read in ranges.
pub fn stack(data: &[u8]) {
    let mut layers = Vec::new();
    let mut rest = data;
    let sep = LAYER_SEPARATOR;
    while layers.len() < 4 {
        let (blob, next) = match rest.windows(sep.len()).position(|w| w == sep) {
            Some(p) => (&rest[..p], Some(&rest[p + sep.len()..])),
            None => (rest, None),
        };
        let view: Arc<dyn ReadAt> = Arc::new(blob.to_vec());
        let Ok(b) = Blob::from_reader(
            crate::source::LayerSource::file("fuzz"),
            view,
            BlobOptions::default(),
        ) else {
            return;
        };
        let Ok(layer) = b.layer() else { return };
        layers.push(StackLayer::new("fuzz", layer, Some(b)));
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    if let Ok(stack) = Stack::new(layers) {
        read_some(&stack, 1 << 20);
    }
}

/// `verify` on a blob and on a writable pair; a blob verify calls clean
/// must open with obd's readers.
pub fn verify(data: &[u8]) {
    let noop = |_: u64| {};
    let view: Arc<dyn ReadAt> = Arc::new(data.to_vec());
    let opts = Options {
        chunk_size: 1 << 16,
        ..Options::default()
    };
    let r = verify_blob("fuzz", view.clone(), &opts, &noop);
    if r.status == Status::Ok && r.problem_count() == 0 && r.kind == Some("lsmt_ro") {
        let b = Blob::from_reader(
            crate::source::LayerSource::file("fuzz"),
            view,
            BlobOptions::default(),
        )
        .expect("a blob verify passes opens");
        b.layer().expect("a layer verify passes opens");
    }
    if data.len() > 4 {
        let split = (data[0] as usize * 256 + data[1] as usize) % data.len();
        let d: Arc<dyn ReadAt> = Arc::new(data[..split].to_vec());
        let i: Arc<dyn ReadAt> = Arc::new(data[split..].to_vec());
        let _ = verify_pair_readers("data", d, "index", i, &noop);
    }
}

/// What registries, image layouts and trace files hand obd, by the first
/// byte: 0 a manifest or index (and its overlaybd layers), 1 a
/// `WWW-Authenticate` header, 2 a `Content-Range` header, 3 a trace file,
/// 4 an image reference.
pub fn remote_input(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match kind % 5 {
        0 => {
            if let Ok(crate::source::image::Document::Manifest(m)) =
                crate::source::image::parse_document(rest, None)
            {
                if let Ok(layers) = crate::source::image::overlaybd_layers(&m) {
                    assert_eq!(layers.len(), m.layers.len(), "one blob per layer");
                }
            }
        }
        1 => {
            let _ = crate::source::registry::auth::parse_challenge(&text);
        }
        2 => {
            if let Some((a, b, total)) = crate::source::registry::client::parse_content_range(&text)
            {
                assert!(a <= b, "a range that ends before it starts");
                if let Some(t) = total {
                    assert!(b < t, "a range past the blob's end");
                }
            }
        }
        3 => {
            if let Ok(records) = crate::serve::trace::decode(rest) {
                assert_eq!(
                    records.len(),
                    rest.len() / crate::serve::trace::RECORD - 1,
                    "every record decoded"
                );
            }
        }
        _ => {
            let _ = crate::source::reference::ImageRef::parse(&text);
        }
    }
}
