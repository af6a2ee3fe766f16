//! What reading segments through a memory map costs against `pread`: a
//! segment of 1M documents on disk, point lookups (an idempotency-style
//! key to its ledger index) and posting-list scans (an actor's ~100
//! documents) through the map, beside `pread` of as many 4 KiB pages as
//! the same lookups touch (counted with `Segment::checked_pages` on a
//! fresh open), with the page cache warm in both. Also the cost of open
//! (trailer, page sums, small sections) against checking every page.
//!
//!     cargo run --release -p sealtrail-segment --example map_or_pread

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use sealtrail_segment::{term_hash, ColumnKind, Mapped, Segment, SegmentBuilder, PAGE};

const DOCS: u32 = 1_000_000;
const ACTORS: u32 = 10_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("map_or_pread-{}.seg", std::process::id()));
    let mut b = SegmentBuilder::new(&[ColumnKind::Value, ColumnKind::Term(0)]);
    let mut x = 1u64;
    let mut next = || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        x >> 33
    };
    for d in 0..DOCS {
        b.add_doc();
        let action = b.add_term(0, format!("action.{}", next() % 20).as_bytes());
        b.set(1, action);
        b.add_term(1, format!("actor-{}", next() % u64::from(ACTORS)).as_bytes());
        b.add_term(2, format!("key-{d}").as_bytes());
        b.set(0, 5_000_000 + u64::from(d));
    }
    b.finish(std::io::BufWriter::new(File::create(&path)?))?;
    let file = File::open(&path)?;
    let len = file.metadata()?.len();
    // SAFETY: the file is this process's own, complete, and never written
    // again; it is deleted only after the map is dropped.
    #[allow(unsafe_code)]
    let map = unsafe { Mapped::open(&path)? };
    // Warm the page cache.
    let whole = std::fs::read(&path)?;
    let started = Instant::now();
    let mut sum = 0u64;
    for chunk in whole.chunks(PAGE) {
        sum ^= term_hash(chunk);
    }
    let check_all = started.elapsed();
    let seg = Segment::open(map)?;
    let open_pages = seg.checked_pages();
    let started = Instant::now();
    for _ in 0..100 {
        // SAFETY: as above.
        #[allow(unsafe_code)]
        let map = unsafe { Mapped::open(&path)? };
        sum ^= u64::from(Segment::open(map)?.docs());
    }
    let open = started.elapsed() / 100;

    let lookup = |seg: &Segment<Mapped>, d: u32| -> Result<u64, Box<dyn std::error::Error>> {
        let term = seg.find(2, format!("key-{d}").as_bytes())?.ok_or("key not found")?;
        let doc = seg.postings(term)?.iter().next().ok_or("empty list")??;
        Ok(seg.column(0).ok_or("no column")?.get(doc)?.ok_or("no value")?)
    };
    let scan = |seg: &Segment<Mapped>, a: u64| -> Result<u64, Box<dyn std::error::Error>> {
        let term = seg.find(1, format!("actor-{a}").as_bytes())?.ok_or("actor not found")?;
        let mut n = 0;
        for d in seg.postings(term)?.iter() {
            n += u64::from(d?);
        }
        Ok(n)
    };
    // Pages a lookup and a scan touch, each on a fresh open.
    let (mut lookup_pages, mut scan_pages) = (0, 0);
    for i in 0..100u32 {
        // SAFETY: as above.
        #[allow(unsafe_code)]
        let fresh = Segment::open(unsafe { Mapped::open(&path)? })?;
        let before = fresh.checked_pages();
        sum ^= lookup(&fresh, i * 9973 % DOCS)?;
        lookup_pages += fresh.checked_pages() - before;
        let before = fresh.checked_pages();
        sum ^= scan(&fresh, u64::from(i * 97 % ACTORS))?;
        scan_pages += fresh.checked_pages() - before;
    }
    let (lookup_pages, scan_pages) = (lookup_pages / 100, scan_pages / 100);

    const LOOKUPS: u32 = 200_000;
    let started = Instant::now();
    for i in 0..LOOKUPS {
        sum ^= lookup(&seg, next() as u32 % DOCS)?;
        sum ^= u64::from(i);
    }
    let map_lookup = started.elapsed() / LOOKUPS;
    const SCANS: u32 = 20_000;
    let started = Instant::now();
    for _ in 0..SCANS {
        sum ^= scan(&seg, next() % u64::from(ACTORS))?;
    }
    let map_scan = started.elapsed() / SCANS;

    // pread of as many random pages, each checked as a pread reader would
    // on filling its cache.
    let pages = len / PAGE as u64;
    let mut buf = vec![0u8; PAGE];
    let mut pread = |n: usize| -> std::io::Result<()> {
        for _ in 0..n {
            let at = (next() % pages) * PAGE as u64;
            file.read_exact_at(&mut buf, at)?;
            sum ^= term_hash(&buf);
        }
        Ok(())
    };
    let started = Instant::now();
    for _ in 0..LOOKUPS {
        pread(lookup_pages)?;
    }
    let pread_lookup = started.elapsed() / LOOKUPS;
    let started = Instant::now();
    for _ in 0..SCANS {
        pread(scan_pages)?;
    }
    let pread_scan = started.elapsed() / SCANS;
    std::fs::remove_file(&path)?;

    println!(
        "segment: {DOCS} documents, {len} bytes, {} terms (checksum fold {sum:x})",
        seg.terms()
    );
    println!("open: {open:?} ({open_pages} pages checked); checking every page: {check_all:?}");
    println!(
        "point lookup: map {map_lookup:?}; pread of its {lookup_pages} pages {pread_lookup:?} ({:.2}x the map)",
        pread_lookup.as_secs_f64() / map_lookup.as_secs_f64()
    );
    println!(
        "postings scan: map {map_scan:?}; pread of its {scan_pages} pages {pread_scan:?} ({:.2}x the map)",
        pread_scan.as_secs_f64() / map_scan.as_secs_f64()
    );
    Ok(())
}
