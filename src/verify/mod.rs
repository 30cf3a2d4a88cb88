//! `verify`: every integrity check the formats allow, for CI pipelines.
//!
//! A blob is checked container by container, collecting **every** problem
//! (never stopping at the first) with its location:
//!
//! * **tar** (§6.2): `ustar` magic, version `00`, header checksum of every
//!   header block, PAX/ustar parse, payload inside the file, zero padding
//!   after the PAX records and after the payload, two trailing zero blocks
//!   and nothing but zeros after them, and a layout the reference reader
//!   can find (payload at 512 or 1536, Q18; no GNU headers, Q19).
//! * **ZFile** (§5): magic, `size` field, flags of header and trailer,
//!   both digests (the trailer's too, Q26), zero reserved bytes, header and
//!   trailer agreement, algorithm / block size / verify / dictionary,
//!   block count `= ceil(original_file_size / block_size)`, jump table
//!   right before the trailer, `index_crc`, every jump-table entry in range,
//!   entries summing to `index_offset − 512`, every block's CRC32C, and
//!   every block decompressing to exactly its size (Q11, Q26).
//! * **LSMT** (§3): header and trailer magic, flags, `size`, version,
//!   reserved bytes, UUID fields, user tag, header/trailer agreement, virtual
//!   size (non-zero, sector multiple), index placement and size limits (§9),
//!   padding entries, and the index invariants of §3.4 (sorted,
//!   non-overlapping, non-empty, inside the data section), plus what the
//!   writers guarantee: committed layers keep their data contiguous in LBA
//!   order; sealed-in-place and writable layers never share data sectors
//!   between entries; a writable layer's index records cover its data file.
//!
//! Checksums locate single flipped bits ([`locate_bit_flip`]): a damaged digest,
//! `index_crc` or block CRC names the byte (and so the field, jump-table
//! entry or block) that changed, and a record or jump table damaged in one
//! bit is repaired in memory so that the checks behind it still run.
//!
//! The data is read **once**, in large sequential chunks: the same buffers
//! feed the optional SHA-256 (a thread of its own) and the per-block checks
//! (rayon jobs), each worker reading the piece it checks. Metadata (headers, trailers, jump table,
//! LSMT index) is read up front with small reads.
//!
//! Finally obd's own readers open the blob too: a blob they reject is never
//! reported clean.

mod crc;
mod lsmt;
mod stack;
mod stream;
mod tar;
mod walk;
mod zfile;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::error::Result;
use crate::io::FileAt;
use crate::io::ReadAt;

pub use crc::{locate as locate_bit_flip, Flip, MAX_SEARCH};
pub use stack::{verify_stack, StackLayerInfo, StackReport};
pub use walk::{plan, probe, Job, Probe};

/// Most problems kept per file; the rest are counted.
pub const MAX_PROBLEMS: usize = 200;

/// Which layer of the blob a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    /// The file as a whole (not a layer, digest, unreadable).
    File,
    /// The tar wrapper.
    Tar,
    /// The ZFile container.
    Zfile,
    /// The LSMT layer (inside a ZFile: offsets are in the decompressed view).
    Lsmt,
    /// The stack of layers (`--stack`).
    Stack,
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Container::File => "file",
            Container::Tar => "tar",
            Container::Zfile => "zfile",
            Container::Lsmt => "lsmt",
            Container::Stack => "stack",
        })
    }
}

/// One thing wrong with a blob, and where.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The file it is in.
    pub file: String,
    /// The container it is in.
    pub container: Container,
    /// A stable name of the failed check, e.g. `zfile.block.crc`.
    pub check: &'static str,
    /// Byte offset: in the file as stored for `file`, `tar` and `zfile`
    /// problems; in the LSMT file for `lsmt` problems (the decompressed view
    /// when the layer is inside a ZFile).
    pub offset: Option<u64>,
    /// ZFile block number (for `lsmt` problems inside a ZFile: the block
    /// holding `offset`).
    pub block: Option<u64>,
    /// Index entry: jump-table entry (`zfile`), index entry or writable
    /// index record (`lsmt`, counting padding entries), layer (`stack`).
    pub entry: Option<u64>,
    /// For a conflict between two entries (order, shared data): the other
    /// one. Either may be the damaged one.
    pub other_entry: Option<u64>,
    /// The field, e.g. `trailer.index_offset`, `header.flags`.
    pub field: Option<String>,
    /// What a good blob has there.
    pub expected: Option<String>,
    /// What this blob has.
    pub found: Option<String>,
    /// One line for people.
    pub message: String,
}

