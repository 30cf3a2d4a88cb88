//! The library's error type.
//!
//! Every variant names *what* was being read (a singular noun such as
//! "lsmt trailer" or "zfile jump table") and, where it makes sense, the byte
//! offset inside the view being read, so that the binary can print one line:
//! `obd: <file>: <what> at <offset>: <why>`.

use std::fmt;
use std::io;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading or writing layer blobs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs)] // field names say what they hold
pub enum Error {
    /// The operating system failed a read or write.
    // `cause`, not `source`: thiserror would make a field named `source` the
    // error's source, and the message already carries it (anyhow would print
    // it twice).
    #[error("{what} at {offset:#x}: {cause}")]
    Io {
        what: &'static str,
        offset: u64,
        cause: io::Error,
    },
    /// A file could not be opened.
    #[error("cannot open: {}", os_message(cause))]
    Open { cause: io::Error },
    /// A file-system step on a named file failed (creating, naming or
    /// syncing an output): `path: cannot create: No such file or directory`.
    #[error("{path}: cannot {action}: {}", os_message(cause))]
    File {
        path: String,
        action: &'static str,
        cause: io::Error,
    },
    /// A magic number did not match.
    #[error("{what} at {offset:#x}: bad magic")]
    BadMagic { what: &'static str, offset: u64 },
    /// A structure is inconsistent.
    #[error("{what} at {offset:#x}: {detail}")]
    Corrupt {
        what: &'static str,
        offset: u64,
        detail: String,
    },
    /// A well-formed value that obd does not implement.
    #[error("{what} at {offset:#x}: unsupported {detail}")]
    Unsupported {
        what: &'static str,
        offset: u64,
        detail: String,
    },
    /// A ZFile block failed its CRC32C check.
    #[error(
        "zfile block {block} at {offset:#x}: crc32c mismatch (stored {stored:#010x}, computed {computed:#010x})"
    )]
    Checksum {
        block: u64,
        offset: u64,
        stored: u32,
        computed: u32,
    },
    /// A read asked for bytes past the end of a view.
    #[error("{what}: read of {len} bytes at {offset:#x} is past the end ({size:#x} bytes)")]
    OutOfRange {
        what: &'static str,
        offset: u64,
        len: u64,
        size: u64,
    },
    /// An error inside one layer of a stack.
    #[error("{path}: {inner}")]
    InLayer {
        path: String,
        // Displayed inline (see `Io`).
        inner: Box<Error>,
    },
    /// An argument given to the library is not acceptable.
    #[error("{what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    /// A registry (or the blob storage it redirects to) failed a request or
    /// answered something unusable: `registry 127.0.0.1:5000: GET ...: why`.
    /// Never carries credentials or signed URLs.
    #[error("{place}: {detail}")]
    Remote { place: String, detail: String },
}

impl Error {
    /// Shorthand for [`Error::Corrupt`].
    pub fn corrupt(what: &'static str, offset: u64, detail: impl fmt::Display) -> Self {
        Error::Corrupt {
            what,
            offset,
            detail: detail.to_string(),
        }
    }

    /// Shorthand for [`Error::Unsupported`].
    pub fn unsupported(what: &'static str, offset: u64, detail: impl fmt::Display) -> Self {
        Error::Unsupported {
            what,
            offset,
            detail: detail.to_string(),
        }
    }

    /// Shorthand for [`Error::Remote`].
    pub fn remote(place: impl fmt::Display, detail: impl fmt::Display) -> Self {
        Error::Remote {
            place: place.to_string(),
            detail: detail.to_string(),
        }
    }

    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(what: &'static str, detail: impl fmt::Display) -> Self {
        Error::Invalid {
            what,
            detail: detail.to_string(),
        }
    }

    /// Wraps an I/O error.
    pub fn io(what: &'static str, offset: u64, cause: io::Error) -> Self {
        Error::Io {
            what,
            offset,
            cause,
        }
    }

    /// Wraps the error of opening a file.
    pub fn open(cause: io::Error) -> Self {
        Error::Open { cause }
    }

    /// The errno a block device should report for this error: the OS error
    /// for I/O failures, `EINVAL` for unusable arguments and `EIO` for
    /// everything that is wrong with the data.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Io { cause, .. } | Error::Open { cause } | Error::File { cause, .. } => {
                cause.raw_os_error().unwrap_or(libc::EIO)
            }
            Error::Invalid { .. } | Error::OutOfRange { .. } => libc::EINVAL,
            Error::InLayer { inner, .. } => inner.errno(),
            _ => libc::EIO,
        }
    }

    /// True when the error says the data is damaged (as opposed to an
    /// operating-system failure or an unsupported feature).
    pub fn is_corruption(&self) -> bool {
        match self {
            Error::InLayer { inner, .. } => inner.is_corruption(),
            e => matches!(
                e,
                Error::BadMagic { .. } | Error::Corrupt { .. } | Error::Checksum { .. }
            ),
        }
    }
}

