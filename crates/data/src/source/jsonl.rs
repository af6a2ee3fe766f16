//! JSON Lines: one JSON object per line, blank lines skipped. The first
//! object fixes the columns (its keys, in order); a later object may leave
//! a key out (null) but may not bring a new one, which is refused naming
//! the line and the key: a column that appears halfway through a file is
//! far more often a mistake than a design, and a diff needs its columns
//! before the first row.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::input::{read_line_bounded, CountingReader, LineError};
use super::Progress;
use crate::{DataError, Row, Source};

/// A JSON Lines file. Values become text: strings as they are, numbers as
/// written, `true`/`false`, JSON `null` as null, and objects and arrays as
/// their compact JSON text.
pub struct JsonLinesSource {
    name: String,
    columns: Vec<String>,
    index: HashMap<String, usize>,
    reader: BufReader<CountingReader<File>>,
    line_buf: Vec<u8>,
    /// One slot per column for the line being read, reused.
    slots: Vec<String>,
    /// What the line gave each column: missing, a value or null.
    seen: Vec<Seen>,
    /// The first object, parsed while opening, handed out first.
    pending: Option<u64>,
    line: u64,
    /// Byte offset of the start of the current line.
    line_start: u64,
    consumed: u64,
    total_bytes: Option<u64>,
    max_record_bytes: u64,
}

impl JsonLinesSource {
    pub fn open(path: &Path, max_record_bytes: u64) -> Result<JsonLinesSource, DataError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| DataError::io(&name, &e))?;
        let total_bytes = file.metadata().ok().map(|m| m.len());
        let reader = BufReader::with_capacity(1 << 16, CountingReader::new(file));
        let mut source = JsonLinesSource {
            name,
            columns: Vec::new(),
            index: HashMap::new(),
            reader,
            line_buf: Vec::new(),
            slots: Vec::new(),
            seen: Vec::new(),
            pending: None,
            line: 0,
            line_start: 0,
            consumed: 0,
            total_bytes,
            max_record_bytes,
        };
        if !source.next_line()? {
            return Err(DataError::new(&source.name, "empty file: no JSON object"));
        }
        source.parse_line(true)?;
        if source.columns.is_empty() {
            return Err(DataError::new(&source.name, "the first object has no keys: no columns").at_line(source.line));
        }
        source.pending = Some(source.line);
        Ok(source)
    }

    /// Reads the next non-blank line into `line_buf`.
    fn next_line(&mut self) -> Result<bool, DataError> {
        loop {
            self.line_start = self.consumed;
            let n = match read_line_bounded(&mut self.reader, &mut self.line_buf, self.max_record_bytes) {
                Ok(Some(n)) => n,
                Ok(None) => return Ok(false),
                Err(LineError::TooLong) => {
                    return Err(
                        DataError::new(&self.name, format!("line longer than {} bytes", self.max_record_bytes))
                            .at_line(self.line + 1)
                            .at_byte(self.line_start),
                    )
                }
                Err(LineError::Io(e)) => {
                    return Err(DataError::io(&self.name, &e)
                        .at_line(self.line + 1)
                        .at_byte(self.line_start))
                }
            };
            self.consumed += n as u64;
            self.line += 1;
            if !self.line_buf.iter().all(|b| b.is_ascii_whitespace()) {
                return Ok(true);
            }
        }
    }

    /// Parses `line_buf` into the slots; on the first line, also learns
    /// the columns.
    fn parse_line(&mut self, first: bool) -> Result<(), DataError> {
        self.seen.iter_mut().for_each(|s| *s = Seen::Missing);
        let mut new_key = None;
        let mut de = serde_json::Deserializer::from_slice(&self.line_buf);
        let seed = LineSeed {
            new_key: &mut new_key,
            first,
            columns: &mut self.columns,
            index: &mut self.index,
            slots: &mut self.slots,
            seen: &mut self.seen,
        };
        let result = seed.deserialize(&mut de).and_then(|()| de.end());
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let column = e.column() as u64;
                // The parser saw one line: its own "at line 1" would mislead.
                let text = e.to_string();
                let suffix = format!(" at line {} column {}", e.line(), e.column());
                let message = match text.strip_suffix(&suffix) {
                    Some(m) if column > 0 => format!("{m} (column {column} of the line)"),
                    Some(m) => m.to_string(),
                    None => text,
                };
                let mut err = DataError::new(&self.name, message).at_line(self.line);
                if let Some(key) = new_key {
                    err = err.in_column(key);
                }
                if column > 0 {
                    err = err.at_byte(self.line_start + column - 1);
                }
                Err(err)
            }
        }
    }
}

