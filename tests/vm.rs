//! `obd attach` end to end, in a QEMU (TCG) VM with Debian's 6.12 kernel
//! (this host's kernel has no ublk driver). One VM boot runs every check of
//! `tests/vm/guest.sh`; each test below reports one of them.
//!
//! Inputs made here: the fixture stacks with their manifest hashes, an ext4
//! image turned into a two-layer compressed stack by `obd commit --raw`, and
//! a ZFile with one corrupted block. `OBD_VM_CHECKS` (space separated: stacks ext4 corrupt
//! rw sigterm kill9 upper-crash config list nbd registry doctor stats) limits the run while iterating;
//! `OBD_VM_CONSOLE=1` prints the guest's console even when all is well.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use obd::format::lsmt::raw::SECTOR_SIZE;
use obd::source::blob::{Blob, BlobOptions};
use obd::stack::Stack;
use obd::ReadAt;

use crate::util::*;
use crate::vmkit::{self, Console, Initramfs, Kernel, VmOptions};

const ALL_CHECKS: &str =
    "stacks ext4 rw corrupt sigterm kill9 upper-crash config list nbd registry doctor stats";

struct VmRun {
    console: Console,
    results: BTreeMap<String, Result<(), String>>,
    checks: Vec<String>,
}

static RUN: OnceLock<Result<VmRun, String>> = OnceLock::new();

fn vm() -> &'static VmRun {
    match RUN.get_or_init(boot) {
        Ok(r) => r,
        Err(e) => panic!("the VM test could not run: {e}"),
    }
}

/// Asserts that the guest reported `name` as passed.
#[track_caller]
fn expect(name: &str) {
    let r = vm();
    let group = name.split(':').next().unwrap_or(name);
    let group = match group {
        "stack" => "stacks",
        "ext4-ro" => "ext4",
        other => other,
    };
    if group != "preflight" && !r.checks.iter().any(|c| c == group) {
        eprintln!("{name}: not run (OBD_VM_CHECKS)");
        return;
    }
    match r.results.get(name) {
        Some(Ok(())) => {}
        Some(Err(why)) => panic!(
            "FAIL: {name}: {why}\n--- console (last 60 lines) ---\n{}",
            r.console.tail(60)
        ),
        None => panic!(
            "check {name} did not report (timed out: {}, finished: {})\n--- console (last 60 lines) ---\n{}",
            r.console.timed_out,
            r.console.finished(),
            r.console.tail(60)
        ),
    }
}

