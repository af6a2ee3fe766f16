//! Retention planning: how far a log may be pruned, given a policy (an
//! age of `received_at`, a size to fit), the legal holds on it and what
//! the index covers. Pruning works in whole entry bundles of
//! [`BUNDLE`] entries (the tlog-tiles entry bundle), so every boundary
//! here is a multiple of it.
//!
//! Not here: storing holds (the metadata database does), nor the pruning
//! itself (the ledger does), nor recording it in the system log.
//!
//! How each limit is found:
//! - age: the first event received at or after `now - older_than`, found
//!   with the index (oldest first, one hit). Every event before it was
//!   received earlier. Entries that are not events (raw entries) have no
//!   received time and follow the events around them.
//! - size: the entry bytes of what is kept (per entry its 8-byte record
//!   header plus its bytes, as the ledger's `entries` file stores it),
//!   summed per bundle over the entries not yet pruned; the fewest oldest
//!   bundles are dropped that bring the rest to at most the target.
//!   Reading every such entry's length makes this linear in the log.
//! - holds: the first entry any active hold covers, found with the index;
//!   pruning stops at the bundle that holds it.
//! - the index: nothing the index does not cover yet is pruned, so that
//!   holds and ages are judged on every entry pruned.

use std::time::Duration;

use sealtrail_event::Timestamp;
use sealtrail_index::{EventIndex, Filter, Page, TimeRange};
use sealtrail_ledger::Log;
pub use sealtrail_ledger::PruneReport;

use crate::TrailError;

/// Entries per bundle: pruning boundaries are multiples of it.
pub const BUNDLE: u64 = 256;

/// What to prune: entries received longer ago than `older_than`, and/or
/// the oldest entries until what is kept is at most `max_size` bytes. With
/// both, whichever prunes more; with neither, nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub older_than: Option<Duration>,
    pub max_size: Option<u64>,
}

impl Policy {
    /// The policy written as an age (`365d`) and a size (`100GiB`), each
    /// optional: `None` when neither is given, or the field that does not
    /// parse (`older_than`, `max_size`) and why.
    pub fn parse(older_than: Option<&str>, max_size: Option<&str>) -> Result<Option<Policy>, (&'static str, String)> {
        let older_than = older_than.map(parse_age).transpose().map_err(|e| ("older_than", e))?;
        let max_size = max_size.map(parse_size).transpose().map_err(|e| ("max_size", e))?;
        if older_than.is_none() && max_size.is_none() {
            return Ok(None);
        }
        Ok(Some(Policy { older_than, max_size }))
    }
}

/// A legal hold, as the planner needs it: an id to name in messages and
/// the events it covers.
#[derive(Debug, Clone)]
pub struct HoldScope {
    pub id: i64,
    pub filter: Filter,
}

/// Why pruning stops short of what the policy asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Hold `hold` covers entry `index`; pruning stops at its bundle.
    Hold { hold: i64, index: u64 },
    /// The index covers only the first `indexed` entries.
    Unindexed { indexed: u64 },
    /// The latest checkpoint covers only `size` entries.
    Checkpoint { size: u64 },
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Hold { hold, index } => write!(f, "legal hold {hold} covers entry {index}"),
            Stop::Unindexed { indexed } => write!(f, "the query index covers only the first {indexed} entries"),
            Stop::Checkpoint { size } => write!(f, "the latest checkpoint covers only {size} entries"),
        }
    }
}

/// What a retention run would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPlan {
    /// Entries below this are already pruned.
    pub from: u64,
    /// What the policy asks to prune below (a bundle boundary, at least
    /// `from`), before holds and limits.
    pub wanted: u64,
    /// What may be pruned below: `wanted`, or less when `stopped` says why.
    pub below: u64,
    /// Why `below` is less than `wanted`; the first limit met.
    pub stopped: Option<Stop>,
    /// The entry bytes (record headers and entries) of `[from, below)`.
    pub bytes: u64,
}

impl RetentionPlan {
    /// Nothing to prune.
    pub fn is_empty(&self) -> bool {
        self.below <= self.from
    }
}

/// Round down to a bundle boundary.
pub fn bundle_floor(n: u64) -> u64 {
    n - n % BUNDLE
}

/// The first entry at or after `from` that any of `holds` covers, and the
/// hold, according to `index`.
pub(crate) fn first_held(index: &EventIndex, holds: &[HoldScope]) -> Result<Option<(u64, i64)>, TrailError> {
    let mut first: Option<(u64, i64)> = None;
    for hold in holds {
        if let Some(&i) = index.search(&hold.filter, &Page::oldest(1))?.first() {
            if first.is_none_or(|(f, _)| i < f) {
                first = Some((i, hold.id));
            }
        }
    }
    Ok(first)
}

