//! Legal holds and the system-log events of retention. A hold covers the
//! events of one log that match a filter (any of the query filters: a
//! time range of `occurred_at` or `received_at`, an action, an actor, a
//! target, a tenant, free text, …; no condition means the whole log). While
//! a hold is active, retention never prunes an entry it covers, nor any
//! entry after it (pruning removes a prefix of the log). Holds are added
//! and released, never deleted, each with its system-log event in the
//! same transaction.
//!
//! Not here: finding what a hold covers (the query index does, through
//! `sealtrail_trail::retention`), nor pruning.

use std::net::IpAddr;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use sealtrail_event::{Outcome, Severity, Timestamp};
use sealtrail_trail::retention::{HoldScope, RetentionPlan, Stop};
use sealtrail_trail::Filter;

use crate::db::{hex, Meta, MetaError};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS legal_holds (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    log         TEXT NOT NULL,
    filter      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    released_at TEXT,
    released_by TEXT
);
CREATE INDEX IF NOT EXISTS legal_holds_by_log ON legal_holds (log, released_at);
CREATE TABLE IF NOT EXISTS retention_blocks (
    log   TEXT PRIMARY KEY,
    hold  INTEGER NOT NULL,
    entry INTEGER NOT NULL
);
";

/// Longest reason, in bytes.
pub const MAX_HOLD_REASON_BYTES: usize = 1000;
/// Most active holds on one log: each costs one index search per
/// retention run.
pub const MAX_ACTIVE_HOLDS: usize = 1000;

/// A legal hold as stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Hold {
    pub id: i64,
    pub log: String,
    /// What the hold covers: the filter's conditions that are set (`{}`
    /// covers the whole log).
    #[schema(value_type = HoldFilter)]
    pub filter: Value,
    pub reason: String,
    pub created_at: String,
    pub created_by: String,
    pub released_at: Option<String>,
    pub released_by: Option<String>,
}

/// The conditions of a hold's filter as JSON ([`filter_json`],
/// [`filter_from_json`]): every one optional, all of them must match;
/// none covers the whole log. For the API's schema and for reading a
/// request, which [`filter_from_json`] then checks value by value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldFilter {
    /// Action, exact or a glob (`lead.*`, `*.deleted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Actor id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// A target's type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    /// A target's id (of `target_type` when given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(success|failure|unknown)$")]
    pub outcome: Option<String>,
    /// This severity or graver.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(debug|info|notice|warning|error|critical|alert|emergency)$")]
    pub min_severity: Option<String>,
    /// An IPv4 or IPv6 address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// `occurred_at` at or after this RFC 3339 time.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub occurred_since: Option<String>,
    /// `occurred_at` before this RFC 3339 time.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub occurred_until: Option<String>,
    /// `received_at` at or after this RFC 3339 time.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub received_since: Option<String>,
    /// `received_at` before this RFC 3339 time.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub received_until: Option<String>,
    /// Free text, as the `q` of a search.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Failures only: outcome `failure`, severity `error` or graver, or an `error` object.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failures: bool,
}

impl HoldFilter {
    /// The filter it names, or the first condition that is wrong, named
    /// `filter.<field>`.
    pub fn filter(&self) -> Result<Filter, String> {
        let value = serde_json::to_value(self).map_err(|e| format!("filter: {e}"))?;
        filter_from_json(&value)
    }
}

impl Hold {
    /// What the planner needs.
    pub fn scope(&self) -> Result<HoldScope, String> {
        Ok(HoldScope {
            id: self.id,
            filter: filter_from_json(&self.filter).map_err(|e| format!("legal hold {}: {e}", self.id))?,
        })
    }
}

fn time_text(t: Option<Timestamp>) -> Option<String> {
    t.map(|t| t.to_string())
}

/// A filter's conditions as JSON: only the conditions that are set.
pub fn filter_json(f: &Filter) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            m.insert(k.into(), Value::String(v));
        }
    };
    put("action", f.action.clone());
    put("actor", f.actor.clone());
    put("target_type", f.target_type.clone());
    put("target_id", f.target_id.clone());
    put("tenant", f.tenant.clone());
    put("workflow", f.workflow.clone());
    put("service", f.service.clone());
    put("outcome", f.outcome.map(|o| o.as_str().to_string()));
    put("min_severity", f.min_severity.map(|s| s.as_str().to_string()));
    put("ip", f.ip.map(|ip| ip.to_string()));
    put("session", f.session.clone());
    put("occurred_since", time_text(f.occurred.since));
    put("occurred_until", time_text(f.occurred.until));
    put("received_since", time_text(f.received.since));
    put("received_until", time_text(f.received.until));
    put("text", f.text.clone());
    if f.failures {
        m.insert("failures".into(), Value::Bool(true));
    }
    Value::Object(m)
}

