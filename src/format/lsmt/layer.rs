//! `Layer`: one LSMT layer opened for reading, whatever its on-disk shape.

use std::fs::File;
use std::sync::Arc;

use serde::Serialize;

use super::header::Header;
use super::index::{self, RwIndex};
use super::raw::*;
use super::segment::{Segment, MAX_LENGTH};
use crate::error::{checked_add, checked_mul, Error, Result};
use crate::io::FileAt;
use crate::io::ReadAt;

/// Byte offset of a field of [`RawHeader`].
macro_rules! off {
    ($field:ident) => {
        core::mem::offset_of!(RawHeader, $field) as u64
    };
}

/// Memory an index entry costs while a layer is opened and stacked: the
/// entry as read (16 bytes), decoded ([`Segment`]) and, at most once, in a
/// stack's merged index (16 bytes and its share of the search tree). An
/// upper bound, used to refuse an index before it is allocated.
pub const INDEX_BYTES_PER_ENTRY: u64 = SEGMENT_SIZE + core::mem::size_of::<Segment>() as u64 + 24;

/// A budget of index memory shared by the layers of a stack: each layer
/// takes its share before it allocates its index, so that what a file
/// claims (a few bytes can claim a billion entries) never decides how much
/// memory obd uses.
#[derive(Debug)]
pub struct IndexBudget {
    limit: u64,
    left: std::sync::atomic::AtomicU64,
}

impl IndexBudget {
    /// The default budget: 1 GiB, room for about 18 million entries (the
    /// largest real images have a few hundred thousand).
    pub const DEFAULT: u64 = 1 << 30;

    /// A budget of `bytes`.
    pub fn new(bytes: u64) -> Self {
        IndexBudget {
            limit: bytes,
            left: std::sync::atomic::AtomicU64::new(bytes),
        }
    }

    /// The budget in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Takes the memory `entries` index entries need.
    ///
    /// # Errors
    /// [`Error::Invalid`] when that is more than what is left.
    pub fn take(&self, entries: u64) -> Result<()> {
        use std::sync::atomic::Ordering;
        let need = entries.saturating_mul(INDEX_BYTES_PER_ENTRY);
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                l.checked_sub(need)
            })
            .map(drop)
            .map_err(|left| {
                Error::invalid(
                    "index memory",
                    format!(
                        "{entries} index entries need {} MiB, more than the {} MiB left of the \
                         {} MiB budget (--max-index-memory)",
                        need.div_ceil(1 << 20),
                        left >> 20,
                        self.limit >> 20
                    ),
                )
            })
    }
}

impl Default for IndexBudget {
    fn default() -> Self {
        Self::new(Self::DEFAULT)
    }
}

/// The largest virtual size the index can address: 2^50 sectors.
pub const MAX_VIRTUAL_SIZE: u64 = (1 << 50) * SECTOR_SIZE;

/// Checks a declared virtual size: a multiple of 512 the index can address
/// (0 means "inherit" and is checked by the stack).
fn check_virtual_size(h: &Header, what: &'static str, at: u64) -> Result<()> {
    let v = h.virtual_size;
    if v % SECTOR_SIZE != 0 || v > MAX_VIRTUAL_SIZE {
        return Err(Error::corrupt(
            what,
            at + off!(virtual_size),
            format!("virtual size {v} is not a multiple of 512 up to 2^59 bytes"),
        ));
    }
    Ok(())
}

/// What kind of layer file this is. Its name (in JSON and tables) is the
/// one `inspect`, `verify` and the fixtures' manifest use for the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    /// A committed read-only layer (`overlaybd-commit`/`merge` output).
    #[serde(rename = "lsmt_ro")]
    Committed,
    /// A writable data file sealed in place (`overlaybd-commit --seal`).
    #[serde(rename = "lsmt_sealed")]
    SealedInPlace,
    /// A writable layer: data file + index file.
    #[serde(rename = "lsmt_rw")]
    Writable,
    /// A sparse writable layer: data stored in place, index from file extents.
    #[serde(rename = "lsmt_rw_sparse")]
    SparseWritable,
}

impl Kind {
    /// The kind's name: `lsmt_ro`, `lsmt_sealed`, `lsmt_rw`, `lsmt_rw_sparse`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Committed => "lsmt_ro",
            Kind::SealedInPlace => "lsmt_sealed",
            Kind::Writable => "lsmt_rw",
            Kind::SparseWritable => "lsmt_rw_sparse",
        }
    }
}

/// A layer ready to take part in a stack. Its fields are checked when it
/// is opened and read through accessors.
pub struct Layer {
    kind: Kind,
    header: Header,
    trailer: Option<Header>,
    index_header: Option<Header>,
    segments: Vec<Segment>,
    index_entries: u64,
    data: Arc<dyn ReadAt>,
    data_end_sectors: u64,
}

