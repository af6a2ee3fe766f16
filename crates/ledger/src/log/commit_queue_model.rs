//! Model check of the group-commit protocol. `commit_queue.rs` is compiled
//! here a second time, over shuttle's locks instead of std's, so what is
//! checked is the shipped protocol itself. shuttle runs appender threads
//! under its own scheduler and reports any thread left blocked as a
//! deadlock. The small cases (two appends of one or two entries, max batch
//! 1 or 2, a failing write or sync, damage found meanwhile) are checked on
//! every schedule with at most two preemptions: shuttle's depth-first
//! search, bounded here ([`PreemptionBounded`]), since unbounded it does not
//! end even for two one-entry appends (every lock, unlock and notify is a
//! scheduling point). Larger cases run on schedules drawn by PCT
//! (randomized, with a bounded chance of missing a bug that needs few
//! forced preemptions) and uniformly at random.
//!
//! The stages are a model disk: a write records how many entries it
//! wrote, a sync how many are durable, and either can be made to fail.
//! Checked on every schedule:
//! - every append returns (no lost wake-up): once its entries are durable,
//!   or with the error of a poisoned or damaged log;
//! - no append returns `Ok` before its entries are durable;
//! - a failed write or sync poisons the log and every caller in flight
//!   gets the poisoning error; later appends are refused at once;
//! - at most one writer and one syncer run at a time; batches are written
//!   in queue order, and a sync covers only entries written.
//!
//! Not modelled: the writer's `max_delay` wait for a fuller batch (shuttle's
//! timed waits never time out, so the model runs with no delay, as the log
//! does by default).

use crate::error::{LedgerError, Result};
use crate::log::Damage;
use std::path::PathBuf;
// std's atomics on purpose, for the disk's bookkeeping: shuttle runs one
// thread at a time, and leaving them out of its schedule keeps the search
// to the interleavings the protocol's locks and the stages' I/O allow.
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

/// The locks `commit_queue` is built on here.
mod sync {
    pub(super) use shuttle::sync::{Condvar, Mutex, MutexGuard};
}

// Loaded twice on purpose: the second copy is the one checked. The model
// drives appends; accessors only the log uses go unused here.
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "commit_queue.rs"]
mod commit_queue;

use commit_queue::{CommitQueue, Queue, Stages};

/// What one write takes: an append's entries, by index.
struct Batch {
    first: u64,
    count: u64,
}

/// The model's disk: the stages the protocol drives, and what they saw.
#[derive(Default)]
struct Disk {
    /// Entries written, and made durable.
    written: AtomicU64,
    durable: AtomicU64,
    /// Writes and syncs running now.
    writers: AtomicUsize,
    syncers: AtomicUsize,
    /// Writes and syncs started so far.
    writes: AtomicUsize,
    syncs: AtomicUsize,
    /// Which write or sync (counting from 0) fails.
    fail_write: Option<usize>,
    fail_sync: Option<usize>,
}

fn injected(op: &'static str) -> LedgerError {
    LedgerError::Io {
        op,
        path: PathBuf::from("model/entries"),
        source: std::io::Error::other("injected fault"),
    }
}

impl Stages for Disk {
    type Batch = Batch;
    type Written = u64;

    fn entries(batch: &Batch) -> usize {
        batch.count as usize
    }

    fn size(written: &u64) -> u64 {
        *written
    }

    fn write(&self, batches: &[Batch]) -> Result<u64> {
        assert_eq!(self.writers.fetch_add(1, SeqCst), 0, "two writers at once");
        // Let other callers run while this one is writing.
        shuttle::thread::yield_now();
        let result = if Some(self.writes.fetch_add(1, SeqCst)) == self.fail_write {
            Err(injected("write"))
        } else {
            let mut size = self.written.load(SeqCst);
            for b in batches {
                assert_eq!(b.first, size, "batch written out of queue order");
                size += b.count;
            }
            self.written.store(size, SeqCst);
            Ok(size)
        };
        self.writers.fetch_sub(1, SeqCst);
        result
    }

    fn sync(&self, target: u64) -> Result<()> {
        assert_eq!(self.syncers.fetch_add(1, SeqCst), 0, "two syncers at once");
        shuttle::thread::yield_now();
        assert!(
            target <= self.written.load(SeqCst),
            "sync to {target}, beyond what was written"
        );
        assert!(target > self.durable.load(SeqCst), "sync to {target}, already durable");
        let result = if Some(self.syncs.fetch_add(1, SeqCst)) == self.fail_sync {
            Err(injected("fdatasync"))
        } else {
            self.durable.store(target, SeqCst);
            Ok(())
        };
        self.syncers.fetch_sub(1, SeqCst);
        result
    }
}

/// One run: appends of `counts` entries from as many threads, with a
/// max batch of `max_batch`, while the write or sync counted in
/// `fail_write` or `fail_sync` fails and, with `damage`, a scrub finds
/// damage.
#[derive(Clone)]
struct Case {
    counts: Vec<u64>,
    max_batch: usize,
    fail_write: Option<usize>,
    fail_sync: Option<usize>,
    damage: bool,
}

