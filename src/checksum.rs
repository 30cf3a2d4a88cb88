//! CRC32C in the raw form ZFile uses: no pre- or post-inversion.
//!
//! The `crc32c` crate computes the standard (inverted) CRC-32C with hardware
//! acceleration; the raw form is `!append(!init, data)`.

/// The per-block CRC seed of ZFile (`NOI_WELL_KNOWN_PRIME`).
pub const BLOCK_CRC_SALT: u32 = 100_007;

/// Raw CRC32C of `data` continuing from `init`.
#[inline]
pub fn crc32c_raw(init: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!init, data)
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

    #[test]
    fn extends_like_one_pass() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let (a, b) = data.split_at(333);
        assert_eq!(crc32c_raw(crc32c_raw(5, a), b), crc32c_raw(5, &data));
    }
}
