#!/usr/bin/env bash
# scale.bench.sh - racefreed scaled out on PostgreSQL (+ Redis), one instance
# and two instances on two ports sharing the database, under wrk; next to
# pgbench's simple-update transaction (-N) on the same PostgreSQL, measured
# in the same run (part of `make bench`, see bench/run.sh):
#   POST /inventory/purchase  one hot item (a conditional UPDATE per request)
#   POST /payments            a new payment id per request (the idempotency
#                             claim, the Redis lease, the fenced charge, the
#                             finish: three write transactions + 2 Redis calls)
# Private PostgreSQL and Redis (scripts/pg.sh, scripts/redis.sh) in a
# temporary directory; everything listens on 127.0.0.1 only; every process
# started here is stopped by its PID. Prints one markdown section; about 60 s.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build/release}
racefreed=$build/src/server/racefreed
dur=${BENCH_SECONDS:-7}

echo "## racefreed scaled out on PostgreSQL (scale.bench.sh)"
echo
if [ ! -x "$racefreed" ] || ! command -v wrk >/dev/null || ! command -v pgbench >/dev/null ||
  ! command -v redis-server >/dev/null; then
  echo "Skipped: needs $racefreed, wrk, pgbench and redis-server."
  exit 0
fi

tmp=$(mktemp -d /tmp/rf-bench-scale-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  bash scripts/redis.sh stop "$tmp/redis" >/dev/null 2>&1 || true
  bash scripts/pg.sh stop "$tmp/pg" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

chmod 0755 "$tmp" # pg.sh runs PostgreSQL as postgres when we are root
mkdir -p "$tmp/pg" "$tmp/redis"
pg_url=$(bash scripts/pg.sh start "$tmp/pg" 2>"$tmp/pg.err" | tail -1) || {
  echo "Skipped: PostgreSQL did not start: $(tail -2 "$tmp/pg.err")"
  exit 0
}
redis_url=$(bash scripts/redis.sh start "$tmp/redis" 2>"$tmp/redis.err" | tail -1) || {
  echo "Skipped: Redis did not start: $(tail -2 "$tmp/redis.err")"
  exit 0
}
pg_port=$(echo "$pg_url" | sed -n 's|.*:\([0-9]*\)/.*|\1|p')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }

# wrk's Requests/sec and 99th percentile (ms) as "RPS P99".
wrk_run() {
  local out rps p99
  out=$(wrk --latency "$@" 2>&1)
  rps=$(echo "$out" | awk '/^Requests\/sec:/ {printf "%.0f", $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+/, "", v);
          if (u == "us") v /= 1000; else if (u == "s") v *= 1000; printf "%.2f", v}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  if [ -n "$non2xx" ]; then echo "bench: wrk $*: $non2xx non-2xx answers" >&2; fi
  echo "${rps:-0} ${p99:-0}"
}

# Start instance number $1; its port goes to port_$1.
start_rf() {
  local i=$1
  "$racefreed" --bind 127.0.0.1 --port 0 --db "$pg_url" --redis "$redis_url" --log-level warn \
    --db-latency-ms 0 --charge-latency-ms 0 --threads 2 >"$tmp/rf$i.out" 2>"$tmp/rf$i.err" &
  pids+=($!)
  local pid=$! port=
  for _ in $(seq 1 5000); do
    port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$tmp/rf$i.out" | head -1)
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.002
  done
  if [ -z "$port" ]; then
    echo "Skipped: racefreed did not start: $(tail -3 "$tmp/rf$i.err")"
    exit 0
  fi
  eval "port_$i=$port"
}
start_rf 0
start_rf 1

# ------------------------------------------------------------ pgbench -N
pgbench -i -q -s 1 -h 127.0.0.1 -p "$pg_port" -U postgres racefree >/dev/null 2>&1
pgb=$(pgbench -N -n -c 16 -j 2 -T "$dur" -h 127.0.0.1 -p "$pg_port" -U postgres racefree 2>/dev/null |
  awk '/^tps = / {printf "%.0f", $3}')

