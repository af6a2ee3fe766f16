//! When a job runs: cron expressions (five fields, or six with seconds
//! first) evaluated in an IANA time zone by `croner`, the word forms
//! `daily at HH:MM [on weekdays]`, `weekly [on DAY] at HH:MM`,
//! `monthly on day N at HH:MM` (each turned into a cron expression), and
//! `once at <RFC 3339 time>`.
//!
//! Daylight saving time follows croner (the Open Cron Pattern
//! Specification): a job at a fixed wall-clock time that falls into the
//! gap of a spring-forward day runs at the first time after the gap
//! (02:30 becomes 03:00 in Berlin on 2026-03-29); on a fall-back day it
//! runs once, at the first of the two 02:30s. Every wall-clock time runs
//! once: a job every 30 minutes runs at 02:00 and 02:30 CEST and not
//! again at 02:00 and 02:30 CET, its next run being 03:00 CET.
//!
//! Not here: what is due now, misfires, or running anything.

use std::str::FromStr;

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;

/// A bad schedule or time zone, with what was given and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule: invalid cron expression {expression:?}{}: {message}", field_text(.field))]
    Cron {
        expression: String,
        /// The field (1-based) and its text, when one field alone is wrong.
        field: Option<(usize, String, &'static str)>,
        message: String,
    },
    #[error("schedule: {0}")]
    Form(String),
    #[error("timezone: unknown time zone {0:?} (an IANA name such as \"Europe/Berlin\" or \"UTC\")")]
    TimeZone(String),
}

fn field_text(field: &Option<(usize, String, &'static str)>) -> String {
    match field {
        Some((n, text, what)) => format!(", field {n} ({what}) {text:?}"),
        None => String::new(),
    }
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// A cron expression (as written, or made from a word form) in a zone.
    Cron { cron: Box<Cron>, zone: Tz, text: String },
    /// One run at this instant.
    Once(DateTime<Utc>),
}

/// The IANA time zone `name`.
pub fn parse_zone(name: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(name).map_err(|_| ScheduleError::TimeZone(name.to_string()))
}

const FIELDS5: [&str; 5] = ["minute", "hour", "day of month", "month", "day of week"];
const FIELDS6: [&str; 6] = ["second", "minute", "hour", "day of month", "month", "day of week"];

fn parser() -> CronParser {
    CronParser::builder().seconds(Seconds::Optional).build()
}

/// Parse cron `text`; on an error, find the one field that is wrong by
/// parsing each alone among wildcards.
fn parse_cron(text: &str) -> Result<Cron, ScheduleError> {
    parser().parse(text).map_err(|e| {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let names: &[&str] = match parts.len() {
            5 => &FIELDS5,
            6 => &FIELDS6,
            _ => &[],
        };
        let field = names.iter().enumerate().find_map(|(i, what)| {
            let probe: Vec<&str> = (0..parts.len()).map(|j| if j == i { parts[i] } else { "*" }).collect();
            // Day-of-month and day-of-week together are fine alone.
            parser()
                .parse(&probe.join(" "))
                .is_err()
                .then(|| (i + 1, parts[i].to_string(), *what))
        });
        ScheduleError::Cron {
            expression: text.to_string(),
            field,
            message: e.to_string(),
        }
    })
}

fn hh_mm(text: &str, form: &str) -> Result<(u32, u32), ScheduleError> {
    let bad = || ScheduleError::Form(format!("{form}: time {text:?} is not HH:MM (00:00 to 23:59)"));
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok((h, m))
}

fn weekday(text: &str) -> Option<&'static str> {
    let t = text.to_ascii_lowercase();
    let days = [
        ("mon", "MON"),
        ("tue", "TUE"),
        ("wed", "WED"),
        ("thu", "THU"),
        ("fri", "FRI"),
        ("sat", "SAT"),
        ("sun", "SUN"),
    ];
    let full = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    days.iter()
        .zip(full)
        .find(|((short, _), long)| t == *short || t == *long)
        .map(|((_, cron), _)| *cron)
}

