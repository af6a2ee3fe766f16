//! Ingest of JSON Lines: one event per line, blank lines skipped. Bad lines
//! never cost good ones: each is reported by its line number and reason
//! while the good lines are appended, unless `strict` asks for all or
//! nothing.
//!
//! A pipeline, so that a file is stored as fast as concurrent callers of
//! [`Trail::ingest`] store events:
//!
//! ```text
//! caller's thread: read, cut into chunks of whole lines ─► validation pool: Trail::prepare,
//!       ▲ waits while `max_chunks_in_flight` are          several chunks at once
//!       │ read and not yet stored                                 │
//!       └───────────── applier thread: Trail::ingest_prepared ◄───┘
//!                      in input order (ledger order = line order)
//! ```
//!
//! While the applier waits for one append's `fsync`, the pool validates the
//! next chunks; chunks ready meanwhile are stored together by the next
//! append.

use std::collections::BTreeMap;
use std::fmt;
use std::io::BufRead;
use std::sync::mpsc;
use std::sync::{Condvar, Mutex, MutexGuard};

use sealtrail_event::Rejection;

use crate::{Item, PreparedBatch, Trail, TrailError};

/// One refused line.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    /// 1-based line number in the input.
    pub line: u64,
    pub rejection: Rejection,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rejection {
            // A line is one JSON text, so its position is just the column.
            Rejection::Json(e) => write!(
                f,
                "line {}, column {}: invalid JSON: {}",
                self.line, e.column, e.message
            ),
            Rejection::Invalid(errors) => {
                write!(f, "line {}: ", self.line)?;
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
        }
    }
}

/// What a JSON Lines ingest did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JsonlReport {
    /// Non-blank lines read.
    pub lines: u64,
    pub appended: u64,
    /// Lines whose idempotency key was already stored: nothing appended.
    pub duplicates: u64,
    /// Every refused line, in input order.
    pub rejected: Vec<LineError>,
    /// Ledger indices of the first and last entry appended.
    pub first: Option<u64>,
    pub last: Option<u64>,
    /// Size of the latest checkpoint covering everything stored.
    pub tree_size: u64,
}

/// How [`Trail::ingest_jsonl_with`] reads, validates and stores.
#[derive(Debug, Clone)]
pub struct JsonlOptions {
    /// All or nothing: append no line unless every line is a valid event.
    pub strict: bool,
    /// Most lines in one chunk (the unit of validation and of ordering).
    pub chunk_lines: usize,
    /// Bytes after which a chunk ends even with fewer lines; a longer line
    /// is a chunk of its own.
    pub chunk_bytes: usize,
    /// Most chunks read and not yet stored: reading waits beyond this, so
    /// memory does not grow with the input (except with `strict`, which
    /// must hold every event until the last line is checked).
    pub max_chunks_in_flight: usize,
    /// Threads validating chunks; 0 means rayon's global pool (one thread
    /// per core), the one [`Trail::ingest`] uses.
    pub threads: usize,
}

impl Default for JsonlOptions {
    fn default() -> Self {
        Self {
            strict: false,
            chunk_lines: 1024,
            chunk_bytes: 1 << 20,
            max_chunks_in_flight: 16,
            threads: 0,
        }
    }
}

impl Trail {
    /// Ingest JSON Lines from `input` with the default [`JsonlOptions`].
    /// Without `strict`, good lines are appended as they are read, in input
    /// order, and bad ones reported. With `strict`, the whole input is
    /// checked first and nothing is appended if any line is bad (the events
    /// are held in memory for that).
    pub fn ingest_jsonl(&self, input: impl BufRead, strict: bool) -> Result<JsonlReport, TrailError> {
        self.ingest_jsonl_with(
            input,
            &JsonlOptions {
                strict,
                ..JsonlOptions::default()
            },
        )
    }

