//! The `sealtrail` command: a thin shell over the library crates. Parses
//! arguments, calls the ledger, prints results, and maps outcomes to exit
//! codes (0 ok, 1 integrity failure, 2 usage or I/O error).

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use sealtrail_ledger::verify::{verify_log_with_progress, Report};
use sealtrail_ledger::{DataDir, LedgerError, Log, LogOptions};
use sealtrail_merkle::{leaf_hash, Receipt, Verifier};
use sealtrail_trail::TrailError;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod alerts;
mod backup;
mod changes;
mod data;
mod events;
mod jobs;
mod output;
mod pg;
mod pg_admin;
mod pii;
mod progress;
mod report;
mod retention;
mod server;
mod users;

// Ingest allocates many small strings on one thread (validation) and frees
// them on another (the indexer). jemalloc does that with about 15% less
// CPU per event than the system allocator, and unlike mimalloc's defaults
// it does not hand memory back to the kernel only to fault it in again a
// few milliseconds later (BENCHMARKS.md, "Evidence for design decisions").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "sealtrail", version, about = "Audit trail that proves its own integrity")]
struct Cli {
    /// Data directory (the server's data_dir).
    #[arg(long, global = true, env = "SEALTRAIL_DATA", default_value = server::DEFAULT_DATA, help_heading = "Global options")]
    data: PathBuf,
    /// Log to work on.
    #[arg(long, global = true, default_value = server::DEFAULT_LOG, help_heading = "Global options")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (creates the data directory, the log and the system log on first start).
    Serve(server::ServeArgs),
    /// PII protection: protected fields, erasure of a subject, the master key (docs/pii.md).
    Pii {
        #[command(subcommand)]
        command: pii::PiiCommand,
    },
    /// Create, list and revoke API keys.
    Keys {
        #[command(subcommand)]
        command: server::KeysCommand,
    },
    /// Create, list, disable and reset users who sign in to the pages (docs/users.md).
    Users {
        #[command(subcommand)]
        command: users::UsersCommand,
    },
    /// Alert rules, channels, silences, alerts and notifications (docs/alerts.md).
    Alerts {
        #[command(subcommand)]
        command: alerts::AlertsCommand,
    },
    /// Scheduled jobs: verification, reindexing… on cron or daily/weekly/monthly/once schedules (docs/scheduler.md).
    Jobs {
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// Data reconciliation: diff two tables, find their keys, validate them, review past runs (docs/data.md).
    Data {
        #[command(subcommand)]
        command: data::DataCommand,
    },
    /// PostgreSQL: change capture, server-log import and audited migrations (docs/postgresql.md).
    Pg {
        #[command(subcommand)]
        command: pg::PgCommand,
    },
    /// Back up the data directory and check backups (docs/backup.md).
    Backup {
        #[command(subcommand)]
        command: backup::BackupCommand,
    },
    /// Restore the backup in SRC into the data directory given by --data, which must be empty or
    /// missing; everything is verified before the directory appears. Exit 1 if the backup is damaged.
    Restore { src: PathBuf },
    /// Create the data directory and the log (default: `default`); print its verifier key.
    Init {
        /// Origin line of the log's checkpoints (default derived from the log name).
        #[arg(long)]
        origin: Option<String>,
    },
    /// Prune a log's oldest entries by age or size, keeping its hashes (docs/retention.md).
    Retention {
        #[command(subcommand)]
        command: retention::RetentionCommand,
    },
    /// Legal holds: events retention must keep (docs/retention.md).
    Holds {
        #[command(subcommand)]
        command: retention::HoldsCommand,
    },
    /// Create and list logs.
    Logs {
        #[command(subcommand)]
        command: LogsCommand,
    },
    /// Print the log's verifier key.
    Key,
    /// Append audit events, one JSON object per line of FILE (or stdin). Bad lines are
    /// reported by number and the good ones appended; exit 2 if any line was refused.
    Append {
        /// Store each line's bytes as they are, as raw entries rather than events.
        #[arg(long)]
        raw: bool,
        /// All or nothing: append no line unless every line is a valid event.
        #[arg(long, conflicts_with = "raw")]
        strict: bool,
        /// The server's configuration file: its [[pii.fields]] and PII master key apply too.
        #[arg(long, value_name = "FILE", conflicts_with = "raw")]
        config: Option<PathBuf>,
        file: Option<PathBuf>,
    },
    /// Search events (newest first) by field, time range and text.
    Query(events::ListArgs),
    /// The timeline of one entity (oldest first): the events that name it as a target.
    History {
        /// The entity, TYPE:ID (e.g. lead:LEAD-001).
        entity: String,
        #[command(flatten)]
        list: events::ListArgs,
    },
    /// Recent failures and errors with their error details.
    Errors(events::ListArgs),
    /// Totals and counts by action, actor, outcome, and by hour or day.
    Stats(events::StatsArgs),
    /// Per action: count, min, max, mean, p50, p95, p99 of duration_ms.
    Performance(events::PerformanceArgs),
    /// Write every matching event to a file (oldest first), streaming.
    Export(events::ExportArgs),
    /// A summary, compliance, access-review or reconciliation report as HTML, XLSX or JSON (docs/reports.md).
    Report(report::ReportArgs),
    /// Rebuild the query index from the ledger.
    Reindex,
    /// Print the latest signed checkpoint.
    Checkpoint,
    /// Write entry INDEX's exact bytes to stdout.
    Entry { index: u64 },
    /// Print a C2SP tlog-proof receipt for entry INDEX.
    Prove {
        index: u64,
        /// Tree size to prove against (default: the latest checkpoint).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Check the log from its entries up. Exit 0 intact, 1 integrity failure, 2 usage or I/O error.
    Verify {
        /// An older signed checkpoint you kept: the log must still contain it.
        #[arg(long, value_name = "CHECKPOINT_FILE")]
        since: Option<PathBuf>,
        /// Trust this verifier key instead of the log's own log.pub.
        #[arg(long, value_name = "VKEY")]
        key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Check a receipt offline against a verifier key and the entry's bytes. Exit 0 valid, 1 not.
    VerifyReceipt {
        receipt: PathBuf,
        #[arg(long, value_name = "VKEY")]
        key: String,
        #[arg(long, value_name = "FILE")]
        entry: PathBuf,
    },
}

#[derive(Subcommand)]
enum LogsCommand {
    /// Create a log with its own key.
    Create {
        name: String,
        #[arg(long)]
        origin: Option<String>,
    },
    /// List logs with their verifier keys.
    List,
}

/// An integrity failure: exit code 1, as opposed to 2 for everything else.
#[derive(Debug)]
struct IntegrityFailure(String);

impl std::fmt::Display for IntegrityFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IntegrityFailure {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (cli_data, cli_log) = (cli.data.clone(), cli.log.clone());
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sealtrail: {e:#}");
            if is_missing_log(&e) {
                eprintln!("{}", missing_log_hint(&cli_data, &cli_log));
            }
            let integrity = e.downcast_ref::<IntegrityFailure>().is_some()
                || matches!(e.downcast_ref::<LedgerError>(), Some(LedgerError::Corrupt { .. }));
            ExitCode::from(if integrity { 1 } else { 2 })
        }
    }
}

fn is_missing_log(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(c.downcast_ref::<LedgerError>(), Some(LedgerError::NoSuchLog(..)))
            || matches!(
                c.downcast_ref::<TrailError>(),
                Some(TrailError::Ledger(LedgerError::NoSuchLog(..)))
            )
    })
}

