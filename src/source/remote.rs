//! Registry blobs as [`ReadAt`] views: reads are served from the local
//! cache, missing chunks fetched by HTTP Range (adjacent ones in one
//! request), sequential readers get read-ahead from a small pool of
//! fetcher threads, and a blob that carries no per-block checksums is
//! fetched whole and checked against its digest before any byte of it is
//! used.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::error::{Error, Result};
use crate::io::{check_range, ReadAt};
use crate::source::cache::{CacheDir, CachedBlob};
use crate::source::digest::Digest;
use crate::source::image::LayerBlob;
use crate::source::registry::{Registry, RemoteOptions};

/// Chunks one demand request fetches at most (with 256 KiB chunks, 4 MiB).
const DEMAND_RUN: u64 = 16;
/// Chunks per request at most when fetching a blob whole (16 MiB).
const WHOLE_RUN: u64 = 64;
/// Bytes of range buffers one whole fetch has in flight at most (a pull
/// runs two).
const WHOLE_BUFFERS: u64 = 128 << 20;
/// Chunks one read-ahead request fetches.
const AHEAD_RUN: u64 = 4;
/// Read-ahead jobs waiting at most; more are dropped.
const AHEAD_QUEUE: usize = 256;

/// Bytes this process fetched from registries.
static FETCHED: AtomicU64 = AtomicU64::new(0);

/// Bytes this process fetched from registries so far (for `obd stats`).
pub fn fetched_bytes() -> u64 {
    FETCHED.load(Ordering::Relaxed)
}

/// What remote sources share in one process: options, registry clients,
/// the cache, and the entries open in it.
pub struct RemoteContext {
    opts: RemoteOptions,
    cache: CacheDir,
    registries: Mutex<HashMap<String, Arc<Registry>>>,
    open: Mutex<HashMap<Digest, Weak<CachedBlob>>>,
}

impl std::fmt::Debug for RemoteContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteContext({})", self.cache.root().display())
    }
}

impl RemoteContext {
    /// A context with these options and this cache.
    pub fn new(opts: RemoteOptions, cache: CacheDir) -> Arc<Self> {
        Arc::new(RemoteContext {
            opts,
            cache,
            registries: Mutex::new(HashMap::new()),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// The options.
    pub fn options(&self) -> &RemoteOptions {
        &self.opts
    }

    /// The cache.
    pub fn cache(&self) -> &CacheDir {
        &self.cache
    }

    /// The client of `registry`, made on first use.
    ///
    /// # Errors
    /// As [`Registry::new`].
    pub fn registry(&self, registry: &str) -> Result<Arc<Registry>> {
        let mut m = self.registries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = m.get(registry) {
            return Ok(r.clone());
        }
        let r = Registry::new(registry, &self.opts)?;
        m.insert(registry.to_string(), r.clone());
        Ok(r)
    }

    /// The cache entry of `blob`, shared by everything in this process
    /// that reads it.
    ///
    /// # Errors
    /// As [`CacheDir::blob`].
    pub fn cached(&self, blob: &LayerBlob) -> Result<Arc<CachedBlob>> {
        let mut m = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = m.get(&blob.digest).and_then(Weak::upgrade) {
            if b.size() == blob.size {
                return Ok(b);
            }
            return Err(Error::invalid(
                "cache",
                format!(
                    "{}: read as {} bytes and as {} bytes by two images",
                    blob.digest,
                    b.size(),
                    blob.size
                ),
            ));
        }
        let b = self.cache.blob(&blob.digest, blob.size)?;
        m.retain(|_, w| w.strong_count() > 0);
        m.insert(blob.digest, Arc::downgrade(&b));
        Ok(b)
    }
}

/// A layer blob in a registry.
#[derive(Clone)]
pub struct RemoteLayer {
    /// The registry (`host[:port]`).
    pub registry: String,
    /// The repository.
    pub repo: String,
    /// The blob.
    pub blob: LayerBlob,
    /// Shared clients and cache.
    pub ctx: Arc<RemoteContext>,
}

impl std::fmt::Debug for RemoteLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for RemoteLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "docker://{}/{}@{}",
            self.registry, self.repo, self.blob.digest
        )
    }
}

impl PartialEq for RemoteLayer {
    fn eq(&self, o: &Self) -> bool {
        (&self.registry, &self.repo, self.blob) == (&o.registry, &o.repo, o.blob)
    }
}

