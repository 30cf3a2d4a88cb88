//! Serving a stack as a block device.
//!
//! - [`target`]: the transport-neutral block target (read, write, discard,
//!   flush; read-only; errno);
//! - [`daemon`]: the background server: fork, the startup handshake, the
//!   observer of a device's life, run records;
//! - [`runstate`]: the records of served devices in the run directory;
//! - [`ublk`]: the Linux ublk transport and device control;
//! - [`nbd`]: the NBD transport (`obd serve`);
//! - [`stats`]: request counters and latencies, for `obd stats`;
//! - [`trace`]: access traces and their replay.

pub mod daemon;
pub mod nbd;
pub mod runstate;
pub mod stats;
pub(crate) mod sys;
pub mod target;
pub mod trace;
#[cfg(target_os = "linux")]
pub mod ublk;

pub use sys::{BlockedSignals, STOP_SIGNALS};
pub use target::{ReadOnly, Target};
