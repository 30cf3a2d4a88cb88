//! LSMT: the block layer format (header | data | index | trailer).
//!
//! | offset | size | field | notes |
//! |---:|---:|---|---|
//! | 0 | 8 | magic0 | `LSMT\0\1\2\0` |
//! | 8 | 16 | magic1 | GUID `657E63D2-…`, little-endian |
//! | 24 | 4 | size | 390 |
//! | 28 | 4 | flags | bit 0 header, 1 data, 2 sealed, 4 sparse |
//! | 32 | 8 | index_offset | bytes |
//! | 40 | 8 | index_size | **16-byte entries**, padding included |
//! | 48 | 8 | virtual_size | bytes |
//! | 56 | 37 | uuid | 36 characters + NUL, uppercase |
//! | 93 | 37 | parent_uuid | |
//! | 130 | 2 | reserved | |
//! | 132 | 1 | version | 1 |
//! | 133 | 1 | sub_version | 1 |
//! | 134 | 256 | user_tag | commit message |
//!
//! A header or trailer takes 4096 bytes. A read-only layer is
//! `header | data | index | trailer`; the trailer is authoritative. An index
//! entry is 16 bytes: `offset:50 | length:14` then `moffset:55 | zeroed:1 | tag:8`,
//! all in 512-byte sectors; entries with offset 2^50−1 are padding.
//!
//! Invariants enforced on read: header magic and header+data flags; trailer
//! magic and trailer+data+sealed flags; the index fits before the trailer;
//! entries sorted and non-overlapping; every data entry inside
//! `[8, index_offset/512)` (zeroed entries' moffset inside `[8, index_offset/512]`).
//! Writable layers: index header flags (header, index, not sealed),
//! `index_offset == 4096`, each record inside the data file; records replayed
//! in order with the later one winning.
//!
//! Checked against the golden files made by overlaybd `063821fc`
//! (`tests/fixtures/overlaybd/`).

pub mod header;
pub mod index;
pub mod layer;
pub mod raw;
pub mod segment;
pub mod writable;
pub mod writer;

pub use header::{Header, HeaderFields};
pub use layer::{Kind, Layer};
pub use segment::Segment;
pub use writable::WritableLayer;
