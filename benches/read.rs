//! The read engine's benchmark: index lookups, random 4 KiB reads and
//! sequential reads of a compressed 3-layer stack, each as a ratio to a
//! baseline measured in the same run.
//!
//! `cargo bench --bench read [lookup|random|seq]...` (no argument: all).
//! The stack (three lz4/4 KiB ZFile layers over a 1 GiB virtual disk, shaped
//! like the reference fixtures' L0/L1/L2 and tiled over the disk) and its
//! flattened raw image are generated once into `$OBD_BENCH_DIR` (default:
//! cargo's target tmp dir) and reused. Inputs are read right before each
//! timed phase so they are in the page cache.
//!
//! The run ends with one line per figure: `target <name> <ratio> goal <ratio>`.

#[path = "common/stack.rs"]
mod bench_stack;

use std::fs::File;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use bench_stack::{fixture_stack, warm, Files, GIB, MIB};
use obd::format::zfile::CacheOptions;
use obd::sample::Rng;
use obd::stack::{Kernel, Mapping, MergedIndex, PackedMapping, ReadOptions, Stack};
use obd::ReadAt;

struct Targets(Vec<(String, f64, f64)>);

impl Targets {
    fn add(&mut self, name: &str, ratio: f64, goal: f64) {
        self.0.push((name.to_string(), ratio, goal));
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |s: &str| args.is_empty() || args.iter().any(|a| a == s);
    println!(
        "obd read benchmark: lookup kernel {}, {} rayon threads",
        Kernel::best().name(),
        rayon::current_num_threads()
    );
    let mut t = Targets(Vec::new());
    if want("lookup") {
        lookup(&mut t);
    }
    if want("random") || want("seq") {
        let files = fixture_stack(&bench_stack::bench_dir());
        if want("random") {
            random(&files, &mut t);
        }
        if want("seq") {
            sequential(&files, &mut t);
        }
    }
    println!();
    for (name, ratio, goal) in &t.0 {
        println!("target {name} {ratio:.2} goal {goal:.2}");
    }
}

// ---------------------------------------------------------------- lookup

/// Sorted, non-overlapping mappings like a merged index: lengths of 1..=128
/// sectors, half of them right after the previous one, the rest after a gap.
fn synthetic_index(n: usize, seed: u64) -> Vec<PackedMapping> {
    let mut r = Rng::new(seed);
    let mut pos = 0u64;
    (0..n)
        .map(|i| {
            if r.below(2) == 1 {
                pos += 1 + r.below(64);
            }
            let length = 1 + r.below(128) as u32;
            let m = Mapping {
                offset: pos,
                moffset: 8 + pos,
                length,
                layer: (i % 3) as u16,
                zeroed: false,
            };
            pos += length as u64;
            PackedMapping::pack(&m).expect("packable")
        })
        .collect()
}

/// Lookups per second of `f` over `probes`.
#[inline(never)]
fn rate(probes: &[u64], f: impl Fn(u64) -> usize) -> f64 {
    let t = Instant::now();
    let mut acc = 0usize;
    for &p in probes {
        acc = acc.wrapping_add(f(p));
    }
    black_box(acc);
    probes.len() as f64 / t.elapsed().as_secs_f64()
}

const LOOKUP_ROUNDS: usize = 40;

fn lookup(t: &mut Targets) {
    println!("\n== lookup: index of the mapping holding (or following) a random LBA, M lookups/s");
    println!(
        "{:>9} {:>8} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}  ratios to bsearch (avx512 / avx2 / portable)",
        "segments", "build ms", "B/seg", "bsearch", "bs-vec", "bs-24B", "avx512", "avx2", "portable"
    );
    for (n, label, goal) in [
        (1_000usize, "1k", None),
        (10_000, "10k", Some(3.0)),
        (100_000, "100k", None),
        (1_000_000, "1M", Some(4.0)),
    ] {
        let packed = synthetic_index(n, n as u64);
        let wide: Vec<Mapping> = packed.iter().map(|p| p.unpack()).collect();
        let end = packed.last().map_or(1, |p| p.end());
        let t0 = Instant::now();
        let ix = MergedIndex::build(&packed);
        let build = t0.elapsed();
        let per = ix.heap_bytes() as f64 / n as f64;
        let same = ix.as_slice();
        let mut r = Rng::new(7);
        let probes: Vec<u64> = (0..(1 << 16)).map(|_| r.below(end)).collect();
        for &p in probes.iter().take(10_000) {
            assert_eq!(
                ix.lookup(p),
                packed.partition_point(|m| m.end() <= p),
                "lookup disagrees at {p}"
            );
        }
        let kernels: Vec<Kernel> = Kernel::all()
            .into_iter()
            .filter(|k| k.supported())
            .collect();
        // One index per kernel, each looked up the way a stack does.
        let built: Vec<MergedIndex> = kernels
            .iter()
            .map(|&k| MergedIndex::build_with(&packed, k))
            .collect();
        // Best of many short interleaved rounds: the machine may be shared,
        // and short interleaved rounds give every variant the same chances
        // of running undisturbed.
        let mut rates = vec![0.0f64; 3 + kernels.len()];
        for _ in 0..LOOKUP_ROUNDS {
            let mut got = vec![
                rate(&probes, |p| same.partition_point(|m| m.end() <= p)),
                rate(&probes, |p| packed.partition_point(|m| m.end() <= p)),
                rate(&probes, |p| wide.partition_point(|m| m.end() <= p)),
            ];
            for b in &built {
                got.push(rate(&probes, |p| b.lookup(p)));
            }
            for (b, g) in rates.iter_mut().zip(got) {
                *b = b.max(g);
            }
        }
        let base = rates[0];
        let of = |k: Kernel| kernels.iter().position(|&x| x == k).map(|i| rates[3 + i]);
        let show = |r: Option<f64>| r.map_or("n/a".to_string(), |r| format!("{:.1}", r / 1e6));
        let ratio = |r: Option<f64>| r.map_or("n/a".to_string(), |r| format!("{:.1}x", r / base));
        let (a5, a2, po) = (of(Kernel::Avx512), of(Kernel::Avx2), of(Kernel::Portable));
        println!(
            "{:>9} {:>8.1} {:>6.2} {:>8.1} {:>8.1} {:>8.1} {:>8} {:>8} {:>8}  {} / {} / {}",
            n,
            build.as_secs_f64() * 1e3,
            per,
            base / 1e6,
            rates[1] / 1e6,
            rates[2] / 1e6,
            show(a5),
            show(a2),
            show(po),
            ratio(a5),
            ratio(a2),
            ratio(po),
        );
        if std::env::var_os("OBD_BENCH_LATENCY").is_some() {
            // Dependent chains: each query depends on the previous answer.
            let chain = |f: &dyn Fn(u64) -> usize| {
                let mut best = f64::MAX;
                for _ in 0..20 {
                    let t = Instant::now();
                    let mut acc = 0usize;
                    for &p in &probes {
                        acc = f(p ^ (acc as u64 & 1));
                    }
                    black_box(acc);
                    best = best.min(t.elapsed().as_secs_f64() / probes.len() as f64);
                }
                best * 1e9
            };
            println!(
                "    latency ns: bsearch {:.1}, best kernel {:.1}, portable {:.1}",
                chain(&|p| same.partition_point(|m| m.end() <= p)),
                chain(&|p| built[0].lookup(p)),
                chain(&|p| built[built.len() - 1].lookup(p)),
            );
        }
        let best = rates[3..].iter().cloned().fold(0.0, f64::max);
        if let Some(goal) = goal {
            t.add(&format!("lookup_{label}"), best / base, goal);
            if let Some(p) = po {
                t.add(&format!("lookup_{label}_portable"), p / base, goal);
            }
        }
    }
    println!("bsearch: partition_point over the index's own mapping array; bs-vec: over a copy in a plain Vec; bs-24B: over 24-byte mappings (the previous layout)");
}

fn open(files: &Files, cache: u64, parallel: bool) -> Stack {
    Stack::open_with(
        &files.layers,
        None,
        ReadOptions {
            cache: CacheOptions { size: cache },
            parallel,
            ..Default::default()
        },
    )
    .expect("open stack")
}

/// Runs `per_thread` on `threads` threads started together; returns the wall time.
fn timed(threads: usize, per_thread: impl Fn(usize) + Sync) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for i in 0..threads {
            let (b, f) = (&barrier, &per_thread);
            s.spawn(move || {
                b.wait();
                f(i);
            });
        }
        barrier.wait();
        let t = Instant::now();
        // The scope joins the threads before returning.
        t
    })
    .elapsed()
}

