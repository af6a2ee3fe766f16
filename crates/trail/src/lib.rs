//! One audit trail: a ledger log plus its query index, and the ingest
//! pipeline the CLI and the server share.
//!
//! ```text
//! JSON ─accept─► Event + entry ─idempotency─► Log::append ─► durable, acknowledged
//!                (sealtrail-event)  (keys)     (sealtrail-ledger)   │
//!                                                          indexer thread: in ledger order,
//!                                                          commit every `visibility`
//!                                                          (sealtrail-index)
//! ```
//!
//! The ledger is the truth; the index is derived. An event is acknowledged
//! once the ledger has it, and becomes searchable within
//! [`TrailOptions::visibility`]. The index records how many ledger entries
//! it holds (its watermark); on open, whatever the ledger has beyond the
//! watermark is indexed before the trail accepts anything, so a crash loses
//! nothing the index needs and idempotency keys hold across restarts.
//!
//! Architecture invariant: no HTTP, no async runtime, no output formats.
//! Architecture invariant: the index is only ever fed in ledger order, and
//! its watermark never passes an entry it has not indexed.

pub mod jsonl;
pub mod retention;
pub mod target;
pub mod when;

mod indexer;
mod keys;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sealtrail_event::{
    accept_json_changed, accept_json_entry, event_id, parse_entry, Event, Rejection, Timestamp, Ulid,
};
use sealtrail_index::{EventIndex, EventSource, History, SourceError};
use sealtrail_ledger::{DataDir, LedgerError, Log, LogOptions, PreparedEntry};
use sealtrail_merkle::hash::{leaf_hash, Hash};
use sealtrail_pii::{FieldPath, LogPii, PiiError};
use thiserror::Error;

pub use sealtrail_index::text_words;
pub use sealtrail_index::{
    Bucket, Facet, Filter, GlobTally, IndexError, IndexOptions, Order, Page, Performance, Stats, TimeRange,
};

use crate::indexer::{Context, Indexer};
pub use crate::indexer::{IndexState, IndexStatus};
use crate::keys::{Keys, Plan};

/// The directory, inside a log's directory, that holds its query index
/// (beside the ledger's own `index` file of entry offsets).
pub const INDEX_DIR: &str = "query-index";

/// Where the trail reads the time: `received_at` of every event ingested.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Called with the log's new size after every append, on the appending
/// thread: it must return at once (post a notification, never wait).
pub type AppendHook = Arc<dyn Fn(u64) + Send + Sync>;

/// How a trail is run.
#[derive(Clone)]
pub struct TrailOptions {
    pub log: LogOptions,
    pub index: IndexOptions,
    /// Longest time between an acknowledged append and its being searchable
    /// (the index commit interval).
    pub visibility: Duration,
    /// Acknowledged events waiting for the indexer at which ingest waits
    /// for it: bounds memory when the indexer falls behind (a batch that
    /// finds fewer waiting is handed over whole).
    pub max_index_backlog: usize,
    /// Idempotency keys held in memory (appended since the index's last
    /// commit, or in flight) at which a batch with a new key is refused
    /// with [`TrailError::KeysFull`]: while the index is failed and
    /// rebuilt, keys wait in memory until the rebuilt index commits them.
    /// Twice the backlog bound by default, so a serving index, whose
    /// commits let keys go within `visibility`, does not reach it.
    pub max_unindexed_keys: usize,
    /// The system clock unless a test injects one.
    pub clock: Clock,
    /// The log's PII protection (docs/pii.md): protected fields are
    /// transformed at ingest, before canonicalisation and hashing, and
    /// filters on hmac fields are hashed the same way. `None`: none.
    /// Ignored when `pii_source` is given.
    pub pii: Option<Arc<LogPii>>,
    /// Where the log's PII protection is learnt when it may change while
    /// the trail is open: asked before every batch and every search.
    pub pii_source: Option<Arc<dyn PiiSource>>,
}

/// The PII protection of logs as it is now: changes (`sealtrail pii
/// set`) apply from the next batch on, without reopening the trail.
pub trait PiiSource: Send + Sync {
    /// The protection of `log` now; an error when fields are protected
    /// but cannot be (no master key), and then nothing is stored.
    fn current(&self, log: &str) -> Result<Option<Arc<LogPii>>, PiiError>;
}

impl Default for TrailOptions {
    fn default() -> Self {
        Self {
            log: LogOptions::default(),
            index: IndexOptions::default(),
            visibility: Duration::from_millis(500),
            max_index_backlog: 1 << 18,
            max_unindexed_keys: 1 << 19,
            clock: Arc::new(Timestamp::now),
            pii: None,
            pii_source: None,
        }
    }
}

