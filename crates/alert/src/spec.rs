//! What an operator writes: rules, channels and silences, as they appear
//! in the config file (TOML), the API (JSON) and the metadata database
//! (JSON text). One serde shape for all three, so a rule exported from the
//! API can be pasted into the config unchanged (docs/alerts.md).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use sealtrail_event::validate::thousands;
use sealtrail_event::{Event, Outcome, Severity};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A length of time written as a number and a unit: `30s`, `5m`, `2h`,
/// `7d`, `1w`. Held in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(pub i64);

impl Span {
    pub const fn seconds(s: i64) -> Span {
        Span(s * 1000)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn parse(text: &str) -> Result<Span, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let n: i64 = digits
            .parse()
            .map_err(|_| format!("{text:?} is not a duration: write a number and a unit, e.g. 30s, 5m, 2h, 7d, 1w"))?;
        let unit_ms: i64 = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return Err(format!("{text:?}: unknown unit {unit:?} (use ms, s, m, h, d or w)")),
        };
        n.checked_mul(unit_ms)
            .filter(|ms| *ms > 0)
            .map(Span)
            .ok_or_else(|| format!("{text:?}: a duration must be above zero and below 290 million years"))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, ms) in [
            ("w", 604_800_000),
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if self.0 % ms == 0 {
                return write!(f, "{}{unit}", self.0 / ms);
            }
        }
        write!(f, "{}ms", self.0)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        let text = String::deserialize(d)?;
        Span::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An event field a rule can group by, count distinct values of, or watch
/// for new values: a fixed set of paths plus `details.<key>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    Tenant,
    Action,
    Category,
    Outcome,
    Severity,
    ActorId,
    ActorType,
    ActorName,
    ActorEmail,
    /// Of the first target.
    TargetType,
    /// Of the first target.
    TargetId,
    SourceService,
    SourceEnvironment,
    SourceHost,
    SourceWorkflow,
    ContextIp,
    ContextUserAgent,
    ContextSessionId,
    ContextLocation,
    ErrorType,
    /// A top-level key of `details`; strings as they are, other JSON
    /// values as their JSON text.
    Details(String),
}

const FIELDS: &[(&str, Field)] = &[
    ("tenant", Field::Tenant),
    ("action", Field::Action),
    ("category", Field::Category),
    ("outcome", Field::Outcome),
    ("severity", Field::Severity),
    ("actor.id", Field::ActorId),
    ("actor.type", Field::ActorType),
    ("actor.name", Field::ActorName),
    ("actor.email", Field::ActorEmail),
    ("target.type", Field::TargetType),
    ("target.id", Field::TargetId),
    ("source.service", Field::SourceService),
    ("source.environment", Field::SourceEnvironment),
    ("source.host", Field::SourceHost),
    ("source.workflow", Field::SourceWorkflow),
    ("context.ip", Field::ContextIp),
    ("context.user_agent", Field::ContextUserAgent),
    ("context.session_id", Field::ContextSessionId),
    ("context.location", Field::ContextLocation),
    ("error.type", Field::ErrorType),
];

impl Field {
    pub fn parse(path: &str) -> Result<Field, String> {
        if let Some(key) = path.strip_prefix("details.") {
            if key.is_empty() {
                return Err("details. needs a key after the dot".into());
            }
            return Ok(Field::Details(key.to_string()));
        }
        FIELDS
            .iter()
            .find(|(name, _)| *name == path)
            .map(|(_, f)| f.clone())
            .ok_or_else(|| {
                let names: Vec<&str> = FIELDS.iter().map(|(n, _)| *n).collect();
                // A long path is not echoed back.
                let shown = if path.len() <= bounds::NAME_CHARS {
                    format!("{path:?}")
                } else {
                    format!("of {} bytes", path.len())
                };
                format!(
                    "unknown field {shown}; use one of {} or details.<key>",
                    names.join(", ")
                )
            })
    }

