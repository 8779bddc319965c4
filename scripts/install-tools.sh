#!/usr/bin/env bash
# Installs the tools `make bench` needs into cargo's bin directory. Safe to run repeatedly: a
# tool that already runs is left alone.
set -euo pipefail

CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$CARGO_BIN:$PATH"

if ! command -v cargo >/dev/null 2>&1; then
    echo "install-tools: cargo not found; install Rust from https://rustup.rs first" >&2
    exit 1
fi

if version="$(oha --version 2>/dev/null)"; then
    echo "install-tools: $version already installed"
else
    echo "install-tools: installing oha (cargo install oha --locked; takes a few minutes)"
    if ! cargo install oha --locked; then
        echo "install-tools: 'cargo install oha --locked' failed; see cargo's output above" >&2
        exit 1
    fi
    echo "install-tools: $(oha --version) installed in $CARGO_BIN"
fi
