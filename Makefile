# Entry points. `make run` starts one gateway; `make test` installs what the tests need and
# runs every check CI runs.

CARGO ?= cargo
CONFIG ?= config/single-node.json
PORT ?= 8080
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

# A CI build runs once: incremental compilation only costs time and disk there.
ifdef CI
export CARGO_INCREMENTAL := 0
endif

.PHONY: run run-mock cluster-local build test test-deps lint unit e2e bench fuzz clean-test crds chart-check operator-e2e

## Build and start one gateway on :$(PORT) with $(CONFIG).
run:
	$(CARGO) build --release -p bifrost-gateway
	OPENAI_API_KEY="$${OPENAI_API_KEY-}" ANTHROPIC_API_KEY="$${ANTHROPIC_API_KEY-}" \
		./target/release/bifrost-gateway --config $(CONFIG) --port $(PORT)

## Start the mock LLM provider on 127.0.0.1:9090 (the `mock` provider in the example config).
run-mock:
	$(CARGO) run --release -p bifrost-e2e --bin mock-provider -- --port 9090

## Three gateways on loopback (HTTP 8081-8083, gossip 10111-10113) with a throwaway PostgreSQL
## and the mock provider on :9090, from config/cluster-local/; Ctrl-C stops everything.
cluster-local:
	CARGO=$(CARGO) ./scripts/cluster-local.sh

build:
	$(CARGO) build --workspace --bins

## Everything CI checks: formatting, lints, unit, integration and end-to-end tests; the tests
## run against a throwaway PostgreSQL (scripts/with-postgres.sh) as well as SQLite.
test: test-deps lint chart-check build
ifeq ($(NEXTEST),yes)
	./scripts/with-postgres.sh $(CARGO) nextest run --workspace --no-fail-fast
else
	./scripts/with-postgres.sh $(CARGO) test --workspace --no-fail-fast
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

## Long fuzz runs (nightly toolchain and `cargo install cargo-fuzz`): every target, or
## FUZZ_TARGETS="config gossip_open", FUZZ_SECONDS each; corpora grow in gateway/fuzz/corpus/.
## `make test` runs the same targets briefly on stable (gateway/tests/fuzz_smoke.rs).
FUZZ_TARGETS ?= config peers_file translate_json translate_sse gossip_open
FUZZ_SECONDS ?= 600
fuzz:
	cd gateway/fuzz && for target in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$target && \
		cargo +nightly fuzz run $$target corpus/$$target seeds/$$target -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=65536 -print_final_stats=1 || exit 1; \
	done

## Regenerate the BifrostCluster CRD from the Rust types (the repo copy and the chart's).
crds:
	$(CARGO) run --quiet -p bifrost-operator -- crd > crds/bifrostcluster.yaml
	cp crds/bifrostcluster.yaml charts/bifrost-operator/crds/bifrostcluster.yaml

## Fetch helm (into .tools/), check the chart's CRD copy and lint the chart.
chart-check:
	./scripts/helm.sh

## The operator against a real cluster (needs KUBECONFIG; skipped without it).
operator-e2e:
	@if [ -z "$$KUBECONFIG" ]; then echo "operator-e2e skipped: KUBECONFIG is not set (point it at a disposable cluster)"; exit 0; fi
	$(CARGO) test -p bifrost-operator --test kube_e2e -- --ignored --nocapture