/// What a trail refuses or fails at. Faults of single events are not
/// errors of the call: they come back as [`Item::Rejected`].
#[derive(Debug, Error)]
pub enum TrailError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("query index: {0}")]
    Index(IndexError),
    /// A ledger entry that the index or a caller expects to be an event
    /// is not one.
    #[error("entry {index} is not a stored event: {reason}")]
    NotAnEvent { index: u64, reason: String },
    /// The query index failed and is being rebuilt from the ledger (by
    /// itself, see [`Trail::index_status`]); searches would miss events, so
    /// queries are refused until it is back. Ingest goes on.
    #[error("the query index of log {log} is unavailable ({state}) while it is rebuilt from the ledger; retry in {} s", retry_after.as_secs())]
    IndexUnavailable {
        log: String,
        state: IndexState,
        retry_after: Duration,
    },
    /// A batch with idempotency keys while no index can tell which keys
    /// are stored already (the index did not open and is being rebuilt):
    /// refused whole, nothing appended. Batches without keys go on.
    #[error("appends with an idempotency key to log {log} are refused while its query index is rebuilt from the ledger: no index holds the keys already stored to check them against; retry in {} s", retry_after.as_secs())]
    KeysUnchecked { log: String, retry_after: Duration },
    /// A batch that would hold more than
    /// [`TrailOptions::max_unindexed_keys`] idempotency keys in memory,
    /// waiting for the index to commit them: refused whole, nothing
    /// appended. Resends of keys held and batches without keys go on.
    #[error("{held} idempotency keys appended to log {log} are waiting in memory for its query index to commit them; {new} more would pass the limit of {limit}, so appends with a new key are refused until the index catches up; retry in {} s", retry_after.as_secs())]
    KeysFull {
        log: String,
        held: usize,
        new: usize,
        limit: usize,
        retry_after: Duration,
    },
    #[error("reading the system's randomness for event ids: {0}")]
    Random(String),
    #[error("PII protection: {0}")]
    Pii(#[from] PiiError),
    /// A read-only open found an index that covers more entries than the
    /// log's signed checkpoint: it belongs to another history.
    #[error("the query index covers {indexed} entries but the log holds {size}; rebuild it with `sealtrail reindex`")]
    IndexAhead { indexed: u64, size: u64 },
    /// A read-only open found an index whose recorded root hash at its
    /// watermark is not the log's: it was built from another history.
    #[error("the query index was built from another history of this log (its root hash at {indexed} entries is not the log's); rebuild it with `sealtrail reindex`")]
    IndexOfAnotherHistory { indexed: u64 },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<IndexError> for TrailError {
    /// A ledger error met while the index read an event back (to check a
    /// phrase) is the ledger's, so that damage is reported as damage.
    fn from(e: IndexError) -> TrailError {
        match e {
            IndexError::Source { index, source } => match source.downcast::<LedgerError>() {
                Ok(ledger) => TrailError::Ledger(*ledger),
                Err(source) => TrailError::Index(IndexError::Source { index, source }),
            },
            e => TrailError::Index(e),
        }
    }
}

/// The index's way back to the events: the ledger, which holds them.
pub(crate) struct LedgerEvents(pub(crate) Log);

impl EventSource for LedgerEvents {
    fn event(&self, index: u64) -> Result<Option<Event>, SourceError> {
        let entry = self.0.entry(index)?;
        // A raw entry has no document, so is never asked for; were it,
        // it holds no text.
        Ok(parse_entry(&entry).ok())
    }
}

/// An event as stored: its ledger index, the event, and the exact entry
/// bytes (whose leaf hash the tree commits to).
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub index: u64,
    pub event: Event,
    pub entry: Vec<u8>,
}

/// The fate of one input of a batch, in input order.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// In the ledger, durable: appended now, or earlier (`duplicate`: an
    /// event with the same idempotency key was already stored, and this is
    /// the original's index, id and leaf hash; nothing was appended).
    Stored {
        index: u64,
        id: Ulid,
        leaf: Hash,
        duplicate: bool,
    },
    /// Not an acceptable event; the reason names field paths or the JSON
    /// position.
    Rejected(Rejection),
    /// Acceptable, but not appended because the batch was atomic and
    /// another input was rejected.
    NotAppended,
}

/// The result of [`Trail::ingest`].
#[derive(Debug, Clone)]
pub struct Ingested {
    pub items: Vec<Item>,
    /// A signed checkpoint (note text) covering every stored item.
    pub checkpoint: Arc<[u8]>,
    pub tree_size: u64,
}

impl Ingested {
    pub fn appended(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i, Item::Stored { duplicate: false, .. }))
            .count()
    }
}

/// An open audit trail. Safe to share between threads; dropping it stops
/// the indexer after a final commit.
pub struct Trail {
    log: Log,
    keys: Arc<Keys>,
    indexer: Indexer,
    clock: Clock,
    pii: Option<Arc<LogPii>>,
    pii_source: Option<Arc<dyn PiiSource>>,
    /// Told of every append; see [`Trail::on_append`].
    hook: std::sync::OnceLock<AppendHook>,
}

