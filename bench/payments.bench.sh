#!/usr/bin/env bash
# payments.bench.sh - the exactly-once payment path and the CPU pool under
# wrk, next to references measured in the same run (part of `make bench`,
# see bench/run.sh):
#   POST /payments, a distinct id per request, --charge-latency-ms 0 (claim,
#     fenced charge, finish: three write transactions and two locks)
#     vs POST /inventory/purchase on one item (one write transaction): the
#     reference write path of the same server
#   GET /api p50/p99 (racecheck, open model) with every pool worker busy on
#     POST /reports/generate vs GET /api on the idle server; and the same
#     with --unsafe (the work on the HTTP threads) for contrast
# Everything listens on 127.0.0.1 only; every process started here is
# stopped by its PID. Prints one markdown section; takes about 6 x
# BENCH_SECONDS (default 10) seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build/release}
racefreed=$build/src/server/racefreed
dur=${BENCH_SECONDS:-10}

echo "## Payments and the CPU pool over HTTP (payments.bench.sh)"
echo
if [ ! -x "$racefreed" ] || ! command -v wrk >/dev/null || ! command -v curl >/dev/null; then
  echo "Skipped: needs $racefreed, wrk and curl."
  exit 0
fi

tmp=$(mktemp -d /tmp/rf-bench-payments-XXXXXX)
rf_pid=
load_pid=
cleanup() {
  [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null && wait "$load_pid" 2>/dev/null || true
  [ -n "$rf_pid" ] && kill "$rf_pid" 2>/dev/null && wait "$rf_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# wrk's Requests/sec, 50th and 99th percentiles (ms) and non-2xx answers as
# "RPS P50 P99 NON2XX".
wrk_run() {
  local out
  out=$(wrk --latency "$@" 2>&1)
  echo "$out" | awk '
    function ms(v,  u) { u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+/, "", v);
                         if (u == "us") v /= 1000; else if (u == "s") v *= 1000; return v }
    /^Requests\/sec:/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx/ { bad = $NF }
    END { printf "%.0f %.2f %.2f %d\n", rps, p50, p99, bad }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }

start_rf() {
  rm -f "$tmp"/db*
  "$racefreed" --bind 127.0.0.1 --port 0 --db "sqlite:$tmp/db" --log-level warn \
    --db-latency-ms 0 --charge-latency-ms 0 "$@" >"$tmp/racefreed.out" 2>"$tmp/racefreed.err" &
  rf_pid=$!
  port=
  for _ in $(seq 1 2000); do
    port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$tmp/racefreed.out" | head -1)
    [ -n "$port" ] && break
    kill -0 "$rf_pid" 2>/dev/null || break
    sleep 0.005
  done
  if [ -z "$port" ]; then
    echo "Skipped: racefreed did not start: $(tail -3 "$tmp/racefreed.err")"
    exit 0
  fi
  until [ "$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ]; do
    sleep 0.005
  done
}
stop_rf() {
  kill "$rf_pid" 2>/dev/null && wait "$rf_pid" 2>/dev/null || true
  rf_pid=
}
metric() {
  curl -s --noproxy '*' "http://127.0.0.1:$port/metrics" | awk -v s="$1" '$1 == s {print $2; exit}'
}

# ------------------------------------------------------------ the write paths
start_rf
cat >"$tmp/payments.lua" <<'EOF'
local n = 0
local run = tostring(os.time())
request = function()
  n = n + 1
  return wrk.format("POST", "/payments", {["Content-Type"] = "application/json"},
    '{"paymentId":"b-' .. run .. '-' .. n .. '","amount":1}')
end
EOF
read -r pay_rps pay_p50 pay_p99 pay_bad < <(wrk_run -t1 -c64 -d"${dur}s" -s "$tmp/payments.lua" "http://127.0.0.1:$port")

curl -s --noproxy '*' -o /dev/null -X PUT -H 'Content-Type: application/json' \
  -d '{"stock":1000000000000}' "http://127.0.0.1:$port/inventory/items/hot"
cat >"$tmp/purchase.lua" <<'EOF'
wrk.method = "POST"
wrk.path = "/inventory/purchase"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"itemId":"hot","quantity":1}'
EOF
read -r buy_rps buy_p50 buy_p99 buy_bad < <(wrk_run -t1 -c64 -d"${dur}s" -s "$tmp/purchase.lua" "http://127.0.0.1:$port")
stop_rf

# ------------------------------------------------------------ /api and the pool
# GET /api is sampled in the open model (racecheck run: API_RATE arrivals per
# second, each a new connection and one GET, whatever the answers' latency),
# so a stalled request is counted as stalled; wrk's closed loop would let the
# connections of the free HTTP thread outvote it (coordinated omission).
# The load: generate requests of about 200 ms of CPU each, from more wrk
# connections than the pool has workers, so that every worker stays busy;
# each on a new connection (Connection: close), because libmicrohttpd binds
# a connection to the HTTP thread that accepted it, and wrk's connections,
# opened at once, would all land on one thread (--unsafe would then leave
# the other thread free and show no stall).
cores=$(nproc)
racecheck=$build/src/racecheck/racecheck
api_rate=${API_RATE:-200}
api_p50_p99() { # -> "P50 P99" of GET /api over dur seconds
  cat >"$tmp/api.yml" <<EOF
config:
  target: "http://127.0.0.1:$port"
  phases:
    - duration: $dur
      arrivalRate: $api_rate
scenarios:
  - name: api
    flow:
      - get:
          url: /api
EOF
  "$racecheck" run -q -t 1 -o "$tmp/api.json" "$tmp/api.yml" >/dev/null 2>&1 || true
  tr -d '\n' <"$tmp/api.json" |
    sed -n 's/.*"latency_ms": {[^}]*"p50":\([0-9.]*\)[^}]*"p99":\([0-9.]*\).*/\1 \2/p' | head -1
}
api_under_pool() { # mode: safe|unsafe -> "IDLE_P50 IDLE_P99 LOADED_P50 LOADED_P99 BUSY"
  if [ "$1" = unsafe ]; then start_rf --unsafe; else start_rf; fi
  local ms n
  ms=$(curl -s --noproxy '*' -X POST -d '{"iterations":20000000}' "http://127.0.0.1:$port/reports/generate" |
    sed -n 's/.*"ms":\([0-9.]*\).*/\1/p')
  n=$(awk -v ms="${ms:-1}" 'BEGIN {printf "%.0f", 20000000 * 200 / (ms > 0.1 ? ms : 0.1)}')
  cat >"$tmp/generate.lua" <<EOF
wrk.method = "POST"
wrk.path = "/reports/generate"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"iterations":$n}'
wrk.headers["Connection"] = "close" -- a new connection per request: spread over the HTTP threads
EOF
  local idle loaded busy
  idle=$(api_p50_p99)
  wrk -t1 -c$((2 * cores + 2)) -d$((dur + 4))s --timeout 30s -s "$tmp/generate.lua" \
    "http://127.0.0.1:$port" >/dev/null 2>&1 &
  load_pid=$!
  sleep 2
  busy=$(metric racefree_pool_busy_workers)
  loaded=$(api_p50_p99)
  kill "$load_pid" 2>/dev/null && wait "$load_pid" 2>/dev/null || true
  load_pid=
  stop_rf
  echo "${idle:-0 0} ${loaded:-0 0} ${busy:-0}"
}
have_racecheck=0
if [ -x "$racecheck" ]; then
  have_racecheck=1
  read -r s_i50 s_i99 s_l50 s_l99 s_busy < <(api_under_pool safe)
  read -r u_i50 u_i99 u_l50 u_l99 _ < <(api_under_pool unsafe)
