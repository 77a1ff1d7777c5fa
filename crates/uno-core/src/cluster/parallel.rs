//! Splitting row-parallel work over a few threads with `std::thread::scope`.
//!
//! The heavy loops here (nearest-centroid assignment, per-dimension sums) are
//! embarrassingly parallel over rows or columns, so scoped threads over
//! contiguous chunks use every core without a thread-pool dependency. Each
//! output element is computed by exactly one thread from the same inputs, so
//! results do not depend on the thread count.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// The number of threads to use: `requested`, or every available core when
/// `requested` is 0.
pub(crate) fn resolve_threads(requested: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
    }
}

/// Runs `f(first_index, chunk)` over `out` split into at most `threads`
/// contiguous chunks of at least `min_chunk` elements, in parallel.
///
/// A panic in any chunk propagates to the caller when the scope ends.
pub(crate) fn for_each_chunk<T, F>(out: &mut [T], threads: usize, min_chunk: usize, f: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync,
{
    let len = out.len();
    let parts = threads.min(len / min_chunk.max(1)).max(1);
    if parts <= 1 {
        f(0, out);
        return;
    }
    let chunk = len.div_ceil(parts);
    std::thread::scope(|s| {
        let f = &f;
        let mut rest = out;
        let mut start = 0;
        while rest.len() > chunk {
            let (head, tail) = rest.split_at_mut(chunk);
            let first = start;
            s.spawn(move || f(first, head));
            start += chunk;
            rest = tail;
        }
        f(start, rest);
    });
}

/// [`for_each_chunk`] over a row-major matrix `out` of rows of `row_len`:
/// runs `f(first_row, rows)` on chunks that split only between rows.
pub(crate) fn for_each_row_chunk<T, F>(
    out: &mut [T],
    row_len: usize,
    threads: usize,
    min_rows: usize,
    f: F,
) where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync,
{
    let row_len = row_len.max(1);
    let mut rows: Vec<&mut [T]> = out.chunks_mut(row_len).collect();
    for_each_chunk(&mut rows, threads, min_rows, |first, chunk| {
        for (i, row) in chunk.iter_mut().enumerate() {
            f(first + i, row);
        }
    });
}

/// `(0..count).map(f)` computed by `threads` threads that each take the next
/// unclaimed index (dynamic scheduling, for tasks of uneven size). Results
/// come back in index order; each is computed by exactly one thread, so they
/// do not depend on the thread count.
pub(crate) fn map_dynamic<T, F>(count: usize, threads: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(usize) -> T + Sync,
{
    let threads = threads.min(count).max(1);
    if threads == 1 {
        return (0..count).map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= count {
                break done;
            }
            done.push((i, f(i)));
        }
    };
    let mut all: Vec<(usize, T)> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mut all = work();
        for h in handles {
            match h.join() {
                Ok(part) => all.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    });
    all.sort_unstable_by_key(|&(i, _)| i);
    all.into_iter().map(|(_, t)| t).collect()
}

/// How long an idle [`Pool`] worker spins before parking: long enough to
/// catch the next task of a tight loop without a futex round trip, short
/// enough not to burn a core while the caller does serial work.
const SPIN: Duration = Duration::from_micros(30);

/// Most blocks one [`Pool::run`] can be split into.
pub(crate) const MAX_BLOCKS: usize = 1 << 15;

/// Persistent worker threads for many small parallel steps over shared
/// state, e.g. the nearest-neighbour scans of exact Ward (thousands of scans
/// of a millisecond or less, where spawning threads per scan would cost more
/// than the scan). Created by [`with_pool`].
///
/// [`Pool::run`] splits a task into blocks that the caller and the workers
/// claim one at a time; block `b` of `blocks` computes
/// `work(&state, task, b, blocks)` under a read lock, and the block results
/// are folded with `combine`. The caller works through the blocks itself
/// and waits only for blocks a worker has already claimed, so a worker that
/// the OS has not scheduled (other load on the machine) delays nothing.
/// `combine` must be associative and commutative, since the order in which
/// blocks finish varies. Between runs the caller may change the state
/// through [`Pool::write`].
pub(crate) struct Pool<'a, S, R, W, C> {
    state: &'a RwLock<S>,
    shared: &'a Shared<R>,
    work: &'a W,
    combine: &'a C,
    workers: Vec<Thread>,
    epoch: std::cell::Cell<u64>,
}

