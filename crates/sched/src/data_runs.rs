//! What every data run of a server shares, whether submitted through the
//! data API or run by a `data-diff` / `data-keys` job: the runs directory
//! (`<data_dir>/data-runs/`, laid out as [`sealtrail_data::run_dir`]
//! says), how many run directories are kept (`data.keep_runs`), and the
//! `data.max_running` slots a run holds while it executes.
//!
//! A slot is a permit of a fair (first come, first served) semaphore: the
//! API's runs wait for one on the async runtime ([`DataRunPool::slot`]),
//! a job's run on its own thread ([`DataRunPool::slot_blocking`]), in one
//! queue. The semaphore is `tokio::sync`'s, which needs no runtime.
//!
//! The pool also counts the runs holding a slot and those waiting for
//! one, from either side, and publishes them as the gauges
//! `sealtrail_data_runs_running` and `sealtrail_data_runs_queued`.
//!
//! Not here: admitting or queueing API requests (`data.max_queued`), or
//! the run history.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How often a thread waiting for a slot looks whether it should give up.
const GIVE_UP_CHECK: Duration = Duration::from_millis(50);

/// The runs directory, the number of run directories kept, and the slots
/// of `data.max_running`; one per server, shared by its API and its jobs.
#[derive(Debug)]
pub struct DataRunPool {
    dir: PathBuf,
    keep: usize,
    max_running: usize,
    slots: Arc<Semaphore>,
    /// Runs whose directory is in use (queued or running): never pruned.
    busy: Mutex<HashSet<i64>>,
    counts: Arc<Counts>,
}

/// Runs holding a slot and runs waiting for one. Changed and published
/// under one lock, so the gauges never show a torn pair.
#[derive(Debug, Default)]
struct Counts(Mutex<(usize, usize)>);

impl Counts {
    fn change(&self, f: impl FnOnce(&mut usize, &mut usize)) {
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (running, waiting) = &mut *c;
        f(running, waiting);
        metrics::gauge!("sealtrail_data_runs_running").set(*running as f64);
        metrics::gauge!("sealtrail_data_runs_queued").set(*waiting as f64);
    }

    fn get(&self) -> (usize, usize) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One of `data.max_running` slots, given back when dropped.
#[derive(Debug)]
pub struct DataSlot {
    _permit: OwnedSemaphorePermit,
    counts: Arc<Counts>,
}

impl Drop for DataSlot {
    fn drop(&mut self) {
        self.counts.change(|running, _| *running = running.saturating_sub(1));
    }
}

/// Counts a waiter for as long as it waits, however the wait ends
/// (a slot, giving up, or the future dropped).
struct Waiting<'a>(&'a Counts);

impl<'a> Waiting<'a> {
    fn new(counts: &'a Counts) -> Waiting<'a> {
        counts.change(|_, waiting| *waiting += 1);
        Waiting(counts)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.change(|_, waiting| *waiting = waiting.saturating_sub(1));
    }
}

/// Marks a run's directory as in use until dropped.
#[derive(Debug)]
pub struct Busy {
    pool: Arc<DataRunPool>,
    id: i64,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.pool.busy().remove(&self.id);
    }
}

/// Wakes the thread that waits.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

impl DataRunPool {
    /// The pool of the runs directory `dir` (made by the caller), keeping
    /// the directories of the newest `keep` runs, running at most
    /// `max_running` runs at once (both at least 1).
    pub fn new(dir: PathBuf, keep: usize, max_running: usize) -> DataRunPool {
        let max_running = max_running.max(1);
        DataRunPool {
            dir,
            keep: keep.max(1),
            max_running,
            slots: Arc::new(Semaphore::new(max_running)),
            busy: Mutex::new(HashSet::new()),
            counts: {
                let counts = Arc::new(Counts::default());
                counts.change(|_, _| {});
                counts
            },
        }
    }

