//! Writers: byte-exact against the reference fixtures, and round trips.

use obd::format::lsmt::raw::SECTOR_SIZE;
use obd::format::lsmt::writer::{LayerMeta, Writer};
use obd::format::lsmt::Layer;
use obd::format::uuid::Uuid;
use obd::io::ReadAt;
use obd::source::blob::{Blob, BlobOptions};

use crate::util::*;

fn commit(layer: &Layer, uuid: &str, parent: &str, msg: &str) -> Vec<u8> {
    let meta = LayerMeta {
        virtual_size: layer.header().virtual_size,
        uuid: Uuid::parse(uuid).unwrap(),
        parent_uuid: Uuid::parse(parent).unwrap(),
        user_tag: msg.as_bytes().to_vec(),
    };
    let mut w = Writer::new(Vec::new(), meta).unwrap();
    for s in layer.segments() {
        if s.zeroed {
            w.push_zeroed(s.offset, s.length, 0).unwrap();
        } else {
            let mut b = vec![0u8; s.length as usize * 512];
            layer
                .data()
                .read_exact_at(&mut b, s.moffset * SECTOR_SIZE)
                .unwrap();
            w.push_data(s.offset, &b, 0).unwrap();
        }
    }
    w.finish().unwrap().0
}

#[test]
fn writer_reproduces_reference_commits() {
    let open_rw = |d: &str, i: &str| {
        Layer::open_rw(
            std::fs::File::open(fx(d)).unwrap(),
            std::fs::File::open(fx(i)).unwrap(),
        )
        .unwrap()
    };
    let l1 = open_rw("L1.data", "L1.index");
    let got = commit(
        &l1,
        "0000002a-0000-4000-8000-000000000001",
        "0000002a-0000-4000-8000-000000000000",
        "",
    );
    assert_eq!(sha256(&got), sha256_file(&fx("L1.commit")));
    let l2 = open_rw("L2.data", "L2.index");
    let got = commit(
        &l2,
        "0000002a-0000-4000-8000-000000000002",
        "0000002a-0000-4000-8000-000000000001",
        "",
    );
    assert_eq!(sha256(&got), sha256_file(&fx("L2.commit")));
    let got = commit(
        &l2,
        "0000002a-0000-4000-8000-000000000002",
        "0000002a-0000-4000-8000-000000000001",
        "fixture-commit-message",
    );
    assert_eq!(sha256(&got), sha256_file(&fx("L2.msg.commit")));
    let sealed = Layer::open_ro(std::sync::Arc::new(
        obd::source::FileAt::open(&fx("L1.sealed")).unwrap(),
    ))
    .unwrap();
    let got = commit(
        &sealed,
        "0000002a-0000-4000-8000-000000000001",
        "0000002a-0000-4000-8000-000000000000",
        "",
    );
    assert_eq!(sha256(&got), sha256_file(&fx("L1.commit")));
}

#[test]
fn tar_wrapper_reproduces_the_fixtures() {
    for name in [
        "L0.lz4.tar",
        "L1.zstd.tar",
        "L2.lz4-bs64.tar",
        "base.zstd-bs16.tar",
    ] {
        let file = std::fs::read(fx(name)).unwrap();
        let p = obd::format::tar::detect(&file).unwrap().unwrap();
        assert_eq!(p.offset, 1536, "{name}");
        let payload = &file[p.offset as usize..(p.offset + p.size) as usize];
        let wrapped = obd::format::tar::wrap(payload);
        assert_eq!(sha256(&wrapped), sha256_file(&fx(name)), "{name}");
    }
}

const U0: &str = "0000002a-0000-4000-8000-000000000000";
const U1: &str = "0000002a-0000-4000-8000-000000000001";
const U2: &str = "0000002a-0000-4000-8000-000000000002";

fn p(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).display().to_string()
}

