//! `sealtrail report`: compute a report with `sealtrail-report` and write
//! it as HTML, XLSX or JSON. Argument parsing and the file only.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use sealtrail_event::Timestamp;
use sealtrail_report::{Format, ReportKind, Request};
use sealtrail_trail::when::parse_time;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// summary, compliance, access-review or reconciliation (docs/reports.md).
    #[arg(value_name = "TYPE", value_parser = parse_kind)]
    kind: ReportKind,
    /// The comparison a reconciliation report covers: the name its data runs were recorded under (required for reconciliation, refused by the other types).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Events that occurred at or after: 30m, 24h, 7d, 1w (before now), an RFC 3339 time, or a date.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Events that occurred before (same forms as --since); default now.
    #[arg(long, value_name = "WHEN")]
    until: Option<String>,
    /// html (self-contained, prints on A4), xlsx (with charts) or json.
    #[arg(long, value_parser = parse_format, value_name = "html|xlsx|json")]
    format: Format,
    /// File to write (replaced whole, or left as it was on failure); `-` for standard output.
    #[arg(long, value_name = "FILE")]
    output: PathBuf,
}

fn parse_kind(s: &str) -> Result<ReportKind, String> {
    s.parse().map_err(|e: sealtrail_report::ReportError| e.to_string())
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse().map_err(|e: sealtrail_report::ReportError| e.to_string())
}

pub fn report(data: &Path, log: &str, args: &ReportArgs) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let time = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<Timestamp>> {
        v.as_deref()
            .map(|s| parse_time(s, now).with_context(|| format!("--{flag}")))
            .transpose()
    };
    let request = Request {
        kind: args.kind,
        log: log.to_string(),
        since: time("since", &args.since)?,
        until: time("until", &args.until)?,
        now,
        name: args.name.clone(),
    };
    let report = sealtrail_report::generate(data, &request)?;
    let bytes = sealtrail_report::render(&report, args.format)?;
    if args.output.as_os_str() == "-" {
        std::io::stdout().lock().write_all(&bytes)?;
    } else {
        write_replacing(&args.output, &bytes)?;
        eprintln!(
            "wrote the {} report of log {log} ({} entries counted) to {}",
            report.report,
            report.checkpoint.size,
            args.output.display()
        );
    }
    if report.empty {
        if args.kind == ReportKind::Reconciliation {
            eprintln!("note: no run of the comparison started in the period; the report says so");
        } else {
            eprintln!("note: no events in the period; the report says so");
        }
    }
    Ok(())
}

/// Write `bytes` to a temporary file beside `path`, then rename it into
/// place, so a failure leaves no half-written report.
fn write_replacing(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("--output {}", path.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("--output {}", path.display()))?;
    Ok(())
}
