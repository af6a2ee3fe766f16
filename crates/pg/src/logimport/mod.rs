//! Import of PostgreSQL server logs (stderr, csvlog and jsonlog, as
//! PostgreSQL 12 to 16 write them) as `pg.log` events. Parsing streams
//! through a fixed-size buffer, so memory stays bounded whatever the file
//! size; events go to a caller's sink in batches, so this module knows
//! nothing of the ledger. A malformed entry is reported with its file and
//! line and the rest is imported.

mod follow;
mod prefix;
mod record;

pub use follow::{follow, FollowOptions, Position};
pub use prefix::{LinePrefix, PrefixError};

use record::Record;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// How a server log is written (`log_destination`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Stderr,
    Csvlog,
    Jsonlog,
}

impl LogFormat {
    /// `stderr`, `csvlog` or `jsonlog`.
    pub fn from_name(name: &str) -> Option<LogFormat> {
        match name {
            "stderr" => Some(LogFormat::Stderr),
            "csvlog" | "csv" => Some(LogFormat::Csvlog),
            "jsonlog" | "json" => Some(LogFormat::Jsonlog),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Stderr => "stderr",
            LogFormat::Csvlog => "csvlog",
            LogFormat::Jsonlog => "jsonlog",
        }
    }

    /// The server names csvlog files `.csv` and jsonlog files `.json`; a
    /// file starting with `{` is jsonlog; anything else is stderr.
    pub fn detect(path: &Path, head: &[u8]) -> LogFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => LogFormat::Csvlog,
            Some("json") => LogFormat::Jsonlog,
            _ if head.first() == Some(&b'{') => LogFormat::Jsonlog,
            _ => LogFormat::Stderr,
        }
    }
}

/// How to read a log.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// `None`: from the file name and its first byte ([`LogFormat::detect`]).
    pub format: Option<LogFormat>,
    /// The server's `log_line_prefix` for stderr logs; `None`: detected
    /// among the common settings from the first lines.
    pub line_prefix: Option<String>,
    /// Events handed to the sink at a time.
    pub batch_size: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            format: None,
            line_prefix: None,
            batch_size: 1_000,
        }
    }
}

/// A log entry that was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub file: String,
    /// 1-based line where the entry starts.
    pub line: u64,
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// What the sink did with one batch: how many events were already stored
/// (same idempotency key), and which were refused (index in the batch and
/// the reason).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub duplicates: usize,
    pub rejected: Vec<(usize, String)>,
}

/// The result of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Events newly stored by the sink.
    pub imported: u64,
    /// Events the sink already had.
    pub duplicates: u64,
    /// The first [`MAX_REPORTED_ERRORS`] entries not imported.
    pub errors: Vec<LineError>,
    /// All entries not imported, including those beyond `errors`.
    pub error_count: u64,
    /// Lines and bytes read.
    pub lines: u64,
    pub bytes: u64,
}

/// Errors kept in [`ImportReport::errors`]; the rest are only counted.
pub const MAX_REPORTED_ERRORS: usize = 1_000;

impl ImportReport {
    fn error(&mut self, e: LineError) {
        self.error_count += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(e);
        }
    }
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}: {source}")]
    Io { file: String, source: std::io::Error },
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    #[error("{file}: no common log_line_prefix reads its first lines; give the server's log_line_prefix")]
    UnknownPrefix { file: String },
    /// The sink failed; events before this batch were delivered.
    #[error("{file}: delivering events: {message}")]
    Sink { file: String, message: String },
    #[error("{file}: position file: {message}")]
    Position { file: String, message: String },
}

/// Import one log file into `sink`, which receives event texts in batches
/// and says what became of them.
pub fn import<S>(path: &Path, opts: &ImportOptions, mut sink: S) -> Result<ImportReport, ImportError>
where
    S: FnMut(&[String]) -> Result<BatchOutcome, String>,
{
    let display = path.display().to_string();
    let io = |source| ImportError::Io {
        file: display.clone(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let identity = file_identity(path).map_err(io)?;
    let mut dec = Decoder::new(path, opts, identity, 0, 1)?;
    let mut report = ImportReport::default();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut out = Vec::new();
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            dec.drain(Flush::End, &mut out)?;
            deliver(&display, &mut out, opts.batch_size, &mut report, &mut sink)?;
            break;
        }
        if dec.format.is_none() {
            dec.format = Some(opts.format.unwrap_or_else(|| LogFormat::detect(path, &buf[..n])));
        }
        report.bytes += n as u64;
        dec.feed(&buf[..n]);
        dec.drain(Flush::More, &mut out)?;
        deliver(&display, &mut out, opts.batch_size, &mut report, &mut sink)?;
    }
    report.lines = dec.line - 1;
    Ok(report)
}

