//! `obd serve`: a stack as an NBD export (the server is
//! [`crate::serve::nbd`]; its life [`crate::serve::daemon`]'s, as for
//! `attach`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::{CacheArgs, ChainArgs, GlobalArgs, UpperArgs};
use crate::serve::daemon::Plan;
use crate::serve::nbd::Nbd;
use crate::stack::ReadOptions;

/// Arguments of `obd serve`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Clients:
  qemu-img info 'nbd+unix:///?socket=/run/obd/nbd0.sock'
  nbdinfo --map 'nbd+unix:///?socket=/run/obd/nbd0.sock'
  qemu-img convert -O qcow2 'nbd+unix:///?socket=S' disk.qcow2
  nbd-client -unix S /dev/nbd0        (the kernel's client)")]
pub struct Args {
    /// Listen on this Unix socket (default: RUN_DIR/nbdN.sock, printed when live).
    #[arg(long, value_name = "PATH", conflicts_with = "listen")]
    pub socket: Option<PathBuf>,
    /// Listen on TCP instead, at ADDR:PORT (port 0: any free one); beyond
    /// loopback addresses only with --tls-cert.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Require TLS (NBD STARTTLS), with this PEM certificate chain (the
    /// server's certificate first).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The export's name (clients may always ask for the default export "").
    #[arg(long, value_name = "NAME", default_value = "")]
    pub name: String,
    /// Writable top layer: the export becomes writable.
    #[command(flatten)]
    pub upper: UpperArgs,
    /// Serve the stack read-only even with --upper.
    #[arg(long)]
    pub read_only: bool,
    /// Serve from this process until SIGINT/SIGTERM (default: return once
    /// the export is live and leave a background server).
    #[arg(long)]
    pub foreground: bool,
    /// Threads serving requests, 1 to 64.
    #[arg(long, default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    /// Give up when the export is not live after this many seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Block cache.
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Chain check.
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Index memory budget.
    #[command(flatten)]
    pub index: super::IndexArgs,
    /// Access traces.
    #[command(flatten)]
    pub trace: super::TraceArgs,
    /// Registry and cache options (for image references).
    #[command(flatten)]
    pub remote: super::remote::RemoteArgs,
    /// Layer blobs, bottom first, or one image reference
    /// (docker://HOST:PORT/REPO:TAG, or @sha256:DIGEST for the tag; oci:DIR:TAG).
    #[arg(required_unless_present = "upper")]
    pub layers: Vec<PathBuf>,
}

/// Runs `obd serve`.
///
/// # Errors
/// Unreadable layers, a socket that cannot be made, a server that does not
/// start.
pub fn run(g: &GlobalArgs, a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let (record_trace, prefetch) = a.trace.paths()?;
    let plan = Plan {
        layers: a.remote.sources(&a.layers)?,
        upper: a
            .upper
            .pair()
            .map(|(d, i)| (d.to_path_buf(), i.to_path_buf())),
        read_only: a.read_only,
        config: None,
        result_file: None,
        read: ReadOptions {
            cache: a.cache.options(),
            max_index_memory: a.index.max_index_memory,
            ..ReadOptions::default()
        },
        foreground: a.foreground,
        ignore_chain: a.chain.ignore_chain,
        queues: a.threads,
        depth: 0,
        start_timeout: Duration::from_secs(a.timeout),
        record_trace,
        prefetch,
    };
    let transport = Nbd {
        socket: a.socket.map(absolute),
        listen: a.listen,
        name: a.name,
        workers: a.threads as usize,
        tls: a.tls_cert.map(absolute).zip(a.tls_key.map(absolute)),
    };
    super::attach::start(g, &plan, &transport, out)
}

/// A socket path that still names the socket after the background server
/// changes directory.
fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        return p;
    }
    std::env::current_dir().map_or(p.clone(), |d| d.join(&p))
}
