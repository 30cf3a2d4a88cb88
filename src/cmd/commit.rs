//! `obd commit`: seal a layer into a read-only layer (byte-identical to
//! `overlaybd-commit`), seal in place, or commit the difference between a
//! raw image and a stack.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use super::zfile::{out_err, rate, ZfileArgs};
use super::{check_chain, human, print_json, ChainArgs, GlobalArgs, Progress};
use crate::format::lsmt::Layer;
use crate::format::uuid::Uuid;
use crate::io::FileAt;
use crate::ops::commit::{self, CommitMeta, CommitReport};
use crate::ops::diff::{self, DiffOptions};
use crate::ops::output::OutputOptions;
use crate::source::blob::{Blob, BlobOptions};
use crate::stack::Stack;

/// Arguments of `obd commit`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Forms:
  obd commit [OPTIONS] DATA INDEX OUT     commit a writable layer (plain or sparse)
  obd commit [OPTIONS] LAYER OUT          re-commit a read-only layer (sealed in place,
                                          committed, ZFile or tar-wrapped)
  obd commit --seal DATA INDEX            seal a writable layer in place
  obd commit --raw NEW.raw [--base LAYER]... [OPTIONS] OUT
                                          commit the blocks where NEW.raw differs from the
                                          stack of base layers (no base: every non-zero block)")]
pub struct Args {
    /// Commit message, stored in the layer's user tag (at most 256 bytes).
    #[arg(short = 'm', long = "message", value_name = "MSG")]
    pub message: Option<String>,
    /// UUID of the new layer (default: the source's own uuid when it has one,
    /// else a fresh random one; 00000000-0000-0000-0000-000000000000 writes the
    /// null uuid, as the reference does).
    #[arg(long, value_name = "UUID")]
    pub uuid: Option<String>,
    /// Parent UUID (default: the top --base layer's uuid; else the source's parent).
    #[arg(short = 'p', long, value_name = "UUID")]
    pub parent_uuid: Option<String>,
    /// Compress the layer into a ZFile whose header holds the final index
    /// (as `overlaybd-commit -z`).
    #[arg(short = 'z', long)]
    pub zfile: bool,
    /// ZFile options (with --zfile only).
    #[command(flatten)]
    pub z: ZfileArgs,
    /// With --raw: the unit in which NEW.raw is compared with the base (a
    /// multiple of 512 up to 1M); a changed unit is committed whole.
    #[arg(long, value_name = "SIZE", default_value = "4K", value_parser = super::parse_size, requires = "raw")]
    pub diff_unit: u64,
    /// Wrap the output in a one-member tar (works without --zfile too, unlike the reference).
    #[arg(short = 't', long)]
    pub tar: bool,
    /// Replace OUT if it exists.
    #[arg(short, long)]
    pub force: bool,
    /// Seal DATA in place (append its index and a trailer); no OUT.
    #[arg(long, conflicts_with_all = ["raw", "zfile", "tar", "message", "uuid", "parent_uuid"])]
    pub seal: bool,
    /// Commit the difference between this raw image and the base stack.
    #[arg(long, value_name = "NEW.raw")]
    pub raw: Option<PathBuf>,
    /// A layer of the stack below, bottom first (repeat for a stack). With
    /// --raw, the stack to diff against; with a writable layer, the stack it
    /// was used over: its size is inherited when the layer's is 0, and its
    /// top layer's uuid is the default parent. One image reference
    /// (docker://…, oci:DIR:TAG) names the whole base stack.
    #[arg(long, value_name = "LAYER")]
    pub base: Vec<PathBuf>,
    /// Chain check of the --base stack.
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Index memory budget.
    #[command(flatten)]
    pub index: super::IndexArgs,
    /// Registry and cache options (for image references).
    #[command(flatten)]
    pub remote: super::remote::RemoteArgs,
    /// DATA INDEX OUT, LAYER OUT, DATA INDEX (--seal) or OUT (--raw).
    #[arg(required = true, num_args = 1..=3, value_name = "FILES")]
    pub files: Vec<PathBuf>,
}

#[derive(Serialize)]
struct Report<'a> {
    mode: &'static str,
    inputs: Vec<String>,
    #[serde(flatten)]
    commit: &'a CommitReport,
    seconds: f64,
    mb_per_s: f64,
}

fn meta(a: &Args) -> anyhow::Result<CommitMeta> {
    Ok(CommitMeta {
        uuid: Uuid::parse_opt("--uuid", a.uuid.as_deref())?,
        parent_uuid: Uuid::parse_opt("--parent-uuid", a.parent_uuid.as_deref())?,
        message: a.message.clone().unwrap_or_default().into_bytes(),
        inherited_size: None,
    })
}

/// The identity of a layer made from `layer` over `base`: the uuid given,
/// else the source's own (a writable layer's random one), else a fresh one;
/// the parent given, else the base's top uuid (else the source's parent,
/// which the library fills in); the base's size to inherit.
fn identity(mut m: CommitMeta, layer: &Layer, base: Option<&Stack>) -> CommitMeta {
    let own = layer.authoritative().uuid().filter(|u| !u.is_null());
    m.uuid = Some(m.uuid.or(own).unwrap_or_else(Uuid::random));
    if let Some(b) = base {
        m.parent_uuid = m.parent_uuid.or_else(|| {
            b.layers()
                .last()
                .and_then(|l| l.layer().authoritative().uuid())
        });
        m.inherited_size = Some(b.virtual_size());
    }
    m
}

fn out_opts(a: &Args) -> anyhow::Result<OutputOptions> {
    Ok(OutputOptions {
        zfile: if a.zfile { Some(a.z.options()?) } else { None },
        threads: a.z.threads(),
        overwrite_header: true,
        tar: a.tar,
        force: a.force,
    })
}

