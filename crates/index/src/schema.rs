//! The one mapping from an [`Event`] to a document of a segment: which
//! terms of which field it holds, and its column values.
//!
//! A document holds the ledger index and only what filters and
//! aggregations read, never the event body: events are read back from the
//! ledger. The numbering of fields and columns below is part of the
//! on-disk format (docs/query-index.md); changing anything here changes
//! [`SCHEMA_VERSION`], and an index built with another version is refused
//! on open and rebuilt.

use sealtrail_event::{jcs, Event, Timestamp};
use sealtrail_segment::{ColumnKind, SegmentBuilder};
use serde_json::Value;

use crate::text::{index_text, push_pair, TermSink};

/// Bumped whenever documents, their meaning or the segment format
/// change. Version 2 was the tantivy index; 3 is the first on
/// `sealtrail-segment`; 4 has checksummed segments (`STSEG002`) and
/// normalises text (NFKC, lowercase), with identifiers, word pairs and
/// numbers; 5 leaves out values encrypted for PII protection (docs/pii.md).
pub(crate) const SCHEMA_VERSION: u32 = 5;

/// Whether `s` is a value encrypted for PII protection: the index holds
/// nothing of it (neither clear text, which it never sees, nor the
/// ciphertext, which no query can ask for).
fn sealed(s: &str) -> bool {
    sealtrail_pii::is_sealed_text(s)
}

// Term fields.
pub(crate) const ACTION: u8 = 0;
pub(crate) const ACTOR: u8 = 1;
pub(crate) const TARGET_TYPE: u8 = 2;
/// One term per target, its type and id together ([`push_target_term`]).
pub(crate) const TARGET: u8 = 3;
pub(crate) const TENANT: u8 = 4;
pub(crate) const WORKFLOW: u8 = 5;
pub(crate) const SERVICE: u8 = 6;
pub(crate) const SESSION: u8 = 7;
pub(crate) const IP: u8 = 8;
pub(crate) const IDEMPOTENCY: u8 = 9;
pub(crate) const FLAG: u8 = 10;
/// Words and identifiers of the free text (`crate::text`).
pub(crate) const TEXT: u8 = 11;
/// Each word of the free text with the next word of the same string,
/// for phrases (`crate::text::push_pair`).
pub(crate) const TEXT_PAIR: u8 = 12;

/// The term the `flag` field carries for a failure (see [`crate::Filter::failures`]).
pub(crate) const FAILURE: &[u8] = b"failure";

// Columns.
pub(crate) const LEDGER: usize = 0;
pub(crate) const OCCURRED: usize = 1;
pub(crate) const RECEIVED: usize = 2;
pub(crate) const ACTION_COLUMN: usize = 3;
pub(crate) const ACTOR_COLUMN: usize = 4;
/// [`outcome_code`], or [`NONE`](sealtrail_segment::NONE).
pub(crate) const OUTCOME: usize = 5;
pub(crate) const SEVERITY: usize = 6;
/// The bits of the `f64` `duration_ms`, or [`NONE`](sealtrail_segment::NONE)
/// (a NaN, which validation never lets through).
pub(crate) const DURATION: usize = 7;

pub(crate) const COLUMNS: [ColumnKind; 8] = [
    ColumnKind::Value,
    ColumnKind::Value,
    ColumnKind::Value,
    ColumnKind::Term(ACTION),
    ColumnKind::Term(ACTOR),
    ColumnKind::Value,
    ColumnKind::Value,
    ColumnKind::Value,
];

/// Append the term of one target: type and id together, the type
/// length-prefixed so that no two (type, id) pairs share a term.
pub(crate) fn push_target_term(term: &mut Vec<u8>, kind: &str, id: &str) {
    term.extend_from_slice(kind.len().to_string().as_bytes());
    term.push(b':');
    term.extend_from_slice(kind.as_bytes());
    term.extend_from_slice(id.as_bytes());
}

/// An instant as the time columns hold it: nanoseconds since the Unix
/// epoch, saturated to the span an `i64` holds (years 1678 to 2261), with
/// the sign bit flipped so that unsigned order is time order.
pub(crate) fn time_value(t: Timestamp) -> u64 {
    let n = t.as_nanosecond();
    let n = i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX });
    (n as u64) ^ (1 << 63)
}

/// The inverse of [`time_value`], in nanoseconds.
pub(crate) fn time_nanos(v: u64) -> i64 {
    (v ^ (1 << 63)) as i64
}

pub(crate) fn outcome_code(o: sealtrail_event::Outcome) -> u64 {
    o as u64
}

pub(crate) fn severity_code(s: sealtrail_event::Severity) -> u64 {
    s as u64
}

/// Whether the event counts as a failure for [`crate::Filter::failures`].
pub(crate) fn is_failure(e: &Event) -> bool {
    e.outcome == Some(sealtrail_event::Outcome::Failure)
        || e.severity >= sealtrail_event::Severity::Error
        || e.error.is_some()
}

/// The segment being filled, and scratch buffers reused between documents.
pub(crate) struct Building {
    pub segment: SegmentBuilder,
    term: Vec<u8>,
    text: TextTerms,
}

/// The text terms of the document being added.
#[derive(Default)]
struct TextTerms {
    pair: Vec<u8>,
    scratch: String,
}

impl Default for Building {
    fn default() -> Building {
        Building {
            segment: SegmentBuilder::new(&COLUMNS),
            term: Vec::new(),
            text: TextTerms::default(),
        }
    }
}

