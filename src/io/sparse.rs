//! Sparse outputs: all-zero 4 KiB units of a new file are left as holes.

use std::fs::File;

use crate::error::{Error, Result};

/// Granularity of holes in sparse outputs (a file-system block).
pub const HOLE_UNIT: u64 = 4096;

/// True when every byte of `b` is zero.
#[inline]
pub fn is_zero(b: &[u8]) -> bool {
    // OR-folding 64-byte chunks lets the compiler use vector instructions.
    let (body, tail) = b.split_at(b.len() / 64 * 64);
    body.chunks_exact(64)
        .all(|c| c.iter().fold(0u8, |acc, &x| acc | x) == 0)
        && tail.iter().all(|&x| x == 0)
}

/// Writes `b` at offset `at` of `out`, leaving unwritten every
/// [`HOLE_UNIT`]-aligned unit of the file that `b` covers and that is all
/// zeros: `out` must be new (its unwritten ranges read as zeros) and its
/// length is the caller's to set. Returns the bytes written.
///
/// # Errors
/// Write errors of `out`.
pub fn write_sparse(out: &File, b: &[u8], at: u64) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    // End (index into `b`) of the file unit that holds b[i].
    let unit_end = |i: usize| {
        let pos = at + i as u64;
        ((pos / HOLE_UNIT + 1) * HOLE_UNIT - at).min(b.len() as u64) as usize
    };
    let mut written = 0;
    let mut i = 0;
    while i < b.len() {
        if is_zero(&b[i..unit_end(i)]) {
            i = unit_end(i);
            continue;
        }
        let start = i;
        while i < b.len() && !is_zero(&b[i..unit_end(i)]) {
            i = unit_end(i);
        }
        out.write_all_at(&b[start..i], at + start as u64)
            .map_err(|e| Error::io("output", at + start as u64, e))?;
        written += (i - start) as u64;
    }
    Ok(written)
}

/// A buffered sequential writer on a new file that leaves its all-zero
/// [`HOLE_UNIT`]s unwritten (holes read as zeros, and cost no space).
/// [`SparseWriter::into_inner`] writes what is buffered and sets the
/// file's length.
pub struct SparseWriter {
    file: File,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    pos: u64,
}

impl SparseWriter {
    /// A writer at offset 0 of `file`, which must be new and empty.
    pub fn new(file: File, capacity: usize) -> Self {
        let capacity = capacity.max(HOLE_UNIT as usize);
        SparseWriter {
            file,
            buf: Vec::with_capacity(capacity),
            pos: 0,
        }
    }

    /// Writes the buffer out, keeping a trailing partial unit buffered so
    /// that every unit is judged whole.
    fn drain(&mut self, all: bool) -> std::io::Result<()> {
        let end = self.pos + self.buf.len() as u64;
        let keep = if all { 0 } else { (end % HOLE_UNIT) as usize };
        let n = self.buf.len() - keep;
        if n == 0 {
            return Ok(());
        }
        write_sparse(&self.file, &self.buf[..n], self.pos).map_err(std::io::Error::other)?;
        self.buf.drain(..n);
        self.pos += n as u64;
        Ok(())
    }

    /// Writes what is buffered, sets the file's length to the bytes written
    /// through this writer, and returns the file.
    ///
    /// # Errors
    /// Write errors.
    pub fn into_inner(mut self) -> Result<File> {
        self.drain(true)
            .map_err(|e| crate::error::from_io("output", self.pos, e))?;
        self.file
            .set_len(self.pos)
            .map_err(|e| Error::io("output", self.pos, e))?;
        Ok(self.file)
    }
}

/// Writes at least this long go to the file directly rather than through
/// the buffer (one copy less), but for the bytes that complete the
/// buffer's last [`HOLE_UNIT`].
const DIRECT_WRITE: usize = 64 << 10;

impl std::io::Write for SparseWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.len() >= DIRECT_WRITE {
            // Complete the buffer's last unit from `data`, write the buffer,
            // then the whole units of `data` straight from it.
            let end = self.pos + self.buf.len() as u64;
            let head = ((HOLE_UNIT - end % HOLE_UNIT) % HOLE_UNIT) as usize;
            if self.buf.capacity() - self.buf.len() < head {
                self.drain(false)?;
            }
            self.buf.extend_from_slice(&data[..head]);
            self.drain(true)?;
            let n = (data.len() - head) / HOLE_UNIT as usize * HOLE_UNIT as usize;
            write_sparse(&self.file, &data[head..head + n], self.pos)
                .map_err(std::io::Error::other)?;
            self.pos += n as u64;
            return Ok(head + n);
        }
        let room = self.buf.capacity() - self.buf.len();
        if room == 0 {
            self.drain(false)?;
            return self.write(data);
        }
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn allocated(f: &File) -> u64 {
        use std::os::unix::fs::MetadataExt;
        f.metadata().unwrap().blocks() * 512
    }

    #[test]
    fn sparse_writer_keeps_content_and_skips_zero_units() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        // Units of 4 KiB, each zero, non-zero, or zero but for one byte at
        // an edge; written in pieces of random sizes, the last unit partial.
        let unit = (0u8..4, any::<u8>());
        let case = (
            prop::collection::vec(unit, 0..80),
            0usize..4096,
            prop::collection::vec(1usize..150_000, 1..8),
        );
        TestRunner::new(Config::with_cases(64))
            .run(&case, |(units, tail, pieces)| {
                let mut data = Vec::new();
                for &(kind, v) in &units {
                    let mut u = vec![0u8; HOLE_UNIT as usize];
                    match kind {
                        0 => {}
                        1 => u.fill(v | 1),
                        2 => u[0] = v | 1,
                        _ => u[HOLE_UNIT as usize - 1] = v | 1,
                    }
                    data.extend_from_slice(&u);
                }
                data.extend(std::iter::repeat_n(7u8, tail));
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("out");
                let mut w = SparseWriter::new(File::create(&path).unwrap(), 3 * 4096 + 100);
                let mut at = 0;
                let mut k = 0;
                while at < data.len() {
                    let n = pieces[k % pieces.len()].min(data.len() - at);
                    w.write_all(&data[at..at + n]).unwrap();
                    at += n;
                    k += 1;
                }
                let f = w.into_inner().unwrap();
                f.sync_all().unwrap();
                prop_assert_eq!(std::fs::read(&path).unwrap(), data.clone());
                // Zero units take no space (a little slack for the file
                // system's own blocks and the partial tail).
                let nonzero = units.iter().filter(|u| u.0 != 0).count() as u64;
                prop_assert!(allocated(&f) <= (nonzero + 3) * HOLE_UNIT);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn write_sparse_leaves_holes_at_file_units() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let f = File::create(&path).unwrap();
        // 1 MiB of zeros with one byte set, written from an unaligned offset.
        let mut b = vec![0u8; 1 << 20];
        b[300_000] = 9;
        let written = write_sparse(&f, &b, 1000).unwrap();
        // The one unit holding the byte, cut to the file's 4 KiB grid.
        assert_eq!(written, HOLE_UNIT);
        f.set_len(1000 + b.len() as u64).unwrap();
        f.sync_all().unwrap();
        let back = std::fs::read(&path).unwrap();
        assert_eq!(&back[1000..], &b[..]);
        assert!(back[..1000].iter().all(|&x| x == 0));
        assert!(allocated(&f) <= 2 * HOLE_UNIT, "{}", allocated(&f));
    }
}