struct LineSeed<'a> {
    first: bool,
    columns: &'a mut Vec<String>,
    index: &'a mut HashMap<String, usize>,
    slots: &'a mut Vec<String>,
    seen: &'a mut Vec<Seen>,
    /// The key that made the line fail, for the error's column.
    new_key: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for LineSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LineSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed { index: self.index })? {
            let i = match key {
                Key::Known(i) => i,
                Key::New(key) if self.first => {
                    let i = self.columns.len();
                    self.columns.push(key.to_string());
                    self.index.insert(key.to_string(), i);
                    self.slots.push(String::new());
                    self.seen.push(Seen::Missing);
                    i
                }
                Key::New(key) => {
                    *self.new_key = Some(key.to_string());
                    return Err(de::Error::custom(format!(
                        "key {key:?} is not among the columns of the first line"
                    )));
                }
            };
            if self.seen[i] != Seen::Missing {
                let name = &self.columns[i];
                return Err(de::Error::custom(format!("key {name:?} appears twice")));
            }

            let raw: &RawValue = map.next_value()?;
            self.seen[i] = render(raw, &mut self.slots[i]).map_err(de::Error::custom)?;
        }
        Ok(())
    }
}

/// A key looked up without allocating when it is a known column.
enum Key {
    Known(usize),
    New(String),
}

struct KeySeed<'a> {
    index: &'a HashMap<String, usize>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(match self.index.get(key) {
            Some(&i) => Key::Known(i),
            None => Key::New(key.to_string()),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Missing,
    Value,
    Null,
}

/// Writes the text of a JSON value into `out`, reused from line to line.
fn render(raw: &RawValue, out: &mut String) -> Result<Seen, serde_json::Error> {
    let text = raw.get();
    out.clear();
    match text.as_bytes().first() {
        Some(b'n') => return Ok(Seen::Null),
        Some(b'"') => {
            if text.contains('\\') {
                let s: String = serde_json::from_str(text)?;
                out.push_str(&s);
            } else {
                out.push_str(&text[1..text.len() - 1]);
            }
        }
        Some(b'{' | b'[') => compact(text, out),
        _ => out.push_str(text),
    }
    Ok(Seen::Value)
}

/// Copies JSON text without the whitespace between tokens.
fn compact(text: &str, out: &mut String) {
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
            if c == '"' {
                in_string = true;
            }
        }
    }
}

