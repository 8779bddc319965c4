#!/usr/bin/env bash
# Measures how much memory one large request body costs the gateway: for bodies of about 1, 10
# and 30 MB, in both dialects, passed through and translated both ways, it starts a fresh
# gateway (so VmHWM starts clean), sends the body once, and prints the growth of the gateway's
# peak RSS (VmHWM from /proc/<pid>/status) over its peak before the request, and that growth
# divided by the body size. Accepted bodies should cost at most a few times their size;
# bodies over the element caps (client.max_*_per_request) should be refused cheaply.
#
# Shapes:
#   many   10^5-10^6 tiny messages (chat) or content blocks (messages), far over the caps
#   cap    exactly at the caps (10,000 messages; 10,000 content blocks), content filling the size
#   large  a handful of messages with multi-megabyte content strings
#
# Usage: scripts/bench-body-memory.sh [--no-build]
# Environment: GATEWAY_BIN (default target/release/bifrost-gateway), MOCK_BIN (default
# target/release/mock-provider), SIZES_MB (default "1 10 30"), SHAPES (default "many cap large"),
# CASES (default all four: chat-openai chat-anthropic messages-anthropic messages-openai).
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

if [ "${1:-}" != "--no-build" ]; then
    echo "bench-body-memory: building release binaries" >&2
    cargo build --release -p bifrost-gateway --bin bifrost-gateway -p bifrost-e2e --bin mock-provider >&2
fi

GATEWAY_BIN="${GATEWAY_BIN:-target/release/bifrost-gateway}"
MOCK_BIN="${MOCK_BIN:-target/release/mock-provider}"
SIZES_MB="${SIZES_MB:-1 10 30}"
SHAPES="${SHAPES:-many cap large}"
CASES="${CASES:-chat-openai chat-anthropic messages-anthropic messages-openai}"

