#!/usr/bin/env bash
# Memory with many open streams: N concurrent streams (default 9000), each held open by a slow
# upstream (20 events, one a second), through switchyard; meanwhile a plain request to another,
# fast provider every second must still be served at once.
#
#   scripts/bench-streams.sh [--streams 9000] [--seconds 30] [--workers 2] [--no-build]
#                            [--target switchyard|floor]
#
# --target floor measures the stack floor instead (examples/stack_floor.rs: actix-web + awc
# with nothing of switchyard's, see scripts/bench.sh) in front of the slow upstream alone;
# its plain requests go to that upstream, which answers them at once. The difference between
# the two runs is what switchyard itself holds per stream.
#
# Prints switchyard's resident memory idle and at the peak, the memory per open stream, the
# streams' errors (wrk), and the plain requests' latency during the run. Everything runs on
# 127.0.0.1 with free ports; every process started is stopped on exit. Each stream holds two
# descriptors in switchyard (and one in wrk and one in the mock), so the script raises its
# own open-files limit to the hard limit. CARGO_TARGET_DIR is honoured.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STREAMS=9000
SECONDS_RUN=30
WORKERS=2
BUILD=1
TARGET=switchyard
while [[ $# -gt 0 ]]; do
    case "$1" in
        --streams) STREAMS="$2"; shift 2 ;;
        --seconds) SECONDS_RUN="$2"; shift 2 ;;
        --workers) WORKERS="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --target) TARGET="$2"; shift 2 ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-streams: unknown argument $1" >&2; exit 2 ;;
    esac
done

[[ "$TARGET" == switchyard || "$TARGET" == floor ]] || { echo "bench-streams: --target is switchyard or floor" >&2; exit 2; }
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
FLOOR_BIN="$TARGET_DIR/release/examples/stack_floor"
SWITCHYARD_BIN="$TARGET_DIR/release/switchyard"
MOCK_BIN="$TARGET_DIR/release/examples/mock_upstream"
TMP="$(mktemp -d /tmp/switchyard-streams.XXXXXX)"
PIDS=()
log() { printf '[bench-streams] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_http() {
    local url="$1" i
    for ((i = 0; i < 300; i++)); do curl -s -o /dev/null --max-time 1 "$url" && return 0; sleep 0.1; done
    return 1
}
rss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }

command -v wrk >/dev/null || { [[ "$(id -u)" == 0 ]] && apt-get install -y -qq wrk >/dev/null; } || die "wrk is missing"
ulimit -n "$(ulimit -Hn)"
if [[ "$BUILD" == 1 ]]; then
    # Two builds: examples take the dev-dependencies' features (tokio's process driver and
    # test clock), and one invocation would build the router with them too; the router is
    # measured as `cargo build --release` builds it.
    (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --bin switchyard)
    (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --example mock_upstream --example stack_floor)
fi

SLOW_PORT="$(free_port)"; FAST_PORT="$(free_port)"; PORT="$(free_port)"
"$MOCK_BIN" --port "$SLOW_PORT" --workers 2 --stream-chunks 20 --chunk-delay-ms 1000 >"$TMP/slow.log" 2>&1 &
PIDS+=($!)
"$MOCK_BIN" --port "$FAST_PORT" --workers 1 --models fast-model >"$TMP/fast.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$SLOW_PORT/v1/models" || die "slow mock did not start"
wait_http "http://127.0.0.1:$FAST_PORT/v1/models" || die "fast mock did not start"
cat >"$TMP/switchyard.toml" <<TOML
workers = $WORKERS
[routing]
request_timeout_ms = 60000
[[providers]]
name = "slow"
base_url = "http://127.0.0.1:$SLOW_PORT/v1"
models = ["gpt-4o-mini"]
[[providers]]
name = "fast"
base_url = "http://127.0.0.1:$FAST_PORT/v1"
models = ["fast-model"]
TOML
PLAIN_MODEL=fast-model
PLAIN_WHAT="plain requests to another provider meanwhile"
if [[ "$TARGET" == floor ]]; then
    "$FLOOR_BIN" --port "$PORT" --upstream "http://127.0.0.1:$SLOW_PORT" --workers "$WORKERS" >"$TMP/floor.log" 2>&1 &
    SY=$!
    PIDS+=("$SY")
    # It serves only POST /v1/chat/completions; any answer (a 404 here) means it is up.
    wait_http "http://127.0.0.1:$PORT/" || die "the stack floor did not start"
    PLAIN_MODEL=gpt-4o-mini
    PLAIN_WHAT="plain requests to the same (slow-streaming) upstream meanwhile"
