//! Numbers an operator can watch: a served device's requests, bytes,
//! errors and latencies, counted by a [`Target`] wrapper and written by the
//! server to `RUN_DIR/<id>.stats.json` once a second (atomically), where
//! `obd stats` reads them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::serve::target::Target;

/// Latency buckets: bucket `i` holds requests of `[2^i, 2^(i+1))` µs
/// (bucket 0 also below 1 µs); the last one everything longer.
const BUCKETS: usize = 32;

/// The counters of one device.
#[derive(Default)]
pub struct Counters {
    reads: AtomicU64,
    read_bytes: AtomicU64,
    writes: AtomicU64,
    write_bytes: AtomicU64,
    discards: AtomicU64,
    discard_bytes: AtomicU64,
    flushes: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl Counters {
    fn done(&self, started: Instant, ok: bool) {
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let us = started.elapsed().as_micros() as u64;
        let b = (64 - us.leading_zeros() as usize)
            .saturating_sub(1)
            .min(BUCKETS - 1);
        self.latency[b].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let hist: Vec<u64> = self.latency.iter().map(l).collect();
        let total: u64 = hist.iter().sum();
        // The upper bound of the bucket holding the q-th request, in µs.
        let pct = |q: f64| -> u64 {
            if total == 0 {
                return 0;
            }
            let want = ((total as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, n) in hist.iter().enumerate() {
                seen += n;
                if seen >= want {
                    return 1u64 << (i + 1);
                }
            }
            1u64 << BUCKETS
        };
        let cache = CACHE
            .get()
            .map(crate::format::zfile::BlockCache::stats)
            .unwrap_or_default();
        Snapshot {
            cache_hits: cache.hits,
            cache_inserts: cache.inserts,
            discard_bytes: l(&self.discard_bytes),
            discards: l(&self.discards),
            errors: l(&self.errors),
            flushes: l(&self.flushes),
            latency_p50_us: pct(0.50),
            latency_p90_us: pct(0.90),
            latency_p99_us: pct(0.99),
            read_bytes: l(&self.read_bytes),
            reads: l(&self.reads),
            remote_bytes: crate::source::remote::fetched_bytes(),
            write_bytes: l(&self.write_bytes),
            writes: l(&self.writes),
        }
    }
}

/// A device's counters at one moment. Latencies are upper bounds of
/// power-of-two buckets (a p50 of 64 means between 32 and 64 µs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Reads of compressed blocks the block cache answered.
    pub cache_hits: u64,
    /// Blocks read, decompressed and put in the block cache (large reads
    /// that pass the cache by are not counted).
    pub cache_inserts: u64,
    /// Bytes discarded (TRIM, WRITE_ZEROES).
    pub discard_bytes: u64,
    /// Discard and write-zeroes requests.
    pub discards: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Flush requests.
    pub flushes: u64,
    /// Median request latency, µs (bucket bound).
    pub latency_p50_us: u64,
    /// 90th percentile, µs.
    pub latency_p90_us: u64,
    /// 99th percentile, µs.
    pub latency_p99_us: u64,
    /// Bytes read (holes and zeroed extents included).
    pub read_bytes: u64,
    /// Read requests.
    pub reads: u64,
    /// Bytes fetched from registries (lazy reads, read-ahead, prefetch).
    pub remote_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Write requests.
    pub writes: u64,
}

/// The counters of this server process (one device per server).
static CURRENT: OnceLock<Arc<Counters>> = OnceLock::new();

/// The block cache of this server's stack, for its hit and miss counts.
static CACHE: OnceLock<crate::format::zfile::BlockCache> = OnceLock::new();

/// Counts `cache`'s hits and misses in this process's snapshots.
pub fn watch_cache(cache: Option<&crate::format::zfile::BlockCache>) {
    if let Some(c) = cache {
        let _ = CACHE.set(c.clone());
    }
}

/// A target whose requests are counted.
pub struct Counted {
    inner: Arc<dyn Target>,
    c: Arc<Counters>,
}

/// Wraps `target` so that its requests count in this process's counters.
pub fn counted(target: Arc<dyn Target>) -> Arc<dyn Target> {
    let c = CURRENT
        .get_or_init(|| Arc::new(Counters::default()))
        .clone();
    Arc::new(Counted { inner: target, c })
}

impl Target for Counted {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_only(&self) -> bool {
        self.inner.read_only()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.read_at(buf, offset);
        self.c.reads.fetch_add(1, Ordering::Relaxed);
        self.c
            .read_bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.c.done(t, r.is_ok());
        r
    }

