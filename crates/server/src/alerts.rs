//! Alerts in the server: the evaluator that feeds every log's new events
//! to the rule engine, the deliverer that empties the notification outbox,
//! the config file's rules and channels, and the audited changes the API
//! and the CLI share.
//!
//! The evaluator is one thread beside ingest, never in its path: it reads
//! what the ledger has stored, by index, from where its saved state says
//! it stopped. A slow rule or receiver therefore delays alerts, never an
//! acknowledgement, and after a restart or a backlog nothing is skipped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use sealtrail_alert::engine::{Engine, LogState, Transition};
use sealtrail_alert::net::Destinations;
use sealtrail_alert::outbox::{self, Backoff, Deliverer, HistoryQuery, Status};
use sealtrail_alert::sealed::SealError;
use sealtrail_alert::store::{self, Origin, Silence, StoreError, Stored};
use sealtrail_alert::{notify, ChannelSpec, Level, Message, MessageKind, RuleSpec, SilenceSpec};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use utoipa::ToSchema;

use sealtrail_trail::Trail;

use crate::app::App;
use crate::config::Alerts;
use crate::meta::{queue_event, Meta, SYSTEM_LOG};

/// Most events the evaluator reads from one log before it looks at the
/// others and saves its progress.
const PASS_EVENTS: u64 = 65_536;

