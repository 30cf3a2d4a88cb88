//! The read engine: a stack of layers merged into one virtual disk.
//!
//! Layers are given bottom first. The topmost layer that maps a sector wins;
//! zeroed entries hide lower data and read as zeros; unmapped sectors (holes)
//! read as zeros. The virtual size is that of the topmost layer with a
//! non-zero size (a writable top layer's own size when non-zero).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::blob::{Blob, BlobOptions};
use crate::error::{Error, Result};
use crate::format::lsmt::index;
use crate::format::lsmt::raw::{MAX_STACK_LAYERS, SECTOR_SIZE};
use crate::format::lsmt::{Kind, Layer, Segment};
use crate::io::{check_range, ReadAt};

/// One layer of a stack and where it came from.
pub struct StackLayer {
    /// A name for people (the file path).
    pub name: String,
    /// The opened layer.
    pub layer: Layer,
    /// The blob it was read from (read-only layers).
    pub blob: Option<Blob>,
}

impl StackLayer {
    /// Opens a read-only layer blob (plain, ZFile, tar, sealed in place).
    ///
    /// # Errors
    /// Format and I/O errors of the blob.
    pub fn open_ro(path: &Path, opts: BlobOptions) -> Result<Self> {
        let blob = Blob::open(path, opts)?;
        let layer = blob.layer()?;
        Ok(StackLayer {
            name: path.display().to_string(),
            layer,
            blob: Some(blob),
        })
    }

    /// Opens a writable layer from its data and index files.
    ///
    /// # Errors
    /// Format and I/O errors of either file.
    pub fn open_rw(data: &Path, index: &Path) -> Result<Self> {
        let d = File::open(data).map_err(|e| at_path(data, Error::open(e)))?;
        let i = File::open(index).map_err(|e| at_path(index, Error::open(e)))?;
        Ok(StackLayer {
            name: data.display().to_string(),
            layer: Layer::open_rw(d, i)?,
            blob: None,
        })
    }
}

/// One entry of the merged index: sectors, like the on-disk index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// First LBA.
    pub offset: u64,
    /// Physical sector in the layer's view (unused when zeroed).
    pub moffset: u64,
    /// Sectors.
    pub length: u32,
    /// Layer number, bottom first.
    pub layer: u16,
    /// Reads as zeros.
    pub zeroed: bool,
}
const _: () = assert!(core::mem::size_of::<Mapping>() <= 24);

impl Mapping {
    /// One past the last LBA.
    #[inline]
    pub fn end(&self) -> u64 {
        self.offset + self.length as u64
    }
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
    index: Vec<Mapping>,
    virtual_size: u64,
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
    /// top layer `(data, index)`.
    ///
    /// # Errors
    /// The first layer that fails to open, with its path.
    pub fn open(
        paths: &[PathBuf],
        upper: Option<(&Path, &Path)>,
        opts: BlobOptions,
    ) -> Result<Self> {
        let mut layers = Vec::with_capacity(paths.len() + 1);
        for p in paths {
            layers.push(StackLayer::open_ro(p, opts).map_err(|e| at_path(p, e))?);
        }
        if let Some((d, i)) = upper {
            layers.push(StackLayer::open_rw(d, i).map_err(|e| match e {
                e @ Error::InLayer { .. } => e,
                e => at_path(d, e),
            })?);
        }
        Self::new(layers)
    }

