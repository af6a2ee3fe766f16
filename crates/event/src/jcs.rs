//! RFC 8785 JSON Canonicalization Scheme (JCS) over [`serde_json::Value`]:
//! the one byte string that every conforming implementation, in any
//! language, produces for the same JSON data. Anyone can therefore recompute
//! an entry's bytes, and so its leaf hash, from the event it encodes.
//!
//! The rules: no whitespace; object members sorted by their keys' UTF-16
//! code units (§3.2.3); strings with only the escapes of §3.2.2.2; numbers
//! as IEEE-754 doubles printed the way ECMAScript's `Number.prototype.toString`
//! prints them (§3.2.2.3, delegated to `ryu-js`, which targets exactly that).
//!
//! This module is deliberately not a parser and not a schema: it takes the
//! value it is given. Parsing untrusted text (duplicate keys, positions) is
//! [`crate::json`]; what an event may contain is [`crate::validate`].
//!
//! Number policy: RFC 8785 models every number as a double, so an integer
//! is turned into the nearest double, exactly as RFC 8785 (and JavaScript)
//! reads the text: `serde_json` keeps integers that fit in `u64`/`i64`
//! exactly, and 2^53 + 1 comes out as `9007199254740992`. This keeps the
//! canonical form a pure function of the doubles, so canonicalising is
//! idempotent. Refusing such integers is a schema decision, made where the
//! paths for a message are known: [`crate::validate`] refuses every number
//! beyond ±(2^53 − 1) in an event before it gets here. Non-integers were
//! already rounded to the nearest double by the parser, which is the same
//! mapping.

use serde_json::{Map, Number, Value};
use thiserror::Error;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JcsError {
    /// NaN or an infinity: JSON has no spelling for them. `serde_json`'s own
    /// number type cannot hold them, but with `arbitrary_precision` enabled
    /// elsewhere in a build a huge literal converts to infinity.
    #[error("number {0} is not finite; JSON and RFC 8785 have no representation for it")]
    NotFinite(String),
}

/// The canonical bytes of `value`.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, JcsError> {
    let mut out = Vec::new();
    write(value, &mut out)?;
    Ok(out)
}

/// Append the canonical bytes of `value` to `out`. On error `out` holds a
/// partial serialisation and must be discarded.
pub fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), JcsError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(map, out)?,
    }
    Ok(())
}

pub(crate) fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) -> Result<(), JcsError> {
    // serde_json's map iterates in UTF-8 byte order, or in insertion order
    // when some crate in the build enables `preserve_order`; neither is the
    // UTF-16 order RFC 8785 demands, so sort here whatever the map does.
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    members.sort_by(|a, b| utf16_order(a.0, b.0));
    out.push(b'{');
    for (i, (key, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(key, out);
        out.push(b':');
        write(value, out)?;
    }
    out.push(b'}');
    Ok(())
}

/// Compare two strings by their UTF-16 code units (RFC 8785 §3.2.3).
///
/// UTF-8 byte order equals code point order, which differs from UTF-16
/// order only when a supplementary character (a surrogate pair, 0xD800..)
/// meets a character in U+E000..U+FFFF; the common ASCII case takes the
/// byte comparison.
pub fn utf16_order(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.as_bytes().cmp(b.as_bytes())
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

/// RFC 8785 §3.2.2.2: the two-character escapes for the five controls that
/// have one, `\u00xx` (lowercase hex) for the other controls, `\"` and `\\`;
/// every other character, U+007F and `/` included, as its UTF-8 bytes.
pub(crate) fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    // Most strings need no escape at all: copy them in one piece.
    let Some(first) = first_escape(bytes) else {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    };
    out.reserve(bytes.len() + 1);
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate().skip(first) {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            // The other controls: `\u00xx`, written below.
            0x00..=0x1f => &[],
            _ => continue,
        };
        // Every byte that needs escaping is ASCII, so slicing the bytes
        // between escapes never splits a multi-byte character.
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The length of `s` as the canonical writer writes it, quotes included.
pub fn string_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    let Some(first) = first_escape(bytes) else {
        return bytes.len() + 2;
    };
    let escapes: usize = bytes[first..]
        .iter()
        .map(|&b| match b {
            b'"' | b'\\' | 0x08 | 0x0c | b'\n' | b'\r' | b'\t' => 1,
            0x00..=0x1f => 5,
            _ => 0,
        })
        .sum();
    bytes.len() + escapes + 2
}

fn needs_escape(b: &u8) -> bool {
    *b < 0x20 || *b == b'"' || *b == b'\\'
}

/// The index of the first byte that needs an escape, looking at 8 bytes at
/// a time: the word tests below say exactly whether a word holds such a
/// byte (if not which), the byte loop then finds it.
fn first_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Some byte of x is below n (n ≤ 0x80), or zero.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH != 0;
    let (words, rest) = bytes.as_chunks::<8>();
    for (i, word) in words.iter().enumerate() {
        let x = u64::from_ne_bytes(*word);
        if below(x, 0x20) || below(x ^ (ONES * u64::from(b'"')), 1) || below(x ^ (ONES * u64::from(b'\\')), 1) {
            return word.iter().position(needs_escape).map(|j| i * 8 + j);
        }
    }
    rest.iter().position(needs_escape).map(|j| words.len() * 8 + j)
}

