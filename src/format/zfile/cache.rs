//! A cache of decompressed ZFile blocks: sharded, bounded by bytes.
//!
//! One [`BlockCache`] can serve every ZFile of a stack: each ZFile registers
//! once and gets its own key space, and all of them share one byte budget.
//! The cache is split into up to 64 shards, each a `Mutex` over a hash map
//! and a CLOCK ring (second chance: a hit marks an entry, eviction skips a
//! marked entry once). Copies in and out happen under the shard lock; a block
//! is at most 64 KiB, so the lock is held for a few hundred nanoseconds.
//! Evicted buffers are kept for reuse, so a cache that is full does not
//! allocate for each new block.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes counted for an entry beyond its data (map, slot and allocator).
const ENTRY_OVERHEAD: usize = 64;
/// Evicted buffers kept per shard for reuse.
const MAX_SPARE: usize = 8;
/// Most shards; a shard gets at least [`MIN_SHARD_BYTES`].
const MAX_SHARDS: usize = 64;
/// Smallest budget worth a shard of its own.
const MIN_SHARD_BYTES: u64 = 1 << 20;

/// How big a block cache is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOptions {
    /// Budget in bytes for decompressed blocks (with a small per-block
    /// overhead counted in); 0 turns the cache off.
    pub size: u64,
}

impl CacheOptions {
    /// The default budget: 64 MiB.
    pub const DEFAULT_SIZE: u64 = 64 << 20;

    /// No cache.
    pub fn off() -> Self {
        CacheOptions { size: 0 }
    }
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            size: Self::DEFAULT_SIZE,
        }
    }
}

/// Counters of a cache, summed over its shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Reads served from the cache.
    pub hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Blocks stored.
    pub inserts: u64,
    /// Blocks dropped to make room.
    pub evictions: u64,
    /// Blocks held now.
    pub entries: u64,
    /// Bytes held now (overhead included).
    pub bytes: u64,
}

/// A shared, sharded cache of decompressed blocks. Cloning is cheap (one
/// `Arc`); clones share the cache.
#[derive(Clone)]
pub struct BlockCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("capacity", &self.capacity())
            .field("shards", &self.inner.shards.len())
            .finish()
    }
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    /// `64 - log2(shards)`: the hash's top bits pick the shard.
    shift: u32,
    capacity: u64,
    next_file: AtomicU64,
}

/// (file, block).
type Key = (u64, u64);

#[derive(Default)]
struct Shard {
    map: HashMap<Key, u32, BuildHasherDefault<KeyHasher>>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    hand: usize,
    bytes: usize,
    cap: usize,
    spare: Vec<Box<[u8]>>,
    stats: CacheStats,
}

struct Slot {
    key: Key,
    data: Box<[u8]>,
    live: bool,
    referenced: bool,
}

/// FxHash-style mixing: keys are two integers, no need for SipHash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

