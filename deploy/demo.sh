#!/usr/bin/env bash
# demo.sh — the engine end to end with no download: makes two related synthetic domains,
# pretrains a small base DiT on the first ("solid" shapes), then Diff-Tunes it to the second
# ("outline" shapes), printing progress. Outputs go under $DIFFTUNE_DEMO_DIR (default data/demo).
#
# usage: deploy/demo.sh [path/to/difftune]
set -euo pipefail
BIN=${1:-build/difftune}
DIR=${DIFFTUNE_DEMO_DIR:-data/demo}
PRETRAIN_STEPS=${DEMO_PRETRAIN_STEPS:-800}
TUNE_STEPS=${DEMO_TUNE_STEPS:-400}
mkdir -p "$DIR"

echo "== 1/4 synthetic domains in $DIR"
"$BIN" dataset synth --style solid --classes 4 --per-class 200 --size 16 --seed 1 --out "$DIR/solid"
"$BIN" dataset synth --style outline --classes 4 --per-class 50 --size 16 --seed 2 --out "$DIR/outline"

cat > "$DIR/pretrain.json" <<JSON
{"method": "pretrain", "dataset": "$DIR/solid",
 "model": {"arch": "custom", "depth": 4, "hidden_size": 96, "num_heads": 4, "patch_size": 2,
           "image_size": 16, "channels": 3, "learn_sigma": true},
 "hyperparameters": {"steps": $PRETRAIN_STEPS, "batch_size": 32, "learning_rate": 1e-3, "ema_decay": 0.995},
 "eval": {"sample_every": 200},
 "checkpoint": {"every": 200, "keep": 2},
 "device": "auto"}
JSON
echo "== 2/4 pretraining a base model on 'solid' ($PRETRAIN_STEPS steps; run again to resume)"
"$BIN" train --spec "$DIR/pretrain.json" --out "$DIR/base" --format text --log-every 50

BASE=$(ls "$DIR"/base/checkpoints/step_*[0-9].safetensors | sort | tail -n 1)
cat > "$DIR/difftune.json" <<JSON
{"method": "diff_tuning", "base_model": "$BASE", "dataset": "$DIR/outline",
 "hyperparameters": {"steps": $TUNE_STEPS, "batch_size": 32, "learning_rate": 1e-3, "ema_decay": 0.99},
 "diff_tuning": {"power": 1.0, "replay_ratio": 0.2, "replay_weight": 0.1,
                 "bank_size": 256, "bank_sampler": "ddim", "bank_steps": 50, "bank_cfg": 1.5},
 "eval": {"sample_every": 100},
 "checkpoint": {"every": 100, "keep": 2},
 "device": "auto"}
JSON
echo "== 3/4 Diff-Tuning $BASE to 'outline' ($TUNE_STEPS steps, knowledge bank of 256 images)"
"$BIN" train --spec "$DIR/difftune.json" --out "$DIR/tuned" --bank-dir "$DIR/banks" --format text --log-every 50

echo "== 4/4 sampling the fine-tuned model"
TUNED=$(ls "$DIR"/tuned/checkpoints/step_*[0-9].safetensors | sort | tail -n 1)
"$BIN" sample --checkpoint "$TUNED" --n 16 --sampler ddim --steps 50 --out "$DIR/tuned-samples.png"
echo
echo "done. base model:     $BASE"
echo "      tuned model:    $TUNED"
echo "      sample grids:   $DIR/base/samples/ $DIR/tuned/samples/ $DIR/tuned-samples.png"
