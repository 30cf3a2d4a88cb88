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

/// The number of worker threads to use when the caller says 0: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
