//! `cargo bench --bench attach`: a ublk device served by obd against a loop
//! device over the flattened raw image of the same stack, in one QEMU (TCG)
//! VM with Debian's 6.12 kernel (see tests/vmkit.rs). fio runs inside the
//! guest: sequential 1 MiB reads and random 4 KiB reads at queue depth 32,
//! O_DIRECT, io_uring. TCG distorts absolute speed; the ratios
//! (ublk / loop, measured back to back in the same VM) are what count.
//! Each figure is the best of four 5-second rounds, ublk and loop taking
//! turns (the host is shared, and a round that another process slowed down
//! says nothing about obd).
//!
//! Stacks:
//! - `fixture-lz4`: the three LZ4 fixture layers (`L0.lz4.tar`,
//!   `L1.lz4-bs16.zfile`, `L2.lz4-bs64.tar`), 1 GiB virtual, ~2 MiB of data;
//! - `fixture-lz4-data`: the same stack, random reads confined to its data
//!   (the first 2 MiB), where every read decompresses;
//! - `sample-lz4`: 256 MiB of sample data (obd::sample) in three LZ4 layers
//!   (4 KiB blocks), 25% and 10% of the chunks rewritten by the upper ones;
//! - `sample-plain`: the same three layers uncompressed, which leaves the
//!   server's own cost: under TCG, decompression is emulated instruction by
//!   instruction while the kernel's copies run as QEMU helpers at native
//!   speed, so `sample-lz4` against a loop device mostly measures that
//!   distortion.

#[path = "../tests/vmkit.rs"]
mod vmkit;

use std::path::{Path, PathBuf};
use std::time::Duration;

use obd::format::lsmt::writer::{LayerMeta, Writer as LsmtWriter};
use obd::format::uuid::Uuid;
use obd::format::zfile::writer::{Writer as ZWriter, WriterOptions};
use obd::format::zfile::Algorithm;
use obd::sample::{self, Rng, CHUNK};
use vmkit::{Initramfs, Kernel, VmOptions};

const SAMPLE_SIZE: u64 = 256 << 20;

fn main() {
    if let Err(e) = run() {
        eprintln!("attach bench: {e}");
        std::process::exit(1);
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/overlaybd")
}

fn run() -> Result<(), String> {
    let kernel = Kernel::get()?;
    vmkit::need_tool("fio", "fio")?;
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut fs = Initramfs::new()?;
    fs.modules(&kernel)?;
    fs.binary(Path::new(env!("CARGO_BIN_EXE_obd")), "bin/obd")?;
    let fio = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("fio"))
        .find(|p| p.is_file())
        .ok_or("fio not found")?;
    fs.binary(&fio, "bin/fio")?;
    fs.bytes("init", vmkit::INIT.as_bytes(), true)?;
    fs.bytes("vm/run.sh", include_bytes!("attach_guest.sh"), true)?;
    for f in ["L0.lz4.tar", "L1.lz4-bs16.zfile", "L2.lz4-bs64.tar"] {
        fs.file(&fixtures().join(f), &format!("fx/{f}"))?;
    }
    eprintln!("attach bench: building the 256 MiB sample stack");
    for (i, (plain, lz4)) in sample_layers().into_iter().enumerate() {
        fs.bytes(&format!("fx/sample.L{i}.commit"), &plain, false)?;
        fs.bytes(&format!("fx/sample.L{i}.zfile"), &lz4, false)?;
    }
    let initrd = work.path().join("initrd.gz");
    fs.pack(&initrd)?;
    eprintln!(
        "attach bench: booting {} (this takes a few minutes)",
        kernel.package
    );
    let console = vmkit::boot(
        &kernel,
        &initrd,
        &VmOptions {
            memory_mb: 2048,
            timeout: Duration::from_secs(3600),
            ..VmOptions::default()
        },
    )?;
    let results = parse(&console.log);
    if console.timed_out || !console.finished() || results.is_empty() {
        return Err(format!("the benchmark VM failed:\n{}", console.log));
    }
    report(&results);
    Ok(())
}

