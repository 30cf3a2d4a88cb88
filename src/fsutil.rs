//! Crash-safe output files: write to a file that has no name yet (or a
//! hidden temporary one), fsync, then give it the destination's name.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Temporary files of outputs not yet committed, so that a signal handler
/// can remove them before the process dies ([`remove_pending`]).
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PENDING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes the temporary files of every output not yet committed. For a
/// signal handler that is about to end the process (Ctrl-C, SIGTERM):
/// without it an interrupted writer leaves its hidden temporary file behind.
pub fn remove_pending() {
    for p in pending().drain(..) {
        let _ = std::fs::remove_file(p);
    }
}

/// An output file that appears at its destination only when committed.
///
/// Where the file system allows it (`O_TMPFILE`: ext4, xfs, btrfs, tmpfs…)
/// the file has no name until it is committed, so a process that dies in
/// any way, `kill -9` included, leaves nothing behind. Elsewhere it is a
/// hidden `.NAME.obd-tmp-*` file next to the destination, removed on drop
/// and by [`remove_pending`].
#[must_use = "an AtomicFile must be committed or its output is discarded"]
pub struct AtomicFile {
    tmp: Tmp,
    dest: PathBuf,
    force: bool,
}

enum Tmp {
    /// An `O_TMPFILE` file in the destination's directory.
    Unnamed(File),
    /// A named temporary file, on the [`PENDING`] list while it lives.
    Named {
        file: tempfile::NamedTempFile,
        // Dropped after `file`: the file is gone before it leaves the list.
        _pending: Pending,
    },
}

/// Keeps a temporary file on the [`PENDING`] list while it lives.
struct Pending(PathBuf);

impl Pending {
    fn new(p: &Path) -> Self {
        pending().push(p.to_path_buf());
        Pending(p.to_path_buf())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        pending().retain(|p| p != &self.0);
    }
}

/// A file without a name in `dir`, or None when the file system (or the
/// kernel) has no `O_TMPFILE`.
fn unnamed_in(dir: &Path) -> Option<File> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    // The kernel applies the umask to the mode, as for any new file.
    rustix::fs::open(dir, flags, Mode::from_raw_mode(0o666))
        .ok()
        .map(File::from)
}

/// Gives the unnamed `file` the name `to` (which must not exist).
fn link_unnamed(file: &File, to: &Path) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, CWD};
    let by_proc = format!("/proc/self/fd/{}", file.as_raw_fd());
    match rustix::fs::linkat(CWD, by_proc.as_str(), CWD, to, AtFlags::SYMLINK_FOLLOW) {
        // No /proc: linking the descriptor itself needs CAP_DAC_READ_SEARCH.
        Err(rustix::io::Errno::NOENT) if !Path::new("/proc/self/fd").exists() => {
            rustix::fs::linkat(file, "", CWD, to, AtFlags::EMPTY_PATH)
        }
        r => r,
    }
    .map_err(std::io::Error::from)
}

fn exists_error(dest: &Path) -> Error {
    Error::invalid(
        "output",
        format!(
            "{} already exists (use --force to replace it)",
            dest.display()
        ),
    )
}

/// The error of giving the output its name `dest` without replacing it.
fn naming_error(dest: &Path, what: &'static str, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        exists_error(dest)
    } else {
        Error::io(what, 0, e)
    }
}