impl Problem {
    /// A problem with no location yet.
    pub fn new(container: Container, check: &'static str, message: impl Into<String>) -> Self {
        Problem {
            file: String::new(),
            container,
            check,
            offset: None,
            block: None,
            entry: None,
            other_entry: None,
            field: None,
            expected: None,
            found: None,
            message: message.into(),
        }
    }
    /// Sets the byte offset.
    pub fn at(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }
    /// Sets the block number.
    pub fn block(mut self, block: u64) -> Self {
        self.block = Some(block);
        self
    }
    /// Sets the entry number.
    pub fn entry(mut self, entry: u64) -> Self {
        self.entry = Some(entry);
        self
    }
    /// Sets the other entry of a conflicting pair.
    pub fn other(mut self, entry: u64) -> Self {
        self.other_entry = Some(entry);
        self
    }
    /// Sets the field name.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
    /// Sets what was expected and what was found.
    pub fn expected(mut self, expected: impl fmt::Display, found: impl fmt::Display) -> Self {
        self.expected = Some(expected.to_string());
        self.found = Some(found.to_string());
        self
    }

    /// Sets what was found (when nothing specific was expected).
    pub fn found(mut self, found: impl fmt::Display) -> Self {
        self.found = Some(found.to_string());
        self
    }
    /// Appends to the message.
    pub fn and(mut self, more: impl fmt::Display) -> Self {
        self.message.push_str(&more.to_string());
        self
    }

    /// The location for people: `block 3, entry 5, header.flags at 0x20`.
    pub fn location(&self) -> String {
        let mut parts = Vec::new();
        if let Some(b) = self.block {
            parts.push(format!("block {b}"));
        }
        if let Some(e) = self.entry {
            parts.push(match (self.container, self.other_entry) {
                (Container::Stack, _) => format!("layer {e}"),
                (Container::Zfile, _) => format!("jump-table entry {e}"),
                (_, Some(o)) => format!("entries {o} and {e}"),
                _ => format!("entry {e}"),
            });
        }
        if let Some(f) = &self.field {
            parts.push(f.clone());
        }
        let mut s = parts.join(", ");
        if let Some(o) = self.offset {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(&format!("at {o:#x}"));
        }
        s
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loc = self.location();
        write!(f, "{}", self.container)?;
        if !loc.is_empty() {
            write!(f, " {loc}")?;
        }
        write!(f, ": {}", self.message)?;
        if let (Some(e), Some(x)) = (&self.expected, &self.found) {
            write!(f, " (expected {e}, found {x})")?;
        }
        Ok(())
    }
}

/// The outcome for one file (or one writable data/index pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every check passed.
    Ok,
    /// At least one problem.
    Problems,
    /// Not a layer blob (directory walks only).
    Skipped,
    /// Verify could not read it.
    Error,
}

/// What a layer declares, for stack checks.
#[derive(Debug, Clone, Serialize)]
pub struct LayerInfo {
    /// `lsmt_ro`, `lsmt_sealed`, `lsmt_rw`, ...
    pub kind: &'static str,
    /// The layer's UUID field (authoritative record).
    pub uuid: String,
    /// The parent UUID field.
    pub parent_uuid: String,
    /// The declared virtual size.
    pub virtual_size: u64,
}

/// Everything verify says about one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The file (the data file of a writable pair).
    pub path: String,
    /// The index file of a writable pair.
    pub index_path: Option<String>,
    /// The verdict.
    pub status: Status,
    /// `lsmt_ro` (committed), `lsmt_sealed` (sealed in place), `lsmt_rw`
    /// (writable pair), `lsmt_rw_data` / `lsmt_rw_index` (one half of a
    /// pair), `lsmt_rw_sparse`, `raw` (a ZFile or tar whose content is not an
    /// LSMT layer), or null when not even that could be told.
    pub kind: Option<&'static str>,
    /// Containers, outermost first, e.g. `["tar", "zfile", "lsmt"]`.
    pub containers: Vec<&'static str>,
    /// Bytes of the file as stored (both files of a pair).
    pub size: u64,
    /// ZFile blocks checked.
    pub blocks: Option<u64>,
    /// SHA-256 of the file as stored (`sha256:<hex>`), when asked for.
    pub sha256: Option<String>,
    /// The digest it had to match.
    pub expected_sha256: Option<String>,
    /// What is wrong (at most [`MAX_PROBLEMS`]).
    pub problems: Vec<Problem>,
    /// Problems found beyond [`MAX_PROBLEMS`].
    pub problems_omitted: u64,
    /// Facts worth knowing that are not problems.
    pub notes: Vec<String>,
    /// Why it was skipped, or why it could not be read.
    pub reason: Option<String>,
    /// What the layer declares (stack checks).
    #[serde(skip)]
    pub layer: Option<LayerInfo>,
}

