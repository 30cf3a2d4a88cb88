//! The life of a served device: starting it in the foreground or in a
//! background server, the startup handshake, its run record, its end.
//!
//! By default the starting command returns once the device is live and a
//! background server (a forked copy of this process, in its own session)
//! keeps serving it. The server tells the starting command how startup went
//! over a pipe, one line per step:
//!
//! ```text
//! added <id>          the device exists (its id is taken)
//! live <record JSON>  the block device is up: success
//! error <message>     startup failed (the failure sentinel)
//! ```
//!
//! End of file without `live` is a failure too (the server died), and so is
//! silence past the start timeout; then the starting command kills the
//! server and deletes whatever device it had added.
//!
//! The transport (ublk today) is behind [`Observer`]: it reports `added`,
//! `live` and timeouts, and this module records, prints and cleans up.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context};

use super::runstate::{
    check_run_dir, ensure_run_dir, process_start, run_dir, wait_until, Record, Upper,
};
use super::sys::{self, BlockedSignals, Forked, STOP_SIGNALS};
use super::target::Target;
use super::trace;
use crate::format::lsmt::writable::WritableLayer;
use crate::io::ReadAt;
use crate::source::config::write_result;
use crate::source::LayerSource;
use crate::stack::{ReadOptions, Stack};

/// A device that is up.
#[derive(Debug, Clone)]
pub struct Live {
    /// Device id: `/dev/ublkb<id>` for ublk.
    pub id: u32,
    /// The block device.
    pub device: String,
    /// The control node the server talks to (ublk's `/dev/ublkc<id>`).
    pub char_device: String,
    /// Size in bytes.
    pub size: u64,
    /// Read-only device.
    pub read_only: bool,
    /// Hardware queues.
    pub queues: u16,
    /// Depth of each queue.
    pub depth: u16,
}

/// Why a server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A stop signal arrived (its number).
    Signal(i32),
    /// The device was deleted or its queues died.
    DeviceGone,
}

/// What a finished server reports.
#[derive(Debug)]
pub struct Stopped {
    /// The device id.
    pub id: u32,
    /// Why.
    pub reason: StopReason,
    /// The final flush of the target.
    pub flush: crate::Result<()>,
}

/// Told about the device's life; called from the serving thread.
pub trait Observer: Send + Sync + 'static {
    /// The device exists (the id is taken) but is not started yet.
    fn added(&self, id: u32) {
        let _ = id;
    }

    /// The block device is up. An error stops and deletes it again.
    ///
    /// # Errors
    /// Whatever the observer could not do (e.g. recording the device).
    fn live(&self, live: &Live) -> anyhow::Result<()>;

    /// Creating or starting the device took longer than its start timeout;
    /// the process exits with status 2 after this.
    fn timed_out(&self, id: Option<u32>, after: Duration) {
        let _ = (id, after);
    }
}

/// What to serve and how, resolved from the command line or an image config.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Read-only layers, bottom first.
    pub layers: Vec<LayerSource>,
    /// A writable top layer `(data, index)`.
    pub upper: Option<(PathBuf, PathBuf)>,
    /// Serve read-only even with an upper layer.
    pub read_only: bool,
    /// The image config the plan came from (recorded).
    pub config: Option<PathBuf>,
    /// Where to report `success` / `failed:<reason>`.
    pub result_file: Option<PathBuf>,
    /// How the stack reads.
    pub read: ReadOptions,
    /// Stay in this process (`--foreground`) instead of a background server.
    pub foreground: bool,
    /// Accept a stack whose parent-uuid chain is broken.
    pub ignore_chain: bool,
    /// Queues and depth, recorded.
    pub queues: u16,
    /// Requests in flight per queue, recorded.
    pub depth: u16,
    /// How long startup may take.
    pub start_timeout: Duration,
    /// Record the reads into this trace file (read-only stacks).
    pub record_trace: Option<PathBuf>,
    /// Replay this trace in the background once the stack is open.
    pub prefetch: Option<PathBuf>,
}

