//! Golden tests: everything the reference tools wrote reads back as the
//! manifest says.

use std::collections::BTreeMap;

use obd::io::ReadAt;
use obd::source::blob::{Blob, BlobOptions};
use serde_json::Value;

use crate::util::*;

#[test]
fn fixture_files_are_intact() {
    let m = manifest();
    for (name, f) in m["files"].as_object().unwrap() {
        assert_eq!(
            sha256_file(&fx(name)),
            f["sha256"].as_str().unwrap(),
            "{name}: the copied fixture differs from the manifest"
        );
    }
}

fn stacks() -> Vec<Value> {
    manifest()["stacks"].as_array().unwrap().clone()
}

fn plain_hash() -> String {
    stacks().iter().find(|s| s["name"] == "s_plain").unwrap()["flattened_sha256"]
        .as_str()
        .unwrap()
        .to_string()
}

fn stack_args(s: &Value) -> Vec<String> {
    let mut args: Vec<String> = s["layers_bottom_to_top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    if let Some(top) = s.get("writable_top") {
        args.push("--upper".into());
        args.push(top["data"].as_str().unwrap().into());
        args.push(top["index"].as_str().unwrap().into());
    }
    if s["name"] == "s_mixed" {
        // A sealed-in-place L1 under an L2 committed over L1.commit: the
        // parent-uuid chain is broken on purpose.
        args.push("--ignore-chain".into());
    }
    args
}

/// The flattened hash a stack must have. `s_zfile_bs64` has none in the
/// manifest because the reference reader fails on it; its layers decompress to
/// the same LSMT files as `s_plain`, so its disk is `s_plain`'s.
fn expected_hash(s: &Value) -> String {
    match s["flattened_sha256"].as_str() {
        Some(h) => h.to_string(),
        None => {
            assert_eq!(s["name"], "s_zfile_bs64", "unexpected stack without a hash");
            plain_hash()
        }
    }
}

#[test]
fn every_stack_flattens_to_the_manifest_hash() {
    let dir = tmpdir();
    for s in stacks() {
        let out = dir
            .path()
            .join(format!("{}.raw", s["name"].as_str().unwrap()));
        let mut args = vec![
            "flatten".to_string(),
            "-q".into(),
            "-o".into(),
            out.display().to_string(),
        ];
        args.extend(stack_args(&s));
        obd(&args).ok();
        let meta = std::fs::metadata(&out).unwrap();
        assert_eq!(
            meta.len(),
            s["virtual_size"].as_u64().unwrap(),
            "{}",
            s["name"]
        );
        assert_eq!(sha256_file(&out), expected_hash(&s), "stack {}", s["name"]);
    }
}

#[test]
fn flatten_to_stdout_matches_too() {
    let s = stacks()
        .into_iter()
        .find(|s| s["name"] == "s_mixed")
        .unwrap();
    let mut args = vec!["flatten".to_string(), "-o".into(), "-".into()];
    args.extend(stack_args(&s));
    let r = obd(&args).ok();
    assert_eq!(
        r.out.stdout.len() as u64,
        s["virtual_size"].as_u64().unwrap()
    );
    assert_eq!(sha256(&r.out.stdout), expected_hash(&s));
}

#[test]
fn flatten_writes_a_sparse_file() {
    use std::os::unix::fs::MetadataExt;
    let dir = tmpdir();
    let out = dir.path().join("flat.raw");
    obd([
        "flatten",
        "-q",
        "-o",
        out.to_str().unwrap(),
        "L0.lz4.tar",
        "L1.lz4-bs16.zfile",
        "L2.zstd-bs32.zfile",
    ])
    .ok();
    let meta = std::fs::metadata(&out).unwrap();
    assert_eq!(meta.len(), 1 << 30);
    // About 2 MiB of the 1 GiB disk has data; holes must stay holes.
    assert!(
        meta.blocks() * 512 < 8 << 20,
        "flatten allocated {} bytes for a 1 GiB disk with ~2 MiB of data",
        meta.blocks() * 512
    );
}

#[test]
fn every_zfile_decompresses_to_the_manifest_hash() {
    let m = manifest();
    let mut checked = 0;
    for (name, f) in m["files"].as_object().unwrap() {
        if f["format"] != "zfile" {
            continue;
        }
        let blob = Blob::open(&fx(name), BlobOptions::default()).unwrap();
        let z = blob
            .zfile()
            .unwrap_or_else(|| panic!("{name}: not detected as ZFile"));
        let mut data = vec![0u8; z.len() as usize];
        z.read_exact_at(&mut data, 0)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = match f["decompressed_sha256"].as_str() {
            Some(h) => h.to_string(),
            None => {
                // The reference cannot read this one (blocks over 64 KiB); the
                // manifest says it was made from the same layer as L0.commit.
                assert_eq!(name, "L0.zstd-bs64.zfile");
                m["files"]["L0.commit"]["sha256"]
                    .as_str()
                    .unwrap()
                    .to_string()
            }
        };
        assert_eq!(sha256(&data), want, "{name}");
        if let Some(sz) = f["decompressed_size"].as_u64() {
            assert_eq!(data.len() as u64, sz, "{name}");
        }
        checked += 1;
    }
    assert_eq!(checked, 13, "the manifest lists 13 ZFiles");
}

