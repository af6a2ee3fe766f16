//! The terminal table: fixed column widths so that rows stream out as they
//! come (no pass over the data to size columns), long values cut with `…`.
//!
//! Terminal safety: event text is untrusted, and a terminal obeys escape
//! sequences. Tabs, CR and LF become spaces; every other control character
//! (C0, DEL, C1) and every bidirectional formatting character, which could
//! make a line read differently from its bytes, becomes U+FFFD `�`.
//!
//! Widths count terminal cells (East Asian wide characters take two), not
//! characters. Not for parsing: use JSON Lines or CSV.

use std::io::{BufWriter, Write};

use unicode_width::UnicodeWidthChar;

use crate::{ExportError, Row};

/// Header, width and alignment of each column; the last is never padded.
const COLUMNS: [(&str, usize, Align); 8] = [
    ("INDEX", 10, Align::Right),
    ("OCCURRED_AT", 20, Align::Left),
    ("ACTION", 28, Align::Left),
    ("ACTOR", 24, Align::Left),
    ("TARGETS", 30, Align::Left),
    ("OUTCOME", 7, Align::Left),
    ("SEVERITY", 9, Align::Left),
    ("MESSAGE", 60, Align::Left),
];

const GAP: &str = "  ";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

pub(crate) struct TableSink {
    out: BufWriter<Box<dyn Write + Send>>,
    line: String,
}

impl TableSink {
    pub(crate) fn new(out: Box<dyn Write + Send>) -> Result<Self, ExportError> {
        let mut sink = TableSink {
            out: BufWriter::with_capacity(64 * 1024, out),
            line: String::new(),
        };
        sink.emit(COLUMNS.map(|(header, _, _)| header.to_owned()))?;
        Ok(sink)
    }

    pub(crate) fn write(&mut self, row: &Row) -> Result<(), ExportError> {
        let e = row.event;
        let occurred = e.occurred_at;
        // Whole seconds, rounded down (also before 1970).
        let second = occurred.as_second() - i64::from(occurred.subsec_nanosecond() < 0);
        let occurred = sealtrail_event::Timestamp::from_second(second).unwrap_or(occurred);
        let targets = e.targets.as_deref().unwrap_or_default();
        let targets = targets
            .iter()
            .map(|t| format!("{}:{}", t.kind, t.id))
            .collect::<Vec<_>>()
            .join(", ");
        let dash = |s: Option<&str>| s.unwrap_or("-").to_owned();
        self.emit([
            row.index.to_string(),
            occurred.to_string(),
            e.action.clone(),
            dash(e.actor.as_ref().map(|a| a.id.as_str())),
            if targets.is_empty() { "-".to_owned() } else { targets },
            dash(e.outcome.map(|o| o.as_str())),
            e.severity.as_str().to_owned(),
            dash(e.message.as_deref()),
        ])
    }

    fn emit(&mut self, cells: [String; COLUMNS.len()]) -> Result<(), ExportError> {
        self.line.clear();
        for (i, (cell, &(_, width, align))) in cells.iter().zip(&COLUMNS).enumerate() {
            if i > 0 {
                self.line.push_str(GAP);
            }
            let last = i + 1 == COLUMNS.len();
            // The index is never cut: a wrong number is worse than a ragged line.
            let width = if i == 0 { width.max(cell.len()) } else { width };
            fit(&mut self.line, cell, width, align, !last);
        }
        self.line.push('\n');
        Ok(self.out.write_all(self.line.as_bytes())?)
    }

    pub(crate) fn flush(&mut self) -> Result<(), ExportError> {
        Ok(self.out.flush()?)
    }

    pub(crate) fn finish(mut self) -> Result<(), ExportError> {
        self.flush()
    }
}

/// What a character is shown as (see the module docs).
fn shown(c: char) -> char {
    match c {
        '\t' | '\n' | '\r' => ' ',
        c if c.is_control() => '\u{FFFD}',
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => '\u{FFFD}',
        c => c,
    }
}

/// Appends `text` in exactly `width` terminal cells (fewer when `!pad`),
/// cutting it with `…` when it does not fit.
fn fit(out: &mut String, text: &str, width: usize, align: Align, pad: bool) {
    let chars = || text.chars().map(shown);
    let total: usize = chars().map(|c| c.width().unwrap_or(0)).sum();
    let (used, cut) = if total <= width {
        (total, None)
    } else {
        // Keep what fits in width - 1, then the ellipsis.
        let mut used = 0;
        let mut kept = 0;
        for c in chars() {
            let w = c.width().unwrap_or(0);
            if used + w > width.saturating_sub(1) {
                break;
            }
            used += w;
            kept += 1;
        }
        (used + 1, Some(kept))
    };
    let padding = if pad || align == Align::Right {
        width.saturating_sub(used)
    } else {
        0
    };
    if align == Align::Right {
        out.extend(std::iter::repeat_n(' ', padding));
    }
    match cut {
        None => out.extend(chars()),
        Some(kept) => {
            out.extend(chars().take(kept));
            out.push('…');
        }
    }
    if align == Align::Left {
        out.extend(std::iter::repeat_n(' ', padding));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, width: usize, want: &str) {
        let mut out = String::new();
        fit(&mut out, text, width, Align::Left, true);
        assert_eq!(out, want, "{text:?} in {width}");
    }

    #[test]
    fn fit_pads_cuts_and_counts_terminal_cells() {
        check("abc", 5, "abc  ");
        check("abcde", 5, "abcde");
        check("abcdef", 5, "abcd…");
        // Wide characters take two cells; a cut never splits one.
        check("日本語テキスト", 6, "日本… ");
        check("a\nb\tc", 5, "a b c");
        check("\u{1b}[31mred", 8, "\u{FFFD}[31mred");
        check("\u{202E}evil", 5, "\u{FFFD}evil");
        let mut out = String::new();
        fit(&mut out, "42", 5, Align::Right, true);
        assert_eq!(out, "   42");
        let mut out = String::new();
        fit(&mut out, "short", 10, Align::Left, false);
        assert_eq!(out, "short");
    }
}
