//! `obd serve`: stacks as NBD exports, checked with clients nobody here
//! wrote (`qemu-img`, `qemu-io`, `nbdinfo`; Debian's qemu-utils and
//! libnbd-bin, which `.ci/run` installs), and with a raw client that breaks
//! the protocol on purpose.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use obd::serve::nbd::proto::{self, cmd, opt, rep, Request};

use crate::util::*;

/// A background `obd serve` on a Unix socket, stopped when dropped.
struct Export {
    _dir: tempfile::TempDir,
    run: PathBuf,
    socket: PathBuf,
    record: serde_json::Value,
}

impl Export {
    fn start(args: &[&str]) -> Export {
        Export::start_at(args, true)
    }

    /// With `unix` false, `args` say where to listen (`--listen`).
    fn start_at(args: &[&str], unix: bool) -> Export {
        let dir = tmpdir();
        let run = dir.path().join("run");
        let socket = dir.path().join("s.sock");
        let mut a = vec!["--json".to_string(), "serve".into()];
        if unix {
            a.extend(["--socket".into(), socket.display().to_string()]);
        }
        a.extend(args.iter().map(|s| s.to_string()));
        let out = Command::new(env!("CARGO_BIN_EXE_obd"))
            .args(&a)
            .current_dir(fixtures())
            .env("OBD_RUN_DIR", &run)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "obd serve {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let record = serde_json::from_slice(&out.stdout).unwrap();
        Export {
            _dir: dir,
            run,
            socket,
            record,
        }
    }

    fn uri(&self) -> String {
        format!("nbd+unix:///?socket={}", self.socket.display())
    }

    fn obd(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_obd"))
            .args(args)
            .current_dir(fixtures())
            .env("OBD_RUN_DIR", &self.run)
            .output()
            .unwrap();
        Run {
            cmd: format!("obd {}", args.join(" ")),
            out,
        }
    }

    fn stop(&self) {
        self.obd(&["detach", "-q", "nbd0"]).ok();
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        let _ = self.obd(&["detach", "-q", "--force", "nbd0"]);
    }
}

/// Runs a client tool; its stdout.
fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (Debian: qemu-utils, libnbd-bin)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stack_args(s: &serde_json::Value) -> Vec<String> {
    let mut a: Vec<String> = s["layers_bottom_to_top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    if let Some(w) = s.get("writable_top") {
        a.extend([
            "--read-only".to_string(),
            "--upper".into(),
            w["data"].as_str().unwrap().into(),
            w["index"].as_str().unwrap().into(),
        ]);
    }
    if s["name"] == "s_mixed" {
        a.push("--ignore-chain".into());
    }
    a
}

#[test]
fn every_fixture_stack_reads_through_qemu_img_as_its_flattened_disk() {
    let d = tmpdir();
    for s in manifest()["stacks"].as_array().unwrap() {
        let args = stack_args(s);
        let name = s["name"].as_str().unwrap();
        let raw = d.path().join(format!("{name}.raw"));
        let mut f = vec![
            "flatten".to_string(),
            "-q".into(),
            "-o".into(),
            raw.display().to_string(),
        ];
        f.extend(args.iter().filter(|a| *a != "--read-only").cloned());
        obd(&f).ok();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = Export::start(&refs);
        assert_eq!(e.record["read_only"], true, "{name}");
        assert_eq!(e.record["size"], s["virtual_size"], "{name}");
        let out = tool(
            "qemu-img",
            &[
                "compare",
                "-f",
                "raw",
                "-F",
                "raw",
                &e.uri(),
                raw.to_str().unwrap(),
            ],
        );
        assert!(out.contains("identical"), "{name}: {out}");
        e.stop();
    }
}

/// `(start, length, zero)` runs, adjacent runs of one kind merged.
fn merged(runs: impl Iterator<Item = (u64, u64, bool)>) -> Vec<(u64, u64, bool)> {
    let mut out: Vec<(u64, u64, bool)> = Vec::new();
    for (start, len, zero) in runs {
        match out.last_mut() {
            Some(l) if l.2 == zero && l.0 + l.1 == start => l.1 += len,
            _ => out.push((start, len, zero)),
        }
    }
    out
}