#[test]
fn commit_reproduces_the_reference_byte_for_byte() {
    let d = tmpdir();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                fxs("L1.data"),
                fxs("L1.index"),
                "--uuid".into(),
                U1.into(),
                "-p".into(),
                U0.into(),
            ],
            "L1.commit",
        ),
        // Parent inherited from the data header.
        (
            vec![fxs("L2.data"), fxs("L2.index"), "--uuid".into(), U2.into()],
            "L2.commit",
        ),
        (
            vec![
                fxs("L2.data"),
                fxs("L2.index"),
                "--uuid".into(),
                U2.into(),
                "-p".into(),
                U1.into(),
                "-m".into(),
                "fixture-commit-message".into(),
            ],
            "L2.msg.commit",
        ),
        // A sealed-in-place layer, with and without -p.
        (
            vec![
                fxs("L1.sealed"),
                "--uuid".into(),
                U1.into(),
                "-p".into(),
                U0.into(),
            ],
            "L1.commit",
        ),
        (
            vec![fxs("L1.sealed"), "--uuid".into(), U1.into()],
            "L1.commit",
        ),
        // Re-committing a committed layer with its own metadata is the identity.
        (
            vec![fxs("L0.commit"), "--uuid".into(), U0.into()],
            "L0.commit",
        ),
    ];
    for (k, (args, want)) in cases.into_iter().enumerate() {
        let out = p(&d, &format!("out{k}"));
        let mut a = vec!["commit".to_string(), "-q".into()];
        a.extend(args);
        a.push(out.clone());
        obd(&a).ok();
        assert_eq!(
            sha256_file(out.as_ref()),
            sha256_file(&fx(want)),
            "{a:?} vs {want}"
        );
    }
}

/// `got` is the same ZFile as the reference's `want` but for the compressed
/// block bytes (lz4_flex and the bundled libzstd choose other matches than
/// the reference's compressors): same tar wrapper shape, same records but for
/// the fields that depend on compressed sizes, same blocks, same content.
fn assert_equivalent_zfile(got: &str, want: &str) {
    let g = Blob::open(got.as_ref(), BlobOptions::default()).unwrap();
    let w = Blob::open(&fx(want), BlobOptions::default()).unwrap();
    assert_eq!(
        g.tar().as_ref().map(|t| t.offset),
        w.tar().as_ref().map(|t| t.offset),
        "{want}: tar"
    );
    let (gz, wz) = (g.zfile().unwrap(), w.zfile().unwrap());
    for (gr, wr, what) in [
        (gz.header(), wz.header(), "header"),
        (gz.trailer(), wz.trailer(), "trailer"),
    ] {
        assert_eq!(gr.flags, wr.flags, "{want}: {what} flags");
        assert_eq!(gr.block_size, wr.block_size, "{want}: {what} block size");
        assert_eq!(gr.algo, wr.algo, "{want}: {what} algo");
        assert_eq!(gr.verify, wr.verify, "{want}: {what} verify");
        assert_eq!(gr.index_size, wr.index_size, "{want}: {what} blocks");
        assert_eq!(
            gr.original_file_size, wr.original_file_size,
            "{want}: {what} size"
        );
        assert!(gr.digest_ok(), "{want}: {what} digest");
    }
    let mut gc = vec![0u8; g.view().len() as usize];
    let mut wc = vec![0u8; w.view().len() as usize];
    g.view().read_exact_at(&mut gc, 0).unwrap();
    w.view().read_exact_at(&mut wc, 0).unwrap();
    assert_eq!(sha256(&gc), sha256(&wc), "{want}: content");
    // The jump table is the block lengths: the sections line up.
    let last = gz.blocks();
    assert_eq!(
        gz.block_range(last - 1).end,
        gz.record().index_offset,
        "{want}: jump table follows the blocks"
    );
}