const READ_CHUNK: usize = 1 << 20;

/// The largest entry waited for; PostgreSQL's own messages are far smaller.
const MAX_ENTRY_BYTES: usize = 16 << 20;

/// A file's identity for idempotency keys and positions: the first 16 hex
/// digits of the SHA-256 of its first line, which carries the first
/// entry's timestamp. A renamed or copied file keeps it; a new file after
/// rotation gets another. Empty until the first line is complete.
pub(crate) fn file_identity(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut head = vec![0u8; 64 * 1024];
    let mut filled = 0;
    loop {
        let n = file.read(&mut head[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
        if head[..filled].contains(&b'\n') || filled == head.len() {
            break;
        }
    }
    let Some(end) = head[..filled].iter().position(|&b| b == b'\n') else {
        return Ok(String::new());
    };
    let digest = Sha256::digest(&head[..end]);
    Ok(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
}

pub(crate) enum Parsed {
    Event { text: String, line: u64 },
    Error(LineError),
}

/// How much of the buffered text may be taken as complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// More is coming: keep back what may still continue.
    More,
    /// The writer paused: complete lines close their entries.
    Idle,
    /// Nothing more: everything left is parsed.
    End,
}

/// Turns the bytes of one file, fed in pieces, into parsed entries.
pub(crate) struct Decoder {
    pub(crate) format: Option<LogFormat>,
    prefix: Option<LinePrefix>,
    file: String,
    identity: String,
    /// 1-based line number and byte offset of `pending[0]`.
    pub(crate) line: u64,
    pub(crate) offset: u64,
    pending: Vec<u8>,
}

impl Decoder {
    pub(crate) fn new(
        path: &Path,
        opts: &ImportOptions,
        identity: String,
        offset: u64,
        line: u64,
    ) -> Result<Decoder, ImportError> {
        let prefix = match &opts.line_prefix {
            Some(p) => Some(LinePrefix::parse(p)?),
            None => None,
        };
        Ok(Decoder {
            format: opts.format,
            prefix,
            file: path.display().to_string(),
            identity,
            line,
            offset,
            pending: Vec::new(),
        })
    }

    pub(crate) fn feed(&mut self, data: &[u8]) {
        self.pending.extend_from_slice(data);
    }

    /// Start over on another file (after rotation), keeping format and prefix.
    pub(crate) fn reset(&mut self, identity: String, offset: u64, line: u64) {
        self.identity = identity;
        self.offset = offset;
        self.line = line;
        self.pending.clear();
    }

    pub(crate) fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// Parse every complete entry buffered, appending to `out`.
    pub(crate) fn drain(&mut self, flush: Flush, out: &mut Vec<Parsed>) -> Result<(), ImportError> {
        let format = match self.format {
            Some(f) => f,
            None if self.pending.is_empty() => return Ok(()),
            None => {
                let f = LogFormat::detect(Path::new(&self.file), &self.pending);
                self.format = Some(f);
                f
            }
        };
        let end = match format {
            LogFormat::Jsonlog => line_boundary(&self.pending, flush),
            LogFormat::Csvlog => csv_boundary(&self.pending, flush),
            LogFormat::Stderr => {
                if self.prefix.is_none() {
                    let lines = self.pending.iter().filter(|&&b| b == b'\n').count();
                    if flush == Flush::More && lines < 100 && self.pending.len() < READ_CHUNK {
                        return Ok(());
                    }
                    let head = String::from_utf8_lossy(&self.pending[..self.pending.len().min(READ_CHUNK)]);
                    self.prefix =
                        Some(
                            LinePrefix::detect(head.lines().take(200)).ok_or_else(|| ImportError::UnknownPrefix {
                                file: self.file.clone(),
                            })?,
                        );
                }
                match &self.prefix {
                    Some(p) => stderr_boundary(p, &self.pending, flush),
                    None => 0,
                }
            }
        };
        // An entry never ends (an unclosed quote, a line without newline):
        // past this size take what there is, so memory stays bounded.
        let end = if end == 0 && self.pending.len() > MAX_ENTRY_BYTES {
            match line_boundary(&self.pending, Flush::Idle) {
                0 => self.pending.len(),
                n => n,
            }
        } else {
            end
        };
        if end == 0 {
            return Ok(());
        }
        let region = &self.pending[..end];
        match format {
            LogFormat::Jsonlog => self.parse_json(region, out),
            LogFormat::Csvlog => self.parse_csv(region, out),
            LogFormat::Stderr => self.parse_stderr(region, out),
        }
        self.line += region.iter().filter(|&&b| b == b'\n').count() as u64;
        self.offset += end as u64;
        self.pending.drain(..end);
        Ok(())
    }

    fn error(&self, line: u64, message: String) -> Parsed {
        Parsed::Error(LineError {
            file: self.file.clone(),
            line,
            message,
        })
    }

    fn key(&self, family: &str, rec: &Record, line: u64) -> String {
        match (&rec.session_id, rec.session_line) {
            (Some(s), Some(l)) if !s.is_empty() => format!("{family}:{s}:{l}"),
            _ => format!("{family}:{}:{line}", self.identity),
        }
    }

    fn parse_json(&self, region: &[u8], out: &mut Vec<Parsed>) {
        for (i, text) in region.split(|&b| b == b'\n').enumerate() {
            let line = self.line + i as u64;
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<JsonEntry>(text) {
                Ok(j) => match j.into_record() {
                    Ok(rec) => out.push(Parsed::Event {
                        text: rec.to_event(&self.key("pg.log", &rec, line), None),
                        line,
                    }),
                    Err(m) => out.push(self.error(line, m)),
                },
                Err(e) => out.push(self.error(line, format!("column {}: not a jsonlog entry: {e}", e.column()))),
            }
        }
    }

    fn parse_csv(&self, region: &[u8], out: &mut Vec<Parsed>) {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(region);
        let mut rec = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut rec) {
                Ok(false) => break,
                Ok(true) => {
                    let line = self.line + rec.position().map_or(0, |p| p.line() - 1);
                    match csv_record(&rec) {
                        Ok(r) => out.push(Parsed::Event {
                            text: r.to_event(&self.key("pg.log", &r, line), None),
                            line,
                        }),
                        Err(m) => out.push(self.error(line, m)),
                    }
                }
                Err(e) => {
                    let line = self.line + e.position().map_or(0, |p| p.line() - 1);
                    out.push(self.error(line, format!("not a csvlog record: {e}")));
                }
            }
        }
    }

    fn parse_stderr(&self, region: &[u8], out: &mut Vec<Parsed>) {
        let Some(prefix) = &self.prefix else { return };
        let text = String::from_utf8_lossy(region);
        let mut current: Option<StderrEntry> = None;
        for (i, line_text) in text.split('\n').enumerate() {
            let line = self.line + i as u64;
            let line_text = line_text.strip_suffix('\r').unwrap_or(line_text);
            if let Some(more) = line_text.strip_prefix('\t') {
                match &mut current {
                    Some(e) => e.continue_with(more),
                    None => out.push(self.error(line, "a continuation line without the entry it continues".into())),
                }
                continue;
            }
            if line_text.is_empty() {
                continue;
            }
            let Some(split) = prefix.split(line_text) else {
                if let Some(e) = current.take() {
                    out.push(self.stderr_event(e));
                }
                out.push(self.error(
                    line,
                    format!(
                        "does not start with the log_line_prefix {:?} and a level",
                        prefix.to_string()
                    ),
                ));
                continue;
            };
            if prefix::is_primary(split.level) {
                if let Some(e) = current.take() {
                    out.push(self.stderr_event(e));
                }
                current = Some(StderrEntry::new(line, split));
                continue;
            }
            match &mut current {
                Some(e) if e.head.fields.pid == split.fields.pid => e.attach(split.level, split.message),
                _ => out.push(self.error(line, format!("a {} line without the entry it belongs to", split.level))),
            }
        }
        if let Some(e) = current.take() {
            out.push(self.stderr_event(e));
        }
    }

    fn stderr_event(&self, e: StderrEntry) -> Parsed {
        let f = &e.head.fields;
        let num = |v: Option<&str>| v.and_then(|v| v.parse::<u64>().ok());
        let (host, port) = match (f.host, f.remote) {
            (Some(h), _) => (Some(h), None),
            (None, Some(r)) => match r.split_once('(') {
                Some((h, p)) => (Some(h), p.strip_suffix(')').and_then(|p| p.parse().ok())),
                None => (Some(r), None),
            },
            (None, None) => (None, None),
        };
        // The server appends the error's position to the message here; the
        // other formats keep it apart.
        let mut message = e.message;
        let mut cursor_position = None;
        if e.statement.is_some() {
            if let Some((m, at)) = message.rsplit_once(" at character ") {
                if let Ok(at) = at.parse::<u64>() {
                    cursor_position = Some(at);
                    message = Cow::Owned(m.to_owned());
                }
            }
        }
        let rec = Record {
            timestamp: f.timestamp.map(Cow::Borrowed),
            user: f.user.map(Cow::Borrowed),
            database: f.database.map(Cow::Borrowed),
            pid: num(f.pid),
            host: host.map(Cow::Borrowed),
            port,
            session_id: f.session_id.map(Cow::Borrowed),
            session_line: num(f.session_line),
            command_tag: f.command_tag.map(Cow::Borrowed),
            vxid: f.vxid.map(Cow::Borrowed),
            xid: num(f.xid),
            level: Cow::Borrowed(e.head.level),
            sqlstate: f.sqlstate.map(Cow::Borrowed),
            message,
            detail: e.detail,
            hint: e.hint,
            internal_query: e.query,
            context: e.context,
            statement: e.statement,
            cursor_position,
            location: e.location,
            application: f.application.map(Cow::Borrowed),
            backend_type: f.backend_type.map(Cow::Borrowed),
            query_id: f.query_id.and_then(|q| q.parse().ok()),
        };
        let occurred_at = f.epoch.and_then(record::epoch_rfc3339);
        let key = self.key("pg.stderr", &rec, e.line);
        Parsed::Event {
            text: rec.to_event(&key, occurred_at),
            line: e.line,
        }
    }
}

