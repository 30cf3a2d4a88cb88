//! The NBD wire format, as the NBD project's `proto.md` describes it: the
//! fixed-newstyle handshake, options and their replies, requests, simple and
//! structured replies. Everything is big-endian. Pure encoding and decoding:
//! no I/O here.

/// `NBDMAGIC`, the first word the server sends.
pub const INIT_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: newstyle negotiation, and the start of every option.
pub const OPTS_MAGIC: u64 = 0x4948_4156_454f_5054;
/// The start of every option reply.
pub const REP_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// The start of every request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// The start of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// The start of a structured reply chunk.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

/// Handshake flags (server): fixed newstyle, and "no zeroes" understood.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
/// See [`FLAG_FIXED_NEWSTYLE`].
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
/// Client flags: the client speaks fixed newstyle.
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
/// Client flags: no 124 zero bytes after `NBD_OPT_EXPORT_NAME`.
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

/// Transmission flags.
pub mod tflag {
    /// The other flags are valid.
    pub const HAS_FLAGS: u16 = 1 << 0;
    /// The export is read-only.
    pub const READ_ONLY: u16 = 1 << 1;
    /// `NBD_CMD_FLUSH` is supported.
    pub const SEND_FLUSH: u16 = 1 << 2;
    /// `NBD_CMD_FLAG_FUA` is supported.
    pub const SEND_FUA: u16 = 1 << 3;
    /// `NBD_CMD_TRIM` is supported.
    pub const SEND_TRIM: u16 = 1 << 5;
    /// `NBD_CMD_WRITE_ZEROES` is supported.
    pub const SEND_WRITE_ZEROES: u16 = 1 << 6;
    /// `NBD_CMD_FLAG_DF` is supported.
    pub const SEND_DF: u16 = 1 << 7;
    /// Several connections see one consistent export.
    pub const CAN_MULTI_CONN: u16 = 1 << 8;
    /// `NBD_CMD_CACHE` is supported.
    pub const SEND_CACHE: u16 = 1 << 10;
}

/// Option numbers.
pub mod opt {
    /// Old way to choose the export and enter transmission.
    pub const EXPORT_NAME: u32 = 1;
    /// The client ends negotiation.
    pub const ABORT: u32 = 2;
    /// List the exports.
    pub const LIST: u32 = 3;
    /// Upgrade to TLS.
    pub const STARTTLS: u32 = 5;
    /// Describe an export.
    pub const INFO: u32 = 6;
    /// Describe an export and enter transmission.
    pub const GO: u32 = 7;
    /// Use structured replies.
    pub const STRUCTURED_REPLY: u32 = 8;
    /// List metadata contexts.
    pub const LIST_META_CONTEXT: u32 = 9;
    /// Choose metadata contexts.
    pub const SET_META_CONTEXT: u32 = 10;
}

/// Option reply types.
pub mod rep {
    /// Accepted.
    pub const ACK: u32 = 1;
    /// One export of `NBD_OPT_LIST`.
    pub const SERVER: u32 = 2;
    /// One fact of `NBD_OPT_INFO`/`GO`.
    pub const INFO: u32 = 3;
    /// One metadata context.
    pub const META_CONTEXT: u32 = 4;
    /// Unknown option.
    pub const ERR_UNSUP: u32 = (1 << 31) + 1;
    /// Refused by policy.
    pub const ERR_POLICY: u32 = (1 << 31) + 2;
    /// Malformed option.
    pub const ERR_INVALID: u32 = (1 << 31) + 3;
    /// TLS is required first (`NBD_OPT_STARTTLS`).
    pub const ERR_TLS_REQD: u32 = (1 << 31) + 5;
    /// No such export.
    pub const ERR_UNKNOWN: u32 = (1 << 31) + 6;
    /// The server is stopping.
    pub const ERR_SHUTDOWN: u32 = (1 << 31) + 7;
    /// An option payload larger than the server takes.
    pub const ERR_TOO_BIG: u32 = (1 << 31) + 9;
}

/// `NBD_REP_INFO` types.
pub mod info {
    /// Size and transmission flags.
    pub const EXPORT: u16 = 0;
    /// The export's name.
    pub const NAME: u16 = 1;
    /// A description for people.
    pub const DESCRIPTION: u16 = 2;
    /// Block size constraints.
    pub const BLOCK_SIZE: u16 = 3;
}

