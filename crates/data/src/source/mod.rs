//! Where tables come from. A [`Source`] yields the column names, then one
//! [`Row`] at a time; [`open`] picks the reader from an address:
//! delimited text (CSV, TSV), JSON Lines, XLSX workbooks and PostgreSQL
//! tables or queries. Sources only read: none writes to its input, and
//! none holds more than one record (or one fetched batch) in memory.

mod csv;
mod input;
mod jsonl;
mod memory;
mod postgres;
mod sniff;
mod xlsx;

pub use self::csv::{CsvOptions, CsvSource};
pub use self::jsonl::JsonLinesSource;
pub use self::postgres::PostgresSource;
pub use self::sniff::{sniff_dialect, Dialect};
pub use self::xlsx::XlsxSource;
pub use memory::MemorySource;

use std::io::Read;

use sha2::{Digest, Sha256};

use crate::{DataError, Row};

/// Bytes one record (one CSV record, one JSON line) may hold before a
/// source refuses it, unless [`OpenOptions::max_record_bytes`] says
/// otherwise: large enough for any sane row, small enough that a file
/// without line breaks cannot exhaust memory.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 64 << 20;

/// A table read one row at a time.
pub trait Source: Send {
    /// The input, as errors name it (a file name, or an address without
    /// password).
    fn name(&self) -> &str;

    /// Column names, in order. Known once the source is open.
    fn columns(&self) -> &[String];

    /// Reads the next row into `row` (cleared first). `Ok(false)` at the
    /// end. Every row has exactly `columns().len()` values: a source
    /// refuses a ragged row rather than pad or cut it.
    fn next_row(&mut self, row: &mut Row) -> Result<bool, DataError>;

    /// How far reading has got, for a progress bar. `None` when the source
    /// cannot tell (a database query).
    fn progress(&self) -> Option<Progress> {
        None
    }
}

/// How much of an input has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes read from the input so far (read ahead of the rows handed out
    /// by at most one buffer).
    pub read_bytes: u64,
    /// Size of the input, when known.
    pub total_bytes: Option<u64>,
}

/// How [`open`] reads an address. `OpenOptions::default()` suits most
/// inputs: dialect sniffed, first row a header.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Field delimiter of delimited text; `None` detects it from the start
    /// of the file (see [`sniff_dialect`]).
    pub delimiter: Option<u8>,
    /// Quote character of delimited text; `None` detects it.
    pub quote: Option<u8>,
    /// Whether the first row of delimited text names the columns
    /// (otherwise they are named `1`, `2`, …).
    pub header: bool,
    /// Largest record (CSV record, JSON line) accepted, in bytes.
    pub max_record_bytes: u64,
    /// Worksheet of a workbook, when the address has no `#Sheet` suffix;
    /// `None` reads the first sheet.
    pub sheet: Option<String>,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions {
            delimiter: None,
            quote: None,
            header: true,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            sheet: None,
        }
    }
}

/// The kind of input an address names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Csv { tab: bool },
    JsonLines,
    Xlsx,
    Parquet,
    Postgres,
}

fn is_postgres(address: &str) -> bool {
    let lower = address.get(..13).unwrap_or(address).to_ascii_lowercase();
    lower.starts_with("postgresql://") || lower.starts_with("postgres://")
}

/// Splits `file.xlsx#Sheet` into the path and the sheet name.
fn split_sheet(address: &str) -> (&str, Option<&str>) {
    let lower = address.to_ascii_lowercase();
    if let Some(at) = lower.rfind(".xlsx#") {
        let hash = at + ".xlsx".len();
        return (&address[..hash], Some(&address[hash + 1..]));
    }
    (address, None)
}

fn kind_of(address: &str) -> Result<Kind, DataError> {
    if is_postgres(address) {
        return Ok(Kind::Postgres);
    }
    let (path, _) = split_sheet(address);
    let lower = path.to_ascii_lowercase();
    let ext = lower.rsplit_once('.').map_or("", |(_, e)| e);
    Ok(match ext {
        "csv" | "txt" => Kind::Csv { tab: false },
        "tsv" | "tab" => Kind::Csv { tab: true },
        "jsonl" | "ndjson" => Kind::JsonLines,
        "xlsx" => Kind::Xlsx,
        "parquet" => Kind::Parquet,
        _ => {
            return Err(DataError::new(
                address,
                "unknown kind of input: expected a file ending in .csv, .tsv, .tab, .txt, \
                 .jsonl, .ndjson or .xlsx, or a postgresql:// address",
            ))
        }
    })
}