    /// [`Trail::ingest_jsonl`] with explicit options. The ledger stores the
    /// lines in input order whatever the number of threads. A read error
    /// ends the ingest with an error after the chunks read before it were
    /// stored (none with `strict`).
    pub fn ingest_jsonl_with(&self, input: impl BufRead, opts: &JsonlOptions) -> Result<JsonlReport, TrailError> {
        let pool = match opts.threads {
            0 => None,
            n => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("sealtrail-jsonl-{i}"))
                    .build()
                    .map_err(|e| TrailError::Io {
                        what: format!("starting {n} validation threads"),
                        source: std::io::Error::other(e),
                    })?,
            ),
        };
        let slots = Slots::new(opts.max_chunks_in_flight.max(1));
        let (done, ready) = mpsc::channel::<Prepared>();
        let (read, applied) = std::thread::scope(|s| -> Result<_, TrailError> {
            let applier = std::thread::Builder::new()
                .name("sealtrail-jsonl-apply".into())
                .spawn_scoped(s, || {
                    let _close = CloseOnDrop(&slots);
                    Applier::new(self, opts.strict, opts.max_chunks_in_flight.max(2) / 2).run(ready, &slots)
                })
                .map_err(|source| TrailError::Io {
                    what: "starting the JSON Lines applier thread".into(),
                    source,
                })?;
            let read = match &pool {
                Some(pool) => pool.in_place_scope(|scope| read_chunks(input, opts, &slots, scope, self, &done)),
                None => rayon::in_place_scope(|scope| read_chunks(input, opts, &slots, scope, self, &done)),
            };
            // Every chunk is sent: the applier ends once it has stored them.
            drop(done);
            Ok((read, applier.join()))
        })?;
        let applied = match applied {
            Ok(applied) => applied?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let lines = read?;
        let mut report = applied.report;
        report.lines = lines;
        if let Some((batch, numbers)) = applied.held {
            // --strict and every line good: all of them in one append.
            let done = self.ingest_prepared(batch, true)?;
            record(&mut report, &numbers, done.items, done.tree_size);
        }
        if report.tree_size == 0 {
            report.tree_size = self.log.size();
        }
        Ok(report)
    }
}

/// One chunk of input lines, validated.
struct Prepared {
    /// Position of the chunk in the input, from 0.
    seq: u64,
    /// Line number of each non-blank line, in order.
    numbers: Vec<u64>,
    batch: Result<PreparedBatch, TrailError>,
}

/// Read `input` into chunks of whole non-blank lines and hand each to the
/// pool for validation, taking a slot first. Returns the non-blank lines
/// read. Stops early, without error, when the applier has closed the slots.
fn read_chunks<'s>(
    mut input: impl BufRead,
    opts: &JsonlOptions,
    slots: &Slots,
    scope: &rayon::Scope<'s>,
    trail: &'s Trail,
    done: &mpsc::Sender<Prepared>,
) -> Result<u64, TrailError> {
    let (mut number, mut lines, mut seq) = (0u64, 0u64, 0u64);
    loop {
        let mut bytes = Vec::with_capacity(opts.chunk_bytes.min(1 << 20));
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let mut numbers = Vec::new();
        let mut end_of_input = false;
        while spans.len() < opts.chunk_lines.max(1) && bytes.len() < opts.chunk_bytes {
            let start = bytes.len();
            let n = input.read_until(b'\n', &mut bytes).map_err(|source| TrailError::Io {
                what: format!("reading input line {}", number + 1),
                source,
            })?;
            if n == 0 {
                end_of_input = true;
                break;
            }
            number += 1;
            let mut end = bytes.len();
            if bytes[end - 1] == b'\n' {
                end -= 1;
            }
            if end > start && bytes[end - 1] == b'\r' {
                end -= 1;
            }
            if bytes[start..end].iter().all(u8::is_ascii_whitespace) {
                bytes.truncate(start);
                continue;
            }
            spans.push((start, end));
            numbers.push(number);
        }
        if !spans.is_empty() {
            if !slots.acquire() {
                return Ok(lines);
            }
            lines += spans.len() as u64;
            let done = done.clone();
            let this = seq;
            scope.spawn(move |_| {
                let texts: Vec<&[u8]> = spans.iter().map(|&(a, b)| &bytes[a..b]).collect();
                let batch = trail.prepare(&texts);
                drop(texts);
                drop(bytes);
                // A closed channel means the applier has stopped; its
                // error is the one reported.
                let _ = done.send(Prepared {
                    seq: this,
                    numbers,
                    batch,
                });
            });
            seq += 1;
        }
        if end_of_input {
            return Ok(lines);
        }
    }
}

/// What the applier leaves: the report so far and, with `strict` and no
/// bad line, every prepared event with its line number.
struct Applied {
    report: JsonlReport,
    held: Option<(PreparedBatch, Vec<u64>)>,
}

/// Stores validated chunks strictly in input order.
struct Applier<'t> {
    trail: &'t Trail,
    strict: bool,
    /// Most chunks stored by one append, so that the others' slots stay
    /// free for validation to go on meanwhile.
    max_group: usize,
    /// Chunks validated ahead of their turn, by position.
    waiting: BTreeMap<u64, Prepared>,
    next: u64,
    report: JsonlReport,
    held: Option<(PreparedBatch, Vec<u64>)>,
}

