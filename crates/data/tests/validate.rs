//! Validation rules against generated tables whose faults are planted on
//! purpose: the expected violations are the planted faults, listed by the
//! generator, not computed by the code under test.

use std::collections::BTreeMap;
use std::io::Write as _;

use sealtrail_data::source::{CsvOptions, CsvSource, MemorySource};
use sealtrail_data::validate::{check, Rules, Violation};
use sealtrail_data::{DataError, Source};

const RULES: &str = r#"
reference_date = "2026-06-30"

[columns.id]
required = true
type = "integer"
unique = true

[columns.amount]
type = "decimal"
range = { min = 0, max = "10000" }

[columns.order_date]
required = true
type = "date"
format = "%d/%m/%Y"
range = { min = "01/01/2020", max = 2030-12-31 }
max_years_past = 5

[columns.ship_date]
type = "date"

[columns.status]
allowed = ["open", "shipped", "cancelled"]

[columns.email]
pattern = '[^@\s]+@[^@\s]+\.[a-z]+'

[columns.paid]
type = "boolean"

[columns.created_at]
type = "timestamp"
max_years_future = 1

[[compare]]
rule = "ship_date >= order_date"
"#;

const COLUMNS: [&str; 8] = [
    "id",
    "amount",
    "order_date",
    "ship_date",
    "status",
    "email",
    "paid",
    "created_at",
];

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Expected violation: line, column, rule, value.
type Expected = (u64, String, String, Option<String>);

/// Generates `n` rows with faults planted at random, and the violations
/// each fault must cause.
fn generate(n: usize, seed: u64) -> (Vec<Vec<Option<String>>>, Vec<Expected>) {
    let mut rng = Rng(seed);
    let mut rows = Vec::new();
    let mut expected = Vec::new();
    // Lines of rows whose id is their original one, for duplicates.
    let mut originals: Vec<(u64, String)> = Vec::new();
    for i in 0..n {
        let line = i as u64 + 2;
        let mut want = |column: &str, rule: &str, value: Option<&str>| {
            expected.push((line, column.to_string(), rule.to_string(), value.map(str::to_string)))
        };
        let id = if !originals.is_empty() && rng.chance(3) {
            let (_, id) = originals[rng.below(originals.len() as u64) as usize].clone();
            want("id", "unique", Some(&id));
            id
        } else if rng.chance(2) {
            let id = format!("x{i}");
            want("id", "type", Some(&id));
            id
        } else {
            let id = (i + 1).to_string();
            originals.push((line, id.clone()));
            id
        };
        let amount = if rng.chance(3) {
            let a = format!("-{}.25", rng.below(100) + 1);
            want("amount", "range", Some(&a));
            a
        } else if rng.chance(2) {
            let a = format!("{},50", rng.below(100));
            want("amount", "type", Some(&a));
            a
        } else if rng.chance(2) {
            // Just past the bound: only an exact comparison sees it.
            let a = "10000.0000000000000000001".to_string();
            want("amount", "range", Some(&a));
            a
        } else {
            format!("{}.{:02}", rng.below(10_000), rng.below(100))
        };
        // Orders from 2022 on; sanity allows back to 2021-06-30.
        let order = jiff::civil::date(2022, 1, 1)
            .checked_add(jiff::Span::new().days(rng.below(1600) as i64))
            .expect("in range");
        let (order_text, order_date) = if rng.chance(3) {
            want("order_date", "required", Some(""));
            (String::new(), None)
        } else if rng.chance(2) {
            let old = jiff::civil::date(2019, 3, 4);
            let t = old.strftime("%d/%m/%Y").to_string();
            want("order_date", "range", Some(&t));
            want("order_date", "date_sanity", Some(&t));
            (t, Some(old))
        } else if rng.chance(2) {
            let old = jiff::civil::date(2020, 5, 17);
            let t = old.strftime("%d/%m/%Y").to_string();
            want("order_date", "date_sanity", Some(&t));
            (t, Some(old))
        } else {
            (order.strftime("%d/%m/%Y").to_string(), Some(order))
        };
        let ship = if rng.chance(3) {
            None
        } else if let (Some(o), true) = (order_date, rng.chance(4)) {
            let s = o.checked_sub(jiff::Span::new().days(3)).expect("in range").to_string();
            want("ship_date", "compare", Some(&s));
            Some(s)
        } else {
            let base = order_date.unwrap_or(order);
            Some(
                base.checked_add(jiff::Span::new().days(rng.below(10) as i64))
                    .expect("in range")
                    .to_string(),
            )
        };
        let status = if rng.chance(3) {
            want("status", "allowed", Some("lost"));
            "lost".to_string()
        } else {
            ["open", "shipped", "cancelled", ""][rng.below(4) as usize].to_string()
        };
        let email = if rng.chance(3) {
            let e = format!("user{i}.example.com");
            want("email", "pattern", Some(&e));
            e
        } else {
            format!("user{i}@example.com")
        };
        let paid = if rng.chance(2) {
            want("paid", "type", Some("maybe"));
            "maybe".to_string()
        } else {
            ["true", "false", "Y", "0"][rng.below(4) as usize].to_string()
        };
        let created = if rng.chance(2) {
            let c = "2031-01-01T00:00:00Z".to_string();
            want("created_at", "date_sanity", Some(&c));
            c
        } else if rng.chance(2) {
            let c = "2026-01-01 10:00".to_string();
            want("created_at", "type", Some(&c));
            c
        } else {
            format!("2026-0{}-1{}T08:30:00+01:00", rng.below(9) + 1, rng.below(9))
        };
        rows.push(vec![
            Some(id),
            Some(amount),
            Some(order_text),
            ship,
            Some(status),
            Some(email),
            Some(paid),
            Some(created),
        ]);
    }
    (rows, expected)
}

