//! Delimited text (CSV, TSV): UTF-8 only, a leading byte-order mark
//! skipped, LF or CRLF line ends, quoted fields over several lines. Reading
//! reuses one record buffer, so a warm reader allocates nothing per row;
//! one record is bounded in bytes, so a file without line breaks cannot
//! exhaust memory.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::{Progress, DEFAULT_MAX_RECORD_BYTES};
use crate::{DataError, Row, Source};

/// How a delimited file is read.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    pub delimiter: u8,
    pub quote: u8,
    /// Whether the first record names the columns (otherwise `1`, `2`, …).
    pub header: bool,
    /// Largest record accepted, in bytes (see
    /// [`DEFAULT_MAX_RECORD_BYTES`](super::DEFAULT_MAX_RECORD_BYTES)).
    pub max_record_bytes: u64,
}

impl Default for CsvOptions {
    fn default() -> CsvOptions {
        CsvOptions {
            delimiter: b',',
            quote: b'"',
            header: true,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// Bytes read from the file at a time.
const BUFFER_BYTES: usize = 1 << 18;

/// A delimited text file (CSV, TSV), UTF-8. Empty fields are empty text,
/// not null: a CSV file cannot tell them apart.
///
/// Parsed with `csv-core` over a buffer of our own: the source skips the
/// line breaks before each record itself, so every row knows the exact
/// line and byte it starts on (also after CRLF and blank lines), and a
/// record past its bound is refused before more of it is read.
pub struct CsvSource {
    name: String,
    columns: Vec<String>,
    file: File,
    core: ::csv_core::Reader,
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    eof: bool,
    /// The current record's unescaped bytes and field ends.
    out: Vec<u8>,
    ends: Vec<usize>,
    fields: usize,
    /// Bytes of the file handed to the parser or skipped.
    consumed: u64,
    read_bytes: u64,
    /// Line breaks skipped between records (the parser counts the rest).
    skipped_lines: u64,
    /// Where the current record starts: line and byte.
    line: u64,
    byte: u64,
    total_bytes: Option<u64>,
    /// Without a header, the first record is data read while opening.
    pending: bool,
    max_record_bytes: u64,
}

impl CsvSource {
    pub fn open(path: &Path, options: CsvOptions) -> Result<CsvSource, DataError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| DataError::io(&name, &e))?;
        let total_bytes = file.metadata().ok().map(|m| m.len());
        let core = ::csv_core::ReaderBuilder::new()
            .delimiter(options.delimiter)
            .quote(options.quote)
            .build();
        let mut source = CsvSource {
            name,
            columns: Vec::new(),
            file,
            core,
            buf: vec![0; BUFFER_BYTES],
            pos: 0,
            filled: 0,
            eof: false,
            out: vec![0; 1 << 12],
            ends: vec![0; 64],
            fields: 0,
            consumed: 0,
            read_bytes: 0,
            skipped_lines: 0,
            line: 1,
            byte: 0,
            total_bytes,
            pending: false,
            max_record_bytes: options.max_record_bytes,
        };
        if !source.read_record()? {
            return Err(DataError::new(&source.name, "empty file: no header line").at_line(1));
        }
        if options.header {
            let mut columns = Vec::with_capacity(source.fields);
            for i in 0..source.fields {
                let text = std::str::from_utf8(source.field(i)).map_err(|e| {
                    DataError::new(&source.name, format!("header is not UTF-8: {e}"))
                        .at_line(source.line)
                        .in_column((i + 1).to_string())
                })?;
                columns.push(text.to_string());
            }
            source.columns = columns;
        } else {
            source.columns = (1..=source.fields).map(|i| i.to_string()).collect();
            source.pending = true;
        }
        Ok(source)
    }

    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.out[start..self.ends[i]]
    }

