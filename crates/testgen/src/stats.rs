//! The summaries the benchmarks print of their rounds, and the load the
//! machine was under while they ran.

/// The median of `xs` (the mean of the middle two for an even count).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let k = v.len() / 2;
    if v.len() % 2 == 1 {
        v[k]
    } else {
        (v[k - 1] + v[k]) / 2.0
    }
}

/// `median [least–greatest]` of `xs`, each with `digits` decimals.
pub fn spread(xs: &[f64], digits: usize) -> String {
    let least = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let greatest = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.digits$} [{least:.digits$}–{greatest:.digits$}]", median(xs))
}

/// The 1-minute load average, as `uptime` shows it ("unknown" where
/// there is no procfs).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(spread(&[0.9, 0.84, 0.875], 2), "0.88 [0.84–0.90]");
        assert_eq!(spread(&[1.0, 1.25], 3), "1.125 [1.000–1.250]");
    }
}
