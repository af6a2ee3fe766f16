//! The diff's writers, read back: JSON and JSON Lines through serde_json,
//! CSV through the csv crate, XLSX through calamine, the table as text.

use std::path::Path;

use calamine::{open_workbook, Data, Reader, Xlsx};
use sealtrail_data::diff::{diff, DiffOptions, DiffSummary};
use sealtrail_data::output::{writer, Format};
use sealtrail_data::source::MemorySource;
use sealtrail_data::{Change, DataError};
use serde_json::{json, Value};

fn rows(v: &[&[&str]]) -> Vec<Vec<Option<String>>> {
    v.iter()
        .map(|r| r.iter().map(|s| Some(s.to_string())).collect())
        .collect()
}

fn sources() -> (MemorySource, MemorySource) {
    // Lines: header 1, rows from 2.
    let left = rows(&[
        &["1", "Ann", "10", "a"],
        &["2", "Bob", "20", "b"],
        &["3", "Cy", "30", "c"],
        &["4", "Dee", "40", "d"],
        &["4", "Dee2", "41", "d"],
    ]);
    let right = rows(&[
        &["2", "20", "Bob", "x"],
        &["1", "11", "Ann \"the\" 1st", "x"],
        &["5", "50", "Eve", "x"],
        &["4", "40", "Dee", "x"],
    ]);
    (
        MemorySource::new("left.csv", &["id", "name", "amount", "note"], left),
        MemorySource::new("right.csv", &["id", "amount", "name", "extra"], right),
    )
}

/// The diff's changes as a plain sink sees them.
fn reference() -> (DiffSummary, Vec<Change>) {
    let (mut l, mut r) = sources();
    let mut changes = Vec::new();
    let summary = diff(
        &mut l,
        &mut r,
        &DiffOptions::with_key(&["id"]),
        &mut |c: &Change| -> Result<(), DataError> {
            changes.push(c.clone());
            Ok(())
        },
    )
    .expect("diff");
    (summary, changes)
}

fn write(format: Format, path: &Path) -> DiffSummary {
    let (mut l, mut r) = sources();
    let file = std::fs::File::create(path).expect("create");
    let mut w = writer(format, Box::new(file), path.parent()).expect("writer");
    let summary = diff(&mut l, &mut r, &DiffOptions::with_key(&["id"]), w.as_sink()).expect("diff");
    w.finish(&summary).expect("finish");
    summary
}

#[test]
fn the_reference_is_what_the_inputs_say() {
    let (s, changes) = reference();
    assert_eq!((s.added, s.removed, s.changed, s.unchanged), (1, 1, 1, 1));
    assert_eq!(
        (s.left_duplicate_keys, s.left_duplicate_rows, s.right_duplicate_keys),
        (1, 2, 0)
    );
    assert_eq!(changes.len(), 4);
    assert_eq!(s.schema.columns_added, ["extra"]);
    assert_eq!(s.schema.columns_removed, ["note"]);
}

#[test]
fn jsonl_is_the_changes_then_the_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("d.jsonl");
    let summary = write(Format::Jsonl, &path);
    let (_, changes) = reference();
    let text = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), changes.len() + 1);
    for (line, change) in lines.iter().zip(&changes) {
        assert_eq!(line, &serde_json::to_value(change).expect("value"));
    }
    assert_eq!(
        lines[changes.len()],
        json!({ "summary": serde_json::to_value(&summary).expect("value") })
    );
    let changed = lines.iter().find(|l| l["kind"] == "changed").expect("changed line");
    assert_eq!(changed["key"], json!(["1"]));
    assert_eq!(
        (changed["left_line"].clone(), changed["right_line"].clone()),
        (json!(2), json!(3))
    );
    let dup = lines.iter().find(|l| l["kind"] == "duplicate").expect("duplicate line");
    assert_eq!(
        dup["duplicate"],
        json!({"left_rows": 2, "right_rows": 1, "left_lines": [5, 6], "right_lines": [5]})
    );
}

#[test]
fn json_is_one_document_with_the_summary_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("d.json");
    let summary = write(Format::Json, &path);
    let (_, changes) = reference();
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.starts_with("{\"summary\":{"), "{text}");
    let doc: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(doc["summary"], serde_json::to_value(&summary).expect("value"));
    assert_eq!(doc["summary"]["changed_fields"], json!({"name": 1, "amount": 1}));
    assert_eq!(doc["left_columns"], json!(["id", "name", "amount", "note"]));
    assert_eq!(doc["changes"], serde_json::to_value(&changes).expect("value"));
}

