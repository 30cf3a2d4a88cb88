//! `obd push` and `obd pull`: overlaybd images to and from registries and
//! OCI layouts.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::remote::RemoteArgs;
use super::{check_chain, human, new_table, print_json, render, ChainArgs, GlobalArgs, Progress};
use crate::source::reference::ImageRef;
use crate::stack::Stack;

/// Arguments of `obd push`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Layers are pushed as they are on disk (commit them with -t to have the tar-wrapped blobs the \
overlaybd convertor pushes). The image config lists the layers' digests as rootfs.diff_ids and \
each layer carries the overlaybd annotations (blob-digest, blob-size, version)."
)]
pub struct Args {
    /// The tag to push under (default: the destination's tag, else latest).
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Chain check of the layers.
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Index memory budget.
    #[command(flatten)]
    pub index: super::IndexArgs,
    /// Registry and cache options.
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Read-only layer blobs, bottom first, then the destination
    /// (docker://HOST:PORT/REPO:TAG or oci:DIR:TAG).
    #[arg(required = true, num_args = 2.., value_name = "LAYER... DEST")]
    pub args: Vec<PathBuf>,
}

/// Runs `obd push`.
///
/// # Errors
/// Layers that do not form a stack, registry and file-system errors.
pub fn run(g: &GlobalArgs, a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let (dest_arg, layers) = a
        .args
        .split_last()
        .ok_or_else(|| anyhow::anyhow!("give the layers, then the destination"))?;
    let dest_str = dest_arg.to_str().unwrap_or_default();
    if !ImageRef::looks_like(dest_str) {
        anyhow::bail!(
            "{}: the destination is an image reference (docker://HOST/REPO:TAG or oci:DIR:TAG), given last",
            dest_arg.display()
        );
    }
    let dest = ImageRef::parse(dest_str)?;
    if super::remote::image_ref(layers)?.is_some() {
        anyhow::bail!("push takes layer files; to copy an image between registries, pull it first");
    }
    let tag = crate::ops::push::push_tag(&dest, a.tag.as_deref())?;
    // The layers must form a stack obd (and the reference) can read.
    let stack = Stack::open_with(layers, None, a.index.read_options())?;
    check_chain(g, &a.chain, &stack)?;
    drop(stack);
    let ctx = match &dest {
        ImageRef::Registry(_) => Some(a.remote.context()?),
        ImageRef::Layout { .. } => None,
    };
    let sizes: u64 = layers
        .iter()
        .map(|l| std::fs::metadata(l).map_or(0, |m| m.len()))
        .sum();
    let bar = Progress::bytes(g, sizes, "digest");
    let blobs = crate::ops::push::digest_files(layers, &|n| bar.inc(n))?;
    bar.finish();
    let bar = Progress::bytes(g, sizes, "push");
    let report =
        crate::ops::push::push(layers, &blobs, &dest, &tag, ctx.as_ref(), &|n| bar.set(n))?;
    bar.finish();
    if g.json {
        print_json(out, &report)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !g.quiet {
        let mut t = new_table(g);
        t.set_header(["layer", "digest", "size", "action"]);
        for l in &report.layers {
            t.add_row([
                l.path.clone(),
                short_digest(g, &l.digest),
                human(l.size),
                l.action.to_string(),
            ]);
        }
        writeln!(out, "{}", render(g, &mut t))?;
    }
    writeln!(
        out,
        "{}  {}  ({} sent in {:.1} s)",
        report.destination,
        report.manifest_digest,
        human(report.transferred_bytes),
        report.seconds
    )?;
    Ok(ExitCode::SUCCESS)
}

/// A digest shortened for a boxed table (`sha256:0123456789ab`); whole in
/// plain output.
pub(crate) fn short_digest(g: &GlobalArgs, d: &str) -> String {
    if g.plain() {
        d.to_string()
    } else {
        d.chars().take("sha256:".len() + 12).collect()
    }
}

/// Arguments of `obd pull`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "DIR becomes an OCI image layout (skopeo, umoci and obd read it as oci:DIR:TAG). Each layer is \
checked against its digest before it gets its name; an interrupted pull resumes where it stopped."
)]
pub struct PullArgs {
    /// Registry and cache options.
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// The image (docker://HOST:PORT/REPO:TAG, or @sha256:DIGEST for the tag).
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// The OCI layout directory to write (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Runs `obd pull`.
///
/// # Errors
/// Registry errors, digest mismatches, file-system errors.
pub fn run_pull(g: &GlobalArgs, a: PullArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let src = match ImageRef::parse(&a.source)? {
        ImageRef::Registry(r) => r,
        ImageRef::Layout { .. } => anyhow::bail!(
            "{}: pull copies from a registry; an OCI layout is read in place (obd flatten oci:DIR:TAG)",
            a.source
        ),
    };
    let ctx = a.remote.context()?;
    let bar = Progress::bytes(g, 0, "pull");
    let report = crate::ops::pull::pull(&src, &a.dir, &ctx, &|n, total| {
        bar.set_total(total);
        bar.set(n);
    })?;
    bar.finish();
    if g.json {
        print_json(out, &report)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !g.quiet {
        let mut t = new_table(g);
        t.set_header(["digest", "size", "action"]);
        for l in &report.layers {
            t.add_row([
                short_digest(g, &l.digest),
                human(l.size),
                l.action.to_string(),
            ]);
        }
        writeln!(out, "{}", render(g, &mut t))?;
    }
    writeln!(
        out,
        "{}  {}  ({} fetched in {:.1} s)",
        report.destination,
        report.manifest_digest,
        human(report.downloaded_bytes),
        report.seconds
    )?;
    Ok(ExitCode::SUCCESS)
}
