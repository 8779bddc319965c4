#!/usr/bin/env bash
# Benchmarks bifrost-gateway against the mock provider with oha and prints a table; the numbers
# also go to target/bench/results.json. Arguments go to the bench binary (see `--help`), e.g.
#   scripts/bench.sh --duration 5
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

scripts/install-tools.sh

echo "bench: building release binaries"
cargo build --release -p bifrost-gateway -p bifrost-e2e --bins

BIFROST_BIN_DIR="$PWD/target/release" exec target/release/bench "$@"
