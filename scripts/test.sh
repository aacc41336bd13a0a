#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: installs what the
# tests drive (Prometheus and promtool from Debian, Python's
# prometheus_client in a venv), then runs cargo's tests, fmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for tool in prometheus promtool; do
    command -v "$tool" >/dev/null 2>&1 || missing+=(prometheus)
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing Debian packages: prometheus"
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "==> creating the Python venv (.venv)"
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r scripts/requirements.txt
export CREWSHIP_TEST_PYTHON="$PWD/.venv/bin/python"

echo "==> cargo fmt --check"
cargo fmt --check
echo "==> cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --locked -- --test-threads="${CREWSHIP_TEST_THREADS:-4}"
