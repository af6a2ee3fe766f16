//! [`EventIndex`]: one tantivy index per log, fed in ledger order, with the
//! watermark in each commit's payload.
//!
//! Queries run on a snapshot (a tantivy searcher) and never take the
//! writer's lock. Pages are computed segment by segment, newest (or
//! oldest) segments first, and stop as soon as no remaining segment can
//! hold a better result: a first page usually touches only the few most
//! recent segments, however large the index. Within a segment, blocks of
//! documents whose ledger range can still improve the page and whose time
//! ranges meet the filter's are visited best first; time ranges are checked
//! here against those block summaries and the fast columns, not by tantivy.
//!
//! Not here: reading the ledger or parsing entries (the caller does both),
//! or deciding when to commit.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::fs;
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use fastbloom::BloomFilter;
use sealtrail_event::Event;
use tantivy::collector::Count;
use tantivy::columnar::Column;
use tantivy::directory::MmapDirectory;
use tantivy::index::SegmentId;
use tantivy::indexer::{IndexWriterOptions, LogMergePolicy, UserOperation};
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, EnableScoring, Query, RangeQuery, Scorer, TermQuery, TermSetQuery, Weight,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{
    DocId, DocSet, Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, Searcher, SegmentReader,
    TantivyDocument, TantivyError, Term, TERMINATED,
};
use thiserror::Error;

use crate::filter::{Filter, Order, Page, TimeRange};
use crate::schema::{self, Fields, FAILURE, LEDGER, OCCURRED, RECEIVED, SCHEMA_VERSION, WORDS};
use crate::stats::{Bucket, Performance, PerformanceCollector, Stats, StatsCollector};
use sealtrail_event::glob::{glob_match, is_glob, literal_prefix};

/// How the index is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexOptions {
    /// Bytes of indexing buffer, shared by the threads; a segment is written
    /// when a thread's share fills. Each thread needs at least 15 MB.
    pub writer_memory: usize,
    /// Indexing threads.
    pub threads: usize,
}

impl Default for IndexOptions {
    fn default() -> IndexOptions {
        IndexOptions {
            writer_memory: 64 << 20,
            threads: 1,
        }
    }
}

/// Why the index could not do what was asked.
#[derive(Debug, Error)]
pub enum IndexError {
    /// Entries must be added in ledger order, each exactly once.
    #[error("ledger entry {got} added to the index out of order: the next entry must be {expected}")]
    OutOfOrder { expected: u64, got: u64 },
    /// An earlier write or commit failed; the index takes no more writes
    /// until it is reopened (uncommitted additions are then lost, and the
    /// caller adds them again from the watermark).
    #[error("the index refused writes after an earlier failure; reopen it")]
    Poisoned,
    /// The directory holds an index of another schema version.
    #[error("{dir}: index built by another version of Sealtrail; rebuild it with `sealtrail reindex`")]
    SchemaMismatch { dir: PathBuf },
    /// The last commit's payload is not a watermark this crate wrote.
    #[error("{dir}: unreadable index watermark {payload:?}; rebuild it with `sealtrail reindex`")]
    BadWatermark { dir: PathBuf, payload: String },
    /// `wipe` was pointed at a directory that is not an index.
    #[error("{0}: not an index directory (no meta.json); refusing to delete it")]
    NotAnIndex(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The search engine failed (I/O underneath, a lock held by another
    /// writer, corrupt files).
    #[error("index engine: {0}")]
    Engine(#[from] TantivyError),
}

/// The query index of one log. `Send + Sync`: share it by reference; the
/// writer sits behind a mutex, searches run on snapshots without it.
pub struct EventIndex {
    index: Index,
    fields: Fields,
    reader: IndexReader,
    writer: Mutex<Writer>,
    /// Ledger entries `[0, committed)` are in the last commit.
    committed: AtomicU64,
    /// Per segment, summaries of each [`BLOCK`] of documents.
    blocks: PerSegment<Blocks>,
    /// Per segment, a Bloom filter of its idempotency keys.
    keys: PerSegment<KeyFilter>,
}

/// Something computed from a segment on first use and kept while the
/// segment lives. Segments are immutable, so an entry never goes stale;
/// entries of merged-away segments are dropped when a new one is added.
struct PerSegment<T>(Mutex<HashMap<SegmentId, Arc<T>>>);

impl<T> PerSegment<T> {
    fn new() -> PerSegment<T> {
        PerSegment(Mutex::new(HashMap::new()))
    }

    fn get_or_build<E>(
        &self,
        reader: &SegmentReader,
        index: &IndexReader,
        build: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        let id = reader.segment_id();
        if let Some(found) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Ok(Arc::clone(found));
        }
        // Built outside the lock: two callers may both build, one wins.
        let built = Arc::new(build()?);
        // The newest snapshot decides what lives: an older one, still held
        // by a slow query, would evict the segments made since.
        let live: HashSet<SegmentId> = index
            .searcher()
            .segment_readers()
            .iter()
            .map(|r| r.segment_id())
            .collect();
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|id, _| live.contains(id));
        cache.insert(id, Arc::clone(&built));
        Ok(built)
    }
}

/// The idempotency keys a segment may hold. A key absent from the filter
/// is certainly absent from the segment, so a lookup of a fresh key (the
/// usual case on ingest) skips the segment's term dictionary; about 1% of
/// the segments without a key still look it up. About 10 bits per key,
/// built by reading the segment's keys once.
struct KeyFilter(BloomFilter);

/// False positives a [`KeyFilter`] is sized for.
const KEY_FILTER_FALSE_POSITIVES: f64 = 0.01;

/// The hash a [`KeyFilter`] is probed with: computed once per key, then
/// used for every segment.
fn key_hash(key: &[u8]) -> u64 {
    use std::hash::BuildHasher as _;
    fastbloom::DefaultHasher::seeded(&[0; 16]).hash_one(key)
}

impl KeyFilter {
    fn build(reader: &SegmentReader, field: Field) -> Result<KeyFilter, IndexError> {
        let dictionary = reader.inverted_index(field)?.terms().clone();
        let mut filter =
            BloomFilter::with_false_pos(KEY_FILTER_FALSE_POSITIVES).expected_items(dictionary.num_terms().max(1));
        let mut keys = dictionary.stream().map_err(TantivyError::from)?;
        while keys.advance() {
            filter.insert_hash(key_hash(keys.key()));
        }
        Ok(KeyFilter(filter))
    }

