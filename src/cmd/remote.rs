//! The options of commands that read images from registries and OCI
//! layouts, and the one rule for their layer arguments: layer files, or a
//! single image reference (`docker://…`, `oci:DIR[:TAG]`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::parse_size;
use crate::source::cache::{self, CacheDir};
use crate::source::config::Lower;
use crate::source::reference::ImageRef;
use crate::source::registry::{auth, Credentials, RemoteOptions};
use crate::source::remote::RemoteContext;
use crate::source::{LayerSource, ResolvedImage};

const HEADING: &str = "Registry and cache";

/// Registry access and the local blob cache.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// Credentials for the registry (default: the auth files podman and
    /// docker write; $REGISTRY_AUTH_FILE first). Never printed.
    #[arg(help_heading = HEADING, long, value_name = "USER:PASS", env = "OBD_CREDS", hide_env_values = true)]
    pub creds: Option<String>,
    /// Read credentials from this auth file (podman's auth.json or
    /// docker's config.json) instead of the default ones.
    #[arg(help_heading = HEADING, long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Speak plain HTTP to this registry (HOST or HOST:PORT; repeatable).
    /// Loopback registries always are.
    #[arg(help_heading = HEADING, long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Also trust the CA certificates (*.crt, *.pem) in this directory.
    #[arg(help_heading = HEADING, long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Requests in flight per registry, 1 to 64.
    #[arg(help_heading = HEADING, long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_requests: u16,
    /// Give up on one request after this many seconds (it is retried a few
    /// times with back-off first).
    #[arg(help_heading = HEADING, long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout: u64,
    /// The local blob cache (default: $XDG_CACHE_HOME/obd, ~/.cache/obd,
    /// /var/cache/obd for root).
    #[arg(help_heading = HEADING, long, value_name = "DIR", env = "OBD_CACHE_DIR", hide_env_values = true)]
    pub cache_dir: Option<PathBuf>,
    /// Disk space the blob cache may take (e.g. 20G); least recently used
    /// blobs go first, never one in use.
    #[arg(help_heading = HEADING, long, value_name = "SIZE", default_value = "20G", value_parser = parse_size)]
    pub cache_limit: u64,
}

impl RemoteArgs {
    /// The library's options.
    ///
    /// # Errors
    /// A malformed `--creds`.
    pub fn options(&self) -> anyhow::Result<RemoteOptions> {
        let mut o = RemoteOptions::default();
        if let Some(c) = &self.creds {
            o.creds = Some(Credentials::parse(c)?);
        }
        if let Some(f) = &self.authfile {
            if !f.exists() {
                anyhow::bail!("{}: --authfile: no such file", f.display());
            }
            o.auth_files = vec![f.clone()];
        } else {
            o.auth_files = auth::default_auth_files();
        }
        o.insecure.clone_from(&self.insecure_registry);
        o.cert_dir.clone_from(&self.cert_dir);
        o.max_requests = usize::from(self.max_requests);
        o.timeout = Duration::from_secs(self.request_timeout);
        Ok(o)
    }

    /// The cache directory.
    pub fn cache_root(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(cache::default_dir)
    }

    /// A context for registry sources (opens the cache).
    ///
    /// # Errors
    /// Bad options; the cache directory cannot be created.
    pub fn context(&self) -> anyhow::Result<Arc<RemoteContext>> {
        let cache = CacheDir::open(&self.cache_root(), Some(self.cache_limit))?;
        Ok(RemoteContext::new(self.options()?, cache))
    }

    /// Resolves an image reference.
    ///
    /// # Errors
    /// As [`crate::source::resolve`].
    pub fn resolve(&self, r: &ImageRef) -> anyhow::Result<ResolvedImage> {
        let ctx = match r {
            ImageRef::Registry(_) => Some(self.context()?),
            ImageRef::Layout { .. } => None,
        };
        Ok(crate::source::resolve(r, ctx.as_ref())?)
    }

    /// The layers of an image config: files, and registry blobs (a
    /// `repoBlobUrl` that says `http://` speaks plain HTTP to its host).
    ///
    /// # Errors
    /// Bad options; the cache directory cannot be created.
    pub fn config_sources(&self, lowers: Vec<Lower>) -> anyhow::Result<Vec<LayerSource>> {
        let mut ctx: Option<Arc<RemoteContext>> = None;
        let mut out = Vec::with_capacity(lowers.len());
        for l in lowers {
            match l {
                Lower::File(p) => out.push(LayerSource::File(p)),
                Lower::Remote {
                    registry,
                    repo,
                    blob,
                    plain_http,
                } => {
                    if ctx.is_none() {
                        let mut o = self.options()?;
                        if plain_http {
                            o.insecure.push(registry.clone());
                        }
                        let cache = CacheDir::open(&self.cache_root(), Some(self.cache_limit))?;
                        ctx = Some(RemoteContext::new(o, cache));
                    }
                    let ctx = ctx
                        .clone()
                        .ok_or_else(|| anyhow::anyhow!("no registry context"))?;
                    out.push(LayerSource::Remote(crate::source::remote::RemoteLayer {
                        registry,
                        repo,
                        blob,
                        ctx,
                    }));
                }
            }
        }
        Ok(out)
    }

    /// The layers `args` name: layer files, or one image reference.
    ///
    /// # Errors
    /// An image reference among other arguments; resolution errors.
    pub fn sources(&self, args: &[PathBuf]) -> anyhow::Result<Vec<LayerSource>> {
        match image_ref(args)? {
            Some(r) => Ok(self.resolve(&r)?.layers),
            None => Ok(args.iter().cloned().map(LayerSource::File).collect()),
        }
    }
}

/// The image reference among layer arguments, when they are one.
///
/// # Errors
/// A reference that does not parse, or one among other arguments.
pub fn image_ref(args: &[PathBuf]) -> anyhow::Result<Option<ImageRef>> {
    let is_ref = |p: &Path| p.to_str().is_some_and(ImageRef::looks_like);
    match args {
        [one] if is_ref(one) => Ok(Some(ImageRef::parse(one.to_str().unwrap_or_default())?)),
        many if many.iter().any(|p| is_ref(p)) => {
            let r = many
                .iter()
                .find(|p| is_ref(p))
                .map(|p| p.display().to_string());
            anyhow::bail!(
                "{}: an image reference stands alone (it names every layer); give it or layer files, not both (a file named so: ./{0})",
                r.unwrap_or_default()
            )
        }
        _ => Ok(None),
    }
}
