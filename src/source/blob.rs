//! Opening a layer blob: tar wrapper → ZFile → LSMT, detected per blob.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::lsmt::layer::IndexBudget;
use crate::format::lsmt::Layer;
use crate::format::tar::{self, Payload};
use crate::format::zfile::{self, ZFile};
use crate::io::{ReadAt, Slice};
use crate::source::LayerSource;

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
    source: LayerSource,
    file_size: u64,
    tar: Option<Payload>,
    zfile: Option<Arc<DynZFile>>,
    view: Arc<dyn ReadAt>,
}

impl Blob {
    /// Opens the local file `path` and detects its containers.
    ///
    /// # Errors
    /// I/O errors, and format errors of a tar wrapper or ZFile that was
    /// detected but is damaged.
    pub fn open(path: &Path, opts: BlobOptions) -> Result<Self> {
        Self::open_source(&LayerSource::from(path), opts)
    }

    /// Opens `source` and detects its containers.
    ///
    /// # Errors
    /// As [`Blob::open`].
    pub fn open_source(source: &LayerSource, opts: BlobOptions) -> Result<Self> {
        Self::from_reader(source.clone(), source.open()?, opts)
    }

    /// Detects the containers of an already open view of `source`.
    ///
    /// # Errors
    /// As [`Blob::open`].
    pub fn from_reader(
        source: LayerSource,
        file: Arc<dyn ReadAt>,
        opts: BlobOptions,
    ) -> Result<Self> {
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
        // Bytes that no per-block CRC covers are used only once the whole
        // blob matched its digest (registry blobs; files need nothing).
        if !zfile.as_ref().is_some_and(|z| z.has_crc()) {
            source.ensure_verified()?;
        }
        Ok(Blob {
            source,
            file_size,
            tar,
            zfile,
            view,
        })
    }

    /// Where the blob came from.
    pub fn source(&self) -> &LayerSource {
        &self.source
    }

    /// Size of the blob as stored.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// The tar wrapper, if any.
    pub fn tar(&self) -> Option<&Payload> {
        self.tar.as_ref()
    }

    /// The ZFile container, if any.
    pub fn zfile(&self) -> Option<&Arc<DynZFile>> {
        self.zfile.as_ref()
    }

    /// The innermost view: what an LSMT reader sees.
    pub fn view(&self) -> &Arc<dyn ReadAt> {
        &self.view
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
        self.layer_within(&IndexBudget::default())
    }

    /// [`Blob::layer`], its index taken from `budget`.
    ///
    /// # Errors
    /// As [`Blob::layer`]; an index over the budget.
    pub fn layer_within(&self, budget: &IndexBudget) -> Result<Layer> {
        if !is_lsmt(self.view.as_ref())? {
            let what = match (&self.tar, &self.zfile) {
                (_, Some(_)) => "the ZFile holds no LSMT layer (a raw image?)",
                (Some(_), None) => "the tar member is not a ZFile or LSMT layer",
                (None, None) => "no tar, ZFile or LSMT magic: not an overlaybd layer blob",
            };
            return Err(Error::corrupt("layer blob", 0, what));
        }
        Layer::open_ro_within(self.view.clone(), budget)
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