impl FileReport {
    fn new(path: &str, size: u64) -> Self {
        FileReport {
            path: path.to_string(),
            index_path: None,
            status: Status::Ok,
            kind: None,
            containers: Vec::new(),
            size,
            blocks: None,
            sha256: None,
            expected_sha256: None,
            problems: Vec::new(),
            problems_omitted: 0,
            notes: Vec::new(),
            reason: None,
            layer: None,
        }
    }

    /// A report for a file that was not verified.
    pub fn skipped(path: &str, size: u64, reason: impl Into<String>) -> Self {
        let mut r = FileReport::new(path, size);
        r.status = Status::Skipped;
        r.reason = Some(reason.into());
        r
    }

    /// A report for a file verify could not read.
    pub fn error(path: &str, size: u64, reason: impl Into<String>) -> Self {
        let mut r = FileReport::new(path, size);
        r.status = Status::Error;
        r.reason = Some(reason.into());
        r
    }

    /// Number of problems, omitted ones included.
    pub fn problem_count(&self) -> u64 {
        self.problems.len() as u64 + self.problems_omitted
    }
}

/// Collects problems and notes while checking one file.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    file: String,
    problems: Vec<Problem>,
    omitted: u64,
    notes: Vec<String>,
}

impl Sink {
    pub(crate) fn new(file: &str) -> Self {
        Sink {
            file: file.to_string(),
            ..Default::default()
        }
    }

    pub(crate) fn push(&mut self, mut p: Problem) {
        if self.problems.len() >= MAX_PROBLEMS {
            self.omitted += 1;
            return;
        }
        p.file = self.file.clone();
        self.problems.push(p);
    }

    pub(crate) fn note(&mut self, n: impl Into<String>) {
        let n = n.into();
        if !self.notes.contains(&n) {
            self.notes.push(n);
        }
    }

    /// Problems pushed so far.
    pub(crate) fn count(&self) -> usize {
        self.problems.len() + self.omitted as usize
    }

    /// Counts problems that were dropped elsewhere (over the cap).
    pub(crate) fn add_omitted(&mut self, n: u64) {
        self.omitted += n;
    }

    /// The file named in problems.
    pub(crate) fn file(&self) -> &str {
        &self.file
    }

    /// Switches the file named in later problems (writable pairs).
    pub(crate) fn set_file(&mut self, file: &str) {
        self.file = file.to_string();
    }

    fn finish(self, r: &mut FileReport) {
        r.problems.extend(self.problems);
        r.problems_omitted += self.omitted;
        for n in self.notes {
            if !r.notes.contains(&n) {
                r.notes.push(n);
            }
        }
        if r.status == Status::Ok && r.problem_count() > 0 {
            r.status = Status::Problems;
        }
    }
}

/// A SHA-256 digest, written `sha256:<64 hex digits>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sha256Digest(pub [u8; 32]);

impl std::str::FromStr for Sha256Digest {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| {
            format!("{s:?}: expected sha256:<64 hex digits> (only sha256 is supported)")
        })?;
        if hex.len() != 64 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("{s:?}: expected 64 hex digits after sha256:"));
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| format!("{s:?}: not hex"))?;
        }
        Ok(Sha256Digest(out))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// How to verify.
#[derive(Debug, Clone)]
pub struct Options {
    /// The SHA-256 the blob must have (as a registry computes it: the whole
    /// file as stored). Computed in the same pass as the other checks.
    pub digest: Option<Sha256Digest>,
    /// The SHA-256 particular files must have (the layers of an image, by
    /// their manifest's digests).
    pub digests: std::collections::HashMap<std::path::PathBuf, Sha256Digest>,
    /// Compute and report the SHA-256 even without an expected value.
    pub compute_sha256: bool,
    /// Bytes per sequential read of the single pass.
    pub chunk_size: usize,
    /// Also open the blob with obd's readers (a blob they reject is never
    /// clean). On by default.
    pub cross_check: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            digest: None,
            digests: std::collections::HashMap::new(),
            compute_sha256: false,
            chunk_size: 4 << 20,
            cross_check: true,
        }
    }
}

