//! obd: a toolkit for DADI/OverlayBD container-image block layers.
//!
//! A layer is an LSMT file ([`format::lsmt`]), optionally inside a ZFile
//! ([`format::zfile`]), optionally inside a one-member tar
//! ([`format::tar`]). Every view is a [`ReadAt`]: file → tar payload →
//! ZFile → LSMT layer → [`stack::Stack`], each positional and thread-safe.
//!
//! | module | concern |
//! |---|---|
//! | [`format`](mod@format) | the on-disk formats: parsers, raw structs, writers |
//! | [`io`] | positional reads ([`ReadAt`]), crash-safe and sparse output files |
//! | [`source`] | where a layer's bytes come from ([`source::LayerSource`]), blobs, image configs |
//! | [`stack`] | the read engine: layers merged into one virtual disk |
//! | [`ops`] | whole-image operations: commit, merge, flatten, unpack, inspect, outputs |
//! | [`verify`] | integrity checks, built on `format`'s parsers and raw structs |
//! | [`exec`] | the parallel helpers every operation shares |
//! | [`serve`] | serving a stack as a block device: the target, the background server, ublk |
//! | [`cmd`] | the command line: arguments in, one library call, rendering out |

pub mod cmd;
pub mod error;
pub mod exec;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod io;
pub mod ops;
pub mod sample;
pub mod serve;
pub mod source;
pub mod stack;
pub mod verify;

pub use error::{Error, Result};
pub use io::ReadAt;
