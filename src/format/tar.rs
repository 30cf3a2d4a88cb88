//! The one-member tar wrapper around a layer blob.
//!
//! Detection follows the reference: block 0 must carry the `ustar` magic,
//! version `00` and a valid header checksum (unsigned or signed byte sum).
//! The headers are then parsed with the `tar` crate; the payload starts after
//! the blocks actually consumed (a superset of the reference's fixed 512/1536)
//! and its size is the PAX `size` record when present, else the header's.
//!
//! The writer ([`header_blocks`], [`Wrapper`]) produces the reference's
//! layout byte for byte: a PAX `x` header named `overlaybd.pax` whose one
//! record is `<len> size=<payload size>\n`, the record block, a ustar header
//! `overlaybd.commit` (size field 0), the payload at byte 1536, zero padding to
//! 512 and two zero blocks. Unlike the reference, whose ustar `mode`, `uname`
//! and `gname` come from the output file's `st_mode` and the names of uid/gid
//! 0, obd always writes `100644`, `root` and `root` (what the reference writes
//! under umask 022 on a usual system), so its output does not depend on the
//! environment.

use serde::Serialize;

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Error, Result};
use crate::io::{Cursor, ReadAt};

/// Bytes of a tar block.
pub const BLOCK: u64 = 512;

/// A ustar header block, byte for byte (POSIX.1-1988 `ustar`). Numeric
/// fields are octal text.
#[repr(C)]
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct RawUstarHeader {
    /// Offset 0. Member name, NUL-padded.
    pub name: [u8; 100],
    /// Offset 100. Mode, octal.
    pub mode: [u8; 8],
    /// Offset 108. Owner uid, octal.
    pub uid: [u8; 8],
    /// Offset 116. Owner gid, octal.
    pub gid: [u8; 8],
    /// Offset 124. Size in bytes, octal.
    pub size: [u8; 12],
    /// Offset 136. Modification time, octal.
    pub mtime: [u8; 12],
    /// Offset 148. Header checksum: the byte sum with this field as spaces.
    pub chksum: [u8; 8],
    /// Offset 156. Type: `0` file, `x` PAX extended header, …
    pub typeflag: u8,
    /// Offset 157. Link target.
    pub linkname: [u8; 100],
    /// Offset 257. `ustar\0` (GNU: `ustar  `, spanning `version`).
    pub magic: [u8; 6],
    /// Offset 263. `00`.
    pub version: [u8; 2],
    /// Offset 265. Owner name.
    pub uname: [u8; 32],
    /// Offset 297. Group name.
    pub gname: [u8; 32],
    /// Offset 329. Device major, octal.
    pub devmajor: [u8; 8],
    /// Offset 337. Device minor, octal.
    pub devminor: [u8; 8],
    /// Offset 345. Name prefix.
    pub prefix: [u8; 155],
    /// Offset 500. Padding to the block.
    pub pad: [u8; 12],
}
const _: () = assert!(core::mem::size_of::<RawUstarHeader>() == BLOCK as usize);

/// Byte range of a field of [`RawUstarHeader`].
macro_rules! ustar_range {
    ($field:ident) => {{
        let at = core::mem::offset_of!(RawUstarHeader, $field);
        let h = RawUstarHeader::new_zeroed();
        at..at + core::mem::size_of_val(&h.$field)
    }};
}

/// Where the checksum field is.
pub fn chksum_range() -> std::ops::Range<usize> {
    ustar_range!(chksum)
}

/// The 8 bytes of `magic` and `version` (`ustar\0` `00`, or GNU's `ustar  \0`).
pub fn magic_range() -> std::ops::Range<usize> {
    let m = ustar_range!(magic);
    m.start..ustar_range!(version).end
}

/// The header sum with the checksum field counted as spaces: `(unsigned,
/// signed)` byte sums, as old writers differ.
pub fn header_sums(block: &[u8; 512]) -> (u64, i64) {
    let ck = chksum_range();
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if ck.contains(&i) { b' ' } else { b };
        unsigned += b as u64;
        signed += b as i8 as i64;
    }
    (unsigned, signed)
}

