//! The keyed diff against answers recorded by a table generator: seeded
//! random tables with known added, removed and changed rows, duplicated
//! keys and schema changes, in shuffled row order; the spill path against
//! the memory path; CSV quoting.

use std::collections::{BTreeMap, BTreeSet};

use sealtrail_data::diff::{diff, DiffOptions, DiffSummary};
use sealtrail_data::source::{CsvOptions, CsvSource, MemorySource};
use sealtrail_data::{Change, ChangeKind, DataError};

type Rows = Vec<Vec<Option<String>>>;

/// What the generator made, and what a diff must find.
struct Case {
    left_columns: Vec<&'static str>,
    right_columns: Vec<&'static str>,
    left: Rows,
    right: Rows,
    added: BTreeSet<String>,
    removed: BTreeSet<String>,
    /// id → column → (old, new)
    changed: BTreeMap<String, BTreeMap<String, (String, String)>>,
    /// id → (left rows, right rows)
    duplicates: BTreeMap<String, (u64, u64)>,
    unchanged: u64,
}

fn word(rng: &mut fastrand::Rng) -> String {
    let n = rng.usize(1..12);
    (0..n).map(|_| rng.alphanumeric()).collect()
}

/// Left: id, name, amount, city, note. Right: id, town (city renamed),
/// name, amount, flag (added); note removed; so also reordered.
fn generate(seed: u64, rows: usize) -> Case {
    let mut rng = fastrand::Rng::with_seed(seed);
    let left_columns = vec!["id", "name", "amount", "city", "note"];
    let right_columns = vec!["id", "town", "name", "amount", "flag"];
    let mut case = Case {
        left_columns,
        right_columns,
        left: Vec::new(),
        right: Vec::new(),
        added: BTreeSet::new(),
        removed: BTreeSet::new(),
        changed: BTreeMap::new(),
        duplicates: BTreeMap::new(),
        unchanged: 0,
    };
    let s = |v: &str| Some(v.to_string());
    for i in 0..rows {
        let id = format!("k{i:07}");
        let name = word(&mut rng);
        let amount = format!("{}.{:02}", rng.u32(0..100_000), rng.u32(0..100));
        let city = word(&mut rng);
        let note = word(&mut rng);
        let flag = if rng.bool() { "y" } else { "n" };
        let left = vec![s(&id), s(&name), s(&amount), s(&city), s(&note)];
        let mut right = vec![s(&id), s(&city), s(&name), s(&amount), s(flag)];
        match rng.u32(0..100) {
            0..=2 => {
                case.removed.insert(id);
                case.left.push(left);
            }
            3..=5 => {
                case.added.insert(id);
                case.right.push(right);
            }
            6..=11 => {
                let mut fields = BTreeMap::new();
                // At least one of name, amount, town changes.
                let which = rng.u32(1..8);
                if which & 1 != 0 {
                    let new = format!("{name}~");
                    fields.insert("name".to_string(), (name.clone(), new.clone()));
                    right[2] = s(&new);
                }
                if which & 2 != 0 {
                    let new = format!("{}.5", rng.u32(100_000..200_000));
                    fields.insert("amount".to_string(), (amount.clone(), new.clone()));
                    right[3] = s(&new);
                }
                if which & 4 != 0 {
                    let new = format!("{city}!");
                    fields.insert("town".to_string(), (city.clone(), new.clone()));
                    right[1] = s(&new);
                }
                // The note is gone and the flag new: neither is compared.
                case.changed.insert(id, fields);
                case.left.push(left);
                case.right.push(right);
            }
            12 => {
                let (l, r) = (rng.u64(1..4), rng.u64(1..4));
                let (l, r) = if l == 1 && r == 1 { (2, 1) } else { (l, r) };
                for _ in 0..l {
                    case.left.push(left.clone());
                }
                for _ in 0..r {
                    case.right.push(right.clone());
                }
                case.duplicates.insert(id, (l, r));
            }
            _ => {
                case.unchanged += 1;
                case.left.push(left);
                case.right.push(right);
            }
        }
    }
    rng.shuffle(&mut case.left);
    rng.shuffle(&mut case.right);
    case
}

