//! One server-log entry, whatever format it came from, and its mapping to
//! a `pg.log` event text. Nothing here reads files.

use serde::Serialize;
use std::borrow::Cow;

/// The fields of one entry, named after csvlog's columns.
#[derive(Debug, Default, Clone)]
pub(crate) struct Record<'a> {
    pub timestamp: Option<Cow<'a, str>>,
    pub user: Option<Cow<'a, str>>,
    pub database: Option<Cow<'a, str>>,
    pub pid: Option<u64>,
    /// Client address, without its port.
    pub host: Option<Cow<'a, str>>,
    pub port: Option<u64>,
    pub session_id: Option<Cow<'a, str>>,
    pub session_line: Option<u64>,
    pub command_tag: Option<Cow<'a, str>>,
    pub vxid: Option<Cow<'a, str>>,
    pub xid: Option<u64>,
    pub level: Cow<'a, str>,
    pub sqlstate: Option<Cow<'a, str>>,
    pub message: Cow<'a, str>,
    pub detail: Option<Cow<'a, str>>,
    pub hint: Option<Cow<'a, str>>,
    pub internal_query: Option<Cow<'a, str>>,
    pub context: Option<Cow<'a, str>>,
    pub statement: Option<Cow<'a, str>>,
    /// 1-based character in `statement` where the error is.
    pub cursor_position: Option<u64>,
    pub location: Option<Cow<'a, str>>,
    pub application: Option<Cow<'a, str>>,
    pub backend_type: Option<Cow<'a, str>>,
    pub query_id: Option<i64>,
}

/// The schema's severity for a PostgreSQL level, or `None` if the level is
/// not one the server writes.
pub(crate) fn severity(level: &str) -> Option<&'static str> {
    Some(match level {
        "DEBUG" | "DEBUG1" | "DEBUG2" | "DEBUG3" | "DEBUG4" | "DEBUG5" => "debug",
        "LOG" | "INFO" => "info",
        "NOTICE" => "notice",
        "WARNING" => "warning",
        "ERROR" => "error",
        "FATAL" => "critical",
        "PANIC" => "emergency",
        _ => return None,
    })
}

/// Offsets of the zone abbreviations PostgreSQL commonly prints; others
/// leave `occurred_at` unset (the raw time stays in `details.log_time`).
const ZONES: &[(&str, &str)] = &[
    ("UTC", "Z"),
    ("UCT", "Z"),
    ("GMT", "Z"),
    ("Z", "Z"),
    ("CET", "+01:00"),
    ("CEST", "+02:00"),
    ("EET", "+02:00"),
    ("EEST", "+03:00"),
    ("WET", "Z"),
    ("WEST", "+01:00"),
    ("BST", "+01:00"),
    ("MSK", "+03:00"),
    ("EST", "-05:00"),
    ("EDT", "-04:00"),
    ("CST", "-06:00"),
    ("CDT", "-05:00"),
    ("MST", "-07:00"),
    ("MDT", "-06:00"),
    ("PST", "-08:00"),
    ("PDT", "-07:00"),
    ("JST", "+09:00"),
    ("KST", "+09:00"),
    ("AEST", "+10:00"),
    ("AEDT", "+11:00"),
];

/// "2026-12-06 20:20:42.342 UTC" (or a numeric zone such as "+01" or
/// "-0530") as RFC 3339.
pub(crate) fn rfc3339(pg: &str) -> Option<String> {
    let (datetime, zone) = match pg.rsplit_once(' ') {
        Some((d, z)) if d.len() >= 19 => (d, z),
        _ => return None,
    };
    let (date, time) = datetime.split_once(' ')?;
    if date.len() != 10 || time.len() < 8 {
        return None;
    }
    let offset: Cow<str> = if let Some((_, o)) = ZONES.iter().find(|(n, _)| *n == zone) {
        Cow::Borrowed(o)
    } else {
        let (sign, digits) = zone.split_at(zone.find(['+', '-'])?.checked_add(1)?);
        if sign.len() != 1 {
            return None;
        }
        let digits: String = digits.chars().filter(|c| *c != ':').collect();
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        match digits.len() {
            2 => Cow::Owned(format!("{sign}{digits}:00")),
            4 => Cow::Owned(format!("{sign}{}:{}", &digits[..2], &digits[2..])),
            _ => return None,
        }
    };
    Some(format!("{date}T{time}{offset}"))
}

