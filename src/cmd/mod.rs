//! The `obd` command line: argument parsing, output and exit codes.
//!
//! Exit codes: 0 ok, 1 a check found a problem (`verify`), 2 error.
//! Errors are one line on stderr: `obd: <file>: <what> at <offset>: <why>`.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

#[cfg(target_os = "linux")]
pub mod attach;
pub mod cache;
pub mod commit;
pub mod create;
pub mod demo;
#[cfg(target_os = "linux")]
pub mod detach;
pub mod docs;
#[cfg(target_os = "linux")]
pub mod doctor;
pub mod flatten;
pub mod inspect;
#[cfg(target_os = "linux")]
pub mod list;
pub mod map;
pub mod merge;
mod progress;
pub mod push;
pub mod remote;
#[cfg(target_os = "linux")]
pub mod serve;
#[cfg(target_os = "linux")]
pub mod stats;
pub mod verify;
pub mod zfile;

pub use progress::Progress;

/// obd: inspect, build, verify and attach OverlayBD (DADI) block-layer images.
#[derive(Debug, Parser)]
#[command(name = "obd", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Print one JSON document on stdout instead of tables (same as --format json).
    #[arg(long, global = true)]
    pub json: bool,
    /// Output form: tables for a terminal (fitted to its width), plain
    /// aligned columns for a pipe (for awk and cut), or JSON. Default: a
    /// table on a terminal, plain otherwise.
    #[arg(long, global = true, value_name = "FORMAT", value_enum)]
    pub format: Option<Format>,
    /// Do not show progress bars or notes.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// The output forms of `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Boxed tables fitted to the terminal's width.
    Table,
    /// Aligned columns without box characters, one record per line.
    Plain,
    /// One JSON document.
    Json,
}

impl GlobalArgs {
    /// True when tables are printed as plain columns: `--format plain`, or
    /// stdout is not a terminal and no form was asked for.
    pub fn plain(&self) -> bool {
        use std::io::IsTerminal;
        match self.format {
            Some(Format::Plain) => true,
            Some(Format::Table) => false,
            _ => !std::io::stdout().is_terminal(),
        }
    }
}

/// A table for `g`'s output form: boxed and fitted to the terminal's width,
/// or plain aligned columns (no box characters) for pipes.
pub(crate) fn new_table(g: &GlobalArgs) -> comfy_table::Table {
    use comfy_table::{presets, ContentArrangement, Table};
    let mut t = Table::new();
    if g.plain() {
        t.load_style(presets::NOTHING);
        t.set_content_arrangement(ContentArrangement::Disabled);
    } else {
        t.load_style(presets::UTF8_FULL_CONDENSED);
        // Fitted to the terminal's width when it is known; a terminal that
        // reports none gets the table as it is.
        if t.width().is_some_and(|w| w >= 40) {
            t.set_content_arrangement(ContentArrangement::Dynamic);
        }
    }
    t
}

