//! `obd merge`: flatten a stack into one read-only layer, as `overlaybd-merge`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use super::commit::print_report;
use super::zfile::{out_err, ZfileArgs};
use super::{check_chain, ChainArgs, GlobalArgs, Progress};
use crate::format::uuid::Uuid;
use crate::ops::commit::CommitMeta;
use crate::ops::output::OutputOptions;
use crate::stack::Stack;

/// Arguments of `obd merge`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output layer.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Compress the output into a ZFile (trailer only, as `overlaybd-merge`).
    #[arg(short = 'z', long)]
    pub zfile: bool,
    /// ZFile options (with --zfile).
    #[command(flatten)]
    pub z: ZfileArgs,
    /// Wrap the output in a one-member tar.
    #[arg(short = 't', long)]
    pub tar: bool,
    /// UUID of the merged layer (default: a fresh random one;
    /// 00000000-0000-0000-0000-000000000000 writes the null uuid, as the reference does).
    #[arg(long, value_name = "UUID")]
    pub uuid: Option<String>,
    /// Parent UUID (default: the bottom layer's parent).
    #[arg(short = 'p', long, value_name = "UUID")]
    pub parent_uuid: Option<String>,
    /// Commit message (default: none, as `overlaybd-merge`).
    #[arg(short = 'm', long = "message", value_name = "MSG")]
    pub message: Option<String>,
    /// Replace OUT if it exists.
    #[arg(short, long)]
    pub force: bool,
    /// Chain check.
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Index memory budget.
    #[command(flatten)]
    pub index: super::IndexArgs,
    /// Registry and cache options (for image references).
    #[command(flatten)]
    pub remote: super::remote::RemoteArgs,
    /// Read-only layer blobs, bottom first, or one image reference
    /// (docker://HOST:PORT/REPO:TAG, or @sha256:DIGEST for the tag; oci:DIR:TAG).
    #[arg(required = true)]
    pub layers: Vec<PathBuf>,
}

/// Runs `obd merge`.
///
/// # Errors
/// Unreadable layers, an existing output without `--force`, write errors.
pub fn run(g: &GlobalArgs, a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    a.z.refuse_without_zfile(a.zfile)?;
    let meta = CommitMeta {
        uuid: Some(Uuid::parse_opt("--uuid", a.uuid.as_deref())?.unwrap_or_else(Uuid::random)),
        parent_uuid: Uuid::parse_opt("--parent-uuid", a.parent_uuid.as_deref())?,
        message: a.message.clone().unwrap_or_default().into_bytes(),
        inherited_size: None,
    };
    let oo = OutputOptions {
        zfile: if a.zfile { Some(a.z.options()?) } else { None },
        threads: a.z.threads(),
        overwrite_header: false,
        tar: a.tar,
        force: a.force,
    };
    let t0 = Instant::now();
    let sources = a.remote.sources(&a.layers)?;
    let stack = Stack::open_sources(&sources, None, a.index.read_options())?;
    crate::source::remote::fetch_whole_in_background(&sources);
    check_chain(g, &a.chain, &stack)?;
    let total: u64 = stack
        .mappings()
        .iter()
        .filter(|m| !m.zeroed)
        .map(|m| m.length as u64 * crate::format::lsmt::raw::SECTOR_SIZE)
        .sum();
    let bar = Progress::bytes(g, total, "merge");
    let r = crate::ops::merge::merge_stack(&stack, &meta, &a.output, oo, &mut |n| bar.inc(n))
        .map_err(|e| out_err(&a.output, e))?;
    bar.finish();
    let inputs = a.layers.iter().map(|p| p.display().to_string()).collect();
    let vol = r.layer.data_bytes;
    print_report(
        g,
        out,
        "merge",
        inputs,
        &a.output,
        &r,
        t0.elapsed().as_secs_f64(),
        vol,
    )?;
    Ok(ExitCode::SUCCESS)
}
