//! `obd attach`: a layer stack as a ublk block device, served by obd itself.
//!
//! By default the command returns once `/dev/ublkbN` is live and a
//! background server (a forked copy of this process, in its own session)
//! keeps serving it. The server tells the starting command how startup went
//! over a pipe, one line per step:
//!
//! ```text
//! added <id>          the control device exists
//! live <record JSON>  the block device is up: success
//! error <message>     startup failed (the failure sentinel)
//! ```
//!
//! End of file without `live` is a failure too (the server died), and so is
//! silence past the start timeout; then the starting command kills the
//! server and deletes whatever device it had added.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context};

use super::{print_json, CacheArgs, GlobalArgs, UpperArgs};
use crate::config::{write_result, ImageConfig};
use crate::format::lsmt::writable::WritableLayer;
use crate::io::ReadAt;
use crate::stack::{ReadOptions, Stack};
use crate::ublk::runstate::{self, process_start, run_dir, Record, Upper};
use crate::ublk::sys::{self, BlockedSignals, Forked, STOP_SIGNALS};
use crate::ublk::{self as ublk, Live, Observer, Options, StopReason, Target};

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
    /// Give up when the device is not live after this many seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Block cache.
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Layer blobs, bottom first.
    #[arg(required_unless_present_any = ["upper", "config"])]
    pub layers: Vec<PathBuf>,
}

/// What to attach, resolved from the arguments or an image config.
struct Plan {
    read_only: bool,
    layers: Vec<PathBuf>,
    upper: Option<(PathBuf, PathBuf)>,
    config: Option<PathBuf>,
    result_file: Option<PathBuf>,
}

/// Runs `obd attach`.
///
/// # Errors
/// A missing ublk driver, unreadable layers, a device that does not come up.
pub fn run(g: &GlobalArgs, a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let plan = match &a.config {
        Some(c) => {
            let cfg = match ImageConfig::load(c) {
                Ok(cfg) => cfg,
                Err(e) => {
                    let e = anyhow::Error::from(e).context(c.display().to_string());
                    if let Some(rf) = crate::config::result_file_of(c) {
                        write_result(&rf, Err(&format!("{e:#}")))
                            .with_context(|| format!("writing the result file {}", rf.display()))?;
                    }
                    return Err(e);
                }
            };
            Plan {
                read_only: a.read_only,
                layers: cfg.lowers,
                upper: cfg.upper,
                config: Some(absolute(c)),
                result_file: cfg.result_file,
            }
        }
        None => Plan {
            read_only: a.read_only,
            layers: a.layers.clone(),
            upper: a
                .upper
                .pair()
                .map(|(d, i)| (d.to_path_buf(), i.to_path_buf())),
            config: None,
            result_file: None,
        },
    };
    let result_file = plan.result_file.clone();
    let r = attach(g, &a, plan, out);
    // Success is reported by whoever sees the device go live (the
    // foreground server, or the starting command); failures here.
    if let (Some(rf), Err(e)) = (&result_file, &r) {
        write_result(rf, Err(&format!("{e:#}")))
            .with_context(|| format!("writing the result file {}", rf.display()))?;
    }
    r
}

fn report_success(result_file: Option<&Path>) -> anyhow::Result<()> {
    if let Some(rf) = result_file {
        write_result(rf, Ok(()))
            .with_context(|| format!("writing the result file {}", rf.display()))?;
    }
    Ok(())
}

