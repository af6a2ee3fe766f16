//! Server-log import rate, beside the rate of merely reading the same
//! file, for each format.
//!
//!     cargo run --release -p sealtrail-pg --example logimport_bench [LINES]
//!
//! The input is the committed real-server fixture repeated to LINES lines
//! (default 1,000,000); the sink only counts events, so the figure is the
//! parser's and the event builder's, not the ledger's.

use sealtrail_pg::logimport::{import, BatchOutcome, ImportOptions, LogFormat};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

const PREFIX: &str = "%m [%p] %q%u@%d app=%a host=%h sess=%c line=%l state=%e xid=%x vxid=%v ";

fn main() {
    let lines: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("LINES is a number"))
        .unwrap_or(1_000_000);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = tempfile::tempdir().expect("temp dir");
    println!("format    lines      MB    read lines/s   import lines/s   events/s   import/read");
    for (name, format) in [
        ("server.log", LogFormat::Stderr),
        ("server.csv", LogFormat::Csvlog),
        ("server.json", LogFormat::Jsonlog),
    ] {
        let one = std::fs::read(fixtures.join(name)).expect("fixture");
        let per_copy = one.iter().filter(|&&b| b == b'\n').count();
        let path = dir.path().join(name);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        let mut total = 0;
        while total < lines {
            f.write_all(&one).expect("write");
            total += per_copy;
        }
        f.flush().expect("flush");
        drop(f);
        let bytes = std::fs::metadata(&path).expect("stat").len();

        // Baseline: read the file and count its lines.
        let t = Instant::now();
        let mut file = std::fs::File::open(&path).expect("open");
        let mut buf = vec![0u8; 1 << 20];
        let mut counted = 0usize;
        loop {
            let n = file.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            counted += buf[..n].iter().filter(|&&b| b == b'\n').count();
        }
        let read_secs = t.elapsed().as_secs_f64();
        assert_eq!(counted, total);

        let opts = ImportOptions {
            format: Some(format),
            line_prefix: (format == LogFormat::Stderr).then(|| PREFIX.to_owned()),
            batch_size: 1_000,
        };
        let t = Instant::now();
        let mut events = 0usize;
        let report = import(&path, &opts, |batch: &[String]| {
            events += batch.len();
            Ok(BatchOutcome::default())
        })
        .expect("import");
        let import_secs = t.elapsed().as_secs_f64();
        assert_eq!(report.error_count, 0);
        println!(
            "{:<8} {:>7} {:>7.1} {:>14.0} {:>16.0} {:>10.0} {:>12.3}",
            format.name(),
            total,
            bytes as f64 / 1e6,
            total as f64 / read_secs,
            total as f64 / import_secs,
            events as f64 / import_secs,
            read_secs / import_secs,
        );
    }
}
