//! Engine (c) of the engines bench: Sealtrail's query index on
//! `sealtrail-segment` (hand-written segments for documents that arrive in
//! ledger order), to decide on evidence whether it beats tantivy's write
//! path by enough to replace it. Not yet the product's index: this file
//! maps events to terms and columns, commits and merges as the index
//! would, and answers the bench's query kinds.
//!
//! What it exploits: documents arrive in ascending order and are never
//! deleted or updated, and every query is exact terms, a glob over the few
//! action names, a time range and "newest 100". So indexing is one
//! hash-table probe per term; posting lists come out of a counting sort at
//! commit, already ascending; and merging segments that cover consecutive
//! ranges is concatenation, with no map from old to new documents.
//!
//! Each commit writes its segment to a file and `fdatasync`s it, and each
//! merge writes the merged segment and deletes its inputs, as the index
//! must. Queries run on the segments' bytes kept in memory (a mapped file
//! would hold the same bytes).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use sealtrail_event::glob::glob_match;
use sealtrail_event::{Event, Severity};
use sealtrail_segment::{merge, ColumnKind, Segment, SegmentBuilder};

const ACTION: u8 = 0;
const ACTOR: u8 = 1;
const TARGET_TYPE: u8 = 2;
const TARGET: u8 = 3;
const TENANT: u8 = 4;
const WORKFLOW: u8 = 5;
const SERVICE: u8 = 6;
const SESSION: u8 = 7;
const IP: u8 = 8;
const IDEMPOTENCY: u8 = 9;
const FLAG: u8 = 10;
const TEXT: u8 = 11;

/// Columns: ledger index, `occurred_at` (nanoseconds, order-preserving
/// as unsigned), action.
const LEDGER: usize = 0;
const OCCURRED: usize = 1;
const ACTION_COLUMN: usize = 2;
const KINDS: [ColumnKind; 3] = [ColumnKind::Value, ColumnKind::Value, ColumnKind::Term(ACTION)];

/// Segments of about the same size merged at once (tantivy's policy in
/// this crate uses 16 too).
const MERGE_FACTOR: usize = 16;

fn time_value(nanos: i64) -> u64 {
    (nanos as u64) ^ (1 << 63)
}

/// Turns events into documents of the segment being filled.
struct Building {
    segment: SegmentBuilder,
    word: String,
}

impl Default for Building {
    fn default() -> Building {
        Building {
            segment: SegmentBuilder::new(&KINDS),
            word: String::new(),
        }
    }
}

impl Building {
    /// Words as the product's analyzer cuts them: runs of alphanumerics,
    /// lowercased.
    fn words(&mut self, text: &str) {
        for w in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            if w.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
                self.segment.add_term(TEXT, w.as_bytes());
            } else {
                self.word.clear();
                self.word.extend(w.chars().flat_map(char::to_lowercase));
                self.segment.add_term(TEXT, self.word.as_bytes());
            }
        }
    }

    fn value_words(&mut self, v: &serde_json::Value) {
        match v {
            serde_json::Value::String(s) => self.words(s),
            serde_json::Value::Array(items) => items.iter().for_each(|i| self.value_words(i)),
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    self.words(k);
                    self.value_words(v);
                }
            }
            _ => {}
        }
    }

    fn add(&mut self, index: u64, e: &Event) {
        let s = &mut self.segment;
        s.add_doc();
        let action = s.add_term(ACTION, e.action.as_bytes());
        s.set(ACTION_COLUMN, action);
        s.set(LEDGER, index);
        s.set(OCCURRED, time_value(e.occurred_at.as_nanosecond() as i64));
        if let Some(a) = &e.actor {
            s.add_term(ACTOR, a.id.as_bytes());
        }
        for t in e.targets.iter().flatten() {
            s.add_term(TARGET_TYPE, t.kind.as_bytes());
            self.word.clear();
            push_target_term(&mut self.word, &t.kind, &t.id);
            s.add_term(TARGET, self.word.as_bytes());
        }
        if let Some(t) = &e.tenant {
            s.add_term(TENANT, t.as_bytes());
        }
        if let Some(src) = &e.source {
            if let Some(w) = &src.workflow {
                s.add_term(WORKFLOW, w.as_bytes());
            }
            if let Some(v) = &src.service {
                s.add_term(SERVICE, v.as_bytes());
            }
        }
        if let Some(c) = &e.context {
            if let Some(ip) = c.ip {
                use std::fmt::Write as _;
                self.word.clear();
                let _ = write!(self.word, "{ip}");
                s.add_term(IP, self.word.as_bytes());
            }
            if let Some(id) = &c.session_id {
                s.add_term(SESSION, id.as_bytes());
            }
        }
        if let Some(k) = &e.idempotency_key {
            s.add_term(IDEMPOTENCY, k.as_bytes());
        }
        if e.outcome == Some(sealtrail_event::Outcome::Failure) || e.severity >= Severity::Error || e.error.is_some() {
            s.add_term(FLAG, b"failure");
        }
        if let Some(m) = &e.message {
            self.words(m);
        }
        if let Some(err) = &e.error {
            if let Some(k) = &err.kind {
                self.words(k);
            }
            if let Some(m) = &err.message {
                self.words(m);
            }
        }
        if let Some(d) = &e.details {
            for (k, v) in d {
                self.words(k);
                self.value_words(v);
            }
        }
    }
}

fn push_target_term(term: &mut String, kind: &str, id: &str) {
    use std::fmt::Write as _;
    let _ = write!(term, "{}:{kind}{id}", kind.len());
}

