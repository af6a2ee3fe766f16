//! Hand-made events with awkward values, shared by the format tests.
#![allow(clippy::unwrap_used, dead_code)]

use sealtrail_event::{accept_json, canonical_entry, event_id, Event, Timestamp};

/// An event with its ledger index and stored entry.
pub struct Stored {
    pub index: u64,
    pub event: Event,
    pub entry: Vec<u8>,
}

impl Stored {
    pub fn row(&self) -> sealtrail_export::Row<'_> {
        sealtrail_export::Row {
            index: self.index,
            event: &self.event,
            entry: &self.entry,
        }
    }
}

pub fn received_at() -> Timestamp {
    "2024-05-01T12:30:01.5Z".parse().unwrap()
}

pub fn stored(index: u64, json: &str) -> Stored {
    let random = [index as u8; 10];
    let event = accept_json(json.as_bytes(), received_at(), event_id(received_at(), random).unwrap()).unwrap();
    let entry = canonical_entry(&event).unwrap();
    Stored { index, event, entry }
}

/// Every field set, with quotes, commas, newlines, separators inside list
/// items, non-ASCII text and formula-like values.
pub const FULL: &str = r#"{
  "occurred_at": "2024-05-01T14:29:58.120+02:00",
  "tenant": "-acme",
  "action": "invoice.deleted",
  "category": "billing, \"core\"",
  "crud": "d",
  "outcome": "failure",
  "severity": "warning",
  "actor": {"id": "user-42", "type": "user", "name": "O'Brien, \"Ada\"", "email": "@ada@example.com",
            "roles": ["billing;admin", "a\\b"], "impersonator": {"id": "support-7", "type": "user"}},
  "targets": [{"type": "invoice", "id": "INV:2024;0042", "name": "Invoice 42"}, {"type": "a:b", "id": "x"}],
  "source": {"service": "billing-api", "version": "1.2.3", "environment": "production", "host": "h1.example", "workflow": "close-month"},
  "context": {"ip": "2001:DB8:0:0:0:0:0:17", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "session_id": "sess-1",
              "request_id": "req-7f3a", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"},
  "changes": {"before": {"status": "open"}, "after": {"status": "deleted"}, "fields": ["status"]},
  "message": "Line one\r\nline two, with \"quotes\" and €, 日本語, 😀",
  "duration_ms": 12.50,
  "error": {"type": "=HYPERLINK(\"http://evil.example\",\"x\")", "message": "+cmd|' /C calc'!A0", "stack": "at x\n  at y"},
  "details": {"z": 1, "a": [true, null, "x\ny"], "é": {"n": -0.5}},
  "idempotency_key": "k-1"
}"#;

/// Only the required field.
pub const MINIMAL: &str = r#"{"action": "user.login"}"#;

/// Values that start like formulas or quotes, Excel escape look-alikes, a
/// time before Excel's calendar, empty collections, a bidi override.
pub const AWKWARD: &str = r#"{
  "occurred_at": "1850-01-01T00:00:00Z",
  "tenant": "\tTabbed",
  "action": "a.b",
  "category": "_x0041_ literal",
  "actor": {"id": "=1+1"},
  "targets": [],
  "source": {"service": "＝cmd"},
  "context": {"ip": "10.0.0.1"},
  "message": "'already quoted \u202Eevil\u001b[31m",
  "duration_ms": 0.001,
  "details": {},
  "idempotency_key": "\rkey"
}"#;

pub fn sample() -> Vec<Stored> {
    vec![
        stored(7, FULL),
        stored(8, MINIMAL),
        stored(9_007_199_254_740_991, AWKWARD),
    ]
}

/// The expected flat cells of each sample event, by column, before any
/// format-specific escaping; columns not listed are empty.
pub fn expected_cells(s: &Stored) -> Vec<(&'static str, String)> {
    let common = |index: u64, occurred: &str| {
        vec![
            ("index", index.to_string()),
            ("id", s.event.id.to_string()),
            ("occurred_at", occurred.to_owned()),
            ("received_at", "2024-05-01T12:30:01.5Z".to_owned()),
        ]
    };
    let owned = |pairs: &[(&'static str, &str)]| pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect::<Vec<_>>();
    match s.index {
        7 => {
            let mut cells = common(7, "2024-05-01T12:29:58.12Z");
            cells.extend(owned(&[
                ("tenant", "-acme"),
                ("action", "invoice.deleted"),
                ("category", "billing, \"core\""),
                ("crud", "d"),
                ("outcome", "failure"),
                ("severity", "warning"),
                ("actor_id", "user-42"),
                ("actor_type", "user"),
                ("actor_name", "O'Brien, \"Ada\""),
                ("actor_email", "@ada@example.com"),
                ("actor_roles", r"billing\;admin;a\\b"),
                ("impersonator_id", "support-7"),
                ("targets", r"invoice:INV:2024\;0042;a\:b:x"),
                ("source_service", "billing-api"),
                ("source_version", "1.2.3"),
                ("source_environment", "production"),
                ("source_host", "h1.example"),
                ("source_workflow", "close-month"),
                ("context_ip", "2001:db8::17"),
                ("context_user_agent", "Mozilla/5.0 (X11; Linux x86_64)"),
                ("context_session_id", "sess-1"),
                ("context_request_id", "req-7f3a"),
                ("context_trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
                ("message", "Line one\r\nline two, with \"quotes\" and €, 日本語, 😀"),
                ("duration_ms", "12.5"),
                ("error_type", "=HYPERLINK(\"http://evil.example\",\"x\")"),
                ("error_message", "+cmd|' /C calc'!A0"),
                (
                    "changes",
                    r#"{"after":{"status":"deleted"},"before":{"status":"open"},"fields":["status"]}"#,
                ),
                ("details", r#"{"a":[true,null,"x\ny"],"z":1,"é":{"n":-0.5}}"#),
                ("idempotency_key", "k-1"),
            ]));
            cells
        }
        8 => {
            let mut cells = common(8, "2024-05-01T12:30:01.5Z");
            cells.extend(owned(&[("action", "user.login"), ("severity", "info")]));
            cells
        }
        _ => {
            let mut cells = common(s.index, "1850-01-01T00:00:00Z");
            cells.extend(owned(&[
                ("tenant", "\tTabbed"),
                ("action", "a.b"),
                ("category", "_x0041_ literal"),
                ("severity", "info"),
                ("actor_id", "=1+1"),
                ("source_service", "＝cmd"),
                ("context_ip", "10.0.0.1"),
                ("message", "'already quoted \u{202E}evil\u{1b}[31m"),
                ("duration_ms", "0.001"),
                ("details", "{}"),
                ("idempotency_key", "\rkey"),
            ]));
            cells
        }
    }
}
