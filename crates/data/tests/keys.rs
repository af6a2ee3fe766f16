//! Key discovery against brute force: every column subset checked by
//! hashing its value tuples, on many small random tables.

use std::collections::{HashMap, HashSet};

use sealtrail_data::keys::{self, CommonKey, KeyOptions, KeyReport, NullEquality};
use sealtrail_data::source::MemorySource;

type Table = Vec<Vec<Option<String>>>;

/// SplitMix64: tables are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c{i}")).collect()
}

/// `copies` in 1000: the chance a row repeats an earlier one.
fn random_table(rng: &mut Rng, rows: usize, cols: usize, copies: u64) -> Table {
    let distinct: Vec<u64> = (0..cols).map(|_| 1 + rng.below(5)).collect();
    let null_rate: Vec<u64> = (0..cols).map(|_| [0, 0, 10, 30][rng.below(4) as usize]).collect();
    let mut table: Table = Vec::new();
    for _ in 0..rows {
        if !table.is_empty() && rng.below(1000) < copies {
            let copy = table[rng.below(table.len() as u64) as usize].clone();
            table.push(copy);
            continue;
        }
        table.push(
            (0..cols)
                .map(|c| {
                    if rng.below(100) < null_rate[c] {
                        None
                    } else {
                        Some(format!("v{}", rng.below(distinct[c])))
                    }
                })
                .collect(),
        );
    }
    table
}

fn run(table: &Table, cols: usize, options: &KeyOptions) -> KeyReport {
    let names = names(cols);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut source = MemorySource::new("t", &refs, table.clone());
    keys::discover(&mut source, options).expect("discovery succeeds")
}

/// Rows whose values on `set` another row shares.
fn duplicate_rows(table: &Table, set: &[usize], nulls: NullEquality) -> u64 {
    let mut seen: HashMap<Vec<Option<&str>>, u64> = HashMap::new();
    for row in table {
        let tuple: Vec<Option<&str>> = set.iter().map(|&c| row[c].as_deref()).collect();
        if nulls == NullEquality::Distinct && tuple.iter().any(Option::is_none) {
            continue;
        }
        *seen.entry(tuple).or_default() += 1;
    }
    seen.values().filter(|&&n| n >= 2).sum()
}

fn subsets(cols: usize, max: usize) -> Vec<Vec<usize>> {
    (1u32..1 << cols)
        .map(|mask| (0..cols).filter(|c| mask & (1 << c) != 0).collect::<Vec<_>>())
        .filter(|s| s.len() <= max)
        .collect()
}

fn without(set: &[usize], i: usize) -> Vec<usize> {
    let mut rest = set.to_vec();
    rest.remove(i);
    rest
}

/// Minimal keys by checking every subset: unique, and no subset with one
/// column fewer unique (the empty set is not a key).
fn brute_keys(table: &Table, cols: usize, max: usize, nulls: NullEquality) -> Vec<Vec<usize>> {
    let unique = |s: &[usize]| !s.is_empty() && duplicate_rows(table, s, nulls) == 0;
    let mut keys: Vec<Vec<usize>> = subsets(cols, max)
        .into_iter()
        .filter(|s| unique(s) && (0..s.len()).all(|i| !unique(&without(s, i))))
        .collect();
    keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    keys
}

fn brute_near(table: &Table, cols: usize, max: usize, nulls: NullEquality, limit: usize) -> Vec<(Vec<usize>, u64)> {
    let rows = table.len() as u64;
    let d = |s: &[usize]| {
        if s.is_empty() {
            rows
        } else {
            duplicate_rows(table, s, nulls)
        }
    };
    let mut found: Vec<(Vec<usize>, u64)> = subsets(cols, max)
        .into_iter()
        .filter(|s| {
            let ds = d(s);
            ds > 0 && (0..s.len()).all(|i| d(&without(s, i)) > ds)
        })
        .map(|s| {
            let ds = d(&s);
            (s, ds)
        })
        .collect();
    found.sort_by(|a, b| (a.1, a.0.len(), &a.0).cmp(&(b.1, b.0.len(), &b.0)));
    found.truncate(limit);
    found
}

fn indices(report: &KeyReport, key: &[String]) -> Vec<usize> {
    key.iter()
        .map(|c| report.columns.iter().position(|n| n == c).expect("known column"))
        .collect()
}

