//! The stored entry: the RFC 8785 canonical JSON of a completed [`Event`],
//! the bytes the ledger appends and the Merkle tree commits to
//! (leaf hash = SHA-256(0x00 ‖ entry)), and the way back from those bytes.
//!
//! Not here: hashing (`sealtrail-merkle`) or storage (`sealtrail-ledger`);
//! this crate knows neither.

pub use crate::canonical::canonical_entry;
use crate::event::Event;
use crate::mode::Mode;
pub use crate::report::EntryError;
use crate::{fast, json, validate};

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
