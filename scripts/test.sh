#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: installs what the
# tests drive (Prometheus and promtool from Debian, Python's
# prometheus_client in a venv), then runs cargo's tests, fmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    apt_install prometheus
fi

if [ ! -x .venv/bin/python ]; then
    echo "==> creating the Python venv (.venv)"
    # Debian's own python3 needs python3-venv for this.
    python3 -m venv .venv 2>/dev/null || { apt_install python3-venv && python3 -m venv .venv; }
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r scripts/requirements.txt
export CREWSHIP_TEST_PYTHON="$PWD/.venv/bin/python"

echo "==> cargo fmt --check"
cargo fmt --check
echo "==> cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --locked -- --test-threads="${CREWSHIP_TEST_THREADS:-4}"
