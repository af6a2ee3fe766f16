//! Exactly-once delivery of captured changes from a tracked database's
//! outbox into a trail.
//!
//! A drain reads only outbox rows of transactions older than every
//! transaction still in flight (`xid < pg_snapshot_xmin(pg_current_snapshot())`),
//! in (transaction id, row id) order, so a slow transaction that commits
//! after later ones is never skipped: it holds the horizon back until it
//! ends. Each row becomes one event whose idempotency key is
//! `pg-<epoch>-<xid>-<id>`; the batch is appended durably, and only then
//! are its rows deleted from the outbox (with the watermark updated in the
//! same transaction). A drain runs in passes: each reads the keys
//! (xid, id, row version, stored size) of up to 200,000 waiting rows in
//! that order, one scan and bounded sort of narrow rows, since the outbox
//! has no index for writers to maintain; cuts them into batches; reads
//! each batch's rows by row version (`ctid`) while the last batch is
//! appended; and deletes the row versions holding the (xid, id) it
//! appended. Every statement is short: no transaction stays open across
//! an append. A row no longer at its version (the table was rewritten
//! meanwhile) ends the pass just before it, so rows still go out in
//! order; passes repeat until one drains nothing.
//!
//! A drain ends: it takes only transactions with an id below the horizon
//! it notes as it starts, `pg_snapshot_xmax` (one past the latest
//! transaction then ended), so a writer that never pauses cannot keep one
//! running for ever. Transactions that end later wait for the next drain,
//! unless an older one still running held them below the horizon.
//!
//! Why nothing is lost or duplicated: a row leaves the outbox only after
//! the trail acknowledged it as durable. A drainer killed after the append
//! but before the delete commits leaves the rows in place; the next drain
//! appends them again, and the trail stores each key once, so the re-append
//! is a no-op. A PostgreSQL crash either keeps a committed delete or rolls
//! it back, the same two cases. The outbox row is written by the captured
//! transaction itself, so it exists exactly when the change committed.
//!
//! An install in logical-decoding mode is drained by [`crate::logical`]
//! instead; [`drain`] chooses by the install's mode. Not here: continuous
//! following (the caller loops).

use std::fmt::Write as _;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use thiserror::Error;

use sealtrail_trail::{Item, Trail, TrailError};

use crate::capture::{self, CaptureError};

/// How a drain runs.
#[derive(Debug, Clone)]
pub struct DrainOptions {
    /// Outbox rows per read, append and delete.
    pub batch: usize,
    /// Stop after this many rows (for tests and bounded runs); `None`: until
    /// the outbox holds nothing older than the in-flight horizon of the
    /// transactions that had ended when the drain started (in logical
    /// mode, nothing up to the WAL position of its start).
    pub limit: Option<u64>,
}

impl Default for DrainOptions {
    fn default() -> Self {
        Self {
            batch: 10_000,
            limit: None,
        }
    }
}

/// What a drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Outbox rows read (and deleted once appended).
    pub rows: u64,
    /// Events appended now.
    pub appended: u64,
    /// Rows whose event an earlier, interrupted drain had already appended.
    pub duplicates: u64,
    /// Updates that changed only excluded columns: deleted, no event.
    pub skipped: u64,
    pub batches: u64,
    /// The last (transaction id, outbox id) drained by this run.
    pub through: Option<(String, i64)>,
}

