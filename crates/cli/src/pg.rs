//! `sealtrail pg`: install change capture into a PostgreSQL database,
//! remove it, show its state, and drain captured changes into a log once
//! (docs/postgresql.md, "Capture").

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use sealtrail_ledger::DataDir;
use sealtrail_pg::capture::{self, InstallOptions, Mode, Tables};
use sealtrail_pg::drain::{self, DrainOptions};
use sealtrail_trail::{Trail, TrailOptions};

#[derive(Subcommand)]
pub enum PgCommand {
    /// Install (or upgrade in place) capture of DDL and row changes into a database.
    #[command(after_help = "Examples:
  sealtrail pg install --dsn postgresql://postgres@db/shop --tables public.orders,customers
  sealtrail pg install --dsn postgresql://postgres@db/shop --schema billing --exclude-columns invoices.card_number
  sealtrail pg install --dsn postgresql://app_owner@db/shop --tables orders --no-ddl
  sealtrail pg install --dsn postgresql://postgres@db/shop --tables events --mode logical

Re-running install replaces the set of captured tables; pending changes and the install's epoch are kept.
--mode logical reads row changes from a replication slot instead of triggers (needs wal_level = logical).")]
    Install(InstallArgs),
    /// Remove everything install created (refuses while changes wait to be drained, unless --force).
    Uninstall {
        #[command(flatten)]
        dsn: DsnArg,
        /// Discard changes not yet drained.
        #[arg(long)]
        force: bool,
    },
    /// What is installed, which tables are captured, and how far draining is.
    Status {
        #[command(flatten)]
        dsn: DsnArg,
        #[arg(long)]
        json: bool,
    },
    /// Drain captured changes into the log (--log) once, exactly once each, then exit.
    #[command(after_help = "Example (from cron):
  sealtrail --data /var/lib/sealtrail --log shop-db pg sync --dsn postgresql://postgres@db/shop")]
    Sync {
        #[command(flatten)]
        dsn: DsnArg,
        /// Changes per read and append (outbox rows, or slot changes in logical mode).
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
    },
    /// Import PostgreSQL server log files (stderr, csvlog or jsonlog) as pg.log events; idempotent.
    ImportLog(crate::pg_admin::ImportLogArgs),
    /// Apply pending migration scripts, each in its own transaction, recorded in the database and as pg.migration events.
    Migrate(crate::pg_admin::MigrateArgs),
    /// The migrations of a directory: applied, pending, missing or changed since applied.
    Migrations(crate::pg_admin::MigrationsArgs),
}

#[derive(Args)]
pub struct DsnArg {
    /// The tracked database: a postgresql:// URL or `key=value` connection string.
    #[arg(long, env = "SEALTRAIL_PG_DSN")]
    dsn: String,
}

#[derive(Args)]
pub struct InstallArgs {
    #[command(flatten)]
    dsn: DsnArg,
    /// Tables whose row changes are captured, comma-separated (`name` or `schema.name`).
    #[arg(long, value_delimiter = ',', conflicts_with = "schema")]
    tables: Vec<String>,
    /// Capture every table of this schema.
    #[arg(long)]
    schema: Option<String>,
    /// Columns left out of row images, comma-separated `table.column`.
    #[arg(long, value_delimiter = ',')]
    exclude_columns: Vec<String>,
    /// Capture row changes only, without DDL (for a role that is not a superuser).
    #[arg(long)]
    no_ddl: bool,
    /// How row changes are captured: `triggers` (an outbox written by row
    /// triggers) or `logical` (a replication slot decoding the WAL).
    #[arg(long, value_enum, default_value_t = ModeArg::Triggers)]
    mode: ModeArg,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    Triggers,
    Logical,
}

