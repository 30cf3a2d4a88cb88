//! Which files to verify: directory walks, layer detection, writable pairs.
//!
//! A file is a layer blob when it starts with the ZFile or LSMT magic (a
//! magic damaged in a few bits still counts, so that the damage is
//! reported rather than the file skipped), or is a tar archive whose first
//! member is one. In a directory, other files are skipped with the reason,
//! unless their name says they should be a layer (`overlaybd.commit`,
//! `*.zfile`, `writable_data`, ...): those are verified and fail.
//!
//! Writable layers are two files: a data file (LSMT header, flags 0x03) and
//! an index file (flags 0x01) that `overlaybd-create` gives the **same
//! UUID**. Files given or found together are paired by that UUID (by name,
//! `…data…` ↔ `…index…`, when several match) and verified as one layer. A
//! data file given alone is paired with a sibling whose name swaps `data`
//! for `index`, if its UUID matches. An unpaired half is verified alone.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::lsmt::raw::{self as lraw, HEADER_SPACE as LSMT_SPACE};
use crate::format::lsmt::Header;
use crate::format::zfile::raw as zraw;
use crate::io::FileAt;
use crate::io::ReadAt;

/// Which magic a view starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Magic {
    /// ZFile (possibly damaged in a few bits).
    Zfile,
    /// LSMT (possibly damaged in a few bits).
    Lsmt,
    /// Neither.
    None,
}

/// Flipped bits up to which a 24-byte magic still counts as that magic. Two
/// unrelated 24-byte strings differ in about 96 bits.
pub(crate) const MAGIC_TOLERANCE: u32 = 4;

/// Bits in which `got` differs from `want`.
pub(crate) fn bit_distance(got: &[u8], want: &[u8]) -> u32 {
    got.iter()
        .zip(want)
        .map(|(a, b)| (a ^ b).count_ones())
        .sum::<u32>()
        + 8 * got.len().abs_diff(want.len()) as u32
}

fn magic_bytes(m0: &[u8; 8], m1: &[u8; 16]) -> [u8; 24] {
    let mut m = [0u8; 24];
    m[..8].copy_from_slice(m0);
    m[8..].copy_from_slice(m1);
    m
}

/// The ZFile magic, 24 bytes.
pub(crate) fn zfile_magic() -> [u8; 24] {
    magic_bytes(&zraw::MAGIC0, &zraw::MAGIC1)
}

/// The LSMT magic, 24 bytes.
pub(crate) fn lsmt_magic() -> [u8; 24] {
    magic_bytes(&lraw::MAGIC0, &lraw::MAGIC1)
}

/// Classifies 24 leading bytes.
pub(crate) fn classify_magic(head: &[u8]) -> Magic {
    if head.len() < 24 {
        return Magic::None;
    }
    if bit_distance(&head[..24], &zfile_magic()) <= MAGIC_TOLERANCE {
        Magic::Zfile
    } else if bit_distance(&head[..24], &lsmt_magic()) <= MAGIC_TOLERANCE {
        Magic::Lsmt
    } else {
        Magic::None
    }
}

/// The magic `r` starts with.
///
/// # Errors
/// I/O errors.
pub(crate) fn magic_of(r: &dyn ReadAt) -> Result<Magic> {
    if r.len() < 24 {
        return Ok(Magic::None);
    }
    let mut m = [0u8; 24];
    r.read_exact_at(&mut m, 0)?;
    Ok(classify_magic(&m))
}

/// What a file looks like from its first and last bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A read-only layer blob or a ZFile: plain, compressed or tar-wrapped.
    Blob,
    /// A writable layer's data file.
    RwData {
        /// The UUID in its header.
        uuid: String,
        /// Sparse (flag bit 4): complete without an index file.
        sparse: bool,
    },
    /// A writable layer's index file.
    RwIndex {
        /// The UUID in its header.
        uuid: String,
    },
    /// Not a layer, and why.
    NotLayer(String),
}

