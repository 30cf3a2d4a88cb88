//! `obd demo`: a guided tour on a sample stack that obd builds with its own
//! writers: three writable layers created, written and committed (plain,
//! ZFile, tar-wrapped ZFile), then inspected, mapped and flattened, and the
//! flattened disk compared with an in-memory model of everything written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use super::{human, print_json, GlobalArgs};
use crate::format::lsmt::writable::{self, CreateOptions};
use crate::format::lsmt::WritableLayer;
use crate::format::uuid::Uuid;
use crate::format::zfile::{Algorithm, WriterOptions};
use crate::ops::commit::{self, CommitMeta};
use crate::ops::inspect::{self, StackReport};
use crate::ops::output::OutputOptions;
use crate::sample::{self, Rng};
use crate::source::blob::BlobOptions;
use crate::stack::{Extent, Source, Stack};

/// Arguments of `obd demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the sample files in this directory (created; must be empty) instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

/// Virtual size of the sample disk.
const DISK: u64 = 64 << 20;

/// One layer the demo built.
#[derive(Debug, Serialize)]
struct LayerStep {
    /// What the layer holds.
    story: String,
    /// The obd commands that would do the same.
    commands: Vec<String>,
    writes: u64,
    bytes_written: u64,
    discards: u64,
    bytes_discarded: u64,
    /// The committed file.
    file: String,
    file_size: u64,
    containers: Vec<&'static str>,
    segments: u64,
    uuid: String,
    parent_uuid: String,
}

