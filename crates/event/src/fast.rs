//! The fast path of validation: an event read straight from its JSON text
//! (or from a `Value`) into an [`Event`] by serde visitors over the
//! schema's known fields, with no `serde_json::Value` tree for the fixed
//! fields and no second copy of their strings.
//!
//! It only ever answers "valid: here is the event and its entry" or "not
//! sure" (`None`). On anything wrong (text that is not JSON, a duplicate
//! or unknown key, a wrong type, a broken bound) it gives up at once and
//! the caller runs the careful path in [`crate::validate`], which words
//! every error, in order. So refusals have one source, and what must agree
//! is acceptance: the same inputs accepted, as the same events with the
//! same bytes. The tests below hold the two paths to that.
//!
//! Free-form data (`details`, `changes.before`/`after`) is still built as a
//! `Value` (the [`Event`] holds one), checked while it is built, and in the
//! form it reads back from the entry (`as_stored` in [`crate::validate`]).

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use jiff::Timestamp;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};
use ulid::Ulid;

use crate::canonical;
use crate::event::{
    Actor, ActorType, Changes, Context, Crud, Event, Failure, Impersonator, Outcome, Severity, Source, Target,
};
use crate::limits::*;
use crate::mode::Mode;
use crate::timestamp;

/// The event in `text` and its canonical entry, if the text is a valid
/// event; `None` when it is not, or when this path is unsure.
pub(crate) fn from_text(text: &[u8], mode: Mode) -> Option<(Event, Vec<u8>)> {
    from_text_changed(text, mode, None)
}

/// A change applied to the valid event before its one canonicalisation
/// (see [`crate::validate::accept_json_changed`]).
pub(crate) type Change<'a> = &'a dyn Fn(&mut Event) -> Result<crate::validate::Resized, Vec<crate::FieldError>>;

/// [`from_text`], the event rewritten by `change` (if any) before it is
/// canonicalised; `None` as well when `change` refuses it.
pub(crate) fn from_text_changed(text: &[u8], mode: Mode, change: Option<Change<'_>>) -> Option<(Event, Vec<u8>)> {
    // One UTF-8 check for the whole text rather than one per string.
    let text = std::str::from_utf8(text).ok()?;
    let mut de = serde_json::Deserializer::from_str(text);
    // Filled in place: the draft is large, and moving it through the
    // deserializers' results costs more than reading a small event.
    let mut draft = Draft::default();
    ZERO_DOUBLE.set(false);
    EventSeed(&mut draft).deserialize(&mut de).ok()?;
    de.end().ok()?;
    // Rare: only then is the text read again.
    if ZERO_DOUBLE.get() && !crate::json::vanishing_numbers(text.as_bytes()).is_empty() {
        return None;
    }
    complete(draft, mode, change)
}