    fn reads_as_zeros(&self, offset: u64, len: u64) -> bool {
        // Asked by the servers for reads only: a yes is a read answered
        // without data.
        let t = Instant::now();
        let z = self.inner.reads_as_zeros(offset, len);
        if z {
            self.c.reads.fetch_add(1, Ordering::Relaxed);
            self.c.read_bytes.fetch_add(len, Ordering::Relaxed);
            self.c.done(t, true);
        }
        z
    }

    fn extents(&self, offset: u64, len: u64) -> Vec<(u64, u32)> {
        self.inner.extents(offset, len)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.write_at(buf, offset);
        self.c.writes.fetch_add(1, Ordering::Relaxed);
        self.c
            .write_bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.c.done(t, r.is_ok());
        r
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.discard(offset, len);
        self.c.discards.fetch_add(1, Ordering::Relaxed);
        self.c.discard_bytes.fetch_add(len, Ordering::Relaxed);
        self.c.done(t, r.is_ok());
        r
    }

    fn flush(&self) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.flush();
        self.c.flushes.fetch_add(1, Ordering::Relaxed);
        self.c.done(t, r.is_ok());
        r
    }
}

/// Where device `id`'s counters are written.
pub fn path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id}.stats.json"))
}

/// The file this process writes its counters to, while it does.
static WRITING: Mutex<Option<PathBuf>> = Mutex::new(None);

fn writing() -> std::sync::MutexGuard<'static, Option<PathBuf>> {
    WRITING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes this process's counters to `path` now and then every second,
/// from a background thread, until [`remove`] is called for it.
pub fn start_writer(path: PathBuf) {
    let Some(c) = CURRENT.get().cloned() else {
        return;
    };
    *writing() = Some(path);
    let _ = std::thread::Builder::new()
        .name("obd-stats".into())
        .spawn(move || loop {
            {
                let w = writing();
                let Some(p) = w.as_ref() else { return };
                let _ = write(p, &c.snapshot());
            }
            std::thread::sleep(Duration::from_secs(1));
        });
}

/// Removes device `id`'s counters (with its run record); a writer in this
/// process stops first.
pub fn remove(dir: &Path, id: u32) {
    let p = path(dir, id);
    let mut w = writing();
    if w.as_ref() == Some(&p) {
        *w = None;
    }
    let _ = std::fs::remove_file(&p);
}

fn write(path: &Path, s: &Snapshot) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(s)?)?;
    std::fs::rename(&tmp, path)
}

/// Device `id`'s counters as last written, if any.
pub fn read(dir: &Path, id: u32) -> Option<Snapshot> {
    let b = std::fs::read(path(dir, id)).ok()?;
    if b.len() > 64 << 10 {
        return None;
    }
    serde_json::from_slice(&b).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_bucket_bounds() {
        let c = Counters::default();
        for (us, n) in [(3u64, 50u64), (100, 40), (5000, 10)] {
            let b = (64 - us.leading_zeros() as usize) - 1;
            c.latency[b].fetch_add(n, Ordering::Relaxed);
        }
        let s = c.snapshot();
        assert_eq!(s.latency_p50_us, 4);
        assert_eq!(s.latency_p90_us, 128);
        assert_eq!(s.latency_p99_us, 8192);
        assert_eq!(Counters::default().snapshot().latency_p99_us, 0);
    }
}
