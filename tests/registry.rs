//! Images where they live: `obd push`, `obd pull` and lazy reads of
//! `docker://` and `oci:` references, against a real registry (Debian's
//! docker-registry, started here on 127.0.0.1) and checked with clients
//! nobody here wrote (skopeo, umoci). Faults come from a proxy in front of
//! the registry (tests/httpkit.rs): 503s, cut bodies, flipped bytes,
//! manifests that lie, Bearer tokens.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::httpkit::Proxy;
use crate::regkit::{Options, Registry};
use crate::util::*;

/// obd with its own cache and no auth files of the machine's user.
struct Obd {
    home: tempfile::TempDir,
}

impl Obd {
    fn new() -> Obd {
        Obd { home: tmpdir() }
    }

    fn cache(&self) -> PathBuf {
        self.home.path().join("cache")
    }

    fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.run_env(args, &[])
    }

    fn run_env<I, S>(&self, args: I, env: &[(&str, &str)]) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let args: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let mut c = Command::new(env!("CARGO_BIN_EXE_obd"));
        c.args(&args)
            .current_dir(fixtures())
            .env("HOME", self.home.path())
            .env("OBD_CACHE_DIR", self.cache())
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("DOCKER_CONFIG")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("OBD_CREDS");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().expect("running obd");
        let cmd = format!(
            "obd {}",
            args.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        Run { cmd, out }
    }
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo (apt install skopeo; .ci/run does)");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The read-only stacks of the manifest: (name, layers, flattened sha256).
fn ro_stacks() -> Vec<(String, Vec<String>, String)> {
    let m = manifest();
    let stacks = m["stacks"].as_array().unwrap();
    let plain = stacks.iter().find(|s| s["name"] == "s_plain").unwrap()["flattened_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    stacks
        .iter()
        .filter(|s| s.get("writable_top").is_none())
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["layers_bottom_to_top"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l.as_str().unwrap().to_string())
                    .collect(),
                // s_zfile_bs64 (the reference cannot read it) holds s_plain's disk.
                s["flattened_sha256"]
                    .as_str()
                    .map_or(plain.clone(), str::to_string),
            )
        })
        .collect()
}

fn repo_name(stack: &str) -> String {
    format!("fx/{}", stack.to_ascii_lowercase().replace('.', "-"))
}

/// Pushes; `--ignore-chain` because one fixture stack (s_mixed) mixes
/// layers of two chains.
fn push(o: &Obd, layers: &[String], dest: &str) -> serde_json::Value {
    let mut a: Vec<String> = vec!["--json".into(), "push".into(), "--ignore-chain".into()];
    a.extend(layers.iter().cloned());
    a.push(dest.into());
    o.run(&a).ok().json()
}

