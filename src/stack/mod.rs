//! The read engine: a stack of layers merged into one virtual disk.
//!
//! Layers are given bottom first. The topmost layer that maps a sector wins;
//! zeroed entries hide lower data and read as zeros; unmapped sectors (holes)
//! read as zeros. The virtual size is that of the topmost layer with a
//! non-zero size (a writable top layer's own size when non-zero).
//!
//! How a read is served:
//! - the merged index is a [`MergedIndex`]: 16-byte packed mappings and a
//!   cache-line B+ tree over them, searched with AVX-512, AVX2 or portable
//!   code chosen at run time ([`Kernel`]);
//! - a request walks the mappings from the one holding its first sector;
//!   adjacent mappings of one layer whose data is contiguous become one read
//!   of that layer;
//! - ZFile layers share one decompressed-block cache ([`ReadOptions::cache`],
//!   [`BlockCache`]); a block is fetched and decompressed at most once while
//!   it stays cached, and a whole 4 KiB block is decompressed straight into
//!   the caller's buffer;
//! - requests of 256 KiB or more are cut at 128 KiB boundaries of their
//!   layers' data (block boundaries of any ZFile) and decompressed on the
//!   calling thread and idle rayon threads ([`ReadOptions::parallel`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::lsmt::layer::IndexBudget;
use crate::format::lsmt::raw::{MAX_STACK_LAYERS, SECTOR_SIZE};
use crate::format::lsmt::{Kind, Layer, Segment};
use crate::format::zfile::{BlockCache, CacheOptions};
use crate::io::{check_range, ReadAt};
use crate::source::{Blob, BlobOptions, LayerSource};

mod index;
mod mem;
// AVX-512 and AVX2 kernels: x86-64 and Rust ≥ 1.89 (see build.rs).
#[cfg(obd_simd)]
#[clippy::msrv = "1.89"]
mod simd;
#[cfg(test)]
mod tests;

pub use index::{Kernel, Mapping, MergedIndex, PackedMapping};

/// How a stack reads.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// How layer blobs are opened (CRC checking).
    pub blob: BlobOptions,
    /// The decompressed-block cache shared by the stack's ZFile layers.
    pub cache: CacheOptions,
    /// Decompress the blocks of large reads on several threads.
    pub parallel: bool,
    /// Memory the indexes of all the stack's layers may take, in bytes
    /// ([`IndexBudget`]).
    pub max_index_memory: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            blob: BlobOptions::default(),
            cache: CacheOptions::default(),
            parallel: true,
            max_index_memory: IndexBudget::DEFAULT,
        }
    }
}

impl From<BlobOptions> for ReadOptions {
    fn from(blob: BlobOptions) -> Self {
        ReadOptions {
            blob,
            ..Default::default()
        }
    }
}

/// One layer of a stack and where it came from.
pub struct StackLayer {
    name: String,
    layer: Layer,
    blob: Option<Blob>,
}

impl StackLayer {
    /// A layer opened elsewhere: `name` for people, `blob` for read-only
    /// layers read from one (its ZFile, if any, joins the stack's cache).
    pub fn new(name: impl Into<String>, layer: Layer, blob: Option<Blob>) -> Self {
        StackLayer {
            name: name.into(),
            layer,
            blob,
        }
    }

    /// Opens a read-only layer file (plain, ZFile, tar, sealed in place).
    ///
    /// # Errors
    /// Format and I/O errors of the blob.
    pub fn open_ro(path: &Path, opts: BlobOptions) -> Result<Self> {
        Self::open_source(&LayerSource::from(path), opts)
    }

    /// Opens a read-only layer blob from `source`.
    ///
    /// # Errors
    /// Format and I/O errors of the blob.
    pub fn open_source(source: &LayerSource, opts: BlobOptions) -> Result<Self> {
        Self::open_source_within(source, opts, &IndexBudget::default())
    }

