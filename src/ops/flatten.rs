//! Writing the merged virtual disk of a stack out as a raw image.

use std::fs::File;
use std::io::Write;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::exec::turns::write_pieces;
use crate::io::ReadAt;
use crate::stack::{Source, Stack};

/// Unit of parallel work.
const CHUNK: u64 = 1 << 20;

/// What a flatten did.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct FlattenStats {
    /// Virtual disk size (the output's length).
    pub virtual_size: u64,
    /// Bytes of layer data read.
    pub data_bytes_read: u64,
    /// Bytes actually written (the rest are holes).
    pub bytes_written: u64,
}

/// The data extents of `stack` cut into chunks that never cross a
/// [`CHUNK`]-aligned boundary: `(virtual offset, length)`.
fn data_chunks(stack: &Stack) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for e in stack.extents(0, stack.virtual_size()) {
        if let Source::Data { .. } = e.source {
            let mut pos = e.start;
            let end = e.start + e.length;
            while pos < end {
                let stop = ((pos / CHUNK + 1) * CHUNK).min(end);
                out.push((pos, stop - pos));
                pos = stop;
            }
        }
    }
    out
}

/// Writes the virtual disk into `out` (a regular, empty file) with `pwrite`,
/// leaving holes and all-zero 4 KiB runs unwritten, then sets its length.
/// `progress` receives byte counts of the virtual disk as they are done.
///
/// # Errors
/// Read errors of the stack and write errors of `out`.
pub fn to_file(stack: &Stack, out: &File, progress: &(dyn Fn(u64) + Sync)) -> Result<FlattenStats> {
    let chunks = data_chunks(stack);
    let data: u64 = chunks.iter().map(|c| c.1).sum();
    progress(stack.virtual_size() - data);
    let written = write_pieces(
        out,
        chunks.len() as u64,
        rayon::current_num_threads(),
        &|j, buf| {
            let (at, len) = chunks[j as usize];
            buf.resize(len as usize, 0);
            // Chunks are spread over the threads already: read each one as
            // a stream (no nested split; blocks read whole are not cached).
            crate::exec::split::as_large_read(|| stack.read_exact_at(buf, at))?;
            Ok(at)
        },
        progress,
    )?;
    out.set_len(stack.virtual_size())
        .map_err(|e| Error::io("output", stack.virtual_size(), e))?;
    Ok(FlattenStats {
        virtual_size: stack.virtual_size(),
        data_bytes_read: data,
        bytes_written: written,
    })
}

/// Streams the whole virtual disk, zeros included, to `out` (e.g. stdout).
/// Data is decoded in parallel and written in order.
///
/// # Errors
/// Read errors of the stack and write errors of `out`.
pub fn to_writer(
    stack: &Stack,
    out: &mut dyn Write,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<FlattenStats> {
    let size = stack.virtual_size();
    let zeros = vec![0u8; CHUNK as usize];
    let mut stats = FlattenStats {
        virtual_size: size,
        ..Default::default()
    };
    // Whole CHUNK-aligned pieces of the disk, a batch at a time.
    let batch = (rayon::current_num_threads() * 4).max(4) as u64;
    let mut pos = 0u64;
    while pos < size {
        let stop = (pos + batch * CHUNK).min(size);
        let pieces: Vec<(u64, u64)> = (pos..stop)
            .step_by(CHUNK as usize)
            .map(|p| (p, (p + CHUNK).min(stop) - p))
            .collect();
        let bufs: Vec<Result<Option<Vec<u8>>>> = pieces
            .par_iter()
            .map(|&(at, len)| {
                let ext = stack.extents(at, len);
                if ext.iter().all(|e| !matches!(e.source, Source::Data { .. })) {
                    return Ok(None);
                }
                let mut b = vec![0u8; len as usize];
                stack.read_exact_at(&mut b, at)?;
                Ok(Some(b))
            })
            .collect();
        for (&(at, len), b) in pieces.iter().zip(bufs) {
            let w = match b? {
                Some(b) => {
                    stats.data_bytes_read += len;
                    out.write_all(&b)
                }
                None => out.write_all(&zeros[..len as usize]),
            };
            w.map_err(|e| Error::io("output", at, e))?;
            stats.bytes_written += len;
            progress(len);
        }
        pos = stop;
    }
    out.flush().map_err(|e| Error::io("output", size, e))?;
    Ok(stats)
}