thread_local! {
    /// Whether a number read as a double of zero since [`from_text`]
    /// began: the visitors see the double, not its text, and `1e-400`
    /// reads as 0 too, which the careful path refuses.
    static ZERO_DOUBLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// [`from_text`] for a parsed value.
pub(crate) fn from_value(value: &Value, mode: Mode) -> Option<(Event, Vec<u8>)> {
    let mut draft = Draft::default();
    EventSeed(&mut draft).deserialize(value).ok()?;
    complete(draft, mode, None)
}

/// The message of the error that makes serde_json stop; never shown, the
/// careful path words the refusal.
fn decline<E: de::Error>() -> E {
    E::custom("not on the fast path")
}

/// An event's fields as sent, each `None` when absent or `null`.
#[derive(Default)]
struct Draft {
    id: Option<Ulid>,
    occurred_at: Option<Timestamp>,
    received_at: Option<Timestamp>,
    tenant: Option<String>,
    action: Option<String>,
    category: Option<String>,
    crud: Option<Crud>,
    outcome: Option<Outcome>,
    severity: Option<Severity>,
    actor: Option<Actor>,
    targets: Option<Vec<Target>>,
    source: Option<Source>,
    context: Option<Context>,
    changes: Option<Changes>,
    message: Option<String>,
    duration_ms: Option<f64>,
    error: Option<Failure>,
    details: Option<Map<String, Value>>,
    idempotency_key: Option<String>,
}

fn complete(d: Draft, mode: Mode, change: Option<Change<'_>>) -> Option<(Event, Vec<u8>)> {
    let (id, received_at, occurred_at, severity) = match mode {
        Mode::Submitted { received_at, id } => {
            if d.id.is_some() || d.received_at.is_some() {
                return None;
            }
            (
                id,
                received_at,
                d.occurred_at.unwrap_or(received_at),
                d.severity.unwrap_or_default(),
            )
        }
        Mode::Stored => (d.id?, d.received_at?, d.occurred_at?, d.severity?),
    };
    let mut event = Event {
        id,
        occurred_at,
        received_at,
        tenant: d.tenant,
        action: d.action?,
        category: d.category,
        crud: d.crud,
        outcome: d.outcome,
        severity,
        actor: d.actor,
        targets: d.targets,
        source: d.source,
        context: d.context,
        changes: d.changes,
        message: d.message,
        duration_ms: d.duration_ms,
        error: d.error,
        details: d.details,
        idempotency_key: d.idempotency_key,
    };
    let resized = match change {
        Some(change) => change(&mut event).ok()?,
        None => Default::default(),
    };
    // duration_ms is finite here (bounded when read), as write_event needs.
    let mut entry = Vec::with_capacity(512);
    let details_len = canonical::write_event(&event, &mut entry).ok()?;
    // The limits hold for the event as stored and as sent.
    let fits = |details: usize, entry: usize| details <= MAX_DETAILS_BYTES && entry <= MAX_ENTRY_BYTES;
    let sent = (
        details_len.checked_add_signed(-resized.details)?,
        entry.len().checked_add_signed(-resized.entry)?,
    );
    (fits(details_len, entry.len()) && fits(sent.0, sent.1)).then_some((event, entry))
}

/// The keys seen so far in one object: a key sent twice declines, even
/// when one of the values is `null`, as the careful path's parser refuses.
#[derive(Default)]
struct Seen(u32);

impl Seen {
    fn once<E: de::Error>(&mut self, bit: u32) -> Result<(), E> {
        if self.0 & 1 << bit != 0 {
            return Err(decline());
        }
        self.0 |= 1 << bit;
        Ok(())
    }
}

/// Read one object's members: each key names its bit (for [`Seen`]), the
/// field it fills and the seed that reads its value; any other key
/// declines.
macro_rules! members {
    ($map:ident { $($bit:literal $key:literal => $field:expr, $seed:expr;)+ }) => {{
        let mut seen = Seen::default();
        while let Some(Key(key)) = $map.next_key()? {
            match &*key {
                $($key => {
                    seen.once($bit)?;
                    $field = $map.next_value_seed($seed)?;
                })+
                _ => return Err(decline()),
            }
        }
    }};
}

/// An object key, borrowed from the text unless it holds escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v.to_owned())))
    }
}

/// A `visit_str`-only seed: `$check` turns the string into the value or
/// declines.
macro_rules! str_seed {
    ($name:ident($($arg:ident: $ty:ty),*) -> $out:ty, |$s:ident| $check:expr) => {
        #[derive(Clone, Copy)]
        struct $name($($ty),*);

        impl<'de> DeserializeSeed<'de> for $name {
            type Value = $out;

            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<$out, D::Error> {
                d.deserialize_str(self)
            }
        }

        impl<'de> Visitor<'de> for $name {
            type Value = $out;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: de::Error>(self, $s: &str) -> Result<$out, E> {
                let $name($($arg),*) = self;
                let out: Option<$out> = $check;
                out.ok_or_else(decline)
            }
        }
    };
}

/// The careful path's `text` rule: non-empty, at most `max` characters.
fn text_fits(s: &str, max: usize) -> bool {
    !s.is_empty() && (s.len() <= max || s.chars().count() <= max)
}

str_seed!(Text(max: usize) -> String, |s| text_fits(s, max).then(|| s.to_owned()));
str_seed!(Action() -> String, |s| {
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/');
    (text_fits(s, NAME_CHARS) && s.as_bytes()[0].is_ascii_alphanumeric() && s.as_bytes().iter().all(allowed))
        .then(|| s.to_owned())
});
str_seed!(Time() -> Timestamp, |s| timestamp::parse(s).ok());
str_seed!(Id() -> Ulid, |s| Ulid::from_string(s).ok());
str_seed!(Ip() -> IpAddr, |s| s.parse().ok());
str_seed!(CrudName() -> Crud, |s| Crud::from_name(s));
str_seed!(OutcomeName() -> Outcome, |s| Outcome::from_name(s));
str_seed!(SeverityName() -> Severity, |s| Severity::from_name(s));
str_seed!(ActorTypeName() -> ActorType, |s| ActorType::from_name(s));