/// Commands.
pub mod cmd {
    /// Read.
    pub const READ: u16 = 0;
    /// Write.
    pub const WRITE: u16 = 1;
    /// Disconnect.
    pub const DISC: u16 = 2;
    /// Make completed writes durable.
    pub const FLUSH: u16 = 3;
    /// Discard.
    pub const TRIM: u16 = 4;
    /// Prefetch.
    pub const CACHE: u16 = 5;
    /// Write zeros.
    pub const WRITE_ZEROES: u16 = 6;
    /// Allocation status.
    pub const BLOCK_STATUS: u16 = 7;
}

/// Command flags.
pub mod cflag {
    /// Force unit access: persist before replying.
    pub const FUA: u16 = 1 << 0;
    /// Write zeros as allocated data, not a hole.
    pub const NO_HOLE: u16 = 1 << 1;
    /// Don't fragment the reply of a read.
    pub const DF: u16 = 1 << 2;
    /// One extent is enough.
    pub const REQ_ONE: u16 = 1 << 3;
}

/// Structured reply chunk types and flags.
pub mod chunk {
    /// The last chunk of a reply.
    pub const FLAG_DONE: u16 = 1 << 0;
    /// No payload.
    pub const NONE: u16 = 0;
    /// Data at an offset.
    pub const OFFSET_DATA: u16 = 1;
    /// Zeros at an offset.
    pub const OFFSET_HOLE: u16 = 2;
    /// Extents of one metadata context.
    pub const BLOCK_STATUS: u16 = 5;
    /// An error, with a message.
    pub const ERROR: u16 = (1 << 15) + 1;
}

/// `base:allocation` flags.
pub mod state {
    /// Not allocated.
    pub const HOLE: u32 = 1 << 0;
    /// Reads as zeros.
    pub const ZERO: u32 = 1 << 1;
}

/// The one metadata context obd serves.
pub const BASE_ALLOCATION: &str = "base:allocation";
/// Its id in this server.
pub const BASE_ALLOCATION_ID: u32 = 1;

/// NBD error numbers (Linux values, as the protocol defines them).
pub mod errno {
    /// Not permitted (a write to a read-only export).
    pub const EPERM: u32 = 1;
    /// I/O error (damaged data, failed read).
    pub const EIO: u32 = 5;
    /// Out of memory.
    pub const ENOMEM: u32 = 12;
    /// Invalid request (out of range, unknown command).
    pub const EINVAL: u32 = 22;
    /// No space.
    pub const ENOSPC: u32 = 28;
    /// Value too large (a read too large for one chunk).
    pub const EOVERFLOW: u32 = 75;
    /// Not supported.
    pub const ENOTSUP: u32 = 95;
    /// The server is shutting down.
    pub const ESHUTDOWN: u32 = 108;
}

/// Maps an operating-system errno to the NBD error to send.
pub fn nbd_errno(os: i32) -> u32 {
    match os {
        libc::EPERM | libc::EROFS => errno::EPERM,
        libc::ENOMEM => errno::ENOMEM,
        libc::EINVAL => errno::EINVAL,
        libc::ENOSPC | libc::EDQUOT => errno::ENOSPC,
        libc::EOVERFLOW => errno::EOVERFLOW,
        libc::EOPNOTSUPP => errno::ENOTSUP,
        _ => errno::EIO,
    }
}

/// Bytes of a request header.
pub const REQUEST_LEN: usize = 28;

/// A request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Command flags.
    pub flags: u16,
    /// The command.
    pub kind: u16,
    /// The client's cookie, echoed in the reply.
    pub cookie: u64,
    /// Byte offset in the export.
    pub offset: u64,
    /// Bytes.
    pub length: u32,
}

impl Request {
    /// Decodes a request header.
    ///
    /// # Errors
    /// A wrong magic (the stream is out of step: the connection must end).
    pub fn parse(b: &[u8; REQUEST_LEN]) -> Result<Self, u32> {
        let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if magic != REQUEST_MAGIC {
            return Err(magic);
        }
        Ok(Request {
            flags: u16::from_be_bytes([b[4], b[5]]),
            kind: u16::from_be_bytes([b[6], b[7]]),
            cookie: u64::from_be_bytes(b[8..16].try_into().unwrap_or_default()),
            offset: u64::from_be_bytes(b[16..24].try_into().unwrap_or_default()),
            length: u32::from_be_bytes(b[24..28].try_into().unwrap_or_default()),
        })
    }

