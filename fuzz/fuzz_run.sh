# fuzz_run.sh — sourced by tests/test_fuzz.sh and bench/fuzz_campaign.sh: builds the fuzz
# targets in a clang build folder of their own and runs one for a bounded time.
#
#   fuzz_build BUILD LOG          configures BUILD (-DDIFFTUNE_FUZZ=ON, clang, Debug + -O1) if it
#                                 is not yet, builds only the fuzz targets; output to LOG
#   fuzz_run NAME SECONDS WORK [libFuzzer flags...]
#                                 runs fuzz_NAME for SECONDS on a copy of fuzz/corpus/NAME in
#                                 WORK/corpus (kept between runs of the same WORK, so a campaign
#                                 can grow it), crash inputs to WORK/artifacts/, log to WORK/log;
#                                 prints one JSON line of results and returns libFuzzer's status
#                                 (0 = no crash, leak, timeout or out-of-memory)
#   FUZZ_TARGETS                  the target names
#
# Every run gets OMP_NUM_THREADS=1 and a scratch TMPDIR: /dev/shm when writable (the IDX and
# archive targets write files on every input, several times faster on tmpfs), else WORK/tmp.
FUZZ_SRC=${DIFFTUNE_SOURCE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
FUZZ_TARGETS="spec request router idx safetensors ingest"
FUZZ_BUILD=""

fuzz_build() {
  local build=$1 log=$2 cc=${DIFFTUNE_FUZZ_CC:-clang}
  command -v "$cc" >/dev/null ||
    { echo "$cc is missing: run deploy/install-deps.sh (the fuzz targets need clang's libFuzzer)" >&2; return 1; }
  FUZZ_BUILD=$build
  if [ ! -f "$build/CMakeCache.txt" ]; then
    CC=$cc cmake -S "$FUZZ_SRC" -B "$build" -DDIFFTUNE_FUZZ=ON -DDIFFTUNE_CUDA=OFF \
      -DCMAKE_BUILD_TYPE=Debug >"$log" 2>&1 || { cat "$log" >&2; return 1; }
  fi
  cmake --build "$build" -j "$(nproc)" --target difftune_fuzz >>"$log" 2>&1 ||
    { tail -40 "$log" >&2; return 1; }
}

# The last value of "KEY: N" among libFuzzer's status lines of LOG (0 when there is none).
fuzz_stat() {
  local v
  v=$(grep -a -o "$2: *[0-9]*" "$1" | tail -1 | grep -o '[0-9]*$')
  echo "${v:-0}"
}

fuzz_run() {
  local name=$1 seconds=$2 work=$3
  shift 3
  local bin=$FUZZ_BUILD/fuzz/fuzz_$name dict=$FUZZ_SRC/fuzz/$name.dict
  mkdir -p "$work/corpus" "$work/artifacts"
  cp -n "$FUZZ_SRC/fuzz/corpus/$name/"* "$work/corpus/" 2>/dev/null
  local tmp=/dev/shm
  if ! [ -d /dev/shm ] || ! [ -w /dev/shm ]; then tmp=$work/tmp; mkdir -p "$tmp"; fi
  local dict_flag=()
  [ -f "$dict" ] && dict_flag=(-dict="$dict")
  local t0=$SECONDS rc
  OMP_NUM_THREADS=1 TMPDIR=$tmp "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=60 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" "${dict_flag[@]}" "$@" \
    "$work/corpus" >"$work/log" 2>&1
  rc=$?
  local found
  found=$(find "$work/artifacts" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
    -o -name 'oom-*' \) | wc -l)
  local log=$work/log
  printf '{"target":"%s","seconds":%d,"runs":%s,"exec_per_s":%s,"cov":%s,"ft":%s,"corpus":%s,"peak_rss_mb":%s,"slowest_unit_s":%s,"findings":%d,"rc":%d}\n' \
    "$name" $((SECONDS - t0)) "$(fuzz_stat "$log" stat::number_of_executed_units)" \
    "$(fuzz_stat "$log" stat::average_exec_per_sec)" "$(fuzz_stat "$log" cov)" \
    "$(fuzz_stat "$log" ft)" "$(ls "$work/corpus" | wc -l)" "$(fuzz_stat "$log" stat::peak_rss_mb)" \
    "$(fuzz_stat "$log" stat::slowest_unit_time_sec)" "$found" "$rc"
  [ "$rc" -eq 0 ] && [ "$found" -eq 0 ]
}