/// How [`start`] ended, in this process.
#[derive(Debug)]
pub enum Finished {
    /// The starting command: the device is live in a background server.
    Started,
    /// This process served the device until it stopped; `Err` when the
    /// final flush of the upper layer failed (already reported on stderr).
    Stopped(crate::Result<()>),
    /// This process is the background server and its startup failed (the
    /// starting command reports why).
    ServerFailed,
}

/// Called with the device's record once it is live (to print it), in the
/// process that reports to the user.
pub type OnLive = Arc<dyn Fn(&Record) -> anyhow::Result<()> + Send + Sync>;

/// What carries a device's requests (ublk today): the part of a served
/// device's life that differs from one transport to the next.
pub trait Transport: Sync {
    /// Checks, before anything is started, that the transport can work
    /// (driver loaded, permissions).
    ///
    /// # Errors
    /// What is missing, as the user should read it.
    fn preflight(&self) -> anyhow::Result<()>;

    /// Serves `target` as a new device until one of the blocked `signals`
    /// arrives or the device goes away, telling `observer` what happens;
    /// then stops and removes the device and flushes the target.
    ///
    /// # Errors
    /// Everything that keeps the device from going live.
    fn serve(
        &self,
        target: Arc<dyn Target>,
        observer: Arc<dyn Observer>,
        signals: &Arc<BlockedSignals>,
    ) -> anyhow::Result<Stopped>;

    /// Removes device `id` whose server is gone (after a failed start).
    ///
    /// # Errors
    /// The removal failing.
    fn remove(&self, id: u32, timeout: Duration) -> anyhow::Result<()>;

    /// Whether device `id` exists.
    fn exists(&self, id: u32) -> bool;

    /// Where device `id` is mounted in this mount namespace, if anywhere.
    fn mounted_at(&self, id: u32) -> Option<String> {
        let _ = id;
        None
    }

    /// The transport's name in run records: `ublk`, `nbd`.
    fn kind(&self) -> &'static str;

    /// Device `id` as people read it: `ublk device 3`, `NBD export nbd0`.
    fn describe(&self, id: u32) -> String;

    /// Device `id`'s path or address, for messages.
    fn device(&self, id: u32) -> String;
}

/// Starts serving `plan` with the transport's `serve`: in the foreground,
/// or in a background server this returns as soon as the device is live.
/// `on_live` gets the record (in the process that reports it to the user).
///
/// # Errors
/// Unreadable layers, a device that does not come up, a failed fork.
pub fn start(plan: &Plan, transport: &dyn Transport, on_live: OnLive) -> anyhow::Result<Finished> {
    let template = template(plan, transport);
    let r = transport.preflight().and_then(|()| {
        if plan.foreground {
            foreground(plan, transport, template, on_live)
        } else {
            background(plan, transport, template, on_live)
        }
    });
    // Success is reported by whoever sees the device go live; failures here.
    if let (Some(rf), Err(e)) = (&plan.result_file, &r) {
        write_result(rf, Err(&format!("{e:#}")))
            .with_context(|| format!("writing the result file {}", rf.display()))?;
    }
    r
}

fn foreground(
    plan: &Plan,
    transport: &dyn Transport,
    template: Record,
    on_live: OnLive,
) -> anyhow::Result<Finished> {
    {
        // Before any thread exists (opening the stack may start the pool
        // that decompresses large reads): see `ublk::serve`.
        let signals = block_stop_signals()?;
        let target = open_target(plan)?;
        let observer = Arc::new(ForegroundObserver {
            template,
            result_file: plan.result_file.clone(),
            on_live,
        });
        let stopped = transport.serve(target, observer, &signals)?;
        Ok(Finished::Stopped(finish(stopped)))
    }
}