work="$(mktemp -d)"
mock_pid=""
gateway_pid=""
cleanup() {
    [ -n "$gateway_pid" ] && kill "$gateway_pid" 2>/dev/null || true
    [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Wait until FILE has a line matching REGEX; print the first match.
wait_line() {
    local file="$1" regex="$2"
    for _ in $(seq 1 300); do
        if grep -m1 -E "$regex" "$file" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "bench-body-memory: timed out waiting for /$regex/ in $file:" >&2
    cat "$file" >&2
    return 1
}

"$MOCK_BIN" --host 127.0.0.1 --port 0 --threads 2 >"$work/mock.log" 2>&1 &
mock_pid=$!
mock_base="$(wait_line "$work/mock.log" 'mock-provider listening on ' | sed 's/.*listening on //')"

cat >"$work/config.json" <<EOF
{
  "client": {"enable_logging": false, "max_request_body_size_mb": 64},
  "providers": {
    "openai": {"keys": [{"name": "primary", "value": "sk-openai", "models": ["*"]}],
               "network_config": {"base_url": "$mock_base", "default_request_timeout_in_seconds": 120}},
    "anthropic": {"keys": [{"name": "primary", "value": "sk-anthropic", "models": ["*"]}],
                  "network_config": {"base_url": "$mock_base", "default_request_timeout_in_seconds": 120}}
  },
  "config_store": {"enabled": false}
}
EOF

# Writes the body for dialect ($1: chat|messages), shape ($2) and size in MB ($3) to $4.
make_body() {
    python3 - "$@" <<'PY'
import json, sys
dialect, shape, size_mb, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
target = size_mb * 1_000_000
CAP = 10_000
def text(n):
    return ("lorem ipsum " * (n // 12 + 1))[:max(n, 1)]
messages = []
if dialect == "chat":
    if shape == "many":
        one = len(json.dumps({"role": "user", "content": "hi there"})) + 2
        messages = [{"role": "user", "content": "hi there"}] * max(target // one, 1)
    elif shape == "cap":
        each = max(target // CAP - 40, 1)
        messages = [{"role": "user", "content": text(each)}] * (CAP - 1)
    else:
        messages = [{"role": "user", "content": text(target // 4)}] * 4
else:
    block = {"type": "text", "text": "hi there"}
    if shape == "many":
        per = 1000
        one = len(json.dumps(block)) + 2
        blocks = max(target // one, per)
        messages = [{"role": "user", "content": [block] * per}] * (blocks // per)
    elif shape == "cap":
        each = max(target // CAP - 70, 1)
        messages = [{"role": "user", "content": [{"type": "text", "text": text(each)}]}] * (CAP - 1)
    else:
        messages = [{"role": "user", "content": [{"type": "text", "text": text(target // 4)}]}] * 4
# A short last user message, so the mock's echo of it (the reply) stays small.
if dialect == "chat":
    messages.append({"role": "user", "content": "hi"})
else:
    messages.append({"role": "user", "content": [{"type": "text", "text": "hi"}]})
with open(path, "w") as out:
    json.dump({"model": "MODEL", "max_tokens": 16, "messages": messages}, out)
PY
}

kb_field() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$2/status"; }

start_gateway() {
    "$GATEWAY_BIN" --config "$work/config.json" --host 127.0.0.1 --port 0 --log-format json \
        </dev/null >"$work/gateway.log" 2>&1 &
    gateway_pid=$!
    local line
    line="$(wait_line "$work/gateway.log" '"listening"')"
    gateway_base="http://127.0.0.1:$(echo "$line" | sed -E 's/.*"http_addr":"[^"]*:([0-9]+)".*/\1/')"
}

stop_gateway() {
    kill "$gateway_pid" 2>/dev/null || true
    wait "$gateway_pid" 2>/dev/null || true
    gateway_pid=""
}

printf '%-19s %-6s %8s %8s %7s %10s %10s %8s %s\n' \
    case shape body_MB status time_s hwm_before hwm_after growth/body message
for case in $CASES; do
    case "$case" in
        chat-openai) path=/v1/chat/completions dialect=chat model=openai/gpt-4o-mini ;;
        chat-anthropic) path=/v1/chat/completions dialect=chat model=anthropic/claude-3-5-haiku-20241022 ;;
        messages-anthropic) path=/anthropic/v1/messages dialect=messages model=claude-3-5-haiku-20241022 ;;
        messages-openai) path=/anthropic/v1/messages dialect=messages model=openai/gpt-4o-mini ;;
        *) echo "unknown case $case" >&2; exit 2 ;;
    esac
    for shape in $SHAPES; do
        for size in $SIZES_MB; do
            template="$work/body-$dialect-$shape-$size.json"
            if [ ! -f "$template" ]; then
                make_body "$dialect" "$shape" "$size" "$template"
            fi
            body="$work/body.json"
            sed "s#\"MODEL\"#\"$model\"#" "$template" >"$body"
            bytes=$(stat -c %s "$body")
            start_gateway
            # Warm up the connection pool and allocator with one small request.
            curl -s -o /dev/null -H 'content-type: application/json' \
                --data "{\"model\":\"$model\",\"max_tokens\":16,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" \
                "$gateway_base$path" || true
            before=$(kb_field VmHWM "$gateway_pid")
            started=$(date +%s.%N)
            status=$(curl -s --max-time 300 -o "$work/answer.json" -w '%{http_code}' -H 'content-type: application/json' \
                --data-binary "@$body" "$gateway_base$path" || true)
            elapsed=$(echo "$(date +%s.%N) - $started" | bc)
            after=$(kb_field VmHWM "$gateway_pid" 2>/dev/null || echo 0)
            message=$(jq -r '.error.message // empty' "$work/answer.json" 2>/dev/null | cut -c1-70)
            ratio=$(echo "scale=2; ($after - $before) * 1024 / $bytes" | bc)
            printf '%-19s %-6s %8.1f %8s %7.2f %10s %10s %8s %s\n' \
                "$case" "$shape" "$(echo "scale=1; $bytes / 1000000" | bc)" "$status" "$elapsed" \
                "${before}kB" "${after}kB" "${ratio}x" "$message"
            stop_gateway
        done
    done
done
