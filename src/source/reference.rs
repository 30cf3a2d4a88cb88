//! Image references in the transport syntax skopeo, podman and buildah use:
//! `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]` for an image in a registry and
//! `oci:DIR[:TAG]` for an OCI image layout directory.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::source::digest::Digest;

/// Where an image is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageRef {
    /// An image in a registry.
    Registry(RegistryRef),
    /// An image in an OCI image layout directory.
    Layout {
        /// The layout directory.
        dir: PathBuf,
        /// The tag (`org.opencontainers.image.ref.name`); without one, the
        /// layout's only image.
        tag: Option<String>,
    },
}

/// An image in a registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryRef {
    /// `host[:port]` as written (`[::1]:5000` for IPv6); `docker.io` for
    /// Docker Hub.
    pub registry: String,
    /// The repository, e.g. `library/busybox`.
    pub repository: String,
    /// The tag, when the reference names one (`latest` when it names
    /// neither a tag nor a digest).
    pub tag: Option<String>,
    /// The manifest digest, when the reference names one.
    pub digest: Option<Digest>,
}

impl RegistryRef {
    /// The host (without brackets for IPv6) and port the registry's API is
    /// at. Docker Hub's API lives at `registry-1.docker.io`.
    pub fn endpoint(&self) -> (String, Option<u16>) {
        if self.registry == "docker.io" {
            return ("registry-1.docker.io".to_string(), None);
        }
        split_host_port(&self.registry)
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The same repository at another tag or digest.
    pub fn with_reference(&self, tag: Option<String>, digest: Option<Digest>) -> Self {
        RegistryRef {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag,
            digest,
        }
    }
}

/// `host[:port]` split; `[v6]:port` unbracketed.
pub fn split_host_port(s: &str) -> (String, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
            return (host.to_string(), port);
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h.to_string(), Some(port)),
            Err(_) => (s.to_string(), None),
        },
        _ => (s.to_string(), None),
    }
}

impl ImageRef {
    /// True when `s` is written as an image reference (it starts with a
    /// transport name), whether or not the rest parses.
    pub fn looks_like(s: &str) -> bool {
        s.starts_with("docker://") || s.starts_with("oci:")
    }

    /// Parses `docker://...` or `oci:...`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming what is wrong with the reference.
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(rest) = s.strip_prefix("docker://") {
            return parse_docker(rest).map(ImageRef::Registry).map_err(|why| {
                Error::invalid(
                    "image reference",
                    format!(
                        "{s:?}: {why} (expected docker://HOST[:PORT]/REPO[:TAG|@sha256:DIGEST])"
                    ),
                )
            });
        }
        if let Some(rest) = s.strip_prefix("oci:") {
            // skopeo splits at the first colon: the directory cannot hold one.
            let (dir, tag) = match rest.split_once(':') {
                Some((d, t)) => (d, Some(t)),
                None => (rest, None),
            };
            if dir.is_empty() {
                return Err(Error::invalid(
                    "image reference",
                    format!("{s:?}: no directory (expected oci:DIR[:TAG])"),
                ));
            }
            if let Some(t) = tag {
                if !valid_tag(t) {
                    return Err(Error::invalid(
                        "image reference",
                        format!("{s:?}: {t:?} is not a tag (letters, digits, '_', '.', '-'; at most 128)"),
                    ));
                }
            }
            return Ok(ImageRef::Layout {
                dir: PathBuf::from(dir),
                tag: tag.map(str::to_string),
            });
        }
        Err(Error::invalid(
            "image reference",
            format!("{s:?}: expected docker://HOST/REPO[:TAG] or oci:DIR[:TAG]"),
        ))
    }
}

