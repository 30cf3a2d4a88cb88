//! obd in a person's hands: wrong results it must not give, mistakes it must
//! catch, errors that name the user's path. Every input here is made by the
//! test itself, with obd's writers or by patching bytes of a layer.

use std::path::Path;

use crate::util::*;

/// `dir/name` as a string.
fn at(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// Writes `len` bytes of sample data to `dir/name` and returns the path.
fn sample_raw(dir: &Path, name: &str, len: usize, seed: u64) -> String {
    let mut v = vec![0u8; len];
    obd::sample::fill(seed, 0, &mut v);
    let p = at(dir, name);
    std::fs::write(&p, &v).unwrap();
    p
}

/// Overwrites `bytes` at `offset` of the header (offset 0) and of the
/// trailer (the last 4096 bytes) of a plain committed layer.
fn patch_records(path: &str, offset: usize, bytes: &[u8]) {
    let mut v = std::fs::read(path).unwrap();
    let t = v.len() - 4096;
    v[offset..offset + bytes.len()].copy_from_slice(bytes);
    v[t + offset..t + offset + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, v).unwrap();
}

const VIRTUAL_SIZE_AT: usize = 48;
const UUID_AT: usize = 56;
const PARENT_UUID_AT: usize = 93;

#[test]
fn merge_takes_the_stacks_size_when_the_top_layer_declares_none() {
    let d = tmpdir();
    let dir = d.path();
    let raw = sample_raw(dir, "b.raw", 16 << 20, 1);
    let l0 = at(dir, "L0.commit");
    obd(["commit", "-q", "--raw", &raw, &l0]).ok();
    // A top layer that declares virtual size 0 ("inherit"), as writers that
    // leave the size to the stack make it.
    let (ud, ui) = (at(dir, "u.data"), at(dir, "u.index"));
    obd(["create", "-q", "--size", "1M", &ud, &ui]).ok();
    let l1 = at(dir, "L1.commit");
    obd(["commit", "-q", &ud, &ui, &l1]).ok();
    patch_records(&l1, VIRTUAL_SIZE_AT, &0u64.to_le_bytes());
    let m = at(dir, "m.commit");
    obd(["merge", "-q", "-o", &m, &l0, &l1]).ok();
    let img = at(dir, "m.img");
    obd(["flatten", "-q", "-o", &img, &m]).ok();
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 16 << 20);
    assert_eq!(sha256_file(img.as_ref()), sha256_file(raw.as_ref()));
}

#[test]
fn verify_accepts_lower_case_uuids_and_an_empty_parent() {
    let d = tmpdir();
    let dir = d.path();
    let raw = sample_raw(dir, "b.raw", 1 << 20, 2);
    let l0 = at(dir, "L0.commit");
    obd([
        "commit",
        "-q",
        "--raw",
        &raw,
        "--uuid",
        "ABCDEF01-2345-4678-9ABC-DEF012345678",
        &l0,
    ])
    .ok();
    patch_records(&l0, UUID_AT, b"abcdef01-2345-4678-9abc-def012345678\0");
    patch_records(&l0, PARENT_UUID_AT, &[0u8; 37]);
    let r = obd(["--json", "verify", &l0]).code_is(0).json();
    let f = &r["files"][0];
    assert_eq!(f["status"], "ok", "{r}");
    // The empty parent is a note, not a problem.
    let notes = f["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n.as_str().unwrap().contains("empty")),
        "{r}"
    );
    // obd reads it, and so does the stack check.
    obd(["--json", "verify", "--stack", &l0]).code_is(0);
}