fn options() -> DiffOptions {
    DiffOptions {
        rename: vec![("city".into(), "town".into())],
        ..DiffOptions::with_key(&["id"])
    }
}

fn run(case: &Case, options: &DiffOptions) -> (DiffSummary, Vec<Change>) {
    let mut left = MemorySource::new("left", &case.left_columns, case.left.clone());
    let mut right = MemorySource::new("right", &case.right_columns, case.right.clone());
    let mut changes = Vec::new();
    let mut sink = |c: &Change| -> Result<(), DataError> {
        changes.push(c.clone());
        Ok(())
    };
    let summary = diff(&mut left, &mut right, options, &mut sink).expect("diff");
    (summary, changes)
}

fn key(c: &Change) -> String {
    c.key[0].clone().expect("key")
}

fn check(case: &Case, summary: &DiffSummary, changes: &[Change]) {
    let of = |kind| {
        changes
            .iter()
            .filter(|c| c.kind == kind)
            .map(key)
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(of(ChangeKind::Added), case.added);
    assert_eq!(of(ChangeKind::Removed), case.removed);
    let changed: BTreeMap<String, BTreeMap<String, (String, String)>> = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Changed)
        .map(|c| {
            let fields = c
                .fields
                .iter()
                .map(|f| {
                    let old = f.old.clone().expect("old");
                    (f.column.clone(), (old, f.new.clone().expect("new")))
                })
                .collect();
            (key(c), fields)
        })
        .collect();
    assert_eq!(changed, case.changed);
    let dups: BTreeMap<String, (u64, u64)> = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Duplicate)
        .map(|c| {
            let d = c.duplicate.as_ref().expect("duplicate");
            (key(c), (d.left_rows, d.right_rows))
        })
        .collect();
    assert_eq!(dups, case.duplicates);
    assert_eq!(summary.left_rows, case.left.len() as u64);
    assert_eq!(summary.right_rows, case.right.len() as u64);
    assert_eq!(summary.added, case.added.len() as u64);
    assert_eq!(summary.removed, case.removed.len() as u64);
    assert_eq!(summary.changed, case.changed.len() as u64);
    assert_eq!(summary.unchanged, case.unchanged);
    let dup_keys = |f: fn(&(u64, u64)) -> u64| case.duplicates.values().filter(|d| f(d) > 1).count() as u64;
    let dup_rows = |f: fn(&(u64, u64)) -> u64| case.duplicates.values().map(f).filter(|&n| n > 1).sum::<u64>();
    assert_eq!(summary.left_duplicate_keys, dup_keys(|d| d.0));
    assert_eq!(summary.right_duplicate_keys, dup_keys(|d| d.1));
    assert_eq!(summary.left_duplicate_rows, dup_rows(|d| d.0));
    assert_eq!(summary.right_duplicate_rows, dup_rows(|d| d.1));
    assert_eq!(
        summary.left_excluded_rows,
        case.duplicates.values().map(|d| d.0).sum::<u64>()
    );
    let mut fields = BTreeMap::new();
    for f in case.changed.values().flat_map(|m| m.keys()) {
        *fields.entry(f.clone()).or_insert(0u64) += 1;
    }
    assert_eq!(summary.changed_fields, fields);
    assert_eq!(summary.schema.columns_added, ["flag"]);
    assert_eq!(summary.schema.columns_removed, ["note"]);
    assert!(summary.schema.columns_reordered);
    assert_eq!(summary.schema.left_order, ["id", "name", "amount", "town"]);
    assert_eq!(summary.schema.right_order, ["id", "town", "name", "amount"]);
    assert_eq!(summary.compared_columns, ["name", "amount", "town"]);
    assert_eq!(summary.duplicate_samples.len(), case.duplicates.len().min(10));
}

#[test]
fn finds_what_the_generator_made_in_memory() {
    for seed in 1..=5 {
        let case = generate(seed, 3_000);
        let (summary, changes) = run(&case, &options());
        assert!(!summary.spilled);
        check(&case, &summary, &changes);
    }
}

