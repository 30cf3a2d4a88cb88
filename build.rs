//! Build script: enables the SIMD lookup kernels (`src/stack/simd.rs`) on
//! compilers that have the AVX-512 intrinsics and target features (stable
//! from Rust 1.89). Older compilers build the portable kernel only, and so
//! does any build with `OBD_NO_SIMD` set.

use std::process::Command;

fn main() {
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
