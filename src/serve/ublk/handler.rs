//! One ublk request against a [`Target`]: the op dispatch, kept free of
//! libublk so that it can be tested without a kernel.

use std::sync::atomic::{AtomicU64, Ordering};

use libublk::sys::{
    UBLK_IO_OP_DISCARD, UBLK_IO_OP_FLUSH, UBLK_IO_OP_READ, UBLK_IO_OP_WRITE,
    UBLK_IO_OP_WRITE_ZEROES,
};

use super::{Target, SECTOR_SIZE};

/// One request as the ublk driver describes it (`ublksrv_io_desc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// `op_flags & 0xff`: `UBLK_IO_OP_*`.
    pub op: u32,
    /// First sector.
    pub start_sector: u64,
    /// Sectors.
    pub nr_sectors: u32,
}

impl Request {
    /// Decodes the driver's descriptor fields.
    pub fn from_desc(op_flags: u32, start_sector: u64, nr_sectors: u32) -> Self {
        Request {
            op: op_flags & 0xff,
            start_sector,
            nr_sectors,
        }
    }

    fn name(&self) -> &'static str {
        match self.op {
            UBLK_IO_OP_READ => "read",
            UBLK_IO_OP_WRITE => "write",
            UBLK_IO_OP_FLUSH => "flush",
            UBLK_IO_OP_DISCARD => "discard",
            UBLK_IO_OP_WRITE_ZEROES => "write-zeroes",
            _ => "request",
        }
    }
}

/// Errors logged in full before further ones are only counted.
const LOGGED_ERRORS: u64 = 100;
static ERRORS: AtomicU64 = AtomicU64::new(0);

fn log_error(dev_id: u32, req: &Request, offset: u64, len: u64, e: &crate::Error) {
    let n = ERRORS.fetch_add(1, Ordering::Relaxed);
    if n < LOGGED_ERRORS {
        eprintln!(
            "obd: ublkb{dev_id}: {} of {len} bytes at {offset:#x} failed ({}): {e}",
            req.name(),
            errno_name(e.errno())
        );
    } else if n == LOGGED_ERRORS {
        eprintln!(
            "obd: ublkb{dev_id}: more errors follow; only the first {LOGGED_ERRORS} are logged"
        );
    }
}

