//! `sealtrail data`: compare tables, find their keys, check them against
//! rules, and look back over the runs. Every run is recorded in the
//! metadata database with its system-log event, whatever its outcome.
//! Exit status as `diff(1)`: 0 nothing found, 1 differences (or
//! violations, or no key), 2 an error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use sealtrail_data::diff::{DiffOptions, Layout};
use sealtrail_data::history::{self, RunSummary};
use sealtrail_data::job::{self, JobInput, Ran, Watch};
use sealtrail_data::keys::{KeyOptions, NullEquality};
use sealtrail_data::output::{self, Format, ViolationWriter};
use sealtrail_data::source::OpenOptions;
use sealtrail_data::validate::Rules;
use sealtrail_data::{Change, ChangeSink, DataError};
use sealtrail_ledger::DataDir;
use sealtrail_meta::{now_text, DataRun, DataRunFilter, Meta, RunInput, RunKind, RunOutcome, StoredDataRun};
use sealtrail_trail::{Item, Trail, TrailOptions};

use crate::changes::{cli_actor, record};
use crate::progress;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Compare two tables by key: added, removed and changed rows, duplicate keys, schema changes.
    #[command(after_help = "Examples:
  sealtrail data diff old.csv new.csv --key id
  sealtrail data diff orders.xlsx#2026 'postgresql://app@db:5432/shop?table=public.orders' \\
      --key order_id,line --ignore updated_at --tolerance 0.005 --format xlsx --output review.xlsx
  sealtrail data diff a.csv b.csv --key id --name nightly-orders --record --log reconciliation

Exit status: 0 no differences, 1 differences, 2 error.")]
    Diff(DiffArgs),
    /// Find every minimal unique column combination (candidate key) of one table, or the keys two tables share.
    #[command(after_help = "Examples:
  sealtrail data keys customers.csv
  sealtrail data keys customers.csv --max-columns 3 --near --format json
  sealtrail data keys old.csv new.csv        # keys unique in both, suitable for `data diff`

Exit status: 0 keys found, 1 none, 2 error.")]
    Keys(KeysArgs),
    /// Check a table against validation rules (docs/data.md, \"Validation rules\").
    #[command(after_help = "Examples:
  sealtrail data validate invoices.csv --rules invoices.toml
  sealtrail data validate invoices.csv --rules invoices.toml --format csv --output violations.csv

Exit status: 0 no violations, 1 violations, 2 error.")]
    Validate(ValidateArgs),
    /// The recorded runs: list, show, compare two, or the trend of a named comparison.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
}

/// How inputs are read.
#[derive(Args, Clone)]
pub struct ReadArgs {
    /// Field delimiter of delimited text (detected when absent), e.g. `;` or `\t`.
    #[arg(long, value_parser = parse_byte)]
    delimiter: Option<u8>,
    /// Quote character of delimited text (detected when absent).
    #[arg(long, value_parser = parse_byte)]
    quote: Option<u8>,
    /// The first row of delimited text is data: columns are named 1, 2, …
    #[arg(long)]
    no_header: bool,
    /// Memory budget, e.g. 256MiB or 1GiB: past it a diff spills to temporary files.
    #[arg(long, value_parser = parse_size, default_value = "256MiB")]
    memory: u64,
    /// Name of a recurring run (e.g. nightly-orders), so its runs can be compared and trended.
    #[arg(long)]
    name: Option<String>,
    /// Draw no progress bar.
    #[arg(long)]
    no_progress: bool,
}

impl ReadArgs {
    fn open_options(&self) -> OpenOptions {
        OpenOptions {
            delimiter: self.delimiter,
            quote: self.quote,
            header: !self.no_header,
            ..OpenOptions::default()
        }
    }
}

