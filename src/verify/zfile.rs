//! ZFile checks (§5.2–§5.8): header, trailer, jump table, every block.
//!
//! Records are decoded by [`Record::parse`] and the on-disk struct
//! [`RawHeader`]; the checks here collect every problem instead of stopping
//! at the first. A record or jump table damaged in a single bit is repaired
//! in memory (the digest or `index_crc` says which bit), so the checks
//! behind it still run on the right values.

use std::cell::RefCell;
use std::sync::Mutex;

use zerocopy::FromBytes;

use super::crc::{self, Flip};
use super::stream::UnitCheck;
use super::walk::{bit_distance, zfile_magic, MAGIC_TOLERANCE};
use super::{Container, Problem, Sink, MAX_PROBLEMS};
use crate::error::{Error, Result};
use crate::format::checksum::{crc32c, crc32c_salt};
use crate::format::zfile::raw::*;
use crate::format::zfile::{decompress_block, flag_names, Algorithm, Record};
use crate::io::ReadAt;

/// Byte offset of a field of [`RawHeader`].
macro_rules! off {
    ($field:ident) => {
        core::mem::offset_of!(RawHeader, $field)
    };
}

/// The fields of [`RawHeader`] in order: offset and name (padding fields as
/// `padding`); each runs to the next one's offset.
const FIELDS: [(usize, &str); 19] = [
    (off!(magic0), "magic0"),
    (off!(magic1), "magic1"),
    (off!(size), "size"),
    (off!(digest), "digest"),
    (off!(flags), "flags"),
    (off!(index_offset), "index_offset"),
    (off!(index_size), "index_size"),
    (off!(original_file_size), "original_file_size"),
    (off!(index_crc), "index_crc"),
    (off!(reserved_0), "reserved_0"),
    (off!(block_size), "block_size"),
    (off!(algo), "algo"),
    (off!(level), "level"),
    (off!(use_dict), "use_dict"),
    (off!(_pad0), "padding"),
    (off!(reserved_1), "reserved_1"),
    (off!(dict_size), "dict_size"),
    (off!(verify), "verify"),
    (off!(_pad1), "padding"),
];

/// The field holding byte `byte` of a record, and its range.
pub fn field_at(byte: usize) -> (&'static str, std::ops::Range<usize>) {
    let end = HEADER_STRUCT_SIZE as usize;
    if byte >= end {
        return ("unused", end..HEADER_SPACE as usize);
    }
    let i = FIELDS.iter().rposition(|f| f.0 <= byte).unwrap_or(0);
    let next = FIELDS.get(i + 1).map_or(end, |f| f.0);
    (FIELDS[i].1, FIELDS[i].0..next)
}

fn field_value(bytes: &[u8], r: std::ops::Range<usize>) -> String {
    let b = &bytes[r];
    match b.len() {
        1 | 2 | 4 | 8 => {
            let mut v = [0u8; 8];
            v[..b.len()].copy_from_slice(b);
            let n = u64::from_le_bytes(v);
            if n < 1 << 20 {
                n.to_string()
            } else {
                format!("{n:#x}")
            }
        }
        _ => b.iter().map(|x| format!("{x:02x}")).collect(),
    }
}

/// Where the blocks are and how to check them.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Absolute file offsets: block i is `bounds[i]..bounds[i + 1]`.
    pub bounds: Vec<u64>,
    pub algo: Algorithm,
    pub block_size: u64,
    pub original: u64,
    pub has_crc: bool,
}

impl Plan {
    pub fn blocks(&self) -> u64 {
        self.bounds.len() as u64 - 1
    }

    /// Bytes block `i` must decompress to.
    fn expected_len(&self, i: u64) -> usize {
        let start = i.saturating_mul(self.block_size);
        if start >= self.original {
            self.block_size as usize
        } else {
            (self.original - start).min(self.block_size) as usize
        }
    }
}

/// A header or trailer, after any single-bit repair.
struct Rec {
    which: &'static str,
    /// Absolute file offset.
    at: u64,
    bytes: [u8; 512],
    rec: Record,
}

impl Rec {
    fn field(&self, name: &str) -> String {
        format!("{}.{name}", self.which)
    }
}

fn problem(check: &'static str, message: impl Into<String>) -> Problem {
    Problem::new(Container::Zfile, check, message)
}

fn parse(bytes: &[u8; 512], which: &'static str, at: u64) -> Result<Record> {
    let what = if which == "header" {
        "zfile header"
    } else {
        "zfile trailer"
    };
    Record::parse(bytes, what, at)
}

