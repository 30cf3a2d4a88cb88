//! `obd stats`: the request counters of attached devices and exports.

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;

use super::{human, new_table, print_json, render, GlobalArgs};
use crate::serve::runstate::{device_name, list, parse_device, run_dir};
use crate::serve::stats::{self, Snapshot};

/// Arguments of `obd stats`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// One device (ID, /dev/ublkbN or nbdN); default: all.
    pub device: Option<String>,
}

#[derive(Serialize)]
struct Row {
    device: String,
    id: u32,
    /// Null when the server has not written its counters yet.
    stats: Option<Snapshot>,
}

#[derive(Serialize)]
struct Report {
    devices: Vec<Row>,
}

/// Runs `obd stats`.
///
/// # Errors
/// A device that is not attached; write errors.
pub fn run(g: &GlobalArgs, a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let dir = run_dir();
    crate::serve::runstate::check_run_dir(&dir)?;
    let want = a.device.as_deref().map(parse_device).transpose()?;
    let rows: Vec<Row> = list(&dir)
        .into_iter()
        .filter(|e| want.is_none_or(|w| w == e.id))
        .map(|e| Row {
            stats: stats::read(&dir, e.id),
            device: e.device,
            id: e.id,
        })
        .collect();
    if let (Some(d), true) = (&a.device, rows.is_empty()) {
        anyhow::bail!("{d}: no such device attached or served");
    }
    if g.json {
        print_json(out, &Report { devices: rows })?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        if !g.quiet {
            writeln!(out, "no devices attached or served")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = new_table(g);
    t.set_header([
        "id",
        "device",
        "reads",
        "read",
        "writes",
        "written",
        "discards",
        "flushes",
        "errors",
        "p50",
        "p99",
        "cache hits/inserts",
        "fetched",
    ]);
    for r in &rows {
        let s = r.stats.clone().unwrap_or_default();
        t.add_row([
            device_name(r.id),
            r.device.clone(),
            s.reads.to_string(),
            human(s.read_bytes),
            s.writes.to_string(),
            human(s.write_bytes),
            s.discards.to_string(),
            s.flushes.to_string(),
            s.errors.to_string(),
            format!("{} µs", s.latency_p50_us),
            format!("{} µs", s.latency_p99_us),
            format!("{}/{}", s.cache_hits, s.cache_inserts),
            human(s.remote_bytes),
        ]);
    }
    writeln!(out, "{}", render(g, &mut t))?;
    Ok(ExitCode::SUCCESS)
}