#[test]
fn csv_has_a_row_per_field_and_per_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("d.csv");
    write(Format::Csv, &path);
    let mut reader = csv::Reader::from_path(&path).expect("csv");
    let header: Vec<String> = reader.headers().expect("header").iter().map(String::from).collect();
    assert_eq!(
        header,
        ["kind", "id", "left_line", "right_line", "column", "old", "new"]
    );
    let mut got: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.expect("record").iter().map(String::from).collect())
        .collect();
    got.sort();
    let v = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut want = vec![
        v(&[
            "added",
            "5",
            "",
            "4",
            "",
            "",
            r#"{"id":"5","amount":"50","name":"Eve","extra":"x"}"#,
        ]),
        v(&["changed", "1", "2", "3", "amount", "10", "11"]),
        v(&["changed", "1", "2", "3", "name", "Ann", "Ann \"the\" 1st"]),
        v(&["duplicate", "4", "5", "5", "", "2", "1"]),
        v(&[
            "removed",
            "3",
            "4",
            "",
            "",
            r#"{"id":"3","name":"Cy","amount":"30","note":"c"}"#,
            "",
        ]),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn table_aligns_fields_and_ends_with_the_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("d.txt");
    write(Format::Table, &path);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(
        text.contains("changed    id=\"1\"  left line 2, right line 3\n"),
        "{text}"
    );
    assert!(text.contains("\n    amount  \"10\" → \"11\"\n"), "{text}");
    assert!(
        text.contains("\n    name    \"Ann\" → \"Ann \\\"the\\\" 1st\"\n"),
        "{text}"
    );
    assert!(
        text.contains("duplicate  id=\"4\"  left 2 rows (line 5, 6), right 1 row (line 5)\n"),
        "{text}"
    );
    assert!(
        text.contains("added      1\nremoved    1\nchanged    1\nunchanged  1\n"),
        "{text}"
    );
    assert!(text.contains("columns added:   extra\n"), "{text}");
}

fn cell(range: &calamine::Range<Data>, row: u32, col: u32) -> String {
    match range.get_value((row, col)) {
        Some(Data::String(s)) => s.clone(),
        Some(Data::Float(f)) => f.to_string(),
        Some(Data::Int(i)) => i.to_string(),
        Some(Data::Empty) | None => String::new(),
        Some(other) => format!("{other:?}"),
    }
}

#[test]
fn xlsx_has_a_sheet_per_kind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("d.xlsx");
    write(Format::Xlsx, &path);
    let mut book: Xlsx<_> = open_workbook(&path).expect("open xlsx");
    assert_eq!(
        book.sheet_names(),
        ["summary", "added", "removed", "changed", "duplicates", "schema"]
    );
    let summary = book.worksheet_range("summary").expect("summary");
    let find = |name: &str| {
        (0..summary.height() as u32)
            .find(|&r| cell(&summary, r, 0) == name)
            .map(|r| cell(&summary, r, 1))
    };
    assert_eq!(find("added").as_deref(), Some("1"));
    assert_eq!(find("unchanged").as_deref(), Some("1"));
    assert_eq!(find("left duplicate rows").as_deref(), Some("2"));
    assert_eq!(find("changed: amount").as_deref(), Some("1"));

    let added = book.worksheet_range("added").expect("added");
    let row = |r: &calamine::Range<Data>, i: u32| (0..r.width() as u32).map(|c| cell(r, i, c)).collect::<Vec<_>>();
    assert_eq!(row(&added, 0), ["right_line", "id", "amount", "name", "extra"]);
    assert_eq!(row(&added, 1), ["4", "5", "50", "Eve", "x"]);
    let removed = book.worksheet_range("removed").expect("removed");
    assert_eq!(row(&removed, 1), ["4", "3", "Cy", "30", "c"]);

    let changed = book.worksheet_range("changed").expect("changed");
    assert_eq!(
        row(&changed, 0),
        [
            "id",
            "left_line",
            "right_line",
            "name (left)",
            "name (right)",
            "amount (left)",
            "amount (right)"
        ]
    );
    assert_eq!(row(&changed, 1), ["1", "2", "3", "Ann", "Ann \"the\" 1st", "10", "11"]);
    let dups = book.worksheet_range("duplicates").expect("duplicates");
    assert_eq!(row(&dups, 1), ["4", "2", "1", "5, 6", "5"]);
    let schema = book.worksheet_range("schema").expect("schema");
    assert_eq!(row(&schema, 1), ["added", "extra", ""]);
    assert_eq!(row(&schema, 2), ["removed", "note", ""]);
    assert_eq!(cell(&schema, 3, 0), "reordered");
}

#[test]
fn formats_parse_by_name() {
    for f in Format::ALL {
        assert_eq!(f.as_str().parse::<Format>(), Ok(f));
    }
    assert!("yaml".parse::<Format>().is_err());
}
