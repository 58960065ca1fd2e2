#!/usr/bin/env bash
# server.bench.sh - racefreed under wrk, next to references measured in the
# same run (part of `make bench`, see bench/run.sh):
#   GET /api              vs nginx (Debian nginx-light) answering the same
#                         body from a `return 200` on another 127.0.0.1 port
#   POST /inventory/purchase on one hot item (wrk + Lua) vs the database
#                         floor: the same conditional UPDATE in a C loop on
#                         one SQLite connection (bench_sqlite_purchase)
#   GET /cache/hot (a cached key) vs GET /api, interleaved short wrk runs
#   GET /api p99 (wrk -c8, keep-alive) with every CPU-pool worker busy vs
#                         idle, for --pool-priority idle and nice
#   resident memory idle and under -c256 (VmRSS of every racefreed process)
#   start-up time: exec to the first 200 on /health
# Both servers run with as many threads/workers as cores. Everything listens
# on 127.0.0.1 only; every process started here is stopped by its PID.
# Prints one markdown section; takes about 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh # now_ms, free_port, wrk_run, ratio
build=${BUILD:-build/release}
racefreed=$build/src/server/racefreed
purchase_floor=$build/bench/bench_sqlite_purchase
dur=${BENCH_SECONDS:-10}
short=${BENCH_SHORT_SECONDS:-3} # each of the interleaved cache / pool runs

echo "## racefreed over HTTP (server.bench.sh)"
echo
if [ ! -x "$racefreed" ] || ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  echo "Skipped: needs $racefreed, wrk and nginx."
  exit 0
fi

