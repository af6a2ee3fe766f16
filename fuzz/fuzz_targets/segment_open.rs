//! `sealtrail_segment::Segment::open` and every read behind it (term
//! lookups, posting lists whole and by block, column blocks and values,
//! and a merge), on the bytes as given, then on the same bytes with their
//! checksums recomputed (`reseal`) so that damage reaches the decoders.
//! Reads must fail or hold together: documents ascend within the segment,
//! values lie in their block's range, and a merge that succeeds writes a
//! segment that opens.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealtrail_segment::{merge, reseal, Segment, BLOCK};

/// Reads per kind, so that a large claimed count cannot make one input
/// run for long (every read is bounded by the file's size anyway).
const MOST: u32 = 2000;

fuzz_target!(|data: &[u8]| {
    exercise(data);
    let mut sealed = data.to_vec();
    if reseal(&mut sealed).is_ok() {
        exercise(&sealed);
    }
});

fn exercise(bytes: &[u8]) {
    let Ok(s) = Segment::open(bytes) else { return };
    assert!(s.field_terms(255).end <= s.terms());
    for f in 0..=255u8 {
        let range = s.field_terms(f);
        assert!(range.start <= range.end && range.end <= s.terms());
        for t in range.take(MOST as usize) {
            if let Ok(bytes) = s.term_bytes(t) {
                // A lookup finds this term or an equal one before it, or fails.
                if let Ok(Some(found)) = s.find(f, bytes) {
                    assert!(s.field_terms(f).contains(&found));
                    assert_eq!(s.term_bytes(found).ok(), Some(bytes));
                }
            }
            let Ok(p) = s.postings(t) else { continue };
            assert!(p.len() <= s.docs());
            let mut prev = None;
            for d in p.iter().take(MOST as usize) {
                let Ok(d) = d else { break };
                assert!(d < s.docs() && prev.is_none_or(|p| p < d), "{prev:?} then {d}");
                prev = Some(d);
            }
            let mut block = Vec::new();
            for b in (0..p.blocks()).rev().take(16) {
                block.clear();
                if p.block(b, &mut block).is_ok() {
                    assert!(block.len() <= BLOCK as usize);
                    assert!(block.windows(2).all(|w| w[0] < w[1]));
                    if let (Some(base), Some(&first)) = (p.block_base(b), block.first()) {
                        assert!(first > base);
                    }
                } else {
                    assert!(block.is_empty(), "a failed block left output");
                }
            }
            let _ = p.seek_block(s.docs() / 2);
        }
    }
    for c in 0..s.kinds().len() {
        let Some(col) = s.column(c) else { continue };
        let mut values = Vec::new();
        for b in 0..col.blocks().min(MOST) {
            values.clear();
            if let (Ok(()), Ok(Some((lo, hi)))) = (col.block(b, &mut values), col.block_range(b)) {
                assert!(values.iter().all(|v| (lo..=hi).contains(v)));
                for (i, &v) in (0u32..).zip(&values).step_by(37) {
                    assert_eq!(col.get(b * BLOCK + i), Ok(Some(v)));
                }
            }
        }
        assert_eq!(col.get(s.docs()), Ok(None));
    }
    if let Ok(merged) = merge(&[&s, &s], Vec::new()) {
        let m = Segment::open(merged).expect("a merge wrote a segment that does not open");
        assert_eq!(m.docs(), 2 * s.docs());
    }
}
