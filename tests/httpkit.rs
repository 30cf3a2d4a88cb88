//! Test HTTP plumbing on 127.0.0.1, in front of a real registry: a
//! forwarding proxy that can demand Bearer tokens (and hand them out at
//! `/token`), flip a byte of a blob, cut bodies short, delay answers and
//! model a long network path (one round trip before each answer, then at
//! most a window of bytes per round trip on each connection); and a static
//! file server with Range support (the registry's `redirect` middleware's
//! blob storage). Used by the registry tests and benchmark.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An HTTP request head.
#[derive(Debug, Clone)]
pub struct Head {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
}

impl Head {
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .get(&k.to_ascii_lowercase())
            .map(String::as_str)
    }
}

fn read_head(r: &mut BufReader<TcpStream>) -> Option<Head> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).ok()? == 0 {
            return None;
        }
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Some(Head {
        method,
        path,
        headers,
    })
}

/// A manifest rewriter.
pub type Rewrite = fn(&[u8]) -> Vec<u8>;

/// What the proxy does to traffic; every field may change while it runs.
#[derive(Default)]
pub struct Faults {
    /// Demand `Authorization: Bearer <token>`; `/token` hands it out to
    /// requests carrying Basic `user:pass` (the second element).
    pub bearer: Option<(String, Option<(String, String)>)>,
    /// Flip the byte at this offset of this blob (digest) in every answer that holds it.
    pub flip: Option<(String, u64)>,
    /// Cut every blob body short after this many bytes (then close).
    pub cut_after: Option<u64>,
    /// Answer 503 to this many requests, then behave.
    pub fail_next: u64,
    /// Rewrite manifest bodies with this function (and drop their digest header).
    pub rewrite_manifest: Option<Rewrite>,
    /// Long-path model: wait this long before each answer, then send at
    /// most `window` bytes per `rtt` on the connection.
    pub wan: Option<(Duration, u64)>,
}

/// A forwarding proxy in front of `upstream` (127.0.0.1:PORT).
pub struct Proxy {
    pub port: u16,
    pub faults: Arc<Mutex<Faults>>,
    pub requests: Arc<AtomicU64>,
    /// Connections accepted.
    pub connections: Arc<AtomicU64>,
    pub token_requests: Arc<AtomicU64>,
    /// Request lines seen (method and path), in order.
    pub log: Arc<Mutex<Vec<String>>>,
    /// Authorization headers seen (to check what clients send).
    pub auth_seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let p = Proxy {
            port,
            faults: Arc::new(Mutex::new(Faults::default())),
            requests: Arc::new(AtomicU64::new(0)),
            connections: Arc::new(AtomicU64::new(0)),
            token_requests: Arc::new(AtomicU64::new(0)),
            log: Arc::new(Mutex::new(Vec::new())),
            auth_seen: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (faults, requests, tokens, log, auth, stop) = (
            p.faults.clone(),
            p.requests.clone(),
            p.token_requests.clone(),
            p.log.clone(),
            p.auth_seen.clone(),
            p.stop.clone(),
        );
        let connections = p.connections.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(c) = c else { continue };
                connections.fetch_add(1, Ordering::Relaxed);
                let (faults, requests, tokens, log, auth) = (
                    faults.clone(),
                    requests.clone(),
                    tokens.clone(),
                    log.clone(),
                    auth.clone(),
                );
                std::thread::spawn(move || {
                    let _ = serve_conn(c, upstream, port, &faults, &requests, &tokens, &log, &auth);
                });
            }
        });
        p
    }

    pub fn url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.faults.lock().unwrap());
    }
}

/// Writes `data` to `w`, at most `window` bytes per `rtt` when given.
struct Paced<'a> {
    w: &'a mut TcpStream,
    wan: Option<(Duration, u64)>,
    sent_in_window: u64,
    window_start: Instant,
}