fn usage(msg: &str) -> anyhow::Error {
    anyhow::anyhow!("{msg} (see obd commit --help)")
}

/// Runs `obd commit`.
///
/// # Errors
/// Unreadable sources, bad arguments, an existing output without `--force`.
pub fn run(g: &GlobalArgs, a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    if a.seal {
        let [data, index] = a.files.as_slice() else {
            return Err(usage("--seal takes DATA INDEX"));
        };
        let r = commit::seal_in_place(data, index).map_err(|e| out_err(data, e))?;
        if g.json {
            print_json(out, &r)?;
        } else if !g.quiet {
            writeln!(
                out,
                "{}: sealed in place: {} index entries at {:#x}, {} in all",
                r.path,
                r.index_size,
                r.index_offset,
                human(r.file_size)
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    a.z.refuse_without_zfile(a.zfile)?;
    let m = meta(&a)?;
    let oo = out_opts(&a)?;
    let t0 = Instant::now();
    let (mode, inputs, dest, report, volume) = if let Some(new) = &a.raw {
        let [dest] = a.files.as_slice() else {
            return Err(usage("--raw takes one OUT"));
        };
        let image = FileAt::open(new).with_context(|| new.display().to_string())?;
        let base = open_base(g, &a)?;
        let mut m = m;
        m.uuid = Some(m.uuid.unwrap_or_else(Uuid::random));
        let bar = Progress::bytes(g, crate::ReadAt::len(&image), "diff");
        let r = diff::commit_diff(
            &image,
            base.as_ref(),
            DiffOptions {
                block_size: a.diff_unit,
            },
            &m,
            dest,
            oo,
            &mut |n| bar.inc(n),
        )
        .map_err(|e| out_err(dest, e))?;
        bar.finish();
        let mut inputs = vec![new.display().to_string()];
        inputs.extend(a.base.iter().map(|p| p.display().to_string()));
        let vol = crate::ReadAt::len(&image);
        ("raw", inputs, dest.clone(), r, vol)
    } else {
        let base = open_base(g, &a)?;
        let (layer, inputs, dest) = match a.files.as_slice() {
            [data, index, dest] => {
                let l = commit::open_writable(data, index, crate::io::lock::LockMode::Shared)
                    .map_err(|e| out_err(data, e))?;
                (l, vec![data, index], dest)
            }
            [src, dest] => {
                let l = open_ro(src)?;
                (l, vec![src], dest)
            }
            _ => return Err(usage("give DATA INDEX OUT or LAYER OUT")),
        };
        let total: u64 = layer
            .segments()
            .iter()
            .filter(|s| !s.zeroed)
            .map(|s| s.length as u64 * crate::format::lsmt::raw::SECTOR_SIZE)
            .sum();
        if layer.header().virtual_size == 0 && base.is_none() {
            anyhow::bail!(
                "{}: the layer's virtual size is 0 (it inherits the size of the stack it is \
                 used over); give that stack with --base LAYER... (bottom first)",
                inputs[0].display()
            );
        }
        let m = identity(m, &layer, base.as_ref());
        let bar = Progress::bytes(g, total, "commit");
        let r = commit::commit_layer(&layer, &m, dest, oo, &mut |n| bar.inc(n))
            .map_err(|e| out_err(dest, e))?;
        bar.finish();
        let inputs = inputs.iter().map(|p| p.display().to_string()).collect();
        let vol = r.layer.data_bytes;
        ("layer", inputs, dest.clone(), r, vol)
    };
    let secs = t0.elapsed().as_secs_f64();
    print_report(g, out, mode, inputs, &dest, &report, secs, volume)?;
    Ok(ExitCode::SUCCESS)
}

fn open_base(g: &GlobalArgs, a: &Args) -> anyhow::Result<Option<Stack>> {
    if a.base.is_empty() {
        return Ok(None);
    }
    let sources = a.remote.sources(&a.base)?;
    let stack = Stack::open_sources(&sources, None, a.index.read_options())?;
    check_chain(g, &a.chain, &stack)?;
    Ok(Some(stack))
}

fn open_ro(src: &Path) -> anyhow::Result<Layer> {
    let blob =
        Blob::open(src, BlobOptions::default()).with_context(|| src.display().to_string())?;
    blob.layer().with_context(|| src.display().to_string())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn print_report(
    g: &GlobalArgs,
    out: &mut dyn Write,
    mode: &'static str,
    inputs: Vec<String>,
    dest: &Path,
    r: &CommitReport,
    secs: f64,
    volume: u64,
) -> anyhow::Result<()> {
    super::warn_oversized(&r.output);
    if g.json {
        print_json(
            out,
            &Report {
                mode,
                inputs,
                commit: r,
                seconds: secs,
                mb_per_s: rate(volume, secs),
            },
        )?;
    } else if !g.quiet {
        let containers = if r.output.containers.is_empty() {
            "lsmt".to_string()
        } else {
            format!("{} > lsmt", r.output.containers.join(" > "))
        };
        writeln!(
            out,
            "{}: {} ({}): {} segments, {} of data, {} zeroed, virtual size {}",
            dest.display(),
            human(r.output.file_size),
            containers,
            r.layer.segments,
            human(r.layer.data_bytes),
            human(r.layer.zeroed_bytes),
            human(r.layer.virtual_size),
        )?;
        writeln!(
            out,
            "  uuid {}  parent {}  in {:.2} s ({:.0} MB/s)",
            r.layer.uuid,
            r.layer.parent_uuid,
            secs,
            rate(volume, secs)
        )?;
    }
    Ok(())
}
