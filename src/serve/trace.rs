//! Access traces, in overlaybd's trace format, so that a container's
//! start-up reads can be fetched before it asks for them.
//!
//! A trace file is a 24-byte header — `magic` u32 (3270449184, the CRC32
//! of "Container Image Trace Format"), 4 zero bytes, `data_size` u64 (the
//! bytes of records that follow), `checksum` u32 (raw CRC32C, seed 0, over
//! the records), 4 zero bytes — then `data_size / 24` records: `op` u8
//! (`R` read, `W` write), 3 zero bytes, `layer_index` u32 (bottom layer 0),
//! `count` u64, `offset` u64, where `offset` and `count` are bytes of the
//! layer's decompressed LSMT file; little-endian, reads of at most 1 MiB.
//!
//! Recording (`--record-trace FILE`) follows the reference's protocol:
//! `FILE.lock` exists while recording; removing it, or stopping the
//! server, writes the trace (atomically) and creates `FILE.ok`. Replaying
//! (`--prefetch FILE`) reads every record's range through its layer on a
//! few background threads, which fills the blob cache of registry layers
//! (and the page cache of local ones).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::format::checksum::crc32c_raw;
use crate::io::atomic::AtomicFile;
use crate::io::ReadAt;
use crate::serve::target::Target;
use crate::stack::{Source, Stack};

/// The trace magic: CRC32 of "Container Image Trace Format".
pub const MAGIC: u32 = 3_270_449_184;
/// Bytes of the header and of each record.
pub const RECORD: usize = 24;
/// The largest read one record names (the reference's `MAX_IO_SIZE`).
pub const MAX_IO: u64 = 1 << 20;
/// The most records obd records or replays (24 MiB of trace).
pub const MAX_RECORDS: usize = 1 << 20;

/// One traced access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// `b'R'` or `b'W'`.
    pub op: u8,
    /// Layer, bottom first.
    pub layer: u32,
    /// Bytes.
    pub count: u64,
    /// Byte offset in the layer's decompressed LSMT file.
    pub offset: u64,
}

fn encode(records: &[Record]) -> Vec<u8> {
    let mut body = Vec::with_capacity(records.len() * RECORD);
    for r in records {
        let mut b = [0u8; RECORD];
        b[0] = r.op;
        b[4..8].copy_from_slice(&r.layer.to_le_bytes());
        b[8..16].copy_from_slice(&r.count.to_le_bytes());
        b[16..24].copy_from_slice(&r.offset.to_le_bytes());
        body.extend_from_slice(&b);
    }
    let mut out = Vec::with_capacity(RECORD + body.len());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c_raw(0, &body).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&body);
    out
}