/// Reads the record at view offset `pos`; `None` when there is no ZFile
/// magic there (not even a damaged one).
fn read_record(
    view: &dyn ReadAt,
    pos: u64,
    base: u64,
    which: &'static str,
    sink: &mut Sink,
) -> Result<Option<Rec>> {
    let mut b = [0u8; 512];
    view.read_exact_at(&mut b, pos)?;
    let at = base + pos;
    let magic = zfile_magic();
    let d = bit_distance(&b[..24], &magic);
    if d > MAGIC_TOLERANCE {
        return Ok(None);
    }
    if d > 0 {
        let i = b.iter().zip(&magic).position(|(x, y)| x != y).unwrap_or(0);
        let (name, r) = field_at(i);
        sink.push(
            problem("zfile.magic", format!("{which}: bad magic"))
                .at(at + i as u64)
                .field(format!("{which}.{name}"))
                .expected(field_value(&magic, r.clone()), field_value(&b, r)),
        );
        b[..24].copy_from_slice(&magic);
    }
    let mut rec = parse(&b, which, at)?;
    if rec.has_digest() {
        if rec.digest != rec.computed_digest {
            let p = problem("zfile.digest", format!("{which}: digest mismatch")).expected(
                format!("{:#010x}", rec.computed_digest),
                format!("{:#010x}", rec.digest),
            );
            match crc::locate(512, rec.digest, rec.computed_digest) {
                Some(Flip::Stored { bit }) => sink.push(
                    p.and("; the stored digest itself has one flipped bit")
                        .at(at + off!(digest) as u64 + bit as u64 / 8)
                        .field(format!("{which}.digest")),
                ),
                Some(Flip::Data { byte, bit }) => {
                    let (name, r) = field_at(byte);
                    let before = field_value(&b, r.clone());
                    b[byte] ^= 1 << bit;
                    rec = parse(&b, which, at)?;
                    let after = field_value(&b, r);
                    sink.push(
                        problem(
                            "zfile.digest",
                            format!(
                                "{which}: digest mismatch; one flipped bit (bit {bit} of byte {byte}) in {name} explains it"
                            ),
                        )
                        .at(at + byte as u64)
                        .field(format!("{which}.{name}"))
                        .expected(after, before),
                    );
                }
                None => sink.push(
                    p.and(": the record is damaged in more than one bit")
                        .at(at + off!(digest) as u64)
                        .field(format!("{which}.digest")),
                ),
            }
        }
    } else if rec.digest != 0 {
        // A valid digest with the digest flag clear: the flag bit flipped.
        let mut t = b;
        t[off!(flags)] |= FLAG_DIGEST as u8;
        let trial = parse(&t, which, at)?;
        if trial.digest == trial.computed_digest {
            sink.push(
                problem(
                    "zfile.flags",
                    format!("{which}: the digest flag is clear but the record carries a valid digest (flag bit 4 flipped)"),
                )
                .at(at + off!(flags) as u64)
                .field(format!("{which}.flags"))
                .expected(format!("{:#x}", trial.flags), format!("{:#x}", rec.flags)),
            );
            b = t;
            rec = trial;
        } else {
            sink.push(
                problem(
                    "zfile.digest",
                    format!("{which}: the digest field is set but the digest flag is clear"),
                )
                .at(at + off!(digest) as u64)
                .field(format!("{which}.digest"))
                .expected(0, format!("{:#010x}", rec.digest)),
            );
        }
    }
    Ok(Some(Rec {
        which,
        at,
        bytes: b,
        rec,
    }))
}

