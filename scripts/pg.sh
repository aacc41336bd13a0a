# A throwaway PostgreSQL cluster for the tests and benchmarks: a temp dir
# owned by the `postgres` user (PostgreSQL refuses to run as root), a free
# loopback port, trust authentication for the `crewship` role. Sourced by
# the scripts; `pg_start [SETTINGS]` (extra postgresql.conf lines) sets
# CREWSHIP_PG_URL, CREWSHIP_PG_DATA and CREWSHIP_PG_BIN, `pg_stop` removes
# the cluster.

pg_bin() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/pg_ctl" ] && { echo "$dir"; return 0; }
    done
    return 1
}

# Runs a PostgreSQL program as the cluster's owner.
pg_as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_start() {
    CREWSHIP_PG_BIN="$(pg_bin)" || { apt_install postgresql && CREWSHIP_PG_BIN="$(pg_bin)"; }
    local root
    root="$(mktemp -d /tmp/crewship-pg.XXXXXX)"
    CREWSHIP_PG_DATA="$root/data"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$root"
    chmod 700 "$root"
    local port
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    pg_as_owner "$CREWSHIP_PG_BIN/initdb" -D "$CREWSHIP_PG_DATA" -A trust -U crewship >/dev/null
    # Many daemons share the cluster at once, each with a pool.
    cat >>"$CREWSHIP_PG_DATA/postgresql.conf" <<EOF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$root'
max_connections = 600
${1:-}
EOF
    pg_as_owner "$CREWSHIP_PG_BIN/pg_ctl" -D "$CREWSHIP_PG_DATA" -l "$root/log" -w start >/dev/null
    CREWSHIP_PG_URL="postgres://crewship@127.0.0.1:$port/postgres"
    export CREWSHIP_PG_URL CREWSHIP_PG_DATA CREWSHIP_PG_BIN
    echo "==> PostgreSQL $("$CREWSHIP_PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($root)"
}

pg_stop() {
    [ -n "${CREWSHIP_PG_DATA:-}" ] || return 0
    pg_as_owner "$CREWSHIP_PG_BIN/pg_ctl" -D "$CREWSHIP_PG_DATA" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$(dirname "$CREWSHIP_PG_DATA")"
    unset CREWSHIP_PG_DATA
}