    pub fn path(&self) -> Cow<'static, str> {
        match self {
            Field::Details(key) => Cow::Owned(format!("details.{key}")),
            other => Cow::Borrowed(FIELDS.iter().find(|(_, f)| f == other).map(|(n, _)| *n).unwrap_or("?")),
        }
    }

    /// The field's value in `event`, if it has one.
    pub fn value<'e>(&self, event: &'e Event) -> Option<Cow<'e, str>> {
        let b = |s: &'e Option<String>| s.as_deref().map(Cow::Borrowed);
        match self {
            Field::Tenant => b(&event.tenant),
            Field::Action => Some(Cow::Borrowed(&event.action)),
            Field::Category => b(&event.category),
            Field::Outcome => event.outcome.map(|o| Cow::Borrowed(o.as_str())),
            Field::Severity => Some(Cow::Borrowed(event.severity.as_str())),
            Field::ActorId => event.actor.as_ref().map(|a| Cow::Borrowed(a.id.as_str())),
            Field::ActorType => event.actor.as_ref()?.kind.map(|k| Cow::Borrowed(k.as_str())),
            Field::ActorName => b(&event.actor.as_ref()?.name),
            Field::ActorEmail => b(&event.actor.as_ref()?.email),
            Field::TargetType => event.targets.as_ref()?.first().map(|t| Cow::Borrowed(t.kind.as_str())),
            Field::TargetId => event.targets.as_ref()?.first().map(|t| Cow::Borrowed(t.id.as_str())),
            Field::SourceService => b(&event.source.as_ref()?.service),
            Field::SourceEnvironment => b(&event.source.as_ref()?.environment),
            Field::SourceHost => b(&event.source.as_ref()?.host),
            Field::SourceWorkflow => b(&event.source.as_ref()?.workflow),
            Field::ContextIp => event.context.as_ref()?.ip.map(|ip| Cow::Owned(ip.to_string())),
            Field::ContextUserAgent => b(&event.context.as_ref()?.user_agent),
            Field::ContextSessionId => b(&event.context.as_ref()?.session_id),
            Field::ContextLocation => b(&event.context.as_ref()?.location),
            Field::ErrorType => b(&event.error.as_ref()?.kind),
            Field::Details(key) => match event.details.as_ref()?.get(key)? {
                serde_json::Value::String(s) => Some(Cow::Borrowed(s)),
                serde_json::Value::Null => None,
                other => Some(Cow::Owned(other.to_string())),
            },
        }
    }
}

impl Serialize for Field {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.path())
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Field, D::Error> {
        let text = String::deserialize(d)?;
        Field::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Which events a rule looks at; every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Exact action or a glob (`*` any run, `?` one character): `login.*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "outcome_name")]
    pub outcome: Option<Outcome>,
    /// Severity at least this grave.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "severity_name")]
    pub severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `actor.id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// `TYPE:ID` (one target has both) or `TYPE` (any target of that type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `source.workflow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// `source.service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

impl Filter {
    pub fn matches(&self, event: &Event) -> bool {
        if let Some(action) = &self.action {
            if !sealtrail_event::glob_match(action, &event.action) {
                return false;
            }
        }
        if self.outcome.is_some() && event.outcome != self.outcome {
            return false;
        }
        if let Some(min) = self.severity {
            if event.severity < min {
                return false;
            }
        }
        let eq = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
        if !eq(&self.tenant, event.tenant.as_deref())
            || !eq(&self.actor, event.actor.as_ref().map(|a| a.id.as_str()))
            || !eq(
                &self.workflow,
                event.source.as_ref().and_then(|s| s.workflow.as_deref()),
            )
            || !eq(&self.service, event.source.as_ref().and_then(|s| s.service.as_deref()))
        {
            return false;
        }
        if let Some(target) = &self.target {
            let (kind, id) = match target.split_once(':') {
                Some((k, i)) => (k, Some(i)),
                None => (target.as_str(), None),
            };
            let any = event
                .targets
                .iter()
                .flatten()
                .any(|t| t.kind == kind && id.is_none_or(|i| t.id == i));
            if !any {
                return false;
            }
        }
        true
    }
}

/// What makes a rule fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// Every matching event.
    Any,
    /// At least `threshold` matches within `window` (sliding).
    Frequency { threshold: u64, window: Span },
    /// The count in the current `window` is at least `factor` times the
    /// count in the window before it, with at least `min_count` now.
    Spike {
        window: Span,
        factor: f64,
        #[serde(default = "one")]
        min_count: u64,
    },
    /// Fewer than `threshold` matches within `window`, e.g. a missing
    /// heartbeat (`threshold = 1`).
    Flatline { threshold: u64, window: Span },
    /// The first time `field` takes a value within a group, e.g. a new
    /// `context.ip` for an `actor.id`. Remembered across restarts.
    NewValue { field: Field },
    /// More than `threshold` distinct values of `field` within `window`.
    Cardinality { field: Field, threshold: u64, window: Span },
}