fn template(plan: &Plan, transport: &dyn Transport) -> Record {
    Record {
        transport: transport.kind().to_string(),
        id: 0,
        device: String::new(),
        char_device: String::new(),
        pid: 0,
        pid_start: 0,
        size: 0,
        read_only: plan.upper.is_none() || plan.read_only,
        queues: plan.queues,
        depth: plan.depth,
        layers: plan.layers.iter().map(display_source).collect(),
        upper: plan.upper.as_ref().map(|(d, i)| Upper {
            data: display(&absolute(d)),
            index: display(&absolute(i)),
        }),
        config: plan.config.as_deref().map(|c| display(&absolute(c))),
        log: None,
        started: 0,
    }
}

fn report_success(result_file: Option<&Path>) -> anyhow::Result<()> {
    if let Some(rf) = result_file {
        write_result(rf, Ok(()))
            .with_context(|| format!("writing the result file {}", rf.display()))?;
    }
    Ok(())
}

fn block_stop_signals() -> anyhow::Result<Arc<BlockedSignals>> {
    Ok(Arc::new(
        BlockedSignals::block(&STOP_SIGNALS).context("blocking the stop signals")?,
    ))
}

/// Opens what the device serves: the stack, or a writable layer over it.
fn open_target(plan: &Plan) -> anyhow::Result<Arc<dyn Target>> {
    let upper = plan.upper.as_ref().map(|(d, i)| (d.as_path(), i.as_path()));
    match upper {
        Some((data, index)) if !plan.read_only => {
            if plan.record_trace.is_some() {
                anyhow::bail!(
                    "--record-trace records a read-only stack (drop --upper, or add --read-only)"
                );
            }
            let lower: Option<Arc<dyn ReadAt>> = if plan.layers.is_empty() {
                None
            } else {
                let stack = Arc::new(Stack::open_sources(&plan.layers, None, plan.read)?);
                check_chain(plan, &stack)?;
                start_prefetch(plan, &stack)?;
                super::stats::watch_cache(stack.cache());
                Some(stack)
            };
            let layer = WritableLayer::open(data, index, lower)
                .with_context(|| data.display().to_string())?;
            Ok(super::stats::counted(Arc::new(layer)))
        }
        _ => {
            let stack = Arc::new(Stack::open_sources(&plan.layers, upper, plan.read)?);
            check_chain(plan, &stack)?;
            start_prefetch(plan, &stack)?;
            super::stats::watch_cache(stack.cache());
            let target: Arc<dyn Target> = match &plan.record_trace {
                Some(path) => Arc::new(trace::Traced(trace::Recorder::start(stack, path)?)),
                None => stack,
            };
            Ok(super::stats::counted(target))
        }
    }
}

/// Replays the plan's trace in the background (the blob cache fills while
/// the device comes up).
fn start_prefetch(plan: &Plan, stack: &Arc<Stack>) -> anyhow::Result<()> {
    if let Some(p) = &plan.prefetch {
        trace::replay(stack.clone(), p, 8)?;
    }
    Ok(())
}