/// The double that `n` denotes: integers rounded to nearest (ties to
/// even, as a correctly rounding JSON parser reads their text).
pub fn number_as_f64(n: &Number) -> Result<f64, JcsError> {
    let f = if let Some(u) = n.as_u64() {
        u as f64
    } else if let Some(i) = n.as_i64() {
        i as f64
    } else {
        n.as_f64().unwrap_or(f64::NAN)
    };
    if f.is_finite() {
        Ok(f)
    } else {
        Err(JcsError::NotFinite(n.to_string()))
    }
}

/// A finite double in ECMAScript `Number.prototype.toString` form
/// (RFC 8785 §3.2.2.3): shortest round-trip digits, exponent form outside
/// 1e-7 ≤ |x| < 1e21, `-0` printed as `0`.
pub fn format_f64(f: f64) -> Result<String, JcsError> {
    if !f.is_finite() {
        return Err(JcsError::NotFinite(f.to_string()));
    }
    let mut buffer = ryu_js::Buffer::new();
    Ok(buffer.format_finite(f).to_owned())
}

fn write_number(n: &Number, out: &mut Vec<u8>) -> Result<(), JcsError> {
    let f = number_as_f64(n)?;
    let mut buffer = ryu_js::Buffer::new();
    out.extend_from_slice(buffer.format_finite(f).as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn minus_zero_prints_as_zero() {
        assert_eq!(format_f64(-0.0).unwrap(), "0");
        assert_eq!(to_vec(&json!(-0.0)).unwrap(), b"0");
    }

    #[test]
    fn integers_are_doubles() {
        // As JavaScript prints them: shortest round-trip digits, then zeros.
        assert_eq!(to_vec(&Value::from(1u64 << 60)).unwrap(), b"1152921504606847000");
        assert_eq!(to_vec(&Value::from(u64::MAX)).unwrap(), b"18446744073709552000");
        assert_eq!(to_vec(&Value::from(i64::MIN)).unwrap(), b"-9223372036854776000");
        // 2^53 + 1 has no double; it rounds (ties to even) to 2^53.
        assert_eq!(to_vec(&Value::from((1u64 << 53) + 1)).unwrap(), b"9007199254740992");
        assert_eq!(to_vec(&Value::from((1u64 << 53) + 3)).unwrap(), b"9007199254740996");
        assert_eq!(to_vec(&Value::from(-5i64)).unwrap(), b"-5");
    }

    #[test]
    fn every_control_character_is_escaped_and_nothing_else() {
        let all: String = (0u32..0x80).filter_map(char::from_u32).collect();
        let out = String::from_utf8(to_vec(&Value::String(all)).unwrap()).unwrap();
        assert!(out.starts_with(r#""\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e"#));
        assert!(out.contains(r##"\u001f !\"#$%&'()*+,-./0"##));
        assert!(out.ends_with("[\\\\]^_`abcdefghijklmnopqrstuvwxyz{|}~\u{7f}\""));
    }

    #[test]
    fn string_len_is_what_is_written() {
        let all: String = (0u32..0x100).filter_map(char::from_u32).collect();
        for s in ["", "plain", "a\"b", "tab\there", "\u{1}\u{1f}x", "é\\", all.as_str()] {
            let mut out = Vec::new();
            write_string(s, &mut out);
            assert_eq!(string_len(s), out.len(), "{s:?}");
        }
    }

    #[test]
    fn escapes_are_found_wherever_they_are() {
        for len in 0..40 {
            for at in 0..len {
                for special in [0u8, 0x1f, b'"', b'\\', 0x20, 0x21, 0x5b, 0x5d, 0x7f, 0x80, 0xff] {
                    for fill in [b'a', 0x80, 0xff, 0x21, 0x5d] {
                        let mut bytes = vec![fill; len];
                        bytes[at] = special;
                        assert_eq!(first_escape(&bytes), bytes.iter().position(needs_escape), "{bytes:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn utf16_order_differs_from_code_point_order_for_surrogates() {
        // U+1F602 is D83D DE02 in UTF-16, below U+FB33.
        assert_eq!(utf16_order("\u{1F602}", "\u{FB33}"), std::cmp::Ordering::Less);
        assert_eq!("\u{1F602}".cmp("\u{FB33}"), std::cmp::Ordering::Greater);
        assert_eq!(utf16_order("a", "b"), std::cmp::Ordering::Less);
        assert_eq!(utf16_order("", "a"), std::cmp::Ordering::Less);
    }
}
