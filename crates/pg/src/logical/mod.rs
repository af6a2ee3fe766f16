//! Logical-decoding capture: row changes read from a replication slot
//! through the `pgoutput` plugin, for tables where capture triggers cost
//! the writers too much. The tracked database keeps no outbox: the WAL is
//! the outbox, and the slot's confirmed position is the drain watermark.
//!
//! A drain peeks at the slot with `pg_logical_slot_peek_binary_changes`
//! (which consumes nothing), turns each change into the same event as a
//! trigger would (through [`crate::drain`]'s event shaping), appends the
//! events durably, and only then moves the slot's confirmed position
//! (`confirmed_flush_lsn`) past the last transaction appended, with
//! `pg_replication_slot_advance`. Idempotency keys are
//! `pg-<epoch>-<commit LSN>-<position in the transaction>`: a drain killed
//! between the append and the advance peeks the same transactions again
//! next time, makes the same keys, and the trail stores nothing twice.
//! A drain reads up to the WAL position of its start, so it ends however
//! busy the writers.
//!
//! The application's actor arrives in the stream as a transactional
//! message with prefix `sealtrail` (written by `sealtrail.set_actor`), and
//! DDL as one with prefix `sealtrail.ddl` (written by the event trigger):
//! both are decoded in commit order with the transaction's changes.
//!
//! Not here: the replication protocol (`START_REPLICATION`) and standby
//! status updates; installing the slot and publication
//! ([`crate::capture::install`] does).

pub mod pgoutput;

use std::collections::HashMap;
use std::fmt::Write as _;

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use thiserror::Error;

use sealtrail_trail::Trail;

use crate::capture::CaptureError;
use crate::drain::{append, Context, DrainError, DrainOptions, DrainReport, OutboxRow};
use pgoutput::{Message, OldKind, Relation, Value};

/// The publication a logical-decoding install reads through.
pub const PUBLICATION: &str = "sealtrail";
/// Prefix of the actor messages `sealtrail.set_actor` emits.
pub const ACTOR_PREFIX: &str = "sealtrail";
/// Prefix of the DDL messages the event trigger emits in logical mode.
pub const DDL_PREFIX: &str = "sealtrail.ddl";

/// Events gathered before an append, at most (and at most
/// [`BATCH_PAYLOAD`] bytes of payload).
const BATCH_PAYLOAD: usize = 32 << 20;

/// The replication slot cannot be read.
#[derive(Debug, Error)]
pub enum SlotError {
    #[error("the replication slot {slot} of database {database} does not exist (dropped by someone, or lost with the cluster): changes after LSN {last} may be lost; run `sealtrail pg install --mode logical` again, which creates a new slot and records the gap")]
    Missing {
        slot: String,
        database: String,
        last: String,
    },
    #[error("the replication slot {slot} of database {database} was invalidated (wal_status {wal_status}: PostgreSQL removed WAL it still needed, see max_slot_wal_keep_size): changes after LSN {last} are lost; run `sealtrail pg install --mode logical` again, which creates a new slot and records the gap")]
    Invalidated {
        slot: String,
        database: String,
        wal_status: String,
        last: String,
    },
    #[error("decoding the replication slot {slot} at LSN {lsn}: {source}")]
    Decode {
        slot: String,
        lsn: String,
        #[source]
        source: pgoutput::DecodeError,
    },
    #[error("decoding the replication slot {slot} at LSN {lsn}: a change of relation {relation}, which the stream never described")]
    UnknownRelation { slot: String, lsn: String, relation: u32 },
}

/// A tracked table as the install recorded it.
struct Tracked {
    key_columns: Vec<String>,
    excluded: Vec<String>,
}

/// A relation of the stream with what capture knows of it.
struct Rel {
    relation: Relation,
    /// Key columns for the target id (the primary key as recorded at
    /// install; else the replica identity's columns unless FULL).
    key: Vec<String>,
    /// Per column: left out of row images.
    excluded: Vec<bool>,
}

/// The transaction being decoded.
struct Txn {
    lsn: String,
    xid: String,
    commit_time: String,
    position: i64,
    /// The `sealtrail.set_actor` message's fields, as JSON members
    /// (`"actor":"u-17",…`) ready to be spliced into a payload.
    meta: String,
}

