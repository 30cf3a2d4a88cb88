//! `obd create`: an empty writable layer, as `overlaybd-create`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{human, parse_size, print_json, GlobalArgs};
use crate::format::lsmt::writable::{self, CreateOptions};
use crate::format::uuid::Uuid;

/// Arguments of `obd create`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Virtual disk size (e.g. 1G, 64M; a multiple of 512; 0 = inherit from the lower layers).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub size: u64,
    /// Sparse layer: data written in place, index file left empty.
    #[arg(short, long)]
    pub sparse: bool,
    /// UUID of the layer (default: a random version-4 UUID).
    #[arg(long, value_name = "UUID")]
    pub uuid: Option<String>,
    /// Parent UUID (default: the null UUID).
    #[arg(short = 'p', long, value_name = "UUID")]
    pub parent_uuid: Option<String>,
    /// Replace DATA and INDEX if they exist.
    #[arg(short, long)]
    pub force: bool,
    /// Data file to create.
    pub data: PathBuf,
    /// Index file to create.
    pub index: PathBuf,
}

/// Runs `obd create`.
///
/// # Errors
/// Bad arguments, existing files without `--force`, I/O errors.
pub fn run(g: &GlobalArgs, a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let opts = CreateOptions {
        virtual_size: a.size,
        sparse: a.sparse,
        uuid: Uuid::parse_opt("--uuid", a.uuid.as_deref())?,
        parent_uuid: Uuid::parse_opt("--parent-uuid", a.parent_uuid.as_deref())?,
        force: a.force,
    };
    let r = writable::create(&a.data, &a.index, &opts)?;
    if g.json {
        print_json(out, &r)?;
    } else if !g.quiet {
        writeln!(
            out,
            "{} + {}: empty {}writable layer of {}, uuid {}, parent {}",
            r.data,
            r.index,
            if r.sparse { "sparse " } else { "" },
            human(r.virtual_size),
            r.uuid,
            r.parent_uuid
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
