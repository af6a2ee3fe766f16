//! [`EventIndex`]: one directory of immutable segments per log, fed in
//! ledger order, and a manifest naming the committed segments with the
//! watermark.
//!
//! ```text
//! add ──► Building ──(memory full, or commit)──► NNNNNNNNNNNN.seg, synced
//! commit ──► MANIFEST.tmp, synced ──rename──► MANIFEST, directory synced ──► searchable
//! 16 neighbours of one size ──merge──► one segment ──► MANIFEST ──► inputs deleted
//! ```
//!
//! Segments cover consecutive runs of the ledger, oldest first, so a page
//! of the newest (or oldest) matches reads segments from that end and
//! stops at its last match, and a merge is a concatenation of neighbours.
//! Queries run on a snapshot (the committed segments when they began) and
//! never take the writer's lock.
//!
//! Not here: reading the ledger or parsing entries (the caller does both),
//! or deciding when to commit.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;

use sealtrail_event::Event;
use sealtrail_segment::{merge_dropping, term_hash, FormatError, MergeDamage};
use sealtrail_storage::{OsStorage, Storage, StorageFile};

use crate::error::{io_at, IndexError};
use crate::filter::{Filter, Order, Page};
use crate::history::History;
use crate::manifest::{
    manifest_text, parse_manifest, segment_number, sync_dir, write_manifest, Manifest, MANIFEST, MANIFEST_TMP,
    SEGMENT_SUFFIX,
};
use crate::part::Part;
use crate::part::Seg;
use crate::policy::merge_run;
use crate::query::{first_at_or_after, Plan};
use crate::schema::{Building, ACTION, IDEMPOTENCY, LEDGER};
use crate::source::EventSource;
use crate::stats::{Bucket, Durations, Facet, FacetSum, GlobSum, GlobTally, Performance, Stats, StatsSum};

/// A segment the forget watermark cuts through is rewritten without its
/// forgotten documents once at least one in this many of them are.
const PURGE_SHARE: u64 = 4;

/// How the index is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexOptions {
    /// Bytes the segment being built may hold before it is written out
    /// (still invisible until the next commit). Writing it needs about as
    /// much again.
    pub writer_memory: usize,
}

impl Default for IndexOptions {
    fn default() -> IndexOptions {
        IndexOptions {
            writer_memory: 128 << 20,
        }
    }
}

/// Held locked while an [`EventIndex`] has the directory open.
const LOCK: &str = "LOCK";
/// What a tantivy index (schema version 2 and before) holds.
const TANTIVY_META: &str = "meta.json";

/// The most the segment being built may hold, whatever
/// [`IndexOptions::writer_memory`] says: its term bytes must stay under the
/// format's 4 GiB.
const MAX_BUILDING_MEMORY: usize = 1 << 31;

struct Writer {
    building: Building,
    /// The ledger index `add` expects next.
    pending: u64,
    /// Written since the last commit, oldest first; not in the manifest.
    flushed: Vec<Arc<Part>>,
    /// The committed segments, oldest first (what searches see).
    parts: Vec<Arc<Part>>,
    /// The number of the next segment file.
    next_file: u64,
    poisoned: bool,
}

impl Writer {
    /// The name of a new segment file.
    fn new_file(&mut self) -> String {
        self.next_file += 1;
        format!("{:012}{SEGMENT_SUFFIX}", self.next_file - 1)
    }
}

/// The query index of one log. `Send + Sync`: share it by reference; the
/// writer sits behind a mutex, searches run on snapshots without it, and
/// merges run on a thread of their own, so a large merge delays neither
/// additions nor commits.
pub struct EventIndex {
    store: Arc<Store>,
    merger: Option<JoinHandle<()>>,
    /// Reads events back for long phrases ([`EventIndex::set_event_source`]).
    source: RwLock<Option<Arc<dyn EventSource>>>,
}

/// What the caller's threads and the merge thread share.
struct Store {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    opts: IndexOptions,
    /// Asked for the root hash at each commit's watermark, if given.
    history: Option<Arc<dyn History>>,
    /// The root hash the manifest records with the watermark (the last
    /// commit's, or the opened manifest's).
    root: Mutex<Option<[u8; 32]>>,
    writer: Mutex<Writer>,
    snapshot: RwLock<Arc<Vec<Arc<Part>>>>,
    /// Ledger entries `[0, committed)` are in the last commit.
    committed: AtomicU64,
    /// Ledger entries `[0, forgotten)` are forgotten: pruned from the
    /// ledger, so no query returns or counts them.
    forgotten: AtomicU64,
    merges: Mutex<Merges>,
    merges_changed: Condvar,
    /// Why the merge thread refused further writes, for the caller that
    /// then meets [`IndexError::Poisoned`] and must say why.
    merge_failure: Mutex<Option<String>>,
    /// Locked while open, so no other writer touches the directory. None
    /// for an index opened beside the writer, where every write refuses.
    lock: Option<Box<dyn std::any::Any + Send + Sync>>,
}

