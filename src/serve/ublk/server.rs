//! The ublk server: control device, queue threads, shutdown.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use libublk::ctrl::{UblkCtrl, UblkCtrlBuilder};
use libublk::io::{UblkDev, UblkIOCtx, UblkQueue};
use libublk::sys::{UBLK_ATTR_READ_ONLY, UBLK_ATTR_VOLATILE_CACHE, UBLK_PARAM_TYPE_DISCARD};
use libublk::{BufDesc, BufDescList, UblkError, UblkFlags, UblkIORes};

use super::handler::{handle, Request};
use super::{Target, SECTOR_SIZE};
use crate::serve::daemon::{Live, Observer, StopReason, Stopped};
use crate::serve::BlockedSignals;
#[cfg(doc)]
use crate::serve::STOP_SIGNALS;

/// The ublk driver's control node.
pub const CONTROL_PATH: &str = "/dev/ublk-control";

/// How the device is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// Hardware queues, one server thread each.
    pub queues: u16,
    /// Requests in flight per queue.
    pub depth: u16,
    /// Largest request in bytes (the I/O buffer of each tag).
    pub io_buf_bytes: u32,
    /// How long creating and starting the device may take.
    pub start_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            queues: 1,
            depth: 64,
            // One request per 1 MiB read: under the per-request cost of a
            // userspace round trip, bigger requests pay.
            io_buf_bytes: 1 << 20,
            start_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a device could not be served.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// The ublk driver is not available.
    NoDriver,
    /// `/dev/ublk-control` exists but cannot be opened.
    Control(std::io::Error),
    /// A libublk step failed.
    Ublk {
        /// What was being done.
        step: &'static str,
        /// The failure.
        source: UblkError,
    },
    /// Unusable options or target.
    Invalid(String),
    /// Observer failure.
    Observer(anyhow::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::NoDriver => write!(
                f,
                "{CONTROL_PATH} does not exist: the ublk driver is not loaded; load it with \
                 `modprobe ublk_drv` (needs Linux 6.0 or later built with CONFIG_BLK_DEV_UBLK)"
            ),
            ServeError::Control(e) if e.kind() == std::io::ErrorKind::PermissionDenied => write!(
                f,
                "{CONTROL_PATH}: {e} (creating ublk devices needs root, or CAP_SYS_ADMIN)"
            ),
            ServeError::Control(e) => write!(f, "{CONTROL_PATH}: {e}"),
            ServeError::Ublk { step, source } => write!(f, "ublk: {step}: {}", ublk_error(source)),
            ServeError::Invalid(s) => write!(f, "{s}"),
            ServeError::Observer(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// libublk's errors as people read them (its own `Display` drops the errno).
pub fn ublk_error(e: &UblkError) -> String {
    match e {
        UblkError::OtherError(n) | UblkError::UringIOError(n) => {
            std::io::Error::from_raw_os_error(n.abs()).to_string()
        }
        UblkError::IOError(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// Checks that the ublk driver is there and usable.
///
/// # Errors
/// [`ServeError::NoDriver`] when `/dev/ublk-control` is missing,
/// [`ServeError::Control`] when it cannot be opened.
pub fn preflight() -> Result<(), ServeError> {
    let p = Path::new(CONTROL_PATH);
    if !p.exists() {
        return Err(ServeError::NoDriver);
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .map(drop)
        .map_err(ServeError::Control)
}

/// Serves `target` as a new ublk device until one of the `signals` arrives
/// or the device is deleted; then stops and deletes the device and flushes
/// the target.
///
/// The caller blocks the stop signals ([`STOP_SIGNALS`]) with
/// [`BlockedSignals::block`] before it starts any thread — opening a stack
/// may start the thread pool that decompresses large reads — so that every
/// thread of the process has them blocked and they wait for this function's
/// `sigtimedwait` (a thread without them blocked would take the default
/// action: the process would die with its device left behind).
///
/// # Errors
/// Everything that keeps the device from going live. Failures after that
/// are in [`Stopped`].
pub fn serve(
    target: Arc<dyn Target>,
    opts: &Options,
    observer: Arc<dyn Observer>,
    signals: &Arc<BlockedSignals>,
) -> Result<Stopped, ServeError> {
    preflight()?;
    let size = target.size() / SECTOR_SIZE * SECTOR_SIZE;
    if size == 0 {
        return Err(ServeError::Invalid(
            "the virtual disk is smaller than one sector".into(),
        ));
    }
    if opts.queues == 0 || opts.depth == 0 {
        return Err(ServeError::Invalid(
            "--queues and --depth must be at least 1".into(),
        ));
    }
    let read_only = target.read_only();

    let added_id = Arc::new(Mutex::new(None::<u32>));
    let (started_tx, started_rx) = mpsc::channel::<()>();
    spawn_watchdog(
        opts.start_timeout,
        started_rx,
        added_id.clone(),
        observer.clone(),
    );

    let ctrl = UblkCtrlBuilder::default()
        .name("obd")
        .id(-1)
        .nr_queues(opts.queues)
        .depth(opts.depth)
        .io_buf_bytes(opts.io_buf_bytes)
        // Deleting must not wait for a mounted device to be released, or a
        // SIGTERM'd server would hang until the filesystem is unmounted.
        .dev_flags(UblkFlags::UBLK_DEV_F_ADD_DEV | UblkFlags::UBLK_DEV_F_DEL_DEV_ASYNC)
        .build()
        .map_err(|source| ServeError::Ublk {
            step: "adding the device",
            source,
        })?;
    let info = ctrl.dev_info();
    let id = info.dev_id;
    if let Ok(mut g) = added_id.lock() {
        *g = Some(id);
    }
    observer.added(id);

    let live = Live {
        id,
        device: ctrl.get_bdev_path(),
        char_device: ctrl.get_cdev_path(),
        size,
        read_only,
        queues: info.nr_hw_queues,
        depth: info.queue_depth,
    };

    let tgt_init = move |dev: &mut UblkDev| {
        dev.set_default_params(size);
        let p = &mut dev.tgt.params;
        if read_only {
            p.basic.attrs = UBLK_ATTR_READ_ONLY;
        } else {
            p.basic.attrs = UBLK_ATTR_VOLATILE_CACHE;
            p.types |= UBLK_PARAM_TYPE_DISCARD;
            p.discard.discard_granularity = 4096;
            p.discard.max_discard_sectors = (u64::from(u32::MAX) / SECTOR_SIZE) as u32;
            p.discard.max_write_zeroes_sectors = (u64::from(u32::MAX) / SECTOR_SIZE) as u32;
            p.discard.max_discard_segments = 1;
        }
        Ok(())
    };

    // The driver may give fewer queues than asked for (at most one per CPU).
    let queues_alive = Arc::new(AtomicUsize::new(info.nr_hw_queues as usize));
    let q_target = target.clone();
    let q_alive = queues_alive.clone();
    let queue_fn = move |qid: u16, dev: &UblkDev| {
        serve_queue(qid, dev, q_target.as_ref());
        q_alive.fetch_sub(1, Ordering::SeqCst);
    };

    let outcome = Arc::new(Mutex::new(None::<Result<StopReason, ServeError>>));
    let d_outcome = outcome.clone();
    let d_observer = observer.clone();
    let d_live = live.clone();
    let d_signals = signals.clone();
    let device_fn = move |ctrl: &UblkCtrl| {
        let _ = started_tx.send(());
        let r = run_device(
            ctrl,
            &d_live,
            d_observer.as_ref(),
            &d_signals,
            &queues_alive,
        );
        if let Ok(mut g) = d_outcome.lock() {
            *g = Some(r);
        }
    };

    let run = ctrl.run_target(tgt_init, queue_fn, device_fn);
    let reason = match outcome.lock().ok().and_then(|mut g| g.take()) {
        Some(r) => r,
        None => Err(match run {
            Err(source) => ServeError::Ublk {
                step: "starting the device",
                source,
            },
            Ok(_) => ServeError::Invalid("the ublk device stopped before it was live".into()),
        }),
    };
    let flush = if read_only { Ok(()) } else { target.flush() };
    // Dropping the control deletes the device (asynchronously).
    drop(ctrl);
    // Signals that came in during the teardown are answered by it.
    while signals.wait(Duration::ZERO).is_some() {}
    let reason = reason?;
    Ok(Stopped { id, reason, flush })
}

/// The device thread: announce, then wait for a stop signal or for the
/// queues to die, then stop the device.
fn run_device(
    ctrl: &UblkCtrl,
    live: &Live,
    observer: &dyn Observer,
    signals: &BlockedSignals,
    queues_alive: &AtomicUsize,
) -> Result<StopReason, ServeError> {
    // START_DEV returns once the disk is added; devtmpfs creates the node
    // moments later.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !Path::new(&live.device).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let reason = match observer.live(live) {
        Err(e) => {
            let _ = ctrl.kill_dev();
            return Err(ServeError::Observer(e));
        }
        Ok(()) => loop {
            if let Some(sig) = signals.wait(Duration::from_millis(250)) {
                break StopReason::Signal(sig);
            }
            if queues_alive.load(Ordering::SeqCst) == 0 {
                break StopReason::DeviceGone;
            }
        },
    };
    // STOP_DEV: in-flight requests finish, the queues unwind and
    // run_target joins them.
    if let Err(e) = ctrl.kill_dev() {
        if reason != StopReason::DeviceGone {
            eprintln!("obd: ublkb{}: stopping: {}", live.id, ublk_error(&e));
        }
    }
    Ok(reason)
}

fn spawn_watchdog(
    timeout: Duration,
    started: mpsc::Receiver<()>,
    id: Arc<Mutex<Option<u32>>>,
    observer: Arc<dyn Observer>,
) {
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = started.recv_timeout(timeout) {
            let id = id.lock().ok().and_then(|g| *g);
            observer.timed_out(id, timeout);
            std::process::exit(2);
        }
    });
}

/// One queue thread: fetch requests, serve them, until the queue is torn
/// down.
fn serve_queue(qid: u16, dev: &UblkDev, target: &dyn Target) {
    let dev_id = dev.dev_info.dev_id;
    let mut bufs = dev.alloc_queue_io_bufs();
    let queue = match UblkQueue::new(qid, dev)
        .and_then(|q| q.submit_fetch_commands_unified(BufDescList::Slices(Some(&bufs))))
    {
        Ok(q) => q,
        Err(e) => {
            eprintln!(
                "obd: ublkb{dev_id}: setting up queue {qid}: {}",
                ublk_error(&e)
            );
            return;
        }
    };
    // Per tag: how many leading bytes of its buffer are known to be zero
    // (fresh buffers are not).
    let mut zero_prefix = vec![0usize; bufs.len()];
    queue.wait_and_handle_io(move |q: &UblkQueue, tag: u16, _: &UblkIOCtx| {
        let iod = q.get_iod(tag);
        let req = Request::from_desc(iod.op_flags, iod.start_sector, iod.nr_sectors);
        let (Some(buf), Some(zp)) = (
            bufs.get_mut(tag as usize),
            zero_prefix.get_mut(tag as usize),
        ) else {
            return;
        };
        let res = handle(target, dev_id, req, buf.as_mut_slice(), zp);
        let done = q.complete_io_cmd_unified(
            tag,
            BufDesc::Slice(buf.as_slice()),
            Ok(UblkIORes::Result(res)),
        );
        if let Err(e) = done {
            eprintln!(
                "obd: ublkb{dev_id}: completing tag {tag} of queue {qid}: {}",
                ublk_error(&e)
            );
        }
    });
}
