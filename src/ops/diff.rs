//! Commit of a difference: the blocks where a raw image differs from a
//! stack (or from nothing), as one committed layer.

use std::io::Write;
use std::path::Path;

use super::commit::{CommitMeta, CommitReport, LayerSummary, BATCH_BYTES};
use super::output::{Output, OutputOptions};
use crate::error::{Error, Result};
use crate::format::lsmt::raw::SECTOR_SIZE;
use crate::format::lsmt::segment::MAX_LENGTH;
use crate::format::lsmt::writer::{LayerMeta, Writer};
use crate::format::uuid::Uuid;
use crate::io::ReadAt;
use crate::stack::Stack;

/// Options of [`commit_diff`].
#[derive(Debug, Clone, Copy)]
pub struct DiffOptions {
    /// Comparison unit in bytes (a multiple of 512).
    pub block_size: u64,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions { block_size: 4096 }
    }
}

/// How a block of the new image relates to the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Same,
    Data,
    Zero,
}

/// Compares `new` with `base` (reads past the base's end are zeros) block by
/// block and returns the runs to commit: `(first byte, bytes, change)`.
fn classify(new: &[u8], base: &[u8], bs: usize) -> Vec<(usize, usize, Change)> {
    let mut runs: Vec<(usize, usize, Change)> = Vec::new();
    for (k, (n, b)) in new.chunks(bs).zip(base.chunks(bs)).enumerate() {
        let c = if n == b {
            Change::Same
        } else if crate::io::sparse::is_zero(n) {
            Change::Zero
        } else {
            Change::Data
        };
        match runs.last_mut() {
            Some(r) if r.2 == c => r.1 += n.len(),
            _ => runs.push((k * bs, n.len(), c)),
        }
    }
    runs
}

/// Commits the difference between the raw image `new` and `base` (the
/// merged view of a stack, or nothing): a layer holding exactly the blocks
/// where `new` differs from `base`. Changed blocks that are all zero in
/// `new` become zeroed entries; other changed blocks become data. With no
/// base every non-zero block of `new` is data. The layer's virtual size is
/// `new`'s size rounded up to a sector; its parent is the base's top layer
/// unless given.
///
/// # Errors
/// Read errors, a block size that is not a multiple of 512, write errors.
pub fn commit_diff(
    new: &dyn ReadAt,
    base: Option<&Stack>,
    opts: DiffOptions,
    meta: &CommitMeta,
    dest: &Path,
    out_opts: OutputOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<CommitReport> {
    let parent = meta.parent_uuid.unwrap_or_else(|| {
        base.and_then(|s| s.layers().last())
            .and_then(|l| l.layer().authoritative().uuid())
            .unwrap_or_else(Uuid::null)
    });
    let lm = LayerMeta {
        virtual_size: new.len().next_multiple_of(SECTOR_SIZE),
        uuid: meta.uuid.unwrap_or_else(Uuid::null),
        parent_uuid: parent,
        user_tag: meta.message.clone(),
    };
    crate::format::lsmt::writer::check_meta(&lm)?;
    let out = Output::create(dest, out_opts)?;
    let (out, summary) = diff_into(new, base.map(|s| s as &dyn ReadAt), opts, lm, out, progress)?;
    let output = out.finish()?;
    Ok(CommitReport {
        output,
        layer: summary,
    })
}

/// [`commit_diff`] into any writer; `base` is any view (reads past its end
/// are zeros).
///
/// # Errors
/// As [`commit_diff`].
pub fn diff_into<W: Write>(
    new: &dyn ReadAt,
    base: Option<&dyn ReadAt>,
    opts: DiffOptions,
    meta: LayerMeta,
    out: W,
    progress: &mut dyn FnMut(u64),
) -> Result<(W, LayerSummary)> {
    let bs = opts.block_size;
    if bs == 0 || bs % SECTOR_SIZE != 0 || bs > 1 << 20 {
        return Err(Error::invalid(
            "block size",
            format!("{bs} is not a multiple of 512 up to 1 MiB"),
        ));
    }
    let summary_meta = meta.clone();
    let mut w = Writer::new(out, meta)?;
    let chunk = (BATCH_BYTES as u64 / bs).max(1) * bs;
    let size = new.len();
    let padded = size.next_multiple_of(SECTOR_SIZE);
    let mut nb = vec![0u8; chunk as usize];
    let mut bb = vec![0u8; chunk as usize];
    let (mut data_bytes, mut zeroed_bytes) = (0u64, 0u64);
    let mut pos = 0u64;
    while pos < padded {
        let len = (padded - pos).min(chunk) as usize;
        let n = &mut nb[..len];
        let real = (size.saturating_sub(pos) as usize).min(len);
        new.read_exact_at(&mut n[..real], pos)?;
        n[real..].fill(0);
        let b = &mut bb[..len];
        match base {
            Some(base) => {
                let have = (base.len().saturating_sub(pos) as usize).min(len);
                base.read_exact_at(&mut b[..have], pos)?;
                b[have..].fill(0);
            }
            None => b.fill(0),
        }
        for (start, bytes, change) in classify(n, b, bs as usize) {
            let lba = (pos + start as u64) / SECTOR_SIZE;
            match change {
                Change::Same => {}
                Change::Data => {
                    w.push_data(lba, &n[start..start + bytes], 0)?;
                    data_bytes += bytes as u64;
                }
                Change::Zero => {
                    let mut lba = lba;
                    let mut left = bytes as u64 / SECTOR_SIZE;
                    while left > 0 {
                        let k = left.min(MAX_LENGTH as u64);
                        w.push_zeroed(lba, k as u32, 0)?;
                        lba += k;
                        left -= k;
                    }
                    zeroed_bytes += bytes as u64;
                }
            }
        }
        progress(len as u64);
        pos += len as u64;
    }
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
