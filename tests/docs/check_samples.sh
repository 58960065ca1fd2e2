#!/usr/bin/env bash
# check_samples.sh RACEFREED PAGE... - the ```console samples of each page are
# what the commands print. Each page gets a fresh racefreed (port 0, a new
# SQLite database); its `$ ` lines run in order with localhost:3000 replaced
# by the server's address, and their output (Date and Content-Length headers
# and carriage returns removed) must equal the lines that follow them.
set -euo pipefail
racefreed=$1
shift
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
  "$racefreed" --port 0 --db "sqlite:$tmp/db/racefree.db" >"$tmp/out" 2>"$tmp/err" &
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
  count=0
  for cmd in "$tmp"/c*.cmd; do
    [ -e "$cmd" ] || continue
    count=$((count + 1))
    exp=${cmd%.cmd}.exp
    line=$(cat "$cmd")
    # curl prints no newline after a body: add one, as the page shows it.
    got=$( (cd "$tmp" && bash -c "${line//localhost:3000/$addr}") 2>&1 | tr -d '\r' |
      grep -v '^Date: \|^Content-Length: ' || true)
    if [ "$got" != "$(cat "$exp")" ]; then
      echo "$(basename "$page"): \$ $line" >&2
      diff <(cat "$exp") <(printf '%s\n' "$got") | sed 's/^/  /' >&2 || true
      status=1
    fi
  done
  rm -f "$tmp"/c*.cmd "$tmp"/c*.exp
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  echo "check_samples: $(basename "$page"): $count commands run"
done
exit $status