fn attach(g: &GlobalArgs, a: &Args, plan: Plan, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    ublk::preflight()?;
    let template = Record {
        id: 0,
        device: String::new(),
        char_device: String::new(),
        pid: 0,
        pid_start: 0,
        size: 0,
        read_only: plan.upper.is_none() || plan.read_only,
        queues: a.queues,
        depth: a.depth,
        layers: plan.layers.iter().map(|p| display(&absolute(p))).collect(),
        upper: plan.upper.as_ref().map(|(d, i)| Upper {
            data: display(&absolute(d)),
            index: display(&absolute(i)),
        }),
        config: plan.config.as_deref().map(display),
        log: None,
        started: 0,
    };
    let opts = Options {
        queues: a.queues,
        depth: a.depth,
        start_timeout: Duration::from_secs(a.timeout),
        ..Options::default()
    };
    let read = ReadOptions {
        cache: a.cache.options(),
        ..ReadOptions::default()
    };
    if a.foreground {
        // Before any thread exists (opening the stack may start the pool
        // that decompresses large reads): see `ublk::serve`.
        let signals = block_stop_signals()?;
        let target = open_target(&plan, read)?;
        foreground(g, target, &opts, template, plan.result_file, &signals)
    } else {
        background(g, plan, read, &opts, template, out)
    }
}

fn block_stop_signals() -> anyhow::Result<Arc<BlockedSignals>> {
    Ok(Arc::new(
        BlockedSignals::block(&STOP_SIGNALS).context("blocking the stop signals")?,
    ))
}

