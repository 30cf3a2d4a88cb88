//! The read engine against a `Vec<u8>` oracle: cached, uncached, serial and
//! split reads of random stacks of LSMT layers, plain or in ZFiles.

use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::format::lsmt::header::Header;
use crate::format::lsmt::index::RwIndex;
use crate::format::lsmt::writer::{LayerMeta, Writer as LayerWriter};
use crate::format::zfile::{self, Algorithm, WriterOptions};
use crate::io::testing::CountingReadAt;
use crate::sample;

/// The virtual disk of the random stacks: 4 MiB.
const VSIZE: u64 = 4 << 20;
const SECTORS: u64 = VSIZE / SECTOR_SIZE;

/// One write of a layer: `(lba, sectors, discard)`.
type Op = (u64, u32, bool);

/// How a layer is stored: plain, or in a ZFile with this algorithm and
/// block size.
type Container = Option<(Algorithm, u32)>;

fn seed(layer: usize) -> u64 {
    1000 + layer as u64
}

/// Writes a committed layer with `ops` replayed (last write wins) and data
/// from the sample generator.
fn layer_bytes(layer: usize, ops: &[Op], container: Container) -> Vec<u8> {
    let mut ix = RwIndex::new();
    for &(lba, len, discard) in ops {
        ix.insert(Segment {
            offset: lba,
            length: len,
            moffset: 8,
            zeroed: discard,
            tag: 0,
        });
    }
    let meta = LayerMeta {
        virtual_size: VSIZE,
        uuid: crate::format::uuid::Uuid::null(),
        parent_uuid: crate::format::uuid::Uuid::null(),
        user_tag: Vec::new(),
    };
    fn write<W: std::io::Write>(w: &mut LayerWriter<W>, ix: &RwIndex, layer: usize) {
        let mut buf = Vec::new();
        for s in ix.segments() {
            if s.zeroed {
                w.push_zeroed(s.offset, s.length, 0).unwrap();
            } else {
                buf.resize(s.length as usize * 512, 0);
                sample::fill(seed(layer), s.offset * 512, &mut buf);
                w.push_data(s.offset, &buf, 0).unwrap();
            }
        }
    }
    match container {
        None => {
            let mut w = LayerWriter::new(Vec::new(), meta).unwrap();
            write(&mut w, &ix, layer);
            w.finish().unwrap().0
        }
        Some((algorithm, block_size)) => {
            let opts = WriterOptions {
                algorithm,
                block_size,
                ..Default::default()
            };
            let z = zfile::Writer::new(Vec::new(), opts).unwrap();
            let mut w = LayerWriter::new(z, meta).unwrap();
            write(&mut w, &ix, layer);
            w.finish().unwrap().0.finish().unwrap().inner
        }
    }
}

/// The disk the layers make, bottom first.
/// The layer files of `layers` (bottom first) and the disk they make.
fn layers_and_disk(layers: &[(Vec<Op>, Container)]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let ops: Vec<Vec<Op>> = layers.iter().map(|l| l.0.clone()).collect();
    let files = layers
        .iter()
        .enumerate()
        .map(|(i, (ops, c))| layer_bytes(i, ops, *c))
        .collect();
    (files, oracle(&ops))
}

fn oracle(layers: &[Vec<Op>]) -> Vec<u8> {
    let mut disk = vec![0u8; VSIZE as usize];
    for (i, ops) in layers.iter().enumerate() {
        for &(lba, len, discard) in ops {
            let r = (lba * 512) as usize..((lba + len as u64) * 512) as usize;
            if discard {
                disk[r].fill(0);
            } else {
                let at = r.start as u64;
                sample::fill(seed(i), at, &mut disk[r]);
            }
        }
    }
    disk
}

fn stack(files: &[Vec<u8>], opts: ReadOptions) -> Stack {
    let layers = files
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            let name = PathBuf::from(format!("L{i}"));
            let data: Arc<dyn ReadAt> = Arc::new(bytes.clone());
            let blob = Blob::from_reader(
                crate::source::LayerSource::File(name.clone()),
                data,
                opts.blob,
            )
            .unwrap();
            StackLayer::new(
                name.display().to_string(),
                blob.layer().unwrap(),
                Some(blob),
            )
        })
        .collect();
    Stack::new_with(layers, opts).unwrap()
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        // Small writes, often unaligned to blocks.
        (0..SECTORS - 64, 1u32..64, any::<bool>()),
        // Runs of tens to hundreds of KiB.
        (0..SECTORS - 1024, 64u32..1024, prop::bool::weighted(0.1)),
    ]
}

fn container_strategy() -> impl Strategy<Value = Container> {
    prop_oneof![
        Just(None),
        (
            prop_oneof![Just(Algorithm::Lz4), Just(Algorithm::Zstd)],
            prop_oneof![Just(4096u32), Just(16384), Just(65536)]
        )
            .prop_map(Some),
    ]
}