/// What a drain refuses or fails at.
#[derive(Debug, Error)]
pub enum DrainError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("appending to the trail: {0}")]
    Trail(#[from] TrailError),
    /// The trail refused the event made of one outbox row; nothing of its
    /// batch was appended or deleted.
    #[error("outbox row {id} (transaction {xid}) makes an event the trail refuses: {reason}")]
    Rejected { id: i64, xid: String, reason: String },
    /// The same, for a change read from a replication slot.
    #[error("change {position} of the transaction committed at LSN {lsn} makes an event the trail refuses: {reason}")]
    RejectedChange { lsn: String, position: i64, reason: String },
    /// The replication slot of a logical-decoding install is gone or
    /// unusable; see [`crate::logical`].
    #[error(transparent)]
    Slot(#[from] crate::logical::SlotError),
}

/// The largest entry a drained event is shaped to stay under, leaving room
/// for the fields the trail adds (`id`, `received_at`).
const ENTRY_BUDGET: usize = sealtrail_event::limits::MAX_ENTRY_BYTES - 1024;
/// `details.statement` is cut to this many bytes (the full text's length
/// and SHA-256 are kept beside it).
const STATEMENT_BYTES: usize = 8 * 1024;
/// A batch stops at the row that passes this many stored payload bytes
/// (always taking at least one row), so that a run of TOAST-sized rows
/// does not fill memory.
const BATCH_BYTES: i64 = 32 << 20;
/// Successive limits on the JSON size of one column value in a row image;
/// a larger value is replaced by its length and SHA-256.
const VALUE_LIMITS: [usize; 4] = [4096, 1024, 256, 64];

/// Drain the outbox of the database at `dsn` into `trail` once: until no
/// row older than the in-flight horizon remains below the transaction
/// horizon noted as it starts (or `opts.limit`); transactions that end
/// later wait for the next drain. Only one drain of a database runs at a time (a session
/// advisory lock; a second waits).
pub fn drain(dsn: &str, trail: &Trail, opts: &DrainOptions) -> Result<DrainReport, DrainError> {
    let (mut client, database) = capture::connect(dsn)?;
    client
        .execute("SELECT pg_advisory_lock(hashtext('sealtrail.drain'))", &[])
        .map_err(CaptureError::pg("locking the drain"))?;
    let (epoch, mode) = {
        let mut tx = client.transaction().map_err(CaptureError::pg("reading the install"))?;
        if capture::installed_version(&mut tx)?.is_none() {
            return Err(CaptureError::NotInstalled { database }.into());
        }
        let row = tx
            // Read so that an install of version 1 (no `mode`) drains too.
            .query_one(
                "SELECT epoch::text, coalesce(to_jsonb(i) ->> 'mode', 'triggers') FROM sealtrail.install i",
                &[],
            )
            .map_err(CaptureError::pg("reading the install"))?;
        tx.commit().map_err(CaptureError::pg("reading the install"))?;
        (row.get::<_, String>(0), row.get::<_, String>(1))
    };
    if mode == "logical" {
        let ctx = Context {
            database: &database,
            epoch: &epoch,
        };
        return crate::logical::drain(&mut client, &ctx, trail, opts);
    }
    let commit_times: bool = client
        .query_one("SELECT current_setting('track_commit_timestamp')::boolean", &[])
        .map_err(CaptureError::pg("reading track_commit_timestamp"))?
        .get(0);
    // A row change's payload is built here from its columns (the writer
    // stores them plain, see the capture SQL); DDL and truncate rows, and
    // rows of installs before version 3, carry theirs whole. The key
    // columns come from the tracked-tables list: a table since dropped
    // from it has none, and its rows are identified by their image.
    let rows = format!(
        "SELECT o.ctid::text, o.id, o.xid::text, o.kind,
                coalesce(o.payload::text, json_build_object(
                    'schema', o.table_schema, 'table', o.table_name,
                    'key', coalesce(to_json(t.key_columns), '[]'::json),
                    'before', o.before, 'after', o.after,
                    'actor', o.actor, 'reason', o.reason, 'request_id', o.request_id,
                    'role', o.role, 'application_name', o.application_name)::text),
                to_char(o.captured_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                {commit}
           FROM sealtrail.outbox o
           LEFT JOIN sealtrail.tables t ON t.relid = o.relid
          WHERE o.ctid = ANY($1::text[]::tid[])",
        commit = if commit_times {
            "to_char(pg_xact_commit_timestamp(o.xid::xid) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        } else {
            "NULL::text"
        }
    );
    let statements = Statements {
        // Narrow rows, so that a pass's sort stays small however large
        // the captured values. ORDER BY names the table's columns: the
        // output column `xid` is text, and text order is not transaction
        // order once ids gain a digit ("1000" < "999").
        keys: client
            .prepare(
                "SELECT o.xid::text AS xid, o.id, o.ctid::text,
                        coalesce(pg_column_size(o.payload), 0)::int8
                          + coalesce(pg_column_size(o.before), 0) + coalesce(pg_column_size(o.after), 0)
                   FROM sealtrail.outbox o
                  WHERE o.xid < pg_snapshot_xmin(pg_current_snapshot())
                    AND o.xid < $2::text::xid8
                  ORDER BY o.xid, o.id
                  LIMIT $1",
            )
            .map_err(CaptureError::pg("preparing the outbox read"))?,
        rows: client
            .prepare(&rows)
            .map_err(CaptureError::pg("preparing the outbox read"))?,
    };
    // One past the latest transaction ended by now: every transaction
    // that ended before this drain has an id below it, and any that write
    // first later have ids above it.
    let end: String = client
        .query_one("SELECT pg_snapshot_xmax(pg_current_snapshot())::text", &[])
        .map_err(CaptureError::pg("reading the transaction horizon"))?
        .get(0);
    let ctx = Context {
        database: &database,
        epoch: &epoch,
    };
    let mut report = DrainReport::default();
    // A pass cut short by rows that moved is followed by another; three
    // in a row that drain nothing end the run (the next one looks again).
    let mut idle = 0;
    while idle < 3 {
        let pass = drain_pass(&ctx, &mut client, &statements, &end, trail, opts, &mut report)?;
        if pass.deleted == 0 && !pass.cut_short {
            break;
        }
        idle = if pass.deleted == 0 { idle + 1 } else { 0 };
    }
    Ok(report)
}

/// The prepared reads of a drain.
struct Statements {
    /// The drain-order keys of waiting rows: (xid, id, ctid, stored size).
    keys: postgres::Statement,
    /// The rows at the given row versions, payloads built.
    rows: postgres::Statement,
}

/// Most keys one pass reads: each pass scans the outbox once (it has no
/// index), so a backlog costs a scan per this many rows; the keys take
/// about 20 MB here and, in the server's bounded sort, under
/// [`PASS_WORK_MEM`].
const PASS_ROWS: i64 = 200_000;
/// `work_mem` for the keys' read: enough for PostgreSQL to keep the
/// [`PASS_ROWS`] first keys in a bounded in-memory sort instead of
/// sorting every waiting row's key on disk.
const PASS_WORK_MEM: &str = "64MB";

/// What one pass did.
struct Pass {
    /// Rows deleted (appended, or found already appended).
    deleted: u64,
    /// The pass stopped at a row no longer where its key said (the table
    /// was rewritten meanwhile); a new pass reads the keys again.
    cut_short: bool,
}

/// The drain-order key of one waiting outbox row.
struct Key {
    xid: String,
    id: i64,
    ctid: String,
    /// Stored bytes of its payload and images.
    size: i64,
}

/// One pass of a drain: the keys of the rows older than the in-flight
/// horizon, in drain order (one scan and sort of the outbox, narrow
/// rows, up to [`PASS_ROWS`]), cut into batches; each batch's rows read by
/// their row versions, appended, and then deleted. Every statement is a
/// short one of its own: no transaction stays open across an append. A
/// batch stops before the first key whose row is no longer at its row
/// version, and the pass ends there, so that rows go out in drain order
/// whatever moved.
fn drain_pass(
    ctx: &Context<'_>,
    client: &mut postgres::Client,
    statements: &Statements,
    end: &str,
    trail: &Trail,
    opts: &DrainOptions,
    report: &mut DrainReport,
) -> Result<Pass, DrainError> {
    let mut pass = Pass {
        deleted: 0,
        cut_short: false,
    };
    let want = match opts.limit {
        Some(limit) => limit.saturating_sub(report.rows),
        None => u64::MAX,
    }
    .min(PASS_ROWS as u64);
    if want == 0 {
        return Ok(pass);
    }
    let mut tx = client.transaction().map_err(CaptureError::pg("reading the outbox"))?;
    tx.batch_execute(&format!("SET LOCAL work_mem = '{PASS_WORK_MEM}'"))
        .map_err(CaptureError::pg("reading the outbox"))?;
    let keys = tx
        .query(&statements.keys, &[&(want as i64), &end])
        .map_err(CaptureError::pg("reading the outbox"))?;
    tx.commit().map_err(CaptureError::pg("reading the outbox"))?;
    let keys: Vec<Key> = keys
        .iter()
        .map(|r| Key {
            xid: r.get(0),
            id: r.get(1),
            ctid: r.get(2),
            size: r.get(3),
        })
        .collect();
    let batches = cut(&keys, opts.batch.max(1));
    let mut batch = read_rows(client, &statements.rows, batches.first().map_or(&[][..], |b| b))?;
    for (i, keys) in batches.iter().enumerate() {
        let count = batch.len() as u64;
        pass.cut_short = batch.len() < keys.len();
        // The next batch is read while this one is appended; the delete
        // below still waits for the append to be durable. The server
        // builds the next payloads while the trail ingests these.
        let next_keys = match batches.get(i + 1) {
            Some(next) if !pass.cut_short => next,
            _ => &[][..],
        };
        let (appended, next) = std::thread::scope(|s| {
            let reader = s.spawn(|| read_rows(client, &statements.rows, next_keys));
            let appended = append(ctx, trail, &batch, report);
            (appended, reader.join())
        });
        appended?;
        let next = next.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        let Some(last) = batch.last() else { break };
        // The append is durable: now, and only now, the rows may go: by
        // their row versions, and only a version still holding an (xid, id)
        // appended ((xid, id) is unique: only the capture functions write
        // the outbox, each row with an id of its own). The batch is the
        // rows of its keys' first `count`, in their order.
        let appended_keys = &keys[..batch.len()];
        let ctids: Vec<&str> = appended_keys.iter().map(|k| k.ctid.as_str()).collect();
        let xids: Vec<&str> = appended_keys.iter().map(|k| k.xid.as_str()).collect();
        let ids: Vec<i64> = appended_keys.iter().map(|k| k.id).collect();
        let mut tx = client
            .transaction()
            .map_err(CaptureError::pg("deleting drained rows"))?;
        let deleted = tx
            .execute(
                "DELETE FROM sealtrail.outbox
                  WHERE ctid = ANY($1::text[]::tid[])
                    AND (xid, id) IN (SELECT * FROM unnest($2::text[]::xid8[], $3::int8[]))",
                &[&ctids, &xids, &ids],
            )
            .map_err(CaptureError::pg("deleting drained rows"))?;
        // The total counts rows that left the outbox here, so that it stays
        // true should rows ever be drained twice (their events are then
        // duplicates the trail did not store again).
        if deleted != count {
            tracing::warn!(
                database = %ctx.database,
                read = count,
                deleted,
                "{} of {count} drained outbox rows had already left the outbox",
                count - deleted.min(count)
            );
        }
        tx.execute(
            "UPDATE sealtrail.install SET drained_xid = $1::text::xid8, drained_id = $2,
                    drained_total = drained_total + $3, drained_at = now()",
            &[&last.xid, &last.id, &(deleted as i64)],
        )
        .map_err(CaptureError::pg("storing the watermark"))?;
        tx.commit()
            .map_err(CaptureError::pg("committing the drained rows' deletion"))?;
        report.rows += count;
        report.batches += 1;
        report.through = Some((last.xid.clone(), last.id));
        pass.deleted += deleted;
        if pass.cut_short {
            break;
        }
        batch = next;
    }
    Ok(pass)
}

/// `keys` cut into batches of at most `rows` keys, each ending at the key
/// that passes [`BATCH_BYTES`] of stored payload (always at least one).
fn cut(keys: &[Key], rows: usize) -> Vec<&[Key]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < keys.len() {
        let mut end = start;
        let mut bytes = 0i64;
        while end < keys.len() && end - start < rows && bytes < BATCH_BYTES {
            bytes += keys[end].size;
            end += 1;
        }
        out.push(&keys[start..end]);
        start = end;
    }
    out
}

/// The rows of `keys`, in their order, read by row version, up to the
/// first key whose version no longer holds that row (deleted meanwhile,
/// or moved by a rewrite of the table).
fn read_rows(
    client: &mut postgres::Client,
    statement: &postgres::Statement,
    keys: &[Key],
) -> Result<Vec<OutboxRow>, CaptureError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let ctids: Vec<&str> = keys.iter().map(|k| k.ctid.as_str()).collect();
    let mut found: std::collections::HashMap<String, OutboxRow> = client
        .query(statement, &[&ctids])
        .map_err(CaptureError::pg("reading the outbox"))?
        .iter()
        .map(|r| {
            let row = OutboxRow {
                id: r.get(1),
                xid: r.get(2),
                kind: r.get(3),
                payload: r.get(4),
                captured_at: r.get(5),
                commit_time: r.get(6),
                commit_lsn: None,
            };
            (r.get(0), row)
        })
        .collect();
    Ok(keys
        .iter()
        .map_while(|k| found.remove(&k.ctid).filter(|row| row.xid == k.xid && row.id == k.id))
        .collect())
}

