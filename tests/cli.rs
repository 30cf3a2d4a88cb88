//! The command line: conventions, completions and man pages.

use std::path::Path;

use clap::CommandFactory;
use obd::cmd::Cli;

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
    for (shell, file) in [
        (clap_complete::Shell::Bash, "obd.bash"),
        (clap_complete::Shell::Zsh, "_obd"),
        (clap_complete::Shell::Fish, "obd.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "obd", &mut buf);
        want.push((root.join("completions").join(file), buf));
    }
    let cmd = Cli::command();
    let mut pages = vec![("obd.1".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands() {
        pages.push((format!("obd-{}.1", sub.get_name()), sub.clone()));
        for subsub in sub.get_subcommands() {
            pages.push((
                format!("obd-{}-{}.1", sub.get_name(), subsub.get_name()),
                subsub.clone(),
            ));
        }
    }
    for (file, c) in pages {
        let name = file.trim_end_matches(".1").to_string();
        let c = c.name(&*Box::leak(name.into_boxed_str()));
        let mut buf = Vec::new();
        clap_mangen::Man::new(c).render(&mut buf).unwrap();
        want.push((root.join("man").join(file), buf));
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
