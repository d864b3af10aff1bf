#!/usr/bin/env bash
# test_api_peft.sh — parameter-efficient fine-tuning end to end through a real `difftune serve`:
# each of the six combinations (full | diff_tuning x difffit | bitfit | lora) runs a short job to
# success on a tiny promoted base model; the job object shows its peft and the trainable count
# (exact, from the adapter's tensor shapes, and below the total); the downloaded checkpoint holds
# only the trained tensors (no frozen weight; gammas or LoRA matrices where they belong) under
# format difftune.peft.v1; promotion with "merge": true gives a plain DiT that a new job
# fine-tunes, and promotion without it an adapter model that a new job fine-tunes too and that
# keeps its base from deletion; bad requests get 400 with the field at fault in `param`.
source "$(dirname "$0")/server_util.sh"
TMP=${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/api_peft
rm -rf "$TMP" && mkdir -p "$TMP"
DATA="$TMP/data"
PY=${DIFFTUNE_PYTHON:-python3}
serve_start "$DATA" --devices cpu --slots-per-device 2

upload_domains

params() { curl -sS "$URL/jobs/$1" | jq -r '"\(.parameters.total) \(.parameters.trainable)"'; }

# The tiny DiT: D = 32, depth 2, patch 2, 3 channels (6 out, learn_sigma), 3 classes. Its
# parameter count, and what each adapter trains, from the shapes alone (dit.md, peft.h):
D=32
TOTAL=$(( (D*3*4 + D) + (D*256 + D + D*D + D) + 4*D \
        + 2*( (3*D*D + 3*D) + (D*D + D) + (4*D*D + 4*D) + (4*D*D + D) + (6*D*D + 6*D) ) \
        + (24*D + 24) + (2*D*D + 2*D) ))
BIASES=$(( 3*D + 2*(3*D + D + 4*D + D + 6*D) + 24 + 2*D + 4*D )) # every bias and the label table
BITFIT=$BIASES
DIFFFIT=$(( BIASES + 1*(D + D + 3*D + D) ))                     # gammas on the first ceil(2/2) blocks
LORA_ALL=$(( 2*( (4*D + 3*D*4) + (4*D + D*4) + (4*D + 4*D*4) + (4*4*D + D*4) ) )) # rank 4, every target
LORA_QP=$(( 2*( (2*D + 3*D*2) + (2*D + D*2) ) ))                  # rank 2 on qkv and proj

# ---- the base model: pretrained, promoted ----------------------------------------------------
submit "{\"method\": \"pretrain\", \"dataset\": \"$SOLID\", \"model\": {\"arch\": \"custom\", \"depth\": 2,
  \"hidden_size\": $D, \"num_heads\": 2, \"patch_size\": 2, \"image_size\": 8},
  \"hyperparameters\": {\"steps\": 8, \"batch_size\": 4, \"learning_rate\": 1e-3},
  \"eval\": {\"sample_every\": 0}, \"checkpoint\": {\"every\": 8}}"
BASEJOB=$JOB
check "pretrain trains every parameter ($TOTAL)" [ "$(params "$BASEJOB")" = "$TOTAL $TOTAL" ]
wait_status "$BASEJOB" succeeded 60; check "pretrain succeeded" [ $? -eq 0 ]
http GET "/jobs/$BASEJOB/checkpoints"; CKPT=$(jb '.data[-1].name')
http POST /models -H 'Content-Type: application/json' -d "{\"job\": \"$BASEJOB\", \"checkpoint\": \"$CKPT\", \"name\": \"base\"}"
expect_status 201 "promote the base"; BASE=$(jb .id)
check "a plain promoted model has no peft" [ "$(jb '.config | has("peft")')" = false ]

# ---- bad requests: the field at fault, before anything is queued ------------------------------
FT="\"base_model\": \"$BASE\", \"dataset\": \"$OUTLINE\""
bad_job() { # bad_job STATUS CODE PARAM WHAT JSON-MEMBERS
  http POST /jobs -H 'Content-Type: application/json' -d "{$FT, $5}"
  expect_error "$1" "$2" "$3" "$4"
}
bad_job 400 invalid_value peft "an unknown peft" '"peft": "qlora"'
bad_job 400 invalid_type peft "a peft that is not a string" '"peft": ["lora"]'
bad_job 400 invalid_value peft "peft with forgetting_curve" \
  "\"method\": \"forgetting_curve\", \"peft\": \"lora\", \"forgetting\": {\"checkpoint\": \"$BASEJOB\"}"
http POST /jobs -H 'Content-Type: application/json' \
  -d "{\"method\": \"pretrain\", \"dataset\": \"$SOLID\", \"peft\": \"bitfit\"}"
expect_error 400 invalid_value peft "peft with pretrain"
bad_job 400 invalid_value peft_options.difffit_blocks "difffit_blocks beyond the base's 2 blocks" \
  '"peft": "difffit", "peft_options": {"difffit_blocks": 3}'
check "the message says the depth: $(jb .error.message)" grep -q '2 blocks' "$TMP/body"
bad_job 400 invalid_value peft_options.rank "a rank above the hidden size" \
  '"peft": "lora", "peft_options": {"rank": 64}'
bad_job 400 invalid_value peft_options.rank "rank 0" '"peft": "lora", "peft_options": {"rank": 0}'
bad_job 400 invalid_type peft_options.rank "a rank that is not an integer" '"peft": "lora", "peft_options": {"rank": 4.5}'
bad_job 400 invalid_value peft_options.alpha "alpha 0" '"peft": "lora", "peft_options": {"alpha": 0}'
bad_job 400 invalid_value peft_options.targets "no targets" '"peft": "lora", "peft_options": {"targets": []}'
bad_job 400 invalid_value peft_options.targets "an unknown target" '"peft": "lora", "peft_options": {"targets": ["qkv", "out"]}'
bad_job 400 invalid_value peft_options.targets "a target twice" '"peft": "lora", "peft_options": {"targets": ["fc1", "fc1"]}'
bad_job 400 unknown_field peft_options.r "an unknown option" '"peft": "lora", "peft_options": {"r": 4}'
http GET "/jobs?limit=100"
check "no bad request made a job" [ "$(jb '.data | length')" = 1 ]

# a plain fine-tune trains everything (cancelled at once: only its object matters here)
submit "{$FT, \"method\": \"full\", \"hyperparameters\": {\"steps\": 2}}"
check "full without peft trains every parameter" [ "$(params "$JOB")" = "$TOTAL $TOTAL" ]
check "and keeps the usual learning rate" [ "$(jb .spec.hyperparameters.learning_rate)" = 0.0001 ]
http POST "/jobs/$JOB/cancel"

# ---- the six combinations ---------------------------------------------------------------------
RUN='"hyperparameters": {"steps": 6, "batch_size": 4}, "eval": {"sample_every": 0}, "checkpoint": {"every": 6},
  "diff_tuning": {"bank_size": 8, "bank_steps": 2}'
declare -A JOBS WANT
for method in full diff_tuning; do
  for peft in difffit bitfit lora; do
    opts=""
    case "$method/$peft" in
      full/lora) opts=', "peft_options": {"rank": 4, "alpha": 8}'; WANT[$method/$peft]=$LORA_ALL ;;
      diff_tuning/lora) opts=', "peft_options": {"rank": 2, "targets": ["proj", "qkv"]}'; WANT[$method/$peft]=$LORA_QP ;;
      */difffit) WANT[$method/$peft]=$DIFFFIT ;;
      */bitfit) WANT[$method/$peft]=$BITFIT ;;
    esac
    submit "{$FT, \"method\": \"$method\", \"peft\": \"$peft\"$opts, $RUN}"
    JOBS[$method/$peft]=$JOB
    check "$method + $peft: the job shows its peft" [ "$(jb '"\(.method) \(.spec.peft)"')" = "$method $peft" ]
    check "$method + $peft: without a learning rate it trains at 1e-3" \
      [ "$(jb .spec.hyperparameters.learning_rate)" = 0.001 ]
    check "$method + $peft: trainable ${WANT[$method/$peft]} of $TOTAL ($(jb '.parameters | tojson'))" \
      [ "$(jb '"\(.parameters.total) \(.parameters.trainable)"')" = "$TOTAL ${WANT[$method/$peft]}" ]
    check "$method + $peft: fewer trainable than total" [ "${WANT[$method/$peft]}" -lt "$TOTAL" ]
  done