/// Append the events of `rows` to `trail` durably, counting them in
/// `report` (everything but `rows` and `batches`).
pub(crate) fn append(
    ctx: &Context<'_>,
    trail: &Trail,
    rows: &[OutboxRow],
    report: &mut DrainReport,
) -> Result<(), DrainError> {
    let events = map_all(ctx, rows);
    let mut origin: Vec<&OutboxRow> = Vec::with_capacity(rows.len());
    let mut inputs: Vec<&[u8]> = Vec::with_capacity(rows.len());
    for (o, e) in rows.iter().zip(&events) {
        match e {
            Some(e) => {
                inputs.push(e);
                origin.push(o);
            }
            None => report.skipped += 1,
        }
    }
    let ingested = if inputs.is_empty() {
        Vec::new()
    } else {
        trail.ingest(&inputs, true)?.items
    };
    for (item, o) in ingested.iter().zip(&origin) {
        match item {
            Item::Stored { duplicate: false, .. } => report.appended += 1,
            Item::Stored { duplicate: true, .. } => report.duplicates += 1,
            Item::Rejected(why) => {
                return Err(match &o.commit_lsn {
                    None => DrainError::Rejected {
                        id: o.id,
                        xid: o.xid.clone(),
                        reason: why.to_string(),
                    },
                    Some(lsn) => DrainError::RejectedChange {
                        lsn: lsn.clone(),
                        position: o.id,
                        reason: why.to_string(),
                    },
                })
            }
            Item::NotAppended => {}
        }
    }
    Ok(())
}