/// An OS error as people read it: `No such file or directory`, without
/// Rust's `(os error 2)` or a temporary path a wrapper added.
pub fn os_message(e: &io::Error) -> String {
    match raw_os_error(e) {
        Some(n) => strip_os_error(&io::Error::from_raw_os_error(n).to_string()).to_string(),
        None => e.to_string(),
    }
}

/// The OS error number of `e`, or of the I/O error a wrapper (such as a
/// temporary-file crate's path error) carries.
fn raw_os_error(e: &io::Error) -> Option<i32> {
    if let Some(n) = e.raw_os_error() {
        return Some(n);
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|i| i as _);
    while let Some(c) = cur {
        if let Some(n) = c
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
        {
            return Some(n);
        }
        cur = c.source();
    }
    // A wrapper that kept only the kind: the usual errno of that kind.
    use io::ErrorKind as K;
    match e.kind() {
        K::NotFound => Some(libc::ENOENT),
        K::PermissionDenied => Some(libc::EACCES),
        K::ReadOnlyFilesystem => Some(libc::EROFS),
        K::StorageFull => Some(libc::ENOSPC),
        K::AlreadyExists => Some(libc::EEXIST),
        K::NotADirectory => Some(libc::ENOTDIR),
        K::IsADirectory => Some(libc::EISDIR),
        _ => None,
    }
}

/// `text` without Rust's ` (os error N)` after an OS message.
pub fn strip_os_error(text: &str) -> std::borrow::Cow<'_, str> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(" (os error ") {
        let tail = &rest[i + " (os error ".len()..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && tail[digits..].starts_with(')') {
            out.push_str(&rest[..i]);
            rest = &tail[digits + 1..];
        } else {
            out.push_str(&rest[..i + 1]);
            rest = &rest[i + 1..];
        }
    }
    if out.is_empty() {
        return std::borrow::Cow::Borrowed(rest);
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

impl Error {
    /// Shorthand for [`Error::File`].
    pub fn file(path: &std::path::Path, action: &'static str, cause: io::Error) -> Self {
        Error::File {
            path: path.display().to_string(),
            action,
            cause,
        }
    }
}

/// `a + b`, or a [`Error::Corrupt`] naming `what` on overflow.
pub fn checked_add(a: u64, b: u64, what: &'static str, offset: u64) -> Result<u64> {
    a.checked_add(b)
        .ok_or_else(|| Error::corrupt(what, offset, format!("{a} + {b} overflows")))
}

/// `a * b`, or a [`Error::Corrupt`] naming `what` on overflow.
pub fn checked_mul(a: u64, b: u64, what: &'static str, offset: u64) -> Result<u64> {
    a.checked_mul(b)
        .ok_or_else(|| Error::corrupt(what, offset, format!("{a} * {b} overflows")))
}

/// Unwraps the library error a [`std::io::Write`] impl carried through `io::Error`.
pub fn from_io(what: &'static str, offset: u64, e: std::io::Error) -> Error {
    if e.get_ref().is_some_and(|i| i.is::<Error>()) {
        match e.into_inner().map(|i| i.downcast::<Error>()) {
            Some(Ok(inner)) => *inner,
            Some(Err(other)) => Error::io(what, offset, std::io::Error::other(other)),
            None => Error::invalid(what, "unknown error"),
        }
    } else {
        Error::io(what, offset, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line_with_offset() {
        let e = Error::corrupt("lsmt index", 0x2000, "entries overlap");
        assert_eq!(e.to_string(), "lsmt index at 0x2000: entries overlap");
        let e = Error::Checksum {
            block: 3,
            offset: 0x400,
            stored: 1,
            computed: 2,
        };
        assert!(e
            .to_string()
            .starts_with("zfile block 3 at 0x400: crc32c mismatch"));
    }

    #[test]
    fn errno_mapping() {
        let e = Error::io("file", 0, io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(e.errno(), libc::ENOSPC);
        assert_eq!(Error::corrupt("x", 0, "y").errno(), libc::EIO);
        assert_eq!(Error::invalid("x", "y").errno(), libc::EINVAL);
        assert!(checked_add(u64::MAX, 1, "x", 0).is_err());
        assert!(checked_mul(u64::MAX, 2, "x", 0).is_err());
    }
}
