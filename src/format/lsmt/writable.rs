//! `WritableLayer`: a writable LSMT layer (data file + index file, or a
//! sparse data file) that takes writes and discards and reads through to a
//! lower stack, as the block device of `attach --upper` needs.
//!
//! # Format (as `overlaybd-create` makes it)
//! * Append-only layer: every write appends its data at the end of the data
//!   file and one 16-byte record `{lba, sectors, moffset}` at the end of the
//!   index file; writes over 4 MiB are split into 4 MiB pieces, one record
//!   each. A discard appends zeroed records of at most 16383 sectors (no data).
//!   Records replay in file order, the later one winning.
//! * Sparse layer (data header flag 0x10): writes go in place at byte
//!   `4096 + offset`; discards punch holes. Nothing is logged: on reopen the
//!   index is rebuilt from the file's allocated extents, so a discarded range
//!   then shows the lower layers again (the reference behaves the same).
//!
//! # Concurrency
//! Every method takes `&self`. Data of concurrent writes is written in
//! parallel; appending a record and updating the in-memory index happen
//! together under one lock, so the order of records in the file is the order
//! in which writes took effect in memory, and a reopen replays the same state.
//!
//! # Crash semantics
//! [`WritableLayer::flush`] syncs the data file, then the index file. After it
//! returns, every write and discard that completed before it is durable and
//! survives a reopen. Work done after the last flush may be lost in part: the
//! page cache may write a record back before the data it points to, so after
//! a crash such a sector can read as stale bytes; a torn record at the end of
//! the index file is ignored on reopen. Records are written only after their
//! data, so a record never points past data that was never written.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use zerocopy::IntoBytes;

use super::header::{Header, HeaderFields};
use super::index::RwIndex;
use super::layer::{Kind, Layer};
use super::raw::*;
use super::segment::{Segment, MAX_LENGTH, MAX_OFFSET};
use crate::error::{Error, Result};
use crate::format::uuid::Uuid;
use crate::io::atomic::AtomicFile;
use crate::io::lock::{lock, LockMode};
use crate::io::{check_range, ReadAt};

/// Largest piece of one write, in bytes (the reference's `MAX_IO_SIZE`).
pub const MAX_IO_SIZE: u64 = 4 << 20;

/// Header flags of a writable data file.
pub const RW_DATA_FLAGS: u32 = FLAG_HEADER | FLAG_DATA;
/// Header flags of a writable index file.
pub const RW_INDEX_FLAGS: u32 = FLAG_HEADER;

/// How to create a writable layer.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Virtual disk size in bytes (a multiple of 512; 0 = inherit from the
    /// lower layers when stacked).
    pub virtual_size: u64,
    /// Sparse layer: data stored in place, the index file left empty.
    pub sparse: bool,
    /// The layer's uuid (default: a random version-4 uuid, as the reference).
    pub uuid: Option<Uuid>,
    /// The parent layer's uuid (default: null).
    pub parent_uuid: Option<Uuid>,
    /// Replace existing files.
    pub force: bool,
}

/// What [`create`] made.
#[derive(Debug, Clone, Serialize)]
pub struct CreateReport {
    /// The data file.
    pub data: String,
    /// The index file.
    pub index: String,
    /// Virtual size in bytes.
    pub virtual_size: u64,
    /// Sparse layer.
    pub sparse: bool,
    /// The layer's uuid.
    pub uuid: String,
    /// The parent's uuid.
    pub parent_uuid: String,
}

