//! Validation of untrusted event JSON against schema v1, and the building
//! of an [`Event`] from it. The one place where the schema's rules live in
//! Rust; docs/event-schema.v1.json states the same rules for other tools,
//! and the tests hold the two together.
//!
//! Validation does not stop at the first problem: it reports every error
//! (up to [`MAX_ERRORS`]) as a [`FieldError`] with a path such as
//! `targets[2].type` and a reason a sender can act on. Errors come in
//! schema order within each object, unknown fields after the known ones.
//!
//! Policies, decided here and documented in docs/event-schema.md:
//! - `null` for an optional field means the field is absent, because many
//!   clients serialise their empty optionals that way; it is not stored.
//!   `null` inside `details` and `changes.before`/`after` is data and kept.
//! - Unknown fields are refused at every level of the fixed schema (a typo
//!   such as `actor.emial` must not vanish silently); free-form data
//!   belongs in `details`.
//! - Every string of the fixed schema is non-empty and bounded
//!   ([`crate::limits`]).
//! - Numbers anywhere in an event lie within ±(2^53 − 1)
//!   ([`MAX_SAFE_INTEGER`]), so the stored double equals what was sent.
//!
//! Not here: JSON text parsing ([`crate::json`]), canonical bytes
//! ([`crate::jcs`]), and any clock or randomness: the caller passes
//! `received_at` and `id` in.

use std::fmt;

use jiff::Timestamp;
use serde_json::{Map, Number, Value};
use ulid::Ulid;

use crate::canonical::canonical_entry;
use crate::event::{
    Actor, ActorType, Changes, Context, Crud, Event, Failure, Impersonator, Outcome, Severity, Source, Target,
};
use crate::limits::*;
use crate::mode::Mode;
use crate::report::join;
pub use crate::report::{thousands, FieldError};
use crate::timestamp::{self, TimeError};
use crate::{fast, jcs, json};

/// Why an event sent as JSON text was refused: the text is not JSON, or it
/// is JSON that breaks the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Json(#[from] json::JsonError),
    #[error("{}", join(.0))]
    Invalid(Vec<FieldError>),
}

/// Validate an event as a client sent it and complete it with the
/// server-assigned fields: `id`, `received_at`, `occurred_at` (defaults to
/// `received_at`) and `severity` (defaults to `info`). The result's
/// canonical entry is guaranteed to fit [`MAX_ENTRY_BYTES`].
pub fn accept(input: &Value, received_at: Timestamp, id: Ulid) -> Result<Event, Vec<FieldError>> {
    accept_entry(input, received_at, id).map(|(event, _)| event)
}

/// [`accept`], also returning the event's canonical entry bytes, which
/// validation computes anyway to check the size limit: the ingest path
/// needs both and should not canonicalise twice.
pub fn accept_entry(input: &Value, received_at: Timestamp, id: Ulid) -> Result<(Event, Vec<u8>), Vec<FieldError>> {
    if let Some(accepted) = fast::from_value(input, Mode::Submitted { received_at, id }) {
        return Ok(accepted);
    }
    careful_entry(input, received_at, id)
}

/// [`accept_entry`] without the fast path: the one that words refusals.
pub(crate) fn careful_entry(
    input: &Value,
    received_at: Timestamp,
    id: Ulid,
) -> Result<(Event, Vec<u8>), Vec<FieldError>> {
    let mut c = Checker::default();
    let event = event(&mut c, input, Mode::Submitted { received_at, id });
    finish(c, event)
}

/// [`accept`] for JSON text: refuses text that is not JSON (with line and
/// column) or has duplicate keys, then validates.
pub fn accept_json(text: &[u8], received_at: Timestamp, id: Ulid) -> Result<Event, Rejection> {
    accept_json_entry(text, received_at, id).map(|(event, _)| event)
}