/// [`filter_json`] read back; an unknown key or a bad value is refused,
/// naming it.
pub fn filter_from_json(v: &Value) -> Result<Filter, String> {
    let Value::Object(m) = v else {
        return Err("filter: not a JSON object".into());
    };
    let mut f = Filter::default();
    let time = |k: &str, s: &str| -> Result<Timestamp, String> {
        s.parse::<Timestamp>()
            .map_err(|e| format!("filter.{k}: {s:?} is not an RFC 3339 time: {e}"))
    };
    for (k, value) in m {
        if k == "failures" {
            f.failures = value
                .as_bool()
                .ok_or_else(|| "filter.failures: not true or false".to_string())?;
            continue;
        }
        let Some(s) = value.as_str() else {
            return Err(format!("filter.{k}: not a string"));
        };
        let text = Some(s.to_string());
        match k.as_str() {
            "action" => f.action = text,
            "actor" => f.actor = text,
            "target_type" => f.target_type = text,
            "target_id" => f.target_id = text,
            "tenant" => f.tenant = text,
            "workflow" => f.workflow = text,
            "service" => f.service = text,
            "session" => f.session = text,
            "text" => f.text = text,
            "outcome" => {
                f.outcome = Some(Outcome::from_name(s).ok_or_else(|| format!("filter.outcome: {s:?}"))?);
            }
            "min_severity" => {
                f.min_severity = Some(Severity::from_name(s).ok_or_else(|| format!("filter.min_severity: {s:?}"))?);
            }
            "ip" => f.ip = Some(s.parse::<IpAddr>().map_err(|e| format!("filter.ip: {s:?}: {e}"))?),
            "occurred_since" => f.occurred.since = Some(time(k, s)?),
            "occurred_until" => f.occurred.until = Some(time(k, s)?),
            "received_since" => f.received.since = Some(time(k, s)?),
            "received_until" => f.received.until = Some(time(k, s)?),
            other => return Err(format!("filter.{other}: not a filter field")),
        }
    }
    Ok(f)
}

/// Problems with a hold to add, each naming its field.
pub fn hold_problems(filter: &Filter, reason: &str) -> Vec<String> {
    let mut out = Vec::new();
    if reason.trim().is_empty() {
        out.push("reason: empty; say why the events are held (a matter, a case number)".into());
    } else if reason.len() > MAX_HOLD_REASON_BYTES {
        out.push(format!(
            "reason: {} bytes, at most {MAX_HOLD_REASON_BYTES}",
            reason.len()
        ));
    }
    for (name, range) in [("occurred", &filter.occurred), ("received", &filter.received)] {
        if let (Some(since), Some(until)) = (range.since, range.until) {
            if since >= until {
                out.push(format!("{name}: since {since} is not before until {until}"));
            }
        }
    }
    out
}

fn row_hold(r: &rusqlite::Row<'_>) -> rusqlite::Result<Hold> {
    let filter: String = r.get(2)?;
    Ok(Hold {
        id: r.get(0)?,
        log: r.get(1)?,
        // Written by `add_hold` from a JSON value.
        filter: serde_json::from_str(&filter).unwrap_or(Value::Null),
        reason: r.get(3)?,
        created_at: r.get(4)?,
        created_by: r.get(5)?,
        released_at: r.get(6)?,
        released_by: r.get(7)?,
    })
}

const COLUMNS: &str = "id, log, filter, reason, created_at, created_by, released_at, released_by";

fn get_hold(conn: &Connection, id: i64) -> rusqlite::Result<Option<Hold>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM legal_holds WHERE id = ?1"),
        params![id],
        row_hold,
    )
    .optional()
}

/// The system-log event of a hold added or released.
fn hold_event(actor: &Value, action: &str, hold: &Hold) -> String {
    json!({
        "action": action,
        "actor": actor,
        "targets": [{"type": "legal_hold", "id": hold.id.to_string()}, {"type": "log", "id": hold.log}],
        "source": {"service": "sealtrail"},
        "outcome": "success",
        "details": crate::system::bounded_details(json!({
            "log": hold.log,
            "filter": hold.filter,
            "reason": hold.reason,
        })),
    })
    .to_string()
}