impl Case {
    fn faulty(&self) -> bool {
        self.fail_write.is_some() || self.fail_sync.is_some()
    }

    fn run(&self) {
        let disk = Arc::new(Disk {
            fail_write: self.fail_write,
            fail_sync: self.fail_sync,
            ..Disk::default()
        });
        let queue = Arc::new(CommitQueue::new(
            "model",
            self.max_batch,
            Duration::ZERO,
            Queue::resume(0, 0),
        ));
        let appenders: Vec<_> = self
            .counts
            .iter()
            .map(|&count| {
                let (disk, queue) = (disk.clone(), queue.clone());
                shuttle::thread::spawn(move || {
                    let result = queue.append(&*disk, count, |first| Batch { first, count });
                    if let Ok(first) = result {
                        let durable = disk.durable.load(SeqCst);
                        assert!(
                            durable >= first + count,
                            "append of {first}..{} returned with {durable} entries durable",
                            first + count
                        );
                    }
                    result
                })
            })
            .collect();
        let scrub = self.damage.then(|| {
            let queue = queue.clone();
            shuttle::thread::spawn(move || {
                queue.mark_damaged(Damage {
                    index: 0,
                    offset: 0,
                    detail: "model damage".into(),
                })
            })
        });
        let results: Vec<Result<u64>> = appenders
            .into_iter()
            .map(|a| a.join().expect("appender panicked"))
            .collect();
        if let Some(scrub) = scrub {
            assert!(
                scrub.join().expect("scrub panicked"),
                "first damage of entry 0 not news"
            );
        }

        for result in &results {
            match result {
                Ok(_) => {}
                Err(LedgerError::Poisoned(reason)) => {
                    assert!(self.faulty(), "poisoned with no fault injected: {reason}");
                    assert!(
                        reason.contains("injected fault"),
                        "poisoned for another reason: {reason}"
                    );
                }
                Err(LedgerError::Damaged { detail, .. }) => {
                    assert!(self.damage, "damaged with no damage found: {detail}");
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        // A fault that struck poisons the log for good: later appends are
        // refused before anything is queued.
        let struck = disk.writes.load(SeqCst) > self.fail_write.unwrap_or(usize::MAX)
            || disk.syncs.load(SeqCst) > self.fail_sync.unwrap_or(usize::MAX);
        if struck {
            assert!(queue.poisoned().is_some(), "a failed stage did not poison the log");
            let writes = disk.writes.load(SeqCst);
            let late = queue.append(&*disk, 1, |first| Batch { first, count: 1 });
            assert!(
                matches!(late, Err(LedgerError::Poisoned(_) | LedgerError::Damaged { .. })),
                "append after poisoning not refused"
            );
            assert_eq!(disk.writes.load(SeqCst), writes, "append after poisoning was written");
        } else if !self.damage {
            let total: u64 = self.counts.iter().sum();
            assert!(results.iter().all(Result::is_ok), "an append failed with no fault");
            assert_eq!(disk.durable.load(SeqCst), total, "entries left not durable");
        }
    }
}

fn healthy(counts: &[u64], max_batch: usize) -> Case {
    Case {
        counts: counts.to_vec(),
        max_batch,
        fail_write: None,
        fail_sync: None,
        damage: false,
    }
}

/// Check `case` on schedules that shuttle draws: PCT's, which find any
/// bug that needs at most two forced preemptions with a probability it
/// bounds from below, and uniformly random ones.
fn check(case: Case) {
    let pct = case.clone();
    shuttle::check_pct(move || pct.run(), ITERATIONS, 3);
    shuttle::check_random(move || case.run(), ITERATIONS);
}

/// Schedules drawn per case and scheduler.
const ITERATIONS: usize = 1_000;

#[test]
fn appends_return_once_durable() {
    for max_batch in [1, 2, 16] {
        check(healthy(&[1, 1], max_batch));
        check(healthy(&[1, 2, 1], max_batch));
    }
}

#[test]
fn failed_sync_poisons_and_wakes_everyone() {
    for fail in 0..3 {
        check(Case {
            fail_sync: Some(fail),
            ..healthy(&[1, 2, 1], 1)
        });
    }
    check(Case {
        fail_sync: Some(0),
        ..healthy(&[1, 1, 1], 16)
    });
}

#[test]
fn failed_write_poisons_and_wakes_everyone() {
    for fail in 0..3 {
        check(Case {
            fail_write: Some(fail),
            ..healthy(&[1, 2, 1], 1)
        });
    }
}

#[test]
fn damage_found_wakes_everyone() {
    check(Case {
        damage: true,
        ..healthy(&[1, 2, 1], 1)
    });
    check(Case {
        damage: true,
        fail_sync: Some(1),
        ..healthy(&[1, 1, 1], 1)
    });
}

/// shuttle's depth-first search, bounded to schedules with at most
/// `bound` preemptions: switches away from a thread that could have gone
/// on. Switches at a yield or when the running thread blocks are free, so
/// every schedule of the protocol's own hand-offs is still explored.
struct PreemptionBounded {
    dfs: shuttle::scheduler::DfsScheduler,
    bound: usize,
    preemptions: usize,
}

impl shuttle::scheduler::Scheduler for PreemptionBounded {
    fn new_execution(&mut self) -> Option<shuttle::scheduler::Schedule> {
        self.preemptions = 0;
        self.dfs.new_execution()
    }

    fn next_task(
        &mut self,
        runnable: &[&shuttle::scheduler::Task],
        current: Option<shuttle::scheduler::TaskId>,
        is_yielding: bool,
    ) -> Option<shuttle::scheduler::TaskId> {
        // Only a switch from a thread that could go on, and did not yield,
        // is a preemption.
        let preemptible = current.filter(|c| !is_yielding && runnable.iter().any(|t| t.id() == *c));
        let Some(current) = preemptible else {
            return self.dfs.next_task(runnable, None, is_yielding);
        };
        if self.preemptions >= self.bound {
            let only: Vec<_> = runnable.iter().copied().filter(|t| t.id() == current).collect();
            return self.dfs.next_task(&only, Some(current), is_yielding);
        }
        let next = self.dfs.next_task(runnable, Some(current), is_yielding)?;
        self.preemptions += usize::from(next != current);
        Some(next)
    }

    fn next_u64(&mut self) -> u64 {
        self.dfs.next_u64()
    }
}

/// Check `case` on every schedule with at most `preemptions` preemptions,
/// by depth-first search, and return how many there were. A search still
/// going after `cap` schedules fails: a capped search would pass what it
/// never explored.
fn check_every_schedule(case: Case, preemptions: usize, cap: usize) -> usize {
    let scheduler = PreemptionBounded {
        dfs: shuttle::scheduler::DfsScheduler::new(Some(cap), false),
        bound: preemptions,
        preemptions: 0,
    };
    let what = format!(
        "{:?} entries, max batch {}, failing write {:?} sync {:?}, damage {}",
        case.counts, case.max_batch, case.fail_write, case.fail_sync, case.damage
    );
    let schedules = shuttle::Runner::new(scheduler, shuttle::Config::default()).run(move || case.run());
    assert!(
        schedules < cap,
        "the search of {what} did not end within {cap} schedules"
    );
    eprintln!("{what}: every schedule with at most {preemptions} preemptions, {schedules} of them");
    schedules
}

/// Preemptions allowed in the searches run by default. Every schedule of
/// the smallest cases holds up to 2 (each explored in under a second);
/// `every_schedule_with_three_preemptions` goes one further.
const PREEMPTIONS: usize = 2;

/// Schedules past which a search fails as out of reach; the largest
/// default search explores about 3,000.
const SEARCH_CAP: usize = 100_000;

#[test]
fn every_schedule_of_two_appends() {
    for (counts, max_batch) in [(&[1, 1][..], 1), (&[1, 1], 2), (&[1, 2], 1), (&[2, 2], 2)] {
        check_every_schedule(healthy(counts, max_batch), PREEMPTIONS, SEARCH_CAP);
    }
}

/// Two one-entry appends with the first or second write, or the first
/// or second sync, failing.
fn two_appends_with_a_fault(max_batch: usize) -> impl Iterator<Item = Case> {
    (0..2).flat_map(move |fail| {
        [(Some(fail), None), (None, Some(fail))].map(|(fail_write, fail_sync)| Case {
            fail_write,
            fail_sync,
            ..healthy(&[1, 1], max_batch)
        })
    })
}

#[test]
fn every_schedule_of_two_appends_with_a_fault() {
    for max_batch in [1, 2] {
        for case in two_appends_with_a_fault(max_batch) {
            check_every_schedule(case, PREEMPTIONS, SEARCH_CAP);
        }
    }
}

#[test]
fn every_schedule_of_appends_while_damage_is_found() {
    // A third thread multiplies the schedules: one appender with the
    // bound of the others, two with one preemption.
    let damaged = |counts: &[u64]| Case {
        damage: true,
        ..healthy(counts, 1)
    };
    check_every_schedule(damaged(&[1]), PREEMPTIONS, SEARCH_CAP);
    check_every_schedule(damaged(&[1, 1]), 1, SEARCH_CAP);
}

/// Under a minute: run with
/// `cargo test -p sealtrail-ledger --lib every_schedule_with_three -- --ignored`.
#[test]
#[ignore]
fn every_schedule_with_three_preemptions() {
    for max_batch in [1, 2] {
        check_every_schedule(healthy(&[1, 2], max_batch), 3, 1_000_000);
        for case in two_appends_with_a_fault(max_batch) {
            check_every_schedule(case, 3, 1_000_000);
        }
    }
    check_every_schedule(
        Case {
            damage: true,
            ..healthy(&[1], 1)
        },
        3,
        1_000_000,
    );
    check_every_schedule(
        Case {
            damage: true,
            ..healthy(&[1, 1], 1)
        },
        2,
        1_000_000,
    );
}
