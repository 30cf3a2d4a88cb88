//! The merged index of a stack and its lookup structure.
//!
//! # Layout
//! Mappings are stored packed, 16 bytes each, in the on-disk entry's bit
//! layout (§3.3): `lo = offset | length << 50`, `hi = moffset | zeroed << 55 |
//! layer << 56`. Four mappings make one 64-byte, cache-line-aligned *line*.
//!
//! The lookup structure is a static B+ tree (a "linearized" B+ tree, as the
//! reference calls it, §4.4) over the first offset of every line. Its nodes are
//! one cache line each: 16 `u32` keys while every offset is below 2^31 − 1
//! sectors (virtual disks below 1 TiB), else 8 `u64` keys. Levels are stored top
//! first; node `k` of level `h + 1` has children `F·k ..= F·k + F − 1` of level
//! `h` (`F` = keys per node + 1), and its key `i` is the smallest key of child
//! `F·k + i + 1`, padding keys being the maximum. Searching a node means
//! counting its keys `≤ x` — no branches, and one SIMD compare plus a popcount
//! on CPUs that have it ([`Kernel`]). The bottom level yields a line, one more
//! count inside the line yields the mapping.
//!
//! # Memory
//! Per merged mapping: 16 bytes of mapping, plus the tree: one key per four
//! mappings at the bottom level (1 byte per mapping with `u32` keys, 2 with
//! `u64` keys) and a geometric tail above it (1/17 resp. 1/9 of that). So
//! about 17.1 bytes per mapping (u32 keys) or 18.3 (u64 keys), plus less than
//! one line and one node per level of rounding. [`MergedIndex::heap_bytes`]
//! reports the exact figure.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::format::lsmt::segment::MAX_MOFFSET;

/// Largest value of the 50-bit offset field.
const OFFSET_MASK: u64 = (1 << 50) - 1;
/// The largest offset a real mapping can start at (2^50 − 1 marks padding,
/// and no decoded entry has it). Queries are clamped to it for searching.
///
/// The search proper needs `lba ≤ MAX_QUERY`: then no padding entry (end
/// 2^50 − 1) ends at or before it, and the last line of the lines whose first
/// offset is `≤ lba` holds the answer or is followed by it, so the answer is
/// `4 · line + (mappings of that line ending at or before lba)`. Larger
/// queries take a cold binary search.
pub(crate) const MAX_QUERY: u64 = OFFSET_MASK - 1;

/// One merged-index entry, decoded. Quantities are sectors, like the
/// on-disk index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// First LBA.
    pub offset: u64,
    /// Physical sector in the layer's view (unused when zeroed).
    pub moffset: u64,
    /// Sectors.
    pub length: u32,
    /// Layer number, bottom first.
    pub layer: u16,
    /// Reads as zeros.
    pub zeroed: bool,
}

impl Mapping {
    /// One past the last LBA.
    #[inline]
    pub fn end(&self) -> u64 {
        self.offset + self.length as u64
    }
}

/// A mapping in 16 bytes, laid out like the on-disk index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct PackedMapping {
    lo: u64,
    hi: u64,
}
const _: () = assert!(core::mem::size_of::<PackedMapping>() == 16);

/// A padding entry: offset 2^50 − 1 (never `≤` a clamped query), length 0.
const PAD: PackedMapping = PackedMapping {
    lo: OFFSET_MASK,
    hi: 0,
};

impl PackedMapping {
    /// Packs `m`, or `None` when a field does not fit (offset ≥ 2^50 − 1,
    /// length ≥ 2^14, moffset ≥ 2^55, layer ≥ 256).
    pub fn pack(m: &Mapping) -> Option<Self> {
        if m.offset > MAX_QUERY
            || m.length >= 1 << 14
            || m.moffset > MAX_MOFFSET
            || m.layer > u8::MAX as u16
        {
            return None;
        }
        Some(PackedMapping {
            lo: m.offset | (m.length as u64) << 50,
            hi: m.moffset | (m.zeroed as u64) << 55 | (m.layer as u64) << 56,
        })
    }

