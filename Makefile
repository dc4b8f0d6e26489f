# The two commands of the README:
#   make demo   set up, then run the platform's main job on the embedded default
#   make test   set up, then run every test (what CI runs)
SWIFT ?= swift
FUZZ_SECONDS ?= 60

.PHONY: setup demo test unit-tests fuzz fuzz-long alloc-gate bench-results stress clean

setup:
	@scripts/setup.sh

demo: setup
	$(SWIFT) build -c release --product plexus
	.build/release/plexus demo

test: setup fuzz alloc-gate unit-tests

# Serial (busy-polling engines would starve each other on 2 cores); failures are repeated at the end.
unit-tests:
	SWIFT=$(SWIFT) scripts/test.sh

# Every decoder of bytes from a fabric or a network, fuzzed for FUZZ_SECONDS in all (CI: 60).
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

# The same, each target for FUZZ_LONG_SECONDS (default 600).
FUZZ_LONG_SECONDS ?= 600
fuzz-long: setup
	FUZZ_SECONDS_EACH=$(FUZZ_LONG_SECONDS) scripts/fuzz.sh

alloc-gate:
	scripts/bench-thresholds.sh

bench-results: setup
	scripts/bench-all.sh

# The long version of the RVI stress tests (CI runs a short one inside `make test`): millions of
# messages under loss, duplication, reordering, flapping legs, a killed leg and a peer restart.
# STRESS_MESSAGES and STRESS_SEED choose the size and the seed; the tests print both. Then the
# embedded platform at 64 processing nodes in namespaces (ScaleTests; root), which takes minutes.
STRESS_MESSAGES ?= 2000000
STRESS_SEED ?= 20261123
stress: setup
	$(SWIFT) build --build-tests
	PLEXUS_STRESS_MESSAGES=$(STRESS_MESSAGES) PLEXUS_STRESS_SEED=$(STRESS_SEED) \
		$(SWIFT) test --no-parallel --filter "RVIFaultTests"
	PLEXUS_STRESS=1 $(SWIFT) test --no-parallel --filter "ScaleTests"

clean:
	rm -rf .build Benchmarks/.build Fuzz/.build fuzz-artifacts
