//! The local, content-addressed cache of registry blobs.
//!
//! One sparse file per blob (`blobs/sha256/<hex>`) and a record of which
//! aligned chunks (256 KiB) are present (`<hex>.chunks`): a 64-byte header
//! (magic `OBDCACH1`, version, chunk size, blob size, digest, flags) and
//! 8 bytes per chunk (CRC32C of the chunk, present flag). A chunk's entry
//! is written only after its data was synced, so a crash never marks a
//! chunk present that is not on disk. The first read of a chunk in a
//! process checks its CRC: a damaged chunk is fetched again, never served.
//! A blob whose chunks are all present has its sha256 checked once and is
//! marked verified.
//!
//! Processes share a cache directory: a blob in use holds a shared `flock`
//! on its record (pruning skips it), and setting up or resetting a record
//! takes the lock exclusively. Two processes fetching one chunk write the
//! same bytes.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::checksum::crc32c;
use crate::source::digest::Digest;

/// The chunk size of new cache entries.
pub const CHUNK: u64 = 256 << 10;
/// The largest blob the cache takes (4 Mi chunks).
pub const MAX_BLOB: u64 = 1 << 40;
const MAGIC: &[u8; 8] = b"OBDCACH1";
const VERSION: u32 = 1;
const HEADER: u64 = 64;
const FLAG_VERIFIED: u32 = 1;
/// Chunk entries are synced in batches of this many, or after this long.
const SYNC_BATCH: usize = 256;
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// A cache directory.
#[derive(Debug, Clone)]
pub struct CacheDir {
    root: PathBuf,
    limit: Option<u64>,
}

/// One cache entry, as `obd cache list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EntryInfo {
    /// The blob's digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// Bytes present.
    pub cached_bytes: u64,
    /// Disk space the entry takes.
    pub disk_bytes: u64,
    /// Every chunk is present and the sha256 matched.
    pub verified: bool,
    /// An attached device or another process has it open.
    pub in_use: bool,
    /// Seconds since it was last opened.
    pub idle_seconds: u64,
}

/// The default cache directory: `$XDG_CACHE_HOME/obd`, `~/.cache/obd`, or
/// `/var/cache/obd` for root.
pub fn default_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(x).join("obd");
    }
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/cache/obd");
    }
    match std::env::var_os("HOME").filter(|s| !s.is_empty()) {
        Some(h) => PathBuf::from(h).join(".cache/obd"),
        None => PathBuf::from("/var/cache/obd"),
    }
}

