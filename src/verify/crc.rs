//! Locating a single flipped bit from a CRC32C mismatch.
//!
//! The raw CRC32C of ZFile (§2.1: no pre- or post-inversion) is linear in
//! its input: `crc(init, d ^ e) = crc(init, d) ^ crc(0, e)`. When one bit
//! of a checksummed range flipped, the syndrome `stored ^ computed` is the
//! CRC of a message that is zero except for that bit, and running the CRC
//! register backwards from the syndrome finds the bit again. CRC-32C has a
//! Hamming distance of at least 4 for every length obd deals with, so a
//! single-bit error (in the data or in the stored checksum) is identified
//! uniquely; anything else is reported as "more than one bit".

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// `TABLE[x]`: eight register steps starting from `x` (a zero input byte).
const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// `INVERSE[TABLE[x] >> 24] = x`: the top bytes of the table are distinct,
/// which makes one register byte-step invertible.
const INVERSE: [u8; 256] = {
    let mut inv = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        inv[(TABLE[i] >> 24) as usize] = i as u8;
        i += 1;
    }
    inv
};

/// Longest range searched (the search costs one table step per byte).
pub const MAX_SEARCH: usize = 64 << 20;

/// Where a single flipped bit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flip {
    /// Bit `bit` of byte `byte` of the checksummed range.
    Data {
        /// Byte index in the range.
        byte: usize,
        /// Bit 0..8.
        bit: u8,
    },
    /// Bit `bit` (0..32) of the stored checksum itself.
    Stored {
        /// Bit of the little-endian u32.
        bit: u8,
    },
}

/// Finds the single bit whose flip explains `stored != computed` over a
/// range of `len` bytes; `None` when no single bit does (or the range is
/// longer than [`MAX_SEARCH`]).
pub fn locate(len: usize, stored: u32, computed: u32) -> Option<Flip> {
    let syndrome = stored ^ computed;
    if syndrome == 0 {
        return None;
    }
    if syndrome.is_power_of_two() {
        return Some(Flip::Stored {
            bit: syndrome.trailing_zeros() as u8,
        });
    }
    if len > MAX_SEARCH {
        return None;
    }
    let mut s = syndrome;
    for m in 0..len {
        let x = INVERSE[(s >> 24) as usize];
        s = ((s ^ TABLE[x as usize]) << 8) | x as u32;
        if s < 256 && s.is_power_of_two() {
            return Some(Flip::Data {
                byte: len - 1 - m,
                bit: s.trailing_zeros() as u8,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::checksum::{crc32c, crc32c_salt};

    #[test]
    fn finds_every_single_bit_of_a_record() {
        let mut data: Vec<u8> = (0..512u32).map(|i| (i * 37 + 11) as u8).collect();
        let stored = crc32c(&data);
        for byte in 0..data.len() {
            for bit in 0..8u8 {
                data[byte] ^= 1 << bit;
                let got = locate(data.len(), stored, crc32c(&data));
                assert_eq!(got, Some(Flip::Data { byte, bit }), "byte {byte} bit {bit}");
                data[byte] ^= 1 << bit;
            }
        }
        for bit in 0..32u8 {
            let got = locate(data.len(), stored ^ (1 << bit), crc32c(&data));
            assert_eq!(got, Some(Flip::Stored { bit }));
        }
    }

    #[test]
    fn works_with_the_block_salt_and_long_ranges() {
        let mut data = vec![0u8; 70_000];
        crate::sample::fill(3, 0, &mut data);
        let stored = crc32c_salt(&data);
        for &(byte, bit) in &[(0usize, 0u8), (1, 7), (35_000, 3), (69_999, 7)] {
            data[byte] ^= 1 << bit;
            assert_eq!(
                locate(data.len(), stored, crc32c_salt(&data)),
                Some(Flip::Data { byte, bit })
            );
            data[byte] ^= 1 << bit;
        }
    }

    #[test]
    fn two_bits_are_not_one() {
        let mut data = vec![0x5Au8; 4096];
        let stored = crc32c(&data);
        data[10] ^= 1;
        data[3000] ^= 0x10;
        assert_eq!(locate(data.len(), stored, crc32c(&data)), None);
        assert_eq!(locate(4096, 7, 7), None);
    }
}