/// [`accept_json`], also returning the canonical entry bytes (see
/// [`accept_entry`]).
pub fn accept_json_entry(text: &[u8], received_at: Timestamp, id: Ulid) -> Result<(Event, Vec<u8>), Rejection> {
    if let Some(accepted) = fast::from_text(text, Mode::Submitted { received_at, id }) {
        return Ok(accepted);
    }
    careful_json_entry(text, received_at, id)
}

/// What a change made to a valid event before it is canonicalised did to
/// the length of its canonical form: bytes added (negative: removed) in
/// the whole entry and, of those, within `details`. With it the limits are
/// checked on both forms from one canonicalisation, of the changed event.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resized {
    pub entry: isize,
    pub details: isize,
}

/// [`accept_json_entry`] for a log that stores events changed from what was
/// sent (PII protection, docs/pii.md): the event is validated as sent, then
/// `change` rewrites it and reports how its canonical length changed, and
/// the entry is canonicalised once, from the changed event. The entry and
/// `details` limits hold for the event as sent and as stored. Refusals of
/// `change` come back as they are; it may be called twice for one input
/// (the careful path words refusals the fast path declined), so it must
/// give the same answer for the same event.
pub fn accept_json_changed(
    text: &[u8],
    received_at: Timestamp,
    id: Ulid,
    change: &dyn Fn(&mut Event) -> Result<Resized, Vec<FieldError>>,
) -> Result<(Event, Vec<u8>), Rejection> {
    if let Some(accepted) = fast::from_text_changed(text, Mode::Submitted { received_at, id }, Some(change)) {
        return Ok(accepted);
    }
    let (mut event, _) = careful_json_entry(text, received_at, id)?;
    change(&mut event).map_err(Rejection::Invalid)?;
    let mut entry = Vec::with_capacity(512);
    let refuse = |path: &str, message: String| {
        Rejection::Invalid(vec![FieldError {
            path: path.into(),
            message,
        }])
    };
    // Valid, so duration_ms is finite, as write_event needs.
    let details_len = crate::canonical::write_event(&event, &mut entry).map_err(|e| refuse("", e.to_string()))?;
    if details_len > MAX_DETAILS_BYTES {
        return Err(refuse(
            "details",
            format!(
                "{details_len} bytes in canonical form once its protected keys are stored; the limit is {MAX_DETAILS_BYTES}"
            ),
        ));
    }
    if entry.len() > MAX_ENTRY_BYTES {
        return Err(refuse(
            "",
            format!(
                "the event is {} bytes in canonical form once its protected fields are stored; the limit is {MAX_ENTRY_BYTES}",
                entry.len()
            ),
        ));
    }
    Ok((event, entry))
}

/// [`accept_json_entry`] without the fast path (see [`crate::fast`]).
pub(crate) fn careful_json_entry(text: &[u8], received_at: Timestamp, id: Ulid) -> Result<(Event, Vec<u8>), Rejection> {
    let value = json::parse(text)?;
    let vanishing = json::vanishing_numbers(text);
    let result = careful_entry(&value, received_at, id);
    if vanishing.is_empty() {
        return result.map_err(Rejection::Invalid);
    }
    let mut errors = result.err().unwrap_or_default();
    for (path, number) in vanishing {
        // A field refused already (a number where a string belongs) is
        // not refused twice.
        if !errors.iter().any(|e| e.path == path) {
            errors.push(FieldError {
                path,
                message: format!(
                    "{number} is too small for a double and would be stored as 0; send 0, or the number as a string"
                ),
            });
        }
    }
    Err(Rejection::Invalid(errors))
}

/// Validate a stored event (as [`crate::parse_entry`] reads it back): `id`
/// and `received_at`, `occurred_at` and `severity` are required rather than
/// forbidden or defaulted.
pub(crate) fn stored(input: &Value) -> Result<(Event, Vec<u8>), Vec<FieldError>> {
    let mut c = Checker::default();
    let event = event(&mut c, input, Mode::Stored);
    finish(c, event)
}