impl Eq for RemoteLayer {}

impl std::hash::Hash for RemoteLayer {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.registry.hash(h);
        self.repo.hash(h);
        self.blob.digest.hash(h);
    }
}

impl RemoteLayer {
    /// The blob as a lazily fetched view.
    ///
    /// # Errors
    /// The registry client or the cache entry cannot be set up.
    pub fn open(&self) -> Result<Arc<RemoteBlob>> {
        self.ctx
            .cache
            .record_origin(&self.blob.digest, &self.registry, &self.repo);
        Ok(Arc::new(RemoteBlob {
            inner: Arc::new(Inner {
                reg: self.ctx.registry(&self.registry)?,
                repo: self.repo.clone(),
                cache: self.ctx.cached(&self.blob)?,
                ahead_to: AtomicU64::new(0),
                seq: Mutex::new((u64::MAX, 0)),
                window: (4 * self.ctx.opts.max_requests as u64).max(AHEAD_RUN),
                threads: self.ctx.opts.max_requests.clamp(1, 64),
            }),
        }))
    }

    /// Fetches every missing chunk (up to the registry's request limit in
    /// flight) and checks the whole blob against its digest; `progress`
    /// gets the bytes fetched so far.
    ///
    /// # Errors
    /// Fetch errors; a blob whose bytes do not match its digest.
    pub fn fetch_all(&self, progress: &(dyn Fn(u64) + Sync)) -> Result<()> {
        let b = self.open()?;
        b.inner.fetch_all(self.ctx.opts.max_requests, progress)?;
        if !b.inner.cache.verify_digest()? {
            return Err(Error::remote(
                format!("registry {}", self.registry),
                format!(
                    "blob {} of {}: the bytes do not match the digest (the cached copy was dropped)",
                    self.blob.digest, self.repo
                ),
            ));
        }
        Ok(())
    }

    /// Ensures the blob is complete and verified, fetching it whole if
    /// needed: for blobs without per-block checksums, before any byte is used.
    ///
    /// # Errors
    /// As [`RemoteLayer::fetch_all`].
    pub fn ensure_verified(&self) -> Result<()> {
        if self.ctx.cached(&self.blob)?.verified() {
            return Ok(());
        }
        self.fetch_all(&|_| {})
    }

    /// Starts fetching the first and last chunks (headers, trailers and
    /// indexes live there) in the background, so that opening several
    /// layers waits for one round trip rather than one per read.
    pub fn prefetch_ends(&self) {
        if let Ok(b) = self.open() {
            let n = b.inner.cache.chunks();
            ahead(&b.inner, 0, 0);
            if n > 1 {
                ahead(&b.inner, n.saturating_sub(2).max(1), n - 1);
            }
        }
    }
}

/// For commands that read (nearly) every byte of a stack (`flatten`,
/// `merge`): fetches the registry layers among `sources` whole, one after
/// another, on a background thread, `--max-requests` ranges in flight, as
/// `pull` does. Reads that get ahead of it fetch what they need themselves
/// (a chunk is fetched once: readers wait for the fetch in flight). Failures
/// are left to the reads to report.
pub fn fetch_whole_in_background(sources: &[super::LayerSource]) {
    let layers: Vec<RemoteLayer> = sources
        .iter()
        .filter_map(|s| match s {
            super::LayerSource::Remote(r) => Some(r.clone()),
            super::LayerSource::File(_) => None,
        })
        .collect();
    if layers.is_empty() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("obd-fetch".into())
        .spawn(move || {
            for l in layers {
                let _ = l.fetch_all(&|_| {});
            }
        });
}

/// Fetches registry blob `blob` whole into `data` (its chunk record at
/// `record`, so that an interrupted fetch resumes), `workers` requests in
/// flight, and checks it against its digest; `progress` gets the bytes
/// present so far. The record is removed once the blob verified.
///
/// # Errors
/// Fetch errors; a blob whose bytes do not match its digest.
pub fn fetch_into(
    reg: Arc<Registry>,
    repo: &str,
    blob: LayerBlob,
    data: &std::path::Path,
    record: &std::path::Path,
    workers: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    let cache = Arc::new(CachedBlob::open(data, record, blob.digest, blob.size)?);
    let inner = Inner {
        reg: reg.clone(),
        repo: repo.to_string(),
        cache: cache.clone(),
        ahead_to: AtomicU64::new(0),
        seq: Mutex::new((u64::MAX, 0)),
        window: 0,
        threads: workers,
    };
    inner.fetch_all(workers, progress)?;
    if !cache.verify_digest()? {
        return Err(Error::remote(
            format!("registry {}", reg.name()),
            format!(
                "blob {} of {repo}: the bytes do not match the digest (fetched again next time)",
                blob.digest
            ),
        ));
    }
    Ok(())
}