/// Creates an empty writable layer as `overlaybd-create` does: the data file
/// holds its header (flags 0x03, or 0x13 and a length of `vsize + 4096` when
/// sparse), the index file its header (flags 0x01, `index_offset` 4096), or
/// nothing when sparse. Both appear atomically.
///
/// # Errors
/// [`Error::Invalid`] for a size that is not a multiple of 512 or existing
/// files without `force`; I/O errors.
pub fn create(data: &Path, index: &Path, opts: &CreateOptions) -> Result<CreateReport> {
    let vs = opts.virtual_size;
    if vs % SECTOR_SIZE != 0 || vs / SECTOR_SIZE > MAX_OFFSET {
        return Err(Error::invalid(
            "virtual size",
            format!("{vs} is not a multiple of 512 within the largest LBA"),
        ));
    }
    if same_file(data, index) {
        return Err(Error::invalid(
            "create",
            format!(
                "{} is given as both the data file and the index file",
                data.display()
            ),
        ));
    }
    let uuid = opts.uuid.unwrap_or_else(Uuid::random);
    let parent = opts.parent_uuid.unwrap_or_else(Uuid::null);
    let fields = |flags, index_offset| HeaderFields {
        flags,
        index_offset,
        index_size: 0,
        virtual_size: vs,
        uuid,
        parent_uuid: parent,
        user_tag: Vec::new(),
    };
    let mut d = AtomicFile::create(data, opts.force)?;
    let mut i = AtomicFile::create(index, opts.force)?;
    let data_flags = RW_DATA_FLAGS | if opts.sparse { FLAG_SPARSE } else { 0 };
    write_all(
        d.file_mut(),
        &fields(data_flags, 0).to_bytes()?,
        "lsmt data header",
    )?;
    if opts.sparse {
        d.file()
            .set_len(vs + HEADER_SPACE)
            .map_err(|e| Error::io("lsmt data file", 0, e))?;
    } else {
        write_all(
            i.file_mut(),
            &fields(RW_INDEX_FLAGS, HEADER_SPACE).to_bytes()?,
            "lsmt index header",
        )?;
    }
    // Both or neither: a data file whose index could not be named is
    // removed again (unless it replaced an older one under `force`).
    d.commit()?;
    if let Err(e) = i.commit() {
        if !opts.force {
            let _ = std::fs::remove_file(data);
        }
        return Err(e);
    }
    Ok(CreateReport {
        data: data.display().to_string(),
        index: index.display().to_string(),
        virtual_size: vs,
        sparse: opts.sparse,
        uuid: uuid.as_str().to_string(),
        parent_uuid: parent.as_str().to_string(),
    })
}

/// True when `a` and `b` name the same file (the same path, or the same
/// existing file by device and inode).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if a == b {
        return true;
    }
    let canon = |p: &Path| {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::canonicalize(dir)
            .ok()
            .map(|d| d.join(p.file_name().unwrap_or_default()))
    };
    if canon(a).is_some_and(|x| Some(x) == canon(b)) {
        return true;
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

fn write_all(f: &mut File, b: &[u8], what: &'static str) -> Result<()> {
    use std::io::Write;
    f.write_all(b).map_err(|e| Error::io(what, 0, e))
}

/// Appending state, guarded by one lock.
struct Log {
    /// Where the next record goes in the index file.
    index_end: u64,
}

/// A writable layer open for reads and writes. See the module docs for the
/// format, the concurrency rules and the crash semantics.
pub struct WritableLayer {
    data: File,
    index: Option<File>,
    header: Header,
    virtual_size: u64,
    lower: Option<Arc<dyn ReadAt>>,
    map: RwLock<RwIndex>,
    /// End of the data file: where the next append goes.
    data_end: Mutex<u64>,
    log: Mutex<Log>,
}

impl std::fmt::Debug for WritableLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WritableLayer")
            .field("sparse", &self.is_sparse())
            .field("virtual_size", &self.virtual_size)
            .finish()
    }
}

