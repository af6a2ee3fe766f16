//! The merge policy: which neighbouring segments are merged into one, and
//! the bounds a merged segment keeps.

use std::sync::Arc;

use crate::part::Part;

/// Segments of about one size merged into one: each merge rewrites its
/// segments, so a larger factor rewrites each document fewer times, and
/// more segments cost a page little (it reads the newest first).
pub(crate) const MERGE_FACTOR: usize = 16;

/// No merge makes a segment of more documents than this: a merge holds the
/// merged term dictionary in memory, which grows with the documents.
pub(crate) const MAX_MERGED_DOCS: u64 = 1 << 22;

/// Nor of more term bytes than this, for the same reason (the format's
/// limit is 4 GiB).
pub(crate) const MAX_MERGED_TERM_BYTES: u64 = 1 << 30;

/// The run of segments to merge next, if any: the oldest [`MERGE_FACTOR`]
/// neighbours of which no one holds more documents than the others
/// together, whose predecessor (if any) holds at least four times the
/// largest, and which together stay within [`MAX_MERGED_DOCS`] and
/// [`MAX_MERGED_TERM_BYTES`]. So sizes
/// fall from the oldest segment to the newest, and each document is
/// rewritten about once per factor of 16 that the segments around it grow
/// by, whatever the sizes of commits. Any run qualifies, not only the
/// newest: commits go on while a merge runs.
pub(crate) fn merge_run(parts: &[Arc<Part>]) -> Option<std::ops::Range<usize>> {
    let docs = |p: &Arc<Part>| u64::from(p.segment.docs());
    (0..=parts.len().checked_sub(MERGE_FACTOR)?)
        .find(|&start| {
            let run = &parts[start..start + MERGE_FACTOR];
            let largest = run.iter().map(docs).max().unwrap_or(0);
            let total: u64 = run.iter().map(docs).sum();
            let term_bytes: u64 = run.iter().map(|p| p.segment.term_bytes_len() as u64).sum();
            let below = start.checked_sub(1).map(|i| docs(&parts[i]));
            largest <= total - largest
                && below.is_none_or(|b| largest.saturating_mul(4) <= b)
                && total <= MAX_MERGED_DOCS
                && term_bytes <= MAX_MERGED_TERM_BYTES
        })
        .map(|start| start..start + MERGE_FACTOR)
}