impl Trail {
    /// Open log `name` of `data` and its index, indexing whatever the
    /// ledger holds beyond the index's watermark before returning.
    pub fn open(data: &DataDir, name: &str, opts: TrailOptions) -> Result<Trail, TrailError> {
        let log = data.open_log(name, opts.log.clone())?;
        let dir = index_dir(data, name);
        let index = match open_caught_up(data, name, &dir, &opts.index, &log) {
            Ok(index) => Ok(Arc::new(index)),
            // The ledger's faults are the log's; another writer holds the index.
            Err(e @ (TrailError::Ledger(_) | TrailError::Index(IndexError::Locked(_)))) => return Err(e),
            // Derived data that does not open is rebuilt while the trail runs.
            Err(e) => Err(e.to_string()),
        };
        let keys = Arc::new(Keys::new(opts.max_unindexed_keys));
        let ctx = Context {
            log: log.clone(),
            name: name.to_string(),
            dir,
            opts: opts.index,
            storage: data.storage().clone(),
            keys: keys.clone(),
            visibility: opts.visibility,
        };
        let indexer = Indexer::start(log.size(), index, ctx, opts.max_index_backlog);
        Ok(Trail {
            log,
            keys,
            indexer,
            clock: opts.clock,
            pii: opts.pii,
            pii_source: opts.pii_source,
            hook: std::sync::OnceLock::new(),
        })
    }

    /// Throw the index of log `name` away and build it again from the
    /// ledger. Returns the number of entries indexed.
    pub fn reindex(data: &DataDir, name: &str, opts: &IndexOptions) -> Result<u64, TrailError> {
        Trail::reindex_with_progress(data, name, opts, &mut |_, _| {})
    }

