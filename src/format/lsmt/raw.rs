//! LSMT on-disk structures, byte for byte.

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `LSMT\0\1\2\0`.
pub const MAGIC0: [u8; 8] = *b"LSMT\0\x01\x02\0";
/// The second magic, a GUID stored little-endian.
pub const MAGIC1: [u8; 16] = [
    0x65, 0x7E, 0x63, 0xD2, 0x94, 0x44, 0x08, 0x4C, 0xA2, 0xD2, 0xC8, 0xEC, 0x4F, 0xCF, 0xAE, 0x8A,
];
/// Bytes a header or trailer occupies on disk.
pub const HEADER_SPACE: u64 = 4096;
/// The value of the `size` field: the packed struct's size.
pub const HEADER_STRUCT_SIZE: u32 = 390;
/// LBA and moffset unit.
pub const SECTOR_SIZE: u64 = 512;
/// Bytes of one index entry.
pub const SEGMENT_SIZE: u64 = 16;
/// Bytes of the user tag (commit message).
pub const USER_TAG_LEN: usize = 256;

/// `index_size` counts **16-byte entries**, not bytes (checked against the
/// reference fixtures: `L0.commit` has index_size 256 = 4096 bytes of index).
/// The newest reference reader rejects read-only indexes above this count
/// (padding included).
pub const MAX_RO_INDEX_ENTRIES: u64 = 1_000_000;
/// Cap of a writable layer's index file and of a merged index.
pub const MAX_INDEX_ENTRIES: u64 = 128_000_000;
/// Most read-only layers in one stack.
pub const MAX_STACK_LAYERS: usize = 255;

/// Header flag bit 0: this record is a header (else a trailer).
pub const FLAG_HEADER: u32 = 1 << 0;
/// Header flag bit 1: data file (else index file).
pub const FLAG_DATA: u32 = 1 << 1;
/// Header flag bit 2: sealed.
pub const FLAG_SEALED: u32 = 1 << 2;
/// Header flag bit 4: sparse writable layer.
pub const FLAG_SPARSE: u32 = 1 << 4;

/// The header or trailer of an LSMT file (390 bytes; 4096 on disk).
#[repr(C)]
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct RawHeader {
    /// Offset 0. `LSMT\0\1\2\0`.
    pub magic0: [u8; 8],
    /// Offset 8. GUID `657E63D2-9444-084C-A2D2-C8EC4FCFAE8A` in little-endian order.
    pub magic1: [u8; 16],
    /// Offset 24. Size of this struct: 390.
    pub size: U32,
    /// Offset 28. Flags: header, data, sealed, sparse.
    pub flags: U32,
    /// Offset 32. Byte offset of the index.
    pub index_offset: U64,
    /// Offset 40. Number of 16-byte index entries.
    pub index_size: U64,
    /// Offset 48. Size of the virtual block device in bytes.
    pub virtual_size: U64,
    /// Offset 56. This layer's UUID, 36 characters and a NUL.
    pub uuid: [u8; 37],
    /// Offset 93. The parent layer's UUID.
    pub parent_uuid: [u8; 37],
    /// Offset 130. Deprecated `from`/`to` level bytes, zero.
    pub reserved: [u8; 2],
    /// Offset 132. Format version, 1.
    pub version: u8,
    /// Offset 133. Sub-version, 1.
    pub sub_version: u8,
    /// Offset 134. Commit message, up to 256 bytes, zero-padded.
    pub user_tag: [u8; USER_TAG_LEN],
}
const _: () = assert!(core::mem::size_of::<RawHeader>() == HEADER_STRUCT_SIZE as usize);

/// One index entry: two little-endian words holding the GCC bitfields
/// `offset:50 | length:14` and `moffset:55 | zeroed:1 | tag:8`.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct RawSegment {
    /// Offset 0. `offset` (bits 0..50, sectors) and `length` (bits 50..64, sectors).
    pub lo: U64,
    /// Offset 8. `moffset` (bits 0..55, sectors), `zeroed` (bit 55), `tag` (bits 56..64).
    pub hi: U64,
}
const _: () = assert!(core::mem::size_of::<RawSegment>() == SEGMENT_SIZE as usize);
