//! Proof generation against the reference tree: every generated proof
//! verifies, and for random sizes the stored-node algorithms agree with the
//! in-memory recursive definition of RFC 9162.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use sealtrail_merkle::hash::root_of;
use sealtrail_merkle::*;

fn tree(n: u64) -> (MemoryTree, Vec<Hash>) {
    let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    let mut t = MemoryTree::new();
    leaves.iter().for_each(|l| t.push(*l));
    (t, leaves)
}

#[test]
fn every_proof_in_small_trees_verifies() {
    let (t, leaves) = tree(40);
    for size in 1..=40u64 {
        let root = tree_root(&t, size).unwrap();
        assert_eq!(root, root_of(&leaves[..size as usize]));
        for i in 0..size {
            let p = inclusion_proof(&t, i, size).unwrap();
            verify_inclusion(i, size, &leaves[i as usize], &p, &root).unwrap();
            // The same proof must not verify any other leaf.
            let other = (i + 1) % size;
            if other != i {
                assert!(verify_inclusion(other, size, &leaves[i as usize], &p, &root).is_err());
            }
        }
        for old in 1..=size {
            let old_root = tree_root(&t, old).unwrap();
            let p = consistency_proof(&t, old, size).unwrap();
            verify_consistency(old, size, &old_root, &root, &p).unwrap();
            if old < size {
                assert!(verify_consistency(old, size, &root, &old_root, &p).is_err());
            }
        }
    }
}

proptest! {
    #[test]
    fn proofs_verify_and_tampering_fails(size in 1u64..600, seed in any::<u64>(), bit in 0usize..256) {
        let (t, leaves) = tree(size);
        let index = seed % size;
        let old = 1 + seed.rotate_left(17) % size;
        let root = tree_root(&t, size).unwrap();
        let p = inclusion_proof(&t, index, size).unwrap();
        prop_assert!(verify_inclusion(index, size, &leaves[index as usize], &p, &root).is_ok());
        if !p.is_empty() {
            let mut bad = p.clone();
            let k = bit % bad.len();
            bad[k][bit / 8 % 32] ^= 1 << (bit % 8);
            prop_assert!(verify_inclusion(index, size, &leaves[index as usize], &bad, &root).is_err());
        }
        let old_root = tree_root(&t, old).unwrap();
        let c = consistency_proof(&t, old, size).unwrap();
        prop_assert!(verify_consistency(old, size, &old_root, &root, &c).is_ok());
        if !c.is_empty() {
            let mut bad = c.clone();
            let k = bit % bad.len();
            bad[k][bit / 8 % 32] ^= 1 << (bit % 8);
            prop_assert!(verify_consistency(old, size, &old_root, &root, &bad).is_err());
        }
    }
}