fn flatten_sha(o: &Obd, reference: &str, extra: &[&str]) -> String {
    let d = tmpdir();
    let out = d.path().join("disk.raw");
    let mut a: Vec<String> = vec![
        "flatten".into(),
        "-q".into(),
        "--ignore-chain".into(),
        "-o".into(),
        out.display().to_string(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a.push(reference.into());
    o.run(&a).ok();
    sha256_file(&out)
}

#[test]
fn every_fixture_stack_pushed_and_read_back_lazily() {
    let reg = Registry::start(Options::default());
    let o = Obd::new();
    for (name, layers, sha) in ro_stacks() {
        let image = format!("{}:v1", reg.image(&repo_name(&name)));
        let r = push(&o, &layers, &image);
        assert_eq!(r["layers"].as_array().unwrap().len(), layers.len());
        // skopeo reads what obd pushed: the tag and every layer digest.
        let info: serde_json::Value =
            serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &image])).unwrap();
        assert_eq!(info["Digest"], r["manifest_digest"], "{name}");
        let pushed: Vec<&serde_json::Value> = r["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| &l["digest"])
            .collect();
        let seen: Vec<&serde_json::Value> = info["Layers"].as_array().unwrap().iter().collect();
        assert_eq!(pushed, seen, "{name}");
        // Lazily read back, the disk is the reference's.
        assert_eq!(flatten_sha(&o, &image, &[]), sha, "{name}");
    }
    // The raw manifest: overlaybd annotations, config listing the layers.
    let image = format!("{}:v1", reg.image("fx/s_tar"));
    let raw: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--raw", "--tls-verify=false", &image])).unwrap();
    for l in raw["layers"].as_array().unwrap() {
        assert_eq!(l["mediaType"], "application/vnd.oci.image.layer.v1.tar");
        let a = &l["annotations"];
        assert_eq!(
            a["containerd.io/snapshot/overlaybd/blob-digest"],
            l["digest"]
        );
        assert_eq!(
            a["containerd.io/snapshot/overlaybd/blob-size"],
            l["size"].as_u64().unwrap().to_string()
        );
        assert_eq!(a["containerd.io/snapshot/overlaybd/version"], "0.1.0");
    }
    let config: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &image,
    ]))
    .unwrap();
    let diff_ids: Vec<&serde_json::Value> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let digests: Vec<&serde_json::Value> = raw["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["digest"])
        .collect();
    assert_eq!(diff_ids, digests);
    // A second push of the same layers sends nothing.
    let r = push(
        &o,
        &[
            "L0.lz4.tar".into(),
            "L1.zstd.tar".into(),
            "L2.lz4-bs64.tar".into(),
        ],
        &image,
    );
    assert!(
        r["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["action"] == "exists"),
        "{r}"
    );
    assert_eq!(r["transferred_bytes"], 0);
}

#[test]
fn map_and_inspect_of_a_reference_match_the_files() {
    let reg = Registry::start(Options::default());
    let o = Obd::new();
    let layers: Vec<String> = ["L0.lz4.tar", "L1.lz4-bs16.zfile", "L2.zstd-bs32.zfile"]
        .map(String::from)
        .into();
    let image = format!("{}:v1", reg.image("fx/map"));
    push(&o, &layers, &image);
    let strip = |v: serde_json::Value| -> Vec<serde_json::Value> {
        v["extents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                serde_json::json!([e["start"], e["length"], e["kind"], e["layer"], e["offset"]])
            })
            .collect()
    };
    let mut a = vec!["--json", "map"];
    a.extend(layers.iter().map(String::as_str));
    let files = strip(o.run(&a).ok().json());
    let remote = strip(o.run(["--json", "map", &image]).ok().json());
    assert_eq!(files, remote);
    let s = o.run(["--json", "inspect", &image]).ok().json();
    assert_eq!(s["layers"].as_array().unwrap().len(), 3);
    assert_eq!(s["chain_consistent"], true);
    // An image reference stands alone.
    o.run(["map", "L0.commit", &image]).clean_error();
}

#[test]
fn layouts_skopeo_and_umoci_read_and_write_are_read_by_obd() {
    let reg = Registry::start(Options::default());
    let o = Obd::new();
    let d = tmpdir();
    let layers: Vec<String> = ["L0.lz4.tar", "L1.zstd.tar", "L2.lz4-bs64.tar"]
        .map(String::from)
        .into();
    let sha = ro_stacks().into_iter().find(|s| s.0 == "s_tar").unwrap().2;
    // obd into a layout; skopeo and umoci read it; obd reads it in place.
    let layout = d.path().join("img");
    let r = push(&o, &layers, &format!("oci:{}:v2", layout.display()));
    assert!(r["layers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["action"] == "copied"));
    let info: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        &format!("oci:{}:v2", layout.display()),
    ]))
    .unwrap();
    assert_eq!(info["Digest"], r["manifest_digest"]);
    let umoci = Command::new("umoci")
        .args([
            "stat",
            "--json",
            "--image",
            &format!("{}:v2", layout.display()),
        ])
        .output()
        .expect("umoci (apt install umoci; .ci/run does)");
    assert!(
        umoci.status.success(),
        "umoci stat: {}",
        String::from_utf8_lossy(&umoci.stderr)
    );
    assert_eq!(
        flatten_sha(&o, &format!("oci:{}:v2", layout.display()), &[]),
        sha
    );
    // skopeo copies the layout to the registry and back to another
    // layout: the same blobs, and obd reads both ends.
    let image = format!("{}:v2", reg.image("fx/copied"));
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:v2", layout.display()),
        &image,
    ]);
    assert_eq!(flatten_sha(&o, &image, &[]), sha);
    let back = d.path().join("back");
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        &image,
        &format!("oci:{}:v2", back.display()),
    ]);
    for l in r["layers"].as_array().unwrap() {
        let hex = l["digest"].as_str().unwrap().trim_start_matches("sha256:");
        let a = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
        let b = std::fs::read(back.join("blobs/sha256").join(hex)).unwrap();
        assert!(a == b, "blob {hex} differs after the round trip");
    }
    assert_eq!(
        flatten_sha(&o, &format!("oci:{}:v2", back.display()), &[]),
        sha
    );
    // A layout without that tag, a directory that is no layout.
    let e = o
        .run(["map", &format!("oci:{}:nope", layout.display())])
        .clean_error()
        .stderr();
    assert!(
        e.contains("no image tagged \"nope\"") && e.contains("v2"),
        "{e}"
    );
    let e = o
        .run(["map", &format!("oci:{}", d.path().display())])
        .clean_error()
        .stderr();
    assert!(e.contains("not an OCI image layout"), "{e}");
}