/// What to do about a log that is not there: create it, or point `--data`
/// (or `--log`) at the one that is.
fn missing_log_hint(data: &Path, log: &str) -> String {
    let me = output::self_command();
    let create = if log == server::DEFAULT_LOG {
        format!("create it with `{me} init`, or start `{me} serve`, which creates it")
    } else {
        format!("create it with `{me} logs create {log}`")
    };
    if !data.exists() {
        return format!(
            "hint: there is no data directory at {}: pass --data DIR (or set SEALTRAIL_DATA) if your data is \
             elsewhere, or {create}",
            data.display()
        );
    }
    if !data.join("logs").is_dir() {
        return format!(
            "hint: {} is not a Sealtrail data directory (it has no logs/ folder): is --data right? Or {create}",
            data.display()
        );
    }
    let names = DataDir::new(data).log_names().unwrap_or_default();
    if names.is_empty() {
        format!("hint: {} holds no logs yet: {create}", data.display())
    } else {
        format!(
            "hint: {} holds the logs {}: choose one with --log NAME, or {create}",
            data.display(),
            names.join(", ")
        )
    }
}

fn open(cli: &Cli) -> anyhow::Result<Log> {
    let dir = DataDir::new(&cli.data);
    Ok(dir.open_log(&cli.log, LogOptions::default())?)
}

