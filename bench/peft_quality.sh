#!/usr/bin/env bash
# peft_quality.sh — the synthetic transfer task for parameter-efficient fine-tuning: the quality
# each (method, peft) combination reaches after the same number of steps, through the difftune
# CLI only.
#
#  1. Data (`difftune dataset synth`): the source domain (style solid) for pretraining, the
#     target domain (style outline) to fine-tune on and to measure against, and a second target
#     set (another seed) to train the classifier on.
#  2. Pretrains a small base DiT on the source domain (`difftune train`, method pretrain) and,
#     at the same time, trains the fd_classifier CNN on the target domain (`difftune classifier
#     train`; it also tells the two styles apart: it puts source-style images at chance).
#  3. Measures the base model on the target domain (`difftune fid --extractor classifier:...`)
#     and, at the same time, fills the knowledge bank Diff-Tuning replays (one diff_tuning job
#     stopped after its first step), so that the runs below share it and no run pays for it.
#  4. Fine-tunes the base on the target domain for every combination of method (full,
#     diff_tuning) and peft (none, difffit, bitfit, lora rank 8): the same steps, batch, seed
#     and EMA; learning rate LR_FULL without a peft and LR_PEFT with one. Each job evaluates
#     its EMA weights once, at the last step (eval.fid_every = steps): fd_classifier (Fréchet
#     distance of the samples' classifier features to the target set) and classifier_accuracy
#     (the share of samples the classifier puts in the class they were asked for).
#  5. Repeats REPEAT's combinations with seed SEED2, to show run-to-run noise.
# JOBS runs go side by side with THREADS OpenMP threads each (on a small machine one thread per
# run beats two threads fighting over a core). Writes OUT_JSON: the settings, the base model, the
# classifier, the base on the target, and per run the final fd_classifier, accuracy, last
# training loss (mean of the last LOG_EVERY steps; with diff_tuning also the downstream part),
# trainable parameters, wall time and the load average around it.
#
# usage: bench/peft_quality.sh        (from the repository root; builds nothing)
# Settings (environment): BUILD (build), WORK (/tmp/difftune-peft-quality; emptied), OUT_JSON
# (bench/results/peft_quality_synthetic_dev-2core.json), CLASSES (4), SIZE (16), PER_CLASS (128),
# DEPTH (4), HIDDEN (96), HEADS (4), PATCH (4), PRETRAIN_STEPS (3000), PRETRAIN_LR (1e-3), STEPS
# (800), BATCH (32), LR_FULL (1e-4), LR_PEFT (1e-3), EMA (0.99), RANK (8), SAMPLES (1024),
# EVAL_STEPS (25), CFG (4.0: evaluation guidance), BANK_SIZE (256), BANK_STEPS (20), BANK_CFG (1.5),
# CLF_EPOCHS (40), SEED (0), SEED2
# (1), REPEAT ("full:none full:difffit"; "" for none), JOBS (2), THREADS (1), LOG_EVERY (25),
# NOTE (free text for the record).
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
BUILD=${BUILD:-build}
WORK=${WORK:-/tmp/difftune-peft-quality}
OUT_JSON=${OUT_JSON:-bench/results/peft_quality_synthetic_dev-2core.json}
CLASSES=${CLASSES:-4} SIZE=${SIZE:-16} PER_CLASS=${PER_CLASS:-128}
DEPTH=${DEPTH:-4} HIDDEN=${HIDDEN:-96} HEADS=${HEADS:-4} PATCH=${PATCH:-4}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-3000} PRETRAIN_LR=${PRETRAIN_LR:-1e-3}
STEPS=${STEPS:-800} BATCH=${BATCH:-32} LR_FULL=${LR_FULL:-1e-4} LR_PEFT=${LR_PEFT:-1e-3}
EMA=${EMA:-0.99} RANK=${RANK:-8}
SAMPLES=${SAMPLES:-1024} EVAL_STEPS=${EVAL_STEPS:-25} CFG=${CFG:-4.0}
BANK_SIZE=${BANK_SIZE:-256} BANK_STEPS=${BANK_STEPS:-20} BANK_CFG=${BANK_CFG:-1.5} CLF_EPOCHS=${CLF_EPOCHS:-40}
SEED=${SEED:-0} SEED2=${SEED2:-1} REPEAT=${REPEAT-full:none full:difffit}
JOBS=${JOBS:-2} THREADS=${THREADS:-1} LOG_EVERY=${LOG_EVERY:-25} NOTE=${NOTE:-}
export OMP_NUM_THREADS=$THREADS
DT=$ROOT/$BUILD/difftune
[[ $BUILD = /* ]] && DT=$BUILD/difftune
[ -x "$DT" ] || { echo "no $DT: cmake --build $BUILD --target difftune" >&2; exit 1; }
command -v jq >/dev/null || { echo "peft_quality.sh needs jq" >&2; exit 1; }
case $OUT_JSON in /*) ;; *) OUT_JSON=$ROOT/$OUT_JSON ;; esac

case $WORK in /|/tmp|/tmp/|"$HOME"|"$HOME"/|"") echo "WORK=$WORK: give a directory of its own (it is emptied)" >&2; exit 2 ;; esac
rm -rf "$WORK" && mkdir -p "$WORK/runs" || exit 1
START=$(date +%s.%N)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.2f", a - b }'; }
load1() { cut -d' ' -f1 /proc/loadavg; }
say() { printf '[%6.0fs] %s\n' "$(since "$START")" "$*"; }
die() { say "FAILED: $*"; exit 1; }

# ---- 1. data --------------------------------------------------------------------------------
"$DT" dataset synth --style solid --classes "$CLASSES" --per-class "$PER_CLASS" --size "$SIZE" \
  --seed 1 --out "$WORK/source" >/dev/null || die "synth source"
"$DT" dataset synth --style outline --classes "$CLASSES" --per-class "$PER_CLASS" --size "$SIZE" \
  --seed 2 --out "$WORK/target" >/dev/null || die "synth target"
"$DT" dataset synth --style outline --classes "$CLASSES" --per-class "$((2 * PER_CLASS))" --size "$SIZE" \
  --seed 3 --out "$WORK/target_clf" >/dev/null || die "synth classifier set"
say "data: source (solid), target (outline), classifier set (outline, another seed); $CLASSES classes, ${SIZE}px"

# ---- 2. base model and classifier, side by side ---------------------------------------------
cat >"$WORK/pretrain.json" <<JSON
{"method": "pretrain", "dataset": "$WORK/source",
 "model": {"arch": "custom", "depth": $DEPTH, "hidden_size": $HIDDEN, "num_heads": $HEADS,
           "patch_size": $PATCH, "image_size": $SIZE, "channels": 3},
 "hyperparameters": {"steps": $PRETRAIN_STEPS, "batch_size": $BATCH, "learning_rate": $PRETRAIN_LR,
                     "ema_decay": 0.995, "seed": $SEED},
 "eval": {"sample_every": 0, "fid_every": 0},
 "checkpoint": {"every": 1000000, "keep": 1}, "device": "cpu"}
JSON
t0=$(now)
"$DT" train --spec "$WORK/pretrain.json" --out "$WORK/pretrain" --grid 16 --log-every "$LOG_EVERY" \
  --quiet >"$WORK/pretrain.log" 2>"$WORK/pretrain.err" &
pre_pid=$!
"$DT" classifier train --dataset "$WORK/target_clf" --image-size "$SIZE" --epochs "$CLF_EPOCHS" \
  --seed "$SEED" --out "$WORK/classifier.safetensors" --quiet >"$WORK/classifier.log" 2>&1 ||
  die "classifier: $(tail -c 300 "$WORK/classifier.log")"
"$DT" classifier eval --classifier "$WORK/classifier.safetensors" --dataset "$WORK/target" \
  >"$WORK/classifier_target.json" || die "classifier eval (target)"
"$DT" classifier eval --classifier "$WORK/classifier.safetensors" --dataset "$WORK/source" \
  >"$WORK/classifier_source.json" || die "classifier eval (source)"
say "classifier: held-out $(tail -1 "$WORK/classifier.log" | jq .held_out_accuracy), on the target set" \
    "$(jq .accuracy "$WORK/classifier_target.json"), on the source set $(jq .accuracy "$WORK/classifier_source.json")"
wait $pre_pid || die "pretrain: $(tail -c 400 "$WORK/pretrain.err")"
PRETRAIN_SECONDS=$(since "$t0")
BASE=$WORK/pretrain/checkpoints/$(printf 'step_%07d.safetensors' "$PRETRAIN_STEPS")
[ -s "$BASE" ] || die "no $BASE"
say "base model: $PRETRAIN_STEPS steps in ${PRETRAIN_SECONDS%.*}s, last loss" \
    "$(jq -s '[.[] | select(.type == "progress" and .phase == "training")] | last | .loss' "$WORK/pretrain.log")"

# ---- the fine-tuning spec -------------------------------------------------------------------
# spec METHOD PEFT SEED STEPS: the job spec of one run on stdout.
spec() {
  local peft=null lr=$LR_FULL opts=""
  if [ "$2" != none ]; then peft="\"$2\""; lr=$LR_PEFT; fi
  [ "$2" = lora ] && opts=", \"peft_options\": {\"rank\": $RANK}"
  cat <<JSON
{"method": "$1", "base_model": "$BASE", "dataset": "$WORK/target", "peft": $peft$opts,
 "hyperparameters": {"steps": $4, "batch_size": $BATCH, "learning_rate": $lr, "ema_decay": $EMA,
                     "seed": $3},
 "diff_tuning": {"bank_size": $BANK_SIZE, "bank_sampler": "ddim", "bank_steps": $BANK_STEPS,
                 "bank_cfg": $BANK_CFG},
 "eval": {"sample_every": 0, "fid_every": $4, "fid_samples": $SAMPLES,
          "extractor": "classifier:$WORK/classifier.safetensors", "sampler": "ddim",
          "steps": $EVAL_STEPS, "cfg": $CFG},
 "checkpoint": {"every": 1000000, "keep": 1}, "device": "cpu"}
JSON
}

# ---- 3. the base on the target, and the knowledge bank, side by side ------------------------
t0=$(now)
"$DT" fid --checkpoint "$BASE" --dataset "$WORK/target" --extractor "classifier:$WORK/classifier.safetensors" \
  --samples "$SAMPLES" --sampler ddim --steps "$EVAL_STEPS" --cfg "$CFG" --batch "$BATCH" --device cpu \
  --eval-cache "$WORK/eval-cache" >"$WORK/base_on_target.json" 2>"$WORK/base_on_target.err" &
fid_pid=$!
spec diff_tuning none "$SEED" "$STEPS" >"$WORK/bank.json"
"$DT" train --spec "$WORK/bank.json" --out "$WORK/bank-prep" --bank-dir "$WORK/banks" \
  --eval-cache "$WORK/eval-cache" --stop-after 1 --grid 1 --quiet >"$WORK/bank.log" 2>&1
rc=$? # 3: stopped after step 1, as asked
[ $rc -eq 3 ] || [ $rc -eq 0 ] || die "knowledge bank (exit $rc): $(tail -c 400 "$WORK/bank.log")"
grep -q '"name":"knowledge_bank"' "$WORK/bank.log" || die "knowledge bank: $(tail -c 400 "$WORK/bank.log")"
BANK_SECONDS=$(since "$t0")
wait $fid_pid || die "fid of the base: $(tail -c 400 "$WORK/base_on_target.err")"
say "base on the target: fd_classifier $(jq .value "$WORK/base_on_target.json"), accuracy" \
    "$(jq .classifier_accuracy "$WORK/base_on_target.json"); knowledge bank of $BANK_SIZE images ready"

# ---- 4. and 5. the runs ---------------------------------------------------------------------
# run_one METHOD PEFT SEED: one fine-tuning job; writes runs/NAME/result.json.
run_one() {
  local name="$1-$2-s$3" dir="$WORK/runs/$1-$2-s$3" lb la t0 rc secs
  mkdir -p "$dir"
  spec "$1" "$2" "$3" "$STEPS" >"$dir/spec.json"
  lb=$(load1)
  t0=$(now)
  "$DT" train --spec "$dir/spec.json" --out "$dir/out" --bank-dir "$WORK/banks" \
    --eval-cache "$WORK/eval-cache" --grid 16 --log-every "$LOG_EVERY" --quiet >"$dir/train.log" 2>"$dir/train.err"
  rc=$?
  secs=$(since "$t0")
  la=$(load1)
  jq -s --arg method "$1" --arg peft "$2" --argjson seed "$3" --argjson rc "$rc" --argjson secs "$secs" \
    --argjson lb "$lb" --argjson la "$la" --arg err "$(tail -c 400 "$dir/train.err")" '
    ([.[] | select(.type == "progress" and .phase == "training")] | last) as $p |
    ([.[] | select(.type == "metric" and .name == "fd_classifier")] | last) as $fd |
    ([.[] | select(.type == "metric" and .name == "classifier_accuracy")] | last) as $acc |
    ([.[] | select(.type == "metric" and .name == "parameters")] | last) as $par |
    {method: $method, peft: $peft, seed: $seed, exit_status: $rc,
     learning_rate: $p.learning_rate, steps: $p.step,
     params_trainable: $par.trainable, params_total: $par.total,
     fd_classifier: $fd.value, classifier_accuracy: $acc.value, eval_samples: $fd.samples,
     eval_seconds: $fd.seconds.total,
     loss: $p.loss, loss_downstream: $p.loss_downstream, loss_bank: $p.loss_bank,
     train_images_per_second: $p.images_per_second,
     wall_seconds: ($secs * 10 | round / 10), loadavg_before: $lb, loadavg_after: $la}
    + (if $rc == 0 then {} else {error: $err} end)' "$dir/train.log" >"$dir/result.json"
  say "$name: rc $rc, ${secs%.*}s, fd_classifier $(jq .fd_classifier "$dir/result.json"), accuracy" \
      "$(jq .classifier_accuracy "$dir/result.json"), loss $(jq .loss "$dir/result.json")"
}

RUNS=()
for p in none difffit bitfit lora; do
  for m in full diff_tuning; do RUNS+=("$m:$p:$SEED"); done
done
for r in $REPEAT; do RUNS+=("$r:$SEED2"); done
for r in "${RUNS[@]}"; do
  while (( $(jobs -rp | wc -l) >= JOBS )); do wait -n; done
  IFS=: read -r m p s <<<"$r"
  run_one "$m" "$p" "$s" &
done
wait

# ---- the record -----------------------------------------------------------------------------
mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
results=()
for r in "${RUNS[@]}"; do
  IFS=: read -r m p s <<<"$r"
  results+=("$WORK/runs/$m-$p-s$s/result.json")
done
mkdir -p "$(dirname "$OUT_JSON")"
jq -s \
  --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --arg rev "$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  --argjson dirty "$(git status --porcelain 2>/dev/null | wc -l)" \
  --arg cpu "$cpu" --argjson cores "$(getconf _NPROCESSORS_ONLN)" --argjson mem "$mem_kib" \
  --arg load_start "$LOAD_START" --arg load_end "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --argjson total "$(since "$START")" --arg note "$NOTE" \
  --argjson pre_s "$PRETRAIN_SECONDS" --argjson bank_s "$BANK_SECONDS" \
  --argjson seed "$SEED" --argjson seed2 "$SEED2" \
  --slurpfile base "$WORK/base_on_target.json" --slurpfile ct "$WORK/classifier_target.json" \
  --slurpfile cs "$WORK/classifier_source.json" \
  --argjson clf "$(tail -1 "$WORK/classifier.log")" \
  --argjson pre "$(jq -s '[.[] | select(.type == "progress" and .phase == "training")] | last' "$WORK/pretrain.log")" \
  --argjson pre_params "$(jq -s '[.[] | select(.type == "metric" and .name == "parameters")] | last | .total' "$WORK/pretrain.log")" \
  --argjson settings "$(jq -n --argjson classes "$CLASSES" --argjson size "$SIZE" --argjson per "$PER_CLASS" \
      --argjson depth "$DEPTH" --argjson hidden "$HIDDEN" --argjson heads "$HEADS" --argjson patch "$PATCH" \
      --argjson psteps "$PRETRAIN_STEPS" --argjson plr "$PRETRAIN_LR" --argjson steps "$STEPS" \
      --argjson batch "$BATCH" --argjson lrf "$LR_FULL" --argjson lrp "$LR_PEFT" --argjson ema "$EMA" \
      --argjson rank "$RANK" --argjson samples "$SAMPLES" --argjson esteps "$EVAL_STEPS" --argjson cfg "$CFG" \
      --argjson bank "$BANK_SIZE" --argjson bsteps "$BANK_STEPS" --argjson bcfg "$BANK_CFG" --argjson epochs "$CLF_EPOCHS" \
      --argjson jobs "$JOBS" --argjson threads "$THREADS" --argjson log "$LOG_EVERY" '
      {source: "synth solid, seed 1", target: "synth outline, seed 2", classifier_set: "synth outline, seed 3",
       classes: $classes, image_size: $size, target_images: ($classes * $per), source_images: ($classes * $per),
       classifier_images: ($classes * $per * 2), classifier_epochs: $epochs,
       model: {depth: $depth, hidden_size: $hidden, num_heads: $heads, patch_size: $patch, learn_sigma: 1},
       pretrain: {steps: $psteps, batch_size: $batch, learning_rate: $plr, ema_decay: 0.995},
       fine_tune: {steps: $steps, batch_size: $batch, learning_rate_full: $lrf, learning_rate_peft: $lrp,
                   ema_decay: $ema, lora_rank: $rank, lora_alpha: $rank, lora_targets: "qkv proj fc1 fc2",
                   difffit_blocks: "default (half the depth, rounded up)", log_every: $log,
                   diff_tuning: {replay_ratio: 0.2, replay_weight: 0.1, power: 1.0, bank_size: $bank,
                                 bank_sampler: "ddim", bank_steps: $bsteps, bank_cfg: $bcfg}},
       eval: {metric: "fd_classifier and classifier_accuracy of the EMA weights at the last step",
              samples: $samples, sampler: "ddim", steps: $esteps, cfg: $cfg, reference: "the target set"},
       parallel_jobs: $jobs, omp_threads_per_job: $threads}')" '
  {benchmark: "peft_quality", date: $date, git_rev: $rev, uncommitted_paths: $dirty,
   machine: {cpu: $cpu, cores: $cores, memory_gib: (($mem / 1048576 * 10 | round) / 10)},
   loadavg_start: $load_start, loadavg_end: $load_end, total_seconds: ($total | round), note: $note,
   settings: $settings,
   base_model: {params: $pre_params, steps: $pre.step, last_loss: $pre.loss, seconds: ($pre_s | round)},
   classifier: {held_out_accuracy: $clf.held_out_accuracy, target_set_accuracy: $ct[0].accuracy,
                source_set_accuracy: $cs[0].accuracy},
   base_on_target: {fd_classifier: $base[0].value, classifier_accuracy: $base[0].classifier_accuracy,
                    samples: $base[0].samples},
   knowledge_bank_seconds: ($bank_s | round),
   runs: [.[] | select(.seed == $seed)], repeats: [.[] | select(.seed == $seed2)]}' \
  "${results[@]}" >"$OUT_JSON" || die "writing $OUT_JSON"

say "record: $OUT_JSON"
jq -r '(.runs + .repeats)[] | [.method, .peft, .seed, .params_trainable, .learning_rate,
        (.fd_classifier // "-" | if type == "number" then (. * 1000 | round / 1000) else . end),
        (.classifier_accuracy // "-"), (.loss // "-" | if type == "number" then (. * 10000 | round / 10000) else . end),
        .wall_seconds] | @tsv' "$OUT_JSON" |
  awk -F'\t' 'BEGIN { printf "%-12s %-8s %4s %10s %7s %10s %8s %8s %7s\n", "method", "peft", "seed", "trainable",
                      "lr", "fd_clf", "acc", "loss", "wall s" }
              { printf "%-12s %-8s %4s %10s %7s %10s %8s %8s %7s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }'
! jq -e '(.runs + .repeats) | any(.exit_status != 0)' "$OUT_JSON" >/dev/null