#[test]
fn spilling_gives_the_same_answer_in_the_same_order() {
    let case = generate(42, 40_000);
    let (memory, in_memory) = run(&case, &options());
    assert!(!memory.spilled);
    check(&case, &memory, &in_memory);
    // A budget far below the inputs: partitions, and partitions split again.
    let tiny = DiffOptions {
        memory_budget: 1,
        ..options()
    };
    let (spilled, on_disk) = run(&case, &tiny);
    assert!(spilled.spilled);
    assert_eq!(spilled.spilled_partitions, 64);
    assert_eq!(
        DiffSummary {
            spilled: false,
            spilled_partitions: 0,
            ..spilled.clone()
        },
        memory
    );
    assert_eq!(on_disk, in_memory);
    // A budget that holds part of the inputs: the low partitions stay in
    // memory, the high ones go to files (40 MiB of any budget is kept for
    // buffers).
    let part = DiffOptions {
        memory_budget: (40 << 20) + (3 << 20),
        ..options()
    };
    let (partly, mixed) = run(&case, &part);
    assert!(partly.spilled);
    assert!(
        (1..64).contains(&partly.spilled_partitions),
        "{}",
        partly.spilled_partitions
    );
    assert_eq!(
        DiffSummary {
            spilled: false,
            spilled_partitions: 0,
            ..partly.clone()
        },
        memory
    );
    assert_eq!(mixed, in_memory);
}

#[test]
fn order_is_the_same_whatever_the_row_order() {
    let case = generate(7, 2_000);
    let (_, first) = run(&case, &options());
    let mut shuffled = generate(7, 2_000);
    let mut rng = fastrand::Rng::with_seed(99);
    rng.shuffle(&mut shuffled.left);
    rng.shuffle(&mut shuffled.right);
    let (_, second) = run(&shuffled, &options());
    let strip = |cs: Vec<Change>| -> Vec<(ChangeKind, Vec<Option<String>>)> {
        cs.into_iter().map(|c| (c.kind, c.key)).collect()
    };
    assert_eq!(strip(first), strip(second));
}

#[test]
fn one_key_on_more_rows_than_the_budget_holds_is_a_duplicate() {
    let row = |i: usize| vec![Some("same".to_string()), Some(format!("{i:0200}"))];
    let left: Rows = (0..3_000).map(row).collect();
    let right: Rows = (0..2)
        .map(row)
        .chain([vec![Some("other".into()), Some("x".into())]])
        .collect();
    let mut l = MemorySource::new("l", &["id", "v"], left);
    let mut r = MemorySource::new("r", &["id", "v"], right);
    let mut changes = Vec::new();
    let opts = DiffOptions {
        memory_budget: 1,
        ..DiffOptions::with_key(&["id"])
    };
    let summary = diff(&mut l, &mut r, &opts, &mut |c: &Change| -> Result<(), DataError> {
        changes.push(c.clone());
        Ok(())
    })
    .expect("diff");
    assert!(summary.spilled);
    assert_eq!((summary.left_duplicate_keys, summary.left_duplicate_rows), (1, 3_000));
    assert_eq!((summary.right_duplicate_keys, summary.right_duplicate_rows), (1, 2));
    assert_eq!(summary.added, 1);
    let dup = changes
        .iter()
        .find(|c| c.kind == ChangeKind::Duplicate)
        .expect("duplicate");
    let d = dup.duplicate.as_ref().expect("counts");
    assert_eq!(d.left_lines, (2..12).collect::<Vec<u64>>());
    assert_eq!(d.right_lines, [2, 3]);
}

fn rows(v: &[&[&str]]) -> Rows {
    v.iter()
        .map(|r| r.iter().map(|s| Some(s.to_string())).collect())
        .collect()
}

