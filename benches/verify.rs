//! `obd verify` throughput on a 1 GiB lz4/4K ZFile of mixed data.
//!
//! Baselines:
//! * the reference's `overlaybd-zfile --verify` (CRCs only, no
//!   decompression): 0.38 s per GiB of original data on this machine class,
//!   i.e. 2.83 GB/s. obd checks CRCs **and** decompresses every block.
//! * `sha256sum` of the same file, measured here in the same run, against
//!   `verify --digest` (everything above plus SHA-256 of the whole file).
//!
//! The file is generated with `obd::sample` and `obd::format::zfile::Writer`
//! into a temporary file; the page cache is warmed right before each timing
//! (this machine evicts pages untouched for ~30 s). Each timing is the best of
//! a few runs. `OBD_BENCH_MIB` changes the size (default 1024);
//! `OBD_BENCH_FILE=path` keeps the generated file there (and reuses it when
//! it exists, e.g. for `obd verify` under a profiler);
//! `OBD_BENCH_CHUNK_KIB` sets the read size of the pass.
//!
//! Run: `cargo bench --bench verify`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use obd::format::zfile::{Writer, WriterOptions};
use obd::source::FileAt;
use obd::verify::{self, Options, Status};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

/// Seconds per GiB of original data of the reference's `--verify`.
const REFERENCE_S_PER_GIB: f64 = 0.38;
const RUNS: usize = 3;

/// The whole file (in memory).
fn slurp(path: &Path) -> Vec<u8> {
    let mut f = std::fs::File::open(path).unwrap();
    let mut all = Vec::new();
    f.read_to_end(&mut all).unwrap();
    all
}

/// Touches every page of the file so that it is in the page cache.
fn warm(path: &Path) {
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 4 << 20];
    while f.read(&mut buf).unwrap() > 0 {}
}

fn best(mut f: impl FnMut() -> Duration) -> Duration {
    (0..RUNS).map(|_| f()).min().unwrap()
}