/// The cron expression of a word form, or None if `text` is not one.
fn word_form(text: &str) -> Result<Option<String>, ScheduleError> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    match l.first().copied() {
        Some("daily") => {
            let form = "daily at HH:MM [on weekdays]";
            match l.as_slice() {
                ["daily", "at", t] => {
                    let (h, m) = hh_mm(t, form)?;
                    Ok(Some(format!("0 {m} {h} * * *")))
                }
                ["daily", "at", t, "on", "weekdays"] => {
                    let (h, m) = hh_mm(t, form)?;
                    Ok(Some(format!("0 {m} {h} * * MON-FRI")))
                }
                _ => Err(ScheduleError::Form(format!("{text:?} is not of the form {form}"))),
            }
        }
        Some("weekly") => {
            let form = "weekly [on DAY] at HH:MM";
            let (day, t) = match l.as_slice() {
                ["weekly", "at", t] => ("MON", *t),
                ["weekly", "on", d, "at", t] => (
                    weekday(d).ok_or_else(|| {
                        ScheduleError::Form(format!("{form}: {d:?} is not a day of the week (monday or mon …)"))
                    })?,
                    *t,
                ),
                _ => return Err(ScheduleError::Form(format!("{text:?} is not of the form {form}"))),
            };
            let (h, m) = hh_mm(t, form)?;
            Ok(Some(format!("0 {m} {h} * * {day}")))
        }
        Some("monthly") => {
            let form = "monthly on day N at HH:MM";
            match l.as_slice() {
                ["monthly", "on", "day", n, "at", t] => {
                    let day: u32 = n
                        .parse()
                        .ok()
                        .filter(|d| (1..=31).contains(d))
                        .ok_or_else(|| ScheduleError::Form(format!("{form}: day {n:?} is not 1 to 31")))?;
                    let (h, m) = hh_mm(t, form)?;
                    Ok(Some(format!("0 {m} {h} {day} * *")))
                }
                _ => Err(ScheduleError::Form(format!("{text:?} is not of the form {form}"))),
            }
        }
        _ => Ok(None),
    }
}

impl Schedule {
    /// Parse `text` in time zone `zone` (an IANA name).
    pub fn parse(text: &str, zone: &str) -> Result<Schedule, ScheduleError> {
        let tz = parse_zone(zone)?;
        let trimmed = text.trim();
        if let Some(rest) = trimmed
            .strip_prefix("once at ")
            .or_else(|| trimmed.strip_prefix("once at\t"))
        {
            let at = DateTime::parse_from_rfc3339(rest.trim()).map_err(|e| {
                ScheduleError::Form(format!(
                    "once at: {:?} is not an RFC 3339 time such as 2026-03-29T02:30:00+01:00 ({e})",
                    rest.trim()
                ))
            })?;
            return Ok(Schedule::Once(at.with_timezone(&Utc)));
        }
        if trimmed == "once" || trimmed.starts_with("once ") {
            return Err(ScheduleError::Form(format!(
                "{trimmed:?} is not of the form once at <RFC 3339 time>"
            )));
        }
        let cron_text = word_form(trimmed)?.unwrap_or_else(|| trimmed.to_string());
        let cron = parse_cron(&cron_text)?;
        Ok(Schedule::Cron {
            cron: Box::new(cron),
            zone: tz,
            text: cron_text,
        })
    }