/// Opens the source at `address`:
///
/// - `*.csv`, `*.txt`: delimited text, dialect sniffed unless given;
///   `*.tsv`, `*.tab`: tab-delimited unless a delimiter is given;
/// - `*.jsonl`, `*.ndjson`: JSON Lines, one object per line;
/// - `*.xlsx`, `*.xlsx#Sheet`: a worksheet (the first unless named);
/// - `postgresql://user@host:port/db?table=schema.name` or
///   `…?query=SELECT…` (URL-encoded): a table or query result.
///
/// Parquet files are refused with a message saying so.
pub fn open(address: &str, options: &OpenOptions) -> Result<Box<dyn Source>, DataError> {
    Ok(match kind_of(address)? {
        Kind::Csv { tab } => {
            let path = std::path::Path::new(address);
            let dialect = match (options.delimiter, options.quote, tab) {
                (Some(delimiter), Some(quote), _) => (delimiter, quote),
                (None, quote, true) => (b'\t', quote.unwrap_or(b'"')),
                (delimiter, quote, false) => {
                    let sniffed = sniff::sniff_file(path, delimiter, quote)?;
                    (sniffed.delimiter, sniffed.quote)
                }
                (Some(delimiter), None, true) => {
                    let sniffed = sniff::sniff_file(path, Some(delimiter), None)?;
                    (delimiter, sniffed.quote)
                }
            };
            let csv = CsvOptions {
                delimiter: dialect.0,
                quote: dialect.1,
                header: options.header,
                max_record_bytes: options.max_record_bytes,
            };
            Box::new(CsvSource::open(path, csv)?)
        }
        Kind::JsonLines => Box::new(JsonLinesSource::open(
            std::path::Path::new(address),
            options.max_record_bytes,
        )?),
        Kind::Xlsx => {
            let (path, sheet) = split_sheet(address);
            let sheet = sheet.or(options.sheet.as_deref());
            Box::new(XlsxSource::open(std::path::Path::new(path), sheet)?)
        }
        Kind::Parquet => {
            return Err(DataError::new(
                address,
                "Parquet is not read directly: convert it to CSV or JSON Lines first \
                 (for example with DuckDB or polars)",
            ))
        }
        Kind::Postgres => Box::new(PostgresSource::open(address)?),
    })
}

/// What a file input was when a run read it: its SHA-256 and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256_hex: String,
    pub bytes: u64,
}

/// Fingerprints the file behind `address` (without any `#Sheet` suffix),
/// reading it once in bounded memory. `Ok(None)` for a PostgreSQL address:
/// a database has no bytes to hash, and a run records its address only.
pub fn fingerprint(address: &str) -> Result<Option<Fingerprint>, DataError> {
    if is_postgres(address) {
        return Ok(None);
    }
    let (path, _) = split_sheet(address);
    let mut file = std::fs::File::open(path).map_err(|e| DataError::io(path, &e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DataError::io(path, &e).at_byte(bytes)),
        };
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let digest = hasher.finalize();
    let mut sha256_hex = String::with_capacity(64);
    for b in digest.iter() {
        sha256_hex.push_str(&format!("{b:02x}"));
    }
    Ok(Some(Fingerprint { sha256_hex, bytes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_extension_and_scheme() {
        assert_eq!(kind_of("a/b.CSV").ok(), Some(Kind::Csv { tab: false }));
        assert_eq!(kind_of("b.tab").ok(), Some(Kind::Csv { tab: true }));
        assert_eq!(kind_of("b.ndjson").ok(), Some(Kind::JsonLines));
        assert_eq!(kind_of("b.xlsx#My Sheet").ok(), Some(Kind::Xlsx));
        assert_eq!(kind_of("b.parquet").ok(), Some(Kind::Parquet));
        assert_eq!(kind_of("postgres://u@h/db?table=t").ok(), Some(Kind::Postgres));
        assert_eq!(kind_of("PostgreSQL://u@h/db?table=t").ok(), Some(Kind::Postgres));
        let err = kind_of("b.json").expect_err("unknown");
        assert_eq!(err.input, "b.json");
    }

    #[test]
    fn sheet_suffix_splits_on_the_extension() {
        assert_eq!(split_sheet("x.xlsx#S 1"), ("x.xlsx", Some("S 1")));
        assert_eq!(split_sheet("a#b.xlsx"), ("a#b.xlsx", None));
        assert_eq!(split_sheet("x.xlsx"), ("x.xlsx", None));
    }
}
