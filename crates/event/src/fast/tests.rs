//! The fast path against the careful one: on every input, the public
//! functions (fast path first) must answer exactly as the careful path
//! alone, the fast path must accept exactly what the careful path accepts
//! (declining a valid event would be a silent slowdown), and the stored
//! entry must read back the same way through both.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::entry::careful_parse_entry;
use crate::validate::{careful_entry, careful_json_entry};
use crate::{accept_entry, accept_json_entry, json, parse_entry};

fn t0() -> Timestamp {
    "2024-05-01T12:30:01.5Z".parse().unwrap()
}

fn id0() -> Ulid {
    crate::event_id(t0(), [9; 10]).unwrap()
}

fn submitted() -> Mode {
    Mode::Submitted {
        received_at: t0(),
        id: id0(),
    }
}

/// Both paths on `text`; returns whether it was accepted.
#[track_caller]
fn same(text: &[u8]) -> bool {
    let shown = short(&String::from_utf8_lossy(text));
    let careful = careful_json_entry(text, t0(), id0());
    let fast = from_text(text, submitted());
    match (&careful, &fast) {
        (Ok(c), Some(f)) => assert!(c == f, "different results on {shown}: {c:?} / {f:?}"),
        (Ok(_), None) => panic!("the fast path declined a valid event: {shown}"),
        (Err(e), Some(_)) => panic!("the fast path accepted an invalid event ({e}): {shown}"),
        (Err(_), None) => {}
    }
    assert!(accept_json_entry(text, t0(), id0()) == careful, "on {shown}");
    if let Ok(value) = json::parse(text) {
        let careful_value = careful_entry(&value, t0(), id0());
        assert!(
            from_value(&value, submitted()) == careful_value.clone().ok(),
            "on {shown}"
        );
        assert!(accept_entry(&value, t0(), id0()) == careful_value, "on {shown}");
    }
    match careful {
        Ok((event, entry)) => {
            stored_same(&entry);
            assert_eq!(parse_entry(&entry), Ok(event));
            true
        }
        Err(_) => false,
    }
}

/// Both paths on stored bytes.
#[track_caller]
fn stored_same(bytes: &[u8]) {
    let careful = careful_parse_entry(bytes);
    assert!(
        parse_entry(bytes) == careful,
        "on {}",
        short(&String::from_utf8_lossy(bytes))
    );
    if let Some((event, entry)) = from_text(bytes, Mode::Stored) {
        if entry == bytes {
            assert_eq!(Ok(event), careful);
        }
    }
}

#[test]
fn generated_events_take_the_fast_path() {
    let rich = sealtrail_testgen::Shape {
        richness: 4.0,
        ..Default::default()
    };
    for seed in [1, 2, 3] {
        for text in sealtrail_testgen::events(seed, 2000).chain(sealtrail_testgen::events_with(seed, 2000, &rich)) {
            assert!(same(&text));
        }
    }
}

#[track_caller]
fn accepts(text: &str) {
    assert!(same(text.as_bytes()), "refused: {}", short(text));
}

#[track_caller]
fn refuses(text: &str) {
    assert!(!same(text.as_bytes()), "accepted: {}", short(text));
}

fn short(text: &str) -> String {
    text.chars().take(300).collect()
}

fn deep(levels: usize, open: &str, close: &str, inner: &str) -> String {
    format!("{}{inner}{}", open.repeat(levels), close.repeat(levels))
}

