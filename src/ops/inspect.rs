//! Reports on blobs and stacks, as serialisable structs for `obd inspect`.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::lsmt::layer::IndexBudget;
use crate::format::lsmt::raw::{HEADER_SPACE, SECTOR_SIZE, SEGMENT_SIZE};
use crate::format::lsmt::{self, header::flag_names, index, Header, Kind, Layer, Segment};
use crate::format::tar::Payload;
use crate::format::zfile::{self, Record};
use crate::io::ReadAt;
use crate::source::blob::{is_lsmt, Blob, BlobOptions};
use crate::stack::{Source, Stack};

/// Everything `inspect` says about one file.
#[derive(Debug, Serialize)]
pub struct FileReport {
    /// The path as given.
    pub path: String,
    /// Size of the file as stored.
    pub size: u64,
    /// Containers, outermost first, ending with what is inside:
    /// e.g. `["tar", "zfile", "lsmt"]`.
    pub containers: Vec<&'static str>,
    /// `lsmt_ro` (committed), `lsmt_sealed` (sealed in place), `lsmt_rw_data`,
    /// `lsmt_rw_sparse_data`, `lsmt_rw_index`, or `raw` (a ZFile or tar whose
    /// content is not LSMT).
    pub kind: &'static str,
    /// The tar wrapper.
    pub tar: Option<Payload>,
    /// The ZFile container.
    pub zfile: Option<ZFileReport>,
    /// The LSMT file inside.
    pub lsmt: Option<LsmtReport>,
}

/// A ZFile record for reports.
#[derive(Debug, Serialize)]
pub struct RecordReport {
    /// Flags word.
    pub flags: u64,
    /// Flag names.
    pub flags_decoded: Vec<&'static str>,
    /// Stored digest.
    pub digest: u32,
    /// Whether the digest verifies (true when the digest flag is clear).
    pub digest_ok: bool,
    /// Jump table offset.
    pub index_offset: u64,
    /// Jump table entries.
    pub index_size: u64,
    /// Uncompressed size.
    pub original_file_size: u64,
    /// Jump table crc.
    pub index_crc: u32,
    /// Block size.
    pub block_size: u32,
    /// `lz4`, `zstd` or the numeric id.
    pub algo: String,
    /// Level byte.
    pub level: u8,
    /// 1 when blocks carry CRCs.
    pub verify: u8,
    /// Dictionary size.
    pub dict_size: u32,
}

impl From<&Record> for RecordReport {
    fn from(r: &Record) -> Self {
        RecordReport {
            flags: r.flags,
            flags_decoded: zfile::flag_names(r.flags),
            digest: r.digest,
            digest_ok: r.digest_ok(),
            index_offset: r.index_offset,
            index_size: r.index_size,
            original_file_size: r.original_file_size,
            index_crc: r.index_crc,
            block_size: r.block_size,
            algo: match r.algo {
                1 => "lz4".into(),
                2 => "zstd".into(),
                n => n.to_string(),
            },
            level: r.level,
            verify: r.verify,
            dict_size: r.dict_size,
        }
    }
}

/// ZFile facts.
#[derive(Debug, Serialize)]
pub struct ZFileReport {
    /// The header as stored.
    pub header: RecordReport,
    /// The trailer (informational when the header-overwrite flag is set).
    pub trailer: RecordReport,
    /// Algorithm.
    pub algorithm: zfile::Algorithm,
    /// Uncompressed block size.
    pub block_size: u64,
    /// Number of blocks.
    pub blocks: u64,
    /// Bytes of compressed blocks, CRCs included.
    pub compressed_size: u64,
    /// Bytes of the whole container.
    pub container_size: u64,
    /// Uncompressed size.
    pub original_size: u64,
    /// `original_size / container_size`.
    pub ratio: f64,
    /// Per-block CRC32C present.
    pub crc: bool,
    /// The header holds the final fields (trailer not read).
    pub header_overwrite: bool,
}

/// An LSMT record for reports.
#[derive(Debug, Serialize)]
pub struct HeaderReport {
    /// The decoded fields.
    #[serde(flatten)]
    pub header: Header,
    /// Flag names.
    pub flags_decoded: Vec<&'static str>,
}