#[test]
fn commit_and_merge_give_new_layers_an_identity_and_a_parent() {
    let d = tmpdir();
    let dir = d.path();
    let raw = sample_raw(dir, "b.raw", 1 << 20, 3);
    let l0 = at(dir, "L0.commit");
    let r0 = obd(["--json", "commit", "--raw", &raw, &l0]).ok().json();
    let u0 = r0["layer"]["uuid"].as_str().unwrap().to_string();
    assert_ne!(u0, obd::format::uuid::NULL, "{r0}");
    // A writable layer over L0, committed with L0 as its base: the parent
    // is L0's uuid, the uuid is the writable layer's own.
    let (ud, ui) = (at(dir, "u.data"), at(dir, "u.index"));
    let c = obd(["--json", "create", "--size", "1M", &ud, &ui])
        .ok()
        .json();
    let l1 = at(dir, "L1.commit");
    let r1 = obd(["--json", "commit", "--base", &l0, &ud, &ui, &l1])
        .ok()
        .json();
    assert_eq!(r1["layer"]["parent_uuid"], u0, "{r1}");
    assert_eq!(r1["layer"]["uuid"], c["uuid"], "{r1}");
    // The stack made with obd passes the chain check.
    let s = obd(["--json", "inspect", "--stack", &l0, &l1]).ok().json();
    assert_eq!(s["chain_consistent"], true, "{s}");
    // A merge gets a fresh uuid of its own; the reference's null uuid on request.
    let m = at(dir, "m.commit");
    let rm = obd(["--json", "merge", "-o", &m, &l0, &l1]).ok().json();
    let um = rm["layer"]["uuid"].as_str().unwrap();
    assert!(um != obd::format::uuid::NULL && um != u0, "{rm}");
    let m2 = at(dir, "m2.commit");
    let rm = obd([
        "--json",
        "merge",
        "--uuid",
        obd::format::uuid::NULL,
        "-o",
        &m2,
        &l0,
        &l1,
    ])
    .ok()
    .json();
    assert_eq!(rm["layer"]["uuid"], obd::format::uuid::NULL);
}

#[test]
fn a_layer_that_inherits_its_size_commits_with_the_size_of_its_base() {
    let d = tmpdir();
    let dir = d.path();
    let raw = sample_raw(dir, "b.raw", 2 << 20, 4);
    let l0 = at(dir, "L0.commit");
    obd(["commit", "-q", "--raw", &raw, &l0]).ok();
    let (ud, ui) = (at(dir, "dz"), at(dir, "iz"));
    obd(["create", "-q", "--size", "0", &ud, &ui]).ok();
    // A fresh size-0 writable layer is fine for verify.
    obd(["--json", "verify", &ud, &ui]).code_is(0);
    // Without the stack it was used over, commit cannot know the size.
    let c0 = at(dir, "c0");
    let e = obd(["commit", &ud, &ui, &c0]).clean_error();
    assert!(e.stderr().contains("--base"), "{}", e.stderr());
    assert!(e.stderr().contains("dz"), "{}", e.stderr());
    assert!(!Path::new(&c0).exists());
    // With it, the committed layer has the stack's size and verifies.
    let r = obd(["--json", "commit", "--base", &l0, &ud, &ui, &c0])
        .ok()
        .json();
    assert_eq!(r["layer"]["virtual_size"], 2 << 20, "{r}");
    obd(["verify", "-q", &c0]).code_is(0);
}

#[test]
fn stacks_in_the_wrong_order_or_with_a_layer_missing_are_refused() {
    let d = tmpdir();
    let out = at(d.path(), "w.raw");
    let (l0, l1, l2) = (fxs("L0.commit"), fxs("L1.commit"), fxs("L2.commit"));
    for args in [
        vec!["flatten", "-o", &out, &l2, &l1, &l0],
        vec!["flatten", "-o", &out, &l0, &l2],
        vec!["map", &l1, &l0],
        vec!["merge", "-o", &out, &l0, &l2],
    ] {
        let r = obd(&args).clean_error();
        let e = r.stderr();
        assert!(
            e.contains("parent_uuid") && e.contains("--ignore-chain"),
            "{e}"
        );
        assert!(!Path::new(&out).exists(), "{}", args.join(" "));
    }
    // The message names both layers.
    let e = obd(["map", &l0, &l2]).clean_error().stderr();
    assert!(e.contains("L2.commit") && e.contains("L0.commit"), "{e}");
    // The bottom layer of a stack must be a base layer: L1 below L2 with
    // L0 missing.
    let e = obd(["map", &l1, &l2]).clean_error().stderr();
    assert!(e.contains("L1.commit"), "{e}");
    // Deliberately accepted.
    obd(["map", "--ignore-chain", &l0, &l2]).ok();
    // The right order passes without a word.
    let r = obd(["map", &l0, &l1, &l2]).ok();
    assert!(r.stderr().is_empty(), "{}", r.stderr());
    // inspect --stack reports a broken chain rather than refusing it.
    let s = obd(["--json", "inspect", "--stack", &l2, &l1]).ok().json();
    assert_eq!(s["chain_consistent"], false);
}