/// The log for the commands that only read it: no lock, so they work
/// beside a running server.
fn open_read_only(cli: &Cli) -> anyhow::Result<Log> {
    Ok(DataDir::new(&cli.data).open_log_read_only(&cli.log)?)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let dir = DataDir::new(&cli.data);
    let mut out = std::io::stdout().lock();
    match &cli.command {
        Command::Serve(args) => server::serve(&cli.data, &cli.log, args)?,
        Command::Keys { command } => server::keys(&cli.data, command, &mut out)?,
        Command::Pii { command } => pii::pii(&cli.data, &cli.log, command, &mut out)?,
        Command::Users { command } => users::users(&cli.data, command, &mut out)?,
        Command::Alerts { command } => alerts::alerts(&cli.data, command, &mut out)?,
        Command::Backup { command } => backup::backup(&cli.data, command, &mut out)?,
        Command::Restore { src } => backup::restore(src, &cli.data)?,
        Command::Jobs { command } => jobs::jobs(&cli.data, command, &mut out)?,
        Command::Data { command } => return data::data(&cli.data, &cli.log, command, &mut out),
        Command::Pg { command } => return pg::pg(&cli.data, &cli.log, command, &mut out),
        Command::Retention { command } => retention::retention(&cli.data, &cli.log, command, &mut out)?,
        Command::Holds { command } => retention::holds(&cli.data, &cli.log, command, &mut out)?,
        Command::Init { origin } => {
            let v = dir.create_log(&cli.log, origin.as_deref())?;
            eprintln!("created log {:?} in {}", cli.log, dir.log_dir(&cli.log).display());
            writeln!(out, "{v}")?;
        }
        Command::Logs {
            command: LogsCommand::Create { name, origin },
        } => {
            let v = dir.create_log(name, origin.as_deref())?;
            writeln!(out, "{v}")?;
        }
        Command::Logs {
            command: LogsCommand::List,
        } => {
            let logs = dir.list_logs()?;
            if logs.is_empty() {
                let me = output::self_command();
                eprintln!(
                    "no logs in {} (create one with `{me} init`, or start `{me} serve`)",
                    cli.data.display()
                );
            }
            for info in logs {
                writeln!(out, "{}\t{}\t{}", info.name, info.verifier.name(), info.verifier)?;
            }
        }
        Command::Key => writeln!(out, "{}", dir.verifier(&cli.log)?)?,
        Command::Append {
            raw: false,
            strict,
            config,
            file,
        } => {
            let (input, bar) = open_input(file.as_ref())?;
            let all_good = events::append(&cli.data, &cli.log, input, *strict, config.as_deref(), &mut out);
            bar.finish_and_clear();
            return Ok(ExitCode::from(if all_good? { 0 } else { 2 }));
        }
        Command::Query(args) => events::query(&cli.data, &cli.log, args)?,
        Command::History { entity, list } => events::history(&cli.data, &cli.log, entity, list)?,
        Command::Errors(args) => events::errors(&cli.data, &cli.log, args)?,
        Command::Stats(args) => events::stats(&cli.data, &cli.log, args)?,
        Command::Performance(args) => events::performance(&cli.data, &cli.log, args)?,
        Command::Export(args) => events::export(&cli.data, &cli.log, args)?,
        Command::Report(args) => report::report(&cli.data, &cli.log, args)?,
        Command::Reindex => events::reindex(&cli.data, &cli.log, &mut out)?,
        Command::Append { raw: true, file, .. } => {
            let log = open(&cli)?;
            let (input, bar) = open_input(file.as_ref())?;
            let appended = append_lines(&log, input);
            bar.finish_and_clear();
            let (first, count, size) = appended?;
            if count == 0 {
                writeln!(out, "appended nothing; tree size {size}")?;
            } else {
                writeln!(
                    out,
                    "appended entries {first}..{} ({count}); tree size {size}",
                    first + count - 1
                )?;
            }
        }
        Command::Checkpoint => {
            let log = open_read_only(&cli)?;
            out.write_all(&log.checkpoint().1)?;
        }
        Command::Entry { index } => {
            let log = open_read_only(&cli)?;
            out.write_all(&log.entry(*index)?)?;
        }
        Command::Prove { index, size } => {
            let log = open_read_only(&cli)?;
            let size = size.unwrap_or_else(|| log.size());
            if *index >= size {
                bail!("index {index} is not in a tree of size {size}");
            }
            let (_, note) = log.checkpoint_at(size)?;
            let proof = log.inclusion_proof(*index, size)?;
            let receipt = Receipt {
                extra: None,
                index: *index,
                proof,
                checkpoint: note.to_vec(),
            };
            out.write_all(&receipt.to_bytes())?;
        }
        Command::Verify { since, key, json } => {
            let key = key.as_deref().map(Verifier::parse).transpose().context("--key")?;
            let since = since
                .as_ref()
                .map(|p| std::fs::read(p).with_context(|| format!("read {}", p.display())))
                .transpose()?;
            let log_dir = dir.log_dir(&cli.log);
            if !log_dir.exists() {
                return Err(LedgerError::NoSuchLog(cli.log.clone(), cli.data.clone()).into());
            }
            let bar = progress::bar("verifying", 0, progress::Unit::Bytes);
            let report = verify_log_with_progress(
                &sealtrail_ledger::storage::OsStorage,
                &log_dir,
                key.as_ref(),
                since.as_deref(),
                &mut progress::follow(&bar),
            );
            bar.finish_and_clear();
            let report = report?;
            if *json {
                writeln!(out, "{}", report_json(&cli.log, &report))?;
            } else {
                print_report(&mut out, &cli.log, &report)?;
            }
            return Ok(ExitCode::from(if report.intact() { 0 } else { 1 }));
        }
        Command::VerifyReceipt { receipt, key, entry } => {
            let key = Verifier::parse(key).context("--key")?;
            let text = std::fs::read(receipt).with_context(|| format!("read {}", receipt.display()))?;
            let entry = std::fs::read(entry).with_context(|| format!("read {}", entry.display()))?;
            let parsed = Receipt::parse(&text).map_err(|e| IntegrityFailure(format!("{}: {e}", receipt.display())))?;
            let cp = parsed
                .verify(&leaf_hash(&entry), &key)
                .map_err(|e| IntegrityFailure(format!("receipt does not verify: {e}")))?;
            writeln!(
                out,
                "valid: entry {} is in {} at tree size {}",
                parsed.index, cp.origin, cp.size
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The lines `append` reads: FILE, or stdin without one; a file's reading
/// moves a progress bar of its bytes (hidden unless stderr is a terminal).
fn open_input(file: Option<&PathBuf>) -> anyhow::Result<(Box<dyn BufRead>, indicatif::ProgressBar)> {
    Ok(match file {
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?;
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let bar = progress::bar("appending", len, progress::Unit::Bytes);
            (Box::new(std::io::BufReader::new(bar.wrap_read(f))), bar)
        }
        None => (Box::new(std::io::stdin().lock()), indicatif::ProgressBar::hidden()),
    })
}

/// Append each line (without its newline) as one entry, in batches, so a
/// large file streams in bounded memory. Returns (first, count, tree size).
fn append_lines(log: &Log, mut input: Box<dyn BufRead>) -> anyhow::Result<(u64, u64, u64)> {
    const BATCH: usize = 4096;
    let (mut first, mut count, mut size) = (None, 0u64, log.size());
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    let mut line_no = 0u64;
    loop {
        let mut line = Vec::new();
        let n = input.read_until(b'\n', &mut line).context("read input")?;
        if n > 0 {
            line_no += 1;
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if line.len() > sealtrail_ledger::format::MAX_ENTRY {
                bail!(
                    "line {line_no} is {} bytes; an entry is at most 65535 bytes (nothing from line {} on was appended)",
                    line.len(),
                    line_no - batch.len() as u64
                );
            }
            batch.push(line);
        }
        if (n == 0 && !batch.is_empty()) || batch.len() == BATCH {
            let a = log.append(&batch)?;
            first.get_or_insert(a.first);
            count += a.count;
            size = a.tree_size;
            batch.clear();
        }
        if n == 0 {
            break;
        }
    }
    Ok((first.unwrap_or(size), count, size))
}

fn print_report(out: &mut impl Write, log: &str, r: &Report) -> anyhow::Result<()> {
    let signed = r
        .checkpoint
        .as_ref()
        .map(|c| c.size.to_string())
        .unwrap_or_else(|| "?".into());
    if r.intact() {
        writeln!(
            out,
            "log {log}: intact: {} entries, signed checkpoint size {signed}, key {}",
            r.entries, r.verifier
        )?;
    } else {
        writeln!(
            out,
            "log {log}: INTEGRITY FAILURE ({} findings)",
            r.findings.len() + r.more_findings
        )?;
        for f in &r.findings {
            writeln!(out, "  {}", f)?;
        }
        if r.more_findings > 0 {
            writeln!(out, "  … and {} more", r.more_findings)?;
        }
    }
    for n in &r.notes {
        writeln!(out, "  note: {n}")?;
    }
    Ok(())
}

fn report_json(log: &str, r: &Report) -> serde_json::Value {
    let finding = |f: &sealtrail_ledger::verify::Finding| serde_json::json!({ "file": f.file, "index": f.index, "offset": f.offset, "message": f.message });
    serde_json::json!({
        "log": log,
        "intact": r.intact(),
        "entries": r.entries,
        "pruned_below": r.pruned_below,
        "checkpoint": r.checkpoint.as_ref().map(|c| serde_json::json!({
            "origin": c.origin, "size": c.size, "root": base64_root(&c.root),
        })),
        "verifier": r.verifier,
        "findings": r.findings.iter().map(finding).collect::<Vec<_>>(),
        "more_findings": r.more_findings,
        "notes": r.notes.iter().map(finding).collect::<Vec<_>>(),
    })
}

fn base64_root(root: &[u8; 32]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(root)
}
