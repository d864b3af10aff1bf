#!/usr/bin/env bash
# load_run.sh — the load run of issue 7: hundreds of concurrent clients on loopback for minutes,
# creating, polling, listing, streaming and downloading against one `difftune serve`; zero 5xx,
# every request answered, and no growth of the server's resident memory between the first and
# the last minute after the warm-up. bench/load_run.py does the work (its docstring says what
# the clients do and why); this wrapper builds, picks a fresh data directory and records.
#
#   bench/load_run.sh [driver options...]     e.g. --clients 500 --duration 600
#
# Settings from the environment: BUILD=build-bench (a Release build: configure it first,
#   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DDIFFTUNE_CUDA=OFF)
#   CLIENTS=300  DURATION=180 (seconds)  MACHINE=dev-2core  OUT=bench/results  NO_BUILD=1
# Result: $OUT/load_run_<date>.json (the RSS series included); exit status 0 only on a pass.
set -euo pipefail
source "$(dirname "$0")/server_bench_env.sh"
CLIENTS=${CLIENTS:-300}
DURATION=${DURATION:-180}
# one connection per client plus the streams they open
[ "$(ulimit -n)" -ge $((CLIENTS * 3 + 100)) ] || ulimit -n $((CLIENTS * 3 + 100)) 2>/dev/null || true

WORK=$(mktemp -d "${TMPDIR:-/tmp}/load_run.XXXXXX")
JSON="$OUT/load_run_$(date +%Y-%m-%d).json"
rc=0
"$PY" "$ROOT/bench/load_run.py" --bin "$BUILD/difftune" --data-dir "$WORK/data" \
  --clients "$CLIENTS" --duration "$DURATION" --machine "$MACHINE" --commit "$COMMIT" \
  --build-type "$BUILD_TYPE" --json "$JSON" "$@" || rc=$?
echo "record: $JSON (server log in $WORK/data/serve.err)"
exit $rc
