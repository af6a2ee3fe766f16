//! Alerts over the audit event stream.
//!
//! - [`spec`]: rules, channels and silences as operators write them.
//! - [`engine`]: rule evaluation as a pure state machine over events and
//!   an injected clock; its state is a value the caller persists.
//! - [`notify`]: each channel's wire format, and sending it.
//! - [`net`]: where HTTP notifications may go.
//! - [`outbox`]: the durable queue of notifications, retries and history.
//! - [`sealed`]: channel credentials encrypted at rest.
//! - [`store`]: the metadata-database tables of rules, channels, silences,
//!   alerts and evaluation state.
//!
//! Not here: reading the ledger or the HTTP API (the server crate).

pub mod engine;
pub mod net;
pub mod notify;
pub mod outbox;
pub mod sealed;
pub mod spec;
pub mod store;

pub use spec::{
    ChannelKind, ChannelSpec, Condition, Field, Filter, Level, Message, MessageKind, RuleSpec, SilenceSpec,
    SmtpSecurity, Span,
};
