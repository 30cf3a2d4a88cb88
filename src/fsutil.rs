//! Crash-safe output files: write to a temporary file in the destination
//! directory, fsync, then rename over the destination.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// An output file that appears at its destination only when committed.
/// Dropping it without [`AtomicFile::commit`] removes the temporary file.
#[must_use = "an AtomicFile must be committed or its output is discarded"]
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
    force: bool,
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
