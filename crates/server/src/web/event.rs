//! `/events/{log}/{index}`: one event with every field, its `changes` as
//! a before → after diff per field, and its inclusion in the log checked
//! on the server against the latest signed checkpoint; and
//! `/entities/{type}/{id}`: the events naming an entity as a target (the
//! API's history) or as the actor, newest first.
//!
//! The proof is the receipt route's (`GET /api/v1/logs/{log}/receipts/{index}`):
//! the same inclusion proof and checkpoint note, verified here with
//! `Receipt::verify` (the note's signature by the log's key, then the
//! proof up to the checkpoint's root), so the page states only what was
//! checked. A tenant-restricted caller sees only its tenant's events.

use std::collections::BTreeSet;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::Uri;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use sealtrail_merkle::{leaf_hash, Receipt};
use sealtrail_trail::Order;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::view::{self, blocking_page, error_page, html, link, EventRow, Time};
use super::{encode_component, Layout, Viewer};
use crate::api::query::{self, EventQuery};
use crate::api::{b64, ledger_problem, readable};
use crate::app::App;
use crate::problem::Problem;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/events/{log}/{index}", get(detail))
        .route("/entities/{kind}/{id}", get(timeline))
}

/// One row of the field list: a dotted path and its value as text.
pub struct FieldRow {
    pub path: String,
    pub value: String,
    /// Set for `occurred_at` and `received_at`.
    pub time: Option<Time>,
}

/// One changed field: its value before and after, as JSON text.
pub struct ChangeRow {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// What checking the inclusion proof found.
pub struct Proof {
    pub verified: bool,
    pub size: u64,
    pub root: String,
    pub leaf: String,
    pub origin: String,
    /// Why it could not be verified, or that the entry is newer than the
    /// latest checkpoint.
    pub problem: Option<String>,
}

#[derive(Template)]
#[template(path = "event.html")]
struct EventPage {
    layout: Layout,
    log: String,
    index: u64,
    id: String,
    row: EventRow,
    fields: Vec<FieldRow>,
    changes: Vec<ChangeRow>,
    changed_fields: Vec<String>,
    proof: Proof,
    receipt: String,
    inclusion: String,
    raw: String,
}

/// The dotted paths and values of a JSON object, depth first; arrays of
/// scalars are kept on one line.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<FieldRow>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        Value::Array(items) if items.iter().any(|v| v.is_object() || v.is_array()) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        Value::String(s) => out.push(FieldRow {
            path: prefix.to_string(),
            time: matches!(prefix, "occurred_at" | "received_at").then(|| Time::parse(s)),
            value: s.clone(),
        }),
        other => out.push(FieldRow {
            path: prefix.to_string(),
            value: other.to_string(),
            time: None,
        }),
    }
}

/// `changes.before` and `changes.after` side by side per top-level
/// field (objects), or as one row (any other value).
fn diff(changes: &Value) -> Vec<ChangeRow> {
    let before = changes.get("before");
    let after = changes.get("after");
    let text = |v: Option<&Value>| v.map(|v| v.to_string());
    match (before, after) {
        (None, None) => Vec::new(),
        (b, a) if b.is_none_or(Value::is_object) && a.is_none_or(Value::is_object) => {
            let empty = Map::new();
            let b = b.and_then(Value::as_object).unwrap_or(&empty);
            let a = a.and_then(Value::as_object).unwrap_or(&empty);
            let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            keys.into_iter()
                .filter(|k| b.get(*k) != a.get(*k))
                .map(|k| ChangeRow {
                    field: k.clone(),
                    before: text(b.get(k)),
                    after: text(a.get(k)),
                })
                .collect()
        }
        (b, a) => vec![ChangeRow {
            field: String::new(),
            before: text(b),
            after: text(a),
        }],
    }
}