#[test]
fn lz4_commits_match_the_reference_layout_and_content() {
    let d = tmpdir();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                fxs("L0.commit"),
                "-z".into(),
                "-t".into(),
                "--uuid".into(),
                U0.into(),
            ],
            "L0.lz4.tar",
        ),
        (
            vec![
                fxs("L1.data"),
                fxs("L1.index"),
                "--zfile".into(),
                "--block-size".into(),
                "16K".into(),
                "--uuid".into(),
                U1.into(),
            ],
            "L1.lz4-bs16.zfile",
        ),
        (
            vec![
                fxs("L2.data"),
                fxs("L2.index"),
                "-z".into(),
                "--tar".into(),
                "--block-size".into(),
                "64K".into(),
                "--threads".into(),
                "3".into(),
                "--uuid".into(),
                U2.into(),
            ],
            "L2.lz4-bs64.tar",
        ),
    ];
    for (k, (args, want)) in cases.into_iter().enumerate() {
        let out = p(&d, &format!("out{k}"));
        let mut a = vec!["commit".to_string(), "-q".into()];
        a.extend(args);
        a.push(out.clone());
        obd(&a).ok();
        assert_equivalent_zfile(&out, want);
    }
}

#[test]
fn zstd_commits_decompress_to_the_plain_commit() {
    // The bundled libzstd is newer than the reference's, so the blocks differ;
    // the container layout and the content must not.
    let d = tmpdir();
    for (args, bs, plain) in [
        (
            vec![
                fxs("L0.commit"),
                "--uuid".to_string(),
                U0.into(),
                "--block-size".into(),
                "64K".into(),
            ],
            65536,
            "L0.commit",
        ),
        (
            vec![
                fxs("L1.data"),
                fxs("L1.index"),
                "--uuid".into(),
                U1.into(),
                "-t".into(),
            ],
            4096,
            "L1.commit",
        ),
        (
            vec![
                fxs("L2.data"),
                fxs("L2.index"),
                "--uuid".into(),
                U2.into(),
                "--block-size".into(),
                "32K".into(),
            ],
            32768,
            "L2.commit",
        ),
    ] {
        let out = p(&d, "z");
        let mut a = vec![
            "commit".to_string(),
            "-q".into(),
            "-f".into(),
            "-z".into(),
            "--algorithm".into(),
            "zstd".into(),
        ];
        a.extend(args);
        a.push(out.clone());
        obd(&a).ok();
        let blob = Blob::open(out.as_ref(), BlobOptions::default()).unwrap();
        let z = blob.zfile().unwrap();
        assert!(
            z.header_overwrite(),
            "commit -z overwrites the header (0x1B)"
        );
        assert_eq!(z.header().flags, 0x1B);
        assert_eq!(z.trailer().flags, 0x16);
        assert_eq!(z.block_size(), bs);
        let mut content = vec![0u8; blob.view().len() as usize];
        blob.view().read_exact_at(&mut content, 0).unwrap();
        assert_eq!(sha256(&content), sha256_file(&fx(plain)));
    }
}

#[test]
fn seal_in_place_matches_the_reference_but_for_the_filler() {
    let d = tmpdir();
    let (data, index) = (p(&d, "L1.data"), p(&d, "L1.index"));
    std::fs::copy(fx("L1.data"), &data).unwrap();
    std::fs::copy(fx("L1.index"), &index).unwrap();
    let r = obd(["--json", "commit", "--seal", &data, &index])
        .ok()
        .json();
    let got = std::fs::read(&data).unwrap();
    let want = std::fs::read(fx("L1.sealed")).unwrap();
    assert_eq!(got.len(), want.len());
    // 27 entries at the old end of the file; the reference pads them to 512
    // bytes with uninitialised memory, obd with zeros.
    let at = r["index_offset"].as_u64().unwrap() as usize;
    assert_eq!(r["index_size"], 27);
    let filler = at + 27 * 16..at + 512;
    assert!(got[filler.clone()].iter().all(|&b| b == 0));
    assert_eq!(got[..filler.start], want[..filler.start]);
    assert_eq!(got[filler.end..], want[filler.end..]);
    // The sealed file commits to the reference's L1.commit.
    let out = p(&d, "c");
    obd(["commit", "-q", &data, "--uuid", U1, &out]).ok();
    assert_eq!(sha256_file(out.as_ref()), sha256_file(&fx("L1.commit")));
}

