#!/usr/bin/env bash
# run.sh - the main job: racefreed on the embedded SQLite default, in the
# foreground. The server's log goes to the terminal; once it listens, the
# address is printed last, where it is easy to find. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/release/src/server/racefreed
mkdir -p data
out=$(mktemp)
"$bin" --db sqlite:./data/racefree.db "$@" >"$out" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' INT TERM
trap 'rm -f "$out"' EXIT
addr=
while kill -0 $pid 2>/dev/null; do
  addr=$(sed -n 's|^listening on ||p' "$out")
  [ -n "$addr" ] && break
  sleep 0.05
done
if [ -z "$addr" ]; then # it stopped before listening: its error is on stderr
  cat "$out"
  wait $pid
  exit $?
fi
sleep 0.2 # let the start-up log lines go first
cat <<MSG

  racefreed is listening on $addr   (Ctrl-C stops it)
  try:  curl -s ${addr}/health

MSG
rc=0
wait $pid || rc=$?
if kill -0 $pid 2>/dev/null; then # wait was interrupted by Ctrl-C: wait for the exit
  rc=0
  wait $pid || rc=$?
fi
exit $rc
