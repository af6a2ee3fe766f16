//! Streaming writers of audit events: a terminal table, JSON, JSON Lines,
//! CSV and XLSX, each in memory bounded by one row, whatever the number of
//! rows. docs/export-formats.md specifies every format exactly.
//!
//! ```text
//! EventWriter::new(format, out) / ::create(format, path)
//!     .write(&Row { index, event, entry })   × n
//!     .finish() -> rows written              (closes the array, saves the workbook, flushes)
//! ```
//!
//! JSON and JSON Lines copy each stored entry (RFC 8785 bytes) verbatim, so
//! a reader can recompute its leaf hash; they never re-serialise. CSV and
//! XLSX flatten the [`Event`] into the fixed [`COLUMNS`]; the table shows a
//! few of them for people.
//!
//! Architecture invariant: takes rows from its caller and writes bytes;
//! knows nothing of the ledger, queries or HTTP, and reads no clock.
//! Architecture invariant: memory does not grow with the number of rows
//! (XLSX spills each row to a temporary file beside the output).

mod columns;
mod delimited;
mod format;
mod table;
mod workbook;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use sealtrail_event::Event;

pub use columns::COLUMNS;
pub use format::{Format, UnknownFormat};
pub use workbook::ROWS_PER_SHEET;

/// One event to export.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// The event's index in its ledger.
    pub index: u64,
    pub event: &'a Event,
    /// The stored entry: the event's RFC 8785 bytes, as the ledger holds them.
    pub entry: &'a [u8],
}

