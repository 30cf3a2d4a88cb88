//! Unpacking a ZFile: its whole uncompressed content to a stream or a file,
//! blocks decoded on every core.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::zfile::ZFile;
use crate::io::ReadAt;

/// Uncompressed bytes one decompression job produces.
const DECODE_JOB_BYTES: u64 = 1 << 20;

/// Writes the whole uncompressed content of `z` to `out`, blocks decoded by
/// `threads` workers (0 = one per core) and written in order. `progress`
/// receives uncompressed byte counts. Memory stays bounded: at most a few
/// 1 MiB jobs per thread are in flight.
///
/// # Errors
/// Read, CRC and decompression errors of `z`; write errors of `out`.
pub fn to_writer<R: ReadAt + 'static>(
    z: Arc<ZFile<R>>,
    out: &mut dyn std::io::Write,
    threads: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    let per_job = (DECODE_JOB_BYTES / z.block_size()).max(1);
    let n = z.blocks();
    let threads = crate::exec::bounded_threads(threads);
    let mut pipe = crate::exec::ordered::Ordered::new(threads, (2 * threads).clamp(2, 16))?;
    let mut written = 0u64;
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let mut sink = |r: Result<Vec<u8>>| -> Result<()> {
        let b = r?;
        out.write_all(&b)
            .map_err(|e| Error::io("output", written, e))?;
        written += b.len() as u64;
        progress(b.len() as u64);
        let _ = tx.send(b);
        Ok(())
    };
    let mut first = 0;
    while first < n {
        let last = (first + per_job).min(n);
        while let Ok(b) = rx.try_recv() {
            spare.push(b);
        }
        let mut buf = spare.pop().unwrap_or_default();
        let zz = z.clone();
        pipe.submit(
            move || {
                thread_local! {
                    static RECORDS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
                }
                RECORDS.with(|r| zz.read_blocks(first, last, &mut buf, &mut r.borrow_mut()))?;
                Ok(buf)
            },
            &mut sink,
        )?;
        first = last;
    }
    pipe.finish(&mut sink)?;
    out.flush().map_err(|e| Error::io("output", written, e))?;
    Ok(written)
}

/// Writes the whole uncompressed content of `z` into `out` at its offsets:
/// every worker (`threads`, 0 = one per core) decodes 1 MiB pieces, which
/// the turn-taking writer writes, leaving all-zero 4 KiB units
/// unwritten: `out` must be a new, empty file, whose holes read as zeros.
/// Sets the file's length. `progress` receives uncompressed byte counts.
///
/// # Errors
/// Read, CRC and decompression errors of `z`; write errors of `out`.
pub fn to_file<R: ReadAt>(
    z: &ZFile<R>,
    out: &std::fs::File,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64> {
    let per_job = (DECODE_JOB_BYTES / z.block_size()).max(1);
    let n = z.blocks();
    let threads = crate::exec::bounded_threads(threads);
    thread_local! {
        static RECORDS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    crate::exec::turns::write_pieces(
        out,
        n.div_ceil(per_job),
        threads,
        &|j, buf| {
            let first = j * per_job;
            let last = (first + per_job).min(n);
            RECORDS.with(|r| z.read_blocks(first, last, buf, &mut r.borrow_mut()))?;
            Ok(first * z.block_size())
        },
        progress,
    )?;
    let size = ReadAt::len(z);
    out.set_len(size)
        .map_err(|e| Error::io("output", size, e))?;
    Ok(size)
}