fn errno_name(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

/// Serves one request with `buf` as the data buffer (filled for reads,
/// holding the data for writes). `zero_prefix` tracks how many leading
/// bytes of `buf` are known to be zero, across the requests of one tag, so
/// that reads of holes need not fill the buffer again. Returns the byte
/// count to complete the request with, or `-errno`. Never panics.
pub fn handle(
    target: &dyn Target,
    dev_id: u32,
    req: Request,
    buf: &mut [u8],
    zero_prefix: &mut usize,
) -> i32 {
    let len = req.nr_sectors as u64 * SECTOR_SIZE;
    let offset = req.start_sector.saturating_mul(SECTOR_SIZE);
    let in_range = offset
        .checked_add(len)
        .is_some_and(|end| end <= target.size());
    // Every op but FLUSH addresses a range of the device.
    if req.op != UBLK_IO_OP_FLUSH && !in_range {
        let e = crate::Error::OutOfRange {
            what: "ublk device",
            offset,
            len,
            size: target.size(),
        };
        log_error(dev_id, &req, offset, len, &e);
        return -libc::EINVAL;
    }
    let read_only = target.read_only();
    let result = match req.op {
        UBLK_IO_OP_READ | UBLK_IO_OP_WRITE => {
            if len > buf.len() as u64 || len > i32::MAX as u64 {
                let e = crate::Error::invalid(
                    "ublk request",
                    format!("larger than the {}-byte buffer", buf.len()),
                );
                log_error(dev_id, &req, offset, len, &e);
                return -libc::EINVAL;
            }
            let n = len as usize;
            if req.op == UBLK_IO_OP_READ {
                if target.reads_as_zeros(offset, len) {
                    if *zero_prefix < n {
                        buf[*zero_prefix..n].fill(0);
                        *zero_prefix = n;
                    }
                    return n as i32;
                }
                // From here on the buffer holds data (or, after a failure,
                // whatever part of it was filled).
                *zero_prefix = 0;
                target.read_at(&mut buf[..n], offset)
            } else {
                // The driver copied the data to write into the buffer.
                *zero_prefix = 0;
                if read_only {
                    return -libc::EROFS;
                }
                target.write_at(&buf[..n], offset)
            }
        }
        UBLK_IO_OP_FLUSH => {
            if read_only {
                return 0;
            }
            target.flush()
        }
        UBLK_IO_OP_DISCARD | UBLK_IO_OP_WRITE_ZEROES => {
            if read_only {
                return -libc::EROFS;
            }
            // LSMT discards leave zeroed extents: they read back as zeros,
            // which is what write-zeroes promises too.
            target.discard(offset, len)
        }
        _ => return -libc::EOPNOTSUPP,
    };
    match result {
        Ok(()) if req.op == UBLK_IO_OP_READ || req.op == UBLK_IO_OP_WRITE => len as i32,
        Ok(()) => 0,
        Err(e) => {
            log_error(dev_id, &req, offset, len, &e);
            -e.errno()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::testing::FailingReadAt;
    use crate::serve::ublk::ReadOnly;
    use crate::Error;
    use std::sync::Mutex;

    fn req(op: u32, start_sector: u64, nr_sectors: u32) -> Request {
        Request::from_desc(op, start_sector, nr_sectors)
    }

    /// One request on a buffer of unknown content.
    fn handle1(t: &dyn Target, dev: u32, r: Request, buf: &mut [u8]) -> i32 {
        handle(t, dev, r, buf, &mut 0)
    }

    #[test]
    fn reads_fill_the_buffer_and_return_the_byte_count() {
        let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        let t = ReadOnly(data.clone());
        let mut buf = vec![0u8; 4096];
        assert_eq!(handle1(&t, 0, req(UBLK_IO_OP_READ, 2, 4), &mut buf), 2048);
        assert_eq!(&buf[..2048], &data[1024..3072]);
        // Upper op_flags bits (REQ_FUA, ...) do not change the op.
        assert_eq!(
            handle1(&t, 0, req(UBLK_IO_OP_READ | 0x100, 0, 1), &mut buf),
            512
        );
    }

    #[test]
    fn read_only_targets_refuse_writes_and_accept_flushes() {
        let t = ReadOnly(vec![7u8; 4096]);
        let mut buf = vec![0u8; 4096];
        for op in [
            UBLK_IO_OP_WRITE,
            UBLK_IO_OP_DISCARD,
            UBLK_IO_OP_WRITE_ZEROES,
        ] {
            assert_eq!(handle1(&t, 0, req(op, 0, 8), &mut buf), -libc::EROFS);
        }
        assert_eq!(handle1(&t, 0, req(UBLK_IO_OP_FLUSH, 0, 0), &mut buf), 0);
        assert_eq!(handle1(&t, 0, req(99, 0, 1), &mut buf), -libc::EOPNOTSUPP);
    }

    #[test]
    fn read_errors_complete_with_their_errno_and_leave_no_data() {
        let t = ReadOnly(FailingReadAt {
            inner: vec![1u8; 8192],
            fail_at: 5000,
        });
        let mut buf = vec![0u8; 4096];
        assert_eq!(
            handle1(&t, 0, req(UBLK_IO_OP_READ, 8, 8), &mut buf),
            -libc::EIO
        );
        assert_eq!(handle1(&t, 0, req(UBLK_IO_OP_READ, 0, 8), &mut buf), 4096);
        // Damaged data is EIO too.
        struct Corrupt;
        impl crate::ReadAt for Corrupt {
            fn len(&self) -> u64 {
                1 << 20
            }
            fn read_exact_at(&self, _: &mut [u8], offset: u64) -> crate::Result<()> {
                Err(Error::Checksum {
                    block: 3,
                    offset,
                    stored: 1,
                    computed: 2,
                })
            }
        }
        assert_eq!(
            handle1(&ReadOnly(Corrupt), 0, req(UBLK_IO_OP_READ, 0, 8), &mut buf),
            -libc::EIO
        );
    }

    #[test]
    fn out_of_range_and_oversized_requests_are_einval() {
        let t = ReadOnly(vec![0u8; 4096]);
        let mut buf = vec![0u8; 4096];
        assert_eq!(
            handle1(&t, 0, req(UBLK_IO_OP_READ, 7, 2), &mut buf),
            -libc::EINVAL
        );
        assert_eq!(
            handle1(&t, 0, req(UBLK_IO_OP_READ, u64::MAX / 256, 1), &mut buf),
            -libc::EINVAL
        );
        let mut small = vec![0u8; 1024];
        assert_eq!(
            handle1(&t, 0, req(UBLK_IO_OP_READ, 0, 8), &mut small),
            -libc::EINVAL
        );
    }

    /// Reads as zeros below 1 MiB, as 0xdd above; counts data reads.
    struct HalfHole {
        data_reads: Mutex<u32>,
    }
    impl Target for HalfHole {
        fn size(&self) -> u64 {
            2 << 20
        }
        fn read_at(&self, buf: &mut [u8], _: u64) -> crate::Result<()> {
            *self.data_reads.lock().unwrap() += 1;
            buf.fill(0xdd);
            Ok(())
        }
        fn reads_as_zeros(&self, offset: u64, len: u64) -> bool {
            offset + len <= 1 << 20
        }
    }

    #[test]
    fn holes_are_not_read_and_zeroed_buffers_not_refilled() {
        let t = HalfHole {
            data_reads: Mutex::new(0),
        };
        let mut buf = vec![0x55u8; 8192];
        let mut zp = 0;
        let read = |start: u64, n: u32| req(UBLK_IO_OP_READ, start, n);
        // A hole: zero-filled, no data read.
        assert_eq!(handle(&t, 0, read(0, 8), &mut buf, &mut zp), 4096);
        assert!(buf[..4096].iter().all(|&b| b == 0));
        assert_eq!((zp, buf[4096]), (4096, 0x55));
        // Data overwrites the buffer, which is no longer known to be zero.
        assert_eq!(handle(&t, 0, read(2048, 16), &mut buf, &mut zp), 8192);
        assert_eq!((zp, *t.data_reads.lock().unwrap()), (0, 1));
        // The next hole fills it again.
        assert_eq!(handle(&t, 0, read(16, 16), &mut buf, &mut zp), 8192);
        assert!(buf.iter().all(|&b| b == 0));
        assert_eq!(zp, 8192);
        // With the prefix known to be zero, a hole leaves the buffer alone.
        buf[0] = 1; // (a stand-in for "not written": the test can see it)
        assert_eq!(handle(&t, 0, read(0, 8), &mut buf, &mut zp), 4096);
        assert_eq!(buf[0], 1);
        // A write puts data into the buffer.
        let mut zp = 8192;
        let _ = handle(&t, 0, req(UBLK_IO_OP_WRITE, 0, 8), &mut buf, &mut zp);
        assert_eq!(zp, 0);
    }

    #[derive(Default)]
    struct Recorder {
        ops: Mutex<Vec<String>>,
    }
    impl Target for Recorder {
        fn size(&self) -> u64 {
            1 << 20
        }
        fn read_only(&self) -> bool {
            false
        }
        fn read_at(&self, buf: &mut [u8], _: u64) -> crate::Result<()> {
            buf.fill(0xaa);
            Ok(())
        }
        fn write_at(&self, buf: &[u8], offset: u64) -> crate::Result<()> {
            self.ops
                .lock()
                .unwrap()
                .push(format!("write {offset} {} {}", buf.len(), buf[0]));
            Ok(())
        }
        fn discard(&self, offset: u64, len: u64) -> crate::Result<()> {
            self.ops
                .lock()
                .unwrap()
                .push(format!("discard {offset} {len}"));
            Ok(())
        }
        fn flush(&self) -> crate::Result<()> {
            self.ops.lock().unwrap().push("flush".into());
            Err(Error::io(
                "file",
                0,
                std::io::Error::from_raw_os_error(libc::ENOSPC),
            ))
        }
    }

    #[test]
    fn writable_targets_get_writes_discards_and_flushes() {
        let t = Recorder::default();
        let mut buf = vec![5u8; 8192];
        assert_eq!(handle1(&t, 0, req(UBLK_IO_OP_WRITE, 8, 16), &mut buf), 8192);
        assert_eq!(handle1(&t, 0, req(UBLK_IO_OP_DISCARD, 16, 8), &mut buf), 0);
        assert_eq!(
            handle1(&t, 0, req(UBLK_IO_OP_WRITE_ZEROES, 0, 1), &mut buf),
            0
        );
        assert_eq!(
            handle1(&t, 0, req(UBLK_IO_OP_FLUSH, 0, 0), &mut buf),
            -libc::ENOSPC
        );
        assert_eq!(
            *t.ops.lock().unwrap(),
            [
                "write 4096 8192 5",
                "discard 8192 4096",
                "discard 0 512",
                "flush"
            ]
        );
    }
}
