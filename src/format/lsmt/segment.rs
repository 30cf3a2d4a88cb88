//! The typed index entry and its bitfield codec.

use zerocopy::byteorder::little_endian::U64;

use super::raw::RawSegment;
use crate::error::{Error, Result};

/// Largest LBA; an entry with this offset is padding.
pub const INVALID_OFFSET: u64 = (1 << 50) - 1;
/// Largest offset a real entry may start at.
pub const MAX_OFFSET: u64 = INVALID_OFFSET;
/// Largest segment length in sectors (14 bits).
pub const MAX_LENGTH: u32 = (1 << 14) - 1;
/// Largest physical sector (55 bits).
pub const MAX_MOFFSET: u64 = (1 << 55) - 1;

/// One LBA → data mapping; every quantity in 512-byte sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Segment {
    /// First LBA.
    pub offset: u64,
    /// Number of sectors.
    pub length: u32,
    /// Physical sector of the data inside the layer file (meaningless when zeroed).
    pub moffset: u64,
    /// The range reads as zeros and has no data.
    pub zeroed: bool,
    /// Runtime layer number; ignored on read, written as the caller asks.
    pub tag: u8,
}

/// The padding entry writers use: offset 2^50−1, everything else zero.
pub const PADDING: RawSegment = RawSegment {
    lo: U64::new(INVALID_OFFSET),
    hi: U64::new(0),
};

impl Segment {
    /// One past the last LBA.
    #[inline]
    pub fn end(&self) -> u64 {
        self.offset + self.length as u64
    }

    /// Physical end: `moffset + length` for data, `moffset` for zeroed entries.
    #[inline]
    pub fn mend(&self) -> u64 {
        if self.zeroed {
            self.moffset
        } else {
            self.moffset + self.length as u64
        }
    }

    /// Decodes an on-disk entry (never fails: every bit pattern is an entry).
    #[inline]
    pub fn decode(raw: &RawSegment) -> Self {
        let lo = raw.lo.get();
        let hi = raw.hi.get();
        Segment {
            offset: lo & INVALID_OFFSET,
            length: (lo >> 50) as u32,
            moffset: hi & MAX_MOFFSET,
            zeroed: (hi >> 55) & 1 == 1,
            tag: (hi >> 56) as u8,
        }
    }

    /// True for padding entries, which every reader skips.
    #[inline]
    pub fn is_padding(&self) -> bool {
        self.offset == INVALID_OFFSET
    }

    /// Encodes the entry.
    ///
    /// # Errors
    /// [`Error::Invalid`] when a field does not fit its bitfield.
    pub fn encode(&self) -> Result<RawSegment> {
        if self.offset > MAX_OFFSET || self.length > MAX_LENGTH || self.moffset > MAX_MOFFSET {
            return Err(Error::invalid(
                "lsmt segment",
                format!("{self:?} does not fit the on-disk bitfields"),
            ));
        }
        Ok(RawSegment {
            lo: U64::new(self.offset | (self.length as u64) << 50),
            hi: U64::new(self.moffset | (self.zeroed as u64) << 55 | (self.tag as u64) << 56),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use zerocopy::{FromBytes, IntoBytes};

    fn bytes(s: Segment) -> Vec<u8> {
        s.encode().unwrap().as_bytes().to_vec()
    }

    #[test]
    fn spec_encodings() {
        let s = |offset, length, moffset, zeroed| Segment {
            offset,
            length,
            moffset,
            zeroed,
            tag: 0,
        };
        assert_eq!(
            bytes(s(1, 8, 8, false)),
            [1, 0, 0, 0, 0, 0, 0x20, 0, 8, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes(s(16, 8, 8, false)),
            [0x10, 0, 0, 0, 0, 0, 0x20, 0, 8, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes(s(100, 20, 0, true)),
            [0x64, 0, 0, 0, 0, 0, 0x50, 0, 0, 0, 0, 0, 0, 0, 0x80, 0]
        );
        assert_eq!(
            PADDING.as_bytes(),
            [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert!(Segment::decode(&PADDING).is_padding());
    }

    #[test]
    fn encode_rejects_out_of_range() {
        let mut s = Segment {
            length: MAX_LENGTH + 1,
            ..Default::default()
        };
        assert!(s.encode().is_err());
        s.length = 1;
        s.moffset = MAX_MOFFSET + 1;
        assert!(s.encode().is_err());
        s.moffset = 0;
        s.offset = MAX_OFFSET + 1;
        assert!(s.encode().is_err());
    }

    proptest! {
        #[test]
        fn codec_round_trips(offset in 0..=MAX_OFFSET, length in 0..=MAX_LENGTH,
                             moffset in 0..=MAX_MOFFSET, zeroed: bool, tag: u8) {
            let s = Segment { offset, length, moffset, zeroed, tag };
            let raw = s.encode().unwrap();
            let back = RawSegment::read_from_bytes(raw.as_bytes()).unwrap();
            prop_assert_eq!(Segment::decode(&back), s);
        }

        #[test]
        fn decode_never_panics(b in proptest::array::uniform16(any::<u8>())) {
            let raw = RawSegment::read_from_bytes(&b).unwrap();
            let s = Segment::decode(&raw);
            prop_assert_eq!(s.encode().unwrap(), raw);
        }
    }
}
