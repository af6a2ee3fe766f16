//! The metadata database itself: opening it owner-only, its schema, API
//! keys, and the outbox of system-log events.
//!
//! Why an outbox: `sealtrail keys create` may run while the server holds
//! the system log's lock. The key and the event recording its creation are
//! written in one SQLite transaction; whoever holds the system log (the
//! server every second, or the CLI when no server runs) moves outbox rows
//! into it, each with an idempotency key `outbox-<seq>`, so a crash between
//! append and delete cannot record a change twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};
use sealtrail_alert::sealed::{SealError, SecretKey};
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// The file name of the metadata database inside the data directory.
pub const META_FILE: &str = "meta.db";

/// The log that records what happens to the trail itself: reads, exports,
/// key changes. Only admin keys may read it; nobody may write to it.
pub const SYSTEM_LOG: &str = "system";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS api_keys (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    scope         TEXT NOT NULL CHECK (scope IN ('ingest', 'read', 'analyst', 'admin')),
    tenant        TEXT,
    secret_sha256 BLOB NOT NULL,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT
);
CREATE TABLE IF NOT EXISTS system_outbox (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS data_runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL CHECK (kind IN ('diff', 'keys', 'validate')),
    name          TEXT,
    inputs        TEXT NOT NULL,
    parameters    TEXT NOT NULL,
    summary       TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    finished_at   TEXT NOT NULL,
    duration_ms   INTEGER NOT NULL CHECK (duration_ms >= 0),
    outcome       TEXT NOT NULL CHECK (outcome IN ('success', 'differences', 'failure')),
    error         TEXT,
    quality_score REAL CHECK (quality_score IS NULL OR (quality_score >= 0 AND quality_score <= 1)),
    actor         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS data_runs_by_name ON data_runs (name, id);
CREATE INDEX IF NOT EXISTS data_runs_by_kind ON data_runs (kind, id);
CREATE TABLE IF NOT EXISTS data_runs_open (
    id INTEGER PRIMARY KEY REFERENCES data_runs (id)
);
CREATE TABLE IF NOT EXISTS users (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'auditor', 'viewer', 'ingest')),
    tenant          TEXT,
    password_hash   TEXT,
    disabled        INTEGER NOT NULL DEFAULT 0,
    totp_secret     TEXT,
    totp_pending    TEXT,
    totp_last_step  INTEGER,
    totp_required   INTEGER NOT NULL DEFAULT 0,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_until    INTEGER,
    created_at      TEXT NOT NULL,
    last_sign_in    TEXT
);
CREATE TABLE IF NOT EXISTS recovery_codes (
    user_id     TEXT NOT NULL REFERENCES users (id),
    code_sha256 BLOB NOT NULL,
    used_at     TEXT,
    PRIMARY KEY (user_id, code_sha256)
);
CREATE TABLE IF NOT EXISTS sessions (
    handle     TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    user_agent TEXT,
    ip         TEXT,
    csrf       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id, created_at);
CREATE TABLE IF NOT EXISTS api_key_use (
    key_id    TEXT PRIMARY KEY,
    last_used INTEGER NOT NULL
);
";

/// Keys made before keys had owners get the column.
fn add_key_owner(conn: &Connection) -> rusqlite::Result<()> {
    let has: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('api_keys') WHERE name = 'owner'",
        [],
        |r| r.get(0),
    )?;
    if !has {
        conn.execute_batch("ALTER TABLE api_keys ADD COLUMN owner TEXT REFERENCES users (id);")?;
    }
    Ok(())
}

/// Keys made before the `pii` permission get the column, unset.
fn add_key_pii(conn: &Connection) -> rusqlite::Result<()> {
    let has: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('api_keys') WHERE name = 'pii'",
        [],
        |r| r.get(0),
    )?;
    if !has {
        conn.execute_batch("ALTER TABLE api_keys ADD COLUMN pii INTEGER NOT NULL DEFAULT 0;")?;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("no API key with id {0}")]
    NoSuchKey(String),
    #[error("reading the system's randomness: {0}")]
    Random(String),
    #[error("alert channels: {0}")]
    Secrets(String),
    #[error("no user named {0}")]
    NoSuchUser(String),
    /// Problems with a user's fields, each naming its field.
    #[error("{}", .0.join("; "))]
    InvalidUser(Vec<String>),
    /// Problems with a legal hold to add or release, each naming its field.
    #[error("legal hold: {}", .0.join("; "))]
    InvalidHold(Vec<String>),
    #[error("no legal hold with id {0}")]
    NoSuchHold(i64),
    /// Problems with a data run to record, each naming its field.
    #[error("data run: {}", .0.join("; "))]
    InvalidDataRun(Vec<String>),
}