# ------------------------------------------------------------ purchase
curl -s -o /dev/null -X PUT -H 'Content-Type: application/json' \
  -d '{"stock":1000000000000}' "http://127.0.0.1:$port_0/inventory/items/hot"
cat >"$tmp/purchase.lua" <<'EOF'
wrk.method = "POST"
wrk.path = "/inventory/purchase"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"itemId":"hot","quantity":1}'
EOF
# A new payment id per request; PREFIX keeps two wrk processes apart.
cat >"$tmp/pay.lua" <<'EOF'
local n = 0
local prefix = os.getenv("PREFIX") or "p"
request = function()
  n = n + 1
  return wrk.format("POST", "/payments", {["Content-Type"] = "application/json"},
    '{"paymentId":"' .. prefix .. "-" .. n .. '","amount":5}')
end
EOF

# Both instances at once: two wrk processes, half the connections each.
two() {
  local script=$1 a b
  PREFIX=b0 wrk_run -t1 -c32 -d"${dur}s" -s "$script" "http://127.0.0.1:$port_0" >"$tmp/w0" &
  a=$!
  PREFIX=b1 wrk_run -t1 -c32 -d"${dur}s" -s "$script" "http://127.0.0.1:$port_1" >"$tmp/w1" &
  b=$!
  wait "$a" "$b"
  awk '{r += $1; if ($2 > p) p = $2} END {printf "%.0f %.2f\n", r, p}' "$tmp/w0" "$tmp/w1"
}

read -r buy1 buy1p99 < <(wrk_run -t1 -c64 -d"${dur}s" -s "$tmp/purchase.lua" "http://127.0.0.1:$port_0")
read -r buy2 buy2p99 < <(two "$tmp/purchase.lua")
read -r pay1 pay1p99 < <(PREFIX=a wrk_run -t1 -c64 -d"${dur}s" -s "$tmp/pay.lua" "http://127.0.0.1:$port_0")
read -r pay2 pay2p99 < <(two "$tmp/pay.lua")

cores=$(nproc)
echo "racefreed (release, \`--threads 2 --db-latency-ms 0 --charge-latency-ms 0\`, PostgreSQL"
echo "and Redis private to the run on 127.0.0.1) under \`wrk --latency -t1 -c64 -d${dur}s\`; two"
echo "instances: two wrk processes at once, -c32 each, their req/s summed. The reference is"
echo "\`pgbench -N -c 16 -j 2 -T $dur\` (simple-update: one UPDATE, one SELECT and one"
echo "INSERT per transaction, scale 1) on the same PostgreSQL in the same run (the private"
echo "cluster runs with fsync off, see docs/scaling.md). All on $cores cores: the"
echo "database, Redis, the servers and the load generators share them, so a second instance"
echo "adds coordination, not CPU."
echo
echo "| figure | racefreed | reference | reference value | ratio |"
echo "|---|---:|---|---:|---:|"
echo "| POST /inventory/purchase (hot item), 1 instance, req/s | $buy1 | pgbench -N, tps | $pgb | $(ratio "$buy1" "$pgb") |"
echo "| POST /inventory/purchase (hot item), 2 instances, req/s | $buy2 | 1 instance | $buy1 | $(ratio "$buy2" "$buy1") |"
echo "| POST /payments (new id each), 1 instance, req/s | $pay1 | pgbench -N, tps | $pgb | $(ratio "$pay1" "$pgb") |"
echo "| POST /payments (new id each), 2 instances, req/s | $pay2 | 1 instance | $pay1 | $(ratio "$pay2" "$pay1") |"
echo "| p99 ms: purchase 1 / 2 instances | $buy1p99 / $buy2p99 | | | |"
echo "| p99 ms: payments 1 / 2 instances | $pay1p99 / $pay2p99 | | | |"
echo
echo "Load average at the end of the run: $(cut -d' ' -f1-3 /proc/loadavg) on $cores cores."
