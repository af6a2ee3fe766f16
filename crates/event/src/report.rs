//! How refusals are worded: a [`FieldError`] names the field and the
//! reason, an [`EntryError`] says why bytes are not (or cannot become) a
//! stored entry. A leaf of the crate, so that validation, the fast path
//! and entries can all word refusals without depending on one another.

use std::fmt;

use thiserror::Error;

use crate::json;

/// One thing wrong with an input: where (`actor.id`, `targets[2].type`;
/// empty for the event as a whole) and why. Displays as `path: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for FieldError {}

pub(crate) fn join(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Why an event has no entry, or bytes are not an entry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EntryError {
    /// The canonical form exceeds [`crate::limits::MAX_ENTRY_BYTES`].
    #[error(
        "the event is {} bytes in canonical form; the limit is {} bytes",
        thousands(*.size),
        thousands(*.limit)
    )]
    TooLarge { size: usize, limit: usize },
    /// The event holds a value with no canonical form (a non-finite
    /// duration). [`crate::accept`] never builds such an event; one
    /// assembled by hand can be.
    #[error("the event has no canonical form: {0}")]
    Unrepresentable(String),
    /// Stored bytes that are not JSON.
    #[error(transparent)]
    Json(#[from] json::JsonError),
    /// Stored JSON that is not a valid, completed event.
    #[error("not a valid stored event: {}", join(.0))]
    Invalid(Vec<FieldError>),
    /// A valid event whose bytes differ from its canonical form: the entry
    /// was not written by this schema's canonicaliser, or was altered.
    #[error("the entry is a valid event but not in canonical form")]
    NotCanonical,
}

/// 70123 → "70,123": sizes in messages are read by people.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}
