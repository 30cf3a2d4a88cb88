//! A huge-page hint for the merged index's large arrays (Linux).
//!
//! A merged index of a million mappings is 17 MB; looked up at random, its
//! 4 KiB pages miss the TLB on almost every lookup, which costs more than the
//! search itself (more so under a hypervisor, with two-level page walks).
//! `madvise(MADV_HUGEPAGE)` asks the kernel to back the array with 2 MiB
//! pages where transparent huge pages are enabled in `madvise` or `always`
//! mode; elsewhere it does nothing.
#![allow(unsafe_code)]

/// Smallest capacity worth the hint, in bytes.
const MIN_BYTES: usize = 4 << 20;

/// Hints that the not yet touched capacity of `v` be backed by huge pages.
/// Best-effort: errors are ignored.
pub(crate) fn hint_huge<T>(v: &Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = v.capacity() * std::mem::size_of::<T>();
        if bytes < MIN_BYTES {
            return;
        }
        let start = v.as_ptr() as usize;
        let a = start.next_multiple_of(HUGE);
        let b = (start + bytes) & !(HUGE - 1);
        if b > a {
            // SAFETY: `[a, b)` lies inside `v`'s allocation, and
            // MADV_HUGEPAGE only changes how the kernel backs those pages:
            // their contents and validity are unchanged.
            unsafe {
                libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}