/// How often progress is saved when nothing fired (alerts are saved at once).
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// How far behind the wall clock ticks run: an event is stamped
/// `received_at` a moment before its batch is in the log.
const TICK_GRACE_MS: i64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// Problems with what was sent, each naming a field path.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("{0}")]
    NotFound(String),
    /// The change would leave a rule pointing at a missing channel.
    #[error("{0}")]
    Conflict(String),
    /// Creating what exists.
    #[error("{0}")]
    Exists(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secrets(#[from] SealError),
}

impl From<rusqlite::Error> for AlertError {
    fn from(e: rusqlite::Error) -> Self {
        AlertError::Store(StoreError::Sqlite(e))
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn now_text() -> String {
    jiff::Timestamp::now().to_string()
}

/// A system-log event about the alert configuration.
fn config_event(actor: &Value, action: &str, kind: &str, name: &str, details: Value) -> String {
    json!({
        "action": action,
        "actor": actor,
        "targets": [{"type": kind, "id": name}],
        "source": {"service": "sealtrail"},
        "outcome": "success",
        "details": details,
    })
    .to_string()
}

/// Create or replace rule `spec`; returns whether it is new.
/// How a put treats an existing spec of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Replace it.
    Upsert,
    /// Refuse (`AlertError::Exists`): POST.
    CreateOnly,
}

/// Create or replace rule `spec`; returns whether it is new, and the rule
/// as stored.
pub fn put_rule(
    meta: &Meta,
    spec: &RuleSpec,
    origin: Origin,
    put: Put,
    actor: &Value,
) -> Result<(bool, Stored<RuleSpec>), AlertError> {
    let problems = spec.problems();
    if !problems.is_empty() {
        return Err(AlertError::Invalid(problems));
    }
    meta.audited(|conn| {
        if put == Put::CreateOnly && store::get::<RuleSpec>(conn, &spec.name)?.is_some() {
            return Err(AlertError::Exists(format!(
                "an alert rule named {:?} exists; PUT /api/v1/alert-rules/{} replaces it",
                spec.name, spec.name
            )));
        }
        for (i, channel) in spec.channels.iter().enumerate() {
            if !store::has_channel(conn, channel)? {
                return Err(AlertError::Invalid(vec![format!(
                    "channels[{i}]: no channel named {channel:?} (create it first)"
                )]));
            }
        }
        let created = store::put(conn, spec, origin, &now_text())?;
        let stored = stored::<RuleSpec>(conn, &spec.name)?;
        let action = if created {
            "alert_rule.created"
        } else {
            "alert_rule.updated"
        };
        let details = serde_json::to_value(spec).unwrap_or(Value::Null);
        Ok((
            (created, stored),
            config_event(actor, action, "alert_rule", &spec.name, details),
        ))
    })
}

/// What was just written.
fn stored<T: store::Named>(conn: &Connection, name: &str) -> Result<Stored<T>, AlertError> {
    store::get::<T>(conn, name)?.ok_or_else(|| AlertError::NotFound(format!("{name:?} vanished as it was written")))
}

pub fn delete_rule(meta: &Meta, name: &str, actor: &Value) -> Result<(), AlertError> {
    meta.audited(|conn| {
        if !store::delete::<RuleSpec>(conn, name)? {
            return Err(AlertError::NotFound(format!("no alert rule named {name:?}")));
        }
        Ok((
            (),
            config_event(actor, "alert_rule.deleted", "alert_rule", name, json!({})),
        ))
    })
}

/// Create or replace channel `spec`; returns whether it is new, and the
/// channel as stored. Credentials sent in their redacted form (as listed)
/// keep the stored ones, so a listed channel can be edited and sent back.
/// The channel must render: a sample notification is rendered first, so a
/// channel every notification would fail on is refused now, not later;
/// and a URL whose host is an address `destinations` refuses is refused
/// now (a name is checked at every delivery).
pub fn put_channel(
    meta: &Meta,
    spec: &ChannelSpec,
    destinations: &Destinations,
    origin: Origin,
    put: Put,
    actor: &Value,
) -> Result<(bool, Stored<ChannelSpec>), AlertError> {
    let mut problems = spec.problems();
    let refused = spec.destination_problems(destinations);
    if !refused.is_empty() {
        metrics::counter!("sealtrail_notification_destinations_refused_total", "via" => "channel").increment(1);
        tracing::warn!(
            "alerts: channel {:?} refused: {}",
            spec.name.chars().take(100).collect::<String>(),
            refused.join("; ")
        );
    }
    problems.extend(refused);
    if !problems.is_empty() {
        return Err(AlertError::Invalid(problems));
    }
    meta.audited(|conn| {
        let mut spec = spec.clone();
        match store::get_channel(conn, &spec.name, || meta.secrets())? {
            Some(_) if put == Put::CreateOnly => {
                return Err(AlertError::Exists(format!(
                    "a channel named {:?} exists; PUT /api/v1/channels/{} replaces it",
                    spec.name, spec.name
                )))
            }
            Some(old) => spec.restore_redacted(&old.spec),
            None => {}
        }
        if let Some(field) = spec.holds_redaction() {
            return Err(AlertError::Invalid(vec![format!(
                "{field}: holds the redaction mark {:?} and there is no stored value to keep; send the real one",
                sealtrail_alert::spec::REDACTED
            )]));
        }
        if let Err(e) = notify::render(&spec, &sample_message(&spec), 0, now_ms().div_euclid(1000)) {
            return Err(AlertError::Invalid(vec![e.to_string()]));
        }
        let created = store::put_channel(conn, &spec, &meta.secrets()?, origin, &now_text())?;
        let stored = store::get_channel(conn, &spec.name, || meta.secrets())?
            .ok_or_else(|| AlertError::NotFound(format!("{:?} vanished as it was written", spec.name)))?;
        let action = if created {
            "alert_channel.created"
        } else {
            "alert_channel.updated"
        };
        let details = serde_json::to_value(spec.redacted()).unwrap_or(Value::Null);
        Ok((
            (created, stored),
            config_event(actor, action, "alert_channel", &spec.name, details),
        ))
    })
}

pub fn delete_channel(meta: &Meta, name: &str, actor: &Value) -> Result<(), AlertError> {
    meta.audited(|conn| {
        let users: Vec<String> = store::list::<RuleSpec>(conn)?
            .into_iter()
            .filter(|r| r.spec.channels.iter().any(|c| c == name))
            .map(|r| r.spec.name)
            .collect();
        if !users.is_empty() {
            return Err(AlertError::Conflict(format!(
                "channel {name:?} is used by rule(s) {}; change them first",
                users.join(", ")
            )));
        }
        if !store::delete_channel(conn, name)? {
            return Err(AlertError::NotFound(format!("no channel named {name:?}")));
        }
        Ok((
            (),
            config_event(actor, "alert_channel.deleted", "alert_channel", name, json!({})),
        ))
    })
}

pub fn add_silence(meta: &Meta, spec: &SilenceSpec, actor: &Value, by: &str) -> Result<Silence, AlertError> {
    let problems = spec.problems();
    if !problems.is_empty() {
        return Err(AlertError::Invalid(problems));
    }
    let Some(until) = sealtrail_alert::engine::parse_time_ms(&spec.until) else {
        return Err(AlertError::Invalid(vec![format!(
            "until: {:?} is not an RFC 3339 time",
            spec.until
        )]));
    };
    if until <= now_ms() {
        return Err(AlertError::Invalid(vec![format!(
            "until: {} is in the past",
            spec.until
        )]));
    }
    meta.audited(|conn| {
        let now = now_text();
        let id = store::add_silence(conn, spec, by, &now)?;
        let silence = Silence {
            id,
            spec: spec.clone(),
            created_at: now,
            created_by: by.to_string(),
        };
        let details = serde_json::to_value(spec).unwrap_or(Value::Null);
        Ok((
            silence,
            config_event(actor, "silence.created", "silence", &id.to_string(), details),
        ))
    })
}

pub fn delete_silence(meta: &Meta, id: i64, actor: &Value) -> Result<(), AlertError> {
    meta.audited(|conn| {
        if !store::delete_silence(conn, id)? {
            return Err(AlertError::NotFound(format!("no silence with id {id}")));
        }
        Ok((
            (),
            config_event(actor, "silence.deleted", "silence", &id.to_string(), json!({})),
        ))
    })
}

/// Write the config file's channels, then its rules, where they differ
/// from what is stored.
pub fn apply_config(meta: &Meta, config: &Alerts) -> Result<(), AlertError> {
    let actor = json!({"id": "config", "type": "system"});
    let destinations = config.destinations();
    for channel in &config.channels {
        let same =
            store::get_channel(&meta.lock(), &channel.name, || meta.secrets())?.is_some_and(|s| s.spec == *channel);
        if !same {
            put_channel(meta, channel, &destinations, Origin::Config, Put::Upsert, &actor)?;
        }
    }
    for rule in &config.rules {
        let same = store::get::<RuleSpec>(&meta.lock(), &rule.name)?.is_some_and(|s| s.spec == *rule);
        if !same {
            put_rule(meta, rule, Origin::Config, Put::Upsert, &actor)?;
        }
    }
    Ok(())
}

/// The system-log event recording an alert firing or ending.
fn alert_event(t: &Transition, silenced: bool) -> String {
    let action = match t.kind {
        MessageKind::Fired => "alert.fired",
        MessageKind::Resolved => "alert.resolved",
        MessageKind::Test => "alert.test",
    };
    let severity = match (t.kind, t.level) {
        (MessageKind::Resolved, _) | (_, Level::Info) => "notice",
        (_, Level::Warning) => "warning",
        (_, Level::Critical) => "critical",
    };
    json!({
        "action": action,
        "actor": {"id": "sealtrail", "type": "system"},
        "targets": [{"type": "alert", "id": t.alert_id}, {"type": "log", "id": t.log}],
        "source": {"service": "sealtrail"},
        "outcome": "success",
        "severity": severity,
        "message": t.summary,
        "details": {
            "rule": t.rule,
            "condition": t.condition,
            "level": t.level.as_str(),
            "group": t.group,
            "silenced": silenced,
            "indices": t.cited.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        },
    })
    .to_string()
}

/// One log's evaluation state and what of it is saved.
struct Tracked {
    state: LogState,
    /// None until first saved.
    saved_index: Option<u64>,
    saved_at: Instant,
}

/// Feeds new events to the rules; see the module documentation.
pub struct Evaluator {
    app: Arc<App>,
    version: Option<i64>,
    rules: Vec<RuleSpec>,
    silences: Vec<SilenceSpec>,
    engine: Engine,
    logs: HashMap<String, Tracked>,
}

impl Evaluator {
    pub fn new(app: Arc<App>) -> Evaluator {
        Evaluator {
            app,
            version: None,
            rules: Vec::new(),
            silences: Vec::new(),
            engine: Engine::new(&[]),
            logs: HashMap::new(),
        }
    }

    /// Reload rules and silences if they changed; end the alerts of rules
    /// that changed or went away.
    fn reload(&mut self, now: i64) -> Result<(), AlertError> {
        let conn = self.app.meta.lock();
        let version = store::config_version(&conn)?;
        if self.version == Some(version) {
            return Ok(());
        }
        self.rules = store::list::<RuleSpec>(&conn)?.into_iter().map(|s| s.spec).collect();
        self.silences = store::list_silences(&conn, false, now)?
            .into_iter()
            .map(|s| s.spec)
            .collect();
        let first = self.version.is_none();
        drop(conn);
        self.engine = Engine::new(&self.rules);
        if first {
            // Logs evaluated before the restart are watched whether or not
            // anyone asks for them: a flatline on a log nobody writes to
            // any more is exactly what must fire.
            for name in store::evaluated_logs(&self.app.meta.lock())? {
                if let Err(p) = self.app.trail(&name) {
                    tracing::warn!("alerts: cannot open log {name}: {}", p.detail);
                }
            }
        }
        let names: Vec<String> = self.logs.keys().cloned().collect();
        for name in names {
            if let Err(e) = self.reconcile(&name, now) {
                tracing::warn!("alerts: log {name}: {e}");
                self.logs.remove(&name);
            }
        }
        self.version = Some(version);
        Ok(())
    }

    /// End the alerts of rules that changed or went away, for one log.
    fn reconcile(&mut self, name: &str, now: i64) -> Result<(), AlertError> {
        let Some(tracked) = self.logs.get_mut(name) else {
            return Ok(());
        };
        let ended = self.engine.reconcile(&mut tracked.state, name, &self.rules, now);
        if !ended.is_empty() {
            self.save(name, ended, now)?;
        }
        Ok(())
    }

    fn save(&mut self, log: &str, transitions: Vec<Transition>, now: i64) -> Result<(), AlertError> {
        let Some(tracked) = self.logs.get_mut(log) else {
            return Ok(());
        };
        let text = store::StateText::of(log, &tracked.state)?;
        let mut conn = self.app.meta.lock();
        let done = store::commit(
            &mut conn,
            log,
            &text,
            &transitions,
            &self.rules,
            &self.silences,
            now,
            |tx: &Connection, t, silenced| queue_event(tx, &alert_event(t, silenced)),
        )?;
        drop(conn);
        tracked.saved_index = Some(tracked.state.next_index);
        tracked.saved_at = Instant::now();
        for t in &transitions {
            let kind = if t.kind == MessageKind::Fired {
                "fired"
            } else {
                "resolved"
            };
            metrics::counter!("sealtrail_alerts_total", "rule" => t.rule.clone(), "transition" => kind).increment(1);
        }
        if done.notifications > 0 {
            metrics::counter!("sealtrail_notifications_queued_total").increment(done.notifications as u64);
        }
        Ok(())
    }

    /// One pass over every open log. Returns whether a log still has a
    /// backlog (the caller goes again at once). A log that fails (a read
    /// or a save) is dropped from memory and reloaded from its last saved
    /// state next time, so what was not saved is evaluated again rather
    /// than lost; the other logs go on.
    pub fn pass(&mut self) -> Result<bool, AlertError> {
        let now = now_ms();
        self.reload(now)?;
        let mut behind = false;
        for (name, trail) in self.app.open_trails() {
            match self.pass_log(&name, &trail, now) {
                Ok(b) => behind |= b,
                Err(e) => {
                    tracing::warn!("alerts: log {name}: {e}");
                    self.logs.remove(&name);
                }
            }
        }
        Ok(behind)
    }

    fn pass_log(&mut self, name: &str, trail: &Trail, now: i64) -> Result<bool, AlertError> {
        let size = trail.log().size();
        if !self.logs.contains_key(name) {
            let saved = store::load_state(&self.app.meta.lock(), name)?;
            let saved_index = saved.as_ref().map(|s| s.next_index);
            // Rules apply from here on; a log created by this process
            // starts at 0 (store::begin_log), so none of its events is missed.
            let state = saved.unwrap_or_else(|| LogState::starting_at(self.app.opened_size(name), now));
            self.logs.insert(
                name.to_string(),
                Tracked {
                    state,
                    saved_index,
                    saved_at: Instant::now(),
                },
            );
            // The rules may have changed while the state lay on disk.
            self.reconcile(name, now)?;
        }
        let Some(tracked) = self.logs.get_mut(name) else {
            return Ok(false);
        };
        let mut transitions = Vec::new();
        let mut behind = false;
        if !self.engine.watches(name) {
            // Nothing to evaluate: move on without reading, so a rule
            // added later starts from now, not from the log's past.
            tracked.state.next_index = tracked.state.next_index.max(size);
        } else {
            let end = size.min(tracked.state.next_index.saturating_add(PASS_EVENTS));
            while tracked.state.next_index < end {
                let first = tracked.state.next_index;
                let count = (end - first).min(1024);
                let entries = trail
                    .log()
                    .entries(first, count)
                    .map_err(|e| AlertError::Invalid(vec![format!("reading at {first}: {e}")]))?;
                for (i, entry) in entries.iter().enumerate() {
                    let index = first + i as u64;
                    match sealtrail_event::parse_entry(entry) {
                        // Alerts about alerts would feed themselves.
                        Ok(event) if name == SYSTEM_LOG && event.action.starts_with("alert.") => {
                            tracked.state.next_index = index + 1;
                        }
                        Ok(event) => transitions.extend(self.engine.observe(&mut tracked.state, name, index, &event)),
                        Err(e) => {
                            tracing::warn!("alerts: log {name} entry {index} is not an event: {e}");
                            tracked.state.next_index = index + 1;
                        }
                    }
                }
            }
            if tracked.state.next_index >= size {
                // A little behind the wall clock: an event stamped just
                // before `now` may not be in the log yet.
                transitions.extend(self.engine.tick(&mut tracked.state, name, now - TICK_GRACE_MS));
            } else {
                behind = true;
            }
        }
        metrics::gauge!("sealtrail_alert_lag_events", "log" => name.to_string())
            .set(size.saturating_sub(tracked.state.next_index) as f64);
        let due = match tracked.saved_index {
            None => true,
            Some(saved) => saved != tracked.state.next_index && tracked.saved_at.elapsed() >= SAVE_EVERY,
        };
        if !transitions.is_empty() || due {
            self.save(name, transitions, now)?;
        }
        Ok(behind)
    }

    /// The next ledger index of `log` to evaluate, once seen.
    pub fn next_index(&self, log: &str) -> Option<u64> {
        self.logs.get(log).map(|t| t.state.next_index)
    }

    /// Save every log's progress (at shutdown).
    pub fn flush(&mut self) -> Result<(), AlertError> {
        let now = now_ms();
        let names: Vec<String> = self.logs.keys().cloned().collect();
        for name in names {
            self.save(&name, Vec::new(), now)?;
        }
        Ok(())
    }
}

/// Run the evaluator on its own thread until `stop` turns true.
pub fn spawn_evaluator(app: Arc<App>, stop: watch::Receiver<bool>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("alert-evaluator".into())
        .spawn(move || run_evaluator(app, || *stop.borrow(), |_| {}))
}

/// The evaluator's loop, on the calling thread: a pass, then a pause of
/// `alerts.interval_ms` unless a log is still behind, until `stop()`;
/// `progress` sees the evaluator after each pass. Progress is saved on
/// the way out.
///
/// The thread lowers its own scheduling priority to the least (nice 19):
/// when ingest keeps every core busy the evaluator yields to it and falls
/// behind, then catches up by index when there is room, so rules never
/// slow acknowledgements.
pub fn run_evaluator(app: Arc<App>, stop: impl Fn() -> bool, mut progress: impl FnMut(&Evaluator)) {
    if let Err(e) = thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min) {
        tracing::warn!("alerts: could not lower the evaluator's priority: {e:?}");
    }
    let interval = Duration::from_millis(app.config.alerts.interval_ms);
    let mut evaluator = Evaluator::new(app);
    while !stop() {
        let behind = match evaluator.pass() {
            Ok(behind) => behind,
            Err(e) => {
                tracing::warn!("alerts: {e}");
                false
            }
        };
        progress(&evaluator);
        if !behind {
            std::thread::sleep(interval);
        }
    }
    if let Err(e) = evaluator.flush() {
        tracing::warn!("alerts: saving progress at shutdown: {e}");
    }
}

/// The retry policy the configuration asks for.
fn backoff(config: &Alerts) -> Backoff {
    Backoff {
        base: Duration::from_millis(config.retry_base_ms),
        factor: 2.0,
        max_delay: Duration::from_millis(config.retry_max_ms),
        max_attempts: config.max_attempts,
    }
}

/// How long one send may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Send due notifications every `alerts.interval_ms` until `stop` turns
/// true. The only deliverer of this data directory: the CLI never sends
/// from the outbox.
pub fn spawn_deliverer(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let http = match notify::http_client(SEND_TIMEOUT, app.config.alerts.destinations()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("alerts: no HTTP client, notifications stay queued: {e}");
                return;
            }
        };
        let interval = Duration::from_millis(app.config.alerts.interval_ms);
        let policy = backoff(&app.config.alerts);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let channels = match store::list_channels(&app.meta.lock(), || app.meta.secrets()) {
                Ok(all) => all
                    .into_iter()
                    .map(|c| (c.spec.name.clone(), c.spec))
                    .collect::<HashMap<_, _>>(),
                Err(e) => {
                    tracing::warn!("alerts: reading channels: {e}");
                    continue;
                }
            };
            let mut deliverer = Deliverer::new(app.meta.connection(), &http);
            deliverer.backoff = policy;
            match deliverer
                .deliver_due(now_ms, |name| channels.get(name).cloned(), outbox::random_jitter)
                .await
            {
                Ok(done) => {
                    for d in done {
                        metrics::counter!("sealtrail_notifications_total", "channel" => d.channel.clone(), "status" => d.status.as_str())
                            .increment(1);
                        if d.error.as_deref().is_some_and(|e| e.starts_with(notify::REFUSED)) {
                            metrics::counter!("sealtrail_notification_destinations_refused_total", "via" => "outbox")
                                .increment(1);
                        }
                        if d.status == Status::Dead {
                            tracing::warn!(
                                "alerts: notification {} to {} is a dead letter: {}",
                                d.id,
                                d.channel,
                                d.error.as_deref().unwrap_or("")
                            );
                        }
                    }
                }
                Err(e) => tracing::warn!("alerts: delivering notifications: {e}"),
            }
        }
    });
}

