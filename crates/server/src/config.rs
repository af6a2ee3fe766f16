//! The server's configuration: embedded defaults, then a TOML file, then
//! `SEALTRAIL_*` environment variables, then command-line flags, each
//! overriding the one before. Every key is documented in
//! `docs/server-config.md`; a test keeps that page and [`Config`] in step.
//!
//! Environment names are the key path in capitals joined by `_`, e.g.
//! `limits.max_body_bytes` is `SEALTRAIL_LIMITS_MAX_BODY_BYTES`; values are
//! read as TOML (`true`, `42`) and otherwise as strings. `SEALTRAIL_DATA`
//! is also accepted for `data_dir`, as the CLI reads it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything `sealtrail serve` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the logs and the metadata database live; created on first start.
    pub data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The log created on first start and used by `POST /api/v1/events`.
    pub default_log: String,
    pub logs: Logs,
    pub tiles: Tiles,
    pub limits: Limits,
    pub rate_limit: RateLimit,
    pub health: Health,
    pub index: Index,
    pub alerts: Alerts,
    pub http: Http,
    pub log: Log,
    pub integrity: Integrity,
    pub data: Data,
    pub postgres: Postgres,
    pub scheduler: SchedulerConfig,
    pub retention: Retention,
    pub compression: Compression,
    /// `[oidc]`: sign-in through an OpenID Provider (docs/users.md); absent,
    /// it is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc: Option<crate::oidc::OidcConfig>,
    pub web: Web,
    /// `[pii]`: PII protection (docs/pii.md).
    pub pii: Pii,
}

/// PII protection: where the master key is, and protected fields beside
/// those set with `sealtrail pii set` (both apply).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pii {
    /// A file holding the master key (64 hexadecimal digits), outside the
    /// data directory. Empty: none.
    pub master_key_file: String,
    /// An environment variable holding the master key. Empty: none.
    pub master_key_env: String,
    /// `[[pii.fields]]`: `log`, `field`, `mode` (`hmac` or `encrypt`) and,
    /// for `encrypt`, `subject` (default `actor.id`).
    pub fields: Vec<PiiField>,
}

/// One protected field of the configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiiField {
    pub log: String,
    pub field: String,
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl Pii {
    fn check(&self) -> Result<(), ConfigError> {
        if !self.master_key_file.is_empty() && !self.master_key_env.is_empty() {
            return Err(ConfigError(
                "pii: give master_key_file or master_key_env, not both".into(),
            ));
        }
        self.policies().map(|_| ())
    }

    /// The configured rules by log, checked.
    pub fn policies(&self) -> Result<std::collections::BTreeMap<String, sealtrail_pii::Policy>, ConfigError> {
        let mut out: std::collections::BTreeMap<String, sealtrail_pii::Policy> = Default::default();
        for (i, f) in self.fields.iter().enumerate() {
            let at = format!("pii.fields[{i}]");
            let rule = sealtrail_pii::Rule::parse(&f.field, &f.mode, f.subject.as_deref())
                .map_err(|e| ConfigError(format!("{at}: {e}")))?;
            out.entry(f.log.clone())
                .or_default()
                .add(rule, &at)
                .map_err(|e| ConfigError(format!("{at}: {e}")))?;
        }
        Ok(out)
    }

    /// The master key, if one is configured: read now, so a missing or
    /// malformed key stops the start with the error.
    pub fn master_key(&self, data_dir: &Path) -> Result<Option<sealtrail_pii::MasterKey>, String> {
        if !self.master_key_file.is_empty() {
            return sealtrail_pii::MasterKey::from_file(Path::new(&self.master_key_file), Some(data_dir))
                .map(Some)
                .map_err(|e| e.to_string());
        }
        if !self.master_key_env.is_empty() {
            return sealtrail_pii::MasterKey::from_env(&self.master_key_env)
                .map(Some)
                .map_err(|e| e.to_string());
        }
        Ok(None)
    }
}

/// The dashboard: sign-in and sessions (docs/users.md) and the live
/// stream (docs/dashboard.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Web {
    /// A session unused this many seconds ends.
    pub session_idle_secs: u64,
    /// A session ends this many seconds after sign-in, used or not.
    pub session_absolute_secs: u64,
    /// Sessions one user may hold; signing in once more ends their oldest.
    pub max_sessions_per_user: usize,
    /// Sessions of everyone together; beyond it the oldest ends.
    pub max_sessions: usize,
    /// Mark the session cookie `Secure` (send it over HTTPS only): set it
    /// when the server is reached through a TLS-terminating proxy.
    pub secure_cookies: bool,
    /// Networks (CIDR; a bare address is that address) of the
    /// TLS-terminating proxies in front of the server. A request from one
    /// of them with `X-Forwarded-Proto: https` gets `Secure` cookies even
    /// without `secure_cookies`; the header is ignored from anyone else,
    /// who could send it to say anything.
    pub trusted_proxies: Vec<sealtrail_alert::net::Network>,
    /// Failed sign-ins in a row that lock an account; 0 never locks.
    pub max_failed_sign_ins: u32,
    /// How long a locked account stays locked, in seconds.
    pub lockout_secs: u64,
    /// Sign-in attempts per minute from one client address; 0 turns it off.
    pub sign_ins_per_ip_per_minute: u32,
    /// Sign-in attempts per minute for one user name; 0 turns it off.
    pub sign_ins_per_user_per_minute: u32,
    /// Password hashes computed at once (each takes 19 MiB and tens of
    /// milliseconds); further sign-ins wait their turn.
    pub max_concurrent_hashes: usize,
    /// Most live-stream clients (`GET /stream/events`) connected at once;
    /// one more is answered 503 with `Retry-After`.
    pub max_stream_clients: usize,
    /// Seconds between keep-alive comments on an idle live stream.
    pub stream_keepalive_s: u64,
    /// Most events a reconnecting live stream replays from the ledger
    /// (those after its `Last-Event-ID`); older ones are skipped and the
    /// client is told how many with a `gap` event.
    pub stream_replay_max: u64,
    /// Batches of new events each log's live stream keeps for clients
    /// that fall behind; a client further behind catches up from the
    /// ledger instead.
    pub stream_buffer_batches: usize,
}