/// An optional field: `null` is absent.
#[derive(Clone, Copy)]
struct Opt<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Opt<S> {
    type Value = Option<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Opt<S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value or null")
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

/// An array of at most `max` items, each read by the seed.
#[derive(Clone, Copy)]
struct List<S> {
    max: usize,
    item: S,
}

impl<'de, S: DeserializeSeed<'de> + Copy> DeserializeSeed<'de> for List<S> {
    type Value = Vec<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: DeserializeSeed<'de> + Copy> Visitor<'de> for List<S> {
    type Value = Vec<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.item)? {
            if items.len() == self.max {
                return Err(decline());
            }
            items.push(item);
        }
        Ok(items)
    }
}

/// `duration_ms`: a number within ±(2^53 − 1), not negative; `-0` as `0`.
#[derive(Clone, Copy)]
struct Duration;

impl<'de> DeserializeSeed<'de> for Duration {
    type Value = f64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<f64, D::Error> {
        d.deserialize_f64(self)
    }
}

impl<'de> Visitor<'de> for Duration {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        if v <= MAX_SAFE_INTEGER {
            Ok(v as f64)
        } else {
            Err(decline())
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(decline()),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        if v == 0.0 {
            ZERO_DOUBLE.set(true);
        }
        // Refuses NaN too; takes -0, stored as 0.
        if (0.0..=MAX_SAFE_INTEGER as f64).contains(&v) {
            Ok(if v == 0.0 { 0.0 } else { v })
        } else {
            Err(decline())
        }
    }
}

/// Free-form data at nesting level `depth` (the outermost container is
/// level 1), built as it reads back from the entry.
#[derive(Clone, Copy)]
struct Free(usize);

impl<'de> DeserializeSeed<'de> for Free {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Free {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        if v <= MAX_SAFE_INTEGER {
            Ok(Value::from(v))
        } else {
            Err(decline())
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        if v.unsigned_abs() <= MAX_SAFE_INTEGER {
            Ok(Value::from(v))
        } else {
            Err(decline())
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        if v == 0.0 {
            ZERO_DOUBLE.set(true);
        }
        // The bound also refuses NaN and the infinities.
        if v.abs() > MAX_SAFE_INTEGER as f64 || v.is_nan() {
            Err(decline())
        } else if v.fract() == 0.0 {
            // As `as_stored` in validate: an integral double reads back
            // from the entry as an integer; the cast is exact in the bound.
            Ok(if v >= 0.0 {
                Value::from(v as u64)
            } else {
                Value::from(v as i64)
            })
        } else {
            Number::from_f64(v).map(Value::Number).ok_or_else(decline)
        }
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if self.0 > MAX_DEPTH {
            return Err(decline());
        }
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Free(self.0 + 1))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        if self.0 > MAX_DEPTH {
            return Err(decline());
        }
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            match map.entry(key) {
                Entry::Occupied(_) => return Err(decline()),
                Entry::Vacant(entry) => {
                    entry.insert(access.next_value_seed(Free(self.0 + 1))?);
                }
            }
        }
        Ok(Value::Object(map))
    }
}

/// `details`: free-form, but an object.
#[derive(Clone, Copy)]
struct Details;

impl<'de> DeserializeSeed<'de> for Details {
    type Value = Map<String, Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        match d.deserialize_map(Free(1))? {
            Value::Object(map) => Ok(map),
            _ => Err(decline()),
        }
    }
}

/// A seed for an object of the fixed schema: `$body` reads the members
/// from `$map` and returns the value.
macro_rules! object_seed {
    ($name:ident -> $out:ty, |$map:ident| $body:block) => {
        #[derive(Clone, Copy)]
        struct $name;

        impl<'de> DeserializeSeed<'de> for $name {
            type Value = $out;

            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<$out, D::Error> {
                d.deserialize_map(self)
            }
        }

        impl<'de> Visitor<'de> for $name {
            type Value = $out;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut $map: A) -> Result<$out, A::Error> {
                $body
            }
        }
    };
}

/// The event object, read into a draft.
struct EventSeed<'a>(&'a mut Draft);

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        event_members(self.0, map)
    }
}

