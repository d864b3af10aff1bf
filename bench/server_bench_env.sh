# server_bench_env.sh — sourced by the server benchmarks that drive a built `difftune serve`
# (bench/crash_campaign.sh, bench/load_run.sh): where the build and the results are, the Python
# to run the driver with, and the commit the result is recorded against. It brings the build up
# to date unless NO_BUILD is set.
#
# Sets ROOT, BUILD (default build-bench, relative to ROOT), OUT (default bench/results), MACHINE
# (default dev-2core), PY and COMMIT ("<sha>" or "<sha>+changes" with uncommitted edits).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
OUT=${OUT:-$ROOT/bench/results}
MACHINE=${MACHINE:-dev-2core}
PY=$(command -v /usr/bin/python3 || command -v python3)

[ -f "$BUILD/CMakeCache.txt" ] || { echo "configure $BUILD first (see the header of $0)" >&2; exit 2; }
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
[ "$BUILD_TYPE" = Release ] || echo "warning: $BUILD is a '$BUILD_TYPE' build; record Release numbers" >&2
[ -n "${NO_BUILD:-}" ] || cmake --build "$BUILD" -j"$(nproc)" --target difftune >/dev/null
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -v '^??' || true)" ]; then
  COMMIT="$COMMIT+changes"
fi
mkdir -p "$OUT"
