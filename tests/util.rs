//! Test harness: run the obd binary, show the whole command on failure.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The fixtures directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/overlaybd")
}

/// A fixture's path.
pub fn fx(name: &str) -> PathBuf {
    fixtures().join(name)
}

/// A fixture's path as a string.
pub fn fxs(name: &str) -> String {
    fx(name).display().to_string()
}

/// The parsed MANIFEST.json.
pub fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fx("MANIFEST.json")).expect("MANIFEST.json");
    serde_json::from_str(&text).expect("MANIFEST.json parses")
}

/// A finished run of obd.
pub struct Run {
    pub cmd: String,
    pub out: Output,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    fn context(&self) -> String {
        format!(
            "\ncommand: {}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd,
            self.out.status.code(),
            truncate(&self.stdout()),
            truncate(&self.stderr())
        )
    }
    /// Asserts exit 0 and returns self.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code(), 0, "expected success{}", self.context());
        self
    }
    /// Asserts the exit code.
    #[track_caller]
    pub fn code_is(self, code: i32) -> Self {
        assert_eq!(self.code(), code, "unexpected exit code{}", self.context());
        self
    }
    /// Asserts a clean one-line error (exit 2, no panic, no backtrace).
    #[track_caller]
    pub fn clean_error(self) -> Self {
        let err = self.stderr();
        assert_eq!(self.code(), 2, "expected exit 2{}", self.context());
        assert!(
            err.starts_with("obd: ") && err.trim_end().lines().count() == 1,
            "expected one 'obd: ' line on stderr{}",
            self.context()
        );
        assert!(
            !err.contains("panicked") && !err.contains("internal error"),
            "panic{}",
            self.context()
        );
        self
    }
    /// Parses stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON: {e}{}", self.context()))
    }
}

fn truncate(s: &str) -> String {
    if s.len() > 4000 {
        format!("{}... ({} bytes)", &s[..4000], s.len())
    } else {
        s.to_string()
    }
}

/// Runs obd with `args` in `dir` (or the fixtures directory).
pub fn obd_in<I, S>(dir: &Path, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut c = Command::new(env!("CARGO_BIN_EXE_obd"));
    c.args(&args).current_dir(dir);
    let out = c.output().expect("running obd");
    let cmd = format!(
        "(cd {} && obd {})",
        dir.display(),
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    Run { cmd, out }
}

/// Runs obd with `args` in the fixtures directory.
pub fn obd<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    obd_in(&fixtures(), args)
}

/// sha256 of a file, lowercase hex.
pub fn sha256_file(p: &Path) -> String {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex(&h.finalize())
}

/// sha256 of bytes.
pub fn sha256(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(b))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A fresh temporary directory.
pub fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}
