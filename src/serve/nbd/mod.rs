//! Serving a stack as an NBD export (`obd serve`), for QEMU, `qemu-img`,
//! `nbdcopy`, `nbdinfo` and the kernel's `nbd` client on hosts without ublk.
//!
//! The protocol is the NBD project's (`proto.md`), fixed newstyle only:
//!
//! - options `EXPORT_NAME`, `ABORT`, `LIST`, `INFO`, `GO` (with the export's
//!   size and flags, its name, a description and block sizes: minimum 1
//!   byte, or 512 for a writable export, preferred 4 KiB, maximum 32 MiB),
//!   `STRUCTURED_REPLY`, `LIST_META_CONTEXT` and `SET_META_CONTEXT` with
//!   `base:allocation`; `STARTTLS` with a certificate and key given (then
//!   TLS is required, as `qemu-nbd --tls-creds` does; without TLS, TCP is
//!   served on loopback addresses only);
//! - commands `READ` (a structured reply sends a read of a hole as one
//!   `OFFSET_HOLE` chunk), `WRITE`, `FLUSH`, `TRIM`, `WRITE_ZEROES` (with
//!   `--upper`), `CACHE`, `BLOCK_STATUS` (holes and zeroed extents of the
//!   stack's map as `NBD_STATE_HOLE | NBD_STATE_ZERO`) and `DISC`; read-only
//!   exports set `NBD_FLAG_CAN_MULTI_CONN`;
//! - several connections at once, several requests in flight on each, all
//!   served by the same [`Target`] as `attach`'s ublk devices (the read
//!   engine, or a writable layer over it).
//!
//! The device's life (foreground or background server, run record, `obd
//! list`, `obd detach`, SIGTERM) is [`crate::serve::daemon`]'s; this module
//! is its [`Transport`].

pub mod proto;
pub mod server;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

pub use server::{Endpoint, Listener, Options, Server};

use crate::serve::daemon::{Live, Observer, StopReason, Stopped, Transport};
use crate::serve::runstate::{run_dir, Record, NBD_ID_BASE};
use crate::serve::target::Target;
use crate::serve::BlockedSignals;

/// NBD as the transport of a served device.
#[derive(Debug, Clone)]
pub struct Nbd {
    /// Where and how to serve; a Unix socket path of `None` means
    /// `RUN_DIR/nbdN.sock`.
    pub socket: Option<std::path::PathBuf>,
    /// A TCP address instead of a Unix socket.
    pub listen: Option<std::net::SocketAddr>,
    /// The export's name.
    pub name: String,
    /// Worker threads.
    pub workers: usize,
    /// TLS certificate chain and key (PEM): TLS required.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// The lowest export number whose record is free.
fn free_id() -> u32 {
    let dir = run_dir();
    (NBD_ID_BASE..)
        .find(|&id| !Record::path(&dir, id).exists())
        .unwrap_or(NBD_ID_BASE)
}

impl Transport for Nbd {
    fn preflight(&self) -> anyhow::Result<()> {
        if let Some(a) = self.listen {
            if !a.ip().is_loopback() && self.tls.is_none() {
                anyhow::bail!(
                    "{a}: obd serves TCP beyond loopback only with TLS (--tls-cert and \
                     --tls-key); use 127.0.0.1 or [::1], or a Unix socket"
                );
            }
        }
        if let Some((cert, key)) = &self.tls {
            tls::server_config(cert, key)?;
        }
        if let Some(p) = &self.socket {
            let dir = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => std::path::Path::new("."),
            };
            if !dir.is_dir() {
                anyhow::bail!(
                    "{}: cannot create the socket: No such file or directory",
                    p.display()
                );
            }
        }
        Ok(())
    }

    fn serve(
        &self,
        target: Arc<dyn Target>,
        observer: Arc<dyn Observer>,
        signals: &Arc<BlockedSignals>,
    ) -> anyhow::Result<Stopped> {
        let id = free_id();
        if self.listen.is_none() && self.socket.is_none() {
            crate::serve::runstate::ensure_run_dir(&run_dir())?;
        }
        let endpoint = match (self.listen, &self.socket) {
            (Some(a), _) => Endpoint::Tcp(a),
            (None, Some(p)) => Endpoint::Unix(p.clone()),
            (None, None) => Endpoint::Unix(run_dir().join(format!("nbd{}.sock", id - NBD_ID_BASE))),
        };
        let listener = Listener::bind(&endpoint).with_context(|| match &endpoint {
            Endpoint::Unix(p) => format!("{}: cannot listen", p.display()),
            Endpoint::Tcp(a) => format!("{a}: cannot listen"),
        })?;
        let endpoint = listener.endpoint().clone();
        observer.added(id);
        let read_only = target.read_only();
        let size = target.size();
        let mut opts = Options::new(endpoint.clone(), self.name.clone());
        opts.workers = self.workers;
        if let Some((cert, key)) = &self.tls {
            opts.tls = Some(tls::server_config(cert, key)?);
        }
        let server =
            Server::start(target.clone(), listener, &opts).context("starting the server")?;
        let live = Live {
            id,
            device: if self.tls.is_some() {
                endpoint.uri(&self.name).replacen("nbd", "nbds", 1)
            } else {
                endpoint.uri(&self.name)
            },
            char_device: match &endpoint {
                Endpoint::Unix(p) => p.display().to_string(),
                Endpoint::Tcp(a) => a.to_string(),
            },
            size,
            read_only,
            queues: opts.workers as u16,
            depth: 0,
        };
        if let Err(e) = observer.live(&live) {
            server.stop(Duration::from_secs(1));
            return Err(e);
        }
        let reason = loop {
            if let Some(sig) = signals.wait(Duration::from_millis(250)) {
                break StopReason::Signal(sig);
            }
        };
        // Requests in flight finish (their replies go out) before the
        // upper layer is flushed.
        server.stop(Duration::from_secs(10));
        let flush = if read_only { Ok(()) } else { target.flush() };
        Ok(Stopped { id, reason, flush })
    }

    fn remove(&self, id: u32, _timeout: Duration) -> anyhow::Result<()> {
        // Nothing outlives an NBD server but its record.
        Record::remove(&run_dir(), id);
        Ok(())
    }

    fn exists(&self, id: u32) -> bool {
        Record::load(&run_dir(), id)
            .ok()
            .flatten()
            .is_some_and(|r| r.server_alive())
    }

    fn kind(&self) -> &'static str {
        "nbd"
    }

    fn describe(&self, id: u32) -> String {
        format!("NBD export {}", crate::serve::runstate::device_name(id))
    }

    fn device(&self, id: u32) -> String {
        Record::load(&run_dir(), id)
            .ok()
            .flatten()
            .map_or_else(|| self.describe(id), |r| r.device)
    }
}
