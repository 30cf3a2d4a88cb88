//! A throw-away QEMU (TCG) virtual machine running Debian's 6.12 kernel,
//! whose `ublk_drv` module the host kernel lacks: the kernel package comes
//! from `apt-get download` (cached under the cargo target directory), the
//! root filesystem is a busybox initramfs holding obd and the test inputs,
//! and the guest reports on its serial console. Shared by the VM tests
//! (`tests/vm.rs`) and the attach benchmark (`benches/attach.rs`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Anything that went wrong preparing or running the VM.
pub type Result<T> = std::result::Result<T, String>;

/// Kernel modules the guest needs (dependencies are added), in load order.
/// `crc32c_generic` is not among ext4's declared dependencies, but ext4
/// cannot mount without a crc32c driver.
pub const MODULES: &[&str] = &[
    "loop",
    "crc32c_generic",
    "ext4",
    "virtio_blk",
    "nbd",
    "ublk_drv",
];

/// Cache directory for kernels: `$OBD_VM_CACHE`, else `<target>/tmp/obd-vm`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("OBD_VM_CACHE") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_TARGET_TMPDIR")).join("obd-vm"),
    }
}

fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Fails with a hint when a host tool is missing.
pub fn need_tool(name: &str, package: &str) -> Result<()> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(format!(
            "{name} is not installed: the VM tests need the Debian package {package} \
             (.ci/run installs it)"
        ))
    }
}

/// A kernel image and the decompressed modules the guest loads, in order.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Package name, e.g. `linux-image-6.12.107+deb12-amd64-unsigned`.
    pub package: String,
    /// The kernel image.
    pub vmlinuz: PathBuf,
    /// `.ko` files, dependencies first.
    pub modules: Vec<PathBuf>,
}

/// Version numbers inside a package name, for ordering.
fn version_key(pkg: &str) -> Vec<u64> {
    pkg.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The newest Debian 6.12 amd64 kernel package apt knows about.
fn newest_package() -> Result<Option<String>> {
    let out = run(Command::new("apt-cache").args([
        "search",
        "--names-only",
        r"^linux-image-6\.12\.[0-9]+\+deb[0-9]+-amd64-unsigned$",
    ]))?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .max_by_key(|p| version_key(p)))
}

impl Kernel {
    /// The cached kernel, fetched and unpacked first if needed.
    /// `$OBD_VM_KERNEL_DEB` names a kernel .deb to use instead of apt.
    ///
    /// # Errors
    /// apt cannot find or download the package; tools are missing.
    pub fn get() -> Result<Kernel> {
        let cache = cache_dir();
        std::fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
        let deb = std::env::var_os("OBD_VM_KERNEL_DEB").map(PathBuf::from);
        let package = match &deb {
            Some(d) => d
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split('_').next())
                .map(str::to_string)
                .ok_or_else(|| format!("{}: not a .deb name", d.display()))?,
            None => {
                let found = if Path::new("/usr/bin/apt-cache").exists() {
                    newest_package()?
                } else {
                    None
                };
                match found.or_else(|| newest_cached(&cache)) {
                    Some(p) => p,
                    None => {
                        return Err("apt knows no linux-image-6.12.*-amd64-unsigned package: \
                             run `apt-get update` (.ci/run does) or set OBD_VM_KERNEL_DEB"
                            .into())
                    }
                }
            }
        };
        let dir = cache.join(&package);
        if std::fs::read_to_string(dir.join("ready")).ok() != Some(ready_stamp(&package)) {
            unpack(&cache, &package, deb.as_deref(), &dir)?;
        }
        let order = std::fs::read_to_string(dir.join("modules.order"))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Kernel {
            package,
            vmlinuz: dir.join("vmlinuz"),
            modules: order
                .lines()
                .map(|m| dir.join("modules").join(format!("{m}.ko")))
                .collect(),
        })
    }
}

/// What `ready` holds: the package and the modules unpacked from it, so that
/// a cache made for another module list is unpacked again.
fn ready_stamp(package: &str) -> String {
    format!("{package}\n{}\n", MODULES.join(" "))
}

