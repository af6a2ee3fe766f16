//! The indexer thread: feeds acknowledged events to the index in ledger
//! order, commits at least every `visibility`, and rebuilds the index from
//! the ledger when it fails.
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
//!
//! When the index fails (a write, commit or merge error poisons it) the
//! events waiting for it are dropped and so is every later push: the
//! ledger holds them, and the rebuild reads them from there. Ingest thus
//! neither waits nor queues for a broken index. The thread builds a fresh
//! index from the ledger beside the old one (`query-index.rebuild`),
//! renames it into place, and resumes; a failed rebuild is retried after
//! 1 s, doubling up to 60 s. Until then queries are refused with
//! [`TrailError::IndexUnavailable`], while idempotency keys are still
//! found: in the old index's last commit, which stays searchable, or in
//! memory, where every key appended since that commit is kept until the
//! rebuilt index has committed it.
//!
//! An index that does not open at all (an I/O error other than damage the
//! open recognises and rebuilds at once) starts the thread in the failed
//! state, with no index: queries are refused as above, and so are appends
//! with an idempotency key, since no index holds the keys already stored,
//! until the rebuild is swapped in.
//!
//! Every file operation of a rebuild, the swap's renames and directory
//! syncs included, goes through the data directory's storage, so crash
//! tests on simulated storage cut power at each of them.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sealtrail_event::{parse_entry, Event};
use sealtrail_index::{EventIndex, IndexOptions};
use sealtrail_ledger::storage::Storage;
use sealtrail_ledger::Log;

use crate::keys::Keys;
use crate::TrailError;

/// Longest wait for more events once some are ready to index: a small
/// addition to [`crate::TrailOptions::visibility`].
const GATHER: Duration = Duration::from_millis(10);

/// Waiting events that end the gathering at once.
const GATHER_EVENTS: usize = 4096;

/// Ledger entries read per step of a catch-up or rebuild.
const CHUNK: u64 = 4096;

/// Wait before the first retry of a failed rebuild, doubled after each
/// failure up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// What a query refused during a rebuild is told to wait.
const RETRY_WHILE_REBUILDING: Duration = Duration::from_secs(5);

/// Suffix of the directory, beside the query index, a rebuild is built in.
pub(crate) const REBUILD_SUFFIX: &str = "rebuild";
/// Suffix the replaced index is renamed to, until it is deleted.
pub(crate) const RETIRED_SUFFIX: &str = "retired";

/// Whether the query index serves queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexState {
    /// Searchable, fed by ingest.
    Ok,
    /// Failed; being rebuilt from the ledger now.
    Rebuilding,
    /// Failed, and so did the last rebuild; the next starts after a wait.
    Failed,
}

