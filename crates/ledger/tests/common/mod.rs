//! Helpers shared by the prune and compaction tests.
#![allow(clippy::unwrap_used, dead_code)]

use sealtrail_ledger::{DataDir, LedgerError, Log, LogOptions};
use sealtrail_merkle::{verify_consistency, verify_inclusion};
use sealtrail_storage::sim::SimStorage;
use sealtrail_storage::Storage;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

pub fn sim_dir(storage: &SimStorage) -> DataDir {
    DataDir::with_storage("/data", Arc::new(storage.clone()))
}

pub fn opts() -> LogOptions {
    LogOptions {
        derived_sync_every: 100,
        ..LogOptions::default()
    }
}

pub fn entry(i: u64) -> Vec<u8> {
    format!("{{\"n\":{i},\"pad\":\"{}\"}}", "p".repeat((i % 50) as usize)).into_bytes()
}

/// RFC 9162 hashes, computed here with SHA-256 directly.
pub fn leaf(e: &[u8]) -> [u8; 32] {
    Sha256::new().chain_update([0u8]).chain_update(e).finalize().into()
}

pub fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            let (l, r) = (mth(&leaves[..k]), mth(&leaves[k..]));
            Sha256::new()
                .chain_update([1u8])
                .chain_update(l)
                .chain_update(r)
                .finalize()
                .into()
        }
    }
}

pub fn append_n(log: &Log, model: &mut Vec<Vec<u8>>, n: u64, batch: u64) {
    let mut left = n;
    while left > 0 {
        let b = batch.min(left);
        let entries: Vec<Vec<u8>> = (0..b).map(|i| entry(model.len() as u64 + i)).collect();
        log.append(&entries).unwrap();
        model.extend(entries);
        left -= b;
    }
}

/// Bytes of the entry files (`entries`, `entries-<first>`) of a log.
pub fn entry_bytes(storage: &dyn Storage, dir: &Path) -> u64 {
    storage
        .list_files(dir)
        .unwrap()
        .iter()
        .filter(|n| n.starts_with("entries"))
        .map(|n| storage.read(&dir.join(n)).unwrap().len() as u64)
        .sum()
}

/// The log holds `model` with entries below `pruned` pruned: kept entries
/// read back, pruned ones are refused as pruned, proofs across and inside
/// the pruned range verify against independently computed roots.
pub fn check(log: &Log, model: &[Vec<u8>], pruned: u64) {
    let size = model.len() as u64;
    assert_eq!(log.size(), size);
    assert_eq!(log.pruned_below(), pruned);
    let leaves: Vec<[u8; 32]> = model.iter().map(|e| leaf(e)).collect();
    let root = mth(&leaves);
    assert_eq!(log.checkpoint().0.root, root);
    // Single reads of a sample (each decompresses a packed bundle), the
    // rest in one read below.
    let sample = (0..size).filter(|i| i % 61 == 0 || i % 256 == 255 || i % 256 == 0 || *i + 2 >= size);
    for i in sample {
        if i < pruned {
            match log.entry(i) {
                Err(LedgerError::Pruned { index, pruned_below }) => {
                    assert_eq!((index, pruned_below), (i, pruned));
                }
                other => panic!("entry {i} below {pruned}: {other:?}"),
            }
        } else {
            assert_eq!(log.entry(i).unwrap(), model[i as usize], "entry {i}");
        }
    }
    if pruned < size {
        assert_eq!(log.entries(pruned, size - pruned).unwrap(), model[pruned as usize..]);
    }
    for i in [0, pruned.saturating_sub(1), pruned, size - 1] {
        if i >= size {
            continue;
        }
        let p = log.inclusion_proof(i, size).unwrap();
        verify_inclusion(i, size, &leaves[i as usize], &p, &root).unwrap();
    }
    for old in [1, pruned / 2 + 1, pruned, pruned + 1] {
        if old == 0 || old > size {
            continue;
        }
        assert_eq!(log.root_at(old).unwrap(), mth(&leaves[..old as usize]));
        let p = log.consistency_proof(old, size).unwrap();
        verify_consistency(old, size, &mth(&leaves[..old as usize]), &root, &p).unwrap();
    }
    // Hash tiles of the pruned range: the leaf hashes themselves.
    if size >= 256 {
        let tile = log.tile(0, 0, 256).unwrap();
        assert_eq!(tile, leaves[..256].concat());
    }
}
