//! `ZFile<R>`: the decompressed view of a ZFile container.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::cache::BlockCache;
use super::raw::*;
use super::record::Record;
use super::{decompress_block, Algorithm};
use crate::error::{checked_add, checked_mul, Error, Result};
use crate::format::checksum::{crc32c, crc32c_salt};
use crate::io::{check_range, ReadAt};

/// How to open a ZFile.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// Check each block's CRC32C on every read (default on).
    pub check_crc: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { check_crc: true }
    }
}

/// The decompressed content of a ZFile, readable at any offset.
#[derive(Debug)]
pub struct ZFile<R> {
    inner: R,
    header: Record,
    trailer: Record,
    overwrite: bool,
    algo: Algorithm,
    block_size: u64,
    size: u64,
    has_crc: bool,
    check_crc: bool,
    /// Absolute offset of block i is `offsets[i]`; `offsets[n]` ends the data.
    offsets: Vec<u64>,
    /// The block cache and this file's part of it, once attached.
    cache: OnceLock<Cached>,
}

/// A ZFile's attachment to a block cache.
#[derive(Debug)]
struct Cached {
    cache: BlockCache,
    /// This file's key space in the cache.
    id: u64,
    /// One bit per block, set when the block is put in the cache and never
    /// cleared: a clear bit means "not cached", so large reads of blocks
    /// never cached skip the cache's locks. A set bit may be stale (the
    /// block was evicted since); the lookup then just misses.
    ever: Box<[AtomicU64]>,
}

impl Cached {
    #[inline]
    fn maybe_cached(&self, i: u64) -> bool {
        self.ever[(i / 64) as usize].load(Ordering::Relaxed) & (1 << (i % 64)) != 0
    }

    #[inline]
    fn mark(&self, i: u64) {
        let w = &self.ever[(i / 64) as usize];
        let bit = 1 << (i % 64);
        // Skip the write (and the cache line's ownership) when already set.
        if w.load(Ordering::Relaxed) & bit == 0 {
            w.fetch_or(bit, Ordering::Relaxed);
        }
    }
}

/// Most compressed bytes fetched with one read: large enough to amortize the
/// system call, small enough to stay in the L2 cache next to its output.
const MAX_RUN: u64 = 256 << 10;

/// Per-thread buffers of the read path, reused across requests.
#[derive(Default)]
struct Scratch {
    /// Compressed records of a run of blocks.
    records: Vec<u8>,
    /// One decompressed block, for partial reads without a cache.
    block: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch buffers (fresh ones if they are in
/// use further up the stack, e.g. a ZFile nested in a ZFile).
fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::default()),
    })
}

impl<R: ReadAt> ZFile<R> {
    /// Opens a ZFile with default options (CRC checked on every read).
    ///
    /// # Errors
    /// See [`ZFile::open_with`].
    pub fn open(inner: R) -> Result<Self> {
        Self::open_with(inner, OpenOptions::default())
    }

    /// Opens a ZFile: validates header, trailer and jump table.
    ///
    /// # Errors
    /// [`Error::BadMagic`] when `inner` is not a ZFile, [`Error::Corrupt`]
    /// for any inconsistency, [`Error::Unsupported`] for features obd does
    /// not implement, [`Error::Io`] from `inner`.
    pub fn open_with(inner: R, opts: OpenOptions) -> Result<Self> {
        let (header, trailer) = read_records(&inner)?;
        let overwrite = header.flags & FLAG_HEADER_OVERWRITE != 0;
        // With the header-overwrite flag the header is authoritative.
        let (rec, rec_at, what) = if overwrite {
            (&header, 0, "zfile header")
        } else {
            (&trailer, inner.len() - HEADER_SPACE, "zfile trailer")
        };
        let algo = check_record(rec, what, rec_at)?;
        let offsets = read_jump_table(&inner, rec, what, rec_at)?;
        Ok(ZFile {
            algo,
            block_size: rec.block_size as u64,
            size: rec.original_file_size,
            has_crc: rec.verify == 1,
            check_crc: opts.check_crc,
            offsets,
            inner,
            header,
            trailer,
            overwrite,
            cache: OnceLock::new(),
        })
    }