impl Meta {
    /// Add a legal hold on `log` covering the events `filter` matches.
    /// `by` is who asks (stored), `actor` the event's actor. The caller
    /// checks that the log exists.
    pub fn add_hold(
        &self,
        log: &str,
        filter: &Filter,
        reason: &str,
        by: &str,
        actor: &Value,
    ) -> Result<Hold, MetaError> {
        let problems = hold_problems(filter, reason);
        if !problems.is_empty() {
            return Err(MetaError::InvalidHold(problems));
        }
        let now = crate::system::now_text();
        let filter = filter_json(filter);
        self.audited(|conn| {
            let active: i64 = conn.query_row(
                "SELECT count(*) FROM legal_holds WHERE log = ?1 AND released_at IS NULL",
                params![log],
                |r| r.get(0),
            )?;
            if active as usize >= MAX_ACTIVE_HOLDS {
                return Err(MetaError::InvalidHold(vec![format!(
                    "log {log:?} has {active} active legal holds, the most allowed; release one first"
                )])
                .into());
            }
            conn.execute(
                "INSERT INTO legal_holds (log, filter, reason, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![log, filter.to_string(), reason, now, by],
            )?;
            let id = conn.last_insert_rowid();
            let hold = get_hold(conn, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            let event = hold_event(actor, "legal_hold.added", &hold);
            Ok((hold, event))
        })
        .map_err(|e: HoldTxError| e.into_meta(self))
    }

    /// Release hold `id`; releasing a released hold is refused, naming
    /// when it was released.
    pub fn release_hold(&self, id: i64, by: &str, actor: &Value) -> Result<Hold, MetaError> {
        let now = crate::system::now_text();
        self.audited(|conn| {
            let Some(mut hold) = get_hold(conn, id)? else {
                return Err(MetaError::NoSuchHold(id).into());
            };
            if let Some(at) = &hold.released_at {
                return Err(
                    MetaError::InvalidHold(vec![format!("legal hold {id} was already released at {at}")]).into(),
                );
            }
            conn.execute(
                "UPDATE legal_holds SET released_at = ?2, released_by = ?3 WHERE id = ?1",
                params![id, now, by],
            )?;
            hold.released_at = Some(now.clone());
            hold.released_by = Some(by.to_string());
            let event = hold_event(actor, "legal_hold.released", &hold);
            Ok((hold, event))
        })
        .map_err(|e: HoldTxError| e.into_meta(self))
    }

    /// Hold `id`, active or released.
    pub fn hold(&self, id: i64) -> Result<Option<Hold>, MetaError> {
        get_hold(&self.read(), id).map_err(|e| self.sql(e))
    }

    /// Holds, oldest first: of `log` only if given, active only unless
    /// `released` is true.
    pub fn holds(&self, log: Option<&str>, released: bool) -> Result<Vec<Hold>, MetaError> {
        let conn = self.read();
        let sql = format!(
            "SELECT {COLUMNS} FROM legal_holds WHERE (?1 IS NULL OR log = ?1) AND (?2 OR released_at IS NULL) ORDER BY id"
        );
        let mut stmt = conn.prepare(&sql).map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![log, released], row_hold)
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }

    /// Note what stops the retention of `log` now: `Some((hold, entry))`
    /// when legal hold `hold` covers entry `entry` and stopped a run,
    /// `None` when no hold did. The `retention.stopped` event `event`
    /// is queued only when blocking starts or what blocks changes (another
    /// hold or another first held entry), in the same transaction that
    /// remembers it, so a hold that keeps blocking a periodic policy is
    /// recorded once, not at every run. Returns whether it was queued.
    pub fn retention_blocked(&self, log: &str, block: Option<(i64, u64)>, event: &str) -> Result<bool, MetaError> {
        let mut conn = self.conn();
        let run = |conn: &mut Connection| -> rusqlite::Result<bool> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let before: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT hold, entry FROM retention_blocks WHERE log = ?1",
                    params![log],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let queued = match block {
                None => {
                    tx.execute("DELETE FROM retention_blocks WHERE log = ?1", params![log])?;
                    false
                }
                Some((hold, entry)) => {
                    // Entry indices stay far below i64::MAX.
                    let entry = i64::try_from(entry).unwrap_or(i64::MAX);
                    if before == Some((hold, entry)) {
                        false
                    } else {
                        tx.execute(
                            "INSERT INTO retention_blocks (log, hold, entry) VALUES (?1, ?2, ?3)
                             ON CONFLICT (log) DO UPDATE SET hold = excluded.hold, entry = excluded.entry",
                            params![log, hold, entry],
                        )?;
                        crate::db::queue_event(&tx, event)?;
                        true
                    }
                }
            };
            tx.commit()?;
            Ok(queued)
        };
        run(&mut conn).map_err(|e| self.sql(e))
    }

    /// The active holds of `log`, as the planner needs them.
    pub fn hold_scopes(&self, log: &str) -> Result<Vec<HoldScope>, MetaError> {
        self.holds(Some(log), false)?
            .iter()
            .map(|h| h.scope().map_err(|e| MetaError::InvalidHold(vec![e])))
            .collect()
    }
}

