//! Checks of the one-member tar wrapper (§6.1, §6.2).
//!
//! Every header block is checked (magic, version, checksum); a damaged one
//! is repaired in a copy so that the archive can still be parsed — by the
//! same code as the reader, [`crate::format::tar::detect`] — and the layer
//! inside still checked. After the member: zero padding to 512 bytes, then
//! at least two zero blocks and nothing else.

use tar::{EntryType, Header};

use super::walk::{bit_distance, classify_magic, Magic};
use super::{Container, Problem, Sink};
use crate::error::{Error, Result};
use core::mem::offset_of;

use crate::format::tar::{self as ftar, Payload, RawUstarHeader, BLOCK};
use crate::io::{check_range, ReadAt};

/// A ustar header's `magic` and `version`: `ustar\0` and `00`.
const USTAR: &[u8; 8] = b"ustar\x0000";
/// The same bytes in a GNU header, which the reference does not accept.
const GNU: &[u8; 8] = b"ustar  \0";
/// Extension headers (PAX, GNU long names) before the member, at most.
const MAX_HEADERS: usize = 16;
/// Largest extension-header payload accepted.
const MAX_EXTENSION: u64 = 1 << 20;

/// True when block 0 is a tar header, or one damaged in a few bits, or a
/// GNU header (all of which verify must look at as tar).
///
/// # Errors
/// I/O errors.
pub(crate) fn is_tarish(r: &dyn ReadAt) -> Result<bool> {
    if r.len() < BLOCK {
        return Ok(false);
    }
    let mut b = [0u8; BLOCK as usize];
    r.read_exact_at(&mut b, 0)?;
    if ftar::looks_like_tar(&b) {
        return Ok(true);
    }
    Ok(classify_magic(&b) == Magic::None
        && (bit_distance(&b[ftar::magic_range()], USTAR) <= 2 || &b[ftar::magic_range()] == GNU))
}

fn printable(b: &[u8]) -> String {
    b.iter()
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect()
}

fn block_name(t: EntryType) -> &'static str {
    match t {
        EntryType::XHeader => "pax header",
        EntryType::XGlobalHeader => "global pax header",
        EntryType::GNULongName => "gnu long-name header",
        EntryType::GNULongLink => "gnu long-link header",
        _ => "member header",
    }
}

/// First non-zero byte in `[from, to)`.
pub(crate) fn first_nonzero(r: &dyn ReadAt, from: u64, to: u64) -> Result<Option<u64>> {
    let mut buf = vec![0u8; (to.saturating_sub(from)).min(1 << 20) as usize];
    let mut pos = from;
    while pos < to {
        let n = ((to - pos) as usize).min(buf.len());
        r.read_exact_at(&mut buf[..n], pos)?;
        if let Some(i) = buf[..n].iter().position(|&x| x != 0) {
            return Ok(Some(pos + i as u64));
        }
        pos += n as u64;
    }
    Ok(None)
}

/// A view with some 512-byte blocks replaced (repaired headers).
struct Patched<'a> {
    inner: &'a dyn ReadAt,
    blocks: Vec<(u64, [u8; 512])>,
}

impl ReadAt for Patched<'_> {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range("tar", offset, buf.len(), self.len())?;
        self.inner.read_exact_at(buf, offset)?;
        let end = offset + buf.len() as u64;
        for (at, b) in &self.blocks {
            let (s, e) = (offset.max(*at), end.min(at + BLOCK));
            if s < e {
                buf[(s - offset) as usize..(e - offset) as usize]
                    .copy_from_slice(&b[(s - at) as usize..(e - at) as usize]);
            }
        }
        Ok(())
    }
}

fn problem(check: &'static str, message: impl Into<String>) -> Problem {
    Problem::new(Container::Tar, check, message)
}