fn describe(stack: &Stack) {
    let (mut data, mut zero, mut hole) = (0u64, 0u64, 0u64);
    for e in stack.extents(0, stack.virtual_size()) {
        match e.source {
            obd::stack::Source::Data { .. } => data += e.length,
            obd::stack::Source::Zero { .. } => zero += e.length,
            obd::stack::Source::Hole => hole += e.length,
        }
    }
    let pct = |x: u64| 100.0 * x as f64 / stack.virtual_size() as f64;
    println!(
        "stack: {} layers, {} merged mappings, {:.1}% data, {:.1}% zeroed, {:.1}% holes",
        stack.layers().len(),
        stack.mappings().len(),
        pct(data),
        pct(zero),
        pct(hole)
    );
}

/// Checks the stack against the raw image at a few places.
fn sanity(stack: &Stack, raw: &File) {
    let mut r = Rng::new(99);
    let mut a = vec![0u8; MIB];
    let mut b = vec![0u8; MIB];
    for i in 0..200 {
        let len = if i % 10 == 0 {
            MIB
        } else {
            4096 + r.below(8) as usize * 512
        };
        let at = r.below(GIB - len as u64) / 512 * 512;
        stack.read_exact_at(&mut a[..len], at).expect("stack read");
        raw.read_exact_at(&mut b[..len], at).expect("raw read");
        assert!(a[..len] == b[..len], "stack and raw image differ at {at}");
    }
}

