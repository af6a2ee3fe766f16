//! The flat column set that CSV and XLSX share: one event becomes one row of
//! [`COLUMNS`] typed cells, which each format then spells its own way.
//!
//! Not every field has a column (`targets[].name`, `context.span_id`,
//! `context.location`, `error.stack`, the impersonator beyond its id): a
//! spreadsheet row is for reading and filtering. JSON and JSON Lines carry
//! the complete entry.

use std::borrow::Cow;

use sealtrail_event::{jcs, Event, Timestamp};
use serde_json::Value;

use crate::{ExportError, Row};

/// The CSV and XLSX columns, in order (docs/export-formats.md says what
/// each holds).
pub const COLUMNS: [&str; 34] = [
    "index",
    "id",
    "occurred_at",
    "received_at",
    "tenant",
    "action",
    "category",
    "crud",
    "outcome",
    "severity",
    "actor_id",
    "actor_type",
    "actor_name",
    "actor_email",
    "actor_roles",
    "impersonator_id",
    "targets",
    "source_service",
    "source_version",
    "source_environment",
    "source_host",
    "source_workflow",
    "context_ip",
    "context_user_agent",
    "context_session_id",
    "context_request_id",
    "context_trace_id",
    "message",
    "duration_ms",
    "error_type",
    "error_message",
    "changes",
    "details",
    "idempotency_key",
];

/// One cell's value before a format spells it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell<'a> {
    /// The field is absent (event strings are never empty, so an empty
    /// cell always means absent).
    Absent,
    Text(Cow<'a, str>),
    /// The ledger index.
    Index(u64),
    /// `duration_ms`.
    Number(f64),
    Time(Timestamp),
}

fn text(value: &Option<String>) -> Cell<'_> {
    value.as_deref().map_or(Cell::Absent, |s| Cell::Text(Cow::Borrowed(s)))
}

fn name(value: Option<&'static str>) -> Cell<'static> {
    value.map_or(Cell::Absent, |s| Cell::Text(Cow::Borrowed(s)))
}

/// Appends `item` to a `;`-separated list cell, escaping `\` and `;` (and
/// `:` too when `colon`) with a backslash, so the list splits back exactly.
fn push_item(out: &mut String, item: &str, colon: bool) {
    for c in item.chars() {
        if c == '\\' || c == ';' || (colon && c == ':') {
            out.push('\\');
        }
        out.push(c);
    }
}

fn list<'a, T>(items: Option<&'a Vec<T>>, mut push: impl FnMut(&mut String, &'a T)) -> Cell<'a> {
    match items {
        None => Cell::Absent,
        Some(items) if items.is_empty() => Cell::Absent,
        Some(items) => {
            let mut out = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(';');
                }
                push(&mut out, item);
            }
            Cell::Text(Cow::Owned(out))
        }
    }
}

fn canonical(index: u64, field: &'static str, value: &Value) -> Result<Cell<'static>, ExportError> {
    let bytes = jcs::to_vec(value).map_err(|e| ExportError::Canonical {
        index,
        field,
        reason: e.to_string(),
    })?;
    // RFC 8785 output of a `Value` is UTF-8 by construction.
    let text = String::from_utf8(bytes).map_err(|e| ExportError::Canonical {
        index,
        field,
        reason: e.to_string(),
    })?;
    Ok(Cell::Text(Cow::Owned(text)))
}

/// The row's cells, in [`COLUMNS`] order.
pub(crate) fn cells<'a>(row: &Row<'a>) -> Result<[Cell<'a>; COLUMNS.len()], ExportError> {
    let e: &'a Event = row.event;
    let actor = e.actor.as_ref();
    let source = e.source.as_ref();
    let context = e.context.as_ref();
    let error = e.error.as_ref();
    let changes = match &e.changes {
        None => Cell::Absent,
        Some(changes) => {
            let value = serde_json::to_value(changes).map_err(|err| ExportError::Canonical {
                index: row.index,
                field: "changes",
                reason: err.to_string(),
            })?;
            canonical(row.index, "changes", &value)?
        }
    };
    let details = match &e.details {
        None => Cell::Absent,
        Some(details) => canonical(row.index, "details", &Value::Object(details.clone()))?,
    };
    Ok([
        Cell::Index(row.index),
        Cell::Text(Cow::Owned(e.id.to_string())),
        Cell::Time(e.occurred_at),
        Cell::Time(e.received_at),
        text(&e.tenant),
        Cell::Text(Cow::Borrowed(&e.action)),
        text(&e.category),
        name(e.crud.map(|c| c.as_str())),
        name(e.outcome.map(|o| o.as_str())),
        Cell::Text(Cow::Borrowed(e.severity.as_str())),
        actor.map_or(Cell::Absent, |a| Cell::Text(Cow::Borrowed(&a.id))),
        name(actor.and_then(|a| a.kind).map(|k| k.as_str())),
        actor.map_or(Cell::Absent, |a| text(&a.name)),
        actor.map_or(Cell::Absent, |a| text(&a.email)),
        list(actor.and_then(|a| a.roles.as_ref()), |out, role| {
            push_item(out, role, false)
        }),
        actor
            .and_then(|a| a.impersonator.as_ref())
            .map_or(Cell::Absent, |i| Cell::Text(Cow::Borrowed(&i.id))),
        list(e.targets.as_ref(), |out, target| {
            push_item(out, &target.kind, true);
            out.push(':');
            push_item(out, &target.id, false);
        }),
        source.map_or(Cell::Absent, |s| text(&s.service)),
        source.map_or(Cell::Absent, |s| text(&s.version)),
        source.map_or(Cell::Absent, |s| text(&s.environment)),
        source.map_or(Cell::Absent, |s| text(&s.host)),
        source.map_or(Cell::Absent, |s| text(&s.workflow)),
        context
            .and_then(|c| c.ip)
            .map_or(Cell::Absent, |ip| Cell::Text(Cow::Owned(ip.to_string()))),
        context.map_or(Cell::Absent, |c| text(&c.user_agent)),
        context.map_or(Cell::Absent, |c| text(&c.session_id)),
        context.map_or(Cell::Absent, |c| text(&c.request_id)),
        context.map_or(Cell::Absent, |c| text(&c.trace_id)),
        text(&e.message),
        e.duration_ms.map_or(Cell::Absent, Cell::Number),
        error.map_or(Cell::Absent, |f| text(&f.kind)),
        error.map_or(Cell::Absent, |f| text(&f.message)),
        changes,
        details,
        text(&e.idempotency_key),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_items_escape_their_separators() {
        let mut out = String::new();
        push_item(&mut out, r"a:b;c\d", true);
        assert_eq!(out, r"a\:b\;c\\d");
        let mut out = String::new();
        push_item(&mut out, r"a:b;c\d", false);
        assert_eq!(out, r"a:b\;c\\d");
    }
}
