//! Making read-only layers: commit (compaction) of a writable or sealed
//! layer, merge of a stack, commit of the difference between a raw image and
//! a stack, and seal in place.
//!
//! Commit and merge copy the live data of their sources in LBA order into a
//! new committed layer exactly as the reference's compaction does
//! ([`crate::format::lsmt::writer`]), so their output is byte-identical to
//! `overlaybd-commit` / `overlaybd-merge` given the same metadata.
//!
//! Metadata of the new layer (§3.9.4 of the format notes): `uuid` is null
//! unless given (the command line gives a fresh one by default); `parent_uuid`
//! is the given one, else the source's header `parent_uuid` (for a merge, the
//! bottom layer's); `virtual_size` is the header (offset 0) value of the
//! source, or the inherited size when that is 0 (for a merge, the stack's:
//! [`crate::stack::virtual_size_of`]).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use serde::Serialize;
use zerocopy::IntoBytes;

use crate::error::{Error, Result};
use crate::format::lsmt::header::HeaderFields;
use crate::format::lsmt::raw::{FLAG_DATA, FLAG_SEALED, FLAG_SPARSE, SECTOR_SIZE};
use crate::format::lsmt::segment::MAX_LENGTH;
use crate::format::lsmt::writer::{LayerMeta, Writer, PIECE_SECTORS};
use crate::format::lsmt::{Header, Layer, Segment};
use crate::format::uuid::Uuid;
use crate::io::lock::{lock, LockMode};
use crate::io::ReadAt;
use crate::ops::output::{Output, OutputOptions, OutputReport};

/// Metadata the caller may set on a new layer.
#[derive(Debug, Clone, Default)]
pub struct CommitMeta {
    /// The new layer's uuid (null when not given, as the reference).
    pub uuid: Option<Uuid>,
    /// The parent uuid (inherited from the source when not given).
    pub parent_uuid: Option<Uuid>,
    /// Commit message (at most 256 bytes).
    pub message: Vec<u8>,
    /// The virtual size of the stack the source layer is used over: the
    /// committed layer's size when the source's own is 0 ("inherit").
    pub inherited_size: Option<u64>,
}

/// The layer a writer made.
#[derive(Debug, Clone, Serialize)]
pub struct LayerSummary {
    /// Virtual disk size in bytes.
    pub virtual_size: u64,
    /// The layer's uuid.
    pub uuid: String,
    /// The parent's uuid.
    pub parent_uuid: String,
    /// Commit message.
    pub message: String,
    /// Index entries (without padding).
    pub segments: u64,
    /// `index_size` on disk (padding included).
    pub index_size: u64,
    /// Bytes of data copied into the layer.
    pub data_bytes: u64,
    /// Bytes of the virtual disk mapped as zeroed entries.
    pub zeroed_bytes: u64,
    /// Size of the LSMT file (before any ZFile/tar packaging).
    pub lsmt_size: u64,
}

impl LayerSummary {
    pub(crate) fn new(
        meta: &LayerMeta,
        segments: u64,
        index_size: u64,
        data_bytes: u64,
        zeroed_bytes: u64,
    ) -> Self {
        LayerSummary {
            virtual_size: meta.virtual_size,
            uuid: meta.uuid.as_str().to_string(),
            parent_uuid: meta.parent_uuid.as_str().to_string(),
            message: String::from_utf8_lossy(&meta.user_tag).into_owned(),
            segments,
            index_size,
            data_bytes,
            zeroed_bytes,
            lsmt_size: summary_meta_size(data_bytes, index_size),
        }
    }
}

/// What a commit, merge or diff wrote.
#[derive(Debug, Clone, Serialize)]
pub struct CommitReport {
    /// The output file.
    pub output: OutputReport,
    /// The layer inside it.
    pub layer: LayerSummary,
}

/// Bytes the reader thread hands over at a time.
pub(crate) const BATCH_BYTES: usize = 1 << 20;
/// Batches in flight between the reader thread and the writer.
const BATCHES_IN_FLIGHT: usize = 4;

/// One run inside a [`Batch`].
#[derive(Debug, Clone, Copy)]
struct Item {
    lba: u64,
    sectors: u64,
    tag: u8,
    zeroed: bool,
}

/// Source data read ahead of the writer: runs and their bytes back to back
/// in `buf[..len]` (the buffer keeps its full size, so reuse costs no memset).
struct Batch {
    buf: Vec<u8>,
    len: usize,
    items: Vec<Item>,
}

impl Batch {
    fn new() -> Self {
        Batch {
            buf: vec![0u8; BATCH_BYTES],
            len: 0,
            items: Vec::new(),
        }
    }
}