fn newest_cached(cache: &Path) -> Option<String> {
    std::fs::read_dir(cache)
        .ok()?
        .flatten()
        .filter(|e| e.path().join("ready").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .max_by_key(|p| version_key(p))
}

/// Downloads (unless `deb` is given) and unpacks the kernel into `dir`:
/// `vmlinuz`, `modules/<name>.ko`, `modules.order`, then `ready`.
fn unpack(cache: &Path, package: &str, deb: Option<&Path>, dir: &Path) -> Result<()> {
    for (tool, pkg) in [("dpkg-deb", "dpkg"), ("xz", "xz-utils")] {
        need_tool(tool, pkg)?;
    }
    let work = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(cache)
        .map_err(|e| e.to_string())?;
    let deb = match deb {
        Some(d) => d.to_path_buf(),
        None => {
            eprintln!("vm: downloading {package}");
            run(Command::new("apt-get")
                .args(["download", "-q", package])
                .current_dir(work.path()))?;
            std::fs::read_dir(work.path())
                .map_err(|e| e.to_string())?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "deb"))
                .ok_or("apt-get download produced no .deb")?
        }
    };
    let x = work.path().join("x");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x))?;
    let out = work.path().join("out");
    std::fs::create_dir_all(out.join("modules")).map_err(|e| e.to_string())?;
    let vmlinuz = std::fs::read_dir(x.join("boot"))
        .map_err(|e| format!("{}: {e}", deb.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .ok_or("no /boot/vmlinuz-* in the kernel package")?;
    std::fs::copy(&vmlinuz, out.join("vmlinuz")).map_err(|e| e.to_string())?;

    // name -> .ko.xz, across the package's module tree.
    let mut index = BTreeMap::new();
    for e in walkdir::WalkDir::new(x.join("lib/modules"))
        .into_iter()
        .flatten()
    {
        if let Some(n) = e
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(".ko.xz"))
        {
            index.insert(n.replace('-', "_"), e.path().to_path_buf());
        }
    }
    let mut order = Vec::new();
    for m in MODULES {
        add_module(m, &index, &out.join("modules"), &mut order, 0)?;
    }
    std::fs::write(out.join("modules.order"), order.join("\n") + "\n")
        .map_err(|e| e.to_string())?;
    std::fs::write(out.join("ready"), ready_stamp(package)).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&out, dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(())
}

/// Decompresses module `name` after its dependencies (from its embedded
/// modinfo, as the package carries no modules.dep).
fn add_module(
    name: &str,
    index: &BTreeMap<String, PathBuf>,
    out: &Path,
    order: &mut Vec<String>,
    depth: usize,
) -> Result<()> {
    let name = name.replace('-', "_");
    if order.contains(&name) || depth > 16 {
        return Ok(());
    }
    let Some(xz) = index.get(&name) else {
        // Not a module in this build: built in.
        return Ok(());
    };
    let ko = run_bytes(Command::new("xz").arg("-dc").arg(xz))?;
    for dep in modinfo_depends(&ko) {
        add_module(&dep, index, out, order, depth + 1)?;
    }
    std::fs::write(out.join(format!("{name}.ko")), &ko).map_err(|e| e.to_string())?;
    order.push(name);
    Ok(())
}

fn run_bytes(cmd: &mut Command) -> Result<Vec<u8>> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| format!("{shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{shown} failed: {}", out.status));
    }
    Ok(out.stdout)
}

/// The `depends=` entry of a module's `.modinfo` strings.
fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    let key = b"\0depends=";
    ko.windows(key.len())
        .position(|w| w == key)
        .map(|at| {
            let rest = &ko[at + key.len()..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end])
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The guest's root filesystem, assembled in a temporary directory.
pub struct Initramfs {
    root: tempfile::TempDir,
}

impl Initramfs {
    /// An empty tree with busybox and the usual mount points.
    ///
    /// # Errors
    /// busybox or cpio missing.
    pub fn new() -> Result<Self> {
        need_tool("busybox", "busybox-static")?;
        need_tool("cpio", "cpio")?;
        let root = tempfile::tempdir().map_err(|e| e.to_string())?;
        for d in [
            "bin",
            "sbin",
            "dev",
            "proc",
            "sys",
            "tmp",
            "mnt",
            "run",
            "lib/modules",
            "vm",
        ] {
            std::fs::create_dir_all(root.path().join(d)).map_err(|e| e.to_string())?;
        }
        let mut me = Initramfs { root };
        let busybox = which("busybox")?;
        me.binary(&busybox, "bin/busybox")?;
        Ok(me)
    }

    /// The tree's root on the host.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    fn dest(&self, dest: &str) -> Result<PathBuf> {
        let p = self.root.path().join(dest.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        Ok(p)
    }

    /// Copies a host file.
    pub fn file(&mut self, src: &Path, dest: &str) -> Result<()> {
        std::fs::copy(src, self.dest(dest)?)
            .map(drop)
            .map_err(|e| format!("{}: {e}", src.display()))
    }

    /// Writes a file.
    pub fn bytes(&mut self, dest: &str, data: &[u8], executable: bool) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let p = self.dest(dest)?;
        std::fs::write(&p, data).map_err(|e| e.to_string())?;
        let mode = if executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| e.to_string())
    }

    /// Copies an executable and the shared libraries `ldd` lists for it.
    pub fn binary(&mut self, src: &Path, dest: &str) -> Result<()> {
        self.file(src, dest)?;
        let out = Command::new("ldd")
            .arg(src)
            .output()
            .map_err(|e| format!("ldd: {e}"))?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let lib = match line.split_once("=>") {
                Some((_, rhs)) => rhs.split_whitespace().next(),
                None => line
                    .split_whitespace()
                    .next()
                    .filter(|p| p.starts_with('/')),
            };
            if let Some(lib) = lib.filter(|l| l.starts_with('/')) {
                let d = self.dest(lib)?;
                if !d.exists() {
                    std::fs::copy(lib, &d).map_err(|e| format!("{lib}: {e}"))?;
                }
            }
        }
        Ok(())
    }

    /// Adds the kernel's modules and `/lib/modules/order`.
    pub fn modules(&mut self, k: &Kernel) -> Result<()> {
        let mut order = String::new();
        for m in &k.modules {
            let name = m
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or("module name")?;
            self.file(m, &format!("lib/modules/{name}"))?;
            order.push_str(name.trim_end_matches(".ko"));
            order.push('\n');
        }
        self.bytes("lib/modules/order", order.as_bytes(), false)
    }

    /// Packs the tree into a gzip'd newc cpio archive at `out`.
    pub fn pack(&self, out: &Path) -> Result<()> {
        let status = Command::new("sh")
            .arg("-c")
            .arg("find . -print0 | cpio --null -o -H newc --quiet | gzip -1 > \"$1\"")
            .arg("sh")
            .arg(out)
            .current_dir(self.root.path())
            .status()
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("packing the initramfs failed: {status}"))
        }
    }
}

