//! Where a layer's bytes come from.
//!
//! A [`LayerSource`] names a layer blob: a local file or a blob in a
//! registry. Opening one gives a [`ReadAt`] of the blob as stored, which
//! [`Blob`] peels (tar → ZFile → LSMT) whatever the source. An image
//! reference ([`reference::ImageRef`]: `docker://…` or `oci:DIR:TAG`)
//! resolves to the sources of its layers ([`resolve`]).
//!
//! - [`blob`]: a blob's containers detected ([`Blob`]);
//! - [`config`]: overlaybd's image config (`config.v1.json`), which names
//!   the sources of a stack;
//! - [`reference`](mod@reference), [`digest`], [`image`]: image references, digests,
//!   manifests;
//! - [`layout`]: OCI image layout directories;
//! - [`registry`]: registry clients; [`remote`]: registry blobs read
//!   lazily through [`cache`], the local blob cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Result;
use crate::io::ReadAt;

pub mod blob;
pub mod cache;
pub mod config;
pub mod digest;
pub mod image;
pub mod layout;
pub mod reference;
pub mod registry;
pub mod remote;

pub use crate::io::FileAt;
pub use blob::{Blob, BlobOptions};

/// A layer blob, named by where it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LayerSource {
    /// A file on the local file system.
    File(PathBuf),
    /// A blob in a registry, read lazily through the cache.
    Remote(remote::RemoteLayer),
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
            LayerSource::Remote(_) => None,
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
            LayerSource::Remote(r) => Ok(r.open()?),
        }
    }

    /// For a registry blob: starts fetching its first and last chunks in
    /// the background (headers, trailers and indexes live there), so that
    /// opening a stack waits about one round trip for all its layers.
    /// Nothing for files.
    pub fn prefetch_ends(&self) {
        if let LayerSource::Remote(r) = self {
            r.prefetch_ends();
        }
    }

    /// For a registry blob: fetches and checks it whole unless it is
    /// already (used for blobs without per-block checksums, whose bytes
    /// are served only once the digest matched). Nothing for files.
    ///
    /// # Errors
    /// Fetch errors; a digest mismatch.
    pub fn ensure_verified(&self) -> Result<()> {
        match self {
            LayerSource::File(_) => Ok(()),
            LayerSource::Remote(r) => r.ensure_verified(),
        }
    }
}

impl std::fmt::Display for LayerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerSource::File(p) => write!(f, "{}", p.display()),
            LayerSource::Remote(r) => write!(f, "{r}"),
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

/// An image's layers, resolved from its reference.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The reference as given.
    pub reference: reference::ImageRef,
    /// The manifest's digest.
    pub manifest_digest: digest::Digest,
    /// The layers, bottom first.
    pub layers: Vec<LayerSource>,
    /// Their blobs (digest and size), bottom first.
    pub blobs: Vec<image::LayerBlob>,
}

/// Resolves an image reference to its layers: reads the layout's index
/// or fetches the manifest (following an index to the host's platform),
/// and checks that the image is an overlaybd image. Registry layers are
/// read lazily afterwards. No thread is started (servers fork after this).
///
/// # Errors
/// Unreachable registry, missing image, not an overlaybd image.
pub fn resolve(
    r: &reference::ImageRef,
    ctx: Option<&Arc<remote::RemoteContext>>,
) -> Result<ResolvedImage> {
    match r {
        reference::ImageRef::Layout { dir, tag } => {
            let img = layout::open_image(dir, tag.as_deref())?;
            Ok(ResolvedImage {
                reference: r.clone(),
                manifest_digest: img.manifest_digest,
                blobs: img.layers.iter().map(|(_, b)| *b).collect(),
                layers: img
                    .layers
                    .into_iter()
                    .map(|(p, _)| LayerSource::File(p))
                    .collect(),
            })
        }
        reference::ImageRef::Registry(rr) => {
            let ctx = ctx.ok_or_else(|| {
                crate::error::Error::invalid("image reference", "registry access is not set up")
            })?;
            let (manifest_digest, manifest, _) = fetch_manifest(ctx, rr)?;
            let blobs = image::overlaybd_layers(&manifest)
                .map_err(|e| crate::error::Error::invalid("image", format!("{rr}: {e}")))?;
            let layers: Vec<remote::RemoteLayer> = blobs
                .iter()
                .map(|b| remote::RemoteLayer {
                    registry: rr.registry.clone(),
                    repo: rr.repository.clone(),
                    blob: *b,
                    ctx: ctx.clone(),
                })
                .collect();
            Ok(ResolvedImage {
                reference: r.clone(),
                manifest_digest,
                blobs,
                layers: layers.into_iter().map(LayerSource::Remote).collect(),
            })
        }
    }
}

/// The image manifest a registry reference names, following an index to
/// the host's platform: its digest, the manifest and its bytes.
///
/// # Errors
/// As the requests fail; documents that are neither manifest nor index.
pub fn fetch_manifest(
    ctx: &remote::RemoteContext,
    rr: &reference::RegistryRef,
) -> Result<(digest::Digest, image::Manifest, Vec<u8>)> {
    let reg = ctx.registry(&rr.registry)?;
    let mut want = rr.manifest_ref();
    for _ in 0..2 {
        let (bytes, media, digest) = reg.manifest(&rr.repository, &want)?;
        match image::parse_document(&bytes, Some(&media))
            .map_err(|e| crate::error::Error::invalid("image", format!("{rr}: {e}")))?
        {
            image::Document::Manifest(m) => return Ok((digest, m, bytes)),
            image::Document::Index(ix) => {
                let d = image::pick_platform(&ix)
                    .map_err(|e| crate::error::Error::invalid("image", format!("{rr}: {e}")))?;
                want = d.digest()?.to_string();
            }
        }
    }
    Err(crate::error::Error::invalid(
        "image",
        format!("{rr}: an index of indexes (obd follows one level)"),
    ))
}
