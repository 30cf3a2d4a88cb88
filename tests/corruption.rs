//! Damaged fixtures: never a panic, never wrong data, always a clear error.

use std::path::Path;

use obd::io::ReadAt;
use obd::source::blob::BlobOptions;
use obd::stack::{Source, Stack, StackLayer};
use proptest::prelude::*;

use crate::util::*;

/// Blobs that hold read-only layers (every byte of them is checked somewhere).
const LAYERS: &[&str] = &[
    "L0.commit",
    "L2.msg.commit",
    "L1.sealed",
    "L0.lz4.tar",
    "L1.lz4-bs16.zfile",
    "L2.zstd-bs32.zfile",
    "L2.lz4-bs64.tar",
    "L0.zstd-bs64.zfile",
    "merged.lz4.zfile",
];

/// Opens `path` as a one-layer stack and reads every data extent; returns the
/// data, or the error. Must never panic.
fn read_all(path: &Path) -> Result<Vec<u8>, obd::Error> {
    let layer = StackLayer::open_ro(path, BlobOptions::default())?;
    let stack = Stack::new(vec![layer])?;
    let mut out = Vec::new();
    for e in stack.extents(0, stack.virtual_size()) {
        if let Source::Data { .. } = e.source {
            let mut b = vec![0u8; e.length as usize];
            stack.read_exact_at(&mut b, e.start)?;
            out.extend_from_slice(&b);
        }
    }
    Ok(out)
}

fn original(name: &str) -> Vec<u8> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, Vec<u8>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut c = cache.lock().unwrap();
    c.entry(name.to_string())
        .or_insert_with(|| read_all(&fx(name)).unwrap())
        .clone()
}

fn is_zfile(name: &str) -> bool {
    name.contains("zfile") || name.ends_with(".tar")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, .. ProptestConfig::default() })]

    /// A flipped bit in a ZFile-based layer is either caught or harmless:
    /// reading back never returns different data.
    #[test]
    fn bit_flips_never_give_wrong_data(which in 0..LAYERS.len(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let name = LAYERS[which];
        let mut bytes = std::fs::read(fx(name)).unwrap();
        let at = pos.index(bytes.len());
        bytes[at] ^= 1 << bit;
        let dir = tmpdir();
        let p = dir.path().join(name);
        std::fs::write(&p, &bytes).unwrap();
        let got = std::panic::catch_unwind(|| read_all(&p));
        let got = got.unwrap_or_else(|_| panic!("{name}: panic after flipping bit {bit} at {at}"));
        if let Ok(data) = got {
            if is_zfile(name) {
                // Checksums and digests cover every byte a reader uses.
                prop_assert_eq!(&data, &original(name), "{}: flip at {} returned different data", name, at);
            }
        }
    }

    /// Truncation at any length is an error, never a panic.
    #[test]
    fn truncation_is_an_error(which in 0..LAYERS.len(), cut in any::<prop::sample::Index>()) {
        let name = LAYERS[which];
        let bytes = std::fs::read(fx(name)).unwrap();
        let keep = cut.index(bytes.len());
        let dir = tmpdir();
        let p = dir.path().join(name);
        std::fs::write(&p, &bytes[..keep]).unwrap();
        let got = std::panic::catch_unwind(|| read_all(&p)).expect("no panic");
        prop_assert!(got.is_err(), "{}: truncated to {} bytes still opened", name, keep);
    }

    /// Random garbage is never a layer.
    #[test]
    fn garbage_is_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..20000)) {
        let dir = tmpdir();
        let p = dir.path().join("garbage");
        std::fs::write(&p, &bytes).unwrap();
        let got = std::panic::catch_unwind(|| read_all(&p)).expect("no panic");
        prop_assert!(got.is_err());
    }
}

/// The binary reports damaged files in one line with exit 2.
#[test]
fn cli_errors_are_one_line() {
    let dir = tmpdir();
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for name in LAYERS {
        let b = std::fs::read(fx(name)).unwrap();
        cases.push((format!("trunc-{name}"), b[..b.len() / 2].to_vec()));
        let mut head = b.clone();
        head[0] ^= 0xff;
        cases.push((format!("magic-{name}"), head));
        let mut tail = b.clone();
        let n = tail.len();
        tail[n - 4096 + 40] ^= 0x55; // trailer / jump table / index fields
        cases.push((format!("tail-{name}"), tail));
    }
    cases.push(("empty".into(), Vec::new()));
    cases.push(("garbage".into(), vec![0x5a; 10000]));
    for (name, bytes) in cases {
        let p = dir.path().join(&name);
        std::fs::write(&p, &bytes).unwrap();
        let mut broke = 0;
        for args in [
            vec!["inspect".to_string(), p.display().to_string()],
            vec![
                "flatten".to_string(),
                "-q".into(),
                "-o".into(),
                dir.path().join("out").display().to_string(),
                p.display().to_string(),
            ],
        ] {
            let r = obd(&args);
            if r.code() != 0 {
                let r = r.clean_error();
                assert!(
                    r.stderr().contains(&name),
                    "error names the file: {}",
                    r.stderr()
                );
                broke += 1;
            }
            let _ = std::fs::remove_file(dir.path().join("out"));
        }
        assert!(
            broke > 0,
            "{name}: damage went unnoticed by both inspect and flatten"
        );
    }
}

#[test]
fn corrupt_zfile_block_is_reported_with_its_number() {
    // Flip a byte inside block 3 of a ZFile: reads of it fail with a CRC error.
    let name = "L1.lz4-bs16.zfile";
    let blob = obd::source::blob::Blob::open(&fx(name), BlobOptions::default()).unwrap();
    let z = blob.zfile().cloned().unwrap();
    let r = z.block_range(3);
    let mut bytes = std::fs::read(fx(name)).unwrap();
    bytes[(r.start + 10) as usize] ^= 0x10;
    let dir = tmpdir();
    let p = dir.path().join(name);
    std::fs::write(&p, &bytes).unwrap();
    let blob = obd::source::blob::Blob::open(&p, BlobOptions::default()).unwrap();
    let z = blob.zfile().cloned().unwrap();
    let mut buf = vec![0u8; 16384];
    let e = z.read_exact_at(&mut buf, 3 * 16384).unwrap_err();
    assert!(matches!(e, obd::Error::Checksum { block: 3, .. }), "{e}");
    z.read_exact_at(&mut buf, 2 * 16384).unwrap();
}

/// Every truncation of a tar-wrapped layer is an error, including cuts in
/// the padding and end-of-archive blocks after the payload.
#[test]
fn tar_truncated_after_the_payload_is_an_error() {
    let name = "L2.lz4-bs64.tar";
    let bytes = std::fs::read(fx(name)).unwrap();
    let payload_end = 1536 + 89476;
    let dir = tmpdir();
    let p = dir.path().join(name);
    for keep in [
        payload_end,
        payload_end + 1,
        payload_end + 600,
        bytes.len() - 1,
    ] {
        std::fs::write(&p, &bytes[..keep]).unwrap();
        assert!(
            read_all(&p).is_err(),
            "{name} cut to {keep} bytes still opened"
        );
    }
    std::fs::write(&p, &bytes).unwrap();
    assert!(read_all(&p).is_ok());
}
