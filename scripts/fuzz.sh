#!/usr/bin/env bash
# Builds every fuzz target (Fuzz/, a package of its own) with libFuzzer + AddressSanitizer and
# runs each for a bounded time: FUZZ_SECONDS in all, shared between the targets (default 60;
# `make fuzz-long` gives each target FUZZ_SECONDS_EACH instead). Seeds come from
# Fuzz/corpus/<target>/ and the corpus a target grows is kept under .build/fuzz/; a crash lands
# in fuzz-artifacts/ and fails the script.
#
# The targets are instrumented with -sanitize-coverage (what -sanitize=fuzzer adds) and linked
# with libFuzzer's no-main library: SwiftPM sets an executable's entry point itself, so each
# target calls libFuzzer's driver from its own main.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# target:corpus folder
targets=(FrameDecoderFuzz:frame-decoder LANMessageFuzz:lan-message ControlMessageFuzz:control-message
         MembershipFuzz:membership TableMessageFuzz:table-message RVIControlFuzz:rvi-control
         RDMATrailerFuzz:rdma-trailer StorageMessageFuzz:storage-message)
total="${FUZZ_SECONDS:-60}"
each="${FUZZ_SECONDS_EACH:-$(( total / ${#targets[@]} > 1 ? total / ${#targets[@]} : 1 ))}"
resource_dir="$(dirname "$(dirname "$(readlink -f "$(command -v swiftc)")")")/lib/clang"
fuzzer_lib="$(ls "$resource_dir"/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a 2>/dev/null | head -n 1)"
[ -n "$fuzzer_lib" ] || { echo "fuzz: libclang_rt.fuzzer_no_main not found under $resource_dir" >&2; exit 1; }
out=.build/fuzz
mkdir -p "$out" fuzz-artifacts
if ! (cd Fuzz && swift build -c release \
        -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp \
        -Xlinker --whole-archive -Xlinker "$fuzzer_lib" -Xlinker --no-whole-archive -Xlinker -lstdc++) \
        >"$out/build.log" 2>&1; then
    grep -v 'Cannot export local symbol' "$out/build.log" | tail -n 40 >&2
    echo "fuzz: building the fuzz targets failed" >&2
    exit 1
fi
bin="$(cd Fuzz && swift build -c release --show-bin-path)"
for entry in "${targets[@]}"; do
    t="${entry%%:*}" name="${entry#*:}"
    mkdir -p "$out/corpus/$name" "Fuzz/corpus/$name"
    if ! "$bin/$t" -max_total_time="$each" -max_len=17000 -seed=1 -artifact_prefix=fuzz-artifacts/ \
            "$out/corpus/$name" "Fuzz/corpus/$name" >"$out/$name.log" 2>&1; then
        tail -n 40 "$out/$name.log" >&2
        echo "fuzz: $name crashed; the input is in fuzz-artifacts/" >&2
        exit 1
    fi
    echo "fuzz: $name ran ${each} s with no crash ($(grep -oE 'Done [0-9]+ runs' "$out/$name.log" | head -n 1))"
done