fn one() -> u64 {
    1
}

impl Condition {
    pub fn name(&self) -> &'static str {
        match self {
            Condition::Any => "any",
            Condition::Frequency { .. } => "frequency",
            Condition::Spike { .. } => "spike",
            Condition::Flatline { .. } => "flatline",
            Condition::NewValue { .. } => "new_value",
            Condition::Cardinality { .. } => "cardinality",
        }
    }

    /// Whether an alert of this condition stays firing until the condition
    /// clears (and then sends a resolved notice), rather than being a
    /// one-off notice per event.
    pub fn is_stateful(&self) -> bool {
        !matches!(self, Condition::Any | Condition::NewValue { .. })
    }
}

/// How grave an alert is, for people and for channel colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    #[default]
    Warning,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }
}

/// A rule as written by an operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique; names the rule in alerts, silences and the CLI.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub condition: Condition,
    #[serde(default)]
    pub filter: Filter,
    /// Each distinct combination of these fields' values alerts on its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<Field>,
    /// After a group fires, it does not fire again within this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Span>,
    #[serde(default)]
    pub level: Level,
    /// Names of the channels notified.
    #[serde(default)]
    pub channels: Vec<String>,
    /// The logs the rule watches; empty means every log but `system`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
}

fn yes() -> bool {
    true
}

/// Longest window a rule may use: state is kept for one (two for spike).
pub const MAX_WINDOW: Span = Span(31 * 86_400_000);

/// Most `group_by` fields.
pub const MAX_GROUP_FIELDS: usize = 8;

/// Most distinct values a cardinality rule counts: its state is bounded by it.
pub const MAX_CARDINALITY: u64 = 100_000;

impl RuleSpec {
    /// Every problem with the rule, each naming its field path.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(name_problem("name", &self.name));
        use bounds::*;
        if let Some(d) = &self.description {
            out.extend(too_long("description", d, TEXT_CHARS));
        }
        let f = &self.filter;
        for (path, value, max) in [
            // An action glob: no longer than an action, which also keeps it
            // under the glob's own bound (MAX_PATTERN_CHARS).
            ("filter.action", &f.action, NAME_CHARS),
            ("filter.actor", &f.actor, ID_CHARS),
            ("filter.target", &f.target, NAME_CHARS + 1 + ID_CHARS),
            ("filter.workflow", &f.workflow, NAME_CHARS),
            ("filter.service", &f.service, NAME_CHARS),
        ] {
            if let Some(v) = value {
                out.extend(too_long(path, v, max));
            }
        }
        if let Some(t) = &f.tenant {
            out.extend(tenant_problem("filter.tenant", t));
        }
        for (i, field) in self.group_by.iter().enumerate() {
            out.extend(field_problem(&format!("group_by[{i}]"), field));
        }
        if let Condition::NewValue { field } | Condition::Cardinality { field, .. } = &self.condition {
            out.extend(field_problem("condition.field", field));
        }
        out.extend(too_many("channels", self.channels.len(), MAX_ITEMS));
        out.extend(too_many("logs", self.logs.len(), MAX_ITEMS));
        for (i, log) in self.logs.iter().enumerate() {
            if log.is_empty() {
                out.push(format!("logs[{i}]: must not be empty"));
            }
            out.extend(too_long(&format!("logs[{i}]"), log, NAME_CHARS));
        }
        let window = |out: &mut Vec<String>, w: &Span| {
            if *w > MAX_WINDOW {
                out.push(format!(
                    "condition.window: {w} is longer than the longest window, {MAX_WINDOW}"
                ));
            }
        };
        match &self.condition {
            Condition::Any => {}
            Condition::Frequency { threshold, window: w } | Condition::Flatline { threshold, window: w } => {
                if *threshold == 0 || *threshold > MAX_CARDINALITY {
                    out.push(format!("condition.threshold: must be between 1 and {MAX_CARDINALITY}"));
                }
                window(&mut out, w);
            }
            Condition::Spike {
                window: w,
                factor,
                min_count,
            } => {
                if !(factor.is_finite() && *factor > 1.0) {
                    out.push("condition.factor: must be a number above 1".into());
                }
                if *min_count == 0 {
                    out.push("condition.min_count: must be at least 1".into());
                }
                window(&mut out, w);
            }
            Condition::NewValue { field } => {
                if self.group_by.contains(field) {
                    out.push(format!("condition.field: {} is also in group_by", field.path()));
                }
            }
            Condition::Cardinality {
                field,
                threshold,
                window: w,
            } => {
                if *threshold == 0 || *threshold >= MAX_CARDINALITY {
                    out.push(format!(
                        "condition.threshold: must be between 1 and {}",
                        MAX_CARDINALITY - 1
                    ));
                }
                if self.group_by.contains(field) {
                    out.push(format!("condition.field: {} is also in group_by", field.path()));
                }
                window(&mut out, w);
            }
        }
        if self.group_by.len() > MAX_GROUP_FIELDS {
            out.push(format!("group_by: at most {MAX_GROUP_FIELDS} fields"));
        }
        for (i, name) in self.channels.iter().enumerate() {
            if let Some(p) = too_long(&format!("channels[{i}]"), name, MAX_NAME_CHARS) {
                out.push(p);
            } else if !valid_name(name) {
                out.push(format!("channels[{i}]: {name:?} is not a channel name"));
            } else if self.channels[..i].contains(name) {
                out.push(format!("channels[{i}]: {name:?} is listed twice"));
            }
        }
        out
    }

    /// Whether the rule watches log `log`.
    pub fn watches(&self, log: &str) -> bool {
        if self.logs.is_empty() {
            log != "system"
        } else {
            self.logs.iter().any(|l| l == log)
        }
    }
}

