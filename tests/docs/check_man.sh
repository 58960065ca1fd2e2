#!/usr/bin/env bash
# check_man.sh BUILD_DIR RACEFREED - the man pages are installed by
# `cmake --install` (what `make install` runs), render without warnings, and
# racefreed(1) documents every option of the binary.
set -euo pipefail
build=$1
racefreed=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
status=0
for page in man1/racefreed.1 man1/racecheck.1 man7/racefree.7; do
  f=$prefix/share/man/$page
  if [ ! -s "$f" ]; then
    echo "check_man: make install did not install share/man/$page" >&2
    status=1
    continue
  fi
  warnings=$(MANWIDTH=80 man --warnings -l "$f" 2>&1 >/dev/null || echo "man failed")
  if [ -n "$warnings" ]; then
    echo "check_man: $page renders with warnings:" >&2
    printf '%s\n' "$warnings" | sed 's/^/  /' >&2
    status=1
  fi
done
text=$(MANWIDTH=200 man -l "$prefix/share/man/man1/racefreed.1" 2>/dev/null)
for flag in $("$racefreed" --help-markdown | sed -n 's/^| `\(--[a-z0-9-]*\).*/\1/p'); do
  if ! grep -q -- "^ *$flag\b" <<<"$text"; then
    echo "check_man: racefreed(1) does not document $flag" >&2
    status=1
  fi
done
[ $status -eq 0 ] && echo "check_man: racefreed(1), racecheck(1), racefree(7) installed and complete"
exit $status