#[test]
fn random_tables_match_brute_force() {
    let mut rng = Rng(7);
    let mut nontrivial = 0;
    for round in 0..600 {
        let cols = 1 + rng.below(7) as usize;
        let rows = rng.below(40) as usize;
        let copies = [0, 0, 5, 50][round / 4 % 4];
        let table = random_table(&mut rng, rows, cols, copies);
        let nulls = if round % 3 == 0 {
            NullEquality::Distinct
        } else {
            NullEquality::Equal
        };
        let max_columns = [None, Some(1), Some(2), Some(3)][round % 4];
        let options = KeyOptions {
            max_columns,
            nulls,
            near: true,
            near_limit: 5,
            ..KeyOptions::default()
        };
        let report = run(&table, cols, &options);
        let max = max_columns.unwrap_or(cols);
        let mut expected = brute_keys(&table, cols, max, nulls);
        if rows <= 1 {
            expected = (0..cols).map(|c| vec![c]).filter(|_| max >= 1).collect();
        }
        let got: Vec<Vec<usize>> = report.keys.iter().map(|k| indices(&report, k)).collect();
        assert_eq!(
            got, expected,
            "round {round}: {rows} rows, {cols} columns, {nulls:?}, max {max_columns:?}\n{table:?}"
        );
        if expected.iter().any(|k| k.len() >= 2) {
            nontrivial += 1;
        }

        let near = report.near.as_ref().expect("near keys asked for");
        let got: Vec<(Vec<usize>, u64)> = near
            .keys
            .iter()
            .map(|k| (indices(&report, &k.columns), k.duplicate_rows))
            .collect();
        let depth = max_columns.unwrap_or(3).min(cols);
        assert_eq!(near.max_columns, depth);
        let expected = if rows < 2 {
            Vec::new()
        } else {
            brute_near(&table, cols, depth, nulls, 5)
        };
        assert_eq!(got, expected, "near keys, round {round}\n{table:?}");

        assert_eq!(report.rows, rows as u64);
        let nullable: Vec<String> = (0..cols)
            .filter(|&c| table.iter().any(|r| r[c].is_none()))
            .map(|c| format!("c{c}"))
            .collect();
        assert_eq!(report.nullable, nullable);
    }
    assert!(nontrivial > 60, "only {nontrivial} tables had keys of several columns");
}

#[test]
fn wider_tables_match_brute_force() {
    let mut rng = Rng(11);
    for round in 0..30 {
        let cols = 8 + rng.below(3) as usize;
        let rows = 50 + rng.below(200) as usize;
        let table = random_table(&mut rng, rows, cols, [0, 2][round % 2]);
        let nulls = if round % 2 == 0 {
            NullEquality::Distinct
        } else {
            NullEquality::Equal
        };
        let options = KeyOptions {
            nulls,
            ..KeyOptions::default()
        };
        let report = run(&table, cols, &options);
        let got: Vec<Vec<usize>> = report.keys.iter().map(|k| indices(&report, k)).collect();
        assert_eq!(got, brute_keys(&table, cols, cols, nulls), "round {round}");
    }
}

fn key_names(report: &KeyReport) -> Vec<Vec<&str>> {
    report
        .keys
        .iter()
        .map(|k| k.iter().map(String::as_str).collect())
        .collect()
}

fn table_of(rows: &[&[&str]]) -> Table {
    rows.iter()
        .map(|r| r.iter().map(|v| (*v != "-").then(|| v.to_string())).collect())
        .collect()
}

#[test]
fn edge_cases() {
    let options = KeyOptions::default();
    // Two equal rows: nothing is unique.
    let t = table_of(&[&["1", "a"], &["2", "b"], &["1", "a"]]);
    assert!(run(&t, 2, &options).keys.is_empty());
    // One row, or none: every column alone is a key.
    let t = table_of(&[&["1", "a", "x"]]);
    assert_eq!(
        key_names(&run(&t, 3, &options)),
        vec![vec!["c0"], vec!["c1"], vec!["c2"]]
    );
    let report = run(&Vec::new(), 2, &options);
    assert_eq!((report.rows, key_names(&report)), (0, vec![vec!["c0"], vec!["c1"]]));
    // A constant column is in no key.
    let t = table_of(&[&["k", "1", "a"], &["k", "2", "a"], &["k", "1", "b"]]);
    assert_eq!(key_names(&run(&t, 3, &options)), vec![vec!["c1", "c2"]]);
    // One column.
    let t = table_of(&[&["1"], &["2"], &["3"]]);
    assert_eq!(key_names(&run(&t, 1, &options)), vec![vec!["c0"]]);
    let t = table_of(&[&["1"], &["2"], &["1"]]);
    assert!(run(&t, 1, &options).keys.is_empty());
    // Nulls: equal to each other, or distinct from everything.
    let t = table_of(&[&["-", "1"], &["-", "1"], &["a", "2"]]);
    assert!(run(&t, 2, &options).keys.is_empty());
    let distinct = KeyOptions {
        nulls: NullEquality::Distinct,
        ..KeyOptions::default()
    };
    assert_eq!(key_names(&run(&t, 2, &distinct)), vec![vec!["c0"]]);
    // A limit of zero columns finds nothing.
    let zero = KeyOptions {
        max_columns: Some(0),
        ..KeyOptions::default()
    };
    assert!(run(&table_of(&[&["1"], &["2"]]), 1, &zero).keys.is_empty());
}

