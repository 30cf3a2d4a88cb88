//! `obd attach`: a layer stack as a ublk block device, served by obd itself
//! (the device's life is [`crate::serve::daemon`]'s).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use super::{print_json, CacheArgs, ChainArgs, GlobalArgs, UpperArgs};
use crate::serve::daemon::{self, Finished, Plan};
use crate::serve::runstate::Record;
use crate::serve::ublk::{Options, Ublk};
use crate::source::config::{
    check_result_file, result_file_of, write_result, ImageConfig, TraceMode,
};
use crate::stack::ReadOptions;

/// Arguments of `obd attach`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Writable top layer: the device becomes writable.
    #[command(flatten)]
    pub upper: UpperArgs,
    /// Serve the stack read-only even with --upper (the writable layer is not written).
    #[arg(long)]
    pub read_only: bool,
    /// Hardware queues (one server thread each).
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub queues: u16,
    /// Requests in flight per queue.
    #[arg(long, default_value_t = 64, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub depth: u16,
    /// Stay attached: serve the device from this process until SIGINT/SIGTERM.
    #[arg(long)]
    pub foreground: bool,
    /// Take layers, upper layer and result file from an overlaybd image config.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["layers", "upper"])]
    pub config: Option<PathBuf>,
    /// Where the config's resultFile may also be written (by default only
    /// next to the config).
    #[arg(long, value_name = "DIR", requires = "config")]
    pub result_dir: Option<PathBuf>,
    /// Give up when the device is not live after this many seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Block cache.
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Chain check.
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Index memory budget.
    #[command(flatten)]
    pub index: super::IndexArgs,
    /// Access traces.
    #[command(flatten)]
    pub trace: super::TraceArgs,
    /// Registry and cache options (for image references).
    #[command(flatten)]
    pub remote: super::remote::RemoteArgs,
    /// Layer blobs, bottom first, or one image reference
    /// (docker://HOST:PORT/REPO:TAG, or @sha256:DIGEST for the tag; oci:DIR:TAG).
    #[arg(required_unless_present_any = ["upper", "config"])]
    pub layers: Vec<PathBuf>,
}

/// Runs `obd attach`.
///
/// # Errors
/// A missing ublk driver, unreadable layers, a device that does not come up.
pub fn run(g: &GlobalArgs, a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let (mut record_trace, mut prefetch) = a.trace.paths()?;
    let (layers, upper, config, result_file) = match &a.config {
        Some(c) => {
            let rd = a.result_dir.as_deref();
            let cfg = match ImageConfig::load(c) {
                Ok(cfg) => cfg,
                Err(e) => {
                    let e = anyhow::Error::from(e).context(c.display().to_string());
                    if let Some(rf) = result_file_of(c) {
                        let rf = check_result_file(c, &rf, rd)?;
                        write_result(&rf, Err(&format!("{e:#}")))
                            .with_context(|| format!("writing the result file {}", rf.display()))?;
                    }
                    return Err(e);
                }
            };
            let rf = cfg
                .result_file
                .as_deref()
                .map(|rf| check_result_file(c, rf, rd))
                .transpose()?;
            // The config's recordTracePath, unless the command line says.
            match cfg.trace.clone() {
                Some(TraceMode::Record(p)) if record_trace.is_none() => record_trace = Some(p),
                Some(TraceMode::Replay(p)) if prefetch.is_none() => prefetch = Some(p),
                _ => {}
            }
            let lowers = a.remote.config_sources(cfg.lowers)?;
            (lowers, cfg.upper, Some(c.clone()), rf)
        }
        None => (
            a.remote.sources(&a.layers)?,
            a.upper
                .pair()
                .map(|(d, i)| (d.to_path_buf(), i.to_path_buf())),
            None,
            None,
        ),
    };
    let plan = Plan {
        layers,
        upper,
        read_only: a.read_only,
        config,
        result_file,
        read: ReadOptions {
            cache: a.cache.options(),
            max_index_memory: a.index.max_index_memory,
            ..ReadOptions::default()
        },
        foreground: a.foreground,
        ignore_chain: a.chain.ignore_chain,
        queues: a.queues,
        depth: a.depth,
        start_timeout: Duration::from_secs(a.timeout),
        record_trace,
        prefetch,
    };
    let transport = Ublk {
        options: Options {
            queues: a.queues,
            depth: a.depth,
            start_timeout: Duration::from_secs(a.timeout),
            ..Options::default()
        },
    };
    start(g, &plan, &transport, out)
}

/// Starts serving `plan` with `transport` and reports the live device:
/// the starting command prints it to `out`, a foreground server to stdout
/// from its serving thread. Shared by `attach` and `serve`.
pub(crate) fn start(
    g: &GlobalArgs,
    plan: &Plan,
    transport: &dyn daemon::Transport,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let printed: Arc<Mutex<Option<Record>>> = Arc::new(Mutex::new(None));
    let json = g.json;
    let on_live: daemon::OnLive = if plan.foreground {
        Arc::new(move |rec: &Record| print_live(json, rec, &mut std::io::stdout().lock()))
    } else {
        let slot = printed.clone();
        Arc::new(move |rec: &Record| {
            if let Ok(mut g) = slot.lock() {
                *g = Some(rec.clone());
            }
            Ok(())
        })
    };
    out.flush()?;
    match daemon::start(plan, transport, on_live)? {
        Finished::Started => {
            if let Some(rec) = printed.lock().ok().and_then(|mut g| g.take()) {
                print_live(json, &rec, out)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Finished::Stopped(Ok(())) => Ok(ExitCode::SUCCESS),
        Finished::Stopped(Err(_)) | Finished::ServerFailed => Ok(ExitCode::from(2)),
    }
}

fn print_live(json: bool, rec: &Record, out: &mut dyn Write) -> anyhow::Result<()> {
    if json {
        print_json(out, rec)?;
    } else {
        writeln!(out, "{}", rec.device)?;
    }
    out.flush()?;
    Ok(())
}
