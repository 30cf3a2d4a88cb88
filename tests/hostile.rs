//! Hostile blobs and two users at once: inputs crafted here to make obd
//! allocate what they claim, layers written by two processes, headers
//! readers must not trust, files that change while they are read.

use std::path::Path;

use obd::format::lsmt::header::HeaderFields;
use obd::format::lsmt::Segment;
use obd::format::uuid::Uuid;
use zerocopy::IntoBytes;

use crate::util::*;

fn at(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// A committed LSMT layer (header, no data, index, trailer) whose index is
/// `n` entries made by `entry(i)`.
fn committed_with_index(n: u64, entry: impl Fn(u64) -> Segment) -> Vec<u8> {
    let mut v = HeaderFields {
        flags: 0x07,
        index_offset: 0,
        index_size: 0,
        virtual_size: 1 << 40,
        uuid: Uuid::null(),
        parent_uuid: Uuid::null(),
        user_tag: Vec::new(),
    }
    .to_bytes()
    .unwrap();
    let index_offset = v.len() as u64;
    v.reserve((n * 16) as usize + 4096);
    for i in 0..n {
        v.extend_from_slice(entry(i).encode().unwrap().as_bytes());
    }
    v.extend(
        HeaderFields {
            flags: 0x06,
            index_offset,
            index_size: n,
            virtual_size: 1 << 40,
            uuid: Uuid::null(),
            parent_uuid: Uuid::null(),
            user_tag: Vec::new(),
        }
        .to_bytes()
        .unwrap(),
    );
    v
}

/// Compresses `raw` into a zstd ZFile with 64 KiB blocks at `out` (index
/// bombs shrink to a few KiB that way).
fn zstd64(dir: &Path, raw: &[u8], out: &str) {
    let tmp = at(dir, "bomb.lsmt");
    std::fs::write(&tmp, raw).unwrap();
    obd([
        "zfile",
        "compress",
        "-q",
        "-f",
        "--algorithm",
        "zstd",
        "--block-size",
        "64K",
        &tmp,
        out,
    ])
    .ok();
    std::fs::remove_file(tmp).unwrap();
}

/// Runs obd under an address-space limit: a run that tried to allocate what
/// a bomb claims dies instead of finishing.
fn obd_limited(limit_mib: u64, args: &[&str]) -> Run {
    let mut script = format!("ulimit -v {}; exec \"$0\"", limit_mib << 10);
    for i in 0..args.len() {
        script.push_str(&format!(" \"${}\"", i + 1));
    }
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_obd"))
        .args(args)
        .current_dir(fixtures())
        .output()
        .unwrap();
    Run {
        cmd: format!("(ulimit -v {limit_mib} MiB) obd {}", args.join(" ")),
        out,
    }
}

#[test]
fn index_bombs_are_refused_before_they_are_allocated() {
    let d = tmpdir();
    let dir = d.path();
    // 4,000,000 zero-length zeroed entries: 64 MB of index in a few KiB.
    let bomb = at(dir, "bomb.zfile");
    let zeroed_empty = |_| Segment {
        offset: 0,
        length: 0,
        moffset: 8,
        zeroed: true,
        tag: 0,
    };
    zstd64(dir, &committed_with_index(4_000_000, zeroed_empty), &bomb);
    assert!(std::fs::metadata(&bomb).unwrap().len() < 1 << 20);
    let out = at(dir, "out.raw");
    for args in [
        vec!["inspect", bomb.as_str()],
        vec!["map", &bomb],
        vec!["flatten", "-o", &out, &bomb],
    ] {
        let r = obd_limited(512, &args).clean_error();
        assert!(r.stderr().contains("1000000"), "{}", r.stderr());
    }
    // verify reports it, within the same bound.
    obd_limited(512, &["verify", "-q", &bomb]).code_is(1);
    // Under the entry limit, but zero-length entries: refused as well.
    let small = at(dir, "small.zfile");
    zstd64(dir, &committed_with_index(1000, zeroed_empty), &small);
    let e = obd(["map", &small]).clean_error().stderr();
    assert!(e.contains("maps no sectors"), "{e}");
}

#[test]
fn the_stack_has_an_index_memory_budget() {
    let d = tmpdir();
    let dir = d.path();
    // A valid layer of 1,000,000 one-sector zeroed entries.
    let one = |i| Segment {
        offset: 2 * i,
        length: 1,
        moffset: 8,
        zeroed: true,
        tag: 0,
    };
    let big = at(dir, "big.zfile");
    zstd64(dir, &committed_with_index(1_000_000, one), &big);
    obd(["map", "--ignore-chain", "--lba", "0", &big, &big]).ok();
    // Two of them do not fit 64 MiB: refused before the second is read.
    let e = obd([
        "map",
        "--ignore-chain",
        "--max-index-memory",
        "64M",
        &big,
        &big,
    ])
    .clean_error()
    .stderr();
    assert!(e.contains("--max-index-memory"), "{e}");
    // Too many layers: refused before any is opened (these do not exist).
    let many: Vec<String> = (0..256).map(|i| at(dir, &format!("missing{i}"))).collect();
    let mut args = vec!["map".to_string()];
    args.extend(many);
    let e = obd(&args).clean_error().stderr();
    assert!(e.contains("at most 255"), "{e}");
}

#[test]
fn a_writable_layer_has_one_writer_at_a_time() {
    use obd::format::lsmt::writable::{create, CreateOptions, WritableLayer};
    let d = tmpdir();
    let dir = d.path();
    let (data, index) = (dir.join("u.data"), dir.join("u.index"));
    create(
        &data,
        &index,
        &CreateOptions {
            virtual_size: 1 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let w = WritableLayer::open(&data, &index, None).unwrap();
    w.write_at(&[7u8; 4096], 0).unwrap();
    w.flush().unwrap();
    // A second writer is refused, and so is a commit meanwhile, naming the
    // holder.
    let e = WritableLayer::open(&data, &index, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("in use"), "{e}");
    let c = at(dir, "c.commit");
    let (ds, is) = (data.display().to_string(), index.display().to_string());
    let e = obd(["commit", &ds, &is, &c]).clean_error().stderr();
    assert!(
        e.contains("in use") && e.contains(&format!("process {}", std::process::id())),
        "{e}"
    );
    let e = obd(["commit", "--seal", &ds, &is]).clean_error().stderr();
    assert!(e.contains("in use"), "{e}");
    // Once the writer is gone, everything it acknowledged is there.
    drop(w);
    obd(["commit", "-q", &ds, &is, &c]).ok();
    let img = at(dir, "img");
    obd(["flatten", "-q", "-o", &img, &c]).ok();
    let back = std::fs::read(&img).unwrap();
    assert!(back[..4096].iter().all(|&b| b == 7));
}

#[test]
fn verify_finds_records_that_claim_the_same_data() {
    let d = tmpdir();
    let dir = d.path();
    let (data, index) = (at(dir, "u.data"), at(dir, "u.index"));
    obd(["create", "-q", "--size", "1M", &data, &index]).ok();
    // Two records, as two writers that each thought the data file ended at
    // 4096 would write them: different LBAs, the same data sectors.
    let mut d = std::fs::read(&data).unwrap();
    d.extend_from_slice(&[1u8; 4096]);
    std::fs::write(&data, d).unwrap();
    let mut i = std::fs::read(&index).unwrap();
    for lba in [0u64, 64] {
        let s = Segment {
            offset: lba,
            length: 8,
            moffset: 8,
            zeroed: false,
            tag: 0,
        };
        i.extend_from_slice(s.encode().unwrap().as_bytes());
    }
    std::fs::write(&index, i).unwrap();
    let r = obd(["--json", "verify", &data, &index]).code_is(1).json();
    let checks: Vec<&str> = r["files"][0]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["check"].as_str().unwrap())
        .collect();
    assert!(checks.contains(&"lsmt.index.physical_overlap"), "{r}");
}

#[test]
fn virtual_sizes_readers_cannot_serve_are_refused() {
    let d = tmpdir();
    let dir = d.path();
    for v in [1u64, 513, 1 << 63, u64::MAX] {
        let p = at(dir, &format!("v{v}.commit"));
        let mut b = std::fs::read(fx("L0.commit")).unwrap();
        let t = b.len() - 4096;
        b[48..56].copy_from_slice(&v.to_le_bytes());
        b[t + 48..t + 56].copy_from_slice(&v.to_le_bytes());
        std::fs::write(&p, b).unwrap();
        let out = at(dir, "o.raw");
        for args in [vec!["map", p.as_str()], vec!["flatten", "-o", &out, &p]] {
            let e = obd(&args).clean_error().stderr();
            assert!(
                e.contains(&format!("v{v}.commit")) && e.contains("virtual size"),
                "{e}"
            );
        }
    }
}

#[test]
fn an_input_that_shrinks_while_it_is_compressed_is_an_error() {
    let d = tmpdir();
    let dir = d.path();
    let input = at(dir, "big.raw");
    let f = std::fs::File::create(&input).unwrap();
    f.set_len(4 << 30).unwrap();
    let out = at(dir, "o.zfile");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_obd"))
        .args(["zfile", "compress", "-q", "--threads", "1", &input, &out])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once obd has the input open (and has taken its size), cut it short.
    let fd_dir = format!("/proc/{}/fd", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let open = std::fs::read_dir(&fd_dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == Path::new(&input)));
        if open {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "obd never opened the input"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    std::thread::sleep(std::time::Duration::from_millis(30));
    f.set_len(1 << 20).unwrap();
    let out_run = child.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&out_run.stderr);
    assert_eq!(out_run.status.code(), Some(2), "{e}");
    assert!(e.contains("shrank while being read"), "{e}");
    assert!(!Path::new(&out).exists());
}

#[test]
fn nothing_is_left_behind_when_an_output_cannot_be_made() {
    let d = tmpdir();
    let dir = d.path();
    let same = at(dir, "same");
    let e = obd(["create", "--size", "1M", &same, &same])
        .clean_error()
        .stderr();
    assert!(e.contains("both the data file and the index file"), "{e}");
    assert!(!Path::new(&same).exists());
    // A complete temporary of a writer killed between naming and renaming
    // its output is removed by the next writer of that output.
    let out = at(dir, "x.raw");
    std::fs::write(&out, b"old").unwrap();
    let stale = dir.join(".x.raw.obd-tmp-999999999-0");
    std::fs::write(&stale, b"complete but never renamed").unwrap();
    obd(["flatten", "-q", "-f", "-o", &out, "L0.commit"]).ok();
    assert!(!stale.exists());
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["x.raw"], "{names:?}");
}

fn obd_run_dir(run_dir: &Path, args: &[&str]) -> Run {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_obd"))
        .args(args)
        .current_dir(fixtures())
        .env("OBD_RUN_DIR", run_dir)
        .output()
        .unwrap();
    Run {
        cmd: format!("OBD_RUN_DIR={} obd {}", run_dir.display(), args.join(" ")),
        out,
    }
}

#[test]
fn a_config_cannot_make_obd_write_its_result_anywhere() {
    let d = tmpdir();
    let dir = d.path();
    let (cfgdir, elsewhere) = (dir.join("cfg"), dir.join("elsewhere"));
    std::fs::create_dir_all(&cfgdir).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let run = dir.join("run");
    let config = |rf: &str| {
        let c = cfgdir.join("config.json");
        std::fs::write(
            &c,
            format!(r#"{{"lowers":[{{"digest":"sha256:00"}}],"resultFile":"{rf}"}}"#),
        )
        .unwrap();
        c.display().to_string()
    };
    // Outside the config's directory: through `..`, or absolute.
    for rf in [
        "../elsewhere/result".to_string(),
        elsewhere.join("result").display().to_string(),
    ] {
        let c = config(&rf);
        let e = obd_run_dir(&run, &["attach", "--config", &c])
            .clean_error()
            .stderr();
        assert!(e.contains("next to the config"), "{e}");
        assert!(!elsewhere.join("result").exists());
    }
    // Allowed under --result-dir.
    let c = config(&elsewhere.join("result").display().to_string());
    let ed = elsewhere.display().to_string();
    obd_run_dir(&run, &["attach", "--config", &c, "--result-dir", &ed]).clean_error();
    let r = std::fs::read_to_string(elsewhere.join("result")).unwrap();
    assert!(r.starts_with("failed:"), "{r}");
    // A file that is not a previous result file is never replaced, and a
    // symbolic link is not followed.
    std::fs::write(cfgdir.join("precious"), b"keep me").unwrap();
    let c = config("precious");
    let e = obd_run_dir(&run, &["attach", "--config", &c])
        .clean_error()
        .stderr();
    assert!(e.contains("not a previous result file"), "{e}");
    assert_eq!(std::fs::read(cfgdir.join("precious")).unwrap(), b"keep me");
    std::os::unix::fs::symlink(elsewhere.join("target"), cfgdir.join("link")).unwrap();
    let c = config("link");
    obd_run_dir(&run, &["attach", "--config", &c]).clean_error();
    assert!(!elsewhere.join("target").exists());
}

/// A sleeping process (not obd) and its start time as `/proc` gives it.
fn bystander() -> (std::process::Child, u64) {
    let child = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let start: u64 = after.split(' ').nth(19).unwrap().parse().unwrap();
    (child, start)
}

fn record(id: u32, pid: u32, pid_start: u64) -> String {
    serde_json::json!({
        "id": id, "device": format!("/dev/ublkb{id}"), "char_device": format!("/dev/ublkc{id}"),
        "pid": pid, "pid_start": pid_start, "size": 1048576, "read_only": true,
        "queues": 1, "depth": 64, "layers": [], "upper": null, "config": null,
        "log": null, "started": 0
    })
    .to_string()
}

#[test]
fn a_forged_run_record_does_not_make_detach_signal_a_process() {
    use std::os::unix::fs::PermissionsExt;
    let d = tmpdir();
    let run = d.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (mut victim, start) = bystander();
    std::fs::write(run.join("7.json"), record(7, victim.id(), start)).unwrap();
    for args in [vec!["detach", "7"], vec!["detach", "--force", "7"]] {
        let e = obd_run_dir(&run, &args).clean_error().stderr();
        assert!(e.contains("not an obd server"), "{e}");
    }
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the bystander was signalled"
    );
    // `list` removes only the records it read: a record whose content names
    // another device is not used to delete that device's record.
    std::fs::write(run.join("3.json"), record(5, 999_999_999, 1)).unwrap();
    std::fs::write(run.join("5.json"), record(5, victim.id(), start)).unwrap();
    obd_run_dir(&run, &["list", "--json"]).ok();
    assert!(run.join("5.json").exists());
    victim.kill().unwrap();
    let _ = victim.wait();
    // A run directory others can write is not trusted at all.
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = obd_run_dir(&run, &["list"]).clean_error().stderr();
    assert!(e.contains("writable by others"), "{e}");
    let e = obd_run_dir(&run, &["detach", "7"]).clean_error().stderr();
    assert!(e.contains("writable by others"), "{e}");
}

/// Opening any layer blob costs at most this much memory, whatever its
/// headers claim: a read-only index may hold at most 1,000,000 entries (16
/// bytes read, 24 decoded each), and nothing else grows with what a file
/// says.
const MAX_OPEN_BYTES: usize = 48 << 20;

#[test]
fn opening_a_blob_allocates_what_the_limits_allow_whatever_it_claims() {
    use obd::format::zfile::{Algorithm, Writer as ZWriter, WriterOptions};
    use obd::source::{Blob, BlobOptions, LayerSource};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new(Config {
        cases: 24,
        ..Config::default()
    });
    let entries = prop_oneof![0u64..300, 999_000u64..1_001_000, 1_001_000u64..1_500_000];
    runner
        .run(
            &(entries, any::<bool>(), 0u8..4, any::<u64>(), any::<bool>()),
            |(n, empty, wrap, claim, lie)| {
                let mut raw = committed_with_index(n, |i| Segment {
                    offset: 2 * i,
                    length: u32::from(!empty),
                    moffset: 8,
                    zeroed: true,
                    tag: 0,
                });
                if lie {
                    // The trailer claims an index of any size, anywhere.
                    let t = raw.len() - 4096;
                    raw[t + 32..t + 40].copy_from_slice(&(claim >> 20).to_le_bytes());
                    raw[t + 40..t + 48].copy_from_slice(&claim.to_le_bytes());
                }
                let zfile = |algorithm, block_size, raw: &[u8]| {
                    let mut w = ZWriter::new(
                        Vec::new(),
                        WriterOptions {
                            algorithm,
                            block_size,
                            crc: true,
                            level: 3,
                        },
                    )
                    .unwrap();
                    w.push(raw).unwrap();
                    w.finish().unwrap().inner
                };
                let blob = match wrap {
                    0 => raw,
                    1 => zfile(Algorithm::Lz4, 4096, &raw),
                    2 => zfile(Algorithm::Zstd, 65536, &raw),
                    _ => obd::format::tar::wrap(&zfile(Algorithm::Zstd, 65536, &raw)),
                };
                let input = blob.len();
                let view: std::sync::Arc<dyn obd::ReadAt> = std::sync::Arc::new(blob);
                let (r, peak) = crate::alloc::peak_during(|| {
                    Blob::from_reader(LayerSource::file("case"), view, BlobOptions::default())
                        .and_then(|b| b.layer().map(|l| l.segments().len()))
                });
                prop_assert!(
                    peak <= MAX_OPEN_BYTES,
                    "{peak} bytes to open a {input}-byte blob claiming {n} entries \
                     (empty {empty}, wrap {wrap}, lie {lie}): {r:?}"
                );
                // What is refused is refused for a reason the limits name.
                if n > 1_000_000 && !lie {
                    prop_assert!(r.is_err(), "{n} entries accepted");
                }
                Ok(())
            },
        )
        .unwrap();
}
