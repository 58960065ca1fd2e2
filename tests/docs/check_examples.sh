#!/usr/bin/env bash
# check_examples.sh BINDIR SRC - every example program in SRC/examples is
# shown running on a page of SRC/docs (a ```console block whose `$ ./NAME`
# line is followed by what it prints), and running BINDIR/NAME exits 0 and
# prints exactly that. counter_demo is exempt: it prints how many increments
# the naive counter lost, which differs from run to run.
set -euo pipefail
bindir=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
exempt=" counter_demo "

# (page, command, expected output) for every `$ ./NAME` sample in the docs,
# as $tmp/kNNNN.{page,cmd,exp}: one awk over all pages.
awk -v dir="$tmp" '
  FNR == 1 { inblk = 0; cur = "" }
  /^```console$/ { inblk = 1; cur = ""; next }
  /^```/ && inblk { inblk = 0; cur = ""; next }
  !inblk { next }
  /^\$ \.\// { n++; cur = sprintf("%s/k%04d", dir, n); page = FILENAME; sub(/.*\//, "", page)
               print page > (cur ".page"); print substr($0, 5) > (cur ".cmd"); printf "" > (cur ".exp"); next }
  /^\$ / { cur = ""; next }
  cur != "" { print >> (cur ".exp") }
' "$src"/README.md "$src"/docs/*.md

status=0
shown=" "
for cmd in "$tmp"/k*.cmd; do
  [ -e "$cmd" ] || continue
  base=${cmd%.cmd}
  line=$(<"$cmd")
  name=${line%% *}
  shown="$shown$name "
  page=$(<"$base.page")
  if [ ! -x "$bindir/$name" ]; then
    echo "$page: \$ ./$line: no program $bindir/$name" >&2
    status=1
    continue
  fi
  rc=0
  got=$(cd "$bindir" && bash -c "./$line" 2>&1) || rc=$?
  if [ $rc -ne 0 ]; then
    echo "$page: \$ ./$line exited $rc" >&2
    status=1
  fi
  if [ "$got" != "$(<"$base.exp")" ]; then
    echo "$page: \$ ./$line prints something else than the page shows:" >&2
    diff <(cat "$base.exp") <(printf '%s\n' "$got") | sed 's/^/  /' >&2 || true
    status=1
  fi
done
for c in "$src"/examples/*.c; do
  name=$(basename "$c" .c)
  case "$exempt$shown" in
  *" $name "*) ;;
  *)
    echo "examples/$name.c is not shown running on any page of docs/ (a \`\$ ./$name\` sample)" >&2
    status=1
    ;;
  esac
done
[ $status -eq 0 ] && echo "check_examples: $(ls "$tmp"/k*.cmd 2>/dev/null | wc -l) samples match"
exit $status
