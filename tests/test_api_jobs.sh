#!/usr/bin/env bash
# test_api_jobs.sh — jobs running on real workers behind a real `difftune serve`: the walkthrough
# of the README (pretrain, promote, diff_tuning, follow, download), SSE resume with
# Last-Event-ID, two jobs on one slot, cancel of a running job, a worker killed with -9, and the
# server itself killed with -9 and restarted. Every job must end where it should, resumed from
# its checkpoint, with no job lost or duplicated.
source "$(dirname "$0")/server_util.sh"
TMP=${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/api_jobs
rm -rf "$TMP" && mkdir -p "$TMP"
DATA="$TMP/data"
serve_start "$DATA" --devices cpu --slots-per-device 1 --cancel-grace 5

upload_domains

TINY='"model": {"arch": "custom", "depth": 1, "hidden_size": 16, "num_heads": 2, "patch_size": 2, "image_size": 8}'
pretrain() { # pretrain STEPS CKPT_EVERY [PRIORITY]
  submit "{\"method\": \"pretrain\", \"dataset\": \"$SOLID\", $TINY,
    \"hyperparameters\": {\"steps\": $1, \"batch_size\": 4, \"learning_rate\": 1e-3},
    \"eval\": {\"sample_every\": 0}, \"checkpoint\": {\"every\": $2, \"keep\": 2}, \"priority\": ${3:-0}}"
}
step_of() { curl -sS "$URL/jobs/$1" | jq -r '.progress.step // 0'; }
wait_step() { # wait_step JOB STEP: until the job's progress reaches STEP (2 min at most)
  local i
  for i in $(seq 1 2400); do [ "$(step_of "$1")" -ge "$2" ] && return 0; sleep 0.05; done
  return 1
}
worker_pid() { curl -sS "$URL/workers" | jq -r --arg j "$1" '.data[] | select(.job == $j) | .pid'; }

# ---- the walkthrough: pretrain a base, promote it, Diff-Tuning on the other domain -------------
pretrain 60 30; BASEJOB=$JOB
timeout 60 curl -sS -N -H 'Accept: text/event-stream' "$URL/jobs/$BASEJOB/events" >"$TMP/base.sse"
check "the live stream ends by itself after the job" [ $? -eq 0 ]
check "the stream saw progress, checkpoints and the end" \
  [ "$(grep -c '^event: checkpoint$' "$TMP/base.sse")" = 2 ] && grep -q '"status":"succeeded"' "$TMP/base.sse"
wait_status "$BASEJOB" succeeded 60; check "pretrain succeeded" [ $? -eq 0 ]
http GET "/jobs/$BASEJOB"
check "finished job: attempt 1, step 60, finished_at" [ "$(jb '[.attempt, .progress.step, (.finished_at > .started_at)] | join(",")')" = "1,60,true" ]
http GET "/jobs/$BASEJOB/metrics"; expect_status 200 "metrics"
check "loss series recorded by step" [ "$(jb '.series.loss | length')" -ge 5 ]
# FID is due at the last step (eval.fid_every defaults to 1000); this server has no Inception
# weights, so the job reports it unavailable, with the reason, and still succeeds
check "the fid series holds the unavailable point with its reason" \
  [ "$(jb '.series.fid | map("\(.step) \(.value) \(.available) \(.reason | test("--inception-weights"))") | join(",")')" = "60 null false true" ]
http GET "/jobs/$BASEJOB"
check "the job object carries the latest evaluation" \
  [ "$(jb '[.evaluation.fid.step, .evaluation.fid.available, (.evaluation | has("fd_classifier"))] | map(tostring) | join(",")')" = "60,false,false" ]
http GET "/jobs/$BASEJOB/samples"; expect_status 200 "samples"
SAMPLE_URL=$(jb '.data[0].url')
curl -sS -o "$TMP/grid.png" "$URL$SAMPLE_URL"
check "sample grid is a PNG" [ "$(head -c 4 "$TMP/grid.png" | tail -c 3)" = PNG ]

http GET "/jobs/$BASEJOB/checkpoints"; expect_status 200 "checkpoints"
check "checkpoint list shape" [ "$(jb '[.data[] | [.name, .step, .bytes, .sha256] | map(type)] | unique | .[0] | join(",")')" = "string,number,number,string" ]
NAME=$(jb '.data[-1].name'); SHA=$(jb '.data[-1].sha256'); SIZE=$(jb '.data[-1].bytes')
curl -sS -o "$TMP/whole.st" "$URL/jobs/$BASEJOB/checkpoints/$NAME"
check "download whole matches sha256" [ "$(sha256sum "$TMP/whole.st" | cut -d' ' -f1)" = "$SHA" ]
: >"$TMP/ranged.st"
for ((off = 0; off < SIZE; off += 10000)); do
  end=$((off + 9999)); [ $end -ge $SIZE ] && end=$((SIZE - 1))
  code=$(curl -sS -o "$TMP/part" -w '%{http_code}' -H "Range: bytes=$off-$end" "$URL/jobs/$BASEJOB/checkpoints/$NAME")
  [ "$code" = 206 ] || bad "range $off-$end gave $code"
  cat "$TMP/part" >>"$TMP/ranged.st"
done
check "download in ranges matches sha256" [ "$(sha256sum "$TMP/ranged.st" | cut -d' ' -f1)" = "$SHA" ]
http GET "/jobs/$BASEJOB/checkpoints/$NAME" -H 'Range: bytes=-100'; expect_status 206 "suffix range"
check "Content-Range of a suffix" grep -qi "^content-range: bytes $((SIZE - 100))-$((SIZE - 1))/$SIZE" "$TMP/headers"
http GET "/jobs/$BASEJOB/checkpoints/$NAME" -H "Range: bytes=$SIZE-"; expect_error 416 range_not_satisfiable Range "range past the end"
check "416 says the size" grep -qi "^content-range: bytes \*/$SIZE" "$TMP/headers"
http GET "/jobs/$BASEJOB/checkpoints/$NAME" -H "If-None-Match: \"$SHA\""; expect_status 304 "ETag revalidation"

http POST /models -H 'Content-Type: application/json' -d "{\"job\": \"$BASEJOB\", \"checkpoint\": \"$NAME\", \"name\": \"solid base\"}"
expect_status 201 "promote a checkpoint"; MDL=$(jb .id)
check "promoted model remembers its source" [ "$(jb '[.source_job, .source_checkpoint] | join(",")')" = "$BASEJOB,$NAME" ]
EVAL_JOB="\"method\": \"full\", \"base_model\": \"$MDL\", \"dataset\": \"$OUTLINE\""
http POST /jobs -H 'Content-Type: application/json' -d "{$EVAL_JOB, \"eval\": {\"extractor\": \"classifier:/etc/passwd\"}}"
expect_error 400 invalid_value eval.extractor "a classifier must be a model id, never a server path"
http POST /jobs -H 'Content-Type: application/json' -d "{$EVAL_JOB, \"eval\": {\"extractor\": \"classifier:mdl_000000000000000000000000\"}}"
expect_error 404 not_found eval.extractor "a classifier id that does not exist"
http POST /jobs -H 'Content-Type: application/json' -d "{$EVAL_JOB, \"eval\": {\"extractor\": \"classifier:$MDL\"}}"
expect_error 400 invalid_value eval.extractor "a DiT is not a classifier"
http POST /jobs -H 'Content-Type: application/json' -d "{$EVAL_JOB, \"eval\": {\"extractor\": \"clip\"}}"
expect_error 400 invalid_value eval.extractor "an unknown extractor"
submit "{\"method\": \"diff_tuning\", \"base_model\": \"$MDL\", \"dataset\": \"$OUTLINE\",
  \"hyperparameters\": {\"steps\": 30, \"batch_size\": 8, \"learning_rate\": 1e-3},
  \"diff_tuning\": {\"bank_size\": 16, \"bank_steps\": 5}, \"eval\": {\"sample_every\": 0}, \"checkpoint\": {\"every\": 30}}"
DT=$JOB
wait_status "$DT" succeeded 120; check "diff_tuning job succeeded" [ $? -eq 0 ]
check "the bank was built and the bank loss reported" \
  [ "$(curl -sS "$URL/jobs/$DT/metrics" | jq '.series.loss_bank | length')" -ge 1 ]

# ---- a classifier model as the evaluation's extractor: the worker resolves the id to its file ---
"$BIN" classifier train --dataset "$TMP/outline" --image-size 8 --epochs 2 --out "$TMP/clf.safetensors" >/dev/null 2>&1
http POST "/models?name=outline-classifier" --data-binary "@$TMP/clf.safetensors" -H 'Content-Type: application/octet-stream'
expect_status 201 "upload a classifier"; CLF=$(jb .id)
submit "{\"method\": \"full\", \"base_model\": \"$MDL\", \"dataset\": \"$OUTLINE\",
  \"hyperparameters\": {\"steps\": 4, \"batch_size\": 4}, \"checkpoint\": {\"every\": 4},
  \"eval\": {\"sample_every\": 0, \"fid_every\": 2, \"fid_samples\": 4, \"steps\": 2, \"extractor\": \"classifier:$CLF\"}}"
EV=$JOB
wait_status "$EV" succeeded 120; check "a job evaluated by a classifier succeeded" [ $? -eq 0 ]
http GET "/jobs/$EV"
check "its evaluation: fd_classifier and the accuracy at the last step, named for the classifier" \
  [ "$(jb '[.evaluation.fd_classifier.step, (.evaluation.fd_classifier.value | type), .evaluation.fd_classifier.extractor, .evaluation.classifier_accuracy.step, (.evaluation.classifier_accuracy.value <= 1), (.evaluation | has("fid"))] | map(tostring) | join(",")')" = "4,number,classifier:$CLF,4,true,false" ]
check "two fd_classifier points in the series" \
  [ "$(curl -sS "$URL/jobs/$EV/metrics?name=fd_classifier" | jq -r '[.series.fd_classifier[] | "\(.step):\(.samples)"] | join(",")')" = "2:4,4:4" ]

# ---- the forgetting curve as a job: the diff_tuning job's newest checkpoint against its base -----
FORGET="\"method\": \"forgetting_curve\", \"base_model\": \"$MDL\", \"dataset\": \"$OUTLINE\""
http POST /jobs -H 'Content-Type: application/json' -d "{$FORGET}"
expect_error 400 missing_field forgetting.checkpoint "forgetting_curve needs forgetting.checkpoint"
http POST /jobs -H 'Content-Type: application/json' -d "{$FORGET, \"forgetting\": {\"checkpoint\": \"job_000000000000000000000000\"}}"
expect_error 404 not_found forgetting.checkpoint "a checkpoint job id that does not exist"
http POST /jobs -H 'Content-Type: application/json' -d "{$FORGET, \"forgetting\": {\"checkpoint\": \"mdl_000000000000000000000000\"}}"
expect_error 404 not_found forgetting.checkpoint "a checkpoint model id that does not exist"
http POST /jobs -H 'Content-Type: application/json' -d "{$FORGET, \"forgetting\": {\"checkpoint\": \"$TMP/data/jobs/$DT/checkpoints\"}}"
expect_error 400 invalid_value forgetting.checkpoint "a checkpoint must be an id, never a server path"
http POST /jobs -H 'Content-Type: application/json' -d "{$FORGET, \"forgetting\": {\"checkpoint\": \"$CLF\"}}"
expect_error 400 invalid_value forgetting.checkpoint "a classifier is not a DiT checkpoint"
http POST /jobs -H 'Content-Type: application/json' -d "{$FORGET, \"forgetting\": {\"checkpoint\": \"$DT\", \"switch_points\": 1}}"
expect_error 400 invalid_value forgetting.switch_points "one switch point"
submit "{$FORGET, \"forgetting\": {\"checkpoint\": \"$DT\", \"buckets\": 3, \"loss_images\": 4,
  \"switch_points\": 2, \"samples\": 2}, \"eval\": {\"steps\": 2}}"
FC=$JOB
check "the job's method" [ "$(jb .method)" = forgetting_curve ]
wait_status "$FC" succeeded 120; check "the forgetting-curve job succeeded" [ $? -eq 0 ]
http GET "/jobs/$FC/metrics?name=forgetting_loss"; expect_status 200 "forgetting_loss"
check "one loss-curve point: both models over the 3 requested buckets" \
  [ "$(jb '.series.forgetting_loss | map("\(.step) \(.value.timesteps) \(.value.base | map(select(type == "number" and . > 0)) | length) \(.value.finetuned | map(select(type == "number" and . > 0)) | length)") | join(",")')" = "0 [0,333,666] 3 3" ]
http GET "/jobs/$FC/metrics?name=forgetting_hybrid"
check "without Inception weights the hybrid curve is unavailable, with the reason" \
  [ "$(jb '.series.forgetting_hybrid | map("\(.value) \(.available) \(.reason | length > 0)") | join(",")')" = "null false true" ]
check "the log names the checkpoint step measured" \
  [ "$(curl -sS "$URL/jobs/$FC/events?limit=1000" | jq '[.data[] | select(.type == "log" and (.data.message | test("job '"$DT"' at its newest checkpoint, step 30")))] | length')" = 1 ]
submit "{$FORGET, \"forgetting\": {\"checkpoint\": \"$MDL\", \"buckets\": 2, \"loss_images\": 2, \"switch_points\": 0}}"
FM=$JOB
wait_status "$FM" succeeded 120; check "a model id as the checkpoint: succeeded" [ $? -eq 0 ]
check "the base model against itself: the same loss in every bucket" \
  [ "$(curl -sS "$URL/jobs/$FM/metrics" | jq -c '[(.series.forgetting_loss[0].value | .base == .finetuned), (.series | has("forgetting_hybrid"))]')" = "[true,false]" ]

# ---- SSE: disconnect mid-job and resume with Last-Event-ID: nothing lost, nothing repeated -------
pretrain 1500 500; LONG=$JOB
wait_status "$LONG" running 30
timeout 1.5 curl -sS -N -H 'Accept: text/event-stream' "$URL/jobs/$LONG/events" >"$TMP/part1.sse"
last=$(grep '^id: ' "$TMP/part1.sse" | tail -1 | cut -c5-)
check "the first connection got events" [ -n "$last" ]
timeout 120 curl -sS -N -H 'Accept: text/event-stream' -H "Last-Event-ID: $last" "$URL/jobs/$LONG/events" >"$TMP/part2.sse"
check "the resumed stream ran to the end" [ $? -eq 0 ]
grep -h '^id: ' "$TMP/part1.sse" "$TMP/part2.sse" | cut -c5- >"$TMP/sse_ids"
curl -sS "$URL/jobs/$LONG/events?limit=1000" | jq -r '.data[].id' >"$TMP/all_ids"
check "stream ids = stored ids, in order, none twice" cmp -s "$TMP/sse_ids" "$TMP/all_ids"
check "the streams spanned several hundred events" [ "$(wc -l <"$TMP/all_ids")" -gt 100 ]

# ---- cancel a running job; meanwhile two queued jobs wait for the one slot ---------------------------
pretrain 100000 1000; C=$JOB
wait_status "$C" running 30; wait_step "$C" 20
pretrain 200 200 0; A=$JOB
pretrain 200 200 9; B=$JOB
http GET "/jobs/$A"; check "with the slot busy, others wait" [ "$(jb .status)" = queued ]
http POST "/jobs/$C/cancel"; expect_status 200 "cancel a running job"
check "a running job is marked, not yet cancelled" [ "$(jb '[.status, .cancel_requested] | join(",")')" = "running,true" ]
wait_status "$C" cancelled 30; check "the worker stopped and the job is cancelled" [ $? -eq 0 ]
http POST "/jobs/$C/cancel"; expect_error 409 invalid_state - "cancel a cancelled job"
wait_status "$A" succeeded 120 && wait_status "$B" succeeded 120; check "both queued jobs succeeded" [ $? -eq 0 ]
a_start=$(curl -sS "$URL/jobs/$A" | jq .started_at)
b_end=$(curl -sS "$URL/jobs/$B" | jq .finished_at)
c_end=$(curl -sS "$URL/jobs/$C" | jq .finished_at)
b_start=$(curl -sS "$URL/jobs/$B" | jq .started_at)
check "one after the other on one slot, the higher priority first" jq -en "$c_end <= $b_start and $b_end <= $a_start"

# ---- kill -9 of a worker: the attempt fails, the job resumes from its checkpoint ---------------------
pretrain 1200 200; K=$JOB
wait_status "$K" running 30; wait_step "$K" 450
pid=$(worker_pid "$K"); check "the worker is listed" [ -n "$pid" ]
kill -KILL "$pid"
wait_status "$K" succeeded 180; check "killed worker: the job still succeeds" [ $? -eq 0 ]
http GET "/jobs/$K"
check "it took a second attempt" [ "$(jb .attempt)" = 2 ]
http GET "/jobs/$K/events?limit=1000"
check "the death was recorded" [ "$(jb '[.data[] | select(.type == "status" and .data.status == "queued" and .data.reason.code == "worker_died")] | length')" = 1 ]
check "the second attempt resumed from a checkpoint" [ "$(jb '[.data[] | select(.type == "log" and (.data.message | test("resuming from checkpoint step [1-9]")))] | length')" = 1 ]

# ---- kill -9 of the server mid-job, then restart: the job resumes, none lost or duplicated -----------
pretrain 1200 200; S=$JOB
wait_status "$S" running 30; wait_step "$S" 450
spid=$(worker_pid "$S")
n_jobs=$(curl -sS "$URL/jobs?limit=100" | jq '.data | length')
kill -KILL "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""
for i in $(seq 1 50); do kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
check "the orphaned worker died with the server" [ "$(kill -0 "$spid" 2>/dev/null && echo alive)" != alive ]
serve_start "$DATA" --devices cpu --slots-per-device 1
wait_status "$S" succeeded 180; check "after the restart the job succeeds" [ $? -eq 0 ]
http GET "/jobs/$S"
check "resumed as attempt 2" [ "$(jb .attempt)" = 2 ]
check "no job lost or duplicated" [ "$(curl -sS "$URL/jobs?limit=100" | jq '.data | length')" = "$n_jobs" ]
check "every job is finished" [ "$(curl -sS "$URL/jobs?limit=100" | jq '[.data[] | select(.status == "queued" or .status == "running")] | length')" = 0 ]

serve_stop; check "graceful shutdown" [ $? -eq 0 ]
finish
