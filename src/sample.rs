//! Deterministic sample disk content for the demo and the benchmarks.
//!
//! The content mimics a container image: the disk is cut into 64 KiB chunks,
//! and each chunk is, by a seeded draw, random bytes (35%), text lines from a
//! 512-word vocabulary (35%), zeros (20%) or a repeated 1..61-byte pattern
//! (10%). Chunk `i` depends only on `(seed, i)`, so any range can be
//! generated independently and in parallel.

/// Bytes of one chunk.
pub const CHUNK: usize = 64 * 1024;

/// What a chunk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    /// Incompressible bytes.
    Random,
    /// Words and newlines.
    Text,
    /// All zero.
    Zero,
    /// A short pattern repeated.
    Pattern,
}

/// splitmix64: a small, fast, well-mixed generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A uniform value in `0..n`.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let v = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&v[..n]);
    }
}

fn chunk_rng(seed: u64, index: u64) -> Rng {
    let mut r = Rng::new(seed ^ index.wrapping_mul(0xA24B_AED4_963E_E407));
    r.next_u64();
    r
}

/// The kind of chunk `index` under `seed`.
pub fn chunk_kind(seed: u64, index: u64) -> ChunkKind {
    match chunk_rng(seed, index).below(100) {
        0..35 => ChunkKind::Random,
        35..70 => ChunkKind::Text,
        70..90 => ChunkKind::Zero,
        _ => ChunkKind::Pattern,
    }
}

fn vocabulary(seed: u64) -> Vec<Vec<u8>> {
    let mut r = Rng::new(seed.wrapping_add(0x5EED));
    (0..512)
        .map(|_| {
            let len = 2 + r.below(9) as usize;
            (0..len).map(|_| b'a' + r.below(26) as u8).collect()
        })
        .collect()
}

/// Fills `buf` (exactly [`CHUNK`] bytes) with chunk `index`.
pub fn fill_chunk(seed: u64, index: u64, buf: &mut [u8]) {
    debug_assert_eq!(buf.len(), CHUNK);
    let kind = chunk_kind(seed, index);
    let mut r = chunk_rng(seed, index);
    r.next_u64();
    match kind {
        ChunkKind::Random => r.fill(buf),
        ChunkKind::Zero => buf.fill(0),
        ChunkKind::Pattern => {
            let n = 1 + r.below(61) as usize;
            let mut pat = vec![0u8; n];
            r.fill(&mut pat);
            for (i, b) in buf.iter_mut().enumerate() {
                *b = pat[i % n];
            }
        }
        ChunkKind::Text => {
            thread_local! {
                static VOCAB: std::cell::RefCell<Option<(u64, Vec<Vec<u8>>)>> = const { std::cell::RefCell::new(None) };
            }
            VOCAB.with(|v| {
                let mut v = v.borrow_mut();
                if v.as_ref().map(|x| x.0) != Some(seed) {
                    *v = Some((seed, vocabulary(seed)));
                }
                let words = &v
                    .as_ref()
                    .map(|x| &x.1)
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>();
                let mut pos = 0;
                let mut line = 0;
                while pos < buf.len() {
                    let w = words[r.below(words.len() as u64) as usize];
                    for &c in w.iter() {
                        if pos < buf.len() {
                            buf[pos] = c;
                            pos += 1;
                        }
                    }
                    line += w.len() + 1;
                    if pos < buf.len() {
                        buf[pos] = if line > 60 + r.below(20) as usize {
                            line = 0;
                            b'\n'
                        } else {
                            b' '
                        };
                        pos += 1;
                    }
                }
            });
        }
    }
}

/// Fills `buf` with the sample disk's bytes from byte `offset` (any offset and length).
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut chunk = vec![0u8; CHUNK];
    let mut pos = offset;
    let end = offset + buf.len() as u64;
    let mut cached = u64::MAX;
    while pos < end {
        let i = pos / CHUNK as u64;
        if i != cached {
            fill_chunk(seed, i, &mut chunk);
            cached = i;
        }
        let within = (pos % CHUNK as u64) as usize;
        let take = ((end - pos) as usize).min(CHUNK - within);
        let at = (pos - offset) as usize;
        buf[at..at + take].copy_from_slice(&chunk[within..within + take]);
        pos += take as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_mixed() {
        let mut a = vec![0u8; CHUNK];
        let mut b = vec![0u8; CHUNK];
        fill_chunk(7, 3, &mut a);
        fill_chunk(7, 3, &mut b);
        assert_eq!(a, b);
        let kinds: Vec<ChunkKind> = (0..1000).map(|i| chunk_kind(42, i)).collect();
        let count = |k| kinds.iter().filter(|&&x| x == k).count();
        assert!((300..400).contains(&count(ChunkKind::Random)));
        assert!((300..400).contains(&count(ChunkKind::Text)));
        assert!((150..250).contains(&count(ChunkKind::Zero)));
        assert!((50..150).contains(&count(ChunkKind::Pattern)));
        for i in 0..50 {
            fill_chunk(42, i, &mut a);
            match chunk_kind(42, i) {
                ChunkKind::Zero => assert!(a.iter().all(|&x| x == 0)),
                ChunkKind::Text => assert!(a
                    .iter()
                    .all(|&x| x.is_ascii_lowercase() || x == b' ' || x == b'\n')),
                _ => {}
            }
        }
        // Unaligned ranges agree with whole chunks.
        let mut whole = vec![0u8; 3 * CHUNK];
        fill(9, 0, &mut whole);
        let mut part = vec![0u8; 100_000];
        fill(9, 12_345, &mut part);
        assert_eq!(&part[..], &whole[12_345..112_345]);
    }
}