/// The index: segments oldest first, each with its file; a log merge
/// policy.
pub struct LedgerPostings {
    dir: PathBuf,
    building: Building,
    segments: Vec<(Segment, PathBuf)>,
    written: usize,
}

impl LedgerPostings {
    pub fn new(dir: &Path) -> LedgerPostings {
        std::fs::create_dir_all(dir).unwrap();
        LedgerPostings {
            dir: dir.to_path_buf(),
            building: Building::default(),
            segments: Vec::new(),
            written: 0,
        }
    }

    pub fn add(&mut self, index: u64, e: &Event) {
        self.building.add(index, e);
    }

    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    /// Write the building segment and sync it, then merge the newest
    /// `MERGE_FACTOR` segments while they are of about the same size.
    pub fn commit(&mut self) {
        if self.building.segment.docs() == 0 {
            return;
        }
        let bytes = std::mem::take(&mut self.building).segment.finish(Vec::new()).unwrap();
        let path = self.persist(&bytes);
        self.segments.push((Segment::open(bytes).unwrap(), path));
        loop {
            let n = self.segments.len();
            if n < MERGE_FACTOR {
                break;
            }
            let tail = &self.segments[n - MERGE_FACTOR..];
            let (small, large) = tail
                .iter()
                .fold((u32::MAX, 0), |(s, l), (x, _)| (s.min(x.docs()), l.max(x.docs())));
            if large > small.saturating_mul(MERGE_FACTOR as u32) {
                break;
            }
            let parts: Vec<(Segment, PathBuf)> = self.segments.drain(n - MERGE_FACTOR..).collect();
            let refs: Vec<&Segment> = parts.iter().map(|(s, _)| s).collect();
            let bytes = merge(&refs, Vec::new()).unwrap();
            let path = self.persist(&bytes);
            for (_, p) in parts {
                std::fs::remove_file(p).unwrap();
            }
            self.segments.push((Segment::open(bytes).unwrap(), path));
        }
    }

    fn persist(&mut self, bytes: &[u8]) -> PathBuf {
        self.written += 1;
        let path = self.dir.join(format!("{:06}.seg", self.written));
        let mut f = File::create(&path).unwrap();
        f.write_all(bytes).unwrap();
        f.sync_data().unwrap();
        path
    }

    /// Newest 100 ledger indexes holding `field:term`, among events with
    /// `occurred` in `[since, until)` when given.
    fn newest(&self, field: u8, term: &[u8], range: Option<(i64, i64)>) -> Vec<u64> {
        let mut out = Vec::new();
        let mut docs = Vec::new();
        for (s, _) in self.segments.iter().rev() {
            let Some(id) = s.find(field, term) else { continue };
            let postings = s.postings(id);
            let (ledger, occurred) = (s.column(LEDGER).unwrap(), s.column(OCCURRED).unwrap());
            for b in (0..postings.blocks()).rev() {
                docs.clear();
                postings.block(b, &mut docs);
                for &d in docs.iter().rev() {
                    let t = occurred.get(d).unwrap();
                    if range.is_none_or(|(a, b)| time_value(a) <= t && t < time_value(b)) {
                        out.push(ledger.get(d).unwrap());
                        if out.len() == 100 {
                            return out;
                        }
                    }
                }
            }
        }
        out
    }

    pub fn actor(&self, id: &str) -> Vec<u64> {
        self.newest(ACTOR, id.as_bytes(), None)
    }

    pub fn target(&self, kind: &str, id: &str) -> Vec<u64> {
        let mut term = String::new();
        push_target_term(&mut term, kind, id);
        self.newest(TARGET, term.as_bytes(), None)
    }

    pub fn word(&self, word: &str) -> Vec<u64> {
        self.newest(TEXT, word.as_bytes(), None)
    }

    /// Actions matching a glob (the product's: `*` and `?`), occurred in
    /// `[since, until)`: the matching action numbers of each segment, then
    /// its columns block by block from the newest, skipping blocks whose
    /// time range misses.
    pub fn actions_between(&self, glob: &str, since: i64, until: i64) -> Vec<u64> {
        let (lo, hi) = (time_value(since), time_value(until));
        let mut out = Vec::new();
        let (mut times, mut actions) = (Vec::new(), Vec::new());
        for (s, _) in self.segments.iter().rev() {
            let terms = s.field_terms(ACTION);
            let matching: Vec<bool> = terms
                .clone()
                .map(|id| std::str::from_utf8(s.term_bytes(id)).is_ok_and(|t| glob_match(glob, t)))
                .collect();
            let (ledger, occurred, action) = (
                s.column(LEDGER).unwrap(),
                s.column(OCCURRED).unwrap(),
                s.column(ACTION_COLUMN).unwrap(),
            );
            for b in (0..occurred.blocks()).rev() {
                let (min, max) = occurred.block_range(b).unwrap();
                if max < lo || min >= hi {
                    continue;
                }
                times.clear();
                actions.clear();
                occurred.block(b, &mut times);
                action.block(b, &mut actions);
                for i in (0..times.len()).rev() {
                    let t = times[i];
                    if lo <= t && t < hi && matching.get(actions[i] as usize).copied().unwrap_or(false) {
                        out.push(ledger.get(b * sealtrail_segment::BLOCK + i as u32).unwrap());
                        if out.len() == 100 {
                            return out;
                        }
                    }
                }
            }
        }
        out
    }
}
