//! `sealtrail pg import-log`, `pg migrate` and `pg migrations`: a
//! PostgreSQL server's log, and the schema migrations applied to a
//! database, as events in the log given by `--log`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;

use sealtrail_ledger::DataDir;
use sealtrail_pg::logimport::{self, BatchOutcome, FollowOptions, ImportOptions, ImportReport, LogFormat};
use sealtrail_pg::migrate::{self, MigrateOptions, MigrationState};
use sealtrail_trail::{Item, Trail, TrailOptions};

#[derive(Args)]
pub struct ImportLogArgs {
    /// Log files of a PostgreSQL server.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Their format (detected when absent): stderr, csvlog or jsonlog.
    #[arg(long, value_parser = parse_format)]
    format: Option<LogFormat>,
    /// The server's log_line_prefix, for stderr logs (detected when absent).
    #[arg(long)]
    line_prefix: Option<String>,
    /// Keep reading the (one) file as it grows, across rotation, until interrupted.
    #[arg(long)]
    follow: bool,
}

#[derive(Args)]
pub struct MigrateArgs {
    /// The database: `postgresql://user@host:port/db`.
    #[arg(long)]
    dsn: String,
    /// Directory of `V<version>__<description>.sql` scripts.
    dir: PathBuf,
    /// The change ticket the migration belongs to (recorded with each script).
    #[arg(long)]
    ticket: String,
    /// Why the migration is applied (recorded with each script).
    #[arg(long)]
    reason: String,
    /// List what would be applied, apply nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args)]
pub struct MigrationsArgs {
    /// The database: `postgresql://user@host:port/db`.
    #[arg(long)]
    dsn: String,
    /// Directory of `V<version>__<description>.sql` scripts.
    dir: PathBuf,
}

fn parse_format(s: &str) -> Result<LogFormat, String> {
    LogFormat::from_name(s).ok_or_else(|| format!("{s:?}: use stderr, csvlog or jsonlog"))
}

fn open_trail(data: &Path, log: &str) -> anyhow::Result<Trail> {
    Trail::open(&DataDir::new(data), log, TrailOptions::default()).with_context(|| format!("opening log {log}"))
}

/// Stores a batch of event texts, saying which were already stored and
/// which the schema refused.
fn store(trail: &Trail, batch: &[String]) -> Result<BatchOutcome, String> {
    let inputs: Vec<&[u8]> = batch.iter().map(|s| s.as_bytes()).collect();
    let ingested = trail.ingest(&inputs, false).map_err(|e| e.to_string())?;
    let mut outcome = BatchOutcome::default();
    for (i, item) in ingested.items.iter().enumerate() {
        match item {
            Item::Stored { duplicate: true, .. } => outcome.duplicates += 1,
            Item::Rejected(why) => outcome.rejected.push((i, why.to_string())),
            _ => {}
        }
    }
    Ok(outcome)
}

fn say(report: &ImportReport, file: &Path) {
    for e in &report.errors {
        eprintln!("{e}");
    }
    if report.error_count > report.errors.len() as u64 {
        eprintln!(
            "… and {} more lines not imported",
            report.error_count - report.errors.len() as u64
        );
    }
    eprintln!(
        "{}: {} entries imported, {} already stored, {} lines not imported",
        file.display(),
        report.imported,
        report.duplicates,
        report.error_count
    );
}

/// Exit 0 when every line was imported (or already stored), 1 when some
/// could not be.
pub fn import_log(data: &Path, log: &str, args: &ImportLogArgs) -> anyhow::Result<ExitCode> {
    let trail = open_trail(data, log)?;
    let options = ImportOptions {
        format: args.format,
        line_prefix: args.line_prefix.clone(),
        ..ImportOptions::default()
    };
    let mut failed = 0u64;
    if args.follow {
        let [file] = &args.files[..] else {
            bail!("--follow reads one file");
        };
        // Where the import stopped, so a restart resumes there.
        let positions = data.join("pg-log-positions");
        std::fs::create_dir_all(&positions).with_context(|| format!("creating {}", positions.display()))?;
        let id = migrate::sha256_hex(
            std::fs::canonicalize(file)
                .unwrap_or(file.clone())
                .to_string_lossy()
                .as_bytes(),
        );
        let follow = FollowOptions {
            import: options,
            position_file: Some(positions.join(format!("{}.position", &id[..16]))),
            ..FollowOptions::default()
        };
        let stop = Arc::new(AtomicBool::new(false));
        stop_on_signal(stop.clone())?;
        let report = logimport::follow(file, &follow, |b| store(&trail, b), |_| stop.load(Ordering::Relaxed))?;
        say(&report, file);
        failed += report.error_count;
    } else {
        for file in &args.files {
            let report = logimport::import(file, &options, |b| store(&trail, b))?;
            say(&report, file);
            failed += report.error_count;
        }
    }
    trail.sync_index()?;
    Ok(ExitCode::from(if failed > 0 { 1 } else { 0 }))
}

/// SIGINT or SIGTERM asks `--follow` to stop after the batch in hand.
fn stop_on_signal(flag: Arc<AtomicBool>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new()
        .name("sealtrail-signal".into())
        .spawn(move || {
            runtime.block_on(async move {
                let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
                else {
                    return;
                };
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                flag.store(true, Ordering::Relaxed);
            });
        })?;
    Ok(())
}

/// Exit 0 when every pending script applied (or, with `--dry-run`, none
/// would run into a refusal), 1 when one failed, 2 on a refusal.
pub fn migrate(data: &Path, log: &str, args: &MigrateArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    if args.ticket.trim().is_empty() || args.reason.trim().is_empty() {
        bail!("--ticket and --reason must not be empty: they are recorded with every script");
    }
    let trail = if args.dry_run {
        None
    } else {
        Some(open_trail(data, log)?)
    };
    let mut client = migrate::connect(&args.dsn)?;
    let options = MigrateOptions {
        ticket: args.ticket.clone(),
        reason: args.reason.clone(),
        dry_run: args.dry_run,
        installed_by: std::env::var("USER").ok(),
    };
    let report = migrate::run(&mut client, &args.dir, &options, |batch| match &trail {
        Some(t) => store(t, batch),
        None => Ok(BatchOutcome::default()),
    })?;
    for a in &report.applied {
        writeln!(
            out,
            "applied\t{}\t{}\t{} ms\t{}",
            a.version, a.script, a.duration_ms, a.checksum
        )?;
    }
    if args.dry_run {
        for s in &report.pending {
            writeln!(out, "pending\t{}\t{}\t{}", s.version, s.name, s.checksum)?;
        }
    }
    if let Some(t) = &trail {
        t.sync_index()?;
    }
    if let Some(f) = &report.failed {
        eprintln!(
            "sealtrail: {} failed after {} ms and was rolled back: {}",
            f.script, f.duration_ms, f.error
        );
        return Ok(ExitCode::from(1));
    }
    if report.applied.is_empty() && !args.dry_run {
        eprintln!("nothing to apply: the database is up to date");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn migrations(args: &MigrationsArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let mut client = migrate::connect(&args.dsn)?;
    for m in migrate::list(&mut client, &args.dir)? {
        let state = match &m.state {
            MigrationState::Applied => "applied".to_string(),
            MigrationState::Pending => "pending".to_string(),
            MigrationState::Missing => "missing".to_string(),
            MigrationState::Changed { recorded } => format!("changed (recorded {recorded})"),
        };
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            m.version,
            m.script,
            state,
            m.checksum,
            m.installed_on.as_deref().unwrap_or("-"),
            m.ticket.as_deref().unwrap_or("-"),
            m.reason.as_deref().unwrap_or("-"),
        )?;
    }
    Ok(())
}
