//! The alert tables of the metadata database (`meta.db`): rules, channels,
//! silences, alerts, and each log's evaluation state.
//!
//! Specs are stored as their JSON (the same shape as the API and config),
//! so a stored rule reads back exactly as written. Every change bumps
//! `alert_config.version`, which the evaluator polls to reload; the CLI
//! and the server may both change rules.
//!
//! [`commit`] is the one write the evaluator makes: a log's engine state,
//! the alerts it raised or ended, their notifications (the outbox) and
//! their audit events go into one transaction, so after a crash the
//! evaluator resumes from a state that matches exactly what was sent.

use rusqlite::{params, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::{time_text, LogState, Transition};
use crate::outbox;
use crate::sealed::{self, SealError, SecretKey};
use crate::spec::{ChannelSpec, MessageKind, RuleSpec, SilenceSpec};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alert_rules (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    origin     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_channels (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    origin     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_silences (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    spec       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id          TEXT PRIMARY KEY,
    log         TEXT NOT NULL,
    rule        TEXT NOT NULL,
    condition   TEXT NOT NULL,
    level       TEXT NOT NULL,
    grp         TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('firing', 'resolved', 'fired')),
    summary     TEXT NOT NULL,
    fired_at    TEXT NOT NULL,
    resolved_at TEXT,
    silenced    INTEGER NOT NULL,
    seq         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_seq ON alerts (seq);
CREATE TABLE IF NOT EXISTS alert_state (
    log        TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_config (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT OR IGNORE INTO alert_config (id, version) VALUES (1, 0);
";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// A stored spec this version cannot read (written by a newer one, or
    /// edited by hand).
    #[error("stored {what} {name:?} cannot be read: {reason}")]
    Unreadable {
        what: &'static str,
        name: String,
        reason: String,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Create the tables (and the outbox's) if missing.
pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(outbox::SCHEMA)?;
    Ok(())
}

/// Changes with every rule, channel or silence change.
pub fn config_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT version FROM alert_config WHERE id = 1", [], |r| r.get(0))?)
}

fn bump(conn: &Connection) -> Result<()> {
    conn.execute("UPDATE alert_config SET version = version + 1 WHERE id = 1", [])?;
    Ok(())
}

/// Where a rule or channel was defined: the config file is applied again
/// at every start, so its definitions win over API changes on restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Config,
    Api,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Api => "api",
        }
    }
}

/// A stored rule or channel with its bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stored<T> {
    #[serde(flatten)]
    pub spec: T,
    pub origin: Origin,
    pub created_at: String,
    pub updated_at: String,
}

/// The table of a kind of named spec.
pub trait Named: Serialize + DeserializeOwned {
    const TABLE: &'static str;
    const WHAT: &'static str;
    fn name(&self) -> &str;
}

impl Named for RuleSpec {
    const TABLE: &'static str = "alert_rules";
    const WHAT: &'static str = "rule";
    fn name(&self) -> &str {
        &self.name
    }
}

/// A channel as stored: its JSON with the credentials sealed
/// ([`sealed`](crate::sealed)). Read and written only through the
/// `*_channel` functions, which seal and open.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
struct StoredChannel(Value);

impl Named for StoredChannel {
    const TABLE: &'static str = "alert_channels";
    const WHAT: &'static str = "channel";
    fn name(&self) -> &str {
        self.0.get("name").and_then(Value::as_str).unwrap_or("")
    }
}

/// Create or replace channel `spec`, its credentials sealed with `key`;
/// returns whether it was new.
pub fn put_channel(conn: &Connection, spec: &ChannelSpec, key: &SecretKey, origin: Origin, now: &str) -> Result<bool> {
    let sealed = sealed::seal(spec, key).map_err(|e| unreadable(&spec.name, e))?;
    put(conn, &StoredChannel(sealed), origin, now)
}

fn unreadable(name: &str, e: SealError) -> StoreError {
    StoreError::Unreadable {
        what: "channel",
        name: name.to_string(),
        reason: e.to_string(),
    }
}

fn open_channel(
    stored: Stored<StoredChannel>,
    key: impl FnOnce() -> std::result::Result<SecretKey, SealError>,
) -> Result<(Stored<ChannelSpec>, bool)> {
    let name = stored.spec.name().to_string();
    let (spec, clear) = sealed::open(stored.spec.0, key).map_err(|e| unreadable(&name, e))?;
    Ok((
        Stored {
            spec,
            origin: stored.origin,
            created_at: stored.created_at,
            updated_at: stored.updated_at,
        },
        clear,
    ))
}

/// Channel `name`, its credentials opened with `key` (asked for only when
/// one is sealed).
pub fn get_channel(
    conn: &Connection,
    name: &str,
    key: impl FnOnce() -> std::result::Result<SecretKey, SealError>,
) -> Result<Option<Stored<ChannelSpec>>> {
    get::<StoredChannel>(conn, name)?
        .map(|s| open_channel(s, key).map(|(c, _)| c))
        .transpose()
}

/// Every channel, by name, credentials opened.
pub fn list_channels(
    conn: &Connection,
    key: impl Fn() -> std::result::Result<SecretKey, SealError>,
) -> Result<Vec<Stored<ChannelSpec>>> {
    list::<StoredChannel>(conn)?
        .into_iter()
        .map(|s| open_channel(s, &key).map(|(c, _)| c))
        .collect()
}

/// Whether channel `name` exists.
pub fn has_channel(conn: &Connection, name: &str) -> Result<bool> {
    Ok(get::<StoredChannel>(conn, name)?.is_some())
}

/// Delete channel `name`; returns whether it existed.
pub fn delete_channel(conn: &Connection, name: &str) -> Result<bool> {
    delete::<StoredChannel>(conn, name)
}

/// Seal the credentials of channels written in clear (before credentials
/// were encrypted), keeping their bookkeeping; returns how many. `key` is
/// asked for only when there is one to seal.
pub fn seal_clear_channels(
    conn: &Connection,
    key: impl Fn() -> std::result::Result<SecretKey, SealError>,
) -> Result<usize> {
    let mut sealed_count = 0;
    for stored in list::<StoredChannel>(conn)? {
        // Sealed rows are not opened: a lost key must not stop the
        // database from opening (those channels fail when used instead).
        if !sealed::holds_clear(&stored.spec.0) {
            continue;
        }
        let name = stored.spec.name().to_string();
        let (channel, _) = open_channel(stored, &key)?;
        let key = key().map_err(|e| unreadable(&name, e))?;
        let sealed = sealed::seal(&channel.spec, &key).map_err(|e| unreadable(&name, e))?;
        conn.execute(
            "UPDATE alert_channels SET spec = ?2 WHERE name = ?1",
            params![name, sealed.to_string()],
        )?;
        sealed_count += 1;
    }
    Ok(sealed_count)
}

/// Create or replace; returns whether it was new.
pub fn put<T: Named>(conn: &Connection, spec: &T, origin: Origin, now: &str) -> Result<bool> {
    let json = serde_json::to_string(spec).map_err(|e| StoreError::Unreadable {
        what: T::WHAT,
        name: spec.name().to_string(),
        reason: e.to_string(),
    })?;
    let existed = get::<T>(conn, spec.name()).ok().flatten().is_some();
    conn.execute(
        &format!(
            "INSERT INTO {} (name, spec, origin, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (name) DO UPDATE SET spec = ?2, origin = ?3, updated_at = ?4",
            T::TABLE
        ),
        params![spec.name(), json, origin.as_str(), now],
    )?;
    bump(conn)?;
    Ok(!existed)
}

pub fn get<T: Named>(conn: &Connection, name: &str) -> Result<Option<Stored<T>>> {
    let row = conn
        .query_row(
            &format!(
                "SELECT name, spec, origin, created_at, updated_at FROM {} WHERE name = ?1",
                T::TABLE
            ),
            params![name],
            raw_row,
        )
        .optional()?;
    row.map(decode::<T>).transpose()
}

pub fn list<T: Named>(conn: &Connection) -> Result<Vec<Stored<T>>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT name, spec, origin, created_at, updated_at FROM {} ORDER BY name",
        T::TABLE
    ))?;
    let rows = stmt.query_map([], raw_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(decode::<T>).collect()
}

