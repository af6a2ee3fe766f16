//! The one mapping from an [`Event`] to a document of a segment: which
//! terms of which field it holds, and its column values.
//!
//! A document holds the ledger index and only what filters and
//! aggregations read, never the event body: events are read back from the
//! ledger. The numbering of fields and columns below is part of the
//! on-disk format (docs/query-index.md); changing anything here changes
//! [`SCHEMA_VERSION`], and an index built with another version is refused
//! on open and rebuilt.

use sealtrail_event::{Event, Timestamp};
use sealtrail_segment::{ColumnKind, SegmentBuilder};
use serde_json::Value;

/// Bumped whenever documents, their meaning or the segment format
/// change. Version 2 was the tantivy index; 3 is the first on
/// `sealtrail-segment`; 4 has checksummed segments (`STSEG002`).
pub(crate) const SCHEMA_VERSION: u32 = 4;

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
pub(crate) const TEXT: u8 = 11;

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

/// Call `f` with each word of `text`: runs of alphanumeric characters,
/// lowercased. Queries cut their text the same way.
pub(crate) fn words(text: &str, scratch: &mut String, mut f: impl FnMut(&[u8])) {
    for w in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        if w.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
            f(w.as_bytes());
        } else {
            scratch.clear();
            scratch.extend(w.chars().flat_map(char::to_lowercase));
            f(scratch.as_bytes());
        }
    }
}

/// The segment being filled, and scratch buffers reused between documents.
pub(crate) struct Building {
    pub segment: SegmentBuilder,
    term: Vec<u8>,
    word: String,
}

impl Default for Building {
    fn default() -> Building {
        Building {
            segment: SegmentBuilder::new(&COLUMNS),
            term: Vec::new(),
            word: String::new(),
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
        if let Some(actor) = &e.actor {
            let actor = s.add_term(ACTOR, actor.id.as_bytes());
            s.set(ACTOR_COLUMN, actor);
        }
        // A target id alone is found through its pairs with every known
        // type, so it needs no term of its own.
        for t in e.targets.iter().flatten() {
            s.add_term(TARGET_TYPE, t.kind.as_bytes());
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
            if let Some(id) = &context.session_id {
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

        let mut text = |t: &str, word: &mut String| {
            words(t, word, |w| {
                s.add_term(TEXT, w);
            })
        };
        if let Some(m) = &e.message {
            text(m, &mut self.word);
        }
        if let Some(err) = &e.error {
            if let Some(k) = &err.kind {
                text(k, &mut self.word);
            }
            if let Some(m) = &err.message {
                text(m, &mut self.word);
            }
        }
        if let Some(details) = &e.details {
            for (k, v) in details {
                text(k, &mut self.word);
                strings_of(v, &mut |t| text(t, &mut self.word));
            }
        }
    }
}

/// Every string and object key inside `v`.
fn strings_of(v: &Value, push: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) => push(s),
        Value::Array(items) => items.iter().for_each(|i| strings_of(i, push)),
        Value::Object(map) => {
            for (k, v) in map {
                push(k);
                strings_of(v, push);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}
