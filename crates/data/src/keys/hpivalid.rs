//! Minimal unique column combinations by HPIValid (Birnick et al., VLDB
//! 2020): a combination is unique exactly when it hits the difference set
//! (the columns where they differ) of every pair of rows, so the minimal
//! keys are the minimal hitting sets of the difference sets. Computing all
//! of them is quadratic in rows; instead a few pairs are sampled from the
//! rows that share values, their minimal hitting sets are enumerated by a
//! tree search (MMCS, Murakami and Uno), and each candidate is checked on
//! the data by refining stripped partitions. A candidate that fails yields
//! the rows it fails on, hence new difference sets, and the search goes on
//! from where it stands.
//!
//! Exactness: a candidate that passes is a minimal key, since every column
//! of it is the only one of it to hit some real difference set. Pruning by
//! minimality on a partial set of difference sets could in principle cut a
//! branch that more difference sets would have kept, so the search is run
//! again over the final sets whenever a run added any: the last run adds
//! none, and then its leaves are exactly the minimal hitting sets (of at
//! most `max_columns` columns) of a set of difference sets whose every
//! minimal hitting set is a key — which are all the minimal keys.

use std::collections::HashSet;

use super::bits::Bits;
use super::table::{Partition, Scratch, Table, UNIQUE};

/// Pairs sampled from a partition with `p` row pairs: `p ^ EXPONENT`.
const SAMPLE_EXPONENT: f64 = 0.3;

/// A small deterministic generator (SplitMix64): runs are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The search state. Edges are difference sets (column sets); edge marks
/// are sets of edge numbers.
struct Search<'t> {
    table: &'t Table,
    max_columns: usize,
    edges: Vec<Bits>,
    /// Per column, the edges containing it.
    hits: Vec<Bits>,
    /// Per column, its rank by how much it groups rows (sum of squared
    /// group sizes): ties between branching edges go to the one whose
    /// worst column separates rows best.
    rank: Vec<usize>,
    /// Candidates found unique on the data. (One found not unique never
    /// comes back: it gained an edge it misses.)
    unique: HashSet<Bits>,
    /// Keys found in the current run.
    keys: Vec<Bits>,
    added: bool,
    rng: Rng,
    // Partitions along the current path: `levels[k]` is the partition of
    // the first `k + 1` columns of `path`, valid for `k < computed`.
    path: Vec<usize>,
    levels: Vec<Partition>,
    computed: usize,
    scratch: Scratch,
}

/// Every minimal key of at most `max_columns` columns, as sorted column
/// numbers, sorted. The table has at least two rows.
pub(crate) fn minimal_keys(table: &Table, max_columns: usize) -> Vec<Vec<usize>> {
    let n_cols = table.columns.len();
    let mut search = Search::new(table, max_columns);
    // Two equal rows: no combination is unique.
    if !search.all_columns_unique() {
        return Vec::new();
    }
    search.add_edge(Bits::full(n_cols));
    for c in 0..n_cols {
        let sampled = sample(table, &mut search.rng, &table.partitions[c]);
        for e in sampled {
            search.add_edge(e);
        }
    }
    search.minimize_edges();
    loop {
        search.added = false;
        search.keys.clear();
        search.run();
        if !search.added {
            break;
        }
        search.minimize_edges();
    }
    let mut keys: Vec<Vec<usize>> = search.keys.iter().map(|k| k.ones().collect()).collect();
    keys.sort();
    keys.dedup();
    keys
}