    /// Attaches a block cache (shared with other files, each in its own key
    /// space). Returns false when a cache is already attached or `cache` has
    /// no budget.
    pub fn set_cache(&self, cache: &BlockCache) -> bool {
        if cache.capacity() == 0 || self.cache.get().is_some() {
            return false;
        }
        let words = self.blocks().div_ceil(64) as usize;
        self.cache
            .set(Cached {
                cache: cache.clone(),
                id: cache.register(),
                ever: (0..words).map(|_| AtomicU64::new(0)).collect(),
            })
            .is_ok()
    }

    /// The attached block cache.
    pub fn cache(&self) -> Option<&BlockCache> {
        self.cache.get().map(|c| &c.cache)
    }

    /// The header record as stored.
    pub fn header(&self) -> &Record {
        &self.header
    }

    /// The trailer record as stored.
    pub fn trailer(&self) -> &Record {
        &self.trailer
    }

    /// True when the header holds the final fields (header-overwrite flag);
    /// the trailer is then informational.
    pub fn header_overwrite(&self) -> bool {
        self.overwrite
    }

    /// The record whose fields are in force.
    pub fn record(&self) -> &Record {
        if self.overwrite {
            &self.header
        } else {
            &self.trailer
        }
    }

    /// The compression algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algo
    }

    /// Uncompressed block size.
    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Number of blocks.
    pub fn blocks(&self) -> u64 {
        self.offsets.len() as u64 - 1
    }

    /// True when blocks carry CRCs.
    pub fn has_crc(&self) -> bool {
        self.has_crc
    }

    /// Bytes of compressed blocks (CRCs included), i.e. the data section.
    pub fn compressed_size(&self) -> u64 {
        self.offsets[self.offsets.len() - 1] - HEADER_SPACE
    }

    /// The container.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// On-disk byte range of block `i` (CRC included).
    pub fn block_range(&self, i: u64) -> std::ops::Range<u64> {
        self.offsets[i as usize]..self.offsets[i as usize + 1]
    }

    /// Uncompressed length of block `i`.
    pub fn block_len(&self, i: u64) -> usize {
        let start = i * self.block_size;
        (self.size - start).min(self.block_size) as usize
    }

    /// Checks a block record (compressed bytes + CRC) and decompresses it into
    /// `dst`, which must be exactly [`ZFile::block_len`] bytes.
    ///
    /// # Errors
    /// [`Error::Checksum`] or [`Error::Corrupt`] naming the block.
    pub fn decode_block(
        &self,
        i: u64,
        record: &[u8],
        dst: &mut [u8],
        check_crc: bool,
    ) -> Result<()> {
        let at = self.offsets[i as usize];
        let data = if self.has_crc {
            let (data, crc) = record.split_at(record.len() - CRC_SIZE as usize);
            if check_crc {
                let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
                let computed = crc32c_salt(data);
                if stored != computed {
                    return Err(Error::Checksum {
                        block: i,
                        offset: at,
                        stored,
                        computed,
                    });
                }
            }
            data
        } else {
            record
        };
        decompress_block(self.algo, data, dst, i, at)
    }

    /// Decompresses blocks `first..last` into `dst` (resized to their
    /// uncompressed length), reading their records with one read into
    /// `scratch`.
    ///
    /// # Errors
    /// As [`ZFile::decode_block`]; [`Error::OutOfRange`] for blocks past the end.
    pub fn read_blocks(
        &self,
        first: u64,
        last: u64,
        dst: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) -> Result<()> {
        if first > last || last > self.blocks() {
            return Err(Error::OutOfRange {
                what: "zfile blocks",
                offset: first,
                len: last.saturating_sub(first),
                size: self.blocks(),
            });
        }
        let start = self.offsets[first as usize];
        let end = self.offsets[last as usize];
        scratch.resize((end - start) as usize, 0);
        self.inner.read_exact_at(scratch, start)?;
        let out_start = first * self.block_size;
        let out_end = (last * self.block_size).min(self.size);
        dst.resize((out_end - out_start) as usize, 0);
        let mut at = 0usize;
        for i in first..last {
            let r = self.block_range(i);
            let rec = &scratch[(r.start - start) as usize..(r.end - start) as usize];
            let n = self.block_len(i);
            self.decode_block(i, rec, &mut dst[at..at + n], self.check_crc)?;
            at += n;
        }
        Ok(())
    }

    /// The part of `buf` (which holds `[offset, offset + buf.len())`) that
    /// block `i` covers, and where that part starts inside the block.
    #[inline]
    fn part<'a>(&self, buf: &'a mut [u8], offset: u64, i: u64) -> (usize, &'a mut [u8]) {
        let bstart = i * self.block_size;
        let bend = bstart + self.block_len(i) as u64;
        let s = bstart.max(offset);
        let e = bend.min(offset + buf.len() as u64);
        (
            (s - bstart) as usize,
            &mut buf[(s - offset) as usize..(e - offset) as usize],
        )
    }

    /// Copies the part of block `i` that `buf` wants from the cache; false
    /// when there is no cache or the block is not in it.
    #[inline]
    fn copy_cached(&self, buf: &mut [u8], offset: u64, i: u64) -> bool {
        match self.cache.get() {
            Some(c) if c.maybe_cached(i) => {
                let (within, out) = self.part(buf, offset, i);
                c.cache.read(c.id, i, within, out)
            }
            _ => false,
        }
    }

    /// Reads `[offset, offset + buf.len())` (non-empty, in range) on this
    /// thread. Cached blocks are copied; each run of uncached blocks is
    /// fetched with one read and decompressed straight into `buf` where a
    /// block is wanted whole, through a block buffer where only part of it is.
    ///
    /// Cache policy: a block read in part is always cached (the next read
    /// will likely want the rest of it); a block read whole is cached only by
    /// a small read. Large reads stream: they use cached blocks but do not
    /// push out the cache's working set with blocks the kernel's page cache
    /// above us keeps anyway.
    fn read_range(&self, buf: &mut [u8], offset: u64, s: &mut Scratch) -> Result<()> {
        let end = offset + buf.len() as u64;
        let first = offset / self.block_size;
        let last = (end - 1) / self.block_size;
        let cache = self.cache.get();
        let fill_whole =
            buf.len() < crate::exec::split::MIN_SPLIT && !crate::exec::split::in_large_read();
        let mut b = first;
        while b <= last {
            if self.copy_cached(buf, offset, b) {
                b += 1;
                continue;
            }
            // A run of uncached blocks b..=e, fetched with one read.
            let start = self.offsets[b as usize];
            let mut e = b;
            let mut next_cached = false;
            while e < last && self.offsets[e as usize + 2] - start <= MAX_RUN {
                if self.copy_cached(buf, offset, e + 1) {
                    next_cached = true;
                    break;
                }
                e += 1;
            }
            let n = (self.offsets[e as usize + 1] - start) as usize;
            if s.records.len() < n {
                s.records.resize(n, 0);
            }
            self.inner.read_exact_at(&mut s.records[..n], start)?;
            for i in b..=e {
                let r = self.block_range(i);
                let rec = &s.records[(r.start - start) as usize..(r.end - start) as usize];
                let blen = self.block_len(i);
                let (within, out) = self.part(buf, offset, i);
                if out.len() == blen {
                    self.decode_block(i, rec, out, self.check_crc)?;
                    if let (Some(c), true) = (cache, fill_whole) {
                        c.mark(i);
                        c.cache.insert_copy(c.id, i, out);
                    }
                } else if let Some(c) = cache {
                    let mut block = c.cache.buffer(c.id, i, blen);
                    self.decode_block(i, rec, &mut block, self.check_crc)?;
                    out.copy_from_slice(&block[within..within + out.len()]);
                    c.mark(i);
                    c.cache.insert(c.id, i, block);
                } else {
                    if s.block.len() < blen {
                        s.block.resize(blen, 0);
                    }
                    let block = &mut s.block[..blen];
                    self.decode_block(i, rec, block, self.check_crc)?;
                    out.copy_from_slice(&block[within..within + out.len()]);
                }
            }
            b = e + 1 + next_cached as u64;
        }
        Ok(())
    }

    /// A large read cut at multiples of [`crate::exec::split::PIECE`] (block
    /// boundaries), the pieces decompressed on several threads.
    fn read_split(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let piece = crate::exec::split::PIECE;
        let mut pieces = Vec::with_capacity(buf.len() / piece as usize + 2);
        let mut rest = buf;
        let mut pos = offset;
        while !rest.is_empty() {
            let cut = ((pos / piece + 1) * piece - pos).min(rest.len() as u64) as usize;
            let (a, b) = std::mem::take(&mut rest).split_at_mut(cut);
            pieces.push((a, pos));
            pos += cut as u64;
            rest = b;
        }
        crate::exec::split::run(pieces, &|(b, at)| {
            with_scratch(|s| self.read_range(b, at, s))
        })
    }
}

