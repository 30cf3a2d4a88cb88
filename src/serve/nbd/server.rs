//! The NBD server: one listener, a thread per connection for the handshake
//! and for reading requests, and a small pool of workers that serve them,
//! several at once per connection, and write the replies.
//!
//! Memory is bounded whatever clients do: option payloads are at most 64 KiB
//! (larger ones are refused after being drained, up to 16 MiB, or the
//! connection is closed), requests at most 32 MiB, and all requests in
//! flight together at most [`Options::max_in_flight`] bytes: a client that
//! sends requests without reading replies stops being read once that much
//! is waiting. At most [`Options::max_connections`] connections are served;
//! one more is closed at once.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::proto::{self, cflag, chunk, cmd, errno, info, opt, rep, tflag, Fields, Request};
use super::tls::TlsStream;
use crate::serve::target::Target;

/// Largest request obd serves (and announces as the maximum block size).
pub const MAX_REQUEST: u32 = 32 << 20;
/// Largest option payload read.
const MAX_OPTION: u32 = 64 << 10;
/// Largest option payload drained before it is refused (more: disconnect).
const MAX_DRAIN: u32 = 16 << 20;
/// Options one connection may send before it enters transmission.
const MAX_OPTIONS: usize = 256;
/// How long a client may take over each step of the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Block-status descriptors sent at most per reply.
const MAX_EXTENTS: usize = 1024;

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket at this path (created; removed when the server stops).
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl Endpoint {
    /// The NBD URI of `export` at this endpoint, as `qemu-img` and
    /// `nbdinfo` take it.
    pub fn uri(&self, export: &str) -> String {
        match self {
            Endpoint::Unix(p) => format!("nbd+unix:///{export}?socket={}", p.display()),
            Endpoint::Tcp(a) => format!("nbd://{a}/{export}"),
        }
    }
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen.
    pub endpoint: Endpoint,
    /// The export's name (clients may also ask for the default export, "").
    pub name: String,
    /// Worker threads serving requests.
    pub workers: usize,
    /// Connections served at once.
    pub max_connections: usize,
    /// Bytes of requests in flight, over all connections.
    pub max_in_flight: u64,
    /// TLS: when set, clients must `STARTTLS` before anything else.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Options {
    /// Options with the defaults: 4 workers, 64 connections, 256 MiB in
    /// flight.
    pub fn new(endpoint: Endpoint, name: impl Into<String>) -> Self {
        Options {
            endpoint,
            name: name.into(),
            workers: 4,
            max_connections: 64,
            max_in_flight: 256 << 20,
            tls: None,
        }
    }
}

/// A connected stream: plain, or TLS over a plain one after `STARTTLS`.
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
    Tls {
        tls: TlsStream,
        /// The socket under it (for clones, timeouts and shutdown).
        raw: Box<Stream>,
    },
}

