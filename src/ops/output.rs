//! Output files of the writers: a crash-safe file holding raw bytes, a ZFile
//! or a tar-wrapped ZFile (or a tar-wrapped raw file), streamed.
//!
//! Bytes go `caller → [ZFile writer] → [tar wrapper] → buffered file`. The
//! parts whose values are known only at the end (the tar headers, the ZFile
//! header when it is overwritten with the final index fields, as
//! `overlaybd-commit -z` does) are written at their offsets by
//! [`Output::finish`], before the file is synced and renamed into place.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::Serialize;

use crate::error::{from_io, Error, Result};
use crate::format::tar;
use crate::format::zfile::{self, WriterOptions};
use crate::io::atomic::AtomicFile;
use crate::io::sparse::SparseWriter;

/// How to package the bytes written.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutputOptions {
    /// Compress into a ZFile with these options.
    pub zfile: Option<WriterOptions>,
    /// ZFile compression threads (0 = one per core).
    pub threads: usize,
    /// Rewrite the ZFile header with the final index fields (flags 0x1B), as
    /// `overlaybd-commit -z` does; `overlaybd-zfile` and `overlaybd-merge` do not.
    pub overwrite_header: bool,
    /// Wrap the result in a one-member tar (§6.1 of the format notes).
    pub tar: bool,
    /// Replace an existing output.
    pub force: bool,
}

/// The file under every output: all-zero 4 KiB units become holes.
type Base = SparseWriter;

enum Chain {
    Plain(Base),
    Tar(tar::Wrapper<Base>),
    Zfile(zfile::Writer<Base>),
    TarZfile(zfile::Writer<tar::Wrapper<Base>>),
}

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct OutputReport {
    /// The output path.
    pub path: String,
    /// Bytes of the output file.
    pub file_size: u64,
    /// Bytes given to the output (the LSMT layer or raw content).
    pub content_size: u64,
    /// Containers around the content, outermost first.
    pub containers: Vec<&'static str>,
    /// ZFile blocks, when compressed.
    pub zfile_blocks: Option<u64>,
    /// ZFile blocks larger than 64 KiB on disk, which the reference's reader
    /// cannot read (only incompressible 64 KiB blocks), when compressed.
    pub oversized_blocks: Option<u64>,
    /// ZFile algorithm, when compressed.
    pub algorithm: Option<zfile::Algorithm>,
    /// ZFile block size, when compressed.
    pub block_size: Option<u32>,
}

/// An output file being written. Dropping it without [`Output::finish`]
/// leaves nothing at the destination.
#[must_use = "call finish() or the output is discarded"]
pub struct Output {
    file: AtomicFile,
    chain: Chain,
    opts: OutputOptions,
    content: u64,
}

impl Output {
    /// Creates the temporary file next to `dest` and writes the leading
    /// placeholders.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `dest` exists without `force` or the ZFile
    /// options are bad; I/O errors.
    pub fn create(dest: &Path, opts: OutputOptions) -> Result<Self> {
        if let Some(z) = &opts.zfile {
            z.validate()?;
        }
        let file = AtomicFile::create(dest, opts.force)?;
        let f = file
            .file()
            .try_clone()
            .map_err(|e| Error::io("output", 0, e))?;
        let base = SparseWriter::new(f, 1 << 20);
        let chain = match (opts.zfile, opts.tar) {
            (None, false) => Chain::Plain(base),
            (None, true) => Chain::Tar(tar::Wrapper::new(base)?),
            (Some(z), false) => Chain::Zfile(zfile::Writer::with_threads(base, z, opts.threads)?),
            (Some(z), true) => Chain::TarZfile(zfile::Writer::with_threads(
                tar::Wrapper::new(base)?,
                z,
                opts.threads,
            )?),
        };
        Ok(Output {
            file,
            chain,
            opts,
            content: 0,
        })
    }

    /// Where the file will appear.
    pub fn dest(&self) -> &Path {
        self.file.dest()
    }

