//! System-log events: the JSON text of what the trail records about
//! itself (reads, key and configuration changes), bounded to the event
//! schema, and the drain that moves the outbox into the system log.

use serde_json::{json, Value};

use sealtrail_trail::{Trail, TrailError};

use crate::db::{hex, ApiKey, Meta, MetaError};

/// Strings in a system record's `details` longer than this many bytes are
/// shortened to [`RECORD_PREFIX_BYTES`]: a few such strings together stay
/// far below the schema's `details` limit.
pub const RECORD_STRING_BYTES: usize = 1024;
/// The prefix kept of a shortened string.
pub const RECORD_PREFIX_BYTES: usize = 256;

/// `details` that fit the event schema whatever the request: each string
/// longer than [`RECORD_STRING_BYTES`] at key `k` becomes its first
/// [`RECORD_PREFIX_BYTES`] (cut at a character boundary), with its length
/// in `k_bytes` and the SHA-256 of the whole value, hex, in `k_sha256`,
/// so that anyone holding the value can show it is the one recorded. Should
/// the result still exceed the limit, only its length and hash are kept.
pub fn bounded_details(details: Value) -> Value {
    let bounded = shorten(details);
    let text = bounded.to_string();
    if text.len() <= sealtrail_event::limits::MAX_DETAILS_BYTES / 2 {
        return bounded;
    }
    json!({"truncated": true, "bytes": text.len(), "sha256": sha256_hex(text.as_bytes())})
}

fn shorten(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (key, v) in map {
                match v {
                    Value::String(s) if s.len() > RECORD_STRING_BYTES => {
                        out.insert(format!("{key}_bytes"), json!(s.len()));
                        out.insert(format!("{key}_sha256"), json!(sha256_hex(s.as_bytes())));
                        out.insert(key, json!(prefix(&s)));
                    }
                    other => {
                        out.insert(key, shorten(other));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) if s.len() > RECORD_STRING_BYTES => {
                        json!({"prefix": prefix(&s), "bytes": s.len(), "sha256": sha256_hex(s.as_bytes())})
                    }
                    other => shorten(other),
                })
                .collect(),
        ),
        other => other,
    }
}

fn prefix(s: &str) -> &str {
    let mut end = RECORD_PREFIX_BYTES.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// The JSON text of a system-log event.
pub fn system_event(actor: Value, action: &str, log: &str, details: Value) -> String {
    json!({
        "action": action,
        "actor": actor,
        "targets": [{"type": "log", "id": log}],
        "source": {"service": "sealtrail"},
        "outcome": "success",
        "details": details,
    })
    .to_string()
}

/// The event recording a key change, queued with the change itself.
pub fn key_event(actor: Value, action: &str, key: &ApiKey) -> String {
    json!({
        "action": action,
        "actor": actor,
        "targets": [if key.name.is_empty() {
            json!({"type": "api_key", "id": key.id})
        } else {
            json!({"type": "api_key", "id": key.id, "name": key.name})
        }],
        "source": {"service": "sealtrail"},
        "outcome": "success",
        "details": {"scope": key.scope.as_str(), "tenant": key.tenant},
    })
    .to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Trail(#[from] TrailError),
}

/// Append queued system events to `system` (the system log's trail), each
/// with idempotency key `outbox-<seq>`, then delete them from the queue.
///
/// A queued text the trail refuses (a bug in whoever queued it) is kept as
/// the `details` of a `system.outbox_refused` event instead, so that it is
/// neither lost nor able to block every later change.
pub fn drain_outbox(meta: &Meta, system: &Trail) -> Result<usize, DrainError> {
    let mut moved = 0;
    loop {
        let rows = meta.outbox(512)?;
        let Some(&(last, _)) = rows.last() else {
            return Ok(moved);
        };
        let mut texts: Vec<String> = rows
            .iter()
            .map(|(seq, text)| with_idempotency_key(text, &format!("outbox-{seq}")))
            .collect();
        // Atomic, so a refusal appends nothing and the queue's order is kept
        // when the refused texts are replaced and the batch sent again.
        let inputs: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
        let done = system.ingest(&inputs, true)?;
        let refused: Vec<(usize, String)> = done
            .items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                sealtrail_trail::Item::Rejected(r) => Some((i, r.to_string())),
                _ => None,
            })
            .collect();
        if !refused.is_empty() {
            for (i, reason) in refused {
                let (seq, text) = &rows[i];
                texts[i] = json!({
                    "action": "system.outbox_refused",
                    "actor": {"id": "sealtrail", "type": "system"},
                    "source": {"service": "sealtrail"},
                    "outcome": "failure",
                    "severity": "error",
                    "idempotency_key": format!("outbox-{seq}"),
                    "error": {"type": "refused", "message": reason},
                    "details": {"queued": text.chars().take(16_000).collect::<String>()},
                })
                .to_string();
            }
            let inputs: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
            system.ingest(&inputs, true)?;
        }
        meta.outbox_done(last)?;
        moved += rows.len();
    }
}

fn with_idempotency_key(text: &str, key: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut m)) => {
            m.insert("idempotency_key".into(), Value::String(key.into()));
            Value::Object(m).to_string()
        }
        // Not an object: the trail will refuse it and name the row.
        _ => text.to_string(),
    }
}

/// Now, as the RFC 3339 text stored in the metadata database.
pub fn now_text() -> String {
    sealtrail_event::Timestamp::now().to_string()
}

/// The JSON text of a system-log event about scheduled job `job`
/// (`job.run`, `job.created` …): the job is the target, `outcome` the
/// event's outcome (`success` or `failure`; a failure is logged at
/// severity `error`).
pub fn job_event(actor: Value, action: &str, job: &str, outcome: &str, details: Value) -> String {
    let mut event = json!({
        "action": action,
        "actor": actor,
        "targets": [{"type": "job", "id": job}],
        "source": {"service": "sealtrail"},
        "outcome": outcome,
        "details": bounded_details(details),
    });
    if outcome == "failure" {
        event["severity"] = json!("error");
    }
    event.to_string()
}
