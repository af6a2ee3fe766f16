//! The tantivy schema and the one mapping from an [`Event`] to a document.
//!
//! A document holds the ledger index (fast) and only what filters and
//! aggregations read: exact-match terms without frequencies, positions or
//! norms (nothing is scored), fast columns for sorting and statistics, and
//! one word field for free text. No field is stored: events are read back
//! from the ledger.
//!
//! Changing anything here changes [`SCHEMA_VERSION`]; an index built with
//! another version is refused on open and must be rebuilt.

use sealtrail_event::{Event, Timestamp};
use serde_json::Value;
use tantivy::schema::{Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{LowerCaser, SimpleTokenizer, TextAnalyzer, RAW_TOKENIZER_NAME};
use tantivy::TantivyDocument;

/// Bumped whenever documents or their meaning change.
pub(crate) const SCHEMA_VERSION: u32 = 2;

/// The analyzer of the free-text field: cut at non-alphanumerics, lowercase.
pub(crate) const WORDS: &str = "sealtrail_words";

pub(crate) const LEDGER: &str = "ledger";
pub(crate) const ACTION: &str = "action";
pub(crate) const ACTOR: &str = "actor";
pub(crate) const OUTCOME: &str = "outcome";
pub(crate) const OCCURRED: &str = "occurred";
pub(crate) const RECEIVED: &str = "received";
pub(crate) const DURATION: &str = "duration";

/// The term the `flag` field carries for a failure (see [`crate::Filter::failures`]).
pub(crate) const FAILURE: &str = "failure";

/// Every field, by role.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fields {
    pub ledger: Field,
    pub action: Field,
    pub actor: Field,
    pub target_type: Field,
    /// One term per target, its type and id together ([`target_term`]).
    pub target: Field,
    pub tenant: Field,
    pub workflow: Field,
    pub service: Field,
    pub session: Field,
    pub ip: Field,
    pub idempotency: Field,
    pub flag: Field,
    pub outcome: Field,
    pub severity: Field,
    pub occurred: Field,
    pub received: Field,
    pub duration: Field,
    pub text: Field,
}

pub(crate) fn build() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let keyword = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(RAW_TOKENIZER_NAME)
            .set_index_option(IndexRecordOption::Basic)
            .set_fieldnorms(false),
    );
    let keyword_fast = keyword.clone().set_fast(RAW_TOKENIZER_NAME);
    let words = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(WORDS)
            .set_index_option(IndexRecordOption::Basic)
            .set_fieldnorms(false),
    );
    let fast = NumericOptions::default().set_fast();
    let fields = Fields {
        ledger: b.add_u64_field(LEDGER, fast.clone()),
        action: b.add_text_field(ACTION, keyword_fast.clone()),
        actor: b.add_text_field(ACTOR, keyword_fast),
        target_type: b.add_text_field("target_type", keyword.clone()),
        target: b.add_text_field("target", keyword.clone()),
        tenant: b.add_text_field("tenant", keyword.clone()),
        workflow: b.add_text_field("workflow", keyword.clone()),
        service: b.add_text_field("service", keyword.clone()),
        session: b.add_text_field("session", keyword.clone()),
        ip: b.add_text_field("ip", keyword.clone()),
        idempotency: b.add_text_field("idempotency_key", keyword.clone()),
        flag: b.add_text_field("flag", keyword),
        outcome: b.add_u64_field(OUTCOME, fast.clone()),
        severity: b.add_u64_field("severity", fast.clone()),
        occurred: b.add_i64_field(OCCURRED, fast.clone()),
        received: b.add_i64_field(RECEIVED, fast.clone()),
        duration: b.add_f64_field(DURATION, fast),
        text: b.add_text_field("text", words),
    };
    (b.build(), fields)
}

pub(crate) fn words_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(LowerCaser)
        .build()
}

/// The term of one target: type and id together, the type length-prefixed
/// so that no two (type, id) pairs share a term.
pub(crate) fn target_term(kind: &str, id: &str) -> String {
    let mut term = String::new();
    push_target_term(&mut term, kind, id);
    term
}

fn push_target_term(term: &mut String, kind: &str, id: &str) {
    use std::fmt::Write as _;
    let _ = write!(term, "{}:{kind}{id}", kind.len());
}

/// Nanoseconds since the Unix epoch, saturated to the span an `i64` holds
/// (years 1678 to 2261).
pub(crate) fn nanos(t: Timestamp) -> i64 {
    let n = t.as_nanosecond();
    i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
}

/// Outcome codes in the `outcome` field.
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

/// Scratch buffers reused between documents.
#[derive(Default)]
pub(crate) struct Scratch {
    text: String,
    term: String,
}

/// The document for ledger entry `index` holding `e`.
pub(crate) fn document(f: &Fields, index: u64, e: &Event, scratch: &mut Scratch) -> TantivyDocument {
    use std::fmt::Write as _;
    let mut d = TantivyDocument::new();
    d.add_u64(f.ledger, index);
    d.add_text(f.action, &e.action);
    if let Some(actor) = &e.actor {
        d.add_text(f.actor, &actor.id);
    }
    // A target id alone is found through its pairs with every known type,
    // so it needs no term of its own.
    for t in e.targets.iter().flatten() {
        d.add_text(f.target_type, &t.kind);
        scratch.term.clear();
        push_target_term(&mut scratch.term, &t.kind, &t.id);
        d.add_text(f.target, scratch.term.as_str());
    }
    if let Some(tenant) = &e.tenant {
        d.add_text(f.tenant, tenant);
    }
    if let Some(source) = &e.source {
        if let Some(w) = &source.workflow {
            d.add_text(f.workflow, w);
        }
        if let Some(s) = &source.service {
            d.add_text(f.service, s);
        }
    }
    if let Some(context) = &e.context {
        if let Some(ip) = context.ip {
            scratch.term.clear();
            let _ = write!(scratch.term, "{ip}");
            d.add_text(f.ip, scratch.term.as_str());
        }
        if let Some(s) = &context.session_id {
            d.add_text(f.session, s);
        }
    }
    if let Some(k) = &e.idempotency_key {
        d.add_text(f.idempotency, k);
    }
    if is_failure(e) {
        d.add_text(f.flag, FAILURE);
    }
    if let Some(o) = e.outcome {
        d.add_u64(f.outcome, outcome_code(o));
    }
    d.add_u64(f.severity, severity_code(e.severity));
    d.add_i64(f.occurred, nanos(e.occurred_at));
    d.add_i64(f.received, nanos(e.received_at));
    if let Some(ms) = e.duration_ms {
        d.add_f64(f.duration, ms);
    }

    let text = &mut scratch.text;
    text.clear();
    let mut push = |s: &str| {
        text.push_str(s);
        text.push('\n');
    };
    if let Some(m) = &e.message {
        push(m);
    }
    if let Some(err) = &e.error {
        if let Some(k) = &err.kind {
            push(k);
        }
        if let Some(m) = &err.message {
            push(m);
        }
    }
    if let Some(details) = &e.details {
        for (k, v) in details {
            push(k);
            words_of(v, &mut push);
        }
    }
    if !text.is_empty() {
        d.add_text(f.text, text.as_str());
    }
    d
}

/// Every string and object key inside `v`.
fn words_of(v: &Value, push: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) => push(s),
        Value::Array(items) => items.iter().for_each(|i| words_of(i, push)),
        Value::Object(map) => {
            for (k, v) in map {
                push(k);
                words_of(v, push);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}