/// What the caller and the workers of a [`Pool`] share.
pub(crate) struct Shared<R> {
    /// `epoch << 32 | blocks << 16 | next unclaimed block`.
    claim: AtomicU64,
    task: [AtomicU64; 2],
    completed: AtomicUsize,
    result: Mutex<Option<R>>,
    stop: AtomicBool,
    poisoned: AtomicBool,
}

impl<R> Shared<R> {
    /// Claims and runs blocks of the current epoch `epoch` until none are
    /// left (or the epoch has moved on), folding results into `result`.
    fn participate<S>(
        &self,
        epoch: u64,
        state: &RwLock<S>,
        work: &impl Fn(&S, [u64; 2], usize, usize) -> R,
        combine: &impl Fn(R, R) -> R,
    ) {
        loop {
            let c = self.claim.load(Ordering::Acquire);
            let (e, blocks, next) = (c >> 32, (c >> 16) & 0xFFFF, c & 0xFFFF);
            if e != epoch || next >= blocks {
                return;
            }
            if self
                .claim
                .compare_exchange(c, c + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            // The claimed block keeps the caller from starting another
            // epoch, so the task read here is this epoch's.
            let task = [
                self.task[0].load(Ordering::Relaxed),
                self.task[1].load(Ordering::Relaxed),
            ];
            let r = work(
                &state.read().unwrap_or_else(PoisonError::into_inner),
                task,
                next as usize,
                blocks as usize,
            );
            {
                let mut slot = self.result.lock().unwrap_or_else(PoisonError::into_inner);
                *slot = Some(match slot.take() {
                    Some(prev) => combine(prev, r),
                    None => r,
                });
            }
            self.completed.fetch_add(1, Ordering::Release);
        }
    }
}

impl<S, R, W, C> Pool<'_, S, R, W, C>
where
    S: Sync,
    R: Send,
    W: Fn(&S, [u64; 2], usize, usize) -> R + Sync,
    C: Fn(R, R) -> R + Sync,
{
    /// Number of threads, the caller included.
    pub(crate) fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Read access to the state.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, S> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Write access to the state (no run is in progress between runs).
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, S> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `task` as `blocks` blocks (clamped to `1..=MAX_BLOCKS`) and
    /// returns the combined result.
    ///
    /// # Panics
    ///
    /// When a worker panicked (the scope then reports the original panic).
    pub(crate) fn run(&self, task: [u64; 2], blocks: usize) -> Option<R> {
        let blocks = blocks.clamp(1, MAX_BLOCKS - 1) as u64;
        let epoch = (self.epoch.get() + 1) & 0xFFFF_FFFF;
        self.epoch.set(epoch);
        let sh = self.shared;
        sh.task[0].store(task[0], Ordering::Relaxed);
        sh.task[1].store(task[1], Ordering::Relaxed);
        sh.completed.store(0, Ordering::Relaxed);
        sh.claim
            .store(epoch << 32 | blocks << 16, Ordering::Release);
        for w in &self.workers {
            w.unpark();
        }
        sh.participate(epoch, self.state, self.work, self.combine);
        let start = Instant::now();
        while sh.completed.load(Ordering::Acquire) < blocks as usize {
            assert!(
                !sh.poisoned.load(Ordering::Relaxed),
                "a pool worker panicked"
            );
            if start.elapsed() < SPIN {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        sh.result
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Starts `threads − 1` pool workers over `state`, runs `body` with the pool,
/// stops the workers and returns `body`'s result and the state.
pub(crate) fn with_pool<S, R, W, C, T>(
    threads: usize,
    state: S,
    work: W,
    combine: C,
    body: impl FnOnce(&Pool<'_, S, R, W, C>) -> T,
) -> (T, S)
where
    S: Send + Sync,
    R: Send,
    W: Fn(&S, [u64; 2], usize, usize) -> R + Sync,
    C: Fn(R, R) -> R + Sync,
{
    let shared = Shared {
        claim: AtomicU64::new(0),
        task: [AtomicU64::new(0), AtomicU64::new(0)],
        completed: AtomicUsize::new(0),
        result: Mutex::new(None),
        stop: AtomicBool::new(false),
        poisoned: AtomicBool::new(false),
    };
    let state = RwLock::new(state);
    let out = std::thread::scope(|s| {
        let workers = (1..threads.max(1))
            .map(|_| {
                let (state, shared, work, combine) = (&state, &shared, &work, &combine);
                s.spawn(move || worker(state, shared, work, combine))
                    .thread()
                    .clone()
            })
            .collect();
        let pool = Pool {
            state: &state,
            shared: &shared,
            work: &work,
            combine: &combine,
            workers,
            epoch: std::cell::Cell::new(0),
        };
        // Stops the workers however `body` ends, so the scope can join them.
        let _stop = StopOnDrop(&shared, &pool.workers);
        body(&pool)
    });
    (
        out,
        state.into_inner().unwrap_or_else(PoisonError::into_inner),
    )
}

/// Tells a pool's workers to exit when dropped.
struct StopOnDrop<'a, R>(&'a Shared<R>, &'a [Thread]);

impl<R> Drop for StopOnDrop<'_, R> {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Release);
        for w in self.1 {
            w.unpark();
        }
    }
}

/// Marks the pool poisoned if the worker holding it unwinds.
struct PoisonOnPanic<'a, R>(&'a Shared<R>);

impl<R> Drop for PoisonOnPanic<'_, R> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poisoned.store(true, Ordering::Release);
        }
    }
}

