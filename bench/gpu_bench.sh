#!/usr/bin/env bash
# gpu_bench.sh — everything to run on a GPU machine, in one go, from the repository root:
#
#   bench/gpu_bench.sh
#
# 1. nvidia-smi and the machine; 2. configure and build a Release tree with the CUDA backend
# (build-gpu, -DDIFFTUNE_GPU_TESTS=ON when tests/gpu exists, all cores, only the targets needed);
# 3. tests/gpu's test_backend_vs_cpu --dev cuda:0 --precision both, then test_inception_gpu (the
# cuDNN FID Inception against the CPU), test_vae_gpu (the SD VAE against the CPU) and
# bench_inception --device cuda:0 (60 s each at most;
# skipped, exit 77, in a build without cuDNN); 4. bench_gpu_train (DiT-XL/2,
# 32x32x4 latents, 1000 classes) bf16 at batch 32, bf16 at the largest batch that fits, fp32 at
# batch 32, then (SD VAE) bench_vae encode/decode images/s at 128-512 px and the bf16 step with
# the batch encoded on the fly by the VAE; 5. the PyTorch reference train step (eager); 6. bench_gpu_sample DDIM-50 and DDPM-250
# with CFG 4; 7. the PyTorch reference sampling (eager); 7b. bench_peft (bf16: full fine-tuning
# at batch 32 and PEFT_BATCH, DiffFit, BitFit and LoRA rank 8 at PEFT_BATCH; step time and memory
# of each, 90 s at most each); 8. last, the PyTorch train step under
# torch.compile (it may take minutes to compile, so it gets what is left of the budget).
#
# Each step runs under `timeout`, a failure does not stop the next one, and the whole run keeps to
# BUDGET seconds (steps that would not fit are skipped and marked so). Logs go to $OUT (the device
# runner's folder that comes back) or $BUILD/bench-logs; JSON records to bench/results/gpu_*.json
# (copied to $OUT/results too), with a combined bench/results/gpu_summary.json and a table at the
# end. Exit status 0 when no step failed or timed out. Settings (environment): BUDGET (s, default
# 510), BUILD (build-gpu), DEVICE (cuda:0), ARCH (DiT-XL/2), IMAGE (32), BATCH (32), TRAIN_STEPS
# (20), PEFT_BATCH (64), MAX_BATCH_CAP (4096), INCEPTION_BATCH (64), VAE_BATCH (16), RESULTS (bench/results), PYTHON (python3),
# NO_BUILD=1 (reuse the build). A dry run on a CPU (toy sizes, results kept out of the tree):
#   NO_BUILD=1 BUILD=build DEVICE=cpu ARCH=DiT-S/8 IMAGE=16 BATCH=2 TRAIN_STEPS=2 MAX_BATCH_CAP=8 \
#     INCEPTION_BATCH=2 bench/gpu_bench.sh
set -u
cd "$(dirname "$0")/.." || exit 1

START=$(date +%s)
BUDGET=${BUDGET:-510}
BUILD=${BUILD:-build-gpu}
DEVICE=${DEVICE:-cuda:0}
ARCH=${ARCH:-DiT-XL/2}
IMAGE=${IMAGE:-32}
BATCH=${BATCH:-32}
MAX_BATCH_CAP=${MAX_BATCH_CAP:-4096}
TRAIN_STEPS=${TRAIN_STEPS:-20}
PEFT_BATCH=${PEFT_BATCH:-64}
INCEPTION_BATCH=${INCEPTION_BATCH:-64}
VAE_BATCH=${VAE_BATCH:-16}
PYTHON=${PYTHON:-python3}
RESULTS=${RESULTS:-bench/results}
LOGDIR=${OUT:-$BUILD/bench-logs}
[ -n "${OUT:-}" ] && LOGDIR=$OUT/logs
mkdir -p "$LOGDIR" "$RESULTS" "$BUILD"
STEPS_TSV=$LOGDIR/steps.tsv
: > "$STEPS_TSV"
MODEL=(--arch "$ARCH" --image "$IMAGE" --channels 4 --classes 1000)
TAG=$(echo "$ARCH" | tr "[:upper:]" "[:lower:]" | sed 's/^dit-//; s#/##')   # DiT-XL/2 -> xl2
RUN_FILES=()   # the JSON records this run wrote