fn finish(mut c: Checker, event: Option<Event>) -> Result<(Event, Vec<u8>), Vec<FieldError>> {
    match event {
        Some(event) if c.errors.is_empty() => match canonical_entry(&event) {
            Ok(entry) => Ok((event, entry)),
            Err(err) => {
                c.push(&Path::Root, err.to_string());
                Err(c.finish())
            }
        },
        _ => Err(c.finish()),
    }
}

const EVENT_FIELDS: &[&str; 19] = &[
    "id",
    "occurred_at",
    "received_at",
    "tenant",
    "action",
    "category",
    "crud",
    "outcome",
    "severity",
    "actor",
    "targets",
    "source",
    "context",
    "changes",
    "message",
    "duration_ms",
    "error",
    "details",
    "idempotency_key",
];

fn event(c: &mut Checker, input: &Value, mode: Mode) -> Option<Event> {
    let root = Path::Root;
    let obj = c.object(&root, input)?;
    let (f, unknown) = fields(obj, EVENT_FIELDS);
    let [f_id, f_occurred_at, f_received_at, f_tenant, f_action, f_category, f_crud, f_outcome, f_severity, f_actor, f_targets, f_source, f_context, f_changes, f_message, f_duration_ms, f_error, f_details, f_idempotency_key] =
        f;
    let (id, received_at) = match mode {
        Mode::Submitted { received_at, id } => {
            for (key, v) in [("id", f_id), ("received_at", f_received_at)] {
                if v.is_some() {
                    c.push(&root.key(key), "assigned by the server; must not be sent");
                }
            }
            (Some(id), Some(received_at))
        }
        Mode::Stored => (
            c.required(f_id, &root, "id", |c, p, v| c.ulid(p, v)),
            c.required(f_received_at, &root, "received_at", |c, p, v| c.time(p, v)),
        ),
    };
    let occurred_at = match mode {
        Mode::Submitted { .. } => c.optional(f_occurred_at, &root, "occurred_at", |c, p, v| c.time(p, v)),
        Mode::Stored => c.required(f_occurred_at, &root, "occurred_at", |c, p, v| c.time(p, v)),
    };
    let tenant = c.optional(f_tenant, &root, "tenant", |c, p, v| c.text(p, v, NAME_CHARS));
    let action = c.required(f_action, &root, "action", |c, p, v| c.action(p, v));
    let category = c.optional(f_category, &root, "category", |c, p, v| c.text(p, v, NAME_CHARS));
    let crud = c.optional(f_crud, &root, "crud", |c, p, v| c.name(p, v, Crud::ALL, Crud::as_str));
    let outcome = c.optional(f_outcome, &root, "outcome", |c, p, v| {
        c.name(p, v, Outcome::ALL, Outcome::as_str)
    });
    let severity_field = |c: &mut Checker, p: &Path, v: &Value| c.name(p, v, Severity::ALL, Severity::as_str);
    let severity = match mode {
        Mode::Submitted { .. } => c.optional(f_severity, &root, "severity", severity_field),
        Mode::Stored => c.required(f_severity, &root, "severity", severity_field),
    };
    let actor = c.optional(f_actor, &root, "actor", actor);
    let targets = c.optional(f_targets, &root, "targets", |c, p, v| c.list(p, v, MAX_TARGETS, target));
    let source = c.optional(f_source, &root, "source", source);
    let context = c.optional(f_context, &root, "context", context);
    let changes = c.optional(f_changes, &root, "changes", changes);
    let message = c.optional(f_message, &root, "message", |c, p, v| c.text(p, v, TEXT_CHARS));
    let duration_ms = c.optional(f_duration_ms, &root, "duration_ms", |c, p, v| c.duration(p, v));
    let error = c.optional(f_error, &root, "error", failure);
    let details = c.optional(f_details, &root, "details", details);
    let idempotency_key = c.optional(f_idempotency_key, &root, "idempotency_key", |c, p, v| {
        c.text(p, v, ID_CHARS)
    });
    if unknown {
        c.unknown(obj, &root, EVENT_FIELDS);
    }

    let (Some(id), Some(received_at), Some(action)) = (id, received_at, action) else {
        return None;
    };
    Some(Event {
        id,
        occurred_at: occurred_at.unwrap_or(received_at),
        received_at,
        tenant,
        action,
        category,
        crud,
        outcome,
        severity: severity.unwrap_or_default(),
        actor,
        targets,
        source,
        context,
        changes,
        message,
        duration_ms,
        error,
        details,
        idempotency_key,
    })
}

