//! Index decoding, validation, "last writer wins" replay and stack merging.

use std::collections::BTreeMap;

use zerocopy::FromBytes;

use super::raw::{RawSegment, HEADER_SPACE, SECTOR_SIZE, SEGMENT_SIZE};
use super::segment::Segment;
use crate::error::{Error, Result};

/// First sector after the header: the lowest valid `moffset`.
pub const DATA_START_SECTORS: u64 = HEADER_SPACE / SECTOR_SIZE;

/// Decodes `bytes` (a whole number of entries) into segments, dropping
/// padding entries and zeroing tags, as every reader does.
pub fn decode(bytes: &[u8]) -> Vec<Segment> {
    let n = bytes.len() / SEGMENT_SIZE as usize;
    let mut out = Vec::with_capacity(n);
    for chunk in bytes.chunks_exact(SEGMENT_SIZE as usize) {
        // chunks_exact guarantees the size.
        if let Ok(raw) = RawSegment::read_from_bytes(chunk) {
            let mut s = Segment::decode(&raw);
            if !s.is_padding() {
                s.tag = 0;
                out.push(s);
            }
        }
    }
    out
}

/// Decodes `bytes` keeping positions: `None` for padding entries; tags zeroed.
pub fn decode_all(bytes: &[u8]) -> Vec<Option<Segment>> {
    bytes
        .chunks_exact(SEGMENT_SIZE as usize)
        .map(|chunk| {
            let raw = RawSegment::read_from_bytes(chunk).ok()?;
            let s = Segment::decode(&raw);
            (!s.is_padding()).then_some(Segment { tag: 0, ..s })
        })
        .collect()
}

/// Checks that an entry maps at least one sector: no writer makes an empty
/// entry, and an index of empty entries only costs memory.
///
/// # Errors
/// [`Error::Corrupt`] naming the entry.
pub fn check_length(s: &Segment, what: &'static str, at: u64, position: usize) -> Result<()> {
    if s.length == 0 {
        return Err(Error::corrupt(
            what,
            at,
            format!("entry {position} (lba {}) maps no sectors", s.offset),
        ));
    }
    Ok(())
}

/// Checks one entry's physical range against the data section
/// `[DATA_START_SECTORS, data_end)` (sectors).
///
/// # Errors
/// [`Error::Corrupt`] at the entry's byte offset `at` (from `position`).
pub fn check_physical(
    s: &Segment,
    data_end: u64,
    what: &'static str,
    at: u64,
    position: usize,
) -> Result<()> {
    let ok = if s.zeroed {
        s.moffset >= DATA_START_SECTORS && s.moffset <= data_end
    } else {
        s.moffset >= DATA_START_SECTORS
            && s.moffset < data_end
            && s.mend() > DATA_START_SECTORS
            && s.mend() <= data_end
    };
    if ok {
        Ok(())
    } else {
        Err(Error::corrupt(
            what,
            at,
            format!(
                "entry {position} (lba {}, {} sectors) maps sectors {}..{} outside the data section {}..{}",
                s.offset,
                s.length,
                s.moffset,
                s.mend(),
                DATA_START_SECTORS,
                data_end
            ),
        ))
    }
}

