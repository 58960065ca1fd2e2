#!/usr/bin/env bash
# soak.sh - racefreed under hours of mixed traffic (`make soak`; not in CI).
#
# One racefreed (--workers 2, SQLite) on a free 127.0.0.1 port, for
# SOAK_SECONDS (default 1800). Each cycle of SOAK_CYCLE_SECONDS (10):
#   - steady load: wrk, 32 connections, GET /api, for most of the cycle;
#   - bursts (racecheck burst): 64 simultaneous purchases of one item, 32
#     simultaneous withdrawals from one wallet, 16 simultaneous POST
#     /payments with one payment id;
#   - hostile requests: 300 query parameters (414), two Content-Length
#     headers (400, one answer, connection closed), an abandoned
#     half-request;
#   - then a sample: resident memory (VmRSS) and open descriptors of every
#     racefreed process, and the invariants: stock == initial - purchases
#     answered 200, balance == initial - withdrawals answered 200, neither
#     below zero, one charge per payment id, GET /health 200.
# Every SOAK_RESTART_SECONDS (300) the server is stopped with SIGTERM
# (graceful drain; exit status 0 required) and started again on the same
# database, so the invariants also span restarts.
# Prints a markdown section: the samples, then memory and descriptor growth
# per server run (first sample after a 30 s warm-up to the last), and any
# invariant broken (exit status 1 then). Every process started here is
# stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build/release}
racefreed=$build/src/server/racefreed
racecheck=$build/src/racecheck/racecheck
total=${SOAK_SECONDS:-1800}
cycle=${SOAK_CYCLE_SECONDS:-10}
restart_every=${SOAK_RESTART_SECONDS:-300}
warmup=30
STOCK=100000000
BALANCE=100000000

for bin in "$racefreed" "$racecheck"; do
  [ -x "$bin" ] || { echo "soak: $bin is missing (make release)" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "soak: wrk is missing (scripts/deps.sh)" >&2; exit 2; }