impl Building {
    /// Add the document for ledger entry `index` holding `e`; the caller
    /// keeps the segment below [`sealtrail_segment::MAX_DOCS`].
    pub fn add(&mut self, index: u64, e: &Event) {
        let s = &mut self.segment;
        if s.add_doc().is_none() {
            return;
        }
        s.set(LEDGER, index);
        let action = s.add_term(ACTION, e.action.as_bytes());
        s.set(ACTION_COLUMN, action);
        if let Some(actor) = e.actor.as_ref().filter(|a| !sealed(&a.id)) {
            let actor = s.add_term(ACTOR, actor.id.as_bytes());
            s.set(ACTOR_COLUMN, actor);
        }
        // A target id alone is found through its pairs with every known
        // type, so it needs no term of its own.
        for t in e.targets.iter().flatten() {
            s.add_term(TARGET_TYPE, t.kind.as_bytes());
            if sealed(&t.id) {
                continue;
            }
            self.term.clear();
            push_target_term(&mut self.term, &t.kind, &t.id);
            s.add_term(TARGET, &self.term);
        }
        if let Some(tenant) = &e.tenant {
            s.add_term(TENANT, tenant.as_bytes());
        }
        if let Some(source) = &e.source {
            if let Some(w) = &source.workflow {
                s.add_term(WORKFLOW, w.as_bytes());
            }
            if let Some(v) = &source.service {
                s.add_term(SERVICE, v.as_bytes());
            }
        }
        if let Some(context) = &e.context {
            if let Some(ip) = context.ip {
                use std::io::Write as _;
                self.term.clear();
                let _ = write!(self.term, "{ip}");
                s.add_term(IP, &self.term);
            }
            if let Some(id) = context.session_id.as_ref().filter(|id| !sealed(id)) {
                s.add_term(SESSION, id.as_bytes());
            }
        }
        if let Some(k) = &e.idempotency_key {
            s.add_term(IDEMPOTENCY, k.as_bytes());
        }
        if is_failure(e) {
            s.add_term(FLAG, FAILURE);
        }
        s.set(OUTCOME, e.outcome.map_or(sealtrail_segment::NONE, outcome_code));
        s.set(SEVERITY, severity_code(e.severity));
        s.set(OCCURRED, time_value(e.occurred_at));
        s.set(RECEIVED, time_value(e.received_at));
        s.set(DURATION, e.duration_ms.map_or(sealtrail_segment::NONE, f64::to_bits));

        let TextTerms { pair, scratch } = &mut self.text;
        let mut sink = Sink { segment: s, pair };
        let mut number = String::new();
        for_each_text(e, &mut number, |t| index_text(t, scratch, &mut sink));
    }
}

/// Adds the text terms of one string to the current document.
struct Sink<'a> {
    segment: &'a mut SegmentBuilder,
    pair: &'a mut Vec<u8>,
}

impl TermSink for Sink<'_> {
    fn word(&mut self, word: &str) {
        self.segment.add_term(TEXT, word.as_bytes());
    }

    fn pair(&mut self, first: &str, second: &str) {
        self.pair.clear();
        push_pair(self.pair, first, second);
        self.segment.add_term(TEXT_PAIR, self.pair);
    }

    fn identifier(&mut self, identifier: &str) {
        self.segment.add_term(TEXT, identifier.as_bytes());
    }
}

/// Call `f` with each string of `e` that free text searches, one field
/// at a time: `message`, `error.type`, `error.message`, and every key,
/// string and number inside `details` (a number as its stored, RFC 8785
/// text, so that an index rebuilt from the ledger holds the same terms).
/// Encrypted values are left out.
pub(crate) fn for_each_text(e: &Event, number: &mut String, mut f: impl FnMut(&str)) {
    let mut f = |s: &str| {
        if !sealed(s) {
            f(s)
        }
    };
    if let Some(m) = &e.message {
        f(m);
    }
    if let Some(err) = &e.error {
        if let Some(k) = &err.kind {
            f(k);
        }
        if let Some(m) = &err.message {
            f(m);
        }
    }
    if let Some(details) = &e.details {
        for (k, v) in details {
            f(k);
            strings_of(v, number, &mut f);
        }
    }
}

/// Every string, number and object key inside `v`.
fn strings_of(v: &Value, number: &mut String, push: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) => push(s),
        Value::Number(n) => {
            number.clear();
            stored_number(n, number);
            push(number);
        }
        Value::Array(items) => items.iter().for_each(|i| strings_of(i, number, push)),
        Value::Object(map) => {
            for (k, v) in map {
                push(k);
                strings_of(v, number, push);
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

/// `n` as the ledger stores it (RFC 8785): integers up to 2^53 as
/// themselves, anything else as the shortest text of its double.
fn stored_number(n: &serde_json::Number, out: &mut String) {
    use std::fmt::Write as _;
    const EXACT: u64 = 1 << 53;
    match (n.as_u64(), n.as_i64()) {
        (Some(u), _) if u <= EXACT => {
            let _ = write!(out, "{u}");
        }
        (_, Some(i)) if i.unsigned_abs() <= EXACT => {
            let _ = write!(out, "{i}");
        }
        _ => {
            if let Ok(text) = jcs::number_as_f64(n).and_then(jcs::format_f64) {
                out.push_str(&text);
            }
        }
    }
}
