#!/usr/bin/env bash
# check_howto.sh RACEFREED RACECHECK PAGE - the racecheck how-to's sample
# reports are what racecheck prints. Against a fresh `racefreed --unsafe`,
# it runs the page's burst command (section 2) and its oversell.yml
# (section 3), and every line of the sample outputs must appear in what
# racecheck printed; lines that differ from run to run (memory, the ids of
# the requests involved, the rendered request line with its random item
# name) are left out of the comparison.
set -euo pipefail
racefreed=$(realpath "$1")
racecheck=$(realpath "$2")
page=$3
tmp=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# Every fenced block of the page, numbered in order: $tmp/b<N>, and
# $tmp/b<N>.lang.
awk -v dir="$tmp" '
  /^ *```/ && !inblk { inblk = 1; n++; lang = $0; sub(/^ *```/, "", lang);
                       print lang > (dir "/b" n ".lang"); printf "" > (dir "/b" n); next }
  /^ *```/ && inblk { inblk = 0; next }
  inblk { print >> (dir "/b" n) }
' "$page"
find_block() { # find_block PATTERN: the first block whose text contains PATTERN
  grep -l -F -- "$1" "$tmp"/b[0-9]* | sort -V | head -1
}

"$racefreed" --unsafe --port 0 --db "sqlite:$tmp/db" >"$tmp/out" 2>/dev/null &
pid=$!
addr=
for _ in $(seq 100); do
  addr=$(sed -n 's|^listening on ||p' "$tmp/out")
  [ -n "$addr" ] && break
  sleep 0.05
done
[ -n "$addr" ] || { echo "check_howto: racefreed did not start" >&2; exit 1; }

status=0
compare() { # compare EXPECTED_BLOCK ACTUAL_FILE WHAT (lines compared trimmed)
  local line
  sed 's/^ *//; s/ *$//' "$2" >"$2.trimmed"
  while IFS= read -r line; do
    line=$(sed 's/^ *//; s/ *$//' <<<"$line")
    case $line in '' | *"peak RSS"* | *"requests involved"* | "request: GET /inventory/items/item-"*) continue ;; esac
    if ! grep -q -x -F -- "$line" "$2.trimmed"; then
      echo "check_howto: $3: racecheck did not print: $line" >&2
      status=1
    fi
  done <"$1"
}

# Section 2: the burst command and the report lines shown after it.
cmd=$(find_block 'racecheck burst -n 50')
exp=$(find_block 'status codes    201:')
sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$cmd" | sed "s|^racecheck|'$racecheck'|; s|http://127.0.0.1:3000|$addr|" >"$tmp/burst.sh"
(cd "$tmp" && bash burst.sh >"$tmp/burst.out" 2>&1) || true
compare "$exp" "$tmp/burst.out" "the burst of section 2"

# Section 3: oversell.yml and the failing invariants shown for it (twice).
yml=$(find_block '# oversell.yml')
cp "$yml" "$tmp/oversell.yml"
(cd "$tmp" && "$racecheck" run --target "$addr" oversell.yml >"$tmp/run.out" 2>&1) || true
for exp in $(grep -l -F 'FAIL invariant no overselling' "$tmp"/b[0-9]*); do
  compare "$exp" "$tmp/run.out" "oversell.yml"
done
[ $status -eq 0 ] && echo "check_howto: the sample reports match racecheck's"
exit $status
