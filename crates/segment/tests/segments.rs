//! Segments built from random documents, checked against answers computed
//! here from the documents themselves: every posting list, every lookup
//! (present, absent, near misses, other fields), the dictionary order,
//! every column value and block summary; merges against a single build of
//! the same documents; and damaged bytes refused or read without a panic.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use sealtrail_segment::{
    merge, merge_dropping, reseal, term_hash, ColumnKind, FormatError, Segment, SegmentBuilder, BLOCK, NONE,
};
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
            .unwrap()
            .unwrap_or_else(|| panic!("field {f} term {t:?} not found"));
        assert_eq!(segment.term_bytes(id).unwrap(), t.as_slice());
        assert!(segment.field_terms(*f).contains(&id));
        let postings = segment.postings(id).unwrap();
        let list: Vec<u32> = list.iter().copied().collect();
        assert_eq!(
            postings.iter().collect::<Result<Vec<_>, _>>().unwrap(),
            list,
            "field {f} term {t:?}"
        );
        assert_eq!(postings.len() as usize, list.len());
        // Block by block, newest block first, as a page reads them.
        let mut backwards = Vec::new();
        for b in (0..postings.blocks()).rev() {
            let mut block = Vec::new();
            postings.block(b, &mut block).unwrap();
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
            postings.block(b, &mut block).unwrap();
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
            assert_eq!(segment.find(*f, &near), Ok(None));
        }
        for other in [0u8, 1, 2, 3, 4, 9] {
            if !want.contains_key(&(other, t.clone())) {
                assert_eq!(segment.find(other, t), Ok(None), "field {other} term {t:?}");
            }
        }
    }
    // The dictionary: each field's terms, in (hash, bytes) order.
    for f in FIELDS {
        let got: Vec<Vec<u8>> = segment
            .field_terms(f)
            .map(|id| segment.term_bytes(id).unwrap().to_vec())
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
        assert_eq!(times.get(i), Ok(Some(d.values[0])));
        assert_eq!(any.get(i), Ok(Some(d.values[1])));
        let action = actions.get(i).unwrap().unwrap();
        match &d.action {
            None => assert_eq!(action, NONE),
            Some(a) => assert_eq!(segment.term_bytes(actions_start + action as u32).unwrap(), a.as_slice()),
        }
    }
    assert_eq!(times.get(docs.len() as u32), Ok(None));
    for b in 0..times.blocks() {
        let mut values = Vec::new();
        any.block(b, &mut values).unwrap();
        let range = (b * BLOCK) as usize..((b + 1) * BLOCK).min(docs.len() as u32) as usize;
        let want: Vec<u64> = docs[range].iter().map(|d| d.values[1]).collect();
        assert_eq!(values, want);
        let (min, max) = any.block_range(b).unwrap().unwrap();
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
    assert_eq!(segment.find(0, b"x"), Ok(None));
    assert_eq!(segment.column(0).unwrap().get(0), Ok(None));

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
fn a_merge_dropping_leading_documents_equals_one_build_of_the_rest() {
    let all = docs(11, 5000);
    let cuts = [0, 1000, 1001, 2600, 5000];
    let parts: Vec<Segment> = cuts
        .windows(2)
        .map(|w| Segment::open(build(&all[w[0]..w[1]])).unwrap())
        .collect();
    let refs: Vec<&Segment> = parts.iter().collect();
    // Dropped: all of part 0 and 1, 700 of part 2, 3 of part 3 (beyond
    // the part is all of it); terms only those documents held go too.
    for drop in [[1000, 1, 700, 3], [0, 0, 0, 0], [2000, 5, 1599, 0]] {
        let kept: Vec<&Doc> = cuts
            .windows(2)
            .zip(drop)
            .flat_map(|(w, d)| all[(w[0] + d).min(w[1])..w[1]].iter())
            .collect();
        let merged = merge_dropping(&refs, &drop.map(|d| d as u32), Vec::new()).unwrap();
        let owned: Vec<Doc> = kept
            .iter()
            .map(|d| Doc {
                terms: d.terms.clone(),
                action: d.action.clone(),
                values: d.values,
            })
            .collect();
        assert!(
            merged == build(&owned),
            "{drop:?}: a merge's bytes differ from one build's"
        );
        check(&Segment::open(merged).unwrap(), &owned);
    }
    // Everything dropped: no document, no term (the index writes no
    // segment then; this one keeps the parts' field table).
    let empty = Segment::open(merge_dropping(&refs, &[1000, 1, 1599, 2400], Vec::new()).unwrap()).unwrap();
    assert_eq!((empty.docs(), empty.terms()), (0, 0));
    assert!(merge_dropping(&refs, &[0, 0], Vec::new()).is_err());
}

#[test]
fn a_merge_refuses_parts_with_other_columns() {
    let a = Segment::open(build(&docs(1, 10))).unwrap();
    let b = Segment::open(SegmentBuilder::new(&[ColumnKind::Value]).finish(Vec::new()).unwrap()).unwrap();
    let err = merge(&[&a, &b], Vec::new()).unwrap_err();
    assert!(err.to_string().contains("segment 1"), "{err}");
    assert!(merge::<Vec<u8>, _>(&[], Vec::new()).is_err());
}

/// Answers by question: (what, which probe or column, which block or
/// document).
type Answers = BTreeMap<(&'static str, u64, u64), Result<Vec<u64>, FormatError>>;

fn wide(v: &[u32]) -> Vec<u64> {
    v.iter().map(|&d| u64::from(d)).collect()
}

/// Every answer a reader can give about a segment, each under the
/// question it answers: a damaged segment may fail any of them, but must
/// not give another answer.
fn answers<B: AsRef<[u8]>>(s: &Segment<B>, probes: &[(u8, Vec<u8>)]) -> Answers {
    let mut out = BTreeMap::new();
    for (q, (f, t)) in (0u64..).zip(probes) {
        let found = s.find(*f, t);
        out.insert(
            ("find", q, 0),
            found.clone().map(|id| id.into_iter().map(u64::from).collect()),
        );
        let Ok(Some(id)) = found else { continue };
        out.insert(
            ("bytes", q, 0),
            s.term_bytes(id).map(|b| b.iter().map(|&x| u64::from(x)).collect()),
        );
        out.insert(("hash", q, 0), s.term_hash_at(id).map(|h| vec![h]));
        let p = match s.postings(id) {
            Err(e) => {
                out.insert(("postings", q, 0), Err(e));
                continue;
            }
            Ok(p) => p,
        };
        let all = p.iter().collect::<Result<Vec<_>, _>>();
        out.insert(("postings", q, 0), all.map(|d| wide(&d)));
        for b in (0..p.blocks()).rev() {
            let mut block = Vec::new();
            let got = p.block(b, &mut block).map(|()| {
                let mut v = wide(&block);
                v.push(p.block_base(b).map_or(u64::MAX, u64::from));
                v
            });
            out.insert(("block", q, u64::from(b)), got);
        }
        for target in [0, 100, 129, 150] {
            let b = p.seek_block(target);
            let mut block = Vec::new();
            let got = p.block(b, &mut block).map(|()| wide(&block));
            out.insert(("seek", q, u64::from(target)), got);
        }
    }
    for f in 0..6u8 {
        let range = s.field_terms(f);
        out.insert(
            ("field", u64::from(f), 0),
            Ok(vec![range.start.into(), range.end.into()]),
        );
        for id in range.step_by(3) {
            let got = s.term_bytes(id).map(|b| b.iter().map(|&x| u64::from(x)).collect());
            out.insert(("term", u64::from(id), 0), got);
        }
    }
    for c in 0..4 {
        let Some(col) = s.column(c) else { continue };
        let c = c as u64;
        for b in 0..col.blocks() {
            let mut values = Vec::new();
            out.insert(
                ("column block", c, b.into()),
                col.block(b, &mut values).map(|()| values),
            );
            let range = col.block_range(b).map(|r| r.map_or(vec![], |(lo, hi)| vec![lo, hi]));
            out.insert(("column range", c, b.into()), range);
        }
        for d in (0..=s.docs()).step_by(11) {
            out.insert(("column doc", c, d.into()), col.get(d).map(|v| v.into_iter().collect()));
        }
    }
    out
}

/// Terms to look up: every fifth term of the documents (with every
/// common one), and some near misses.
fn probes(docs: &[Doc]) -> Vec<(u8, Vec<u8>)> {
    let all: BTreeSet<(u8, Vec<u8>)> = docs.iter().flat_map(|d| d.terms.iter().cloned()).collect();
    let mut some: Vec<(u8, Vec<u8>)> = all
        .iter()
        .enumerate()
        .filter(|(i, (f, _))| i % 5 == 0 || *f == 0 || *f == 4)
        .map(|(_, t)| t.clone())
        .collect();
    let misses: Vec<(u8, Vec<u8>)> = some.iter().take(10).map(|(f, t)| (f + 1, t.clone())).collect();
    some.extend(misses);
    some
}

/// Open `bytes` and compare every answer with the intact segment's.
fn same_answers_or_errors(bytes: &[u8], probes: &[(u8, Vec<u8>)], want: &Answers, what: &str) {
    let Ok(segment) = Segment::open(bytes) else { return };
    for (question, got) in answers(&segment, probes) {
        if let Ok(got) = got {
            let want = want.get(&question).and_then(|w| w.as_ref().ok());
            assert_eq!(Some(&got), want, "{what}: {question:?}");
        }
    }
}

#[test]
fn damage_anywhere_gives_an_error_or_the_right_answer() {
    // Two posting blocks for the common terms, two column blocks, and
    // over one page in the postings section.
    let docs = docs(11, 160);
    let good = build(&docs);
    assert!(good.len() > sealtrail_segment::PAGE, "{} bytes", good.len());
    let probes = probes(&docs);
    let want = answers(&Segment::open(good.as_slice()).unwrap(), &probes);
    assert!(want.values().all(Result::is_ok));
    for len in 0..good.len() {
        assert!(Segment::open(&good[..len]).is_err(), "cut to {len} bytes and opened");
    }
    // One bit of every byte, each bit position in turn.
    for at in 0..good.len() {
        let flip = 1u8 << (at % 8);
        let mut bad = good.clone();
        bad[at] ^= flip;
        same_answers_or_errors(&bad, &probes, &want, &format!("byte {at} ^ {flip:#x}"));
    }
}

#[test]
fn damage_is_named_by_section_and_byte() {
    let good = build(&docs(11, 300));
    let segment = Segment::open(good.as_slice()).unwrap();
    // Open checks the pages of the small sections only (kinds, field
    // starts); reads check what they touch.
    assert_eq!(segment.checked_pages(), 2);
    let term = segment.find(1, b"user-7").unwrap().unwrap();
    assert!(segment.checked_pages() > 2);
    // A byte of the first page of postings: the list reads fail, the
    // dictionary still reads.
    let mut bad = good.clone();
    bad[5] ^= 4;
    let segment = Segment::open(bad.as_slice()).unwrap();
    assert_eq!(segment.find(1, b"user-7"), Ok(Some(term)));
    let e = segment
        .postings(segment.find(0, segment.term_bytes(0).unwrap()).unwrap().unwrap())
        .err()
        .unwrap();
    assert_eq!(
        e,
        FormatError::Checksum {
            section: "postings".into(),
            offset: 0
        }
    );
    assert!(
        e.to_string()
            .contains("postings fails its checksum in the bytes from 0"),
        "{e}"
    );

    // The tail: the page sums, section table and counts.
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 20] ^= 1;
    assert!(matches!(
        Segment::open(bad.as_slice()),
        Err(FormatError::Checksum { section, .. }) if section == "tail"
    ));

    // Another version of the format: refused as such.
    let mut old = good.clone();
    old[n - 8..].copy_from_slice(b"STSEG001");
    let e = Segment::open(old.as_slice()).err().unwrap();
    assert_eq!(
        e,
        FormatError::OtherVersion {
            found: "STSEG001".into()
        }
    );
    assert!(
        e.to_string()
            .contains("\"STSEG001\", where this version reads \"STSEG002\""),
        "{e}"
    );
    old[n - 8..].copy_from_slice(b"NOTASEG!");
    assert_eq!(Segment::open(old.as_slice()).err(), Some(FormatError::BadMagic));
    assert_eq!(Segment::open(&good[..10]).err(), Some(FormatError::TooShort(10)));
    // A trailer alone: no room for the section table.
    let mut trailer = vec![0; 24];
    trailer.extend_from_slice(b"STSEG002");
    assert_eq!(Segment::open(&trailer).err(), Some(FormatError::TooShort(32)));
    assert!(matches!(
        Segment::open(&good[n - 32..]),
        Err(FormatError::BadCount {
            what: "columns",
            value: 3,
            limit: 0
        })
    ));
}

#[test]
fn a_list_that_does_not_ascend_is_refused_past_its_checksum() {
    // One document, then the same document again: checksums resealed, so
    // only the decoder's own checks stand between the bytes and an answer.
    let mut b = SegmentBuilder::new(&[]);
    for _ in 0..3 {
        b.add_doc();
        b.add_term(0, b"a");
    }
    let mut bytes = b.finish(Vec::new()).unwrap();
    // The list: count 3, deltas 0 1 1.
    assert_eq!(&bytes[..4], &[3, 0, 1, 1]);
    bytes[3] = 0;
    reseal(&mut bytes).unwrap();
    let segment = Segment::open(bytes.as_slice()).unwrap();
    let list = segment.postings(0).unwrap();
    let e = list.iter().collect::<Result<Vec<_>, _>>().unwrap_err();
    assert!(
        matches!(&e, FormatError::Damaged { what, offset: 3 } if what.contains("term 0") && what.contains("not ascending")),
        "{e}"
    );
    let mut block = vec![7];
    assert!(list.block(0, &mut block).is_err());
    assert_eq!(block, [7], "a failed block leaves the output as it was");
}

#[test]
fn damaged_bytes_behind_good_checksums_never_panic() {
    let docs = docs(11, 300);
    let good = build(&docs);
    let mut rng = Rng::new(5);
    for _ in 0..800 {
        let mut bad = good.clone();
        for _ in 0..1 + rng.index(3) {
            let at = rng.index(bad.len());
            bad[at] ^= 1 << rng.index(8);
        }
        if reseal(&mut bad).is_ok() {
            if let Ok(s) = Segment::open(bad.as_slice()) {
                read_everything(&s);
            }
        }
    }
}

fn read_everything<B: AsRef<[u8]>>(s: &Segment<B>) {
    for f in 0..6u8 {
        for id in s.field_terms(f) {
            if let Ok(t) = s.term_bytes(id) {
                let _ = s.find(f, t);
            }
            let Ok(p) = s.postings(id) else { continue };
            let _ = p.iter().count();
            let mut block = Vec::new();
            for b in 0..p.blocks().min(100) {
                let _ = p.block(b, &mut block);
            }
            let _ = p.seek_block(7);
        }
    }
    for c in 0..4 {
        if let Some(col) = s.column(c) {
            let mut values = Vec::new();
            for b in 0..col.blocks() {
                let _ = col.block(b, &mut values);
                let _ = col.block_range(b);
            }
            for d in 0..s.docs().min(1000) {
                let _ = col.get(d);
            }
        }
    }
    let _ = merge(&[s, s], Vec::new());
}