/// Checks the fields of one record on their own.
fn check_fields(r: &Rec, sink: &mut Sink) {
    let is_header = r.which == "header";
    let rec = &r.rec;
    let Ok((raw, _)) = RawHeader::read_from_prefix(&r.bytes) else {
        return;
    };
    if raw.size.get() != HEADER_STRUCT_SIZE {
        sink.push(
            problem("zfile.field", format!("{}: wrong size field", r.which))
                .at(r.at + off!(size) as u64)
                .field(r.field("size"))
                .expected(HEADER_STRUCT_SIZE, raw.size.get()),
        );
    }
    let f = rec.flags;
    let want = if is_header {
        FLAG_HEADER | FLAG_DATA | (f & (FLAG_HEADER_OVERWRITE | FLAG_DIGEST))
    } else {
        FLAG_DATA | FLAG_SEALED | (f & FLAG_DIGEST)
    };
    if f != want {
        let why = if f & FLAG_INDEX_COMPRESSED != 0 {
            " (compressed jump tables are never written and no reader supports them, Q29)"
        } else {
            ""
        };
        sink.push(
            problem(
                "zfile.flags",
                format!(
                    "{}: flags are [{}], expected [{}]{why}",
                    r.which,
                    flag_names(f).join(","),
                    flag_names(want).join(",")
                ),
            )
            .at(r.at + off!(flags) as u64)
            .field(r.field("flags"))
            .expected(format!("{want:#x}"), format!("{f:#x}")),
        );
    }
    for (name, range) in [
        ("reserved_0", 68..72),
        ("level", 77..78),
        ("padding", 79..80),
        ("reserved_1", 80..84),
        ("padding", 89..96),
        ("unused", 96..512),
    ] {
        if let Some(i) = r.bytes[range.clone()].iter().position(|&x| x != 0) {
            let at = range.start + i;
            sink.push(
                problem(
                    "zfile.reserved",
                    format!("{}: non-zero reserved byte (writers write zero)", r.which),
                )
                .at(r.at + at as u64)
                .field(r.field(name))
                .expected(0, r.bytes[at]),
            );
        }
    }
    if is_header && f & FLAG_HEADER_OVERWRITE == 0 {
        for (name, range, v) in [
            ("index_offset", 40..48, rec.index_offset),
            ("index_size", 48..56, rec.index_size),
            ("original_file_size", 56..64, rec.original_file_size),
            ("index_crc", 64..68, rec.index_crc as u64),
        ] {
            if v != 0 {
                sink.push(
                    problem(
                        "zfile.field",
                        "header: index fields are 0 in a header without the header-overwrite flag",
                    )
                    .at(r.at + range.start as u64)
                    .field(r.field(name))
                    .expected(0, v),
                );
            }
        }
    }
    if !matches!(rec.algo, 1 | 2) {
        let what = if rec.algo == 0 {
            "algorithm 0 (MINI_LZO) is not supported by any reader"
        } else {
            "unknown compression algorithm"
        };
        sink.push(
            problem("zfile.field", format!("{}: {what}", r.which))
                .at(r.at + off!(algo) as u64)
                .field(r.field("algo"))
                .expected("1 (lz4) or 2 (zstd)", rec.algo),
        );
    }
    let bs = rec.block_size;
    if !bs.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs) {
        sink.push(
            problem(
                "zfile.field",
                format!(
                    "{}: block size is not a power of two from 4 KiB to 64 KiB",
                    r.which
                ),
            )
            .at(r.at + off!(block_size) as u64)
            .field(r.field("block_size"))
            .expected("4096..=65536", bs),
        );
    }
    if rec.verify > 1 {
        sink.push(
            problem(
                "zfile.field",
                format!("{}: verify is neither 0 nor 1", r.which),
            )
            .at(r.at + off!(verify) as u64)
            .field(r.field("verify"))
            .expected("0 or 1", rec.verify),
        );
    }
    for (name, at, value) in [
        ("use_dict", 78, u64::from(rec.use_dict)),
        ("dict_size", 84, u64::from(rec.dict_size)),
    ] {
        if value != 0 {
            sink.push(
                problem(
                    "zfile.field",
                    format!("{}: dictionaries are not supported", r.which),
                )
                .at(r.at + at)
                .field(r.field(name))
                .expected(0, value),
            );
        }
    }
}

/// Header and trailer must agree on the compression options, and with the
/// header-overwrite flag on the index fields too.
fn check_agreement(h: &Rec, t: &Rec, sink: &mut Sink) {
    let overwrite = h.rec.flags & FLAG_HEADER_OVERWRITE != 0;
    let mut fields: Vec<(&str, std::ops::Range<usize>)> =
        vec![("block_size", 72..76), ("algo", 76..77), ("verify", 88..89)];
    if overwrite {
        fields.extend([
            ("index_offset", 40..48),
            ("index_size", 48..56),
            ("original_file_size", 56..64),
            ("index_crc", 64..68),
        ]);
    }
    for (name, r) in fields {
        if h.bytes[r.clone()] != t.bytes[r.clone()] {
            sink.push(
                problem(
                    "zfile.agreement",
                    format!("header.{name} and trailer.{name} differ"),
                )
                .field(name)
                .expected(
                    format!("{} (header)", field_value(&h.bytes, r.clone())),
                    format!("{} (trailer)", field_value(&t.bytes, r)),
                ),
            );
        }
    }
    if (h.rec.flags ^ t.rec.flags) & FLAG_DIGEST != 0 {
        sink.push(
            problem(
                "zfile.agreement",
                "the digest flag is set in only one of header and trailer",
            )
            .field("flags")
            .expected(
                format!("{:#x} (header)", h.rec.flags),
                format!("{:#x} (trailer)", t.rec.flags),
            ),
        );
    }
}