// ---------------------------------------------------------------- random

/// Random reads per thread in one round.
const RANDOM_READS: usize = 100_000;
/// Rounds of the random-read and sequential phases; each figure is the best
/// of its rounds (the machine may be shared with other work).
const RANDOM_ROUNDS: usize = 12;
const SEQ_ROUNDS: usize = 6;

fn random_offsets(thread: usize) -> Vec<u64> {
    let mut r = Rng::new(1000 + thread as u64);
    (0..RANDOM_READS)
        .map(|_| r.below(GIB / 4096) * 4096)
        .collect()
}

/// Random 4 KiB reads per second over `threads` threads.
fn random_rate(threads: usize, offsets: &[Vec<u64>], read: impl Fn(&mut [u8], u64) + Sync) -> f64 {
    let d = timed(threads, |t| {
        let mut buf = vec![0u8; 4096];
        let mut x = 0u8;
        for &at in &offsets[t] {
            read(&mut buf, at);
            x ^= buf[17];
        }
        black_box(x);
    });
    (threads * RANDOM_READS) as f64 / d.as_secs_f64()
}

fn random(files: &Files, t: &mut Targets) {
    println!("\n== random 4 KiB reads: {RANDOM_READS} per thread, best of {RANDOM_ROUNDS} rounds");
    let raw = File::open(&files.raw).expect("raw");
    let uncached = open(files, 0, false);
    let cached = open(files, 2 * GIB, false);
    describe(&uncached);
    let inputs: Vec<&Path> = files
        .layers
        .iter()
        .map(|p| p.as_path())
        .chain([files.raw.as_path()])
        .collect();
    warm(&inputs);
    sanity(&uncached, &raw);
    // Fill the block cache: every block read whole once, in small requests.
    let mut buf = vec![0u8; 128 << 10];
    for at in (0..GIB).step_by(buf.len()) {
        cached.read_exact_at(&mut buf, at).expect("warm cache");
    }
    let st = cached.cache().map(|c| c.stats()).unwrap_or_default();
    println!(
        "block cache warmed: {} blocks, {} MiB",
        st.entries,
        st.bytes >> 20
    );
    let offsets: Vec<Vec<u64>> = (0..2).map(random_offsets).collect();
    // [threads-1][raw, uncached, cached]
    let mut best = [[0.0f64; 3]; 2];
    for _ in 0..RANDOM_ROUNDS {
        warm(&inputs);
        for threads in [1usize, 2] {
            let got = [
                random_rate(threads, &offsets, |b, at| {
                    raw.read_exact_at(b, at).expect("raw read")
                }),
                random_rate(threads, &offsets, |b, at| {
                    uncached.read_exact_at(b, at).expect("stack read")
                }),
                random_rate(threads, &offsets, |b, at| {
                    cached.read_exact_at(b, at).expect("stack read")
                }),
            ];
            for (b, g) in best[threads - 1].iter_mut().zip(got) {
                *b = b.max(g);
            }
        }
    }
    for (i, [r_raw, r_unc, r_hot]) in best.iter().enumerate() {
        println!(
            "{} thread(s): pread raw {:.0}k/s | stack uncached {:.0}k/s ({:.2}x) | stack, block cache warm {:.0}k/s ({:.2}x)",
            i + 1,
            r_raw / 1e3,
            r_unc / 1e3,
            r_unc / r_raw,
            r_hot / 1e3,
            r_hot / r_raw
        );
    }
    let [raw1, unc1, hot1] = best[0];
    let [raw2, unc2, hot2] = best[1];
    println!(
        "2-thread scaling: pread raw {:.2}x, stack uncached {:.2}x, stack cached {:.2}x",
        raw2 / raw1,
        unc2 / unc1,
        hot2 / hot1
    );
    t.add("random4k_uncached", unc1 / raw1, 0.5);
    t.add("random4k_cached", hot1 / raw1, 0.9);
    t.add("random4k_uncached_2t_scaling", unc2 / unc1, 1.7);
    t.add("random4k_cached_2t_scaling", hot2 / hot1, 1.7);
}