/// Where the single member's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payload {
    /// Byte offset of the payload in the tar file.
    pub offset: u64,
    /// Payload size in bytes.
    pub size: u64,
    /// The member's name.
    pub member: String,
    /// True when a PAX extended header was present.
    pub pax: bool,
}

/// The checksum test of the reference's `is_tar_file`.
pub fn looks_like_tar(block: &[u8; 512]) -> bool {
    let h: &RawUstarHeader = zerocopy::transmute_ref!(block);
    if &h.magic[..5] != b"ustar" || &h.version != b"00" {
        return false;
    }
    let Some(stored) = parse_octal(&h.chksum) else {
        return false;
    };
    let (unsigned, signed) = header_sums(block);
    stored == unsigned || stored as i64 == signed
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0');
    if s.is_empty() {
        return None;
    }
    u64::from_str_radix(s, 8).ok()
}

/// Detects a tar wrapper at the start of `r`.
///
/// Returns `Ok(None)` when block 0 is not a ustar header (the blob is used as is).
///
/// # Errors
/// [`Error::Corrupt`] when it is a tar header but the archive is damaged,
/// the payload runs past the end of the file, or the end-of-archive blocks
/// are missing or not zero; [`Error::Io`] from `r`.
pub fn detect(r: &dyn ReadAt) -> Result<Option<Payload>> {
    let Some(p) = locate(r)? else {
        return Ok(None);
    };
    // Every tar writer ends the member with zero padding to a 512-byte block
    // and two zero blocks; their absence means the file was cut short.
    let end = p.offset + p.size;
    let tail_end = end.div_ceil(BLOCK) * BLOCK + 2 * BLOCK;
    if r.len() < tail_end {
        return Err(Error::corrupt(
            "tar trailer",
            end,
            format!(
                "file ends at {:#x}, before the end-of-archive blocks that end at {tail_end:#x} (truncated?)",
                r.len()
            ),
        ));
    }
    let mut tail = vec![0u8; (tail_end - end) as usize];
    r.read_exact_at(&mut tail, end)?;
    if let Some(i) = tail.iter().position(|&b| b != 0) {
        return Err(Error::corrupt(
            "tar trailer",
            end + i as u64,
            "non-zero byte in the padding or end-of-archive blocks",
        ));
    }
    Ok(Some(p))
}

/// Finds the member of a tar wrapper from its headers alone (what
/// [`detect`] does before it checks the end-of-archive blocks).
///
/// # Errors
/// As [`detect`], except for the end-of-archive blocks.
pub fn locate(r: &dyn ReadAt) -> Result<Option<Payload>> {
    if r.len() < BLOCK {
        return Ok(None);
    }
    let mut block = [0u8; 512];
    r.read_exact_at(&mut block, 0)?;
    if !looks_like_tar(&block) {
        return Ok(None);
    }
    let mut archive = tar::Archive::new(Cursor::new(r));
    let mut entries = archive
        .entries()
        .map_err(|e| Error::corrupt("tar header", 0, e))?;
    let entry = match entries.next() {
        Some(Ok(e)) => e,
        Some(Err(e)) => return Err(Error::corrupt("tar header", 0, e)),
        None => return Err(Error::corrupt("tar header", 0, "archive has no member")),
    };
    let offset = entry.raw_file_position();
    let size = entry.size();
    let member = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let pax = offset > BLOCK;
    let header_at = offset.saturating_sub(BLOCK);
    if !matches!(
        entry.header().entry_type(),
        tar::EntryType::Regular | tar::EntryType::Continuous
    ) {
        return Err(Error::corrupt(
            "tar header",
            header_at,
            format!("member {member:?} is not a regular file"),
        ));
    }
    match offset.checked_add(size) {
        Some(end) if end <= r.len() => {}
        _ => {
            return Err(Error::corrupt(
                "tar header",
                header_at,
                format!(
                    "member {member:?} of {size} bytes at {offset:#x} runs past the end of the file ({:#x} bytes)",
                    r.len()
                ),
            ))
        }
    }
    Ok(Some(Payload {
        offset,
        size,
        member,
        pax,
    }))
}

/// Bytes of the headers in front of the payload (PAX header, PAX record,
/// ustar header).
pub const HEADER_BYTES: u64 = 3 * BLOCK;