fi

# -------------------------------------------------------------------- report
echo "racefreed (release, SQLite store in a temporary directory, \`--log-level warn\`,"
echo "\`--db-latency-ms 0 --charge-latency-ms 0\`, defaults otherwise: $cores HTTP threads,"
echo "$cores pool workers) on 127.0.0.1, \`wrk --latency -t1 -cN -d${dur}s\`. Payments use a"
echo "fresh id per request (every one charges: claim, fenced ledger write, finish);"
echo "the purchase takes 1 from one item (one conditional UPDATE). For the GET /api rows,"
echo "\`racecheck run\` sends $api_rate GET /api per second for ${dur}s (open model: a new"
echo "connection per request, sent on schedule whatever the answers' latency), first on the idle"
echo "server, then while $((2 * cores + 2)) wrk connections keep POST /reports/generate requests of"
echo "~200 ms of CPU in flight (pool workers busy when sampled: ${s_busy:-?}/$cores); \`--unsafe\`"
echo "runs the same work on the HTTP threads."
echo
echo "| figure | measured | reference | reference value | ratio |"
echo "|---|---:|---|---:|---:|"
echo "| POST /payments (distinct ids), -c64, req/s | $pay_rps | POST /inventory/purchase | $buy_rps | $(ratio "$pay_rps" "$buy_rps") |"
echo "| POST /payments (distinct ids), -c64, p50 ms | $pay_p50 | POST /inventory/purchase | $buy_p50 | $(ratio "$pay_p50" "$buy_p50") |"
echo "| POST /payments (distinct ids), -c64, p99 ms | $pay_p99 | POST /inventory/purchase | $buy_p99 | $(ratio "$pay_p99" "$buy_p99") |"
if [ "$have_racecheck" = 1 ]; then
  echo "| GET /api p50 ms, pool saturated | $s_l50 | idle server | $s_i50 | $(ratio "$s_l50" "$s_i50") |"
  echo "| GET /api p99 ms, pool saturated | $s_l99 | idle server | $s_i99 | $(ratio "$s_l99" "$s_i99") |"
  echo "| GET /api p50 ms, work on HTTP threads (\`--unsafe\`) | $u_l50 | idle server | $u_i50 | $(ratio "$u_l50" "$u_i50") |"
  echo "| GET /api p99 ms, work on HTTP threads (\`--unsafe\`) | $u_l99 | idle server | $u_i99 | $(ratio "$u_l99" "$u_i99") |"
else
  echo
  echo "GET /api rows skipped: $racecheck is not built."
fi
if [ "${pay_bad:-0}" != 0 ] || [ "${buy_bad:-0}" != 0 ]; then
  echo
  echo "Non-2xx answers: payments $pay_bad, purchases $buy_bad."
fi
