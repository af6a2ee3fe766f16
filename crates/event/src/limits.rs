//! Every bound the schema puts on an event, in one place so that the
//! validator, the documentation (docs/event-schema.md) and the JSON Schema
//! (docs/event-schema.v1.json) can be checked against the same numbers.
//!
//! String lengths count Unicode scalar values (what JSON Schema's
//! `maxLength` counts), not bytes. The byte budget that matters for storage
//! is [`MAX_ENTRY_BYTES`]; the per-field bounds exist so that a refusal
//! names the field at fault rather than only the total.

/// One stored entry: a C2SP tlog-tiles entry bundle frames each entry with
/// a 16-bit length.
pub const MAX_ENTRY_BYTES: usize = 65_535;

/// `details` in canonical form: half an entry, leaving the other half for
/// the fixed fields, `changes` and the error stack.
pub const MAX_DETAILS_BYTES: usize = 32_768;

/// Levels of nested arrays and objects in `details`, `changes.before` and
/// `changes.after`, counting the outermost container as level 1. Deep
/// nesting is a parser and indexer hazard, never a need of an audit record.
pub const MAX_DEPTH: usize = 16;

/// The largest magnitude a number in an event may have: 2^53 − 1, the
/// largest integer below which every integer is a distinct double (I-JSON,
/// RFC 7493 §2.2). Beyond it the stored double may differ from what was
/// sent (RFC 8785 stores doubles), so such values must travel as strings.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Errors reported for one input; the rest are counted in a last line.
pub const MAX_ERRORS: usize = 100;

/// Items in `targets`.
pub const MAX_TARGETS: usize = 64;
/// Items in `actor.roles`.
pub const MAX_ROLES: usize = 64;
/// Items in `changes.fields`.
pub const MAX_CHANGED_FIELDS: usize = 256;

/// Short names: tenant, action, category, types, roles, source names.
pub const NAME_CHARS: usize = 128;
/// Identifiers, display names, e-mail addresses, hosts, idempotency keys.
pub const ID_CHARS: usize = 256;
/// `context.user_agent`.
pub const USER_AGENT_CHARS: usize = 1024;
/// `message` and `error.message`.
pub const TEXT_CHARS: usize = 4096;
/// `error.stack`.
pub const STACK_CHARS: usize = 16_384;