/// `inspect --json` reports exactly the header fields the manifest records.
#[test]
fn inspect_reports_manifest_header_fields() {
    let m = manifest();
    for (name, f) in m["files"].as_object().unwrap() {
        if f["kind"] == "raw" {
            continue;
        }
        let r = obd(["inspect", "--json", name]).ok();
        let j = r.json();
        let file = &j["files"][0];
        let mut fields: BTreeMap<String, &Value> = BTreeMap::new();
        for (k, v) in f.as_object().unwrap() {
            if k.starts_with("lsmt_") || k.starts_with("zfile_") {
                fields.insert(k.clone(), v);
            }
        }
        assert!(!fields.is_empty(), "{name}: no header fields in manifest");
        for (k, want) in fields {
            let (section, record, field) = split_key(&k);
            let got = match section {
                "zfile" => &file["zfile"][record][field],
                _ => &file["lsmt"][record][field],
            };
            assert_eq!(got, want, "{name}: {k}");
        }
        if let Some(off) = f.get("tar_payload_offset") {
            assert_eq!(&file["tar"]["offset"], off, "{name}");
            assert_eq!(&file["tar"]["size"], &f["tar_payload_size"], "{name}");
        }
        let want_kind = match f["format"].as_str().unwrap() {
            "lsmt_rw_data" => "lsmt_rw_data",
            "lsmt_rw_index" => "lsmt_rw_index",
            "lsmt_ro" => "lsmt_ro",
            "lsmt_sealed_rw_data" => "lsmt_sealed",
            "zfile" if f["kind"] == "zfile_raw" => "raw",
            "zfile" => "lsmt_ro",
            other => panic!("{name}: unknown format {other}"),
        };
        assert_eq!(file["kind"], want_kind, "{name}");
    }
}

/// `lsmt_header_uuid` → ("lsmt", "header", "uuid").
fn split_key(k: &str) -> (&str, &str, &str) {
    let (section, rest) = k.split_once('_').unwrap();
    let (record, field) = rest.split_once('_').unwrap();
    (section, record, field)
}

#[test]
fn inspect_stack_reports_chain_and_sizes() {
    let r = obd([
        "inspect",
        "--stack",
        "--json",
        "L0.commit",
        "L1.commit",
        "L2.commit",
    ])
    .ok();
    let j = r.json();
    assert_eq!(j["virtual_size"], 1u64 << 30);
    assert_eq!(j["chain_consistent"], true);
    assert_eq!(j["layers"].as_array().unwrap().len(), 3);
    let total: u64 = ["data_bytes", "zeroed_bytes", "hole_bytes"]
        .iter()
        .map(|k| j[k].as_u64().unwrap())
        .sum();
    assert_eq!(total, 1 << 30);
    let per_layer: u64 = j["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["data_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(per_layer, j["data_bytes"].as_u64().unwrap());
    // Out of order: L1 below L0 breaks the chain.
    let r = obd(["inspect", "--stack", "--json", "L1.commit", "L0.commit"]).ok();
    assert_eq!(r.json()["chain_consistent"], false);
}

/// Sector-level model of the non-sparse writable layers from the manifest's
/// op list: which layer last wrote each sector, and whether as data or discard.
fn model(layers: &[&str]) -> BTreeMap<u64, (usize, bool)> {
    let m = manifest();
    let ops = &m["writable_layer_procedure"]["ops"];
    let mut disk = BTreeMap::new();
    for (li, l) in layers.iter().enumerate() {
        for op in ops[*l].as_array().unwrap() {
            let off = op["offset"].as_u64().unwrap() / 512;
            let len = op["length"].as_u64().unwrap() / 512;
            let data = op["op"] == "pwrite";
            for s in off..off + len {
                disk.insert(s, (li, data));
            }
        }
    }
    disk
}

#[test]
fn map_agrees_with_the_manifest_ops() {
    let r = obd(["map", "--json", "L0.commit", "L1.commit", "L2.commit"]).ok();
    let j = r.json();
    let want = model(&["L0", "L1", "L2"]);
    let mut got = BTreeMap::new();
    let mut covered = 0u64;
    for e in j["extents"].as_array().unwrap() {
        let start = e["start"].as_u64().unwrap();
        let len = e["length"].as_u64().unwrap();
        assert_eq!(start, covered, "extents are contiguous");
        covered += len;
        let kind = e["kind"].as_str().unwrap();
        if kind == "hole" {
            continue;
        }
        let layer = e["layer"].as_u64().unwrap() as usize;
        for s in start / 512..(start + len) / 512 {
            got.insert(s, (layer, kind == "data"));
        }
    }
    assert_eq!(covered, 1 << 30);
    assert_eq!(got, want);
}

#[test]
fn map_lba_shows_one_extent() {
    // L2 wrote payload2 data at byte 720896 (sector 1408).
    let r = obd([
        "map",
        "--json",
        "--lba",
        "1408",
        "L0.commit",
        "L1.commit",
        "L2.commit",
    ])
    .ok();
    let j = r.json();
    let ex = j["extents"].as_array().unwrap();
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0]["layer"], 2);
    assert_eq!(ex[0]["kind"], "data");
    assert!(ex[0]["file"].as_str().unwrap().ends_with("L2.commit"));
    obd(["map", "--lba", "99999999999", "L0.commit"]).clean_error();
}
