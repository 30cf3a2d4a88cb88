//! `obd attach`/`detach`/`list` on the host, where they must fail cleanly or
//! report nothing: the real devices are exercised in the VM (`vm.rs`).

use std::path::Path;

use crate::util::*;

fn obd_run_dir<I, S>(dir: &Path, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_obd"));
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    c.args(&args)
        .current_dir(fixtures())
        .env("OBD_RUN_DIR", dir);
    let out = c.output().expect("running obd");
    Run {
        cmd: format!("OBD_RUN_DIR={} obd {args:?}", dir.display()),
        out,
    }
}

#[test]
fn attach_without_the_ublk_driver_says_what_to_do() {
    if Path::new("/dev/ublk-control").exists() {
        // This host has the driver; the VM test checks the message (before
        // it loads ublk_drv).
        eprintln!("skipped: /dev/ublk-control exists here");
        return;
    }
    let dir = tmpdir();
    let r = obd_run_dir(dir.path(), ["attach", "L0.commit"]).clean_error();
    assert!(r.stderr().contains("modprobe ublk_drv"), "{}", r.stderr());
    assert!(r.stderr().contains("6.0"), "{}", r.stderr());
}

#[test]
fn list_with_nothing_attached() {
    let dir = tmpdir();
    let r = obd_run_dir(dir.path(), ["list", "--json"]).ok();
    // Devices of other ublk servers on this host would show as foreign.
    for d in r.json()["devices"].as_array().unwrap() {
        assert_eq!(d["state"], "foreign", "{d}");
    }
}

#[test]
fn detach_errors_are_one_line() {
    let dir = tmpdir();
    obd_run_dir(dir.path(), ["detach", "/dev/sda"]).clean_error();
    let r = obd_run_dir(dir.path(), ["detach", "4093"]).clean_error();
    assert!(r.stderr().contains("no ublk device 4093"), "{}", r.stderr());
}

#[test]
fn a_refused_image_config_is_reported_in_its_result_file() {
    let dir = tmpdir();
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        r#"{"lowers":[{"digest":"sha256:00"}],"resultFile":"result"}"#,
    )
    .unwrap();
    let r = obd_run_dir(dir.path(), ["attach", "--config", cfg.to_str().unwrap()]).clean_error();
    let result = std::fs::read_to_string(dir.path().join("result")).unwrap();
    assert!(result.starts_with("failed:"), "{result}");
    assert!(r.stderr().contains("no repoBlobUrl"), "{}", r.stderr());
}

#[test]
fn attach_options_are_checked_before_anything_happens() {
    let dir = tmpdir();
    for args in [
        vec!["attach"],
        vec!["attach", "--queues", "0", "L0.commit"],
        vec!["attach", "--depth", "5000", "L0.commit"],
        vec!["attach", "--config", "c.json", "L0.commit"],
    ] {
        let r = obd_run_dir(dir.path(), &args);
        assert_eq!(r.code(), 2, "{args:?}: {}", r.stderr());
    }
}

#[test]
fn doctor_says_why_attach_cannot_work_on_this_host() {
    let dir = tmpdir();
    let r = obd_run_dir(dir.path(), ["--json", "doctor"]);
    let v = r.json();
    let checks = v["checks"].as_array().expect("checks");
    let names: Vec<&str> = checks
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for want in [
        "kernel",
        "ublk_drv",
        "control",
        "io_uring",
        "devices",
        "mount namespace",
    ] {
        assert!(names.contains(&want), "{want} missing: {names:?}");
    }
    for c in checks {
        assert!(
            ["ok", "warn", "fail"].contains(&c["status"].as_str().unwrap()),
            "{c}"
        );
    }
    let failed = checks.iter().any(|c| c["status"] == "fail");
    assert_eq!(v["ok"], !failed);
    assert_eq!(r.code(), if failed { 1 } else { 0 }, "{v}");
    if Path::new("/dev/ublk-control").exists() {
        eprintln!("this host has the driver; the VM test checks the failures");
        return;
    }
    let control = checks.iter().find(|c| c["check"] == "control").unwrap();
    assert_eq!(control["status"], "fail", "{control}");
    assert!(control["detail"]
        .as_str()
        .unwrap()
        .contains("/dev/ublk-control"));
    // The table says the same to a person, one line per check.
    let t = obd_run_dir(dir.path(), ["--format", "plain", "doctor"]);
    assert_eq!(t.code(), 1);
    assert!(
        t.stdout()
            .lines()
            .any(|l| l.starts_with("control") && l.contains("fail")),
        "{}",
        t.stdout()
    );
}
