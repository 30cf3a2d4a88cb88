//! `obd zfile compress|decompress`: the ZFile container on its own.

use std::io::Write;

use clap::builder::TypedValueParser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use super::{human, parse_size, parse_threads, print_json, GlobalArgs, Progress};
use crate::format::zfile::{self, Algorithm, WriterOptions};
use crate::ops::output::{Output, OutputOptions, OutputReport};
use crate::source::blob::{Blob, BlobOptions};

/// `obd zfile` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Compress a file (or stdin) into a ZFile, optionally tar-wrapped.
    Compress(CompressArgs),
    /// Decompress a ZFile (tar wrapper detected) into a plain file or stdout.
    Decompress(DecompressArgs),
}

/// ZFile options shared by every writer.
#[derive(Debug, Clone, clap::Args)]
pub struct ZfileArgs {
    /// Block compression algorithm [default: lz4].
    #[arg(long, value_name = "ALGORITHM", value_parser = ["lz4", "zstd"])]
    pub algorithm: Option<String>,
    /// zstd level (1..=22; the reference always uses 3). Not stored in the file.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=22))]
    pub level: Option<i32>,
    /// Uncompressed block size [default: 4K].
    #[arg(long, value_name = "SIZE", ignore_case = true,
          value_parser = clap::builder::PossibleValuesParser::new(BLOCK_SIZES)
              .try_map(|s: String| parse_block_size(&s)))]
    pub block_size: Option<u64>,
    /// Compression threads, 1 to 1024 (default: one per core). The output does
    /// not depend on it.
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    pub threads: Option<usize>,
}

/// ZFile block sizes obd writes.
pub const BLOCK_SIZES: [&str; 5] = ["4K", "8K", "16K", "32K", "64K"];

/// Parses `--block-size`: one of [`BLOCK_SIZES`].
fn parse_block_size(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if !n.is_power_of_two() || !(4096..=65536).contains(&n) {
        return Err(format!(
            "{s:?} is not a ZFile block size (give one of {})",
            BLOCK_SIZES.join(", ")
        ));
    }
    Ok(n)
}

impl ZfileArgs {
    /// The writer options these arguments ask for.
    ///
    /// # Errors
    /// A block size obd does not write; `--level` with LZ4.
    pub fn options(&self) -> anyhow::Result<WriterOptions> {
        let algorithm: Algorithm = match self.algorithm.as_deref() {
            None => Algorithm::Lz4,
            Some(a) => a.parse().map_err(|e: String| anyhow::anyhow!(e))?,
        };
        if self.level.is_some() && algorithm == Algorithm::Lz4 {
            anyhow::bail!("--level applies to zstd only (LZ4 has one level)");
        }
        let block_size = self.block_size.unwrap_or(4096);
        let block_size = u32::try_from(block_size)
            .map_err(|_| anyhow::anyhow!("--block-size {block_size} is too large"))?;
        let o = WriterOptions {
            algorithm,
            block_size,
            crc: true,
            level: self.level.unwrap_or(3),
        };
        o.validate()?;
        Ok(o)
    }

    /// Worker threads (0 = one per core).
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or(0)
    }

    /// Refuses ZFile options given to a command that writes no ZFile
    /// (`commit` or `merge` without `-z`): they would do nothing.
    ///
    /// # Errors
    /// The first such option.
    pub fn refuse_without_zfile(&self, zfile: bool) -> anyhow::Result<()> {
        if zfile {
            return Ok(());
        }
        for (given, name) in [
            (self.algorithm.is_some(), "--algorithm"),
            (self.level.is_some(), "--level"),
            (self.block_size.is_some(), "--block-size"),
            (self.threads.is_some(), "--threads"),
        ] {
            if given {
                anyhow::bail!(
                    "{name} applies to ZFile output only: add -z/--zfile, or leave it out"
                );
            }
        }
        Ok(())
    }
}

/// Arguments of `obd zfile compress`.
#[derive(Debug, clap::Args)]
pub struct CompressArgs {
    /// ZFile options.
    #[command(flatten)]
    pub zfile: ZfileArgs,
    /// Wrap the ZFile in a one-member tar, as `overlaybd-zfile -t` does.
    #[arg(long)]
    pub tar: bool,
    /// Replace OUT if it exists.
    #[arg(short, long)]
    pub force: bool,
    /// Input file, or `-` for stdin.
    pub input: PathBuf,
    /// Output ZFile.
    pub output: PathBuf,
}

/// Arguments of `obd zfile decompress`.
#[derive(Debug, clap::Args)]
pub struct DecompressArgs {
    /// Decompression threads, 1 to 1024 (default: one per core).
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    pub threads: Option<usize>,
    /// Replace OUT if it exists.
    #[arg(short, long)]
    pub force: bool,
    /// Input ZFile, plain or tar-wrapped.
    pub input: PathBuf,
    /// Output file, or `-` for stdout.
    pub output: PathBuf,
}

/// The `--json` report of both subcommands.
#[derive(Debug, Serialize)]
struct Report {
    input: String,
    input_size: u64,
    output: OutputReport,
    seconds: f64,
    /// Uncompressed megabytes (10^6 bytes) per second.
    mb_per_s: f64,
}