#[test]
fn clients_see_the_extents_obd_map_reports() {
    let layers = ["L0.lz4.tar", "L1.lz4-bs16.zfile", "L2.zstd-bs32.zfile"];
    let e = Export::start(&layers);
    let map = obd(["--json", "map", layers[0], layers[1], layers[2]])
        .ok()
        .json();
    let want = merged(map["extents"].as_array().unwrap().iter().map(|x| {
        (
            x["start"].as_u64().unwrap(),
            x["length"].as_u64().unwrap(),
            x["kind"] != "data",
        )
    }));
    let q: serde_json::Value = serde_json::from_str(&tool(
        "qemu-img",
        &["map", "--output=json", "-f", "raw", &e.uri()],
    ))
    .unwrap();
    let got = merged(q.as_array().unwrap().iter().map(|x| {
        (
            x["start"].as_u64().unwrap(),
            x["length"].as_u64().unwrap(),
            x["zero"] == true,
        )
    }));
    assert_eq!(got, want, "qemu-img map");
    let n: serde_json::Value =
        serde_json::from_str(&tool("nbdinfo", &["--map", "--json", &e.uri()])).unwrap();
    let got = merged(n.as_array().unwrap().iter().map(|x| {
        (
            x["offset"].as_u64().unwrap(),
            x["length"].as_u64().unwrap(),
            x["type"].as_u64().unwrap() & 2 != 0,
        )
    }));
    assert_eq!(got, want, "nbdinfo --map");
    // A qcow2 made from the export has the same disk.
    let d = tmpdir();
    let q2 = d.path().join("d.qcow2");
    let raw = d.path().join("d.raw");
    tool(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            &e.uri(),
            q2.to_str().unwrap(),
        ],
    );
    obd([
        "flatten",
        "-q",
        "-o",
        raw.to_str().unwrap(),
        layers[0],
        layers[1],
        layers[2],
    ])
    .ok();
    let out = tool(
        "qemu-img",
        &[
            "compare",
            "-F",
            "raw",
            q2.to_str().unwrap(),
            raw.to_str().unwrap(),
        ],
    );
    assert!(out.contains("identical"), "{out}");
    // The export describes itself.
    let info = tool("nbdinfo", &[&e.uri()]);
    assert!(
        info.contains("base:allocation") && info.contains("is_read_only: true"),
        "{info}"
    );
    assert!(info.contains("can_multi_conn: true"), "{info}");
}

#[test]
fn a_writable_export_takes_writes_trims_and_flushes_that_commit() {
    let d = tmpdir();
    let p = |n: &str| d.path().join(n).display().to_string();
    let (data, index) = (p("u.data"), p("u.index"));
    obd(["create", "-q", "--size", "0", &data, &index]).ok();
    let base = ["L0.commit", "L1.commit", "L2.commit"];
    let e = Export::start(&["--upper", &data, &index, base[0], base[1], base[2]]);
    assert_eq!(e.record["read_only"], false);
    tool(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0x55 1M 64k",
            "-c",
            "write -z 3M 64k",
            "-c",
            "discard 2M 64k",
            "-c",
            "flush",
            &e.uri(),
        ],
    );
    // Read back through the export.
    let got = tool(
        "qemu-io",
        &["-f", "raw", "-c", "read -P 0x55 1M 64k", &e.uri()],
    );
    assert!(got.contains("read 65536/65536"), "{got}");
    e.stop();
    let c = p("L3.commit");
    obd([
        "commit", "-q", "--base", base[0], "--base", base[1], "--base", base[2], &data, &index, &c,
    ])
    .ok();
    let (new, old) = (p("new.raw"), p("old.raw"));
    obd(["flatten", "-q", "-o", &new, base[0], base[1], base[2], &c]).ok();
    obd(["flatten", "-q", "-o", &old, base[0], base[1], base[2]]).ok();
    let (n, o) = (std::fs::read(&new).unwrap(), std::fs::read(&old).unwrap());
    let mut want = o.clone();
    want[1 << 20..(1 << 20) + 65536].fill(0x55);
    want[2 << 20..(2 << 20) + 65536].fill(0);
    want[3 << 20..(3 << 20) + 65536].fill(0);
    assert!(n == want, "the committed layer holds what the client wrote");
}

/// A raw client: handshake done by hand, then whatever a test sends.
struct Raw {
    s: UnixStream,
}

