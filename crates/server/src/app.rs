//! The server's shared state: configuration, the open trails, the metadata
//! database, who is calling, and the system log every read is recorded in.
//!
//! Handlers run their work on tokio's blocking pool: ledger appends wait
//! for fsync and queries read mmapped files, neither of which may stall the
//! reactor. Single events go instead to their log's ingest workers
//! ([`crate::single`]), which store whatever is waiting as one group.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sealtrail_event::Timestamp;
use sealtrail_ledger::{DataDir, LedgerError, LogOptions};
use sealtrail_trail::{Trail, TrailError, TrailOptions};
use serde_json::{json, Value};

use crate::config::Config;
use crate::problem::Problem;
use crate::system::SystemMonitor;
use sealtrail_meta::{bounded_details, drain_outbox, system_event, ApiKey, Meta, Role, Scope, User, SYSTEM_LOG};

/// The live API keys by id, with the SHA-256 of each secret, so that a
/// request is authenticated without the database. Reloaded whole when the
/// database's version says something changed: checked every second off
/// the async threads ([`App::refresh_keys`]), so a key revoked from
/// another process (the CLI) stops working within a second, and at once
/// after a change made here.
#[derive(Default)]
struct KeyCache {
    /// The database version the keys were read at; None before the first
    /// read.
    version: Option<i64>,
    /// Counts reloads and clears: a key looked up on a miss is cached only
    /// if none happened meanwhile, so a revocation the reload saw is never
    /// undone by a lookup that started before it.
    generation: u64,
    by_id: HashMap<String, (ApiKey, [u8; 32])>,
}

/// `Retry-After` of a write refused for want of disk space, in seconds.
const RETRY_AFTER_FULL_DISK: u64 = 5;

/// Who made a request.
#[derive(Debug, Clone)]
pub enum Caller {
    Key(ApiKey),
    /// A person signed in through the dashboard (a browser session).
    User(SignedIn),
    /// No key: allowed only where the configuration makes a route public
    /// (the tiles).
    Anonymous,
}

/// A signed-in user and the session they came with.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: User,
    pub session_id: String,
}

impl Caller {
    pub fn key(&self) -> Option<&ApiKey> {
        match self {
            Caller::Key(k) => Some(k),
            _ => None,
        }
    }

    pub fn user(&self) -> Option<&User> {
        match self {
            Caller::User(s) => Some(&s.user),
            _ => None,
        }
    }

    /// The caller as a refusal names it: `API key K`, `user NAME`.
    pub fn describe(&self) -> String {
        match self {
            Caller::Key(k) => format!("API key {}", k.id),
            Caller::User(s) => format!("user {}", s.user.name),
            Caller::Anonymous => "an anonymous caller".into(),
        }
    }

    /// The `actor` of the system events this caller causes.
    pub fn actor(&self) -> Value {
        match self {
            Caller::Key(k) => {
                let mut actor = json!({"id": format!("key:{}", k.id), "type": "service"});
                // An unnamed key has no name: the schema refuses an empty one.
                if !k.name.is_empty() {
                    actor["name"] = json!(k.name);
                }
                actor
            }
            Caller::User(s) => json!({
                "id": format!("user:{}", s.user.id),
                "type": "user",
                "name": s.user.name,
                "roles": [s.user.role.as_str()],
            }),
            Caller::Anonymous => json!({"id": "anonymous", "type": "user"}),
        }
    }

    /// Refuse unless the caller may do what `scope` guards: a key of that
    /// scope (or admin), or a user whose role covers it. Admins may do
    /// everything; auditors and viewers read; nobody signed in ingests
    /// except an admin.
    pub fn require(&self, scope: Scope) -> Result<(), Problem> {
        match self {
            Caller::Key(k) if k.scope.allows(scope) => Ok(()),
            Caller::Key(k) => Err(Problem::forbidden(format!(
                "API key {} has scope {}; this needs scope {}",
                k.id,
                k.scope.as_str(),
                scope.as_str()
            ))),
            Caller::User(s) => {
                let role = s.user.role;
                let allowed = match role {
                    Role::Admin => true,
                    Role::Auditor | Role::Viewer => scope == Scope::Read,
                    Role::Ingest => false,
                };
                if allowed {
                    Ok(())
                } else {
                    Err(Problem::forbidden(format!(
                        "user {} has role {}; this needs {}",
                        s.user.name,
                        role.as_str(),
                        role_for(scope)
                    )))
                }
            }
            Caller::Anonymous => Err(Problem::unauthorized(
                "no API key: send Authorization: Bearer <key> (create one with `sealtrail keys create`)",
            )),
        }
    }

