//! Whether an input was submitted by a client or read back from storage:
//! the one thing validation and the fast path both need to know about
//! where an event comes from, kept in a leaf so neither depends on the
//! other for it.

use jiff::Timestamp;
use ulid::Ulid;

/// A submitted event gets its server-assigned fields (`id`,
/// `received_at`) from the caller and must not carry them; a stored one
/// must carry them.
#[derive(Clone, Copy)]
pub(crate) enum Mode {
    Submitted { received_at: Timestamp, id: Ulid },
    Stored,
}