else
    DATABASE_URL="sqlite://$TMP/bench.db" SWITCHYARD_LISTEN="127.0.0.1:$PORT" \
        SWITCHYARD_ADMIN_TOKEN="bench-admin-token-0123456789" RUST_LOG=warn \
        "$SWITCHYARD_BIN" --config "$TMP/switchyard.toml" >"$TMP/switchyard.log" 2>&1 &
    SY=$!
    PIDS+=("$SY")
    wait_http "http://127.0.0.1:$PORT/healthz" || die "switchyard did not start"
fi
plain() {
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 10 \
        -H 'content-type: application/json' \
        -d '{"model":"'"$PLAIN_MODEL"'","messages":[{"role":"user","content":"hi"}]}' \
        "http://127.0.0.1:$PORT/v1/chat/completions"
}
plain >/dev/null
IDLE="$(rss_kb "$SY")"
log "$TARGET idle: $((IDLE / 1024)) MB; opening $STREAMS streams for ${SECONDS_RUN}s"

BENCH_STREAM=1 wrk -t2 -c"$STREAMS" -d"${SECONDS_RUN}s" --timeout 60s -s "$ROOT/scripts/bench/chat.lua" \
    "http://127.0.0.1:$PORT/v1/chat/completions" >"$TMP/wrk.txt" 2>&1 &
WRK=$!
PIDS+=("$WRK")
PEAK="$IDLE"; OPEN_MAX=0; : >"$TMP/plain.txt"
STARTED="$(date +%s)"
while kill -0 "$WRK" 2>/dev/null; do
    sleep 1
    cur="$(rss_kb "$SY" 2>/dev/null || echo 0)"
    ((cur > PEAK)) && PEAK="$cur"
    open="$(ss -Htn state established "( sport = :$PORT )" 2>/dev/null | wc -l)"
    ((open > OPEN_MAX)) && OPEN_MAX="$open"
    # Each plain request is logged with the streams open when it was sent, so the report can
    # tell the opening burst (thousands of connections and requests arriving at once) from
    # the steady state with every stream open.
    r="$(plain || echo "000 10")"
    echo "$r $open $(($(date +%s) - STARTED))" >>"$TMP/plain.txt"
done
wait "$WRK" 2>/dev/null || true
line="$(grep '^BENCH ' "$TMP/wrk.txt" | head -n 1 || true)"
[[ -n "$line" ]] || { cat "$TMP/wrk.txt" >&2; die "wrk gave no result"; }
field() { tr ' ' '\n' <<<"$line" | awk -F= -v k="$1" '$1 == k { print $2 }'; }
errors=$(($(field non2xx) + $(field err_connect) + $(field err_read) + $(field err_write) + $(field err_timeout)))
plain_ok="$(awk '$1 == 200' "$TMP/plain.txt" | wc -l)"; plain_all="$(wc -l <"$TMP/plain.txt")"
plain_p50="$(awk '{ print $2 * 1000 }' "$TMP/plain.txt" | sort -g | awk '{ v[NR] = $1 } END { printf "%.1f", v[int((NR + 1) / 2)] }')"
plain_max="$(awk '{ print $2 * 1000 }' "$TMP/plain.txt" | sort -g | tail -n 1)"
# Steady state: after the sample that first saw at least 95% of the connections open (their
# requests may still be queued behind each other then: the opening burst), and before the
# first streams (20 s each) end, when wrk sends its next requests on all connections at once.
plain_open="$(awk -v n="$STREAMS" '
    t0 == "" && $3 >= n * 0.95 { t0 = $4; next }
    t0 != "" && $4 > t0 && $4 < 19 { print $2 * 1000 }' "$TMP/plain.txt" | sort -g)"
open_count="$(grep -c . <<<"$plain_open" || true)"
open_p50="$(awk '{ v[NR] = $1 } END { if (NR) printf "%.1f", v[int((NR + 1) / 2)]; else print "-" }' <<<"$plain_open")"
open_max="$(tail -n 1 <<<"$plain_open")"
cat <<REPORT

| figure | value |
|---|---|
| target | $TARGET |
| streams asked (wrk connections) | $STREAMS |
| client connections open at the peak | $OPEN_MAX |
| streams completed / errors | $(field requests) / $errors |
| resident memory idle / peak | $((IDLE / 1024)) MB / $((PEAK / 1024)) MB |
| memory per open stream | $(awk -v a="$PEAK" -v b="$IDLE" -v n="$OPEN_MAX" 'BEGIN { printf "%.1f KB", n ? (a - b) / n : 0 }') |
| $PLAIN_WHAT | $plain_ok of $plain_all answered 200; p50 ${plain_p50} ms, max ${plain_max} ms |
| of those, sent in the steady state (every stream open, none ending) | ${open_count}; p50 ${open_p50} ms, max ${open_max:--} ms |
REPORT
((errors == 0)) || { log "the streams had $errors errors: $(cat "$TMP/wrk.txt" | tail -n 5)"; exit 3; }