fn open_target(plan: &Plan, read: ReadOptions) -> anyhow::Result<Arc<dyn Target>> {
    let upper = plan.upper.as_ref().map(|(d, i)| (d.as_path(), i.as_path()));
    match upper {
        Some((data, index)) if !plan.read_only => {
            let lower: Option<Arc<dyn ReadAt>> = if plan.layers.is_empty() {
                None
            } else {
                Some(Arc::new(Stack::open_with(&plan.layers, None, read)?))
            };
            let layer = WritableLayer::open(data, index, lower)
                .with_context(|| data.display().to_string())?;
            Ok(Arc::new(layer))
        }
        _ => Ok(Arc::new(Stack::open_with(&plan.layers, upper, read)?)),
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The record of a live device, as this process writes it.
fn record_for(template: &Record, live: &Live, log: Option<String>) -> Record {
    let pid = std::process::id();
    Record {
        id: live.id,
        device: live.device.clone(),
        char_device: live.char_device.clone(),
        pid,
        pid_start: process_start(pid).unwrap_or(0),
        size: live.size,
        read_only: live.read_only,
        queues: live.queues,
        depth: live.depth,
        log,
        started: now(),
        ..template.clone()
    }
}

fn print_live(g: &GlobalArgs, rec: &Record, out: &mut dyn Write) -> anyhow::Result<()> {
    if g.json {
        print_json(out, rec)?;
    } else {
        writeln!(out, "{}", rec.device)?;
    }
    out.flush()?;
    Ok(())
}

fn finish(stopped: ublk::Stopped) -> ExitCode {
    Record::remove(&run_dir(), stopped.id);
    match stopped.flush {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("obd: ublkb{}: flushing the upper layer: {e}", stopped.id);
            ExitCode::from(2)
        }
    }
}

// ---- foreground ----------------------------------------------------------

struct ForegroundObserver {
    json: bool,
    template: Record,
    result_file: Option<PathBuf>,
}

impl Observer for ForegroundObserver {
    fn live(&self, live: &Live) -> anyhow::Result<()> {
        let rec = record_for(&self.template, live, None);
        rec.save(&run_dir())
            .with_context(|| format!("recording the device in {}", run_dir().display()))?;
        let g = GlobalArgs {
            json: self.json,
            quiet: false,
        };
        print_live(&g, &rec, &mut std::io::stdout().lock())?;
        report_success(self.result_file.as_deref())
    }

    fn timed_out(&self, id: Option<u32>, after: Duration) {
        eprintln!("obd: {}", timeout_message(id, after));
    }
}

fn timeout_message(id: Option<u32>, after: Duration) -> String {
    match id {
        Some(id) => format!(
            "ublk device {id} did not come up within {}s (`obd detach --force {id}` removes it)",
            after.as_secs()
        ),
        None => format!(
            "creating the ublk device did not finish within {}s",
            after.as_secs()
        ),
    }
}

fn foreground(
    g: &GlobalArgs,
    target: Arc<dyn Target>,
    opts: &Options,
    template: Record,
    result_file: Option<PathBuf>,
    signals: &Arc<BlockedSignals>,
) -> anyhow::Result<ExitCode> {
    let observer = Arc::new(ForegroundObserver {
        json: g.json,
        template,
        result_file,
    });
    let stopped = ublk::serve(target, opts, observer, signals)?;
    Ok(finish(stopped))
}

// ---- background ----------------------------------------------------------

/// The server side of the startup pipe.
struct DaemonObserver {
    pipe: Mutex<Option<File>>,
    template: Record,
    log: Mutex<Option<PathBuf>>,
}

impl DaemonObserver {
    fn say(&self, line: &str) {
        if let Ok(mut g) = self.pipe.lock() {
            if let Some(p) = g.as_mut() {
                let _ = writeln!(p, "{line}");
            }
        }
    }

    /// Closes the pipe: the starting command is done with us.
    fn hang_up(&self) {
        if let Ok(mut g) = self.pipe.lock() {
            g.take();
        }
    }
}

impl Observer for DaemonObserver {
    fn added(&self, id: u32) {
        // The log is named after the device from now on.
        if let Ok(mut g) = self.log.lock() {
            if let Some(old) = g.as_ref() {
                let new = run_dir().join(format!("{id}.log"));
                if std::fs::rename(old, &new).is_ok() {
                    *g = Some(new);
                }
            }
        }
        self.say(&format!("added {id}"));
    }

    fn live(&self, live: &Live) -> anyhow::Result<()> {
        let log = self.log.lock().ok().and_then(|g| g.as_deref().map(display));
        let rec = record_for(&self.template, live, log);
        rec.save(&run_dir())
            .with_context(|| format!("recording the device in {}", run_dir().display()))?;
        self.say(&format!("live {}", serde_json::to_string(&rec)?));
        self.hang_up();
        Ok(())
    }

    fn timed_out(&self, id: Option<u32>, after: Duration) {
        let msg = timeout_message(id, after);
        eprintln!("obd: {msg}");
        self.say(&format!("error {msg}"));
    }
}

enum Message {
    Added(u32),
    Live(Record),
    Error(String),
    Eof,
}

fn background(
    g: &GlobalArgs,
    plan: Plan,
    read: ReadOptions,
    opts: &Options,
    template: Record,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let dir = run_dir();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the run directory {}", dir.display()))?;
    let (rx, tx) = sys::pipe().context("creating the startup pipe")?;
    out.flush()?;
    std::io::stderr().flush()?;
    // The server opens the layers itself, after the fork: opening may start
    // threads, which a fork would not carry over. Its errors come back
    // through the pipe like every other startup failure.
    match fork()? {
        Forked::Child => {
            drop(rx);
            Ok(server_child(&plan, read, opts, template, tx, &dir))
        }
        Forked::Parent(pid) => {
            drop(tx);
            starter(
                g,
                pid,
                rx,
                opts.start_timeout,
                plan.result_file.as_deref(),
                out,
            )
        }
    }
}

#[allow(unsafe_code)]
fn fork() -> anyhow::Result<Forked> {
    // SAFETY: `attach` forks before it opens a layer or starts a thread, so
    // the process is single-threaded; the child goes on without exec.
    unsafe { sys::fork() }.context("forking the attach server")
}

/// The forked server: detach from the terminal, open the layers, serve,
/// clean up.
fn server_child(
    plan: &Plan,
    read: ReadOptions,
    opts: &Options,
    template: Record,
    pipe: File,
    dir: &Path,
) -> ExitCode {
    let log_path = dir.join(format!("attach-{}.log", std::process::id()));
    let observer = Arc::new(DaemonObserver {
        pipe: Mutex::new(Some(pipe)),
        template,
        log: Mutex::new(Some(log_path.clone())),
    });
    let setup = (|| -> anyhow::Result<(Arc<BlockedSignals>, Arc<dyn Target>)> {
        let signals = block_stop_signals()?;
        let _ = rustix::process::setsid();
        let null = File::options().read(true).write(true).open("/dev/null")?;
        let log = File::create(&log_path)
            .with_context(|| format!("creating the log {}", log_path.display()))?;
        sys::redirect(&null, 0)?;
        sys::redirect(&null, 1)?;
        sys::redirect(&log, 2)?;
        Ok((signals, open_target(plan, read)?))
    })();
    let (signals, target) = match setup {
        Ok(x) => x,
        Err(e) => {
            eprintln!("obd: {e:#}");
            observer.say(&format!("error {e:#}"));
            return ExitCode::from(2);
        }
    };
    match ublk::serve(target, opts, observer.clone(), &signals) {
        Ok(stopped) => {
            let why = match stopped.reason {
                StopReason::Signal(s) => format!("signal {s}"),
                StopReason::DeviceGone => "the device was deleted".into(),
            };
            eprintln!("obd: ublkb{}: stopped ({why})", stopped.id);
            finish(stopped)
        }
        Err(e) => {
            eprintln!("obd: {e}");
            observer.say(&format!("error {e}"));
            ExitCode::from(2)
        }
    }
}

/// The starting command: wait for the server's verdict.
fn starter(
    g: &GlobalArgs,
    pid: i32,
    pipe: File,
    timeout: Duration,
    result_file: Option<&Path>,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let (tx, msgs) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let msg = match line.split_once(' ') {
                Some(("added", id)) => id.parse().map(Message::Added).ok(),
                Some(("live", json)) => serde_json::from_str(json).map(Message::Live).ok(),
                Some(("error", why)) => Some(Message::Error(why.to_string())),
                _ => None,
            };
            let Some(msg) = msg else { continue };
            if tx.send(msg).is_err() {
                return;
            }
        }
        let _ = tx.send(Message::Eof);
    });
    // A little more than the server's own watchdog, which reports better.
    let deadline = std::time::Instant::now() + timeout + Duration::from_secs(5);
    let mut id = None;
    let failure = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match msgs.recv_timeout(left) {
            Ok(Message::Added(n)) => id = Some(n),
            Ok(Message::Live(rec)) => {
                print_live(g, &rec, out)?;
                report_success(result_file)?;
                return Ok(ExitCode::SUCCESS);
            }
            Ok(Message::Error(why)) => break why,
            Ok(Message::Eof) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                break "the attach server exited before the device was live".to_string()
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                break timeout_message(id, timeout);
            }
        }
    };
    clean_up_failed_server(pid, id);
    let log = id.map(|n| run_dir().join(format!("{n}.log")));
    match log.filter(|p| p.exists()) {
        Some(p) => Err(anyhow!("{failure} (server log: {})", p.display())),
        None => Err(anyhow!(failure)),
    }
}

/// Makes sure a server that failed to start leaves nothing behind.
fn clean_up_failed_server(pid: i32, id: Option<u32>) {
    use rustix::process::{kill_process, waitpid, Pid, Signal, WaitOptions};
    if let Some(p) = Pid::from_raw(pid) {
        // It may still be running (stuck, or failing slowly): end it.
        let _ = kill_process(p, Signal::KILL);
        let _ = waitpid(Some(p), WaitOptions::empty());
    }
    if id.is_none() {
        // Whatever it logged came through the pipe already.
        let _ = std::fs::remove_file(run_dir().join(format!("attach-{pid}.log")));
    }
    if let Some(id) = id {
        Record::remove(&run_dir(), id);
        if runstate::device_exists(id) {
            if let Err(e) = super::detach::delete_device(id, Duration::from_secs(10)) {
                eprintln!("obd: removing ublk device {id} after the failed start: {e:#}");
            }
        }
    }
}