impl Raw {
    fn connect(socket: &Path) -> Raw {
        let mut s = UnixStream::connect(socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut hello = [0u8; 18];
        s.read_exact(&mut hello).unwrap();
        assert_eq!(&hello[..8], &proto::INIT_MAGIC.to_be_bytes());
        s.write_all(&(proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES).to_be_bytes())
            .unwrap();
        Raw { s }
    }

    fn option(&mut self, option: u32, data: &[u8]) {
        let mut b = proto::OPTS_MAGIC.to_be_bytes().to_vec();
        b.extend_from_slice(&option.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(data);
        self.s.write_all(&b).unwrap();
    }

    /// One option reply: (type, data).
    fn reply(&mut self) -> (u32, Vec<u8>) {
        let mut h = [0u8; 20];
        self.s.read_exact(&mut h).unwrap();
        let kind = u32::from_be_bytes(h[12..16].try_into().unwrap());
        let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
        let mut d = vec![0u8; len as usize];
        self.s.read_exact(&mut d).unwrap();
        (kind, d)
    }

    /// `NBD_OPT_GO` on the default export; replies up to the ACK.
    fn go(&mut self) {
        let mut d = 0u32.to_be_bytes().to_vec();
        d.extend_from_slice(&0u16.to_be_bytes());
        self.option(opt::GO, &d);
        loop {
            let (k, _) = self.reply();
            assert!(k < 1 << 31, "GO failed: {k:#x}");
            if k == rep::ACK {
                return;
            }
        }
    }

    fn request(&mut self, kind: u16, offset: u64, length: u32, cookie: u64) {
        let r = Request {
            flags: 0,
            kind,
            cookie,
            offset,
            length,
        };
        self.s.write_all(&r.to_bytes()).unwrap();
    }

    /// A simple reply: (error, cookie).
    fn simple(&mut self) -> (u32, u64) {
        let mut h = [0u8; 16];
        self.s.read_exact(&mut h).unwrap();
        assert_eq!(&h[..4], &proto::SIMPLE_REPLY_MAGIC.to_be_bytes());
        (
            u32::from_be_bytes(h[4..8].try_into().unwrap()),
            u64::from_be_bytes(h[8..16].try_into().unwrap()),
        )
    }

    /// True when the server closed the connection.
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0) | Err(_))
    }
}

