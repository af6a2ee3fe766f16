//! Event schema v1, data-driven: every case goes through `check`, which
//! runs the Rust validator (exact error messages) and the JSON Schema in
//! docs/event-schema.v1.json (same verdict), and round-trips every accepted
//! event through its canonical entry. The few rules JSON Schema cannot
//! state go through `check_beyond_schema`, which asserts that gap, so the
//! two validators cannot drift apart unnoticed.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use sealtrail_event::limits::*;
use sealtrail_event::{
    accept, accept_json, canonical_entry, event_id, json, parse_entry, EntryError, Event, Rejection, Severity,
    Timestamp, Ulid,
};
use serde_json::{json, Value};

fn t0() -> Timestamp {
    "2024-05-01T12:30:01.5Z".parse().unwrap()
}

fn id0() -> Ulid {
    event_id(t0(), [0x5e, 0xa1, 0x7a, 0x11, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05]).unwrap()
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

static SCHEMA: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_slice(&std::fs::read(repo("docs/event-schema.v1.json")).unwrap()).unwrap());

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap()
}

static SENT: LazyLock<jsonschema::Validator> = LazyLock::new(|| validator(&SCHEMA));

/// The schema's `$defs/entry` as a root schema.
static STORED: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    validator(&json!({
        "$schema": SCHEMA["$schema"],
        "$defs": SCHEMA["$defs"],
        "$ref": "#/$defs/entry",
    }))
});

fn schema_errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Validate `input` with both validators; `expected` is the exact list of
/// Rust errors, empty for a valid event.
#[track_caller]
fn check(input: Value, expected: &[&str]) {
    let errors = rust_errors(&input);
    assert_eq!(errors, expected, "Rust validator on {}", show(&input));
    let schema = schema_errors(&SENT, &input);
    assert_eq!(
        schema.is_empty(),
        expected.is_empty(),
        "JSON Schema disagrees with the Rust validator on {}: schema says {schema:?}",
        show(&input)
    );
}

/// A rule JSON Schema cannot express: the Rust validator refuses with
/// `expected`, the schema accepts.
#[track_caller]
fn check_beyond_schema(input: Value, expected: &[&str]) {
    assert!(!expected.is_empty());
    assert_eq!(rust_errors(&input), expected, "Rust validator on {}", show(&input));
    assert_eq!(
        schema_errors(&SENT, &input),
        Vec::<String>::new(),
        "schema on {}",
        show(&input)
    );
}