    fn may_hold(&self, hash: u64) -> bool {
        self.0.contains_hash(hash)
    }
}

struct Writer {
    tantivy: IndexWriter,
    /// The ledger index `add` expects next.
    pending: u64,
    poisoned: bool,
    /// Scratch for building documents.
    scratch: schema::Scratch,
}

/// Segments of one size merged into one. Each merge rewrites every posting
/// of its segments, and under sustained ingest (a segment per commit, two
/// a second) merges were the cost that grew with the trail; at 16 rather
/// than tantivy's 8, a document is rewritten about once in the first 10M
/// events rather than twice. More segments cost queries little (a page
/// reads the newest segments first) and idempotency lookups little (key
/// filters).
const MERGE_FACTOR: usize = 16;

/// Documents per block of a segment's ledger-index summary (see
/// [`EventIndex::blocks`]).
const BLOCK: u32 = 512;

/// Most blocks a page drains with one scorer (see [`EventIndex::search`]).
const MAX_RUN: usize = 64;

/// The least and greatest value of a column in each block of a segment;
/// `None` for a block where no document has one.
type BlockRanges<T> = Vec<Option<(T, T)>>;

/// What a page needs to know of a segment's blocks without reading them.
struct Blocks {
    ledger: BlockRanges<u64>,
    /// Filled when a page with an `occurred` (`received`) range first needs it.
    occurred: OnceLock<BlockRanges<i64>>,
    received: OnceLock<BlockRanges<i64>>,
}

/// A time condition of a page: the fast column, and inclusive bounds in
/// nanoseconds.
struct Window {
    /// `occurred` or `received`.
    name: &'static str,
    column: Column<i64>,
    lo: i64,
    hi: i64,
}

impl Blocks {
    /// The block ranges of `window`'s column.
    fn times(&self, window: &Window, reader: &SegmentReader) -> &BlockRanges<i64> {
        let cell = if window.name == OCCURRED {
            &self.occurred
        } else {
            &self.received
        };
        cell.get_or_init(|| block_ranges(&window.column, reader.max_doc()))
    }
}

impl Window {
    fn meets(&self, range: Option<(i64, i64)>) -> bool {
        range.is_some_and(|(min, max)| min <= self.hi && self.lo <= max)
    }

    fn covers(&self, range: Option<(i64, i64)>) -> bool {
        range.is_some_and(|(min, max)| self.lo <= min && max <= self.hi)
    }