#[derive(Args)]
pub struct DiffArgs {
    /// The old table: a file (.csv .tsv .jsonl .xlsx[#Sheet]) or postgresql://…?table=… / ?query=…
    left: String,
    /// The new table.
    right: String,
    /// Key columns, comma-separated (named as in RIGHT).
    #[arg(long, value_delimiter = ',', required = true)]
    key: Vec<String>,
    /// Columns left out of the comparison.
    #[arg(long, value_delimiter = ',')]
    ignore: Vec<String>,
    /// Columns renamed between the inputs: OLD=NEW, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_rename)]
    rename: Vec<(String, String)>,
    /// Columns compared without regard to case.
    #[arg(long, value_delimiter = ',')]
    ignore_case: Vec<String>,
    /// Columns compared without regard to surrounding and repeated whitespace.
    #[arg(long, value_delimiter = ',')]
    ignore_whitespace: Vec<String>,
    /// Numbers on both sides are equal when they differ by at most this much.
    #[arg(long)]
    tolerance: Option<f64>,
    /// Output format.
    #[arg(long, default_value = "table", value_parser = parse_format)]
    format: Format,
    /// Write the report to this file (written whole or not at all) instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Also append every row change as an audit event (data.row.added|removed|changed) to the log given by --log.
    #[arg(long)]
    record: bool,
    #[command(flatten)]
    read: ReadArgs,
}

#[derive(Args)]
pub struct KeysArgs {
    /// One table, or two to find the keys they share.
    #[arg(required = true, num_args = 1..=2)]
    inputs: Vec<String>,
    /// Keys of at most this many columns.
    #[arg(long)]
    max_columns: Option<usize>,
    /// Also list near keys: combinations almost unique, with their duplicate rows.
    #[arg(long)]
    near: bool,
    /// How nulls compare: `equal` (null = null) or `distinct` (as SQL's UNIQUE).
    #[arg(long, default_value = "equal", value_parser = parse_nulls)]
    nulls: NullEquality,
    /// Output format: table or json.
    #[arg(long, default_value = "table", value_parser = parse_format)]
    format: Format,
    #[command(flatten)]
    read: ReadArgs,
}

#[derive(Args)]
pub struct ValidateArgs {
    /// The table to check.
    input: String,
    /// The rules (TOML).
    #[arg(long)]
    rules: PathBuf,
    /// Output format: table, json, jsonl or csv.
    #[arg(long, default_value = "table", value_parser = parse_format)]
    format: Format,
    /// Write the report to this file (written whole or not at all) instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
}

