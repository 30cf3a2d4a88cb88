//! Crash safety: writers killed at random moments leave either no output or
//! a complete one; Ctrl-C leaves nothing behind; a writable layer killed
//! mid-write keeps everything its last flush acknowledged.
//!
//! Iterations are few by default so CI stays quick; `OBD_CRASH_ITERS=200`
//! runs the long version.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use obd::format::lsmt::writable::{create, CreateOptions, WritableLayer};
use obd::io::ReadAt;
use obd::sample::Rng;

use crate::util::*;

fn iters() -> usize {
    std::env::var("OBD_CRASH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

fn obd_cmd(dir: &Path, args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_obd"));
    c.args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// A writable layer holding `mib` MiB of sample data in shuffled writes.
fn writable_layer(dir: &Path, name: &str, mib: u64, seed: u64) -> (PathBuf, PathBuf) {
    let (d, i) = (
        dir.join(format!("{name}.data")),
        dir.join(format!("{name}.index")),
    );
    create(
        &d,
        &i,
        &CreateOptions {
            virtual_size: 1 << 30,
            ..Default::default()
        },
    )
    .unwrap();
    let l = WritableLayer::open(&d, &i, None).unwrap();
    let mut buf = vec![0u8; 256 << 10];
    let mut r = Rng::new(seed);
    let n = mib * 4;
    for k in 0..n {
        let at = (k * 7919 + r.below(3)) % (4 * 1024) * (256 << 10);
        obd::sample::fill(seed, at, &mut buf);
        l.write_at(&buf, at).unwrap();
    }
    l.flush().unwrap();
    (d, i)
}

/// Runs `args` to completion once (how long it takes, and the output's
/// flattened hash), then kills it at random moments: each time the output
/// must be absent, or complete (verifies clean and flattens the same).
fn kill_at_random(dir: &Path, name: &str, args: Vec<String>, out: &Path) {
    let t = Instant::now();
    let r = obd_cmd(dir, &args).output().unwrap();
    assert!(
        r.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let full = t.elapsed();
    let want = content_hash(dir, out);
    std::fs::remove_file(out).unwrap();
    let mut rng = Rng::new(0xC0FFEE ^ name.len() as u64);
    let (mut absent, mut complete) = (0, 0);
    for _ in 0..iters() {
        let mut child = obd_cmd(dir, &args).spawn().unwrap();
        let wait = full.mul_f64(rng.below(1000) as f64 / 1000.0 * 1.2);
        std::thread::sleep(wait);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if out.exists() {
            let v = obd_in(dir, ["verify", "-q", out.to_str().unwrap()]);
            assert_eq!(
                v.code(),
                0,
                "{name}: a killed run left a damaged {}: {}",
                out.display(),
                v.stdout()
            );
            assert_eq!(content_hash(dir, out), want, "{name}: output differs");
            std::fs::remove_file(out).unwrap();
            complete += 1;
        } else {
            absent += 1;
        }
        // Where the file system has O_TMPFILE the output has no name until
        // it is complete, so SIGKILL leaves nothing. Elsewhere a hidden
        // temporary file may stay (nothing can remove it); it never takes
        // the output's name.
        for e in std::fs::read_dir(dir).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            if n.contains(".obd-tmp-") {
                assert!(
                    !unnamed_files(dir),
                    "{name}: SIGKILL left {n} on a file system with O_TMPFILE"
                );
                std::fs::remove_file(dir.join(&n)).unwrap();
            }
        }
    }
    eprintln!("{name}: {absent} runs killed before the output appeared, {complete} after");
}

/// True when files without a name (`O_TMPFILE`) can be made in `dir`.
fn unnamed_files(dir: &Path) -> bool {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(
        dir,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .is_ok()
}

/// sha256 of what a layer (or ZFile) holds, via `obd flatten` or `zfile decompress`.
fn content_hash(dir: &Path, out: &Path) -> String {
    let flat = dir.join("content.check");
    let _ = std::fs::remove_file(&flat);
    let is_layer = obd_in(dir, ["inspect", "--json", out.to_str().unwrap()])
        .ok()
        .json()["files"][0]["kind"]
        != "raw";
    let args: Vec<&str> = if is_layer {
        vec![
            "flatten",
            "-q",
            "-o",
            "content.check",
            out.to_str().unwrap(),
        ]
    } else {
        vec![
            "zfile",
            "decompress",
            "-q",
            out.to_str().unwrap(),
            "content.check",
        ]
    };
    obd_in(dir, &args).ok();
    let h = sha256_file(&flat);
    std::fs::remove_file(&flat).unwrap();
    h
}

#[test]
fn killed_zfile_compress_leaves_nothing_or_everything() {
    let d = tmpdir();
    let raw = d.path().join("in.raw");
    let mut b = vec![0u8; 48 << 20];
    obd::sample::fill(5, 0, &mut b);
    std::fs::write(&raw, &b).unwrap();
    let out = d.path().join("out.zfile");
    let args = vec![
        "zfile".into(),
        "compress".into(),
        "-q".into(),
        "--tar".into(),
        "in.raw".into(),
        "out.zfile".into(),
    ];
    kill_at_random(d.path(), "zfile compress", args, &out);
}

#[test]
fn killed_commit_leaves_nothing_or_everything() {
    let d = tmpdir();
    let (data, index) = writable_layer(d.path(), "L", 48, 1);
    let out = d.path().join("L.commit");
    let args = vec![
        "commit".into(),
        "-q".into(),
        "-z".into(),
        data.display().to_string(),
        index.display().to_string(),
        "L.commit".into(),
    ];
    kill_at_random(d.path(), "commit -z", args, &out);
}

#[test]
fn killed_merge_leaves_nothing_or_everything() {
    let d = tmpdir();
    let mut layers = Vec::new();
    for (k, mib) in [(0u64, 32u64), (1, 12), (2, 4)] {
        let (data, index) = writable_layer(d.path(), &format!("L{k}"), mib, k + 10);
        let c = format!("L{k}.commit");
        obd_in(
            d.path(),
            [
                "commit",
                "-q",
                data.to_str().unwrap(),
                index.to_str().unwrap(),
                &c,
            ],
        )
        .ok();
        layers.push(c);
    }
    let out = d.path().join("merged");
    let mut args = vec![
        "merge".to_string(),
        "-q".into(),
        "-o".into(),
        "merged".into(),
    ];
    args.extend(layers);
    kill_at_random(d.path(), "merge", args, &out);
}

#[test]
fn interrupted_writer_removes_its_temporary_file() {
    let d = tmpdir();
    let raw = d.path().join("in.raw");
    let mut b = vec![0u8; 64 << 20];
    obd::sample::fill(6, 0, &mut b);
    std::fs::write(&raw, &b).unwrap();
    let args = vec![
        "zfile".to_string(),
        "compress".into(),
        "-q".into(),
        "--algorithm".into(),
        "zstd".into(),
        "--level".into(),
        "19".into(),
        "in.raw".into(),
        "out.zfile".into(),
    ];
    let mut child = obd_cmd(d.path(), &args).spawn().unwrap();
    // Wait until the writer has its output open (a file without a name, or
    // a hidden temporary one), then send SIGINT as Ctrl-C does.
    let t = Instant::now();
    let fds = PathBuf::from(format!("/proc/{}/fd", child.id()));
    loop {
        let open = std::fs::read_dir(&fds).into_iter().flatten().any(|e| {
            let target = std::fs::read_link(e.unwrap().path()).unwrap_or_default();
            let target = target.to_string_lossy();
            target.starts_with(&*d.path().to_string_lossy())
                && (target.ends_with(" (deleted)") || target.contains(".obd-tmp-"))
        });
        if open {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the writer never opened its output"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(130), "exit status after SIGINT");
    let left: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["in.raw".to_string()], "only the input is left");
}

/// The child side of `writable_layer_survives_kill_9`: writes distinct blocks
/// through a `WritableLayer`, flushing now and then and telling the parent
/// how many writes each flush covers, until it is killed.
#[test]
fn crash_child_writer() {
    let Some(dir) = std::env::var_os("OBD_CRASH_CHILD_DIR") else {
        return; // only runs as the child of the test below
    };
    let dir = PathBuf::from(dir);
    let l = WritableLayer::open(&dir.join("w.data"), &dir.join("w.index"), None).unwrap();
    let mut buf = vec![0u8; 8192];
    for k in 0u64.. {
        block_content(k, &mut buf);
        l.write_at(&buf, block_offset(k)).unwrap();
        if k % 16 == 15 {
            l.flush().unwrap();
            println!("FLUSHED {}", k + 1);
        }
    }
}

fn block_offset(k: u64) -> u64 {
    // Distinct blocks spread over the disk, never overwritten.
    (k * 2654435761 % 100_000) * 8192
}

fn block_content(k: u64, buf: &mut [u8]) {
    Rng::new(k + 1).fill(buf);
}

#[test]
fn writable_layer_survives_kill_9() {
    use std::io::{BufRead, BufReader};
    let d = tmpdir();
    create(
        &d.path().join("w.data"),
        &d.path().join("w.index"),
        &CreateOptions {
            virtual_size: 1 << 30,
            ..Default::default()
        },
    )
    .unwrap();
    let mut rng = Rng::new(77);
    let mut acknowledged = 0u64;
    for round in 0..iters() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash::crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("OBD_CRASH_CHILD_DIR", d.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let stop_after = 1 + rng.below(6);
        let mut seen = 0;
        for line in out.lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("FLUSHED ") {
                acknowledged = n.parse().unwrap();
                seen += 1;
                if seen == stop_after {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.below(20)));
        child.kill().unwrap();
        child.wait().unwrap();
        // Reopen: every acknowledged write is there; later ones are whole or absent.
        let l = WritableLayer::open(&d.path().join("w.data"), &d.path().join("w.index"), None)
            .unwrap_or_else(|e| panic!("round {round}: the layer does not reopen: {e}"));
        let mut got = vec![0u8; 8192];
        let mut want = vec![0u8; 8192];
        for k in 0..acknowledged + 200 {
            l.read_exact_at(&mut got, block_offset(k)).unwrap();
            block_content(k, &mut want);
            if k < acknowledged {
                assert!(got == want, "round {round}: flushed write {k} was lost");
            } else {
                assert!(
                    got == want || got.iter().all(|&b| b == 0),
                    "round {round}: write {k} is torn"
                );
            }
        }
        drop(l);
        // Each round appends to the same layer, as a restarted server would.
    }
    // The layer still commits, and the commit reads the same.
    let r = obd_in(d.path(), ["commit", "-q", "w.data", "w.index", "w.commit"]);
    r.ok();
    obd_in(d.path(), ["verify", "-q", "w.commit"]).ok();
    let l = WritableLayer::open(&d.path().join("w.data"), &d.path().join("w.index"), None).unwrap();
    let c =
        obd::stack::Stack::open(&[d.path().join("w.commit")], None, Default::default()).unwrap();
    let mut a = vec![0u8; 8192];
    let mut b = vec![0u8; 8192];
    for k in 0..acknowledged {
        l.read_exact_at(&mut a, block_offset(k)).unwrap();
        c.read_exact_at(&mut b, block_offset(k)).unwrap();
        assert_eq!(a, b, "commit differs at write {k}");
    }
}