impl<R: ReadAt> ReadAt for ZFile<R> {
    fn len(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range("zfile", offset, buf.len(), self.size)?;
        if buf.is_empty() {
            return Ok(());
        }
        let read = |buf: &mut [u8]| {
            if crate::exec::split::should_split(buf.len()) {
                self.read_split(buf, offset)
            } else {
                with_scratch(|s| self.read_range(buf, offset, s))
            }
        };
        match read(buf) {
            // A block that fails its CRC may be a damaged local copy of a
            // remote blob: fetched again once, then checked again.
            Err(Error::Checksum { block, .. })
                if {
                    let r = self.block_range(block);
                    self.inner.refetch(r.start, r.end - r.start)
                } =>
            {
                read(buf)
            }
            r => r,
        }
    }
}

/// Byte offset of a field of [`RawHeader`].
macro_rules! off {
    ($field:ident) => {
        core::mem::offset_of!(RawHeader, $field) as u64
    };
}

/// Reads and checks the header and the trailer. The trailer is read even
/// when the header is authoritative (header-overwrite flag): every writer
/// ends the file with one, and a missing one means the file was cut short.
fn read_records<R: ReadAt>(inner: &R) -> Result<(Record, Record)> {
    let len = inner.len();
    if len < HEADER_SPACE {
        return Err(Error::corrupt(
            "zfile header",
            0,
            format!("file is {len} bytes, shorter than a 512-byte header"),
        ));
    }
    let mut buf = [0u8; HEADER_SPACE as usize];
    inner.read_exact_at(&mut buf, 0)?;
    let header = Record::parse(&buf, "zfile header", 0)?;
    if header.flags & FLAG_HEADER == 0 {
        return Err(Error::corrupt(
            "zfile header",
            off!(flags),
            "the header's is-header flag is clear",
        ));
    }
    if !header.digest_ok() {
        return Err(digest_error("zfile header", 0, &header));
    }
    if len < 2 * HEADER_SPACE {
        return Err(Error::corrupt(
            "zfile trailer",
            0,
            format!("file is {len} bytes, too short for a header and a trailer"),
        ));
    }
    let at = len - HEADER_SPACE;
    inner.read_exact_at(&mut buf, at)?;
    let trailer = Record::parse(&buf, "zfile trailer", at).map_err(|e| match e {
        Error::BadMagic { .. } => Error::corrupt(
            "zfile trailer",
            at,
            "no trailer at the end of the file (truncated?)",
        ),
        e => e,
    })?;
    let want = FLAG_DATA | FLAG_SEALED;
    if trailer.flags & FLAG_HEADER != 0 || trailer.flags & want != want {
        return Err(Error::corrupt(
            "zfile trailer",
            at + off!(flags),
            format!(
                "flags {:#x} are not a sealed data-file trailer's",
                trailer.flags
            ),
        ));
    }
    if header.flags & FLAG_HEADER_OVERWRITE == 0 {
        if header.flags & FLAG_DATA == 0 {
            return Err(Error::corrupt(
                "zfile header",
                off!(flags),
                "the data-file flag is clear",
            ));
        }
        if !trailer.digest_ok() {
            return Err(digest_error("zfile trailer", at, &trailer));
        }
    }
    Ok((header, trailer))
}