/// Looks for a trailer earlier in the file (extra bytes appended).
fn find_trailer(view: &dyn ReadAt) -> Result<Option<u64>> {
    let len = view.len();
    let window = len.min((1 << 20) + HEADER_SPACE);
    let start = len - window;
    let mut buf = vec![0u8; window as usize];
    view.read_exact_at(&mut buf, start)?;
    let magic = zfile_magic();
    let mut i = buf.len().saturating_sub(HEADER_SPACE as usize);
    loop {
        if buf[i..].starts_with(&magic) && i + HEADER_SPACE as usize <= buf.len() {
            let mut rec = [0u8; 512];
            rec.copy_from_slice(&buf[i..i + 512]);
            if let Ok(r) = Record::parse(&rec, "zfile trailer", start + i as u64) {
                if r.flags & FLAG_HEADER == 0 && r.has_digest() && r.digest_ok() {
                    return Ok(Some(start + i as u64));
                }
            }
        }
        if i == 0 {
            return Ok(None);
        }
        i -= 1;
    }
}

/// Checks everything but the blocks; returns where the blocks are.
///
/// `view` is the ZFile (the tar member's payload, or the whole file);
/// `base` is where it starts in the file, for reporting file offsets.
///
/// # Errors
/// I/O errors.
pub(crate) fn check_meta(view: &dyn ReadAt, base: u64, sink: &mut Sink) -> Result<Option<Plan>> {
    let len = view.len();
    if len < HEADER_SPACE {
        sink.push(
            problem(
                "zfile.truncated",
                "the ZFile is shorter than its 512-byte header (truncated?)",
            )
            .at(base + len)
            .expected(">= 1024 bytes", format!("{len} bytes")),
        );
        return Ok(None);
    }
    let header = read_record(view, 0, base, "header", sink)?;
    if let Some(h) = &header {
        check_fields(h, sink);
    }
    let mut trailer_pos = len.saturating_sub(HEADER_SPACE);
    let mut trailer = None;
    if len >= 2 * HEADER_SPACE {
        trailer = read_record(view, trailer_pos, base, "trailer", sink)?;
        if trailer
            .as_ref()
            .is_some_and(|t| t.rec.flags & FLAG_HEADER != 0)
        {
            // A header where the trailer should be: a truncated stream or a
            // second file appended; the flags check would say why.
            check_fields(trailer.as_ref().unwrap_or_else(|| unreachable!()), sink);
            trailer = None;
        }
    }
    if trailer.is_none() {
        match find_trailer(view)?.filter(|&p| p > 0 && len >= 2 * HEADER_SPACE) {
            Some(p) => {
                sink.push(
                    problem(
                        "zfile.trailer_position",
                        format!(
                            "no trailer at the end of the ZFile; one is at {:#x}, followed by {} more bytes",
                            base + p,
                            len - p - HEADER_SPACE
                        ),
                    )
                    .at(base + p + HEADER_SPACE)
                    .expected(format!("{} bytes", p + HEADER_SPACE), format!("{len} bytes")),
                );
                trailer_pos = p;
                trailer = read_record(view, p, base, "trailer", sink)?;
            }
            None => sink.push(
                problem(
                    "zfile.truncated",
                    "no trailer at the end of the ZFile (truncated?)",
                )
                .at(base + trailer_pos)
                .field("trailer"),
            ),
        }
    }
    if let Some(t) = &trailer {
        check_fields(t, sink);
    }
    if let (Some(h), Some(t)) = (&header, &trailer) {
        check_agreement(h, t, sink);
    }
    if header.is_none() {
        sink.push(problem("zfile.magic", "no ZFile header").at(base));
    }
    let overwrite = header
        .as_ref()
        .is_some_and(|h| h.rec.flags & FLAG_HEADER_OVERWRITE != 0);
    let layout = if overwrite { &header } else { &trailer };
    let Some(layout) = layout else {
        return Ok(None);
    };
    if !layout.rec.has_digest() {
        sink.note("no digests (a ZFile written before digests existed): header, trailer and jump table are not checksummed");
    }
    plan_blocks(view, base, layout, trailer_pos, sink)
}

