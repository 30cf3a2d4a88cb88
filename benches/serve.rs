//! `cargo bench --bench serve`: `obd serve` of the read benchmark's 1 GiB
//! lz4 stack against `qemu-nbd -r` serving the stack's flattened raw image,
//! both on Unix sockets, measured back to back in the same run by clients
//! neither project wrote:
//! - sequential: `nbdcopy --requests=16` of the whole export to `null:`
//!   (holes and zeroed extents skipped by both servers' block status);
//! - random 4 KiB reads over the whole disk: `fio --ioengine=nbd`, two jobs
//!   (one connection each) at queue depth 16.
//!
//! Each figure is the best of its rounds, the two servers taking turns, their
//! inputs read right before each round so they are in the page cache. Needs
//! `qemu-nbd` (qemu-utils), `nbdcopy` (libnbd-bin) and `fio` built with its
//! nbd engine (Debian's is).
//!
//! The run ends with one line per figure: `target <name> <ratio> goal <ratio>`.

#[path = "common/stack.rs"]
mod bench_stack;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bench_stack::{fixture_stack, warm, Files, GIB};

const SEQ_ROUNDS: usize = 5;
const RANDOM_ROUNDS: usize = 3;
const RANDOM_SECONDS: u32 = 5;

fn main() {
    if let Err(e) = run() {
        eprintln!("serve bench: {e}");
        std::process::exit(1);
    }
}

/// A server process, killed when dropped.
struct Server {
    name: &'static str,
    child: Child,
    uri: String,
    inputs: Vec<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn need(tool: &str, package: &str) -> Result<(), String> {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join(tool).is_file());
    if found {
        Ok(())
    } else {
        Err(format!("{tool} not found (apt install {package})"))
    }
}

fn run() -> Result<(), String> {
    need("qemu-nbd", "qemu-utils")?;
    need("nbdcopy", "libnbd-bin")?;
    need("fio", "fio")?;
    let files = fixture_stack(&bench_stack::bench_dir());
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let obd = start_obd(&files, &work.path().join("obd.sock"))?;
    let qemu = start_qemu(&files, &work.path().join("qemu.sock"))?;
    println!(
        "obd serve (default options) of {} layers vs qemu-nbd -r of {}",
        files.layers.len(),
        files.raw.display()
    );

    let mut targets = Vec::new();
    let seq = |s: &Server| sequential(s);
    let (o, q) = best_of(SEQ_ROUNDS, &obd, &qemu, seq)?;
    println!(
        "sequential, nbdcopy --requests=16: obd {:.0} MB/s, qemu-nbd {:.0} MB/s (best of {SEQ_ROUNDS})",
        o / 1e6,
        q / 1e6
    );
    targets.push(("serve_seq", o / q, 1.0));

    let (o, q) = best_of(RANDOM_ROUNDS, &obd, &qemu, random)?;
    println!(
        "random 4 KiB, fio nbd 2 jobs x depth 16: obd {o:.0} IOPS, qemu-nbd {q:.0} IOPS (best of {RANDOM_ROUNDS} x {RANDOM_SECONDS} s)"
    );
    targets.push(("serve_rand4k", o / q, 0.8));

    println!();
    for (name, ratio, goal) in targets {
        println!("target {name} {ratio:.2} goal {goal:.2}");
    }
    Ok(())
}

/// Best figure of `rounds` for each server, taking turns.
fn best_of(
    rounds: usize,
    a: &Server,
    b: &Server,
    f: impl Fn(&Server) -> Result<f64, String>,
) -> Result<(f64, f64), String> {
    let (mut best_a, mut best_b) = (0f64, 0f64);
    for round in 0..rounds {
        let (first, second) = if round % 2 == 0 { (a, b) } else { (b, a) };
        for s in [first, second] {
            let paths: Vec<&Path> = s.inputs.iter().map(|p| p.as_path()).collect();
            warm(&paths);
            let x = f(s)?;
            if std::ptr::eq(s, a) {
                best_a = best_a.max(x);
            } else {
                best_b = best_b.max(x);
            }
        }
    }
    Ok((best_a, best_b))
}

fn wait_live(server: &mut Server, socket: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if UnixStream::connect(socket).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!("{} exited before serving: {status}", server.name));
        }
        if Instant::now() > deadline {
            return Err(format!("{} is not serving after 30 s", server.name));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn uri(socket: &Path) -> String {
    format!("nbd+unix:///?socket={}", socket.display())
}

fn start_obd(files: &Files, socket: &Path) -> Result<Server, String> {
    let child = Command::new(env!("CARGO_BIN_EXE_obd"))
        .args(["serve", "--foreground", "--quiet", "--socket"])
        .arg(socket)
        .args(&files.layers)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("obd serve: {e}"))?;
    let mut s = Server {
        name: "obd serve",
        child,
        uri: uri(socket),
        inputs: files.layers.clone(),
    };
    wait_live(&mut s, socket)?;
    Ok(s)
}

fn start_qemu(files: &Files, socket: &Path) -> Result<Server, String> {
    // qemu-nbd complains on stderr of the probe connection that
    // wait_live drops; its log stays next to the socket.
    let log = std::fs::File::create(socket.with_extension("log")).map_err(|e| e.to_string())?;
    let child = Command::new("qemu-nbd")
        .args(["--read-only", "--format=raw", "--persistent", "--shared=16"])
        .arg("--socket")
        .arg(socket)
        .arg(&files.raw)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("qemu-nbd: {e}"))?;
    let mut s = Server {
        name: "qemu-nbd",
        child,
        uri: uri(socket),
        inputs: vec![files.raw.clone()],
    };
    wait_live(&mut s, socket)?;
    Ok(s)
}

/// Bytes per second of the virtual disk copied to `null:`.
fn sequential(s: &Server) -> Result<f64, String> {
    let t = Instant::now();
    let out = Command::new("nbdcopy")
        .args(["--requests=16", &s.uri, "null:"])
        .output()
        .map_err(|e| format!("nbdcopy: {e}"))?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "nbdcopy from {} failed: {}",
            s.name,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(GIB as f64 / secs)
}

/// Random 4 KiB reads per second.
fn random(s: &Server) -> Result<f64, String> {
    let out = Command::new("fio")
        .args([
            "--name=rand4k",
            "--ioengine=nbd",
            &format!("--uri={}", s.uri),
            "--rw=randread",
            "--bs=4k",
            "--iodepth=16",
            "--numjobs=2",
            "--size=1g",
            "--time_based",
            &format!("--runtime={RANDOM_SECONDS}"),
            "--group_reporting",
            "--output-format=json",
        ])
        .output()
        .map_err(|e| format!("fio: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "fio against {} failed: {}",
            s.name,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // fio's nbd engine prints a line per connection before the document.
    let text = String::from_utf8_lossy(&out.stdout);
    let doc = text.find("\n{").map_or(&text[..], |at| &text[at + 1..]);
    let v: serde_json::Value =
        serde_json::from_str(doc).map_err(|e| format!("fio's JSON against {}: {e}", s.name))?;
    let iops = v["jobs"][0]["read"]["iops"]
        .as_f64()
        .ok_or_else(|| format!("fio's JSON against {} has no read IOPS", s.name))?;
    let errors = v["jobs"][0]["error"].as_u64().unwrap_or(0);
    if errors != 0 {
        return Err(format!("fio against {} reports error {errors}", s.name));
    }
    Ok(iops)
}