/// Why `name` is not a valid rule or channel name, naming `path`; a name
/// past the bound is named by its length, not shown.
pub fn name_problem(path: &str, name: &str) -> Option<String> {
    if valid_name(name) {
        return None;
    }
    Some(match too_long(path, name, MAX_NAME_CHARS) {
        Some(p) => p,
        None => {
            format!("{path}: {name:?} must be 1 to {MAX_NAME_CHARS} characters of letters, digits, '.', '_' or '-'")
        }
    })
}

/// Longest rule or channel name.
pub const MAX_NAME_CHARS: usize = 100;

/// Names of rules, channels: short, printable, safe in URLs.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_CHARS).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The bounds of what an operator writes, taken from the event schema's
/// (`sealtrail_event::limits`), so that a rule, channel or silence is no
/// larger than the events it is about. String lengths count characters.
pub mod bounds {
    pub use sealtrail_event::limits::{ID_CHARS, MAX_TARGETS, NAME_CHARS, TEXT_CHARS};

    /// URLs, header values: the longest one-line text of an event
    /// (`context.user_agent`).
    pub const LINE_CHARS: usize = sealtrail_event::limits::USER_AGENT_CHARS;
    /// A webhook's `body_template`: the longest text of an event
    /// (`error.stack`).
    pub const TEMPLATE_CHARS: usize = sealtrail_event::limits::STACK_CHARS;
    /// Items of a list (headers, recipients, channels, logs): as many as
    /// an event's `targets`.
    pub const MAX_ITEMS: usize = MAX_TARGETS;
}

/// `path: N characters; the limit is M` when `value` is longer than `max`
/// characters (the event validator's wording).
pub fn too_long(path: &str, value: &str, max: usize) -> Option<String> {
    // A string of at most `max` bytes cannot have more characters.
    if value.len() <= max {
        return None;
    }
    let chars = value.chars().count();
    (chars > max).then(|| {
        format!(
            "{path}: {} characters; the limit is {}",
            thousands(chars),
            thousands(max)
        )
    })
}

/// `path: N items; the limit is M` when a list is longer than `max`.
fn too_many(path: &str, len: usize, max: usize) -> Option<String> {
    (len > max).then(|| format!("{path}: {} items; the limit is {}", thousands(len), thousands(max)))
}

/// Whether `tenant` is a tenant as events define it: 1 to
/// [`NAME_CHARS`](bounds::NAME_CHARS) characters.
pub fn tenant_problem(path: &str, tenant: &str) -> Option<String> {
    if tenant.is_empty() {
        return Some(format!("{path}: must not be empty"));
    }
    too_long(path, tenant, bounds::NAME_CHARS)
}

fn field_problem(path: &str, field: &Field) -> Option<String> {
    match field {
        Field::Details(_) => too_long(path, &field.path(), bounds::NAME_CHARS),
        _ => None,
    }
}

