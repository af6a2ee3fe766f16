//! Sealtrail's reports (docs/reports.md): a daily or weekly `summary`, a
//! PCI DSS 10 `compliance` report, an `access-review` of users and API
//! keys and a `reconciliation` report of the data runs of one named
//! comparison, each computed by [`generate`] into a [`Report`] and rendered by
//! [`render`] as one self-contained HTML file, an XLSX workbook with
//! native charts, or JSON; [`deliver`] sends one through an alert channel
//! (email: the HTML as body, the XLSX attached; webhook: the JSON).
//!
//! Figures come from the query index (counts, facets, percentiles) and
//! the few events shown as examples are read back from the ledger, so a
//! day's summary costs about what the equivalent `stats` queries cost.
//! Every report names the checkpoint it was computed from: the size the
//! index covered and the root hash of the tree of that size.
//!
//! Architecture invariant: reads only. A report opens the logs and the
//! index read-only and `meta.db` only when it is there; it writes nothing
//! and works beside a running server.
//! Not here: scheduling (the scheduler calls [`generate`], [`render`] and
//! [`deliver`]), HTTP routes, or the alert outbox.

mod access;
mod chart;
mod compliance;
mod deliver;
mod gather;
mod html;
pub mod model;
mod reconciliation;
mod summary;
mod xlsx;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sealtrail_event::Timestamp;
use sealtrail_ledger::DataDir;
use sealtrail_meta::{Meta, META_FILE, SYSTEM_LOG};
use sealtrail_trail::TrailReader;

pub use deliver::{deliver, Delivered, DeliveryError};
pub use model::Report;

/// Rows of each top list (actions, actors, targets).
pub const TOP: usize = 10;
/// Examples kept of failures and errors.
pub const EXAMPLES: usize = 5;
/// Samples kept per compliance event class.
pub const SAMPLES: usize = 5;
/// Actions with duration figures kept, busiest first.
pub const TOP_TIMINGS: usize = 30;
/// Alerts listed.
pub const TOP_ALERTS: usize = 20;
/// Flatlines listed.
pub const TOP_GAPS: usize = 20;
/// Alerts read from `meta.db` for one report, newest first.
pub const MAX_ALERTS_READ: usize = 100_000;
/// Days in which an access right must have been used.
pub const ACCESS_WINDOW_DAYS: u64 = 90;
/// Data runs of one comparison read from `meta.db` for one report, newest
/// first; older ones are left out and the report says so.
pub const MAX_DATA_RUNS_READ: usize = 100_000;
/// Comparison names an unknown name's refusal lists.
pub const KNOWN_NAMES_LISTED: usize = 10;

/// The kinds of report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    Summary,
    Compliance,
    AccessReview,
    Reconciliation,
}

impl ReportKind {
    pub const ALL: [ReportKind; 4] = [
        ReportKind::Summary,
        ReportKind::Compliance,
        ReportKind::AccessReview,
        ReportKind::Reconciliation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Summary => "summary",
            ReportKind::Compliance => "compliance",
            ReportKind::AccessReview => "access-review",
            ReportKind::Reconciliation => "reconciliation",
        }
    }
}

impl fmt::Display for ReportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReportKind {
    type Err = ReportError;
    fn from_str(s: &str) -> Result<ReportKind, ReportError> {
        ReportKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ReportError::BadKind(s.to_string()))
    }
}

/// What a report is rendered as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Xlsx,
    Json,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Html, Format::Xlsx, Format::Json];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Xlsx => "xlsx",
            Format::Json => "json",
        }
    }

    /// The media type of the rendered bytes.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Format::Json => "application/json",
        }
    }
}

impl FromStr for Format {
    type Err = ReportError;
    fn from_str(s: &str) -> Result<Format, ReportError> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| ReportError::BadFormat(s.to_string()))
    }
}

/// What to compute.
#[derive(Debug, Clone)]
pub struct Request {
    pub kind: ReportKind,
    /// The log the report is about (the system log is read beside it for
    /// compliance and access review).
    pub log: String,
    /// `occurred_at` at or after (inclusive); `None`: from the start.
    pub since: Option<Timestamp>,
    /// `occurred_at` before (exclusive); `None`: up to `now`.
    pub until: Option<Timestamp>,
    /// The report's clock: `generated_at`, the end of an open period and
    /// of the access-review window.
    pub now: Timestamp,
    /// The comparison a `reconciliation` report covers: the `name` its
    /// data runs were recorded under. Required by that kind, refused by
    /// the others.
    pub name: Option<String>,
}

