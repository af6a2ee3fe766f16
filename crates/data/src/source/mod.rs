//! Where tables come from. A [`Source`] yields the column names, then one
//! [`Row`] at a time; [`open`] picks the reader from an address.

mod csv;
mod memory;

pub use self::csv::{CsvOptions, CsvSource};
pub use memory::MemorySource;

use crate::{DataError, Row};

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
}

/// Opens the source at `address`: a file path (format by extension).
pub fn open(address: &str) -> Result<Box<dyn Source>, DataError> {
    let path = std::path::Path::new(address);
    let lower = address.to_ascii_lowercase();
    let mut options = CsvOptions::default();
    if lower.ends_with(".tsv") || lower.ends_with(".tab") {
        options.delimiter = b'\t';
    }
    Ok(Box::new(CsvSource::open(path, options)?))
}