/// Name of the PAX extended header.
pub const PAX_NAME: &str = "overlaybd.pax";
/// Name of the one member.
pub const MEMBER_NAME: &str = "overlaybd.commit";
/// The member's `mode` field: a regular file, 0644 (what the reference writes
/// under umask 022).
pub const MEMBER_MODE: u32 = 0o100644;

/// `printf("%6o \0")` into an 8-byte field.
fn octal8(field: &mut [u8], v: u64) {
    let s = format!("{v:>6o} \0");
    field.copy_from_slice(&s.as_bytes()[..8]);
}

/// `printf("%11o ")` into a 12-byte field (no NUL).
fn octal12(field: &mut [u8], v: u64) {
    let s = format!("{v:>11o} ");
    field.copy_from_slice(&s.as_bytes()[..12]);
}

fn set_name(h: &mut RawUstarHeader, name: &str) {
    h.name[..name.len()].copy_from_slice(name.as_bytes());
}

fn finish_block(mut h: RawUstarHeader) -> [u8; 512] {
    h.magic = *b"ustar\0";
    h.version = *b"00";
    // The checksum counts its own field as spaces.
    let mut block = [0u8; 512];
    block.copy_from_slice(h.as_bytes());
    let (sum, _) = header_sums(&block);
    octal8(&mut h.chksum, sum);
    block.copy_from_slice(h.as_bytes());
    block
}

/// The PAX record that carries the payload size: `"<len> size=<size>\n"`,
/// `<len>` counting the whole record including its own digits.
pub fn pax_size_record(size: u64) -> String {
    let body = format!(" size={size}\n");
    let mut len = body.len() + 1;
    loop {
        let total = len.to_string().len() + body.len();
        if total == len {
            return format!("{len}{body}");
        }
        len = total;
    }
}

/// The 1536 bytes in front of a payload of `payload_size` bytes.
pub fn header_blocks(payload_size: u64) -> [u8; HEADER_BYTES as usize] {
    let mut out = [0u8; HEADER_BYTES as usize];
    let record = pax_size_record(payload_size);
    // PAX header: mode, uid, gid, mtime, uname and gname stay zero bytes.
    let mut pax = RawUstarHeader::new_zeroed();
    set_name(&mut pax, PAX_NAME);
    octal12(&mut pax.size, record.len() as u64);
    pax.typeflag = b'x';
    out[..512].copy_from_slice(&finish_block(pax));
    out[512..512 + record.len()].copy_from_slice(record.as_bytes());
    // ustar header: the real size lives only in the PAX record.
    let mut h = RawUstarHeader::new_zeroed();
    set_name(&mut h, MEMBER_NAME);
    octal8(&mut h.mode, MEMBER_MODE as u64);
    octal8(&mut h.uid, 0);
    octal8(&mut h.gid, 0);
    octal12(&mut h.size, 0);
    octal12(&mut h.mtime, 0);
    h.typeflag = b'0';
    h.uname[..4].copy_from_slice(b"root");
    h.gname[..4].copy_from_slice(b"root");
    out[1024..].copy_from_slice(&finish_block(h));
    out
}

/// Bytes after a payload of `payload_size` bytes: padding to 512 and two
/// zero blocks.
pub fn trailer_len(payload_size: u64) -> u64 {
    payload_size.next_multiple_of(BLOCK) - payload_size + 2 * BLOCK
}

/// Size of the wrapped file.
pub fn wrapped_size(payload_size: u64) -> u64 {
    HEADER_BYTES + payload_size + trailer_len(payload_size)
}

/// Streams a payload into a tar wrapper. The headers depend on the payload
/// size, so [`Wrapper::new`] writes 1536 zero bytes (not a valid tar header:
/// an unfinished file is not mistaken for a tar) and [`Wrapper::finish`]
/// returns the real headers for the caller to write at offset 0.
#[must_use = "call finish() and write the headers at offset 0"]
pub struct Wrapper<W: std::io::Write> {
    out: W,
    payload: u64,
}

impl<W: std::io::Write> Wrapper<W> {
    /// Starts a wrapper: writes the placeholder header blocks.
    ///
    /// # Errors
    /// Write errors.
    pub fn new(mut out: W) -> Result<Self> {
        out.write_all(&[0u8; HEADER_BYTES as usize])
            .map_err(|e| Error::io("tar header", 0, e))?;
        Ok(Wrapper { out, payload: 0 })
    }

