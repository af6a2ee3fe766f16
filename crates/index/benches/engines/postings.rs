//! Engine (c) of the engines bench: a prototype of a hand-written index for
//! events that arrive in ledger order, to decide on evidence whether one
//! would beat tantivy's write path by enough to be worth writing for real.
//! It is not the product's index and is not used outside this bench.
//!
//! What it exploits: documents arrive in ascending order and are never
//! deleted or updated, and every query is exact terms, a glob over the few
//! action names, a time range and "newest 100". So:
//!
//! - **Indexing** is one hash-table probe per term and one `u64` pushed to
//!   an occurrence log (term id, doc); posting lists come out of a counting
//!   sort at flush, already ascending. No per-term buffers, no documents.
//! - **The term dictionary** is an open-addressing hash table, not a sorted
//!   FST: exact lookups are O(1), and the only enumeration (action globs)
//!   walks the terms of one field, which are few. Nothing is sorted.
//! - **Merging** is concatenation: segments cover disjoint ascending ranges,
//!   so a merged posting list is the inputs' lists one after another with
//!   a doc offset added; no doc-id map, no re-sorting.
//!
//! Each flushed segment is serialised (delta varint postings, dictionary,
//! columns), written to its own file and `fdatasync`ed, as a commit must.
//! Queries run on the in-memory form of the same data (a mapped file would
//! hold the same bytes); only the write path is the subject here.

use std::fs::File;
use std::hash::BuildHasher;
use std::io::Write;
use std::path::{Path, PathBuf};

use foldhash::fast::FixedState;
use hashbrown::HashTable;
use sealtrail_event::{Event, Severity};

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

/// Segments of about the same size merged at once (tantivy's policy in
/// this crate uses 16 too).
const MERGE_FACTOR: usize = 16;

fn hasher() -> FixedState {
    FixedState::with_seed(0x5ea1_7a11)
}

/// Terms of one segment: `field byte ++ term bytes`, each with an id.
#[derive(Default)]
struct Terms {
    table: HashTable<u32>,
    hashes: Vec<u64>,
    ends: Vec<u32>,
    bytes: Vec<u8>,
}

impl Terms {
    fn get(&self, key: &[u8]) -> Option<u32> {
        let h = hasher().hash_one(key);
        self.table.find(h, |&id| self.key(id) == key).copied()
    }

    /// The id of `key`, and whether it is new.
    fn intern(&mut self, key: &[u8]) -> (u32, bool) {
        let h = hasher().hash_one(key);
        let (bytes, ends, hashes) = (&self.bytes, &self.ends, &self.hashes);
        let key_of = |id: u32| {
            let start = if id == 0 { 0 } else { ends[id as usize - 1] as usize };
            &bytes[start..ends[id as usize] as usize]
        };
        if let Some(&id) = self.table.find(h, |&id| key_of(id) == key) {
            return (id, false);
        }
        let id = self.ends.len() as u32;
        self.table.insert_unique(h, id, |&id| hashes[id as usize]);
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len() as u32);
        self.hashes.push(h);
        (id, true)
    }

    fn key(&self, id: u32) -> &[u8] {
        let start = if id == 0 {
            0
        } else {
            self.ends[id as usize - 1] as usize
        };
        &self.bytes[start..self.ends[id as usize] as usize]
    }

    fn len(&self) -> usize {
        self.ends.len()
    }
}

/// Per-document values queries filter and answer with.
#[derive(Default)]
struct Columns {
    ledger: Vec<u64>,
    occurred: Vec<i64>,
    /// Term id of the action in the segment's dictionary.
    action: Vec<u32>,
}

impl Columns {
    fn len(&self) -> usize {
        self.ledger.len()
    }
}

/// The segment being filled.
#[derive(Default)]
struct Building {
    terms: Terms,
    last_doc: Vec<u32>,
    counts: Vec<u32>,
    /// `term id << 32 | doc`, in arrival order.
    occurrences: Vec<u64>,
    columns: Columns,
    key: Vec<u8>,
    word: String,
}

impl Building {
    fn subscribe(&mut self, field: u8, term: &[u8], doc: u32) -> u32 {
        self.key.clear();
        self.key.push(field);
        self.key.extend_from_slice(term);
        let (id, new) = self.terms.intern(&self.key);
        if new {
            self.last_doc.push(u32::MAX);
            self.counts.push(0);
        }
        if self.last_doc[id as usize] != doc {
            self.last_doc[id as usize] = doc;
            self.counts[id as usize] += 1;
            self.occurrences.push(u64::from(id) << 32 | u64::from(doc));
        }
        id
    }

