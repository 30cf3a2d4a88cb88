//! Content digests (`sha256:<64 hex digits>`), the names of blobs in
//! registries, OCI layouts and obd's cache.

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// A SHA-256 content digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Parses `sha256:` and 64 lower-case hex digits.
    ///
    /// # Errors
    /// [`Error::Invalid`]: another algorithm, or not a digest.
    pub fn parse(s: &str) -> Result<Self> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(Error::invalid(
                "digest",
                format!("{s:?} is not ALGORITHM:HEX"),
            ));
        };
        if alg != "sha256" {
            return Err(Error::invalid(
                "digest",
                format!("{s:?}: obd supports sha256 digests only"),
            ));
        }
        let b = hex.as_bytes();
        if b.len() != 64 || !b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(Error::invalid(
                "digest",
                format!("{s:?}: a sha256 digest is 64 lower-case hex digits"),
            ));
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        }
        Ok(Digest(out))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// From a finished hasher.
    pub fn from_hasher(h: Sha256) -> Self {
        Digest(h.finalize().into())
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            s.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
        }
        s
    }

    /// The raw 32 bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => c - b'a' + 10,
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Digest::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_known_value() {
        // sha256 of the empty string.
        let e = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(Digest::of(b"").to_string(), e);
        assert_eq!(Digest::parse(e).unwrap(), Digest::of(b""));
        for bad in [
            "sha256:E3B0",
            "md5:00",
            "sha512:00",
            "e3b0",
            &e.replace('e', "E"),
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
    }
}