#[test]
fn awkward_texts() {
    for ok in [
        r#"{"action":"a"}"#,
        " \t\r\n{ \"action\" : \"a\" } \n",
        r#"{"\u0061ction":"a","t\u0065nant":"\u00e9\ud83d\ude02"}"#,
        r#"{"action":"a","id":null,"received_at":null,"tenant":null,"actor":null}"#,
        r#"{"action":"a","actor":{"id":"x","type":null,"roles":[],"impersonator":{"id":"y","email":null}}}"#,
        r#"{"action":"a","targets":[],"source":{},"context":{"ip":null},"changes":{},"error":{},"details":{}}"#,
        r#"{"action":"a","duration_ms":-0}"#,
        r#"{"action":"a","duration_ms":-0.0}"#,
        r#"{"action":"a","duration_ms":0}"#,
        r#"{"action":"a","duration_ms":1E2}"#,
        r#"{"action":"a","duration_ms":0.1e1}"#,
        r#"{"action":"a","duration_ms":9007199254740991}"#,
        r#"{"action":"a","duration_ms":9007199254740991.0}"#,
        r#"{"action":"a","duration_ms":5e-324}"#,
        r#"{"action":"a","duration_ms":0e-400}"#,
        r#"{"action":"a","details":{"n":[0.0,-0e5,0.000e-999],"e-1":"1e-400"}}"#,
        r#"{"action":"a","details":{"n":[1.0,-0,-0.0,-1.0,1E2,100e-2,0.5,-9007199254740991,9007199254740991.0]}}"#,
        r#"{"action":"a","details":{"":null,"a\"b":"\u0000\u001f\u007f\/","\ud83d\ude02":1,"\uffff":2}}"#,
        r#"{"action":"a","details":{"a":{"a":1},"b":{"a":2}}}"#,
        r#"{"action":"a","changes":{"before":null,"after":[null,{"x":-0}],"fields":["a"]}}"#,
        r#"{"action":"a","changes":{"before":-0.0,"after":"x"}}"#,
        r#"{"action":"a","changes":{"before":1.0}}"#,
        r#"{"action":"a","context":{"ip":"2001:DB8:0:0:0:0:0:1"}}"#,
        r#"{"action":"a","context":{"ip":"::ffff:1.2.3.4"}}"#,
        r#"{"action":"a","occurred_at":"2016-12-31t23:59:60z"}"#,
        r#"{"action":"a","occurred_at":"0000-01-01T00:00:00Z"}"#,
        r#"{"action":"a","occurred_at":"9999-12-30T22:00:00.999999999Z"}"#,
        r#"{"action":"a","occurred_at":"2024-05-01T00:00:00.5-00:00"}"#,
    ] {
        accepts(ok);
    }
    for bad in [
        "",
        " ",
        "null",
        "[]",
        r#"["action"]"#,
        r#""action""#,
        r#"{"action":"a"} x"#,
        r#"{"action":"a"}{}"#,
        r#"{"action":"a",}"#,
        "\u{feff}{\"action\":\"a\"}",
        r#"{"action":"a","action":"a"}"#,
        r#"{"action":"a","\u0061ction":"a"}"#,
        r#"{"tenant":null,"action":"a","tenant":"t"}"#,
        r#"{"action":"a","actor":{"id":"x","id":"x"}}"#,
        r#"{"action":"a","actor":{"id":"x","impersonator":{"id":"y","type":null,"type":"user"}}}"#,
        r#"{"action":"a","targets":[{"type":"t","id":"i","id":"j"}]}"#,
        r#"{"action":"a","source":{"host":"h","host":null}}"#,
        r#"{"action":"a","context":{"ip":null,"ip":null}}"#,
        r#"{"action":"a","changes":{"fields":[],"fields":[]}}"#,
        r#"{"action":"a","error":{"type":"t","type":"t"}}"#,
        r#"{"action":"a","details":{"k":1,"k":1}}"#,
        r#"{"action":"a","details":{"k":{"k":[{"z":1,"z":null}]}}}"#,
        r#"{"action":"a","changes":{"before":{"k":1,"\u006b":2}}}"#,
        r#"{"action":"a","colour":null}"#,
        r#"{"action":"a","actor":{"id":"x","emial":"e"}}"#,
        r#"{"action":"a","details":[]}"#,
        r#"{"action":"a","details":"x"}"#,
        r#"{"action":"a","targets":{"type":"t","id":"i"}}"#,
        r#"{"action":"a","actor":["x"]}"#,
        r#"{"action":"a","source":["s"]}"#,
        r#"{"action":"a","actor":{"id":"x","roles":"r"}}"#,
        r#"{"action":"a","actor":{"id":"x","roles":[null]}}"#,
        r#"{"action":"a","targets":[null]}"#,
        r#"{"action":"a","targets":[{"type":"t"}]}"#,
        r#"{"action":"a","actor":{}}"#,
        r#"{"action":"a","actor":{"impersonator":{"id":"y"}}}"#,
        r#"{"action":"a","actor":{"id":"x","impersonator":{}}}"#,
        r#"{"action":"a","id":"01HWT246RWBTGQM48004106105"}"#,
        r#"{"action":"a","received_at":"2024-05-01T00:00:00Z"}"#,
        r#"{"action":"a","id":42}"#,
        r#"{"action":""}"#,
        r#"{"action":".a"}"#,
        r#"{"action":"a b"}"#,
        r#"{"action":"é"}"#,
        r#"{"action":1}"#,
        r#"{"action":null}"#,
        r#"{}"#,
        r#"{"action":"a","tenant":""}"#,
        r#"{"action":"a","crud":"C"}"#,
        r#"{"action":"a","severity":"info "}"#,
        r#"{"action":"a","severity":1}"#,
        r#"{"action":"a","outcome":true}"#,
        r#"{"action":"a","duration_ms":-1}"#,
        r#"{"action":"a","duration_ms":-1e-300}"#,
        r#"{"action":"a","duration_ms":"1"}"#,
        r#"{"action":"a","duration_ms":9007199254740992}"#,
        r#"{"action":"a","duration_ms":9007199254740991.5}"#,
        r#"{"action":"a","duration_ms":1e400}"#,
        r#"{"action":"a","duration_ms":1e-400}"#,
        r#"{"action":"a","duration_ms":-1e-400}"#,
        r#"{"action":"a","details":{"n":1e-400}}"#,
        r#"{"action":"a","changes":{"before":[0,{"x y":0.00001e-330}]}}"#,
        r#"{"action":"a","duration_ms":18446744073709551616}"#,
        r#"{"action":"a","details":{"n":9007199254740992}}"#,
        r#"{"action":"a","details":{"n":-9007199254740992}}"#,
        r#"{"action":"a","details":{"n":-9223372036854775809}}"#,
        r#"{"action":"a","details":{"n":1e300}}"#,
        r#"{"action":"a","changes":{"after":[18446744073709551615]}}"#,
        r#"{"action":"a","tenant":"\ud800"}"#,
        r#"{"action":"a","tenant":"\udc00\ud800"}"#,
        r#"{"action":"a","details":{"\ud83d":1}}"#,
        r#"{"action":"a","tenant":"a	b"}"#,
        r#"{"action":"a","context":{"ip":"10.0.0.1:443"}}"#,
        r#"{"action":"a","context":{"ip":"fe80::1%eth0"}}"#,
        r#"{"action":"a","occurred_at":"2024-05-01 00:00:00Z"}"#,
        r#"{"action":"a","occurred_at":"2023-02-29T00:00:00Z"}"#,
        r#"{"action":"a","occurred_at":"2024-05-01T00:00:00.1234567891Z"}"#,
        r#"{"action":"a","occurred_at":"9999-12-31T23:59:59Z"}"#,
        r#"{"action":"a","occurred_at":"0000-01-01T00:00:00+00:01"}"#,
    ] {
        refuses(bad);
    }
    // Invalid UTF-8, in a string and outside one.
    assert!(!same(b"{\"action\":\"a\",\"tenant\":\"\xff\"}"));
    assert!(!same(b"{\"action\":\"a\"}\xff"));
    assert!(!same(b"{\"action\":\"a\",\"tenant\":\"\xed\xa0\x80\"}"));
}