impl Default for Web {
    fn default() -> Self {
        Self {
            session_idle_secs: 3600,
            session_absolute_secs: 12 * 3600,
            max_sessions_per_user: 10,
            max_sessions: 10_000,
            secure_cookies: false,
            trusted_proxies: Vec::new(),
            max_failed_sign_ins: 5,
            lockout_secs: 900,
            sign_ins_per_ip_per_minute: 30,
            sign_ins_per_user_per_minute: 10,
            max_concurrent_hashes: 2,
            max_stream_clients: 64,
            stream_keepalive_s: 15,
            stream_replay_max: 100_000,
            stream_buffer_batches: 1_024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Logs {
    /// `POST /api/v1/events` stores each event in the log named by its
    /// `tenant` (created on first use); events without one go to
    /// `default_log`.
    pub per_tenant: bool,
    /// Most logs the data directory may hold, the system log and
    /// `default_log` included; creating one more is refused.
    pub max_logs: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tiles {
    /// Serve `/logs/{log}/checkpoint` and the hash tiles, which hold only
    /// hashes, without an API key. When false a key with read scope is
    /// needed. Entry bundles always need a read key entitled to every
    /// tenant of the log.
    pub public: bool,
    /// `Cache-Control` max-age of the checkpoint, in seconds.
    pub checkpoint_max_age: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body; larger requests get 413.
    pub max_body_bytes: usize,
    /// Most events in one batch request.
    pub max_batch_events: usize,
    /// Largest `limit` a query page may ask for.
    pub max_page: usize,
    /// Single events waiting for a log's ingest workers; when that many
    /// wait, more get 503 with `Retry-After`.
    pub max_single_queue: usize,
    /// Longest request target (path and query string), in bytes; longer
    /// requests get 414.
    pub max_uri_bytes: usize,
    /// Longest value of one query parameter, in bytes once decoded;
    /// longer ones get 400 `parameter-too-long`.
    pub max_param_bytes: usize,
    /// Reports (`GET /api/v1/logs/{log}/reports/{type}`) computed at once;
    /// one more is answered 503 with `Retry-After`.
    pub max_reports: usize,
}

/// The HTTP transport: how long a client may take, and how many may be
/// served at once. Every wait on a client is bounded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    /// Longest time, in milliseconds, from the first byte of a request to
    /// the end of its header; a slower client is disconnected.
    pub header_timeout_ms: u64,
    /// Longest time, in milliseconds, to receive a whole request body;
    /// slower bodies get 408.
    pub body_timeout_ms: u64,
    /// Longest time, in milliseconds, a connection may stay open with no
    /// request and nothing sent or received.
    pub idle_timeout_ms: u64,
    /// Longest time, in milliseconds, a client may take no part of an
    /// answer (an export, say) while more waits to be sent.
    pub send_timeout_ms: u64,
    /// Most connections open at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Most requests being handled at once; one more is answered 503 with
    /// `Retry-After` (`/healthz` is always answered).
    pub max_in_flight: usize,
    /// Longest time, in milliseconds, a stopping server waits for requests
    /// in flight before it drops their connections.
    pub shutdown_timeout_ms: u64,
}

/// What the server logs, and how (on standard error).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// `text` (for people) or `json` (one JSON object a line).
    pub format: LogFormat,
    /// Least severe level written (`error`, `warn`, `info`, `debug`,
    /// `trace`), or a filter such as `info,sealtrail_server=debug`;
    /// `RUST_LOG`, when set, takes its place.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second per API key; 0 turns the limit off.
    pub per_key_per_second: u32,
    /// Requests a key may make at once above the sustained rate.
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Health {
    /// Disk use of the data directory's file system, in percent, at which
    /// health turns `warning`.
    pub disk_warning_percent: f64,
    /// …and `critical`: the server stops accepting events (503) and
    /// `/readyz` fails, so an acknowledged event always has room.
    pub disk_critical_percent: f64,
    pub memory_warning_percent: f64,
    pub memory_critical_percent: f64,
    pub cpu_warning_percent: f64,
    pub cpu_critical_percent: f64,
    /// Free bytes the data directory's file system must keep beyond every
    /// write: a write is refused (503, `Retry-After`) when free space is
    /// below this plus the size of its request body. Checked against the
    /// file system (statvfs) before each write, not against a sample.
    pub disk_reserve_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Integrity {
    /// How often, in milliseconds, the scrub re-reads entries appended since
    /// its last look and checks them against the stored hashes; it also
    /// retries logs stopped by a full disk at this interval. 0 turns the
    /// scrub and the automatic recovery off.
    pub scrub_interval_ms: u64,
    /// The scrub re-verifies every open log whole once per this many
    /// seconds, reading a share of it at each interval so that it never
    /// competes with ingest. 0 turns the whole-log pass off.
    pub scrub_period_s: u64,
}

/// The job scheduler (docs/scheduler.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// How often, in milliseconds, the scheduler looks for due jobs. 0
    /// turns it off in this process (jobs can still be managed; another
    /// process on the data directory runs them).
    pub tick_ms: u64,
    /// A job's lease, in seconds: renewed every tick while it runs; a
    /// process that stops renewing it frees the job after this long.
    pub lease_s: u64,
    /// Most jobs this process runs at once.
    pub max_running: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            tick_ms: 1_000,
            lease_s: 60,
            max_running: 4,
        }
    }
}

/// Compression of sealed bundles (docs/ledger-format.md, "pack"): how
/// often each open log packs the whole bundles its checkpoint covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Compression {
    /// Seconds between compaction runs; 0 turns compression off (entries
    /// stay uncompressed; packs already written are still read).
    pub interval_s: u64,
    /// CPUs the machine must have left idle for a run to pack: while it
    /// is busier, the run waits and the backlog grows (capped at half the
    /// machine's CPUs; 0 never waits).
    pub idle_cpus: f64,
    /// Entries waiting to be packed at which a log packs however busy the
    /// machine is.
    pub max_deferred_entries: u64,
}