    /// The header bytes (clients and tests).
    pub fn to_bytes(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        b[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b[6..8].copy_from_slice(&self.kind.to_be_bytes());
        b[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        b[16..24].copy_from_slice(&self.offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.length.to_be_bytes());
        b
    }
}

/// A simple reply header (16 bytes); data follows for a successful read.
pub fn simple_reply(cookie: u64, error: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&error.to_be_bytes());
    b[8..16].copy_from_slice(&cookie.to_be_bytes());
    b
}

/// A structured reply chunk header (20 bytes); `length` bytes of payload
/// follow.
pub fn chunk_header(cookie: u64, flags: u16, kind: u16, length: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&flags.to_be_bytes());
    b[6..8].copy_from_slice(&kind.to_be_bytes());
    b[8..16].copy_from_slice(&cookie.to_be_bytes());
    b[16..20].copy_from_slice(&length.to_be_bytes());
    b
}

/// A structured error chunk (the last of its reply) with a message.
pub fn error_chunk(cookie: u64, error: u32, message: &str) -> Vec<u8> {
    // Messages are at most 4096 bytes; obd's are short.
    let msg = &message.as_bytes()[..message.len().min(4096)];
    let mut payload = Vec::with_capacity(6 + msg.len());
    payload.extend_from_slice(&error.to_be_bytes());
    payload.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    payload.extend_from_slice(msg);
    let mut out =
        chunk_header(cookie, chunk::FLAG_DONE, chunk::ERROR, payload.len() as u32).to_vec();
    out.extend_from_slice(&payload);
    out
}

/// An option reply: header and data.
pub fn option_reply(option: u32, kind: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + data.len());
    out.extend_from_slice(&REP_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// A cursor over an option's data: every read is checked against what is
/// there (a malformed option is `None`, never a panic).
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    /// Fields of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Fields { rest: data }
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (a, b) = self.rest.split_at(n);
        self.rest = b;
        Some(a)
    }

    /// A big-endian u16.
    pub fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian u32.
    pub fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A string preceded by its u32 length (at most 4096 bytes, UTF-8).
    pub fn string(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        if n > 4096 {
            return None;
        }
        std::str::from_utf8(self.bytes(n)?).ok()
    }

    /// True when every byte was read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_a_bad_magic_is_refused() {
        let r = Request {
            flags: cflag::FUA,
            kind: cmd::WRITE,
            cookie: 0x0102_0304_0506_0708,
            offset: 1 << 40,
            length: 4096,
        };
        let b = r.to_bytes();
        assert_eq!(&b[..4], &[0x25, 0x60, 0x95, 0x13]);
        assert_eq!(Request::parse(&b), Ok(r));
        let mut bad = b;
        bad[0] = 0;
        assert!(Request::parse(&bad).is_err());
    }

    #[test]
    fn replies_are_laid_out_as_the_protocol_says() {
        let s = simple_reply(7, errno::EIO);
        assert_eq!(&s[..4], &[0x67, 0x44, 0x66, 0x98]);
        assert_eq!(u32::from_be_bytes(s[4..8].try_into().unwrap()), 5);
        let c = error_chunk(7, errno::EINVAL, "out of range");
        assert_eq!(&c[..4], &[0x66, 0x8e, 0x33, 0xef]);
        assert_eq!(u16::from_be_bytes([c[4], c[5]]), chunk::FLAG_DONE);
        assert_eq!(u16::from_be_bytes([c[6], c[7]]), 0x8001);
        assert_eq!(u32::from_be_bytes(c[16..20].try_into().unwrap()), 6 + 12);
        let o = option_reply(opt::GO, rep::ACK, &[]);
        assert_eq!(o.len(), 20);
        assert_eq!(&o[..8], &REP_MAGIC.to_be_bytes());
    }

    #[test]
    fn fields_never_read_past_the_data() {
        let mut f = Fields::new(&[0, 0, 0, 9, b'a']);
        assert_eq!(f.string(), None);
        let mut f = Fields::new(&[0, 0, 0, 1, b'a', 0, 2]);
        assert_eq!(f.string(), Some("a"));
        assert_eq!(f.u16(), Some(2));
        assert!(f.is_empty());
        assert_eq!(f.u32(), None);
        let mut huge = vec![0u8; 4];
        huge[..4].copy_from_slice(&5000u32.to_be_bytes());
        assert_eq!(Fields::new(&huge).string(), None);
    }
}
