//! Merge: a stack of read-only layers as one committed layer, byte-identical
//! to `overlaybd-merge`.

use std::path::Path;
use std::sync::Arc;

use super::commit::{compact, header_parent, CommitMeta, CommitReport};
use super::output::{Output, OutputOptions};
use crate::error::{Error, Result};
use crate::format::lsmt::writer::LayerMeta;
use crate::format::lsmt::{Kind, Segment};
use crate::format::uuid::Uuid;
use crate::io::ReadAt;
use crate::stack::Stack;

/// Flattens a stack of read-only layers into one committed layer, as
/// `overlaybd-merge` does: the merged index with top-first layer numbers as
/// tags (entries of different layers never coalesce), compacted.
///
/// # Errors
/// As [`super::commit::commit_layer`]; [`Error::Invalid`] for a stack with a writable top.
pub fn merge_stack(
    stack: &Stack,
    meta: &CommitMeta,
    dest: &Path,
    out_opts: OutputOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<CommitReport> {
    let layers = stack.layers();
    if layers
        .iter()
        .any(|l| matches!(l.layer().kind(), Kind::Writable | Kind::SparseWritable))
    {
        return Err(Error::invalid(
            "merge",
            "only read-only layers can be merged (commit the writable layer first)",
        ));
    }
    let n = layers.len();
    let Some(bottom) = layers.first() else {
        return Err(Error::invalid("merge", "no layers given"));
    };
    let lm = LayerMeta {
        // The stack's size (the topmost non-zero one), not the top
        // layer's own, which may be 0 ("inherit").
        virtual_size: stack.virtual_size(),
        uuid: meta.uuid.unwrap_or_else(Uuid::null),
        parent_uuid: meta
            .parent_uuid
            .unwrap_or_else(|| header_parent(bottom.layer().header())),
        user_tag: meta.message.clone(),
    };
    crate::format::lsmt::writer::check_meta(&lm)?;
    // Sources top first, so that a mapping's tag is its top-first number.
    let sources: Vec<Arc<dyn ReadAt>> = layers
        .iter()
        .rev()
        .map(|l| l.layer().data().clone())
        .collect();
    let mappings: Vec<Segment> = stack
        .mappings()
        .iter()
        .map(|m| Segment {
            offset: m.offset,
            length: m.length,
            moffset: m.moffset,
            zeroed: m.zeroed,
            tag: (n - 1 - m.layer as usize) as u8,
        })
        .collect();
    let out = Output::create(dest, out_opts)?;
    let (out, summary) = compact(&sources, &mappings, lm, out, progress)?;
    let output = out.finish()?;
    Ok(CommitReport {
        output,
        layer: summary,
    })
}
