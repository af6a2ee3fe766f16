//! Memory stays bounded whatever the number of rows: 200,000 rows each of
//! CSV, XLSX and JSON Lines to files must not raise the process's peak
//! resident set (VmHWM) by more than a few megabytes. Holding the rows
//! instead (rust_xlsxwriter's standard mode keeps every cell: over 600 MB here)
//! fails it. Alone in its own test binary so no other test's allocations
//! move the peak.
#![allow(clippy::unwrap_used)]

mod common;

use common::{stored, Stored};
use sealtrail_export::{EventWriter, Format, Row};

const ROWS: u64 = 200_000;
const ALLOWED_GROWTH_KIB: u64 = 16 * 1024;

/// Peak resident set size of this process so far, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn variants() -> Vec<Stored> {
    (0..16)
        .map(|n| {
            stored(
                n,
                &format!(
                    r#"{{"action": "record.updated", "tenant": "tenant-{n}", "outcome": "success",
                        "actor": {{"id": "user-{n}", "name": "User number {n}", "email": "user{n}@example.com"}},
                        "targets": [{{"type": "record", "id": "REC-{n:06}"}}],
                        "message": "Record REC-{n:06} updated by user {n}, with a message of moderate length",
                        "duration_ms": {n}.25, "details": {{"field": "status", "n": {n}}}}}"#
                ),
            )
        })
        .collect()
}

fn export(format: Format, path: &std::path::Path, rows: u64, variants: &[Stored]) {
    let mut writer = EventWriter::create(format, path).unwrap();
    for index in 0..rows {
        let s = &variants[(index % variants.len() as u64) as usize];
        writer
            .write(&Row {
                index,
                event: &s.event,
                entry: &s.entry,
            })
            .unwrap();
    }
    assert_eq!(writer.finish().unwrap(), rows);
}

#[test]
fn large_exports_run_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let variants = variants();
    let formats = [Format::Csv, Format::Xlsx, Format::Jsonl];
    // Warm up: every code path and buffer once, so the peak below is growth.
    for format in formats {
        export(format, &dir.path().join(format!("warm.{format}")), 2_000, &variants);
    }
    let before = peak_rss_kib();
    for format in formats {
        let path = dir.path().join(format!("big.{format}"));
        export(format, &path, ROWS, &variants);
        let size = std::fs::metadata(&path).unwrap().len();
        let growth = peak_rss_kib() - before;
        eprintln!("{format}: {ROWS} rows, {size} bytes, peak RSS growth so far {growth} KiB");
        // XLSX is compressed; the others hold ~300 bytes a row.
        let least = if format == Format::Xlsx { ROWS * 20 } else { ROWS * 100 };
        assert!(size > least, "{format}: {size} bytes is too small for {ROWS} rows");
        assert!(growth < ALLOWED_GROWTH_KIB, "{format}: peak RSS grew by {growth} KiB");
    }
    // The XLSX really holds every row (a spot check through calamine would
    // read it all into memory, so count the rows in the sheet's XML instead).
    let file = std::fs::File::open(dir.path().join("big.xlsx")).unwrap();
    let mut archive = zip::ZipArchive::new(file).unwrap();
    let mut sheet = std::io::BufReader::new(archive.by_name("xl/worksheets/sheet1.xml").unwrap());
    let mut rows = 0u64;
    let mut chunk = Vec::new();
    while std::io::BufRead::read_until(&mut sheet, b'>', &mut chunk).unwrap() > 0 {
        if chunk.starts_with(b"<row ") {
            rows += 1;
        }
        chunk.clear();
    }
    assert_eq!(rows, ROWS + 1);
}
