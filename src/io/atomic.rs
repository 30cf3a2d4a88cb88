//! Crash-safe output files: write to a file that has no name yet (or a
//! hidden temporary one), fsync, then give it the destination's name.

use std::fs::File;
use std::os::fd::AsRawFd;
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
///
/// Where the file system allows it (`O_TMPFILE`: ext4, xfs, btrfs, tmpfs…)
/// the file has no name until it is committed, so a process that dies in
/// any way, `kill -9` included, leaves nothing behind. Elsewhere it is a
/// hidden `.NAME.obd-tmp-*` file next to the destination, removed on drop
/// and by [`remove_pending`].
#[must_use = "an AtomicFile must be committed or its output is discarded"]
pub struct AtomicFile {
    tmp: Tmp,
    dest: PathBuf,
    force: bool,
}

enum Tmp {
    /// An `O_TMPFILE` file in the destination's directory.
    Unnamed(File),
    /// A named temporary file, on the [`PENDING`] list while it lives.
    Named {
        file: tempfile::NamedTempFile,
        // Dropped after `file`: the file is gone before it leaves the list.
        _pending: Pending,
    },
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

/// A file without a name in `dir`, or None when the file system (or the
/// kernel) has no `O_TMPFILE`.
///
/// # Errors
/// The directory's own error (missing, not writable, read-only, full).
fn unnamed_in(dir: &Path) -> std::io::Result<Option<File>> {
    use rustix::fs::{Mode, OFlags};
    use rustix::io::Errno;
    let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    // The kernel applies the umask to the mode, as for any new file.
    match rustix::fs::open(dir, flags, Mode::from_raw_mode(0o666)) {
        Ok(fd) => Ok(Some(File::from(fd))),
        // No O_TMPFILE here (old kernels say EISDIR, some file systems
        // EOPNOTSUPP or EINVAL): a named temporary file instead.
        Err(Errno::ISDIR | Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Gives the unnamed `file` the name `to` (which must not exist).
fn link_unnamed(file: &File, to: &Path) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, CWD};
    let by_proc = format!("/proc/self/fd/{}", file.as_raw_fd());
    match rustix::fs::linkat(CWD, by_proc.as_str(), CWD, to, AtFlags::SYMLINK_FOLLOW) {
        // No /proc: linking the descriptor itself needs CAP_DAC_READ_SEARCH.
        Err(rustix::io::Errno::NOENT) if !Path::new("/proc/self/fd").exists() => {
            rustix::fs::linkat(file, "", CWD, to, AtFlags::EMPTY_PATH)
        }
        r => r,
    }
    .map_err(std::io::Error::from)
}

fn exists_error(dest: &Path) -> Error {
    Error::invalid(
        "output",
        format!(
            "{} already exists (use --force to replace it)",
            dest.display()
        ),
    )
}

/// The error of giving the output its name `dest` without replacing it.
fn naming_error(dest: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        exists_error(dest)
    } else {
        Error::file(dest, "create", e)
    }
}

/// The directory `dest` is in (`.` for a bare name).
fn dir_of(dest: &Path) -> &Path {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

impl AtomicFile {
    /// Creates the output's file, unnamed (or hidden) next to `dest`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `dest` exists and `force` is false;
    /// [`Error::Io`] when the directory is not writable.
    pub fn create(dest: &Path, force: bool) -> Result<Self> {
        Self::create_in(dest, force, true)
    }

    fn create_in(dest: &Path, force: bool, allow_unnamed: bool) -> Result<Self> {
        if !force && dest.symlink_metadata().is_ok() {
            return Err(exists_error(dest));
        }
        let dir = dir_of(dest);
        remove_stale(dest);
        let unnamed = if allow_unnamed {
            unnamed_in(dir).map_err(|e| Error::file(dest, "create", e))?
        } else {
            None
        };
        let tmp = match unnamed {
            Some(file) => Tmp::Unnamed(file),
            None => {
                let file = tempfile::Builder::new()
                    .prefix(&temp_prefix(dest))
                    .tempfile_in(dir)
                    .map_err(|e| Error::file(dest, "create", e))?;
                Tmp::Named {
                    _pending: Pending::new(file.path()),
                    file,
                }
            }
        };
        Ok(AtomicFile {
            tmp,
            dest: dest.to_path_buf(),
            force,
        })
    }

    /// The file, to write into.
    pub fn file(&self) -> &File {
        match &self.tmp {
            Tmp::Unnamed(file) => file,
            Tmp::Named { file, .. } => file.as_file(),
        }
    }

    /// Mutable access to the file.
    pub fn file_mut(&mut self) -> &mut File {
        match &mut self.tmp {
            Tmp::Unnamed(file) => file,
            Tmp::Named { file, .. } => file.as_file_mut(),
        }
    }

    /// Where the file will appear.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// fsyncs the data, names it as the destination (replacing it only with
    /// `force`), fsyncs the directory.
    ///
    /// # Errors
    /// [`Error::Io`]; [`Error::Invalid`] when the destination appeared
    /// meanwhile and `force` is false.
    pub fn commit(self) -> Result<()> {
        let AtomicFile { tmp, dest, force } = self;
        match tmp {
            Tmp::Unnamed(file) => {
                file.sync_all().map_err(|e| Error::file(&dest, "sync", e))?;
                if !force {
                    link_unnamed(&file, &dest).map_err(|e| naming_error(&dest, e))?;
                } else {
                    // A name of its own first, then over the destination.
                    let mut k = 0u32;
                    let name = loop {
                        let p = dir_of(&dest).join(format!(
                            "{}{}-{k}",
                            temp_prefix(&dest),
                            std::process::id()
                        ));
                        match link_unnamed(&file, &p) {
                            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => k += 1,
                            r => break r.map(|()| p),
                        }
                    }
                    .map_err(|e| Error::file(&dest, "create", e))?;
                    let _pending = Pending::new(&name);
                    if let Err(e) = std::fs::rename(&name, &dest) {
                        let _ = std::fs::remove_file(&name);
                        return Err(Error::file(&dest, "replace", e));
                    }
                }
            }
            Tmp::Named { file, _pending } => {
                use std::os::unix::fs::PermissionsExt;
                let f = file.as_file();
                // tempfile creates 0600; give the output the usual 0644 minus umask.
                let mode = 0o666 & !current_umask();
                f.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(|e| Error::file(&dest, "create", e))?;
                f.sync_all().map_err(|e| Error::file(&dest, "sync", e))?;
                if force {
                    file.persist(&dest)
                        .map_err(|e| Error::file(&dest, "replace", e.error))?;
                } else {
                    file.persist_noclobber(&dest)
                        .map_err(|e| naming_error(&dest, e.error))?;
                }
            }
        }
        if let Ok(d) = File::open(dir_of(&dest)) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// Removes what an earlier writer of `dest` killed between naming its
/// complete file and renaming it over `dest` left behind: the hidden
/// `.NAME.obd-tmp-PID-K` names of processes that no longer exist.
fn remove_stale(dest: &Path) {
    let prefix = temp_prefix(dest);
    let Ok(entries) = std::fs::read_dir(dir_of(dest)) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some((pid, k)) = rest.split_once('-') else {
            continue;
        };
        let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if numeric(pid) && numeric(k) && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The start of the hidden temporary names of `dest`: `.NAME.obd-tmp-`.
fn temp_prefix(dest: &Path) -> String {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.obd-tmp-")
}

/// The process umask.
pub(crate) fn current_umask() -> u32 {
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
        let named = |a: &AtomicFile| match &a.tmp {
            Tmp::Named { file, .. } => file.path().to_path_buf(),
            Tmp::Unnamed(_) => panic!("not a named temporary file"),
        };
        let a = AtomicFile::create_in(&dir.path().join("a"), false, false).unwrap();
        let tmp = named(&a);
        assert!(pending().contains(&tmp));
        drop(a);
        assert!(!pending().contains(&tmp) && !tmp.exists());
        // (`remove_pending` itself is exercised by the CLI test that
        // interrupts a writer: calling it here would race other tests.)
        let c = AtomicFile::create_in(&dir.path().join("c"), false, false).unwrap();
        let tmp = named(&c);
        c.commit().unwrap();
        assert!(!pending().contains(&tmp));
    }

    #[test]
    fn commit_and_noclobber() {
        use std::os::unix::fs::PermissionsExt;
        let umask = current_umask();
        for unnamed in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("out");
            let mut a = AtomicFile::create_in(&dest, false, unnamed).unwrap();
            // This test's directory (ext4, tmpfs) takes O_TMPFILE.
            assert_eq!(matches!(a.tmp, Tmp::Unnamed(_)), unnamed);
            a.file_mut().write_all(b"hello").unwrap();
            // Nothing visible before the commit but a hidden temporary file.
            let visible = std::fs::read_dir(dir.path()).unwrap().count();
            assert_eq!(visible, if unnamed { 0 } else { 1 });
            a.commit().unwrap();
            assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
            let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o666 & !umask);
            assert!(AtomicFile::create_in(&dest, false, unnamed).is_err());
            // Appearing meanwhile: not replaced without force.
            let b = AtomicFile::create_in(&dir.path().join("late"), false, unnamed).unwrap();
            std::fs::write(dir.path().join("late"), b"first").unwrap();
            assert!(b
                .commit()
                .unwrap_err()
                .to_string()
                .contains("already exists"));
            assert_eq!(std::fs::read(dir.path().join("late")).unwrap(), b"first");
            // Replaced with force; dropped without commit: nothing left.
            let mut c = AtomicFile::create_in(&dest, true, unnamed).unwrap();
            c.file_mut().write_all(b"second").unwrap();
            c.commit().unwrap();
            assert_eq!(std::fs::read(&dest).unwrap(), b"second");
            let d = AtomicFile::create_in(&dest, true, unnamed).unwrap();
            drop(d);
            let mut names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            assert_eq!(names, ["late", "out"]);
        }
    }
}
