//! `obd map`: where each extent of the virtual disk comes from.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use super::{
    check_chain, human, new_table, parse_size, print_json, render, ChainArgs, GlobalArgs, UpperArgs,
};
use crate::format::lsmt::raw::SECTOR_SIZE;
use crate::stack::{Extent, Source, Stack};

/// Arguments of `obd map`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Offsets are bytes of the virtual disk. The offset in a layer is a byte \
offset in the layer's LSMT file; inside a ZFile or tar-wrapped layer that is the decompressed, \
unwrapped LSMT file, not the blob as stored."
)]
pub struct Args {
    /// Show only the extent that holds this sector (512-byte LBA).
    #[arg(long, value_name = "SECTOR", conflicts_with_all = ["start", "length"])]
    pub lba: Option<u64>,
    /// Map from this byte of the virtual disk (e.g. 1G; default 0).
    #[arg(long, value_name = "OFFSET", value_parser = parse_size)]
    pub start: Option<u64>,
    /// Map this many bytes (e.g. 64M; default: to the end of the disk).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub length: Option<u64>,
    /// Writable top layer.
    #[command(flatten)]
    pub upper: UpperArgs,
    /// Chain check.
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Index memory budget.
    #[command(flatten)]
    pub index: super::IndexArgs,
    /// Registry and cache options (for image references).
    #[command(flatten)]
    pub remote: super::remote::RemoteArgs,
    /// Layer blobs, bottom first, or one image reference
    /// (docker://HOST:PORT/REPO:TAG, or @sha256:DIGEST for the tag; oci:DIR:TAG).
    #[arg(required_unless_present = "upper")]
    pub layers: Vec<PathBuf>,
}

#[derive(Serialize)]
struct MapEntry {
    #[serde(flatten)]
    extent: Extent,
    file: Option<String>,
}

#[derive(Serialize)]
struct MapReport {
    virtual_size: u64,
    layers: Vec<String>,
    extents: Vec<MapEntry>,
}

/// Runs `obd map`.
///
/// # Errors
/// Layers that cannot be opened; `--lba` past the end of the disk.
pub fn run(g: &GlobalArgs, a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let sources = a.remote.sources(&a.layers)?;
    let stack = Stack::open_sources(&sources, a.upper.pair(), a.index.read_options())?;
    check_chain(g, &a.chain, &stack)?;
    let names: Vec<String> = stack
        .layers()
        .iter()
        .map(|l| l.name().to_string())
        .collect();
    let extents = match a.lba {
        Some(lba) => {
            let at = lba
                .checked_mul(SECTOR_SIZE)
                .filter(|&b| b < stack.virtual_size())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--lba {lba} is past the end of the virtual disk ({} sectors)",
                        stack.virtual_size() / SECTOR_SIZE
                    )
                })?;
            // The whole extent holding `at`: walk from the start of its mapping run.
            stack
                .extents(0, stack.virtual_size())
                .into_iter()
                .filter(|e| e.start <= at && at < e.start + e.length)
                .collect()
        }
        None => {
            let size = stack.virtual_size();
            let start = a.start.unwrap_or(0);
            if start > size {
                anyhow::bail!("--start {start} is past the end of the virtual disk ({size} bytes)");
            }
            let length = a.length.unwrap_or(size - start).min(size - start);
            stack.extents(start, length)
        }
    };
    let entries: Vec<MapEntry> = extents
        .into_iter()
        .map(|e| {
            let file = match e.source {
                Source::Hole => None,
                Source::Zero { layer } | Source::Data { layer, .. } => {
                    Some(names[layer as usize].clone())
                }
            };
            MapEntry { extent: e, file }
        })
        .collect();
    if g.json {
        print_json(
            out,
            &MapReport {
                virtual_size: stack.virtual_size(),
                layers: names,
                extents: entries,
            },
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = new_table(g);
    t.set_header([
        "start",
        "length",
        "kind",
        "layer",
        "offset in layer",
        "file",
    ]);
    for m in &entries {
        let e = &m.extent;
        let (kind, layer, off) = match e.source {
            Source::Hole => ("hole", String::new(), String::new()),
            Source::Zero { layer } => ("zero", layer.to_string(), String::new()),
            Source::Data { layer, offset } => ("data", layer.to_string(), format!("{offset:#x}")),
        };
        t.add_row([
            format!("{:#x}", e.start),
            if g.plain() {
                e.length.to_string()
            } else {
                human(e.length)
            },
            kind.to_string(),
            layer,
            off,
            m.file.clone().unwrap_or_default(),
        ]);
    }
    writeln!(out, "{}", render(g, &mut t))?;
    Ok(ExitCode::SUCCESS)
}
