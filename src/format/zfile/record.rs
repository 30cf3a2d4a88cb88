//! Decoded ZFile header/trailer records.

use serde::Serialize;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use super::raw::*;
use crate::error::{Error, Result};
use crate::format::checksum::crc32c;

/// A header or trailer, decoded but not yet judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// The flags word.
    pub flags: u64,
    /// The stored digest.
    pub digest: u32,
    /// The digest computed over the 512 bytes (digest field zeroed).
    pub computed_digest: u32,
    /// Byte offset of the jump table.
    pub index_offset: u64,
    /// Number of blocks.
    pub index_size: u64,
    /// Uncompressed size.
    pub original_file_size: u64,
    /// crc32c of the jump table.
    pub index_crc: u32,
    /// Uncompressed block size.
    pub block_size: u32,
    /// Algorithm id.
    pub algo: u8,
    /// Level byte (ignored by every reader).
    pub level: u8,
    /// Dictionary flag.
    pub use_dict: u8,
    /// Dictionary size.
    pub dict_size: u32,
    /// 1 when every block carries a CRC.
    pub verify: u8,
}

impl Record {
    /// Decodes 512 bytes, checking the magic only.
    ///
    /// # Errors
    /// [`Error::BadMagic`]; [`Error::Corrupt`] when `bytes` is shorter than 512.
    pub fn parse(bytes: &[u8], what: &'static str, offset: u64) -> Result<Self> {
        if bytes.len() < HEADER_SPACE as usize {
            return Err(Error::corrupt(what, offset, "record is truncated"));
        }
        let (raw, _) = RawHeader::read_from_prefix(bytes)
            .map_err(|_| Error::corrupt(what, offset, "record is truncated"))?;
        if raw.magic0 != MAGIC0 || raw.magic1 != MAGIC1 {
            return Err(Error::BadMagic { what, offset });
        }
        Ok(Record {
            flags: raw.flags.get(),
            digest: raw.digest.get(),
            computed_digest: digest_of(&bytes[..HEADER_SPACE as usize]),
            index_offset: raw.index_offset.get(),
            index_size: raw.index_size.get(),
            original_file_size: raw.original_file_size.get(),
            index_crc: raw.index_crc.get(),
            block_size: raw.block_size.get(),
            algo: raw.algo,
            level: raw.level,
            use_dict: raw.use_dict,
            dict_size: raw.dict_size.get(),
            verify: raw.verify,
        })
    }

    /// True when the digest flag is set.
    pub fn has_digest(&self) -> bool {
        self.flags & FLAG_DIGEST != 0
    }

    /// True when the digest flag is clear or the digest matches.
    pub fn digest_ok(&self) -> bool {
        !self.has_digest() || self.digest == self.computed_digest
    }

    /// The 512-byte on-disk form, digest computed.
    pub fn to_bytes(&self) -> [u8; HEADER_SPACE as usize] {
        let mut raw = RawHeader::new_zeroed();
        raw.magic0 = MAGIC0;
        raw.magic1 = MAGIC1;
        raw.size.set(HEADER_STRUCT_SIZE);
        raw.flags.set(self.flags);
        raw.index_offset.set(self.index_offset);
        raw.index_size.set(self.index_size);
        raw.original_file_size.set(self.original_file_size);
        raw.index_crc.set(self.index_crc);
        raw.block_size.set(self.block_size);
        raw.algo = self.algo;
        raw.level = self.level;
        raw.use_dict = self.use_dict;
        raw.dict_size.set(self.dict_size);
        raw.verify = self.verify;
        let mut out = [0u8; HEADER_SPACE as usize];
        out[..HEADER_STRUCT_SIZE as usize].copy_from_slice(raw.as_bytes());
        let d = digest_of(&out);
        out[DIGEST_RANGE].copy_from_slice(&d.to_le_bytes());
        out
    }
}

/// crc32c (seed 0) of a 512-byte record with its digest field taken as zero.
pub fn digest_of(record: &[u8]) -> u32 {
    let mut copy = [0u8; HEADER_SPACE as usize];
    let n = record.len().min(copy.len());
    copy[..n].copy_from_slice(&record[..n]);
    copy[DIGEST_RANGE].fill(0);
    crc32c(&copy)
}

/// Names of the set flag bits, for people.
pub fn flag_names(flags: u64) -> Vec<&'static str> {
    let mut v = vec![if flags & FLAG_HEADER != 0 {
        "header"
    } else {
        "trailer"
    }];
    for (bit, name) in [
        (FLAG_DATA, "data"),
        (FLAG_SEALED, "sealed"),
        (FLAG_HEADER_OVERWRITE, "header-overwrite"),
        (FLAG_DIGEST, "digest"),
        (FLAG_INDEX_COMPRESSED, "index-compressed"),
    ] {
        if flags & bit != 0 {
            v.push(name);
        }
    }
    if flags & !0x3f != 0 {
        v.push("unknown-bits");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(flags: u64) -> Record {
        Record {
            flags,
            digest: 0,
            computed_digest: 0,
            index_offset: 0,
            index_size: 0,
            original_file_size: 0,
            index_crc: 0,
            block_size: 4096,
            algo: 1,
            level: 0,
            use_dict: 0,
            dict_size: 0,
            verify: 1,
        }
    }

    #[test]
    fn spec_digests() {
        // §5.9: every default header has digest 0xC7A212FC.
        let h = rec(0x13).to_bytes();
        assert_eq!(
            u32::from_le_bytes(h[DIGEST_RANGE].try_into().unwrap()),
            0xC7A2_12FC
        );
        let mut t = rec(0x16);
        t.index_offset = 542;
        t.index_size = 1;
        t.original_file_size = 4096;
        t.index_crc = 0xDB65_C0A9;
        let tb = t.to_bytes();
        assert_eq!(
            u32::from_le_bytes(tb[DIGEST_RANGE].try_into().unwrap()),
            0x8056_E269
        );
        t.flags = 0x1B;
        let ob = t.to_bytes();
        assert_eq!(
            u32::from_le_bytes(ob[DIGEST_RANGE].try_into().unwrap()),
            0x7096_374D
        );
        let back = Record::parse(&tb, "zfile trailer", 542 + 4).unwrap();
        assert!(back.digest_ok());
        assert_eq!(back.index_offset, 542);
        // Empty input trailer.
        let mut e = rec(0x16);
        e.index_offset = 512;
        let eb = e.to_bytes();
        assert_eq!(
            u32::from_le_bytes(eb[DIGEST_RANGE].try_into().unwrap()),
            0x85C8_95BF
        );
    }

    #[test]
    fn parse_rejects() {
        let mut h = rec(0x13).to_bytes();
        assert!(Record::parse(&h[..511], "h", 0).is_err());
        h[100] ^= 1;
        assert!(!Record::parse(&h, "h", 0).unwrap().digest_ok());
        h[0] ^= 1;
        assert!(matches!(
            Record::parse(&h, "h", 0),
            Err(Error::BadMagic { .. })
        ));
        assert_eq!(
            flag_names(0x1B),
            ["header", "data", "header-overwrite", "digest"]
        );
    }
}