const ACTOR_FIELDS: &[&str; 6] = &["id", "type", "name", "email", "roles", "impersonator"];

fn actor(c: &mut Checker, path: &Path, v: &Value) -> Option<Actor> {
    let obj = c.object(path, v)?;
    let (f, unknown) = fields(obj, ACTOR_FIELDS);
    let [f_id, f_type, f_name, f_email, f_roles, f_impersonator] = f;
    let (id, kind, name, email) = identity(c, path, [f_id, f_type, f_name, f_email]);
    let roles = c.optional(f_roles, path, "roles", |c, p, v| {
        c.list(p, v, MAX_ROLES, |c, p, v| c.text(p, v, NAME_CHARS))
    });
    let impersonator = c.optional(f_impersonator, path, "impersonator", impersonator);
    if unknown {
        c.unknown(obj, path, ACTOR_FIELDS);
    }
    Some(Actor {
        id: id?,
        kind,
        name,
        email,
        roles,
        impersonator,
    })
}

/// The fields an actor and its impersonator share (`id`, `type`, `name`,
/// `email`), checked in schema order.
fn identity(
    c: &mut Checker,
    path: &Path,
    [f_id, f_type, f_name, f_email]: [Option<&Value>; 4],
) -> (Option<String>, Option<ActorType>, Option<String>, Option<String>) {
    let id = c.required(f_id, path, "id", |c, p, v| c.text(p, v, ID_CHARS));
    let kind = c.optional(f_type, path, "type", |c, p, v| {
        c.name(p, v, ActorType::ALL, ActorType::as_str)
    });
    let name = c.optional(f_name, path, "name", |c, p, v| c.text(p, v, ID_CHARS));
    let email = c.optional(f_email, path, "email", |c, p, v| c.text(p, v, ID_CHARS));
    (id, kind, name, email)
}

const IMPERSONATOR_FIELDS: &[&str; 4] = &["id", "type", "name", "email"];

fn impersonator(c: &mut Checker, path: &Path, v: &Value) -> Option<Impersonator> {
    let obj = c.object(path, v)?;
    let (f, unknown) = fields(obj, IMPERSONATOR_FIELDS);
    let (id, kind, name, email) = identity(c, path, f);
    if unknown {
        c.unknown(obj, path, IMPERSONATOR_FIELDS);
    }
    Some(Impersonator {
        id: id?,
        kind,
        name,
        email,
    })
}

const TARGET_FIELDS: &[&str; 3] = &["type", "id", "name"];

fn target(c: &mut Checker, path: &Path, v: &Value) -> Option<Target> {
    let obj = c.object(path, v)?;
    let ([f_type, f_id, f_name], unknown) = fields(obj, TARGET_FIELDS);
    let kind = c.required(f_type, path, "type", |c, p, v| c.text(p, v, NAME_CHARS));
    let id = c.required(f_id, path, "id", |c, p, v| c.text(p, v, ID_CHARS));
    let name = c.optional(f_name, path, "name", |c, p, v| c.text(p, v, ID_CHARS));
    if unknown {
        c.unknown(obj, path, TARGET_FIELDS);
    }
    Some(Target {
        kind: kind?,
        id: id?,
        name,
    })
}

const SOURCE_FIELDS: &[&str; 5] = &["service", "version", "environment", "host", "workflow"];

