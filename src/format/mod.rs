//! On-disk formats: LSMT layers, ZFile containers and the tar wrapper.

pub mod lsmt;
pub mod tar;
pub mod zfile;
