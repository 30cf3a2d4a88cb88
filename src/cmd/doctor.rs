//! `obd doctor`: whether this host can attach ublk devices, and what to do
//! if not.

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;

use super::{new_table, print_json, render, GlobalArgs};
use crate::serve::ublk::doctor::{self, Check, Status};

/// Arguments of `obd doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {}

#[derive(Serialize)]
struct Report {
    checks: Vec<Check>,
    ok: bool,
}

/// Runs `obd doctor`: exit 0 when nothing failed, 1 otherwise.
///
/// # Errors
/// Write errors.
pub fn run(g: &GlobalArgs, _a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let checks = doctor::run();
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    let code = if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if g.json {
        print_json(out, &Report { checks, ok })?;
        return Ok(code);
    }
    let mut t = new_table(g);
    t.set_header(["check", "status", "detail"]);
    for c in &checks {
        let status = match c.status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        };
        t.add_row([c.check.to_string(), status.to_string(), c.detail.clone()]);
    }
    writeln!(out, "{}", render(g, &mut t))?;
    Ok(code)
}
