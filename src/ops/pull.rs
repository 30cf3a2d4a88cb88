//! Pulling an overlaybd image from a registry into an OCI layout
//! directory: every layer fetched by ranges with many requests in flight
//! into a hidden partial file (its chunk record beside it, so that an
//! interrupted pull resumes), checked against its digest, and only then
//! given its name; then the config, the manifest and `index.json`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::source::digest::Digest;
use crate::source::image::{self, LayerBlob, MAX_MANIFEST};
use crate::source::layout;
use crate::source::reference::RegistryRef;
use crate::source::remote::{self, RemoteContext};

/// One layer's fate.
#[derive(Debug, Clone, Serialize)]
pub struct PulledLayer {
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// `downloaded`, `resumed` (a partial download finished) or `present`.
    pub action: &'static str,
    /// Where it is.
    pub path: String,
}

/// What a pull did.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    /// The image pulled.
    pub source: String,
    /// The layout written, as a reference (`oci:DIR:TAG`).
    pub destination: String,
    /// The manifest's digest.
    pub manifest_digest: String,
    /// The layers, bottom first.
    pub layers: Vec<PulledLayer>,
    /// Layer bytes fetched.
    pub downloaded_bytes: u64,
    /// Wall time.
    pub seconds: f64,
    /// Decimal megabytes per second of the bytes fetched.
    pub mb_per_s: f64,
}

/// Pulls `src` into layout `dir`; `progress` gets the layer bytes present
/// so far, out of their total.
///
/// # Errors
/// Registry errors, digest mismatches, file-system errors.
pub fn pull(
    src: &RegistryRef,
    dir: &Path,
    ctx: &Arc<RemoteContext>,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<PullReport> {
    let started = Instant::now();
    let (manifest_digest, manifest, manifest_bytes) = crate::source::fetch_manifest(ctx, src)?;
    let blobs = image::overlaybd_layers(&manifest)
        .map_err(|e| Error::invalid("image", format!("{src}: {e}")))?;
    let reg = ctx.registry(&src.registry)?;
    layout::init(dir)?;
    let total: u64 = blobs.iter().map(|b| b.size).sum();
    // Bytes present per layer, for the progress total.
    let have: Vec<AtomicU64> = blobs.iter().map(|_| AtomicU64::new(0)).collect();
    let report = || progress(have.iter().map(|h| h.load(Ordering::Relaxed)).sum(), total);
    // Two layers at a time (the registry's request limit holds for both):
    // one layer's last ranges, digest and sync overlap the next one's
    // transfer.
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Vec<Mutex<Option<Result<Fetched>>>> =
        blobs.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..blobs.len().min(2) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= blobs.len() || failed.load(Ordering::Relaxed) {
                    return;
                }
                let r = pull_layer(src, dir, ctx, &reg, blobs[i], &have[i], &report);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            });
        }
    });
    let mut downloaded = 0u64;
    let mut layers = Vec::with_capacity(blobs.len());
    for (b, r) in blobs.iter().zip(results) {
        // The first failure in layer order (later layers may not have run).
        let (action, got) = match r.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(r) => r?,
            None => continue,
        };
        downloaded += got;
        layers.push(PulledLayer {
            digest: b.digest.to_string(),
            size: b.size,
            action,
            path: layout::blob_path(dir, &b.digest).display().to_string(),
        });
    }
    // The config (small; fetched whole and checked), then the manifest.
    let cd = manifest.config.digest()?;
    if manifest.config.size > MAX_MANIFEST {
        return Err(Error::invalid(
            "image",
            format!(
                "{src}: a config of {} bytes (at most {MAX_MANIFEST})",
                manifest.config.size
            ),
        ));
    }
    let mut config = vec![0u8; manifest.config.size as usize];
    reg.read_blob(&src.repository, &cd, manifest.config.size, 0, &mut config)?;
    if Digest::of(&config) != cd {
        return Err(Error::remote(
            format!("registry {}", src.registry),
            format!("config {cd}: the bytes do not match the digest"),
        ));
    }
    layout::put_bytes(dir, &config)?;
    layout::put_bytes(dir, &manifest_bytes)?;
    let tag = src.tag.as_deref();
    layout::set_tag(dir, tag, manifest_digest, manifest_bytes.len() as u64)?;
    let secs = started.elapsed().as_secs_f64();
    Ok(PullReport {
        source: src.to_string(),
        destination: match tag {
            Some(t) => format!("oci:{}:{t}", dir.display()),
            None => format!("oci:{}", dir.display()),
        },
        manifest_digest: manifest_digest.to_string(),
        layers,
        downloaded_bytes: downloaded,
        seconds: secs,
        mb_per_s: downloaded as f64 / 1e6 / secs.max(1e-9),
    })
}

/// A layer's action and the bytes fetched for it.
type Fetched = (&'static str, u64);

/// Fetches one layer into the layout (unless it is there): its action and
/// the bytes fetched.
fn pull_layer(
    src: &RegistryRef,
    dir: &Path,
    ctx: &Arc<RemoteContext>,
    reg: &Arc<crate::source::registry::Registry>,
    b: LayerBlob,
    have: &AtomicU64,
    report: &(dyn Fn() + Sync),
) -> Result<Fetched> {
    // A later push of this blob to another repository can mount it.
    ctx.cache()
        .record_origin(&b.digest, &src.registry, &src.repository);
    let final_path = layout::blob_path(dir, &b.digest);
    if std::fs::metadata(&final_path).is_ok_and(|m| m.len() == b.size) {
        have.store(b.size, Ordering::Relaxed);
        report();
        return Ok(("present", 0));
    }
    let hex = b.digest.hex();
    let partial = final_path.with_file_name(format!(".{hex}.partial"));
    let record = final_path.with_file_name(format!(".{hex}.partial.chunks"));
    let resumed = record.exists();
    // The first report is what an earlier, interrupted pull left.
    let initial = AtomicU64::new(u64::MAX);
    remote::fetch_into(
        reg.clone(),
        &src.repository,
        b,
        &partial,
        &record,
        ctx.options().max_requests,
        &|n| {
            let _ = initial.compare_exchange(u64::MAX, n, Ordering::Relaxed, Ordering::Relaxed);
            have.store(n, Ordering::Relaxed);
            report();
        },
    )?;
    let had = initial.load(Ordering::Relaxed);
    let fetched = b.size - if had == u64::MAX { 0 } else { had.min(b.size) };
    // Verified: readable by all (as a copied file would be), named, then
    // the record goes.
    set_public_mode(&partial)?;
    std::fs::rename(&partial, &final_path).map_err(|e| Error::file(&final_path, "create", e))?;
    let _ = std::fs::remove_file(&record);
    sync_dir(&final_path)?;
    have.store(b.size, Ordering::Relaxed);
    report();
    Ok((if resumed { "resumed" } else { "downloaded" }, fetched))
}

fn set_public_mode(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = 0o644 & !crate::io::atomic::current_umask();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::file(p, "create", e))
}

fn sync_dir(file: &Path) -> Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::file(dir, "sync", e))
}
