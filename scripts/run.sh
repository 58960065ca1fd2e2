#!/usr/bin/env bash
# run.sh - the main job: racefreed on the embedded SQLite default.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x build/release/src/server/racefreed ]; then
  mkdir -p data
  exec build/release/src/server/racefreed --db sqlite:./data/racefree.db "$@"
fi
# Until the server exists the main job is the library demo.
exec build/release/examples/counter_demo "$@"