/// Delete; returns whether it existed.
pub fn delete<T: Named>(conn: &Connection, name: &str) -> Result<bool> {
    let n = conn.execute(&format!("DELETE FROM {} WHERE name = ?1", T::TABLE), params![name])?;
    if n > 0 {
        bump(conn)?;
    }
    Ok(n > 0)
}

type RawRow = (String, String, String, String, String);

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn decode<T: Named>((name, spec, origin, created_at, updated_at): RawRow) -> Result<Stored<T>> {
    let spec = serde_json::from_str(&spec).map_err(|e| StoreError::Unreadable {
        what: T::WHAT,
        name,
        reason: e.to_string(),
    })?;
    Ok(Stored {
        spec,
        origin: if origin == "config" {
            Origin::Config
        } else {
            Origin::Api
        },
        created_at,
        updated_at,
    })
}

/// A stored silence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Silence {
    pub id: i64,
    #[serde(flatten)]
    pub spec: SilenceSpec,
    pub created_at: String,
    pub created_by: String,
}

pub fn add_silence(conn: &Connection, spec: &SilenceSpec, by: &str, now: &str) -> Result<i64> {
    let json = serde_json::to_string(spec).map_err(|e| StoreError::Unreadable {
        what: "silence",
        name: String::new(),
        reason: e.to_string(),
    })?;
    conn.execute(
        "INSERT INTO alert_silences (spec, created_at, created_by) VALUES (?1, ?2, ?3)",
        params![json, now, by],
    )?;
    let id = conn.last_insert_rowid();
    bump(conn)?;
    Ok(id)
}

