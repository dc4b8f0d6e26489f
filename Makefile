# The two commands of the README:
#   make demo   set up, then run the platform's main job on the embedded default
#   make test   set up, then run every test (what CI runs)
SWIFT ?= swift
FUZZ_SECONDS ?= 60

.PHONY: setup demo test unit-tests fuzz alloc-gate bench-results clean

setup:
	@scripts/setup.sh

demo: setup
	$(SWIFT) build -c release --product plexus
	.build/release/plexus demo

test: setup fuzz alloc-gate unit-tests

# Serial: engines that busy-poll would otherwise starve each other on a 2-core machine.
unit-tests:
	$(SWIFT) build --build-tests
	$(SWIFT) test --no-parallel

fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

alloc-gate:
	scripts/bench-thresholds.sh

bench-results: setup
	scripts/bench-all.sh

clean:
	rm -rf .build Benchmarks/.build fuzz-artifacts