#[test]
fn layers_with_null_uuids_are_noted_once() {
    let d = tmpdir();
    let dir = d.path();
    let raw = sample_raw(dir, "b.raw", 1 << 20, 5);
    let (a, b) = (at(dir, "a.commit"), at(dir, "b.commit"));
    let null = obd::format::uuid::NULL;
    obd(["commit", "-q", "--raw", &raw, "--uuid", null, &a]).ok();
    obd(["commit", "-q", "--raw", &raw, "--uuid", null, &b]).ok();
    let r = obd(["map", &a, &b]).ok();
    let err = r.stderr();
    let notes: Vec<&str> = err.lines().collect();
    assert_eq!(notes.len(), 1, "{}", r.stderr());
    assert!(notes[0].contains("cannot be checked"), "{}", r.stderr());
}

#[test]
fn verify_of_nothing_fails_and_json_errors_are_json() {
    let d = tmpdir();
    let empty = at(d.path(), "empty");
    std::fs::create_dir(&empty).unwrap();
    let r = obd(["verify", &empty]).code_is(1);
    assert!(
        r.stderr().contains("no layer blobs found"),
        "{}",
        r.stderr()
    );
    let j = obd(["--json", "verify", &empty]).code_is(1).json();
    assert_eq!(j["ok"], false);
    obd(["verify", "--allow-empty", &empty]).code_is(0);
    // A directory holding only files that are not layers: nothing checked.
    std::fs::write(d.path().join("empty/readme.txt"), b"hello").unwrap();
    obd(["verify", &empty]).code_is(1);
    // An error that keeps verify from running is still a JSON document.
    let r = obd(["--json", "verify", &at(d.path(), "missing")]).code_is(2);
    let j = r.json();
    assert!(j["error"].as_str().unwrap().contains("missing"), "{j}");
}

#[test]
fn zfiles_the_reference_cannot_read_are_announced() {
    let d = tmpdir();
    let dir = d.path();
    // Incompressible data in 64 KiB blocks: every block grows past 64 KiB.
    let mut v = vec![0u8; 256 << 10];
    obd::sample::Rng::new(9).fill(&mut v);
    let raw = at(dir, "random.bin");
    std::fs::write(&raw, &v).unwrap();
    let z = at(dir, "r.zfile");
    let r = obd([
        "--json",
        "-q",
        "zfile",
        "compress",
        "--block-size",
        "64K",
        &raw,
        &z,
    ])
    .ok();
    assert_eq!(r.json()["output"]["oversized_blocks"], 4, "{}", r.stdout());
    assert!(
        r.stderr().contains("warning") && r.stderr().contains("4 ZFile blocks"),
        "{}",
        r.stderr()
    );
    // Compressible data does not warn.
    let text = at(dir, "text.bin");
    let mut v = vec![0u8; 256 << 10];
    for (i, b) in v.iter_mut().enumerate() {
        *b = b"overlaybd "[i % 10];
    }
    std::fs::write(&text, &v).unwrap();
    let z2 = at(dir, "s.zfile");
    let r = obd(["zfile", "compress", "-q", "--block-size", "64K", &text, &z2]).ok();
    assert!(r.stderr().is_empty(), "{}", r.stderr());
}

