//! XLSX: the CSV columns in an Excel workbook, written in bounded memory.
//!
//! Every sheet is a `rust_xlsxwriter` constant-memory worksheet: each row is
//! flushed to a temporary file as soon as the next one starts, strings are
//! stored inline (no shared-string table growing in memory), and saving
//! streams those files into the zip. The temporary files live next to the
//! output file, not in `/tmp`, which is often a RAM disk.
//!
//! Cells are typed: the index and `duration_ms` are numbers, times are
//! Excel date-times (UTC, displayed `yyyy-mm-dd hh:mm:ss.000`), everything
//! else is a text cell, which Excel never evaluates, so no formula guard is
//! needed and text is stored exactly. A sheet holds at most
//! [`ROWS_PER_SHEET`] events under its header; the next event starts a new
//! sheet. Not here: charts, formulas, autofit (it needs every row in memory).

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use rust_xlsxwriter::{Format as CellFormat, Workbook, Worksheet, XlsxError};
use sealtrail_event::{timestamp, Timestamp};

use crate::columns::{cells, Cell, COLUMNS};
use crate::{ExportError, Row};

/// Excel's row limit (1,048,576) less the header row.
pub const ROWS_PER_SHEET: u32 = 1_048_575;

/// Excel's limit on a cell's text, in UTF-16 code units.
const MAX_CELL_TEXT: usize = 32_767;

/// 1900-03-01T00:00:00Z. Excel counts a 29 February 1900 that never was, so
/// its serial numbers are right only from this day on; earlier times are
/// written as text.
const FIRST_EXCEL_SECOND: i64 = -2_203_891_200;

/// Days from Excel's day 0 (1899-12-30 with the phantom leap day) to 1970-01-01.
const UNIX_EPOCH_SERIAL: i64 = 25_569;

pub(crate) struct XlsxSink {
    book: Workbook,
    out: BufWriter<File>,
    bold: CellFormat,
    datetime: CellFormat,
    rows_per_sheet: u32,
    sheets: usize,
    /// Events written to the current sheet.
    rows_in_sheet: u32,
}

fn xlsx_error(error: XlsxError) -> ExportError {
    match error {
        XlsxError::IoError(io) => ExportError::Io(io),
        other => ExportError::Xlsx(Box::new(other)),
    }
}

impl XlsxSink {
    pub(crate) fn create(path: &Path, rows_per_sheet: u32) -> Result<Self, ExportError> {
        // Opened now so that a bad path fails before any work is done.
        let out = BufWriter::with_capacity(64 * 1024, File::create(path)?);
        let mut book = Workbook::new();
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        book.set_tempdir(dir).map_err(xlsx_error)?;
        // A sheet of a million wide rows can pass 4 GB of XML; ZIP64 lifts
        // the limit and Excel, LibreOffice and calamine read it.
        book.use_zip_large_file(true);
        let mut sink = XlsxSink {
            book,
            out,
            bold: CellFormat::new().set_bold(),
            datetime: CellFormat::new().set_num_format("yyyy-mm-dd hh:mm:ss.000"),
            rows_per_sheet,
            sheets: 0,
            rows_in_sheet: 0,
        };
        sink.add_sheet()?;
        Ok(sink)
    }

    fn add_sheet(&mut self) -> Result<(), ExportError> {
        let name = match self.sheets {
            0 => "events".to_owned(),
            n => format!("events ({})", n + 1),
        };
        let sheet = self.book.add_worksheet_with_constant_memory().map_err(xlsx_error)?;
        sheet.set_name(name).map_err(xlsx_error)?;
        for (col, header) in (0..).zip(COLUMNS) {
            sheet
                .write_string_with_format(0, col, header, &self.bold)
                .map_err(xlsx_error)?;
            let width = match header {
                "occurred_at" | "received_at" => 24,
                "id" => 28,
                "message" | "details" | "changes" | "context_user_agent" => 50,
                "index" | "crud" | "duration_ms" => 10,
                _ => 16,
            };
            sheet.set_column_width(col, width).map_err(xlsx_error)?;
        }
        sheet.set_freeze_panes(1, 0).map_err(xlsx_error)?;
        self.sheets += 1;
        self.rows_in_sheet = 0;
        Ok(())
    }

