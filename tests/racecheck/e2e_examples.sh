#!/usr/bin/env bash
# e2e_examples.sh RACECHECK RACEFREED SCENARIO_DIR
#
# Runs every example scenario against a fresh racefreed (SQLite in a
# temporary directory, port 0) and requires exit 0; then every racy example
# (one with invariants) against a fresh `racefreed --unsafe` and requires
# exit 1 with a failed invariant named in report.json. A test that cannot
# fail proves nothing: the unsafe runs are the proof that these scenarios
# catch the races. Servers are stopped by PID; everything stays on
# 127.0.0.1 and is bounded in time.
set -uo pipefail
rc_bin=$1
srv_bin=$2
dir=$3
tmp=$(mktemp -d)
pid=""
failures=0
passed=0

cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# start_server NAME [ARGS...]: sets $url, or fails
start_server() {
  local name=$1
  shift
  mkdir -p "$tmp/$name"
  "$srv_bin" --port 0 --db "sqlite:$tmp/$name/db" "$@" >"$tmp/$name/out" 2>"$tmp/$name/err" &
  pid=$!
  url=""
  for _ in $(seq 1 100); do
    url=$(grep -o 'listening on http://[0-9.:]*' "$tmp/$name/out" 2>/dev/null | head -1 |
      sed 's/listening on //')
    [ -n "$url" ] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "e2e: racefreed did not start ($name):"
  cat "$tmp/$name/err"
  return 1
}

stop_server() {
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  pid=""
}

check() { # NAME OK(0|1)
  if [ "$2" -eq 0 ]; then
    passed=$((passed + 1))
    echo "ok   $1"
  else
    failures=$((failures + 1))
    echo "FAIL $1"
  fi
}

for f in "$dir"/*.yml; do
  name=$(basename "$f" .yml)
  # safe: everything holds
  if start_server "$name-safe"; then
    timeout 120 "$rc_bin" run -q --target "$url" -o "$tmp/$name-safe.json" "$f"
    code=$?
    stop_server
    if [ $code -ne 0 ]; then
      echo "e2e: $name against racefreed exited $code; failed checks:"
      grep '"ok": false' "$tmp/$name-safe.json" 2>/dev/null | head -10 || true
    fi
    check "$name passes against racefreed" $code
  else
    check "$name passes against racefreed (server start)" 1
  fi
  grep -q '^invariants:' "$f" || continue
  # unsafe: the race shows, the invariant names it
  if start_server "$name-unsafe" --unsafe; then
    timeout 120 "$rc_bin" run -q --target "$url" -o "$tmp/$name-unsafe.json" "$f"
    code=$?
    stop_server
    broken=$(grep -o '"kind": "invariant", "name": "[^"]*", "ok": false' \
      "$tmp/$name-unsafe.json" 2>/dev/null | head -1 | sed 's/.*"name": "\([^"]*\)".*/\1/')
    if [ $code -eq 1 ] && [ -n "$broken" ]; then
      echo "     caught under --unsafe: $broken"
      check "$name fails against racefreed --unsafe" 0
    else
      echo "e2e: $name against racefreed --unsafe exited $code, broken invariant: '${broken}'"
      check "$name fails against racefreed --unsafe" 1
    fi
  else
    check "$name fails against racefreed --unsafe (server start)" 1
  fi
done
echo "$passed passed, $failures failed"
[ $failures -eq 0 ]