#[test]
fn folding_tolerance_and_ignored_columns() {
    let left = rows(&[&["1", "Alice", " a  b ", "1.00", "x"], &["2", "Bob", "c", "2", "y"]]);
    let right = rows(&[&["1", "ALICE", "a b", "1.004", "z"], &["2", "bob", "c", "2.1", "y"]]);
    let cols = ["id", "name", "text", "n", "skip"];
    let opts = DiffOptions {
        case_insensitive: vec!["name".into()],
        whitespace_insensitive: vec!["text".into()],
        numeric_tolerance: Some(0.01),
        ignore: vec!["skip".into()],
        ..DiffOptions::with_key(&["id"])
    };
    let mut changes = Vec::new();
    let summary = diff(
        &mut MemorySource::new("l", &cols, left),
        &mut MemorySource::new("r", &cols, right),
        &opts,
        &mut |c: &Change| -> Result<(), DataError> {
            changes.push(c.clone());
            Ok(())
        },
    )
    .expect("diff");
    assert_eq!((summary.unchanged, summary.changed), (1, 1));
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].key, [Some("2".to_string())]);
    assert_eq!(changes[0].fields.len(), 1);
    assert_eq!(changes[0].fields[0].column, "n");
}

#[test]
fn case_insensitive_key_and_composite_key() {
    let left = rows(&[&["A", "1", "x"], &["b", "2", "y"]]);
    let right = rows(&[&["a", "1", "x"], &["B", "3", "y"]]);
    let cols = ["k1", "k2", "v"];
    let opts = DiffOptions {
        case_insensitive: vec!["k1".into()],
        ..DiffOptions::with_key(&["k1", "k2"])
    };
    let mut kinds = Vec::new();
    let summary = diff(
        &mut MemorySource::new("l", &cols, left),
        &mut MemorySource::new("r", &cols, right),
        &opts,
        &mut |c: &Change| -> Result<(), DataError> {
            kinds.push((c.kind, c.key.clone()));
            Ok(())
        },
    )
    .expect("diff");
    assert_eq!((summary.unchanged, summary.added, summary.removed), (1, 1, 1));
}

#[test]
fn missing_columns_are_refused_by_name() {
    let cols = ["id", "v"];
    let other = ["ident", "v"];
    let none = |_: &Change| -> Result<(), DataError> { Ok(()) };
    let err = diff(
        &mut MemorySource::new("left.csv", &cols, vec![]),
        &mut MemorySource::new("right.csv", &other, vec![]),
        &DiffOptions::with_key(&["id"]),
        &mut { none },
    )
    .expect_err("no key on the right");
    assert_eq!((err.input.as_str(), err.column.as_deref()), ("right.csv", Some("id")));
    let err = diff(
        &mut MemorySource::new("left.csv", &other, vec![]),
        &mut MemorySource::new("right.csv", &cols, vec![]),
        &DiffOptions::with_key(&["id"]),
        &mut { none },
    )
    .expect_err("no key on the left");
    assert_eq!((err.input.as_str(), err.column.as_deref()), ("left.csv", Some("id")));
    let err = diff(
        &mut MemorySource::new("left.csv", &cols, vec![]),
        &mut MemorySource::new("right.csv", &cols, vec![]),
        &DiffOptions {
            rename: vec![("nope".into(), "v".into())],
            ..DiffOptions::with_key(&["id"])
        },
        &mut { none },
    )
    .expect_err("no such column to rename");
    assert_eq!((err.input.as_str(), err.column.as_deref()), ("left.csv", Some("nope")));
}

#[test]
fn source_errors_pass_through_with_their_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (l, r) = (dir.path().join("l.csv"), dir.path().join("r.csv"));
    std::fs::write(&l, "id,v\n1,a\n2,b,c\n").expect("write");
    std::fs::write(&r, "id,v\n1,a\n").expect("write");
    let mut left = CsvSource::open(&l, CsvOptions::default()).expect("open");
    let mut right = CsvSource::open(&r, CsvOptions::default()).expect("open");
    let err = diff(
        &mut left,
        &mut right,
        &DiffOptions::with_key(&["id"]),
        &mut |_: &Change| Ok(()),
    )
    .expect_err("ragged row");
    assert_eq!(err.line, Some(3));
    assert!(err.input.ends_with("l.csv"), "{err}");
}