/// Drain the slot of the install the caller has locked and read.
pub(crate) fn drain(
    client: &mut Client,
    ctx: &Context<'_>,
    trail: &Trail,
    opts: &DrainOptions,
) -> Result<DrainReport, DrainError> {
    let install = client
        .query_one(
            "SELECT slot, coalesce(drained_lsn::text, ''), gap_from::text, gap_to::text FROM sealtrail.install",
            &[],
        )
        .map_err(CaptureError::pg("reading the install"))?;
    let slot: String = install.get(0);
    let last: String = install.get(1);
    let last = if last.is_empty() {
        "of the install".to_string()
    } else {
        last
    };
    let gap: (Option<String>, Option<String>) = (install.get(2), install.get(3));
    check_slot(client, &slot, ctx.database, &last)?;

    let mut report = DrainReport::default();
    if let (Some(from), Some(to)) = gap {
        gap_event(ctx, trail, &from, &to, &mut report)?;
        client
            .execute("UPDATE sealtrail.install SET gap_from = NULL, gap_to = NULL", &[])
            .map_err(CaptureError::pg("clearing the recorded gap"))?;
    }

    let mut tracked: HashMap<u32, Tracked> = HashMap::new();
    for row in client
        .query("SELECT relid, key_columns, excluded FROM sealtrail.tables", &[])
        .map_err(CaptureError::pg("reading the tracked tables"))?
    {
        tracked.insert(
            row.get(0),
            Tracked {
                key_columns: row.get(1),
                excluded: row.get(2),
            },
        );
    }
    let peek = client
        .prepare(&format!(
            "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes($1, $3::text::pg_lsn, $2,
                 'proto_version', '1', 'publication_names', '{PUBLICATION}', 'messages', 'true')"
        ))
        .map_err(CaptureError::pg("preparing the slot read"))?;
    // The run ends at the WAL's end as it starts (where records are
    // inserted, so that a commit made visible before it is in, written
    // to disk or not): transactions that commit later are the next
    // drain's, so that writers that never pause cannot keep it running.
    let horizon: String = client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .map_err(CaptureError::pg("reading the WAL position"))?
        .get(0);
    loop {
        let want = match opts.limit {
            Some(limit) if report.rows >= limit => break,
            Some(limit) => (limit - report.rows).min(opts.batch as u64),
            None => opts.batch as u64,
        };
        let mut relations: HashMap<u32, Rel> = HashMap::new();
        let mut txn: Option<Txn> = None;
        let mut pending: Vec<OutboxRow> = Vec::new();
        let mut pending_bytes = 0usize;
        let mut committed: Option<u64> = None;
        let mut rows_seen = 0u64;
        let want_i32 = i32::try_from(want).unwrap_or(i32::MAX);
        let mut stream = client
            .query_raw(
                &peek,
                [&slot as &(dyn postgres::types::ToSql + Sync), &want_i32, &horizon],
            )
            .map_err(|e| slot_read_error(e, &slot, ctx.database, &last))?;
        while let Some(row) = stream
            .next()
            .map_err(|e| slot_read_error(e, &slot, ctx.database, &last))?
        {
            let lsn: &str = row.get(0);
            let data: &[u8] = row.get(1);
            let message = pgoutput::decode(data).map_err(|source| SlotError::Decode {
                slot: slot.clone(),
                lsn: lsn.to_string(),
                source,
            })?;
            let unknown = |relation: u32| SlotError::UnknownRelation {
                slot: slot.clone(),
                lsn: lsn.to_string(),
                relation,
            };
            match message {
                Message::Relation(relation) => {
                    let rel = describe(relation, &tracked);
                    relations.insert(rel.relation.id, rel);
                }
                Message::Begin {
                    final_lsn,
                    commit_time,
                    xid,
                } => {
                    txn = Some(Txn {
                        lsn: pgoutput::lsn_text(final_lsn),
                        xid: xid.to_string(),
                        commit_time: pg_time(commit_time),
                        position: 0,
                        meta: String::new(),
                    });
                }
                Message::Commit { end_lsn, .. } => {
                    txn = None;
                    committed = Some(end_lsn);
                }
                Message::Message {
                    transactional: true,
                    prefix,
                    content,
                    ..
                } => {
                    let Some(t) = txn.as_mut() else { continue };
                    if prefix == ACTOR_PREFIX {
                        t.meta = actor_members(content);
                    } else if prefix == DDL_PREFIX {
                        t.position += 1;
                        let payload = String::from_utf8_lossy(content).into_owned();
                        pending_bytes += payload.len();
                        pending.push(change(t, "ddl", payload));
                    }
                }
                Message::Insert { relation, new } => {
                    let (Some(t), Some(rel)) = (txn.as_mut(), relations.get(&relation)) else {
                        return Err(unknown(relation).into());
                    };
                    t.position += 1;
                    let payload = row_payload(rel, t, None, Some(&new));
                    pending_bytes += payload.len();
                    pending.push(change(t, "insert", payload));
                }
                Message::Update { relation, old, new } => {
                    let (Some(t), Some(rel)) = (txn.as_mut(), relations.get(&relation)) else {
                        return Err(unknown(relation).into());
                    };
                    t.position += 1;
                    // A key-only old image (the key changed) is not the
                    // row before the update: leave `before` out.
                    let old = old.filter(|(kind, _)| *kind == OldKind::Full);
                    let payload = row_payload(rel, t, old.as_ref().map(|(_, v)| v.as_slice()), Some(&new));
                    pending_bytes += payload.len();
                    pending.push(change(t, "update", payload));
                }
                Message::Delete { relation, old } => {
                    let (Some(t), Some(rel)) = (txn.as_mut(), relations.get(&relation)) else {
                        return Err(unknown(relation).into());
                    };
                    t.position += 1;
                    let payload = row_payload(rel, t, Some(&old.1), None);
                    pending_bytes += payload.len();
                    pending.push(change(t, "delete", payload));
                }
                Message::Truncate { relations: ids, .. } => {
                    let Some(t) = txn.as_mut() else { continue };
                    for id in ids {
                        let rel = relations.get(&id).ok_or_else(|| unknown(id))?;
                        t.position += 1;
                        let mut payload = String::from("{");
                        names(&mut payload, &rel.relation);
                        payload.push_str(&t.meta);
                        payload.push('}');
                        pending_bytes += payload.len();
                        pending.push(change(t, "truncate", payload));
                    }
                }
                Message::Message { .. } | Message::Origin | Message::Type => {}
            }
            if pending.len() >= opts.batch || pending_bytes >= BATCH_PAYLOAD {
                rows_seen += pending.len() as u64;
                append(ctx, trail, &pending, &mut report)?;
                report.batches += 1;
                pending.clear();
                pending_bytes = 0;
            }
        }
        drop(stream);
        if !pending.is_empty() {
            rows_seen += pending.len() as u64;
            append(ctx, trail, &pending, &mut report)?;
            report.batches += 1;
        }
        report.rows += rows_seen;
        // The appends are durable: now, and only now, the slot may move.
        let Some(end) = committed else { break };
        let end = pgoutput::lsn_text(end);
        client
            .execute(
                "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)",
                &[&slot, &end],
            )
            .map_err(|e| slot_read_error(e, &slot, ctx.database, &last))?;
        client
            .execute(
                "UPDATE sealtrail.install SET drained_lsn = $1::text::pg_lsn,
                        drained_total = drained_total + $2, drained_at = now()",
                &[&end, &(rows_seen as i64)],
            )
            .map_err(CaptureError::pg("storing the watermark"))?;
        report.through = Some((end, 0));
    }
    Ok(report)
}