impl std::fmt::Debug for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer")
            .field("kind", &self.kind)
            .field("segments", &self.segments.len())
            .field("virtual_size", &self.virtual_size())
            .finish()
    }
}

impl Layer {
    /// A committed layer made by hand (tests of the read engine): `header`
    /// as header and trailer, `segments` as they are.
    #[cfg(test)]
    pub(crate) fn by_hand(header: Header, segments: Vec<Segment>, data: Arc<dyn ReadAt>) -> Self {
        Layer {
            kind: Kind::Committed,
            trailer: Some(header.clone()),
            header,
            index_header: None,
            index_entries: segments.len() as u64,
            segments,
            data,
            data_end_sectors: 1 << 20,
        }
    }

    /// The layer's shape.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The record at offset 0 of the data file.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The trailer of a read-only layer.
    pub fn trailer(&self) -> Option<&Header> {
        self.trailer.as_ref()
    }

    /// The header of a writable layer's index file.
    pub fn index_header(&self) -> Option<&Header> {
        self.index_header.as_ref()
    }

    /// Index entries: sorted, non-overlapping, tags zeroed, validated.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Index entries on disk, padding included (read-only layers) or
    /// records in the index file (writable layers).
    pub fn index_entries(&self) -> u64 {
        self.index_entries
    }

    /// Where data lives: `moffset * 512` is a byte offset in this view.
    pub fn data(&self) -> &Arc<dyn ReadAt> {
        &self.data
    }

    /// End of the data section in sectors (`index_offset/512` or the data
    /// file size).
    pub fn data_end_sectors(&self) -> u64 {
        self.data_end_sectors
    }

    /// The virtual size this layer declares: the trailer's for read-only
    /// layers, the index header's for writable ones, the data header's for
    /// sparse ones.
    pub fn virtual_size(&self) -> u64 {
        self.authoritative().virtual_size
    }

    /// The record whose uuid and virtual size are in force.
    pub fn authoritative(&self) -> &Header {
        match self.kind {
            Kind::Committed | Kind::SealedInPlace => self.trailer.as_ref().unwrap_or(&self.header),
            Kind::Writable => self.index_header.as_ref().unwrap_or(&self.header),
            Kind::SparseWritable => &self.header,
        }
    }

    /// Opens a sealed read-only layer (committed or sealed in place).
    ///
    /// # Errors
    /// [`Error::BadMagic`] / [`Error::Corrupt`] for anything that does not
    /// satisfy the read-only layer rules; [`Error::Io`] from `r`.
    pub fn open_ro(r: Arc<dyn ReadAt>) -> Result<Self> {
        Self::open_ro_within(r, &IndexBudget::default())
    }

    /// [`Layer::open_ro`], its index taken from `budget` before it is read.
    ///
    /// # Errors
    /// As [`Layer::open_ro`]; [`Error::Invalid`] when the index does not fit
    /// the budget.
    pub fn open_ro_within(r: Arc<dyn ReadAt>, budget: &IndexBudget) -> Result<Self> {
        let len = r.len();
        if len < 2 * HEADER_SPACE {
            return Err(Error::corrupt(
                "lsmt header",
                0,
                format!("file is {len} bytes, too short for an LSMT header and trailer"),
            ));
        }
        let mut buf = vec![0u8; HEADER_SPACE as usize];
        r.read_exact_at(&mut buf, 0)?;
        let header = Header::parse(&buf, "lsmt header", 0)?;
        if !header.is_header() || !header.is_data() {
            return Err(Error::corrupt(
                "lsmt header",
                off!(flags),
                format!("flags {:#x} are not a data-file header's", header.flags),
            ));
        }
        let at = len - HEADER_SPACE;
        r.read_exact_at(&mut buf, at)?;
        let trailer = Header::parse(&buf, "lsmt trailer", at).map_err(|e| match e {
            Error::BadMagic { .. } if !header.is_sealed() => Error::corrupt(
                "lsmt trailer",
                at,
                "no trailer: this is a writable layer's data file, not a read-only layer (commit it first; \
                 commands that take a writable top layer take it with its index as --upper DATA INDEX)",
            ),
            Error::BadMagic { .. } => Error::corrupt(
                "lsmt trailer",
                at,
                "no trailer at the end of the file (truncated?)",
            ),
            e => e,
        })?;
        if trailer.is_header() || !trailer.is_data() || !trailer.is_sealed() {
            return Err(Error::corrupt(
                "lsmt trailer",
                at + off!(flags),
                format!(
                    "flags {:#x} are not a sealed data-file trailer's (a writable layer? commit it first)",
                    trailer.flags
                ),
            ));
        }
        let n = trailer.index_size;
        let bytes = checked_mul(n, SEGMENT_SIZE, "lsmt trailer", at + off!(index_size))?;
        let end = checked_add(
            trailer.index_offset,
            bytes,
            "lsmt trailer",
            at + off!(index_offset),
        )?;
        if n > MAX_RO_INDEX_ENTRIES {
            return Err(Error::corrupt(
                "lsmt trailer",
                at + off!(index_size),
                format!(
                    "index of {n} entries: more than the {MAX_RO_INDEX_ENTRIES} a read-only layer may have"
                ),
            ));
        }
        if end > at {
            return Err(Error::corrupt(
                "lsmt trailer",
                at + off!(index_offset),
                format!(
                    "index of {n} entries at {:#x} does not fit before the trailer at {at:#x}",
                    trailer.index_offset
                ),
            ));
        }
        check_virtual_size(&trailer, "lsmt trailer", at)?;
        budget.take(n)?;
        let mut raw = vec![0u8; bytes as usize];
        r.read_exact_at(&mut raw, trailer.index_offset)?;
        let segments = index::decode(&raw);
        let data_end = trailer.index_offset / SECTOR_SIZE;
        index::validate_ro(&segments, data_end, "lsmt index", trailer.index_offset)?;
        let kind = if header.is_sealed() {
            Kind::Committed
        } else {
            Kind::SealedInPlace
        };
        Ok(Layer {
            kind,
            header,
            trailer: Some(trailer),
            index_header: None,
            segments,
            index_entries: n,
            data: r,
            data_end_sectors: data_end,
        })
    }

