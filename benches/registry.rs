//! `cargo bench --bench registry`: lazy registry reads against the same
//! bytes fetched otherwise, in one run.
//!
//! The read benchmark's 1 GiB stack (three lz4 layers, about 700 MB of
//! blobs; benches/common/stack.rs) is pushed to Debian's docker-registry on
//! 127.0.0.1 and read through the test harness's proxy (tests/httpkit.rs),
//! which models a long network path: every request waits one round trip
//! before its answer starts, then each connection carries at most 1 MiB per
//! round trip (a TCP stream limited by its window). RTT 0 is the registry
//! itself, no proxy. Figures:
//!
//! - cold sequential: `obd flatten -o - docker://…` (empty cache) against
//!   `curl` downloading the same blobs one after another through the same
//!   path (to files, each fsynced: durable, as a pull is);
//! - `obd pull` against the same curl figure;
//! - cold random 4 KiB reads of the stack (in this process, through the
//!   library): median latency in round trips;
//! - warm (fully cached) random and sequential reads against the same stack
//!   from local files;
//! - time from resolving the reference to the first byte of data, in round
//!   trips.
//!
//! At RTT 0 and 10 ms the copy figures are medians of three interleaved
//! rounds (curl, flatten, pull); before each, `sync` (no writeback of the
//! push or of earlier steps pending) and the registry's files read into
//! the page cache. The run ends with `target <name> <value> goal <value>` lines (for the
//! latency figures the goal is a maximum). Needs docker-registry and curl.

#[path = "common/stack.rs"]
mod bench_stack;
#[path = "../tests/httpkit.rs"]
mod httpkit;
#[path = "../tests/regkit.rs"]
mod regkit;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench_stack::{fixture_stack, warm, Files, GIB, MIB};
use obd::sample::Rng;
use obd::source::cache::CacheDir;
use obd::source::reference::ImageRef;
use obd::source::registry::RemoteOptions;
use obd::source::remote::RemoteContext;
use obd::stack::{ReadOptions, Source, Stack};
use obd::ReadAt;

fn main() {
    if let Err(e) = run() {
        eprintln!("registry bench: {e}");
        std::process::exit(1);
    }
}

struct Targets(Vec<(String, f64, f64)>);

impl Targets {
    fn add(&mut self, name: &str, value: f64, goal: f64) {
        self.0.push((name.to_string(), value, goal));
    }
}

fn obd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_obd"))
}

