//! The 37-byte UUID strings of LSMT headers: 36 ASCII characters in the
//! 8-4-4-4-12 layout followed by one NUL, uppercase on disk.

use crate::error::{Error, Result};

/// Bytes of a UUID field on disk.
pub const FIELD_LEN: usize = 37;

/// The null UUID as written by reference tools.
pub const NULL: &str = "00000000-0000-0000-0000-000000000000";

/// A parsed, valid UUID in canonical uppercase form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Uuid([u8; 36]);

impl Uuid {
    /// The null UUID.
    pub const fn null() -> Self {
        Uuid(*b"00000000-0000-0000-0000-000000000000")
    }

    /// Parses a 36-character UUID string in either case.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 36 {
            return None;
        }
        let mut out = [0u8; 36];
        for (i, &c) in b.iter().enumerate() {
            out[i] = match i {
                8 | 13 | 18 | 23 => {
                    if c != b'-' {
                        return None;
                    }
                    c
                }
                _ => {
                    if !c.is_ascii_hexdigit() {
                        return None;
                    }
                    c.to_ascii_uppercase()
                }
            };
        }
        Some(Uuid(out))
    }

    /// Parses a user-supplied UUID.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `what` when `s` is not a UUID.
    pub fn parse_arg(what: &'static str, s: &str) -> Result<Self> {
        Uuid::parse(s).ok_or_else(|| {
            Error::invalid(
                what,
                format!("{s:?} is not a UUID (expected 8-4-4-4-12 hex digits)"),
            )
        })
    }

    /// Parses an optional command-line UUID (see [`Uuid::parse_arg`]).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `what` when `s` is given and not a UUID.
    pub fn parse_opt(what: &'static str, s: Option<&str>) -> Result<Option<Self>> {
        s.map(|s| Uuid::parse_arg(what, s)).transpose()
    }

    /// A fresh random (version 4) UUID.
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        fill_random(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Self::from_bytes(&b)
    }

    /// The UUID of 16 binary bytes, in memory order.
    pub fn from_bytes(b: &[u8; 16]) -> Self {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut out = [b'-'; 36];
        let mut j = 0;
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                j += 1;
            }
            out[j] = HEX[(byte >> 4) as usize];
            out[j + 1] = HEX[(byte & 15) as usize];
            j += 2;
        }
        Uuid(out)
    }

    /// True for `00000000-0000-0000-0000-000000000000`.
    pub fn is_null(&self) -> bool {
        *self == Self::null()
    }

    /// The canonical string.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and '-' are ever stored.
        std::str::from_utf8(&self.0).unwrap_or(NULL)
    }

    /// The 37-byte on-disk field.
    pub fn to_field(&self) -> [u8; FIELD_LEN] {
        let mut f = [0u8; FIELD_LEN];
        f[..36].copy_from_slice(&self.0);
        f
    }
}

impl std::fmt::Display for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text of an on-disk field: up to the first NUL, lossily decoded.
/// Reference readers treat an invalid string as "no value"; obd shows it as is.
pub fn field_text(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// Parses an on-disk field the way the reference does: valid or nothing.
pub fn parse_field(field: &[u8]) -> Option<Uuid> {
    Uuid::parse(&field_text(field))
}

fn fill_random(buf: &mut [u8]) {
    use std::io::Read;
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        if f.read_exact(buf).is_ok() {
            return;
        }
    }
    // Fallback: hash time and pid. Not cryptographic; UUIDs only need to differ.
    use std::hash::{BuildHasher, Hasher};
    for chunk in buf.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        let v = h.finish().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_normalises_case_and_rejects_bad_shapes() {
        let u = Uuid::parse("12345678-1234-1234-1234-123456789abc").unwrap();
        assert_eq!(u.as_str(), "12345678-1234-1234-1234-123456789ABC");
        assert!(Uuid::parse("12345678-1234-1234-1234-123456789ab").is_none());
        assert!(Uuid::parse("12345678x1234-1234-1234-123456789abc").is_none());
        assert!(Uuid::parse("g2345678-1234-1234-1234-123456789abc").is_none());
        assert!(Uuid::parse("12345678-1234-1234-1234-123456789abcd").is_none());
        assert!(Uuid::parse_arg("--uuid", "nope").is_err());
    }

    #[test]
    fn field_round_trip() {
        let u = Uuid::parse("0000002a-0000-4000-8000-000000000001").unwrap();
        let f = u.to_field();
        assert_eq!(f[36], 0);
        assert_eq!(parse_field(&f), Some(u));
        assert_eq!(field_text(&f), "0000002A-0000-4000-8000-000000000001");
        assert!(Uuid::null().is_null());
    }

    #[test]
    fn random_is_v4() {
        let a = Uuid::random();
        let b = Uuid::random();
        assert_ne!(a, b);
        assert_eq!(&a.as_str()[14..15], "4");
        assert!(matches!(&a.as_str()[19..20], "8" | "9" | "A" | "B"));
        assert_eq!(Uuid::from_bytes(&[0xab; 16]).as_str().len(), 36);
    }
}
