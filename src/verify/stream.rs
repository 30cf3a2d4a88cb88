//! The single pass: read a blob once, in order, in large chunks; feed every
//! byte to SHA-256 and every unit (ZFile block) to a checker, from the same
//! buffers.
//!
//! ```text
//!  worker 0:  claim chunk 0, pread, check its units │ claim chunk 2, pread, check …
//!  worker 1:  claim chunk 1, pread, check its units │ claim chunk 3, …
//!  sha256:    hash 0, hash 1, hash 2, …   (one thread, in file order)
//! ```
//!
//! Every worker reads the chunk it checks, so the bytes are still in that
//! core's cache when they are checksummed and decompressed, and the copy out
//! of the page cache is spread over the cores. Chunks are claimed in file
//! order and end on unit boundaries (every unit is checked from one
//! buffer). With SHA-256, a chunk's buffer is shared (`Arc`) with the hash
//! thread, which puts chunks back in order; buffers come from a bounded pool
//! and a worker takes its buffer *before* claiming a chunk, so the chunk the
//! hash thread waits for is always being read: memory stays bounded and
//! nothing is allocated per block.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::io::ReadAt;

/// Checks one unit (`bytes` is the whole unit).
pub(crate) trait UnitCheck: Sync {
    /// Checks unit `unit`; problems are recorded by the implementation.
    fn check(&self, unit: u64, bytes: &[u8]);
}

/// Units of the file to check: unit `i` spans `bounds[i]..bounds[i + 1]`
/// (absolute, ascending).
pub(crate) struct Units<'a> {
    pub bounds: &'a [u64],
    pub check: &'a dyn UnitCheck,
}

/// A bounded pool of buffers.
struct Pool {
    free: Mutex<(Vec<Vec<u8>>, usize)>,
    cv: Condvar,
    max: usize,
    /// Set when the pass fails: waiters give up (a chunk that was never read
    /// keeps the hash thread from returning the buffers after it).
    stop: AtomicBool,
}

impl Pool {
    fn get(&self) -> Vec<u8> {
        let Ok(mut g) = self.free.lock() else {
            return Vec::new();
        };
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Vec::new();
            }
            if let Some(b) = g.0.pop() {
                return b;
            }
            if g.1 < self.max {
                g.1 += 1;
                return Vec::new();
            }
            g = match self.cv.wait(g) {
                Ok(g) => g,
                Err(_) => return Vec::new(),
            };
        }
    }

    fn halt(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _guard = self.free.lock();
        self.cv.notify_all();
    }

    fn put(&self, b: Vec<u8>) {
        if let Ok(mut g) = self.free.lock() {
            g.0.push(b);
        }
        self.cv.notify_one();
    }
}

/// A pooled buffer; returns to the pool when the last holder drops it.
struct Buf<'a> {
    data: Vec<u8>,
    pool: &'a Pool,
}

impl Drop for Buf<'_> {
    fn drop(&mut self) {
        self.pool.put(std::mem::take(&mut self.data));
    }
}

/// The chunks of the pass: `(start, end, units)`, in file order.
fn plan(
    len: u64,
    units: Option<&Units<'_>>,
    chunk: u64,
    hash: bool,
) -> Vec<(u64, u64, Range<usize>)> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    loop {
        let next = match units {
            Some(u) => {
                let b = u.bounds;
                let (first, last) = (b[0], b[b.len() - 1]);
                if !hash && pos < first {
                    pos = first;
                }
                if pos >= first && pos < last {
                    // Whole units from the one starting at `pos`.
                    let i = b.partition_point(|&x| x <= pos) - 1;
                    let mut j = b.partition_point(|&x| x <= pos + chunk) - 1;
                    if j <= i {
                        j = i + 1;
                    }
                    Some((pos, b[j], i..j))
                } else if pos < first {
                    Some((pos, first.min(pos + chunk), 0..0))
                } else {
                    None
                }
            }
            None => None,
        };
        let next = next.or_else(|| (hash && pos < len).then(|| (pos, len.min(pos + chunk), 0..0)));
        match next {
            Some(c) => {
                pos = c.1;
                out.push(c);
            }
            None => return out,
        }
    }
}

