//! Segments built from random documents, checked against answers computed
//! here from the documents themselves: every posting list, every lookup
//! (present, absent, near misses, other fields), the dictionary order,
//! every column value and block summary; merges against a single build of
//! the same documents; and damaged bytes refused or read without a panic.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use sealtrail_segment::{merge, term_hash, ColumnKind, Segment, SegmentBuilder, BLOCK, NONE};
use sealtrail_testgen::Rng;

/// Field 0: a few action-like names. Field 1: hundreds of actors. Field 2:
/// nearly unique keys. Field 4: words (field 3 is never used).
const FIELDS: [u8; 4] = [0, 1, 2, 4];
const KINDS: [ColumnKind; 3] = [ColumnKind::Value, ColumnKind::Term(0), ColumnKind::Value];

struct Doc {
    terms: Vec<(u8, Vec<u8>)>,
    /// Column 1 is the document's field-0 term, if it has one.
    action: Option<Vec<u8>>,
    values: [u64; 2],
}

fn docs(seed: u64, n: usize) -> Vec<Doc> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut terms = Vec::new();
        let action = (rng.index(10) != 0).then(|| format!("ns{}.verb{}", rng.index(3), rng.index(7)).into_bytes());
        if let Some(a) = &action {
            terms.push((0, a.clone()));
        }
        if rng.index(3) != 0 {
            terms.push((1, format!("user-{}", rng.index(300)).into_bytes()));
        }
        if rng.index(2) == 0 {
            terms.push((2, format!("key-{i}-{}", rng.index(1 << 20)).into_bytes()));
        }
        for _ in 0..rng.index(6) {
            // Repeats within a document are posted once.
            let w = ["alpha", "beta", "gamma", "", "é", "delta", "beta"][rng.index(7)];
            terms.push((4, w.as_bytes().to_vec()));
        }
        // Values: mostly ascending (like times), sometimes anything.
        let time = 1_700_000_000_000 + i as u64 * 1000 + rng.index(5000) as u64;
        let any = if rng.index(50) == 0 {
            u64::MAX - rng.index(3) as u64
        } else {
            rng.index(1000) as u64
        };
        out.push(Doc {
            terms,
            action,
            values: [time, any],
        });
    }
    out
}

fn build(docs: &[Doc]) -> Vec<u8> {
    let mut b = SegmentBuilder::new(&KINDS);
    for d in docs {
        b.add_doc().unwrap();
        for (f, t) in &d.terms {
            let n = b.add_term(*f, t);
            if *f == 0 {
                b.set(1, n);
            }
        }
        b.set(0, d.values[0]);
        b.set(2, d.values[1]);
    }
    assert_eq!(b.docs() as usize, docs.len());
    b.finish(Vec::new()).unwrap()
}

/// Every property the segment must have for these documents.
fn check(segment: &Segment, docs: &[Doc]) {
    assert_eq!(segment.docs() as usize, docs.len());
    let mut want: BTreeMap<(u8, Vec<u8>), BTreeSet<u32>> = BTreeMap::new();
    for (i, d) in docs.iter().enumerate() {
        for (f, t) in &d.terms {
            want.entry((*f, t.clone())).or_default().insert(i as u32);
        }
    }
    assert_eq!(segment.terms() as usize, want.len());
    for ((f, t), list) in &want {
        let id = segment
            .find(*f, t)
            .unwrap_or_else(|| panic!("field {f} term {t:?} not found"));
        assert_eq!(segment.term_bytes(id), t.as_slice());
        assert!(segment.field_terms(*f).contains(&id));
        let postings = segment.postings(id);
        let list: Vec<u32> = list.iter().copied().collect();
        assert_eq!(postings.iter().collect::<Vec<_>>(), list, "field {f} term {t:?}");
        assert_eq!(postings.len() as usize, list.len());
        // Block by block, newest block first, as a page reads them.
        let mut backwards = Vec::new();
        for b in (0..postings.blocks()).rev() {
            let mut block = Vec::new();
            postings.block(b, &mut block);
            assert!(block.len() <= BLOCK as usize);
            if let Some(base) = postings.block_base(b) {
                assert!(block.iter().all(|&d| d > base));
            }
            backwards.extend(block.into_iter().rev());
        }
        backwards.reverse();
        assert_eq!(backwards, list);
        for target in [
            0,
            list[0],
            list[list.len() / 2],
            list[list.len() - 1],
            list[list.len() - 1] + 1,
        ] {
            let b = postings.seek_block(target);
            let mut block = Vec::new();
            postings.block(b, &mut block);
            // The first document >= target is in the block found.
            if let Some(&d) = list.iter().find(|&&d| d >= target) {
                assert!(block.contains(&d), "seek {target} gave block {b}: {block:?}");
            }
        }
    }
    // Absent: near misses, other fields, a field never used.
    for ((f, t), _) in want.iter().take(200) {
        let mut near = t.clone();
        near.push(b'x');
        if !want.contains_key(&(*f, near.clone())) {
            assert_eq!(segment.find(*f, &near), None);
        }
        for other in [0u8, 1, 2, 3, 4, 9] {
            if !want.contains_key(&(other, t.clone())) {
                assert_eq!(segment.find(other, t), None, "field {other} term {t:?}");
            }
        }
    }
    // The dictionary: each field's terms, in (hash, bytes) order.
    for f in FIELDS {
        let got: Vec<Vec<u8>> = segment
            .field_terms(f)
            .map(|id| segment.term_bytes(id).to_vec())
            .collect();
        let mut expected: Vec<Vec<u8>> = want.keys().filter(|(g, _)| *g == f).map(|(_, t)| t.clone()).collect();
        expected.sort_by_key(|t| (term_hash(t), t.clone()));
        assert_eq!(got, expected, "field {f}");
    }
    assert!(segment.field_terms(3).is_empty());
    // Columns.
    let (times, actions, any) = (
        segment.column(0).unwrap(),
        segment.column(1).unwrap(),
        segment.column(2).unwrap(),
    );
    assert!(segment.column(3).is_none());
    let actions_start = segment.field_terms(0).start;
    for (i, d) in docs.iter().enumerate() {
        let i = i as u32;
        assert_eq!(times.get(i), Some(d.values[0]));
        assert_eq!(any.get(i), Some(d.values[1]));
        let action = actions.get(i).unwrap();
        match &d.action {
            None => assert_eq!(action, NONE),
            Some(a) => assert_eq!(segment.term_bytes(actions_start + action as u32), a.as_slice()),
        }
    }
    assert_eq!(times.get(docs.len() as u32), None);
    for b in 0..times.blocks() {
        let mut values = Vec::new();
        any.block(b, &mut values);
        let range = (b * BLOCK) as usize..((b + 1) * BLOCK).min(docs.len() as u32) as usize;
        let want: Vec<u64> = docs[range].iter().map(|d| d.values[1]).collect();
        assert_eq!(values, want);
        let (min, max) = any.block_range(b).unwrap();
        assert_eq!((min, max), (*want.iter().min().unwrap(), *want.iter().max().unwrap()));
    }
}

