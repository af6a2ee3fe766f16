//! Reading a text value as the type a rule declares, and ordering typed
//! values. Values are read as they are: no trimming, no locale, so that a
//! value the rules accept is one every other tool reads the same way.

use std::cmp::Ordering;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The type a column's values must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// Any text; compared byte by byte.
    Text,
    /// A signed 64-bit integer: optional sign, digits.
    Integer,
    /// A decimal number: optional sign, digits, optional point and
    /// fraction; no exponent. Compared exactly, not as floating point.
    Decimal,
    /// A calendar date in the column's `format` (strftime, default `%Y-%m-%d`).
    Date,
    /// An RFC 3339 timestamp with offset, e.g. `2026-03-01T12:00:00Z`.
    Timestamp,
    /// `true`/`false`, `t`/`f`, `yes`/`no`, `y`/`n`, `1`/`0`, any case.
    Boolean,
}

impl ColumnType {
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Integer => "integer",
            ColumnType::Decimal => "decimal",
            ColumnType::Date => "date",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Boolean => "boolean",
        }
    }

    /// Whether values of the two types can be ordered against each other.
    pub(crate) fn comparable(self, other: ColumnType) -> bool {
        let numeric = |t| matches!(t, ColumnType::Integer | ColumnType::Decimal);
        self == other || (numeric(self) && numeric(other))
    }
}

/// A decimal number as its digits: exact comparison whatever the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decimal<'a> {
    negative: bool,
    /// Without leading zeros.
    int: &'a str,
    /// Without trailing zeros.
    frac: &'a str,
}

pub(crate) fn parse_decimal(text: &str) -> Option<Decimal<'_>> {
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    Some(Decimal {
        negative: negative && !(int.is_empty() && frac.is_empty()),
        int,
        frac,
    })
}

impl Ord for Decimal<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => return Ordering::Greater,
            (true, false) => return Ordering::Less,
            _ => {}
        }
        // Digit strings without leading (int) or trailing (frac) zeros
        // order as their magnitudes: by length, then byte by byte.
        let magnitude = self
            .int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(other.int))
            .then_with(|| self.frac.cmp(other.frac));
        if self.negative {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

impl PartialOrd for Decimal<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

pub(crate) fn parse_integer(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

pub(crate) fn parse_boolean(text: &str) -> Option<bool> {
    const TRUE: [&str; 5] = ["true", "t", "yes", "y", "1"];
    const FALSE: [&str; 5] = ["false", "f", "no", "n", "0"];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(text)) {
        Some(true)
    } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(text)) {
        Some(false)
    } else {
        None
    }
}

pub(crate) fn parse_date(format: &str, text: &str) -> Option<Date> {
    // The common ISO form read directly: the general parser costs more
    // than the rest of a row's checks together.
    let b = text.as_bytes();
    if format == "%Y-%m-%d" && b.len() == 10 && b[4] == b'-' && b[7] == b'-' {
        let num = |r: std::ops::Range<usize>| -> Option<i16> {
            b[r].iter()
                .try_fold(0i16, |n, &c| c.is_ascii_digit().then(|| n * 10 + i16::from(c - b'0')))
        };
        if let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) {
            return Date::new(y, m as i8, d as i8).ok();
        }
    }
    Date::strptime(format, text).ok()
}

