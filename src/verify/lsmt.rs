//! LSMT checks (§3): committed and sealed-in-place read-only layers,
//! writable data/index pairs and their halves.
//!
//! Records are decoded by [`Header::parse`] and index entries by
//! [`Segment::decode`]; the physical-range rule is
//! [`index::check_physical`], as in the reader. LSMT has no checksums, so
//! redundancy does the work: the header and trailer repeat each other, a
//! committed layer's data is contiguous in LBA order (§3.9.3), writable
//! and sealed-in-place layers never let two entries share data sectors,
//! and every reserved byte is zero.

use zerocopy::{FromBytes, IntoBytes};

use super::walk::{bit_distance, lsmt_magic, MAGIC_TOLERANCE};
use super::{Container, LayerInfo, Problem, Sink};
use crate::error::{Error, Result};
use crate::format::lsmt::index::{self, DATA_START_SECTORS};
use crate::format::lsmt::raw::*;
use crate::format::lsmt::segment::{Segment, PADDING};
use crate::format::lsmt::Header;
use crate::io::ReadAt;

/// Fields of the record: (offset, length, name).
/// Byte offset of a field of [`RawHeader`].
macro_rules! off {
    ($field:ident) => {
        core::mem::offset_of!(RawHeader, $field)
    };
}

/// The fields of [`RawHeader`] in order: offset and name.
const FIELDS: [(usize, &str); 13] = [
    (off!(magic0), "magic0"),
    (off!(magic1), "magic1"),
    (off!(size), "size"),
    (off!(flags), "flags"),
    (off!(index_offset), "index_offset"),
    (off!(index_size), "index_size"),
    (off!(virtual_size), "virtual_size"),
    (off!(uuid), "uuid"),
    (off!(parent_uuid), "parent_uuid"),
    (off!(reserved), "reserved"),
    (off!(version), "version"),
    (off!(sub_version), "sub_version"),
    (off!(user_tag), "user_tag"),
];

/// The field holding byte `byte` of a record.
pub fn field_at(byte: usize) -> &'static str {
    if byte >= HEADER_STRUCT_SIZE as usize {
        return "unused";
    }
    FIELDS
        .iter()
        .rev()
        .find(|f| f.0 <= byte)
        .map_or("unused", |f| f.1)
}