#[derive(Subcommand)]
pub enum RunsCommand {
    /// Recorded runs, newest first.
    List {
        /// Only runs of this kind: diff, keys or validate.
        #[arg(long)]
        kind: Option<String>,
        /// Only runs of this name.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One run as recorded (JSON).
    Show { id: i64 },
    /// What changed from run ID1 to run ID2: counts, quality score, keys found and lost.
    Compare {
        id1: i64,
        id2: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The runs of a named comparison over time, anomalies (|z| ≥ 3) and regressions flagged.
    Trend {
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_byte(s: &str) -> Result<u8, String> {
    match s {
        "\\t" | "tab" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() => Ok(s.as_bytes()[0]),
        _ => Err(format!("{s:?} is not one ASCII character (use \\t for a tab)")),
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 256MiB"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("{s:?} is too large"))
}

fn parse_rename(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((old, new)) if !old.is_empty() && !new.is_empty() => Ok((old.to_string(), new.to_string())),
        _ => Err(format!("{s:?} is not OLD=NEW")),
    }
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse().map_err(|e: sealtrail_export::UnknownFormat| e.to_string())
}

fn parse_nulls(s: &str) -> Result<NullEquality, String> {
    match s {
        "equal" => Ok(NullEquality::Equal),
        "distinct" => Ok(NullEquality::Distinct),
        _ => Err(format!("{s:?}: use equal or distinct")),
    }
}

pub fn data(data: &Path, log: &str, command: &DataCommand, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    match command {
        DataCommand::Diff(args) => diff(data, log, args),
        DataCommand::Keys(args) => keys(data, args, out),
        DataCommand::Validate(args) => validate(data, args),
        DataCommand::Runs { command } => runs(data, command, out).map(|()| ExitCode::SUCCESS),
    }
}

/// Where a report goes: standard output, or a temporary file beside
/// `--output` renamed into place once complete, so that a failed run leaves
/// no half-written report.
struct Destination {
    file: Option<(tempfile::NamedTempFile, PathBuf)>,
}

impl Destination {
    fn new(output: Option<&Path>) -> anyhow::Result<(Destination, Box<dyn Write + Send>)> {
        match output {
            None => Ok((Destination { file: None }, Box::new(std::io::stdout()))),
            Some(path) => {
                let dir = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                let temp = tempfile::NamedTempFile::new_in(dir)
                    .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
                let handle = temp
                    .reopen()
                    .with_context(|| format!("opening {}", temp.path().display()))?;
                Ok((
                    Destination {
                        file: Some((temp, path.to_path_buf())),
                    },
                    Box::new(handle),
                ))
            }
        }
    }

    fn commit(self) -> anyhow::Result<()> {
        if let Some((temp, path)) = self.file {
            temp.as_file().sync_all().context("syncing the report")?;
            temp.persist(&path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}

/// Draws one bar over the bytes of every input until `work` returns.
fn watched<T>(no_progress: bool, inputs: usize, work: impl FnOnce(&Watch) -> T) -> T {
    let watch = Watch::new();
    if no_progress {
        return work(&watch);
    }
    let bar = progress::bar("reading", 0, progress::Unit::Bytes);
    let done = std::sync::atomic::AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let (read, total) = (0..inputs).fold((0, 0), |(r, t), i| {
                    let p = watch.input(i);
                    (r + p.read_bytes, t + p.total_bytes)
                });
                bar.set_length(total);
                bar.set_position(read);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let result = work(&watch);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    });
    bar.finish_and_clear();
    result
}

/// What is recorded of a run whatever its end.
struct Record<'a> {
    kind: RunKind,
    name: Option<String>,
    addresses: Vec<String>,
    parameters: Value,
    started_at: String,
    started: std::time::Instant,
    data: &'a Path,
}

impl Record<'_> {
    /// Stores the run with its system-log event; returns the run's id.
    fn store<S>(self, result: Result<(&Ran<S>, Value), &anyhow::Error>) -> anyhow::Result<i64> {
        let finished_at = now_text();
        let (inputs, summary, outcome, error, quality_score) = match result {
            Ok((ran, summary)) => (
                ran.inputs.iter().map(input).collect(),
                summary,
                if ran.differences {
                    RunOutcome::Differences
                } else {
                    RunOutcome::Success
                },
                None,
                ran.quality_score,
            ),
            Err(e) => (
                self.addresses
                    .iter()
                    .map(|a| RunInput {
                        address: a.clone(),
                        sha256: None,
                        bytes: None,
                    })
                    .collect(),
                json!({}),
                RunOutcome::Failure,
                Some(format!("{e:#}")),
                None,
            ),
        };
        let run = DataRun {
            kind: self.kind,
            name: self.name,
            inputs,
            parameters: self.parameters,
            summary,
            started_at: self.started_at,
            finished_at,
            duration_ms: self.started.elapsed().as_millis() as u64,
            outcome,
            error,
            quality_score,
            actor: cli_actor(),
        };
        let meta = Meta::open(self.data)?;
        let id = meta.record_data_run(&run)?;
        record(self.data, &meta)?;
        Ok(id)
    }
}

fn input(i: &JobInput) -> RunInput {
    RunInput {
        address: i.address.clone(),
        sha256: i.sha256.clone(),
        bytes: i.bytes,
    }
}

fn begin<'a>(data: &'a Path, kind: RunKind, read: &ReadArgs, addresses: Vec<String>, parameters: Value) -> Record<'a> {
    Record {
        kind,
        name: read.name.clone(),
        addresses,
        parameters,
        started_at: now_text(),
        started: std::time::Instant::now(),
        data,
    }
}

/// Tells the user where the run was recorded and maps its outcome to the exit status.
fn finish(id: anyhow::Result<i64>, differences: bool) -> anyhow::Result<ExitCode> {
    match id {
        Ok(id) => eprintln!("recorded as data run {id}"),
        Err(e) => eprintln!("sealtrail: the run finished but could not be recorded: {e:#}"),
    }
    Ok(ExitCode::from(if differences { 1 } else { 0 }))
}

fn diff(data: &Path, log: &str, args: &DiffArgs) -> anyhow::Result<ExitCode> {
    if matches!(args.tolerance, Some(t) if !(t >= 0.0 && t.is_finite())) {
        bail!("--tolerance must be a finite number of at least 0");
    }
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let options = DiffOptions {
        key: args.key.clone(),
        ignore: args.ignore.clone(),
        rename: args.rename.clone(),
        case_insensitive: args.ignore_case.clone(),
        whitespace_insensitive: args.ignore_whitespace.clone(),
        numeric_tolerance: args.tolerance,
        memory_budget: usize::try_from(args.read.memory).unwrap_or(usize::MAX),
        temp_dir: Some(temp.path().to_path_buf()),
    };
    let parameters = json!({
        "key": args.key, "ignore": args.ignore,
        "rename": args.rename.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
        "ignore_case": args.ignore_case, "ignore_whitespace": args.ignore_whitespace,
        "tolerance": args.tolerance, "memory_bytes": args.read.memory,
        "format": args.format.as_str(), "record": args.record.then_some(log),
    });
    let run = begin(
        data,
        RunKind::Diff,
        &args.read,
        vec![args.left.clone(), args.right.clone()],
        parameters,
    );
    let recorder = if args.record {
        Some(Recorder::open(data, log, args.read.name.as_deref())?)
    } else {
        None
    };
    let result = (|| -> anyhow::Result<_> {
        let (dest, out) = Destination::new(args.output.as_deref())?;
        let mut writer = output::writer(args.format, out, Some(temp.path()))?;
        let ran = {
            let mut sink = Tee {
                writer: writer.as_sink(),
                recorder: recorder.as_ref(),
                batch: Vec::new(),
                layout: None,
            };
            let ran = watched(args.read.no_progress, 2, |watch| {
                job::run_diff(
                    &args.left,
                    &args.right,
                    &args.read.open_options(),
                    &options,
                    &mut sink,
                    watch,
                )
            })?;
            sink.flush()?;
            ran
        };
        writer.finish(&ran.summary)?;
        dest.commit()?;
        let summary = serde_json::to_value(&ran.summary)?;
        Ok((ran, summary))
    })();
    let differences = match &result {
        Ok((ran, _)) => ran.differences,
        Err(_) => false,
    };
    let id = run.store(result.as_ref().map(|(r, s)| (r, s.clone())));
    if let Err(e) = result {
        if let Ok(id) = id {
            eprintln!("recorded as failed data run {id}");
        }
        return Err(e);
    }
    if let Some(r) = &recorder {
        eprintln!("recorded {} row changes as events in log {log}", r.appended.get());
    }
    finish(id, differences)
}

/// Appends row changes to a log as audit events, in batches.
struct Recorder {
    trail: Trail,
    dataset: String,
    run: Value,
    appended: std::cell::Cell<u64>,
}

impl Recorder {
    fn open(data: &Path, log: &str, name: Option<&str>) -> anyhow::Result<Recorder> {
        let trail = Trail::open(&DataDir::new(data), log, TrailOptions::default())
            .with_context(|| format!("opening log {log} to record the row changes (--record)"))?;
        let mut token = [0u8; 8];
        getrandom::fill(&mut token).map_err(|e| anyhow::anyhow!("random run token: {e}"))?;
        let token: String = token.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Recorder {
            trail,
            dataset: name.unwrap_or("data-diff").to_string(),
            run: json!({"token": token, "name": name}),
            appended: std::cell::Cell::new(0),
        })
    }

