//! Pushing layer files as an overlaybd image: to a registry (blobs the
//! registry has are skipped, blobs it has in another repository mounted,
//! the rest uploaded in chunks) or into an OCI layout; then the config
//! (`rootfs.diff_ids` = the blob digests) and the manifest with the
//! overlaybd annotations.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::source::image::{self, LayerBlob};
use crate::source::layout;
use crate::source::reference::ImageRef;
use crate::source::registry::client::Body;
use crate::source::remote::RemoteContext;

/// Upload chunk size (one PATCH each).
pub const UPLOAD_CHUNK: u64 = 64 << 20;

/// One layer's fate.
#[derive(Debug, Clone, Serialize)]
pub struct PushedLayer {
    /// The file.
    pub path: String,
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// `uploaded`, `exists` (the registry or layout had it), `mounted`
    /// (from another repository of the registry) or `copied` (into a layout).
    pub action: &'static str,
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// Where the image went, with its tag.
    pub destination: String,
    /// The manifest's digest.
    pub manifest_digest: String,
    /// The manifest's size.
    pub manifest_size: u64,
    /// The config's digest.
    pub config_digest: String,
    /// The layers, bottom first.
    pub layers: Vec<PushedLayer>,
    /// Bytes of layer blobs sent or copied.
    pub transferred_bytes: u64,
    /// Wall time.
    pub seconds: f64,
    /// Decimal megabytes per second of the layers' total size.
    pub mb_per_s: f64,
}

/// The tag a push names: `--tag`, else the reference's, else `latest`.
///
/// # Errors
/// A registry reference by digest without `--tag`; a bad tag.
pub fn push_tag(dest: &ImageRef, tag: Option<&str>) -> Result<String> {
    let t = match (tag, dest) {
        (Some(t), _) => t.to_string(),
        (None, ImageRef::Registry(r)) => {
            if r.digest.is_some() && r.tag.as_deref().is_none_or(|t| t == "latest") {
                return Err(Error::invalid(
                    "push",
                    format!("{dest}: a push names a tag, not a digest (give --tag)"),
                ));
            }
            r.tag.clone().unwrap_or_else(|| "latest".into())
        }
        (None, ImageRef::Layout { tag, .. }) => tag.clone().unwrap_or_else(|| "latest".into()),
    };
    if !crate::source::reference::valid_tag(&t) {
        return Err(Error::invalid("push", format!("{t:?} is not a tag")));
    }
    Ok(t)
}

/// Digests of `files`, a few at a time; `progress` gets bytes read.
///
/// # Errors
/// Read errors, naming the file.
pub fn digest_files(files: &[PathBuf], progress: &(dyn Fn(u64) + Sync)) -> Result<Vec<LayerBlob>> {
    let out: Vec<Mutex<Option<Result<LayerBlob>>>> =
        files.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicU64::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    std::thread::scope(|s| {
        for _ in 0..threads.min(files.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= files.len() {
                    return;
                }
                let r = layout::digest_file(&files[i]);
                if let Ok(b) = &r {
                    progress(b.size);
                }
                *out[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            });
        }
    });
    out.into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or_else(|| Err(Error::invalid("push", "a layer was not read")))
        })
        .collect()
}

