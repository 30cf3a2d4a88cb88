//! obd: a toolkit for DADI/OverlayBD container-image block layers.
//!
//! A layer is an LSMT file ([`format::lsmt`]), optionally inside a ZFile
//! ([`format::zfile`]), optionally inside a one-member tar
//! ([`format::tar`]). Every view is a [`ReadAt`]: `File` → tar payload →
//! ZFile → LSMT layer → [`stack::Stack`], each positional and thread-safe.
//!
//! The command-line front end lives in [`cmd`]; everything else is library.

pub mod blob;
pub mod checksum;
pub mod cmd;
pub mod commit;
pub mod config;
pub mod error;
pub mod flatten;
pub mod format;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod inspect;
pub mod io;
pub mod output;
mod par;
pub mod pipeline;
pub mod sample;
pub mod stack;
#[cfg(target_os = "linux")]
pub mod ublk;
pub mod uuid;
pub mod verify;

pub use error::{Error, Result};
pub use io::ReadAt;