    /// First LBA.
    #[inline]
    pub fn offset(&self) -> u64 {
        self.lo & OFFSET_MASK
    }
    /// Sectors.
    #[inline]
    pub fn length(&self) -> u32 {
        (self.lo >> 50) as u32
    }
    /// One past the last LBA.
    #[inline]
    pub fn end(&self) -> u64 {
        self.offset() + self.length() as u64
    }
    /// Physical sector in the layer's view.
    #[inline]
    pub fn moffset(&self) -> u64 {
        self.hi & MAX_MOFFSET
    }
    /// Reads as zeros.
    #[inline]
    pub fn zeroed(&self) -> bool {
        (self.hi >> 55) & 1 == 1
    }
    /// Layer number, bottom first.
    #[inline]
    pub fn layer(&self) -> u16 {
        (self.hi >> 56) as u16
    }
    /// The decoded mapping.
    #[inline]
    pub fn unpack(&self) -> Mapping {
        Mapping {
            offset: self.offset(),
            moffset: self.moffset(),
            length: self.length(),
            layer: self.layer(),
            zeroed: self.zeroed(),
        }
    }
}

/// Four mappings: one cache line, the tree's leaf.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, align(64))]
pub(crate) struct Line(pub(crate) [PackedMapping; 4]);

/// A tree node with 16 `u32` keys.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Node32(pub(crate) [u32; 16]);

/// A tree node with 8 `u64` keys.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Node64(pub(crate) [u64; 8]);

/// Which node-search code a lookup runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AVX-512F compares into a mask register, then popcount.
    Avx512,
    /// AVX2 compares, movemask, popcount.
    Avx2,
    /// Plain Rust counting loops (the compiler vectorizes them with SSE2).
    Portable,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn best() -> Kernel {
        Kernel::all()
            .into_iter()
            .find(|k| k.supported())
            .unwrap_or(Kernel::Portable)
    }

    /// Every kernel, fastest first.
    pub fn all() -> [Kernel; 3] {
        [Kernel::Avx512, Kernel::Avx2, Kernel::Portable]
    }

    /// True when this CPU can run the kernel.
    pub fn supported(self) -> bool {
        match self {
            Kernel::Portable => true,
            #[cfg(obd_simd)]
            Kernel::Avx512 => super::simd::has_avx512(),
            #[cfg(obd_simd)]
            Kernel::Avx2 => super::simd::has_avx2(),
            #[cfg(not(obd_simd))]
            _ => false,
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512",
            Kernel::Avx2 => "avx2",
            Kernel::Portable => "portable",
        }
    }
}

/// The tree's key levels, top level first.
#[derive(Debug, Clone)]
pub(crate) enum Keys {
    /// 16 u32 keys per node.
    U32(Vec<Node32>),
    /// 8 u64 keys per node.
    U64(Vec<Node64>),
}

/// The merged index: packed mappings in LBA order and a B+ tree over them.
#[derive(Debug, Clone)]
pub struct MergedIndex {
    pub(crate) lines: Vec<Line>,
    len: usize,
    pub(crate) keys: Keys,
    /// Node offset of each level in `keys`, bottom level first.
    pub(crate) levels: Vec<usize>,
    kernel: Kernel,
    /// The radix front table: the lines whose first offset is below
    /// `b << shift` number `radix[b]`, so the line holding a query `x` is among lines
    /// `radix[x >> shift] .. radix[(x >> shift) + 1]` (see [`MergedIndex::lookup`]).
    radix: Vec<u32>,
    radix_shift: u32,
}

impl Default for MergedIndex {
    fn default() -> Self {
        MergedIndex::build(&[])
    }
}

impl MergedIndex {
    /// Builds the index from mappings that are sorted, non-overlapping and
    /// packable (see [`PackedMapping::pack`]).
    pub fn build(mappings: &[PackedMapping]) -> Self {
        Self::build_with(mappings, Kernel::best())
    }