/// Pushes `files` (already checked to be a stack of read-only layers)
/// with their `blobs` to `dest` under `tag`; `progress` gets bytes sent.
///
/// # Errors
/// Registry or file-system errors.
pub fn push(
    files: &[PathBuf],
    blobs: &[LayerBlob],
    dest: &ImageRef,
    tag: &str,
    ctx: Option<&Arc<RemoteContext>>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<PushReport> {
    let started = Instant::now();
    let total: u64 = blobs.iter().map(|b| b.size).sum();
    let (destination, manifest_digest, manifest_size, config_digest, actions) = match dest {
        ImageRef::Layout { dir, .. } => {
            let pairs: Vec<(PathBuf, LayerBlob)> =
                files.iter().cloned().zip(blobs.iter().copied()).collect();
            let w = layout::write_image(dir, tag, &pairs)?;
            progress(total);
            let (config, _) = image::build_image(blobs);
            let actions: Vec<&'static str> = w
                .copied
                .iter()
                .map(|&c| if c { "copied" } else { "exists" })
                .collect();
            (
                format!("oci:{}:{tag}", dir.display()),
                w.manifest_digest,
                w.manifest_size,
                crate::source::digest::Digest::of(&config),
                actions,
            )
        }
        ImageRef::Registry(r) => {
            let ctx = ctx.ok_or_else(|| Error::invalid("push", "registry access is not set up"))?;
            let reg = ctx.registry(&r.registry)?;
            let sent = AtomicU64::new(0);
            let actions: Vec<Mutex<&'static str>> = blobs.iter().map(|_| Mutex::new("")).collect();
            let first_err: Mutex<Option<Error>> = Mutex::new(None);
            let next = AtomicU64::new(0);
            std::thread::scope(|s| {
                for _ in 0..blobs.len().min(4) {
                    s.spawn(|| loop {
                        let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                        if i >= blobs.len() || first_err.lock().is_ok_and(|e| e.is_some()) {
                            return;
                        }
                        let base = AtomicU64::new(0);
                        let step = |n: u64| {
                            let prev = base.swap(n, Ordering::Relaxed);
                            progress(sent.fetch_add(n - prev, Ordering::Relaxed) + n - prev);
                        };
                        match push_blob(ctx, &reg, &r.repository, &files[i], blobs[i], &step) {
                            Ok(a) => *actions[i].lock().unwrap_or_else(|p| p.into_inner()) = a,
                            Err(e) => {
                                let mut g = first_err.lock().unwrap_or_else(|p| p.into_inner());
                                g.get_or_insert(e);
                                return;
                            }
                        }
                    });
                }
            });
            if let Some(e) = first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
                return Err(e);
            }
            let (config, manifest) = image::build_image(blobs);
            let config_digest = crate::source::digest::Digest::of(&config);
            if reg.has_blob(&r.repository, &config_digest)?.is_none() {
                reg.upload_blob(
                    &r.repository,
                    &config_digest,
                    Body::Bytes(&config),
                    UPLOAD_CHUNK,
                    &|_| {},
                )?;
            }
            let md = reg.put_manifest(&r.repository, tag, &manifest, image::OCI_MANIFEST)?;
            (
                format!("docker://{}/{}:{tag}", r.registry, r.repository),
                md,
                manifest.len() as u64,
                config_digest,
                actions
                    .into_iter()
                    .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
                    .collect(),
            )
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let layers: Vec<PushedLayer> = files
        .iter()
        .zip(blobs)
        .zip(actions)
        .map(|((f, b), action)| PushedLayer {
            path: f.display().to_string(),
            digest: b.digest.to_string(),
            size: b.size,
            action,
        })
        .collect();
    let transferred_bytes = layers
        .iter()
        .filter(|l| matches!(l.action, "uploaded" | "copied"))
        .map(|l| l.size)
        .sum();
    Ok(PushReport {
        destination,
        manifest_digest: manifest_digest.to_string(),
        manifest_size,
        config_digest: config_digest.to_string(),
        layers,
        transferred_bytes,
        seconds: secs,
        mb_per_s: total as f64 / 1e6 / secs.max(1e-9),
    })
}

/// One layer blob to a registry: skipped when there, mounted when the
/// cache knows another repository of the registry has it, else uploaded.
fn push_blob(
    ctx: &RemoteContext,
    reg: &crate::source::registry::Registry,
    repo: &str,
    file: &std::path::Path,
    blob: LayerBlob,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<&'static str> {
    if reg.has_blob(repo, &blob.digest)?.is_some() {
        progress(blob.size);
        return Ok("exists");
    }
    for (r, from) in ctx.cache().origins(&blob.digest) {
        if r == reg.name() && from != repo && reg.mount_blob(repo, &from, &blob.digest)? {
            progress(blob.size);
            return Ok("mounted");
        }
    }
    let f = std::fs::File::open(file).map_err(|e| Error::file(file, "open", e))?;
    let len = f
        .metadata()
        .map_err(|e| Error::file(file, "read", e))?
        .len();
    if len != blob.size {
        return Err(Error::invalid(
            "push",
            format!(
                "{}: changed while it was pushed ({len} bytes, {} before)",
                file.display(),
                blob.size
            ),
        ));
    }
    reg.upload_blob(
        repo,
        &blob.digest,
        Body::File {
            file: &f,
            offset: 0,
            len,
        },
        UPLOAD_CHUNK,
        progress,
    )?;
    Ok("uploaded")
}