impl WritableLayer {
    /// Opens a writable layer for writing, on top of `lower` (whose content
    /// shows where this layer maps nothing). A virtual size of 0 in the
    /// layer's header means the lower stack's size.
    ///
    /// # Errors
    /// Format errors of the layer files (as [`Layer::open_rw`]); I/O errors.
    pub fn open(data: &Path, index: &Path, lower: Option<Arc<dyn ReadAt>>) -> Result<Self> {
        let open = |p: &Path, what| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .map_err(|e| Error::io(what, 0, e))
        };
        let d = open(data, "lsmt data file")?;
        // One writer at a time (see `io::lock`): the locks live as long as
        // the files, that is as long as this layer.
        lock(&d, data, LockMode::Exclusive)?;
        let sparse_probe = {
            let mut b = vec![0u8; HEADER_SPACE as usize];
            d.read_exact_at(&mut b, 0)
                .map_err(|e| Error::io("lsmt data header", 0, e))?;
            Header::parse(&b, "lsmt data header", 0)?.is_sparse()
        };
        // A sparse layer's index file is not used (it may even be missing).
        let i = if sparse_probe {
            None
        } else {
            let f = open(index, "lsmt index file")?;
            lock(&f, index, LockMode::Exclusive)?;
            Some(f)
        };
        let layer = Layer::open_rw(
            d.try_clone()
                .map_err(|e| Error::io("lsmt data file", 0, e))?,
            match &i {
                Some(f) => f
                    .try_clone()
                    .map_err(|e| Error::io("lsmt index file", 0, e))?,
                None => d
                    .try_clone()
                    .map_err(|e| Error::io("lsmt data file", 0, e))?,
            },
        )?;
        let mut map = RwIndex::new();
        for s in layer.segments() {
            map.insert(*s);
        }
        let own = layer.virtual_size();
        let virtual_size = match (own, &lower) {
            (0, Some(l)) => l.len(),
            (v, _) => v,
        };
        let data_end = d
            .metadata()
            .map_err(|e| Error::io("lsmt data file", 0, e))?
            .len();
        let index_end = match &i {
            Some(f) => {
                let len = f
                    .metadata()
                    .map_err(|e| Error::io("lsmt index file", 0, e))?
                    .len();
                // A torn record at the end is dropped: the next one overwrites it.
                HEADER_SPACE + (len - HEADER_SPACE) / SEGMENT_SIZE * SEGMENT_SIZE
            }
            None => 0,
        };
        debug_assert!(matches!(
            layer.kind(),
            Kind::Writable | Kind::SparseWritable
        ));
        Ok(WritableLayer {
            data: d,
            index: i,
            header: layer.header().clone(),
            virtual_size,
            lower,
            map: RwLock::new(map),
            data_end: Mutex::new(data_end.next_multiple_of(SECTOR_SIZE)),
            log: Mutex::new(Log { index_end }),
        })
    }

    /// True for a sparse layer.
    pub fn is_sparse(&self) -> bool {
        self.header.is_sparse()
    }

    /// The data file's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The layer's index entries now, in LBA order.
    pub fn segments(&self) -> Vec<Segment> {
        self.map.read().map(|m| m.segments()).unwrap_or_default()
    }

    fn check(&self, offset: u64, len: u64, what: &'static str) -> Result<()> {
        if offset % SECTOR_SIZE != 0 || len % SECTOR_SIZE != 0 {
            return Err(Error::invalid(
                what,
                format!("{len} bytes at {offset:#x} is not 512-byte aligned"),
            ));
        }
        check_range(what, offset, len as usize, self.virtual_size)
    }

    /// Writes `buf` at byte `offset` (both multiples of 512).
    ///
    /// # Errors
    /// [`Error::Invalid`] for unaligned I/O, [`Error::OutOfRange`] past the
    /// virtual size, I/O errors.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check(offset, buf.len() as u64, "write")?;
        for (k, piece) in buf.chunks(MAX_IO_SIZE as usize).enumerate() {
            self.write_piece(piece, offset + k as u64 * MAX_IO_SIZE)?;
        }
        Ok(())
    }

    fn write_piece(&self, piece: &[u8], offset: u64) -> Result<()> {
        let lba = offset / SECTOR_SIZE;
        let sectors = piece.len() as u64 / SECTOR_SIZE;
        if sectors == 0 {
            return Ok(());
        }
        if self.is_sparse() {
            let at = HEADER_SPACE + offset;
            self.data
                .write_all_at(piece, at)
                .map_err(|e| Error::io("lsmt data file", at, e))?;
            let s = Segment {
                offset: lba,
                length: sectors as u32,
                moffset: lba + HEADER_SPACE / SECTOR_SIZE,
                zeroed: false,
                tag: 0,
            };
            self.map_insert(s);
            return Ok(());
        }
        let pos = {
            let mut end = self.lock_data()?;
            let pos = *end;
            *end += piece.len() as u64;
            pos
        };
        self.data
            .write_all_at(piece, pos)
            .map_err(|e| Error::io("lsmt data file", pos, e))?;
        self.log(&[Segment {
            offset: lba,
            length: sectors as u32,
            moffset: pos / SECTOR_SIZE,
            zeroed: false,
            tag: 0,
        }])
    }

    fn lock_data(&self) -> Result<std::sync::MutexGuard<'_, u64>> {
        self.data_end
            .lock()
            .map_err(|_| Error::invalid("writable layer", "a writer panicked"))
    }

    fn map_insert(&self, s: Segment) {
        if let Ok(mut m) = self.map.write() {
            m.insert(s);
        }
    }

    /// Appends records and applies them in memory, together.
    fn log(&self, segs: &[Segment]) -> Result<()> {
        let Some(index) = &self.index else {
            return Err(Error::invalid("writable layer", "no index file"));
        };
        let mut bytes = Vec::with_capacity(segs.len() * SEGMENT_SIZE as usize);
        for s in segs {
            bytes.extend_from_slice(s.encode()?.as_bytes());
        }
        let mut log = self
            .log
            .lock()
            .map_err(|_| Error::invalid("writable layer", "a writer panicked"))?;
        index
            .write_all_at(&bytes, log.index_end)
            .map_err(|e| Error::io("lsmt index file", log.index_end, e))?;
        log.index_end += bytes.len() as u64;
        let mut m = self
            .map
            .write()
            .map_err(|_| Error::invalid("writable layer", "a reader panicked"))?;
        for s in segs {
            m.insert(*s);
        }
        Ok(())
    }

    /// Discards `len` bytes at `offset` (multiples of 512): they read as
    /// zeros from now on, hiding the lower layers. Sparse layers punch a hole
    /// (after a reopen the range shows the lower layers again).
    ///
    /// # Errors
    /// As [`WritableLayer::write_at`].
    pub fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.check(offset, len, "discard")?;
        let mut lba = offset / SECTOR_SIZE;
        let end = lba + len / SECTOR_SIZE;
        if self.is_sparse() {
            use rustix::fs::{fallocate, FallocateFlags};
            let at = HEADER_SPACE + offset;
            fallocate(
                &self.data,
                FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                at,
                len,
            )
            .map_err(|e| Error::io("lsmt data file", at, e.into()))?;
            while lba < end {
                let n = (end - lba).min(MAX_LENGTH as u64);
                self.map_insert(Segment {
                    offset: lba,
                    length: n as u32,
                    moffset: lba + HEADER_SPACE / SECTOR_SIZE,
                    zeroed: true,
                    tag: 0,
                });
                lba += n;
            }
            return Ok(());
        }
        // Zeroed records carry the data file's end as their moffset (what has
        // been written, not what concurrent writes have reserved, so that the
        // record stays inside the file a reopen checks it against).
        let eof = self
            .data
            .metadata()
            .map_err(|e| Error::io("lsmt data file", 0, e))?
            .len()
            / SECTOR_SIZE;
        let mut segs = Vec::new();
        while lba < end {
            let n = (end - lba).min(MAX_LENGTH as u64);
            segs.push(Segment {
                offset: lba,
                length: n as u32,
                moffset: eof,
                zeroed: true,
                tag: 0,
            });
            lba += n;
        }
        if segs.is_empty() {
            return Ok(());
        }
        self.log(&segs)
    }

    /// Makes every completed write and discard durable: syncs the data file,
    /// then the index file.
    ///
    /// # Errors
    /// I/O errors of `fdatasync`.
    pub fn flush(&self) -> Result<()> {
        self.data
            .sync_data()
            .map_err(|e| Error::io("lsmt data file", 0, e))?;
        if let Some(i) = &self.index {
            i.sync_data()
                .map_err(|e| Error::io("lsmt index file", 0, e))?;
        }
        Ok(())
    }

    fn read_data(&self, dst: &mut [u8], at: u64) -> Result<()> {
        // Past the end of the file (a sparse tail, or data of a write still
        // in flight) reads as zeros.
        let mut done = 0;
        while done < dst.len() {
            match self.data.read_at(&mut dst[done..], at + done as u64) {
                Ok(0) => {
                    dst[done..].fill(0);
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("lsmt data file", at + done as u64, e)),
            }
        }
        Ok(())
    }

    fn read_lower(&self, dst: &mut [u8], offset: u64) -> Result<()> {
        match &self.lower {
            Some(l) => {
                let have = (l.len().saturating_sub(offset) as usize).min(dst.len());
                l.read_exact_at(&mut dst[..have], offset)?;
                dst[have..].fill(0);
                Ok(())
            }
            None => {
                dst.fill(0);
                Ok(())
            }
        }
    }
}