    /// Refills the buffer once it is used up. `Ok(false)` at the end.
    fn fill(&mut self) -> Result<bool, DataError> {
        if self.pos < self.filled {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        loop {
            match self.file.read(&mut self.buf) {
                Ok(n) => {
                    self.pos = 0;
                    self.filled = n;
                    self.read_bytes += n as u64;
                    self.eof = n == 0;
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(DataError::io(&self.name, &e).at_line(self.line).at_byte(self.consumed)),
            }
        }
    }

    /// Parses the next record into `out` and `ends`. `Ok(false)` at the end.
    fn read_record(&mut self) -> Result<bool, DataError> {
        use ::csv_core::ReadRecordResult;
        // Line breaks before the record (blank lines, the LF of a CRLF).
        while self.fill()? {
            let skip = self.buf[self.pos..self.filled]
                .iter()
                .take_while(|&&b| b == b'\n' || b == b'\r')
                .count();
            self.skipped_lines += self.buf[self.pos..self.pos + skip]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            self.pos += skip;
            self.consumed += skip as u64;
            if self.pos < self.filled {
                break;
            }
        }
        // The parser counts lines from 1.
        self.line = self.skipped_lines + self.core.line();
        self.byte = self.consumed;
        let (mut out_len, mut ends_len) = (0, 0);
        loop {
            self.fill()?;
            let (result, nin, nout, nend) = self.core.read_record(
                &self.buf[self.pos..self.filled],
                &mut self.out[out_len..],
                &mut self.ends[ends_len..],
            );
            self.pos += nin;
            self.consumed += nin as u64;
            out_len += nout;
            ends_len += nend;
            if self.consumed - self.byte > self.max_record_bytes {
                return Err(DataError::new(
                    &self.name,
                    format!(
                        "record longer than {} bytes (a missing line break or an unclosed \
                         quote?); raise the record limit if it is real",
                        self.max_record_bytes
                    ),
                )
                .at_line(self.line)
                .at_byte(self.byte));
            }
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    let len = self.out.len() * 2;
                    self.out.resize(len, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len() * 2;
                    self.ends.resize(len, 0);
                }
                ReadRecordResult::Record => {
                    self.fields = ends_len;
                    return Ok(true);
                }
                ReadRecordResult::End => {
                    self.fields = 0;
                    return Ok(false);
                }
            }
        }
    }

    /// The first field that is not UTF-8, as an error.
    fn utf8_error(&self) -> DataError {
        for i in 0..self.fields {
            if let Err(e) = std::str::from_utf8(self.field(i)) {
                return DataError::new(&self.name, format!("not UTF-8: {e}"))
                    .at_line(self.line)
                    .in_column(self.columns[i].clone())
                    .at_byte(self.byte);
            }
        }
        DataError::new(&self.name, "not UTF-8")
            .at_line(self.line)
            .at_byte(self.byte)
    }
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
        if self.pending {
            self.pending = false;
        } else if !self.read_record()? {
            return Ok(false);
        }
        if self.fields != self.columns.len() {
            return Err(DataError::new(
                &self.name,
                format!("{} fields, the header has {}", self.fields, self.columns.len()),
            )
            .at_line(self.line)
            .at_byte(self.byte));
        }
        // One UTF-8 check over all fields; then each field must start on a
        // character boundary, which `str::get` checks.
        let used = if self.fields == 0 {
            0
        } else {
            self.ends[self.fields - 1]
        };
        let Ok(all) = std::str::from_utf8(&self.out[..used]) else {
            return Err(self.utf8_error());
        };
        let mut start = 0;
        for &end in &self.ends[..self.fields] {
            let Some(text) = all.get(start..end) else {
                return Err(self.utf8_error());
            };
            row.push(text);
            start = end;
        }
        row.line = self.line;
        Ok(true)
    }

