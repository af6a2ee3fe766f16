//! The audit commands: `append` (events), `query`, `history`, `errors`,
//! `stats`, `performance`, `export` and `reindex`. Argument parsing and
//! printing only; the work is in `sealtrail-trail`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use sealtrail_event::{Outcome, Severity, Timestamp};
use sealtrail_export::{EventWriter, Format, Row};
use sealtrail_ledger::DataDir;
use sealtrail_merkle::{leaf_hash, open_checkpoint, verify_inclusion};
use sealtrail_trail::target::parse_target;
use sealtrail_trail::when::parse_time;
use sealtrail_trail::{Bucket, Filter, Found, IndexState, Order, Page, TimeRange, Trail, TrailOptions, TrailReader};

use crate::IntegrityFailure;

/// The filters every search command takes.
#[derive(Args, Debug, Default, Clone)]
#[command(next_help_heading = "Filters (all must match)")]
pub struct FilterArgs {
    /// Action, exact or a glob (`lead.*`, `*.deleted`, `user.?et`).
    #[arg(long, value_name = "GLOB")]
    action: Option<String>,
    /// Actor id.
    #[arg(long, value_name = "ID")]
    actor: Option<String>,
    /// A target, `TYPE:ID`, or `TYPE` for any target of that type.
    #[arg(long, value_name = "TYPE:ID")]
    target: Option<String>,
    /// Tenant (organisation or customer) the event belongs to.
    #[arg(long)]
    tenant: Option<String>,
    /// Workflow that sent the event (source.workflow).
    #[arg(long)]
    workflow: Option<String>,
    /// Service that sent the event (source.service).
    #[arg(long)]
    service: Option<String>,
    /// Outcome of the action.
    #[arg(long, value_parser = parse_outcome, value_name = "success|failure|unknown")]
    outcome: Option<Outcome>,
    /// This severity or graver (debug, info, notice, warning, error, critical, alert, emergency).
    #[arg(long, value_parser = parse_severity, value_name = "LEVEL")]
    severity: Option<Severity>,
    /// Client IP address (context.ip), IPv4 or IPv6.
    #[arg(long)]
    ip: Option<std::net::IpAddr>,
    /// Session id (context.session_id).
    #[arg(long, value_name = "ID")]
    session: Option<String>,
    /// Occurred at or after: 30m, 24h, 7d, 1w (before now), an RFC 3339 time, or a date.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Occurred before (same forms as --since).
    #[arg(long, value_name = "WHEN")]
    until: Option<String>,
    /// Received by the server at or after (same forms as --since).
    #[arg(long, value_name = "WHEN")]
    received_since: Option<String>,
    /// Received by the server before (same forms as --since).
    #[arg(long, value_name = "WHEN")]
    received_until: Option<String>,
    /// Free text: words and identifiers that must all occur in message, error or details, and "quoted phrases" (docs/query-syntax.md).
    #[arg(long)]
    text: Option<String>,
}

fn parse_outcome(s: &str) -> Result<Outcome, String> {
    Outcome::from_name(s).ok_or_else(|| format!("{s:?} is not an outcome: use success, failure or unknown"))
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::from_name(s).ok_or_else(|| {
        format!("{s:?} is not a severity: use debug, info, notice, warning, error, critical, alert or emergency")
    })
}

impl FilterArgs {
    pub fn filter(&self, now: Timestamp) -> anyhow::Result<Filter> {
        let time = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<Timestamp>> {
            v.as_deref()
                .map(|s| parse_time(s, now).with_context(|| format!("--{flag}")))
                .transpose()
        };
        let (target_type, target_id) = match self.target.as_deref() {
            None => (None, None),
            Some(t) => match parse_target(t) {
                Ok((kind, id)) => (Some(kind), id),
                Err(e) => bail!("--target {e}"),
            },
        };
        Ok(Filter {
            action: self.action.clone(),
            actor: self.actor.clone(),
            target_type,
            target_id,
            tenant: self.tenant.clone(),
            workflow: self.workflow.clone(),
            service: self.service.clone(),
            outcome: self.outcome,
            min_severity: self.severity,
            ip: self.ip,
            session: self.session.clone(),
            occurred: TimeRange {
                since: time("since", &self.since)?,
                until: time("until", &self.until)?,
            },
            received: TimeRange {
                since: time("received-since", &self.received_since)?,
                until: time("received-until", &self.received_until)?,
            },
            text: self.text.clone(),
            text_alternatives: Vec::new(),
            failures: false,
        })
    }
}