    /// Opens a writable layer from its data and index files. A sparse data
    /// file (flag bit 4) ignores the index file.
    ///
    /// # Errors
    /// [`Error::BadMagic`] / [`Error::Corrupt`] when either file is not what
    /// `overlaybd-create` makes; [`Error::Io`].
    pub fn open_rw(data: File, index_file: File) -> Result<Self> {
        Self::open_rw_within(data, index_file, &IndexBudget::default())
    }

    /// [`Layer::open_rw`], its index taken from `budget` before it is read.
    ///
    /// # Errors
    /// As [`Layer::open_rw`]; [`Error::Invalid`] when the index does not fit
    /// the budget.
    pub fn open_rw_within(data: File, index_file: File, budget: &IndexBudget) -> Result<Self> {
        let data = FileAt::new(data)?;
        let header = read_data_header(&data)?;
        if header.is_sparse() {
            return Self::open_sparse(data, header, budget);
        }
        let index = FileAt::new(index_file)?;
        Self::open_rw_in(Arc::new(data), &index, budget)
    }

    /// Opens a (non-sparse) writable layer from views of its data and index
    /// files; the data view's length is the data file's size.
    ///
    /// # Errors
    /// As [`Layer::open_rw`]; [`Error::Unsupported`] for a sparse data file,
    /// whose index comes from the file system's extents.
    pub fn open_rw_views(data: Arc<dyn ReadAt>, index: &dyn ReadAt) -> Result<Self> {
        Self::open_rw_in(data, index, &IndexBudget::default())
    }

    fn open_rw_in(data: Arc<dyn ReadAt>, index: &dyn ReadAt, budget: &IndexBudget) -> Result<Self> {
        let header = read_data_header(data.as_ref())?;
        if header.is_sparse() {
            return Err(Error::unsupported(
                "lsmt data header",
                off!(flags),
                "sparse writable layer outside a file",
            ));
        }
        let dlen = data.len();
        let mut buf = vec![0u8; HEADER_SPACE as usize];
        let ilen = index.len();
        if ilen < HEADER_SPACE {
            return Err(Error::corrupt(
                "lsmt index header",
                0,
                format!("index file is {ilen} bytes, shorter than its 4096-byte header"),
            ));
        }
        index.read_exact_at(&mut buf, 0)?;
        let ih = Header::parse(&buf, "lsmt index header", 0)?;
        if !ih.is_header() || ih.is_data() || ih.is_sealed() {
            return Err(Error::corrupt(
                "lsmt index header",
                off!(flags),
                format!("flags {:#x} are not a writable index file's", ih.flags),
            ));
        }
        if ih.index_offset != HEADER_SPACE {
            return Err(Error::corrupt(
                "lsmt index header",
                off!(index_offset),
                format!("index_offset is {:#x}, expected 0x1000", ih.index_offset),
            ));
        }
        let records = (ilen - HEADER_SPACE) / SEGMENT_SIZE;
        if records > MAX_INDEX_ENTRIES {
            return Err(Error::corrupt(
                "lsmt index file",
                0,
                format!("{records} records exceed the limit of {MAX_INDEX_ENTRIES}"),
            ));
        }
        check_virtual_size(&ih, "lsmt index header", 0)?;
        budget.take(records)?;
        let data_end = dlen / SECTOR_SIZE;
        let mut rw = RwIndex::new();
        const CHUNK: u64 = 1 << 16; // records per read
        let mut chunk = Vec::new();
        let mut done = 0u64;
        while done < records {
            let n = (records - done).min(CHUNK);
            chunk.resize((n * SEGMENT_SIZE) as usize, 0);
            let at = HEADER_SPACE + done * SEGMENT_SIZE;
            index.read_exact_at(&mut chunk, at)?;
            for (k, s) in index::decode_all(&chunk).into_iter().enumerate() {
                let Some(s) = s.filter(|s| s.length > 0) else {
                    continue;
                };
                let pos = done + k as u64;
                index::check_physical(
                    &s,
                    data_end,
                    "lsmt index file",
                    HEADER_SPACE + pos * SEGMENT_SIZE,
                    pos as usize,
                )?;
                rw.insert(s);
            }
            done += n;
        }
        Ok(Layer {
            kind: Kind::Writable,
            header,
            trailer: None,
            index_header: Some(ih),
            segments: rw.segments(),
            index_entries: records,
            data,
            data_end_sectors: data_end,
        })
    }

