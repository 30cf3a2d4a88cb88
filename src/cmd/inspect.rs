//! `obd inspect`: headers, trailers, indexes and stacks.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{human, new_table, print_json, render, GlobalArgs, UpperArgs};
use crate::ops::inspect::{self, FileReport, HeaderReport, RecordReport, StackReport};
use crate::source::blob::BlobOptions;
use crate::stack::Stack;

/// Arguments of `obd inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// List every index segment (sectors: offset, length, moffset).
    #[arg(long)]
    pub index: bool,
    /// Treat the files as one stack (bottom first) and show the merged view.
    #[arg(long)]
    pub stack: bool,
    /// Writable top layer (with --stack).
    #[command(flatten)]
    pub upper: UpperArgs,
    /// Index memory budget.
    #[command(flatten)]
    pub index_memory: super::IndexArgs,
    /// Registry and cache options (for image references).
    #[command(flatten)]
    pub remote: super::remote::RemoteArgs,
    /// Layer blobs: plain, ZFile or tar-wrapped LSMT files, writable
    /// data/index files; or one image reference (docker://…, oci:DIR:TAG),
    /// shown as a stack.
    #[arg(required_unless_present = "upper")]
    pub files: Vec<PathBuf>,
}

/// Runs `obd inspect`.
///
/// # Errors
/// The first file that cannot be read, with its path.
pub fn run(g: &GlobalArgs, a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let is_image = super::remote::image_ref(&a.files)?.is_some();
    if a.stack || a.upper.upper.is_some() || is_image {
        let sources = a.remote.sources(&a.files)?;
        let stack = Stack::open_sources(&sources, a.upper.pair(), a.index_memory.read_options())?;
        let report = inspect::stack_report(&stack);
        if g.json {
            print_json(out, &report)?;
        } else {
            print_stack(g, out, &report)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Every file is reported: a file that cannot be inspected gets an error
    // entry (and a line on stderr), and the exit status says so at the end.
    let reports: Vec<(String, Result<FileReport, String>)> = a
        .files
        .iter()
        .map(|f| {
            let name = f.display().to_string();
            let r =
                inspect::inspect_file(f, a.index, BlobOptions::default(), &a.index_memory.budget())
                    .map_err(|e| format!("{:#}", anyhow::Error::from(e).context(name.clone())));
            (name, r)
        })
        .collect();
    let failed = reports.iter().filter(|r| r.1.is_err()).count();
    if g.json {
        let files: Vec<serde_json::Value> = reports
            .iter()
            .map(|(name, r)| match r {
                Ok(r) => serde_json::to_value(r),
                Err(e) => Ok(serde_json::json!({ "path": name, "error": e })),
            })
            .collect::<Result<_, _>>()?;
        print_json(out, &serde_json::json!({ "files": files }))?;
    } else {
        let mut first = true;
        for (_, r) in &reports {
            match r {
                Ok(r) => {
                    if !first {
                        writeln!(out)?;
                    }
                    first = false;
                    print_file(g, out, r)?;
                }
                Err(e) => eprintln!("obd: {e}"),
            }
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_file(g: &GlobalArgs, out: &mut dyn Write, r: &FileReport) -> anyhow::Result<()> {
    writeln!(
        out,
        "{}: {} ({}), {}",
        r.path,
        r.kind,
        r.containers.join(" > "),
        human(r.size)
    )?;
    if let Some(t) = &r.tar {
        writeln!(
            out,
            "tar: member {:?}, payload {} bytes at offset {}{}",
            t.member,
            t.size,
            t.offset,
            if t.pax { " (PAX size record)" } else { "" }
        )?;
    }
    if let Some(z) = &r.zfile {
        writeln!(
            out,
            "zfile: {} {} blocks of {}, {} -> {} (ratio {:.2}), block crc {}{}",
            z.algorithm,
            z.blocks,
            human(z.block_size),
            human(z.original_size),
            human(z.container_size),
            z.ratio,
            if z.crc { "on" } else { "off" },
            if z.header_overwrite {
                ", header holds the index (header-overwrite)"
            } else {
                ""
            }
        )?;
        let mut t = new_table(g);
        t.set_header(["field", "header", "trailer"]);
        let col = |f: &dyn Fn(&RecordReport) -> String| (f(&z.header), f(&z.trailer));
        let rows: Vec<(&str, (String, String))> = vec![
            (
                "flags",
                col(&|r| format!("{:#x} {}", r.flags, r.flags_decoded.join(","))),
            ),
            (
                "digest",
                col(&|r| {
                    format!(
                        "{:#010x}{}",
                        r.digest,
                        if r.digest_ok { " ok" } else { " BAD" }
                    )
                }),
            ),
            ("index_offset", col(&|r| r.index_offset.to_string())),
            ("index_size", col(&|r| r.index_size.to_string())),
            (
                "original_file_size",
                col(&|r| r.original_file_size.to_string()),
            ),
            ("index_crc", col(&|r| format!("{:#010x}", r.index_crc))),
            ("block_size", col(&|r| r.block_size.to_string())),
            ("algo", col(&|r| r.algo.clone())),
            ("verify", col(&|r| r.verify.to_string())),
        ];
        for (k, (h, tr)) in rows {
            t.add_row([k.to_string(), h, tr]);
        }
        writeln!(out, "{}", render(g, &mut t))?;
    }
    if let Some(l) = &r.lsmt {
        let mut t = new_table(g);
        let trailer = l.trailer.as_ref();
        t.set_header(["field", "lsmt header", "lsmt trailer"]);
        let col = |f: &dyn Fn(&HeaderReport) -> String| {
            (f(&l.header), trailer.map(f).unwrap_or_else(|| "-".into()))
        };
        let rows: Vec<(&str, (String, String))> = vec![
            (
                "flags",
                col(&|h| format!("{:#x} {}", h.header.flags, h.flags_decoded.join(","))),
            ),
            ("index_offset", col(&|h| h.header.index_offset.to_string())),
            ("index_size", col(&|h| h.header.index_size.to_string())),
            (
                "virtual_size",
                col(&|h| {
                    format!(
                        "{} ({})",
                        h.header.virtual_size,
                        human(h.header.virtual_size)
                    )
                }),
            ),
            ("uuid", col(&|h| h.header.uuid.clone())),
            ("parent_uuid", col(&|h| h.header.parent_uuid.clone())),
            (
                "version",
                col(&|h| format!("{}.{}", h.header.version[0], h.header.version[1])),
            ),
            ("user_tag", col(&|h| format!("{:?}", h.header.user_tag))),
        ];
        for (k, (h, tr)) in rows {
            t.add_row([k.to_string(), h, tr]);
        }
        writeln!(out, "{}", render(g, &mut t))?;
        if let Some(ix) = &l.index {
            writeln!(
                out,
                "index: {} segments ({} entries on disk), mapped {}, zeroed {}, data section {}, unreferenced {}",
                ix.segments,
                ix.entries_on_disk,
                human(ix.mapped_bytes),
                human(ix.zeroed_bytes),
                human(ix.data_section_bytes),
                human(ix.unreferenced_bytes)
            )?;
        }
        if let Some(segs) = &l.segments {
            let mut t = new_table(g);
            t.set_header(["offset (sectors)", "length", "moffset", "zeroed"]);
            for s in segs {
                t.add_row([
                    s.offset.to_string(),
                    s.length.to_string(),
                    if s.zeroed {
                        "-".into()
                    } else {
                        s.moffset.to_string()
                    },
                    if s.zeroed {
                        "yes".into()
                    } else {
                        String::new()
                    },
                ]);
            }
            writeln!(out, "{}", render(g, &mut t))?;
        }
    }
    Ok(())
}

/// A uuid as a table shows it: its first 8 digits on a terminal (the JSON
/// and plain forms have it whole).
fn short_uuid(g: &GlobalArgs, u: &str) -> String {
    if g.plain() || u.len() <= 8 {
        u.to_string()
    } else {
        format!("{}…", &u[..8])
    }
}

fn print_stack(g: &GlobalArgs, out: &mut dyn Write, r: &StackReport) -> anyhow::Result<()> {
    writeln!(
        out,
        "stack: {} layers, virtual size {} ({}), {} merged segments",
        r.layers.len(),
        r.virtual_size,
        human(r.virtual_size),
        r.merged_segments
    )?;
    writeln!(
        out,
        "data {}, zeroed {}, holes {}",
        human(r.data_bytes),
        human(r.zeroed_bytes),
        human(r.hole_bytes)
    )?;
    let mut t = new_table(g);
    t.set_header([
        "#", "file", "kind", "uuid", "parent", "segments", "data", "zeroed",
    ]);
    for l in &r.layers {
        t.add_row([
            l.layer.to_string(),
            l.path.clone(),
            format!(
                "{}{}",
                l.kind.name(),
                if l.containers.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", l.containers.join(">"))
                }
            ),
            short_uuid(g, &l.uuid),
            short_uuid(g, &l.parent_uuid),
            l.segments.to_string(),
            human(l.data_bytes),
            human(l.zeroed_bytes),
        ]);
    }
    writeln!(out, "{}", render(g, &mut t))?;
    if r.chain_consistent {
        writeln!(out, "parent-uuid chain: consistent")?;
    } else {
        for b in &r.chain_breaks {
            writeln!(
                out,
                "parent-uuid chain: layer {} has parent {} but the layer below is {}",
                b.layer, b.parent_uuid, b.below_uuid
            )?;
        }
    }
    Ok(())
}