// ---------------------------------------------------------------- sequential

/// Bytes per second reading the whole disk in 1 MiB requests on `threads`
/// threads (each takes the next MiB).
fn seq_rate(threads: usize, read: impl Fn(&mut [u8], u64) + Sync) -> f64 {
    let next = AtomicU64::new(0);
    let d = timed(threads, |_| {
        let mut buf = vec![0u8; MIB];
        let mut x = 0u8;
        loop {
            let at = next.fetch_add(MIB as u64, Ordering::Relaxed);
            if at >= GIB {
                break;
            }
            read(&mut buf, at);
            x ^= buf[4095];
        }
        black_box(x);
    });
    GIB as f64 / d.as_secs_f64()
}

fn sequential(files: &Files, t: &mut Targets) {
    println!("\n== sequential reads of the whole 1 GiB disk, 1 MiB requests, best of {SEQ_ROUNDS} rounds");
    let raw = File::open(&files.raw).expect("raw");
    let serial = open(files, CacheOptions::DEFAULT_SIZE, false);
    let parallel = open(files, CacheOptions::DEFAULT_SIZE, true);
    let inputs: Vec<&Path> = files
        .layers
        .iter()
        .map(|p| p.as_path())
        .chain([files.raw.as_path()])
        .collect();
    let names = [
        "pread raw, 1 thread",
        "pread raw, 2 threads",
        "stack, 1 thread, serial (one core)",
        "stack, 1 thread, parallel decompression",
        "stack, 2 threads",
    ];
    let mut best = [0.0f64; 5];
    for _ in 0..SEQ_ROUNDS {
        warm(&inputs);
        let raw_read = |b: &mut [u8], at| raw.read_exact_at(b, at).expect("raw read");
        let got = [
            seq_rate(1, raw_read),
            seq_rate(2, raw_read),
            seq_rate(1, |b, at| serial.read_exact_at(b, at).expect("stack read")),
            seq_rate(1, |b, at| {
                parallel.read_exact_at(b, at).expect("stack read")
            }),
            seq_rate(2, |b, at| {
                parallel.read_exact_at(b, at).expect("stack read")
            }),
        ];
        for (b, g) in best.iter_mut().zip(got) {
            *b = b.max(g);
        }
    }
    for (n, r) in names.iter().zip(best) {
        println!("{n:<44} {:.2} GB/s", r / 1e9);
    }
    let [raw1, raw2, s1, p1, s2] = best;
    println!(
        "ratios to pread raw 1 thread: serial {:.2}x, parallel {:.2}x, 2 threads {:.2}x (2 threads vs raw 2 threads {:.2}x)",
        s1 / raw1,
        p1 / raw1,
        s2 / raw1,
        s2 / raw2
    );
    t.add("seq_1t_one_core", s1 / raw1, 0.4);
    t.add("seq_2t", s2 / raw1, 0.7);
}