impl From<&Header> for HeaderReport {
    fn from(h: &Header) -> Self {
        HeaderReport {
            header: h.clone(),
            flags_decoded: flag_names(h.flags),
        }
    }
}

/// Index facts of an LSMT file.
#[derive(Debug, Serialize)]
pub struct IndexReport {
    /// Entries on disk (padding included) or records in a writable index file.
    pub entries_on_disk: u64,
    /// Live segments (padding dropped; overrides resolved for writable layers).
    pub segments: u64,
    /// Bytes of the virtual disk mapped to data.
    pub mapped_bytes: u64,
    /// Bytes of the virtual disk mapped as zeroed.
    pub zeroed_bytes: u64,
    /// Bytes of the data section.
    pub data_section_bytes: u64,
    /// Bytes of the data section no segment points to.
    pub unreferenced_bytes: u64,
}

/// One index entry for `--index` (sectors, as on disk).
#[derive(Debug, Serialize)]
pub struct SegmentReport {
    /// First LBA (sectors).
    pub offset: u64,
    /// Sectors.
    pub length: u32,
    /// Physical sector.
    pub moffset: u64,
    /// Reads as zeros.
    pub zeroed: bool,
}

impl From<&Segment> for SegmentReport {
    fn from(s: &Segment) -> Self {
        SegmentReport {
            offset: s.offset,
            length: s.length,
            moffset: s.moffset,
            zeroed: s.zeroed,
        }
    }
}

/// LSMT facts.
#[derive(Debug, Serialize)]
pub struct LsmtReport {
    /// The record at offset 0.
    pub header: HeaderReport,
    /// The trailer of a read-only layer.
    pub trailer: Option<HeaderReport>,
    /// Index facts (absent for a lone writable data file).
    pub index: Option<IndexReport>,
    /// The segments, with `--index`.
    pub segments: Option<Vec<SegmentReport>>,
}

/// Index statistics of a segment list over a data section `[8, data_end)`.
pub fn index_report(segs: &[Segment], entries_on_disk: u64, data_end_sectors: u64) -> IndexReport {
    let mut mapped = 0u64;
    let mut zeroed = 0u64;
    let mut phys: Vec<(u64, u64)> = Vec::new();
    for s in segs {
        if s.zeroed {
            zeroed += s.length as u64;
        } else {
            mapped += s.length as u64;
            phys.push((s.moffset, s.mend()));
        }
    }
    phys.sort_unstable();
    let mut referenced = 0u64;
    let mut cur: Option<(u64, u64)> = None;
    for (a, b) in phys {
        match cur {
            Some((ca, cb)) if a <= cb => cur = Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                referenced += cb - ca;
                cur = Some((a, b));
            }
            None => cur = Some((a, b)),
        }
    }
    if let Some((a, b)) = cur {
        referenced += b - a;
    }
    let section = data_end_sectors.saturating_sub(index::DATA_START_SECTORS);
    IndexReport {
        entries_on_disk,
        segments: segs.len() as u64,
        mapped_bytes: mapped * SECTOR_SIZE,
        zeroed_bytes: zeroed * SECTOR_SIZE,
        data_section_bytes: section * SECTOR_SIZE,
        unreferenced_bytes: section.saturating_sub(referenced) * SECTOR_SIZE,
    }
}

fn layer_report(layer: &Layer, with_segments: bool) -> LsmtReport {
    LsmtReport {
        header: layer.header().into(),
        trailer: layer.trailer().map(Into::into),
        index: Some(index_report(
            layer.segments(),
            layer.index_entries(),
            layer.data_end_sectors(),
        )),
        segments: with_segments.then(|| layer.segments().iter().map(Into::into).collect()),
    }
}