struct StderrEntry<'a> {
    line: u64,
    head: prefix::PrefixedLine<'a>,
    message: Cow<'a, str>,
    detail: Option<Cow<'a, str>>,
    hint: Option<Cow<'a, str>>,
    query: Option<Cow<'a, str>>,
    context: Option<Cow<'a, str>>,
    location: Option<Cow<'a, str>>,
    statement: Option<Cow<'a, str>>,
    /// Which piece continuation lines extend: empty for the message, else
    /// the attached level.
    last: &'static str,
}

impl<'a> StderrEntry<'a> {
    fn new(line: u64, head: prefix::PrefixedLine<'a>) -> Self {
        StderrEntry {
            line,
            message: Cow::Borrowed(head.message),
            head,
            detail: None,
            hint: None,
            query: None,
            context: None,
            location: None,
            statement: None,
            last: "",
        }
    }

    fn slot(&mut self, level: &str) -> &mut Option<Cow<'a, str>> {
        match level {
            "DETAIL" => &mut self.detail,
            "HINT" => &mut self.hint,
            "QUERY" => &mut self.query,
            "CONTEXT" => &mut self.context,
            "LOCATION" => &mut self.location,
            _ => &mut self.statement,
        }
    }

    fn attach(&mut self, level: &str, text: &'a str) {
        self.last = prefix::ATTACHED
            .iter()
            .find(|l| **l == level)
            .copied()
            .unwrap_or("STATEMENT");
        *self.slot(level) = Some(Cow::Borrowed(text));
    }

    fn continue_with(&mut self, more: &str) {
        let piece = if self.last.is_empty() {
            &mut self.message
        } else {
            let last = self.last;
            match self.slot(last) {
                Some(p) => p,
                None => return,
            }
        };
        let p = piece.to_mut();
        p.push('\n');
        p.push_str(more);
    }
}

