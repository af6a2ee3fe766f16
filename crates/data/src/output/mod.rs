//! Writers of a diff: each is a [`ChangeSink`] that receives the changes
//! as the diff finds them, then the summary in [`DiffWriter::finish`]. All
//! of them hold a bounded amount in memory; JSON and XLSX, which put the
//! summary first, keep the changes in a temporary file until the end.
//! The formats are described in `docs/data.md`.

mod csv;
mod json;
mod table;
mod violations;
mod xlsx;

pub use violations::ViolationWriter;

use std::io::Write;
use std::path::Path;

use crate::diff::{ChangeSink, DiffSummary};
use crate::DataError;

/// The output formats of a diff (and, but for XLSX, of a validation): the
/// export formats, named as everywhere else in Sealtrail.
pub use sealtrail_export::Format;

/// A sink that writes a diff, finished with its summary.
pub trait DiffWriter: ChangeSink + Send {
    /// Writes what is left (the summary, spooled changes) and flushes.
    fn finish(self: Box<Self>, summary: &DiffSummary) -> Result<(), DataError>;

    /// The writer as the sink [`crate::diff::diff`] takes.
    fn as_sink(&mut self) -> &mut dyn ChangeSink;
}

/// A writer of `format` to `out`. Temporary files (JSON's spooled
/// changes, XLSX's sheets) go to `temp_dir`, or the system's.
pub fn writer(
    format: Format,
    out: Box<dyn Write + Send>,
    temp_dir: Option<&Path>,
) -> Result<Box<dyn DiffWriter>, DataError> {
    let temp = temp_dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
    Ok(match format {
        Format::Table => Box::new(table::TableWriter::new(out)),
        Format::Json => Box::new(json::JsonWriter::new(out, &temp)?),
        Format::Jsonl => Box::new(json::JsonlWriter::new(out)),
        Format::Csv => Box::new(csv::CsvWriter::new(out)),
        Format::Xlsx => Box::new(xlsx::XlsxWriter::new(out, &temp)?),
    })
}

pub(crate) fn out_error(err: &std::io::Error) -> DataError {
    DataError::io("output", err)
}

pub(crate) fn json_error(err: serde_json::Error) -> DataError {
    DataError::new("output", err.to_string())
}
