//! A log holding a pack of version 3 (frames without the record
//! checksums) beside one of version 2 (tests/fixtures/pack3, committed):
//! version 2 packed, pruned through that pack, then version 3 packed. It
//! must stay readable, byte for byte as docs/ledger-format.md describes it.
//!
//! `SEALTRAIL_WRITE_FIXTURE_PACK3=<dir> cargo test -p sealtrail-ledger
//! --test fixture_pack3 -- --ignored write_fixture` wrote it.
#![allow(clippy::unwrap_used)]

mod common;

use sealtrail_ledger::format::record_crc;
use sealtrail_ledger::storage::OsStorage;
use sealtrail_ledger::verify::verify_log;
use sealtrail_ledger::{DataDir, LogOptions, PackVersion};
use std::path::{Path, PathBuf};

fn entry(i: u64) -> Vec<u8> {
    if i < 1100 {
        format!("{{\"fixture\":3,\"n\":{i}}}").into_bytes()
    } else {
        format!("appended after the packs {i}").into_bytes()
    }
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pack3")
}

#[test]
#[ignore = "writes the committed fixture"]
fn write_fixture() {
    let Ok(out) = std::env::var("SEALTRAIL_WRITE_FIXTURE_PACK3") else {
        return;
    };
    let dir = DataDir::new(&out);
    dir.create_log("default", None).unwrap();
    let v2 = LogOptions {
        pack_version: PackVersion::V2,
        ..LogOptions::default()
    };
    let log = dir.open_log("default", v2).unwrap();
    log.append(&(0..600).map(entry).collect::<Vec<_>>()).unwrap();
    log.compact().unwrap();
    log.prune(256).unwrap();
    drop(log);
    let log = dir.open_log("default", LogOptions::default()).unwrap();
    log.append(&(600..1100).map(entry).collect::<Vec<_>>()).unwrap();
    log.compact().unwrap();
    log.append(&(1100..1105).map(entry).collect::<Vec<_>>()).unwrap();
    drop(log);
    std::fs::remove_file(dir.log_dir("default").join("lock")).unwrap();
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// The frames of a pack file of `version` from entry `first`, checked
/// against its header and table.
fn frames(pack: &[u8], version: u8, first: u64, bundles: u32) -> Vec<&[u8]> {
    assert_eq!(
        &pack[..16],
        [b"STLPACKS".as_slice(), &[0, 0, 0, version, 0, 0, 0, 0]].concat()
    );
    assert_eq!(u64_at(pack, 16), first);
    assert_eq!(u32_at(pack, 24), bundles);
    let table_end = 32 + 16 * bundles as usize;
    assert_eq!(u32_at(pack, 28), crc32c::crc32c(&pack[32..table_end]));
    let mut at = table_end;
    let mut out = Vec::new();
    for k in 0..bundles as usize {
        let t = 32 + 16 * k;
        let (offset, len, crc) = (
            u64_at(pack, t) as usize,
            u32_at(pack, t + 8) as usize,
            u32_at(pack, t + 12),
        );
        assert_eq!(offset, at, "frames follow the table back to back");
        let frame = &pack[offset..offset + len];
        assert_eq!(crc32c::crc32c(frame), crc, "CRC-32C of the compressed frame {k}");
        assert_eq!(&frame[..4], [0x28, 0xb5, 0x2f, 0xfd], "zstd frame magic");
        out.push(frame);
        at += len;
    }
    assert_eq!(at, pack.len());
    out
}

#[test]
fn packs_have_the_documented_layout() {
    let dir = fixture().join("logs/default");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pack-"))
        .collect();
    names.sort();
    assert_eq!(names, ["pack-0000000000000100", "pack-0000000000000200"]);

    // Version 2, left by the prune through the first pack: whole records.
    let pack = std::fs::read(dir.join("pack-0000000000000100")).unwrap();
    let v2 = frames(&pack, 2, 256, 1);
    let records = zstd::decode_all(v2[0]).unwrap();
    let mut at = 0;
    for i in 256..512 {
        let e = entry(i);
        assert_eq!(u32_at(&records, at), e.len() as u32, "length of entry {i}");
        assert_eq!(u32_at(&records, at + 4), record_crc(&e, i), "crc of entry {i}");
        assert_eq!(&records[at + 8..at + 8 + e.len()], &e[..]);
        at += 8 + e.len();
    }
    assert_eq!(at, records.len());

    // Version 3: each entry's length and bytes, no record checksum; the
    // frame carries zstd's content checksum.
    let pack = std::fs::read(dir.join("pack-0000000000000200")).unwrap();
    let v3 = frames(&pack, 3, 512, 2);
    for (k, frame) in v3.iter().enumerate() {
        assert_ne!(frame[4] & 0x04, 0, "Content_Checksum_flag of frame {k}");
        let bare = zstd::decode_all(*frame).unwrap();
        let mut at = 0;
        for i in 512 + 256 * k as u64..768 + 256 * k as u64 {
            let e = entry(i);
            assert_eq!(u32_at(&bare, at), e.len() as u32, "length of entry {i}");
            assert_eq!(&bare[at + 4..at + 4 + e.len()], &e[..], "entry {i}");
            at += 4 + e.len();
        }
        assert_eq!(at, bare.len(), "nothing after the 256th entry");
        // The checksum is zstd's: XXH64 of the content, low 32 bits, the
        // frame's last 4 bytes (little-endian, as RFC 8878 has it).
        let stored = u32::from_le_bytes(frame[frame.len() - 4..].try_into().unwrap());
        let mut broken = frame.to_vec();
        let n = broken.len();
        broken[n - 4..].copy_from_slice(&(stored ^ 1).to_le_bytes());
        assert!(
            zstd::decode_all(&broken[..]).is_err(),
            "a wrong content checksum is refused"
        );
    }
    // The example in docs/ledger-format.md: the start of entry 512.
    let bare = zstd::decode_all(v3[0]).unwrap();
    assert_eq!(&bare[..25], b"\x00\x00\x00\x15{\"fixture\":3,\"n\":512}".as_slice());
}

#[test]
fn current_code_opens_verifies_reads_and_extends_it() {
    let tmp = tempfile::tempdir().unwrap();
    let to = tmp.path().join("logs/default");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(fixture().join("logs/default")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    let report = verify_log(&OsStorage, &to, None, None).unwrap();
    assert!(report.intact(), "{:?}", report.findings);
    assert_eq!((report.entries, report.pruned_below), (1105, 256));
    let dir = DataDir::new(tmp.path());
    let log = dir.open_log("default", LogOptions::default()).unwrap();
    // Reads, proofs, roots and tiles across both packs and the segment.
    let model: Vec<Vec<u8>> = (0..1105).map(entry).collect();
    common::check(&log, &model, 256);
    // A prune through the version 3 pack keeps its rest in version 3.
    log.prune(768).unwrap();
    let pack = std::fs::read(to.join("pack-0000000000000300")).unwrap();
    frames(&pack, 3, 768, 1);
    common::check(&log, &model, 768);
    drop(log);
    assert!(verify_log(&OsStorage, &to, None, None).unwrap().intact());
}
