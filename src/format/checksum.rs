//! CRC32C in the raw form ZFile uses: no pre- or post-inversion.
//!
//! The raw form is the CRC register itself: `crc-fast`'s CRC-32/ISCSI
//! (CRC-32C) state started at `init`, before its final inversion. `crc-fast`
//! picks the widest carry-less multiply the CPU has at run time (VPCLMULQDQ
//! on AVX-512 machines: 3× the `crc32` instruction's speed on 32 KiB).

/// The per-block CRC seed of ZFile (`NOI_WELL_KNOWN_PRIME`).
pub const BLOCK_CRC_SALT: u32 = 100_007;

/// Raw CRC32C of `data` continuing from `init`.
#[inline]
pub fn crc32c_raw(init: u32, data: &[u8]) -> u32 {
    let mut d =
        crc_fast::Digest::new_with_init_state(crc_fast::CrcAlgorithm::Crc32Iscsi, init.into());
    d.update(data);
    d.get_state() as u32
}

/// Raw CRC32C with seed 0: ZFile header/trailer digests and `index_crc`.
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_raw(0, data)
}

/// Raw CRC32C with seed 100007: the per-block CRC of ZFile.
#[inline]
pub fn crc32c_salt(data: &[u8]) -> u32 {
    crc32c_raw(BLOCK_CRC_SALT, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_vectors() {
        assert_eq!(crc32c(b"123456789"), 0x58E3_FA20);
        assert_eq!(crc32c_salt(b"123456789"), 0x3C9B_D4E0);
        assert_eq!(crc32c(b""), 0);
        assert_eq!(crc32c_salt(b""), 0x0001_86A7);
        assert_eq!(crc32c(&[0u8; 32]), 0);
        assert_eq!(crc32c_salt(&[0u8; 32]), 0x2825_0FD2);
        assert_eq!(crc32c(&[0u8; 4096]), 0);
        assert_eq!(crc32c_salt(&[0u8; 4096]), 0x1874_6CCD);
    }

    /// The CRC-32C register, one bit at a time (reflected polynomial).
    fn bitwise(init: u32, data: &[u8]) -> u32 {
        let mut c = init;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
            }
        }
        c
    }

    #[test]
    fn matches_the_bitwise_definition_at_every_length() {
        // Every length up to 1 KiB and some long ones cross each of the
        // SIMD paths' thresholds and tails, at odd alignments.
        let data: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let lens = (0..1024).chain([2047, 2300, 4096, 4099, 32768, 65536, 65537]);
        for (k, len) in lens.enumerate() {
            let at = k % 61;
            let b = &data[at..at + len];
            for init in [0, BLOCK_CRC_SALT, 0xDEAD_BEEF] {
                assert_eq!(
                    crc32c_raw(init, b),
                    bitwise(init, b),
                    "len {len} init {init}"
                );
            }
        }
    }

    #[test]
    fn extends_like_one_pass() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let (a, b) = data.split_at(333);
        assert_eq!(crc32c_raw(crc32c_raw(5, a), b), crc32c_raw(5, &data));
    }
}
