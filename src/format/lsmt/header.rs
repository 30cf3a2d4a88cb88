//! Validated LSMT header/trailer records.

use serde::Serialize;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use super::raw::*;
use crate::error::{Error, Result};
use crate::format::uuid::{self, Uuid};

/// A header or trailer record, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    /// The raw flags word.
    pub flags: u32,
    /// Byte offset of the index (0 in committed headers).
    pub index_offset: u64,
    /// Number of 16-byte index entries.
    pub index_size: u64,
    /// Virtual disk size in bytes.
    pub virtual_size: u64,
    /// The `uuid` field's text (may be empty or invalid in damaged files).
    pub uuid: String,
    /// The `parent_uuid` field's text.
    pub parent_uuid: String,
    /// `[version, sub_version]`.
    pub version: [u8; 2],
    /// The commit message, trimmed at the first NUL.
    pub user_tag: String,
}

impl Header {
    /// Decodes a record from its first 390 bytes, checking the magic only.
    ///
    /// # Errors
    /// [`Error::BadMagic`] or [`Error::Corrupt`] (short input), naming `what`
    /// at `offset`.
    pub fn parse(bytes: &[u8], what: &'static str, offset: u64) -> Result<Self> {
        let (raw, _) = RawHeader::read_from_prefix(bytes)
            .map_err(|_| Error::corrupt(what, offset, "record is truncated"))?;
        if raw.magic0 != MAGIC0 || raw.magic1 != MAGIC1 {
            return Err(Error::BadMagic { what, offset });
        }
        let tag_end = raw
            .user_tag
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(USER_TAG_LEN);
        Ok(Header {
            flags: raw.flags.get(),
            index_offset: raw.index_offset.get(),
            index_size: raw.index_size.get(),
            virtual_size: raw.virtual_size.get(),
            uuid: uuid::field_text(&raw.uuid),
            parent_uuid: uuid::field_text(&raw.parent_uuid),
            version: [raw.version, raw.sub_version],
            user_tag: String::from_utf8_lossy(&raw.user_tag[..tag_end]).into_owned(),
        })
    }

    /// True if the record is a header (bit 0).
    pub fn is_header(&self) -> bool {
        self.flags & FLAG_HEADER != 0
    }
    /// True if the record belongs to a data file (bit 1).
    pub fn is_data(&self) -> bool {
        self.flags & FLAG_DATA != 0
    }
    /// True if the sealed bit is set.
    pub fn is_sealed(&self) -> bool {
        self.flags & FLAG_SEALED != 0
    }
    /// True if the sparse bit is set.
    pub fn is_sparse(&self) -> bool {
        self.flags & FLAG_SPARSE != 0
    }

    /// The UUID if the field holds a valid one.
    pub fn uuid(&self) -> Option<Uuid> {
        Uuid::parse(&self.uuid)
    }
    /// The parent UUID if the field holds a valid one.
    pub fn parent_uuid(&self) -> Option<Uuid> {
        Uuid::parse(&self.parent_uuid)
    }
}

/// Names of the set flag bits, for people.
pub fn flag_names(flags: u32) -> Vec<&'static str> {
    let mut v = vec![if flags & FLAG_HEADER != 0 {
        "header"
    } else {
        "trailer"
    }];
    v.push(if flags & FLAG_DATA != 0 {
        "data"
    } else {
        "index"
    });
    if flags & FLAG_SEALED != 0 {
        v.push("sealed");
    }
    if flags & FLAG_SPARSE != 0 {
        v.push("sparse");
    }
    if flags & !(FLAG_HEADER | FLAG_DATA | FLAG_SEALED | FLAG_SPARSE) != 0 {
        v.push("unknown-bits");
    }
    v
}