fn le(b: &[u8]) -> u64 {
    let mut v = [0u8; 8];
    v[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
    u64::from_le_bytes(v)
}

/// The bytes of field `$field` in a record's bytes.
macro_rules! bytes_of {
    ($b:expr, $field:ident) => {{
        let at = off!($field);
        let raw = <RawHeader as zerocopy::FromZeros>::new_zeroed();
        &$b[at..at + core::mem::size_of_val(&raw.$field)]
    }};
}

/// Index entries of a read-only layer read at most (16 bytes each): the
/// reference's limit; more is reported, not read.
const MAX_INDEX_READ: u64 = MAX_RO_INDEX_ENTRIES;

/// Where problems are: offsets are in the LSMT view; inside a ZFile the
/// block holding the offset is named too.
struct Ctx {
    block_size: Option<u64>,
}

impl Ctx {
    fn at(&self, p: Problem, offset: u64) -> Problem {
        let p = p.at(offset);
        match self.block_size {
            Some(bs) if bs > 0 => p.block(offset / bs),
            _ => p,
        }
    }
}

fn problem(check: &'static str, message: impl Into<String>) -> Problem {
    Problem::new(Container::Lsmt, check, message)
}

fn printable(b: &[u8]) -> String {
    b.iter()
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect()
}

/// A header or trailer record.
struct Rec {
    which: &'static str,
    at: u64,
    /// Up to 4096 bytes as stored (magic repaired).
    bytes: Vec<u8>,
    h: Header,
}

impl Rec {
    fn field(&self, name: &str) -> String {
        format!("{}.{name}", self.which)
    }
}

/// Reads the record at `at`; `None` without an (even damaged) LSMT magic.
fn read_rec(
    view: &dyn ReadAt,
    at: u64,
    which: &'static str,
    ctx: &Ctx,
    sink: &mut Sink,
) -> Result<Option<Rec>> {
    let n = view.len().saturating_sub(at).min(HEADER_SPACE) as usize;
    if n < HEADER_STRUCT_SIZE as usize {
        return Ok(None);
    }
    let mut bytes = vec![0u8; n];
    view.read_exact_at(&mut bytes, at)?;
    let magic = lsmt_magic();
    let d = bit_distance(&bytes[..24], &magic);
    if d > MAGIC_TOLERANCE {
        return Ok(None);
    }
    if d > 0 {
        let i = bytes
            .iter()
            .zip(&magic)
            .position(|(x, y)| x != y)
            .unwrap_or(0);
        let name = field_at(i);
        sink.push(
            ctx.at(
                problem("lsmt.magic", format!("{which}: bad magic")),
                at + i as u64,
            )
            .field(format!("{which}.{name}"))
            .expected(format!("{:#04x}", magic[i]), format!("{:#04x}", bytes[i])),
        );
        bytes[..24].copy_from_slice(&magic);
    }
    let what = if which == "trailer" {
        "lsmt trailer"
    } else {
        "lsmt header"
    };
    let h = Header::parse(&bytes, what, at)?;
    Ok(Some(Rec {
        which,
        at,
        bytes,
        h,
    }))
}

fn check_uuid(r: &Rec, off: usize, name: &str, ctx: &Ctx, sink: &mut Sink) {
    let f = &r.bytes[off..off + 37];
    if f.iter().all(|&b| b == 0) {
        // Readers take an empty field as the null UUID (a layer without a
        // parent, as some writers leave it).
        sink.note(format!(
            "{}: the {name} field is empty (read as the null UUID)",
            r.which
        ));
        return;
    }
    for (i, &c) in f[..36].iter().enumerate() {
        let ok = match i {
            8 | 13 | 18 | 23 => c == b'-',
            // The reference parses either case (and writes upper case).
            _ => c.is_ascii_hexdigit(),
        };
        if !ok {
            sink.push(
                ctx.at(
                    problem(
                        "lsmt.uuid",
                        format!("{}: the {name} field is not an 8-4-4-4-12 UUID", r.which),
                    ),
                    r.at + (off + i) as u64,
                )
                .field(r.field(name))
                .found(printable(&f[..36])),
            );
            return;
        }
    }
    if f[36] != 0 {
        sink.push(
            ctx.at(
                problem(
                    "lsmt.uuid",
                    format!("{}: the {name} field is not NUL-terminated", r.which),
                ),
                r.at + (off + 36) as u64,
            )
            .field(r.field(name))
            .expected(0, f[36]),
        );
    }
}

/// Checks what every record has: size, reserved bytes, version, UUIDs,
/// user tag.
fn check_common(r: &Rec, ctx: &Ctx, sink: &mut Sink) {
    let b = &r.bytes;
    let size = le(bytes_of!(b, size));
    if size != HEADER_STRUCT_SIZE as u64 {
        sink.push(
            ctx.at(
                problem("lsmt.field", format!("{}: wrong size field", r.which)),
                r.at + off!(size) as u64,
            )
            .field(r.field("size"))
            .expected(HEADER_STRUCT_SIZE, size),
        );
    }
    let flags = r.h.flags;
    let unknown = flags & !(FLAG_HEADER | FLAG_DATA | FLAG_SEALED | FLAG_SPARSE);
    if unknown != 0 {
        sink.push(
            ctx.at(
                problem(
                    "lsmt.flags",
                    format!("{}: flag bits no writer sets", r.which),
                ),
                r.at + off!(flags) as u64,
            )
            .field(r.field("flags"))
            .expected(format!("{:#x}", flags & !unknown), format!("{flags:#x}")),
        );
    }
    let reserved = bytes_of!(b, reserved);
    if let Some(i) = reserved.iter().position(|&x| x != 0) {
        sink.push(
            ctx.at(
                problem(
                    "lsmt.reserved",
                    format!("{}: non-zero reserved byte", r.which),
                ),
                r.at + (off!(reserved) + i) as u64,
            )
            .field(r.field("reserved"))
            .expected(0, reserved[i]),
        );
    }
    for (off, name) in [
        (off!(version), "version"),
        (off!(sub_version), "sub_version"),
    ] {
        if b[off] != 1 {
            sink.push(
                ctx.at(
                    problem(
                        "lsmt.version",
                        format!("{}: every writer writes version 1.1", r.which),
                    ),
                    r.at + off as u64,
                )
                .field(r.field(name))
                .expected(1, b[off]),
            );
        }
    }
    check_uuid(r, off!(uuid), "uuid", ctx, sink);
    check_uuid(r, off!(parent_uuid), "parent_uuid", ctx, sink);
    let tag = bytes_of!(b, user_tag);
    if let Some(nul) = tag.iter().position(|&x| x == 0) {
        if let Some(i) = tag[nul..].iter().position(|&x| x != 0) {
            let at = off!(user_tag) + nul + i;
            sink.push(
                ctx.at(
                    problem(
                        "lsmt.user_tag",
                        format!(
                            "{}: non-zero byte after the end of the user tag (it is zero-padded)",
                            r.which
                        ),
                    ),
                    r.at + at as u64,
                )
                .field(r.field("user_tag"))
                .expected(0, b[at]),
            );
        }
    }
    let end = HEADER_STRUCT_SIZE as usize;
    if let Some(i) = b.get(end..).and_then(|t| t.iter().position(|&x| x != 0)) {
        let at = end + i;
        sink.push(
            ctx.at(
                problem(
                    "lsmt.reserved",
                    format!(
                        "{}: non-zero byte in the reserved space after the record",
                        r.which
                    ),
                ),
                r.at + at as u64,
            )
            .field(r.field("unused"))
            .expected(0, b[at]),
        );
    }
}

fn check_flags(r: &Rec, allowed: &[u32], ctx: &Ctx, sink: &mut Sink, why: &str) {
    if !allowed.contains(&r.h.flags) {
        let want: Vec<String> = allowed.iter().map(|f| format!("{f:#x}")).collect();
        sink.push(
            ctx.at(
                problem(
                    "lsmt.flags",
                    format!(
                        "{}: flags [{}] are not a {why}'s",
                        r.which,
                        crate::format::lsmt::header::flag_names(r.h.flags).join(",")
                    ),
                ),
                r.at + off!(flags) as u64,
            )
            .field(r.field("flags"))
            .expected(want.join(" or "), format!("{:#x}", r.h.flags)),
        );
    }
}

fn check_zero_index_fields(r: &Rec, ctx: &Ctx, sink: &mut Sink) {
    for (name, off, v) in [
        ("index_offset", off!(index_offset) as u64, r.h.index_offset),
        ("index_size", off!(index_size) as u64, r.h.index_size),
    ] {
        if v != 0 {
            sink.push(
                ctx.at(
                    problem(
                        "lsmt.field",
                        format!("{}: the index fields of this record are 0", r.which),
                    ),
                    r.at + off,
                )
                .field(r.field(name))
                .expected(0, v),
            );
        }
    }
}

/// Checks a record's virtual size: a non-zero multiple of 512. A writable
/// layer may declare 0: it then takes the size of the stack it is used over.
fn check_vsize(r: &Rec, writable: bool, ctx: &Ctx, sink: &mut Sink) {
    let v = r.h.virtual_size;
    if v == 0 && writable {
        sink.note(format!(
            "{}: virtual size 0: the layer takes the size of the stack it is used over",
            r.which
        ));
        return;
    }
    if v == 0 || v % SECTOR_SIZE != 0 {
        sink.push(
            ctx.at(
                problem(
                    "lsmt.virtual_size",
                    format!(
                        "{}: the virtual size is {}",
                        r.which,
                        if v == 0 {
                            "0"
                        } else {
                            "not a multiple of 512 bytes"
                        }
                    ),
                ),
                r.at + off!(virtual_size) as u64,
            )
            .field(r.field("virtual_size"))
            .expected("a non-zero multiple of 512", v),
        );
    }
}

/// Fields two records of one layer repeat.
fn check_agreement(a: &Rec, b: &Rec, sink: &mut Sink) {
    let (ab, bb) = (&a.bytes, &b.bytes);
    for (name, off, x, y) in [
        (
            "virtual_size",
            off!(virtual_size),
            bytes_of!(ab, virtual_size),
            bytes_of!(bb, virtual_size),
        ),
        ("uuid", off!(uuid), bytes_of!(ab, uuid), bytes_of!(bb, uuid)),
        (
            "parent_uuid",
            off!(parent_uuid),
            bytes_of!(ab, parent_uuid),
            bytes_of!(bb, parent_uuid),
        ),
        (
            "reserved",
            off!(reserved),
            bytes_of!(ab, reserved),
            bytes_of!(bb, reserved),
        ),
        (
            "version",
            off!(version),
            bytes_of!(ab, version),
            bytes_of!(bb, version),
        ),
        (
            "sub_version",
            off!(sub_version),
            bytes_of!(ab, sub_version),
            bytes_of!(bb, sub_version),
        ),
        (
            "user_tag",
            off!(user_tag),
            bytes_of!(ab, user_tag),
            bytes_of!(bb, user_tag),
        ),
    ] {
        // UUIDs are compared as UUIDs: the case of their hex digits does
        // not matter to any reader.
        let same = if name.ends_with("uuid") {
            x.eq_ignore_ascii_case(y)
        } else {
            x == y
        };
        if !same {
            let show = |v: &[u8]| match name {
                "virtual_size" | "version" | "sub_version" => le(v).to_string(),
                _ => format!("{:?}", printable(v).trim_end_matches("\\x00")),
            };
            let i = x.iter().zip(y).position(|(p, q)| p != q).unwrap_or(0);
            sink.push(
                problem(
                    "lsmt.agreement",
                    format!(
                        "{}.{name} and {}.{name} differ (first at byte {i} of the field; {} at {:#x}, {} at {:#x})",
                        a.which,
                        b.which,
                        a.which,
                        a.at + (off + i) as u64,
                        b.which,
                        b.at + (off + i) as u64
                    ),
                )
                .field(name)
                .expected(
                    format!("{} ({})", show(x), a.which),
                    format!("{} ({})", show(y), b.which),
                ),
            );
        }
    }
}

/// Verifies an LSMT file on its own: a read-only layer, or one half of a
/// writable layer. Returns the kind and what the layer declares.
///
/// `block_size` is the ZFile block size when the file is inside a ZFile.
///
/// # Errors
/// I/O errors (and read errors of a damaged ZFile underneath).
pub(crate) fn check_file(
    view: &dyn ReadAt,
    block_size: Option<u64>,
    sink: &mut Sink,
) -> Result<(&'static str, Option<LayerInfo>)> {
    let ctx = Ctx { block_size };
    let len = view.len();
    let Some(header) = read_rec(view, 0, "header", &ctx, sink)? else {
        sink.push(ctx.at(problem("lsmt.truncated", "too short for an LSMT header"), 0));
        return Ok(("lsmt", None));
    };
    if !header.h.is_header() {
        sink.push(
            ctx.at(
                problem(
                    "lsmt.flags",
                    "the record at offset 0 is not a header (is-header flag clear)",
                ),
                28,
            )
            .field("header.flags")
            .expected(
                format!("{:#x}", header.h.flags | FLAG_HEADER),
                format!("{:#x}", header.h.flags),
            ),
        );
    }
    if !header.h.is_data() {
        check_rw_index(view, &header, None, &ctx, sink)?;
        sink.push(problem(
            "lsmt.rw.unpaired",
            "a writable layer's index file without its data file (none with its UUID next to it): the layer cannot be used; records were checked without it",
        ));
        return Ok((
            "lsmt_rw_index",
            Some(layer_info("lsmt_rw_index", &header, &header)),
        ));
    }
    let mut trailer_pos = len.saturating_sub(HEADER_SPACE);
    let mut trailer = None;
    if len >= 2 * HEADER_SPACE {
        let mut scratch = Sink::new("");
        trailer = read_rec(view, trailer_pos, "trailer", &ctx, &mut scratch)?
            .filter(|t| !t.h.is_header());
        if trailer.is_some() {
            // Re-read to report a damaged trailer magic.
            trailer = read_rec(view, trailer_pos, "trailer", &ctx, sink)?;
        }
    }
    if trailer.is_none() && header.h.is_sealed() {
        match find_trailer(view)? {
            Some(p) => {
                sink.push(
                    ctx.at(
                        problem(
                            "lsmt.trailer_position",
                            format!(
                                "no trailer at the end of the layer; one is at {p:#x}, followed by {} more bytes",
                                len - p - HEADER_SPACE
                            ),
                        ),
                        p + HEADER_SPACE,
                    )
                    .expected(format!("{} bytes", p + HEADER_SPACE), format!("{len} bytes")),
                );
                trailer_pos = p;
                trailer = read_rec(view, p, "trailer", &ctx, sink)?;
            }
            None => {
                sink.push(
                    ctx.at(
                        problem(
                            "lsmt.truncated",
                            "no trailer at the end of a committed layer (truncated?)",
                        ),
                        trailer_pos,
                    )
                    .field("trailer"),
                );
                check_common(&header, &ctx, sink);
                return Ok(("lsmt_ro", Some(layer_info("lsmt_ro", &header, &header))));
            }
        }
    }
    let Some(trailer) = trailer else {
        // A writable data file on its own.
        check_rw_data(view, &header, &ctx, sink);
        if header.h.is_sparse() {
            return Ok((
                "lsmt_rw_sparse",
                Some(layer_info("lsmt_rw_sparse", &header, &header)),
            ));
        }
        sink.push(problem(
            "lsmt.rw.unpaired",
            "a writable layer's data file without its index file (none with its UUID next to it), or a sealed layer that lost its trailer: the layer cannot be used",
        ));
        return Ok((
            "lsmt_rw_data",
            Some(layer_info("lsmt_rw_data", &header, &header)),
        ));
    };
    let kind = check_ro(view, &header, &trailer, trailer_pos, &ctx, sink)?;
    Ok((kind, Some(layer_info(kind, &trailer, &header))))
}

fn layer_info(kind: &'static str, auth: &Rec, data_header: &Rec) -> LayerInfo {
    LayerInfo {
        kind,
        uuid: auth.h.uuid.clone(),
        parent_uuid: data_header.h.parent_uuid.clone(),
        virtual_size: auth.h.virtual_size,
    }
}

/// Looks for a trailer before the end of the file (bytes appended).
fn find_trailer(view: &dyn ReadAt) -> Result<Option<u64>> {
    let len = view.len();
    let magic = lsmt_magic();
    let mut buf = [0u8; 32];
    let mut p = len.saturating_sub(HEADER_SPACE) / SECTOR_SIZE * SECTOR_SIZE;
    let lowest = len.saturating_sub(1 << 20).max(HEADER_SPACE);
    while p >= lowest && p > 0 {
        view.read_exact_at(&mut buf, p)?;
        if buf[..24] == magic && le(bytes_of!(buf, flags)) & u64::from(FLAG_HEADER) == 0 {
            return Ok(Some(p));
        }
        p -= SECTOR_SIZE;
    }
    Ok(None)
}

/// Checks a read-only layer; returns its kind.
fn check_ro(
    view: &dyn ReadAt,
    header: &Rec,
    trailer: &Rec,
    trailer_pos: u64,
    ctx: &Ctx,
    sink: &mut Sink,
) -> Result<&'static str> {
    let len = view.len();
    let committed = header.h.is_sealed();
    let kind = if committed { "lsmt_ro" } else { "lsmt_sealed" };
    if len % SECTOR_SIZE != 0 {
        sink.push(
            ctx.at(
                problem(
                    "lsmt.file_size",
                    "the layer is not a whole number of 512-byte sectors (truncated or extended?)",
                ),
                len,
            )
            .found(len),
        );
    }
    let sparse = header.h.is_sparse();
    if committed {
        check_flags(header, &[0x07], ctx, sink, "committed layer header");
    } else {
        check_flags(
            header,
            &[0x03, 0x13],
            ctx,
            sink,
            "sealed-in-place layer header",
        );
    }
    let want_t = if !committed && sparse { 0x16 } else { 0x06 };
    check_flags(trailer, &[want_t], ctx, sink, "read-only layer trailer");
    check_zero_index_fields(header, ctx, sink);
    check_common(header, ctx, sink);
    check_common(trailer, ctx, sink);
    check_agreement(header, trailer, sink);
    check_vsize(trailer, false, ctx, sink);
    let vsize = trailer.h.virtual_size;
    let n = trailer.h.index_size;
    let io = trailer.h.index_offset;
    if n > MAX_RO_INDEX_ENTRIES {
        sink.push(
            ctx.at(
                problem(
                    "lsmt.index_size",
                    "more index entries than the reference reader accepts",
                ),
                trailer.at + off!(index_size) as u64,
            )
            .field(trailer.field("index_size"))
            .expected(format!("<= {MAX_RO_INDEX_ENTRIES}"), n),
        );
    }
    if io % SECTOR_SIZE != 0 || io < HEADER_SPACE {
        sink.push(
            ctx.at(
                problem(
                    "lsmt.index_offset",
                    "the index offset is not a sector boundary after the header",
                ),
                trailer.at + off!(index_offset) as u64,
            )
            .field(trailer.field("index_offset"))
            .expected(">= 4096, a multiple of 512", io),
        );
    }
    let end = n.checked_mul(SEGMENT_SIZE).and_then(|b| b.checked_add(io));
    let Some(end) = end.filter(|&e| io >= HEADER_SPACE && e <= trailer_pos) else {
        sink.push(
            ctx.at(
                problem(
                    "lsmt.trailer_position",
                    format!("an index of {n} entries at {io:#x} does not fit between the header and the trailer at {trailer_pos:#x}"),
                ),
                trailer.at + off!(index_offset) as u64,
            )
            .field(trailer.field("index_offset")),
        );
        return Ok(kind);
    };
    let want_end = if committed {
        end
    } else {
        end.div_ceil(SECTOR_SIZE) * SECTOR_SIZE
    };
    if want_end != trailer_pos {
        sink.push(
            ctx.at(
                problem(
                    "lsmt.trailer_position",
                    if committed {
                        "the trailer does not follow the index directly (index_offset or index_size is wrong)"
                    } else {
                        "the trailer does not follow the index and its padding to 512 bytes (index_offset or index_size is wrong)"
                    },
                ),
                trailer.at + off!(index_offset) as u64,
            )
            .field(trailer.field("index_offset"))
            .expected(format!("trailer at {want_end:#x}"), format!("trailer at {trailer_pos:#x}")),
        );
    }
    if n > MAX_INDEX_READ {
        sink.note("the index is too large to check");
        return Ok(kind);
    }
    let mut raw = vec![0u8; (n * SEGMENT_SIZE) as usize];
    view.read_exact_at(&mut raw, io)?;
    let data_end = io / SECTOR_SIZE;
    let entry_at = |i: usize| io + i as u64 * SEGMENT_SIZE;
    let (reals, tagged, max_tag) = check_ro_entries(&raw, io, committed, vsize, ctx, sink);
    if committed {
        let want = (reals.len() as u64).div_ceil(256) * 256;
        if n != want {
            sink.push(
                ctx.at(
                    problem(
                        "lsmt.index_size",
                        format!(
                            "{} real entries are padded to {want} in a committed layer, but the index has {n} entries",
                            reals.len()
                        ),
                    ),
                    trailer.at + off!(index_size) as u64,
                )
                .field(trailer.field("index_size"))
                .expected(want, n),
            );
        }
        check_contiguity(&reals, data_end, &entry_at, ctx, sink);
    } else {
        check_physical_overlap(&reals, &entry_at, ctx, sink);
    }
    if tagged > 0 {
        sink.note(format!(
            "{tagged} index entries carry tags up to {max_tag} (overlaybd-merge records source layers there; readers ignore tags)"
        ));
    }
    Ok(kind)
}