    /// [`Trail::reindex`], calling `progress(entries, total)` as it goes.
    pub fn reindex_with_progress(
        data: &DataDir,
        name: &str,
        opts: &IndexOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<u64, TrailError> {
        let log = data.open_log(name, LogOptions::default())?;
        let dir = index_dir(data, name);
        indexer::settle_rebuild(&**data.storage(), &dir, name)?;
        EventIndex::wipe_with(&**data.storage(), &dir)?;
        let index = open_index(data, &dir, opts, &log)?;
        catch_up(&log, &index, progress)?;
        // End compact: the merges the rebuild calls for, before returning.
        index.wait_for_merges()?;
        Ok(index.indexed())
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The log's PII protection, if any: readers allowed to see PII reveal
    /// events with it ([`LogPii::reveal`]). `None` as well when it cannot
    /// be had now (see [`PiiSource::current`]): readers then see stored
    /// values.
    pub fn pii(&self) -> Option<Arc<LogPii>> {
        self.current_pii().ok().flatten()
    }

    fn current_pii(&self) -> Result<Option<Arc<LogPii>>, PiiError> {
        match &self.pii_source {
            Some(source) => source.current(self.log.name()),
            None => Ok(self.pii.clone()),
        }
    }

    /// Have `hook` called with the log's size after every append from now
    /// on (those of [`Trail::ingest`] and [`Trail::recover`]), so readers
    /// following the log learn of new entries without polling. One hook
    /// per trail: returns false, and keeps the first, if one is set.
    pub fn on_append(&self, hook: AppendHook) -> bool {
        self.hook.set(hook).is_ok()
    }

    fn appended(&self) {
        if let Some(hook) = self.hook.get() {
            hook(self.log.size());
        }
    }

    /// Validate, canonicalise and durably append `inputs` (one JSON event
    /// text each). Bad inputs come back as [`Item::Rejected`] and the good
    /// ones are stored, unless `atomic`: then one bad input means nothing
    /// is appended. A resend whose idempotency key is already stored in
    /// this log returns the original and appends nothing.
    pub fn ingest(&self, inputs: &[&[u8]], atomic: bool) -> Result<Ingested, TrailError> {
        self.ingest_prepared(self.prepare(inputs)?, atomic)
    }

    /// The first half of [`Trail::ingest`]: validate, canonicalise and hash
    /// `inputs`, touching neither the ledger nor the index, so that callers
    /// may prepare several batches at once on their own threads and store
    /// them in an order of their choosing with [`Trail::ingest_prepared`].
    pub fn prepare(&self, inputs: &[&[u8]]) -> Result<PreparedBatch, TrailError> {
        let received_at = (self.clock)();
        let mut random = vec![0u8; 10 * inputs.len()];
        getrandom::fill(&mut random).map_err(|e| TrailError::Random(e.to_string()))?;
        let Some(pii) = self.current_pii()? else {
            return Ok(PreparedBatch {
                accepted: prepare_all(inputs, &random, received_at, None),
            });
        };
        // The data keys of subjects new to the store are made fresh while
        // the batch is protected and kept in one durable commit before it
        // can be appended. A batch whose fresh keys lost a race (an erasure
        // or master-key rotation came first) is protected again; twice
        // running is refused.
        for _ in 0..2 {
            // Keys erased or rewrapped since the last batch are not used.
            pii.vault().refresh()?;
            let mark = pii.vault().mark();
            let accepted = prepare_all(inputs, &random, received_at, Some(&pii));
            if pii.vault().keep_fresh_keys(mark)? {
                return Ok(PreparedBatch { accepted });
            }
        }
        Err(TrailError::Pii(PiiError::Store(sealtrail_pii::StoreError(
            "the PII key store changed (an erasure or a master-key rotation) while this batch was protected, twice; nothing was appended, retry".into(),
        ))))
    }

    /// The second half of [`Trail::ingest`]: resolve idempotency keys,
    /// append, and hand the events to the indexer. Batches are stored in
    /// the order of the calls.
    pub fn ingest_prepared(&self, batch: PreparedBatch, atomic: bool) -> Result<Ingested, TrailError> {
        let accepted = batch.accepted;
        let rejected = accepted.iter().filter(|r| r.is_err()).count();
        if atomic && rejected > 0 {
            let items = accepted
                .into_iter()
                .map(|r| r.err().map_or(Item::NotAppended, Item::Rejected))
                .collect();
            return Ok(self.done_without_append(items));
        }

        let keys: Vec<Option<&str>> = accepted
            .iter()
            .map(|r| r.as_ref().ok().and_then(|(e, _)| e.idempotency_key.as_deref()))
            .collect();
        let plans = self.keys.reserve(&keys, &|| self.indexer.index()).map_err(|r| {
            let log = self.log.name().to_string();
            let retry_after = self.indexer.retry_after();
            match r {
                keys::Refusal::NoIndex => TrailError::KeysUnchecked { log, retry_after },
                keys::Refusal::Full { held, new, limit } => TrailError::KeysFull {
                    log,
                    held,
                    new,
                    limit,
                    retry_after,
                },
                keys::Refusal::Failed(e) => e,
            }
        })?;
        let appending: Vec<bool> = accepted
            .iter()
            .zip(&plans)
            .map(|(r, p)| r.is_ok() && *p == Plan::Fresh)
            .collect();
        let fresh: Vec<&PreparedEntry> = accepted
            .iter()
            .zip(&appending)
            .filter_map(|(r, appending)| match r {
                Ok((_, entry)) if *appending => Some(entry),
                _ => None,
            })
            .collect();
        let appended = match self.log.append_prepared(&fresh) {
            Ok(a) => a,
            Err(e) => {
                self.keys.release(&keys, &plans);
                return Err(e.into());
            }
        };
        self.keys.settle(&keys, &appending, appended.first);

        // Items in input order; duplicates of a key stored earlier read the
        // original back from the ledger.
        let mut items = Vec::with_capacity(accepted.len());
        let mut events = Vec::with_capacity(fresh.len());
        let mut next = appended.first;
        for (result, plan) in accepted.into_iter().zip(&plans) {
            items.push(match (result, plan) {
                (Err(rejection), _) => Item::Rejected(rejection),
                (Ok((event, entry)), Plan::Fresh) => {
                    let item = Item::Stored {
                        index: next,
                        id: event.id,
                        leaf: entry.leaf(),
                        duplicate: false,
                    };
                    next += 1;
                    events.push(event);
                    item
                }
                (Ok(_), Plan::SameAs(position)) => match &items[*position] {
                    Item::Stored { index, id, leaf, .. } => Item::Stored {
                        index: *index,
                        id: *id,
                        leaf: *leaf,
                        duplicate: true,
                    },
                    other => other.clone(),
                },
                (Ok(_), Plan::Original(index)) => {
                    let found = self.read(*index)?;
                    Item::Stored {
                        index: found.index,
                        id: found.event.id,
                        leaf: leaf_hash(&found.entry),
                        duplicate: true,
                    }
                }
            });
        }
        self.indexer.push(appended.first, events);
        if appended.count > 0 {
            self.appended();
        }
        Ok(Ingested {
            items,
            checkpoint: appended.checkpoint,
            tree_size: appended.tree_size,
        })
    }

    fn done_without_append(&self, items: Vec<Item>) -> Ingested {
        let (checkpoint, note) = self.log.checkpoint();
        Ingested {
            items,
            checkpoint: note,
            tree_size: checkpoint.size,
        }
    }

    /// Resume a log poisoned by a failed write or sync: reopen it from its
    /// last durable state ([`Log::reopen`]) and hand the indexer whatever
    /// that state holds beyond what ingest gave it (entries a signed
    /// checkpoint covers although their append reported the failure).
    /// Returns false if the log was not poisoned.
    pub fn recover(&self) -> Result<bool, TrailError> {
        if self.log.poisoned().is_none() {
            return Ok(false);
        }
        self.log.reopen()?;
        const CHUNK: u64 = 4096;
        let size = self.log.size();
        let mut next = self.indexer.pushed_end();
        while next < size {
            let count = CHUNK.min(size - next);
            let mut events = Vec::with_capacity(count as usize);
            for (i, entry) in self.log.entries(next, count)?.iter().enumerate() {
                let event = parse_entry(entry).map_err(|e| TrailError::NotAnEvent {
                    index: next + i as u64,
                    reason: e.to_string(),
                })?;
                events.push(Box::new(event));
            }
            self.indexer.push(next, events);
            next += count;
        }
        self.appended();
        Ok(true)
    }

    /// Return once everything acknowledged so far is searchable.
    pub fn sync_index(&self) -> Result<(), TrailError> {
        self.indexer.sync(self.log.size())
    }

    /// The stored event at ledger index `index`.
    pub fn read(&self, index: u64) -> Result<Found, TrailError> {
        read_event(&self.log, index)
    }

    /// One page of events matching `filter`.
    pub fn query(&self, filter: &Filter, page: &Page) -> Result<Vec<Found>, TrailError> {
        let index = self.indexer.searchable()?;
        let pii = self.pii();
        let filter = &pseudonymised(pii.as_deref(), filter);
        self.searched(query_events(&self.log, &index, filter, page))
    }

    /// Every event matching `filter`, oldest first, in bounded memory; `f`
    /// returns false to stop.
    pub fn for_each(
        &self,
        filter: &Filter,
        f: impl FnMut(Found) -> Result<bool, TrailError>,
    ) -> Result<(), TrailError> {
        let index = self.indexer.searchable()?;
        let pii = self.pii();
        let filter = &pseudonymised(pii.as_deref(), filter);
        self.searched(for_each_event(&self.log, &index, filter, f))
    }

    pub fn count(&self, filter: &Filter) -> Result<u64, TrailError> {
        let index = self.indexer.searchable()?;
        let pii = self.pii();
        let filter = &pseudonymised(pii.as_deref(), filter);
        self.searched(index.count(filter).map_err(Into::into))
    }

    pub fn stats(&self, filter: &Filter, bucket: Bucket) -> Result<Stats, TrailError> {
        let index = self.indexer.searchable()?;
        let pii = self.pii();
        let filter = &pseudonymised(pii.as_deref(), filter);
        self.searched(index.stats(filter, bucket).map_err(Into::into))
    }

    pub fn performance(&self, filter: &Filter) -> Result<Vec<Performance>, TrailError> {
        let index = self.indexer.searchable()?;
        let pii = self.pii();
        let filter = &pseudonymised(pii.as_deref(), filter);
        self.searched(index.performance(filter).map_err(Into::into))
    }

    /// A search that met a damaged segment has the index rebuilt from the
    /// ledger, as a failed write does, and is refused meanwhile.
    fn searched<T>(&self, result: Result<T, TrailError>) -> Result<T, TrailError> {
        match result {
            Err(TrailError::Index(e @ IndexError::BadSegment { .. })) => Err(self.indexer.damaged(e.to_string())),
            other => other,
        }
    }

    /// Index entries the index holds (its committed watermark).
    pub fn indexed(&self) -> u64 {
        self.indexer.index().map_or(0, |i| i.indexed())
    }

    /// Ledger entries below this are pruned: gone from the ledger and
    /// forgotten by the index.
    pub fn pruned_below(&self) -> u64 {
        pruned_below(&self.log)
    }

    /// What retention `policy` would prune now, stopped by `holds`
    /// (docs/retention.md). Everything acknowledged is indexed first, so
    /// that holds and ages are judged on every entry.
    pub fn plan_retention(
        &self,
        policy: &retention::Policy,
        holds: &[retention::HoldScope],
        now: Timestamp,
    ) -> Result<retention::RetentionPlan, TrailError> {
        self.sync_index()?;
        let index = self.indexer.searchable()?;
        retention::plan(&self.log, &index, self.pruned_below(), policy, holds, now)
    }

    /// The first entry any of `holds` covers, and the hold's id.
    pub fn first_held(&self, holds: &[retention::HoldScope]) -> Result<Option<(u64, i64)>, TrailError> {
        retention::first_held(&*self.indexer.searchable()?, holds)
    }

    /// The most that may be pruned now whatever the policy: below the
    /// last bundle boundary that both the index and the latest checkpoint
    /// cover, and why it is not further.
    pub fn prune_limit(&self) -> Result<(u64, retention::Stop), TrailError> {
        self.sync_index()?;
        let (size, indexed) = (self.log.size(), self.indexed());
        Ok(if indexed < size {
            (retention::bundle_floor(indexed), retention::Stop::Unindexed { indexed })
        } else {
            (retention::bundle_floor(size), retention::Stop::Checkpoint { size })
        })
    }

    /// Entry bytes (each entry's bytes and its 8-byte record header) of
    /// entries `[from, to)`.
    pub fn entry_bytes(&self, from: u64, to: u64) -> Result<u64, TrailError> {
        retention::entry_bytes(&self.log, from, to)
    }

    /// Prune the ledger below `below` (a bundle boundary) and make the
    /// index forget what went, in that order: a crash in between leaves
    /// the index remembering entries the ledger no longer has, which the
    /// next open forgets ([`Trail::open`]).
    pub fn prune(&self, below: u64) -> Result<retention::PruneReport, TrailError> {
        // The index must cover what goes, so that forgetting it is possible.
        self.sync_index()?;
        let index = self.indexer.searchable()?;
        let report = self.log.prune(below)?;
        index.forget_below(report.to)?;
        Ok(report)
    }

    /// Make the index forget entries below `n` (pruned from the ledger):
    /// no query returns or counts them from now on.
    pub fn forget_below(&self, n: u64) -> Result<(), TrailError> {
        self.sync_index()?;
        Ok(self.indexer.searchable()?.forget_below(n)?)
    }

    /// Whether the query index serves queries, its last failure, what it
    /// covers and how many events wait for it.
    pub fn index_status(&self) -> IndexStatus {
        let (held_keys, max_held_keys) = self.keys.held();
        IndexStatus {
            held_keys,
            max_held_keys,
            ..self.indexer.status()
        }
    }

    /// Have the indexer thread rebuild the query index from the ledger
    /// while the trail stays open (the `reindex` job): the path a damaged
    /// index takes, except that nothing failed, so neither
    /// [`IndexStatus::failures`] nor [`IndexStatus::last_error`] change;
    /// `why` is logged. Queries answer [`TrailError::IndexUnavailable`]
    /// until the rebuilt index is swapped in and [`IndexStatus::rebuilds`]
    /// goes up. Asked while the index is not serving (failed or being
    /// rebuilt), it does nothing: that rebuild serves.
    pub fn rebuild_index(&self, why: &str) {
        self.indexer.request_rebuild(why.to_string());
    }
}

/// A trail opened for reading beside its writer, which may be a running
/// server in another process: [`Log::open_read_only`] and
/// [`EventIndex::open_read_only`], so no lock is taken and nothing is
/// written, repaired or deleted. It shows the log at its last signed
/// checkpoint and the index at its last commit, both as they were at the
/// open.
///
/// The index may cover fewer entries than the log: events the writer has
/// acknowledged but not yet committed to the index (within
/// [`TrailOptions::visibility`] while it runs; all of them after a crash,
/// until a writer opens the trail). A reader does not index them, since
/// that would write; searches, counts and statistics leave them out and
/// [`TrailReader::unindexed`] says how many there are.
pub struct TrailReader {
    log: Log,
    index: EventIndex,
    pii: Option<Arc<LogPii>>,
}

impl TrailReader {
    /// Open log `name` of `data` and its index read-only.
    pub fn open(data: &DataDir, name: &str) -> Result<TrailReader, TrailError> {
        // The index first: its writer commits only entries that a signed
        // checkpoint already covers, so the log opened next holds at least
        // as many as the index's watermark.
        // A log that is not there is refused as such, not as an index.
        data.verifier(name)?;
        let index = EventIndex::open_read_only(&index_dir(data, name), IndexOptions::default())?;
        let log = data.open_log_read_only(name)?;
        if index.indexed() > log.size() {
            return Err(TrailError::IndexAhead {
                indexed: index.indexed(),
                size: log.size(),
            });
        }
        // An index without a recorded root (written before roots were
        // recorded) is trusted until a writer opens the trail and checks
        // it; one whose root differs would answer with the wrong events.
        if index.root().is_some() && !built_from(&index, &log)? {
            return Err(TrailError::IndexOfAnotherHistory {
                indexed: index.indexed(),
            });
        }
        index.set_event_source(Arc::new(LedgerEvents(log.clone())));
        Ok(TrailReader { log, index, pii: None })
    }

    /// Hash filters on the log's hmac fields as its writer stores them
    /// (docs/pii.md), and keep `pii` for [`TrailReader::pii`].
    pub fn with_pii(mut self, pii: Option<Arc<LogPii>>) -> TrailReader {
        self.pii = pii;
        self
    }

    /// The log's PII protection, if given.
    pub fn pii(&self) -> Option<&Arc<LogPii>> {
        self.pii.as_ref()
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Ledger entries `[0, n)` are covered by the index.
    pub fn indexed(&self) -> u64 {
        self.index.indexed()
    }

    /// Ledger entries below this are pruned.
    pub fn pruned_below(&self) -> u64 {
        pruned_below(&self.log)
    }

    /// What retention `policy` would prune now, stopped by `holds`; entries
    /// the index does not cover yet are never planned for pruning.
    pub fn plan_retention(
        &self,
        policy: &retention::Policy,
        holds: &[retention::HoldScope],
        now: Timestamp,
    ) -> Result<retention::RetentionPlan, TrailError> {
        retention::plan(&self.log, &self.index, self.pruned_below(), policy, holds, now)
    }

    /// Entries of the log that the index does not cover yet, so searches,
    /// counts and statistics leave out (the newest ones).
    pub fn unindexed(&self) -> u64 {
        self.log.size() - self.index.indexed()
    }

    /// The stored event at ledger index `index`.
    pub fn read(&self, index: u64) -> Result<Found, TrailError> {
        read_event(&self.log, index)
    }

    /// One page of the indexed events matching `filter`.
    pub fn query(&self, filter: &Filter, page: &Page) -> Result<Vec<Found>, TrailError> {
        let filter = &pseudonymised(self.pii.as_deref(), filter);
        query_events(&self.log, &self.index, filter, page)
    }

    /// Every indexed event matching `filter`, oldest first, in bounded
    /// memory; `f` returns false to stop.
    pub fn for_each(
        &self,
        filter: &Filter,
        f: impl FnMut(Found) -> Result<bool, TrailError>,
    ) -> Result<(), TrailError> {
        let filter = &pseudonymised(self.pii.as_deref(), filter);
        for_each_event(&self.log, &self.index, filter, f)
    }

    pub fn count(&self, filter: &Filter) -> Result<u64, TrailError> {
        Ok(self.index.count(&pseudonymised(self.pii.as_deref(), filter))?)
    }

    pub fn stats(&self, filter: &Filter, bucket: Bucket) -> Result<Stats, TrailError> {
        Ok(self.index.stats(&pseudonymised(self.pii.as_deref(), filter), bucket)?)
    }

    pub fn performance(&self, filter: &Filter) -> Result<Vec<Performance>, TrailError> {
        Ok(self.index.performance(&pseudonymised(self.pii.as_deref(), filter))?)
    }

    /// Counts of the matching events by each value of `facet`, largest first.
    pub fn facet(&self, filter: &Filter, facet: Facet) -> Result<Vec<(String, u64)>, TrailError> {
        Ok(self.index.facet(filter, facet)?)
    }

    /// [`EventIndex::tally_globs`]: for each action glob, the matching
    /// events it covers, their failures, counts by action and newest
    /// ledger indices, in one pass.
    pub fn tally_globs(&self, filter: &Filter, globs: &[&str], newest: usize) -> Result<Vec<GlobTally>, TrailError> {
        let filter = &pseudonymised(self.pii.as_deref(), filter);
        Ok(self.index.tally_globs(filter, globs, newest)?)
    }
}

/// `filter` as the index must see it on a log with PII protection: values
/// of hmac fields hashed as ingest stored them, and the hashes of the free
/// text's terms as alternatives where free-text fields are hmac fields.
fn pseudonymised<'a>(pii: Option<&LogPii>, filter: &'a Filter) -> std::borrow::Cow<'a, Filter> {
    let Some(pii) = pii.filter(|p| !p.policy().is_empty()) else {
        return std::borrow::Cow::Borrowed(filter);
    };
    let mut f = filter.clone();
    let hash = |field: FieldPath, value: &mut Option<String>| {
        if let Some(v) = value.as_mut() {
            if let Some(stored) = pii.filter_value(&field, v) {
                *v = stored;
            }
        }
    };
    hash(FieldPath::ActorId, &mut f.actor);
    hash(FieldPath::TargetId, &mut f.target_id);
    hash(FieldPath::SessionId, &mut f.session);
    if let Some(text) = &f.text {
        f.text_alternatives.extend(pii.text_alternatives(text));
    }
    std::borrow::Cow::Owned(f)
}

/// Where the ledger's pruned range ends.
fn pruned_below(log: &Log) -> u64 {
    log.pruned_below()
}

fn read_event(log: &Log, index: u64) -> Result<Found, TrailError> {
    let entry = log.entry(index)?;
    let event = parse_entry(&entry).map_err(|e| TrailError::NotAnEvent {
        index,
        reason: e.to_string(),
    })?;
    Ok(Found { index, event, entry })
}

fn query_events(log: &Log, index: &EventIndex, filter: &Filter, page: &Page) -> Result<Vec<Found>, TrailError> {
    let hits = index.search(filter, page)?;
    hits.into_iter().map(|i| read_event(log, i)).collect()
}

fn for_each_event(
    log: &Log,
    index: &EventIndex,
    filter: &Filter,
    mut f: impl FnMut(Found) -> Result<bool, TrailError>,
) -> Result<(), TrailError> {
    let mut failure = None;
    index.for_each(filter, |i| match read_event(log, i).and_then(&mut f) {
        Ok(go_on) => go_on,
        Err(e) => {
            failure = Some(e);
            false
        }
    })?;
    failure.map_or(Ok(()), Err)
}

/// A validated event and its entry, hashed for the ledger. The event is
/// boxed: at 880 bytes, moving it through the pipeline's vectors and
/// channels by value cost more than its allocation.
type Prepared = Result<(Box<Event>, PreparedEntry), Rejection>;

/// Inputs checked by [`Trail::prepare`], in input order, waiting for
/// [`Trail::ingest_prepared`].
pub struct PreparedBatch {
    accepted: Vec<Prepared>,
}

impl PreparedBatch {
    pub fn len(&self) -> usize {
        self.accepted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accepted.is_empty()
    }