impl Default for Compression {
    fn default() -> Self {
        let pace = sealtrail_ledger::Pace::default();
        Self {
            interval_s: 600,
            idle_cpus: pace.idle_cpus,
            max_deferred_entries: pace.max_deferred,
        }
    }
}

/// Retention (docs/retention.md): per log, how old or how large it may
/// grow before its oldest entries are pruned, applied every `interval_s`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Seconds between retention runs; 0 turns them off.
    pub interval_s: u64,
    /// Log name → its policy (`[retention.logs.<name>]`).
    pub logs: BTreeMap<String, RetentionPolicy>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            interval_s: 3600,
            logs: BTreeMap::new(),
        }
    }
}

/// One log's retention policy, as written in the file; checked when the
/// configuration is loaded ([`RetentionPolicy::policy`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Prune entries received longer ago than this (`365d`, `12h`, `52w`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older_than: Option<String>,
    /// Prune the oldest entries until the rest take at most this many
    /// bytes of entries (`100GiB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<String>,
}

impl RetentionPolicy {
    /// The policy, or what is wrong with it, naming the key.
    pub fn policy(&self, log: &str) -> Result<sealtrail_trail::retention::Policy, ConfigError> {
        sealtrail_trail::retention::Policy::parse(self.older_than.as_deref(), self.max_size.as_deref())
            .map_err(|(key, e)| ConfigError(format!("retention.logs.{log}.{key}: {e}")))?
            .ok_or_else(|| ConfigError(format!("retention.logs.{log}: give older_than, max_size or both")))
    }
}

/// Data reconciliation runs (`/api/v1/data/runs`, docs/api.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Data {
    /// Largest upload of one run request, all parts together; a larger
    /// one gets 413 naming the part that crossed it.
    pub max_upload_bytes: u64,
    /// Bytes one run may hold in memory (rows, indexes, spill buffers);
    /// beyond, it spills to temporary files in the run's directory.
    pub memory_budget: usize,
    /// Runs executing at once.
    pub max_running: usize,
    /// Runs waiting for one of those places; one more is refused with 503
    /// and `Retry-After`.
    pub max_queued: usize,
    /// Runs whose directories (uploads, changes, reports) are kept; the
    /// oldest are deleted beyond this. Their history stays.
    pub keep_runs: usize,
    /// Sources a JSON run request may name: name → address (a file path
    /// on the server or a PostgreSQL URL, docs/data.md). Clients never
    /// give addresses themselves.
    pub sources: BTreeMap<String, String>,
}