#[test]
fn a_table_over_the_budget_is_refused() {
    let table: Table = (0..20_000)
        .map(|i| vec![Some(format!("row {i}")), Some("x".to_string())])
        .collect();
    let mut source = MemorySource::new("big.csv", &["id", "x"], table);
    let options = KeyOptions {
        memory_budget: 64 << 10,
        ..KeyOptions::default()
    };
    let err = keys::discover(&mut source, &options).expect_err("64 KiB is too little");
    assert_eq!(err.input, "big.csv");
    assert!(err.line.is_some(), "{err}");
    assert!(err.to_string().contains("memory budget"), "{err}");
}

#[test]
fn report_serializes_as_documented() {
    let t = table_of(&[&["1", "a", "-"], &["2", "a", "x"], &["3", "b", "x"]]);
    let report = run(&t, 3, &KeyOptions::default());
    let json = serde_json::to_value(&report).expect("serializes");
    assert_eq!(
        json,
        serde_json::json!({
            "rows": 3,
            "columns": ["c0", "c1", "c2"],
            "keys": [["c0"], ["c1", "c2"]],
            "nulls": "equal",
            "nullable": ["c2"]
        })
    );
    let back: KeyReport = serde_json::from_value(json).expect("reads back");
    assert_eq!(back, report);
    let near = run(
        &t,
        3,
        &KeyOptions {
            near: true,
            ..KeyOptions::default()
        },
    );
    let json = serde_json::to_value(&near).expect("serializes");
    assert_eq!(
        json["near"],
        serde_json::json!({
            "max_columns": 3,
            "keys": [
                {"columns": ["c1"], "duplicate_rows": 2},
                {"columns": ["c2"], "duplicate_rows": 2}
            ]
        })
    );
}

/// Renames and reorders columns of a random table so names, not
/// positions, must match.
fn common_case(rng: &mut Rng) -> (Table, Vec<String>, Table, Vec<String>) {
    let cols = 2 + rng.below(4) as usize;
    let (rows_a, rows_b) = (rng.below(30) as usize, rng.below(30) as usize);
    let a = random_table(rng, rows_a, cols, 20);
    let b = random_table(rng, rows_b, cols, 20);
    let a_names = names(cols);
    let mut b_names = names(cols);
    // b lacks one column of a sometimes, and has one a lacks.
    if rng.below(3) == 0 {
        b_names[0] = "only_b".to_string();
    }
    b_names.reverse();
    let b: Table = b
        .into_iter()
        .map(|mut r| {
            r.reverse();
            r
        })
        .collect();
    (a, a_names, b, b_names)
}

fn discover_named(table: &Table, names: &[String], options: &KeyOptions) -> KeyReport {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut source = MemorySource::new("t", &refs, table.clone());
    keys::discover(&mut source, options).expect("discovery succeeds")
}

