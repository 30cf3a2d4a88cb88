//! `obd detach`: stop an attached device, or remove one whose server died.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use super::{print_json, GlobalArgs};
use crate::serve::daemon;
use crate::serve::nbd::Nbd;
use crate::serve::runstate::{parse_device, NBD_ID_BASE};
use crate::serve::ublk::Ublk;

/// Arguments of `obd detach`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The device: its id (`0`) or path (`/dev/ublkb0`), or an NBD export (`nbd0`).
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

/// Runs `obd detach`.
///
/// # Errors
/// No such device; a device without a live server and no `--force`; a
/// server that does not stop in time.
pub fn run(g: &GlobalArgs, a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let id = parse_device(&a.device)?;
    let nbd = Nbd {
        socket: None,
        listen: None,
        name: String::new(),
        workers: 1,
        tls: None,
    };
    let transport: &dyn daemon::Transport = if id >= NBD_ID_BASE {
        &nbd
    } else {
        &Ublk::default()
    };
    let r = daemon::detach(id, a.force, Duration::from_secs(a.timeout), transport)?;
    if r.still_open && !g.quiet {
        eprintln!(
            "obd: {} is stopped but still held open (mounted?); it goes away when released",
            r.device
        );
    }
    if g.json {
        print_json(out, &r)?;
    } else if !g.quiet {
        writeln!(out, "{}: {}", r.device, r.how)?;
    }
    Ok(ExitCode::SUCCESS)
}