    fn holds(&self, doc: DocId) -> bool {
        self.column.first(doc).is_some_and(|t| self.lo <= t && t <= self.hi)
    }
}

/// Action globs matching at most this many terms are queried as a union
/// of term queries.
const GLOB_UNION_TERMS: usize = 64;

/// Matches are gathered in windows of this many ledger indices by
/// [`EventIndex::for_each`], which bounds its memory to 8 bytes each.
const WINDOW: u64 = 1 << 20;

const PAYLOAD_PREFIX: &str = "sealtrail-index";

fn payload(version: u32, watermark: u64) -> String {
    format!("{PAYLOAD_PREFIX} v{version} watermark {watermark}")
}

fn parse_payload(text: &str) -> Option<(u32, u64)> {
    let mut words = text.split(' ');
    let (prefix, version, label, n) = (words.next()?, words.next()?, words.next()?, words.next()?);
    if prefix != PAYLOAD_PREFIX || label != "watermark" || words.next().is_some() {
        return None;
    }
    Some((version.strip_prefix('v')?.parse().ok()?, n.parse().ok()?))
}

impl EventIndex {
    /// Open the index in `dir`, creating it (and `dir`) if absent.
    pub fn open(dir: &Path, opts: IndexOptions) -> Result<EventIndex, IndexError> {
        fs::create_dir_all(dir).map_err(|source| IndexError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let (schema, fields) = schema::build();
        let directory = MmapDirectory::open(dir).map_err(TantivyError::from)?;
        let index = if Index::exists(&directory).map_err(TantivyError::from)? {
            let index = Index::open(directory)?;
            if index.schema() != schema {
                return Err(IndexError::SchemaMismatch { dir: dir.to_path_buf() });
            }
            index
        } else {
            Index::create(directory, schema, IndexSettings::default())?
        };
        index.tokenizers().register(WORDS, schema::words_analyzer());

        let committed = match index.load_metas()?.payload {
            None => 0,
            Some(text) => match parse_payload(&text) {
                Some((SCHEMA_VERSION, n)) => n,
                Some(_) => return Err(IndexError::SchemaMismatch { dir: dir.to_path_buf() }),
                None => {
                    return Err(IndexError::BadWatermark {
                        dir: dir.to_path_buf(),
                        payload: text,
                    })
                }
            },
        };

        let threads = opts.threads.max(1);
        let tantivy: IndexWriter = index.writer_with_options(
            IndexWriterOptions::builder()
                .memory_budget_per_thread(opts.writer_memory / threads)
                .num_worker_threads(threads)
                // The machine is shared with ingest; one merge at a time.
                .num_merge_threads(1)
                .build(),
        )?;
        let mut policy = LogMergePolicy::default();
        policy.set_min_num_segments(MERGE_FACTOR);
        tantivy.set_merge_policy(Box::new(policy));
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(EventIndex {
            index,
            fields,
            reader,
            writer: Mutex::new(Writer {
                tantivy,
                pending: committed,
                poisoned: false,
                scratch: schema::Scratch::default(),
            }),
            committed: AtomicU64::new(committed),
            blocks: PerSegment::new(),
            keys: PerSegment::new(),
        })
    }

    /// Delete the index in `dir` (it must not be open). A missing directory
    /// is already wiped; a directory that holds no index is refused.
    pub fn wipe(dir: &Path) -> Result<(), IndexError> {
        let io = |source| IndexError::Io {
            path: dir.to_path_buf(),
            source,
        };
        match fs::read_dir(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(e)),
            Ok(mut entries) => {
                if entries.next().is_some() && !dir.join("meta.json").is_file() {
                    return Err(IndexError::NotAnIndex(dir.to_path_buf()));
                }
            }
        }
        fs::remove_dir_all(dir).map_err(io)
    }

    /// Ledger entries `[0, n)` are in the last commit: the caller resumes
    /// adding at `n`.
    pub fn indexed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Add ledger entry `index`, which must be the entry after the last one
    /// added (or the watermark, after open). `None` is an entry that is not
    /// an event: it advances the watermark only.
    pub fn add(&self, index: u64, event: Option<&Event>) -> Result<(), IndexError> {
        if let Some(event) = event {
            return self.add_events(index, std::slice::from_ref(event));
        }
        let mut w = self.lock()?;
        if index != w.pending {
            return Err(IndexError::OutOfOrder {
                expected: w.pending,
                got: index,
            });
        }
        w.pending += 1;
        Ok(())
    }