/// Checks the jump table against the record and the file; returns the plan.
fn plan_blocks(
    view: &dyn ReadAt,
    base: u64,
    layout: &Rec,
    trailer_pos: u64,
    sink: &mut Sink,
) -> Result<Option<Plan>> {
    let rec = &layout.rec;
    let bs = rec.block_size as u64;
    let Ok(algo) = Algorithm::from_id(rec.algo, "zfile", 0) else {
        return Ok(None);
    };
    if !rec.block_size.is_power_of_two()
        || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&rec.block_size)
        || rec.verify > 1
    {
        return Ok(None);
    }
    let has_crc = rec.verify == 1;
    let n = rec.index_size;
    let data_start = HEADER_SPACE + rec.dict_size as u64;
    let io = rec.index_offset;
    let table_len = n * 4;
    if !check_table_position(layout, base, data_start, trailer_pos, sink) {
        return Ok(None);
    }
    let mut table = vec![0u8; table_len as usize];
    view.read_exact_at(&mut table, io)?;
    let entry_at = |k: u64| base + io + 4 * k;
    if rec.has_digest() {
        check_table_crc(&mut table, layout, base + io, sink);
    }
    let crc_len = if has_crc { CRC_SIZE } else { 0 };
    let (min, max) = (crc_len + 1, bs + MAX_BLOCK_OVERHEAD + crc_len);
    let mut lens: Vec<u64> = table
        .chunks_exact(4)
        .map(|e| u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as u64)
        .collect();
    check_entries(&lens, bs, crc_len, entry_at, sink);
    let table_at = TableAt {
        base,
        data_start,
        io,
        min,
        max,
    };
    let plan0 = Plan {
        bounds: Vec::new(),
        algo,
        block_size: bs,
        original: rec.original_file_size,
        has_crc,
    };
    check_table_sum(view, &plan0, &table_at, &mut lens, sink)?;
    let mut bounds = Vec::with_capacity(lens.len() + 1);
    let mut pos = data_start;
    bounds.push(base + pos);
    for l in lens {
        if pos + l > io {
            break;
        }
        pos += l;
        bounds.push(base + pos);
    }
    if (bounds.len() as u64) < n + 1 {
        sink.note(format!(
            "blocks {} and later were not checked: the jump table puts them past the data section",
            bounds.len() - 1
        ));
    }
    Ok(Some(Plan {
        bounds,
        algo,
        block_size: bs,
        original: rec.original_file_size,
        has_crc,
    }))
}

/// Checks the block count and where the jump table lies (between the data
/// section and the trailer, ending at the trailer). False when the table
/// cannot be read at all.
fn check_table_position(
    layout: &Rec,
    base: u64,
    data_start: u64,
    trailer_pos: u64,
    sink: &mut Sink,
) -> bool {
    let rec = &layout.rec;
    let bs = rec.block_size as u64;
    let n = rec.index_size;
    let expected_n = rec.original_file_size.div_ceil(bs);
    if n != expected_n {
        sink.push(
            problem(
                "zfile.block_count",
                format!(
                    "{}: {n} blocks in the jump table, but {} bytes in {bs}-byte blocks need {expected_n}",
                    layout.which, rec.original_file_size
                ),
            )
            .at(layout.at + off!(index_size) as u64)
            .field(layout.field("index_size"))
            .expected(expected_n, n),
        );
    }
    if n > MAX_INDEX_ENTRIES {
        sink.push(
            problem(
                "zfile.jump_table",
                "jump table larger than any reader accepts",
            )
            .at(layout.at + off!(index_size) as u64)
            .field(layout.field("index_size"))
            .expected(format!("<= {MAX_INDEX_ENTRIES}"), n),
        );
        return false;
    }
    let io = rec.index_offset;
    let table_len = n * 4;
    let table_end = io.checked_add(table_len);
    match table_end {
        Some(te) if io >= data_start && te <= trailer_pos => {
            if te != trailer_pos {
                sink.push(
                    problem(
                        "zfile.trailer_position",
                        format!(
                            "{} bytes between the jump table and the trailer (index_offset or index_size is wrong)",
                            trailer_pos - te
                        ),
                    )
                    .at(layout.at + off!(index_offset) as u64)
                    .field(layout.field("index_offset"))
                    .expected(trailer_pos - table_len, io),
                );
            }
        }
        _ => {
            sink.push(
                problem(
                    "zfile.trailer_position",
                    format!(
                        "a jump table of {n} entries at {io:#x} does not fit between the header and the trailer at {:#x}",
                        base + trailer_pos
                    ),
                )
                .at(layout.at + off!(index_offset) as u64)
                .field(layout.field("index_offset"))
                .expected(trailer_pos.saturating_sub(table_len), io),
            );
            return false;
        }
    }
    true
}

