#!/usr/bin/env bash
# check_samples.sh RACEFREED PAGE... - the ```console samples of each page are
# what the commands print. Each page gets a fresh racefreed (port 0, a new
# SQLite database); its `$ ` lines run in order with localhost:3000 replaced
# by the server's address, and their output (Date and Content-Length headers
# and carriage returns removed) must equal the lines that follow them.
set -euo pipefail
racefreed=$(realpath "$1")
shift
PATH="$(dirname "$racefreed"):$PATH" # samples may run racefreed itself
export PATH
tmp=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

status=0
for page in "$@"; do
  rm -rf "$tmp/db" && mkdir -p "$tmp/db"
  # The simulated latencies change how long answers take, never what they say:
  # 0 keeps the test fast.
  "$racefreed" --port 0 --db "sqlite:$tmp/db/racefree.db" --upstream-latency-ms 0 \
    --charge-latency-ms 0 --email-latency-ms 0 --db-latency-ms 0 >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  addr=
  for _ in $(seq 100); do
    addr=$(sed -n 's|^listening on http://||p' "$tmp/out")
    [ -n "$addr" ] && break
    sleep 0.05
  done
  if [ -z "$addr" ]; then
    echo "check_samples: racefreed did not start:" >&2
    cat "$tmp/err" >&2
    exit 1
  fi
  # Split the page's console blocks into (command, expected output) pairs.
  awk -v dir="$tmp" '
    /^```console$/ { inblk = 1; next }
    /^```/ && inblk { inblk = 0; next }
    !inblk { next }
    /^\$ / { n++; f = sprintf("%s/c%03d", dir, n); print substr($0, 3) > f ".cmd"; printf "" > f ".exp"; next }
    n { print >> (f ".exp") }
  ' "$page"
  # One shell runs every command of the page in order (a process per
  # command would make this test slow on a busy machine).
  count=0
  : >"$tmp/script"
  for cmd in "$tmp"/c*.cmd; do
    [ -e "$cmd" ] || continue
    count=$((count + 1))
    line=$(<"$cmd")
    printf '{ %s\n} >%q 2>&1\n' "${line//localhost:3000/$addr}" "${cmd%.cmd}.got" >>"$tmp/script"
  done
  (cd "$tmp" && bash "$tmp/script") || true
  [ $count -eq 0 ] || sed -i -e 's/\r$//' -e '/^Date: /d' -e '/^Content-Length: /d' "$tmp"/c*.got
  for cmd in "$tmp"/c*.cmd; do
    [ -e "$cmd" ] || continue
    got=$(<"${cmd%.cmd}.got")
    if [ "$got" != "$(<"${cmd%.cmd}.exp")" ]; then
      echo "$(basename "$page"): \$ $(<"$cmd")" >&2
      diff "${cmd%.cmd}.exp" <(printf '%s\n' "$got") | sed 's/^/  /' >&2 || true
      status=1
    fi
  done
  rm -f "$tmp"/c*.cmd "$tmp"/c*.exp "$tmp"/c*.got
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  echo "check_samples: $(basename "$page"): $count commands run"
done
exit $status