fn run(source: &mut dyn Source, rules: &Rules) -> (Vec<Violation>, sealtrail_data::validate::ValidationSummary) {
    let mut found = Vec::new();
    let summary = check(source, rules, &mut |v: &Violation| {
        found.push(v.clone());
        Ok(())
    })
    .expect("check runs");
    (found, summary)
}

fn key(v: &Violation) -> Expected {
    (v.line, v.column.clone(), v.rule.clone(), v.value.clone())
}

fn assert_matches(found: &[Violation], expected: &[Expected]) {
    let mut got: Vec<Expected> = found.iter().map(key).collect();
    let mut want = expected.to_vec();
    got.sort();
    want.sort();
    let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).take(5).collect();
    let extra: Vec<_> = got.iter().filter(|g| !want.contains(g)).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && got.len() == want.len(),
        "missing {missing:?}, unexpected {extra:?}"
    );
}

#[test]
fn planted_faults_are_exactly_the_violations() {
    let rules = Rules::from_toml(RULES, "rules.toml").expect("rules read");
    for seed in [1, 7, 2026] {
        let (rows, expected) = generate(3000, seed);
        let mut source = MemorySource::new("orders.csv", &COLUMNS, rows);
        let (found, summary) = run(&mut source, &rules);
        assert_matches(&found, &expected);

        let mut lines: Vec<u64> = expected.iter().map(|e| e.0).collect();
        lines.dedup();
        let mut by_rule = BTreeMap::new();
        let mut by_column = BTreeMap::new();
        for (_, column, rule, _) in &expected {
            *by_rule.entry(rule.clone()).or_insert(0u64) += 1;
            *by_column.entry(column.clone()).or_insert(0u64) += 1;
        }
        assert_eq!(summary.rows, 3000);
        assert_eq!(summary.violations, expected.len() as u64);
        assert_eq!(summary.rows_with_violations, lines.len() as u64);
        assert_eq!(summary.violations_by_rule, by_rule);
        assert_eq!(summary.violations_by_column, by_column);
        let score = summary.quality_score.expect("rows were read");
        assert!((score - (3000 - lines.len()) as f64 / 3000.0).abs() < 1e-12);
        assert!(score > 0.3 && score < 0.9, "faults were planted: {score}");
        let per_rule: u64 = summary.rules.iter().map(|r| r.violations).sum();
        assert_eq!(per_rule, summary.violations);
    }
}

