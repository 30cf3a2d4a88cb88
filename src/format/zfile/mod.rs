//! ZFile: a random-access compressed container.
//!
//! ```text
//! 0                 header (512 B; 96-byte struct, rest zero)
//! 512 + dict_size   block 0 [crc0] block 1 [crc1] ... block n-1 [crc n-1]
//! index_offset      jump table: n × u32 LE, the on-disk length of each block
//!                   (CRC included)
//! index_offset+4n   trailer (512 B) = file_size − 512
//! ```
//!
//! Invariants the reader enforces (beyond the reference, which checks fewer):
//! header magic and is-header bit; the header digest when the digest flag is
//! set; the trailer's magic, flags and digest unless the header-overwrite
//! flag makes the header authoritative; `index_crc`; algorithm 1 (LZ4) or 2
//! (zstd); block size a power of two in 4..=64 KiB; no dictionary and no
//! compressed jump table; exactly `ceil(original_file_size / block_size)`
//! blocks; every block record longer than its CRC and no longer than
//! `block_size + 512 + 4`; blocks inside the data section; every block's CRC32C
//! (raw form, seed 100007) on every read; every block decompresses to exactly
//! its size.
//!
//! The golden files are made by overlaybd `063821fc` (lz4 1.8.3 one-shot,
//! libzstd 1.5.4 level 3); see `tests/fixtures/overlaybd/MANIFEST.json`.

pub mod cache;
pub mod raw;
mod reader;
mod record;
pub mod writer;

pub use cache::{BlockCache, CacheOptions, CacheStats};
pub use reader::{OpenOptions, ZFile};
pub use record::{flag_names, Record};
pub use writer::{Writer, WriterOptions};

use crate::error::{Error, Result};

/// A block compression algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// LZ4 block format (id 1).
    Lz4,
    /// Zstandard frame (id 2).
    Zstd,
}

impl Algorithm {
    /// The on-disk id.
    pub fn id(self) -> u8 {
        match self {
            Algorithm::Lz4 => 1,
            Algorithm::Zstd => 2,
        }
    }

    /// The algorithm with on-disk id `id`.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for MINI_LZO (0) and unknown ids.
    pub fn from_id(id: u8, what: &'static str, offset: u64) -> Result<Self> {
        match id {
            1 => Ok(Algorithm::Lz4),
            2 => Ok(Algorithm::Zstd),
            0 => Err(Error::unsupported(
                what,
                offset,
                "compression algorithm 0 (MINI_LZO, legacy)",
            )),
            n => Err(Error::unsupported(
                what,
                offset,
                format!("compression algorithm id {n}"),
            )),
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Lz4 => "lz4",
            Algorithm::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "lz4" => Ok(Algorithm::Lz4),
            "zstd" => Ok(Algorithm::Zstd),
            _ => Err(format!("unknown algorithm {s:?} (expected lz4 or zstd)")),
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

thread_local! {
    static ZSTD_D: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Decompresses one block into exactly `dst`.
///
/// # Errors
/// [`Error::Corrupt`] naming the block when the data does not decompress or
/// does not decompress to exactly `dst.len()` bytes.
pub fn decompress_block(
    algo: Algorithm,
    src: &[u8],
    dst: &mut [u8],
    block: u64,
    offset: u64,
) -> Result<()> {
    let got = match algo {
        // lz4_flex's safe decoder: malformed input is an error, never a
        // read or write outside `src`/`dst`.
        Algorithm::Lz4 => lz4_flex::block::decompress_into(src, dst).map_err(|e| {
            Error::corrupt("zfile block", offset, format!("block {block}: lz4: {e}"))
        })?,
        Algorithm::Zstd => ZSTD_D.with(|cell| -> Result<usize> {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(
                    zstd::bulk::Decompressor::new()
                        .map_err(|e| Error::io("zstd decompressor", offset, e))?,
                );
            }
            let d = slot
                .as_mut()
                .ok_or_else(|| Error::invalid("zstd", "no context"))?;
            d.decompress_to_buffer(src, dst).map_err(|e| {
                Error::corrupt("zfile block", offset, format!("block {block}: zstd: {e}"))
            })
        })?,
    };
    if got != dst.len() {
        return Err(Error::corrupt(
            "zfile block",
            offset,
            format!(
                "block {block} decompresses to {got} bytes, expected {}",
                dst.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_ids() {
        assert_eq!(Algorithm::from_id(1, "x", 0).unwrap(), Algorithm::Lz4);
        assert_eq!(Algorithm::from_id(2, "x", 0).unwrap(), Algorithm::Zstd);
        let e = Algorithm::from_id(0, "zfile header", 76).unwrap_err();
        assert!(e.to_string().contains("MINI_LZO"), "{e}");
        assert!(Algorithm::from_id(9, "x", 0).is_err());
        assert_eq!("ZSTD".parse::<Algorithm>().unwrap(), Algorithm::Zstd);
        assert!("lzo".parse::<Algorithm>().is_err());
    }

    #[test]
    fn decompress_checks_length() {
        let data = vec![7u8; 4096];
        let c = lz4_flex::block::compress(&data);
        let mut out = vec![0u8; 4096];
        decompress_block(Algorithm::Lz4, &c, &mut out, 0, 0).unwrap();
        assert_eq!(out, data);
        let mut short = vec![0u8; 4095];
        assert!(decompress_block(Algorithm::Lz4, &c, &mut short, 0, 0).is_err());
        let mut long = vec![0u8; 4097];
        assert!(decompress_block(Algorithm::Lz4, &c, &mut long, 0, 0).is_err());
        let z = zstd::bulk::compress(&data, 3).unwrap();
        decompress_block(Algorithm::Zstd, &z, &mut out, 0, 0).unwrap();
        assert!(decompress_block(Algorithm::Zstd, &z, &mut short, 0, 0).is_err());
        assert!(decompress_block(Algorithm::Zstd, &c, &mut out, 0, 0).is_err());
    }
}
