//! overlaybd's image config (`config.v1.json`, FORMAT.md §7) as far as an
//! attach needs it: `lowers[]` (bottom first), `upper`, `resultFile`,
//! `repoBlobUrl` and `recordTracePath`.
//!
//! A lower is found as the reference does: `file`, else `<dir>/overlaybd.commit`,
//! `<dir>/.commit` (legacy) or `<dir>/overlaybd.sealed`, else — with a
//! `digest` and `size` — the registry blob `repoBlobUrl/<digest>`, read
//! lazily. TurboOCI targets and gzip indexes are refused. With
//! `accelerationLayer` the last lower is a trace layer and is left out of
//! the stack. Relative paths are taken relative to the config file's
//! directory.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    lowers: Vec<RawLower>,
    upper: Option<RawUpper>,
    result_file: Option<String>,
    #[serde(default)]
    acceleration_layer: bool,
    repo_blob_url: Option<String>,
    record_trace_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLower {
    file: Option<String>,
    dir: Option<String>,
    digest: Option<String>,
    size: Option<u64>,
    target_file: Option<String>,
    gzip_index: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawUpper {
    data: Option<String>,
    index: Option<String>,
    target: Option<String>,
    gzip_index: Option<String>,
}

/// A lower layer of an image config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lower {
    /// A local file.
    File(PathBuf),
    /// A blob in a registry (`repoBlobUrl` + digest).
    Remote {
        /// `host[:port]`.
        registry: String,
        /// The repository.
        repo: String,
        /// The blob.
        blob: super::image::LayerBlob,
        /// `repoBlobUrl` is plain `http://`.
        plain_http: bool,
    },
}

/// What the config's `recordTracePath` asks for, as the reference reads
/// it: an existing empty file is recorded into, a non-empty one replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceMode {
    /// Record reads into this (empty) file.
    Record(PathBuf),
    /// Replay this trace.
    Replay(PathBuf),
}

/// An image config resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    /// Layers, bottom first.
    pub lowers: Vec<Lower>,
    /// Writable top layer `(data, index)`.
    pub upper: Option<(PathBuf, PathBuf)>,
    /// Where to write `success` or `failed:<reason>`.
    pub result_file: Option<PathBuf>,
    /// `recordTracePath`, when the file exists.
    pub trace: Option<TraceMode>,
}

impl ImageConfig {
    /// Reads and resolves the config at `path`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when it cannot be read, when it is
    /// not JSON of the expected shape, has no layers, or needs something obd
    /// does not do (downloads, turboOCI).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::invalid("image config", e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base)
    }

    /// Resolves config text; relative paths are joined to `base`.
    ///
    /// # Errors
    /// As [`ImageConfig::load`].
    pub fn parse(text: &str, base: &Path) -> Result<Self> {
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| Error::invalid("image config", e))?;
        let result_file = raw.result_file.as_deref().map(|p| base.join(p));
        let repo = raw
            .repo_blob_url
            .as_deref()
            .map(parse_repo_blob_url)
            .transpose()?;
        let mut lowers = raw
            .lowers
            .iter()
            .enumerate()
            .map(|(i, l)| resolve_lower(i, l, base, repo.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        if raw.acceleration_layer {
            lowers.pop();
        }
        let upper = match raw.upper {
            None => None,
            Some(u) => {
                if u.target.is_some() || u.gzip_index.is_some() {
                    return Err(Error::invalid(
                        "image config",
                        "upper.target / upper.gzipIndex (turboOCI) are not supported",
                    ));
                }
                match (u.data, u.index) {
                    (Some(d), Some(i)) => Some((base.join(d), base.join(i))),
                    (None, None) => None,
                    _ => {
                        return Err(Error::invalid(
                            "image config",
                            "upper needs both data and index",
                        ))
                    }
                }
            }
        };
        if lowers.is_empty() && upper.is_none() {
            return Err(Error::invalid(
                "image config",
                "no layers (lowers[] is empty)",
            ));
        }
        let trace = raw.record_trace_path.as_deref().and_then(|p| {
            let p = base.join(p);
            match std::fs::metadata(&p) {
                Ok(m) if m.len() == 0 => Some(TraceMode::Record(p)),
                Ok(_) => Some(TraceMode::Replay(p)),
                Err(_) => None,
            }
        });
        Ok(ImageConfig {
            lowers,
            upper,
            result_file,
            trace,
        })
    }
}

/// The `resultFile` of the config at `path`, if it can be read at all: the
/// place to report a config that [`ImageConfig::load`] refuses.
pub fn result_file_of(path: &Path) -> Option<PathBuf> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Only {
        result_file: Option<String>,
    }
    let text = std::fs::read_to_string(path).ok()?;
    let only: Only = serde_json::from_str(&text).ok()?;
    let base = path.parent().unwrap_or(Path::new("."));
    only.result_file.map(|p| base.join(p))
}