fn source(c: &mut Checker, path: &Path, v: &Value) -> Option<Source> {
    let obj = c.object(path, v)?;
    let ([service, version, environment, host, workflow], unknown) = fields(obj, SOURCE_FIELDS);
    let mut text = |f, key, max| c.optional(f, path, key, |c, p, v| c.text(p, v, max));
    let source = Source {
        service: text(service, "service", NAME_CHARS),
        version: text(version, "version", NAME_CHARS),
        environment: text(environment, "environment", NAME_CHARS),
        host: text(host, "host", ID_CHARS),
        workflow: text(workflow, "workflow", ID_CHARS),
    };
    if unknown {
        c.unknown(obj, path, SOURCE_FIELDS);
    }
    Some(source)
}

const CONTEXT_FIELDS: &[&str; 7] = &[
    "ip",
    "user_agent",
    "session_id",
    "request_id",
    "trace_id",
    "span_id",
    "location",
];

fn context(c: &mut Checker, path: &Path, v: &Value) -> Option<Context> {
    let obj = c.object(path, v)?;
    let ([ip, user_agent, session_id, request_id, trace_id, span_id, location], unknown) = fields(obj, CONTEXT_FIELDS);
    let ip = c.optional(ip, path, "ip", |c, p, v| c.ip(p, v));
    let mut text = |f, key, max| c.optional(f, path, key, |c, p, v| c.text(p, v, max));
    let context = Context {
        ip,
        user_agent: text(user_agent, "user_agent", USER_AGENT_CHARS),
        session_id: text(session_id, "session_id", ID_CHARS),
        request_id: text(request_id, "request_id", ID_CHARS),
        trace_id: text(trace_id, "trace_id", ID_CHARS),
        span_id: text(span_id, "span_id", ID_CHARS),
        location: text(location, "location", ID_CHARS),
    };
    if unknown {
        c.unknown(obj, path, CONTEXT_FIELDS);
    }
    Some(context)
}

const CHANGES_FIELDS: &[&str; 3] = &["before", "after", "fields"];

fn changes(c: &mut Checker, path: &Path, v: &Value) -> Option<Changes> {
    let obj = c.object(path, v)?;
    let ([f_before, f_after, f_fields], unknown) = fields(obj, CHANGES_FIELDS);
    let before = c.optional(f_before, path, "before", |c, p, v| {
        c.free(p, v, 1).then(|| as_stored(v))
    });
    let after = c.optional(f_after, path, "after", |c, p, v| c.free(p, v, 1).then(|| as_stored(v)));
    let fields = c.optional(f_fields, path, "fields", |c, p, v| {
        c.list(p, v, MAX_CHANGED_FIELDS, |c, p, v| c.text(p, v, ID_CHARS))
    });
    if unknown {
        c.unknown(obj, path, CHANGES_FIELDS);
    }
    Some(Changes { before, after, fields })
}

const FAILURE_FIELDS: &[&str; 3] = &["type", "message", "stack"];

fn failure(c: &mut Checker, path: &Path, v: &Value) -> Option<Failure> {
    let obj = c.object(path, v)?;
    let ([kind, message, stack], unknown) = fields(obj, FAILURE_FIELDS);
    let mut text = |f, key, max| c.optional(f, path, key, |c, p, v| c.text(p, v, max));
    let failure = Failure {
        kind: text(kind, "type", ID_CHARS),
        message: text(message, "message", TEXT_CHARS),
        stack: text(stack, "stack", STACK_CHARS),
    };
    if unknown {
        c.unknown(obj, path, FAILURE_FIELDS);
    }
    Some(failure)
}

fn details(c: &mut Checker, path: &Path, v: &Value) -> Option<Map<String, Value>> {
    c.object(path, v)?;
    if !c.free(path, v, 1) {
        return None;
    }
    // Numbers were just checked, so canonicalisation cannot fail; were it
    // to, the size check is moot and the entry check reports it.
    let size = jcs::to_vec(v).map(|bytes| bytes.len()).unwrap_or(0);
    if size > MAX_DETAILS_BYTES {
        c.push(
            path,
            format!(
                "{} bytes in canonical form; the limit is {}",
                thousands(size),
                thousands(MAX_DETAILS_BYTES)
            ),
        );
        return None;
    }
    match as_stored(v) {
        Value::Object(obj) => Some(obj),
        _ => None,
    }
}

