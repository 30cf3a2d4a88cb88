//! `obd verify`: integrity checks for CI pipelines.
//!
//! Exit codes: 0 every blob is good, 1 a problem was found, 2 verify could
//! not run (usage, unreadable path, I/O error).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use comfy_table::Cell;

use super::{count, human, new_table, print_json, render, GlobalArgs, Progress, UpperArgs};
use crate::verify::{self, FileReport, Job, Options, Report, Sha256Digest, Status};

/// Arguments of `obd verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The SHA-256 the blob must have, as a registry digest (the whole file
    /// as stored); checked in the same pass as everything else. One file only.
    #[arg(long, value_name = "sha256:HEX")]
    pub digest: Option<Sha256Digest>,
    /// Also check the files as one stack (bottom first): parent-uuid chain,
    /// virtual sizes, each layer valid.
    #[arg(long)]
    pub stack: bool,
    /// Writable layer (data and index files) to verify; the top of the stack
    /// with --stack.
    #[command(flatten)]
    pub upper: UpperArgs,
    /// Pass when the paths hold no layer blob at all (by default that fails:
    /// a CI gate over a directory that was never filled must not pass).
    #[arg(long)]
    pub allow_empty: bool,
    /// Worker threads, 1 to 1024 (default: one per core).
    #[arg(long, value_name = "N", value_parser = super::parse_threads)]
    pub threads: Option<usize>,
    /// Registry and cache options (for image references).
    #[command(flatten)]
    pub remote: super::remote::RemoteArgs,
    /// Layer blobs or directories (walked; files that are not layers are
    /// listed as skipped), or one image reference (docker://…, oci:DIR:TAG):
    /// its layers checked as a stack, each against its manifest digest
    /// (registry layers are fetched whole into the cache first).
    #[arg(required_unless_present = "upper", value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// Runs `obd verify`. Under `--json` an error that keeps verify from
/// running is a JSON document too (`{"error": "..."}`), so that a CI step
/// piping the output into `jq` sees it.
///
/// # Errors
/// Usage errors and paths that cannot be read (exit 2).
pub fn run(g: &GlobalArgs, a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let r = run_checks(g, a, out);
    if let (true, Err(e)) = (g.json, &r) {
        print_json(
            out,
            &serde_json::json!({ "ok": false, "error": format!("{e:#}") }),
        )?;
    }
    r
}

/// An image reference given to verify: its layers as files (registry
/// layers fetched whole into the cache), each with its manifest digest.
fn image_files(
    g: &GlobalArgs,
    a: &mut Args,
) -> anyhow::Result<std::collections::HashMap<PathBuf, Sha256Digest>> {
    let mut digests = std::collections::HashMap::new();
    let Some(r) = super::remote::image_ref(&a.paths)? else {
        return Ok(digests);
    };
    if a.digest.is_some() {
        bail!("an image names each layer's digest; --digest is for one blob file");
    }
    let img = a.remote.resolve(&r)?;
    let mut paths = Vec::with_capacity(img.layers.len());
    for (l, b) in img.layers.iter().zip(&img.blobs) {
        let p = match l {
            crate::source::LayerSource::File(p) => p.clone(),
            crate::source::LayerSource::Remote(rl) => {
                let bar = Progress::bytes(g, b.size, "fetch");
                rl.fetch_all(&|n| bar.set(n))?;
                bar.finish();
                rl.ctx.cached(&rl.blob)?.data_path().to_path_buf()
            }
        };
        digests.insert(p.clone(), Sha256Digest(*b.digest.bytes()));
        paths.push(p);
    }
    a.paths = paths;
    a.stack = true;
    Ok(digests)
}

fn run_checks(g: &GlobalArgs, mut a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let digests = image_files(g, &mut a)?;
    if a.digest.is_some() && (a.paths.len() != 1 || a.upper.upper.is_some() || a.stack) {
        bail!("--digest checks one blob: give exactly one file");
    }
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = a.threads {
        pool = pool.num_threads(crate::exec::bounded_threads(n));
    }
    let pool = pool.build().context("starting worker threads")?;
    for p in &a.paths {
        let m = std::fs::metadata(p).map_err(|e| crate::Error::file(p, "open", e))?;
        if !m.is_dir() {
            std::fs::File::open(p).map_err(|e| crate::Error::file(p, "open", e))?;
        }
    }
    let mut jobs = if a.stack {
        for p in &a.paths {
            if p.is_dir() {
                bail!(
                    "{}: --stack takes layer files, not directories",
                    p.display()
                );
            }
        }
        a.paths.iter().cloned().map(Job::Blob).collect()
    } else {
        pool.install(|| verify::plan(&a.paths))?
    };
    if a.digest.is_some() && !matches!(jobs.as_slice(), [Job::Blob(_)]) {
        bail!(
            "{}: --digest checks one blob file, not a directory or a writable pair",
            a.paths[0].display()
        );
    }
    if let Some((d, i)) = a.upper.pair() {
        for p in [d, i] {
            std::fs::File::open(p).map_err(|e| crate::Error::file(p, "open", e))?;
        }
        jobs.push(Job::Pair {
            data: d.to_path_buf(),
            index: i.to_path_buf(),
        });
    }
    let total: u64 = jobs
        .iter()
        .map(|j| match j {
            Job::Blob(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            Job::Pair { data, index } => [data, index]
                .iter()
                .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
                .sum(),
            _ => 0,
        })
        .sum();
    let opts = Options {
        digest: a.digest,
        compute_sha256: a.digest.is_some(),
        digests,
        ..Options::default()
    };
    let progress = Progress::bytes(g, total, "verify");
    let files = pool.install(|| verify::run_jobs(&jobs, &opts, &progress.callback()));
    progress.finish();
    let stack = a
        .stack
        .then(|| verify::verify_stack(&files, a.upper.upper.is_some(), &a.paths, a.upper.pair()));
    let mut report = Report::new(files, stack, started);
    if !report.found_layers() && !a.allow_empty {
        report.no_layers_found();
        let paths: Vec<String> = a.paths.iter().map(|p| p.display().to_string()).collect();
        eprintln!(
            "obd: {}: no layer blobs found (--allow-empty accepts that)",
            paths.join(", ")
        );
    }
    if g.json {
        print_json(out, &report)?;
    } else {
        print_report(g, out, &report, &a.paths)?;
    }
    Ok(ExitCode::from(report.exit_code()))
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Ok => "OK",
        Status::Problems => "FAIL",
        Status::Skipped => "skipped",
        Status::Error => "ERROR",
    }
}

