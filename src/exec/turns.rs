//! Turn-taking writes: many threads fill pieces of one new file, one
//! thread at a time writes.

use std::fs::File;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::io::sparse::write_sparse;

/// Fills pieces of a new file on `threads` threads and writes them with
/// [`write_sparse`]: `fill(job, buf)` makes piece `job` (of `jobs`) in `buf`
/// and returns its file offset; `done(len)` follows each piece written.
/// Returns the bytes written (holes excluded); the file's length is the
/// caller's to set.
///
/// Writes into one file serialize in the kernel (the inode lock), and a
/// thread blocked there burns its core. So one thread writes at a time,
/// and a thread that finds the file busy fills its next piece instead,
/// holding up to three before it waits its turn.
///
/// # Errors
/// The first error of `fill` or of a write; the other threads stop.
pub fn write_pieces(
    out: &File,
    jobs: u64,
    threads: usize,
    fill: &(dyn Fn(u64, &mut Vec<u8>) -> Result<u64> + Sync),
    done: &(dyn Fn(u64) + Sync),
) -> Result<u64> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const HELD: usize = 3;
    let threads = threads.clamp(1, jobs.max(1) as usize);
    let next = AtomicU64::new(0);
    let written = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let turn = Mutex::new(());
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let write_held = |held: &mut Vec<(u64, Vec<u8>)>, free: &mut Vec<Vec<u8>>| -> Result<()> {
        for (at, buf) in held.drain(..) {
            written.fetch_add(write_sparse(out, &buf, at)?, Ordering::Relaxed);
            done(buf.len() as u64);
            free.push(buf);
        }
        Ok(())
    };
    let worker = || -> Result<()> {
        let mut free: Vec<Vec<u8>> = Vec::new();
        let mut held: Vec<(u64, Vec<u8>)> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let j = next.fetch_add(1, Ordering::Relaxed);
            if j >= jobs {
                let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
                return write_held(&mut held, &mut free);
            }
            let mut buf = free.pop().unwrap_or_default();
            let at = fill(j, &mut buf)?;
            held.push((at, buf));
            let mine = if held.len() >= HELD {
                Some(turn.lock().unwrap_or_else(|p| p.into_inner()))
            } else {
                turn.try_lock().ok()
            };
            if let Some(_turn) = mine {
                write_held(&mut held, &mut free)?;
            }
        }
        Ok(())
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                if let Err(e) = worker() {
                    stop.store(true, Ordering::Relaxed);
                    first_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(written.into_inner()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_pieces_writes_every_piece_once_and_stops_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let f = File::create(&path).unwrap();
        // Piece j: 9000 bytes at j * 9000, zero for every fourth piece.
        let piece = |j: u64, buf: &mut Vec<u8>| {
            buf.clear();
            buf.resize(9000, if j % 4 == 0 { 0 } else { j as u8 });
        };
        let done = std::sync::atomic::AtomicU64::new(0);
        let written = write_pieces(
            &f,
            50,
            3,
            &|j, buf| {
                piece(j, buf);
                Ok(j * 9000)
            },
            &|n| {
                done.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            },
        )
        .unwrap();
        f.set_len(50 * 9000).unwrap();
        let mut want = Vec::new();
        let mut buf = Vec::new();
        for j in 0..50 {
            piece(j, &mut buf);
            want.extend_from_slice(&buf);
        }
        assert_eq!(std::fs::read(&path).unwrap(), want);
        assert_eq!(done.into_inner(), 50 * 9000);
        // Zero pieces were not written (4 KiB units wholly inside them).
        assert!(written < 50 * 9000 - 12 * 4096, "{written}");
        let e = write_pieces(
            &f,
            1000,
            2,
            &|j, buf| {
                piece(j, buf);
                if j == 7 {
                    Err(Error::invalid("piece", "seven"))
                } else {
                    Ok(j * 9000)
                }
            },
            &|_| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("seven"), "{e}");
    }
}
