//! The benchmarks' settings, read from `SEALTRAIL_BENCH_*` variables.

use std::str::FromStr;

/// The value of variable `name`, or `default` when it is unset. `_` and
/// `,` may group digits (`10_000_000`). A value that does not parse stops
/// `bench` with a message naming the variable and exit status 2, so a
/// typo never runs the benchmark with a default nobody asked for.
pub fn knob<T: FromStr>(bench: &str, name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.replace(['_', ','], "").parse().unwrap_or_else(|_| {
            eprintln!("{bench} bench: {name}={v} is not a valid value");
            std::process::exit(2)
        }),
        Err(_) => default,
    }
}
