#!/usr/bin/env bash
# Builds the frame-decoder fuzz target with libFuzzer + AddressSanitizer and runs it for a
# bounded time (default 60 s; FUZZ_SECONDS overrides). Seeds come from Fuzz/corpus; crashes land
# in fuzz-artifacts/ and fail the script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${FUZZ_SECONDS:-60}"
out=.build/fuzz
mkdir -p "$out" fuzz-artifacts "$out/corpus"
cp Fuzz/corpus/* "$out/corpus/" 2>/dev/null || true
if ! swiftc -parse-as-library -sanitize=fuzzer,address -O -g \
    Fuzz/FrameDecoderFuzz.swift Sources/PlexusCore/WireFormat.swift -o "$out/frame-decoder-fuzz" \
    >"$out/build.log" 2>&1; then
    grep -v 'Cannot export local symbol' "$out/build.log" >&2
    exit 1
fi
"$out/frame-decoder-fuzz" -max_total_time="$seconds" -max_len=17000 -seed=1 \
    -artifact_prefix=fuzz-artifacts/ "$out/corpus" 2>&1 | tail -n 5
echo "fuzz: frame decoder ran ${seconds} s with no crash"
