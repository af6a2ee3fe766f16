//! [`EventSource`]: how the index reads an event back, for the one check
//! its terms cannot answer (a phrase of three or more words). The index
//! holds no event bodies; its owner, which reads the ledger, provides it.

use sealtrail_event::Event;

/// Why an event could not be read back; kept whole so the owner can
/// recognise its own error again.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Reads the events the index was given, by ledger index.
pub trait EventSource: Send + Sync {
    /// The event of ledger entry `index`; `Ok(None)` if that entry is not
    /// an event.
    fn event(&self, index: u64) -> Result<Option<Event>, SourceError>;
}
