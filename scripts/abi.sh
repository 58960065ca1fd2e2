#!/usr/bin/env bash
# abi.sh - libracefree's ABI against the baseline kept in abi/libracefree.abi
# (libabigail: abidw writes the ABI of a shared library with its debug
# information, abidiff compares two).
#   bash scripts/abi.sh check BUILD_DIR    fail on any difference (CI)
#   bash scripts/abi.sh update BUILD_DIR   write the baseline again: for an
#                                          intended change, committed with
#                                          the soname bump / CHANGELOG entry
# Only what the public headers declare counts (--headers-dir, private types
# dropped): internals may change freely.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-check}
build=${2:-build/debug}
lib=$build/libracefree.so
baseline=abi/libracefree.abi
if ! command -v abidiff >/dev/null; then
  echo "abi.sh: abidiff not found (bash scripts/deps.sh installs abigail-tools)" >&2
  exit 1
fi
case $mode in
update)
  abidw --headers-dir include/racefree --drop-private-types --no-corpus-path \
    --out-file "$baseline" "$lib"
  echo "abi.sh: wrote $baseline"
  ;;
check)
  if abidiff --headers-dir2 include/racefree --drop-private-types "$baseline" "$lib"; then
    echo "abi.sh: the ABI matches $baseline"
  else
    rc=$?
    echo "abi.sh: libracefree's ABI differs from $baseline (abidiff exit $rc, above)." >&2
    echo "abi.sh: if the change is intended, bump the soname when it breaks" \
      "compatibility, note it in CHANGELOG.md and run: bash scripts/abi.sh update" >&2
    exit 1
  fi
  ;;
*)
  echo "usage: abi.sh check|update [BUILD_DIR]" >&2
  exit 2
  ;;
esac
