//! Registry credentials and authentication challenges.
//!
//! Credentials come from `--creds USER:PASS` or from the auth files podman
//! and docker write (`auths` entries, base64 `user:pass`). Challenges are
//! the `WWW-Authenticate` header of a 401: `Basic realm=...` or `Bearer
//! realm=...,service=...,scope=...` (RFC 7235 auth-params).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::error::{Error, Result};

/// A user name and password (or token). Never printed: `Debug` shows the
/// user only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password or identity token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.user)
    }
}

impl Credentials {
    /// Parses `USER:PASS` (the password may hold colons).
    ///
    /// # Errors
    /// No colon, or an empty user.
    pub fn parse(s: &str) -> Result<Self> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Credentials {
                user: u.to_string(),
                password: p.to_string(),
            }),
            _ => Err(Error::invalid(
                "--creds",
                "expected USER:PASSWORD (the value is not shown)",
            )),
        }
    }

    /// The `Authorization` header value for Basic auth.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// The auth files searched, in order: `$REGISTRY_AUTH_FILE`, podman's
/// `$XDG_RUNTIME_DIR/containers/auth.json` and
/// `~/.config/containers/auth.json`, docker's `$DOCKER_CONFIG/config.json`
/// or `~/.docker/config.json`.
pub fn default_auth_files() -> Vec<PathBuf> {
    let mut v = Vec::new();
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = env("REGISTRY_AUTH_FILE") {
        v.push(p);
    }
    if let Some(d) = env("XDG_RUNTIME_DIR") {
        v.push(d.join("containers/auth.json"));
    }
    let home = env("HOME");
    match env("XDG_CONFIG_HOME") {
        Some(c) => v.push(c.join("containers/auth.json")),
        None => {
            if let Some(h) = &home {
                v.push(h.join(".config/containers/auth.json"));
            }
        }
    }
    match env("DOCKER_CONFIG") {
        Some(d) => v.push(d.join("config.json")),
        None => {
            if let Some(h) = &home {
                v.push(h.join(".docker/config.json"));
            }
        }
    }
    v
}

/// The keys an auth file may use for `registry`.
fn keys_for(registry: &str) -> Vec<String> {
    let mut k = vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ];
    if registry == "docker.io" {
        k.push("https://index.docker.io/v1/".into());
        k.push("index.docker.io".into());
        k.push("registry-1.docker.io".into());
    }
    k
}

/// Credentials for `registry` from the first auth file that has an entry
/// (`files` in order; a missing file is skipped).
///
/// # Errors
/// An auth file that exists but is not readable JSON, or whose entry is
/// not base64 `user:password` (the error names the file, never the value).
pub fn from_auth_files(files: &[PathBuf], registry: &str) -> Result<Option<Credentials>> {
    for f in files {
        if let Some(c) = from_auth_file(f, registry)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

fn from_auth_file(path: &Path, registry: &str) -> Result<Option<Credentials>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::file(path, "read", e)),
    };
    if bytes.len() > 4 << 20 {
        return Err(Error::invalid(
            "auth file",
            format!("{}: larger than 4 MiB", path.display()),
        ));
    }
    let bad = |why: &str| Error::invalid("auth file", format!("{}: {why}", path.display()));
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad("not JSON"))?;
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    for key in keys_for(registry) {
        let Some(entry) = auths.get(&key) else {
            continue;
        };
        if let Some(enc) = entry.get("auth").and_then(|a| a.as_str()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(enc.trim())
                .map_err(|_| bad(&format!("the entry for {key} is not base64")))?;
            let s = String::from_utf8(raw)
                .map_err(|_| bad(&format!("the entry for {key} is not UTF-8")))?;
            let c = Credentials::parse(&s)
                .map_err(|_| bad(&format!("the entry for {key} is not user:password")))?;
            return Ok(Some(c));
        }
        if let Some(tok) = entry.get("identitytoken").and_then(|a| a.as_str()) {
            // An identity token is a refresh token for the token endpoint;
            // docker sends it as the password of user "<token>".
            return Ok(Some(Credentials {
                user: "<token>".into(),
                password: tok.to_string(),
            }));
        }
    }
    Ok(None)
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer` (lower case).
    pub scheme: String,
    /// Its parameters, names in lower case.
    pub params: BTreeMap<String, String>,
}

/// Parses the first challenge of a `WWW-Authenticate` header value.
///
/// # Errors
/// Not `Scheme param=value, ...`.
pub fn parse_challenge(header: &str) -> Result<Challenge> {
    let bad = |why: &str| Error::invalid("WWW-Authenticate", why.to_string());
    let h = header.trim();
    let (scheme, rest) = match h.find(char::is_whitespace) {
        Some(i) => (&h[..i], h[i..].trim_start()),
        None => (h, ""),
    };
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(bad("no authentication scheme"));
    }
    let mut params = BTreeMap::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let name = rest[start..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            // A token68 or a second challenge: stop at what we have.
            break;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = Vec::new();
            loop {
                match b.get(i) {
                    None => return Err(bad("an unterminated quoted value")),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < b.len() => {
                        v.push(b[i + 1]);
                        i += 2;
                    }
                    Some(&c) => {
                        v.push(c);
                        i += 1;
                    }
                }
            }
            String::from_utf8(v).map_err(|_| bad("a value that is not UTF-8"))?
        } else {
            let s = i;
            while i < b.len() && b[i] != b',' && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            rest[s..i].to_string()
        };
        if params.len() >= 32 {
            return Err(bad("too many parameters"));
        }
        params.insert(name, value);
    }
    Ok(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let c = parse_challenge(r#"Basic realm="a \"quoted\" realm""#).unwrap();
        assert_eq!(
            (c.scheme.as_str(), c.params["realm"].as_str()),
            ("basic", "a \"quoted\" realm")
        );
        assert!(parse_challenge(r#"Bearer realm="open"#).is_err());
        assert!(parse_challenge("").is_err());
    }

    #[test]
    fn credentials_are_never_printed() {
        let c = Credentials::parse("me:s3cr:et").unwrap();
        assert_eq!(c.password, "s3cr:et");
        assert!(!format!("{c:?}").contains("s3cr"));
        assert!(Credentials::parse("nocolon")
            .unwrap_err()
            .to_string()
            .find("nocolon")
            .is_none());
    }

    #[test]
    fn auth_files() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("config.json");
        let enc = base64::engine::general_purpose::STANDARD.encode("u:p");
        std::fs::write(
            &f,
            format!(r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{enc}"}},"https://index.docker.io/v1/":{{"auth":"{enc}"}}}}}}"#),
        )
        .unwrap();
        let files = vec![d.path().join("missing.json"), f.clone()];
        let c = from_auth_files(&files, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("u", "p"));
        assert!(from_auth_files(&files, "docker.io").unwrap().is_some());
        assert!(from_auth_files(&files, "other:1").unwrap().is_none());
        std::fs::write(&f, r#"{"auths":{"h":{"auth":"!!"}}}"#).unwrap();
        let e = from_auth_files(&files, "h").unwrap_err().to_string();
        assert!(e.contains("not base64") && !e.contains("!!"), "{e}");
    }
}