/// Why an export failed. After any error the writer refuses further rows
/// ([`ExportError::Failed`]): its output is incomplete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error(
        "xlsx cannot be written to a stream: a workbook is a zip archive assembled at the end; \
         export it to a file (--output FILE)"
    )]
    XlsxNeedsFile,
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing the xlsx workbook: {0}")]
    Xlsx(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// JSON and JSON Lines copy entries verbatim, so a row whose `entry` is
    /// not one line of JSON object text would corrupt the whole output.
    #[error("row {index}: the entry is not a stored event entry ({reason})")]
    BadEntry { index: u64, reason: &'static str },
    #[error("row {index}: {field} has no canonical JSON form: {reason}")]
    Canonical {
        index: u64,
        field: &'static str,
        reason: String,
    },
    #[error("an earlier write failed; the export is incomplete and takes no more rows")]
    Failed,
}

/// Writes rows in one [`Format`] to a stream or a file.
///
/// Output is buffered; call [`EventWriter::flush`] to push what is written
/// so far (a live stream), and always [`EventWriter::finish`]: a JSON array
/// is closed and a workbook is written only then. Dropping the writer
/// without `finish` leaves the output incomplete.
pub struct EventWriter {
    sink: Sink,
    rows: u64,
    failed: bool,
}

enum Sink {
    Jsonl(BufWriter<Box<dyn Write + Send>>),
    Json(BufWriter<Box<dyn Write + Send>>),
    Csv(Box<delimited::CsvSink>),
    Table(table::TableSink),
    Xlsx(Box<workbook::XlsxSink>),
}

const BUFFER: usize = 64 * 1024;

impl EventWriter {
    /// A writer to a stream. The CSV header, the table header or the JSON
    /// `[` is written at once. XLSX is refused ([`ExportError::XlsxNeedsFile`]).
    pub fn new(format: Format, out: Box<dyn Write + Send>) -> Result<Self, ExportError> {
        let sink = match format {
            Format::Jsonl => Sink::Jsonl(BufWriter::with_capacity(BUFFER, out)),
            Format::Json => {
                let mut out = BufWriter::with_capacity(BUFFER, out);
                out.write_all(b"[")?;
                Sink::Json(out)
            }
            Format::Csv => Sink::Csv(Box::new(delimited::CsvSink::new(out)?)),
            Format::Table => Sink::Table(table::TableSink::new(out)?),
            Format::Xlsx => return Err(ExportError::XlsxNeedsFile),
        };
        Ok(EventWriter {
            sink,
            rows: 0,
            failed: false,
        })
    }

    /// A writer to a new file at `path` (truncated if it exists), in any
    /// format. For XLSX, temporary files are made in the same directory.
    pub fn create(format: Format, path: &Path) -> Result<Self, ExportError> {
        Self::create_with_sheet_rows(format, path, ROWS_PER_SHEET)
    }

    fn create_with_sheet_rows(format: Format, path: &Path, rows_per_sheet: u32) -> Result<Self, ExportError> {
        match format {
            Format::Xlsx => Ok(EventWriter {
                sink: Sink::Xlsx(Box::new(workbook::XlsxSink::create(path, rows_per_sheet)?)),
                rows: 0,
                failed: false,
            }),
            other => Self::new(other, Box::new(File::create(path)?)),
        }
    }

    /// Writes one row.
    pub fn write(&mut self, row: &Row) -> Result<(), ExportError> {
        if self.failed {
            return Err(ExportError::Failed);
        }
        // Checked before anything is written, so a bad row does not poison.
        if matches!(self.sink, Sink::Jsonl(_) | Sink::Json(_)) {
            check_entry(row)?;
        }
        self.failed = true;
        match &mut self.sink {
            Sink::Jsonl(out) => {
                out.write_all(row.entry)?;
                out.write_all(b"\n")?;
            }
            Sink::Json(out) => {
                if self.rows > 0 {
                    out.write_all(b",\n")?;
                }
                out.write_all(row.entry)?;
            }
            Sink::Csv(sink) => sink.write(row)?,
            Sink::Table(sink) => sink.write(row)?,
            Sink::Xlsx(sink) => sink.write(row)?,
        }
        self.failed = false;
        self.rows += 1;
        Ok(())
    }

    /// Pushes buffered output to the underlying stream (nothing for XLSX,
    /// which is written by [`EventWriter::finish`]).
    pub fn flush(&mut self) -> Result<(), ExportError> {
        if self.failed {
            return Err(ExportError::Failed);
        }
        let result = match &mut self.sink {
            Sink::Jsonl(out) | Sink::Json(out) => out.flush().map_err(ExportError::from),
            Sink::Csv(sink) => sink.flush(),
            Sink::Table(sink) => sink.flush(),
            Sink::Xlsx(_) => Ok(()),
        };
        self.failed = result.is_err();
        result
    }

    /// Completes the output (closes the JSON array, writes the workbook),
    /// flushes it, and returns the number of rows written.
    pub fn finish(self) -> Result<u64, ExportError> {
        if self.failed {
            return Err(ExportError::Failed);
        }
        match self.sink {
            Sink::Jsonl(mut out) => out.flush()?,
            Sink::Json(mut out) => {
                out.write_all(b"]\n")?;
                out.flush()?;
            }
            Sink::Csv(sink) => sink.finish()?,
            Sink::Table(sink) => sink.finish()?,
            Sink::Xlsx(sink) => sink.finish()?,
        }
        Ok(self.rows)
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }
}

/// The cheap checks that keep JSON Lines one entry per line and the JSON
/// array well formed; the entry's content is the ledger's business.
fn check_entry(row: &Row) -> Result<(), ExportError> {
    let bad = |reason| {
        Err(ExportError::BadEntry {
            index: row.index,
            reason,
        })
    };
    if row.entry.first() != Some(&b'{') || row.entry.last() != Some(&b'}') {
        return bad("not a JSON object");
    }
    if row.entry.iter().any(|&b| b == b'\n' || b == b'\r') {
        return bad("contains a line break");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn writers_are_send() {
        fn send<T: Send>() {}
        send::<EventWriter>();
        send::<ExportError>();
    }

    fn event(n: u64) -> (Event, Vec<u8>) {
        let at: sealtrail_event::Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        let id = sealtrail_event::event_id(at, [n as u8; 10]).unwrap();
        let json = format!(r#"{{"action": "row.{n}"}}"#);
        let event = sealtrail_event::accept_json(json.as_bytes(), at, id).unwrap();
        let entry = sealtrail_event::canonical_entry(&event).unwrap();
        (event, entry)
    }

    fn zip_member(path: &Path, name: &str) -> String {
        let mut archive = zip::ZipArchive::new(File::open(path).unwrap()).unwrap();
        std::io::read_to_string(archive.by_name(name).unwrap()).unwrap()
    }

    #[test]
    fn xlsx_starts_a_new_sheet_at_the_row_limit_each_with_a_bold_frozen_header() {
        use calamine::{open_workbook, Data, Reader, Xlsx};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("split.xlsx");
        let mut writer = EventWriter::create_with_sheet_rows(Format::Xlsx, &path, 2).unwrap();
        for n in 0..5 {
            let (event, entry) = event(n);
            writer
                .write(&Row {
                    index: n,
                    event: &event,
                    entry: &entry,
                })
                .unwrap();
        }
        assert_eq!(writer.finish().unwrap(), 5);

        let mut book: Xlsx<_> = open_workbook(&path).unwrap();
        assert_eq!(book.sheet_names(), ["events", "events (2)", "events (3)"]);
        let action = COLUMNS.iter().position(|c| *c == "action").unwrap();
        let mut n = 0;
        for (sheet, rows) in [("events", 2), ("events (2)", 2), ("events (3)", 1)] {
            let range = book.worksheet_range(sheet).unwrap();
            let all: Vec<&[Data]> = range.rows().collect();
            assert_eq!(all.len(), 1 + rows, "{sheet}");
            assert_eq!(all[0][0], Data::String("index".into()));
            for row in &all[1..] {
                assert_eq!(row[0], Data::Float(n as f64));
                assert_eq!(row[action], Data::String(format!("row.{n}")));
                n += 1;
            }
            // Frozen first row on every sheet.
            let index = book.sheet_names().iter().position(|s| s == sheet).unwrap() + 1;
            let xml = zip_member(&path, &format!("xl/worksheets/sheet{index}.xml"));
            assert!(
                xml.contains(r#"<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>"#),
                "{xml}"
            );
            // Inline strings: no shared-string table grows in memory.
            assert!(xml.contains(r#"t="inlineStr""#));
            // The header cells use style 1, which is bold.
            assert!(
                xml.contains(r#"<c r="A1" s="1" t="inlineStr"><is><t>index</t></is></c>"#),
                "{xml}"
            );
        }
        let styles = zip_member(&path, "xl/styles.xml");
        let fonts = &styles[styles.find("<fonts").unwrap()..styles.find("</fonts>").unwrap()];
        let xfs = &styles[styles.find("<cellXfs").unwrap()..styles.find("</cellXfs>").unwrap()];
        let second_xf = xfs.split("<xf ").nth(2).unwrap();
        assert!(second_xf.contains(r#"fontId="1""#), "{xfs}");
        assert!(fonts.split("<font>").nth(2).unwrap().contains("<b/>"), "{fonts}");
    }

    #[test]
    fn xlsx_needs_a_file() {
        let err = EventWriter::new(Format::Xlsx, Box::new(std::io::sink())).err();
        assert!(matches!(err, Some(ExportError::XlsxNeedsFile)));
        assert!(err.unwrap().to_string().contains("--output"));
    }
}