/// Output formats of the listing commands.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
    Jsonl,
    Csv,
}

impl From<ListFormat> for Format {
    fn from(f: ListFormat) -> Format {
        match f {
            ListFormat::Table => Format::Table,
            ListFormat::Json => Format::Json,
            ListFormat::Jsonl => Format::Jsonl,
            ListFormat::Csv => Format::Csv,
        }
    }
}

/// How the summary commands print.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SummaryFormat {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Most events to print.
    #[arg(help_heading = "Output", long, default_value_t = 100)]
    limit: usize,
    /// Continue a listing: only events before this ledger index (after it with --oldest-first).
    #[arg(help_heading = "Output", long, value_name = "INDEX")]
    after: Option<u64>,
    /// Oldest first (default: newest first).
    #[arg(help_heading = "Output", long)]
    oldest_first: bool,
    /// How to print: a table for people; json, jsonl or csv for programs.
    #[arg(help_heading = "Output", long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
    /// Check each event's inclusion proof against the latest signed checkpoint (exit 1 if any fails).
    #[arg(help_heading = "Output", long)]
    verify: bool,
}

/// The trail for `append`: PII protection as the server applies it, with
/// the configuration file `config` if given.
pub fn open_trail(data: &Path, log: &str, config: Option<&Path>) -> anyhow::Result<Trail> {
    let options = TrailOptions {
        pii_source: crate::pii::for_writing(data, log, config)?,
        ..TrailOptions::default()
    };
    Ok(Trail::open(&DataDir::new(data), log, options)?)
}

/// The trail for the read commands: read-only, so they work beside a
/// running server (no lock, nothing written).
pub fn open_reader(data: &Path, log: &str) -> anyhow::Result<TrailReader> {
    let pii = crate::pii::for_reading(data, log)?;
    Ok(TrailReader::open(&DataDir::new(data), log)?.with_pii(pii))
}

/// Say on stderr when the newest entries are not in the index yet: a read
/// does not index (it would write), so they were not searched or counted.
fn note_unindexed(reader: &TrailReader) {
    let n = reader.unindexed();
    if n > 0 {
        eprintln!(
            "note: the newest {n} entries (from index {}) are not indexed yet and were left out; \
             a running server indexes them within 0.5 s, otherwise the next command that writes \
             to the log does (`sealtrail append`, `sealtrail reindex`)",
            reader.indexed()
        );
    }
}