/// `repoBlobUrl`: `http(s)://HOST[:PORT]/v2/<repo>/blobs` → (host, repo, plain http).
fn parse_repo_blob_url(u: &str) -> Result<(String, String, bool)> {
    let bad = || {
        Error::invalid(
            "image config",
            format!("repoBlobUrl {u:?} is not http(s)://HOST/v2/REPO/blobs"),
        )
    };
    let (plain, rest) = match (u.strip_prefix("https://"), u.strip_prefix("http://")) {
        (Some(r), _) => (false, r),
        (None, Some(r)) => (true, r),
        _ => return Err(bad()),
    };
    let (host, path) = rest.split_once('/').ok_or_else(bad)?;
    let repo = path
        .strip_prefix("v2/")
        .and_then(|p| p.trim_end_matches('/').strip_suffix("/blobs"))
        .filter(|r| !r.is_empty())
        .ok_or_else(bad)?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), repo.to_string(), plain))
}

fn resolve_lower(
    i: usize,
    l: &RawLower,
    base: &Path,
    repo: Option<&(String, String, bool)>,
) -> Result<Lower> {
    match resolve_local(i, l, base) {
        Ok(p) => Ok(Lower::File(p)),
        Err(local) => match (repo, &l.digest, l.size) {
            (Some((host, repo, plain)), Some(d), Some(size)) if l.file.is_none() => {
                let digest = super::digest::Digest::parse(d)
                    .map_err(|e| Error::invalid("image config", format!("lowers[{i}]: {e}")))?;
                Ok(Lower::Remote {
                    registry: host.clone(),
                    repo: repo.clone(),
                    blob: super::image::LayerBlob { digest, size },
                    plain_http: *plain,
                })
            }
            (Some(_), Some(_), None) if l.file.is_none() => Err(Error::invalid(
                "image config",
                format!("lowers[{i}]: a registry layer needs its size"),
            )),
            _ => Err(local),
        },
    }
}

fn resolve_local(i: usize, l: &RawLower, base: &Path) -> Result<PathBuf> {
    if l.target_file.is_some() || l.gzip_index.is_some() {
        return Err(Error::invalid(
            "image config",
            format!("lowers[{i}]: targetFile / gzipIndex (turboOCI) are not supported"),
        ));
    }
    if let Some(f) = &l.file {
        return Ok(base.join(f));
    }
    if let Some(d) = &l.dir {
        let dir = base.join(d);
        for name in ["overlaybd.commit", ".commit", "overlaybd.sealed"] {
            let p = dir.join(name);
            if p.exists() {
                return Ok(p);
            }
        }
        return Err(Error::invalid(
            "image config",
            format!(
                "lowers[{i}]: {} holds no overlaybd.commit, .commit or overlaybd.sealed",
                dir.display()
            ),
        ));
    }
    Err(Error::invalid(
        "image config",
        match &l.digest {
            Some(d) => {
                format!("lowers[{i}]: {d} is not a local file and the config has no repoBlobUrl")
            }
            None => format!("lowers[{i}]: no file or dir"),
        },
    ))
}

/// Where the result file `rf` of the config at `config` may be written:
/// only next to the config (in its directory) or under `result_dir`, so that
/// a config cannot make obd, which attaches as root, write anywhere.
///
/// # Errors
/// [`Error::Invalid`] for a result file elsewhere (through `..`, an
/// absolute path or a symbolic link to another directory).
pub fn check_result_file(config: &Path, rf: &Path, result_dir: Option<&Path>) -> Result<PathBuf> {
    let refuse = |why: &str| {
        Error::invalid(
            "resultFile",
            format!(
                "{}: {why}; the result file is written only next to the config or under \
                 --result-dir",
                rf.display()
            ),
        )
    };
    let canon = |p: &Path| std::fs::canonicalize(p).ok();
    let config_dir = match config.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = rf.file_name().ok_or_else(|| refuse("not a file name"))?;
    let parent = match rf.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let parent = canon(parent).ok_or_else(|| refuse("its directory does not exist"))?;
    let next_to_config = canon(config_dir).is_some_and(|d| d == parent);
    let under_result_dir = result_dir
        .and_then(canon)
        .is_some_and(|d| parent.starts_with(d));
    if !next_to_config && !under_result_dir {
        return Err(refuse("outside the allowed directories"));
    }
    Ok(parent.join(name))
}

/// True when `path` may be replaced by a result file: it does not exist,
/// or it is a previous result file (a small regular file of this user
/// holding `success` or `failed:...`), never a symbolic link.
fn replaceable_result(path: &Path) -> Result<()> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let m = match path.symlink_metadata() {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::file(path, "read", e)),
    };
    let me = rustix::process::geteuid().as_raw();
    let mut head = [0u8; 8];
    let is_result = m.file_type().is_file()
        && m.uid() == me
        && m.len() <= 4096
        && std::fs::File::open(path)
            .and_then(|mut f| f.read(&mut head))
            .is_ok_and(|n| head[..n].starts_with(b"success") || head[..n].starts_with(b"failed:"));
    if is_result {
        Ok(())
    } else {
        Err(Error::invalid(
            "resultFile",
            format!(
                "{} exists and is not a previous result file: not replacing it",
                path.display()
            ),
        ))
    }
}