#[test]
fn common_keys_match_brute_force() {
    let mut rng = Rng(23);
    for round in 0..300 {
        let (a, a_names, b, b_names) = common_case(&mut rng);
        let max_columns = [None, Some(2)][round % 2];
        let options = KeyOptions {
            max_columns,
            ..KeyOptions::default()
        };
        let ra = discover_named(&a, &a_names, &options);
        let rb = discover_named(&b, &b_names, &options);
        let got = keys::common(&ra, &rb);

        // Brute force over the columns both have, by name.
        let shared: Vec<&String> = a_names.iter().filter(|n| b_names.contains(n)).collect();
        let col_a = |n: &String| a_names.iter().position(|x| x == n).expect("in a");
        let col_b = |n: &String| b_names.iter().position(|x| x == n).expect("in b");
        let unique_in = |t: &Table, set: &[usize]| t.len() <= 1 || duplicate_rows(t, set, NullEquality::Equal) == 0;
        let both = |set: &[&String]| {
            !set.is_empty()
                && unique_in(&a, &set.iter().map(|n| col_a(n)).collect::<Vec<_>>())
                && unique_in(&b, &set.iter().map(|n| col_b(n)).collect::<Vec<_>>())
        };
        let minimal_in = |t: &Table, set: &[usize]| {
            unique_in(t, set) && (0..set.len()).all(|i| set.len() == 1 || !unique_in(t, &without(set, i)))
        };
        let max = max_columns.unwrap_or(usize::MAX);
        let mut expected: Vec<CommonKey> = Vec::new();
        for s in subsets(shared.len(), max) {
            let set: Vec<&String> = s.iter().map(|&i| shared[i]).collect();
            let minimal = both(&set)
                && (0..set.len()).all(|i| {
                    let mut rest = set.clone();
                    rest.remove(i);
                    !both(&rest)
                });
            if !minimal {
                continue;
            }
            let ia: Vec<usize> = set.iter().map(|n| col_a(n)).collect();
            let mut ib: Vec<usize> = set.iter().map(|n| col_b(n)).collect();
            ib.sort_unstable();
            let has_null = ia.iter().any(|&c| a.iter().any(|r| r[c].is_none()))
                || ib.iter().any(|&c| b.iter().any(|r| r[c].is_none()));
            expected.push(CommonKey {
                columns: set.iter().map(|n| n.to_string()).collect(),
                minimal_in_both: minimal_in(&a, &ia) && minimal_in(&b, &ib),
                diffable: !has_null,
            });
        }
        let sort = |keys: &mut Vec<CommonKey>| keys.sort_by(|x, y| x.columns.cmp(&y.columns));
        let mut got_keys = got.keys.clone();
        sort(&mut got_keys);
        sort(&mut expected);
        assert_eq!(
            got_keys, expected,
            "round {round}\na {a_names:?} {a:?}\nb {b_names:?} {b:?}"
        );
        // Best first: diffable, then minimal in both, then fewer columns.
        let order: Vec<_> = got
            .keys
            .iter()
            .map(|k| (!k.diffable, !k.minimal_in_both, k.columns.len()))
            .collect();
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
    }
}

#[test]
fn discovery_is_deterministic() {
    let mut rng = Rng(5);
    let table = random_table(&mut rng, 300, 9, 0);
    let options = KeyOptions::default();
    let first = run(&table, 9, &options);
    let seen: HashSet<Vec<Vec<String>>> = (0..3).map(|_| run(&table, 9, &options).keys).collect();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen.into_iter().next(), Some(first.keys));
}

#[test]
fn reads_a_csv_file_and_names_the_line_of_a_ragged_row() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("orders.csv");
    std::fs::write(&path, "id,region,code\n1,eu,a\n2,eu,b\n3,us,a\n").expect("write");
    let mut source =
        sealtrail_data::source::open(path.to_str().expect("UTF-8 path"), &Default::default()).expect("opens");
    let report = keys::discover(source.as_mut(), &KeyOptions::default()).expect("discovers");
    assert_eq!(key_names(&report), vec![vec!["id"], vec!["region", "code"]]);
    assert!(report.nullable.is_empty(), "a CSV file has no nulls");

    std::fs::write(&path, "id,region\n1,eu\n2\n").expect("write");
    let mut source =
        sealtrail_data::source::open(path.to_str().expect("UTF-8 path"), &Default::default()).expect("opens");
    let err = keys::discover(source.as_mut(), &KeyOptions::default()).expect_err("ragged row");
    assert_eq!(err.line, Some(3), "{err}");
}

#[test]
fn the_documented_example_holds() {
    let t = vec![
        vec![Some("1".to_string()), Some("eu".to_string()), Some("a".to_string())],
        vec![Some("2".to_string()), Some("eu".to_string()), None],
        vec![Some("3".to_string()), Some("us".to_string()), Some("a".to_string())],
    ];
    let mut source = MemorySource::new("t", &["id", "region", "code"], t);
    let options = KeyOptions {
        max_columns: Some(3),
        near: true,
        ..KeyOptions::default()
    };
    let report = keys::discover(&mut source, &options).expect("discovers");
    assert_eq!(
        serde_json::to_value(&report).expect("serializes"),
        serde_json::json!({
            "rows": 3,
            "columns": ["id", "region", "code"],
            "keys": [["id"], ["region", "code"]],
            "nulls": "equal",
            "nullable": ["code"],
            "max_columns": 3,
            "near": {
                "max_columns": 3,
                "keys": [
                    {"columns": ["region"], "duplicate_rows": 2},
                    {"columns": ["code"], "duplicate_rows": 2}
                ]
            }
        })
    );
}