/// Reads the data of `mappings` into batches, in order. A mapping split
/// across batches is split at multiples of 32 KiB from its start, so that
/// the writer cuts the same 64-sector pieces as the reference.
fn read_ahead(
    sources: &[Arc<dyn ReadAt>],
    mappings: &[Segment],
    tx: SyncSender<Result<Batch>>,
    spare: Receiver<Batch>,
) {
    let piece = (PIECE_SECTORS * SECTOR_SIZE) as usize;
    let mut batch = Batch::new();
    let send = |b: Batch| tx.send(Ok(b)).is_ok();
    let fresh = |spare: &Receiver<Batch>| {
        let mut b = spare.try_recv().unwrap_or_else(|_| Batch::new());
        b.len = 0;
        b.items.clear();
        b
    };
    for m in mappings {
        if m.zeroed {
            batch.items.push(Item {
                lba: m.offset,
                sectors: m.length as u64,
                tag: m.tag,
                zeroed: true,
            });
            continue;
        }
        let Some(src) = sources.get(m.tag as usize) else {
            let _ = tx.send(Err(Error::invalid(
                "commit",
                format!("mapping names layer {} of {}", m.tag, sources.len()),
            )));
            return;
        };
        let mut done = 0u64;
        let total = m.length as u64 * SECTOR_SIZE;
        while done < total {
            let room = BATCH_BYTES - batch.len;
            let left = (total - done) as usize;
            let take = if left <= room {
                left
            } else {
                room / piece * piece
            };
            if take == 0 {
                if !send(std::mem::replace(&mut batch, fresh(&spare))) {
                    return;
                }
                continue;
            }
            let at = batch.len;
            batch.len += take;
            let offset = m.moffset * SECTOR_SIZE + done;
            if let Err(e) = src.read_exact_at(&mut batch.buf[at..at + take], offset) {
                let _ = tx.send(Err(e));
                return;
            }
            batch.items.push(Item {
                lba: m.offset + done / SECTOR_SIZE,
                sectors: take as u64 / SECTOR_SIZE,
                tag: m.tag,
                zeroed: false,
            });
            done += take as u64;
        }
        if batch.items.len() >= 8192 && !send(std::mem::replace(&mut batch, fresh(&spare))) {
            return;
        }
    }
    if !batch.items.is_empty() {
        send(batch);
    }
}

/// Compacts `mappings` (sorted, non-overlapping; `tag` = index into
/// `sources`, written as the entry's tag) into a committed layer on `out`.
/// `progress` receives source bytes as they are copied.
///
/// # Errors
/// Read errors of the sources, write errors, out-of-range mappings.
pub(crate) fn compact<W: Write>(
    sources: &[Arc<dyn ReadAt>],
    mappings: &[Segment],
    meta: LayerMeta,
    out: W,
    progress: &mut dyn FnMut(u64),
) -> Result<(W, LayerSummary)> {
    let summary_meta = meta.clone();
    let mut w = Writer::new(out, meta)?;
    let mut data_bytes = 0u64;
    let mut zeroed_bytes = 0u64;
    std::thread::scope(|s| -> Result<()> {
        let (tx, rx) = sync_channel(BATCHES_IN_FLIGHT);
        let (spare_tx, spare_rx) = sync_channel(BATCHES_IN_FLIGHT + 1);
        s.spawn(move || read_ahead(sources, mappings, tx, spare_rx));
        for batch in rx {
            let batch = batch?;
            let mut at = 0usize;
            for it in &batch.items {
                if it.zeroed {
                    let mut lba = it.lba;
                    let mut left = it.sectors;
                    while left > 0 {
                        let n = left.min(MAX_LENGTH as u64);
                        w.push_zeroed(lba, n as u32, it.tag)?;
                        lba += n;
                        left -= n;
                    }
                    zeroed_bytes += it.sectors * SECTOR_SIZE;
                } else {
                    let n = (it.sectors * SECTOR_SIZE) as usize;
                    w.push_data(it.lba, &batch.buf[at..at + n], it.tag)?;
                    at += n;
                    data_bytes += n as u64;
                    progress(n as u64);
                }
            }
            // The reader may already be gone (finished); then drop the batch.
            let _ = spare_tx.try_send(batch);
        }
        Ok(())
    })?;
    let segments = w.entries() as u64;
    let (out, index_size) = w.finish()?;
    Ok((
        out,
        LayerSummary::new(
            &summary_meta,
            segments,
            index_size,
            data_bytes,
            zeroed_bytes,
        ),
    ))
}

fn summary_meta_size(data_bytes: u64, index_size: u64) -> u64 {
    2 * crate::format::lsmt::raw::HEADER_SPACE + data_bytes + index_size * 16
}

/// The parent uuid a header names, null when unparseable.
pub(crate) fn header_parent(h: &Header) -> Uuid {
    h.parent_uuid().unwrap_or_else(Uuid::null)
}

