#!/usr/bin/env bash
# pg.sh - a private, throw-away PostgreSQL cluster for tests and benchmarks.
#
#   scripts/pg.sh start DIR [PORT]   initdb into DIR/data (first time), start on
#                                    127.0.0.1:PORT (a free port when omitted) and a
#                                    unix socket in DIR, create database racefree;
#                                    prints postgres://postgres@127.0.0.1:PORT/racefree
#   scripts/pg.sh stop DIR           pg_ctl stop -m fast on DIR/data
#   scripts/pg.sh restart DIR        stop, then start again on the same port
#   scripts/pg.sh status DIR         "running PID URL" (exit 0) or "stopped" (exit 1)
#   scripts/pg.sh url DIR            the URL of the cluster in DIR
#
# The cluster is for tests only: trust authentication on loopback and on the
# socket, fsync=off, synchronous_commit=off, full_page_writes=off (a crash of
# the machine may lose it; a crash of the server may not, so kill -9 tests stay
# meaningful). Run as root, the cluster belongs to the `postgres` system user
# (PostgreSQL refuses to run as root): DIR is chowned to it and every
# PostgreSQL binary runs through runuser. DIR holds data/, pg.pid, pg.port and
# pg.log. Only this cluster's postmaster is ever signalled (through pg_ctl on
# DIR/data), never anything found by name.
set -euo pipefail

PGBIN=${PGBIN:-}
PORT_FIRST=${RF_PG_PORT_FIRST:-15400}
PORT_COUNT=${RF_PG_PORT_COUNT:-200}
START_WAIT_S=${RF_PG_START_WAIT_S:-30}
DB=racefree

die() {
  echo "pg.sh: $*" >&2
  exit 1
}

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

find_pgbin() {
  if [ -n "$PGBIN" ]; then
    return 0
  fi
  local d
  for d in /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -Vr); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      PGBIN=$d
      return 0
    fi
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    PGBIN=$(dirname "$(command -v pg_ctl)")
    return 0
  fi
  die "PostgreSQL server binaries not found (run scripts/deps.sh, or set PGBIN)"
}

# Run a PostgreSQL binary as the cluster owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

port_in_use() {
  ss -Htln "sport = :$1" 2>/dev/null | grep -q .
}

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

# The postmaster PID of DIR/data when it runs (from postmaster.pid, checked
# against /proc so a stale file or a reused PID is not believed).
running_pid() {
  local dir=$1 pid
  [ -f "$dir/data/postmaster.pid" ] || return 1
  pid=$(head -n1 "$dir/data/postmaster.pid")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "postgres" || return 1
  echo "$pid"
}

init_cluster() {
  local dir=$1
  if [ -f "$dir/data/PG_VERSION" ]; then
    return 0
  fi
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "user 'postgres' does not exist (install postgresql)"
    chown postgres: "$dir"
    chmod 700 "$dir"
    # The cluster owner must be able to reach DIR through its parents.
    runuser -u postgres -- test -x "$dir" ||
      die "user postgres cannot enter $dir: a parent directory is not searchable"
  fi
  touch "$dir/pg.log"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$dir/pg.log"
  fi
  as_owner "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 \
    --locale=C --no-sync >>"$dir/pg.log" 2>&1 ||
    die "initdb failed (see $dir/pg.log)"
  # Socket path limit (108 bytes): fall back to no socket for deep DIRs.
  local sockdir="'$dir'"
  if [ $((${#dir} + 20)) -ge 107 ]; then
    sockdir="''"
  fi
  cat >>"$dir/data/postgresql.conf" <<EOF

# --- scripts/pg.sh: a private test cluster ---
listen_addresses = '127.0.0.1'
unix_socket_directories = $sockdir
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 64MB
log_min_messages = warning
EOF
}

# Start on port $2; 0 when it answers pg_isready, 1 when the postmaster did not
# come up (for example the port was taken in the meantime).
try_start() {
  local dir=$1 port=$2
  if [ "$(id -u)" -eq 0 ] && [ -f "$dir/pg.log" ]; then
    chown postgres: "$dir/pg.log"
  fi
  if ! as_owner "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/pg.log" -w -t "$START_WAIT_S" \
    -o "-p $port" start >/dev/null 2>&1; then
    return 1
  fi
  local deadline=$((SECONDS + START_WAIT_S))
  until "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres -U postgres; do
    if ((SECONDS > deadline)); then
      die "PostgreSQL on port $port did not become ready (see $dir/pg.log)"
    fi
    sleep 0.05
  done
  echo "$port" >"$dir/pg.port"
  running_pid "$dir" >"$dir/pg.pid"
  return 0
}

create_db() {
  local dir=$1 port=$2
  local exists
  exists=$("$PGBIN/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atqc \
    "SELECT 1 FROM pg_database WHERE datname = '$DB'") ||
    die "cannot query the cluster on port $port"
  if [ "$exists" != "1" ]; then
    "$PGBIN/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc \
      "CREATE DATABASE $DB" >/dev/null || die "CREATE DATABASE $DB failed"
  fi
}

cmd_start() {
  local dir=$1 port=${2:-} pid tries
  find_pgbin
  command -v ss >/dev/null || die "ss (iproute2) is needed to find a free port"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if pid=$(running_pid "$dir"); then
    die "a PostgreSQL server (pid $pid) is already running for $dir/data"
  fi
  init_cluster "$dir"
  if [ -z "$port" ] && [ -f "$dir/pg.port" ]; then
    port=$(cat "$dir/pg.port")
  fi
  if [ -n "$port" ]; then
    [[ $port =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "bad port '$port'"
    try_start "$dir" "$port" || die "PostgreSQL failed to start on port $port (see $dir/pg.log)"
  else
    for ((tries = 0; tries < 10; tries++)); do
      port=$(pick_port) || die "no free port in $PORT_FIRST..$((PORT_FIRST + PORT_COUNT - 1))"
      if try_start "$dir" "$port"; then
        break
      fi
      port=""
    done
    [ -n "$port" ] || die "PostgreSQL failed to start (see $dir/pg.log)"
  fi
  create_db "$dir" "$port"
  echo "postgres://postgres@127.0.0.1:$port/$DB"
}

cmd_stop() {
  local dir=$1
  find_pgbin
  if running_pid "$dir" >/dev/null; then
    as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null ||
      die "pg_ctl stop failed for $dir/data"
  fi
  rm -f "$dir/pg.pid"
}

cmd_status() {
  local dir=$1 pid
  if pid=$(running_pid "$dir"); then
    echo "running $pid postgres://postgres@127.0.0.1:$(cat "$dir/pg.port")/$DB"
    return 0
  fi
  echo "stopped"
  return 1
}

cmd_url() {
  local dir=$1
  [ -f "$dir/pg.port" ] || die "no cluster was started in $dir"
  echo "postgres://postgres@127.0.0.1:$(cat "$dir/pg.port")/$DB"
}

[ $# -ge 2 ] || usage
action=$1
dir=$2
shift 2
case "$action" in
start) cmd_start "$dir" "$@" ;;
stop) cmd_stop "$dir" ;;
restart)
  cmd_stop "$dir"
  cmd_start "$dir" "$@"
  ;;
status) cmd_status "$dir" ;;
url) cmd_url "$dir" ;;
*) usage ;;
esac