    /// Add the events of ledger entries `first..first + events.len()`, in
    /// order, as [`EventIndex::add`] would one by one. The documents reach
    /// tantivy's indexing thread as one message per 1,024 rather than one
    /// each: a trickle of small groups otherwise wakes that thread per event.
    pub fn add_events<E: std::borrow::Borrow<Event>>(&self, first: u64, events: &[E]) -> Result<(), IndexError> {
        let mut w = self.lock()?;
        if first != w.pending {
            return Err(IndexError::OutOfOrder {
                expected: w.pending,
                got: first,
            });
        }
        let w = &mut *w;
        let mut at = first;
        for chunk in events.chunks(1024) {
            let docs: Vec<UserOperation<TantivyDocument>> = chunk
                .iter()
                .enumerate()
                .map(|(i, event)| {
                    UserOperation::Add(schema::document(
                        &self.fields,
                        at + i as u64,
                        event.borrow(),
                        &mut w.scratch,
                    ))
                })
                .collect();
            if let Err(e) = w.tantivy.run(docs) {
                w.poisoned = true;
                return Err(e.into());
            }
            at += chunk.len() as u64;
            w.pending = at;
        }
        Ok(())
    }

    /// Make everything added durable, with the watermark, and visible to
    /// searches before returning. Returns the watermark.
    pub fn commit(&self) -> Result<u64, IndexError> {
        let mut w = self.lock()?;
        let n = w.pending;
        if n == self.indexed() {
            return Ok(n);
        }
        let result = (|| {
            let mut prepared = w.tantivy.prepare_commit()?;
            prepared.set_payload(&payload(SCHEMA_VERSION, n));
            prepared.commit()?;
            self.reader.reload()
        })();
        if let Err(e) = result {
            w.poisoned = true;
            return Err(e.into());
        }
        self.committed.store(n, Ordering::Release);
        Ok(n)
    }