done
http GET "/jobs/${JOBS[diff_tuning/lora]}"
check "lora options in the stored spec (alpha resolved, targets in block order)" \
  [ "$(jb '.spec.peft_options | [.rank, .alpha == 2, .targets, .difffit_blocks] | tojson')" = '[2,true,["qkv","proj"],null]' ]
http GET "/jobs?limit=100"
check "the list carries every job's parameters" \
  [ "$(jb '[.data[] | select(.parameters.total == '"$TOTAL"')] | length')" = 8 ]

# The tensors of a checkpoint: "name numel" lines (the EMA, under the plain names) and its format.
tensors() {
  "$PY" - "$1" <<'EOF'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
meta = h.pop("__metadata__", {})
print("format", meta.get("format"))
print("base_sha256", meta.get("base_sha256"))
for name, t in h.items():
    numel = 1
    for d in t["shape"]:
        numel *= d
    print(name, numel)
EOF
}
BASE_SHA=$(curl -sS "$URL/models/$BASE" | jq -r .sha256)
for key in "${!JOBS[@]}"; do
  job=${JOBS[$key]}
  wait_status "$job" succeeded 120; check "$key succeeded" [ $? -eq 0 ]
  http GET "/jobs/$job/checkpoints"; name=$(jb '.data[-1].name')
  curl -sS -o "$TMP/ckpt.st" "$URL/jobs/$job/checkpoints/$name"
  tensors "$TMP/ckpt.st" >"$TMP/tensors" || bad "$key: checkpoint header"
  check "$key: format difftune.peft.v1" grep -qx 'format difftune.peft.v1' "$TMP/tensors"
  check "$key: names its base by sha256" grep -qx "base_sha256 $BASE_SHA" "$TMP/tensors"
  check "$key: no frozen weight in the checkpoint" not grep -q '^\(train\.\)\?blocks\.0\.attn\.qkv\.weight ' "$TMP/tensors"
  check "$key: no pos_embed" not grep -q '^pos_embed ' "$TMP/tensors"
  ema=$(awk '$1 !~ /^(format|base_sha256|train\.|adam\.)/ {s += $2} END {print s + 0}' "$TMP/tensors")
  check "$key: the checkpoint's weights are the ${WANT[$key]} trained floats (got $ema)" [ "$ema" = "${WANT[$key]}" ]
  case "$key" in
    */difffit) check "$key: gammas of block 0, none of block 1" \
                 eval 'grep -q "^blocks\.0\.gamma1 32$" "$TMP/tensors" && grep -q "^blocks\.0\.attn\.gamma1 96$" "$TMP/tensors" && ! grep -q "^blocks\.1\.gamma" "$TMP/tensors"' ;;
    */bitfit) check "$key: biases and the label table only" \
                eval 'grep -q "^blocks\.1\.mlp\.fc2\.bias 32$" "$TMP/tensors" && grep -q "^y_embedder\.embedding_table\.weight 128$" "$TMP/tensors" && ! grep -q "gamma\|lora" "$TMP/tensors"' ;;
    full/lora) check "$key: rank-4 A and B on every target, no bias" \
                 eval 'grep -q "^blocks\.1\.mlp\.fc2\.lora_A\.weight 512$" "$TMP/tensors" && grep -q "^blocks\.0\.attn\.qkv\.lora_B\.weight 384$" "$TMP/tensors" && ! grep -q "bias" "$TMP/tensors"' ;;
    diff_tuning/lora) check "$key: only qkv and proj adapted" \
                        eval 'grep -q "^blocks\.0\.attn\.proj\.lora_A\.weight 64$" "$TMP/tensors" && ! grep -q "mlp" "$TMP/tensors"' ;;
  esac