/// The merge thread's state.
#[derive(Default)]
struct Merges {
    /// A commit (or open) may have left a run to merge.
    due: bool,
    running: bool,
    stop: bool,
}

impl EventIndex {
    /// Open the index in `dir`, creating it (and `dir`) if absent. Files
    /// the manifest does not name (segments of a commit or merge cut short)
    /// are deleted.
    pub fn open(dir: &Path, opts: IndexOptions) -> Result<EventIndex, IndexError> {
        EventIndex::open_with(Arc::new(OsStorage), dir, opts, None)
    }

    /// [`EventIndex::open`] on `storage`. With a `history`, each commit
    /// records the history's root hash at its watermark in the manifest
    /// ([`EventIndex::root`]), so that a caller can tell on open whether
    /// the index was built from the history it holds.
    pub fn open_with(
        storage: Arc<dyn Storage>,
        dir: &Path,
        opts: IndexOptions,
        history: Option<Arc<dyn History>>,
    ) -> Result<EventIndex, IndexError> {
        storage.create_dir_all(dir).map_err(io_at(dir))?;
        let lock_path = dir.join(LOCK);
        let lock = match storage.lock(&lock_path) {
            Ok(lock) => lock,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(IndexError::Locked(dir.to_path_buf())),
            Err(e) => return Err(io_at(&lock_path)(e)),
        };
        let manifest = match read_manifest(&*storage, dir)? {
            Some(text) => parse_manifest(dir, &text)?,
            None => {
                let empty = Manifest {
                    watermark: 0,
                    root: None,
                    forgotten: 0,
                    segments: Vec::new(),
                };
                write_manifest(&*storage, dir, &manifest_text(0, None, 0, &[]))?;
                empty
            }
        };
        let mut parts = Vec::with_capacity(manifest.segments.len());
        for (file, bytes) in &manifest.segments {
            parts.push(Arc::new(Part::open(&*storage, dir, file, *bytes)?));
        }
        // Leftovers of a commit or merge that did not finish.
        let mut next_file = 0;
        for name in storage.list_files(dir).map_err(io_at(dir))? {
            let path = dir.join(&name);
            if let Some(n) = segment_number(&name) {
                next_file = next_file.max(n + 1);
                if !manifest.segments.iter().any(|(f, _)| *f == name) {
                    storage.remove_file(&path).map_err(io_at(&path))?;
                }
            } else if name == MANIFEST_TMP {
                storage.remove_file(&path).map_err(io_at(&path))?;
            }
        }
        let store = Arc::new(Store {
            storage,
            dir: dir.to_path_buf(),
            opts,
            history,
            root: Mutex::new(manifest.root),
            snapshot: RwLock::new(Arc::new(parts.clone())),
            writer: Mutex::new(Writer {
                building: Building::default(),
                pending: manifest.watermark,
                flushed: Vec::new(),
                parts,
                next_file,
                poisoned: false,
            }),
            committed: AtomicU64::new(manifest.watermark),
            forgotten: AtomicU64::new(manifest.forgotten),
            merges: Mutex::new(Merges {
                due: true,
                ..Merges::default()
            }),
            merges_changed: Condvar::new(),
            merge_failure: Mutex::new(None),
            lock: Some(lock),
        });
        let merger = {
            let store = Arc::clone(&store);
            std::thread::Builder::new()
                .name("sealtrail-merge".into())
                .spawn(move || store.merge_when_due())
                .map_err(io_at(dir))?
        };
        Ok(EventIndex {
            store,
            merger: Some(merger),
            source: RwLock::new(None),
        })
    }

    /// Open the index in `dir` for searching beside its writer (another
    /// process's [`EventIndex`]): no lock, no merge thread, nothing created
    /// or deleted. Searches see the commit that was current at the open.
    /// A segment the manifest names may be merged away and deleted between
    /// reading the manifest and opening the segment; the manifest is then
    /// read again. A directory without a manifest is an empty index.
    /// Writes refuse with [`IndexError::ReadOnly`].
    pub fn open_read_only(dir: &Path, opts: IndexOptions) -> Result<EventIndex, IndexError> {
        EventIndex::open_read_only_with(Arc::new(OsStorage), dir, opts)
    }

