//! SIMD node search for the merged index's B+ tree (x86-64 only).
//!
//! The crate denies `unsafe`; this module is the exception, and it is small on
//! purpose. The unsafety is of two kinds, each argued at its site:
//! - calling a `#[target_feature]` function, sound only on a CPU that has the
//!   feature: every entry point checks [`has_avx512`] / [`has_avx2`]
//!   (runtime CPU detection, cached by std), or that the index was built for
//!   the kernel, which `MergedIndex::build_with` allows only after that check;
//! - aligned vector loads from raw pointers: every pointer comes from a
//!   reference to a `#[repr(align(64))]` 64-byte node or line, so it is valid
//!   for 64 bytes of reads and 64-byte aligned.
//!
//! The search is the same as `MergedIndex::lookup_portable`; the proptests in
//! `index.rs` compare every kernel against binary search.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::index::{descend, narrow, Kernel, Keys, Line, MergedIndex, Node32, Node64};

/// True when this CPU runs the AVX-512 kernel.
#[inline]
pub(crate) fn has_avx512() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("popcnt")
}

/// True when this CPU runs the AVX2 kernel.
#[inline]
pub(crate) fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("popcnt")
}

/// AVX-512 lookup (`lba` ≤ `MAX_QUERY`, index not empty).
#[inline]
pub(crate) fn lookup_avx512(ix: &MergedIndex, lba: u64) -> usize {
    assert!(has_avx512());
    // SAFETY: the CPU has AVX-512F and POPCNT (checked just above).
    unsafe { lookup_avx512_impl(ix, lba) }
}

/// AVX2 lookup, as [`lookup_avx512`].
#[inline]
pub(crate) fn lookup_avx2(ix: &MergedIndex, lba: u64) -> usize {
    assert!(has_avx2());
    // SAFETY: the CPU has AVX2 and POPCNT (checked just above).
    unsafe { lookup_avx2_impl(ix, lba) }
}

/// AVX-512 lookup for an index built for it (`lba` ≤ `MAX_QUERY`, index
/// not empty).
#[inline]
pub(crate) fn lookup_avx512_built(ix: &MergedIndex, lba: u64) -> usize {
    if ix.kernel() != Kernel::Avx512 {
        return ix.lookup_portable(lba);
    }
    // SAFETY: an index's kernel is AVX-512 only when `has_avx512()` held
    // when it was built (`MergedIndex::build_with`), and a running process
    // does not lose CPU features.
    unsafe { lookup_avx512_impl(ix, lba) }
}

/// AVX2 lookup for an index built for it, as [`lookup_avx512_built`].
#[inline]
pub(crate) fn lookup_avx2_built(ix: &MergedIndex, lba: u64) -> usize {
    if ix.kernel() != Kernel::Avx2 {
        return ix.lookup_portable(lba);
    }
    // SAFETY: as above, with `has_avx2()`.
    unsafe { lookup_avx2_impl(ix, lba) }
}

#[target_feature(enable = "avx512f,popcnt")]
fn lookup_avx512_impl(ix: &MergedIndex, lba: u64) -> usize {
    let c = match &ix.keys {
        Keys::U32(nodes) => {
            let xv = _mm512_set1_epi32(narrow(lba) as i32);
            descend::<17, _>(nodes, &ix.levels, |n: &Node32| {
                // SAFETY: `n` is a 64-byte, 64-aligned node (module docs).
                let k = unsafe { _mm512_load_si512(n.0.as_ptr().cast()) };
                _mm512_cmple_epu32_mask(k, xv).count_ones() as usize
            })
        }
        Keys::U64(nodes) => {
            let xv = _mm512_set1_epi64(lba as i64);
            descend::<9, _>(nodes, &ix.levels, |n: &Node64| {
                // SAFETY: as above.
                let k = unsafe { _mm512_load_si512(n.0.as_ptr().cast()) };
                _mm512_cmple_epu64_mask(k, xv).count_ones() as usize
            })
        }
    };
    let line = c.saturating_sub(1);
    let l: &Line = &ix.lines[line];
    // SAFETY: a line is 64 bytes and 64-aligned (module docs).
    let v = unsafe { _mm512_load_si512((l as *const Line).cast()) };
    // Lanes 0, 2, 4, 6 hold `lo` = offset | length << 50.
    let offsets = _mm512_and_si512(v, _mm512_set1_epi64(((1u64 << 50) - 1) as i64));
    let ends = _mm512_add_epi64(offsets, _mm512_srli_epi64::<50>(v));
    let m = _mm512_mask_cmple_epu64_mask(0x55, ends, _mm512_set1_epi64(lba as i64));
    line * 4 + m.count_ones() as usize
}

#[target_feature(enable = "avx2,popcnt")]
fn lookup_avx2_impl(ix: &MergedIndex, lba: u64) -> usize {
    let c = match &ix.keys {
        Keys::U32(nodes) => {
            let xv = _mm256_set1_epi32(narrow(lba) as i32);
            descend::<17, _>(nodes, &ix.levels, |n: &Node32| {
                let p = n.0.as_ptr().cast::<__m256i>();
                // SAFETY: `n` is a 64-byte, 64-aligned node: both 32-byte
                // halves are in bounds and 32-aligned.
                let (a, b) = unsafe { (_mm256_load_si256(p), _mm256_load_si256(p.add(1))) };
                // Narrow keys and queries are below 2^31: signed compares.
                let ga = _mm256_cmpgt_epi32(a, xv);
                let gb = _mm256_cmpgt_epi32(b, xv);
                let ma = _mm256_movemask_ps(_mm256_castsi256_ps(ga)) as u32;
                let mb = _mm256_movemask_ps(_mm256_castsi256_ps(gb)) as u32;
                16 - (ma | mb << 8).count_ones() as usize
            })
        }
        Keys::U64(nodes) => {
            // Wide keys and queries are below 2^63: signed compares.
            let xv = _mm256_set1_epi64x(lba as i64);
            descend::<9, _>(nodes, &ix.levels, |n: &Node64| {
                let p = n.0.as_ptr().cast::<__m256i>();
                // SAFETY: as above.
                let (a, b) = unsafe { (_mm256_load_si256(p), _mm256_load_si256(p.add(1))) };
                let ga = _mm256_cmpgt_epi64(a, xv);
                let gb = _mm256_cmpgt_epi64(b, xv);
                let ma = _mm256_movemask_pd(_mm256_castsi256_pd(ga)) as u32;
                let mb = _mm256_movemask_pd(_mm256_castsi256_pd(gb)) as u32;
                8 - (ma | mb << 4).count_ones() as usize
            })
        }
    };
    let line = c.saturating_sub(1);
    let n: usize = ix.lines[line]
        .0
        .iter()
        .map(|m| (m.end() <= lba) as usize)
        .sum();
    line * 4 + n
}