/// How to connect to an SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// No encryption (a relay on loopback).
    Plain,
    /// Plain connection upgraded with STARTTLS, which must succeed.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelKind {
    /// Any HTTP receiver: a versioned JSON payload (docs/alerts.md), or
    /// `body_template` rendered with the notification; signed with
    /// HMAC-SHA256 when `secret` is set.
    Webhook {
        url: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body_template: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content_type: Option<String>,
    },
    /// A Slack incoming webhook.
    Slack { url: String },
    /// A Discord webhook.
    Discord { url: String },
    /// A Microsoft Teams Workflows webhook (Adaptive Card).
    Teams { url: String },
    /// Mail over SMTP, with HTML and plain-text parts.
    Email {
        host: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        #[serde(default)]
        security: SmtpSecurity,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<String>,
        from: String,
        to: Vec<String>,
    },
}

/// A named destination for notifications. Unknown fields are refused by
/// [`ChannelKind`] (serde cannot refuse them on a struct with a flattened
/// field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelSpec {
    pub name: String,
    #[serde(flatten)]
    pub kind: ChannelKind,
}

/// Shown instead of a secret when a channel is listed.
pub const REDACTED: &str = "********";

impl ChannelSpec {
    /// The channel as it may be shown (API, CLI, the system log): every
    /// credential replaced by [`REDACTED`]: the webhook's secret, header
    /// values, and any user info or query in its URL; the whole path of a
    /// Slack, Discord or Teams URL (the path is the token); the mail
    /// password.
    pub fn redacted(&self) -> ChannelSpec {
        let mut c = self.clone();
        match &mut c.kind {
            ChannelKind::Webhook {
                url, secret, headers, ..
            } => {
                *url = redact_url(url, false);
                if let Some(s) = secret {
                    *s = REDACTED.into();
                }
                for v in headers.values_mut() {
                    *v = REDACTED.into();
                }
            }
            ChannelKind::Slack { url } | ChannelKind::Discord { url } | ChannelKind::Teams { url } => {
                *url = redact_url(url, true)
            }
            ChannelKind::Email { password: Some(p), .. } => *p = REDACTED.into(),
            ChannelKind::Email { .. } => {}
        }
        c
    }

    /// Put back, from `stored`, every credential this spec carries in its
    /// redacted form, so a listed channel can be edited and sent back.
    pub fn restore_redacted(&mut self, stored: &ChannelSpec) {
        let shown = stored.redacted();
        match (&mut self.kind, &stored.kind, &shown.kind) {
            (
                ChannelKind::Webhook {
                    url, secret, headers, ..
                },
                ChannelKind::Webhook {
                    url: old_url,
                    secret: old_secret,
                    headers: old_headers,
                    ..
                },
                ChannelKind::Webhook { url: shown_url, .. },
            ) => {
                if url == shown_url {
                    url.clone_from(old_url);
                }
                if secret.as_deref() == Some(REDACTED) {
                    secret.clone_from(old_secret);
                }
                for (k, v) in headers.iter_mut() {
                    if v == REDACTED {
                        if let Some(old) = old_headers.get(k) {
                            v.clone_from(old);
                        }
                    }
                }
            }
            (ChannelKind::Slack { url }, ChannelKind::Slack { url: old }, ChannelKind::Slack { url: shown })
            | (ChannelKind::Discord { url }, ChannelKind::Discord { url: old }, ChannelKind::Discord { url: shown })
            | (ChannelKind::Teams { url }, ChannelKind::Teams { url: old }, ChannelKind::Teams { url: shown })
                if url == shown =>
            {
                url.clone_from(old)
            }
            (ChannelKind::Email { password, .. }, ChannelKind::Email { password: old, .. }, _)
                if password.as_deref() == Some(REDACTED) =>
            {
                password.clone_from(old)
            }
            _ => {}
        }
    }