#[derive(Debug, Serialize)]
struct DemoReport {
    dir: String,
    kept: bool,
    layers: Vec<LayerStep>,
    stack: StackReport,
    /// The first extents of the merged view.
    map: Vec<Extent>,
    map_extents_total: usize,
    flattened: String,
    flattened_sha256: String,
    model_sha256: String,
    matches_model: bool,
    seconds: f64,
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

struct Ops {
    writes: u64,
    written: u64,
    discards: u64,
    discarded: u64,
}

/// Applies `n` writes of sample data (seed `seed`) of 4..256 KiB and
/// `discards` 64 KiB-aligned discards to `l` and to the model.
fn apply(
    l: &WritableLayer,
    model: &mut [u8],
    seed: u64,
    n: u64,
    discards: u64,
) -> anyhow::Result<Ops> {
    let mut rng = Rng::new(seed);
    let mut ops = Ops {
        writes: 0,
        written: 0,
        discards: 0,
        discarded: 0,
    };
    // Writes cluster in the first 16 MiB so that layers overlap.
    let span = 16u64 << 20;
    let mut buf = Vec::new();
    for _ in 0..n {
        let len = (1 + rng.below(64)) * 4096;
        let off = rng.below((span - len) / 4096) * 4096;
        buf.resize(len as usize, 0);
        sample::fill(seed, off, &mut buf);
        l.write_at(&buf, off)?;
        model[off as usize..(off + len) as usize].copy_from_slice(&buf);
        ops.writes += 1;
        ops.written += len;
    }
    for _ in 0..discards {
        let len = (1 + rng.below(4)) * 65536;
        let off = rng.below((span - len) / 65536) * 65536;
        l.discard(off, len)?;
        model[off as usize..(off + len) as usize].fill(0);
        ops.discards += 1;
        ops.discarded += len;
    }
    l.flush()?;
    Ok(ops)
}

fn demo_uuid(i: u64) -> Uuid {
    // Fixed uuids keep the tour reproducible; real layers get random ones.
    Uuid::parse(&format!("0bdde300-0000-4000-8000-{i:012x}")).unwrap_or_else(Uuid::null)
}

#[allow(clippy::too_many_arguments)]
fn build_layer(
    dir: &Path,
    name: &str,
    i: u64,
    story: &str,
    model: &mut [u8],
    writes: u64,
    discards: u64,
    zfile: Option<WriterOptions>,
    tar: bool,
) -> anyhow::Result<LayerStep> {
    let data = dir.join(format!("{name}.data"));
    let index = dir.join(format!("{name}.index"));
    let parent = (i > 0).then(|| demo_uuid(i - 1));
    writable::create(
        &data,
        &index,
        &CreateOptions {
            virtual_size: DISK,
            uuid: Some(demo_uuid(i)),
            parent_uuid: parent,
            ..Default::default()
        },
    )?;
    let ops = {
        let l = WritableLayer::open(&data, &index, None)?;
        apply(&l, model, 100 + i, writes, discards)?
    };
    let ext = match (zfile.is_some(), tar) {
        (false, false) => "commit",
        (true, false) => "zfile",
        (_, true) => "tar",
    };
    let out = dir.join(format!("{name}.{ext}"));
    let layer = crate::format::lsmt::Layer::open_rw(
        std::fs::File::open(&data)?,
        std::fs::File::open(&index)?,
    )?;
    let r = commit::commit_layer(
        &layer,
        &CommitMeta {
            uuid: Some(demo_uuid(i)),
            parent_uuid: None,
            message: format!("obd demo layer {i}").into_bytes(),
            inherited_size: None,
        },
        &out,
        OutputOptions {
            zfile,
            threads: 0,
            overwrite_header: true,
            tar,
            force: false,
        },
        &mut |_| {},
    )?;
    let mut create_cmd = format!("obd create --size 64M --uuid {}", demo_uuid(i).as_str());
    if let Some(p) = parent {
        create_cmd.push_str(&format!(" -p {}", p.as_str()));
    }
    create_cmd.push_str(&format!(" {name}.data {name}.index"));
    let mut commit_cmd = format!("obd commit --uuid {}", demo_uuid(i).as_str());
    if let Some(z) = zfile {
        commit_cmd.push_str(&format!(" --zfile --algorithm {}", z.algorithm));
    }
    if tar {
        commit_cmd.push_str(" --tar");
    }
    commit_cmd.push_str(&format!(
        " {name}.data {name}.index {}",
        out.file_name().unwrap_or_default().to_string_lossy()
    ));
    Ok(LayerStep {
        story: story.to_string(),
        commands: vec![
            create_cmd,
            "# writes and discards through the WritableLayer library (what `attach --upper` serves)"
                .to_string(),
            commit_cmd,
        ],
        writes: ops.writes,
        bytes_written: ops.written,
        discards: ops.discards,
        bytes_discarded: ops.discarded,
        file: out.display().to_string(),
        file_size: r.output.file_size,
        containers: r.output.containers.clone(),
        segments: r.layer.segments,
        uuid: r.layer.uuid,
        parent_uuid: r.layer.parent_uuid,
    })
}

/// Runs `obd demo`.
///
/// # Errors
/// Failures writing or reading the sample files.
pub fn run(g: &GlobalArgs, a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let (_tmp, dir) = match &a.keep {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| d.display().to_string())?;
            if std::fs::read_dir(d)?.next().is_some() {
                anyhow::bail!("{}: --keep needs an empty directory", d.display());
            }
            (None, d.clone())
        }
        None => {
            let t = tempfile::Builder::new().prefix("obd-demo-").tempdir()?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    let mut model = vec![0u8; DISK as usize];
    let lz4 = WriterOptions::default();
    let zstd = WriterOptions {
        algorithm: Algorithm::Zstd,
        ..Default::default()
    };
    let layers = vec![
        build_layer(
            &dir,
            "base",
            0,
            "base layer: mixed sample data (random, text, zeros, patterns), committed as a plain LSMT file",
            &mut model,
            48,
            0,
            None,
            false,
        )?,
        build_layer(
            &dir,
            "upper",
            1,
            "overwrites and discards over the base, committed as a ZFile (LZ4, 4 KiB blocks)",
            &mut model,
            32,
            4,
            Some(lz4),
            false,
        )?,
        build_layer(
            &dir,
            "top",
            2,
            "a few more writes, committed as a tar-wrapped ZFile (zstd), as registries store layers",
            &mut model,
            12,
            1,
            Some(zstd),
            true,
        )?,
    ];
    let paths: Vec<PathBuf> = layers.iter().map(|l| PathBuf::from(&l.file)).collect();
    let stack = Stack::open(&paths, None, BlobOptions::default())?;
    let report = inspect::stack_report(&stack);
    let extents = stack.extents(0, stack.virtual_size());
    let flat_path = dir.join("flat.raw");
    let flat = crate::io::atomic::AtomicFile::create(&flat_path, false)?;
    crate::ops::flatten::to_file(&stack, flat.file(), &|_| {})?;
    flat.commit()?;
    let flat_bytes = std::fs::read(&flat_path)?;
    let flat_hash = sha256_hex(&flat_bytes);
    let model_hash = sha256_hex(&model);
    let ok = flat_bytes == model;
    let r = DemoReport {
        dir: dir.display().to_string(),
        kept: a.keep.is_some(),
        map_extents_total: extents.len(),
        map: extents.iter().take(12).copied().collect(),
        layers,
        stack: report,
        flattened: flat_path.display().to_string(),
        flattened_sha256: flat_hash,
        model_sha256: model_hash,
        matches_model: ok,
        seconds: t0.elapsed().as_secs_f64(),
    };
    if g.json {
        print_json(out, &r)?;
    } else {
        print_tour(out, &r, &stack)?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_tour(out: &mut dyn Write, r: &DemoReport, stack: &Stack) -> anyhow::Result<()> {
    writeln!(
        out,
        "obd demo: a 64 MiB virtual disk in three layers, built with obd's own writers in {}",
        r.dir
    )?;
    for (i, l) in r.layers.iter().enumerate() {
        writeln!(out)?;
        writeln!(out, "layer {i}: {}", l.story)?;
        for c in &l.commands {
            if c.starts_with('#') {
                writeln!(out, "  {c}")?;
            } else {
                writeln!(out, "  $ {c}")?;
            }
        }
        writeln!(
            out,
            "  {} writes ({}), {} discards ({}) -> {} ({}), {} segments",
            l.writes,
            human(l.bytes_written),
            l.discards,
            human(l.bytes_discarded),
            Path::new(&l.file)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy(),
            if l.containers.is_empty() {
                format!("plain, {}", human(l.file_size))
            } else {
                format!(
                    "{} > lsmt, {}",
                    l.containers.join(" > "),
                    human(l.file_size)
                )
            },
            l.segments
        )?;
        writeln!(out, "  uuid {}  parent {}", l.uuid, l.parent_uuid)?;
    }
    let s = &r.stack;
    writeln!(out)?;
    writeln!(out, "$ obd inspect --stack base.commit upper.zfile top.tar")?;
    writeln!(
        out,
        "  virtual size {}, {} merged segments: {} of data, {} zeroed by discards, {} never written",
        human(s.virtual_size),
        s.merged_segments,
        human(s.data_bytes),
        human(s.zeroed_bytes),
        human(s.hole_bytes)
    )?;
    for l in &s.layers {
        writeln!(
            out,
            "  layer {} {:<28} supplies {:>10} of data, {:>10} of zeros",
            l.layer,
            Path::new(&l.path)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy(),
            human(l.data_bytes),
            human(l.zeroed_bytes)
        )?;
    }
    writeln!(
        out,
        "  parent-uuid chain {}",
        if s.chain_consistent {
            "consistent"
        } else {
            "broken"
        }
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "$ obd map base.commit upper.zfile top.tar   (first {} of {} extents)",
        r.map.len(),
        r.map_extents_total
    )?;
    for e in &r.map {
        let what = match e.source {
            Source::Hole => "hole (zeros)".to_string(),
            Source::Zero { layer } => format!("zeroed by layer {layer}"),
            Source::Data { layer, offset } => {
                format!(
                    "layer {layer} ({}) at {offset:#x}",
                    Path::new(&stack.layers()[layer as usize].name())
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                )
            }
        };
        writeln!(out, "  {:>#10x} +{:<10} {what}", e.start, human(e.length))?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "$ obd flatten -o flat.raw base.commit upper.zfile top.tar"
    )?;
    writeln!(out, "  sha256 {}", r.flattened_sha256)?;
    if r.matches_model {
        writeln!(
            out,
            "  equals the in-memory model of every write and discard: OK ({:.2} s)",
            r.seconds
        )?;
    } else {
        writeln!(
            out,
            "  DIFFERS from the in-memory model (sha256 {}): please report this",
            r.model_sha256
        )?;
    }
    if r.kept {
        writeln!(out, "\nThe files are in {}.", r.dir)?;
    }
    Ok(())
}