fn event_members<'de, A: MapAccess<'de>>(d: &mut Draft, mut map: A) -> Result<(), A::Error> {
    members!(map {
        0 "id" => d.id, Opt(Id());
        1 "occurred_at" => d.occurred_at, Opt(Time());
        2 "received_at" => d.received_at, Opt(Time());
        3 "tenant" => d.tenant, Opt(Text(NAME_CHARS));
        4 "action" => d.action, Opt(Action());
        5 "category" => d.category, Opt(Text(NAME_CHARS));
        6 "crud" => d.crud, Opt(CrudName());
        7 "outcome" => d.outcome, Opt(OutcomeName());
        8 "severity" => d.severity, Opt(SeverityName());
        9 "actor" => d.actor, Opt(ActorSeed);
        10 "targets" => d.targets, Opt(List { max: MAX_TARGETS, item: TargetSeed });
        11 "source" => d.source, Opt(SourceSeed);
        12 "context" => d.context, Opt(ContextSeed);
        13 "changes" => d.changes, Opt(ChangesSeed);
        14 "message" => d.message, Opt(Text(TEXT_CHARS));
        15 "duration_ms" => d.duration_ms, Opt(Duration);
        16 "error" => d.error, Opt(FailureSeed);
        17 "details" => d.details, Opt(Details);
        18 "idempotency_key" => d.idempotency_key, Opt(Text(ID_CHARS));
    });
    Ok(())
}

object_seed!(ActorSeed -> Actor, |map| {
    let (mut id, mut kind, mut name, mut email, mut roles, mut impersonator) = (None, None, None, None, None, None);
    members!(map {
        0 "id" => id, Opt(Text(ID_CHARS));
        1 "type" => kind, Opt(ActorTypeName());
        2 "name" => name, Opt(Text(ID_CHARS));
        3 "email" => email, Opt(Text(ID_CHARS));
        4 "roles" => roles, Opt(List { max: MAX_ROLES, item: Text(NAME_CHARS) });
        5 "impersonator" => impersonator, Opt(ImpersonatorSeed);
    });
    Ok(Actor {
        id: id.ok_or_else(decline)?,
        kind,
        name,
        email,
        roles,
        impersonator,
    })
});

object_seed!(ImpersonatorSeed -> Impersonator, |map| {
    let (mut id, mut kind, mut name, mut email) = (None, None, None, None);
    members!(map {
        0 "id" => id, Opt(Text(ID_CHARS));
        1 "type" => kind, Opt(ActorTypeName());
        2 "name" => name, Opt(Text(ID_CHARS));
        3 "email" => email, Opt(Text(ID_CHARS));
    });
    Ok(Impersonator {
        id: id.ok_or_else(decline)?,
        kind,
        name,
        email,
    })
});

object_seed!(TargetSeed -> Target, |map| {
    let (mut kind, mut id, mut name) = (None, None, None);
    members!(map {
        0 "type" => kind, Opt(Text(NAME_CHARS));
        1 "id" => id, Opt(Text(ID_CHARS));
        2 "name" => name, Opt(Text(ID_CHARS));
    });
    Ok(Target {
        kind: kind.ok_or_else(decline)?,
        id: id.ok_or_else(decline)?,
        name,
    })
});

object_seed!(SourceSeed -> Source, |map| {
    let mut s = Source::default();
    members!(map {
        0 "service" => s.service, Opt(Text(NAME_CHARS));
        1 "version" => s.version, Opt(Text(NAME_CHARS));
        2 "environment" => s.environment, Opt(Text(NAME_CHARS));
        3 "host" => s.host, Opt(Text(ID_CHARS));
        4 "workflow" => s.workflow, Opt(Text(ID_CHARS));
    });
    Ok(s)
});

object_seed!(ContextSeed -> Context, |map| {
    let mut c = Context::default();
    members!(map {
        0 "ip" => c.ip, Opt(Ip());
        1 "user_agent" => c.user_agent, Opt(Text(USER_AGENT_CHARS));
        2 "session_id" => c.session_id, Opt(Text(ID_CHARS));
        3 "request_id" => c.request_id, Opt(Text(ID_CHARS));
        4 "trace_id" => c.trace_id, Opt(Text(ID_CHARS));
        5 "span_id" => c.span_id, Opt(Text(ID_CHARS));
        6 "location" => c.location, Opt(Text(ID_CHARS));
    });
    Ok(c)
});

object_seed!(ChangesSeed -> Changes, |map| {
    let mut c = Changes::default();
    members!(map {
        0 "before" => c.before, Opt(Free(1));
        1 "after" => c.after, Opt(Free(1));
        2 "fields" => c.fields, Opt(List { max: MAX_CHANGED_FIELDS, item: Text(ID_CHARS) });
    });
    Ok(c)
});

object_seed!(FailureSeed -> Failure, |map| {
    let mut f = Failure::default();
    members!(map {
        0 "type" => f.kind, Opt(Text(ID_CHARS));
        1 "message" => f.message, Opt(Text(TEXT_CHARS));
        2 "stack" => f.stack, Opt(Text(STACK_CHARS));
    });
    Ok(f)
});

#[cfg(test)]
mod tests;