    fn append(&self, events: &mut Vec<Vec<u8>>) -> Result<(), DataError> {
        if events.is_empty() {
            return Ok(());
        }
        let refs: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        let ingested = self
            .trail
            .ingest(&refs, true)
            .map_err(|e| DataError::new("--record", e.to_string()))?;
        if let Some(Item::Rejected(why)) = ingested.items.iter().find(|i| matches!(i, Item::Rejected(_))) {
            return Err(DataError::new(
                "--record",
                format!("a row change is not a valid event: {why}"),
            ));
        }
        self.appended.set(self.appended.get() + refs.len() as u64);
        events.clear();
        Ok(())
    }
}

/// Sends each change to the report writer and, with `--record`, to the log.
struct Tee<'a> {
    writer: &'a mut dyn ChangeSink,
    recorder: Option<&'a Recorder>,
    batch: Vec<Vec<u8>>,
    layout: Option<Layout>,
}

impl Tee<'_> {
    fn flush(&mut self) -> Result<(), DataError> {
        match self.recorder {
            Some(recorder) => recorder.append(&mut self.batch),
            None => Ok(()),
        }
    }
}

impl ChangeSink for Tee<'_> {
    fn begin(&mut self, layout: &Layout) -> Result<(), DataError> {
        self.layout = Some(layout.clone());
        self.writer.begin(layout)
    }

    fn change(&mut self, change: &Change) -> Result<(), DataError> {
        self.writer.change(change)?;
        if let (Some(recorder), Some(layout)) = (self.recorder, &self.layout) {
            let columns = (&layout.left_columns[..], &layout.right_columns[..]);
            if let Some(mut event) =
                job::change_event(&recorder.dataset, &layout.key_columns, columns, change, &recorder.run)
            {
                event["actor"] = cli_actor();
                self.batch.push(event.to_string().into_bytes());
                if self.batch.len() >= 1024 {
                    recorder.append(&mut self.batch)?;
                }
            }
        }
        Ok(())
    }
}