/// Seconds since the epoch with a fraction ("1765052442.342") as RFC 3339.
pub(crate) fn epoch_rfc3339(epoch: &str) -> Option<String> {
    let (secs, frac) = epoch.split_once('.').unwrap_or((epoch, ""));
    let secs: i64 = secs.parse().ok()?;
    let frac = frac.get(..frac.len().min(3)).unwrap_or("");
    let millis: i64 = format!("{frac:0<3}").parse().ok()?;
    let t = jiff::Timestamp::from_millisecond(secs.checked_mul(1000)?.checked_add(millis)?).ok()?;
    Some(t.to_string())
}

/// Byte budgets of the texts of an entry, before JSON escaping.
const MESSAGE_BYTES: usize = 4_000;
const TEXT_BYTES: usize = 2_000;
const STATEMENT_BYTES: usize = 12_000;
/// `details` must stay under the schema's 32 KiB; leave room for the
/// canonical form's escaping differences.
const DETAILS_BUDGET: usize = 30_000;

/// At most `max` bytes of `s`, cut at a character boundary.
fn cut(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut at = max;
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    (&s[..at], true)
}

#[derive(Serialize)]
struct Event<'a> {
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    occurred_at: Option<String>,
    severity: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<Actor<'a>>,
    source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<Context<'a>>,
    message: &'a str,
    details: Details<'a>,
    idempotency_key: &'a str,
}

#[derive(Serialize)]
struct Actor<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Source {
    service: &'static str,
}

#[derive(Serialize)]
struct Context<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
}

#[derive(Serialize)]
struct Details<'a> {
    level: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_time: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    application: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sqlstate: Option<&'a str>,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    statement: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor_position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    internal_query: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_tag: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vxid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xid: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backend_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

fn opt<'a>(v: &'a Option<Cow<'_, str>>, max: usize, truncated: &mut bool) -> Option<&'a str> {
    let v = v.as_deref().filter(|s| !s.is_empty())?;
    let (s, cut_off) = cut(v, max);
    *truncated |= cut_off;
    Some(s)
}

