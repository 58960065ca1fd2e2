# lib.sh - helpers shared by the bench/*.bench.sh scripts (sourced).

now_ms() { echo $(($(date +%s%N) / 1000000)); }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }

# median of the numbers given as arguments
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {
  if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# wrk's Requests/sec, 99th percentile (ms), responses and non-2xx responses
# as "RPS P99 TOTAL NON2XX".
wrk_run() {
  local out
  out=$(wrk --latency "$@" 2>&1)
  local rps p99
  rps=$(echo "$out" | awk '/^Requests\/sec:/ {printf "%.0f", $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+/, "", v);
          if (u == "us") v /= 1000; else if (u == "s") v *= 1000; printf "%.2f", v}')
  local total non2xx
  total=$(echo "$out" | awk '/requests in/ {print $1}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  if [ -n "$non2xx" ]; then echo "bench: wrk $*: $non2xx non-2xx answers" >&2; fi
  echo "${rps:-0} ${p99:-0} ${total:-0} ${non2xx:-0}"
}

# start_racefreed BIN DIR [ARGS...]: start BIN on a free port with a fresh
# SQLite database in DIR; sets rf_pid and rf_port (empty port: it failed).
start_racefreed() {
  local bin=$1 dir=$2
  shift 2
  rm -f "$dir"/db*
  "$bin" --bind 127.0.0.1 --port 0 --db "sqlite:$dir/db" --log-level warn "$@" \
    >"$dir/racefreed.out" 2>"$dir/racefreed.err" &
  rf_pid=$!
  rf_port=
  for _ in $(seq 1 2000); do
    rf_port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$dir/racefreed.out" | head -1)
    [ -n "$rf_port" ] && break
    kill -0 "$rf_pid" 2>/dev/null || break
    sleep 0.002
  done
  [ -n "$rf_port" ] || return 0
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$rf_port/health")" = 200 ]; do
    sleep 0.002
  done
}