done
cp "$TMP/ckpt.st" "$TMP/peft.st"

# ---- promotion: merged, and as an adapter -----------------------------------------------------
LJ=${JOBS[full/lora]}
http GET "/jobs/$LJ/checkpoints"; LNAME=$(jb '.data[-1].name'); LBYTES=$(jb '.data[-1].bytes')
http POST /models -H 'Content-Type: application/json' -d "{\"job\": \"$LJ\", \"checkpoint\": \"$LNAME\", \"merge\": \"yes\"}"
expect_error 400 invalid_type merge "merge must be a boolean"
http POST /models -H 'Content-Type: application/json' -d "{\"job\": \"$LJ\", \"checkpoint\": \"$LNAME\", \"merge\": true, \"name\": \"merged\"}"
expect_status 201 "promote a LoRA checkpoint merged"; MERGED=$(jb .id)
check "the merged model is a plain DiT of the base's shape" \
  [ "$(jb '"\(.kind) \(.config.depth) \(.config.hidden_size) \(.config | has("peft"))"')" = "dit 2 $D false" ]
check "the merged file is bigger than the adapter ($(jb .bytes) > $LBYTES bytes)" [ "$(jb .bytes)" -gt "$LBYTES" ]
http POST /models -H 'Content-Type: application/json' -d "{\"job\": \"$LJ\", \"checkpoint\": \"$LNAME\", \"name\": \"adapter\"}"
expect_status 201 "promote a LoRA checkpoint as it is"; ADAPTER=$(jb .id)
check "the adapter model keeps the DiT's config and says what it is on" \
  [ "$(jb '"\(.config.depth) \(.config.peft.kind) \(.config.peft.rank) \(.config.peft.base_model) \(.config.peft.base_sha256)"')" = "2 lora 4 $BASE $BASE_SHA" ]
