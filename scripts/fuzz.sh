#!/usr/bin/env bash
# fuzz.sh BUILD_DIR SECONDS - run every libFuzzer target for a bounded time,
# each seeded from tests/fuzz/corpus/<target>/ when that folder exists.
set -euo pipefail
build=${1:-build/fuzz}
secs=${2:-20}
shopt -s nullglob
found=0
for bin in "$build"/tests/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  found=$((found + 1))
  corpus="tests/fuzz/corpus/${name#fuzz_}"
  work=$(mktemp -d)
  seeds=()
  [ -d "$corpus" ] && seeds+=("$corpus")
  echo "fuzz: $name for ${secs}s"
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 \
    "$work" "${seeds[@]}" >"$work.log" 2>&1 || { tail -50 "$work.log"; rm -rf "$work"; exit 1; }
  grep -E "^#[0-9]+.*DONE" "$work.log" | tail -1 || true
  rm -rf "$work" "$work.log"
done
echo "fuzz: $found target(s) ran clean"
