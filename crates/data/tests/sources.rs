//! Sources opened by address, as the CLI opens them: files written here
//! byte by byte (or workbooks built with rust_xlsxwriter), a PostgreSQL
//! database created and dropped by the test. Expected values are literal.

use std::path::{Path, PathBuf};

use sealtrail_data::source::{self, OpenOptions, Progress};
use sealtrail_data::{Row, Source};

fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write fixture");
    path
}

fn open(path: &Path, options: &OpenOptions) -> Box<dyn Source> {
    source::open(path.to_str().expect("utf-8 path"), options).expect("open")
}

/// All rows as (line, values), null as `None`.
fn read_all(source: &mut dyn Source) -> Vec<(u64, Vec<Option<String>>)> {
    let mut row = Row::new();
    let mut out = Vec::new();
    while source.next_row(&mut row).expect("row") {
        out.push((row.line, row.values().map(|v| v.map(str::to_string)).collect()));
    }
    out
}

fn t(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[test]
fn csv_dialects_are_sniffed_or_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let semi = write(dir.path(), "semi.csv", b"id;price\n1;2,50\n2;3,75\n");
    let mut s = open(&semi, &OpenOptions::default());
    assert_eq!(s.columns(), ["id", "price"]);
    assert_eq!(
        read_all(s.as_mut()),
        vec![(2, vec![t("1"), t("2,50")]), (3, vec![t("2"), t("3,75")])]
    );

    let tsv = write(dir.path(), "t.tsv", b"a\tb\n\"x,y\"\tz\n");
    let mut s = open(&tsv, &OpenOptions::default());
    assert_eq!(read_all(s.as_mut()), vec![(2, vec![t("x,y"), t("z")])]);

    let piped = write(dir.path(), "p.txt", b"a|b\n'x|y'|z\n");
    let options = OpenOptions {
        delimiter: Some(b'|'),
        quote: Some(b'\''),
        header: false,
        ..OpenOptions::default()
    };
    let mut s = open(&piped, &options);
    assert_eq!(s.columns(), ["1", "2"]);
    assert_eq!(
        read_all(s.as_mut()),
        vec![(1, vec![t("a"), t("b")]), (2, vec![t("x|y"), t("z")])]
    );
}

#[test]
fn a_long_record_is_refused_through_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut content = b"id,v\n1,a\n".to_vec();
    content.extend_from_slice(b"2,\"");
    content.extend(std::iter::repeat_n(b'y', 200_000));
    let path = write(dir.path(), "long.csv", &content);
    let options = OpenOptions {
        max_record_bytes: 4096,
        ..OpenOptions::default()
    };
    let mut s = open(&path, &options);
    let mut row = Row::new();
    assert!(s.next_row(&mut row).expect("first row"));
    let err = s.next_row(&mut row).expect_err("unclosed quote runs past the bound");
    assert_eq!((err.line, err.byte), (Some(3), Some(9)));
    assert!(err.to_string().starts_with(&format!("{}:3", path.display())), "{err}");
}

#[test]
fn json_lines_through_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "e.ndjson",
        b"{\"id\":\"A-1\",\"n\":10,\"tags\":[\"x\"]}\n{\"id\":\"A-2\",\"n\":null}\n",
    );
    let mut s = open(&path, &OpenOptions::default());
    assert_eq!(s.columns(), ["id", "n", "tags"]);
    assert_eq!(
        read_all(s.as_mut()),
        vec![
            (1, vec![t("A-1"), t("10"), t("[\"x\"]")]),
            (2, vec![t("A-2"), None, None]),
        ]
    );
}