/// Notifications with their delivery attempts, newest first, as JSON.
pub fn notifications(
    meta: &Meta,
    status: Option<&str>,
    channel: Option<&str>,
    alert: Option<&str>,
    limit: usize,
    before: Option<i64>,
) -> Result<Value, AlertError> {
    let status = match status {
        None => None,
        Some(s) => Some(
            Status::parse(s)
                .ok_or_else(|| AlertError::Invalid(vec![format!("status: {s:?} is not pending, delivered or dead")]))?,
        ),
    };
    let query = HistoryQuery {
        status,
        channel: channel.map(str::to_string),
        alert_id: alert.map(str::to_string),
        before,
        limit,
    };
    let rows = outbox::history(&meta.lock(), &query)?;
    Ok(serde_json::to_value(rows).unwrap_or(Value::Null))
}

/// Queue dead letter `id` for delivery again.
pub fn retry_dead(meta: &Meta, id: i64, actor: &Value) -> Result<(), AlertError> {
    meta.audited(|conn| {
        if !outbox::retry_dead(conn, id)? {
            return Err(AlertError::NotFound(format!("no dead letter with id {id}")));
        }
        let event = config_event(
            actor,
            "notification.retried",
            "notification",
            &id.to_string(),
            json!({}),
        );
        Ok(((), event))
    })
}

