//! Writers of a validation: each violation as it is found, then the
//! summary. JSON puts the summary first, so it spools violations to a
//! temporary file until the end, as the diff's JSON writer does.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use super::{json_error, out_error, Format};
use crate::validate::{ValidationSummary, Violation};
use crate::DataError;

/// Writes violations, then the summary, in one [`Format`] (not XLSX).
pub struct ViolationWriter {
    format: Format,
    out: BufWriter<Box<dyn Write + Send>>,
    spool: Option<(BufWriter<File>, String)>,
}

/// A CSV field (RFC 4180): quoted when it holds a comma, quote or line break.
fn field(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    if text.contains([',', '"', '\n', '\r']) {
        write!(out, "\"{}\"", text.replace('"', "\"\""))
    } else {
        out.write_all(text.as_bytes())
    }
}

fn record(out: &mut impl Write, fields: &[&str]) -> std::io::Result<()> {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        field(out, f)?;
    }
    out.write_all(b"\r\n")
}

impl ViolationWriter {
    /// A writer of `format` to `out`; JSON spools to a file in `temp_dir`.
    pub fn new(
        format: Format,
        out: Box<dyn Write + Send>,
        temp_dir: Option<&Path>,
    ) -> Result<ViolationWriter, DataError> {
        let temp = temp_dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let spool = match format {
            Format::Json => {
                let name = format!("temporary file in {}", temp.display());
                let file = tempfile::tempfile_in(&temp).map_err(|e| DataError::io(&name, &e))?;
                Some((BufWriter::with_capacity(64 << 10, file), name))
            }
            Format::Xlsx => {
                return Err(DataError::new(
                    "output",
                    "validation reports are table, json, jsonl or csv",
                ));
            }
            _ => None,
        };
        let mut writer = ViolationWriter {
            format,
            out: BufWriter::with_capacity(64 << 10, out),
            spool,
        };
        if format == Format::Csv {
            record(&mut writer.out, &["line", "column", "value", "rule", "text", "detail"])
                .map_err(|e| out_error(&e))?;
        }
        Ok(writer)
    }

    /// Writes (or spools) one violation.
    pub fn violation(&mut self, v: &Violation) -> Result<(), DataError> {
        let io = |e: std::io::Error| out_error(&e);
        match self.format {
            Format::Json => {
                if let Some((spool, name)) = &mut self.spool {
                    serde_json::to_writer(&mut *spool, v).map_err(json_error)?;
                    spool.write_all(b"\n").map_err(|e| DataError::io(name.as_str(), &e))?;
                }
            }
            Format::Jsonl => {
                serde_json::to_writer(&mut self.out, v).map_err(json_error)?;
                self.out.write_all(b"\n").map_err(io)?;
            }
            Format::Csv => {
                let line = v.line.to_string();
                let fields = [
                    line.as_str(),
                    v.column.as_str(),
                    v.value.as_deref().unwrap_or(""),
                    v.rule.as_str(),
                    v.text.as_str(),
                    v.detail.as_deref().unwrap_or(""),
                ];
                record(&mut self.out, &fields).map_err(io)?;
            }
            Format::Table | Format::Xlsx => {
                let value = v.value.as_deref().map_or("null".to_string(), |s| format!("{s:?}"));
                let detail = v.detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
                writeln!(
                    self.out,
                    "line {}: {}: {value} breaks {}: {}{detail}",
                    v.line, v.column, v.rule, v.text
                )
                .map_err(io)?;
            }
        }
        Ok(())
    }

    /// Writes the summary (and for JSON the spooled violations) and flushes.
    pub fn finish(mut self, summary: &ValidationSummary) -> Result<(), DataError> {
        let io = |e: std::io::Error| out_error(&e);
        match self.format {
            Format::Json => {
                self.out.write_all(b"{\"summary\":").map_err(io)?;
                serde_json::to_writer(&mut self.out, summary).map_err(json_error)?;
                self.out.write_all(b",\"violations\":[").map_err(io)?;
                if let Some((spool, name)) = self.spool.take() {
                    let mut file = spool
                        .into_inner()
                        .map_err(|e| DataError::io(name.as_str(), e.error()))?;
                    file.seek(SeekFrom::Start(0))
                        .map_err(|e| DataError::io(name.as_str(), &e))?;
                    let mut reader = BufReader::with_capacity(64 << 10, file);
                    let mut line = Vec::new();
                    let mut first = true;
                    while reader
                        .read_until(b'\n', &mut line)
                        .map_err(|e| DataError::io(name.as_str(), &e))?
                        > 0
                    {
                        if !first {
                            self.out.write_all(b",").map_err(io)?;
                        }
                        first = false;
                        self.out
                            .write_all(line.strip_suffix(b"\n").unwrap_or(&line))
                            .map_err(io)?;
                        line.clear();
                    }
                }
                self.out.write_all(b"]}\n").map_err(io)?;
            }
            Format::Jsonl => {
                serde_json::to_writer(&mut self.out, &serde_json::json!({ "summary": summary })).map_err(json_error)?;
                self.out.write_all(b"\n").map_err(io)?;
            }
            Format::Csv => {}
            Format::Table | Format::Xlsx => {
                let quality = summary.quality_score.map_or("-".to_string(), |q| format!("{:.4}", q));
                writeln!(
                    self.out,
                    "{} rows, {} with violations, {} violations; quality score {quality}",
                    summary.rows, summary.rows_with_violations, summary.violations
                )
                .map_err(io)?;
                for rule in &summary.rules {
                    writeln!(
                        self.out,
                        "  {:>8}  {}: {} ({})",
                        rule.violations, rule.column, rule.rule, rule.text
                    )
                    .map_err(io)?;
                }
            }
        }
        self.out.flush().map_err(io)
    }
}