#[test]
fn options_are_bounded_and_options_that_do_nothing_are_refused() {
    let d = tmpdir();
    let x = at(d.path(), "x");
    for n in ["0", "100000", "many"] {
        let e = obd(["zfile", "compress", "--threads", n, &fxs("base.raw"), &x])
            .clean_error()
            .stderr();
        assert!(e.contains("give 1 to 1024"), "{e}");
        let e = obd(["verify", "--threads", n, &fxs("L0.commit")])
            .clean_error()
            .stderr();
        assert!(e.contains("give 1 to 1024"), "{e}");
    }
    for (flag, value) in [
        ("--level", "5"),
        ("--algorithm", "zstd"),
        ("--block-size", "16K"),
    ] {
        let e = obd(["commit", flag, value, &fxs("L1.data"), &fxs("L1.index"), &x])
            .clean_error()
            .stderr();
        assert!(e.contains(flag) && e.contains("-z"), "{e}");
        obd(["merge", flag, value, "-o", &x, &fxs("L0.commit")]).clean_error();
    }
    assert!(!Path::new(&x).exists());
    // Values a shell can complete are the ones accepted.
    let e = obd([
        "zfile",
        "compress",
        "--algorithm",
        "lzo",
        &fxs("base.raw"),
        &x,
    ])
    .clean_error()
    .stderr();
    assert!(e.contains("lz4") && e.contains("zstd"), "{e}");
}

/// A pseudo-terminal: the master, kept open, and the slave as a file to give
/// a child as its stdout.
fn pty() -> (std::fs::File, std::fs::File) {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    (std::fs::File::from(master), slave)
}

#[test]
fn binary_output_to_a_terminal_is_refused() {
    for args in [
        vec![
            "flatten".to_string(),
            "-o".into(),
            "-".into(),
            fxs("L0.commit"),
        ],
        vec![
            "zfile".to_string(),
            "decompress".into(),
            fxs("base.lz4.zfile"),
            "-".into(),
        ],
    ] {
        let (_master, slave) = pty();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_obd"))
            .args(&args)
            .stdout(slave)
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{e}");
        assert!(e.contains("stdout is a terminal"), "{e}");
    }
}

#[test]
fn inspect_reports_every_file_and_names_raw_images() {
    let r = obd(["inspect", "L0.commit", "base.raw", "L1.commit"]).code_is(2);
    // Both layers are reported, the raw image named for what it is.
    assert!(r.stdout().matches("lsmt").count() >= 2, "{}", r.stdout());
    assert!(r.stdout().contains("L1.commit"), "{}", r.stdout());
    assert!(
        r.stderr()
            .contains("base.raw: raw image: no overlaybd container"),
        "{}",
        r.stderr()
    );
    let j = obd(["--json", "inspect", "L0.commit", "base.raw"])
        .code_is(2)
        .json();
    let files = j["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert!(
        files[0]["lsmt"].is_object() && files[0].get("error").is_none(),
        "{j}"
    );
    assert!(
        files[1]["error"].as_str().unwrap().contains("raw image"),
        "{j}"
    );
}

#[test]
fn errors_name_the_users_path() {
    let d = tmpdir();
    let x = at(d.path(), "nodir/x.raw");
    let e = obd(["flatten", "-o", &x, "L0.commit"])
        .clean_error()
        .stderr();
    assert_eq!(
        e.trim_end(),
        format!("obd: {x}: cannot create: No such file or directory")
    );
    let e = obd(["create", "--size", "1M", &x, &at(d.path(), "i")])
        .clean_error()
        .stderr();
    assert!(e.contains(&format!("{x}: cannot create")), "{e}");
    // No offsets where none means anything, no temporary names.
    assert!(!e.contains("at 0x0") && !e.contains("obd-tmp"), "{e}");
}

#[test]
fn version_says_what_the_build_is() {
    let v = obd(["--version"]).ok().stdout();
    assert!(v.contains("commit ") && v.contains("built 20"), "{v}");
    assert!(v.contains("lookup kernel"), "{v}");
    assert!(v.contains("ublk"), "{v}");
}

#[test]
fn a_reader_that_goes_away_makes_the_writer_fail() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_obd"))
        .args(["flatten", "-q", "-o", "-", &fxs("L0.commit")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1000];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(141), "{st:?}");
}