/// The events of `rows`, in order, made on as many threads as there are
/// cores (making events costs more than reading the rows).
fn map_all(ctx: &Context<'_>, rows: &[OutboxRow]) -> Vec<Option<Vec<u8>>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || rows.len() < 256 {
        return rows.iter().map(|r| event(ctx, r)).collect();
    }
    let chunk = rows.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = rows
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|r| event(ctx, r)).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

pub(crate) struct Context<'a> {
    pub(crate) database: &'a str,
    pub(crate) epoch: &'a str,
}

/// One outbox row as read.
pub(crate) struct OutboxRow {
    pub(crate) id: i64,
    pub(crate) xid: String,
    pub(crate) kind: String,
    pub(crate) payload: String,
    /// When the trigger ran; for a change read from a replication slot,
    /// the commit time.
    pub(crate) captured_at: String,
    pub(crate) commit_time: Option<String>,
    /// A change read from a replication slot: its transaction's commit
    /// LSN (`id` is then the change's position in the transaction).
    pub(crate) commit_lsn: Option<String>,
}

/// The event JSON of one outbox row; `None` for an update that changed
/// only excluded columns. Never fails: whatever the payload, the event
/// records it within the schema's bounds.
pub(crate) fn event(ctx: &Context<'_>, row: &OutboxRow) -> Option<Vec<u8>> {
    let payload: Value = serde_json::from_str(&exact_numbers(&row.payload))
        .unwrap_or_else(|e| json!({ "unreadable_payload": e.to_string() }));
    let text = |key: &str| payload.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
    let role = text("role").unwrap_or("unknown");
    let mut details = Map::new();
    details.insert("database".into(), ctx.database.into());
    details.insert("role".into(), role.into());
    details.insert("transaction_id".into(), row.xid.clone().into());
    let key = match &row.commit_lsn {
        None => {
            details.insert("outbox_id".into(), row.id.into());
            details.insert("captured_at".into(), row.captured_at.clone().into());
            format!("pg-{}-{}-{}", ctx.epoch, row.xid, row.id)
        }
        Some(lsn) => {
            details.insert("commit_lsn".into(), lsn.clone().into());
            details.insert("position".into(), row.id.into());
            if let Some(columns) = payload.get("unchanged_toast").filter(|v| v.is_array()) {
                details.insert("unchanged_toast".into(), columns.clone());
            }
            format!("pg-{}-{}-{}", ctx.epoch, lsn, row.id)
        }
    };
    if let Some(t) = &row.commit_time {
        details.insert("commit_time".into(), t.clone().into());
    }
    for key in ["application_name", "reason"] {
        if let Some(v) = text(key) {
            details.insert(key.into(), bounded(v, 1024).into());
        }
    }
    let actor = match text("actor") {
        Some(a) => json!({ "id": bounded(a, 256), "type": "user" }),
        None => json!({ "id": bounded(role, 256) }),
    };
    let mut event = Map::new();
    event.insert("occurred_at".into(), row.captured_at.clone().into());
    event.insert("actor".into(), actor);
    if let Some(r) = text("request_id") {
        event.insert("context".into(), json!({ "request_id": bounded(r, 256) }));
    }
    event.insert("idempotency_key".into(), key.into());
    let table = format!("{}.{}", text("schema").unwrap_or("?"), text("table").unwrap_or("?"));
    match row.kind.as_str() {
        "insert" | "update" | "delete" => {
            return row_event(event, details, payload, row.payload.len(), &row.kind, &table);
        }
        "truncate" => {
            event.insert("action".into(), "pg.truncate".into());
            event.insert("crud".into(), "d".into());
            event.insert(
                "targets".into(),
                json!([{ "type": "table", "id": bounded(&table, 256) }]),
            );
            statement(&mut details, text("statement"));
        }
        "ddl" => {
            event.insert("action".into(), "pg.ddl".into());
            let objects = payload
                .get("objects")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let targets: Vec<Value> = objects
                .iter()
                .take(sealtrail_event::limits::MAX_TARGETS)
                .map(|o| {
                    let kind = o.get("object_type").and_then(Value::as_str).filter(|s| !s.is_empty());
                    let id = o.get("identity").and_then(Value::as_str).filter(|s| !s.is_empty());
                    json!({ "type": bounded(kind.unwrap_or("object"), 128), "id": bounded(id.unwrap_or("?"), 256) })
                })
                .collect();
            event.insert("targets".into(), targets.into());
            for key in ["event", "command_tag"] {
                if let Some(v) = text(key) {
                    details.insert(key.into(), v.into());
                }
            }
            let listed = serde_json::to_vec(&objects).map(|v| v.len()).unwrap_or(0);
            details.insert("objects_count".into(), objects.len().into());
            if listed <= 8 * 1024 {
                details.insert("objects".into(), objects.into());
            }
            statement(&mut details, text("statement"));
        }
        other => {
            event.insert("action".into(), "pg.unknown".into());
            details.insert("kind".into(), bounded(other, 128).into());
        }
    }
    event.insert("details".into(), details.into());
    Some(serde_json::to_vec(&event).unwrap_or_default())
}

