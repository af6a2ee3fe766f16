//! Times as people type them in queries: `30m`, `24h`, `7d`, `1w` (that
//! long before now), an RFC 3339 time, or a date (`2026-01-31`, the start
//! of that day in UTC).
//!
//! A date means its first instant, for `--since` and `--until` alike; since
//! ranges are half-open (`since` inclusive, `until` exclusive),
//! `--since 2026-01-31 --until 2026-02-01` is exactly the 31st.

use sealtrail_event::{timestamp, Timestamp};
use thiserror::Error;

/// A time expression that is none of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "{0:?} is not a time: use a duration before now (30s, 30m, 24h, 7d, 1w), \
     an RFC 3339 time (2026-01-31T09:00:00Z) or a date (2026-01-31)"
)]
pub struct TimeSpecError(pub String);

/// Read `spec` relative to `now`.
pub fn parse_time(spec: &str, now: Timestamp) -> Result<Timestamp, TimeSpecError> {
    let bad = || TimeSpecError(spec.to_owned());
    let spec = spec.trim();
    if let Some(seconds) = duration_seconds(spec) {
        let span = jiff::SignedDuration::from_secs(seconds.ok_or_else(bad)?);
        return now.checked_sub(span).map_err(|_| bad());
    }
    if spec.len() == 10 {
        let date: jiff::civil::Date = spec.parse().map_err(|_| bad())?;
        // The strict RFC 3339 reader keeps the same rules as event times.
        return timestamp::parse(&format!("{date}T00:00:00Z")).map_err(|_| bad());
    }
    timestamp::parse(spec).map_err(|_| bad())
}

/// `Some(None)` for a duration-shaped spec whose number overflows.
fn duration_seconds(spec: &str) -> Option<Option<i64>> {
    let unit = spec.chars().last()?;
    let per: i64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return None,
    };
    let digits = &spec[..spec.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse::<i64>().ok().and_then(|n| n.checked_mul(per)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn check(spec: &str, expected: &str) {
        let now: Timestamp = "2026-03-10T12:00:00Z".parse().unwrap();
        let got = parse_time(spec, now).map(|t| t.to_string()).map_err(|e| e.to_string());
        let want = if expected == "error" {
            Err(())
        } else {
            Ok(expected.to_owned())
        };
        match (got, want) {
            (Ok(g), Ok(w)) => assert_eq!(g, w, "{spec}"),
            (Err(_), Err(())) => {}
            (g, w) => panic!("{spec}: got {g:?}, want {w:?}"),
        }
    }

    #[test]
    fn every_form() {
        check("30m", "2026-03-10T11:30:00Z");
        check("24h", "2026-03-09T12:00:00Z");
        check("7d", "2026-03-03T12:00:00Z");
        check("1w", "2026-03-03T12:00:00Z");
        check("45s", "2026-03-10T11:59:15Z");
        check("0m", "2026-03-10T12:00:00Z");
        check("2026-01-31", "2026-01-31T00:00:00Z");
        check("2026-01-31T09:00:00+02:00", "2026-01-31T07:00:00Z");
        check("2026-01-31T09:00:00.5Z", "2026-01-31T09:00:00.5Z");
    }

    #[test]
    fn refusals() {
        for spec in [
            "",
            "m",
            "-5m",
            "5x",
            "5 m",
            "2026-02-30",
            "2026-1-31",
            "yesterday",
            "99999999999999999999d",
        ] {
            check(spec, "error");
        }
        let err = parse_time("soon", Timestamp::UNIX_EPOCH).unwrap_err().to_string();
        assert!(err.contains("\"soon\"") && err.contains("30m"), "{err}");
    }
}
