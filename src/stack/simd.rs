//! SIMD node search for the merged index's B+ tree (x86-64 only).
//!
//! The crate denies `unsafe`; this module is the exception, and it is small on
//! purpose. The unsafety is of two kinds, each argued at its site:
//! - calling a `#[target_feature]` function, sound only on a CPU that has the
//!   feature: every entry point is reached through [`has_avx512`] /
//!   [`has_avx2`] checks (runtime CPU detection, cached by std);
//! - aligned vector loads from raw pointers: every pointer comes from a
//!   reference to a `#[repr(align(64))]` 64-byte node or line, so it is valid
//!   for 64 bytes of reads and 64-byte aligned.
//!
//! The search is the same as [`MergedIndex::line_portable`]; the proptests in
//! `index.rs` compare every kernel against binary search.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::index::{descend, narrow, Keys, Line, MergedIndex, Node32, Node64};

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

/// AVX-512 search: `(lines with first offset ≤ x, mappings of the last such
/// line with offset ≤ x)`.
#[inline]
pub(crate) fn line_avx512(ix: &MergedIndex, x: u64) -> (usize, usize) {
    assert!(has_avx512());
    // SAFETY: the CPU has AVX-512F and POPCNT (checked just above).
    unsafe { line_avx512_impl(ix, x) }
}

/// AVX2 search, as [`line_avx512`].
#[inline]
pub(crate) fn line_avx2(ix: &MergedIndex, x: u64) -> (usize, usize) {
    assert!(has_avx2());
    // SAFETY: the CPU has AVX2 and POPCNT (checked just above).
    unsafe { line_avx2_impl(ix, x) }
}

#[target_feature(enable = "avx512f,popcnt")]
fn line_avx512_impl(ix: &MergedIndex, x: u64) -> (usize, usize) {
    let c = match &ix.keys {
        Keys::U32(nodes) => {
            let xv = _mm512_set1_epi32(narrow(x) as i32);
            descend::<17, _>(nodes, &ix.levels, |n: &Node32| {
                // SAFETY: `n` is a 64-byte, 64-aligned node (module docs).
                let k = unsafe { _mm512_load_si512(n.0.as_ptr().cast()) };
                _mm512_cmple_epu32_mask(k, xv).count_ones() as usize
            })
        }
        Keys::U64(nodes) => {
            let xv = _mm512_set1_epi64(x as i64);
            descend::<9, _>(nodes, &ix.levels, |n: &Node64| {
                // SAFETY: as above.
                let k = unsafe { _mm512_load_si512(n.0.as_ptr().cast()) };
                _mm512_cmple_epu64_mask(k, xv).count_ones() as usize
            })
        }
    };
    if c == 0 {
        return (0, 0);
    }
    let line: &Line = &ix.lines[c - 1];
    // SAFETY: a line is 64 bytes and 64-aligned (module docs).
    let v = unsafe { _mm512_load_si512((line as *const Line).cast()) };
    // Lanes 0, 2, 4, 6 are the `lo` words; their low 50 bits are the offsets.
    let offsets = _mm512_and_si512(v, _mm512_set1_epi64(((1u64 << 50) - 1) as i64));
    let m = _mm512_mask_cmple_epu64_mask(0x55, offsets, _mm512_set1_epi64(x as i64));
    (c, m.count_ones() as usize)
}

#[target_feature(enable = "avx2,popcnt")]
fn line_avx2_impl(ix: &MergedIndex, x: u64) -> (usize, usize) {
    let c = match &ix.keys {
        Keys::U32(nodes) => {
            let xv = _mm256_set1_epi32(narrow(x) as i32);
            descend::<17, _>(nodes, &ix.levels, |n: &Node32| {
                let p = n.0.as_ptr().cast::<__m256i>();
                // SAFETY: `n` is a 64-byte, 64-aligned node: both 32-byte
                // halves are in bounds and 32-aligned.
                let (a, b) = unsafe { (_mm256_load_si256(p), _mm256_load_si256(p.add(1))) };
                // k ≤ x  ⇔  max(k, x) = x (unsigned).
                let la = _mm256_cmpeq_epi32(_mm256_max_epu32(a, xv), xv);
                let lb = _mm256_cmpeq_epi32(_mm256_max_epu32(b, xv), xv);
                let ma = _mm256_movemask_ps(_mm256_castsi256_ps(la)) as u32;
                let mb = _mm256_movemask_ps(_mm256_castsi256_ps(lb)) as u32;
                (ma | mb << 8).count_ones() as usize
            })
        }
        Keys::U64(nodes) => {
            // Unsigned compare as signed compare of sign-flipped values.
            let bias = _mm256_set1_epi64x(i64::MIN);
            let xv = _mm256_xor_si256(_mm256_set1_epi64x(x as i64), bias);
            descend::<9, _>(nodes, &ix.levels, |n: &Node64| {
                let p = n.0.as_ptr().cast::<__m256i>();
                // SAFETY: as above.
                let (a, b) = unsafe { (_mm256_load_si256(p), _mm256_load_si256(p.add(1))) };
                let ga = _mm256_cmpgt_epi64(_mm256_xor_si256(a, bias), xv);
                let gb = _mm256_cmpgt_epi64(_mm256_xor_si256(b, bias), xv);
                let ma = _mm256_movemask_pd(_mm256_castsi256_pd(ga)) as u32;
                let mb = _mm256_movemask_pd(_mm256_castsi256_pd(gb)) as u32;
                8 - (ma | mb << 4).count_ones() as usize
            })
        }
    };
    if c == 0 {
        return (0, 0);
    }
    let l = &ix.lines[c - 1].0;
    let n = l.iter().map(|m| (m.offset() <= x) as usize).sum();
    (c, n)
}