#[test]
fn duplicates_name_the_first_line_and_rules_their_text() {
    let rules = Rules::from_toml(RULES, "rules.toml").expect("rules read");
    let row = |id: &str, amount: &str| {
        vec![
            Some(id.to_string()),
            Some(amount.to_string()),
            Some("02/03/2024".to_string()),
            None,
            Some("open".to_string()),
            Some("a@b.io".to_string()),
            Some("no".to_string()),
            Some("2026-01-01T00:00:00Z".to_string()),
        ]
    };
    let mut source = MemorySource::new(
        "t.csv",
        &COLUMNS,
        vec![row("1", "5"), row("2", "10000.000"), row("1", "10000.01")],
    );
    let (found, summary) = run(&mut source, &rules);
    // Columns are checked in the rules file's order: id, then amount.
    assert_eq!(
        found,
        vec![
            Violation {
                line: 4,
                column: "id".into(),
                value: Some("1".into()),
                rule: "unique".into(),
                text: "values are unique".into(),
                detail: Some("first seen on line 2".into()),
            },
            Violation {
                line: 4,
                column: "amount".into(),
                value: Some("10000.01".into()),
                rule: "range".into(),
                text: "between 0 and 10000".into(),
                detail: None,
            },
        ]
    );
    let json = serde_json::to_value(&summary).expect("serializable");
    assert_eq!(json["rows"], 3);
    assert_eq!(json["rows_with_violations"], 1);
    assert_eq!(json["violations_by_rule"]["unique"], 1);
    assert_eq!(json["rules"][0]["text"], "a value is required");
    // Stored summaries and violations read back as they were.
    let back: sealtrail_data::validate::ValidationSummary = serde_json::from_value(json).expect("reads back");
    assert_eq!(back, summary);
    let text = serde_json::to_string(&found[1]).expect("serializable");
    assert!(!text.contains("detail"), "{text}");
    assert_eq!(serde_json::from_str::<Violation>(&text).expect("reads back"), found[1]);
}

#[test]
fn csv_input_reports_its_own_lines() {
    let rules = Rules::from_toml(RULES, "rules.toml").expect("rules read");
    let (rows, expected) = generate(500, 99);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("orders.csv");
    let mut file = std::fs::File::create(&path).expect("create");
    writeln!(file, "{}", COLUMNS.join(",")).expect("write");
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .map(|v| {
                let v = v.clone().unwrap_or_default();
                if v.contains(',') {
                    format!("\"{v}\"")
                } else {
                    v
                }
            })
            .collect();
        writeln!(file, "{}", cells.join(",")).expect("write");
    }
    drop(file);
    let mut source = CsvSource::open(&path, CsvOptions::default()).expect("open");
    let (found, _) = run(&mut source, &rules);
    assert_matches(&found, &expected);
}

#[test]
fn unique_memory_is_bounded_by_a_clear_refusal() {
    let rules =
        Rules::from_toml("unique_memory_mib = 1\n[columns.id]\nunique = true\n", "small.toml").expect("rules read");
    // 1 MiB at 64 bytes a value holds 16384 distinct values.
    let rows = (0..20_000).map(|i| vec![Some(i.to_string())]).collect();
    let mut source = MemorySource::new("big.csv", &["id"], rows);
    let err = check(&mut source, &rules, &mut |_| Ok(())).expect_err("over budget");
    assert_eq!(err.input, "big.csv");
    assert_eq!(err.column.as_deref(), Some("id"));
    assert_eq!(err.line, Some(16_384 + 2));
    assert!(err.message.contains("unique_memory_mib"), "{err}");

    // Repeated values cost nothing more.
    let rows = (0..40_000).map(|i| vec![Some((i % 1000).to_string())]).collect();
    let mut source = MemorySource::new("repeats.csv", &["id"], rows);
    let mut duplicates = 0;
    check(&mut source, &rules, &mut |_| {
        duplicates += 1;
        Ok(())
    })
    .expect("within budget");
    assert_eq!(duplicates, 39_000);
}

#[test]
fn a_sink_error_stops_the_check() {
    let rules = Rules::from_toml("[columns.a]\nrequired = true\n", "r.toml").expect("rules read");
    let rows = (0..10).map(|_| vec![None]).collect();
    let mut source = MemorySource::new("in.csv", &["a"], rows);
    let mut seen = 0;
    let err = check(&mut source, &rules, &mut |v| {
        seen += 1;
        Err(DataError::new("out.jsonl", "disk full").at_line(v.line))
    })
    .expect_err("stops");
    assert_eq!((seen, err.input.as_str(), err.line), (1, "out.jsonl", Some(2)));
}