    fn open_sparse(data: FileAt, header: Header, budget: &IndexBudget) -> Result<Self> {
        check_virtual_size(&header, "lsmt data header", 0)?;
        let extents = data_extents(data.file(), HEADER_SPACE, data.len())?;
        // Each extent becomes at least one entry.
        budget.take(extents.len() as u64)?;
        let mut segments = Vec::new();
        for (b, e) in extents {
            let mut lba = (b - HEADER_SPACE) / SECTOR_SIZE;
            let end = (e - HEADER_SPACE).div_ceil(SECTOR_SIZE);
            while lba < end {
                let len = (end - lba).min(MAX_LENGTH as u64);
                segments.push(Segment {
                    offset: lba,
                    length: len as u32,
                    moffset: lba + HEADER_SPACE / SECTOR_SIZE,
                    zeroed: false,
                    tag: 0,
                });
                lba += len;
            }
        }
        let data_end = data.len().div_ceil(SECTOR_SIZE);
        let n = segments.len() as u64;
        Ok(Layer {
            kind: Kind::SparseWritable,
            header,
            trailer: None,
            index_header: None,
            segments,
            index_entries: n,
            data: Arc::new(ZeroPadded(data)),
            data_end_sectors: data_end,
        })
    }
}

/// Reads and checks the header of a writable layer's data file.
fn read_data_header(data: &dyn ReadAt) -> Result<Header> {
    let dlen = data.len();
    if dlen < HEADER_SPACE {
        return Err(Error::corrupt(
            "lsmt data header",
            0,
            format!("data file is {dlen} bytes, shorter than its 4096-byte header"),
        ));
    }
    let mut buf = vec![0u8; HEADER_SPACE as usize];
    data.read_exact_at(&mut buf, 0)?;
    let header = Header::parse(&buf, "lsmt data header", 0)?;
    if !header.is_header() || !header.is_data() {
        return Err(Error::corrupt(
            "lsmt data header",
            off!(flags),
            format!("flags {:#x} are not a data-file header's", header.flags),
        ));
    }
    Ok(header)
}

/// A file whose last partial sector reads as zeros past EOF (sparse layers
/// map whole sectors).
struct ZeroPadded(FileAt);

impl ReadAt for ZeroPadded {
    fn len(&self) -> u64 {
        self.0.len().div_ceil(SECTOR_SIZE) * SECTOR_SIZE
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        crate::io::check_range("sparse data file", offset, buf.len(), self.len())?;
        let real = self.0.len();
        let n = real.saturating_sub(offset).min(buf.len() as u64) as usize;
        self.0.read_exact_at(&mut buf[..n], offset)?;
        buf[n..].fill(0);
        Ok(())
    }
}

/// Allocated extents `[b, e)` of `file` in `[from, len)`, found with
/// `SEEK_DATA`/`SEEK_HOLE` as the reference rebuilds a sparse index.
///
/// # Errors
/// [`Error::Io`] from `lseek` other than the ENXIO that ends the scan.
pub fn data_extents(file: &File, from: u64, len: u64) -> Result<Vec<(u64, u64)>> {
    use rustix::fs::{seek, SeekFrom};
    let mut out = Vec::new();
    let mut pos = from;
    while pos < len {
        let b = match seek(file, SeekFrom::Data(pos)) {
            Ok(b) => b,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(Error::io("sparse data file", pos, e.into())),
        };
        if b >= len {
            break;
        }
        let e = match seek(file, SeekFrom::Hole(b)) {
            Ok(e) => e.min(len),
            Err(e) => return Err(Error::io("sparse data file", b, e.into())),
        };
        if e <= b {
            break;
        }
        out.push((b, e));
        pos = e;
    }
    Ok(out)
}
