//! Parsing untrusted JSON text into a [`serde_json::Value`], refusing what
//! RFC 8785 and I-JSON (RFC 7493) refuse and saying where: every error
//! carries the line and column `serde_json` reports.
//!
//! Beyond `serde_json::from_slice`, this refuses duplicate object keys. Plain
//! `serde_json` keeps the last of two equal keys; other parsers keep the
//! first, so a sender could show one value to a downstream tool and store
//! another. Lone surrogate escapes (`"\ud800"`), trailing characters, nesting
//! beyond `serde_json`'s recursion limit (128) and numbers beyond the double
//! range are refused by `serde_json` itself; numbers too small for a double
//! (which `serde_json` rounds to 0) are found by `vanishing_numbers` and
//! refused by validation with their field path.
//!
//! This is deliberately not a schema check: what an event may contain is
//! [`crate::validate`].

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Value};
use thiserror::Error;

/// Text that is not acceptable JSON, with its position (1-based line and
/// column, as `serde_json` counts them; column counts bytes).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid JSON at line {line}, column {column}: {message}")]
pub struct JsonError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parse `text` as one JSON value, refusing duplicate keys.
pub fn parse(text: &[u8]) -> Result<Value, JsonError> {
    match serde_json::from_slice::<StrictValue>(text) {
        Ok(StrictValue(value)) => Ok(value),
        Err(err) => {
            let (line, column) = (err.line(), err.column());
            // serde_json's Display appends the position; keep only the reason
            // since JsonError states the position itself.
            let full = err.to_string();
            let suffix = format!(" at line {line} column {column}");
            let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
            Err(JsonError { line, column, message })
        }
    }
}

/// Every number in `text` (valid JSON) that is not zero as written but
/// reads as a double of zero, because it is smaller than the smallest
/// double (`1e-400`): each with its field path, rendered as validation
/// renders paths, and its text. `serde_json` refuses a number too large
/// for a double but quietly rounds one too small to 0, which would store
/// a value the sender never sent.
pub(crate) fn vanishing_numbers(text: &[u8]) -> Vec<(String, String)> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut found = Vec::new();
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'{' => stack.push(Frame::Object(None)),
            b'[' => stack.push(Frame::Array(0)),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => {
                if let Some(Frame::Array(n)) = stack.last_mut() {
                    *n += 1;
                }
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < text.len() && text[i] != b'"' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
                let end = (i + 1).min(text.len());
                let colon = text[end..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b':');
                if let (true, Some(Frame::Object(key))) = (colon, stack.last_mut()) {
                    *key = serde_json::from_slice::<String>(&text[start..end]).ok();
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < text.len() && matches!(text[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                    i += 1;
                }
                let literal = &text[start..i];
                let mantissa = literal.split(|&b| b == b'e' || b == b'E').next().unwrap_or_default();
                let nonzero = mantissa.iter().any(|b| matches!(b, b'1'..=b'9'));
                if nonzero && serde_json::from_slice::<f64>(literal).is_ok_and(|f| f == 0.0) {
                    found.push((path_of(&stack), String::from_utf8_lossy(literal).into_owned()));
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// A container being read by [`vanishing_numbers`]: an object with the
/// key of its current member, or an array with the index of its current
/// item.
enum Frame {
    Object(Option<String>),
    Array(usize),
}

/// The field path of the current value, as validation writes paths
/// (`a.b`, `a["b c"]`, `a[2]`).
fn path_of(stack: &[Frame]) -> String {
    let mut path = String::new();
    for frame in stack {
        match frame {
            Frame::Array(n) => path.push_str(&format!("[{n}]")),
            Frame::Object(None) => {}
            Frame::Object(Some(key)) => {
                let plain = key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                    && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                match (plain, path.is_empty()) {
                    (true, true) => path.push_str(key),
                    (true, false) => path.push_str(&format!(".{key}")),
                    (false, _) => path.push_str(&format!("[{}]", Value::from(key.as_str()))),
                }
            }
        }
    }
    path
}

/// A `Value` built by a visitor that refuses duplicate keys. serde_json
/// attaches the position to the custom error, which is why this is a
/// deserializer and not a check after the fact.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("number {v} is not finite")))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            // One search for both the duplicate check and the insertion.
            match map.entry(key) {
                Entry::Occupied(entry) => {
                    return Err(de::Error::custom(format!(
                        "duplicate key {}",
                        Value::String(entry.key().clone())
                    )));
                }
                Entry::Vacant(entry) => {
                    let StrictValue(value) = access.next_value()?;
                    entry.insert(value);
                }
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn error(text: &str) -> String {
        parse(text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn duplicate_keys_are_refused_with_their_position() {
        assert_eq!(
            error("{\n  \"a\": 1,\n  \"a\": 2\n}"),
            "invalid JSON at line 3, column 5: duplicate key \"a\""
        );
        // Equal after unescaping is equal.
        assert!(error(r#"{"a": 1, "\u0061": 2}"#).contains("duplicate key \"a\""));
        // Same key in different objects is fine.
        assert!(parse(br#"{"a": {"a": 1}, "b": {"a": 2}}"#).is_ok());
    }

    #[test]
    fn serde_json_errors_keep_line_and_column() {
        assert_eq!(
            error("{\n  \"a\": [1,\n   2,]\n}"),
            "invalid JSON at line 3, column 6: trailing comma"
        );
        assert_eq!(error("{} x"), "invalid JSON at line 1, column 4: trailing characters");
        // Lone surrogates: RFC 8785 §3.2.2.2 forbids them; serde_json refuses.
        assert_eq!(
            error(r#""\ud800""#),
            "invalid JSON at line 1, column 8: unexpected end of hex escape"
        );
        assert!(error(r#""\udc00x""#).contains("surrogate"));
        assert!(error("1e400").contains("number out of range"));
    }

    #[test]
    fn values_come_out_as_serde_json_would_build_them() {
        let text = br#"{"n": [1, -1, 1.5, 18446744073709551615], "s": "x", "t": true, "z": null}"#;
        assert_eq!(parse(text).unwrap(), serde_json::from_slice::<Value>(text).unwrap());
    }
}