    /// Words as the product's analyzer cuts them: runs of alphanumerics,
    /// lowercased.
    fn words(&mut self, text: &str, doc: u32) {
        for w in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            if w.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
                self.subscribe(TEXT, w.as_bytes(), doc);
            } else {
                let mut word = std::mem::take(&mut self.word);
                word.clear();
                word.extend(w.chars().flat_map(char::to_lowercase));
                self.subscribe(TEXT, word.as_bytes(), doc);
                self.word = word;
            }
        }
    }

    fn value_words(&mut self, v: &serde_json::Value, doc: u32) {
        match v {
            serde_json::Value::String(s) => self.words(s, doc),
            serde_json::Value::Array(items) => items.iter().for_each(|i| self.value_words(i, doc)),
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    self.words(k, doc);
                    self.value_words(v, doc);
                }
            }
            _ => {}
        }
    }

    fn add(&mut self, index: u64, e: &Event) {
        let doc = self.columns.len() as u32;
        let action = self.subscribe(ACTION, e.action.as_bytes(), doc);
        if let Some(a) = &e.actor {
            self.subscribe(ACTOR, a.id.as_bytes(), doc);
        }
        for t in e.targets.iter().flatten() {
            self.subscribe(TARGET_TYPE, t.kind.as_bytes(), doc);
            let mut term = std::mem::take(&mut self.word);
            term.clear();
            push_target_term(&mut term, &t.kind, &t.id);
            self.subscribe(TARGET, term.as_bytes(), doc);
            self.word = term;
        }
        if let Some(t) = &e.tenant {
            self.subscribe(TENANT, t.as_bytes(), doc);
        }
        if let Some(s) = &e.source {
            if let Some(w) = &s.workflow {
                self.subscribe(WORKFLOW, w.as_bytes(), doc);
            }
            if let Some(s) = &s.service {
                self.subscribe(SERVICE, s.as_bytes(), doc);
            }
        }
        if let Some(c) = &e.context {
            if let Some(ip) = c.ip {
                let mut term = std::mem::take(&mut self.word);
                term.clear();
                use std::fmt::Write as _;
                let _ = write!(term, "{ip}");
                self.subscribe(IP, term.as_bytes(), doc);
                self.word = term;
            }
            if let Some(s) = &c.session_id {
                self.subscribe(SESSION, s.as_bytes(), doc);
            }
        }
        if let Some(k) = &e.idempotency_key {
            self.subscribe(IDEMPOTENCY, k.as_bytes(), doc);
        }
        if e.outcome == Some(sealtrail_event::Outcome::Failure) || e.severity >= Severity::Error || e.error.is_some() {
            self.subscribe(FLAG, b"failure", doc);
        }
        if let Some(m) = &e.message {
            self.words(m, doc);
        }
        if let Some(err) = &e.error {
            if let Some(k) = &err.kind {
                self.words(k, doc);
            }
            if let Some(m) = &err.message {
                self.words(m, doc);
            }
        }
        if let Some(d) = &e.details {
            for (k, v) in d {
                self.words(k, doc);
                self.value_words(v, doc);
            }
        }
        self.columns.ledger.push(index);
        self.columns.occurred.push(e.occurred_at.as_nanosecond() as i64);
        self.columns.action.push(action);
    }

    /// Posting lists by counting sort of the occurrence log.
    fn finish(self) -> Segment {
        let mut starts = Vec::with_capacity(self.counts.len() + 1);
        let mut at = 0u32;
        for c in &self.counts {
            starts.push(at);
            at += c;
        }
        starts.push(at);
        let mut cursor = starts.clone();
        let mut docs = vec![0u32; self.occurrences.len()];
        for o in &self.occurrences {
            let term = (o >> 32) as usize;
            docs[cursor[term] as usize] = *o as u32;
            cursor[term] += 1;
        }
        Segment::encode(self.terms, &starts, &docs, self.columns)
    }
}

fn push_target_term(term: &mut String, kind: &str, id: &str) {
    use std::fmt::Write as _;
    let _ = write!(term, "{}:{kind}{id}", kind.len());
}

