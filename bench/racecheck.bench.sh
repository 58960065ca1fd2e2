#!/usr/bin/env bash
# racecheck.bench.sh - racecheck next to its references, measured in the same
# run on the same machine (bench/run.sh collects the markdown it prints):
#   1. closed model, GET /api on racefreed: racecheck bench vs wrk, same
#      threads, connections and duration (target: ratio >= 0.9)
#   2. open model: the highest arrival rate (one new virtual user, one new
#      connection, one GET per arrival) that racecheck and Artillery each
#      deliver without falling behind, against a local nginx (target >= 50x).
#      Artillery is installed into bench/node_modules with npm on first use.
#   3. memory with 10,000 open connections: racecheck vs wrk (target < 50 MiB)
#   4. closed model over TLS against nginx (self-signed certificate made at run
#      time): racecheck bench -k vs wrk (target: ratio >= 0.8)
# Everything runs on 127.0.0.1, bounded in time; servers are stopped by PID.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build/release}
rc=$build/src/racecheck/racecheck
srv=$build/src/server/racefreed
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

json_num() { # FILE KEY: first number after "KEY":
  grep -o "\"$2\": *[0-9.]*" "$1" | head -1 | sed 's/.*: *//'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
best() { printf '%s\n' "$@" | sort -g | tail -1; }

echo "## racecheck"
echo
if [ ! -x "$rc" ]; then
  echo "racecheck is not built in $build: skipped."
  exit 0
fi
threads=2
conns=64
dur=5

# ------------------------------------------------------------ 1. closed model
echo "### Closed model: racecheck bench vs wrk (GET /api on racefreed)"
echo
if [ -x "$srv" ] && command -v wrk >/dev/null; then
  mkdir -p "$tmp/srv"
  "$srv" --port 0 --db "sqlite:$tmp/srv/db" --log-level warn >"$tmp/srv/out" 2>"$tmp/srv/err" &
  pids+=($!)
  url=""
  for _ in $(seq 1 50); do
    url=$(grep -o 'http://[0-9.:]*' "$tmp/srv/out" 2>/dev/null | head -1)
    [ -n "$url" ] && break
    sleep 0.1
  done
  if [ -n "$url" ]; then
    rc_rates=()
    wrk_rates=()
    for round in 1 2; do # interleaved, best of two: the machine is shared
      w=$(wrk -t$threads -c$conns -d${dur}s "$url/api" 2>/dev/null | awk '/Requests\/sec/ {print $2}')
      wrk_rates+=("${w:-0}")
      "$rc" bench -q -t $threads -c $conns -d ${dur}s -o "$tmp/closed.json" "$url/api"
      rc_rates+=("$(json_num "$tmp/closed.json" rate)")
    done
    r=$(best "${rc_rates[@]}")
    w=$(best "${wrk_rates[@]}")
    echo "\`racecheck bench -t $threads -c $conns -d ${dur}s $url/api\` vs \`wrk -t$threads -c$conns -d${dur}s\`, best of 2 interleaved runs"
    echo
    echo "| figure | racecheck | wrk (reference) | ratio |"
    echo "|---|---|---|---|"
    printf '| requests/s | %.0f | %.0f | %s |\n' "$r" "$w" "$(ratio "$r" "$w")"
    echo
  else
    echo "racefreed did not start: skipped."
    echo
  fi
  kill "${pids[-1]}" 2>/dev/null
  wait "${pids[-1]}" 2>/dev/null
  unset 'pids[-1]'
else
  echo "racefreed or wrk missing: skipped."
  echo
fi

# ------------------------------------------------------------ local listener
# nginx answers every request with a tiny 200: it is fast to accept new
# connections, so the open-model and memory figures measure the load
# generator, not the service under test.
target=""
if command -v nginx >/dev/null; then
  mkdir -p "$tmp/nginx/logs"
  for port in $(seq 18100 18199); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && continue # taken
    cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/logs/error.log crit;
worker_rlimit_nofile 25000;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx; proxy_temp_path $tmp/nginx;
  fastcgi_temp_path $tmp/nginx; uwsgi_temp_path $tmp/nginx; scgi_temp_path $tmp/nginx;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / { return 200 '{"data":"ok"}'; }
  }
}
EOF
    (ulimit -n 25000 2>/dev/null; exec nginx -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx") &
    pids+=($!)
    sleep 0.5
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
      target="http://127.0.0.1:$port"
      break
    fi
    kill "${pids[-1]}" 2>/dev/null
    unset 'pids[-1]'
  done
fi

# ------------------------------------------------------------ 2. open model
echo "### Open model: highest arrival rate delivered without falling behind"
echo
if [ -z "$target" ]; then
  echo "nginx is not available for a local listener: skipped."
  echo
else
  # one arrival = one virtual user = one new connection and one GET
  scenario() { # RATE DURATION FILE
    cat >"$3" <<EOF
config:
  target: "$target"
  phases:
    - duration: $2
      arrivalRate: $1
scenarios:
  - flow:
      - get:
          url: "/api"
EOF
  }
  # racecheck: every request answered, none failed, the worst arrival started
  # at most 100 ms late, and the run lasted at most one second more than the
  # phase
  rc_best=0
  for rate in 2000 4000 8000 12000 16000 24000 32000 48000; do
    scenario $rate 3 "$tmp/open.yml"
    timeout 60 "$rc" run -q -t $threads -o "$tmp/open.json" "$tmp/open.yml" || true
    answered=$(json_num "$tmp/open.json" answered)
    errors=$(json_num "$tmp/open.json" errors)
    lag=$(json_num "$tmp/open.json" arrival_lag_max_ms)
    d=$(json_num "$tmp/open.json" duration_s)
    ok=$(awk -v a="${answered:-0}" -v e="${errors:-1}" -v l="${lag:-1e9}" -v d="${d:-1e9}" -v n=$((rate * 3)) \
      'BEGIN { print (a == n && e == 0 && l <= 100 && d <= 4) ? 1 : 0 }')
    echo "bench: racecheck $rate/s: answered ${answered:-?}/$((rate * 3)), errors ${errors:-?}, worst lag ${lag:-?} ms, ${d:-?} s" >&2
    [ "$ok" = 1 ] || break
    rc_best=$rate
  done
  # Artillery: every virtual user created and completed without error, and
  # the span of its metrics at most one second more than the phase
  art=bench/node_modules/.bin/artillery
  art_note=""
  if [ ! -x "$art" ] && command -v npm >/dev/null; then
    echo "bench: installing Artillery into bench/node_modules (first run only)" >&2
    (cd bench && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout 900 npm install --no-save \
      --no-audit --no-fund --ignore-scripts --loglevel=error artillery@2 >"$tmp/npm.log" 2>&1) ||
      art_note="npm install artillery failed"
  fi
  art_best=0
  if [ -x "$art" ] && command -v node >/dev/null; then
    for rate in 100 200 400 800 1200 1600 2400 3200; do
      scenario $rate 5 "$tmp/art.yml"
      timeout 120 "$art" run -o "$tmp/art.json" "$tmp/art.yml" >"$tmp/art.log" 2>&1 || break
      ok=$(node -e '
        const a = require(process.argv[1]).aggregate, c = a.counters, n = +process.argv[2];
        const done = (c["vusers.completed"] || 0) === n && !(c["vusers.failed"] > 0) &&
                     (c["http.responses"] || 0) === n;
        const span = (a.lastCounterAt - a.firstCounterAt) / 1000;
        console.log(done && span <= 6 ? 1 : 0);' "$tmp/art.json" $((rate * 5)) 2>/dev/null)
      echo "bench: artillery $rate/s: keeps up: ${ok:-no}" >&2
      [ "$ok" = 1 ] || break
      art_best=$rate
    done
  else
    art_note=${art_note:-"npm/node not available"}
  fi
  echo "One arrival = one virtual user with a new connection and one GET, against a local nginx."
  echo "racecheck: \`racecheck run -t $threads\` with 3 s phases of 2000..48000 arrivals/s; it keeps up when every"
  echo "request is answered, none fails, no arrival starts more than 100 ms late and the run ends within 1 s of"
  echo "the phase. Artillery 2: 5 s phases of 100..3200 arrivals/s; it keeps up when every virtual user completes"
  echo "without error and its metrics span at most 1 s more than the phase."
  echo
  echo "| figure | racecheck | Artillery (reference) | ratio |"
  echo "|---|---|---|---|"
  if [ "$art_best" -gt 0 ]; then
    echo "| arrivals/s without falling behind | $rc_best | $art_best | $(ratio "$rc_best" "$art_best") |"
  else
    echo "| arrivals/s without falling behind | $rc_best | not measured (${art_note:-below 50/s}) | n/a |"
  fi
  echo
fi

# ------------------------------------------------------------ 3. memory
echo "### Memory with 10,000 open connections"
echo
if [ -z "$target" ]; then
  echo "nginx is not available for a local listener: skipped."
  echo
else
  ulimit -n 25000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
  if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10100 ]; then
    echo "ulimit -n is $(ulimit -n) (hard limit $(ulimit -Hn)): 10,000 connections need more: skipped."
    echo
  else
    "$rc" bench -q -t $threads -c 10000 -d 3s -o "$tmp/mem.json" "$target/api"
    rss=$(json_num "$tmp/mem.json" max_rss_kib)
    wrss=""
    if command -v wrk >/dev/null && [ -x /usr/bin/time ]; then
      /usr/bin/time -f '%M' -o "$tmp/wrk.rss" wrk -t$threads -c10000 -d3s "$target/api" >/dev/null 2>&1
      wrss=$(tail -1 "$tmp/wrk.rss" 2>/dev/null)
    fi
    echo "\`racecheck bench -t $threads -c 10000 -d 3s\` (peak RSS from report.json) vs \`wrk -t$threads -c10000 -d3s\` (peak RSS from /usr/bin/time)"
    echo
    echo "| figure | racecheck | wrk (reference) | ratio |"
    echo "|---|---|---|---|"
    awk -v r="$rss" -v w="${wrss:-0}" 'BEGIN {
      printf "| peak RSS, MiB | %.1f | %s | %s |\n", r / 1024, (w > 0 ? sprintf("%.1f", w / 1024) : "n/a"),
             (w > 0 ? sprintf("%.2fx", r / w) : "n/a") }'
    echo
  fi
