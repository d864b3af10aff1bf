#!/usr/bin/env bash
# test_crash_campaign.sh — a short crash campaign (bench/crash_campaign.py, whose docstring lists
# the checks): 4 rounds in which `difftune serve` or one of its workers is killed with SIGKILL
# while three clients submit, poll and cancel tiny CPU jobs, with some answers dropped unread and
# the submission sent again under its Idempotency-Key. After each server kill the database must
# pass integrity_check and hold every acknowledged job; at the end every acknowledged job is
# terminal exactly once, none is duplicated, the status events follow the lifecycle, and the
# store is intact. The long campaign is bench/crash_campaign.sh.
#
# Then, deterministically, the window the campaign once hit: a worker that wrote its final
# checkpoint and was killed (with the server) before the server stored the checkpoint event.
# The next attempt resumes "already complete" from that file and must still make it a listed,
# downloadable checkpoint of the job.
source "$(dirname "$0")/server_util.sh"
TMP=${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/crash_campaign
rm -rf "$TMP" && mkdir -p "$TMP"
PY=${DIFFTUNE_PYTHON:-python3}
DRIVER="$(dirname "$0")/../bench/crash_campaign.py"

# seed 2 plans server, worker, server, worker (a round aimed at a worker kills the server when
# no worker is running at that moment); the waits are fixed, what each kill hits is timing
"$PY" "$DRIVER" --bin "$BIN" --data-dir "$TMP/data" --rounds 4 --clients 3 --min-wait 1.5 \
  --max-wait 3 --worker-kill-ratio 0.5 --min-steps 20 --max-steps 80 --drop-answer-ratio 0.3 \
  --deadline 150 --seed 2 --json "$TMP/campaign.json" >"$TMP/out" 2>&1
rc=$?
tail -3 "$TMP/out"
check "the campaign passed every check (rc $rc; problems: $(jq -c .problems "$TMP/campaign.json" 2>/dev/null | head -c 600))" \
  [ "$rc" -eq 0 ]
check "it killed the server and checked the store after each kill" \
  [ "$(jq '[.kills.server > 0, .after_each_server_kill.checks == .kills.server,
            .after_each_server_kill.integrity_ok == .kills.server] | all' "$TMP/campaign.json")" = true ]
check "jobs were acknowledged, and resent answers were replayed, not stored twice" \
  [ "$(jq '[.jobs.acknowledged >= 10, .jobs.resent_and_replayed >= 1,
            .store.jobs_stored == .jobs.acknowledged] | all' "$TMP/campaign.json")" = true ]

DATA="$TMP/det"
serve_start "$DATA" --devices cpu --slots-per-device 1
"$BIN" dataset synth --style solid --classes 3 --per-class 8 --size 8 --out "$TMP/solid" >/dev/null
tar -C "$TMP" -cf "$TMP/solid.tar" solid
http POST "/datasets?name=solid" --data-binary "@$TMP/solid.tar" -H 'Content-Type: application/x-tar'
expect_status 201 "upload"
SPEC="{\"method\": \"pretrain\", \"dataset\": \"$(jb .id)\", \"model\": {\"arch\": \"custom\",
  \"depth\": 1, \"hidden_size\": 16, \"num_heads\": 2, \"patch_size\": 2, \"image_size\": 8},
  \"hyperparameters\": {\"steps\": 30, \"batch_size\": 4, \"learning_rate\": 1e-3},
  \"eval\": {\"sample_every\": 0, \"fid_every\": 0}, \"checkpoint\": {\"every\": 30}}"
http POST /jobs -H 'Content-Type: application/json' -d "$SPEC"; expect_status 201 "submit A"
A=$(jb .id)
wait_status "$A" succeeded 60; check "job A succeeded" [ $? -eq 0 ]
serve_stop
# job B, the same spec, queued on a server that runs nothing; then its final checkpoint appears
# on disk as its killed worker would have left it, unreported
serve_start "$DATA" --devices cpu --slots-per-device 0
http POST /jobs -H 'Content-Type: application/json' -d "$SPEC"; expect_status 201 "submit B"
B=$(jb .id)
serve_stop
mkdir -p "$DATA/jobs/$B/checkpoints"
cp "$DATA/jobs/$A/checkpoints/step_0000030."* "$DATA/jobs/$B/checkpoints/"
serve_start "$DATA" --devices cpu --slots-per-device 1
wait_status "$B" succeeded 60; check "job B succeeded from the checkpoint on disk" [ $? -eq 0 ]
http GET "/jobs/$B/events?limit=100"
check "it resumed already complete" [ "$(jb '[.data[] | select(.type == "log") | .data.message |
  select(test("already complete at step 30"))] | length')" = 1 ]
http GET "/jobs/$B/checkpoints"
check "its final checkpoint is listed, with the file's sha256: $(head -c 300 "$TMP/body")" \
  [ "$(jb '[.data[] | select(.step == 30) | .sha256] | join(",")')" = \
    "$(sha256sum "$DATA/jobs/$B/checkpoints/step_0000030.safetensors" | cut -d' ' -f1)" ]
code=$(curl -sS -o /dev/null -w '%{http_code}' "$URL/jobs/$B/checkpoints/step_0000030.safetensors")
check "and downloadable (status $code)" [ "$code" = 200 ]
serve_stop
finish