    /// Merges already opened layers (bottom first).
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty stack or too many layers, or a merged
    /// index over the limit.
    pub fn new(layers: Vec<StackLayer>) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::invalid("stack", "no layers given"));
        }
        let rw_top = layers
            .last()
            .is_some_and(|l| matches!(l.layer.kind, Kind::Writable | Kind::SparseWritable));
        let ro = layers.len() - rw_top as usize;
        if ro > MAX_STACK_LAYERS {
            return Err(Error::invalid(
                "stack",
                format!("{ro} read-only layers; at most {MAX_STACK_LAYERS} can be stacked"),
            ));
        }
        if layers[..ro]
            .iter()
            .any(|l| matches!(l.layer.kind, Kind::Writable | Kind::SparseWritable))
        {
            return Err(Error::invalid(
                "stack",
                "a writable layer can only be the top layer",
            ));
        }
        let top_first: Vec<&[Segment]> = layers
            .iter()
            .rev()
            .map(|l| l.layer.segments.as_slice())
            .collect();
        let merged = index::merge(&top_first)?;
        if merged.len() as u64 > crate::format::lsmt::raw::MAX_INDEX_ENTRIES {
            return Err(Error::invalid(
                "stack",
                format!("merged index of {} entries is over the limit", merged.len()),
            ));
        }
        let n = layers.len();
        let index = merged
            .into_iter()
            .map(|s| Mapping {
                offset: s.offset,
                moffset: s.moffset,
                length: s.length,
                layer: (n - 1 - s.tag as usize) as u16,
                zeroed: s.zeroed,
            })
            .collect();
        let ro_size = layers[..ro]
            .iter()
            .rev()
            .map(|l| l.layer.virtual_size())
            .find(|&v| v > 0)
            .unwrap_or(0);
        let virtual_size = if rw_top {
            match layers[n - 1].layer.virtual_size() {
                0 => ro_size,
                v => v,
            }
        } else {
            ro_size
        };
        let readers = layers.iter().map(|l| l.layer.data.clone()).collect();
        Ok(Stack {
            layers,
            readers,
            index,
            virtual_size,
        })
    }

    /// The layers, bottom first.
    pub fn layers(&self) -> &[StackLayer] {
        &self.layers
    }

    /// The merged index, in LBA order.
    pub fn mappings(&self) -> &[Mapping] {
        &self.index
    }

    /// Size of the virtual disk in bytes.
    pub fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    /// Index of the first mapping that ends after sector `lba`.
    #[inline]
    fn find(&self, lba: u64) -> usize {
        self.index.partition_point(|m| m.end() <= lba)
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
                Some(m) if m.offset * SECTOR_SIZE <= pos => {
                    let mstart = m.offset * SECTOR_SIZE;
                    let stop = (m.end() * SECTOR_SIZE).min(end);
                    let source = if m.zeroed {
                        Source::Zero { layer: m.layer }
                    } else {
                        Source::Data {
                            layer: m.layer,
                            offset: m.moffset * SECTOR_SIZE + (pos - mstart),
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
                    let stop = (m.offset * SECTOR_SIZE).min(end);
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

fn at_path(p: &Path, e: Error) -> Error {
    // Keep the error's kind but name the file it concerns.
    match e {
        Error::Invalid { what, detail } => Error::Invalid {
            what,
            detail: format!("{}: {detail}", p.display()),
        },
        other => Error::InLayer {
            path: p.display().to_string(),
            inner: Box::new(other),
        },
    }
}

impl ReadAt for Stack {
    fn len(&self) -> u64 {
        self.virtual_size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range("stack", offset, buf.len(), self.virtual_size)?;
        let end = offset + buf.len() as u64;
        let mut pos = offset;
        let mut i = self.find(offset / SECTOR_SIZE);
        while pos < end {
            let dst_at = (pos - offset) as usize;
            match self.index.get(i) {
                Some(m) if m.offset * SECTOR_SIZE <= pos => {
                    let mstart = m.offset * SECTOR_SIZE;
                    let stop = (m.end() * SECTOR_SIZE).min(end);
                    let dst = &mut buf[dst_at..dst_at + (stop - pos) as usize];
                    if m.zeroed {
                        dst.fill(0);
                    } else {
                        let at = m.moffset * SECTOR_SIZE + (pos - mstart);
                        self.readers[m.layer as usize]
                            .read_exact_at(dst, at)
                            .map_err(|e| Error::InLayer {
                                path: self.layers[m.layer as usize].name.clone(),
                                inner: Box::new(e),
                            })?;
                    }
                    pos = stop;
                    i += 1;
                }
                Some(m) => {
                    let stop = (m.offset * SECTOR_SIZE).min(end);
                    buf[dst_at..dst_at + (stop - pos) as usize].fill(0);
                    pos = stop;
                }
                None => {
                    buf[dst_at..].fill(0);
                    pos = end;
                }
            }
        }
        Ok(())
    }
}
