#![allow(dead_code)]
//! The bench stack shared by the read and serve benchmarks: three lz4/4 KiB
//! ZFile layers over a 1 GiB virtual disk, shaped like the reference
//! fixtures' L0/L1/L2 and tiled over the disk, and its flattened raw image.
//! Generated once into a directory and reused while `STACK_VERSION` holds.

use std::fs::File;
use std::hint::black_box;
use std::io::BufWriter;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use obd::format::lsmt::index::RwIndex;
use obd::format::lsmt::writer::{LayerMeta, Writer as LayerWriter};
use obd::format::lsmt::Segment;
use obd::format::zfile;
use obd::sample;
use obd::stack::Stack;

pub const GIB: u64 = 1 << 30;
pub const MIB: usize = 1 << 20;
/// Bump when the generated stack changes shape.
const STACK_VERSION: &str = "fixture-tiled-v1";

/// The directory the stack lives in: `$OBD_BENCH_DIR`, or cargo's target
/// tmp dir.
pub fn bench_dir() -> PathBuf {
    std::env::var_os("OBD_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("obd-read-bench"))
}

pub struct Files {
    pub layers: Vec<PathBuf>,
    pub raw: PathBuf,
}

/// One layer's operations on each 2 MiB tile, as the reference fixtures'
/// L0/L1/L2 were written: `(discard?, byte offset, bytes)`, in order.
const TILE: u64 = 2 << 20;
const OPS: [&[(bool, u64, u64)]; 3] = [
    &[
        (false, 0, 262144),
        (false, 327680, 65536),
        (false, 458752, 131072),
        (false, 720896, 65536),
        (false, 917504, 262144),
        (false, 1245184, 65536),
        (false, 1376256, 65536),
        (false, 1572864, 131072),
        (false, 1769472, 65536),
        (false, 1966080, 131072),
        (true, 262144, 65536),
    ],
    &[
        (false, 262144, 524288),
        (true, 1048576, 131072),
        (false, 161280, 512),
        (false, 603648, 512),
        (false, 1551360, 512),
        (false, 1900544, 512),
        (false, 79872, 512),
        (false, 1561600, 512),
        (false, 1652224, 512),
        (false, 241664, 512),
        (false, 522240, 512),
        (false, 643584, 512),
        (false, 673280, 512),
        (false, 539648, 512),
        (false, 1140224, 512),
        (false, 1580544, 512),
        (false, 204800, 512),
        (false, 782336, 512),
        (false, 1572864, 131072),
        (false, 1605632, 32768),
    ],
    &[
        (false, 720896, 196608),
        (true, 327680, 131072),
        (false, 1310720, 65536),
        (false, 1052672, 8192),
        (false, 1712128, 4096),
        (false, 737280, 4096),
        (false, 942080, 4096),
        (false, 118784, 4096),
        (false, 487424, 4096),
        (false, 417792, 4096),
        (false, 1269760, 4096),
        (false, 1695744, 4096),
    ],
];

fn layer_segments(layer: usize) -> Vec<Segment> {
    let mut ix = RwIndex::new();
    for tile in 0..GIB / TILE {
        for &(discard, off, len) in OPS[layer] {
            ix.insert(Segment {
                offset: (tile * TILE + off) / 512,
                length: (len / 512) as u32,
                moffset: 8,
                zeroed: discard,
                tag: 0,
            });
        }
    }
    ix.segments()
}

fn write_layer(path: &Path, layer: usize) {
    let seed = 42 + 101 * layer as u64;
    let out = BufWriter::with_capacity(4 * MIB, File::create(path).expect("create layer"));
    let z = zfile::Writer::new(out, zfile::WriterOptions::default()).expect("zfile writer");
    let meta = LayerMeta {
        virtual_size: GIB,
        uuid: obd::format::uuid::Uuid::null(),
        parent_uuid: obd::format::uuid::Uuid::null(),
        user_tag: Vec::new(),
    };
    let mut w = LayerWriter::new(z, meta).expect("layer writer");
    let mut buf = Vec::new();
    for s in layer_segments(layer) {
        if s.zeroed {
            w.push_zeroed(s.offset, s.length, 0).expect("push");
        } else {
            buf.resize(s.length as usize * 512, 0);
            sample::fill(seed, s.offset * 512, &mut buf);
            w.push_data(s.offset, &buf, 0).expect("push");
        }
    }
    let (z, _) = w.finish().expect("finish layer");
    let fin = z.finish().expect("finish zfile");
    let f = fin.inner.into_inner().expect("flush");
    f.sync_all().expect("sync");
}

pub fn fixture_stack(dir: &Path) -> Files {
    std::fs::create_dir_all(dir).expect("bench dir");
    let layers: Vec<PathBuf> = (0..3)
        .map(|i| dir.join(format!("L{i}.lz4.zfile")))
        .collect();
    let raw = dir.join("flat.raw");
    let stamp = dir.join("STAMP");
    let ok = std::fs::read_to_string(&stamp).is_ok_and(|s| s == STACK_VERSION);
    if !ok {
        let t = Instant::now();
        println!("\ngenerating the bench stack in {} ...", dir.display());
        let _ = std::fs::remove_file(&stamp);
        std::thread::scope(|s| {
            for (i, p) in layers.iter().enumerate() {
                s.spawn(move || write_layer(p, i));
            }
        });
        let stack = Stack::open(&layers, None, Default::default()).expect("open stack");
        let out = File::create(&raw).expect("create raw");
        obd::ops::flatten::to_file(&stack, &out, &|_| {}).expect("flatten");
        out.sync_all().expect("sync");
        std::fs::write(&stamp, STACK_VERSION).expect("stamp");
        println!("generated in {:.1} s", t.elapsed().as_secs_f64());
    }
    Files { layers, raw }
}

/// Reads `paths` whole so that they are in the page cache.
pub fn warm(paths: &[&Path]) {
    let mut buf = vec![0u8; 4 * MIB];
    let mut x = 0u8;
    for p in paths {
        let f = File::open(p).expect("open");
        let len = f.metadata().expect("stat").len();
        let mut at = 0;
        while at < len {
            let n = f.read_at(&mut buf, at).expect("read");
            if n == 0 {
                break;
            }
            x ^= buf[0];
            at += n as u64;
        }
    }
    black_box(x);
}