impl<'t> Applier<'t> {
    fn new(trail: &'t Trail, strict: bool, max_group: usize) -> Applier<'t> {
        Applier {
            trail,
            strict,
            max_group: max_group.max(1),
            waiting: BTreeMap::new(),
            next: 0,
            report: JsonlReport::default(),
            held: None,
        }
    }

    fn run(mut self, ready: mpsc::Receiver<Prepared>, slots: &Slots) -> Result<Applied, TrailError> {
        loop {
            // Wait for the next chunk in order, taking whatever else is
            // ready meanwhile.
            while !self.waiting.contains_key(&self.next) {
                match ready.recv() {
                    Ok(p) => {
                        self.waiting.insert(p.seq, p);
                    }
                    // The reader is done and every chunk it sent is here.
                    Err(_) => {
                        return Ok(Applied {
                            report: self.report,
                            held: self.held,
                        })
                    }
                }
            }
            while let Ok(p) = ready.try_recv() {
                self.waiting.insert(p.seq, p);
            }
            let mut group = Vec::new();
            while group.len() < self.max_group {
                let Some(p) = self.waiting.remove(&self.next) else {
                    break;
                };
                self.next += 1;
                group.push(p);
            }
            let chunks = group.len();
            if self.strict {
                self.check(group)?;
            } else {
                self.store(group)?;
            }
            slots.release(chunks);
        }
    }

    /// Append a run of consecutive chunks with one ingest.
    fn store(&mut self, group: Vec<Prepared>) -> Result<(), TrailError> {
        let mut numbers = Vec::new();
        let mut all: Option<PreparedBatch> = None;
        for p in group {
            let batch = p.batch?;
            numbers.extend(p.numbers);
            match &mut all {
                Some(all) => all.extend(batch),
                None => all = Some(batch),
            }
        }
        if let Some(all) = all {
            let done = self.trail.ingest_prepared(all, false)?;
            record(&mut self.report, &numbers, done.items, done.tree_size);
        }
        Ok(())
    }

    /// `strict`: hold the chunks while every line so far is good; after
    /// the first bad line, only name the bad ones.
    fn check(&mut self, group: Vec<Prepared>) -> Result<(), TrailError> {
        for p in group {
            let batch = p.batch?;
            if batch.rejected() > 0 {
                self.held = None;
                // Atomic and with a bad input: nothing is appended, and the
                // items say which inputs were refused and why.
                let done = self.trail.ingest_prepared(batch, true)?;
                record(&mut self.report, &p.numbers, done.items, done.tree_size);
            } else if self.report.rejected.is_empty() {
                match &mut self.held {
                    Some((all, numbers)) => {
                        all.extend(batch);
                        numbers.extend(p.numbers);
                    }
                    None => self.held = Some((batch, p.numbers)),
                }
            }
        }
        Ok(())
    }
}

/// Count the items of one ingest against their line numbers.
fn record(report: &mut JsonlReport, numbers: &[u64], items: Vec<Item>, tree_size: u64) {
    if tree_size > 0 {
        report.tree_size = tree_size;
    }
    for (number, item) in numbers.iter().zip(items) {
        match item {
            Item::Stored { duplicate: true, .. } => report.duplicates += 1,
            Item::Stored { index, .. } => {
                report.appended += 1;
                report.first.get_or_insert(index);
                report.last = Some(index);
            }
            Item::Rejected(rejection) => report.rejected.push(LineError {
                line: *number,
                rejection,
            }),
            Item::NotAppended => {}
        }
    }
}

/// Chunks read and not yet stored, at most `max`: the bound on the
/// pipeline's memory. Closed when the applier stops, which stops reading.
struct Slots {
    state: Mutex<SlotState>,
    freed: Condvar,
    max: usize,
}

struct SlotState {
    taken: usize,
    closed: bool,
}

impl Slots {
    fn new(max: usize) -> Slots {
        Slots {
            state: Mutex::new(SlotState {
                taken: 0,
                closed: false,
            }),
            freed: Condvar::new(),
            max,
        }
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for a free slot and take it; false once closed.
    fn acquire(&self) -> bool {
        let mut s = self.lock();
        while s.taken >= self.max && !s.closed {
            s = self.freed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.closed {
            return false;
        }
        s.taken += 1;
        true
    }

    fn release(&self, n: usize) {
        let mut s = self.lock();
        s.taken = s.taken.saturating_sub(n);
        self.freed.notify_all();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.freed.notify_all();
    }
}

/// Closes the slots however the applier ends (an error or a panic), so
/// that reading never waits for it in vain.
struct CloseOnDrop<'a>(&'a Slots);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}
