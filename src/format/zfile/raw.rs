//! ZFile on-disk structures, byte for byte.

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `ZFile\0\1\0`.
pub const MAGIC0: [u8; 8] = *b"ZFile\0\x01\0";
/// `tuji.yyf@Alibaba`.
pub const MAGIC1: [u8; 16] = *b"tuji.yyf@Alibaba";
/// Bytes a header or trailer occupies on disk.
pub const HEADER_SPACE: u64 = 512;
/// The value of the `size` field.
pub const HEADER_STRUCT_SIZE: u32 = 96;
/// Byte range of the digest field, zeroed while the digest is computed.
pub const DIGEST_RANGE: std::ops::Range<usize> =
    core::mem::offset_of!(RawHeader, digest)..core::mem::offset_of!(RawHeader, flags);

/// Flag bit 0: header (else trailer).
pub const FLAG_HEADER: u64 = 1 << 0;
/// Flag bit 1: data file; always set.
pub const FLAG_DATA: u64 = 1 << 1;
/// Flag bit 2: sealed; set in trailers.
pub const FLAG_SEALED: u64 = 1 << 2;
/// Flag bit 3: the header holds the final index fields; the trailer is not read.
pub const FLAG_HEADER_OVERWRITE: u64 = 1 << 3;
/// Flag bit 4: `digest` and `index_crc` are valid.
pub const FLAG_DIGEST: u64 = 1 << 4;
/// Flag bit 5: compressed jump table; never produced by any writer, rejected.
pub const FLAG_INDEX_COMPRESSED: u64 = 1 << 5;

/// Bytes of the per-block CRC that follows each block when `verify` is 1.
pub const CRC_SIZE: u64 = 4;
/// Smallest block size obd accepts.
pub const MIN_BLOCK_SIZE: u32 = 4096;
/// Largest block size (the reference's `MAX_READ_SIZE`).
pub const MAX_BLOCK_SIZE: u32 = 65536;
/// The reference writer compresses into a `block_size + 512` buffer, so no
/// block it writes is longer than this many bytes past the block size.
pub const MAX_BLOCK_OVERHEAD: u64 = 512;
/// Jump-table entry cap of the reference reader.
pub const MAX_INDEX_ENTRIES: u64 = 1_000_000_000;

/// The 96-byte header/trailer struct (512 bytes on disk). The reference's C
/// struct is not packed; its implicit padding is spelled out as fields.
#[repr(C)]
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct RawHeader {
    /// Offset 0. `ZFile\0\1\0`.
    pub magic0: [u8; 8],
    /// Offset 8. `tuji.yyf@Alibaba`.
    pub magic1: [u8; 16],
    /// Offset 24. Size of the struct: 96.
    pub size: U32,
    /// Offset 28. crc32c (seed 0) of all 512 bytes with this field zeroed.
    pub digest: U32,
    /// Offset 32. Flags.
    pub flags: U64,
    /// Offset 40. Byte offset of the jump table.
    pub index_offset: U64,
    /// Offset 48. Number of jump-table entries (= blocks).
    pub index_size: U64,
    /// Offset 56. Uncompressed size in bytes.
    pub original_file_size: U64,
    /// Offset 64. crc32c (seed 0) of the jump-table bytes.
    pub index_crc: U32,
    /// Offset 68. Zero.
    pub reserved_0: U32,
    /// Offset 72. Uncompressed block size in bytes.
    pub block_size: U32,
    /// Offset 76. 1 = LZ4, 2 = ZSTD (0 = MINI_LZO, unsupported).
    pub algo: u8,
    /// Offset 77. Written as 0, ignored.
    pub level: u8,
    /// Offset 78. 1 if a dictionary is used (never).
    pub use_dict: u8,
    /// Offset 79. Padding.
    pub _pad0: u8,
    /// Offset 80. Reserved (`args`).
    pub reserved_1: U32,
    /// Offset 84. Dictionary bytes after the header (always 0).
    pub dict_size: U32,
    /// Offset 88. 1 = a 4-byte CRC follows every block.
    pub verify: u8,
    /// Offset 89. Padding.
    pub _pad1: [u8; 7],
}
const _: () = assert!(core::mem::size_of::<RawHeader>() == HEADER_STRUCT_SIZE as usize);