/// An input for a failure message, cut short: some cases are 64 KiB.
fn show(input: &Value) -> String {
    let text = input.to_string();
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn rust_errors(input: &Value) -> Vec<String> {
    match accept(input, t0(), id0()) {
        Ok(event) => {
            round_trip(&event);
            vec![]
        }
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// An accepted event's entry reads back as the same event and satisfies
/// the schema's stored form.
#[track_caller]
fn round_trip(event: &Event) {
    let bytes = canonical_entry(event).unwrap();
    assert!(bytes.len() <= MAX_ENTRY_BYTES);
    assert_eq!(&parse_entry(&bytes).unwrap(), event);
    let stored = json::parse(&bytes).unwrap();
    assert_eq!(
        schema_errors(&STORED, &stored),
        Vec::<String>::new(),
        "stored schema on {}",
        show(&stored)
    );
    assert!(
        !SENT.is_valid(&stored),
        "a stored entry carries id and received_at, which senders may not"
    );
}

/// The minimal valid event plus `fields`.
fn with(fields: Value) -> Value {
    let mut event = json!({"action": "user.login"});
    for (k, v) in fields.as_object().unwrap() {
        event[k] = v.clone();
    }
    event
}

fn chars(n: usize, c: char) -> String {
    std::iter::repeat_n(c, n).collect()
}

/// `depth` levels of nested objects: {"a":{"a":…{"a":1}}}.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!({"a": inner}))
}

#[test]
fn valid_events() {
    check(json!({"action": "user.login"}), &[]);
    check(
        json!({
            "occurred_at": "2024-05-01T14:29:58.123+02:00",
            "tenant": "acme",
            "action": "invoice.deleted",
            "category": "billing",
            "crud": "d",
            "outcome": "success",
            "severity": "notice",
            "actor": {
                "id": "user-42", "type": "user", "name": "Ada Lovelace", "email": "ada@example.com",
                "roles": ["admin", "billing"],
                "impersonator": {"id": "support-7", "type": "user", "name": "Support", "email": "s@example.com"}
            },
            "targets": [{"type": "invoice", "id": "INV-2024-0042", "name": "March invoice"}, {"type": "customer", "id": "C-9"}],
            "source": {"service": "billing-api", "version": "1.4.2", "environment": "production", "host": "api-3", "workflow": "month-end"},
            "context": {
                "ip": "2001:db8::17", "user_agent": "Mozilla/5.0", "session_id": "s-1", "request_id": "r-1",
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7", "location": "Paris, FR"
            },
            "changes": {"before": {"status": "open", "total": 120.5}, "after": null, "fields": ["status", "total"]},
            "message": "Invoice INV-2024-0042 deleted",
            "duration_ms": 12.75,
            "error": {"type": "none", "message": "n/a", "stack": "none"},
            "details": {"reason": "duplicate", "count": 3, "nested": {"ok": true, "list": [1, "two", null]}},
            "idempotency_key": "7f1c2a"
        }),
        &[],
    );
    // null means absent for every optional field, server-assigned ones too.
    check(
        with(json!({
            "id": null, "received_at": null, "occurred_at": null, "tenant": null, "category": null,
            "crud": null, "outcome": null, "severity": null, "actor": null, "targets": null, "source": null,
            "context": null, "changes": null, "message": null, "duration_ms": null, "error": null,
            "details": null, "idempotency_key": null
        })),
        &[],
    );
    check(
        with(json!({
            "actor": {"id": "a", "type": null, "name": null, "email": null, "roles": null, "impersonator": null},
            "source": {}, "context": {"ip": null}, "changes": {}, "error": {}, "details": {}, "targets": []
        })),
        &[],
    );
    for action in [
        "a",
        "lead.qualified",
        "user:login",
        "api/v2/orders.create",
        "X_Y-Z.9",
        &chars(NAME_CHARS, 'a'),
    ] {
        check(json!({"action": action}), &[]);
    }
    for severity in Severity::ALL {
        check(with(json!({"severity": severity.as_str()})), &[]);
    }
    for crud in ["c", "r", "u", "d"] {
        check(with(json!({"crud": crud})), &[]);
    }
    for outcome in ["success", "failure", "unknown"] {
        check(with(json!({"outcome": outcome})), &[]);
    }
    for kind in ["user", "service", "system"] {
        check(with(json!({"actor": {"id": "x", "type": kind}})), &[]);
    }
    for time in [
        "2024-05-01T12:30:00Z",
        "2024-05-01t12:30:00z",
        "2024-05-01T12:30:00.123456789+05:30",
        "2024-02-29T23:59:59-08:00",
        "1970-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "9999-12-30T12:00:00Z",
        "2024-05-01T12:30:00-00:00",
        "2016-12-31T23:59:60Z",
    ] {
        check(with(json!({"occurred_at": time})), &[]);
    }
    for ip in [
        "192.0.2.1",
        "2001:db8::1",
        "::1",
        "::ffff:192.0.2.1",
        "2001:DB8:0:0:0:0:0:1",
    ] {
        check(with(json!({"context": {"ip": ip}})), &[]);
    }
    // Lengths count characters, not bytes, in both validators.
    check(with(json!({"tenant": chars(NAME_CHARS, 'é')})), &[]);
    check(with(json!({"message": chars(TEXT_CHARS, '€')})), &[]);
    check(with(json!({"actor": {"id": chars(ID_CHARS, '😀')}})), &[]);
    check(with(json!({"error": {"stack": chars(STACK_CHARS, 'x')}})), &[]);
    check(
        with(json!({"context": {"user_agent": chars(USER_AGENT_CHARS, 'u')}})),
        &[],
    );
    check(
        with(json!({"targets": vec![json!({"type": "t", "id": "i"}); MAX_TARGETS]})),
        &[],
    );
    check(with(json!({"actor": {"id": "a", "roles": vec!["r"; MAX_ROLES]}})), &[]);
    check(with(json!({"changes": {"fields": vec!["f"; MAX_CHANGED_FIELDS]}})), &[]);
    // Numbers up to ±(2^53 − 1), fractions of any size.
    check(with(json!({"duration_ms": 0})), &[]);
    check(with(json!({"duration_ms": 9007199254740991u64})), &[]);
    check(with(json!({"duration_ms": 0.001})), &[]);
    check(
        with(json!({"details": {"max": 9007199254740991u64, "min": -9007199254740991i64, "tiny": 1e-300}})),
        &[],
    );
    check(with(json!({"changes": {"before": 5, "after": "text"}})), &[]);
    // Integral doubles are stored as integers, and the accepted event says so.
    check(
        with(json!({"details": {"z": -0.0, "o": 1.0, "h": [-100.0, 0.5]}, "changes": {"after": 2.0}})),
        &[],
    );
    check(
        with(json!({"changes": {"before": [nested(MAX_DEPTH - 1)], "after": nested(MAX_DEPTH)}})),
        &[],
    );
    // details: any keys (no unknown-field rule), nulls kept, 16 levels.
    check(
        with(json!({"details": {"": null, "colour": "red", "a b": [[], {}]}})),
        &[],
    );
    check(with(json!({"details": nested(MAX_DEPTH)})), &[]);
    check(with(json!({"details": {"s": chars(MAX_DETAILS_BYTES - 10, 'x')}})), &[]);
}

#[test]
fn structure_and_types() {
    check(json!([]), &["expected object, got array"]);
    check(json!("user.login"), &["expected object, got string"]);
    check(json!(null), &["expected object, got null"]);
    check(json!({}), &["action: required"]);
    check(json!({"action": null}), &["action: required"]);
    check(json!({"action": 5}), &["action: expected string, got number"]);
    check(json!({"action": true}), &["action: expected string, got boolean"]);
    check(json!({"action": ["a"]}), &["action: expected string, got array"]);
    check(with(json!({"tenant": {}})), &["tenant: expected string, got object"]);
    check(with(json!({"actor": "bob"})), &["actor: expected object, got string"]);
    check(
        with(json!({"actor": {"id": 5}})),
        &["actor.id: expected string, got number"],
    );
    check(with(json!({"actor": {}})), &["actor.id: required"]);
    check(with(json!({"actor": {"id": null}})), &["actor.id: required"]);
    check(
        with(json!({"actor": {"id": "a", "roles": "admin"}})),
        &["actor.roles: expected array, got string"],
    );
    check(
        with(json!({"actor": {"id": "a", "roles": ["ok", null, 3]}})),
        &[
            "actor.roles[1]: expected string, got null",
            "actor.roles[2]: expected string, got number",
        ],
    );
    check(
        with(json!({"actor": {"id": "a", "impersonator": "root"}})),
        &["actor.impersonator: expected object, got string"],
    );
    check(
        with(json!({"actor": {"id": "a", "impersonator": {"name": "x"}}})),
        &["actor.impersonator.id: required"],
    );
    check(
        with(json!({"targets": {"type": "lead", "id": "L1"}})),
        &["targets: expected array, got object"],
    );
    check(
        with(json!({"targets": [{"type": "lead", "id": "L1"}, {"id": "L2"}, {"type": "lead"}, null, {}]})),
        &[
            "targets[1].type: required",
            "targets[2].id: required",
            "targets[3]: expected object, got null",
            "targets[4].type: required",
            "targets[4].id: required",
        ],
    );
    check(
        with(json!({"targets": [{"type": 1, "id": ["x"]}]})),
        &[
            "targets[0].type: expected string, got number",
            "targets[0].id: expected string, got array",
        ],
    );
    check(with(json!({"source": []})), &["source: expected object, got array"]);
    check(
        with(json!({"source": {"host": false}})),
        &["source.host: expected string, got boolean"],
    );
    check(
        with(json!({"context": {"ip": 3232235777u64}})),
        &["context.ip: expected string, got number"],
    );
    check(
        with(json!({"changes": {"fields": "status"}})),
        &["changes.fields: expected array, got string"],
    );
    check(
        with(json!({"changes": "status"})),
        &["changes: expected object, got string"],
    );
    check(with(json!({"message": 1})), &["message: expected string, got number"]);
    check(
        with(json!({"duration_ms": "5"})),
        &["duration_ms: expected number, got string"],
    );
    check(with(json!({"error": "boom"})), &["error: expected object, got string"]);
    check(
        with(json!({"error": {"stack": ["frame"]}})),
        &["error.stack: expected string, got array"],
    );
    check(with(json!({"details": []})), &["details: expected object, got array"]);
    check(with(json!({"details": "x"})), &["details: expected object, got string"]);
    check(
        with(json!({"idempotency_key": 7})),
        &["idempotency_key: expected string, got number"],
    );
}

#[test]
fn server_assigned_and_unknown_fields() {
    check(
        with(json!({"id": "01HWR6YQ6S0000000000000000"})),
        &["id: assigned by the server; must not be sent"],
    );
    check(
        with(json!({"received_at": "2024-05-01T12:00:00Z"})),
        &["received_at: assigned by the server; must not be sent"],
    );
    check(with(json!({"colour": "red"})), &["colour: unknown field"]);
    check(with(json!({"Action": "x"})), &["Action: unknown field"]);
    check(
        with(json!({"my field": 1, "": 2, "ünïcode": 3})),
        &[
            "[\"\"]: unknown field",
            "[\"my field\"]: unknown field",
            "[\"ünïcode\"]: unknown field",
        ],
    );
    check(
        with(json!({"actor": {"id": "a", "emial": "a@example.com"}})),
        &["actor.emial: unknown field"],
    );
    check(
        with(json!({"actor": {"id": "a", "impersonator": {"id": "b", "roles": []}}})),
        &["actor.impersonator.roles: unknown field"],
    );
    check(
        with(json!({"targets": [{"type": "t", "id": "i", "url": "x"}]})),
        &["targets[0].url: unknown field"],
    );
    check(
        with(json!({"source": {"region": "eu"}})),
        &["source.region: unknown field"],
    );
    check(
        with(json!({"context": {"ip_address": "1.2.3.4"}})),
        &["context.ip_address: unknown field"],
    );
    check(with(json!({"changes": {"diff": {}}})), &["changes.diff: unknown field"]);
    check(with(json!({"error": {"code": 500}})), &["error.code: unknown field"]);
    // Unknown even when null: a misspelt field is a mistake whatever its value.
    check(with(json!({"colour": null})), &["colour: unknown field"]);
}

#[test]
fn values_and_limits() {
    let severities = "debug, info, notice, warning, error, critical, alert, emergency";
    check(
        with(json!({"severity": "loud"})),
        &[&format!("severity: \"loud\" is not one of {severities}")],
    );
    check(
        with(json!({"severity": "INFO"})),
        &[&format!("severity: \"INFO\" is not one of {severities}")],
    );
    check(with(json!({"severity": 3})), &["severity: expected string, got number"]);
    check(
        with(json!({"crud": "create"})),
        &["crud: \"create\" is not one of c, r, u, d"],
    );
    check(
        with(json!({"outcome": "ok"})),
        &["outcome: \"ok\" is not one of success, failure, unknown"],
    );
    check(
        with(json!({"actor": {"id": "a", "type": "robot"}})),
        &["actor.type: \"robot\" is not one of user, service, system"],
    );
    check(
        with(json!({"severity": chars(50, 'z')})),
        &[&format!("severity: \"{}…\" is not one of {severities}", chars(40, 'z'))],
    );

    let dotted = "is not a dotted verb: use ASCII letters, digits and . _ - : /, starting with a letter or digit";
    for action in ["lead qualified", ".hidden", "-x", "é.t", "a*b", "tab\there"] {
        check(
            json!({"action": action}),
            &[&format!("action: {} {dotted}", Value::from(action))],
        );
    }
    check(json!({"action": ""}), &["action: must not be empty"]);
    check(
        json!({"action": chars(NAME_CHARS + 1, 'a')}),
        &["action: 129 characters; the limit is 128"],
    );

    for (field, max) in [
        ("tenant", NAME_CHARS),
        ("category", NAME_CHARS),
        ("message", TEXT_CHARS),
        ("idempotency_key", ID_CHARS),
    ] {
        check(with(json!({field: ""})), &[&format!("{field}: must not be empty")]);
        check(
            with(json!({field: chars(max + 1, 'é')})),
            &[&format!(
                "{field}: {} characters; the limit is {}",
                thousands(max + 1),
                thousands(max)
            )],
        );
    }
    check(with(json!({"actor": {"id": ""}})), &["actor.id: must not be empty"]);
    check(
        with(json!({"actor": {"id": "a", "email": chars(257, '@')}})),
        &["actor.email: 257 characters; the limit is 256"],
    );
    check(
        with(json!({"actor": {"id": "a", "roles": [""]}})),
        &["actor.roles[0]: must not be empty"],
    );
    check(
        with(json!({"actor": {"id": "a", "roles": vec!["r"; MAX_ROLES + 1]}})),
        &["actor.roles: 65 items; the limit is 64"],
    );
    check(
        with(json!({"targets": vec![json!({"type": "t", "id": "i"}); MAX_TARGETS + 1]})),
        &["targets: 65 items; the limit is 64"],
    );
    check(
        with(json!({"targets": [{"type": chars(129, 't'), "id": "i", "name": ""}]})),
        &[
            "targets[0].type: 129 characters; the limit is 128",
            "targets[0].name: must not be empty",
        ],
    );
    check(
        with(json!({"source": {"service": chars(129, 's'), "host": chars(257, 'h')}})),
        &[
            "source.service: 129 characters; the limit is 128",
            "source.host: 257 characters; the limit is 256",
        ],
    );
    check(
        with(json!({"context": {"user_agent": chars(1025, 'u')}})),
        &["context.user_agent: 1,025 characters; the limit is 1,024"],
    );
    check(
        with(json!({"changes": {"fields": ["ok", ""]}})),
        &["changes.fields[1]: must not be empty"],
    );
    check(
        with(json!({"changes": {"fields": vec!["f"; MAX_CHANGED_FIELDS + 1]}})),
        &["changes.fields: 257 items; the limit is 256"],
    );
    check(
        with(json!({"error": {"message": chars(4097, 'm'), "stack": chars(16_385, 's')}})),
        &[
            "error.message: 4,097 characters; the limit is 4,096",
            "error.stack: 16,385 characters; the limit is 16,384",
        ],
    );

    for ip in [
        "999.1.1.1",
        "1.2.3.4:80",
        "localhost",
        "01.2.3.4",
        "fe80::1%eth0",
        "::ffff:1.2.3",
        " 1.2.3.4",
    ] {
        check(
            with(json!({"context": {"ip": ip}})),
            &[&format!(
                "context.ip: {} is not an IPv4 or IPv6 address",
                Value::from(ip)
            )],
        );
    }

    check(
        with(json!({"duration_ms": -1})),
        &["duration_ms: must not be negative, got -1"],
    );
    check(
        with(json!({"duration_ms": -0.5})),
        &["duration_ms: must not be negative, got -0.5"],
    );
    let beyond = "beyond which a double cannot hold it exactly; send it as a string";
    check(
        with(json!({"duration_ms": 9007199254740992u64})),
        &[&format!(
            "duration_ms: 9007199254740992 is outside ±9007199254740991, {beyond}"
        )],
    );
    check(
        with(json!({"duration_ms": 1e300})),
        &[&format!("duration_ms: 1e+300 is outside ±9007199254740991, {beyond}")],
    );
    check(
        with(json!({"details": {"id": 18446744073709551615u64, "neg": -9007199254740992i64, "list": [1, 1e16]}})),
        &[
            &format!("details.id: 18446744073709551615 is outside ±9007199254740991, {beyond}"),
            &format!("details.list[1]: 10000000000000000 is outside ±9007199254740991, {beyond}"),
            &format!("details.neg: -9007199254740992 is outside ±9007199254740991, {beyond}"),
        ],
    );
    check(
        with(json!({"changes": {"after": {"big": 1e20}}})),
        &[&format!(
            "changes.after.big: 100000000000000000000 is outside ±9007199254740991, {beyond}"
        )],
    );
}

#[test]
fn times() {
    for bad in [
        "yesterday",
        "2024-05-01",
        "2024-05-01 12:30:00Z",
        "2024-05-01T12:30Z",
        "2024-05-01T12:30:00",
        "20240501T123000Z",
        "2024-05-01T12:30:00+0200",
        "2024-05-01T12:30:00Z[Europe/Paris]",
        "2023-02-29T12:30:00Z",
        "2024-04-31T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-05-01T24:00:00Z",
    ] {
        check(
            with(json!({"occurred_at": bad})),
            &[&format!("occurred_at: {} is not an RFC 3339 time", Value::from(bad))],
        );
    }
    check(
        with(json!({"occurred_at": 1714566600})),
        &["occurred_at: expected string, got number"],
    );
    check(
        with(json!({"occurred_at": "2024-05-01T12:30:00.1234567891Z"})),
        &["occurred_at: \"2024-05-01T12:30:00.1234567891Z\" has more than 9 fractional digits"],
    );
}

#[test]
fn rules_json_schema_cannot_state() {
    // UTC conversion: written in range, outside it once the offset applies.
    check_beyond_schema(
        with(json!({"occurred_at": "0000-01-01T00:30:00+01:00"})),
        &["occurred_at: \"0000-01-01T00:30:00+01:00\" is outside the years 0000 to 9999 in UTC"],
    );
    check_beyond_schema(
        with(json!({"occurred_at": "9999-12-31T23:00:00Z"})),
        &["occurred_at: \"9999-12-31T23:00:00Z\" is outside the years 0000 to 9999 in UTC"],
    );
    // Depth.
    check_beyond_schema(
        with(json!({"details": nested(MAX_DEPTH + 1)})),
        &[&format!(
            "details{}: nested more than 16 levels deep",
            ".a".repeat(MAX_DEPTH)
        )],
    );
    check_beyond_schema(
        with(json!({"changes": {"before": [nested(MAX_DEPTH)]}})),
        &[&format!(
            "changes.before[0]{}: nested more than 16 levels deep",
            ".a".repeat(MAX_DEPTH - 1)
        )],
    );
    // Canonical byte sizes.
    check_beyond_schema(
        with(json!({"details": {"s": chars(MAX_DETAILS_BYTES, 'x')}})),
        &["details: 32,776 bytes in canonical form; the limit is 32,768"],
    );
    // Every field within its own bound, the whole over an entry's limit:
    // 16,384 four-byte characters are 65,536 bytes.
    check_beyond_schema(
        with(json!({"error": {"stack": chars(STACK_CHARS, '😀')}})),
        &["the event is 65,710 bytes in canonical form; the limit is 65,535 bytes"],
    );
}

#[test]
fn every_error_is_reported_in_schema_order() {
    check(
        json!({
            "zzz": 1,
            "idempotency_key": "",
            "details": [],
            "severity": "loud",
            "id": "x",
            "actor": {"type": "robot", "extra": 1},
            "occurred_at": "now",
            "received_at": "now",
        }),
        &[
            "id: assigned by the server; must not be sent",
            "received_at: assigned by the server; must not be sent",
            "occurred_at: \"now\" is not an RFC 3339 time",
            "action: required",
            "severity: \"loud\" is not one of debug, info, notice, warning, error, critical, alert, emergency",
            "actor.id: required",
            "actor.type: \"robot\" is not one of user, service, system",
            "actor.extra: unknown field",
            "details: expected object, got array",
            "idempotency_key: must not be empty",
            "zzz: unknown field",
        ],
    );
}

#[test]
fn errors_stop_at_the_limit_and_say_how_many_more() {
    let mut input = json!({"action": "a"});
    for i in 0..MAX_ERRORS + 50 {
        input[format!("f{i:03}")] = json!(1);
    }
    let errors = accept(&input, t0(), id0()).unwrap_err();
    assert_eq!(errors.len(), MAX_ERRORS + 1);
    assert_eq!(errors[0].to_string(), "f000: unknown field");
    assert_eq!(errors[MAX_ERRORS - 1].path, format!("f{:03}", MAX_ERRORS - 1));
    assert_eq!(errors[MAX_ERRORS].to_string(), "50 more errors not shown");
}

#[test]
fn server_fields_and_defaults_are_filled_in() {
    let event = accept(&json!({"action": "user.login"}), t0(), id0()).unwrap();
    assert_eq!(event.id, id0());
    assert_eq!(event.received_at, t0());
    assert_eq!(event.occurred_at, t0());
    assert_eq!(event.severity, Severity::Info);
    assert_eq!(
        String::from_utf8(canonical_entry(&event).unwrap()).unwrap(),
        format!(
            r#"{{"action":"user.login","id":"{}","occurred_at":"2024-05-01T12:30:01.5Z","received_at":"2024-05-01T12:30:01.5Z","severity":"info"}}"#,
            id0()
        )
    );

    let sent = with(
        json!({"occurred_at": "2024-05-01T14:00:00.120+02:00", "severity": "alert",
        "context": {"ip": "2001:DB8:0:0:0:0:0:1"}, "duration_ms": -0.0, "details": {"z": 1.0, "a": [1e2]}}),
    );
    let event = accept(&sent, t0(), id0()).unwrap();
    assert_eq!(
        event.occurred_at,
        "2024-05-01T12:00:00.12Z".parse::<Timestamp>().unwrap()
    );
    let entry = String::from_utf8(canonical_entry(&event).unwrap()).unwrap();
    assert!(entry.contains(r#""occurred_at":"2024-05-01T12:00:00.12Z""#), "{entry}");
    assert!(entry.contains(r#""ip":"2001:db8::1""#), "{entry}");
    assert!(entry.contains(r#""duration_ms":0,"#), "{entry}");
    assert!(entry.contains(r#""details":{"a":[100],"z":1}"#), "{entry}");
    assert!(entry.contains(r#""severity":"alert""#), "{entry}");
}

#[test]
fn json_text_errors_carry_line_and_column() {
    let event = accept_json(br#"{"action": "user.login"}"#, t0(), id0()).unwrap();
    assert_eq!(event.action, "user.login");
    let deep = "[".repeat(200);
    let cases: &[(&str, &str)] = &[
        (
            "{\n  \"action\": \"a\",\n  \"action\": \"b\"\n}",
            "invalid JSON at line 3, column 10: duplicate key \"action\"",
        ),
        (
            "{\"action\": \"a\",}",
            "invalid JSON at line 1, column 16: trailing comma",
        ),
        ("{\"action\": 'a'}", "invalid JSON at line 1, column 12: expected value"),
        ("", "invalid JSON at line 1, column 0: EOF while parsing a value"),
        (
            "{\"action\": \"a\"} {}",
            "invalid JSON at line 1, column 17: trailing characters",
        ),
        (
            "\u{feff}{\"action\": \"a\"}",
            "invalid JSON at line 1, column 1: expected value",
        ),
        (&deep, "invalid JSON at line 1, column 128: recursion limit exceeded"),
    ];
    for (text, expected) in cases {
        let err = accept_json(text.as_bytes(), t0(), id0()).unwrap_err();
        assert!(matches!(err, Rejection::Json(_)), "{text}");
        assert_eq!(err.to_string(), *expected, "{text:?}");
    }
    let err = accept_json(br#"{"action": 1, "x": 2}"#, t0(), id0()).unwrap_err();
    assert_eq!(err.to_string(), "action: expected string, got number; x: unknown field");
}

#[test]
fn numbers_too_small_for_a_double_are_refused_with_their_path() {
    // serde_json would read each as 0: the stored event would say what the
    // sender never sent, as 1e400 would (which the parser refuses).
    let cases: &[(&str, &str)] = &[
        (
            r#"{"action": "a", "duration_ms": 1e-400}"#,
            "duration_ms: 1e-400 is too small for a double and would be stored as 0; send 0, or the number as a string",
        ),
        (
            r#"{"action": "a", "details": {"n": [0.5, -2.5E-999], "my key": {"x": 0.0000001e-320}}}"#,
            "details.n[1]: -2.5E-999 is too small for a double and would be stored as 0; send 0, or the number as a string; \
             details[\"my key\"].x: 0.0000001e-320 is too small for a double and would be stored as 0; send 0, or the number as a string",
        ),
        (
            r#"{"action": 1e-400}"#,
            "action: expected string, got number",
        ),
    ];
    for (text, expected) in cases {
        let err = accept_json(text.as_bytes(), t0(), id0()).unwrap_err();
        assert!(matches!(err, Rejection::Invalid(_)), "{text}");
        assert_eq!(err.to_string(), *expected, "{text}");
    }
    // Zero written any way is zero; the smallest double is a double.
    for ok in [
        r#"{"action": "a", "duration_ms": 0e-400, "details": {"z": [0.0, -0.000e-999]}}"#,
        r#"{"action": "a", "details": {"tiny": 5e-324, "text": "1e-400"}}"#,
    ] {
        accept_json(ok.as_bytes(), t0(), id0()).unwrap();
    }
}

#[test]
fn canonical_entry_refuses_oversized_events_with_size_and_limit() {
    let mut event = accept(&json!({"action": "a"}), t0(), id0()).unwrap();
    event.message = Some(chars(70_000, 'm'));
    let err = canonical_entry(&event).unwrap_err();
    assert_eq!(
        err,
        EntryError::TooLarge {
            size: 70_157,
            limit: 65_535
        }
    );
    assert_eq!(
        err.to_string(),
        "the event is 70,157 bytes in canonical form; the limit is 65,535 bytes"
    );
    // Hand-built events are not validated, but a value JSON cannot hold is
    // refused rather than written as null.
    event.duration_ms = Some(f64::NAN);
    assert!(matches!(canonical_entry(&event), Err(EntryError::Unrepresentable(_))));
    event.duration_ms = None;
    // Exactly at the limit is allowed.
    let overhead = 70_157 - 70_000;
    event.message = Some(chars(MAX_ENTRY_BYTES - overhead, 'm'));
    assert_eq!(canonical_entry(&event).unwrap().len(), MAX_ENTRY_BYTES);
}

#[test]
fn stored_entries_must_be_complete_valid_and_canonical() {
    let event = accept(&json!({"action": "a", "tenant": "t"}), t0(), id0()).unwrap();
    let entry = canonical_entry(&event).unwrap();
    assert_eq!(parse_entry(&entry).unwrap(), event);
    let text = String::from_utf8(entry.clone()).unwrap();

    // Whitespace, key order, time zone: same event, not canonical.
    let spaced = text.replace(',', ", ");
    assert_eq!(parse_entry(spaced.as_bytes()), Err(EntryError::NotCanonical));
    let reordered = text
        .replace(r#","tenant":"t"}"#, "}")
        .replace(r#"{"action""#, r#"{"tenant":"t","action""#);
    assert_ne!(reordered, text);
    assert_eq!(parse_entry(reordered.as_bytes()), Err(EntryError::NotCanonical));
    let offset = text.replace("12:30:01.5Z", "14:30:01.5+02:00");
    assert_eq!(parse_entry(offset.as_bytes()), Err(EntryError::NotCanonical));

    // Missing server fields are required in a stored entry.
    let value: Value = serde_json::from_str(r#"{"action":"a","tenant":"t"}"#).unwrap();
    let err = parse_entry(&serde_json::to_vec(&value).unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "not a valid stored event: id: required; received_at: required; occurred_at: required; severity: required"
    );
    let bad_id = text.replace(&id0().to_string(), "not-a-ulid");
    assert_eq!(
        parse_entry(bad_id.as_bytes()).unwrap_err().to_string(),
        "not a valid stored event: id: \"not-a-ulid\" is not a ULID"
    );
    assert!(matches!(parse_entry(b"{"), Err(EntryError::Json(_))));
}

#[test]
fn event_ids_carry_the_receive_time() {
    let id = id0();
    assert_eq!(id.timestamp_ms(), u64::try_from(t0().as_millisecond()).unwrap());
    assert_eq!(id.to_string(), "01HWT246RWBTGQM48004106105");
}

/// The worked examples in docs/event-schema.md are executed: `json sent`
/// blocks must be accepted (received at t0 with id id0), a following
/// `json entry` block is their exact canonical entry and `text leaf-hash`
/// its RFC 9162 leaf hash; `json invalid` blocks are refused with the
/// errors in the following `text errors` block.
#[test]
fn the_documentation_examples_hold() {
    use sha2::{Digest, Sha256};

    let doc = std::fs::read_to_string(repo("docs/event-schema.md")).unwrap();
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if let Some(info) = line.strip_prefix("```") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
            blocks.push((info.to_string(), body.join("\n")));
        }
    }
    let mut last_entry: Option<Vec<u8>> = None;
    let mut last_invalid: Option<Vec<String>> = None;
    let mut counts = [0usize; 5];
    for (info, body) in &blocks {
        match info.as_str() {
            "json sent" => {
                let event = accept_json(body.as_bytes(), t0(), id0()).unwrap_or_else(|e| panic!("{e}\n{body}"));
                let value = json::parse(body.as_bytes()).unwrap();
                assert!(SENT.is_valid(&value), "schema refuses a documented example: {body}");
                round_trip(&event);
                last_entry = Some(canonical_entry(&event).unwrap());
                counts[0] += 1;
            }
            "json entry" => {
                let entry = last_entry.as_ref().expect("an entry block follows a sent block");
                assert_eq!(body, std::str::from_utf8(entry).unwrap());
                counts[1] += 1;
            }
            "text leaf-hash" => {
                let entry = last_entry.as_ref().unwrap();
                let mut leaf = vec![0u8];
                leaf.extend_from_slice(entry);
                let hex: String = Sha256::digest(&leaf).iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(body.trim(), hex);
                counts[2] += 1;
            }
            "json invalid" => {
                let errors = match accept_json(body.as_bytes(), t0(), id0()) {
                    Err(Rejection::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
                    Err(Rejection::Json(e)) => vec![e.to_string()],
                    Ok(_) => panic!("documented as invalid but accepted: {body}"),
                };
                last_invalid = Some(errors);
                counts[3] += 1;
            }
            "text errors" => {
                let errors = last_invalid.take().expect("an errors block follows an invalid block");
                assert_eq!(body.lines().collect::<Vec<_>>(), errors);
                counts[4] += 1;
            }
            _ => {}
        }
    }
    assert!(
        counts[0] >= 2 && counts[1] >= 1 && counts[2] >= 1 && counts[3] >= 1,
        "{counts:?}"
    );
    assert_eq!(counts[3], counts[4]);
}

/// The numbers in the JSON Schema are the ones in `limits`.
#[test]
fn schema_limits_match_the_code() {
    let defs = &SCHEMA["$defs"];
    let fields = &defs["fields"]["properties"];
    assert_eq!(defs["name"]["maxLength"], NAME_CHARS);
    assert_eq!(defs["id"]["maxLength"], ID_CHARS);
    assert_eq!(defs["optional_id"]["maxLength"], ID_CHARS);
    assert_eq!(defs["text"]["maxLength"], TEXT_CHARS);
    assert_eq!(fields["action"]["maxLength"], NAME_CHARS);
    assert_eq!(fields["targets"]["maxItems"], MAX_TARGETS);
    assert_eq!(fields["actor"]["properties"]["roles"]["maxItems"], MAX_ROLES);
    assert_eq!(fields["actor"]["properties"]["roles"]["items"]["maxLength"], NAME_CHARS);
    assert_eq!(
        fields["changes"]["properties"]["fields"]["maxItems"],
        MAX_CHANGED_FIELDS
    );
    assert_eq!(
        fields["context"]["properties"]["user_agent"]["maxLength"],
        USER_AGENT_CHARS
    );
    assert_eq!(fields["error"]["properties"]["stack"]["maxLength"], STACK_CHARS);
    assert_eq!(fields["duration_ms"]["maximum"], MAX_SAFE_INTEGER);
    assert_eq!(defs["free"]["maximum"], MAX_SAFE_INTEGER);
    assert_eq!(defs["free"]["minimum"], -i64::try_from(MAX_SAFE_INTEGER).unwrap());
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

mod differential {
    //! Random events, mostly wrong in small ways, put to both validators:
    //! they must agree on every one. The generator stays clear of the rules
    //! JSON Schema cannot state (sizes, depth, UTC year range), which
    //! `rules_json_schema_cannot_state` covers.
    use super::*;
    use proptest::prelude::*;

    fn leaf() -> impl Strategy<Value = Value> {
        prop::sample::select(vec![
            json!(null),
            json!(true),
            json!(0),
            json!(-1),
            json!(1.5),
            json!(-0.0),
            json!(100.0),
            json!(-3.0),
            json!(1e-7),
            json!(0.1),
            json!(1e300),
            json!(9007199254740991u64),
            json!(9007199254740992u64),
            json!(""),
            json!("x"),
            json!("user.login"),
            json!("a b"),
            json!("é"),
            json!("2024-05-01T12:00:00Z"),
            json!("2024-05-01T12:00:00.5+01:00"),
            json!("2024-02-30T12:00:00Z"),
            json!("yesterday"),
            json!("1.2.3.4"),
            json!("::1"),
            json!("debug"),
            json!("emergency"),
            json!("c"),
            json!("success"),
            json!("user"),
            json!("system"),
            json!(chars(129, 'a')),
            json!(chars(257, 'b')),
            json!([]),
            json!({}),
            json!(["x"]),
            json!([""]),
            json!([null]),
            json!([1]),
            json!({"k": [1, {"n": null}]}),
            json!({"k": 1e17}),
        ])
    }

    /// An object whose keys come from `keys` (plus one stranger) and whose
    /// values are leaves or, for the keys in `nested`, such objects again.
    fn object(
        keys: &'static [&'static str],
        nested: Vec<(&'static str, BoxedStrategy<Value>)>,
    ) -> BoxedStrategy<Value> {
        let mut all: Vec<&'static str> = keys.to_vec();
        all.push("extra");
        let nested = std::rc::Rc::new(nested);
        prop::collection::vec(prop::sample::select(all), 0..6)
            .prop_flat_map(move |picks| {
                let nested = nested.clone();
                let values: Vec<BoxedStrategy<(String, Value)>> = picks
                    .into_iter()
                    .map(|key| {
                        let inner = nested.iter().find(|(k, _)| *k == key).map(|(_, s)| s.clone());
                        match inner {
                            Some(s) => prop_oneof![1 => leaf(), 3 => s]
                                .prop_map(move |v| (key.to_string(), v))
                                .boxed(),
                            None => leaf().prop_map(move |v| (key.to_string(), v)).boxed(),
                        }
                    })
                    .collect();
                values
            })
            .prop_map(|members| Value::Object(members.into_iter().collect()))
            .boxed()
    }

    fn event() -> impl Strategy<Value = Value> {
        let who = object(&["id", "type", "name", "email"], vec![]);
        let actor = object(
            &["id", "type", "name", "email", "roles", "impersonator"],
            vec![
                ("impersonator", who),
                (
                    "roles",
                    prop::collection::vec(leaf(), 0..3).prop_map(Value::Array).boxed(),
                ),
            ],
        );
        let target = object(&["type", "id", "name"], vec![]);
        let targets = prop::collection::vec(prop_oneof![1 => leaf(), 4 => target], 0..3)
            .prop_map(Value::Array)
            .boxed();
        let source = object(&["service", "version", "environment", "host", "workflow"], vec![]);
        let context = object(
            &[
                "ip",
                "user_agent",
                "session_id",
                "request_id",
                "trace_id",
                "span_id",
                "location",
            ],
            vec![],
        );
        let changes = object(
            &["before", "after", "fields"],
            vec![(
                "fields",
                prop::collection::vec(leaf(), 0..3).prop_map(Value::Array).boxed(),
            )],
        );
        let error = object(&["type", "message", "stack"], vec![]);
        let details = object(&["a", "b"], vec![]);
        let event = object(
            &[
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
            ],
            vec![
                ("actor", actor),
                ("targets", targets),
                ("source", source),
                ("context", context),
                ("changes", changes),
                ("error", error),
                ("details", details),
            ],
        );
        // Half the time start from a valid action so that the rest matters.
        (event, any::<bool>()).prop_map(|(mut e, valid_action)| {
            if valid_action {
                e["action"] = json!("user.login");
            }
            e
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn both_validators_agree(input in event()) {
            let errors = rust_errors(&input);
            let schema = schema_errors(&SENT, &input);
            prop_assert_eq!(errors.is_empty(), schema.is_empty(), "{}: Rust {:?}, schema {:?}", input, errors, schema);

        }
    }
}