fn keys(data: &Path, args: &KeysArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    if !matches!(args.format, Format::Table | Format::Json) {
        bail!("--format for keys is table or json");
    }
    let options = KeyOptions {
        max_columns: args.max_columns,
        nulls: args.nulls,
        memory_budget: usize::try_from(args.read.memory).unwrap_or(usize::MAX),
        near: args.near,
        ..KeyOptions::default()
    };
    let parameters = json!({
        "max_columns": args.max_columns, "near": args.near,
        "nulls": args.nulls, "memory_bytes": args.read.memory,
    });
    let run = begin(data, RunKind::Keys, &args.read, args.inputs.clone(), parameters);
    let result = watched(args.read.no_progress, args.inputs.len(), |watch| {
        job::run_keys(&args.inputs, &args.read.open_options(), &options, watch)
    })
    .map_err(anyhow::Error::from)
    .map(|ran| {
        let summary = ran.summary.to_json();
        (ran, summary)
    });
    let id = run.store(result.as_ref().map(|(r, s)| (r, s.clone())));
    let (ran, summary) = result?;
    if args.format == Format::Json {
        writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        for table in &ran.summary.tables {
            writeln!(
                out,
                "{} rows, {} columns, {} minimal keys",
                table.rows,
                table.columns.len(),
                table.keys.len()
            )?;
            for key in &table.keys {
                writeln!(out, "  {}", key.join(", "))?;
            }
            if let Some(near) = &table.near {
                writeln!(out, "near keys (duplicate rows):")?;
                for k in &near.keys {
                    writeln!(out, "  {} ({})", k.columns.join(", "), k.duplicate_rows)?;
                }
            }
        }
        if let Some(common) = &ran.summary.common {
            writeln!(out, "keys unique in both ({}):", common.keys.len())?;
            for k in &common.keys {
                let notes = [
                    (!k.minimal_in_both).then_some("not minimal in each"),
                    (!k.diffable).then_some("has nulls"),
                ];
                let notes: Vec<&str> = notes.into_iter().flatten().collect();
                let notes = if notes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", notes.join(", "))
                };
                writeln!(out, "  {}{notes}", k.columns.join(", "))?;
            }
        }
    }
    finish(id, ran.differences)
}

fn validate(data: &Path, args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    if args.format == Format::Xlsx {
        bail!("--format for validate is table, json, jsonl or csv");
    }
    let parameters = json!({"rules": args.rules.display().to_string(), "format": args.format.as_str()});
    let run = begin(
        data,
        RunKind::Validate,
        &args.read,
        vec![args.input.clone()],
        parameters,
    );
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let result = (|| -> anyhow::Result<_> {
        let name = args.rules.display().to_string();
        let text = std::fs::read_to_string(&args.rules).with_context(|| format!("reading {name}"))?;
        let rules = Rules::from_toml(&text, &name)?;
        let (dest, out) = Destination::new(args.output.as_deref())?;
        let mut writer = ViolationWriter::new(args.format, out, Some(temp.path()))?;
        let ran = watched(args.read.no_progress, 1, |watch| {
            job::run_validate(
                &args.input,
                &args.read.open_options(),
                &rules,
                &mut |v| writer.violation(v),
                watch,
            )
        })?;
        writer.finish(&ran.summary)?;
        dest.commit()?;
        let summary = serde_json::to_value(&ran.summary)?;
        Ok((ran, summary))
    })();
    let id = run.store(result.as_ref().map(|(r, s)| (r, s.clone())));
    let (ran, _) = result?;
    finish(id, ran.differences)
}

