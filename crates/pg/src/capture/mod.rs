//! Change capture installed into a tracked PostgreSQL database: an outbox
//! table in a `sealtrail` schema, row triggers on the chosen tables, and
//! event triggers for DDL. Every captured change is written to the outbox
//! in the same transaction as the change, so it commits or rolls back with
//! it; [`crate::drain`] carries committed changes into a trail.
//!
//! In logical-decoding mode ([`Mode::Logical`]) the tables get no
//! triggers: install creates a publication over them and a replication
//! slot, and [`crate::logical`] reads the changes from the WAL.
//!
//! This module only installs, upgrades, removes and inspects the capture
//! objects; it does not read the outbox or the slot.

mod sql;

use postgres::{Client, NoTls};
use thiserror::Error;

pub use sql::{CAPTURE_ROLE, VERSION};

/// What to capture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallOptions {
    pub tables: Tables,
    /// Columns left out of row images, each `table.column` or
    /// `schema.table.column` (the table part as given in `tables`).
    pub exclude_columns: Vec<String>,
    /// Install row capture even when the role may not create event triggers
    /// (not a superuser): DDL is then not captured, and [`status`] says so.
    pub without_ddl: bool,
    pub mode: Mode,
}

/// How row changes are captured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Row triggers write each change to an outbox table.
    #[default]
    Triggers,
    /// A replication slot decodes the changes from the WAL (`pgoutput`);
    /// needs `wal_level = logical` and PostgreSQL 14 or later.
    Logical,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Triggers => "triggers",
            Mode::Logical => "logical",
        }
    }
}

/// Which tables are captured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Tables {
    /// None: DDL capture only.
    #[default]
    None,
    /// These tables (`name` or `schema.name`, resolved with the search path
    /// as PostgreSQL resolves a table name).
    List(Vec<String>),
    /// Every ordinary and partitioned table of this schema (not partitions:
    /// a partitioned table's row triggers fire for its partitions).
    Schema(String),
}

/// One table with row capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedTable {
    /// `schema.table`, quoted where PostgreSQL would quote it.
    pub name: String,
    /// Primary-key columns; empty when the table has none (its rows are
    /// identified by a hash of the row, see docs/postgresql.md).
    pub key_columns: Vec<String>,
    pub excluded: Vec<String>,
}

/// The result of [`install`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub version: i32,
    /// Random per install, kept by upgrades: part of every idempotency key.
    pub epoch: String,
    /// `false` when the install upgraded an existing one in place.
    pub fresh: bool,
    pub ddl_capture: bool,
    pub mode: Mode,
    /// Logical mode: the replication slot.
    pub slot: Option<String>,
    pub tables: Vec<TrackedTable>,
    /// Things the user should know, e.g. a table without a primary key.
    pub warnings: Vec<String>,
}

/// The result of [`status`].
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub database: String,
    /// `None`: capture is not installed in this database.
    pub install: Option<InstallStatus>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstallStatus {
    pub version: i32,
    pub epoch: String,
    pub installed_at: String,
    pub ddl_capture: bool,
    pub mode: Mode,
    /// Logical mode: the replication slot's state.
    pub slot: Option<SlotStatus>,
    pub tables: Vec<TrackedTable>,
    /// Tracked tables whose capture triggers are gone (dropped by someone).
    pub missing_triggers: Vec<String>,
    /// Outbox rows not yet drained (always 0 in logical mode), and when the
    /// oldest was captured.
    pub pending: i64,
    pub oldest_pending: Option<String>,
    /// Events drained so far, and the last (transaction id, outbox id).
    pub drained_total: i64,
    pub drained_through: Option<(String, i64)>,
    pub drained_at: Option<String>,
    /// Logical mode: the slot position of the last drain.
    pub drained_lsn: Option<String>,
}

/// The replication slot of a logical-decoding install.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotStatus {
    pub name: String,
    /// `false`: the slot is gone (dropped by someone); re-install.
    pub exists: bool,
    /// PostgreSQL's `wal_status`: `reserved`, `extended`, `unreserved`
    /// (about to be lost) or `lost`.
    pub wal_status: Option<String>,
    /// The slot can no longer be read: its WAL was removed.
    pub invalidated: bool,
    /// A process is reading it now.
    pub active_pid: Option<i32>,
    /// WAL the server keeps for the slot (from its restart LSN to the
    /// current WAL position), in bytes.
    pub retained_bytes: Option<i64>,
    /// WAL not yet confirmed by a drain (from the confirmed position to the
    /// current WAL position), in bytes.
    pub lag_bytes: Option<i64>,
    pub confirmed_lsn: Option<String>,
    /// Changes never captured, recorded by an install that replaced a lost
    /// slot and not yet reported by a drain.
    pub gap: Option<(String, String)>,
}