/// Checks the tar wrapper of `file` and returns where its member is.
///
/// `None` when the archive is too damaged to find the member.
///
/// # Errors
/// I/O errors.
pub(crate) fn check(file: &dyn ReadAt, sink: &mut Sink) -> Result<Option<Payload>> {
    let Some((patched, pax)) = check_headers(file, sink)? else {
        return Ok(None);
    };
    let Some(p) = locate_member(file, patched, sink)? else {
        return Ok(None);
    };
    let reference_offset = if pax { 3 * BLOCK } else { BLOCK };
    if p.offset != reference_offset {
        sink.push(
            problem(
                "tar.layout",
                "the member's data is not where the reference reader looks for it",
            )
            .at(p.offset)
            .expected(reference_offset, p.offset),
        );
    }
    if p.member != ftar::MEMBER_NAME {
        sink.note(format!(
            "the tar member is named {:?} (overlaybd writes \"{}\")",
            p.member,
            ftar::MEMBER_NAME
        ));
    }
    check_tail(file, &p, sink)?;
    Ok(Some(p))
}

/// Header blocks repaired in copies: `(offset, block)`.
type Repairs = Vec<(u64, [u8; 512])>;

/// What one header block leads to.
enum Next {
    /// An extension header (PAX, GNU long name) whose data ends at this offset.
    Extension { next: u64, pax: bool },
    /// The member's own header.
    Member,
    /// Too damaged to go on (the problem is in the sink).
    Stop,
}

/// Checks the header blocks up to the member's, repairing damaged ones in
/// copies. Returns the repaired blocks and whether a PAX header was seen,
/// or `None` when the member cannot be reached.
fn check_headers(file: &dyn ReadAt, sink: &mut Sink) -> Result<Option<(Repairs, bool)>> {
    let len = file.len();
    let mut patched: Vec<(u64, [u8; 512])> = Vec::new();
    let mut pos = 0u64;
    let mut pax = false;
    for _ in 0..MAX_HEADERS {
        if pos + BLOCK > len {
            sink.push(
                problem(
                    "tar.truncated",
                    "the file ends inside the tar headers (truncated?)",
                )
                .at(pos)
                .expected(
                    format!("a header block at {pos:#x}"),
                    format!("{len} bytes"),
                ),
            );
            return Ok(None);
        }
        let mut b = [0u8; 512];
        file.read_exact_at(&mut b, pos)?;
        if b.iter().all(|&x| x == 0) {
            sink.push(
                problem(
                    "tar.header",
                    "an end-of-archive zero block comes before the member",
                )
                .at(pos),
            );
            return Ok(None);
        }
        let fixed = check_block(&b, pos, sink);
        if fixed != b {
            patched.push((pos, fixed));
        }
        match next_header(file, &b, &fixed, pos, sink)? {
            Next::Extension { next, pax: p } => {
                pax |= p;
                pos = next;
            }
            Next::Member => return Ok(Some((patched, pax))),
            Next::Stop => return Ok(None),
        }
    }
    sink.push(
        problem(
            "tar.header",
            format!("more than {MAX_HEADERS} extension headers before the member"),
        )
        .at(pos),
    );
    Ok(None)
}

/// Checks one header block's magic, version and checksum; returns the block
/// repaired (ustar magic, right checksum).
fn check_block(b: &[u8; 512], pos: u64, sink: &mut Sink) -> [u8; 512] {
    let magic_at = ftar::magic_range();
    let ck = ftar::chksum_range();
    let mut fixed = *b;
    let magic = &b[magic_at.clone()];
    let kind = block_name(Header::from_byte_slice(b).entry_type());
    if magic == GNU {
        sink.push(
            problem(
                "tar.gnu",
                format!(
                    "{kind}: GNU tar format; the reference reader does not recognise it as tar"
                ),
            )
            .at(pos + magic_at.start as u64)
            .field("magic")
            .expected(printable(USTAR), printable(magic)),
        );
        fixed[magic_at.clone()].copy_from_slice(USTAR);
    } else if magic != USTAR {
        let i = magic
            .iter()
            .zip(USTAR)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        let version_at = magic_at.start + offset_of!(RawUstarHeader, version)
            - offset_of!(RawUstarHeader, magic);
        sink.push(
            problem("tar.magic", format!("{kind}: bad ustar magic or version"))
                .at(pos + (magic_at.start + i) as u64)
                .field(if magic_at.start + i < version_at {
                    "magic"
                } else {
                    "version"
                })
                .expected(printable(USTAR), printable(magic)),
        );
        fixed[magic_at].copy_from_slice(USTAR);
    }
    let (unsigned, signed) = ftar::header_sums(b);
    match Header::from_byte_slice(b).cksum() {
        Err(_) => sink.push(
            problem(
                "tar.checksum",
                format!("{kind}: the checksum field is not an octal number"),
            )
            .at(pos + ck.start as u64)
            .field("chksum")
            .expected(format!("{unsigned:o}"), printable(&b[ck])),
        ),
        Ok(c) if c as u64 != unsigned && c as i64 != signed => sink.push(
            problem(
                "tar.checksum",
                format!("{kind}: header checksum mismatch: the 512-byte header block is damaged"),
            )
            .at(pos)
            .field("chksum")
            .expected(unsigned, c),
        ),
        Ok(_) => {}
    }
    let mut h = Header::from_byte_slice(&fixed).clone();
    h.set_cksum();
    *h.as_bytes()
}

