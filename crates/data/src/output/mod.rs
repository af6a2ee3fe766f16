//! Writers of a diff's changes and summary.
