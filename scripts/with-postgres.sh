#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL server:
#
#   scripts/with-postgres.sh cargo nextest run --workspace
#
# initdb in a fresh temp dir, a free TCP port on 127.0.0.1, trust auth, durability off (it is
# thrown away). Exports BIFROST_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:<port>/postgres
# for the command, then always stops the server and removes its directory, and exits with the
# command's exit code. When BIFROST_TEST_POSTGRES_URL is already set, runs the command against
# that server instead. WITH_POSTGRES_PORT picks a fixed port instead of a free one (for configs
# that name the port, like config/cluster-local/). initdb refuses to run as root, so as root the
# server runs as the `postgres` user.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 <command...>" >&2
    exit 2
fi

if [ -n "${BIFROST_TEST_POSTGRES_URL:-}" ]; then
    echo "with-postgres: using the server at BIFROST_TEST_POSTGRES_URL" >&2
    exec "$@"
fi

find_pg_bin() {
    local dir
    for dir in "$(dirname "$(command -v initdb 2>/dev/null || echo /missing/initdb)")" \
        /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

if ! PG_BIN="$(find_pg_bin)"; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "with-postgres: installing PostgreSQL server binaries from Debian's packages" >&2
        # Binaries only: no cluster, so no server is left running by the install.
        mkdir -p /etc/postgresql-common/createcluster.d
        echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/bifrost-tests.conf
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    PG_BIN="$(find_pg_bin)" || {
        echo "with-postgres: initdb/pg_ctl not found; install PostgreSQL (Debian: apt-get install postgresql)" >&2
        exit 1
    }
fi

# As root, run the server as `postgres`; otherwise as ourselves.
as_owner=()
if [ "$(id -u)" -eq 0 ]; then
    as_owner=(runuser -u postgres --)
fi

PG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/bifrost-pg.XXXXXX")"
chmod 755 "$PG_DIR"
if [ "${#as_owner[@]}" -gt 0 ]; then
    chown postgres:postgres "$PG_DIR"
fi

cleanup() {
    if [ -f "$PG_DIR/data/postmaster.pid" ]; then
        "${as_owner[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PG_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"${as_owner[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust --no-sync \
    --encoding=UTF8 --locale=C >"$PG_DIR/initdb.log" 2>&1 || {
    cat "$PG_DIR/initdb.log" >&2
    echo "with-postgres: initdb failed" >&2
    exit 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A port can be taken between choosing and binding it: try a few.
started=no
for _ in 1 2 3; do
    PG_PORT="${WITH_POSTGRES_PORT:-$(free_port)}"
    if "${as_owner[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PG_DIR -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null 2>&1; then
        started=yes
        break
    fi
done
if [ "$started" != yes ]; then
    cat "$PG_DIR/server.log" >&2 || true
    echo "with-postgres: PostgreSQL did not start" >&2
    exit 1
fi

export BIFROST_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
echo "with-postgres: PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT" >&2

set +e
"$@"
status=$?
set -e
exit "$status"
