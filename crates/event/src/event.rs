//! The audit event, schema version 1, as Rust types (docs/event-schema.md).
//!
//! An [`Event`] is always a valid, server-completed event: it is built by
//! [`crate::accept`] from untrusted input or by [`crate::parse_entry`] from
//! a stored entry, never deserialized directly, so that every constraint is
//! checked in one place ([`crate::validate`]). It serializes (serde) to the
//! stored JSON shape, from which [`crate::canonical_entry`] makes the bytes.
//!
//! Serialization rules, which fix the canonical form: absent optional
//! fields are omitted (never `null`); times are UTC RFC 3339
//! ([`crate::timestamp`]); `context.ip` is printed in its standard form
//! (RFC 5952 for IPv6); everything else is stored as sent.

use std::net::IpAddr;

use jiff::Timestamp;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use ulid::Ulid;

/// One audit event: who did what, when, to which thing, with what outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Server-assigned ULID; its time part is `received_at` in milliseconds.
    #[serde(serialize_with = "ulid_string")]
    pub id: Ulid,
    /// When it happened, from the sender; defaults to `received_at`.
    #[serde(serialize_with = "rfc3339")]
    pub occurred_at: Timestamp,
    /// When the server received it; server-assigned.
    #[serde(serialize_with = "rfc3339")]
    pub received_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Dotted verb, e.g. `invoice.deleted`.
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crud: Option<Crud>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Always stored, `info` when the sender gave none.
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<Target>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Milliseconds, fractional allowed, ≥ 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    /// Free-form, bounded (see [`crate::limits`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// Create, read, update or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Crud {
    C,
    R,
    U,
    D,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Unknown,
}

/// Syslog severities (RFC 5424 names), least severe first, so `Ord`
/// compares by gravity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Debug,
    #[default]
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

/// What kind of party acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorType {
    User,
    Service,
    System,
}

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    pub id: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<ActorType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonator: Option<Impersonator>,
}

/// Who was really acting when `actor` was impersonated (an administrator
/// signed in as a customer, a support tool acting for a user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Impersonator {
    pub id: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<ActorType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// A thing acted upon, e.g. `{type: lead, id: LEAD-001}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Where the event was produced.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Source {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
}

/// The request or session the event happened in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Context {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// What changed: free-form `before` and `after`, and the changed field names.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Changes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
}

/// The event's `error` object: what went wrong, for failed operations.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Failure {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
}

macro_rules! names {
    ($ty:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every variant, in schema order.
            pub const ALL: &'static [$ty] = &[$(<$ty>::$variant),+];

            /// The name as it appears in JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(<$ty>::$variant => $name),+
                }
            }

            /// The variant with JSON name `name`.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(<$ty>::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

names!(Crud { C => "c", R => "r", U => "u", D => "d" });
names!(Outcome { Success => "success", Failure => "failure", Unknown => "unknown" });
names!(Severity {
    Debug => "debug",
    Info => "info",
    Notice => "notice",
    Warning => "warning",
    Error => "error",
    Critical => "critical",
    Alert => "alert",
    Emergency => "emergency",
});
names!(ActorType { User => "user", Service => "service", System => "system" });

fn ulid_string<S: Serializer>(id: &Ulid, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

fn rfc3339<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&crate::timestamp::Stored(*t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_match_the_schema_names() {
        for s in Severity::ALL {
            assert_eq!(serde_json::to_value(s).ok(), Some(Value::from(s.as_str())));
            assert_eq!(Severity::from_name(s.as_str()), Some(*s));
        }
        for c in Crud::ALL {
            assert_eq!(serde_json::to_value(c).ok(), Some(Value::from(c.as_str())));
        }
        for o in Outcome::ALL {
            assert_eq!(serde_json::to_value(o).ok(), Some(Value::from(o.as_str())));
        }
        for a in ActorType::ALL {
            assert_eq!(serde_json::to_value(a).ok(), Some(Value::from(a.as_str())));
        }
        assert!(Severity::Emergency > Severity::Warning);
        assert_eq!(Severity::default(), Severity::Info);
    }
}