/// Renders a table from [`new_table`]: plain columns start at the left
/// margin, are two spaces apart and carry no trailing blanks.
pub(crate) fn render(g: &GlobalArgs, t: &mut comfy_table::Table) -> String {
    if !g.plain() {
        return t.to_string();
    }
    for c in t.column_iter_mut() {
        c.set_padding((0, 2));
    }
    t.lines()
        .map(|l| l.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A table's plain form has one line per record: multi-line cells are
/// joined with commas there.
pub(crate) fn cell_lines(g: &GlobalArgs, lines: &[String]) -> String {
    lines.join(if g.plain() { "," } else { "\n" })
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show headers, trailers, indexes and containers of layer blobs, or a stack's merged view.
    Inspect(inspect::Args),
    /// Show where each extent of a stack's virtual disk comes from (like `qemu-img map`).
    Map(map::Args),
    /// Write a stack's merged virtual disk as a raw image (sparse where possible).
    Flatten(flatten::Args),
    /// Build a small sample stack in a temporary directory, then inspect, map and flatten it.
    Demo(demo::Args),
    /// Serve a stack as a ublk block device (/dev/ublkbN); returns once it is live.
    #[cfg(target_os = "linux")]
    Attach(attach::Args),
    /// Serve a stack as an NBD export (for QEMU, qemu-img, nbd-client); returns once it is live.
    #[cfg(target_os = "linux")]
    Serve(serve::Args),
    /// Stop an attached device or an NBD export (--force: remove one whose server died).
    #[cfg(target_os = "linux")]
    Detach(detach::Args),
    /// List attached ublk devices with their layers, server and state.
    #[cfg(target_os = "linux")]
    List(list::Args),
    /// Check what attach needs: kernel, ublk_drv, /dev/ublk-control, features, io_uring (exit 1 on a failure).
    #[cfg(target_os = "linux")]
    Doctor(doctor::Args),
    /// Requests, bytes, errors and latencies of attached devices and exports.
    #[cfg(target_os = "linux")]
    Stats(stats::Args),
    /// Create an empty writable layer (data file + index file).
    Create(create::Args),
    /// Seal a writable layer into a read-only layer, seal in place, or commit a raw image's difference.
    Commit(commit::Args),
    /// Flatten a stack of read-only layers into one read-only layer.
    Merge(merge::Args),
    /// Compress or decompress ZFile containers.
    #[command(subcommand)]
    Zfile(zfile::Command),
    /// Check layer blobs (files or directories) for every corruption the formats can reveal.
    Verify(verify::Args),
    /// Push layer files as an overlaybd image to a registry or an OCI layout.
    Push(push::Args),
    /// Pull an overlaybd image from a registry into an OCI layout directory.
    Pull(push::PullArgs),
    /// The local cache of registry blobs: list, verify, prune.
    #[command(subcommand)]
    Cache(cache::Command),
    /// Print the shell completion script of obd.
    Completions(docs::CompletionsArgs),
    /// Print a manual page, or write them all into a directory.
    Man(docs::ManArgs),
}

/// A writable top layer: `--upper DATA INDEX`.
#[derive(Debug, Clone, Args)]
pub struct UpperArgs {
    /// A writable layer (data file and index file) on top of the stack.
    #[arg(long, num_args = 2, value_names = ["DATA", "INDEX"])]
    pub upper: Option<Vec<PathBuf>>,
}

impl UpperArgs {
    /// The pair, if given.
    pub fn pair(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        match self.upper.as_deref() {
            Some([d, i]) => Some((d.as_path(), i.as_path())),
            _ => None,
        }
    }
}

/// The parent-uuid chain check of the commands that read a stack.
#[derive(Debug, Clone, Args)]
pub struct ChainArgs {
    /// Accept a stack whose parent-uuid chain is broken (by default an
    /// error: layers out of order or one missing).
    #[arg(long)]
    pub ignore_chain: bool,
}

/// The memory budget of the indexes a command reads: `--max-index-memory`.
#[derive(Debug, Clone, Args)]
pub struct IndexArgs {
    /// Memory all layer indexes together may take (e.g. 1G): a layer whose
    /// index claims more is refused before anything is allocated.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size)]
    pub max_index_memory: u64,
}

impl IndexArgs {
    /// Read options with this budget (and the defaults otherwise).
    pub fn read_options(&self) -> crate::stack::ReadOptions {
        crate::stack::ReadOptions {
            max_index_memory: self.max_index_memory,
            ..Default::default()
        }
    }

    /// The budget itself.
    pub fn budget(&self) -> crate::format::lsmt::layer::IndexBudget {
        crate::format::lsmt::layer::IndexBudget::new(self.max_index_memory)
    }
}

/// Refuses a stack whose parent-uuid chain is broken, unless
/// `--ignore-chain`; says once on stderr when links cannot be checked.
///
/// # Errors
/// The first break, naming both layers.
pub(crate) fn check_chain(
    g: &GlobalArgs,
    c: &ChainArgs,
    stack: &crate::stack::Stack,
) -> anyhow::Result<()> {
    let chain = stack.checked_chain(c.ignore_chain)?;
    if !chain.unchecked.is_empty() && !g.quiet {
        let which: Vec<String> = chain.unchecked.iter().map(|i| i.to_string()).collect();
        eprintln!(
            "obd: note: the parent chain cannot be checked at {} {} (null uuids)",
            if which.len() == 1 { "layer" } else { "layers" },
            which.join(", ")
        );
    }
    Ok(())
}

/// Access traces of a served stack: `--record-trace`, `--prefetch`.
#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    /// Record the reads of the (read-only) stack into this trace file
    /// (overlaybd's format) until FILE.lock is removed or the server stops.
    #[arg(long, value_name = "FILE")]
    pub record_trace: Option<PathBuf>,
    /// Replay this trace in the background once the stack is open, so that
    /// the reads it recorded find their data fetched.
    #[arg(long, value_name = "FILE")]
    pub prefetch: Option<PathBuf>,
}

impl TraceArgs {
    /// The paths, absolute (the server may run elsewhere).
    ///
    /// # Errors
    /// A replay trace that does not exist.
    pub fn paths(&self) -> anyhow::Result<(Option<PathBuf>, Option<PathBuf>)> {
        let abs = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
        if let Some(p) = &self.prefetch {
            if !p.is_file() {
                anyhow::bail!("{}: --prefetch: no such trace file", p.display());
            }
        }
        Ok((
            self.record_trace.as_ref().map(abs),
            self.prefetch.as_ref().map(abs),
        ))
    }
}

/// The decompressed-block cache of a stack's ZFile layers: `--cache-size`.
#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    /// Memory for decompressed ZFile blocks, shared by all layers (e.g. 64M;
    /// 0 turns the cache off).
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_size)]
    pub cache_size: u64,
}

