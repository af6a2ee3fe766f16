//! The export formats by name, as the CLI (`--format`) and the HTTP API
//! (`?format=`) spell them, with what a caller needs to serve each: a file
//! extension and a media type.

use std::fmt;
use std::str::FromStr;

/// An output format of [`crate::EventWriter`]; docs/export-formats.md
/// describes each byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Fixed-width columns for a terminal; for people, not for parsing.
    Table,
    /// One JSON array of the stored entries, verbatim.
    Json,
    /// JSON Lines: the stored entries verbatim, one per line.
    Jsonl,
    /// RFC 4180 CSV with a fixed column set ([`crate::COLUMNS`]).
    Csv,
    /// An Excel workbook with the CSV columns; files only.
    Xlsx,
}

impl Format {
    /// Every format, in the order they are listed to users.
    pub const ALL: [Format; 5] = [Format::Table, Format::Json, Format::Jsonl, Format::Csv, Format::Xlsx];

    /// The lowercase name, as parsed by [`FromStr`].
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Json => "json",
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
        }
    }

    /// The usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Table => "txt",
            other => other.as_str(),
        }
    }

    /// The media type to serve the format with.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Table => "text/plain; charset=utf-8",
            Format::Json => "application/json",
            Format::Jsonl => "application/jsonl",
            Format::Csv => "text/csv; charset=utf-8; header=present",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name that is none of [`Format::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown export format {given:?}; choose one of table, json, jsonl, csv, xlsx")]
pub struct UnknownFormat {
    pub given: String,
}

impl FromStr for Format {
    type Err = UnknownFormat;

    /// Parses the lowercase names; upper case is accepted too (`CSV`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| UnknownFormat { given: text.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_errors_list_the_choices() {
        for f in Format::ALL {
            assert_eq!(f.to_string().parse::<Format>(), Ok(f));
        }
        assert_eq!("CSV".parse::<Format>(), Ok(Format::Csv));
        let err = "xls".parse::<Format>().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(r#"unknown export format "xls"; choose one of table, json, jsonl, csv, xlsx"#)
        );
        // The message's list is written out by hand; keep it in step.
        let listed = Format::ALL.map(Format::as_str).join(", ");
        assert!(err.is_some_and(|e| e.contains(&listed)));
    }
}