    /// One page of matching ledger indices, in the page's order.
    pub fn search(&self, filter: &Filter, page: &Page) -> Result<Vec<u64>, IndexError> {
        if page.limit == 0 {
            return Ok(Vec::new());
        }
        // Time ranges are checked here, block by block, rather than by a
        // range scorer: a new one rescans its column from the segment's start.
        let (Some(occurred), Some(received)) = (nanos_bounds(&filter.occurred), nanos_bounds(&filter.received)) else {
            return Ok(Vec::new());
        };
        let untimed = Filter {
            occurred: TimeRange::default(),
            received: TimeRange::default(),
            ..filter.clone()
        };
        let searcher = self.reader.searcher();
        let weight = self.weight(&searcher, &untimed)?;
        let segments = ledger_columns(&searcher)?;
        // Values a page may hold, from the cursor.
        let (lo, hi) = match (page.order, page.after) {
            (_, None) => (0, u64::MAX),
            (Order::NewestFirst, Some(a)) => match a.checked_sub(1) {
                Some(hi) => (0, hi),
                None => return Ok(Vec::new()),
            },
            (Order::OldestFirst, Some(a)) => match a.checked_add(1) {
                Some(lo) => (lo, u64::MAX),
                None => return Ok(Vec::new()),
            },
        };
        // Work in keys where larger is better for either order.
        let key = |v: u64| match page.order {
            Order::NewestFirst => v,
            Order::OldestFirst => u64::MAX - v,
        };
        // The best key a run of ledger indices [min, max] can offer.
        let reach = |min: u64, max: u64| {
            let (a, b) = (min.max(lo), max.min(hi));
            (a <= b).then(|| key(if page.order == Order::NewestFirst { b } else { a }))
        };
        let mut best: BinaryHeap<Reverse<u64>> = BinaryHeap::with_capacity(page.limit + 1);
        let done = |best: &BinaryHeap<Reverse<u64>>, reach: u64| {
            best.len() == page.limit && best.peek().is_some_and(|w| reach <= w.0)
        };
        let push = |best: &mut BinaryHeap<Reverse<u64>>, v: u64| {
            if (lo..=hi).contains(&v) {
                best.push(Reverse(key(v)));
                if best.len() > page.limit {
                    best.pop();
                }
            }
        };
        let mut segments: Vec<_> = segments
            .into_iter()
            .filter_map(|(reader, column)| reach(column.min_value(), column.max_value()).map(|r| (r, reader, column)))
            .collect();
        segments.sort_by_key(|(r, ..)| Reverse(*r));
        for (r, reader, column) in &segments {
            if done(&best, *r) {
                break;
            }
            let mut windows = Vec::new();
            for (name, bounds) in [(OCCURRED, occurred), (RECEIVED, received)] {
                if let Some((lo, hi)) = bounds {
                    let column = reader.fast_fields().i64(name)?;
                    windows.push(Window { name, column, lo, hi });
                }
            }
            if !windows
                .iter()
                .all(|w| w.meets(Some((w.column.min_value(), w.column.max_value()))))
            {
                continue;
            }
            let alive = reader.alive_bitset();
            let scorer = weight.scorer(reader, 1.0)?;
            // Few matches: read them all. Many: visit blocks of documents
            // best first, so a page stops after the blocks it needs.
            let matches = u128::from(scorer.size_hint());
            if matches * matches <= page.limit as u128 * u128::from(reader.max_doc()) / 2 {
                drain(scorer, 0, TERMINATED, |doc| {
                    if alive.is_none_or(|a| a.is_alive(doc)) && windows.iter().all(|w| w.holds(doc)) {
                        if let Some(v) = column.first(doc) {
                            push(&mut best, v);
                        }
                    }
                });
                continue;
            }
            let blocks = self.blocks(reader, column);
            let times: Vec<&BlockRanges<i64>> = windows.iter().map(|w| blocks.times(w, reader)).collect();
            let mut visit: Vec<(u64, u32)> = (0u32..)
                .zip(blocks.ledger.iter())
                .filter(|&(i, _)| windows.iter().zip(&times).all(|(w, t)| w.meets(t[i as usize])))
                .filter_map(|(i, range)| range.and_then(|(min, max)| reach(min, max)).map(|r| (r, i)))
                .collect();
            visit.sort_unstable_by_key(|&(r, i)| (Reverse(r), i));
            // Visits to neighbouring blocks share a scorer, in runs that
            // double up to MAX_RUN blocks: each new scorer looks its terms up
            // again, which costs more than a block when visits are many.
            let mut fresh = Some(scorer);
            let (mut run, mut k) = (1, 0);
            while let Some(&(r, i)) = visit.get(k) {
                if done(&best, r) {
                    break;
                }
                let (mut first, mut last, mut n) = (i, i, 1);
                while n < run {
                    match visit.get(k + n) {
                        Some(&(_, j)) if j + 1 == first => first = j,
                        Some(&(_, j)) if j == last + 1 => last = j,
                        _ => break,
                    }
                    n += 1;
                }
                k += n;
                run = (run * 2).min(MAX_RUN);
                let scorer = match fresh.take() {
                    Some(s) => s,
                    None => weight.scorer(reader, 1.0)?,
                };
                let end = (last + 1).saturating_mul(BLOCK);
                drain(scorer, first * BLOCK, end, |doc| {
                    let b = (doc / BLOCK) as usize;
                    // A block wholly inside a window needs no check per document.
                    let inside = windows.iter().zip(&times).all(|(w, t)| w.covers(t[b]) || w.holds(doc));
                    if inside && alive.is_none_or(|a| a.is_alive(doc)) {
                        if let Some(v) = column.first(doc) {
                            push(&mut best, v);
                        }
                    }
                });
            }
        }
        let mut out: Vec<u64> = best.into_iter().map(|Reverse(k)| key(k)).collect();
        match page.order {
            Order::NewestFirst => out.sort_unstable_by(|a, b| b.cmp(a)),
            Order::OldestFirst => out.sort_unstable(),
        }
        out.truncate(page.limit);
        Ok(out)
    }

    /// How many committed events match.
    pub fn count(&self, filter: &Filter) -> Result<u64, IndexError> {
        let searcher = self.reader.searcher();
        let query = self.query(&searcher, filter)?;
        Ok(searcher.search(&*query, &Count)? as u64)
    }

    /// Call `f` with every matching ledger index in ascending order until it
    /// returns false. Memory stays bounded however many match: matches are
    /// gathered and sorted one window of the ledger's index space at a time.
    pub fn for_each(&self, filter: &Filter, mut f: impl FnMut(u64) -> bool) -> Result<(), IndexError> {
        let searcher = self.reader.searcher();
        let weight = self.weight(&searcher, filter)?;
        let mut segments = ledger_columns(&searcher)?;
        segments.sort_by_key(|(_, c)| c.min_value());
        let Some(end) = segments.iter().map(|(_, c)| c.max_value()).max() else {
            return Ok(());
        };
        let mut start = segments.first().map_or(0, |(_, c)| c.min_value());
        let mut window = Vec::new();
        loop {
            let last = start.saturating_add(WINDOW - 1).min(end);
            window.clear();
            for (reader, column) in &segments {
                if column.min_value() <= last && column.max_value() >= start {
                    scan(&*weight, reader, column, start, last, |v| window.push(v))?;
                }
            }
            window.sort_unstable();
            for &v in &window {
                if !f(v) {
                    return Ok(());
                }
            }
            if last >= end {
                return Ok(());
            }
            // Skip the gap to the next segment that has anything later.
            start = segments
                .iter()
                .filter(|(_, c)| c.max_value() > last)
                .map(|(_, c)| c.min_value().max(last + 1))
                .min()
                .unwrap_or(end);
        }
    }