impl Default for Data {
    fn default() -> Self {
        Self {
            max_upload_bytes: 1 << 30,
            memory_budget: 256 << 20,
            max_running: 1,
            max_queued: 8,
            keep_runs: 100,
            sources: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Index {
    /// Longest time, in milliseconds, between an acknowledged event and its
    /// being searchable.
    pub visibility_ms: u64,
    /// Idempotency keys of a log held in memory until its query index
    /// commits them (they wait there while a failed index is rebuilt); at
    /// this many, appends with a new key answer 503
    /// `idempotency-unavailable`.
    pub max_unindexed_keys: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Alerts {
    /// How often, in milliseconds, rules look at new events and at the
    /// clock (a flatline fires on a tick, not on an event).
    pub interval_ms: u64,
    /// First retry delay of a failed notification, in milliseconds; it
    /// doubles with every attempt, with jitter.
    pub retry_base_ms: u64,
    /// Longest delay between two attempts, in milliseconds.
    pub retry_max_ms: u64,
    /// Attempts before a notification becomes a dead letter.
    pub max_attempts: u32,
    /// Rules defined here (docs/alerts.md) are written to the metadata
    /// database at every start, replacing API changes to the same names.
    pub rules: Vec<sealtrail_alert::RuleSpec>,
    /// Channels, likewise.
    pub channels: Vec<sealtrail_alert::ChannelSpec>,
    /// Networks (CIDR, e.g. `10.20.0.0/16`) webhook, Slack, Discord and
    /// Teams channels may reach although they are loopback, private,
    /// link-local or otherwise refused (docs/alert-channels.md).
    pub allowed_networks: Vec<sealtrail_alert::net::Network>,
}

impl Alerts {
    /// The destination policy of HTTP notifications.
    pub fn destinations(&self) -> sealtrail_alert::net::Destinations {
        sealtrail_alert::net::Destinations::new(self.allowed_networks.clone())
    }
}

impl Default for Alerts {
    fn default() -> Self {
        Self {
            interval_ms: 250,
            retry_base_ms: 1_000,
            retry_max_ms: 3_600_000,
            max_attempts: 20,
            rules: Vec::new(),
            channels: Vec::new(),
            allowed_networks: Vec::new(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./sealtrail-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            default_log: "default".into(),
            logs: Logs::default(),
            tiles: Tiles::default(),
            limits: Limits::default(),
            rate_limit: RateLimit::default(),
            health: Health::default(),
            index: Index::default(),
            alerts: Alerts::default(),
            http: Http::default(),
            log: Log::default(),
            integrity: Integrity::default(),
            data: Data::default(),
            postgres: Postgres::default(),
            scheduler: SchedulerConfig::default(),
            retention: Retention::default(),
            compression: Compression::default(),
            oidc: None,
            web: Web::default(),
            pii: Pii::default(),
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Self {
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            send_timeout_ms: 30_000,
            max_connections: 1_024,
            max_in_flight: 512,
            shutdown_timeout_ms: 10_000,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[allow(clippy::derivable_impls)] // kept beside its siblings: every default in one place
impl Default for Logs {
    fn default() -> Self {
        Self {
            per_tenant: false,
            max_logs: 1_000,
        }
    }
}

impl Default for Tiles {
    fn default() -> Self {
        Self {
            public: true,
            checkpoint_max_age: 2,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 << 20,
            max_batch_events: 10_000,
            max_page: 1_000,
            max_single_queue: 10_000,
            max_uri_bytes: 16 << 10,
            max_param_bytes: 4 << 10,
            max_reports: 1,
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_key_per_second: 0,
            burst: 1_000,
        }
    }
}

impl Default for Health {
    fn default() -> Self {
        Self {
            disk_warning_percent: 85.0,
            disk_critical_percent: 95.0,
            memory_warning_percent: 85.0,
            memory_critical_percent: 95.0,
            cpu_warning_percent: 85.0,
            cpu_critical_percent: 98.0,
            disk_reserve_bytes: 64 << 20,
        }
    }
}

impl Default for Integrity {
    fn default() -> Self {
        Self {
            scrub_interval_ms: 1_000,
            scrub_period_s: 86_400,
        }
    }
}

impl Default for Index {
    fn default() -> Self {
        Self {
            visibility_ms: 500,
            max_unindexed_keys: sealtrail_trail::TrailOptions::default().max_unindexed_keys,
        }
    }
}

/// A configuration that could not be read; the message names the file,
/// the variable or the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Defaults, overridden by `file` (if given) and then by the
    /// `SEALTRAIL_*` variables among `env`.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("reading {}: {e}", path.display())))?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        let known = key_paths();
        for (name, value) in env {
            let Some(key) = env_key(&name, &known) else { continue };
            set(&mut table, &key, parse_env_value(&value));
        }
        // The TOML decoder names a missing key without its table.
        if let Some(toml::Value::Table(oidc)) = table.get("oidc") {
            if let Some(key) = ["issuer_url", "client_id", "redirect_url"]
                .into_iter()
                .find(|k| !oidc.contains_key(*k))
            {
                return Err(ConfigError(format!("oidc.{key}: required when [oidc] is present")));
            }
        }
        let config: Config = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
            let source = file.map_or("configuration".to_string(), |p| p.display().to_string());
            ConfigError(format!("{source}: {}", e.message()))
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        sealtrail_ledger::datadir::check_log_name(&self.default_log)
            .map_err(|e| ConfigError(format!("default_log: {e}")))?;
        if self.logs.max_logs < 2 {
            return Err(ConfigError(
                "logs.max_logs: must be at least 2 (the system log and default_log)".into(),
            ));
        }
        if self.limits.max_body_bytes < 1024 {
            return Err(ConfigError("limits.max_body_bytes: must be at least 1024".into()));
        }
        if self.limits.max_batch_events == 0 || self.limits.max_page == 0 {
            return Err(ConfigError(
                "limits.max_batch_events and limits.max_page must be at least 1".into(),
            ));
        }
        if self.limits.max_reports == 0 {
            return Err(ConfigError("limits.max_reports: must be at least 1".into()));
        }
        if self.limits.max_single_queue == 0 {
            return Err(ConfigError("limits.max_single_queue: must be at least 1".into()));
        }
        let h = &self.http;
        for (key, value) in [
            ("header_timeout_ms", h.header_timeout_ms),
            ("body_timeout_ms", h.body_timeout_ms),
            ("idle_timeout_ms", h.idle_timeout_ms),
            ("send_timeout_ms", h.send_timeout_ms),
            ("max_connections", h.max_connections as u64),
            ("max_in_flight", h.max_in_flight as u64),
        ] {
            if value == 0 {
                return Err(ConfigError(format!("http.{key}: must be at least 1")));
            }
        }
        if self.log.level.trim().is_empty() {
            return Err(ConfigError("log.level: must name a level such as `info`".into()));
        }
        if self.limits.max_uri_bytes < 256 || self.limits.max_param_bytes == 0 {
            return Err(ConfigError(
                "limits.max_uri_bytes must be at least 256 and limits.max_param_bytes at least 1".into(),
            ));
        }
        let a = &self.alerts;
        if a.interval_ms == 0 || a.retry_base_ms == 0 || a.max_attempts == 0 || a.retry_max_ms < a.retry_base_ms {
            return Err(ConfigError(
                "alerts: interval_ms, retry_base_ms and max_attempts must be at least 1, and retry_max_ms at least retry_base_ms".into(),
            ));
        }
        for (i, rule) in a.rules.iter().enumerate() {
            if let Some(p) = rule.problems().first() {
                return Err(ConfigError(format!("alerts.rules[{i}].{p}")));
            }
        }
        let destinations = a.destinations();
        for (i, channel) in a.channels.iter().enumerate() {
            let mut problems = channel.problems();
            problems.extend(channel.destination_problems(&destinations));
            if let Some(p) = problems.first() {
                return Err(ConfigError(format!("alerts.channels[{i}].{p}")));
            }
        }
        let d = &self.data;
        if d.max_running == 0 || d.keep_runs == 0 || d.max_upload_bytes == 0 || d.memory_budget < (1 << 20) {
            return Err(ConfigError(
                "data: max_running, keep_runs and max_upload_bytes must be at least 1, and memory_budget at least 1048576".into(),
            ));
        }
        if let Some(name) = d.sources.keys().find(|n| n.is_empty() || n.len() > 128) {
            return Err(ConfigError(format!(
                "data.sources: name {name:?} must be 1 to 128 bytes"
            )));
        }
        self.postgres.check()?;
        self.pii.check()?;
        for (log, policy) in &self.retention.logs {
            sealtrail_ledger::datadir::check_log_name(log)
                .map_err(|e| ConfigError(format!("retention.logs.{log}: {e}")))?;
            policy.policy(log)?;
        }
        if let Some(p) = self.oidc.as_ref().and_then(|o| o.problems().into_iter().next()) {
            return Err(ConfigError(format!("oidc.{p}")));
        }
        let w = &self.web;
        for (key, value) in [
            ("session_idle_secs", w.session_idle_secs),
            ("session_absolute_secs", w.session_absolute_secs),
            ("max_sessions_per_user", w.max_sessions_per_user as u64),
            ("max_sessions", w.max_sessions as u64),
            ("lockout_secs", w.lockout_secs),
            ("max_concurrent_hashes", w.max_concurrent_hashes as u64),
            ("stream_keepalive_s", w.stream_keepalive_s),
            ("stream_buffer_batches", w.stream_buffer_batches as u64),
        ] {
            if value == 0 {
                return Err(ConfigError(format!("web.{key}: must be at least 1")));
            }
        }
        let c = &self.compression;
        if !(c.idle_cpus.is_finite() && c.idle_cpus >= 0.0) {
            return Err(ConfigError(format!(
                "compression.idle_cpus: {} must be a number of CPUs, 0 or more",
                c.idle_cpus
            )));
        }
        let h = &self.health;
        for (name, warn, crit) in [
            ("disk", h.disk_warning_percent, h.disk_critical_percent),
            ("memory", h.memory_warning_percent, h.memory_critical_percent),
            ("cpu", h.cpu_warning_percent, h.cpu_critical_percent),
        ] {
            if !(0.0..=100.0).contains(&warn) || !(0.0..=100.0).contains(&crit) || warn > crit {
                return Err(ConfigError(format!(
                    "health.{name}_warning_percent and health.{name}_critical_percent: need 0 ≤ warning ≤ critical ≤ 100"
                )));
            }
        }
        Ok(())
    }
}

/// Every key path of [`Config`], dotted, e.g. `limits.max_body_bytes`.
pub fn key_paths() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(toml::Value::Table(t)) = toml::Value::try_from(Config::default()) {
        walk(&t, "", &mut out);
    }
    // `[oidc]` is absent by default; its keys are listed from an example
    // with every optional key given.
    let mut oidc = crate::oidc::OidcConfig::new("https://id.example", "id", "https://a.example/cb");
    oidc.client_secret = Some(String::new());
    oidc.tenant_claim = Some(String::new());
    oidc.default_role = Some(String::new());
    if let Ok(toml::Value::Table(t)) = toml::Value::try_from(oidc) {
        walk(&t, "oidc", &mut out);
    }
    out
}

fn walk(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => walk(t, &path, out),
            _ => out.push(path),
        }
    }
}

fn env_key(name: &str, known: &[String]) -> Option<String> {
    if name == "SEALTRAIL_DATA" {
        return Some("data_dir".into());
    }
    let rest = name.strip_prefix("SEALTRAIL_")?;
    let by_env: BTreeMap<String, &String> = known
        .iter()
        .map(|k| (k.replace('.', "_").to_ascii_uppercase(), k))
        .collect();
    by_env.get(rest).map(|k| (*k).clone())
}

fn parse_env_value(text: &str) -> toml::Value {
    // "x = <text>" parses only if the text is a TOML value; otherwise it is
    // a bare string such as a path or an address.
    match format!("x = {text}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("x").unwrap_or_else(|| toml::Value::String(text.into())),
        Err(_) => toml::Value::String(text.into()),
    }
}

fn set(table: &mut toml::Table, path: &str, value: toml::Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut t = table;
    for p in parts {
        let entry = t.entry(p).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else { return };
        t = next;
    }
    t.insert(last.into(), value);
}

/// PostgreSQL databases followed continuously (docs/postgresql.md,
/// "Following from the server").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Postgres {
    /// `[[postgres.sources]]`: each drained into its log by a thread of
    /// its own.
    pub sources: Vec<PgSource>,
}

/// One database with capture installed (`sealtrail pg install`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgSource {
    /// Names the source in health, metrics and the server's log.
    pub name: String,
    /// A `postgresql://` URL or `key=value` connection string; its
    /// password is never logged or shown.
    pub dsn: String,
    /// The log its changes are appended to, created if missing.
    pub log: String,
    /// Wait between drains that found nothing, in milliseconds.
    #[serde(default = "PgSource::default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Outbox rows per read, append and delete.
    #[serde(default = "PgSource::default_batch")]
    pub batch: usize,
}

impl PgSource {
    fn default_poll_interval_ms() -> u64 {
        1_000
    }
    fn default_batch() -> usize {
        10_000
    }
}

impl Postgres {
    fn check(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let at = format!("postgres.sources[{i}]");
            if s.name.is_empty() || s.name.len() > 128 || s.name.chars().any(char::is_control) {
                return Err(ConfigError(format!(
                    "{at}.name: {:?} must be 1 to 128 bytes without control characters",
                    s.name
                )));
            }
            if !names.insert(s.name.as_str()) {
                return Err(ConfigError(format!(
                    "{at}.name: {:?} names another source too; names must be unique",
                    s.name
                )));
            }
            if s.dsn.trim().is_empty() {
                return Err(ConfigError(format!("{at}.dsn: must not be empty")));
            }
            sealtrail_ledger::datadir::check_log_name(&s.log).map_err(|e| ConfigError(format!("{at}.log: {e}")))?;
            if s.log == sealtrail_meta::SYSTEM_LOG {
                return Err(ConfigError(format!(
                    "{at}.log: the system log holds the server's own events; name another log"
                )));
            }
            if s.poll_interval_ms == 0 || s.batch == 0 {
                return Err(ConfigError(format!(
                    "{at}: poll_interval_ms and batch must be at least 1"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// The configuration a file holding `text` gives, without environment.
    fn load_text(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).expect("write the file");
        Config::load(Some(&path), [])
    }

    #[test]
    fn file_then_environment_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealtrail.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\n[tiles]\npublic = false\n[limits]\nmax_page = 50\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&path),
            env(&[
                ("SEALTRAIL_LIMITS_MAX_PAGE", "70"),
                ("SEALTRAIL_DATA", "/tmp/x y"),
                ("SEALTRAIL_BENCH_EVENTS", "5"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9000".parse().unwrap());
        assert!(!c.tiles.public);
        assert_eq!(c.limits.max_page, 70);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x y"));
        assert_eq!(c.limits.max_batch_events, Limits::default().max_batch_events);
    }

    #[test]
    fn mistakes_name_the_key() {
        let e = load_text("[limits]\nmax_pages = 5\n").unwrap_err().to_string();
        assert!(e.contains("max_pages"), "{e}");
        let e = Config::load(None, env(&[("SEALTRAIL_LISTEN", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen") || e.contains("socket address"), "{e}");
        let e = Config::load(None, env(&[("SEALTRAIL_DEFAULT_LOG", "Bad Name")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("default_log:"), "{e}");
    }

    #[test]
    fn compression_pacing_is_read_and_checked() {
        let c = load_text("[compression]\nidle_cpus = 0.5\nmax_deferred_entries = 65536\n").unwrap();
        assert_eq!(
            (c.compression.idle_cpus, c.compression.max_deferred_entries),
            (0.5, 65_536)
        );
        assert_eq!(c.compression.interval_s, 600);
        let e = load_text("[compression]\nidle_cpus = -1.0\n")
            .expect_err("negative")
            .to_string();
        assert!(
            e.starts_with("compression.idle_cpus: -1 must be a number of CPUs"),
            "{e}"
        );
        let e = load_text("[compression]\nidle_cpus = nan\n")
            .expect_err("NaN")
            .to_string();
        assert!(e.starts_with("compression.idle_cpus: NaN must be"), "{e}");
    }

    #[test]
    fn allowed_networks_come_from_a_toml_array_in_the_environment() {
        let c = Config::load(
            None,
            env(&[("SEALTRAIL_ALERTS_ALLOWED_NETWORKS", r#"["127.0.0.0/8", "fd00::/8"]"#)]),
        )
        .unwrap();
        let shown: Vec<String> = c.alerts.allowed_networks.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["127.0.0.0/8", "fd00::/8"]);
        assert!(Config::default().alerts.allowed_networks.is_empty());
        let e = Config::load(
            None,
            env(&[("SEALTRAIL_ALERTS_ALLOWED_NETWORKS", r#"["10.0.0.0/40"]"#)]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("prefix length must be 0 to 32"), "{e}");
        // A channel at a forbidden address in the file needs the network allowed.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[[alerts.channels]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\n",
        )
        .unwrap();
        let e = Config::load(Some(&path), []).unwrap_err().to_string();
        assert!(e.starts_with("alerts.channels[0].url: 127.0.0.1 is loopback"), "{e}");
        Config::load(
            Some(&path),
            env(&[("SEALTRAIL_ALERTS_ALLOWED_NETWORKS", r#"["127.0.0.1/32"]"#)]),
        )
        .unwrap();
    }

    #[test]
    fn transport_bounds_are_at_least_one() {
        for key in [
            "http.header_timeout_ms",
            "http.body_timeout_ms",
            "http.idle_timeout_ms",
            "http.send_timeout_ms",
            "http.max_connections",
            "http.max_in_flight",
            "limits.max_single_queue",
        ] {
            let var = format!("SEALTRAIL_{}", key.replace('.', "_").to_ascii_uppercase());
            let e = Config::load(None, env(&[(var.as_str(), "0")])).unwrap_err().to_string();
            assert!(e.starts_with(key), "{e}");
            Config::load(None, env(&[(var.as_str(), "1")])).unwrap();
        }
        let c = Config::load(
            None,
            env(&[("SEALTRAIL_LOG_FORMAT", "json"), ("SEALTRAIL_LOG_LEVEL", "debug")]),
        )
        .unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.log.level, "debug");
        let e = Config::load(None, env(&[("SEALTRAIL_LOG_FORMAT", "xml")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("xml") || e.contains("variant"), "{e}");
    }

    #[test]
    fn request_limits_have_floors() {
        let load = |uri: &str, param: &str| {
            Config::load(
                None,
                env(&[
                    ("SEALTRAIL_LIMITS_MAX_URI_BYTES", uri),
                    ("SEALTRAIL_LIMITS_MAX_PARAM_BYTES", param),
                ]),
            )
        };
        let c = load("256", "1").unwrap();
        assert_eq!((c.limits.max_uri_bytes, c.limits.max_param_bytes), (256, 1));
        for (uri, param) in [("255", "1"), ("256", "0")] {
            let e = load(uri, param).unwrap_err().to_string();
            assert!(e.contains("limits.max_uri_bytes"), "{e}");
        }
    }

    #[test]
    fn retention_policies_are_checked_naming_the_key() {
        let load = load_text;
        let c =
            load("[retention]\ninterval_s = 60\n[retention.logs.default]\nolder_than = \"30d\"\nmax_size = \"1GiB\"\n")
                .expect("a good policy");
        assert_eq!(c.retention.interval_s, 60);
        let p = c.retention.logs["default"].policy("default").expect("checked");
        assert_eq!(p.older_than, Some(std::time::Duration::from_secs(30 * 86_400)));
        assert_eq!(p.max_size, Some(1 << 30));
        for (text, want) in [
            (
                "[retention.logs.default]\nolder_than = \"30 days\"\n",
                "retention.logs.default.older_than: ",
            ),
            (
                "[retention.logs.default]\nmax_size = \"lots\"\n",
                "retention.logs.default.max_size: ",
            ),
            ("[retention.logs.default]\n", "retention.logs.default: give older_than"),
            ("[retention.logs.Bad]\nolder_than = \"1d\"\n", "retention.logs.Bad: "),
            ("[retention.logs.default]\nkeep = \"1d\"\n", "unknown field `keep`"),
        ] {
            let e = load(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn every_key_is_documented() {
        let doc = include_str!("../../../docs/server-config.md");
        for key in key_paths() {
            assert!(doc.contains(&format!("`{key}`")), "docs/server-config.md lacks `{key}`");
        }
    }

    #[test]
    fn max_logs_must_leave_room_for_the_system_and_default_logs() {
        let load = |v: &str| Config::load(None, env(&[("SEALTRAIL_LOGS_MAX_LOGS", v)]));
        assert_eq!(load("2").unwrap().logs.max_logs, 2);
        let e = load("1").unwrap_err().to_string();
        assert!(e.starts_with("logs.max_logs:"), "{e}");
    }
}

#[cfg(test)]
mod postgres_tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).expect("write the file");
        Config::load(Some(&path), [])
    }

    const SOURCE: &str =
        "[[postgres.sources]]\nname = \"shop\"\ndsn = \"postgresql://u:pw@db/shop\"\nlog = \"shop-db\"\n";

    #[test]
    fn sources_take_their_defaults() {
        let c = load(SOURCE).expect("a valid source");
        assert_eq!(
            c.postgres.sources,
            [PgSource {
                name: "shop".into(),
                dsn: "postgresql://u:pw@db/shop".into(),
                log: "shop-db".into(),
                poll_interval_ms: 1000,
                batch: 10_000,
            }]
        );
        let c = load(&format!("{SOURCE}poll_interval_ms = 5\nbatch = 7\n")).expect("a valid source");
        assert_eq!(
            (c.postgres.sources[0].poll_interval_ms, c.postgres.sources[0].batch),
            (5, 7)
        );
        assert!(Config::default().postgres.sources.is_empty());
    }

    #[test]
    fn bad_sources_are_refused_naming_the_key() {
        let twice = format!("{SOURCE}{}", SOURCE.replace("shop-db", "other"));
        for (text, start) in [
            (
                twice.as_str(),
                "postgres.sources[1].name: \"shop\" names another source",
            ),
            (
                &SOURCE.replace("postgresql://u:pw@db/shop", " "),
                "postgres.sources[0].dsn: must not be empty",
            ),
            (&SOURCE.replace("shop-db", "Shop DB"), "postgres.sources[0].log:"),
            (
                &SOURCE.replace("shop-db", "system"),
                "postgres.sources[0].log: the system log",
            ),
            (
                &SOURCE.replace("name = \"shop\"", "name = \"\""),
                "postgres.sources[0].name:",
            ),
            (
                &format!("{SOURCE}batch = 0\n"),
                "postgres.sources[0]: poll_interval_ms and batch",
            ),
        ] {
            let e = load(text).expect_err(text).to_string();
            assert!(e.starts_with(start), "{e}");
            assert!(!e.contains("pw@"), "{e}");
        }
        let e = load(&SOURCE.replace("log = \"shop-db\"\n", ""))
            .expect_err("no log")
            .to_string();
        assert!(e.contains("log"), "{e}");
        let e = load(&format!("{SOURCE}tables = []\n"))
            .expect_err("unknown key")
            .to_string();
        assert!(e.contains("tables"), "{e}");
    }
}

#[cfg(test)]
mod oidc_tests {
    use super::*;
    use crate::oidc::OidcConfig;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).expect("write the file");
        Config::load(Some(&path), env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    const OIDC: &str = "[oidc]\nissuer_url = \"https://id.example.com/realms/main\"\nclient_id = \"sealtrail\"\nredirect_url = \"https://audit.example.com/auth/oidc/callback\"\n";

    #[test]
    fn oidc_is_off_unless_configured_and_takes_its_defaults() {
        assert_eq!(load("", &[]).expect("empty file").oidc, None);
        let c = load(OIDC, &[("SEALTRAIL_OIDC_CLIENT_SECRET", "from-the-environment")]).expect("valid");
        let mut expected = OidcConfig::new(
            "https://id.example.com/realms/main",
            "sealtrail",
            "https://audit.example.com/auth/oidc/callback",
        );
        expected.client_secret = Some("from-the-environment".into());
        assert_eq!(c.oidc, Some(expected));
        let o = c.oidc.expect("configured");
        assert_eq!(o.scopes, ["openid", "profile", "email"]);
        assert_eq!(
            (o.role_claim.as_str(), o.timeout_ms, o.max_login_seconds),
            ("sealtrail_role", 10_000, 600)
        );
        let c = load(
            &format!("{OIDC}scopes = [\"openid\", \"groups\"]\nrole_claim = \"role\"\ntenant_claim = \"org\"\ndefault_role = \"viewer\"\ndisplay_name = \"Keycloak\"\n"),
            &[],
        )
        .expect("valid");
        let o = c.oidc.expect("configured");
        assert_eq!(
            (
                o.role_claim.as_str(),
                o.tenant_claim.as_deref(),
                o.default_role.as_deref(),
                o.display_name.as_str()
            ),
            ("role", Some("org"), Some("viewer"), "Keycloak")
        );
    }

    #[test]
    fn oidc_mistakes_name_the_key() {
        for (text, expected) in [
            (
                OIDC.replace("https://id.example.com/realms/main", "id.example.com"),
                "oidc.issuer_url: \"id.example.com\" is not a URL",
            ),
            (
                format!("{OIDC}default_role = \"root\"\n"),
                "oidc.default_role: \"root\" is not a role",
            ),
            (format!("{OIDC}timeout_ms = 0\n"), "oidc.timeout_ms: must be at least 1"),
            (
                format!("{OIDC}client_secret = \"\"\n"),
                "oidc.client_secret: must not be empty",
            ),
            (
                OIDC.replace("client_id = \"sealtrail\"\n", ""),
                "oidc.client_id: required when [oidc] is present",
            ),
        ] {
            let e = load(&text, &[]).expect_err(&text).to_string();
            assert!(e.starts_with(expected), "{e}");
        }
        let e = load(&format!("{OIDC}roles_claim = \"x\"\n"), &[])
            .expect_err("unknown key")
            .to_string();
        assert!(e.contains("roles_claim"), "{e}");
    }
}
