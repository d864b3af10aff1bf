#!/usr/bin/env bash
# peft_bench.sh — bench_peft for full fine-tuning, DiffFit, BitFit and LoRA (rank 8), one process
# each (so each peak RSS is that method's own), combined into one JSON record:
#   {"benchmark": "peft", "date", "git_rev", "uncommitted_paths", "machine": {...}, "note",
#    "runs": [bench_peft's object per method, plus "loadavg_before" / "loadavg_after"]}
# The 1-minute load average around each run is recorded because the timings mean little on a
# machine that is busy with other work (compare runs only on an idle machine).
#
# usage: bench/peft_bench.sh            (from the repository root; builds nothing)
# Settings (environment): BUILD (build), DEVICE (cpu), ARCH (DiT-S/2), IMAGE (32), CHANNELS (3),
# CLASSES (10), BATCH (16), STEPS (7), WARMUP (1), RANK (8), METHODS ("none difffit bitfit lora"),
# OUT_JSON (bench/results/cpu_peft_dit-s2_32px_dev-2core.json), NOTE (free text for the record),
# THREADS (OMP_NUM_THREADS, default: the number of cores).
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
DEVICE=${DEVICE:-cpu}
ARCH=${ARCH:-DiT-S/2}
IMAGE=${IMAGE:-32}
CHANNELS=${CHANNELS:-3}
CLASSES=${CLASSES:-10}
BATCH=${BATCH:-16}
STEPS=${STEPS:-7}
WARMUP=${WARMUP:-1}
RANK=${RANK:-8}
METHODS=${METHODS:-none difffit bitfit lora}
OUT_JSON=${OUT_JSON:-bench/results/cpu_peft_dit-s2_32px_dev-2core.json}
NOTE=${NOTE:-}
export OMP_NUM_THREADS=${THREADS:-$(getconf _NPROCESSORS_ONLN)}
BIN=$BUILD/bench/bench_peft
[ -x "$BIN" ] || { echo "no $BIN: cmake --build $BUILD --target bench_peft" >&2; exit 1; }
command -v jq >/dev/null || { echo "peft_bench.sh needs jq" >&2; exit 1; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
load1() { cut -d' ' -f1 /proc/loadavg; }
status=0
for m in $METHODS; do
  before=$(load1)
  echo "== $m (load $before)"
  if "$BIN" --device "$DEVICE" --arch "$ARCH" --image "$IMAGE" --channels "$CHANNELS" --classes "$CLASSES" \
      --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP" --peft "$m" --rank "$RANK" --json "$TMP/$m.json"; then
    jq --argjson b "$before" --argjson a "$(load1)" '. + {loadavg_before: $b, loadavg_after: $a}' \
      "$TMP/$m.json" >"$TMP/$m.run.json"
  else
    echo "== $m FAILED" >&2
    status=1
  fi
done

mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
os=$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mkdir -p "$(dirname "$OUT_JSON")"
cat "$TMP"/*.run.json 2>/dev/null | jq -s \
  --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --arg rev "$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  --argjson dirty "$(git status --porcelain 2>/dev/null | wc -l)" \
  --arg cpu "$cpu" --argjson cores "$(getconf _NPROCESSORS_ONLN)" --argjson mem "$mem_kib" --arg os "$os" \
  --arg kernel "$(uname -sr)" --argjson threads "$OMP_NUM_THREADS" --arg note "$NOTE" \
  --arg order "$METHODS" \
  '{benchmark: "peft", date: $date, git_rev: $rev, uncommitted_paths: $dirty,
    machine: {cpu: $cpu, cores: $cores, memory_gib: (($mem / 1048576 * 10 | round) / 10), os: $os,
              kernel: $kernel, omp_num_threads: $threads},
    note: $note,
    runs: (. as $r | [$order | split(" ")[] | select(length > 0) as $m | $r[] | select(.peft == $m)])}' \
  >"$OUT_JSON" || status=1
echo
echo "record: $OUT_JSON"
jq -r '.runs[] | [.method, .params_trainable, (.step_ms_median | round), (.step_ms_min | round),
       (.step_ms_max | round), (.images_per_second * 100 | round / 100),
       (.allocated_peak_bytes / 1048576 | round), (.peak_rss_bytes / 1048576 | round), .loadavg_before]
       | @tsv' "$OUT_JSON" |
  awk 'BEGIN { printf "%-18s %11s %8s %8s %8s %9s %9s %9s %6s\n", "method", "trainable", "ms med", "min",
               "max", "images/s", "alloc MiB", "RSS MiB", "load" }
       { printf "%-18s %11s %8s %8s %8s %9s %9s %9s %6s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }' FS='\t'
exit $status