pub fn pg(data: &Path, log: &str, command: &PgCommand, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    match command {
        PgCommand::ImportLog(args) => return crate::pg_admin::import_log(data, log, args),
        PgCommand::Migrate(args) => return crate::pg_admin::migrate(data, log, args, out),
        PgCommand::Migrations(args) => crate::pg_admin::migrations(args, out)?,
        PgCommand::Install(args) => {
            let tables = match (&args.schema, args.tables.is_empty()) {
                (Some(schema), _) => Tables::Schema(schema.clone()),
                (None, false) => Tables::List(args.tables.clone()),
                (None, true) => Tables::None,
            };
            let opts = InstallOptions {
                tables,
                exclude_columns: args.exclude_columns.clone(),
                without_ddl: args.no_ddl,
                mode: match args.mode {
                    ModeArg::Triggers => Mode::Triggers,
                    ModeArg::Logical => Mode::Logical,
                },
            };
            let installed = capture::install(&args.dsn.dsn, &opts)?;
            for w in &installed.warnings {
                eprintln!("warning: {w}");
            }
            writeln!(
                out,
                "{} capture version {} (epoch {}); mode {}{}; DDL capture {}; {} table(s){}",
                if installed.fresh { "installed" } else { "upgraded" },
                installed.version,
                installed.epoch,
                installed.mode.as_str(),
                installed
                    .slot
                    .as_ref()
                    .map(|s| format!(" (replication slot {s})"))
                    .unwrap_or_default(),
                if installed.ddl_capture { "on" } else { "off" },
                installed.tables.len(),
                if installed.tables.is_empty() { "" } else { ":" }
            )?;
            for t in &installed.tables {
                writeln!(
                    out,
                    "  {}\tkey {}\texcluded {}",
                    t.name,
                    if t.key_columns.is_empty() {
                        "(none: row hash)".to_string()
                    } else {
                        t.key_columns.join(",")
                    },
                    if t.excluded.is_empty() {
                        "-".to_string()
                    } else {
                        t.excluded.join(",")
                    }
                )?;
            }
        }
        PgCommand::Uninstall { dsn, force } => {
            if capture::uninstall(&dsn.dsn, *force)? {
                writeln!(out, "capture removed")?;
            } else {
                eprintln!("capture is not installed in that database; nothing to do");
            }
        }
        PgCommand::Status { dsn, json } => {
            let status = capture::status(&dsn.dsn)?;
            if *json {
                writeln!(out, "{}", status_json(&status))?;
            } else {
                print_status(out, &status)?;
            }
        }
        PgCommand::Sync { dsn, batch } => {
            let trail = Trail::open(&DataDir::new(data), log, TrailOptions::default())
                .with_context(|| format!("open log {log}"))?;
            let report = drain::drain(
                &dsn.dsn,
                &trail,
                &DrainOptions {
                    batch: (*batch).max(1),
                    limit: None,
                },
            )?;
            writeln!(
                out,
                "drained {} change(s) into log {log}: {} appended, {} already there, {} without an event (only excluded columns changed)",
                report.rows, report.appended, report.duplicates, report.skipped
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(out: &mut impl Write, status: &capture::Status) -> anyhow::Result<()> {
    let Some(i) = &status.install else {
        writeln!(out, "database {}: capture not installed", status.database)?;
        return Ok(());
    };
    writeln!(
        out,
        "database {}: capture version {} (epoch {}), installed {}",
        status.database, i.version, i.epoch, i.installed_at
    )?;
    writeln!(out, "mode: {}", i.mode.as_str())?;
    writeln!(out, "DDL capture: {}", if i.ddl_capture { "on" } else { "off" })?;
    if let Some(slot) = &i.slot {
        if !slot.exists {
            writeln!(
                out,
                "ERROR: replication slot {} does not exist; changes since the last sync may be lost: run install --mode logical again",
                slot.name
            )?;
        } else if slot.invalidated {
            writeln!(
                out,
                "ERROR: replication slot {} is invalidated (wal_status {}): changes after the last sync are lost; run install --mode logical again",
                slot.name,
                slot.wal_status.as_deref().unwrap_or("unknown")
            )?;
        } else {
            writeln!(
                out,
                "replication slot {}: wal_status {}, {}; retained WAL {} bytes, not yet synced {} bytes (confirmed through {})",
                slot.name,
                slot.wal_status.as_deref().unwrap_or("unknown"),
                slot.active_pid
                    .map(|p| format!("in use by process {p}"))
                    .unwrap_or_else(|| "idle".into()),
                slot.retained_bytes.unwrap_or(0),
                slot.lag_bytes.unwrap_or(0),
                slot.confirmed_lsn.as_deref().unwrap_or("-")
            )?;
            if slot.wal_status.as_deref() == Some("unreserved") {
                writeln!(
                    out,
                    "WARNING: the slot's WAL is past max_slot_wal_keep_size and may be removed at the next checkpoint: sync now"
                )?;
            }
        }
        if let Some((from, to)) = &slot.gap {
            writeln!(
                out,
                "WARNING: changes between LSN {from} and {to} were not captured (a lost slot); the next sync records it"
            )?;
        }
    }
    for t in &i.tables {
        let key = if t.key_columns.is_empty() {
            "(none: row hash)".to_string()
        } else {
            t.key_columns.join(",")
        };
        let excluded = if t.excluded.is_empty() {
            "-".to_string()
        } else {
            t.excluded.join(",")
        };
        writeln!(out, "table {}\tkey {key}\texcluded {excluded}", t.name)?;
    }
    for t in &i.missing_triggers {
        writeln!(out, "WARNING: the capture triggers of {t} are gone; run install again")?;
    }
    if i.mode == Mode::Triggers {
        writeln!(
            out,
            "pending: {}{}",
            i.pending,
            i.oldest_pending
                .as_ref()
                .map(|t| format!(" (oldest captured {t})"))
                .unwrap_or_default()
        )?;
    }
    writeln!(
        out,
        "drained: {}{}",
        i.drained_total,
        i.drained_at
            .as_ref()
            .map(|t| format!(" (last {t})"))
            .unwrap_or_default()
    )?;
    Ok(())
}

fn status_json(status: &capture::Status) -> serde_json::Value {
    let install = status.install.as_ref().map(|i| {
        json!({
            "version": i.version,
            "epoch": i.epoch,
            "installed_at": i.installed_at,
            "ddl_capture": i.ddl_capture,
            "tables": i.tables.iter().map(|t| json!({
                "name": t.name, "key_columns": t.key_columns, "excluded": t.excluded,
            })).collect::<Vec<_>>(),
            "missing_triggers": i.missing_triggers,
            "pending": i.pending,
            "oldest_pending": i.oldest_pending,
            "drained_total": i.drained_total,
            "drained_through": i.drained_through.as_ref().map(|(xid, id)| json!({"transaction_id": xid, "outbox_id": id})),
            "drained_at": i.drained_at,
            "mode": i.mode.as_str(),
            "drained_lsn": i.drained_lsn,
            "slot": i.slot.as_ref().map(|s| json!({
                "name": s.name,
                "exists": s.exists,
                "wal_status": s.wal_status,
                "invalidated": s.invalidated,
                "active_pid": s.active_pid,
                "retained_bytes": s.retained_bytes,
                "lag_bytes": s.lag_bytes,
                "confirmed_lsn": s.confirmed_lsn,
                "gap": s.gap.as_ref().map(|(from, to)| json!({"from_lsn": from, "to_lsn": to})),
            })),
        })
    });
    json!({ "database": status.database, "install": install })
}