    /// Inputs refused (they come back as [`Item::Rejected`]).
    pub fn rejected(&self) -> usize {
        self.accepted.iter().filter(|r| r.is_err()).count()
    }

    /// Put `other`'s inputs after these, so that one append stores both.
    pub fn extend(&mut self, other: PreparedBatch) {
        self.accepted.extend(other.accepted);
    }
}

/// Batches at least this large are validated on several threads.
const PARALLEL_BATCH: usize = 256;

/// Validate, canonicalise and hash every input, in input order. These are
/// the largest CPU costs of ingest outside the index, so large batches are
/// split across the machine's cores, and the ledger's append only copies.
///
/// The threads are rayon's pool, kept for the life of the process: a thread
/// started per batch cost its start-up and a fresh allocator heap each
/// time, whose pages the kernel had to zero (a tenth of ingest's CPU).
fn prepare_all(inputs: &[&[u8]], random: &[u8], received_at: Timestamp, pii: Option<&LogPii>) -> Vec<Prepared> {
    use rayon::prelude::*;
    let prepare = |text: &&[u8], r: &[u8]| -> Prepared {
        let mut bits = [0u8; 10];
        bits.copy_from_slice(r);
        match event_id(received_at, bits) {
            Ok(id) => match pii {
                // Validation sees the clear values (its refusals name
                // paths, never PII values); what is canonicalised, once,
                // hashed and stored is the protected event.
                Some(pii) => accept_json_changed(text, received_at, id, &|e: &mut Event| pii.protect(e)),
                None => accept_json_entry(text, received_at, id),
            }
            .map(|(event, entry)| (Box::new(event), PreparedEntry::new(entry))),
            Err(e) => Err(Rejection::Invalid(vec![sealtrail_event::FieldError {
                path: "received_at".into(),
                message: e.to_string(),
            }])),
        }
    };
    if inputs.len() < PARALLEL_BATCH {
        return inputs
            .iter()
            .zip(random.chunks_exact(10))
            .map(|(t, r)| prepare(t, r))
            .collect();
    }
    inputs
        .par_iter()
        .zip(random.par_chunks_exact(10))
        .with_min_len(PARALLEL_BATCH / 4)
        .map(|(t, r)| prepare(t, r))
        .collect()
}

fn index_dir(data: &DataDir, name: &str) -> PathBuf {
    data.log_dir(name).join(INDEX_DIR)
}

/// The ledger as the index sees it: the root hashes of its prefixes,
/// recorded with each index commit.
pub(crate) struct LedgerHistory(pub(crate) Log);

impl History for LedgerHistory {
    fn root(&self, size: u64) -> Result<[u8; 32], Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.0.root_at(size)?)
    }
}

