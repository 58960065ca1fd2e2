#!/usr/bin/env bash
# quiet.sh LOG CMD... - run CMD with its output going to LOG only; on failure
# print the log (the compiler's errors are in it) and fail with CMD's status.
# `make run` and `make test` use it so that a good build prints nothing.
set -uo pipefail
log=$1
shift
mkdir -p "$(dirname "$log")"
if "$@" >"$log" 2>&1; then
  exit 0
else
  rc=$?
  if [ $rc -ge 128 ]; then # interrupted (Ctrl-C): the log is of no interest
    echo "interrupted: $* (output in $log)" >&2
    exit $rc
  fi
  cat "$log" >&2
  echo "failed: $* (exit $rc; full output in $log)" >&2
  exit $rc
fi