impl CacheDir {
    /// Opens (creating, mode 0700) the cache at `root`, bounded to `limit`
    /// bytes of disk when given.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn open(root: &Path, limit: Option<u64>) -> Result<Self> {
        let blobs = root.join("blobs").join("sha256");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&blobs)
            .map_err(|e| Error::file(&blobs, "create", e))?;
        Ok(CacheDir {
            root: root.to_path_buf(),
            limit,
        })
    }

    /// The cache's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn paths(&self, d: &Digest) -> (PathBuf, PathBuf) {
        let base = self.root.join("blobs").join("sha256").join(d.hex());
        let rec = base.with_extension("chunks");
        (base, rec)
    }

    /// The entry of blob `digest` of `size` bytes, set up if new; it stays
    /// in use (never pruned) while the returned value lives. Makes room
    /// first when the cache is over its limit.
    ///
    /// # Errors
    /// File-system errors; the entry is in use by another process with a
    /// different size.
    pub fn blob(&self, digest: &Digest, size: u64) -> Result<Arc<CachedBlob>> {
        let (data, rec) = self.paths(digest);
        let b = Arc::new(CachedBlob::open(&data, &rec, *digest, size)?);
        {
            let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
            open.retain(|w| w.strong_count() > 0);
            open.push(Arc::downgrade(&b));
        }
        if let Some(limit) = self.limit {
            let _ = self.prune(limit);
        }
        Ok(b)
    }

    /// Notes that blob `d` is in `repo` on `registry`, so that a push of
    /// it to another repository of that registry can mount it instead of
    /// uploading it. At most 32 places are kept.
    pub fn record_origin(&self, d: &Digest, registry: &str, repo: &str) {
        let mut places = self.origins(d);
        let place = (registry.to_string(), repo.to_string());
        if places.contains(&place) {
            return;
        }
        places.insert(0, place);
        places.truncate(32);
        let text: String = places.iter().map(|(r, p)| format!("{r} {p}\n")).collect();
        let path = self.paths(d).0.with_extension("origin");
        if let Ok(mut f) = crate::io::atomic::AtomicFile::create(&path, true) {
            if std::io::Write::write_all(f.file_mut(), text.as_bytes()).is_ok() {
                let _ = f.commit();
            }
        }
    }

    /// The `(registry, repository)` places blob `d` was read from.
    pub fn origins(&self, d: &Digest) -> Vec<(String, String)> {
        let path = self.paths(d).0.with_extension("origin");
        let Ok(text) = std::fs::read_to_string(path) else {
            return Vec::new();
        };
        text.lines()
            .take(32)
            .filter_map(|l| l.split_once(' '))
            .map(|(r, p)| (r.to_string(), p.to_string()))
            .collect()
    }

    /// Every entry.
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn list(&self) -> Result<Vec<EntryInfo>> {
        let dir = self.root.join("blobs").join("sha256");
        let rd = std::fs::read_dir(&dir).map_err(|e| Error::file(&dir, "read", e))?;
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".chunks")) else {
                continue;
            };
            let Ok(d) = Digest::parse(&format!("sha256:{hex}")) else {
                continue;
            };
            if let Some(info) = self.info(&d) {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    fn info(&self, d: &Digest) -> Option<EntryInfo> {
        let (data, rec) = self.paths(d);
        let rf = File::open(&rec).ok()?;
        let (size, chunk, flags) = read_header(&rf, d).ok()?;
        let n = chunk_count(size, chunk);
        let present = read_entries(&rf, n)
            .ok()?
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_some())
            .map(|(i, _)| chunk_len(size, chunk, i as u64))
            .sum();
        let in_use =
            rustix::fs::flock(&rf, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err();
        let meta = std::fs::metadata(&data).ok();
        let rmeta = rf.metadata().ok()?;
        let idle = rmeta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .map_or(0, |e| e.as_secs());
        Some(EntryInfo {
            digest: d.to_string(),
            size,
            cached_bytes: present,
            disk_bytes: meta.map_or(0, |m| m.blocks() * 512) + rmeta.blocks() * 512,
            verified: flags & FLAG_VERIFIED != 0,
            in_use,
            idle_seconds: idle,
        })
    }

    /// Removes entries, least recently used first, until the cache takes
    /// at most `keep` bytes of disk; entries in use stay. Returns the
    /// digests removed and the bytes freed.
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn prune(&self, keep: u64) -> Result<(Vec<String>, u64)> {
        let mut entries = self.list()?;
        let mut total: u64 = entries.iter().map(|e| e.disk_bytes).sum();
        entries.sort_by_key(|e| std::cmp::Reverse(e.idle_seconds));
        let mut removed = Vec::new();
        let mut freed = 0;
        for e in entries {
            if total <= keep {
                break;
            }
            let Ok(d) = Digest::parse(&e.digest) else {
                continue;
            };
            if self.remove_unused(&d) {
                total = total.saturating_sub(e.disk_bytes);
                freed += e.disk_bytes;
                removed.push(e.digest);
            }
        }
        Ok((removed, freed))
    }

    /// Removes an entry nobody uses; false when it is in use.
    fn remove_unused(&self, d: &Digest) -> bool {
        let (data, rec) = self.paths(d);
        let Ok(rf) = File::open(&rec) else {
            return false;
        };
        if rustix::fs::flock(&rf, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return false;
        }
        // The record goes first: data without a record is never trusted.
        let _ = std::fs::remove_file(&rec);
        let _ = std::fs::remove_file(&data);
        let _ = std::fs::remove_file(data.with_extension("origin"));
        true
    }

    /// Checks every entry not in use: each present chunk's CRC, and the
    /// sha256 of complete blobs. Damaged chunks are marked absent (they
    /// will be fetched again). Returns `(digest, damaged chunks, complete
    /// and matching)` per entry.
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn verify(&self) -> Result<Vec<(EntryInfo, usize, bool)>> {
        let mut out = Vec::new();
        for e in self.list()? {
            let Ok(d) = Digest::parse(&e.digest) else {
                continue;
            };
            let (data, rec) = self.paths(&d);
            let Ok(b) = CachedBlob::open(&data, &rec, d, e.size) else {
                continue;
            };
            let damaged = b.check_all()?;
            let ok = damaged == 0 && b.complete() && b.verify_digest()?;
            let info = self.info(&d).unwrap_or(e);
            out.push((info, damaged, ok));
        }
        Ok(out)
    }
}