/// A row change: targets from the key, images bounded to fit an entry.
fn row_event(
    mut event: Map<String, Value>,
    mut details: Map<String, Value>,
    mut payload: Value,
    payload_bytes: usize,
    kind: &str,
    table: &str,
) -> Option<Vec<u8>> {
    let (action, crud) = match kind {
        "insert" => ("pg.insert", "c"),
        "update" => ("pg.update", "u"),
        _ => ("pg.delete", "d"),
    };
    event.insert("action".into(), action.into());
    event.insert("crud".into(), crud.into());
    let before = payload.get("before").filter(|v| !v.is_null());
    let after = payload.get("after").filter(|v| !v.is_null());
    let image = after.or(before).unwrap_or(&Value::Null);
    let key: Vec<&str> = payload
        .get("key")
        .and_then(Value::as_array)
        .map(|k| k.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    event.insert(
        "targets".into(),
        json!([{ "type": bounded(table, 128), "id": target_id(&key, image) }]),
    );
    // Changed columns, in column-name order; an update of excluded columns
    // only changes nothing that is recorded, and is no event.
    let mut fields: Vec<Value> = Vec::new();
    // Without an old image (logical decoding of a table whose replica
    // identity is not FULL) the changed columns are unknown: no `fields`.
    let fields_known = kind == "update" && before.is_some();
    if fields_known {
        if let (Some(Value::Object(b)), Some(Value::Object(a))) = (before, after) {
            fields = a
                .iter()
                .filter(|(k, v)| b.get(*k) != Some(*v))
                .map(|(k, _)| Value::from(k.as_str()))
                .collect();
        }
        if fields.is_empty() {
            return None;
        }
    }
    if fields.len() > sealtrail_event::limits::MAX_CHANGED_FIELDS {
        details.insert("fields_count".into(), fields.len().into());
        fields.truncate(sealtrail_event::limits::MAX_CHANGED_FIELDS);
    }
    // The common case: no value can pass the first limit, so the images go
    // in as they are.
    let shallow = |v: Option<&Value>| v.is_none_or(|v| depth(v) <= sealtrail_event::limits::MAX_DEPTH);
    if payload_bytes <= VALUE_LIMITS[0] && shallow(before) && shallow(after) {
        let mut changes = Map::new();
        if let Some(p) = payload.as_object_mut() {
            for name in ["before", "after"] {
                if let Some(image) = p.remove(name).filter(|v| !v.is_null()) {
                    changes.insert(name.into(), image);
                }
            }
        }
        if fields_known {
            changes.insert("fields".into(), fields.into());
        }
        event.insert("changes".into(), changes.into());
        event.insert("details".into(), details.into());
        return Some(serde_json::to_vec(&event).unwrap_or_default());
    }
    for limit in VALUE_LIMITS.into_iter().map(Some).chain([None]) {
        let mut omitted = Vec::new();
        let mut changes = Map::new();
        for (name, image) in [("before", before), ("after", after)] {
            if let Some(image) = image {
                changes.insert(name.into(), shrink(name, image, limit, &mut omitted));
            }
        }
        if fields_known {
            changes.insert("fields".into(), fields.clone().into());
        }
        let mut details = details.clone();
        if !omitted.is_empty() {
            details.insert("omitted".into(), omitted.into());
        }
        let mut e = event.clone();
        e.insert("changes".into(), changes.into());
        e.insert("details".into(), details.into());
        let bytes = serde_json::to_vec(&e).unwrap_or_default();
        if bytes.len() <= ENTRY_BUDGET || limit.is_none() {
            return Some(bytes);
        }
    }
    unreachable!("the last limit always returns")
}

/// A row image with every column value larger than `limit` (JSON bytes),
/// or nested too deeply for the schema, replaced by its size and SHA-256;
/// `limit` None replaces the whole image.
fn shrink(name: &str, image: &Value, limit: Option<usize>, omitted: &mut Vec<Value>) -> Value {
    let Some(limit) = limit else {
        omitted.push(name.into());
        return digest(&serde_json::to_vec(image).unwrap_or_default());
    };
    let Value::Object(columns) = image else {
        return image.clone();
    };
    let mut out = Map::new();
    for (column, value) in columns {
        let text = serde_json::to_vec(value).unwrap_or_default();
        // The image object is one level, the schema allows 16.
        if text.len() > limit || depth(value) > sealtrail_event::limits::MAX_DEPTH - 1 {
            omitted.push(format!("{name}.{column}").into());
            out.insert(column.clone(), digest(&text));
        } else {
            out.insert(column.clone(), value.clone());
        }
    }
    Value::Object(out)
}

fn digest(bytes: &[u8]) -> Value {
    json!({ "omitted": true, "bytes": bytes.len(), "sha256": sha256_hex(bytes) })
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The target id of a row: its primary-key value (one column: the value's
/// text; several: a JSON array of the values), or without a primary key
/// `sha256:` and the hash of the row image's JSON. An id longer than the
/// schema allows is replaced by `sha256:` and its hash.
fn target_id(key: &[&str], image: &Value) -> String {
    let whole = |v: &Value| format!("sha256:{}", sha256_hex(&serde_json::to_vec(v).unwrap_or_default()));
    let value_text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let id = match key {
        [] => return whole(image),
        [one] => match image.get(*one) {
            Some(v) => value_text(v),
            None => return whole(image),
        },
        many => {
            let values: Vec<Value> = many
                .iter()
                .map(|k| image.get(*k).cloned().unwrap_or(Value::Null))
                .collect();
            Value::Array(values).to_string()
        }
    };
    if id.is_empty() || id.chars().count() > sealtrail_event::limits::ID_CHARS {
        format!("sha256:{}", sha256_hex(id.as_bytes()))
    } else {
        id
    }
}

/// `details.statement`, cut to [`STATEMENT_BYTES`] with the full text's
/// length and hash beside it when longer.
fn statement(details: &mut Map<String, Value>, text: Option<&str>) {
    let Some(text) = text else { return };
    if text.len() <= STATEMENT_BYTES {
        details.insert("statement".into(), text.into());
        return;
    }
    let mut cut = STATEMENT_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    details.insert("statement".into(), text[..cut].into());
    details.insert("statement_bytes".into(), text.len().into());
    details.insert("statement_sha256".into(), sha256_hex(text.as_bytes()).into());
}

/// `s` cut to at most `chars` characters.
fn bounded(s: &str, chars: usize) -> String {
    match s.char_indices().nth(chars) {
        Some((at, _)) => s[..at].to_string(),
        None => s.to_string(),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(64);
    for b in Sha256::digest(bytes) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `json` (as PostgreSQL prints jsonb) with every number that an event
/// could not store exactly turned into a string of its decimal text: an
/// event stores numbers as IEEE-754 doubles within ±(2^53 − 1), and a
/// `numeric` column can hold far more digits than that.
pub(crate) fn exact_numbers(json: &str) -> std::borrow::Cow<'_, str> {
    let bytes = json.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len() && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    i += 1;
                }
                let number = &json[start..i];
                if !exact_in_double(number) {
                    let o = out.get_or_insert_with(|| String::with_capacity(json.len() + 16));
                    o.push_str(&json[copied..start]);
                    o.push('"');
                    o.push_str(number);
                    o.push('"');
                    copied = i;
                }
            }
            _ => i += 1,
        }
    }
    match out {
        None => std::borrow::Cow::Borrowed(json),
        Some(mut o) => {
            o.push_str(&json[copied..]);
            std::borrow::Cow::Owned(o)
        }
    }
}

