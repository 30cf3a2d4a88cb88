//! `obd flatten`: write a stack's virtual disk as a raw image.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::zfile::out_err;
use super::{
    check_chain, human, print_json, CacheArgs, ChainArgs, GlobalArgs, Progress, UpperArgs,
};
use crate::io::atomic::AtomicFile;
use crate::stack::{ReadOptions, Stack};

/// Arguments of `obd flatten`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output raw image, or `-` for stdout.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Replace OUT if it exists.
    #[arg(short, long)]
    pub force: bool,
    /// Writable top layer.
    #[command(flatten)]
    pub upper: UpperArgs,
    /// Block cache.
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Chain check.
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Index memory budget.
    #[command(flatten)]
    pub index: super::IndexArgs,
    /// Registry and cache options (for image references).
    #[command(flatten)]
    pub remote: super::remote::RemoteArgs,
    /// Layer blobs, bottom first, or one image reference
    /// (docker://HOST:PORT/REPO:TAG, or @sha256:DIGEST for the tag; oci:DIR:TAG).
    #[arg(required_unless_present = "upper")]
    pub layers: Vec<PathBuf>,
}

/// Runs `obd flatten`.
///
/// # Errors
/// Unreadable layers, an existing output without `--force`, write errors.
pub fn run(g: &GlobalArgs, a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let opts = ReadOptions {
        cache: a.cache.options(),
        max_index_memory: a.index.max_index_memory,
        ..Default::default()
    };
    let sources = a.remote.sources(&a.layers)?;
    let stack = Stack::open_sources(&sources, a.upper.pair(), opts)?;
    crate::source::remote::fetch_whole_in_background(&sources);
    check_chain(g, &a.chain, &stack)?;
    let progress = Progress::bytes(g, stack.virtual_size(), "flatten");
    if a.output.as_os_str() == "-" {
        super::refuse_terminal()?;
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        crate::ops::flatten::to_writer(&stack, &mut lock, &progress.callback())?;
        progress.finish();
        return Ok(ExitCode::SUCCESS);
    }
    let t0 = std::time::Instant::now();
    let file = AtomicFile::create(&a.output, a.force).map_err(|e| out_err(&a.output, e))?;
    let stats = crate::ops::flatten::to_file(&stack, file.file(), &progress.callback())
        .map_err(|e| out_err(&a.output, e))?;
    file.commit().map_err(|e| out_err(&a.output, e))?;
    progress.finish();
    let secs = t0.elapsed().as_secs_f64();
    if g.json {
        print_json(
            out,
            &serde_json::json!({
                "output": a.output.display().to_string(),
                "stats": stats,
                "seconds": secs,
                "mb_per_s": super::zfile::rate(stats.virtual_size, secs),
            }),
        )?;
    } else if !g.quiet {
        writeln!(
            out,
            "{}: {} virtual disk, {} of data read, {} written",
            a.output.display(),
            human(stats.virtual_size),
            human(stats.data_bytes_read),
            human(stats.bytes_written)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
