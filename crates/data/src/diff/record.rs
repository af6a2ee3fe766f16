//! One row as one byte string, the same in memory and in partition files:
//!
//! ```text
//! hash   u64 LE   XXH3-64 of the key bytes
//! len    u32 LE   bytes that follow
//! line   varint
//! klen   varint   length of the key bytes
//! key    klen bytes: per key column, tag + folded value
//! values per column of the side, in order: tag + value
//! ```
//!
//! A tag is the varint `len << 1 | null`. Varints are LEB128 (7 bits a
//! byte, low first).

use std::borrow::Cow;

use super::plan::{Fold, SidePlan};
use crate::Row;

pub(crate) const HEADER: usize = 12;

pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub(crate) fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        if shift > 63 {
            return None;
        }
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
        shift += 7;
    }
}

fn put_value(buf: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => put_varint(buf, 1),
        Some(v) => {
            put_varint(buf, (v.len() as u64) << 1);
            buf.extend_from_slice(v.as_bytes());
        }
    }
}

/// Folds whitespace: trims, and makes every inner run of whitespace one space.
pub(crate) fn fold_whitespace(v: &str) -> Cow<'_, str> {
    let t = v.trim();
    let clean = !t
        .as_bytes()
        .windows(2)
        .any(|w| w[0].is_ascii_whitespace() && w[1].is_ascii_whitespace())
        && !t.chars().any(|c| c.is_whitespace() && c != ' ');
    if clean {
        return Cow::Borrowed(t);
    }
    let mut out = String::with_capacity(t.len());
    for (i, word) in t.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
    Cow::Owned(out)
}

pub(crate) fn fold<'a>(v: &'a str, fold: Fold) -> Cow<'a, str> {
    let v = if fold.whitespace {
        fold_whitespace(v)
    } else {
        Cow::Borrowed(v)
    };
    if fold.case && v.chars().any(|c| c.is_uppercase()) {
        Cow::Owned(v.to_lowercase())
    } else {
        v
    }
}

/// Encodes rows of one side into records.
pub(crate) struct Encoder {
    key: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder { key: Vec::new() }
    }

    /// Writes `row` as a record into `out` (cleared first); returns its hash.
    pub fn encode(&mut self, plan: &SidePlan, row: &Row, out: &mut Vec<u8>) -> u64 {
        self.key.clear();
        for (&i, &f) in plan.key.iter().zip(&plan.key_fold) {
            match row.get(i) {
                None => put_value(&mut self.key, None),
                Some(v) if f.case || f.whitespace => put_value(&mut self.key, Some(&fold(v, f))),
                Some(v) => put_value(&mut self.key, Some(v)),
            }
        }
        let hash = xxhash_rust::xxh3::xxh3_64(&self.key);
        out.clear();
        out.extend_from_slice(&hash.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        put_varint(out, row.line);
        put_varint(out, self.key.len() as u64);
        out.extend_from_slice(&self.key);
        for v in row.values() {
            put_value(out, v);
        }
        let len = (out.len() - HEADER) as u32;
        out[8..HEADER].copy_from_slice(&len.to_le_bytes());
        hash
    }
}

/// Reads the record at `pos` of `bytes`: its hash, and the end of the record.
pub(crate) fn frame(bytes: &[u8], pos: usize) -> Option<(u64, usize)> {
    let head = bytes.get(pos..pos + HEADER)?;
    let hash = u64::from_le_bytes(head[..8].try_into().ok()?);
    let len = u32::from_le_bytes(head[8..].try_into().ok()?) as usize;
    let end = pos + HEADER + len;
    if end > bytes.len() {
        return None;
    }
    Some((hash, end))
}

/// A record taken apart.
pub(crate) struct View<'a> {
    pub line: u64,
    pub key: &'a [u8],
    /// The values area.
    values: &'a [u8],
}

impl<'a> View<'a> {
    /// All values, encoded.
    pub fn values(&self) -> &'a [u8] {
        self.values
    }
}

/// The record body (after the header).
pub(crate) fn view(body: &[u8]) -> Option<View<'_>> {
    let mut pos = 0;
    let line = get_varint(body, &mut pos)?;
    let klen = get_varint(body, &mut pos)? as usize;
    let key = body.get(pos..pos.checked_add(klen)?)?;
    Some(View {
        line,
        key,
        values: &body[pos + klen..],
    })
}

/// Where each value lies in a record's values area.
#[derive(Default)]
pub(crate) struct Spans {
    spans: Vec<(usize, usize, bool)>,
}

