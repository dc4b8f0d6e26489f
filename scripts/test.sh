#!/usr/bin/env bash
# Runs every Swift test serially and, when any fails, repeats each failure's lines at the very end
# of the output: CI keeps only the tail of a long log, and a failure 2000 lines up is lost there.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SWIFT=${SWIFT:-swift}
log=$(mktemp /tmp/plexus-test.XXXXXX)
trap 'rm -f "$log"' EXIT
$SWIFT build --build-tests || exit $?
# Serial: engines that busy-poll would otherwise starve each other on a 2-core machine.
$SWIFT test --no-parallel "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
    echo
    echo "==== failures (repeated from above) ===="
    # Swift Testing marks failed expectations and tests with ✘; XCTest prints "error:".
    grep -E '✘|error:|Fatal error|Test Case .* failed' "$log" | grep -v '^✘ Test run' | head -60
    grep -E '^✘ Test run|Executed .* tests' "$log" | tail -2
fi
exit "$status"