/// Validates a read-only index: sorted, non-overlapping, every entry inside
/// the data section `[8, data_end)` (sectors).
///
/// # Errors
/// [`Error::Corrupt`] naming the first offending entry.
pub fn validate_ro(segs: &[Segment], data_end: u64, what: &'static str, at: u64) -> Result<()> {
    for (i, s) in segs.iter().enumerate() {
        check_length(s, what, at, i)?;
        check_physical(s, data_end, what, at, i)?;
        if i > 0 {
            let p = &segs[i - 1];
            if p.end() > s.offset {
                return Err(Error::corrupt(
                    what,
                    at,
                    format!(
                        "entries {} and {i} overlap or are out of order (lba {}+{} then {})",
                        i - 1,
                        p.offset,
                        p.length,
                        s.offset
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A writable layer's in-memory index: records replayed in order, a later
/// record overriding earlier ones sector by sector. Entries are never coalesced.
#[derive(Debug, Default, Clone)]
pub struct RwIndex {
    map: BTreeMap<u64, Segment>,
}

impl RwIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Inserts `s`, trimming, splitting or removing what it covers.
    pub fn insert(&mut self, s: Segment) {
        if s.length == 0 {
            return;
        }
        let (a, b) = (s.offset, s.end());
        // The entry starting before `a` may reach into the new range.
        if let Some((&k, &e)) = self.map.range(..a).next_back() {
            if e.end() > a {
                let mut left = e;
                left.length = (a - e.offset) as u32;
                self.map.insert(k, left);
                if e.end() > b {
                    self.map.insert(b, advance(e, b));
                }
            }
        }
        // Entries starting inside [a, b).
        let inside: Vec<u64> = self.map.range(a..b).map(|(&k, _)| k).collect();
        for k in inside {
            let e = self.map.remove(&k).unwrap_or_default();
            if e.end() > b {
                self.map.insert(b, advance(e, b));
            }
        }
        self.map.insert(a, s);
    }

    /// The entries that overlap sectors `[start, end)`, in LBA order (not trimmed).
    pub fn overlapping(&self, start: u64, end: u64) -> Vec<Segment> {
        let mut out = Vec::new();
        if let Some((_, e)) = self.map.range(..start).next_back() {
            if e.end() > start {
                out.push(*e);
            }
        }
        out.extend(self.map.range(start..end).map(|(_, e)| *e));
        out
    }

    /// The entries in LBA order.
    pub fn segments(&self) -> Vec<Segment> {
        self.map.values().copied().collect()
    }
}

/// `e` with its start moved to `to` (moffset follows unless zeroed).
fn advance(e: Segment, to: u64) -> Segment {
    let delta = to - e.offset;
    Segment {
        offset: to,
        length: (e.end() - to) as u32,
        moffset: if e.zeroed {
            e.moffset
        } else {
            e.moffset + delta
        },
        ..e
    }
}

/// Merges layer indexes, `layers[0]` being the **topmost**: the topmost layer
/// mapping a sector wins (zeroed entries count as mappings). Each output entry
/// is a trimmed copy of one source entry with `tag` = its top-first layer
/// number; entries are not coalesced.
///
/// # Errors
/// [`Error::Invalid`] with more than 256 layers.
pub fn merge(layers: &[&[Segment]]) -> Result<Vec<Segment>> {
    if layers.len() > 256 {
        return Err(Error::invalid(
            "stack",
            format!(
                "{} layers is more than the 256 a stack can hold",
                layers.len()
            ),
        ));
    }
    let mut out = Vec::new();
    merge_level(layers, 0, 0, u64::MAX, &mut out);
    Ok(out)
}

fn merge_level(
    layers: &[&[Segment]],
    level: usize,
    mut begin: u64,
    end: u64,
    out: &mut Vec<Segment>,
) {
    if level == layers.len() || begin >= end {
        return;
    }
    let segs = layers[level];
    let first = segs.partition_point(|m| m.end() <= begin);
    for m in &segs[first..] {
        if m.offset >= end {
            break;
        }
        if m.length == 0 {
            continue;
        }
        if m.offset > begin {
            merge_level(layers, level + 1, begin, m.offset, out);
        }
        // Trim to [begin, end): only the first and last entries can stick out.
        let mut c = *m;
        if c.offset < begin {
            c = advance(c, begin);
        }
        if c.end() > end {
            c.length = (end - c.offset) as u32;
        }
        c.tag = level as u8;
        out.push(c);
        begin = m.end();
        if begin >= end {
            return;
        }
    }
    if begin < end {
        merge_level(layers, level + 1, begin, end, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seg(offset: u64, length: u32, moffset: u64) -> Segment {
        Segment {
            offset,
            length,
            moffset,
            zeroed: false,
            tag: 0,
        }
    }

    #[test]
    fn spec_example_b_override() {
        let mut ix = RwIndex::new();
        ix.insert(seg(0, 16, 8));
        ix.insert(seg(8, 4, 24));
        assert_eq!(
            ix.segments(),
            vec![seg(0, 8, 8), seg(8, 4, 24), seg(12, 4, 20)]
        );
    }

    #[test]
    fn override_cases() {
        let mut ix = RwIndex::new();
        ix.insert(seg(10, 10, 100));
        ix.insert(seg(30, 10, 200));
        ix.insert(seg(15, 20, 300)); // trims the first, advances the second
        assert_eq!(
            ix.segments(),
            vec![seg(10, 5, 100), seg(15, 20, 300), seg(35, 5, 205)]
        );
        ix.insert(seg(0, 100, 400)); // covers everything
        assert_eq!(ix.segments(), vec![seg(0, 100, 400)]);
        ix.insert(seg(5, 0, 1)); // zero length ignored
        assert_eq!(ix.len(), 1);
        // A zeroed entry split keeps its moffset.
        let mut ix = RwIndex::new();
        ix.insert(Segment {
            zeroed: true,
            ..seg(0, 10, 50)
        });
        ix.insert(seg(4, 2, 60));
        let s = ix.segments();
        assert_eq!(s[2].offset, 6);
        assert_eq!(s[2].moffset, 50);
    }

    #[test]
    fn validate_rejects_overlap_and_range() {
        assert!(validate_ro(&[seg(0, 8, 8), seg(8, 8, 16)], 24, "ix", 0).is_ok());
        assert!(validate_ro(&[seg(0, 9, 8), seg(8, 8, 17)], 40, "ix", 0).is_err());
        assert!(validate_ro(&[seg(0, 8, 7)], 40, "ix", 0).is_err());
        assert!(validate_ro(&[seg(0, 8, 8)], 15, "ix", 0).is_err());
        let z = Segment {
            zeroed: true,
            ..seg(0, 8, 40)
        };
        assert!(validate_ro(&[z], 40, "ix", 0).is_ok());
        assert!(validate_ro(&[z], 39, "ix", 0).is_err());
    }

    /// Sector-by-sector model of a stack: top wins.
    fn model(layers: &[Vec<Segment>], n: u64) -> Vec<Option<(usize, u64, bool)>> {
        (0..n)
            .map(|lba| {
                for (level, segs) in layers.iter().enumerate() {
                    for s in segs {
                        if s.offset <= lba && lba < s.end() {
                            let m = if s.zeroed {
                                0
                            } else {
                                s.moffset + lba - s.offset
                            };
                            return Some((level, m, s.zeroed));
                        }
                    }
                }
                None
            })
            .collect()
    }

    fn layer_strategy() -> impl Strategy<Value = Vec<Segment>> {
        proptest::collection::vec((0u64..200, 1u32..40, any::<bool>()), 0..12).prop_map(|w| {
            let mut ix = RwIndex::new();
            for (i, (o, l, z)) in w.into_iter().enumerate() {
                ix.insert(Segment {
                    offset: o,
                    length: l,
                    moffset: 1000 * (i as u64 + 1),
                    zeroed: z,
                    tag: 0,
                });
            }
            ix.segments()
        })
    }

    proptest! {
        #[test]
        fn merge_matches_model(layers in proptest::collection::vec(layer_strategy(), 1..5)) {
            let refs: Vec<&[Segment]> = layers.iter().map(|v| v.as_slice()).collect();
            let merged = merge(&refs).unwrap();
            for w in merged.windows(2) {
                prop_assert!(w[0].end() <= w[1].offset);
            }
            let single: Vec<Vec<Segment>> = vec![merged.iter().map(|s| Segment { tag: 0, ..*s }).collect()];
            let want = model(&layers, 260);
            let got = model(&single, 260);
            for lba in 0..260usize {
                let w = want[lba].map(|(_, m, z)| (m, z));
                let g = got[lba].map(|(_, m, z)| (m, z));
                prop_assert_eq!(w, g, "lba {}", lba);
            }
            // Tags name the source level.
            for s in &merged {
                let src = &layers[s.tag as usize];
                prop_assert!(src.iter().any(|m| m.offset <= s.offset && s.end() <= m.end()));
            }
        }

        #[test]
        fn rw_replay_matches_model(w in proptest::collection::vec((0u64..200, 1u32..40), 0..20)) {
            let mut ix = RwIndex::new();
            let mut disk = vec![None; 260];
            for (i, (o, l)) in w.iter().enumerate() {
                let m = 1000 * (i as u64 + 1);
                ix.insert(seg(*o, *l, m));
                for k in 0..*l as u64 {
                    disk[(o + k) as usize] = Some(m + k);
                }
            }
            let segs = ix.segments();
            for w in segs.windows(2) { prop_assert!(w[0].end() <= w[1].offset); }
            let got = model(&[segs], 260);
            for lba in 0..260 {
                prop_assert_eq!(got[lba].map(|x| x.1), disk[lba]);
            }
        }
    }
}
