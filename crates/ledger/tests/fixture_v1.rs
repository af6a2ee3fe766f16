//! A log written by format version 1 (tests/fixtures/v1, committed) must
//! stay readable, byte for byte as docs/ledger-format.md describes it.
#![allow(clippy::unwrap_used)]

use sealtrail_ledger::format::{self, record_crc, Slot, SLOT_LEN};
use sealtrail_ledger::storage::OsStorage;
use sealtrail_ledger::verify::verify_log;
use sealtrail_ledger::{DataDir, LogOptions};
use sealtrail_merkle::checkpoint::open_checkpoint;
use sealtrail_merkle::hash::root_of;
use sealtrail_merkle::note::Verifier;
use sealtrail_merkle::tree::stored_count;
use sealtrail_merkle::{leaf_hash, Hash};
use std::path::{Path, PathBuf};

const ENTRIES: [&[u8]; 5] = [
    b"fixture entry 0",
    br#"{"action":"user.login","actor":{"id":"alice"}}"#,
    b"",
    "third entry: tabs\tand unicode é".as_bytes(),
    b"fifth entry, second batch",
];

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

#[test]
fn files_have_the_documented_layout() {
    let dir = fixture().join("logs/default");
    let entries = std::fs::read(dir.join("entries")).unwrap();
    assert_eq!(&entries[..16], b"STLENTRS\0\0\0\x01\0\0\0\0");
    let mut at = 16usize;
    let mut offsets = Vec::new();
    for (i, e) in ENTRIES.iter().enumerate() {
        offsets.push(at as u64);
        assert_eq!(
            entries[at..at + 4],
            (e.len() as u32).to_be_bytes(),
            "length of entry {i}"
        );
        assert_eq!(
            entries[at + 4..at + 8],
            record_crc(e, i as u64).to_be_bytes(),
            "crc of entry {i}"
        );
        assert_eq!(&entries[at + 8..at + 8 + e.len()], *e);
        at += 8 + e.len();
    }
    assert_eq!(at, entries.len());

    let index = std::fs::read(dir.join("index")).unwrap();
    assert_eq!(&index[..8], b"STLINDEX");
    let stored: Vec<u64> = index[16..]
        .chunks(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(stored, offsets);

    let hashes = std::fs::read(dir.join("hashes")).unwrap();
    assert_eq!(&hashes[..8], b"STLHASHS");
    assert_eq!(hashes.len() as u64, 16 + stored_count(5) * 32);
    let leaves: Vec<Hash> = ENTRIES.iter().map(|e| leaf_hash(e)).collect();
    // Post-order: leaf0 leaf1 node(1,0) leaf2 leaf3 node(1,1) node(2,0) leaf4.
    assert_eq!(hashes[16..48], leaves[0]);
    assert_eq!(hashes[16 + 32 * 7..16 + 32 * 8], leaves[4]);
    assert_eq!(hashes[16 + 32 * 6..16 + 32 * 7], root_of(&leaves[..4]));

    let cp = std::fs::read(dir.join("checkpoint")).unwrap();
    assert_eq!(cp.len(), 2 * SLOT_LEN);
    let slots: Vec<Slot> = cp.chunks(SLOT_LEN).filter_map(|s| Slot::decode(s).ok()).collect();
    let current = slots.iter().max_by_key(|s| s.seq).unwrap();
    let verifier = Verifier::parse(std::fs::read_to_string(dir.join("log.pub")).unwrap().trim()).unwrap();
    let (checkpoint, _) = open_checkpoint(&current.note, &verifier).unwrap();
    assert_eq!(checkpoint.size, 5);
    assert_eq!(checkpoint.root, root_of(&leaves));
    assert_eq!(checkpoint.origin, "sealtrail.localhost/default");
    assert_eq!(format::VERSION, 1);
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
    let dir = DataDir::new(tmp.path());
    let log = dir.open_log("default", LogOptions::default()).unwrap();
    for (i, e) in ENTRIES.iter().enumerate() {
        assert_eq!(log.entry(i as u64).unwrap(), *e);
    }
    // Opening alone converts nothing.
    let cp = std::fs::read(to.join("checkpoint")).unwrap();
    assert!(format::has_v1_slot(&cp));
    log.append(&[b"appended by today's code"]).unwrap();
    // The first checkpoint written converts the directory: both slots are
    // version 2, so no release that reads only version 1 finds the older
    // checkpoint and cuts the log back to it.
    let cp = std::fs::read(to.join("checkpoint")).unwrap();
    assert!(!format::has_v1_slot(&cp));
    for slot in cp.chunks(SLOT_LEN) {
        assert_eq!(slot[8..12], [0, 0, 0, 2]);
        assert_eq!(Slot::decode(slot).unwrap().pruned_below, 0);
    }
    drop(log);
    assert!(verify_log(&OsStorage, &to, None, None).unwrap().intact());
    let log = dir.open_log("default", LogOptions::default()).unwrap();
    assert_eq!(log.size(), 6);
    assert_eq!(log.entry(5).unwrap(), b"appended by today's code");
}