#[test]
fn merge_reproduces_overlaybd_merge() {
    let d = tmpdir();
    let layers = [fxs("L0.commit"), fxs("L1.commit"), fxs("L2.commit")];
    let z = p(&d, "merged.zfile");
    // The reference writes the null uuid; obd does when asked.
    let mut a = vec![
        "merge".to_string(),
        "-q".into(),
        "-z".into(),
        "--uuid".into(),
        obd::format::uuid::NULL.into(),
        "-o".into(),
        z.clone(),
    ];
    a.extend(layers.iter().cloned());
    obd(&a).ok();
    assert_equivalent_zfile(&z, "merged.lz4.zfile");
    // Plain: the LSMT inside the reference's merged ZFile.
    let plain = p(&d, "merged.lsmt");
    let mut a = vec![
        "merge".to_string(),
        "-q".into(),
        "--uuid".into(),
        obd::format::uuid::NULL.into(),
        "-o".into(),
        plain.clone(),
    ];
    a.extend(layers.iter().cloned());
    obd(&a).ok();
    let blob = Blob::open(&fx("merged.lz4.zfile"), BlobOptions::default()).unwrap();
    let mut inner = vec![0u8; blob.view().len() as usize];
    blob.view().read_exact_at(&mut inner, 0).unwrap();
    assert_eq!(sha256_file(plain.as_ref()), sha256(&inner));
}