#[test]
fn tables_fit_a_terminal_and_pipes_get_plain_columns() {
    // On a pipe: plain aligned columns, no box characters, full uuids, one
    // line per record, no trailing blanks.
    let r = obd(["inspect", "--stack", "L0.commit", "L1.commit", "L2.commit"]).ok();
    let out = r.stdout();
    assert!(!out.contains('│') && !out.contains('─'), "{out}");
    let row = out.lines().find(|l| l.starts_with("1 ")).unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "L1.commit");
    assert_eq!(cols[2], "lsmt_ro");
    assert_eq!(cols[3], "0000002A-0000-4000-8000-000000000001");
    assert!(out.lines().all(|l| l == l.trim_end()), "{out:?}");
    // verify DIR names files relative to the directory.
    let v = obd(["verify", "--format", "plain", "."]).ok().stdout();
    assert!(
        v.lines()
            .any(|l| l.split_whitespace().nth(1) == Some("L0.commit")),
        "{v}"
    );
    // On an 80-column terminal: a table no wider than the terminal.
    let (mut master, slave) = pty();
    rustix::termios::tcsetwinsize(
        &slave,
        rustix::termios::Winsize {
            ws_row: 40,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_obd"))
        .args(["inspect", "--stack", "L0.commit", "L1.commit", "L2.commit"])
        .current_dir(fixtures())
        .stdout(slave)
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let mut text = Vec::new();
    use std::io::Read;
    // The child is done: read what the terminal holds, then stop.
    let _ = rustix::fs::fcntl_setfl(&master, rustix::fs::OFlags::NONBLOCK);
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = master.read(&mut buf) {
        text.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains('│'), "{text}");
    for line in text.lines() {
        assert!(
            line.trim_end().chars().count() <= 80,
            "{} columns: {line}",
            line.chars().count()
        );
    }
    // --format table on a pipe, and --format json.
    assert!(obd(["--format", "table", "map", "L0.commit"])
        .ok()
        .stdout()
        .contains('│'));
    obd(["--format", "json", "map", "L0.commit"]).ok().json();
}

#[test]
fn map_takes_byte_ranges() {
    let r = obd([
        "--json",
        "map",
        "--start",
        "64K",
        "--length",
        "64K",
        "L0.commit",
    ])
    .ok()
    .json();
    let ex = r["extents"].as_array().unwrap();
    assert_eq!(ex.first().unwrap()["start"], 65536, "{r}");
    let end: u64 = ex
        .iter()
        .map(|e| e["start"].as_u64().unwrap() + e["length"].as_u64().unwrap())
        .max()
        .unwrap();
    assert_eq!(end, 131072, "{r}");
    // Lengths for people in the table, exact in plain form.
    let t = obd(["--format", "table", "map", "--length", "1M", "L0.commit"]).ok();
    assert!(t.stdout().contains("KiB"), "{}", t.stdout());
    let e = obd(["map", "--start", "2G", "L0.commit"])
        .clean_error()
        .stderr();
    assert!(e.contains("past the end"), "{e}");
    // What the offsets in a layer mean is in the help.
    let h = obd(["map", "--help"]).ok().stdout();
    assert!(h.contains("decompressed"), "{h}");
}

#[test]
fn progress_from_a_stream_is_a_spinner_with_bytes_and_rate() {
    use std::io::{Read, Write};
    let d = tmpdir();
    let (mut master, slave) = pty();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_obd"))
        .args(["zfile", "compress", "-", &at(d.path(), "x.zfile")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(slave)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for _ in 0..40 {
        stdin.write_all(&vec![7u8; 1 << 20]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    let _ = rustix::fs::fcntl_setfl(&master, rustix::fs::OFlags::NONBLOCK);
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = master.read(&mut buf) {
        text.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("compress"), "{text}");
    assert!(
        text.contains("MB"),
        "bytes and rate in decimal units: {text}"
    );
    assert!(
        !text.contains("/0 B") && !text.contains("eta"),
        "a bar with no total: {text}"
    );
}

#[test]
fn layer_kinds_have_one_name_everywhere() {
    let files = obd(["--json", "inspect", "L1.sealed"]).ok().json();
    let stack = obd(["--json", "inspect", "--stack", "L1.sealed"])
        .ok()
        .json();
    let verify = obd(["--json", "verify", "L1.sealed"]).code_is(0).json();
    assert_eq!(files["files"][0]["kind"], "lsmt_sealed");
    assert_eq!(stack["layers"][0]["kind"], "lsmt_sealed");
    assert_eq!(verify["files"][0]["kind"], "lsmt_sealed");
    // Plurals agree with their counts.
    let v = obd(["verify", "L0.commit"]).ok().stdout();
    assert!(v.contains("1 file,") && v.contains("(0 problems)"), "{v}");
}

#[test]
fn a_missing_input_has_one_wording_in_every_command() {
    let d = tmpdir();
    let x = at(d.path(), "x");
    for args in [
        vec!["inspect", "nope"],
        vec!["inspect", "--stack", "nope"],
        vec!["map", "nope"],
        vec!["flatten", "-o", &x, "nope"],
        vec!["merge", "-o", &x, "nope"],
        vec!["commit", "nope", "nope2", &x],
        vec!["commit", "nope", &x],
        vec!["commit", "--raw", "nope", &x],
        vec!["commit", "--seal", "nope", "nope2"],
        vec!["zfile", "compress", "nope", &x],
        vec!["zfile", "decompress", "nope", &x],
        vec!["verify", "nope"],
    ] {
        let e = obd(&args).clean_error().stderr();
        assert_eq!(
            e.trim_end(),
            "obd: nope: cannot open: No such file or directory",
            "obd {}",
            args.join(" ")
        );
    }
}

#[test]
fn a_gnu_tar_is_named_for_what_it_is() {
    let d = tmpdir();
    let p = d.path().join("gnu.tar");
    let mut h = tar::Header::new_gnu();
    h.set_path("overlaybd.commit").unwrap();
    h.set_size(512);
    h.set_cksum();
    let mut v = h.as_bytes().to_vec();
    v.extend_from_slice(&[0u8; 512 * 3]);
    std::fs::write(&p, v).unwrap();
    let e = obd(["inspect", p.to_str().unwrap()]).clean_error().stderr();
    assert!(e.contains("GNU tar") && e.contains("cannot read"), "{e}");
}

#[test]
fn the_diff_unit_of_a_raw_commit_is_its_own_option() {
    let d = tmpdir();
    let dir = d.path();
    // One byte changed: the layer holds one unit of the size asked for.
    let base = fxs("base.raw");
    let mut v = std::fs::read(&base).unwrap();
    v[100_000] ^= 1;
    let new = at(dir, "new.raw");
    std::fs::write(&new, &v).unwrap();
    let data = |unit: &str| {
        let out = at(dir, &format!("d{unit}"));
        let r = obd([
            "--json",
            "commit",
            "--raw",
            &new,
            "--base",
            &fxs("L0.commit"),
            "--ignore-chain",
            "--diff-unit",
            unit,
            &out,
        ]);
        let r = r.ok().json();
        r["layer"]["data_bytes"].as_u64().unwrap()
    };
    let (small, large) = (data("4K"), data("64K"));
    assert!(small < large, "4K unit: {small} bytes, 64K unit: {large}");
    // --block-size is the ZFile's block size only: without -z it does nothing.
    let e = obd([
        "commit",
        "--raw",
        &new,
        "--block-size",
        "64K",
        &at(dir, "e"),
    ])
    .clean_error()
    .stderr();
    assert!(e.contains("--block-size") && e.contains("-z"), "{e}");
    // A writable layer given where a read-only one is taken gets a hint that
    // fits every command.
    let e = obd(["merge", "-o", &at(dir, "m"), "L1.data"])
        .clean_error()
        .stderr();
    assert!(
        e.contains("commit it first") && !e.contains("merge --upper"),
        "{e}"
    );
}
