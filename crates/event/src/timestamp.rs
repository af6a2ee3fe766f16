//! RFC 3339 times as events carry them: a strict parser for what senders
//! write, and the one form the canonical entry stores.
//!
//! Parsing accepts exactly the RFC 3339 §5.6 `date-time` grammar: four-digit
//! year, `T` (or `t`), seconds required, an optional fraction of at most 9
//! digits (nanoseconds, the finest a [`Timestamp`] holds; more are refused,
//! not truncated), and `Z` (or `z`) or a `±hh:mm` offset. `jiff`'s own
//! parser accepts a superset (ISO 8601 basic format, bracketed time zones,
//! missing seconds, `,` fractions) that other tools would not read back, so
//! the grammar is checked here and `jiff` then does the calendar: month
//! lengths, leap years and the offset arithmetic. A leap second (`:60`) is
//! accepted and stored as the second before it, as POSIX time does.
//!
//! Stored form: UTC with `Z`, fractional digits only as many as needed
//! (trailing zeros dropped), e.g. `2024-05-01T10:30:00.25Z`. The sender's
//! offset is not kept: instants compare and index the same whatever zone
//! they were written in. Instants whose UTC year falls outside 0000..=9999
//! are refused because RFC 3339 cannot write them.
//!
//! Not here: any reading of a clock. The server passes `received_at` in.

use std::fmt;

use jiff::Timestamp;

/// Why a string is not an acceptable RFC 3339 time. The validator words
/// its own message around these, since it knows the field and the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Not the RFC 3339 `date-time` grammar, or no such calendar date/time.
    #[error("not an RFC 3339 time")]
    NotRfc3339,
    /// More than 9 fractional digits.
    #[error("more than 9 fractional digits")]
    TooPrecise,
    /// The UTC year is outside 0000..=9999 (or beyond what `jiff` holds,
    /// the last 26 hours of 9999).
    #[error("outside the years 0000 to 9999 in UTC")]
    OutOfRange,
}

/// Parse a strict RFC 3339 `date-time` into an instant.
pub fn parse(text: &str) -> Result<Timestamp, TimeError> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| b.get(range).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let two = |at: usize| u32::from(b[at] - b'0') * 10 + u32::from(b[at + 1] - b'0');
    // YYYY-MM-DDTHH:MM:SS is 19 fixed bytes.
    let fixed = digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && matches!(b.get(10), Some(b'T' | b't'))
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19);
    if !fixed {
        return Err(TimeError::NotRfc3339);
    }
    if !(1..=12).contains(&two(5)) || !(1..=31).contains(&two(8)) || two(11) > 23 || two(14) > 59 || two(17) > 60 {
        return Err(TimeError::NotRfc3339);
    }
    let mut at = 19;
    let mut nanos = 0;
    if b.get(at) == Some(&b'.') {
        let count = b[at + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
        if count == 0 {
            return Err(TimeError::NotRfc3339);
        }
        if count > 9 {
            return Err(TimeError::TooPrecise);
        }
        for i in 0..9 {
            let digit = if i < count { b[at + 1 + i] - b'0' } else { 0 };
            nanos = nanos * 10 + i32::from(digit);
        }
        at += 1 + count;
    }
    let offset_seconds = match &b[at..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] if digits(at + 1..at + 3) && digits(at + 4..at + 6) => {
            if two(at + 1) > 23 || two(at + 4) > 59 {
                return Err(TimeError::NotRfc3339);
            }
            let seconds = (two(at + 1) * 3600 + two(at + 4) * 60) as i32;
            if *sign == b'-' {
                -seconds
            } else {
                seconds
            }
        }
        _ => return Err(TimeError::NotRfc3339),
    };
    // The grammar holds; jiff does the calendar and the offset arithmetic
    // from the numbers (its text parser costs several times as much).
    let year = (two(0) * 100 + two(2)) as i16;
    let date = jiff::civil::Date::new(year, two(5) as i8, two(8) as i8).map_err(|_| TimeError::NotRfc3339)?;
    // A leap second reads as the second before it.
    let second = two(17).min(59) as i8;
    let time =
        jiff::civil::Time::new(two(11) as i8, two(14) as i8, second, nanos).map_err(|_| TimeError::NotRfc3339)?;
    let offset = jiff::tz::Offset::from_seconds(offset_seconds).map_err(|_| TimeError::NotRfc3339)?;
    // The date exists, so a failure here is one of range.
    let timestamp = offset
        .to_timestamp(date.to_datetime(time))
        .map_err(|_| TimeError::OutOfRange)?;
    if timestamp < min_utc() {
        return Err(TimeError::OutOfRange);
    }
    Ok(timestamp)
}