#[test]
fn merge_of_every_fixture_stack_flattens_to_the_manifest_hash() {
    let d = tmpdir();
    let m = manifest();
    let plain_hash = m["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "s_plain")
        .unwrap()["flattened_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let mut flattened: std::collections::HashMap<String, String> = Default::default();
    for s in m["stacks"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        let mut layers: Vec<String> = s["layers_bottom_to_top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| fxs(v.as_str().unwrap()))
            .collect();
        if let Some(top) = s.get("writable_top") {
            // A writable top is committed first, then merged with the rest.
            let c = p(&d, &format!("{name}.top"));
            obd([
                "commit",
                "-q",
                &fxs(top["data"].as_str().unwrap()),
                &fxs(top["index"].as_str().unwrap()),
                &c,
            ])
            .ok();
            layers.push(c);
        }
        let out = p(&d, &format!("{name}.merged"));
        let mut a = vec![
            "merge".to_string(),
            "-q".into(),
            "-z".into(),
            "-t".into(),
            "-o".into(),
            out.clone(),
        ];
        if name == "s_mixed" {
            a.push("--ignore-chain".into());
        }
        a.extend(layers);
        obd(&a).ok();
        let want = s["flattened_sha256"]
            .as_str()
            .map(String::from)
            .unwrap_or(plain_hash.clone());
        // Stacks with the same content merge to the same bytes: flatten each
        // distinct merged layer once.
        let merged = sha256_file(out.as_ref());
        let got = match flattened.get(&merged) {
            Some(h) => h.clone(),
            None => {
                let raw = p(&d, &format!("{name}.raw"));
                obd(["flatten", "-q", "-o", &raw, &out]).ok();
                let h = sha256_file(raw.as_ref());
                std::fs::remove_file(&raw).unwrap();
                flattened.insert(merged, h.clone());
                h
            }
        };
        assert_eq!(got, want, "{name}");
    }
    assert!(
        flattened.len() >= 3,
        "the fixture stacks hold at least three different disks"
    );
}

#[test]
fn zfile_compress_matches_the_reference_lz4_files() {
    let d = tmpdir();
    let out = p(&d, "a");
    obd(["zfile", "compress", "-q", &fxs("base.raw"), &out]).ok();
    assert_equivalent_zfile(&out, "base.lz4.zfile");
    // The plain header (no index fields yet) is the reference's, byte for byte.
    assert_eq!(
        std::fs::read(&out).unwrap()[..512],
        std::fs::read(fx("base.lz4.zfile")).unwrap()[..512]
    );
    // From stdin (whole blocks whatever the pipe delivers); the bytes do not
    // depend on the thread count.
    let head = p(&d, "head");
    std::fs::write(&head, &std::fs::read(fx("base.raw")).unwrap()[..1_000_000]).unwrap();
    let mut hashes = Vec::new();
    for threads in ["1", "2", "5"] {
        let out = p(&d, &format!("s{threads}"));
        let r = std::process::Command::new(env!("CARGO_BIN_EXE_obd"))
            .args(["zfile", "compress", "--threads", threads, "-", &out])
            .stdin(std::fs::File::open(&head).unwrap())
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        assert_equivalent_zfile(&out, "base.head1000000.lz4.zfile");
        hashes.push(sha256_file(out.as_ref()));
    }
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "thread count changed the bytes"
    );
}

#[test]
fn zfile_round_trips_and_layout() {
    let d = tmpdir();
    let raw = sha256_file(&fx("base.raw"));
    for (alg, bs, tar) in [
        ("zstd", "4K", false),
        ("zstd", "16K", true),
        ("lz4", "64K", true),
        ("lz4", "8K", false),
    ] {
        let out = p(&d, "z");
        let mut a = vec![
            "--json",
            "zfile",
            "compress",
            "-f",
            "--algorithm",
            alg,
            "--block-size",
            bs,
        ];
        if tar {
            a.push("--tar");
        }
        let src = fxs("base.raw");
        a.push(&src);
        a.push(&out);
        let r = obd(&a).ok().json();
        assert_eq!(r["input_size"], 2097152);
        let blob = Blob::open(out.as_ref(), BlobOptions::default()).unwrap();
        assert_eq!(blob.tar().is_some(), tar);
        let z = blob.zfile().unwrap();
        // overlaybd-zfile layout: plain header (0x13, index fields 0), trailer 0x16.
        assert_eq!(z.header().flags, 0x13);
        assert_eq!(z.header().index_offset, 0);
        assert_eq!(z.trailer().flags, 0x16);
        assert_eq!(z.trailer().verify, 1);
        assert_eq!(z.trailer().level, 0);
        assert_eq!(z.blocks(), 2097152 / z.block_size());
        let back = p(&d, "back");
        obd(["zfile", "decompress", "-q", "-f", &out, &back]).ok();
        assert_eq!(sha256_file(back.as_ref()), raw, "{alg} {bs} {tar}");
    }
}

#[test]
fn zfile_decompress_reads_every_fixture() {
    let d = tmpdir();
    let m = manifest();
    for (name, f) in m["files"].as_object().unwrap() {
        if f["format"] != "zfile" {
            continue;
        }
        let out = p(&d, name);
        obd([
            "zfile",
            "decompress",
            "-q",
            "--threads",
            "2",
            &fxs(name),
            &out,
        ])
        .ok();
        let want = match f["decompressed_sha256"].as_str() {
            Some(h) => h.to_string(),
            None => sha256_file(&fx("L0.commit")), // L0.zstd-bs64.zfile (quirk Q8)
        };
        assert_eq!(sha256_file(out.as_ref()), want, "{name}");
    }
    // Not a ZFile: a clean error.
    obd(["zfile", "decompress", &fxs("L0.commit"), &p(&d, "x")]).clean_error();
}

#[test]
fn outputs_are_never_clobbered_and_never_partial() {
    let d = tmpdir();
    let out = p(&d, "out");
    std::fs::write(&out, b"precious").unwrap();
    obd(["commit", &fxs("L1.data"), &fxs("L1.index"), &out]).clean_error();
    obd(["zfile", "compress", &fxs("base.raw"), &out]).clean_error();
    obd(["merge", "-o", &out, &fxs("L0.commit")]).clean_error();
    obd(["create", "--size", "1G", &out, &p(&d, "i")]).clean_error();
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    // A failing run leaves no temporary file behind.
    obd(["commit", &fxs("base.raw"), &p(&d, "new")]).clean_error();
    obd([
        "commit",
        "-m",
        &"x".repeat(300),
        &fxs("L1.data"),
        &fxs("L1.index"),
        &p(&d, "new"),
    ])
    .clean_error();
    let names: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["out"]);
    obd([
        "commit",
        "-q",
        "--force",
        &fxs("L1.data"),
        &fxs("L1.index"),
        "--uuid",
        U1,
        &out,
    ])
    .ok();
    assert_eq!(sha256_file(out.as_ref()), sha256_file(&fx("L1.commit")));
}

#[test]
fn create_write_commit_round_trip() {
    use obd::format::lsmt::WritableLayer;
    let d = tmpdir();
    for sparse in [false, true] {
        let (data, index) = (p(&d, "d"), p(&d, "i"));
        let mut a = vec![
            "--json", "create", "-f", "--size", "8M", "-p", U0, &data, &index,
        ];
        if sparse {
            a.insert(2, "--sparse");
        }
        let r = obd(&a).ok().json();
        assert_eq!(r["virtual_size"], 8 << 20);
        assert_eq!(r["parent_uuid"], U0.to_uppercase());
        let mut model = vec![0u8; 8 << 20];
        {
            let l = WritableLayer::open(data.as_ref(), index.as_ref(), None).unwrap();
            let mut rng = obd::sample::Rng::new(7);
            for k in 0..40u64 {
                let off = rng.below(16000) * 512;
                let len = (1 + rng.below(600)) * 512;
                let len = len.min((8 << 20) - off);
                let mut buf = vec![0u8; len as usize];
                obd::sample::fill(k, off, &mut buf);
                l.write_at(&buf, off).unwrap();
                model[off as usize..(off + len) as usize].copy_from_slice(&buf);
                if k % 9 == 0 {
                    // 4 KiB-aligned discards: sparse layers unmap whole filesystem blocks.
                    let o = rng.below(2000) * 4096;
                    l.discard(o, 8192).unwrap();
                    model[o as usize..o as usize + 8192].fill(0);
                }
            }
            l.flush().unwrap();
        }
        let out = p(&d, "c");
        obd(["commit", "-q", "-f", "-z", &data, &index, &out]).ok();
        let raw = p(&d, "raw");
        obd(["flatten", "-q", "-f", "-o", &raw, &out]).ok();
        assert!(std::fs::read(&raw).unwrap() == model, "sparse={sparse}");
        let blob = Blob::open(out.as_ref(), BlobOptions::default()).unwrap();
        let l = blob.layer().unwrap();
        assert_eq!(l.trailer().as_ref().unwrap().parent_uuid, U0.to_uppercase());
        // By default the committed layer keeps the writable layer's own
        // (random) uuid, so that stacks made with obd can be chain-checked.
        assert_eq!(
            l.trailer().as_ref().unwrap().uuid,
            r["uuid"].as_str().unwrap()
        );
        assert_ne!(l.trailer().as_ref().unwrap().uuid, obd::format::uuid::NULL);
    }
}

#[test]
fn raw_commit_of_a_whole_image_and_over_a_base() {
    let d = tmpdir();
    // No base: a base layer holding every non-zero block of base.raw.
    let l = p(&d, "base.layer");
    let r = obd(["--json", "commit", "--raw", &fxs("base.raw"), &l])
        .ok()
        .json();
    assert_eq!(r["layer"]["virtual_size"], 2097152);
    assert_eq!(r["layer"]["zeroed_bytes"], 0);
    let raw = p(&d, "flat");
    obd(["flatten", "-q", "-o", &raw, &l]).ok();
    assert_eq!(sha256_file(raw.as_ref()), sha256_file(&fx("base.raw")));
    // payload1 over it, compressed: the stack flattens to payload1.
    let top = p(&d, "top.layer");
    let r = obd([
        "--json",
        "commit",
        "--raw",
        &fxs("payload1.bin"),
        "--base",
        &l,
        "-z",
        "--uuid",
        U1,
        &top,
    ])
    .ok()
    .json();
    assert!(
        r["layer"]["zeroed_bytes"].as_u64().unwrap() > 0,
        "zero chunks over data"
    );
    let raw2 = p(&d, "flat2");
    obd(["flatten", "-q", "-o", &raw2, &l, &top]).ok();
    assert_eq!(sha256_file(raw2.as_ref()), sha256_file(&fx("payload1.bin")));
}

mod raw_diff {
    use obd::format::lsmt::writer::LayerMeta;
    use obd::format::lsmt::Layer;
    use obd::format::uuid::Uuid;
    use obd::io::ReadAt;
    use obd::ops::diff::{diff_into, DiffOptions};
    use obd::stack::{Stack, StackLayer};
    use proptest::prelude::*;
    use std::sync::Arc;

    const BS: u64 = 4096;
    const BLOCKS: u64 = 48;

    fn meta(vs: u64) -> LayerMeta {
        LayerMeta {
            virtual_size: vs,
            uuid: Uuid::null(),
            parent_uuid: Uuid::null(),
            user_tag: Vec::new(),
        }
    }

    /// An image from a per-block recipe: 0 = zeros, 1 = a shared value, else random.
    fn image(recipe: &[u8], seed: u64) -> Vec<u8> {
        let mut v = vec![0u8; (BLOCKS * BS) as usize];
        for (i, &r) in recipe.iter().enumerate() {
            let b = &mut v[i * BS as usize..(i + 1) * BS as usize];
            match r % 4 {
                0 => {}
                1 => b.fill(0x5A),
                2 => obd::sample::Rng::new(i as u64).fill(b),
                _ => obd::sample::Rng::new(seed ^ (i as u64 * 77)).fill(b),
            }
        }
        v
    }

    fn layer_of(bytes: Vec<u8>, name: &str) -> StackLayer {
        StackLayer::new(name, Layer::open_ro(Arc::new(bytes)).unwrap(), None)
    }

    fn stack_of(layers: Vec<Vec<u8>>) -> Stack {
        Stack::new(
            layers
                .into_iter()
                .enumerate()
                .map(|(i, b)| layer_of(b, &format!("l{i}")))
                .collect(),
        )
        .unwrap()
    }

    fn recipe() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), BLOCKS as usize)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
        #[test]
        fn base_plus_diff_flattens_to_new(bases in proptest::collection::vec((recipe(), any::<u64>()), 0..4),
                                          new in recipe(), seed: u64, partial in 0u64..BS) {
            // Base stack: each base layer is itself a diff over the ones below.
            let vs = BLOCKS * BS;
            let mut layers: Vec<Vec<u8>> = Vec::new();
            for (r, s) in &bases {
                let img = image(r, *s);
                let below = if layers.is_empty() { None } else { Some(stack_of(layers.clone())) };
                let (l, _) = diff_into(&img, below.as_ref().map(|s| s as &dyn ReadAt),
                    DiffOptions { block_size: BS }, meta(vs), Vec::new(), &mut |_| {}).unwrap();
                layers.push(l);
            }
            // NEW may end in a partial block.
            let mut new_img = image(&new, seed);
            new_img.truncate((vs - partial) as usize);
            let base = if layers.is_empty() { None } else { Some(stack_of(layers.clone())) };
            let (top, summary) = diff_into(&new_img, base.as_ref().map(|s| s as &dyn ReadAt),
                DiffOptions { block_size: BS }, meta((new_img.len() as u64).next_multiple_of(512)), Vec::new(), &mut |_| {}).unwrap();
            layers.push(top.clone());
            let all = stack_of(layers);
            let mut flat = vec![0u8; all.virtual_size() as usize];
            all.read_exact_at(&mut flat, 0).unwrap();
            let mut want = new_img.clone();
            want.resize(flat.len(), 0);
            prop_assert!(flat == want);
            // The new layer maps no block equal to the base.
            let mut base_img = vec![0u8; vs as usize];
            if let Some(b) = &base { b.read_exact_at(&mut base_img, 0).unwrap(); }
            let top_layer = Layer::open_ro(Arc::new(top)).unwrap();
            for s in top_layer.segments() {
                let mut lba = s.offset;
                while lba < s.end() {
                    let blk = (lba * 512 / BS) as usize;
                    let r = blk * BS as usize..((blk + 1) * BS as usize).min(want.len());
                    prop_assert!(want[r.clone()] != base_img[r.clone()], "block {} maps an unchanged block", blk);
                    if s.zeroed {
                        prop_assert!(want[r].iter().all(|&b| b == 0));
                    }
                    lba += BS / 512;
                }
            }
            // Without a base, no zeroed entries at all.
            if base.is_none() {
                prop_assert_eq!(summary.zeroed_bytes, 0);
            }
        }
    }
}

