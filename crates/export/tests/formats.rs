//! Each format written and read back: JSON Lines and JSON byte for byte,
//! CSV through the csv crate, XLSX through calamine, the table as text.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use calamine::{open_workbook, Data, Reader, Xlsx};
use common::{expected_cells, sample, stored, Stored, FULL};
use sealtrail_export::{EventWriter, ExportError, Format, COLUMNS};

/// A `Write` whose bytes the test can read after the writer is gone.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn export(format: Format, events: &[Stored]) -> Vec<u8> {
    let out = Shared::default();
    let mut writer = EventWriter::new(format, Box::new(out.clone())).unwrap();
    for s in events {
        writer.write(&s.row()).unwrap();
    }
    assert_eq!(writer.finish().unwrap(), events.len() as u64);
    let bytes = out.0.lock().unwrap().clone();
    bytes
}

#[test]
fn jsonl_is_the_entries_verbatim_one_per_line() {
    let events = sample();
    let mut want = Vec::new();
    for s in &events {
        want.extend_from_slice(&s.entry);
        want.push(b'\n');
    }
    assert_eq!(export(Format::Jsonl, &events), want);
    assert_eq!(export(Format::Jsonl, &[]), b"");
}

#[test]
fn json_is_one_array_of_the_entries_verbatim() {
    let events = sample();
    let bytes = export(Format::Json, &events);
    let entries: Vec<&[u8]> = events.iter().map(|s| s.entry.as_slice()).collect();
    let want = [b"[".as_slice(), &entries.join(b",\n".as_slice()), b"]\n"].concat();
    assert_eq!(bytes, want);
    let parsed: Vec<serde_json::Value> = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(parsed.len(), events.len());
    for (value, s) in parsed.iter().zip(&events) {
        assert_eq!(value, &serde_json::to_value(&s.event).unwrap());
    }
    assert_eq!(export(Format::Json, &[]), b"[]\n");
}

#[test]
fn json_formats_refuse_an_entry_that_would_break_the_framing_and_go_on() {
    let good = stored(1, FULL);
    for format in [Format::Json, Format::Jsonl] {
        let out = Shared::default();
        let mut writer = EventWriter::new(format, Box::new(out.clone())).unwrap();
        let mut bad = good.row();
        bad.entry = b"{\"a\":\n1}";
        assert!(matches!(
            writer.write(&bad),
            Err(ExportError::BadEntry { index: 1, .. })
        ));
        bad.entry = b"";
        assert!(matches!(writer.write(&bad), Err(ExportError::BadEntry { .. })));
        // Nothing was written, so the writer is still good.
        writer.write(&good.row()).unwrap();
        assert_eq!(writer.finish().unwrap(), 1);
        let bytes = out.0.lock().unwrap().clone();
        assert!(bytes.windows(good.entry.len()).any(|w| w == good.entry.as_slice()));
    }
}

/// The documented way back from a guarded CSV cell.
fn unguard(cell: &str) -> &str {
    cell.strip_prefix('\'').unwrap_or(cell)
}

#[test]
fn csv_round_trips_field_by_field() {
    let events = sample();
    let bytes = export(Format::Csv, &events);
    assert!(bytes.starts_with(format!("{}\r\n", COLUMNS.join(",")).as_bytes()));
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes.as_slice());
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), COLUMNS);
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), events.len());
    for (record, s) in records.iter().zip(&events) {
        assert_eq!(record.len(), COLUMNS.len());
        let want = expected_cells(s);
        for (column, cell) in COLUMNS.iter().zip(record.iter()) {
            let expected = want.iter().find(|(c, _)| c == column).map_or("", |(_, v)| v.as_str());
            assert_eq!(unguard(cell), expected, "event {} column {column}", s.index);
            // No cell reaches a spreadsheet starting like a formula.
            let first = cell.chars().next();
            assert!(
                !matches!(first, Some('=' | '+' | '-' | '@' | '\t' | '\r' | '＝')),
                "event {} column {column}: {cell:?}",
                s.index
            );
        }
    }
    // The guard is a single quote in front, also on values starting with one.
    let cell = |row: usize, column: &str| {
        let at = COLUMNS.iter().position(|c| *c == column).unwrap();
        records[row][at].to_owned()
    };
    assert_eq!(cell(0, "tenant"), "'-acme");
    assert_eq!(cell(0, "error_type"), "'=HYPERLINK(\"http://evil.example\",\"x\")");
    assert_eq!(cell(0, "actor_name"), "O'Brien, \"Ada\"");
    assert_eq!(cell(2, "message"), "''already quoted \u{202E}evil\u{1b}[31m");
    assert_eq!(cell(2, "idempotency_key"), "'\rkey");
    assert_eq!(cell(2, "source_service"), "'＝cmd");

    let empty = export(Format::Csv, &[]);
    assert_eq!(empty, format!("{}\r\n", COLUMNS.join(",")).into_bytes());
}

/// The Excel serial of an RFC 3339 time, computed independently of the crate.
fn serial(text: &str) -> f64 {
    let t: sealtrail_event::Timestamp = text.parse().unwrap();
    t.as_millisecond() as f64 / 86_400_000.0 + 25_569.0
}