/// Refuses a broken parent-uuid chain unless the plan accepts it.
fn check_chain(plan: &Plan, stack: &Stack) -> anyhow::Result<()> {
    stack.checked_chain(plan.ignore_chain)?;
    Ok(())
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// A source as the run record names it: local files by absolute path.
fn display_source(s: &LayerSource) -> String {
    match s.path() {
        Some(p) => display(&absolute(p)),
        None => s.to_string(),
    }
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

/// Removes the record of a stopped device and reports a failed final flush.
fn finish(stopped: Stopped) -> crate::Result<()> {
    Record::remove(&run_dir(), stopped.id);
    if let Err(e) = &stopped.flush {
        eprintln!("obd: device {}: flushing the upper layer: {e}", stopped.id);
    }
    stopped.flush
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

// ---- foreground ----------------------------------------------------------

struct ForegroundObserver {
    template: Record,
    result_file: Option<PathBuf>,
    on_live: OnLive,
}

impl Observer for ForegroundObserver {
    fn live(&self, live: &Live) -> anyhow::Result<()> {
        let rec = record_for(&self.template, live, None);
        rec.save(&run_dir())
            .with_context(|| format!("recording the device in {}", run_dir().display()))?;
        super::stats::start_writer(super::stats::path(&run_dir(), live.id));
        (self.on_live)(&rec)?;
        report_success(self.result_file.as_deref())
    }

    fn timed_out(&self, id: Option<u32>, after: Duration) {
        eprintln!("obd: {}", timeout_message(id, after));
    }
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
        super::stats::start_writer(super::stats::path(&run_dir(), live.id));
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
    Live(Box<Record>),
    Error(String),
    Eof,
}

fn background(
    plan: &Plan,
    transport: &dyn Transport,
    template: Record,
    on_live: OnLive,
) -> anyhow::Result<Finished> {
    let dir = run_dir();
    ensure_run_dir(&dir)?;
    let (rx, tx) = sys::pipe().context("creating the startup pipe")?;
    std::io::stdout().flush()?;
    std::io::stderr().flush()?;
    // The server opens the layers itself, after the fork: opening may start
    // threads, which a fork would not carry over. Its errors come back
    // through the pipe like every other startup failure.
    match fork()? {
        Forked::Child => {
            drop(rx);
            Ok(server_child(plan, transport, template, tx, &dir))
        }
        Forked::Parent(pid) => {
            drop(tx);
            starter(pid, rx, plan, transport, &on_live)
        }
    }
}

#[allow(unsafe_code)]
fn fork() -> anyhow::Result<Forked> {
    // SAFETY: `start` forks before it opens a layer or starts a thread, so
    // the process is single-threaded; the child goes on without exec.
    unsafe { sys::fork() }.context("forking the server")
}

/// The forked server: detach from the terminal, open the layers, serve,
/// clean up.
fn server_child(
    plan: &Plan,
    transport: &dyn Transport,
    template: Record,
    pipe: File,
    dir: &Path,
) -> Finished {
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
        let log = create_log(&log_path)
            .with_context(|| format!("creating the log {}", log_path.display()))?;
        sys::redirect(&null, 0)?;
        sys::redirect(&null, 1)?;
        sys::redirect(&log, 2)?;
        Ok((signals, open_target(plan)?))
    })();
    let (signals, target) = match setup {
        Ok(x) => x,
        Err(e) => {
            eprintln!("obd: {e:#}");
            observer.say(&format!("error {e:#}"));
            return Finished::ServerFailed;
        }
    };
    match transport.serve(target, observer.clone(), &signals) {
        Ok(stopped) => {
            let why = match stopped.reason {
                StopReason::Signal(s) => format!("signal {s}"),
                StopReason::DeviceGone => "the device was deleted".into(),
            };
            eprintln!("obd: device {}: stopped ({why})", stopped.id);
            Finished::Stopped(finish(stopped))
        }
        Err(e) => {
            eprintln!("obd: {e:#}");
            observer.say(&format!("error {e:#}"));
            Finished::ServerFailed
        }
    }
}

/// A new log file: never through a symbolic link, never an existing file.
fn create_log(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// The starting command: wait for the server's verdict.
fn starter(
    pid: i32,
    pipe: File,
    plan: &Plan,
    transport: &dyn Transport,
    on_live: &OnLive,
) -> anyhow::Result<Finished> {
    let timeout = plan.start_timeout;
    let (tx, msgs) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let msg = match line.split_once(' ') {
                Some(("added", id)) => id.parse().map(Message::Added).ok(),
                Some(("live", json)) => serde_json::from_str(json)
                    .map(|r| Message::Live(Box::new(r)))
                    .ok(),
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
                on_live(&rec)?;
                report_success(plan.result_file.as_deref())?;
                return Ok(Finished::Started);
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
    clean_up_failed_server(pid, id, transport);
    let log = id.map(|n| run_dir().join(format!("{n}.log")));
    match log.filter(|p| p.exists()) {
        Some(p) => Err(anyhow!("{failure} (server log: {})", p.display())),
        None => Err(anyhow!(failure)),
    }
}

/// Makes sure a server that failed to start leaves nothing behind.
fn clean_up_failed_server(pid: i32, id: Option<u32>, transport: &dyn Transport) {
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
        if transport.exists(id) {
            if let Err(e) = transport.remove(id, Duration::from_secs(10)) {
                eprintln!("obd: removing device {id} after the failed start: {e:#}");
            }
        }
    }
}

// ---- detach --------------------------------------------------------------

/// What [`detach`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Detached {
    /// The device id.
    pub id: u32,
    /// The block device.
    pub device: String,
    /// `stopped` (the server shut the device down) or `deleted` (removed
    /// without a server).
    pub how: &'static str,
    /// The device is stopped but still held open (e.g. mounted); the
    /// kernel removes it once released.
    pub still_open: bool,
}

/// Stops device `id`: its server is asked to stop (SIGTERM) and waited for;
/// with `force`, a device without a live server, one obd did not start or
/// one that is mounted is removed too, and a server that does not stop is
/// killed.
///
/// # Errors
/// No such device; a device without a live server and no `force`; a
/// server that does not stop in time.
pub fn detach(
    id: u32,
    force: bool,
    timeout: Duration,
    transport: &dyn Transport,
) -> anyhow::Result<Detached> {
    use anyhow::bail;
    let dir = run_dir();
    check_run_dir(&dir)?;
    let device = transport.device(id);
    let record = Record::load(&dir, id)?;
    let exists = transport.exists(id);
    let how = match record {
        Some(r) if r.server_alive() && !r.server_is_obd() => bail!(
            "the record of {} names pid {}, which is not an obd server: not signalling \
             it (remove {} if it is stale)",
            transport.describe(id),
            r.pid,
            Record::path(&dir, id).display()
        ),
        Some(r) if r.server_alive() => {
            if let Some(at) = transport.mounted_at(id).filter(|_| !force) {
                bail!(
                    "{} is mounted at {at}; unmount it first (or use --force)",
                    transport.device(id)
                );
            }
            stop_server(&r, timeout, force, transport)?
        }
        Some(r) => {
            if !exists {
                Record::remove(&dir, id);
                bail!(
                    "{} is not attached (its server, pid {}, is gone)",
                    transport.describe(id),
                    r.pid
                );
            }
            if !force {
                bail!(
                    "{} has no server (pid {} is gone); `obd detach --force {id}` removes it",
                    transport.describe(id),
                    r.pid
                );
            }
            transport.remove(id, timeout)?;
            Record::remove(&dir, id);
            "deleted"
        }
        None => {
            if !exists {
                bail!("no {}", transport.describe(id));
            }
            if !force {
                bail!(
                    "{} was not attached by obd (no record in {}); --force deletes it anyway",
                    transport.describe(id),
                    dir.display()
                );
            }
            transport.remove(id, timeout)?;
            "deleted"
        }
    };
    // The kernel finishes deleting a stopped device once nothing holds it.
    let still_open = !wait_until(Duration::from_secs(5), || !transport.exists(id));
    Ok(Detached {
        id,
        device,
        how,
        still_open,
    })
}

/// Sends SIGTERM to the server and waits for it to exit.
fn stop_server(
    r: &Record,
    timeout: Duration,
    force: bool,
    transport: &dyn Transport,
) -> anyhow::Result<&'static str> {
    use anyhow::bail;
    use rustix::process::{kill_process, Pid, Signal};
    let pid = Pid::from_raw(r.pid as i32).ok_or_else(|| anyhow!("bad pid {}", r.pid))?;
    kill_process(pid, Signal::TERM)
        .with_context(|| format!("signalling the server of {} (pid {})", r.device, r.pid))?;
    if wait_until(timeout, || !r.server_alive()) {
        return Ok("stopped");
    }
    if !force {
        bail!(
            "the server of {} (pid {}) did not stop within {}s; \
             --force kills it and deletes the device",
            r.device,
            r.pid,
            timeout.as_secs()
        );
    }
    let _ = kill_process(pid, Signal::KILL);
    wait_until(Duration::from_secs(5), || !r.server_alive());
    if transport.exists(r.id) {
        transport.remove(r.id, timeout)?;
    }
    Record::remove(&run_dir(), r.id);
    Ok("deleted")
}
