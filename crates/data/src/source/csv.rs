use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use crate::{DataError, Row, Source};

/// How a delimited file is read.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    pub delimiter: u8,
    pub quote: u8,
    /// Whether the first record names the columns (otherwise `1`, `2`, …).
    pub header: bool,
}

impl Default for CsvOptions {
    fn default() -> CsvOptions {
        CsvOptions {
            delimiter: b',',
            quote: b'"',
            header: true,
        }
    }
}

/// A delimited text file (CSV, TSV), UTF-8. Empty fields are empty text,
/// not null: a CSV file cannot tell them apart.
pub struct CsvSource {
    name: String,
    columns: Vec<String>,
    reader: ::csv::Reader<BufReader<File>>,
    record: ::csv::ByteRecord,
}

impl CsvSource {
    pub fn open(path: &Path, options: CsvOptions) -> Result<CsvSource, DataError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| DataError::io(&name, &e))?;
        let mut reader = ::csv::ReaderBuilder::new()
            .delimiter(options.delimiter)
            .quote(options.quote)
            .has_headers(false)
            .flexible(true)
            .from_reader(BufReader::with_capacity(1 << 20, file));
        let mut record = ::csv::ByteRecord::new();
        let mut columns = Vec::new();
        let more = reader.read_byte_record(&mut record).map_err(|e| csv_error(&name, e))?;
        if !more {
            return Err(DataError::new(&name, "empty file: no header line"));
        }
        if options.header {
            for (i, field) in record.iter().enumerate() {
                let text = std::str::from_utf8(field).map_err(|e| {
                    DataError::new(&name, format!("header is not UTF-8: {e}"))
                        .at_line(1)
                        .in_column((i + 1).to_string())
                })?;
                columns.push(text.to_string());
            }
        } else {
            columns = (1..=record.len()).map(|i| i.to_string()).collect();
        }
        let mut source = CsvSource {
            name,
            columns,
            reader,
            record,
        };
        if !options.header {
            // The first record is data: hand it out again on the first read.
            source
                .reader
                .seek_raw(std::io::SeekFrom::Start(0), ::csv::Position::new())
                .map_err(|e| csv_error(&source.name, e))?;
        }
        Ok(source)
    }
}

fn csv_error(name: &str, err: ::csv::Error) -> DataError {
    let at = err.position().map(|p| (p.line(), p.byte()));
    let mut e = DataError::new(name, err.to_string());
    if let Some((line, byte)) = at {
        e = e.at_line(line).at_byte(byte);
    }
    e
}

impl Source for CsvSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_row(&mut self, row: &mut Row) -> Result<bool, DataError> {
        row.clear();
        if !self
            .reader
            .read_byte_record(&mut self.record)
            .map_err(|e| csv_error(&self.name, e))?
        {
            return Ok(false);
        }
        let line = self.record.position().map_or(0, |p| p.line());
        if self.record.len() != self.columns.len() {
            return Err(DataError::new(
                &self.name,
                format!("{} fields, the header has {}", self.record.len(), self.columns.len()),
            )
            .at_line(line));
        }
        for (i, field) in self.record.iter().enumerate() {
            let text = std::str::from_utf8(field).map_err(|e| {
                DataError::new(&self.name, format!("not UTF-8: {e}"))
                    .at_line(line)
                    .in_column(self.columns[i].clone())
            })?;
            row.push(text);
        }
        row.line = line;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rows_and_names_the_line_of_a_ragged_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "id,name\n1,\"a,b\"\n2,c,extra\n").expect("write");
        let mut source = CsvSource::open(&path, CsvOptions::default()).expect("open");
        assert_eq!(source.columns(), ["id", "name"]);
        let mut row = Row::new();
        assert!(source.next_row(&mut row).expect("row"));
        assert_eq!((row.text(0), row.text(1), row.line), ("1", "a,b", 2));
        let err = source.next_row(&mut row).expect_err("ragged");
        assert_eq!(err.line, Some(3));
        assert!(err.to_string().contains("3 fields, the header has 2"), "{err}");
    }

    #[test]
    fn bad_utf8_names_line_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.csv");
        std::fs::write(&path, b"id,name\n1,ok\n2,\xff\n").expect("write");
        let mut source = CsvSource::open(&path, CsvOptions::default()).expect("open");
        let mut row = Row::new();
        assert!(source.next_row(&mut row).expect("row"));
        let err = source.next_row(&mut row).expect_err("bad utf-8");
        assert_eq!((err.line, err.column.as_deref()), (Some(3), Some("name")));
    }
}