    /// [`StackLayer::open_source`], its index taken from `budget`.
    ///
    /// # Errors
    /// As [`StackLayer::open_source`]; an index over the budget.
    pub fn open_source_within(
        source: &LayerSource,
        opts: BlobOptions,
        budget: &IndexBudget,
    ) -> Result<Self> {
        let blob = Blob::open_source(source, opts)?;
        let layer = blob.layer_within(budget)?;
        Ok(StackLayer::new(source.to_string(), layer, Some(blob)))
    }

    /// Opens a writable layer from its data and index files.
    ///
    /// # Errors
    /// Format and I/O errors of either file.
    pub fn open_rw(data: &Path, index: &Path) -> Result<Self> {
        Self::open_rw_within(data, index, &IndexBudget::default())
    }

    /// [`StackLayer::open_rw`], its index taken from `budget`.
    ///
    /// # Errors
    /// As [`StackLayer::open_rw`]; an index over the budget.
    pub fn open_rw_within(data: &Path, index: &Path, budget: &IndexBudget) -> Result<Self> {
        let d = File::open(data).map_err(|e| at_path(data, Error::open(e)))?;
        let i = File::open(index).map_err(|e| at_path(index, Error::open(e)))?;
        Ok(StackLayer::new(
            data.display().to_string(),
            Layer::open_rw_within(d, i, budget)?,
            None,
        ))
    }

    /// A name for people (the file path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The opened layer.
    pub fn layer(&self) -> &Layer {
        &self.layer
    }

    /// The blob it was read from (read-only layers).
    pub fn blob(&self) -> Option<&Blob> {
        self.blob.as_ref()
    }
}

/// The virtual size of a stack whose layers (bottom first) declare `sizes`:
/// the topmost non-zero one (a writable top layer's own size when non-zero,
/// as for any other layer), 0 when none declares a size. The one rule every
/// command follows (FORMAT.md §4: the reference takes the topmost non-zero
/// size).
pub fn virtual_size_of(sizes: impl DoubleEndedIterator<Item = u64>) -> u64 {
    sizes.rev().find(|&v| v > 0).unwrap_or(0)
}

/// A break in the parent-uuid chain: a layer whose parent is not the layer
/// below it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    /// The layer (bottom first) whose parent does not match.
    pub layer: usize,
    /// Its parent uuid.
    pub parent_uuid: String,
    /// The uuid of the layer below it.
    pub below_uuid: String,
}

/// The parent-uuid chain of a stack: each layer names the layer below it as
/// its parent. Layers given in the wrong order, or with one missing, break
/// it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Chain {
    /// Links that are wrong.
    pub breaks: Vec<ChainBreak>,
    /// Layers whose link to the layer below cannot be checked: a null or
    /// unreadable uuid on either side (writers that leave uuids null).
    pub unchecked: Vec<usize>,
}

/// Where a range of the virtual disk comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// No layer maps it: zeros.
    Hole,
    /// A zeroed entry of `layer` hides what is below: zeros.
    Zero {
        /// Layer number, bottom first.
        layer: u16,
    },
    /// Data of `layer` at byte `offset` of its LSMT view.
    Data {
        /// Layer number, bottom first.
        layer: u16,
        /// Byte offset in the layer's (decompressed) LSMT file.
        offset: u64,
    },
}

/// A run of the virtual disk with one source, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Extent {
    /// Byte offset in the virtual disk.
    pub start: u64,
    /// Bytes.
    pub length: u64,
    /// Where the bytes come from.
    #[serde(flatten)]
    pub source: Source,
}

/// Layers merged into one virtual disk; a [`ReadAt`] itself.
pub struct Stack {
    layers: Vec<StackLayer>,
    readers: Vec<Arc<dyn ReadAt>>,
    index: MergedIndex,
    virtual_size: u64,
    cache: Option<BlockCache>,
    parallel: bool,
}