/// A tag as the distribution spec allows it.
pub fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn parse_docker(rest: &str) -> std::result::Result<RegistryRef, String> {
    // oci-spec's grammar has no bracketed IPv6 hosts: parse the host here
    // and hand it the rest under a stand-in domain.
    let (v6_host, rest) = match rest.strip_prefix('[') {
        Some(r) => {
            let close = r.find(']').ok_or("an unclosed '[' in the host")?;
            let after = &r[close + 1..];
            let (port, path) = match after.strip_prefix(':') {
                Some(p) => p.split_once('/').ok_or("no repository after the host")?,
                None => (
                    "",
                    after
                        .strip_prefix('/')
                        .ok_or("no repository after the host")?,
                ),
            };
            if !port.is_empty() && port.parse::<u16>().is_err() {
                return Err(format!("{port:?} is not a port"));
            }
            let host = &r[..close];
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("[{host}] is not an IPv6 address"));
            }
            let shown = if port.is_empty() {
                format!("[{host}]")
            } else {
                format!("[{host}]:{port}")
            };
            (Some(shown), format!("v6.invalid/{path}"))
        }
        None => (None, rest.to_string()),
    };
    let r: oci_spec::distribution::Reference = rest.parse().map_err(|e| format!("{e}"))?;
    let registry = match v6_host {
        Some(h) => h,
        None => r.registry().to_string(),
    };
    let digest = r
        .digest()
        .map(|d| Digest::parse(d).map_err(|e| e.to_string()))
        .transpose()?;
    Ok(RegistryRef {
        registry,
        repository: r.repository().to_string(),
        // `latest` when the reference names neither a tag nor a digest.
        tag: r.tag().map(str::to_string),
        digest,
    })
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "docker://{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Registry(r) => r.fmt(f),
            ImageRef::Layout { dir, tag } => {
                write!(f, "oci:{}", dir.display())?;
                if let Some(t) = tag {
                    write!(f, ":{t}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(s: &str) -> RegistryRef {
        match ImageRef::parse(s).unwrap() {
            ImageRef::Registry(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docker_references() {
        let r = reg("docker://127.0.0.1:5000/obd/base:v1");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "obd/base");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.endpoint(), ("127.0.0.1".to_string(), Some(5000)));
        assert_eq!(r.to_string(), "docker://127.0.0.1:5000/obd/base:v1");

        let r = reg("docker://localhost:5000/a");
        assert_eq!(
            (r.registry.as_str(), r.tag.as_deref()),
            ("localhost:5000", Some("latest"))
        );

        let r = reg("docker://busybox");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "library/busybox")
        );
        assert_eq!(r.endpoint().0, "registry-1.docker.io");

        let d = format!("sha256:{}", "ab".repeat(32));
        let r = reg(&format!("docker://[::1]:5000/x/y@{d}"));
        assert_eq!(r.registry, "[::1]:5000");
        assert_eq!(r.endpoint(), ("::1".to_string(), Some(5000)));
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), d);
        let r = reg(&format!("docker://h.example/x:t@{d}"));
        assert_eq!((r.tag.as_deref(), r.manifest_ref()), (Some("t"), d.clone()));
    }

    #[test]
    fn bad_references_say_why() {
        for s in [
            "docker://",
            "docker://Host/UPPER",
            "docker://h/x@sha256:12",
            "docker://[::1/x",
            "docker://[zz]:5/x",
            "oci:",
            "oci:dir:bad tag",
            "ftp://x",
        ] {
            let e = ImageRef::parse(s).unwrap_err().to_string();
            assert!(e.starts_with("image reference: "), "{s}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn layout_references() {
        assert_eq!(
            ImageRef::parse("oci:/tmp/img:v2").unwrap(),
            ImageRef::Layout {
                dir: "/tmp/img".into(),
                tag: Some("v2".into())
            }
        );
        assert_eq!(
            ImageRef::parse("oci:rel").unwrap(),
            ImageRef::Layout {
                dir: "rel".into(),
                tag: None
            }
        );
    }

    #[test]
    fn host_ports() {
        assert_eq!(split_host_port("a:1"), ("a".into(), Some(1)));
        assert_eq!(split_host_port("a"), ("a".into(), None));
        assert_eq!(split_host_port("[::1]"), ("::1".into(), None));
    }
}