macro_rules! vm_checks {
    ($($test:ident => $check:expr),* $(,)?) => {
        $( #[test] fn $test() { expect($check) } )*
    };
}

vm_checks! {
    vm_preflight_without_ublk_driver => "preflight",
    vm_stack_s_l0 => "stack:s_L0",
    vm_stack_s_l0l1 => "stack:s_L0L1",
    vm_stack_s_plain => "stack:s_plain",
    vm_stack_s_zfile => "stack:s_zfile",
    vm_stack_s_zfile_bs64 => "stack:s_zfile_bs64",
    vm_stack_s_tar => "stack:s_tar",
    vm_stack_s_mixed => "stack:s_mixed",
    vm_stack_s_rwtop => "stack:s_rwtop",
    vm_stack_s_rwtop_l1 => "stack:s_rwtop_L1",
    vm_stack_merged => "stack:merged.lz4.zfile",
    vm_ext4_stack_mounts_read_only => "ext4-ro",
    vm_upper_written_committed_and_reattached => "rw",
    vm_corrupt_zfile_block_reads_as_eio => "corrupt",
    vm_sigterm_tears_down => "sigterm",
    vm_kill9_then_detach_force => "kill9",
    vm_upper_survives_a_killed_server => "upper-crash",
    vm_image_config => "config",
    vm_list_and_queues => "list",
    vm_kernel_nbd_client_on_a_served_stack => "nbd",
    vm_registry_image_attached_lazily_then_prefetched => "registry",
    vm_doctor_before_and_after_the_driver => "doctor",
    vm_stats_count_reads_of_a_ublk_device => "stats",
}

/// Every stack of the manifest was checked, and the guest ran to its end
/// with no failure (this one prints the whole console otherwise).
#[test]
fn vm_ran_every_check() {
    let r = vm();
    let mut problems = Vec::new();
    if r.console.timed_out {
        problems.push(format!("the VM timed out after {:?}", r.console.elapsed));
    } else if !r.console.finished() {
        problems.push("the guest did not finish its checks".to_string());
    }
    if r.checks.iter().any(|c| c == "stacks") {
        for s in manifest()["stacks"].as_array().unwrap() {
            let name = format!("stack:{}", s["name"].as_str().unwrap());
            if !r.results.contains_key(&name) {
                problems.push(format!("{name} did not report"));
            }
        }
    }
    for (name, res) in &r.results {
        if let Err(why) = res {
            problems.push(format!("FAIL: {name}: {why}"));
        }
    }
    for l in r.console.log.lines().filter(|l| l.starts_with("WARN:")) {
        problems.push(l.to_string());
    }
    assert!(
        problems.is_empty(),
        "{}\n--- console ---\n{}",
        problems.join("\n"),
        r.console.log
    );
    if std::env::var_os("OBD_VM_CONSOLE").is_some() {
        eprintln!("--- console ---\n{}", r.console.log);
    }
    eprintln!(
        "vm: {} checks passed in {:?}",
        r.results.len(),
        r.console.elapsed
    );
}

fn boot() -> Result<VmRun, String> {
    let checks: Vec<String> = std::env::var("OBD_VM_CHECKS")
        .unwrap_or_else(|_| ALL_CHECKS.to_string())
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let kernel = Kernel::get()?;
    let work = tmpdir();
    let mut fs = Initramfs::new()?;
    fs.modules(&kernel)?;
    fs.binary(Path::new(env!("CARGO_BIN_EXE_obd")), "bin/obd")?;
    if Path::new("/usr/bin/sha256sum").exists() {
        fs.binary(Path::new("/usr/bin/sha256sum"), "usr/bin/sha256sum")?;
    }
    // The kernel's NBD client (Debian's nbd-client package), for the nbd check.
    if let Some(p) = ["/usr/sbin/nbd-client", "/sbin/nbd-client"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
    {
        fs.binary(p, "bin/nbd-client")?;
    }
    fs.bytes("init", vmkit::INIT.as_bytes(), true)?;
    fs.bytes("vm/run.sh", include_bytes!("vm/guest.sh"), true)?;
    fs.bytes("vm/checks", checks.join(" ").as_bytes(), false)?;
    for e in std::fs::read_dir(fixtures()).map_err(|e| e.to_string())? {
        let e = e.map_err(|e| e.to_string())?;
        fs.file(
            &e.path(),
            &format!("fx/{}", e.file_name().to_string_lossy()),
        )?;
    }
    fs.bytes("vm/stacks", stacks_file().as_bytes(), false)?;
    ext4_inputs(&mut fs, work.path())?;
    corrupt_input(&mut fs)?;
    if checks.iter().any(|c| c == "registry") {
        registry_input(&mut fs, work.path())?;
    }
    let initrd = work.path().join("initrd.gz");
    fs.pack(&initrd)?;
    let opts = VmOptions {
        timeout: Duration::from_secs(1200),
        ..VmOptions::default()
    };
    let mut console = vmkit::boot(&kernel, &initrd, &opts)?;
    // A guest that died before its checks started (the emulator or the
    // kernel's boot, not obd) gets one more boot; its console is shown.
    if !console.log.contains("OBD-VM-START") && !console.timed_out {
        eprintln!(
            "vm: the guest stopped before its checks began; booting again\n--- console ---\n{}",
            console.log
        );
        console = vmkit::boot(&kernel, &initrd, &opts)?;
    }
    eprintln!(
        "vm: {} booted and ran in {:?}",
        kernel.package, console.elapsed
    );
    let results = console.results();
    Ok(VmRun {
        console,
        results,
        checks,
    })
}

/// `name sha256 mode upper_data upper_index layer...` per manifest stack.
/// Mode `ro` for read-only stacks; of the stacks with a writable top layer,
/// the first is attached writable (`rw`) and the others with `--read-only`
/// (`upper-ro`), so that both ways are checked.
fn stacks_file() -> String {
    let m = manifest();
    let stacks = m["stacks"].as_array().unwrap();
    let hash_of = |name: &str| {
        stacks
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s["flattened_sha256"].as_str())
            .unwrap()
            .to_string()
    };
    let mut out = String::new();
    for s in stacks {
        let name = s["name"].as_str().unwrap();
        // The reference cannot read s_zfile_bs64 (a 64 KiB block compresses
        // past its buffer); obd can, and its content is s_plain's.
        let hash = match s["flattened_sha256"].as_str() {
            Some(h) => h.to_string(),
            None => hash_of("s_plain"),
        };
        let (mode, ud, ui) = match s.get("writable_top") {
            Some(w) => {
                let mode = if out.contains(" rw ") {
                    "upper-ro"
                } else {
                    "rw"
                };
                (
                    mode,
                    w["data"].as_str().unwrap().to_string(),
                    w["index"].as_str().unwrap().to_string(),
                )
            }
            None => ("ro", "-".into(), "-".into()),
        };
        let layers: Vec<&str> = s["layers_bottom_to_top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        out.push_str(&format!(
            "{name} {hash} {mode} {ud} {ui} {}\n",
            layers.join(" ")
        ));
    }
    out
}