/// Silences, newest first; expired ones only when `expired` is set.
pub fn list_silences(conn: &Connection, expired: bool, now_ms: i64) -> Result<Vec<Silence>> {
    let mut stmt = conn.prepare("SELECT id, spec, created_at, created_by FROM alert_silences ORDER BY id DESC")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::new();
    for (id, spec, created_at, created_by) in rows {
        let spec: SilenceSpec = serde_json::from_str(&spec).map_err(|e| StoreError::Unreadable {
            what: "silence",
            name: id.to_string(),
            reason: e.to_string(),
        })?;
        let live = crate::engine::parse_time_ms(&spec.until).is_some_and(|u| now_ms < u);
        if live || expired {
            out.push(Silence {
                id,
                spec,
                created_at,
                created_by,
            });
        }
    }
    Ok(out)
}

pub fn delete_silence(conn: &Connection, id: i64) -> Result<bool> {
    let n = conn.execute("DELETE FROM alert_silences WHERE id = ?1", params![id])?;
    if n > 0 {
        bump(conn)?;
    }
    Ok(n > 0)
}

/// An alert as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRow {
    pub id: String,
    pub log: String,
    pub rule: String,
    pub condition: String,
    pub level: String,
    pub group: serde_json::Map<String, serde_json::Value>,
    /// `firing` until resolved; `fired` for one-off alerts (`any`,
    /// `new_value`), which never resolve.
    pub status: String,
    pub summary: String,
    pub fired_at: String,
    pub resolved_at: Option<String>,
    /// Recorded, but nobody was notified: a silence matched.
    pub silenced: bool,
    /// Position in the order alerts were raised; the pagination cursor.
    pub seq: i64,
}