elapsed() { echo $(( $(date +%s) - START )); }

# run_step NAME LIMIT_S JSON|- CMD...: runs CMD under timeout (cut to what is left of the budget),
# tees its output to LOGDIR/NAME.log and records NAME, status, seconds and rc in steps.tsv.
run_step() {
  local name=$1 limit=$2 json=$3
  shift 3
  local left=$(( BUDGET - $(elapsed) ))
  if (( left < 20 )); then
    echo "== $name: SKIPPED (${left}s of the ${BUDGET}s budget left)"
    printf '%s\tskipped-budget\t0\t-\n' "$name" >> "$STEPS_TSV"
    return 1
  fi
  (( limit > left - 10 )) && limit=$(( left - 10 ))
  echo
  echo "== $name (timeout ${limit}s, at $(elapsed)s): $*"
  local t0 rc status
  t0=$(date +%s)
  [ "$json" != "-" ] && rm -f "$json"
  timeout -k 10 "$limit" "$@" 2>&1 | tee "$LOGDIR/$name.log"
  rc=${PIPESTATUS[0]}
  case $rc in
    0) status=ok ;;
    77) status=skipped ;; # a check that cannot run here (tests/gpu: no device, no cuDNN)
    124|137) status=timeout ;;
    *) status=failed ;;
  esac
  [ "$json" != "-" ] && [ -s "$json" ] && RUN_FILES+=("$json")
  echo "== $name: $status (rc $rc, $(( $(date +%s) - t0 ))s)"
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(( $(date +%s) - t0 ))" "$rc" >> "$STEPS_TSV"
  return $(( rc != 0 && rc != 77 ))
}

skip_step() {
  echo "== $1: SKIPPED ($2)"
  printf '%s\tskipped\t0\t%s\n' "$1" "$2" >> "$STEPS_TSV"
}