// ---- ext4 ------------------------------------------------------------------

/// Deterministic bytes: a xorshift stream.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn text(seed: u64, lines: usize) -> Vec<u8> {
    let words = [
        "layer", "block", "sector", "zfile", "lsmt", "stack", "ublk", "obd",
    ];
    let mut out = String::new();
    let n = noise(seed, lines * 8);
    for l in 0..lines {
        for w in 0..8 {
            out.push_str(words[n[l * 8 + w] as usize % words.len()]);
            out.push(if w == 7 { '\n' } else { ' ' });
        }
    }
    out.into_bytes()
}

/// The two versions of the tree: `(path, content)`; version 2 changes,
/// adds and deletes files.
fn tree(version: u32) -> Vec<(&'static str, Vec<u8>)> {
    let mut t = vec![
        ("hello.txt", b"hello from obd\n".to_vec()),
        ("data/random.bin", noise(1, 300 << 10)),
        ("data/zeros.bin", vec![0u8; 128 << 10]),
        ("docs/a.txt", text(2, 400)),
        ("docs/b.txt", text(3, 50)),
        ("docs/deep/c.txt", text(4, 1000)),
        ("keep/big.bin", noise(5, 1 << 20)),
        ("gone.txt", text(6, 10)),
    ];
    if version == 2 {
        t[0].1 = b"hello again, from the second layer\n".to_vec();
        let r = &mut t[1].1;
        r[100_000..140_000].copy_from_slice(&noise(7, 40_000));
        t.retain(|(p, _)| *p != "gone.txt");
        t.push(("new/added.bin", noise(8, 200 << 10)));
    }
    t
}

const EXT4_SIZE: u64 = 24 << 20;

