#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: installs what the
# tests drive (Prometheus, promtool, sqlite3, systemd-analyze and PostgreSQL from
# Debian; Python's prometheus_client, opentelemetry-proto and schemathesis in a venv), checks fmt and clippy, then runs the tests:
# the integration suite twice, on SQLite and on a throwaway PostgreSQL
# cluster, and finally the README's install lines (release builds).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh
. scripts/pg.sh

missing=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
# systemd-analyze verifies the shipped unit (deploy/systemd).
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
pg_bin >/dev/null || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

if [ ! -x .venv/bin/python ]; then
    echo "==> creating the Python venv (.venv)"
    # Debian's own python3 needs python3-venv for this.
    python3 -m venv .venv 2>/dev/null || { apt_install python3-venv && python3 -m venv .venv; }
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r scripts/requirements.txt
export CREWSHIP_TEST_PYTHON="$PWD/.venv/bin/python"

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
threads="${CREWSHIP_TEST_THREADS:-4}"
# The CLI's binary is another crate's: the daemon's tests run it.
echo "==> cargo build --workspace"
cargo build --workspace --locked
echo "==> cargo test (SQLite)"
# PostgreSQL-only tests skip in this pass, since one follows; anywhere else
# under CI they fail when there is no PostgreSQL.
CREWSHIP_TEST_PASS=sqlite cargo test --workspace --locked -- --test-threads="$threads"

trap pg_stop EXIT
pg_start
echo "==> cargo test --test it (PostgreSQL)"
CREWSHIP_TEST_PASS=postgresql CREWSHIP_TEST_DATABASE_URL="$CREWSHIP_PG_URL" CREWSHIP_TEST_PG_DATA="$CREWSHIP_PG_DATA" \
    CREWSHIP_TEST_PG_BIN="$CREWSHIP_PG_BIN" cargo test --locked --test it -- --test-threads="$threads"

echo "==> the README's install lines (release builds)"
scripts/install_check.sh
