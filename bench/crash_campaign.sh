#!/usr/bin/env bash
# crash_campaign.sh — the crash campaign of issue 7: N rounds of jobs submitted under load while
# `difftune serve` (or one of its workers) is killed with SIGKILL at a random moment and started
# again; at the end every acknowledged job must have reached a terminal state exactly once and
# the database must be intact. bench/crash_campaign.py does the work and the checking (its
# docstring lists every check); this wrapper builds, picks a fresh data directory and records.
#
#   bench/crash_campaign.sh [driver options...]     e.g. --rounds 50 --clients 8 --seed 7
#
# Settings from the environment: BUILD=build-bench (a Release build: configure it first,
#   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DDIFFTUNE_CUDA=OFF)
#   ROUNDS=20  MACHINE=dev-2core  OUT=bench/results  NO_BUILD=1 (skip bringing the build up to date)
# Result: $OUT/crash_campaign_<date>.json; exit status 0 only when every check passed.
set -euo pipefail
source "$(dirname "$0")/server_bench_env.sh"
ROUNDS=${ROUNDS:-20}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/crash_campaign.XXXXXX")
JSON="$OUT/crash_campaign_$(date +%Y-%m-%d).json"
rc=0
"$PY" "$ROOT/bench/crash_campaign.py" --bin "$BUILD/difftune" --data-dir "$WORK/data" \
  --rounds "$ROUNDS" --machine "$MACHINE" --commit "$COMMIT" --json "$JSON" "$@" || rc=$?
echo "record: $JSON (server logs in $WORK/data/serve.err)"
exit $rc
