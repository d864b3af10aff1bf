#!/usr/bin/env bash
# test_eval_cli.sh — evaluation through the command line: a tiny `difftune train` job with
# eval.fid_every and --inception-weights (random weights from `difftune fid --random-weights`)
# streams progress in phase "evaluating" and one fid metric event per evaluation point with
# every recorded field; a second run reads the cached reference statistics and measures the same
# values; `difftune fid` reproduces a job's value from its checkpoint; without weights, or with a
# broken file, each point is {"available": false, "reason"} and training still succeeds; a
# classifier extractor reports fd_classifier and classifier_accuracy.
source "$(dirname "$0")/check_util.sh"
TMP=${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/eval_cli
rm -rf "$TMP" && mkdir -p "$TMP"
unset DIFFTUNE_INCEPTION_WEIGHTS DIFFTUNE_EVAL_CACHE

"$BIN" dataset synth --style solid --classes 3 --per-class 6 --size 8 --out "$TMP/solid" >/dev/null || bad "synth"
"$BIN" fid --random-weights "$TMP/w.safetensors" --seed 1 >/dev/null
check "random Inception weights written" [ -s "$TMP/w.safetensors" ]
spec() { # spec FILE EXTRA_EVAL_JSON
  cat >"$1" <<JSON
{"method": "pretrain", "dataset": "$TMP/solid",
 "model": {"arch": "custom", "depth": 1, "hidden_size": 16, "num_heads": 2, "patch_size": 2, "image_size": 8},
 "hyperparameters": {"steps": 4, "batch_size": 4, "learning_rate": 1e-3},
 "eval": {"sample_every": 0, "fid_every": 2, "fid_samples": 6, "steps": 2$2},
 "checkpoint": {"every": 1000}, "device": "cpu"}
JSON
}
spec "$TMP/fid.json" ""
metrics() { jq -c 'select(.type == "metric" and .name == "'"$2"'")' "$1"; }

# --- with weights: one event per evaluation point (step 2, and the last step, 4)
"$BIN" train --spec "$TMP/fid.json" --out "$TMP/run1" --inception-weights "$TMP/w.safetensors" \
  --eval-cache "$TMP/cache" >"$TMP/run1.log" 2>"$TMP/run1.err"
check "train with FID succeeds: $(tail -c 300 "$TMP/run1.err")" [ $? -eq 0 ]
metrics "$TMP/run1.log" fid >"$TMP/fid1"
check "fid at steps 2 and 4" [ "$(jq -r .step "$TMP/fid1" | tr '\n' ' ')" = "2 4 " ]
check "every fid point records what it depends on" [ "$(jq -r '[.available, (.value | type), .samples, .sampler, .steps, .cfg, .extractor, .reference.images, (.reference.dataset_sha256 | length), (.seconds.sampling | type), (.seconds.features | type)] | map(tostring) | join(",")' "$TMP/fid1" | sort -u)" = "true,number,6,ddim,2,1.5,inception,18,64,number,number" ]
check "the first evaluation computed the reference" [ "$(jq -r '.seconds.reference | type' "$TMP/fid1" | tr '\n' ' ')" = "number null " ]
check "progress in phase evaluating: reference, then sampling, with done/total" \
  [ "$(jq -r 'select(.type == "progress" and .phase == "evaluating" and .stage and (.done == 0 or .done == .total)) | "\(.stage) \(.done)/\(.total)"' "$TMP/run1.log" | sort -u | tr '\n' ',')" = "reference 0/18,reference 18/18,sampling 0/6,sampling 6/6," ]
check "one reference file in the cache" [ "$(ls "$TMP/cache" | grep -c '\.safetensors$')" = 1 ]
check "the log says it was computed" grep -q 'reference statistics (inception) of 18 dataset images.*computed' "$TMP/run1.log"

# --- again: the reference comes from the cache and the values are the same (fixed labels, noise)
"$BIN" train --spec "$TMP/fid.json" --out "$TMP/run2" --inception-weights "$TMP/w.safetensors" \
  --eval-cache "$TMP/cache" >"$TMP/run2.log" 2>&1
check "second run succeeds" [ $? -eq 0 ]
check "the second run reads the cached reference" grep -q 'reference statistics.*read from the cache' "$TMP/run2.log"
check "no reference progress the second time" [ "$(jq -c 'select(.stage == "reference")' "$TMP/run2.log" | wc -l)" = 0 ]
check "the same values in both runs" [ "$(jq -r .value "$TMP/fid1")" = "$(metrics "$TMP/run2.log" fid | jq -r .value)" ]

# --- difftune fid measures the checkpoint as the job did (same batch = same noise chunks)
"$BIN" fid --checkpoint "$TMP/run1/checkpoints/step_0000004.safetensors" --dataset "$TMP/solid" \
  --samples 6 --steps 2 --batch 4 --inception-weights "$TMP/w.safetensors" --eval-cache "$TMP/cache" \
  --device cpu >"$TMP/cli.json" 2>"$TMP/cli.err"
check "difftune fid succeeds: $(tail -c 300 "$TMP/cli.err")" [ $? -eq 0 ]
check "difftune fid reproduces the job's step-4 value" \
  jq -en --slurpfile a "$TMP/cli.json" --argjson b "$(sed -n 2p "$TMP/fid1" | jq .value)" '$a[0].value == $b and $a[0].reference.cached' >/dev/null
"$BIN" fid --checkpoint "$TMP/run1/checkpoints/step_0000004.safetensors" --dataset "$TMP/solid" \
  --samples 6 --device cpu >/dev/null 2>"$TMP/now.err"
check "difftune fid without weights: exit 2" [ $? -eq 2 ]
check "... saying how to give them" grep -q -- "--inception-weights" "$TMP/now.err"

# --- without weights: unavailable with the reason, once per point, and the job succeeds
"$BIN" train --spec "$TMP/fid.json" --out "$TMP/run3" >"$TMP/run3.log" 2>&1
check "train without weights succeeds" [ $? -eq 0 ]
metrics "$TMP/run3.log" fid >"$TMP/fid3"
check "one unavailable point per evaluation" [ "$(jq -r '"\(.step) \(.available) \(.value)"' "$TMP/fid3" | tr '\n' ',')" = "2 false null,4 false null," ]
check "the reason says what to do" [ "$(jq -r '.reason | test("no Inception weights.*--inception-weights FILE.*README: Evaluation")' "$TMP/fid3" | sort -u)" = true ]
check "a warning in the log" [ "$(jq -c 'select(.type == "log" and .level == "warn" and (.message | test("fid unavailable")))' "$TMP/run3.log" | wc -l)" = 1 ]
check "and no value is made up" [ "$(jq -c 'select(.type == "metric" and .name == "fid" and .value != null)' "$TMP/run3.log" | wc -l)" = 0 ]

# --- a broken weights file: unavailable with the load error, training goes on
head -c 5000 "$TMP/w.safetensors" >"$TMP/broken.safetensors"
DIFFTUNE_INCEPTION_WEIGHTS="$TMP/broken.safetensors" "$BIN" train --spec "$TMP/fid.json" --out "$TMP/run4" >"$TMP/run4.log" 2>&1
check "train with broken weights succeeds" [ $? -eq 0 ]
check "the reason names the file and the problem" \
  [ "$(metrics "$TMP/run4.log" fid | jq -r '.available == false and (.reason | test("broken.safetensors.*truncated"))' | sort -u)" = true ]

# --- the server checks its weights at start and refuses a file that does not load
timeout 60 "$BIN" serve --port 0 --data-dir "$TMP/srv" --inception-weights "$TMP/broken.safetensors" >/dev/null 2>"$TMP/srv.err"
check "serve refuses broken Inception weights (exit 2)" [ $? -eq 2 ]
check "... saying why" grep -q "inception-weights.*broken.safetensors.*truncated" "$TMP/srv.err"
timeout 60 "$BIN" serve --port 0 --data-dir "$TMP/srv" --inception-weights "$TMP/none.safetensors" >/dev/null 2>"$TMP/srv.err"
check "serve refuses a missing weights file (exit 2)" [ $? -eq 2 ] && grep -q "none.safetensors" "$TMP/srv.err"

# --- fid_every 0: no evaluation at all
spec "$TMP/off.json" ""
sed -i 's/"fid_every": 2/"fid_every": 0/' "$TMP/off.json"
"$BIN" train --spec "$TMP/off.json" --out "$TMP/run5" >"$TMP/run5.log" 2>&1
check "fid_every 0: no fid events" [ $? -eq 0 ] && [ "$(metrics "$TMP/run5.log" fid | wc -l)" = 0 ]

# --- a classifier: fd_classifier and the accuracy of the samples on their labels
if "$BIN" classifier train --dataset "$TMP/solid" --image-size 8 --epochs 2 --out "$TMP/clf.safetensors" >/dev/null 2>"$TMP/clf.err"; then
  spec "$TMP/clf.json" ", \"extractor\": \"classifier:$TMP/clf.safetensors\""
  "$BIN" train --spec "$TMP/clf.json" --out "$TMP/run6" --eval-cache "$TMP/cache" >"$TMP/run6.log" 2>"$TMP/run6.err"
  check "train with a classifier succeeds: $(tail -c 300 "$TMP/run6.err")" [ $? -eq 0 ]
  check "fd_classifier at steps 2 and 4, named for the classifier" \
    [ "$(metrics "$TMP/run6.log" fd_classifier | jq -r '"\(.step) \(.value | type) \(.extractor == "classifier:'"$TMP/clf.safetensors"'")"' | tr '\n' ',')" = "2 number true,4 number true," ]
  check "classifier_accuracy in [0, 1]" \
    [ "$(metrics "$TMP/run6.log" classifier_accuracy | jq -r '.value >= 0 and .value <= 1 and .samples == 6' | tr '\n' ',')" = "true,true," ]
  spec "$TMP/noclf.json" ", \"extractor\": \"classifier:$TMP/missing.safetensors\""
  "$BIN" train --spec "$TMP/noclf.json" --out "$TMP/run7" >/dev/null 2>"$TMP/run7.err"
  check "a missing classifier rejects the job (exit 2)" [ $? -eq 2 ]
  check "... naming it" grep -q "missing.safetensors" "$TMP/run7.err"
else
  bad "classifier train: $(tail -c 300 "$TMP/clf.err")"
fi

finish
