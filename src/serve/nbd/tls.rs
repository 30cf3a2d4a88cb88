//! TLS for NBD (`NBD_OPT_STARTTLS`), with rustls: a server certificate
//! chain and key from PEM files, TLS 1.2 and 1.3 with rustls' safe
//! defaults, no client certificates.
//!
//! A connection has two users at once after the handshake: the thread that
//! reads requests and the thread that writes replies. Both share one
//! [`rustls::ServerConnection`] behind a mutex that is never held across a
//! blocking socket call: the reader takes ciphertext off the socket without
//! it, then decrypts under it; the writer encrypts under it, then sends the
//! records under a second lock that keeps records in the order they were
//! made. A client that stops reading therefore never keeps requests from
//! being read.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

/// A server configuration from a PEM certificate chain (the server's
/// certificate first) and a PEM private key (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
/// Files that cannot be read, hold no certificate or key, or a key that
/// does not match the certificate; each error names its file.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{}: no certificate in it", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("{}: not a PEM private key: {e}", key.display()))?;
    // ring, as the registry client's TLS uses: aws-lc-rs (rustls' choice for
    // post-quantum key exchange) needs cmake and a C toolchain to build.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS set-up")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| format!("{}: the key does not fit the certificate", cert.display()))?;
    Ok(Arc::new(cfg))
}

/// The raw socket under TLS, as the NBD server's streams are.
pub(crate) trait Socket: Read + Write + Send + Sync {}
impl<T: Read + Write + Send + Sync> Socket for T {}

struct Shared {
    tls: Mutex<ServerConnection>,
    /// The sending side; held while records go out, in order.
    out: Mutex<Box<dyn Socket>>,
}

/// One side of a TLS connection (clones share the session).
pub(crate) struct TlsStream {
    rd: Box<dyn Socket>,
    shared: Arc<Shared>,
    /// Ciphertext as read from the socket.
    raw: Vec<u8>,
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

impl TlsStream {
    /// Starts a server session over a socket (`rd` and `wr` are two handles
    /// of it); the handshake runs as the first bytes are read.
    pub(crate) fn new(
        cfg: &Arc<ServerConfig>,
        rd: Box<dyn Socket>,
        wr: Box<dyn Socket>,
    ) -> io::Result<Self> {
        let conn = ServerConnection::new(cfg.clone()).map_err(tls_err)?;
        Ok(TlsStream {
            rd,
            shared: Arc::new(Shared {
                tls: Mutex::new(conn),
                out: Mutex::new(wr),
            }),
            raw: Vec::new(),
        })
    }

    /// Another handle of the same session, reading from `rd`.
    pub(crate) fn with_reader(&self, rd: Box<dyn Socket>) -> Self {
        TlsStream {
            rd,
            shared: self.shared.clone(),
            raw: Vec::new(),
        }
    }

    /// Sends what the session has to send (handshake messages, records).
    fn send_pending(&self, out: &mut Box<dyn Socket>) -> io::Result<()> {
        loop {
            let mut records = Vec::new();
            {
                let mut tls = lock(&self.shared.tls);
                while tls.wants_write() {
                    tls.write_tls(&mut records)?;
                }
            }
            if records.is_empty() {
                return out.flush();
            }
            out.write_all(&records)?;
        }
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.raw.resize(16 << 10, 0);
        loop {
            {
                let mut tls = lock(&self.shared.tls);
                match tls.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            // Ciphertext, read with no lock held.
            let n = self.rd.read(&mut self.raw)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let wants_write = {
                let mut tls = lock(&self.shared.tls);
                let mut data = &self.raw[..n];
                while !data.is_empty() {
                    tls.read_tls(&mut data)?;
                    tls.process_new_packets().map_err(tls_err)?;
                }
                tls.wants_write()
            };
            // Handshake messages and alerts go out now, unless replies are
            // being sent: the sender takes them along with its records.
            if wants_write {
                if let Ok(mut out) = self.shared.out.try_lock() {
                    self.send_pending(&mut out)?;
                }
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut out = lock(&self.shared.out);
        let n = lock(&self.shared.tls).writer().write(buf)?;
        self.send_pending(&mut out)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut out = lock(&self.shared.out);
        self.send_pending(&mut out)
    }
}
