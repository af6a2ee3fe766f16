//! Tree shape and proof generation over hashes kept elsewhere.
//!
//! A tree is addressed by *nodes*: node `(level, n)` is the root of the
//! complete subtree over leaves `[n·2^level, (n+1)·2^level)`. Only complete
//! subtrees are ever stored; everything else (roots of other sizes, proofs) is
//! computed from them in O(log n) node reads. Storage is the caller's
//! business, reached through [`NodeSource`].

use crate::hash::{node_hash, split_point, Hash, EMPTY_ROOT};

/// Where proof generation reads complete-subtree hashes from.
pub trait NodeSource {
    type Error;
    /// The hash of node `(level, n)`. Only asked for complete subtrees that
    /// lie within the tree the caller is working on.
    fn node(&self, level: u8, n: u64) -> Result<Hash, Self::Error>;
}

/// Position of node `(level, n)` in the post-order sequence in which an
/// append-only log completes its subtrees: leaf 0, leaf 1, node (1,0),
/// leaf 2, … . Appends only ever add to the end of this sequence, so a flat
/// file of 32-byte hashes in this order gives O(1) addressing of any node.
pub fn stored_index(level: u8, n: u64) -> u64 {
    // The leaf that makes the count (n+1)·2^level completes this node and
    // every ancestor up to level trailing_zeros(count), in that order, so
    // this node sits that many places before the end of the sequence.
    let count = (n + 1) << level;
    stored_count(count) - 1 - (count.trailing_zeros() as u64 - level as u64)
}

/// Number of complete-subtree hashes a tree of `size` leaves has.
pub fn stored_count(size: u64) -> u64 {
    2 * size - size.count_ones() as u64
}

/// The complete subtrees a new leaf at `index` completes, lowest first:
/// `(0, index)`, then `(1, index/2)` if `index` is odd, and so on.
pub fn completed_by(index: u64) -> impl Iterator<Item = (u8, u64)> {
    let levels = (index.trailing_ones() + 1) as u8;
    (0..levels).map(move |l| (l, index >> l))
}

/// Hash of leaves `[lo, hi)` as RFC 9162 MTH defines it, where `lo` is a
/// multiple of the largest power of two not exceeding `hi - lo` (true of
/// every range RFC 9162 proofs ask for).
fn range_hash<S: NodeSource>(src: &S, lo: u64, hi: u64) -> Result<Hash, S::Error> {
    let width = hi - lo;
    if width.is_power_of_two() {
        let level = width.trailing_zeros() as u8;
        return src.node(level, lo >> level);
    }
    // Right-fold over the complete subtrees of the range, largest first.
    let mut subtrees = Vec::with_capacity(64);
    let mut start = lo;
    let mut rest = width;
    while rest > 0 {
        let level = 63 - rest.leading_zeros() as u8;
        subtrees.push(src.node(level, start >> level)?);
        start += 1 << level;
        rest -= 1 << level;
    }
    let mut acc = subtrees.pop().unwrap_or(EMPTY_ROOT);
    while let Some(left) = subtrees.pop() {
        acc = node_hash(&left, &acc);
    }
    Ok(acc)
}

/// Root of the tree of the first `size` leaves.
pub fn tree_root<S: NodeSource>(src: &S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    range_hash(src, 0, size)
}