struct Inner {
    reg: Arc<Registry>,
    repo: String,
    cache: Arc<CachedBlob>,
    /// Read-ahead was scheduled up to this chunk (exclusive).
    ahead_to: AtomicU64,
    /// Sequential detection: where the last read ended, and how many bytes
    /// the current run of (nearly) sequential reads has covered.
    seq: Mutex<(u64, u64)>,
    /// Chunks read ahead of a sequential reader.
    window: u64,
    /// Read-ahead threads (the registry's requests in flight).
    threads: usize,
}

impl Inner {
    /// Fetches claimed chunks `first..=last` with one request.
    fn fetch(&self, first: u64, last: u64) -> Result<()> {
        self.fetch_with(first, last, &mut Vec::new())
    }

    /// As `fetch`, into `buf` (kept by the caller across fetches: a large
    /// fresh buffer costs a page fault per page).
    fn fetch_with(&self, first: u64, last: u64, buf: &mut Vec<u8>) -> Result<()> {
        let (start, len) = self.cache.chunk_range(first, last);
        buf.resize(len as usize, 0);
        let buf = &mut buf[..];
        let c = &self.cache;
        if let Err(e) = self
            .reg
            .read_blob(&self.repo, c.digest(), c.size(), start, buf)
        {
            c.release(first, last);
            return Err(e);
        }
        FETCHED.fetch_add(len, Ordering::Relaxed);
        c.fill(first, last, buf)
    }

    /// Makes chunks `first..=last` present: fetches what is absent, waits
    /// for what other threads are fetching.
    fn ensure(&self, first: u64, last: u64) -> Result<()> {
        while let Some((f, l)) = self.cache.claim(first, last, DEMAND_RUN, true)? {
            self.fetch(f, l)?;
        }
        Ok(())
    }

    fn fetch_all(&self, workers: usize, progress: &(dyn Fn(u64) + Sync)) -> Result<()> {
        let n = self.cache.chunks();
        let done = AtomicU64::new(
            (0..n)
                .filter(|&i| self.cache.has_chunk(i))
                .map(|i| self.cache.chunk_range(i, i).1)
                .sum(),
        );
        progress(done.load(Ordering::Relaxed));
        // Ranges of 4 to 16 MiB, at least two per worker: fewer requests
        // for a large blob, every worker busy for a small one; at most
        // 128 MiB of buffers in flight whatever --max-requests says.
        let w = workers.clamp(1, 64) as u64;
        let run = (n / (2 * w))
            .clamp(DEMAND_RUN, WHOLE_RUN)
            .min((WHOLE_BUFFERS / (w * self.cache.chunk_size())).max(DEMAND_RUN));
        let first_err: Mutex<Option<Error>> = Mutex::new(None);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            // The digest is computed as the chunks arrive, not after.
            let hasher = s.spawn(|| self.cache.hash_following(&stop));
            let mut workers_done = Vec::new();
            for _ in 0..workers.clamp(1, 64) {
                workers_done.push(s.spawn(|| {
                    let mut scratch = Vec::new();
                    loop {
                        if first_err.lock().is_ok_and(|e| e.is_some()) {
                            return;
                        }
                        let claimed = match self.cache.claim(0, n - 1, run, false) {
                            Ok(Some(c)) => c,
                            Ok(None) => return,
                            Err(e) => {
                                keep_first(&first_err, e);
                                return;
                            }
                        };
                        match self.fetch_with(claimed.0, claimed.1, &mut scratch) {
                            Ok(()) => {
                                let got = self.cache.chunk_range(claimed.0, claimed.1).1;
                                progress(done.fetch_add(got, Ordering::Relaxed) + got);
                            }
                            Err(e) => {
                                keep_first(&first_err, e);
                                return;
                            }
                        }
                    }
                }));
            }
            for w in workers_done {
                let _ = w.join();
            }
            // Whatever other threads were busy with.
            if first_err.lock().is_ok_and(|e| e.is_none()) {
                if let Err(e) = self.ensure(0, n - 1) {
                    keep_first(&first_err, e);
                }
            }
            if first_err.lock().is_ok_and(|e| e.is_some()) {
                stop.store(true, Ordering::Relaxed);
            }
            // A hashing failure only means verify_digest hashes again.
            let _ = hasher.join();
        });
        if let Some(e) = first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        self.cache.persist()
    }
}