    /// Payload bytes so far.
    pub fn payload_size(&self) -> u64 {
        self.payload
    }

    /// Writes the padding and the end-of-archive blocks; returns the output
    /// and the 1536 header bytes that belong at offset 0.
    ///
    /// # Errors
    /// Write errors.
    pub fn finish(mut self) -> Result<(W, [u8; HEADER_BYTES as usize])> {
        let n = trailer_len(self.payload) as usize;
        let at = HEADER_BYTES + self.payload;
        self.out
            .write_all(&vec![0u8; n])
            .map_err(|e| Error::io("tar trailer", at, e))?;
        self.out
            .flush()
            .map_err(|e| Error::io("tar trailer", at, e))?;
        Ok((self.out, header_blocks(self.payload)))
    }
}

impl<W: std::io::Write> std::io::Write for Wrapper<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.payload += n as u64;
        Ok(n)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.out.write_all(buf)?;
        self.payload += buf.len() as u64;
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Wraps a whole in-memory payload.
pub fn wrap(payload: &[u8]) -> Vec<u8> {
    let n = payload.len() as u64;
    let mut v = Vec::with_capacity(wrapped_size(n) as usize);
    v.extend_from_slice(&header_blocks(n));
    v.extend_from_slice(payload);
    v.resize(wrapped_size(n) as usize, 0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ustar(name: &str, payload: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(payload.len() as u64);
        h.set_mode(0o444);
        h.set_cksum();
        let mut v = h.as_bytes().to_vec();
        v.extend_from_slice(payload);
        v.resize(v.len().div_ceil(512) * 512 + 1024, 0);
        v
    }

    #[test]
    fn plain_ustar_payload_at_512() {
        let v = ustar("overlaybd.commit", b"hello");
        let p = detect(&v).unwrap().unwrap();
        assert_eq!(
            p,
            Payload {
                offset: 512,
                size: 5,
                member: "overlaybd.commit".into(),
                pax: false
            }
        );
    }

    #[test]
    fn not_tar() {
        assert_eq!(detect(&vec![0u8; 2048]).unwrap(), None);
        assert_eq!(detect(&vec![0u8; 100]).unwrap(), None);
        let mut v = ustar("x", b"abc");
        v[148] ^= 1; // checksum no longer matches
        assert_eq!(detect(&v).unwrap(), None);
    }

    #[test]
    fn payload_past_end_is_corrupt() {
        let mut v = ustar("x", &[1u8; 600]);
        v.truncate(700);
        assert!(matches!(detect(&v), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn pax_record_lengths() {
        assert_eq!(pax_size_record(1058), "13 size=1058\n");
        assert_eq!(pax_size_record(1095529), "16 size=1095529\n");
        assert_eq!(pax_size_record(0), "9 size=0\n");
        // Crossing from 2 to 3 digits of length.
        for n in [1u64, 9, 10, 99, 100, 99_999, 1_000_000_000] {
            let r = pax_size_record(n);
            let len: usize = r.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(len, r.len());
        }
    }

    #[test]
    fn spec_example_checksums() {
        // §6.1: wrapping the 1058-byte ZFile of §5.9.
        let h = header_blocks(1058);
        assert_eq!(&h[148..156], b"  5354 \0");
        assert_eq!(&h[1024 + 148..1024 + 156], b" 12025 \0");
        assert_eq!(wrapped_size(1058), 4096);
        let v = wrap(&[7u8; 1058]);
        assert_eq!(
            detect(&v).unwrap().unwrap(),
            Payload {
                offset: 1536,
                size: 1058,
                member: MEMBER_NAME.into(),
                pax: true
            }
        );
    }

    #[test]
    fn wrapper_streams() {
        use std::io::Write;
        let mut w = Wrapper::new(Vec::new()).unwrap();
        w.write_all(&[1u8; 700]).unwrap();
        w.write_all(&[2u8; 100]).unwrap();
        let (mut out, head) = w.finish().unwrap();
        out[..1536].copy_from_slice(&head);
        let mut payload = vec![1u8; 700];
        payload.extend_from_slice(&[2u8; 100]);
        assert_eq!(out, wrap(&payload));
    }
}