#[test]
fn a_missing_column_names_the_rules_file_and_the_column() {
    let rules = Rules::from_toml(
        "[columns.a]\nrequired = true\n\n[columns.total]\ntype = \"decimal\"\n",
        "r.toml",
    )
    .expect("rules read");
    let mut source = MemorySource::new("in.csv", &["a", "b"], vec![]);
    let err = check(&mut source, &rules, &mut |_| Ok(())).expect_err("no column total");
    assert_eq!(err.input, "r.toml");
    assert_eq!(err.line, Some(4));
    assert_eq!(err.column.as_deref(), Some("total"));
    assert!(err.message.contains("in.csv"), "{err}");

    let mut source = MemorySource::new("dup.csv", &["a", "total", "a"], vec![]);
    let err = check(&mut source, &rules, &mut |_| Ok(())).expect_err("a twice");
    assert_eq!((err.line, err.column.as_deref()), (Some(1), Some("a")));
}

#[test]
fn comparisons_and_date_sanity_follow_the_declared_types() {
    let text = r#"
reference_date = 2026-06-30
[columns.low]
type = "integer"
[columns.high]
type = "decimal"
[columns.at]
type = "timestamp"
max_years_past = 1
max_years_future = 0
[[compare]]
left = "low"
op = "<"
right = "high"
"#;
    let mut rules = Rules::from_toml(text, "r.toml").expect("rules read");
    let rows = vec![
        // 9 < 10 numerically though not as text.
        vec![Some("9"), Some("10.0"), Some("2026-06-30T23:59:59-05:00")],
        vec![Some("10"), Some("10.00"), Some("2025-06-30T00:00:00Z")],
        vec![Some("-1"), Some(""), Some("2025-06-29T23:59:59Z")],
    ];
    let rows: Vec<Vec<Option<String>>> = rows
        .into_iter()
        .map(|r| r.into_iter().map(|v| v.map(str::to_string)).collect())
        .collect();
    let mut source = MemorySource::new("t.csv", &["low", "high", "at"], rows.clone());
    let (found, _) = run(&mut source, &rules);
    let got: Vec<(u64, &str, &str)> = found
        .iter()
        .map(|v| (v.line, v.column.as_str(), v.rule.as_str()))
        .collect();
    // Row 1's instant is 2026-07-01 in UTC, past the reference date.
    assert_eq!(
        got,
        vec![
            (2, "at", "date_sanity"),
            (3, "low", "compare"),
            (4, "at", "date_sanity")
        ]
    );
    assert_eq!(found[1].detail.as_deref(), Some("high is 10.00"));

    rules.set_reference_date(jiff::civil::date(2026, 7, 1));
    let mut source = MemorySource::new("t.csv", &["low", "high", "at"], rows);
    let (found, _) = run(&mut source, &rules);
    let got: Vec<(u64, &str, &str)> = found
        .iter()
        .map(|v| (v.line, v.column.as_str(), v.rule.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (3, "at", "date_sanity"),
            (3, "low", "compare"),
            (4, "at", "date_sanity")
        ]
    );
}

/// Rules text that must be refused, with the line and a part of the
/// message (the field path).
fn refused(text: &str, line: u64, needle: &str) {
    let err = Rules::from_toml(text, "bad.toml").expect_err(text);
    assert_eq!(err.input, "bad.toml", "{err}");
    assert_eq!(err.line, Some(line), "{err}");
    assert!(err.message.contains(needle), "{err} lacks {needle:?}");
}