impl Stream {
    fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Tls { tls, raw } => Stream::Tls {
                tls: tls.with_reader(Box::new(raw.try_clone()?)),
                raw: Box::new(raw.try_clone()?),
            },
        })
    }

    /// This stream with TLS over it (the handshake runs on the first read).
    fn start_tls(&self, cfg: &Arc<rustls::ServerConfig>) -> io::Result<Stream> {
        if let Stream::Tls { .. } = self {
            return Err(io::Error::other("TLS is already on"));
        }
        let tls = TlsStream::new(
            cfg,
            Box::new(self.try_clone()?),
            Box::new(self.try_clone()?),
        )?;
        Ok(Stream::Tls {
            tls,
            raw: Box::new(self.try_clone()?),
        })
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Tls { raw, .. } => raw.set_read_timeout(t),
        }
    }

    fn shutdown(&self) {
        match self {
            Stream::Unix(s) => {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            Stream::Tcp(s) => {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            Stream::Tls { raw, .. } => raw.shutdown(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls { tls, .. } => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls { tls, .. } => tls.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
            Stream::Tls { tls, .. } => tls.flush(),
        }
    }
}

/// A bound listener.
pub struct Listener {
    inner: ListenerKind,
    endpoint: Endpoint,
}

enum ListenerKind {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    /// Binds `endpoint`. A Unix socket path must not exist (a stale socket
    /// of a server that is gone is removed first).
    ///
    /// # Errors
    /// The bind error.
    pub fn bind(endpoint: &Endpoint) -> io::Result<Self> {
        let inner = match endpoint {
            Endpoint::Unix(p) => {
                if let Ok(m) = std::fs::symlink_metadata(p) {
                    use std::os::unix::fs::FileTypeExt;
                    // Only a socket nobody answers on is ours to replace.
                    if m.file_type().is_socket() && UnixStream::connect(p).is_err() {
                        let _ = std::fs::remove_file(p);
                    }
                }
                ListenerKind::Unix(UnixListener::bind(p)?)
            }
            Endpoint::Tcp(a) => ListenerKind::Tcp(TcpListener::bind(a)?),
        };
        let endpoint = match (&inner, endpoint) {
            // Port 0: the port the system gave.
            (ListenerKind::Tcp(l), Endpoint::Tcp(_)) => Endpoint::Tcp(l.local_addr()?),
            _ => endpoint.clone(),
        };
        match &inner {
            ListenerKind::Unix(l) => l.set_nonblocking(true)?,
            ListenerKind::Tcp(l) => l.set_nonblocking(true)?,
        }
        Ok(Listener { inner, endpoint })
    }

    /// Where it listens (with the port the system chose).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn accept(&self) -> io::Result<Stream> {
        let s = match &self.inner {
            ListenerKind::Unix(l) => Stream::Unix(l.accept()?.0),
            ListenerKind::Tcp(l) => {
                let (s, _) = l.accept()?;
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }
        };
        match &s {
            Stream::Unix(u) => u.set_nonblocking(false)?,
            Stream::Tcp(t) => t.set_nonblocking(false)?,
            Stream::Tls { .. } => {}
        }
        Ok(s)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Endpoint::Unix(p) = &self.endpoint {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Bytes in flight, shared by every connection.
struct Budget {
    used: Mutex<u64>,
    freed: Condvar,
    limit: u64,
}

impl Budget {
    /// Waits until `n` more bytes fit (a request larger than the whole
    /// budget waits for nothing else to be in flight).
    fn take(&self, n: u64) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used > 0 && *used + n > self.limit {
            used = self.freed.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += n;
    }

    fn give(&self, n: u64) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(n);
        self.freed.notify_all();
    }
}

/// What a connection negotiated.
#[derive(Debug, Clone, Copy, Default)]
struct Negotiated {
    structured: bool,
    base_allocation: bool,
}

/// Requests one connection may have in flight.
const MAX_IN_FLIGHT: usize = 16;
/// Bytes one connection may have in flight (one request may be alone over
/// it): a client that stops reading holds no more than this.
const MAX_IN_FLIGHT_BYTES: u64 = 32 << 20;

/// A reply on its way to the client's writer thread.
struct Reply {
    parts: Vec<Vec<u8>>,
    cost: u64,
}

/// One connection in transmission: what it negotiated, its requests in
/// flight, and the queue of its writer thread (workers never wait for a
/// client: a slow or stuck one only stops its own reader).
struct Conn {
    neg: Negotiated,
    replies: Mutex<Option<std::sync::mpsc::Sender<Reply>>>,
    /// Requests and bytes in flight.
    in_flight: Mutex<(usize, u64)>,
    changed: Condvar,
}

impl Conn {
    /// Waits until one more request of `cost` bytes fits, and counts it.
    fn admit(&self, cost: u64) {
        let mut g = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        while g.0 > 0 && (g.0 >= MAX_IN_FLIGHT || g.1 + cost > MAX_IN_FLIGHT_BYTES) {
            g = self.changed.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        g.0 += 1;
        g.1 += cost;
    }

    fn done(&self, cost: u64) {
        let mut g = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        g.0 -= 1;
        g.1 -= cost;
        self.changed.notify_all();
    }

    fn wait_drained(&self) {
        let mut g = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        while g.0 > 0 {
            g = self.changed.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Queues a reply for the writer thread.
    fn send(&self, reply: Reply) -> Result<(), Reply> {
        match self
            .replies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some(tx) => tx.send(reply).map_err(|e| e.0),
            None => Err(reply),
        }
    }
}

/// The writer thread of a connection: writes replies in the order they
/// come, then gives their memory back. After a write error it only drains.
fn writer(shared: &Shared, conn: &Conn, mut w: Stream, rx: std::sync::mpsc::Receiver<Reply>) {
    let mut broken = false;
    for r in rx {
        if !broken {
            for p in &r.parts {
                if w.write_all(p).is_err() {
                    broken = true;
                    w.shutdown();
                    break;
                }
            }
        }
        shared.budget.give(r.cost);
        conn.done(r.cost);
    }
}

/// A request handed to a worker.
struct Job {
    conn: Arc<Conn>,
    req: Request,
    payload: Vec<u8>,
    cost: u64,
}

/// The state every thread shares.
struct Shared {
    target: Arc<dyn Target>,
    size: u64,
    read_only: bool,
    name: String,
    stop: AtomicBool,
    budget: Budget,
    connections: AtomicUsize,
    max_connections: usize,
    open: Mutex<Vec<Stream>>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// A running server: the listener's thread, the workers.
pub struct Server {
    shared: Arc<Shared>,
    acceptor: Option<std::thread::JoinHandle<()>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    jobs: Option<SyncSender<Job>>,
}

impl Server {
    /// Starts serving `target` on `listener`.
    ///
    /// # Errors
    /// Threads that cannot be started.
    pub fn start(target: Arc<dyn Target>, listener: Listener, opts: &Options) -> io::Result<Self> {
        let size = target.size();
        let read_only = target.read_only();
        let shared = Arc::new(Shared {
            target,
            size,
            read_only,
            name: opts.name.clone(),
            stop: AtomicBool::new(false),
            budget: Budget {
                used: Mutex::new(0),
                freed: Condvar::new(),
                limit: opts.max_in_flight.max(MAX_REQUEST as u64),
            },
            connections: AtomicUsize::new(0),
            max_connections: opts.max_connections.max(1),
            open: Mutex::new(Vec::new()),
            tls: opts.tls.clone(),
        });
        let workers_n = opts.workers.clamp(1, 64);
        let (tx, rx) = sync_channel::<Job>(workers_n * 4);
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::new();
        for i in 0..workers_n {
            let (rx, shared) = (rx.clone(), shared.clone());
            workers.push(
                std::thread::Builder::new()
                    .name(format!("obd-nbd-{i}"))
                    .spawn(move || worker(&shared, &rx))?,
            );
        }
        let (sh, jobs) = (shared.clone(), tx.clone());
        let acceptor = std::thread::Builder::new()
            .name("obd-nbd-accept".into())
            .spawn(move || accept_loop(&sh, &listener, &jobs))?;
        Ok(Server {
            shared,
            acceptor: Some(acceptor),
            workers,
            jobs: Some(tx),
        })
    }

    /// Stops: no new connections, open ones are closed (requests in flight
    /// finish first, for up to `grace`), the workers end.
    pub fn stop(mut self, grace: Duration) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let deadline = Instant::now() + grace;
        for s in self
            .shared
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            s.shutdown();
        }
        while self.shared.connections.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(self.jobs.take());
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &Listener, jobs: &SyncSender<Job>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        if shared.connections.fetch_add(1, Ordering::SeqCst) >= shared.max_connections {
            shared.connections.fetch_sub(1, Ordering::SeqCst);
            stream.shutdown();
            continue;
        }
        if let Ok(c) = stream.try_clone() {
            shared
                .open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(c);
        }
        let (sh, jobs) = (shared.clone(), jobs.clone());
        let spawned = std::thread::Builder::new()
            .name("obd-nbd-conn".into())
            .spawn(move || {
                connection(&sh, stream, &jobs);
                sh.connections.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            shared.connections.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// One connection: handshake, then requests until the client disconnects.
fn connection(shared: &Arc<Shared>, mut stream: Stream, jobs: &SyncSender<Job>) {
    if stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).is_err() {
        return;
    }
    let neg = match handshake(shared, &mut stream) {
        Ok(Some(n)) => n,
        _ => {
            stream.shutdown();
            return;
        }
    };
    if stream.set_read_timeout(None).is_err() {
        return;
    }
    let Ok(w) = stream.try_clone() else {
        return;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let conn = Arc::new(Conn {
        neg,
        replies: Mutex::new(Some(tx)),
        in_flight: Mutex::new((0, 0)),
        changed: Condvar::new(),
    });
    let (sh, c) = (shared.clone(), conn.clone());
    let Ok(writer_thread) = std::thread::Builder::new()
        .name("obd-nbd-write".into())
        .spawn(move || writer(&sh, &c, w, rx))
    else {
        return;
    };
    transmission(shared, &mut stream, &conn, jobs);
    // Replies of requests in flight go out before the connection closes.
    conn.wait_drained();
    drop(
        conn.replies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(),
    );
    let _ = writer_thread.join();
    stream.shutdown();
}

fn read_u32(s: &mut Stream) -> io::Result<u32> {
    let mut b = [0u8; 4];
    s.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64(s: &mut Stream) -> io::Result<u64> {
    let mut b = [0u8; 8];
    s.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

/// The fixed-newstyle handshake. `Some` when the client entered
/// transmission; `None` when it aborted or broke the protocol.
fn handshake(shared: &Shared, s: &mut Stream) -> io::Result<Option<Negotiated>> {
    let mut hello = Vec::with_capacity(18);
    hello.extend_from_slice(&proto::INIT_MAGIC.to_be_bytes());
    hello.extend_from_slice(&proto::OPTS_MAGIC.to_be_bytes());
    hello.extend_from_slice(&(proto::FLAG_FIXED_NEWSTYLE | proto::FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&hello)?;
    let client = read_u32(s)?;
    if client & proto::FLAG_C_FIXED_NEWSTYLE == 0 {
        // Only fixed newstyle is spoken here.
        return Ok(None);
    }
    let no_zeroes = client & proto::FLAG_C_NO_ZEROES != 0;
    let mut neg = Negotiated::default();
    for _ in 0..MAX_OPTIONS {
        if read_u64(s)? != proto::OPTS_MAGIC {
            return Ok(None);
        }
        let option = read_u32(s)?;
        let len = read_u32(s)?;
        if len > MAX_OPTION {
            if option == opt::EXPORT_NAME || len > MAX_DRAIN {
                return Ok(None);
            }
            io::copy(&mut Read::by_ref(s).take(len as u64), &mut io::sink())?;
            s.write_all(&proto::option_reply(
                option,
                rep::ERR_TOO_BIG,
                b"option too large",
            ))?;
            continue;
        }
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data)?;
        let reply = |kind, msg: &str| proto::option_reply(option, kind, msg.as_bytes());
        if shared.stop.load(Ordering::SeqCst) {
            s.write_all(&reply(rep::ERR_SHUTDOWN, "the server is stopping"))?;
            return Ok(None);
        }
        let in_tls = matches!(s, Stream::Tls { .. });
        if let Some(cfg) = shared.tls.as_ref().filter(|_| !in_tls) {
            // TLS is required: nothing but STARTTLS (or ABORT) before it.
            match option {
                opt::STARTTLS if data.is_empty() => {
                    s.write_all(&reply(rep::ACK, ""))?;
                    *s = s.start_tls(cfg)?;
                }
                opt::STARTTLS => s.write_all(&reply(rep::ERR_INVALID, "no data expected"))?,
                opt::ABORT => {
                    let _ = s.write_all(&reply(rep::ACK, ""));
                    return Ok(None);
                }
                // This option cannot fail: the connection ends.
                opt::EXPORT_NAME => return Ok(None),
                _ => s.write_all(&reply(rep::ERR_TLS_REQD, "TLS is required: STARTTLS first"))?,
            }
            continue;
        }
        match option {
            opt::EXPORT_NAME => {
                let name = std::str::from_utf8(&data).unwrap_or("\u{0}");
                if !known(shared, name) {
                    // This option cannot fail: the connection ends.
                    return Ok(None);
                }
                let mut out = Vec::with_capacity(134);
                out.extend_from_slice(&shared.size.to_be_bytes());
                out.extend_from_slice(&transmission_flags(shared, &neg).to_be_bytes());
                if !no_zeroes {
                    out.extend_from_slice(&[0u8; 124]);
                }
                s.write_all(&out)?;
                return Ok(Some(neg));
            }
            opt::ABORT => {
                let _ = s.write_all(&reply(rep::ACK, ""));
                return Ok(None);
            }
            opt::LIST => {
                if !data.is_empty() {
                    s.write_all(&reply(rep::ERR_INVALID, "NBD_OPT_LIST takes no data"))?;
                    continue;
                }
                let mut d = (shared.name.len() as u32).to_be_bytes().to_vec();
                d.extend_from_slice(shared.name.as_bytes());
                s.write_all(&proto::option_reply(option, rep::SERVER, &d))?;
                s.write_all(&reply(rep::ACK, ""))?;
            }
            opt::STARTTLS if in_tls => {
                s.write_all(&reply(rep::ERR_INVALID, "TLS is already on"))?;
            }
            opt::STARTTLS => {
                s.write_all(&reply(rep::ERR_UNSUP, "this export is served without TLS"))?;
            }
            opt::INFO | opt::GO => {
                let go = option == opt::GO;
                match info_replies(shared, &neg, option, &data) {
                    Ok(out) => {
                        s.write_all(&out)?;
                        if go {
                            return Ok(Some(neg));
                        }
                    }
                    Err((kind, msg)) => s.write_all(&reply(kind, msg))?,
                }
            }
            opt::STRUCTURED_REPLY => {
                if !data.is_empty() {
                    s.write_all(&reply(rep::ERR_INVALID, "no data expected"))?;
                } else {
                    neg.structured = true;
                    s.write_all(&reply(rep::ACK, ""))?;
                }
            }
            opt::LIST_META_CONTEXT | opt::SET_META_CONTEXT => {
                let set = option == opt::SET_META_CONTEXT;
                match meta_context(shared, &neg, &data, set) {
                    Ok(selected) => {
                        if selected {
                            let mut d = proto::BASE_ALLOCATION_ID.to_be_bytes().to_vec();
                            d.extend_from_slice(proto::BASE_ALLOCATION.as_bytes());
                            s.write_all(&proto::option_reply(option, rep::META_CONTEXT, &d))?;
                        }
                        if set {
                            neg.base_allocation = selected;
                        }
                        s.write_all(&reply(rep::ACK, ""))?;
                    }
                    Err((kind, msg)) => s.write_all(&reply(kind, msg))?,
                }
            }
            _ => s.write_all(&reply(rep::ERR_UNSUP, "option not supported"))?,
        }
    }
    Ok(None)
}

/// The export's name, or the default export "".
fn known(shared: &Shared, name: &str) -> bool {
    name.is_empty() || name == shared.name
}

fn transmission_flags(shared: &Shared, neg: &Negotiated) -> u16 {
    let mut f = tflag::HAS_FLAGS | tflag::SEND_FLUSH | tflag::SEND_CACHE;
    if neg.structured {
        f |= tflag::SEND_DF;
    }
    if shared.read_only {
        f |= tflag::READ_ONLY | tflag::CAN_MULTI_CONN;
    } else {
        f |= tflag::SEND_FUA | tflag::SEND_TRIM | tflag::SEND_WRITE_ZEROES;
    }
    f
}

type OptError = (u32, &'static str);

/// The replies of `NBD_OPT_INFO`/`GO`: the export's facts, then ACK.
fn info_replies(
    shared: &Shared,
    neg: &Negotiated,
    option: u32,
    data: &[u8],
) -> Result<Vec<u8>, OptError> {
    let mut f = Fields::new(data);
    let name = f.string().ok_or((rep::ERR_INVALID, "malformed request"))?;
    let n = f.u16().ok_or((rep::ERR_INVALID, "malformed request"))?;
    let mut wanted = Vec::new();
    for _ in 0..n {
        wanted.push(f.u16().ok_or((rep::ERR_INVALID, "malformed request"))?);
    }
    if !f.is_empty() {
        return Err((rep::ERR_INVALID, "malformed request"));
    }
    if !known(shared, name) {
        return Err((rep::ERR_UNKNOWN, "no such export"));
    }
    let mut out = Vec::new();
    let mut export = info::EXPORT.to_be_bytes().to_vec();
    export.extend_from_slice(&shared.size.to_be_bytes());
    export.extend_from_slice(&transmission_flags(shared, neg).to_be_bytes());
    out.extend(proto::option_reply(option, rep::INFO, &export));
    if wanted.contains(&info::NAME) {
        let mut d = info::NAME.to_be_bytes().to_vec();
        d.extend_from_slice(shared.name.as_bytes());
        out.extend(proto::option_reply(option, rep::INFO, &d));
    }
    if wanted.contains(&info::DESCRIPTION) {
        let mut d = info::DESCRIPTION.to_be_bytes().to_vec();
        d.extend_from_slice(b"an overlaybd stack served by obd");
        out.extend(proto::option_reply(option, rep::INFO, &d));
    }
    if wanted.contains(&info::BLOCK_SIZE) {
        // A writable layer takes whole sectors.
        let min: u32 = if shared.read_only { 1 } else { 512 };
        let mut d = info::BLOCK_SIZE.to_be_bytes().to_vec();
        for v in [min, 4096, MAX_REQUEST] {
            d.extend_from_slice(&v.to_be_bytes());
        }
        out.extend(proto::option_reply(option, rep::INFO, &d));
    }
    out.extend(proto::option_reply(option, rep::ACK, &[]));
    Ok(out)
}

/// Whether `base:allocation` is listed/selected by a meta-context option.
fn meta_context(
    shared: &Shared,
    neg: &Negotiated,
    data: &[u8],
    set: bool,
) -> Result<bool, OptError> {
    if !neg.structured {
        return Err((
            rep::ERR_INVALID,
            "structured replies must be negotiated first",
        ));
    }
    let mut f = Fields::new(data);
    let name = f.string().ok_or((rep::ERR_INVALID, "malformed request"))?;
    let n = f.u32().ok_or((rep::ERR_INVALID, "malformed request"))?;
    if n > 64 {
        return Err((rep::ERR_TOO_BIG, "too many queries"));
    }
    let mut selected = !set && n == 0;
    for _ in 0..n {
        let q = f.string().ok_or((rep::ERR_INVALID, "malformed request"))?;
        if q == proto::BASE_ALLOCATION || (!set && q == "base:") {
            selected = true;
        }
    }
    if !f.is_empty() {
        return Err((rep::ERR_INVALID, "malformed request"));
    }
    if !known(shared, name) {
        return Err((rep::ERR_UNKNOWN, "no such export"));
    }
    Ok(selected)
}

/// Reads requests and hands them to the workers until the client
/// disconnects (or breaks the protocol).
fn transmission(shared: &Arc<Shared>, s: &mut Stream, conn: &Arc<Conn>, jobs: &SyncSender<Job>) {
    loop {
        let mut h = [0u8; proto::REQUEST_LEN];
        if s.read_exact(&mut h).is_err() {
            return;
        }
        let Ok(req) = Request::parse(&h) else {
            return;
        };
        if req.kind == cmd::DISC {
            return;
        }
        let data_len = if req.kind == cmd::WRITE {
            req.length
        } else {
            0
        };
        if data_len > MAX_REQUEST {
            // Its payload cannot be taken: the stream ends here.
            return;
        }
        let cost = match req.kind {
            cmd::READ | cmd::WRITE => (req.length.min(MAX_REQUEST) as u64).max(1),
            _ => 1,
        };
        conn.admit(cost);
        shared.budget.take(cost);
        let mut payload = vec![0u8; data_len as usize];
        if s.read_exact(&mut payload).is_err() {
            shared.budget.give(cost);
            conn.done(cost);
            return;
        }
        let job = Job {
            conn: conn.clone(),
            req,
            payload,
            cost,
        };
        if jobs.send(job).is_err() {
            shared.budget.give(cost);
            conn.done(cost);
            return;
        }
    }
}

fn worker(shared: &Arc<Shared>, rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(j) => j,
            Err(_) => return,
        };
        let parts = execute(shared, &job);
        let reply = Reply {
            parts,
            cost: job.cost,
        };
        if let Err(r) = job.conn.send(reply) {
            shared.budget.give(r.cost);
            job.conn.done(r.cost);
        }
    }
}

/// Serves one request; returns its reply.
fn execute(shared: &Shared, job: &Job) -> Vec<Vec<u8>> {
    let (req, conn) = (&job.req, &job.conn);
    let t = shared.target.as_ref();
    let end = req.offset.checked_add(req.length as u64);
    let inside = end.is_some_and(|e| e <= shared.size);
    let writes = matches!(req.kind, cmd::WRITE | cmd::TRIM | cmd::WRITE_ZEROES);
    let result: Result<(), (u32, String)> = if writes && shared.read_only {
        Err((errno::EPERM, "the export is read-only".into()))
    } else if req.kind != cmd::FLUSH && !inside {
        let e = if writes { errno::ENOSPC } else { errno::EINVAL };
        Err((
            e,
            format!(
                "{} bytes at {} are past the end of the export ({} bytes)",
                req.length, req.offset, shared.size
            ),
        ))
    } else {
        match req.kind {
            cmd::READ => return read(shared, conn, req),
            cmd::BLOCK_STATUS => return block_status(shared, conn, req),
            cmd::WRITE => t
                .write_at(&job.payload, req.offset)
                .and_then(|()| fua(t, req))
                .map_err(io_error),
            cmd::FLUSH => t.flush().map_err(io_error),
            cmd::TRIM => t
                .discard(req.offset, req.length as u64)
                .and_then(|()| fua(t, req))
                .map_err(io_error),
            cmd::WRITE_ZEROES => write_zeroes(t, req).map_err(io_error),
            cmd::CACHE => cache(t, req).map_err(io_error),
            _ => Err((errno::EINVAL, format!("unknown command {}", req.kind))),
        }
    };
    match result {
        Ok(()) => vec![proto::simple_reply(req.cookie, 0).to_vec()],
        Err((e, msg)) => error_reply(conn, req, e, &msg),
    }
}

fn error_reply(conn: &Conn, req: &Request, e: u32, msg: &str) -> Vec<Vec<u8>> {
    if conn.neg.structured {
        vec![proto::error_chunk(req.cookie, e, msg)]
    } else {
        vec![proto::simple_reply(req.cookie, e).to_vec()]
    }
}

fn io_error(e: crate::Error) -> (u32, String) {
    (proto::nbd_errno(e.errno()), e.to_string())
}

fn fua(t: &dyn Target, req: &Request) -> crate::Result<()> {
    if req.flags & cflag::FUA != 0 {
        t.flush()
    } else {
        Ok(())
    }
}

/// Writes zeros: as a discard (which reads back as zeros), or as allocated
/// zero data with `NO_HOLE`.
fn write_zeroes(t: &dyn Target, req: &Request) -> crate::Result<()> {
    if req.flags & cflag::NO_HOLE == 0 {
        t.discard(req.offset, req.length as u64)?;
    } else {
        let zeros = vec![0u8; (req.length as usize).min(1 << 20)];
        let mut done = 0u64;
        while done < req.length as u64 {
            let n = (req.length as u64 - done).min(zeros.len() as u64) as usize;
            t.write_at(&zeros[..n], req.offset + done)?;
            done += n as u64;
        }
    }
    fua(t, req)
}

/// Reads the range (filling the block cache) without sending it.
fn cache(t: &dyn Target, req: &Request) -> crate::Result<()> {
    let mut buf = vec![0u8; (req.length as usize).min(1 << 20)];
    let mut done = 0u64;
    while done < req.length as u64 {
        let n = (req.length as u64 - done).min(buf.len() as u64) as usize;
        t.read_at(&mut buf[..n], req.offset + done)?;
        done += n as u64;
    }
    Ok(())
}

fn read(shared: &Shared, conn: &Conn, req: &Request) -> Vec<Vec<u8>> {
    let t = shared.target.as_ref();
    if req.length > MAX_REQUEST {
        return error_reply(conn, req, errno::EINVAL, "a read larger than 32 MiB");
    }
    if conn.neg.structured && req.length > 0 && t.reads_as_zeros(req.offset, req.length as u64) {
        let mut p = chunk_header(req.cookie, chunk::OFFSET_HOLE, 12);
        p.extend_from_slice(&req.offset.to_be_bytes());
        p.extend_from_slice(&req.length.to_be_bytes());
        return vec![p];
    }
    let mut buf = vec![0u8; req.length as usize];
    if let Err(e) = t.read_at(&mut buf, req.offset) {
        let (n, msg) = io_error(e);
        return error_reply(conn, req, n, &msg);
    }
    if conn.neg.structured {
        let mut h = chunk_header(req.cookie, chunk::OFFSET_DATA, 8 + req.length);
        h.extend_from_slice(&req.offset.to_be_bytes());
        vec![h, buf]
    } else {
        vec![proto::simple_reply(req.cookie, 0).to_vec(), buf]
    }
}

/// The header of the last (only) chunk of a reply.
fn chunk_header(cookie: u64, kind: u16, length: u32) -> Vec<u8> {
    proto::chunk_header(cookie, chunk::FLAG_DONE, kind, length).to_vec()
}

fn block_status(shared: &Shared, conn: &Conn, req: &Request) -> Vec<Vec<u8>> {
    if !conn.neg.structured || !conn.neg.base_allocation {
        return error_reply(
            conn,
            req,
            errno::EINVAL,
            "no metadata context was negotiated",
        );
    }
    if req.length == 0 {
        return error_reply(conn, req, errno::EINVAL, "a block status of 0 bytes");
    }
    let extents = shared.target.extents(req.offset, req.length as u64);
    let one = req.flags & cflag::REQ_ONE != 0;
    let mut payload = proto::BASE_ALLOCATION_ID.to_be_bytes().to_vec();
    let mut count = 0;
    for (len, flags) in extents {
        // Lengths fit: the request's own length is a u32.
        payload.extend_from_slice(&(len.min(u32::MAX as u64) as u32).to_be_bytes());
        payload.extend_from_slice(&flags.to_be_bytes());
        count += 1;
        if one || count == MAX_EXTENTS {
            break;
        }
    }
    if count == 0 {
        return error_reply(conn, req, errno::EIO, "no extents");
    }
    vec![
        chunk_header(req.cookie, chunk::BLOCK_STATUS, payload.len() as u32),
        payload,
    ]
}
