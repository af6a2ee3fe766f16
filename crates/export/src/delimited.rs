//! CSV: RFC 4180 (CRLF line ends, fields quoted only when they must be), a
//! header row of [`COLUMNS`], and a guard against formula injection in every
//! text cell, since the usual reader of an exported CSV is a spreadsheet.
//!
//! The guard: a cell whose first character a spreadsheet may take as the
//! start of a formula gets a `'` in front; so does a cell that already
//! starts with `'`, which keeps the rule reversible: drop the first
//! character of any cell that starts with `'`.

use std::borrow::Cow;
use std::io::Write;

use sealtrail_event::{jcs, timestamp};

use crate::columns::{cells, Cell, COLUMNS};
use crate::{ExportError, Row};

pub(crate) struct CsvSink {
    out: csv::Writer<Box<dyn Write + Send>>,
    // Reused between rows so a row costs no allocation for its record.
    record: Vec<String>,
}

/// True when a spreadsheet could read a cell starting with `c` as a
/// formula: the OWASP list (`= + - @`, tab, CR), their full-width forms
/// (which some locales' Excel converts), and `'` itself (see module docs).
pub(crate) fn needs_guard(c: char) -> bool {
    matches!(
        c,
        '=' | '+' | '-' | '@' | '\t' | '\r' | '\'' | '\u{FF1D}' | '\u{FF0B}' | '\u{FF0D}' | '\u{FF20}'
    )
}

fn guard(text: &str) -> Cow<'_, str> {
    match text.chars().next() {
        Some(c) if needs_guard(c) => Cow::Owned(format!("'{text}")),
        _ => Cow::Borrowed(text),
    }
}

impl CsvSink {
    pub(crate) fn new(out: Box<dyn Write + Send>) -> Result<Self, ExportError> {
        let mut out = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .quote_style(csv::QuoteStyle::Necessary)
            .buffer_capacity(64 * 1024)
            .from_writer(out);
        out.write_record(COLUMNS).map_err(from_csv)?;
        Ok(CsvSink {
            out,
            record: vec![String::new(); COLUMNS.len()],
        })
    }

    pub(crate) fn write(&mut self, row: &Row) -> Result<(), ExportError> {
        for (field, cell) in self.record.iter_mut().zip(cells(row)?) {
            field.clear();
            match cell {
                Cell::Absent => {}
                Cell::Text(text) => field.push_str(&guard(&text)),
                Cell::Index(n) => field.push_str(&n.to_string()),
                Cell::Number(n) => field.push_str(&jcs::format_f64(n).map_err(|e| ExportError::Canonical {
                    index: row.index,
                    field: "duration_ms",
                    reason: e.to_string(),
                })?),
                Cell::Time(t) => field.push_str(&timestamp::format(t)),
            }
        }
        self.out.write_record(&self.record).map_err(from_csv)
    }

    pub(crate) fn flush(&mut self) -> Result<(), ExportError> {
        Ok(self.out.flush()?)
    }

    pub(crate) fn finish(mut self) -> Result<(), ExportError> {
        self.flush()
    }
}

fn from_csv(error: csv::Error) -> ExportError {
    match error.into_kind() {
        csv::ErrorKind::Io(io) => ExportError::Io(io),
        // Writing records of equal length to an io::Write fails only with I/O.
        other => ExportError::Io(std::io::Error::other(format!("{other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_prefixes_formula_starts_and_quotes_only() {
        for (given, want) in [
            ("=1+1", "'=1+1"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("'quoted", "''quoted"),
            ("＝1+1", "'＝1+1"),
            ("a=1", "a=1"),
            (" =1", " =1"),
            ("", ""),
            ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00Z"),
        ] {
            assert_eq!(guard(given), want, "{given:?}");
        }
    }
}