fn digest_error(what: &'static str, at: u64, r: &Record) -> Error {
    Error::corrupt(
        what,
        at + off!(digest),
        format!(
            "digest mismatch (stored {:#010x}, computed {:#010x})",
            r.digest, r.computed_digest
        ),
    )
}

/// Checks the authoritative record's algorithm, block size and options.
fn check_record(rec: &Record, what: &'static str, rec_at: u64) -> Result<Algorithm> {
    let algo = Algorithm::from_id(rec.algo, what, rec_at + off!(algo))?;
    let bs = rec.block_size;
    if !bs.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs) {
        return Err(Error::unsupported(
            what,
            rec_at + off!(block_size),
            format!("block size {bs} (expected a power of two from 4 KiB to 64 KiB)"),
        ));
    }
    if rec.flags & FLAG_INDEX_COMPRESSED != 0 {
        return Err(Error::unsupported(
            what,
            rec_at + off!(flags),
            "compressed jump table",
        ));
    }
    if rec.use_dict != 0 || rec.dict_size != 0 {
        return Err(Error::unsupported(
            what,
            rec_at + off!(use_dict),
            format!(
                "dictionary (use_dict {}, dict_size {})",
                rec.use_dict, rec.dict_size
            ),
        ));
    }
    if rec.verify > 1 {
        return Err(Error::corrupt(
            what,
            rec_at + off!(verify),
            format!("verify is {}, expected 0 or 1", rec.verify),
        ));
    }
    Ok(algo)
}