async fn detail(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path((log, index)): Path<(String, String)>,
) -> Result<Response, Response> {
    let index: u64 = index.parse().map_err(|_| {
        error_page(
            &viewer,
            "/search",
            Problem::bad_request("invalid-path", format!("index: {index:?} is not a whole number")),
        )
    })?;
    let caller = viewer.caller.clone();
    let log_ = log.clone();
    let (entry, proof) = blocking_page(&viewer, "/search", move || {
        let log = log_;
        let trail = readable(&app, &caller, &log)?;
        let missing = || Problem::not_found(format!("log {log} has no event {index}"));
        if index >= trail.log().size() {
            return Err(missing());
        }
        let entry = trail.log().entry(index).map_err(ledger_problem)?;
        // Another tenant's event does not exist for a restricted caller.
        if let Some(t) = caller.tenant() {
            let owner = sealtrail_event::parse_entry(&entry).ok().and_then(|e| e.tenant);
            if owner.as_deref() != Some(t) {
                return Err(missing());
            }
        }
        let leaf = leaf_hash(&entry);
        let (checkpoint, note) = trail.log().checkpoint();
        let proof = if index >= checkpoint.size {
            Proof {
                verified: false,
                size: checkpoint.size,
                root: b64(&checkpoint.root),
                leaf: b64(&leaf),
                origin: checkpoint.origin.clone(),
                problem: Some(format!(
                    "this event is not yet covered by a signed checkpoint (latest size {})",
                    checkpoint.size
                )),
            }
        } else {
            let receipt = Receipt {
                extra: None,
                index,
                proof: trail
                    .log()
                    .inclusion_proof(index, checkpoint.size)
                    .map_err(ledger_problem)?,
                checkpoint: note.to_vec(),
            };
            match receipt.verify(&leaf, trail.log().verifier()) {
                Ok(cp) => Proof {
                    verified: true,
                    size: cp.size,
                    root: b64(&cp.root),
                    leaf: b64(&leaf),
                    origin: cp.origin,
                    problem: None,
                },
                Err(e) => Proof {
                    verified: false,
                    size: checkpoint.size,
                    root: b64(&checkpoint.root),
                    leaf: b64(&leaf),
                    origin: checkpoint.origin.clone(),
                    problem: Some(format!("the inclusion proof does not verify: {e}")),
                },
            }
        };
        app.record(
            &caller,
            "trail.read",
            &log,
            json!({"route": "page", "index": index, "verified": proof.verified}),
        )?;
        Ok((entry, proof))
    })
    .await?;
    let event = sealtrail_event::parse_entry(&entry).map_err(|e| {
        error_page(
            &viewer,
            "/search",
            Problem::internal(format!("entry {index} of {log} is not an event: {e}")),
        )
    })?;
    let value: Value = serde_json::from_slice(&entry).unwrap_or(Value::Null);
    let mut fields = Vec::new();
    flatten("", &value, &mut fields);
    let changes = value.get("changes").map(diff).unwrap_or_default();
    let changed_fields = event
        .changes
        .as_ref()
        .and_then(|c| c.fields.clone())
        .unwrap_or_default();
    let raw = serde_json::to_string_pretty(&value).unwrap_or_default();
    let elog = encode_component(&log);
    let page = EventPage {
        layout: viewer.layout("/search"),
        row: EventRow::from_event(&log, index, &event),
        id: event.id.to_string(),
        receipt: format!("/api/v1/logs/{elog}/receipts/{index}"),
        inclusion: link(
            &format!("/api/v1/logs/{elog}/proofs/inclusion"),
            &[("index", &index.to_string())],
        ),
        log,
        index,
        fields,
        changes,
        changed_fields,
        proof,
        raw,
    };
    Ok(html(&page))
}

/// `/entities/{type}/{id}` parameters: the log, and paging.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimelineParams {
    log: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
}

#[derive(Template)]
#[template(path = "entity.html")]
struct EntityPage {
    layout: Layout,
    kind: String,
    id: String,
    log: String,
    logs: Vec<(String, String)>,
    rows: Vec<EventRow>,
    next: Option<String>,
    search: String,
}

