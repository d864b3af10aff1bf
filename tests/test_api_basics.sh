#!/usr/bin/env bash
# test_api_basics.sh — every endpoint and documented error of the HTTP API, through a real
# `difftune serve` on loopback and curl, on a queue-only server (--slots-per-device 0: jobs are
# stored and never run, so every state is stable). Bad input must get its status, error code
# and param, and must not change what is stored.
source "$(dirname "$0")/server_util.sh"
TMP=${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/api_basics
PY=${DIFFTUNE_PYTHON:-python3}
rm -rf "$TMP" && mkdir -p "$TMP"
serve_start "$TMP/data" --slots-per-device 0 --devices cpu --max-upload-mb 2 --sse-heartbeat 1

# ---- service endpoints -----------------------------------------------------------------------
http GET /health; expect_status 200 "health"
check "health says ok" [ "$(jb .status)" = ok ]
http GET /; expect_status 200 "index"
check "index names the API" [ "$(jb .openapi)" = /openapi.json ]
http GET /openapi.json; expect_status 200 "openapi"
check "openapi 3.1" [ "$(jb '.openapi | startswith("3.1")')" = true ]
http GET /workers; expect_status 200 "workers"
check "workers: no slot on a queue-only server" [ "$(jb '.data | length')" = 0 ]
http GET /metrics; expect_status 200 "metrics"
check "metrics are Prometheus text" grep -q '^difftune_jobs{status="queued"} 0$' "$TMP/body"
check "metrics content type" grep -qi '^content-type: text/plain; version=0.0.4' "$TMP/headers"
http HEAD /health -I; expect_status 200 "HEAD is answered like GET"
http GET /nope; expect_error 404 not_found - "unknown path"
http DELETE /jobs; expect_error 405 method_not_allowed - "wrong method"
check "405 names the allowed methods" grep -qi '^allow: POST, GET, HEAD' "$TMP/headers"
http GET "/$(head -c 2000 /dev/zero | tr '\0' a)"; expect_error 414 uri_too_long - "long path"
http GET /health -H 'X-Request-Id: trace-42'
check "a client's X-Request-Id is echoed" grep -qi '^x-request-id: trace-42' "$TMP/headers"

# ---- datasets --------------------------------------------------------------------------------
"$BIN" dataset synth --style solid --classes 3 --per-class 8 --size 8 --out "$TMP/solid" >/dev/null || bad "synth"
"$BIN" dataset synth --style outline --classes 4 --per-class 4 --size 8 --out "$TMP/outline" >/dev/null || bad "synth"
tar -C "$TMP" -cf "$TMP/solid.tar" solid
"$PY" - "$TMP/outline" "$TMP/outline.zip" <<'PY'
import os, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(dst, "w") as z:
    for root, _, files in os.walk(src):
        for f in files:
            p = os.path.join(root, f)
            z.write(p, os.path.relpath(p, os.path.dirname(src)))
PY
http POST "/datasets?name=solid" --data-binary "@$TMP/solid.tar" -H 'Content-Type: application/x-tar'
expect_status 201 "raw tar upload"
DS=$(jb .id)
check "dataset counts" [ "$(jb '[.format, .images, .classes] | join(",")')" = "image_folder,24,3" ]
check "dataset name" [ "$(jb .name)" = solid ]
check "Location header" grep -qi "^location: /datasets/$DS" "$TMP/headers"
http POST /datasets -F "file=@$TMP/outline.zip" -F name=outline; expect_status 201 "multipart zip upload"
DS2=$(jb .id)
check "zip dataset counts" [ "$(jb '[.images, .classes, (.class_names | length)] | join(",")')" = "16,4,4" ]
tar -C "$TMP" -czf "$TMP/solid.tgz" solid
http POST /datasets --data-binary "@$TMP/solid.tgz" -H 'Content-Type: application/gzip'; expect_status 201 "tar.gz upload"
DS3=$(jb .id)

n_before=$(curl -sS "$URL/datasets?limit=100" | jq '.data | length')
http POST /datasets --data-binary "@$TMP/solid.tar" -H 'Content-Type: text/plain'
expect_error 415 unsupported_media_type Content-Type "dataset as text/plain"
head -c 3000 /dev/urandom >"$TMP/noise.bin"
http POST /datasets --data-binary "@$TMP/noise.bin" -H 'Content-Type: application/x-tar'
expect_error 422 invalid_dataset file "random bytes as a tar"
http POST /datasets --data-binary "" -H 'Content-Type: application/x-tar'
expect_error 400 invalid_value file "empty upload"
head -c $((3 * 1024 * 1024)) /dev/zero >"$TMP/big.bin"
http POST /datasets --data-binary "@$TMP/big.bin" -H 'Content-Type: application/x-tar'
expect_error 413 payload_too_large - "upload over --max-upload-mb"
http POST /datasets -F name=nofile; expect_error 400 missing_field file "multipart without a file"
mkdir -p "$TMP/evil/a" && cp "$TMP/solid/"*/*.png "$TMP/evil/a/" 2>/dev/null
tar -C "$TMP/evil" -cf "$TMP/evil.tar" a --transform 's|^a|../escaped|'
http POST /datasets --data-binary "@$TMP/evil.tar" -H 'Content-Type: application/x-tar'
expect_error 422 invalid_dataset file "archive member outside the dataset"
check "nothing written outside the data directory" [ ! -e "$TMP/data/escaped" ] && [ ! -e "$TMP/data/datasets/escaped" ]
mkdir -p "$TMP/broken/cls" && head -c 500 /dev/urandom >"$TMP/broken/cls/bad.png"
tar -C "$TMP" -cf "$TMP/broken.tar" broken
http POST /datasets --data-binary "@$TMP/broken.tar" -H 'Content-Type: application/x-tar'
expect_error 422 invalid_dataset file "undecodable image"
check "the message names the file" grep -q 'bad.png' "$TMP/body"
check "rejected uploads store nothing" [ "$(curl -sS "$URL/datasets?limit=100" | jq '.data | length')" = "$n_before" ]
check "no upload is left in tmp" [ -z "$(ls -A "$TMP/data/tmp")" ]

http GET "/datasets?limit=1"; expect_status 200 "dataset page 1"
check "dataset page 1 has more" [ "$(jb '[(.data | length), .has_more] | join(",")')" = "1,true" ]
http GET "/datasets?limit=100&after=$(jb .last_id)"; expect_status 200 "dataset page 2"
check "dataset page 2 holds the rest" [ "$(jb '.data | length')" = 2 ]
http GET "/datasets?limit=0"; expect_error 400 invalid_value limit "limit 0"
http GET "/datasets/$DS"; expect_status 200 "get dataset"
check "class counts" [ "$(jb '.class_counts | map(tostring) | join(",")')" = "8,8,8" ]
check "preview_url" [ "$(jb .preview_url)" = "/datasets/$DS/preview.png" ]
http GET "/datasets?limit=100"; expect_status 200 "list datasets"
check "the list carries class counts and preview URLs" \
  [ "$(jb "[.data[] | select(.id == \"$DS2\") | (.class_counts | map(tostring) | join(\",\")), .preview_url] | join(\" \")")" = "4,4,4,4 /datasets/$DS2/preview.png" ]
http GET "/datasets/$DS/preview.png"; expect_status 200 "dataset preview"
check "preview content type" grep -qi '^content-type: image/png' "$TMP/headers"
check "preview is a PNG" [ "$(head -c 8 "$TMP/body" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]
# 3 rows (classes) of 8 tiles of 32 px, 2 px apart: 274 x 104 (PNG IHDR width, height)
check "preview size" [ "$(od -An -tu1 -j16 -N8 "$TMP/body" | tr -s ' ' | sed 's/^ //')" = "0 0 1 18 0 0 0 104" ]
etag=$(grep -i '^etag: ' "$TMP/headers" | cut -d' ' -f2 | tr -d '\r')
http GET "/datasets/$DS/preview.png" -H "If-None-Match: $etag"; expect_status 304 "preview not modified"
http GET /datasets/ds_000000000000000000000000/preview.png; expect_error 404 not_found - "preview of an unknown dataset"
rm "$TMP/data/datasets/$DS2/.preview.png"  # as for a dataset uploaded before previews existed
http GET "/datasets/$DS2/preview.png"; expect_error 404 not_found - "a dataset without a preview"
http GET "/datasets/$DS2"; check "no preview_url without a preview" [ "$(jb 'has("preview_url")')" = false ]
http GET /datasets/ds_000000000000000000000000; expect_error 404 not_found - "unknown dataset"
http DELETE "/datasets/$DS3"; expect_status 200 "delete dataset"
check "deleted flag" [ "$(jb .deleted)" = true ]
check "its files are gone" [ ! -e "$TMP/data/datasets/$DS3" ]
http GET "/datasets/$DS3"; expect_error 404 not_found - "deleted dataset"

# ---- models ----------------------------------------------------------------------------------
cat >"$TMP/base.json" <<JSON
{"method": "pretrain", "dataset": "$TMP/solid",
 "model": {"arch": "custom", "depth": 1, "hidden_size": 16, "num_heads": 2, "patch_size": 2, "image_size": 8},
 "hyperparameters": {"steps": 2, "batch_size": 4}, "eval": {"sample_every": 0}, "device": "cpu"}
JSON
"$BIN" train --spec "$TMP/base.json" --out "$TMP/base" --quiet >/dev/null 2>&1 || bad "train a base model"
CKPT="$TMP/base/checkpoints/step_0000002.safetensors"
http POST "/models?name=base" --data-binary "@$CKPT" -H 'Content-Type: application/octet-stream'
expect_status 201 "raw model upload"
MDL=$(jb .id)
check "model config read from the file" [ "$(jb '[.config.depth, .config.hidden_size] | join(",")')" = "1,16" ]
check "model sha256" [ "$(jb .sha256)" = "$(sha256sum "$CKPT" | cut -d' ' -f1)" ]
http POST /models -F "file=@$CKPT" -F name=base2; expect_status 201 "multipart model upload"
head -c 200 "$CKPT" >"$TMP/trunc.safetensors"
http POST /models --data-binary "@$TMP/trunc.safetensors" -H 'Content-Type: application/octet-stream'
expect_error 422 invalid_model file "truncated checkpoint"
http POST /models -d '{"checkpoint": "x"}' -H 'Content-Type: application/json'
expect_error 400 missing_field job "promote without a job"
http POST /models -d '{"job": "job_000000000000000000000000", "checkpoint": "x", "extra": 1}' -H 'Content-Type: application/json'
expect_error 400 unknown_field extra "promote with an unknown field"
http POST /models -d '{"job": "job_000000000000000000000000", "checkpoint": "x"}' -H 'Content-Type: application/json'
expect_error 404 not_found checkpoint "promote from an unknown job"
http POST /models -d '{"job": ' -H 'Content-Type: application/json'; expect_error 400 invalid_json - "promote with broken JSON"
http GET /models; expect_status 200 "list models"
check "two models" [ "$(jb '.data | length')" = 2 ]
http GET "/models/$MDL"; expect_status 200 "get model"
http GET /models/mdl_nothere; expect_error 404 not_found - "unknown model"
check "a DiT upload is kind dit" [ "$(curl -sS "$URL/models/$MDL" | jq -r .kind)" = dit ]

# ---- classifier models (difftune classifier train; __metadata__.difftune_kind "classifier") ----
"$BIN" classifier train --dataset "$TMP/solid" --image-size 8 --epochs 1 --batch 8 \
  --out "$TMP/clf.safetensors" --quiet >/dev/null 2>&1 || bad "train a classifier"
http POST "/models?name=shapes" --data-binary "@$TMP/clf.safetensors" -H 'Content-Type: application/octet-stream'
expect_status 201 "classifier upload"
CLF=$(jb .id)
check "classifier kind and config" [ "$(jb '[.kind, .config.image_size, .config.channels, .config.num_classes, .config.features] | join(",")')" = "classifier,8,3,3,256" ]
check "classifier class names" [ "$(jb '.config.class_names | join(",")')" = "circle,square,triangle" ]
http GET "/models?limit=100"; expect_status 200 "list models with a classifier"
check "the list shows each model's kind" [ "$(jb "[.data[] | select(.id == \"$CLF\" or .id == \"$MDL\") | .kind] | sort | join(\",\")")" = "classifier,dit" ]
"$PY" - "$TMP/clf.safetensors" "$TMP/clf_bad.safetensors" <<'PY'
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + n])
head["conv2.weight"]["shape"] = [32, 64, 3, 3]  # the same bytes under a wrong shape
text = json.dumps(head).encode()
open(sys.argv[2], "wb").write(struct.pack("<Q", len(text)) + text + raw[8 + n:])
PY
http POST /models --data-binary "@$TMP/clf_bad.safetensors" -H 'Content-Type: application/octet-stream'
expect_error 422 invalid_model file "classifier with a mis-shaped tensor"
check "the message names the tensor and its shapes" grep -q "tensor 'conv2.weight' has the wrong shape (32, 64, 3, 3)" "$TMP/body"

# ---- jobs: creation and its errors ------------------------------------------------------------
job_body() { # job_body EXTRA_JSON
  echo "{\"method\": \"full\", \"base_model\": \"$MDL\", \"dataset\": \"$DS\", \"hyperparameters\": {\"steps\": 10, \"batch_size\": 4}$1}"
}
post_job() { http POST /jobs -H 'Content-Type: application/json' "$@"; }
n_jobs() { curl -sS "$URL/jobs?limit=100" | jq '.data | length'; }
post_job -d "$(job_body '')"; expect_status 201 "create a job"
J1=$(jb .id)
check "created jobs are queued" [ "$(jb .status)" = queued ]
check "defaults are filled in" [ "$(jb '.spec.hyperparameters.learning_rate')" = 0.0001 ]
check "Location of the job" grep -qi "^location: /jobs/$J1" "$TMP/headers"

n0=$(n_jobs)
post_job -d '{"method": "full",'; expect_error 400 invalid_json - "malformed JSON"
post_job -d "$(job_body ', "priority": "high"')"; expect_error 400 invalid_type priority "wrong type"
post_job -d "$(job_body ', "colour": 1')"; expect_error 400 unknown_field colour "unknown field"
post_job -d '{"method": "full", "dataset": "'"$DS"'", "base_model": "'"$MDL"'", "hyperparameters": {"learning_rate": -1}}'
expect_error 400 invalid_value hyperparameters.learning_rate "out of range"
post_job -d '{"method": "pretrain"}'; expect_error 400 missing_field dataset "no dataset"
post_job -d '{"method": "pretrain", "dataset": "/etc"}'; expect_error 400 invalid_value dataset "a path instead of an id"
post_job -d '{"method": "pretrain", "dataset": "ds_000000000000000000000000"}'; expect_error 404 not_found dataset "unknown dataset"
post_job -d '{"method": "full", "dataset": "'"$DS"'", "base_model": "mdl_000000000000000000000000"}'
expect_error 404 not_found base_model "unknown base model"
post_job -d '{"method": "full", "dataset": "'"$DS"'", "base_model": "'"$CLF"'"}'
expect_error 400 invalid_value base_model "a classifier as base model"
post_job -d "$(job_body ', "device": "cuda:3"')"; expect_error 400 invalid_value device "a device this server lacks"
http POST /jobs -d "$(job_body '')" -H 'Content-Type: text/plain'; expect_error 415 unsupported_media_type Content-Type "jobs as text/plain"
head -c $((1100 * 1024)) /dev/zero | tr '\0' ' ' >"$TMP/huge.json"
post_job --data-binary "@$TMP/huge.json"; expect_error 413 payload_too_large - "body over 1 MiB"
post_job -d "$(job_body '')" -H "Idempotency-Key: $(head -c 300 /dev/zero | tr '\0' k)"
expect_error 400 invalid_value Idempotency-Key "overlong Idempotency-Key"
check "rejected requests store nothing" [ "$(n_jobs)" = "$n0" ]

# ---- idempotency -------------------------------------------------------------------------------
post_job -d "$(job_body '')" -H 'Idempotency-Key: key-1'; expect_status 201 "first request with a key"
K1=$(jb .id)
post_job -d "$(job_body '' | jq -S .)" -H 'Idempotency-Key: key-1'; expect_status 201 "replayed request"
check "replay returns the same job" [ "$(jb .id)" = "$K1" ]
check "replay is flagged" grep -qi '^idempotent-replayed: true' "$TMP/headers"
post_job -d "$(job_body ', "priority": 5')" -H 'Idempotency-Key: key-1'
expect_error 409 idempotency_conflict Idempotency-Key "same key, other body"
check "one job per key" [ "$(n_jobs)" = "$((n0 + 1))" ]

# ---- listing: cursor pagination with inserts between pages --------------------------------------
for i in 1 2 3 4; do post_job -d "$(job_body ", \"priority\": $i")" >/dev/null; done
all=$(curl -sS "$URL/jobs?limit=100" | jq -r '.data[].id' | tr '\n' ' ')
http GET "/jobs?limit=3"; expect_status 200 "jobs page 1"
seen=$(jb '.data[].id' | tr '\n' ' ')
after=$(jb .last_id)
post_job -d "$(job_body '')" >/dev/null; post_job -d "$(job_body '')" >/dev/null
while [ "$after" != null ]; do
  http GET "/jobs?limit=3&after=$after"
  seen="$seen$(jb '.data[].id' | tr '\n' ' ')"
  after=$(jb 'if .has_more then .last_id else null end')
done
check "pages hold every job once, in order, and none created later" [ "$seen" = "$all" ]
http GET "/jobs?status=queued&limit=100"; expect_status 200 "status filter"
check "filter keeps only queued jobs" [ "$(jb '[.data[].status] | unique | join(",")')" = queued ]
http GET "/jobs?status=bogus"; expect_error 400 invalid_value status "unknown status"
http GET "/jobs?limit=101"; expect_error 400 invalid_value limit "limit above 100"
http GET "/jobs?limit=abc"; expect_error 400 invalid_value limit "limit not a number"
http GET "/jobs?after=job_zzz"; expect_error 400 invalid_value after "bad cursor"
http GET "/jobs/$J1"; expect_status 200 "get a job"
check "job object" [ "$(jb '[.object, .method, .attempt] | join(",")')" = "job,full,0" ]
http GET /jobs/job_000000000000000000000000; expect_error 404 not_found - "unknown job"

# ---- transitions -------------------------------------------------------------------------------
http POST "/jobs/$J1/cancel"; expect_status 200 "cancel a queued job"
check "cancelled at once" [ "$(jb .status)" = cancelled ]
http POST "/jobs/$J1/cancel"; expect_error 409 invalid_state - "cancel a cancelled job"
http POST "/jobs/$J1/retry"; expect_status 200 "retry a cancelled job"
check "queued again" [ "$(jb .status)" = queued ]
http POST "/jobs/$J1/retry"; expect_error 409 invalid_state - "retry a queued job"
http POST /jobs/job_000000000000000000000000/cancel; expect_error 404 not_found - "cancel an unknown job"
http GET "/jobs/$J1/cancel"; expect_error 405 method_not_allowed - "cancel by GET"
http DELETE "/datasets/$DS"; expect_error 409 in_use - "delete a dataset a queued job uses"
http DELETE "/models/$MDL"; expect_error 409 in_use - "delete a model a queued job uses"

# ---- per-job reads ------------------------------------------------------------------------------
http GET "/jobs/$J1/events"; expect_status 200 "event list"
check "status events: queued, cancelled, queued" [ "$(jb '[.data[].data.status] | join(",")')" = "queued,cancelled,queued" ]
first=$(jb '.data[0].id')
http GET "/jobs/$J1/events?after=$first&limit=1"; expect_status 200 "event page"
check "event paging" [ "$(jb '[(.data | length), .has_more] | join(",")')" = "1,true" ]
http GET "/jobs/$J1/events?limit=0"; expect_error 400 invalid_value limit "event limit 0"
http GET "/jobs/$J1/events" -H 'Accept: text/event-stream' -H 'Last-Event-ID: x'
expect_error 400 invalid_value Last-Event-ID "bad Last-Event-ID"
http POST "/jobs/$K1/cancel" >/dev/null
timeout 10 curl -sS -N -H 'Accept: text/event-stream' "$URL/jobs/$K1/events" >"$TMP/sse"
check "the stream of a finished job replays and closes" [ $? -eq 0 ]
check "SSE frames carry ids and types" grep -q '^event: status$' "$TMP/sse"
check "the last frame is the terminal status" [ "$(grep '^data: ' "$TMP/sse" | tail -1 | cut -c7- | jq -r .data.status)" = cancelled ]
timeout 2.5 curl -sS -N -H 'Accept: text/event-stream' "$URL/jobs/$J1/events" >"$TMP/live.sse"
check "a live stream replays the events so far" [ "$(grep -c '^event: status$' "$TMP/live.sse")" = 3 ]
check "a quiet stream gets heartbeats" [ "$(grep -c '^: heartbeat$' "$TMP/live.sse")" -ge 1 ]
http GET "/jobs/$J1/metrics"; expect_status 200 "metrics of a job"
check "no series yet" [ "$(jb '.series | length')" = 0 ]
http GET "/jobs/$J1/samples"; expect_status 200 "samples"
http GET "/jobs/$J1/checkpoints"; expect_status 200 "checkpoints"
check "no checkpoints yet" [ "$(jb '.data | length')" = 0 ]
http GET "/jobs/$J1/checkpoints/step_0000001.safetensors"; expect_error 404 not_found - "unknown checkpoint"
http GET "/jobs/$J1/checkpoints/..%2F..%2Fdifftune.db"; check "no path escapes through names" [ "$CODE" = 404 ]

# ---- nothing a client sends brings the server down ------------------------------------------------
port=${URL##*:}
head -c $((1500 * 1024)) /dev/urandom >"$TMP/slow.bin"
curl -sS --max-time 1 --limit-rate 100K --data-binary "@$TMP/slow.bin" -H 'Content-Type: application/x-tar' \
  "$URL/datasets" >/dev/null 2>&1
for payload in 'GARBAGE\r\n\r\n' 'GET / HTTP/9.9\r\n\r\n' "$(head -c 3000 /dev/urandom | base64 -w0)\r\n\r\n" \
  'POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n' \
  'POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n' \
  "GET /jobs HTTP/1.1\r\nHost: x\r\nX-Big: $(head -c 100000 /dev/zero | tr '\0' a)\r\n\r\n"; do
  timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$0; printf "%b" "$1" >&3; cat <&3 >/dev/null' "$port" "$payload" 2>/dev/null
done
http GET /health; expect_status 200 "alive after malformed requests and an aborted upload"
sleep 0.5
check "the aborted upload left no temporary file" [ -z "$(ls -A "$TMP/data/tmp")" ]

check "metrics count requests by route" grep -q 'difftune_http_requests_total{route="jobs.create",code="4xx"}' <(curl -sS "$URL/metrics")
serve_stop; check "graceful shutdown exits 0" [ $? -eq 0 ]
finish