/// The plan for `log` with `index`, whose entries below `pruned_below`
/// are gone.
pub(crate) fn plan(
    log: &Log,
    index: &EventIndex,
    pruned_below: u64,
    policy: &Policy,
    holds: &[HoldScope],
    now: Timestamp,
) -> Result<RetentionPlan, TrailError> {
    let size = log.size();
    let indexed = index.indexed().min(size);
    let from = pruned_below;
    let mut wanted = from;
    if let Some(age) = policy.older_than {
        let cutoff = now
            .checked_sub(jiff::SignedDuration::try_from(age).unwrap_or(jiff::SignedDuration::MAX))
            .unwrap_or(Timestamp::MIN);
        let recent = Filter {
            received: TimeRange {
                since: Some(cutoff),
                until: None,
            },
            ..Filter::default()
        };
        // Beyond the index nothing is known to be old; the limit below
        // says so.
        let young = index
            .search(&recent, &Page::oldest(1))?
            .first()
            .copied()
            .unwrap_or(size);
        wanted = wanted.max(bundle_floor(young));
    }
    if let Some(max) = policy.max_size {
        wanted = wanted.max(fit(log, from, size, max)?);
    }
    let mut below = wanted;
    let mut stopped = None;
    let mut limit = |at: u64, why: Stop| {
        if bundle_floor(at) < below {
            below = bundle_floor(at).max(from);
            stopped.get_or_insert(why);
        }
    };
    if let Some((index, hold)) = first_held(index, holds)? {
        limit(index, Stop::Hold { hold, index });
    }
    limit(indexed, Stop::Unindexed { indexed });
    limit(size, Stop::Checkpoint { size });
    let bytes = entry_bytes(log, from, below)?;
    Ok(RetentionPlan {
        from,
        wanted,
        below,
        stopped,
        bytes,
    })
}

/// Entries read per batch when summing sizes.
const BATCH: u64 = 4096;

fn record_bytes(entry: &[u8]) -> u64 {
    8 + entry.len() as u64
}

/// Entry bytes of `[from, to)`.
pub(crate) fn entry_bytes(log: &Log, from: u64, to: u64) -> Result<u64, TrailError> {
    let mut bytes = 0;
    let mut at = from;
    while at < to {
        let n = BATCH.min(to - at);
        bytes += log.entries(at, n)?.iter().map(|e| record_bytes(e)).sum::<u64>();
        at += n;
    }
    Ok(bytes)
}

/// The least bundle boundary `b >= from` such that the entries `[b, size)`
/// take at most `max` bytes.
fn fit(log: &Log, from: u64, size: u64, max: u64) -> Result<u64, TrailError> {
    // Bytes per bundle, oldest first: bounded by the log's bundles, 8
    // bytes each (10M entries: 312 KiB).
    let mut bundles = Vec::with_capacity(((size - from) / BUNDLE + 1) as usize);
    let mut total = 0u64;
    let mut at = from;
    while at < size {
        let end = (bundle_floor(at) + BUNDLE).min(size);
        let b = entry_bytes(log, at, end)?;
        bundles.push(b);
        total += b;
        at = end;
    }
    let mut below = from;
    for b in bundles {
        if total <= max {
            break;
        }
        total -= b;
        below = bundle_floor(below) + BUNDLE;
    }
    // Only whole bundles go; a partial last bundle stays, even if it alone
    // is larger than the target.
    Ok(below.min(bundle_floor(size)))
}

/// A retention age as people write it: a whole number and a unit, `s`,
/// `m`, `h`, `d` (86,400 s) or `w` (7 d): `90d`, `12h`, `52w`. At least one
/// second.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || format!("{text:?} is not an age: use a whole number and s, m, h, d or w (90d, 12h, 52w)");
    let unit = t.chars().last().ok_or_else(bad)?;
    let per: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return Err(bad()),
    };
    let digits = &t[..t.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| format!("{text:?} is too long an age"))?;
    if n == 0 {
        return Err(format!(
            "{text:?}: an age of 0 would prune everything; give at least 1s"
        ));
    }
    // Beyond 10,000 years jiff cannot subtract it from now.
    let secs = n
        .checked_mul(per)
        .filter(|&s| s <= 10_000 * 366 * 86_400)
        .ok_or_else(|| format!("{text:?} is too long an age (at most 10000 years)"))?;
    Ok(Duration::from_secs(secs))
}

/// A size as people write it: a whole number of bytes, or with a unit
/// `KiB`, `MiB`, `GiB`, `TiB` (also `K`/`KB`, `M`/`MB`, `G`/`GB`, `T`/`TB`, all
/// powers of 1024), case-insensitive: `500MiB`, `2 GiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size: use bytes or a number with KiB, MiB, GiB or TiB (10GiB)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {:?} (use KiB, MiB, GiB or TiB)",
                unit.trim()
            ))
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large a size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_sizes_parse_or_say_why_not() {
        assert_eq!(parse_age("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_age(" 12h "), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_age("2w"), Ok(Duration::from_secs(1_209_600)));
        for bad in ["", "d", "10", "10y", "-1d", "1.5d", "0d", "99999999999999w"] {
            assert!(parse_age(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_size("500"), Ok(500));
        assert_eq!(parse_size("2 GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1tb"), Ok(1 << 40));
        assert_eq!(parse_size("3M"), Ok(3 << 20));
        for bad in ["", "GiB", "1.5GiB", "-1", "10 parsecs", "99999999999999TiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bundle_floor_rounds_down() {
        for (n, want) in [(0, 0), (255, 0), (256, 256), (257, 256), (1023, 768)] {
            assert_eq!(bundle_floor(n), want, "{n}");
        }
    }
}
