//! Opening a layer blob: tar wrapper → ZFile → LSMT, detected per file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::lsmt::Layer;
use crate::format::tar::{self, Payload};
use crate::format::zfile::{self, ZFile};
use crate::io::{FileAt, ReadAt, Slice};

/// A ZFile over any view.
pub type DynZFile = ZFile<Arc<dyn ReadAt>>;

/// Options for opening blobs.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlobOptions {
    /// ZFile options (CRC checking).
    pub zfile: zfile::OpenOptions,
}

/// A blob with its containers peeled off.
pub struct Blob {
    /// Where it came from.
    pub path: PathBuf,
    /// Size of the file as stored.
    pub file_size: u64,
    /// The tar wrapper, if any.
    pub tar: Option<Payload>,
    /// The ZFile container, if any.
    pub zfile: Option<Arc<DynZFile>>,
    /// The innermost view: what an LSMT reader sees.
    pub view: Arc<dyn ReadAt>,
}

impl Blob {
    /// Opens `path` and detects its containers.
    ///
    /// # Errors
    /// I/O errors, and format errors of a tar wrapper or ZFile that was
    /// detected but is damaged.
    pub fn open(path: &Path, opts: BlobOptions) -> Result<Self> {
        // One open description per core: reads from several threads do not
        // contend on one (see `FileAt::replicated`).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        let file: Arc<dyn ReadAt> = Arc::new(FileAt::open(path)?.replicated(cores));
        Self::from_reader(path.to_path_buf(), file, opts)
    }

    /// Detects the containers of an already open view.
    ///
    /// # Errors
    /// As [`Blob::open`].
    pub fn from_reader(path: PathBuf, file: Arc<dyn ReadAt>, opts: BlobOptions) -> Result<Self> {
        let file_size = file.len();
        let tar = tar::detect(file.as_ref())?;
        let payload: Arc<dyn ReadAt> = match &tar {
            Some(p) => Arc::new(Slice::new(file, p.offset, p.size)?),
            None => file,
        };
        let (zfile, view) = if is_zfile(payload.as_ref())? {
            let z = Arc::new(ZFile::open_with(payload, opts.zfile)?);
            (Some(z.clone()), z as Arc<dyn ReadAt>)
        } else {
            (None, payload)
        };
        Ok(Blob {
            path,
            file_size,
            tar,
            zfile,
            view,
        })
    }

    /// The container chain, outermost first, e.g. `["tar", "zfile"]`.
    pub fn containers(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.tar.is_some() {
            v.push("tar");
        }
        if self.zfile.is_some() {
            v.push("zfile");
        }
        v
    }

    /// Opens the LSMT read-only layer inside.
    ///
    /// # Errors
    /// Format errors of the LSMT layer.
    pub fn layer(&self) -> Result<Layer> {
        if !is_lsmt(self.view.as_ref())? {
            let what = match (&self.tar, &self.zfile) {
                (_, Some(_)) => "the ZFile holds no LSMT layer (a raw image?)",
                (Some(_), None) => "the tar member is not a ZFile or LSMT layer",
                (None, None) => "no tar, ZFile or LSMT magic: not an overlaybd layer blob",
            };
            return Err(Error::corrupt("layer blob", 0, what));
        }
        Layer::open_ro(self.view.clone())
    }
}

/// True when `r` starts with the ZFile magic.
///
/// # Errors
/// I/O errors from `r`.
pub fn is_zfile(r: &dyn ReadAt) -> Result<bool> {
    if r.len() < 24 {
        return Ok(false);
    }
    let mut m = [0u8; 24];
    r.read_exact_at(&mut m, 0)?;
    Ok(m[..8] == zfile::raw::MAGIC0 && m[8..24] == zfile::raw::MAGIC1)
}

/// True when `r` starts with the LSMT magic.
///
/// # Errors
/// I/O errors from `r`.
pub fn is_lsmt(r: &dyn ReadAt) -> Result<bool> {
    use crate::format::lsmt::raw::{MAGIC0, MAGIC1};
    if r.len() < 24 {
        return Ok(false);
    }
    let mut m = [0u8; 24];
    r.read_exact_at(&mut m, 0)?;
    Ok(m[..8] == MAGIC0 && m[8..24] == MAGIC1)
}
