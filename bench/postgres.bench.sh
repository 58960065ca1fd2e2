#!/usr/bin/env bash
# postgres.bench.sh - the PostgreSQL store and queue (src/store/postgres.c,
# src/lib/queue_pg.c) next to raw libpq running the same statements, against
# a private cluster started here with scripts/pg.sh and stopped at the end
# (through pg_ctl on its own data directory). Prints one markdown section;
# takes about 6 x BENCH_PG_SECONDS (default 3) seconds plus the cluster's
# start.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build/release}
bin=$build/bench/pg_bench
secs=${BENCH_PG_SECONDS:-3}

echo "## PostgreSQL store and queue next to raw libpq (postgres.bench.sh)"
echo
if [ ! -x "$bin" ]; then
  echo "_Skipped: $bin not built._"
  exit 0
fi
dir=$(mktemp -d /tmp/rf-bench-pg-XXXXXX)
cleanup() {
  scripts/pg.sh stop "$dir" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
if ! url=$(scripts/pg.sh start "$dir" 2>/dev/null); then
  echo "_Skipped: scripts/pg.sh could not start PostgreSQL (scripts/deps.sh installs it)._"
  exit 0
fi
"$bin" "$url" "$secs" | tail -n +3
