//! `Writer`: a committed read-only layer, written strictly sequentially and
//! byte-identical to the reference's compaction (`overlaybd-commit`/`merge`).
//!
//! Output: header (flags 0x07) | data | index padded to 256 entries | trailer
//! (flags 0x06). Data of each source mapping is copied in 64-sector pieces,
//! and the provisional entries are coalesced greedily while the combined
//! length stays below 16383 sectors, as the reference does.

use std::io::Write;

use zerocopy::IntoBytes;

use super::header::HeaderFields;
use super::raw::{HEADER_SPACE, SECTOR_SIZE};
use super::segment::{Segment, PADDING};
use crate::error::{Error, Result};
use crate::format::uuid::Uuid;

/// Sectors per copy piece (the reference's 32 KiB buffer).
pub const PIECE_SECTORS: u64 = 64;
/// Index padding unit in entries (4096 bytes).
pub const INDEX_PAD_ENTRIES: usize = 256;
/// Flags of a committed layer's header.
pub const COMMITTED_HEADER_FLAGS: u32 = 0x07;
/// Flags of a committed layer's trailer.
pub const COMMITTED_TRAILER_FLAGS: u32 = 0x06;

/// Metadata of a new layer.
#[derive(Debug, Clone)]
pub struct LayerMeta {
    /// Virtual size in bytes.
    pub virtual_size: u64,
    /// The layer's uuid (null unless given).
    pub uuid: Uuid,
    /// The parent layer's uuid.
    pub parent_uuid: Uuid,
    /// Commit message, at most 256 bytes.
    pub user_tag: Vec<u8>,
}

/// Writes a committed layer to `W`.
#[must_use = "call finish() or the layer has no index and trailer"]
pub struct Writer<W: Write> {
    out: W,
    meta: LayerMeta,
    /// Next output sector.
    pos: u64,
    entries: Vec<Segment>,
}

impl<W: Write> Writer<W> {
    /// Starts a layer: writes the header.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a user tag over 256 bytes; write errors.
    pub fn new(mut out: W, meta: LayerMeta) -> Result<Self> {
        let header = fields(&meta, COMMITTED_HEADER_FLAGS, 0, 0).to_bytes()?;
        out.write_all(&header)
            .map_err(|e| Error::io("lsmt header", 0, e))?;
        Ok(Writer {
            out,
            meta,
            pos: HEADER_SPACE / SECTOR_SIZE,
            entries: Vec::new(),
        })
    }

    /// Index entries so far (coalesced, without padding).
    pub fn entries(&self) -> usize {
        self.entries.len()
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.pos * SECTOR_SIZE
    }

    fn push_entry(&mut self, s: Segment) {
        if let Some(last) = self.entries.last_mut() {
            if last.end() == s.offset
                && last.mend() == s.moffset
                && last.zeroed == s.zeroed
                && last.tag == s.tag
                && last.length + s.length < super::segment::MAX_LENGTH
            {
                last.length += s.length;
                return;
            }
        }
        self.entries.push(s);
    }

    /// Appends the data of one source mapping starting at sector `lba`.
    /// `data` must be a whole number of sectors. Pieces are cut every 64
    /// sectors from the start of each call, so a mapping given in several
    /// calls must be split at multiples of 32 KiB (the reference's pieces).
    ///
    /// # Errors
    /// [`Error::Invalid`] for misaligned data or LBAs out of range; write errors.
    pub fn push_data(&mut self, lba: u64, data: &[u8], tag: u8) -> Result<()> {
        if data.len() as u64 % SECTOR_SIZE != 0 {
            return Err(Error::invalid(
                "lsmt writer",
                format!("{} bytes is not a whole number of sectors", data.len()),
            ));
        }
        check_lba(lba, data.len() as u64 / SECTOR_SIZE)?;
        self.out
            .write_all(data)
            .map_err(|e| Error::io("lsmt data", self.pos * SECTOR_SIZE, e))?;
        let mut lba = lba;
        for piece in data.chunks((PIECE_SECTORS * SECTOR_SIZE) as usize) {
            let step = piece.len() as u64 / SECTOR_SIZE;
            let s = Segment {
                offset: lba,
                length: step as u32,
                moffset: self.pos,
                zeroed: false,
                tag,
            };
            self.push_entry(s);
            lba += step;
            self.pos += step;
        }
        Ok(())
    }

    /// Appends a zeroed mapping of `sectors` (at most 16383) at `lba`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the range does not fit an index entry.
    pub fn push_zeroed(&mut self, lba: u64, sectors: u32, tag: u8) -> Result<()> {
        if sectors > super::segment::MAX_LENGTH {
            return Err(Error::invalid(
                "lsmt writer",
                format!("zeroed mapping of {sectors} sectors is over 16383"),
            ));
        }
        check_lba(lba, sectors as u64)?;
        if sectors == 0 {
            return Ok(());
        }
        let s = Segment {
            offset: lba,
            length: sectors,
            moffset: self.pos,
            zeroed: true,
            tag,
        };
        self.push_entry(s);
        Ok(())
    }