/// Three layers over 256 MiB of sample data: (plain, LZ4 ZFile) each.
fn sample_layers() -> Vec<(Vec<u8>, Vec<u8>)> {
    let chunks = SAMPLE_SIZE / CHUNK as u64;
    let mut out = Vec::new();
    // (seed, rewrite one chunk in `every`, zero one in `zero_every`)
    for (seed, every, zero_every) in [(11u64, 1u64, 0u64), (12, 4, 50), (13, 10, 0)] {
        let meta = LayerMeta {
            virtual_size: SAMPLE_SIZE,
            uuid: Uuid::null(),
            parent_uuid: Uuid::null(),
            user_tag: Vec::new(),
        };
        let mut w = LsmtWriter::new(Vec::new(), meta).unwrap();
        let mut pick = Rng::new(seed * 7919);
        let mut buf = vec![0u8; CHUNK];
        for i in 0..chunks {
            let lba = i * CHUNK as u64 / 512;
            if zero_every > 0 && pick.below(zero_every) == 0 {
                w.push_zeroed(lba, (CHUNK / 512) as u32, 0).unwrap();
                continue;
            }
            if pick.below(every) != 0 {
                continue;
            }
            sample::fill(seed, i * CHUNK as u64, &mut buf);
            if buf.iter().all(|&b| b == 0) {
                continue;
            }
            w.push_data(lba, &buf, 0).unwrap();
        }
        let lsmt = w.finish().unwrap().0;
        let mut z = ZWriter::new(
            Vec::new(),
            WriterOptions {
                algorithm: Algorithm::Lz4,
                ..WriterOptions::default()
            },
        )
        .unwrap();
        z.push(&lsmt).unwrap();
        let lz4 = z.finish().unwrap().inner;
        out.push((lsmt, lz4));
    }
    out
}

/// One fio result: `(stack, workload, device kind) -> (MiB/s, IOPS)`.
#[derive(Debug)]
struct Sample {
    stack: String,
    workload: String,
    device: String,
    mib_s: f64,
    iops: f64,
}

/// Lines `BENCH <stack> <workload> <ublk|loop> <run>` followed by fio's
/// JSON, up to `BENCH-END`.
fn parse(log: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut lines = log.lines();
    while let Some(l) = lines.next() {
        let Some(head) = l.strip_prefix("BENCH ") else {
            continue;
        };
        let f: Vec<&str> = head.split_whitespace().collect();
        let mut json = String::new();
        for l in lines.by_ref() {
            if l.trim() == "BENCH-END" {
                break;
            }
            json.push_str(l);
            json.push('\n');
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&json) else {
            eprintln!("attach bench: unparsable fio output for {head}");
            continue;
        };
        let read = &v["jobs"][0]["read"];
        if f.len() >= 3 {
            out.push(Sample {
                stack: f[0].to_string(),
                workload: f[1].to_string(),
                device: f[2].to_string(),
                mib_s: read["bw_bytes"].as_f64().unwrap_or(0.0) / (1 << 20) as f64,
                iops: read["iops"].as_f64().unwrap_or(0.0),
            });
        }
    }
    out
}

fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn report(samples: &[Sample]) {
    let mut keys: Vec<(String, String)> = Vec::new();
    for s in samples {
        let k = (s.stack.clone(), s.workload.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    println!(
        "\n{:<18} {:<16} {:>12} {:>12} {:>12} {:>12} {:>8}",
        "stack", "workload", "ublk MiB/s", "loop MiB/s", "ublk IOPS", "loop IOPS", "ratio"
    );
    for (stack, workload) in keys {
        let pick = |dev: &str, f: fn(&Sample) -> f64| {
            let v: Vec<f64> = samples
                .iter()
                .filter(|s| s.stack == stack && s.workload == workload && s.device == dev)
                .map(f)
                .collect();
            best(&v)
        };
        let (um, lm) = (pick("ublk", |s| s.mib_s), pick("loop", |s| s.mib_s));
        let (ui, li) = (pick("ublk", |s| s.iops), pick("loop", |s| s.iops));
        let ratio = if li > 0.0 { ui / li } else { 0.0 };
        println!(
            "{stack:<18} {workload:<16} {um:>12.1} {lm:>12.1} {ui:>12.0} {li:>12.0} {ratio:>7.2}x"
        );
    }
    println!("\n(ratio = ublk / loop IOPS; each figure is the best of its rounds in this VM)");
}