/// End of the last complete line (or everything at the end).
fn line_boundary(buf: &[u8], flush: Flush) -> usize {
    if flush == Flush::End {
        return buf.len();
    }
    buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

/// End of the last record whose newline is outside quotes.
fn csv_boundary(buf: &[u8], flush: Flush) -> usize {
    if flush == Flush::End {
        return buf.len();
    }
    let mut quoted = false;
    let mut end = 0;
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => end = i + 1,
            _ => {}
        }
    }
    end
}

/// Start of the last line that begins an entry: what follows it may still
/// be continued. When idle, complete lines are taken as complete entries.
fn stderr_boundary(prefix: &LinePrefix, buf: &[u8], flush: Flush) -> usize {
    let complete = line_boundary(buf, flush);
    if flush != Flush::More {
        return complete;
    }
    let mut end = complete;
    while end > 0 {
        let start = buf[..end - 1].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let line = String::from_utf8_lossy(&buf[start..end - 1]);
        if !line.starts_with('\t') {
            if let Some(s) = prefix.split(&line) {
                if prefix::is_primary(s.level) {
                    return start;
                }
            }
        }
        end = start;
    }
    // No entry starts here: these lines continue nothing that may still
    // grow, so they are reported now rather than held.
    complete
}

#[derive(Deserialize)]
struct JsonEntry<'a> {
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user: Option<Cow<'a, str>>,
    #[serde(borrow)]
    dbname: Option<Cow<'a, str>>,
    pid: Option<u64>,
    #[serde(borrow)]
    remote_host: Option<Cow<'a, str>>,
    remote_port: Option<u64>,
    #[serde(borrow)]
    session_id: Option<Cow<'a, str>>,
    line_num: Option<u64>,
    #[serde(borrow)]
    ps: Option<Cow<'a, str>>,
    #[serde(borrow)]
    vxid: Option<Cow<'a, str>>,
    txid: Option<u64>,
    #[serde(borrow)]
    error_severity: Option<Cow<'a, str>>,
    #[serde(borrow)]
    state_code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    detail: Option<Cow<'a, str>>,
    #[serde(borrow)]
    hint: Option<Cow<'a, str>>,
    #[serde(borrow)]
    internal_query: Option<Cow<'a, str>>,
    #[serde(borrow)]
    context: Option<Cow<'a, str>>,
    #[serde(borrow)]
    statement: Option<Cow<'a, str>>,
    cursor_position: Option<u64>,
    #[serde(borrow)]
    func_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    file_name: Option<Cow<'a, str>>,
    file_line_num: Option<u64>,
    #[serde(borrow)]
    application_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    backend_type: Option<Cow<'a, str>>,
    query_id: Option<i64>,
}