http POST "/models?name=upload" --data-binary "@$TMP/peft.st" -H 'Content-Type: application/octet-stream'
expect_error 422 invalid_model file "an uploaded PEFT checkpoint names a base on another server"

submit "{\"base_model\": \"$MERGED\", \"dataset\": \"$OUTLINE\", \"method\": \"full\", \"peft\": \"bitfit\", $RUN}"
ON_MERGED=$JOB
check "a job on the merged model counts the same DiT" [ "$(params "$ON_MERGED")" = "$TOTAL $BITFIT" ]
submit "{\"base_model\": \"$ADAPTER\", \"dataset\": \"$OUTLINE\", \"method\": \"full\", $RUN}"
ON_ADAPTER=$JOB
check "a full job on the adapter model trains the whole DiT" [ "$(params "$ON_ADAPTER")" = "$TOTAL $TOTAL" ]
wait_status "$ON_MERGED" succeeded 120; check "a PEFT job on the merged model succeeded" [ $? -eq 0 ]
wait_status "$ON_ADAPTER" succeeded 120; check "a job on the adapter model succeeded" [ $? -eq 0 ]

http DELETE "/models/$BASE"
expect_error 409 in_use - "the base of an adapter model stays"
check "the message names the adapter" grep -q "$ADAPTER" "$TMP/body"
http DELETE "/models/$ADAPTER"; expect_status 200 "delete the adapter model"
http DELETE "/models/$BASE"; expect_status 200 "then its base can go"

serve_stop; check "graceful stop" [ $? -eq 0 ]
finish