    /// Whether a credential field still holds the redaction mark: a listed
    /// channel sent back where nothing was stored to restore it from.
    pub fn holds_redaction(&self) -> Option<&'static str> {
        match &self.kind {
            ChannelKind::Webhook {
                url, secret, headers, ..
            } => {
                if url.contains(REDACTED) {
                    Some("url")
                } else if secret.as_deref() == Some(REDACTED) {
                    Some("secret")
                } else if headers.values().any(|v| v == REDACTED) {
                    Some("headers")
                } else {
                    None
                }
            }
            ChannelKind::Slack { url } | ChannelKind::Discord { url } | ChannelKind::Teams { url } => {
                url.contains(REDACTED).then_some("url")
            }
            ChannelKind::Email { password, .. } => (password.as_deref() == Some(REDACTED)).then_some("password"),
        }
    }

    /// The channel's URL, for the kinds that post over HTTP.
    pub fn url(&self) -> Option<&str> {
        match &self.kind {
            ChannelKind::Webhook { url, .. }
            | ChannelKind::Slack { url }
            | ChannelKind::Discord { url }
            | ChannelKind::Teams { url } => Some(url),
            ChannelKind::Email { .. } => None,
        }
    }

    /// Whether the channel's URL names, by IP address, a destination
    /// `destinations` refuses (a name is checked when it is resolved, at
    /// every delivery).
    pub fn destination_problems(&self, destinations: &crate::net::Destinations) -> Vec<String> {
        match self.url() {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => destinations
                .check_url(url)
                .err()
                .map(|e| format!("url: {e}"))
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Every problem with the channel, each naming its field path.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(name_problem("name", &self.name));
        use bounds::*;
        let url = |out: &mut Vec<String>, url: &str| {
            if let Some(p) = too_long("url", url, LINE_CHARS) {
                out.push(p);
            } else if !(url.starts_with("http://") || url.starts_with("https://")) {
                // The URL is not shown: it may hold a token.
                out.push("url: must start with http:// or https://".into());
            }
        };
        // Shown in a refusal only when short: a value past its bound is
        // named by its length alone.
        let shown = |v: &str| {
            if v.len() <= NAME_CHARS {
                format!("{v:?} ")
            } else {
                String::new()
            }
        };
        match &self.kind {
            ChannelKind::Webhook {
                url: u,
                headers,
                secret,
                body_template,
                content_type,
            } => {
                url(&mut out, u);
                out.extend(too_many("headers", headers.len(), MAX_ITEMS));
                for (name, value) in headers {
                    let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                    if let Some(p) = too_long("headers", name, NAME_CHARS) {
                        out.push(format!("{p} (a header name)"));
                    } else if !ok {
                        out.push(format!("headers.{name}: not a valid header name"));
                    } else {
                        out.extend(too_long(&format!("headers.{name}"), value, LINE_CHARS));
                    }
                }
                if let Some(v) = secret {
                    out.extend(too_long("secret", v, ID_CHARS));
                }
                if let Some(v) = body_template {
                    out.extend(too_long("body_template", v, TEMPLATE_CHARS));
                }
                if let Some(v) = content_type {
                    out.extend(too_long("content_type", v, NAME_CHARS));
                }
            }
            ChannelKind::Slack { url: u } | ChannelKind::Discord { url: u } | ChannelKind::Teams { url: u } => {
                url(&mut out, u)
            }
            ChannelKind::Email {
                host,
                from,
                to,
                username,
                password,
                ..
            } => {
                if host.is_empty() {
                    out.push("host: must not be empty".into());
                }
                out.extend(too_long("host", host, ID_CHARS));
                for (path, value) in [("username", username), ("password", password)] {
                    if let Some(v) = value {
                        out.extend(too_long(path, v, ID_CHARS));
                    }
                }
                if let Some(p) = too_long("from", from, ID_CHARS) {
                    out.push(p);
                } else if !from.contains('@') {
                    out.push(format!("from: {}is not a mail address", shown(from)));
                }
                if to.is_empty() {
                    out.push("to: needs at least one recipient".into());
                }
                out.extend(too_many("to", to.len(), MAX_ITEMS));
                for (i, addr) in to.iter().enumerate() {
                    if let Some(p) = too_long(&format!("to[{i}]"), addr, ID_CHARS) {
                        out.push(p);
                    } else if !addr.contains('@') {
                        out.push(format!("to[{i}]: {}is not a mail address", shown(addr)));
                    }
                }
            }
        }
        out
    }
}

/// `url` with its credentials replaced by [`REDACTED`]: user info and
/// query always, the whole path when `path_is_secret`.
fn redact_url(url: &str, path_is_secret: bool) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return REDACTED.into();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("{REDACTED}@{host}"),
        None => authority.to_string(),
    };
    let tail = if path_is_secret {
        if tail.is_empty() {
            String::new()
        } else {
            format!("/{REDACTED}")
        }
    } else {
        match tail.split_once('?') {
            Some((path, _)) => format!("{path}?{REDACTED}"),
            None => tail.to_string(),
        }
    };
    format!("{scheme}://{host}{tail}")
}

