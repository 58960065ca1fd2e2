#!/usr/bin/env bash
# lock.bench.sh - distributed lock throughput: rf_lock acquire+release pairs
# per second against a private Redis, next to raw SET NX PX round trips
# (redis-benchmark, and the same command on one hiredis connection), all in
# the same run against the same server. Prints one markdown section.
#
# Like for like: one client, one connection, no pipelining. An acquire is one
# EVALSHA round trip and a release another, so a pair is two round trips and
# the reference is SET NX PX round trips / 2. Each figure is the median of
# three rounds, the rounds interleaved so that drift hits both sides alike.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build/release}
bin="$build/bench/bench_lock_redis"
pairs=${RF_BENCH_LOCK_PAIRS:-10000}
rounds=3

echo "## Distributed lock (Redis): acquire + release"
echo
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  echo "_Skipped: redis-server / redis-benchmark not installed (scripts/deps.sh installs them)._"
  exit 0
fi
if [ ! -x "$bin" ]; then
  echo "_Skipped: $bin not built._"
  exit 0
fi

dir=$(mktemp -d)
cleanup() {
  scripts/redis.sh stop "$dir" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
url=$(scripts/redis.sh start "$dir")
port=${url##*:}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

rb_file=$(mktemp)
lk_file=$(mktemp)
hi_file=$(mktemp)
trap 'cleanup; rm -f "$rb_file" "$lk_file" "$hi_file"' EXIT
for ((r = 0; r < rounds; r++)); do
  redis-benchmark -h 127.0.0.1 -p "$port" -n $((pairs * 2)) -c 1 -P 1 -q \
    SET rf:bench:rb v NX PX 10000 2>/dev/null | tr '\r' '\n' |
    sed -nE 's/.*: ([0-9.]+) requests per second.*/\1/p' | tail -n1 >>"$rb_file"
  out=$(RF_BENCH_REDIS_URL="$url" "$bin" "$pairs")
  echo "$out" | sed -n 's/^pairs_per_s=//p' >>"$lk_file"
  echo "$out" | sed -n 's/^hiredis_setnx_rtt_per_s=//p' >>"$hi_file"
done
rb=$(median <"$rb_file")
lk=$(median <"$lk_file")
hi=$(median <"$hi_file")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / (b / 2) }'; }
fmt() { awk -v a="$1" 'BEGIN { printf "%.0f", a }'; }

echo "One client, one connection, one command in flight, loopback; median of $rounds rounds."
echo "A pair is two round trips (EVALSHA acquire: SET NX PX + INCR of the fencing counter;"
echo "EVALSHA release: compare-and-delete), so the reference is SET NX PX round trips / 2."
echo
echo '```'
echo "bench/lock.bench.sh   # RF_BENCH_REDIS_URL=<private redis> $bin $pairs"
echo "redis-benchmark -n $((pairs * 2)) -c 1 -P 1 -q SET rf:bench:rb v NX PX 10000"
echo '```'
echo
echo "| figure | value | reference (same run) | reference value | ratio |"
echo "|---|---:|---|---:|---:|"
echo "| rf_lock acquire+release pairs/s | $(fmt "$lk") | redis-benchmark SET NX PX round trips/s / 2 | $(fmt "$(awk -v a="$rb" 'BEGIN{print a/2}')") | $(ratio "$lk" "$rb")x |"
echo "| rf_lock acquire+release pairs/s | $(fmt "$lk") | hiredis SET NX PX round trips/s / 2 (same client library) | $(fmt "$(awk -v a="$hi" 'BEGIN{print a/2}')") | $(ratio "$lk" "$hi")x |"
echo
echo "Target: at least 0.5x of the raw round trips. What the ratio pays for: two Lua"
echo "scripts instead of bare commands, the fencing counter, a 128-bit owner value from"
echo "getrandom(2), and the SIGPIPE guard around each command (docs/lock.md)."
