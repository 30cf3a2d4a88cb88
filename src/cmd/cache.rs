//! `obd cache list|verify|prune`: the local cache of registry blobs.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::push::short_digest;
use super::{human, new_table, parse_size, print_json, render, GlobalArgs};
use crate::source::cache::{self, CacheDir};

/// `obd cache` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the cached blobs: size, bytes present, verified, in use, idle time.
    List(Args),
    /// Check every cached chunk's CRC and the digest of complete blobs;
    /// damaged chunks are dropped (fetched again when read). Exit 1 on damage.
    Verify(Args),
    /// Remove blobs nobody uses, least recently used first, down to --keep.
    Prune(PruneArgs),
}

/// The cache directory.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cache (default: $XDG_CACHE_HOME/obd, ~/.cache/obd, /var/cache/obd for root).
    #[arg(
        long,
        value_name = "DIR",
        env = "OBD_CACHE_DIR",
        hide_env_values = true
    )]
    pub cache_dir: Option<PathBuf>,
}

impl Args {
    /// The cache (created if missing: a missing cache is an empty one).
    fn open(&self) -> anyhow::Result<CacheDir> {
        let root = self.cache_dir.clone().unwrap_or_else(cache::default_dir);
        Ok(CacheDir::open(&root, None)?)
    }
}

/// Arguments of `obd cache prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// The cache.
    #[command(flatten)]
    pub cache: Args,
    /// Keep this much (e.g. 5G); default 0: every blob not in use goes.
    #[arg(long, value_name = "SIZE", default_value = "0", value_parser = parse_size)]
    pub keep: u64,
}

/// Runs `obd cache ...`.
///
/// # Errors
/// The cache cannot be read.
pub fn run(g: &GlobalArgs, c: Command, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match c {
        Command::List(a) => {
            let cache = a.open()?;
            let entries = cache.list()?;
            if g.json {
                print_json(
                    out,
                    &serde_json::json!({ "dir": cache.root().display().to_string(), "blobs": entries }),
                )?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = new_table(g);
            t.set_header(["digest", "size", "cached", "verified", "in use", "idle"]);
            for e in &entries {
                t.add_row([
                    short_digest(g, &e.digest),
                    human(e.size),
                    human(e.cached_bytes),
                    yes(e.verified),
                    yes(e.in_use),
                    format!("{} s", e.idle_seconds),
                ]);
            }
            if entries.is_empty() {
                if !g.quiet {
                    writeln!(out, "{}: no cached blobs", cache.root().display())?;
                }
            } else {
                writeln!(out, "{}", render(g, &mut t))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(a) => {
            let cache = a.open()?;
            let results = cache.verify()?;
            let damaged: usize = results.iter().map(|r| r.1).sum();
            if g.json {
                let blobs: Vec<serde_json::Value> = results
                    .iter()
                    .map(|(e, d, ok)| {
                        serde_json::json!({
                            "digest": e.digest,
                            "size": e.size,
                            "cached_bytes": e.cached_bytes,
                            "damaged_chunks": d,
                            "verified": ok,
                        })
                    })
                    .collect();
                print_json(
                    out,
                    &serde_json::json!({ "blobs": blobs, "damaged_chunks": damaged, "ok": damaged == 0 }),
                )?;
            } else {
                for (e, d, ok) in &results {
                    let state = if *d > 0 {
                        format!("{d} damaged chunks dropped")
                    } else if *ok {
                        "complete, digest matches".to_string()
                    } else {
                        format!(
                            "{} of {} cached, chunks intact",
                            human(e.cached_bytes),
                            human(e.size)
                        )
                    };
                    writeln!(out, "{}  {state}", e.digest)?;
                }
                if !g.quiet {
                    writeln!(
                        out,
                        "{} blobs checked, {damaged} damaged chunks",
                        results.len()
                    )?;
                }
            }
            Ok(if damaged == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Prune(a) => {
            let cache = a.cache.open()?;
            let (removed, freed) = cache.prune(a.keep)?;
            if g.json {
                print_json(
                    out,
                    &serde_json::json!({ "removed": removed, "freed_bytes": freed }),
                )?;
            } else if !g.quiet {
                writeln!(
                    out,
                    "removed {} blobs, freed {}",
                    removed.len(),
                    human(freed)
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}
