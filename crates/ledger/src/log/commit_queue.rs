//! The group-commit protocol: who runs which commit stage, and when each
//! waiting appender is woken.
//!
//! Appends move through two stages, each run by one caller at a time on
//! behalf of everyone queued: a *writer* writes the queued batches, a
//! *syncer* makes everything written so far durable and publishes it. While
//! one batch syncs, the next is written, so CPU work overlaps the disk flush.
//! An append returns once `durable` reaches its end, or with the error of
//! a poisoned or damaged log.
//!
//! Every caller waits on its own condition variable: a commit wakes exactly
//! the callers it made durable, and a caller leaving with work still to do
//! wakes one sleeper per stage nobody runs. (One shared condition variable
//! woke all 64 waiters of 64 concurrent single-event appends at each stage,
//! and those wake-ups cost more CPU than the appends.)
//!
//! Deliberately not here: what a stage does (files, hashes, signatures);
//! the log passes that in as [`Stages`]. The locks come from `super::sync`,
//! so the model check (`commit_queue_model`) compiles this same file over
//! shuttle's locks and explores the interleavings of the shipped protocol.

use super::sync::{Condvar, Mutex, MutexGuard};
use crate::error::{LedgerError, Result};
use crate::log::Damage;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// Distinct damaged entries a log remembers (each counted once in
/// `sealtrail_integrity_failures_total`); beyond this, every detection counts.
const MAX_DAMAGED_REMEMBERED: usize = 1024;

/// What the two commit stages do. The protocol calls them with no lock of
/// its own held, and never runs two writes, or two syncs, at once.
pub(crate) trait Stages {
    /// One append's entries, ready to write.
    type Batch;
    /// What a write leaves for the next sync to make durable.
    type Written: Copy;
    /// Entries in `batch`.
    fn entries(batch: &Self::Batch) -> usize;
    /// Entries in the tree once `written` is durable.
    fn size(written: &Self::Written) -> u64;
    /// Write `batches`, in order, after everything written before (not yet
    /// durable). An error poisons the log.
    fn write(&self, batches: &[Self::Batch]) -> Result<Self::Written>;
    /// Make everything up to `target` durable and publish it. An error
    /// poisons the log.
    fn sync(&self, target: Self::Written) -> Result<()>;
}

/// The queue's state, behind its lock.
pub(crate) struct Queue<S: Stages> {
    /// Index the next queued entry gets.
    next: u64,
    /// Entries durable and published: every append ending here or before
    /// may return.
    durable: u64,
    pending: VecDeque<S::Batch>,
    pending_entries: usize,
    writing: bool,
    syncing: bool,
    /// The tree as last written to the OS by a writer, not yet necessarily
    /// durable: what the next sync will make durable.
    written: S::Written,
    poisoned: Option<Arc<str>>,
    /// The poisoning write or sync failed for want of space, so reopening
    /// from the last durable state is safe once space is free.
    poisoned_by_full_disk: bool,
    /// The first damaged entry found; appends and new checkpoints are
    /// refused while it is set.
    damaged: Option<Damage>,
    /// Every damaged entry found so far (up to [`MAX_DAMAGED_REMEMBERED`]).
    damaged_entries: BTreeSet<u64>,
    /// Every append in flight, in order of `end`.
    waiters: VecDeque<Waiter>,
}

struct Waiter {
    /// One past the append's last index: durable once `durable >= end`.
    end: u64,
    wake: Arc<Condvar>,
    sleeping: bool,
}

impl<S: Stages> Queue<S> {
    /// A healthy queue whose first `size` entries, `written`, are durable.
    pub(crate) fn resume(size: u64, written: S::Written) -> Queue<S> {
        Queue {
            next: size,
            durable: size,
            pending: VecDeque::new(),
            pending_entries: 0,
            writing: false,
            syncing: false,
            written,
            poisoned: None,
            poisoned_by_full_disk: false,
            damaged: None,
            damaged_entries: BTreeSet::new(),
            waiters: VecDeque::new(),
        }
    }

