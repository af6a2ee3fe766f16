//! JSON (one document, summary first) and JSON Lines.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use serde::Serialize;

use super::{json_error, out_error, DiffWriter};
use crate::diff::{ChangeSink, DiffSummary, Layout};
use crate::{Change, DataError};

/// One change per line as it is found; the last line is `{"summary": …}`.
pub(crate) struct JsonlWriter {
    out: BufWriter<Box<dyn Write + Send>>,
}

impl JsonlWriter {
    pub fn new(out: Box<dyn Write + Send>) -> JsonlWriter {
        JsonlWriter {
            out: BufWriter::with_capacity(64 << 10, out),
        }
    }
}

impl ChangeSink for JsonlWriter {
    fn change(&mut self, change: &Change) -> Result<(), DataError> {
        serde_json::to_writer(&mut self.out, change).map_err(json_error)?;
        self.out.write_all(b"\n").map_err(|e| out_error(&e))
    }
}

#[derive(Serialize)]
struct SummaryLine<'a> {
    summary: &'a DiffSummary,
}

impl DiffWriter for JsonlWriter {
    fn finish(mut self: Box<Self>, summary: &DiffSummary) -> Result<(), DataError> {
        serde_json::to_writer(&mut self.out, &SummaryLine { summary }).map_err(json_error)?;
        self.out.write_all(b"\n").map_err(|e| out_error(&e))?;
        self.out.flush().map_err(|e| out_error(&e))
    }

    fn as_sink(&mut self) -> &mut dyn ChangeSink {
        self
    }
}

/// `{"summary": …, "left_columns": […], "right_columns": […], "changes": […]}`:
/// changes are spooled, one per line, to a temporary file until the
/// summary is known.
pub(crate) struct JsonWriter {
    out: Box<dyn Write + Send>,
    spool: BufWriter<File>,
    temp: String,
    layout: Option<Layout>,
}

impl JsonWriter {
    pub fn new(out: Box<dyn Write + Send>, temp: &Path) -> Result<JsonWriter, DataError> {
        let name = format!("temporary file in {}", temp.display());
        let file = tempfile::tempfile_in(temp).map_err(|e| DataError::io(&name, &e))?;
        Ok(JsonWriter {
            out,
            spool: BufWriter::with_capacity(64 << 10, file),
            temp: name,
            layout: None,
        })
    }
}

impl ChangeSink for JsonWriter {
    fn begin(&mut self, layout: &Layout) -> Result<(), DataError> {
        self.layout = Some(layout.clone());
        Ok(())
    }

    fn change(&mut self, change: &Change) -> Result<(), DataError> {
        serde_json::to_writer(&mut self.spool, change).map_err(json_error)?;
        self.spool.write_all(b"\n").map_err(|e| DataError::io(&self.temp, &e))
    }
}

impl DiffWriter for JsonWriter {
    fn finish(self: Box<Self>, summary: &DiffSummary) -> Result<(), DataError> {
        let JsonWriter {
            out,
            spool,
            temp,
            layout,
        } = *self;
        let mut file = spool.into_inner().map_err(|e| DataError::io(&temp, e.error()))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| DataError::io(&temp, &e))?;
        let mut out = BufWriter::with_capacity(64 << 10, out);
        let io = |e: std::io::Error| out_error(&e);
        out.write_all(b"{\"summary\":").map_err(io)?;
        serde_json::to_writer(&mut out, summary).map_err(json_error)?;
        let (left, right) = layout.map(|l| (l.left_columns, l.right_columns)).unwrap_or_default();
        out.write_all(b",\"left_columns\":").map_err(io)?;
        serde_json::to_writer(&mut out, &left).map_err(json_error)?;
        out.write_all(b",\"right_columns\":").map_err(io)?;
        serde_json::to_writer(&mut out, &right).map_err(json_error)?;
        out.write_all(b",\"changes\":[").map_err(io)?;
        let mut reader = BufReader::with_capacity(64 << 10, file);
        let mut line = Vec::new();
        let mut first = true;
        loop {
            line.clear();
            if reader
                .read_until(b'\n', &mut line)
                .map_err(|e| DataError::io(&temp, &e))?
                == 0
            {
                break;
            }
            if !first {
                out.write_all(b",").map_err(io)?;
            }
            first = false;
            out.write_all(line.strip_suffix(b"\n").unwrap_or(&line)).map_err(io)?;
        }
        out.write_all(b"]}\n").map_err(io)?;
        out.flush().map_err(io)
    }

    fn as_sink(&mut self) -> &mut dyn ChangeSink {
        self
    }
}