impl CacheArgs {
    /// The library's cache options.
    pub fn options(&self) -> crate::format::zfile::CacheOptions {
        crate::format::zfile::CacheOptions {
            size: self.cache_size,
        }
    }
}

/// Most threads any `--threads` takes.
pub const MAX_THREADS: usize = 1024;

/// Parses `--threads`: 1 to [`MAX_THREADS`]. (Workers beyond four per core
/// are not started whatever the option says: they would only add switching.)
pub fn parse_threads(s: &str) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of threads (give 1 to {MAX_THREADS})"))?;
    if !(1..=MAX_THREADS).contains(&n) {
        return Err(format!("{n} threads: give 1 to {MAX_THREADS}"));
    }
    Ok(n)
}

/// Parses sizes such as `4096`, `4K`, `64KiB`, `1G` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits == 0 {
        return Err(format!("{s:?} is not a size (examples: 4096, 4K, 64K, 1G)"));
    }
    let n: u64 = t[..digits]
        .parse()
        .map_err(|_| format!("{s:?} is too large"))?;
    let unit = t[digits..].trim().to_ascii_uppercase();
    let shift = match unit.as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use K, M, G or T)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `n thing` or `n things`.
pub(crate) fn count(n: u64, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// Formats a byte count for people.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Warns on stderr, even under `-q`, when a ZFile was written that the
/// reference's reader cannot read (blocks over 64 KiB on disk).
pub(crate) fn warn_oversized(r: &crate::ops::output::OutputReport) {
    if let Some(n @ 1..) = r.oversized_blocks {
        eprintln!(
            "obd: warning: {}: {n} ZFile {} larger than 64 KiB compressed, which overlaybd's \
             reader cannot read (obd can); a block size under 64K avoids it",
            r.path,
            if n == 1 { "block is" } else { "blocks are" }
        );
    }
}

/// Refuses to write binary data to a terminal (as zstd does).
///
/// # Errors
/// When stdout is a terminal.
pub(crate) fn refuse_terminal() -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        anyhow::bail!("stdout is a terminal; use -o FILE or a pipe");
    }
    Ok(())
}

/// Writes `value` as one pretty JSON document.
///
/// # Errors
/// Write errors.
pub fn print_json<T: serde::Serialize>(out: &mut dyn Write, value: &T) -> anyhow::Result<()> {
    // Through a `Value`, whose maps are ordered: every document lists its
    // keys in alphabetical order, whatever struct or macro made it.
    let v = serde_json::to_value(value)?;
    serde_json::to_writer_pretty(&mut *out, &v)?;
    writeln!(out)?;
    Ok(())
}

