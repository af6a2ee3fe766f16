//! The canonical entry bytes written straight from an [`Event`], without
//! the detour through a `serde_json::Value` tree: the fixed schema's member
//! names are all ASCII, so their RFC 8785 order (UTF-16 code units) is
//! byte order and is spelled out below, struct by struct. Only the
//! free-form objects (`details`, `changes.before`/`after`) are sorted at
//! run time, by [`crate::jcs`].
//!
//! The output must equal `jcs::to_vec(&serde_json::to_value(event))`, the
//! definition the serde attributes on [`Event`] give; the tests below hold
//! the two together on generated and hand-made events.

use std::io::Write as _;

use crate::event::{Actor, Changes, Context, Event, Failure, Impersonator, Source, Target};
use crate::jcs::{self, JcsError};
use crate::limits::MAX_ENTRY_BYTES;
use crate::report::EntryError;
use crate::timestamp::Stored;

/// The canonical entry bytes of `event`, refused above [`MAX_ENTRY_BYTES`].
///
/// The event is trusted to be valid, as [`crate::accept`] and
/// [`crate::parse_entry`] build them; an `Event` assembled by hand is not checked
/// against the schema here.
pub fn canonical_entry(event: &Event) -> Result<Vec<u8>, EntryError> {
    // serde_json would quietly write a non-finite f64 as `null`.
    if let Some(d) = event.duration_ms.filter(|d| !d.is_finite()) {
        return Err(EntryError::Unrepresentable(format!("duration_ms is {d}")));
    }
    let mut bytes = Vec::with_capacity(512);
    write_event(event, &mut bytes).map_err(|e| EntryError::Unrepresentable(e.to_string()))?;
    if bytes.len() > MAX_ENTRY_BYTES {
        return Err(EntryError::TooLarge {
            size: bytes.len(),
            limit: MAX_ENTRY_BYTES,
        });
    }
    Ok(bytes)
}

/// Append the canonical bytes of `event` to `out` and return the length of
/// `details` among them (0 without it), which has its own bound. The
/// caller has checked that `duration_ms` is finite. On error `out` must be
/// discarded.
pub(crate) fn write_event(e: &Event, out: &mut Vec<u8>) -> Result<usize, JcsError> {
    let mut details_len = 0;
    let mut o = Object::open(out);
    o.str("action", &e.action);
    if let Some(actor) = &e.actor {
        actor_object(o.key("actor"), actor);
    }
    o.opt_str("category", e.category.as_deref());
    if let Some(changes) = &e.changes {
        changes_object(o.key("changes"), changes)?;
    }
    if let Some(context) = &e.context {
        context_object(o.key("context"), context);
    }
    o.opt_str("crud", e.crud.map(|c| c.as_str()));
    if let Some(details) = &e.details {
        let out = o.key("details");
        let start = out.len();
        jcs::write_object(details, out)?;
        details_len = out.len() - start;
    }
    if let Some(d) = e.duration_ms {
        let mut buffer = ryu_js::Buffer::new();
        o.key("duration_ms")
            .extend_from_slice(buffer.format_finite(d).as_bytes());
    }
    if let Some(error) = &e.error {
        failure_object(o.key("error"), error);
    }
    let mut id = [0u8; ulid::ULID_LEN];
    // Crockford base 32: nothing to escape.
    o.str("id", e.id.array_to_str(&mut id));
    o.opt_str("idempotency_key", e.idempotency_key.as_deref());
    o.opt_str("message", e.message.as_deref());
    time(o.key("occurred_at"), e.occurred_at);
    o.opt_str("outcome", e.outcome.map(|x| x.as_str()));
    time(o.key("received_at"), e.received_at);
    o.str("severity", e.severity.as_str());
    if let Some(source) = &e.source {
        source_object(o.key("source"), source);
    }
    if let Some(targets) = &e.targets {
        let out = o.key("targets");
        out.push(b'[');
        for (i, target) in targets.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            target_object(out, target);
        }
        out.push(b']');
    }
    o.opt_str("tenant", e.tenant.as_deref());
    o.close();
    Ok(details_len)
}

fn actor_object(out: &mut Vec<u8>, a: &Actor) {
    let mut o = Object::open(out);
    o.opt_str("email", a.email.as_deref());
    o.str("id", &a.id);
    if let Some(imp) = &a.impersonator {
        impersonator_object(o.key("impersonator"), imp);
    }
    o.opt_str("name", a.name.as_deref());
    if let Some(roles) = &a.roles {
        string_array(o.key("roles"), roles);
    }
    o.opt_str("type", a.kind.map(|k| k.as_str()));
    o.close();
}

fn impersonator_object(out: &mut Vec<u8>, a: &Impersonator) {
    let mut o = Object::open(out);
    o.opt_str("email", a.email.as_deref());
    o.str("id", &a.id);
    o.opt_str("name", a.name.as_deref());
    o.opt_str("type", a.kind.map(|k| k.as_str()));
    o.close();
}