/// A silence: while it lasts, alerts it matches are recorded but nobody is
/// notified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceSpec {
    /// The rule silenced; absent silences every rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Group values that must all equal the alert's (`actor.id` → `u-1`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group: BTreeMap<String, String>,
    /// RFC 3339; the silence ends then.
    pub until: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl SilenceSpec {
    /// Every problem with the silence's fields, each naming its field
    /// path (`until` is checked against the clock by the caller).
    pub fn problems(&self) -> Vec<String> {
        use bounds::*;
        let mut out = Vec::new();
        if let Some(rule) = &self.rule {
            out.extend(name_problem("rule", rule));
        }
        out.extend(too_many("group", self.group.len(), MAX_GROUP_FIELDS));
        for (key, value) in &self.group {
            match too_long("group", key, NAME_CHARS) {
                Some(p) => out.push(format!("{p} (a field path)")),
                None => {
                    if let Err(e) = Field::parse(key) {
                        out.push(format!("group.{key}: {e}"));
                    }
                    out.extend(too_long(&format!("group.{key}"), value, TEXT_CHARS));
                }
            }
        }
        out.extend(too_long("until", &self.until, NAME_CHARS));
        if let Some(c) = &self.comment {
            out.extend(too_long("comment", c, TEXT_CHARS));
        }
        out
    }
}

/// Whether a notification says an alert started, ended, or is a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Fired,
    Resolved,
    Test,
}

/// What a channel is told: the versioned payload of the generic webhook,
/// and the source every other channel format is rendered from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Payload version; 1.
    pub version: u32,
    pub kind: MessageKind,
    /// The alert's id (a test message has its own).
    pub alert_id: String,
    pub rule: String,
    /// The rule's condition type: `frequency`, `new_value`, ...
    pub condition: String,
    pub level: Level,
    /// The log whose events fired the rule.
    pub log: String,
    /// The group's field values, by field path.
    pub group: BTreeMap<String, String>,
    /// One sentence for people.
    pub summary: String,
    /// When it fired or resolved, RFC 3339.
    pub at: String,
    /// Ledger indices of (up to 20) events behind the alert.
    #[serde(default)]
    pub indices: Vec<u64>,
    /// The events' ids, in the same order.
    #[serde(default)]
    pub event_ids: Vec<String>,
}

/// Serde for [`Outcome`] by its schema name (the event crate's types do not
/// derive `Deserialize`: events are only ever built by validation).
mod outcome_name {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Outcome>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(o) => s.serialize_str(o.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Outcome>, D::Error> {
        let text = String::deserialize(d)?;
        Outcome::from_name(&text).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown outcome {text:?}; use success, failure or unknown"))
        })
    }
}

mod severity_name {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Severity>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(o) => s.serialize_str(o.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Severity>, D::Error> {
        let text = String::deserialize(d)?;
        Severity::from_name(&text).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown severity {text:?}; use debug, info, notice, warning, error, critical, alert or emergency"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn channels_read_from_toml_and_json_and_refuse_unknown_fields() {
        let toml_text = r#"
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/x"
secret = "s"
headers = { X-Team = "compliance" }
"#;
        let c: ChannelSpec = toml::from_str(toml_text).unwrap();
        let ChannelKind::Webhook { headers, .. } = &c.kind else {
            panic!("{c:?}")
        };
        assert_eq!(headers.get("X-Team").map(String::as_str), Some("compliance"));
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(serde_json::from_value::<ChannelSpec>(json).unwrap(), c);
        let err =
            serde_json::from_str::<ChannelSpec>(r#"{"name": "x", "type": "slack", "url": "https://a", "colour": 1}"#)
                .unwrap_err();
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn urls_lose_their_credentials_when_shown() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T0/B0/xyz", true),
            "https://hooks.slack.com/********"
        );
        assert_eq!(
            redact_url("https://u:p@example.com/hook?token=abc", false),
            "https://********@example.com/hook?********"
        );
        assert_eq!(redact_url("http://127.0.0.1:9/x", false), "http://127.0.0.1:9/x");
        assert_eq!(redact_url("nonsense", false), "********");
    }
}
