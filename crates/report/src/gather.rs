//! What every kind of report reads alike: the checkpoint, the period as a
//! filter, examples read back from the ledger, counts over several action
//! globs, and the last verification the system log recorded.

use base64::Engine as _;
use sealtrail_event::Timestamp;
use sealtrail_merkle::{open_checkpoint, verify_consistency};
use sealtrail_trail::{Filter, Found, Page, TimeRange, TrailReader};
use serde_json::Value;

use crate::model::{CheckpointRef, Count, Period, Sample, Verification, VerificationRun};
use crate::{ReportError, Request, Sources};

pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn ledger(log: &str) -> impl Fn(sealtrail_ledger::LedgerError) -> ReportError + '_ {
    move |source| ReportError::Ledger {
        log: log.to_string(),
        source,
    }
}

pub(crate) fn trail_err(log: &str) -> impl Fn(sealtrail_trail::TrailError) -> ReportError + '_ {
    move |source| ReportError::Trail {
        log: log.to_string(),
        source,
    }
}

/// The checkpoint the figures of `trail` were computed from.
pub(crate) fn checkpoint(log: &str, trail: &TrailReader) -> Result<CheckpointRef, ReportError> {
    let l = trail.log();
    let (signed, note) = l.checkpoint();
    let size = trail.indexed();
    let root = l.root_at(size).map_err(ledger(log))?;
    Ok(CheckpointRef {
        origin: signed.origin.clone(),
        size,
        root_hash: b64(&root),
        signed_size: signed.size,
        signed_root_hash: b64(&signed.root),
        signature_valid: open_checkpoint(&note, l.verifier()).is_ok(),
        signed_note: String::from_utf8_lossy(&note).into_owned(),
    })
}

pub(crate) fn period(request: &Request) -> Period {
    Period {
        since: request.since.map(|t| t.to_string()),
        until: request.until.map(|t| t.to_string()),
    }
}

/// A filter of `occurred_at` within the request's period.
pub(crate) fn in_period(request: &Request) -> Filter {
    Filter {
        occurred: TimeRange {
            since: request.since,
            until: request.until,
        },
        ..Filter::default()
    }
}

pub(crate) fn counts(pairs: Vec<(String, u64)>, limit: usize) -> Vec<Count> {
    pairs
        .into_iter()
        .take(limit)
        .map(|(value, count)| Count { value, count })
        .collect()
}

pub(crate) fn sample(log: &str, found: &Found) -> Sample {
    let e = &found.event;
    Sample {
        log: log.to_string(),
        index: found.index,
        id: e.id.to_string(),
        occurred_at: e.occurred_at.to_string(),
        action: e.action.clone(),
        actor: e.actor.as_ref().map(|a| a.id.clone()),
        targets: e
            .targets
            .iter()
            .flatten()
            .map(|t| format!("{}:{}", t.kind, t.id))
            .collect(),
        outcome: e.outcome.map(|o| o.as_str().to_string()),
        error_type: e.error.as_ref().and_then(|x| x.kind.clone()),
        error_message: e.error.as_ref().and_then(|x| x.message.clone()),
        message: e.message.clone(),
    }
}

/// The newest `limit` events of `trail` matching `filter`.
pub(crate) fn newest(
    log: &str,
    trail: &TrailReader,
    filter: &Filter,
    limit: usize,
) -> Result<Vec<Sample>, ReportError> {
    let found = trail.query(filter, &Page::newest(limit)).map_err(trail_err(log))?;
    Ok(found.iter().map(|f| sample(log, f)).collect())
}

/// How many events match `filter` with each of `globs` as its action
/// (globs that do not overlap, so the sum counts each event once).
pub(crate) fn count_globs(log: &str, trail: &TrailReader, filter: &Filter, globs: &[&str]) -> Result<u64, ReportError> {
    let mut n = 0;
    for glob in globs {
        let f = Filter {
            action: Some((*glob).to_string()),
            ..filter.clone()
        };
        n += trail.count(&f).map_err(trail_err(log))?;
    }
    Ok(n)
}

/// The last `log.verified` record of `log` in the system log before
/// `until`, and this report's own checks of the signed checkpoint.
pub(crate) fn verification(
    sources: &Sources,
    until: Timestamp,
    checkpoint: &CheckpointRef,
) -> Result<Verification, ReportError> {
    let mut last = None;
    if let Some((name, system)) = sources.system() {
        let filter = Filter {
            action: Some("log.verified".into()),
            target_type: Some("log".into()),
            target_id: Some(sources.log.clone()),
            occurred: TimeRange {
                since: None,
                until: Some(until),
            },
            ..Filter::default()
        };
        let found = system.query(&filter, &Page::newest(1)).map_err(trail_err(name))?;
        last = found.first().map(|f| {
            let details = f.event.details.clone().unwrap_or_default();
            let get = |k: &str| details.get(k).cloned().unwrap_or(Value::Null);
            VerificationRun {
                at: f.event.occurred_at.to_string(),
                result: get("result").as_str().unwrap_or("unknown").to_string(),
                entries: get("entries").as_u64(),
                checkpoint_size: get("checkpoint_size").as_u64(),
                by: f
                    .event
                    .actor
                    .as_ref()
                    .map(|a| a.name.clone().unwrap_or_else(|| a.id.clone())),
            }
        });
    }
    let consistent_with_verified = last
        .as_ref()
        .and_then(|r| r.checkpoint_size)
        .map(|old| consistent(sources, old, checkpoint.signed_size));
    Ok(Verification {
        last,
        signature_valid: checkpoint.signature_valid,
        consistent_with_verified,
    })
}

/// Whether the tree of `old` entries is a prefix of the signed tree of
/// `new`, by a consistency proof built from the stored hashes and checked
/// against the signed root.
fn consistent(sources: &Sources, old: u64, new: u64) -> bool {
    let log = sources.trail.log();
    if old > new {
        return false;
    }
    let (signed, _) = log.checkpoint();
    let check = || -> Result<bool, sealtrail_ledger::LedgerError> {
        let old_root = log.root_at(old)?;
        let proof = log.consistency_proof(old, new)?;
        Ok(verify_consistency(old, new, &old_root, &signed.root, &proof).is_ok())
    };
    check().unwrap_or(false)
}

/// Whole hours from `since` to `until`, the start floored to an hour.
pub(crate) fn hour_floor(t: Timestamp) -> i64 {
    t.as_second().div_euclid(3600) * 3600
}

pub(crate) fn at_second(s: i64) -> String {
    Timestamp::from_second(s).map(|t| t.to_string()).unwrap_or_default()
}