/// An immutable segment: delta-varint posting lists, one after another in
/// term-id order, and where each starts.
struct Segment {
    terms: Terms,
    /// Byte offset of each term's list in `postings`, and one past the end.
    offsets: Vec<u32>,
    counts: Vec<u32>,
    postings: Vec<u8>,
    columns: Columns,
    /// Least and greatest `occurred`, to skip segments outside a range.
    span: (i64, i64),
}

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], at: &mut usize) -> u32 {
    let mut v = 0u32;
    let mut shift = 0;
    loop {
        let b = bytes[*at];
        *at += 1;
        v |= u32::from(b & 0x7f) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

impl Segment {
    fn encode(terms: Terms, starts: &[u32], docs: &[u32], columns: Columns) -> Segment {
        let n = terms.len();
        let mut postings = Vec::with_capacity(docs.len() * 2);
        let mut offsets = Vec::with_capacity(n + 1);
        let mut counts = Vec::with_capacity(n);
        for t in 0..n {
            offsets.push(postings.len() as u32);
            let list = &docs[starts[t] as usize..starts[t + 1] as usize];
            counts.push(list.len() as u32);
            let mut prev = 0u32;
            for (i, &d) in list.iter().enumerate() {
                put_varint(&mut postings, if i == 0 { d } else { d - prev });
                prev = d;
            }
        }
        offsets.push(postings.len() as u32);
        let span = columns
            .occurred
            .iter()
            .fold((i64::MAX, i64::MIN), |(a, b), &t| (a.min(t), b.max(t)));
        Segment {
            terms,
            offsets,
            counts,
            postings,
            columns,
            span,
        }
    }

    fn docs(&self, term: u32, out: &mut Vec<u32>) {
        let (mut at, end) = (
            self.offsets[term as usize] as usize,
            self.offsets[term as usize + 1] as usize,
        );
        let mut doc = 0u32;
        let mut first = true;
        while at < end {
            let v = get_varint(&self.postings, &mut at);
            doc = if first { v } else { doc + v };
            first = false;
            out.push(doc);
        }
    }

    /// The serialised form: a header of section lengths, then the term
    /// bytes, term ends, dictionary slots, posting offsets, postings and
    /// columns, all little-endian.
    fn write(&self, path: &Path) {
        let mut out = Vec::with_capacity(self.postings.len() * 2 + self.terms.bytes.len() + self.columns.len() * 20);
        let slots = (self.terms.len() * 2).next_power_of_two();
        let mut table = vec![0u32; slots];
        for (id, h) in self.terms.hashes.iter().enumerate() {
            let mut s = *h as usize & (slots - 1);
            while table[s] != 0 {
                s = (s + 1) & (slots - 1);
            }
            table[s] = id as u32 + 1;
        }
        for len in [
            self.terms.bytes.len(),
            self.terms.len(),
            slots,
            self.postings.len(),
            self.columns.len(),
        ] {
            out.extend_from_slice(&(len as u64).to_le_bytes());
        }
        out.extend_from_slice(&self.terms.bytes);
        let words = |out: &mut Vec<u8>, v: &[u32]| v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        words(&mut out, &self.terms.ends);
        words(&mut out, &table);
        words(&mut out, &self.offsets);
        out.extend_from_slice(&self.postings);
        self.columns
            .ledger
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        self.columns
            .occurred
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        words(&mut out, &self.columns.action);
        let mut f = File::create(path).unwrap();
        f.write_all(&out).unwrap();
        f.sync_data().unwrap();
    }

    /// Concatenate `parts` (ascending, disjoint): one dictionary of every
    /// term, each list the parts' lists in order with doc offsets added.
    fn merge<'a>(parts: impl Iterator<Item = &'a Segment> + Clone) -> Segment {
        let mut terms = Terms::default();
        let mut remap: Vec<Vec<u32>> = Vec::new();
        let mut counts: Vec<u32> = Vec::new();
        for p in parts.clone() {
            let mut map = Vec::with_capacity(p.terms.len());
            for id in 0..p.terms.len() as u32 {
                let (new_id, new) = terms.intern(p.terms.key(id));
                if new {
                    counts.push(0);
                }
                counts[new_id as usize] += p.counts[id as usize];
                map.push(new_id);
            }
            remap.push(map);
        }
        let mut starts = Vec::with_capacity(counts.len() + 1);
        let mut at = 0u32;
        for c in &counts {
            starts.push(at);
            at += c;
        }
        starts.push(at);
        let mut cursor = starts.clone();
        let mut docs = vec![0u32; at as usize];
        let mut columns = Columns::default();
        let mut list = Vec::new();
        for (p, map) in parts.zip(&remap) {
            let base = columns.len() as u32;
            for (id, &new_id) in map.iter().enumerate() {
                list.clear();
                p.docs(id as u32, &mut list);
                let c = &mut cursor[new_id as usize];
                for d in &list {
                    docs[*c as usize] = d + base;
                    *c += 1;
                }
            }
            columns.ledger.extend_from_slice(&p.columns.ledger);
            columns.occurred.extend_from_slice(&p.columns.occurred);
            columns.action.extend(p.columns.action.iter().map(|a| map[*a as usize]));
        }
        Segment::encode(terms, &starts, &docs, columns)
    }
}

/// The prototype index: segments oldest first, a log merge policy.
pub struct LedgerPostings {
    dir: PathBuf,
    building: Building,
    /// With the file each is persisted in.
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

    /// Flush the building segment to disk, then merge the newest
    /// `MERGE_FACTOR` segments while they are of about the same size.
    pub fn commit(&mut self) {
        if self.building.columns.len() == 0 {
            return;
        }
        let segment = std::mem::take(&mut self.building).finish();
        let path = self.persist(&segment);
        self.segments.push((segment, path));
        loop {
            let n = self.segments.len();
            if n < MERGE_FACTOR {
                break;
            }
            let tail = &self.segments[n - MERGE_FACTOR..];
            let (small, large) = tail.iter().fold((usize::MAX, 0), |(s, l), (x, _)| {
                (s.min(x.columns.len()), l.max(x.columns.len()))
            });
            // Same level: within a factor of MERGE_FACTOR of each other.
            if large > small * MERGE_FACTOR {
                break;
            }
            let parts: Vec<(Segment, PathBuf)> = self.segments.drain(n - MERGE_FACTOR..).collect();
            let merged = Segment::merge(parts.iter().map(|(s, _)| s));
            let path = self.persist(&merged);
            for (_, p) in parts {
                std::fs::remove_file(p).unwrap();
            }
            self.segments.push((merged, path));
        }
    }

    fn persist(&mut self, s: &Segment) -> PathBuf {
        self.written += 1;
        let path = self.dir.join(format!("{:06}.seg", self.written));
        s.write(&path);
        path
    }

    /// Newest `limit` ledger indexes holding `field:term`, among events
    /// with `occurred` in `[since, until)` when given.
    fn newest(&self, key: &[u8], range: Option<(i64, i64)>, limit: usize) -> Vec<u64> {
        let mut out = Vec::new();
        let mut docs = Vec::new();
        for (s, _) in self.segments.iter().rev() {
            let Some(id) = s.terms.get(key) else { continue };
            docs.clear();
            s.docs(id, &mut docs);
            for &d in docs.iter().rev() {
                let t = s.columns.occurred[d as usize];
                if range.is_none_or(|(a, b)| a <= t && t < b) {
                    out.push(s.columns.ledger[d as usize]);
                    if out.len() == limit {
                        return out;
                    }
                }
            }
        }
        out
    }

    pub fn actor(&self, id: &str) -> Vec<u64> {
        self.newest(&[&[ACTOR], id.as_bytes()].concat(), None, 100)
    }

    pub fn target(&self, kind: &str, id: &str) -> Vec<u64> {
        let mut term = String::new();
        push_target_term(&mut term, kind, id);
        self.newest(&[&[TARGET], term.as_bytes()].concat(), None, 100)
    }

    pub fn word(&self, word: &str) -> Vec<u64> {
        self.newest(&[&[TEXT], word.as_bytes()].concat(), None, 100)
    }

    /// Actions matching a glob of literal text and `*`, occurred in
    /// `[since, until)`: the matching action ids of each segment, then its
    /// action and time columns from the newest document down.
    pub fn actions_between(&self, glob: &str, since: i64, until: i64) -> Vec<u64> {
        let mut out = Vec::new();
        for (s, _) in self.segments.iter().rev() {
            if s.span.1 < since || s.span.0 >= until {
                continue;
            }
            let matching: Vec<bool> = (0..s.terms.len() as u32)
                .map(|id| {
                    let k = s.terms.key(id);
                    k[0] == ACTION && glob_match(glob.as_bytes(), &k[1..])
                })
                .collect();
            for d in (0..s.columns.len()).rev() {
                let t = s.columns.occurred[d];
                if since <= t && t < until && matching[s.columns.action[d] as usize] {
                    out.push(s.columns.ledger[d]);
                    if out.len() == 100 {
                        return out;
                    }
                }
            }
        }
        out
    }
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    match p.iter().position(|&c| c == b'*') {
        None => p == s,
        Some(star) => {
            if !s.starts_with(&p[..star]) {
                return false;
            }
            let rest = &p[star + 1..];
            (star..=s.len()).any(|i| glob_match(rest, &s[i..]))
        }
    }
}