/// A run of a request with one source: `len` bytes at `dst` in the caller's
/// buffer, from byte `at` of layer `layer`'s view, or zeros.
#[derive(Debug, Clone, Copy)]
struct Run {
    dst: usize,
    len: usize,
    src: Option<(u16, u64)>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("layers", &self.layers.len())
            .field("mappings", &self.index.len())
            .field("virtual_size", &self.virtual_size)
            .finish()
    }
}

impl Stack {
    /// Opens read-only layer files (bottom first) and an optional writable
    /// top layer `(data, index)`, with the default [`ReadOptions`] (a 64 MiB
    /// block cache, parallel decompression).
    ///
    /// # Errors
    /// The first layer that fails to open, with its path.
    pub fn open(
        paths: &[PathBuf],
        upper: Option<(&Path, &Path)>,
        opts: BlobOptions,
    ) -> Result<Self> {
        Self::open_with(paths, upper, opts.into())
    }

    /// [`Stack::open`] with read options (cache size, parallelism).
    ///
    /// # Errors
    /// The first layer that fails to open, with its path.
    pub fn open_with(
        paths: &[PathBuf],
        upper: Option<(&Path, &Path)>,
        opts: ReadOptions,
    ) -> Result<Self> {
        let sources: Vec<LayerSource> = paths.iter().cloned().map(LayerSource::from).collect();
        Self::open_sources(&sources, upper, opts)
    }

    /// [`Stack::open_with`] for layers named by their sources.
    ///
    /// # Errors
    /// The first layer that fails to open, with its source.
    pub fn open_sources(
        sources: &[LayerSource],
        upper: Option<(&Path, &Path)>,
        opts: ReadOptions,
    ) -> Result<Self> {
        // Refused before any layer is opened: the count, then each index
        // against the stack's memory budget before it is read.
        check_layer_count(sources.len())?;
        // Registry layers: every layer's ends start coming at once.
        for s in sources {
            s.prefetch_ends();
        }
        let budget = IndexBudget::new(opts.max_index_memory);
        let mut layers = Vec::with_capacity(sources.len() + 1);
        for s in sources {
            layers.push(
                StackLayer::open_source_within(s, opts.blob, &budget)
                    .map_err(|e| in_layer(s, e))?,
            );
        }
        if let Some((d, i)) = upper {
            layers.push(
                StackLayer::open_rw_within(d, i, &budget).map_err(|e| match e {
                    e @ Error::InLayer { .. } => e,
                    e => at_path(d, e),
                })?,
            );
        }
        Self::new_with(layers, opts)
    }

    /// Merges already opened layers (bottom first), with the default
    /// [`ReadOptions`].
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty stack or too many layers, or a merged
    /// index over the limit.
    pub fn new(layers: Vec<StackLayer>) -> Result<Self> {
        Self::new_with(layers, ReadOptions::default())
    }

