//! CSV: one row per changed field, per added or removed row, per
//! duplicated key, under the header
//! `kind,<key columns…>,left_line,right_line,column,old,new`.
//!
//! Added and removed rows carry the whole row as a JSON object (column →
//! value) in `new` or `old`; a duplicated key carries its row counts in
//! `old` (left) and `new` (right) and the first line of each side. Null is
//! an empty field.

use std::io::Write;

use super::{json_error, DiffWriter};
use crate::diff::{ChangeSink, DiffSummary, Layout};
use crate::{Change, ChangeKind, DataError};

pub(crate) struct CsvWriter {
    out: ::csv::Writer<Box<dyn Write + Send>>,
    left_columns: Vec<String>,
    right_columns: Vec<String>,
    /// A record reused from row to row.
    record: Vec<String>,
}

fn csv_error(err: ::csv::Error) -> DataError {
    DataError::new("output", err.to_string())
}

impl CsvWriter {
    pub fn new(out: Box<dyn Write + Send>) -> CsvWriter {
        CsvWriter {
            out: ::csv::WriterBuilder::new().buffer_capacity(64 << 10).from_writer(out),
            left_columns: Vec::new(),
            right_columns: Vec::new(),
            record: Vec::new(),
        }
    }

    /// The row as a JSON object, in column order.
    fn row_json(columns: &[String], row: &[Option<String>]) -> Result<String, DataError> {
        let mut out = String::from("{");
        for (i, (c, v)) in columns.iter().zip(row).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(c).map_err(json_error)?);
            out.push(':');
            out.push_str(&serde_json::to_string(v).map_err(json_error)?);
        }
        out.push('}');
        Ok(out)
    }

    fn write(&mut self, c: &Change, column: &str, old: String, new: String) -> Result<(), DataError> {
        let line = |l: Option<u64>| l.map(|l| l.to_string()).unwrap_or_default();
        let (left_line, right_line) = match &c.duplicate {
            Some(d) => (d.left_lines.first().copied(), d.right_lines.first().copied()),
            None => (c.left_line, c.right_line),
        };
        self.record.clear();
        self.record.push(c.kind.as_str().to_string());
        self.record.extend(c.key.iter().map(|k| k.clone().unwrap_or_default()));
        self.record.push(line(left_line));
        self.record.push(line(right_line));
        self.record.push(column.to_string());
        self.record.push(old);
        self.record.push(new);
        self.out.write_record(&self.record).map_err(csv_error)
    }
}

impl ChangeSink for CsvWriter {
    fn begin(&mut self, layout: &Layout) -> Result<(), DataError> {
        self.left_columns = layout.left_columns.clone();
        self.right_columns = layout.right_columns.clone();
        let mut header = vec!["kind".to_string()];
        header.extend(layout.key_columns.iter().cloned());
        header.extend(["left_line", "right_line", "column", "old", "new"].map(String::from));
        self.out.write_record(&header).map_err(csv_error)
    }

    fn change(&mut self, c: &Change) -> Result<(), DataError> {
        match c.kind {
            ChangeKind::Added => {
                let row = CsvWriter::row_json(&self.right_columns, &c.row)?;
                self.write(c, "", String::new(), row)
            }
            ChangeKind::Removed => {
                let row = CsvWriter::row_json(&self.left_columns, &c.row)?;
                self.write(c, "", row, String::new())
            }
            ChangeKind::Changed => {
                for f in &c.fields {
                    let (old, new) = (f.old.clone().unwrap_or_default(), f.new.clone().unwrap_or_default());
                    self.write(c, &f.column, old, new)?;
                }
                Ok(())
            }
            ChangeKind::Duplicate => {
                let (l, r) = c.duplicate.as_ref().map_or((0, 0), |d| (d.left_rows, d.right_rows));
                self.write(c, "", l.to_string(), r.to_string())
            }
        }
    }
}

impl DiffWriter for CsvWriter {
    fn finish(mut self: Box<Self>, _summary: &DiffSummary) -> Result<(), DataError> {
        self.out.flush().map_err(|e| super::out_error(&e))
    }

    fn as_sink(&mut self) -> &mut dyn ChangeSink {
        self
    }
}
