//! XLSX: a workbook of sheets `summary`, `added`, `removed`, `changed`,
//! `duplicates` and `schema`, written in bounded memory.
//!
//! Every sheet is a `rust_xlsxwriter` constant-memory worksheet: rows are
//! flushed to a temporary file as they are written, and strings are stored
//! inline. The summary and schema sheets are written at the end, into
//! sheets created first so that they come first. A sheet that reaches
//! Excel's row limit continues in a sheet `added (2)`, and so on.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use rust_xlsxwriter::{Color, Format as CellFormat, Workbook, XlsxError};

use super::DiffWriter;
use crate::diff::{ChangeSink, DiffSummary, Layout};
use crate::{Change, ChangeKind, DataError};

/// Excel's row limit (1,048,576) less the header row.
const ROWS_PER_SHEET: u32 = 1_048_575;

/// Excel's limit on a cell's text, in UTF-16 code units.
const MAX_CELL_TEXT: usize = 32_767;

fn xlsx_error(err: XlsxError) -> DataError {
    DataError::new("output", format!("XLSX: {err}"))
}

/// Text as a cell holds it: cut (with a final `…`) past Excel's limit.
fn cell_text(v: &str) -> Cow<'_, str> {
    if v.len() <= MAX_CELL_TEXT / 3 || v.encode_utf16().count() <= MAX_CELL_TEXT {
        return Cow::Borrowed(v);
    }
    let mut units = 0;
    let mut end = 0;
    for (i, c) in v.char_indices() {
        units += c.len_utf16();
        if units > MAX_CELL_TEXT - 1 {
            break;
        }
        end = i + c.len_utf8();
    }
    Cow::Owned(format!("{}…", &v[..end]))
}

/// Sheets that receive changes, by kind.
#[derive(Clone, Copy)]
enum Kind {
    Added = 0,
    Removed = 1,
    Changed = 2,
    Duplicates = 3,
}

const NAMES: [&str; 4] = ["added", "removed", "changed", "duplicates"];

struct Sheet {
    /// Index of its current worksheet in the workbook.
    index: usize,
    /// Rows written to it, header excluded.
    rows: u32,
    parts: u32,
}

pub(crate) struct XlsxWriter {
    out: Box<dyn Write + Send>,
    book: Workbook,
    bold: CellFormat,
    changed: CellFormat,
    layout: Option<Layout>,
    sheets: Vec<Sheet>,
}

impl XlsxWriter {
    pub fn new(out: Box<dyn Write + Send>, temp: &Path) -> Result<XlsxWriter, DataError> {
        let mut book = Workbook::new();
        book.set_tempdir(temp).map_err(xlsx_error)?;
        book.use_zip_large_file(true);
        Ok(XlsxWriter {
            out,
            book,
            bold: CellFormat::new().set_bold(),
            changed: CellFormat::new().set_background_color(Color::RGB(0xFFEB9C)),
            layout: None,
            sheets: Vec::new(),
        })
    }

    fn header(&self, kind: Kind) -> Vec<String> {
        let Some(l) = &self.layout else {
            return Vec::new();
        };
        let mut h: Vec<String> = Vec::new();
        match kind {
            Kind::Added => {
                h.push("right_line".into());
                h.extend(l.right_columns.iter().cloned());
            }
            Kind::Removed => {
                h.push("left_line".into());
                h.extend(l.left_columns.iter().cloned());
            }
            Kind::Changed => {
                h.extend(l.key_columns.iter().cloned());
                h.extend(["left_line", "right_line"].map(String::from));
                for c in &l.compared_columns {
                    h.push(format!("{c} (left)"));
                    h.push(format!("{c} (right)"));
                }
            }
            Kind::Duplicates => {
                h.extend(l.key_columns.iter().cloned());
                h.extend(["left_rows", "right_rows", "left_lines", "right_lines"].map(String::from));
            }
        }
        h
    }

    /// Adds a worksheet named `name` with `header` in bold; returns its index.
    fn add_sheet(&mut self, name: &str, header: &[String]) -> Result<usize, DataError> {
        let index = self.book.worksheets_mut().len();
        let sheet = self.book.add_worksheet_with_constant_memory().map_err(xlsx_error)?;
        sheet.set_name(name).map_err(xlsx_error)?;
        for (col, h) in (0u16..).zip(header) {
            sheet
                .write_string_with_format(0, col, cell_text(h).as_ref(), &self.bold)
                .map_err(xlsx_error)?;
        }
        if !header.is_empty() {
            sheet.set_freeze_panes(1, 0).map_err(xlsx_error)?;
        }
        Ok(index)
    }