    pub(crate) fn poisoned(&self) -> Option<&Arc<str>> {
        self.poisoned.as_ref()
    }

    /// A write or sync is running.
    pub(crate) fn busy(&self) -> bool {
        self.writing || self.syncing
    }

    /// A stage nobody runs has work waiting.
    fn idle_stages(&self) -> usize {
        usize::from(!self.writing && !self.pending.is_empty())
            + usize::from(!self.syncing && S::size(&self.written) > self.durable)
    }

    /// Wake the callers whose entries are now durable.
    fn wake_durable(&mut self) {
        while self.waiters.front().is_some_and(|w| w.end <= self.durable) {
            if let Some(w) = self.waiters.pop_front() {
                w.wake.notify_one();
            }
        }
    }

    /// Wake up to `n` sleeping callers to run idle stages.
    fn wake_sleepers(&mut self, mut n: usize) {
        for w in self.waiters.iter_mut() {
            if n == 0 {
                break;
            }
            if w.sleeping {
                w.sleeping = false;
                w.wake.notify_one();
                n -= 1;
            }
        }
    }

    /// Wake every caller in flight: each returns at once.
    fn wake_all(&mut self) {
        for w in self.waiters.drain(..) {
            w.wake.notify_one();
        }
    }

    /// After a stage ends: this caller runs one idle stage itself (unless
    /// its entries are durable and it leaves, which wakes its own helpers);
    /// sleepers run the others, so writing overlaps syncing.
    fn hand_off(&mut self, end: u64) {
        if self.durable < end {
            let idle = self.idle_stages();
            self.wake_sleepers(idle.saturating_sub(1));
        }
    }

    /// Stop the log: every caller in flight gets the error. The reason
    /// kept (and shown to clients) names the log's file, not where it
    /// lives; the full error goes to the server's log.
    pub(crate) fn poison(&mut self, error: &LedgerError) {
        if self.poisoned.is_none() {
            self.poisoned_by_full_disk = error.is_storage_full();
            tracing::error!("log poisoned, writes stop until it is reopened: {error}");
        }
        let reason = match error {
            LedgerError::Io { op, path, source } => {
                let file = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy());
                format!("{op} {file}: {source}")
            }
            other => other.to_string(),
        };
        self.poisoned = Some(reason.into());
        self.wake_all();
    }

    fn set_sleeping(&mut self, end: u64, sleeping: bool) {
        if let Ok(i) = self.waiters.binary_search_by_key(&end, |w| w.end) {
            self.waiters[i].sleeping = sleeping;
        }
    }
}

/// The commit queue of one log.
pub(crate) struct CommitQueue<S: Stages> {
    /// The log's name, for the errors it answers with.
    log: String,
    /// Most entries one write takes.
    max_batch: usize,
    /// How long a writer waits for `max_batch` entries (zero: not at all).
    max_delay: Duration,
    state: Mutex<Queue<S>>,
    /// Signalled on each append, for a writer waiting out `max_delay`.
    queued: Condvar,
}

