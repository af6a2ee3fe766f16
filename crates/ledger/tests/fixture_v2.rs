//! A log in format version 2 (tests/fixtures/v2, committed): packed,
//! pruned and with entry segments. It must stay readable, byte for byte
//! as docs/ledger-format.md describes it.
//!
//! `SEALTRAIL_WRITE_FIXTURE_V2=<dir> cargo test -p sealtrail-ledger --test
//! fixture_v2 -- --ignored write_fixture` wrote it.
#![allow(clippy::unwrap_used)]

use sealtrail_ledger::format::{record_crc, Slot, SLOT_LEN};
use sealtrail_ledger::storage::OsStorage;
use sealtrail_ledger::verify::verify_log;
use sealtrail_ledger::{DataDir, LedgerError, LogOptions};
use sealtrail_merkle::checkpoint::open_checkpoint;
use sealtrail_merkle::note::Verifier;
use sealtrail_merkle::{leaf_hash, Hash};
use std::path::{Path, PathBuf};

fn entry(i: u64) -> Vec<u8> {
    if i < 600 {
        format!("{{\"fixture\":2,\"n\":{i}}}").into_bytes()
    } else {
        format!("appended after the prune {i}").into_bytes()
    }
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2")
}

#[test]
#[ignore = "writes the committed fixture"]
fn write_fixture() {
    let Ok(out) = std::env::var("SEALTRAIL_WRITE_FIXTURE_V2") else {
        return;
    };
    let dir = DataDir::new(&out);
    dir.create_log("default", None).unwrap();
    let log = dir.open_log("default", LogOptions::default()).unwrap();
    let first: Vec<Vec<u8>> = (0..600).map(entry).collect();
    log.append(&first).unwrap();
    log.compact().unwrap();
    log.prune(256).unwrap();
    let more: Vec<Vec<u8>> = (600..605).map(entry).collect();
    log.append(&more).unwrap();
    drop(log);
    std::fs::remove_file(dir.log_dir("default").join("lock")).unwrap();
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// Check records `bytes` hold entries `first..` back to back.
fn check_records(bytes: &[u8], first: u64, count: u64) {
    let mut at = 0usize;
    for i in first..first + count {
        let e = entry(i);
        assert_eq!(u32_at(bytes, at), e.len() as u32, "length of entry {i}");
        assert_eq!(u32_at(bytes, at + 4), record_crc(&e, i), "crc of entry {i}");
        assert_eq!(&bytes[at + 8..at + 8 + e.len()], &e[..]);
        at += 8 + e.len();
    }
    assert_eq!(at, bytes.len());
}

#[test]
fn files_have_the_documented_layout() {
    let dir = fixture().join("logs/default");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "checkpoint",
            "entries-0000000000000200",
            "entries-0000000000000258",
            "hashes",
            "index",
            "log.key",
            "log.pub",
            "pack-0000000000000100",
        ]
    );

    // Segment: 32-byte header (first entry, its log offset), then records.
    let index = std::fs::read(dir.join("index")).unwrap();
    let seg = std::fs::read(dir.join("entries-0000000000000200")).unwrap();
    assert_eq!(&seg[..16], b"STLENTRS\0\0\0\x02\0\0\0\0");
    assert_eq!(u64_at(&seg, 16), 512);
    assert_eq!(u64_at(&seg, 24), u64_at(&index, 16 + 512 * 8));
    check_records(&seg[32..], 512, 88);
    let seg = std::fs::read(dir.join("entries-0000000000000258")).unwrap();
    assert_eq!(
        (u64_at(&seg, 16), u64_at(&seg, 24)),
        (600, u64_at(&index, 16 + 600 * 8))
    );
    check_records(&seg[32..], 600, 5);

    // Pack: header, table of (offset, length, crc) per bundle, zstd frames.
    let pack = std::fs::read(dir.join("pack-0000000000000100")).unwrap();
    assert_eq!(&pack[..16], b"STLPACKS\0\0\0\x02\0\0\0\0");
    assert_eq!(u64_at(&pack, 16), 256);
    assert_eq!(u32_at(&pack, 24), 1);
    assert_eq!(u32_at(&pack, 28), crc32c::crc32c(&pack[32..48]));
    let (offset, len, crc) = (
        u64_at(&pack, 32) as usize,
        u32_at(&pack, 40) as usize,
        u32_at(&pack, 44),
    );
    assert_eq!(offset, 48);
    assert_eq!(offset + len, pack.len());
    let frame = &pack[offset..offset + len];
    assert_eq!(crc32c::crc32c(frame), crc);
    assert_eq!(&frame[..4], [0x28, 0xb5, 0x2f, 0xfd], "zstd frame magic");
    check_records(&zstd::decode_all(frame).unwrap(), 256, 256);

    // Checkpoint slots, version 2, with the pruned boundary.
    let cp = std::fs::read(dir.join("checkpoint")).unwrap();
    assert_eq!(cp.len(), 2 * SLOT_LEN);
    for slot in cp.chunks(SLOT_LEN) {
        assert_eq!(&slot[..12], b"STLCKPNT\0\0\0\x02");
    }
    let current = cp
        .chunks(SLOT_LEN)
        .map(|s| Slot::decode(s).unwrap())
        .max_by_key(|s| s.seq)
        .unwrap();
    assert_eq!(current.pruned_below, 256);
    let raw = &cp[(current.seq % 2) as usize * SLOT_LEN..];
    assert_eq!(u64_at(raw, 40), 256);
    let note_len = u32_at(raw, 12) as usize;
    assert_eq!(&raw[48..48 + note_len], &current.note[..]);
    assert_eq!(u32_at(raw, 48 + note_len), crc32c::crc32c(&raw[..48 + note_len]));
    let verifier = Verifier::parse(std::fs::read_to_string(dir.join("log.pub")).unwrap().trim()).unwrap();
    let (checkpoint, _) = open_checkpoint(&current.note, &verifier).unwrap();
    assert_eq!(checkpoint.size, 605);
    let leaves: Vec<Hash> = (0..605).map(|i| leaf_hash(&entry(i))).collect();
    assert_eq!(checkpoint.root, sealtrail_merkle::hash::root_of(&leaves));
}

#[test]
fn current_code_opens_verifies_and_extends_it() {
    let tmp = tempfile::tempdir().unwrap();
    let to = tmp.path().join("logs/default");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(fixture().join("logs/default")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    let report = verify_log(&OsStorage, &to, None, None).unwrap();
    assert!(report.intact(), "{:?}", report.findings);
    assert_eq!((report.entries, report.pruned_below), (605, 256));
    let dir = DataDir::new(tmp.path());
    let log = dir.open_log("default", LogOptions::default()).unwrap();
    assert_eq!(log.pruned_below(), 256);
    assert!(matches!(
        log.entry(255),
        Err(LedgerError::Pruned {
            index: 255,
            pruned_below: 256
        })
    ));
    let want: Vec<Vec<u8>> = (256..605).map(entry).collect();
    assert_eq!(log.entries(256, 349).unwrap(), want);
    let more: Vec<Vec<u8>> = (605..800).map(|i| format!("today {i}").into_bytes()).collect();
    log.append(&more).unwrap();
    assert_eq!(log.compact().unwrap().to, 768);
    assert_eq!(log.entry(700).unwrap(), b"today 700");
    drop(log);
    assert!(verify_log(&OsStorage, &to, None, None).unwrap().intact());
}
