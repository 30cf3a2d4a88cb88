//! A local file as a [`ReadAt`] view, read with `pread` from any thread.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::io::{check_range, ReadAt};

/// A regular file of fixed length, read with `pread`.
///
/// It may hold a few more open file descriptions of the same file
/// ([`FileAt::replicated`]), each thread reading through its own: every
/// `pread` on a shared one takes and drops a reference on it, an atomic
/// that two cores reading at once bounce between them.
#[derive(Debug)]
pub struct FileAt {
    file: File,
    replicas: Box<[File]>,
    len: u64,
}

/// Extra file descriptors all [`FileAt`]s of the process may hold, so that
/// replicas never crowd out the descriptors other work needs.
static REPLICA_BUDGET: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(256);

/// This thread's turn among replicas: threads take numbers as they first
/// read, so threads started together use different replicas.
fn thread_slot() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    SLOT.with(|s| *s)
}

impl FileAt {
    /// Opens `path` read-only.
    ///
    /// # Errors
    /// The open or `fstat` error.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(Error::open)?;
        Self::new(file)
    }

    /// Wraps an open file; its length is taken now.
    ///
    /// # Errors
    /// The `fstat` error.
    pub fn new(file: File) -> Result<Self> {
        let len = file.metadata().map_err(|e| Error::io("file", 0, e))?.len();
        Ok(FileAt {
            file,
            replicas: Box::new([]),
            len,
        })
    }

    /// Gives the file `n - 1` more open descriptions (re-opened through
    /// `/proc/self/fd`, so the very same file), one per reading thread up
    /// to `n`. Best effort: without `/proc`, out of descriptors or past the
    /// process's budget it keeps fewer, down to none.
    pub fn replicated(mut self, n: usize) -> Self {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        use std::sync::atomic::Ordering;
        let Ok(meta) = self.file.metadata() else {
            return self;
        };
        let mut replicas = Vec::new();
        for _ in 1..n {
            let took = REPLICA_BUDGET
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1));
            if took.is_err() {
                break;
            }
            let again = File::open(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
            match again {
                Ok(f)
                    if f.metadata()
                        .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino()) =>
                {
                    replicas.push(f)
                }
                _ => {
                    REPLICA_BUDGET.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        self.replicas = replicas.into_boxed_slice();
        self
    }

    /// The underlying file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The open description this thread reads through.
    #[inline]
    fn for_this_thread(&self) -> &File {
        if self.replicas.is_empty() {
            return &self.file;
        }
        match thread_slot() % (self.replicas.len() + 1) {
            0 => &self.file,
            k => &self.replicas[k - 1],
        }
    }
}

impl Drop for FileAt {
    fn drop(&mut self) {
        REPLICA_BUDGET.fetch_add(self.replicas.len(), std::sync::atomic::Ordering::Relaxed);
    }
}

impl ReadAt for FileAt {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range("file", offset, buf.len(), self.len)?;
        self.for_this_thread()
            .read_exact_at(buf, offset)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    Error::corrupt("file", offset, "file shrank while being read")
                } else {
                    Error::io("file", offset, e)
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_read_the_same_file_from_every_thread() {
        use std::io::Write;
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        tmp.write_all(&data).unwrap();
        let f = FileAt::open(tmp.path()).unwrap().replicated(3);
        assert!(f.replicas.len() <= 2);
        // On Linux with /proc, the replicas are there.
        if Path::new("/proc/self/fd").exists() {
            assert_eq!(f.replicas.len(), 2);
        }
        // The replicas follow the file, not its name.
        std::fs::remove_file(tmp.path()).unwrap();
        std::thread::scope(|s| {
            for t in 0..6u64 {
                let (f, data) = (&f, &data);
                s.spawn(move || {
                    let mut buf = vec![0u8; 1000];
                    for k in 0..50u64 {
                        let at = (t * 7919 + k * 1237) % 99_000;
                        f.read_exact_at(&mut buf, at).unwrap();
                        assert_eq!(buf, data[at as usize..at as usize + 1000]);
                    }
                });
            }
        });
    }
}
