//! Serving a virtual disk as a Linux ublk block device (`/dev/ublkbN`).
//!
//! The kernel's ublk driver (Linux ≥ 6.0, module `ublk_drv`) forwards every
//! block request of `/dev/ublkbN` to a userspace server; obd is that server,
//! built on libublk 0.4.8. A [`Target`] — a read-only
//! [`Stack`](crate::stack::Stack), a writable layer over one, or any
//! [`ReadAt`](crate::io::ReadAt) view through [`ReadOnly`] — answers the requests:
//!
//! - 512-byte logical sectors (4 KiB physical); the device size is the
//!   target's size rounded down to a whole sector;
//! - one thread per hardware queue, each with a synchronous handler and one
//!   1 MiB I/O buffer per tag (`--queues`, `--depth`);
//! - holes and zeroed extents are answered without reading anything, and a
//!   tag's buffer that already holds zeros is not zeroed again;
//! - read-only targets set `UBLK_ATTR_READ_ONLY`; any write, discard or
//!   write-zeroes that still arrives (ext4 writes its journal superblock on
//!   unmount unless mounted `noload`) completes with `-EROFS`;
//! - a read that fails (I/O error, corrupt block, CRC mismatch) completes
//!   with `-errno` ([`Error::errno`](crate::Error::errno), `EIO` for damaged
//!   data) and is logged on stderr with the layer, the structure and the
//!   offset — never a panic and never wrong data;
//! - writable targets (a
//!   [`WritableLayer`](crate::format::lsmt::writable::WritableLayer) over the
//!   stack, `attach --upper`) advertise a volatile cache: FLUSH makes their
//!   writes durable; they also take DISCARD and WRITE_ZEROES (an LSMT
//!   discard reads back as zeros).
//!
//! [`serve`] runs the device until SIGINT, SIGTERM or SIGHUP arrives (the
//! caller blocks them before any thread exists; the thread that owns the
//! control device collects them with `sigtimedwait`, as libublk 0.4.8
//! requires), or until the device is deleted from outside; then it stops
//! and deletes the device and flushes the target.

pub mod ctrl;
pub mod doctor;
mod handler;
mod server;

pub use ctrl::Ublk;
pub use handler::{handle, Request};
pub use server::{preflight, serve, ublk_error, Options, ServeError, CONTROL_PATH};

pub use crate::serve::target::{ReadOnly, Target};

/// Logical sector size of every obd ublk device: the LSMT sector.
pub use crate::format::lsmt::raw::SECTOR_SIZE;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::lsmt::writable::{self, CreateOptions, WritableLayer};
    use crate::io::ReadAt;
    use libublk::sys::{UBLK_IO_OP_DISCARD, UBLK_IO_OP_FLUSH, UBLK_IO_OP_READ, UBLK_IO_OP_WRITE};
    use std::sync::Arc;

    #[test]
    fn writable_layer_target_over_a_lower_view() {
        let dir = tempfile::tempdir().unwrap();
        let (d, i) = (dir.path().join("u.data"), dir.path().join("u.index"));
        writable::create(&d, &i, &CreateOptions::default()).unwrap();
        let lower: Vec<u8> = (0..1u32 << 20).map(|x| (x % 253) as u8).collect();
        let lower: Arc<dyn ReadAt> = Arc::new(lower);
        let t = WritableLayer::open(&d, &i, Some(lower.clone())).unwrap();
        assert_eq!(Target::size(&t), 1 << 20);
        assert!(!t.read_only());
        let mut zp = 0;
        let mut buf = vec![0x77u8; 8192];
        let r = |op, s, n| Request::from_desc(op, s, n);
        assert_eq!(
            handle(&t, 0, r(UBLK_IO_OP_WRITE, 8, 16), &mut buf, &mut zp),
            8192
        );
        assert_eq!(
            handle(&t, 0, r(UBLK_IO_OP_DISCARD, 32, 8), &mut buf, &mut zp),
            0
        );
        assert_eq!(
            handle(&t, 0, r(UBLK_IO_OP_FLUSH, 0, 0), &mut buf, &mut zp),
            0
        );
        let mut got = vec![0u8; 32 << 10];
        assert_eq!(
            handle(&t, 0, r(UBLK_IO_OP_READ, 0, 64), &mut got, &mut zp),
            32 << 10
        );
        let mut want = vec![0u8; 32 << 10];
        lower.read_exact_at(&mut want, 0).unwrap();
        want[4096..12288].fill(0x77);
        want[16384..20480].fill(0);
        assert!(got == want);
    }
}
