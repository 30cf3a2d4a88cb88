//! Whole-image operations: each reads layers or a stack and writes one
//! output through the [`output`] chain (plain, ZFile, tar-wrapped).
//!
//! - [`commit`]: a writable layer sealed into a read-only one, or sealed in
//!   place; a raw image's difference from a stack;
//! - [`merge`]: a stack of read-only layers as one layer;
//! - [`flatten`]: a stack's virtual disk as a raw image;
//! - [`unpack`]: a ZFile's uncompressed content;
//! - [`inspect`]: reports of files and stacks;
//! - [`push`], [`pull`]: images to and from registries and OCI layouts.

pub mod commit;
pub mod diff;
pub mod flatten;
pub mod inspect;
pub mod merge;
pub mod output;
pub mod pull;
pub mod push;
pub mod unpack;