/// The notification a test send delivers, and a channel is checked with.
fn sample_message(channel: &ChannelSpec) -> Message {
    let now = now_ms();
    Message {
        version: 1,
        kind: MessageKind::Test,
        alert_id: format!("test-{now}"),
        rule: "test".into(),
        condition: "test".into(),
        level: Level::Info,
        log: "-".into(),
        group: Default::default(),
        summary: format!("A test notification from Sealtrail to channel {}", channel.name),
        at: sealtrail_alert::engine::time_text(now),
        indices: Vec::new(),
        event_ids: Vec::new(),
    }
}

/// What a test send did.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestResult {
    pub channel: String,
    pub delivered: bool,
    /// The receiver's HTTP status, or the SMTP reply code.
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// Send a test notification to `channel` now (not through the outbox),
/// only where `destinations` allows, and record the attempt in the system
/// log.
pub async fn test_send(meta: &Meta, channel: &ChannelSpec, destinations: Destinations, actor: &Value) -> TestResult {
    let now = now_ms();
    let message = sample_message(channel);
    let result = match notify::render(channel, &message, 0, now.div_euclid(1000)) {
        Err(e) => Err((None, e.to_string())),
        Ok(out) => match notify::http_client(SEND_TIMEOUT, destinations) {
            Err(e) => Err((None, format!("no HTTP client: {e}"))),
            Ok(http) => notify::send(&out, &http)
                .await
                .map(|sent| sent.status)
                .map_err(|f| (f.status, f.message)),
        },
    };
    let outcome = TestResult {
        channel: channel.name.clone(),
        delivered: result.is_ok(),
        status: match &result {
            Ok(s) => Some(*s),
            Err((s, _)) => *s,
        },
        error: result.err().map(|(_, e)| e),
    };
    if let Some(e) = outcome.error.as_deref().filter(|e| e.starts_with(notify::REFUSED)) {
        metrics::counter!("sealtrail_notification_destinations_refused_total", "via" => "test").increment(1);
        tracing::warn!("alerts: test notification to channel {}: {e}", channel.name);
    }
    let event = config_event(
        actor,
        "alert_channel.tested",
        "alert_channel",
        &channel.name,
        json!({"delivered": outcome.delivered, "status": outcome.status, "error": outcome.error}),
    );
    if let Err(e) = meta.queue_system_event(&event) {
        tracing::warn!("alerts: recording a test send: {e}");
    }
    outcome
}
