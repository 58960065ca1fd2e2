#!/usr/bin/env bash
# writes.bench.sh - racefreed's write routes next to GET /api in the same run
# (part of `make bench`): wrk -t1 -c64 against one racefreed on SQLite,
#   GET /api                   the reference: no database at all
#   GET /cache/hot             a cached key
#   POST /inventory/purchase   one hot item (the writer's group commit)
#   POST /users                a new email each (an INSERT per request)
# in ROUNDS rounds, the routes alternating inside each round, medians shown.
# With REF=/path/to/another/racefreed the same rounds also run against that
# binary (e.g. an older build), alternating with this one, for a before/after
# ratio measured in the same run. Also prints racefree_store_loop_waits_total
# after the run (database waits on HTTP threads: 0 expected).
# Everything listens on 127.0.0.1; every process started here is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
build=${BUILD:-build/release}
racefreed=${RACEFREED:-$build/src/server/racefreed}
ref=${REF:-}
dur=${BENCH_SECONDS:-5}
rounds=${ROUNDS:-3}
conns=${CONNS:-64}

echo "## Write routes vs GET /api (writes.bench.sh)"
echo
if [ ! -x "$racefreed" ] || ! command -v wrk >/dev/null; then
  echo "Skipped: needs $racefreed and wrk."
  exit 0
fi

tmp=$(mktemp -d /tmp/rf-bench-writes-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

args=(--db-latency-ms 0 --upstream-latency-ms 0)
names=(new)
bins=("$racefreed")
[ -n "$ref" ] && names+=(ref) && bins+=("$ref")
declare -A port
for i in "${!names[@]}"; do
  mkdir -p "$tmp/${names[$i]}"
  start_racefreed "${bins[$i]}" "$tmp/${names[$i]}" "${args[@]}"
  if [ -z "$rf_port" ]; then
    echo "Skipped: ${bins[$i]} did not start: $(tail -3 "$tmp/${names[$i]}/racefreed.err")"
    exit 0
  fi
  pids+=("$rf_pid")
  port[${names[$i]}]=$rf_port
  curl -s -X PUT "http://127.0.0.1:$rf_port/inventory/items/hot" -d '{"stock":1000000000000}' >/dev/null
  curl -s "http://127.0.0.1:$rf_port/cache/hot" >/dev/null
done

routes=(api cache purchase users)
declare -A rps p99
for r in $(seq 1 "$rounds"); do
  for n in "${names[@]}"; do
    p=${port[$n]}
    for route in "${routes[@]}"; do
      case $route in
      api) set -- "http://127.0.0.1:$p/api" ;;
      cache) set -- "http://127.0.0.1:$p/cache/hot" ;;
      purchase) set -- -s bench/lua/purchase.lua "http://127.0.0.1:$p/inventory/purchase" ;;
      users) set -- -s bench/lua/users.lua "http://127.0.0.1:$p/users" ;;
      esac
      read -r x q _ _ < <(RF_RUN="$n$r$$" wrk_run -t1 -c"$conns" -d"${dur}s" "$@")
      rps[$n.$route]="${rps[$n.$route]:-} $x"
      p99[$n.$route]="${p99[$n.$route]:-} $q"
      echo "bench: round $r $n $route: $x req/s, p99 $q ms" >&2
    done
  done
done

echo "Command: \`bash bench/writes.bench.sh\` (BENCH_SECONDS=$dur ROUNDS=$rounds CONNS=$conns),"
echo "release build, \`--db-latency-ms 0 --upstream-latency-ms 0\`, \`wrk --latency -t1 -c$conns -d${dur}s\`"
echo "per figure, $(nproc) cores shared by server and wrk. Medians of $rounds rounds."
echo
for n in "${names[@]}"; do
  if [ -n "$ref" ]; then
    if [ "$n" = ref ]; then echo "### ref: $ref"; else echo "### new: $racefreed"; fi
    echo
  fi
  echo "| route | req/s | vs GET /api | p99 ms |"
  echo "|---|---:|---:|---:|"
  # shellcheck disable=SC2086
  api=$(median ${rps[$n.api]})
  for route in "${routes[@]}"; do
    # shellcheck disable=SC2086
    m=$(median ${rps[$n.$route]})
    # shellcheck disable=SC2086
    q=$(median ${p99[$n.$route]})
    label=$route
    case $route in
    api) label="GET /api" ;; cache) label="GET /cache/hot" ;;
    purchase) label="POST /inventory/purchase" ;; users) label="POST /users" ;;
    esac
    printf '| %s | %.0f | %s | %s |\n' "$label" "$m" "$(ratio "$m" "$api")" "$q"
  done
  waits=$(curl -s "http://127.0.0.1:${port[$n]}/metrics" | awk '/^racefree_store_loop_waits_total/ {print $2}')
  echo
  echo "Database waits on HTTP threads (racefree_store_loop_waits_total): ${waits:-not exported}."
  echo
done
if [ -n "$ref" ]; then
  echo "| route | req/s new / ref | p99 new / ref |"
  echo "|---|---:|---:|"
  for route in "${routes[@]}"; do
    # shellcheck disable=SC2086
    printf '| %s | %s | %s |\n' "$route" "$(ratio "$(median ${rps[new.$route]})" "$(median ${rps[ref.$route]})")" \
      "$(ratio "$(median ${p99[new.$route]})" "$(median ${p99[ref.$route]})")"
  done
fi