    /// [`Stack::new`] with read options: the block cache (if any) is
    /// attached to every ZFile layer that has none yet.
    ///
    /// # Errors
    /// As [`Stack::new`].
    pub fn new_with(layers: Vec<StackLayer>, opts: ReadOptions) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::invalid("stack", "no layers given"));
        }
        let rw_top = layers
            .last()
            .is_some_and(|l| matches!(l.layer.kind(), Kind::Writable | Kind::SparseWritable));
        let ro = layers.len() - rw_top as usize;
        check_layer_count(ro)?;
        if layers[..ro]
            .iter()
            .any(|l| matches!(l.layer.kind(), Kind::Writable | Kind::SparseWritable))
        {
            return Err(Error::invalid(
                "stack",
                "a writable layer can only be the top layer",
            ));
        }
        let top_first: Vec<&[Segment]> = layers.iter().rev().map(|l| l.layer.segments()).collect();
        let merged = crate::format::lsmt::index::merge(&top_first)?;
        if merged.len() as u64 > crate::format::lsmt::raw::MAX_INDEX_ENTRIES {
            return Err(Error::invalid(
                "stack",
                format!("merged index of {} entries is over the limit", merged.len()),
            ));
        }
        let n = layers.len();
        let packed = merged
            .into_iter()
            .map(|s| {
                let m = Mapping {
                    offset: s.offset,
                    moffset: s.moffset,
                    length: s.length,
                    layer: (n - 1 - s.tag as usize) as u16,
                    zeroed: s.zeroed,
                };
                PackedMapping::pack(&m).ok_or_else(|| {
                    Error::invalid("stack", format!("merged entry {m:?} is out of range"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let index = MergedIndex::build(&packed);
        drop(packed);
        let virtual_size = virtual_size_of(layers.iter().map(|l| l.layer.virtual_size()));
        let readers = layers.iter().map(|l| l.layer.data().clone()).collect();
        let zfiles: Vec<_> = layers
            .iter()
            .filter_map(|l| l.blob.as_ref().and_then(|b| b.zfile()))
            .collect();
        let cache = (opts.cache.size > 0 && !zfiles.is_empty()).then(|| {
            let c = BlockCache::new(opts.cache);
            for z in &zfiles {
                z.set_cache(&c);
            }
            c
        });
        Ok(Stack {
            layers,
            readers,
            index,
            virtual_size,
            cache,
            parallel: opts.parallel,
        })
    }

    /// Checks the parent-uuid chain: every layer's parent uuid (its
    /// authoritative record's) against the uuid of the layer below.
    pub fn chain(&self) -> Chain {
        let mut chain = Chain::default();
        // The bottom of a stack of several layers is a base layer: a parent
        // there names a layer that is missing below it.
        if self.layers.len() > 1 {
            if let Some(p) = self.layers[0]
                .layer
                .authoritative()
                .parent_uuid()
                .filter(|p| !p.is_null())
            {
                chain.breaks.push(ChainBreak {
                    layer: 0,
                    parent_uuid: p.as_str().to_string(),
                    below_uuid: String::new(),
                });
            }
        }
        for i in 1..self.layers.len() {
            let (below, l) = (
                self.layers[i - 1].layer.authoritative(),
                self.layers[i].layer.authoritative(),
            );
            match (l.parent_uuid(), below.uuid()) {
                (Some(p), Some(u)) if !p.is_null() && !u.is_null() => {
                    if p != u {
                        chain.breaks.push(ChainBreak {
                            layer: i,
                            parent_uuid: p.as_str().to_string(),
                            below_uuid: u.as_str().to_string(),
                        });
                    }
                }
                _ => chain.unchecked.push(i),
            }
        }
        chain
    }

    /// [`Stack::chain`], with a broken link as an error unless
    /// `accept_breaks`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the two layers of the first break.
    pub fn checked_chain(&self, accept_breaks: bool) -> Result<Chain> {
        let chain = self.chain();
        match chain.breaks.first() {
            Some(b) if !accept_breaks => {
                let why = match b.layer {
                    0 => format!(
                        "{} names a layer below the bottom of the stack: is one missing?",
                        b.parent_uuid
                    ),
                    i => format!(
                        "{} is not the uuid of the layer below it, {} ({}): are the layers \
                         bottom first and all there?",
                        b.parent_uuid,
                        self.layers[i - 1].name,
                        b.below_uuid
                    ),
                };
                Err(Error::InLayer {
                    path: self.layers[b.layer].name.clone(),
                    inner: Box::new(Error::invalid(
                        "parent_uuid",
                        format!("{why} (--ignore-chain accepts the stack as given)"),
                    )),
                })
            }
            _ => Ok(chain),
        }
    }

    /// The layers, bottom first.
    pub fn layers(&self) -> &[StackLayer] {
        &self.layers
    }

    /// The merged index, in LBA order (iterate it for [`Mapping`]s).
    pub fn mappings(&self) -> &MergedIndex {
        &self.index
    }

    /// The block cache the stack's ZFile layers share, if any.
    pub fn cache(&self) -> Option<&BlockCache> {
        self.cache.as_ref()
    }

    /// Size of the virtual disk in bytes.
    pub fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    /// Index of the first mapping that ends after sector `lba`.
    #[inline]
    fn find(&self, lba: u64) -> usize {
        self.index.lookup(lba)
    }

    /// The extents covering `[start, start + len)` of the virtual disk
    /// (clipped to the virtual size), adjacent runs of one source merged.
    pub fn extents(&self, start: u64, len: u64) -> Vec<Extent> {
        let end = start.saturating_add(len).min(self.virtual_size);
        let mut out: Vec<Extent> = Vec::new();
        let mut push = |e: Extent| {
            if e.length == 0 {
                return;
            }
            if let Some(last) = out.last_mut() {
                if last.start + last.length == e.start {
                    let joined = match (last.source, e.source) {
                        (Source::Hole, Source::Hole) => true,
                        (Source::Zero { layer: a }, Source::Zero { layer: b }) => a == b,
                        (
                            Source::Data {
                                layer: a,
                                offset: o,
                            },
                            Source::Data {
                                layer: b,
                                offset: p,
                            },
                        ) => a == b && o + last.length == p,
                        _ => false,
                    };
                    if joined {
                        last.length += e.length;
                        return;
                    }
                }
            }
            out.push(e);
        };
        let mut pos = start;
        let mut i = self.find(start / SECTOR_SIZE);
        while pos < end {
            match self.index.get(i) {
                Some(m) if m.offset() * SECTOR_SIZE <= pos => {
                    let mstart = m.offset() * SECTOR_SIZE;
                    let stop = (m.end() * SECTOR_SIZE).min(end);
                    let source = if m.zeroed() {
                        Source::Zero { layer: m.layer() }
                    } else {
                        Source::Data {
                            layer: m.layer(),
                            offset: m.moffset() * SECTOR_SIZE + (pos - mstart),
                        }
                    };
                    push(Extent {
                        start: pos,
                        length: stop - pos,
                        source,
                    });
                    pos = stop;
                    i += 1;
                }
                Some(m) => {
                    let stop = (m.offset() * SECTOR_SIZE).min(end);
                    push(Extent {
                        start: pos,
                        length: stop - pos,
                        source: Source::Hole,
                    });
                    pos = stop;
                }
                None => {
                    push(Extent {
                        start: pos,
                        length: end - pos,
                        source: Source::Hole,
                    });
                    pos = end;
                }
            }
        }
        out
    }
}

/// At most [`MAX_STACK_LAYERS`] read-only layers can be stacked.
fn check_layer_count(ro: usize) -> Result<()> {
    if ro > MAX_STACK_LAYERS {
        return Err(Error::invalid(
            "stack",
            format!("{ro} read-only layers; at most {MAX_STACK_LAYERS} can be stacked"),
        ));
    }
    Ok(())
}

fn at_path(p: &Path, e: Error) -> Error {
    named(p.display().to_string(), e)
}

fn in_layer(s: &LayerSource, e: Error) -> Error {
    named(s.to_string(), e)
}

/// Keeps the error's kind but names the layer it concerns.
fn named(name: String, e: Error) -> Error {
    match e {
        Error::Invalid { what, detail } => Error::Invalid {
            what,
            detail: format!("{name}: {detail}"),
        },
        other => Error::InLayer {
            path: name,
            inner: Box::new(other),
        },
    }
}

impl Stack {
    /// Walks `[offset, offset + len)` (inside the disk) in runs of one
    /// source, adjacent mappings of one layer with contiguous data joined
    /// into one run, so that each run is one read.
    #[inline]
    fn for_each_run(
        &self,
        offset: u64,
        len: u64,
        mut f: impl FnMut(Run) -> Result<()>,
    ) -> Result<()> {
        let end = offset + len;
        let mut pos = offset;
        let mut i = self.find(offset / SECTOR_SIZE);
        let mut pending: Option<Run> = None;
        while pos < end {
            let (stop, src) = match self.index.get(i) {
                Some(m) if m.offset() * SECTOR_SIZE <= pos => {
                    i += 1;
                    let stop = (m.end() * SECTOR_SIZE).min(end);
                    let src = (!m.zeroed()).then(|| {
                        let at = m.moffset() * SECTOR_SIZE + (pos - m.offset() * SECTOR_SIZE);
                        (m.layer(), at)
                    });
                    (stop, src)
                }
                Some(m) => ((m.offset() * SECTOR_SIZE).min(end), None),
                None => (end, None),
            };
            let n = (stop - pos) as usize;
            match &mut pending {
                Some(p)
                    if match (p.src, src) {
                        (None, None) => true,
                        (Some((l, a)), Some((k, b))) => l == k && a + p.len as u64 == b,
                        _ => false,
                    } =>
                {
                    p.len += n
                }
                _ => {
                    if let Some(p) = pending.take() {
                        f(p)?;
                    }
                    pending = Some(Run {
                        dst: (pos - offset) as usize,
                        len: n,
                        src,
                    });
                }
            }
            pos = stop;
        }
        match pending {
            Some(p) => f(p),
            None => Ok(()),
        }
    }

    /// Reads `buf.len()` bytes at byte `at` of layer `layer`'s view.
    #[inline]
    fn read_layer(&self, layer: u16, buf: &mut [u8], at: u64) -> Result<()> {
        self.readers[layer as usize]
            .read_exact_at(buf, at)
            .map_err(|e| Error::InLayer {
                path: self.layers[layer as usize].name.clone(),
                inner: Box::new(e),
            })
    }

    /// A large read: zero runs filled here, data runs cut into pieces at
    /// multiples of [`crate::exec::split::PIECE`] of their layer's offsets (block
    /// boundaries of any ZFile) and read on several threads.
    fn read_split(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let piece = crate::exec::split::PIECE;
        let mut runs = Vec::new();
        self.for_each_run(offset, buf.len() as u64, |r| {
            runs.push(r);
            Ok(())
        })?;
        let mut pieces: Vec<(&mut [u8], u16, u64)> =
            Vec::with_capacity(runs.len() + buf.len() / piece as usize + 1);
        let mut rest = buf;
        for r in runs {
            // Runs tile the request in order.
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut(r.len);
            rest = tail;
            let Some((layer, mut at)) = r.src else {
                mine.fill(0);
                continue;
            };
            let mut mine = mine;
            while !mine.is_empty() {
                let cut = ((at / piece + 1) * piece - at).min(mine.len() as u64) as usize;
                let (a, b) = std::mem::take(&mut mine).split_at_mut(cut);
                pieces.push((a, layer, at));
                at += cut as u64;
                mine = b;
            }
        }
        crate::exec::split::run(pieces, &|(b, layer, at)| self.read_layer(layer, b, at))
    }
}

impl Stack {
    /// Reads `[offset, offset + buf.len())` (in range) on this thread.
    #[inline]
    fn read_serial(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.for_each_run(offset, buf.len() as u64, |r| {
            let dst = &mut buf[r.dst..r.dst + r.len];
            match r.src {
                None => {
                    dst.fill(0);
                    Ok(())
                }
                Some((layer, at)) => self.read_layer(layer, dst, at),
            }
        })
    }
}

impl ReadAt for Stack {
    fn len(&self) -> u64 {
        self.virtual_size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range("stack", offset, buf.len(), self.virtual_size)?;
        if buf.len() >= crate::exec::split::MIN_SPLIT {
            if self.parallel && crate::exec::split::should_split(buf.len()) {
                return self.read_split(buf, offset);
            }
            // Serially, but as a large read: layers neither split it again
            // nor fill the block cache with it.
            return crate::exec::split::as_large_read(|| self.read_serial(buf, offset));
        }
        self.read_serial(buf, offset)
    }
}