    /// [`EventIndex::open_read_only`] on `storage`.
    pub fn open_read_only_with(
        storage: Arc<dyn Storage>,
        dir: &Path,
        opts: IndexOptions,
    ) -> Result<EventIndex, IndexError> {
        // Each retry follows a merge that finished meanwhile; a manifest
        // that names a missing file twice in a row is damage.
        let mut previous: Option<String> = None;
        loop {
            let text = read_manifest(&*storage, dir)?.unwrap_or_else(|| manifest_text(0, None, 0, &[]));
            let manifest = parse_manifest(dir, &text)?;
            let mut parts = Vec::with_capacity(manifest.segments.len());
            let mut vanished = None;
            for (file, bytes) in &manifest.segments {
                match Part::open(&*storage, dir, file, *bytes) {
                    Ok(part) => parts.push(Arc::new(part)),
                    Err(e) if !storage.exists(&dir.join(file)) => {
                        vanished = Some(e);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            match vanished {
                None => return Ok(EventIndex::read_only(storage, dir, opts, manifest, parts)),
                Some(e) if previous.as_deref() == Some(text.as_str()) => return Err(e),
                Some(_) => previous = Some(text),
            }
        }
    }

    fn read_only(
        storage: Arc<dyn Storage>,
        dir: &Path,
        opts: IndexOptions,
        manifest: Manifest,
        parts: Vec<Arc<Part>>,
    ) -> EventIndex {
        let watermark = manifest.watermark;
        let store = Store {
            storage,
            dir: dir.to_path_buf(),
            opts,
            history: None,
            root: Mutex::new(manifest.root),
            snapshot: RwLock::new(Arc::new(parts.clone())),
            writer: Mutex::new(Writer {
                building: Building::default(),
                pending: watermark,
                flushed: Vec::new(),
                parts,
                next_file: 0,
                poisoned: false,
            }),
            committed: AtomicU64::new(watermark),
            forgotten: AtomicU64::new(manifest.forgotten),
            merges: Mutex::new(Merges::default()),
            merges_changed: Condvar::new(),
            merge_failure: Mutex::new(None),
            lock: None,
        };
        EventIndex {
            store: Arc::new(store),
            merger: None,
            source: RwLock::new(None),
        }
    }

    /// Delete the index in `dir` (it must not be open). A missing directory
    /// is already wiped; a directory that holds nothing an index writes (a
    /// manifest, its temporary, the lock, a segment, or an earlier tantivy
    /// index's `meta.json`) is refused, so a wrong path never deletes
    /// someone's files. An index stopped before its first commit (a lock
    /// and segments, no manifest yet) is an index.
    pub fn wipe(dir: &Path) -> Result<(), IndexError> {
        EventIndex::wipe_with(&OsStorage, dir)
    }

    /// [`EventIndex::wipe`] on `storage`.
    pub fn wipe_with(storage: &dyn Storage, dir: &Path) -> Result<(), IndexError> {
        let files = match storage.list_files(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_at(dir)(e)),
            Ok(files) => files,
        };
        let dirs = storage.list_dirs(dir).map_err(io_at(dir))?;
        let known = files.iter().any(|f| {
            f == MANIFEST || f == MANIFEST_TMP || f == LOCK || f == TANTIVY_META || segment_number(f).is_some()
        });
        let empty = files.is_empty() && dirs.is_empty();
        if !known && !empty {
            return Err(IndexError::NotAnIndex(dir.to_path_buf()));
        }
        storage.remove_dir_all(dir).map_err(io_at(dir))
    }

    /// Ledger entries `[0, n)` are in the last commit: the caller resumes
    /// adding at `n`.
    pub fn indexed(&self) -> u64 {
        self.store.indexed()
    }

    /// The root hash of the ledger's first [`EventIndex::indexed`] entries
    /// as the manifest records it: `None` if the index was committed
    /// without a [`History`] (or by a version that recorded none).
    pub fn root(&self) -> Option<[u8; 32]> {
        *self.store.root.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ledger entries below this are forgotten ([`EventIndex::forget_below`]).
    pub fn forgotten(&self) -> u64 {
        self.store.forgotten.load(Ordering::Acquire)
    }

    /// Forget ledger entries `[0, n)` for good: from the return on, no
    /// search, count, statistic or idempotency lookup sees them, in this
    /// process or any that opens the index later (the manifest records
    /// `n`, synced). For entries pruned from the ledger. `n` may not pass
    /// the watermark (commit first); a smaller `n` than already forgotten
    /// changes nothing. Segments are immutable, so the forgotten documents
    /// leave them only in merges: the merge thread, woken here, drops
    /// the segments that hold nothing else and rewrites the one the
    /// watermark cuts through once a quarter of it is forgotten; any
    /// later merge leaves forgotten documents out too.
    pub fn forget_below(&self, n: u64) -> Result<(), IndexError> {
        let w = self.store.lock()?;
        let watermark = self.store.indexed();
        if n > watermark {
            return Err(IndexError::ForgetPastWatermark { n, watermark });
        }
        if n <= self.forgotten() {
            return Ok(());
        }
        let before = self.store.forgotten.swap(n, Ordering::AcqRel);
        let root = *self.store.root.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = self.store.publish(&w, watermark, root) {
            self.store.forgotten.store(before, Ordering::Release);
            return Err(e);
        }
        drop(w);
        // The merge thread drops what is now forgotten from the segments.
        self.store.merges.lock().unwrap_or_else(|e| e.into_inner()).due = true;
        self.store.merges_changed.notify_all();
        Ok(())
    }

    /// Add ledger entry `index`, which must be the entry after the last one
    /// added (or the watermark, after open). `None` is an entry that is not
    /// an event: it advances the watermark only.
    pub fn add(&self, index: u64, event: Option<&Event>) -> Result<(), IndexError> {
        match event {
            Some(event) => self.store.add_events(index, std::slice::from_ref(event)),
            None => self.store.add_entry(index),
        }
    }

    /// Add the events of ledger entries `first..first + events.len()`, in
    /// order, as [`EventIndex::add`] would one by one.
    pub fn add_events<E: std::borrow::Borrow<Event>>(&self, first: u64, events: &[E]) -> Result<(), IndexError> {
        self.store.add_events(first, events)
    }

    /// Make everything added durable, with the watermark, and visible to
    /// searches before returning; merges it calls for follow on the merge
    /// thread. Returns the watermark.
    pub fn commit(&self) -> Result<u64, IndexError> {
        self.store.commit()
    }

    /// Wait until no merge is due or running (for a rebuild that should end
    /// compact, and for tests). Fails if a merge failed.
    pub fn wait_for_merges(&self) -> Result<(), IndexError> {
        let mut m = self.store.merges.lock().unwrap_or_else(|e| e.into_inner());
        while (m.due || m.running) && !m.stop {
            m = self.store.merges_changed.wait(m).unwrap_or_else(|e| e.into_inner());
        }
        drop(m);
        self.store.lock().map(drop)
    }

    /// Why a merge failed (or panicked) and poisoned the index, if one did.
    /// The merge thread runs on its own, so its error reaches the caller
    /// only here; additions and commits then refuse with
    /// [`IndexError::Poisoned`].
    pub fn merge_failure(&self) -> Option<String> {
        self.store
            .merge_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stop the merge thread and wait for the merge it is running, if any,
    /// so that nothing writes to the directory any more (before it is
    /// renamed or deleted while this index is still searched). Searches go
    /// on; merges never resume.
    pub fn stop_merges(&self) {
        let mut m = self.store.merges.lock().unwrap_or_else(|e| e.into_inner());
        m.stop = true;
        self.store.merges_changed.notify_all();
        while m.running {
            m = self.store.merges_changed.wait(m).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Part>>> {
        self.store.snapshot()
    }

    /// Lend the index a way to read events back by ledger index. Text
    /// queries with a phrase of three or more words need it: the index
    /// narrows the candidates with the phrase's word pairs and checks each
    /// against the event's text. Replaces any source set before.
    pub fn set_event_source(&self, source: Arc<dyn EventSource>) {
        *self.source.write().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    /// The plan of `filter` on this index: forgotten entries never match.
    fn plan(&self, filter: &Filter) -> Result<Plan, IndexError> {
        let mut plan = Plan::new(filter, self.source())?;
        plan.at_least(self.forgotten());
        Ok(plan)
    }

    fn source(&self) -> Option<Arc<dyn EventSource>> {
        self.source.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// One page of matching ledger indices, in the page's order.
    pub fn search(&self, filter: &Filter, page: &Page) -> Result<Vec<u64>, IndexError> {
        let mut out = Vec::with_capacity(page.limit.min(4096));
        let plan = self.plan(filter)?;
        if page.limit == 0 || plan.nothing {
            return plan.failure().map(|()| out);
        }
        let parts = self.snapshot();
        let dir = &self.store.dir;
        match page.order {
            Order::NewestFirst => {
                // Ledger indices the page may hold: at most `hi`.
                let hi = match page.after {
                    None => u64::MAX,
                    Some(a) => match a.checked_sub(1) {
                        Some(hi) => hi,
                        None => return Ok(out),
                    },
                };
                for part in parts.iter().rev().filter(|p| p.first <= hi) {
                    let (seg, bad) = (&part.segment, |e| bad_segment(dir, part, e));
                    let Some(mut matches) = plan.on(seg).map_err(bad)? else {
                        continue;
                    };
                    let first_after = first_at_or_after(seg, hi.saturating_add(1)).map_err(bad)?;
                    let Some(last) = first_after.checked_sub(1) else {
                        continue;
                    };
                    let Some(ledger) = seg.column(LEDGER) else { continue };
                    let more = matches.descending(last, |doc| {
                        out.extend(ledger.get(doc)?);
                        Ok::<_, FormatError>(out.len() < page.limit)
                    });
                    if !more.map_err(bad)? {
                        return plan.failure().map(|()| out);
                    }
                }
            }
            Order::OldestFirst => {
                let lo = match page.after {
                    None => 0,
                    Some(a) => match a.checked_add(1) {
                        Some(lo) => lo,
                        None => return Ok(out),
                    },
                };
                for part in parts.iter().filter(|p| p.last >= lo) {
                    let (seg, bad) = (&part.segment, |e| bad_segment(dir, part, e));
                    let Some(mut matches) = plan.on(seg).map_err(bad)? else {
                        continue;
                    };
                    let Some(ledger) = seg.column(LEDGER) else { continue };
                    let first = first_at_or_after(seg, lo).map_err(bad)?;
                    let more = matches.ascending(first, |doc| {
                        out.extend(ledger.get(doc)?);
                        Ok::<_, FormatError>(out.len() < page.limit)
                    });
                    if !more.map_err(bad)? {
                        return plan.failure().map(|()| out);
                    }
                }
            }
        }
        plan.failure().map(|()| out)
    }

    /// How many committed events match.
    pub fn count(&self, filter: &Filter) -> Result<u64, IndexError> {
        let plan = self.plan(filter)?;
        let mut n = 0;
        for part in self.snapshot().iter() {
            let bad = |e| bad_segment(&self.store.dir, part, e);
            if let Some(mut matches) = plan.on(&part.segment).map_err(bad)? {
                n += matches.count().map_err(bad)?;
            }
        }
        plan.failure().map(|()| n)
    }

    /// Call `f` with every matching ledger index in ascending order until it
    /// returns false. Memory stays bounded however many match.
    pub fn for_each(&self, filter: &Filter, mut f: impl FnMut(u64) -> bool) -> Result<(), IndexError> {
        let plan = self.plan(filter)?;
        for part in self.snapshot().iter() {
            let (seg, bad) = (&part.segment, |e| bad_segment(&self.store.dir, part, e));
            let (Some(mut matches), Some(ledger)) = (plan.on(seg).map_err(bad)?, seg.column(LEDGER)) else {
                continue;
            };
            let mut values = crate::query::Values::new(ledger);
            let more = matches.ascending(0, |doc| Ok::<_, FormatError>(values.get(doc)?.is_none_or(&mut f)));
            if !more.map_err(bad)? {
                break;
            }
        }
        plan.failure()
    }

    /// Counts of the matching events by action, actor, outcome and time.
    pub fn stats(&self, filter: &Filter, bucket: Bucket) -> Result<Stats, IndexError> {
        let plan = self.plan(filter)?;
        let mut sum = StatsSum::default();
        for part in self.snapshot().iter() {
            let bad = |e| bad_segment(&self.store.dir, part, e);
            if let Some(mut matches) = plan.on(&part.segment).map_err(bad)? {
                sum.add(&part.segment, &mut matches, bucket).map_err(bad)?;
            }
        }
        plan.failure()?;
        Ok(sum.finish())
    }

    /// For each of `globs` (action globs as [`Filter::action`] takes them),
    /// among the events matching `filter`: how many have an action it
    /// matches, how many of those failed, their counts by action and the
    /// ledger indices of the `newest` newest. One pass over the events
    /// whose action some glob matches, however many globs there are; the
    /// figures are those of a `stats`, a `count` with outcome `failure`
    /// and a `search` with the glob as the action.
    pub fn tally_globs(&self, filter: &Filter, globs: &[&str], newest: usize) -> Result<Vec<GlobTally>, IndexError> {
        let plan = self.plan(filter)?;
        let mut sum = GlobSum::new(globs, newest);
        for part in self.snapshot().iter() {
            let (seg, bad) = (&part.segment, |e| bad_segment(&self.store.dir, part, e));
            let terms = sum.terms(seg).map_err(bad)?;
            let start = seg.field_terms(ACTION).start;
            let numbers: Vec<u32> = terms.iter().map(|(number, _)| start + number).collect();
            if let Some(mut matches) = plan.on_holding(seg, Some(&numbers)).map_err(bad)? {
                sum.add(seg, &mut matches, &terms).map_err(bad)?;
            }
        }
        plan.failure()?;
        Ok(sum.finish())
    }

    /// How many matching events hold each value of `facet`, largest count
    /// first, then by value. Read from the posting lists, never the ledger.
    pub fn facet(&self, filter: &Filter, facet: Facet) -> Result<Vec<(String, u64)>, IndexError> {
        let plan = Plan::new(filter, self.source())?;
        let mut sum = FacetSum::default();
        for part in self.snapshot().iter() {
            let bad = |e| bad_segment(&self.store.dir, part, e);
            if let Some(mut matches) = plan.on(&part.segment).map_err(bad)? {
                sum.add(&part.segment, &mut matches, facet).map_err(bad)?;
            }
        }
        plan.failure()?;
        Ok(sum.finish())
    }

    /// Duration statistics per action over the matching events that have a
    /// `duration_ms`, sorted by action.
    pub fn performance(&self, filter: &Filter) -> Result<Vec<Performance>, IndexError> {
        let plan = self.plan(filter)?;
        let mut durations = Durations::default();
        for part in self.snapshot().iter() {
            let bad = |e| bad_segment(&self.store.dir, part, e);
            if let Some(mut matches) = plan.on(&part.segment).map_err(bad)? {
                durations.add(&part.segment, &mut matches).map_err(bad)?;
            }
        }
        plan.failure()?;
        Ok(durations.finish())
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
        // a key that is absent: each segment's key filter answers most.
        let mut found: Vec<Option<u64>> = vec![None; keys.len()];
        if keys.is_empty() {
            return Ok(found);
        }
        let hashes: Vec<u64> = keys.iter().map(|k| term_hash(k.as_bytes())).collect();
        let forgotten = self.forgotten();
        // Oldest first: the first segment holding a key holds its first event.
        for part in self.snapshot().iter() {
            let bad = |e| bad_segment(&self.store.dir, part, e);
            let filter = part.keys().map_err(bad)?;
            for ((key, &hash), first) in keys.iter().zip(&hashes).zip(found.iter_mut()) {
                if first.is_some() || !filter.0.contains_hash(hash) {
                    continue;
                }
                let seg = &part.segment;
                if let Some(term) = seg.find(IDEMPOTENCY, key.as_bytes()).map_err(bad)? {
                    let doc = seg
                        .postings(term)
                        .map_err(bad)?
                        .iter()
                        .next()
                        .transpose()
                        .map_err(bad)?;
                    if let (Some(doc), Some(ledger)) = (doc, seg.column(LEDGER)) {
                        // A forgotten event's key is forgotten with it.
                        *first = ledger.get(doc).map_err(bad)?.filter(|&i| i >= forgotten);
                    }
                }
            }
        }
        Ok(found)
    }
}

/// A segment found damaged while answering: the query fails, naming it,
/// rather than answering without it.
fn bad_segment(dir: &Path, part: &Part, e: FormatError) -> IndexError {
    IndexError::BadSegment {
        path: dir.join(&part.file),
        reason: e.to_string(),
    }
}

impl Store {
    fn indexed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Ledger entry `index`, which is not an event.
    fn add_entry(&self, index: u64) -> Result<(), IndexError> {
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

    fn add_events<E: std::borrow::Borrow<Event>>(&self, first: u64, events: &[E]) -> Result<(), IndexError> {
        let mut w = self.lock()?;
        if first != w.pending {
            return Err(IndexError::OutOfOrder {
                expected: w.pending,
                got: first,
            });
        }
        for event in events {
            if w.building.segment.docs() >= sealtrail_segment::MAX_DOCS {
                self.flush(&mut w)?;
            }
            let at = w.pending;
            w.building.add(at, event.borrow());
            w.pending = at + 1;
            if w.building.segment.memory() >= self.opts.writer_memory.min(MAX_BUILDING_MEMORY) {
                self.flush(&mut w)?;
            }
        }
        Ok(())
    }

    fn commit(&self) -> Result<u64, IndexError> {
        let mut w = self.lock()?;
        let n = w.pending;
        if n == self.indexed() {
            return Ok(n);
        }
        // Asked before anything is written, so a failure leaves the
        // writer usable.
        let root = match &self.history {
            None => None,
            Some(history) => Some(history.root(n).map_err(|source| IndexError::History {
                dir: self.dir.clone(),
                size: n,
                source,
            })?),
        };
        let result = self.commit_locked(&mut w, n, root);
        if result.is_err() {
            w.poisoned = true;
        }
        result.map(|()| n)
    }

    fn commit_locked(&self, w: &mut Writer, n: u64, root: Option<[u8; 32]>) -> Result<(), IndexError> {
        self.flush(w)?;
        let flushed = std::mem::take(&mut w.flushed);
        w.parts.extend(flushed);
        self.publish(w, n, root)?;
        self.committed.store(n, Ordering::Release);
        *self.root.lock().unwrap_or_else(|e| e.into_inner()) = root;
        if merge_run(&w.parts).is_some() {
            self.merges.lock().unwrap_or_else(|e| e.into_inner()).due = true;
            self.merges_changed.notify_all();
        }
        Ok(())
    }

    /// The merge thread: merge while a run calls for it, then sleep until
    /// a commit makes one due or the index closes. A failed merge refuses
    /// further writes, as a failed commit does.
    fn merge_when_due(&self) {
        loop {
            {
                let mut m = self.merges.lock().unwrap_or_else(|e| e.into_inner());
                while !m.due && !m.stop {
                    m = self.merges_changed.wait(m).unwrap_or_else(|e| e.into_inner());
                }
                if m.stop {
                    m.due = false;
                    self.merges_changed.notify_all();
                    return;
                }
                m.due = false;
                m.running = true;
            }
            let running = Running(self);
            if let Err(e) = self.merge_runs() {
                self.writer.lock().unwrap_or_else(|e| e.into_inner()).poisoned = true;
                self.merge_failed(format!("merging segments: {e}"));
            }
            drop(running);
        }
    }

    fn merge_failed(&self, why: String) {
        self.merge_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
    }

    /// Merge runs until none calls for it (or the index closes). The
    /// merge itself runs without the writer's lock: commits only append
    /// segments after the run, so the run is still there, in place, when
    /// the merged segment replaces it.
    fn merge_runs(&self) -> Result<(), IndexError> {
        loop {
            if self.merges.lock().unwrap_or_else(|e| e.into_inner()).stop {
                return Ok(());
            }
            let (inputs, drops, file) = {
                let mut w = self.lock()?;
                let forgotten = self.forgotten.load(Ordering::Acquire);
                let Some(run) = self.purge_run(&w.parts, forgotten)?.or_else(|| merge_run(&w.parts)) else {
                    return Ok(());
                };
                let inputs = w.parts[run].to_vec();
                let drops = inputs
                    .iter()
                    .map(|p| self.forgotten_docs(p, forgotten))
                    .collect::<Result<Vec<u32>, _>>()?;
                let kept = inputs.iter().zip(&drops).any(|(p, &d)| d < p.segment.docs());
                let file = kept.then(|| w.new_file());
                (inputs, drops, file)
            };
            // Forgotten documents are left out; a run of nothing but them
            // is replaced by nothing.
            let merged = match file {
                None => None,
                Some(file) => {
                    // A damaged input fails the merge naming that input.
                    let mut damage = None;
                    let merged = self.write_segment(file, |out| {
                        let segments: Vec<&Seg> = inputs.iter().map(|p| &p.segment).collect();
                        merge_dropping(&segments, &drops, out).inspect_err(|e| {
                            damage = e
                                .get_ref()
                                .and_then(|e| e.downcast_ref::<MergeDamage>())
                                .and_then(|d| Some(bad_segment(&self.dir, inputs.get(d.part)?, d.error.clone())));
                        })
                    });
                    Some(merged.map_err(|e| damage.unwrap_or(e))?)
                }
            };
            {
                let mut w = self.lock()?;
                let at = w.parts.iter().position(|p| Arc::ptr_eq(p, &inputs[0]));
                let Some(at) = at.filter(|&at| {
                    w.parts
                        .get(at..at + inputs.len())
                        .is_some_and(|run| run.iter().zip(&inputs).all(|(a, b)| Arc::ptr_eq(a, b)))
                }) else {
                    // Only this thread removes segments; this cannot be.
                    return Err(IndexError::Io {
                        path: self.dir.clone(),
                        source: io::Error::other("merged segments vanished from the index"),
                    });
                };
                w.parts.splice(at..at + inputs.len(), merged);
                // The watermark stays the last commit's, with its root.
                let root = *self.root.lock().unwrap_or_else(|e| e.into_inner());
                self.publish(&w, self.indexed(), root)?;
            }
            for p in inputs {
                let path = self.dir.join(&p.file);
                self.storage.remove_file(&path).map_err(io_at(&path))?;
            }
        }
    }

    /// The oldest segments to rewrite without their forgotten documents,
    /// if any: those holding nothing but forgotten documents (dropped
    /// without writing anything), and the one the watermark `forgotten`
    /// cuts through if at least [`PURGE_SHARE`] of its documents are
    /// forgotten (rewriting it for fewer would cost more than it frees).
    /// Segments are in ledger order, so these lead.
    fn purge_run(&self, parts: &[Arc<Part>], forgotten: u64) -> Result<Option<std::ops::Range<usize>>, IndexError> {
        let gone = parts.iter().take_while(|p| p.last < forgotten).count();
        let mut end = gone;
        if let Some(cut) = parts.get(gone).filter(|p| p.first < forgotten) {
            let docs = u64::from(cut.segment.docs());
            if u64::from(self.forgotten_docs(cut, forgotten)?) * PURGE_SHARE >= docs {
                end += 1;
            }
        }
        Ok((end > 0).then_some(0..end))
    }

    /// How many of `part`'s documents, its first ones, are below the
    /// watermark `forgotten`.
    fn forgotten_docs(&self, part: &Part, forgotten: u64) -> Result<u32, IndexError> {
        if part.first >= forgotten {
            return Ok(0);
        }
        if part.last < forgotten {
            return Ok(part.segment.docs());
        }
        first_at_or_after(&part.segment, forgotten).map_err(|e| bad_segment(&self.dir, part, e))
    }

    /// Write the manifest of `w.parts` at watermark `n`, then show them to
    /// searches.
    fn publish(&self, w: &Writer, n: u64, root: Option<[u8; 32]>) -> Result<(), IndexError> {
        let forgotten = self.forgotten.load(Ordering::Acquire);
        write_manifest(
            &*self.storage,
            &self.dir,
            &manifest_text(n, root.as_ref(), forgotten, &w.parts),
        )?;
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(w.parts.clone());
        Ok(())
    }

    /// Write the building segment, if it holds anything, to a new file.
    fn flush(&self, w: &mut Writer) -> Result<(), IndexError> {
        if w.building.segment.docs() == 0 {
            return Ok(());
        }
        let building = std::mem::take(&mut w.building);
        let file = w.new_file();
        let part = self.write_segment(file, |out| building.segment.finish(out));
        match part {
            Ok(part) => {
                w.flushed.push(part);
                Ok(())
            }
            Err(e) => {
                w.poisoned = true;
                Err(e)
            }
        }
    }

    /// Write a new segment file with `write`, sync it and open it.
    fn write_segment(
        &self,
        file: String,
        write: impl FnOnce(BufWriter<SegmentFile>) -> io::Result<BufWriter<SegmentFile>>,
    ) -> Result<Arc<Part>, IndexError> {
        let path = self.dir.join(&file);
        // Segment names are never reused: one that exists is not ours.
        if self.storage.exists(&path) {
            return Err(io_at(&path)(io::ErrorKind::AlreadyExists.into()));
        }
        let out = self.storage.open(&path, true).map_err(io_at(&path))?;
        let out = SegmentFile { file: out, at: 0 };
        let out = write(BufWriter::with_capacity(1 << 20, out)).map_err(io_at(&path))?;
        let out = out.into_inner().map_err(|e| io_at(&path)(e.into_error()))?;
        out.file.sync_data().map_err(io_at(&path))?;
        // The file's name too, before any manifest names it.
        sync_dir(&*self.storage, &self.dir)?;
        Ok(Arc::new(Part::open(&*self.storage, &self.dir, &file, out.at)?))
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Part>>> {
        Arc::clone(&self.snapshot.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Writer>, IndexError> {
        if self.lock.is_none() {
            return Err(IndexError::ReadOnly(self.dir.clone()));
        }
        let w = self.writer.lock().map_err(|_| IndexError::Poisoned)?;
        if w.poisoned {
            return Err(IndexError::Poisoned);
        }
        Ok(w)
    }
}

/// A new segment file written front to back.
struct SegmentFile {
    file: Arc<dyn StorageFile>,
    /// Bytes written so far.
    at: u64,
}

impl Write for SegmentFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(buf, self.at)?;
        self.at += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The manifest's text, or `None` where there is none yet; a directory
/// holding a tantivy index (schema version 2 and before) is refused.
fn read_manifest(storage: &dyn Storage, dir: &Path) -> Result<Option<String>, IndexError> {
    let path = dir.join(MANIFEST);
    match storage.read(&path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| IndexError::BadManifest {
            path,
            line: 1,
            reason: "not UTF-8 text".into(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if storage.exists(&dir.join(TANTIVY_META)) {
                return Err(IndexError::SchemaMismatch { dir: dir.to_path_buf() });
            }
            Ok(None)
        }
        Err(e) => Err(io_at(&path)(e)),
    }
}

/// Marks the merge thread's work done when dropped, also when a merge
/// panics: the index then refuses writes and the thread is gone, so that
/// neither a writer nor [`EventIndex::wait_for_merges`] waits on it.
struct Running<'a>(&'a Store);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let store = self.0;
        let panicked = std::thread::panicking();
        // The writer's lock before the merge state's, never while holding
        // it: a commit takes them in that order.
        if panicked {
            store.writer.lock().unwrap_or_else(|e| e.into_inner()).poisoned = true;
            store.merge_failed("a merge of segments panicked".into());
        }
        let mut m = store.merges.lock().unwrap_or_else(|e| e.into_inner());
        m.running = false;
        if panicked {
            m.due = false;
            m.stop = true;
        }
        store.merges_changed.notify_all();
    }
}

impl Drop for EventIndex {
    /// Stop the merge thread (after the merge it is running, if any), so
    /// that nothing writes to the directory once the index is dropped.
    fn drop(&mut self) {
        self.store.merges.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.store.merges_changed.notify_all();
        if let Some(merger) = self.merger.take() {
            let _ = merger.join();
        }
    }
}