/// RFC 3339 exactly (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, `T` or a
/// space, any case): the shape is checked here because the parser also
/// takes forms RFC 3339 does not (no seconds, bracketed zones).
pub(crate) fn parse_timestamp(text: &str) -> Option<Timestamp> {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let at = |i: usize, set: &[u8]| b.get(i).is_some_and(|c| set.contains(c));
    let shape = digits(0..4)
        && at(4, b"-")
        && digits(5..7)
        && at(7, b"-")
        && digits(8..10)
        && at(10, b"Tt ")
        && digits(11..13)
        && at(13, b":")
        && digits(14..16)
        && at(16, b":")
        && digits(17..19);
    if !shape {
        return None;
    }
    let mut i = 19;
    if at(i, b".") {
        let start = i + 1;
        i = start;
        while at(i, b"0123456789") {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let zone_ok = match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => i + 6 == b.len() && digits(i + 1..i + 3) && at(i + 3, b":") && digits(i + 4..i + 6),
        _ => false,
    };
    if !zone_ok {
        return None;
    }
    if b[10] == b'T' && !text.ends_with('z') {
        return text.parse().ok();
    }
    // The parser wants `T`; a space or lower case is the same instant.
    let mut owned = text.to_ascii_uppercase();
    owned.replace_range(10..11, "T");
    owned.parse().ok()
}

/// The UTC calendar date of a timestamp, for date-sanity rules.
pub(crate) fn utc_date(ts: Timestamp) -> Date {
    ts.to_zoned(TimeZone::UTC).date()
}

/// A value read as its column's type, ordered within its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Typed<'a> {
    Text(&'a str),
    Number(Decimal<'a>),
    Date(Date),
    Timestamp(Timestamp),
    Boolean(bool),
}

impl Typed<'_> {
    /// `None` when the two are of types that do not order together
    /// (ruled out when the rules are read).
    pub(crate) fn compare(&self, other: &Typed<'_>) -> Option<Ordering> {
        match (self, other) {
            (Typed::Text(a), Typed::Text(b)) => Some(a.cmp(b)),
            (Typed::Number(a), Typed::Number(b)) => Some(a.cmp(b)),
            (Typed::Date(a), Typed::Date(b)) => Some(a.cmp(b)),
            (Typed::Timestamp(a), Typed::Timestamp(b)) => Some(a.cmp(b)),
            (Typed::Boolean(a), Typed::Boolean(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

/// `text` read as `kind` (dates with `format`), `None` when it is not one.
pub(crate) fn read<'a>(kind: ColumnType, format: &str, text: &'a str) -> Option<Typed<'a>> {
    Some(match kind {
        ColumnType::Text => Typed::Text(text),
        ColumnType::Integer => {
            parse_integer(text)?;
            Typed::Number(parse_decimal(text)?)
        }
        ColumnType::Decimal => Typed::Number(parse_decimal(text)?),
        ColumnType::Date => Typed::Date(parse_date(format, text)?),
        ColumnType::Timestamp => Typed::Timestamp(parse_timestamp(text)?),
        ColumnType::Boolean => Typed::Boolean(parse_boolean(text)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal<'_> {
        parse_decimal(s).expect("a decimal")
    }

    #[test]
    fn decimals_compare_exactly() {
        let ordered = [
            "-100",
            "-9.99",
            "-0.5",
            "0",
            "0.000001",
            "0.1",
            "0.25",
            "0.3",
            "1",
            "9.5",
            "10",
            "10.01",
            "99999999999999999999.1",
        ];
        for (i, a) in ordered.iter().enumerate() {
            for (j, b) in ordered.iter().enumerate() {
                assert_eq!(dec(a).cmp(&dec(b)), i.cmp(&j), "{a} vs {b}");
            }
        }
        assert_eq!(dec("-0.00"), dec("0"));
        assert_eq!(dec("007.50"), dec("7.5"));
        assert_eq!(dec("+3."), dec("3"));
        assert_eq!(dec(".5"), dec("0.5"));
        for bad in ["", "-", ".", "1e5", "1,5", " 1", "1.2.3", "--1", "0x10"] {
            assert!(parse_decimal(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn integers_booleans_and_timestamps() {
        assert_eq!(parse_integer("-42"), Some(-42));
        assert_eq!(parse_integer("+7"), Some(7));
        assert_eq!(parse_integer("9223372036854775808"), None);
        assert_eq!(parse_integer("1.0"), None);
        assert_eq!(parse_boolean("YES"), Some(true));
        assert_eq!(parse_boolean("0"), Some(false));
        assert_eq!(parse_boolean("maybe"), None);
        let a = parse_timestamp("2026-03-01T12:00:00Z").expect("rfc 3339");
        let b = parse_timestamp("2026-03-01 14:00:00.000+02:00").expect("space and offset");
        assert_eq!(a, b);
        assert_eq!(parse_timestamp("2026-03-01t12:00:00z"), Some(a));
        for bad in [
            "2026-03-01T12:00Z",
            "2026-03-01T12:00:00",
            "2026-03-01T12:00:00+0200",
            "2026-03-01T12:00:00Z[UTC]",
            "2026-02-30T12:00:00Z",
            "2026-03-01T12:00:00.Z",
        ] {
            assert!(parse_timestamp(bad).is_none(), "{bad:?}");
        }
        assert_eq!(
            parse_date("%d/%m/%Y", "31/12/2025"),
            Some(jiff::civil::date(2025, 12, 31))
        );
        assert_eq!(parse_date("%Y-%m-%d", "2025-12-31 "), None);
        assert_eq!(parse_date("%Y-%m-%d", "2025-02-29"), None);
        // The direct reading of ISO dates agrees with the general parser.
        for text in [
            "2024-02-29",
            "2025-02-29",
            "0000-01-01",
            "9999-12-31",
            "2024-13-01",
            "2024-00-10",
            "2024-1-010",
            "+202-01-01",
            "2024-01-1x",
            "2024-04-31",
        ] {
            assert_eq!(
                parse_date("%Y-%m-%d", text),
                Date::strptime("%Y-%m-%d", text).ok(),
                "{text}"
            );
        }
    }
}
