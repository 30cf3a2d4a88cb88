//! OCI image layout directories (`oci:DIR[:TAG]`): `oci-layout`,
//! `index.json` and `blobs/sha256/<hex>`, as skopeo, umoci and buildah
//! write them. obd reads an overlaybd image's layers from one in place and
//! writes images into one (`obd push ... oci:DIR:TAG`).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io::atomic::AtomicFile;
use crate::source::digest::Digest;
use crate::source::image::{
    self, parse_document, pick_platform, Descriptor, Document, Index, LayerBlob, Manifest,
    ANN_REF_NAME, MAX_MANIFEST, OCI_INDEX,
};

/// An image found in a layout.
#[derive(Debug, Clone)]
pub struct LayoutImage {
    /// The manifest's digest.
    pub manifest_digest: Digest,
    /// The manifest.
    pub manifest: Manifest,
    /// Each layer's blob file and descriptor, bottom first.
    pub layers: Vec<(PathBuf, LayerBlob)>,
}

/// The path of blob `d` in layout `dir`.
pub fn blob_path(dir: &Path, d: &Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(d.hex())
}

fn layout_error(dir: &Path, detail: impl std::fmt::Display) -> Error {
    Error::invalid("oci layout", format!("{}: {detail}", dir.display()))
}

/// Reads `path` whole when it is at most `limit` bytes.
fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let f = File::open(path).map_err(|e| Error::file(path, "open", e))?;
    let len = f
        .metadata()
        .map_err(|e| Error::file(path, "read", e))?
        .len();
    if len > limit {
        return Err(Error::invalid(
            "oci layout",
            format!("{}: {len} bytes (at most {limit} expected)", path.display()),
        ));
    }
    let mut buf = Vec::with_capacity(len as usize);
    f.take(limit)
        .read_to_end(&mut buf)
        .map_err(|e| Error::file(path, "read", e))?;
    Ok(buf)
}

/// Reads a small blob (manifest, index, config) a descriptor names and
/// checks its size and digest.
fn read_blob(dir: &Path, d: &Descriptor) -> Result<Vec<u8>> {
    let digest = d.digest()?;
    if d.size > MAX_MANIFEST {
        return Err(layout_error(
            dir,
            format!(
                "{digest}: a {} byte manifest (at most {MAX_MANIFEST})",
                d.size
            ),
        ));
    }
    let bytes = read_limited(&blob_path(dir, &digest), MAX_MANIFEST)?;
    if bytes.len() as u64 != d.size || Digest::of(&bytes) != digest {
        return Err(layout_error(
            dir,
            format!(
                "blob {digest} does not match its descriptor ({} bytes, digest {})",
                bytes.len(),
                Digest::of(&bytes)
            ),
        ));
    }
    Ok(bytes)
}