impl IndexState {
    pub fn as_str(self) -> &'static str {
        match self {
            IndexState::Ok => "ok",
            IndexState::Rebuilding => "rebuilding",
            IndexState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for IndexState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The query index of a trail as health and metrics report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexStatus {
    pub state: IndexState,
    /// The cause of the last failure of the index or of a rebuild (kept
    /// after it recovered).
    pub last_error: Option<String>,
    /// Ledger entries covered: by the index when `Ok`, by the rebuild so
    /// far otherwise.
    pub covered: u64,
    /// Acknowledged events waiting for the indexer, and their bound
    /// ([`crate::TrailOptions::max_index_backlog`]).
    pub queued: usize,
    pub max_queued: usize,
    /// Failures of the index, and rebuilds swapped in, since the open.
    pub failures: u64,
    pub rebuilds: u64,
    /// Events whose hand-over was dropped because the index had failed
    /// (the rebuild read them from the ledger).
    pub dropped: u64,
    /// When `Failed`: how long until the next rebuild starts.
    pub retry_in: Option<Duration>,
    /// Idempotency keys held in memory until an index commit holds them,
    /// and their bound ([`crate::TrailOptions::max_unindexed_keys`]).
    pub held_keys: usize,
    pub max_held_keys: usize,
}

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
    state: IndexState,
    last_error: Option<String>,
    /// The rebuild's progress, in ledger entries.
    rebuilt: u64,
    retry_at: Option<Instant>,
    failures: u64,
    rebuilds: u64,
    dropped: u64,
    /// A search met damage in the index: the thread fails it and rebuilds.
    damage: Option<String>,
    /// A rebuild was asked for (why): the thread rebuilds without counting
    /// a failure.
    requested: Option<String>,
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
    /// The index searches and idempotency lookups use; replaced by a
    /// rebuild. None: it did not open, and no rebuild is in place yet.
    index: RwLock<Option<Arc<EventIndex>>>,
}

impl Shared {
    fn index(&self) -> Option<Arc<EventIndex>> {
        self.index.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the thread needs beyond the shared state.
pub(crate) struct Context {
    pub(crate) log: Log,
    /// The log's name, for the server log and metrics.
    pub(crate) name: String,
    /// The query index's directory.
    pub(crate) dir: PathBuf,
    pub(crate) opts: IndexOptions,
    /// The data directory's storage, which the index's files go through.
    pub(crate) storage: Arc<dyn sealtrail_ledger::storage::Storage>,
    pub(crate) keys: Arc<Keys>,
    pub(crate) visibility: Duration,
}

impl Context {
    /// The ledger's history, which every index commit records the root of.
    fn history(&self) -> Arc<dyn sealtrail_index::History> {
        Arc::new(crate::LedgerHistory(self.log.clone()))
    }
}

pub(crate) struct Indexer {
    shared: Arc<Shared>,
    max_backlog: usize,
    name: String,
    thread: Option<JoinHandle<()>>,
}

impl Indexer {
    /// Start indexing at ledger index `next` (everything below is
    /// committed) into `index`; or, when the index did not open (`Err`,
    /// the cause), start failed and rebuild it from the ledger.
    pub(crate) fn start(
        next: u64,
        index: Result<Arc<EventIndex>, String>,
        ctx: Context,
        max_backlog: usize,
    ) -> Indexer {
        let (index, cause) = match index {
            Ok(index) => (Some(index), None),
            Err(cause) => (None, Some(cause)),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: BTreeMap::new(),
                backlog: 0,
                committed: if index.is_some() { next } else { 0 },
                commit_now: false,
                stop: false,
                state: if index.is_some() {
                    IndexState::Ok
                } else {
                    IndexState::Rebuilding
                },
                last_error: None,
                rebuilt: 0,
                retry_at: None,
                failures: 0,
                rebuilds: 0,
                dropped: 0,
                damage: None,
                requested: None,
                idle: false,
                oldest: None,
                pushed_end: next,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            index: RwLock::new(index),
        });
        let name = ctx.name.clone();
        // Present from the start, so a rate over them works from zero.
        metrics::counter!("sealtrail_index_failures_total", "log" => name.clone()).increment(0);
        metrics::counter!("sealtrail_index_rebuilds_total", "log" => name.clone()).increment(0);
        metrics::gauge!("sealtrail_index_rebuilding", "log" => name.clone()).set(0.0);
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sealtrail-indexer".into())
            .spawn(move || run(&worker, &ctx, next, cause))
            .ok();
        if thread.is_none() {
            let mut s = lock(&shared.state);
            s.state = IndexState::Failed;
            s.last_error = Some("could not start the indexer thread".into());
        }
        Indexer {
            shared,
            max_backlog: max_backlog.max(1),
            name,
            thread,
        }
    }

    /// The index idempotency keys are looked up in now, serving or not
    /// (a failed one's last commit stays searchable); None when it did not
    /// open and no rebuild is in place yet.
    pub(crate) fn index(&self) -> Option<Arc<EventIndex>> {
        self.shared.index()
    }

    /// The index, if it serves queries; refused otherwise.
    pub(crate) fn searchable(&self) -> Result<Arc<EventIndex>, TrailError> {
        let s = lock(&self.shared.state);
        match (s.state, self.shared.index()) {
            (IndexState::Ok, Some(index)) => Ok(index),
            _ => Err(self.unavailable(&s)),
        }
    }

    /// How long a caller refused for want of the index should wait.
    pub(crate) fn retry_after(&self) -> Duration {
        retry_after(&lock(&self.shared.state))
    }

    /// Hand over the events of ledger entries `first..first+events.len()`.
    /// (Entries that are not events only reach the index through catch-up.)
    /// While the index is failed they are dropped: the rebuild reads them
    /// from the ledger.
    #[allow(clippy::vec_box)]
    pub(crate) fn push(&self, first: u64, events: Vec<Box<Event>>) {
        if events.is_empty() {
            return;
        }
        let mut s = lock(&self.shared.state);
        s.pushed_end = s.pushed_end.max(first + events.len() as u64);
        while s.backlog >= self.max_backlog && s.state == IndexState::Ok && !s.stop {
            s = self.shared.progress.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.state != IndexState::Ok {
            s.dropped += events.len() as u64;
            drop(s);
            metrics::counter!("sealtrail_index_dropped_events_total", "log" => self.name.clone())
                .increment(events.len() as u64);
            return;
        }
        s.backlog += events.len();
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
            if s.state != IndexState::Ok {
                return Err(self.unavailable(&s));
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

    /// A search found the index damaged (a segment that does not hold
    /// together): have it rebuilt, and refuse the search.
    pub(crate) fn damaged(&self, cause: String) -> TrailError {
        let mut s = lock(&self.shared.state);
        if s.state == IndexState::Ok {
            s.damage.get_or_insert(cause);
            self.shared.work.notify_one();
        }
        let mut e = self.unavailable(&s);
        if let TrailError::IndexUnavailable { state, .. } = &mut e {
            if *state == IndexState::Ok {
                *state = IndexState::Rebuilding;
            }
        }
        e
    }

    /// Have the index rebuilt from the ledger because `why` asked for it,
    /// not because it failed: neither a failure nor the last error.
    pub(crate) fn request_rebuild(&self, why: String) {
        let mut s = lock(&self.shared.state);
        if s.state == IndexState::Ok && s.damage.is_none() {
            s.requested.get_or_insert(why);
            self.shared.work.notify_one();
        }
    }

    fn unavailable(&self, s: &State) -> TrailError {
        TrailError::IndexUnavailable {
            log: self.name.clone(),
            state: s.state,
            retry_after: retry_after(s),
        }
    }

    pub(crate) fn status(&self) -> IndexStatus {
        let covered = self.index().map(|i| i.indexed());
        let s = lock(&self.shared.state);
        IndexStatus {
            state: s.state,
            last_error: s.last_error.clone(),
            covered: match covered {
                Some(covered) if s.state == IndexState::Ok => covered,
                _ => s.rebuilt,
            },
            queued: s.backlog,
            max_queued: self.max_backlog,
            failures: s.failures,
            rebuilds: s.rebuilds,
            dropped: s.dropped,
            retry_in: s
                .retry_at
                .filter(|_| s.state == IndexState::Failed)
                .map(|at| at.saturating_duration_since(Instant::now())),
            held_keys: 0,
            max_held_keys: 0,
        }
    }
}

fn retry_after(s: &State) -> Duration {
    match s.retry_at {
        Some(at) if s.state == IndexState::Failed => {
            // Whole seconds, rounded up: the rebuild starts then and
            // takes a while.
            let wait = at.saturating_duration_since(Instant::now());
            Duration::from_secs(wait.as_secs() + 1)
        }
        _ => RETRY_WHILE_REBUILDING,
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

/// Why live indexing stopped.
enum Interrupted {
    /// The index failed: the cause.
    Failed(String),
    /// A rebuild was asked for: why.
    Requested(String),
}

impl From<String> for Interrupted {
    fn from(cause: String) -> Interrupted {
        Interrupted::Failed(cause)
    }
}

/// `failed_at_open`: the index did not open, for this reason; it is
/// rebuilt before anything is indexed.
fn run(shared: &Shared, ctx: &Context, mut next: u64, mut failed_at_open: Option<String>) {
    loop {
        let interrupted = match failed_at_open.take() {
            Some(cause) => Interrupted::Failed(cause),
            None => match live(shared, ctx, next) {
                Ok(()) => return,
                Err(interrupted) => interrupted,
            },
        };
        match interrupted {
            Interrupted::Failed(cause) => failed(shared, ctx, cause),
            Interrupted::Requested(why) => requested(shared, ctx, &why),
        }
        match rebuild_until_done(shared, ctx) {
            Some(at) => next = at,
            None => return,
        }
    }
}

/// Feed the index from ingest until stopped (`Ok`) or the index fails
/// (`Err`, the cause). Entries of `[next, ledger size)` are read from the
/// ledger first: those acknowledged while pushes were dropped.
fn live(shared: &Shared, ctx: &Context, mut next: u64) -> Result<(), Interrupted> {
    let Some(index) = shared.index() else {
        return Err(Interrupted::Failed("the query index is not open".into()));
    };
    let failure = |e: &dyn std::fmt::Display| cause_of(&index, e);
    let size = ctx.log.size();
    if next < size {
        feed_from_ledger(&ctx.log, &index, next, size, &mut |_| true).map_err(|e| failure(&e))?;
        next = size;
        let watermark = index.commit().map_err(|e| failure(&e))?;
        ctx.keys.forget_below(watermark);
        lock(&shared.state).committed = watermark;
        shared.progress.notify_all();
    }
    let mut last_commit = Instant::now();
    let mut uncommitted = false;
    loop {
        // Take every batch that continues the ledger order.
        let (ready, commit_now, stop) = {
            let mut s = lock(&shared.state);
            loop {
                if let Some(why) = s.damage.take() {
                    return Err(Interrupted::Failed(why));
                }
                if let Some(why) = s.requested.take() {
                    return Err(Interrupted::Requested(why));
                }
                let has_next = s.pending.first_key_value().is_some_and(|(k, _)| *k <= next);
                let due = uncommitted && last_commit.elapsed() >= ctx.visibility;
                if s.commit_now || s.stop || due {
                    break;
                }
                let mut wait = if uncommitted {
                    ctx.visibility.saturating_sub(last_commit.elapsed())
                } else {
                    ctx.visibility
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
                if !has_next && !uncommitted {
                    // Idle: a merge may have failed meanwhile.
                    if let Some(why) = index.merge_failure() {
                        return Err(Interrupted::Failed(why));
                    }
                }
            }
            let mut ready = Vec::new();
            while let Some(entry) = s.pending.first_entry() {
                let first = *entry.key();
                if first > next {
                    break;
                }
                let mut events = entry.remove();
                s.backlog -= events.len();
                // Pushed while the ledger was read for entries whose
                // push had been dropped: keep only what is new.
                let seen = usize::try_from(next - first).unwrap_or(usize::MAX).min(events.len());
                events.drain(..seen);
                next += events.len() as u64;
                if !events.is_empty() {
                    ready.push(events);
                }
            }
            if !ready.is_empty() {
                // What is left waits for a gap to fill: its gathering starts now.
                s.oldest = (!s.pending.is_empty()).then(Instant::now);
                shared.progress.notify_all();
            }
            (ready, std::mem::take(&mut s.commit_now), s.stop)
        };

        let mut at = next - ready.iter().map(|b| b.len() as u64).sum::<u64>();
        for batch in &ready {
            index.add_events(at, batch).map_err(|e| failure(&e))?;
            at += batch.len() as u64;
            uncommitted = true;
        }
        if uncommitted && (commit_now || stop || last_commit.elapsed() >= ctx.visibility) {
            let watermark = index.commit().map_err(|e| failure(&e))?;
            ctx.keys.forget_below(watermark);
            uncommitted = false;
            last_commit = Instant::now();
            lock(&shared.state).committed = watermark;
        }
        shared.progress.notify_all();
        // On stop no ingest is running, so nothing can fill a gap.
        if stop && (ready.is_empty() || lock(&shared.state).pending.is_empty()) {
            return Ok(());
        }
    }
}

/// The cause to report of `e`: a refusal after a failed merge names the
/// merge's error.
fn cause_of(index: &EventIndex, e: &dyn std::fmt::Display) -> String {
    match index.merge_failure() {
        Some(why) => why,
        None => e.to_string(),
    }
}

/// The index failed: report it, drop what waits for it, and stop taking
/// pushes until it is rebuilt.
fn failed(shared: &Shared, ctx: &Context, cause: String) {
    tracing::error!(
        log = %ctx.name,
        cause = %cause,
        "the query index of log {} failed: {cause}; queries are refused while it is rebuilt from the ledger",
        ctx.name
    );
    metrics::counter!("sealtrail_index_failures_total", "log" => ctx.name.clone()).increment(1);
    let dropped = {
        let mut s = lock(&shared.state);
        s.state = IndexState::Rebuilding;
        s.last_error = Some(cause);
        s.failures += 1;
        s.rebuilt = 0;
        s.backlog = 0;
        s.oldest = None;
        s.commit_now = false;
        s.damage = None;
        s.requested = None;
        std::mem::take(&mut s.pending)
    };
    // Ingest blocked on the bound goes on (and drops its events).
    shared.progress.notify_all();
    drop(dropped);
}

/// A rebuild was asked for: as [`failed`], the index stops taking pushes
/// until it is rebuilt, but nothing failed, so neither the failures nor the
/// last error change.
fn requested(shared: &Shared, ctx: &Context, why: &str) {
    tracing::info!(
        log = %ctx.name,
        "rebuilding the query index of log {} as asked ({why}); queries are refused until it is swapped in",
        ctx.name
    );
    let dropped = {
        let mut s = lock(&shared.state);
        s.state = IndexState::Rebuilding;
        s.rebuilt = 0;
        s.backlog = 0;
        s.oldest = None;
        s.commit_now = false;
        s.requested = None;
        std::mem::take(&mut s.pending)
    };
    shared.progress.notify_all();
    drop(dropped);
}

/// Rebuild the index, retrying with backoff, until it is swapped in:
/// returns where live indexing resumes, or None when stopped.
fn rebuild_until_done(shared: &Shared, ctx: &Context) -> Option<u64> {
    let rebuilding = metrics::gauge!("sealtrail_index_rebuilding", "log" => ctx.name.clone());
    let mut delay = FIRST_RETRY;
    loop {
        {
            let mut s = lock(&shared.state);
            if s.stop {
                return None;
            }
            s.state = IndexState::Rebuilding;
            s.retry_at = None;
            s.rebuilt = 0;
        }
        rebuilding.set(1.0);
        tracing::info!(log = %ctx.name, "rebuilding the query index of log {} from the ledger", ctx.name);
        let started = Instant::now();
        let result = rebuild(shared, ctx);
        rebuilding.set(0.0);
        match result {
            Ok(Some(next)) => {
                metrics::counter!("sealtrail_index_rebuilds_total", "log" => ctx.name.clone()).increment(1);
                tracing::info!(
                    log = %ctx.name,
                    entries = next,
                    seconds = started.elapsed().as_secs_f64(),
                    "the query index of log {} is rebuilt ({next} entries); queries resume",
                    ctx.name
                );
                return Some(next);
            }
            Ok(None) => return None,
            Err(e) => {
                let cause = e.to_string();
                tracing::error!(
                    log = %ctx.name,
                    cause = %cause,
                    retry_in_seconds = delay.as_secs(),
                    "rebuilding the query index of log {} failed: {cause}; next attempt in {} s",
                    ctx.name,
                    delay.as_secs()
                );
                metrics::counter!("sealtrail_index_rebuild_failures_total", "log" => ctx.name.clone()).increment(1);
                let mut s = lock(&shared.state);
                s.state = IndexState::Failed;
                s.last_error = Some(cause);
                let until = Instant::now() + delay;
                s.retry_at = Some(until);
                while !s.stop {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    s = shared.work.wait_timeout(s, left).unwrap_or_else(|e| e.into_inner()).0;
                }
                if s.stop {
                    return None;
                }
                delay = (delay * 2).min(MAX_RETRY);
            }
        }
    }
}

/// Build a fresh index from the ledger in the rebuild directory, then put
/// it in place of the failed one and make it the index searches use.
/// Returns the new watermark (None: stopped).
fn rebuild(shared: &Shared, ctx: &Context) -> Result<Option<u64>, TrailError> {
    let storage = &*ctx.storage;
    let aside = sibling(&ctx.dir, REBUILD_SUFFIX);
    EventIndex::wipe_with(storage, &aside)?;
    {
        let fresh = EventIndex::open_with(ctx.storage.clone(), &aside, ctx.opts, Some(ctx.history()))?;
        // Until the ledger's end is near: what is appended meanwhile is read
        // once live indexing resumes. A few passes at most, should ingest
        // outpace the rebuild.
        for _ in 0..8 {
            let size = ctx.log.size();
            let from = crate::skip_pruned(&ctx.log, &fresh, fresh.indexed())?;
            let mut go_on = |at: u64| {
                let mut s = lock(&shared.state);
                s.rebuilt = at;
                !s.stop
            };
            if !feed_from_ledger(&ctx.log, &fresh, from, size, &mut go_on)? {
                return Ok(None);
            }
            fresh.commit()?;
            crate::forget_pruned(&ctx.log, &fresh)?;
            if ctx.log.size() - size < CHUNK {
                break;
            }
        }
        // Dropping it stops its merge thread before the directory moves.
    }

    let old = shared.index();
    if let Some(old) = &old {
        old.stop_merges();
    }
    let retired = sibling(&ctx.dir, RETIRED_SUFFIX);
    EventIndex::wipe_with(storage, &retired)?;
    rename(storage, &ctx.dir, &retired, true)?;
    rename(storage, &aside, &ctx.dir, false)?;
    if let Some(parent) = ctx.dir.parent() {
        sync_dir(storage, parent)?;
    }
    let index = Arc::new(EventIndex::open_with(
        ctx.storage.clone(),
        &ctx.dir,
        ctx.opts,
        Some(ctx.history()),
    )?);
    index.set_event_source(Arc::new(crate::LedgerEvents(ctx.log.clone())));
    let watermark = index.indexed();
    *shared.index.write().unwrap_or_else(|e| e.into_inner()) = Some(index);
    // Keys held for the failed index are found in the rebuilt one now,
    // even if nothing is appended (and committed) after it.
    ctx.keys.forget_below(watermark);
    {
        let mut s = lock(&shared.state);
        s.state = IndexState::Ok;
        s.committed = watermark;
        s.rebuilds += 1;
        s.retry_at = None;
    }
    drop(old);
    // Searches still running on the old index keep their mapped segments.
    if let Err(e) = EventIndex::wipe_with(storage, &retired) {
        tracing::warn!(log = %ctx.name, "deleting the replaced query index of log {}: {e}", ctx.name);
    }
    Ok(Some(watermark))
}

/// Add ledger entries `[from, to)` to `index` in chunks, calling
/// `go_on(done)` after each; false stops early (returns false).
pub(crate) fn feed_from_ledger(
    log: &Log,
    index: &EventIndex,
    from: u64,
    to: u64,
    go_on: &mut dyn FnMut(u64) -> bool,
) -> Result<bool, TrailError> {
    let mut next = from;
    while next < to {
        let count = CHUNK.min(to - next);
        for (i, entry) in log.entries(next, count)?.iter().enumerate() {
            // Raw entries (`append --raw`) are part of the ledger but not
            // events: the index steps over them.
            let event = parse_entry(entry).ok();
            index.add(next + i as u64, event.as_ref())?;
        }
        next += count;
        if !go_on(next) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `<dir>.<suffix>`, beside the index directory.
pub(crate) fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    dir.with_file_name(name)
}

fn rename(storage: &dyn Storage, from: &Path, to: &Path, may_be_missing: bool) -> Result<(), TrailError> {
    match storage.rename(from, to) {
        Err(e) if may_be_missing && e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r.map_err(|source| TrailError::Io {
            what: format!("renaming {} to {}", from.display(), to.display()),
            source,
        }),
    }
}

fn sync_dir(storage: &dyn Storage, dir: &Path) -> Result<(), TrailError> {
    storage.sync_dir(dir).map_err(|source| TrailError::Io {
        what: format!("syncing {}", dir.display()),
        source,
    })
}

/// Make the index directory consistent after a stop during a rebuild: a
/// rebuild that had not been swapped in is deleted (the old index is still
/// in place and is caught up as usual), one cut between the swap's two
/// renames is put in place, and a replaced index left behind is deleted
/// (if that fails, the next open tries again: it is in nobody's way).
pub(crate) fn settle_rebuild(storage: &dyn Storage, dir: &Path, name: &str) -> Result<(), TrailError> {
    let aside = sibling(dir, REBUILD_SUFFIX);
    if storage.exists(&aside) {
        if storage.exists(dir) {
            EventIndex::wipe_with(storage, &aside)?;
        } else {
            rename(storage, &aside, dir, false)?;
            if let Some(parent) = dir.parent() {
                sync_dir(storage, parent)?;
            }
        }
    }
    if let Err(e) = EventIndex::wipe_with(storage, &sibling(dir, RETIRED_SUFFIX)) {
        tracing::warn!(log = %name, "deleting the replaced query index of log {name}: {e}");
    }
    Ok(())
}