/// Free-form data with its numbers as they read back from the stored
/// entry, so that an accepted event equals the one parsed from its entry:
/// the canonical form prints a double with an integral value as an integer
/// (`1.0` → `1`, `-0` → `0`), which serde_json then reads as one. Exact for
/// the numbers validation lets through (|x| ≤ 2^53 − 1, so the cast is
/// lossless and no exponent form arises).
fn as_stored(v: &Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER as f64 => {
                if f >= 0.0 {
                    Value::from(f as u64)
                } else {
                    Value::from(f as i64)
                }
            }
            _ => v.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(as_stored).collect()),
        Value::Object(obj) => Value::Object(obj.iter().map(|(k, v)| (k.clone(), as_stored(v))).collect()),
        Value::Null | Value::Bool(_) | Value::String(_) => v.clone(),
    }
}

/// Collects errors; the field checks return `None` after pushing theirs.
#[derive(Default)]
struct Checker {
    errors: Vec<FieldError>,
    dropped: usize,
}

/// The values of an object's `known` fields, in that order, each `None`
/// when absent or `null` (which mean the same), and whether the object has
/// any other field. One pass over the members rather than a map lookup
/// per field.
fn fields<'a, const N: usize>(obj: &'a Map<String, Value>, known: &[&str; N]) -> ([Option<&'a Value>; N], bool) {
    let mut found = [None; N];
    let mut unknown = false;
    for (key, value) in obj {
        match known.iter().position(|k| *k == key) {
            Some(i) => {
                if !value.is_null() {
                    found[i] = Some(value);
                }
            }
            None => unknown = true,
        }
    }
    (found, unknown)
}

impl Checker {
    fn push(&mut self, path: &Path, message: impl Into<String>) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(FieldError {
                path: path.to_string(),
                message: message.into(),
            });
        } else {
            self.dropped += 1;
        }
    }

    fn finish(mut self) -> Vec<FieldError> {
        if self.dropped > 0 {
            let n = self.dropped;
            self.errors.push(FieldError {
                path: String::new(),
                message: format!("{n} more error{} not shown", if n == 1 { "" } else { "s" }),
            });
        }
        self.errors
    }

    fn optional<T>(
        &mut self,
        value: Option<&Value>,
        path: &Path,
        key: &str,
        check: impl FnOnce(&mut Self, &Path, &Value) -> Option<T>,
    ) -> Option<T> {
        check(self, &path.key(key), value?)
    }

    fn required<T>(
        &mut self,
        value: Option<&Value>,
        path: &Path,
        key: &str,
        check: impl FnOnce(&mut Self, &Path, &Value) -> Option<T>,
    ) -> Option<T> {
        let p = path.key(key);
        match value {
            Some(value) => check(self, &p, value),
            None => {
                self.push(&p, "required");
                None
            }
        }
    }

    /// Refuse the members of `obj` not in `known`, in byte order.
    fn unknown(&mut self, obj: &Map<String, Value>, path: &Path, known: &[&str]) {
        for key in sorted_keys(obj).into_iter().filter(|k| !known.contains(&k.as_str())) {
            self.push(&path.key(key), "unknown field");
        }
    }

    fn expected(&mut self, path: &Path, expected: &str, v: &Value) {
        self.push(path, format!("expected {expected}, got {}", type_name(v)));
    }

    fn object<'a>(&mut self, path: &Path, v: &'a Value) -> Option<&'a Map<String, Value>> {
        match v {
            Value::Object(obj) => Some(obj),
            _ => {
                self.expected(path, "object", v);
                None
            }
        }
    }

    fn string<'a>(&mut self, path: &Path, v: &'a Value) -> Option<&'a str> {
        match v {
            Value::String(s) => Some(s),
            _ => {
                self.expected(path, "string", v);
                None
            }
        }
    }

    fn text(&mut self, path: &Path, v: &Value, max_chars: usize) -> Option<String> {
        let s = self.string(path, v)?;
        if s.is_empty() {
            self.push(path, "must not be empty");
            return None;
        }
        // Cheap bound first: a string of at most max_chars bytes cannot
        // have more characters than that.
        if s.len() > max_chars {
            let chars = s.chars().count();
            if chars > max_chars {
                self.push(
                    path,
                    format!("{} characters; the limit is {}", thousands(chars), thousands(max_chars)),
                );
                return None;
            }
        }
        Some(s.to_string())
    }

    fn action(&mut self, path: &Path, v: &Value) -> Option<String> {
        let s = self.text(path, v, NAME_CHARS)?;
        let bytes = s.as_bytes();
        let allowed = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/');
        if bytes[0].is_ascii_alphanumeric() && bytes.iter().all(allowed) {
            Some(s)
        } else {
            self.push(
                path,
                format!(
                    "{} is not a dotted verb: use ASCII letters, digits and . _ - : /, starting with a letter or digit",
                    quote(&s)
                ),
            );
            None
        }
    }

    fn name<T: Copy>(&mut self, path: &Path, v: &Value, all: &[T], name: fn(T) -> &'static str) -> Option<T> {
        let s = self.string(path, v)?;
        match all.iter().copied().find(|t| name(*t) == s) {
            Some(t) => Some(t),
            None => {
                let names: Vec<&str> = all.iter().map(|t| name(*t)).collect();
                self.push(path, format!("{} is not one of {}", quote(s), names.join(", ")));
                None
            }
        }
    }

    fn time(&mut self, path: &Path, v: &Value) -> Option<Timestamp> {
        let s = self.string(path, v)?;
        match timestamp::parse(s) {
            Ok(t) => Some(t),
            Err(err) => {
                let why = match err {
                    TimeError::NotRfc3339 => "is not an RFC 3339 time",
                    TimeError::TooPrecise => "has more than 9 fractional digits",
                    TimeError::OutOfRange => "is outside the years 0000 to 9999 in UTC",
                };
                self.push(path, format!("{} {why}", quote(s)));
                None
            }
        }
    }

    fn ulid(&mut self, path: &Path, v: &Value) -> Option<Ulid> {
        let s = self.string(path, v)?;
        match Ulid::from_string(s) {
            Ok(id) => Some(id),
            Err(_) => {
                self.push(path, format!("{} is not a ULID", quote(s)));
                None
            }
        }
    }

    fn ip(&mut self, path: &Path, v: &Value) -> Option<std::net::IpAddr> {
        let s = self.string(path, v)?;
        match s.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.push(path, format!("{} is not an IPv4 or IPv6 address", quote(s)));
                None
            }
        }
    }

    fn duration(&mut self, path: &Path, v: &Value) -> Option<f64> {
        let Value::Number(n) = v else {
            self.expected(path, "number", v);
            return None;
        };
        if !self.safe_number(path, n) {
            return None;
        }
        let f = n.as_f64()?;
        if f < 0.0 {
            self.push(path, format!("must not be negative, got {}", number_text(n)));
            return None;
        }
        // -0 is not negative but would print as 0; store what it means.
        Some(if f == 0.0 { 0.0 } else { f })
    }

    fn safe_number(&mut self, path: &Path, n: &Number) -> bool {
        let inside = match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u <= MAX_SAFE_INTEGER,
            (None, Some(i)) => i.unsigned_abs() <= MAX_SAFE_INTEGER,
            // 2^53 - 1 is exact as a double, so comparing doubles is exact.
            (None, None) => n.as_f64().is_some_and(|f| f.abs() <= MAX_SAFE_INTEGER as f64),
        };
        if !inside {
            self.push(
                path,
                format!(
                    "{} is outside ±{MAX_SAFE_INTEGER}, beyond which a double cannot hold it exactly; send it as a string",
                    number_text(n)
                ),
            );
        }
        inside
    }

    fn list<T>(
        &mut self,
        path: &Path,
        v: &Value,
        max_items: usize,
        mut item: impl FnMut(&mut Self, &Path, &Value) -> Option<T>,
    ) -> Option<Vec<T>> {
        let Value::Array(items) = v else {
            self.expected(path, "array", v);
            return None;
        };
        if items.len() > max_items {
            self.push(
                path,
                format!("{} items; the limit is {max_items}", thousands(items.len())),
            );
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, value) in items.iter().enumerate() {
            match item(self, &Path::Index(path, i), value) {
                Some(t) => out.push(t),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// Free-form data: any JSON within the depth and number bounds. Returns
    /// whether it passed.
    fn free(&mut self, path: &Path, v: &Value, depth: usize) -> bool {
        match v {
            Value::Number(n) => self.safe_number(path, n),
            Value::Array(_) | Value::Object(_) if depth > MAX_DEPTH => {
                self.push(path, format!("nested more than {MAX_DEPTH} levels deep"));
                false
            }
            Value::Array(items) => {
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    ok &= self.free(&Path::Index(path, i), item, depth + 1);
                }
                ok
            }
            Value::Object(obj) => {
                let mut ok = true;
                for key in sorted_keys(obj) {
                    ok &= self.free(&path.key(key), &obj[key], depth + 1);
                }
                ok
            }
            Value::Null | Value::Bool(_) | Value::String(_) => true,
        }
    }
}

/// An object's keys in byte order, whatever order the map keeps (serde_json
/// keeps insertion order if any crate in the build enables
/// `preserve_order`), so that errors always come out in the same order.
fn sorted_keys(obj: &Map<String, Value>) -> Vec<&String> {
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort();
    keys
}

/// Where a value sits in the input, rendered only when an error names it:
/// `a.b` for members whose keys look like identifiers, `a["b c"]` (a JSON
/// string) for any other key, `a[2]` for array items; the event itself is
/// the empty path.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl<'a> Path<'a> {
    fn key(&'a self, key: &'a str) -> Path<'a> {
        Path::Key(self, key)
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Path::Root => Ok(()),
            Path::Key(parent, key) => {
                let plain = key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                    && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                match (plain, parent) {
                    (true, Path::Root) => f.write_str(key),
                    (true, _) => write!(f, "{parent}.{key}"),
                    (false, _) => write!(f, "{parent}[{}]", Value::from(key)),
                }
            }
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A sent value quoted as a JSON string for a message, cut at 40 characters
/// so that a refusal never echoes a whole oversized field.
fn quote(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => Value::from(format!("{}…", &s[..cut])).to_string(),
        None => Value::from(s).to_string(),
    }
}