impl<'t> Search<'t> {
    fn new(table: &'t Table, max_columns: usize) -> Search<'t> {
        let n_cols = table.columns.len();
        let mut weight: Vec<(u64, usize)> = table
            .partitions
            .iter()
            .enumerate()
            .map(|(c, p)| (p.groups().map(|g| (g.len() as u64).pow(2)).sum(), c))
            .collect();
        weight.sort();
        let mut rank = vec![0; n_cols];
        for (pos, &(_, c)) in weight.iter().enumerate() {
            rank[c] = pos;
        }
        Search {
            table,
            max_columns,
            edges: Vec::new(),
            hits: vec![Bits::new(0); n_cols],
            rank,
            unique: HashSet::new(),
            keys: Vec::new(),
            added: false,
            rng: Rng(0x5EA1_7BA1),
            path: Vec::new(),
            levels: Vec::new(),
            computed: 0,
            scratch: Scratch::default(),
        }
    }

    fn all_columns_unique(&mut self) -> bool {
        let table = self.table;
        let mut order: Vec<usize> = (0..table.columns.len()).collect();
        order.sort_by_key(|&c| table.partitions[c].rows.len());
        let mut current = table.partitions[order[0]].clone();
        let mut next = Partition::default();
        for &c in &order[1..] {
            if current.is_unique() {
                break;
            }
            current.intersect(&table.groups[c], &mut next, &mut self.scratch);
            std::mem::swap(&mut current, &mut next);
        }
        current.is_unique()
    }

    fn add_edge(&mut self, edge: Bits) {
        let i = self.edges.len();
        for c in edge.ones() {
            self.hits[c].set(i);
        }
        self.edges.push(edge);
    }

    /// Drops duplicate edges and edges that contain another: they change no
    /// minimal hitting set.
    fn minimize_edges(&mut self) {
        let mut edges = std::mem::take(&mut self.edges);
        edges.sort_by_key(Bits::count);
        edges.dedup();
        let mut kept: Vec<Bits> = Vec::new();
        for e in edges {
            if !kept.iter().any(|k| k.is_subset(&e)) {
                kept.push(e);
            }
        }
        for h in &mut self.hits {
            *h = Bits::new(kept.len());
        }
        for e in kept {
            self.add_edge(e);
        }
    }

    fn run(&mut self) {
        let n_cols = self.table.columns.len();
        let mut s = Bits::new(n_cols);
        let mut cand = Bits::full(n_cols);
        let mut crit: Vec<Bits> = Vec::new();
        let mut uncov = Bits::full(self.edges.len());
        self.path.clear();
        self.computed = 0;
        self.extend(&mut s, &mut cand, &mut crit, &mut uncov);
    }

    /// One node of the tree search: `s` the columns chosen, `cand` those
    /// still allowed, `crit[i]` the edges that column `path[i]` alone of
    /// `s` hits, `uncov` the edges `s` misses.
    fn extend(&mut self, s: &mut Bits, cand: &mut Bits, crit: &mut Vec<Bits>, uncov: &mut Bits) {
        if uncov.is_empty() {
            let before = self.edges.len();
            if self.check(s) {
                self.keys.push(s.clone());
                return;
            }
            // The rows `s` fails on gave edges that `s` misses (as does
            // every ancestor's set): go on from here.
            for e in before..self.edges.len() {
                uncov.set(e);
            }
            for c in crit.iter_mut() {
                c.grow(self.edges.len());
            }
        }
        if s.count() >= self.max_columns {
            return;
        }
        // Branch on the missed edge with fewest allowed columns.
        let mut best: Option<(usize, usize, usize)> = None;
        for e in uncov.ones() {
            let (count, nice) = self.edges[e].and_count_max(cand, |v| self.rank[v]);
            if best.is_none_or(|(bc, bn, _)| (count, nice) < (bc, bn)) {
                best = Some((count, nice, e));
            }
        }
        let Some((_, _, e)) = best else { return };
        let branch = self.edges[e].and(cand);
        cand.remove_all(&branch);
        for v in branch.ones() {
            // Adding v must leave every chosen column an edge of its own.
            let violates = crit.iter().any(|c| c.is_subset(&self.hits[v]));
            if !violates {
                let mut removed = Vec::with_capacity(crit.len());
                for c in crit.iter_mut() {
                    removed.push(c.and(&self.hits[v]));
                    c.remove_all(&self.hits[v]);
                }
                let mine = uncov.and(&self.hits[v]);
                uncov.remove_all(&self.hits[v]);
                crit.push(mine);
                s.set(v);
                self.path.push(v);

                self.extend(s, cand, crit, uncov);

                self.path.pop();
                if self.computed > self.path.len() {
                    self.computed = self.path.len();
                }
                s.reset(v);
                let mine = crit.pop().unwrap_or_default();
                uncov.union_with(&mine);
                for (c, r) in crit.iter_mut().zip(&removed) {
                    c.union_with(r);
                }
                // Edges added below stay in `uncov`; no column here hits
                // them alone.
                for c in crit.iter_mut() {
                    c.grow(self.edges.len());
                }
            }
            cand.set(v);
        }
    }

    /// Whether the columns `s` (also `self.path`) are unique; if not, adds
    /// difference sets of rows they fail on.
    fn check(&mut self, s: &Bits) -> bool {
        if self.unique.contains(s) {
            return true;
        }
        let depth = self.path.len();
        while self.levels.len() < depth {
            self.levels.push(Partition::default());
        }
        let table = self.table;
        for k in self.computed.max(1)..depth {
            let (before, after) = self.levels.split_at_mut(k);
            let (base, by) = if k == 1 {
                // Two columns: refine the smaller partition by the other,
                // the same groups for less work.
                let (a, b) = (self.path[0], self.path[1]);
                if table.partitions[a].rows.len() <= table.partitions[b].rows.len() {
                    (&table.partitions[a], b)
                } else {
                    (&table.partitions[b], a)
                }
            } else {
                (&before[k - 1], self.path[k])
            };
            base.intersect(&table.groups[by], &mut after[0], &mut self.scratch);
        }
        self.computed = depth;
        let partition = if depth == 1 {
            &table.partitions[self.path[0]]
        } else {
            &self.levels[depth - 1]
        };
        let unique = partition.is_unique();
        if unique {
            self.unique.insert(s.clone());
        } else {
            for e in sample(table, &mut self.rng, partition) {
                self.add_edge(e);
            }
            self.added = true;
        }
        unique
    }
}

/// Difference sets of row pairs drawn from the groups of `partition`,
/// weighted by the pairs each group holds.
fn sample(table: &Table, rng: &mut Rng, partition: &Partition) -> Vec<Bits> {
    let groups = partition.group_count();
    if groups == 0 {
        return Vec::new();
    }
    let mut cumulative = Vec::with_capacity(groups);
    let mut total = 0u64;
    for g in partition.groups() {
        let n = g.len() as u64;
        total += n * (n - 1) / 2;
        cumulative.push(total);
    }
    let draws = ((total as f64).powf(SAMPLE_EXPONENT).round() as usize).max(1);
    let n_cols = table.columns.len();
    let mut out: Vec<Bits> = Vec::new();
    for _ in 0..draws {
        let pick = rng.below(total);
        let g = cumulative.partition_point(|&c| c <= pick);
        let start = partition.starts[g] as usize;
        let size = (partition.starts[g + 1] as usize - start) as u64;
        let i = rng.below(size);
        let j = (i + 1 + rng.below(size - 1)) % size;
        let a = partition.rows[start + i as usize] as usize;
        let b = partition.rows[start + j as usize] as usize;
        let mut edge = Bits::new(n_cols);
        for (c, col) in table.groups.iter().enumerate() {
            if col[a] != col[b] || col[a] == UNIQUE {
                edge.set(c);
            }
        }
        if !out.contains(&edge) {
            out.push(edge);
        }
    }
    out
}
