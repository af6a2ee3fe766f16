#!/usr/bin/env bash
# Runs every fuzz target for a while on stable Rust (no sanitizer), one after
# the other, each on fuzz/corpus/<target> (grown and kept between runs,
# gitignored) seeded from fuzz/seeds/<target>, and replays the regression
# inputs in fuzz/regressions/<target>. Prints libFuzzer's closing line per
# target. Usage: fuzz/run_all.sh [SECONDS_PER_TARGET] [TARGET...]
set -u
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build --sanitizer none || exit 1
mkdir -p fuzz/logs
failed=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    if [ -d "fuzz/regressions/$t" ]; then
        # Replay known inputs first: each must now pass.
        for f in "fuzz/regressions/$t"/*; do
            [ -f "$f" ] || continue
            if ! "fuzz/target/x86_64-unknown-linux-gnu/release/$t" "$f" >"fuzz/logs/$t.regressions.log" 2>&1; then
                echo "$t: regression input $f still fails (see fuzz/logs/$t.regressions.log)"
                failed+=("$t")
            fi
        done
    fi
    cargo fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" --sanitizer none -- \
        -max_total_time="$secs" -print_final_stats=1 >"fuzz/logs/$t.log" 2>&1
    rc=$?
    summary=$(grep -E '^#[0-9]+[[:space:]]+DONE' "fuzz/logs/$t.log" | tail -1 | tr '\t' ' ')
    execs=$(grep -E '^stat::number_of_executed_units' "fuzz/logs/$t.log" | awk '{print $2}')
    echo "$t: exit $rc; ${summary:-no DONE line}; executions ${execs:-?}"
    [ $rc -eq 0 ] || failed+=("$t")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]} (crash inputs in fuzz/artifacts/<target>/)"
    exit 1
fi
echo "all ${#targets[@]} targets ran without a crash"
