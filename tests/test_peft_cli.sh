#!/usr/bin/env bash
# test_peft_cli.sh — parameter-efficient jobs from the command line: `difftune train` with
# "peft" writes checkpoints of only the trained tensors; `difftune sample` draws from such a
# checkpoint (merging it into its base) exactly what it draws from its `difftune export`; the
# export is a plain DiT that PEFT jobs start from; bad peft options and a moved base are refused.
source "$(dirname "$0")/check_util.sh"
TMP=${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/peft_cli
rm -rf "$TMP" && mkdir -p "$TMP"
export HOME=$TMP/home
unset DIFFTUNE_INCEPTION_WEIGHTS

"$BIN" dataset synth --style solid --classes 3 --per-class 8 --size 8 --out "$TMP/solid" >/dev/null || bad "synth solid"
"$BIN" dataset synth --style outline --classes 2 --per-class 8 --size 8 --out "$TMP/outline" >/dev/null || bad "synth outline"

cat > "$TMP/base.json" <<JSON
{"dataset": "$TMP/solid", "method": "pretrain",
 "model": {"arch": "custom", "depth": 2, "hidden_size": 32, "num_heads": 2, "patch_size": 2, "image_size": 8},
 "hyperparameters": {"steps": 40, "batch_size": 8, "learning_rate": 5e-3, "ema_decay": 0},
 "eval": {"sample_every": 0, "fid_every": 0}, "checkpoint": {"every": 40}, "device": "cpu"}
JSON
expect_rc 0 "pretrain the base" -- train --spec "$TMP/base.json" --out "$TMP/base"
BASE=$TMP/base/checkpoints/step_0000040.safetensors

# spec_json PEFT EXTRA: a fine-tuning spec on the outline domain
spec_json() {
  cat <<JSON
{"base_model": "$BASE", "dataset": "$TMP/outline", "method": "diff_tuning", "peft": "$1",
 "peft_options": {$2},
 "hyperparameters": {"steps": 3, "batch_size": 8, "ema_decay": 0},
 "diff_tuning": {"bank_size": 4, "bank_steps": 2},
 "eval": {"sample_every": 0, "fid_every": 0}, "checkpoint": {"every": 3}, "device": "cpu"}
JSON
}
spec_json lora '"rank": 2, "alpha": 32, "targets": ["qkv", "fc1"]' > "$TMP/lora.json"
expect_rc 0 "a LoRA Diff-Tuning job" -- train --spec "$TMP/lora.json" --out "$TMP/lora" --bank-dir "$TMP/banks"
CK=$TMP/lora/checkpoints/step_0000003.safetensors
check "it reports its trainable parameters" \
  [ "$(jq -r 'select(.type == "metric" and .name == "parameters") | "\(.peft) \(.trainable < .total)"' "$TMP/out")" = "lora true" ]
check "the PEFT default learning rate (1e-3) is in the stored spec" \
  [ "$(jq -r 'select(.type == "progress" and .phase == "training") | .learning_rate' "$TMP/out" | head -1)" = "0.001" ]
check "the checkpoint is smaller than the base" [ "$(stat -c %s "$CK")" -lt "$(stat -c %s "$BASE")" ]

S=(sample --n 4 --steps 3 --sampler ddim --device cpu --seed 5)
expect_rc 0 "sample from the PEFT checkpoint" -- "${S[@]}" --checkpoint "$CK" --out "$TMP/peft.png"
expect_rc 0 "export it merged" -- export --checkpoint "$CK" --out "$TMP/merged.safetensors"
check "export says what it merged" [ "$(jq -r .peft "$TMP/out")" = lora ]
expect_rc 0 "sample from the export" -- "${S[@]}" --checkpoint "$TMP/merged.safetensors" --out "$TMP/merged.png"
check "the same samples from the checkpoint and its export" cmp -s "$TMP/peft.png" "$TMP/merged.png"
expect_rc 0 "sample from the base" -- "${S[@]}" --checkpoint "$BASE" --out "$TMP/base.png"
check "fine-tuning changed the samples" not cmp -s "$TMP/peft.png" "$TMP/base.png"
expect_rc 0 "the training weights of the PEFT checkpoint" -- "${S[@]}" --checkpoint "$CK" --weights train --out "$TMP/train.png"

# The export is a plain DiT: a DiffFit job starts from it.
spec_json difffit '"difffit_blocks": 1' | sed "s|$BASE|$TMP/merged.safetensors|" > "$TMP/df.json"
expect_rc 0 "a DiffFit job on the export" -- train --spec "$TMP/df.json" --out "$TMP/df" --bank-dir "$TMP/banks"

# Refusals.
spec_json difffit '"difffit_blocks": 9' > "$TMP/bad.json"
expect_rc 2 "difffit_blocks past the depth" -- train --spec "$TMP/bad.json" --out "$TMP/bad" --bank-dir "$TMP/banks"
check "it names the option: $(tail -c 300 "$TMP/out")" grep -q "peft_options.difffit_blocks" "$TMP/out"
spec_json lora '"rank": 64' > "$TMP/bad2.json"
expect_rc 2 "a rank above the hidden size" -- train --spec "$TMP/bad2.json" --out "$TMP/bad2" --bank-dir "$TMP/banks"
check "it names the rank" grep -q "peft_options.rank" "$TMP/out"
mv "$BASE" "$TMP/moved.safetensors"
expect_rc 1 "export with the base moved away" -- export --checkpoint "$CK" --out "$TMP/m2.safetensors"
check "it names the missing base: $(cat "$TMP/err")" grep -q "step_0000040.safetensors" "$TMP/err"
check "nothing was written" not test -e "$TMP/m2.safetensors"
mv "$TMP/moved.safetensors" "$BASE"
expect_rc 2 "export of a missing file" -- export --checkpoint "$TMP/nope.safetensors" --out "$TMP/m3.safetensors"
finish test_peft_cli
