//! The report model: every figure a report holds, as the renderers show
//! it and as its JSON carries it (docs/reports.md names each field).
//!
//! Plain data with `serde::Serialize`; nothing here reads the trail.

use std::collections::BTreeMap;

use serde::Serialize;

/// A computed report: what it covers, the checkpoint it was computed
/// from, and the figures of its kind.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `summary`, `compliance`, `access-review` or `reconciliation`.
    pub report: &'static str,
    pub title: String,
    /// The log the figures are about.
    pub log: String,
    /// When the report was computed (RFC 3339).
    pub generated_at: String,
    pub period: Period,
    pub checkpoint: CheckpointRef,
    /// True when the period holds no event (the report says so instead of
    /// failing).
    pub empty: bool,
    #[serde(flatten)]
    pub body: Body,
}

/// The figures of one kind of report.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Body {
    Summary(Box<Summary>),
    Compliance(Box<Compliance>),
    AccessReview(Box<AccessReview>),
    Reconciliation(Box<Reconciliation>),
}

/// The half-open range of `occurred_at` the report covers; an absent bound
/// is open.
#[derive(Debug, Clone, Serialize)]
pub struct Period {
    pub since: Option<String>,
    pub until: Option<String>,
}

/// The state of the log the figures were computed from.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointRef {
    /// The log's checkpoint origin line.
    pub origin: String,
    /// Entries `[0, size)` of the log were counted: the query index's
    /// coverage when the report was computed.
    pub size: u64,
    /// RFC 9162 root hash of the tree of `size` entries, base64 as in
    /// a checkpoint.
    pub root_hash: String,
    /// Size of the latest signed checkpoint.
    pub signed_size: u64,
    /// Root hash of the latest signed checkpoint, base64.
    pub signed_root_hash: String,
    /// The latest signed checkpoint's signature verifies with the log's
    /// verifier key.
    pub signature_valid: bool,
    /// The signed checkpoint's text (a C2SP signed note).
    pub signed_note: String,
}

/// A value and how many events hold it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Count {
    pub value: String,
    pub count: u64,
}

/// One time bucket of a series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Start of the bucket (RFC 3339, UTC).
    pub start: String,
    pub count: u64,
}

/// One stored event, shortened for a report.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub log: String,
    /// Ledger index of the entry.
    pub index: u64,
    pub id: String,
    pub occurred_at: String,
    pub action: String,
    pub actor: Option<String>,
    pub targets: Vec<String>,
    pub outcome: Option<String>,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub message: Option<String>,
}

/// A count of matching events with the newest few.
#[derive(Debug, Clone, Serialize)]
pub struct Examples {
    pub count: u64,
    pub by_action: Vec<Count>,
    pub examples: Vec<Sample>,
}

/// Duration figures of one action (milliseconds).
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub action: String,
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    /// False when the percentiles come from a sketch (within 1%).
    pub exact: bool,
}

/// The `summary` report.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub total: u64,
    /// Every action in the period and its count.
    pub by_action: BTreeMap<String, u64>,
    pub by_outcome: BTreeMap<String, u64>,
    /// `hour` or `day`.
    pub bucket: &'static str,
    /// Every bucket of the period, empty ones included.
    pub volume: Vec<Point>,
    pub top_actions: Vec<Count>,
    pub top_actors: Vec<Count>,
    pub top_targets: Vec<Count>,
    pub distinct_actors: u64,
    /// Events with outcome `failure`.
    pub failures: Examples,
    /// Events the index flags as failures: outcome `failure`, severity
    /// `error` or graver, or an `error` object.
    pub errors: Examples,
    /// Per action, busiest first (at most [`crate::TOP_TIMINGS`]).
    pub performance: Vec<Timing>,
    pub alerts: Alerts,
    pub verification: Verification,
}