/// An index that did not open is rebuilt from the ledger by this process
/// in the background, and until it is back events with an idempotency key
/// are refused (no index holds the keys already stored). A server would
/// answer "retry later"; a command would exit and lose the rebuild, so it
/// waits for it instead, and stops only when the rebuild itself fails.
fn wait_for_index(trail: &Trail, log: &str) -> anyhow::Result<()> {
    let mut noted = false;
    loop {
        let status = trail.index_status();
        match status.state {
            IndexState::Ok => return Ok(()),
            IndexState::Rebuilding => {
                if !noted {
                    eprintln!(
                        "note: the query index of log {log} did not open; rebuilding it from the ledger's {} \
                         entries before appending",
                        trail.log().size()
                    );
                    noted = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            IndexState::Failed => bail!(
                "the query index of log {log} did not open and could not be rebuilt from the ledger: {}; \
                 nothing was appended. Fix the cause, then run `sealtrail --log {log} reindex` and append again",
                status.last_error.as_deref().unwrap_or("no cause recorded")
            ),
        }
    }
}

/// `sealtrail append` (events): JSON Lines from `input`.
pub fn append(
    data: &Path,
    log: &str,
    input: Box<dyn BufRead>,
    strict: bool,
    config: Option<&Path>,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let trail = open_trail(data, log, config)?;
    wait_for_index(&trail, log)?;
    let report = trail.ingest_jsonl(input, strict)?;
    for e in &report.rejected {
        eprintln!("{e}");
    }
    let range = match (report.first, report.last) {
        (Some(a), Some(b)) => format!(" (entries {a}..{b})"),
        _ => String::new(),
    };
    if strict && !report.rejected.is_empty() {
        writeln!(
            out,
            "appended nothing: {} of {} lines rejected (--strict); tree size {}",
            report.rejected.len(),
            report.lines,
            report.tree_size
        )?;
    } else {
        writeln!(
            out,
            "appended {} events{range}, {} duplicates, {} rejected; tree size {}",
            report.appended,
            report.duplicates,
            report.rejected.len(),
            report.tree_size
        )?;
    }
    Ok(report.rejected.is_empty())
}

/// One page of events for `query`, `history` and `errors`, checked
/// against the signed checkpoint when `--verify` asks.
fn page(
    trail: &TrailReader,
    mut filter: Filter,
    args: &ListArgs,
    failures: bool,
    oldest_first: bool,
) -> anyhow::Result<Vec<Found>> {
    filter.failures = failures;
    let page = Page {
        order: if oldest_first || args.oldest_first {
            Order::OldestFirst
        } else {
            Order::NewestFirst
        },
        limit: args.limit,
        after: args.after,
    };
    let found = trail.query(&filter, &page)?;
    if args.verify {
        verify_found(trail, &found)?;
    }
    Ok(found)
}

/// `query`, `history` and `errors`: a page of events in `--format`.
pub fn list(
    trail: &TrailReader,
    filter: Filter,
    args: &ListArgs,
    failures: bool,
    oldest_first: bool,
) -> anyhow::Result<()> {
    let found = page(trail, filter, args, failures, oldest_first)?;
    if found.is_empty() && args.format == ListFormat::Table {
        // Machine formats print their empty form (`[]`, a CSV header).
        eprintln!("no events match");
        note_unindexed(trail);
        return Ok(());
    }
    let mut w = EventWriter::new(args.format.into(), Box::new(std::io::stdout()))?;
    for f in &found {
        w.write(&Row {
            index: f.index,
            event: &f.event,
            entry: &f.entry,
        })?;
    }
    w.finish()?;
    note_unindexed(trail);
    if found.len() == args.limit {
        if let Some(last) = found.last() {
            eprintln!("(first {} shown; more with --after {})", args.limit, last.index);
        }
    }
    Ok(())
}

pub fn query(data: &Path, log: &str, args: &ListArgs) -> anyhow::Result<()> {
    let trail = open_reader(data, log)?;
    let filter = args.filter.filter(Timestamp::now())?;
    list(&trail, filter, args, false, false)
}

pub fn history(data: &Path, log: &str, entity: &str, args: &ListArgs) -> anyhow::Result<()> {
    let Some((ty, id)) = entity.split_once(':').filter(|(t, i)| !t.is_empty() && !i.is_empty()) else {
        bail!("{entity:?}: name the entity as TYPE:ID, e.g. lead:LEAD-001");
    };
    if args.filter.target.is_some() {
        bail!("history takes its entity as TYPE:ID, not --target");
    }
    let trail = open_reader(data, log)?;
    let mut filter = args.filter.filter(Timestamp::now())?;
    filter.target_type = Some(ty.to_owned());
    filter.target_id = Some(id.to_owned());
    list(&trail, filter, args, false, !args.oldest_first)
}

pub fn errors(data: &Path, log: &str, args: &ListArgs) -> anyhow::Result<()> {
    let trail = open_reader(data, log)?;
    let filter = args.filter.filter(Timestamp::now())?;
    if args.format != ListFormat::Table {
        return list(&trail, filter, args, true, false);
    }
    let found = page(&trail, filter, args, true, false)?;
    note_unindexed(&trail);
    let mut out = std::io::stdout().lock();
    if found.is_empty() {
        eprintln!("no failures or errors match");
    }
    for f in &found {
        let e = &f.event;
        writeln!(
            out,
            "#{} {} {} actor={} outcome={} severity={}",
            f.index,
            e.occurred_at,
            e.action,
            e.actor.as_ref().map_or("-", |a| a.id.as_str()),
            e.outcome.map_or("-", |o| o.as_str()),
            e.severity.as_str(),
        )?;
        if let Some(m) = &e.message {
            writeln!(out, "    {m}")?;
        }
        if let Some(err) = &e.error {
            writeln!(
                out,
                "    error {}: {}",
                err.kind.as_deref().unwrap_or("-"),
                err.message.as_deref().unwrap_or("-")
            )?;
            if let Some(stack) = &err.stack {
                for line in stack.lines().take(5) {
                    writeln!(out, "      {line}")?;
                }
            }
        }
    }
    Ok(())
}

/// Check that each event is in the latest checkpoint, signed by the log's key.
fn verify_found(trail: &TrailReader, found: &[Found]) -> anyhow::Result<()> {
    let log = trail.log();
    let verifier = log.verifier();
    // A read-only log shows the checkpoint of its open, which stays put
    // while a server appends: check its signature once and every proof
    // against it.
    let (_, note) = log.checkpoint();
    let (checkpoint, _) =
        open_checkpoint(&note, verifier).map_err(|e| IntegrityFailure(format!("latest checkpoint: {e}")))?;
    for f in found {
        let proof = log.inclusion_proof(f.index, checkpoint.size)?;
        verify_inclusion(f.index, checkpoint.size, &leaf_hash(&f.entry), &proof, &checkpoint.root)
            .map_err(|e| IntegrityFailure(format!("entry {}: inclusion proof fails: {e}", f.index)))?;
    }
    if !found.is_empty() {
        eprintln!(
            "verified: {} events each included in the checkpoint of size {} signed by {}",
            found.len(),
            checkpoint.size,
            verifier.name()
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Time buckets of occurred_at.
    #[arg(help_heading = "Output", long, value_enum, default_value_t = BucketArg::Day)]
    by: BucketArg,
    /// Rows per breakdown.
    #[arg(help_heading = "Output", long, default_value_t = 10)]
    top: usize,
    #[arg(help_heading = "Output", long, value_enum, default_value_t = SummaryFormat::Table)]
    format: SummaryFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum BucketArg {
    Hour,
    Day,
}

pub fn stats(data: &Path, log: &str, args: &StatsArgs) -> anyhow::Result<()> {
    let trail = open_reader(data, log)?;
    let filter = args.filter.filter(Timestamp::now())?;
    let bucket = match args.by {
        BucketArg::Hour => Bucket::Hour,
        BucketArg::Day => Bucket::Day,
    };
    let s = trail.stats(&filter, bucket)?;
    note_unindexed(&trail);
    let mut out = std::io::stdout().lock();
    let pairs = |v: &[(String, u64)]| -> serde_json::Value {
        v.iter()
            .map(|(k, n)| serde_json::json!({"value": k, "count": n}))
            .collect()
    };
    if args.format == SummaryFormat::Json {
        let by_time: Vec<_> = s
            .by_time
            .iter()
            .map(|(t, n)| serde_json::json!({"start": t.to_string(), "count": n}))
            .collect();
        let v = serde_json::json!({
            "total": s.total,
            "by_action": pairs(&s.by_action),
            "by_actor": pairs(&s.by_actor),
            "by_outcome": pairs(&s.by_outcome),
            "by_time": by_time,
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(out, "total {}", s.total)?;
    for (title, rows) in [
        ("action", &s.by_action),
        ("actor", &s.by_actor),
        ("outcome", &s.by_outcome),
    ] {
        writeln!(out, "\nby {title}")?;
        for (value, n) in rows.iter().take(args.top) {
            writeln!(out, "  {n:>10}  {value}")?;
        }
        if rows.len() > args.top {
            writeln!(out, "  … {} more", rows.len() - args.top)?;
        }
    }
    writeln!(
        out,
        "\nby {}",
        if matches!(args.by, BucketArg::Hour) {
            "hour"
        } else {
            "day"
        }
    )?;
    for (t, n) in &s.by_time {
        writeln!(out, "  {n:>10}  {t}")?;
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct PerformanceArgs {
    #[command(flatten)]
    filter: FilterArgs,
    #[arg(help_heading = "Output", long, value_enum, default_value_t = SummaryFormat::Table)]
    format: SummaryFormat,
}

pub fn performance(data: &Path, log: &str, args: &PerformanceArgs) -> anyhow::Result<()> {
    let trail = open_reader(data, log)?;
    let filter = args.filter.filter(Timestamp::now())?;
    let rows = trail.performance(&filter)?;
    note_unindexed(&trail);
    let mut out = std::io::stdout().lock();
    if args.format == SummaryFormat::Json {
        let v: Vec<_> = rows
            .iter()
            .map(|p| {
                serde_json::json!({
                    "action": p.action, "count": p.count, "min": p.min, "max": p.max,
                    "mean": p.mean, "p50": p.p50, "p95": p.p95, "p99": p.p99, "exact": p.exact,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(v))?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<32} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "action", "count", "min ms", "max ms", "mean ms", "p50 ms", "p95 ms", "p99 ms"
    )?;
    for p in &rows {
        writeln!(
            out,
            "{:<32} {:>9} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
            p.action, p.count, p.min, p.max, p.mean, p.p50, p.p95, p.p99
        )?;
    }
    Ok(())
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ExportFormat {
    Csv,
    Json,
    Jsonl,
    Xlsx,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    filter: FilterArgs,
    #[arg(help_heading = "Output", long, value_enum)]
    format: ExportFormat,
    /// File to write (`-` for stdout, except xlsx).
    #[arg(help_heading = "Output", long, value_name = "FILE")]
    output: PathBuf,
}

pub fn export(data: &Path, log: &str, args: &ExportArgs) -> anyhow::Result<()> {
    let trail = open_reader(data, log)?;
    let filter = args.filter.filter(Timestamp::now())?;
    let format = match args.format {
        ExportFormat::Csv => Format::Csv,
        ExportFormat::Json => Format::Json,
        ExportFormat::Jsonl => Format::Jsonl,
        ExportFormat::Xlsx => Format::Xlsx,
    };
    let mut w = if args.output.as_os_str() == "-" {
        EventWriter::new(format, Box::new(std::io::BufWriter::new(std::io::stdout())))?
    } else {
        EventWriter::create(format, &args.output).with_context(|| format!("create {}", args.output.display()))?
    };
    let bar = if args.output.as_os_str() == "-" {
        indicatif::ProgressBar::hidden()
    } else {
        crate::progress::bar("exporting", trail.count(&filter)?, crate::progress::Unit::Events)
    };
    let mut failure = None;
    let exported = trail.for_each(&filter, |f| {
        let row = Row {
            index: f.index,
            event: &f.event,
            entry: &f.entry,
        };
        if let Err(e) = w.write(&row) {
            failure = Some(e);
            return Ok(false);
        }
        bar.inc(1);
        Ok(true)
    });
    bar.finish_and_clear();
    exported?;
    if let Some(e) = failure {
        return Err(e).context("write export");
    }
    let rows = w.finish()?;
    eprintln!("exported {rows} events");
    note_unindexed(&trail);
    Ok(())
}

pub fn reindex(data: &Path, log: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let bar = crate::progress::bar("reindexing", 0, crate::progress::Unit::Entries);
    let n = Trail::reindex_with_progress(
        &DataDir::new(data),
        log,
        &Default::default(),
        &mut crate::progress::follow(&bar),
    );
    bar.finish_and_clear();
    let n = n?;
    writeln!(
        out,
        "reindexed log {log}: {n} entries in {:.2} s",
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}
