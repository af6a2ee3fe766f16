//! Text for a terminal: each change as it is found, its fields aligned
//! under it, then the summary.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};

use super::{out_error, DiffWriter};
use crate::diff::{ChangeSink, DiffSummary, Layout};
use crate::{Change, ChangeKind, DataError};

pub(crate) struct TableWriter {
    out: BufWriter<Box<dyn Write + Send>>,
    layout: Option<Layout>,
    /// Width of the widest column name, for aligning fields.
    width: usize,
    text: String,
}

/// A value as shown: quoted with escapes, or `null`.
fn shown(v: &Option<String>) -> String {
    match v {
        Some(v) => format!("{v:?}"),
        None => "null".to_string(),
    }
}

fn lines(ls: &[u64], total: u64) -> String {
    let list = ls.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    let more = if total > ls.len() as u64 { ", …" } else { "" };
    let rows = if total == 1 { "row" } else { "rows" };
    format!("{total} {rows} (line {list}{more})")
}

/// A count with thousands separators.
fn n(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl TableWriter {
    pub fn new(out: Box<dyn Write + Send>) -> TableWriter {
        TableWriter {
            out: BufWriter::with_capacity(64 << 10, out),
            layout: None,
            width: 0,
            text: String::new(),
        }
    }

    fn key(&self, c: &Change) -> String {
        let names = self
            .layout
            .as_ref()
            .map(|l| l.key_columns.as_slice())
            .unwrap_or_default();
        names
            .iter()
            .zip(&c.key)
            .map(|(k, v)| format!("{k}={}", shown(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn row(&mut self, columns: &[String], row: &[Option<String>]) {
        for (c, v) in columns.iter().zip(row) {
            let _ = writeln!(self.text, "    {c:<w$}  {}", shown(v), w = self.width);
        }
    }
}

impl ChangeSink for TableWriter {
    fn begin(&mut self, layout: &Layout) -> Result<(), DataError> {
        self.width = layout
            .left_columns
            .iter()
            .chain(&layout.right_columns)
            .chain(&layout.compared_columns)
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0)
            .min(40);
        self.layout = Some(layout.clone());
        Ok(())
    }

    fn change(&mut self, c: &Change) -> Result<(), DataError> {
        self.text.clear();
        let key = self.key(c);
        let at = |side: &str, l: Option<u64>| l.map(|l| format!("{side} line {l}")).unwrap_or_default();
        match c.kind {
            ChangeKind::Added => {
                let _ = writeln!(self.text, "{:<9}  {key}  {}", "added", at("right", c.right_line));
                let columns = self
                    .layout
                    .as_ref()
                    .map(|l| l.right_columns.clone())
                    .unwrap_or_default();
                self.row(&columns, &c.row);
            }
            ChangeKind::Removed => {
                let _ = writeln!(self.text, "{:<9}  {key}  {}", "removed", at("left", c.left_line));
                let columns = self.layout.as_ref().map(|l| l.left_columns.clone()).unwrap_or_default();
                self.row(&columns, &c.row);
            }
            ChangeKind::Changed => {
                let _ = writeln!(
                    self.text,
                    "{:<9}  {key}  {}, {}",
                    "changed",
                    at("left", c.left_line),
                    at("right", c.right_line)
                );
                for f in &c.fields {
                    let _ = writeln!(
                        self.text,
                        "    {:<w$}  {} → {}",
                        f.column,
                        shown(&f.old),
                        shown(&f.new),
                        w = self.width
                    );
                }
            }
            ChangeKind::Duplicate => {
                let (l, r) = c.duplicate.as_ref().map_or((String::new(), String::new()), |d| {
                    (lines(&d.left_lines, d.left_rows), lines(&d.right_lines, d.right_rows))
                });
                let _ = writeln!(self.text, "{:<9}  {key}  left {l}, right {r}", "duplicate");
            }
        }
        self.out.write_all(self.text.as_bytes()).map_err(|e| out_error(&e))
    }
}

impl DiffWriter for TableWriter {
    fn finish(mut self: Box<Self>, s: &DiffSummary) -> Result<(), DataError> {
        let mut t = String::new();
        let _ = writeln!(t, "\nleft   {}  {} rows", s.left, n(s.left_rows));
        let _ = writeln!(t, "right  {}  {} rows", s.right, n(s.right_rows));
        let _ = writeln!(t, "key    {}", s.key_columns.join(", "));
        let counts = [
            ("added", s.added),
            ("removed", s.removed),
            ("changed", s.changed),
            ("unchanged", s.unchanged),
        ];
        let w = counts.iter().map(|(_, v)| n(*v).len()).max().unwrap_or(0);
        for (name, v) in counts {
            let _ = writeln!(t, "{name:<10} {:>w$}", n(v));
        }
        if s.left_duplicate_keys + s.right_duplicate_keys > 0 {
            let _ = writeln!(
                t,
                "duplicate keys: left {} ({} rows), right {} ({} rows); rows not compared: left {}, right {}",
                n(s.left_duplicate_keys),
                n(s.left_duplicate_rows),
                n(s.right_duplicate_keys),
                n(s.right_duplicate_rows),
                n(s.left_excluded_rows),
                n(s.right_excluded_rows),
            );
        }
        if !s.changed_fields.is_empty() {
            let _ = writeln!(t, "changed fields:");
            let fw = s.changed_fields.keys().map(|k| k.chars().count()).max().unwrap_or(0);
            for (k, v) in &s.changed_fields {
                let _ = writeln!(t, "    {k:<fw$}  {}", n(*v));
            }
        }
        let sc = &s.schema;
        if !sc.columns_added.is_empty() {
            let _ = writeln!(t, "columns added:   {}", sc.columns_added.join(", "));
        }
        if !sc.columns_removed.is_empty() {
            let _ = writeln!(t, "columns removed: {}", sc.columns_removed.join(", "));
        }
        for (from, to) in &sc.columns_renamed {
            let _ = writeln!(t, "column renamed:  {from} → {to}");
        }
        if sc.columns_reordered {
            let _ = writeln!(t, "columns reordered: left {}", sc.left_order.join(", "));
            let _ = writeln!(t, "                  right {}", sc.right_order.join(", "));
        }
        if s.spilled {
            let _ = writeln!(
                t,
                "(the inputs exceeded the memory budget and were compared from temporary files)"
            );
        }
        self.out.write_all(t.as_bytes()).map_err(|e| out_error(&e))?;
        self.out.flush().map_err(|e| out_error(&e))
    }

    fn as_sink(&mut self) -> &mut dyn ChangeSink {
        self
    }
}
