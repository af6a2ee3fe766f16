//! XLSX worksheets, streamed cell by cell with calamine: the first row
//! with a value is the header, every later row with a value is a row, and
//! cells read as a user sees them (see [`XlsxSource`]). The workbook's
//! shared strings are held in memory (the format requires it); the sheet
//! itself never is.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use calamine::{DataRef, ExcelDateTime, Reader, Xlsx};

use crate::{DataError, Row, Source};

/// Rows parsed ahead of the reader, at most.
const AHEAD: usize = 256;

enum Message {
    Header(Vec<String>),
    Row(u64, Vec<Option<String>>),
    Failed(DataError),
    /// The sheet was read to its end.
    End,
}

/// One worksheet of an XLSX workbook. Values: integers without `.0`,
/// other numbers as the shortest text that reads back the same, dates as
/// ISO 8601 (`2024-03-01`, or `2024-03-01T12:30:00` with a time,
/// `12:30:00` for a time alone), booleans `TRUE`/`FALSE` as Excel shows
/// them, error cells as their code (`#DIV/0!`), empty cells (and cells of
/// empty text) as null. Rows
/// without any value are skipped; `line` is the sheet's row number.
///
/// The workbook is parsed on a thread of its own, a bounded number of
/// rows ahead: calamine's cell reader borrows the workbook, which a
/// source that is handed around cannot hold beside it.
pub struct XlsxSource {
    name: String,
    columns: Vec<String>,
    rows: Receiver<Message>,
    done: bool,
}

impl XlsxSource {
    /// Opens `sheet` of the workbook at `path`, or its first sheet.
    pub fn open(path: &Path, sheet: Option<&str>) -> Result<XlsxSource, DataError> {
        let name = match sheet {
            Some(s) => format!("{}#{s}", path.display()),
            None => path.display().to_string(),
        };
        let file = File::open(path).map_err(|e| DataError::io(&name, &e))?;
        let workbook: Xlsx<_> = Xlsx::new(BufReader::new(file))
            .map_err(|e| DataError::new(&name, format!("not a readable XLSX workbook: {e}")))?;
        let sheets = workbook.sheet_names();
        let sheet = match sheet {
            Some(s) if sheets.iter().any(|n| n == s) => s.to_string(),
            Some(s) => {
                return Err(DataError::new(
                    &name,
                    format!("no sheet {s:?}; the workbook has {sheets:?}"),
                ))
            }
            None => sheets
                .first()
                .cloned()
                .ok_or_else(|| DataError::new(&name, "the workbook has no sheet"))?,
        };
        let (tx, rx) = sync_channel(AHEAD);
        let thread_name = name.clone();
        std::thread::Builder::new()
            .name("xlsx-reader".into())
            .spawn(move || read_sheet(workbook, &sheet, &thread_name, &tx))
            .map_err(|e| DataError::io(&name, &e))?;
        let columns = match rx.recv() {
            Ok(Message::Header(columns)) => columns,
            Ok(Message::Failed(e)) => return Err(e),
            Ok(Message::Row(..) | Message::End) | Err(_) => {
                return Err(DataError::new(&name, "the sheet reader stopped early"))
            }
        };
        Ok(XlsxSource {
            name,
            columns,
            rows: rx,
            done: false,
        })
    }
}

/// One sheet row's cells: (column, text), in column order.
type Cells = Vec<(u32, Option<String>)>;

/// Streams the sheet's rows into `tx`; stops when the receiver is gone.
fn read_sheet(mut workbook: Xlsx<BufReader<File>>, sheet: &str, name: &str, tx: &SyncSender<Message>) {
    // A send fails only when the source is gone, and then nobody listens.
    let _ = match stream_rows(&mut workbook, sheet, name, tx) {
        Ok(()) => tx.send(Message::End),
        Err(e) => tx.send(Message::Failed(e)),
    };
}

fn stream_rows(
    workbook: &mut Xlsx<BufReader<File>>,
    sheet: &str,
    name: &str,
    tx: &SyncSender<Message>,
) -> Result<(), DataError> {
    let xlsx_error = |e: calamine::XlsxError| DataError::new(name, format!("unreadable sheet: {e}"));
    let mut cells = workbook.worksheet_cells_reader(sheet).map_err(xlsx_error)?;
    let mut current: Option<(u32, Cells)> = None;
    let mut header: Option<(u32, Vec<String>)> = None;
    loop {
        let cell = cells.next_cell().map_err(xlsx_error)?;
        let flush = match (&cell, &current) {
            (Some(c), Some((row, _))) => c.get_position().0 != *row,
            (None, Some(_)) => true,
            _ => false,
        };
        if flush {
            if let Some((row, values)) = current.take() {
                if !emit(row, values, &mut header, name, tx)? {
                    return Ok(());
                }
            }
        }
        let Some(cell) = cell else { break };
        let (row, col) = cell.get_position();
        let text = render(cell.get_value());
        let entry = current.get_or_insert_with(|| (row, Vec::new()));
        entry.1.push((col, text));
    }
    if header.is_none() {
        return Err(DataError::new(name, "empty sheet: no header row"));
    }
    Ok(())
}

