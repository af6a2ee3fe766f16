//! PII protection of configured event fields (docs/pii.md).
//!
//! Two modes per field of a log:
//! - **hmac**: the value is replaced by `hmac:` and the lowercase hex of
//!   HMAC-SHA-256 under the data directory's HMAC key. Stable, so a query
//!   for the clear value is answered by hashing it the same way.
//! - **encrypt**: the value is replaced by `enc:` and the base64url form of
//!   an AES-256-GCM envelope under the data key of the event's subject (the
//!   value of another field, such as `actor.id`). Destroying the subject's
//!   key (crypto-shredding) makes every such value unreadable while the
//!   stored bytes, and so every hash and proof over them, stay as they are.
//!
//! Data keys and the HMAC key are kept wrapped (AES-256-GCM) under a
//! master key that lives outside the data directory; where the wrapped keys
//! are kept is the caller's [`KeyStore`] (the server and the CLI keep them
//! in `meta.db`).
//!
//! Not here: storage, HTTP, the query index. This crate transforms and
//! reveals [`sealtrail_event::Event`]s; the trail calls it at ingest,
//! before canonicalisation and hashing.
//!
//! Architecture invariant: no clear PII value leaves this crate except by
//! [`LogPii::reveal`], which its callers use only for readers allowed to
//! see PII; errors name field paths, never values.

mod crypto;
mod fields;
mod vault;

pub use crypto::{
    is_sealed_text, open_wrapped, pseudonym_hex, wrap_key, KeyId, MasterKey, ENVELOPE_VERSION, HMAC_PREFIX,
    SEALED_PREFIX,
};
pub use fields::{FieldPath, Mode, Policy, Rule, DEFAULT_SUBJECT};
pub use vault::{FreshKey, KeyStore, LogPii, StoreError, Vault, WrappedKey, MAX_CACHED_KEYS};

/// What PII protection refuses or fails at.
#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    /// The master key could not be read, or is not 64 hexadecimal digits.
    #[error("PII master key ({origin}): {reason}")]
    MasterKey { origin: String, reason: String },
    /// The master key does not open the wrapped keys: it is not the key
    /// they were wrapped with.
    #[error("the PII master key does not open this data directory's key store (wrong key, or the store was damaged); nothing was changed")]
    WrongMasterKey,
    /// A field path that cannot be protected, or an unknown mode.
    #[error("{0}")]
    Config(String),
    #[error("PII key store: {0}")]
    Store(#[from] StoreError),
    #[error("reading the system's randomness: {0}")]
    Random(String),
}
