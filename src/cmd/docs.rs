//! `obd completions SHELL` and `obd man`: shell completions and manual
//! pages, generated from the command line itself (the copies in
//! `completions/` and `man/` are checked against these by a test).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

use super::{Cli, GlobalArgs};

/// Arguments of `obd completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell (install: bash `obd completions bash >
    /// /etc/bash_completion.d/obd`, zsh into a directory of `$fpath` as
    /// `_obd`, fish into `~/.config/fish/completions/obd.fish`).
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `obd man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write every page (`obd.1`, `obd-verify.1`, ...) into this directory,
    /// e.g. /usr/local/share/man/man1; without it, print one page.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The command whose page to print (`verify`, `zfile compress`; default
    /// obd's own).
    #[arg(value_name = "COMMAND", num_args = 0..=2)]
    pub command: Vec<String>,
}

/// Runs `obd completions`.
///
/// # Errors
/// Write errors.
pub fn completions(a: CompletionsArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    out.write_all(&completion_script(a.shell))?;
    Ok(ExitCode::SUCCESS)
}

/// The completion script of `shell`.
pub fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "obd", &mut buf);
    buf
}

/// Runs `obd man`.
///
/// # Errors
/// An unknown command; write errors.
pub fn man(g: &GlobalArgs, a: ManArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let pages = man_pages()?;
    if let Some(dir) = &a.dir {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
        for (name, page) in &pages {
            let p = dir.join(name);
            std::fs::write(&p, page).with_context(|| p.display().to_string())?;
        }
        if !g.quiet {
            writeln!(out, "{}: {} pages", dir.display(), pages.len())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let file = std::iter::once("obd")
        .chain(a.command.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("-")
        + ".1";
    let page = pages
        .iter()
        .find(|(n, _)| *n == file)
        .ok_or_else(|| anyhow::anyhow!("no manual page for `obd {}`", a.command.join(" ")))?;
    out.write_all(&page.1)?;
    Ok(ExitCode::SUCCESS)
}

/// Every manual page: `(file name, roff)`, obd's own first.
///
/// # Errors
/// Rendering errors.
pub fn man_pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut root = Cli::command();
    // Building gives subcommands their full names (`obd verify`) and the
    // global options.
    root.build();
    let mut cmds = vec![root.clone()];
    let not_help = |c: &&clap::Command| c.get_name() != "help";
    for sub in root.get_subcommands().filter(not_help) {
        cmds.push(sub.clone());
        cmds.extend(sub.get_subcommands().filter(not_help).cloned());
    }
    cmds.iter().map(page).collect()
}

/// One page: clap's sections, the `Forms:` text as a block, then EXIT
/// STATUS, EXAMPLES and SEE ALSO.
fn page(cmd: &clap::Command) -> anyhow::Result<(String, Vec<u8>)> {
    let full = cmd.get_bin_name().unwrap_or(cmd.get_name()).to_string();
    let file_stem = full.replace(' ', "-");
    let forms = cmd.get_after_help().map(|s| s.to_string());
    let c = cmd.clone().after_help(None::<&str>);
    let man = clap_mangen::Man::new(c).title(file_stem.clone());
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    man.render_synopsis_section(&mut buf)?;
    man.render_description_section(&mut buf)?;
    man.render_options_section(&mut buf)?;
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut buf)?;
    }
    if let Some(text) = forms {
        section(&mut buf, "FORMS", &[], Some(&text))?;
    }
    section(
        &mut buf,
        "EXIT STATUS",
        &[
            ("0", "Success."),
            ("1", "A check found a problem (obd verify)."),
            (
                "2",
                "An error: bad usage, an unreadable or corrupt input, a failed write.",
            ),
            (
                "141",
                "The reader of standard output went away before all was written.",
            ),
        ],
        None,
    )?;
    let examples = examples(&full);
    if !examples.is_empty() {
        section(&mut buf, "EXAMPLES", &[], Some(&examples.join("\n")))?;
    }
    writeln!(buf, ".SH SEE ALSO")?;
    writeln!(
        buf,
        "The README of obd, which describes the formats, the commands and how obd is tested."
    )?;
    Ok((format!("{file_stem}.1"), buf))
}

/// A roff section: `items` as tagged paragraphs, `block` as preformatted
/// text.
fn section(
    buf: &mut Vec<u8>,
    title: &str,
    items: &[(&str, &str)],
    block: Option<&str>,
) -> std::io::Result<()> {
    writeln!(buf, ".SH {title}")?;
    for (tag, text) in items {
        writeln!(buf, ".TP\n\\fB{}\\fR\n{}", escape(tag), escape(text))?;
    }
    if let Some(b) = block {
        writeln!(buf, ".nf")?;
        for line in b.lines() {
            writeln!(buf, "{}", escape(line))?;
        }
        writeln!(buf, ".fi")?;
    }
    Ok(())
}

/// Text safe in roff: backslashes doubled, a leading `.` or `'` protected,
/// `-` as a real hyphen-minus.
fn escape(s: &str) -> String {
    let t = s.replace('\\', "\\\\").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// Examples of a command, for its page.
fn examples(full: &str) -> Vec<&'static str> {
    match full {
        "obd" => vec![
            "obd demo",
            "obd inspect --stack L0.commit L1.commit L2.commit",
            "obd verify --json out/layers/",
        ],
        "obd inspect" => vec![
            "obd inspect L0.commit               # headers, trailer, index",
            "obd inspect --index L1.tar           # every segment too",
            "obd inspect --stack L0.commit L1.commit L2.commit",
        ],
        "obd map" => vec![
            "obd map L0.commit L1.commit L2.commit",
            "obd map docker://127.0.0.1:5000/app:v1",
            "obd map --start 1G --length 64M L0.commit L1.commit",
            "obd map --lba 2048 --json L0.commit L1.commit",
        ],
        "obd flatten" => vec![
            "obd flatten -o disk.raw L0.commit L1.commit L2.commit",
            "obd flatten -o - L0.commit L1.commit | qemu-img convert -f raw -O qcow2 /dev/stdin disk.qcow2",
            "obd flatten -o disk.raw --creds user:pass docker://registry.example/app:v1",
            "obd flatten -o disk.raw oci:./app:v1",
        ],
        "obd create" => vec!["obd create --size 0 u.data u.index"],
        "obd commit" => vec![
            "obd commit -z --base L0.commit --base L1.commit u.data u.index L2.zfile",
            "obd commit --raw new.raw --base L0.commit L1.commit",
            "obd commit --seal u.data u.index",
        ],
        "obd merge" => vec!["obd merge -z -o merged.zfile L0.commit L1.commit L2.commit"],
        "obd zfile compress" => vec![
            "obd zfile compress --algorithm zstd --block-size 16K --tar base.raw base.tar",
            "head -c 1000000 base.raw | obd zfile compress - head.zfile",
        ],
        "obd zfile decompress" => vec!["obd zfile decompress base.tar base.raw"],
        "obd verify" => vec![
            "obd verify L0.lz4.tar",
            "obd verify --digest sha256:HEX blob",
            "obd verify --stack L0.commit L1.commit --upper u.data u.index",
            "obd verify --json out/layers/ > report.json",
        ],
        "obd attach" => vec![
            "obd attach L0.commit L1.commit L2.commit",
            "obd attach --upper u.data u.index L0.commit L1.commit",
            "obd attach --config /var/lib/overlaybd/config.v1.json",
            "obd attach docker://127.0.0.1:5000/app:v1      # lazily, through the cache",
        ],
        "obd push" => vec![
            "obd push L0.tar L1.tar docker://127.0.0.1:5000/app:v1",
            "obd push --tag v2 L0.tar L1.tar L2.tar oci:./images",
        ],
        "obd pull" => vec![
            "obd pull docker://127.0.0.1:5000/app:v1 ./app",
            "obd flatten -o disk.raw oci:./app:v1",
        ],
        "obd cache list" => vec!["obd cache list", "obd cache list --json --cache-dir /var/cache/obd"],
        "obd cache verify" => vec!["obd cache verify"],
        "obd cache prune" => vec!["obd cache prune --keep 10G"],
        "obd detach" => vec!["obd detach 0", "obd detach --force /dev/ublkb3"],
        "obd list" => vec!["obd list", "obd list --json"],
        "obd completions" => vec!["obd completions bash > /etc/bash_completion.d/obd"],
        "obd man" => vec!["obd man --dir /usr/local/share/man/man1", "obd man verify | man -l -"],
        _ => Vec::new(),
    }
}