    /// Counts of the matching events by action, actor, outcome and time.
    pub fn stats(&self, filter: &Filter, bucket: Bucket) -> Result<Stats, IndexError> {
        let searcher = self.reader.searcher();
        let query = self.query(&searcher, filter)?;
        Ok(searcher.search(&*query, &StatsCollector { bucket })?)
    }

    /// Duration statistics per action over the matching events that have a
    /// `duration_ms`, sorted by action.
    pub fn performance(&self, filter: &Filter) -> Result<Vec<Performance>, IndexError> {
        let searcher = self.reader.searcher();
        let query = self.query(&searcher, filter)?;
        Ok(searcher.search(&*query, &PerformanceCollector)?)
    }

    /// The ledger index of the committed event with this idempotency key
    /// (the first, should there be several).
    pub fn find_idempotency_key(&self, key: &str) -> Result<Option<u64>, IndexError> {
        Ok(self.find_idempotency_keys(&[key])?.pop().flatten())
    }

    /// [`EventIndex::find_idempotency_key`] for each of `keys`, on one
    /// snapshot.
    pub fn find_idempotency_keys(&self, keys: &[&str]) -> Result<Vec<Option<u64>>, IndexError> {
        // Called for every keyed event on the ingest path, nearly always for
        // a key that is absent, and each segment is asked: its key filter
        // answers most, then its term dictionary; the ledger column is
        // opened only where a key is present.
        let mut found: Vec<Option<u64>> = vec![None; keys.len()];
        if keys.is_empty() {
            return Ok(found);
        }
        let hashes: Vec<u64> = keys.iter().map(|k| key_hash(k.as_bytes())).collect();
        let searcher = self.reader.searcher();
        for reader in searcher.segment_readers() {
            let filter = self.keys.get_or_build(reader, &self.reader, || {
                KeyFilter::build(reader, self.fields.idempotency)
            })?;
            let mut inverted = None;
            for ((key, &hash), first) in keys.iter().zip(&hashes).zip(found.iter_mut()) {
                if !filter.may_hold(hash) {
                    continue;
                }
                let inverted = match &inverted {
                    Some(i) => i,
                    None => inverted.insert(reader.inverted_index(self.fields.idempotency)?),
                };
                let term = Term::from_field_text(self.fields.idempotency, key);
                let Some(mut postings) = inverted
                    .read_postings(&term, IndexRecordOption::Basic)
                    .map_err(TantivyError::from)?
                else {
                    continue;
                };
                let column = reader.fast_fields().u64(LEDGER)?;
                let alive = reader.alive_bitset();
                let mut doc = postings.doc();
                while doc != TERMINATED {
                    if alive.is_none_or(|a| a.is_alive(doc)) {
                        if let Some(v) = column.first(doc) {
                            *first = Some(first.map_or(v, |f| f.min(v)));
                        }
                    }
                    doc = postings.advance();
                }
            }
        }
        Ok(found)
    }