    /// Content bytes written so far.
    pub fn content_size(&self) -> u64 {
        self.content
    }

    /// Copies `input` to its end into the output; ZFile outputs read straight
    /// into their compression batches. Every ZFile block but the last is
    /// whole, however the reads return (pipes).
    ///
    /// # Errors
    /// Read and write errors.
    pub fn copy_from(
        &mut self,
        input: &mut dyn std::io::Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64> {
        let n = match &mut self.chain {
            Chain::Zfile(w) => w.push_from(input, progress)?,
            Chain::TarZfile(w) => w.push_from(input, progress)?,
            _ => copy_stream(input, self, progress)?,
        };
        if matches!(self.chain, Chain::Zfile(_) | Chain::TarZfile(_)) {
            self.content += n;
        }
        Ok(n)
    }

    /// Writes the trailers and deferred headers, syncs and renames the file
    /// into place.
    ///
    /// # Errors
    /// Write, sync and rename errors; [`Error::Invalid`] when the
    /// destination appeared meanwhile and `force` is off.
    pub fn finish(self) -> Result<OutputReport> {
        let Output {
            file,
            chain,
            opts,
            content,
        } = self;
        let mut patches: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut blocks = None;
        let mut oversized = None;
        let base = match chain {
            Chain::Plain(b) => b,
            Chain::Tar(w) => {
                let (b, head) = w.finish()?;
                patches.push((0, head.to_vec()));
                b
            }
            Chain::Zfile(z) => {
                let f = z.finish()?;
                blocks = Some(f.blocks);
                oversized = Some(f.oversized_blocks);
                if opts.overwrite_header {
                    patches.push((0, f.overwrite_header.to_vec()));
                }
                f.inner
            }
            Chain::TarZfile(z) => {
                let f = z.finish()?;
                blocks = Some(f.blocks);
                oversized = Some(f.oversized_blocks);
                if opts.overwrite_header {
                    patches.push((tar::HEADER_BYTES, f.overwrite_header.to_vec()));
                }
                let (b, head) = f.inner.finish()?;
                patches.push((0, head.to_vec()));
                b
            }
        };
        let f = base.into_inner()?;
        for (at, bytes) in &patches {
            f.write_all_at(bytes, *at)
                .map_err(|e| Error::io("output", *at, e))?;
        }
        let file_size = f.metadata().map_err(|e| Error::io("output", 0, e))?.len();
        let path = file.dest().display().to_string();
        file.commit()?;
        let mut containers = Vec::new();
        if opts.tar {
            containers.push("tar");
        }
        if opts.zfile.is_some() {
            containers.push("zfile");
        }
        Ok(OutputReport {
            path,
            file_size,
            content_size: content,
            containers,
            zfile_blocks: blocks,
            oversized_blocks: oversized,
            algorithm: opts.zfile.map(|z| z.algorithm),
            block_size: opts.zfile.map(|z| z.block_size),
        })
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match &mut self.chain {
            Chain::Plain(w) => w.write_all(buf)?,
            Chain::Tar(w) => w.write_all(buf)?,
            Chain::Zfile(w) => w.push(buf).map_err(std::io::Error::other)?,
            Chain::TarZfile(w) => w.push(buf).map_err(std::io::Error::other)?,
        }
        self.content += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Copies a `Read` stream into `out` in 1 MiB pieces, each filled completely
/// (short reads from pipes are joined, so ZFile blocks stay whole).
///
/// # Errors
/// Read and write errors.
pub fn copy_stream(
    input: &mut dyn std::io::Read,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match input.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("input", total + filled as u64, e)),
            }
        }
        if filled == 0 {
            return Ok(total);
        }
        out.write_all(&buf[..filled])
            .map_err(|e| from_io("output", total, e))?;
        total += filled as u64;
        progress(filled as u64);
        if filled < buf.len() {
            return Ok(total);
        }
    }
}