#[test]
fn csv_quoting_newlines_and_unicode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (l, r) = (dir.path().join("l.csv"), dir.path().join("r.csv"));
    std::fs::write(
        &l,
        "id,text\n\"a,1\",\"say \"\"hi\"\"\"\n\"b\nc\",\"two\nlines\"\né,\"\"\nsame,\"x\"\n",
    )
    .expect("write");
    std::fs::write(
        &r,
        "text,id\nx,same\n\"say \"\"hi!\"\"\",\"a,1\"\n\"two\r\nlines\",\"b\nc\"\n ,é\n",
    )
    .expect("write");
    let mut left = CsvSource::open(&l, CsvOptions::default()).expect("open");
    let mut right = CsvSource::open(&r, CsvOptions::default()).expect("open");
    let mut changes = Vec::new();
    let summary = diff(
        &mut left,
        &mut right,
        &DiffOptions::with_key(&["id"]),
        &mut |c: &Change| {
            changes.push(c.clone());
            Ok(())
        },
    )
    .expect("diff");
    assert_eq!((summary.changed, summary.unchanged), (3, 1));
    assert!(summary.schema.columns_reordered);
    type Seen = (Option<String>, Option<String>, Option<u64>);
    let by_key: BTreeMap<String, Seen> = changes
        .iter()
        .map(|c| {
            let f = &c.fields[0];
            (key(c), (f.old.clone(), f.new.clone(), c.left_line))
        })
        .collect();
    assert_eq!(
        by_key["a,1"],
        (Some("say \"hi\"".into()), Some("say \"hi!\"".into()), Some(2))
    );
    assert_eq!(
        by_key["b\nc"],
        (Some("two\nlines".into()), Some("two\r\nlines".into()), Some(3))
    );
    assert_eq!(by_key["é"], (Some(String::new()), Some(" ".into()), Some(6)));
}

#[test]
fn same_columns_same_order_compare_whole_rows_then_fields() {
    let row = |i: usize, v: &str| vec![Some(format!("{i}")), Some(v.to_string()), None];
    let left: Rows = (0..1000).map(|i| row(i, "same")).collect();
    let mut right: Rows = (0..1000).rev().map(|i| row(i, "same")).collect();
    right[10][1] = Some("other".into());
    right[20][2] = Some(String::new());
    let cols = ["id", "v", "w"];
    let mut changes = Vec::new();
    let summary = diff(
        &mut MemorySource::new("l", &cols, left),
        &mut MemorySource::new("r", &cols, right),
        &DiffOptions::with_key(&["id"]),
        &mut |c: &Change| -> Result<(), DataError> {
            changes.push(c.clone());
            Ok(())
        },
    )
    .expect("diff");
    assert_eq!((summary.unchanged, summary.changed), (998, 2));
    let mut got: Vec<(String, String, Option<String>, Option<String>)> = changes
        .iter()
        .map(|c| {
            let f = &c.fields[0];
            (key(c), f.column.clone(), f.old.clone(), f.new.clone())
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("979".into(), "w".into(), None, Some(String::new())),
            ("989".into(), "v".into(), Some("same".into()), Some("other".into())),
        ]
    );
}

#[test]
fn empty_inputs_and_null_keys() {
    let cols = ["id", "v"];
    let run2 = |l: Rows, r: Rows| {
        let mut changes = Vec::new();
        let s = diff(
            &mut MemorySource::new("l", &cols, l),
            &mut MemorySource::new("r", &cols, r),
            &DiffOptions::with_key(&["id"]),
            &mut |c: &Change| -> Result<(), DataError> {
                changes.push(c.clone());
                Ok(())
            },
        )
        .expect("diff");
        (s, changes)
    };
    let (s, changes) = run2(vec![], vec![]);
    assert_eq!((s.left_rows, s.right_rows, changes.len()), (0, 0, 0));
    let (s, changes) = run2(vec![], rows(&[&["1", "a"]]));
    assert_eq!((s.added, changes.len()), (1, 1));
    // A null key and an empty one are different keys.
    let null = vec![vec![None, Some("x".to_string())]];
    let (s, changes) = run2(null, rows(&[&["", "x"]]));
    assert_eq!((s.added, s.removed, s.unchanged), (1, 1, 0));
    let removed = changes.iter().find(|c| c.kind == ChangeKind::Removed).expect("removed");
    assert_eq!(removed.key, [None]);
}