/// The layout's `index.json`.
///
/// # Errors
/// Not a layout (no `oci-layout`), unreadable or malformed index.
pub fn read_index(dir: &Path) -> Result<Index> {
    let marker = dir.join("oci-layout");
    let m = read_limited(&marker, 4096).map_err(|e| match e {
        Error::File { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound => {
            layout_error(dir, "not an OCI image layout (no oci-layout file)")
        }
        e => e,
    })?;
    let v: serde_json::Value =
        serde_json::from_slice(&m).map_err(|e| layout_error(dir, format!("oci-layout: {e}")))?;
    if v.get("imageLayoutVersion").and_then(|x| x.as_str()) != Some("1.0.0") {
        return Err(layout_error(
            dir,
            "oci-layout: imageLayoutVersion is not 1.0.0",
        ));
    }
    let bytes = read_limited(&dir.join("index.json"), MAX_MANIFEST)?;
    match parse_document(&bytes, Some(OCI_INDEX))
        .map_err(|e| layout_error(dir, format!("index.json: {e}")))?
    {
        Document::Index(ix) => Ok(ix),
        Document::Manifest(_) => Err(layout_error(dir, "index.json is not an image index")),
    }
}

fn tags(ix: &Index) -> String {
    let t: Vec<&str> = ix
        .manifests
        .iter()
        .filter_map(|d| d.annotations.get(ANN_REF_NAME).map(String::as_str))
        .collect();
    if t.is_empty() {
        "none".to_string()
    } else {
        t.join(", ")
    }
}

/// The overlaybd image at `tag` (or the only image) in layout `dir`.
///
/// # Errors
/// No such tag, several images and no tag, a blob missing or not matching
/// its descriptor, an image that is not in overlaybd format.
pub fn open_image(dir: &Path, tag: Option<&str>) -> Result<LayoutImage> {
    let ix = read_index(dir)?;
    let desc = match tag {
        Some(t) => ix
            .manifests
            .iter()
            .find(|d| d.annotations.get(ANN_REF_NAME).map(String::as_str) == Some(t))
            .ok_or_else(|| {
                layout_error(dir, format!("no image tagged {t:?} (tags: {})", tags(&ix)))
            })?,
        None => match ix.manifests.as_slice() {
            [one] => one,
            [] => return Err(layout_error(dir, "the layout holds no image")),
            _ => {
                return Err(layout_error(
                    dir,
                    format!(
                        "the layout holds {} images; name one as oci:DIR:TAG (tags: {})",
                        ix.manifests.len(),
                        tags(&ix)
                    ),
                ))
            }
        },
    };
    let mut desc = desc.clone();
    // An index inside: follow it to the host's manifest (one level).
    for _ in 0..2 {
        let bytes = read_blob(dir, &desc)?;
        let doc =
            parse_document(&bytes, Some(&desc.media_type)).map_err(|e| layout_error(dir, e))?;
        match doc {
            Document::Index(inner) => desc = pick_platform(&inner)?.clone(),
            Document::Manifest(manifest) => {
                let blobs = image::overlaybd_layers(&manifest).map_err(|e| layout_error(dir, e))?;
                let mut layers = Vec::with_capacity(blobs.len());
                for b in blobs {
                    let p = blob_path(dir, &b.digest);
                    let len = std::fs::metadata(&p)
                        .map_err(|e| Error::file(&p, "open", e))?
                        .len();
                    if len != b.size {
                        return Err(layout_error(
                            dir,
                            format!(
                                "layer blob {}: {len} bytes, the manifest says {}",
                                b.digest, b.size
                            ),
                        ));
                    }
                    layers.push((p, b));
                }
                return Ok(LayoutImage {
                    manifest_digest: Digest::of(&bytes),
                    manifest,
                    layers,
                });
            }
        }
    }
    Err(layout_error(
        dir,
        "an index of indexes (obd follows one level)",
    ))
}

/// The sha256 digest and size of a file.
///
/// # Errors
/// Read errors.
pub fn digest_file(path: &Path) -> Result<LayerBlob> {
    use sha2::Digest as _;
    let mut f = File::open(path).map_err(|e| Error::file(path, "open", e))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::file(path, "read", e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok(LayerBlob {
        digest: Digest::from_hasher(h),
        size,
    })
}

/// Makes layout `dir` (its `oci-layout` marker and blob directory) if
/// it is not one yet.
///
/// # Errors
/// File-system errors.
pub fn init(dir: &Path) -> Result<()> {
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| Error::file(&blobs, "create", e))?;
    let marker = dir.join("oci-layout");
    if !marker.exists() {
        let mut out = AtomicFile::create(&marker, true)?;
        std::io::Write::write_all(out.file_mut(), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .map_err(|e| Error::file(&marker, "write", e))?;
        out.commit()?;
    }
    Ok(())
}

/// Names manifest `digest` (`size` bytes, already a blob) in `index.json`
/// under `tag` (untagged when None): the file is read, updated and
/// replaced atomically under an exclusive lock on the directory, so that
/// two writers into one layout keep both tags; an image that had the tag
/// leaves the index (its blobs stay).
///
/// # Errors
/// File-system errors; a malformed existing index.
pub fn set_tag(dir: &Path, tag: Option<&str>, digest: Digest, size: u64) -> Result<()> {
    let dirf = File::open(dir).map_err(|e| Error::file(dir, "open", e))?;
    rustix::fs::flock(&dirf, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Error::file(dir, "lock", e.into()))?;
    let mut ix = if dir.join("index.json").exists() {
        read_index(dir)?
    } else {
        Index {
            schema_version: 2,
            media_type: OCI_INDEX.into(),
            manifests: Vec::new(),
            annotations: Default::default(),
        }
    };
    ix.manifests.retain(|d| match tag {
        Some(t) => d.annotations.get(ANN_REF_NAME).map(String::as_str) != Some(t),
        None => d.digest != digest.to_string() || d.annotations.contains_key(ANN_REF_NAME),
    });
    let mut entry = Descriptor {
        media_type: image::OCI_MANIFEST.into(),
        digest: digest.to_string(),
        size,
        annotations: Default::default(),
        platform: None,
    };
    if let Some(t) = tag {
        entry
            .annotations
            .insert(ANN_REF_NAME.to_string(), t.to_string());
    }
    ix.manifests.push(entry);
    let bytes = serde_json::to_vec(&ix).map_err(|e| layout_error(dir, e))?;
    let index_path = dir.join("index.json");
    let mut out = AtomicFile::create(&index_path, true)?;
    std::io::Write::write_all(out.file_mut(), &bytes)
        .map_err(|e| Error::file(&index_path, "write", e))?;
    out.commit()
}

/// Writes `bytes` as a blob unless the layout has it.
///
/// # Errors
/// File-system errors.
pub fn put_bytes(dir: &Path, bytes: &[u8]) -> Result<Digest> {
    let d = Digest::of(bytes);
    let p = blob_path(dir, &d);
    if std::fs::metadata(&p).is_ok_and(|m| m.len() == bytes.len() as u64) {
        return Ok(d);
    }
    let mut out = AtomicFile::create(&p, true)?;
    std::io::Write::write_all(out.file_mut(), bytes).map_err(|e| Error::file(&p, "write", e))?;
    out.commit()?;
    Ok(d)
}

/// Copies a layer file into the layout as blob `b` unless it is there;
/// true when it was copied.
fn put_file(dir: &Path, src: &Path, b: LayerBlob) -> Result<bool> {
    let p = blob_path(dir, &b.digest);
    if std::fs::metadata(&p).is_ok_and(|m| m.len() == b.size) {
        return Ok(false);
    }
    let mut input = File::open(src).map_err(|e| Error::file(src, "open", e))?;
    let mut out = AtomicFile::create(&p, true)?;
    let n = std::io::copy(&mut input, out.file_mut()).map_err(|e| Error::file(&p, "write", e))?;
    if n != b.size {
        return Err(Error::invalid(
            "push",
            format!(
                "{}: changed while it was pushed ({n} bytes, {} before)",
                src.display(),
                b.size
            ),
        ));
    }
    out.commit()?;
    Ok(true)
}

/// What [`write_image`] did.
#[derive(Debug, Clone)]
pub struct Written {
    /// The manifest's digest.
    pub manifest_digest: Digest,
    /// The manifest's size.
    pub manifest_size: u64,
    /// Per layer: copied (false: the layout had it).
    pub copied: Vec<bool>,
}

/// Writes an overlaybd image of `layers` (files with their digests) into
/// layout `dir` (created if missing), tagged `tag`: blobs first, then the
/// config and manifest, then `index.json` (replaced atomically, under a
/// lock on the directory; an image that had the tag leaves the index).
///
/// # Errors
/// File-system errors; a layer that changed while it was copied.
pub fn write_image(dir: &Path, tag: &str, layers: &[(PathBuf, LayerBlob)]) -> Result<Written> {
    init(dir)?;
    let mut copied = Vec::with_capacity(layers.len());
    for (src, b) in layers {
        copied.push(put_file(dir, src, *b)?);
    }
    let descs: Vec<LayerBlob> = layers.iter().map(|(_, b)| *b).collect();
    let (config, manifest) = image::build_image(&descs);
    put_bytes(dir, &config)?;
    let manifest_digest = put_bytes(dir, &manifest)?;
    set_tag(dir, Some(tag), manifest_digest, manifest.len() as u64)?;
    Ok(Written {
        manifest_digest,
        manifest_size: manifest.len() as u64,
        copied,
    })
}