fn chunk_count(size: u64, chunk: u64) -> u64 {
    size.div_ceil(chunk)
}

fn chunk_len(size: u64, chunk: u64, i: u64) -> u64 {
    chunk.min(size - i * chunk)
}

fn read_header(rf: &File, d: &Digest) -> Result<(u64, u64, u32)> {
    let mut h = [0u8; HEADER as usize];
    rf.read_exact_at(&mut h, 0)
        .map_err(|e| Error::io("cache record", 0, e))?;
    let u32_at = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
    let mut size8 = [0u8; 8];
    size8.copy_from_slice(&h[16..24]);
    let size = u64::from_le_bytes(size8);
    let chunk = u64::from(u32_at(12));
    if &h[..8] != MAGIC || u32_at(8) != VERSION || &h[24..56] != d.bytes() {
        return Err(Error::corrupt("cache record", 0, "not this blob's record"));
    }
    if chunk == 0 || !chunk.is_power_of_two() || chunk > 64 << 20 || size == 0 || size > MAX_BLOB {
        return Err(Error::corrupt("cache record", 0, "impossible sizes"));
    }
    let n = chunk_count(size, chunk);
    let len = rf
        .metadata()
        .map_err(|e| Error::io("cache record", 0, e))?
        .len();
    if len < HEADER + 8 * n {
        return Err(Error::corrupt("cache record", 0, "truncated"));
    }
    Ok((size, chunk, u32_at(56)))
}

/// Each chunk's stored CRC, or None when absent.
fn read_entries(rf: &File, n: u64) -> Result<Vec<Option<u32>>> {
    let mut buf = vec![0u8; (8 * n) as usize];
    rf.read_exact_at(&mut buf, HEADER)
        .map_err(|e| Error::io("cache record", HEADER, e))?;
    Ok(buf
        .chunks_exact(8)
        .map(|e| {
            let crc = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            (u32::from_le_bytes([e[4], e[5], e[6], e[7]]) == 1).then_some(crc)
        })
        .collect())
}

/// A chunk's state in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Not on disk.
    Absent,
    /// A thread of this process is fetching or checking it.
    Busy,
    /// On disk by the record, its CRC not yet checked in this process.
    OnDisk(u32),
    /// Checked or fetched by this process.
    Ready(u32),
}

struct Table {
    chunks: Vec<Chunk>,
    /// Chunks fetched whose record entries are not yet written.
    unsynced: Vec<u32>,
    last_sync: Instant,
    verified: bool,
}

/// Every entry open in this process, so that [`persist_open`] can write
/// their records before the process exits.
static OPEN: Mutex<Vec<std::sync::Weak<CachedBlob>>> = Mutex::new(Vec::new());

/// Writes the record entries of every chunk fetched by this process (for
/// a process about to exit: entries still open would otherwise be fetched
/// again by the next one).
pub fn persist_open() {
    let open: Vec<Arc<CachedBlob>> = OPEN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .collect();
    for b in open {
        let _ = b.persist();
    }
}

/// Starts (once, on the first fetched chunk: after any fork) a thread that
/// writes pending record entries every second, so that a long-lived
/// server's cache stays current for other processes.
fn start_persister() {
    static STARTED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    STARTED.get_or_init(|| {
        let _ = std::thread::Builder::new()
            .name("obd-cache-sync".into())
            .spawn(|| loop {
                std::thread::sleep(SYNC_EVERY);
                persist_open();
            });
    });
}

