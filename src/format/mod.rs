//! On-disk formats: LSMT layers, ZFile containers and the tar wrapper, with
//! the CRC32C and UUID forms they use. Every parser here reads a
//! [`ReadAt`](crate::io::ReadAt) and never knows where the bytes come from.

pub mod checksum;
pub mod lsmt;
pub mod tar;
pub mod uuid;
pub mod zfile;
