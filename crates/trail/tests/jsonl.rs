//! JSON Lines ingest through its pipeline: line order kept in the ledger
//! whatever the threads and chunks, bad lines named by their number in any
//! chunk, reading held back by the chunks in flight, `strict` all or
//! nothing, and a read error part way.
#![allow(clippy::unwrap_used)]

use std::io::{BufReader, Read};
use std::sync::Arc;

use sealtrail_ledger::DataDir;
use sealtrail_trail::jsonl::{JsonlOptions, JsonlReport};
use sealtrail_trail::{Trail, TrailOptions};

struct Env {
    _tmp: tempfile::TempDir,
    data: DataDir,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    data.create_log("audit", None).unwrap();
    Env { _tmp: tmp, data }
}

fn open(env: &Env) -> Trail {
    let options = TrailOptions {
        clock: Arc::new(|| "2026-05-01T12:00:00Z".parse().unwrap()),
        ..TrailOptions::default()
    };
    Trail::open(&env.data, "audit", options).unwrap()
}

/// Small chunks on many threads: the most chances to reorder.
fn many_threads(strict: bool) -> JsonlOptions {
    JsonlOptions {
        strict,
        chunk_lines: 7,
        chunk_bytes: 1 << 20,
        max_chunks_in_flight: 5,
        threads: 8,
    }
}

/// An event that names its line.
fn line(n: usize) -> String {
    format!("{{\"action\":\"order.line\",\"message\":\"line {n}\"}}")
}

/// The `message` of every stored event, in ledger order.
fn messages(trail: &Trail) -> Vec<String> {
    (0..trail.log().size())
        .map(|i| trail.read(i).unwrap().event.message.unwrap_or_default())
        .collect()
}

fn errors(report: &JsonlReport) -> Vec<String> {
    report.rejected.iter().map(ToString::to_string).collect()
}

#[test]
fn the_ledger_keeps_line_order_across_chunks_and_names_bad_lines_in_later_chunks() {
    let env = env();
    let trail = open(&env);
    let mut input = String::new();
    let mut expected = Vec::new();
    for n in 1..=3000 {
        match n {
            // Blank lines count as lines but hold no event.
            100 | 101 => input.push_str("  \r\n"),
            2222 => input.push_str("{\"action\":\"order.line\",\"severity\":\"loud\"}\n"),
            2900 => input.push_str("{\"action\":\n"),
            // One key twice, far apart: the second is a duplicate.
            5 | 2500 => {
                input.push_str(&format!(
                    "{{\"action\":\"order.line\",\"message\":\"line {n}\",\"idempotency_key\":\"k\"}}\r\n"
                ));
                if n == 5 {
                    expected.push(format!("line {n}"));
                }
            }
            _ => {
                input.push_str(&line(n));
                input.push('\n');
                expected.push(format!("line {n}"));
            }
        }
    }
    let report = trail.ingest_jsonl_with(input.as_bytes(), &many_threads(false)).unwrap();
    assert_eq!(report.lines, 2998);
    assert_eq!(report.appended, 2995);
    assert_eq!(report.duplicates, 1);
    assert_eq!((report.first, report.last), (Some(0), Some(2994)));
    assert_eq!(report.tree_size, 2995);
    let errors = errors(&report);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("line 2222: severity: "), "{errors:?}");
    assert!(errors[1].starts_with("line 2900, column "), "{errors:?}");
    assert_eq!(messages(&trail), expected);
}

/// Hands out at most one line per read, and notes how far reading ran
/// ahead of the ledger.
struct Watched<'a> {
    trail: &'a Trail,
    lines: Vec<Vec<u8>>,
    next: usize,
    at: usize,
    /// Most lines started beyond those stored.
    lead: u64,
}

impl Read for Watched<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(line) = self.lines.get(self.next) else {
            return Ok(0);
        };
        if self.at == 0 {
            let started = self.next as u64 + 1;
            self.lead = self.lead.max(started.saturating_sub(self.trail.log().size()));
        }
        let n = buf.len().min(line.len() - self.at);
        buf[..n].copy_from_slice(&line[self.at..self.at + n]);
        self.at += n;
        if self.at == line.len() {
            (self.next, self.at) = (self.next + 1, 0);
        }
        Ok(n)
    }
}