#[test]
fn bad_peers_get_errors_or_a_closed_connection_and_others_are_still_served() {
    let e = Export::start(&["L0.commit"]);
    let size = e.record["size"].as_u64().unwrap();
    // Options: unknown, malformed, too large, unknown export.
    let mut c = Raw::connect(&e.socket);
    c.option(99, &[]);
    assert_eq!(c.reply().0, rep::ERR_UNSUP);
    c.option(opt::LIST, b"junk");
    assert_eq!(c.reply().0, rep::ERR_INVALID);
    c.option(opt::GO, &[0, 0, 0, 9, b'x']);
    assert_eq!(c.reply().0, rep::ERR_INVALID);
    c.option(opt::INFO, &vec![0u8; 1 << 20]);
    assert_eq!(c.reply().0, rep::ERR_TOO_BIG);
    let mut d = 4u32.to_be_bytes().to_vec();
    d.extend_from_slice(b"nope");
    d.extend_from_slice(&0u16.to_be_bytes());
    c.option(opt::GO, &d);
    assert_eq!(c.reply().0, rep::ERR_UNKNOWN);
    // Block status without a negotiated context is refused in negotiation.
    c.option(opt::SET_META_CONTEXT, &[0; 8]);
    assert_eq!(c.reply().0, rep::ERR_INVALID);
    c.go();
    // Requests past the end and unknown commands: EINVAL, the connection lives on.
    c.request(cmd::READ, size - 512, 4096, 1);
    assert_eq!(c.simple(), (proto::errno::EINVAL, 1));
    c.request(42, 0, 512, 2);
    assert_eq!(c.simple(), (proto::errno::EINVAL, 2));
    c.request(cmd::WRITE, 0, 0, 3);
    assert_eq!(c.simple(), (proto::errno::EPERM, 3));
    c.request(cmd::READ, 0, 512, 4);
    assert_eq!(c.simple(), (0, 4));
    let mut data = [0u8; 512];
    c.s.read_exact(&mut data).unwrap();
    // A bad magic ends the connection.
    c.s.write_all(&[0u8; 28]).unwrap();
    assert!(c.closed());
    // A client that disconnects in the middle of a request.
    let mut c = Raw::connect(&e.socket);
    c.go();
    c.s.write_all(
        &Request {
            flags: 0,
            kind: cmd::READ,
            cookie: 9,
            offset: 0,
            length: 4096,
        }
        .to_bytes()[..10],
    )
    .unwrap();
    drop(c);
    // 10,000 reads without reading a reply: the server stops reading them
    // (bounded memory) and keeps serving everyone else.
    let mut greedy = Raw::connect(&e.socket);
    greedy.go();
    greedy.s.set_nonblocking(true).unwrap();
    let mut sent = 0u64;
    let mut buf = Vec::new();
    for k in 0..10_000u64 {
        buf.extend_from_slice(
            &Request {
                flags: 0,
                kind: cmd::READ,
                cookie: k,
                offset: 0,
                length: 1 << 20,
            }
            .to_bytes(),
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (sent as usize) < buf.len() && std::time::Instant::now() < deadline {
        match greedy.s.write(&buf[sent as usize..]) {
            Ok(n) => sent += n as u64,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    assert!(
        (sent as usize) < buf.len(),
        "the server read all 10,000 requests without their replies being read"
    );
    let server_pid = e.record["pid"].as_u64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{server_pid}/status")).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rss_kib < 256 << 10,
        "server RSS {rss_kib} KiB with a stuck client"
    );
    // Another client is served meanwhile.
    let info = tool("nbdinfo", &["--size", &e.uri()]);
    assert_eq!(info.trim(), size.to_string());
    drop(greedy);
}

#[test]
fn the_export_is_listed_detached_and_its_record_documented() {
    let e = Export::start(&["L0.commit"]);
    let keys: Vec<&String> = e.record.as_object().unwrap().keys().collect();
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json.md"))
        .unwrap();
    let row = doc
        .lines()
        .find(|l| l.starts_with("| `obd serve` (when live) |"))
        .unwrap();
    for k in &keys {
        assert!(
            row.contains(&format!("`{k}`")),
            "{k} missing from docs/json.md"
        );
    }
    assert_eq!(e.record["transport"], "nbd");
    assert_eq!(e.record["device"], e.uri());
    let l = e.obd(&["--json", "list"]).ok().json();
    let d = &l["devices"][0];
    assert_eq!(
        (d["transport"].as_str(), d["state"].as_str()),
        (Some("nbd"), Some("live"))
    );
    // The table names the export the way detach takes it.
    let plain = e.obd(&["--format", "plain", "list"]).ok().stdout();
    let row = plain.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with("nbd0 "), "{plain}");
    e.obd(&["detach", "nbd0"]).ok();
    assert!(
        !e.socket.exists(),
        "the socket is removed when the export stops"
    );
    let l = e.obd(&["--json", "list"]).ok().json();
    assert!(l["devices"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["transport"] != "nbd"));
    // TCP beyond loopback is refused (no TLS).
    let r = obd(["serve", "--listen", "192.0.2.1:10809", "L0.commit"]).clean_error();
    assert!(r.stderr().contains("loopback"), "{}", r.stderr());
}

/// `openssl` making a CA and a certificate for 127.0.0.1 signed by it, in
/// the file names GnuTLS clients (qemu, libnbd) look for in a directory:
/// `ca-cert.pem`; the server's `server-cert.pem` and `server-key.pem`.
fn make_ca(dir: &Path, name: &str) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (Debian: openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let subj = format!("/CN={name}");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca-cert.pem",
        "-subj",
        &subj,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server-key.pem",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca-cert.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server-cert.pem",
        "-extfile",
        "ext.cnf",
    ]);
}

