//! Background re-verification of an open log: the scrub.
//!
//! Each step re-reads a run of entries (their record checksums are checked
//! on the way, see [`Log::entries`]), recomputes their leaf hashes and every
//! tree node they complete, and compares each with the hashes file, in one
//! sequential pass, as `verify` does offline. Two cursors run independently:
//! one follows new entries as they are appended, one walks the whole log
//! from entry 0 (the first kept one, once the log is pruned) at whatever
//! pace its caller sets. Damage found marks the log
//! damaged ([`Log::damaged`]), which refuses appends and new checkpoints.
//!
//! Deliberately not here: threads, clocks and pacing. The caller decides
//! when to step and how far, so the scrub can stay out of ingest's way.

use crate::error::Result;
use crate::log::{Damage, Log};
use sealtrail_merkle::leaf_hash;
use sealtrail_merkle::tree::{stored_count, Frontier};

/// Most entries read at once (at most 64 MiB at the 65,535-byte limit).
const CHUNK: u64 = 1024;

/// Where the scrub of one log stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScrubStatus {
    /// Entries below this index that were appended while the log was open
    /// have been re-read and checked (the new-entry cursor).
    pub new_checked: u64,
    /// The whole-log pass in progress: the next entry it checks and the
    /// size of the log when it started. `None` between passes.
    pub pass: Option<(u64, u64)>,
    /// Whole-log passes completed since the log was opened.
    pub full_passes: u64,
    /// Size of the log the last completed pass covered.
    pub last_pass_size: Option<u64>,
    /// Damage found (by the scrub or by a read).
    pub damaged: Option<Damage>,
}

/// A cursor over a log: the tree rebuilt from the entries it has checked.
struct Cursor {
    frontier: Frontier,
}

impl Cursor {
    /// Check up to `max` entries from the cursor, never past `end`.
    /// Returns how many were checked.
    fn step(&mut self, log: &Log, end: u64, max: u64) -> Result<u64> {
        let mut done = 0;
        // Pruned entries cannot be re-read: start after them, from the
        // stored tree (their hashes were checked when they were written).
        let pruned = log.pruned_below().min(end);
        if self.frontier.size() < pruned {
            self.frontier = log.frontier_at(pruned)?;
        }
        while done < max && self.frontier.size() < end {
            let first = self.frontier.size();
            let count = CHUNK.min(max - done).min(end - first);
            let entries = log.entries(first, count)?;
            let from = stored_count(first);
            let stored = log.stored_hashes(from, stored_count(first + count) - from)?;
            let mut position = 0usize;
            let mut mismatch = None;
            for entry in &entries {
                self.frontier.push(leaf_hash(entry), |level, n, h| {
                    let at = position * 32;
                    position += 1;
                    if mismatch.is_none() && stored.get(at..at + 32) != Some(&h[..]) {
                        mismatch = Some((level, n));
                    }
                });
                if let Some((level, n)) = mismatch {
                    let index = n << level;
                    let offset = log.offset(index)?;
                    return Err(log.mark_damaged(index, offset, crate::verify::stored_hash_differs(level, n)));
                }
            }
            done += count;
        }
        Ok(done)
    }
}

/// The scrub of one open log.
pub struct Scrub {
    new: Cursor,
    pass: Option<(Cursor, u64)>,
    full_passes: u64,
    last_pass_size: Option<u64>,
}

impl Scrub {
    /// Start scrubbing `log`: new entries from its current size on; the
    /// whole-log pass starts with [`Scrub::start_pass`].
    pub fn new(log: &Log) -> Result<Scrub> {
        Ok(Scrub {
            new: Cursor {
                frontier: log.frontier_at(log.size())?,
            },
            pass: None,
            full_passes: 0,
            last_pass_size: None,
        })
    }

    /// Check up to `max` entries appended since the last call. Returns how
    /// many were checked; an error if one is damaged or cannot be read.
    pub fn check_new(&mut self, log: &Log, max: u64) -> Result<u64> {
        self.new.step(log, log.size(), max)
    }

    /// Begin a pass over every entry the log holds now, unless one is
    /// running.
    pub fn start_pass(&mut self, log: &Log) {
        if self.pass.is_none() {
            self.pass = Some((
                Cursor {
                    frontier: Frontier::new(),
                },
                log.size(),
            ));
        }
    }

    pub fn pass_running(&self) -> bool {
        self.pass.is_some()
    }

    /// Check up to `max` entries of the running pass. Returns true when
    /// this step completed it.
    pub fn check_pass(&mut self, log: &Log, max: u64) -> Result<bool> {
        let Some((cursor, end)) = &mut self.pass else {
            return Ok(false);
        };
        cursor.step(log, *end, max)?;
        if cursor.frontier.size() < *end {
            return Ok(false);
        }
        // The rebuilt tree must be the one the stored hashes give at this
        // size, which open checked against the signed checkpoint.
        let end = *end;
        if cursor.frontier.root() != log.root_at(end)? {
            let offset = log.offset(0)?;
            return Err(log.mark_damaged(
                0,
                offset,
                format!("the tree rebuilt from entries 0..{end} does not have the stored root"),
            ));
        }
        self.pass = None;
        self.full_passes += 1;
        self.last_pass_size = Some(end);
        Ok(true)
    }

    pub fn status(&self, log: &Log) -> ScrubStatus {
        ScrubStatus {
            new_checked: self.new.frontier.size(),
            pass: self.pass.as_ref().map(|(c, end)| (c.frontier.size(), *end)),
            full_passes: self.full_passes,
            last_pass_size: self.last_pass_size,
            damaged: log.damaged(),
        }
    }
}
