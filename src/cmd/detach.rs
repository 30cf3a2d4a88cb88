//! `obd detach`: stop an attached device, or remove one whose server died.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;

use super::{print_json, GlobalArgs};
use crate::ublk::runstate::{device_exists, parse_device, run_dir, Record};
use crate::ublk::{self as ublk};

/// Arguments of `obd detach`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The device: its id (`0`) or path (`/dev/ublkb0`).
    #[arg(value_name = "ID|DEVICE")]
    pub device: String,
    /// Also remove a device whose server is gone (killed), one obd did not
    /// attach, or one that is mounted; kill a server that does not stop.
    #[arg(short, long)]
    pub force: bool,
    /// How long to wait for the server to stop.
    #[arg(long, default_value_t = 30, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

#[derive(Serialize)]
struct Report {
    id: u32,
    device: String,
    /// `stopped` (the server shut the device down) or `deleted` (removed
    /// without a server).
    how: &'static str,
    /// The device is stopped but still held open (e.g. mounted); the
    /// kernel removes it once released.
    still_open: bool,
}

/// Runs `obd detach`.
///
/// # Errors
/// No such device; a device without a live server and no `--force`; a
/// server that does not stop in time.
pub fn run(g: &GlobalArgs, a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let id = parse_device(&a.device)?;
    let dir = run_dir();
    let timeout = Duration::from_secs(a.timeout);
    let record = Record::load(&dir, id)?;
    let exists = device_exists(id);
    let how = match record {
        Some(r) if r.server_alive() => {
            if let Some(at) = mounted_at(id).filter(|_| !a.force) {
                bail!("/dev/ublkb{id} is mounted at {at}; unmount it first (or use --force)");
            }
            stop_server(&r, timeout, a.force)?
        }
        Some(r) => {
            if !exists {
                Record::remove(&dir, id);
                bail!(
                    "ublk device {id} is not attached (its server, pid {}, is gone)",
                    r.pid
                );
            }
            if !a.force {
                bail!(
                    "ublk device {id} has no server (pid {} is gone); \
                     `obd detach --force {id}` removes it",
                    r.pid
                );
            }
            delete_device(id, timeout)?;
            Record::remove(&dir, id);
            "deleted"
        }
        None => {
            if !exists {
                bail!("no ublk device {id}");
            }
            if !a.force {
                bail!(
                    "ublk device {id} was not attached by obd (no record in {}); \
                     --force deletes it anyway",
                    dir.display()
                );
            }
            delete_device(id, timeout)?;
            "deleted"
        }
    };
    // The kernel finishes deleting a stopped device once nothing holds it.
    let still_open = !wait_until(Duration::from_secs(5), || !device_exists(id));
    if still_open && !g.quiet {
        eprintln!("obd: /dev/ublkb{id} is stopped but still held open (mounted?); it goes away when released");
    }
    if g.json {
        print_json(
            out,
            &Report {
                id,
                device: format!("/dev/ublkb{id}"),
                how,
                still_open,
            },
        )?;
    } else if !g.quiet {
        writeln!(out, "/dev/ublkb{id}: {how}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends SIGTERM to the server and waits for it to exit.
fn stop_server(r: &Record, timeout: Duration, force: bool) -> anyhow::Result<&'static str> {
    use rustix::process::{kill_process, Pid, Signal};
    let pid = Pid::from_raw(r.pid as i32).ok_or_else(|| anyhow!("bad pid {}", r.pid))?;
    kill_process(pid, Signal::TERM).with_context(|| {
        format!(
            "signalling the server of /dev/ublkb{} (pid {})",
            r.id, r.pid
        )
    })?;
    if wait_until(timeout, || !r.server_alive()) {
        return Ok("stopped");
    }
    if !force {
        bail!(
            "the server of /dev/ublkb{} (pid {}) did not stop within {}s; \
             --force kills it and deletes the device",
            r.id,
            r.pid,
            timeout.as_secs()
        );
    }
    let _ = kill_process(pid, Signal::KILL);
    wait_until(Duration::from_secs(5), || !r.server_alive());
    if device_exists(r.id) {
        delete_device(r.id, timeout)?;
    }
    Record::remove(&run_dir(), r.id);
    Ok("deleted")
}

/// Deletes ublk device `id` from outside its (dead) server and waits up to
/// `timeout` for it to go.
///
/// # Errors
/// No ublk driver; the delete command failing.
pub fn delete_device(id: u32, timeout: Duration) -> anyhow::Result<()> {
    ublk::preflight()?;
    let ctrl = libublk::ctrl::UblkCtrl::new_simple(id as i32)
        .map_err(|e| anyhow!("opening ublk device {id}: {}", ublk::ublk_error(&e)))?;
    // The asynchronous delete returns at once even when the device is
    // still held open; waiting is ours to bound.
    ctrl.del_dev_async()
        .map_err(|e| anyhow!("deleting ublk device {id}: {}", ublk::ublk_error(&e)))?;
    drop(ctrl);
    wait_until(timeout, || !device_exists(id));
    Ok(())
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where `/dev/ublkb<id>` is mounted, if anywhere (this mount namespace).
fn mounted_at(id: u32) -> Option<String> {
    let devno = std::fs::read_to_string(format!("/sys/class/block/ublkb{id}/dev")).ok()?;
    let devno = devno.trim();
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(2) == Some(&devno)).then(|| f.get(4).unwrap_or(&"?").to_string())
    })
}