/// CPU time (user + system) of this process so far, all threads.
#[allow(unsafe_code)]
fn cpu_time() -> Duration {
    // SAFETY: rusage is plain data, valid when zeroed.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// The best of a few (wall, CPU) timings.
fn best_with_cpu(f: impl FnMut(usize) -> (Duration, Duration)) -> (Duration, Duration) {
    (0..RUNS).map(f).min().unwrap()
}

/// Wall and CPU time of `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (Duration, Duration, T) {
    let (c, t) = (cpu_time(), Instant::now());
    let r = f();
    (t.elapsed(), cpu_time() - c, r)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn generate(path: &Path, size: u64) -> u64 {
    const PIECE: usize = 64 << 20;
    let file = std::fs::File::create(path).unwrap();
    let mut w = Writer::new(
        std::io::BufWriter::with_capacity(8 << 20, file),
        WriterOptions::default(),
    )
    .unwrap();
    let mut done = 0u64;
    while done < size {
        // Generate the next pieces in parallel, compress in order.
        let n = ((size - done) as usize).min(4 * PIECE);
        let mut buf = vec![0u8; n];
        buf.par_chunks_mut(PIECE).enumerate().for_each(|(i, c)| {
            obd::sample::fill(42, done + (i * PIECE) as u64, c);
        });
        w.push(&buf).unwrap();
        done += n as u64;
    }
    let f = w.finish().unwrap();
    let mut out = f.inner.into_inner().unwrap();
    out.flush().unwrap();
    f.size
}

/// What each part of the work costs on one thread, in memory.
fn components(path: &Path, size: u64) {
    use obd::format::zfile::ZFile;
    let bytes = slurp(path);
    let z = ZFile::open(bytes).unwrap();
    let bytes = z.inner();
    let n = z.blocks();
    let ranges: Vec<(usize, usize, usize)> = (0..n)
        .map(|i| {
            let r = z.block_range(i);
            (r.start as usize, r.end as usize - 4, z.block_len(i))
        })
        .collect();
    let per = |name: &str, d: Duration| {
        println!(
            "  {name:<28} {:.3} s = {:.2} GB/s of original data (1 thread)",
            d.as_secs_f64(),
            size as f64 / d.as_secs_f64() / 1e9
        )
    };
    println!("components:");
    let crc = best(|| {
        let t = Instant::now();
        for &(a, b, _) in &ranges {
            std::hint::black_box(obd::format::checksum::crc32c_salt(&bytes[a..b]));
        }
        t.elapsed()
    });
    per("block CRC32C", crc);
    let mut out = vec![0u8; 65536];
    let dec = best(|| {
        let t = Instant::now();
        for (i, &(a, b, l)) in ranges.iter().enumerate() {
            obd::format::zfile::decompress_block(
                z.algorithm(),
                &bytes[a..b],
                &mut out[..l],
                i as u64,
                0,
            )
            .unwrap();
        }
        t.elapsed()
    });
    per("lz4 decompression (lz4_flex)", dec);
    let mut buf = vec![0u8; 4 << 20];
    let file = FileAt::open(path).unwrap();
    let read = best(|| {
        let t = Instant::now();
        let mut pos = 0u64;
        while pos < bytes.len() as u64 {
            let k = (bytes.len() as u64 - pos).min(buf.len() as u64) as usize;
            obd::io::ReadAt::read_exact_at(&file, &mut buf[..k], pos).unwrap();
            pos += k as u64;
        }
        t.elapsed()
    });
    per("pread 4 MiB (page cache)", read);
}

fn main() {
    let mib: u64 = std::env::var("OBD_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let size = mib << 20;
    let dir = tempfile::tempdir().unwrap();
    let path = std::env::var_os("OBD_BENCH_FILE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("sample.lz4.zfile"));
    let t = Instant::now();
    let stored = match std::fs::metadata(&path) {
        Ok(m) if std::env::var_os("OBD_BENCH_FILE").is_some() => m.len(),
        _ => generate(&path, size),
    };
    println!(
        "generated {} MiB of mixed sample data as a {:.1} MiB lz4/4K ZFile ({:.2}:1) in {:.1} s",
        mib,
        stored as f64 / (1 << 20) as f64,
        size as f64 / stored as f64,
        t.elapsed().as_secs_f64()
    );
    let threads = rayon::current_num_threads();
    println!(
        "threads: {threads} (cpus: {})",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let chunk_kib: usize = std::env::var("OBD_BENCH_CHUNK_KIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(Options::default().chunk_size >> 10);
    println!("read size: {chunk_kib} KiB");
    // Wall and CPU time of one verification (page cache warmed first).
    let run = |opts: &Options| {
        let opts = &Options {
            chunk_size: chunk_kib << 10,
            ..opts.clone()
        };
        warm(&path);
        let f = Arc::new(FileAt::open(&path).unwrap());
        let (wall, cpu, r) = timed(|| verify::verify_blob("sample", f, opts, &|_| {}));
        assert_eq!(r.status, Status::Ok, "{:?}", r.problems);
        assert_eq!(r.blocks, Some(size.div_ceil(4096)));
        (wall, cpu, r)
    };

    println!("load average before: {} (other work on the machine slows wall-clock times; CPU times are not inflated)", loadavg());
    // 1. verify: CRC + decompression of every block + structure.
    let (plain, plain_cpu) = best_with_cpu(|_| {
        let (w, c, _) = run(&Options::default());
        (w, c)
    });
    let cores = threads.min(2) as f64;
    let cpu_bound = size as f64 / (plain_cpu.as_secs_f64() / cores) / 1e9;
    let gbps = size as f64 / plain.as_secs_f64() / 1e9;
    let s_per_gib = plain.as_secs_f64() / (size as f64 / (1u64 << 30) as f64);
    let vs_ref = REFERENCE_S_PER_GIB / s_per_gib;
    println!(
        "verify:            {:.3} s = {:.3} s/GiB of original data = {gbps:.2} GB/s ({:.2} GB/s of stored bytes); reference --verify 0.38 s/GiB -> {vs_ref:.2}x",
        plain.as_secs_f64(),
        s_per_gib,
        stored as f64 / plain.as_secs_f64() / 1e9
    );
    println!(
        "  cpu time {:.3} s (all threads); on {cores} idle cores that is {cpu_bound:.2} GB/s -> {:.2}x the reference",
        plain_cpu.as_secs_f64(),
        cpu_bound / (1u64 << 30) as f64 * 1e9 * REFERENCE_S_PER_GIB
    );

    // 2. verify --digest: the same plus SHA-256 of the whole file, one pass.
    let bytes = slurp(&path);
    let expect: [u8; 32] = Sha256::digest(&bytes).into();
    drop(bytes);
    let digest = verify::Sha256Digest(expect);
    let opts = Options {
        digest: Some(digest),
        ..Options::default()
    };
    let (with_digest, digest_cpu) = best_with_cpu(|_| {
        let (w, c, r) = run(&opts);
        assert_eq!(r.sha256, Some(digest.to_string()));
        (w, c)
    });

    // 3. sha256sum (coreutils) of the same file.
    let mut sha256sum_cpu = Duration::MAX;
    let sha256sum = best(|| {
        warm(&path);
        let t = Instant::now();
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%U %S", "sha256sum"])
            .arg(&path)
            .output()
            .expect("sha256sum (via /usr/bin/time)");
        let e = t.elapsed();
        let times: Vec<f64> = String::from_utf8_lossy(&out.stderr)
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if times.len() == 2 {
            sha256sum_cpu = sha256sum_cpu.min(Duration::from_secs_f64(times[0] + times[1]));
        }
        assert!(out.status.success());
        let hex: String = expect.iter().map(|b| format!("{b:02x}")).collect();
        assert!(String::from_utf8_lossy(&out.stdout).starts_with(&hex));
        e
    });
    // The sha2 crate alone, in memory, one thread (SHA-NI when the CPU has it).
    let bytes = slurp(&path);
    let (sha2_alone, sha2_cpu) = best_with_cpu(|_| {
        let (w, c, _) = timed(|| std::hint::black_box(Sha256::digest(&bytes)));
        (w, c)
    });
    drop(bytes);
    let rate = |d: Duration| stored as f64 / d.as_secs_f64() / 1e9;
    let vs_sha = sha256sum.as_secs_f64() / with_digest.as_secs_f64();
    println!(
        "verify --digest:   {:.3} s ({:.2} GB/s of stored bytes, {:.2} GB/s of original data)",
        with_digest.as_secs_f64(),
        rate(with_digest),
        size as f64 / with_digest.as_secs_f64() / 1e9
    );
    println!(
        "sha256sum:         {:.3} s ({:.2} GB/s); verify --digest is {vs_sha:.2}x faster",
        sha256sum.as_secs_f64(),
        rate(sha256sum)
    );
    // Idle-machine estimate: sha256sum is one thread; verify --digest spreads
    // its CPU time over the cores, but the SHA-256 thread is sequential.
    let sha_thread = sha2_cpu.as_secs_f64();
    let digest_idle = (digest_cpu.as_secs_f64() / cores).max(sha_thread);
    let vs_sha_cpu = sha256sum_cpu.as_secs_f64() / digest_idle;
    println!(
        "  cpu time: verify --digest {:.3} s, sha256sum {:.3} s; on {cores} idle cores {vs_sha_cpu:.2}x",
        digest_cpu.as_secs_f64(),
        sha256sum_cpu.as_secs_f64()
    );
    println!(
        "sha2 crate alone:  {:.3} s ({:.2} GB/s, {:.1}x sha256sum: {})",
        sha2_alone.as_secs_f64(),
        rate(sha2_alone),
        sha256sum.as_secs_f64() / sha2_alone.as_secs_f64(),
        if rate(sha2_alone) > 2.0 * rate(sha256sum) {
            "SHA-NI in use"
        } else {
            "no SHA-NI?"
        }
    );
    components(&path, size);
    println!("load average after: {}", loadavg());
    println!("target verify_throughput {gbps:.2} GB/s goal 2.83");
    println!("target verify_vs_reference {vs_ref:.2} x goal 1.0");
    println!("target digest_vs_sha256sum {vs_sha:.2} x goal 2.0");
    println!("target verify_throughput_cpu_bound {cpu_bound:.2} GB/s goal 2.83");
    println!("target digest_vs_sha256sum_cpu_bound {vs_sha_cpu:.2} x goal 2.0");
}