    /// The next row of `kind`'s sheet: (worksheet index, row number).
    fn next_row(&mut self, kind: Kind) -> Result<(usize, u32), DataError> {
        let k = kind as usize;
        if self.sheets[k].rows == ROWS_PER_SHEET {
            let parts = self.sheets[k].parts + 1;
            let header = self.header(kind);
            let index = self.add_sheet(&format!("{} ({parts})", NAMES[k]), &header)?;
            self.sheets[k] = Sheet { index, rows: 0, parts };
        }
        let s = &mut self.sheets[k];
        s.rows += 1;
        Ok((s.index, s.rows))
    }

    fn write_values<'v>(
        &mut self,
        index: usize,
        row: u32,
        first_col: u16,
        values: impl IntoIterator<Item = &'v Option<String>>,
    ) -> Result<(), DataError> {
        let sheet = self.book.worksheet_from_index(index).map_err(xlsx_error)?;
        for (col, v) in (first_col..).zip(values) {
            if let Some(v) = v {
                sheet
                    .write_string(row, col, cell_text(v).as_ref())
                    .map_err(xlsx_error)?;
            }
        }
        Ok(())
    }
}

impl ChangeSink for XlsxWriter {
    fn begin(&mut self, layout: &Layout) -> Result<(), DataError> {
        self.layout = Some(layout.clone());
        self.add_sheet("summary", &[])?;
        for (k, kind) in [Kind::Added, Kind::Removed, Kind::Changed, Kind::Duplicates]
            .into_iter()
            .enumerate()
        {
            let header = self.header(kind);
            let index = self.add_sheet(NAMES[k], &header)?;
            self.sheets.push(Sheet {
                index,
                rows: 0,
                parts: 1,
            });
        }
        self.add_sheet(
            "schema",
            &["change".to_string(), "column".to_string(), "detail".to_string()],
        )?;
        Ok(())
    }

    fn change(&mut self, c: &Change) -> Result<(), DataError> {
        if self.layout.is_none() {
            return Err(DataError::new("output", "XLSX: a change before the layout"));
        }
        let kind = match c.kind {
            ChangeKind::Added => Kind::Added,
            ChangeKind::Removed => Kind::Removed,
            ChangeKind::Changed => Kind::Changed,
            ChangeKind::Duplicate => Kind::Duplicates,
        };
        let (index, row) = self.next_row(kind)?;
        match kind {
            Kind::Added | Kind::Removed => {
                let line = if c.kind == ChangeKind::Added {
                    c.right_line
                } else {
                    c.left_line
                };
                let sheet = self.book.worksheet_from_index(index).map_err(xlsx_error)?;
                sheet
                    .write_number(row, 0, line.unwrap_or(0) as f64)
                    .map_err(xlsx_error)?;
                self.write_values(index, row, 1, &c.row)
            }
            Kind::Changed => {
                let keys = c.key.len() as u16;
                self.write_values(index, row, 0, &c.key)?;
                let compared = self
                    .layout
                    .as_ref()
                    .map(|l| l.compared_columns.clone())
                    .unwrap_or_default();
                let changed = self.changed.clone();
                let sheet = self.book.worksheet_from_index(index).map_err(xlsx_error)?;
                sheet
                    .write_number(row, keys, c.left_line.unwrap_or(0) as f64)
                    .map_err(xlsx_error)?;
                sheet
                    .write_number(row, keys + 1, c.right_line.unwrap_or(0) as f64)
                    .map_err(xlsx_error)?;
                // Fields come in compared-column order: one pass places them.
                let mut fields = c.fields.iter().peekable();
                for (i, name) in compared.iter().enumerate() {
                    let Some(f) = fields.next_if(|f| &f.column == name) else {
                        continue;
                    };
                    let col = keys + 2 + 2 * i as u16;
                    for (col, v) in [(col, &f.old), (col + 1, &f.new)] {
                        match v {
                            Some(v) => sheet.write_string_with_format(row, col, cell_text(v).as_ref(), &changed),
                            None => sheet.write_blank(row, col, &changed),
                        }
                        .map_err(xlsx_error)?;
                    }
                }
                Ok(())
            }
            Kind::Duplicates => {
                let keys = c.key.len() as u16;
                self.write_values(index, row, 0, &c.key)?;
                let sheet = self.book.worksheet_from_index(index).map_err(xlsx_error)?;
                if let Some(d) = &c.duplicate {
                    let list = |ls: &[u64]| ls.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
                    sheet.write_number(row, keys, d.left_rows as f64).map_err(xlsx_error)?;
                    sheet
                        .write_number(row, keys + 1, d.right_rows as f64)
                        .map_err(xlsx_error)?;
                    sheet
                        .write_string(row, keys + 2, list(&d.left_lines))
                        .map_err(xlsx_error)?;
                    sheet
                        .write_string(row, keys + 3, list(&d.right_lines))
                        .map_err(xlsx_error)?;
                }
                Ok(())
            }
        }
    }
}