tmp=$(mktemp -d /tmp/rf-bench-server-XXXXXX)
rf_pid=
ng_pid=
cleanup() {
  [ -n "$rf_pid" ] && kill "$rf_pid" 2>/dev/null && wait "$rf_pid" 2>/dev/null || true
  [ -n "$ng_pid" ] && kill "$ng_pid" 2>/dev/null && wait "$ng_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT



# VmRSS in MiB of a process and its descendants (worker processes).
rss_mib() {
  local total=0 p kids
  local todo=("$1")
  while [ ${#todo[@]} -gt 0 ]; do
    p=${todo[0]}
    todo=("${todo[@]:1}")
    if [ -r "/proc/$p/status" ]; then
      total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
      kids=$(cat /proc/"$p"/task/*/children 2>/dev/null || true)
      for k in $kids; do todo+=("$k"); done
    fi
  done
  awk -v kb="$total" 'BEGIN {printf "%.1f", kb / 1024}'
}



# ---------------------------------------------------------------- racefreed
# --db-latency-ms 0: the simulated work between a read and its write exists
# to widen race windows for demonstrations; a benchmark measures the route.
start_rf() { # extra racefreed options as arguments
  rm -f "$tmp"/db*
  local t0
  t0=$(now_ms)
  "$racefreed" --bind 127.0.0.1 --port 0 --db "sqlite:$tmp/db" --log-level warn \
    --db-latency-ms 0 --upstream-latency-ms 0 "$@" >"$tmp/racefreed.out" 2>"$tmp/racefreed.err" &
  rf_pid=$!
  port=
  for _ in $(seq 1 2000); do
    port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$tmp/racefreed.out" | head -1)
    [ -n "$port" ] && break
    kill -0 "$rf_pid" 2>/dev/null || break
    sleep 0.002
  done
  if [ -z "$port" ]; then
    echo "Skipped: racefreed did not start: $(tail -3 "$tmp/racefreed.err")"
    exit 0
  fi
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ]; do
    sleep 0.002
  done
  startup_ms=$(($(now_ms) - t0))
}
stop_rf() {
  kill "$rf_pid" 2>/dev/null && wait "$rf_pid" 2>/dev/null || true
  rf_pid=
}
# start-up: the best of three starts on a fresh database (the machine may be
# busy; the minimum is the figure that repeats)
best_startup=
for _ in 1 2 3; do
  start_rf
  stop_rf
  if [ -z "$best_startup" ] || [ "$startup_ms" -lt "$best_startup" ]; then best_startup=$startup_ms; fi
done
start_rf
sleep 0.5
rss_idle=$(rss_mib "$rf_pid")

# -------------------------------------------------------------------- nginx
ng_port=$(free_port)
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes $(nproc);
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  server {
    listen 127.0.0.1:$ng_port;
    location / { default_type application/json; return 200 '{"data":"ok"}'; }
  }
}
EOF
nginx -e "$tmp/nginx/error.log" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>>"$tmp/nginx/error.log" &
ng_pid=$!
for _ in $(seq 1 500); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ng_port/api")" = 200 ] && break
  sleep 0.01
done

# ------------------------------------------------------------------ GET /api
read -r rf64 rf64p99 _ _ < <(wrk_run -t1 -c64 -d"${dur}s" "http://127.0.0.1:$port/api")
read -r ng64 ng64p99 _ _ < <(wrk_run -t1 -c64 -d"${dur}s" "http://127.0.0.1:$ng_port/api")
rss_peak=0
(
  peak=0
  while kill -0 "$rf_pid" 2>/dev/null && [ ! -e "$tmp/stop-rss" ]; do
    r=$(rss_mib "$rf_pid")
    peak=$(awk -v a="$r" -v b="$peak" 'BEGIN {print (a > b) ? a : b}')
    echo "$peak" >"$tmp/rss-peak"
    sleep 0.25
  done
) &
rss_sampler=$!
read -r rf256 rf256p99 _ _ < <(wrk_run -t1 -c256 -d"${dur}s" "http://127.0.0.1:$port/api")
touch "$tmp/stop-rss"
wait "$rss_sampler" 2>/dev/null || true
rss_peak=$(cat "$tmp/rss-peak" 2>/dev/null || echo 0)
read -r ng256 ng256p99 _ _ < <(wrk_run -t1 -c256 -d"${dur}s" "http://127.0.0.1:$ng_port/api")
kill "$ng_pid" 2>/dev/null && wait "$ng_pid" 2>/dev/null || true
ng_pid=

# --------------------------------------------------- POST /inventory/purchase
curl -s -o /dev/null -X PUT -H 'Content-Type: application/json' \
  -d '{"stock":1000000000000}' "http://127.0.0.1:$port/inventory/items/hot"
cat >"$tmp/purchase.lua" <<'EOF'
wrk.method = "POST"
wrk.path = "/inventory/purchase"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"itemId":"hot","quantity":1}'
EOF
read -r rfbuy rfbuyp99 buy_total buy_bad < <(wrk_run -t1 -c64 -d"${dur}s" -s "$tmp/purchase.lua" "http://127.0.0.1:$port")
left=$(curl -s "http://127.0.0.1:$port/inventory/items/hot" | sed -n 's/.*"stock":\([0-9]*\).*/\1/p')
floor=0
if [ -x "$purchase_floor" ]; then floor=$("$purchase_floor" --raw 3); fi

# ------------------------------------------------------------ GET /cache/hot
# The key is loaded once, then every request is a hit. Interleaved with
# GET /api in short runs (three each) so that both see the same machine.
curl -s -o /dev/null "http://127.0.0.1:$port/cache/hot"
api_sum=0
hot_sum=0
for _ in 1 2 3; do
  read -r a _ _ _ < <(wrk_run -t1 -c64 -d"${short}s" "http://127.0.0.1:$port/api")
  read -r h _ _ _ < <(wrk_run -t1 -c64 -d"${short}s" "http://127.0.0.1:$port/cache/hot")
  api_sum=$((api_sum + a))
  hot_sum=$((hot_sum + h))
done
api_rps=$((api_sum / 3))
hot_rps=$((hot_sum / 3))

stop_rf

# ------------------------------------------------- GET /api, pool saturated
# wrk -c8 keep-alive on GET /api, first on the idle server, then while more
# POST /reports/generate requests (about 200 ms of CPU each, calibrated) are
# in flight than the pool has workers; each generate request on a new
# connection (libmicrohttpd binds a connection to the thread that accepted
# it: wrk's connections, opened at once, would all land on one thread).
# Once per --pool-priority.
pool_p99() { # priority -> "IDLE_P99 LOADED_P99 BUSY"
  start_rf --pool-priority "$1"
  local ms n idle loaded busy load_pid
  ms=$(curl -s -X POST -d '{"iterations":20000000}' "http://127.0.0.1:$port/reports/generate" |
    sed -n 's/.*"ms":\([0-9.]*\).*/\1/p')
  n=$(awk -v ms="${ms:-1}" 'BEGIN {printf "%.0f", 20000000 * 200 / (ms > 0.1 ? ms : 0.1)}')
  cat >"$tmp/generate.lua" <<EOF
wrk.method = "POST"
wrk.path = "/reports/generate"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"iterations":$n}'
wrk.headers["Connection"] = "close"
EOF
  read -r _ idle _ _ < <(wrk_run -t1 -c8 -d"${short}s" "http://127.0.0.1:$port/api")
  wrk -t1 -c$((2 * $(nproc) + 2)) -d$((short + 3))s --timeout 30s -s "$tmp/generate.lua" \
    "http://127.0.0.1:$port" >/dev/null 2>&1 &
  load_pid=$!
  sleep 1.5
  busy=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^racefree_pool_busy_workers/ {print $2}')
  read -r _ loaded _ _ < <(wrk_run -t1 -c8 -d"${short}s" "http://127.0.0.1:$port/api")
  kill "$load_pid" 2>/dev/null && wait "$load_pid" 2>/dev/null || true
  stop_rf
  echo "$idle $loaded ${busy:-0}"
}
read -r pi_idle pi_loaded pi_busy < <(pool_p99 idle)
read -r pn_idle pn_loaded pn_busy < <(pool_p99 nice)

# -------------------------------------------------------------------- report
cores=$(nproc)
echo "racefreed (release, SQLite store in a temporary directory, \`--log-level warn\`,"
echo "\`--db-latency-ms 0 --upstream-latency-ms 0\`, defaults otherwise: $cores HTTP threads) and nginx"
echo "(\`worker_processes $cores\`, \`return 200 '{\"data\":\"ok\"}'\`) on 127.0.0.1, measured one"
echo "after the other in the same run with"
echo "\`wrk --latency -t1 -cN -d${dur}s\`. The purchase floor is \`bench_sqlite_purchase --raw 3\`"
echo "(one connection, the store's transaction and settings, no HTTP)."
echo
echo "| figure | racefreed | reference | reference value | ratio |"
echo "|---|---:|---|---:|---:|"
echo "| GET /api, -c64, req/s | $rf64 | nginx | $ng64 | $(ratio "$rf64" "$ng64") |"
echo "| GET /api, -c64, p99 ms | $rf64p99 | nginx | $ng64p99 | $(ratio "$rf64p99" "$ng64p99") |"
echo "| GET /api, -c256, req/s | $rf256 | nginx | $ng256 | $(ratio "$rf256" "$ng256") |"
echo "| GET /api, -c256, p99 ms | $rf256p99 | nginx | $ng256p99 | $(ratio "$rf256p99" "$ng256p99") |"
echo "| POST /inventory/purchase (one hot item), -c64, req/s | $rfbuy | C loop on SQLite | $floor | $(ratio "$rfbuy" "$floor") |"
echo "| POST /inventory/purchase, -c64, p99 ms | $rfbuyp99 | | | |"
echo "| GET /cache/hot (a cached key), -c64, req/s (3 x ${short}s interleaved) | $hot_rps | GET /api, same runs | $api_rps | $(ratio "$hot_rps" "$api_rps") |"
echo "| GET /api p99 ms, -c8, every pool worker busy ($pi_busy), \`--pool-priority idle\` | $pi_loaded | idle server | $pi_idle | $(ratio "$pi_loaded" "$pi_idle") |"
echo "| GET /api p99 ms, -c8, every pool worker busy ($pn_busy), \`--pool-priority nice\` | $pn_loaded | idle server | $pn_idle | $(ratio "$pn_loaded" "$pn_idle") |"
echo "| resident memory idle, MiB | $rss_idle | | | |"
echo "| resident memory peak under GET /api -c256, MiB | $rss_peak | idle | $rss_idle | $(ratio "$rss_peak" "$rss_idle") |"
echo "| start-up: exec to first 200 on /health (best of 3), ms | $best_startup | | | |"
echo
taken=$(awk -v l="${left:-0}" 'BEGIN {printf "%.0f", 1000000000000 - l}')
echo "Load average at the end of the run: $(cut -d' ' -f1-3 /proc/loadavg) on $cores cores."
echo "Purchase run: wrk counted $buy_total responses ($buy_bad non-2xx); the item's stock fell"
echo "by $taken (requests still in flight when wrk stopped are served but not counted by wrk)."
