//! The README's examples run as written: every ```sh block (but the set-up,
//! which is what runs this test) and the CI snippet's `run:` steps, each in
//! a fresh directory holding the fixtures under the names the README uses.
//! Examples that need a ublk device (attach, mount) are ```text blocks; the
//! VM tests run those commands.

use std::path::Path;
use std::process::Command;

use crate::util::*;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The fenced blocks of `text` with the info string `lang`.
fn blocks(text: &str, lang: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        match &mut cur {
            None if t == format!("```{lang}") => cur = Some((n + 1, String::new())),
            Some(_) if t == "```" => out.push(cur.take().unwrap()),
            Some((_, b)) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    out
}

/// A working directory with the fixtures the examples name, and `layers/`.
fn workdir() -> tempfile::TempDir {
    let d = tmpdir();
    for f in [
        "L0.commit",
        "L1.commit",
        "L2.commit",
        "L1.data",
        "L1.index",
        "L2.data",
        "L2.index",
        "L1.sealed",
        "L0.lz4.tar",
        "base.raw",
    ] {
        std::fs::copy(fx(f), d.path().join(f)).unwrap();
    }
    std::fs::create_dir(d.path().join("layers")).unwrap();
    for f in ["L0.commit", "L1.lz4-bs16.zfile", "L2.lz4-bs64.tar"] {
        std::fs::copy(fx(f), d.path().join("layers").join(f)).unwrap();
    }
    d
}

fn run_script(dir: &Path, script: &str, env: &[(&str, &str)]) -> std::process::Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_obd")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("bash");
    c.arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("PATH", path);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn readme_shell_examples_run_as_written() {
    let text = readme();
    let sh = blocks(&text, "sh");
    assert!(sh.len() >= 5, "README has {} sh blocks", sh.len());
    for (line, script) in sh {
        if script.contains("cargo ") {
            continue; // the set-up: what runs this very test
        }
        let d = workdir();
        let out = run_script(d.path(), &script, &[]);
        assert!(
            out.status.success(),
            "README.md line {line}: the example failed ({:?}):\n{script}\n--- stderr ---\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn readme_ci_snippet_runs_as_written() {
    let text = readme();
    let yaml = blocks(&text, "yaml");
    assert_eq!(yaml.len(), 1, "one CI snippet");
    // The `run:` steps: `run: |` blocks and one-line `run: ...`.
    let mut steps = Vec::new();
    let mut lines = yaml[0].1.lines().peekable();
    while let Some(l) = lines.next() {
        let Some(rest) = l.trim_start().strip_prefix("run:") else {
            continue;
        };
        if rest.trim() == "|" {
            let indent = lines.peek().map_or(0, |n| n.len() - n.trim_start().len());
            let mut s = String::new();
            while let Some(n) = lines.peek() {
                if n.trim().is_empty() || n.len() - n.trim_start().len() >= indent {
                    s.push_str(n.get(indent..).unwrap_or(""));
                    s.push('\n');
                    lines.next();
                } else {
                    break;
                }
            }
            steps.push(s);
        } else {
            steps.push(rest.trim().to_string());
        }
    }
    assert_eq!(steps.len(), 2, "{steps:?}");
    let d = workdir();
    std::fs::create_dir_all(d.path().join("out")).unwrap();
    std::fs::rename(d.path().join("layers"), d.path().join("out/layers")).unwrap();
    let blob = std::fs::read(fx("L0.lz4.tar")).unwrap();
    let digest = sha256(&blob);
    std::fs::create_dir(d.path().join("cache")).unwrap();
    std::fs::write(d.path().join("cache").join(&digest), &blob).unwrap();
    for s in &steps {
        let out = run_script(d.path(), s, &[("LAYER_DIGEST", &digest)]);
        assert!(
            out.status.success(),
            "CI step failed:\n{s}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The gate fails when it should: a damaged layer, and an empty output.
    let mut bad = std::fs::read(d.path().join("out/layers/L0.commit")).unwrap();
    bad[1] ^= 0x40; // the header magic
    std::fs::write(d.path().join("out/layers/L0.commit"), bad).unwrap();
    let first = run_script(d.path(), &steps[0], &[]);
    assert!(
        !first.status.success(),
        "a damaged layer passed the CI gate"
    );
    let _ = std::fs::remove_dir_all(d.path().join("out/layers"));
    std::fs::create_dir(d.path().join("out/layers")).unwrap();
    let first = run_script(d.path(), &steps[0], &[]);
    assert!(
        !first.status.success(),
        "an empty output passed the CI gate"
    );
}