    /// The summaries of `reader`'s blocks. A merged segment's documents are
    /// not in ledger order, but they come in long ordered runs, so most
    /// blocks span a narrow range.
    fn blocks(&self, reader: &SegmentReader, column: &Column<u64>) -> Arc<Blocks> {
        let built: Result<_, std::convert::Infallible> = self.blocks.get_or_build(reader, &self.reader, || {
            Ok(Blocks {
                ledger: block_ranges(column, reader.max_doc()),
                occurred: OnceLock::new(),
                received: OnceLock::new(),
            })
        });
        let Ok(blocks) = built;
        blocks
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Writer>, IndexError> {
        let w = self.writer.lock().map_err(|_| IndexError::Poisoned)?;
        if w.poisoned {
            return Err(IndexError::Poisoned);
        }
        Ok(w)
    }

    fn weight(&self, searcher: &Searcher, filter: &Filter) -> Result<Box<dyn Weight>, IndexError> {
        let query = self.query(searcher, filter)?;
        Ok(query.weight(EnableScoring::disabled_from_searcher(searcher))?)
    }

    /// The tantivy query for `filter`: the intersection of one clause per
    /// condition.
    fn query(&self, searcher: &Searcher, filter: &Filter) -> Result<Box<dyn Query>, IndexError> {
        let f = &self.fields;
        let mut all: Vec<Box<dyn Query>> = Vec::new();
        let term = |field: Field, value: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, value),
                IndexRecordOption::Basic,
            ))
        };
        if let Some(action) = &filter.action {
            if is_glob(action) {
                let terms = matching_terms(searcher, f.action, action)?;
                if terms.is_empty() {
                    return Ok(Box::new(EmptyQuery));
                }
                // A union of term scorers seeks cheaply, so a page can visit
                // a few blocks; a term set reads every posting up front, which
                // only pays for very many terms.
                if terms.len() <= GLOB_UNION_TERMS {
                    all.push(Box::new(BooleanQuery::union(
                        terms.iter().map(|t| term(f.action, t)).collect(),
                    )));
                } else {
                    all.push(Box::new(TermSetQuery::new(
                        terms.iter().map(|t| Term::from_field_text(f.action, t)),
                    )));
                }
            } else {
                all.push(term(f.action, action));
            }
        }
        if let Some(actor) = &filter.actor {
            all.push(term(f.actor, actor));
        }
        match (&filter.target_type, &filter.target_id) {
            (Some(kind), Some(id)) => all.push(term(f.target, &schema::target_term(kind, id))),
            (Some(kind), None) => all.push(term(f.target_type, kind)),
            (None, Some(id)) => {
                // Ids are indexed only in (type, id) pairs: ask every type.
                let pairs: Vec<Box<dyn Query>> = all_terms(searcher, f.target_type)?
                    .iter()
                    .map(|kind| term(f.target, &schema::target_term(kind, id)))
                    .collect();
                if pairs.is_empty() {
                    return Ok(Box::new(EmptyQuery));
                }
                all.push(Box::new(BooleanQuery::union(pairs)));
            }
            (None, None) => {}
        }
        for (field, value) in [
            (f.tenant, &filter.tenant),
            (f.workflow, &filter.workflow),
            (f.service, &filter.service),
            (f.session, &filter.session),
        ] {
            if let Some(v) = value {
                all.push(term(field, v));
            }
        }
        if let Some(ip) = filter.ip {
            all.push(term(f.ip, &ip.to_string()));
        }
        // Outcome and severity are fast columns only: a term per event each
        // would cost more at indexing than the column scans cost here.
        if let Some(o) = filter.outcome {
            let code = Term::from_field_u64(f.outcome, schema::outcome_code(o));
            all.push(Box::new(RangeQuery::new(
                Bound::Included(code.clone()),
                Bound::Included(code),
            )));
        }
        if let Some(s) = filter.min_severity {
            if s > sealtrail_event::Severity::Debug {
                all.push(Box::new(RangeQuery::new(
                    Bound::Included(Term::from_field_u64(f.severity, schema::severity_code(s))),
                    Bound::Unbounded,
                )));
            }
        }
        for (field, range) in [(f.occurred, &filter.occurred), (f.received, &filter.received)] {
            match time_range(field, range) {
                None => return Ok(Box::new(EmptyQuery)),
                Some(Some(q)) => all.push(q),
                Some(None) => {}
            }
        }
        if let Some(text) = &filter.text {
            let mut analyzer = self.index.tokenizer_for_field(f.text)?;
            let mut stream = analyzer.token_stream(text);
            let mut words = BTreeSet::new();
            while stream.advance() {
                words.insert(stream.token().text.clone());
            }
            for w in &words {
                all.push(term(f.text, w));
            }
        }
        if filter.failures {
            all.push(term(f.flag, FAILURE));
        }
        Ok(match all.len() {
            0 => Box::new(AllQuery),
            1 => all.remove(0),
            _ => Box::new(BooleanQuery::intersection(all)),
        })
    }
}

/// The clause for a time range: `None` if nothing can match, `Some(None)`
/// if it sets no condition.
fn time_range(field: Field, range: &TimeRange) -> Option<Option<Box<dyn Query>>> {
    let since = range.since.map(schema::nanos);
    let until = range.until.map(schema::nanos);
    if let (Some(s), Some(u)) = (since, until) {
        if s >= u {
            return None;
        }
    }
    if since.is_none() && until.is_none() {
        return Some(None);
    }
    let lower = since.map_or(Bound::Unbounded, |s| Bound::Included(Term::from_field_i64(field, s)));
    let upper = until.map_or(Bound::Unbounded, |u| Bound::Excluded(Term::from_field_i64(field, u)));
    Some(Some(Box::new(RangeQuery::new(lower, upper))))
}