/// Refuse a slot that is missing or invalidated, naming it.
fn check_slot(client: &mut Client, slot: &str, database: &str, last: &str) -> Result<(), DrainError> {
    let row = client
        .query_opt(
            "SELECT coalesce(wal_status, ''), restart_lsn IS NULL FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .map_err(CaptureError::pg("looking up the replication slot"))?;
    let Some(row) = row else {
        return Err(SlotError::Missing {
            slot: slot.into(),
            database: database.into(),
            last: last.into(),
        }
        .into());
    };
    let (wal_status, no_restart): (String, bool) = (row.get(0), row.get(1));
    if wal_status == "lost" || no_restart {
        return Err(SlotError::Invalidated {
            slot: slot.into(),
            database: database.into(),
            wal_status: if wal_status.is_empty() {
                "unknown".into()
            } else {
                wal_status
            },
            last: last.into(),
        }
        .into());
    }
    Ok(())
}

/// The error of a slot read: a slot that vanished or was invalidated
/// between the check and the read is named as such.
fn slot_read_error(e: postgres::Error, slot: &str, database: &str, last: &str) -> DrainError {
    let text = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
    if text.contains("does not exist") && text.contains("replication slot") {
        return SlotError::Missing {
            slot: slot.into(),
            database: database.into(),
            last: last.into(),
        }
        .into();
    }
    if text.contains("can no longer get changes") || text.contains("invalidated") {
        return SlotError::Invalidated {
            slot: slot.into(),
            database: database.into(),
            wal_status: "lost".into(),
            last: last.into(),
        }
        .into();
    }
    CaptureError::Postgres {
        what: format!("reading the replication slot {slot}"),
        source: e,
    }
    .into()
}

/// A `pg.capture_gap` event for changes that were never captured: the
/// slot was lost and install made a new one.
fn gap_event(
    ctx: &Context<'_>,
    trail: &Trail,
    from: &str,
    to: &str,
    report: &mut DrainReport,
) -> Result<(), DrainError> {
    let event = serde_json::json!({
        "action": "pg.capture_gap",
        "severity": "warning",
        "actor": { "id": "sealtrail", "type": "service" },
        "targets": [{ "type": "database", "id": ctx.database }],
        "message": format!("changes of database {} between LSN {from} and {to} were not captured: the replication slot was lost", ctx.database),
        "details": { "database": ctx.database, "from_lsn": from, "to_lsn": to },
        "idempotency_key": format!("pg-{}-gap-{from}-{to}", ctx.epoch),
    });
    let bytes = serde_json::to_vec(&event).unwrap_or_default();
    match trail.ingest(&[bytes.as_slice()], true)?.items.first() {
        Some(sealtrail_trail::Item::Rejected(why)) => Err(DrainError::RejectedChange {
            lsn: to.into(),
            position: 0,
            reason: why.to_string(),
        }),
        _ => Ok(()),
    }
    .map(|()| report.appended += 1)
}

/// What capture knows of a relation the stream describes.
fn describe(relation: Relation, tracked: &HashMap<u32, Tracked>) -> Rel {
    let (key, excluded_names): (Vec<String>, &[String]) = match tracked.get(&relation.id) {
        Some(t) => (t.key_columns.clone(), &t.excluded),
        // Not recorded at install (re-created since): the replica
        // identity's columns, unless that is the whole row.
        None if relation.replica_identity != b'f' => (
            relation
                .columns
                .iter()
                .filter(|c| c.key)
                .map(|c| c.name.clone())
                .collect(),
            &[],
        ),
        None => (Vec::new(), &[]),
    };
    let excluded = relation
        .columns
        .iter()
        .map(|c| excluded_names.contains(&c.name))
        .collect();
    Rel {
        relation,
        key,
        excluded,
    }
}

fn change(t: &Txn, kind: &str, payload: String) -> OutboxRow {
    OutboxRow {
        id: t.position,
        xid: t.xid.clone(),
        kind: kind.into(),
        payload,
        captured_at: t.commit_time.clone(),
        commit_time: Some(t.commit_time.clone()),
        commit_lsn: Some(t.lsn.clone()),
    }
}

/// `"schema":…,"table":…` of a relation.
fn names(out: &mut String, r: &Relation) {
    out.push_str("\"schema\":");
    json_string(out, &r.namespace);
    out.push_str(",\"table\":");
    json_string(out, &r.name);
}

/// The payload of a row change, shaped as a capture trigger writes it
/// (see [`crate::drain`]): `schema`, `table`, `key`, `before`, `after`,
/// the actor's fields, and `unchanged_toast` for TOASTed values an update
/// left as they were and the stream therefore does not carry.
fn row_payload(rel: &Rel, t: &Txn, old: Option<&[Value<'_>]>, new: Option<&[Value<'_>]>) -> String {
    let mut out = String::with_capacity(256);
    out.push('{');
    names(&mut out, &rel.relation);
    out.push_str(",\"key\":[");
    for (i, k) in rel.key.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(&mut out, k);
    }
    out.push(']');
    let mut unchanged = Vec::new();
    if let Some(old) = old {
        out.push_str(",\"before\":");
        image(&mut out, rel, old, None, &mut Vec::new());
    }
    if let Some(new) = new {
        out.push_str(",\"after\":");
        image(&mut out, rel, new, old, &mut unchanged);
    }
    if !unchanged.is_empty() {
        out.push_str(",\"unchanged_toast\":[");
        for (i, c) in unchanged.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_string(&mut out, c);
        }
        out.push(']');
    }
    out.push_str(&t.meta);
    out.push('}');
    out
}