tmp=$(mktemp -d /tmp/rf-soak-XXXXXX)
rf_pid=
wrk_pid=
cleanup() {
  [ -n "$wrk_pid" ] && kill "$wrk_pid" 2>/dev/null || true
  [ -n "$rf_pid" ] && kill "$rf_pid" 2>/dev/null && wait "$rf_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port

start_server() {
  "$racefreed" --port "$port" --workers 2 --db "sqlite:$tmp/db" --log-level warn \
    --connection-timeout 5 >>"$tmp/server.log" 2>&1 &
  rf_pid=$!
  for _ in $(seq 1 100); do
    curl -fs "$base/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "soak: racefreed did not start" >&2
  tail -20 "$tmp/server.log" >&2
  exit 1
}

stop_server() {
  kill -TERM "$rf_pid"
  local rc=0
  wait "$rf_pid" || rc=$?
  rf_pid=
  if [ "$rc" -ne 0 ]; then
    broken+=("restart: racefreed exited with status $rc on SIGTERM")
  fi
}

# pids of racefreed: the supervisor and its workers
server_pids() {
  echo "$rf_pid"
  cat /proc/"$rf_pid"/task/*/children 2>/dev/null || true
}
rss_kib() {
  local t=0
  for p in $(server_pids); do
    t=$((t + $(awk '/^VmRSS:/ {print $2}' /proc/"$p"/status 2>/dev/null || echo 0)))
  done
  echo "$t"
}
fds() {
  local t=0
  for p in $(server_pids); do
    t=$((t + $(ls /proc/"$p"/fd 2>/dev/null | wc -l)))
  done
  echo "$t"
}

# answers with status $2 in racecheck report $1
tally() {
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"].get(sys.argv[2], 0))' "$1" "$2"
}
json_field() {
  curl -fs "$base$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}

burst() { # name n method path body
  "$racecheck" burst -q -t 1 -n "$2" -X "$3" -H 'Content-Type: application/json' \
    --json "$5" -o "$tmp/$1.json" "$base$4" >/dev/null 2>&1 || true
}

hostile() {
  local q
  q=$(seq -s '&' 1 300 | sed 's/\([0-9]\+\)/k\1=v/g')
  curl -s -o /dev/null -w '%{http_code}' "$base/api?$q" >"$tmp/h414" || true
  python3 - "$port" >"$tmp/h400" <<'EOF' || true
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"PUT /inventory/items/soak HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
          b"Content-Length: 40\r\n\r\n{}GET /api HTTP/1.1\r\nHost: x\r\n\r\n")
data = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    data += b
print(data.split(b" ")[1].decode() if data.startswith(b"HTTP/1.1 ") else "none",
      data.count(b"HTTP/1.1 "))
# a half-request, abandoned
t = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
t.sendall(b"GET /api HTTP/1.1\r\nHos")
EOF
}

broken=()
purchased=0
withdrawn=0
payments=0
samples="$tmp/samples"
: >"$samples"
t0=$(date +%s)
start_server
run=1
run_started=$t0
curl -fs -X PUT -H 'Content-Type: application/json' -d "{\"stock\":$STOCK}" \
  "$base/inventory/items/soak" >/dev/null
curl -fs -X PUT -H 'Content-Type: application/json' -d "{\"balance\":$BALANCE}" \
  "$base/wallets/soak" >/dev/null
n=0
while :; do
  now=$(date +%s)
  elapsed=$((now - t0))
  [ "$elapsed" -ge "$total" ] && break
  if [ $((now - run_started)) -ge "$restart_every" ]; then
    stop_server
    start_server
    run=$((run + 1))
    run_started=$(date +%s)
  fi
  n=$((n + 1))
  wrk -t1 -c32 -d$((cycle > 4 ? cycle - 3 : 1))s "$base/api" >"$tmp/wrk.out" 2>&1 &
  wrk_pid=$!
  burst purchase 64 POST /inventory/purchase '{"itemId":"soak","quantity":1}'
  burst withdraw 32 POST /wallets/soak/withdraw '{"amount":1}'
  burst pay 16 POST /payments "{\"paymentId\":\"soak-$n\",\"amount\":3}"
  hostile
  wait "$wrk_pid" || true
  wrk_pid=
  reqs=$(awk '/requests in/ {print $1}' "$tmp/wrk.out")
  purchased=$((purchased + $(tally "$tmp/purchase.json" 200)))
  withdrawn=$((withdrawn + $(tally "$tmp/withdraw.json" 200)))
  created=$(tally "$tmp/pay.json" 201)
  payments=$((payments + 1))
  stock=$(json_field /inventory/items/soak stock || echo '?')
  balance=$(json_field /wallets/soak balance || echo '?')
  health=$(curl -s -o /dev/null -w '%{http_code}' "$base/health" || echo 000)
  [ "$stock" = $((STOCK - purchased)) ] ||
    broken+=("t=${elapsed}s: stock $stock, expected $((STOCK - purchased))")
  [ "$balance" = $((BALANCE - withdrawn)) ] ||
    broken+=("t=${elapsed}s: balance $balance, expected $((BALANCE - withdrawn))")
  [ "$created" = 1 ] || broken+=("t=${elapsed}s: payment soak-$n created $created times")
  [ "$health" = 200 ] || broken+=("t=${elapsed}s: GET /health answered $health")
  [ "$(cat "$tmp/h414")" = 414 ] || broken+=("t=${elapsed}s: 300 parameters: $(cat "$tmp/h414")")
  [ "$(cat "$tmp/h400")" = "400 1" ] || broken+=("t=${elapsed}s: smuggling: $(cat "$tmp/h400")")
  echo "$elapsed $run $(rss_kib) $(fds) ${reqs:-0} $stock $balance" >>"$samples"
done
stop_server

echo "## Soak (bench/soak.sh)"
echo
echo "\`SOAK_SECONDS=$total SOAK_RESTART_SECONDS=$restart_every make soak\`: racefreed" \
  "--workers 2 (SQLite), cycles of ${cycle} s: wrk GET /api (32 connections), bursts of" \
  "64 purchases, 32 withdrawals and 16 same-id payments (racecheck burst), 300" \
  "query parameters, a smuggling attempt and an abandoned half-request; SIGTERM and restart" \
  "on the same database every ${restart_every} s. $(date -u +%Y-%m-%d), $(nproc) cores."
echo
echo "| t (s) | run | RSS, all processes (MiB) | open fds | GET /api in the cycle |"
echo "|---|---|---|---|---|"
awk -v every="$(($(wc -l <"$samples") / 12 + 1))" \
  '(NR - 1) % every == 0 {printf "| %d | %d | %.1f | %d | %d |\n", $1, $2, $3 / 1024, $4, $5}' "$samples"
echo
echo "| run | samples | RSS after ${warmup} s → end (MiB) | fds min–max |"
echo "|---|---|---|---|"
awk -v w="$warmup" '
  { run = $2; if (!(run in first_t)) first_t[run] = $1 }
  $1 - first_t[run] >= w { if (!(run in a)) a[run] = $3; b[run] = $3 }
  { cnt[run]++; if (!(run in lo) || $4 < lo[run]) lo[run] = $4; if ($4 > hi[run]) hi[run] = $4 }
  END { for (r = 1; r in cnt; r++)
          printf "| %d | %d | %s | %d–%d |\n", r, cnt[r],
                 (r in a) ? sprintf("%.1f → %.1f", a[r] / 1024, b[r] / 1024) : "(too short)",
                 lo[r], hi[r] }' "$samples"
echo
echo "Purchases answered 200: $purchased; withdrawals answered 200: $withdrawn;" \
  "payment ids: $payments."
if [ ${#broken[@]} -eq 0 ]; then
  echo "Invariants: all held (stock, balance, one charge per payment id, /health, 414, 400 + close)."
else
  echo "Invariants BROKEN (${#broken[@]}):"
  printf -- '- %s\n' "${broken[@]:0:20}"
  exit 1
fi
