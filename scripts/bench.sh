#!/usr/bin/env bash
# Benchmarks bifrost-gateway against the mock provider with oha and prints a table; the numbers
# also go to target/bench/results.json. Then the cluster benchmark (counter convergence on 5
# nodes, gossip bytes with 1,000 keys, rate-limit overshoot in gossip and strict mode on 3
# nodes) prints its own tables and writes target/bench/cluster.json; it needs PostgreSQL, so
# this script runs the bench under scripts/with-postgres.sh, which uses the server named by
# BIFROST_TEST_POSTGRES_URL when set and otherwise starts a throwaway one. Arguments go to the
# bench binary (see `--help`), e.g.
#   scripts/bench.sh --duration 5
#   scripts/bench.sh --skip-cluster      # single gateway only, no PostgreSQL
#   scripts/bench.sh --cluster-only
# Before those, scripts/bench-body-memory.sh prints the peak-RSS cost of large request bodies
# (skip it with BENCH_BODY_MEMORY=0).
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

scripts/install-tools.sh

echo "bench: building release binaries"
cargo build --release -p bifrost-gateway -p bifrost-e2e --bins

if [ "${BENCH_BODY_MEMORY:-1}" != "0" ]; then
    scripts/bench-body-memory.sh --no-build
fi

export BIFROST_BIN_DIR="$PWD/target/release"
for arg in "$@"; do
    if [ "$arg" = "--skip-cluster" ]; then
        exec target/release/bench "$@"
    fi
done
exec scripts/with-postgres.sh target/release/bench "$@"