/// A progress callback: bytes of blobs done.
pub type ProgressFn<'a> = &'a (dyn Fn(u64) + Sync);

/// Verifies one layer blob held by `file` (plain, ZFile, tar-wrapped, or a
/// lone writable data or index file).
///
/// I/O errors make the report's status [`Status::Error`]; everything wrong
/// with the bytes is a [`Problem`].
pub fn verify_blob(
    path: &str,
    file: Arc<dyn ReadAt>,
    opts: &Options,
    progress: ProgressFn<'_>,
) -> FileReport {
    let mut r = FileReport::new(path, file.len());
    let mut sink = Sink::new(path);
    match check_blob(&file, opts, progress, &mut r, &mut sink) {
        Ok(()) => sink.finish(&mut r),
        Err(e) => {
            sink.finish(&mut r);
            r.status = Status::Error;
            r.reason = Some(e.to_string());
        }
    }
    r
}

/// Verifies the file at `path` (see [`verify_blob`]).
pub fn verify_path(path: &Path, opts: &Options, progress: ProgressFn<'_>) -> FileReport {
    let name = path.display().to_string();
    match FileAt::open(path) {
        Ok(f) => verify_blob(&name, Arc::new(f), opts, progress),
        Err(e) => FileReport::error(&name, 0, e.to_string()),
    }
}

/// Verifies a writable layer: its data file and index file together.
pub fn verify_pair(data: &Path, index: &Path, progress: ProgressFn<'_>) -> FileReport {
    let dname = data.display().to_string();
    let iname = index.display().to_string();
    let open = |p: &Path| FileAt::open(p).map(|f| Arc::new(f) as Arc<dyn ReadAt>);
    let (d, i) = match (open(data), open(index)) {
        (Ok(d), Ok(i)) => (d, i),
        (Err(e), _) => return FileReport::error(&dname, 0, e.to_string()),
        (_, Err(e)) => return FileReport::error(&iname, 0, format!("{iname}: {e}")),
    };
    let mut r = verify_pair_readers(&dname, d, &iname, i, progress);
    // obd's reader must agree (sparse layers are opened from the data file).
    if r.status == Status::Ok {
        let files = std::fs::File::open(data).and_then(|d| Ok((d, std::fs::File::open(index)?)));
        let res = files
            .map_err(|e| crate::error::Error::io("file", 0, e))
            .and_then(|(d, i)| crate::format::lsmt::Layer::open_rw(d, i));
        match res {
            Err(e) if e.is_corruption() => {
                let mut p = Problem::new(
                    Container::File,
                    "reader",
                    format!("obd's reader rejects the layer: {e}"),
                );
                p.file = dname;
                r.problems.push(p);
                r.status = Status::Problems;
            }
            Err(e) => {
                r.status = Status::Error;
                r.reason = Some(e.to_string());
            }
            Ok(_) => {}
        }
    }
    r
}

/// [`verify_pair`] over already open views.
pub fn verify_pair_readers(
    data_name: &str,
    data: Arc<dyn ReadAt>,
    index_name: &str,
    index: Arc<dyn ReadAt>,
    progress: ProgressFn<'_>,
) -> FileReport {
    let mut r = FileReport::new(data_name, data.len() + index.len());
    r.index_path = Some(index_name.to_string());
    r.containers = vec!["lsmt"];
    let mut sink = Sink::new(data_name);
    let res = lsmt::check_pair(data.as_ref(), index.as_ref(), index_name, &mut sink);
    progress(r.size);
    match res {
        Ok(info) => {
            r.kind = Some(info.kind);
            r.layer = Some(info);
            sink.finish(&mut r);
        }
        Err(e) => {
            sink.finish(&mut r);
            r.status = Status::Error;
            r.reason = Some(e.to_string());
        }
    }
    r
}

