//! Spreading one large read over the thread pool.
//!
//! A read of at least [`MIN_SPLIT`] bytes (a stack read, or a direct ZFile
//! read) is cut into pieces that the calling thread and idle rayon threads
//! take from a shared queue. The caller always works too, so a busy pool
//! costs nothing but the queue; when another split read is already running
//! (e.g. two reader threads on two cores), no helpers are asked for at all.
//! Pieces never split again.
//!
//! While a thread serves a large read (a piece of a split read, or a large
//! read done serially), [`in_large_read`] is true: nested reads neither
//! split again nor fill the block cache with whole blocks.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::Result;

/// Reads at least this long are split when threads are free.
pub(crate) const MIN_SPLIT: usize = 256 << 10;
/// Target size of a piece. A multiple of 64 KiB, the largest ZFile block, so
/// cuts at multiples of it in a ZFile's offset space fall on block boundaries.
pub(crate) const PIECE: u64 = 128 << 10;

thread_local! {
    static LARGE: Cell<bool> = const { Cell::new(false) };
}

/// Split reads running now.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// True when a read of `len` bytes is worth splitting: long enough, not a
/// piece of a split read already, and the pool has more than one thread.
#[inline]
pub(crate) fn should_split(len: usize) -> bool {
    len >= MIN_SPLIT && !in_large_read() && rayon::current_num_threads() > 1
}

/// True while this thread serves (a piece of) a large read.
#[inline]
pub(crate) fn in_large_read() -> bool {
    LARGE.with(|c| c.get())
}

/// Runs `f` as (part of) a large read: see [`in_large_read`].
#[inline]
pub(crate) fn as_large_read<T>(f: impl FnOnce() -> T) -> T {
    /// Restores the flag even if `f` unwinds.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            LARGE.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(LARGE.with(|c| c.replace(true)));
    f()
}

/// Runs `f` on every piece, on this thread and on pool threads; returns the
/// first error (remaining pieces are dropped after an error).
pub(crate) fn run<T: Send>(mut pieces: Vec<T>, f: &(dyn Fn(T) -> Result<()> + Sync)) -> Result<()> {
    let n = pieces.len();
    pieces.reverse(); // `pop` takes them in order
    let queue = Mutex::new(pieces);
    let failed = Mutex::new(None);
    let work = || {
        as_large_read(|| loop {
            let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(p) = next else { break };
            if let Err(e) = f(p) {
                queue.lock().unwrap_or_else(|e| e.into_inner()).clear();
                failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(e);
                break;
            }
        })
    };
    let others = RUNNING.fetch_add(1, Ordering::Relaxed);
    let helpers = if others == 0 {
        (rayon::current_num_threads().saturating_sub(1)).min(n.saturating_sub(1))
    } else {
        0
    };
    if helpers == 0 {
        work();
    } else {
        rayon::in_place_scope(|s| {
            for _ in 0..helpers {
                s.spawn(|_| work());
            }
            work();
        });
    }
    RUNNING.fetch_sub(1, Ordering::Relaxed);
    match failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn runs_every_piece_once() {
        let sum = AtomicU64::new(0);
        run((1..=100u64).collect(), &|v| {
            sum.fetch_add(v, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
        assert_eq!(sum.into_inner(), 5050);
    }

    #[test]
    fn returns_an_error_and_stops() {
        let done = AtomicU64::new(0);
        let r = run((0..1000u64).collect(), &|v| {
            if v == 3 {
                return Err(Error::invalid("piece", "three"));
            }
            done.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        assert!(r.is_err());
        assert!(done.into_inner() < 1000);
    }

    #[test]
    fn pieces_do_not_split_again() {
        run(vec![(); 4], &|()| {
            assert!(!should_split(MIN_SPLIT));
            Ok(())
        })
        .unwrap();
    }
}