/// Whether a JSON number survives storage as a double unchanged in value:
/// an integer within ±(2^53 − 1), or at most 15 significant digits within
/// the range of doubles (15 digits always round-trip).
fn exact_in_double(number: &str) -> bool {
    let unsigned = number.strip_prefix('-').unwrap_or(number);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let frac = frac.trim_end_matches('0');
    if exponent.is_none() && frac.is_empty() {
        return int.len() <= 16
            && int
                .parse::<u64>()
                .is_ok_and(|v| v <= sealtrail_event::limits::MAX_SAFE_INTEGER);
    }
    let digits = format!("{int}{frac}");
    let significant = digits.trim_start_matches('0').trim_end_matches('0');
    if significant.is_empty() {
        return true;
    }
    let Ok(value) = number.parse::<f64>() else {
        return false;
    };
    significant.len() <= 15 && value.is_finite() && value != 0.0 && value.abs() >= f64::MIN_POSITIVE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(exact_numbers(input), expected, "input {input}");
    }

    #[test]
    fn numbers_beyond_a_double_become_strings() {
        check(r#"{"a": 1, "b": -2.5}"#, r#"{"a": 1, "b": -2.5}"#);
        check(r#"{"a": 9007199254740991}"#, r#"{"a": 9007199254740991}"#);
        check(r#"{"a": 9007199254740992}"#, r#"{"a": "9007199254740992"}"#);
        check(r#"{"a": -9223372036854775808}"#, r#"{"a": "-9223372036854775808"}"#);
        check(
            r#"{"a": 0.1000000000000000000001}"#,
            r#"{"a": "0.1000000000000000000001"}"#,
        );
        check(r#"{"a": 1.50000000000000000000}"#, r#"{"a": 1.50000000000000000000}"#);
        check(r#"{"a": 1e-400, "b": 0.000}"#, r#"{"a": "1e-400", "b": 0.000}"#);
        check(r#"{"a": 1e+400}"#, r#"{"a": "1e+400"}"#);
        check(
            r#"{"s": "12345678901234567890 \" 99999999999999999999"}"#,
            r#"{"s": "12345678901234567890 \" 99999999999999999999"}"#,
        );
        check(
            r#"[12345678901234.5, 1234567890123456.7]"#,
            r#"[12345678901234.5, "1234567890123456.7"]"#,
        );
    }

    #[test]
    fn target_ids() {
        let image = json!({"id": 17, "name": "x", "k": "a,b"});
        assert_eq!(target_id(&["id"], &image), "17");
        assert_eq!(target_id(&["k"], &image), "a,b");
        assert_eq!(target_id(&["id", "k"], &image), r#"[17,"a,b"]"#);
        let expected = format!("sha256:{}", sha256_hex(br#"{"id":17,"k":"a,b","name":"x"}"#));
        assert_eq!(target_id(&[], &image), expected);
    }

    #[test]
    fn bounded_counts_characters() {
        assert_eq!(bounded("ééé", 2), "éé");
        assert_eq!(bounded("ab", 5), "ab");
    }
}