/// Reads an LSMT header record at `at`, tolerating a damaged magic.
pub(crate) fn lsmt_header_at(r: &dyn ReadAt, at: u64) -> Result<Option<(Header, Vec<u8>)>> {
    let n = (r.len().saturating_sub(at)).min(LSMT_SPACE) as usize;
    if n < lraw::HEADER_STRUCT_SIZE as usize {
        return Ok(None);
    }
    let mut buf = vec![0u8; n];
    r.read_exact_at(&mut buf, at)?;
    if classify_magic(&buf) != Magic::Lsmt {
        return Ok(None);
    }
    let mut patched = buf.clone();
    patched[..24].copy_from_slice(&lsmt_magic());
    let h = Header::parse(&patched, "lsmt header", at)?;
    Ok(Some((h, buf)))
}

/// Looks at a file's leading (and, for LSMT data files, trailing) bytes.
///
/// # Errors
/// I/O errors.
pub fn probe(r: &dyn ReadAt) -> Result<Probe> {
    let len = r.len();
    if len == 0 {
        return Ok(Probe::NotLayer("empty file".into()));
    }
    match magic_of(r)? {
        Magic::Zfile => return Ok(Probe::Blob),
        Magic::Lsmt => {
            let Some((h, _)) = lsmt_header_at(r, 0)? else {
                return Ok(Probe::Blob);
            };
            if !h.is_data() {
                return Ok(Probe::RwIndex { uuid: h.uuid });
            }
            let trailer = if len >= 2 * LSMT_SPACE {
                lsmt_header_at(r, len - LSMT_SPACE)?
            } else {
                None
            };
            let has_trailer = trailer.is_some_and(|(t, _)| !t.is_header());
            if has_trailer || h.is_sealed() {
                return Ok(Probe::Blob);
            }
            let sparse = h.is_sparse();
            return Ok(Probe::RwData {
                uuid: h.uuid,
                sparse,
            });
        }
        Magic::None => {}
    }
    if super::tar::is_tarish(r)? {
        // A tar wrapper: a layer if its member is one (or if the wrapper is
        // too damaged to tell, so that the damage gets reported).
        return Ok(match crate::format::tar::locate(r) {
            Ok(Some(p)) => {
                let member = crate::io::Slice::new(r, p.offset, p.size)?;
                if magic_of(&member)? == Magic::None {
                    Probe::NotLayer(format!(
                        "tar archive whose first member ({:?}) is not a layer",
                        p.member
                    ))
                } else {
                    Probe::Blob
                }
            }
            _ => Probe::Blob,
        });
    }
    Ok(Probe::NotLayer("no tar, ZFile or LSMT magic".into()))
}

