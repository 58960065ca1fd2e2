#!/usr/bin/env bash
# redis.sh - a private, throw-away Redis server for tests and benchmarks.
#
#   scripts/redis.sh start DIR [PORT]   start redis-server on 127.0.0.1:PORT
#                                       (a free port when PORT is omitted),
#                                       state in DIR; prints redis://127.0.0.1:PORT
#   scripts/redis.sh stop DIR           stop the server started in DIR (by PID)
#   scripts/redis.sh status DIR         "running PID URL" (exit 0) or "stopped" (exit 1)
#   scripts/redis.sh url DIR            the URL of the server started in DIR
#
# The server keeps nothing on disk (no RDB snapshots, no AOF): a restart is
# a Redis that lost its data, which is exactly the fault the lock tests want
# to inject. It listens on loopback only. DIR holds redis.pid, redis.port and
# redis.log. Only the process recorded in DIR/redis.pid is ever signalled,
# and only after checking that it still is a redis-server (PIDs get reused).
# A restart on the same port (`stop DIR` then `start DIR` again) keeps the
# URL: start reuses DIR/redis.port when PORT is omitted.
set -euo pipefail

PORT_FIRST=${RF_REDIS_PORT_FIRST:-16400}
PORT_COUNT=${RF_REDIS_PORT_COUNT:-200}
START_WAIT_S=${RF_REDIS_START_WAIT_S:-10}
STOP_WAIT_S=${RF_REDIS_STOP_WAIT_S:-10}

die() {
  echo "redis.sh: $*" >&2
  exit 1
}

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

port_in_use() {
  ss -Htln "sport = :$1" 2>/dev/null | grep -q .
}

# A port from the range that nothing listens on, starting at an offset
# derived from our PID so that concurrent test runs rarely try the same one.
pick_port() {
  local i p off=$(($$ % PORT_COUNT))
  for ((i = 0; i < PORT_COUNT; i++)); do
    p=$((PORT_FIRST + (off + i) % PORT_COUNT))
    if ! port_in_use "$p"; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# True when $1 is a live (not zombie) redis-server process.
is_redis_pid() {
  local pid=$1 state
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" | cut -d' ' -f1)
  [ "$state" != "Z" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'redis-server'
}

running_pid() {
  local dir=$1 pid
  [ -f "$dir/redis.pid" ] || return 1
  pid=$(cat "$dir/redis.pid")
  is_redis_pid "$pid" || return 1
  echo "$pid"
}

ping_ok() {
  [ "$(redis-cli -h 127.0.0.1 -p "$1" --no-auth-warning ping 2>/dev/null)" = "PONG" ]
}

# Start one server on port $2; 0 when it answers PING, 1 when it died (for
# example because the port was taken in the meantime).
try_start() {
  local dir=$1 port=$2 pid deadline
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' \
    --appendonly no --daemonize no --protected-mode yes \
    --logfile '' --loglevel warning </dev/null >>"$dir/redis.log" 2>&1 &
  pid=$!
  deadline=$((SECONDS + START_WAIT_S))
  while ((SECONDS <= deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || true
      return 1
    fi
    if ping_ok "$port"; then
      echo "$pid" >"$dir/redis.pid"
      echo "$port" >"$dir/redis.port"
      return 0
    fi
    sleep 0.02
  done
  kill "$pid" 2>/dev/null || true
  die "redis-server on port $port did not answer PING within ${START_WAIT_S}s (see $dir/redis.log)"
}

cmd_start() {
  local dir=$1 port=${2:-} pid tries
  command -v redis-server >/dev/null || die "redis-server is not installed (run scripts/deps.sh)"
  command -v redis-cli >/dev/null || die "redis-cli is not installed (run scripts/deps.sh)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if pid=$(running_pid "$dir"); then
    die "a redis-server (pid $pid) is already running for $dir"
  fi
  if [ -z "$port" ] && [ -f "$dir/redis.port" ]; then
    port=$(cat "$dir/redis.port")
  fi
  if [ -n "$port" ]; then
    [[ $port =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "bad port '$port'"
    try_start "$dir" "$port" || die "redis-server failed to start on port $port (see $dir/redis.log)"
  else
    # Between picking a free port and binding it another process may take
    # it: the server then exits at once and we try the next free port.
    for ((tries = 0; tries < 10; tries++)); do
      port=$(pick_port) || die "no free port in $PORT_FIRST..$((PORT_FIRST + PORT_COUNT - 1))"
      if try_start "$dir" "$port"; then
        break
      fi
      port=""
    done
    [ -n "$port" ] || die "redis-server failed to start (see $dir/redis.log)"
  fi
  echo "redis://127.0.0.1:$port"
}

cmd_stop() {
  local dir=$1 pid deadline
  if ! pid=$(running_pid "$dir"); then
    rm -f "$dir/redis.pid"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  # A stopped (SIGSTOP) server cannot act on SIGTERM: let it run again.
  kill -CONT "$pid" 2>/dev/null || true
  deadline=$((SECONDS + STOP_WAIT_S))
  while is_redis_pid "$pid"; do
    if ((SECONDS > deadline)); then
      echo "redis.sh: pid $pid ignored SIGTERM for ${STOP_WAIT_S}s, sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.1
      break
    fi
    sleep 0.02
  done
  rm -f "$dir/redis.pid"
}

cmd_status() {
  local dir=$1 pid
  if pid=$(running_pid "$dir"); then
    echo "running $pid redis://127.0.0.1:$(cat "$dir/redis.port")"
    return 0
  fi
  echo "stopped"
  return 1
}

cmd_url() {
  local dir=$1
  [ -f "$dir/redis.port" ] || die "no server was started in $dir"
  echo "redis://127.0.0.1:$(cat "$dir/redis.port")"
}

[ $# -ge 2 ] || usage
action=$1
dir=$2
shift 2
case "$action" in
start) cmd_start "$dir" "$@" ;;
stop) cmd_stop "$dir" ;;
status) cmd_status "$dir" ;;
url) cmd_url "$dir" ;;
*) usage ;;
esac
