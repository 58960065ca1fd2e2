#!/usr/bin/env bash
# check_configuration.sh RACEFREED PAGE - the option table in PAGE (between
# the BEGIN/END markers) is exactly `racefreed --help-markdown`, and
# `racefreed --help` names every option of that table.
set -euo pipefail
racefreed=$1
page=$2
doc=$(sed -n '/^<!-- BEGIN racefreed --help-markdown -->$/,/^<!-- END racefreed --help-markdown -->$/p' \
  "$page" | sed '1d;$d')
if [ -z "$doc" ]; then
  echo "check_configuration: no BEGIN/END racefreed --help-markdown markers in $page" >&2
  exit 1
fi
status=0
if ! diff -u <(printf '%s\n' "$doc") <("$racefreed" --help-markdown) >&2; then
  echo "check_configuration: $page's table differs from racefreed --help-markdown (above:" \
       "- the page, + the binary); paste the binary's output between the markers" >&2
  status=1
fi
help=$("$racefreed" --help)
for flag in $("$racefreed" --help-markdown | sed -n 's/^| `\(--[a-z0-9-]*\).*/\1/p') \
            --config --help --version --help-markdown; do
  if ! grep -q -- "^  $flag\b" <<<"$help"; then
    echo "check_configuration: racefreed --help does not list $flag" >&2
    status=1
  fi
done
[ $status -eq 0 ] && echo "check_configuration: the table and --help match the binary"
exit $status