    /// Refuse unless the caller may read the system log (who read and
    /// changed what): admin keys, admins and auditors.
    pub fn require_system_read(&self) -> Result<(), Problem> {
        match self {
            Caller::User(s) if s.user.role == Role::Auditor => Ok(()),
            _ => self.require(Scope::Admin),
        }
    }

    /// Whether the caller sees fields encrypted for PII protection in
    /// clear (docs/pii.md): keys granted the `pii` permission, and users
    /// whose role is admin or auditor. Everyone else sees them as stored.
    pub fn sees_pii(&self) -> bool {
        match self {
            Caller::Key(k) => k.pii,
            Caller::User(s) => matches!(s.user.role, Role::Admin | Role::Auditor),
            Caller::Anonymous => false,
        }
    }

    /// The tenant a key or user is restricted to, if any.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Caller::Key(k) => k.tenant.as_deref(),
            Caller::User(s) => s.user.tenant.as_deref(),
            Caller::Anonymous => None,
        }
    }

    /// Refuse a caller restricted to a tenant what spans every tenant;
    /// `why` says what does (`alerting is configured for the whole server`).
    pub fn require_no_tenant(&self, why: &str) -> Result<(), Problem> {
        match self.tenant() {
            Some(t) => Err(Problem::forbidden(format!(
                "{} is restricted to tenant {t:?}; {why}",
                self.describe()
            ))),
            None => Ok(()),
        }
    }
}

/// PII protection of every log: the vault if a master key is configured;
/// refuse to start when the key is wrong, or when fields are protected
/// without one.
fn open_pii(config: &Config, meta: &Meta, data_dir: &std::path::Path) -> Result<crate::pii::LogProtection, String> {
    let master = config.pii.master_key(data_dir)?;
    if master.is_none() {
        let mut logs: Vec<String> = meta
            .pii_fields()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|f| f.log)
            .collect();
        logs.extend(config.pii.fields.iter().map(|f| f.log.clone()));
        logs.sort();
        logs.dedup();
        if !logs.is_empty() {
            return Err(format!(
                "log(s) {} protect PII fields but no master key is configured: set pii.master_key_file or pii.master_key_env (docs/pii.md)",
                logs.join(", ")
            ));
        }
    }
    let configured = config.pii.policies().map_err(|e| e.to_string())?;
    crate::pii::LogProtection::open(meta, configured, master).map_err(|e| e.to_string())
}

/// The roles that grant what `scope` guards, for refusals.
fn role_for(scope: Scope) -> &'static str {
    match scope {
        Scope::Read => "role viewer, auditor or admin",
        _ => "role admin",
    }
}

pub struct App {
    pub config: Config,
    pub data: DataDir,
    pub meta: Meta,
    trails: RwLock<HashMap<String, Arc<Trail>>>,
    /// Each log's size when this process opened it (0 when it created it):
    /// where alert rules start on a log they have never seen.
    opened_sizes: Mutex<HashMap<String, u64>>,
    /// Held while a log is opened or created, so two requests never open
    /// the same log twice (the ledger's lock file would refuse the second).
    opening: Mutex<()>,
    keys: RwLock<KeyCache>,
    /// When each key was last used, waiting to be written to `meta.db`.
    pub key_uses: crate::key_use::KeyUses,
    /// The single-event ingest workers of each log.
    pub singles: crate::single::Singles,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    pub system: SystemMonitor,
    /// The scrub and full-disk recovery thread and what it reports.
    pub integrity: crate::integrity::Integrity,
    /// The retention thread of `[retention]` and its failures.
    pub retention: crate::periodic::Periodic,
    /// The compaction thread of `[compression]` and its failures.
    pub compaction: crate::periodic::Periodic,
    shutting_down: AtomicBool,
    pub started: Instant,
    /// Data reconciliation runs queued and running.
    pub data_runs: Arc<crate::api::data::DataRuns>,
    /// The followers of `[[postgres.sources]]`.
    pub pg_follow: crate::pg_follow::Followers,
    /// Sign-in rate limits and the bound on password hashing.
    pub sign_in: crate::web::auth::Guard,
    /// Sign-in through the OpenID Provider of `[oidc]`, if any.
    pub provider_sign_in: crate::web::provider::ProviderSignIn,
    /// Each log's live feed of new events, for the dashboard's stream.
    pub feeds: Arc<crate::feed::Feeds>,
    /// The last full verification of each log, started from the dashboard.
    pub verifications: crate::web::verification::Verifications,
    /// PII protection's keys, when a master key is configured.
    pub pii: Option<Arc<sealtrail_pii::Vault>>,
    /// Each log's PII protection as it is now, over `pii`.
    pub protection: Arc<crate::pii::LogProtection>,
    /// The job types and the scheduler thread.
    pub jobs: crate::jobs::Jobs,
    /// Reports being computed on demand, at most `limits.max_reports`.
    pub reports: crate::api::reports::Reports,
}

