//! Stack checks (`--stack`): the layers as one virtual disk (§4.1).
//!
//! Each layer is verified as a file first; then: at most 255 read-only
//! layers, each an LSMT layer (a writable one only on top), every layer's
//! `parent_uuid` equal to the `uuid` of the layer below, and virtual sizes
//! that agree (a layer may be larger than the ones below it, as after
//! `overlaybd-resize`, but not larger than the stack). Last, obd's stack
//! engine must open the stack.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Container, FileReport, Problem, Status};
use crate::format::lsmt::raw::MAX_STACK_LAYERS;
use crate::format::uuid::Uuid;

/// One layer as the stack sees it.
#[derive(Debug, Clone, Serialize)]
pub struct StackLayerInfo {
    /// Position, bottom first.
    pub layer: usize,
    /// The file (a writable layer's data file).
    pub path: String,
    /// Layer kind, when it could be told.
    pub kind: Option<&'static str>,
    /// Its UUID.
    pub uuid: Option<String>,
    /// Its parent's UUID.
    pub parent_uuid: Option<String>,
    /// Its declared virtual size.
    pub virtual_size: Option<u64>,
}

/// The result of the stack checks.
#[derive(Debug, Serialize)]
pub struct StackReport {
    /// Layers, bottom first.
    pub layers: Vec<StackLayerInfo>,
    /// The stack's virtual size (topmost non-zero).
    pub virtual_size: Option<u64>,
    /// What is wrong with the stack as a whole.
    pub problems: Vec<Problem>,
    /// Facts worth knowing.
    pub notes: Vec<String>,
}

fn problem(check: &'static str, layer: usize, message: impl Into<String>) -> Problem {
    let mut p = Problem::new(Container::Stack, check, message).entry(layer as u64);
    p.file = "stack".into();
    p
}

/// Checks `files` (the verified layers, bottom first; the writable top
/// last when `has_upper`) as one stack. `paths`/`upper` let obd's stack
/// engine open the stack too, when every layer is clean.
pub fn verify_stack(
    files: &[FileReport],
    has_upper: bool,
    paths: &[PathBuf],
    upper: Option<(&Path, &Path)>,
) -> StackReport {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let layers: Vec<StackLayerInfo> = files
        .iter()
        .enumerate()
        .map(|(i, f)| StackLayerInfo {
            layer: i,
            path: f.path.clone(),
            kind: f.layer.as_ref().map(|l| l.kind).or(f.kind),
            uuid: f.layer.as_ref().map(|l| l.uuid.clone()),
            parent_uuid: f.layer.as_ref().map(|l| l.parent_uuid.clone()),
            virtual_size: f.layer.as_ref().map(|l| l.virtual_size),
        })
        .collect();
    let ro = layers.len() - has_upper as usize;
    if ro > MAX_STACK_LAYERS {
        problems.push(problem(
            "stack.too_many",
            ro - 1,
            format!("{ro} read-only layers; at most {MAX_STACK_LAYERS} can be stacked"),
        ));
    }
    for l in &layers {
        let top = has_upper && l.layer + 1 == layers.len();
        let ok = match l.kind {
            Some("lsmt_ro" | "lsmt_sealed") => !top,
            Some("lsmt_rw" | "lsmt_rw_sparse") => top,
            _ => false,
        };
        if !ok {
            let why = match l.kind {
                Some("lsmt_rw" | "lsmt_rw_data" | "lsmt_rw_sparse") => {
                    "a writable layer can only be the top layer (give it as --upper DATA INDEX)"
                        .to_string()
                }
                Some(k) => format!("a {k} file is not a layer this position can hold"),
                None => "not an LSMT layer".to_string(),
            };
            problems.push(problem(
                "stack.layer",
                l.layer,
                format!("{}: {why}", l.path),
            ));
        }
    }
    // The parent chain.
    if let Some(p) = layers
        .first()
        .and_then(|l| l.parent_uuid.as_deref())
        .and_then(Uuid::parse)
        .filter(|u| !u.is_null())
    {
        notes.push(format!(
            "the bottom layer has a parent ({}): the stack does not start at a base layer",
            p.as_str()
        ));
    }
    for i in 1..layers.len() {
        let (below, l) = (&layers[i - 1], &layers[i]);
        let parent = l.parent_uuid.as_deref().and_then(Uuid::parse);
        let under = below.uuid.as_deref().and_then(Uuid::parse);
        match (parent, under) {
            (Some(p), Some(u)) if !p.is_null() && !u.is_null() => {
                if p != u {
                    problems.push(
                        problem(
                            "stack.chain",
                            i,
                            format!(
                                "{}: its parent_uuid is not the uuid of the layer below ({})",
                                l.path, below.path
                            ),
                        )
                        .expected(u.as_str(), p.as_str()),
                    );
                }
            }
            _ => notes.push(format!(
                "layer {i}: the parent chain cannot be checked (a null or missing UUID)"
            )),
        }
    }
    // Virtual sizes.
    let sizes: Vec<u64> = layers.iter().map(|l| l.virtual_size.unwrap_or(0)).collect();
    let vsize = Some(crate::stack::virtual_size_of(sizes.iter().copied())).filter(|&v| v > 0);
    match vsize {
        None if !layers.is_empty() => problems.push(problem(
            "stack.virtual_size",
            layers.len() - 1,
            "no layer declares a virtual size",
        )),
        None => {}
        Some(v) => {
            for (i, &s) in sizes.iter().enumerate() {
                if s > v {
                    problems.push(
                        problem(
                            "stack.virtual_size",
                            i,
                            format!(
                                "{}: declares a larger virtual disk than the stack's (the topmost layer's); its data past that is hidden",
                                layers[i].path
                            ),
                        )
                        .expected(format!("<= {v}"), s),
                    );
                } else if s != v && s != 0 {
                    notes.push(format!(
                        "layer {i} declares {s} bytes, the stack {v} (grown, as by overlaybd-resize)"
                    ));
                }
            }
        }
    }
    // obd's stack engine must agree.
    let clean = files.iter().all(|f| f.status == Status::Ok) && problems.is_empty();
    if clean {
        if let Err(e) =
            crate::stack::Stack::open(paths, upper, crate::source::blob::BlobOptions::default())
        {
            problems.push(problem(
                "stack.reader",
                layers.len().saturating_sub(1),
                format!("obd's stack engine rejects the stack: {e}"),
            ));
        }
    }
    StackReport {
        layers,
        virtual_size: vsize,
        problems,
        notes,
    }
}
