//! Data reconciliation: read tables from files and databases, compare two
//! of them by key, discover their unique keys and check them against
//! validation rules. The CLI and the server call this crate; it knows
//! nothing of HTTP, and nothing of the trail: recording a run is the
//! caller's business ([`run_dir`] only says how a run's results are laid
//! out in its directory).
//!
//! Every source yields [`Row`]s through the [`Source`] trait: text values
//! (or null), each row knowing the line it came from, so that every
//! refusal names file, line and column ([`DataError`]).
//!
//! Architecture invariant: memory is bounded by the caller's budget, never
//! by the size of an input.

mod change;
pub mod diff;
mod error;
pub mod history;
pub mod job;
pub mod keys;
pub mod output;
mod row;
pub mod run_dir;
pub mod source;
pub mod validate;

pub use change::{Change, ChangeKind, Duplicate, FieldChange};
pub use diff::{diff, ChangeSink, DiffOptions, DiffSummary};
pub use error::DataError;
pub use row::Row;
pub use source::Source;