fn min_utc() -> Timestamp {
    // -62167219200 s is 0000-01-01T00:00:00Z, well inside jiff's range.
    Timestamp::from_second(-62_167_219_200).unwrap_or(Timestamp::MIN)
}

/// The stored form of an instant: RFC 3339 in UTC, `Z`, fraction trimmed.
pub fn format(timestamp: Timestamp) -> String {
    Stored(timestamp).to_string()
}

/// Display adapter for the stored form.
pub struct Stored(pub Timestamp);

impl fmt::Display for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // jiff's Display of a Timestamp is exactly the stored form: UTC,
        // `Z`, zero-padded four-digit year, shortest fraction.
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;

    fn stored(text: &str) -> String {
        format(parse(text).unwrap())
    }

    #[test]
    fn offsets_are_folded_into_utc_and_fractions_trimmed() {
        assert_eq!(stored("2024-05-01T12:30:00+02:00"), "2024-05-01T10:30:00Z");
        assert_eq!(stored("2024-05-01t12:30:00.250z"), "2024-05-01T12:30:00.25Z");
        assert_eq!(stored("2024-05-01T12:30:00.000Z"), "2024-05-01T12:30:00Z");
        assert_eq!(
            stored("2024-05-01T12:30:00.123456789-00:00"),
            "2024-05-01T12:30:00.123456789Z"
        );
        assert_eq!(stored("2024-02-29T00:00:00Z"), "2024-02-29T00:00:00Z");
        assert_eq!(stored("0000-01-01T00:00:00Z"), "0000-01-01T00:00:00Z");
        assert_eq!(stored("2016-12-31T23:59:60Z"), "2016-12-31T23:59:59Z");
    }

    #[test]
    fn only_the_rfc_3339_grammar_is_accepted() {
        for bad in [
            "yesterday",
            "",
            "2024-05-01",
            "2024-05-01T12:30Z",
            "2024-05-01 12:30:00Z",
            "2024-05-01T12:30:00",
            "20240501T123000Z",
            "2024-05-01T12:30:00+0200",
            "2024-05-01T12:30:00+02",
            "2024-05-01T12:30:00.Z",
            "2024-05-01T12:30:00,5Z",
            "2024-05-01T12:30:00Z[Europe/Paris]",
            "+002024-05-01T12:30:00Z",
            "2024-5-01T12:30:00Z",
            "2024-13-01T12:30:00Z",
            "2023-02-29T12:30:00Z",
            "2024-04-31T12:30:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:60:00Z",
            "2024-05-01T12:30:61Z",
            "2024-05-01T12:30:00+24:00",
            "2024-05-01T12:30:00Z ",
            "２０２４-05-01T12:30:00Z",
        ] {
            assert_eq!(parse(bad), Err(TimeError::NotRfc3339), "{bad}");
        }
    }

    /// The parser as it was, through jiff's text parser: the new one must
    /// agree with it on every input.
    fn reference(text: &str) -> Result<Timestamp, TimeError> {
        let b = text.as_bytes();
        let digits = |range: std::ops::Range<usize>| b.get(range).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
        let two = |at: usize| u32::from(b[at] - b'0') * 10 + u32::from(b[at + 1] - b'0');
        // YYYY-MM-DDTHH:MM:SS is 19 fixed bytes.
        let fixed = digits(0..4)
            && b.get(4) == Some(&b'-')
            && digits(5..7)
            && b.get(7) == Some(&b'-')
            && digits(8..10)
            && matches!(b.get(10), Some(b'T' | b't'))
            && digits(11..13)
            && b.get(13) == Some(&b':')
            && digits(14..16)
            && b.get(16) == Some(&b':')
            && digits(17..19);
        if !fixed {
            return Err(TimeError::NotRfc3339);
        }
        if !(1..=12).contains(&two(5)) || !(1..=31).contains(&two(8)) || two(11) > 23 || two(14) > 59 || two(17) > 60 {
            return Err(TimeError::NotRfc3339);
        }
        let mut at = 19;
        if b.get(at) == Some(&b'.') {
            let count = b[at + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
            if count == 0 {
                return Err(TimeError::NotRfc3339);
            }
            if count > 9 {
                return Err(TimeError::TooPrecise);
            }
            at += 1 + count;
        }
        match &b[at..] {
            [b'Z' | b'z'] => {}
            [b'+' | b'-', _, _, b':', _, _] if digits(at + 1..at + 3) && digits(at + 4..at + 6) => {
                if two(at + 1) > 23 || two(at + 4) > 59 {
                    return Err(TimeError::NotRfc3339);
                }
            }
            _ => return Err(TimeError::NotRfc3339),
        }
        // The grammar holds, so the text is ASCII; jiff wants upper-case T and Z.
        let normalised = text.to_ascii_uppercase();
        let timestamp: Timestamp = normalised.parse().map_err(|_| {
            // jiff refuses a valid-looking date it cannot hold (near the ends
            // of its range) as well as impossible dates such as 02-30; tell the
            // two apart by whether the local date itself exists.
            if local_date_exists(b) {
                TimeError::OutOfRange
            } else {
                TimeError::NotRfc3339
            }
        })?;
        if timestamp < min_utc() {
            return Err(TimeError::OutOfRange);
        }
        Ok(timestamp)
    }

    fn local_date_exists(b: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(&b[..10]) else {
            return false;
        };
        text.parse::<jiff::civil::Date>().is_ok()
    }

    /// Two digits, mostly up to `max` (the field's own bound), sometimes
    /// anything.
    fn two(max: u32) -> impl Strategy<Value = String> {
        prop_oneof![
            6 => (0..=max).prop_map(|n| format!("{n:02}")),
            1 => (0u32..100).prop_map(|n| format!("{n:02}")),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        let year = prop_oneof![
            (0u32..10000).prop_map(|y| format!("{y:04}")),
            prop::sample::select(vec!["0000", "0001", "1900", "2000", "2023", "2024", "9999"]).prop_map(String::from),
        ];
        let fraction = prop_oneof![Just(String::new()), "\\.[0-9]{1,10}", Just(".".to_string())];
        let offset = prop_oneof![
            prop::sample::select(vec![
                "Z", "z", "+00:00", "-00:00", "+23:59", "-23:59", "+24:00", "+0200", ""
            ])
            .prop_map(String::from),
            ("[+-]", two(23), two(59)).prop_map(|(s, h, m)| format!("{s}{h}:{m}")),
        ];
        let date = (year, two(12), two(31)).prop_map(|(y, m, d)| format!("{y}-{m}-{d}"));
        let time = (two(23), two(59), two(60)).prop_map(|(h, m, s)| format!("{h}:{m}:{s}"));
        (date, "[Tt ]", time, fraction, offset).prop_map(|(d, t, h, f, o)| format!("{d}{t}{h}{f}{o}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn agrees_with_jiffs_text_parser(text in text()) {
            prop_assert_eq!(parse(&text), reference(&text), "{}", text);
        }
    }

    #[test]
    fn agrees_with_jiffs_text_parser_at_the_edges() {
        for text in [
            "2016-12-31T23:59:60Z",
            "2016-12-31T23:59:60.999999999Z",
            "2016-12-31T12:30:60.5+01:00",
            "0000-01-01T00:00:00Z",
            "0000-01-01T00:00:00-00:01",
            "0000-01-01T00:00:00+00:01",
            "0000-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2000-02-29T00:00:00Z",
            "9999-12-30T22:00:00.999999999Z",
            "9999-12-30T22:00:01Z",
            "9999-12-31T23:59:59-23:59",
            "9999-12-31T00:00:00+23:59",
            "2024-05-01T12:30:00.1Z",
            "2024-05-01T12:30:00.000000001Z",
        ] {
            assert_eq!(parse(text), reference(text), "{text}");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(parse("2024-05-01T12:30:00.1234567891Z"), Err(TimeError::TooPrecise));
        assert_eq!(parse("0000-01-01T00:00:00+00:01"), Err(TimeError::OutOfRange));
        assert_eq!(parse("9999-12-31T23:59:59Z"), Err(TimeError::OutOfRange));
        assert_eq!(stored("9999-12-30T12:00:00Z"), "9999-12-30T12:00:00Z");
        assert_eq!(
            stored("9999-12-30T22:00:00.999999999Z"),
            "9999-12-30T22:00:00.999999999Z"
        );
        assert_eq!(parse("9999-12-30T22:00:01Z"), Err(TimeError::OutOfRange));
        assert_eq!(parse("9999-12-31T01:00:00+02:00"), Err(TimeError::OutOfRange));
    }
}
