#!/usr/bin/env bash
# Installs what the test suite needs beyond cargo, idempotently:
#   - .venv with the official `openai`, `anthropic`, `google-genai` and `boto3` Python SDKs (from PyPI)
#   - cargo-nextest, if missing (the Makefile falls back to `cargo test` without it)
#   - etcd (Debian's etcd-server) for the etcd discovery e2e test, when missing and we are root
#     (otherwise that test skips, or fails in CI)
#   - `ip` (Debian's iproute2) for the network-partition e2e test, which puts each gateway in
#     its own network namespace, when missing and we are root (otherwise that test skips, or
#     fails in CI)
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
if ! .venv/bin/python -c 'import anthropic' 2>/dev/null; then
  echo "test-deps: installing the anthropic Python SDK into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check 'anthropic>=0.40,<1'
fi
if ! .venv/bin/python -c 'from google import genai' 2>/dev/null; then
  echo "test-deps: installing the google-genai Python SDK into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check 'google-genai>=1.20,<2'
fi
if ! .venv/bin/python -c 'import boto3' 2>/dev/null; then
  echo "test-deps: installing the boto3 Python SDK (AWS Bedrock) into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check 'boto3>=1.35,<2'
fi
echo "test-deps: python $(.venv/bin/python -c 'import openai; print("openai", openai.__version__)')"
echo "test-deps: python $(.venv/bin/python -c 'import anthropic; print("anthropic", anthropic.__version__)')"
echo "test-deps: python $(.venv/bin/python -c 'from google import genai; print("google-genai", genai.__version__)')"
echo "test-deps: python $(.venv/bin/python -c 'import boto3; print("boto3", boto3.__version__)')"

if command -v etcd >/dev/null 2>&1; then
  echo "test-deps: $(etcd --version | head -n 1)"
elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test-deps: installing etcd-server"
  apt-get install -y etcd-server >/dev/null || { apt-get update -q >/dev/null && apt-get install -y etcd-server >/dev/null; }
else
  echo "test-deps: etcd not found and not root; the etcd discovery test will skip (install etcd-server)"
fi

if command -v ip >/dev/null 2>&1; then
  echo "test-deps: $(ip -V)"
elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test-deps: installing iproute2"
  apt-get install -y iproute2 >/dev/null || { apt-get update -q >/dev/null && apt-get install -y iproute2 >/dev/null; }
else
  echo "test-deps: ip not found and not root; the network partition test will skip (install iproute2)"
fi