fn target_object(out: &mut Vec<u8>, t: &Target) {
    let mut o = Object::open(out);
    o.str("id", &t.id);
    o.opt_str("name", t.name.as_deref());
    o.str("type", &t.kind);
    o.close();
}

fn source_object(out: &mut Vec<u8>, s: &Source) {
    let mut o = Object::open(out);
    o.opt_str("environment", s.environment.as_deref());
    o.opt_str("host", s.host.as_deref());
    o.opt_str("service", s.service.as_deref());
    o.opt_str("version", s.version.as_deref());
    o.opt_str("workflow", s.workflow.as_deref());
    o.close();
}

fn context_object(out: &mut Vec<u8>, c: &Context) {
    let mut o = Object::open(out);
    if let Some(ip) = c.ip {
        // Digits, dots, colons and hex letters: nothing to escape.
        let out = o.key("ip");
        out.push(b'"');
        match ip {
            // Its Display, by hand: formatting machinery costs more than
            // the four numbers.
            std::net::IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    if octet >= 100 {
                        out.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        out.push(b'0' + octet / 10 % 10);
                    }
                    out.push(b'0' + octet % 10);
                }
            }
            std::net::IpAddr::V6(_) => {
                let _ = write!(out, "{ip}");
            }
        }
        out.push(b'"');
    }
    o.opt_str("location", c.location.as_deref());
    o.opt_str("request_id", c.request_id.as_deref());
    o.opt_str("session_id", c.session_id.as_deref());
    o.opt_str("span_id", c.span_id.as_deref());
    o.opt_str("trace_id", c.trace_id.as_deref());
    o.opt_str("user_agent", c.user_agent.as_deref());
    o.close();
}

fn changes_object(out: &mut Vec<u8>, c: &Changes) -> Result<(), JcsError> {
    let mut o = Object::open(out);
    if let Some(after) = &c.after {
        jcs::write(after, o.key("after"))?;
    }
    if let Some(before) = &c.before {
        jcs::write(before, o.key("before"))?;
    }
    if let Some(fields) = &c.fields {
        string_array(o.key("fields"), fields);
    }
    o.close();
    Ok(())
}

fn failure_object(out: &mut Vec<u8>, f: &Failure) {
    let mut o = Object::open(out);
    o.opt_str("message", f.message.as_deref());
    o.opt_str("stack", f.stack.as_deref());
    o.opt_str("type", f.kind.as_deref());
    o.close();
}

fn string_array(out: &mut Vec<u8>, items: &[String]) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        jcs::write_string(item, out);
    }
    out.push(b']');
}