impl ReadAt for WritableLayer {
    fn len(&self) -> u64 {
        self.virtual_size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range("writable layer", offset, buf.len(), self.virtual_size)?;
        if buf.is_empty() {
            return Ok(());
        }
        let end = offset + buf.len() as u64;
        let first = offset / SECTOR_SIZE;
        let last = end.div_ceil(SECTOR_SIZE);
        let segs = self
            .map
            .read()
            .map_err(|_| Error::invalid("writable layer", "a writer panicked"))?
            .overlapping(first, last);
        let mut pos = offset;
        for s in segs {
            let s_start = (s.offset * SECTOR_SIZE).max(offset);
            let s_end = (s.end() * SECTOR_SIZE).min(end);
            if s_start >= s_end {
                continue;
            }
            if pos < s_start {
                let (a, b) = ((pos - offset) as usize, (s_start - offset) as usize);
                self.read_lower(&mut buf[a..b], pos)?;
            }
            let (a, b) = ((s_start - offset) as usize, (s_end - offset) as usize);
            if s.zeroed {
                buf[a..b].fill(0);
            } else {
                let at = s.moffset * SECTOR_SIZE + (s_start - s.offset * SECTOR_SIZE);
                self.read_data(&mut buf[a..b], at)?;
            }
            pos = s_end;
        }
        if pos < end {
            let a = (pos - offset) as usize;
            self.read_lower(&mut buf[a..], pos)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn layer(dir: &Path, sparse: bool, vs: u64, lower: Option<Arc<dyn ReadAt>>) -> WritableLayer {
        let (d, i) = (dir.join("d"), dir.join("i"));
        create(
            &d,
            &i,
            &CreateOptions {
                virtual_size: vs,
                sparse,
                force: true,
                ..Default::default()
            },
        )
        .unwrap();
        WritableLayer::open(&d, &i, lower).unwrap()
    }

    #[test]
    fn create_matches_the_reference_layout() {
        let dir = tempfile::tempdir().unwrap();
        let (d, i) = (dir.path().join("d"), dir.path().join("i"));
        let parent = Uuid::parse("0000002a-0000-4000-8000-000000000000").unwrap();
        let r = create(
            &d,
            &i,
            &CreateOptions {
                virtual_size: 1 << 30,
                parent_uuid: Some(parent),
                ..Default::default()
            },
        )
        .unwrap();
        let db = std::fs::read(&d).unwrap();
        let ib = std::fs::read(&i).unwrap();
        assert_eq!((db.len(), ib.len()), (4096, 4096));
        let dh = Header::parse(&db, "d", 0).unwrap();
        let ih = Header::parse(&ib, "i", 0).unwrap();
        assert_eq!((dh.flags, ih.flags), (0x03, 0x01));
        assert_eq!((dh.index_offset, ih.index_offset), (0, 4096));
        assert_eq!(dh.virtual_size, 1 << 30);
        assert_eq!(dh.uuid, r.uuid);
        assert_eq!(ih.uuid, r.uuid);
        assert_eq!(dh.parent_uuid, "0000002A-0000-4000-8000-000000000000");
        // Random v4 uuid.
        assert_eq!(&r.uuid[14..15], "4");
        // Compare everything else with the reference's L1 files (uuids masked).
        let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/overlaybd");
        let rd = std::fs::read(fx.join("L1.data")).unwrap();
        let ri = std::fs::read(fx.join("L1.index")).unwrap();
        let mask = |b: &[u8]| {
            let mut v = b[..4096].to_vec();
            v[56..130].fill(0);
            v
        };
        assert_eq!(mask(&db), mask(&rd));
        assert_eq!(mask(&ib), mask(&ri));
        assert!(create(&d, &i, &CreateOptions::default()).is_err());
    }

    #[test]
    fn sparse_create_truncates_and_leaves_the_index_empty() {
        let dir = tempfile::tempdir().unwrap();
        let l = layer(dir.path(), true, 1 << 20, None);
        assert!(l.is_sparse());
        assert_eq!(l.header().flags, 0x13);
        assert_eq!(
            std::fs::metadata(dir.path().join("d")).unwrap().len(),
            (1 << 20) + 4096
        );
        assert_eq!(std::fs::metadata(dir.path().join("i")).unwrap().len(), 0);
    }

    #[test]
    fn spec_example_b_records() {
        let dir = tempfile::tempdir().unwrap();
        let l = layer(dir.path(), false, 1 << 30, None);
        l.write_at(&[0xA; 8192], 0).unwrap();
        l.write_at(&[0xB; 2048], 4096).unwrap();
        l.flush().unwrap();
        let ib = std::fs::read(dir.path().join("i")).unwrap();
        assert_eq!(ib.len(), 4096 + 32);
        let recs = super::super::index::decode(&ib[4096..]);
        let seg = |offset, length, moffset| Segment {
            offset,
            length,
            moffset,
            zeroed: false,
            tag: 0,
        };
        assert_eq!(recs, vec![seg(0, 16, 8), seg(8, 4, 24)]);
        assert_eq!(
            l.segments(),
            vec![seg(0, 8, 8), seg(8, 4, 24), seg(12, 4, 20)]
        );
    }

    #[test]
    fn big_writes_split_and_discards_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let l = layer(dir.path(), false, 64 << 20, None);
        l.write_at(&vec![1u8; 9 << 20], 0).unwrap();
        l.discard(0, 20000 * 512).unwrap();
        let ib = std::fs::read(dir.path().join("i")).unwrap();
        let recs = super::super::index::decode(&ib[4096..]);
        let lens: Vec<u32> = recs.iter().map(|s| s.length).collect();
        assert_eq!(lens, [8192, 8192, 2048, 16383, 3617]);
        assert!(recs[3].zeroed && recs[3].moffset == (4096 + (9 << 20)) / 512);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write(u64, u64, u8),
        Discard(u64, u64),
        Reopen,
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        let op = prop_oneof![
            4 => (0u64..200, 1u64..40, any::<u8>()).prop_map(|(o, l, v)| Op::Write(o, l, v)),
            1 => (0u64..200, 1u64..60).prop_map(|(o, l)| Op::Discard(o, l)),
            1 => Just(Op::Reopen),
        ];
        proptest::collection::vec(op, 1..25)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
        #[test]
        fn reads_match_a_model(ops in ops(), lower_seed: u64) {
            const SECTORS: u64 = 256;
            let dir = tempfile::tempdir().unwrap();
            let mut lower = vec![0u8; (SECTORS * 512) as usize];
            crate::sample::Rng::new(lower_seed).fill(&mut lower);
            let lower: Arc<dyn ReadAt> = Arc::new(lower);
            let mut model = {
                let mut v = vec![0u8; (SECTORS * 512) as usize];
                lower.read_exact_at(&mut v, 0).unwrap();
                v
            };
            let mut l = layer(dir.path(), false, SECTORS * 512, Some(lower.clone()));
            for op in ops {
                match op {
                    Op::Write(o, n, v) => {
                        let n = n.min(SECTORS - o.min(SECTORS));
                        if n == 0 { continue; }
                        let buf = vec![v; (n * 512) as usize];
                        l.write_at(&buf, o * 512).unwrap();
                        model[(o * 512) as usize..((o + n) * 512) as usize].fill(v);
                    }
                    Op::Discard(o, n) => {
                        let n = n.min(SECTORS - o.min(SECTORS));
                        if n == 0 { continue; }
                        l.discard(o * 512, n * 512).unwrap();
                        model[(o * 512) as usize..((o + n) * 512) as usize].fill(0);
                    }
                    Op::Reopen => {
                        l.flush().unwrap();
                        drop(l);
                        l = WritableLayer::open(&dir.path().join("d"), &dir.path().join("i"), Some(lower.clone())).unwrap();
                    }
                }
                let mut got = vec![0u8; model.len()];
                l.read_exact_at(&mut got, 0).unwrap();
                prop_assert!(got == model);
            }
            // Unaligned reads too.
            let mut got = vec![0u8; 1000];
            l.read_exact_at(&mut got, 777).unwrap();
            prop_assert!(got[..] == model[777..1777]);
        }
    }

    #[test]
    fn concurrent_writers_agree_with_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let l = Arc::new(layer(dir.path(), false, 4 << 20, None));
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let l = l.clone();
                s.spawn(move || {
                    for k in 0..200u64 {
                        let lba = (k * 7 + t as u64 * 13) % 8000;
                        l.write_at(&[t + 1; 1024], lba * 512).unwrap();
                        if k % 50 == 0 {
                            l.discard(lba * 512, 4096).unwrap();
                        }
                    }
                });
            }
        });
        l.flush().unwrap();
        let mut before = vec![0u8; 4 << 20];
        l.read_exact_at(&mut before, 0).unwrap();
        // One writer at a time: the layer is closed before it is reopened.
        drop(l);
        let again =
            WritableLayer::open(&dir.path().join("d"), &dir.path().join("i"), None).unwrap();
        let mut after = vec![0u8; 4 << 20];
        again.read_exact_at(&mut after, 0).unwrap();
        assert!(before == after);
    }

    #[test]
    fn rejects_unaligned_and_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let l = layer(dir.path(), false, 1 << 20, None);
        assert!(l.write_at(&[0; 100], 0).is_err());
        assert!(l.write_at(&[0; 512], 100).is_err());
        assert!(l.write_at(&[0; 512], 1 << 20).is_err());
        assert!(l.discard(0, (1 << 20) + 512).is_err());
    }

    #[test]
    fn sparse_writes_in_place_and_discards_punch_holes() {
        let dir = tempfile::tempdir().unwrap();
        let l = layer(dir.path(), true, 1 << 20, None);
        l.write_at(&[7u8; 8192], 4096).unwrap();
        l.discard(4096, 4096).unwrap();
        let mut b = vec![1u8; 8192];
        l.read_exact_at(&mut b, 4096).unwrap();
        assert!(b[..4096].iter().all(|&x| x == 0));
        assert!(b[4096..].iter().all(|&x| x == 7));
        let d = std::fs::read(dir.path().join("d")).unwrap();
        assert!(d[4096 + 8192..4096 + 12288].iter().all(|&x| x == 7));
        l.flush().unwrap();
        drop(l);
        let again =
            WritableLayer::open(&dir.path().join("d"), &dir.path().join("i"), None).unwrap();
        let mut c = vec![1u8; 8192];
        again.read_exact_at(&mut c, 4096).unwrap();
        assert_eq!(b, c);
    }
}