#[test]
fn tls_is_required_and_spoken_with_qemu_img_and_libnbd() {
    let d = tmpdir();
    let ca = d.path().join("ca");
    let other = d.path().join("other");
    std::fs::create_dir_all(&ca).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    make_ca(&ca, "obd test CA");
    make_ca(&other, "another CA");
    let s = manifest()["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "s_L0L1")
        .unwrap()
        .clone();
    let want = s["flattened_sha256"].as_str().unwrap().to_string();
    let cert = ca.join("server-cert.pem");
    let key = ca.join("server-key.pem");
    let mut args = vec![
        "--listen".to_string(),
        "127.0.0.1:0".into(),
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
    ];
    args.extend(stack_args(&s));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = Export::start_at(&refs, false);
    let addr = e.record["char_device"].as_str().unwrap().to_string();
    let uri = e.record["device"].as_str().unwrap().to_string();
    assert_eq!(uri, format!("nbds://{addr}/"));
    let port = addr.rsplit(':').next().unwrap();
    // libnbd (nbdcopy) over TLS: the reference's bytes.
    let copy = d.path().join("copy.raw");
    tool(
        "nbdcopy",
        &[
            &format!("{uri}?tls-certificates={}", ca.display()),
            copy.to_str().unwrap(),
        ],
    );
    assert_eq!(sha256_file(&copy), want);
    // qemu-img over TLS: the same bytes.
    let conv = d.path().join("conv.raw");
    tool(
        "qemu-img",
        &[
            "convert",
            "--object",
            &format!("tls-creds-x509,id=tls0,endpoint=client,dir={}", ca.display()),
            "--image-opts",
            &format!("driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={port},tls-creds=tls0"),
            "-O",
            "raw",
            conv.to_str().unwrap(),
        ],
    );
    assert_eq!(sha256_file(&conv), want);
    // A client without TLS, or one that trusts another CA, gets nothing.
    for (u, why) in [
        (format!("nbd://{addr}/"), "without TLS"),
        (
            format!("{uri}?tls-certificates={}", other.display()),
            "trusting another CA",
        ),
    ] {
        let out = Command::new("nbdinfo").arg(&u).output().unwrap();
        assert!(!out.status.success(), "a client {why} was served");
    }
    e.stop();
    // On a Unix socket too; by the protocol's letter: before STARTTLS,
    // options get ERR_TLS_REQD; STARTTLS is acknowledged, then a TLS
    // handshake is expected (plain bytes end the connection).
    let e = Export::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "L0.commit",
    ]);
    assert!(e.record["device"]
        .as_str()
        .unwrap()
        .starts_with("nbds+unix://"));
    let mut raw = Raw::connect(&e.socket);
    raw.option(opt::LIST, &[]);
    assert_eq!(raw.reply().0, rep::ERR_TLS_REQD);
    raw.option(opt::STRUCTURED_REPLY, &[]);
    assert_eq!(raw.reply().0, rep::ERR_TLS_REQD);
    raw.option(opt::STARTTLS, &[]);
    assert_eq!(raw.reply().0, rep::ACK);
    raw.option(opt::LIST, &[]);
    assert!(raw.closed(), "plain options after STARTTLS were answered");
    e.stop();
    // Misconfigurations fail before anything listens, naming the file.
    let r = obd([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        other.join("server-key.pem").to_str().unwrap(),
        "L0.commit",
    ])
    .clean_error();
    assert!(r.stderr().contains("server-cert.pem"), "{}", r.stderr());
    let r = obd(["serve", "--listen", "192.0.2.1:10809", "L0.commit"]).clean_error();
    assert!(r.stderr().contains("--tls-cert"), "{}", r.stderr());
}

#[test]
fn stats_count_what_a_client_asked_for() {
    let d = tmpdir();
    let data = d.path().join("u.data").display().to_string();
    let index = d.path().join("u.index").display().to_string();
    obd(["create", "-q", "--size", "0", &data, &index]).ok();
    let lower = "L1.lz4-bs16.zfile";
    // A 4 KiB range of the compressed layer's data, read twice: one block
    // decompressed, then served from the block cache.
    let m = obd(["--json", "map", lower]).ok().json();
    let at = m["extents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == "data" && x["length"].as_u64().unwrap() >= 4096)
        .unwrap()["start"]
        .as_u64()
        .unwrap();
    let e = Export::start(&["--upper", &data, &index, lower]);
    let again = format!("read {at} 4k");
    tool(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "read 0 1M",
            "-c",
            &again,
            "-c",
            &again,
            "-c",
            "write -P 7 2M 64k",
            "-c",
            "discard 4M 128k",
            &e.uri(),
        ],
    );
    // The server writes its counters once a second.
    let mut last = serde_json::Value::Null;
    for _ in 0..50 {
        let v = e.obd(&["--json", "stats", "nbd0"]).ok().json();
        last = v["devices"][0]["stats"].clone();
        if last["writes"] == 1 && last["discards"] == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(last["reads"], 3, "{last}");
    assert_eq!(last["read_bytes"], (1 << 20) + 8192, "{last}");
    assert!(last["cache_inserts"].as_u64().unwrap() >= 1, "{last}");
    assert!(last["cache_hits"].as_u64().unwrap() >= 1, "{last}");
    assert_eq!(last["remote_bytes"], 0, "{last}");
    assert_eq!(last["writes"], 1, "{last}");
    assert_eq!(last["write_bytes"], 65536, "{last}");
    assert_eq!(last["discards"], 1, "{last}");
    assert_eq!(last["discard_bytes"], 131072, "{last}");
    assert_eq!(last["errors"], 0, "{last}");
    assert!(last["latency_p99_us"].as_u64().unwrap() >= 1, "{last}");
    // A person's table; an unknown device is one error line.
    let t = e.obd(&["--format", "plain", "stats"]).ok().stdout();
    assert!(t.lines().any(|l| l.starts_with("nbd0 ")), "{t}");
    e.obd(&["stats", "nbd7"]).clean_error();
    let counters = e.run.join(format!("{}.stats.json", 1u32 << 20));
    assert!(counters.exists());
    e.stop();
    assert!(!counters.exists(), "the counters outlive the export");
}
