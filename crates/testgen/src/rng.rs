//! SplitMix64 (Steele, Lea and Flood, 2014): a tiny, fast generator whose
//! whole state is one `u64`, so a seed fixes every draw. Statistical
//! quality is ample for test data; it is not for cryptography.

/// The generator. Each draw advances the state by a fixed odd constant and
/// scrambles it with the SplitMix64 finaliser (`mix`).
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng {
            state: mix(seed ^ 0x5851_f42d_4c95_7f2d),
        }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    /// Uniform in `0..n` (multiply-high; the bias is below 2^-32 for the
    /// small `n` used here). `n` must be positive.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A position in a slice of length `n`, uniformly. `n` must be positive.
    #[inline]
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub(crate) fn unit(&mut self) -> f64 {
        unit(self.next_u64())
    }

    #[inline]
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One of `items`, uniformly. `items` must not be empty.
    #[inline]
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// An index in `0..n` skewed towards 0: `n · u^power`, so with power
    /// 2.5 the first 1% of the population draws about 16% of the picks.
    #[inline]
    pub(crate) fn skewed(&mut self, n: usize, power: Skew) -> usize {
        skewed(self.next_u64(), n, power)
    }

    /// Roughly normal with mean 0 and deviation 1 (the sum of four
    /// uniforms, rescaled); enough for a log-normal duration.
    #[inline]
    pub(crate) fn gauss(&mut self) -> f64 {
        let sum = self.unit() + self.unit() + self.unit() + self.unit();
        (sum - 2.0) * 3f64.sqrt()
    }
}

/// How strongly [`Rng::skewed`] favours low indexes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Skew {
    /// u²
    Mild,
    /// u^2.5
    Strong,
    /// u⁴
    Zipf,
}

#[inline]
pub(crate) fn skewed(bits: u64, n: usize, power: Skew) -> usize {
    let u = unit(bits);
    let v = match power {
        Skew::Mild => u * u,
        Skew::Strong => u * u * u.sqrt(),
        Skew::Zipf => {
            let sq = u * u;
            sq * sq
        }
    };
    ((v * n as f64) as usize).min(n.saturating_sub(1))
}

#[inline]
pub(crate) fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// SplitMix64's finaliser: a bijection on `u64` that scrambles every bit,
/// used also to derive stable per-actor and per-event values.
#[inline]
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws_and_bounds_hold() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let mut c = Rng::new(8);
        let mut differs = false;
        for _ in 0..1000 {
            let x = a.next_u64();
            assert_eq!(x, b.next_u64());
            differs |= x != c.next_u64();
            assert!(a.below(13) < 13);
            let u = a.unit();
            assert!((0.0..1.0).contains(&u));
            assert!(a.skewed(5, Skew::Zipf) < 5);
            b.next_u64();
            b.next_u64();
            b.next_u64();
        }
        assert!(differs);
    }
}