fn history_entry(run: &StoredDataRun) -> RunSummary {
    RunSummary {
        id: run.id,
        finished_at: run.run.finished_at.clone(),
        quality_score: run.run.quality_score,
        summary: run.run.summary.clone(),
    }
}

fn run_by_id(meta: &Meta, id: i64) -> anyhow::Result<StoredDataRun> {
    meta.data_run(id)?
        .ok_or_else(|| anyhow::anyhow!("there is no data run {id} (see `sealtrail data runs list`)"))
}

fn runs(data: &Path, command: &RunsCommand, out: &mut impl Write) -> anyhow::Result<()> {
    let meta = Meta::open(data)?;
    match command {
        RunsCommand::List {
            kind,
            name,
            limit,
            json,
        } => {
            let kind = match kind.as_deref() {
                None => None,
                Some(k) => Some(
                    RunKind::from_name(k).ok_or_else(|| anyhow::anyhow!("--kind {k:?}: use diff, keys or validate"))?,
                ),
            };
            let runs = meta.list_data_runs(&DataRunFilter {
                kind,
                name: name.clone(),
                limit: *limit,
                before: None,
            })?;
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&runs)?)?;
                return Ok(());
            }
            crate::output::say_if_empty(runs.is_empty(), "no data runs recorded");
            for r in runs {
                let inputs: Vec<&str> = r.run.inputs.iter().map(|i| i.address.as_str()).collect();
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    r.id,
                    r.run.kind.as_str(),
                    r.run.name.as_deref().unwrap_or("-"),
                    r.run.outcome.as_str(),
                    r.run.finished_at,
                    r.run.quality_score.map_or("-".to_string(), |q| format!("{q:.4}")),
                    inputs.join(" "),
                )?;
            }
        }
        RunsCommand::Show { id } => writeln!(out, "{}", serde_json::to_string_pretty(&run_by_id(&meta, *id)?)?)?,
        RunsCommand::Compare { id1, id2, json } => {
            let (a, b) = (run_by_id(&meta, *id1)?, run_by_id(&meta, *id2)?);
            if a.run.kind != b.run.kind {
                bail!(
                    "run {id1} is a {} run and run {id2} a {} run: compare runs of one kind",
                    a.run.kind.as_str(),
                    b.run.kind.as_str()
                );
            }
            let c = history::compare(&history_entry(&a), &history_entry(&b));
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&c)?)?;
                return Ok(());
            }
            let q = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
            writeln!(
                out,
                "quality score {} -> {} ({})",
                q(c.quality_before),
                q(c.quality_after),
                q(c.quality_change)
            )?;
            for name in &c.changed {
                if let Some(m) = c.metrics.get(name) {
                    writeln!(out, "{name}: {} -> {}", q(m.before), q(m.after))?;
                }
            }
            for k in &c.new_keys {
                writeln!(out, "new key: {}", k.join(", "))?;
            }
            for k in &c.lost_keys {
                writeln!(out, "lost key: {}", k.join(", "))?;
            }
        }
        RunsCommand::Trend { name, json } => {
            let runs = meta.list_data_runs(&DataRunFilter {
                kind: None,
                name: Some(name.clone()),
                limit: sealtrail_meta::MAX_RUN_LIST,
                before: None,
            })?;
            if runs.is_empty() {
                bail!("no data runs named {name:?} (name runs with --name)");
            }
            let entries: Vec<RunSummary> = runs
                .iter()
                .filter(|r| r.run.outcome != RunOutcome::Failure)
                .map(history_entry)
                .collect();
            let points = history::trend(&entries);
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&points)?)?;
                return Ok(());
            }
            for p in points {
                let flags: Vec<String> = p
                    .anomalies
                    .iter()
                    .map(|a| {
                        format!(
                            "anomaly: {a} (z {:.1})",
                            p.metrics.get(a).and_then(|m| m.z).unwrap_or(0.0)
                        )
                    })
                    .chain(
                        p.regressions
                            .iter()
                            .map(|r| format!("regression: {} {} -> {}", r.metric, r.before, r.after)),
                    )
                    .collect();
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}",
                    p.id,
                    p.finished_at,
                    p.quality_score.map_or("-".to_string(), |q| format!("{q:.4}")),
                    if flags.is_empty() {
                        "-".to_string()
                    } else {
                        flags.join("; ")
                    }
                )?;
            }
        }
    }
    Ok(())
}