/// Reads `file` once; returns its SHA-256 when `hash`.
///
/// # Errors
/// The first read error.
pub(crate) fn run(
    file: &dyn ReadAt,
    units: Option<Units<'_>>,
    hash: bool,
    chunk: usize,
    progress: super::ProgressFn<'_>,
) -> Result<Option<[u8; 32]>> {
    let units = units.filter(|u| u.bounds.len() > 1);
    let chunks = plan(file.len(), units.as_ref(), chunk.max(64 << 10) as u64, hash);
    let workers = rayon::current_num_threads().clamp(1, chunks.len().max(1));
    let pool = Pool {
        free: Mutex::new((Vec::new(), 0)),
        cv: Condvar::new(),
        max: if hash { 2 * workers + 2 } else { workers },
        stop: AtomicBool::new(false),
    };
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|ts| {
        let (htx, hrx) = mpsc::sync_channel::<(usize, Arc<Buf<'_>>)>(pool.max);
        let hasher = hash.then(|| {
            ts.spawn(move || {
                let mut h = Sha256::new();
                let mut pending = BTreeMap::new();
                let mut want = 0usize;
                for (i, b) in hrx {
                    pending.insert(i, b);
                    while let Some(b) = pending.remove(&want) {
                        h.update(&b.data);
                        want += 1;
                    }
                }
                let digest: [u8; 32] = h.finalize().into();
                digest
            })
        });
        let work = || {
            while !pool.stop.load(Ordering::Relaxed) {
                let mut data = pool.get();
                if pool.stop.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((start, end, range)) = chunks.get(i).cloned() else {
                    pool.put(data);
                    return;
                };
                data.resize((end - start) as usize, 0);
                if let Err(e) = file.read_exact_at(&mut data, start) {
                    if let Ok(mut f) = failed.lock() {
                        f.get_or_insert(e);
                    }
                    pool.put(data);
                    pool.halt();
                    return;
                }
                let buf = Arc::new(Buf { data, pool: &pool });
                if hash && htx.send((i, buf.clone())).is_err() {
                    pool.halt();
                    return;
                }
                if let Some(u) = units.as_ref() {
                    for k in range {
                        let a = (u.bounds[k] - start) as usize;
                        let b = (u.bounds[k + 1] - start) as usize;
                        u.check.check(k as u64, &buf.data[a..b]);
                    }
                }
                drop(buf);
                progress(end - start);
            }
        };
        rayon::in_place_scope(|s| {
            for _ in 1..workers {
                s.spawn(|_| work());
            }
            work();
        });
        drop(htx);
        let digest = hasher.and_then(|h| h.join().ok());
        match failed.lock().ok().and_then(|mut f| f.take()) {
            Some(e) => Err(e),
            None => Ok(digest),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Collect(Mutex<Vec<(u64, Vec<u8>)>>);
    impl UnitCheck for Collect {
        fn check(&self, unit: u64, bytes: &[u8]) {
            self.0.lock().unwrap().push((unit, bytes.to_vec()));
        }
    }

    #[test]
    fn every_byte_hashed_and_every_unit_whole() {
        let mut data = vec![0u8; 3_000_123];
        crate::sample::fill(1, 0, &mut data);
        let mut bounds = vec![1000u64];
        let mut x = 1000u64;
        let mut step = 1u64;
        while x + step < 2_900_000 {
            x += step;
            bounds.push(x);
            step = (step * 7 + 13) % 70_000 + 1;
        }
        for hash in [false, true] {
            let c = Collect(Mutex::new(Vec::new()));
            let done = std::sync::atomic::AtomicU64::new(0);
            let sha = run(
                &data,
                Some(Units {
                    bounds: &bounds,
                    check: &c,
                }),
                hash,
                100_000,
                &|n| {
                    done.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                },
            )
            .unwrap();
            let mut got = c.0.into_inner().unwrap();
            got.sort_by_key(|g| g.0);
            assert_eq!(got.len(), bounds.len() - 1);
            for (i, (u, b)) in got.iter().enumerate() {
                assert_eq!(*u, i as u64);
                assert_eq!(&b[..], &data[bounds[i] as usize..bounds[i + 1] as usize]);
            }
            if hash {
                let want: [u8; 32] = Sha256::digest(&data).into();
                assert_eq!(sha, Some(want));
                assert_eq!(done.into_inner(), data.len() as u64);
            } else {
                assert_eq!(sha, None);
            }
        }
        // A read error in the middle ends the pass with that error.
        let failing = crate::io::testing::FailingReadAt {
            inner: data.clone(),
            fail_at: 1_500_000,
        };
        for hash in [false, true] {
            let c = Collect(Mutex::new(Vec::new()));
            let r = run(
                &failing,
                Some(Units {
                    bounds: &bounds,
                    check: &c,
                }),
                hash,
                100_000,
                &|_| {},
            );
            assert!(r.is_err());
        }
        // Hash only.
        let sha = run(&data, None, true, 1 << 20, &|_| {}).unwrap();
        assert_eq!(sha, Some(Sha256::digest(&data).into()));
        assert_eq!(run(&data, None, false, 1 << 20, &|_| {}).unwrap(), None);
    }
}
