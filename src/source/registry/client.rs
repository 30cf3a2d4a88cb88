//! One registry's HTTP client: authentication (anonymous, Basic, Bearer
//! tokens cached per scope), a bounded number of requests in flight,
//! retries with back-off, blob range reads that follow redirects to blob
//! storage (the final URL cached for five minutes), uploads and manifests.
//!
//! Errors name the registry and the request (`registry H: GET blob
//! sha256:…: 503 Service Unavailable`), never a credential or a signed
//! URL's query.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ureq::http::{Response, StatusCode};

use super::auth::{self, Challenge, Credentials};
use crate::error::{Error, Result};
use crate::source::digest::Digest;
use crate::source::image::{self, MAX_MANIFEST};
use crate::source::reference::split_host_port;

/// How obd talks to registries.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// `--creds USER:PASS`, used for every registry.
    pub creds: Option<Credentials>,
    /// Auth files searched for credentials when `creds` is None.
    pub auth_files: Vec<PathBuf>,
    /// Registries (`host[:port]`) spoken to over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
    /// Extra CA certificates (`*.crt`, `*.pem`) trusted besides the system's.
    pub cert_dir: Option<PathBuf>,
    /// Requests in flight per registry.
    pub max_requests: usize,
    /// Connecting may take this long.
    pub connect_timeout: Duration,
    /// One request, body included, may take this long.
    pub timeout: Duration,
    /// Attempts after the first for a request that failed in a way that may pass.
    pub retries: u32,
    /// How long a redirect's final URL is reused.
    pub redirect_ttl: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            creds: None,
            auth_files: auth::default_auth_files(),
            insecure: Vec::new(),
            cert_dir: None,
            max_requests: 16,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            retries: 4,
            redirect_ttl: Duration::from_secs(300),
        }
    }
}

/// True for `localhost` and loopback addresses, which obd speaks plain HTTP to.
pub fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// A counting semaphore: requests in flight.
struct Slots {
    free: Mutex<usize>,
    cv: Condvar,
}

struct Slot<'a>(&'a Slots);

impl Slots {
    fn new(n: usize) -> Self {
        Slots {
            free: Mutex::new(n.max(1)),
            cv: Condvar::new(),
        }
    }

    fn take(&self) -> Slot<'_> {
        let mut f = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *f == 0 {
            f = self.cv.wait(f).unwrap_or_else(|p| p.into_inner());
        }
        *f -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.cv.notify_one();
    }
}

/// How an attempt failed.
enum Failure {
    /// Worth another attempt (connection trouble, 5xx, 429).
    Retry(String),
    /// Final.
    Fatal(Error),
}

#[derive(Default)]
struct AuthState {
    /// The registry asked for Basic auth.
    basic: bool,
    /// The last Bearer challenge (realm, service).
    bearer: Option<Challenge>,
    /// Tokens per scope, with their expiry.
    tokens: HashMap<String, (String, Instant)>,
}

/// A request body, re-sendable on retry.
#[derive(Clone, Copy)]
pub enum Body<'a> {
    /// No body.
    Empty,
    /// These bytes.
    Bytes(&'a [u8]),
    /// `len` bytes of a file from `offset`.
    File {
        /// The file.
        file: &'a File,
        /// Where the body starts.
        offset: u64,
        /// Its length.
        len: u64,
    },
}

/// A response, its body not yet read.
pub type Resp = Response<ureq::Body>;

/// A client of one registry.
pub struct Registry {
    name: String,
    base: String,
    agent: ureq::Agent,
    creds: Option<Credentials>,
    auth: Mutex<AuthState>,
    /// Held while a token is fetched: threads that hit the same 401 at
    /// once wait for one token instead of each fetching their own.
    authenticating: Mutex<()>,
    slots: Slots,
    redirects: Mutex<HashMap<String, (String, Instant)>>,
    opts: RemoteOptions,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registry({})", self.name)
    }
}

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

