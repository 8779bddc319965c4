# Entry points. `make run` starts one gateway; `make test` installs what the tests need and
# runs every check CI runs.

CARGO ?= cargo
CONFIG ?= config/single-node.json
PORT ?= 8080
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: run run-mock build test test-deps lint unit e2e bench clean-test

## Build and start one gateway on :$(PORT) with $(CONFIG).
run:
	$(CARGO) build --release -p bifrost-gateway
	OPENAI_API_KEY="$${OPENAI_API_KEY-}" ANTHROPIC_API_KEY="$${ANTHROPIC_API_KEY-}" \
		./target/release/bifrost-gateway --config $(CONFIG) --port $(PORT)

## Start the mock LLM provider on 127.0.0.1:9090 (the `mock` provider in the example config).
run-mock:
	$(CARGO) run --release -p bifrost-e2e --bin mock-provider -- --port 9090

build:
	$(CARGO) build --workspace --bins

## Everything CI checks: formatting, lints, unit, integration and end-to-end tests.
test: test-deps lint build
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --workspace --no-fail-fast
else
	$(CARGO) test --workspace --no-fail-fast
endif

test-deps:
	./scripts/test-deps.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@# The config types must build without the server (the operator embeds them).
	$(CARGO) check -p bifrost-gateway --no-default-features --lib

## Unit tests only (no processes started).
unit:
	$(CARGO) test --workspace --lib --bins

## Multi-process tests only.
e2e: test-deps build
	$(CARGO) test -p bifrost-e2e --tests

## Latency, CPU and memory numbers (prints; never fails on timings).
bench:
	./scripts/bench.sh