    pub(crate) fn write(&mut self, row: &Row) -> Result<(), ExportError> {
        if self.rows_in_sheet == self.rows_per_sheet {
            self.add_sheet()?;
        }
        let cells = cells(row)?;
        let at = self.rows_in_sheet + 1;
        let sheet = self.book.worksheet_from_index(self.sheets - 1).map_err(xlsx_error)?;
        for (col, cell) in (0..).zip(cells) {
            write_cell(sheet, at, col, cell, &self.datetime).map_err(xlsx_error)?;
        }
        self.rows_in_sheet += 1;
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<(), ExportError> {
        self.book.save_to_writer(&mut self.out).map_err(xlsx_error)?;
        Ok(self.out.flush()?)
    }
}

fn write_cell(sheet: &mut Worksheet, row: u32, col: u16, cell: Cell, datetime: &CellFormat) -> Result<(), XlsxError> {
    match cell {
        Cell::Absent => {}
        Cell::Text(text) => {
            sheet.write_string(row, col, cell_text(&text).as_ref())?;
        }
        // Exact: ledger indexes stay far below 2^53.
        Cell::Index(n) => {
            sheet.write_number(row, col, n as f64)?;
        }
        Cell::Number(n) => {
            sheet.write_number(row, col, n)?;
        }
        Cell::Time(t) => match excel_serial(t) {
            Some(serial) => {
                sheet.write_number_with_format(row, col, serial, datetime)?;
            }
            None => {
                sheet.write_string(row, col, timestamp::format(t))?;
            }
        },
    }
    Ok(())
}

/// The Excel serial date-time (days since 1899-12-30, fraction = time of
/// day) of `t` in UTC, or `None` before 1900-03-01, which Excel cannot show.
pub(crate) fn excel_serial(t: Timestamp) -> Option<f64> {
    let mut second = t.as_second();
    let mut nano = i64::from(t.subsec_nanosecond());
    if nano < 0 {
        second -= 1;
        nano += 1_000_000_000;
    }
    if second < FIRST_EXCEL_SECOND {
        return None;
    }
    let day = second.div_euclid(86_400);
    let in_day = second.rem_euclid(86_400);
    // Whole days and the fraction are added last, so the fraction is not
    // rounded against the day count before it has to be.
    let fraction = (in_day as f64 * 1e9 + nano as f64) / 86_400e9;
    Some((day + UNIX_EPOCH_SERIAL) as f64 + fraction)
}

/// `text` cut with `…` to Excel's 32,767 UTF-16 units if longer. (Literal
/// `_xHHHH_` sequences, which Excel would decode as a character, are
/// escaped by `rust_xlsxwriter` as Excel does, `_x005F_xHHHH_`; the limit
/// applies to the text before that escape.)
pub(crate) fn cell_text(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_CELL_TEXT || text.encode_utf16().count() <= MAX_CELL_TEXT {
        return Cow::Borrowed(text);
    }
    let mut units = 0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        if units + c.len_utf16() > MAX_CELL_TEXT - 1 {
            break;
        }
        units += c.len_utf16();
        end = i + c.len_utf8();
    }
    Cow::Owned(format!("{}…", &text[..end]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn serial_dates_match_excel() {
        let check = |text: &str, want: Option<f64>| {
            let t: Timestamp = text.parse().unwrap();
            assert_eq!(excel_serial(t), want, "{text}");
        };
        check("1970-01-01T00:00:00Z", Some(25_569.0));
        check("1900-03-01T00:00:00Z", Some(61.0));
        check("1900-02-28T23:59:59Z", None);
        check("2024-05-01T12:00:00Z", Some(45_413.5));
        check("9999-12-30T00:00:00Z", Some(2_958_464.0));
        check("1969-12-31T18:00:00Z", Some(25_568.75));
        check("1969-12-31T23:59:59.5Z", Some(25_568.0 + 86_399.5 / 86_400.0));
    }

    #[test]
    fn cell_text_is_cut_to_excels_limit() {
        assert_eq!(cell_text("plain"), "plain");
        let fits = "é".repeat(MAX_CELL_TEXT);
        assert_eq!(cell_text(&fits), fits);
        let long = "é".repeat(40_000);
        let cut = cell_text(&long);
        assert_eq!(cut.encode_utf16().count(), MAX_CELL_TEXT);
        assert!(cut.ends_with("é…"));
        // Astral characters take two UTF-16 units and are never split.
        let long = "😀".repeat(20_000);
        let cut = cell_text(&long);
        assert_eq!(cut.encode_utf16().count(), MAX_CELL_TEXT);
        assert!(cut.ends_with("😀…"));
    }
}
