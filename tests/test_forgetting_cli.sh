#!/usr/bin/env bash
# test_forgetting_cli.sh — `difftune forgetting-curve` on a real base model and a real fine-tuned
# checkpoint of it: the loss curve of both models by timestep bucket (the fine-tuned model fits
# the target data better than the base model it came from), the hybrid curve at every switch
# point with the evaluation's fields, the same numbers twice, unavailable (not faked) without
# Inception weights, and clear refusals of bad input.
source "$(dirname "$0")/check_util.sh"
TMP=${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/forgetting_cli
rm -rf "$TMP" && mkdir -p "$TMP"
unset DIFFTUNE_INCEPTION_WEIGHTS DIFFTUNE_EVAL_CACHE

# A base model pretrained on one domain, then fine-tuned (full) on another.
"$BIN" dataset synth --style solid --classes 3 --per-class 8 --size 8 --out "$TMP/source" >/dev/null || bad "synth source"
"$BIN" dataset synth --style outline --classes 3 --per-class 8 --size 8 --out "$TMP/target" >/dev/null || bad "synth target"
"$BIN" fid --random-weights "$TMP/w.safetensors" --seed 3 >/dev/null || bad "random weights"
cat >"$TMP/pre.json" <<JSON
{"method": "pretrain", "dataset": "$TMP/source",
 "model": {"arch": "custom", "depth": 1, "hidden_size": 16, "num_heads": 2, "patch_size": 2, "image_size": 8},
 "hyperparameters": {"steps": 60, "batch_size": 8, "learning_rate": 2e-3, "ema_decay": 0.9},
 "eval": {"sample_every": 0, "fid_every": 0}, "checkpoint": {"every": 1000}, "device": "cpu"}
JSON
"$BIN" train --spec "$TMP/pre.json" --out "$TMP/pre" --quiet >/dev/null 2>"$TMP/pre.err"
check "pretraining succeeds: $(tail -c 300 "$TMP/pre.err")" [ $? -eq 0 ]
BASE=$TMP/pre/checkpoints/step_0000060.safetensors
cat >"$TMP/ft.json" <<JSON
{"method": "full", "base_model": "$BASE", "dataset": "$TMP/target",
 "hyperparameters": {"steps": 80, "batch_size": 8, "learning_rate": 2e-3, "ema_decay": 0.9},
 "eval": {"sample_every": 0, "fid_every": 0}, "checkpoint": {"every": 1000}, "device": "cpu"}
JSON
"$BIN" train --spec "$TMP/ft.json" --out "$TMP/ft" --quiet >/dev/null 2>"$TMP/ft.err"
check "fine-tuning succeeds: $(tail -c 300 "$TMP/ft.err")" [ $? -eq 0 ]
TUNED=$TMP/ft/checkpoints/step_0000080.safetensors

run() { # run OUT [extra options]
  local out=$1; shift
  "$BIN" forgetting-curve --base "$BASE" --checkpoint "$TUNED" --dataset "$TMP/target" --device cpu \
    --buckets 4 --loss-images 24 --switch-points 3 --samples 6 --steps 4 --eval-cache "$TMP/cache" \
    "$@" >"$out.log" 2>"$out.err"
}
run "$TMP/a" --inception-weights "$TMP/w.safetensors"
check "forgetting-curve succeeds: $(tail -c 300 "$TMP/a.err")" [ $? -eq 0 ]
jq -c 'select(.type == "metric" and .name == "forgetting_loss")' "$TMP/a.log" >"$TMP/loss"
check "one loss curve" [ "$(wc -l <"$TMP/loss")" = 1 ]
check "four buckets starting at 0, 250, 500, 750" [ "$(jq -c .timesteps "$TMP/loss")" = "[0,250,500,750]" ]
check "both models have a finite loss in every bucket" \
  [ "$(jq '[.base[], .finetuned[]] | map(select(type == "number" and . > 0 and . < 100)) | length' "$TMP/loss")" = 8 ]
check "the fine-tuned model fits the target data better than the base model" \
  jq -e '(.finetuned | add) < (.base | add)' "$TMP/loss" >/dev/null
jq -c 'select(.type == "metric" and .name == "forgetting_hybrid")' "$TMP/a.log" >"$TMP/hyb"
check "a hybrid point at switch timesteps 0, 500, 1000" [ "$(jq -r .step "$TMP/hyb" | tr '\n' ' ')" = "0 500 1000 " ]
check "each point records its measurement" \
  [ "$(jq -r '[.available, (.value | type), .metric, .samples, .sampler, .steps, .extractor, .reference.images] | map(tostring) | join(",")' "$TMP/hyb" | sort -u)" = "true,number,fid,6,ddim,4,inception,24" ]
check "the all-fine-tuned and all-base ends differ" \
  [ "$(jq -s '.[0].value != .[2].value' "$TMP/hyb")" = true ]
check "progress through both parts" \
  [ "$(jq -r 'select(.type == "progress") | .phase' "$TMP/a.log" | sort -u | tr '\n' ',')" = "hybrid,loading,loss_curve," ]
check "status succeeded last" [ "$(tail -n 1 "$TMP/a.log" | jq -r .status)" = succeeded ]

run "$TMP/b" --inception-weights "$TMP/w.safetensors"
check "the same numbers again (fixed timesteps, noise and labels)" \
  [ "$(jq -c 'select(.type == "metric") | [.name, .step, .value, .base, .finetuned]' "$TMP/a.log")" = \
    "$(jq -c 'select(.type == "metric") | [.name, .step, .value, .base, .finetuned]' "$TMP/b.log")" ]

run "$TMP/c"
check "without weights the analysis still succeeds" [ $? -eq 0 ]
check "the loss curve is still measured" [ "$(jq -c 'select(.name == "forgetting_loss")' "$TMP/c.log" | wc -l)" = 1 ]
check "the hybrid curve is unavailable with the reason, not made up" \
  [ "$(jq -r 'select(.type == "metric" and .name == "forgetting_hybrid") | "\(.available) \(.value) \(.reason | test("--inception-weights"))"' "$TMP/c.log")" = "false null true" ]

run "$TMP/d" --switch-points 0
check "--switch-points 0 skips the hybrid curve" [ $? -eq 0 ] && \
  check "... so no hybrid event" [ "$(jq -c 'select(.name == "forgetting_hybrid")' "$TMP/d.log" | wc -l)" = 0 ]

# bad input
"$BIN" forgetting-curve --base "$BASE" --dataset "$TMP/target" >/dev/null 2>"$TMP/e1.err"
check "a missing --checkpoint: exit 2" [ $? -eq 2 ]
run "$TMP/e2" --switch-points 1
check "one switch point: exit 2" [ $? -eq 2 ]
run "$TMP/e3" --buckets 0
check "no buckets: exit 2" [ $? -eq 2 ]
cat >"$TMP/other.json" <<JSON
{"method": "pretrain", "dataset": "$TMP/source",
 "model": {"arch": "custom", "depth": 1, "hidden_size": 32, "num_heads": 2, "patch_size": 2, "image_size": 8},
 "hyperparameters": {"steps": 1, "batch_size": 4}, "eval": {"sample_every": 0, "fid_every": 0}, "device": "cpu"}
JSON
"$BIN" train --spec "$TMP/other.json" --out "$TMP/other" --quiet >/dev/null 2>&1
"$BIN" forgetting-curve --base "$BASE" --checkpoint "$TMP/other/checkpoints/step_0000001.safetensors" \
  --dataset "$TMP/target" --device cpu --switch-points 0 >"$TMP/e4.log" 2>"$TMP/e4.err"
check "a checkpoint of another architecture: exit 2" [ $? -eq 2 ]
check "... saying so" grep -q "not the base model's architecture" "$TMP/e4.err"
"$BIN" forgetting-curve --base "$BASE" --checkpoint "$TUNED" --dataset "$TMP/nowhere" --device cpu >/dev/null 2>"$TMP/e5.err"
check "a missing dataset: exit 2" [ $? -eq 2 ]

finish