    fn progress(&self) -> Option<Progress> {
        Some(Progress {
            read_bytes: self.read_bytes,
            total_bytes: self.total_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(content: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.csv");
        std::fs::write(&path, content).expect("write");
        (dir, path)
    }

    fn rows(source: &mut CsvSource) -> Vec<(u64, Vec<String>)> {
        let mut row = Row::new();
        let mut out = Vec::new();
        while source.next_row(&mut row).expect("row") {
            out.push((
                row.line,
                row.values().map(|v| v.unwrap_or("NULL").to_string()).collect(),
            ));
        }
        out
    }

    #[test]
    fn reads_rows_and_names_the_line_of_a_ragged_one() {
        let (_dir, path) = write(b"id,name\n1,\"a,b\"\n2,c,extra\n");
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
        let (_dir, path) = write(b"id,name\n1,ok\n2,\xff\n");
        let mut source = CsvSource::open(&path, CsvOptions::default()).expect("open");
        let mut row = Row::new();
        assert!(source.next_row(&mut row).expect("row"));
        let err = source.next_row(&mut row).expect_err("bad utf-8");
        assert_eq!((err.line, err.column.as_deref()), (Some(3), Some("name")));
    }

    #[test]
    fn a_character_split_across_two_fields_is_refused() {
        // "é" is C3 A9: valid as a whole record, invalid in each field.
        let (_dir, path) = write(b"a,b\n\xc3,\xa9\n");
        let mut source = CsvSource::open(&path, CsvOptions::default()).expect("open");
        let mut row = Row::new();
        let err = source.next_row(&mut row).expect_err("split character");
        assert_eq!((err.line, err.column.as_deref()), (Some(2), Some("a")));
    }

    #[test]
    fn bom_crlf_multiline_quotes_and_line_numbers() {
        let (_dir, path) = write(b"\xef\xbb\xbfid,note\r\n1,\"two\r\nlines\"\r\n\r\n2,\xc3\xa9\r\n\n3,\"\"\n4,last");
        let mut source = CsvSource::open(&path, CsvOptions::default()).expect("open");
        assert_eq!(source.columns(), ["id", "note"]);
        assert_eq!(
            rows(&mut source),
            vec![
                (2, vec!["1".to_string(), "two\r\nlines".to_string()]),
                (5, vec!["2".to_string(), "é".to_string()]),
                (7, vec!["3".to_string(), "".to_string()]),
                (8, vec!["4".to_string(), "last".to_string()]),
            ]
        );
    }

    #[test]
    fn without_header_the_first_record_is_data() {
        let (_dir, path) = write(b"1;x\n2;y\n");
        let options = CsvOptions {
            delimiter: b';',
            header: false,
            ..CsvOptions::default()
        };
        let mut source = CsvSource::open(&path, options).expect("open");
        assert_eq!(source.columns(), ["1", "2"]);
        assert_eq!(
            rows(&mut source),
            vec![
                (1, vec!["1".to_string(), "x".to_string()]),
                (2, vec!["2".to_string(), "y".to_string()]),
            ]
        );
    }

    #[test]
    fn an_empty_file_is_refused() {
        let (_dir, path) = write(b"");
        let err = CsvSource::open(&path, CsvOptions::default()).err().expect("empty");
        assert!(err.message.contains("empty file"), "{err}");
    }

    #[test]
    fn a_record_past_the_bound_is_refused_with_line_and_byte() {
        let mut content = b"id,blob\n1,short\n".to_vec();
        let start = content.len() as u64;
        content.extend_from_slice(b"2,");
        content.extend(std::iter::repeat_n(b'x', 3_000_000));
        content.extend_from_slice(b"\n3,after\n");
        let (_dir, path) = write(&content);
        let options = CsvOptions {
            max_record_bytes: 1000,
            ..CsvOptions::default()
        };
        let mut source = CsvSource::open(&path, options).expect("open");
        let mut row = Row::new();
        assert!(source.next_row(&mut row).expect("first row"));
        let err = source.next_row(&mut row).expect_err("too long");
        assert_eq!((err.line, err.byte), (Some(3), Some(start)));
        assert!(err.message.contains("longer than 1000 bytes"), "{err}");
        // The parser stopped within a few buffers of the record's start.
        let read = source.progress().expect("progress").read_bytes;
        assert!(read < start + 1000 + 3 * BUFFER_BYTES as u64, "read {read}");
    }

    #[test]
    fn progress_reaches_the_file_size() {
        let (_dir, path) = write(b"a,b\n1,2\n3,4\n");
        let mut source = CsvSource::open(&path, CsvOptions::default()).expect("open");
        rows(&mut source);
        assert_eq!(
            source.progress(),
            Some(Progress {
                read_bytes: 12,
                total_bytes: Some(12)
            })
        );
    }
}