impl DiffWriter for XlsxWriter {
    fn finish(mut self: Box<Self>, s: &DiffSummary) -> Result<(), DataError> {
        if self.layout.is_none() {
            return Err(DataError::new("output", "XLSX: no layout: the diff did not start"));
        }
        let bold = self.bold.clone();
        let sheet = self.book.worksheet_from_index(0).map_err(xlsx_error)?;
        let text: [(&str, String); 5] = [
            ("left", s.left.clone()),
            ("right", s.right.clone()),
            ("key columns", s.key_columns.join(", ")),
            ("compared columns", s.compared_columns.join(", ")),
            ("spilled", s.spilled.to_string()),
        ];
        let mut row = 0u32;
        for (name, v) in &text {
            sheet
                .write_string_with_format(row, 0, *name, &bold)
                .map_err(xlsx_error)?;
            sheet.write_string(row, 1, cell_text(v).as_ref()).map_err(xlsx_error)?;
            row += 1;
        }
        let counts = [
            ("left rows", s.left_rows),
            ("right rows", s.right_rows),
            ("added", s.added),
            ("removed", s.removed),
            ("changed", s.changed),
            ("unchanged", s.unchanged),
            ("left duplicate keys", s.left_duplicate_keys),
            ("left duplicate rows", s.left_duplicate_rows),
            ("right duplicate keys", s.right_duplicate_keys),
            ("right duplicate rows", s.right_duplicate_rows),
            ("left rows not compared", s.left_excluded_rows),
            ("right rows not compared", s.right_excluded_rows),
        ];
        for (name, v) in counts {
            sheet
                .write_string_with_format(row, 0, name, &bold)
                .map_err(xlsx_error)?;
            sheet.write_number(row, 1, v as f64).map_err(xlsx_error)?;
            row += 1;
        }
        for (name, v) in &s.changed_fields {
            sheet
                .write_string_with_format(row, 0, format!("changed: {name}"), &bold)
                .map_err(xlsx_error)?;
            sheet.write_number(row, 1, *v as f64).map_err(xlsx_error)?;
            row += 1;
        }
        sheet.set_column_width(0, 24).map_err(xlsx_error)?;
        // The schema sheet comes after the summary and the four change sheets.
        let sheet = self.book.worksheet_from_index(5).map_err(xlsx_error)?;
        let sc = &s.schema;
        let mut rows: Vec<(&str, String, String)> = Vec::new();
        rows.extend(sc.columns_added.iter().map(|c| ("added", c.clone(), String::new())));
        rows.extend(sc.columns_removed.iter().map(|c| ("removed", c.clone(), String::new())));
        rows.extend(
            sc.columns_renamed
                .iter()
                .map(|(f, t)| ("renamed", t.clone(), format!("from {f}"))),
        );
        if sc.columns_reordered {
            rows.push((
                "reordered",
                String::new(),
                format!("left: {}", sc.left_order.join(", ")),
            ));
            rows.push((
                "reordered",
                String::new(),
                format!("right: {}", sc.right_order.join(", ")),
            ));
        }
        for (row, (change, column, detail)) in (1u32..).zip(rows) {
            sheet.write_string(row, 0, change).map_err(xlsx_error)?;
            sheet
                .write_string(row, 1, cell_text(&column).as_ref())
                .map_err(xlsx_error)?;
            sheet
                .write_string(row, 2, cell_text(&detail).as_ref())
                .map_err(xlsx_error)?;
        }
        let mut out = std::io::BufWriter::with_capacity(64 << 10, &mut self.out);
        self.book.save_to_writer(&mut out).map_err(xlsx_error)?;
        out.flush().map_err(|e| super::out_error(&e))
    }

    fn as_sink(&mut self) -> &mut dyn ChangeSink {
        self
    }
}