    /// As [`MergedIndex::build`], running `kernel` for lookups (falls back to
    /// the best supported one when this CPU cannot run it).
    pub fn build_with(mappings: &[PackedMapping], kernel: Kernel) -> Self {
        let kernel = if kernel.supported() {
            kernel
        } else {
            Kernel::best()
        };
        let len = mappings.len();
        let mut lines: Vec<Line> = Vec::with_capacity(len.div_ceil(4));
        super::mem::hint_huge(&lines);
        for c in mappings.chunks(4) {
            let mut l = Line([PAD; 4]);
            l.0[..c.len()].copy_from_slice(c);
            lines.push(l);
        }
        let firsts = lines.iter().map(|l| l.0[0].offset());
        let last = lines.last().map_or(0, |l| l.0[0].offset());
        let (keys, levels) = if last < PAD32 as u64 {
            let k: Vec<u32> = firsts.map(|o| o as u32).collect();
            let (nodes, levels) = build_levels::<16, u32>(&k, PAD32);
            (Keys::U32(nodes.into_iter().map(Node32).collect()), levels)
        } else {
            let k: Vec<u64> = firsts.collect();
            let (nodes, levels) = build_levels::<8, u64>(&k, PAD64);
            (Keys::U64(nodes.into_iter().map(Node64).collect()), levels)
        };
        // With AVX-512 the tree alone is as fast at ten thousand mappings and
        // faster at a million: that kernel goes without the table.
        let (radix, radix_shift) = if kernel == Kernel::Avx512 {
            (Vec::new(), 0)
        } else {
            build_radix(&lines)
        };
        MergedIndex {
            lines,
            len,
            keys,
            levels,
            kernel,
            radix,
            radix_shift,
        }
    }

    /// Number of mappings.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is mapped.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The kernel lookups run.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// True when the tree's keys are 32 bits wide.
    pub fn narrow_keys(&self) -> bool {
        matches!(self.keys, Keys::U32(_))
    }

    /// The mappings as one slice, in LBA order.
    pub fn as_slice(&self) -> &[PackedMapping] {
        // Lines are whole, 64-aligned groups of 16-byte mappings: the cast
        // cannot fail.
        let all = <[PackedMapping]>::ref_from_bytes(self.lines.as_bytes())
            .expect("lines are whole, aligned mappings");
        &all[..self.len]
    }

    /// Mapping `i` (packed). Panics when `i >= len()`.
    #[inline]
    pub fn packed(&self, i: usize) -> &PackedMapping {
        assert!(i < self.len);
        &self.lines[i >> 2].0[i & 3]
    }