/// Checks the jump table against `index_crc`; a one-bit flip in an entry
/// is located, reported, and repaired in `table`.
fn check_table_crc(table: &mut [u8], layout: &Rec, table_at: u64, sink: &mut Sink) {
    let rec = &layout.rec;
    let computed = crc32c(table);
    if computed == rec.index_crc {
        return;
    }
    let p = problem("zfile.jump_table.crc", "index_crc mismatch").expected(
        format!("{:#010x}", rec.index_crc),
        format!("{computed:#010x}"),
    );
    let word = |t: &[u8], byte: usize| {
        u32::from_le_bytes(t[byte & !3..(byte & !3) + 4].try_into().unwrap_or_default())
    };
    match crc::locate(table.len(), rec.index_crc, computed) {
        Some(Flip::Data { byte, bit }) => {
            let k = (byte / 4) as u64;
            let old = word(table, byte);
            table[byte] ^= 1 << bit;
            let new = word(table, byte);
            sink.push(
                problem(
                    "zfile.jump_table.crc",
                    format!("index_crc mismatch; one flipped bit in jump-table entry {k} (block {k}'s length) explains it"),
                )
                .entry(k)
                .at(table_at + byte as u64)
                .field("jump_table")
                .expected(new, old),
            );
        }
        Some(Flip::Stored { bit }) => sink.push(
            p.and("; the stored index_crc has one flipped bit")
                .at(layout.at + off!(index_crc) as u64 + bit as u64 / 8)
                .field(layout.field("index_crc")),
        ),
        None => sink.push(
            p.and(": the jump table is damaged in more than one bit")
                .at(table_at)
                .field("jump_table"),
        ),
    }
}

/// Checks every entry's length against what a block can compress to, and
/// notes blocks the reference cannot read (over 64 KiB on disk).
fn check_entries(
    lens: &[u64],
    bs: u64,
    crc_len: u64,
    entry_at: impl Fn(u64) -> u64,
    sink: &mut Sink,
) {
    let (min, max) = (crc_len + 1, bs + MAX_BLOCK_OVERHEAD + crc_len);
    let mut oversized = 0u64;
    for (k, &l) in lens.iter().enumerate() {
        let k = k as u64;
        if l < min || l > max {
            sink.push(
                problem(
                    "zfile.jump_table.entry",
                    format!("block {k} is {l} bytes on disk, outside what a {bs}-byte block compresses to"),
                )
                .entry(k)
                .at(entry_at(k))
                .field("jump_table")
                .expected(format!("{min}..={max}"), l),
            );
        }
        if l.saturating_sub(crc_len) > MAX_BLOCK_SIZE as u64 {
            oversized += 1;
        }
    }
    if oversized > 0 {
        sink.note(format!(
            "{oversized} blocks are larger than 64 KiB compressed: overlaybd's reader (at 063821fc) cannot read them; obd can"
        ));
    }
}

/// Where the jump table and the data section are, and the entry limits.
struct TableAt {
    base: u64,
    data_start: u64,
    io: u64,
    min: u64,
    max: u64,
}

/// Checks that the block lengths add up to the data section; when they do
/// not, locates the one wrong entry and repairs it in `lens`.
fn check_table_sum(
    view: &dyn ReadAt,
    plan0: &Plan,
    t: &TableAt,
    lens: &mut [u64],
    sink: &mut Sink,
) -> Result<()> {
    let TableAt {
        base,
        data_start,
        io,
        min,
        max,
    } = *t;
    let entry_at = |k: u64| base + io + 4 * k;
    let data_len = io - data_start;
    let sum: u64 = lens.iter().sum();
    if sum != data_len && !lens.is_empty() {
        sink.push(
            problem(
                "zfile.jump_table.sum",
                "the block lengths in the jump table do not add up to the data section",
            )
            .at(base + io)
            .field("jump_table")
            .expected(data_len, sum),
        );
        match localize(view, plan0, data_start, io, lens, min, max)? {
            Some((k, span)) => {
                sink.push(
                    problem(
                        "zfile.jump_table.entry",
                        format!("jump-table entry {k} is wrong: the blocks before and after it line up only if block {k} is {span} bytes (and then it checks out)"),
                    )
                    .entry(k as u64)
                    .at(entry_at(k as u64))
                    .field("jump_table")
                    .expected(span, lens[k]),
                );
                lens[k] = span;
            }
            None => sink.note("the damaged jump-table entries could not be located; blocks past the first damaged one may be misreported"),
        }
    } else if sum != data_len {
        sink.push(
            problem(
                "zfile.jump_table.sum",
                "no blocks, but a non-empty data section",
            )
            .at(base + data_start)
            .expected(0, data_len),
        );
    }
    Ok(())
}