fi

# ------------------------------------------------------------ 4. closed model over TLS
echo "### Closed model over TLS: racecheck bench vs wrk (nginx with TLS)"
echo
if command -v nginx >/dev/null && command -v wrk >/dev/null && command -v openssl >/dev/null; then
  mkdir -p "$tmp/tls"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/tls/key.pem" -out "$tmp/tls/cert.pem" \
    -days 1 -subj "/CN=localhost" -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
  tls_target=""
  for port in $(seq 18200 18299); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && continue # taken
    cat >"$tmp/tls/nginx.conf" <<EOF2
worker_processes 1;
daemon off;
pid $tmp/tls/nginx.pid;
error_log $tmp/tls/error.log crit;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $tmp/tls; proxy_temp_path $tmp/tls;
  fastcgi_temp_path $tmp/tls; uwsgi_temp_path $tmp/tls; scgi_temp_path $tmp/tls;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$port ssl;
    ssl_certificate $tmp/tls/cert.pem;
    ssl_certificate_key $tmp/tls/key.pem;
    location / { return 200 '{"data":"ok"}'; }
  }
}
EOF2
    nginx -c "$tmp/tls/nginx.conf" -p "$tmp/tls" &
    pids+=($!)
    sleep 0.5
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
      tls_target="https://127.0.0.1:$port"
      break
    fi
    kill "${pids[-1]}" 2>/dev/null
    unset 'pids[-1]'
  done
  if [ -n "$tls_target" ]; then
    rc_rates=()
    wrk_rates=()
    for round in 1 2; do # interleaved, best of two: the machine is shared
      w=$(wrk -t$threads -c$conns -d${dur}s "$tls_target/api" 2>/dev/null | awk '/Requests\/sec/ {print $2}')
      wrk_rates+=("${w:-0}")
      "$rc" bench -q -k -t $threads -c $conns -d ${dur}s -o "$tmp/tls.json" "$tls_target/api"
      rc_rates+=("$(json_num "$tmp/tls.json" rate)")
    done
    r=$(best "${rc_rates[@]}")
    w=$(best "${wrk_rates[@]}")
    echo "\`racecheck bench -k -t $threads -c $conns -d ${dur}s $tls_target/api\` vs \`wrk -t$threads -c$conns -d${dur}s\`, best of 2 interleaved runs (keep-alive: the handshakes are not what is measured)"
    echo
    echo "| figure | racecheck | wrk (reference) | ratio |"
    echo "|---|---|---|---|"
    printf '| requests/s over TLS | %.0f | %.0f | %s |\n' "$r" "$w" "$(ratio "$r" "$w")"
    echo
  else
    echo "nginx with TLS did not start: skipped."
    echo
  fi
else
  echo "nginx, wrk or openssl missing: skipped."
  echo
fi