impl<'a> JsonEntry<'a> {
    fn into_record(self) -> Result<Record<'a>, String> {
        let level = self.error_severity.ok_or("no \"error_severity\"")?;
        if record::severity(&level).is_none() {
            return Err(format!("\"error_severity\": unknown level {level:?}"));
        }
        let location = match (&self.func_name, &self.file_name) {
            (Some(func), Some(file)) => Some(Cow::Owned(format!(
                "{func}, {file}:{}",
                self.file_line_num.unwrap_or(0)
            ))),
            _ => None,
        };
        Ok(Record {
            timestamp: self.timestamp,
            user: self.user,
            database: self.dbname,
            pid: self.pid,
            host: self.remote_host,
            port: self.remote_port,
            session_id: self.session_id,
            session_line: self.line_num,
            command_tag: self.ps,
            vxid: self.vxid,
            xid: self.txid,
            level,
            sqlstate: self.state_code,
            message: self.message.unwrap_or_default(),
            detail: self.detail,
            hint: self.hint,
            internal_query: self.internal_query,
            context: self.context,
            statement: self.statement,
            cursor_position: self.cursor_position,
            location,
            application: self.application_name,
            backend_type: self.backend_type,
            query_id: self.query_id,
        })
    }
}

/// csvlog's columns (PostgreSQL 15 writes 26; 12 writes 23, 13 writes 24).
const CSV_COLUMNS: [&str; 26] = [
    "log_time",
    "user_name",
    "database_name",
    "process_id",
    "connection_from",
    "session_id",
    "session_line_num",
    "command_tag",
    "session_start_time",
    "virtual_transaction_id",
    "transaction_id",
    "error_severity",
    "sql_state_code",
    "message",
    "detail",
    "hint",
    "internal_query",
    "internal_query_pos",
    "context",
    "query",
    "query_pos",
    "location",
    "application_name",
    "backend_type",
    "leader_pid",
    "query_id",
];

