//! Alert administration: the audited changes to rules, channels and
//! silences that the API, the CLI and the configuration file share, the
//! notification history, and test sends. Each change and its system-log
//! record are written in one transaction ([`Meta::audited`]).

use std::time::Duration;

use rusqlite::Connection;

use sealtrail_alert::net::Destinations;
use sealtrail_alert::outbox::{self, HistoryQuery, Status};
use sealtrail_alert::sealed::SealError;
use sealtrail_alert::store::{self, Origin, Silence, StoreError, Stored};
use sealtrail_alert::{notify, ChannelSpec, Level, Message, MessageKind, RuleSpec, SilenceSpec};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::db::Meta;

/// How long one send may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Write the configuration file's channels, then its rules, where they
/// differ from what is stored.
pub fn apply_config(
    meta: &Meta,
    channels: &[ChannelSpec],
    rules: &[RuleSpec],
    destinations: &Destinations,
) -> Result<(), AlertError> {
    let actor = json!({"id": "config", "type": "system"});
    for channel in channels {
        let same =
            store::get_channel(&meta.lock(), &channel.name, || meta.secrets())?.is_some_and(|s| s.spec == *channel);
        if !same {
            put_channel(meta, channel, destinations, Origin::Config, Put::Upsert, &actor)?;
        }
    }
    for rule in rules {
        let same = store::get::<RuleSpec>(&meta.lock(), &rule.name)?.is_some_and(|s| s.spec == *rule);
        if !same {
            put_rule(meta, rule, Origin::Config, Put::Upsert, &actor)?;
        }
    }
    Ok(())
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