/// The directory `dest` is in (`.` for a bare name).
fn dir_of(dest: &Path) -> &Path {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

impl AtomicFile {
    /// Creates the output's file, unnamed (or hidden) next to `dest`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `dest` exists and `force` is false;
    /// [`Error::Io`] when the directory is not writable.
    pub fn create(dest: &Path, force: bool) -> Result<Self> {
        Self::create_in(dest, force, true)
    }

    fn create_in(dest: &Path, force: bool, allow_unnamed: bool) -> Result<Self> {
        if !force && dest.symlink_metadata().is_ok() {
            return Err(exists_error(dest));
        }
        let dir = dir_of(dest);
        let unnamed = if allow_unnamed { unnamed_in(dir) } else { None };
        let tmp = match unnamed {
            Some(file) => Tmp::Unnamed(file),
            None => {
                let file = tempfile::Builder::new()
                    .prefix(&temp_prefix(dest))
                    .tempfile_in(dir)
                    .map_err(|e| Error::io("output directory", 0, e))?;
                Tmp::Named {
                    _pending: Pending::new(file.path()),
                    file,
                }
            }
        };
        Ok(AtomicFile {
            tmp,
            dest: dest.to_path_buf(),
            force,
        })
    }

    /// The file, to write into.
    pub fn file(&self) -> &File {
        match &self.tmp {
            Tmp::Unnamed(file) => file,
            Tmp::Named { file, .. } => file.as_file(),
        }
    }

    /// Mutable access to the file.
    pub fn file_mut(&mut self) -> &mut File {
        match &mut self.tmp {
            Tmp::Unnamed(file) => file,
            Tmp::Named { file, .. } => file.as_file_mut(),
        }
    }

    /// Where the file will appear.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// fsyncs the data, names it as the destination (replacing it only with
    /// `force`), fsyncs the directory.
    ///
    /// # Errors
    /// [`Error::Io`]; [`Error::Invalid`] when the destination appeared
    /// meanwhile and `force` is false.
    pub fn commit(self) -> Result<()> {
        let AtomicFile { tmp, dest, force } = self;
        match tmp {
            Tmp::Unnamed(file) => {
                file.sync_all().map_err(|e| Error::io("output", 0, e))?;
                if !force {
                    link_unnamed(&file, &dest)
                        .map_err(|e| naming_error(&dest, "output link", e))?;
                } else {
                    // A name of its own first, then over the destination.
                    let mut k = 0u32;
                    let name = loop {
                        let p = dir_of(&dest).join(format!(
                            "{}{}-{k}",
                            temp_prefix(&dest),
                            std::process::id()
                        ));
                        match link_unnamed(&file, &p) {
                            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => k += 1,
                            r => break r.map(|()| p),
                        }
                    }
                    .map_err(|e| Error::io("output link", 0, e))?;
                    let _pending = Pending::new(&name);
                    if let Err(e) = std::fs::rename(&name, &dest) {
                        let _ = std::fs::remove_file(&name);
                        return Err(Error::io("output rename", 0, e));
                    }
                }
            }
            Tmp::Named { file, _pending } => {
                use std::os::unix::fs::PermissionsExt;
                let f = file.as_file();
                // tempfile creates 0600; give the output the usual 0644 minus umask.
                let mode = 0o666 & !current_umask();
                f.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(|e| Error::io("output", 0, e))?;
                f.sync_all().map_err(|e| Error::io("output", 0, e))?;
                if force {
                    file.persist(&dest)
                        .map_err(|e| Error::io("output rename", 0, e.error))?;
                } else {
                    file.persist_noclobber(&dest)
                        .map_err(|e| naming_error(&dest, "output rename", e.error))?;
                }
            }
        }
        if let Ok(d) = File::open(dir_of(&dest)) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// The start of the hidden temporary names of `dest`: `.NAME.obd-tmp-`.
fn temp_prefix(dest: &Path) -> String {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.obd-tmp-")
}

fn current_umask() -> u32 {
    // umask can only be read by setting it; put the old value straight back.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    rustix::process::umask(old);
    old.bits()
}

/// Granularity of holes in sparse outputs (a file-system block).
pub const HOLE_UNIT: u64 = 4096;

/// True when every byte of `b` is zero.
#[inline]
pub fn is_zero(b: &[u8]) -> bool {
    // OR-folding 64-byte chunks lets the compiler use vector instructions.
    let (body, tail) = b.split_at(b.len() / 64 * 64);
    body.chunks_exact(64)
        .all(|c| c.iter().fold(0u8, |acc, &x| acc | x) == 0)
        && tail.iter().all(|&x| x == 0)
}

/// Writes `b` at offset `at` of `out`, leaving unwritten every
/// [`HOLE_UNIT`]-aligned unit of the file that `b` covers and that is all
/// zeros: `out` must be new (its unwritten ranges read as zeros) and its
/// length is the caller's to set. Returns the bytes written.
///
/// # Errors
/// Write errors of `out`.
pub fn write_sparse(out: &File, b: &[u8], at: u64) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    // End (index into `b`) of the file unit that holds b[i].
    let unit_end = |i: usize| {
        let pos = at + i as u64;
        ((pos / HOLE_UNIT + 1) * HOLE_UNIT - at).min(b.len() as u64) as usize
    };
    let mut written = 0;
    let mut i = 0;
    while i < b.len() {
        if is_zero(&b[i..unit_end(i)]) {
            i = unit_end(i);
            continue;
        }
        let start = i;
        while i < b.len() && !is_zero(&b[i..unit_end(i)]) {
            i = unit_end(i);
        }
        out.write_all_at(&b[start..i], at + start as u64)
            .map_err(|e| Error::io("output", at + start as u64, e))?;
        written += (i - start) as u64;
    }
    Ok(written)
}

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

/// A buffered sequential writer on a new file that leaves its all-zero
/// [`HOLE_UNIT`]s unwritten (holes read as zeros, and cost no space).
/// [`SparseWriter::into_inner`] writes what is buffered and sets the
/// file's length.
pub struct SparseWriter {
    file: File,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    pos: u64,
}

impl SparseWriter {
    /// A writer at offset 0 of `file`, which must be new and empty.
    pub fn new(file: File, capacity: usize) -> Self {
        let capacity = capacity.max(HOLE_UNIT as usize);
        SparseWriter {
            file,
            buf: Vec::with_capacity(capacity),
            pos: 0,
        }
    }

    /// Writes the buffer out, keeping a trailing partial unit buffered so
    /// that every unit is judged whole.
    fn drain(&mut self, all: bool) -> std::io::Result<()> {
        let end = self.pos + self.buf.len() as u64;
        let keep = if all { 0 } else { (end % HOLE_UNIT) as usize };
        let n = self.buf.len() - keep;
        if n == 0 {
            return Ok(());
        }
        write_sparse(&self.file, &self.buf[..n], self.pos).map_err(std::io::Error::other)?;
        self.buf.drain(..n);
        self.pos += n as u64;
        Ok(())
    }

    /// Writes what is buffered, sets the file's length to the bytes written
    /// through this writer, and returns the file.
    ///
    /// # Errors
    /// Write errors.
    pub fn into_inner(mut self) -> Result<File> {
        self.drain(true)
            .map_err(|e| crate::output::from_io("output", self.pos, e))?;
        self.file
            .set_len(self.pos)
            .map_err(|e| Error::io("output", self.pos, e))?;
        Ok(self.file)
    }
}

/// Writes at least this long go to the file directly rather than through
/// the buffer (one copy less), but for the bytes that complete the
/// buffer's last [`HOLE_UNIT`].
const DIRECT_WRITE: usize = 64 << 10;

impl std::io::Write for SparseWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.len() >= DIRECT_WRITE {
            // Complete the buffer's last unit from `data`, write the buffer,
            // then the whole units of `data` straight from it.
            let end = self.pos + self.buf.len() as u64;
            let head = ((HOLE_UNIT - end % HOLE_UNIT) % HOLE_UNIT) as usize;
            if self.buf.capacity() - self.buf.len() < head {
                self.drain(false)?;
            }
            self.buf.extend_from_slice(&data[..head]);
            self.drain(true)?;
            let n = (data.len() - head) / HOLE_UNIT as usize * HOLE_UNIT as usize;
            write_sparse(&self.file, &data[head..head + n], self.pos)
                .map_err(std::io::Error::other)?;
            self.pos += n as u64;
            return Ok(head + n);
        }
        let room = self.buf.capacity() - self.buf.len();
        if room == 0 {
            self.drain(false)?;
            return self.write(data);
        }
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn pending_list_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let named = |a: &AtomicFile| match &a.tmp {
            Tmp::Named { file, .. } => file.path().to_path_buf(),
            Tmp::Unnamed(_) => panic!("not a named temporary file"),
        };
        let a = AtomicFile::create_in(&dir.path().join("a"), false, false).unwrap();
        let tmp = named(&a);
        assert!(pending().contains(&tmp));
        drop(a);
        assert!(!pending().contains(&tmp) && !tmp.exists());
        // (`remove_pending` itself is exercised by the CLI test that
        // interrupts a writer: calling it here would race other tests.)
        let c = AtomicFile::create_in(&dir.path().join("c"), false, false).unwrap();
        let tmp = named(&c);
        c.commit().unwrap();
        assert!(!pending().contains(&tmp));
    }

    #[test]
    fn commit_and_noclobber() {
        use std::os::unix::fs::PermissionsExt;
        let umask = current_umask();
        for unnamed in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("out");
            let mut a = AtomicFile::create_in(&dest, false, unnamed).unwrap();
            // This test's directory (ext4, tmpfs) takes O_TMPFILE.
            assert_eq!(matches!(a.tmp, Tmp::Unnamed(_)), unnamed);
            a.file_mut().write_all(b"hello").unwrap();
            // Nothing visible before the commit but a hidden temporary file.
            let visible = std::fs::read_dir(dir.path()).unwrap().count();
            assert_eq!(visible, if unnamed { 0 } else { 1 });
            a.commit().unwrap();
            assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
            let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o666 & !umask);
            assert!(AtomicFile::create_in(&dest, false, unnamed).is_err());
            // Appearing meanwhile: not replaced without force.
            let b = AtomicFile::create_in(&dir.path().join("late"), false, unnamed).unwrap();
            std::fs::write(dir.path().join("late"), b"first").unwrap();
            assert!(b
                .commit()
                .unwrap_err()
                .to_string()
                .contains("already exists"));
            assert_eq!(std::fs::read(dir.path().join("late")).unwrap(), b"first");
            // Replaced with force; dropped without commit: nothing left.
            let mut c = AtomicFile::create_in(&dest, true, unnamed).unwrap();
            c.file_mut().write_all(b"second").unwrap();
            c.commit().unwrap();
            assert_eq!(std::fs::read(&dest).unwrap(), b"second");
            let d = AtomicFile::create_in(&dest, true, unnamed).unwrap();
            drop(d);
            let mut names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            assert_eq!(names, ["late", "out"]);
        }
    }

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

    /// Bytes of disk a file occupies.
    fn allocated(f: &File) -> u64 {
        use std::os::unix::fs::MetadataExt;
        f.metadata().unwrap().blocks() * 512
    }

    #[test]
    fn sparse_writer_keeps_content_and_skips_zero_units() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        // Units of 4 KiB, each zero, non-zero, or zero but for one byte at
        // an edge; written in pieces of random sizes, the last unit partial.
        let unit = (0u8..4, any::<u8>());
        let case = (
            prop::collection::vec(unit, 0..80),
            0usize..4096,
            prop::collection::vec(1usize..150_000, 1..8),
        );
        TestRunner::new(Config::with_cases(64))
            .run(&case, |(units, tail, pieces)| {
                let mut data = Vec::new();
                for &(kind, v) in &units {
                    let mut u = vec![0u8; HOLE_UNIT as usize];
                    match kind {
                        0 => {}
                        1 => u.fill(v | 1),
                        2 => u[0] = v | 1,
                        _ => u[HOLE_UNIT as usize - 1] = v | 1,
                    }
                    data.extend_from_slice(&u);
                }
                data.extend(std::iter::repeat_n(7u8, tail));
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("out");
                let mut w = SparseWriter::new(File::create(&path).unwrap(), 3 * 4096 + 100);
                let mut at = 0;
                let mut k = 0;
                while at < data.len() {
                    let n = pieces[k % pieces.len()].min(data.len() - at);
                    w.write_all(&data[at..at + n]).unwrap();
                    at += n;
                    k += 1;
                }
                let f = w.into_inner().unwrap();
                f.sync_all().unwrap();
                prop_assert_eq!(std::fs::read(&path).unwrap(), data.clone());
                // Zero units take no space (a little slack for the file
                // system's own blocks and the partial tail).
                let nonzero = units.iter().filter(|u| u.0 != 0).count() as u64;
                prop_assert!(allocated(&f) <= (nonzero + 3) * HOLE_UNIT);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn write_sparse_leaves_holes_at_file_units() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let f = File::create(&path).unwrap();
        // 1 MiB of zeros with one byte set, written from an unaligned offset.
        let mut b = vec![0u8; 1 << 20];
        b[300_000] = 9;
        let written = write_sparse(&f, &b, 1000).unwrap();
        // The one unit holding the byte, cut to the file's 4 KiB grid.
        assert_eq!(written, HOLE_UNIT);
        f.set_len(1000 + b.len() as u64).unwrap();
        f.sync_all().unwrap();
        let back = std::fs::read(&path).unwrap();
        assert_eq!(&back[1000..], &b[..]);
        assert!(back[..1000].iter().all(|&x| x == 0));
        assert!(allocated(&f) <= 2 * HOLE_UNIT, "{}", allocated(&f));
    }
}
