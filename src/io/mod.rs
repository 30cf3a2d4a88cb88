//! Byte-level I/O: positional, thread-safe reads (the [`ReadAt`] trait and
//! its building blocks) and crash-safe, sparse output files.
//!
//! Every view in obd is a `ReadAt`: a file, the payload of a tar wrapper, a
//! decompressed ZFile, one LSMT layer, a stack of layers. Reads take an offset
//! and `&self`, so one stack can serve many threads at once.

use std::sync::Arc;

pub use file::FileAt;

pub(crate) mod atomic;
pub mod file;
pub mod lock;
pub(crate) mod sparse;

use crate::error::{Error, Result};

/// Random-access, read-only bytes of a known length.
pub trait ReadAt: Send + Sync {
    /// Logical length in bytes.
    fn len(&self) -> u64;

    /// True when the view holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills all of `buf` from `offset`.
    ///
    /// # Errors
    /// A range past [`ReadAt::len`] is an [`Error::OutOfRange`], never a
    /// silent zero-fill or a short count; I/O and format errors as they come.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;

    /// Drops any local copy of `[offset, offset + len)` so that the next
    /// read fetches those bytes from their source again; true when the view
    /// keeps such copies (a registry blob's cache) and dropped them. A reader
    /// that found bytes damaged (a ZFile block's CRC) calls it once before
    /// it gives up.
    fn refetch(&self, offset: u64, len: u64) -> bool {
        let _ = (offset, len);
        false
    }
}

/// Checks that `[offset, offset + len)` lies inside a view of `size` bytes.
///
/// # Errors
/// [`Error::OutOfRange`] otherwise.
pub fn check_range(what: &'static str, offset: u64, len: usize, size: u64) -> Result<()> {
    let len = len as u64;
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::OutOfRange {
            what,
            offset,
            len,
            size,
        }),
    }
}

impl ReadAt for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range("buffer", offset, buf.len(), ReadAt::len(self))?;
        let start = offset as usize;
        buf.copy_from_slice(&self[start..start + buf.len()]);
        Ok(())
    }
}

impl ReadAt for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Arc<T> {
    fn len(&self) -> u64 {
        (**self).len()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        (**self).read_exact_at(buf, offset)
    }
    fn refetch(&self, offset: u64, len: u64) -> bool {
        (**self).refetch(offset, len)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Box<T> {
    fn len(&self) -> u64 {
        (**self).len()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        (**self).read_exact_at(buf, offset)
    }
    fn refetch(&self, offset: u64, len: u64) -> bool {
        (**self).refetch(offset, len)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn len(&self) -> u64 {
        (**self).len()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        (**self).read_exact_at(buf, offset)
    }
    fn refetch(&self, offset: u64, len: u64) -> bool {
        (**self).refetch(offset, len)
    }
}

/// A window `[start, start + len)` of another view, e.g. a tar member's payload.
#[derive(Debug, Clone)]
pub struct Slice<R> {
    inner: R,
    start: u64,
    len: u64,
}

impl<R: ReadAt> Slice<R> {
    /// A view of `len` bytes of `inner` from `start`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the window does not fit inside `inner`.
    pub fn new(inner: R, start: u64, len: u64) -> Result<Self> {
        match start.checked_add(len) {
            Some(end) if end <= inner.len() => Ok(Slice { inner, start, len }),
            _ => Err(Error::corrupt(
                "payload",
                start,
                format!(
                    "{len} bytes from {start:#x} run past the end of the file ({:#x} bytes)",
                    inner.len()
                ),
            )),
        }
    }

    /// Where the window starts inside the inner view.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The inner view.
    pub fn inner(&self) -> &R {
        &self.inner
    }
}

impl<R: ReadAt> ReadAt for Slice<R> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range("payload", offset, buf.len(), self.len)?;
        self.inner.read_exact_at(buf, self.start + offset)
    }
    fn refetch(&self, offset: u64, len: u64) -> bool {
        offset.checked_add(len).is_some_and(|e| e <= self.len)
            && self.inner.refetch(self.start + offset, len)
    }
}

/// Adapts a [`ReadAt`] to [`std::io::Read`] (a cursor over a positional view),
/// for crates that want a stream.
pub struct Cursor<'a> {
    inner: &'a dyn ReadAt,
    pos: u64,
}

impl<'a> Cursor<'a> {
    /// A stream over `inner` from offset 0.
    pub fn new(inner: &'a dyn ReadAt) -> Self {
        Cursor { inner, pos: 0 }
    }
}

impl std::io::Read for Cursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.inner.len().saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        self.inner
            .read_exact_at(&mut buf[..n], self.pos)
            .map_err(std::io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Test doubles.
#[cfg(test)]
#[allow(missing_docs)]
pub mod testing {
    use super::*;
    use std::sync::Mutex;

    /// Records every read made through it.
    pub struct CountingReadAt<R> {
        pub inner: R,
        pub reads: Mutex<Vec<(u64, usize)>>,
    }

    impl<R: ReadAt> CountingReadAt<R> {
        pub fn new(inner: R) -> Self {
            CountingReadAt {
                inner,
                reads: Mutex::new(Vec::new()),
            }
        }
        pub fn bytes_read(&self) -> usize {
            self.reads.lock().unwrap().iter().map(|r| r.1).sum()
        }
    }

    impl<R: ReadAt> ReadAt for CountingReadAt<R> {
        fn len(&self) -> u64 {
            self.inner.len()
        }
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
            self.reads.lock().unwrap().push((offset, buf.len()));
            self.inner.read_exact_at(buf, offset)
        }
    }

    /// Fails every read that touches byte `fail_at` with EIO.
    pub struct FailingReadAt<R> {
        pub inner: R,
        pub fail_at: u64,
    }

    impl<R: ReadAt> ReadAt for FailingReadAt<R> {
        fn len(&self) -> u64 {
            self.inner.len()
        }
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
            if offset <= self.fail_at && self.fail_at < offset + buf.len() as u64 {
                return Err(Error::io(
                    "file",
                    offset,
                    std::io::Error::from_raw_os_error(libc::EIO),
                ));
            }
            self.inner.read_exact_at(buf, offset)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_reads_inside_and_rejects_past_end() {
        let data: Vec<u8> = (0..100u8).collect();
        let s = Slice::new(&data, 10, 20).unwrap();
        let mut b = [0u8; 5];
        s.read_exact_at(&mut b, 15).unwrap();
        assert_eq!(b, [25, 26, 27, 28, 29]);
        assert!(matches!(
            s.read_exact_at(&mut b, 16),
            Err(Error::OutOfRange { .. })
        ));
        assert!(Slice::new(&data, 90, 11).is_err());
        assert!(Slice::new(&data, u64::MAX, 2).is_err());
    }

    #[test]
    fn failing_double_fails_with_eio() {
        let data = vec![0u8; 64];
        let f = testing::FailingReadAt {
            inner: data,
            fail_at: 10,
        };
        let mut b = [0u8; 4];
        f.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(f.read_exact_at(&mut b, 8).unwrap_err().errno(), libc::EIO);
    }

    #[test]
    fn cursor_streams_everything() {
        use std::io::Read;
        let data: Vec<u8> = (0..=255u8).collect();
        let mut out = Vec::new();
        Cursor::new(&data).read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }
}