/// Range reads hand their connection back for the next request: over a
/// long path a new connection costs round trips (and a TLS handshake).
#[test]
fn range_reads_reuse_their_connections() {
    let reg = Registry::start(Options::default());
    let proxy = Proxy::start(reg.port);
    let o = Obd::new();
    let layers: Vec<String> = ["L0.commit", "L1.lz4-bs16.zfile", "L2.zstd-bs32.zfile"]
        .map(String::from)
        .into();
    push(&o, &layers, &format!("{}:v1", reg.image("fx/conns")));
    let sha = ro_stacks()
        .into_iter()
        .find(|s| s.0 == "s_plain")
        .unwrap()
        .2;
    let via = format!("docker://{}/fx/conns:v1", proxy.url());
    assert_eq!(flatten_sha(&o, &via, &["--max-requests", "1"]), sha);
    let requests = proxy.requests.load(std::sync::atomic::Ordering::Relaxed);
    let conns = proxy.connections.load(std::sync::atomic::Ordering::Relaxed);
    assert!(requests >= 6, "{requests} requests");
    // One request in flight at a time: one connection serves them all
    // (two allowed, should the pool lose a race).
    assert!(conns <= 2, "{conns} connections for {requests} requests");
}

#[test]
fn pull_checks_digests_and_resumes() {
    let reg = Registry::start(Options::default());
    let proxy = Proxy::start(reg.port);
    let o = Obd::new();
    let layers: Vec<String> = ["L0.commit", "L1.commit", "L2.commit"]
        .map(String::from)
        .into();
    let sha = ro_stacks()
        .into_iter()
        .find(|s| s.0 == "s_plain")
        .unwrap()
        .2;
    push(&o, &layers, &format!("{}:v1", reg.image("fx/pull")));
    let via = format!("docker://{}/fx/pull:v1", proxy.url());
    let d = tmpdir();
    let dir = d.path().join("pulled");
    // Bodies cut short every time: the pull fails cleanly, nothing named.
    proxy.set(|f| f.cut_after = Some(100_000));
    let e = o
        .run(["pull", &via, dir.to_str().unwrap()])
        .clean_error()
        .stderr();
    assert!(e.contains("gave up after"), "{e}");
    let named: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(named.is_empty(), "a blob got its name unchecked: {named:?}");
    // Then it resumes and finishes; the layout verifies and flattens.
    proxy.set(|f| f.cut_after = None);
    let r = o
        .run(["--json", "pull", &via, dir.to_str().unwrap()])
        .ok()
        .json();
    assert!(
        r["layers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["action"] == "resumed"),
        "{r}"
    );
    assert_eq!(
        flatten_sha(&o, &format!("oci:{}:v1", dir.display()), &[]),
        sha
    );
    let mut v = vec!["verify".to_string()];
    v.extend(
        r["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["path"].as_str().unwrap().to_string()),
    );
    o.run(&v).ok();
    // Nothing left behind but the layout.
    let hidden: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
    // A pull of what is there fetches nothing.
    let before = proxy.requests.load(std::sync::atomic::Ordering::Relaxed);
    let r = o
        .run(["--json", "pull", &via, dir.to_str().unwrap()])
        .ok()
        .json();
    assert!(r["layers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["action"] == "present"));
    let blob_gets = proxy.log.lock().unwrap()[before as usize..]
        .iter()
        .filter(|l| {
            l.contains("/blobs/") && !l.contains(&r["manifest_digest"].as_str().unwrap()[..12])
        })
        .count();
    assert!(
        blob_gets <= 1,
        "only the config is fetched again: {blob_gets}"
    );
}

#[test]
fn basic_auth_from_creds_or_auth_files_and_never_printed() {
    let secret = "s3cret-Pa55";
    let reg = Registry::start(Options {
        basic: Some(("obd".into(), secret.into())),
        ..Default::default()
    });
    let o = Obd::new();
    let image = format!("{}:v1", reg.image("fx/auth"));
    // Anonymous: one line saying how to authenticate.
    let e = o.run(["push", "L0.commit", &image]).clean_error().stderr();
    assert!(e.contains("401") && e.contains("--creds"), "{e}");
    let creds = format!("obd:{secret}");
    o.run(["push", "--creds", &creds, "L0.commit", &image]).ok();
    let s_l0 = ro_stacks().into_iter().find(|s| s.0 == "s_L0").unwrap().2;
    assert_eq!(flatten_sha(&o, &image, &["--creds", &creds]), s_l0);
    // A wrong password: refused, and the password never shows.
    let bad = "wr0ng-Pa55";
    let r = o
        .run(["--json", "map", "--creds", &format!("obd:{bad}"), &image])
        .clean_error();
    assert!(
        !r.stderr().contains(bad) && !r.stdout().contains(bad),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("obd"), "names the user: {}", r.stderr());
    // An auth file (podman's auth.json / docker's config.json form).
    use base64::Engine as _;
    let f = o.home.path().join("auth.json");
    let enc = base64::engine::general_purpose::STANDARD.encode(&creds);
    std::fs::write(
        &f,
        format!(r#"{{"auths":{{"{}":{{"auth":"{enc}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    let r = o
        .run_env(
            ["--json", "map", &image],
            &[("REGISTRY_AUTH_FILE", f.to_str().unwrap())],
        )
        .ok();
    assert!(!r.stdout().contains(secret));
    // docker's default place works too.
    std::fs::create_dir_all(o.home.path().join(".docker")).unwrap();
    std::fs::copy(&f, o.home.path().join(".docker/config.json")).unwrap();
    o.run(["map", &image]).ok();
}

#[test]
fn bearer_tokens_are_fetched_once_per_scope() {
    let reg = Registry::start(Options::default());
    let proxy = Proxy::start(reg.port);
    proxy.set(|f| f.bearer = Some(("tok-4f2a".into(), Some(("obd".into(), "pw".into())))));
    let o = Obd::new();
    let image = format!("docker://{}/fx/bearer:v1", proxy.url());
    let layers: Vec<String> = ["L0.lz4.tar", "L1.lz4-bs16.zfile", "L2.lz4-bs64.tar"]
        .map(String::from)
        .into();
    let mut a = vec!["push".to_string(), "--creds".into(), "obd:pw".into()];
    a.extend(layers.iter().cloned());
    a.push(image.clone());
    o.run(&a).ok();
    let pushed_tokens = proxy
        .token_requests
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        pushed_tokens <= 2,
        "{pushed_tokens} token requests for one push"
    );
    let sha = ro_stacks()
        .into_iter()
        .find(|s| s.0 == "s_plain")
        .unwrap()
        .2;
    let before = proxy
        .token_requests
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(flatten_sha(&o, &image, &["--creds", "obd:pw"]), sha);
    let reads = proxy
        .token_requests
        .load(std::sync::atomic::Ordering::Relaxed)
        - before;
    assert_eq!(
        reads, 1,
        "one token for the pull scope, reused by every range read"
    );
    // The token service refuses other credentials: one clean line.
    let e = o
        .run(["map", "--creds", "obd:nope", &image])
        .clean_error()
        .stderr();
    assert!(e.contains("token service") && !e.contains("nope"), "{e}");
}

#[test]
fn redirects_to_blob_storage_are_followed_and_reused() {
    let reg = Registry::start(Options {
        redirect: true,
        ..Default::default()
    });
    let proxy = Proxy::start(reg.port);
    let o = Obd::new();
    let layers: Vec<String> = ["L0.lz4.tar", "L1.lz4-bs16.zfile", "L2.lz4-bs64.tar"]
        .map(String::from)
        .into();
    push(&o, &layers, &format!("{}:v1", reg.image("fx/redir")));
    let sha = ro_stacks()
        .into_iter()
        .find(|s| s.0 == "s_plain")
        .unwrap()
        .2;
    let image = format!("docker://{}/fx/redir:v1", proxy.url());
    assert_eq!(flatten_sha(&o, &image, &[]), sha);
    let files = reg.files.as_ref().unwrap();
    let storage_reads = files.requests.load(std::sync::atomic::Ordering::Relaxed);
    let registry_blob_gets = proxy
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("GET") && l.contains("/blobs/"))
        .count() as u64;
    assert!(
        storage_reads >= 3,
        "blob bytes come from the storage: {storage_reads}"
    );
    // The registry is asked for a blob's storage URL about once (threads
    // that start together may each ask); every other read goes straight
    // to the storage.
    assert!(
        registry_blob_gets <= 6 && storage_reads > registry_blob_gets,
        "registry GETs {registry_blob_gets}, storage reads {storage_reads}"
    );
}

#[test]
fn registry_failures_are_retried_then_reported_in_one_line() {
    let mut reg = Registry::start(Options::default());
    let proxy = Proxy::start(reg.port);
    let o = Obd::new();
    let layers: Vec<String> = ["L0.lz4.tar", "L1.lz4-bs16.zfile", "L2.lz4-bs64.tar"]
        .map(String::from)
        .into();
    push(&o, &layers, &format!("{}:v1", reg.image("fx/faults")));
    let sha = ro_stacks()
        .into_iter()
        .find(|s| s.0 == "s_plain")
        .unwrap()
        .2;
    let image = format!("docker://{}/fx/faults:v1", proxy.url());
    // A few 503s: retried.
    proxy.set(|f| f.fail_next = 3);
    assert_eq!(flatten_sha(&o, &image, &[]), sha);
    // The registry down: one line naming it, in bounded time.
    let o2 = Obd::new();
    reg.kill();
    let t = Instant::now();
    let e = o2.run(["map", &image]).clean_error().stderr();
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
    assert!(e.contains(&proxy.url()) || e.contains("registry"), "{e}");
    // Back up: served again.
    reg.restart();
    assert_eq!(flatten_sha(&o2, &image, &[]), sha);
    // Killed and restarted in the middle of a read: the reads are retried.
    let o3 = Obd::new();
    proxy.set(|f| f.wan = Some((Duration::from_millis(30), 256 << 10)));
    std::thread::scope(|s| {
        let reg = &mut reg;
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            reg.kill();
            std::thread::sleep(Duration::from_millis(600));
            reg.restart();
        });
        assert_eq!(flatten_sha(&o3, &image, &[]), sha);
    });
}

#[test]
fn damaged_cache_chunks_are_fetched_again_never_served() {
    let reg = Registry::start(Options::default());
    let o = Obd::new();
    let layers: Vec<String> = ["L0.commit", "L1.lz4-bs16.zfile", "L2.zstd-bs32.zfile"]
        .map(String::from)
        .into();
    let r = push(&o, &layers, &format!("{}:v1", reg.image("fx/damage")));
    let sha = ro_stacks()
        .into_iter()
        .find(|s| s.0 == "s_plain")
        .unwrap()
        .2;
    let image = format!("{}:v1", reg.image("fx/damage"));
    assert_eq!(flatten_sha(&o, &image, &[]), sha);
    let listed = o.run(["--json", "cache", "list"]).ok().json();
    assert_eq!(listed["blobs"].as_array().unwrap().len(), 3);
    // Damage every cached blob in the middle of its first chunk.
    let blobs_dir = o.cache().join("blobs/sha256");
    let damage = || {
        for l in r["layers"].as_array().unwrap() {
            let hex = l["digest"].as_str().unwrap().trim_start_matches("sha256:");
            let p = blobs_dir.join(hex);
            let mut b = std::fs::read(&p).unwrap();
            let at = (b.len() / 2).min(100_000);
            b[at] ^= 0x55;
            std::fs::write(&p, b).unwrap();
        }
    };
    damage();
    // Read again: the damaged chunks fail their CRC and are fetched again.
    assert_eq!(flatten_sha(&o, &image, &[]), sha);
    // `cache verify` finds damage (exit 1) and drops it; reads repair.
    damage();
    let v = o.run(["--json", "cache", "verify"]).code_is(1).json();
    assert_eq!(v["ok"], false);
    assert!(v["damaged_chunks"].as_u64().unwrap() >= 3, "{v}");
    assert_eq!(flatten_sha(&o, &image, &[]), sha);
    let v = o.run(["--json", "cache", "verify"]).ok().json();
    assert!(
        v["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["verified"] == true),
        "{v}"
    );
    // Prune removes what nobody uses.
    let p = o.run(["--json", "cache", "prune"]).ok().json();
    assert_eq!(p["removed"].as_array().unwrap().len(), 3);
    assert!(o.run(["--json", "cache", "list"]).ok().json()["blobs"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn bytes_that_do_not_match_are_never_served() {
    let reg = Registry::start(Options::default());
    let proxy = Proxy::start(reg.port);
    let o = Obd::new();
    let layers: Vec<String> = ["L0.commit", "L1.lz4-bs16.zfile"].map(String::from).into();
    let r = push(&o, &layers, &format!("{}:v1", reg.image("fx/flip")));
    let image = format!("docker://{}/fx/flip:v1", proxy.url());
    let digest = |i: usize| r["layers"][i]["digest"].as_str().unwrap().to_string();
    // A flipped byte in a ZFile block: its CRC fails (twice), an error.
    proxy.set(|f| f.flip = Some((digest(1), 5000)));
    let d = tmpdir();
    let out = d.path().join("x.raw");
    let e = o
        .run(["flatten", "-q", "-o", out.to_str().unwrap(), &image])
        .clean_error()
        .stderr();
    assert!(e.contains("crc32c mismatch"), "{e}");
    assert!(!out.exists(), "no output from bad bytes");
    // A flipped byte in a plain LSMT layer (no block CRCs): the blob is
    // checked whole against its digest before any byte is used.
    let o2 = Obd::new();
    proxy.set(|f| f.flip = Some((digest(0), 5000)));
    let e = o2
        .run(["flatten", "-q", "-o", out.to_str().unwrap(), &image])
        .clean_error()
        .stderr();
    assert!(e.contains("do not match the digest"), "{e}");
    // And a pull refuses it.
    let e = o2
        .run(["pull", &image, d.path().join("p").to_str().unwrap()])
        .clean_error()
        .stderr();
    assert!(e.contains("do not match the digest"), "{e}");
    // A manifest that lies about a layer's size.
    let o3 = Obd::new();
    proxy.set(|f| {
        f.flip = None;
        f.rewrite_manifest = Some(|b| {
            let mut m: serde_json::Value = serde_json::from_slice(b).unwrap();
            let l = &mut m["layers"][1];
            let n = l["size"].as_u64().unwrap() + 512;
            l["size"] = n.into();
            l["annotations"]["containerd.io/snapshot/overlaybd/blob-size"] = n.to_string().into();
            serde_json::to_vec(&m).unwrap()
        })
    });
    let e = o3.run(["map", &image]).clean_error().stderr();
    assert!(e.contains("the manifest says"), "{e}");
}

#[test]
fn images_that_are_not_overlaybd_are_refused_with_advice() {
    let reg = Registry::start(Options::default());
    let o = Obd::new();
    let d = tmpdir();
    let layout = d.path().join("plain");
    let umoci = |args: &[&str]| {
        let out = Command::new("umoci").args(args).output().expect("umoci");
        assert!(
            out.status.success(),
            "umoci {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let img = format!("{}:t", layout.display());
    umoci(&["init", "--layout", layout.to_str().unwrap()]);
    umoci(&["new", "--image", &img]);
    let f = d.path().join("hello.txt");
    std::fs::write(&f, "hello").unwrap();
    umoci(&[
        "insert",
        "--rootless",
        "--image",
        &img,
        f.to_str().unwrap(),
        "/hello.txt",
    ]);
    let e = o.run(["map", &format!("oci:{img}")]).clean_error().stderr();
    assert!(e.contains("convert it first"), "{e}");
    let image = format!("{}:t", reg.image("plain/img"));
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{img}"),
        &image,
    ]);
    let e = o
        .run(["flatten", "-o", "/dev/null", &image])
        .clean_error()
        .stderr();
    assert!(e.contains("convert it first"), "{e}");
    let e = o
        .run(["map", &format!("{}:missing", reg.image("plain/img"))])
        .clean_error()
        .stderr();
    assert!(e.contains("404") || e.contains("MANIFEST_UNKNOWN"), "{e}");
}

/// A background `obd serve` of an image on a Unix socket, stopped when dropped.
struct Served<'a> {
    o: &'a Obd,
    run: PathBuf,
    socket: PathBuf,
}

impl<'a> Served<'a> {
    fn start(o: &'a Obd, dir: &std::path::Path, extra: &[&str], image: &str) -> Served<'a> {
        std::fs::create_dir_all(dir).unwrap();
        let run = dir.join("run");
        let socket = dir.join("s.sock");
        let mut a = vec!["serve", "-q", "--socket", socket.to_str().unwrap()];
        a.extend_from_slice(extra);
        a.push(image);
        o.run_env(&a, &[("OBD_RUN_DIR", run.to_str().unwrap())])
            .ok();
        Served { o, run, socket }
    }

    fn uri(&self) -> String {
        format!("nbd+unix:///?socket={}", self.socket.display())
    }
}

impl Drop for Served<'_> {
    fn drop(&mut self) {
        self.o.run_env(
            ["detach", "nbd0"],
            &[("OBD_RUN_DIR", self.run.to_str().unwrap())],
        );
    }
}

fn cached_bytes(o: &Obd) -> u64 {
    o.run(["--json", "cache", "list"]).ok().json()["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["cached_bytes"].as_u64().unwrap())
        .sum()
}

/// Reads through the kernel-less NBD path with qemu-io.
fn qemu_read(uri: &str, offset: u64, len: u64) {
    let out = Command::new("qemu-io")
        .args([
            "-r",
            "-f",
            "raw",
            "-c",
            &format!("read {offset} {len}"),
            uri,
        ])
        .output()
        .expect("qemu-io (apt install qemu-utils)");
    assert!(
        out.status.success(),
        "qemu-io: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_recorded_trace_prefetches_what_the_reads_wanted() {
    let reg = Registry::start(Options::default());
    let d = tmpdir();
    // An 8 MiB layer of incompressible data: 32 cache chunks, most of them
    // neither the layer's first nor its last.
    let raw = d.path().join("data.raw");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let bytes: Vec<u8> = (0..8 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    std::fs::write(&raw, &bytes).unwrap();
    let layer = d.path().join("layer.zfile");
    let o = Obd::new();
    o.run([
        "commit",
        "-q",
        "-z",
        "--raw",
        raw.to_str().unwrap(),
        layer.to_str().unwrap(),
    ])
    .ok();
    let image = format!("{}:v1", reg.image("fx/trace"));
    push(&o, &[layer.display().to_string()], &image);

    // Record: read 1 MiB in the middle through an NBD export.
    let trace = d.path().join("trace");
    {
        let s = Served::start(
            &o,
            &d.path().join("a"),
            &["--record-trace", trace.to_str().unwrap()],
            &image,
        );
        assert!(std::path::Path::new(&format!("{}.lock", trace.display())).exists());
        qemu_read(&s.uri(), 4 << 20, 1 << 20);
        // obd stats counts what came from the registry (at least the data
        // read, fetched in whole chunks).
        let mut fetched = 0;
        for _ in 0..30 {
            let v = o
                .run_env(
                    ["--json", "stats", "nbd0"],
                    &[("OBD_RUN_DIR", s.run.to_str().unwrap())],
                )
                .ok()
                .json();
            fetched = v["devices"][0]["stats"]["remote_bytes"]
                .as_u64()
                .unwrap_or(0);
            if fetched >= 1 << 20 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            fetched >= 1 << 20,
            "{fetched} bytes fetched for a 1 MiB read"
        );
    }
    // Stopping wrote the trace in overlaybd's format: reads of layer 0
    // covering what the disk's bytes 4 MiB..5 MiB map to.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::path::Path::new(&format!("{}.ok", trace.display())).exists() {
        assert!(Instant::now() < deadline, "no trace.ok after detach");
        std::thread::sleep(Duration::from_millis(50));
    }
    let recs = obd::serve::trace::decode(&std::fs::read(&trace).unwrap()).unwrap();
    assert!(!recs.is_empty());
    let map = o
        .run([
            "--json",
            "map",
            "--start",
            "4M",
            "--length",
            "1M",
            layer.to_str().unwrap(),
        ])
        .ok()
        .json();
    let want: u64 = map["extents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "data")
        .map(|e| e["length"].as_u64().unwrap())
        .sum();
    let first = map["extents"][0]["offset"].as_u64().unwrap();
    assert!(recs
        .iter()
        .all(|r| r.op == b'R' && r.layer == 0 && r.count <= 1 << 20));
    assert_eq!(recs.iter().map(|r| r.count).sum::<u64>(), want);
    assert!(recs.iter().any(|r| r.offset == first), "{recs:?} vs {map}");

    // Replay, each with an empty cache: with the trace, the middle of the
    // layer is fetched without a single client read.
    let plain = Obd::new();
    {
        let _s = Served::start(&plain, &d.path().join("b"), &[], &image);
        std::thread::sleep(Duration::from_millis(500));
    }
    let without = cached_bytes(&plain);
    let warm = Obd::new();
    let with = {
        let _s = Served::start(
            &warm,
            &d.path().join("c"),
            &["--prefetch", trace.to_str().unwrap()],
            &image,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let n = cached_bytes(&warm);
            if n >= without + (1 << 20) || Instant::now() > deadline {
                break n;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert!(
        with >= without + (1 << 20),
        "cached {with} bytes with the trace, {without} without"
    );
    // A damaged trace is refused in one line.
    let bad = d.path().join("bad");
    let mut b = std::fs::read(&trace).unwrap();
    let last = b.len() - 1;
    b[last] ^= 1;
    std::fs::write(&bad, b).unwrap();
    let e = o
        .run_env(
            [
                "serve",
                "--socket",
                d.path().join("x.sock").to_str().unwrap(),
                "--prefetch",
                bad.to_str().unwrap(),
                &image,
            ],
            &[("OBD_RUN_DIR", d.path().join("d").to_str().unwrap())],
        )
        .clean_error()
        .stderr();
    assert!(e.contains("checksum"), "{e}");
}

#[test]
fn verify_checks_an_image_layer_by_layer_against_its_manifest() {
    let reg = Registry::start(Options::default());
    let o = Obd::new();
    let d = tmpdir();
    let layers: Vec<String> = ["L0.lz4.tar", "L1.lz4-bs16.zfile", "L2.lz4-bs64.tar"]
        .map(String::from)
        .into();
    let image = format!("{}:v1", reg.image("fx/verify"));
    let r = push(&o, &layers, &image);
    let v = o.run(["--json", "verify", &image]).ok().json();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        v["stack"]["layers"].as_array().map(Vec::len),
        Some(3),
        "{v}"
    );
    assert_eq!(v["stack"]["problems"], serde_json::json!([]), "{v}");
    for (f, l) in v["files"]
        .as_array()
        .unwrap()
        .iter()
        .zip(r["layers"].as_array().unwrap())
    {
        assert_eq!(f["expected_sha256"], l["digest"]);
        assert_eq!(f["sha256"], l["digest"]);
    }
    // A layout whose blob was damaged after it was written: exit 1, and
    // the damaged layer named with its digest mismatch.
    let layout = d.path().join("img");
    push(&o, &layers, &format!("oci:{}:v1", layout.display()));
    o.run(["verify", &format!("oci:{}:v1", layout.display())])
        .ok();
    let hex = r["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let p = layout.join("blobs/sha256").join(hex);
    let mut b = std::fs::read(&p).unwrap();
    b[3000] ^= 0x10;
    std::fs::write(&p, b).unwrap();
    let v = o
        .run(["--json", "verify", &format!("oci:{}:v1", layout.display())])
        .code_is(1)
        .json();
    let bad: Vec<&serde_json::Value> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] != "ok")
        .collect();
    assert_eq!(bad.len(), 1, "{v}");
    assert!(bad[0]["path"].as_str().unwrap().ends_with(hex));
    assert!(
        bad[0]["problems"].to_string().contains("file.digest"),
        "{}",
        bad[0]
    );
}

#[test]
fn blobs_the_registry_has_elsewhere_are_mounted_not_uploaded() {
    let reg = Registry::start(Options::default());
    let proxy = Proxy::start(reg.port);
    let o = Obd::new();
    let layers: Vec<String> = ["L0.lz4.tar", "L1.lz4-bs16.zfile"].map(String::from).into();
    let a = format!("docker://{}/team-a/app:v1", proxy.url());
    push(&o, &layers, &a);
    // Reading the image tells the cache where its blobs live.
    let d = tmpdir();
    o.run(["pull", "-q", &a, d.path().join("p").to_str().unwrap()])
        .ok();
    let before = proxy.log.lock().unwrap().len();
    let r = push(
        &o,
        &layers,
        &format!("docker://{}/team-b/app:v1", proxy.url()),
    );
    for l in r["layers"].as_array().unwrap() {
        assert_eq!(l["action"], "mounted", "{r}");
    }
    assert_eq!(r["transferred_bytes"], 0);
    let log = proxy.log.lock().unwrap()[before..].to_vec();
    assert!(
        log.iter()
            .any(|l| l.contains("mount=sha256:") && l.contains("from=team-a")),
        "{log:?}"
    );
    assert!(!log.iter().any(|l| l.starts_with("PATCH")), "{log:?}");
    // skopeo reads the mounted image.
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/team-b/app:v1", reg.host()),
    ]);
}