/// What capture refuses or fails at.
#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("invalid PostgreSQL connection string: {0}")]
    Dsn(String),
    #[error("cannot connect to PostgreSQL at {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: postgres::Error,
    },
    #[error("capture is not installed in database {database}; run `sealtrail pg install` first")]
    NotInstalled { database: String },
    #[error("database {database} holds capture version {found}, newer than this sealtrail's {supported}; use a newer sealtrail")]
    NewerVersion {
        database: String,
        found: i32,
        supported: i32,
    },
    #[error("role {role} is not a superuser, and only a superuser may create the event triggers that capture DDL; install as a superuser, or pass --no-ddl to capture row changes only")]
    NotSuperuser { role: String },
    #[error("role {role} exists and is a superuser; the capture functions run as {role}, which must have no right but adding to the outbox: drop or alter that role (NOSUPERUSER), then install again")]
    CaptureRoleSuperuser { role: String },
    #[error("table {name} does not exist in database {database}")]
    NoSuchTable { name: String, database: String },
    #[error("{name} is not a table (it is a {kind})")]
    NotATable { name: String, kind: String },
    #[error("schema {name} does not exist in database {database}")]
    NoSuchSchema { name: String, database: String },
    #[error("--exclude-columns {spec}: {reason}")]
    BadExclude { spec: String, reason: String },
    #[error("the outbox of database {database} holds {pending} changes not yet drained; run `sealtrail pg sync` first, or force the uninstall to discard them")]
    Pending { database: String, pending: i64 },
    #[error("database {database} runs with wal_level = {found}; logical-decoding capture needs wal_level = logical in postgresql.conf, which takes effect only after a restart of PostgreSQL")]
    WalLevel { database: String, found: String },
    #[error(
        "database {database} runs PostgreSQL {found}; logical-decoding capture needs 14 or later (pgoutput's messages)"
    )]
    ServerTooOld { database: String, found: String },
    #[error("database {database} has capture installed in {found} mode; uninstall it first (after a final `sealtrail pg sync`) to install in {wanted} mode")]
    ModeChange {
        database: String,
        found: String,
        wanted: String,
    },
    #[error("table {name} has no primary key and replica identity {identity}: with a publication over it PostgreSQL would refuse its updates and deletes; give it a primary key or run `ALTER TABLE {name} REPLICA IDENTITY FULL` first")]
    NoReplicaIdentity { name: String, identity: String },
    #[error("the replication slot {slot} is in use by process {pid}; stop it (e.g. the Sealtrail server following this database) first")]
    SlotActive { slot: String, pid: i32 },
    #[error("the replication slot {slot} of database {database} holds changes not yet drained; run `sealtrail pg sync` first, or force the uninstall to discard them")]
    SlotPending { slot: String, database: String },
    #[error("{what}: {source}")]
    Postgres {
        what: String,
        #[source]
        source: postgres::Error,
    },
}

impl CaptureError {
    pub(crate) fn pg(what: impl Into<String>) -> impl FnOnce(postgres::Error) -> CaptureError {
        let what = what.into();
        move |source| CaptureError::Postgres { what, source }
    }
}

/// Connect to `dsn`, naming host, port and database (never the password)
/// when that fails.
pub(crate) fn connect(dsn: &str) -> Result<(Client, String), CaptureError> {
    let config: postgres::Config = dsn
        .parse()
        .map_err(|e: postgres::Error| CaptureError::Dsn(e.to_string()))?;
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(h) => h.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres")
        .to_string();
    let target = format!("{host}:{port}, database {database}");
    let client = config
        .connect(NoTls)
        .map_err(|source| CaptureError::Connect { target, source })?;
    Ok((client, database))
}