/// Read windows: small and unaligned, block-sized, and large enough to be
/// split over threads.
fn window_strategy() -> impl Strategy<Value = (u64, usize)> {
    prop_oneof![
        (0..VSIZE - 70_000, 1usize..70_000),
        (0..VSIZE / 4096 - 1, 1usize..3).prop_map(|(b, n)| (b * 4096, n * 4096)),
        (0..VSIZE - (1 << 20), (256usize << 10)..(1 << 20)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn reads_match_the_oracle(
        layers in proptest::collection::vec(
            (proptest::collection::vec(op_strategy(), 1..40), container_strategy()),
            1..4,
        ),
        windows in proptest::collection::vec(window_strategy(), 1..12),
    ) {
        let (files, want) = layers_and_disk(&layers);
        let plain = ReadOptions { cache: CacheOptions::off(), parallel: false, ..Default::default() };
        let variants = [
            plain,
            // A cache far smaller than the disk: evictions all the time.
            ReadOptions { cache: CacheOptions { size: 256 << 10 }, parallel: true, ..Default::default() },
            ReadOptions { cache: CacheOptions { size: 64 << 20 }, parallel: true, ..Default::default() },
            ReadOptions { cache: CacheOptions { size: 64 << 20 }, parallel: false, ..Default::default() },
        ];
        for opts in variants {
            let s = stack(&files, opts);
            prop_assert_eq!(s.virtual_size(), VSIZE);
            // Twice: the second pass finds blocks in the cache.
            for _ in 0..2 {
                for &(at, len) in &windows {
                    let mut got = vec![0xA5u8; len];
                    s.read_exact_at(&mut got, at).unwrap();
                    prop_assert!(
                        got[..] == want[at as usize..at as usize + len],
                        "{:?}: {} bytes at {} differ", opts, len, at
                    );
                }
            }
        }
    }
}

#[test]
fn the_whole_disk_in_every_request_size() {
    let layers: Vec<(Vec<Op>, Container)> = vec![
        (
            vec![(0, 4096, false), (5000, 700, false), (100, 8, true)],
            Some((Algorithm::Lz4, 4096)),
        ),
        (
            vec![(8, 16, false), (2000, 300, false), (6000, 2000, true)],
            Some((Algorithm::Zstd, 65536)),
        ),
        (vec![(3, 1, false), (4000, 2000, false)], None),
    ];
    let (files, want) = layers_and_disk(&layers);
    for opts in [
        ReadOptions {
            cache: CacheOptions::off(),
            parallel: false,
            ..Default::default()
        },
        ReadOptions::default(),
    ] {
        let s = stack(&files, opts);
        for req in [512usize, 4096, 5000, 65536, 300 << 10, 1 << 20] {
            let mut got = vec![0u8; VSIZE as usize];
            for (i, chunk) in got.chunks_mut(req).enumerate() {
                s.read_exact_at(chunk, (i * req) as u64).unwrap();
            }
            assert!(got == want, "{req}-byte requests with {opts:?}");
        }
    }
}

/// A committed layer over `data` with the given segments.
fn hand_layer(segments: Vec<Segment>, data: Arc<dyn ReadAt>) -> StackLayer {
    let header = Header {
        flags: 0x07,
        index_offset: 0,
        index_size: segments.len() as u64,
        virtual_size: 1 << 20,
        uuid: String::new(),
        parent_uuid: String::new(),
        version: [1, 0],
        user_tag: String::new(),
    };
    StackLayer::new("hand", Layer::by_hand(header, segments, data), None)
}

#[test]
fn adjacent_mappings_of_one_layer_are_one_read() {
    let seg = |offset, length, moffset| Segment {
        offset,
        length,
        moffset,
        zeroed: false,
        tag: 0,
    };
    let bytes: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    // Three entries, data contiguous in the layer for the first two only.
    let counting = Arc::new(CountingReadAt::new(bytes.clone()));
    let segments = vec![seg(0, 8, 8), seg(8, 8, 16), seg(16, 8, 100)];
    let s = Stack::new_with(
        vec![hand_layer(segments, counting.clone())],
        ReadOptions::default(),
    )
    .unwrap();
    assert_eq!(s.mappings().len(), 3);
    let mut buf = vec![0u8; 24 * 512];
    s.read_exact_at(&mut buf, 0).unwrap();
    let reads = counting.reads.lock().unwrap().clone();
    assert_eq!(reads, vec![(8 * 512, 16 * 512), (100 * 512, 8 * 512)]);
    assert_eq!(&buf[..8192], &bytes[4096..4096 + 8192]);
    assert_eq!(&buf[8192..], &bytes[51200..51200 + 4096]);
}

#[test]
fn errors_inside_split_reads_are_returned() {
    let layers = [(vec![(0u64, 8192u32, false)], Some((Algorithm::Lz4, 4096)))];
    let mut file = layer_bytes(0, &layers[0].0, layers[0].1);
    // Corrupt a byte in the middle of the compressed data.
    let mid = file.len() / 2;
    file[mid] ^= 0x40;
    let s = stack(&[file], ReadOptions::default());
    let mut buf = vec![0u8; 4 << 20];
    let e = s.read_exact_at(&mut buf, 0).unwrap_err();
    assert!(matches!(e, Error::InLayer { .. }), "{e}");
    assert!(e.to_string().contains("L0"), "{e}");
}