/// RFC 9162 §2.1.3.1 inclusion proof for leaf `index` in the tree of `size`
/// leaves, leaf sibling first. Panics if `index >= size`; callers check.
pub fn inclusion_proof<S: NodeSource>(src: &S, index: u64, size: u64) -> Result<Vec<Hash>, S::Error> {
    assert!(
        index < size,
        "inclusion_proof: index {index} outside tree of size {size}"
    );
    let mut proof = Vec::with_capacity(64);
    // Walk from the root down, recording the sibling subtree at each split;
    // the proof lists them from the leaf up.
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            proof.push(range_hash(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(range_hash(src, lo, lo + k)?);
            lo += k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// RFC 9162 §2.1.4.1 consistency proof from the tree of `old_size` leaves to
/// the tree of `new_size` leaves. Empty when `old_size` is 0 or equals
/// `new_size`. Panics if `old_size > new_size`; callers check.
pub fn consistency_proof<S: NodeSource>(src: &S, old_size: u64, new_size: u64) -> Result<Vec<Hash>, S::Error> {
    assert!(old_size <= new_size, "consistency_proof: {old_size} > {new_size}");
    let mut proof = Vec::with_capacity(64);
    if old_size == 0 || old_size == new_size {
        return Ok(proof);
    }
    // SUBPROOF(m, D[lo:hi], b), unrolled: descend while recording the
    // sibling at each step; the recursion appends siblings after the inner
    // proof, so collect them and reverse at the end.
    let (mut lo, mut hi, mut m, mut whole) = (0u64, new_size, old_size, true);
    let mut siblings = Vec::with_capacity(64);
    loop {
        let n = hi - lo;
        if m == n {
            if !whole {
                proof.push(range_hash(src, lo, hi)?);
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            siblings.push(range_hash(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            siblings.push(range_hash(src, lo, lo + k)?);
            lo += k;
            m -= k;
            whole = false;
        }
    }
    siblings.reverse();
    proof.extend(siblings);
    Ok(proof)
}

/// The right edge of an append-only tree: the roots of its maximal complete
/// subtrees, largest first. Enough to append leaves and compute the root
/// without reading anything else.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    subtrees: Vec<Hash>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuild the frontier of a tree of `size` leaves from stored nodes
    /// (one read per set bit of `size`).
    pub fn load<S: NodeSource>(src: &S, size: u64) -> Result<Self, S::Error> {
        let mut subtrees = Vec::with_capacity(size.count_ones() as usize);
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size & (1 << level) != 0 {
                subtrees.push(src.node(level, start >> level)?);
                start += 1 << level;
            }
        }
        Ok(Self { size, subtrees })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append a leaf hash; calls `stored` with each node it completes, in
    /// stored (post-order) sequence: the leaf itself, then its parents.
    pub fn push(&mut self, leaf: Hash, mut stored: impl FnMut(u8, u64, &Hash)) {
        let index = self.size;
        let mut acc = leaf;
        stored(0, index, &acc);
        for level in 1..=(index.trailing_ones() as u8) {
            // The subtree to our left at this level is on the frontier's end.
            let left = self.subtrees.pop().unwrap_or(EMPTY_ROOT);
            acc = node_hash(&left, &acc);
            stored(level, index >> level, &acc);
        }
        self.subtrees.push(acc);
        self.size += 1;
    }

    pub fn root(&self) -> Hash {
        let mut it = self.subtrees.iter().rev();
        let Some(last) = it.next() else { return EMPTY_ROOT };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// A whole tree in memory, storing every complete subtree. The reference
/// model for tests and the source for small in-memory proofs.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    /// `levels[l][n]` is node `(l, n)`.
    levels: Vec<Vec<Hash>>,
    frontier: Frontier,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, leaf: Hash) {
        let levels = &mut self.levels;
        self.frontier.push(leaf, |level, n, hash| {
            let level = level as usize;
            if levels.len() <= level {
                levels.push(Vec::new());
            }
            debug_assert_eq!(levels[level].len() as u64, n);
            levels[level].push(*hash);
        });
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub fn root(&self) -> Hash {
        self.frontier.root()
    }
}

impl NodeSource for MemoryTree {
    type Error = std::convert::Infallible;
    fn node(&self, level: u8, n: u64) -> Result<Hash, Self::Error> {
        Ok(self.levels[level as usize][n as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{leaf_hash, root_of};

    fn tree(n: u64) -> (MemoryTree, Vec<Hash>) {
        let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut t = MemoryTree::new();
        leaves.iter().for_each(|l| t.push(*l));
        (t, leaves)
    }

    #[test]
    fn stored_index_matches_push_order() {
        let mut f = Frontier::new();
        let mut seq = 0u64;
        for _ in 0..1000 {
            f.push([0; 32], |level, n, _| {
                assert_eq!(stored_index(level, n), seq, "node ({level},{n})");
                seq += 1;
            });
        }
        assert_eq!(stored_count(1000), seq);
    }

    #[test]
    fn frontier_and_range_roots_match_reference() {
        for n in 0..70u64 {
            let (t, leaves) = tree(n);
            let want = root_of(&leaves);
            assert_eq!(t.root(), want, "frontier root, n={n}");
            assert_eq!(tree_root(&t, n).unwrap_or(EMPTY_ROOT), want, "stored root, n={n}");
            assert_eq!(Frontier::load(&t, n).map(|f| f.root()).unwrap_or(EMPTY_ROOT), want);
        }
    }

    #[test]
    fn completed_by_lists_parents() {
        assert_eq!(completed_by(0).collect::<Vec<_>>(), vec![(0, 0)]);
        assert_eq!(completed_by(3).collect::<Vec<_>>(), vec![(0, 3), (1, 1), (2, 0)]);
        assert_eq!(completed_by(4).collect::<Vec<_>>(), vec![(0, 4)]);
    }
}