/// A pool worker's loop: wait for a new epoch (spin briefly, then park),
/// claim and run blocks until there are none, repeat until stopped.
fn worker<S, R, W, C>(state: &RwLock<S>, shared: &Shared<R>, work: &W, combine: &C)
where
    W: Fn(&S, [u64; 2], usize, usize) -> R,
    C: Fn(R, R) -> R,
{
    let _guard = PoisonOnPanic(shared);
    let mut seen = 0;
    loop {
        let start = Instant::now();
        let epoch = loop {
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            let e = shared.claim.load(Ordering::Acquire) >> 32;
            if e != seen {
                break e;
            }
            if start.elapsed() < SPIN {
                std::hint::spin_loop();
            } else {
                std::thread::park_timeout(Duration::from_millis(1));
            }
        };
        seen = epoch;
        shared.participate(epoch, state, work, combine);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_everything_once() {
        for threads in 1..5 {
            let mut v = vec![0usize; 1001];
            for_each_chunk(&mut v, threads, 10, |first, chunk| {
                for (i, x) in chunk.iter_mut().enumerate() {
                    *x += first + i;
                }
            });
            assert!(v.iter().enumerate().all(|(i, &x)| i == x));
        }
        assert!(resolve_threads(0) >= 1);
        for threads in 1..4 {
            assert_eq!(
                map_dynamic(50, threads, |i| i * 2),
                (0..50).map(|i| i * 2).collect::<Vec<_>>()
            );
        }
        assert_eq!(resolve_threads(3), 3);
    }

    #[test]
    fn pool_runs_every_block_on_the_current_state() {
        for threads in [1, 2, 3] {
            let work = |s: &Vec<u64>, task: [u64; 2], b: usize, blocks: usize| {
                s.iter().skip(b).step_by(blocks).sum::<u64>() * task[0] + task[1]
            };
            let combine = |a: u64, b: u64| a + b;
            let (sums, state) = with_pool(threads, vec![1u64; 10], work, combine, |pool| {
                assert_eq!(pool.threads(), threads);
                let mut out = Vec::new();
                for task in 0..300u64 {
                    let blocks = 1 + task as usize % 7;
                    out.push(pool.run([task, 1], blocks).unwrap());
                    pool.write().push(1);
                }
                out
            });
            assert_eq!(state.len(), 310);
            for (t, &s) in sums.iter().enumerate() {
                let blocks = 1 + t as u64 % 7;
                assert_eq!(s, t as u64 * (10 + t as u64) + blocks, "task {t}");
            }
        }
    }
}
