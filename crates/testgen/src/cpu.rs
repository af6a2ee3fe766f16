//! The CPU clock the benchmarks read beside their wall clocks: on a shared
//! machine, CPU time per event is steadier than events per second.

/// CPU seconds this process has used so far, user and system, all threads
/// (exited ones included), from `/proc/self/stat` in clock ticks of 10 ms.
/// NaN where there is no procfs, so a missing reading never looks like a
/// measurement.
pub fn process_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // The fields after the command name, which is in parentheses and may
    // hold spaces; this slice starts at field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // utime and stime are fields 14 and 15 of the line.
    (ticks(11) + ticks(12)) / 100.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_time_grows_with_work() {
        let before = super::process_cpu_secs();
        assert!(before >= 0.0, "{before}");
        // Burn well over one 10 ms tick.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(100) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = super::process_cpu_secs();
        assert!(after > before, "{before} then {after}");
    }
}
