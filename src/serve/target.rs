//! The transport-neutral block target: what a served block device reads,
//! writes, discards and flushes, and whether it is read-only. The ublk
//! server ([`crate::serve::ublk`]) answers kernel requests with it; any other
//! transport does the same.

use crate::error::Result;
use crate::io::ReadAt;

/// The flags of a run that reads as zeros and holds no data: not allocated,
/// zeros (NBD's `NBD_STATE_HOLE | NBD_STATE_ZERO`).
pub const ZEROS: u32 = 0b11;

/// What a block device serves, whatever carries its requests (ublk today): reads, and for writable targets writes,
/// discards and flushes. Implementations are shared by every queue thread.
pub trait Target: Send + Sync {
    /// Size in bytes (the device gets this rounded down to a sector).
    fn size(&self) -> u64;

    /// True when the device must be read-only.
    fn read_only(&self) -> bool {
        true
    }

    /// Fills `buf` from `offset`.
    ///
    /// # Errors
    /// Whatever the underlying view fails with; the request then completes
    /// with [`crate::Error::errno`].
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;

    /// True when `len` bytes at `offset` read as zeros without any data
    /// being read (holes, zeroed extents). The server then skips the read,
    /// and even the zero-fill when the request's buffer is known to hold
    /// zeros already: sparse disk images are mostly such ranges.
    fn reads_as_zeros(&self, offset: u64, len: u64) -> bool {
        let _ = (offset, len);
        false
    }

    /// The allocation of `[offset, offset + len)` in runs: `(bytes, flags)`
    /// with [`ZEROS`] for ranges that read as zeros without data (holes,
    /// zeroed extents) and 0 for data, adjacent runs of one kind merged. By
    /// default: all data.
    fn extents(&self, offset: u64, len: u64) -> Vec<(u64, u32)> {
        let _ = offset;
        vec![(len, 0)]
    }

    /// Writes `buf` at `offset`.
    ///
    /// # Errors
    /// Read-only targets refuse (the handler never calls this for them).
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        let _ = (buf, offset);
        Err(read_only_error())
    }

    /// Discards `len` bytes at `offset` (they read as zeros afterwards).
    ///
    /// # Errors
    /// Read-only targets refuse.
    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        let _ = (offset, len);
        Err(read_only_error())
    }

    /// Makes every completed write durable.
    ///
    /// # Errors
    /// The fsync error.
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

fn read_only_error() -> crate::Error {
    crate::Error::io(
        "block target",
        0,
        std::io::Error::from_raw_os_error(libc::EROFS),
    )
}

/// A read-only target over any [`ReadAt`] view. A
/// [`Stack`](crate::stack::Stack) is a read-only target itself, one that
/// also knows its holes.
pub struct ReadOnly<R>(pub R);

impl<R: ReadAt> Target for ReadOnly<R> {
    fn size(&self) -> u64 {
        self.0.len()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.0.read_exact_at(buf, offset)
    }
}

impl Target for crate::stack::Stack {
    fn size(&self) -> u64 {
        self.virtual_size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.read_exact_at(buf, offset)
    }

    fn reads_as_zeros(&self, offset: u64, len: u64) -> bool {
        use crate::stack::Source;
        crate::stack::Stack::extents(self, offset, len)
            .iter()
            .all(|e| matches!(e.source, Source::Hole | Source::Zero { .. }))
    }

    fn extents(&self, offset: u64, len: u64) -> Vec<(u64, u32)> {
        use crate::stack::Source;
        let mut out: Vec<(u64, u32)> = Vec::new();
        for e in crate::stack::Stack::extents(self, offset, len) {
            let flags = match e.source {
                Source::Hole | Source::Zero { .. } => ZEROS,
                Source::Data { .. } => 0,
            };
            match out.last_mut() {
                Some(last) if last.1 == flags => last.0 += e.length,
                _ => out.push((e.length, flags)),
            }
        }
        out
    }
}

/// A writable layer over its lower stack: reads see the layer over the
/// stack, writes and discards go to the layer, FLUSH syncs its data file,
/// then its index file.
impl Target for crate::format::lsmt::writable::WritableLayer {
    fn size(&self) -> u64 {
        self.len()
    }

    fn read_only(&self) -> bool {
        false
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        crate::format::lsmt::writable::WritableLayer::write_at(self, buf, offset)
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        crate::format::lsmt::writable::WritableLayer::discard(self, offset, len)
    }

    fn flush(&self) -> Result<()> {
        crate::format::lsmt::writable::WritableLayer::flush(self)
    }
}
