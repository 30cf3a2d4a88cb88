//! The parallel helpers, one module each, shared by every operation:
//!
//! - `split`: one large read cut into pieces for idle pool threads;
//! - `ordered`: jobs on a pool, results consumed in submission order, a
//!   bounded number outstanding;
//! - `turns`: many threads fill pieces of one new file, one at a time
//!   writes.

pub(crate) mod ordered;
pub(crate) mod split;
pub(crate) mod turns;

/// Workers started at most per core, whatever a caller asks for: more only
/// add switching and memory.
pub const MAX_THREADS_PER_CORE: usize = 4;

/// `threads` workers (0 = one per core), bounded by
/// [`MAX_THREADS_PER_CORE`] per core.
pub fn bounded_threads(threads: usize) -> usize {
    let cores = default_threads();
    match threads {
        0 => cores,
        n => n.min(cores * MAX_THREADS_PER_CORE),
    }
}

/// The number of worker threads to use when the caller says 0: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