fn csv_record(rec: &csv::StringRecord) -> Result<Record<'_>, String> {
    if !(23..=26).contains(&rec.len()) {
        return Err(format!("{} columns; csvlog has 23 to 26", rec.len()));
    }
    let text = |i: usize| rec.get(i).filter(|s| !s.is_empty()).map(Cow::Borrowed);
    let num = |i: usize| -> Result<Option<u64>, String> {
        match rec.get(i).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| format!("column {} ({}): {s:?} is not a number", i + 1, CSV_COLUMNS[i])),
        }
    };
    let level = rec.get(11).unwrap_or_default();
    if record::severity(level).is_none() {
        return Err(format!("column 12 (error_severity): unknown level {level:?}"));
    }
    // connection_from is "host:port", "[local]" or empty.
    let (host, port) = match rec.get(4).filter(|s| !s.is_empty()) {
        None => (None, None),
        Some(c) => match c.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() => (Some(h), p.parse().ok()),
            _ => (Some(c), None),
        },
    };
    let query_id = match rec.get(25).filter(|s| !s.is_empty()) {
        None => None,
        Some(q) => Some(
            q.parse::<i64>()
                .map_err(|_| format!("column 26 (query_id): {q:?} is not a number"))?,
        ),
    };
    Ok(Record {
        timestamp: text(0),
        user: text(1),
        database: text(2),
        pid: num(3)?,
        host: host.map(Cow::Borrowed),
        port,
        session_id: text(5),
        session_line: num(6)?,
        command_tag: text(7),
        vxid: text(9),
        xid: num(10)?,
        level: Cow::Borrowed(level),
        sqlstate: text(12),
        message: Cow::Borrowed(rec.get(13).unwrap_or_default()),
        detail: text(14),
        hint: text(15),
        internal_query: text(16),
        context: text(18),
        statement: text(19),
        cursor_position: num(20)?,
        location: text(21),
        application: text(22),
        backend_type: text(23),
        query_id,
    })
}

/// Hand `out` to the sink in batches, counting what became of it.
pub(crate) fn deliver<S>(
    file: &str,
    out: &mut Vec<Parsed>,
    batch_size: usize,
    report: &mut ImportReport,
    sink: &mut S,
) -> Result<(), ImportError>
where
    S: FnMut(&[String]) -> Result<BatchOutcome, String>,
{
    let mut batch = Vec::with_capacity(batch_size.min(out.len()));
    let mut lines = Vec::with_capacity(batch_size.min(out.len()));
    let mut send = |batch: &mut Vec<String>, lines: &mut Vec<u64>, report: &mut ImportReport| {
        if batch.is_empty() {
            return Ok(());
        }
        let outcome = sink(batch).map_err(|message| ImportError::Sink {
            file: file.to_owned(),
            message,
        })?;
        report.duplicates += outcome.duplicates as u64;
        report.imported += (batch.len() - outcome.duplicates - outcome.rejected.len()) as u64;
        for (i, why) in outcome.rejected {
            report.error(LineError {
                file: file.to_owned(),
                line: lines.get(i).copied().unwrap_or(0),
                message: format!("event refused: {why}"),
            });
        }
        batch.clear();
        lines.clear();
        Ok(())
    };
    for p in out.drain(..) {
        match p {
            Parsed::Error(e) => report.error(e),
            Parsed::Event { text, line } => {
                batch.push(text);
                lines.push(line);
                if batch.len() >= batch_size.max(1) {
                    send(&mut batch, &mut lines, report)?;
                }
            }
        }
    }
    send(&mut batch, &mut lines, report)
}