#[test]
fn xlsx_cells_read_as_a_user_sees_them() {
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("book.xlsx");
    let mut book = Workbook::new();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let stamp = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    let first = book.add_worksheet();
    first.set_name("Summary").expect("name");
    first.write(0, 0, "only").expect("cell");
    first.write(1, 0, 1).expect("cell");
    let sheet = book.add_worksheet();
    sheet.set_name("Orders 2024").expect("name");
    for (c, h) in ["id", "amount", "paid", "due", "at", "note"].iter().enumerate() {
        sheet.write(0, c as u16, *h).expect("header");
    }
    sheet.write(1, 0, 1).expect("cell");
    sheet.write(1, 1, 12.5).expect("cell");
    sheet.write(1, 2, true).expect("cell");
    let due = ExcelDateTime::from_ymd(2024, 3, 1).expect("date");
    sheet.write_datetime_with_format(1, 3, &due, &date).expect("cell");
    let at = ExcelDateTime::parse_from_str("2024-03-01T13:45:30").expect("datetime");
    sheet.write_datetime_with_format(1, 4, &at, &stamp).expect("cell");
    sheet.write(1, 5, "first").expect("cell");
    // Row 3 of the sheet left blank; row 4 has gaps.
    sheet.write(3, 0, 2).expect("cell");
    sheet.write(3, 1, 1_000_000.0).expect("cell");
    sheet.write(3, 2, false).expect("cell");
    sheet.write(3, 5, "").expect("cell");
    book.save(&path).expect("save");

    let address = format!("{}#Orders 2024", path.display());
    let mut s = source::open(&address, &OpenOptions::default()).expect("open");
    assert_eq!(s.name(), address);
    assert_eq!(s.columns(), ["id", "amount", "paid", "due", "at", "note"]);
    assert_eq!(
        read_all(s.as_mut()),
        vec![
            (
                2,
                vec![
                    t("1"),
                    t("12.5"),
                    t("TRUE"),
                    t("2024-03-01"),
                    t("2024-03-01T13:45:30"),
                    t("first")
                ]
            ),
            (4, vec![t("2"), t("1000000"), t("FALSE"), None, None, None]),
        ]
    );

    // Without a sheet name: the first sheet; with options.sheet: that one.
    let mut s = open(&path, &OpenOptions::default());
    assert_eq!(s.columns(), ["only"]);
    assert_eq!(read_all(s.as_mut()), vec![(2, vec![t("1")])]);
    let options = OpenOptions {
        sheet: Some("Orders 2024".into()),
        ..OpenOptions::default()
    };
    assert_eq!(open(&path, &options).columns().len(), 6);

    let err = source::open(&format!("{}#Nope", path.display()), &OpenOptions::default())
        .err()
        .expect("missing sheet");
    assert!(err.message.contains("no sheet \"Nope\""), "{err}");
}

#[test]
fn xlsx_refuses_a_value_outside_the_header() {
    use rust_xlsxwriter::Workbook;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wide.xlsx");
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.write(0, 0, "a").expect("cell");
    sheet.write(0, 1, "b").expect("cell");
    sheet.write(1, 0, 1).expect("cell");
    sheet.write(2, 2, "stray").expect("cell");
    book.save(&path).expect("save");
    let mut s = open(&path, &OpenOptions::default());
    let mut row = Row::new();
    assert!(s.next_row(&mut row).expect("row 2"));
    assert_eq!(row.values().collect::<Vec<_>>(), vec![Some("1"), None]);
    let err = s.next_row(&mut row).expect_err("stray value");
    assert_eq!((err.line, err.column.as_deref()), (Some(3), Some("C")));
}

#[test]
fn fingerprints_and_progress_of_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "abc.csv", b"abc");
    let fp = source::fingerprint(path.to_str().expect("utf-8"))
        .expect("fingerprint")
        .expect("a file has one");
    // SHA-256("abc"), the FIPS 180-2 example.
    assert_eq!(
        fp.sha256_hex,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(fp.bytes, 3);
    assert_eq!(
        source::fingerprint("postgresql://u@127.0.0.1/db?table=t").expect("no file"),
        None
    );

    let path = write(dir.path(), "p.jsonl", b"{\"a\":1}\n{\"a\":2}\n");
    let mut s = open(&path, &OpenOptions::default());
    read_all(s.as_mut());
    assert_eq!(
        s.progress(),
        Some(Progress {
            read_bytes: 16,
            total_bytes: Some(16)
        })
    );
}

#[test]
fn unknown_and_parquet_inputs_are_refused_by_name() {
    let err = source::open("data.parquet", &OpenOptions::default())
        .err()
        .expect("parquet");
    assert!(err.message.contains("Parquet"), "{err}");
    let err = source::open("data.json", &OpenOptions::default())
        .err()
        .expect("unknown");
    assert_eq!(err.input, "data.json");
    let err = source::open("missing.csv", &OpenOptions::default())
        .err()
        .expect("missing");
    assert_eq!(err.input, "missing.csv");
}

