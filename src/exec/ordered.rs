//! Ordered parallel work: jobs run on a thread pool, results are consumed
//! in submission order, and at most a fixed number of jobs are outstanding
//! (submitted but not yet consumed), which bounds memory whatever the input
//! size. With one thread, jobs run inline on the caller's thread.

use std::collections::BTreeMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use crate::error::{Error, Result};

/// Runs jobs in parallel and hands their results back in order.
pub struct Ordered<T: Send + 'static> {
    pool: Option<Arc<rayon::ThreadPool>>,
    tx: Sender<(u64, T)>,
    rx: Receiver<(u64, T)>,
    next_seq: u64,
    next_out: u64,
    ready: BTreeMap<u64, T>,
    max_outstanding: usize,
}

impl<T: Send + 'static> Ordered<T> {
    /// A pipeline on `threads` workers (0 = one per core) with at most
    /// `max_outstanding` jobs between submission and consumption.
    ///
    /// # Errors
    /// [`Error::Io`] when the worker threads cannot be started.
    pub fn new(threads: usize, max_outstanding: usize) -> Result<Self> {
        let threads = super::bounded_threads(threads);
        let pool = if threads > 1 {
            let p = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("obd-worker-{i}"))
                .build()
                .map_err(|e| Error::io("worker threads", 0, std::io::Error::other(e)))?;
            Some(Arc::new(p))
        } else {
            None
        };
        let (tx, rx) = channel();
        Ok(Ordered {
            pool,
            tx,
            rx,
            next_seq: 0,
            next_out: 0,
            ready: BTreeMap::new(),
            max_outstanding: max_outstanding.max(1),
        })
    }

    /// Worker threads (1 when jobs run inline).
    pub fn threads(&self) -> usize {
        self.pool.as_ref().map_or(1, |p| p.current_num_threads())
    }

    /// Jobs submitted and not yet consumed.
    pub fn outstanding(&self) -> usize {
        (self.next_seq - self.next_out) as usize
    }

    /// Submits `job`. When the window is full, first waits for the oldest
    /// results and passes them to `sink` in order.
    ///
    /// # Errors
    /// Whatever `sink` returns.
    pub fn submit<F, S>(&mut self, job: F, sink: &mut S) -> Result<()>
    where
        F: FnOnce() -> T + Send + 'static,
        S: FnMut(T) -> Result<()>,
    {
        if self.pool.is_none() {
            self.next_seq += 1;
            self.next_out += 1;
            return sink(job());
        }
        while self.outstanding() >= self.max_outstanding {
            self.consume_one(sink)?;
        }
        let Some(pool) = &self.pool else {
            return Ok(());
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let tx = self.tx.clone();
        pool.spawn(move || {
            // The receiver is gone only when the pipeline was dropped.
            let _ = tx.send((seq, job()));
        });
        // Hand over whatever is already done, without waiting.
        while let Ok((s, t)) = self.rx.try_recv() {
            self.ready.insert(s, t);
        }
        self.drain_ready(sink)
    }

    fn drain_ready<S: FnMut(T) -> Result<()>>(&mut self, sink: &mut S) -> Result<()> {
        while let Some(t) = self.ready.remove(&self.next_out) {
            self.next_out += 1;
            sink(t)?;
        }
        Ok(())
    }

    /// Waits until the oldest outstanding job is done and consumes it (and
    /// any that follow it and are done).
    fn consume_one<S: FnMut(T) -> Result<()>>(&mut self, sink: &mut S) -> Result<()> {
        while !self.ready.contains_key(&self.next_out) {
            let (s, t) = self
                .rx
                .recv()
                .map_err(|_| Error::invalid("worker threads", "a worker thread died"))?;
            self.ready.insert(s, t);
        }
        self.drain_ready(sink)
    }

    /// Waits for every outstanding job and consumes the results in order.
    ///
    /// # Errors
    /// Whatever `sink` returns.
    pub fn finish<S: FnMut(T) -> Result<()>>(&mut self, sink: &mut S) -> Result<()> {
        while self.outstanding() > 0 {
            self.consume_one(sink)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order() {
        for threads in [1, 2, 4] {
            let mut p = Ordered::new(threads, 3).unwrap();
            let mut got = Vec::new();
            let mut sink = |v: u64| {
                got.push(v);
                Ok(())
            };
            for i in 0..50u64 {
                p.submit(
                    move || {
                        // Later jobs finish first now and then.
                        std::thread::sleep(std::time::Duration::from_micros((50 - i) % 7 * 100));
                        i
                    },
                    &mut sink,
                )
                .unwrap();
                assert!(p.outstanding() <= 3);
            }
            p.finish(&mut sink).unwrap();
            assert_eq!(got, (0..50).collect::<Vec<_>>());
        }
    }

    #[test]
    fn sink_errors_stop_the_pipeline() {
        let mut p = Ordered::new(2, 2).unwrap();
        let mut sink = |v: u32| {
            if v == 3 {
                Err(Error::invalid("x", "y"))
            } else {
                Ok(())
            }
        };
        let mut failed = false;
        for i in 0..10u32 {
            if p.submit(move || i, &mut sink).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed || p.finish(&mut sink).is_err());
    }
}