#[test]
fn xlsx_round_trips_cell_by_cell() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.xlsx");
    let events = sample();
    let mut writer = EventWriter::create(Format::Xlsx, &path).unwrap();
    for s in &events {
        writer.write(&s.row()).unwrap();
    }
    assert_eq!(writer.finish().unwrap(), 3);
    // The temporary row files are gone.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let mut book: Xlsx<_> = open_workbook(&path).unwrap();
    assert_eq!(book.sheet_names(), ["events"]);
    let range = book.worksheet_range("events").unwrap();
    let rows: Vec<&[Data]> = range.rows().collect();
    assert_eq!(rows.len(), 1 + events.len());
    let header: Vec<String> = rows[0].iter().map(|d| d.to_string()).collect();
    assert_eq!(header, COLUMNS);
    for (row, s) in rows[1..].iter().zip(&events) {
        let want = expected_cells(s);
        for (column, data) in COLUMNS.iter().zip(row.iter()) {
            let expected = want.iter().find(|(c, _)| c == column).map(|(_, v)| v.as_str());
            let at = format!("event {} column {column}", s.index);
            match (*column, expected) {
                (_, None) => assert_eq!(data, &Data::Empty, "{at}"),
                ("index" | "duration_ms", Some(v)) => assert_eq!(data, &Data::Float(v.parse().unwrap()), "{at}"),
                ("occurred_at" | "received_at", Some(v)) if !v.starts_with("18") => match data {
                    Data::DateTime(dt) => assert!((dt.as_f64() - serial(v)).abs() < 1e-9, "{at}: {dt}"),
                    other => panic!("{at}: {other:?} is not a date-time"),
                },
                // Before 1900-03-01 Excel has no date: ISO text instead.
                (_, Some(v)) => assert_eq!(data, &Data::String(v.to_owned()), "{at}"),
            }
        }
    }
}

#[test]
fn table_streams_fixed_columns_and_defuses_terminal_controls() {
    let text = String::from_utf8(export(Format::Table, &sample())).unwrap();
    let want = [
        "     INDEX  OCCURRED_AT           ACTION                        ACTOR                     TARGETS                         OUTCOME  SEVERITY   MESSAGE",
        "         7  2024-05-01T12:29:58Z  invoice.deleted               user-42                   invoice:INV:2024;0042, a:b:x    failure  warning    Line one  line two, with \"quotes\" and €, 日本語, 😀",
        "         8  2024-05-01T12:30:01Z  user.login                    -                         -                               -        info       -",
        "9007199254740991  1850-01-01T00:00:00Z  a.b                           =1+1                      -                               -        info       'already quoted \u{FFFD}evil\u{FFFD}[31m",
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), want);
    assert!(text.ends_with('\n'));
    assert_eq!(export(Format::Table, &[]), format!("{}\n", want[0]).into_bytes());
}

/// Fails every write after the first `budget` bytes.
struct Breaks {
    budget: usize,
}

impl Write for Breaks {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.budget {
            return Err(std::io::Error::other("disk full"));
        }
        self.budget -= buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn after_an_io_error_the_writer_refuses_more() {
    let s = stored(1, FULL);
    for format in [Format::Json, Format::Jsonl, Format::Csv, Format::Table] {
        let mut writer = EventWriter::new(format, Box::new(Breaks { budget: 1_000 })).unwrap();
        let mut result = Ok(());
        // Buffered output fails once the buffer spills.
        for _ in 0..1_000 {
            result = writer.write(&s.row());
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(result, Err(ExportError::Io(_))), "{format}: {result:?}");
        assert!(matches!(writer.write(&s.row()), Err(ExportError::Failed)), "{format}");
        assert!(matches!(writer.flush(), Err(ExportError::Failed)), "{format}");
        assert!(matches!(writer.finish(), Err(ExportError::Failed)), "{format}");
    }
}

#[test]
fn create_writes_every_format_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let events = sample();
    for format in Format::ALL {
        let path = dir.path().join(format!("out.{}", format.extension()));
        let mut writer = EventWriter::create(format, &path).unwrap();
        for s in &events {
            writer.write(&s.row()).unwrap();
        }
        assert_eq!(writer.finish().unwrap(), 3);
        let bytes = std::fs::read(&path).unwrap();
        if format != Format::Xlsx {
            assert_eq!(bytes, export(format, &events), "{format}");
        } else {
            assert!(bytes.starts_with(b"PK"));
        }
    }
    let missing = dir.path().join("no/such/dir/out.xlsx");
    assert!(matches!(
        EventWriter::create(Format::Xlsx, &missing),
        Err(ExportError::Io(_))
    ));
}

#[test]
fn the_documented_columns_are_the_columns() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/export-formats.md")).unwrap();
    let documented: Vec<&str> = doc
        .lines()
        .filter_map(|line| {
            let mut cells = line.split('|').map(str::trim);
            let (_, number, name) = (cells.next()?, cells.next()?, cells.next()?);
            number.parse::<usize>().ok()?;
            name.strip_prefix('`')?.strip_suffix('`')
        })
        .collect();
    assert_eq!(documented, COLUMNS);
}