impl Paced<'_> {
    fn send(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        let Some((rtt, window)) = self.wan else {
            return self.w.write_all(data);
        };
        while !data.is_empty() {
            if self.sent_in_window >= window {
                let next = self.window_start + rtt;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
                self.window_start = Instant::now();
                self.sent_in_window = 0;
            }
            let n = ((window - self.sent_in_window) as usize)
                .min(data.len())
                .min(64 << 10);
            self.w.write_all(&data[..n])?;
            self.sent_in_window += n as u64;
            data = &data[n..];
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn serve_conn(
    c: TcpStream,
    upstream: u16,
    me: u16,
    faults: &Mutex<Faults>,
    requests: &AtomicU64,
    tokens: &AtomicU64,
    log: &Mutex<Vec<String>>,
    auth_seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut out = c.try_clone()?;
    let mut r = BufReader::new(c);
    // Keep-alive: one request after another on the connection.
    while let Some(head) = read_head(&mut r) {
        requests.fetch_add(1, Ordering::Relaxed);
        log.lock()
            .unwrap()
            .push(format!("{} {}", head.method, head.path));
        if let Some(a) = head.header("authorization") {
            auth_seen.lock().unwrap().push(a.to_string());
        }
        let len: usize = head
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        let wan = faults.lock().unwrap().wan;
        if let Some((rtt, _)) = wan {
            std::thread::sleep(rtt);
        }
        let mut paced = Paced {
            w: &mut out,
            wan,
            sent_in_window: 0,
            window_start: Instant::now(),
        };
        // Bearer: the token endpoint and the check.
        let bearer = faults.lock().unwrap().bearer.clone();
        if let Some((token, creds)) = &bearer {
            if head.path.starts_with("/token") {
                tokens.fetch_add(1, Ordering::Relaxed);
                let ok = match creds {
                    None => true,
                    Some((u, p)) => head.header("authorization") == Some(&basic(u, p)),
                };
                let (status, body) = if ok {
                    (
                        "200 OK",
                        format!(r#"{{"token":"{token}","expires_in":300}}"#),
                    )
                } else {
                    (
                        "401 Unauthorized",
                        r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.to_string(),
                    )
                };
                respond(&mut paced, status, "application/json", &[], body.as_bytes())?;
                continue;
            }
            if head.header("authorization") != Some(&format!("Bearer {token}")) {
                let ch = format!(
                    r#"Bearer realm="http://127.0.0.1:{me}/token",service="obd-test",scope="repository:x:pull""#
                );
                respond(
                    &mut paced,
                    "401 Unauthorized",
                    "application/json",
                    &[("WWW-Authenticate", ch.as_str())],
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                )?;
                continue;
            }
        }
        {
            let mut f = faults.lock().unwrap();
            if f.fail_next > 0 {
                f.fail_next -= 1;
                drop(f);
                respond(
                    &mut paced,
                    "503 Service Unavailable",
                    "text/plain",
                    &[],
                    b"busy",
                )?;
                continue;
            }
        }
        // Forward (one upstream connection per request).
        let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
        let mut req = format!("{} {} HTTP/1.1\r\n", head.method, head.path);
        for (k, v) in &head.headers {
            if k == "connection" || (bearer.is_some() && k == "authorization") {
                continue;
            }
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("connection: close\r\n\r\n");
        up.write_all(req.as_bytes())?;
        up.write_all(&body)?;
        let mut ur = BufReader::new(up);
        let mut status = String::new();
        ur.read_line(&mut status)?;
        let mut headers = Vec::new();
        loop {
            let mut l = String::new();
            ur.read_line(&mut l)?;
            let l = l.trim_end().to_string();
            if l.is_empty() {
                break;
            }
            headers.push(l);
        }
        let clen = headers.iter().find_map(|h| {
            h.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.trim().parse::<usize>().unwrap_or(0))
        });
        let chunked = headers.iter().any(|h| {
            h.to_ascii_lowercase()
                .starts_with("transfer-encoding: chunked")
        });
        let is_blob = head.method == "GET" && head.path.contains("/blobs/sha256:");
        let is_manifest = head.method == "GET" && head.path.contains("/manifests/");
        let (flip, cut, rewrite) = {
            let f = faults.lock().unwrap();
            (f.flip.clone(), f.cut_after, f.rewrite_manifest)
        };
        // Untouched bodies of known length stream through (a long blob
        // starts at once, as it would on a real path).
        let touched =
            (is_blob && (flip.is_some() || cut.is_some())) || (is_manifest && rewrite.is_some());
        if let (Some(n), false, false) = (clen, touched, head.method == "HEAD") {
            let mut resp = status.clone();
            for h in &headers {
                let lower = h.to_ascii_lowercase();
                if lower.starts_with("transfer-encoding:") || lower.starts_with("connection:") {
                    continue;
                }
                resp.push_str(h);
                resp.push_str("\r\n");
            }
            resp.push_str("\r\n");
            paced.send(resp.as_bytes())?;
            let mut left = n;
            let mut buf = vec![0u8; 64 << 10];
            while left > 0 {
                let k = left.min(buf.len());
                ur.read_exact(&mut buf[..k])?;
                paced.send(&buf[..k])?;
                left -= k;
            }
            continue;
        }
        let mut data = Vec::new();
        if head.method != "HEAD" {
            match (clen, chunked) {
                (Some(n), _) => {
                    data.resize(n, 0);
                    ur.read_exact(&mut data)?;
                }
                (None, true) => read_chunked(&mut ur, &mut data)?,
                (None, false) => {
                    ur.read_to_end(&mut data)?;
                }
            }
        }
        if is_blob && status.contains(" 20") {
            if let Some((digest, at)) = &flip {
                if head.path.ends_with(digest.as_str()) {
                    let start = content_range_start(&headers).unwrap_or(0);
                    if *at >= start && *at < start + data.len() as u64 {
                        data[(*at - start) as usize] ^= 0x40;
                    }
                }
            }
        }
        let mut drop_digest = false;
        if is_manifest && status.contains(" 200") {
            if let Some(f) = rewrite {
                data = f(&data);
                drop_digest = true;
            }
        }
        let mut resp = status.clone();
        for h in &headers {
            let lower = h.to_ascii_lowercase();
            if lower.starts_with("content-length:")
                || lower.starts_with("transfer-encoding:")
                || lower.starts_with("connection:")
                || (drop_digest && lower.starts_with("docker-content-digest:"))
            {
                continue;
            }
            resp.push_str(h);
            resp.push_str("\r\n");
        }
        if head.method == "HEAD" {
            if let Some(n) = clen {
                resp.push_str(&format!("content-length: {n}\r\n"));
            }
        } else {
            resp.push_str(&format!("content-length: {}\r\n", data.len()));
        }
        resp.push_str("\r\n");
        paced.send(resp.as_bytes())?;
        if is_blob && status.contains(" 20") {
            if let Some(n) = cut {
                if (n as usize) < data.len() {
                    paced.send(&data[..n as usize])?;
                    let _ = paced.w.shutdown(Shutdown::Both);
                    return Ok(());
                }
            }
        }
        paced.send(&data)?;
    }
    Ok(())
}

fn read_chunked(r: &mut BufReader<TcpStream>, out: &mut Vec<u8>) -> std::io::Result<()> {
    loop {
        let mut l = String::new();
        r.read_line(&mut l)?;
        let n = usize::from_str_radix(l.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        if n == 0 {
            let mut end = String::new();
            r.read_line(&mut end)?;
            return Ok(());
        }
        let at = out.len();
        out.resize(at + n, 0);
        r.read_exact(&mut out[at..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
    }
}

fn content_range_start(headers: &[String]) -> Option<u64> {
    headers.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        if !k.eq_ignore_ascii_case("content-range") {
            return None;
        }
        v.trim()
            .strip_prefix("bytes ")?
            .split('-')
            .next()?
            .parse()
            .ok()
    })
}

fn respond(
    w: &mut Paced<'_>,
    status: &str,
    ctype: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut h = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    w.send(h.as_bytes())?;
    w.send(body)
}

pub fn basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// A static file server for `root` with single Range support.
pub struct FileServer {
    pub port: u16,
    pub requests: Arc<AtomicU64>,
}

impl FileServer {
    pub fn start(root: PathBuf) -> FileServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let requests = Arc::new(AtomicU64::new(0));
        let rq = requests.clone();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let root = root.clone();
                let rq = rq.clone();
                std::thread::spawn(move || {
                    let mut out = c.try_clone().unwrap();
                    let mut r = BufReader::new(c);
                    while let Some(head) = read_head(&mut r) {
                        rq.fetch_add(1, Ordering::Relaxed);
                        let path = root.join(
                            head.path
                                .split('?')
                                .next()
                                .unwrap_or("")
                                .trim_start_matches('/'),
                        );
                        let mut w = Paced {
                            w: &mut out,
                            wan: None,
                            sent_in_window: 0,
                            window_start: Instant::now(),
                        };
                        let Ok(data) = std::fs::read(&path) else {
                            let _ = respond(&mut w, "404 Not Found", "text/plain", &[], b"no");
                            continue;
                        };
                        let range = head.header("range").and_then(|r| {
                            let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
                            Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?))
                        });
                        let _ = match range {
                            Some((a, b)) if a <= b && b < data.len() => {
                                let cr = format!("bytes {a}-{b}/{}", data.len());
                                respond(
                                    &mut w,
                                    "206 Partial Content",
                                    "application/octet-stream",
                                    &[("Content-Range", cr.as_str())],
                                    &data[a..=b],
                                )
                            }
                            _ => respond(&mut w, "200 OK", "application/octet-stream", &[], &data),
                        };
                    }
                });
            }
        });
        FileServer { port, requests }
    }
}