/// A number as sent: integers exactly, doubles as ECMAScript prints them.
fn number_text(n: &Number) -> String {
    match (n.as_u64(), n.as_i64(), n.as_f64()) {
        (Some(u), _, _) => u.to_string(),
        (None, Some(i), _) => i.to_string(),
        (None, None, Some(f)) => jcs::format_f64(f).unwrap_or_else(|_| n.to_string()),
        (None, None, None) => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let root = Path::Root;
        let details = root.key("details");
        assert_eq!(root.key("actor").to_string(), "actor");
        assert_eq!(root.key("actor").key("id").to_string(), "actor.id");
        assert_eq!(details.key("my key").to_string(), "details[\"my key\"]");
        assert_eq!(details.key("1a").to_string(), "details[\"1a\"]");
        assert_eq!(root.key("").to_string(), "[\"\"]");
        assert_eq!(
            Path::Index(&root.key("targets"), 2).key("type").to_string(),
            "targets[2].type"
        );
        assert_eq!(Path::Index(&details, 0).to_string(), "details[0]");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(65_535), "65,535");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn quoting_cuts_long_values() {
        assert_eq!(quote("loud"), "\"loud\"");
        assert_eq!(quote(&"é".repeat(41)), format!("\"{}…\"", "é".repeat(40)));
        assert_eq!(quote("a\"b"), r#""a\"b""#);
    }
}
