//! Advisory locks on layer files, so that two processes never write one
//! writable layer at once (their appends would overwrite each other's data).
//!
//! Writers take an exclusive `flock` on the data and the index file; readers
//! that need a stable view (commit) take a shared one. The lock belongs to
//! the open file description, so it lasts as long as the file is open in
//! this process and is released by the kernel when the process dies — a
//! killed server never leaves a stale lock behind.

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};

/// How a file is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Nobody else may write or read for a stable view (a writer).
    Exclusive,
    /// Nobody may write meanwhile (a reader that needs a stable view).
    Shared,
}

/// Locks `file` (which is `path`) without waiting.
///
/// # Errors
/// [`Error::Invalid`] naming the holder's pid where the kernel shows it,
/// when another process holds a conflicting lock; other `flock` errors.
pub fn lock(file: &File, path: &Path, mode: LockMode) -> Result<()> {
    use rustix::fs::{flock, FlockOperation};
    let op = match mode {
        LockMode::Exclusive => FlockOperation::NonBlockingLockExclusive,
        LockMode::Shared => FlockOperation::NonBlockingLockShared,
    };
    match flock(file, op) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let holder = holder(file)
                .map(|pid| format!(" by process {pid}"))
                .unwrap_or_default();
            Err(Error::invalid(
                "lock",
                format!(
                    "{}: the writable layer is in use{holder} ({}); one process at a time \
                     may write a writable layer",
                    path.display(),
                    match mode {
                        LockMode::Exclusive => "attached or being committed",
                        LockMode::Shared => "attached writable",
                    }
                ),
            ))
        }
        Err(e) => Err(Error::file(path, "lock", e.into())),
    }
}

/// The pid `/proc/locks` gives for a `flock` on the file, if any.
fn holder(file: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let m = file.metadata().ok()?;
    let dev = m.dev();
    // /proc/locks names the file as MAJOR:MINOR:INODE, the numbers in hex.
    let (major, minor) = (
        ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff),
        ((dev >> 12) & 0xffff_ff00) | (dev & 0xff),
    );
    let want = format!("{major:02x}:{minor:02x}:{}", m.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 12345 08:01:1234567 0 EOF"
        let i = f.iter().position(|w| *w == "FLOCK")?;
        let (pid, id) = (f.get(i + 3)?, f.get(i + 4)?);
        (*id == want).then(|| pid.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_exclusive_lock_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("u.data");
        std::fs::write(&p, b"x").unwrap();
        let a = File::open(&p).unwrap();
        lock(&a, &p, LockMode::Exclusive).unwrap();
        // Another open file description: as another process would have.
        let b = File::open(&p).unwrap();
        let e = lock(&b, &p, LockMode::Shared).unwrap_err().to_string();
        assert!(e.contains("in use"), "{e}");
        assert!(
            e.contains(&format!("process {}", std::process::id())),
            "{e}"
        );
        drop(a);
        lock(&b, &p, LockMode::Shared).unwrap();
        let c = File::open(&p).unwrap();
        lock(&c, &p, LockMode::Shared).unwrap();
        assert!(lock(&File::open(&p).unwrap(), &p, LockMode::Exclusive).is_err());
    }
}