/// A database of its own on the local server, dropped at the end.
struct Database {
    admin: postgres::Client,
    user: String,
    name: String,
}

impl Database {
    fn create() -> Database {
        let mut last = None;
        for user in ["postgres", "root"] {
            match postgres::Client::connect(
                &format!("host=127.0.0.1 port=5432 user={user} dbname=postgres"),
                postgres::NoTls,
            ) {
                Ok(mut admin) => {
                    let nanos = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .expect("clock")
                        .subsec_nanos();
                    let name = format!("sealtrail_sources_{}_{nanos}", std::process::id());
                    admin
                        .batch_execute(&format!("CREATE DATABASE {name}"))
                        .expect("create database");
                    return Database {
                        admin,
                        user: user.to_string(),
                        name,
                    };
                }
                Err(e) => last = Some(e),
            }
        }
        panic!("PostgreSQL on 127.0.0.1:5432 (run scripts/postgres): {last:?}");
    }

    fn client(&self) -> postgres::Client {
        postgres::Client::connect(
            &format!("host=127.0.0.1 port=5432 user={} dbname={}", self.user, self.name),
            postgres::NoTls,
        )
        .expect("connect to the test database")
    }

    fn address(&self, target: &str) -> String {
        format!(
            "postgresql://{}:not-a-real-secret@127.0.0.1:5432/{}?{target}",
            self.user, self.name
        )
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

#[test]
fn postgres_tables_and_queries_as_text() {
    let db = Database::create();
    let mut client = db.client();
    client
        .batch_execute(
            "CREATE SCHEMA sales;
             CREATE TABLE sales.\"Orders\" (id int, amount numeric(8,2), paid boolean,
                 at timestamp, note text);
             INSERT INTO sales.\"Orders\" VALUES
                 (1, 12.50, true, '2024-03-01 13:45:30', 'first'),
                 (2, NULL, false, NULL, '');
             CREATE TABLE big AS SELECT g AS n FROM generate_series(1, 2500) g;",
        )
        .expect("fixture");

    let address = db.address("table=sales.Orders");
    let mut s = source::open(&address, &OpenOptions::default()).expect("open table");
    assert!(!s.name().contains("not-a-real-secret"), "{}", s.name());
    assert_eq!(s.columns(), ["id", "amount", "paid", "at", "note"]);
    assert_eq!(
        read_all(s.as_mut()),
        vec![
            (
                1,
                vec![t("1"), t("12.50"), t("t"), t("2024-03-01 13:45:30"), t("first")]
            ),
            (2, vec![t("2"), None, t("f"), None, t("")]),
        ]
    );
    assert_eq!(s.progress(), None);

    // More rows than one fetch holds, through a URL-encoded query.
    let address = db.address("query=SELECT%20n%2C%20n%20*%202%20AS%20double%20FROM%20big%20ORDER%20BY%20n");
    let mut s = source::open(&address, &OpenOptions::default()).expect("open query");
    assert_eq!(s.columns(), ["n", "double"]);
    let rows = read_all(s.as_mut());
    assert_eq!(rows.len(), 2500);
    assert_eq!(rows[2499], (2500, vec![t("2500"), t("5000")]));
    assert!(rows
        .iter()
        .enumerate()
        .all(|(i, (line, v))| *line == i as u64 + 1 && v[0] == Some((i + 1).to_string())));

    // A failure in a later batch (no ORDER BY: a sort would evaluate every
    // row before the first fetch): the rows before it were read.
    let address = db.address("query=SELECT%201%2F(n-1500)%20AS%20q%20FROM%20big");
    let mut s = source::open(&address, &OpenOptions::default()).expect("open failing query");
    let mut row = Row::new();
    let mut read = 0;
    let err = loop {
        match s.next_row(&mut row) {
            Ok(true) => read += 1,
            Ok(false) => panic!("the query divides by zero at row 1500"),
            Err(e) => break e,
        }
    };
    assert_eq!(read, 1000);
    assert!(err.message.contains("division by zero"), "{err}");
    assert!(err.message.ends_with("(after row 1000)"), "{err}");

    // An empty result still names its columns.
    let address = db.address("query=SELECT%20n%20FROM%20big%20WHERE%20false");
    let mut s = source::open(&address, &OpenOptions::default()).expect("open empty");
    assert_eq!(s.columns(), ["n"]);
    assert!(read_all(s.as_mut()).is_empty());
}

#[test]
fn postgres_reads_never_write() {
    let db = Database::create();
    let mut client = db.client();
    client
        .batch_execute("CREATE TABLE t (n int); INSERT INTO t VALUES (1);")
        .expect("fixture");
    // A second statement is refused by the protocol, before it runs.
    let err = source::open(
        &db.address("query=SELECT%201%3B%20DROP%20TABLE%20t"),
        &OpenOptions::default(),
    )
    .err()
    .expect("two statements");
    assert!(!err.input.contains("not-a-real-secret"), "{err}");
    // A table name cannot escape its quotes.
    let err = source::open(
        &db.address("table=t%22%3B%20DROP%20TABLE%20t%3B%20--"),
        &OpenOptions::default(),
    )
    .err()
    .expect("no such table");
    assert!(err.message.contains("does not exist"), "{err}");
    // A writing query fails inside the read-only transaction.
    let err = source::open(
        &db.address("query=WITH%20d%20AS%20(DELETE%20FROM%20t%20RETURNING%20n)%20SELECT%20*%20FROM%20d"),
        &OpenOptions::default(),
    )
    .err()
    .expect("read only");
    assert!(
        err.message.contains("read-only") || err.message.contains("DECLARE"),
        "{err}"
    );
    let n: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .expect("table still there")
        .get(0);
    assert_eq!(n, 1);
}

/// Random tables written as CSV by hand (quoting when needed, LF or CRLF,
/// blank lines, sometimes a BOM), read back: the values and each row's
/// starting line must be what was written.
#[test]
fn csv_round_trips_random_tables_with_exact_lines() {
    let pieces = ["a", "b c", ",", "\"", "\n", "\r\n", "é", "日本", "", "x;y", "'"];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for case in 0..200 {
        let columns = 2 + next(4);
        let rows = next(30);
        let mut content = Vec::new();
        if next(4) == 0 {
            content.extend_from_slice(b"\xef\xbb\xbf");
        }
        let mut line = 1u64;
        let mut expected = Vec::new();
        for r in 0..=rows {
            let eol: &str = if next(2) == 0 { "\n" } else { "\r\n" };
            let mut values = Vec::new();
            for c in 0..columns {
                let value = if r == 0 {
                    format!("c{c}")
                } else {
                    (0..next(4)).map(|_| pieces[next(pieces.len())]).collect::<String>()
                };
                if c > 0 {
                    content.push(b',');
                }
                let needs_quotes = value.contains([',', '"', '\n', '\r']) || (value.is_empty() && next(3) == 0);
                if needs_quotes {
                    content.push(b'"');
                    content.extend_from_slice(value.replace('"', "\"\"").as_bytes());
                    content.push(b'"');
                } else {
                    content.extend_from_slice(value.as_bytes());
                }
                values.push(Some(value));
            }
            if r > 0 {
                expected.push((line, values.clone()));
            }
            let newlines_inside = values
                .iter()
                .map(|v| v.as_deref().unwrap_or("").matches('\n').count() as u64)
                .sum::<u64>();
            line += newlines_inside;
            // The last record sometimes ends without a line break.
            if r < rows || next(2) == 0 {
                content.extend_from_slice(eol.as_bytes());
                line += 1;
                while next(5) == 0 {
                    content.extend_from_slice(eol.as_bytes());
                    line += 1;
                }
            }
        }
        let path = write(dir.path(), &format!("case{case}.csv"), &content);
        let options = OpenOptions {
            delimiter: Some(b','),
            quote: Some(b'"'),
            ..OpenOptions::default()
        };
        let mut s = open(&path, &options);
        let header: Vec<String> = (0..columns).map(|c| format!("c{c}")).collect();
        assert_eq!(s.columns(), header, "case {case}");
        assert_eq!(
            read_all(s.as_mut()),
            expected,
            "case {case}: {:?}",
            String::from_utf8_lossy(&content)
        );
    }
}