/// A database made before the analyst scope refuses analyst keys by its
/// `CHECK`: rebuild its key table with the current one.
fn allow_analyst_keys(conn: &Connection) -> rusqlite::Result<()> {
    let sql: String = conn.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'api_keys'",
        [],
        |r| r.get(0),
    )?;
    if sql.contains("'analyst'") {
        return Ok(());
    }
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         ALTER TABLE api_keys RENAME TO api_keys_before_analyst;
         CREATE TABLE api_keys (
             id            TEXT PRIMARY KEY,
             name          TEXT NOT NULL,
             scope         TEXT NOT NULL CHECK (scope IN ('ingest', 'read', 'analyst', 'admin')),
             tenant        TEXT,
             secret_sha256 BLOB NOT NULL,
             created_at    TEXT NOT NULL,
             revoked_at    TEXT
         );
         INSERT INTO api_keys SELECT id, name, scope, tenant, secret_sha256, created_at, revoked_at FROM api_keys_before_analyst;
         DROP TABLE api_keys_before_analyst;
         COMMIT;",
    )
}

/// What an API key may do. Admin may do everything; read and ingest are
/// separate so a sender cannot read the trail it writes. Analyst runs data
/// reconciliations (and sees their results) without administering keys or
/// alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Ingest,
    Read,
    Analyst,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Analyst => "analyst",
            Scope::Admin => "admin",
        }
    }

    pub fn from_name(name: &str) -> Option<Scope> {
        match name {
            "ingest" => Some(Scope::Ingest),
            "read" => Some(Scope::Read),
            "analyst" => Some(Scope::Analyst),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    /// Whether a key of this scope may do what `needed` guards.
    pub fn allows(self, needed: Scope) -> bool {
        self == Scope::Admin || self == needed
    }
}

/// An API key as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    /// Only events of this tenant may be written or read with the key.
    pub tenant: Option<String>,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// The id of the user who owns the key, if a user does; the key stops
    /// working while its owner is disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Whether reads with the key see protected PII in clear (the `pii`
    /// permission, docs/pii.md); granted with `sealtrail keys create --pii`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pii: bool,
}

/// The file name of the key channel credentials are sealed with, beside
/// the metadata database (docs/alert-channels.md).
pub const SECRETS_KEY_FILE: &str = "secrets.key";

/// Every problem with a new key's fields, each naming its field: the
/// name is a display name (at most `ID_CHARS` characters, as an event's),
/// the tenant a tenant as events define it.
pub fn key_problems(name: &str, tenant: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    out.extend(sealtrail_alert::spec::too_long(
        "name",
        name,
        sealtrail_event::limits::ID_CHARS,
    ));
    if let Some(t) = tenant {
        out.extend(sealtrail_alert::spec::tenant_problem("tenant", t));
    }
    out
}

/// The metadata database. A writer connection and a reader connection,
/// each behind a mutex: SQLite serialises writers anyway, and in WAL mode
/// a reader never waits for the writer, so listing alerts or looking up a
/// key is not held up by a change being written. Every method blocks on
/// disk: async callers run them on a blocking pool.
pub struct Meta {
    path: PathBuf,
    data_dir: PathBuf,
    conn: Mutex<Connection>,
    reader: Mutex<Connection>,
    /// Loaded (or created) on first need.
    secrets: Mutex<Option<SecretKey>>,
}

/// Owner-only: the database holds API key hashes, alert channels and the
/// audit outbox; the key file opens channel credentials.
const PRIVATE_MODE: u32 = 0o600;

/// Create `path` empty and owner-only if it is missing, and make it
/// owner-only if it exists: SQLite gives the journal and WAL files the
/// mode of the database file.
fn make_private(path: &Path, create: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if create {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_MODE)
            .open(path)
        {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(PRIVATE_MODE)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => Ok(()),
        // Another user's file this process may still use: say so, go on.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            tracing::warn!("cannot make {name} in the data directory owner-only: {e}");
            Ok(())
        }
        other => other,
    }
}