#[test]
fn bounds_on_both_sides() {
    let with = |field: &str, value: String| format!(r#"{{"action":"a",{field}:{value}}}"#);
    let s = |n: usize, c: char| Value::from(std::iter::repeat_n(c, n).collect::<String>()).to_string();
    for (field, max) in [
        (r#""tenant""#, NAME_CHARS),
        (r#""message""#, TEXT_CHARS),
        (r#""idempotency_key""#, ID_CHARS),
    ] {
        for c in ['a', 'é', '😂'] {
            accepts(&with(field, s(max, c)));
            refuses(&with(field, s(max + 1, c)));
        }
    }
    accepts(&format!(r#"{{"action":{}}}"#, s(NAME_CHARS, 'a')));
    refuses(&format!(r#"{{"action":{}}}"#, s(NAME_CHARS + 1, 'a')));
    accepts(&with(r#""error""#, format!(r#"{{"stack":{}}}"#, s(STACK_CHARS, 'é'))));
    refuses(&with(
        r#""error""#,
        format!(r#"{{"stack":{}}}"#, s(STACK_CHARS + 1, 'é')),
    ));
    accepts(&with(
        r#""context""#,
        format!(r#"{{"user_agent":{}}}"#, s(USER_AGENT_CHARS, 'x')),
    ));
    refuses(&with(
        r#""context""#,
        format!(r#"{{"user_agent":{}}}"#, s(USER_AGENT_CHARS + 1, 'x')),
    ));
    let items = |n: usize, item: &str| format!("[{}]", vec![item; n].join(","));
    let target = r#"{"type":"t","id":"i"}"#;
    accepts(&with(r#""targets""#, items(MAX_TARGETS, target)));
    refuses(&with(r#""targets""#, items(MAX_TARGETS + 1, target)));
    accepts(&with(
        r#""actor""#,
        format!(r#"{{"id":"x","roles":{}}}"#, items(MAX_ROLES, r#""r""#)),
    ));
    refuses(&with(
        r#""actor""#,
        format!(r#"{{"id":"x","roles":{}}}"#, items(MAX_ROLES + 1, r#""r""#)),
    ));
    accepts(&with(
        r#""changes""#,
        format!(r#"{{"fields":{}}}"#, items(MAX_CHANGED_FIELDS, r#""f""#)),
    ));
    refuses(&with(
        r#""changes""#,
        format!(r#"{{"fields":{}}}"#, items(MAX_CHANGED_FIELDS + 1, r#""f""#)),
    ));

    // Nesting: the outermost container is level 1.
    accepts(&with(r#""details""#, deep(MAX_DEPTH - 1, r#"{"a":"#, "}", "{}")));
    refuses(&with(r#""details""#, deep(MAX_DEPTH, r#"{"a":"#, "}", "{}")));
    accepts(&with(r#""details""#, deep(MAX_DEPTH - 1, r#"{"a":"#, "}", "[1]")));
    refuses(&with(r#""details""#, deep(MAX_DEPTH - 1, r#"{"a":"#, "}", "[[]]")));
    accepts(&with(
        r#""changes""#,
        format!(r#"{{"after":{}}}"#, deep(MAX_DEPTH, "[", "]", "0")),
    ));
    refuses(&with(
        r#""changes""#,
        format!(r#"{{"before":{}}}"#, deep(MAX_DEPTH + 1, "[", "]", "0")),
    ));
    // Beyond serde_json's recursion limit the text is not JSON at all.
    refuses(&with(r#""details""#, deep(200, r#"{"a":"#, "}", "1")));
    refuses(&with(
        r#""changes""#,
        format!(r#"{{"after":{}}}"#, deep(200, "[", "]", "0")),
    ));

    // details: 32,768 bytes in canonical form, `{"k":"` + n + `"}`, and
    // integral doubles count as the integers they are stored as.
    let details = |n: usize| with(r#""details""#, format!(r#"{{"k":{}}}"#, s(n, 'x')));
    accepts(&details(MAX_DETAILS_BYTES - 8));
    refuses(&details(MAX_DETAILS_BYTES - 7));
    let padded = |n: usize| with(r#""details""#, format!(r#"{{"k":{},"n":1.0}}"#, s(n, 'x')));
    accepts(&padded(MAX_DETAILS_BYTES - 14));
    refuses(&padded(MAX_DETAILS_BYTES - 13));

    // The whole entry: 65,535 bytes, reached with a stack beside full details.
    let entry = |stack: usize| {
        format!(
            r#"{{"action":"a","details":{{"k":{}}},"error":{{"stack":{},"message":{}}},"message":{}}}"#,
            s(MAX_DETAILS_BYTES - 8, 'x'),
            s(stack, 'y'),
            s(TEXT_CHARS, 'é'),
            s(TEXT_CHARS, 'é')
        )
    };
    let base = careful_json_entry(entry(1).as_bytes(), t0(), id0()).unwrap().1.len();
    let fits = 1 + MAX_ENTRY_BYTES - base;
    accepts(&entry(fits));
    refuses(&entry(fits + 1));
}

/// Values that are often wrong somewhere, and some that are right.
fn leaf() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "null",
        "true",
        "0",
        "-0",
        "-0.0",
        "1.0",
        "-1",
        "1.5",
        "1E2",
        "1e-7",
        "1e300",
        "1e400",
        "1e-400",
        "9007199254740991",
        "9007199254740992",
        "-9007199254740991",
        "-9007199254740992",
        "18446744073709551616",
        "\"\"",
        "\"x\"",
        "\"user.login\"",
        "\"a b\"",
        "\"\\u00e9\\ud83d\\ude02\"",
        "\"\\ud800\"",
        "\"\\u0000\\n\\\"\"",
        "\"2024-05-01T12:00:00Z\"",
        "\"2024-05-01T12:00:00.50+01:00\"",
        "\"2024-02-30T12:00:00Z\"",
        "\"1.2.3.4\"",
        "\"::1\"",
        "\"info\"",
        "\"c\"",
        "\"failure\"",
        "\"service\"",
        "\"01HWT246RWBTGQM48004106105\"",
        "[]",
        "{}",
        "[\"x\"]",
        "[null]",
        "[1,{\"a\":[]}]",
        "{\"k\":[1,{\"n\":null}]}",
        "{\"k\":1,\"k\":2}",
        "[1,]",
        "nul",
    ])
}

/// Mutations of a valid event's JSON tree, then of its text.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the n-th node (pre-order) with raw text.
    Replace(usize, &'static str),
    /// Remove the n-th member.
    Remove(usize),
    /// Add a member to the n-th object.
    Add(usize, &'static str, &'static str),
    /// Repeat the n-th object's first member.
    Duplicate(usize),
}

const KEYS: &[&str] = &[
    "id",
    "type",
    "name",
    "email",
    "action",
    "occurred_at",
    "received_at",
    "severity",
    "details",
    "ip",
    "stack",
    "before",
    "fields",
    "roles",
    "extra",
    "",
    "\\u0061ction",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), leaf()).prop_map(|(n, v)| Mutation::Replace(n, v)),
        1 => any::<usize>().prop_map(Mutation::Remove),
        2 => (any::<usize>(), prop::sample::select(KEYS), leaf()).prop_map(|(n, k, v)| Mutation::Add(n, k, v)),
        1 => any::<usize>().prop_map(Mutation::Duplicate),
    ]
}

/// Write `v` as JSON text with the mutations applied, counting nodes and
/// objects in pre-order; `escape` writes non-ASCII as `\u` escapes.
struct Writer<'a> {
    out: String,
    nodes: usize,
    objects: usize,
    members: usize,
    mutations: &'a [Mutation],
    escape: bool,
    pretty: bool,
}

impl Writer<'_> {
    fn string(&mut self, s: &str) {
        if self.escape {
            self.out.push('"');
            for c in s.chars() {
                match c {
                    '"' => self.out.push_str("\\\""),
                    '\\' => self.out.push_str("\\\\"),
                    ' '..='~' => self.out.push(c),
                    _ => {
                        let mut units = [0u16; 2];
                        for u in c.encode_utf16(&mut units) {
                            self.out.push_str(&format!("\\u{u:04X}"));
                        }
                    }
                }
            }
            self.out.push('"');
        } else {
            self.out.push_str(&Value::from(s).to_string());
        }
    }

    fn space(&mut self) {
        if self.pretty {
            self.out.push_str("\n ");
        }
    }

    fn value(&mut self, v: &Value) {
        let node = self.nodes;
        self.nodes += 1;
        for m in self.mutations {
            if let Mutation::Replace(n, raw) = m {
                if *n == node {
                    self.out.push_str(raw);
                    return;
                }
            }
        }
        match v {
            Value::String(s) => self.string(s),
            Value::Array(items) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.space();
                    self.value(item);
                }
                self.out.push(']');
            }
            Value::Object(map) => {
                let object = self.objects;
                self.objects += 1;
                self.out.push('{');
                let mut first = true;
                let mut members: Vec<(String, Option<&Value>, Option<&'static str>)> = vec![];
                for (k, v) in map {
                    let member = self.members;
                    self.members += 1;
                    if !self
                        .mutations
                        .iter()
                        .any(|m| matches!(m, Mutation::Remove(n) if *n == member))
                    {
                        members.push((k.clone(), Some(v), None));
                    }
                }
                for m in self.mutations {
                    match m {
                        Mutation::Add(n, k, raw) if *n == object => members.push((k.to_string(), None, Some(raw))),
                        Mutation::Duplicate(n) if *n == object => {
                            if let Some((k, _, _)) = members.first() {
                                members.push((k.clone(), None, Some("null")));
                            }
                        }
                        _ => {}
                    }
                }
                for (k, v, raw) in members {
                    if !first {
                        self.out.push(',');
                    }
                    first = false;
                    self.space();
                    if k.contains('\\') {
                        self.out.push_str(&format!("\"{k}\""));
                    } else {
                        self.string(&k);
                    }
                    self.out.push(':');
                    match (v, raw) {
                        (Some(v), _) => self.value(v),
                        (None, Some(raw)) => self.out.push_str(raw),
                        (None, None) => self.out.push_str("null"),
                    }
                }
                self.out.push('}');
            }
            _ => self.out.push_str(&v.to_string()),
        }
    }
}

fn write(v: &Value, mutations: &[Mutation], escape: bool, pretty: bool) -> String {
    let mut w = Writer {
        out: String::new(),
        nodes: 0,
        objects: 0,
        members: 0,
        mutations,
        escape,
        pretty,
    };
    w.value(v);
    w.out
}

/// Generated events, rich ones with every optional part, and one event
/// with every field.
fn base_events() -> Vec<Value> {
    let rich = sealtrail_testgen::Shape {
        richness: 4.0,
        ..Default::default()
    };
    let mut events: Vec<Value> = sealtrail_testgen::events(5, 100)
        .chain(sealtrail_testgen::events_with(6, 100, &rich))
        .map(|t| serde_json::from_slice(&t).unwrap())
        .collect();
    events.push(json!({
        "occurred_at": "2024-05-01T14:29:58.123+02:00", "tenant": "acme", "action": "invoice.deleted",
        "category": "billing", "crud": "d", "outcome": "success", "severity": "notice",
        "actor": {"id": "u", "type": "user", "name": "n", "email": "e", "roles": ["a", "b"],
                  "impersonator": {"id": "s", "type": "user", "name": "n", "email": "e"}},
        "targets": [{"type": "invoice", "id": "i", "name": "n"}, {"type": "customer", "id": "c"}],
        "source": {"service": "s", "version": "v", "environment": "e", "host": "h", "workflow": "w"},
        "context": {"ip": "2001:db8::17", "user_agent": "u", "session_id": "s", "request_id": "r",
                    "trace_id": "t", "span_id": "s", "location": "l"},
        "changes": {"before": {"status": "open", "total": 120.5}, "after": [1.0, null], "fields": ["status"]},
        "message": "m", "duration_ms": 12.75, "error": {"type": "t", "message": "m", "stack": "s"},
        "details": {"reason": "d", "count": 3, "nested": {"ok": true, "list": [1, "two", null, -0.0]}},
        "idempotency_key": "k"
    }));
    events
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn mutated_events_get_the_careful_answer(
        index in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 0..3),
        escape in any::<bool>(),
        pretty in any::<bool>(),
    ) {
        static EVENTS: std::sync::LazyLock<Vec<Value>> = std::sync::LazyLock::new(base_events);
        let event = &EVENTS[index.index(EVENTS.len())];
        // Aim the node numbers at nodes that exist.
        let count = write(event, &[], false, false).matches([',', '{', '[', ':']).count() + 1;
        let mutations: Vec<Mutation> = mutations
            .into_iter()
            .map(|m| match m {
                Mutation::Replace(n, v) => Mutation::Replace(n % count, v),
                Mutation::Remove(n) => Mutation::Remove(n % count),
                Mutation::Add(n, k, v) => Mutation::Add(n % 6, k, v),
                Mutation::Duplicate(n) => Mutation::Duplicate(n % 6),
            })
            .collect();
        let text = write(event, &mutations, escape, pretty);
        let accepted = same(text.as_bytes());
        if mutations.is_empty() {
            prop_assert!(accepted);
        }
    }

    #[test]
    fn mutated_entries_read_back_the_careful_way(
        index in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 0..2),
    ) {
        static ENTRIES: std::sync::LazyLock<Vec<Value>> = std::sync::LazyLock::new(|| {
            base_events()
                .iter()
                .map(|e| {
                    let entry = careful_entry(e, t0(), id0()).unwrap().1;
                    serde_json::from_slice(&entry).unwrap()
                })
                .collect()
        });
        let entry = &ENTRIES[index.index(ENTRIES.len())];
        let count = write(entry, &[], false, false).matches([',', '{', '[', ':']).count() + 1;
        let mutations: Vec<Mutation> = mutations
            .into_iter()
            .map(|m| match m {
                Mutation::Replace(n, v) => Mutation::Replace(n % count, v),
                Mutation::Remove(n) => Mutation::Remove(n % count),
                Mutation::Add(n, k, v) => Mutation::Add(n % 6, k, v),
                Mutation::Duplicate(n) => Mutation::Duplicate(n % 6),
            })
            .collect();
        stored_same(write(entry, &mutations, false, false).as_bytes());
        if mutations.is_empty() {
            prop_assert!(parse_entry(write(entry, &[], false, false).as_bytes()).is_ok());
        }
    }
}

/// A change as PII protection makes one: `details.k` replaced by `len`
/// characters, or refused when it is "refuse".
fn replace_k(len: usize) -> impl Fn(&mut Event) -> Result<crate::Resized, Vec<crate::FieldError>> {
    move |e: &mut Event| {
        let Some(Value::String(k)) = e.details.as_mut().and_then(|d| d.get_mut("k")) else {
            return Ok(crate::Resized::default());
        };
        if k == "refuse" {
            return Err(vec![crate::FieldError {
                path: "details.k".into(),
                message: "refused by the change".into(),
            }]);
        }
        let before = crate::jcs::string_len(k) as isize;
        *k = "h".repeat(len);
        let grown = crate::jcs::string_len(k) as isize - before;
        Ok(crate::Resized {
            entry: grown,
            details: grown,
        })
    }
}

/// `accept_json_changed` on `text`, after checking that the fast path
/// accepts exactly what it accepts.
#[track_caller]
fn changed(text: &str, len: usize) -> Result<(Event, Vec<u8>), crate::Rejection> {
    let change = replace_k(len);
    let change: Change<'_> = &change;
    let result = crate::accept_json_changed(text.as_bytes(), t0(), id0(), change);
    let fast = from_text_changed(text.as_bytes(), submitted(), Some(change));
    match (&result, fast) {
        (Ok(r), Some(f)) => assert!(*r == f, "different results on {}", short(text)),
        (Ok(_), None) => panic!("the fast path declined a valid changed event: {}", short(text)),
        (Err(e), Some(_)) => panic!("the fast path accepted a refused changed event ({e}): {}", short(text)),
        (Err(_), None) => {}
    }
    if let Ok((event, entry)) = &result {
        assert_eq!(&crate::canonical_entry(event).unwrap(), entry);
    }
    result
}

#[test]
fn changed_events_keep_the_limits_as_sent_and_as_stored() {
    let details = |n: usize| format!(r#"{{"action":"a","details":{{"k":"{}"}}}}"#, "x".repeat(n));
    // `{"k":"` + n + `"}`: 8 bytes around the value.
    let fits = MAX_DETAILS_BYTES - 8;
    let (event, _) = changed(&details(fits), 69).unwrap();
    assert_eq!(event.details.unwrap()["k"], "h".repeat(69));
    changed(&details(fits), fits).unwrap();
    // Grown past the limit by the change: refused, naming details.
    let e = changed(&details(fits), fits + 1).unwrap_err().to_string();
    assert!(
        e.contains("details") && e.contains("once its protected keys are stored"),
        "{e}"
    );
    // Over the limit as sent, though the change would shrink it.
    let e = changed(&details(fits + 1), 69).unwrap_err().to_string();
    assert!(e.contains("details"), "{e}");
    // The change's own refusal comes back as it is.
    let e = changed(r#"{"action":"a","details":{"k":"refuse"}}"#, 69)
        .unwrap_err()
        .to_string();
    assert!(e.contains("details.k") && e.contains("refused by the change"), "{e}");
    // An invalid event is refused as always, before any change.
    let e = changed(r#"{"action":7,"details":{"k":"refuse"}}"#, 69)
        .unwrap_err()
        .to_string();
    assert!(e.contains("action") && !e.contains("refused by the change"), "{e}");
}
