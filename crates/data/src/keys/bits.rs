//! A growable bit set over small dense indices: column sets in the search,
//! and sets of difference-set numbers (which grow while the search runs).

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Bits {
    words: Vec<u64>,
}

impl Bits {
    /// An empty set able to hold `len` indices without growing.
    pub(crate) fn new(len: usize) -> Bits {
        Bits {
            words: vec![0; len.div_ceil(64)],
        }
    }

    /// The set `{0, …, len - 1}`.
    pub(crate) fn full(len: usize) -> Bits {
        let mut bits = Bits::new(len);
        for i in 0..len {
            bits.set(i);
        }
        bits
    }

    pub(crate) fn grow(&mut self, len: usize) {
        let words = len.div_ceil(64);
        if words > self.words.len() {
            self.words.resize(words, 0);
        }
    }

    pub(crate) fn set(&mut self, i: usize) {
        let w = i / 64;
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (i % 64);
    }

    pub(crate) fn reset(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w &= !(1 << (i % 64));
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    fn word(&self, i: usize) -> u64 {
        self.words.get(i).copied().unwrap_or(0)
    }

    /// `|self ∩ other|`, and the largest `key` of its members (0 if none).
    pub(crate) fn and_count_max(&self, other: &Bits, key: impl Fn(usize) -> usize) -> (usize, usize) {
        let (mut count, mut max) = (0, 0);
        for (i, (&a, &b)) in self.words.iter().zip(&other.words).enumerate() {
            let mut w = a & b;
            count += w.count_ones() as usize;
            while w != 0 {
                max = max.max(key(i * 64 + w.trailing_zeros() as usize));
                w &= w - 1;
            }
        }
        (count, max)
    }

    pub(crate) fn is_subset(&self, other: &Bits) -> bool {
        self.words.iter().enumerate().all(|(i, &w)| w & !other.word(i) == 0)
    }

    pub(crate) fn and(&self, other: &Bits) -> Bits {
        Bits {
            words: self.words.iter().enumerate().map(|(i, &w)| w & other.word(i)).collect(),
        }
    }

    pub(crate) fn union_with(&mut self, other: &Bits) {
        if other.words.len() > self.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    pub(crate) fn remove_all(&mut self, other: &Bits) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= !b;
        }
    }

    /// The members, ascending.
    pub(crate) fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(i * 64 + bit)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations_across_words() {
        let mut a = Bits::new(10);
        a.set(3);
        a.set(70);
        let mut b = Bits::new(130);
        b.set(70);
        b.set(129);
        assert_eq!(a.ones().collect::<Vec<_>>(), vec![3, 70]);
        assert!(!a.is_subset(&b));
        assert_eq!(a.and_count_max(&b, |i| i + 1), (1, 71));
        let mut c = a.and(&b);
        assert_eq!(c.ones().collect::<Vec<_>>(), vec![70]);
        assert!(c.is_subset(&a) && c.is_subset(&b));
        c.union_with(&b);
        assert_eq!(c.ones().collect::<Vec<_>>(), vec![70, 129]);
        c.remove_all(&a);
        assert_eq!(c.ones().collect::<Vec<_>>(), vec![129]);
        c.reset(129);
        assert!(c.is_empty());
        assert_eq!(Bits::full(65).count(), 65);
    }
}