#[test]
fn demo_builds_a_stack_that_flattens_to_its_model() {
    let d = tmpdir();
    let keep = p(&d, "demo");
    let r = obd(["--json", "demo", "--keep", &keep]).ok().json();
    assert_eq!(r["matches_model"], true);
    assert_eq!(r["flattened_sha256"], r["model_sha256"]);
    let layers = r["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert_eq!(layers[1]["containers"], serde_json::json!(["zfile"]));
    assert_eq!(layers[2]["containers"], serde_json::json!(["tar", "zfile"]));
    assert_eq!(r["stack"]["chain_consistent"], true);
    // The kept files are a real stack: obd flattens it to the same disk.
    let files: Vec<String> = layers
        .iter()
        .map(|l| l["file"].as_str().unwrap().to_string())
        .collect();
    let flat = p(&d, "again.raw");
    let mut a = vec![
        "flatten".to_string(),
        "-q".into(),
        "-o".into(),
        flat.clone(),
    ];
    a.extend(files);
    obd(&a).ok();
    assert_eq!(
        sha256_file(flat.as_ref()),
        r["model_sha256"].as_str().unwrap()
    );
    // --keep refuses a directory that is not empty.
    obd(["demo", "--keep", &keep]).clean_error();
}

#[test]
fn tar_without_zfile_and_zstd_levels() {
    let d = tmpdir();
    // obd honours -t without -z: a tar around the plain LSMT.
    let t = p(&d, "t.tar");
    obd([
        "commit",
        "-q",
        "-t",
        "--uuid",
        U1,
        &fxs("L1.data"),
        &fxs("L1.index"),
        &t,
    ])
    .ok();
    let file = std::fs::read(&t).unwrap();
    let pl = obd::format::tar::detect(&file).unwrap().unwrap();
    assert_eq!((pl.offset, pl.member.as_str()), (1536, "overlaybd.commit"));
    let payload = &file[pl.offset as usize..(pl.offset + pl.size) as usize];
    assert_eq!(sha256(payload), sha256_file(&fx("L1.commit")));
    assert_eq!(file.len() as u64, obd::format::tar::wrapped_size(pl.size));
    // zstd levels change the bytes, never the content; LZ4 has no levels.
    let (a, b) = (p(&d, "l1"), p(&d, "l19"));
    obd([
        "zfile",
        "compress",
        "-q",
        "--algorithm",
        "zstd",
        "--level",
        "1",
        &fxs("base.raw"),
        &a,
    ])
    .ok();
    obd([
        "zfile",
        "compress",
        "-q",
        "--algorithm",
        "zstd",
        "--level",
        "19",
        &fxs("base.raw"),
        &b,
    ])
    .ok();
    assert_ne!(sha256_file(a.as_ref()), sha256_file(b.as_ref()));
    for z in [&a, &b] {
        let back = p(&d, "back");
        obd(["zfile", "decompress", "-q", "-f", z, &back]).ok();
        assert_eq!(sha256_file(back.as_ref()), sha256_file(&fx("base.raw")));
    }
    obd([
        "zfile",
        "compress",
        "--level",
        "5",
        &fxs("base.raw"),
        &p(&d, "x"),
    ])
    .clean_error();
    obd([
        "zfile",
        "compress",
        "--block-size",
        "128K",
        &fxs("base.raw"),
        &p(&d, "x"),
    ])
    .clean_error();
}