/// Where the header block at `pos` (as stored: `b`; repaired: `fixed`) leads.
fn next_header(
    file: &dyn ReadAt,
    b: &[u8; 512],
    fixed: &[u8; 512],
    pos: u64,
    sink: &mut Sink,
) -> Result<Next> {
    let h = Header::from_byte_slice(fixed);
    let kind = block_name(h.entry_type());
    let t = h.entry_type();
    match t {
        EntryType::XHeader
        | EntryType::XGlobalHeader
        | EntryType::GNULongName
        | EntryType::GNULongLink => {
            let size = match h.entry_size() {
                Ok(s) if s <= MAX_EXTENSION => s,
                _ => {
                    let size_at = offset_of!(RawUstarHeader, size);
                    sink.push(
                        problem("tar.header", format!("{kind}: unusable size field"))
                            .at(pos + size_at as u64)
                            .field("size")
                            .found(printable(&b[size_at..size_at + 12])),
                    );
                    return Ok(Next::Stop);
                }
            };
            let data_end = pos + BLOCK + size;
            let padded = data_end.div_ceil(BLOCK) * BLOCK;
            if padded > file.len() {
                sink.push(
                    problem(
                        "tar.truncated",
                        format!("the file ends inside the {kind}'s data"),
                    )
                    .at(pos),
                );
                return Ok(Next::Stop);
            }
            if let Some(at) = first_nonzero(file, data_end, padded)? {
                sink.push(
                    problem(
                        "tar.padding",
                        format!("non-zero byte in the padding after the {kind}'s records"),
                    )
                    .at(at),
                );
            }
            Ok(Next::Extension {
                next: padded,
                pax: matches!(t, EntryType::XHeader | EntryType::XGlobalHeader),
            })
        }
        EntryType::Regular | EntryType::Continuous => Ok(Next::Member),
        other => {
            sink.push(
                problem(
                    "tar.member",
                    format!("the first member is a {other:?} entry, not a regular file"),
                )
                .at(pos + offset_of!(RawUstarHeader, typeflag) as u64)
                .field("typeflag"),
            );
            Ok(Next::Stop)
        }
    }
}