main() {
  echo "gpu_bench.sh: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'),"\
       "uncommitted: $(git status --porcelain 2>/dev/null | wc -l) paths; budget ${BUDGET}s; logs in $LOGDIR"
  nvidia-smi || echo "nvidia-smi failed"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv 2>/dev/null
  echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
  command -v nvcc >/dev/null || export PATH=$PATH:/usr/local/cuda/bin
  nvcc --version 2>/dev/null | tail -1
  local have_torch=0
  if $PYTHON -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    have_torch=1
    $PYTHON -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
  else
    echo "torch with CUDA is not importable by $PYTHON: the PyTorch reference steps will be skipped"
  fi

  # ---- build ----
  local gpu_tests=OFF
  [ -f tests/gpu/CMakeLists.txt ] && gpu_tests=ON
  # Libraries carried as .deb files (deploy/device-deps.sh fetch; name .device-debs in the
  # device tool's carry): unpacked into a prefix, and the engine-only build uses them.
  local deps_flags=()
  if ls .device-debs/*.deb >/dev/null 2>&1; then
    eval "$(deploy/device-deps.sh unpack .device-debs /tmp/difftune-deps)"
    read -r -a deps_flags <<< "$DIFFTUNE_CMAKE_DEPS"
    echo "carried libraries unpacked into /tmp/difftune-deps: ${deps_flags[*]}"
  fi
  if [ "${NO_BUILD:-0}" != 1 ]; then
    run_step configure 120 - cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DDIFFTUNE_CUDA=ON \
      -DDIFFTUNE_SANITIZE=OFF -DDIFFTUNE_GPU_TESTS=$gpu_tests "${deps_flags[@]}"
    grep -q "CUDA backend ON" "$LOGDIR/configure.log" ||
      echo "WARNING: the configure log does not say 'CUDA backend ON': the benchmarks will not find cuda:0"
    run_step build 300 - cmake --build "$BUILD" -j"$(nproc)" --target bench_gpu_train bench_gpu_sample \
      bench_inception bench_vae bench_peft gen_vae
    if [ $gpu_tests = ON ]; then
      run_step build_gpu_tests 180 - cmake --build "$BUILD" -j"$(nproc)" --target test_backend_vs_cpu \
        test_inception_gpu test_vae_gpu gen_vae
    fi
  fi

  # ---- correctness first: every op against the CPU backend ----
  if [ -x "$BUILD/tests/gpu/test_backend_vs_cpu" ]; then
    run_step test_backend_vs_cpu 150 - "$BUILD/tests/gpu/test_backend_vs_cpu" --dev "$DEVICE" --precision both
  else
    skip_step test_backend_vs_cpu "no $BUILD/tests/gpu/test_backend_vs_cpu"
  fi

  # ---- the FID Inception on the GPU (cuDNN): against the CPU, then its speed ----
  if [ -x "$BUILD/tests/gpu/test_inception_gpu" ]; then
    run_step test_inception_gpu 60 - env OMP_NUM_THREADS="$(nproc)" \
      "$BUILD/tests/gpu/test_inception_gpu" --dev "$DEVICE"
  else
    skip_step test_inception_gpu "no $BUILD/tests/gpu/test_inception_gpu"
  fi
  # ---- the SD VAE on the GPU (cuDNN convolutions, group norm) against the CPU ----
  if [ -x "$BUILD/tests/gpu/test_vae_gpu" ]; then
    run_step test_vae_gpu 120 - env OMP_NUM_THREADS="$(nproc)" DIFFTUNE_TEST_TMP="$BUILD/tmp" \
      "$BUILD/tests/gpu/test_vae_gpu" --dev "$DEVICE" --gen-vae "$BUILD/tests/tools/gen_vae"
  else
    skip_step test_vae_gpu "no $BUILD/tests/gpu/test_vae_gpu"
  fi
  if [ -x "$BUILD/bench/bench_inception" ]; then
    local inception_json=$RESULTS/gpu_inception_bs${INCEPTION_BATCH}.json
    run_step inception_features 60 "$inception_json" "$BUILD/bench/bench_inception" \
      --device "$DEVICE" --batch "$INCEPTION_BATCH" --reps 5 --json "$inception_json"
  else
    skip_step inception_features "no $BUILD/bench/bench_inception"
  fi

  # ---- training: difftune ----
  local train="$BUILD/bench/bench_gpu_train" sample="$BUILD/bench/bench_gpu_sample" j
  if [ -x "$train" ]; then
    j=$RESULTS/gpu_train_${TAG}_bs${BATCH}_bf16.json
    run_step "train_bf16_bs$BATCH" 120 "$j" "$train" --device "$DEVICE" --precision bf16 "${MODEL[@]}" \
      --batch "$BATCH" --steps "$TRAIN_STEPS" --warmup 3 --json "$j"
    j=$RESULTS/gpu_train_${TAG}_maxbatch_bf16.json
    run_step train_bf16_maxbatch 180 "$j" "$train" --device "$DEVICE" --precision bf16 "${MODEL[@]}" \
      --batch "$BATCH" --max-batch --max-batch-cap "$MAX_BATCH_CAP" --steps 8 --warmup 2 --json "$j"
    j=$RESULTS/gpu_train_${TAG}_bs${BATCH}_fp32.json
    run_step "train_fp32_bs$BATCH" 120 "$j" "$train" --device "$DEVICE" --precision fp32 "${MODEL[@]}" \
      --batch "$BATCH" --steps 5 --warmup 1 --json "$j"
  else
    skip_step train "no $train"
  fi

  # ---- the SD VAE (published shapes, generated weights: the speed does not depend on them) ----
  local vae_w=/tmp/difftune-bench-vae.safetensors vae_bench="$BUILD/bench/bench_vae"
  [ -x "$BUILD/tests/tools/gen_vae" ] && "$BUILD/tests/tools/gen_vae" --out "$vae_w" --dtype f16 >/dev/null
  if [ -x "$vae_bench" ] && [ -s "$vae_w" ]; then
    j=$RESULTS/gpu_vae_bs${VAE_BATCH}_bf16.json
    run_step vae_bf16 90 "$j" "$vae_bench" --weights "$vae_w" --device "$DEVICE" --precision bf16 \
      --sizes 128,256,512 --batch "$VAE_BATCH" --reps 5 --json "$j"
    j=$RESULTS/gpu_vae_bs${VAE_BATCH}_fp32.json
    run_step vae_fp32 90 "$j" "$vae_bench" --weights "$vae_w" --device "$DEVICE" --precision fp32 \
      --sizes 256 --batch "$VAE_BATCH" --reps 5 --json "$j"
    # The whole step with the batch encoded on the fly, against the cached-latent run above.
    if [ -x "$train" ]; then
      j=$RESULTS/gpu_train_${TAG}_bs${BATCH}_bf16_vae_on_the_fly.json
      run_step "train_bf16_bs${BATCH}_vae_on_the_fly" 150 "$j" "$train" --device "$DEVICE" \
        --precision bf16 "${MODEL[@]}" --batch "$BATCH" --steps "$TRAIN_STEPS" --warmup 3 \
        --vae "$vae_w" --json "$j"
    fi
  else
    skip_step vae "no $vae_bench or no generated VAE weights"
  fi

  # ---- training: the PyTorch reference, eager ----
  if [ $have_torch = 1 ]; then
    j=$RESULTS/gpu_torch_train_${TAG}_bs${BATCH}_bf16_eager.json
    run_step torch_train_eager 150 "$j" "$PYTHON" bench/torch_dit_bench.py train --device "$DEVICE" \
      --precision bf16 "${MODEL[@]}" --batch "$BATCH" --steps "$TRAIN_STEPS" --warmup 3 --json "$j"
  else
    skip_step torch_train_eager "no torch"
  fi

  # ---- sampling ----
  if [ -x "$sample" ]; then
    j=$RESULTS/gpu_sample_${TAG}_ddim50_cfg4_bs${BATCH}_bf16.json
    run_step sample_ddim50 90 "$j" "$sample" --device "$DEVICE" --precision bf16 "${MODEL[@]}" \
      --batch "$BATCH" --sampler ddim --steps 50 --cfg 4.0 --warmup 1 --repeats 2 --json "$j"
    j=$RESULTS/gpu_sample_${TAG}_ddpm250_cfg4_bs${BATCH}_bf16.json
    run_step sample_ddpm250 120 "$j" "$sample" --device "$DEVICE" --precision bf16 "${MODEL[@]}" \
      --batch "$BATCH" --sampler ddpm --steps 250 --cfg 4.0 --warmup 1 --repeats 1 --json "$j"
  else
    skip_step sample "no $sample"
  fi
  if [ $have_torch = 1 ]; then
    j=$RESULTS/gpu_torch_sample_${TAG}_ddim50_cfg4_bs${BATCH}_bf16_eager.json
    run_step torch_sample_ddim50 90 "$j" "$PYTHON" bench/torch_dit_bench.py sample --device "$DEVICE" \
      --precision bf16 "${MODEL[@]}" --batch "$BATCH" --sampler ddim --steps 50 --cfg 4.0 --repeats 2 --json "$j"
    j=$RESULTS/gpu_torch_sample_${TAG}_ddpm250_cfg4_bs${BATCH}_bf16_eager.json
    run_step torch_sample_ddpm250 120 "$j" "$PYTHON" bench/torch_dit_bench.py sample --device "$DEVICE" \
      --precision bf16 "${MODEL[@]}" --batch "$BATCH" --sampler ddpm --steps 250 --cfg 4.0 --json "$j"
  else
    skip_step torch_sample "no torch"
  fi

  # ---- parameter-efficient fine-tuning: full at batch 32 and at PEFT_BATCH, each peft at
  # PEFT_BATCH (the reference trains DiffFit at 64 and full fine-tuning at 32) ----
  local peft_bin="$BUILD/bench/bench_peft" run m b
  if [ -x "$peft_bin" ]; then
    for run in "none:$BATCH" "none:$PEFT_BATCH" "difffit:$PEFT_BATCH" "bitfit:$PEFT_BATCH" "lora:$PEFT_BATCH"; do
      m=${run%%:*} b=${run##*:}
      j=$RESULTS/gpu_peft_${TAG}_${m}_bs${b}_bf16.json
      run_step "peft_${m}_bs$b" 90 "$j" "$peft_bin" --device "$DEVICE" --precision bf16 "${MODEL[@]}" \
        --batch "$b" --peft "$m" --rank 8 --steps 10 --warmup 3 --json "$j"
    done
  else
    skip_step peft "no $peft_bin"
  fi

  # ---- last: torch.compile, with whatever time is left ----
  if [ $have_torch = 1 ] && (( BUDGET - $(elapsed) < 100 )); then
    skip_step torch_train_compile "only $(( BUDGET - $(elapsed) ))s left: too little to compile"
  elif [ $have_torch = 1 ]; then
    j=$RESULTS/gpu_torch_train_${TAG}_bs${BATCH}_bf16_compile.json
    run_step torch_train_compile 240 "$j" "$PYTHON" bench/torch_dit_bench.py train --compile --device "$DEVICE" \
      --precision bf16 "${MODEL[@]}" --batch "$BATCH" --steps "$TRAIN_STEPS" --warmup 5 --json "$j"
  else
    skip_step torch_train_compile "no torch"
  fi

  nvidia-smi --query-gpu=clocks.sm,clocks.max.sm,power.draw,temperature.gpu,memory.used --format=csv 2>/dev/null
  summarize
  echo "gpu_bench.sh: done in $(elapsed)s"
  ! grep -qE $'\t(failed|timeout)\t' "$STEPS_TSV"
}

# Combined record (bench/results/gpu_summary.json) and a table, from this run's JSON files.
summarize() {
  local gpu commit
  gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
  commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
  $PYTHON - "$RESULTS/gpu_summary.json" "$STEPS_TSV" "$gpu" "$commit" "$(elapsed)" ${RUN_FILES[@]+"${RUN_FILES[@]}"} <<'EOF'
import json, sys, time
out, steps_tsv, gpu, commit, seconds, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
steps = []
for line in open(steps_tsv):
    name, status, secs, rc = (line.rstrip("\n").split("\t") + ["", "", "", ""])[:4]
    steps.append({"step": name, "status": status, "seconds": int(secs or 0), "rc": rc})
records = []
for f in files:
    try:
        r = json.load(open(f))
        r["file"] = f
        records.append(r)
    except Exception as e:
        records.append({"file": f, "error": f"unreadable: {e}"})
summary = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "gpu": gpu, "commit": commit,
           "seconds": int(seconds), "steps": steps, "records": records}
json.dump(summary, open(out, "w"), indent=1)
print(f"\nsummary ({out}):")
for s in steps:
    print(f"  {s['step']:<24} {s['status']:<15} {s['seconds']:>4}s")
fmt = "  {:<7} {:<8} {:<8} {:>6} {:>12} {:>10} {:>9} {:>8} {:>7} {:>9}"
print(fmt.format("impl", "bench", "prec", "batch", "what", "images/s", "TFLOP/s", "ceiling", "MFU", "mem GiB"))
for r in records:
    if r.get("error"):
        print(f"  {r.get('impl', '?'):<7} {r.get('benchmark', '?'):<8} error: {str(r['error'])[:80]}")
        continue
    what = (f"{r.get('step_ms_median', 0):.1f} ms/step" if r.get("benchmark") == "train"
            else f"{r.get('peft', '?')} {r.get('step_ms_median', 0):.0f} ms" if r.get("benchmark") == "peft"
            else f"features {r.get('device', '?')}" if r.get("benchmark") == "inception"
            else f"{r.get('sampler', '?')}-{r.get('sampling_steps', '?')}")
    impl = r.get("impl", "?") + ("+c" if r.get("compile") else "")
    print(fmt.format(impl, r.get("benchmark", "?"), r.get("precision", "?"), r.get("batch", "?"), what,
                     f"{r.get('images_per_second', 0):.2f}", f"{r.get('tflops', 0):.1f}",
                     f"{r.get('matmul_ceiling_tflops', 0):.0f}", f"{100 * (r.get('mfu') or 0):.1f}%",
                     f"{r.get('peak_memory_gib', 0):.1f}"))
EOF
  if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT/results"
    cp ${RUN_FILES[@]+"${RUN_FILES[@]}"} "$RESULTS/gpu_summary.json" "$OUT/results/" 2>/dev/null
  fi
}

main 2>&1 | tee "$LOGDIR/gpu_bench.log"
exit "${PIPESTATUS[0]}"