/// A row image as a JSON object, without excluded columns. An unchanged
/// TOAST value is taken from `old` when it has it, and otherwise left out
/// (its column named in `unchanged`).
fn image(out: &mut String, rel: &Rel, values: &[Value<'_>], old: Option<&[Value<'_>]>, unchanged: &mut Vec<String>) {
    out.push('{');
    let mut first = true;
    for (i, (column, value)) in rel.relation.columns.iter().zip(values).enumerate() {
        if rel.excluded.get(i).copied().unwrap_or(false) {
            continue;
        }
        let value = match (value, old.and_then(|o| o.get(i))) {
            (Value::UnchangedToast, Some(v @ Value::Text(_))) => *v,
            (Value::UnchangedToast, _) => {
                unchanged.push(column.name.clone());
                continue;
            }
            (v, _) => *v,
        };
        if !first {
            out.push(',');
        }
        first = false;
        json_string(out, &column.name);
        out.push(':');
        match value {
            Value::Null | Value::UnchangedToast => out.push_str("null"),
            Value::Text(text) => json_value(out, column.type_oid, text),
        }
    }
    out.push('}');
}

/// A column value's text output as JSON, as `to_jsonb` would give it for
/// numbers, booleans and JSON; every other type as a string of its text.
/// Numbers go in as their exact text; the drain turns those a double
/// cannot hold into strings.
fn json_value(out: &mut String, type_oid: u32, text: &[u8]) {
    const BOOL: u32 = 16;
    const INTS: [u32; 4] = [20, 21, 23, 26];
    const FLOATS: [u32; 3] = [700, 701, 1700];
    const JSON: [u32; 2] = [114, 3802];
    let s = String::from_utf8_lossy(text);
    let as_is = ((INTS.contains(&type_oid) || FLOATS.contains(&type_oid)) && is_json_number(&s))
        || (JSON.contains(&type_oid) && serde_json::from_str::<serde::de::IgnoredAny>(&s).is_ok());
    if type_oid == BOOL {
        out.push_str(if s == "t" { "true" } else { "false" });
    } else if as_is {
        out.push_str(&s);
    } else {
        json_string(out, &s);
    }
}

