//! The embedded metadata database (`meta.db`, SQLite) beside the logs in a
//! data directory, and everything kept in it: API keys, the administration
//! of alert rules, channels and silences, and the outbox of system-log
//! events that must be recorded whatever process made the change, and
//! legal holds on logs (`holds`). The
//! server and the CLI both work through this crate; it knows nothing of
//! HTTP.
//!
//! Why an outbox: `sealtrail keys create` may run while the server holds
//! the system log's lock. The key and the event recording its creation are
//! written in one SQLite transaction; whoever holds the system log (the
//! server every second, or the CLI when no server runs) moves outbox rows
//! into it, each with an idempotency key `outbox-<seq>`, so a crash between
//! append and delete cannot record a change twice ([`drain_outbox`]).
//!
//! Architecture invariant: every change is written together with the
//! system-log event recording it, in one transaction, or not at all.
//! Architecture invariant: every call blocks on disk; async callers run it
//! on a blocking pool.

pub mod alerts;
mod data_runs;
mod db;
mod holds;
pub mod jobs;
mod pii;
pub mod retention;
mod system;
pub mod users;

pub use data_runs::{
    data_run_problems, redact_address, DataRun, DataRunFilter, RunInput, RunKind, RunOutcome, StoredDataRun,
    INTERRUPTED, MAX_RUN_ERROR_BYTES, MAX_RUN_INPUTS, MAX_RUN_JSON_BYTES, MAX_RUN_LIST,
};
pub use db::{
    digest, hex, key_id, key_problems, queue_event, secret_matches, ApiKey, Meta, MetaError, Scope, META_FILE,
    SECRETS_KEY_FILE, SYSTEM_LOG,
};
pub use holds::{
    filter_from_json, filter_json, hold_problems, pruned_event, stopped_event, Hold, HoldFilter, MAX_ACTIVE_HOLDS,
    MAX_HOLD_REASON_BYTES,
};
pub use pii::{PiiChangeError, PiiField, PiiStore};
pub use system::{
    bounded_details, drain_outbox, job_event, key_event, now_text, system_event, DrainError, RECORD_PREFIX_BYTES,
    RECORD_STRING_BYTES,
};
pub use users::{
    generate_password, generate_recovery_codes, hash_password, name_problem, new_session_secrets, password_problem,
    recovery_digest, session_handle, user_actor, user_event, verify_nobody, verify_password, Client, Credentials,
    FederatedIdentity, FederatedRefused, Lockout, Role, SecondFactor, Session, SessionLimits, SignInRefused, User,
    UserStatus, MAX_NAME_BYTES, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS, RECOVERY_CODES,
};
