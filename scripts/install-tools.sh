#!/usr/bin/env bash
# Installs the tools `make bench` needs. Safe to run repeatedly: a tool that already runs is skipped.
set -euo pipefail

CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"

# Finds a tool on PATH or in cargo's bin directory (which may not be on PATH yet).
have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "$CARGO_BIN/$1" ]
}

install_oha() {
    if have oha && { oha --version >/dev/null 2>&1 || "$CARGO_BIN/oha" --version >/dev/null 2>&1; }; then
        echo "install-tools: oha already installed ($( (oha --version 2>/dev/null || "$CARGO_BIN/oha" --version) | head -n1))"
        return
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "install-tools: cargo not found; install Rust from https://rustup.rs first" >&2
        exit 1
    fi
    echo "install-tools: installing oha with 'cargo install oha --locked' (takes a few minutes)..."
    if ! cargo install oha --locked; then
        echo "install-tools: 'cargo install oha --locked' failed; see the cargo output above" >&2
        exit 1
    fi
    echo "install-tools: oha installed into $CARGO_BIN"
}

install_oha