/// Why a report could not be computed or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("TYPE: {0:?} is not a report type: use summary, compliance, access-review or reconciliation")]
    BadKind(String),
    #[error("--format: {0:?} is not a report format: use html, xlsx or json")]
    BadFormat(String),
    #[error("--since {since} is not before --until {until}: the period is empty")]
    BadRange { since: Timestamp, until: Timestamp },
    #[error("log {log:?}: {source}")]
    Trail {
        log: String,
        #[source]
        source: sealtrail_trail::TrailError,
    },
    #[error("log {log:?}: {source}")]
    Ledger {
        log: String,
        #[source]
        source: sealtrail_ledger::LedgerError,
    },
    #[error("{kind} needs the metadata database, and {dir} has none")]
    NoMeta { kind: ReportKind, dir: PathBuf },
    #[error("--name: a reconciliation report covers one named comparison: give its name")]
    MissingName,
    #[error("--name {name:?}: no data run of a comparison of that name{}", known_names(.known))]
    UnknownName { name: String, known: Vec<String> },
    #[error("--name {name:?}: only a reconciliation report covers a named comparison, not {kind}")]
    NameNotApplicable { name: String, kind: ReportKind },
    #[error(transparent)]
    Meta(#[from] sealtrail_meta::MetaError),
    #[error("reading alerts from meta.db: {0}")]
    Alerts(String),
    #[error("rendering {format}: {reason}")]
    Render { format: &'static str, reason: String },
}

/// The comparisons there are, as an unknown name's refusal lists them.
fn known_names(known: &[String]) -> String {
    if known.is_empty() {
        " (meta.db holds no named data run)".into()
    } else {
        let shown: Vec<String> = known
            .iter()
            .take(KNOWN_NAMES_LISTED)
            .map(|n| format!("{n:?}"))
            .collect();
        let more = known.len().saturating_sub(KNOWN_NAMES_LISTED);
        format!(
            " (known: {}{})",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )
    }
}

/// Where the figures come from: the log, the system log beside it (when
/// the data directory has one), and `meta.db` (when there is one).
pub(crate) struct Sources {
    pub log: String,
    pub trail: TrailReader,
    pub system: Option<TrailReader>,
    pub meta: Option<Meta>,
}

impl Sources {
    fn open(data_dir: &Path, log: &str) -> Result<Sources, ReportError> {
        let data = DataDir::new(data_dir);
        let trail = TrailReader::open(&data, log).map_err(|source| ReportError::Trail {
            log: log.to_string(),
            source,
        })?;
        let system = if log != SYSTEM_LOG && data.verifier(SYSTEM_LOG).is_ok() {
            Some(
                TrailReader::open(&data, SYSTEM_LOG).map_err(|source| ReportError::Trail {
                    log: SYSTEM_LOG.to_string(),
                    source,
                })?,
            )
        } else {
            None
        };
        let meta = if data_dir.join(META_FILE).exists() {
            Some(Meta::open(data_dir)?)
        } else {
            None
        };
        Ok(Sources {
            log: log.to_string(),
            trail,
            system,
            meta,
        })
    }

    /// The system log's reader: its own when the report is about it.
    pub fn system(&self) -> Option<(&str, &TrailReader)> {
        match &self.system {
            Some(s) => Some((SYSTEM_LOG, s)),
            None if self.log == SYSTEM_LOG => Some((SYSTEM_LOG, &self.trail)),
            None => None,
        }
    }
}

/// Compute the report `request` asks for from the data directory
/// `data_dir` (read-only; works beside a running server).
pub fn generate(data_dir: &Path, request: &Request) -> Result<Report, ReportError> {
    if let (Some(since), Some(until)) = (request.since, request.until) {
        if since >= until {
            return Err(ReportError::BadRange { since, until });
        }
    }
    match (request.kind, &request.name) {
        (ReportKind::Reconciliation, None) => return Err(ReportError::MissingName),
        (ReportKind::Reconciliation, Some(name)) if name.trim().is_empty() => return Err(ReportError::MissingName),
        (ReportKind::Reconciliation, Some(_)) => {}
        (kind, Some(name)) => {
            return Err(ReportError::NameNotApplicable {
                name: name.clone(),
                kind,
            })
        }
        (_, None) => {}
    }
    let sources = Sources::open(data_dir, &request.log)?;
    match request.kind {
        ReportKind::Summary => summary::generate(&sources, request),
        ReportKind::Compliance => compliance::generate(&sources, request),
        ReportKind::AccessReview => match &sources.meta {
            Some(meta) => access::generate(&sources, meta, request),
            None => Err(ReportError::NoMeta {
                kind: request.kind,
                dir: data_dir.to_path_buf(),
            }),
        },
        ReportKind::Reconciliation => match &sources.meta {
            Some(meta) => reconciliation::generate(&sources, meta, request),
            None => Err(ReportError::NoMeta {
                kind: request.kind,
                dir: data_dir.to_path_buf(),
            }),
        },
    }
}

/// Render `report` as `format`: self-contained HTML (inline CSS and SVG),
/// an XLSX workbook, or pretty-printed JSON.
pub fn render(report: &Report, format: Format) -> Result<Vec<u8>, ReportError> {
    match format {
        Format::Html => html::render(report).map(String::into_bytes),
        Format::Xlsx => xlsx::render(report),
        Format::Json => serde_json::to_vec_pretty(report).map_err(|e| ReportError::Render {
            format: "json",
            reason: e.to_string(),
        }),
    }
}

/// A file name for `report` rendered as `format`:
/// `sealtrail-<type>-<log>-<date>.<ext>`.
pub fn file_name(report: &Report, format: Format) -> String {
    let date = report.generated_at.get(..10).unwrap_or("report");
    let log: String = report
        .log
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("sealtrail-{}-{log}-{date}.{}", report.report, format.as_str())
}