const TIMELINE_PAGE: usize = 50;

async fn timeline(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path((kind, id)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, Response> {
    let Query(p) = Query::<TimelineParams>::try_from_uri(&uri)
        .map_err(|e| error_page(&viewer, "/search", Problem::bad_request("invalid-query", e.body_text())))?;
    let caller = viewer.caller.clone();
    let raw = uri.query().map(str::to_string);
    let (kind_, id_) = (kind.clone(), id.clone());
    let (logs, log, rows, next) = blocking_page(&viewer, "/search", move || {
        let logs = view::readable_logs(&app, &caller, p.log.as_deref())?;
        let log = view::chosen_log(&logs, p.log.as_deref())
            .ok_or_else(|| Problem::not_found("there is no log you may read"))?;
        let limit = p.limit.unwrap_or(TIMELINE_PAGE);
        let q = EventQuery {
            limit: Some(limit),
            after: p.after,
            ..EventQuery::default()
        };
        // As a target: the API's history, newest first.
        let (_, mut found, _) = query::entity_history(&app, &caller, &log, &kind_, &id_, &q, &raw, Order::NewestFirst)?;
        // As the actor: the events API by actor id, kept where the actor's
        // type is the entity's.
        let by_actor = EventQuery {
            actor: Some(id_.clone()),
            ..q
        };
        let (_, acted, _) = query::find(&app, &caller, &log, &by_actor, &raw, "timeline", |_| {})?;
        found.extend(
            acted
                .into_iter()
                .filter(|f| f.event.actor.as_ref().is_some_and(|a| view::actor_kind(a) == kind_)),
        );
        found.sort_by_key(|f| std::cmp::Reverse(f.index));
        found.dedup_by_key(|f| f.index);
        found.truncate(limit);
        let next = (found.len() == limit).then(|| found.last().map(|f| f.index)).flatten();
        let rows = found.iter().map(|f| EventRow::of(&log, f)).collect::<Vec<_>>();
        Ok((logs, log, rows, next))
    })
    .await?;
    let here = format!("/entities/{}/{}", encode_component(&kind), encode_component(&id));
    let page = EntityPage {
        layout: viewer.layout("/search"),
        next: next.map(|n| link(&here, &[("log", &log), ("after", &n.to_string())])),
        search: link("/search", &[("log", &log), ("target", &format!("{kind}:{id}"))]),
        logs: logs.iter().map(|l| (l.clone(), link(&here, &[("log", l)]))).collect(),
        kind,
        id,
        log,
        rows,
    };
    Ok(html(&page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_diffed_per_field() {
        let rows = diff(&json!({
            "before": {"status": "open", "owner": "ann", "same": 1},
            "after": {"status": "closed", "owner": "ann", "same": 1, "note": "x"}
        }));
        let shown: Vec<_> = rows
            .iter()
            .map(|r| (r.field.as_str(), r.before.as_deref(), r.after.as_deref()))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("note", None, Some("\"x\"")),
                ("status", Some("\"open\""), Some("\"closed\"")),
            ]
        );
        let whole = diff(&json!({"before": 1, "after": [2]}));
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0].before.as_deref(), Some("1"));
        assert_eq!(whole[0].after.as_deref(), Some("[2]"));
    }

    #[test]
    fn fields_are_listed_by_dotted_path() {
        let mut rows = Vec::new();
        flatten(
            "",
            &json!({"actor": {"id": "u1", "roles": ["a", "b"]}, "targets": [{"type": "lead", "id": "L1"}]}),
            &mut rows,
        );
        let shown: Vec<_> = rows.iter().map(|r| (r.path.as_str(), r.value.as_str())).collect();
        assert_eq!(
            shown,
            vec![
                ("actor.id", "u1"),
                ("actor.roles", "[\"a\",\"b\"]"),
                ("targets[0].id", "L1"),
                ("targets[0].type", "lead"),
            ]
        );
    }
}