/// Reads the jump table and turns it into block offsets (`n + 1` of them),
/// every block's on-disk length checked and every block inside the data
/// section.
fn read_jump_table<R: ReadAt>(
    inner: &R,
    rec: &Record,
    what: &'static str,
    rec_at: u64,
) -> Result<Vec<u64>> {
    let bs = rec.block_size;
    let n = rec.index_size;
    let want_blocks = rec.original_file_size.div_ceil(bs as u64);
    if n != want_blocks {
        return Err(Error::corrupt(
            what,
            rec_at + off!(index_size),
            format!(
                "{n} blocks in the jump table, but {} bytes in {bs}-byte blocks need {want_blocks}",
                rec.original_file_size
            ),
        ));
    }
    let table_bytes = checked_mul(n, 4, what, rec_at + off!(index_size))?;
    let table_end = checked_add(
        rec.index_offset,
        table_bytes,
        what,
        rec_at + off!(index_offset),
    )?;
    let limit = inner.len() - HEADER_SPACE;
    if rec.index_offset < HEADER_SPACE || table_end > limit {
        return Err(Error::corrupt(
            what,
            rec_at + off!(index_offset),
            format!(
                "jump table of {n} entries at {:#x} does not fit between the header and {limit:#x}",
                rec.index_offset
            ),
        ));
    }
    let mut table = vec![0u8; table_bytes as usize];
    inner.read_exact_at(&mut table, rec.index_offset)?;
    if rec.has_digest() {
        let crc = crc32c(&table);
        if crc != rec.index_crc {
            return Err(Error::corrupt(
                "zfile jump table",
                rec.index_offset,
                format!(
                    "index crc mismatch (stored {:#010x}, computed {crc:#010x})",
                    rec.index_crc
                ),
            ));
        }
    }
    let has_crc = rec.verify == 1;
    let min = if has_crc { CRC_SIZE + 1 } else { 1 };
    let max = bs as u64 + MAX_BLOCK_OVERHEAD + if has_crc { CRC_SIZE } else { 0 };
    let mut offsets = Vec::with_capacity(n as usize + 1);
    let mut pos = HEADER_SPACE;
    offsets.push(pos);
    for (i, e) in table.chunks_exact(4).enumerate() {
        let l = u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as u64;
        if l < min || l > max {
            return Err(Error::corrupt(
                "zfile jump table",
                rec.index_offset + 4 * i as u64,
                format!("block {i} is {l} bytes on disk, expected {min}..={max}"),
            ));
        }
        pos += l;
        if pos > rec.index_offset {
            return Err(Error::corrupt(
                "zfile jump table",
                rec.index_offset + 4 * i as u64,
                format!(
                    "block {i} ends at {pos:#x}, past the jump table at {:#x}",
                    rec.index_offset
                ),
            ));
        }
        offsets.push(pos);
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::zfile::{Algorithm, CacheOptions, Writer, WriterOptions};
    use crate::io::testing::CountingReadAt;
    use proptest::prelude::*;

    fn compress(data: &[u8], algorithm: Algorithm, block_size: u32, crc: bool) -> Vec<u8> {
        let opts = WriterOptions {
            algorithm,
            block_size,
            crc,
            ..Default::default()
        };
        let mut w = Writer::new(Vec::new(), opts).unwrap();
        w.push(data).unwrap();
        w.finish().unwrap().inner
    }

    fn sample_data(len: usize, seed: u64) -> Vec<u8> {
        let mut v = vec![0u8; len];
        crate::sample::fill(seed, 0, &mut v);
        v
    }

    #[test]
    fn small_sequential_reads_decompress_each_block_once() {
        let data = sample_data(1 << 20, 3);
        let file = compress(&data, Algorithm::Lz4, 65536, true);
        let counting = CountingReadAt::new(file);
        let z = ZFile::open(&counting).unwrap();
        let cache = BlockCache::new(CacheOptions::default());
        assert!(z.set_cache(&cache));
        let opened = counting.reads.lock().unwrap().len();
        let mut got = vec![0u8; data.len()];
        for (i, c) in got.chunks_mut(4096).enumerate() {
            z.read_exact_at(c, i as u64 * 4096).unwrap();
        }
        assert!(got == data);
        // One record read per 64 KiB block, however many 4 KiB reads it served.
        let reads = counting.reads.lock().unwrap()[opened..].to_vec();
        assert_eq!(reads.len(), 16);
        let s = cache.stats();
        assert_eq!(s.inserts, 16);
        assert_eq!(s.hits, 256 - 16);
        // Reading it all again decompresses nothing.
        for (i, c) in got.chunks_mut(4096).enumerate() {
            z.read_exact_at(c, i as u64 * 4096).unwrap();
        }
        assert_eq!(counting.reads.lock().unwrap().len(), opened + 16);
    }

    #[test]
    fn repeated_whole_block_reads_hit_the_cache() {
        let data = sample_data(256 << 10, 4);
        let file = compress(&data, Algorithm::Lz4, 4096, true);
        let counting = CountingReadAt::new(file);
        let z = ZFile::open(&counting).unwrap();
        let cache = BlockCache::new(CacheOptions::default());
        z.set_cache(&cache);
        let opened = counting.reads.lock().unwrap().len();
        let mut b = vec![0u8; 4096];
        for _ in 0..3 {
            for at in [0u64, 8192, 65536, 200 << 10] {
                z.read_exact_at(&mut b, at).unwrap();
                assert!(b[..] == data[at as usize..at as usize + 4096]);
            }
        }
        assert_eq!(counting.reads.lock().unwrap().len(), opened + 4);
    }

    #[test]
    fn one_read_per_run_of_blocks() {
        let data = sample_data(128 << 10, 5);
        let file = compress(&data, Algorithm::Lz4, 4096, true);
        let counting = CountingReadAt::new(file);
        let z = ZFile::open(&counting).unwrap();
        let opened = counting.reads.lock().unwrap().len();
        let mut b = vec![0u8; 100_000];
        z.read_exact_at(&mut b, 1000).unwrap();
        assert!(b[..] == data[1000..101_000]);
        let reads = counting.reads.lock().unwrap()[opened..].to_vec();
        assert_eq!(reads.len(), 1, "{reads:?}");
        assert_eq!(reads[0].0, z.block_range(0).start);
        assert_eq!(reads[0].0 + reads[0].1 as u64, z.block_range(24).end);
    }

    #[test]
    fn large_reads_stream_past_the_cache() {
        let data = sample_data(2 << 20, 6);
        let file = compress(&data, Algorithm::Lz4, 4096, true);
        let z = ZFile::open(file).unwrap();
        let cache = BlockCache::new(CacheOptions::default());
        z.set_cache(&cache);
        let mut b = vec![0u8; 1 << 20];
        // Unaligned: the two edge blocks are read in part and cached.
        z.read_exact_at(&mut b, 100).unwrap();
        assert!(b[..] == data[100..100 + (1 << 20)]);
        assert_eq!(cache.stats().entries, 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn cached_and_split_reads_match_the_data(
            len in 1usize..(1 << 20),
            seed in any::<u64>(),
            algorithm in prop_oneof![Just(Algorithm::Lz4), Just(Algorithm::Zstd)],
            block_size in prop_oneof![Just(4096u32), Just(8192), Just(32768), Just(65536)],
            crc in any::<bool>(),
            cache_size in prop_oneof![Just(0u64), Just(64 << 10), Just(1 << 20), Just(64 << 20)],
            windows in proptest::collection::vec((any::<u64>(), 0usize..(600 << 10)), 1..20),
        ) {
            let data = sample_data(len, seed);
            let file = compress(&data, algorithm, block_size, crc);
            let z = ZFile::open(file).unwrap();
            let cache = BlockCache::new(CacheOptions { size: cache_size });
            z.set_cache(&cache);
            for _ in 0..2 {
                for &(at, n) in &windows {
                    let at = (at % len as u64) as usize;
                    let n = n.min(len - at);
                    let mut got = vec![0x5Au8; n];
                    z.read_exact_at(&mut got, at as u64).unwrap();
                    prop_assert!(got[..] == data[at..at + n], "{} bytes at {}", n, at);
                }
            }
            let s = cache.stats();
            prop_assert!(s.bytes <= cache_size);
        }
    }
}