/// Checks every entry of a read-only index (`raw`, at `io`): padding only
/// at the end of a committed index and well-formed, each real entry on its
/// own and against the one before. Returns the real entries with their
/// numbers, and how many carry tags (and the largest).
fn check_ro_entries(
    raw: &[u8],
    io: u64,
    committed: bool,
    vsize: u64,
    ctx: &Ctx,
    sink: &mut Sink,
) -> (Vec<(usize, Segment)>, u64, u8) {
    let data_end = io / SECTOR_SIZE;
    let entry_at = |i: usize| io + i as u64 * SEGMENT_SIZE;
    let mut reals: Vec<(usize, Segment)> = Vec::new();
    let mut first_padding: Option<usize> = None;
    let mut after_padding_reported = false;
    let mut prev: Option<(usize, Segment)> = None;
    let (mut tagged, mut max_tag) = (0u64, 0u8);
    for (i, e) in raw.chunks_exact(SEGMENT_SIZE as usize).enumerate() {
        let Ok(rs) = RawSegment::read_from_bytes(e) else {
            continue;
        };
        let s = Segment::decode(&rs);
        let at = entry_at(i);
        if s.is_padding() {
            if rs != PADDING {
                let b = e
                    .iter()
                    .zip(PADDING.as_bytes())
                    .position(|(x, y)| x != y)
                    .unwrap_or(0);
                sink.push(
                    ctx.at(
                        problem(
                            "lsmt.index.padding",
                            "malformed padding entry: offset 2^50-1 must come with length, moffset, flags and tag all 0",
                        ),
                        at + b as u64,
                    )
                    .entry(i as u64)
                    .expected(hex(PADDING.as_bytes()), hex(e)),
                );
            }
            if !committed {
                sink.push(
                    ctx.at(
                        problem(
                            "lsmt.index.padding",
                            "padding entry inside a sealed-in-place index (its index_size counts only real entries)",
                        ),
                        at,
                    )
                    .entry(i as u64),
                );
            }
            first_padding.get_or_insert(i);
            continue;
        }
        if let (Some(fp), true, false) = (first_padding, committed, after_padding_reported) {
            after_padding_reported = true;
            sink.push(
                ctx.at(
                    problem(
                        "lsmt.index.padding",
                        format!("real entry after the padding that starts at entry {fp} (padding only ends a committed index)"),
                    ),
                    at,
                )
                .entry(i as u64),
            );
        }
        check_entry(i, &s, at, data_end, vsize, prev.as_ref(), ctx, sink);
        if rs.hi.get() >> 56 != 0 {
            tagged += 1;
            max_tag = max_tag.max((rs.hi.get() >> 56) as u8);
        }
        prev = Some((i, s));
        reals.push((i, s));
    }
    (reals, tagged, max_tag)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Checks one real entry: non-empty, inside the data section, after the
/// previous entry, inside the virtual disk.
#[allow(clippy::too_many_arguments)]
fn check_entry(
    i: usize,
    s: &Segment,
    at: u64,
    data_end: u64,
    vsize: u64,
    prev: Option<&(usize, Segment)>,
    ctx: &Ctx,
    sink: &mut Sink,
) {
    if s.length == 0 {
        sink.push(
            ctx.at(problem("lsmt.index.empty", "zero-length entry"), at)
                .entry(i as u64)
                .field("length")
                .expected("> 0", 0),
        );
    }
    if let Err(e) = index::check_physical(s, data_end, "lsmt index", at, i) {
        let detail = match e {
            Error::Corrupt { detail, .. } => detail,
            e => e.to_string(),
        };
        sink.push(
            ctx.at(problem("lsmt.index.range", detail), at + 8)
                .entry(i as u64)
                .field("moffset"),
        );
    }
    if let Some((pi, p)) = prev {
        if p.end() > s.offset {
            sink.push(
                ctx.at(
                    problem(
                        "lsmt.index.order",
                        format!(
                            "the entries overlap or are out of order (lba {}+{} then {})",
                            p.offset, p.length, s.offset
                        ),
                    ),
                    at,
                )
                .entry(i as u64)
                .other(*pi as u64)
                .field("offset")
                .expected(format!(">= {}", p.end()), s.offset),
            );
        }
    }
    // A zero virtual size is reported on its own and bounds nothing.
    if vsize > 0 && s.end().saturating_mul(SECTOR_SIZE) > vsize {
        sink.push(
            ctx.at(
                problem(
                    "lsmt.index.beyond_virtual_size",
                    format!(
                        "maps sectors {}..{} past the virtual disk ({} sectors)",
                        s.offset,
                        s.end(),
                        vsize / SECTOR_SIZE
                    ),
                ),
                at,
            )
            .entry(i as u64)
            .field("offset"),
        );
    }
}

/// A committed layer is written by compaction (§3.9): its data entries'
/// moffsets continue each other in LBA order from sector 8 to the index,
/// and zeroed entries carry the moffset reached so far.
fn check_contiguity(
    reals: &[(usize, Segment)],
    data_end: u64,
    entry_at: &dyn Fn(usize) -> u64,
    ctx: &Ctx,
    sink: &mut Sink,
) {
    let adv = |s: &Segment| if s.zeroed { 0 } else { s.length as u64 };
    // Entry `i`'s moffset is `got` where the data so far says `want`.
    let moffset_off = |i: usize, want: u64, got: u64| {
        ctx.at(
            problem(
                "lsmt.index.contiguity",
                "the entry's data does not continue the previous entries' (committed layers store data contiguously in LBA order)",
            ),
            entry_at(i) + 8,
        )
        .entry(i as u64)
        .field("moffset")
        .expected(want, got)
    };
    let mut pos = DATA_START_SECTORS;
    let mut reported = false;
    for k in 0..reals.len() {
        let (i, s) = reals[k];
        if s.moffset == pos {
            pos += adv(&s);
            continue;
        }
        reported = true;
        let fits_next = |m: u64| match reals.get(k + 1) {
            Some((_, n)) => n.moffset == m,
            None => m == data_end,
        };
        if fits_next(pos + adv(&s)) {
            // Only this entry's moffset is off.
            sink.push(moffset_off(i, pos, s.moffset));
            pos += adv(&s);
        } else if k > 0 && fits_next(s.moffset + adv(&s)) {
            // This entry agrees with what follows: the one before ends wrong.
            let (pi, p) = reals[k - 1];
            sink.push(
                ctx.at(
                    problem(
                        "lsmt.index.contiguity",
                        format!("entry {pi} does not end where entry {i}'s data starts: its length or zeroed flag is damaged"),
                    ),
                    entry_at(pi),
                )
                .entry(pi as u64)
                .field("length")
                .expected(
                    format!("data up to sector {}", s.moffset),
                    format!("{} {} sectors from {}", if p.zeroed { "zeroed" } else { "data" }, p.length, p.moffset),
                ),
            );
            pos = s.moffset + adv(&s);
        } else {
            sink.push(moffset_off(i, pos, s.moffset));
            pos = s.moffset + adv(&s);
        }
    }
    if pos != data_end && !reported {
        let last = reals.iter().rev().find(|(_, s)| !s.zeroed).or(reals.last());
        let mut p = problem(
            "lsmt.index.contiguity",
            format!(
                "the index maps data up to sector {pos}, but the data section ends at sector {data_end}"
            ),
        )
        .expected(data_end, pos);
        if let Some((i, _)) = last {
            p = ctx.at(p, entry_at(*i)).entry(*i as u64).field("length");
        }
        sink.push(p);
    }
}

/// No two data entries may share data sectors.
fn check_physical_overlap(
    reals: &[(usize, Segment)],
    entry_at: &dyn Fn(usize) -> u64,
    ctx: &Ctx,
    sink: &mut Sink,
) {
    let mut d: Vec<(u64, u64, usize)> = reals
        .iter()
        .filter(|(_, s)| !s.zeroed && s.length > 0)
        .map(|(i, s)| (s.moffset, s.mend(), *i))
        .collect();
    d.sort_unstable();
    for w in d.windows(2) {
        if w[0].1 > w[1].0 {
            let (a, b) = (w[0].2.min(w[1].2), w[0].2.max(w[1].2));
            sink.push(
                ctx.at(
                    problem(
                        "lsmt.index.physical_overlap",
                        format!(
                            "the entries map the same data sectors {}..{}",
                            w[1].0,
                            w[0].1.min(w[1].1)
                        ),
                    ),
                    entry_at(b) + 8,
                )
                .entry(b as u64)
                .other(a as u64)
                .field("moffset"),
            );
        }
    }
}

/// Checks a writable data file's header and size.
fn check_rw_data(view: &dyn ReadAt, h: &Rec, ctx: &Ctx, sink: &mut Sink) {
    check_flags(h, &[0x03, 0x13], ctx, sink, "writable data file header");
    check_zero_index_fields(h, ctx, sink);
    check_common(h, ctx, sink);
    check_vsize(h, true, ctx, sink);
    let len = view.len();
    if len < HEADER_SPACE {
        sink.push(
            ctx.at(
                problem(
                    "lsmt.truncated",
                    "the data file is shorter than its 4096-byte header",
                ),
                len,
            )
            .expected(">= 4096 bytes", len),
        );
    } else if len % SECTOR_SIZE != 0 {
        sink.push(
            ctx.at(
                problem(
                    "lsmt.file_size",
                    "the data file is not a whole number of 512-byte sectors (every write appends whole sectors)",
                ),
                len,
            )
            .found(len),
        );
    }
    if h.h.is_sparse() && len != h.h.virtual_size.saturating_add(HEADER_SPACE) {
        sink.push(
            ctx.at(
                problem(
                    "lsmt.file_size",
                    "a sparse data file is the virtual size plus its 4096-byte header",
                ),
                len,
            )
            .expected(h.h.virtual_size.saturating_add(HEADER_SPACE), len),
        );
    }
}

/// Checks a writable index file: its header, and its records against the
/// data file (`data`: its header and size) when there is one.
fn check_rw_index(
    view: &dyn ReadAt,
    ih: &Rec,
    data: Option<(&Rec, u64)>,
    ctx: &Ctx,
    sink: &mut Sink,
) -> Result<Coverage> {
    check_flags(ih, &[0x01], ctx, sink, "writable index file header");
    if ih.h.index_offset != HEADER_SPACE {
        sink.push(
            ctx.at(
                problem(
                    "lsmt.field",
                    "the index file's header says the records start at 4096",
                ),
                ih.at + 32,
            )
            .field(ih.field("index_offset"))
            .expected(HEADER_SPACE, ih.h.index_offset),
        );
    }
    if ih.h.index_size != 0 {
        sink.push(
            ctx.at(
                problem("lsmt.field", "the index file's header has index_size 0"),
                ih.at + 40,
            )
            .field(ih.field("index_size"))
            .expected(0, ih.h.index_size),
        );
    }
    check_common(ih, ctx, sink);
    check_vsize(ih, true, ctx, sink);
    let len = view.len();
    if len < HEADER_SPACE {
        sink.push(
            ctx.at(
                problem(
                    "lsmt.truncated",
                    "the index file is shorter than its 4096-byte header",
                ),
                len,
            )
            .expected(">= 4096 bytes", len),
        );
    }
    let body = len.saturating_sub(HEADER_SPACE);
    let n = body / SEGMENT_SIZE;
    if body % SEGMENT_SIZE != 0 {
        sink.push(
            ctx.at(
                problem(
                    "lsmt.rw.partial_record",
                    format!(
                        "the index file ends with {} bytes of a partial record (an interrupted append; readers ignore it)",
                        body % SEGMENT_SIZE
                    ),
                ),
                HEADER_SPACE + n * SEGMENT_SIZE,
            )
            .entry(n),
        );
    }
    if n > MAX_INDEX_ENTRIES {
        sink.push(
            ctx.at(
                problem(
                    "lsmt.index_size",
                    "more records than a writable layer may have",
                ),
                HEADER_SPACE,
            )
            .expected(format!("<= {MAX_INDEX_ENTRIES}"), n),
        );
        return Ok(Coverage::default());
    }
    let (data_end, vsize) = match data {
        Some((_, dlen)) => (dlen / SECTOR_SIZE, ih.h.virtual_size),
        None => (u64::MAX / 2, ih.h.virtual_size),
    };
    let mut ranges: Vec<(usize, Segment)> = Vec::new();
    let mut buf = vec![0u8; (n.min(1 << 16) * SEGMENT_SIZE) as usize];
    let mut done = 0u64;
    while done < n {
        let k = (n - done).min(1 << 16);
        let chunk = &mut buf[..(k * SEGMENT_SIZE) as usize];
        view.read_exact_at(chunk, HEADER_SPACE + done * SEGMENT_SIZE)?;
        for (j, e) in chunk.chunks_exact(SEGMENT_SIZE as usize).enumerate() {
            let i = (done + j as u64) as usize;
            let at = HEADER_SPACE + i as u64 * SEGMENT_SIZE;
            let Ok(rs) = RawSegment::read_from_bytes(e) else {
                continue;
            };
            let s = Segment::decode(&rs);
            if s.is_padding() {
                if rs != PADDING {
                    sink.push(
                        ctx.at(
                            problem("lsmt.index.padding", "malformed padding record"),
                            at,
                        )
                        .entry(i as u64)
                        .expected(hex(PADDING.as_bytes()), hex(e)),
                    );
                }
                continue;
            }
            // Records are a log: order and overlap in LBA are expected.
            check_entry(i, &s, at, data_end, vsize, None, ctx, sink);
            if !s.zeroed && s.length > 0 && ranges.len() < (16 << 20) {
                ranges.push((i, s));
            }
        }
        done += k;
    }
    let entry_at = |i: usize| HEADER_SPACE + i as u64 * SEGMENT_SIZE;
    check_physical_overlap(&ranges, &entry_at, ctx, sink);
    let mut cov = Coverage::default();
    if let Some((_, dlen)) = data {
        // Every write appends its data and then one record: the records
        // cover the data file. A gap means lost records.
        let mut d: Vec<(u64, u64)> = ranges.iter().map(|(_, s)| (s.moffset, s.mend())).collect();
        d.sort_unstable();
        let end = dlen / SECTOR_SIZE;
        let mut pos = DATA_START_SECTORS;
        for (a, b) in d {
            if a > pos && cov.first_gap.is_none() {
                cov.first_gap = Some((pos, a));
            }
            pos = pos.max(b);
        }
        cov.tail = end.saturating_sub(pos);
    }
    Ok(cov)
}

/// What the records of a writable index leave unreferenced in the data file.
#[derive(Default)]
struct Coverage {
    /// The first gap `[a, b)` (sectors) between referenced data.
    first_gap: Option<(u64, u64)>,
    /// Sectors after the last referenced one.
    tail: u64,
}

/// Verifies a writable layer: data file and index file together.
///
/// # Errors
/// I/O errors.
pub(crate) fn check_pair(
    data: &dyn ReadAt,
    index: &dyn ReadAt,
    index_name: &str,
    sink: &mut Sink,
) -> Result<LayerInfo> {
    let ctx = Ctx { block_size: None };
    let data_name = sink_file(sink);
    let Some(dh) = read_rec(data, 0, "header", &ctx, sink)? else {
        sink.push(problem("lsmt.magic", "the data file is not an LSMT file").at(0));
        return Ok(LayerInfo {
            kind: "lsmt_rw",
            uuid: String::new(),
            parent_uuid: String::new(),
            virtual_size: 0,
        });
    };
    check_rw_data(data, &dh, &ctx, sink);
    let dlen = data.len();
    if dlen >= 2 * HEADER_SPACE {
        let mut scratch = Sink::new("");
        if read_rec(data, dlen - HEADER_SPACE, "trailer", &ctx, &mut scratch)?
            .is_some_and(|t| !t.h.is_header())
        {
            sink.push(
                problem(
                    "lsmt.flags",
                    "the data file has a trailer: it was sealed, and its index file is no longer used",
                )
                .at(dlen - HEADER_SPACE),
            );
        }
    }
    if dh.h.is_sparse() {
        if !index.is_empty() {
            sink.note("sparse writable layer: the index file is not used (it is normally empty)");
        }
        return Ok(layer_info("lsmt_rw_sparse", &dh, &dh));
    }
    sink.set_file(index_name);
    let Some(ih) = read_rec(index, 0, "index_header", &ctx, sink)? else {
        sink.push(problem("lsmt.magic", "the index file is not an LSMT file").at(0));
        sink.set_file(&data_name);
        return Ok(layer_info("lsmt_rw", &dh, &dh));
    };
    let cov = check_rw_index(index, &ih, Some((&dh, dlen)), &ctx, sink)?;
    sink.set_file(&data_name);
    check_agreement(&dh, &ih, sink);
    if let Some((a, b)) = cov.first_gap {
        sink.push(
            problem(
                "lsmt.rw.unreferenced",
                format!(
                    "{} sectors of the data file from sector {a} are not referenced by any index record (lost records?)",
                    b - a
                ),
            )
            .at(a * SECTOR_SIZE)
            .expected(format!("a record for sector {a}"), "none"),
        );
    }
    // A write is appended in pieces of at most 4 MiB, each data then record
    // (§3.7): a crash leaves at most one piece without its record.
    const MAX_PIECE_SECTORS: u64 = 8192;
    if cov.tail > MAX_PIECE_SECTORS {
        let from = dlen / SECTOR_SIZE - cov.tail;
        sink.push(
            problem(
                "lsmt.rw.unreferenced",
                format!(
                    "the last {} sectors of the data file are not referenced by any index record: more than one interrupted 4 MiB write leaves (lost records?)",
                    cov.tail
                ),
            )
            .at(from * SECTOR_SIZE)
            .expected(format!("at most {MAX_PIECE_SECTORS} sectors"), cov.tail),
        );
    } else if cov.tail > 0 {
        sink.note(format!(
            "the last {} sectors of the data file are not referenced by any record (a write interrupted before its record was appended?)",
            cov.tail
        ));
    }
    Ok(layer_info("lsmt_rw", &ih, &dh))
}

fn sink_file(sink: &Sink) -> String {
    sink.file().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::lsmt::writer::{LayerMeta, Writer};
    use crate::format::uuid::Uuid;

    /// A committed layer: 8 sectors at LBA 0, zeroed 100..120, 16 sectors at
    /// LBA 200. Returns the bytes and the index offset.
    fn layer() -> (Vec<u8>, u64) {
        let meta = LayerMeta {
            virtual_size: 1 << 20,
            uuid: Uuid::parse("12345678-1234-1234-1234-123456789ABC").unwrap(),
            parent_uuid: Uuid::null(),
            user_tag: b"unit".to_vec(),
        };
        let mut w = Writer::new(Vec::new(), meta).unwrap();
        w.push_data(0, &[1u8; 4096], 0).unwrap();
        w.push_zeroed(100, 20, 0).unwrap();
        w.push_data(200, &[2u8; 8192], 0).unwrap();
        let (b, _) = w.finish().unwrap();
        let io = u64::from_le_bytes(b[b.len() - 4096 + 32..][..8].try_into().unwrap());
        (b, io)
    }

    fn check(b: &[u8]) -> (&'static str, Vec<Problem>) {
        let mut sink = Sink::new("t");
        let (kind, _) = check_file(&b.to_vec(), None, &mut sink).unwrap();
        (kind, sink.problems)
    }

    fn set_entry(b: &mut [u8], io: u64, k: usize, s: Segment) {
        let raw = s.encode().unwrap();
        b[(io as usize + 16 * k)..][..16].copy_from_slice(raw.as_bytes());
    }

    #[test]
    fn clean_committed_layer() {
        let (b, _) = layer();
        let (kind, p) = check(&b);
        assert_eq!(kind, "lsmt_ro");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(field_at(56), "uuid");
        assert_eq!(field_at(4000), "unused");
    }

    #[test]
    fn index_invariants() {
        let (b0, io) = layer();
        let seg = |offset, length, moffset, zeroed| Segment {
            offset,
            length,
            moffset,
            zeroed,
            tag: 0,
        };
        // Zero-length entry (and the contiguity it breaks).
        let mut b = b0.clone();
        set_entry(&mut b, io, 0, seg(0, 0, 8, false));
        let (_, p) = check(&b);
        assert!(
            p.iter()
                .any(|q| q.check == "lsmt.index.empty" && q.entry == Some(0)),
            "{p:?}"
        );
        // Out of order: entry 2 moves below entry 1.
        let mut b = b0.clone();
        set_entry(&mut b, io, 2, seg(110, 16, 16, false));
        let (_, p) = check(&b);
        let q = p.iter().find(|q| q.check == "lsmt.index.order").unwrap();
        assert_eq!((q.entry, q.other_entry), (Some(2), Some(1)));
        // Past the virtual disk (2048 sectors).
        let mut b = b0.clone();
        set_entry(&mut b, io, 2, seg(2040, 16, 16, false));
        let (_, p) = check(&b);
        assert!(
            p.iter()
                .any(|q| q.check == "lsmt.index.beyond_virtual_size"),
            "{p:?}"
        );
        // Data outside the data section.
        let mut b = b0.clone();
        set_entry(&mut b, io, 2, seg(200, 16, 60, false));
        let (_, p) = check(&b);
        assert!(
            p.iter()
                .any(|q| q.check == "lsmt.index.range" && q.entry == Some(2)),
            "{p:?}"
        );
        // A malformed padding entry.
        let mut b = b0.clone();
        b[io as usize + 16 * 5 + 9] = 1;
        let (_, p) = check(&b);
        assert!(
            p.iter()
                .any(|q| q.check == "lsmt.index.padding" && q.entry == Some(5)),
            "{p:?}"
        );
    }

    #[test]
    fn records_and_placement() {
        let (b0, io) = layer();
        let t = b0.len() - 4096;
        // Virtual size 0 in both records.
        let mut b = b0.clone();
        b[48..56].fill(0);
        b[t + 48..t + 56].fill(0);
        let (_, p) = check(&b);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].check, "lsmt.virtual_size");
        assert_eq!(p[0].field.as_deref(), Some("trailer.virtual_size"));
        // A lowercase UUID in the header only: the same UUID, which the
        // reference parses in either case.
        let mut b = b0.clone();
        b[56 + 35] = b'c';
        let (_, p) = check(&b);
        assert!(p.is_empty(), "{p:?}");
        // A UUID that differs: the agreement.
        b[56 + 35] = b'7';
        let (_, p) = check(&b);
        assert!(p
            .iter()
            .any(|q| q.check == "lsmt.agreement" && q.field.as_deref() == Some("uuid")));
        // Not hex: the format.
        b[56 + 35] = b'g';
        let (_, p) = check(&b);
        assert!(
            p.iter()
                .any(|q| q.check == "lsmt.uuid" && q.offset == Some(56 + 35)),
            "{p:?}"
        );
        // The index moved: the trailer no longer follows it.
        let mut b = b0.clone();
        b[t + 32..t + 40].copy_from_slice(&(io - 512).to_le_bytes());
        let (_, p) = check(&b);
        assert!(
            p.iter().any(|q| q.check == "lsmt.trailer_position"),
            "{p:?}"
        );
        // Bytes appended: the trailer is found earlier and the extra named.
        let mut b = b0.clone();
        b.extend_from_slice(&[0u8; 512]);
        let (_, p) = check(&b);
        assert!(
            p.iter().any(|q| q.check == "lsmt.trailer_position"),
            "{p:?}"
        );
        // A writable data file alone is not a usable layer.
        let mut b = b0[..4096].to_vec();
        b[28] = 0x03;
        b.extend_from_slice(&[7u8; 4096]);
        let (kind, p) = check(&b);
        assert_eq!(kind, "lsmt_rw_data");
        assert!(p.iter().any(|q| q.check == "lsmt.rw.unpaired"), "{p:?}");
    }
}
