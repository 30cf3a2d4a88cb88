//! Rust bindings of the Linux ublk UAPI header (`ublk_cmd.h`), as libublk
//! 0.4.8 uses them.
//!
//! `bindings.rs` is generated from `../ublk_cmd.h` by the obd test
//! `bindings::ublk_bindings_are_current` (bindgen with libclang) and
//! committed, so that building obd needs no libclang. That test regenerates
//! the file and fails when it differs; `OBD_BLESS=1` rewrites it. The items
//! and their derives (`Serialize`/`Deserialize` on every struct, which
//! libublk's target description needs) are the ones libublk expects from a
//! crate of this name.
//!
//! The header's `_IOR`/`_IOWR` command numbers are function-like macros
//! that bindgen cannot expand; the generator evaluates each of them in C
//! and the bindings hold the resulting constants.

#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case)]
#![allow(dead_code, clippy::all)]

#[rustfmt::skip]
mod bindings;

pub use bindings::*;

/// Unpacks the `sqe->addr` of an auto buffer registration
/// (`UBLK_F_AUTO_BUF_REG`): bits 0–15 index, 16–23 flags, 24–31
/// `reserved0`, 32–63 `reserved1` (the header's inline function of the same
/// name).
#[inline(always)]
pub fn ublk_sqe_addr_to_auto_buf_reg(sqe_addr: u64) -> ublk_auto_buf_reg {
    ublk_auto_buf_reg {
        index: sqe_addr as u16,
        flags: (sqe_addr >> 16) as u8,
        reserved0: (sqe_addr >> 24) as u8,
        reserved1: (sqe_addr >> 32) as u32,
    }
}

/// Packs an auto buffer registration into an `sqe->addr` (the inverse of
/// [`ublk_sqe_addr_to_auto_buf_reg`]).
#[inline(always)]
pub fn ublk_auto_buf_reg_to_sqe_addr(buf: &ublk_auto_buf_reg) -> u64 {
    u64::from(buf.index)
        | u64::from(buf.flags) << 16
        | u64::from(buf.reserved0) << 24
        | u64::from(buf.reserved1) << 32
}