/// Parses the archive with the reader's code, over the repaired header
/// blocks (the end-of-archive blocks are checked by [`check_tail`]).
fn locate_member(
    file: &dyn ReadAt,
    patched: Vec<(u64, [u8; 512])>,
    sink: &mut Sink,
) -> Result<Option<Payload>> {
    let over = Patched {
        inner: file,
        blocks: patched,
    };
    match ftar::locate(&over) {
        Ok(Some(p)) => Ok(Some(p)),
        Ok(None) => {
            sink.push(problem("tar.header", "the archive is not recognised as tar").at(0));
            Ok(None)
        }
        Err(Error::Corrupt { offset, detail, .. }) => {
            let check = if detail.contains("past the end") {
                "tar.truncated"
            } else {
                "tar.header"
            };
            sink.push(problem(check, detail).at(offset));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// After the member: zero padding, then two (or more) zero blocks, nothing
/// else.
fn check_tail(file: &dyn ReadAt, p: &Payload, sink: &mut Sink) -> Result<()> {
    let len = file.len();
    let end = p.offset + p.size;
    let padded = end.div_ceil(BLOCK) * BLOCK;
    if let Some(at) = first_nonzero(file, end, padded.min(len))? {
        sink.push(
            problem(
                "tar.padding",
                "non-zero byte in the padding after the member (is the member size right?)",
            )
            .at(at),
        );
    }
    if padded > len {
        sink.push(
            problem(
                "tar.truncated",
                "the file ends inside the member's padding (truncated?)",
            )
            .at(len)
            .expected(
                format!("{} bytes", padded + 2 * BLOCK),
                format!("{len} bytes"),
            ),
        );
        return Ok(());
    }
    let tail = len - padded;
    if let Some(at) = first_nonzero(file, padded, len)? {
        sink.push(
            problem(
                "tar.trailer",
                "non-zero bytes after the member: a second member, or garbage (is the member size right?)",
            )
            .at(at),
        );
    }
    if tail < 2 * BLOCK {
        sink.push(
            problem(
                "tar.truncated",
                "the two 512-byte zero blocks that end a tar archive are missing (truncated?)",
            )
            .at(padded)
            .expected(
                format!("{} bytes", padded + 2 * BLOCK),
                format!("{len} bytes"),
            ),
        );
    } else if tail % BLOCK != 0 {
        sink.push(
            problem(
                "tar.trailer",
                "the archive is not a whole number of 512-byte blocks",
            )
            .at(len - tail % BLOCK),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(h: tar::Header, payload: &[u8], tail: usize) -> Vec<u8> {
        let mut v = h.as_bytes().to_vec();
        v.extend_from_slice(payload);
        v.resize(v.len().div_ceil(512) * 512 + tail, 0);
        v
    }

    fn header(gnu: bool) -> tar::Header {
        let mut h = if gnu {
            tar::Header::new_gnu()
        } else {
            tar::Header::new_ustar()
        };
        h.set_path("overlaybd.commit").unwrap();
        h.set_size(600);
        h.set_mode(0o444);
        h.set_cksum();
        h
    }

    fn run(v: &[u8]) -> (Option<Payload>, Vec<Problem>) {
        let mut sink = Sink::new("t");
        let p = check(&v.to_vec(), &mut sink).unwrap();
        (p, sink.problems)
    }

    #[test]
    fn clean_ustar() {
        let v = archive(header(false), &[9u8; 600], 1024);
        assert!(is_tarish(&v).unwrap());
        let (p, probs) = run(&v);
        assert_eq!(p.unwrap().offset, 512);
        assert!(probs.is_empty(), "{probs:?}");
    }

    #[test]
    fn damaged_header_is_repaired_and_reported() {
        let mut v = archive(header(false), &[9u8; 600], 1024);
        v[3] ^= 0x20; // inside the name
        let (p, probs) = run(&v);
        assert_eq!(p.unwrap().size, 600, "the member is still found");
        assert_eq!(probs.len(), 1, "{probs:?}");
        assert_eq!((probs[0].check, probs[0].offset), ("tar.checksum", Some(0)));
        let mut v = archive(header(false), &[9u8; 600], 1024);
        v[258] ^= 0x01; // the magic
        assert!(is_tarish(&v).unwrap());
        let (_, probs) = run(&v);
        assert!(
            probs
                .iter()
                .any(|q| q.check == "tar.magic" && q.offset == Some(258)),
            "{probs:?}"
        );
    }

    #[test]
    fn gnu_headers_are_not_for_the_reference() {
        let v = archive(header(true), &[9u8; 600], 1024);
        assert!(is_tarish(&v).unwrap());
        let (p, probs) = run(&v);
        assert!(p.is_some());
        assert_eq!(probs.len(), 1, "{probs:?}");
        assert_eq!(probs[0].check, "tar.gnu");
    }

    #[test]
    fn tail_must_be_two_zero_blocks_and_nothing_else() {
        let (_, probs) = run(&archive(header(false), &[9u8; 600], 512));
        assert_eq!(probs[0].check, "tar.truncated", "{probs:?}");
        let mut v = archive(header(false), &[9u8; 600], 2048);
        v[512 + 600 + 5] = 1; // padding after the member
        let last = v.len() - 1;
        v[last] = 1; // garbage at the end
        let (_, probs) = run(&v);
        let at: Vec<_> = probs.iter().map(|q| (q.check, q.offset)).collect();
        assert_eq!(
            at,
            [
                ("tar.padding", Some(512 + 605)),
                ("tar.trailer", Some(last as u64))
            ]
        );
        let (p, probs) = run(&archive(header(false), &[9u8; 100], 0)[..700]);
        assert!(p.is_none());
        assert_eq!(probs[0].check, "tar.truncated", "{probs:?}");
    }
}