    /// Writes the padded index and the trailer; returns the writer and the
    /// final entry count (padding included).
    ///
    /// # Errors
    /// Write errors; entries that do not encode.
    pub fn finish(mut self) -> Result<(W, u64)> {
        let index_offset = self.pos * SECTOR_SIZE;
        let n = self.entries.len();
        let padded = if n % INDEX_PAD_ENTRIES == 0 {
            n
        } else {
            n + INDEX_PAD_ENTRIES - n % INDEX_PAD_ENTRIES
        };
        let mut buf = Vec::with_capacity(4096);
        let mut written = 0u64;
        for i in 0..padded {
            let raw = match self.entries.get(i) {
                Some(s) => s.encode()?,
                None => PADDING,
            };
            buf.extend_from_slice(raw.as_bytes());
            if buf.len() == 4096 || i + 1 == padded {
                self.out
                    .write_all(&buf)
                    .map_err(|e| Error::io("lsmt index", index_offset + written, e))?;
                written += buf.len() as u64;
                buf.clear();
            }
        }
        let trailer = fields(
            &self.meta,
            COMMITTED_TRAILER_FLAGS,
            index_offset,
            padded as u64,
        )
        .to_bytes()?;
        self.out
            .write_all(&trailer)
            .map_err(|e| Error::io("lsmt trailer", index_offset + written, e))?;
        self.out
            .flush()
            .map_err(|e| Error::io("lsmt trailer", index_offset + written, e))?;
        Ok((self.out, padded as u64))
    }
}

/// Checks that `meta` can be written (the user tag fits).
///
/// # Errors
/// [`Error::Invalid`] for a user tag over 256 bytes.
pub fn check_meta(meta: &LayerMeta) -> Result<()> {
    fields(meta, 0, 0, 0).to_bytes().map(|_| ())
}

fn fields(meta: &LayerMeta, flags: u32, index_offset: u64, index_size: u64) -> HeaderFields {
    HeaderFields {
        flags,
        index_offset,
        index_size,
        virtual_size: meta.virtual_size,
        uuid: meta.uuid,
        parent_uuid: meta.parent_uuid,
        user_tag: meta.user_tag.clone(),
    }
}

fn check_lba(lba: u64, sectors: u64) -> Result<()> {
    match lba.checked_add(sectors) {
        Some(end) if end <= super::segment::MAX_OFFSET => Ok(()),
        _ => Err(Error::invalid(
            "lsmt writer",
            format!("sectors {lba}+{sectors} are past the largest LBA"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::lsmt::Layer;
    use std::sync::Arc;

    fn meta() -> LayerMeta {
        LayerMeta {
            virtual_size: 0x4000_0000,
            uuid: Uuid::parse("12345678-1234-1234-1234-123456789abc").unwrap(),
            parent_uuid: Uuid::null(),
            user_tag: b"hello".to_vec(),
        }
    }

    #[test]
    fn spec_example_a() {
        let mut w = Writer::new(Vec::new(), meta()).unwrap();
        w.push_data(16, &[0xAB; 4096], 0).unwrap();
        let (out, n) = w.finish().unwrap();
        assert_eq!(n, 256);
        assert_eq!(out.len(), 16384);
        assert!(out[4096..8192].iter().all(|&b| b == 0xAB));
        assert_eq!(
            &out[8192..8208],
            &[0x10, 0, 0, 0, 0, 0, 0x20, 0, 8, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            &out[8208..8224],
            &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(&out[12288 + 28..12288 + 32], &[6, 0, 0, 0]);
        assert_eq!(&out[12288 + 32..12288 + 40], &8192u64.to_le_bytes());
        assert_eq!(&out[12288 + 40..12288 + 48], &256u64.to_le_bytes());
        let layer = Layer::open_ro(Arc::new(out)).unwrap();
        assert_eq!(layer.segments().len(), 1);
    }

    #[test]
    fn coalescing_follows_64_sector_pieces() {
        // Two adjacent 10000-sector mappings: 16336 + 3664 (not 16382 + 3618).
        let mut w = Writer::new(Vec::new(), meta()).unwrap();
        let d = vec![1u8; 10000 * 512];
        w.push_data(0, &d, 0).unwrap();
        w.push_data(10000, &d, 0).unwrap();
        let lens: Vec<u32> = w.entries.iter().map(|s| s.length).collect();
        assert_eq!(lens, [16336, 3664]);
        // One mapping of 16383 sectors: 16320 + 63.
        let mut w = Writer::new(Vec::new(), meta()).unwrap();
        w.push_data(0, &vec![1u8; 16383 * 512], 0).unwrap();
        let lens: Vec<u32> = w.entries.iter().map(|s| s.length).collect();
        assert_eq!(lens, [16320, 63]);
        // Adjacent zeroed runs coalesce below 16383.
        let mut w = Writer::new(Vec::new(), meta()).unwrap();
        w.push_zeroed(0, 100, 0).unwrap();
        w.push_zeroed(100, 200, 0).unwrap();
        w.push_zeroed(300, 16383, 0).unwrap();
        let lens: Vec<u32> = w.entries.iter().map(|s| s.length).collect();
        assert_eq!(lens, [300, 16383]);
        // Different tags never coalesce.
        let mut w = Writer::new(Vec::new(), meta()).unwrap();
        w.push_data(0, &[0; 512], 0).unwrap();
        w.push_data(1, &[0; 512], 1).unwrap();
        assert_eq!(w.entries.len(), 2);
    }

    #[test]
    fn empty_layer_is_8192_bytes() {
        let w = Writer::new(Vec::new(), meta()).unwrap();
        let (out, n) = w.finish().unwrap();
        assert_eq!((out.len(), n), (8192, 0));
        Layer::open_ro(Arc::new(out)).unwrap();
    }

    #[test]
    fn rejects_bad_input() {
        let mut w = Writer::new(Vec::new(), meta()).unwrap();
        assert!(w.push_data(0, &[0; 100], 0).is_err());
        assert!(w.push_zeroed(0, 16384, 0).is_err());
        assert!(w
            .push_data(super::super::segment::MAX_OFFSET, &[0; 512], 0)
            .is_err());
        let mut m = meta();
        m.user_tag = vec![0; 257];
        assert!(Writer::new(Vec::new(), m).is_err());
    }
}
