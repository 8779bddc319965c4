#!/usr/bin/env bash
# Installs what the test suite needs beyond cargo, idempotently:
#   - .venv with the official `openai` Python SDK (from PyPI)
#   - cargo-nextest, if missing (the Makefile falls back to `cargo test` without it)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  echo "test-deps: creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import openai' 2>/dev/null; then
  echo "test-deps: installing the openai Python SDK into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check 'openai>=1.40,<3'
fi
echo "test-deps: python $(.venv/bin/python -c 'import openai; print("openai", openai.__version__)')"