/// A file as the table shows it: relative to the directory argument it was
/// found in (the full path where it was named itself).
fn short_name(f: &FileReport, roots: &[PathBuf]) -> String {
    let rel = |p: &str| -> String {
        let path = std::path::Path::new(p);
        roots
            .iter()
            .filter(|r| r.is_dir())
            .find_map(|r| path.strip_prefix(r).ok())
            .filter(|rel| !rel.as_os_str().is_empty())
            .map_or_else(|| p.to_string(), |rel| rel.display().to_string())
    };
    match &f.index_path {
        Some(i) => format!("{} + {}", rel(&f.path), rel(i)),
        None => rel(&f.path),
    }
}

fn name(f: &FileReport) -> String {
    match &f.index_path {
        Some(i) => format!("{} + {i}", f.path),
        None => f.path.clone(),
    }
}

fn print_report(
    g: &GlobalArgs,
    out: &mut dyn Write,
    r: &Report,
    roots: &[PathBuf],
) -> anyhow::Result<()> {
    let quiet = g.quiet;
    let mut t = new_table(g);
    t.set_header(["result", "file", "kind", "containers", "size", "problems"]);
    for f in &r.files {
        t.add_row(vec![
            Cell::new(status_word(f.status)),
            Cell::new(short_name(f, roots)),
            Cell::new(f.kind.unwrap_or("")),
            Cell::new(f.containers.join(" > ")),
            Cell::new(human(f.size)),
            Cell::new(match f.status {
                Status::Skipped | Status::Error => f.reason.clone().unwrap_or_default(),
                _ => f.problem_count().to_string(),
            }),
        ]);
    }
    writeln!(out, "{}", render(g, &mut t))?;
    for f in &r.files {
        if f.status == Status::Problems || f.status == Status::Error {
            writeln!(out, "\n{} {}:", status_word(f.status), name(f))?;
            for p in &f.problems {
                if f.index_path.is_some() && p.file != f.path {
                    writeln!(out, "  {}: {p}", p.file)?;
                } else {
                    writeln!(out, "  {p}")?;
                }
            }
            if f.problems_omitted > 0 {
                writeln!(out, "  ... and {} more problems", f.problems_omitted)?;
            }
            if let Some(e) = f.reason.as_ref().filter(|_| f.status == Status::Error) {
                writeln!(out, "  could not verify: {e}")?;
            }
        }
        if !quiet && f.status != Status::Skipped {
            for n in &f.notes {
                writeln!(out, "note: {}: {n}", name(f))?;
            }
        }
        if let (Some(got), Some(want)) = (&f.sha256, &f.expected_sha256) {
            if got == want && !quiet {
                writeln!(out, "digest: {}: {got} matches", f.path)?;
            }
        }
    }
    if let Some(st) = &r.stack {
        writeln!(
            out,
            "\nstack of {} layers, virtual size {}: {}",
            st.layers.len(),
            st.virtual_size.map(human).unwrap_or_else(|| "?".into()),
            if st.problems.is_empty() {
                "chain OK"
            } else {
                "FAIL"
            }
        )?;
        for p in &st.problems {
            writeln!(out, "  {p}")?;
        }
        if !quiet {
            for n in &st.notes {
                writeln!(out, "note: stack: {n}")?;
            }
        }
    }
    let s = &r.summary;
    let rate = if s.seconds > 0.0 {
        format!(", {:.0} MB/s", s.bytes as f64 / s.seconds / 1e6)
    } else {
        String::new()
    };
    writeln!(
        out,
        "\n{}: {}, {} ok, {} with problems ({}), {} skipped, {} unreadable; {} in {:.2} s{rate}",
        if r.ok {
            "OK"
        } else if s.errors > 0 {
            "ERROR"
        } else {
            "FAIL"
        },
        count(s.files, "file"),
        s.ok,
        s.with_problems,
        count(s.problems, "problem"),
        s.skipped,
        s.errors,
        human(s.bytes),
        s.seconds,
    )?;
    Ok(())
}
