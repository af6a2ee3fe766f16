//! Sealtrail's audit events, schema version 1: what a sender may submit,
//! how it is checked, what the server adds, and the exact bytes stored.
//!
//! ```text
//! JSON text ─json::parse─► Value ─accept─► Event ─canonical_entry─► entry bytes (RFC 8785)
//!                          (dup keys,     (all field errors,        (≤ 65,535; leaf hash =
//!                           line:col)      id/received_at in)         SHA-256(0x00 ‖ bytes))
//! ```
//!
//! That is the careful path, which words every refusal. Valid input takes
//! a fast path first (`fast`: text straight to `Event`, no `Value` tree),
//! which gives up on anything wrong and leaves the refusal to the careful
//! path; both accept the same events with the same bytes.
//!
//! docs/event-schema.md describes every field, limit and policy;
//! docs/event-schema.v1.json is the same schema as JSON Schema 2020-12.
//!
//! Architecture invariant: no I/O, no clock, no randomness. The server
//! passes `received_at` and the id's randomness in ([`event_id`]).
//! Architecture invariant: knows nothing of the ledger, the Merkle tree or
//! HTTP; it hands bytes to whoever stores them.

mod canonical;
pub mod entry;
pub mod event;
mod fast;
pub mod glob;
pub mod id;
pub mod jcs;
pub mod json;
pub mod limits;
mod mode;
mod report;
pub mod timestamp;
pub mod validate;

pub use entry::{canonical_entry, parse_entry, EntryError};
pub use event::{
    Actor, ActorType, Changes, Context, Crud, Event, Failure, Impersonator, Outcome, Severity, Source, Target,
};
pub use glob::glob_match;
pub use id::{event_id, IdTimeError};
pub use jcs::JcsError;
pub use json::JsonError;
pub use validate::{
    accept, accept_entry, accept_json, accept_json_changed, accept_json_entry, FieldError, Rejection, Resized,
};

// Re-exported because they appear in this crate's public API.
pub use jiff::Timestamp;
pub use ulid::Ulid;