    /// Mapping `i` (packed), or `None` past the end.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&PackedMapping> {
        if i < self.len {
            Some(&self.lines[i >> 2].0[i & 3])
        } else {
            None
        }
    }

    /// The mappings in LBA order, decoded.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Mapping> + '_ {
        (0..self.len).map(move |i| self.lines[i >> 2].0[i & 3].unpack())
    }

    /// Heap bytes of mappings and tree together.
    pub fn heap_bytes(&self) -> usize {
        let keys = match &self.keys {
            Keys::U32(v) => v.capacity() * 64,
            Keys::U64(v) => v.capacity() * 64,
        };
        self.lines.capacity() * 64 + keys + self.levels.capacity() * 8 + self.radix.capacity() * 4
    }

    /// Index of the first mapping that ends after sector `lba` (`len()` when
    /// none does): the mapping holding `lba`, or else the next one.
    ///
    /// Most lookups are answered by the radix front table: one table load
    /// narrows the search to the lines whose first offset shares the query's
    /// top bits (about one line on average, as the table has a bucket per
    /// line), which are counted directly. Crowded buckets (skewed offsets),
    /// and indexes built for AVX-512, which have no table, use the tree.
    #[inline]
    pub fn lookup(&self, lba: u64) -> usize {
        if lba > MAX_QUERY || self.len == 0 {
            return self.lookup_slow(lba);
        }
        if let Some(i) = self.lookup_radix(lba) {
            return i;
        }
        self.lookup_tree(lba)
    }

    /// The radix step of [`MergedIndex::lookup`]: `None` when the index has
    /// no table or the query's bucket holds too many lines to count one by one.
    #[inline(always)]
    fn lookup_radix(&self, lba: u64) -> Option<usize> {
        if self.radix.is_empty() {
            return None;
        }
        let b = ((lba >> self.radix_shift) as usize).min(self.radix.len() - 2);
        let (lo, hi) = (self.radix[b] as usize, self.radix[b + 1] as usize);
        if hi - lo > RADIX_SCAN {
            return None;
        }
        // Lines lo..hi start inside the bucket; those before lo start below
        // `lba`, those from hi on above it. Count the ones that start ≤ lba
        // in the tree's bottom level, where line starts are packed 16 (or 8)
        // to a cache line.
        let c = match &self.keys {
            Keys::U32(nodes) => {
                let bottom = &nodes[self.levels[0]..];
                let x = narrow(lba);
                lo + (lo..hi)
                    .map(|i| (bottom[i >> 4].0[i & 15] <= x) as usize)
                    .sum::<usize>()
            }
            Keys::U64(nodes) => {
                let bottom = &nodes[self.levels[0]..];
                lo + (lo..hi)
                    .map(|i| (bottom[i >> 3].0[i & 7] <= lba) as usize)
                    .sum::<usize>()
            }
        };
        Some(self.within_line(c, lba))
    }

    /// The answer given `c`, the number of lines whose first offset is `≤ lba`.
    #[inline(always)]
    pub(crate) fn within_line(&self, c: usize, lba: u64) -> usize {
        let line = c.saturating_sub(1);
        let n: usize = self.lines[line]
            .0
            .iter()
            .map(|m| (m.end() <= lba) as usize)
            .sum();
        line * 4 + n
    }

    /// The tree step of [`MergedIndex::lookup`], with the index's kernel.
    #[inline]
    pub fn lookup_tree(&self, lba: u64) -> usize {
        if lba > MAX_QUERY || self.len == 0 {
            return self.lookup_slow(lba);
        }
        // `kernel` was checked against the CPU when the index was built:
        // no feature detection per lookup.
        match self.kernel {
            #[cfg(obd_simd)]
            Kernel::Avx512 => super::simd::lookup_avx512_built(self, lba),
            #[cfg(obd_simd)]
            Kernel::Avx2 => super::simd::lookup_avx2_built(self, lba),
            _ => self.lookup_portable(lba),
        }
    }

    /// [`MergedIndex::lookup`] with a given kernel (an unsupported kernel
    /// runs the portable one).
    #[inline]
    pub fn lookup_with(&self, kernel: Kernel, lba: u64) -> usize {
        if lba > MAX_QUERY || self.len == 0 {
            return self.lookup_slow(lba);
        }
        match kernel {
            #[cfg(obd_simd)]
            Kernel::Avx512 if super::simd::has_avx512() => super::simd::lookup_avx512(self, lba),
            #[cfg(obd_simd)]
            Kernel::Avx2 if super::simd::has_avx2() => super::simd::lookup_avx2(self, lba),
            _ => self.lookup_portable(lba),
        }
    }

    /// Binary search, for queries past every possible offset (where the
    /// padding entries would compare wrongly) and empty indexes.
    #[cold]
    fn lookup_slow(&self, lba: u64) -> usize {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.lines[mid >> 2].0[mid & 3].end() <= lba {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The portable lookup (`lba` ≤ [`MAX_QUERY`], index not empty).
    #[inline]
    pub(crate) fn lookup_portable(&self, lba: u64) -> usize {
        let c = match &self.keys {
            Keys::U32(nodes) => {
                // Keys and the query are below 2^31: `x + 2^31 − k` does not
                // wrap, and its top bit is set exactly when `k ≤ x`. Summing
                // top bits (rather than booleans) lets the compiler keep the
                // count in vector registers, with no popcount.
                let xb = narrow(lba) + (1 << 31);
                descend::<17, _>(nodes, &self.levels, |n: &Node32| {
                    n.0.iter().map(|&k| xb.wrapping_sub(k) >> 31).sum::<u32>() as usize
                })
            }
            Keys::U64(nodes) => descend::<9, _>(nodes, &self.levels, |n: &Node64| {
                // Keys and the query are below 2^50: the sign of `x − k` says
                // whether `k > x`.
                8 - n.0.iter().map(|&k| lba.wrapping_sub(k) >> 63).sum::<u64>() as usize
            }),
        };
        let line = c.saturating_sub(1);
        let n: usize = self.lines[line]
            .0
            .iter()
            .map(|m| (m.end() <= lba) as usize)
            .sum();
        line * 4 + n
    }
}

/// Most lines a radix bucket may hold before a lookup uses the tree instead.
const RADIX_SCAN: usize = 8;

/// Builds the radix front table over the lines' first offsets: one bucket
/// per line rounded up to a power of two (4 to 8 bytes per line, 1 to 2 per
/// mapping), so most buckets hold no line start and a lookup reads the table
/// and one line; two extra entries so that `radix[b + 1]` always exists.
fn build_radix(lines: &[Line]) -> (Vec<u32>, u32) {
    let n = lines.len();
    let buckets = n.next_power_of_two().max(1);
    let top = lines.last().map_or(0, |l| l.0[0].offset());
    let bits = 64 - top.leading_zeros();
    let shift = bits.saturating_sub(buckets.trailing_zeros());
    let mut radix = Vec::with_capacity(buckets + 2);
    let mut j = 0usize;
    for b in 0..buckets as u64 + 2 {
        let bound = b
            .checked_shl(shift)
            .filter(|v| v >> shift == b)
            .unwrap_or(u64::MAX);
        while j < n && lines[j].0[0].offset() < bound {
            j += 1;
        }
        radix.push(j as u32);
    }
    (radix, shift)
}

/// The padding key of narrow nodes. Narrow keys are used when every real
/// key is below it, so keys and (clamped) queries stay below 2^31 and
/// signed or wrapping arithmetic compares them correctly.
pub(crate) const PAD32: u32 = (1 << 31) - 1;
/// The padding key of wide nodes: above every query (queries are at most
/// [`MAX_QUERY`]) and below 2^63.
pub(crate) const PAD64: u64 = OFFSET_MASK;

/// A query as a narrow key: clamping to just below [`PAD32`] keeps every
/// comparison with a real key (all below it) and with padding.
#[inline(always)]
pub(crate) fn narrow(x: u64) -> u32 {
    x.min(PAD32 as u64 - 1) as u32
}

impl<'a> IntoIterator for &'a MergedIndex {
    type Item = Mapping;
    type IntoIter = Box<dyn ExactSizeIterator<Item = Mapping> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// Walks the tree from the top: at each node, `count(node)` keys are `≤ x`.
/// Returns the number of bottom-level keys `≤ x`. `F` is the fan-out.
#[inline(always)]
pub(crate) fn descend<const F: usize, N>(
    nodes: &[N],
    levels: &[usize],
    mut count: impl FnMut(&N) -> usize,
) -> usize {
    let mut k = 0usize;
    let mut h = levels.len() - 1;
    while h > 0 {
        k = k * F + count(&nodes[levels[h] + k]);
        h -= 1;
    }
    k * (F - 1) + count(&nodes[levels[0] + k])
}

/// Builds the levels over sorted `keys` with `B` keys per node: returns the
/// nodes (top level first) and each level's node offset, bottom first.
fn build_levels<const B: usize, K: Copy>(keys: &[K], pad: K) -> (Vec<[K; B]>, Vec<usize>) {
    let fanout = B + 1;
    // Node counts per level, bottom first; there is always one level.
    let mut counts = vec![keys.len().div_ceil(B).max(1)];
    while *counts.last().unwrap_or(&1) > 1 {
        let c = counts[counts.len() - 1];
        counts.push(c.div_ceil(fanout));
    }
    let total: usize = counts.iter().sum();
    let mut nodes = Vec::with_capacity(total);
    super::mem::hint_huge(&nodes);
    nodes.resize(total, [pad; B]);
    // Top level first in memory.
    let mut levels = vec![0usize; counts.len()];
    let mut at = 0;
    for h in (0..counts.len()).rev() {
        levels[h] = at;
        at += counts[h];
    }
    // Bottom level: the keys themselves.
    for (i, &k) in keys.iter().enumerate() {
        nodes[levels[0] + i / B][i % B] = k;
    }
    // Level h ≥ 1: key i of node k is the first key of the subtree of
    // level-(h−1) node F·k + i + 1, i.e. keys[(F·k + i + 1) · F^(h−1) · B].
    let mut span = B; // bottom keys under one level-(h−1) node
    for h in 1..counts.len() {
        for (k, node) in nodes[levels[h]..levels[h] + counts[h]]
            .iter_mut()
            .enumerate()
        {
            for (i, slot) in node.iter_mut().enumerate() {
                let child = fanout * k + i + 1;
                if let Some(&key) = child.checked_mul(span).and_then(|first| keys.get(first)) {
                    *slot = key;
                }
            }
        }
        span = span.saturating_mul(fanout);
    }
    (nodes, levels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mk(spec: &[(u64, u32)]) -> Vec<PackedMapping> {
        spec.iter()
            .enumerate()
            .map(|(i, &(offset, length))| {
                PackedMapping::pack(&Mapping {
                    offset,
                    moffset: 8 + i as u64,
                    length,
                    layer: (i % 3) as u16,
                    zeroed: i % 5 == 0,
                })
                .unwrap()
            })
            .collect()
    }

    fn reference(m: &[PackedMapping], lba: u64) -> usize {
        m.partition_point(|p| p.end() <= lba)
    }

    /// Sorted, non-overlapping mappings from (gap, length) pairs.
    fn layout(parts: &[(u64, u32)], base: u64) -> Vec<(u64, u32)> {
        let mut pos = base;
        parts
            .iter()
            .map(|&(gap, len)| {
                let o = pos + gap;
                pos = o + len as u64;
                (o, len)
            })
            .collect()
    }

    fn check_all(m: &[PackedMapping], probes: &[u64]) {
        for kernel in Kernel::all() {
            let ix = MergedIndex::build_with(m, kernel);
            for &lba in probes {
                let want = reference(m, lba);
                assert_eq!(ix.lookup_with(kernel, lba), want, "{kernel:?} lba {lba}");
                assert_eq!(ix.lookup(lba), want, "{kernel:?} radix+tree lba {lba}");
                assert_eq!(ix.lookup_slow(lba), want, "slow lba {lba}");
                if lba <= MAX_QUERY && !m.is_empty() {
                    if let Some(r) = ix.lookup_radix(lba) {
                        assert_eq!(r, want, "radix lba {lba}");
                    }
                }
            }
        }
    }

    #[test]
    fn pack_round_trips_and_bounds() {
        let m = Mapping {
            offset: MAX_QUERY,
            moffset: MAX_MOFFSET,
            length: (1 << 14) - 1,
            layer: 255,
            zeroed: true,
        };
        assert_eq!(PackedMapping::pack(&m).unwrap().unpack(), m);
        assert!(PackedMapping::pack(&Mapping { layer: 256, ..m }).is_none());
        assert!(PackedMapping::pack(&Mapping {
            length: 1 << 14,
            ..m
        })
        .is_none());
        assert!(PackedMapping::pack(&Mapping {
            offset: OFFSET_MASK,
            ..m
        })
        .is_none());
    }

    #[test]
    fn empty_and_tiny() {
        let ix = MergedIndex::build(&[]);
        assert_eq!(ix.lookup(0), 0);
        assert_eq!(ix.lookup(u64::MAX), 0);
        let m = mk(&[(10, 5)]);
        check_all(&m, &[0, 9, 10, 14, 15, 16, u64::MAX]);
    }

    #[test]
    fn every_lba_of_a_dense_layout() {
        // Enough mappings for three tree levels with u32 keys (4·16·17 < 1200).
        let parts: Vec<(u64, u32)> = (0..1200u64).map(|i| (i % 3, 1 + (i % 7) as u32)).collect();
        let m = mk(&layout(&parts, 0));
        let end = m.last().unwrap().end();
        let probes: Vec<u64> = (0..end + 3).collect();
        check_all(&m, &probes);
    }

    #[test]
    fn wide_keys_past_one_tib() {
        // Offsets from 2^31 − 1 sectors on force u64 keys.
        let parts: Vec<(u64, u32)> = (0..500u64).map(|i| (1 + (i % 4), 8)).collect();
        let m = mk(&layout(&parts, (1 << 31) - 300));
        let ix = MergedIndex::build(&m);
        assert!(!ix.narrow_keys());
        let mut probes: Vec<u64> = m
            .iter()
            .flat_map(|p| [p.offset(), p.end() - 1, p.end()])
            .collect();
        probes.extend([0, 1 << 31, 1 << 32, MAX_QUERY, OFFSET_MASK, u64::MAX]);
        check_all(&m, &probes);
    }

    #[test]
    fn narrow_key_boundary() {
        for (last, narrow) in [(PAD32 as u64 - 1, true), (PAD32 as u64, false)] {
            // The fifth mapping starts the second line: its offset is a key.
            let m = mk(&[(0, 8), (10, 8), (20, 8), (100, 8), (last, 8)]);
            let ix = MergedIndex::build(&m);
            assert_eq!(ix.narrow_keys(), narrow);
            check_all(
                &m,
                &[
                    0,
                    99,
                    last - 1,
                    last,
                    last + 7,
                    last + 8,
                    u32::MAX as u64,
                    u64::MAX,
                ],
            );
        }
    }

    #[test]
    fn queries_near_the_top_of_the_lba_space() {
        let m = mk(&[(0, 8), (MAX_QUERY - 5, 16000)]);
        check_all(
            &m,
            &[
                0,
                7,
                8,
                MAX_QUERY - 6,
                MAX_QUERY - 5,
                MAX_QUERY,
                OFFSET_MASK,
                MAX_QUERY + 15000,
                u64::MAX,
            ],
        );
    }

    #[test]
    fn memory_per_mapping() {
        let parts: Vec<(u64, u32)> = (0..100_000u64).map(|i| (i % 2, 8)).collect();
        let m = mk(&layout(&parts, 0));
        let ix = MergedIndex::build_with(&m, Kernel::Portable);
        let per = ix.heap_bytes() as f64 / m.len() as f64;
        assert!(per <= 19.5, "{per} bytes per mapping");
        let m = mk(&layout(&parts, 1 << 40));
        let ix = MergedIndex::build_with(&m, Kernel::Portable);
        let per = ix.heap_bytes() as f64 / m.len() as f64;
        assert!(per <= 20.5, "{per} bytes per mapping");
    }

    #[test]
    fn crowded_radix_buckets_fall_back_to_the_tree() {
        // 4000 small mappings packed together, then one far away: nearly
        // every line lands in the first bucket.
        let mut parts: Vec<(u64, u32)> = (0..4000u64).map(|i| (i % 2, 1)).collect();
        parts.push((1 << 40, 8));
        let m = mk(&layout(&parts, 0));
        let ix = MergedIndex::build_with(&m, Kernel::Portable);
        assert!(
            ix.lookup_radix(100).is_none(),
            "a crowded bucket is not scanned"
        );
        let end = m[m.len() - 2].end();
        let mut probes: Vec<u64> = (0..end + 2).collect();
        probes.extend([
            1 << 39,
            (1 << 40) - 1,
            1 << 40,
            (1 << 40) + 7,
            (1 << 40) + 8,
        ]);
        check_all(&m, &probes);
        // Evenly spread offsets: every lookup is a radix lookup.
        let parts: Vec<(u64, u32)> = (0..4000u64).map(|i| (3 + i % 5, 4)).collect();
        let m = mk(&layout(&parts, 0));
        let ix = MergedIndex::build_with(&m, Kernel::Portable);
        let end = m.last().unwrap().end();
        assert!((0..end).all(|x| ix.lookup_radix(x).is_some()));
        check_all(&m, &(0..end + 2).collect::<Vec<_>>());
    }

    proptest! {
        #[test]
        fn lookup_matches_binary_search(
            parts in proptest::collection::vec((0u64..50, 1u32..64), 0..3000),
            base in prop_oneof![Just(0u64), 0u64..1000, Just((1u64 << 31) - 5000), Just((1u64 << 32) - 5000), (1u64 << 33)..(1u64 << 49)],
            probes in proptest::collection::vec(any::<u64>(), 0..200),
        ) {
            let m = mk(&layout(&parts, base));
            let end = m.last().map_or(base, |p| p.end());
            let span = end - base + 10;
            let mut all: Vec<u64> = probes.iter().map(|p| base.saturating_sub(5) + p % span).collect();
            all.extend(probes.iter().take(10));
            for kernel in Kernel::all() {
                let ix = MergedIndex::build_with(&m, kernel);
                for &lba in &all {
                    prop_assert_eq!(ix.lookup_with(kernel, lba), reference(&m, lba), "{:?} lba {}", kernel, lba);
                    prop_assert_eq!(ix.lookup(lba), reference(&m, lba), "{:?} radix lba {}", kernel, lba);
                }
            }
        }
    }
}
