//! Crash-safe output files: write to a temporary file in the destination
//! directory, fsync, then rename over the destination.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Temporary files of outputs not yet committed, so that a signal handler
/// can remove them before the process dies ([`remove_pending`]).
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PENDING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes the temporary files of every output not yet committed. For a
/// signal handler that is about to end the process (Ctrl-C, SIGTERM):
/// without it an interrupted writer leaves its hidden temporary file behind.
pub fn remove_pending() {
    for p in pending().drain(..) {
        let _ = std::fs::remove_file(p);
    }
}

/// An output file that appears at its destination only when committed.
/// Dropping it without [`AtomicFile::commit`] removes the temporary file.
#[must_use = "an AtomicFile must be committed or its output is discarded"]
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
    force: bool,
    // Dropped after `tmp`: the file is gone before it leaves the list.
    _pending: Pending,
}

/// Keeps a temporary file on the [`PENDING`] list while it lives.
struct Pending(PathBuf);

impl Pending {
    fn new(p: &Path) -> Self {
        pending().push(p.to_path_buf());
        Pending(p.to_path_buf())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        pending().retain(|p| p != &self.0);
    }
}

impl AtomicFile {
    /// Creates a temporary file next to `dest`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `dest` exists and `force` is false;
    /// [`Error::Io`] when the directory is not writable.
    pub fn create(dest: &Path, force: bool) -> Result<Self> {
        if !force && dest.symlink_metadata().is_ok() {
            return Err(Error::invalid(
                "output",
                format!(
                    "{} already exists (use --force to replace it)",
                    dest.display()
                ),
            ));
        }
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.obd-tmp-"))
            .tempfile_in(&dir)
            .map_err(|e| Error::io("output directory", 0, e))?;
        Ok(AtomicFile {
            _pending: Pending::new(tmp.path()),
            tmp,
            dest: dest.to_path_buf(),
            force,
        })
    }

    /// The temporary file, to write into.
    pub fn file(&self) -> &File {
        self.tmp.as_file()
    }

    /// Mutable access to the temporary file.
    pub fn file_mut(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// Where the file will appear.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// fsyncs the data, renames it to the destination, fsyncs the directory.
    ///
    /// # Errors
    /// [`Error::Io`]; [`Error::Invalid`] when the destination appeared
    /// meanwhile and `force` is false.
    pub fn commit(self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let f = self.tmp.as_file();
        // tempfile creates 0600; give the output the usual 0644 minus umask.
        let mode = 0o666 & !current_umask();
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("output", 0, e))?;
        f.sync_all().map_err(|e| Error::io("output", 0, e))?;
        let dest = self.dest.clone();
        if self.force {
            self.tmp
                .persist(&dest)
                .map_err(|e| Error::io("output rename", 0, e.error))?;
        } else {
            self.tmp.persist_noclobber(&dest).map_err(|e| {
                if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::invalid(
                        "output",
                        format!(
                            "{} already exists (use --force to replace it)",
                            dest.display()
                        ),
                    )
                } else {
                    Error::io("output rename", 0, e.error)
                }
            })?;
        }
        if let Some(dir) = dest.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

fn current_umask() -> u32 {
    // umask can only be read by setting it; put the old value straight back.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    rustix::process::umask(old);
    old.bits()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn pending_list_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = AtomicFile::create(&dir.path().join("a"), false).unwrap();
        let tmp = a.tmp.path().to_path_buf();
        assert!(pending().contains(&tmp));
        drop(a);
        assert!(!pending().contains(&tmp) && !tmp.exists());
        // (`remove_pending` itself is exercised by the CLI test that
        // interrupts a writer: calling it here would race other tests.)
        let c = AtomicFile::create(&dir.path().join("c"), false).unwrap();
        let tmp = c.tmp.path().to_path_buf();
        c.commit().unwrap();
        assert!(!pending().contains(&tmp));
    }

    #[test]
    fn commit_and_noclobber() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let mut a = AtomicFile::create(&dest, false).unwrap();
        a.file_mut().write_all(b"hello").unwrap();
        assert!(!dest.exists());
        a.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
        assert!(AtomicFile::create(&dest, false).is_err());
        let b = AtomicFile::create(&dest, true).unwrap();
        drop(b);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
