//! The stored entry: the RFC 8785 canonical JSON of a completed [`Event`],
//! the bytes the ledger appends and the Merkle tree commits to
//! (leaf hash = SHA-256(0x00 ‖ entry)), and the way back from those bytes.
//!
//! Not here: hashing (`sealtrail-merkle`) or storage (`sealtrail-ledger`);
//! this crate knows neither.

use thiserror::Error;

use crate::event::Event;
use crate::limits::MAX_ENTRY_BYTES;
use crate::validate::{join, thousands, FieldError, Mode};
use crate::{canonical, fast, json, validate};

/// Why an event has no entry, or bytes are not an entry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EntryError {
    /// The canonical form exceeds [`MAX_ENTRY_BYTES`].
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

/// The canonical entry bytes of `event`, refused above [`MAX_ENTRY_BYTES`].
///
/// The event is trusted to be valid, as [`crate::accept`] and
/// [`parse_entry`] build them; an `Event` assembled by hand is not checked
/// against the schema here.
pub fn canonical_entry(event: &Event) -> Result<Vec<u8>, EntryError> {
    // serde_json would quietly write a non-finite f64 as `null`.
    if let Some(d) = event.duration_ms.filter(|d| !d.is_finite()) {
        return Err(EntryError::Unrepresentable(format!("duration_ms is {d}")));
    }
    let mut bytes = Vec::with_capacity(512);
    canonical::write_event(event, &mut bytes).map_err(|e| EntryError::Unrepresentable(e.to_string()))?;
    if bytes.len() > MAX_ENTRY_BYTES {
        return Err(EntryError::TooLarge {
            size: bytes.len(),
            limit: MAX_ENTRY_BYTES,
        });
    }
    Ok(bytes)
}

/// Read a stored entry back: it must be a valid v1 event with its
/// server-assigned fields, in exactly its canonical form.
pub fn parse_entry(bytes: &[u8]) -> Result<Event, EntryError> {
    if let Some((event, canonical)) = fast::from_text(bytes, Mode::Stored) {
        if canonical == bytes {
            return Ok(event);
        }
    }
    careful_parse_entry(bytes)
}

/// [`parse_entry`] without the fast path (see [`crate::fast`]).
pub(crate) fn careful_parse_entry(bytes: &[u8]) -> Result<Event, EntryError> {
    let value = json::parse(bytes)?;
    let (event, canonical) = validate::stored(&value).map_err(EntryError::Invalid)?;
    if canonical != bytes {
        return Err(EntryError::NotCanonical);
    }
    Ok(event)
}
