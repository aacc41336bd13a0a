#!/usr/bin/env bash
# Runs the benchmarks at scale and rewrites docs/performance.md: installs wrk
# (Debian) if missing, raises the open-file limit, builds in release mode and
# runs the bench target `benches/scale` (data set generated on the first run
# and reused while its parameters are unchanged), with a throwaway
# PostgreSQL cluster (installed from Debian if missing) for phase (f).
#
#   scripts/bench.sh                  # everything (about 5 min once the data set exists)
#   scripts/bench.sh --only snapshot  # extra arguments go to `scale run`
#
# CREWSHIP_BENCH_DATA: where the stores live (default: ../bench-data, next to
# the repository, never inside it; the big store takes about 4 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

. scripts/lib.sh
. scripts/pg.sh

command -v wrk >/dev/null 2>&1 || apt_install wrk

# 1 000 concurrent scrapers and 1 000 WebSockets need descriptors on both ends.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
    echo "warning: open-file limit is $(ulimit -n); the retry storm and WebSocket phases need about 2100" >&2
fi

data="${CREWSHIP_BENCH_DATA:-$(cd .. && pwd)/bench-data}"
mkdir -p "$data"
echo "==> data directory: $data ($(df -h "$data" | awk 'NR==2 {print $4}') free)"

echo "==> cargo build (release)"
cargo bench --locked --bench scale --no-run

trap pg_stop EXIT
# Memory for a database this size on a 24 GiB machine, and room for the
# bulk copy's WAL; durability settings stay at their defaults.
pg_start "shared_buffers = 2GB
max_wal_size = 8GB"

echo "==> benchmarks"
cargo bench --locked --bench scale -- run --data "$data" --report docs/performance.md \
    --postgres "$CREWSHIP_PG_URL" "$@"

echo "==> done in $(( $(date +%s) - started )) s; figures in docs/performance.md"