/// The data directory's secrets key, created (owner-only, synced) if it
/// is missing. Errors name the file, not where the directory is.
fn load_or_create_key(data_dir: &Path) -> Result<SecretKey, SealError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(SECRETS_KEY_FILE);
    let fail = |e: std::io::Error| SealError::Key(format!("{SECRETS_KEY_FILE} in the data directory: {e}"));
    match std::fs::read_to_string(&path) {
        Ok(text) => return SecretKey::from_text(&text),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e)),
        Err(_) => {}
    }
    let key = SecretKey::generate()?;
    // Written whole under a temporary name, then linked into place, so a
    // crash never leaves a short key and two processes agree on one.
    let tmp = data_dir.join(format!("{SECRETS_KEY_FILE}.{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_MODE)
        .open(&tmp)
        .map_err(fail)?;
    file.write_all(key.to_text().as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    drop(file);
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            std::fs::File::open(data_dir).and_then(|d| d.sync_all()).map_err(fail)?;
            tracing::info!("created the channel secrets key {SECRETS_KEY_FILE} in the data directory");
            Ok(key)
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            SecretKey::from_text(&std::fs::read_to_string(&path).map_err(fail)?)
        }
        Err(e) => Err(fail(e)),
    }
}

impl Meta {
    /// Open (creating if needed) `meta.db` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Meta, MetaError> {
        let path = data_dir.join(META_FILE);
        let err = |source| MetaError::Sqlite {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| {
            err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("creating {}: {e}", data_dir.display())),
            ))
        })?;
        let io = |e: std::io::Error| {
            err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("making {META_FILE} owner-only: {e}")),
            ))
        };
        make_private(&path, true).map_err(io)?;
        for suffix in ["-wal", "-shm", "-journal"] {
            make_private(&data_dir.join(format!("{META_FILE}{suffix}")), false).map_err(io)?;
        }
        let conn = Connection::open(&path).map_err(err)?;
        // WAL with full sync: a key change is durable when the call returns,
        // and readers never wait for the writer.
        // Secure delete: a credential replaced by its sealed form (or a
        // deleted channel) leaves no copy in the file's free space.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA secure_delete = ON;",
        )
        .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.execute_batch(crate::users::FEDERATED_SCHEMA).map_err(err)?;
        conn.execute_batch(crate::pii::PII_SCHEMA).map_err(err)?;
        conn.execute_batch(crate::jobs::SCHEMA).map_err(err)?;
        conn.execute_batch(crate::holds::SCHEMA).map_err(err)?;
        allow_analyst_keys(&conn).map_err(err)?;
        add_key_owner(&conn).map_err(err)?;
        add_key_pii(&conn).map_err(err)?;
        sealtrail_alert::store::migrate(&conn).map_err(err)?;
        let reader = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        reader.execute_batch("PRAGMA busy_timeout = 10000;").map_err(err)?;
        let meta = Meta {
            path,
            data_dir: data_dir.to_path_buf(),
            conn: Mutex::new(conn),
            reader: Mutex::new(reader),
            secrets: Mutex::new(None),
        };
        // Channels written before credentials were encrypted.
        let sealed = sealtrail_alert::store::seal_clear_channels(&meta.conn(), || meta.secrets())
            .map_err(|e| MetaError::Secrets(e.to_string()))?;
        if sealed > 0 {
            // The clear rows' old pages leave the WAL now, not at some
            // later checkpoint.
            meta.conn()
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(|e| meta.err(e))?;
            tracing::info!("encrypted the credentials of {sealed} alert channel(s) stored in clear");
        }
        Ok(meta)
    }

    /// The key channel credentials are sealed with, created on first need.
    pub fn secrets(&self) -> Result<SecretKey, SealError> {
        let mut slot = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = slot.as_ref() {
            return Ok(key.clone());
        }
        let key = load_or_create_key(&self.data_dir)?;
        *slot = Some(key.clone());
        Ok(key)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection, for the alert tables (`sealtrail_alert::store`).
    /// Hold the guard briefly: every request shares it.
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn()
    }

    /// The reader connection, for reads of the alert tables. It never
    /// writes, so it never waits for a change being written.
    pub fn read(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A number that changes whenever any connection, of this process or
    /// another, commits a change: a cache of the database is still good
    /// while it stays the same.
    pub fn version(&self) -> Result<i64, MetaError> {
        self.read()
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// The connection's mutex, for the notification deliverer.
    pub fn connection(&self) -> &Mutex<Connection> {
        &self.conn
    }

    /// Run `change` in one transaction with a system-log event (JSON text)
    /// queued beside it: a configuration change and its audit record are
    /// durable together or not at all.
    pub fn audited<T, E: From<rusqlite::Error>>(
        &self,
        change: impl FnOnce(&Connection) -> Result<(T, String), E>,
    ) -> Result<T, E> {
        let mut conn = self.conn();
        // Immediate: the change reads before it writes, and a deferred
        // transaction would fail its upgrade if the CLI wrote in between.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (out, event) = change(&tx)?;
        queue_event(&tx, &event)?;
        tx.commit()?;
        Ok(out)
    }

    pub(crate) fn sql(&self, source: rusqlite::Error) -> MetaError {
        self.err(source)
    }

    fn err(&self, source: rusqlite::Error) -> MetaError {
        MetaError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Create a key; returns it and its secret, which is not stored and
    /// cannot be shown again. `audit` is the system-log event recording
    /// the creation, written in the same transaction.
    pub fn create_key(
        &self,
        scope: Scope,
        tenant: Option<&str>,
        name: &str,
        now: &str,
        audit: impl FnOnce(&ApiKey) -> String,
    ) -> Result<(ApiKey, String), MetaError> {
        self.create_owned_key(scope, tenant, name, None, now, audit)
    }

    /// [`Meta::create_key`] for a key owned by user `owner` (an id).
    pub fn create_owned_key(
        &self,
        scope: Scope,
        tenant: Option<&str>,
        name: &str,
        owner: Option<&str>,
        now: &str,
        audit: impl FnOnce(&ApiKey) -> String,
    ) -> Result<(ApiKey, String), MetaError> {
        let mut random = [0u8; 42];
        getrandom::fill(&mut random).map_err(|e| MetaError::Random(e.to_string()))?;
        let id = hex(&random[..8]);
        let secret = format!("stk_{id}_{}", hex(&random[8..]));
        let key = ApiKey {
            id: id.clone(),
            name: name.to_string(),
            scope,
            tenant: tenant.map(str::to_string),
            created_at: now.to_string(),
            revoked_at: None,
            owner: owner.map(str::to_string),
            pii: false,
        };
        let event = audit(&key);
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO api_keys (id, name, scope, tenant, secret_sha256, created_at, owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![id, name, scope.as_str(), tenant, digest(&secret).as_slice(), now, owner],
        )
        .map_err(|e| self.err(e))?;
        tx.execute("INSERT INTO system_outbox (event) VALUES (?1)", params![event])
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok((key, secret))
    }

    /// Grant or withdraw key `id`'s `pii` permission; `audit` records it.
    pub fn set_key_pii(&self, id: &str, pii: bool, audit: impl FnOnce(&ApiKey) -> String) -> Result<ApiKey, MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let Some(mut key) = select_key(&tx, id).map_err(|e| self.err(e))?.map(|(k, _)| k) else {
            return Err(MetaError::NoSuchKey(id.to_string()));
        };
        tx.execute("UPDATE api_keys SET pii = ?2 WHERE id = ?1", params![id, pii])
            .map_err(|e| self.err(e))?;
        key.pii = pii;
        tx.execute("INSERT INTO system_outbox (event) VALUES (?1)", params![audit(&key)])
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(key)
    }

    /// Revoke key `id` (again is harmless); `audit` records it.
    pub fn revoke_key(&self, id: &str, now: &str, audit: impl FnOnce(&ApiKey) -> String) -> Result<ApiKey, MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let Some(mut key) = select_key(&tx, id).map_err(|e| self.err(e))?.map(|(k, _)| k) else {
            return Err(MetaError::NoSuchKey(id.to_string()));
        };
        if key.revoked_at.is_none() {
            tx.execute("UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1", params![id, now])
                .map_err(|e| self.err(e))?;
            key.revoked_at = Some(now.to_string());
            tx.execute("INSERT INTO system_outbox (event) VALUES (?1)", params![audit(&key)])
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(key)
    }

    pub fn list_keys(&self) -> Result<Vec<ApiKey>, MetaError> {
        Ok(self.key_rows(false)?.into_iter().map(|(k, _)| k).collect())
    }

    /// Every key not revoked, with the SHA-256 of its secret: what a cache
    /// that checks secrets without the database holds.
    pub fn live_keys(&self) -> Result<Vec<(ApiKey, [u8; 32])>, MetaError> {
        Ok(self
            .key_rows(true)?
            .into_iter()
            .filter_map(|(k, d)| Some((k, d.try_into().ok()?)))
            .collect())
    }

    fn key_rows(&self, live: bool) -> Result<Vec<Row>, MetaError> {
        let conn = self.read();
        let mut stmt = conn
            .prepare(
                "SELECT k.id, k.name, k.scope, k.tenant, k.created_at, k.revoked_at, k.secret_sha256, k.owner, k.pii FROM api_keys k
                 WHERE NOT ?1 OR (k.revoked_at IS NULL
                     AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = k.owner AND u.disabled))
                 ORDER BY k.created_at, k.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map(params![live], row_key).map_err(|e| self.err(e))?;
        rows.map(|r| r.map_err(|e| self.err(e))).collect()
    }

    /// The live key whose secret this is, if any.
    pub fn authenticate(&self, secret: &str) -> Result<Option<ApiKey>, MetaError> {
        let Some(id) = key_id(secret) else {
            return Ok(None);
        };
        let found = select_key(&self.read(), id).map_err(|e| self.err(e))?;
        Ok(match found {
            Some((key, stored))
                if key.revoked_at.is_none() && secret_matches(&stored, secret) && !self.owner_disabled(&key)? =>
            {
                Some(key)
            }
            _ => None,
        })
    }

    fn owner_disabled(&self, key: &ApiKey) -> Result<bool, MetaError> {
        let Some(owner) = &key.owner else { return Ok(false) };
        self.read()
            .query_row("SELECT disabled FROM users WHERE id = ?1", params![owner], |r| r.get(0))
            .optional()
            .map(|d| d.unwrap_or(false))
            .map_err(|e| self.err(e))
    }

    /// Record that each key of `uses` (id, Unix seconds) was used then:
    /// one transaction, and a time never moves a key's last use back.
    /// Not audited: it records use, not a change.
    pub fn record_key_use(&self, uses: &[(String, i64)]) -> Result<(), MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO api_key_use (key_id, last_used) VALUES (?1, ?2)
                     ON CONFLICT (key_id) DO UPDATE SET last_used = max(last_used, excluded.last_used)",
                )
                .map_err(|e| self.err(e))?;
            for (id, at) in uses {
                stmt.execute(params![id, at]).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// When each key that has been used was last used (Unix seconds), as
    /// [`Meta::record_key_use`] recorded it.
    pub fn key_last_use(&self) -> Result<HashMap<String, i64>, MetaError> {
        let conn = self.read();
        let mut stmt = conn
            .prepare("SELECT key_id, last_used FROM api_key_use")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.map(|r| r.map_err(|e| self.err(e))).collect()
    }

    /// Queue a system-log event (as JSON text) outside any key change.
    pub fn queue_system_event(&self, event: &str) -> Result<(), MetaError> {
        self.conn()
            .execute("INSERT INTO system_outbox (event) VALUES (?1)", params![event])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Up to `limit` queued system events, oldest first, with their sequence numbers.
    pub fn outbox(&self, limit: usize) -> Result<Vec<(i64, String)>, MetaError> {
        let conn = self.read();
        let mut stmt = conn
            .prepare("SELECT seq, event FROM system_outbox ORDER BY seq LIMIT ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.map(|r| r.map_err(|e| self.err(e))).collect()
    }

    /// Forget outbox rows up to and including `seq` (they are in the log).
    pub fn outbox_done(&self, seq: i64) -> Result<(), MetaError> {
        self.conn()
            .execute("DELETE FROM system_outbox WHERE seq <= ?1", params![seq])
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

/// Queue a system-log event inside the caller's transaction.
pub fn queue_event(conn: &Connection, event: &str) -> rusqlite::Result<()> {
    conn.execute("INSERT INTO system_outbox (event) VALUES (?1)", params![event])?;
    Ok(())
}

type Row = (ApiKey, Vec<u8>);

fn row_key(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let scope: String = r.get(2)?;
    Ok((
        ApiKey {
            id: r.get(0)?,
            name: r.get(1)?,
            // The CHECK constraint admits only the three names.
            scope: Scope::from_name(&scope).unwrap_or(Scope::Read),
            tenant: r.get(3)?,
            created_at: r.get(4)?,
            revoked_at: r.get(5)?,
            owner: r.get(7)?,
            pii: r.get::<_, i64>(8)? != 0,
        },
        r.get(6)?,
    ))
}

fn select_key(conn: &Connection, id: &str) -> rusqlite::Result<Option<Row>> {
    conn.query_row(
        "SELECT id, name, scope, tenant, created_at, revoked_at, secret_sha256, owner, pii FROM api_keys WHERE id = ?1",
        params![id],
        row_key,
    )
    .optional()
}

/// Secrets carry 272 random bits, so a plain SHA-256 is a safe verifier:
/// there is nothing to guess that a slow hash would protect.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The id a secret names (`stk_<id>_<random>`), if it has that form.
pub fn key_id(secret: &str) -> Option<&str> {
    secret.strip_prefix("stk_").and_then(|s| s.split('_').next())
}

/// Whether `secret` is the one whose SHA-256 is `stored`, compared in
/// constant time.
pub fn secret_matches(stored: &[u8], secret: &str) -> bool {
    same(stored, &digest(secret))
}

/// Compare without an early exit, so timing says nothing about the digest.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_authenticate_until_revoked_and_every_change_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(dir.path()).unwrap();
        let (key, secret) = meta
            .create_key(Scope::Read, Some("acme"), "reporting", "2026-01-01T00:00:00Z", |k| {
                format!("created {}", k.id)
            })
            .unwrap();
        assert!(secret.starts_with(&format!("stk_{}_", key.id)));
        assert_eq!(meta.live_keys().unwrap(), vec![(key.clone(), digest(&secret))]);
        assert_eq!(meta.authenticate(&secret).unwrap(), Some(key.clone()));
        assert_eq!(meta.authenticate(&format!("{secret}x")).unwrap(), None);
        assert_eq!(meta.authenticate("stk_nope_x").unwrap(), None);
        assert_eq!(meta.authenticate("Bearer").unwrap(), None);

        // Another process's change moves the version, which a cache of the
        // keys watches; a read alone does not.
        let before = meta.version().unwrap();
        assert_eq!(meta.version().unwrap(), before);
        let other = Meta::open(dir.path()).unwrap();
        other
            .create_key(Scope::Ingest, None, "", "2026-01-01T00:00:01Z", |_| String::new())
            .unwrap();
        assert_ne!(meta.version().unwrap(), before);
        assert_eq!(meta.live_keys().unwrap().len(), 2);
        drop(other);

        // Reopening sees the same key: it is durable.
        drop(meta);
        let meta = Meta::open(dir.path()).unwrap();
        assert_eq!(meta.list_keys().unwrap()[0], key);
        let revoked = meta
            .revoke_key(&key.id, "2026-01-02T00:00:00Z", |k| format!("revoked {}", k.id))
            .unwrap();
        assert_eq!(revoked.revoked_at.as_deref(), Some("2026-01-02T00:00:00Z"));
        assert_eq!(meta.authenticate(&secret).unwrap(), None);
        assert!(meta.live_keys().unwrap().iter().all(|(k, _)| k.id != key.id));
        // Revoking twice records once.
        meta.revoke_key(&key.id, "2026-01-03T00:00:00Z", |_| "again".into())
            .unwrap();
        assert!(matches!(
            meta.revoke_key("missing", "t", |_| String::new()),
            Err(MetaError::NoSuchKey(_))
        ));

        let queued = meta.outbox(10).unwrap();
        let texts: Vec<&str> = queued.iter().map(|(_, e)| e.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                format!("created {}", key.id),
                String::new(),
                format!("revoked {}", key.id)
            ]
        );
        meta.outbox_done(queued[0].0).unwrap();
        assert_eq!(meta.outbox(10).unwrap().len(), 2);
    }
}