#[test]
fn reading_waits_while_the_chunks_in_flight_are_not_stored() {
    let env = env();
    let trail = open(&env);
    let count = 20_000;
    let opts = JsonlOptions {
        chunk_lines: 10,
        max_chunks_in_flight: 3,
        ..many_threads(false)
    };
    let mut watched = Watched {
        trail: &trail,
        lines: (1..=count).map(|n| format!("{}\n", line(n)).into_bytes()).collect(),
        next: 0,
        at: 0,
        lead: 0,
    };
    let report = trail
        .ingest_jsonl_with(BufReader::with_capacity(16, &mut watched), &opts)
        .unwrap();
    assert_eq!(report.appended, count as u64);
    // The chunks in flight, the one being cut, and the line just started.
    let bound = (opts.max_chunks_in_flight as u64 + 1) * opts.chunk_lines as u64 + 1;
    assert!(
        watched.lead <= bound,
        "reading ran {} lines ahead of the ledger; at most {bound} may be in flight",
        watched.lead
    );
    let expected: Vec<String> = (1..=count).map(|n| format!("line {n}")).collect();
    assert_eq!(messages(&trail), expected);
}

#[test]
fn strict_appends_nothing_when_a_later_chunk_has_a_bad_line_and_everything_otherwise() {
    let env = env();
    let trail = open(&env);
    trail.ingest_jsonl(line(0).as_bytes(), false).unwrap();
    let good: Vec<String> = (1..=1000).map(line).collect();
    let mut bad = good.clone();
    bad[876] = "{\"action\":7}".into();
    bad[990] = "[1,".into();
    let report = trail
        .ingest_jsonl_with(bad.join("\n").as_bytes(), &many_threads(true))
        .unwrap();
    assert_eq!((report.lines, report.appended, report.first), (1000, 0, None));
    let errors = errors(&report);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("line 877: action: "), "{errors:?}");
    assert!(errors[1].starts_with("line 991, column "), "{errors:?}");
    assert_eq!(report.tree_size, 1);
    assert_eq!(trail.log().size(), 1);

    let report = trail
        .ingest_jsonl_with(good.join("\n").as_bytes(), &many_threads(true))
        .unwrap();
    assert_eq!(
        (report.appended, report.first, report.last),
        (1000, Some(1), Some(1000))
    );
    assert!(report.rejected.is_empty());
    let expected: Vec<String> = (0..=1000).map(|n| format!("line {n}")).collect();
    assert_eq!(messages(&trail), expected);
}

/// Fails with an I/O error once `fail_at` bytes have been read.
struct Failing {
    bytes: Vec<u8>,
    at: usize,
    fail_at: usize,
}

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.fail_at {
            return Err(std::io::Error::other("the disk went away"));
        }
        let n = buf.len().min(self.fail_at - self.at);
        buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[test]
fn a_read_error_names_its_line_and_stores_only_whole_chunks_before_it() {
    let bytes: Vec<u8> = (1..=500).flat_map(|n| format!("{}\n", line(n)).into_bytes()).collect();
    // Fail in the middle of line 300.
    let fail_at = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(298)
        .unwrap()
        .0
        + 10;
    for strict in [false, true] {
        let env = env();
        let trail = open(&env);
        let input = BufReader::new(Failing {
            bytes: bytes.clone(),
            at: 0,
            fail_at,
        });
        let err = trail.ingest_jsonl_with(input, &many_threads(strict)).unwrap_err();
        assert!(err.to_string().contains("reading input line 300"), "{err}");
        let stored = messages(&trail);
        if strict {
            assert!(stored.is_empty(), "{stored:?}");
        } else {
            // Whole chunks of 7 lines only, in order.
            assert_eq!(stored.len(), 294);
            let expected: Vec<String> = (1..=294).map(|n| format!("line {n}")).collect();
            assert_eq!(stored, expected);
        }
    }
}