fn run() -> Result<(), String> {
    regkit::binary()?;
    if Command::new("curl").arg("--version").output().is_err() {
        return Err("curl not found (apt install curl)".into());
    }
    let files = fixture_stack(&bench_stack::bench_dir());
    let reg = regkit::Registry::start(regkit::Options::default());
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let image = format!("{}:v1", reg.image("bench/stack"));
    let cache0 = work.path().join("push-cache");
    let mut push = obd();
    push.args(["push", "-q", "--json"])
        .args(&files.layers)
        .arg(&image)
        .env("OBD_CACHE_DIR", &cache0);
    let out = push.output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("push: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let pushed: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let digests: Vec<String> = pushed["layers"]
        .as_array()
        .ok_or("push report")?
        .iter()
        .map(|l| l["digest"].as_str().unwrap_or_default().to_string())
        .collect();
    let blob_bytes: u64 = files
        .layers
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    println!(
        "stack: 1 GiB virtual, {} layers, {:.0} MB of blobs, pushed to {}",
        files.layers.len(),
        blob_bytes as f64 / 1e6,
        reg.host()
    );
    // The registry's own copies of the blobs (its storage layout).
    let stored: Vec<std::path::PathBuf> = digests
        .iter()
        .map(|d| {
            let hex = d.trim_start_matches("sha256:");
            reg.dir
                .path()
                .join("storage/docker/registry/v2/blobs/sha256")
                .join(&hex[..2])
                .join(hex)
                .join("data")
        })
        .collect();
    let mut t = Targets(Vec::new());
    // OBD_BENCH_RTTS="0 10" limits the run while iterating.
    let rtts: Vec<u64> = std::env::var("OBD_BENCH_RTTS")
        .ok()
        .map(|v| {
            v.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_else(|| vec![0, 10, 50]);
    for rtt_ms in rtts {
        let proxy = (rtt_ms > 0).then(|| {
            let p = httpkit::Proxy::start(reg.port);
            p.set(|f| f.wan = Some((Duration::from_millis(rtt_ms), 1 << 20)));
            p
        });
        let host = proxy.as_ref().map_or(reg.host(), |p| p.url());
        let img = format!("docker://{host}/bench/stack:v1");
        println!(
            "\nRTT {rtt_ms} ms ({})",
            if rtt_ms == 0 {
                "the registry itself"
            } else {
                "through the path model"
            }
        );
        // Interleaved rounds (curl, flatten, pull), the registry's files
        // warmed before each; the median of each.
        let rounds = if rtt_ms >= 50 { 1 } else { 3 };
        let (mut curls, mut flats, mut pulls) = (Vec::new(), Vec::new(), Vec::new());
        // Before each: the registry's files in the page cache, and no
        // writeback of earlier steps (the push, removed outputs) pending.
        let quiet = || {
            let _ = Command::new("sync").status();
            warm(&stored.iter().map(|p| p.as_path()).collect::<Vec<_>>());
        };
        for _ in 0..rounds {
            quiet();
            curls.push(curl_secs(&host, &digests, work.path())?);
            quiet();
            flats.push(flatten_secs(
                &img,
                &work.path().join(format!("c-flat-{rtt_ms}")),
            )?);
            quiet();
            pulls.push(pull_secs(
                &img,
                &work.path().join(format!("pull-{rtt_ms}")),
                &work.path().join(format!("c-pull-{rtt_ms}")),
            )?);
        }
        if rounds > 1 {
            let show = |v: &[f64]| {
                v.iter()
                    .map(|x| format!("{x:.2}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            println!(
                "  rounds (s): curl {}; flatten {}; pull {}",
                show(&curls),
                show(&flats),
                show(&pulls)
            );
        }
        let (curl, flat, pull) = (median(curls), median(flats), median(pulls));
        println!(
            "  curl + fsync, blob by blob:    {:.2} s ({:.0} MB/s), median of {rounds}",
            curl,
            blob_bytes as f64 / 1e6 / curl
        );
        println!(
            "  obd flatten (cold):            {:.2} s ({:.0} MB/s of blobs)",
            flat,
            blob_bytes as f64 / 1e6 / flat
        );
        println!(
            "  obd pull:                      {:.2} s ({:.0} MB/s)",
            pull,
            blob_bytes as f64 / 1e6 / pull
        );
        let rtt = Duration::from_millis(rtt_ms.max(1));
        let cache = work.path().join(format!("c-rand-{rtt_ms}"));
        let (first_byte, median, p90) = cold_reads(&img, &cache)?;
        println!(
            "  first byte after resolving:    {:.1} ms; cold random 4 KiB: median {:.1} ms, p90 {:.1} ms",
            first_byte.as_secs_f64() * 1e3,
            median.as_secs_f64() * 1e3,
            p90.as_secs_f64() * 1e3
        );
        let per_rtt = |d: Duration| d.as_secs_f64() / rtt.as_secs_f64();
        match rtt_ms {
            0 => {
                t.add("registry_seq_direct", curl / flat, 0.5);
                t.add("registry_pull_direct", curl / pull, 1.0);
                // Warm: everything cached, against the same stack from files.
                let (rand, seq) = warm_ratios(&img, &cache, &files)?;
                t.add("registry_warm_rand4k", rand, 0.9);
                t.add("registry_warm_seq", seq, 0.9);
            }
            50 => {
                t.add("registry_seq_50ms", curl / flat, 4.0);
                t.add("registry_pull_50ms", curl / pull, 4.0);
                t.add("registry_rand4k_median_rtts_50ms", per_rtt(median), 1.5);
                t.add("registry_first_byte_rtts_50ms", per_rtt(first_byte), 10.0);
            }
            _ => {
                println!(
                    "  ratios: flatten {:.2}x, pull {:.2}x curl; random median {:.2} RTT, first byte {:.1} RTT",
                    curl / flat,
                    curl / pull,
                    per_rtt(median),
                    per_rtt(first_byte)
                );
            }
        }
    }
    println!("\n(for the *_rtts_* figures the goal is a maximum)");
    for (name, v, goal) in &t.0 {
        println!("target {name} {v:.2} goal {goal:.2}");
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// curl fetching every blob in turn, to files, each synced to disk;
/// seconds.
fn curl_secs(host: &str, digests: &[String], dir: &Path) -> Result<f64, String> {
    let t = Instant::now();
    for (i, d) in digests.iter().enumerate() {
        let out = dir.join(format!("curl-{i}"));
        let st = Command::new("curl")
            .args(["-sf", "-o"])
            .arg(&out)
            .arg(format!("http://{host}/v2/bench/stack/blobs/{d}"))
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err(format!("curl of {d} failed"));
        }
        // Durable, as obd's pull and cache are.
        std::fs::File::open(&out)
            .and_then(|f| f.sync_all())
            .map_err(|e| e.to_string())?;
    }
    let s = t.elapsed().as_secs_f64();
    for i in 0..digests.len() {
        let _ = std::fs::remove_file(dir.join(format!("curl-{i}")));
    }
    Ok(s)
}

fn flatten_secs(img: &str, cache: &Path) -> Result<f64, String> {
    let t = Instant::now();
    let out = obd()
        .args(["flatten", "-q", "-o", "-", img])
        .env("OBD_CACHE_DIR", cache)
        .stdout(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("flatten: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let s = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(cache);
    Ok(s)
}

fn pull_secs(img: &str, dir: &Path, cache: &Path) -> Result<f64, String> {
    let t = Instant::now();
    let out = obd()
        .args(["pull", "-q", img])
        .arg(dir)
        .env("OBD_CACHE_DIR", cache)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("pull: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let s = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(cache);
    Ok(s)
}

fn context(cache: &Path) -> Result<Arc<RemoteContext>, String> {
    let c = CacheDir::open(cache, None).map_err(|e| e.to_string())?;
    Ok(RemoteContext::new(RemoteOptions::default(), c))
}

fn open_remote(img: &str, cache: &Path) -> Result<Stack, String> {
    let r = ImageRef::parse(img).map_err(|e| e.to_string())?;
    let ctx = context(cache)?;
    let resolved = obd::source::resolve(&r, Some(&ctx)).map_err(|e| e.to_string())?;
    Stack::open_sources(&resolved.layers, None, ReadOptions::default()).map_err(|e| e.to_string())
}

/// Data offsets far apart (each in another cache chunk of its layer).
fn data_offsets(stack: &Stack, n: usize) -> Vec<u64> {
    let mut r = Rng::new(7);
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while out.len() < n {
        let at = r.below(GIB / 4096) * 4096;
        let e = stack.extents(at, 4096);
        if let [one] = e.as_slice() {
            if let Source::Data { layer, offset } = one.source {
                if seen.insert((layer, offset / (256 << 10))) {
                    out.push(at);
                }
            }
        }
    }
    out
}

/// Time to the first byte of data after resolving (manifest, layer
/// headers and indexes, one read), then cold random 4 KiB reads one at a
/// time: (first byte, median, p90).
fn cold_reads(img: &str, cache: &Path) -> Result<(Duration, Duration, Duration), String> {
    let _ = std::fs::remove_dir_all(cache);
    let t = Instant::now();
    let stack = open_remote(img, cache)?;
    let first = data_offsets(&stack, 1)[0];
    let mut buf = vec![0u8; 4096];
    stack
        .read_exact_at(&mut buf, first)
        .map_err(|e| e.to_string())?;
    let first_byte = t.elapsed();
    let offsets = data_offsets(&stack, 41);
    let mut lat: Vec<Duration> = Vec::new();
    for &at in &offsets[1..] {
        let t = Instant::now();
        stack
            .read_exact_at(&mut buf, at)
            .map_err(|e| e.to_string())?;
        lat.push(t.elapsed());
    }
    lat.sort();
    Ok((first_byte, lat[lat.len() / 2], lat[lat.len() * 9 / 10]))
}

/// Warm ratios (remote stack with every blob cached / local files): random
/// 4 KiB reads and sequential 1 MiB reads, single thread, best of 3.
fn warm_ratios(img: &str, cache: &Path, files: &Files) -> Result<(f64, f64), String> {
    let r = ImageRef::parse(img).map_err(|e| e.to_string())?;
    let ctx = context(cache)?;
    let resolved = obd::source::resolve(&r, Some(&ctx)).map_err(|e| e.to_string())?;
    for l in &resolved.layers {
        if let obd::source::LayerSource::Remote(rl) = l {
            rl.fetch_all(&|_| {}).map_err(|e| e.to_string())?;
        }
    }
    let remote = Stack::open_sources(&resolved.layers, None, ReadOptions::default())
        .map_err(|e| e.to_string())?;
    let local =
        Stack::open_with(&files.layers, None, ReadOptions::default()).map_err(|e| e.to_string())?;
    let mut rng = Rng::new(3);
    let offsets: Vec<u64> = (0..100_000).map(|_| rng.below(GIB / 4096) * 4096).collect();
    let cached: Vec<std::path::PathBuf> = resolved
        .layers
        .iter()
        .filter_map(|l| match l {
            obd::source::LayerSource::Remote(rl) => rl
                .ctx
                .cached(&rl.blob)
                .ok()
                .map(|c| c.data_path().to_path_buf()),
            _ => None,
        })
        .collect();
    let random = |s: &Stack| {
        let mut buf = vec![0u8; 4096];
        let t = Instant::now();
        for &at in &offsets {
            let _ = s.read_exact_at(&mut buf, at);
        }
        offsets.len() as f64 / t.elapsed().as_secs_f64()
    };
    let seq = |s: &Stack| {
        let mut buf = vec![0u8; MIB];
        let t = Instant::now();
        let mut at = 0;
        while at < GIB {
            let _ = s.read_exact_at(&mut buf, at);
            at += MIB as u64;
        }
        GIB as f64 / t.elapsed().as_secs_f64()
    };
    let warm_all = || {
        let mut p: Vec<&Path> = files.layers.iter().map(|p| p.as_path()).collect();
        p.extend(cached.iter().map(|p| p.as_path()));
        warm(&p);
    };
    let (mut rr, mut rl, mut sr, mut sl) = (0f64, 0f64, 0f64, 0f64);
    for _ in 0..3 {
        warm_all();
        rl = rl.max(random(&local));
        rr = rr.max(random(&remote));
        warm_all();
        sl = sl.max(seq(&local));
        sr = sr.max(seq(&remote));
    }
    println!(
        "  warm: random 4 KiB {:.0} vs {:.0} reads/s from files; sequential {:.0} vs {:.0} MB/s",
        rr,
        rl,
        sr / 1e6,
        sl / 1e6
    );
    Ok((rr / rl, sr / sl))
}