impl Source for JsonLinesSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_row(&mut self, row: &mut Row) -> Result<bool, DataError> {
        row.clear();
        let line = match self.pending.take() {
            Some(line) => line,
            None => {
                if !self.next_line()? {
                    return Ok(false);
                }
                self.parse_line(false)?;
                self.line
            }
        };
        for (slot, seen) in self.slots.iter().zip(&self.seen) {
            match (slot, seen) {
                (text, Seen::Value) => row.push(text),
                _ => row.push_null(),
            }
        }
        row.line = line;
        Ok(true)
    }

    fn progress(&self) -> Option<Progress> {
        Some(Progress {
            read_bytes: self.reader.get_ref().read,
            total_bytes: self.total_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(content: &str) -> (tempfile::TempDir, Result<JsonLinesSource, DataError>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.jsonl");
        std::fs::write(&path, content).expect("write");
        let source = JsonLinesSource::open(&path, 1 << 20);
        (dir, source)
    }

    type Lines = Vec<(u64, Vec<Option<String>>)>;

    fn rows(source: &mut JsonLinesSource) -> Result<Lines, DataError> {
        let mut row = Row::new();
        let mut out = Vec::new();
        while source.next_row(&mut row)? {
            out.push((row.line, row.values().map(|v| v.map(str::to_string)).collect()));
        }
        Ok(out)
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn values_as_text_in_first_line_key_order() {
        let (_dir, source) = open(concat!(
            "{\"id\": 1, \"name\": \"a\\\"b\", \"ok\": true, \"n\": null, \"x\": 1.50e3}\n",
            "\n",
            "{\"name\": \"é\", \"id\": -2, \"x\": {\"k\": [1, \"a b\"]}, \"ok\": false}\r\n",
        ));
        let mut source = source.expect("open");
        assert_eq!(source.columns(), ["id", "name", "ok", "n", "x"]);
        assert_eq!(
            rows(&mut source).expect("rows"),
            vec![
                (1, vec![s("1"), s("a\"b"), s("true"), None, s("1.50e3")]),
                (3, vec![s("-2"), s("é"), s("false"), None, s("{\"k\":[1,\"a b\"]}")]),
            ]
        );
    }

    #[test]
    fn a_new_key_names_line_and_key() {
        let (_dir, source) = open("{\"id\":1}\n{\"id\":2}\n{\"id\":3,\"extra\":0}\n");
        let mut source = source.expect("open");
        let err = rows(&mut source).expect_err("new key");
        assert_eq!((err.line, err.column.as_deref()), (Some(3), Some("extra")));
    }

    #[test]
    fn escaped_keys_match_and_repeated_keys_are_refused() {
        let (_dir, source) = open("{\"name\":\"a\"}\n{\"n\\u0061me\":\"b\"}\n{\"name\":1,\"name\":2}\n");
        let mut source = source.expect("open");
        let mut row = Row::new();
        assert!(source.next_row(&mut row).expect("line 1"));
        assert!(source.next_row(&mut row).expect("line 2"));
        assert_eq!((row.line, row.get(0)), (2, Some("b")));
        let err = source.next_row(&mut row).expect_err("twice");
        assert_eq!(err.line, Some(3));
        assert!(err.message.contains("\"name\" appears twice"), "{err}");
    }

    #[test]
    fn bad_json_names_line_and_byte() {
        let (_dir, source) = open("{\"id\":1}\n{\"id\":,}\n");
        let mut source = source.expect("open");
        let err = rows(&mut source).expect_err("bad json");
        // Line 2 starts at byte 9; the parser stops at the comma, column 7.
        assert_eq!((err.line, err.byte), (Some(2), Some(9 + 6)));
        assert!(err.message.ends_with("(column 7 of the line)"), "{err}");
        assert!(!err.message.contains("line 1"), "{err}");
        let (_dir, source) = open("[1,2]\n");
        let err = source.err().expect("not an object");
        assert!(err.message.contains("a JSON object"), "{err}");
        let (_dir, source) = open("{\"a\":1}{\"a\":2}\n");
        assert!(source.is_err(), "two objects on one line");
    }

    #[test]
    fn empty_and_blank_files_are_refused() {
        let (_dir, source) = open("");
        assert!(source.err().expect("empty").message.contains("empty file"));
        let (_dir, source) = open("\n  \n");
        assert!(source.err().expect("blank").message.contains("empty file"));
        let (_dir, source) = open("\n{}\n");
        assert_eq!(source.err().expect("no keys").line, Some(2));
    }

    #[test]
    fn a_line_past_the_bound_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.jsonl");
        let long = format!("{{\"id\":1}}\n{{\"id\":\"{}\"}}\n", "x".repeat(5000));
        std::fs::write(&path, long).expect("write");
        let mut source = JsonLinesSource::open(&path, 1000).expect("open");
        let err = rows(&mut source).expect_err("too long");
        assert_eq!((err.line, err.byte), (Some(2), Some(9)));
    }
}