/// Sends one sheet row (the header first). `Ok(false)` when the reader is
/// gone.
fn emit(
    row: u32,
    values: Cells,
    header: &mut Option<(u32, Vec<String>)>,
    name: &str,
    tx: &SyncSender<Message>,
) -> Result<bool, DataError> {
    if values.iter().all(|(_, v)| v.is_none()) {
        return Ok(true);
    }
    let line = u64::from(row) + 1;
    let Some((first, columns)) = header else {
        let mut cells = values;
        while cells.last().is_some_and(|(_, v)| v.is_none()) {
            cells.pop();
        }
        let first = cells.first().map_or(0, |c| c.0);
        let mut columns = Vec::with_capacity(cells.len());
        for (i, (col, value)) in cells.into_iter().enumerate() {
            let want = first + i as u32;
            if col != want {
                return Err(DataError::new(name, "empty header cell")
                    .at_line(line)
                    .in_column(column_letters(want)));
            }
            match value {
                Some(v) if !v.is_empty() => columns.push(v),
                _ => {
                    return Err(DataError::new(name, "empty header cell")
                        .at_line(line)
                        .in_column(column_letters(col)))
                }
            }
        }
        *header = Some((first, columns.clone()));
        return Ok(tx.send(Message::Header(columns)).is_ok());
    };
    let mut out: Vec<Option<String>> = vec![None; columns.len()];
    for (col, value) in values {
        let Some(value) = value else { continue };
        let Some(i) = col
            .checked_sub(*first)
            .map(|i| i as usize)
            .filter(|&i| i < columns.len())
        else {
            return Err(
                DataError::new(name, format!("a value ({value:?}) outside the header's columns"))
                    .at_line(line)
                    .in_column(column_letters(col)),
            );
        };
        out[i] = Some(value);
    }
    Ok(tx.send(Message::Row(line, out)).is_ok())
}

/// `0` → `A`, `27` → `AB`: how a user names a sheet column.
fn column_letters(mut col: u32) -> String {
    let mut letters = Vec::new();
    loop {
        letters.push(b'A' + (col % 26) as u8);
        if col < 26 {
            break;
        }
        col = col / 26 - 1;
    }
    letters.reverse();
    String::from_utf8_lossy(&letters).into_owned()
}

/// A cell as text, as a user sees it; `None` for an empty cell.
fn render(value: &DataRef<'_>) -> Option<String> {
    Some(match value {
        DataRef::Empty => return None,
        // A cell holding empty text looks empty too.
        DataRef::String(s) if s.is_empty() => return None,
        DataRef::SharedString("") => return None,
        DataRef::Int(i) => i.to_string(),
        DataRef::Float(f) => render_number(*f),
        DataRef::String(s) => s.clone(),
        DataRef::SharedString(s) => (*s).to_string(),
        DataRef::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
        DataRef::DateTime(dt) => render_datetime(dt),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
        DataRef::Error(e) => e.to_string(),
    })
}

fn render_number(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        return format!("{}", f as i64);
    }
    if f != 0.0 && (f.abs() >= 1e15 || f.abs() < 1e-5) {
        return format!("{f:e}");
    }
    format!("{f}")
}

fn render_datetime(dt: &ExcelDateTime) -> String {
    let value = dt.as_f64();
    if dt.is_duration() {
        let total_ms = (value * 86_400_000.0).round() as i64;
        let (sign, ms) = if total_ms < 0 { ("-", -total_ms) } else { ("", total_ms) };
        let secs = ms / 1000;
        let mut s = format!("{sign}{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
        if ms % 1000 != 0 {
            s.push_str(&format!(".{:03}", ms % 1000));
        }
        return s;
    }
    let (y, mo, d, h, mi, s, ms) = dt.to_ymd_hms_milli();
    let mut time = format!("{h:02}:{mi:02}:{s:02}");
    if ms != 0 {
        time.push_str(&format!(".{ms:03}"));
    }
    if (0.0..1.0).contains(&value) {
        return time;
    }
    if (h, mi, s, ms) == (0, 0, 0, 0) {
        return format!("{y:04}-{mo:02}-{d:02}");
    }
    format!("{y:04}-{mo:02}-{d:02}T{time}")
}

impl Source for XlsxSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_row(&mut self, row: &mut Row) -> Result<bool, DataError> {
        row.clear();
        if self.done {
            return Ok(false);
        }
        match self.rows.recv() {
            Ok(Message::Row(line, values)) => {
                for v in &values {
                    match v {
                        Some(v) => row.push(v),
                        None => row.push_null(),
                    }
                }
                row.line = line;
                Ok(true)
            }
            Ok(Message::Failed(e)) => {
                self.done = true;
                Err(e)
            }
            Ok(Message::Header(_)) => {
                self.done = true;
                Err(DataError::new(&self.name, "the sheet reader sent a second header"))
            }
            Ok(Message::End) => {
                self.done = true;
                Ok(false)
            }
            // Without an end marker, the reader died: never a short table.
            Err(_) => {
                self.done = true;
                Err(DataError::new(&self.name, "the sheet reader stopped early"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::ExcelDateTimeType;

    #[test]
    fn numbers_dates_and_letters() {
        assert_eq!(render_number(3.0), "3");
        assert_eq!(render_number(-1.25), "-1.25");
        assert_eq!(render_number(0.1), "0.1");
        assert_eq!(render_number(1e20), "1e20");
        let date = |v: f64, t| render_datetime(&ExcelDateTime::new(v, t, false));
        // 45352 is 2024-03-01 in the 1900 system; .5 is noon.
        assert_eq!(date(45352.0, ExcelDateTimeType::DateTime), "2024-03-01");
        assert_eq!(date(45352.5, ExcelDateTimeType::DateTime), "2024-03-01T12:00:00");
        assert_eq!(date(0.25, ExcelDateTimeType::DateTime), "06:00:00");
        assert_eq!(date(1.5, ExcelDateTimeType::TimeDelta), "36:00:00");
        assert_eq!(column_letters(0), "A");
        assert_eq!(column_letters(25), "Z");
        assert_eq!(column_letters(27), "AB");
        assert_eq!(column_letters(701), "ZZ");
        assert_eq!(column_letters(702), "AAA");
    }
}