/// Finds the one wrong jump-table entry: blocks are checked from the start
/// with the table's lengths until one fails; the blocks after it must then
/// end exactly at the jump table, which gives that block's true length.
fn localize(
    view: &dyn ReadAt,
    plan: &Plan,
    data_start: u64,
    io: u64,
    lens: &[u64],
    min: u64,
    max: u64,
) -> Result<Option<(usize, u64)>> {
    let mut pos = data_start;
    let mut buf = Vec::new();
    let mut bad = None;
    for (k, &l) in lens.iter().enumerate() {
        if pos + l > io || !block_ok(view, plan, k as u64, pos, l, &mut buf)? {
            bad = Some(k);
            break;
        }
        pos += l;
    }
    let Some(k) = bad else {
        return Ok(None);
    };
    let tail: u64 = lens[k + 1..].iter().sum();
    let Some(span) = io.checked_sub(tail).and_then(|e| e.checked_sub(pos)) else {
        return Ok(None);
    };
    if span < min || span > max || span == lens[k] {
        return Ok(None);
    }
    Ok(block_ok(view, plan, k as u64, pos, span, &mut buf)?.then_some((k, span)))
}

fn block_ok(
    view: &dyn ReadAt,
    plan: &Plan,
    i: u64,
    pos: u64,
    len: u64,
    buf: &mut Vec<u8>,
) -> Result<bool> {
    if len == 0 || (plan.has_crc && len <= CRC_SIZE) {
        return Ok(false);
    }
    buf.resize(len as usize, 0);
    view.read_exact_at(buf, pos)?;
    let data = if plan.has_crc {
        let (d, c) = buf.split_at(buf.len() - CRC_SIZE as usize);
        if crc32c_salt(d) != u32::from_le_bytes([c[0], c[1], c[2], c[3]]) {
            return Ok(false);
        }
        d
    } else {
        &buf[..]
    };
    let mut out = vec![0u8; plan.expected_len(i)];
    Ok(decompress_block(plan.algo, data, &mut out, i, pos).is_ok())
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Checks blocks (CRC, then exact decompression), recording problems.
pub(crate) struct BlockChecker<'a> {
    pub plan: &'a Plan,
    found: &'a Mutex<(Vec<Problem>, u64)>,
}

impl<'a> BlockChecker<'a> {
    pub fn new(plan: &'a Plan, found: &'a Mutex<(Vec<Problem>, u64)>) -> Self {
        BlockChecker { plan, found }
    }

    fn report(&self, p: Problem) {
        if let Ok(mut g) = self.found.lock() {
            if g.0.len() < MAX_PROBLEMS {
                g.0.push(p);
            } else {
                g.1 += 1;
            }
        }
    }
}