/// Alerts, newest first: those firing now when `firing_only`, else all;
/// `before` is a `seq` cursor.
pub fn list_alerts(conn: &Connection, firing_only: bool, limit: usize, before: Option<i64>) -> Result<Vec<AlertRow>> {
    let mut stmt = conn.prepare(
        "SELECT id, log, rule, condition, level, grp, status, summary, fired_at, resolved_at, silenced, seq
         FROM alerts WHERE (?1 = 0 OR status = 'firing') AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
    )?;
    let rows = stmt
        .query_map(
            params![firing_only as i64, before.unwrap_or(i64::MAX), limit as i64],
            |r| {
                let grp: String = r.get(5)?;
                Ok(AlertRow {
                    id: r.get(0)?,
                    log: r.get(1)?,
                    rule: r.get(2)?,
                    condition: r.get(3)?,
                    level: r.get(4)?,
                    group: serde_json::from_str(&grp).unwrap_or_default(),
                    status: r.get(6)?,
                    summary: r.get(7)?,
                    fired_at: r.get(8)?,
                    resolved_at: r.get(9)?,
                    silenced: r.get::<_, i64>(10)? != 0,
                    seq: r.get(11)?,
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The saved evaluation state of `log`, if any.
pub fn load_state(conn: &Connection, log: &str) -> Result<Option<LogState>> {
    let text: Option<String> = conn
        .query_row("SELECT state FROM alert_state WHERE log = ?1", params![log], |r| {
            r.get(0)
        })
        .optional()?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Unreadable {
            what: "evaluation state of log",
            name: log.to_string(),
            reason: e.to_string(),
        })
    })
    .transpose()
}

/// A log's state serialised for [`commit`], made before the database lock
/// is taken: the state can be large (every value a `new_value` rule saw).
pub struct StateText(String);

impl StateText {
    pub fn of(log: &str, state: &LogState) -> Result<StateText> {
        serde_json::to_string(state)
            .map(StateText)
            .map_err(|e| StoreError::Unreadable {
                what: "evaluation state of log",
                name: log.to_string(),
                reason: e.to_string(),
            })
    }
}

/// Record that evaluation of a log just created starts at its first
/// entry, so a crash before the evaluator first sees it skips nothing.
/// Does nothing if the log has a state.
pub fn begin_log(conn: &Connection, log: &str, now_ms: i64) -> Result<()> {
    let state = StateText::of(log, &LogState::starting_at(0, now_ms))?;
    conn.execute(
        "INSERT INTO alert_state (log, state, updated_at) VALUES (?1, ?2, ?3) ON CONFLICT (log) DO NOTHING",
        params![log, state.0, time_text(now_ms)],
    )?;
    Ok(())
}

/// Logs with a saved evaluation state.
pub fn evaluated_logs(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT log FROM alert_state ORDER BY log")?;
    let rows = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(rows)
}

/// What [`commit`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub alerts: usize,
    pub notifications: usize,
    pub silenced: usize,
}

/// Save `log`'s state with the transitions it produced, in one
/// transaction: alert rows, a notification per channel of the rule (none
/// when a silence matches), and `audit(tx, transition, silenced)` for the
/// caller's own record (the server queues a system-log event).
#[allow(clippy::too_many_arguments)]
pub fn commit(
    conn: &mut Connection,
    log: &str,
    state: &StateText,
    transitions: &[Transition],
    rules: &[RuleSpec],
    silences: &[SilenceSpec],
    now_ms: i64,
    mut audit: impl FnMut(&Connection, &Transition, bool) -> rusqlite::Result<()>,
) -> Result<Committed> {
    let now = time_text(now_ms);
    // Immediate: take the write lock first, so a concurrent writer (the
    // CLI) makes this wait instead of failing the upgrade.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO alert_state (log, state, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (log) DO UPDATE SET state = ?2, updated_at = ?3",
        params![log, state.0, now],
    )?;
    let mut done = Committed::default();
    for t in transitions {
        let silenced = if t.kind == MessageKind::Resolved {
            // An ended alert is told to whoever was told it started, and
            // to nobody else.
            let muted: Option<i64> = tx
                .query_row("SELECT silenced FROM alerts WHERE id = ?1", params![t.alert_id], |r| {
                    r.get(0)
                })
                .optional()?;
            muted != Some(0)
        } else {
            silences.iter().any(|s| t.silenced_by(s, now_ms))
        };
        let at = time_text(t.at_ms);
        match t.kind {
            MessageKind::Fired => {
                let grp = serde_json::to_string(&t.group).unwrap_or_else(|_| "{}".into());
                let status = if t.stateful { "firing" } else { "fired" };
                let seq: i64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM alerts", [], |r| r.get(0))?;
                tx.execute(
                    "INSERT INTO alerts (id, log, rule, condition, level, grp, status, summary, fired_at, silenced, seq)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (id) DO NOTHING",
                    params![
                        t.alert_id,
                        t.log,
                        t.rule,
                        t.condition,
                        t.level.as_str(),
                        grp,
                        status,
                        t.summary,
                        at,
                        silenced as i64,
                        seq
                    ],
                )?;
                done.alerts += 1;
            }
            MessageKind::Resolved => {
                tx.execute(
                    "UPDATE alerts SET status = 'resolved', resolved_at = ?2 WHERE id = ?1 AND status = 'firing'",
                    params![t.alert_id, at],
                )?;
            }
            MessageKind::Test => {}
        }
        if silenced {
            done.silenced += 1;
        } else if let Some(rule) = rules.iter().find(|r| r.name == t.rule) {
            let message = t.message();
            for channel in &rule.channels {
                outbox::enqueue(&tx, channel, &message, now_ms)?;
                done.notifications += 1;
            }
        }
        audit(&tx, t, silenced)?;
    }
    tx.commit()?;
    Ok(done)
}