/// Every term of `field` in any segment that matches the glob `pattern`.
fn matching_terms(searcher: &Searcher, field: Field, pattern: &str) -> Result<BTreeSet<String>, IndexError> {
    let prefix = literal_prefix(pattern);
    let mut found = BTreeSet::new();
    for reader in searcher.segment_readers() {
        let inverted = reader.inverted_index(field)?;
        let mut terms = inverted
            .terms()
            .range()
            .ge(prefix.as_bytes())
            .into_stream()
            .map_err(TantivyError::from)?;
        while terms.advance() {
            let key = terms.key();
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            if let Ok(s) = std::str::from_utf8(key) {
                if glob_match(pattern, s) {
                    found.insert(s.to_string());
                }
            }
        }
    }
    Ok(found)
}

/// Every term of `field` in any segment.
fn all_terms(searcher: &Searcher, field: Field) -> Result<BTreeSet<String>, IndexError> {
    let mut found = BTreeSet::new();
    for reader in searcher.segment_readers() {
        let inverted = reader.inverted_index(field)?;
        let mut terms = inverted.terms().stream().map_err(TantivyError::from)?;
        while terms.advance() {
            if let Ok(s) = std::str::from_utf8(terms.key()) {
                found.insert(s.to_string());
            }
        }
    }
    Ok(found)
}

/// Each non-empty segment with its ledger-index column.
fn ledger_columns(searcher: &Searcher) -> Result<Vec<(&SegmentReader, Column<u64>)>, IndexError> {
    let mut out = Vec::new();
    for reader in searcher.segment_readers() {
        if reader.num_docs() > 0 {
            out.push((reader, reader.fast_fields().u64(LEDGER)?));
        }
    }
    Ok(out)
}

/// Call `visit` with every document in `[start, end)` that `scorer` (not
/// yet advanced) matches.
fn drain(mut scorer: Box<dyn Scorer>, start: DocId, end: DocId, mut visit: impl FnMut(DocId)) {
    let mut doc = scorer.doc();
    if doc < start {
        doc = scorer.seek(start);
    }
    while doc < end {
        visit(doc);
        doc = scorer.advance();
    }
}

/// The least and greatest value of `column` in each [`BLOCK`] of a
/// segment's `max_doc` documents.
fn block_ranges<T>(column: &Column<T>, max_doc: DocId) -> BlockRanges<T>
where
    T: PartialOrd + Copy + std::fmt::Debug + Send + Sync + 'static,
{
    let mut docs: Vec<DocId> = Vec::with_capacity(BLOCK as usize);
    let mut values: Vec<Option<T>> = Vec::with_capacity(BLOCK as usize);
    (0..max_doc)
        .step_by(BLOCK as usize)
        .map(|start| {
            docs.clear();
            docs.extend(start..max_doc.min(start.saturating_add(BLOCK)));
            values.clear();
            values.resize(docs.len(), None);
            column.first_vals(&docs, &mut values);
            values.iter().flatten().fold(None, |range, &v| match range {
                None => Some((v, v)),
                Some((min, max)) => Some((if v < min { v } else { min }, if v > max { v } else { max })),
            })
        })
        .collect()
}

/// Inclusive bounds in nanoseconds of a time range, as the index stores
/// times: `Some(None)` sets no condition, `None` matches nothing.
fn nanos_bounds(range: &TimeRange) -> Option<Option<(i64, i64)>> {
    if *range == TimeRange::default() {
        return Some(None);
    }
    let lo = range.since.map_or(i64::MIN, schema::nanos);
    let hi = match range.until {
        None => i64::MAX,
        Some(u) => schema::nanos(u).checked_sub(1)?,
    };
    (lo <= hi).then_some(Some((lo, hi)))
}

/// Call `push` with the ledger index of every live document of `reader`
/// that `weight` matches and whose ledger index lies in `[lo, hi]`.
fn scan(
    weight: &dyn Weight,
    reader: &SegmentReader,
    column: &Column<u64>,
    lo: u64,
    hi: u64,
    mut push: impl FnMut(u64),
) -> Result<(), IndexError> {
    let alive = reader.alive_bitset();
    let mut values = Vec::new();
    weight.for_each_no_score(reader, &mut |docs: &[DocId]| {
        values.resize(docs.len(), None);
        column.first_vals(docs, &mut values);
        for (&doc, v) in docs.iter().zip(&values) {
            if let Some(v) = *v {
                if v >= lo && v <= hi && alive.is_none_or(|a| a.is_alive(doc)) {
                    push(v);
                }
            }
        }
    })?;
    Ok(())
}
