//! The command line: conventions, completions and man pages.

use std::path::Path;

use crate::util::*;

#[test]
fn usage_errors_exit_2() {
    let r = obd(["inspect"]);
    assert_eq!(r.code(), 2);
    let r = obd(["no-such-command"]);
    assert_eq!(r.code(), 2);
    obd(["--help"]).ok();
    obd(["--version"]).ok();
}

#[test]
fn missing_file_is_one_line() {
    let r = obd(["inspect", "does-not-exist.commit"]).clean_error();
    assert!(
        r.stderr().contains("does-not-exist.commit"),
        "{}",
        r.stderr()
    );
}

#[test]
fn json_is_one_document() {
    for args in [
        vec!["inspect", "--json", "L0.commit", "L1.zstd.tar"],
        vec!["inspect", "--json", "--stack", "L0.commit", "L1.commit"],
        vec!["map", "--json", "L0.commit"],
    ] {
        let r = obd(&args).ok();
        let _ = r.json();
    }
}

#[test]
fn flatten_refuses_to_overwrite() {
    let dir = tmpdir();
    let out = dir.path().join("x.raw");
    std::fs::write(&out, b"keep me").unwrap();
    obd(["flatten", "-q", "-o", out.to_str().unwrap(), "L0.commit"]).clean_error();
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    obd([
        "flatten",
        "-q",
        "-f",
        "-o",
        out.to_str().unwrap(),
        "L0.commit",
    ])
    .ok();
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 1 << 30);
    // Nothing left behind but the output.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// Generated files: the completions and man pages in the repository must be
/// what the current CLI generates. `OBD_BLESS=1` rewrites them.
#[test]
fn completions_and_man_pages_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut want: Vec<(std::path::PathBuf, Vec<u8>)> = Vec::new();
    use clap_complete::Shell;
    for (shell, file) in [
        (Shell::Bash, "obd.bash"),
        (Shell::Zsh, "_obd"),
        (Shell::Fish, "obd.fish"),
    ] {
        let script = obd::cmd::docs::completion_script(shell);
        // `obd completions` prints the same.
        let name = shell.to_string();
        assert_eq!(obd(["completions", name.as_str()]).ok().out.stdout, script);
        want.push((root.join("completions").join(file), script));
    }
    for (file, page) in obd::cmd::docs::man_pages().unwrap() {
        want.push((root.join("man").join(file), page));
    }
    if std::env::var_os("OBD_BLESS").is_some() {
        for d in ["completions", "man"] {
            let _ = std::fs::remove_dir_all(root.join(d));
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for (p, b) in &want {
            std::fs::write(p, b).unwrap();
        }
        return;
    }
    for (p, b) in &want {
        let have = std::fs::read(p).unwrap_or_default();
        assert!(
            &have == b,
            "{} is out of date with the CLI: rerun with OBD_BLESS=1 cargo test completions",
            p.display()
        );
    }
    for d in ["completions", "man"] {
        let n = std::fs::read_dir(root.join(d)).unwrap().count();
        let expected = want
            .iter()
            .filter(|(p, _)| p.parent().unwrap().ends_with(d))
            .count();
        assert_eq!(n, expected, "{d}/ holds files the CLI no longer generates");
    }
}

/// Every help page fits 100 columns, as a terminal of that width shows it.
#[test]
fn help_fits_100_columns() {
    let mut pages = vec![vec!["--help".to_string()]];
    for (name, _) in obd::cmd::docs::man_pages().unwrap() {
        let words: Vec<String> = name
            .trim_end_matches(".1")
            .split('-')
            .skip(1)
            .map(String::from)
            .collect();
        if !words.is_empty() {
            let mut args = words;
            args.push("--help".into());
            pages.push(args);
        }
    }
    for args in pages {
        let r = obd(&args).ok();
        for line in r.stdout().lines() {
            assert!(
                line.chars().count() <= 100,
                "obd {}: a line of {} columns:\n{line}",
                args.join(" "),
                line.chars().count()
            );
        }
    }
}

