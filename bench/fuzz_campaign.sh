#!/usr/bin/env bash
# fuzz_campaign.sh — a longer libFuzzer campaign over every fuzz target (fuzz/README.md), with
# its results recorded as JSON.
#
#   bench/fuzz_campaign.sh [--seconds N] [--jobs J] [--targets "spec idx ..."] [--work DIR]
#                          [--json FILE]
#
#   --seconds N   time per target (default 300)
#   --jobs J      targets fuzzed at once (default 1; each uses one core)
#   --targets T   which targets (default: all of fuzz_run.sh's FUZZ_TARGETS)
#   --work DIR    build folder and corpora (default build-fuzz-campaign); corpora grow across
#                 campaigns in DIR/NAME/corpus, so a rerun continues where the last stopped
#   --json FILE   the record (default bench/results/fuzz_<date>.json)
#
# The record holds the machine, the clang version, and per target: seconds, executions,
# executions per second, coverage (edges: "cov", features: "ft"), the corpus size at the end,
# and the findings (crash, leak, timeout and out-of-memory inputs left in DIR/NAME/artifacts/).
# Exits 1 when any target found something.
set -u
source "$(dirname "$0")/../fuzz/fuzz_run.sh"
seconds=300 jobs=1 targets=$FUZZ_TARGETS work=build-fuzz-campaign
json="$FUZZ_SRC/bench/results/fuzz_$(date +%Y-%m-%d).json"
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --targets) targets=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fuzz_campaign: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$work"
work=$(cd "$work" && pwd)

fuzz_build "$work/build" "$work/build.log" || exit 1
load=$(cut -d' ' -f1-3 /proc/loadavg) # other work on the machine slows every target
echo "fuzz_campaign: $seconds s per target, $jobs at once: $targets"
for name in $targets; do
  # A finding from an earlier campaign would count again: keep it apart.
  if [ -n "$(ls -A "$work/$name/artifacts" 2>/dev/null)" ]; then
    mv "$work/$name/artifacts" "$work/$name/artifacts.$(date +%s)"
  fi
  ( fuzz_run "$name" "$seconds" "$work/$name" >"$work/$name.result" ) &
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
done
wait

results="" failed=0
for name in $targets; do
  line=$(cat "$work/$name.result")
  echo "$line"
  results+="${results:+,}$line"
  grep -q '"findings":0,"rc":0}' <<<"$line" || failed=1
done
mkdir -p "$(dirname "$json")"
cat >"$json" <<EOF
{"benchmark":"fuzz_campaign","date":"$(date -u +%Y-%m-%dT%H:%M:%SZ)",
 "machine":{"cpu":"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')","cores":$(nproc),
  "compiler":"$(${DIFFTUNE_FUZZ_CC:-clang} --version | head -1)","load_average_at_start":"$load"},
 "seconds_per_target":$seconds,"jobs":$jobs,
 "flags":"-fsanitize=fuzzer,address,undefined -O1 -rss_limit_mb=2048 -timeout=60",
 "targets":[$results]}
EOF
echo "fuzz_campaign: wrote $json"
exit $failed