/// Install capture into the database at `dsn`, or bring an existing
/// install up to date. The tracked tables become exactly `opts.tables`
/// (tables no longer named lose their triggers). The outbox, its pending
/// changes and the epoch survive a re-install. One transaction: on any
/// error nothing changes.
pub fn install(dsn: &str, opts: &InstallOptions) -> Result<Installed, CaptureError> {
    let (mut client, database) = connect(dsn)?;
    let (role, superuser): (String, bool) = {
        let row = client
            .query_one(
                "SELECT current_user::text, rolsuper FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .map_err(CaptureError::pg("reading the role"))?;
        (row.get(0), row.get(1))
    };
    if !superuser && !opts.without_ddl {
        return Err(CaptureError::NotSuperuser { role });
    }
    let ddl_capture = superuser;
    if opts.mode == Mode::Logical {
        let row = client
            .query_one(
                "SELECT current_setting('wal_level'), current_setting('server_version_num')::int,
                        current_setting('server_version')",
                &[],
            )
            .map_err(CaptureError::pg("reading wal_level"))?;
        let (wal_level, version): (String, i32) = (row.get(0), row.get(1));
        if version < 140_000 {
            return Err(CaptureError::ServerTooOld {
                database,
                found: row.get(2),
            });
        }
        if wal_level != "logical" {
            return Err(CaptureError::WalLevel {
                database,
                found: wal_level,
            });
        }
    }
    let mut tx = client
        .transaction()
        .map_err(CaptureError::pg("beginning the install"))?;
    // One installer at a time.
    tx.execute("SELECT pg_advisory_xact_lock(hashtext('sealtrail.install'))", &[])
        .map_err(CaptureError::pg("locking the install"))?;
    let existing = installed_version(&mut tx)?;
    if let Some(found) = existing {
        if found > VERSION {
            return Err(CaptureError::NewerVersion {
                database,
                found,
                supported: VERSION,
            });
        }
    }
    // Event triggers go first so that the install's own DDL is not
    // recorded, and are recreated last.
    drop_event_triggers(&mut tx)?;
    tx.batch_execute(sql::BASE)
        .map_err(CaptureError::pg("creating the capture schema"))?;
    if superuser {
        let role_is_super: Option<bool> = tx
            .query_opt(
                "SELECT rolsuper FROM pg_roles WHERE rolname = $1",
                &[&sql::CAPTURE_ROLE],
            )
            .map_err(CaptureError::pg("reading the capture role"))?
            .map(|r| r.get(0));
        if role_is_super == Some(true) {
            return Err(CaptureError::CaptureRoleSuperuser {
                role: sql::CAPTURE_ROLE.into(),
            });
        }
        tx.batch_execute(sql::CAPTURE_ROLE_SQL)
            .map_err(CaptureError::pg(format!(
                "giving the capture functions to role {}",
                sql::CAPTURE_ROLE
            )))?;
    }
    if existing.is_some() {
        let found: String = tx
            .query_one("SELECT mode FROM sealtrail.install", &[])
            .map_err(CaptureError::pg("reading the install mode"))?
            .get(0);
        if found != opts.mode.as_str() {
            return Err(CaptureError::ModeChange {
                database,
                found,
                wanted: opts.mode.as_str().into(),
            });
        }
    }

    let mut tables = resolve_tables(&mut tx, &opts.tables, &database)?;
    apply_excludes(&mut tables, &opts.exclude_columns)?;
    let mut warnings = Vec::new();
    drop_row_triggers(&mut tx)?;
    // Installs before version 6 captured inserts and deletes with this one
    // function; nothing uses it once their triggers are gone.
    tx.batch_execute("DROP FUNCTION IF EXISTS sealtrail.capture_rows()")
        .map_err(CaptureError::pg("dropping an earlier version's capture function"))?;
    tx.execute("DELETE FROM sealtrail.tables", &[])
        .map_err(CaptureError::pg("clearing the tracked tables"))?;
    for t in &tables {
        if t.table.key_columns.is_empty() {
            warnings.push(format!(
                "table {} has no primary key: its rows are identified by a SHA-256 of the whole row image",
                t.table.name
            ));
        }
        if opts.mode == Mode::Logical {
            logical_table_check(&mut tx, t, &mut warnings)?;
            tx.execute(
                "INSERT INTO sealtrail.tables (relid, name, key_columns, excluded) VALUES ($1, $2, $3, $4)",
                &[&t.relid, &t.table.name, &t.table.key_columns, &t.table.excluded],
            )
            .map_err(CaptureError::pg("recording the tracked tables"))?;
            continue;
        }
        let mut args = vec![quote_literal(
            &serde_json::to_string(&t.table.key_columns).unwrap_or_default(),
        )];
        args.extend(t.table.excluded.iter().map(|c| quote_literal(c)));
        let args = args.join(", ");
        let name = &t.table.name;
        // Most tables exclude nothing, and their writers are spared the
        // exclusion's jsonb round trip. The update function skips an
        // update that changes nothing (see the capture SQL).
        let (inserted, deleted, updated) = if t.table.excluded.is_empty() {
            ("capture_inserted", "capture_deleted", "capture_row")
        } else {
            (
                "capture_rows_excluding",
                "capture_rows_excluding",
                "capture_row_excluding",
            )
        };
        tx.batch_execute(&format!(
            "CREATE TRIGGER {insert} AFTER INSERT ON {name} REFERENCING NEW TABLE AS sealtrail_new
                 FOR EACH STATEMENT EXECUTE FUNCTION sealtrail.{inserted}({args});
             CREATE TRIGGER {delete} AFTER DELETE ON {name} REFERENCING OLD TABLE AS sealtrail_old
                 FOR EACH STATEMENT EXECUTE FUNCTION sealtrail.{deleted}({args});
             CREATE TRIGGER {update} AFTER UPDATE ON {name} FOR EACH ROW
                 EXECUTE FUNCTION sealtrail.{updated}({args});
             CREATE TRIGGER {trunc} AFTER TRUNCATE ON {name} FOR EACH STATEMENT EXECUTE FUNCTION sealtrail.capture_truncate();",
            insert = sql::INSERT_TRIGGER,
            delete = sql::DELETE_TRIGGER,
            update = sql::UPDATE_TRIGGER,
            trunc = sql::TRUNCATE_TRIGGER,
        ))
        .map_err(CaptureError::pg(format!("creating the capture triggers on {name}")))?;
        tx.execute(
            "INSERT INTO sealtrail.tables (relid, name, key_columns, excluded) VALUES ($1, $2, $3, $4)",
            &[&t.relid, name, &t.table.key_columns, &t.table.excluded],
        )
        .map_err(CaptureError::pg("recording the tracked tables"))?;
    }

    let slot = match opts.mode {
        Mode::Triggers => None,
        Mode::Logical => {
            let list: Vec<&str> = tables.iter().map(|t| t.table.name.as_str()).collect();
            // Recreated, not altered: `SET TABLE` needs at least one table.
            tx.batch_execute(&format!(
                "DROP PUBLICATION IF EXISTS {publication};
                 CREATE PUBLICATION {publication} {tables} WITH (publish = 'insert, update, delete, truncate', publish_via_partition_root = true)",
                publication = crate::logical::PUBLICATION,
                tables = if list.is_empty() {
                    String::new()
                } else {
                    format!("FOR TABLE {}", list.join(", "))
                },
            ))
            .map_err(CaptureError::pg("creating the publication"))?;
            // One slot per database of the cluster (slot names are
            // cluster-wide).
            let oid: u32 = tx
                .query_one("SELECT oid FROM pg_database WHERE datname = current_database()", &[])
                .map_err(CaptureError::pg("reading the database's oid"))?
                .get(0);
            Some(format!("sealtrail_{oid}"))
        }
    };

    if ddl_capture {
        tx.batch_execute(sql::DDL_FUNCTION)
            .map_err(CaptureError::pg("creating the DDL capture function"))?;
        for (name, event) in sql::EVENT_TRIGGERS {
            tx.batch_execute(&format!(
                "CREATE EVENT TRIGGER {name} ON {event} EXECUTE FUNCTION sealtrail.capture_ddl()"
            ))
            .map_err(CaptureError::pg(format!("creating event trigger {name}")))?;
        }
    } else {
        tx.batch_execute("DROP FUNCTION IF EXISTS sealtrail.capture_ddl()")
            .map_err(CaptureError::pg("dropping the DDL capture function"))?;
        warnings.push(format!(
            "role {role} is not a superuser: DDL is not captured (only row changes)"
        ));
    }

    let row = tx
        .query_one(
            "INSERT INTO sealtrail.install (version, ddl_capture, mode, slot) VALUES ($1, $2, $3, $4)
             ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version,
                 ddl_capture = EXCLUDED.ddl_capture, slot = EXCLUDED.slot, upgraded_at = now()
             RETURNING epoch::text",
            &[&VERSION, &ddl_capture, &opts.mode.as_str(), &slot],
        )
        .map_err(CaptureError::pg("recording the install"))?;
    let epoch: String = row.get(0);
    tx.commit().map_err(CaptureError::pg("committing the install"))?;
    // The slot comes after the publication has committed: decoding WAL
    // from before the publication existed would fail.
    if let Some(slot) = &slot {
        ensure_slot(&mut client, slot, &mut warnings)?;
    }
    Ok(Installed {
        version: VERSION,
        epoch,
        fresh: existing.is_none(),
        ddl_capture,
        mode: opts.mode,
        slot,
        tables: tables.into_iter().map(|t| t.table).collect(),
        warnings,
    })
}

/// Logical mode: a table must let PostgreSQL publish its updates and
/// deletes (a replica identity), and without REPLICA IDENTITY FULL the
/// stream carries no old row images.
fn logical_table_check(
    tx: &mut postgres::Transaction<'_>,
    t: &Resolved,
    warnings: &mut Vec<String>,
) -> Result<(), CaptureError> {
    let row = tx
        .query_one(
            "SELECT c.relreplident::text, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)
               FROM pg_class c WHERE c.oid = $1",
            &[&t.relid],
        )
        .map_err(CaptureError::pg("reading the replica identity"))?;
    let (identity, has_index): (String, bool) = (row.get(0), row.get(1));
    let name = &t.table.name;
    let usable = match identity.as_str() {
        "f" => return Ok(()),
        "d" => !t.table.key_columns.is_empty(),
        "i" => has_index,
        _ => false,
    };
    if !usable {
        let identity = match identity.as_str() {
            "d" => "default",
            "n" => "nothing",
            _ => "index (dropped)",
        };
        return Err(CaptureError::NoReplicaIdentity {
            name: name.clone(),
            identity: identity.into(),
        });
    }
    warnings.push(format!(
        "table {name} has no REPLICA IDENTITY FULL: its updates are captured without the row before (no changes.before, no changes.fields) and its deletes with the key only; `ALTER TABLE {name} REPLICA IDENTITY FULL` gives whole old rows"
    ));
    Ok(())
}

/// Create the install's replication slot, unless it exists and is usable.
/// A slot that was lost (invalidated, or dropped by someone) leaves a gap:
/// it is recorded in the install, and the next drain reports it as a
/// `pg.capture_gap` event.
fn ensure_slot(client: &mut Client, slot: &str, warnings: &mut Vec<String>) -> Result<(), CaptureError> {
    let found = client
        .query_opt(
            "SELECT coalesce(wal_status, '') = 'lost' OR restart_lsn IS NULL, active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .map_err(CaptureError::pg("looking up the replication slot"))?;
    match found {
        Some(row) if !row.get::<_, bool>(0) => return Ok(()),
        Some(row) => {
            if let Some(pid) = row.get::<_, Option<i32>>(1) {
                return Err(CaptureError::SlotActive { slot: slot.into(), pid });
            }
            client
                .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                .map_err(CaptureError::pg(format!(
                    "dropping the invalidated replication slot {slot}"
                )))?;
        }
        None => {}
    }
    let created: String = client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .map_err(CaptureError::pg(format!("creating the replication slot {slot}")))?
        .get(0);
    // A slot that existed before (the install has drained through it, or
    // was installed before it) and is gone now: the WAL between is lost.
    let row = client
        .query_one(
            "SELECT coalesce(drained_lsn::text, ''), upgraded_at IS NOT NULL
               FROM sealtrail.install",
            &[],
        )
        .map_err(CaptureError::pg("reading the install"))?;
    let (drained, reinstalled): (String, bool) = (row.get(0), row.get(1));
    if reinstalled {
        let from = if drained.is_empty() { "0/0".to_string() } else { drained };
        client
            .execute(
                "UPDATE sealtrail.install SET gap_from = $1::text::pg_lsn, gap_to = $2::text::pg_lsn",
                &[&from, &created],
            )
            .map_err(CaptureError::pg("recording the gap"))?;
        warnings.push(format!(
            "the replication slot {slot} was lost and is created anew: changes between LSN {from} and {created} were not captured; the next sync records this gap in the log"
        ));
    }
    Ok(())
}

/// Remove everything [`install`] created: the event triggers, the row
/// triggers and the `sealtrail` schema with the outbox. Refuses while the
/// outbox holds undrained changes unless `force`, since they would be lost.
pub fn uninstall(dsn: &str, force: bool) -> Result<bool, CaptureError> {
    let (mut client, database) = connect(dsn)?;
    let mut tx = client
        .transaction()
        .map_err(CaptureError::pg("beginning the uninstall"))?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtext('sealtrail.install'))", &[])
        .map_err(CaptureError::pg("locking the install"))?;
    if installed_version(&mut tx)?.is_none() {
        return Ok(false);
    }
    let pending: i64 = tx
        .query_one("SELECT count(*) FROM sealtrail.outbox", &[])
        .map_err(CaptureError::pg("counting pending changes"))?
        .get(0);
    if pending > 0 && !force {
        return Err(CaptureError::Pending { database, pending });
    }
    let slot: Option<String> = tx
        .query_one("SELECT to_jsonb(i) ->> 'slot' FROM sealtrail.install i", &[])
        .map_err(CaptureError::pg("reading the install"))?
        .get(0);
    let slot = match slot {
        Some(slot) => {
            let found = tx
                .query_opt(
                    "SELECT active_pid, coalesce(wal_status, '') = 'lost' OR restart_lsn IS NULL
                       FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .map_err(CaptureError::pg("looking up the replication slot"))?;
            match found {
                None => None,
                Some(row) => {
                    if let Some(pid) = row.get::<_, Option<i32>>(0) {
                        return Err(CaptureError::SlotActive { slot, pid });
                    }
                    let lost: bool = row.get(1);
                    if !lost && !force && slot_has_changes(&mut tx, &slot)? {
                        return Err(CaptureError::SlotPending { slot, database });
                    }
                    Some(slot)
                }
            }
        }
        None => None,
    };
    drop_event_triggers(&mut tx)?;
    drop_row_triggers(&mut tx)?;
    tx.batch_execute(&format!(
        "DROP SCHEMA sealtrail CASCADE; DROP PUBLICATION IF EXISTS {}",
        crate::logical::PUBLICATION
    ))
    .map_err(CaptureError::pg("dropping the sealtrail schema"))?;
    tx.commit().map_err(CaptureError::pg("committing the uninstall"))?;
    // Not transactional: after the rest is gone, so that a refusal above
    // leaves the slot in place.
    if let Some(slot) = slot {
        client
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .map_err(CaptureError::pg(format!("dropping the replication slot {slot}")))?;
    }
    Ok(true)
}

/// Whether the slot holds a change or DDL not yet drained (peeking, so
/// nothing is consumed).
fn slot_has_changes(tx: &mut postgres::Transaction<'_>, slot: &str) -> Result<bool, CaptureError> {
    let rows = tx
        .query(
            &format!(
                "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, 1000,
                     'proto_version', '1', 'publication_names', '{}', 'messages', 'true')",
                crate::logical::PUBLICATION
            ),
            &[&slot],
        )
        .map_err(CaptureError::pg(format!("reading the replication slot {slot}")))?;
    Ok(rows.iter().any(|r| {
        let data: &[u8] = r.get(0);
        match crate::logical::pgoutput::decode(data) {
            Ok(crate::logical::pgoutput::Message::Message { prefix, .. }) => prefix == crate::logical::DDL_PREFIX,
            Ok(crate::logical::pgoutput::Message::Insert { .. })
            | Ok(crate::logical::pgoutput::Message::Update { .. })
            | Ok(crate::logical::pgoutput::Message::Delete { .. })
            | Ok(crate::logical::pgoutput::Message::Truncate { .. }) => true,
            _ => false,
        }
    }))
}

/// What is installed in the database at `dsn`, and how far draining is.
pub fn status(dsn: &str) -> Result<Status, CaptureError> {
    let (mut client, database) = connect(dsn)?;
    let mut tx = client.transaction().map_err(CaptureError::pg("reading the install"))?;
    let Some(_) = installed_version(&mut tx)? else {
        return Ok(Status {
            database,
            install: None,
        });
    };
    let row = tx
        .query_one(
            "SELECT version, epoch::text, installed_at::text, ddl_capture, drained_total,
                    drained_xid::text, drained_id, drained_at::text,
                    -- Read so that an install of version 1 (no such columns) shows too.
                    coalesce(to_jsonb(i) ->> 'mode', 'triggers'), to_jsonb(i) ->> 'slot',
                    to_jsonb(i) ->> 'drained_lsn', to_jsonb(i) ->> 'gap_from', to_jsonb(i) ->> 'gap_to'
               FROM sealtrail.install i",
            &[],
        )
        .map_err(CaptureError::pg("reading the install"))?;
    let mode = if row.get::<_, String>(8) == "logical" {
        Mode::Logical
    } else {
        Mode::Triggers
    };
    let slot = match row.get::<_, Option<String>>(9) {
        None => None,
        Some(name) => {
            let found = tx
                .query_opt(
                    "SELECT wal_status, coalesce(wal_status, '') = 'lost' OR restart_lsn IS NULL, active_pid,
                            (pg_current_wal_lsn() - restart_lsn)::bigint,
                            (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, confirmed_flush_lsn::text
                       FROM pg_replication_slots WHERE slot_name = $1",
                    &[&name],
                )
                .map_err(CaptureError::pg("reading the replication slot"))?;
            let gap = row.get::<_, Option<String>>(11).zip(row.get::<_, Option<String>>(12));
            Some(match found {
                None => SlotStatus {
                    name,
                    exists: false,
                    wal_status: None,
                    invalidated: false,
                    active_pid: None,
                    retained_bytes: None,
                    lag_bytes: None,
                    confirmed_lsn: None,
                    gap,
                },
                Some(s) => SlotStatus {
                    name,
                    exists: true,
                    wal_status: s.get(0),
                    invalidated: s.get(1),
                    active_pid: s.get(2),
                    retained_bytes: s.get(3),
                    lag_bytes: s.get(4),
                    confirmed_lsn: s.get(5),
                    gap,
                },
            })
        }
    };
    let drained_xid: Option<String> = row.get(5);
    let drained_id: Option<i64> = row.get(6);
    let tables = tx
        .query(
            "SELECT t.name, t.key_columns, t.excluded,
                    (SELECT count(*) FROM pg_trigger g WHERE g.tgrelid = t.relid AND g.tgname = ANY($1)) = 4
               FROM sealtrail.tables t ORDER BY t.name",
            &[&sql::TABLE_TRIGGERS.to_vec()],
        )
        .map_err(CaptureError::pg("reading the tracked tables"))?;
    let mut tracked = Vec::new();
    let mut missing = Vec::new();
    for t in tables {
        let table = TrackedTable {
            name: t.get(0),
            key_columns: t.get(1),
            excluded: t.get(2),
        };
        if !t.get::<_, bool>(3) && mode == Mode::Triggers {
            missing.push(table.name.clone());
        }
        tracked.push(table);
    }
    let pending = tx
        .query_one("SELECT count(*), min(captured_at)::text FROM sealtrail.outbox", &[])
        .map_err(CaptureError::pg("counting pending changes"))?;
    Ok(Status {
        database,
        install: Some(InstallStatus {
            version: row.get(0),
            epoch: row.get(1),
            installed_at: row.get(2),
            ddl_capture: row.get(3),
            mode,
            slot,
            tables: tracked,
            missing_triggers: missing,
            pending: pending.get(0),
            oldest_pending: pending.get(1),
            drained_total: row.get(4),
            drained_through: drained_xid.zip(drained_id),
            drained_at: row.get(7),
            drained_lsn: row.get(10),
        }),
    })
}

/// The install's version, or `None` when capture is not installed.
pub(crate) fn installed_version(tx: &mut postgres::Transaction<'_>) -> Result<Option<i32>, CaptureError> {
    let exists: bool = tx
        .query_one("SELECT to_regclass('sealtrail.install') IS NOT NULL", &[])
        .map_err(CaptureError::pg("looking for an install"))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = tx
        .query_opt("SELECT version FROM sealtrail.install", &[])
        .map_err(CaptureError::pg("reading the install version"))?;
    Ok(row.map(|r| r.get(0)))
}

fn drop_event_triggers(tx: &mut postgres::Transaction<'_>) -> Result<(), CaptureError> {
    let names: Vec<String> = tx
        .query(
            "SELECT evtname::text FROM pg_event_trigger WHERE evtname = ANY($1)",
            &[&sql::EVENT_TRIGGERS.iter().map(|(n, _)| *n).collect::<Vec<_>>()],
        )
        .map_err(CaptureError::pg("listing event triggers"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for name in names {
        tx.batch_execute(&format!("DROP EVENT TRIGGER IF EXISTS {name}"))
            .map_err(CaptureError::pg(format!("dropping event trigger {name}")))?;
    }
    Ok(())
}

/// Drop the capture triggers from every table that has them (not only the
/// recorded ones: a table renamed or re-created keeps or loses them).
fn drop_row_triggers(tx: &mut postgres::Transaction<'_>) -> Result<(), CaptureError> {
    let rows = tx
        .query(
            "SELECT tgname::text, tgrelid::regclass::text FROM pg_trigger WHERE tgname = ANY($1) AND NOT tgisinternal",
            &[&sql::TABLE_TRIGGERS.to_vec()],
        )
        .map_err(CaptureError::pg("listing capture triggers"))?;
    for r in rows {
        let (trigger, table): (String, String) = (r.get(0), r.get(1));
        tx.batch_execute(&format!("DROP TRIGGER IF EXISTS {trigger} ON {table}"))
            .map_err(CaptureError::pg(format!("dropping trigger {trigger} on {table}")))?;
    }
    Ok(())
}

struct Resolved {
    relid: u32,
    /// The name as given, for matching `--exclude-columns`.
    given: String,
    table: TrackedTable,
    columns: Vec<String>,
}

fn resolve_tables(
    tx: &mut postgres::Transaction<'_>,
    tables: &Tables,
    database: &str,
) -> Result<Vec<Resolved>, CaptureError> {
    let oids: Vec<(String, u32)> = match tables {
        Tables::None => Vec::new(),
        Tables::List(names) => {
            let mut out = Vec::new();
            for given in names {
                // A name PostgreSQL cannot even parse names no table either.
                let row = tx
                    .query_opt(
                        "SELECT c.oid, c.relkind::text FROM pg_class c WHERE c.oid = to_regclass($1)",
                        &[given],
                    )
                    .ok()
                    .flatten();
                let Some(row) = row else {
                    return Err(CaptureError::NoSuchTable {
                        name: given.clone(),
                        database: database.into(),
                    });
                };
                let kind: String = row.get(1);
                if kind != "r" && kind != "p" {
                    let kind = match kind.as_str() {
                        "v" => "view",
                        "m" => "materialized view",
                        "f" => "foreign table",
                        "S" => "sequence",
                        "i" | "I" => "index",
                        _ => "relation that is not a table",
                    };
                    return Err(CaptureError::NotATable {
                        name: given.clone(),
                        kind: kind.into(),
                    });
                }
                out.push((given.clone(), row.get(0)));
            }
            out
        }
        Tables::Schema(schema) => {
            let exists: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                    &[schema],
                )
                .map_err(CaptureError::pg("looking up the schema"))?
                .get(0);
            if !exists || schema == sql::SCHEMA {
                return Err(CaptureError::NoSuchSchema {
                    name: schema.clone(),
                    database: database.into(),
                });
            }
            tx.query(
                "SELECT c.relname::text, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY c.relname",
                &[schema],
            )
            .map_err(CaptureError::pg("listing the schema's tables"))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
        }
    };
    let mut out: Vec<Resolved> = Vec::new();
    for (given, relid) in oids {
        if out.iter().any(|r| r.relid == relid) {
            continue;
        }
        // Always schema-qualified, whatever the search path.
        let qualified: String = tx
            .query_one(
                "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
                &[&relid],
            )
            .map_err(CaptureError::pg("naming the table"))?
            .get(0);
        let key_columns: Vec<String> = tx
            .query(
                "SELECT a.attname::text FROM pg_index i
                   JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, n) ON true
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.n",
                &[&relid],
            )
            .map_err(CaptureError::pg("reading the primary key"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let columns: Vec<String> = tx
            .query(
                "SELECT attname::text FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped",
                &[&relid],
            )
            .map_err(CaptureError::pg("reading the columns"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        out.push(Resolved {
            relid,
            given,
            table: TrackedTable {
                name: qualified,
                key_columns,
                excluded: Vec::new(),
            },
            columns,
        });
    }
    Ok(out)
}

/// Attach each `table.column` of `specs` to its table.
fn apply_excludes(tables: &mut [Resolved], specs: &[String]) -> Result<(), CaptureError> {
    for spec in specs {
        let bad = |reason: String| CaptureError::BadExclude {
            spec: spec.clone(),
            reason,
        };
        let Some((table, column)) = spec.rsplit_once('.') else {
            return Err(bad("expected TABLE.COLUMN".into()));
        };
        if table.is_empty() || column.is_empty() {
            return Err(bad("expected TABLE.COLUMN".into()));
        }
        let unquoted = |s: &str| s.replace('"', "");
        let t = tables
            .iter_mut()
            .find(|t| {
                t.given == table
                    || unquoted(&t.table.name) == unquoted(table)
                    || unquoted(&t.table.name).rsplit_once('.').map(|(_, n)| n) == Some(&unquoted(table))
            })
            .ok_or_else(|| bad(format!("table {table} is not among the captured tables")))?;
        if !t.columns.iter().any(|c| c == column) {
            return Err(bad(format!("table {} has no column {column}", t.table.name)));
        }
        if t.table.key_columns.iter().any(|c| c == column) {
            return Err(bad(format!(
                "{column} is part of the primary key of {}, which identifies each change",
                t.table.name
            )));
        }
        if !t.table.excluded.iter().any(|c| c == column) {
            t.table.excluded.push(column.to_string());
        }
    }
    Ok(())
}

/// A SQL string literal.
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