impl Spans {
    /// Splits the values of `view`; `None` if they are not `columns` well-formed values.
    pub fn split(&mut self, view: &View<'_>, columns: usize) -> Option<()> {
        self.spans.clear();
        let bytes = view.values;
        let mut pos = 0;
        for _ in 0..columns {
            let tag = get_varint(bytes, &mut pos)?;
            if tag & 1 == 1 {
                self.spans.push((pos, pos, true));
                continue;
            }
            let end = pos.checked_add((tag >> 1) as usize)?;
            if end > bytes.len() {
                return None;
            }
            self.spans.push((pos, end, false));
            pos = end;
        }
        (pos == bytes.len()).then_some(())
    }

    pub fn bytes<'a>(&self, view: &View<'a>, i: usize) -> Option<&'a [u8]> {
        let (s, e, null) = self.spans[i];
        (!null).then(|| &view.values[s..e])
    }

    /// Value `i` as text. Records hold values copied from `&str`, and
    /// partition files are checksummed, so the check never fails in
    /// practice; it is made here, on the few values shown, not on every
    /// value compared.
    pub fn get<'a>(&self, view: &View<'a>, i: usize) -> Option<&'a str> {
        self.bytes(view, i)
            .map(|b| std::str::from_utf8(b).unwrap_or("\u{fffd}"))
    }

    pub fn owned(&self, view: &View<'_>, i: usize) -> Option<String> {
        self.get(view, i).map(str::to_string)
    }

    pub fn all(&self, view: &View<'_>) -> Vec<Option<String>> {
        (0..self.spans.len()).map(|i| self.owned(view, i)).collect()
    }
}

/// A decimal number: digits, at most one point, an optional sign and exponent.
fn number(v: &str) -> Option<f64> {
    let v = v.trim();
    if !v.bytes().any(|b| b.is_ascii_digit())
        || !v
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    v.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Whether two values of a compared column count as equal.
pub(crate) fn equal(a: Option<&str>, b: Option<&str>, f: Fold, tolerance: Option<f64>) -> bool {
    let (a, b) = match (a, b) {
        (None, None) => return true,
        (Some(a), Some(b)) => (a, b),
        _ => return false,
    };
    if a == b {
        return true;
    }
    if (f.case || f.whitespace) && fold(a, f) == fold(b, f) {
        return true;
    }
    match (tolerance, number(a), number(b)) {
        (Some(t), Some(x), Some(y)) => (x - y).abs() <= t,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            let mut pos = 0;
            assert_eq!(get_varint(&buf, &mut pos), Some(v));
            assert_eq!(pos, buf.len());
        }
        assert_eq!(get_varint(&[0x80], &mut 0), None);
    }

    #[test]
    fn folding_and_tolerance() {
        let ws = Fold {
            case: false,
            whitespace: true,
        };
        let case = Fold {
            case: true,
            whitespace: false,
        };
        assert_eq!(fold_whitespace("  a \t b  c "), "a b c");
        assert!(equal(Some(" a  b"), Some("a b"), ws, None));
        assert!(!equal(Some("ab"), Some("a b"), ws, None));
        assert!(equal(Some("ÉTÉ"), Some("été"), case, None));
        assert!(!equal(Some("ÉTÉ"), Some("été"), Fold::default(), None));
        assert!(equal(Some("1.00"), Some("1.004"), Fold::default(), Some(0.005)));
        assert!(!equal(Some("1.00"), Some("1.006"), Fold::default(), Some(0.005)));
        assert!(!equal(Some("nan"), Some("nan "), Fold::default(), Some(1.0)));
        assert!(!equal(None, Some(""), Fold::default(), None));
        assert!(equal(None, None, Fold::default(), None));
    }

    #[test]
    fn records_round_trip() {
        let plan = SidePlan {
            name: "t".into(),
            columns: 3,
            key: vec![1],
            key_fold: vec![Fold {
                case: true,
                whitespace: false,
            }],
        };
        let mut row = Row::of([Some("x"), Some("KEY"), None]);
        row.line = 7;
        let mut out = Vec::new();
        let hash = Encoder::new().encode(&plan, &row, &mut out);
        assert_eq!(frame(&out, 0), Some((hash, out.len())));
        let v = view(&out[HEADER..]).expect("view");
        assert_eq!(v.line, 7);
        assert_eq!(v.key, b"\x06key");
        let mut spans = Spans::default();
        spans.split(&v, 3).expect("split");
        assert_eq!(spans.all(&v), vec![Some("x".into()), Some("KEY".into()), None]);
        assert!(spans.split(&v, 2).is_none());
    }
}