/// What fails inside a hold's transaction.
#[derive(Debug)]
enum HoldTxError {
    Sql(rusqlite::Error),
    Meta(MetaError),
}

impl From<rusqlite::Error> for HoldTxError {
    fn from(e: rusqlite::Error) -> Self {
        HoldTxError::Sql(e)
    }
}

impl From<MetaError> for HoldTxError {
    fn from(e: MetaError) -> Self {
        HoldTxError::Meta(e)
    }
}

impl HoldTxError {
    fn into_meta(self, meta: &Meta) -> MetaError {
        match self {
            HoldTxError::Sql(e) => meta.sql(e),
            HoldTxError::Meta(e) => e,
        }
    }
}

/// The system-log event of a pruning: log, range, bytes freed and the
/// RFC 9162 root of the tree of size `to`, which commits to every entry
/// dropped (a consistency proof from `to` to any later checkpoint shows
/// the log kept growing from it).
pub fn pruned_event(
    actor: &Value,
    log: &str,
    from: u64,
    to: u64,
    bytes_freed: u64,
    root_at_to: &[u8; 32],
    why: &str,
) -> String {
    json!({
        "action": "retention.pruned",
        "actor": actor,
        "targets": [{"type": "log", "id": log}],
        "source": {"service": "sealtrail"},
        "outcome": "success",
        "details": {
            "log": log,
            "from": from,
            "to": to,
            "entries": to - from,
            "bytes_freed": bytes_freed,
            "root_at_to": hex(root_at_to),
            "root_at_to_base64": base64_std(root_at_to),
            "policy": why,
        },
    })
    .to_string()
}

/// The system-log event of a retention run that stopped short of its
/// target: what it wanted, where it stopped and why.
pub fn stopped_event(actor: &Value, log: &str, plan: &RetentionPlan) -> Option<String> {
    let stop = plan.stopped.as_ref()?;
    let hold = match stop {
        Stop::Hold { hold, .. } => Some(*hold),
        _ => None,
    };
    Some(
        json!({
            "action": "retention.stopped",
            "actor": actor,
            "targets": [{"type": "log", "id": log}],
            "source": {"service": "sealtrail"},
            "outcome": "success",
            "severity": "notice",
            "message": format!("retention of log {log} stopped at entry {}: {stop}", plan.below),
            "details": {"log": log, "wanted": plan.wanted, "below": plan.below, "hold": hold, "reason": stop.to_string()},
        })
        .to_string(),
    )
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealtrail_trail::TimeRange;

    #[test]
    fn a_filter_survives_json() {
        let f = Filter {
            action: Some("lead.*".into()),
            target_type: Some("lead".into()),
            target_id: Some("L-1".into()),
            outcome: Some(Outcome::Failure),
            min_severity: Some(Severity::Warning),
            ip: Some("10.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
            occurred: TimeRange {
                since: "2026-01-01T00:00:00Z".parse().ok(),
                until: "2026-02-01T00:00:00Z".parse().ok(),
            },
            text: Some("\"disk full\"".into()),
            failures: true,
            ..Filter::default()
        };
        assert_eq!(filter_from_json(&filter_json(&f)), Ok(f));
        assert_eq!(filter_json(&Filter::default()), json!({}));
        let err = filter_from_json(&json!({"colour": "red"})).err();
        assert_eq!(err.as_deref(), Some("filter.colour: not a filter field"));
        let err = filter_from_json(&json!({"occurred_since": "yesterday"}))
            .err()
            .unwrap_or_default();
        assert!(err.starts_with("filter.occurred_since: \"yesterday\""), "{err}");
    }
}