fn mkfs(dir: &Path, version: u32) -> Result<Vec<u8>, String> {
    let src = dir.join(format!("tree{version}"));
    for (p, data) in tree(version) {
        let f = src.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::write(&f, data).map_err(|e| e.to_string())?;
    }
    let img = dir.join(format!("ext4.v{version}.img"));
    vmkit::need_tool("mkfs.ext4", "e2fsprogs").or_else(|_| {
        if Path::new("/sbin/mkfs.ext4").exists() {
            Ok(())
        } else {
            Err("mkfs.ext4 is not installed (e2fsprogs; .ci/run installs it)".to_string())
        }
    })?;
    let mkfs = ["/sbin/mkfs.ext4", "/usr/sbin/mkfs.ext4"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("mkfs.ext4");
    let out = std::process::Command::new(mkfs)
        .args(["-q", "-F", "-b", "4096", "-L", "obdtest"])
        .args(["-U", "6f626474-6573-4074-8578-743400000001"])
        .args(["-E", "root_owner=0:0,nodiscard"])
        .arg("-d")
        .arg(&src)
        .arg(&img)
        .arg(format!("{}k", EXT4_SIZE >> 10))
        .env("E2FSPROGS_FAKE_TIME", "1700000000")
        .output()
        .map_err(|e| format!("mkfs.ext4: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mkfs.ext4 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::read(&img).map_err(|e| e.to_string())
}

/// An ext4 image in two compressed layers, made by `obd commit --raw` (the
/// base from version 1 of the tree, the difference to version 2 over it),
/// the expected file checksums and the deleted files.
fn ext4_inputs(fs: &mut Initramfs, dir: &Path) -> Result<(), String> {
    mkfs(dir, 1)?;
    let v2 = mkfs(dir, 2)?;
    obd_in(
        dir,
        [
            "commit",
            "-q",
            "--raw",
            "ext4.v1.img",
            "-z",
            "--block-size",
            "16K",
            "ext4.L0.zfile",
        ],
    )
    .ok();
    obd_in(
        dir,
        [
            "commit",
            "-q",
            "--raw",
            "ext4.v2.img",
            "--base",
            "ext4.L0.zfile",
            "-z",
            "--algorithm",
            "zstd",
            "ext4.L1.zfile",
        ],
    )
    .ok();
    let p0 = dir.join("ext4.L0.zfile");
    let p1 = dir.join("ext4.L1.zfile");
    // The stack must be version 2, byte for byte, before the VM sees it.
    let stack = Stack::open(&[p0.clone(), p1.clone()], None, BlobOptions::default())
        .map_err(|e| e.to_string())?;
    let mut got = vec![0u8; v2.len()];
    stack
        .read_exact_at(&mut got, 0)
        .map_err(|e| e.to_string())?;
    assert!(
        got == v2,
        "the ext4 layer stack does not reproduce the image"
    );
    fs.file(&p0, "fx/ext4.L0.zfile")?;
    fs.file(&p1, "fx/ext4.L1.zfile")?;
    let sums: String = tree(2)
        .iter()
        .map(|(p, data)| format!("{}  ./{p}\n", sha256(data)))
        .collect();
    fs.bytes("vm/ext4.sums", sums.as_bytes(), false)?;
    fs.bytes("vm/ext4.gone", b"gone.txt\n", false)
}

// ---- a registry in the guest ---------------------------------------------

/// Debian's `docker-registry` and its storage holding the ext4 stack as the
/// image `vm/ext4:v1`, pushed by `obd push` to a registry on this host's
/// loopback; the guest serves that storage on its own loopback.
fn registry_input(fs: &mut Initramfs, dir: &Path) -> Result<(), String> {
    let bin = crate::regkit::binary()?;
    let reg = crate::regkit::Registry::start(crate::regkit::Options::default());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_obd"))
        .current_dir(dir)
        .env("OBD_CACHE_DIR", dir.join("push-cache"))
        .args(["push", "-q", "ext4.L0.zfile", "ext4.L1.zfile"])
        .arg(format!("{}:v1", reg.image("vm/ext4")))
        .output()
        .map_err(|e| format!("obd push: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "obd push to the host registry: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let storage = reg.dir.path().join("storage");
    for e in walkdir::WalkDir::new(&storage) {
        let e = e.map_err(|e| e.to_string())?;
        if e.file_type().is_file() {
            let rel = e.path().strip_prefix(&storage).map_err(|e| e.to_string())?;
            fs.file(e.path(), &format!("vm/registry/{}", rel.display()))?;
        }
    }
    fs.binary(&bin, "bin/docker-registry")?;
    fs.bytes(
        "vm/registry.yml",
        b"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
          storage:\n  filesystem:\n    rootdirectory: /vm/registry\n\
          http:\n  addr: 127.0.0.1:5000\n  secret: obd-vm\n",
        false,
    )
}

// ---- corrupted ZFile -------------------------------------------------------

/// `L1.lz4-bs16.zfile` with one block's compressed bytes damaged, and two
/// sectors of its virtual disk: one inside that block, one elsewhere.
fn corrupt_input(fs: &mut Initramfs) -> Result<(), String> {
    let name = "L1.lz4-bs16.zfile";
    let blob = Blob::open(&fx(name), BlobOptions::default()).map_err(|e| e.to_string())?;
    let z = blob.zfile().cloned().ok_or("not a zfile")?;
    let layer = blob.layer().map_err(|e| e.to_string())?;
    let bs = z.block_size();
    // The first data mapping that holds the start of a whole block.
    let (block, bad) = layer
        .segments()
        .iter()
        .filter(|s| !s.zeroed)
        .find_map(|s| {
            let m0 = s.moffset * SECTOR_SIZE;
            let m1 = (s.moffset + s.length as u64) * SECTOR_SIZE;
            let k = m0.div_ceil(bs);
            (k * bs < m1).then(|| (k, (s.offset * SECTOR_SIZE + (k * bs - m0)) / SECTOR_SIZE))
        })
        .ok_or("no data block to corrupt")?;
    let good = layer
        .segments()
        .iter()
        .filter(|s| !s.zeroed)
        .find_map(|s| {
            let m = s.moffset * SECTOR_SIZE;
            (m / bs + 1 < block || m / bs > block + 1).then_some(s.offset)
        })
        .ok_or("no intact data sector")?;
    let mut bytes = std::fs::read(fx(name)).map_err(|e| e.to_string())?;
    let r = z.block_range(block);
    let mid = ((r.start + r.end) / 2) as usize;
    for b in &mut bytes[mid..mid + 4] {
        *b ^= 0x5a;
    }
    fs.bytes("fx/corrupt.zfile", &bytes, false)?;
    fs.bytes(
        "vm/corrupt",
        format!("corrupt.zfile {bad} {good}\n").as_bytes(),
        false,
    )?;
    Ok(())
}
