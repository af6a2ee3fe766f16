//! How fast the CSV source reads, beside the raw read bandwidth of the same
//! file (the baseline: no parser can beat it) and the csv crate's bare
//! record loop (the best a row-by-row parser does here), with the ratios.
//!
//! ```text
//! cargo run --release -p sealtrail-data --example read_speed [ROWS] [FILE]
//! ```
//!
//! Writes ROWS (default 1,000,000) rows of 9 columns to FILE (default a
//! temporary file), reads it once to warm the page cache, then times a raw
//! read and a read through `source::open`, best of three each.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use sealtrail_data::source::{self, OpenOptions};
use sealtrail_data::Row;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rows: u64 = match args.next() {
        Some(n) => n.parse()?,
        None => 1_000_000,
    };
    let dir = tempfile::tempdir()?;
    let path = match args.next() {
        Some(p) => std::path::PathBuf::from(p),
        None => dir.path().join("read_speed.csv"),
    };
    generate(&path, rows)?;
    let bytes = std::fs::metadata(&path)?.len();
    let address = path.to_str().ok_or("path is not UTF-8")?.to_string();

    raw_read(&path)?;
    let raw = best_of(3, || raw_read(&path))?;
    let mut seen = 0;
    let parsed = best_of(3, || {
        let mut source = source::open(&address, &OpenOptions::default())?;
        let mut row = Row::new();
        let mut n = 0u64;
        while source.next_row(&mut row)? {
            n += 1;
        }
        seen = n;
        Ok(())
    })?;
    assert_eq!(seen, rows, "rows read");
    let bare = best_of(3, || {
        let mut reader = csv::ReaderBuilder::new().has_headers(false).from_path(&path)?;
        let mut record = csv::ByteRecord::new();
        while reader.read_byte_record(&mut record)? {}
        Ok(())
    })?;

    let mb = bytes as f64 / 1e6;
    println!("file: {rows} rows x 9 columns, {mb:.1} MB");
    println!(
        "raw read:   {:>8.3} s  {:>8.0} MB/s",
        raw.as_secs_f64(),
        mb / raw.as_secs_f64()
    );
    println!(
        "csv source: {:>8.3} s  {:>8.0} MB/s  {:>10.0} rows/s",
        parsed.as_secs_f64(),
        mb / parsed.as_secs_f64(),
        rows as f64 / parsed.as_secs_f64()
    );
    println!(
        "csv crate:  {:>8.3} s  {:>8.0} MB/s  (ByteRecord loop: no UTF-8 check, no rows)",
        bare.as_secs_f64(),
        mb / bare.as_secs_f64()
    );
    println!(
        "ratio: csv source takes {:.2}x the raw read, {:.2}x the bare csv crate",
        parsed.as_secs_f64() / raw.as_secs_f64(),
        parsed.as_secs_f64() / bare.as_secs_f64()
    );
    Ok(())
}

type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

fn best_of(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..n {
        let start = Instant::now();
        f()?;
        best = best.min(start.elapsed());
    }
    Ok(best)
}

fn raw_read(path: &std::path::Path) -> Result<()> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 18];
    let mut sum = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        // Touch the bytes, as a parser must.
        sum = sum.wrapping_add(buf[..n].iter().map(|&b| u64::from(b)).sum::<u64>());
    }
    std::hint::black_box(sum);
    Ok(())
}

/// Rows like an export of orders: ids, names, amounts, dates, some quoted
/// text with commas, some non-ASCII.
fn generate(path: &std::path::Path, rows: u64) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "id,customer,email,amount,currency,ordered_on,status,city,note")?;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let statuses = ["paid", "open", "refunded", "cancelled"];
    let cities = ["Zürich", "Lyon", "New York", "São Paulo", "Kraków"];
    for id in 1..=rows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let note = if x.is_multiple_of(5) {
            "\"late, call first\""
        } else {
            ""
        };
        writeln!(
            out,
            "{id},Customer {c},c{c}@example.com,{a}.{b:02},EUR,2024-{m:02}-{d:02},{s},{city},{note}",
            c = x % 100_000,
            a = x % 10_000,
            b = (x >> 20) % 100,
            m = (x >> 8) % 12 + 1,
            d = (x >> 12) % 28 + 1,
            s = statuses[(x >> 16) as usize % 4],
            city = cities[(x >> 24) as usize % 5],
        )?;
    }
    out.flush()?;
    Ok(())
}