/// Runs `obd zfile …`.
///
/// # Errors
/// Unreadable input, bad options, an existing output without `--force`.
pub fn run(g: &GlobalArgs, c: Command, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match c {
        Command::Compress(a) => compress(g, a, out),
        Command::Decompress(a) => decompress(g, a, out),
    }
}

/// Names the output in an error unless the message already does.
pub(crate) fn out_err(path: &std::path::Path, e: crate::Error) -> anyhow::Error {
    match e {
        // These name their file already.
        e @ (crate::Error::Invalid { .. }
        | crate::Error::File { .. }
        | crate::Error::InLayer { .. }) => e.into(),
        e => anyhow::Error::from(e).context(path.display().to_string()),
    }
}

/// Megabytes (10^6 bytes) per second.
pub(crate) fn rate(bytes: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        bytes as f64 / 1e6 / secs
    } else {
        0.0
    }
}

fn compress(g: &GlobalArgs, a: CompressArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let opts = a.zfile.options()?;
    let t0 = Instant::now();
    let stdin = a.input.as_os_str() == "-";
    let (mut input, total): (Box<dyn std::io::Read>, u64) = if stdin {
        (Box::new(std::io::stdin().lock()), 0)
    } else {
        let f =
            std::fs::File::open(&a.input).map_err(|e| crate::Error::file(&a.input, "open", e))?;
        let len = f.metadata()?.len();
        (Box::new(f), len)
    };
    let mut o = Output::create(
        &a.output,
        OutputOptions {
            zfile: Some(opts),
            threads: a.zfile.threads(),
            overwrite_header: false,
            tar: a.tar,
            force: a.force,
        },
    )
    .map_err(|e| out_err(&a.output, e))?;
    let progress = if stdin {
        Progress::stream(g, "compress")
    } else {
        Progress::bytes(g, total, "compress")
    };
    let n = o
        .copy_from(&mut *input, &mut |n| progress.inc(n))
        .with_context(|| a.input.display().to_string())?;
    if !stdin && n != total {
        // The output is dropped unfinished: nothing appears at OUT.
        anyhow::bail!(
            "{}: the file {} while being read ({total} bytes when opened, {n} read)",
            a.input.display(),
            if n < total { "shrank" } else { "grew" }
        );
    }
    let report = o.finish().with_context(|| a.output.display().to_string())?;
    progress.finish();
    super::warn_oversized(&report);
    let secs = t0.elapsed().as_secs_f64();
    let r = Report {
        input: a.input.display().to_string(),
        input_size: n,
        output: report,
        seconds: secs,
        mb_per_s: rate(n, secs),
    };
    if g.json {
        print_json(out, &r)?;
    } else if !g.quiet {
        writeln!(
            out,
            "{}: {} -> {} ({}, {} blocks, {:.1}% of the input) in {:.2} s, {:.0} MB/s",
            r.output.path,
            human(n),
            human(r.output.file_size),
            opts.algorithm,
            human(opts.block_size as u64),
            if n > 0 {
                100.0 * r.output.file_size as f64 / n as f64
            } else {
                0.0
            },
            secs,
            r.mb_per_s
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn decompress(g: &GlobalArgs, a: DecompressArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let name = a.input.display().to_string();
    let blob = Blob::open(&a.input, BlobOptions::default()).with_context(|| name.clone())?;
    let z: Arc<zfile::ZFile<Arc<dyn crate::ReadAt>>> = blob.zfile().cloned().ok_or_else(|| {
        anyhow::anyhow!("{name}: not a ZFile (no ZFile magic after any tar wrapper)")
    })?;
    let size = crate::ReadAt::len(&*z);
    let threads = a.threads.unwrap_or(0);
    let progress = Progress::bytes(g, size, "decompress");
    if a.output.as_os_str() == "-" {
        super::refuse_terminal()?;
        let stdout = std::io::stdout();
        let mut lock = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        crate::ops::unpack::to_writer(z, &mut lock, threads, &mut |n| progress.inc(n))
            .with_context(|| name.clone())?;
        progress.finish();
        return Ok(ExitCode::SUCCESS);
    }
    let file = crate::io::atomic::AtomicFile::create(&a.output, a.force)
        .map_err(|e| out_err(&a.output, e))?;
    let n = crate::ops::unpack::to_file(&z, file.file(), threads, &progress.callback())
        .with_context(|| name.clone())?;
    file.commit().map_err(|e| out_err(&a.output, e))?;
    progress.finish();
    let report = OutputReport {
        path: a.output.display().to_string(),
        file_size: n,
        content_size: n,
        containers: Vec::new(),
        zfile_blocks: None,
        oversized_blocks: None,
        algorithm: None,
        block_size: None,
    };
    let secs = t0.elapsed().as_secs_f64();
    let r = Report {
        input: name,
        input_size: blob.file_size(),
        seconds: secs,
        mb_per_s: rate(report.content_size, secs),
        output: report,
    };
    if g.json {
        print_json(out, &r)?;
    } else if !g.quiet {
        writeln!(
            out,
            "{}: {} -> {} in {:.2} s, {:.0} MB/s",
            r.output.path,
            human(r.input_size),
            human(r.output.file_size),
            secs,
            r.mb_per_s
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