/// One blob's cache entry, in use while it lives.
pub struct CachedBlob {
    digest: Digest,
    size: u64,
    chunk: u64,
    data: File,
    record: File,
    data_path: PathBuf,
    table: Mutex<Table>,
    cv: Condvar,
    sync: Mutex<()>,
}

impl std::fmt::Debug for CachedBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CachedBlob({})", self.digest)
    }
}

impl CachedBlob {
    /// Opens or sets up the entry at `data`/`record` for blob `digest`.
    ///
    /// # Errors
    /// File-system errors; an entry in use by another process that
    /// disagrees on the size.
    pub fn open(data: &Path, record: &Path, digest: Digest, size: u64) -> Result<Self> {
        use rustix::fs::{flock, FlockOperation as F};
        if size == 0 || size > MAX_BLOB {
            return Err(Error::invalid(
                "cache",
                format!("{digest}: a blob of {size} bytes (1 byte to 1 TiB)"),
            ));
        }
        let open = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(p)
                .map_err(|e| Error::file(p, "open", e))
        };
        let rf = open(record)?;
        flock(&rf, F::LockShared).map_err(|e| Error::file(record, "lock", e.into()))?;
        let chunks = match read_header(&rf, &digest) {
            Ok((s, c, flags)) if s == size && c == CHUNK => {
                let n = chunk_count(size, CHUNK);
                let entries = read_entries(&rf, n)?;
                Some((entries, flags & FLAG_VERIFIED != 0))
            }
            _ => None,
        };
        let df = open(data)?;
        let (chunks, verified) = match chunks {
            Some(c) => c,
            None => {
                // New, damaged or of another size: set it up afresh, alone.
                if flock(&rf, F::NonBlockingLockExclusive).is_err() {
                    return Err(Error::invalid(
                        "cache",
                        format!(
                            "{}: the entry of {digest} is in use by another process with another size or layout",
                            record.display()
                        ),
                    ));
                }
                let n = chunk_count(size, CHUNK);
                rf.set_len(0).map_err(|e| Error::file(record, "write", e))?;
                df.set_len(0).map_err(|e| Error::file(data, "write", e))?;
                df.set_len(size)
                    .map_err(|e| Error::file(data, "write", e))?;
                let mut h = [0u8; HEADER as usize];
                h[..8].copy_from_slice(MAGIC);
                h[8..12].copy_from_slice(&VERSION.to_le_bytes());
                h[12..16].copy_from_slice(&(CHUNK as u32).to_le_bytes());
                h[16..24].copy_from_slice(&size.to_le_bytes());
                h[24..56].copy_from_slice(digest.bytes());
                rf.write_all_at(&h, 0)
                    .map_err(|e| Error::file(record, "write", e))?;
                rf.set_len(HEADER + 8 * n)
                    .map_err(|e| Error::file(record, "write", e))?;
                flock(&rf, F::LockShared).map_err(|e| Error::file(record, "lock", e.into()))?;
                (vec![None; n as usize], false)
            }
        };
        if df
            .metadata()
            .map_err(|e| Error::file(data, "open", e))?
            .len()
            != size
        {
            df.set_len(size)
                .map_err(|e| Error::file(data, "write", e))?;
        }
        // Opening counts as use: least recently used entries go first.
        let _ = rustix::fs::futimens(
            &rf,
            &rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_NOW,
                },
                last_modification: rustix::fs::Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_NOW,
                },
            },
        );
        Ok(CachedBlob {
            digest,
            size,
            chunk: CHUNK,
            data: df,
            record: rf,
            data_path: data.to_path_buf(),
            table: Mutex::new(Table {
                chunks: chunks
                    .into_iter()
                    .map(|c| c.map_or(Chunk::Absent, Chunk::OnDisk))
                    .collect(),
                unsynced: Vec::new(),
                last_sync: Instant::now(),
                verified,
            }),
            cv: Condvar::new(),
            sync: Mutex::new(()),
        })
    }

    /// The blob's digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The blob's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The chunk size.
    pub fn chunk_size(&self) -> u64 {
        self.chunk
    }

    /// The number of chunks.
    pub fn chunks(&self) -> u64 {
        chunk_count(self.size, self.chunk)
    }

    /// The data file (for copying a complete blob out).
    pub fn data_path(&self) -> &Path {
        &self.data_path
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when every chunk is on disk.
    pub fn complete(&self) -> bool {
        self.table()
            .chunks
            .iter()
            .all(|c| matches!(c, Chunk::Ready(_) | Chunk::OnDisk(_)))
    }

    /// True when the blob was verified against its digest.
    pub fn verified(&self) -> bool {
        self.table().verified
    }

    /// True when chunk `i` need not be fetched (present, maybe unchecked).
    pub fn has_chunk(&self, i: u64) -> bool {
        matches!(
            self.table().chunks.get(i as usize),
            Some(Chunk::Ready(_) | Chunk::OnDisk(_))
        )
    }

    /// Claims the chunks to fetch among `first..=last`: the first run of
    /// absent chunks (at most `max` of them), marked busy. Chunks present
    /// but unchecked are checked here; chunks another thread is busy with
    /// are waited for when `wait`. Returns None when nothing is left to
    /// fetch in the range.
    ///
    /// # Errors
    /// Reading a chunk to check it.
    pub fn claim(&self, first: u64, last: u64, max: u64, wait: bool) -> Result<Option<(u64, u64)>> {
        let last = last.min(self.chunks() - 1);
        let mut t = self.table();
        let mut i = first;
        while i <= last {
            match t.chunks[i as usize] {
                Chunk::Ready(_) => i += 1,
                Chunk::Busy => {
                    if !wait {
                        i += 1;
                        continue;
                    }
                    t = self.cv.wait(t).unwrap_or_else(|p| p.into_inner());
                }
                Chunk::OnDisk(crc) => {
                    t.chunks[i as usize] = Chunk::Busy;
                    drop(t);
                    let ok = self.check_chunk(i, crc);
                    t = self.table();
                    t.chunks[i as usize] = match ok {
                        Ok(true) => Chunk::Ready(crc),
                        _ => Chunk::Absent,
                    };
                    self.cv.notify_all();
                    ok?;
                }
                Chunk::Absent => {
                    let mut end = i;
                    while end < last
                        && end + 1 - i < max
                        && t.chunks[end as usize + 1] == Chunk::Absent
                    {
                        end += 1;
                    }
                    for c in &mut t.chunks[i as usize..=end as usize] {
                        *c = Chunk::Busy;
                    }
                    return Ok(Some((i, end)));
                }
            }
        }
        Ok(None)
    }

    /// Gives back claimed chunks that were not fetched.
    pub fn release(&self, first: u64, last: u64) {
        let mut t = self.table();
        for c in &mut t.chunks[first as usize..=last as usize] {
            if *c == Chunk::Busy {
                *c = Chunk::Absent;
            }
        }
        self.cv.notify_all();
    }

    /// The byte range of chunks `first..=last`.
    pub fn chunk_range(&self, first: u64, last: u64) -> (u64, u64) {
        let start = first * self.chunk;
        let end = ((last + 1) * self.chunk).min(self.size);
        (start, end - start)
    }

    /// Stores the fetched bytes of claimed chunks `first..=last` and marks
    /// them ready (their record entries follow once the data is synced).
    ///
    /// # Errors
    /// Writing the data; the claim is released then.
    pub fn fill(&self, first: u64, last: u64, bytes: &[u8]) -> Result<()> {
        let (start, len) = self.chunk_range(first, last);
        debug_assert_eq!(len, bytes.len() as u64);
        if let Err(e) = self.data.write_all_at(bytes, start) {
            self.release(first, last);
            return Err(Error::file(&self.data_path, "write", e));
        }
        let mut t = self.table();
        for i in first..=last {
            let off = ((i - first) * self.chunk) as usize;
            let n = chunk_len(self.size, self.chunk, i) as usize;
            let crc = crc32c(&bytes[off..off + n]);
            t.chunks[i as usize] = Chunk::Ready(crc);
            t.unsynced.push(i as u32);
        }
        let due = t.unsynced.len() >= SYNC_BATCH || t.last_sync.elapsed() >= SYNC_EVERY;
        drop(t);
        self.cv.notify_all();
        start_persister();
        if due {
            self.persist()?;
        }
        Ok(())
    }

    /// Syncs the data, then writes the record entries of the chunks
    /// fetched since the last call.
    ///
    /// # Errors
    /// Sync or write errors.
    pub fn persist(&self) -> Result<()> {
        let _one = self.sync.lock().unwrap_or_else(|p| p.into_inner());
        let pending: Vec<(u32, u32)> = {
            let mut t = self.table();
            t.last_sync = Instant::now();
            let list = std::mem::take(&mut t.unsynced);
            list.into_iter()
                .filter_map(|i| match t.chunks[i as usize] {
                    Chunk::Ready(crc) => Some((i, crc)),
                    _ => None,
                })
                .collect()
        };
        if pending.is_empty() {
            return Ok(());
        }
        self.data
            .sync_data()
            .map_err(|e| Error::file(&self.data_path, "sync", e))?;
        for (i, crc) in pending {
            let mut e = [0u8; 8];
            e[..4].copy_from_slice(&crc.to_le_bytes());
            e[4..].copy_from_slice(&1u32.to_le_bytes());
            self.record
                .write_all_at(&e, HEADER + 8 * u64::from(i))
                .map_err(|e| Error::io("cache record", HEADER, e))?;
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset` from the data file; the chunks
    /// must be ready (claimed and filled, or checked).
    ///
    /// # Errors
    /// Read errors.
    pub fn read_ready(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.data
            .read_exact_at(buf, offset)
            .map_err(|e| Error::file(&self.data_path, "read", e))
    }

    /// Whether chunk `i` on disk has CRC `crc`.
    fn check_chunk(&self, i: u64, crc: u32) -> Result<bool> {
        let n = chunk_len(self.size, self.chunk, i) as usize;
        let mut buf = vec![0u8; n];
        self.data
            .read_exact_at(&mut buf, i * self.chunk)
            .map_err(|e| Error::file(&self.data_path, "read", e))?;
        Ok(crc32c(&buf) == crc)
    }

    /// Marks chunks `first..=last` absent (their bytes proved bad) so
    /// that they are fetched again.
    pub fn invalidate(&self, first: u64, last: u64) {
        let last = last.min(self.chunks() - 1);
        let mut t = self.table();
        for c in &mut t.chunks[first as usize..=last as usize] {
            if matches!(c, Chunk::Ready(_) | Chunk::OnDisk(_)) {
                *c = Chunk::Absent;
            }
        }
        t.verified = false;
        drop(t);
        for i in first..=last {
            let _ = self.record.write_all_at(&[0u8; 8], HEADER + 8 * i);
        }
        let _ = self.set_flags(0);
    }

    /// Checks the CRC of every present chunk not yet checked; returns how
    /// many were damaged (now absent).
    ///
    /// # Errors
    /// Read errors.
    pub fn check_all(&self) -> Result<usize> {
        let mut damaged = 0;
        for i in 0..self.chunks() {
            let crc = match self.table().chunks[i as usize] {
                Chunk::OnDisk(c) => c,
                _ => continue,
            };
            if self.check_chunk(i, crc)? {
                self.table().chunks[i as usize] = Chunk::Ready(crc);
            } else {
                damaged += 1;
                self.invalidate(i, i);
            }
        }
        Ok(damaged)
    }

    fn set_flags(&self, flags: u32) -> Result<()> {
        self.record
            .write_all_at(&flags.to_le_bytes(), 56)
            .map_err(|e| Error::io("cache record", 56, e))
    }

    /// Hashes the blob in order while other threads fetch it, each chunk
    /// as soon as it is on disk, so that a whole fetch ends with its digest
    /// already known. Returns `Some(matched)` once every chunk was hashed
    /// (a match is recorded as for [`CachedBlob::verify_digest`], a
    /// mismatch empties the entry), None when `stop` was set first.
    ///
    /// # Errors
    /// Read errors.
    pub fn hash_following(&self, stop: &std::sync::atomic::AtomicBool) -> Result<Option<bool>> {
        use sha2::Digest as _;
        use std::sync::atomic::Ordering;
        if self.verified() {
            return Ok(Some(true));
        }
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; self.chunk as usize];
        for i in 0..self.chunks() {
            let mut t = self.table();
            // Ready only: a chunk left by an earlier run is hashed once the
            // fetchers' claim checked its CRC (a damaged one is refetched).
            while !matches!(t.chunks[i as usize], Chunk::Ready(_)) {
                if stop.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                t = self
                    .cv
                    .wait_timeout(t, Duration::from_millis(50))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            drop(t);
            let (start, len) = self.chunk_range(i, i);
            let b = &mut buf[..len as usize];
            self.data
                .read_exact_at(b, start)
                .map_err(|e| Error::file(&self.data_path, "read", e))?;
            h.update(&*b);
        }
        if Digest::from_hasher(h) == self.digest {
            self.persist()?;
            self.set_flags(FLAG_VERIFIED)?;
            self.table().verified = true;
            Ok(Some(true))
        } else {
            self.invalidate(0, self.chunks() - 1);
            Ok(Some(false))
        }
    }

    /// For a complete blob: hashes the data and compares with the digest.
    /// A match is recorded (`verified`); a mismatch empties the entry.
    ///
    /// # Errors
    /// Read errors.
    pub fn verify_digest(&self) -> Result<bool> {
        use sha2::Digest as _;
        if self.verified() {
            return Ok(true);
        }
        if !self.complete() {
            return Ok(false);
        }
        self.persist()?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0u64;
        while at < self.size {
            let n = (buf.len() as u64).min(self.size - at) as usize;
            self.data
                .read_exact_at(&mut buf[..n], at)
                .map_err(|e| Error::file(&self.data_path, "read", e))?;
            h.update(&buf[..n]);
            at += n as u64;
        }
        if Digest::from_hasher(h) == self.digest {
            self.set_flags(FLAG_VERIFIED)?;
            self.table().verified = true;
            Ok(true)
        } else {
            self.invalidate(0, self.chunks() - 1);
            Ok(false)
        }
    }
}

impl Drop for CachedBlob {
    fn drop(&mut self) {
        let _ = self.persist();
        // A blob that became complete while it was read is checked once
        // (a mismatch empties the entry; the reads that used it were
        // covered by block CRCs or failed).
        let t = self.table();
        let check = !t.verified && t.chunks.iter().all(|c| matches!(c, Chunk::Ready(_)));
        drop(t);
        if check {
            let _ = self.verify_digest();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 1000) as u8).collect()
    }

    #[test]
    fn chunks_persist_and_damage_is_found() {
        let d = tempfile::tempdir().unwrap();
        let cache = CacheDir::open(d.path(), None).unwrap();
        let bytes = blob(3 * CHUNK as usize + 100);
        let digest = Digest::of(&bytes);
        {
            let b = cache.blob(&digest, bytes.len() as u64).unwrap();
            assert_eq!(b.chunks(), 4);
            let (f, l) = b.claim(0, 3, 2, true).unwrap().unwrap();
            assert_eq!((f, l), (0, 1));
            let (s, n) = b.chunk_range(f, l);
            b.fill(f, l, &bytes[s as usize..(s + n) as usize]).unwrap();
            assert_eq!(b.claim(0, 1, 8, true).unwrap(), None);
            assert!(!b.complete());
        }
        // A new process sees chunks 0 and 1; damage chunk 1 on disk.
        let (data, _) = cache.paths(&digest);
        let f = OpenOptions::new().write(true).open(&data).unwrap();
        f.write_all_at(&[0xff], CHUNK + 5).unwrap();
        let b = cache.blob(&digest, bytes.len() as u64).unwrap();
        assert!(b.has_chunk(0) && b.has_chunk(1));
        // Chunk 0 checks out; chunk 1 is claimed for fetching again.
        assert_eq!(b.claim(0, 1, 8, true).unwrap(), Some((1, 1)));
        b.release(1, 1);
        // Fill everything; the digest then verifies.
        while let Some((f, l)) = b.claim(0, 3, 8, true).unwrap() {
            let (s, n) = b.chunk_range(f, l);
            b.fill(f, l, &bytes[s as usize..(s + n) as usize]).unwrap();
        }
        assert!(b.complete());
        assert!(b.verify_digest().unwrap());
        let mut out = vec![0u8; 200];
        b.read_ready(&mut out, CHUNK - 100).unwrap();
        assert_eq!(out, bytes[CHUNK as usize - 100..CHUNK as usize + 100]);
        drop(b);
        let l = cache.list().unwrap();
        assert_eq!(l.len(), 1);
        assert!(l[0].verified && !l[0].in_use);
        assert_eq!(l[0].cached_bytes, bytes.len() as u64);
    }

    #[test]
    fn wrong_bytes_fail_the_digest_and_empty_the_entry() {
        let d = tempfile::tempdir().unwrap();
        let cache = CacheDir::open(d.path(), None).unwrap();
        let bytes = blob(CHUNK as usize + 1);
        let digest = Digest::of(&bytes);
        let b = cache.blob(&digest, bytes.len() as u64).unwrap();
        let mut bad = bytes.clone();
        bad[7] ^= 1;
        let (f, l) = b.claim(0, 1, 8, true).unwrap().unwrap();
        b.fill(f, l, &bad).unwrap();
        assert!(!b.verify_digest().unwrap());
        assert!(!b.has_chunk(0) && !b.has_chunk(1));
    }

    #[test]
    fn the_digest_follows_chunks_filled_out_of_order() {
        use std::sync::atomic::AtomicBool;
        let d = tempfile::tempdir().unwrap();
        let cache = CacheDir::open(d.path(), None).unwrap();
        for damaged in [false, true] {
            let bytes = blob(5 * CHUNK as usize + 17 + usize::from(damaged));
            let digest = Digest::of(&bytes);
            let b = cache.blob(&digest, bytes.len() as u64).unwrap();
            let stop = AtomicBool::new(false);
            let got = std::thread::scope(|s| {
                let h = s.spawn(|| b.hash_following(&stop));
                // Last chunk first, then the rest, a little apart.
                for i in [5u64, 2, 0, 4, 1, 3] {
                    let (f, l) = b.claim(i, i, 1, true).unwrap().unwrap();
                    let (at, n) = b.chunk_range(f, l);
                    let mut part = bytes[at as usize..(at + n) as usize].to_vec();
                    if damaged && i == 4 {
                        part[9] ^= 0x10;
                    }
                    b.fill(f, l, &part).unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                }
                h.join().unwrap().unwrap()
            });
            assert_eq!(got, Some(!damaged));
            assert_eq!(b.verified(), !damaged);
            // A mismatch empties the entry.
            assert_eq!(b.has_chunk(0), !damaged);
        }
        // Stopped before the chunks came: no answer, nothing recorded.
        let other = blob(CHUNK as usize + 3);
        let b = cache.blob(&Digest::of(&other), other.len() as u64).unwrap();
        let stop = AtomicBool::new(true);
        assert_eq!(b.hash_following(&stop).unwrap(), None);
        assert!(!b.verified());
    }

    #[test]
    fn in_use_entries_survive_pruning() {
        let d = tempfile::tempdir().unwrap();
        let cache = CacheDir::open(d.path(), None).unwrap();
        let a = blob(1000);
        let b2: Vec<u8> = blob(2000);
        let da = Digest::of(&a);
        let db = Digest::of(&b2);
        let ea = cache.blob(&da, a.len() as u64).unwrap();
        let (f, l) = ea.claim(0, 0, 1, true).unwrap().unwrap();
        ea.fill(f, l, &a).unwrap();
        let eb = cache.blob(&db, b2.len() as u64).unwrap();
        let (f, l) = eb.claim(0, 0, 1, true).unwrap().unwrap();
        eb.fill(f, l, &b2).unwrap();
        drop(eb);
        let (removed, _) = cache.prune(0).unwrap();
        assert_eq!(removed, vec![db.to_string()]);
        assert_eq!(cache.list().unwrap().len(), 1);
        drop(ea);
        cache.prune(0).unwrap();
        assert!(cache.list().unwrap().is_empty());
    }
}