/// What to do with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Verify one blob.
    Blob(PathBuf),
    /// Verify a writable layer's data and index files together.
    Pair {
        /// The data file.
        data: PathBuf,
        /// The index file.
        index: PathBuf,
    },
    /// Not a layer (found in a directory).
    Skip {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// Why it is not a layer.
        reason: String,
    },
    /// Could not be looked at.
    Error {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl Job {
    /// The (data) file of the job.
    pub fn path(&self) -> &Path {
        match self {
            Job::Blob(p) | Job::Skip { path: p, .. } | Job::Error { path: p, .. } => p,
            Job::Pair { data, .. } => data,
        }
    }
}

/// Names a layer blob goes by (`overlaybd`'s and aci's file names).
fn layer_like_name(p: &Path) -> bool {
    let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    matches!(
        name,
        "overlaybd.commit" | "overlaybd.sealed" | ".commit" | "writable_data" | "writable_index"
    ) || [".commit", ".sealed", ".zfile"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// The sibling named like `p` with the last `from` replaced by `to`:
/// `writable_data` ↔ `writable_index`, `L1.data` ↔ `L1.index`.
fn swap_name(p: &Path, from: &str, to: &str) -> Option<PathBuf> {
    let name = p.file_name()?.to_str()?;
    let at = name.rfind(from)?;
    let mut s = name.to_string();
    s.replace_range(at..at + from.len(), to);
    Some(p.with_file_name(s))
}

/// The name of a data file's index file.
fn index_sibling(data: &Path) -> Option<PathBuf> {
    swap_name(data, "data", "index")
}

struct Found {
    path: PathBuf,
    explicit: bool,
    size: u64,
    probe: std::result::Result<Probe, String>,
}

fn probe_path(p: &Path) -> std::result::Result<(u64, Probe), String> {
    let f = FileAt::open(p).map_err(|e| e.to_string())?;
    let probe = probe(&f).map_err(|e| e.to_string())?;
    Ok((f.len(), probe))
}

/// Expands `paths` (files and directories) into jobs, in order: directories
/// are walked in file-name order, writable pairs are formed, non-layers in
/// directories are skipped.
///
/// # Errors
/// A path that does not exist or cannot be read: verify cannot run.
pub fn plan(paths: &[PathBuf]) -> Result<Vec<Job>> {
    let (mut found, errors) = collect_files(paths)?;
    let mut seen = std::collections::HashSet::new();
    found.retain(|(p, _)| seen.insert(p.clone()));
    let files: Vec<Found> = found
        .into_par_iter()
        .map(|(path, explicit)| {
            let r = probe_path(&path);
            Found {
                size: r.as_ref().map(|x| x.0).unwrap_or(0),
                probe: r.map(|x| x.1),
                path,
                explicit,
            }
        })
        .collect();
    let pairs = pair_writable(&files);
    let mut out: Vec<Job> = (0..files.len())
        .filter(|&i| !pairs.used[i])
        .map(|i| job_for(i, &files, &pairs))
        .collect();
    out.extend(errors);
    Ok(out)
}

/// A file to check and whether the user named it.
type Named = (PathBuf, bool);

/// The files `paths` name (directories walked in file-name order), each
/// with whether it was named explicitly; unreadable directory entries as
/// error jobs.
fn collect_files(paths: &[PathBuf]) -> Result<(Vec<Named>, Vec<Job>)> {
    let mut found: Vec<Named> = Vec::new();
    let mut errors: Vec<Job> = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| Error::io("path", 0, e))?;
        if !meta.is_dir() {
            // Fail now, before any work, when an explicit file cannot be read.
            std::fs::File::open(p).map_err(Error::open)?;
            found.push((p.clone(), true));
            continue;
        }
        let walk = walkdir::WalkDir::new(p)
            .min_depth(1)
            .sort_by_file_name()
            .into_iter();
        for entry in walk {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let path = e.path().map(Path::to_path_buf).unwrap_or_else(|| p.clone());
                    errors.push(Job::Error {
                        path,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let ft = entry.file_type();
            let is_file = ft.is_file()
                || (ft.is_symlink() && std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()));
            if is_file {
                found.push((entry.path().to_path_buf(), false));
            }
        }
    }
    Ok((found, errors))
}

/// How the writable layers' data and index files among `files` pair up.
struct Pairs {
    /// The index file found for data file `i` among `files`.
    partner: Vec<Option<usize>>,
    /// Index files taken by a data file.
    used: Vec<bool>,
    /// Data file `i`'s index file, found next to it but not among `files`.
    extra: Vec<(usize, PathBuf)>,
    /// Index file `j`'s data file, found next to it but not among `files`.
    data_for: Vec<(usize, PathBuf)>,
}

/// Pairs writable data files with index files (same directory and uuid,
/// the sibling name first), and explicitly named halves with the other half
/// next to them.
fn pair_writable(files: &[Found]) -> Pairs {
    let mut partner: Vec<Option<usize>> = vec![None; files.len()];
    let mut used = vec![false; files.len()];
    let mut extra: Vec<(usize, PathBuf)> = Vec::new();
    for i in 0..files.len() {
        let Ok(Probe::RwData { uuid, sparse }) = &files[i].probe else {
            continue;
        };
        if *sparse {
            continue;
        }
        let dir = files[i].path.parent().map(Path::to_path_buf);
        let cands: Vec<usize> = (0..files.len())
            .filter(|&j| {
                !used[j]
                    && files[j].path.parent().map(Path::to_path_buf) == dir
                    && matches!(&files[j].probe, Ok(Probe::RwIndex { uuid: u }) if u == uuid)
            })
            .collect();
        let sib = index_sibling(&files[i].path);
        let pick = cands
            .iter()
            .copied()
            .find(|&j| Some(&files[j].path) == sib.as_ref())
            .or_else(|| cands.first().copied());
        if let Some(j) = pick {
            partner[i] = Some(j);
            used[j] = true;
        } else if files[i].explicit {
            if let Some(s) = sib.filter(|s| !files.iter().any(|f| &f.path == s)) {
                if let Ok((_, Probe::RwIndex { uuid: u })) = probe_path(&s) {
                    if &u == uuid {
                        extra.push((i, s));
                    }
                }
            }
        }
    }
    // An index file given alone: its data file next to it.
    let mut data_for: Vec<(usize, PathBuf)> = Vec::new();
    for (j, f) in files.iter().enumerate() {
        let Ok(Probe::RwIndex { uuid }) = &f.probe else {
            continue;
        };
        if used[j] || !f.explicit {
            continue;
        }
        if let Some(s) =
            swap_name(&f.path, "index", "data").filter(|s| !files.iter().any(|f| &f.path == s))
        {
            if matches!(probe_path(&s), Ok((_, Probe::RwData { uuid: u, .. })) if &u == uuid) {
                data_for.push((j, s));
            }
        }
    }
    Pairs {
        partner,
        used,
        extra,
        data_for,
    }
}

/// The job for file `i` (not an index file taken by a data file).
fn job_for(i: usize, files: &[Found], pairs: &Pairs) -> Job {
    let f = &files[i];
    let found = |v: &[(usize, PathBuf)]| v.iter().find(|e| e.0 == i).map(|e| e.1.clone());
    if let Some(data) = found(&pairs.data_for) {
        return Job::Pair {
            data,
            index: f.path.clone(),
        };
    }
    if let Some(j) = pairs.partner[i] {
        return Job::Pair {
            data: f.path.clone(),
            index: files[j].path.clone(),
        };
    }
    if let Some(index) = found(&pairs.extra) {
        return Job::Pair {
            data: f.path.clone(),
            index,
        };
    }
    match &f.probe {
        Err(e) => Job::Error {
            path: f.path.clone(),
            reason: e.clone(),
        },
        Ok(Probe::NotLayer(reason)) if !f.explicit && !layer_like_name(&f.path) => Job::Skip {
            path: f.path.clone(),
            size: f.size,
            reason: reason.clone(),
        },
        Ok(_) => Job::Blob(f.path.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sibling_and_names() {
        assert_eq!(
            index_sibling(Path::new("/a/writable_data")),
            Some(PathBuf::from("/a/writable_index"))
        );
        assert_eq!(
            index_sibling(Path::new("L1.data")),
            Some(PathBuf::from("L1.index"))
        );
        assert_eq!(index_sibling(Path::new("x.commit")), None);
        assert!(layer_like_name(Path::new("d/overlaybd.commit")));
        assert!(layer_like_name(Path::new("L0.zstd.zfile")));
        assert!(!layer_like_name(Path::new("MANIFEST.json")));
    }

    #[test]
    fn magic_tolerance() {
        let mut z = zfile_magic();
        assert_eq!(classify_magic(&z), Magic::Zfile);
        z[3] ^= 0x81;
        z[20] ^= 0x01;
        assert_eq!(classify_magic(&z), Magic::Zfile);
        assert_eq!(classify_magic(&lsmt_magic()), Magic::Lsmt);
        assert_eq!(classify_magic(&[0u8; 24]), Magic::None);
        assert_eq!(classify_magic(&[0u8; 10]), Magic::None);
    }
}