/// Whether `s` is a number in JSON's grammar (`NaN`, `Infinity` are not).
fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    if digits(&mut i) == 0 || (b[int_start] == b'0' && i - int_start > 1) {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

fn json_string(out: &mut String, s: &str) {
    let _ = write!(out, "{}", serde_json::Value::from(s));
}

/// The members `,"actor":…,"reason":…` of an actor message's JSON object
/// (only its string fields; anything else in it is ignored).
fn actor_members(content: &[u8]) -> String {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(content) else {
        return String::new();
    };
    let mut out = String::new();
    for key in ["actor", "reason", "request_id", "role", "application_name"] {
        if let Some(serde_json::Value::String(v)) = fields.get(key) {
            out.push(',');
            json_string(&mut out, key);
            out.push(':');
            json_string(&mut out, v);
        }
    }
    out
}

/// A pgoutput time (microseconds since 2000-01-01 UTC) as RFC 3339 UTC
/// with microseconds.
fn pg_time(micros: i64) -> String {
    const UNIX_2000: i64 = 946_684_800_000_000;
    let t = jiff::Timestamp::from_microsecond(micros.saturating_add(UNIX_2000)).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers() {
        for ok in [
            "0",
            "-1",
            "12.50",
            "1e+100",
            "1e-05",
            "-0.5E3",
            "123456789012345678901234567890",
        ] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in ["NaN", "Infinity", "-Infinity", "01", "1.", ".5", "1e", "", "-", "1 "] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn values_as_json() {
        let check = |oid: u32, text: &str, expected: &str| {
            let mut out = String::new();
            json_value(&mut out, oid, text.as_bytes());
            assert_eq!(out, expected, "type {oid}, text {text}");
        };
        check(16, "t", "true");
        check(16, "f", "false");
        check(23, "17", "17");
        check(1700, "NaN", "\"NaN\"");
        check(701, "-Infinity", "\"-Infinity\"");
        check(3802, r#"{"a": [1, 2]}"#, r#"{"a": [1, 2]}"#);
        check(114, "{broken", r#""{broken""#);
        check(25, "say \"hi\"\n", r#""say \"hi\"\n""#);
        check(1184, "2026-12-06 22:28:18.5+00", r#""2026-12-06 22:28:18.5+00""#);
    }

    #[test]
    fn times() {
        assert_eq!(pg_time(0), "2000-01-01T00:00:00.000000Z");
        assert_eq!(pg_time(1_500_000), "2000-01-01T00:00:01.500000Z");
    }

    #[test]
    fn actor_messages() {
        assert_eq!(
            actor_members(br#"{"actor":"u-17","reason":null,"request_id":"r","role":"app","x":1}"#),
            r#","actor":"u-17","request_id":"r","role":"app""#
        );
        assert_eq!(actor_members(b"not json"), "");
    }
}
