//! The read engine on the reference fixtures: block-cache sizes, request
//! sizes and split reads all give the manifest's flattened hashes.

use obd::format::zfile::CacheOptions;
use obd::io::ReadAt;
use obd::stack::{ReadOptions, Stack};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::util::*;

fn stack(name: &str) -> Value {
    manifest()["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no stack {name} in the manifest"))
        .clone()
}

fn layers(s: &Value) -> Vec<std::path::PathBuf> {
    s["layers_bottom_to_top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| fx(v.as_str().unwrap()))
        .collect()
}

/// s_zfile_bs64 has no hash (the reference cannot read it); its disk is
/// s_plain's.
fn hash(s: &Value) -> String {
    s["flattened_sha256"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            stack("s_plain")["flattened_sha256"]
                .as_str()
                .unwrap()
                .to_string()
        })
}

/// sha256 of the whole disk read in `req`-byte requests.
fn disk_hash(st: &Stack, req: usize) -> String {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; req];
    let mut at = 0u64;
    while at < st.virtual_size() {
        let n = (st.virtual_size() - at).min(req as u64) as usize;
        st.read_exact_at(&mut buf[..n], at).unwrap();
        h.update(&buf[..n]);
        at += n as u64;
    }
    h.finalize().iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn compressed_stacks_read_right_with_any_cache_and_request_size() {
    // (stack, request size, cache bytes, parallel)
    let cases = [
        ("s_zfile", 12_345, 256 << 10, true),
        ("s_zfile_bs64", 4096, 1 << 20, false),
        ("s_tar", 12_345, 0, false),
        ("s_mixed", 700 << 10, 64 << 20, true),
        ("merged.lz4.zfile", 1 << 20, 64 << 20, true),
    ];
    for (name, req, cache, parallel) in cases {
        let s = stack(name);
        let opts = ReadOptions {
            cache: CacheOptions { size: cache },
            parallel,
            ..Default::default()
        };
        let st = Stack::open_with(&layers(&s), None, opts).unwrap();
        assert_eq!(
            disk_hash(&st, req),
            hash(&s),
            "{name} read in {req}-byte requests, cache {cache}, parallel {parallel}"
        );
        if cache > 0 {
            let stats = st.cache().unwrap().stats();
            assert!(stats.bytes <= cache, "{name}: {stats:?}");
        }
    }
}

#[test]
fn flatten_takes_a_cache_size() {
    let dir = tmpdir();
    for (name, size) in [("s_zfile", "0"), ("s_tar", "1M")] {
        let s = stack(name);
        let out = dir.path().join(format!("{name}.raw"));
        let mut args = vec![
            "flatten".to_string(),
            "-q".into(),
            "--cache-size".into(),
            size.into(),
            "-o".into(),
            out.display().to_string(),
        ];
        args.extend(
            s["layers_bottom_to_top"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string()),
        );
        obd(&args).ok();
        assert_eq!(
            sha256_file(&out),
            hash(&s),
            "{name} with --cache-size {size}"
        );
    }
    let r = obd(["flatten", "--cache-size", "lots", "-o", "x", "L0.commit"]).code_is(2);
    assert!(r.stderr().contains("--cache-size"), "{}", r.stderr());
}