    fn busy(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The runs directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Run `id`'s directory.
    pub fn run_dir(&self, id: i64) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// How many run directories are kept (`data.keep_runs`).
    pub fn keep(&self) -> usize {
        self.keep
    }

    /// How many runs execute at once at most (`data.max_running`).
    pub fn max_running(&self) -> usize {
        self.max_running
    }

    /// Slots free now.
    pub fn free_slots(&self) -> usize {
        self.slots.available_permits()
    }

    /// Runs holding a slot now, whether the API's or a job's.
    pub fn running(&self) -> usize {
        self.counts.get().0
    }

    /// Runs waiting for a slot now, whether the API's or a job's.
    pub fn waiting(&self) -> usize {
        self.counts.get().1
    }

    /// Wait on the async runtime for a slot, in turn. `None` only if the
    /// slots were closed, which they never are.
    pub async fn slot(&self) -> Option<DataSlot> {
        let waiting = Waiting::new(&self.counts);
        let permit = self.slots.clone().acquire_owned().await.ok()?;
        let counts = self.counts.clone();
        // One change, so no reader sees the run in neither count.
        std::mem::forget(waiting);
        counts.change(|running, waiting| {
            *waiting = waiting.saturating_sub(1);
            *running += 1;
        });
        Some(DataSlot {
            _permit: permit,
            counts,
        })
    }

    /// Wait on this thread for a slot, in turn with the runs waiting on
    /// the runtime; `None` once `give_up` says so (it is asked about every
    /// 50 ms), leaving the queue.
    pub fn slot_blocking(&self, give_up: impl Fn() -> bool) -> Option<DataSlot> {
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut wait = std::pin::pin!(self.slot());
        loop {
            if let Poll::Ready(slot) = wait.as_mut().poll(&mut cx) {
                return slot;
            }
            if give_up() {
                return None;
            }
            std::thread::park_timeout(GIVE_UP_CHECK);
        }
    }

    /// Mark run `id`'s directory as in use until the guard is dropped, so
    /// that pruning spares it however many runs end meanwhile.
    pub fn hold(self: &Arc<Self>, id: i64) -> Busy {
        self.busy().insert(id);
        Busy { pool: self.clone(), id }
    }

    /// Whether run `id`'s directory is in use.
    pub fn is_busy(&self, id: i64) -> bool {
        self.busy().contains(&id)
    }

    /// Delete the directories of all but the newest `keep` runs, sparing
    /// those in use; logs what could not be deleted.
    pub fn prune(&self) {
        let busy: HashSet<i64> = self.busy().clone();
        for (id, e) in sealtrail_data::run_dir::prune(&self.dir, self.keep, |id| busy.contains(&id)) {
            tracing::warn!(run = id, "deleting the files of data run {id}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    fn pool(max_running: usize) -> Arc<DataRunPool> {
        Arc::new(DataRunPool::new(PathBuf::from("/nonexistent"), 3, max_running))
    }

    #[test]
    fn a_thread_waits_for_a_slot_while_all_are_taken_and_gets_one_when_freed() {
        let pool = pool(1);
        let held = pool.slot_blocking(|| false).expect("a free slot");
        assert_eq!(pool.free_slots(), 0);

        // Gives up after about 200 ms: no slot came free.
        let start = Instant::now();
        assert!(pool
            .slot_blocking(|| start.elapsed() >= Duration::from_millis(200))
            .is_none());
        assert!(start.elapsed() >= Duration::from_millis(200));
        // Giving up left the queue: the slot held is still the only one.
        assert_eq!(pool.free_slots(), 0);

        // A waiter gets the slot once it is given back, and not before.
        let got = Arc::new(AtomicBool::new(false));
        let waiter = std::thread::spawn({
            let pool = pool.clone();
            let got = got.clone();
            move || {
                let slot = pool.slot_blocking(|| false);
                got.store(true, Ordering::SeqCst);
                slot.is_some()
            }
        });
        std::thread::sleep(Duration::from_millis(150));
        assert!(!got.load(Ordering::SeqCst), "a second slot of max_running = 1");
        drop(held);
        assert!(waiter.join().expect("the waiter"));
        assert_eq!(pool.free_slots(), 1);
    }

    #[test]
    fn runs_holding_and_waiting_for_slots_are_counted_however_the_wait_ends() {
        let pool = pool(1);
        assert_eq!((pool.running(), pool.waiting()), (0, 0));
        let held = pool.slot_blocking(|| false).expect("a free slot");
        assert_eq!((pool.running(), pool.waiting()), (1, 0));

        // A waiter that gives up leaves the count.
        let start = Instant::now();
        let watcher = std::thread::spawn({
            let pool = pool.clone();
            move || {
                let mut seen = 0;
                while start.elapsed() < Duration::from_millis(150) {
                    seen = seen.max(pool.waiting());
                    std::thread::sleep(Duration::from_millis(5));
                }
                seen
            }
        });
        assert!(pool
            .slot_blocking(|| start.elapsed() >= Duration::from_millis(200))
            .is_none());
        assert_eq!(watcher.join().expect("the watcher"), 1, "the waiter was not counted");
        assert_eq!((pool.running(), pool.waiting()), (1, 0));

        // A waiter that gets the slot moves from one count to the other.
        let waiter = std::thread::spawn({
            let pool = pool.clone();
            move || pool.slot_blocking(|| false).expect("the freed slot")
        });
        while pool.waiting() == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!((pool.running(), pool.waiting()), (1, 1));
        drop(held);
        let second = waiter.join().expect("the waiter");
        assert_eq!((pool.running(), pool.waiting()), (1, 0));
        drop(second);
        assert_eq!((pool.running(), pool.waiting()), (0, 0));
    }

    #[test]
    fn at_most_max_running_hold_slots_at_once() {
        let pool = pool(2);
        let now = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (pool, now, most) = (pool.clone(), now.clone(), most.clone());
                std::thread::spawn(move || {
                    let _slot = pool.slot_blocking(|| false).expect("a slot in the end");
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(30));
                    now.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a runner");
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_run_held_busy_is_not_pruned() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let pool = Arc::new(DataRunPool::new(dir.path().to_path_buf(), 1, 1));
        for id in 1..=3 {
            std::fs::create_dir(pool.run_dir(id)).expect("a run directory");
        }
        let busy = pool.hold(1);
        pool.prune();
        assert!(pool.run_dir(1).exists() && pool.run_dir(3).exists());
        assert!(!pool.run_dir(2).exists());
        drop(busy);
        assert!(!pool.is_busy(1));
        pool.prune();
        assert!(!pool.run_dir(1).exists() && pool.run_dir(3).exists());
    }
}
