//! Build script: enables the SIMD lookup kernels (`src/stack/simd.rs`) on
//! compilers that have the AVX-512 intrinsics and target features (stable
//! from Rust 1.89). Older compilers build the portable kernel only, and so
//! does any build with `OBD_NO_SIMD` set. It also records, for
//! `obd --version`, the git commit (when built from a git checkout) and the
//! build date (`SOURCE_DATE_EPOCH` when set, for reproducible builds).

use std::process::Command;

fn main() {
    build_info();
    println!("cargo::rustc-check-cfg=cfg(obd_simd)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=OBD_NO_SIMD");
    if std::env::var_os("OBD_NO_SIMD").is_some() {
        return;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let minor = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| {
            // "rustc 1.95.0 (59807616e 2026-04-14)"
            let ver = v.split_whitespace().nth(1)?.to_string();
            let mut parts = ver.split('.');
            let major: u32 = parts.next()?.parse().ok()?;
            let minor: u32 = parts.next()?.parse().ok()?;
            (major == 1).then_some(minor)
        });
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch == "x86_64" && minor.is_some_and(|m| m >= 89) {
        println!("cargo::rustc-cfg=obd_simd");
    }
}

/// `OBD_GIT_COMMIT` and `OBD_BUILD_DATE` for `obd --version`.
fn build_info() {
    println!("cargo::rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo::rerun-if-changed={dir}/HEAD");
        println!("cargo::rerun-if-changed={dir}/index");
    }
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    println!(
        "cargo::rustc-env=OBD_GIT_COMMIT={commit}{}",
        if dirty { "-modified" } else { "" }
    );
    println!("cargo::rustc-env=OBD_BUILD_DATE={}", civil_date(secs));
}

/// `YYYY-MM-DD` (UTC) of a Unix time.
fn civil_date(secs: i64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
