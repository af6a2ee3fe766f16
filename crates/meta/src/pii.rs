//! PII protection's keys and policy in `meta.db` (docs/pii.md): the
//! protected fields of each log, the HMAC key and every subject's data key,
//! each wrapped under the master key, which is never stored here.
//!
//! Erasure deletes a subject's data keys and queues its `pii.erased`
//! system event in one transaction; the database deletes securely
//! (`secure_delete`) and its WAL is checkpointed and truncated after, so
//! the wrapped key leaves the file. Rotation rewraps every key under a new
//! master key in one transaction. Both bump a generation that every
//! [`Vault`] checks before it uses a cached key.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};
use sealtrail_pii::{
    open_wrapped, wrap_key, FreshKey, KeyId, KeyStore, MasterKey, Policy, Rule, StoreError, Vault, WrappedKey,
};
use serde_json::{json, Value};

use crate::db::{Meta, MetaError};
use crate::system::{now_text, system_event};

pub(crate) const PII_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pii_fields (
    log     TEXT NOT NULL,
    field   TEXT NOT NULL,
    mode    TEXT NOT NULL CHECK (mode IN ('hmac', 'encrypt')),
    subject TEXT,
    PRIMARY KEY (log, field)
);
CREATE TABLE IF NOT EXISTS pii_vault (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    hmac_key   BLOB NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS pii_keys (
    key_id     BLOB PRIMARY KEY,
    log        TEXT NOT NULL,
    subject    BLOB NOT NULL,
    wrapped    BLOB NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (log, subject)
);
";

/// Associated data of the HMAC key's wrapping (as `sealtrail-pii` wraps it).
const HMAC_KEY_AAD: &[u8] = b"sealtrail-pii hmac key v1";

fn data_key_aad(id: &[u8]) -> Vec<u8> {
    let mut aad = b"sealtrail-pii data key v1\0".to_vec();
    aad.extend_from_slice(id);
    aad
}

/// One protected field as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PiiField {
    pub log: String,
    pub field: String,
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// Why an erasure or rotation was refused.
#[derive(Debug, thiserror::Error)]
pub enum PiiChangeError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// No data key of that subject: nothing to erase, nothing changed.
    #[error("no data key for that subject{}: nothing was erased (was the value given exactly as sent, and did the log encrypt a field of it?)", .log.as_ref().map(|l| format!(" in log {l}")).unwrap_or_default())]
    UnknownSubject { log: Option<String> },
    #[error(transparent)]
    Pii(#[from] sealtrail_pii::PiiError),
}

impl From<rusqlite::Error> for PiiChangeError {
    fn from(e: rusqlite::Error) -> Self {
        PiiChangeError::Meta(MetaError::Sqlite {
            path: PathBuf::from(crate::db::META_FILE),
            source: e,
        })
    }
}

/// The key store of [`Vault`]s: its own connections to `meta.db`.
pub struct PiiStore {
    conn: Mutex<Connection>,
    reader: Mutex<Connection>,
}

impl PiiStore {
    fn open(path: &Path) -> Result<PiiStore, rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA secure_delete = ON;")?;
        let reader = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.execute_batch("PRAGMA busy_timeout = 10000;")?;
        Ok(PiiStore {
            conn: Mutex::new(conn),
            reader: Mutex::new(reader),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A number that changes whenever another connection, of this process
    /// or another, commits a change to `meta.db`: a policy read from it is
    /// still good while it stays the same.
    pub fn version(&self) -> Result<i64, StoreError> {
        self.reader()
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(store_err)
    }

    /// The policy of `log` kept in the database (`sealtrail pii set`).
    pub fn policy(&self, log: &str) -> Result<Policy, PiiChangeError> {
        let fields = read_fields(&self.reader()).map_err(|e| PiiChangeError::Pii(store_err(e).into()))?;
        policy_of(fields, log)
    }
}

fn read_fields(conn: &Connection) -> Result<Vec<PiiField>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached("SELECT log, field, mode, subject FROM pii_fields ORDER BY log, field")?;
    let rows = stmt.query_map([], |r| {
        Ok(PiiField {
            log: r.get(0)?,
            field: r.get(1)?,
            mode: r.get(2)?,
            subject: r.get(3)?,
        })
    })?;
    rows.collect()
}

fn policy_of(fields: Vec<PiiField>, log: &str) -> Result<Policy, PiiChangeError> {
    let mut policy = Policy::default();
    for f in fields.into_iter().filter(|f| f.log == log) {
        let rule = Rule::parse(&f.field, &f.mode, f.subject.as_deref())?;
        policy.add(rule, "meta.db")?;
    }
    Ok(policy)
}

fn key_id(id: Vec<u8>) -> Result<KeyId, StoreError> {
    let id: [u8; 16] = id
        .try_into()
        .map_err(|_| StoreError("a data key id is not 16 bytes".into()))?;
    Ok(KeyId(id))
}

fn store_err(e: rusqlite::Error) -> StoreError {
    StoreError(format!("{}: {e}", crate::db::META_FILE))
}

impl KeyStore for PiiStore {
    fn wrapped_hmac_key(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.reader()
            .query_row("SELECT hmac_key FROM pii_vault WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(store_err)
    }

    fn init_hmac_key(&self, wrapped: &[u8]) -> Result<Vec<u8>, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT OR IGNORE INTO pii_vault (id, hmac_key) VALUES (1, ?1)",
            params![wrapped],
        )
        .map_err(store_err)?;
        conn.query_row("SELECT hmac_key FROM pii_vault WHERE id = 1", [], |r| r.get(0))
            .map_err(store_err)
    }

    fn wrapped_key(&self, id: &KeyId) -> Result<Option<Vec<u8>>, StoreError> {
        self.reader()
            .query_row(
                "SELECT wrapped FROM pii_keys WHERE key_id = ?1",
                params![&id.0[..]],
                |r| r.get(0),
            )
            .optional()
            .map_err(store_err)
    }

    fn subject_key(&self, log: &str, subject: &[u8; 32]) -> Result<Option<WrappedKey>, StoreError> {
        let found: Option<(Vec<u8>, Vec<u8>)> = self
            .reader()
            .query_row(SUBJECT_KEY, params![log, &subject[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(store_err)?;
        found.map(|(id, wrapped)| Ok((key_id(id)?, wrapped))).transpose()
    }

    fn keep_subject_keys(&self, fresh: &[FreshKey]) -> Result<Vec<Option<WrappedKey>>, StoreError> {
        let mut conn = self.conn();
        // One durable commit (synchronous = FULL) for the whole batch,
        // before anything it encrypts is appended, so no acknowledged value
        // outlives its key by accident. IMMEDIATE: the generation read is
        // the one the keys are kept under.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(store_err)?;
        let generation = read_generation(&tx)?;
        let mut kept = Vec::with_capacity(fresh.len());
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO pii_keys (key_id, log, subject, wrapped, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(store_err)?;
            let mut read = tx.prepare_cached(SUBJECT_KEY).map_err(store_err)?;
            let now = now_text();
            for key in fresh {
                if key.generation.is_some_and(|g| g != generation) {
                    kept.push(None);
                    continue;
                }
                insert
                    .execute(params![&key.id.0[..], key.log, &key.subject[..], key.wrapped, now])
                    .map_err(store_err)?;
                let (id, wrapped): (Vec<u8>, Vec<u8>) = read
                    .query_row(params![key.log, &key.subject[..]], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(store_err)?;
                kept.push(Some((key_id(id)?, wrapped)));
            }
        }
        tx.commit().map_err(store_err)?;
        Ok(kept)
    }

    fn generation(&self) -> Result<u64, StoreError> {
        read_generation(&self.reader())
    }
}

/// A subject's data key in a log: its id and wrapped key.
const SUBJECT_KEY: &str = "SELECT key_id, wrapped FROM pii_keys WHERE log = ?1 AND subject = ?2";

/// The key store's generation (0 before the HMAC key is made).
fn read_generation(conn: &Connection) -> Result<u64, StoreError> {
    let g: Option<i64> = conn
        .query_row("SELECT generation FROM pii_vault WHERE id = 1", [], |r| r.get(0))
        .optional()
        .map_err(store_err)?;
    Ok(g.unwrap_or(0) as u64)
}

impl Meta {
    /// The key store for [`Vault::open`]: connections of its own.
    pub fn pii_store(&self) -> Result<std::sync::Arc<PiiStore>, MetaError> {
        PiiStore::open(self.path())
            .map(std::sync::Arc::new)
            .map_err(|e| self.sql(e))
    }

    /// Open the vault of this data directory with `master` (made on first
    /// use); a wrong master key is refused and changes nothing.
    pub fn pii_vault(&self, master: MasterKey) -> Result<Vault, PiiChangeError> {
        Ok(Vault::open(master, self.pii_store()?)?)
    }

    /// Every protected field kept in the database, by log and field.
    pub fn pii_fields(&self) -> Result<Vec<PiiField>, MetaError> {
        read_fields(&self.read()).map_err(|e| self.sql(e))
    }

    /// The policy of `log` kept in the database.
    pub fn pii_policy(&self, log: &str) -> Result<Policy, PiiChangeError> {
        policy_of(self.pii_fields()?, log)
    }

    /// Protect `rule`'s field in `log` from now on (replacing the field's
    /// rule, if any), recorded as `pii.field_set`.
    pub fn set_pii_field(&self, log: &str, rule: &Rule, actor: Value) -> Result<(), MetaError> {
        let field = rule.field.name();
        let subject = rule.subject.as_ref().map(|s| s.name());
        self.audited(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO pii_fields (log, field, mode, subject) VALUES (?1, ?2, ?3, ?4)",
                params![log, field, rule.mode.as_str(), subject],
            )?;
            let mut details = json!({"field": field, "mode": rule.mode.as_str()});
            if let Some(s) = &subject {
                details["subject"] = json!(s);
            }
            Ok::<_, rusqlite::Error>(((), system_event(actor, "pii.field_set", log, details)))
        })
        .map_err(|e| self.sql(e))
    }

    /// Crypto-shred `subject` (its clear value, as sent): delete its data
    /// keys in `log`, or in every log, recorded as `pii.erased` with the
    /// subject's HMAC, never its value. Returns the logs whose key was
    /// deleted. An unknown subject is refused and changes nothing.
    pub fn erase_pii_subject(
        &self,
        vault: &Vault,
        subject: &str,
        log: Option<&str>,
        actor: Value,
    ) -> Result<Vec<String>, PiiChangeError> {
        let tag = vault.subject_tag(subject);
        let pseudonym = vault.pseudonym(subject);
        let logs = self.audited(|tx| {
            let mut stmt =
                tx.prepare("SELECT log FROM pii_keys WHERE subject = ?1 AND (?2 IS NULL OR log = ?2) ORDER BY log")?;
            let logs: Vec<String> = stmt
                .query_map(params![&tag[..], log], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            drop(stmt);
            if logs.is_empty() {
                return Err(PiiChangeError::UnknownSubject {
                    log: log.map(str::to_string),
                });
            }
            tx.execute(
                "DELETE FROM pii_keys WHERE subject = ?1 AND (?2 IS NULL OR log = ?2)",
                params![&tag[..], log],
            )?;
            tx.execute("UPDATE pii_vault SET generation = generation + 1 WHERE id = 1", [])?;
            let target = if logs.len() == 1 {
                logs[0].clone()
            } else {
                "*".to_string()
            };
            let event = system_event(
                actor,
                "pii.erased",
                &target,
                json!({"subject": pseudonym, "logs": logs, "keys_destroyed": logs.len()}),
            );
            Ok((logs, event))
        })?;
        self.squeeze_wal();
        Ok(logs)
    }

    /// Rewrap the HMAC key and every data key from `vault`'s master key to
    /// `new`, in one transaction, recorded as `pii.master_rotated`. The
    /// old master key opens nothing afterwards.
    pub fn rotate_pii_master(&self, vault: &Vault, new: &MasterKey, actor: Value) -> Result<usize, PiiChangeError> {
        let old = vault.master();
        let count = self.audited(|tx| {
            let wrapped: Vec<u8> = tx.query_row("SELECT hmac_key FROM pii_vault WHERE id = 1", [], |r| r.get(0))?;
            let hmac = open_wrapped(old, &wrapped, HMAC_KEY_AAD).ok_or(sealtrail_pii::PiiError::WrongMasterKey)?;
            tx.execute(
                "UPDATE pii_vault SET hmac_key = ?1, generation = generation + 1 WHERE id = 1",
                params![wrap_key(new, &hmac, HMAC_KEY_AAD)?],
            )?;
            let mut stmt = tx.prepare("SELECT key_id, wrapped FROM pii_keys")?;
            let rows: Vec<(Vec<u8>, Vec<u8>)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            drop(stmt);
            for (id, wrapped) in &rows {
                let aad = data_key_aad(id);
                let key = open_wrapped(old, wrapped, &aad).ok_or(sealtrail_pii::PiiError::WrongMasterKey)?;
                tx.execute(
                    "UPDATE pii_keys SET wrapped = ?1 WHERE key_id = ?2",
                    params![wrap_key(new, &key, &aad)?, id],
                )?;
            }
            let event = system_event(
                actor,
                "pii.master_rotated",
                crate::SYSTEM_LOG,
                json!({"keys_rewrapped": rows.len()}),
            );
            Ok::<_, PiiChangeError>((rows.len(), event))
        })?;
        self.squeeze_wal();
        Ok(count)
    }

    /// Move the WAL into the database and truncate it, so deleted or
    /// replaced key rows leave the WAL file now (best effort: a reader in
    /// another process may hold it; the next checkpoint does it then).
    fn squeeze_wal(&self) {
        if let Err(e) = self.lock().execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            tracing::warn!("checkpointing meta.db after a PII key change: {e}");
        }
    }
}