fn check_blob(
    file: &Arc<dyn ReadAt>,
    opts: &Options,
    progress: ProgressFn<'_>,
    r: &mut FileReport,
    sink: &mut Sink,
) -> Result<()> {
    let len = file.len();
    if len == 0 {
        sink.push(Problem::new(
            Container::File,
            "file.empty",
            "the file is empty: not a layer blob",
        ));
    }
    // 1. The tar wrapper, if any.
    let mut payload: (u64, u64) = (0, len);
    let mut tarred = false;
    if tar::is_tarish(file.as_ref())? {
        r.containers.push("tar");
        tarred = true;
        match tar::check(file.as_ref(), sink)? {
            Some(p) => payload = (p.offset, p.size),
            None => payload = (0, 0),
        }
    }
    let view = crate::io::Slice::new(file.as_ref(), payload.0, payload.1)?;
    // 2. The ZFile container, if any: metadata now, blocks in the pass below.
    let magic = walk::magic_of(&view)?;
    let mut plan = None;
    let block_problems = std::sync::Mutex::new((Vec::new(), 0u64));
    match magic {
        walk::Magic::Zfile => {
            r.containers.push("zfile");
            plan = zfile::check_meta(&view, payload.0, sink)?;
            if plan.is_none() {
                sink.note("ZFile blocks not checked: the jump table could not be located");
            }
        }
        walk::Magic::Lsmt => {}
        walk::Magic::None if tarred && payload.1 > 0 => sink.push(
            Problem::new(
                Container::Tar,
                "tar.member",
                "the tar member is not a ZFile or an LSMT layer",
            )
            .at(payload.0),
        ),
        walk::Magic::None if !tarred && len > 0 => sink.push(Problem::new(
            Container::File,
            "file.not_layer",
            "no tar, ZFile or LSMT magic: not a layer blob",
        )),
        walk::Magic::None => {}
    }
    // 3. The single pass: block checks and SHA-256 from the same buffers.
    let want_sha = opts.digest.is_some() || opts.compute_sha256;
    let mut streamed = false;
    if want_sha || plan.is_some() {
        let checker = plan
            .as_ref()
            .map(|p| zfile::BlockChecker::new(p, &block_problems));
        let units = checker.as_ref().map(|c| stream::Units {
            bounds: &c.plan.bounds,
            check: c as &dyn stream::UnitCheck,
        });
        let sha = stream::run(file.as_ref(), units, want_sha, opts.chunk_size, progress)?;
        streamed = true;
        if let Some(p) = &plan {
            r.blocks = Some(p.blocks());
        }
        if let Some(sha) = sha {
            let got = Sha256Digest(sha);
            r.sha256 = Some(got.to_string());
            if let Some(want) = opts.digest {
                r.expected_sha256 = Some(want.to_string());
                if want != got {
                    sink.push(
                        Problem::new(
                            Container::File,
                            "file.digest",
                            "the SHA-256 of the file does not match",
                        )
                        .expected(want, got),
                    );
                }
            }
        }
    }
    if !streamed {
        progress(len);
    }
    let (mut block_problems, omitted) = block_problems.into_inner().unwrap_or_default();
    block_problems.sort_by_key(|p| (p.block, p.offset));
    for p in block_problems {
        sink.push(p);
    }
    sink.add_omitted(omitted);
    // 4. The LSMT layer, plain or inside the ZFile.
    match magic {
        walk::Magic::Lsmt => {
            r.containers.push("lsmt");
            let (kind, info) = lsmt::check_file(&view, None, sink)?;
            r.kind = Some(kind);
            r.layer = info;
        }
        walk::Magic::Zfile => check_inside_zfile(file, payload, plan.as_ref(), r, sink)?,
        walk::Magic::None => {}
    }
    // 5. obd's own readers must agree that the blob is good.
    if opts.cross_check
        && sink.count() == 0
        && r.kind
            .is_some_and(|k| k != "lsmt_rw_data" && k != "lsmt_rw_index")
    {
        if let Err(e) = cross_check(file, r.kind) {
            if e.is_corruption() {
                sink.push(Problem::new(
                    Container::File,
                    "reader",
                    format!("obd's reader rejects the blob: {e}"),
                ));
            } else {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Checks the LSMT layer inside a ZFile through obd's ZFile reader.
fn check_inside_zfile(
    file: &Arc<dyn ReadAt>,
    payload: (u64, u64),
    plan: Option<&zfile::Plan>,
    r: &mut FileReport,
    sink: &mut Sink,
) -> Result<()> {
    let inner: Arc<dyn ReadAt> =
        Arc::new(crate::io::Slice::new(file.clone(), payload.0, payload.1)?);
    let z = match crate::format::zfile::ZFile::open(inner) {
        Ok(z) => z,
        Err(e) => {
            sink.note(format!(
                "the content of the ZFile was not checked: the container cannot be opened ({e})"
            ));
            return Ok(());
        }
    };
    if !crate::source::blob::is_lsmt(&z).unwrap_or(false) {
        match crate::source::blob::is_zfile(&z) {
            Ok(true) => sink.note("the ZFile holds another ZFile"),
            _ => sink.note("the ZFile holds a raw image, not an LSMT layer"),
        }
        r.kind = Some("raw");
        return Ok(());
    }
    r.containers.push("lsmt");
    let bs = plan.map(|p| p.block_size).unwrap_or(z.block_size());
    match lsmt::check_file(&z, Some(bs), sink) {
        Ok((kind, info)) => {
            r.kind = Some(kind);
            r.layer = info;
        }
        // A damaged block (already reported) makes part of the layer unreadable.
        Err(e) if e.is_corruption() && sink.count() > 0 => {
            sink.note(format!(
                "the LSMT layer inside was only partly checked: {e}"
            ));
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Opens the blob with obd's readers.
fn cross_check(file: &Arc<dyn ReadAt>, kind: Option<&str>) -> Result<()> {
    let blob = crate::source::blob::Blob::from_reader(
        crate::source::LayerSource::file(""),
        file.clone(),
        crate::source::blob::BlobOptions::default(),
    )?;
    if matches!(kind, Some("lsmt_ro") | Some("lsmt_sealed")) {
        blob.layer()?;
    }
    Ok(())
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// True when every file verified clean and nothing failed.
    pub ok: bool,
    /// True when no layer blob was found to check (a failure unless allowed).
    pub empty: bool,
    /// Per file, in the order given (directories in name order).
    pub files: Vec<FileReport>,
    /// The stack checks (`--stack`).
    pub stack: Option<StackReport>,
    /// Totals.
    pub summary: Summary,
}

/// Totals of a run.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Files looked at (a writable pair counts once).
    pub files: u64,
    /// Files with no problem.
    pub ok: u64,
    /// Files with problems.
    pub with_problems: u64,
    /// Files skipped (not layers).
    pub skipped: u64,
    /// Files that could not be read.
    pub errors: u64,
    /// Problems in all files and the stack.
    pub problems: u64,
    /// Bytes of the verified files.
    pub bytes: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

impl Report {
    /// Builds the report and its summary.
    pub fn new(files: Vec<FileReport>, stack: Option<StackReport>, started: Instant) -> Self {
        let mut s = Summary {
            seconds: started.elapsed().as_secs_f64(),
            ..Default::default()
        };
        for f in &files {
            s.files += 1;
            match f.status {
                Status::Ok => s.ok += 1,
                Status::Problems => s.with_problems += 1,
                Status::Skipped => s.skipped += 1,
                Status::Error => s.errors += 1,
            }
            if f.status != Status::Skipped {
                s.bytes += f.size;
            }
            s.problems += f.problem_count();
        }
        if let Some(st) = &stack {
            s.problems += st.problems.len() as u64;
        }
        Report {
            empty: false,
            ok: s.with_problems == 0 && s.errors == 0 && s.problems == 0,
            files,
            stack,
            summary: s,
        }
    }

    /// 0 all good, 1 a problem found, 2 something could not be verified.
    pub fn exit_code(&self) -> u8 {
        if self.summary.errors > 0 {
            2
        } else if self.summary.problems > 0 || self.empty {
            1
        } else {
            0
        }
    }

    /// Marks a run that found no layer blob to check (an empty directory,
    /// or one holding none): a failure, as a CI gate over an output that
    /// was never filled must fail.
    pub fn no_layers_found(&mut self) {
        self.empty = true;
        self.ok = false;
    }

    /// True when the run checked at least one layer blob (or pair).
    pub fn found_layers(&self) -> bool {
        self.files.iter().any(|f| f.status != Status::Skipped)
    }
}

/// Runs planned jobs, files in parallel (on the current rayon pool).
pub fn run_jobs(jobs: &[Job], opts: &Options, progress: ProgressFn<'_>) -> Vec<FileReport> {
    use rayon::prelude::*;
    jobs.par_iter()
        .map(|j| match j {
            Job::Blob(p) => match opts.digests.get(p) {
                Some(d) => {
                    let o = Options {
                        digest: Some(*d),
                        ..opts.clone()
                    };
                    verify_path(p, &o, progress)
                }
                None => verify_path(p, opts, progress),
            },
            Job::Pair { data, index } => verify_pair(data, index, progress),
            Job::Skip { path, size, reason } => {
                FileReport::skipped(&path.display().to_string(), *size, reason.clone())
            }
            Job::Error { path, reason } => {
                FileReport::error(&path.display().to_string(), 0, reason.clone())
            }
        })
        .collect()
}
