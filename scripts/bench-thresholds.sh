#!/usr/bin/env bash
# Allocation gate for the PlexusCore data path (called from CI).
#
# Builds Benchmarks/ in release mode, runs every benchmark measuring mallocCountTotal only, and
# compares the p90 of each with Benchmarks/Thresholds/CoreBenchmarks.<name>.p90.json. Every
# threshold is an exact allocation count (0 on the frame path), so the gate fails when a count
# goes up (a regression) and also when it goes down (update the thresholds in the same change):
#
#   cd Benchmarks && swift package --allow-writing-to-package-directory \
#       benchmark thresholds update --metric mallocCountTotal
#
# It also fails when a benchmark crashes (a loopback benchmark crashes on purpose when frames are
# lost, a wait times out, or any single iteration allocates on the frame path), and when a
# benchmark has no threshold file (it would not be checked at all). Wall clock is never gated.
#
# Exit status: 0 when every count equals its threshold, 1 otherwise.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../Benchmarks"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

fail() {
    echo "bench-thresholds: FAIL: $*" >&2
    exit 1
}

# 1. Every benchmark has a threshold file (this also builds the benchmarks, in release mode).
set +e
swift package benchmark list >"$log" 2>&1
status=$?
set -e
if [ "$status" -ne 0 ]; then
    cat "$log"
    fail "building or listing the benchmarks failed (exit $status)"
fi
mapfile -t names < <(awk '/available benchmarks:/ { on = 1; next } on && NF == 0 { on = 0 } on { print $1 }' "$log")
[ "${#names[@]}" -gt 0 ] || { cat "$log"; fail "no benchmarks listed"; }
missing=0
for name in "${names[@]}"; do
    if [ ! -f "Thresholds/CoreBenchmarks.$name.p90.json" ]; then
        echo "bench-thresholds: no Thresholds/CoreBenchmarks.$name.p90.json for benchmark $name" >&2
        missing=1
    fi
done
[ "$missing" -eq 0 ] || fail "benchmarks without thresholds (run the update command in this script's header)"
echo "bench-thresholds: checking ${#names[@]} benchmarks: ${names[*]}"

# 2. The check itself.
set +e
swift package benchmark thresholds check --metric mallocCountTotal --no-progress 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if grep -q "failed during runtime\|benchmarkCrashed\|Likely your benchmark crashed" "$log"; then
    fail "a benchmark crashed (its reason is printed above, before the backtrace)"
fi
if grep -q "is WORSE than the defined thresholds" "$log"; then
    fail "allocation count regression (see the table above)"
fi
if grep -q "is BETTER than the defined thresholds" "$log"; then
    fail "allocation counts went down: update the thresholds (command in this script's header) and commit them"
fi
if [ "$status" -ne 0 ]; then
    fail "swift package benchmark thresholds check exited $status"
fi
grep -q "is EQUAL to the defined thresholds" "$log" || fail "the check did not report EQUAL"
echo "bench-thresholds: OK: every mallocCountTotal equals its threshold"