#[test]
fn a_built_segment_answers_as_its_documents_do() {
    for (seed, n) in [(1, 1), (2, 127), (3, 128), (4, 129), (5, 3000)] {
        let docs = docs(seed, n);
        let segment = Segment::open(build(&docs)).unwrap();
        check(&segment, &docs);
    }
}

#[test]
fn a_segment_without_documents_or_terms() {
    let segment = Segment::open(SegmentBuilder::new(&KINDS).finish(Vec::new()).unwrap()).unwrap();
    assert_eq!((segment.docs(), segment.terms(), segment.fields()), (0, 0, 0));
    assert_eq!(segment.find(0, b"x"), None);
    assert_eq!(segment.column(0).unwrap().get(0), None);

    let mut b = SegmentBuilder::new(&[]);
    b.add_doc();
    b.add_doc();
    let segment = Segment::open(b.finish(Vec::new()).unwrap()).unwrap();
    assert_eq!((segment.docs(), segment.terms()), (2, 0));
}

#[test]
fn a_merge_equals_one_build_of_all_documents() {
    let all = docs(7, 5000);
    // Uneven parts, one of them empty, one of one document.
    let cuts = [0, 1000, 1000, 1001, 2600, 5000];
    let parts: Vec<Segment> = cuts
        .windows(2)
        .map(|w| Segment::open(build(&all[w[0]..w[1]])).unwrap())
        .collect();
    let refs: Vec<&Segment> = parts.iter().collect();
    let merged = merge(&refs, Vec::new()).unwrap();
    assert!(merged == build(&all), "a merge's bytes differ from one build's");
    check(&Segment::open(merged.clone()).unwrap(), &all);

    // Merging merges: the same bytes again.
    let left = Segment::open(merge(&refs[..3], Vec::new()).unwrap()).unwrap();
    let right = Segment::open(merge(&refs[3..], Vec::new()).unwrap()).unwrap();
    assert!(merge(&[&left, &right], Vec::new()).unwrap() == merged);
}

#[test]
fn a_merge_refuses_parts_with_other_columns() {
    let a = Segment::open(build(&docs(1, 10))).unwrap();
    let b = Segment::open(SegmentBuilder::new(&[ColumnKind::Value]).finish(Vec::new()).unwrap()).unwrap();
    let err = merge(&[&a, &b], Vec::new()).unwrap_err();
    assert!(err.to_string().contains("segment 1"), "{err}");
    assert!(merge::<Vec<u8>, _>(&[], Vec::new()).is_err());
}

#[test]
fn damaged_bytes_are_refused_or_read_without_panic() {
    let docs = docs(11, 300);
    let good = build(&docs);
    // Every truncation: refused (the trailer moved) or, if it parses,
    // readable without a panic.
    for len in 0..good.len() {
        if let Ok(s) = Segment::open(&good[..len]) {
            read_everything(&s);
        }
    }
    assert!(matches!(
        Segment::open(&good[..10]),
        Err(sealtrail_segment::FormatError::TooShort(10))
    ));
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(Segment::open(bad).err(), Some(sealtrail_segment::FormatError::BadMagic));
    // Every single flipped byte: never a panic.
    let mut rng = Rng::new(5);
    for _ in 0..3000 {
        let mut bad = good.clone();
        let at = rng.index(bad.len());
        bad[at] ^= 1 << rng.index(8);
        if let Ok(s) = Segment::open(bad) {
            read_everything(&s);
        }
    }
}

fn read_everything<B: AsRef<[u8]>>(s: &Segment<B>) {
    for f in 0..6u8 {
        for id in s.field_terms(f) {
            let t = s.term_bytes(id).to_vec();
            let _ = s.find(f, &t);
            let p = s.postings(id);
            let _ = p.iter().count();
            let mut block = Vec::new();
            for b in 0..p.blocks().min(100) {
                p.block(b, &mut block);
            }
            let _ = p.seek_block(7);
        }
    }
    for c in 0..4 {
        if let Some(col) = s.column(c) {
            let mut values = Vec::new();
            for b in 0..col.blocks() {
                col.block(b, &mut values);
                let _ = col.block_range(b);
            }
            for d in 0..s.docs().min(1000) {
                let _ = col.get(d);
            }
        }
    }
}