impl UnitCheck for BlockChecker<'_> {
    fn check(&self, i: u64, record: &[u8]) {
        let at = self.plan.bounds[i as usize];
        if record.is_empty() || (self.plan.has_crc && record.len() <= CRC_SIZE as usize) {
            // Too short to hold a block: reported with its jump-table entry.
            return;
        }
        let data = if self.plan.has_crc {
            let (d, c) = record.split_at(record.len() - CRC_SIZE as usize);
            let stored = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let computed = crc32c_salt(d);
            if stored != computed {
                let p = problem("zfile.block.crc", "block CRC32C mismatch")
                    .block(i)
                    .expected(format!("{stored:#010x}"), format!("{computed:#010x}"));
                self.report(match crc::locate(d.len(), stored, computed) {
                    Some(Flip::Data { byte, bit }) => p.at(at + byte as u64).and(format!(
                        "; one flipped bit (bit {bit} of the byte at {:#x}) explains it",
                        at + byte as u64
                    )),
                    Some(Flip::Stored { bit }) => p
                        .at(at + d.len() as u64 + bit as u64 / 8)
                        .and("; the stored CRC itself has one flipped bit"),
                    None => p.at(at),
                });
                return;
            }
            d
        } else {
            record
        };
        let want = self.plan.expected_len(i);
        let res = SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < want {
                s.resize(want, 0);
            }
            decompress_block(self.plan.algo, data, &mut s[..want], i, at)
        });
        if let Err(e) = res {
            let detail = match e {
                Error::Corrupt { detail, .. } => detail,
                e => e.to_string(),
            };
            self.report(
                problem("zfile.block.decompress", detail)
                    .block(i)
                    .at(at)
                    .expected(
                        format!("{want} bytes"),
                        "a block that does not decompress to them",
                    ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::zfile::{Writer, WriterOptions};

    /// A plain-header ZFile (LZ4, 4 KiB blocks, CRCs) of 10 blocks.
    fn zfile(crc: bool) -> Vec<u8> {
        let mut data = vec![0u8; 40_000];
        crate::sample::fill(5, 0, &mut data);
        let opts = WriterOptions {
            crc,
            ..WriterOptions::default()
        };
        let mut w = Writer::new(Vec::new(), opts).unwrap();
        w.push(&data).unwrap();
        w.finish().unwrap().inner
    }

    fn check(b: &[u8]) -> (Option<Plan>, Vec<Problem>) {
        let mut sink = Sink::new("t");
        let plan = check_meta(&b.to_vec(), 0, &mut sink).unwrap();
        if let Some(p) = &plan {
            let found = Mutex::new((Vec::new(), 0));
            let c = BlockChecker::new(p, &found);
            for i in 0..p.blocks() {
                let r = p.bounds[i as usize] as usize..p.bounds[i as usize + 1] as usize;
                c.check(i, &b[r]);
            }
            for q in found.into_inner().unwrap().0 {
                sink.push(q);
            }
        }
        (plan, sink.problems)
    }

    #[test]
    fn clean_and_field_names() {
        let b = zfile(true);
        let (plan, p) = check(&b);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(plan.unwrap().blocks(), 10);
        assert_eq!(field_at(30).0, "digest");
        assert_eq!(field_at(88).0, "verify");
        assert_eq!(field_at(300).0, "unused");
    }

    #[test]
    fn a_jump_table_entry_damaged_in_two_bits_is_found_from_the_blocks() {
        let b0 = zfile(true);
        let t = b0.len() - 512;
        let io = u64::from_le_bytes(b0[t + 40..t + 48].try_into().unwrap()) as usize;
        let mut b = b0.clone();
        b[io + 4 * 3] ^= 0x06; // entry 3: two bits, beyond index_crc's reach
        let (plan, p) = check(&b);
        let checks: Vec<_> = p.iter().map(|q| (q.check, q.entry)).collect();
        assert_eq!(
            checks,
            [
                ("zfile.jump_table.crc", None),
                ("zfile.jump_table.sum", None),
                ("zfile.jump_table.entry", Some(3))
            ],
            "{p:?}"
        );
        // The blocks are then checked where they really are: all good.
        assert_eq!(plan.unwrap().blocks(), 10);
    }

    #[test]
    fn without_crcs_decompression_is_the_check() {
        let b0 = zfile(false);
        let (plan, p) = check(&b0);
        assert!(p.is_empty(), "{p:?}");
        let plan = plan.unwrap();
        // Cut block 4's stream short by making its last byte a huge literal run.
        let mut b = b0.clone();
        let end = plan.bounds[5] as usize;
        b[end - 1] ^= 0xF0;
        b[plan.bounds[4] as usize] = 0xFF;
        let (_, p) = check(&b);
        assert!(
            p.iter()
                .any(|q| q.check == "zfile.block.decompress" && q.block == Some(4)),
            "{p:?}"
        );
    }

    #[test]
    fn damaged_zero_block_without_crc_is_found() {
        // Repeated blocks are decoded every time: a damaged copy of a block
        // seen before is still caught in a file without CRCs.
        let mut z = Writer::new(
            Vec::new(),
            WriterOptions {
                crc: false,
                ..Default::default()
            },
        )
        .unwrap();
        z.push(&[0u8; 3 * 4096]).unwrap();
        let mut b = z.finish().unwrap().inner;
        let (plan, p) = check(&b);
        assert!(p.is_empty(), "{p:?}");
        let second = plan.unwrap().bounds[1] as usize;
        b[second + 3] = 0x02; // block 1: match offset 513, before the start of the output
        let (_, p) = check(&b);
        assert!(p.iter().any(|q| q.block == Some(1)), "{p:?}");
    }

    #[test]
    fn record_fields_are_checked() {
        let b0 = zfile(true);
        let t = b0.len() - 512;
        // block_size of the trailer changed and its digest recomputed.
        let mut b = b0.clone();
        let mut rec = Record::parse(&b[t..], "t", 0).unwrap();
        rec.block_size = 8192;
        b[t..].copy_from_slice(&rec.to_bytes());
        let (_, p) = check(&b);
        assert!(
            p.iter()
                .any(|q| q.check == "zfile.agreement" && q.field.as_deref() == Some("block_size")),
            "{p:?}"
        );
        assert!(p.iter().any(|q| q.check == "zfile.block_count"), "{p:?}");
        // The digest flag cleared in the header (a valid digest remains).
        let mut b = b0.clone();
        b[32] &= !(FLAG_DIGEST as u8);
        let (_, p) = check(&b);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!((p[0].check, p[0].offset), ("zfile.flags", Some(32)));
    }
}