/// Parses a trace file's bytes.
///
/// # Errors
/// Bad magic, a size that disagrees with the header, a checksum mismatch,
/// too many records.
pub fn decode(bytes: &[u8]) -> Result<Vec<Record>> {
    let bad = |d: String| Error::corrupt("trace", 0, d);
    if bytes.len() < RECORD {
        return Err(bad(format!(
            "{} bytes, shorter than the header",
            bytes.len()
        )));
    }
    let u32_at =
        |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    let mut s = [0u8; 8];
    s.copy_from_slice(&bytes[8..16]);
    let data_size = u64::from_le_bytes(s);
    if u32_at(0) != MAGIC {
        return Err(Error::BadMagic {
            what: "trace",
            offset: 0,
        });
    }
    if data_size != (bytes.len() - RECORD) as u64 || data_size % RECORD as u64 != 0 {
        return Err(bad(format!(
            "the header says {data_size} bytes of records, the file holds {}",
            bytes.len() - RECORD
        )));
    }
    if data_size / RECORD as u64 > MAX_RECORDS as u64 {
        return Err(bad(format!("more than {MAX_RECORDS} records")));
    }
    let body = &bytes[RECORD..];
    let (stored, computed) = (u32_at(16), crc32c_raw(0, body));
    if stored != computed {
        return Err(bad(format!(
            "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        )));
    }
    Ok(body
        .chunks_exact(RECORD)
        .map(|b| {
            let mut c = [0u8; 8];
            c.copy_from_slice(&b[8..16]);
            let mut o = [0u8; 8];
            o.copy_from_slice(&b[16..24]);
            Record {
                op: b[0],
                layer: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
                count: u64::from_le_bytes(c),
                offset: u64::from_le_bytes(o),
            }
        })
        .collect())
}

/// A stack served with its reads recorded.
pub struct Recorder {
    stack: Arc<Stack>,
    path: PathBuf,
    records: Mutex<Vec<Record>>,
    stopped: AtomicBool,
    dropped: AtomicU64,
}

impl Recorder {
    /// Starts recording reads of `stack` into `path`: creates `path.lock`
    /// and a thread that writes the trace when the lock file goes away.
    ///
    /// # Errors
    /// The lock file cannot be created.
    pub fn start(stack: Arc<Stack>, path: &Path) -> Result<Arc<Self>> {
        let lock = side_file(path, "lock");
        let _ = std::fs::remove_file(side_file(path, "ok"));
        std::fs::write(&lock, b"").map_err(|e| Error::file(&lock, "create", e))?;
        let r = Arc::new(Recorder {
            stack,
            path: path.to_path_buf(),
            records: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&r);
        std::thread::Builder::new()
            .name("obd-trace".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(200));
                let Some(r) = weak.upgrade() else { return };
                if r.stopped.load(Ordering::Relaxed) {
                    return;
                }
                if !lock.exists() {
                    if let Err(e) = r.dump() {
                        eprintln!("obd: {e}");
                    }
                    return;
                }
            })
            .map_err(|e| Error::file(path, "record", e))?;
        Ok(r)
    }

    fn note(&self, offset: u64, len: u64) {
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        let mut v = self.records.lock().unwrap_or_else(|p| p.into_inner());
        for e in self.stack.extents(offset, len) {
            let Source::Data { layer, offset } = e.source else {
                continue;
            };
            let mut at = offset;
            let mut left = e.length;
            while left > 0 {
                if v.len() >= MAX_RECORDS {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let n = left.min(MAX_IO);
                v.push(Record {
                    op: b'R',
                    layer: u32::from(layer),
                    count: n,
                    offset: at,
                });
                at += n;
                left -= n;
            }
        }
    }

    /// Writes the trace (once): the records so far, then `FILE.ok`; the
    /// lock file goes.
    ///
    /// # Errors
    /// Write errors.
    pub fn dump(&self) -> Result<()> {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let records = std::mem::take(&mut *self.records.lock().unwrap_or_else(|p| p.into_inner()));
        let mut out = AtomicFile::create(&self.path, true)?;
        std::io::Write::write_all(out.file_mut(), &encode(&records))
            .map_err(|e| Error::file(&self.path, "write", e))?;
        out.commit()?;
        let _ = std::fs::remove_file(side_file(&self.path, "lock"));
        let ok = side_file(&self.path, "ok");
        std::fs::write(&ok, b"").map_err(|e| Error::file(&ok, "create", e))?;
        let dropped = self.dropped.load(Ordering::Relaxed);
        eprintln!(
            "obd: trace {}: {} reads recorded{}",
            self.path.display(),
            records.len(),
            if dropped > 0 {
                format!(" ({dropped} more not: at most {MAX_RECORDS})")
            } else {
                String::new()
            }
        );
        Ok(())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Err(e) = self.dump() {
            eprintln!("obd: {e}");
        }
    }
}

fn side_file(path: &Path, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// A [`Target`] that records its reads.
pub struct Traced(pub Arc<Recorder>);

impl Target for Traced {
    fn size(&self) -> u64 {
        self.0.stack.virtual_size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.0.stack.read_exact_at(buf, offset)?;
        self.0.note(offset, buf.len() as u64);
        Ok(())
    }

    fn reads_as_zeros(&self, offset: u64, len: u64) -> bool {
        Target::reads_as_zeros(self.0.stack.as_ref(), offset, len)
    }

    fn extents(&self, offset: u64, len: u64) -> Vec<(u64, u32)> {
        Target::extents(self.0.stack.as_ref(), offset, len)
    }
}

/// Reads every record of the trace at `path` through `stack`'s layers on
/// `threads` background threads. Records that do not fit the stack (a
/// layer it lacks, a range past a layer's end, more than 1 MiB) are
/// skipped and counted; the summary goes to stderr (the server's log).
///
/// # Errors
/// The trace cannot be read or is damaged (then nothing is replayed).
pub fn replay(stack: Arc<Stack>, path: &Path, threads: usize) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::file(path, "open", e))?;
    if meta.len() > (RECORD * (MAX_RECORDS + 1)) as u64 {
        return Err(Error::invalid(
            "trace",
            format!(
                "{}: {} bytes (at most {MAX_RECORDS} records)",
                path.display(),
                meta.len()
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, "read", e))?;
    let records = decode(&bytes).map_err(|e| Error::InLayer {
        path: path.display().to_string(),
        inner: Box::new(e),
    })?;
    let records = Arc::new(records);
    let next = Arc::new(AtomicU64::new(0));
    let skipped = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let n = threads.clamp(1, 64);
    let started = std::time::Instant::now();
    let shown = path.display().to_string();
    for i in 0..n {
        let (stack, records, next, skipped, failed, done) = (
            stack.clone(),
            records.clone(),
            next.clone(),
            skipped.clone(),
            failed.clone(),
            done.clone(),
        );
        let shown = shown.clone();
        std::thread::Builder::new()
            .name(format!("obd-prefetch-{i}"))
            .spawn(move || {
                let mut buf = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(r) = records.get(k) else { break };
                    let view = stack
                        .layers()
                        .get(r.layer as usize)
                        .map(|l| l.layer().data().clone());
                    let fits = r.op == b'R'
                        && r.count <= MAX_IO
                        && view.as_ref().is_some_and(|v| r.offset.checked_add(r.count).is_some_and(|e| e <= v.len()));
                    let Some(view) = view.filter(|_| fits) else {
                        skipped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    buf.resize(r.count as usize, 0);
                    if view.read_exact_at(&mut buf, r.offset).is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if done.fetch_add(1, Ordering::AcqRel) + 1 == n as u64 {
                    eprintln!(
                        "obd: prefetch {shown}: {} records replayed in {:.2} s ({} skipped, {} failed)",
                        records.len() as u64 - skipped.load(Ordering::Relaxed),
                        started.elapsed().as_secs_f64(),
                        skipped.load(Ordering::Relaxed),
                        failed.load(Ordering::Relaxed)
                    );
                }
            })
            .map_err(|e| Error::file(path, "replay", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let recs = vec![
            Record {
                op: b'R',
                layer: 0,
                count: 4096,
                offset: 8192,
            },
            Record {
                op: b'R',
                layer: 2,
                count: MAX_IO,
                offset: 1 << 30,
            },
        ];
        let b = encode(&recs);
        assert_eq!(b.len(), 24 * 3);
        assert_eq!(&b[..4], &MAGIC.to_le_bytes());
        assert_eq!(decode(&b).unwrap(), recs);
        let mut bad = b.clone();
        bad[30] ^= 1;
        assert!(decode(&bad).unwrap_err().to_string().contains("checksum"));
        assert!(decode(&b[..40]).is_err());
        let mut m = b.clone();
        m[0] ^= 1;
        assert!(decode(&m).is_err());
        // An empty trace is a valid one.
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
    }
}