    /// The first occurrence strictly after `after`, or None if there is
    /// none (a `once` already past, or a cron expression that never
    /// matches again).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Once(at) => (*at > after).then_some(*at),
            Schedule::Cron { cron, zone, .. } => {
                // croner keeps the start's fraction of a second; occurrences
                // are whole seconds.
                let after = after.with_nanosecond(0).unwrap_or(after);
                let find = |from: DateTime<Utc>| {
                    cron.find_next_occurrence(&from.with_timezone(zone), false)
                        .ok()
                        .map(|t| t.with_timezone(&Utc))
                };
                match find(after) {
                    // Between the two passes of a fall-back hour, croner
                    // answers a fixed-time job's first pass, which is past:
                    // its occurrence was that first pass, so look on from
                    // after the repeated hour.
                    Some(t) if t <= after => find(after + chrono::Duration::hours(1)).filter(|t| *t > after),
                    other => other,
                }
            }
        }
    }

    /// The cron expression evaluated (a word form's translation), if any.
    pub fn cron_text(&self) -> Option<&str> {
        match self {
            Schedule::Cron { text, .. } => Some(text),
            Schedule::Once(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// The next `n` occurrences of `text` in `zone` after `from`, in UTC.
    fn check(text: &str, zone: &str, from: &str, expected: &[&str]) {
        let s = Schedule::parse(text, zone).unwrap();
        let mut at = utc(from);
        let mut got = Vec::new();
        for _ in 0..expected.len() {
            at = s.next_after(at).unwrap();
            got.push(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
        }
        assert_eq!(got, expected, "{text} in {zone} after {from}");
    }

    #[test]
    fn word_forms_and_cron_in_a_zone() {
        // Berlin is UTC+1 in January.
        check(
            "daily at 02:30",
            "Europe/Berlin",
            "2026-01-05T02:00:00Z",
            &["2026-01-06T01:30:00Z", "2026-01-07T01:30:00Z"],
        );
        // 2026-01-09 is a Friday: the next weekday run is Monday the 12th.
        check(
            "daily at 07:00 on weekdays",
            "UTC",
            "2026-01-09T08:00:00Z",
            &["2026-01-12T07:00:00Z", "2026-01-13T07:00:00Z"],
        );
        check(
            "weekly at 06:15",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-01-05T06:15:00Z"],
        );
        check(
            "weekly on Sunday at 23:59",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-01-04T23:59:00Z"],
        );
        // Day 31 skips the months without one.
        check(
            "monthly on day 31 at 12:00",
            "UTC",
            "2026-01-31T13:00:00Z",
            &["2026-03-31T12:00:00Z", "2026-05-31T12:00:00Z"],
        );
        check(
            "0 2 * * *",
            "UTC",
            "2026-01-01T02:00:00.224Z",
            &["2026-01-02T02:00:00Z"],
        );
        check(
            "0 2 * * *",
            "UTC",
            "2026-01-01T01:59:59.999Z",
            &["2026-01-01T02:00:00Z"],
        );
        check(
            "*/20 * * * * *",
            "UTC",
            "2026-01-01T00:00:05Z",
            &["2026-01-01T00:00:20Z", "2026-01-01T00:00:40Z"],
        );
        check(
            "once at 2026-03-29T02:30:00+02:00",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-03-29T00:30:00Z"],
        );
        let once = Schedule::parse("once at 2026-03-29T00:30:00Z", "UTC").unwrap();
        assert_eq!(once.next_after(utc("2026-03-29T00:30:00Z")), None);
    }

    #[test]
    fn spring_forward_runs_a_0230_job_once_at_0300() {
        // 2026-03-29 in Berlin: 02:00 CET jumps to 03:00 CEST (01:00Z).
        // 02:30 does not exist; the job runs at 03:00 CEST = 01:00Z, and
        // the day before and after at 02:30 local.
        check(
            "30 2 * * *",
            "Europe/Berlin",
            "2026-03-28T00:00:00Z",
            &["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
        );
        check(
            "daily at 02:30",
            "Europe/Berlin",
            "2026-03-28T00:00:00Z",
            &["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
        );
    }

    #[test]
    fn fall_back_runs_a_0230_job_once() {
        // 2026-10-25 in Berlin: 03:00 CEST goes back to 02:00 CET, so
        // 02:30 happens at 00:30Z and again at 01:30Z. Once, the first.
        check(
            "daily at 02:30",
            "Europe/Berlin",
            "2026-10-24T00:00:00Z",
            &["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
        );
        // Between the two 02:30s, the next is the next day's.
        check(
            "daily at 02:30",
            "Europe/Berlin",
            "2026-10-25T01:00:00Z",
            &["2026-10-26T01:30:00Z"],
        );
        check(
            "daily at 02:30",
            "Europe/Berlin",
            "2026-10-25T00:30:00Z",
            &["2026-10-26T01:30:00Z"],
        );
        // A job every 30 minutes runs once per wall-clock time too: the
        // repeated hour's 02:00 and 02:30 CET are not run a second time.
        check(
            "*/30 * * * *",
            "Europe/Berlin",
            "2026-10-25T00:00:00Z",
            &["2026-10-25T00:30:00Z", "2026-10-25T02:00:00Z", "2026-10-25T02:30:00Z"],
        );
    }

    #[test]
    fn bad_schedules_name_what_is_wrong() {
        let e = Schedule::parse("0 25 * * *", "UTC").unwrap_err().to_string();
        assert!(
            e.contains("\"0 25 * * *\"") && e.contains("field 2 (hour) \"25\""),
            "{e}"
        );
        let e = Schedule::parse("*/5 * * * * * * *", "UTC").unwrap_err().to_string();
        assert!(
            e.starts_with("schedule: invalid cron expression \"*/5 * * * * * * *\""),
            "{e}"
        );
        let e = Schedule::parse("61 * * * * *", "UTC").unwrap_err().to_string();
        assert!(e.contains("field 1 (second) \"61\""), "{e}");
        let e = Schedule::parse("0 2 * * *", "Europe/Berlinn").unwrap_err().to_string();
        assert!(e.contains("unknown time zone \"Europe/Berlinn\""), "{e}");
        let e = Schedule::parse("daily at 24:00", "UTC").unwrap_err().to_string();
        assert!(e.contains("\"24:00\" is not HH:MM"), "{e}");
        let e = Schedule::parse("weekly on funday at 10:00", "UTC")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"funday\" is not a day"), "{e}");
        let e = Schedule::parse("monthly on day 32 at 10:00", "UTC")
            .unwrap_err()
            .to_string();
        assert!(e.contains("day \"32\" is not 1 to 31"), "{e}");
        let e = Schedule::parse("once at tomorrow", "UTC").unwrap_err().to_string();
        assert!(e.contains("\"tomorrow\" is not an RFC 3339 time"), "{e}");
    }
}