/// Inspects one file: containers, records, index facts.
///
/// # Errors
/// Any format or I/O error met on the way.
pub fn inspect_file(
    path: &Path,
    with_segments: bool,
    opts: BlobOptions,
    budget: &IndexBudget,
) -> Result<FileReport> {
    let blob = Blob::open(path, opts)?;
    let mut containers = blob.containers();
    let zfile = blob.zfile().map(|z| {
        let rec = z.record();
        ZFileReport {
            header: z.header().into(),
            trailer: z.trailer().into(),
            algorithm: z.algorithm(),
            block_size: z.block_size(),
            blocks: z.blocks(),
            compressed_size: z.compressed_size(),
            container_size: z.inner().len(),
            original_size: rec.original_file_size,
            ratio: if z.inner().is_empty() {
                0.0
            } else {
                rec.original_file_size as f64 / z.inner().len() as f64
            },
            crc: z.has_crc(),
            header_overwrite: z.header_overwrite(),
        }
    });
    let view = blob.view().clone();
    let (kind, lsmt) = if is_lsmt(view.as_ref())? {
        containers.push("lsmt");
        inspect_lsmt(path, view, with_segments, budget)?
    } else if blob.zfile().is_some() || blob.tar().is_some() {
        ("raw", None)
    } else if is_gnu_tar(blob.view().as_ref())? {
        return Err(Error::invalid(
            "tar",
            "a GNU tar, which overlaybd's reader cannot read (it reads ustar and PAX)",
        ));
    } else {
        return Err(Error::invalid(
            "raw image",
            "no overlaybd container (no tar, ZFile or LSMT magic)",
        ));
    };
    Ok(FileReport {
        path: path.display().to_string(),
        size: blob.file_size(),
        containers,
        kind,
        tar: blob.tar().cloned(),
        zfile,
        lsmt,
    })
}

fn inspect_lsmt(
    path: &Path,
    view: Arc<dyn ReadAt>,
    with_segments: bool,
    budget: &IndexBudget,
) -> Result<(&'static str, Option<LsmtReport>)> {
    let mut buf = vec![0u8; HEADER_SPACE as usize];
    let len = view.len();
    if len < HEADER_SPACE {
        return Err(Error::corrupt(
            "lsmt header",
            0,
            format!("file is {len} bytes, shorter than a 4096-byte header"),
        ));
    }
    view.read_exact_at(&mut buf, 0)?;
    let header = Header::parse(&buf, "lsmt header", 0)?;
    if !header.is_header() {
        return Err(Error::corrupt(
            "lsmt header",
            core::mem::offset_of!(crate::format::lsmt::raw::RawHeader, flags) as u64,
            format!(
                "flags {:#x}: the record at offset 0 is not a header",
                header.flags
            ),
        ));
    }
    if !header.is_data() {
        // A writable layer's index file: header + records.
        let records = (len - HEADER_SPACE) / SEGMENT_SIZE;
        budget.take(records)?;
        let mut raw = vec![0u8; (records * SEGMENT_SIZE) as usize];
        view.read_exact_at(&mut raw, HEADER_SPACE)?;
        let mut rw = index::RwIndex::new();
        for s in index::decode(&raw) {
            rw.insert(s);
        }
        let segs = rw.segments();
        let mut ix = index_report(&segs, records, 0);
        ix.data_section_bytes = 0;
        ix.unreferenced_bytes = 0;
        return Ok((
            "lsmt_rw_index",
            Some(LsmtReport {
                header: (&header).into(),
                trailer: None,
                index: Some(ix),
                segments: with_segments.then(|| segs.iter().map(Into::into).collect()),
            }),
        ));
    }
    // A data file: read-only if a trailer is there, else writable.
    let has_trailer = len >= 2 * HEADER_SPACE && {
        view.read_exact_at(&mut buf, len - HEADER_SPACE)?;
        Header::parse(&buf, "lsmt trailer", len - HEADER_SPACE).is_ok()
    };
    if has_trailer || header.is_sealed() {
        let layer = Layer::open_ro_within(view, budget)?;
        let kind = match layer.kind() {
            Kind::Committed => "lsmt_ro",
            _ => "lsmt_sealed",
        };
        return Ok((kind, Some(layer_report(&layer, with_segments))));
    }
    if header.is_sparse() {
        let file = std::fs::File::open(path).map_err(Error::open)?;
        let layer = Layer::open_rw_within(
            file,
            std::fs::File::open("/dev/null").map_err(|e| Error::io("file", 0, e))?,
            budget,
        )?;
        return Ok((
            "lsmt_rw_sparse_data",
            Some(layer_report(&layer, with_segments)),
        ));
    }
    Ok((
        "lsmt_rw_data",
        Some(LsmtReport {
            header: (&header).into(),
            trailer: None,
            index: None,
            segments: None,
        }),
    ))
}

