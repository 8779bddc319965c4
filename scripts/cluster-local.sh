#!/usr/bin/env bash
# A three-node cluster on loopback for trying cluster mode by hand (`make cluster-local`):
#
#   - a throwaway PostgreSQL on 127.0.0.1:54329 (scripts/with-postgres.sh),
#   - the mock provider on 127.0.0.1:9090,
#   - gateways node-1..node-3 on HTTP 127.0.0.1:8081-8083, gossip UDP 10111-10113, with static
#     peers, from config/cluster-local/node-N.json.
#
# The configs read the PostgreSQL host, user and database from BIFROST_PG_HOST, BIFROST_PG_USER
# and BIFROST_PG_DB, and the gossip key from BIFROST_CLUSTER_KEY; this script sets them (a fresh
# random cluster key and secrets key per run). Logs go to a temporary directory it prints.
# Ctrl-C stops the gateways (SIGTERM: drain, final flush, leave), the mock, then PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_PORT=54329 # also in config/cluster-local/node-*.json
MOCK_PORT=9090
HTTP_PORTS=(8081 8082 8083)
CARGO="${CARGO:-cargo}"

if [ -z "${BIFROST_CLUSTER_LOCAL_INNER:-}" ]; then
    "$CARGO" build --release -p bifrost-gateway -p bifrost-e2e --bin bifrost-gateway --bin mock-provider
    # Always a fresh server on the port the configs name, even when the caller has a test one.
    unset BIFROST_TEST_POSTGRES_URL
    export BIFROST_CLUSTER_LOCAL_INNER=1 WITH_POSTGRES_PORT="$PG_PORT"
    exec ./scripts/with-postgres.sh "$0" "$@"
fi

# Under with-postgres.sh: BIFROST_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:54329/postgres
export BIFROST_PG_HOST=127.0.0.1 BIFROST_PG_USER=postgres BIFROST_PG_DB=postgres
random_hex() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
export BIFROST_CLUSTER_KEY="${BIFROST_CLUSTER_KEY:-$(random_hex)}"
export BIFROST_ENCRYPTION_KEY="${BIFROST_ENCRYPTION_KEY:-$(random_hex)}"
export RUST_LOG="${RUST_LOG:-info}"

LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/bifrost-cluster-local.XXXXXX")"
pids=()

stop_all() {
    trap - INT TERM
    echo
    echo "cluster-local: stopping the gateways (SIGTERM) and the mock provider"
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    echo "cluster-local: stopped; logs kept in $LOG_DIR"
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM

./target/release/mock-provider --host 127.0.0.1 --port "$MOCK_PORT" >"$LOG_DIR/mock.log" 2>&1 &
pids+=("$!")

for index in 1 2 3; do
    ./target/release/bifrost-gateway --config "config/cluster-local/node-$index.json" \
        --host 127.0.0.1 --port "${HTTP_PORTS[$((index - 1))]}" >"$LOG_DIR/node-$index.log" 2>&1 &
    pids+=("$!")
done

# Every process up and every node ready (joined, store reachable), within 60 s.
deadline=$((SECONDS + 60))
for index in 1 2 3; do
    port="${HTTP_PORTS[$((index - 1))]}"
    until curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do
        for pid in "${pids[@]}"; do
            if ! kill -0 "$pid" 2>/dev/null; then
                echo "cluster-local: a process exited during start-up; last log lines:" >&2
                tail -n 5 "$LOG_DIR"/*.log >&2
                stop_all
                exit 1
            fi
        done
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "cluster-local: node-$index not ready on :$port within 60 s; see $LOG_DIR/node-$index.log" >&2
            stop_all
            exit 1
        fi
        sleep 0.2
    done
done

cat <<INFO

bifrost cluster-local is up: 3 gateways sharing PostgreSQL 127.0.0.1:$PG_PORT, mock provider on :$MOCK_PORT

  node-1  http://127.0.0.1:8081   gossip udp 127.0.0.1:10111
  node-2  http://127.0.0.1:8082   gossip udp 127.0.0.1:10112
  node-3  http://127.0.0.1:8083   gossip udp 127.0.0.1:10113

Try:
  curl -s http://127.0.0.1:8081/cluster/status
  curl -s http://127.0.0.1:8082/ready
  curl -s http://127.0.0.1:8083/v1/chat/completions -H 'content-type: application/json' \\
       -d '{"model": "mock/gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}'
  curl -s http://127.0.0.1:8081/metrics | grep bifrost_cluster_members
  kill -9 <pid of a node> and watch its state go suspect, then dead, in /cluster/status

Gateway pids (node-1..3): ${pids[*]:1}
Logs: $LOG_DIR/{node-1,node-2,node-3,mock}.log
Ctrl-C stops everything.
INFO

# Wait until Ctrl-C (a short sleep in the background keeps the traps responsive); a node that
# exits on its own is reported once, the others keep running.
reported=()
while true; do
    for index in 1 2 3; do
        if [ -z "${reported[$index]:-}" ] && ! kill -0 "${pids[$index]}" 2>/dev/null; then
            echo "cluster-local: node-$index (pid ${pids[$index]}) exited; see $LOG_DIR/node-$index.log" >&2
            reported[index]=1
        fi
    done
    sleep 1 &
    wait "$!" || true
done