#[test]
fn man_pages_are_written_for_people() {
    let pages = obd::cmd::docs::man_pages().unwrap();
    let page = |name: &str| {
        String::from_utf8(pages.iter().find(|p| p.0 == name).unwrap().1.clone()).unwrap()
    };
    let v = page("obd-verify.1");
    // The command as people type it, the global options, exit status, examples.
    assert!(v.contains("\\fBobd verify\\fR"), "{v}");
    assert!(v.contains("\\-\\-json") && v.contains("\\-\\-quiet"), "{v}");
    assert!(
        v.contains(".SH EXIT STATUS") && v.contains(".SH EXAMPLES"),
        "{v}"
    );
    // The forms of commit stay a block.
    let c = page("obd-commit.1");
    let forms = c.split(".SH FORMS").nth(1).unwrap();
    assert!(forms.starts_with("\n.nf\n"), "{c}");
    // `obd man --dir` installs them; `obd man verify` prints one.
    let d = tmpdir();
    obd(["man", "-q", "--dir", &d.path().display().to_string()]).ok();
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), pages.len());
    assert_eq!(obd(["man", "verify"]).ok().stdout(), v);
    obd(["man", "nonsense"]).clean_error();
}

#[test]
fn completions_offer_the_values_obd_accepts() {
    let bash = obd(["completions", "bash"]).ok().stdout();
    assert!(bash.contains("lz4 zstd"), "--algorithm values");
    assert!(bash.contains("4K 8K 16K 32K 64K"), "--block-size values");
    assert!(bash.contains("table plain json"), "--format values");
}

/// docs/json.md lists the top-level keys of every command's JSON document;
/// the commands print exactly those, in that order.
#[test]
fn json_documents_have_the_documented_keys() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json.md"))
        .unwrap();
    let documented = |cmd: &str| -> Vec<String> {
        let line = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{cmd}` |")))
            .unwrap_or_else(|| panic!("docs/json.md has no row for {cmd}"));
        line.rsplit('|')
            .nth(1)
            .unwrap()
            .split(',')
            .map(|k| k.trim().trim_matches('`').to_string())
            .collect()
    };
    let d = tmpdir();
    let p = |n: &str| d.path().join(n).display().to_string();
    let runs: Vec<(&str, Vec<String>)> = vec![
        (
            "obd inspect FILE...",
            vec!["inspect".into(), fxs("L0.commit")],
        ),
        (
            "obd inspect --stack LAYER...",
            vec!["inspect".into(), "--stack".into(), fxs("L0.commit")],
        ),
        ("obd map LAYER...", vec!["map".into(), fxs("L0.commit")]),
        (
            "obd flatten -o OUT LAYER...",
            vec!["flatten".into(), "-o".into(), p("f"), fxs("L0.commit")],
        ),
        (
            "obd create DATA INDEX",
            vec![
                "create".into(),
                "--size".into(),
                "1M".into(),
                p("d"),
                p("i"),
            ],
        ),
        (
            "obd commit DATA INDEX OUT",
            vec!["commit".into(), p("d"), p("i"), p("c")],
        ),
        (
            "obd commit --seal DATA INDEX",
            vec!["commit".into(), "--seal".into(), p("d"), p("i")],
        ),
        (
            "obd merge -o OUT LAYER...",
            vec!["merge".into(), "-o".into(), p("m"), fxs("L0.commit")],
        ),
        (
            "obd zfile compress IN OUT",
            vec!["zfile".into(), "compress".into(), fxs("base.raw"), p("z")],
        ),
        (
            "obd zfile decompress IN OUT",
            vec!["zfile".into(), "decompress".into(), p("z"), p("zz")],
        ),
        (
            "obd verify PATH...",
            vec!["verify".into(), fxs("L0.commit")],
        ),
        ("obd list", vec!["list".into()]),
        ("obd doctor", vec!["doctor".into()]),
        ("obd stats", vec!["stats".into()]),
        (
            "obd push LAYER... DEST",
            vec![
                "push".into(),
                fxs("L0.commit"),
                format!("oci:{}:v1", p("layout")),
            ],
        ),
        (
            "obd cache list",
            vec![
                "cache".into(),
                "list".into(),
                "--cache-dir".into(),
                p("cache"),
            ],
        ),
        (
            "obd cache verify",
            vec![
                "cache".into(),
                "verify".into(),
                "--cache-dir".into(),
                p("cache"),
            ],
        ),
        (
            "obd cache prune",
            vec![
                "cache".into(),
                "prune".into(),
                "--cache-dir".into(),
                p("cache"),
            ],
        ),
    ];
    for (row, args) in runs {
        let mut a = vec!["--json".to_string()];
        a.extend(args);
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_obd"));
        c.args(&a).env("OBD_RUN_DIR", d.path().join("run"));
        let out = c.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{row}: not JSON ({e}): {text}"));
        let keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, documented(row), "{row}");
        // Keys in the order documented: alphabetical, as printed.
        let first = text.lines().nth(1).unwrap_or_default();
        assert!(
            first.contains(&format!("\"{}\"", keys[0])),
            "{row}: {first}"
        );
    }
}
