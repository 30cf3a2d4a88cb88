//! `obd demo`: a guided tour on a sample stack.

use std::io::Write;
use std::process::ExitCode;

use super::GlobalArgs;

/// Arguments of `obd demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the sample files in this directory instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<std::path::PathBuf>,
}

/// Runs `obd demo`.
///
/// # Errors
/// Failures writing the sample files.
pub fn run(_g: &GlobalArgs, _a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    writeln!(out, "demo: not built yet")?;
    Ok(ExitCode::SUCCESS)
}