/// Runs a parsed command line.
///
/// # Errors
/// Whatever the command fails with.
pub fn run(mut cli: Cli, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    if cli.global.format == Some(Format::Json) {
        cli.global.json = true;
    }
    let g = &cli.global;
    if matches!(
        cli.command,
        Command::Flatten(_)
            | Command::Demo(_)
            | Command::Zfile(_)
            | Command::Create(_)
            | Command::Commit(_)
            | Command::Merge(_)
            | Command::Push(_)
            | Command::Pull(_)
    ) {
        remove_outputs_on_signal();
    }
    match cli.command {
        Command::Inspect(a) => inspect::run(g, a, out),
        Command::Map(a) => map::run(g, a, out),
        Command::Flatten(a) => flatten::run(g, a, out),
        Command::Demo(a) => demo::run(g, a, out),
        #[cfg(target_os = "linux")]
        Command::Attach(a) => attach::run(g, a, out),
        #[cfg(target_os = "linux")]
        Command::Serve(a) => serve::run(g, a, out),
        #[cfg(target_os = "linux")]
        Command::Detach(a) => detach::run(g, a, out),
        #[cfg(target_os = "linux")]
        Command::List(a) => list::run(g, a, out),
        #[cfg(target_os = "linux")]
        Command::Doctor(a) => doctor::run(g, a, out),
        #[cfg(target_os = "linux")]
        Command::Stats(a) => stats::run(g, a, out),
        Command::Zfile(c) => zfile::run(g, c, out),
        Command::Create(a) => create::run(g, a, out),
        Command::Commit(a) => commit::run(g, a, out),
        Command::Merge(a) => merge::run(g, a, out),
        Command::Verify(a) => verify::run(g, a, out),
        Command::Push(a) => push::run(g, a, out),
        Command::Pull(a) => push::run_pull(g, a, out),
        Command::Cache(c) => cache::run(g, c, out),
        Command::Completions(a) => docs::completions(a, out),
        Command::Man(a) => docs::man(g, a, out),
    }
}

/// For commands that write files: on SIGINT, SIGTERM or SIGHUP, remove the
/// named temporary files of unfinished outputs (outputs without a name
/// vanish with the process anyway), then exit as a shell reports a signal
/// (128 + its number). Without this an interrupted writer on a file system
/// without `O_TMPFILE` would leave its hidden temporary file next to the
/// output (never a partial output).
fn remove_outputs_on_signal() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            crate::io::atomic::remove_pending();
            eprintln!("obd: interrupted");
            std::process::exit(128 + sig);
        }
    });
}

/// `obd --version`: the version, the commit and date of the build, and
/// what this build can do on this machine.
pub fn long_version() -> String {
    let ublk = if cfg!(target_os = "linux") {
        if std::path::Path::new(crate::serve::ublk::CONTROL_PATH).exists() {
            "ublk (driver loaded)"
        } else {
            "ublk (driver not loaded)"
        }
    } else {
        "no ublk (not Linux)"
    };
    format!(
        "{} (commit {}, built {})\nfeatures: {ublk}; index lookup kernel {}; lz4 (lz4_flex), zstd",
        env!("CARGO_PKG_VERSION"),
        env!("OBD_GIT_COMMIT"),
        env!("OBD_BUILD_DATE"),
        crate::stack::Kernel::best().name()
    )
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!(" ({}:{})", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("obd: internal error: {msg}{at}; please report this");
    }));
    let cli = match Cli::command()
        .long_version(&*Box::leak(long_version().into_boxed_str()))
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            eprintln!("obd: {}", usage_error(&e));
            return ExitCode::from(2);
        }
        Err(e) => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let stdout = io::stdout();
        let mut lock = stdout.lock();
        run(cli, &mut lock)
    }));
    // Registry blobs fetched by this run stay known to the cache.
    crate::source::cache::persist_open();
    match result {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            if is_broken_pipe(&e) {
                // As `cat` killed by SIGPIPE reports it: the reader went
                // away and what was written is cut short.
                return ExitCode::from(141);
            }
            eprintln!("obd: {}", crate::error::strip_os_error(&format!("{e:#}")));
            ExitCode::from(2)
        }
        Err(_) => ExitCode::from(2),
    }
}

/// A usage error as one line: clap's message without its `error: ` prefix,
/// usage block and tips, and where to read more.
fn usage_error(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("bad usage");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let values = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("[possible values:"));
    let first = match values {
        Some(v) => format!("{first} {v}"),
        None => first.to_string(),
    };
    // The subcommand path the arguments name: `obd zfile compress`.
    let mut cmd = Cli::command();
    let mut path = vec!["obd".to_string()];
    for a in std::env::args().skip(1).filter(|a| !a.starts_with('-')) {
        match cmd.find_subcommand(&a) {
            Some(sub) => {
                path.push(a.clone());
                cmd = sub.clone();
            }
            None => break,
        }
    }
    format!("{first} (see {} --help)", path.join(" "))
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(io::ErrorKind::BrokenPipe))
            || c.downcast_ref::<crate::Error>().is_some_and(|o| {
                matches!(o, crate::Error::Io { cause, .. } if cause.kind() == io::ErrorKind::BrokenPipe)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert!(parse_size("").is_err());
        assert!(parse_size("K").is_err());
        assert!(parse_size("4X").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(12), "12 B");
    }
}
