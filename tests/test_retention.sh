#!/usr/bin/env bash
# test_retention.sh — checkpoint retention through a real `difftune serve` and its workers: a job
# with checkpoint.keep 2 evaluated by a classifier (fd_classifier) keeps exactly its newest 2,
# its best-evaluated checkpoint and the checkpoints pinned while it ran, with "pinned" and
# "kept_because" saying why, and on disk exactly those model files and only the newest 2 state
# files; unpinned, a checkpoint goes at once unless something else keeps it; pin errors; and a
# checkpoint deleted while a slow reader downloads it: the download completes with the right
# sha256 (the server serves from a descriptor it holds open), and a job resumed after a cancel
# continues from its checkpoint while an older pinned one has lost its optimizer state.
# (The selection rule itself, on synthetic series: tests/test_store_retention.c.)
source "$(dirname "$0")/server_util.sh"
TMP=${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/retention
rm -rf "$TMP" && mkdir -p "$TMP"
DATA="$TMP/data"
serve_start "$DATA" --devices cpu --slots-per-device 1 --cancel-grace 20

"$BIN" dataset synth --style solid --classes 3 --per-class 8 --size 8 --out "$TMP/solid" >/dev/null || bad "synth"
tar -C "$TMP" -cf "$TMP/solid.tar" solid
http POST "/datasets?name=solid" --data-binary "@$TMP/solid.tar" -H 'Content-Type: application/x-tar'
expect_status 201 "upload a dataset"; DS=$(jb .id)
"$BIN" classifier train --dataset "$TMP/solid" --image-size 8 --epochs 2 --out "$TMP/clf.safetensors" >/dev/null 2>&1 || bad "classifier train"
http POST "/models?name=clf" --data-binary "@$TMP/clf.safetensors" -H 'Content-Type: application/octet-stream'
expect_status 201 "upload the classifier"; CLF=$(jb .id)

names() { curl -sS "$URL/jobs/$1/checkpoints" | jq -r '[.data[].name] | join(" ")'; }
on_disk() { # on_disk JOB GLOB: the checkpoint files matching GLOB, by name
  (cd "$DATA/jobs/$1/checkpoints" 2>/dev/null && ls $2 2>/dev/null) | sort | tr '\n' ' ' | sed 's/ $//'
}
wait_for() { # wait_for SECONDS COMMAND...: until COMMAND succeeds
  local i
  for i in $(seq 1 $(($1 * 20))); do "${@:2}" && return 0; sleep 0.05; done
  return 1
}

# ---- a job with keep 2, evaluated at every checkpoint; two middle ones pinned while it runs -----
E=100 N=6 # checkpoint (and evaluation) every E steps, N checkpoints
submit "{\"method\": \"pretrain\", \"dataset\": \"$DS\",
  \"model\": {\"arch\": \"custom\", \"depth\": 1, \"hidden_size\": 16, \"num_heads\": 2, \"patch_size\": 2, \"image_size\": 8},
  \"hyperparameters\": {\"steps\": $((E * N)), \"batch_size\": 4, \"learning_rate\": 1e-3},
  \"eval\": {\"sample_every\": 0, \"fid_every\": $E, \"fid_samples\": 4, \"steps\": 2, \"extractor\": \"classifier:$CLF\"},
  \"checkpoint\": {\"every\": $E, \"keep\": 2}}"
A=$JOB
# Pin the first checkpoint that appears at step 2E or later, then the next one, as they come
# (each stays among the newest for two intervals); up to step 4E, so both stay "middle" ones.
PINNED=()
for i in $(seq 1 2400); do
  for n in $(names "$A"); do
    [ "${#PINNED[@]}" -ge 2 ] && break
    s=$((10#$(echo "$n" | sed 's/step_0*\([0-9]*\).*/\1/;s/^$/0/')))
    [ "$s" -ge $((2 * E)) ] && [ "$s" -le $((4 * E)) ] || continue
    [[ " ${PINNED[*]} " == *" $n "* ]] && continue
    code=$(curl -sS -o "$TMP/pin" -w '%{http_code}' -X POST "$URL/jobs/$A/checkpoints/$n/pin")
    [ "$code" = 200 ] && PINNED+=("$n")
  done
  [ "${#PINNED[@]}" -ge 2 ] && break
  st=$(curl -sS "$URL/jobs/$A" | jq -r .status)
  [ "$st" = running ] || [ "$st" = queued ] || break
  sleep 0.05
done
check "two middle checkpoints pinned while the job ran (${PINNED[*]})" [ "${#PINNED[@]}" = 2 ]
check "the pin answer says pinned" [ "$(jq -c '[.pinned, (.kept_because | index("pinned") != null), (.url | endswith("/pin") | not)]' "$TMP/pin")" = "[true,true,true]" ]
wait_status "$A" succeeded 300; check "the job succeeded" [ $? -eq 0 ]

# What must be kept: the newest 2 by step, the lowest fd_classifier among checkpoint steps (every
# evaluation here is at one), and the pinned ones.
curl -sS "$URL/jobs/$A/metrics?name=fd_classifier" >"$TMP/series"
check "$N evaluations, all with a value" [ "$(jq '[.series.fd_classifier[] | select(.value | type == "number")] | length' "$TMP/series")" = $N ]
BEST=$(jq -r '.series.fd_classifier | min_by(.value) | .step' "$TMP/series")
name_of() { printf 'step_%07d.safetensors' "$1"; }
declare -A WHY
for s in $(seq $E $E $((E * N))); do WHY[$(name_of $s)]=""; done
WHY[$(name_of $((E * (N - 1))))]+="newest "; WHY[$(name_of $((E * N)))]+="newest "
WHY[$(name_of "$BEST")]+="best_fd_classifier "
for n in "${PINNED[@]}"; do WHY[$n]+="pinned "; done
expect="" expect_state=""
for s in $(seq $E $E $((E * N))); do
  n=$(name_of $s); [ -n "${WHY[$n]}" ] && expect+="$n:${WHY[$n]% } "
done
expect_state="$(name_of $((E * (N - 1))) | sed 's/safetensors$/state.safetensors/') $(name_of $((E * N)) | sed 's/safetensors$/state.safetensors/')"
http GET "/jobs/$A/checkpoints"; expect_status 200 "list"
got=$(jb '[.data[] | "\(.name):\(.kept_because | join(" "))"] | join(" ")')
check "kept: the newest 2, the best (step $BEST) and the pinned, each saying why ($got | want ${expect% })" [ "$got" = "${expect% }" ]
check "pinned is true exactly for the pinned ones" [ "$(jb '[.data[] | select(.pinned) | .name] | join(" ")')" = "${PINNED[*]}" ]
check "every listed checkpoint has a url, a size and a sha256" [ "$(jb '[.data[] | (.url | test("^/jobs/.*/checkpoints/step_")) and .bytes > 0 and (.sha256 | length) == 64] | all')" = true ]
check "on disk: exactly the listed model files" [ "$(on_disk "$A" 'step_???????.safetensors')" = "$(jb '[.data[].name] | sort | join(" ")')" ]
check "on disk: optimizer state only for the newest 2 ($(on_disk "$A" '*.state.safetensors'))" [ "$(on_disk "$A" '*.state.safetensors')" = "$expect_state" ]
check "the worker log names what retention deleted" grep -q 'retention: deleted checkpoint step_' "$DATA/jobs/$A/log/worker.log"

# ---- pins: idempotent, errors -------------------------------------------------------------------
P0=${PINNED[0]:-none}
http POST "/jobs/$A/checkpoints/$P0/pin"; expect_status 200 "pin again: idempotent"
check "still pinned once" [ "$(jb '[.pinned, ([.kept_because[] | select(. == "pinned")] | length)] | map(tostring) | join(",")')" = "true,1" ]
http POST "/jobs/$A/checkpoints/step_0000001.safetensors/pin"; expect_error 404 not_found - "pin an unknown checkpoint"
http DELETE "/jobs/$A/checkpoints/step_0000001.safetensors/pin"; expect_error 404 not_found - "unpin an unknown checkpoint"
http POST "/jobs/job_000000000000000000000000/checkpoints/$P0/pin"; expect_error 404 not_found - "pin in an unknown job"
http GET "/jobs/$A/checkpoints/$P0/pin"; expect_status 405 "GET on the pin"
check "405 lists POST and DELETE" grep -qi '^allow: POST, DELETE' "$TMP/headers"

# ---- unpinned: gone at once unless it is also the best ------------------------------------------
keep_after="$(name_of $((E * (N - 1)))) $(name_of $((E * N))) $(name_of "$BEST")"
keep_after=$(echo $keep_after | tr ' ' '\n' | sort -u | tr '\n' ' ' | sed 's/ $//')
for n in "${PINNED[@]}"; do
  http DELETE "/jobs/$A/checkpoints/$n/pin"; expect_status 200 "unpin $n"
  check "the unpin answer: not pinned" [ "$(jb .pinned)" = false ]
  http DELETE "/jobs/$A/checkpoints/$n/pin"
  check "unpin again: idempotent, or already gone ($CODE)" [ "$CODE" = 200 -o "$CODE" = 404 ]
done
sorted_names() { names "$1" | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//'; }
listed_are() { [ "$(sorted_names "$1")" = "$2" ]; }
wait_for 20 listed_are "$A" "$keep_after"
check "after the unpins only the newest 2 and the best are listed ($(sorted_names "$A") | want $keep_after)" [ "$(sorted_names "$A")" = "$keep_after" ]
check "and only they are on disk" [ "$(on_disk "$A" 'step_???????.safetensors')" = "$keep_after" ]
unpinned_gone=0
for n in "${PINNED[@]}"; do [ "$n" != "$(name_of "$BEST")" ] && unpinned_gone=$((unpinned_gone + 1)); done
check "at least one unpinned checkpoint went (not the best: $unpinned_gone)" [ "$unpinned_gone" -ge 1 ]

# ---- a checkpoint deleted while it downloads; resume after a cancel ------------------------------
# A wider model (a 3.6 MB file, more than sockets buffer; one 8x8 patch keeps it cheap) that
# checkpoints only when it is stopped.
submit "{\"method\": \"pretrain\", \"dataset\": \"$DS\",
  \"model\": {\"arch\": \"custom\", \"depth\": 1, \"hidden_size\": 128, \"num_heads\": 4, \"patch_size\": 8, \"image_size\": 8},
  \"hyperparameters\": {\"steps\": 1000000, \"batch_size\": 2}, \"eval\": {\"sample_every\": 0, \"fid_every\": 0},
  \"checkpoint\": {\"every\": 1000000, \"keep\": 1}}"
B=$JOB
past_step() { [ "$(curl -sS "$URL/jobs/$1" | jq -r '.progress.step // 0')" -gt "$2" ]; }
stop_after_step() { # stop_after_step JOB STEP: cancel once training passed STEP; the job ends cancelled
  wait_status "$1" running 60 && wait_for 120 past_step "$1" "$2" || return 1
  curl -sS -o /dev/null -X POST "$URL/jobs/$1/cancel" && wait_status "$1" cancelled 60
}
stop_after_step "$B" 0; check "the big job stopped with a checkpoint" [ $? -eq 0 ]
S1=$(names "$B"); check "one checkpoint ($S1)" [ -n "$S1" -a "${S1/ /}" = "$S1" ]
http POST "/jobs/$B/checkpoints/$S1/pin"; expect_status 200 "pin the first"
http POST "/jobs/$B/retry"; expect_status 200 "retry"
s1=$((10#$(echo "$S1" | sed 's/step_0*\([0-9]*\).*/\1/;s/^$/0/')))
stop_after_step "$B" "$s1"; check "the retried job stopped again, later" [ $? -eq 0 ]
check "the retry resumed from the pinned checkpoint" [ "$(curl -sS "$URL/jobs/$B/events?limit=1000" | jq --arg s "resuming from checkpoint step $s1\$" '[.data[] | select(.type == "log" and (.data.message | test($s)))] | length')" = 1 ]
check "the resumed worker reported that checkpoint again (the server's books stay whole)" \
  [ "$(curl -sS "$URL/jobs/$B/events?limit=1000" | jq --arg n "$S1" '[.data[] | select(.type == "checkpoint" and .data.name == $n)] | length')" = 2 ]
http GET "/jobs/$B/checkpoints"
S2=$(jb '.data[-1].name')
check "keep 1: the pinned first and the newest (${S1} ${S2})" [ "$(jb '[.data[] | "\(.name):\(.kept_because | join("+"))"] | join(" ")')" = "$S1:pinned $S2:newest" ]
check "the pinned older one lost its optimizer state, the newest kept it" [ "$(on_disk "$B" '*.state.safetensors')" = "${S2%.safetensors}.state.safetensors" ]
SHA=$(jb '.data[0].sha256'); SIZE=$(jb '.data[0].bytes')
check "the file is bigger than what sockets hold ($SIZE bytes)" [ "$SIZE" -gt 2000000 ]
# A slow reader with a small receive window, so the server cannot hand the whole file to the
# kernel and close it: about 1 MB/s. (curl --limit-rate does not do here: it averages over
# seconds, and loopback buffers swallow a 3 MB file at once.)
cat >"$TMP/slowget.py" <<'PYTHON'
import socket, sys, time
port, path, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
s.settimeout(30)  # a server that stops sending fails the read instead of hanging the test
s.connect(("127.0.0.1", port))
s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % path).encode())
f = s.makefile("rb", buffering=0)
head = b""
while not head.endswith(b"\r\n\r\n"):
    b = f.read(1)
    if not b:
        sys.exit("no response")
    head += b
if not head.startswith(b"HTTP/1.1 200 "):
    sys.exit(head.split(b"\r\n")[0].decode())
length = int(next((l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")), b"-1"))
got = 0
with open(out, "wb") as o:
    while got != length:
        b = f.read(16384)
        if not b:
            break
        o.write(b)
        o.flush()
        got += len(b)
        time.sleep(0.015)
if got != length:
    sys.exit("got %d of %d bytes" % (got, length))
PYTHON
: >"$TMP/slow.st"
"${DIFFTUNE_PYTHON:-python3}" "$TMP/slowget.py" "${URL##*:}" "/jobs/$B/checkpoints/$S1" "$TMP/slow.st" &
READER=$!
wait_for 20 test -s "$TMP/slow.st"
http DELETE "/jobs/$B/checkpoints/$S1/pin"; expect_status 200 "unpin while it downloads"
wait_for 20 test ! -e "$DATA/jobs/$B/checkpoints/$S1"
check "retention deleted the file" [ ! -e "$DATA/jobs/$B/checkpoints/$S1" ]
check "the download was still running then ($(stat -c %s "$TMP/slow.st") of $SIZE bytes)" kill -0 $READER
check "the server still reads the deleted file" bash -c "ls -l /proc/$SERVER_PID/fd | grep -q '$S1 (deleted)'"
check "and the list no longer has it" [ "$(names "$B")" = "$S2" ]
wait $READER; check "the download completed" [ $? -eq 0 ]
check "with the right sha256" [ "$(sha256sum "$TMP/slow.st" | cut -d' ' -f1)" = "$SHA" ]
http GET "/jobs/$B/checkpoints/$S1"; expect_error 404 not_found - "a new download of it: 404"

serve_stop; check "graceful shutdown" [ $? -eq 0 ]
finish
