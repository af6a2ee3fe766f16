//! Ingest of JSON Lines: one event per line, blank lines skipped. Bad lines
//! never cost good ones: each is reported by its line number and reason
//! while the good lines are appended, unless `strict` asks for all or
//! nothing.

use std::fmt;
use std::io::BufRead;

use sealtrail_event::Rejection;

use crate::{Item, Trail, TrailError};

/// Lines handed to [`Trail::ingest`] at once: large enough to amortise
/// the ledger's commit, small enough to bound memory.
const BATCH_LINES: usize = 4096;

/// One refused line.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    /// 1-based line number in the input.
    pub line: u64,
    pub rejection: Rejection,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rejection {
            // A line is one JSON text, so its position is just the column.
            Rejection::Json(e) => write!(
                f,
                "line {}, column {}: invalid JSON: {}",
                self.line, e.column, e.message
            ),
            Rejection::Invalid(errors) => {
                write!(f, "line {}: ", self.line)?;
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
        }
    }
}

/// What a JSON Lines ingest did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JsonlReport {
    /// Non-blank lines read.
    pub lines: u64,
    pub appended: u64,
    /// Lines whose idempotency key was already stored: nothing appended.
    pub duplicates: u64,
    /// Every refused line, in input order.
    pub rejected: Vec<LineError>,
    /// Ledger indices of the first and last entry appended.
    pub first: Option<u64>,
    pub last: Option<u64>,
    /// Size of the latest checkpoint covering everything stored.
    pub tree_size: u64,
}

impl Trail {
    /// Ingest JSON Lines from `input`. Without `strict`, good lines are
    /// appended in batches as they are read and bad ones reported. With
    /// `strict`, the whole input is read and checked first and nothing is
    /// appended if any line is bad (the input is held in memory for that).
    pub fn ingest_jsonl(&self, input: impl BufRead, strict: bool) -> Result<JsonlReport, TrailError> {
        let mut report = JsonlReport::default();
        let mut lines: Vec<(u64, Vec<u8>)> = Vec::new();
        for (n, line) in input.split(b'\n').enumerate() {
            let number = n as u64 + 1;
            let mut line = line.map_err(|source| TrailError::Io {
                what: format!("reading input line {number}"),
                source,
            })?;
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            report.lines += 1;
            lines.push((number, line));
            if !strict && lines.len() >= BATCH_LINES {
                self.ingest_lines(&lines, false, &mut report)?;
                lines.clear();
            }
        }
        self.ingest_lines(&lines, strict, &mut report)?;
        if report.tree_size == 0 {
            report.tree_size = self.log.size();
        }
        Ok(report)
    }

    fn ingest_lines(&self, lines: &[(u64, Vec<u8>)], atomic: bool, report: &mut JsonlReport) -> Result<(), TrailError> {
        if lines.is_empty() {
            return Ok(());
        }
        let texts: Vec<&[u8]> = lines.iter().map(|(_, l)| l.as_slice()).collect();
        let done = self.ingest(&texts, atomic)?;
        report.tree_size = done.tree_size;
        for ((number, _), item) in lines.iter().zip(done.items) {
            match item {
                Item::Stored { duplicate: true, .. } => report.duplicates += 1,
                Item::Stored { index, .. } => {
                    report.appended += 1;
                    report.first.get_or_insert(index);
                    report.last = Some(index);
                }
                Item::Rejected(rejection) => report.rejected.push(LineError {
                    line: *number,
                    rejection,
                }),
                Item::NotAppended => {}
            }
        }
        Ok(())
    }
}
