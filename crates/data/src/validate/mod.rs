//! Validation rules: what each column's values must be (present, of a
//! type, in a range, matching a pattern, one of a list, unique, dates
//! within so many years of a reference date) and how columns of one row
//! must compare (`ship_date >= order_date`). Rules are read from TOML
//! (docs/data.md, "Validation rules") and checked against a [`Source`](crate::Source)
//! in one pass, each violation handed to the caller as it is found.
//!
//! Not here: fixing values, or deciding what a violation means for a
//! run's outcome; the caller decides from the [`ValidationSummary`].

mod check;
mod rules;
mod value;

pub use check::{check, RuleSummary, ValidationSummary, Violation};
pub use rules::{Rules, DEFAULT_DATE_FORMAT, DEFAULT_UNIQUE_MEMORY_MIB, UNIQUE_BYTES_PER_VALUE};
pub use value::ColumnType;