impl<S: Stages> CommitQueue<S> {
    pub(crate) fn new(log: &str, max_batch: usize, max_delay: Duration, state: Queue<S>) -> CommitQueue<S> {
        CommitQueue {
            log: log.to_string(),
            max_batch,
            max_delay,
            state: Mutex::new(state),
            queued: Condvar::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Queue<S>> {
        // Poisoning of the lock only means another thread panicked; the
        // log's own poisoned state is `Queue::poisoned`.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The error for the log's recorded damage, if it has any.
    pub(crate) fn damage_error(&self, q: &Queue<S>) -> Option<LedgerError> {
        q.damaged.as_ref().map(|d| LedgerError::Damaged {
            log: self.log.clone(),
            index: d.index,
            offset: d.offset,
            detail: d.detail.clone(),
        })
    }

    /// Why appends are refused now, if they are.
    fn refusal(&self, q: &Queue<S>) -> Result<()> {
        if let Some(e) = self.damage_error(q) {
            return Err(e);
        }
        match &q.poisoned {
            Some(reason) => Err(LedgerError::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    pub(crate) fn poisoned(&self) -> Option<Arc<str>> {
        self.lock().poisoned.clone()
    }

    pub(crate) fn poisoned_by_full_disk(&self) -> bool {
        let q = self.lock();
        q.poisoned.is_some() && q.poisoned_by_full_disk
    }

    pub(crate) fn poison(&self, error: &LedgerError) {
        self.lock().poison(error);
    }

    pub(crate) fn damaged(&self) -> Option<Damage> {
        self.lock().damaged.clone()
    }

    /// Record damage found in the log's stored data. The first damage
    /// refuses every append in flight; returns whether this entry's damage
    /// is news (each entry is reported once).
    pub(crate) fn mark_damaged(&self, damage: Damage) -> bool {
        let mut q = self.lock();
        let new = q.damaged_entries.len() >= MAX_DAMAGED_REMEMBERED || q.damaged_entries.insert(damage.index);
        if q.damaged.is_none() {
            q.damaged = Some(damage);
            // Appends in flight must not be acknowledged or signed over it.
            q.wake_all();
        }
        new
    }

    /// Queue `count` entries (at least one) and return the index of the
    /// first once all are durable. `seal` makes the batch given that index;
    /// it runs under the queue's lock, so keep it short.
    pub(crate) fn append(&self, stages: &S, count: u64, seal: impl FnOnce(u64) -> S::Batch) -> Result<u64> {
        debug_assert!(count > 0, "an append of no entries has nothing to wait for");
        let mut q = self.lock();
        self.refusal(&q)?;
        let first = q.next;
        let batch = seal(first);
        q.next += count;
        q.pending.push_back(batch);
        q.pending_entries += count as usize;
        self.queued.notify_one();
        let end = first + count;
        let wake = Arc::new(Condvar::new());
        q.waiters.push_back(Waiter {
            end,
            wake: wake.clone(),
            sleeping: false,
        });
        loop {
            if q.durable >= end {
                // Whoever is left waiting may need someone to run a stage.
                let idle = q.idle_stages();
                q.wake_sleepers(idle);
                return Ok(first);
            }
            self.refusal(&q)?;
            if !q.writing && !q.pending.is_empty() {
                q.writing = true;
                if !self.max_delay.is_zero() && q.pending_entries < self.max_batch {
                    let max = self.max_batch;
                    q = self
                        .queued
                        .wait_timeout_while(q, self.max_delay, |q| q.pending_entries < max)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                let mut batch = Vec::new();
                let mut n = 0usize;
                while let Some(p) = q.pending.front() {
                    let entries = S::entries(p);
                    if n > 0 && n + entries > self.max_batch {
                        break;
                    }
                    n += entries;
                    batch.extend(q.pending.pop_front());
                }
                q.pending_entries -= n;
                drop(q);
                let result = stages.write(&batch);
                q = self.lock();
                q.writing = false;
                match result {
                    Ok(w) => q.written = w,
                    Err(e) => q.poison(&e),
                }
                q.hand_off(end);
                continue;
            }
            if !q.syncing && S::size(&q.written) > q.durable {
                q.syncing = true;
                let target = q.written;
                drop(q);
                let result = stages.sync(target);
                q = self.lock();
                q.syncing = false;
                match result {
                    Ok(()) => {
                        q.durable = S::size(&target);
                        q.wake_durable();
                    }
                    Err(e) => q.poison(&e),
                }
                q.hand_off(end);
                continue;
            }
            q.set_sleeping(end, true);
            q = wake.wait(q).unwrap_or_else(|e| e.into_inner());
            q.set_sleeping(end, false);
        }
    }
}