/// One layer's part in a stack.
#[derive(Debug, Serialize)]
pub struct StackLayerReport {
    /// Position, bottom first.
    pub layer: usize,
    /// File (the data file of a writable layer).
    pub path: String,
    /// Layer shape.
    pub kind: lsmt::Kind,
    /// Containers around the LSMT file.
    pub containers: Vec<&'static str>,
    /// The layer's uuid.
    pub uuid: String,
    /// The layer's parent uuid.
    pub parent_uuid: String,
    /// The layer's declared virtual size.
    pub virtual_size: u64,
    /// Segments in its own index.
    pub segments: u64,
    /// Bytes of the virtual disk this layer's data supplies.
    pub data_bytes: u64,
    /// Bytes of the virtual disk this layer's zeroed entries supply.
    pub zeroed_bytes: u64,
}

pub use crate::stack::ChainBreak;

/// The merged view of a stack.
#[derive(Debug, Serialize)]
pub struct StackReport {
    /// Virtual disk size.
    pub virtual_size: u64,
    /// Entries in the merged index.
    pub merged_segments: u64,
    /// Bytes served from layer data.
    pub data_bytes: u64,
    /// Bytes served as zeros by zeroed entries.
    pub zeroed_bytes: u64,
    /// Bytes no layer maps.
    pub hole_bytes: u64,
    /// True when no layer's parent uuid differs from the uuid of the layer
    /// below (links with a null uuid cannot be checked: `chain_unchecked`).
    pub chain_consistent: bool,
    /// Where the chain breaks.
    pub chain_breaks: Vec<ChainBreak>,
    /// Layers whose link to the layer below cannot be checked (a null or
    /// missing uuid on either side).
    pub chain_unchecked: Vec<usize>,
    /// Per layer, bottom first.
    pub layers: Vec<StackLayerReport>,
}

/// Builds the stack report.
pub fn stack_report(stack: &Stack) -> StackReport {
    let n = stack.layers().len();
    let mut data = vec![0u64; n];
    let mut zero = vec![0u64; n];
    let (mut d, mut z, mut h) = (0u64, 0u64, 0u64);
    for e in stack.extents(0, stack.virtual_size()) {
        match e.source {
            Source::Hole => h += e.length,
            Source::Zero { layer } => {
                z += e.length;
                zero[layer as usize] += e.length;
            }
            Source::Data { layer, .. } => {
                d += e.length;
                data[layer as usize] += e.length;
            }
        }
    }
    let layers: Vec<StackLayerReport> = stack
        .layers()
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let a = l.layer().authoritative();
            StackLayerReport {
                layer: i,
                path: l.name().to_string(),
                kind: l.layer().kind(),
                containers: l
                    .blob()
                    .as_ref()
                    .map(|b| b.containers())
                    .unwrap_or_default(),
                uuid: a.uuid.clone(),
                parent_uuid: l.layer().header().parent_uuid.clone(),
                virtual_size: l.layer().virtual_size(),
                segments: l.layer().segments().len() as u64,
                data_bytes: data[i],
                zeroed_bytes: zero[i],
            }
        })
        .collect();
    let chain = stack.chain();
    StackReport {
        virtual_size: stack.virtual_size(),
        merged_segments: stack.mappings().len() as u64,
        data_bytes: d,
        zeroed_bytes: z,
        hole_bytes: h,
        chain_consistent: chain.breaks.is_empty(),
        chain_breaks: chain.breaks,
        chain_unchecked: chain.unchecked,
        layers,
    }
}

/// True when `r` starts with a GNU tar header (`ustar  \0`), which the
/// reference's tar detection does not accept.
fn is_gnu_tar(r: &dyn ReadAt) -> Result<bool> {
    if r.len() < crate::format::tar::BLOCK {
        return Ok(false);
    }
    let mut b = [0u8; 512];
    r.read_exact_at(&mut b, 0)?;
    Ok(&b[crate::format::tar::magic_range()] == b"ustar  \0")
}
