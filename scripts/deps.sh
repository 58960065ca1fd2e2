#!/usr/bin/env bash
# deps.sh - install every Debian package that racefree's build, tests and
# benchmarks need. Non-interactive; installs only what is missing, so a
# second run costs a few dpkg queries. Run as root (or with sudo available).
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential gcc make cmake pkg-config git
  clang libclang-rt-14-dev clang-format clang-tidy cppcheck abigail-tools
  # libraries (see docs/dependencies.md for why each was chosen)
  libcmocka-dev libmicrohttpd-dev libjansson-dev libsqlite3-dev sqlite3
  libpq-dev libhiredis-dev libyaml-dev libhttp-parser-dev libspng-dev libssl-dev
  libpcre2-dev
  # man pages: help2man from the programs' --help, pandoc for racefree(7), man-db
  # to check that they render
  help2man pandoc man-db
  # services for the scaled-out tests, and peers for the benchmarks
  postgresql redis-server wrk nginx-light curl procps iproute2
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "deps.sh: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Packaged services must not start on install: the tests start private
# instances on their own ports and stop them by PID.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