fn keep_first(slot: &Mutex<Option<Error>>, e: Error) {
    let mut g = slot.lock().unwrap_or_else(|p| p.into_inner());
    if g.is_none() {
        *g = Some(e);
    }
}

/// A registry blob read through the cache.
pub struct RemoteBlob {
    inner: Arc<Inner>,
}

impl RemoteBlob {
    /// The cache entry.
    pub fn cache(&self) -> &Arc<CachedBlob> {
        &self.inner.cache
    }
}

impl ReadAt for RemoteBlob {
    fn len(&self) -> u64 {
        self.inner.cache.size()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let c = &self.inner.cache;
        check_range("registry blob", offset, buf.len(), c.size())?;
        if buf.is_empty() {
            return Ok(());
        }
        let chunk = c.chunk_size();
        let first = offset / chunk;
        let end = offset + buf.len() as u64;
        let last = (end - 1) / chunk;
        // Sequential: reads that start where the last one ended (or within
        // a chunk of it). Once such a run covers two chunks, read-ahead
        // keeps a window of chunks coming that grows with the run (twice
        // its length, up to `window`): a file's header and first block do
        // not set off a fetch of the whole blob.
        let run = {
            let mut s = self.inner.seq.lock().unwrap_or_else(|p| p.into_inner());
            let (prev, run) = *s;
            let near =
                prev != u64::MAX && offset <= prev.saturating_add(chunk) && end + chunk >= prev;
            let run = if near {
                run + buf.len() as u64
            } else {
                buf.len() as u64
            };
            *s = (end, run);
            run
        };
        self.inner.ensure(first, last)?;
        c.read_ready(buf, offset)?;
        if run >= 2 * chunk && self.inner.window > 0 {
            let window = (2 * run / chunk).clamp(AHEAD_RUN, self.inner.window);
            let want_to = (last + 1 + window).min(c.chunks());
            let from = self
                .inner
                .ahead_to
                .fetch_max(want_to, Ordering::Relaxed)
                .max(last + 1);
            let mut f = from;
            while f < want_to {
                let l = (f + AHEAD_RUN - 1).min(want_to - 1);
                ahead(&self.inner, f, l);
                f = l + 1;
            }
        }
        Ok(())
    }

    fn refetch(&self, offset: u64, len: u64) -> bool {
        let c = &self.inner.cache;
        if len == 0 || offset.checked_add(len).is_none_or(|e| e > c.size()) {
            return false;
        }
        let chunk = c.chunk_size();
        c.invalidate(offset / chunk, (offset + len - 1) / chunk);
        true
    }
}

type Job = (Arc<Inner>, u64, u64);

/// The read-ahead pool: `threads` threads (at most 64), made on first use
/// (after any fork), fetching chunks that sequential readers will want.
fn pool(threads: usize) -> &'static SyncSender<Job> {
    static POOL: OnceLock<SyncSender<Job>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = sync_channel::<Job>(AHEAD_QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.clamp(1, 64) {
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .name(format!("obd-ahead-{i}"))
                .spawn(move || loop {
                    let job = rx.lock().map(|r| r.recv());
                    let Ok(Ok((inner, first, last))) = job else {
                        return;
                    };
                    // Chunks already there or being fetched are skipped;
                    // a failure is the demand reader's to report.
                    while let Ok(Some((f, l))) = inner.cache.claim(first, last, AHEAD_RUN, false) {
                        if inner.fetch(f, l).is_err() {
                            break;
                        }
                    }
                });
        }
        tx
    })
}

fn ahead(inner: &Arc<Inner>, first: u64, last: u64) {
    let _ = pool(inner.threads).try_send((inner.clone(), first, last));
}