impl Record<'_> {
    /// The `pg.log` event for this entry, as JSON text. `occurred_at` is
    /// given when the caller computed it (stderr's `%n`), else derived from
    /// the timestamp. Long texts are cut (and `details.truncated` set) so
    /// that the event fits the schema's bounds whatever the text holds.
    pub(crate) fn to_event(&self, key: &str, occurred_at: Option<String>) -> String {
        let occurred_at = occurred_at.or_else(|| self.timestamp.as_deref().and_then(rfc3339));
        let texts = [
            &self.detail,
            &self.hint,
            &self.context,
            &self.statement,
            &self.internal_query,
        ];
        let raw = self.message.len() + texts.iter().map(|t| t.as_ref().map_or(0, |t| t.len())).sum::<usize>();
        let mut shrink = 1;
        loop {
            let event = self.event(key, occurred_at.clone(), shrink);
            // Escaping at most sextuples a text (\u0001); most entries are
            // far below the budget and need no measuring.
            let fits = raw * 6 + 2_000 < DETAILS_BUDGET
                || shrink >= 64
                || serde_json::to_vec(&event.details).is_ok_and(|d| d.len() <= DETAILS_BUDGET);
            if fits {
                // Serialising plain strings and numbers cannot fail.
                return serde_json::to_string(&event).unwrap_or_default();
            }
            shrink *= 2;
        }
    }

    fn event<'e>(&'e self, key: &'e str, occurred_at: Option<String>, shrink: usize) -> Event<'e> {
        let mut truncated = false;
        let (message, m_cut) = cut(&self.message, MESSAGE_BYTES / shrink);
        truncated |= m_cut;
        let user = self.user.as_deref().filter(|u| !u.is_empty());
        let host = self.host.as_deref().filter(|h| !h.is_empty());
        let ip = host.filter(|h| h.parse::<std::net::IpAddr>().is_ok());
        let session_id = self.session_id.as_deref().filter(|s| !s.is_empty());
        let severity = severity(&self.level).unwrap_or("info");
        let text = TEXT_BYTES / shrink;
        Event {
            action: "pg.log",
            occurred_at,
            severity,
            outcome: matches!(severity, "error" | "critical" | "emergency").then_some("failure"),
            actor: user.map(|id| Actor { id, kind: "user" }),
            source: Source { service: "postgresql" },
            context: (ip.is_some() || session_id.is_some()).then_some(Context { ip, session_id }),
            message,
            details: Details {
                level: &self.level,
                log_time: self.timestamp.as_deref(),
                database: opt(&self.database, 256, &mut truncated),
                application: opt(&self.application, 256, &mut truncated),
                sqlstate: opt(&self.sqlstate, 16, &mut truncated),
                message,
                detail: opt(&self.detail, text, &mut truncated),
                hint: opt(&self.hint, text, &mut truncated),
                context: opt(&self.context, text, &mut truncated),
                statement: opt(&self.statement, STATEMENT_BYTES / shrink, &mut truncated),
                cursor_position: self.cursor_position,
                internal_query: opt(&self.internal_query, text, &mut truncated),
                pid: self.pid,
                session_line: self.session_line,
                host: if ip.is_some() { None } else { host },
                port: self.port,
                command_tag: opt(&self.command_tag, 64, &mut truncated),
                vxid: opt(&self.vxid, 64, &mut truncated),
                xid: self.xid.filter(|x| *x != 0),
                backend_type: opt(&self.backend_type, 64, &mut truncated),
                query_id: self.query_id.filter(|q| *q != 0),
                location: opt(&self.location, 256, &mut truncated),
                truncated,
            },
            idempotency_key: key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_become_rfc3339() {
        for (pg, want) in [
            ("2026-12-06 20:20:42.342 UTC", Some("2026-12-06T20:20:42.342Z")),
            ("2026-12-06 20:20:42 CET", Some("2026-12-06T20:20:42+01:00")),
            ("2026-12-06 20:20:42 +0530", Some("2026-12-06T20:20:42+05:30")),
            ("2026-12-06 20:20:42 -03", Some("2026-12-06T20:20:42-03:00")),
            ("2026-12-06 20:20:42 XYZT", None),
            ("yesterday", None),
        ] {
            assert_eq!(rfc3339(pg).as_deref(), want, "{pg}");
        }
        assert_eq!(epoch_rfc3339("0.5").as_deref(), Some("1970-01-01T00:00:00.5Z"));
    }

    /// Texts of every kind of character, far over the bounds: the event
    /// must still be one the trail accepts.
    #[test]
    fn oversized_texts_are_cut_to_fit_the_schema() {
        let nasty = |n: usize| Cow::Owned("é\t\u{1}\"€😀".repeat(n));
        let rec = Record {
            level: Cow::Borrowed("ERROR"),
            message: nasty(3_000),
            detail: Some(nasty(3_000)),
            hint: Some(nasty(3_000)),
            context: Some(nasty(3_000)),
            statement: Some(nasty(20_000)),
            internal_query: Some(nasty(3_000)),
            timestamp: Some(Cow::Borrowed("2026-12-06 20:20:42.342 UTC")),
            ..Record::default()
        };
        let text = rec.to_event("k", None);
        sealtrail_event::accept_json(
            text.as_bytes(),
            sealtrail_event::Timestamp::now(),
            sealtrail_event::Ulid::nil(),
        )
        .expect("the trail accepts the event");
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["details"]["truncated"], true);
        let small = Record {
            level: Cow::Borrowed("LOG"),
            message: Cow::Borrowed("short"),
            ..Record::default()
        };
        let v: serde_json::Value = serde_json::from_str(&small.to_event("k", None)).expect("JSON");
        assert!(v["details"].get("truncated").is_none());
        assert_eq!(v["message"], "short");
    }

    #[test]
    fn levels_map_to_syslog_names() {
        assert_eq!(severity("FATAL"), Some("critical"));
        assert_eq!(severity("DEBUG3"), Some("debug"));
        assert_eq!(severity("LOG"), Some("info"));
        assert_eq!(severity("DETAIL"), None);
    }
}