#[test]
fn bad_rules_are_refused_with_line_and_field_path() {
    refused("[columns.a]\nrequierd = true\n", 2, "columns.a");
    refused("[columns.a]\ntype = \"money\"\n", 2, "columns.a.type");
    refused(
        "[columns.amount]\ntype = \"decimal\"\nrange = { min = \"ten\" }\n",
        3,
        "columns.amount.range.min",
    );
    refused(
        "\n[columns.amount]\ntype = \"decimal\"\nrange = { min = 5, max = 1 }\n",
        4,
        "columns.amount.range",
    );
    refused("[columns.amount]\nrange = { min = 5 }\n", 2, "columns.amount.range");
    refused("[columns.a]\npattern = \"(unclosed\"\n", 2, "columns.a.pattern");
    refused(
        "[columns.a]\ntype = \"date\"\nformat = \"%H:%M\"\n",
        3,
        "columns.a.format",
    );
    refused(
        "[columns.a]\ntype = \"integer\"\nmax_years_past = 3\n",
        3,
        "columns.a.max_years_past",
    );
    refused("[columns.a]\nallowed = []\n", 2, "columns.a.allowed");
    refused("reference_date = \"yesterday\"\n", 1, "reference_date");
    refused("unique_memory_mib = 0\n", 1, "unique_memory_mib");
    refused(
        "[columns.a]\ntype = \"date\"\n[[compare]]\nrule = \"a >= b\"\n",
        3,
        "compare[0]",
    );
    refused(
        "[columns.a]\ntype = \"date\"\n[columns.b]\ntype = \"integer\"\n[[compare]]\nrule = \"a >= b\"\n",
        5,
        "compare[0]",
    );
    refused("[[compare]]\nrule = \"a >= \"\n", 2, "compare[0].rule");
    refused(
        "[[compare]]\nleft = \"a\"\nop = \"=>\"\nright = \"b\"\n",
        3,
        "compare[0].op",
    );
    refused("[columns.a\n", 1, "");
}

#[test]
fn the_documented_example_is_valid() {
    let doc = include_str!("../../../docs/data.md");
    let section = &doc[doc.find("## Validation rules").expect("section")..];
    let start = section.find("```toml\n").expect("example") + "```toml\n".len();
    let end = start + section[start..].find("```").expect("end of example");
    let rules = Rules::from_toml(&section[start..end], "rules.toml").expect("the example reads");
    assert_eq!(rules.reference_date(), jiff::civil::date(2026, 6, 30));
    assert_eq!(rules.unique_memory(), 64 << 20);
    assert_eq!(rules.column_names().count(), 8);
}

#[test]
fn every_comparison_operator_agrees_with_native_ordering() {
    // Decimals with two places, compared natively as integer cents; the
    // left column is an integer (whole units), the right a decimal.
    let mut rng = Rng(42);
    let pairs: Vec<(i64, i64)> = (0..400)
        .map(|_| {
            let a = rng.below(21) as i64 - 10;
            // Often equal, often near.
            let b = if rng.chance(30) {
                a * 100
            } else {
                rng.below(2001) as i64 - 1000
            };
            (a, b)
        })
        .collect();
    let cents = |b: i64| {
        let sign = if b < 0 { "-" } else { "" };
        format!("{sign}{}.{:02}", b.abs() / 100, b.abs() % 100)
    };
    type Holds = fn(i64, i64) -> bool;
    let ops: [(&str, Holds); 6] = [
        ("<", |x, y| x < y),
        ("<=", |x, y| x <= y),
        (">", |x, y| x > y),
        (">=", |x, y| x >= y),
        ("==", |x, y| x == y),
        ("!=", |x, y| x != y),
    ];
    for (op, holds) in ops {
        let text = format!(
            "[columns.units]\ntype = \"integer\"\n[columns.price]\ntype = \"decimal\"\n[[compare]]\nrule = \"units {op} price\"\n"
        );
        let rules = Rules::from_toml(&text, "r.toml").expect("rules read");
        let rows = pairs
            .iter()
            .map(|&(a, b)| vec![Some(a.to_string()), Some(cents(b))])
            .collect();
        let mut source = MemorySource::new("t.csv", &["units", "price"], rows);
        let (found, _) = run(&mut source, &rules);
        let got: Vec<u64> = found.iter().map(|v| v.line).collect();
        let want: Vec<u64> = pairs
            .iter()
            .enumerate()
            .filter(|(_, &(a, b))| !holds(a * 100, b))
            .map(|(i, _)| i as u64 + 2)
            .collect();
        assert_eq!(got, want, "units {op} price");
        assert!(
            !want.is_empty() && want.len() < pairs.len(),
            "both outcomes occur for {op}"
        );
    }
}