impl Registry {
    /// A client for `registry` (`host[:port]` as in a reference).
    ///
    /// # Errors
    /// Unreadable auth files or CA certificates.
    pub fn new(registry: &str, opts: &RemoteOptions) -> Result<Arc<Self>> {
        let (host, port) = if registry == "docker.io" {
            ("registry-1.docker.io".to_string(), None)
        } else {
            split_host_port(registry)
        };
        let loopback = is_loopback_host(&host);
        let plain = loopback || opts.insecure.iter().any(|i| i == registry || i == &host);
        let hostport = {
            let h = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            match port {
                Some(p) => format!("{h}:{p}"),
                None => h,
            }
        };
        let base = format!("{}://{hostport}", if plain { "http" } else { "https" });
        let mut cfg = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(opts.connect_timeout))
            .timeout_global(Some(opts.timeout))
            .user_agent(format!("obd/{}", env!("CARGO_PKG_VERSION")))
            .max_idle_connections_per_host(opts.max_requests.max(1))
            .max_idle_connections(opts.max_requests.max(1) * 4);
        if loopback {
            // A proxy from the environment never sees loopback traffic.
            cfg = cfg.proxy(None);
        }
        if !plain {
            cfg = cfg.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(Arc::new(root_certs(
                        opts.cert_dir.as_deref(),
                    )?)))
                    .build(),
            );
        }
        let creds = match &opts.creds {
            Some(c) => Some(c.clone()),
            None => auth::from_auth_files(&opts.auth_files, registry)?,
        };
        Ok(Arc::new(Registry {
            name: registry.to_string(),
            base,
            agent: cfg.build().into(),
            creds,
            auth: Mutex::new(AuthState::default()),
            authenticating: Mutex::new(()),
            slots: Slots::new(opts.max_requests),
            redirects: Mutex::new(HashMap::new()),
            opts: opts.clone(),
        }))
    }

    /// The registry as written in references.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn place(&self) -> String {
        format!("registry {}", self.name)
    }

    fn fatal(&self, what: &str, detail: impl std::fmt::Display) -> Failure {
        Failure::Fatal(Error::remote(self.place(), format!("{what}: {detail}")))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, AuthState> {
        self.auth.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` until it succeeds, fails for good, or the retries run out
    /// (with back-off: 0.2 s, 0.4 s, ... at most 3 s apart).
    fn attempts<T>(
        &self,
        what: &str,
        mut f: impl FnMut() -> std::result::Result<T, Failure>,
    ) -> Result<T> {
        let mut last = String::new();
        for k in 0..=self.opts.retries {
            match f() {
                Ok(v) => return Ok(v),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(why)) => {
                    last = why;
                    if k < self.opts.retries {
                        let ms = (200u64 << k.min(4)).min(3000);
                        std::thread::sleep(Duration::from_millis(ms));
                    }
                }
            }
        }
        Err(Error::remote(
            self.place(),
            format!(
                "{what}: {last} (gave up after {} attempts)",
                self.opts.retries + 1
            ),
        ))
    }

    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with('/') {
            format!("{}{path_or_url}", self.base)
        } else {
            path_or_url.to_string()
        }
    }

    /// True when `url` is on the registry itself (credentials may go there).
    fn same_origin(&self, url: &str) -> bool {
        url.starts_with(&self.base)
            && matches!(
                url.as_bytes().get(self.base.len()),
                None | Some(b'/' | b'?')
            )
    }

    fn auth_header(&self, scope: &str) -> Option<String> {
        let st = self.state();
        if let Some((tok, until)) = st.tokens.get(scope) {
            if Instant::now() < *until {
                return Some(format!("Bearer {tok}"));
            }
        }
        if st.basic {
            return self.creds.as_ref().map(Credentials::basic_header);
        }
        None
    }

    /// One HTTP exchange, no auth logic.
    fn exchange(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        auth: Option<&str>,
        body: Body<'_>,
        what: &str,
    ) -> std::result::Result<Resp, Failure> {
        let mut b = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if let Some(a) = auth {
            b = b.header("Authorization", a);
        }
        let r = match body {
            Body::Empty => {
                if matches!(method, "PUT" | "POST" | "PATCH") {
                    b = b.header("Content-Length", "0");
                }
                let req = b.body(()).map_err(|e| self.fatal(what, e))?;
                self.agent.run(req)
            }
            Body::Bytes(bytes) => {
                let req = b
                    .header("Content-Length", bytes.len().to_string())
                    .body(bytes)
                    .map_err(|e| self.fatal(what, e))?;
                self.agent.run(req)
            }
            Body::File { file, offset, len } => {
                let mut reader = FileRange {
                    file,
                    at: offset,
                    left: len,
                };
                let req = b
                    .header("Content-Length", len.to_string())
                    .body(ureq::SendBody::from_reader(&mut reader))
                    .map_err(|e| self.fatal(what, e))?;
                self.agent.run(req)
            }
        };
        r.map_err(|e| classify(&self.place(), what, e))
    }

    /// A request to the registry with authentication: a 401 is answered
    /// once (token or Basic), then the request is made again. 5xx and 429
    /// come back as [`Failure::Retry`].
    fn call(
        &self,
        method: &str,
        url: &str,
        scope: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
        what: &str,
    ) -> std::result::Result<Resp, Failure> {
        let url = self.url(url);
        let ours = self.same_origin(&url);
        let auth = if ours { self.auth_header(scope) } else { None };
        let mut resp = self.exchange(method, &url, headers, auth.as_deref(), body, what)?;
        if resp.status() == StatusCode::UNAUTHORIZED && ours {
            let ch = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .map(auth::parse_challenge)
                .transpose()
                .map_err(|e| self.fatal(what, e))?;
            drop(resp);
            self.authenticate(ch, scope, auth.is_some(), what)?;
            let auth = self.auth_header(scope);
            resp = self.exchange(method, &url, headers, auth.as_deref(), body, what)?;
            if resp.status() == StatusCode::UNAUTHORIZED {
                return Err(self.fatal(
                    what,
                    format!("401 Unauthorized: the registry refused {}", self.who()),
                ));
            }
        }
        let s = resp.status();
        if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure::Retry(status_text(s)));
        }
        Ok(resp)
    }

    fn who(&self) -> String {
        match &self.creds {
            Some(c) => format!("the credentials of user {:?}", c.user),
            None => "anonymous access (give --creds USER:PASS or log in with podman/docker)".into(),
        }
    }

    /// Answers a challenge: a Bearer token for `scope` from the realm, or
    /// Basic with the credentials.
    fn authenticate(
        &self,
        ch: Option<Challenge>,
        scope: &str,
        had_auth: bool,
        what: &str,
    ) -> std::result::Result<(), Failure> {
        let Some(ch) = ch else {
            return Err(self.fatal(
                what,
                "401 Unauthorized without a WWW-Authenticate challenge",
            ));
        };
        match ch.scheme.as_str() {
            "basic" => {
                if self.creds.is_none() || had_auth {
                    return Err(self.fatal(
                        what,
                        format!("401 Unauthorized: the registry refused {}", self.who()),
                    ));
                }
                self.state().basic = true;
                Ok(())
            }
            "bearer" => {
                let _one = self
                    .authenticating
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                // Another thread may have fetched it meanwhile.
                if self
                    .state()
                    .tokens
                    .get(scope)
                    .is_some_and(|(_, until)| Instant::now() < *until)
                {
                    return Ok(());
                }
                let (token, ttl) = self.fetch_token(&ch, scope, what)?;
                let mut st = self.state();
                st.bearer = Some(ch);
                st.tokens
                    .insert(scope.to_string(), (token, Instant::now() + ttl));
                Ok(())
            }
            other => Err(self.fatal(what, format!("unsupported authentication scheme {other:?}"))),
        }
    }

    fn fetch_token(
        &self,
        ch: &Challenge,
        scope: &str,
        what: &str,
    ) -> std::result::Result<(String, Duration), Failure> {
        let Some(realm) = ch.params.get("realm") else {
            return Err(self.fatal(what, "a Bearer challenge without a realm"));
        };
        let realm_host = realm
            .strip_prefix("https://")
            .or_else(|| realm.strip_prefix("http://"))
            .map(|r| r.split(['/', '?']).next().unwrap_or(""))
            .ok_or_else(|| self.fatal(what, "the token realm is not an http(s) URL"))?;
        // Credentials travel in clear only to loopback or registries marked insecure.
        let secure = realm.starts_with("https://")
            || is_loopback_host(split_host_port(realm_host).0.as_str())
            || self.opts.insecure.iter().any(|i| i == realm_host);
        let mut url = format!("{realm}{}", if realm.contains('?') { '&' } else { '?' });
        let mut q = Vec::new();
        if let Some(s) = ch.params.get("service") {
            q.push(format!("service={}", encode_query(s)));
        }
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            q.push(format!("scope={}", encode_query(s)));
        }
        url.push_str(&q.join("&"));
        let auth = match &self.creds {
            Some(c) if secure => Some(c.basic_header()),
            Some(_) => {
                return Err(self.fatal(
                    what,
                    "the token service is plain HTTP; obd sends credentials there only for \
                     loopback or --insecure-registry hosts",
                ))
            }
            None => None,
        };
        let token_what = "GET token";
        let mut resp = self.exchange("GET", &url, &[], auth.as_deref(), Body::Empty, token_what)?;
        let s = resp.status();
        if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure::Retry(format!("token service: {}", status_text(s))));
        }
        if !s.is_success() {
            return Err(self.fatal(
                what,
                format!(
                    "the token service answered {} for {}",
                    status_text(s),
                    self.who()
                ),
            ));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| classify(&self.place(), token_what, e))?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| self.fatal(what, "the token service's answer is not JSON"))?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty() && t.len() <= 64 << 10)
            .ok_or_else(|| self.fatal(what, "the token service's answer holds no token"))?;
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(self.fatal(what, "the token service's token is not printable ASCII"));
        }
        // Tokens live `expires_in` seconds (60 by default); renewed 5 s early.
        let secs = v
            .get("expires_in")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(60)
            .clamp(10, 24 * 3600);
        Ok((token.to_string(), Duration::from_secs(secs - 5)))
    }

    /// Reads a response body of at most `limit` bytes.
    fn read_body(
        &self,
        resp: &mut Resp,
        limit: u64,
        what: &str,
    ) -> std::result::Result<Vec<u8>, Failure> {
        resp.body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => {
                    self.fatal(what, format!("the answer is larger than {limit} bytes"))
                }
                e => classify(&self.place(), what, e),
            })
    }

    /// The error a non-success status makes, with the registry's own
    /// error code and message when it sent them.
    fn status_error(&self, resp: &mut Resp, what: &str) -> Failure {
        let s = resp.status();
        let body = resp
            .body_mut()
            .with_config()
            .limit(16 << 10)
            .read_to_vec()
            .unwrap_or_default();
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                let e = v.get("errors")?.get(0)?;
                let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                Some(format!(" ({code}: {})", printable(msg, 200)))
            })
            .unwrap_or_default();
        self.fatal(what, format!("{}{detail}", status_text(s)))
    }

    /// Fetches a manifest or index: its bytes, media type and digest. A
    /// digest reference is checked against the bytes; so is the
    /// `Docker-Content-Digest` the registry sends.
    ///
    /// # Errors
    /// Not found, unauthorized, too large, digest mismatch.
    pub fn manifest(&self, repo: &str, reference: &str) -> Result<(Vec<u8>, String, Digest)> {
        let what = format!("GET manifest {repo}:{reference}");
        let scope = pull_scope(repo);
        let (bytes, media, sent) = self.attempts(&what, || {
            let _slot = self.slots.take();
            let mut resp = self.call(
                "GET",
                &format!("/v2/{repo}/manifests/{reference}"),
                &scope,
                &[("Accept", MANIFEST_ACCEPT)],
                Body::Empty,
                &what,
            )?;
            if !resp.status().is_success() {
                return Err(self.status_error(&mut resp, &what));
            }
            let media = header(&resp, "content-type")
                .map(|m| m.split(';').next().unwrap_or("").trim().to_string())
                .unwrap_or_default();
            let sent = header(&resp, "docker-content-digest");
            let bytes = self.read_body(&mut resp, MAX_MANIFEST, &what)?;
            Ok((bytes, media, sent))
        })?;
        let digest = Digest::of(&bytes);
        if let Ok(want) = Digest::parse(reference) {
            if want != digest {
                return Err(Error::remote(
                    self.place(),
                    format!("{what}: the manifest's bytes have digest {digest}"),
                ));
            }
        }
        if let Some(s) = sent.and_then(|s| Digest::parse(&s).ok()) {
            if s != digest {
                return Err(Error::remote(
                    self.place(),
                    format!("{what}: the registry says {s} but the bytes have digest {digest}"),
                ));
            }
        }
        Ok((bytes, media, digest))
    }

    /// Reads `buf.len()` bytes of blob `digest` (of `size` bytes) at
    /// `offset` with a Range request, following redirects to blob storage.
    ///
    /// # Errors
    /// As the request fails; a response that is not the range asked for
    /// (a wrong `Content-Range`, a blob of another size, a short body).
    pub fn read_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let end = offset + buf.len() as u64 - 1;
        let what = format!("GET blob {digest} bytes {offset}-{end}");
        let path = format!("/v2/{repo}/blobs/{digest}");
        let range = format!("bytes={offset}-{end}");
        let scope = pull_scope(repo);
        self.attempts(&what, || {
            let _slot = self.slots.take();
            let mut url = self.cached_redirect(&path).unwrap_or_else(|| path.clone());
            let mut from_cache = url != path;
            let mut hops = 0;
            loop {
                let mut resp = self.call(
                    "GET",
                    &url,
                    &scope,
                    &[("Range", &range)],
                    Body::Empty,
                    &what,
                )?;
                let s = resp.status();
                if s.is_redirection() {
                    let loc = header(&resp, "location").ok_or_else(|| {
                        self.fatal(&what, format!("{} without a Location", status_text(s)))
                    })?;
                    hops += 1;
                    if hops > 5 {
                        return Err(self.fatal(&what, "more than 5 redirects (a redirect loop?)"));
                    }
                    url = resolve_location(&self.url(&url), &loc).ok_or_else(|| {
                        self.fatal(&what, "a redirect to something that is not an http(s) URL")
                    })?;
                    self.remember_redirect(&path, &url);
                    continue;
                }
                if from_cache && matches!(s.as_u16(), 401 | 403 | 404 | 410) {
                    // The storage URL expired: ask the registry again.
                    self.forget_redirect(&path);
                    url = path.clone();
                    from_cache = false;
                    continue;
                }
                return self.range_body(&mut resp, size, offset, buf, &what);
            }
        })
    }

    fn range_body(
        &self,
        resp: &mut Resp,
        size: u64,
        offset: u64,
        buf: &mut [u8],
        what: &str,
    ) -> std::result::Result<(), Failure> {
        let s = resp.status();
        let len = buf.len() as u64;
        match s.as_u16() {
            206 => {
                let cr = header(resp, "content-range")
                    .ok_or_else(|| self.fatal(what, "206 without a Content-Range"))?;
                let (a, b, total) = parse_content_range(&cr)
                    .ok_or_else(|| self.fatal(what, format!("an unreadable Content-Range {:?}", printable(&cr, 80))))?;
                if let Some(t) = total {
                    if t != size {
                        return Err(self.fatal(
                            what,
                            format!("the registry's blob is {t} bytes, the manifest says {size}"),
                        ));
                    }
                }
                if a != offset || b != offset + len - 1 {
                    return Err(self.fatal(what, format!("the registry sent bytes {a}-{b}")));
                }
            }
            200 => {
                // A server that ignores Range: usable only for the whole blob.
                if offset != 0 || len != size {
                    return Err(self.fatal(what, "the server ignored the Range header (200 with the whole blob)"));
                }
                if let Some(cl) = header(resp, "content-length").and_then(|c| c.parse::<u64>().ok()) {
                    if cl != size {
                        return Err(self.fatal(
                            what,
                            format!("the registry's blob is {cl} bytes, the manifest says {size}"),
                        ));
                    }
                }
            }
            416 => {
                return Err(self.fatal(
                    what,
                    format!("416 Range Not Satisfiable: the registry's blob is shorter than the {size} bytes the manifest says"),
                ))
            }
            _ => return Err(self.status_error(resp, what)),
        }
        let mut r = resp.body_mut().with_config().limit(len).reader();
        let mut got = 0usize;
        while got < buf.len() {
            match r.read(&mut buf[got..]) {
                Ok(0) => {
                    return Err(Failure::Retry(format!(
                        "the body ended after {got} of {len} bytes"
                    )))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Failure::Retry(format!(
                        "reading the body: {}",
                        crate::error::os_message(&e)
                    )))
                }
            }
        }
        // Reading the body to its end gives the connection back to the
        // pool: the next request skips the connect (and the TLS handshake).
        let _ = r.read(&mut [0u8; 1]);
        Ok(())
    }

    fn cached_redirect(&self, path: &str) -> Option<String> {
        let m = self.redirects.lock().unwrap_or_else(|p| p.into_inner());
        m.get(path)
            .filter(|(_, t)| t.elapsed() < self.opts.redirect_ttl)
            .map(|(u, _)| u.clone())
    }

    fn remember_redirect(&self, path: &str, url: &str) {
        let mut m = self.redirects.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 4096 {
            m.clear();
        }
        m.insert(path.to_string(), (url.to_string(), Instant::now()));
    }

    fn forget_redirect(&self, path: &str) {
        self.redirects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(path);
    }

    /// True when the registry has blob `digest` in `repo`.
    ///
    /// # Errors
    /// Request failures other than 404.
    pub fn has_blob(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let what = format!("HEAD blob {digest}");
        let scope = push_scope(repo, None);
        self.attempts(&what, || {
            let _slot = self.slots.take();
            let mut resp = self.call(
                "HEAD",
                &format!("/v2/{repo}/blobs/{digest}"),
                &scope,
                &[],
                Body::Empty,
                &what,
            )?;
            match resp.status().as_u16() {
                200 => Ok(header(&resp, "content-length").and_then(|c| c.parse().ok())),
                404 => Ok(None),
                // A redirect means the blob is there (in blob storage).
                307 | 302 | 303 => Ok(Some(0)),
                _ => Err(self.status_error(&mut resp, &what)),
            }
        })
    }

    /// Mounts blob `digest` from repository `from` of the same registry;
    /// false when the registry would not (the blob must be uploaded).
    ///
    /// # Errors
    /// Request failures.
    pub fn mount_blob(&self, repo: &str, from: &str, digest: &Digest) -> Result<bool> {
        let what = format!("POST mount {digest} from {from}");
        let scope = push_scope(repo, Some(from));
        self.attempts(&what, || {
            let _slot = self.slots.take();
            let mut resp = self.call(
                "POST",
                &format!(
                    "/v2/{repo}/blobs/uploads/?mount={digest}&from={}",
                    encode_query(from)
                ),
                &scope,
                &[],
                Body::Empty,
                &what,
            )?;
            match resp.status().as_u16() {
                201 => Ok(true),
                // An upload session instead: abandon it.
                202 => {
                    if let Some(loc) = header(&resp, "location") {
                        let url = resolve_location(
                            &self.url(&format!("/v2/{repo}/blobs/uploads/")),
                            &loc,
                        );
                        if let Some(u) = url.filter(|u| self.same_origin(u)) {
                            let _ = self.call("DELETE", &u, &scope, &[], Body::Empty, &what);
                        }
                    }
                    Ok(false)
                }
                _ => Err(self.status_error(&mut resp, &what)),
            }
        })
    }

    /// Uploads blob `digest` (`size` bytes from `file`, or `bytes`) in
    /// chunks of `chunk` bytes; `progress` gets the bytes sent so far.
    /// A failed chunk restarts the upload (the retries bound it).
    ///
    /// # Errors
    /// Request failures; the registry refusing the digest.
    pub fn upload_blob(
        &self,
        repo: &str,
        digest: &Digest,
        source: Body<'_>,
        chunk: u64,
        progress: &dyn Fn(u64),
    ) -> Result<()> {
        let what = format!("upload blob {digest}");
        let scope = push_scope(repo, None);
        let total = match source {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => len,
        };
        self.attempts(&what, || {
            let start = format!("/v2/{repo}/blobs/uploads/");
            let mut resp = {
                let _slot = self.slots.take();
                self.call("POST", &start, &scope, &[], Body::Empty, &what)?
            };
            if resp.status().as_u16() != 202 {
                return Err(self.status_error(&mut resp, &what));
            }
            let mut loc = upload_location(self, &resp, &start, &what)?;
            drop(resp);
            let mut sent = 0u64;
            // Chunks by PATCH (all but a monolithic single-chunk blob), then PUT ?digest=.
            if total > chunk {
                while sent < total {
                    let n = chunk.min(total - sent);
                    let body = sub_body(source, sent, n);
                    let range = format!("{sent}-{}", sent + n - 1);
                    let _slot = self.slots.take();
                    let mut resp = self.call(
                        "PATCH",
                        &loc,
                        &scope,
                        &[
                            ("Content-Type", "application/octet-stream"),
                            ("Content-Range", &range),
                        ],
                        body,
                        &what,
                    )?;
                    if resp.status().as_u16() != 202 {
                        return Err(self.status_error(&mut resp, &what));
                    }
                    loc = upload_location(self, &resp, &loc, &what)?;
                    sent += n;
                    progress(sent);
                }
            }
            let sep = if loc.contains('?') { '&' } else { '?' };
            let put = format!("{loc}{sep}digest={}", encode_query(&digest.to_string()));
            let body = if sent < total {
                sub_body(source, sent, total - sent)
            } else {
                Body::Empty
            };
            let _slot = self.slots.take();
            let mut resp = self.call(
                "PUT",
                &put,
                &scope,
                &[("Content-Type", "application/octet-stream")],
                body,
                &what,
            )?;
            if resp.status().as_u16() != 201 {
                return Err(self.status_error(&mut resp, &what));
            }
            progress(total);
            Ok(())
        })
    }

    /// Puts a manifest under `reference` (a tag); returns the digest the
    /// registry reports (checked against the bytes).
    ///
    /// # Errors
    /// Request failures; a digest that disagrees.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest> {
        let what = format!("PUT manifest {repo}:{reference}");
        let scope = push_scope(repo, None);
        let digest = Digest::of(bytes);
        self.attempts(&what, || {
            let _slot = self.slots.take();
            let mut resp = self.call(
                "PUT",
                &format!("/v2/{repo}/manifests/{reference}"),
                &scope,
                &[("Content-Type", media_type)],
                Body::Bytes(bytes),
                &what,
            )?;
            if resp.status().as_u16() != 201 {
                return Err(self.status_error(&mut resp, &what));
            }
            if let Some(s) =
                header(&resp, "docker-content-digest").and_then(|s| Digest::parse(&s).ok())
            {
                if s != digest {
                    return Err(self.fatal(
                        &what,
                        format!("the registry stored {s}, the bytes are {digest}"),
                    ));
                }
            }
            Ok(digest)
        })
    }

    /// The registry's API answers (a `GET /v2/` with authentication).
    ///
    /// # Errors
    /// Unreachable, or credentials refused.
    pub fn ping(&self, repo: &str) -> Result<()> {
        let what = "GET /v2/";
        let scope = pull_scope(repo);
        self.attempts(what, || {
            let _slot = self.slots.take();
            let mut resp = self.call("GET", "/v2/", &scope, &[], Body::Empty, what)?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(self.status_error(&mut resp, what))
            }
        })
    }
}

/// `len` bytes of `b` from `from`.
fn sub_body(b: Body<'_>, from: u64, len: u64) -> Body<'_> {
    match b {
        Body::Empty => Body::Empty,
        Body::Bytes(bytes) => Body::Bytes(&bytes[from as usize..(from + len) as usize]),
        Body::File { file, offset, .. } => Body::File {
            file,
            offset: offset + from,
            len,
        },
    }
}

fn upload_location(
    reg: &Registry,
    resp: &Resp,
    base: &str,
    what: &str,
) -> std::result::Result<String, Failure> {
    let loc = header(resp, "location")
        .ok_or_else(|| reg.fatal(what, "an upload answer without a Location"))?;
    let url = resolve_location(&reg.url(base), &loc)
        .ok_or_else(|| reg.fatal(what, "an upload Location that is not an http(s) URL"))?;
    if !reg.same_origin(&url) {
        return Err(reg.fatal(what, "an upload Location on another host"));
    }
    Ok(url)
}

/// Reads `left` bytes of a file from `at` (an upload body).
struct FileRange<'a> {
    file: &'a File,
    at: u64,
    left: u64,
}

impl Read for FileRange<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let want = (buf.len() as u64).min(self.left) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file shrank while it was uploaded",
            ));
        }
        self.at += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}

fn header(resp: &Resp, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn status_text(s: StatusCode) -> String {
    format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
        .trim_end()
        .to_string()
}

/// At most `max` characters of `s`, control characters replaced.
fn printable(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A ureq error as a failure: connection trouble and timeouts may pass.
fn classify(place: &str, what: &str, e: ureq::Error) -> Failure {
    match e {
        ureq::Error::Io(io) => Failure::Retry(crate::error::os_message(&io)),
        ureq::Error::Timeout(t) => Failure::Retry(format!("timed out ({t})")),
        ureq::Error::ConnectionFailed => Failure::Retry("cannot connect".into()),
        ureq::Error::HostNotFound => Failure::Retry("host not found".into()),
        ureq::Error::Protocol(p) => Failure::Retry(format!("HTTP protocol error: {p}")),
        e => Failure::Fatal(Error::remote(place, format!("{what}: {e}"))),
    }
}

/// `bytes A-B/TOTAL` (TOTAL may be `*`).
pub(crate) fn parse_content_range(s: &str) -> Option<(u64, u64, Option<u64>)> {
    let r = s.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = r.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    // A range that ends before it starts, or past the blob's end, is not one.
    (a <= b && total.is_none_or(|t| b < t)).then_some((a, b, total))
}

/// A `Location` resolved against the URL it answered.
fn resolve_location(base: &str, loc: &str) -> Option<String> {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        return Some(loc.to_string());
    }
    let scheme_end = base.find("://")? + 3;
    let origin_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let origin = &base[..origin_end];
    if let Some(rest) = loc.strip_prefix("//") {
        return Some(format!("{}{rest}", &base[..scheme_end]));
    }
    if loc.starts_with('/') {
        return Some(format!("{origin}{loc}"));
    }
    if loc.contains("://") {
        return None;
    }
    // Relative to the base's directory.
    let path = &base[origin_end..];
    let path = path.split('?').next().unwrap_or("");
    let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
    Some(format!("{origin}{dir}{loc}"))
}

/// Percent-encodes a query value.
fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

fn push_scope(repo: &str, from: Option<&str>) -> String {
    match from {
        Some(f) if f != repo => format!("repository:{repo}:pull,push repository:{f}:pull"),
        _ => format!("repository:{repo}:pull,push"),
    }
}

/// The trusted roots: the system's, and the certificates in `cert_dir`.
fn root_certs(cert_dir: Option<&std::path::Path>) -> Result<Vec<ureq::tls::Certificate<'static>>> {
    let mut out: Vec<ureq::tls::Certificate<'static>> = rustls_native_certs::load_native_certs()
        .certs
        .into_iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    if let Some(dir) = cert_dir {
        let rd = std::fs::read_dir(dir).map_err(|e| Error::file(dir, "read", e))?;
        for e in rd.flatten() {
            let p = e.path();
            if !p.extension().is_some_and(|x| x == "crt" || x == "pem") {
                continue;
            }
            let pem = std::fs::read(&p).map_err(|e| Error::file(&p, "read", e))?;
            let mut n = 0;
            for item in ureq::tls::parse_pem(&pem) {
                if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                    out.push(c);
                    n += 1;
                }
            }
            if n == 0 {
                return Err(Error::invalid(
                    "--cert-dir",
                    format!("{}: no PEM certificate", p.display()),
                ));
            }
        }
    }
    Ok(out)
}

/// The media type of a manifest obd pushes.
pub fn manifest_media_type() -> &'static str {
    image::OCI_MANIFEST
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("bytes 0-9/100"),
            Some((0, 9, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 5-5/*"), Some((5, 5, None)));
        assert_eq!(parse_content_range("bytes 9-0/100"), None);
        assert_eq!(parse_content_range("items 0-9/100"), None);
    }

    #[test]
    fn locations() {
        let b = "http://127.0.0.1:5000/v2/a/blobs/uploads/";
        assert_eq!(
            resolve_location(b, "/v2/a/blobs/uploads/x?_state=1").unwrap(),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/x?_state=1"
        );
        assert_eq!(resolve_location(b, "https://s3/x").unwrap(), "https://s3/x");
        assert_eq!(
            resolve_location(b, "x").unwrap(),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/x"
        );
        assert_eq!(resolve_location(b, "//h/p").unwrap(), "http://h/p");
        assert_eq!(resolve_location(b, "ftp://h/p"), None);
    }

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "127.0.0.1", "127.9.9.9", "::1", "[::1]"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["10.0.0.1", "example.com", "::2"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn query_encoding() {
        assert_eq!(
            encode_query("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
