//! `obd list`: the attached devices.

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;

use super::{cell_lines, human, new_table, print_json, render, GlobalArgs};
use crate::serve::runstate::{device_name, list, run_dir, Entry};

/// Arguments of `obd list`.
#[derive(Debug, clap::Args)]
pub struct Args {}

#[derive(Serialize)]
struct Report {
    devices: Vec<Entry>,
}

/// Runs `obd list`.
///
/// # Errors
/// Write errors.
pub fn run(g: &GlobalArgs, _a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let dir = run_dir();
    crate::serve::runstate::check_run_dir(&dir)?;
    let devices = list(&dir);
    if g.json {
        print_json(out, &Report { devices })?;
        return Ok(ExitCode::SUCCESS);
    }
    if devices.is_empty() {
        if !g.quiet {
            writeln!(out, "no devices attached or served")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = new_table(g);
    t.set_header([
        "id",
        "device",
        "state",
        "pid",
        "size",
        "mode",
        "layers (bottom first)",
        "upper",
    ]);
    for e in &devices {
        t.add_row([
            // The name `obd detach` takes.
            device_name(e.id),
            e.device.clone(),
            e.state.as_str().to_string(),
            e.pid.map(|p| p.to_string()).unwrap_or_default(),
            e.size.map(human).unwrap_or_default(),
            match e.read_only {
                Some(true) => "ro".to_string(),
                Some(false) => "rw".to_string(),
                None => String::new(),
            },
            cell_lines(g, &e.layers),
            e.upper
                .as_ref()
                .map(|u| cell_lines(g, &[u.data.clone(), u.index.clone()]))
                .unwrap_or_default(),
        ]);
    }
    writeln!(out, "{}", render(g, &mut t))?;
    Ok(ExitCode::SUCCESS)
}