/// An instant in its stored form; digits, `-`, `:`, `.`, `T`, `Z` need no
/// escaping.
fn time(out: &mut Vec<u8>, t: jiff::Timestamp) {
    out.push(b'"');
    let dt = jiff::tz::Offset::UTC.to_datetime(t);
    if (0..=9999).contains(&dt.year()) {
        // The stored form, written by hand: jiff's Display costs several
        // times as much. `YYYY-MM-DDTHH:MM:SS`, the fraction without its
        // trailing zeros, `Z`, filled in a fixed buffer and copied once.
        let mut buf = *b"0000-00-00T00:00:00.000000000Z";
        let digits = |buf: &mut [u8], mut n: u32| {
            for d in buf.iter_mut().rev() {
                *d = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        digits(&mut buf[0..4], dt.year() as u32);
        digits(&mut buf[5..7], dt.month() as u32);
        digits(&mut buf[8..10], dt.day() as u32);
        digits(&mut buf[11..13], dt.hour() as u32);
        digits(&mut buf[14..16], dt.minute() as u32);
        digits(&mut buf[17..19], dt.second() as u32);
        let mut nanos = dt.subsec_nanosecond() as u32;
        let mut end = 19;
        if nanos != 0 {
            let mut width = 9;
            while nanos.is_multiple_of(10) {
                nanos /= 10;
                width -= 1;
            }
            digits(&mut buf[20..20 + width], nanos);
            end = 20 + width;
        }
        buf[end] = b'Z';
        out.extend_from_slice(&buf[..=end]);
    } else {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{}", Stored(t));
    }
    out.push(b'"');
}

/// An object being written: members must be added in canonical order.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, empty: true }
    }

    /// Write the separator and `"key":` (keys here need no escaping) and
    /// return the buffer for the value.
    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    fn str(&mut self, key: &str, value: &str) {
        jcs::write_string(value, self.key(key));
    }

    fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.str(key, value);
        }
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::net::IpAddr;

    use proptest::prelude::*;
    use serde_json::{json, Map, Number, Value};

    use super::*;
    use crate::event::{ActorType, Crud, Outcome, Severity};

    /// The definition: the serde shape of the event, canonicalised.
    fn reference(event: &Event) -> Result<Vec<u8>, JcsError> {
        jcs::to_vec(&serde_json::to_value(event).unwrap())
    }

    fn direct(event: &Event) -> Result<Vec<u8>, JcsError> {
        let mut out = Vec::new();
        write_event(event, &mut out).map(|_| out)
    }

    fn check(event: &Event) {
        let expected = reference(event);
        let actual = direct(event);
        match (&expected, &actual) {
            (Ok(e), Ok(a)) => assert_eq!(String::from_utf8_lossy(a), String::from_utf8_lossy(e)),
            _ => assert_eq!(actual, expected),
        }
    }

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    fn bare() -> Event {
        Event {
            id: ulid::Ulid::from_parts(1_700_000_000_000, 42),
            occurred_at: at("2024-05-01T10:30:00.25Z"),
            received_at: at("0000-01-01T00:00:00Z"),
            tenant: None,
            action: "a".into(),
            category: None,
            crud: None,
            outcome: None,
            severity: Severity::Info,
            actor: None,
            targets: None,
            source: None,
            context: None,
            changes: None,
            message: None,
            duration_ms: None,
            error: None,
            details: None,
            idempotency_key: None,
        }
    }

    #[test]
    fn generated_events_match_the_value_path() {
        let received_at = at("2026-03-01T00:00:00Z");
        let id = crate::event_id(received_at, [7; 10]).unwrap();
        for seed in [1, 2, 3, 42, 1234] {
            for text in sealtrail_testgen::events(seed, 3000) {
                let event = crate::accept_json(&text, received_at, id).unwrap();
                check(&event);
            }
        }
    }

    #[test]
    fn awkward_events_match_the_value_path() {
        check(&bare());
        let details = json!({
            "\u{FB33}": 1, "\u{1F602}": 2, "\u{E000}": [1e21, -0.0, 5e-324, 1e-7, 9.999999999999997e-7],
            "": null, "a\"b\\c\u{0}\u{1f}\u{7f}/": "\u{8}\u{c}\n\r\t \u{2028}",
            "big": [u64::MAX, i64::MIN, 9007199254740993u64, 1.5, -1.0, 1e300],
            "nested": {"z": {"y": [{"b": true, "a": false}, [], {}]}, "é": "e\u{301}"},
            "A": 0, "aa": 0, "a": 0,
        });
        let Value::Object(details) = details else {
            unreachable!()
        };
        let ip6: IpAddr = "2001:0db8:0000:0000:0000:0000:0000:0001".parse().unwrap();
        let full = Event {
            tenant: Some("t\u{1F602}".into()),
            category: Some("\"".into()),
            crud: Some(Crud::D),
            outcome: Some(Outcome::Unknown),
            severity: Severity::Emergency,
            actor: Some(Actor {
                id: "\\".into(),
                kind: Some(ActorType::System),
                name: Some("\u{0}".into()),
                email: Some("é@x".into()),
                roles: Some(vec!["r1".into(), "\n".into()]),
                impersonator: Some(Impersonator {
                    id: "i".into(),
                    kind: Some(ActorType::User),
                    name: Some("n".into()),
                    email: Some("e".into()),
                }),
            }),
            targets: Some(vec![
                Target {
                    kind: "k".into(),
                    id: "i".into(),
                    name: None,
                },
                Target {
                    kind: "k2".into(),
                    id: "i2".into(),
                    name: Some("n\t".into()),
                },
            ]),
            source: Some(Source {
                service: Some("s".into()),
                version: Some("v".into()),
                environment: Some("e".into()),
                host: Some("h".into()),
                workflow: Some("w".into()),
            }),
            context: Some(Context {
                ip: Some(ip6),
                user_agent: Some("ua".into()),
                session_id: Some("s".into()),
                request_id: Some("r".into()),
                trace_id: Some("t".into()),
                span_id: Some("sp".into()),
                location: Some("l".into()),
            }),
            changes: Some(Changes {
                before: Some(Value::Object(details.clone())),
                after: Some(json!([1, "x", null, 2.5e-8])),
                fields: Some(vec!["f".into(), "\u{1F602}".into()]),
            }),
            message: Some("m\u{7f}".into()),
            duration_ms: Some(1e21),
            error: Some(Failure {
                kind: Some("t".into()),
                message: Some("m".into()),
                stack: Some("s\r\n".into()),
            }),
            details: Some(details),
            idempotency_key: Some("k".into()),
            ..bare()
        };
        check(&full);
        // Empty optional objects are written as `{}`.
        check(&Event {
            source: Some(Source::default()),
            context: Some(Context::default()),
            changes: Some(Changes::default()),
            error: Some(Failure::default()),
            details: Some(Map::new()),
            targets: Some(vec![]),
            duration_ms: Some(-0.0),
            ..bare()
        });
        // Times the stored form cannot hold still have a serde shape.
        for t in [
            jiff::Timestamp::MIN,
            jiff::Timestamp::MAX,
            at("-000001-12-31T23:59:59.5Z"),
        ] {
            check(&Event {
                occurred_at: t,
                ..bare()
            });
        }
        for t in [
            "2026-01-01T00:00:00.000000001Z",
            "1999-12-31T23:59:59.999Z",
            "9999-12-30T12:00:00.1Z",
        ] {
            check(&Event {
                occurred_at: at(t),
                ..bare()
            });
        }
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.100.9.99",
            "1.20.255.0",
            "::",
            "::ffff:1.2.3.4",
        ] {
            check(&Event {
                context: Some(Context {
                    ip: Some(ip.parse().unwrap()),
                    ..Context::default()
                }),
                ..bare()
            });
        }
        for d in [0.0, 5e-324, 0.1, 123.456, 1e-7, 1e-6, 9007199254740991.0, f64::MAX] {
            check(&Event {
                duration_ms: Some(d),
                ..bare()
            });
        }
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
            any::<String>().prop_map(Value::String),
            "[\u{0}-\u{7f}\u{e000}-\u{ffff}\u{10000}-\u{10fff}]{0,4}".prop_map(Value::String),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-c\u{e000}\u{ffff}\u{10000}\u{1F602}]{0,3}|\\PC{0,4}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), "[ -~]{1,8}"]
    }

    fn event() -> impl Strategy<Value = Event> {
        let people = (
            proptest::option::of((
                text(),
                proptest::option::of(prop::sample::select(ActorType::ALL)),
                proptest::option::of(text()),
                proptest::option::of(text()),
                proptest::option::of(prop::collection::vec(text(), 0..3)),
                proptest::option::of((text(), proptest::option::of(text()))),
            )),
            proptest::option::of(prop::collection::vec(
                (text(), text(), proptest::option::of(text())),
                0..3,
            )),
        );
        let free = (
            proptest::option::of(value().prop_filter_map("object", |v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            })),
            proptest::option::of((
                proptest::option::of(value()),
                proptest::option::of(value()),
                proptest::option::of(prop::collection::vec(text(), 0..3)),
            )),
            proptest::option::of(any::<f64>().prop_filter("finite", |f| f.is_finite())),
        );
        let rest = (
            proptest::option::of(text()),
            text(),
            proptest::option::of(prop::sample::select(Crud::ALL)),
            proptest::option::of(prop::sample::select(Outcome::ALL)),
            prop::sample::select(Severity::ALL),
            proptest::option::of((proptest::option::of(text()), proptest::option::of(text()))),
            proptest::option::of((proptest::option::of(any::<IpAddr>()), proptest::option::of(text()))),
            proptest::option::of(text()),
            proptest::option::of((proptest::option::of(text()), proptest::option::of(text()))),
            any::<(u64, u128, i64, u32)>(),
        );
        (people, free, rest).prop_map(
            |(
                (actor, targets),
                (details, changes, duration_ms),
                (tenant, action, crud, outcome, severity, source, context, message, error, (ms, random, secs, nanos)),
            )| Event {
                id: ulid::Ulid::from_parts(ms & ((1 << 48) - 1), random),
                occurred_at: jiff::Timestamp::new(
                    secs.rem_euclid(253_402_200_000) - 62_167_219_200,
                    [0, 1, 10, 100_000, 120_000_000, 999_999_999, nanos % 1_000_000_000][nanos as usize % 7] as i32,
                )
                .unwrap(),
                tenant,
                action,
                crud,
                outcome,
                severity,
                actor: actor.map(|(id, kind, name, email, roles, imp)| Actor {
                    id,
                    kind,
                    name,
                    email,
                    roles,
                    impersonator: imp.map(|(id, name)| Impersonator {
                        id,
                        kind: None,
                        name,
                        email: None,
                    }),
                }),
                targets: targets.map(|ts| {
                    ts.into_iter()
                        .map(|(kind, id, name)| Target { kind, id, name })
                        .collect()
                }),
                source: source.map(|(service, host)| Source {
                    service,
                    host,
                    ..Source::default()
                }),
                context: context.map(|(ip, trace_id)| Context {
                    ip,
                    trace_id,
                    ..Context::default()
                }),
                changes: changes.map(|(before, after, fields)| Changes { before, after, fields }),
                message,
                duration_ms,
                error: error.map(|(kind, stack)| Failure {
                    kind,
                    stack,
                    message: None,
                }),
                details,
                ..bare()
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn any_event_matches_the_value_path(event in event()) {
            let expected = reference(&event).unwrap();
            prop_assert_eq!(direct(&event).unwrap(), expected);
        }
    }
}