/// Alerts raised on the log in the period, from `meta.db`.
#[derive(Debug, Clone, Serialize)]
pub struct Alerts {
    /// False when the data directory has no `meta.db`.
    pub available: bool,
    pub fired: u64,
    pub by_rule: Vec<Count>,
    /// Newest first, at most [`crate::TOP_ALERTS`].
    pub recent: Vec<AlertItem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertItem {
    pub fired_at: String,
    pub rule: String,
    pub level: String,
    pub status: String,
    pub summary: String,
}

/// The log's last full verification, as the system log recorded it
/// (`log.verified`), and what this report checked itself.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub last: Option<VerificationRun>,
    /// The latest signed checkpoint verifies with the log's key.
    pub signature_valid: bool,
    /// The checkpoint the last verification covered is a prefix of the
    /// latest signed one (a consistency proof from the log's stored
    /// hashes, checked); `None` without a verification to compare.
    pub consistent_with_verified: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerificationRun {
    pub at: String,
    /// `intact`, `damaged` or `error`.
    pub result: String,
    pub entries: Option<u64>,
    pub checkpoint_size: Option<u64>,
    pub by: Option<String>,
}

/// The `compliance` report (PCI DSS v4.0 requirement 10).
#[derive(Debug, Clone, Serialize)]
pub struct Compliance {
    /// Events of the log in the period.
    pub total: u64,
    /// The 10.2.1 event classes, in requirement order.
    pub classes: Vec<EventClass>,
    /// The 10.3 protection checks.
    pub protection: Verification,
    pub gaps: Gaps,
}

/// One PCI DSS 10.2.1 event class.
#[derive(Debug, Clone, Serialize)]
pub struct EventClass {
    /// Stable name, e.g. `authentication_failures`.
    pub id: &'static str,
    /// The PCI DSS requirement, e.g. `10.2.1.4`.
    pub requirement: &'static str,
    pub title: &'static str,
    /// The action globs counted, per log they were counted in.
    pub actions: Vec<LogActions>,
    pub count: u64,
    /// Of `count`, events with outcome `failure`.
    pub failures: u64,
    pub by_action: Vec<Count>,
    /// Newest first, at most [`crate::SAMPLES`].
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogActions {
    pub log: String,
    pub actions: Vec<&'static str>,
    pub count: u64,
}

/// Where the trail is silent.
#[derive(Debug, Clone, Serialize)]
pub struct Gaps {
    /// Hours of the period without any event.
    pub empty_hours: u64,
    /// Runs of consecutive empty hours, longest first (at most
    /// [`crate::TOP_GAPS`]).
    pub flatlines: Vec<Flatline>,
    /// Services (`source.service`) that sent events in the equally long
    /// window just before the period and none within it.
    pub missing_sources: Vec<Count>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Flatline {
    pub start: String,
    pub end: String,
    pub hours: u64,
}

/// The `access-review` report.
#[derive(Debug, Clone, Serialize)]
pub struct AccessReview {
    /// Days of the window in which rights must have been used.
    pub window_days: u64,
    pub users: Vec<UserAccess>,
    pub keys: Vec<KeyAccess>,
    /// Every finding, one sentence each.
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserAccess {
    pub id: String,
    pub name: String,
    pub role: String,
    pub tenant: Option<String>,
    pub disabled: bool,
    pub created_at: String,
    pub last_sign_in: Option<String>,
    /// Newest system-log event the user caused.
    pub last_activity: Option<String>,
    /// System-log events of the admin class the user caused in the window.
    pub admin_actions: u64,
    /// System-log reads of the trail the user made in the window.
    pub trail_reads: u64,
    /// Active (unrevoked) API keys the user owns.
    pub active_keys: u64,
    pub unused_rights: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyAccess {
    pub id: String,
    pub name: String,
    pub scope: String,
    pub tenant: Option<String>,
    /// Owner's user name, when a user owns the key.
    pub owner: Option<String>,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// Newest system-log event caused with the key (reads, exports, admin
    /// changes; ingest is not recorded per request).
    pub last_used: Option<String>,
    pub unused_rights: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `user` or `api_key`.
    pub subject: &'static str,
    pub id: String,
    pub name: String,
    pub finding: String,
}

/// The `reconciliation` report: the data runs of one named comparison
/// (diffs of data snapshots, key discovery, validation) started in the
/// period, read from `meta.db`, and the trend of their differences.
#[derive(Debug, Clone, Serialize)]
pub struct Reconciliation {
    /// The comparison: the `name` its runs were recorded under.
    pub name: String,
    /// Runs of the comparison started in the period.
    pub runs_total: u64,
    /// `success`, `differences`, `failure` → runs; every outcome is
    /// there, zero or not.
    pub by_outcome: BTreeMap<String, u64>,
    /// `diff`, `keys`, `validate` → runs (kinds that ran only).
    pub by_kind: BTreeMap<String, u64>,
    /// Sums over the runs of the period that carry each count.
    pub totals: RunTotals,
    /// Every run of the period, oldest first.
    pub runs: Vec<RunItem>,
    /// The runs that failed, oldest first, with their error.
    pub failures: Vec<RunFailure>,
    /// One point per run that ran to the end (not failed, not open),
    /// oldest first: the differences it found.
    pub trend: Vec<TrendPoint>,
    /// The newest run of the comparison before the period, if any: where
    /// the trend came from.
    pub previous: Option<RunItem>,
    /// More than [`crate::MAX_DATA_RUNS_READ`] runs of the comparison are
    /// stored: the oldest were not read.
    pub truncated: bool,
}

/// Counts summed over runs; a count no run carries is `null`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunTotals {
    pub added: Option<u64>,
    pub removed: Option<u64>,
    pub changed: Option<u64>,
    pub differences: Option<u64>,
}

/// One data run, with the counts its stored summary carries (`null` when
/// it carries none of that name).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunItem {
    /// The run's id in `meta.db` (ids grow with time).
    pub id: i64,
    /// `diff`, `keys` or `validate`.
    pub kind: String,
    /// `success`, `differences` or `failure`.
    pub outcome: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    /// Still running when the report was computed.
    pub open: bool,
    pub quality_score: Option<f64>,
    /// Rows read from the left (diff).
    pub left_rows: Option<u64>,
    /// Rows read from the right (diff).
    pub right_rows: Option<u64>,
    /// Rows read (keys, validate).
    pub rows: Option<u64>,
    pub added: Option<u64>,
    pub removed: Option<u64>,
    pub changed: Option<u64>,
    pub unchanged: Option<u64>,
    /// Keys found: the length of the summary's `keys` list (keys).
    pub keys_found: Option<u64>,
    /// Violations found (validate).
    pub violations: Option<u64>,
    /// `added + removed + changed` (diff), or `violations` (validate).
    pub differences: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Every number at the top level of the stored summary, as stored.
    pub metrics: BTreeMap<String, serde_json::Value>,
}

/// A failed run and its error.
#[derive(Debug, Clone, Serialize)]
pub struct RunFailure {
    pub id: i64,
    pub kind: String,
    pub started_at: String,
    pub error: String,
}

/// What one run found, for the trend.
#[derive(Debug, Clone, Serialize)]
pub struct TrendPoint {
    pub id: i64,
    pub started_at: String,
    pub kind: String,
    pub added: Option<u64>,
    pub removed: Option<u64>,
    pub changed: Option<u64>,
    pub differences: Option<u64>,
    pub keys_found: Option<u64>,
}