fn which(name: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| format!("{name} not found"))
}

/// The `/init` of every VM: mount the pseudo filesystems, run `/vm/run.sh`,
/// power off. Module loading is left to the script.
pub const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o size=80% tmpfs /tmp
mkdir -p /run && mount -t tmpfs tmpfs /run
echo "OBD-VM-START"
sh /vm/run.sh
echo "OBD-VM-END"
poweroff -f
"#;

/// How to run the VM.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// Guest memory in MiB.
    pub memory_mb: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Read-only virtio disks (`/dev/vda`, `/dev/vdb`, ...).
    pub disks: Vec<PathBuf>,
    /// Wall-clock limit.
    pub timeout: Duration,
}

impl Default for VmOptions {
    fn default() -> Self {
        VmOptions {
            memory_mb: 1024,
            cpus: 2,
            disks: Vec::new(),
            timeout: Duration::from_secs(900),
        }
    }
}

/// What the VM printed.
#[derive(Debug, Clone)]
pub struct Console {
    /// The serial console, `\r` removed.
    pub log: String,
    /// The VM was killed at the time limit.
    pub timed_out: bool,
    /// Wall-clock time.
    pub elapsed: Duration,
}

impl Console {
    /// True when `/vm/run.sh` ran to its end.
    pub fn finished(&self) -> bool {
        self.log.lines().any(|l| l.trim() == "OBD-VM-END")
    }

    /// `PASS: name` and `FAIL: name: why` lines: name -> Ok or Err(why).
    pub fn results(&self) -> BTreeMap<String, std::result::Result<(), String>> {
        let mut out = BTreeMap::new();
        for l in self.log.lines() {
            let l = l.trim();
            if let Some(name) = l.strip_prefix("PASS: ") {
                out.entry(name.trim().to_string()).or_insert(Ok(()));
            } else if let Some(rest) = l.strip_prefix("FAIL: ") {
                let (name, why) = rest.split_once(": ").unwrap_or((rest, ""));
                // A failure wins over a pass of the same name.
                out.insert(name.trim().to_string(), Err(why.to_string()));
            }
        }
        out
    }

    /// The last `n` lines.
    pub fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// Boots `kernel` with `initrd` under QEMU TCG and returns the console.
///
/// # Errors
/// QEMU cannot be started.
pub fn boot(kernel: &Kernel, initrd: &Path, opts: &VmOptions) -> Result<Console> {
    need_tool("qemu-system-x86_64", "qemu-system-x86")?;
    let log_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let log_path = log_dir.path().join("console.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-nographic",
        "-no-reboot",
        "-nodefaults",
    ])
    .args(["-serial", "stdio", "-display", "none"])
    .arg("-m")
    .arg(opts.memory_mb.to_string())
    .arg("-smp")
    .arg(opts.cpus.to_string())
    .arg("-kernel")
    .arg(&kernel.vmlinuz)
    .arg("-initrd")
    .arg(initrd)
    .args(["-append", "console=ttyS0 quiet panic=-1 rdinit=/init"]);
    for d in &opts.disks {
        cmd.arg("-drive").arg(format!(
            "file={},if=virtio,format=raw,readonly=on",
            d.display()
        ));
    }
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting qemu-system-x86_64: {e}"))?;
    let timed_out = loop {
        match child.try_wait() {
            Ok(Some(_)) => break false,
            Ok(None) if start.elapsed() > opts.timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break true;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("waiting for qemu: {e}")),
        }
    };
    let mut raw = Vec::new();
    std::fs::File::open(&log_path)
        .and_then(|mut f| f.read_to_end(&mut raw))
        .map_err(|e| e.to_string())?;
    Ok(Console {
        log: String::from_utf8_lossy(&raw).replace('\r', ""),
        timed_out,
        elapsed: start.elapsed(),
    })
}