#[inline]
fn shard_hash(key: Key) -> u64 {
    (key.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ key.1).wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

impl BlockCache {
    /// A cache with `opts.size` bytes of budget (nothing is allocated until
    /// blocks come in).
    pub fn new(opts: CacheOptions) -> Self {
        let want = (opts.size / MIN_SHARD_BYTES).clamp(1, MAX_SHARDS as u64);
        // Round down to a power of two.
        let n = 1usize << (63 - want.leading_zeros());
        let cap = (opts.size / n as u64) as usize;
        let shards = (0..n)
            .map(|_| {
                Mutex::new(Shard {
                    cap,
                    ..Default::default()
                })
            })
            .collect();
        BlockCache {
            inner: Arc::new(Inner {
                shards,
                shift: 64 - n.trailing_zeros(),
                capacity: opts.size,
                next_file: AtomicU64::new(1),
            }),
        }
    }

    /// The byte budget.
    pub fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// A fresh key space for one file.
    pub fn register(&self) -> u64 {
        self.inner.next_file.fetch_add(1, Ordering::Relaxed)
    }

    /// Counters summed over the shards.
    pub fn stats(&self) -> CacheStats {
        let mut s = CacheStats::default();
        for sh in self.inner.shards.iter() {
            let g = lock(sh);
            s.hits += g.stats.hits;
            s.misses += g.stats.misses;
            s.inserts += g.stats.inserts;
            s.evictions += g.stats.evictions;
            s.entries += g.map.len() as u64;
            s.bytes += g.bytes as u64;
        }
        s
    }

    /// Drops every block.
    pub fn clear(&self) {
        for sh in self.inner.shards.iter() {
            let mut g = lock(sh);
            let cap = g.cap;
            let stats = g.stats;
            *g = Shard {
                cap,
                stats,
                ..Default::default()
            };
        }
    }

    #[inline]
    fn shard(&self, key: Key) -> &Mutex<Shard> {
        let i = if self.inner.shift >= 64 {
            0
        } else {
            (shard_hash(key) >> self.inner.shift) as usize
        };
        &self.inner.shards[i]
    }

    /// Copies `out.len()` bytes of block `(file, block)` from byte `within`
    /// into `out`; false (and `out` untouched) when the block is not cached.
    pub fn read(&self, file: u64, block: u64, within: usize, out: &mut [u8]) -> bool {
        let key = (file, block);
        let mut g = lock(self.shard(key));
        let hit = match g.map.get(&key) {
            Some(&i) => {
                let slot = &mut g.slots[i as usize];
                slot.referenced = true;
                match slot.data.get(within..within + out.len()) {
                    Some(src) => {
                        out.copy_from_slice(src);
                        true
                    }
                    None => false,
                }
            }
            None => false,
        };
        if hit {
            g.stats.hits += 1;
        } else {
            g.stats.misses += 1;
        }
        hit
    }

    /// True when `(file, block)` is cached (counts nothing).
    pub fn contains(&self, file: u64, block: u64) -> bool {
        let key = (file, block);
        lock(self.shard(key)).map.contains_key(&key)
    }

    /// A buffer of `len` bytes to decompress into: a recycled one when the
    /// shard has one, else a new one. Give it back with [`BlockCache::insert`].
    pub fn buffer(&self, file: u64, block: u64, len: usize) -> Box<[u8]> {
        let key = (file, block);
        let reused = {
            let mut g = lock(self.shard(key));
            g.spare
                .iter()
                .rposition(|b| b.len() == len)
                .map(|i| g.spare.swap_remove(i))
        };
        reused.unwrap_or_else(|| vec![0u8; len].into_boxed_slice())
    }

    /// Stores block `(file, block)`, evicting as needed; a block already
    /// present is kept and `data` recycled. Blocks larger than a shard's
    /// budget are not stored.
    pub fn insert(&self, file: u64, block: u64, data: Box<[u8]>) {
        let key = (file, block);
        let mut g = lock(self.shard(key));
        g.insert(key, data);
    }

    /// Stores a copy of `data` as block `(file, block)`.
    pub fn insert_copy(&self, file: u64, block: u64, data: &[u8]) {
        let key = (file, block);
        let mut g = lock(self.shard(key));
        if g.map.contains_key(&key) || data.len() + ENTRY_OVERHEAD > g.cap {
            return;
        }
        let mut buf = match g.spare.iter().rposition(|b| b.len() == data.len()) {
            Some(i) => g.spare.swap_remove(i),
            None => {
                // Allocate without holding the lock.
                drop(g);
                let b = vec![0u8; data.len()].into_boxed_slice();
                g = lock(self.shard(key));
                b
            }
        };
        buf.copy_from_slice(data);
        g.insert(key, buf);
    }
}

/// Locks a shard; a poisoned lock (a panic while holding it) still guards a
/// consistent shard, since no code path panics between updates.
#[inline]
fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shard {
    fn insert(&mut self, key: Key, data: Box<[u8]>) {
        let need = data.len() + ENTRY_OVERHEAD;
        if self.map.contains_key(&key) || need > self.cap {
            self.recycle(data);
            return;
        }
        self.make_room(need);
        let slot = Slot {
            key,
            data,
            live: true,
            referenced: false,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.map.insert(key, i);
        self.bytes += need;
        self.stats.inserts += 1;
    }

    fn recycle(&mut self, data: Box<[u8]>) {
        if self.spare.len() < MAX_SPARE && !data.is_empty() {
            self.spare.push(data);
        }
    }

    /// CLOCK: evicts until `need` more bytes fit.
    fn make_room(&mut self, need: usize) {
        while self.bytes + need > self.cap && !self.map.is_empty() {
            let i = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            let s = &mut self.slots[i];
            if !s.live {
                continue;
            }
            if s.referenced {
                s.referenced = false;
                continue;
            }
            s.live = false;
            let key = s.key;
            let data = std::mem::take(&mut s.data);
            self.map.remove(&key);
            self.bytes -= data.len() + ENTRY_OVERHEAD;
            self.free.push(i as u32);
            self.stats.evictions += 1;
            self.recycle(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(v: u8, len: usize) -> Box<[u8]> {
        vec![v; len].into_boxed_slice()
    }

    #[test]
    fn hit_miss_and_partial_copy() {
        let c = BlockCache::new(CacheOptions { size: 1 << 20 });
        let f = c.register();
        let mut out = [0u8; 4];
        assert!(!c.read(f, 0, 0, &mut out));
        let mut b = c.buffer(f, 0, 4096);
        b[100..104].copy_from_slice(&[1, 2, 3, 4]);
        c.insert(f, 0, b);
        assert!(c.read(f, 0, 100, &mut out));
        assert_eq!(out, [1, 2, 3, 4]);
        // Another file's block 0 is another key.
        let g = c.register();
        assert!(!c.read(g, 0, 0, &mut out));
        // Out-of-block ranges are misses, never panics.
        assert!(!c.read(f, 0, 4094, &mut out));
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.inserts, s.entries), (1, 3, 1, 1));
    }

    #[test]
    fn bounded_by_bytes_and_recycles() {
        // One shard of 64 KiB: at most 15 blocks of 4 KiB with overhead.
        let c = BlockCache::new(CacheOptions { size: 64 << 10 });
        let f = c.register();
        for i in 0..100u64 {
            c.insert_copy(f, i, &[i as u8; 4096]);
            let s = c.stats();
            assert!(s.bytes <= 64 << 10, "{s:?}");
        }
        let s = c.stats();
        assert_eq!(s.entries, (64 << 10) / (4096 + ENTRY_OVERHEAD as u64));
        assert_eq!(s.inserts - s.evictions, s.entries);
        // The newest block is there with its content.
        let mut out = [0u8; 8];
        assert!(c.read(f, 99, 0, &mut out));
        assert_eq!(out, [99; 8]);
        // Too big for a shard: not stored.
        c.insert_copy(f, 1000, &vec![0u8; 128 << 10]);
        assert!(!c.contains(f, 1000));
        c.clear();
        assert_eq!(c.stats().entries, 0);
    }

    #[test]
    fn clock_keeps_referenced_blocks() {
        let c = BlockCache::new(CacheOptions { size: 64 << 10 });
        let f = c.register();
        let n = (64 << 10) / (4096 + ENTRY_OVERHEAD as u64);
        for i in 0..n {
            c.insert(f, i, block(i as u8, 4096));
        }
        // Touch block 0, then insert one more: block 0 survives, block 1 goes.
        let mut out = [0u8; 1];
        assert!(c.read(f, 0, 0, &mut out));
        c.insert(f, 1000, block(7, 4096));
        assert!(c.contains(f, 0));
        assert!(!c.contains(f, 1));
        assert!(c.contains(f, 1000));
    }

    #[test]
    fn zero_size_caches_nothing() {
        let c = BlockCache::new(CacheOptions::off());
        let f = c.register();
        c.insert_copy(f, 0, &[1; 4096]);
        assert!(!c.contains(f, 0));
    }

    #[test]
    fn shards_are_used_concurrently() {
        let c = BlockCache::new(CacheOptions { size: 64 << 20 });
        assert_eq!(c.inner.shards.len(), 64);
        let f = c.register();
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let c = c.clone();
                s.spawn(move || {
                    for i in 0..2000u64 {
                        let b = t * 10_000 + i;
                        c.insert_copy(f, b, &[b as u8; 512]);
                        let mut o = [0u8; 512];
                        assert!(c.read(f, b, 0, &mut o));
                        assert_eq!(o[511], b as u8);
                    }
                });
            }
        });
        assert_eq!(c.stats().entries, 4000);
    }
}
