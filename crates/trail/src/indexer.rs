//! The indexer thread: feeds acknowledged events to the index in ledger
//! order and commits at least every `visibility`.
//!
//! Concurrent appends finish in any order, so batches wait in `pending`
//! (keyed by first ledger index) until every earlier entry has arrived.
//! Ingest blocks while the backlog is over its bound, so a slow index
//! cannot grow memory without limit; the ledger never waits for the index
//! otherwise.
//!
//! Work is gathered: once events are ready the thread waits up to
//! [`GATHER`] (or until [`GATHER_EVENTS`] are waiting) and indexes them in
//! one go, and ingest wakes it only when it is idle or the gathered work is
//! large. A stream of small appends (single events over HTTP) would
//! otherwise wake this thread for every event, and those wake-ups
//! cost more than the indexing.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sealtrail_event::Event;
use sealtrail_index::EventIndex;

use crate::keys::Keys;
use crate::TrailError;

/// Longest wait for more events once some are ready to index: a small
/// addition to [`crate::TrailOptions::visibility`].
const GATHER: Duration = Duration::from_millis(10);

/// Waiting events that end the gathering at once.
const GATHER_EVENTS: usize = 4096;

struct State {
    /// Acknowledged batches not yet given to the index, by first index.
    // Boxed: events are moved several times on their way here (see `Prepared`).
    #[allow(clippy::vec_box)]
    pending: BTreeMap<u64, Vec<Box<Event>>>,
    backlog: usize,
    /// Ledger entries below this are searchable (last commit).
    committed: u64,
    commit_now: bool,
    stop: bool,
    failed: Option<String>,
    /// The thread waits with nothing to index: a push must wake it.
    idle: bool,
    /// When the oldest batch in `pending` arrived.
    oldest: Option<Instant>,
    /// One past the last ledger entry handed over (or committed at start).
    pushed_end: u64,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when work arrives, a commit is asked for, or on stop.
    work: Condvar,
    /// Signalled after each commit, on failure, and when the backlog shrinks.
    progress: Condvar,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct Indexer {
    shared: Arc<Shared>,
    max_backlog: usize,
    thread: Option<JoinHandle<()>>,
}

impl Indexer {
    /// Start indexing at ledger index `next` (everything below is committed).
    pub(crate) fn start(
        next: u64,
        index: Arc<EventIndex>,
        keys: Arc<Keys>,
        visibility: Duration,
        max_backlog: usize,
    ) -> Indexer {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: BTreeMap::new(),
                backlog: 0,
                committed: next,
                commit_now: false,
                stop: false,
                failed: None,
                idle: false,
                oldest: None,
                pushed_end: next,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sealtrail-indexer".into())
            .spawn(move || run(&worker, next, &index, &keys, visibility))
            .ok();
        if thread.is_none() {
            lock(&shared.state).failed = Some("could not start the indexer thread".into());
        }
        Indexer {
            shared,
            max_backlog: max_backlog.max(1),
            thread,
        }
    }

    /// Hand over the events of ledger entries `first..first+events.len()`.
    /// (Entries that are not events only reach the index through catch-up.)
    #[allow(clippy::vec_box)]
    pub(crate) fn push(&self, first: u64, events: Vec<Box<Event>>) {
        if events.is_empty() {
            return;
        }
        let mut s = lock(&self.shared.state);
        while s.backlog >= self.max_backlog && s.failed.is_none() && !s.stop {
            s = self.shared.progress.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.backlog += events.len();
        s.pushed_end = s.pushed_end.max(first + events.len() as u64);
        s.pending.insert(first, events);
        s.oldest.get_or_insert_with(Instant::now);
        if s.idle || s.backlog >= GATHER_EVENTS {
            s.idle = false;
            self.shared.work.notify_one();
        }
    }

    /// Commit now and wait until ledger entries below `size` are searchable.
    pub(crate) fn sync(&self, size: u64) -> Result<(), TrailError> {
        let mut s = lock(&self.shared.state);
        loop {
            if let Some(f) = &s.failed {
                return Err(TrailError::IndexStopped(f.clone()));
            }
            if s.committed >= size {
                return Ok(());
            }
            s.commit_now = true;
            self.shared.work.notify_one();
            s = self.shared.progress.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// One past the last ledger entry handed over so far.
    pub(crate) fn pushed_end(&self) -> u64 {
        lock(&self.shared.state).pushed_end
    }

    pub(crate) fn healthy(&self) -> Result<(), TrailError> {
        match &lock(&self.shared.state).failed {
            Some(f) => Err(TrailError::IndexStopped(f.clone())),
            None => Ok(()),
        }
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.work.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &Shared, mut next: u64, index: &EventIndex, keys: &Keys, visibility: Duration) {
    let mut last_commit = Instant::now();
    let mut uncommitted = false;
    loop {
        // Take every batch that continues the ledger order.
        let (ready, commit_now, stop) = {
            let mut s = lock(&shared.state);
            loop {
                let has_next = s.pending.first_key_value().is_some_and(|(k, _)| *k == next);
                let due = uncommitted && last_commit.elapsed() >= visibility;
                if s.commit_now || s.stop || due {
                    break;
                }
                let mut wait = if uncommitted {
                    visibility.saturating_sub(last_commit.elapsed())
                } else {
                    visibility
                };
                if has_next {
                    let since = *s.oldest.get_or_insert_with(Instant::now);
                    if s.backlog >= GATHER_EVENTS || since.elapsed() >= GATHER {
                        break;
                    }
                    wait = wait.min(GATHER.saturating_sub(since.elapsed()));
                } else {
                    s.idle = true;
                }
                s = shared.work.wait_timeout(s, wait).unwrap_or_else(|e| e.into_inner()).0;
                s.idle = false;
            }
            let mut ready = Vec::new();
            while let Some(entry) = s.pending.first_entry() {
                if *entry.key() != next {
                    break;
                }
                let events = entry.remove();
                s.backlog -= events.len();
                next += events.len() as u64;
                ready.push(events);
            }
            if !ready.is_empty() {
                // What is left waits for a gap to fill: its gathering starts now.
                s.oldest = (!s.pending.is_empty()).then(Instant::now);
                shared.progress.notify_all();
            }
            (ready, std::mem::take(&mut s.commit_now), s.stop)
        };

        let mut result = Ok(());
        let mut at = next - ready.iter().map(|b| b.len() as u64).sum::<u64>();
        for batch in &ready {
            if let Err(e) = index.add_events(at, batch) {
                result = Err(e.to_string());
                break;
            }
            at += batch.len() as u64;
            uncommitted = true;
        }
        if result.is_ok() && uncommitted && (commit_now || stop || last_commit.elapsed() >= visibility) {
            match index.commit() {
                Ok(watermark) => {
                    keys.forget_below(watermark);
                    uncommitted = false;
                    last_commit = Instant::now();
                    lock(&shared.state).committed = watermark;
                }
                Err(e) => result = Err(e.to_string()),
            }
        }
        if let Err(e) = result {
            let mut s = lock(&shared.state);
            s.failed = Some(e);
            shared.progress.notify_all();
            return;
        }
        shared.progress.notify_all();
        // On stop no ingest is running, so nothing can fill a gap.
        if stop && (ready.is_empty() || lock(&shared.state).pending.is_empty()) {
            return;
        }
    }
}