/// Fields of a record a writer sets.
#[derive(Debug, Clone)]
pub struct HeaderFields {
    /// Flags word.
    pub flags: u32,
    /// Index offset in bytes.
    pub index_offset: u64,
    /// Index entries.
    pub index_size: u64,
    /// Virtual size in bytes.
    pub virtual_size: u64,
    /// Layer UUID.
    pub uuid: Uuid,
    /// Parent UUID.
    pub parent_uuid: Uuid,
    /// Commit message (≤ 256 bytes).
    pub user_tag: Vec<u8>,
}

impl HeaderFields {
    /// The 4096-byte on-disk record.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the user tag is longer than 256 bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        if self.user_tag.len() > USER_TAG_LEN {
            return Err(Error::invalid(
                "commit message",
                format!(
                    "{} bytes is longer than the {USER_TAG_LEN}-byte user tag",
                    self.user_tag.len()
                ),
            ));
        }
        let mut raw = RawHeader::new_zeroed();
        raw.magic0 = MAGIC0;
        raw.magic1 = MAGIC1;
        raw.size.set(HEADER_STRUCT_SIZE);
        raw.flags.set(self.flags);
        raw.index_offset.set(self.index_offset);
        raw.index_size.set(self.index_size);
        raw.virtual_size.set(self.virtual_size);
        raw.uuid = self.uuid.to_field();
        raw.parent_uuid = self.parent_uuid.to_field();
        raw.version = 1;
        raw.sub_version = 1;
        raw.user_tag[..self.user_tag.len()].copy_from_slice(&self.user_tag);
        let mut out = vec![0u8; HEADER_SPACE as usize];
        out[..HEADER_STRUCT_SIZE as usize].copy_from_slice(raw.as_bytes());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> HeaderFields {
        HeaderFields {
            flags: 0x07,
            index_offset: 0,
            index_size: 0,
            virtual_size: 0x4000_0000,
            uuid: Uuid::parse("12345678-1234-1234-1234-123456789abc").unwrap(),
            parent_uuid: Uuid::null(),
            user_tag: b"hello".to_vec(),
        }
    }

    #[test]
    fn build_matches_spec_example_a_header() {
        let b = fields().to_bytes().unwrap();
        assert_eq!(b.len(), 4096);
        assert_eq!(&b[0..8], &MAGIC0);
        assert_eq!(&b[24..28], &[0x86, 1, 0, 0]);
        assert_eq!(&b[28..32], &[7, 0, 0, 0]);
        assert_eq!(&b[48..56], &[0, 0, 0, 0x40, 0, 0, 0, 0]);
        assert_eq!(&b[56..93], b"12345678-1234-1234-1234-123456789ABC\0");
        assert_eq!(&b[93..130], b"00000000-0000-0000-0000-000000000000\0");
        assert_eq!(&b[130..134], &[0, 0, 1, 1]);
        assert_eq!(&b[134..139], b"hello");
        assert!(b[139..].iter().all(|&x| x == 0));
        let h = Header::parse(&b, "lsmt header", 0).unwrap();
        assert_eq!(h.user_tag, "hello");
        assert_eq!(h.version, [1, 1]);
        assert!(h.is_header() && h.is_data() && h.is_sealed() && !h.is_sparse());
        assert_eq!(flag_names(h.flags), ["header", "data", "sealed"]);
    }

    #[test]
    fn parse_errors() {
        let mut b = fields().to_bytes().unwrap();
        assert!(matches!(
            Header::parse(&b[..100], "lsmt header", 0),
            Err(Error::Corrupt { .. })
        ));
        b[3] ^= 1;
        assert!(matches!(
            Header::parse(&b, "lsmt header", 0),
            Err(Error::BadMagic { .. })
        ));
    }

    #[test]
    fn user_tag_limits() {
        let mut f = fields();
        f.user_tag = vec![b'x'; 256];
        let b = f.to_bytes().unwrap();
        // Exactly 256 bytes: no NUL terminator on disk.
        assert_eq!(Header::parse(&b, "h", 0).unwrap().user_tag.len(), 256);
        f.user_tag.push(b'y');
        assert!(f.to_bytes().is_err());
    }
}
