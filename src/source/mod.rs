//! Where a layer's bytes come from.
//!
//! A [`LayerSource`] names a layer blob: today a local file, tomorrow a blob
//! in a registry. Opening one gives a [`ReadAt`] of the blob as stored,
//! which [`Blob`] peels (tar → ZFile → LSMT) whatever the source.
//!
//! - [`blob`]: a blob's containers detected ([`Blob`]);
//! - [`config`]: overlaybd's image config (`config.v1.json`), which names
//!   the sources of a stack.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Result;
use crate::io::ReadAt;

pub mod blob;
pub mod config;

pub use crate::io::FileAt;
pub use blob::{Blob, BlobOptions};

/// A layer blob, named by where it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LayerSource {
    /// A file on the local file system.
    File(PathBuf),
}

impl LayerSource {
    /// A local file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        LayerSource::File(path.into())
    }

    /// The local path, for a file source.
    pub fn path(&self) -> Option<&Path> {
        match self {
            LayerSource::File(p) => Some(p),
        }
    }

    /// Opens the blob's bytes as stored (containers not yet peeled).
    ///
    /// # Errors
    /// The open error.
    pub fn open(&self) -> Result<Arc<dyn ReadAt>> {
        match self {
            LayerSource::File(p) => {
                // One open description per core: reads from several threads
                // do not contend on one (see `FileAt::replicated`).
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
                Ok(Arc::new(FileAt::open(p)?.replicated(cores)))
            }
        }
    }
}

impl std::fmt::Display for LayerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

impl From<PathBuf> for LayerSource {
    fn from(p: PathBuf) -> Self {
        LayerSource::File(p)
    }
}

impl From<&Path> for LayerSource {
    fn from(p: &Path) -> Self {
        LayerSource::File(p.to_path_buf())
    }
}
