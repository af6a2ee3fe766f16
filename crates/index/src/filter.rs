//! What a query asks for: a [`Filter`] over event fields (all given
//! conditions must hold) and a [`Page`] of ledger indices.
//!
//! Not here: how a filter runs on a segment (`query`), or any
//! parsing of user syntax such as "24h" (the caller's job).

use std::net::IpAddr;

use sealtrail_event::{Outcome, Severity, Timestamp};

/// Conditions on events; every one that is set must hold. The default
/// matches every event.
#[derive(Default, Clone, Debug, PartialEq)]
pub struct Filter {
    /// `action`: exact, or a glob where `*` is any run of characters (dots
    /// included) and `?` exactly one character, e.g. `lead.*`.
    pub action: Option<String>,
    /// `actor.id`, exact.
    pub actor: Option<String>,
    /// With `target_id`: one target must have both. Alone: any target of
    /// this type.
    pub target_type: Option<String>,
    /// Alone: any target with this id.
    pub target_id: Option<String>,
    pub tenant: Option<String>,
    /// `source.workflow`.
    pub workflow: Option<String>,
    /// `source.service`.
    pub service: Option<String>,
    pub outcome: Option<Outcome>,
    /// Severity at least this grave.
    pub min_severity: Option<Severity>,
    /// `context.ip`.
    pub ip: Option<IpAddr>,
    /// `context.session_id`.
    pub session: Option<String>,
    /// `occurred_at` within this range.
    pub occurred: TimeRange,
    /// `received_at` within this range.
    pub received: TimeRange,
    /// Free text (docs/query-syntax.md): every word and identifier must
    /// occur in `message`, `error.type`, `error.message` or `details` (its
    /// keys, strings and numbers, at any depth), and every `"quoted
    /// phrase"` as consecutive words of one of them. Text is compared
    /// after NFKC normalisation and lowercasing; identifiers (addresses,
    /// e-mail addresses, UUIDs, paths, dotted names) are looked up whole.
    /// A text with no word in it sets no condition.
    pub text: Option<String>,
    /// Index words that satisfy each word and phrase of [`Filter::text`]
    /// as well (an event holding any of them matches the text): the hex
    /// HMACs of the text's terms where a log pseudonymises free-text
    /// fields (docs/pii.md), so a search for a clear value finds its
    /// stored pseudonym. Ignored without `text`.
    pub text_alternatives: Vec<String>,
    /// Only failures: outcome `failure`, or severity `error` or graver, or
    /// an `error` object.
    pub failures: bool,
}

/// The words and identifiers [`Filter::text`] searches for, normalised
/// as the index holds them, phrase words included; empty when the text
/// has none (only punctuation or spaces), in which case it sets no
/// condition.
pub fn text_words(text: &str) -> Vec<String> {
    crate::text::TextQuery::parse(text).all_words()
}

/// A half-open range of instants; an absent bound is unbounded.
///
/// Instants are compared to the nanosecond between the years 1678 and
/// 2261; events and bounds outside those years are indexed at the nearest
/// end of that span.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    /// Inclusive.
    pub since: Option<Timestamp>,
    /// Exclusive.
    pub until: Option<Timestamp>,
}

/// Result order, by ledger index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    NewestFirst,
    OldestFirst,
}

/// One page of results. `after` is a cursor, the last ledger index of the
/// previous page: with [`Order::NewestFirst`] the page holds indices below
/// it, with [`Order::OldestFirst`] indices above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub order: Order,
    pub limit: usize,
    pub after: Option<u64>,
}

impl Page {
    /// The first `limit` results, newest first.
    pub fn newest(limit: usize) -> Page {
        Page {
            order: Order::NewestFirst,
            limit,
            after: None,
        }
    }

    /// The first `limit` results, oldest first.
    pub fn oldest(limit: usize) -> Page {
        Page {
            order: Order::OldestFirst,
            limit,
            after: None,
        }
    }
}