/// Commits one layer — writable (plain or sparse), sealed in place, or
/// already committed — into a new committed layer at `dest`.
///
/// # Errors
/// Read errors of the layer, an existing `dest` without `force`, write errors,
/// a message over 256 bytes.
pub fn commit_layer(
    layer: &Layer,
    meta: &CommitMeta,
    dest: &Path,
    out_opts: OutputOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<CommitReport> {
    let virtual_size = match layer.header().virtual_size {
        0 => meta.inherited_size.filter(|&v| v > 0).ok_or_else(|| {
            Error::invalid(
                "virtual size",
                "the layer's virtual size is 0 (it inherits the size of the stack below it), \
                 and no stack to inherit it from was given",
            )
        })?,
        v => v,
    };
    let lm = LayerMeta {
        virtual_size,
        uuid: meta.uuid.unwrap_or_else(Uuid::null),
        parent_uuid: meta
            .parent_uuid
            .unwrap_or_else(|| header_parent(layer.header())),
        user_tag: meta.message.clone(),
    };
    let mappings: Vec<Segment> = layer
        .segments()
        .iter()
        .map(|s| Segment { tag: 0, ..*s })
        .collect();
    // Fail on a bad message before creating anything.
    crate::format::lsmt::writer::check_meta(&lm)?;
    let out = Output::create(dest, out_opts)?;
    let (out, summary) = compact(
        std::slice::from_ref(layer.data()),
        &mappings,
        lm,
        out,
        progress,
    )?;
    let output = out.finish()?;
    Ok(CommitReport {
        output,
        layer: summary,
    })
}

/// Opens a writable layer (data and index file) to read it, locked so that
/// no process writes it meanwhile: `Shared` to commit it, `Exclusive` to
/// seal it. The locks last as long as the layer.
///
/// # Errors
/// A layer in use by a writer (or, for `Exclusive`, by anyone); open and
/// format errors.
pub fn open_writable(data: &Path, index: &Path, mode: LockMode) -> Result<Layer> {
    let open = |p: &Path| {
        File::open(p).map_err(|e| Error::InLayer {
            path: p.display().to_string(),
            inner: Box::new(Error::open(e)),
        })
    };
    let (d, i) = (open(data)?, open(index)?);
    lock(&d, data, mode)?;
    // A sparse layer's index file is not used; its data file's lock is
    // the layer's.
    if !same_inode(&d, &i) {
        lock(&i, index, mode)?;
    }
    Layer::open_rw(d, i)
}

fn same_inode(a: &File, b: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (a.metadata(), b.metadata()) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// What [`seal_in_place`] appended.
#[derive(Debug, Clone, Serialize)]
pub struct SealReport {
    /// The data file sealed.
    pub path: String,
    /// Byte offset of the appended index.
    pub index_offset: u64,
    /// Index entries (without the zero filler).
    pub index_size: u64,
    /// The file's new size.
    pub file_size: u64,
    /// Virtual size carried over from the data header.
    pub virtual_size: u64,
}

/// Seals a writable layer in place (§3.10): appends its index (sorted, not
/// coalesced, zero-filled to 512 bytes) and a trailer to the data file. The
/// data file then opens as a read-only layer; the index file is not used
/// any more.
///
/// Crash safety: the index and trailer are written past the old end of the
/// file and synced; until the trailer is complete the file still opens as a
/// writable layer (the extra bytes are ignored), never as a damaged sealed one.
///
/// # Errors
/// A layer that is not writable; I/O errors.
pub fn seal_in_place(data: &Path, index: &Path) -> Result<SealReport> {
    let layer = open_writable(data, index, LockMode::Exclusive)?;
    let h = &layer.header();
    let file = OpenOptions::new()
        .write(true)
        .open(data)
        .map_err(|e| Error::io("lsmt data file", 0, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("lsmt data file", 0, e))?
        .len();
    let index_offset = len.next_multiple_of(SECTOR_SIZE);
    let mut bytes = Vec::with_capacity(layer.segments().len() * 16 + 4096);
    for s in layer.segments() {
        bytes.extend_from_slice(Segment { tag: 0, ..*s }.encode()?.as_bytes());
    }
    bytes.resize(bytes.len().next_multiple_of(SECTOR_SIZE as usize), 0);
    let flags = FLAG_DATA | FLAG_SEALED | (h.flags & FLAG_SPARSE);
    let trailer = HeaderFields {
        flags,
        index_offset,
        index_size: layer.segments().len() as u64,
        virtual_size: h.virtual_size,
        uuid: h.uuid().unwrap_or_else(Uuid::null),
        parent_uuid: header_parent(h),
        user_tag: Vec::new(),
    }
    .to_bytes()?;
    bytes.extend_from_slice(&trailer);
    file.write_all_at(&bytes, index_offset)
        .map_err(|e| Error::io("lsmt data file", index_offset, e))?;
    file.sync_all()
        .map_err(|e| Error::io("lsmt data file", index_offset, e))?;
    Ok(SealReport {
        path: data.display().to_string(),
        index_offset,
        index_size: layer.segments().len() as u64,
        file_size: index_offset + bytes.len() as u64,
        virtual_size: h.virtual_size,
    })
}
