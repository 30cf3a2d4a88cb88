//! The one-member tar wrapper around a layer blob.
//!
//! Detection follows the reference: block 0 must carry the `ustar` magic,
//! version `00` and a valid header checksum (unsigned or signed byte sum).
//! The headers are then parsed with the `tar` crate; the payload starts after
//! the blocks actually consumed (a superset of the reference's fixed 512/1536)
//! and its size is the PAX `size` record when present, else the header's.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::{Cursor, ReadAt};

/// Bytes of a tar block.
pub const BLOCK: u64 = 512;

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
    if &block[257..262] != b"ustar" || &block[263..265] != b"00" {
        return false;
    }
    let Some(stored) = parse_octal(&block[148..156]) else {
        return false;
    };
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += b as u64;
        signed += b as i8 as i64;
    }
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
/// [`Error::Corrupt`] when it is a tar header but the archive is damaged or
/// the payload runs past the end of the file; [`Error::Io`] from `r`.
pub fn detect(r: &dyn ReadAt) -> Result<Option<Payload>> {
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
}