/// Settle a rebuild cut short, open the index and index whatever the
/// ledger holds beyond its watermark.
fn open_caught_up(
    data: &DataDir,
    name: &str,
    dir: &std::path::Path,
    opts: &IndexOptions,
    log: &Log,
) -> Result<EventIndex, TrailError> {
    indexer::settle_rebuild(&**data.storage(), dir, name)?;
    let index = open_index(data, dir, opts, log)?;
    index.set_event_source(Arc::new(LedgerEvents(log.clone())));
    catch_up(log, &index, &mut |_, _| {})?;
    Ok(index)
}

/// Open the index, starting it afresh when it cannot serve this ledger:
/// built by another schema version, an unreadable watermark, or built
/// from another history (e.g. a restored or replaced ledger; see
/// [`built_from`]). It is derived data; `catch_up` then rebuilds it.
fn open_index(data: &DataDir, dir: &std::path::Path, opts: &IndexOptions, log: &Log) -> Result<EventIndex, TrailError> {
    let storage = data.storage();
    let history = || Some(Arc::new(LedgerHistory(log.clone())) as Arc<dyn History>);
    match EventIndex::open_with(storage.clone(), dir, *opts, history()) {
        Ok(index) if built_from(&index, log)? => return Ok(index),
        Ok(index) => drop(index),
        Err(IndexError::SchemaMismatch { .. } | IndexError::BadManifest { .. } | IndexError::BadSegment { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    EventIndex::wipe_with(&**storage, dir)?;
    Ok(EventIndex::open_with(storage.clone(), dir, *opts, history())?)
}

/// Whether `index` was built from this log: it covers no more entries
/// than the log holds, and the root hash its manifest records at its
/// watermark is the log's at that size. An index without a recorded root
/// cannot show it, and counts as another history (an empty one is any
/// history's).
fn built_from(index: &EventIndex, log: &Log) -> Result<bool, TrailError> {
    let indexed = index.indexed();
    if indexed > log.size() {
        return Ok(false);
    }
    if indexed == 0 {
        return Ok(true);
    }
    Ok(index.root() == Some(log.root_at(indexed)?))
}

/// Index the ledger's entries beyond the index's watermark, then commit;
/// `progress(entries, total)` after each chunk.
fn catch_up(log: &Log, index: &EventIndex, progress: &mut dyn FnMut(u64, u64)) -> Result<(), TrailError> {
    const CHUNK: u64 = 4096;
    let size = log.size();
    let mut next = index.indexed();
    if next == size {
        return forget_pruned(log, index);
    }
    next = skip_pruned(log, index, next)?;
    while next < size {
        let count = CHUNK.min(size - next);
        for (i, entry) in log.entries(next, count)?.iter().enumerate() {
            // Raw entries (`append --raw`) are part of the ledger but not
            // events: the index steps over them.
            let event = parse_entry(entry).ok();
            index.add(next + i as u64, event.as_ref())?;
        }
        next += count;
        progress(next, size);
    }
    index.commit()?;
    forget_pruned(log, index)
}

/// Entries from `next` up to the ledger's pruned boundary have no bytes
/// left to index: the index steps over them as over raw entries (and
/// forgets them, [`forget_pruned`]). Returns where indexing resumes.
pub(crate) fn skip_pruned(log: &Log, index: &EventIndex, mut next: u64) -> Result<u64, TrailError> {
    let pruned = log.pruned_below();
    while next < pruned {
        index.add(next, None)?;
        next += 1;
    }
    Ok(next)
}

/// Make the index forget what the ledger pruned, once it covers it: after
/// a rebuild, or a crash between a prune and the index's forgetting.
pub(crate) fn forget_pruned(log: &Log, index: &EventIndex) -> Result<(), TrailError> {
    let pruned = log.pruned_below();
    if index.forgotten() < pruned && index.indexed() >= pruned {
        index.forget_below(pruned)?;
    }
    Ok(())
}