impl App {
    /// Open the data directory (creating it, the default log and the system
    /// log on first start) and the metadata database.
    pub fn open(config: Config) -> Result<Arc<App>, String> {
        let data = DataDir::new(config.data_dir.clone());
        std::fs::create_dir_all(data.root()).map_err(|e| format!("creating {}: {e}", data.root().display()))?;
        let meta = Meta::open(data.root()).map_err(|e| e.to_string())?;
        let limiter = NonZeroU32::new(config.rate_limit.per_key_per_second).map(|rate| {
            let burst = NonZeroU32::new(config.rate_limit.burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        let system = SystemMonitor::new(data.root(), &config.health);
        let singles = crate::single::Singles::new(config.limits.max_single_queue);
        let data_runs = Arc::new(crate::api::data::DataRuns::open(&config, &meta)?);
        let pg_follow = crate::pg_follow::Followers::new(&config.postgres);
        let sign_in = crate::web::auth::Guard::new(&config.web);
        let provider_sign_in = crate::web::provider::ProviderSignIn::new(&config);
        let feeds = Arc::new(crate::feed::Feeds::new(config.web.stream_buffer_batches));
        let protection = Arc::new(open_pii(&config, &meta, data.root())?);
        let pii = protection.vault().cloned();
        let jobs = crate::jobs::Jobs::new(&config, data_runs.pool().clone());
        let reports = crate::api::reports::Reports::new(config.limits.max_reports);
        let integrity = crate::integrity::Integrity::new(&config.integrity);
        let app = Arc::new(App {
            pii,
            protection,
            sign_in,
            provider_sign_in,
            config,
            data,
            meta,
            trails: RwLock::new(HashMap::new()),
            opened_sizes: Mutex::new(HashMap::new()),
            opening: Mutex::new(()),
            keys: RwLock::new(KeyCache::default()),
            key_uses: crate::key_use::KeyUses::new(crate::key_use::MAX_NOTED_KEYS),
            singles,
            limiter,
            system,
            integrity,
            retention: Default::default(),
            compaction: Default::default(),
            shutting_down: AtomicBool::new(false),
            started: Instant::now(),
            data_runs,
            pg_follow,
            feeds,
            verifications: Default::default(),
            reports,
            jobs,
        });
        for name in [app.config.default_log.clone(), SYSTEM_LOG.to_string()] {
            app.open_log(&name).map_err(|e| match e {
                OpenError::Locked { .. } => format!(
                    "the data directory {} is in use: {e}; stop that process, or give this one another data directory",
                    app.data.root().display()
                ),
                other => other.to_string(),
            })?;
        }
        sealtrail_meta::alerts::apply_config(
            &app.meta,
            &app.config.alerts.channels,
            &app.config.alerts.rules,
            &app.config.alerts.destinations(),
        )
        .map_err(|e| format!("applying the config file's alert rules and channels: {e}"))?;
        let guarded: Arc<dyn crate::integrity::GuardedLogs> = app.clone();
        app.integrity
            .start(Arc::downgrade(&guarded))
            .map_err(|e| format!("starting the integrity scrub: {e}"))?;
        crate::retention::start(&app).map_err(|e| format!("starting retention: {e}"))?;
        crate::compaction::start(&app).map_err(|e| format!("starting compaction: {e}"))?;
        Ok(app)
    }

    pub fn trail_options(&self) -> TrailOptions {
        TrailOptions {
            log: LogOptions::default(),
            visibility: Duration::from_millis(self.config.index.visibility_ms.max(1)),
            max_unindexed_keys: self.config.index.max_unindexed_keys.max(1),
            ..TrailOptions::default()
        }
    }

    /// The PII protection of log `name` now: the rules of `meta.db` and of
    /// the configuration file together, over the vault. Fields protected
    /// with no master key configured are an error: nothing is stored in
    /// clear that was meant to be protected.
    pub fn log_pii(&self, name: &str) -> Result<Option<Arc<sealtrail_pii::LogPii>>, sealtrail_pii::PiiError> {
        use sealtrail_trail::PiiSource as _;
        self.protection.current(name)
    }

    /// The trail of log `name` if it is open now (no file is touched).
    pub fn open_trail(&self, name: &str) -> Option<Arc<Trail>> {
        self.trails.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// The open trail of log `name`, opening it if it exists.
    pub fn trail(&self, name: &str) -> Result<Arc<Trail>, Problem> {
        if let Some(t) = self.trails.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(t.clone());
        }
        if sealtrail_ledger::datadir::check_log_name(name).is_err() || !self.data.log_dir(name).exists() {
            return Err(Problem::not_found(format!("no log named {name:?}")));
        }
        self.open_or_create(name)
    }

    /// The trail of log `name`, creating the log if it does not exist.
    pub fn open_or_create(&self, name: &str) -> Result<Arc<Trail>, Problem> {
        self.open_log(name).map_err(|e| match e {
            OpenError::BadName(e) => Problem::bad_request("bad-log-name", e.to_string()),
            OpenError::Locked { .. } => Problem::unavailable_after(format!("log {name} is held by another process"), e),
            OpenError::Create { .. } => Problem::internal(e),
            OpenError::Open { .. } => Problem::unavailable_after(format!("log {name} could not be opened"), e),
            OpenError::Refused(p) => p,
        })
    }

    /// [`App::open_or_create`], with the whole error for the server's
    /// own use (the messages name files of the data directory).
    fn open_log(&self, name: &str) -> Result<Arc<Trail>, OpenError> {
        let _g = self.opening.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = self.trails.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(t.clone());
        }
        let create = |e: &dyn std::fmt::Display| OpenError::Create {
            name: name.to_string(),
            reason: e.to_string(),
        };
        if !self.data.log_dir(name).exists() {
            self.check_log_room(name).map_err(OpenError::Refused)?;
            self.data.create_log(name, None).map_err(|e| match e {
                LedgerError::BadLogName(_) => OpenError::BadName(e),
                other => create(&other),
            })?;
            // Alert rules start at a new log's first entry, even if the
            // server stops before the evaluator first looks at it. (Nothing
            // can be appended before this returns.)
            let now = Timestamp::now().as_millisecond();
            sealtrail_alert::store::begin_log(&self.meta.lock(), name, now).map_err(|e| create(&e))?;
        }
        // A log whose fields cannot be protected is not opened.
        self.log_pii(name).map_err(|e| OpenError::Open {
            name: name.to_string(),
            source: TrailError::Pii(e),
        })?;
        let options = TrailOptions {
            pii_source: Some(self.protection.clone()),
            ..self.trail_options()
        };
        let trail = Arc::new(Trail::open(&self.data, name, options).map_err(|e| {
            let locked = match &e {
                TrailError::Ledger(LedgerError::Io { op: "lock", source, .. }) => {
                    source.kind() == std::io::ErrorKind::WouldBlock
                }
                TrailError::Index(sealtrail_trail::IndexError::Locked(_)) => true,
                _ => false,
            };
            if locked {
                OpenError::Locked { name: name.to_string() }
            } else {
                OpenError::Open {
                    name: name.to_string(),
                    source: e,
                }
            }
        })?);
        self.feeds.attach(name, &trail);
        self.opened_sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), trail.log().size());
        self.trails
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), trail.clone());
        Ok(trail)
    }

    /// Refuse to create log `name` when the data directory holds
    /// `logs.max_logs` logs already. Called under `opening`, so two
    /// creations cannot both take the last place.
    fn check_log_room(&self, name: &str) -> Result<(), Problem> {
        let max = self.config.logs.max_logs;
        let held = match self.data.log_names() {
            Ok(names) => names.len(),
            Err(e) => return Err(Problem::internal(format!("counting the logs: {e}"))),
        };
        if held < max {
            return Ok(());
        }
        tracing::warn!(log = name, held, max, "log not created: logs.max_logs reached");
        metrics::counter!("sealtrail_logs_refused_total").increment(1);
        Err(Problem::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "too-many-logs",
            format!("log {name:?} was not created: the server holds {held} logs, its limit (logs.max_logs is {max})"),
        ))
    }

    /// Log `name`'s size when this process opened it.
    pub fn opened_size(&self, name: &str) -> u64 {
        let sizes = self.opened_sizes.lock().unwrap_or_else(|e| e.into_inner());
        sizes.get(name).copied().unwrap_or(0)
    }

    /// Every log open now, by name.
    pub fn open_trails(&self) -> Vec<(String, Arc<Trail>)> {
        let mut v: Vec<_> = self
            .trails
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Every open log's integrity, by name.
    pub fn log_health(&self) -> Vec<crate::integrity::LogHealth> {
        self.integrity.log_health(self.open_trails(), self.data.root())
    }

    /// Set the integrity gauges of every open log (at each scrape).
    pub fn integrity_metrics(&self) {
        self.integrity.set_metrics(self.open_trails());
    }

    /// Who holds `authorization` (the header's value, if any). Unknown or
    /// revoked keys are refused outright, even on public routes, so a
    /// client learns its key is bad.
    pub async fn authenticate(self: &Arc<Self>, authorization: Option<&str>) -> Result<Caller, Problem> {
        let Some(value) = authorization else {
            return Ok(Caller::Anonymous);
        };
        // The scheme's name is case-insensitive (RFC 9110 §11.1).
        let secret = value
            .trim()
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
            .map(|(_, secret)| secret.trim());
        let Some(secret) = secret else {
            return Err(Problem::unauthorized("the Authorization header must be `Bearer <key>`"));
        };
        let Some(id) = sealtrail_meta::key_id(secret) else {
            return Err(Problem::unauthorized("the API key is unknown or revoked"));
        };
        let (cached, generation) = {
            let cache = self.keys.read().unwrap_or_else(|e| e.into_inner());
            (cache.by_id.get(id).cloned(), cache.generation)
        };
        let key = match cached {
            Some((key, stored)) if sealtrail_meta::secret_matches(&stored, secret) => key,
            Some(_) => return Err(Problem::unauthorized("the API key is unknown or revoked")),
            None => {
                // A key created by another process since the last reload.
                let (app, owned) = (self.clone(), secret.to_string());
                let found =
                    crate::request::blocking(move || app.meta.authenticate(&owned).map_err(Problem::internal)).await?;
                let Some(key) = found else {
                    return Err(Problem::unauthorized("the API key is unknown or revoked"));
                };
                let mut cache = self.keys.write().unwrap_or_else(|e| e.into_inner());
                if cache.generation == generation {
                    cache
                        .by_id
                        .insert(key.id.clone(), (key.clone(), sealtrail_meta::digest(secret)));
                }
                key
            }
        };
        self.key_uses.note(&key.id, Timestamp::now().as_second());
        if let Some(limiter) = &self.limiter {
            if let Err(not_until) = limiter.check_key(&key.id) {
                let wait =
                    not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
                let mut p = Problem::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "rate-limited",
                    format!(
                        "API key {} is over its limit of {} requests per second",
                        key.id, self.config.rate_limit.per_key_per_second
                    ),
                );
                p.retry_after = Some(wait.as_secs().max(1));
                return Err(p);
            }
        }
        Ok(Caller::Key(key))
    }

    /// Reload the key cache if the metadata database changed since it was
    /// read. Blocks on the database: call it off the async threads.
    pub fn refresh_keys(&self) -> Result<(), sealtrail_meta::MetaError> {
        let reloaded = self.reload_keys();
        if reloaded.is_err() {
            metrics::counter!("sealtrail_key_reload_failures_total").increment(1);
            // A revocation the failed reload would have seen must not be
            // missed: until a reload succeeds no cached key is trusted.
            let mut cache = self.keys.write().unwrap_or_else(|e| e.into_inner());
            cache.version = None;
            cache.generation += 1;
            cache.by_id.clear();
        }
        reloaded
    }

    fn reload_keys(&self) -> Result<(), sealtrail_meta::MetaError> {
        let version = self.meta.version()?;
        if self.keys.read().unwrap_or_else(|e| e.into_inner()).version == Some(version) {
            return Ok(());
        }
        let by_id = self
            .meta
            .live_keys()?
            .into_iter()
            .map(|(key, digest)| (key.id.clone(), (key, digest)))
            .collect();
        let mut cache = self.keys.write().unwrap_or_else(|e| e.into_inner());
        *cache = KeyCache {
            version: Some(version),
            generation: cache.generation + 1,
            by_id,
        };
        Ok(())
    }

    /// Reload the key cache now, so a revocation made here applies at once.
    /// Blocks on the database.
    pub fn forget_keys(&self) {
        {
            let mut cache = self.keys.write().unwrap_or_else(|e| e.into_inner());
            cache.version = None;
            cache.generation += 1;
        }
        if let Err(e) = self.refresh_keys() {
            tracing::warn!("reloading API keys: {e}");
        }
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Refuse writes the server could not keep: while shutting down, once
    /// the log is damaged or poisoned, or when the data directory's file
    /// system (asked now) could not hold about `bytes` more and keep its
    /// reserve.
    pub fn check_writable(&self, trail: &Trail, bytes: u64) -> Result<(), Problem> {
        if self.shutting_down() {
            return Err(Problem::unavailable("the server is shutting down"));
        }
        let log = trail.log();
        if let Some(d) = log.damaged() {
            return Err(Problem::integrity_failure(format!(
                "log {}: entry {} failed its integrity check ({}); the log accepts no writes until it is repaired",
                log.name(),
                d.index,
                d.detail
            )));
        }
        if let Some(reason) = log.poisoned() {
            let next = if log.poisoned_by_full_disk() {
                "it resumes by itself once the disk has room"
            } else {
                "restart the server to recover"
            };
            let mut p = Problem::unavailable(format!(
                "log {} stopped accepting writes after a storage fault: {reason}; {next}",
                log.name()
            ));
            p.retry_after = log.poisoned_by_full_disk().then_some(RETRY_AFTER_FULL_DISK);
            return Err(p);
        }
        if let Err(reason) = self.system.check_room(bytes) {
            metrics::counter!("sealtrail_writes_refused_total", "reason" => "disk").increment(1);
            let mut p = Problem::unavailable(reason);
            p.retry_after = Some(RETRY_AFTER_FULL_DISK);
            return Err(p);
        }
        Ok(())
    }

    /// Record in the system log that `caller` did `action` to log `log`.
    /// Returns only once the record is durable: a read that cannot be
    /// recorded is not served.
    ///
    /// Long strings in `details` (a request's query string, say) are kept
    /// as a prefix with their length and SHA-256 ([`bounded_details`]), so
    /// the record always fits the event schema.
    pub fn record(&self, caller: &Caller, action: &str, log: &str, details: Value) -> Result<(), Problem> {
        let event = system_event(caller.actor(), action, log, bounded_details(details));
        let trail = self.trail(SYSTEM_LOG)?;
        let done = trail
            .ingest(&[event.as_bytes()], true)
            .map_err(|e| Problem::unavailable_after("recording this request in the system log failed", e))?;
        match done.items.first() {
            Some(sealtrail_trail::Item::Stored { .. }) => Ok(()),
            other => Err(Problem::internal(format!(
                "the system log refused its own event: {other:?}"
            ))),
        }
    }

    /// Move key changes queued by any process into the system log.
    /// Write the key uses noted since the last call to `meta.db`; kept for
    /// the next call if the database refuses them. Blocks on the database.
    pub fn record_key_uses(&self) {
        let uses = self.key_uses.take();
        if uses.is_empty() {
            return;
        }
        if let Err(e) = self.meta.record_key_use(&uses) {
            tracing::warn!("recording when API keys were last used: {e}");
            self.key_uses.restore(uses);
        }
    }

    pub fn drain_outbox(&self) -> Result<usize, Problem> {
        let trail = self.trail(SYSTEM_LOG)?;
        drain_outbox(&self.meta, &trail).map_err(Problem::internal)
    }
}

impl crate::integrity::GuardedLogs for App {
    fn open_trails(&self) -> Vec<(String, Arc<Trail>)> {
        App::open_trails(self)
    }

    fn check_room(&self, bytes: u64) -> Result<(), String> {
        self.system.check_room(bytes)
    }
}

impl crate::periodic::Owner for App {
    fn shutting_down(&self) -> bool {
        App::shutting_down(self)
    }
}

/// Why a log could not be opened or created.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    BadName(LedgerError),
    /// Another process (a second server, or a command) has the log open.
    #[error("another process holds log {name} (is a `sealtrail serve` already running on it?)")]
    Locked { name: String },
    #[error("creating log {name}: {reason}")]
    Create { name: String, reason: String },
    #[error("opening log {name}: {source}")]
    Open { name: String, source: TrailError },
    /// Creating the log would pass `logs.max_logs`, or its count failed.
    #[error("{}", .0.detail)]
    Refused(Problem),
}