/// Writes overlaybd's result file: `success`, or `failed:<reason>`. Only a
/// missing file or a previous result file is replaced (see
/// [`check_result_file`] for where it may be).
///
/// # Errors
/// I/O errors writing it; an existing file that is not a result file.
pub fn write_result(path: &Path, outcome: std::result::Result<(), &str>) -> Result<()> {
    replaceable_result(path)?;
    let text = match outcome {
        Ok(()) => "success".to_string(),
        Err(why) => format!("failed:{why}"),
    };
    let mut f = crate::io::atomic::AtomicFile::create(path, true)?;
    std::io::Write::write_all(f.file_mut(), text.as_bytes())
        .map_err(|e| Error::io("result file", 0, e))?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowers_upper_and_result_resolve_against_the_config_dir() {
        let c = ImageConfig::parse(
            r#"{"repoBlobUrl":"https://r/v2/x/blobs","lowers":[{"file":"L0.commit"},
               {"file":"/abs/L1.commit","digest":"sha256:1"}],
               "upper":{"data":"u.data","index":"u.index"},"resultFile":"res"}"#,
            Path::new("/cfg"),
        )
        .unwrap();
        assert_eq!(
            c.lowers,
            [
                Lower::File("/cfg/L0.commit".into()),
                Lower::File("/abs/L1.commit".into())
            ]
        );
        assert_eq!(
            c.upper,
            Some((PathBuf::from("/cfg/u.data"), PathBuf::from("/cfg/u.index")))
        );
        assert_eq!(c.result_file, Some(PathBuf::from("/cfg/res")));
    }

    #[test]
    fn dir_lowers_follow_the_reference_search_order() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("a")).unwrap();
        std::fs::write(d.path().join("a/overlaybd.sealed"), b"").unwrap();
        std::fs::write(d.path().join("a/.commit"), b"").unwrap();
        let c = ImageConfig::parse(
            r#"{"lowers":[{"dir":"a"},{"file":"trace"}],"accelerationLayer":true}"#,
            d.path(),
        )
        .unwrap();
        assert_eq!(c.lowers, [Lower::File(d.path().join("a/.commit"))]);
    }

    #[test]
    fn registry_lowers_come_from_repo_blob_url() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let c = ImageConfig::parse(
            &format!(
                r#"{{"repoBlobUrl":"http://127.0.0.1:5000/v2/obd/app/blobs","lowers":[{{"digest":"{d}","size":4096,"dir":"/nonexistent"}}]}}"#
            ),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(
            c.lowers,
            [Lower::Remote {
                registry: "127.0.0.1:5000".into(),
                repo: "obd/app".into(),
                blob: crate::source::image::LayerBlob {
                    digest: crate::source::digest::Digest::parse(&d).unwrap(),
                    size: 4096
                },
                plain_http: true,
            }]
        );
        for bad in [
            format!(
                r#"{{"repoBlobUrl":"ftp://h/v2/a/blobs","lowers":[{{"digest":"{d}","size":1}}]}}"#
            ),
            format!(
                r#"{{"repoBlobUrl":"https://h/a/blobs","lowers":[{{"digest":"{d}","size":1}}]}}"#
            ),
            format!(r#"{{"repoBlobUrl":"https://h/v2/a/blobs","lowers":[{{"digest":"{d}"}}]}}"#),
            r#"{"repoBlobUrl":"https://h/v2/a/blobs","lowers":[{"digest":"md5:00","size":1}]}"#
                .to_string(),
        ] {
            assert!(ImageConfig::parse(&bad, Path::new("/")).is_err(), "{bad}");
        }
    }

    #[test]
    fn remote_turbooci_and_empty_configs_are_refused() {
        for text in [
            r#"{"lowers":[{"digest":"sha256:00"}]}"#,
            r#"{"lowers":[{"file":"x","targetFile":"y"}]}"#,
            r#"{"lowers":[]}"#,
            r#"{"lowers":[{"file":"x"}],"upper":{"data":"d"}}"#,
            r#"["not an object"]"#,
        ] {
            let e = ImageConfig::parse(text, Path::new("/")).unwrap_err();
            assert!(matches!(e, Error::Invalid { .. }), "{text}: {e}");
        }
    }

    #[test]
    fn result_file_of_a_refused_config() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.json");
        std::fs::write(&p, r#"{"lowers":[{"digest":"sha256:0"}],"resultFile":"r"}"#).unwrap();
        assert!(ImageConfig::load(&p).is_err());
        assert_eq!(result_file_of(&p), Some(d.path().join("r")));
    }

    #[test]
    fn result_file_words() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("result");
        write_result(&p, Ok(())).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "success");
        write_result(&p, Err("no ublk")).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "failed:no ublk");
    }
}
